/**
 * The chat page: sign in, a conversation list, a message view and a composer, on top of
 * {@link Client}. State lives in plain maps; the page re-renders the parts that changed on the
 * next animation frame.
 */
import {
  Client,
  ConversationKind,
  type Event,
  EventFlags,
  EventKind,
  Status,
  type Summary,
  decodeRecord,
  directConversation,
  directPeer,
  isValidUserId,
  webSocket,
} from './index.js';

// ---- Session (who is signed in) ----

interface SessionInfo {
  mode: 'dev' | 'token';
  token: string;
  /** Known for dev tokens; for pasted tokens READY tells. */
  user?: string;
  device?: string;
  expiresAt?: number;
}

const SESSION_KEY = 'natter.session';

function loadSession(): SessionInfo | undefined {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null') ?? undefined;
  } catch {
    return undefined;
  }
}

function saveSession(session: SessionInfo | undefined): void {
  if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else localStorage.removeItem(SESSION_KEY);
}

async function devToken(user: string, device?: string): Promise<SessionInfo> {
  const response = await fetch('/v1/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(device ? { user, device } : { user }),
  });
  if (!response.ok) {
    const reason =
      response.status === 404 ? 'the server is not in dev mode' : await response.text();
    throw new Error(`Could not sign in: ${reason || response.statusText}`);
  }
  const answer = (await response.json()) as {
    token: string;
    user: string;
    device: string;
    expires_at: number;
  };
  return {
    mode: 'dev',
    token: answer.token,
    user: answer.user,
    device: answer.device,
    expiresAt: answer.expires_at,
  };
}

/** A short stable name for a pasted token, to key its stored cursor. */
function fingerprint(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return (hash >>> 0).toString(36);
}

// ---- Model ----

interface Message {
  seq: bigint;
  sender: string;
  device: string;
  clientMsgId: bigint;
  timestamp: number;
  kind: bigint;
  text: string;
  deleted: boolean;
  edited: boolean;
}

interface Outgoing {
  clientMsgId: bigint;
  text: string;
  timestamp: number;
}

interface Conversation {
  id: string;
  kind: bigint;
  title: string;
  lastSeq: bigint;
  lastTimestamp: number;
  preview: string;
  unread: number;
  readSeq: bigint;
  messages: Map<bigint, Message>;
  outgoing: Map<bigint, Outgoing>;
  /** History loaded from here on; undefined until the first page. */
  oldest?: bigint;
  more: boolean;
  loading: boolean;
  receipts: Map<string, { delivered: bigint; read: bigint }>;
  typing: Set<string>;
  members?: string[];
}

const state = {
  me: '',
  device: '',
  client: undefined as Client | undefined,
  conversations: new Map<string, Conversation>(),
  presence: new Map<string, { online: boolean; lastSeen: number }>(),
  active: undefined as string | undefined,
  connection: 'connecting',
  retryAt: 0,
};

const decoder = new TextDecoder();
/** How many conversations get their newest page fetched for a preview at start. */
const PREVIEWS = 30;

function conversation(id: string): Conversation {
  let conv = state.conversations.get(id);
  if (!conv) {
    const peer = directPeer(id, state.me);
    conv = {
      id,
      kind: peer === undefined ? ConversationKind.GROUP : ConversationKind.DIRECT,
      title: peer ?? id.slice(2),
      lastSeq: 0n,
      lastTimestamp: 0,
      preview: '',
      unread: 0,
      readSeq: 0n,
      messages: new Map(),
      outgoing: new Map(),
      more: true,
      loading: false,
      receipts: new Map(),
      typing: new Set(),
    };
    state.conversations.set(id, conv);
    if (peer === undefined) void loadGroup(conv);
    else state.client?.watchPresence(id);
  }
  return conv;
}

function memberChange(event: Event): string {
  try {
    return decodeRecord('member_change', event.body).user;
  } catch {
    return 'someone';
  }
}

function describe(event: Event): string {
  switch (event.kind) {
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
      return decoder.decode(event.body);
  }
}

