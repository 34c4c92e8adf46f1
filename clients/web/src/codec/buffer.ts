/** Byte cursors for one frame: a reader that never reads past its end, a growable writer. */
import { DecodeError, EncodeError } from './errors.js';
import { peekVarint, varintLen, writeVarint } from './varint.js';

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** Reads fields from the payload of one frame. */
export class Reader {
  private at = 0;

  constructor(private readonly bytes: Uint8Array) {}

  /** Bytes not read yet. */
  get remaining(): number {
    return this.bytes.length - this.at;
  }

  varint(): bigint {
    const read = peekVarint(this.bytes, this.at);
    if (read === null) throw new DecodeError('truncated');
    this.at += read.size;
    return read.value;
  }

  byte(): number {
    if (this.remaining < 1) throw new DecodeError('truncated');
    return this.bytes[this.at++];
  }

  /** `Flag (8)`: 0x00 or 0x01, anything else is malformed (`[NWP-2.2-4]`). */
  flag(): boolean {
    const value = this.byte();
    if (value > 1) throw new DecodeError('invalid_flag');
    return value === 1;
  }

  /** `Bytes (b)`: a varint length, then that many bytes, copied out of the frame. */
  bytesField(): Uint8Array {
    const len = this.varint();
    if (len > BigInt(this.remaining)) throw new DecodeError('truncated');
    const start = this.at;
    this.at += Number(len);
    return this.bytes.slice(start, this.at);
  }

  /** `String (s)`: bytes that MUST be valid UTF-8 (`[NWP-2.2-3]`). */
  text(): string {
    const len = this.varint();
    if (len > BigInt(this.remaining)) throw new DecodeError('truncated');
    const start = this.at;
    this.at += Number(len);
    try {
      return utf8Decoder.decode(this.bytes.subarray(start, this.at));
    } catch {
      throw new DecodeError('invalid_utf8');
    }
  }

  /** A list's count; a count above the bytes left cannot be honest (each item takes one). */
  count(): number {
    const count = this.varint();
    if (count > BigInt(this.remaining)) throw new DecodeError('truncated');
    return Number(count);
  }

  /** Everything not read yet. */
  rest(): Uint8Array {
    const rest = this.bytes.slice(this.at);
    this.at = this.bytes.length;
    return rest;
  }
}

/** Appends fields to a buffer that grows as needed. */
export class Writer {
  private buf = new Uint8Array(64);
  private len = 0;

  private reserve(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.len + extra));
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
  }

  varint(value: bigint): void {
    this.reserve(8);
    this.len = writeVarint(value, this.buf, this.len);
  }

  byte(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) {
      throw new EncodeError(`${value} does not fit in a byte`);
    }
    this.reserve(1);
    this.buf[this.len++] = value;
  }

  flag(value: boolean): void {
    this.byte(value ? 1 : 0);
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  bytesField(bytes: Uint8Array): void {
    this.varint(BigInt(bytes.length));
    this.raw(bytes);
  }

  text(value: string): void {
    // A lone surrogate has no UTF-8 encoding; TextEncoder would silently write U+FFFD.
    if (!isWellFormed(value)) throw new EncodeError('string is not well-formed Unicode');
    this.bytesField(utf8Encoder.encode(value));
  }

  /** The bytes written so far. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  get length(): number {
    return this.len;
  }
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function isWellFormed(value: string): boolean {
  return !loneSurrogate.test(value);
}

/** Prefixes `body` with its length as a varint. */
export function lengthPrefixed(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(varintLen(BigInt(body.length)) + body.length);
  const at = writeVarint(BigInt(body.length), out, 0);
  out.set(body, at);
  return out;
}
