//! Errors: the wire error-code catalog (spec section 10) and the codec's decode/encode errors.

use crate::open_enum::open_enum;

open_enum! {
    /// A wire error code, carried by ERROR and GOAWAY frames.
    ///
    /// Codes below 0x10 are connection errors: the sender closes the connection after the
    /// frame. Codes from 0x10 answer one request and leave the connection open
    /// (`[NWP-10-1]`).
    pub struct ErrorCode(u64) {
        /// A malformed frame, a frame in the wrong state or from the wrong side.
        PROTOCOL_VIOLATION = 0x01,
        /// A frame longer than the receiver's maximum frame size.
        FRAME_TOO_LARGE = 0x02,
        /// No protocol version in common.
        UNSUPPORTED_VERSION = 0x03,
        /// The token is missing, malformed or wrongly signed.
        UNAUTHENTICATED = 0x04,
        /// The token has expired; mint a new one before reconnecting.
        TOKEN_EXPIRED = 0x05,
        /// Nothing arrived within the heartbeat deadline, or HELLO came too late.
        IDLE_TIMEOUT = 0x06,
        /// The connection did not read what it was sent fast enough.
        SLOW_CONSUMER = 0x07,
        /// Too many connections for this user or this server.
        TOO_MANY_CONNECTIONS = 0x08,
        /// The server is draining; reconnect, to another server if possible.
        SHUTTING_DOWN = 0x09,
        /// The peers of a cluster link disagree on the ring (links only).
        RING_MISMATCH = 0x0a,
        /// The server failed; retrying may succeed.
        INTERNAL_ERROR = 0x0b,
        /// A field's value is not acceptable (a bad id, an unknown kind, a zero limit).
        INVALID_REQUEST = 0x10,
        /// The conversation, group or target does not exist, or the user is not a member of it.
        NOT_FOUND = 0x11,
        /// The user is a member but may not do this (not an admin, not the author).
        FORBIDDEN = 0x12,
        /// A body, title or list is longer than the server allows.
        PAYLOAD_TOO_LARGE = 0x13,
        /// The client message id was already used with a different body.
        DUPLICATE_MISMATCH = 0x14,
        /// Too many requests; retry after the given delay.
        RATE_LIMITED = 0x15,
        /// A count limit was reached (members, groups, subscriptions).
        LIMIT_EXCEEDED = 0x16,
        /// A server this request needs is unreachable; retry after the given delay.
        UNAVAILABLE = 0x17,
        /// The request reached a broker that does not own its key (links only).
        WRONG_OWNER = 0x18,
        /// The request conflicts with the current state (already a member, not a member).
        CONFLICT = 0x19,
        /// A link frame names a session the broker does not know (links only).
        UNKNOWN_SESSION = 0x1a,
    }
}

impl ErrorCode {
    /// Whether the sender closes the connection after an ERROR with this code.
    pub fn closes_connection(self) -> bool {
        self.0 < 0x10
    }

    /// Whether a client may retry the same request unchanged, after any retry-after delay.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RATE_LIMITED
                | Self::UNAVAILABLE
                | Self::INTERNAL_ERROR
                | Self::SHUTTING_DOWN
                | Self::IDLE_TIMEOUT
                | Self::SLOW_CONSUMER
        )
    }
}

/// Why a byte sequence is not a valid frame. Every variant is a connection error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix exceeds the receiver's maximum frame size (`[NWP-3-3]`).
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The receiver's limit.
        max: u64,
    },
    /// The length prefix is zero, so the frame has no type (`[NWP-3-2]`).
    #[error("frame has no type")]
    EmptyFrame,
    /// A field runs past the end of the frame (`[NWP-3-5]`).
    #[error("field runs past the end of the frame")]
    Truncated,
    /// A varint is not in its shortest form (`[NWP-2.2-2]`).
    #[error("varint is not in its shortest form")]
    NonMinimalVarint,
    /// A string field is not valid UTF-8 (`[NWP-2.2-3]`).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A flag field is neither 0x00 nor 0x01 (`[NWP-2.2-4]`).
    #[error("flag is neither 0 nor 1")]
    InvalidFlag,
    /// A nested frame (in ROUTED or PUSH) is followed by more bytes (`[NWP-9.3-2]`).
    #[error("bytes follow a nested frame")]
    TrailingData,
}

impl DecodeError {
    /// The error code a receiver sends before closing the connection.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::FrameTooLarge { .. } => ErrorCode::FRAME_TOO_LARGE,
            _ => ErrorCode::PROTOCOL_VIOLATION,
        }
    }

    /// The name used for this error in `spec/vectors`.
    pub fn vector_name(self) -> &'static str {
        match self {
            Self::FrameTooLarge { .. } => "frame_too_large",
            Self::EmptyFrame => "empty_frame",
            Self::Truncated => "truncated",
            Self::NonMinimalVarint => "non_minimal_varint",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidFlag => "invalid_flag",
            Self::TrailingData => "trailing_data",
        }
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An integer field is above 2^62 - 1, the largest varint.
    #[error("{0} does not fit in a varint")]
    VarintOverflow(u64),
}
