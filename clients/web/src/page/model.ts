/**
 * The page's model: conversations, their messages and the presence of their members, fed by
 * client events, history pages and conversation summaries. No DOM and no I/O, so unit tests
 * drive it directly.
 */
import {
  type Client,
  type ConnectionState,
  ConversationKind,
  type Event,
  EventFlags,
  EventKind,
  Status,
  type Summary,
  decodeRecord,
  directPeer,
} from '../index.js';

export interface Message {
  seq: bigint;
  sender: string;
  device: string;
  clientMsgId: bigint;
  timestamp: number;
  kind: bigint;
  /** What to show: the body, the latest edit's body, or a sentence for a member change. */
  text: string;
  deleted: boolean;
  edited: boolean;
}

/** A message sent and not acknowledged yet. */
export interface Outgoing {
  clientMsgId: bigint;
  text: string;
  timestamp: number;
}

export interface Conversation {
  id: string;
  kind: bigint;
  title: string;
  /** The newest event's seq and time, from the summary or from the events seen. */
  lastSeq: bigint;
  lastTimestamp: number;
  /** The highest seq applied, edits and deletes included; below lastSeq the preview is stale. */
  held: bigint;
  /** The seq of the newest message or member change: the list's preview. 0 for none. */
  latest: bigint;
  unread: number;
  readSeq: bigint;
  messages: Map<bigint, Message>;
  /** The edit or delete in force per target seq, kept for targets loaded later. */
  amendments: Map<bigint, Event>;
  outgoing: Map<bigint, Outgoing>;
  /** History loaded from here on; undefined until the first page. */
  oldest?: bigint;
  more: boolean;
  loading: boolean;
  receipts: Map<string, { delivered: bigint; read: bigint }>;
  typing: Set<string>;
  members?: string[];
  /** The composer's text while another conversation is open. */
  draft: string;
  /** A line for the composer, such as why a send failed. */
  notice: string;
  /** Messages after this seq are new to the reader: a divider goes above the first. */
  marker?: bigint;
}

/** What the page knows of a user's presence. */
export type Presence = 'online' | 'offline' | 'unknown';

export const state = {
  me: '',
  device: '',
  client: undefined as Client | undefined,
  conversations: new Map<string, Conversation>(),
  /** Known only while connected: the page is not told of changes while offline. */
  presence: new Map<string, { status: bigint; lastSeen: number }>(),
  active: undefined as string | undefined,
  connection: 'connecting' as ConnectionState,
  retryAt: 0,
  /** The page is visible and the message view shows its newest end: arrivals are read. */
  visible: true,
  atBottom: true,
};

let created: (conv: Conversation) => void = () => {};

/** Calls `callback` once per conversation the page learns of (to load a group, watch presence). */
export function onCreated(callback: (conv: Conversation) => void): void {
  created = callback;
}

/** The conversation `id`, created empty the first time. */
export function conversation(id: string): Conversation {
  let conv = state.conversations.get(id);
  if (!conv) {
    const peer = directPeer(id, state.me);
    conv = {
      id,
      kind: peer === undefined ? ConversationKind.GROUP : ConversationKind.DIRECT,
      title: peer ?? id.slice(2),
      lastSeq: 0n,
      lastTimestamp: 0,
      held: 0n,
      latest: 0n,
      unread: 0,
      readSeq: 0n,
      messages: new Map(),
      amendments: new Map(),
      outgoing: new Map(),
      more: true,
      loading: false,
      receipts: new Map(),
      typing: new Set(),
      draft: '',
      notice: '',
    };
    state.conversations.set(id, conv);
    created(conv);
  }
  return conv;
}

const decoder = new TextDecoder();

/** A body as text; other content types get a placeholder [NWP-7.13-2]. */
function text(event: Event): string {
  const type = event.content_type;
  if (type !== '' && !/^text\/plain\s*(;|$)/i.test(type))
    return `Unsupported content (${type.split(';')[0]})`;
  return decoder.decode(event.body);
}

function memberChange(event: Event): string {
  try {
    return decodeRecord('member_change', event.body).user;
  } catch {
    return 'someone';
  }
}

