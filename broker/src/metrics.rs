//! Prometheus metrics and the status snapshot of one broker.
//!
//! The broker keeps its metrics from the start; [`crate::Broker::register_metrics`] adds them
//! to a registry: the edge's in `natter serve`, so one `/metrics` shows both, or one of its own
//! behind `natter broker --metrics`. docs/operations.md lists them.
//!
//! - Storage: every flush of the group committer is one `Storage::commit` (one fsync), timed
//!   and sized by [`crate::storage::CommitterConfig::on_flush`].
//! - Events appended: counted from the batches the shard hands the driver, so the sans-IO
//!   shard stays free of metrics.
//! - Queue depths and the storage size are sampled when the registry is gathered.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError, Weak};

use natter_codec::types::NodeRole;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use serde::Serialize;

use crate::storage::committer::FlushReport;
use crate::storage::{Batch, Op};

/// The table prefix byte of conversation events (`keys`, `Table::Event`).
const EVENT_TABLE: u8 = 0x02;

/// Every metric a broker keeps by itself (the sampled ones are made at registration).
#[derive(Debug, Clone)]
pub struct BrokerMetrics {
    /// Duration of one `Storage::commit`: one flush, one fsync, for many batches.
    pub commit_seconds: Histogram,
    /// Batches (accepted messages and other atomic writes) per commit.
    pub commit_batches: Histogram,
    /// Key and value bytes handed to storage.
    pub written_bytes: IntCounter,
    /// Commits (fsyncs), failed ones included.
    pub commits: IntCounter,
    /// Commits that failed; the broker stops after one.
    pub commit_failures: IntCounter,
    /// Conversation events appended (messages, edits, deletes, membership events), not
    /// counting the rewrite of an edited or deleted target.
    pub events_appended: IntCounter,
    /// Links up with each peer node, by peer and role.
    pub links: IntGaugeVec,
    /// The same counts, kept for the status snapshot.
    link_counts: std::sync::Arc<Mutex<BTreeMap<(String, &'static str), i64>>>,
}

impl BrokerMetrics {
    /// Makes every metric, unregistered.
    pub fn new() -> prometheus::Result<Self> {
        let latency = vec![
            0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
        ];
        let sizes = (0..=10).map(|power| f64::from(1u32 << power)).collect();
        Ok(Self {
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "natter_storage_commit_seconds",
                    "Duration of one storage commit (one fsync shared by a group of batches).",
                )
                .buckets(latency),
            )?,
            commit_batches: Histogram::with_opts(
                HistogramOpts::new(
                    "natter_storage_commit_batches",
                    "Batches (atomic writes, one per accepted message) per storage commit.",
                )
                .buckets(sizes),
            )?,
            written_bytes: IntCounter::new(
                "natter_storage_written_bytes_total",
                "Key and value bytes handed to storage commits.",
            )?,
            commits: IntCounter::new(
                "natter_storage_commits_total",
                "Storage commits (fsyncs), failed ones included.",
            )?,
            commit_failures: IntCounter::new(
                "natter_storage_commit_failures_total",
                "Storage commits that failed.",
            )?,
            events_appended: IntCounter::new(
                "natter_events_appended_total",
                "Conversation events appended to the logs this broker owns.",
            )?,
            links: IntGaugeVec::new(
                Opts::new(
                    "natter_broker_links",
                    "Links up between this broker and a peer node (two per broker pair, one \
                     each way).",
                ),
                &["peer", "role"],
            )?,
            link_counts: Default::default(),
        })
    }

    /// Records one flush of the group committer.
    pub fn observe_flush(&self, report: &FlushReport) {
        self.commits.inc();
        if !report.ok {
            self.commit_failures.inc();
        }
        self.commit_seconds.observe(report.latency.as_secs_f64());
        self.commit_batches.observe(report.batches as f64);
        self.written_bytes.inc_by(report.bytes as u64);
    }

    /// Counts the events a batch appends.
    pub fn observe_batch(&self, batch: &Batch) {
        let appended = appended_events(batch);
        if appended > 0 {
            self.events_appended.inc_by(appended);
        }
    }

    /// A link with `peer` came up (`change` 1) or went down (-1).
    pub fn link_changed(&self, peer: &str, role: NodeRole, change: i64) {
        let role = role_label(role);
        self.links.with_label_values(&[peer, role]).add(change);
        let mut counts = self
            .link_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *counts.entry((peer.to_string(), role)).or_default() += change;
    }

    /// Shows a peer that should be linked with 0 links until it is.
    pub fn expect_peer(&self, peer: &str, role: NodeRole) {
        self.link_changed(peer, role, 0);
    }

    /// The links by peer, for the status snapshot.
    fn link_list(&self) -> Vec<LinkStatus> {
        self.link_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((peer, role), links)| LinkStatus {
                peer: peer.clone(),
                role,
                links: *links,
            })
            .collect()
    }

    /// Registers every metric in `registry`, with the sampled ones reading `source`.
    pub(crate) fn register(
        &self,
        registry: &Registry,
        source: Weak<dyn Sample>,
    ) -> prometheus::Result<()> {
        let collectors: [Box<dyn Collector>; 8] = [
            Box::new(self.commit_seconds.clone()),
            Box::new(self.commit_batches.clone()),
            Box::new(self.written_bytes.clone()),
            Box::new(self.commits.clone()),
            Box::new(self.commit_failures.clone()),
            Box::new(self.events_appended.clone()),
            Box::new(self.links.clone()),
            Box::new(Sampled::new(source)?),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        Ok(())
    }

    /// The status snapshot, from what `sample` reads now.
    pub(crate) fn status(&self, sample: &dyn Sample) -> BrokerStatus {
        let depths = sample.depths();
        BrokerStatus {
            node: sample.node().to_string(),
            storage: sample.storage_kind(),
            data_dir: sample
                .storage_dir()
                .map(|dir| dir.to_string_lossy().into_owned()),
            storage_bytes: sample.storage_dir().map(dir_size),
            queue_depth: depths.inputs,
            storage_queue_depth: depths.commits,
            commits: self.commits.get(),
            commit_failures: self.commit_failures.get(),
            written_bytes: self.written_bytes.get(),
            events_appended: self.events_appended.get(),
            links: self.link_list(),
        }
    }
}

