// The operator's admin page against a real `natter serve --api-key`: a wrong key is refused and
// never kept; the right one shows the server, its link and broker, and the connections of users
// connected from node, refreshed every 2 s and paused while the tab is hidden; sorting, the
// filter and pages; the server going away and coming back; sign-out; accessibility and
// screenshots on a desktop and a phone screen.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { type BrowserContextOptions, type Page } from 'playwright-core';

import {
  DESKTOP,
  PHONE,
  SCREENSHOTS,
  accessible,
  bot,
  env,
  harness,
  screenshot,
  skip,
} from './browser.js';
import { API_KEY } from './server.js';

harness();

const STORED = 'natter.admin.key';

async function openAdmin(options: BrowserContextOptions = { viewport: DESKTOP }): Promise<Page> {
  const context = await env.browser.newContext(options);
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error('[admin] page error:', error));
  await page.goto(`http://${env.server.ready!.http}/admin.html`);
  return page;
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.waitForSelector('#admin-signin:not([hidden])');
  await page.fill('#admin-key', key);
  await page.click('#admin-signin-form button[type=submit]');
}

/** The row of `user`'s connection in the table. */
const row = (page: Page, user: string) =>
  page.locator('#connections tr', {
    has: page.locator('th', { hasText: new RegExp(`^${user}$`) }),
  });

/** The users of the table's rows, top to bottom. */
const users = (page: Page) => page.locator('#connections th').allTextContents();

const stored = (page: Page) =>
  page.evaluate(
    (name) => ({ session: sessionStorage.getItem(name), local: JSON.stringify(localStorage) }),
    STORED,
  );

/** Pretends the tab is hidden or shown again, as switching tabs would. */
async function visibility(page: Page, state: 'hidden' | 'visible'): Promise<void> {
  await page.evaluate((state) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
    document.dispatchEvent(new Event('visibilitychange'));
  }, state);
}