/** Applies one conversation event to the model. */
function apply(id: string, event: Event): void {
  const conv = conversation(id);
  const timestamp = Number(event.timestamp);
  if (event.kind === EventKind.EDIT || event.kind === EventKind.DELETE) {
    const target = conv.messages.get(event.target);
    if (target && event.kind === EventKind.EDIT) {
      target.text = decoder.decode(event.body);
      target.edited = true;
    } else if (target) {
      target.deleted = true;
      target.text = '';
    }
  } else {
    conv.messages.set(event.seq, {
      seq: event.seq,
      sender: event.sender,
      device: event.device,
      clientMsgId: event.client_msg_id,
      timestamp,
      kind: event.kind,
      text: describe(event),
      deleted: (event.flags & EventFlags.DELETED) !== 0,
      edited: (event.flags & EventFlags.EDITED) !== 0,
    });
    if (event.kind === EventKind.GROUP_CREATED && conv.title === id.slice(2))
      conv.title = decoder.decode(event.body);
  }
  if (event.sender === state.me && event.device === state.device)
    conv.outgoing.delete(event.client_msg_id);
  if (event.seq > conv.lastSeq) {
    conv.lastSeq = event.seq;
    conv.lastTimestamp = timestamp;
    conv.preview = conv.messages.get(event.seq)?.text || conv.preview;
    const reading = conv.id === state.active && document.visibilityState === 'visible';
    if (
      event.sender !== state.me &&
      event.seq > conv.readSeq &&
      event.kind === EventKind.MESSAGE &&
      !reading
    ) {
      conv.unread++;
    }
  }
  if (
    event.kind === EventKind.MEMBER_ADDED &&
    conv.members &&
    !conv.members.includes(memberChange(event))
  ) {
    conv.members.push(memberChange(event));
  }
}

async function loadGroup(conv: Conversation): Promise<void> {
  try {
    const info = await state.client?.group(conv.id);
    if (!info) return;
    conv.title = info.title || conv.title;
    conv.members = info.members.map((m) => m.user);
    state.client?.watchPresence(conv.id);
    render();
  } catch {
    // Not a member any more, or the group is gone: keep what we have.
  }
}

function fromSummary(summary: Summary): void {
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

async function refreshConversations(): Promise<void> {
  const client = state.client;
  if (!client) return;
  try {
    let cursor: Uint8Array = new Uint8Array();
    do {
      const page = await client.conversations(cursor);
      page.conversations.forEach(fromSummary);
      cursor = page.next_cursor;
    } while (cursor.length > 0);
    // Previews come from the newest page; fetch it for the conversations on screen.
    const recent = [...state.conversations.values()]
      .sort((a, b) => b.lastTimestamp - a.lastTimestamp)
      .slice(0, PREVIEWS);
    for (const conv of recent) {
      if (conv.preview === '' && conv.lastSeq > 0n && conv.oldest === undefined)
        void loadOlder(conv);
    }
    if (state.active) void loadOlder(conversation(state.active));
  } catch (error) {
    showSidebarError(error);
  }
  render();
}

/** Loads the page of history before what is held (or the newest page). */
async function loadOlder(conv: Conversation): Promise<void> {
  const client = state.client;
  if (!client || conv.loading || (!conv.more && conv.oldest !== undefined)) return;
  conv.loading = true;
  try {
    const page = await client.history(conv.id, { anchor: conv.oldest ?? 0n, limit: 50n });
    for (const event of page.events) apply(conv.id, event);
    const first = page.events[0];
    if (first)
      conv.oldest = conv.oldest === undefined || first.seq < conv.oldest ? first.seq : conv.oldest;
    else conv.oldest ??= 0n;
    conv.more = page.more;
  } catch {
    // A direct chat nobody wrote in yet has no history; that is fine.
    conv.more = false;
    conv.oldest ??= 0n;
  } finally {
    conv.loading = false;
  }
  render();
  markRead(conv);
}

const readTimers = new Map<string, ReturnType<typeof setTimeout>>();

/** Marks the open conversation read while the page is visible. */
function markRead(conv: Conversation): void {
  if (
    conv.id !== state.active ||
    document.visibilityState !== 'visible' ||
    conv.lastSeq <= conv.readSeq
  )
    return;
  const seq = conv.lastSeq;
  conv.readSeq = seq;
  conv.unread = 0;
  render();
  // One MARK for a burst of messages; a later seq covers the earlier ones.
  clearTimeout(readTimers.get(conv.id));
  const send = () => {
    readTimers.delete(conv.id);
    state.client?.mark(conv.id, seq).catch(() => undefined);
  };
  readTimers.set(conv.id, setTimeout(send, 300));
}

// ---- Rendering ----

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { class?: string; text?: string; title?: string } = {},
  ...children: (Node | string | false | undefined)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title) node.title = props.title;
  for (const child of children) if (child) node.append(child);
  return node;
}

