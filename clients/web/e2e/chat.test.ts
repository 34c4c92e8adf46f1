// The chat page in headless chromium against a real `natter serve`: two people chat, the
// server restarts, they keep chatting, then a group. Needs NATTER_BIN and chromium.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  conversationItem,
  env,
  harness,
  online,
  screenshot,
  send,
  signIn,
  skip,
} from './browser.js';

harness();

test('two people chat in the browser, through a server restart', { skip }, async () => {
  const conv = 'd/alice/bob';
  const alice = await signIn('alice');
  const bob = await signIn('bob');

  // Alice starts a direct chat and sends.
  await alice.click('#new-chat-button');
  await alice.fill('#new-chat-user', 'bob');
  await alice.press('#new-chat-user', 'Enter');
  await send(alice, 'Hi Bob! Lunch at noon?');

  // Bob sees the conversation with one unread message, and Alice online.
  const item = conversationItem(bob, conv);
  await item.locator('.badge', { hasText: '1' }).waitFor();
  await item.locator('.conv-preview', { hasText: 'Lunch at noon' }).waitFor();
  await item.locator('.dot.online').waitFor();

  // Alice types; Bob sees it.
  await alice.fill('#composer-input', 'Also');
  await alice.type('#composer-input', ' bring');
  await item.locator('.conv-preview', { hasText: 'typing…' }).waitFor();

  // Bob opens the chat: the message is there, presence shows, and Alice sees the read tick.
  await item.click();
  await bob.locator('.msg', { hasText: 'Lunch at noon' }).waitFor();
  await bob.locator('#chat-status', { hasText: 'online' }).waitFor();
  await bob.locator('#typing', { hasText: 'alice is typing' }).waitFor();
  await item.locator('.badge').waitFor({ state: 'detached' });
  await alice.locator('.msg.mine .tick.read').waitFor();
  await send(bob, 'Sure, see you there.');
  await alice.locator('.msg:not(.mine)', { hasText: 'see you there' }).waitFor();

  // Bob reloads: history is there.
  await bob.reload();
  await online(bob);
  await conversationItem(bob, conv).click();
  await bob.locator('.msg', { hasText: 'Lunch at noon' }).waitFor();
  await bob.locator('.msg.mine', { hasText: 'see you there' }).waitFor();

  // The server restarts on the same ports and data; both pages reconnect and keep chatting.
  const ready = env.server.ready!;
  await env.server.stop();
  await alice.waitForSelector('#banner:not([hidden])');
  // Offline, the page no longer knows who is online: Bob's dot turns grey (unknown).
  await conversationItem(alice, conv).locator('.dot.unknown').waitFor();
  assert.equal(await alice.textContent('#chat-status'), '');
  // Written while the server is down: it waits in the outbox and goes out once, later.
  await alice.fill('#composer-input', 'Sent while you were away');
  await alice.press('#composer-input', 'Enter');
  await alice.locator('.msg.pending', { hasText: 'Sent while you were away' }).waitFor();
  await env.server.start(ready);
  await online(alice);
  await online(bob);
  await bob.locator('.msg', { hasText: 'Sent while you were away' }).waitFor();
  await conversationItem(alice, conv).locator('.dot.online').waitFor();
  await send(alice, 'Back online after the restart');
  await bob.locator('.msg', { hasText: 'Back online after the restart' }).waitFor();
  await send(bob, 'Got it');
  await alice.locator('.msg:not(.mine)', { hasText: 'Got it' }).waitFor();
  // Every message exactly once on both sides.
  for (const page of [alice, bob]) {
    assert.equal(await page.locator('.msg', { hasText: 'Lunch at noon' }).count(), 1);
    for (const text of ['Sent while you were away', 'Back online after the restart']) {
      assert.equal(await page.locator('.msg', { hasText: text }).count(), 1, text);
    }
  }
  await alice.locator('.msg.mine', { hasText: 'Back online' }).locator('.tick.read').waitFor();

  // A group: Alice creates it with Bob, then adds Carol; Bob sees it and its messages.
  await alice.click('#new-group-button');
  await alice.fill('#new-group-title', 'Lunch crew');
  await alice.fill('#new-group-members', 'bob');
  await alice.press('#new-group-members', 'Enter');
  await alice.locator('#chat-name', { hasText: 'Lunch crew' }).waitFor();
  await alice.click('#add-member-button');
  await alice.fill('#add-member-user', 'carol');
  await alice.press('#add-member-user', 'Enter');
  await alice.locator('.system', { hasText: 'alice added carol' }).waitFor();
  await alice.locator('#chat-status', { hasText: '3 members' }).waitFor();
  await send(alice, 'Welcome, both of you');
  const group = bob.locator('#conversations li', { hasText: 'Lunch crew' });
  await group.locator('.badge', { hasText: '1' }).waitFor();
  await group.click();
  await bob.locator('.msg', { hasText: 'Welcome, both of you' }).waitFor();
  await screenshot(bob, 'desktop-group');
});
