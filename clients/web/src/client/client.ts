/**
 * The natter client: one connection at a time, reconnecting and resuming on its own.
 *
 * It behaves like the Rust SDK: HELLO/READY, heartbeat PINGs, request ids with exactly one
 * terminal answer, RESUME from the last acknowledged inbox_seq (persisted), coalesced ACKs,
 * dedup by inbox_seq and by (conversation, seq), an outbox retried with the same
 * client_msg_id until acknowledged, jittered exponential backoff, GAP repair from HISTORY and
 * GOAWAY handling. Everything the application sees arrives as typed events.
 */
import {
  DEFAULT_MAX_FRAME_SIZE,
  DecodeError,
  Direction,
  ErrorCode,
  type Event,
  EventKind,
  FRAMES,
  Features,
  type Frame,
  type FrameName,
  type FrameOf,
  GroupOp,
  Marker,
  Role,
  VERSION,
  closesConnection,
  decodeMessage,
  encodeFrame,
  enumName,
  isRetryable,
} from '../codec/index.js';
import { Emitter } from './emitter.js';
import {
  type Clock,
  type Connect,
  type KeyValueStore,
  type Transport,
  memoryStore,
  systemClock,
} from './transport.js';

/** Where the connection is. */
export type ConnectionState =
  | 'connecting' // opening a connection and authenticating
  | 'syncing' // authenticated, replaying what was missed
  | 'online' // replay done: events are live
  | 'offline' // waiting to reconnect
  | 'closed'; // stopped by close() or a fatal error

/** An ERROR answer or a connection failure, with the wire code when there is one. */
export class NatterError extends Error {
  constructor(
    /** The wire error code; 0n for a local failure such as a lost connection. */
    readonly code: bigint,
    message: string,
    /** Retry no sooner than this, in milliseconds. */
    readonly retryAfterMs = 0,
  ) {
    super(message);
    this.name = 'NatterError';
  }

  /** The spec's name of the code, such as `FORBIDDEN`. */
  get codeName(): string {
    return this.code === 0n
      ? 'LOCAL'
      : (enumName(ErrorCode, this.code) ?? `0x${this.code.toString(16)}`);
  }
}

/** How an event reached the client. */
export type EventSource = 'live' | 'replay' | 'repair';

/** Everything a client reports, by event name. */
export interface ClientEvents {
  state: { state: ConnectionState; retryInMs?: number; error?: NatterError };
  ready: FrameOf<'READY'>;
  synced: { inboxHead: bigint };
  event: { conversation: string; event: Event; inboxSeq: bigint; source: EventSource };
  receipt: FrameOf<'RECEIPT'>;
  typing: { conversation: string; user: string; active: boolean };
  presence: FrameOf<'PRESENCE'>;
  gap: { conversation: string; from: bigint; to: bigint };
  sent: SendResult;
  sendFailed: { conversation: string; clientMsgId: bigint; error: NatterError };
}

/** The outcome of an acknowledged send. */
export interface SendResult {
  conversation: string;
  clientMsgId: bigint;
  seq: bigint;
  timestamp: bigint;
  duplicate: boolean;
}

/** A send in the outbox. */
export interface PendingSend {
  conversation: string;
  clientMsgId: bigint;
  /** Resolves once the server has stored the event durably; rejects on a final error. */
  ack: Promise<SendResult>;
}

/** Client settings. */
export interface ClientOptions {
  /** Opens a connection; see `webSocket(url)`. */
  connect: Connect;
  /** The credential, asked for before every connection attempt (so it can be refreshed). */
  token: () => string | Promise<string>;
  /** Where the inbox cursor and the outbox survive a reload; memory by default. */
  store?: KeyValueStore;
  /** Key prefix in `store`, so several users or devices can share it. */
  storeKey?: string;
  clock?: Clock;
  /** A number in [0, 1); Math.random by default. */
  random?: () => number;
  /** Client name and version, for the server's logs. */
  agent?: string;
  /** First reconnect delay and its cap, in milliseconds. */
  backoff?: { initialMs: number; maxMs: number };
  /** How long ACKs are coalesced, in milliseconds. */
  ackDelayMs?: number;
}

interface Pending {
  frame: Frame;
  answer: FrameName;
  /** Whether the request is idempotent, so it is sent again after a reconnect. */
  retry: boolean;
  sent: boolean;
  resolve(frame: Frame): void;
  reject(error: NatterError): void;
}

interface OutboxEntry {
  conversation: string;
  clientMsgId: bigint;
  kind: bigint;
  target: bigint;
  contentType: string;
  body: Uint8Array;
  request?: bigint;
  /** Not before this time (a retry-after); 0 means now. */
  notBefore: number;
  waiters: { resolve(result: SendResult): void; reject(error: NatterError): void }[];
}

