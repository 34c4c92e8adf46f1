// The chat page's features on a desktop screen, against a real `natter serve`: previews from
// the first load, unread markers, edit and delete, right-to-left text, the byte limit, a failed
// send, sender colours, reopening after a reload, keys and accessibility. Other users are bots
// driven from node.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Page } from 'playwright-core';

import { Client, EventKind, GroupOp, directConversation } from '../src/index.js';
import {
  accessible,
  bot,
  conversationItem,
  harness,
  online,
  screenshot,
  send,
  signIn,
  visit,
  skip,
  until,
} from './browser.js';

harness();

/** The events a bot sees, by kind. */
function record(client: Client): bigint[] {
  const kinds: bigint[] = [];
  client.on('event', ({ event }) => kinds.push(event.kind));
  return kinds;
}

async function eventually(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(done());
}

async function bubbleActions(page: Page, text: string, action: 'Edit' | 'Delete') {
  const bubble = page.locator('.msg.mine', { hasText: text });
  await bubble.hover();
  await bubble.getByRole('button', { name: `${action} message` }).click();
}

test('the sign-in page is accessible', { skip }, async () => {
  const page = await visit('nobody');
  await page.waitForSelector('#signin:not([hidden])');
  await accessible(page, 'the sign-in page');
  await page.context().close();
});

