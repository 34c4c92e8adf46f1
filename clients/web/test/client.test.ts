// Client behaviour against a fake socket and a virtual clock: no real time, no network.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client, type ClientEvents } from '../src/client/client.js';
import { directConversation } from '../src/client/ids.js';
import { type Clock, type TransportHandlers, memoryStore } from '../src/client/transport.js';
import {
  type Event,
  type Frame,
  type FrameOf,
  decodeFrame,
  encodeFrame,
} from '../src/codec/index.js';

class FakeClock implements Clock {
  time = 1_767_225_600_000;
  private timers = new Map<number, { at: number; callback: () => void }>();
  private nextId = 1;
  now = () => this.time;
  setTimeout = (callback: () => void, ms: number) => {
    this.timers.set(this.nextId, { at: this.time + ms, callback });
    return this.nextId++;
  };
  clearTimeout = (handle: unknown) => void this.timers.delete(handle as number);
  /** Runs every timer due within `ms`, in time order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.timers]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = end;
  }
}

/** One fake connection: what the client sent, and a way to answer. */
class FakeSocket {
  sent: Frame[] = [];
  closed = false;
  constructor(readonly handlers: TransportHandlers) {}
  push(frame: Frame): void {
    this.handlers.message(encodeFrame(frame));
  }
  of<N extends Frame['type']>(type: N): Extract<Frame, { type: N }>[] {
    return this.sent.filter((f) => f.type === type) as Extract<Frame, { type: N }>[];
  }
  ready(inboxHead = 0n): void {
    this.handlers.open();
    this.push({
      type: 'READY',
      version: 1n,
      features: 7n,
      max_frame_size: 65536n,
      heartbeat_ms: 10_000n,
      session: 1n,
      user: 'alice',
      device: 'web-1',
      inbox_head: inboxHead,
      server_time: 0n,
    });
  }
  synced(inboxHead = 0n): void {
    const resume = this.of('RESUME').at(-1);
    assert.ok(resume, 'client sent RESUME');
    this.push({ type: 'SYNCED', request: resume.request, inbox_head: inboxHead });
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function event(seq: bigint, body = `m${seq}`): Event {
  return {
    seq,
    kind: 0n,
    target: 0n,
    flags: 0,
    timestamp: 1n,
    sender: 'bob',
    device: 'phone',
    client_msg_id: seq,
    content_type: '',
    body: new TextEncoder().encode(body),
  };
}

async function setup(store = memoryStore()) {
  const clock = new FakeClock();
  const sockets: FakeSocket[] = [];
  const client = new Client({
    connect: (handlers) => {
      const socket = new FakeSocket(handlers);
      sockets.push(socket);
      return {
        send: (bytes) => socket.sent.push(decodeFrame(bytes)),
        close: () => {
          socket.closed = true;
        },
      };
    },
    token: () => 'token',
    store,
    clock,
    random: () => 0.5,
  });
  const events: ClientEvents['event'][] = [];
  client.on('event', (e) => events.push(e));
  client.connect();
  await flush();
  return { client, clock, sockets, events, store };
}

test('HELLO carries the token, RESUME starts at inbox_head for a new device', async () => {
  const { sockets } = await setup();
  sockets[0].ready(41n);
  const hello = sockets[0].of('HELLO')[0];
  assert.equal(new TextDecoder().decode(hello.token), 'token');
  assert.equal(sockets[0].of('RESUME')[0].after, 41n);
});

test('a send is retried with the same client_msg_id after a reconnect, and acked once', async () => {
  const { client, clock, sockets } = await setup();
  sockets[0].ready();
  const pending = client.send('d/alice/bob', 'hi');
  const first = sockets[0].of('SEND')[0];
  assert.equal(first.client_msg_id, pending.clientMsgId);

  sockets[0].handlers.close('network down');
  assert.equal(client.connectionState, 'offline');
  clock.advance(60_000);
  await flush();
  assert.equal(sockets.length, 2, 'reconnected');
  sockets[1].ready();
  const again = sockets[1].of('SEND');
  assert.equal(again.length, 1);
  assert.equal(again[0].client_msg_id, first.client_msg_id);
  assert.deepEqual(again[0].body, first.body);

  sockets[1].push({
    type: 'SEND_ACK',
    request: again[0].request,
    seq: 7n,
    timestamp: 5n,
    duplicate: true,
  });
  const result = await pending.ack;
  assert.equal(result.seq, 7n);
  assert.equal(client.unacknowledged.length, 0);
});

test('a retryable ERROR resends the same client_msg_id after retry_after_ms', async () => {
  const { client, clock, sockets } = await setup();
  sockets[0].ready();
  client.send('d/alice/bob', 'hi');
  const first = sockets[0].of('SEND')[0];
  sockets[0].push({
    type: 'ERROR',
    request: first.request,
    code: 0x17n,
    retry_after_ms: 2000n,
    message: '',
  });
  assert.equal(sockets[0].of('SEND').length, 1);
  clock.advance(2000);
  const sends = sockets[0].of('SEND');
  assert.equal(sends.length, 2);
  assert.equal(sends[1].client_msg_id, first.client_msg_id);
  assert.notEqual(sends[1].request, first.request);
});

test('a final ERROR rejects the send and empties the outbox', async () => {
  const { client, sockets } = await setup();
  sockets[0].ready();
  const pending = client.send('d/alice/bob', 'hi');
  const send = sockets[0].of('SEND')[0];
  sockets[0].push({
    type: 'ERROR',
    request: send.request,
    code: 0x12n,
    retry_after_ms: 0n,
    message: 'no',
  });
  await assert.rejects(
    pending.ack,
    (error: Error & { codeName: string }) => error.codeName === 'FORBIDDEN',
  );
  assert.equal(client.unacknowledged.length, 0);
});

test('the outbox survives a reload', async () => {
  const store = memoryStore();
  const first = await setup(store);
  const pending = first.client.send('d/alice/bob', 'persisted');
  first.client.close();
  const second = await setup(store);
  second.sockets[0].ready();
  const send = second.sockets[0].of('SEND')[0];
  assert.equal(send.client_msg_id, pending.clientMsgId);
  assert.equal(new TextDecoder().decode(send.body), 'persisted');
});

test('ACKs are coalesced, persisted, and RESUME starts from the last ack', async () => {
  const store = memoryStore();
  const { client, clock, sockets, events } = await setup(store);
  sockets[0].ready(10n);
  sockets[0].synced(10n);
  for (let i = 1n; i <= 3n; i++) {
    sockets[0].push({
      type: 'DELIVER',
      inbox_seq: 10n + i,
      conversation: 'd/alice/bob',
      event: event(i),
    });
  }
  assert.equal(events.length, 3);
  assert.equal(sockets[0].of('ACK').length, 0, 'not yet: coalescing');
  clock.advance(1000);
  assert.deepEqual(
    sockets[0].of('ACK').map((a) => a.inbox_seq),
    [13n],
  );
  client.close();

  const reloaded = await setup(store);
  reloaded.sockets[0].ready(20n);
  assert.equal(reloaded.sockets[0].of('RESUME')[0].after, 13n);
});

test('duplicates are dropped by inbox_seq and by (conversation, seq)', async () => {
  const { sockets, events } = await setup();
  sockets[0].ready();
  const conv = directConversation('bob', 'alice');
  sockets[0].push({ type: 'DELIVER', inbox_seq: 1n, conversation: conv, event: event(1n) });
  sockets[0].push({ type: 'DELIVER', inbox_seq: 1n, conversation: conv, event: event(1n) });
  sockets[0].push({ type: 'DELIVER', inbox_seq: 0n, conversation: conv, event: event(1n) });
  sockets[0].push({ type: 'DELIVER', inbox_seq: 2n, conversation: conv, event: event(2n) });
  assert.deepEqual(
    events.map((e) => e.event.seq),
    [1n, 2n],
  );
  assert.equal(events[0].source, 'replay', 'before SYNCED events are a replay');
});

test('a conversation GAP is repaired from HISTORY', async () => {
  const { sockets, events } = await setup();
  sockets[0].ready();
  sockets[0].synced();
  sockets[0].push({ type: 'GAP', conversation: 'g/team', from: 3n, to: 4n });
  await flush();
  const history = sockets[0].of('HISTORY')[0];
  assert.equal(history.anchor, 2n);
  assert.equal(history.direction, 1n);
  assert.equal(history.limit, 2n);
  sockets[0].push({
    type: 'HISTORY_PAGE',
    request: history.request,
    conversation: 'g/team',
    more: false,
    events: [event(3n), event(4n)],
  });
  await flush();
  assert.deepEqual(
    events.map((e) => [e.event.seq, e.source]),
    [
      [3n, 'repair'],
      [4n, 'repair'],
    ],
  );
});

test('an inbox GAP after SYNCED resumes from the last processed entry', async () => {
  const { sockets } = await setup();
  sockets[0].ready();
  sockets[0].synced();
  sockets[0].push({ type: 'DELIVER', inbox_seq: 1n, conversation: 'g/x', event: event(1n) });
  sockets[0].push({ type: 'GAP', conversation: '', from: 2n, to: 5n });
  assert.deepEqual(
    sockets[0].of('RESUME').map((r) => r.after),
    [0n, 1n],
  );
});

test('heartbeat PINGs when idle; silence drops the connection and backs off with jitter', async () => {
  const { client, clock, sockets } = await setup();
  const states: ClientEvents['state'][] = [];
  client.on('state', (s) => states.push(s));
  sockets[0].ready();
  sockets[0].synced();
  clock.advance(5_000);
  assert.ok(sockets[0].of('PING').length >= 1, 'PING sent within heartbeat_ms');
  clock.advance(20_000);
  assert.ok(sockets[0].closed, 'silent server dropped');
  const offline = states.find((s) => s.state === 'offline');
  // From 1 s with equal jitter: between half of it and all of it.
  assert.ok(
    offline?.retryInMs !== undefined && offline.retryInMs >= 500 && offline.retryInMs <= 1000,
  );
});

test('GOAWAY: reconnect within reconnect_ms and resume; answers in flight still count', async () => {
  const { client, clock, sockets } = await setup();
  sockets[0].ready();
  sockets[0].synced();
  const page = client.conversations();
  const request = sockets[0].of('CONVERSATIONS')[0].request;
  sockets[0].push({ type: 'GOAWAY', code: 0x09n, reconnect_ms: 3000n, message: 'drain' });
  sockets[0].push({
    type: 'CONVERSATION_LIST',
    request,
    next_cursor: new Uint8Array(),
    conversations: [],
  });
  assert.deepEqual((await page).conversations, []);
  // Nothing new goes out on a draining connection; it waits for the next one.
  const later = client.history('g/x');
  assert.equal(sockets[0].of('HISTORY').length, 0, 'no new request after GOAWAY');
  sockets[0].handlers.close('drained');
  // A random point of the window (random() is 0.5 here), not the whole of it.
  clock.advance(1_499);
  await flush();
  assert.equal(sockets.length, 1, 'waits its share of reconnect_ms');
  clock.advance(2);
  await flush();
  assert.equal(sockets.length, 2);
  sockets[1].ready();
  const held = sockets[1].of('HISTORY')[0]?.request;
  assert.ok(held !== undefined, 'the held request goes out on the next connection');
  sockets[1].push({
    type: 'HISTORY_PAGE',
    request: held,
    conversation: 'g/x',
    more: false,
    events: [],
  });
  assert.equal((await later).events.length, 0);
});

test('an idempotent request is sent again after a reconnect; GROUP_CREATE is not', async () => {
  const { client, clock, sockets } = await setup();
  sockets[0].ready();
  const history = client.history('g/x');
  const create = client.createGroup('t', []);
  sockets[0].handlers.close('lost');
  await assert.rejects(create);
  clock.advance(60_000);
  await flush();
  sockets[1].ready();
  const resent = sockets[1].of('HISTORY');
  assert.equal(resent.length, 1);
  assert.equal(sockets[1].of('GROUP_CREATE').length, 0);
  sockets[1].push({
    type: 'HISTORY_PAGE',
    request: resent[0].request,
    conversation: 'g/x',
    more: false,
    events: [],
  });
  assert.equal((await history).events.length, 0);
});

test('typing expires after 6 s without a repeat', async () => {
  const { client, clock, sockets } = await setup();
  const typing: boolean[] = [];
  client.on('typing', (t) => typing.push(t.active));
  sockets[0].ready();
  sockets[0].push({
    type: 'TYPING_UPDATE',
    conversation: 'd/alice/bob',
    user: 'bob',
    active: true,
  });
  clock.advance(6_000);
  assert.deepEqual(typing, [true, false]);
});

test('a malformed frame gets ERROR PROTOCOL_VIOLATION and a reconnect', async () => {
  const { sockets } = await setup();
  sockets[0].ready();
  sockets[0].handlers.message(Uint8Array.of(0x03, 0x04, 0x40, 0x01));
  const error = sockets[0].of('ERROR')[0] as FrameOf<'ERROR'>;
  assert.equal(error.code, 0x01n);
  assert.ok(sockets[0].closed);
});

test('direct conversation ids order users by UTF-8 bytes', () => {
  assert.equal(directConversation('bob', 'alice'), 'd/alice/bob');
  // In UTF-16 units U+1F600 (a surrogate pair) sorts before U+FF5E; in UTF-8 bytes, after.
  assert.equal(directConversation('\u{1F600}', '\uFF5E'), 'd/\uFF5E/\u{1F600}');
});

test('an inbox GAP during RESUME repairs known conversations from history', async () => {
  const { sockets, events } = await setup();
  sockets[0].ready();
  sockets[0].push({ type: 'DELIVER', inbox_seq: 1n, conversation: 'g/x', event: event(1n) });
  sockets[0].push({ type: 'GAP', conversation: '', from: 2n, to: 9n });
  await flush();
  const list = sockets[0].of('CONVERSATIONS')[0];
  sockets[0].push({
    type: 'CONVERSATION_LIST',
    request: list.request,
    next_cursor: new Uint8Array(),
    conversations: [
      {
        conversation: 'g/x',
        kind: 2n,
        title: 'x',
        last_seq: 3n,
        last_timestamp: 1n,
        read_seq: 0n,
        unread: 2n,
      },
    ],
  });
  await flush();
  const history = sockets[0].of('HISTORY')[0];
  assert.deepEqual([history.anchor, history.limit], [1n, 2n]);
  sockets[0].push({
    type: 'HISTORY_PAGE',
    request: history.request,
    conversation: 'g/x',
    more: false,
    events: [event(2n), event(3n)],
  });
  await flush();
  assert.deepEqual(
    events.map((e) => e.event.seq),
    [1n, 2n, 3n],
  );
});

test('a message above the frame limit is refused without touching the connection', async () => {
  const { client, sockets } = await setup();
  sockets[0].ready();
  const pending = client.send('g/x', 'x'.repeat(70_000));
  await assert.rejects(
    pending.ack,
    (error: Error & { codeName: string }) => error.codeName === 'PAYLOAD_TOO_LARGE',
  );
  assert.equal(sockets[0].of('SEND').length, 0);
  assert.equal(client.unacknowledged.length, 0);
});

test('a connection that dies in the middle of a burst of sends loses none of them', async () => {
  const { client, clock, sockets } = await setup();
  // Queued before READY, so they go out in one burst once it arrives.
  const pending = [1, 2, 3, 4, 5].map((i) => client.send('g/x', `m${i}`));
  const original = sockets[0].handlers;
  // The third SEND kills the connection while it is being written.
  let writes = 0;
  sockets[0].sent = new Proxy(sockets[0].sent, {
    get(target, key, receiver) {
      if (key === 'push') {
        return (frame: Frame) => {
          target.push(frame);
          if (frame.type === 'SEND' && ++writes === 3) original.close('reset');
          return target.length;
        };
      }
      return Reflect.get(target, key, receiver);
    },
  });
  sockets[0].ready();
  assert.equal(sockets[0].of('SEND').length, 3);
  clock.advance(60_000);
  await flush();
  sockets[1].ready();
  const resent = sockets[1].of('SEND');
  assert.deepEqual(
    resent.map((s) => s.client_msg_id),
    pending.map((p) => p.clientMsgId),
  );
});

test('TYPING goes out at most once a second per conversation, the last state winning', async () => {
  const { client, clock, sockets } = await setup();
  sockets[0].ready();
  sockets[0].synced();
  for (let i = 0; i < 15; i++) {
    client.typing('d/alice/bob', true);
    clock.advance(100);
  }
  client.typing('d/alice/bob', false);
  const actives = () => sockets[0].of('TYPING').map((t) => t.active);
  assert.deepEqual(actives(), [true, true], 'at 0 and 1,000 ms [NWP-6.2.7-1]');
  clock.advance(500);
  assert.deepEqual(actives(), [true, true, false], 'the stop goes out when its second ends');
});

test('after TOKEN_EXPIRED the same token is not offered again', async () => {
  const { client, clock, sockets } = await setup();
  sockets[0].ready();
  sockets[0].synced();
  sockets[0].push({
    type: 'ERROR',
    request: 0n,
    code: 0x05n,
    retry_after_ms: 0n,
    message: 'expired',
  });
  clock.advance(120_000);
  await flush();
  assert.equal(sockets.length, 1, 'no HELLO with the token the server refused [NWP-5.5-3]');
  assert.equal(client.connectionState, 'closed');
});

test('a READY outside the offer, or a frame of the wrong side, closes the connection', async () => {
  const { client, sockets } = await setup();
  sockets[0].handlers.open();
  sockets[0].push({
    type: 'READY',
    version: 2n,
    features: 0n,
    max_frame_size: 65536n,
    heartbeat_ms: 10_000n,
    session: 1n,
    user: 'alice',
    device: 'web-1',
    inbox_head: 0n,
    server_time: 0n,
  });
  assert.equal(sockets[0].of('RESUME').length, 0, 'no RESUME on another version [NWP-5.1-3]');
  assert.ok(sockets[0].closed);
  assert.equal(client.connectionState, 'closed');

  const next = await setup();
  next.sockets[0].ready();
  next.sockets[0].synced();
  next.sockets[0].push({ type: 'ACK', inbox_seq: 1n });
  assert.equal(next.sockets[0].of('ERROR')[0]?.code, 0x01n, 'PROTOCOL_VIOLATION [NWP-5.3-4]');
  assert.ok(next.sockets[0].closed);
});

test('a send longer than READY allows is refused once READY says so', async () => {
  const { client, sockets } = await setup();
  const pending = client.send('d/alice/bob', 'x'.repeat(5_000));
  sockets[0].handlers.open();
  sockets[0].push({
    type: 'READY',
    version: 1n,
    features: 0n,
    max_frame_size: 4096n,
    heartbeat_ms: 10_000n,
    session: 1n,
    user: 'alice',
    device: 'web-1',
    inbox_head: 0n,
    server_time: 0n,
  });
  await assert.rejects(pending.ack);
  assert.equal(sockets[0].of('SEND').length, 0, 'never written [NWP-5.1-5]');
  assert.equal(client.unacknowledged.length, 0);
});
