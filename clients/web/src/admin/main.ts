/**
 * The admin page (admin.html): the operator pastes an API key, kept in sessionStorage only
 * (this tab, until sign-out or the tab closes), and sees the server and its connections,
 * refreshed every 2 s while the tab is visible.
 */
import {
  AdminError,
  type ConnectionPage,
  type ServerInfo,
  connectionPage,
  serverInfo,
} from './api.js';
import { type Column, renderConnections, sortBy, view } from './connections.js';
import { $ } from './dom.js';
import { renderServer } from './render.js';

const KEY = 'natter.admin.key';
const REFRESH_MS = 2000;

let key = sessionStorage.getItem(KEY) ?? '';
let last: { server: ServerInfo; page: ConnectionPage; at: number } | undefined;
let timer: ReturnType<typeof setTimeout> | undefined;
/** Bumped by every refresh and by sign-out: an answer to an older one is dropped. */
let generation = 0;

async function refresh(): Promise<void> {
  clearTimeout(timer);
  const mine = ++generation;
  try {
    const [server, page] = await Promise.all([
      serverInfo(key),
      connectionPage(key, view.offset, view.limit),
    ]);
    if (mine !== generation) return;
    // Connections closed since: the page we were on is past the end.
    if (page.offset > 0 && page.offset >= page.total) {
      view.offset = Math.max(0, Math.ceil(page.total / view.limit) - 1) * view.limit;
      return refresh();
    }
    last = { server, page, at: Date.now() };
    problem('');
    render();
  } catch (error) {
    if (mine !== generation) return;
    if (error instanceof AdminError && error.kind === 'unauthorized') {
      signOut(`Signed out: ${error.message}`);
      return;
    }
    const at = last && new Date(last.at).toLocaleTimeString();
    if (at) $('admin-updated').textContent = `Not updated since ${at}`;
    problem(
      `${(error as Error).message}${at ? ` Showing what it said at ${at}.` : ''} ` +
        'Retrying every 2 seconds.',
    );
  }
  schedule();
}

/** The next refresh, unless signed out or the tab is hidden (it refreshes when shown again). */
function schedule(): void {
  clearTimeout(timer);
  if (key && document.visibilityState === 'visible') timer = setTimeout(refresh, REFRESH_MS);
}

function render(): void {
  if (!last) return;
  $('admin-signin').hidden = true;
  $('admin-dashboard').hidden = false;
  $('admin-signout').hidden = false;
  const { server, page, at } = last;
  document.title = `natter admin: ${server.node}`;
  $('admin-identity').textContent = `${server.node}, natter ${server.version}`;
  $('admin-updated').textContent = `Updated ${new Date(at).toLocaleTimeString()}`;
  renderServer(server);
  renderConnections(page);
}

/** Shows or clears the problem; the same text again is not announced again. */
function problem(text: string): void {
  const banner = $('admin-problem');
  if (banner.textContent !== text) banner.textContent = text;
  banner.hidden = text === '';
}

function signOut(message = ''): void {
  key = '';
  last = undefined;
  generation++;
  clearTimeout(timer);
  sessionStorage.removeItem(KEY);
  problem('');
  document.title = 'natter admin';
  $('admin-identity').textContent = '';
  $('admin-updated').textContent = '';
  $('admin-signout').hidden = true;
  $('admin-dashboard').hidden = true;
  $('admin-signin').hidden = false;
  $<HTMLInputElement>('admin-key').value = '';
  $('admin-signin-error').textContent = message;
  $('admin-key').focus();
}

function wire(): void {
  const form = $<HTMLFormElement>('admin-signin-form');
  form.onsubmit = async (submit) => {
    submit.preventDefault();
    const typed = $<HTMLInputElement>('admin-key').value.trim();
    const error = $('admin-signin-error');
    if (!typed) {
      error.textContent = 'Paste an API key first.';
      return;
    }
    error.textContent = '';
    const button = form.querySelector('button')!;
    button.disabled = true;
    try {
      // Checked before it is kept: a wrong key is never stored.
      await serverInfo(typed);
      key = typed;
      sessionStorage.setItem(KEY, key);
      $<HTMLInputElement>('admin-key').value = '';
      await refresh();
      $('admin-dashboard-heading').focus();
    } catch (failure) {
      error.textContent = (failure as Error).message;
    } finally {
      button.disabled = false;
    }
  };
  $('admin-signout').onclick = () => signOut();

  const redraw = () => last && renderConnections(last.page);
  for (const th of document.querySelectorAll<HTMLElement>('#connections-table th[data-sort]')) {
    th.querySelector('button')!.onclick = () => {
      sortBy(th.dataset.sort as Column);
      redraw();
    };
  }
  $<HTMLInputElement>('filter').oninput = (input) => {
    view.filter = (input.target as HTMLInputElement).value;
    redraw();
  };
  $<HTMLSelectElement>('page-size').onchange = (change) => {
    view.limit = Number((change.target as HTMLSelectElement).value);
    view.offset = 0;
    void refresh();
  };
  $('page-prev').onclick = () => {
    view.offset = Math.max(0, view.offset - view.limit);
    void refresh();
  };
  $('page-next').onclick = () => {
    view.offset += view.limit;
    void refresh();
  };
  document.addEventListener('visibilitychange', () => {
    if (!key) return;
    if (document.visibilityState === 'visible') void refresh();
    else clearTimeout(timer);
  });
}

wire();
if (key) void refresh();
else signOut();
