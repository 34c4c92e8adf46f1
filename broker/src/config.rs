//! Broker configuration: identity, storage, cluster membership and limits.
//!
//! Every field has a default, so an empty TOML table is a working single-node broker; the
//! types also serialize, so a binary can print the defaults as a starting config.

use std::net::SocketAddr;
use std::path::PathBuf;

use natter_codec::ring::{DEFAULT_VNODES, Ring};
use serde::{Deserialize, Serialize};

/// Which storage backend holds the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// redb: copy-on-write B-tree, fsync per commit.
    #[default]
    Redb,
    /// sled 0.34.7.
    Sled,
}

/// One broker of the cluster, as listed in the cluster file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PeerConfig {
    /// The broker's node id; it places the broker on the ring.
    pub id: String,
    /// Where its link listener accepts connections.
    pub link: SocketAddr,
}

/// The cluster as every node sees it; all nodes must load the same one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// Compared at every link handshake; bump it whenever `brokers` changes.
    pub ring_version: u64,
    /// The shared secret every link presents in LINK_HELLO.
    pub secret: String,
    /// The brokers; an empty list means this broker alone.
    pub brokers: Vec<PeerConfig>,
    /// Virtual nodes per broker on the ring.
    pub vnodes: usize,
    /// Mutual TLS on every link, both directions; none keeps links plain TCP.
    pub tls: Option<LinkTlsConfig>,
}

/// The PEM files of mutual TLS on links. They differ per node: each presents its own
/// certificate, and a broker's must carry its id as a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTlsConfig {
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
    /// The cluster CA: peers must present a certificate it signed.
    pub ca: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            ring_version: 1,
            secret: String::new(),
            brokers: Vec::new(),
            vnodes: DEFAULT_VNODES,
            tls: None,
        }
    }
}

/// Limits the broker enforces (docs/ARCHITECTURE.md, Limits).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Limits {
    /// Largest frame accepted on a link, in bytes.
    pub link_frame_size: u64,
    /// Largest message body, in bytes.
    pub body: usize,
    /// Longest content type, in bytes.
    pub content_type: usize,
    /// Longest group title, in bytes.
    pub title: usize,
    /// Most events in one HISTORY page.
    pub history_page: u64,
    /// Most bytes of events in one HISTORY page, so a page fits a client's default 64 KiB
    /// frame; a page always holds at least one event.
    pub history_page_bytes: usize,
    /// Most members in a group.
    pub group_members: usize,
    /// Groups with more members fan out on read instead of on write.
    pub fanout_threshold: usize,
    /// Longest presence interest, in milliseconds.
    pub interest_ttl_ms: u64,
    /// Most sessions one user may hold at this broker.
    pub sessions_per_user: usize,
    /// Inbox entries every device has acked are kept this long, in milliseconds.
    pub retention_ms: u64,
    /// Most entries of a replay page (one FETCH round to the owners).
    pub replay_page: usize,
    /// Frames queued per link before the link is considered stuck and closed. One group
    /// commit releases the answers and pushes of every message in it at once (a message to a
    /// 500-member group is 500 pushes), so this must hold such a burst: a link is closed only
    /// when its peer has stopped reading, never because a commit was large.
    pub link_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            link_frame_size: natter_codec::MAX_FRAME_SIZE_CAP,
            body: 16 * 1024,
            content_type: 128,
            title: 256,
            history_page: 200,
            history_page_bytes: 48 * 1024,
            group_members: 5_000,
            fanout_threshold: 500,
            interest_ttl_ms: 5 * 60 * 1000,
            sessions_per_user: 64,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            replay_page: 256,
            link_queue: 65_536,
        }
    }
}

/// Everything a broker needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct BrokerConfig {
    /// This broker's node id; in a cluster it must appear in `cluster.brokers`.
    pub node: String,
    /// Where the storage files live.
    pub data_dir: PathBuf,
    /// Which storage backend to use.
    pub backend: Backend,
    /// The cluster this broker belongs to.
    pub cluster: ClusterConfig,
    /// Limits enforced on requests.
    pub limits: Limits,
    /// An `http://` URL that receives a JSON POST when a user with no online device gets a
    /// new inbox entry; none disables offline push.
    pub webhook_url: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node: "b1".to_string(),
            data_dir: PathBuf::from("natter-data"),
            backend: Backend::default(),
            cluster: ClusterConfig::default(),
            limits: Limits::default(),
            webhook_url: None,
        }
    }
}

impl BrokerConfig {
    /// The ring this configuration describes: the listed brokers, or this node alone.
    pub fn ring(&self) -> Ring {
        let ids: Vec<String> = if self.cluster.brokers.is_empty() {
            vec![self.node.clone()]
        } else {
            self.cluster.brokers.iter().map(|b| b.id.clone()).collect()
        };
        Ring::new(self.cluster.ring_version, ids, self.cluster.vnodes)
    }

    /// The other brokers, which this one dials.
    pub fn peers(&self) -> impl Iterator<Item = &PeerConfig> {
        self.cluster.brokers.iter().filter(|b| b.id != self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_is_a_single_node_broker() {
        let config: BrokerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, BrokerConfig::default());
        assert_eq!(config.ring().owner("conv:g/x"), Some("b1"));
    }

    #[test]
    fn printed_defaults_load_back() {
        let printed = serde_json::to_string(&BrokerConfig::default()).unwrap();
        let loaded: BrokerConfig = serde_json::from_str(&printed).unwrap();
        assert_eq!(loaded, BrokerConfig::default());
    }

    #[test]
    fn a_cluster_lists_its_peers() {
        let config: BrokerConfig = serde_json::from_str(
            r#"{"node":"b2","backend":"sled","cluster":{"ring_version":3,"secret":"s",
            "brokers":[{"id":"b1","link":"127.0.0.1:7001"},{"id":"b2","link":"127.0.0.1:7002"}]},
            "limits":{"fanout_threshold":10}}"#,
        )
        .unwrap();
        assert_eq!(config.backend, Backend::Sled);
        assert_eq!(config.limits.fanout_threshold, 10);
        assert_eq!(config.limits.body, 16 * 1024);
        assert_eq!(
            config.peers().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["b1"]
        );
        assert_eq!(config.ring().version(), 3);
        assert_eq!(config.cluster.tls, None);
    }

    #[test]
    fn links_take_tls_files() {
        let config: ClusterConfig =
            serde_json::from_str(r#"{"tls":{"cert":"b1.pem","key":"b1.key","ca":"ca.pem"}}"#)
                .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("b1.pem"));
        assert_eq!(tls.key, PathBuf::from("b1.key"));
        assert_eq!(tls.ca, PathBuf::from("ca.pem"));
        let incomplete = serde_json::from_str::<ClusterConfig>(r#"{"tls":{"cert":"b1.pem"}}"#);
        assert!(incomplete.is_err(), "every file is required");
    }
}
