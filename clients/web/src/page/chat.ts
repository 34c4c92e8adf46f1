/**
 * The open conversation: its header, its messages (with edit and delete on your own), a
 * divider above what is new, a button back to the newest end, and navigation. On a narrow
 * screen the chat replaces the list, and back (the button or the browser's) returns to it.
 */
import { ConversationKind, EventKind } from '../index.js';
import { showDraft, startEdit } from './composer.js';
import { ago, clock, day } from './format.js';
import { type Conversation, type Message, conversation, presence, state } from './model.js';
import { loadGroup, loadOlder, markRead } from './sync.js';
import {
  $,
  ICONS,
  avatar,
  check,
  colour,
  h,
  icon,
  narrow,
  onRender,
  reconcile,
  render,
  userProblem,
} from './view.js';

/** The message of the open conversation whose actions a tap has shown. */
let selected: bigint | undefined;

/** Where the open conversation is remembered, to reopen it after a reload. */
let rememberKey = '';

/** Opens conversation `id`: its newest page, its draft; on a wide screen, the composer. */
export function open(id: string): void {
  const conv = conversation(id);
  if (state.active !== id) {
    state.active = id;
    selected = undefined;
    conv.marker = conv.unread > 0 ? conv.readSeq : undefined;
    showDraft();
    $('add-member-form').hidden = true;
  }
  state.atBottom = true;
  localStorage.setItem(rememberKey, id);
  // On a phone the list is a page of its own: the browser's back returns to it.
  if (narrow() && !history.state?.chat) history.pushState({ chat: true }, '');
  if (conv.oldest === undefined) void loadOlder(conv);
  markRead(conv);
  render();
  if (!narrow()) requestAnimationFrame(() => $('composer-input').focus());
}

/** Closes the conversation, back to the list (the only pane on a narrow screen). */
function close(): void {
  const id = state.active;
  if (!id) return;
  state.active = undefined;
  localStorage.removeItem(rememberKey);
  showDraft();
  render();
  requestAnimationFrame(() =>
    $('conversations').querySelector<HTMLElement>(`li[data-conversation="${id}"] button`)?.focus(),
  );
}

/** Reopens the conversation that was open before the page was reloaded. */
export function reopen(key: string): void {
  rememberKey = `${key}:open`;
  // A reload keeps history.state, but not the entry before it that `back` would return to.
  if (history.state?.chat) history.replaceState(null, '');
  const id = localStorage.getItem(rememberKey);
  if (id) open(id);
}

function presenceText(conv: Conversation): string {
  if (conv.kind === ConversationKind.GROUP) {
    if (!conv.members) return 'Group';
    const online = conv.members.filter((m) => m !== state.me && presence(m) === 'online');
    return `${conv.members.length} members${online.length ? `, ${online.length} online` : ''}`;
  }
  const seen = presence(conv.title);
  if (seen !== 'offline') return seen === 'online' ? 'online' : '';
  const lastSeen = state.presence.get(conv.title)?.lastSeen;
  return lastSeen ? `last seen ${ago(lastSeen)}` : 'offline';
}

type Tick = 'sent' | 'delivered' | 'read';

/** ✓ stored, ✓✓ delivered to the other member(s), blue ✓✓ read. */
function tick(conv: Conversation, seq: bigint): Tick {
  const others =
    conv.members?.filter((m) => m !== state.me) ??
    (conv.kind === ConversationKind.DIRECT ? [conv.title] : [...conv.receipts.keys()]);
  const receipts = others.map((user) => conv.receipts.get(user));
  const all = (pick: 'delivered' | 'read') =>
    receipts.length > 0 && receipts.every((r) => r !== undefined && r[pick] >= seq);
  return all('read') ? 'read' : all('delivered') ? 'delivered' : 'sent';
}

const TICKS = {
  sent: { text: '✓', title: 'Sent' },
  delivered: { text: '✓✓', title: 'Delivered' },
  read: { text: '✓✓', title: 'Read' },
};

