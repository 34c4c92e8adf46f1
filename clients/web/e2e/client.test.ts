// The TypeScript client (not the page) against a real `natter serve` over WebSocket: a
// connection killed in the middle of a burst of sends, and a server restart. Needs NATTER_BIN
// and node's WebSocket (`node --experimental-websocket` on Node 20).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { Client, type Connect, directConversation, webSocket } from '../src/index.js';
import { BIN, Server, devToken } from './server.js';

let server: Server;
let dataDir: string;

before(async () => {
  if (!BIN) return;
  dataDir = mkdtempSync(join(tmpdir(), 'natter-client-e2e-'));
  server = new Server(dataDir);
  await server.start();
});

after(async () => {
  if (!BIN) return;
  await server?.stop().catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
});

/** A client whose current socket the test can kill, as a network failure would. */
async function connect(user: string) {
  const token = await devToken(server.ready!.http, user);
  const open = webSocket(`ws://${server.ready!.http}/ws`);
  let kill = () => {};
  const connect: Connect = (handlers) => {
    const transport = open(handlers);
    kill = () => transport.close();
    return transport;
  };
  const client = new Client({
    connect,
    token: () => token,
    backoff: { initialMs: 50, maxMs: 500 },
  });
  const texts: string[] = [];
  client.on('event', ({ event }) => texts.push(new TextDecoder().decode(event.body)));
  client.connect();
  await until(client, () => client.connectionState === 'online');
  return { client, texts, kill: () => kill() };
}

/** Resolves once `done()` holds, checked after every event of the client. */
function until(client: Client, done: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (!done()) return;
      offs.forEach((off) => off());
      resolve();
    };
    const offs = [client.on('state', check), client.on('event', check), client.on('sent', check)];
    check();
  });
}

const skip = (!BIN && 'set NATTER_BIN') || (typeof WebSocket !== 'function' && 'no WebSocket');

test(
  'sends survive a killed connection and a server restart, once each and in order',
  { skip },
  async () => {
    const alice = await connect('alice');
    const bob = await connect('bob');
    const conv = directConversation('alice', 'bob');
    const expected = Array.from({ length: 20 }, (_, i) => `message ${i}`);

    // Kill Alice's connection after the first sends are written: the rest wait in the outbox,
    // the written ones are resent with the same client_msg_id and deduplicated by the server.
    const first = expected.slice(0, 10).map((text) => alice.client.send(conv, text));
    alice.kill();
    const acks = await Promise.all(first.map((p) => p.ack));

    // The server restarts in the middle of the second half.
    const ready = server.ready!;
    const second = expected.slice(10, 15).map((text) => alice.client.send(conv, text));
    await server.stop();
    second.push(...expected.slice(15).map((text) => alice.client.send(conv, text)));
    await server.start(ready);
    acks.push(...(await Promise.all(second.map((p) => p.ack))));

    const seqs = acks.map((ack) => ack.seq);
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => seqs[0] + BigInt(i)),
      'one gapless seq per message, in send order',
    );
    await until(bob.client, () => bob.texts.length >= expected.length);
    assert.deepEqual(bob.texts, expected);
    assert.equal(alice.client.unacknowledged.length, 0);
    alice.client.close();
    bob.client.close();
  },
);
