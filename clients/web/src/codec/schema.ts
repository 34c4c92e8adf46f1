/**
 * Every frame and record of protocol v1, declared once as data (spec sections 4, 6 and 9).
 *
 * A payload is its fields in the order listed. The TypeScript types of frames and records are
 * derived from these tables, so the codec and the types cannot disagree.
 */

/** How one field is encoded (spec section 2). */
export type Kind =
  | 'varint' // (i): an RFC 9000 varint, as a bigint
  | 'byte' // (8): one byte
  | 'flag' // Flag (8): 0x00 or 0x01
  | 'bytes' // Bytes (b): varint length, then the bytes
  | 'text' // String (s): like Bytes, valid UTF-8
  | { readonly list: Kind } // List<T>: varint count, then the items
  | { readonly record: RecordName };

type Fields = readonly (readonly [string, Kind])[];

/** Records shared by several frames (spec section 4). */
export const RECORDS = {
  event: [
    ['seq', 'varint'],
    ['kind', 'varint'],
    ['target', 'varint'],
    ['flags', 'byte'],
    ['timestamp', 'varint'],
    ['sender', 'text'],
    ['device', 'text'],
    ['client_msg_id', 'varint'],
    ['content_type', 'text'],
    ['body', 'bytes'],
  ],
  member: [
    ['user', 'text'],
    ['role', 'varint'],
  ],
  member_change: [
    ['user', 'text'],
    ['role', 'varint'],
  ],
  summary: [
    ['conversation', 'text'],
    ['kind', 'varint'],
    ['title', 'text'],
    ['last_seq', 'varint'],
    ['last_timestamp', 'varint'],
    ['read_seq', 'varint'],
    ['unread', 'varint'],
  ],
} as const satisfies Record<string, Fields>;

/** The name of a record type. */
export type RecordName = keyof typeof RECORDS;

const texts = { list: 'text' } as const;
const events = { list: { record: 'event' } } as const;

/** Who may send a frame type. */
export type Origin = 'client' | 'server' | 'either' | 'link';

/** The frame catalog (spec section 6, table 2), by the spec's upper-case names. */
export const FRAMES = {
  // Connection lifecycle (6.1).
  HELLO: {
    code: 0x01,
    origin: 'client',
    fields: [
      ['min_version', 'varint'],
      ['max_version', 'varint'],
      ['features', 'varint'],
      ['max_frame_size', 'varint'],
      ['token', 'bytes'],
      ['agent', 'text'],
    ],
  },
  READY: {
    code: 0x02,
    origin: 'server',
    fields: [
      ['version', 'varint'],
      ['features', 'varint'],
      ['max_frame_size', 'varint'],
      ['heartbeat_ms', 'varint'],
      ['session', 'varint'],
      ['user', 'text'],
      ['device', 'text'],
      ['inbox_head', 'varint'],
      ['server_time', 'varint'],
    ],
  },
  PING: { code: 0x03, origin: 'either', fields: [['nonce', 'varint']] },
  PONG: { code: 0x04, origin: 'either', fields: [['nonce', 'varint']] },
  GOAWAY: {
    code: 0x05,
    origin: 'server',
    fields: [
      ['code', 'varint'],
      ['reconnect_ms', 'varint'],
      ['message', 'text'],
    ],
  },
  ERROR: {
    code: 0x06,
    origin: 'either',
    fields: [
      ['request', 'varint'],
      ['code', 'varint'],
      ['retry_after_ms', 'varint'],
      ['message', 'text'],
    ],
  },
  DONE: { code: 0x07, origin: 'server', fields: [['request', 'varint']] },

  // Messaging (6.2).
  SEND: {
    code: 0x10,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['client_msg_id', 'varint'],
      ['kind', 'varint'],
      ['target', 'varint'],
      ['content_type', 'text'],
      ['body', 'bytes'],
    ],
  },
  SEND_ACK: {
    code: 0x11,
    origin: 'server',
    fields: [
      ['request', 'varint'],
      ['seq', 'varint'],
      ['timestamp', 'varint'],
      ['duplicate', 'flag'],
    ],
  },
  DELIVER: {
    code: 0x12,
    origin: 'server',
    fields: [
      ['inbox_seq', 'varint'],
      ['conversation', 'text'],
      ['event', { record: 'event' }],
    ],
  },
  ACK: { code: 0x13, origin: 'client', fields: [['inbox_seq', 'varint']] },
  MARK: {
    code: 0x14,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['marker', 'varint'],
      ['seq', 'varint'],
    ],
  },
  RECEIPT: {
    code: 0x15,
    origin: 'server',
    fields: [
      ['conversation', 'text'],
      ['user', 'text'],
      ['delivered', 'varint'],
      ['read', 'varint'],
    ],
  },
  TYPING: {
    code: 0x16,
    origin: 'client',
    fields: [
      ['conversation', 'text'],
      ['active', 'flag'],
    ],
  },
  TYPING_UPDATE: {
    code: 0x17,
    origin: 'server',
    fields: [
      ['conversation', 'text'],
      ['user', 'text'],
      ['active', 'flag'],
    ],
  },
  RESUME: {
    code: 0x18,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['after', 'varint'],
    ],
  },
  SYNCED: {
    code: 0x19,
    origin: 'server',
    fields: [
      ['request', 'varint'],
      ['inbox_head', 'varint'],
    ],
  },
  GAP: {
    code: 0x1a,
    origin: 'server',
    fields: [
      ['conversation', 'text'],
      ['from', 'varint'],
      ['to', 'varint'],
    ],
  },

  // Queries (6.3).
  HISTORY: {
    code: 0x20,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['anchor', 'varint'],
      ['direction', 'varint'],
      ['limit', 'varint'],
    ],
  },
  HISTORY_PAGE: {
    code: 0x21,
    origin: 'server',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['more', 'flag'],
      ['events', events],
    ],
  },
  CONVERSATIONS: {
    code: 0x22,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['cursor', 'bytes'],
      ['limit', 'varint'],
    ],
  },
  CONVERSATION_LIST: {
    code: 0x23,
    origin: 'server',
    fields: [
      ['request', 'varint'],
      ['next_cursor', 'bytes'],
      ['conversations', { list: { record: 'summary' } }],
    ],
  },

  // Groups (6.4).
  GROUP_CREATE: {
    code: 0x30,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['title', 'text'],
      ['members', texts],
    ],
  },
  GROUP_UPDATE: {
    code: 0x31,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['op', 'varint'],
      ['user', 'text'],
      ['role', 'varint'],
    ],
  },
  GROUP_GET: {
    code: 0x32,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
    ],
  },
  GROUP_INFO: {
    code: 0x33,
    origin: 'server',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['title', 'text'],
      ['members', { list: { record: 'member' } }],
    ],
  },

  // Presence (6.5).
  PRESENCE_SUBSCRIBE: {
    code: 0x40,
    origin: 'client',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['ttl_ms', 'varint'],
    ],
  },
  PRESENCE: {
    code: 0x41,
    origin: 'server',
    fields: [
      ['user', 'text'],
      ['status', 'varint'],
      ['last_seen', 'varint'],
    ],
  },

  // Cluster links (section 9): a client never sees them, but the codec is complete.
  LINK_HELLO: {
    code: 0x60,
    origin: 'link',
    fields: [
      ['version', 'varint'],
      ['node', 'text'],
      ['role', 'varint'],
      ['ring_version', 'varint'],
      ['secret', 'bytes'],
    ],
  },
  LINK_READY: {
    code: 0x61,
    origin: 'link',
    fields: [
      ['node', 'text'],
      ['ring_version', 'varint'],
    ],
  },
  ROUTED: {
    code: 0x62,
    origin: 'link',
    fields: [
      ['session', 'varint'],
      ['user', 'text'],
      ['device', 'text'],
      ['frame', 'bytes'],
    ],
  },
  SESSION_OPEN: {
    code: 0x63,
    origin: 'link',
    fields: [
      ['session', 'varint'],
      ['user', 'text'],
      ['device', 'text'],
      ['lease_ms', 'varint'],
    ],
  },
  SESSION_CLOSE: { code: 0x64, origin: 'link', fields: [['session', 'varint']] },
  FANOUT: {
    code: 0x65,
    origin: 'link',
    fields: [
      ['conversation', 'text'],
      ['inbox', 'flag'],
      ['users', texts],
      ['event', { record: 'event' }],
    ],
  },
  PUSH: {
    code: 0x66,
    origin: 'link',
    fields: [
      ['users', texts],
      ['frame', 'bytes'],
    ],
  },
  INTEREST: {
    code: 0x67,
    origin: 'link',
    fields: [
      ['node', 'text'],
      ['session', 'varint'],
      ['ttl_ms', 'varint'],
      ['users', texts],
      ['conversation', 'text'],
    ],
  },
  FETCH: {
    code: 0x68,
    origin: 'link',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['seqs', { list: 'varint' }],
    ],
  },
  EVENTS: {
    code: 0x69,
    origin: 'link',
    fields: [
      ['request', 'varint'],
      ['conversation', 'text'],
      ['events', events],
    ],
  },
  FANOUT_ACK: {
    code: 0x6a,
    origin: 'link',
    fields: [
      ['conversation', 'text'],
      ['seq', 'varint'],
    ],
  },
} as const satisfies Record<string, { code: number; origin: Origin; fields: Fields }>;