/// The label of a peer's role.
fn role_label(role: NodeRole) -> &'static str {
    match role {
        NodeRole::EDGE => "edge",
        NodeRole::BROKER => "broker",
        _ => "unknown",
    }
}

/// The events a batch appends: puts into the event table of records that are neither
/// deleted nor edited. An append is always a fresh record; the rewrite of an EDIT's or a
/// DELETE's target carries the EDITED or DELETED flag. The walk reads `seq (i), kind (i),
/// target (i)` and then the flags byte, nothing more.
pub(crate) fn appended_events(batch: &Batch) -> u64 {
    let fresh = |mut value: &[u8]| -> bool {
        for _ in 0..3 {
            if natter_codec::varint::decode(&mut value).is_err() {
                return false;
            }
        }
        value.first() == Some(&0)
    };
    batch
        .ops
        .iter()
        .filter(|op| {
            matches!(op, Op::Put(key, value) if key.first() == Some(&EVENT_TABLE) && fresh(value))
        })
        .count() as u64
}

/// The bytes of the files under `dir` (recursively), as `du --apparent-size` counts them; 0
/// for what cannot be read.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Queue depths at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Depths {
    /// Inputs (link frames, link changes) waiting for the shard task.
    pub(crate) inputs: usize,
    /// Batches waiting for the group committer.
    pub(crate) commits: usize,
}

/// What the sampled metrics and the status read from a running broker.
pub(crate) trait Sample: Send + Sync {
    fn node(&self) -> &str;
    fn storage_kind(&self) -> &'static str;
    fn storage_dir(&self) -> Option<&Path>;
    fn depths(&self) -> Depths;
}

/// Gauges refreshed from the broker each time the registry is gathered.
struct Sampled {
    source: Weak<dyn Sample>,
    queue_depth: IntGauge,
    storage_queue_depth: IntGauge,
    storage_bytes: IntGauge,
    descs: Vec<Desc>,
}

impl Sampled {
    fn new(source: Weak<dyn Sample>) -> prometheus::Result<Self> {
        let queue_depth = IntGauge::new(
            "natter_broker_queue_depth",
            "Inputs (frames from links, link changes) waiting for the broker's shard task.",
        )?;
        let storage_queue_depth = IntGauge::new(
            "natter_storage_queue_depth",
            "Batches waiting for the group committer.",
        )?;
        let storage_bytes = IntGauge::new(
            "natter_storage_bytes",
            "Size of the files in the broker's storage directory.",
        )?;
        let descs = [&queue_depth, &storage_queue_depth, &storage_bytes]
            .iter()
            .flat_map(|gauge| gauge.desc().into_iter().cloned())
            .collect();
        Ok(Self {
            source,
            queue_depth,
            storage_queue_depth,
            storage_bytes,
            descs,
        })
    }
}