/** The SEND frame of an outbox entry. */
function sendFrame(entry: OutboxEntry, request: bigint): Frame {
  return {
    type: 'SEND',
    request,
    conversation: entry.conversation,
    client_msg_id: entry.clientMsgId,
    kind: entry.kind,
    target: entry.target,
    content_type: entry.contentType,
    body: entry.body,
  };
}

const HELLO_TIMEOUT_MS = 10_000;
const TYPING_EXPIRY_MS = 6_000;
/** At most one TYPING a second goes to a conversation (`[NWP-6.2.7-1]`). */
const TYPING_INTERVAL_MS = 1_000;
/** The smallest max_frame_size a peer may announce (`[NWP-3-4]`). */
const MIN_MAX_FRAME_SIZE = 4096n;
const PRESENCE_TTL_MS = 5 * 60_000;
const PRESENCE_RETRY_MS = 15_000;
const MAX_FRAME_SIZE = 1024n * 1024n;
const HISTORY_PAGE = 200n;
const SEEN_CAPACITY = 10_000;
const ACK_EVERY = 64n;
/** Sends kept while offline; past this the application is told instead of memory growing. */
const MAX_OUTBOX = 1_000;

/** Whether a request of this type can be repeated without changing its effect. */
const IDEMPOTENT = new Set<FrameName>([
  'MARK',
  'HISTORY',
  'CONVERSATIONS',
  'GROUP_GET',
  'PRESENCE_SUBSCRIBE',
]);

/** A connection to natter that survives disconnects. */
export class Client extends Emitter<ClientEvents> {
  private readonly store: KeyValueStore;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly ackDelayMs: number;

  private state: ConnectionState = 'offline';
  private transport?: Transport;
  /** Incremented per connection, so callbacks of an old one are ignored. */
  private generation = 0;
  private attempt = 0;
  private reconnectTimer?: unknown;
  private helloTimer?: unknown;
  private heartbeatTimer?: unknown;
  private ackTimer?: unknown;
  private goawayMs?: number;
  /** GOAWAY came: no new request goes out on this connection (`[NWP-5.4-2]`). */
  private draining = false;
  /** The token the server said had expired: never offered again (`[NWP-5.5-3]`). */
  private expiredToken?: string;
  private lastSent = 0;
  private lastReceived = 0;
  private heartbeatMs = 30_000;
  private ready?: FrameOf<'READY'>;
  private currentToken?: string;
  private resumeRequest?: bigint;

  private nextRequest = 1n;
  private nextNonce = 1n;
  private readonly pending = new Map<bigint, Pending>();
  private readonly outbox: OutboxEntry[] = [];
  private lastClientMsgId = 0n;

  /** The highest inbox_seq processed, and the highest acknowledged to the server. */
  private processed = 0n;
  private acked = 0n;
  private readonly seen = new Set<string>();
  /** The highest seq known per conversation, to notice holes. */
  private readonly heads = new Map<string, bigint>();
  private readonly typingTimers = new Map<string, unknown>();
  /** Per conversation: when TYPING last went out, and the state waiting for its second. */
  private readonly typingSent = new Map<
    string,
    { at: number; pending?: boolean; timer?: unknown }
  >();
  private readonly presenceWatches = new Map<string, unknown>();

  constructor(private readonly options: ClientOptions) {
    super();
    this.store = options.store ?? memoryStore();
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    // From 1 s, doubling, with jitter (`[NWP-5.5-3]`); 30 s is below the spec's ceiling.
    this.backoff = options.backoff ?? { initialMs: 1_000, maxMs: 30_000 };
    this.ackDelayMs = options.ackDelayMs ?? 250;
    this.acked = BigInt(this.store.getItem(this.key('cursor')) ?? '0');
    this.processed = this.acked;
    this.loadOutbox();
  }

  // ---- Public API ----

  /** The connection state now. */
  get connectionState(): ConnectionState {
    return this.state;
  }

  /** The user and device the server authenticated, once READY has arrived. */
  get session(): FrameOf<'READY'> | undefined {
    return this.ready;
  }

  /** Sends not yet acknowledged, oldest first. */
  get unacknowledged(): { conversation: string; clientMsgId: bigint; body: Uint8Array }[] {
    return this.outbox.map(({ conversation, clientMsgId, body }) => ({
      conversation,
      clientMsgId,
      body,
    }));
  }

  /** Starts connecting; the client reconnects on its own until {@link close}. */
  connect(): void {
    if (this.state === 'closed') this.state = 'offline';
    if (this.transport || this.reconnectTimer !== undefined) return;
    void this.open();
  }

  /** Closes the connection for good, flushing the pending ACK first. */
  close(): void {
    this.flushAck();
    this.clearTimer('reconnectTimer');
    this.drop(new NatterError(0n, 'closed'), 'closed');
  }