const COLORS = [
  '#e8715a',
  '#3d8fd6',
  '#4caf7a',
  '#9c6ade',
  '#d69a2d',
  '#2aa5a0',
  '#d65c91',
  '#6b7f99',
];

function avatar(target: HTMLElement, name: string, dot?: boolean): void {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)!) >>> 0;
  target.replaceChildren(Array.from(name)[0] ?? '?');
  target.style.background = COLORS[hash % COLORS.length];
  if (dot !== undefined) target.append(h('span', { class: dot ? 'dot online' : 'dot' }));
}

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function when(ms: number): string {
  if (!ms) return '';
  const date = new Date(ms);
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return clock(ms);
  return date.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

function ago(ms: number): string {
  const minutes = Math.round((Date.now() - ms) / 60_000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  if (minutes < 24 * 60) return `${Math.round(minutes / 60)} h ago`;
  return new Date(ms).toLocaleDateString();
}

function presenceText(conv: Conversation): string {
  if (conv.kind === ConversationKind.GROUP) {
    if (!conv.members) return 'Group';
    const online = conv.members.filter(
      (m) => m !== state.me && state.presence.get(m)?.online,
    ).length;
    return `${conv.members.length} members${online ? `, ${online} online` : ''}`;
  }
  const presence = state.presence.get(conv.title);
  if (!presence) return '';
  if (presence.online) return 'online';
  return presence.lastSeen ? `last seen ${ago(presence.lastSeen)}` : 'offline';
}

let scheduled = false;

/** Re-renders on the next frame; many events in a burst cost one render. */
function render(): void {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    renderBanner();
    renderList();
    renderChat();
  });
}

function renderBanner(): void {
  const banner = $('banner');
  const online = state.connection === 'online';
  banner.hidden = online;
  if (online) return;
  if (state.connection === 'offline') {
    const seconds = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    banner.textContent = seconds > 0 ? `Offline. Reconnecting in ${seconds} s…` : 'Reconnecting…';
  } else {
    banner.textContent = state.connection === 'syncing' ? 'Catching up…' : 'Connecting…';
  }
}

function renderList(): void {
  $('me-name').textContent = state.me;
  $('me-status').textContent = state.connection === 'online' ? 'online' : state.connection;
  avatar($('me-avatar'), state.me, state.connection === 'online');
  const unread = [...state.conversations.values()].reduce((sum, conv) => sum + conv.unread, 0);
  document.title = unread > 0 ? `(${unread}) natter` : 'natter';
  const list = $('conversations');
  const conversations = [...state.conversations.values()].sort(
    (a, b) => b.lastTimestamp - a.lastTimestamp || a.title.localeCompare(b.title),
  );
  if (conversations.length === 0) {
    list.replaceChildren(h('li', { class: 'empty-list', text: 'No conversations yet.' }));
    return;
  }
  list.replaceChildren(
    ...conversations.map((conv) => {
      const face = h('span', { class: 'avatar' });
      const direct = conv.kind === ConversationKind.DIRECT;
      avatar(
        face,
        conv.title,
        direct ? (state.presence.get(conv.title)?.online ?? false) : undefined,
      );
      const item = h(
        'li',
        { class: conv.id === state.active ? 'active' : '' },
        face,
        h(
          'div',
          { class: 'conv-text' },
          h(
            'div',
            { class: 'conv-top' },
            h('span', { class: 'conv-name', text: conv.title }),
            h('span', { class: 'conv-time', text: when(conv.lastTimestamp) }),
          ),
          h(
            'div',
            { class: 'conv-bottom' },
            h('span', {
              class: 'conv-preview',
              text: conv.typing.size ? 'typing…' : conv.preview || (direct ? 'Say hello' : ''),
            }),
            conv.unread > 0 &&
              h('span', {
                class: 'badge',
                text: String(conv.unread),
                title: `${conv.unread} unread`,
              }),
          ),
        ),
      );
      item.dataset.conversation = conv.id;
      item.onclick = () => open(conv.id);
      return item;
    }),
  );
}

