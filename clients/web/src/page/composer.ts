/**
 * The composer: a draft per conversation, the body limit in UTF-8 bytes, sending and editing.
 * What the user typed is never cut or dropped: text over the limit stays and says so, and text
 * whose send fails comes back into the draft with the reason.
 */
import { EventKind } from '../index.js';
import { count, utf8Length } from './format.js';
import { type Conversation, type Message, state } from './model.js';
import { $, onRender, render } from './view.js';

/** The server's default body limit (spec 7.12); a client must not assume more [NWP-7.12-2]. */
export const BODY_LIMIT = 16 * 1024;
/** From here on the composer counts bytes, so the limit is no surprise. */
const COUNT_FROM = BODY_LIMIT * 0.75;

/** The message being edited in the open conversation, if any. */
let editing: bigint | undefined;

const input = () => $<HTMLTextAreaElement>('composer-input');

function active(): Conversation | undefined {
  return state.active ? state.conversations.get(state.active) : undefined;
}

/** Whether the composer's height still has to follow its text (it was hidden when set). */
let unsized = false;

/** Grows the composer with its text, up to the height the style sheet allows. */
function fit(): void {
  const field = input();
  field.style.height = '';
  unsized = field.offsetParent === null;
  if (!unsized && field.value !== '') field.style.height = `${field.scrollHeight + 2}px`;
}

function setText(text: string): void {
  input().value = text;
  fit();
}

/** Shows the open conversation's draft; called when another conversation opens. */
export function showDraft(): void {
  editing = undefined;
  setText(active()?.draft ?? '');
  render();
}

/** Puts one of the user's messages into the composer to edit. */
export function startEdit(message: Message): void {
  editing = message.seq;
  setText(message.text);
  const field = input();
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);
  render();
}

function cancelEdit(): void {
  if (editing === undefined) return;
  showDraft();
  input().focus();
}

/** Puts text that did not go through back in front of the draft, with the reason. */
function restore(conv: Conversation, text: string, notice: string): void {
  conv.draft = conv.draft.trim() === '' ? text : `${text}\n${conv.draft}`;
  conv.notice = notice;
  if (conv.id === state.active && editing === undefined) setText(conv.draft);
  render();
}

function submit(): void {
  const conv = active();
  const client = state.client;
  if (!conv || !client) return;
  const text = input().value.trim();
  if (text === '') {
    conv.notice =
      editing === undefined
        ? 'Write something first: an empty message is not sent.'
        : 'An edit cannot be empty: delete the message instead.';
    render();
    return;
  }
  // Over the limit: the composer already says so, and the text stays as it is.
  if (utf8Length(text) > BODY_LIMIT) return;
  conv.notice = '';
  if (editing !== undefined) {
    const seq = editing;
    if (text !== conv.messages.get(seq)?.text)
      client
        .edit(conv.id, seq, text)
        .ack.catch((error: Error) => restore(conv, text, `Not saved: ${error.message}`));
    showDraft();
    return;
  }
  const pending = client.send(conv.id, text);
  conv.outgoing.set(pending.clientMsgId, {
    clientMsgId: pending.clientMsgId,
    text,
    timestamp: Date.now(),
  });
  pending.ack.catch((error: Error) => {
    conv.outgoing.delete(pending.clientMsgId);
    restore(conv, text, `Not sent: ${error.message}`);
  });
  conv.draft = '';
  setText('');
  stopTyping(conv.id);
  render();
}

/** The user's newest message in the open conversation that can still be edited. */
function lastOwn(conv: Conversation): Message | undefined {
  return [...conv.messages.values()]
    .filter((m) => m.sender === state.me && m.kind === EventKind.MESSAGE && !m.deleted)
    .sort((a, b) => (a.seq < b.seq ? 1 : -1))[0];
}

let typingSince = 0;
let typingStop: ReturnType<typeof setTimeout> | undefined;

function typing(id: string): void {
  // Repeat every 3 s while typing, as receivers expire the indicator after 6 s.
  if (Date.now() - typingSince > 3000) {
    state.client?.typing(id, true);
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

function setIfChanged(id: string, text: string): void {
  // Live regions announce changes; an unchanged line is not touched.
  if ($(id).textContent !== text) $(id).textContent = text;
}

function renderComposer(): void {
  const conv = active();
  if (!conv) return;
  if (unsized) fit();
  const bytes = utf8Length(input().value.trim());
  const over = bytes > BODY_LIMIT;
  $('edit-bar').hidden = editing === undefined;
  $('send-button').textContent = editing === undefined ? 'Send' : 'Save';
  $<HTMLButtonElement>('send-button').disabled = over;
  input().setAttribute('aria-invalid', String(over));
  const counter = $('composer-count');
  counter.hidden = bytes < COUNT_FROM;
  counter.classList.toggle('over', over);
  setIfChanged('composer-count', `${count(bytes)} / ${count(BODY_LIMIT)} bytes`);
  setIfChanged(
    'composer-status',
    over
      ? `Too long to send: ${count(bytes)} bytes, the limit is ${count(BODY_LIMIT)}. ` +
          'Shorten it or split it into several messages.'
      : conv.notice,
  );
}

/** Wires the composer's keys and buttons. */
export function wireComposer(): void {
  onRender(renderComposer);
  const field = input();
  field.oninput = () => {
    const conv = active();
    if (!conv) return;
    if (editing === undefined) {
      conv.draft = field.value;
      typing(conv.id);
    }
    conv.notice = '';
    fit();
    renderComposer();
  };
  field.onkeydown = (key) => {
    const conv = active();
    if (key.key === 'Enter' && !key.shiftKey && !key.isComposing) {
      key.preventDefault();
      submit();
    } else if (key.key === 'Escape' && editing !== undefined) {
      key.preventDefault();
      cancelEdit();
    } else if (key.key === 'ArrowUp' && field.value === '' && conv) {
      // As in most chats: up in an empty composer edits your last message.
      const message = lastOwn(conv);
      if (message) {
        key.preventDefault();
        startEdit(message);
      }
    }
  };
  $('edit-cancel').onclick = cancelEdit;
  $<HTMLFormElement>('composer').onsubmit = (event) => {
    event.preventDefault();
    submit();
  };
}
