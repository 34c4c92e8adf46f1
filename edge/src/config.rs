//! The edge's configuration: every limit has a default here and a key in the config file.
//!
//! `docs/configuration.md` lists every key; keep the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything an edge process needs to know, as read from the `[edge]` table of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// This edge's node id on cluster links and in INTEREST frames.
    pub node_id: String,
    /// Native protocol over TCP; `None` disables the listener.
    pub tcp: Option<SocketAddr>,
    /// Native protocol over TLS; needs `tls_cert` and `tls_key`.
    pub tls: Option<SocketAddr>,
    /// HTTP: health, metrics, WebSocket bridge, backend API, static files.
    pub http: Option<SocketAddr>,
    /// MQTT 3.1.1 and 5 devices (spec chapter 14); `None`, the default, disables it.
    pub mqtt: Option<SocketAddr>,
    /// PEM certificate chain for the TLS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates; when set, TLS clients must present a certificate they signed.
    pub tls_client_ca: Option<PathBuf>,
    /// Static files served at `/` (the web client's build); ignored if it does not exist.
    pub web_dir: Option<PathBuf>,
    /// Token signing keys; the first one signs, all of them verify (rotation).
    pub token_keys: Vec<TokenKey>,
    /// Bearer keys accepted by the backend HTTP API; empty disables the API.
    pub api_keys: Vec<String>,
    /// Dev mode: `POST /v1/dev/token` and `GET /dev` for loopback clients.
    pub dev: bool,
    /// The ring of brokers this edge routes to; the `natter` binary fills it from the
    /// `[cluster]` table, so it is not part of `[edge]`.
    #[serde(skip)]
    pub cluster: ClusterConfig,
    /// Protocol and resource limits.
    pub limits: Limits,
    /// Session timing.
    pub timing: Timing,
}

/// One token signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    /// The key id written into tokens, so verification picks the right key.
    pub id: String,
    /// The HMAC-SHA256 secret.
    pub secret: String,
}

/// The brokers and the link secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Ring version; every node of a cluster must use the same one.
    pub ring_version: u64,
    /// Virtual nodes per broker on the ring.
    pub vnodes: usize,
    /// The shared secret sent in LINK_HELLO.
    pub secret: String,
    /// Broker ids, in cluster-file order.
    pub brokers: Vec<String>,
}

/// Limits that protect the edge from its clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest frame a client may send, in bytes (announced in READY).
    pub max_frame_size: u64,
    /// Open connections per process, HTTP included; further ones get TOO_MANY_CONNECTIONS
    /// (HTTP: 503). 0 derives it from the file-descriptor limit, less room for storage,
    /// links and listeners.
    pub max_connections: usize,
    /// Of those, HTTP connections at most (WebSockets count as clients once upgraded).
    /// 0 means an eighth of `max_connections`, so HTTP can never crowd out native clients.
    pub max_http_connections: usize,
    /// Open connections per user; further ones get TOO_MANY_CONNECTIONS at HELLO.
    pub max_connections_per_user: usize,
    /// Requests per connection awaiting an answer; more get RATE_LIMITED.
    pub max_in_flight: usize,
    /// Bytes queued towards one client before the slow-consumer policy applies.
    pub outbound_budget: usize,
    /// Bytes queued towards all clients of the process before the same policy applies to the
    /// process as a whole, closing the largest queues first.
    pub outbound_total_budget: usize,
    /// Requests per second per device session (token bucket refill rate).
    pub requests_per_sec: f64,
    /// Requests a device may send at once (token bucket size).
    pub request_burst: f64,
    /// Frames queued towards one broker link before requests get UNAVAILABLE.
    pub link_queue: usize,
}