/** ✓ stored, ✓✓ delivered to the other member(s), blue ✓✓ read. */
function tick(conv: Conversation, seq: bigint): HTMLElement {
  const others =
    conv.members?.filter((m) => m !== state.me) ??
    (conv.kind === ConversationKind.DIRECT ? [conv.title] : [...conv.receipts.keys()]);
  const receipts = others.map((user) => conv.receipts.get(user));
  const all = (pick: 'delivered' | 'read') =>
    receipts.length > 0 && receipts.every((r) => r !== undefined && r[pick] >= seq);
  if (all('read')) return h('span', { class: 'tick read', text: '✓✓', title: 'Read' });
  if (all('delivered')) return h('span', { class: 'tick', text: '✓✓', title: 'Delivered' });
  return h('span', { class: 'tick', text: '✓', title: 'Sent' });
}

function renderChat(): void {
  const conv = state.active ? state.conversations.get(state.active) : undefined;
  $('chat-empty').hidden = !!conv;
  $('chat-header').hidden = !conv;
  $('composer').hidden = !conv;
  const box = $('messages');
  box.hidden = !conv;
  $('typing').hidden = !conv;
  if (!conv) return;

  const direct = conv.kind === ConversationKind.DIRECT;
  $('chat-name').textContent = conv.title;
  $('chat-status').textContent = presenceText(conv);
  avatar(
    $('chat-avatar'),
    conv.title,
    direct ? (state.presence.get(conv.title)?.online ?? false) : undefined,
  );
  $('add-member-form').hidden = direct;

  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const nodes: Node[] = [];
  if (conv.more && conv.oldest !== 0n)
    nodes.push(
      h('div', {
        class: 'load-older',
        text: conv.loading ? 'Loading…' : 'Scroll up for older messages',
      }),
    );
  let lastDay = '';
  const messages = [...conv.messages.values()].sort((a, b) => (a.seq < b.seq ? -1 : 1));
  for (const message of messages) {
    const day = new Date(message.timestamp).toDateString();
    if (day !== lastDay) {
      nodes.push(
        h('div', {
          class: 'day',
          text:
            day === new Date().toDateString()
              ? 'Today'
              : new Date(message.timestamp).toLocaleDateString(),
        }),
      );
      lastDay = day;
    }
    if (message.kind !== EventKind.MESSAGE) {
      if (message.text) nodes.push(h('div', { class: 'system', text: message.text }));
      continue;
    }
    const mine = message.sender === state.me;
    const bubble = h(
      'div',
      { class: `msg${mine ? ' mine' : ''}${message.deleted ? ' deleted' : ''}` },
      !mine && !direct && h('span', { class: 'sender', text: message.sender }),
      message.deleted ? 'This message was deleted' : message.text,
      h(
        'span',
        { class: 'meta' },
        `${message.edited ? 'edited · ' : ''}${clock(message.timestamp)}`,
        mine && tick(conv, message.seq),
      ),
    );
    bubble.dataset.seq = String(message.seq);
    nodes.push(bubble);
  }
  for (const outgoing of conv.outgoing.values()) {
    nodes.push(
      h(
        'div',
        { class: 'msg mine pending' },
        outgoing.text,
        h(
          'span',
          { class: 'meta' },
          clock(outgoing.timestamp),
          h('span', { class: 'tick', text: '🕓', title: 'Sending' }),
        ),
      ),
    );
  }
  box.replaceChildren(...nodes);
  box.scrollTop = atBottom ? box.scrollHeight : box.scrollHeight - fromBottom;

  const typers = [...conv.typing];
  $('typing').textContent =
    typers.length === 0 ? '' : `${typers.join(', ')} ${typers.length === 1 ? 'is' : 'are'} typing…`;
}

// ---- Actions ----

function open(id: string): void {
  state.active = id;
  const conv = conversation(id);
  if (conv.oldest === undefined) void loadOlder(conv);
  markRead(conv);
  render();
  requestAnimationFrame(() => {
    const box = $('messages');
    box.scrollTop = box.scrollHeight;
    $('composer-input').focus();
  });
}

function showSidebarError(error: unknown): void {
  const text = error instanceof Error ? error.message : String(error);
  $('sidebar-error').textContent = text;
  setTimeout(() => {
    if ($('sidebar-error').textContent === text) $('sidebar-error').textContent = '';
  }, 6000);
}

let typingSince = 0;
let typingStop: ReturnType<typeof setTimeout> | undefined;

