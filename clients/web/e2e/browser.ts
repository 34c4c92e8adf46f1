// What the page tests share: a server, a chromium, signed-in pages, bots that speak the protocol
// from node, screenshots and an accessibility check.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';

import { type Browser, type BrowserContextOptions, type Page, chromium } from 'playwright-core';

import { Client, webSocket } from '../src/index.js';
import { BIN, Server, WEB, devToken } from './server.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Where the screenshots go (build/ is not committed): look at them after a run. */
export const SCREENSHOTS = join(WEB, 'build', 'screenshots');

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export const skip =
  (!BIN && 'set NATTER_BIN') || (typeof WebSocket !== 'function' && 'no WebSocket');

export const env = {} as { server: Server; browser: Browser };

/** Starts a server and a browser for the file's tests, and stops them after. */
export function harness(): void {
  let dataDir: string;
  before(async () => {
    if (skip) return;
    dataDir = mkdtempSync(join(tmpdir(), 'natter-e2e-'));
    mkdirSync(SCREENSHOTS, { recursive: true });
    env.server = new Server(dataDir);
    await env.server.start();
    env.browser = await chromium.launch({
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
    if (skip) return;
    // A bot left connected would reconnect forever and keep the test process alive.
    bots.forEach((client) => client.close());
    await env.browser?.close();
    await env.server?.stop().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });
}

/** A fresh browser profile (a new device) on the page, not signed in. */
export async function visit(
  name: string,
  options: BrowserContextOptions = { viewport: DESKTOP },
): Promise<Page> {
  const context = await env.browser.newContext(options);
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`[${name}] page error:`, error));
  await page.goto(`http://${env.server.ready!.http}/`);
  return page;
}

/** A new device of `name`, signed in and caught up. */
export async function signIn(name: string, options?: BrowserContextOptions): Promise<Page> {
  const page = await visit(name, options);
  await page.fill('#signin-name', name);
  await page.click('#signin-form button[type=submit]');
  await online(page);
  assert.equal(await page.textContent('#me-name'), name);
  return page;
}

/** Waits until the page is connected and caught up: the reconnect banner is gone. */
export async function online(page: Page): Promise<void> {
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#banner[hidden]', { state: 'attached' });
}

export function conversationItem(page: Page, id: string) {
  return page.locator(`#conversations li[data-conversation="${id}"]`);
}

/** Sends `text` with Enter and waits until the server stored it. */
export async function send(page: Page, text: string): Promise<void> {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
  // Stored: the bubble has a seq and a tick instead of the clock.
  await page.locator('.msg.mine:not(.pending)', { hasText: text }).first().waitFor();
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/**
 * Waits until `holds` is true of the element `selector` finds. It is looked up again on every
 * try: a render can replace it, and a replaced element has no style or size.
 */
export async function until(
  page: Page,
  selector: string,
  holds: (node: HTMLElement) => boolean,
): Promise<void> {
  // `holds` runs in the page, so it is passed as source and may use nothing from here.
  const node = `document.querySelector(${JSON.stringify(selector)})`;
  await page.waitForFunction(`${node} !== null && (${holds.toString()})(${node})`, undefined, {
    timeout: 5_000,
  });
}

const bots: Client[] = [];

/** A user driven from node through the TypeScript client, to set the scene quickly. */
export async function bot(user: string): Promise<Client> {
  const token = await devToken(env.server.ready!.http, user);
  const client = new Client({
    connect: webSocket(`ws://${env.server.ready!.http}/ws`),
    token: () => token,
  });
  bots.push(client);
  await new Promise<void>((resolve) => {
    const off = client.on('state', ({ state }) => state === 'online' && (off(), resolve()));
    client.connect();
  });
  return client;
}

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/**
 * Runs axe-core's WCAG 2 A and AA rules on the page as it is (names of buttons and fields,
 * labels, contrast of the text on screen, ...) and fails with what it found.
 */
export async function accessible(page: Page, what: string): Promise<void> {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (options: unknown) => Promise<unknown> } }).axe;
    const result = (await axe.run({
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    })) as {
      violations: {
        id: string;
        help: string;
        nodes: { target: string[]; failureSummary: string }[];
      }[];
    };
    return result.violations.map(
      (v) =>
        `${v.id}: ${v.help}\n` +
        v.nodes.map((n) => `  ${n.target.join(' ')}: ${n.failureSummary}`).join('\n'),
    );
  });
  assert.deepEqual(violations, [], `accessibility of ${what}:\n${violations.join('\n')}`);
}
