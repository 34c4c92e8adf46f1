/**
 * Wire enums and flag sets (spec sections 4, 5 and 10). They are open: a value this version
 * does not name stays representable as a bigint, and {@link enumName} returns undefined.
 */

/** What a conversation event is (spec 4.1). */
export const EventKind = {
  MESSAGE: 0x00n,
  EDIT: 0x01n,
  DELETE: 0x02n,
  MEMBER_ADDED: 0x03n,
  MEMBER_REMOVED: 0x04n,
  ROLE_CHANGED: 0x05n,
  GROUP_CREATED: 0x06n,
} as const;

/** A member's role in a group (spec 4.2). */
export const Role = { MEMBER: 0x00n, ADMIN: 0x01n, OWNER: 0x02n } as const;

/** Which way a HISTORY page reads from its anchor. */
export const Direction = { BACKWARD: 0x00n, FORWARD: 0x01n } as const;

/** Which receipt pointer a MARK moves. */
export const Marker = { DELIVERED: 0x01n, READ: 0x02n } as const;

/** A user's presence. */
export const Status = { UNKNOWN: 0x00n, OFFLINE: 0x01n, ONLINE: 0x02n } as const;

/** What a GROUP_UPDATE does. */
export const GroupOp = { ADD: 0x01n, REMOVE: 0x02n, SET_ROLE: 0x03n } as const;

/** What a conversation is. */
export const ConversationKind = { DIRECT: 0x01n, GROUP: 0x02n } as const;

/** What a node on a cluster link is. */
export const NodeRole = { EDGE: 0x01n, BROKER: 0x02n } as const;

/** Optional parts of the protocol, negotiated in HELLO and READY (spec 5.1); bit flags. */
export const Features = { RECEIPTS: 0x01n, TYPING: 0x02n, PRESENCE: 0x04n, ALL: 0x07n } as const;

/** State of a stored event (one byte of bit flags). */
export const EventFlags = { DELETED: 0x01, EDITED: 0x02 } as const;

/**
 * Wire error codes (spec section 10). Codes below 0x10 close the connection; the others
 * answer one request.
 */
export const ErrorCode = {
  PROTOCOL_VIOLATION: 0x01n,
  FRAME_TOO_LARGE: 0x02n,
  UNSUPPORTED_VERSION: 0x03n,
  UNAUTHENTICATED: 0x04n,
  TOKEN_EXPIRED: 0x05n,
  IDLE_TIMEOUT: 0x06n,
  SLOW_CONSUMER: 0x07n,
  TOO_MANY_CONNECTIONS: 0x08n,
  SHUTTING_DOWN: 0x09n,
  RING_MISMATCH: 0x0an,
  INTERNAL_ERROR: 0x0bn,
  INVALID_REQUEST: 0x10n,
  NOT_FOUND: 0x11n,
  FORBIDDEN: 0x12n,
  PAYLOAD_TOO_LARGE: 0x13n,
  DUPLICATE_MISMATCH: 0x14n,
  RATE_LIMITED: 0x15n,
  LIMIT_EXCEEDED: 0x16n,
  UNAVAILABLE: 0x17n,
  WRONG_OWNER: 0x18n,
  CONFLICT: 0x19n,
  UNKNOWN_SESSION: 0x1an,
} as const;

/** Whether the sender closes the connection after an ERROR with this code. */
export function closesConnection(code: bigint): boolean {
  return code < 0x10n;
}

/** Whether a request may be retried unchanged after an ERROR with this code. */
export function isRetryable(code: bigint): boolean {
  return (
    code === ErrorCode.RATE_LIMITED ||
    code === ErrorCode.UNAVAILABLE ||
    code === ErrorCode.INTERNAL_ERROR ||
    code === ErrorCode.SHUTTING_DOWN ||
    code === ErrorCode.IDLE_TIMEOUT ||
    code === ErrorCode.SLOW_CONSUMER
  );
}

/** The spec's name of `value` in `table`, or undefined for a value this version does not know. */
export function enumName(
  table: Readonly<Record<string, bigint>>,
  value: bigint,
): string | undefined {
  return Object.keys(table).find((name) => table[name] === value);
}
