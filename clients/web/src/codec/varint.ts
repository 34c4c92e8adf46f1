/**
 * Variable-length integers as in RFC 9000 section 16, always in the shortest form
 * (`[NWP-2.2-2]`), so every value has exactly one encoding.
 *
 * Values are bigints: a varint carries up to 62 bits and a number would silently round
 * anything above 2^53.
 */
import { DecodeError, EncodeError } from './errors.js';

/** The largest value a varint can carry: 2^62 - 1. */
export const MAX_VARINT = (1n << 62n) - 1n;

/** The number of bytes the shortest encoding of `value` takes. */
export function varintLen(value: bigint): 1 | 2 | 4 | 8 {
  if (value < 1n << 6n) return 1;
  if (value < 1n << 14n) return 2;
  if (value < 1n << 30n) return 4;
  return 8;
}

/** Writes the shortest encoding of `value` into `out` at `at`; returns the next offset. */
export function writeVarint(value: bigint, out: Uint8Array, at: number): number {
  if (value < 0n || value > MAX_VARINT) {
    throw new EncodeError(`${value} does not fit in a varint`);
  }
  const size = varintLen(value);
  let rest = value;
  for (let i = size - 1; i >= 0; i--) {
    out[at + i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  out[at] |= [0x00, 0x40, 0, 0x80, 0, 0, 0, 0xc0][size - 1];
  return at + size;
}

/**
 * Reads a varint at `at` without consuming it: `null` when `bytes` ends inside it, else the
 * value and its encoded length.
 */
export function peekVarint(bytes: Uint8Array, at = 0): { value: bigint; size: number } | null {
  if (at >= bytes.length) return null;
  const first = bytes[at];
  const size = 1 << (first >> 6);
  if (at + size > bytes.length) return null;
  // Small varints are the common case; keep them out of bigint arithmetic until the end.
  let value = BigInt(first & 0x3f);
  for (let i = 1; i < size; i++) value = (value << 8n) | BigInt(bytes[at + i]);
  if (varintLen(value) !== size) throw new DecodeError('non_minimal_varint');
  return { value, size };
}
