//! The natter client SDK.
//!
//! Two layers, like quinn and quinn-proto:
//!
//! - [`session::Session`] is the protocol without I/O: handshake, request bookkeeping,
//!   heartbeats, resume, acks, dedup, retries and gap repair, driven with frames and `now`.
//! - [`Client`] runs a session over TCP, TLS or WebSocket on tokio, reconnects with
//!   jittered exponential backoff, and hands the application a typed [`Events`] stream.
//!
//! Spec semantics (what each frame means) are in `docs/ARCHITECTURE.md` and
//! `spec/PROTOCOL.md`; this crate knows only the codec and the wire.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
pub mod cursor;
mod error;
pub mod event;
pub mod request;
pub mod session;
pub mod transport;

pub use client::{Client, Config, Events, PendingReply, new_client_msg_id};
pub use cursor::{Cursor, CursorStore, MemoryCursorStore};
pub use error::{Error, Result};
pub use event::{ChatEvent, ConnectionState, Event};
pub use natter_codec::ErrorCode;
pub use natter_codec::types::{Direction, EventKind, Marker, Role, Status};
pub use request::{
    ConversationPage, ConversationSummary, GroupInfo, HistoryPage, OutgoingMessage, Reply, Request,
    Sent,
};
