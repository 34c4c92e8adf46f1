// The chat page's model without a browser: events in any order, edits and deletes, previews,
// unread counts, and the byte count the composer holds against the server's limit.
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { type Event, EventFlags, EventKind } from '../src/codec/index.js';
import { utf8Length } from '../src/page/format.js';
import { apply, conversation, fromSummary, state } from '../src/page/model.js';

const CONV = 'd/alice/bob';
const encoder = new TextEncoder();

function event(seq: number, kind: bigint, text: string, extra: Partial<Event> = {}): Event {
  return {
    seq: BigInt(seq),
    kind,
    target: 0n,
    flags: 0,
    timestamp: 1_767_225_600_000n + BigInt(seq),
    sender: 'bob',
    device: 'phone',
    client_msg_id: BigInt(seq),
    content_type: '',
    body: encoder.encode(text),
    ...extra,
  };
}

const message = (seq: number, text: string, extra?: Partial<Event>) =>
  event(seq, EventKind.MESSAGE, text, extra);
const edit = (seq: number, target: number, text: string) =>
  event(seq, EventKind.EDIT, text, { target: BigInt(target) });
const remove = (seq: number, target: number) =>
  event(seq, EventKind.DELETE, '', { target: BigInt(target) });

beforeEach(() => {
  state.me = 'alice';
  state.device = 'laptop';
  state.active = undefined;
  state.conversations.clear();
});

test('an edit applies whether it comes after its target or, from a history page, before', () => {
  apply(CONV, message(1, 'helo'));
  apply(CONV, edit(2, 1, 'hello'));
  assert.equal(conversation(CONV).messages.get(1n)?.text, 'hello');

  // Paging backward: the newest page (with the edit) arrives before the message it edits; the
  // stored slot keeps its first body and only says EDITED.
  state.conversations.clear();
  apply(CONV, edit(2, 1, 'hello'));
  apply(CONV, message(1, 'helo', { flags: EventFlags.EDITED }));
  const target = conversation(CONV).messages.get(1n)!;
  assert.deepEqual([target.text, target.edited], ['hello', true]);
});

test('the latest edit wins in any order, and a delete is final', () => {
  apply(CONV, edit(3, 1, 'second'));
  apply(CONV, edit(2, 1, 'first'));
  apply(CONV, message(1, 'original'));
  assert.equal(conversation(CONV).messages.get(1n)?.text, 'second');
  apply(CONV, remove(4, 1));
  apply(CONV, edit(5, 1, 'too late'));
  const target = conversation(CONV).messages.get(1n)!;
  assert.deepEqual([target.deleted, target.text], [true, '']);
  // Reloaded from history, the tombstone stays a tombstone.
  apply(CONV, message(1, '', { flags: EventFlags.DELETED }));
  assert.equal(conversation(CONV).messages.get(1n)?.deleted, true);
});

test('the preview is the newest message or member change, not an edit or delete', () => {
  apply(CONV, message(1, 'one'));
  apply(CONV, message(2, 'two'));
  apply(CONV, edit(3, 1, 'uno'));
  const conv = conversation(CONV);
  assert.equal(conv.latest, 2n);
  assert.equal(conv.held, 3n);
  apply('g/x', event(1, EventKind.GROUP_CREATED, 'Climbing', { sender: 'carol' }));
  assert.equal(conversation('g/x').title, 'Climbing');
  assert.equal(
    conversation('g/x').messages.get(conversation('g/x').latest)?.text.includes('created'),
    true,
  );
  // A kind this page does not know holds its seq but shows nothing [NWP-4.1-1].
  apply(CONV, event(4, 0x7fn, 'future'));
  assert.equal(conv.latest, 2n);
  assert.equal(conv.lastSeq, 4n);
});

test('a summary tells the preview is behind; unread counts only new messages from others', () => {
  fromSummary({
    conversation: CONV,
    kind: 0x01n,
    title: '',
    last_seq: 5n,
    last_timestamp: 1n,
    read_seq: 3n,
    unread: 2n,
  });
  const conv = conversation(CONV);
  assert.deepEqual([conv.lastSeq, conv.held, conv.unread], [5n, 0n, 2]);
  // The newest event, fetched for the preview, is not news.
  apply(CONV, message(5, 'five'));
  assert.deepEqual([conv.held, conv.latest, conv.unread], [5n, 5n, 2]);
  apply(CONV, message(6, 'six'));
  apply(CONV, message(7, 'mine', { sender: 'alice' }));
  assert.equal(conv.unread, 3);
});

test('a message arriving in the open conversation while scrolled up sets the new marker', () => {
  state.active = CONV;
  state.visible = true;
  state.atBottom = false;
  apply(CONV, message(1, 'seen'));
  apply(CONV, message(2, 'new'));
  const conv = conversation(CONV);
  assert.equal(conv.marker, 0n);
  state.atBottom = true;
  conv.marker = undefined;
  conv.unread = 0;
  apply(CONV, message(3, 'read at once'));
  assert.deepEqual([conv.marker, conv.unread], [undefined, 0]);
});

test('the composer counts UTF-8 bytes, as the server does', () => {
  assert.equal(utf8Length('hello'), 5);
  assert.equal(utf8Length('ب'.repeat(9_000)), 18_000);
  assert.equal(utf8Length('é'.repeat(8_192)), 16_384);
  assert.equal(utf8Length('👋'), 4);
});