  /**
   * Appends a message (or, with `kind`, an edit or delete) to a conversation. The send is
   * kept in the outbox and retried with the same client_msg_id until acknowledged.
   */
  send(
    conversation: string,
    content: string | { body: Uint8Array; contentType?: string },
    options: { kind?: bigint; target?: bigint } = {},
  ): PendingSend {
    const { body, contentType } =
      typeof content === 'string'
        ? { body: new TextEncoder().encode(content), contentType: '' }
        : { body: content.body, contentType: content.contentType ?? '' };
    const clientMsgId = this.newClientMsgId();
    const entry: OutboxEntry = {
      conversation,
      clientMsgId,
      kind: options.kind ?? EventKind.MESSAGE,
      target: options.target ?? 0n,
      contentType,
      body,
      notBefore: 0,
      waiters: [],
    };
    // A frame above the server's limit would cost the connection; refuse it here instead.
    const limit = this.ready?.max_frame_size ?? DEFAULT_MAX_FRAME_SIZE;
    if (BigInt(encodeFrame(sendFrame(entry, 0n)).length + 8) > limit) {
      const error = new NatterError(ErrorCode.PAYLOAD_TOO_LARGE, 'message too large');
      return { conversation, clientMsgId, ack: Promise.reject(error) };
    }
    if (this.outbox.length >= MAX_OUTBOX) {
      const error = new NatterError(ErrorCode.LIMIT_EXCEEDED, 'too many messages waiting to go');
      return { conversation, clientMsgId, ack: Promise.reject(error) };
    }
    const ack = new Promise<SendResult>((resolve, reject) =>
      entry.waiters.push({ resolve, reject }),
    );
    this.outbox.push(entry);
    this.saveOutbox();
    this.flushOutbox();
    return { conversation, clientMsgId, ack };
  }

  /** Replaces the body of the message at `target`. */
  edit(conversation: string, target: bigint, text: string): PendingSend {
    return this.send(conversation, text, { kind: EventKind.EDIT, target });
  }

  /** Deletes the message at `target`. */
  delete(conversation: string, target: bigint): PendingSend {
    return this.send(conversation, { body: new Uint8Array() }, { kind: EventKind.DELETE, target });
  }

  /** A page of a conversation's events, ascending; `anchor` 0 reads from the newest end. */
  async history(
    conversation: string,
    options: { anchor?: bigint; direction?: bigint; limit?: bigint } = {},
  ): Promise<FrameOf<'HISTORY_PAGE'>> {
    const page = await this.request(
      {
        type: 'HISTORY',
        request: 0n,
        conversation,
        anchor: options.anchor ?? 0n,
        direction: options.direction ?? Direction.BACKWARD,
        limit: options.limit ?? 50n,
      },
      'HISTORY_PAGE',
    );
    const last = page.events.at(-1);
    if (last) this.noteHead(conversation, last.seq);
    return page;
  }

  /** A page of the user's conversations, most recently active first. */
  conversations(
    cursor: Uint8Array = new Uint8Array(),
    limit = 100n,
  ): Promise<FrameOf<'CONVERSATION_LIST'>> {
    return this.request({ type: 'CONVERSATIONS', request: 0n, cursor, limit }, 'CONVERSATION_LIST');
  }

  /** Moves the user's read pointer (or delivered pointer) in a conversation. */
  async mark(conversation: string, seq: bigint, marker: bigint = Marker.READ): Promise<void> {
    await this.request({ type: 'MARK', request: 0n, conversation, marker, seq }, 'DONE');
  }

  /**
   * Tells the other members whether the user is typing; repeat every 3 s while typing. At
   * most one TYPING a second goes to a conversation (`[NWP-6.2.7-1]`): a change within the
   * second goes out when it ends, the latest state winning, so this may be called on every
   * keystroke.
   */
  typing(conversation: string, active: boolean): void {
    if (this.state !== 'online' && this.state !== 'syncing') return;
    const last = this.typingSent.get(conversation);
    const wait = last ? last.at + TYPING_INTERVAL_MS - this.clock.now() : 0;
    if (last && wait > 0) {
      last.pending = active;
      last.timer ??= this.clock.setTimeout(() => {
        last.timer = undefined;
        const pending = last.pending;
        this.typingSent.delete(conversation);
        if (pending !== undefined) this.typing(conversation, pending);
      }, wait);
      return;
    }
    this.typingSent.set(conversation, { at: this.clock.now() });
    this.write({ type: 'TYPING', conversation, active });
  }

  /** Creates a group with the user as owner. */
  createGroup(title: string, members: string[]): Promise<FrameOf<'GROUP_INFO'>> {
    return this.request({ type: 'GROUP_CREATE', request: 0n, title, members }, 'GROUP_INFO', false);
  }