impl Collector for Sampled {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // A broker that has shut down reports empty queues and its last size.
        let (depths, size) = match self.source.upgrade() {
            Some(source) => (source.depths(), source.storage_dir().map(dir_size)),
            None => (Depths::default(), None),
        };
        self.queue_depth.set(depths.inputs as i64);
        self.storage_queue_depth.set(depths.commits as i64);
        if let Some(size) = size {
            self.storage_bytes.set(size as i64);
        }
        [
            &self.queue_depth,
            &self.storage_queue_depth,
            &self.storage_bytes,
        ]
        .iter()
        .flat_map(|gauge| gauge.collect())
        .collect()
    }
}

/// The broker's state for the admin view (`natter serve`: `GET /v1/admin/server`, `broker`).
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    /// The broker's node id.
    pub node: String,
    /// `redb`, `sled`, or `custom` for storage the embedding process opened.
    pub storage: &'static str,
    /// The storage directory, when the broker opened one.
    pub data_dir: Option<String>,
    /// Bytes of the files in it.
    pub storage_bytes: Option<u64>,
    /// Inputs waiting for the shard task.
    pub queue_depth: usize,
    /// Batches waiting for the group committer.
    pub storage_queue_depth: usize,
    /// Storage commits (fsyncs) so far.
    pub commits: u64,
    /// Storage commits that failed.
    pub commit_failures: u64,
    /// Key and value bytes committed.
    pub written_bytes: u64,
    /// Conversation events appended.
    pub events_appended: u64,
    /// Links by peer node.
    pub links: Vec<LinkStatus>,
}

/// The links between this broker and one peer node.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    /// The peer's node id.
    pub peer: String,
    /// `edge` or `broker`.
    pub role: &'static str,
    /// Links up now (a broker pair keeps one each way).
    pub links: i64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use natter_codec::types::{Event, EventFlags};

    use super::*;
    use crate::records;

    #[test]
    fn the_event_table_prefix_is_the_keys_one() {
        assert_eq!(crate::keys::event("d/a/b", 1)[0], EVENT_TABLE);
    }

    #[test]
    fn appends_are_counted_and_target_rewrites_are_not() {
        let event = |seq, flags| Event {
            seq,
            target: 3,
            flags,
            timestamp: 1_732_900_000_000,
            body: Bytes::from_static(b"hello"),
            ..Event::default()
        };
        let mut batch = Batch::default();
        batch.put(
            crate::keys::event("d/a/b", 300),
            records::encode(&event(300, EventFlags::NONE)),
        );
        batch.put(
            crate::keys::event("d/a/b", 3),
            records::encode(&event(3, EventFlags::DELETED)),
        );
        batch.put(
            crate::keys::event("d/a/c", 1),
            records::encode(&event(1, EventFlags::NONE)),
        );
        batch.put(
            crate::keys::event("d/a/c", 2),
            records::encode(&event(2, EventFlags::EDITED)),
        );
        batch.put(crate::keys::conversation("d/a/b"), vec![0, 0, 0, 0]);
        batch.delete(crate::keys::event("d/a/b", 9));
        assert_eq!(appended_events(&batch), 2);
    }

    #[test]
    fn links_are_counted_per_peer_and_role() {
        let metrics = BrokerMetrics::new().unwrap();
        metrics.expect_peer("b2", NodeRole::BROKER);
        metrics.link_changed("edge-1", NodeRole::EDGE, 1);
        metrics.link_changed("b2", NodeRole::BROKER, 1);
        metrics.link_changed("b2", NodeRole::BROKER, 1);
        metrics.link_changed("b2", NodeRole::BROKER, -1);
        let links: Vec<(String, &str, i64)> = metrics
            .link_list()
            .into_iter()
            .map(|link| (link.peer, link.role, link.links))
            .collect();
        assert_eq!(
            links,
            [("b2".into(), "broker", 1), ("edge-1".into(), "edge", 1)]
        );
        assert_eq!(metrics.links.with_label_values(&["b2", "broker"]).get(), 1);
    }

    #[test]
    fn the_size_of_a_directory_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0; 23]).unwrap();
        assert_eq!(dir_size(dir.path()), 123);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }
}
