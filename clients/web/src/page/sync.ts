/** What the page reads from the server: the conversation list, previews, history, groups. */
import { type Conversation, apply, conversation, fromSummary, state } from './model.js';
import { flash, render } from './view.js';

/** How many previews are fetched at once: enough to fill the list fast, few enough to be fair. */
const PREVIEW_WORKERS = 4;
/** How far back a preview looks past trailing edits and deletes for the message they changed. */
const PREVIEW_DEPTH = 20n;

/** Reads the whole conversation list, then the previews it lacks. */
export async function refreshConversations(): Promise<void> {
  const client = state.client;
  if (!client) return;
  try {
    let cursor: Uint8Array = new Uint8Array();
    do {
      const page = await client.conversations(cursor);
      page.conversations.forEach(fromSummary);
      cursor = page.next_cursor;
    } while (cursor.length > 0);
  } catch (error) {
    flash('sidebar-error', `Could not load conversations: ${(error as Error).message}`);
  }
  render();
  if (state.active) void loadOlder(conversation(state.active));
  await loadPreviews();
}

/** Fetches the newest event of every conversation whose preview is behind, newest first. */
async function loadPreviews(): Promise<void> {
  const queue = [...state.conversations.values()]
    .filter((conv) => conv.held < conv.lastSeq)
    .sort((a, b) => b.lastTimestamp - a.lastTimestamp);
  const worker = async () => {
    for (let conv = queue.shift(); conv; conv = queue.shift()) await loadPreview(conv);
  };
  await Promise.all(Array.from({ length: PREVIEW_WORKERS }, worker));
}

/**
 * Fetches the event at the conversation's last seq. The anchor is last_seq + 1, not 0: the
 * same event, without the RECEIPT frames a newest page brings [NWP-7.4-4]. When that event
 * edits or deletes an older one, a short page before it finds the message it changed.
 */
async function loadPreview(conv: Conversation): Promise<void> {
  const client = state.client;
  if (!client) return;
  try {
    let page = await client.history(conv.id, { anchor: conv.lastSeq + 1n, limit: 1n });
    page.events.forEach((event) => apply(conv.id, event));
    const newest = page.events[0];
    if (newest && conv.latest < newest.seq && page.more) {
      page = await client.history(conv.id, { anchor: newest.seq, limit: PREVIEW_DEPTH });
      page.events.forEach((event) => apply(conv.id, event));
    }
    render();
  } catch {
    // Not readable any more (removed from a group): the list keeps what it has.
  }
}

/** Loads the page of history before what is held (or the newest page). */
export async function loadOlder(conv: Conversation): Promise<void> {
  const client = state.client;
  if (!client || conv.loading || (!conv.more && conv.oldest !== undefined)) return;
  conv.loading = true;
  try {
    const page = await client.history(conv.id, { anchor: conv.oldest ?? 0n, limit: 50n });
    page.events.forEach((event) => apply(conv.id, event));
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

/** Reads a group's title and members. */
export async function loadGroup(conv: Conversation): Promise<void> {
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

const readTimers = new Map<string, ReturnType<typeof setTimeout>>();

/** Marks the open conversation read while the reader sees its newest messages. */
export function markRead(conv: Conversation): void {
  if (conv.id !== state.active || !state.visible || !state.atBottom || conv.lastSeq <= conv.readSeq)
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
