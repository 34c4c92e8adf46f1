// The chat page on a 390x844 phone screen: one pane at a time (the list, then a chat with a
// back button), nothing cut or overlapping, previews after a reload, and accessibility.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Locator, type Page } from 'playwright-core';

import { directConversation } from '../src/index.js';
import {
  PHONE,
  accessible,
  bot,
  conversationItem,
  harness,
  online,
  screenshot,
  send,
  signIn,
  skip,
  until,
} from './browser.js';

harness();

const box = async (locator: Locator) => (await locator.boundingBox())!;

/** The list fills the screen and the chat is gone, or the other way round. */
async function showing(page: Page, pane: 'list' | 'chat'): Promise<void> {
  const [shown, gone] = pane === 'list' ? ['.sidebar', '#chat'] : ['#chat', '.sidebar'];
  await page.locator(gone).waitFor({ state: 'hidden' });
  const { x, width } = await box(page.locator(shown));
  assert.deepEqual([x, width], [0, PHONE.width], `${pane} fills the width`);
}

test('a phone shows the list, then a chat with a back button', { skip }, async () => {
  const kate = await bot('kate');
  const withKate = directConversation('kate', 'liam');
  await kate.send(withKate, 'Are we still on for Saturday?').ack;
  const hike = await kate.createGroup('Weekend hiking plans', ['liam']);
  await kate.send(hike.conversation, 'Bring water and a hat').ack;

  const liam = await signIn('liam', { viewport: PHONE, isMobile: true, hasTouch: true });
  await showing(liam, 'list');
  const item = conversationItem(liam, withKate);
  await item.locator('.conv-preview', { hasText: 'Are we still on' }).waitFor();
  await conversationItem(liam, hike.conversation)
    .locator('.conv-preview', { hasText: 'kate: Bring water' })
    .waitFor();
  // Names are whole, the buttons do not wrap, the user's name does not run into Sign out.
  await until(
    liam,
    `li[data-conversation="${hike.conversation}"] .conv-name`,
    (node) => node.clientWidth > 0 && node.scrollWidth <= node.clientWidth,
  );
  const [chat, group] = [
    await box(liam.locator('#new-chat-button')),
    await box(liam.locator('#new-group-button')),
  ];
  assert.equal(group.height, chat.height, '+ Group on one line');
  const [me, signout] = [await box(liam.locator('#me-name')), await box(liam.locator('#signout'))];
  assert.ok(me.x + me.width <= signout.x, 'the name ends before Sign out');
  await accessible(liam, 'the list on a phone');
  await screenshot(liam, 'phone-list');

  // A tap opens the chat in place of the list; the composer has the width to show its text.
  await item.tap();
  await showing(liam, 'chat');
  await liam.locator('.msg', { hasText: 'Are we still on' }).waitFor();
  assert.ok((await box(liam.locator('#composer-input'))).width >= 250, 'a wide composer');
  await send(liam, 'Yes! 9 am at the station');
  // No hover on a touch screen: a tap on a bubble shows its actions.
  const mine = liam.locator('.msg.mine', { hasText: '9 am' });
  await mine.tap();
  await mine.getByRole('button', { name: 'Edit message' }).waitFor();
  await until(
    liam,
    '.msg.mine.selected .msg-actions',
    (node) => getComputedStyle(node).opacity === '1',
  );
  await accessible(liam, 'a chat on a phone');
  await screenshot(liam, 'phone-chat');

  // The back button returns to the list, and so does the browser's back.
  await liam.getByRole('button', { name: 'Back to conversations' }).tap();
  await showing(liam, 'list');
  await conversationItem(liam, hike.conversation).tap();
  await showing(liam, 'chat');
  await liam.locator('.msg .sender', { hasText: 'kate' }).waitFor();
  await screenshot(liam, 'phone-group');
  await liam.goBack();
  await showing(liam, 'list');

  // A reload reopens the open chat; back leads to the list, previews and all.
  await item.tap();
  await showing(liam, 'chat');
  await liam.reload();
  await online(liam);
  await showing(liam, 'chat');
  await liam.locator('.msg', { hasText: '9 am' }).waitFor();
  await liam.getByRole('button', { name: 'Back to conversations' }).tap();
  await showing(liam, 'list');
  await item.locator('.conv-preview', { hasText: 'You: Yes! 9 am' }).waitFor();
  await conversationItem(liam, hike.conversation)
    .locator('.conv-preview', { hasText: 'kate: Bring water' })
    .waitFor();
});