function onComposerInput(): void {
  const input = $<HTMLTextAreaElement>('composer-input');
  input.style.height = 'auto';
  input.style.height = `${input.scrollHeight}px`;
  const id = state.active;
  if (!id || !state.client) return;
  // Repeat every 3 s while typing, as receivers expire the indicator after 6 s.
  if (Date.now() - typingSince > 3000) {
    state.client.typing(id, true);
    typingSince = Date.now();
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(() => stopTyping(id), 4000);
}

function stopTyping(id: string): void {
  clearTimeout(typingStop);
  if (typingSince === 0) return;
  typingSince = 0;
  state.client?.typing(id, false);
}

function sendMessage(): void {
  const input = $<HTMLTextAreaElement>('composer-input');
  const text = input.value.trim();
  const id = state.active;
  if (!text || !id || !state.client) return;
  const conv = conversation(id);
  const pending = state.client.send(id, text);
  conv.outgoing.set(pending.clientMsgId, {
    clientMsgId: pending.clientMsgId,
    text,
    timestamp: Date.now(),
  });
  pending.ack.catch((error: Error) => {
    conv.outgoing.delete(pending.clientMsgId);
    showSidebarError(`Not sent: ${error.message}`);
    render();
  });
  input.value = '';
  input.style.height = 'auto';
  stopTyping(id);
  render();
}

// ---- Wiring ----

function start(session: SessionInfo): void {
  $('signin').hidden = true;
  $('app').hidden = false;
  state.me = session.user ?? '';
  state.device = session.device ?? '';
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const client = new Client({
    connect: webSocket(url),
    store: localStorage,
    storeKey: session.user
      ? `natter:${session.user}:${session.device}`
      : `natter:token-${fingerprint(session.token)}`,
    agent: 'natter-web/0.1',
    token: async () => {
      // Dev tokens are minted on demand; renew one that is about to expire.
      if (
        session.mode === 'dev' &&
        session.user &&
        (session.expiresAt ?? 0) < Date.now() + 60_000
      ) {
        Object.assign(session, await devToken(session.user, session.device));
        saveSession(session);
      }
      return session.token;
    },
  });
  state.client = client;
  let renewedToken = false;

  client.on('ready', (ready) => {
    state.me = ready.user;
    state.device = ready.device;
  });
  client.on('state', ({ state: connection, retryInMs, error }) => {
    state.connection = connection;
    state.retryAt = Date.now() + (retryInMs ?? 0);
    if (connection === 'closed' && error && error.code !== 0n) {
      // A dev server restarted with a new secret rejects the old token: mint one, once.
      if (session.mode === 'dev' && !renewedToken) {
        renewedToken = true;
        session.expiresAt = 0;
        client.connect();
        return;
      }
      signOut(`Signed out: ${error.message}`);
      return;
    }
    if (connection === 'online') renewedToken = false;
    render();
  });
  client.on('synced', () => void refreshConversations());
  client.on('event', ({ conversation: id, event }) => {
    apply(id, event);
    conversation(id).typing.delete(event.sender);
    markRead(conversation(id));
    render();
  });
  client.on('sent', ({ conversation: id, clientMsgId, seq, timestamp }) => {
    const conv = conversation(id);
    const outgoing = conv.outgoing.get(clientMsgId);
    if (outgoing && !conv.messages.has(seq)) {
      apply(id, {
        seq,
        kind: EventKind.MESSAGE,
        target: 0n,
        flags: 0,
        timestamp,
        sender: state.me,
        device: state.device,
        client_msg_id: clientMsgId,
        content_type: '',
        body: new TextEncoder().encode(outgoing.text),
      });
    }
    conv.outgoing.delete(clientMsgId);
    render();
  });
  client.on('receipt', (receipt) => {
    const conv = conversation(receipt.conversation);
    if (receipt.user === state.me) {
      if (receipt.read > conv.readSeq) conv.readSeq = receipt.read;
      recountUnreadAfterRead(conv);
    } else {
      conv.receipts.set(receipt.user, { delivered: receipt.delivered, read: receipt.read });
    }
    render();
  });
  client.on('typing', ({ conversation: id, user, active }) => {
    const conv = conversation(id);
    if (user === state.me) return;
    if (active) conv.typing.add(user);
    else conv.typing.delete(user);
    render();
  });
  client.on('presence', ({ user, status, last_seen }) => {
    state.presence.set(user, { online: status === Status.ONLINE, lastSeen: Number(last_seen) });
    render();
  });
  client.on('gap', () => void refreshConversations());
  client.connect();
  render();
  setInterval(renderBanner, 1000);
  // Leaving the page flushes the pending ACK; coming back from the back/forward cache reconnects.
  addEventListener('pagehide', () => client.close());
  addEventListener('pageshow', (show) => show.persisted && client.connect());
}

function recountUnreadAfterRead(conv: Conversation): void {
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

function signOut(message = ''): void {
  state.client?.close();
  saveSession(undefined);
  location.hash = message ? `#${encodeURIComponent(message)}` : '';
  location.reload();
}

function showSignIn(): void {
  $('app').hidden = true;
  $('signin').hidden = false;
  const note = decodeURIComponent(location.hash.slice(1));
  $('signin-error').textContent = note;
  $('signin-name').focus();
}

function wire(): void {
  $<HTMLFormElement>('signin-form').onsubmit = async (submit) => {
    submit.preventDefault();
    const user = $<HTMLInputElement>('signin-name').value.trim();
    if (!isValidUserId(user)) {
      $('signin-error').textContent = 'A name is 1 to 64 characters without spaces or /.';
      return;
    }
    try {
      const session = await devToken(user);
      saveSession(session);
      history.replaceState(null, '', location.pathname);
      start(session);
    } catch (error) {
      $('signin-error').textContent = (error as Error).message;
    }
  };
  $('signin-token-button').onclick = () => {
    const token = $<HTMLTextAreaElement>('signin-token').value.trim();
    if (!token) return;
    const session: SessionInfo = { mode: 'token', token };
    saveSession(session);
    start(session);
  };
  $('signout').onclick = () => signOut();
  const chatForm = $<HTMLFormElement>('new-chat-form');
  const groupForm = $<HTMLFormElement>('new-group-form');
  $('new-chat-button').onclick = () => {
    chatForm.hidden = !chatForm.hidden;
    groupForm.hidden = true;
    if (!chatForm.hidden) $('new-chat-user').focus();
  };
  $('new-group-button').onclick = () => {
    groupForm.hidden = !groupForm.hidden;
    chatForm.hidden = true;
    if (!groupForm.hidden) $('new-group-title').focus();
  };
  chatForm.onsubmit = (submit) => {
    submit.preventDefault();
    const input = $<HTMLInputElement>('new-chat-user');
    const user = input.value.trim();
    if (!isValidUserId(user) || user === state.me) {
      showSidebarError(user === state.me ? 'Pick someone else.' : 'Not a valid user id.');
      return;
    }
    input.value = '';
    chatForm.hidden = true;
    open(directConversation(state.me, user));
  };
  groupForm.onsubmit = async (submit) => {
    submit.preventDefault();
    const title = $<HTMLInputElement>('new-group-title').value.trim();
    const members = $<HTMLInputElement>('new-group-members')
      .value.split(/[\s,]+/)
      .filter((m) => m && m !== state.me);
    const invalid = members.find((m) => !isValidUserId(m));
    if (!title || invalid !== undefined) {
      showSidebarError(invalid ? `Not a valid user id: ${invalid}` : 'Give the group a name.');
      return;
    }
    try {
      const info = await state.client!.createGroup(title, members);
      const conv = conversation(info.conversation);
      conv.title = info.title;
      conv.members = info.members.map((m) => m.user);
      groupForm.reset();
      groupForm.hidden = true;
      open(info.conversation);
    } catch (error) {
      showSidebarError(`Could not create the group: ${(error as Error).message}`);
    }
  };
  $<HTMLFormElement>('add-member-form').onsubmit = async (submit) => {
    submit.preventDefault();
    const input = $<HTMLInputElement>('add-member-user');
    const user = input.value.trim();
    const id = state.active;
    if (!id || !isValidUserId(user)) return;
    try {
      await state.client!.addMember(id, user);
      input.value = '';
      void loadGroup(conversation(id));
    } catch (error) {
      showSidebarError(`Could not add ${user}: ${(error as Error).message}`);
    }
  };
  const input = $<HTMLTextAreaElement>('composer-input');
  input.oninput = onComposerInput;
  input.onkeydown = (key) => {
    if (key.key === 'Enter' && !key.shiftKey && !key.isComposing) {
      key.preventDefault();
      sendMessage();
    }
  };
  $<HTMLFormElement>('composer').onsubmit = (submit) => {
    submit.preventDefault();
    sendMessage();
  };
  $('messages').onscroll = () => {
    const conv = state.active ? state.conversations.get(state.active) : undefined;
    if (conv && $('messages').scrollTop < 80) void loadOlder(conv);
  };
  document.addEventListener('visibilitychange', () => {
    if (state.active) markRead(conversation(state.active));
  });
}

wire();
const saved = loadSession();
if (saved) start(saved);
else showSignIn();