async function remove(conv: Conversation, message: Message): Promise<void> {
  if (!confirm('Delete this message for everyone?')) return;
  try {
    await state.client?.delete(conv.id, message.seq).ack;
  } catch (error) {
    conv.notice = `Not deleted: ${(error as Error).message}`;
    render();
  }
}

function bubble(conv: Conversation, message: Message, ticked?: Tick): HTMLElement {
  const mine = message.sender === state.me;
  const group = conv.kind === ConversationKind.GROUP;
  const sender =
    !mine && group && h('span', { class: 'sender', text: message.sender, dir: 'auto' });
  if (sender) sender.style.color = colour(message.sender);
  const node = h(
    'div',
    { class: `msg${mine ? ' mine' : ''}${message.deleted ? ' deleted' : ''}` },
    sender,
    message.deleted
      ? h('span', { class: 'text', text: 'This message was deleted' })
      : h('span', { class: 'text', text: message.text, dir: 'auto' }),
    h(
      'span',
      { class: 'meta' },
      `${message.edited && !message.deleted ? 'edited · ' : ''}${clock(message.timestamp)}`,
      ticked && h('span', { class: `tick ${ticked}`, ...TICKS[ticked] }),
    ),
  );
  node.dataset.seq = String(message.seq);
  if (mine && !message.deleted) {
    const edit = h('button', { class: 'icon-button', label: 'Edit message' }, icon(ICONS.edit));
    const del = h('button', { class: 'icon-button', label: 'Delete message' }, icon(ICONS.delete));
    edit.onclick = () => startEdit(message);
    del.onclick = () => void remove(conv, message);
    node.append(h('span', { class: 'msg-actions' }, edit, del));
    // Touch screens have no hover: a tap shows the actions.
    node.onclick = (click) => {
      if ((click.target as Element).closest('button')) return;
      selected = selected === message.seq ? undefined : message.seq;
      render();
    };
  }
  return node;
}

/** The message view's nodes by key, with the state each was drawn from. */
let drawn = new Map<string, { look: string; node: HTMLElement }>();
let drawnFor: string | undefined;

function renderMessages(conv: Conversation): void {
  const before = drawnFor === conv.id ? drawn : new Map<string, never>();
  const after = new Map<string, { look: string; node: HTMLElement }>();
  /** The node drawn for `key`, reused while its look is unchanged. */
  const keep = (key: string, look: string, draw: () => HTMLElement) => {
    const old = before.get(key);
    const node = old?.look === look ? old.node : draw();
    after.set(key, { look, node });
    return node;
  };
  const nodes: HTMLElement[] = [];
  if (conv.more && conv.oldest !== 0n) {
    const text = conv.loading ? 'Loading…' : 'Scroll up for older messages';
    nodes.push(keep('older', text, () => h('div', { class: 'load-older', text })));
  }
  let lastDay = '';
  let marked = false;
  const messages = [...conv.messages.values()].sort((a, b) => (a.seq < b.seq ? -1 : 1));
  for (const message of messages) {
    const today = day(message.timestamp);
    if (today !== lastDay) {
      nodes.push(keep(`day:${today}`, '', () => h('div', { class: 'day', text: today })));
      lastDay = today;
    }
    if (message.kind !== EventKind.MESSAGE) {
      if (message.text)
        nodes.push(
          keep(`seq:${message.seq}`, message.text, () =>
            h('div', { class: 'system', text: message.text }),
          ),
        );
      continue;
    }
    if (!marked && message.seq > (conv.marker ?? message.seq) && message.sender !== state.me) {
      marked = true;
      nodes.push(keep('marker', '', () => h('div', { class: 'new-marker', text: 'New messages' })));
    }
    const ticked = message.sender === state.me ? tick(conv, message.seq) : undefined;
    const look = JSON.stringify([message.text, message.deleted, message.edited, ticked]);
    const node = keep(`seq:${message.seq}`, look, () => bubble(conv, message, ticked));
    node.classList.toggle('selected', message.seq === selected);
    nodes.push(node);
  }
  for (const outgoing of conv.outgoing.values()) {
    nodes.push(
      keep(`out:${outgoing.clientMsgId}`, '', () =>
        h(
          'div',
          { class: 'msg mine pending' },
          h('span', { class: 'text', text: outgoing.text, dir: 'auto' }),
          h(
            'span',
            { class: 'meta' },
            clock(outgoing.timestamp),
            h('span', { class: 'tick', text: '🕓', title: 'Sending' }),
          ),
        ),
      ),
    );
  }
  drawn = after;
  drawnFor = conv.id;

  const box = $('messages');
  const fromBottom = box.scrollHeight - box.scrollTop;
  reconcile(box, nodes);
  box.scrollTop = state.atBottom ? box.scrollHeight : box.scrollHeight - fromBottom;
}

