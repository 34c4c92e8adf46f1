//! The config file: one TOML document for every subcommand, with `natter config` printing the
//! commented defaults. Flags and `NATTER_*` environment variables override it (see `main.rs`).

use std::path::{Path, PathBuf};

use natter_broker::{BrokerConfig, ClusterConfig};
use natter_edge::EdgeConfig;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Storage and generated secrets live here.
    pub data_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// The cluster file: brokers, ring version and link secret, shared by every node.
    pub cluster: ClusterConfig,
    /// The edge.
    pub edge: EdgeConfig,
    /// The broker (its `data_dir` and `cluster` come from the top level).
    pub broker: BrokerConfig,
}

/// Where and how to log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// A tracing filter such as `info` or `natter_edge=debug,info`; `RUST_LOG` wins.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("natter-data"),
            log: LogConfig::default(),
            cluster: ClusterConfig::default(),
            edge: EdgeConfig::default(),
            broker: BrokerConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            json: false,
            filter: "info".into(),
        }
    }
}

impl Config {
    /// Reads `path`, or the defaults when no file is given.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        toml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Copies the shared settings into the edge and broker sections: the data directory, and
    /// the cluster (or, with no brokers listed, this broker alone).
    pub fn resolve(&mut self) {
        self.broker.data_dir = self.data_dir.clone();
        self.broker.cluster = self.cluster.clone();
        let cluster = &mut self.edge.cluster;
        cluster.ring_version = self.cluster.ring_version;
        cluster.vnodes = self.cluster.vnodes;
        cluster.secret = self.cluster.secret.clone();
        cluster.brokers = if self.cluster.brokers.is_empty() {
            vec![self.broker.node.clone()]
        } else {
            self.cluster.brokers.iter().map(|b| b.id.clone()).collect()
        };
    }
}

/// The default configuration, commented; `natter config` prints it.
pub const DEFAULT_CONFIG: &str = r#"# natter configuration. Every key is optional; these are the defaults.
# Flags and NATTER_* environment variables override the file (see `natter serve --help`).
# docs/configuration.md describes every key.

# Storage (serve and broker) and the generated token secret (serve) live here; an edge has
# no use for it.
data_dir = "natter-data"

[log]
# One JSON object per line on stderr instead of text.
json = false
# A tracing filter; RUST_LOG overrides it.
filter = "info"

[cluster]
# Compared on every link handshake; bump it whenever `brokers` changes.
ring_version = 1
# The shared secret every link presents in LINK_HELLO.
secret = ""
# Virtual nodes per broker on the hash ring.
vnodes = 128
# The brokers and their link addresses. Empty: `serve` runs its one broker alone.
# brokers = [{ id = "b1", link = "10.0.0.1:7600" }, { id = "b2", link = "10.0.0.2:7600" }]
brokers = []
# Mutual TLS on every link: this node's certificate and key (a broker's names its id) and the
# cluster CA every peer's certificate must chain to. Off unless set: links are plain TCP.
# tls = { cert = "node.pem", key = "node.key", ca = "cluster-ca.pem" }

[edge]
# This edge's node id on links.
node_id = "edge-1"
# Native protocol over TCP.
tcp = "127.0.0.1:7400"
# Native protocol over TLS (needs tls_cert and tls_key); off unless set.
# tls = "0.0.0.0:7443"
# tls_cert = "cert.pem"
# tls_key = "key.pem"
# Require client certificates signed by these CAs on the TLS listener.
# tls_client_ca = "devices-ca.pem"
# HTTP: /healthz, /readyz, /metrics, /ws, the backend API and the web client.
http = "127.0.0.1:7480"
# MQTT 3.1.1 and 5 devices: the password is a natter token, topics name conversations
# (spec/PROTOCOL.md chapter 14); off unless set.
# mqtt = "127.0.0.1:1883"
# The web client's build, served at /.
# web_dir = "clients/web/dist"
# Token keys: the first signs, all verify (rotation). `serve` generates one if empty.
# token_keys = [{ id = "k2", secret = "new" }, { id = "k1", secret = "old" }]
token_keys = []
# Bearer keys for the backend HTTP API; empty disables it.
api_keys = []
# Dev mode: loopback-only /dev page and POST /v1/dev/token. Never in production.
dev = false

[edge.limits]
# Largest frame a client may send, in bytes.
max_frame_size = 65536
# Open connections per process, HTTP included. 0 derives it from the file-descriptor limit
# (raised to its hard maximum), keeping a twentieth of it (at least 256) for everything else.
max_connections = 0
# Of those, HTTP connections at most; 0 is an eighth of max_connections.
max_http_connections = 0
# Open connections per user.
max_connections_per_user = 16
# Requests per connection awaiting an answer.
max_in_flight = 256
# Bytes queued towards one client before the slow-consumer policy applies.
outbound_budget = 1048576
# Bytes queued towards all clients of the process before the same policy applies to the
# process, closing the largest queues first.
outbound_total_budget = 67108864
# Requests per second per device session, and the burst allowed.
requests_per_sec = 50.0
request_burst = 100.0
# Frames queued towards one broker before requests get UNAVAILABLE.
link_queue = 16384

