//! The admin view: JSON snapshots of a running edge for operators and their tools, like
//! NATS's `/connz` and `/varz`. Both endpoints sit behind the backend API key; their fields
//! are documented, with examples, in docs/http-api.md, and only ever grow.
//!
//! - `GET /v1/admin/connections?limit=&offset=`: the client connections, oldest first.
//! - `GET /v1/admin/server`: identity, uptime, counts, links, ring and limits, plus the
//!   sections the embedding process adds with [`crate::Edge::admin_section`] (`natter serve`
//!   adds its broker's, storage size included).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::http::{ApiError, authorize, parse_query};
use crate::hub::{Hub, lock, now_ms};

/// Connections listed per page unless the caller asks otherwise.
const DEFAULT_LIMIT: usize = 100;
/// The most connections one page may list.
const MAX_LIMIT: usize = 1_000;
/// The transports whose connections are counted, in the order they are shown.
const TRANSPORTS: [&str; 4] = ["tcp", "tls", "ws", "http"];

/// A section of `GET /v1/admin/server` computed on demand; it may block briefly (it runs on
/// a blocking thread), e.g. to measure a directory.
pub type Section = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The sections an embedding process added, by name.
#[derive(Default)]
pub struct Sections(Mutex<Vec<(String, Section)>>);

impl std::fmt::Debug for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = lock(&self.0).iter().map(|(name, _)| name.clone()).collect();
        f.debug_tuple("Sections").field(&names).finish()
    }
}

impl Sections {
    /// Adds (or replaces) the section `name`.
    pub fn add(&self, name: &str, section: Section) {
        let mut sections = lock(&self.0);
        sections.retain(|(existing, _)| existing != name);
        sections.push((name.to_string(), section));
    }

    fn all(&self) -> Vec<(String, Section)> {
        lock(&self.0).clone()
    }
}

/// The query of `GET /v1/admin/connections`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    DEFAULT_LIMIT
}

/// One page of client connections.
#[derive(Debug, Serialize)]
pub struct ConnectionPage {
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub now: u64,
    /// Client connections in all.
    pub total: usize,
    /// Connections skipped before this page.
    pub offset: usize,
    /// The page size asked for.
    pub limit: usize,
    /// The page, oldest connection first.
    pub connections: Vec<ConnectionInfo>,
}

/// One client connection.
#[derive(Debug, Serialize)]
pub struct ConnectionInfo {
    /// The session id (READY's `session`).
    pub session: u64,
    /// The authenticated user; empty before HELLO.
    pub user: String,
    /// The authenticated device; empty before HELLO.
    pub device: String,
    /// `tcp`, `tls` or `ws`.
    pub transport: &'static str,
    /// When the connection was accepted, in milliseconds since the Unix epoch.
    pub since: u64,
    /// Whether READY was sent.
    pub ready: bool,
    /// Bytes queued towards the client and not yet written.
    pub queued_bytes: usize,
}

/// Lists `limit` connections from `offset`, oldest first.
pub(crate) fn connection_page(hub: &Hub, offset: usize, limit: usize) -> ConnectionPage {
    let mut all = hub.connections();
    all.sort_unstable_by_key(|conn| conn.accepted);
    let total = all.len();
    let connections = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|conn| {
            let state = conn.state();
            ConnectionInfo {
                session: conn.id,
                user: state.session.user().to_string(),
                device: state.session.device().to_string(),
                transport: conn.transport,
                since: conn.since,
                ready: state.session.is_ready(),
                queued_bytes: state.outbound.used(),
            }
        })
        .collect();
    ConnectionPage {
        now: now_ms(),
        total,
        offset,
        limit,
        connections,
    }
}

/// The state of the edge as a whole.
#[derive(Debug, Serialize)]
pub struct ServerInfo {
    /// The natter version.
    pub version: &'static str,
    /// The edge's node id.
    pub node: String,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub now: u64,
    /// When the edge started, in milliseconds since the Unix epoch.
    pub started_at: u64,
    /// Milliseconds since the start.
    pub uptime_ms: u64,
    /// What `/readyz` says: every link up and not draining.
    pub ready: bool,
    /// Whether the edge is draining.
    pub draining: bool,
    /// Open connections.
    pub connections: ConnectionCounts,
    /// Bytes queued towards clients.
    pub outbound: Outbound,
    /// The ring the edge routes by.
    pub ring: Ring,
    /// One link per broker.
    pub links: Vec<Link>,
    /// The edge's limits, as configured (`[edge.limits]`, zeros resolved).
    pub limits: Limits,
}