/// Session and link timing, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// A client must send HELLO within this time.
    pub hello_timeout_ms: u64,
    /// The heartbeat interval dictated in READY; silence for twice this closes the connection.
    pub heartbeat_ms: u64,
    /// Session lease at the home broker; renewed every third of it.
    pub lease_ms: u64,
    /// How long the home broker may take to answer SESSION_OPEN.
    pub open_timeout_ms: u64,
    /// A client over its outbound budget this long is closed with SLOW_CONSUMER.
    pub slow_consumer_ms: u64,
    /// The retry-after sent with UNAVAILABLE.
    pub unavailable_retry_ms: u64,
    /// The reconnect delay sent in GOAWAY.
    pub goaway_reconnect_ms: u64,
    /// How long a drain waits for in-flight requests before closing.
    pub drain_ms: u64,
    /// First link reconnect delay; doubles up to `link_backoff_max_ms`, with jitter.
    pub link_backoff_min_ms: u64,
    /// Longest link reconnect delay.
    pub link_backoff_max_ms: u64,
    /// How long dialing a broker and its LINK_HELLO/LINK_READY may take.
    pub link_handshake_ms: u64,
    /// An HTTP request's headers must arrive within this time.
    pub http_header_timeout_ms: u64,
    /// An HTTP connection with no traffic for this long is closed.
    pub http_idle_timeout_ms: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            node_id: "edge-1".into(),
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 7400))),
            tls: None,
            http: Some(SocketAddr::from(([127, 0, 0, 1], 7480))),
            mqtt: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            web_dir: None,
            token_keys: Vec::new(),
            api_keys: Vec::new(),
            dev: false,
            cluster: ClusterConfig::default(),
            limits: Limits::default(),
            timing: Timing::default(),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            ring_version: 1,
            vnodes: natter_codec::ring::DEFAULT_VNODES,
            secret: String::new(),
            brokers: vec!["b1".into()],
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: natter_codec::DEFAULT_MAX_FRAME_SIZE,
            max_connections: 0,
            max_http_connections: 0,
            max_connections_per_user: 16,
            max_in_flight: 256,
            outbound_budget: 1024 * 1024,
            outbound_total_budget: 64 * 1024 * 1024,
            requests_per_sec: 50.0,
            request_burst: 100.0,
            link_queue: 16 * 1024,
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            hello_timeout_ms: 10_000,
            heartbeat_ms: 30_000,
            lease_ms: 30_000,
            open_timeout_ms: 5_000,
            slow_consumer_ms: 10_000,
            unavailable_retry_ms: 1_000,
            goaway_reconnect_ms: 1_000,
            drain_ms: 5_000,
            link_backoff_min_ms: 100,
            link_backoff_max_ms: 5_000,
            link_handshake_ms: 5_000,
            http_header_timeout_ms: 10_000,
            http_idle_timeout_ms: 60_000,
        }
    }
}

/// File descriptors kept free for storage, links, listeners and refusals when the connection
/// limit is derived from RLIMIT_NOFILE: a twentieth of the limit, at least 256.
fn fd_headroom(nofile: u64) -> u64 {
    (nofile / 20).max(256)
}

impl Limits {
    /// Fills in the limits left at 0: `max_connections` from the file-descriptor limit, which
    /// is first raised to its hard maximum, so that the process never runs out of descriptors
    /// before it can refuse a client with TOO_MANY_CONNECTIONS.
    pub fn resolve(&mut self) {
        if self.max_connections == 0 {
            let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1_024);
            self.max_connections = nofile.saturating_sub(fd_headroom(nofile)).max(16) as usize;
        }
    }

    /// The HTTP connection limit: `max_http_connections`, or an eighth of `max_connections`.
    pub fn http_connections(&self) -> usize {
        match self.max_http_connections {
            0 => (self.max_connections / 8).max(1),
            explicit => explicit.min(self.max_connections),
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn derived_limits_leave_room_for_everything_else() {
        assert_eq!(fd_headroom(1_024), 256);
        assert_eq!(fd_headroom(20_000), 1_000);
        let mut limits = Limits::default();
        limits.resolve();
        assert!(limits.max_connections >= 16);
        assert_eq!(limits.http_connections(), limits.max_connections / 8);
        limits.max_http_connections = usize::MAX;
        assert_eq!(limits.http_connections(), limits.max_connections);
    }
}
