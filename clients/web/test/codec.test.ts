// Codec behaviour the vectors do not reach: what the encoder refuses, and records.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  EncodeError,
  ErrorCode,
  FrameReader,
  MAX_VARINT,
  decodeFrame,
  decodeRecord,
  encodeFrame,
  encodeRecord,
  enumName,
} from '../src/codec/index.js';

test('varints above 2^62 - 1 and negative values are not encodable', () => {
  assert.throws(() => encodeFrame({ type: 'PING', nonce: MAX_VARINT + 1n }), EncodeError);
  assert.throws(() => encodeFrame({ type: 'PING', nonce: -1n }), EncodeError);
  const max = encodeFrame({ type: 'PING', nonce: MAX_VARINT });
  assert.deepEqual(decodeFrame(max), { type: 'PING', nonce: MAX_VARINT });
});

test('strings with a lone surrogate are not encodable', () => {
  const frame = { type: 'TYPING', conversation: 'g/\uD800', active: true } as const;
  assert.throws(() => encodeFrame(frame), EncodeError);
});

test('a byte order mark survives decoding', () => {
  const frame = { type: 'TYPING', conversation: '\uFEFFg/x', active: false } as const;
  assert.deepEqual(decodeFrame(encodeFrame(frame)), frame);
});

test('membership bodies round-trip and ignore trailing bytes', () => {
  const body = encodeRecord('member_change', { user: 'carol', role: 1n });
  const extended = Uint8Array.of(...body, 0xff, 0x00);
  assert.deepEqual(decodeRecord('member_change', extended), { user: 'carol', role: 1n });
});

test('the reader rejects an oversized length before buffering the body', () => {
  const reader = new FrameReader(100n);
  assert.throws(() => reader.push(Uint8Array.of(0x40, 0x65)), { kind: 'frame_too_large' });
});

test('unknown enum values stay representable', () => {
  assert.equal(enumName(ErrorCode, 0x17n), 'UNAVAILABLE');
  assert.equal(enumName(ErrorCode, 0x30n), undefined);
});
