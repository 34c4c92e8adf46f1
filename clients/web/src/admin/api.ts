/**
 * The admin endpoints (docs/http-api.md, "Admin view"): typed answers, and errors an operator
 * can act on. Fields are only ever added, so every type here lists what the page reads.
 */

/** `GET /v1/admin/server`. */
export interface ServerInfo {
  version: string;
  node: string;
  now: number;
  started_at: number;
  uptime_ms: number;
  ready: boolean;
  draining: boolean;
  connections: Record<'clients' | 'users' | 'tcp' | 'tls' | 'ws' | 'http', number>;
  outbound: { queued_bytes: number; budget_bytes: number };
  ring: { version: number; vnodes: number; brokers: string[] };
  links: { broker: string; state: 'up' | 'down'; queued_frames: number }[];
  /** `[edge.limits]` as in effect; new limits show up without a change here. */
  limits: Record<string, number>;
  /** Only under `natter serve`. */
  broker?: BrokerInfo;
}

export interface BrokerInfo {
  node: string;
  storage: string;
  data_dir: string;
  storage_bytes: number;
  queue_depth: number;
  storage_queue_depth: number;
  commits: number;
  commit_failures: number;
  written_bytes: number;
  events_appended: number;
  links: { peer: string; role: string; links: number }[];
}

/** `GET /v1/admin/connections`. */
export interface ConnectionPage {
  now: number;
  total: number;
  offset: number;
  limit: number;
  connections: Connection[];
}

export interface Connection {
  /** Kept as text: session ids pass 2^53, past what a JSON number holds exactly in JS. */
  session: string;
  /** Empty before HELLO. */
  user: string;
  device: string;
  transport: string;
  since: number;
  ready: boolean;
  queued_bytes: number;
}

/** Why a request failed, worded for the operator. */
export class AdminError extends Error {
  constructor(
    readonly kind: 'unauthorized' | 'network' | 'server',
    message: string,
  ) {
    super(message);
  }
}

/** GETs `path` with the API key and parses the JSON answer. */
export async function get<T>(path: string, key: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      headers: { authorization: `Bearer ${key}` },
      cache: 'no-store',
    });
  } catch {
    throw new AdminError('network', 'Cannot reach the server: the network or natter is down.');
  }
  const text = await response.text().catch(() => '');
  if (response.status === 401) {
    throw new AdminError(
      'unauthorized',
      'The server refused this API key (401). Check it, and that natter was started with ' +
        'one: without a key the admin view is closed.',
    );
  }
  if (!response.ok) {
    let reason = text.trim() || response.statusText;
    try {
      const body = JSON.parse(text) as { error?: string; message?: string };
      if (body.message) reason = `${body.error ?? ''} ${body.message}`.trim();
    } catch {
      // Not JSON (a proxy's page, say): the text as it came.
    }
    throw new AdminError('server', `The server answered ${response.status}: ${reason}`);
  }
  try {
    // Quote session ids before parsing so that they keep every digit.
    return JSON.parse(text.replace(/"session":\s*(\d+)/g, '"session":"$1"')) as T;
  } catch {
    throw new AdminError('server', `The server answered ${path} with something other than JSON.`);
  }
}

export const serverInfo = (key: string) => get<ServerInfo>('/v1/admin/server', key);

export const connectionPage = (key: string, offset: number, limit: number) =>
  get<ConnectionPage>(`/v1/admin/connections?offset=${offset}&limit=${limit}`, key);
