// Runs `natter serve --dev` for the end-to-end tests, on fresh or the previous ports.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The natter binary; the end-to-end tests are skipped without it. */
export const BIN = process.env.NATTER_BIN;
/** clients/web. */
export const WEB = new URL('../../', import.meta.url).pathname;
/** The API key the server accepts (`--api-key`): the backend API and the admin view. */
export const API_KEY = 'e2e-admin-key';

/** The line `natter serve --print-ready` prints once it listens. */
export interface Ready {
  event: 'ready';
  tcp: string;
  http: string;
}

/** One `natter serve` process at a time over one data directory. */
export class Server {
  private child?: ChildProcess;
  ready?: Ready;

  constructor(private readonly dataDir: string) {}

  /** Starts `natter serve`; with `ready`, on the same ports as before. */
  async start(previous?: Ready): Promise<Ready> {
    const child = spawn(
      BIN as string,
      [
        'serve',
        '--dev',
        '--print-ready',
        '--data-dir',
        this.dataDir,
        '--tcp',
        previous?.tcp ?? '127.0.0.1:0',
        '--http',
        previous?.http ?? '127.0.0.1:0',
        '--web-dir',
        join(WEB, 'dist'),
        '--api-key',
        API_KEY,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.child = child;
    const lines = createInterface({ input: child.stdout! });
    const ready = await new Promise<Ready>((resolve, reject) => {
      child.once('exit', (code) =>
        reject(new Error(`natter serve exited with ${code} before ready`)),
      );
      lines.once('line', (line) => resolve(JSON.parse(line) as Ready));
    });
    assert.equal(ready.event, 'ready');
    this.ready = ready;
    return ready;
  }

  /** SIGTERM, as an operator would: the server drains and exits 0. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'natter serve exits 0 on SIGTERM');
  }
}

/** A dev-mode token for `user` from `POST /v1/dev/token`. */
export async function devToken(http: string, user: string): Promise<string> {
  const response = await fetch(`http://${http}/v1/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return ((await response.json()) as { token: string }).token;
}
