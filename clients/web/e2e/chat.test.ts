// The chat page in headless chromium against a real `natter serve`: two people chat, the
// server restarts, they keep chatting. Needs NATTER_BIN (the natter binary) and chromium.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { type Browser, type Page, chromium } from 'playwright-core';

import { BIN, Server, WEB } from './server.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = join(WEB, 'test-artifacts');

let server: Server;
let browser: Browser;
let dataDir: string;

before(async () => {
  if (!BIN) return;
  dataDir = mkdtempSync(join(tmpdir(), 'natter-e2e-'));
  mkdirSync(ARTIFACTS, { recursive: true });
  server = new Server(dataDir);
  await server.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  if (!BIN) return;
  await browser?.close();
  await server?.stop().catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
});

async function signIn(name: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`[${name}] page error:`, error));
  await page.goto(`http://${server.ready!.http}/`);
  await page.fill('#signin-name', name);
  await page.click('#signin-form button[type=submit]');
  await online(page);
  assert.equal(await page.textContent('#me-name'), name);
  return page;
}

/** Waits until the page is connected and caught up: the reconnect banner is gone. */
async function online(page: Page): Promise<void> {
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#banner[hidden]', { state: 'attached' });
}

function conversationItem(page: Page, id: string) {
  return page.locator(`#conversations li[data-conversation="${id}"]`);
}

async function send(page: Page, text: string): Promise<void> {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
  // Stored: the bubble has a seq and a tick instead of the clock.
  await page.locator('.msg.mine:not(.pending)', { hasText: text }).waitFor();
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

test(
  'two people chat in the browser, through a server restart',
  { skip: !BIN && 'set NATTER_BIN' },
  async () => {
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
    const ready = server.ready!;
    await server.stop();
    await alice.waitForSelector('#banner:not([hidden])');
    // Written while the server is down: it waits in the outbox and goes out once, later.
    await alice.fill('#composer-input', 'Sent while you were away');
    await alice.press('#composer-input', 'Enter');
    await alice.locator('.msg.pending', { hasText: 'Sent while you were away' }).waitFor();
    await server.start(ready);
    await online(alice);
    await online(bob);
    await bob.locator('.msg', { hasText: 'Sent while you were away' }).waitFor();
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

    // Quiet state for the screenshots: everything read on both sides.
    await alice.locator('.msg.mine', { hasText: 'Back online' }).locator('.tick.read').waitFor();
    await bob.locator('.msg.mine', { hasText: 'Got it' }).locator('.tick.read').waitFor();
    await screenshot(alice, 'alice');
    await screenshot(bob, 'bob');

    // A group: Alice creates it with Bob, then adds Carol; Bob sees it and its messages.
    await alice.click('#new-group-button');
    await alice.fill('#new-group-title', 'Lunch crew');
    await alice.fill('#new-group-members', 'bob');
    await alice.press('#new-group-members', 'Enter');
    await alice.locator('#chat-name', { hasText: 'Lunch crew' }).waitFor();
    await alice.fill('#add-member-user', 'carol');
    await alice.press('#add-member-user', 'Enter');
    await alice.locator('.system', { hasText: 'alice added carol' }).waitFor();
    await alice.locator('#chat-status', { hasText: '3 members' }).waitFor();
    await send(alice, 'Welcome, both of you');
    const group = bob.locator('#conversations li', { hasText: 'Lunch crew' });
    await group.locator('.badge', { hasText: '1' }).waitFor();
    await group.click();
    await bob.locator('.msg', { hasText: 'Welcome, both of you' }).waitFor();
    await screenshot(bob, 'bob-group');
  },
);
