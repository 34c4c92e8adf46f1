/** Encoding and decoding frames and records, driven by the tables in schema.ts. */
import { DecodeError, EncodeError } from './errors.js';
import { Reader, Writer } from './buffer.js';
import { varintLen, writeVarint } from './varint.js';
import {
  FRAMES,
  FRAME_NAMES,
  type Frame,
  type Kind,
  RECORDS,
  type RecordName,
  type RecordOf,
} from './schema.js';

type Fields = readonly (readonly [string, Kind])[];
type Loose = Record<string, unknown>;

function readKind(reader: Reader, kind: Kind): unknown {
  switch (kind) {
    case 'varint':
      return reader.varint();
    case 'byte':
      return reader.byte();
    case 'flag':
      return reader.flag();
    case 'bytes':
      return reader.bytesField();
    case 'text':
      return reader.text();
    default:
      if ('list' in kind) {
        const count = reader.count();
        const items = [];
        for (let i = 0; i < count; i++) items.push(readKind(reader, kind.list));
        return items;
      }
      return readFields(reader, RECORDS[kind.record]);
  }
}

function readFields(reader: Reader, fields: Fields): Loose {
  const value: Loose = {};
  for (const [name, kind] of fields) value[name] = readKind(reader, kind);
  return value;
}

function writeKind(writer: Writer, kind: Kind, value: unknown, path: string): void {
  switch (kind) {
    case 'varint':
      if (typeof value !== 'bigint') throw new EncodeError(`${path} must be a bigint`);
      return writer.varint(value);
    case 'byte':
      if (typeof value !== 'number') throw new EncodeError(`${path} must be a number`);
      return writer.byte(value);
    case 'flag':
      if (typeof value !== 'boolean') throw new EncodeError(`${path} must be a boolean`);
      return writer.flag(value);
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw new EncodeError(`${path} must be a Uint8Array`);
      return writer.bytesField(value);
    case 'text':
      if (typeof value !== 'string') throw new EncodeError(`${path} must be a string`);
      return writer.text(value);
    default:
      if ('list' in kind) {
        if (!Array.isArray(value)) throw new EncodeError(`${path} must be an array`);
        writer.varint(BigInt(value.length));
        value.forEach((item, i) => writeKind(writer, kind.list, item, `${path}[${i}]`));
        return;
      }
      return writeFields(writer, RECORDS[kind.record], value as Loose, path);
  }
}

function writeFields(writer: Writer, fields: Fields, value: Loose, path: string): void {
  for (const [name, kind] of fields) writeKind(writer, kind, value[name], `${path}.${name}`);
}

/**
 * Decodes exactly one complete frame, length prefix included.
 *
 * The caller has checked the length against its limit (see {@link splitFrame}). Bytes after
 * the last field the frame type defines are ignored (`[NWP-11-2]`); bytes after the frame are
 * an error, because a nested frame (ROUTED, PUSH) must fill its field exactly.
 */
export function decodeFrame(bytes: Uint8Array): Frame {
  const outer = new Reader(bytes);
  const len = outer.varint();
  if (len === 0n) throw new DecodeError('empty_frame');
  if (BigInt(outer.remaining) < len) throw new DecodeError('truncated');
  if (BigInt(outer.remaining) > len) throw new DecodeError('trailing_data');
  const code = outer.varint();
  const name = FRAME_NAMES.get(code);
  if (name === undefined) return { type: 'UNKNOWN', frame_type: code, payload: outer.rest() };
  return { type: name, ...readFields(outer, FRAMES[name].fields) } as Frame;
}

/** Encodes a frame, length prefix included. */
export function encodeFrame(frame: Frame): Uint8Array {
  const body = new Writer();
  if (frame.type === 'UNKNOWN') {
    body.varint(frame.frame_type);
    body.raw(frame.payload);
  } else {
    const spec = FRAMES[frame.type];
    body.varint(BigInt(spec.code));
    writeFields(body, spec.fields, frame as unknown as Loose, frame.type);
  }
  const payload = body.finish();
  const out = new Uint8Array(varintLen(BigInt(payload.length)) + payload.length);
  out.set(payload, writeVarint(BigInt(payload.length), out, 0));
  return out;
}

/** Decodes a record from the front of `bytes`; trailing bytes are ignored as in frames. */
export function decodeRecord<R extends RecordName>(name: R, bytes: Uint8Array): RecordOf<R> {
  return readFields(new Reader(bytes), RECORDS[name]) as RecordOf<R>;
}

/** Encodes a record with no framing of its own (a membership event's body, for one). */
export function encodeRecord<R extends RecordName>(name: R, value: RecordOf<R>): Uint8Array {
  const writer = new Writer();
  writeFields(writer, RECORDS[name], value as unknown as Loose, name);
  return writer.finish();
}