[edge.timing]
# Milliseconds. HELLO must arrive within hello_timeout_ms.
hello_timeout_ms = 10000
# Heartbeat interval announced in READY; silence for twice this closes the connection.
heartbeat_ms = 30000
# Session lease at the home broker, renewed every third of it.
lease_ms = 30000
# How long the home broker may take to accept a session; also the backend API timeout.
open_timeout_ms = 5000
# A client over its outbound budget this long is closed with SLOW_CONSUMER.
slow_consumer_ms = 10000
# retry_after_ms sent with UNAVAILABLE.
unavailable_retry_ms = 1000
# reconnect_ms sent in GOAWAY.
goaway_reconnect_ms = 1000
# How long a drain waits for requests in flight.
drain_ms = 5000
# Link reconnect backoff (doubling, jittered) and handshake timeout.
link_backoff_min_ms = 100
link_backoff_max_ms = 5000
link_handshake_ms = 5000
# An HTTP request's headers must arrive within this time; a silent HTTP connection closes
# after the idle timeout.
http_header_timeout_ms = 10000
http_idle_timeout_ms = 60000

[broker]
# This broker's node id; in a cluster it must be listed in [cluster].brokers.
node = "b1"
# Storage backend: "redb" or "sled".
backend = "redb"
# An http:// URL that receives a JSON POST for users with no online device.
# webhook_url = "http://127.0.0.1:9000/push"

[broker.limits]
# Largest frame accepted on a link (edge or broker), in bytes.
link_frame_size = 16777216
# Largest message body, in bytes; larger: PAYLOAD_TOO_LARGE.
body = 16384
# Longest content type, in bytes.
content_type = 128
# Longest group title, in bytes.
title = 256
# Most events in one HISTORY page.
history_page = 200
# Most bytes of events in one HISTORY page, so a page fits a client's default 64 KiB frame;
# a page always holds at least one event.
history_page_bytes = 49152
# Most members in a group.
group_members = 5000
# Groups with more members fan out on read (no inbox entries) instead of on write.
fanout_threshold = 500
# Longest presence interest, in milliseconds; longer TTLs are cut to this.
interest_ttl_ms = 300000
# Most sessions one user may hold at this broker, over all edges.
sessions_per_user = 64
# Inbox entries every device has acked are kept this long, in milliseconds (7 days).
retention_ms = 604800000
# Most inbox entries replayed per round after a RESUME.
replay_page = 256
# Frames queued per link before the link is closed as stuck; sized for the burst one group
# commit releases (a message to a 500-member group is 500 pushes).
link_queue = 65536
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The printed defaults must be the defaults the code uses.
    #[test]
    fn the_printed_config_is_the_default() {
        let printed: Config = toml::from_str(DEFAULT_CONFIG).unwrap();
        let default = Config::default();
        assert_eq!(printed.data_dir, default.data_dir);
        assert_eq!(printed.log, default.log);
        assert_eq!(printed.cluster, default.cluster);
        assert_eq!(printed.broker, default.broker);
        let edge = |config: &Config| toml::to_string(&config.edge).unwrap();
        assert_eq!(edge(&printed), edge(&default));
    }

    /// Every key of the printed file has a comment right above it (or shares the comment of
    /// the key before it), and every limit the code knows is printed.
    #[test]
    fn every_printed_key_is_commented() {
        let mut commented = false;
        for line in DEFAULT_CONFIG.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                commented = true;
            } else if line.is_empty() || line.starts_with('[') {
                commented = false;
            } else {
                assert!(commented, "no comment above {line:?}");
            }
        }
        let printed: toml::Value = toml::from_str(DEFAULT_CONFIG).unwrap();
        let limits = toml::Value::try_from(natter_broker::Limits::default()).unwrap();
        let printed_limits = &printed["broker"]["limits"];
        for key in limits.as_table().unwrap().keys() {
            assert!(
                printed_limits.get(key).is_some(),
                "[broker.limits] {key} is not printed"
            );
        }
    }

    #[test]
    fn resolve_makes_a_single_broker_ring_without_a_cluster() {
        let mut config = Config::default();
        config.resolve();
        assert_eq!(config.edge.cluster.brokers, vec!["b1".to_string()]);
        assert_eq!(config.broker.data_dir, PathBuf::from("natter-data"));
    }

    #[test]
    fn link_tls_reaches_the_broker() {
        let mut config: Config = toml::from_str(
            "[cluster]\ntls = { cert = \"b1.pem\", key = \"b1.key\", ca = \"ca.pem\" }\n",
        )
        .unwrap();
        config.resolve();
        let tls = config.broker.cluster.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("b1.pem"));
        assert_eq!(tls.key, PathBuf::from("b1.key"));
        assert_eq!(tls.ca, PathBuf::from("ca.pem"));
        let typo = toml::from_str::<Config>(
            "[cluster]\ntls = { cert = \"b1.pem\", key = \"b1.key\", cert_ca = \"ca.pem\" }\n",
        );
        assert!(typo.is_err(), "unknown keys in the tls table are refused");
    }
}
