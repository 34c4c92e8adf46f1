/**
 * The connections table: one page from the server (oldest first), sorted and filtered by user
 * here, on that page only: the endpoint has no sort or filter of its own.
 */
import type { Connection, ConnectionPage } from './api.js';
import { $, badge, h } from './dom.js';
import { ago, bytes, count, moment } from './format.js';

export type Column = 'user' | 'device' | 'transport' | 'since' | 'ready' | 'queued_bytes';

const TRANSPORTS: Record<string, string> = { tcp: 'TCP', tls: 'TLS', ws: 'WebSocket' };

/** What the operator chose: the page, its size, the order and the filter. */
export const view = {
  offset: 0,
  limit: 50,
  sort: 'since' as Column,
  descending: false,
  filter: '',
};

/** Sorts by `column`, or turns the order round if it already is; most queued first. */
export function sortBy(column: Column): void {
  view.descending = view.sort === column ? !view.descending : column === 'queued_bytes';
  view.sort = column;
}

function compare(a: Connection, b: Connection): number {
  const x = a[view.sort];
  const y = b[view.sort];
  const order =
    typeof x === 'string' && typeof y === 'string' ? x.localeCompare(y) : Number(x) - Number(y);
  // Ties keep the server's order (session ids grow with time).
  const tie = a.session.length - b.session.length || (a.session < b.session ? -1 : 1);
  return (view.descending ? -order : order) || tie;
}

export function renderConnections(page: ConnectionPage): void {
  const wanted = view.filter.trim().toLowerCase();
  const rows = page.connections
    .filter((conn) => conn.user.toLowerCase().includes(wanted))
    .sort(compare);

  $('connections').replaceChildren(
    ...rows.map((conn) =>
      h(
        'tr',
        { 'data-session': conn.session },
        h(
          'th',
          { scope: 'row' },
          conn.user
            ? h('span', { dir: 'auto' }, conn.user)
            : h('span', { class: 'muted' }, 'before HELLO'),
        ),
        h('td', {}, conn.device ? h('span', { dir: 'auto' }, conn.device) : '—'),
        h('td', {}, TRANSPORTS[conn.transport] ?? conn.transport),
        h(
          'td',
          {},
          h(
            'time',
            { datetime: new Date(conn.since).toISOString(), title: moment(conn.since) },
            ago(page.now - conn.since),
          ),
        ),
        h('td', {}, conn.ready ? badge('ready', 'good') : badge('opening', 'warn')),
        h(
          'td',
          { class: 'number', title: `${count(conn.queued_bytes)} bytes` },
          bytes(conn.queued_bytes),
        ),
      ),
    ),
  );

  for (const th of document.querySelectorAll<HTMLElement>('#connections-table th[data-sort]')) {
    if (th.dataset.sort === view.sort)
      th.setAttribute('aria-sort', view.descending ? 'descending' : 'ascending');
    else th.removeAttribute('aria-sort');
  }

  const empty = $('connections-empty');
  empty.hidden = rows.length > 0;
  $('connections-scroll').hidden = rows.length === 0;
  if (page.total === 0) {
    empty.replaceChildren(
      'No client connections yet. Open the ',
      h('a', { href: '/' }, 'chat page'),
      ' or connect a client over TCP, TLS or WebSocket (/ws): it shows up here within 2 seconds.',
    );
  } else if (rows.length === 0) {
    empty.replaceChildren(
      `No connection on this page is from a user matching “${view.filter.trim()}”.`,
      page.total > page.connections.length ? ' The filter looks at this page only.' : '',
    );
  }

  const first = page.connections.length ? page.offset + 1 : 0;
  const last = page.offset + page.connections.length;
  const shown = wanted ? `${count(rows.length)} matching; ` : '';
  $('page-status').textContent =
    page.total === 0
      ? 'No connections'
      : `${shown}${count(first)}–${count(last)} of ${count(page.total)}`;
  $<HTMLButtonElement>('page-prev').disabled = page.offset === 0;
  $<HTMLButtonElement>('page-next').disabled = last >= page.total;
  $('pager').hidden = page.total === 0;
  $('table-tools').hidden = page.total === 0;
}
