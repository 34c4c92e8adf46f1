/** Draws the server's state: identity and health, links, the broker, limits and counts. */
import type { ServerInfo } from './api.js';
import { $, badge, facts, h } from './dom.js';
import { bytes, count, duration, label, moment, plural } from './format.js';

/** The outbound queue's share of its budget from which the bar turns amber, then red. */
const WARN = 0.75;
const FULL = 0.9;

export function renderServer(server: ServerInfo): void {
  const status = server.draining
    ? badge('Draining', 'warn')
    : server.ready
      ? badge('Ready', 'good')
      : badge('Not ready', 'bad');
  const { ring, outbound } = server;
  $('server').replaceChildren(
    ...facts([
      ['Status', status],
      ['Version', server.version],
      ['Node', server.node],
      [
        'Uptime',
        h('span', { title: `Started ${moment(server.started_at)}` }, duration(server.uptime_ms)),
      ],
      ['Ring', `version ${count(ring.version)}, ${count(ring.vnodes)} virtual nodes per broker`],
      ['Brokers', ring.brokers.join(', ') || 'none'],
    ]),
  );
  const share = outbound.budget_bytes > 0 ? outbound.queued_bytes / outbound.budget_bytes : 0;
  const fill = $('outbound-fill');
  fill.style.width = share > 0 ? `max(2px, ${Math.min(100, share * 100)}%)` : '0';
  fill.className = share >= FULL ? 'bad' : share >= WARN ? 'warn' : '';
  $('outbound-text').textContent =
    `${bytes(outbound.queued_bytes)} of ${bytes(outbound.budget_bytes)} ` +
    `(${(share * 100).toFixed(share > 0 && share < 0.01 ? 2 : 0)} %)`;

  $('links').replaceChildren(
    ...(server.links.length
      ? server.links.map((link) =>
          h(
            'li',
            {},
            h('span', { class: 'link-name' }, link.broker),
            link.state === 'up' ? badge('up', 'good') : badge('down', 'bad'),
            h('span', { class: 'muted small' }, `${plural(link.queued_frames, 'frame')} queued`),
          ),
        )
      : [h('li', { class: 'muted' }, 'No links: the ring has no brokers.')]),
  );

  const broker = server.broker;
  $('broker-section').hidden = !broker;
  if (broker) {
    $('broker').replaceChildren(
      ...facts([
        ['Node', broker.node],
        ['Storage', `${broker.storage} in ${broker.data_dir}`],
        ['Storage size', bytes(broker.storage_bytes)],
        [
          'Commits',
          [
            count(broker.commits),
            broker.commit_failures > 0 && badge(`${count(broker.commit_failures)} failed`, 'bad'),
          ],
        ],
        ['Written', bytes(broker.written_bytes)],
        ['Events appended', count(broker.events_appended)],
        ['Shard queue', count(broker.queue_depth)],
        ['Commit queue', count(broker.storage_queue_depth)],
        [
          'Peers',
          broker.links
            .map((peer) => `${peer.peer} (${peer.role}, ${plural(peer.links, 'link')})`)
            .join(', ') || 'none',
        ],
      ]),
    );
  }

  $('limits').replaceChildren(
    ...facts(
      Object.entries(server.limits).map(([name, value]) => [
        label(name),
        /size|budget/.test(name) ? bytes(value) : count(value),
      ]),
    ),
  );

  const c = server.connections;
  $('counts').replaceChildren(
    ...facts([
      ['Clients', count(c.clients)],
      ['Users', count(c.users)],
      ['TCP', count(c.tcp)],
      ['TLS', count(c.tls)],
      ['WebSocket', count(c.ws)],
      ['HTTP', count(c.http)],
    ]),
  );
}
