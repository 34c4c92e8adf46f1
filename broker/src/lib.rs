//! natter-broker: conversation logs, inboxes, receipts, groups and presence behind cluster
//! links.
//!
//! The crate has two layers, like quinn and quinn-proto:
//!
//! - [`shard`] is the sans-IO state machine. It never touches a socket or a clock: feed it
//!   with `Shard::handle_*(now, ...)` and drain [`shard::Output`]s with
//!   [`Shard::poll_output`](shard::Shard::poll_output). Writes leave as batches to commit;
//!   anything that depends on a write (acks, pushes) is held until the driver reports the
//!   batch durable, so no client ever sees state a crash could take back.
//! - [`Broker`] is the tokio driver: it opens storage, runs the group committer, serves
//!   links ([`Broker::serve_link`], [`run`]), dials the other brokers and posts webhooks.
//!
//! # What an edge sees on its link
//!
//! 1. The edge sends LINK_HELLO (role EDGE, the cluster secret and ring version); the broker
//!    answers LINK_READY, or ERROR UNAUTHENTICATED / RING_MISMATCH / UNSUPPORTED_VERSION and
//!    closes.
//! 2. SESSION_OPEN for a new session is answered with `ROUTED{session, SYNCED{request 0,
//!    inbox_head}}` (the head for READY), or `ROUTED{session, ERROR{0, code}}`
//!    (WRONG_OWNER, LIMIT_EXCEEDED, INVALID_REQUEST). Renewals are not answered.
//! 3. Client requests go in as `ROUTED{session, user, device, frame}`; answers and pushes
//!    (DELIVER, RECEIPT, TYPING_UPDATE, PRESENCE, GAP, SYNCED) come back as
//!    `ROUTED{session, "", "", frame}`.
//! 4. When the link drops, the broker closes every session of that link: after reconnecting,
//!    the edge opens its sessions again and they RESUME from their last ack.
//! 5. A frame an edge may not send (FANOUT, LINK_READY, ...) gets ERROR PROTOCOL_VIOLATION
//!    and the link is closed; a bad client frame inside ROUTED only fails that request.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod keys;
mod link;
pub mod metrics;
mod records;
mod server;
pub mod shard;
pub mod storage;
pub mod tls;
mod webhook;

pub use config::{Backend, BrokerConfig, ClusterConfig, Limits, LinkTlsConfig, PeerConfig};
pub use link::LinkError;
pub use metrics::{BrokerMetrics, BrokerStatus};
pub use server::{Broker, BrokerError, run};
pub use shard::Shard;
