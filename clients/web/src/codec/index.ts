/**
 * natter wire protocol v1 in TypeScript: frames, their encoding and the limits that protect a
 * receiver. Sans-IO: it reads and writes byte arrays and never touches a socket or a clock.
 * spec/PROTOCOL.md is normative.
 */
export * from './enums.js';
export * from './errors.js';
export * from './frame.js';
export * from './framing.js';
export * from './schema.js';
export * from './varint.js';

/** The protocol version this codec speaks. */
export const VERSION = 1n;
