/** The sidebar: who is signed in, the conversation list with previews, new chats and groups. */
import { ConversationKind, EventKind, directConversation, isValidUserId } from '../index.js';
import { utf8Length, when } from './format.js';
import { type Conversation, conversation, presence, state } from './model.js';
import { open } from './chat.js';
import { $, avatar, check, h, onRender, userProblem } from './view.js';

/** The server's default limit on a group title, in bytes (spec 7.12). */
const TITLE_LIMIT = 256;

/** The preview line of a conversation: its newest message or member change. */
function preview(conv: Conversation): HTMLElement {
  const line = h('span', { class: 'conv-preview' });
  const message = conv.messages.get(conv.latest);
  if (conv.typing.size > 0) {
    line.append(h('span', { class: 'typing-preview', text: 'typing…' }));
  } else if (message?.kind === EventKind.MESSAGE) {
    const direct = conv.kind === ConversationKind.DIRECT;
    const mine = message.sender === state.me;
    if (mine || !direct)
      line.append(h('span', { class: 'conv-sender', text: `${mine ? 'You' : message.sender}: ` }));
    if (message.deleted) line.append(h('em', { text: 'Message deleted' }));
    else line.append(h('span', { text: message.text, dir: 'auto' }));
  } else if (message) {
    line.append(h('span', { text: message.text, dir: 'auto' }));
  } else if (conv.lastSeq === 0n && conv.kind === ConversationKind.DIRECT) {
    line.append('Say hello');
  }
  return line;
}

function item(conv: Conversation): HTMLElement {
  const face = h('span', { class: 'avatar' });
  const direct = conv.kind === ConversationKind.DIRECT;
  avatar(face, conv.title, direct ? presence(conv.title) : undefined);
  const button = h(
    'button',
    { class: 'conv' },
    face,
    h(
      'span',
      { class: 'conv-text' },
      h(
        'span',
        { class: 'conv-top' },
        h('span', { class: 'conv-name', text: conv.title, dir: 'auto' }),
        h('span', { class: 'conv-time', text: when(conv.lastTimestamp) }),
      ),
      h(
        'span',
        { class: 'conv-bottom' },
        preview(conv),
        conv.unread > 0 &&
          h('span', { class: 'badge', text: String(conv.unread), title: `${conv.unread} unread` }),
      ),
    ),
  );
  if (conv.id === state.active) button.setAttribute('aria-current', 'true');
  button.onclick = () => open(conv.id);
  const li = h('li', { class: conv.id === state.active ? 'active' : '' }, button);
  li.dataset.conversation = conv.id;
  return li;
}

function renderList(): void {
  $('me-name').textContent = state.me;
  $('me-status').textContent = state.connection === 'online' ? 'online' : state.connection;
  avatar($('me-avatar'), state.me, state.connection === 'online' ? 'online' : 'unknown');
  const unread = [...state.conversations.values()].reduce((sum, conv) => sum + conv.unread, 0);
  document.title = unread > 0 ? `(${unread}) natter` : 'natter';
  const conversations = [...state.conversations.values()].sort(
    (a, b) => b.lastTimestamp - a.lastTimestamp || a.title.localeCompare(b.title),
  );
  const list = $('conversations');
  const focused = (document.activeElement?.closest('li') as HTMLElement | null)?.dataset
    .conversation;
  if (conversations.length === 0) {
    list.replaceChildren(h('li', { class: 'empty-list', text: 'No conversations yet.' }));
    return;
  }
  list.replaceChildren(...conversations.map(item));
  // The list is rebuilt; keyboard focus stays on the same conversation.
  if (focused)
    list.querySelector<HTMLElement>(`li[data-conversation="${focused}"] button`)?.focus();
}

function titleProblem(title: string): string {
  if (title === '') return 'Give the group a name.';
  const bytes = utf8Length(title);
  return bytes > TITLE_LIMIT ? `The name is ${bytes} bytes long; at most ${TITLE_LIMIT} fit.` : '';
}

/** Wires the sidebar's buttons and forms. */
export function wireList(): void {
  onRender(renderList);
  const forms = {
    chat: [$<HTMLFormElement>('new-chat-form'), $('new-chat-button'), $('new-chat-user')],
    group: [$<HTMLFormElement>('new-group-form'), $('new-group-button'), $('new-group-title')],
  } as const;
  /** Opens one of the two forms (closing the other), or closes both. */
  const show = (which?: keyof typeof forms) => {
    for (const [name, [form, button, field]] of Object.entries(forms)) {
      const shown = name === which && form.hidden;
      form.hidden = !shown;
      button.setAttribute('aria-expanded', String(shown));
      if (shown) field.focus();
    }
  };
  forms.chat[1].onclick = () => show('chat');
  forms.group[1].onclick = () => show('group');

  forms.chat[0].onsubmit = (submit) => {
    submit.preventDefault();
    const input = $<HTMLInputElement>('new-chat-user');
    const user = input.value.trim();
    if (!check([input, userProblem(user)])) return;
    forms.chat[0].reset();
    show();
    open(directConversation(state.me, user));
  };

  forms.group[0].onsubmit = async (submit) => {
    submit.preventDefault();
    const titleInput = $<HTMLInputElement>('new-group-title');
    const membersInput = $<HTMLInputElement>('new-group-members');
    const title = titleInput.value.trim();
    const members = membersInput.value.split(/[\s,]+/).filter((m) => m && m !== state.me);
    const invalid = members.find((m) => !isValidUserId(m));
    const membersProblem = invalid === undefined ? '' : userProblem(invalid);
    if (!check([titleInput, titleProblem(title)], [membersInput, membersProblem])) return;
    try {
      const info = await state.client!.createGroup(title, members);
      const conv = conversation(info.conversation);
      conv.title = info.title;
      conv.members = info.members.map((m) => m.user);
      forms.group[0].reset();
      show();
      open(info.conversation);
    } catch (error) {
      check([titleInput, `Could not create the group: ${(error as Error).message}`]);
    }
  };
}