/** The text of a message or member change; empty for what is not shown. */
function describe(event: Event): string {
  switch (event.kind) {
    case EventKind.MESSAGE:
      return text(event);
    case EventKind.GROUP_CREATED:
      return `${event.sender} created the group “${decoder.decode(event.body)}”`;
    case EventKind.MEMBER_ADDED: {
      const user = memberChange(event);
      // The creator's own MEMBER_ADDED follows GROUP_CREATED and says nothing new.
      return user === event.sender ? '' : `${event.sender} added ${user}`;
    }
    case EventKind.MEMBER_REMOVED: {
      const user = memberChange(event);
      return user === event.sender ? `${user} left` : `${event.sender} removed ${user}`;
    }
    case EventKind.ROLE_CHANGED:
      return `${event.sender} changed the role of ${memberChange(event)}`;
    default:
      // Kinds this page does not know still hold their seq, and are skipped [NWP-4.1-1].
      return '';
  }
}

/** Whether amendment `next` replaces `current`: a delete is final, else the latest edit wins. */
function overrides(next: Event, current: Event | undefined): boolean {
  return (
    !current ||
    (current.kind !== EventKind.DELETE &&
      (next.kind === EventKind.DELETE || next.seq > current.seq))
  );
}

function amend(message: Message, amendment: Event): void {
  if (amendment.kind === EventKind.DELETE) {
    message.deleted = true;
    message.text = '';
  } else if (!message.deleted) {
    message.text = text(amendment);
    message.edited = true;
  }
}

/** Whether the reader sees conversation `conv`'s new messages as they come. */
function reading(conv: Conversation): boolean {
  return conv.id === state.active && state.visible && state.atBottom;
}

/**
 * Applies one conversation event to the model, whatever its order: history pages come newest
 * first, so an edit or delete can arrive before its target [NWP-7.8-1].
 */
export function apply(id: string, event: Event): void {
  const conv = conversation(id);
  if (event.seq > conv.held) conv.held = event.seq;
  if (event.kind === EventKind.EDIT || event.kind === EventKind.DELETE) {
    if (overrides(event, conv.amendments.get(event.target)))
      conv.amendments.set(event.target, event);
    const target = conv.messages.get(event.target);
    if (target) amend(target, conv.amendments.get(event.target)!);
  } else {
    const message: Message = {
      seq: event.seq,
      sender: event.sender,
      device: event.device,
      clientMsgId: event.client_msg_id,
      timestamp: Number(event.timestamp),
      kind: event.kind,
      text: describe(event),
      deleted: (event.flags & EventFlags.DELETED) !== 0,
      edited: (event.flags & EventFlags.EDITED) !== 0,
    };
    const amendment = conv.amendments.get(event.seq);
    if (amendment) amend(message, amendment);
    conv.messages.set(event.seq, message);
    if (event.seq > conv.latest && (event.kind === EventKind.MESSAGE || message.text !== ''))
      conv.latest = event.seq;
    if (event.kind === EventKind.GROUP_CREATED && conv.title === id.slice(2))
      conv.title = decoder.decode(event.body);
  }
  if (event.sender === state.me && event.device === state.device)
    conv.outgoing.delete(event.client_msg_id);
  if (event.seq > conv.lastSeq) {
    conv.lastSeq = event.seq;
    conv.lastTimestamp = Number(event.timestamp);
    if (
      event.kind === EventKind.MESSAGE &&
      event.sender !== state.me &&
      event.seq > conv.readSeq &&
      !reading(conv)
    ) {
      conv.unread++;
      if (conv.id === state.active) conv.marker ??= event.seq - 1n;
    }
  }
}

/** Takes what a CONVERSATION_LIST says of a conversation. */
export function fromSummary(summary: Summary): void {
  const conv = conversation(summary.conversation);
  if (summary.title) conv.title = summary.title;
  conv.kind = summary.kind;
  conv.readSeq = summary.read_seq > conv.readSeq ? summary.read_seq : conv.readSeq;
  conv.unread = Number(summary.unread);
  if (summary.last_seq >= conv.lastSeq) {
    if (summary.last_seq > conv.lastSeq && conv.oldest !== undefined) {
      // Newer events than we hold: reload the page so nothing is missing.
      conv.oldest = undefined;
      conv.more = true;
    }
    conv.lastSeq = summary.last_seq;
    conv.lastTimestamp = Number(summary.last_timestamp);
  }
}

/** After the read pointer moved (on another device, say): unread can only shrink. */
export function recountUnread(conv: Conversation): void {
  let unread = 0;
  for (const message of conv.messages.values()) {
    if (
      message.sender !== state.me &&
      message.seq > conv.readSeq &&
      message.kind === EventKind.MESSAGE
    )
      unread++;
  }
  conv.unread = Math.min(conv.unread, unread);
}

/** A user's presence as far as the page knows it now. */
export function presence(user: string): Presence {
  const status = state.presence.get(user)?.status;
  if (status === Status.ONLINE) return 'online';
  return status === Status.OFFLINE ? 'offline' : 'unknown';
}
