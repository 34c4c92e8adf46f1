//! Durable throughput and latency of each backend behind the group committer.
//!
//! `cargo bench -p natter-broker --bench storage_durability [sled] [redb] [memory]`
//!
//! Submitters (`NATTER_BENCH_SUBMITTERS`, default 64) each loop for `NATTER_BENCH_SECS`
//! (default 5) submitting a message-sized batch (a ~160-byte log entry, a counter and a dedup
//! record) and waiting until it is durable. The store lives in a fresh directory under
//! `NATTER_BENCH_DIR` (default: the system temp dir, which must be a real disk to mean
//! anything).

use std::sync::Arc;
use std::time::{Duration, Instant};

use natter_broker::storage::{
    Batch, CommitterConfig, GroupCommitter, MemoryStorage, RedbStorage, SledStorage, Storage,
};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// What one accepted message writes: its log entry, the conversation's counter and the
/// dedup record.
fn message_batch(submitter: u64, n: u64) -> Batch {
    let conversation = submitter.to_be_bytes();
    let mut batch = Batch::default();
    let log_key = [b"L".as_slice(), &conversation, &n.to_be_bytes()].concat();
    batch.put(log_key, vec![b'x'; 160]);
    batch.put([b"C".as_slice(), &conversation].concat(), n.to_be_bytes());
    batch.put(
        [b"D".as_slice(), &conversation, &n.to_be_bytes()].concat(),
        n.to_be_bytes(),
    );
    batch
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 * fraction) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

async fn measure(name: &str, storage: Arc<dyn Storage>, submitters: u64, run_for: Duration) {
    let committer = match GroupCommitter::start(storage, CommitterConfig::default()) {
        Ok(committer) => committer,
        Err(error) => return eprintln!("{name}: {error}"),
    };
    let started = Instant::now();
    let deadline = started + run_for;
    let tasks: Vec<_> = (0..submitters)
        .map(|submitter| {
            let committer = committer.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in 0.. {
                    let submitted = Instant::now();
                    if submitted >= deadline {
                        break;
                    }
                    committer.submit(message_batch(submitter, n)).await?;
                    latencies.push(submitted.elapsed());
                }
                Ok::<_, natter_broker::storage::StorageError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(task_latencies)) => latencies.extend(task_latencies),
            Ok(Err(error)) => return eprintln!("{name}: {error}"),
            Err(error) => return eprintln!("{name}: {error}"),
        }
    }
    let elapsed = started.elapsed();
    committer.shutdown().await;
    latencies.sort_unstable();
    let stats = committer.stats();
    let flushes = stats.commits().max(1);
    println!(
        "{name:6} submitters={submitters:3} durable batches/s={:8.0} p50={:7.2?} p99={:7.2?} \
         max={:7.2?} flushes/s={:6.0} batches/flush={:5.1} flush={:6.2?}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        stats.commits() as f64 / elapsed.as_secs_f64(),
        stats.batches() as f64 / flushes as f64,
        stats.flush_time() / u32::try_from(flushes).unwrap_or(u32::MAX),
    );
}

fn main() {
    let submitters = env_number("NATTER_BENCH_SUBMITTERS", 64);
    let run_for = Duration::from_secs(env_number("NATTER_BENCH_SECS", 5));
    let parent = std::env::var_os("NATTER_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let mut backends: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if backends.is_empty() {
        backends = vec!["sled".into(), "redb".into()];
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return eprintln!("runtime: {error}"),
    };
    for name in backends {
        let dir = match tempfile::tempdir_in(&parent) {
            Ok(dir) => dir,
            Err(error) => return eprintln!("tempdir: {error}"),
        };
        let storage: Arc<dyn Storage> = match name.as_str() {
            "sled" => match SledStorage::open(dir.path()) {
                Ok(storage) => Arc::new(storage),
                Err(error) => return eprintln!("sled: {error}"),
            },
            "redb" => match RedbStorage::open(dir.path()) {
                Ok(storage) => Arc::new(storage),
                Err(error) => return eprintln!("redb: {error}"),
            },
            "memory" => Arc::new(MemoryStorage::new()),
            other => return eprintln!("unknown backend {other:?}: sled, redb or memory"),
        };
        runtime.block_on(measure(&name, storage, submitters, run_for));
    }
}