  /** A group's title and members. */
  group(conversation: string): Promise<FrameOf<'GROUP_INFO'>> {
    return this.request({ type: 'GROUP_GET', request: 0n, conversation }, 'GROUP_INFO');
  }

  /** Adds, removes (`GroupOp.REMOVE`) or changes the role of a member. */
  updateGroup(
    conversation: string,
    op: bigint,
    user: string,
    role: bigint = Role.MEMBER,
  ): Promise<FrameOf<'SEND_ACK'>> {
    return this.request(
      { type: 'GROUP_UPDATE', request: 0n, conversation, op, user, role },
      'SEND_ACK',
      false,
    );
  }

  /** Adds a member to a group. */
  addMember(conversation: string, user: string): Promise<FrameOf<'SEND_ACK'>> {
    return this.updateGroup(conversation, GroupOp.ADD, user);
  }

  /**
   * Watches the presence of a conversation's members: PRESENCE events follow, and the
   * interest is renewed (also after reconnects) until {@link unwatchPresence}.
   */
  watchPresence(conversation: string): void {
    if (this.presenceWatches.has(conversation)) return;
    this.presenceWatches.set(conversation, undefined);
    this.subscribePresence(conversation);
  }

  /** Stops watching a conversation's presence. */
  unwatchPresence(conversation: string): void {
    if (!this.presenceWatches.has(conversation)) return;
    this.clock.clearTimeout(this.presenceWatches.get(conversation));
    this.presenceWatches.delete(conversation);
    if (this.state === 'online' || this.state === 'syncing') {
      this.request(
        { type: 'PRESENCE_SUBSCRIBE', request: 0n, conversation, ttl_ms: 0n },
        'DONE',
        false,
      ).catch(() => undefined);
    }
  }

  // ---- Connection ----

  private key(name: string): string {
    return `${this.options.storeKey ?? 'natter'}:${name}`;
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    this.setState('connecting');
    let token: string;
    try {
      token = await this.options.token();
    } catch (error) {
      this.scheduleReconnect(new NatterError(0n, `no token: ${String(error)}`));
      return;
    }
    if (generation !== this.generation || this.state !== 'connecting') return;
    if (token === this.expiredToken) {
      // The server said this token expired: the application must give a new one; this
      // HELLO would be refused again (`[NWP-5.5-3]`).
      this.setState('closed', { error: new NatterError(ErrorCode.TOKEN_EXPIRED, 'token expired') });
      return;
    }
    this.currentToken = token;
    const transport = this.options.connect({
      open: () => generation === this.generation && this.onOpen(token),
      message: (data) => generation === this.generation && this.onMessage(data),
      close: (reason) =>
        generation === this.generation && this.drop(new NatterError(0n, reason), 'offline'),
    });
    if (generation === this.generation) this.transport = transport;
  }

  private onOpen(token: string): void {
    this.lastReceived = this.clock.now();
    this.write({
      type: 'HELLO',
      min_version: VERSION,
      max_version: VERSION,
      features: Features.ALL,
      max_frame_size: MAX_FRAME_SIZE,
      token: new TextEncoder().encode(token),
      agent: this.options.agent ?? 'natter-web/0.1',
    });
    this.helloTimer = this.clock.setTimeout(
      () => this.drop(new NatterError(ErrorCode.IDLE_TIMEOUT, 'no READY in time'), 'offline'),
      HELLO_TIMEOUT_MS,
    );
  }

  /** Ends the current connection; `next` says whether to reconnect. */
  private drop(error: NatterError, next: 'offline' | 'closed'): void {
    this.generation++;
    const transport = this.transport;
    this.transport = undefined;
    this.ready = undefined;
    this.resumeRequest = undefined;
    this.draining = false;
    for (const timer of ['helloTimer', 'heartbeatTimer', 'ackTimer'] as const)
      this.clearTimer(timer);
    for (const typing of this.typingSent.values()) this.clock.clearTimeout(typing.timer);
    this.typingSent.clear();
    transport?.close();
    for (const [id, pending] of this.pending) {
      // Requests never sent wait for the next connection; idempotent ones are sent again.
      if (next === 'offline' && (pending.retry || !pending.sent)) {
        pending.sent = false;
      } else {
        this.pending.delete(id);
        pending.reject(new NatterError(0n, `connection lost: ${error.message}`));
      }
    }
    for (const entry of this.outbox) entry.request = undefined;
    if (next === 'closed') {
      this.setState('closed', { error });
      return;
    }
    this.scheduleReconnect(error);
  }

