// Runs every vector of spec/vectors (format: spec/vectors/README.md) against this codec.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  DEFAULT_MAX_FRAME_SIZE,
  DecodeError,
  FRAMES,
  type Frame,
  FrameReader,
  type FrameName,
  type Kind,
  RECORDS,
  decodeFrame,
  decodeMessage,
  encodeFrame,
} from '../src/codec/index.js';

const VECTORS = new URL('../../../../spec/vectors/', import.meta.url);

interface Vector {
  file: string;
  name: string;
  mode: 'stream' | 'nested' | 'message';
  maxFrameSize: bigint;
  roundtrip: boolean;
  input: Uint8Array;
  trailing: number;
  expect: string;
  decoded?: Record<string, unknown>;
}

function hex(text: string): Uint8Array {
  assert.match(text, /^([0-9a-f]{2})*$/, `bad hex ${text}`);
  return Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16));
}

function parseFile(file: string, text: string): Vector[] {
  const vectors: Vector[] = [];
  for (const chunk of text.split(/^=== /m).slice(1)) {
    const [name, ...lines] = chunk.split('\n');
    const keys = new Map<string, string>();
    const input: string[] = [];
    let inBytes = false;
    for (const line of lines) {
      if (line.startsWith(' ')) {
        assert.ok(inBytes, `${name}: indented line outside bytes`);
        input.push(line.split('#')[0].replace(/\s+/g, ''));
        continue;
      }
      inBytes = false;
      if (line.trim() === '' || line.startsWith('#')) continue;
      const colon = line.indexOf(':');
      assert.ok(colon > 0, `${name}: bad line ${line}`);
      const key = line.slice(0, colon);
      keys.set(key, line.slice(colon + 1).trim());
      inBytes = key === 'bytes';
    }
    const expect = keys.get('expect');
    assert.ok(expect, `${name}: no expect`);
    vectors.push({
      file,
      name: name.trim(),
      mode: (keys.get('mode') ?? 'stream') as Vector['mode'],
      maxFrameSize: BigInt(keys.get('max_frame_size') ?? DEFAULT_MAX_FRAME_SIZE),
      roundtrip: (keys.get('roundtrip') ?? 'yes') === 'yes',
      input: hex(input.join('').toLowerCase()),
      trailing: Number(keys.get('trailing') ?? 0),
      expect,
      decoded: keys.has('decoded') ? JSON.parse(keys.get('decoded') as string) : undefined,
    });
  }
  return vectors;
}

/** Turns the vectors' JSON of a field into this codec's value, guided by the schema. */
function fromJson(kind: Kind, json: unknown): unknown {
  switch (kind) {
    case 'varint':
      return BigInt(json as number | string);
    case 'byte':
      return json as number;
    case 'flag':
      return json as boolean;
    case 'bytes':
      return hex(json as string);
    case 'text':
      return json as string;
    default:
      if ('list' in kind) return (json as unknown[]).map((item) => fromJson(kind.list, item));
      return fieldsFromJson(RECORDS[kind.record], json as Record<string, unknown>);
  }
}

function fieldsFromJson(
  fields: readonly (readonly [string, Kind])[],
  json: Record<string, unknown>,
): Record<string, unknown> {
  assert.deepEqual(
    Object.keys(json),
    fields.map(([name]) => name),
    'fields in wire order',
  );
  return Object.fromEntries(fields.map(([name, kind]) => [name, fromJson(kind, json[name])]));
}

function frameFromJson(json: Record<string, unknown>): Frame {
  const { type, ...fields } = json;
  if (type === 'UNKNOWN') {
    return {
      type,
      frame_type: BigInt(fields.frame_type as number),
      payload: hex(fields.payload as string),
    };
  }
  const spec = FRAMES[type as FrameName];
  assert.ok(spec, `unknown frame name ${String(type)}`);
  return { type, ...fieldsFromJson(spec.fields, fields) } as Frame;
}

function errorKind(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof DecodeError) return error.kind;
    throw error;
  }
  return 'no error';
}

/** Feeds `pieces` to a fresh stream reader; returns the first frame and the bytes left. */
function readStream(vector: Vector, pieces: Uint8Array[]): { frame: Frame | null; left: number } {
  const reader = new FrameReader(vector.maxFrameSize);
  for (const piece of pieces) {
    reader.push(piece);
    const frame = reader.next();
    if (frame !== null) {
      return {
        frame,
        left:
          reader.pending +
          pieces.slice(pieces.indexOf(piece) + 1).reduce((n, p) => n + p.length, 0),
      };
    }
  }
  return { frame: null, left: reader.pending };
}

function* splits(input: Uint8Array): Generator<Uint8Array[]> {
  for (let at = 0; at <= input.length; at++) yield [input.subarray(0, at), input.subarray(at)];
  yield Array.from(input, (byte) => Uint8Array.of(byte));
}

function check(vector: Vector): void {
  const { input } = vector;
  if (vector.expect === 'frame') {
    assert.ok(vector.decoded, 'a frame vector has decoded');
    const expected = frameFromJson(vector.decoded);
    if (vector.mode === 'nested') {
      assert.deepEqual(decodeFrame(input), expected);
    } else if (vector.mode === 'message') {
      assert.deepEqual(decodeMessage(input, vector.maxFrameSize), expected);
    } else {
      for (const pieces of splits(input)) {
        const { frame, left } = readStream(vector, pieces);
        assert.deepEqual(frame, expected, `split into ${pieces.map((p) => p.length)}`);
        assert.equal(left, vector.trailing, 'bytes left buffered');
      }
    }
    if (vector.roundtrip) {
      assert.deepEqual(encodeFrame(expected), input.subarray(0, input.length - vector.trailing));
    }
    return;
  }
  if (vector.mode === 'nested') {
    assert.equal(
      errorKind(() => decodeFrame(input)),
      vector.expect,
    );
    return;
  }
  if (vector.mode === 'message') {
    assert.equal(
      errorKind(() => decodeMessage(input, vector.maxFrameSize)),
      vector.expect,
    );
    return;
  }
  for (const pieces of splits(input)) {
    const outcome = errorKind(() => readStream(vector, pieces).frame);
    const expected = vector.expect === 'incomplete' ? 'no error' : vector.expect;
    assert.equal(outcome, expected, `split into ${pieces.map((p) => p.length)}`);
    if (vector.expect === 'incomplete') assert.equal(readStream(vector, pieces).frame, null);
  }
}

const files = readdirSync(VECTORS)
  .filter((file) => file.endsWith('.txt'))
  .sort();
const seen = new Set<string>();

test('spec/vectors has vector files', () => {
  assert.ok(files.length > 0, `no vector files in ${VECTORS.pathname}`);
});

for (const file of files) {
  const vectors = parseFile(file, readFileSync(new URL(file, VECTORS), 'utf8'));
  test(`${file} has vectors`, () => assert.ok(vectors.length > 0));
  for (const vector of vectors) {
    test(`${file}: ${vector.name}`, () => {
      assert.ok(!seen.has(vector.name), 'names are unique');
      seen.add(vector.name);
      check(vector);
    });
  }
}

test('every frame type of protocol v1 has a valid vector', () => {
  const covered = new Set(
    files.flatMap((file) =>
      parseFile(file, readFileSync(new URL(file, VECTORS), 'utf8')).map((v) => v.decoded?.type),
    ),
  );
  const missing = Object.keys(FRAMES).filter((name) => !covered.has(name));
  assert.deepEqual(missing, []);
});