/** The name of a frame type this version knows. */
export type FrameName = keyof typeof FRAMES;

/** The decoded value of a field of kind `K`. */
export type Value<K> = K extends 'varint'
  ? bigint
  : K extends 'byte'
    ? number
    : K extends 'flag'
      ? boolean
      : K extends 'bytes'
        ? Uint8Array
        : K extends 'text'
          ? string
          : K extends { readonly list: infer I }
            ? Value<I>[]
            : K extends { readonly record: infer R extends RecordName }
              ? RecordOf<R>
              : never;

/** An object with one property per field. */
export type Shape<F extends Fields> = { -readonly [E in F[number] as E[0]]: Value<E[1]> };

/** The decoded value of a record. */
export type RecordOf<R extends RecordName> = Shape<(typeof RECORDS)[R]>;

/** A frame of a known type: `type` names it, the other properties are its fields. */
export type KnownFrame = {
  [N in FrameName]: { type: N } & Shape<(typeof FRAMES)[N]['fields']>;
}[FrameName];

/** A frame of a type this version does not know, kept whole; receivers ignore it. */
export interface UnknownFrame {
  type: 'UNKNOWN';
  /** The type code. */
  frame_type: bigint;
  /** Everything after the type code. */
  payload: Uint8Array;
}

/** Any decoded frame. */
export type Frame = KnownFrame | UnknownFrame;

/** The frame of type `N`. */
export type FrameOf<N extends FrameName> = Extract<KnownFrame, { type: N }>;

/** One conversation event (spec 4.1). */
export type Event = RecordOf<'event'>;
/** A group member and role. */
export type Member = RecordOf<'member'>;
/** The body of a membership event. */
export type MemberChange = RecordOf<'member_change'>;
/** One entry of a CONVERSATION_LIST. */
export type Summary = RecordOf<'summary'>;

/** Frame names by type code. */
export const FRAME_NAMES: ReadonlyMap<bigint, FrameName> = new Map(
  (Object.keys(FRAMES) as FrameName[]).map((name) => [BigInt(FRAMES[name].code), name]),
);