  private scheduleReconnect(error: NatterError): void {
    if (this.state === 'closed' || this.reconnectTimer !== undefined) return;
    let delay: number;
    if (this.goawayMs !== undefined) {
      // A drain names a window: anywhere in it, so that the clients of a draining server do
      // not all come back at once (`[NWP-5.4-2]`).
      delay = this.goawayMs * this.random();
      this.goawayMs = undefined;
    } else {
      const ceiling = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** this.attempt);
      delay = Math.max(ceiling / 2 + (this.random() * ceiling) / 2, error.retryAfterMs);
      this.attempt++;
    }
    this.setState('offline', { retryInMs: Math.round(delay), error });
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.open();
    }, delay);
  }

  private setState(
    state: ConnectionState,
    extra: { retryInMs?: number; error?: NatterError } = {},
  ): void {
    this.state = state;
    this.emit('state', { state, ...extra });
  }

  private clearTimer(name: 'reconnectTimer' | 'helloTimer' | 'heartbeatTimer' | 'ackTimer'): void {
    if (this[name] !== undefined) this.clock.clearTimeout(this[name]);
    this[name] = undefined;
  }

  private write(frame: Frame): void {
    if (!this.transport) return;
    this.lastSent = this.clock.now();
    this.transport.send(encodeFrame(frame));
  }

  /** Sends ERROR for a malformed frame and closes, as every decode error demands. */
  private violation(error: DecodeError | NatterError): void {
    const code =
      error instanceof DecodeError
        ? error.kind === 'frame_too_large'
          ? ErrorCode.FRAME_TOO_LARGE
          : ErrorCode.PROTOCOL_VIOLATION
        : error.code;
    this.write({ type: 'ERROR', request: 0n, code, retry_after_ms: 0n, message: error.message });
    this.drop(new NatterError(code, error.message), 'offline');
  }

  private onMessage(data: Uint8Array | string): void {
    this.lastReceived = this.clock.now();
    if (typeof data === 'string') {
      this.violation(
        new NatterError(ErrorCode.PROTOCOL_VIOLATION, 'text message on the WebSocket'),
      );
      return;
    }
    let frame: Frame;
    try {
      const limit = this.ready ? MAX_FRAME_SIZE : DEFAULT_MAX_FRAME_SIZE;
      frame = decodeMessage(data, limit);
    } catch (error) {
      if (error instanceof DecodeError) return this.violation(error);
      throw error;
    }
    this.handle(frame);
  }

  private handle(frame: Frame): void {
    switch (frame.type) {
      case 'READY':
        return this.onReady(frame);
      case 'PING':
        return this.write({ type: 'PONG', nonce: frame.nonce });
      case 'PONG':
        return;
      case 'GOAWAY':
        // The server answers what is in flight, then closes; nothing new goes out on this
        // connection, and the next one opens within its window (`[NWP-5.4-2]`).
        this.goawayMs = Number(frame.reconnect_ms);
        this.draining = true;
        return;
      case 'ERROR':
        if (frame.request === 0n) return this.onConnectionError(frame);
        if (frame.request === this.resumeRequest) {
          const error = new NatterError(frame.code, frame.message, Number(frame.retry_after_ms));
          return this.drop(error, 'offline');
        }
        return this.answer(frame.request, frame);
      case 'SYNCED':
        if (frame.request === this.resumeRequest) return this.onSynced(frame);
        return;
      case 'DONE':
      case 'SEND_ACK':
      case 'HISTORY_PAGE':
      case 'CONVERSATION_LIST':
      case 'GROUP_INFO':
        return this.answer(frame.request, frame);
      case 'DELIVER':
        return this.onDeliver(frame);
      case 'RECEIPT':
        return this.emit('receipt', frame);
      case 'TYPING_UPDATE':
        return this.onTyping(frame);
      case 'PRESENCE':
        return this.emit('presence', frame);
      case 'GAP':
        return this.onGap(frame);
      default:
        // Unknown types are skipped (`[NWP-3-6]`). Every server frame has its case above, so
        // a known type here is a client or link frame: a violation (`[NWP-5.3-4]`).
        if (frame.type !== 'UNKNOWN') {
          const message = `${frame.type} (${FRAMES[frame.type].origin}) is not a server frame`;
          this.violation(new NatterError(ErrorCode.PROTOCOL_VIOLATION, message));
        }
        return;
    }
  }

  private onReady(ready: FrameOf<'READY'>): void {
    if (this.ready)
      return this.violation(new NatterError(ErrorCode.PROTOCOL_VIOLATION, 'second READY'));
    if (ready.version !== VERSION) {
      // Outside what HELLO offered: close, and never offer it again (`[NWP-5.1-3]`).
      const message = `READY version ${ready.version}, HELLO offered ${VERSION}`;
      this.write({
        type: 'ERROR',
        request: 0n,
        code: ErrorCode.PROTOCOL_VIOLATION,
        retry_after_ms: 0n,
        message,
      });
      return this.drop(new NatterError(ErrorCode.UNSUPPORTED_VERSION, message), 'closed');
    }
    if (ready.max_frame_size < MIN_MAX_FRAME_SIZE) {
      const message = `READY max_frame_size ${ready.max_frame_size}`;
      return this.violation(new NatterError(ErrorCode.PROTOCOL_VIOLATION, message));
    }
    this.clearTimer('helloTimer');
    this.ready = ready;
    this.heartbeatMs = Math.max(1_000, Number(ready.heartbeat_ms) || 30_000);
    this.setState('syncing');
    this.emit('ready', ready);
    this.heartbeat();
    if (this.processed === 0n && this.store.getItem(this.key('cursor')) === null) {
      // A new device starts at the head; history comes from HISTORY, not the inbox.
      this.processed = ready.inbox_head;
      this.acked = ready.inbox_head;
      this.store.setItem(this.key('cursor'), String(ready.inbox_head));
    }
    this.resume();
    for (const pending of this.pending.values()) {
      if (!this.ready) return;
      if (!pending.sent) this.transmit(pending);
    }
    for (const conversation of this.presenceWatches.keys()) this.subscribePresence(conversation);
    this.flushOutbox();
  }

  private resume(): void {
    const request = this.newRequest();
    this.resumeRequest = request;
    this.write({ type: 'RESUME', request, after: this.processed });
  }

  private onSynced(synced: FrameOf<'SYNCED'>): void {
    this.resumeRequest = undefined;
    if (synced.inbox_head > this.processed) this.processed = synced.inbox_head;
    this.scheduleAck();
    this.attempt = 0;
    this.setState('online');
    this.emit('synced', { inboxHead: synced.inbox_head });
  }

  private onConnectionError(error: FrameOf<'ERROR'>): void {
    const failure = new NatterError(
      error.code,
      error.message || enumName(ErrorCode, error.code) || 'error',
      Number(error.retry_after_ms),
    );
    if (!closesConnection(error.code)) return;
    const fatal =
      error.code === ErrorCode.UNAUTHENTICATED || error.code === ErrorCode.UNSUPPORTED_VERSION;
    // An expired token may be renewed by the application; the same one is never sent again.
    if (error.code === ErrorCode.TOKEN_EXPIRED) this.expiredToken = this.currentToken;
    this.drop(failure, fatal ? 'closed' : 'offline');
  }

  private heartbeat(): void {
    const now = this.clock.now();
    if (now - this.lastReceived > 2 * this.heartbeatMs) {
      this.drop(new NatterError(ErrorCode.IDLE_TIMEOUT, 'the server went silent'), 'offline');
      return;
    }
    if (now - this.lastSent >= this.heartbeatMs / 2) {
      this.write({ type: 'PING', nonce: this.nextNonce++ });
    }
    this.heartbeatTimer = this.clock.setTimeout(() => this.heartbeat(), this.heartbeatMs / 4);
  }

  // ---- Requests ----

  private newRequest(): bigint {
    // Ids are unique among the connection's outstanding requests; a counter never repeats.
    return this.nextRequest++;
  }

  private request<N extends FrameName>(
    frame: Frame,
    answer: N,
    retry = IDEMPOTENT.has(frame.type as FrameName),
  ): Promise<FrameOf<N>> {
    return new Promise((resolve, reject) => {
      const request = this.newRequest();
      const pending: Pending = {
        frame: { ...frame, request } as Frame,
        answer,
        retry,
        sent: false,
        resolve: resolve as (frame: Frame) => void,
        reject,
      };
      this.pending.set(request, pending);
      if (this.ready) this.transmit(pending);
    });
  }

  private transmit(pending: Pending): void {
    if (this.draining) return; // sent on the next connection (`[NWP-5.4-2]`)
    pending.sent = true;
    this.write(pending.frame);
  }

  private answer(request: bigint, frame: Frame): void {
    const outboxEntry = this.outbox.find((entry) => entry.request === request);
    if (outboxEntry) return this.onSendAnswer(outboxEntry, frame);
    const pending = this.pending.get(request);
    if (!pending) return;
    this.pending.delete(request);
    if (frame.type === 'ERROR') {
      pending.reject(
        new NatterError(
          frame.code,
          frame.message || enumName(ErrorCode, frame.code) || 'error',
          Number(frame.retry_after_ms),
        ),
      );
    } else if (frame.type === pending.answer) {
      pending.resolve(frame);
    } else {
      pending.reject(
        new NatterError(
          ErrorCode.PROTOCOL_VIOLATION,
          `${frame.type} answered ${pending.frame.type}`,
        ),
      );
    }
  }

  private subscribePresence(conversation: string): void {
    if (!this.ready || !this.presenceWatches.has(conversation)) return;
    this.clock.clearTimeout(this.presenceWatches.get(conversation));
    const again = (ms: number) => {
      if (!this.presenceWatches.has(conversation)) return;
      const timer = this.clock.setTimeout(() => this.subscribePresence(conversation), ms);
      this.presenceWatches.set(conversation, timer);
    };
    this.request(
      { type: 'PRESENCE_SUBSCRIBE', request: 0n, conversation, ttl_ms: BigInt(PRESENCE_TTL_MS) },
      'DONE',
      false,
    ).then(
      // Renew well before the interest lapses.
      () => again(PRESENCE_TTL_MS * 0.8),
      // A direct conversation nobody wrote in yet may not exist: ask again soon.
      () => again(PRESENCE_RETRY_MS),
    );
  }

  // ---- Outbox ----

  private newClientMsgId(): bigint {
    // Time-based so ids stay unique across reloads of the same device without a counter.
    const fromClock = BigInt(this.clock.now()) * 1000n;
    this.lastClientMsgId = fromClock > this.lastClientMsgId ? fromClock : this.lastClientMsgId + 1n;
    return this.lastClientMsgId;
  }

  private flushOutbox(): void {
    if (!this.ready || this.draining) return;
    const now = this.clock.now();
    for (const entry of [...this.outbox]) {
      // A write can end the connection; what is left waits for the next one.
      if (!this.ready) return;
      if (entry.request !== undefined) continue;
      // A send waiting out its retry-after holds the later ones back, so that the server
      // appends them in the order they were sent.
      if (entry.notBefore > now) return;
      const request = this.newRequest();
      const frame = encodeFrame(sendFrame(entry, request));
      if (BigInt(frame.length) > this.ready.max_frame_size) {
        // Longer than this server accepts, which READY may set below the default the
        // send was checked against: it could never go (`[NWP-5.1-5]`).
        const error = new NatterError(ErrorCode.PAYLOAD_TOO_LARGE, 'message too large');
        this.failSend(entry, error);
        continue;
      }
      entry.request = request;
      this.lastSent = this.clock.now();
      this.transport?.send(frame);
    }
  }

  private onSendAnswer(entry: OutboxEntry, frame: Frame): void {
    entry.request = undefined;
    if (frame.type === 'ERROR' && isRetryable(frame.code)) {
      const wait = Math.max(Number(frame.retry_after_ms), this.backoff.initialMs);
      entry.notBefore = this.clock.now() + wait;
      this.clock.setTimeout(() => this.flushOutbox(), wait);
      return;
    }
    this.outbox.splice(this.outbox.indexOf(entry), 1);
    this.saveOutbox();
    if (frame.type === 'SEND_ACK') {
      const result: SendResult = {
        conversation: entry.conversation,
        clientMsgId: entry.clientMsgId,
        seq: frame.seq,
        timestamp: frame.timestamp,
        duplicate: frame.duplicate,
      };
      this.noteHead(entry.conversation, frame.seq);
      for (const waiter of entry.waiters) waiter.resolve(result);
      this.emit('sent', result);
      return;
    }
    const error =
      frame.type === 'ERROR'
        ? new NatterError(frame.code, frame.message || enumName(ErrorCode, frame.code) || 'error')
        : new NatterError(ErrorCode.PROTOCOL_VIOLATION, `${frame.type} answered SEND`);
    this.failSend(entry, error, false);
  }

  /** Ends a send that will never be acknowledged, and tells its waiters. */
  private failSend(entry: OutboxEntry, error: NatterError, remove = true): void {
    if (remove) {
      this.outbox.splice(this.outbox.indexOf(entry), 1);
      this.saveOutbox();
    }
    for (const waiter of entry.waiters) waiter.reject(error);
    this.emit('sendFailed', {
      conversation: entry.conversation,
      clientMsgId: entry.clientMsgId,
      error,
    });
  }

  private saveOutbox(): void {
    const hex = (bytes: Uint8Array) =>
      Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    const saved = this.outbox.map((entry) => ({
      conversation: entry.conversation,
      clientMsgId: String(entry.clientMsgId),
      kind: String(entry.kind),
      target: String(entry.target),
      contentType: entry.contentType,
      body: hex(entry.body),
    }));
    this.store.setItem(this.key('outbox'), JSON.stringify(saved));
  }

  private loadOutbox(): void {
    try {
      const saved = JSON.parse(this.store.getItem(this.key('outbox')) ?? '[]') as Record<
        string,
        string
      >[];
      for (const item of saved) {
        const entry: OutboxEntry = {
          conversation: item.conversation,
          clientMsgId: BigInt(item.clientMsgId),
          kind: BigInt(item.kind),
          target: BigInt(item.target),
          contentType: item.contentType,
          body: Uint8Array.from(item.body.match(/../g) ?? [], (b) => parseInt(b, 16)),
          notBefore: 0,
          waiters: [],
        };
        this.outbox.push(entry);
        if (entry.clientMsgId > this.lastClientMsgId) this.lastClientMsgId = entry.clientMsgId;
      }
    } catch {
      // A damaged outbox is dropped rather than blocking the client forever.
      this.store.removeItem(this.key('outbox'));
    }
  }

  // ---- Inbox ----

  private onDeliver(deliver: FrameOf<'DELIVER'>): void {
    const source: EventSource = this.resumeRequest !== undefined ? 'replay' : 'live';
    if (deliver.inbox_seq !== 0n) {
      if (deliver.inbox_seq <= this.processed) return;
      this.processed = deliver.inbox_seq;
      this.scheduleAck();
    }
    this.accept(deliver.conversation, deliver.event, deliver.inbox_seq, source);
  }

  /** Emits an event once per (conversation, seq) and repairs holes it reveals. */
  private accept(conversation: string, event: Event, inboxSeq: bigint, source: EventSource): void {
    const id = `${conversation}\u0000${event.seq}`;
    if (this.seen.has(id)) return;
    this.seen.add(id);
    if (this.seen.size > SEEN_CAPACITY) this.seen.delete(this.seen.values().next().value as string);
    const head = this.heads.get(conversation);
    if (head !== undefined && event.seq > head + 1n && source !== 'repair') {
      void this.repair(conversation, head + 1n, event.seq - 1n);
    }
    this.noteHead(conversation, event.seq);
    this.emit('event', { conversation, event, inboxSeq, source });
  }

  private noteHead(conversation: string, seq: bigint): void {
    if ((this.heads.get(conversation) ?? 0n) < seq) this.heads.set(conversation, seq);
  }

  private scheduleAck(): void {
    if (this.processed - this.acked >= ACK_EVERY) return this.flushAck();
    if (this.ackTimer === undefined) {
      this.ackTimer = this.clock.setTimeout(() => {
        this.ackTimer = undefined;
        this.flushAck();
      }, this.ackDelayMs);
    }
  }

  private flushAck(): void {
    this.clearTimer('ackTimer');
    if (!this.ready || this.processed <= this.acked) return;
    this.write({ type: 'ACK', inbox_seq: this.processed });
    this.acked = this.processed;
    this.store.setItem(this.key('cursor'), String(this.acked));
  }

  private onGap(gap: FrameOf<'GAP'>): void {
    this.emit('gap', { conversation: gap.conversation, from: gap.from, to: gap.to });
    if (gap.conversation !== '') {
      void this.repair(gap.conversation, gap.from, gap.to);
    } else if (this.resumeRequest !== undefined) {
      // Pruned entries: the replay goes on after them; catch up from history.
      void this.repairInbox();
    } else {
      // The edge dropped live entries under pressure: replay from what was processed.
      this.resume();
    }
  }

  /** Fetches the events `from..=to` of a conversation from history. */
  private async repair(conversation: string, from: bigint, to: bigint): Promise<void> {
    let anchor = from - 1n;
    try {
      while (anchor < to) {
        const page = await this.history(conversation, {
          anchor,
          direction: Direction.FORWARD,
          limit: to - anchor < HISTORY_PAGE ? to - anchor : HISTORY_PAGE,
        });
        for (const event of page.events) {
          if (event.seq <= to) this.accept(conversation, event, 0n, 'repair');
        }
        const last = page.events.at(-1);
        if (!page.more || !last || last.seq <= anchor) break;
        anchor = last.seq;
      }
    } catch {
      // The next GAP, reconnect or page load repairs again; nothing is acked past it.
    }
  }

  /** After the inbox lost entries, fetches what is new in every conversation seen so far. */
  private async repairInbox(): Promise<void> {
    try {
      const list = await this.conversations();
      for (const summary of list.conversations) {
        const head = this.heads.get(summary.conversation);
        if (head !== undefined && summary.last_seq > head) {
          await this.repair(summary.conversation, head + 1n, summary.last_seq);
        }
      }
    } catch {
      // As above: a later reconnect tries again.
    }
  }

  private onTyping(update: FrameOf<'TYPING_UPDATE'>): void {
    const key = `${update.conversation}\u0000${update.user}`;
    this.clock.clearTimeout(this.typingTimers.get(key));
    this.typingTimers.delete(key);
    if (update.active) {
      // Typers repeat every 3 s; silence for 6 s means they stopped.
      const expire = () => {
        this.typingTimers.delete(key);
        this.emit('typing', {
          conversation: update.conversation,
          user: update.user,
          active: false,
        });
      };
      this.typingTimers.set(key, this.clock.setTimeout(expire, TYPING_EXPIRY_MS));
    }
    this.emit('typing', {
      conversation: update.conversation,
      user: update.user,
      active: update.active,
    });
  }
}
