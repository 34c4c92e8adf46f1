/**
 * The conformance client of the TypeScript SDK: what `natter-conformance client --ws` runs to
 * check the client against the rules a client must follow. It implements the contract of
 * conformance/README.md and nothing more; the SDK does the protocol. The SDK speaks WebSocket
 * only (src/client/transport.ts), so the runner serves WebSocket (`--ws`).
 *
 *   node scripts/build.mjs
 *   natter-conformance client --ws --cmd 'node --experimental-websocket build/conformance-client.mjs'
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

import { Client, type KeyValueStore, webSocket } from '../src/index.js';

/** The contract's arguments. */
function parseArgs(argv: string[]) {
  const args = {
    url: '',
    token: '',
    cursorFile: '',
    conversation: '',
    send: 0,
    big: 0,
    typing: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const value = () => argv[++i] ?? '';
    switch (argv[i]) {
      case '--url':
        args.url = value();
        break;
      case '--token':
        args.token = value();
        break;
      case '--cursor-file':
        args.cursorFile = value();
        break;
      case '--conversation':
        args.conversation = value();
        break;
      case '--send':
        args.send = Number(value());
        break;
      case '--big':
        args.big = Number(value());
        break;
      case '--typing':
        args.typing = true;
        break;
      default:
        process.stderr.write(`conformance-client: unknown argument ${argv[i]}\n`);
        process.exit(2);
    }
  }
  return args;
}

/** The client's store (cursor and outbox) in one JSON file, replaced whole by a rename. */
function fileStore(path: string): KeyValueStore {
  let items: Record<string, string> = {};
  try {
    items = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
  } catch {
    // No file yet: a new device.
  }
  const save = () => {
    writeFileSync(`${path}.tmp`, JSON.stringify(items));
    renameSync(`${path}.tmp`, path);
  };
  return {
    getItem: (key) => items[key] ?? null,
    setItem: (key, value) => {
      items[key] = value;
      save();
    },
    removeItem: (key) => {
      delete items[key];
      save();
    },
  };
}

/** One line of the contract. Writes to a pipe are synchronous on Linux, so a line is out
 *  before the ACK that follows it. */
function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const args = parseArgs(process.argv.slice(2));
const decoder = new TextDecoder();
const client = new Client({
  connect: webSocket(args.url),
  token: () => args.token,
  store: fileStore(args.cursorFile),
  agent: 'natter-web-conformance/0.1',
});
let closing = false;

client.on('event', ({ conversation, event, inboxSeq }) =>
  emit({
    event: 'message',
    conversation,
    seq: Number(event.seq),
    inbox_seq: Number(inboxSeq),
    kind: Number(event.kind),
    sender: event.sender,
    content_type: event.content_type,
    body: decoder.decode(event.body),
  }),
);
client.on('gap', ({ conversation, from, to }) =>
  emit({ event: 'gap', conversation, from: Number(from), to: Number(to) }),
);
client.on('state', ({ state, error, retryInMs }) => {
  process.stderr.write(`conformance-client: ${state} ${error?.message ?? ''} ${retryInMs ?? ''}\n`);
  if (state === 'closed' && !closing) {
    // Stopped for good: a refused token, no common version [NWP-5.5-3].
    emit({ event: 'fatal', code: Number(error?.code ?? 0n) });
    process.exit(3);
  }
});
client.connect();

const bodies = [...(args.big ? ['x'.repeat(args.big)] : [])];
for (let n = 1; n <= args.send; n++) bodies.push(`m${n}`);
for (const body of bodies) {
  client.send(args.conversation, body).ack.then(
    (sent) => emit({ event: 'sent', conversation: args.conversation, body, seq: Number(sent.seq) }),
    (error: { code?: bigint }) =>
      emit({
        event: 'send_failed',
        conversation: args.conversation,
        body,
        code: Number(error.code ?? 0n),
      }),
  );
}

if (args.typing) {
  let times = 0;
  const timer = setInterval(() => {
    if (client.connectionState !== 'online') return;
    if (++times <= 20) return client.typing(args.conversation, true);
    clearInterval(timer);
    client.typing(args.conversation, false);
  }, 100);
}

// The contract's end: stdin closes; acknowledge what was shown, keep the cursor, exit.
process.stdin.on('end', () => {
  closing = true;
  client.close();
  setTimeout(() => process.exit(0), 200);
});
process.stdin.resume();
