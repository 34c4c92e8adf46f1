//! Errors an application can match on.

use std::time::Duration;

use natter_codec::ErrorCode;

/// Everything a natter client call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered the request, or closed the connection, with an error code.
    #[error("server error {code}: {message}")]
    Server {
        /// The wire error code; match on it (`ErrorCode::FORBIDDEN`, ...).
        code: ErrorCode,
        /// Retry no sooner than this, when the server said so.
        retry_after: Option<Duration>,
        /// For people; never parse it.
        message: String,
    },
    /// The connection dropped while a request that is not safe to repeat (group create or
    /// update) was in flight: it may or may not have taken effect.
    #[error("connection lost before the answer; the request may or may not have taken effect")]
    ConnectionLost,
    /// The client was closed, or it stopped for good after a fatal error.
    #[error("the client is closed")]
    Closed,
    /// History ended before the seq a gap repair needed; the conversation stays incomplete.
    #[error("history ends at seq {through}, before seq {until}")]
    HistoryIncomplete {
        /// The last seq delivered.
        through: u64,
        /// The seq the repair wanted to reach.
        until: u64,
    },
    /// The server broke the protocol (an answer of the wrong type, a malformed frame).
    #[error("protocol: {0}")]
    Protocol(String),
    /// An argument was rejected before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The configuration cannot work (a bad URL, an unreadable CA file, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// Connecting or talking to the server failed at the transport level.
    #[error("transport: {0}")]
    Transport(String),
}

impl Error {
    /// An error built from an ERROR or GOAWAY frame's fields.
    pub fn server(code: ErrorCode, retry_after_ms: u64, message: &str) -> Self {
        Self::Server {
            code,
            retry_after: (retry_after_ms > 0).then(|| Duration::from_millis(retry_after_ms)),
            message: message.to_owned(),
        }
    }

    /// The wire error code, for server errors.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How long to wait before retrying, when the server said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether repeating the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Server { code, .. } => code.is_retryable(),
            Self::ConnectionLost | Self::Transport(_) => true,
            _ => false,
        }
    }
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