test(
  'previews, markers, edit, delete, RTL, the byte limit and a failed send',
  { skip },
  async () => {
    const frank = await bot('frank');
    const grace = await bot('grace');
    const withFrank = directConversation('erin', 'frank');
    const withGrace = directConversation('erin', 'grace');
    for (let i = 1; i <= 30; i++) await frank.send(withFrank, `Message ${i}`).ack;
    const club = await grace.createGroup('Book club', ['erin', 'frank']);
    await grace.send(club.conversation, 'Chapter 3 tonight?').ack;
    await frank.send(club.conversation, 'Yes!').ack;
    // The newest event of this one is an edit: the preview shows the edited message.
    const seeYou = await grace.send(withGrace, 'See you').ack;
    await grace.edit(withGrace, seeYou.seq, 'See you soon').ack;
    // And of this one a member change.
    const quiet = await grace.createGroup('Quiet group', ['erin']);

    // Every conversation shows its newest message from the first load on, and after a reload.
    const erin = await signIn('erin');
    const previews = async () => {
      await conversationItem(erin, withFrank)
        .locator('.conv-preview', { hasText: 'Message 30' })
        .waitFor();
      await conversationItem(erin, club.conversation)
        .locator('.conv-preview', { hasText: 'frank: Yes!' })
        .waitFor();
      await conversationItem(erin, withGrace)
        .locator('.conv-preview', { hasText: 'See you soon' })
        .waitFor();
      await conversationItem(erin, quiet.conversation)
        .locator('.conv-preview', { hasText: 'grace added erin' })
        .waitFor();
      assert.equal(await erin.locator('.conv-preview', { hasText: 'Say hello' }).count(), 0);
      assert.equal(await conversationItem(erin, withFrank).locator('.badge').textContent(), '30');
    };
    await previews();
    await erin.reload();
    await online(erin);
    await previews();

    // Opening marks where the unread messages start. Scrolled up, a new message shows on the
    // jump button; the button goes back down and reads it.
    await conversationItem(erin, withFrank).click();
    await erin.locator('.msg', { hasText: 'Message 30' }).waitFor();
    await erin.locator('.new-marker').waitFor();
    assert.equal(await erin.evaluate(() => document.activeElement?.id), 'composer-input');
    await erin.locator('#messages').evaluate((box) => (box.scrollTop = 0));
    await erin.locator('#jump').waitFor();
    await frank.send(withFrank, 'Are you there?').ack;
    await erin.locator('#jump', { hasText: '1 new' }).waitFor();
    await conversationItem(erin, withFrank).locator('.badge', { hasText: '1' }).waitFor();
    await erin.click('#jump');
    await erin.locator('#jump').waitFor({ state: 'hidden' });
    await conversationItem(erin, withFrank).locator('.badge').waitFor({ state: 'detached' });

    // Enter sends, Shift+Enter starts a new line; an empty message is refused with a reason.
    await erin.press('#composer-input', 'Enter');
    await erin.locator('#composer-status', { hasText: 'Write something first' }).waitFor();
    await erin.type('#composer-input', 'line one');
    await erin.press('#composer-input', 'Shift+Enter');
    await erin.type('#composer-input', 'line two');
    await erin.press('#composer-input', 'Enter');
    const lines = erin.locator('.msg.mine:not(.pending) .text', { hasText: 'line two' });
    assert.equal(await lines.textContent(), 'line one\nline two');
    assert.equal(await erin.locator('#composer-status').textContent(), '');

    // Edit and delete a message of one's own; the other side gets both events.
    const seen = record(frank);
    await send(erin, 'Typo heer');
    await bubbleActions(erin, 'Typo heer', 'Edit');
    await erin.locator('#edit-bar').waitFor();
    assert.equal(await erin.inputValue('#composer-input'), 'Typo heer');
    await erin.fill('#composer-input', 'Typo here');
    await erin.press('#composer-input', 'Enter');
    const edited = erin.locator('.msg.mine', { hasText: 'Typo here' });
    await edited.locator('.meta', { hasText: 'edited' }).waitFor();
    assert.equal(await erin.inputValue('#composer-input'), '');
    await eventually(() => seen.includes(EventKind.EDIT));
    erin.once('dialog', (dialog) => void dialog.accept());
    await bubbleActions(erin, 'Typo here', 'Delete');
    await erin.locator('.msg.mine.deleted', { hasText: 'This message was deleted' }).waitFor();
    await conversationItem(erin, withFrank)
      .locator('.conv-preview', { hasText: 'You: Message deleted' })
      .waitFor();
    await eventually(() => seen.includes(EventKind.DELETE));

    // Right-to-left text reads right to left in the bubble, the preview and the composer.
    const arabic = 'مرحبا بالعالم';
    await send(erin, arabic);
    await until(
      erin,
      '#messages > .msg:last-child .text[dir=auto]',
      (node) => node.textContent === 'مرحبا بالعالم' && getComputedStyle(node).direction === 'rtl',
    );
    await conversationItem(erin, withFrank)
      .locator('.conv-preview [dir=auto]', { hasText: arabic })
      .waitFor();
    assert.equal(await erin.getAttribute('#composer-input', 'dir'), 'auto');
    await erin.locator('.msg.mine', { hasText: 'line two' }).hover();
    await screenshot(erin, 'desktop-chat');
    // Up in an empty composer edits the last message; Escape gives the draft back.
    await erin.press('#composer-input', 'ArrowUp');
    await erin.locator('#edit-bar').waitFor();
    assert.equal(await erin.inputValue('#composer-input'), arabic);
    await erin.press('#composer-input', 'Escape');
    await erin.locator('#edit-bar').waitFor({ state: 'hidden' });
    assert.equal(await erin.inputValue('#composer-input'), '');

    // The limit is 16,384 UTF-8 bytes: 9,000 Arabic letters (18,000 bytes) and a 70,000
    // character paste are not sent and stay whole in the composer, saying why.
    for (const [text, bytes] of [
      ['ب'.repeat(9_000), '18,000'],
      ['x'.repeat(70_000), '70,000'],
    ]) {
      await erin.fill('#composer-input', text);
      await erin
        .locator('#composer-status', { hasText: `Too long to send: ${bytes} bytes` })
        .waitFor();
      await erin.locator('#composer-count', { hasText: `${bytes} / 16,384 bytes` }).waitFor();
      assert.ok(await erin.isDisabled('#send-button'));
      await erin.press('#composer-input', 'Enter');
      assert.equal(await erin.inputValue('#composer-input'), text);
      assert.equal(await erin.locator('.msg.pending').count(), 0);
    }
    await screenshot(erin, 'desktop-too-long');
    // Exactly the limit goes through.
    await erin.fill('#composer-input', 'é'.repeat(8_192));
    await erin.locator('#composer-count', { hasText: '16,384 / 16,384 bytes' }).waitFor();
    await erin.press('#composer-input', 'Enter');
    await erin.locator('.msg.mine:not(.pending)', { hasText: 'éééé' }).waitFor();
    assert.equal(await erin.inputValue('#composer-input'), '');

    // A group needs a name: an empty one is refused beside the field.
    await erin.click('#new-group-button');
    await erin.fill('#new-group-title', '   ');
    await erin.press('#new-group-title', 'Enter');
    await erin.locator('#new-group-title-error', { hasText: 'Give the group a name' }).waitFor();
    assert.equal(await erin.getAttribute('#new-group-title', 'aria-invalid'), 'true');
    await erin.click('#new-group-button');

    // A send the server refuses comes back into the composer with the reason beside it.
    const leaving = await grace.createGroup('Leaving soon', ['erin']);
    await conversationItem(erin, leaving.conversation).click();
    await grace.updateGroup(leaving.conversation, GroupOp.REMOVE, 'erin');
    await erin.locator('.system', { hasText: 'grace removed erin' }).waitFor();
    await erin.fill('#composer-input', 'Still there?');
    await erin.press('#composer-input', 'Enter');
    await erin.locator('#composer-status', { hasText: 'Not sent' }).waitFor();
    assert.equal(await erin.inputValue('#composer-input'), 'Still there?');
    await erin.fill('#composer-input', '');

    // In a group every sender has a colour of their own.
    await conversationItem(erin, club.conversation).click();
    const colourOf = (user: string) =>
      erin
        .locator('.msg .sender', { hasText: user })
        .first()
        .evaluate((node) => getComputedStyle(node).color);
    assert.notEqual(await colourOf('grace'), await colourOf('frank'));

    // A reload reopens the conversation that was open.
    await erin.reload();
    await online(erin);
    await erin.locator('#chat-name', { hasText: 'Book club' }).waitFor();
    await erin.locator('.msg', { hasText: 'Chapter 3 tonight?' }).waitFor();

    // Focus moves in reading order: sidebar buttons, then the conversations.
    await erin.focus('#signout');
    for (const next of ['new-chat-button', 'new-group-button']) {
      await erin.keyboard.press('Tab');
      assert.equal(await erin.evaluate(() => document.activeElement?.id), next);
    }
    await erin.keyboard.press('Tab');
    assert.ok(await erin.evaluate(() => document.activeElement?.matches('#conversations button')));

    await accessible(erin, 'a group on a desktop screen');
    await screenshot(erin, 'desktop-group-colours');
    await conversationItem(erin, withFrank).click();
    await erin.locator('.msg', { hasText: arabic }).waitFor();
    await erin.locator('.msg.mine', { hasText: 'line two' }).hover();
    await accessible(erin, 'a direct chat on a desktop screen');
  },
);
