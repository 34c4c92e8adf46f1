/** Cutting a byte stream into frames (spec section 3). */
import { DecodeError } from './errors.js';
import { decodeFrame } from './frame.js';
import type { Frame } from './schema.js';
import { peekVarint } from './varint.js';

/** The maximum frame size a peer assumes until READY says otherwise: 64 KiB. */
export const DEFAULT_MAX_FRAME_SIZE = 64n * 1024n;

/** No implementation may accept frames longer than this: 16 MiB (`[NWP-3-4]`). */
export const MAX_FRAME_SIZE_CAP = 16n * 1024n * 1024n;

/**
 * Checks the length prefix at the front of `bytes` and returns the size of the whole frame,
 * or `null` while the prefix itself is incomplete.
 *
 * The length is checked against `maxFrameSize` (and the 16 MiB cap) before a byte of the body
 * is buffered (`[NWP-3-3]`), so a hostile length cannot make the receiver allocate.
 */
export function frameSize(bytes: Uint8Array, maxFrameSize: bigint): number | null {
  const prefix = peekVarint(bytes);
  if (prefix === null) return null;
  const max = maxFrameSize < MAX_FRAME_SIZE_CAP ? maxFrameSize : MAX_FRAME_SIZE_CAP;
  if (prefix.value > max) {
    throw new DecodeError(
      'frame_too_large',
      `frame of ${prefix.value} bytes exceeds the maximum of ${max}`,
    );
  }
  if (prefix.value === 0n) throw new DecodeError('empty_frame');
  return prefix.size + Number(prefix.value);
}

/**
 * Decodes one WebSocket message, which carries exactly one whole frame (`[NWP-5.6-2]`): a
 * message holding less or more is `not_one_frame`, never an incomplete frame to be continued.
 */
export function decodeMessage(bytes: Uint8Array, maxFrameSize: bigint): Frame {
  const size = frameSize(bytes, maxFrameSize);
  if (size !== bytes.length) {
    throw new DecodeError('not_one_frame', 'a WebSocket message must hold exactly one frame');
  }
  return decodeFrame(bytes);
}

/**
 * Reads frames from a byte stream that arrives in chunks of any size.
 *
 * `next()` returns `null` while the next frame is incomplete, which is an expected condition,
 * not an error; any thrown {@link DecodeError} is a connection error.
 */
export class FrameReader {
  private buffered = new Uint8Array(0);

  constructor(private readonly maxFrameSize: bigint = DEFAULT_MAX_FRAME_SIZE) {}

  /** Appends bytes read from the stream. */
  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.buffered.length + chunk.length);
    joined.set(this.buffered);
    joined.set(chunk, this.buffered.length);
    this.buffered = joined;
    // Check the prefix as soon as it is readable, so an oversized frame fails before its
    // body is buffered.
    frameSize(this.buffered, this.maxFrameSize);
  }

  /** The next complete frame, or `null` until one is buffered. */
  next(): Frame | null {
    const size = frameSize(this.buffered, this.maxFrameSize);
    if (size === null || size > this.buffered.length) return null;
    const frame = this.buffered.subarray(0, size);
    this.buffered = this.buffered.slice(size);
    return decodeFrame(frame);
  }

  /** Bytes buffered and not yet returned as a frame. */
  get pending(): number {
    return this.buffered.length;
  }
}
