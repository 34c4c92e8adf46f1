/**
 * The chat page: sign in, a conversation list, a message view and a composer, on top of
 * {@link Client}. The model (page/model.ts) lives in plain maps fed by the client's events;
 * each part of the page (list, chat, composer) redraws from it on the next animation frame.
 */
import { Client, ConversationKind, EventKind, isValidUserId, webSocket } from './index.js';
import { reopen, wireChat } from './page/chat.js';
import { wireComposer } from './page/composer.js';
import { wireList } from './page/list.js';
import { apply, conversation, onCreated, recountUnread, state } from './page/model.js';
import { type SessionInfo, devToken, loadSession, saveSession, storeKey } from './page/session.js';
import { loadGroup, markRead, refreshConversations } from './page/sync.js';
import { $, onRender, render } from './page/view.js';

const MEMBERSHIP: bigint[] = [
  EventKind.MEMBER_ADDED,
  EventKind.MEMBER_REMOVED,
  EventKind.ROLE_CHANGED,
];

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

function start(session: SessionInfo): void {
  $('signin').hidden = true;
  $('app').hidden = false;
  state.me = session.user ?? '';
  state.device = session.device ?? '';
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const client = new Client({
    connect: webSocket(url),
    store: localStorage,
    storeKey: storeKey(session),
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
  onCreated((conv) => {
    if (conv.kind === ConversationKind.GROUP) void loadGroup(conv);
    else client.watchPresence(conv.id);
  });

  client.on('ready', (ready) => {
    state.me = ready.user;
    state.device = ready.device;
  });
  // A pasted token names its user only in READY: the conversation to reopen waits for it.
  if (state.me) reopen(storeKey(session));
  else {
    const off = client.on('ready', () => {
      off();
      reopen(storeKey(session));
    });
  }
  client.on('state', ({ state: connection, retryInMs, error }) => {
    state.connection = connection;
    state.retryAt = Date.now() + (retryInMs ?? 0);
    // Presence is only news while connected: offline, nobody is known to be online.
    if (connection !== 'online' && connection !== 'syncing') state.presence.clear();
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
    const conv = conversation(id);
    conv.typing.delete(event.sender);
    if (MEMBERSHIP.includes(event.kind)) void loadGroup(conv);
    markRead(conv);
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
      recountUnread(conv);
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
    state.presence.set(user, { status, lastSeen: Number(last_seen) });
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

function signOut(message = ''): void {
  state.client?.close();
  saveSession(undefined);
  location.hash = message ? `#${encodeURIComponent(message)}` : '';
  location.reload();
}

function showSignIn(): void {
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = decodeURIComponent(location.hash.slice(1));
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
    if (!token) {
      $('signin-error').textContent = 'Paste a token first.';
      return;
    }
    const session: SessionInfo = { mode: 'token', token };
    saveSession(session);
    start(session);
  };
  $('signout').onclick = () => signOut();
  onRender(renderBanner);
  wireList();
  wireChat();
  wireComposer();
  document.addEventListener('visibilitychange', () => {
    state.visible = document.visibilityState === 'visible';
    if (state.active) markRead(conversation(state.active));
  });
  state.visible = document.visibilityState === 'visible';
}

wire();
const saved = loadSession();
if (saved) start(saved);
else showSignIn();