/// Open connections by kind.
#[derive(Debug, Serialize)]
pub struct ConnectionCounts {
    /// Client connections (tcp, tls and ws together), including those before READY.
    pub clients: usize,
    /// Users with at least one connection past HELLO.
    pub users: usize,
    /// Native protocol over TCP.
    pub tcp: i64,
    /// Native protocol over TLS.
    pub tls: i64,
    /// WebSocket bridge.
    pub ws: i64,
    /// HTTP connections (this request's included).
    pub http: i64,
}

/// The process-wide outbound queue.
#[derive(Debug, Serialize)]
pub struct Outbound {
    /// Bytes queued towards all clients.
    pub queued_bytes: usize,
    /// `outbound_total_budget`.
    pub budget_bytes: usize,
}

/// The ring.
#[derive(Debug, Serialize)]
pub struct Ring {
    /// The ring version, compared on every link handshake.
    pub version: u64,
    /// Virtual nodes per broker.
    pub vnodes: usize,
    /// The brokers, in cluster-file order.
    pub brokers: Vec<String>,
}

/// A link to a broker.
#[derive(Debug, Serialize)]
pub struct Link {
    /// The broker id.
    pub broker: String,
    /// `up` or `down`.
    pub state: &'static str,
    /// Frames waiting to be written to the link.
    pub queued_frames: usize,
}

/// The built-in part of `GET /v1/admin/server`.
pub(crate) fn server_info(hub: &Hub) -> ServerInfo {
    let now = now_ms();
    let count = |transport: &str| {
        hub.metrics
            .connections
            .with_label_values(&[transport])
            .get()
    };
    let [tcp, tls, ws, http] = TRANSPORTS.map(count);
    let links = hub
        .links
        .iter()
        .map(|link| Link {
            broker: link.broker.clone(),
            state: if link.up.load(std::sync::atomic::Ordering::Acquire) {
                "up"
            } else {
                "down"
            },
            queued_frames: link.tx.max_capacity() - link.tx.capacity(),
        })
        .collect();
    ServerInfo {
        version: env!("CARGO_PKG_VERSION"),
        node: hub.config.node_id.clone(),
        now,
        started_at: hub.started_at,
        uptime_ms: now.saturating_sub(hub.started_at),
        ready: hub.is_ready(),
        draining: hub.draining.load(std::sync::atomic::Ordering::Acquire),
        connections: ConnectionCounts {
            clients: hub.connection_count(),
            users: hub.user_count(),
            tcp,
            tls,
            ws,
            http,
        },
        outbound: Outbound {
            queued_bytes: hub.outbound_used(),
            budget_bytes: hub.config.limits.outbound_total_budget,
        },
        ring: Ring {
            version: hub.router.version(),
            vnodes: hub.config.cluster.vnodes,
            brokers: hub.router.brokers().to_vec(),
        },
        links,
        limits: Limits {
            max_http_connections: hub.config.limits.http_connections(),
            ..hub.config.limits.clone()
        },
    }
}

/// `GET /v1/admin/connections`.
pub(crate) async fn connections(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ConnectionPage>, ApiError> {
    authorize(&hub, &headers)?;
    let page = parse_query(query)?;
    if !(1..=MAX_LIMIT).contains(&page.limit) {
        return Err(ApiError::invalid(format!("limit: 1 to {MAX_LIMIT}")));
    }
    Ok(Json(connection_page(&hub, page.offset, page.limit)))
}

/// `GET /v1/admin/server`.
pub(crate) async fn server(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&hub, &headers)?;
    let info = serde_json::to_value(server_info(&hub))
        .map_err(|error| ApiError::internal(error.to_string()))?;
    let serde_json::Value::Object(mut body) = info else {
        return Err(ApiError::internal("server info is not an object"));
    };
    let sections = hub.admin.all();
    if !sections.is_empty() {
        let computed = tokio::task::spawn_blocking(move || {
            sections
                .into_iter()
                .map(|(name, section)| (name, section()))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?;
        for (name, value) in computed {
            // A section never hides a built-in field.
            body.entry(name).or_insert(value);
        }
    }
    Ok(Json(serde_json::Value::Object(body)))
}