test('the admin page shows the server and its connections', { skip }, async () => {
  const page = await openAdmin();
  await page.waitForSelector('#admin-signin:not([hidden])');
  await accessible(page, 'the admin sign-in');

  // A wrong key is refused with the reason, and not kept.
  await signIn(page, 'not-the-key');
  await page.locator('#admin-signin-error', { hasText: 'refused this API key (401)' }).waitFor();
  assert.equal((await stored(page)).session, null);
  await screenshot(page, 'admin-signin-error');

  // The right key opens the dashboard; it is kept for this tab only, never in localStorage.
  await signIn(page, API_KEY);
  await page.waitForSelector('#admin-dashboard:not([hidden])');
  const { session, local } = await stored(page);
  assert.equal(session, API_KEY);
  assert.ok(!local.includes(API_KEY), 'the key is not in localStorage');
  assert.equal(await page.locator('#admin-key').inputValue(), '');

  // Nobody is connected yet: the empty state says what to do.
  await page.locator('#connections-empty', { hasText: 'No client connections yet' }).waitFor();
  await screenshot(page, 'admin-empty');

  // A user connected from node shows up on the next refresh, with the link to the broker up.
  await bot('ada');
  await row(page, 'ada').waitFor({ timeout: 5_000 });
  assert.match((await row(page, 'ada').textContent())!, /WebSocket.*ready/);
  await page
    .locator('#links li', { hasText: 'b1' })
    .locator('.state.good', { hasText: 'up' })
    .waitFor();
  await page.locator('#server .state', { hasText: 'Ready' }).waitFor();
  await page.locator('#broker dt', { hasText: 'Storage size' }).waitFor();
  await page
    .locator('#counts div', { hasText: 'WebSocket' })
    .locator('dd', { hasText: '1' })
    .waitFor();

  // Eleven connections: sorting and the filter work on the page, and pages of ten.
  await bot('barbara');
  for (let i = 1; i <= 9; i++) await bot(`crowd-${i}`);
  await page.locator('#page-status', { hasText: '1–11 of 11' }).waitFor();
  const byUser = page.locator('th[data-sort=user]');
  await byUser.getByRole('button').click();
  assert.equal(await byUser.getAttribute('aria-sort'), 'ascending');
  assert.deepEqual((await users(page)).slice(0, 3), ['ada', 'barbara', 'crowd-1']);
  await byUser.getByRole('button').click();
  assert.equal(await byUser.getAttribute('aria-sort'), 'descending');
  assert.equal((await users(page)).at(-1), 'ada');
  assert.equal(await page.locator('th[aria-sort]').count(), 1);

  await page.fill('#filter', 'BAR');
  assert.deepEqual(await users(page), ['barbara']);
  await page.locator('#page-status', { hasText: '1 matching' }).waitFor();
  await page.fill('#filter', 'zed');
  await page.locator('#connections-empty', { hasText: 'matching “zed”' }).waitFor();
  await page.fill('#filter', '');
  await row(page, 'ada').waitFor();

  await page.selectOption('#page-size', '10');
  await page.locator('#page-status', { hasText: '1–10 of 11' }).waitFor();
  assert.ok(await page.isDisabled('#page-prev'));
  await page.click('#page-next');
  await page.locator('#page-status', { hasText: '11–11 of 11' }).waitFor();
  assert.ok(await page.isDisabled('#page-next'));
  await page.click('#page-prev');
  await page.locator('#page-status', { hasText: '1–10 of 11' }).waitFor();
  await page.selectOption('#page-size', '50');
  await page.locator('#page-status', { hasText: '1–11 of 11' }).waitFor();
  await byUser.getByRole('button').click();

  await accessible(page, 'the admin dashboard on a desktop screen');
  await screenshot(page, 'admin-desktop');
  await page.screenshot({ path: join(SCREENSHOTS, 'admin-desktop-full.png'), fullPage: true });

  // A hidden tab asks nothing; shown again, it refreshes at once.
  let asked = 0;
  page.on('request', (request) => request.url().includes('/v1/admin/') && asked++);
  await visibility(page, 'hidden');
  await page.waitForTimeout(500);
  asked = 0;
  await page.waitForTimeout(3_000);
  assert.equal(asked, 0, 'no refresh while hidden');
  const refreshed = page.waitForRequest(/\/v1\/admin\/server/, { timeout: 1_000 });
  await visibility(page, 'visible');
  await refreshed;

  // A reload keeps the tab signed in.
  await page.reload();
  await row(page, 'ada').waitFor();

  // The server goes away: the page says so and keeps the last answer; then it comes back.
  await env.server.stop();
  await page.locator('#admin-problem', { hasText: 'Cannot reach the server' }).waitFor();
  assert.ok(await row(page, 'ada').isVisible(), 'the last answer stays on screen');
  await screenshot(page, 'admin-offline');
  await env.server.start(env.server.ready);
  await page.locator('#admin-problem').waitFor({ state: 'hidden', timeout: 5_000 });
  await row(page, 'ada').waitFor({ timeout: 10_000 });

  // Signing out forgets the key, also after a reload.
  await page.click('#admin-signout');
  await page.waitForSelector('#admin-signin:not([hidden])');
  assert.equal((await stored(page)).session, null);
  await page.reload();
  await page.waitForSelector('#admin-signin:not([hidden])');
  await page.context().close();
});

test('the admin page on a phone', { skip }, async () => {
  await bot('phoebe');
  const page = await openAdmin({ viewport: PHONE, isMobile: true, hasTouch: true });
  await signIn(page, API_KEY);
  await row(page, 'phoebe').waitFor();
  await page.locator('#links .state', { hasText: 'up' }).waitFor();

  // Nothing wider than the screen but the table, which scrolls sideways in its own box.
  assert.ok(
    await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth),
    'the page does not scroll sideways',
  );
  const scroll = page.locator('#connections-scroll');
  assert.ok(await scroll.evaluate((box) => box.scrollWidth > box.clientWidth));

  await accessible(page, 'the admin dashboard on a phone');
  await screenshot(page, 'admin-phone');
  await page.screenshot({ path: join(SCREENSHOTS, 'admin-phone-full.png'), fullPage: true });
  await page.locator('#connections-heading').scrollIntoViewIfNeeded();
  await scroll.evaluate((box) => (box.scrollLeft = box.scrollWidth));
  await screenshot(page, 'admin-phone-table');
  await page.context().close();
});