function renderChat(): void {
  const conv = state.active ? state.conversations.get(state.active) : undefined;
  $('app').classList.toggle('chat-open', conv !== undefined);
  for (const id of ['chat-header', 'timeline', 'typing', 'composer'])
    $(id).hidden = conv === undefined;
  $('chat-empty').hidden = conv !== undefined;
  if (!conv) {
    $('add-member-form').hidden = true;
    return;
  }
  const direct = conv.kind === ConversationKind.DIRECT;
  $('chat-name').textContent = conv.title;
  $('chat-status').textContent = presenceText(conv);
  avatar($('chat-avatar'), conv.title, direct ? presence(conv.title) : undefined);
  $('add-member-button').hidden = direct;
  $('add-member-button').setAttribute('aria-expanded', String(!$('add-member-form').hidden));
  renderMessages(conv);

  const jump = $('jump');
  jump.hidden = state.atBottom;
  jump.querySelector('span')!.textContent = conv.unread > 0 ? `${conv.unread} new` : '';
  jump.setAttribute(
    'aria-label',
    conv.unread > 0
      ? `Jump to the newest messages, ${conv.unread} new`
      : 'Jump to the newest messages',
  );
  const typers = [...conv.typing];
  $('typing').textContent =
    typers.length === 0 ? '' : `${typers.join(', ')} ${typers.length === 1 ? 'is' : 'are'} typing…`;
}

function toBottom(): void {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
  state.atBottom = true;
  if (state.active) markRead(conversation(state.active));
  render();
}

/** Wires the header, the message view and navigation. */
export function wireChat(): void {
  onRender(renderChat);
  const box = $('messages');
  box.onscroll = () => {
    const conv = state.active ? state.conversations.get(state.active) : undefined;
    if (!conv) return;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    if (atBottom !== state.atBottom) {
      state.atBottom = atBottom;
      markRead(conv);
      render();
    }
    if (box.scrollTop < 80) void loadOlder(conv);
  };
  // A growing composer or a new typing line shrinks the view: keep the newest end in sight.
  new ResizeObserver(() => state.atBottom && (box.scrollTop = box.scrollHeight)).observe(box);
  $('jump').onclick = toBottom;
  $('back').onclick = () => (history.state?.chat ? history.back() : close());
  addEventListener('popstate', () => !history.state?.chat && close());

  const form = $<HTMLFormElement>('add-member-form');
  const field = $<HTMLInputElement>('add-member-user');
  $('add-member-button').onclick = () => {
    form.hidden = !form.hidden;
    render();
    if (!form.hidden) field.focus();
  };
  form.onsubmit = async (submit) => {
    submit.preventDefault();
    const user = field.value.trim();
    const id = state.active;
    if (!id || !check([field, userProblem(user)])) return;
    try {
      await state.client!.addMember(id, user);
      form.reset();
      form.hidden = true;
      void loadGroup(conversation(id));
      render();
    } catch (error) {
      check([field, `Could not add ${user}: ${(error as Error).message}`]);
    }
  };
}
