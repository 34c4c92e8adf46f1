//! Group commit: many batches share one flush, and nobody hears "durable" before its flush.
//!
//! Submitters queue batches on a bounded channel. A dedicated thread (flushes block, so they
//! stay off the async runtime) takes whatever is queued, up to a size limit, commits it with
//! one [`Storage::commit`] and completes every waiter with the result. While one flush runs,
//! the next group builds up in the queue, so the flush rate adapts to the load by itself.
//! Batches are committed in queue order, so a caller that enqueues in order (see
//! [`GroupCommitter::enqueue`]) gets them durable in that order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{Batch, Op, Storage, StorageError};

/// Called after every flush, e.g. to feed a latency histogram.
pub type FlushObserver = Arc<dyn Fn(&FlushReport) + Send + Sync>;

/// What one flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Batches committed together.
    pub batches: usize,
    /// Key and value bytes in them.
    pub bytes: usize,
    /// How long `Storage::commit` took.
    pub latency: Duration,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Limits of a [`GroupCommitter`].
#[derive(Clone)]
pub struct CommitterConfig {
    /// Batches that may wait in the queue; `enqueue` waits for room beyond it.
    pub queue_depth: usize,
    /// Most batches committed by one flush.
    pub max_batches: usize,
    /// A group stops growing once its key and value bytes reach this (one larger batch is
    /// still committed, alone).
    pub max_bytes: usize,
    /// Told about every flush.
    pub on_flush: Option<FlushObserver>,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        Self {
            queue_depth: 4096,
            max_batches: 1024,
            max_bytes: 4 << 20,
            on_flush: None,
        }
    }
}

impl std::fmt::Debug for CommitterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitterConfig")
            .field("queue_depth", &self.queue_depth)
            .field("max_batches", &self.max_batches)
            .field("max_bytes", &self.max_bytes)
            .field("on_flush", &self.on_flush.is_some())
            .finish()
    }
}

/// Counters of a [`GroupCommitter`], readable at any time (e.g. by a metrics exporter).
#[derive(Debug, Default)]
pub struct CommitStats {
    commits: AtomicU64,
    failures: AtomicU64,
    batches: AtomicU64,
    flush_nanos: AtomicU64,
}

impl CommitStats {
    /// Calls to `Storage::commit`, i.e. flushes, failed ones included.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Calls to `Storage::commit` that failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Batches handed to `Storage::commit`.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Time spent in `Storage::commit`, summed over all flushes.
    pub fn flush_time(&self) -> Duration {
        Duration::from_nanos(self.flush_nanos.load(Ordering::Relaxed))
    }

    fn record(&self, report: &FlushReport) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.failures
            .fetch_add(u64::from(!report.ok), Ordering::Relaxed);
        self.batches
            .fetch_add(report.batches as u64, Ordering::Relaxed);
        let nanos = u64::try_from(report.latency.as_nanos()).unwrap_or(u64::MAX);
        self.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

type Completion = oneshot::Sender<Result<(), StorageError>>;

enum Request {
    Commit { batch: Batch, done: Completion },
    Shutdown(oneshot::Sender<()>),
}

/// A handle to the group-commit thread; clones share it.
#[derive(Debug, Clone)]
pub struct GroupCommitter {
    requests: mpsc::Sender<Request>,
    stats: Arc<CommitStats>,
}

impl GroupCommitter {
    /// Starts the commit thread over `storage`.
    pub fn start(storage: Arc<dyn Storage>, config: CommitterConfig) -> Result<Self, StorageError> {
        let (requests, queue) = mpsc::channel(config.queue_depth.max(1));
        let stats = Arc::new(CommitStats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("natter-group-commit".into())
            .spawn(move || run(storage.as_ref(), queue, &config, &thread_stats))
            .map_err(|error| StorageError::Backend(format!("starting group commit: {error}")))?;
        Ok(Self { requests, stats })
    }

    /// Queues `batch` (waiting for room in the queue) and returns a future that resolves once
    /// the batch is durable. Batches enqueued one after another become durable in that order,
    /// so a sequencer can enqueue in order and await the results concurrently.
    pub async fn enqueue(&self, batch: Batch) -> Result<Durable, StorageError> {
        let (done, durable) = oneshot::channel();
        self.requests
            .send(Request::Commit { batch, done })
            .await
            .map_err(|_| stopped())?;
        Ok(Durable(durable))
    }

    /// Commits `batch` and returns once it is durable.
    pub async fn submit(&self, batch: Batch) -> Result<(), StorageError> {
        self.enqueue(batch).await?.await
    }

    /// The counters of this committer.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Batches queued and not yet taken by the commit thread, for metrics.
    pub fn queue_depth(&self) -> usize {
        self.requests.max_capacity() - self.requests.capacity()
    }

    /// Stops taking batches, commits everything already queued and returns once that is
    /// done. Later `enqueue` calls fail. When called again, it returns at once.
    pub async fn shutdown(&self) {
        let (done, drained) = oneshot::channel();
        if self.requests.send(Request::Shutdown(done)).await.is_ok() {
            // An error means the thread is gone, which is what we wait for anyway.
            let _ = drained.await;
        }
    }
}

/// Resolves when its batch is durable, or with the error that kept it from being so. After
/// an error the batch may or may not be on disk.
#[derive(Debug)]
#[must_use = "the batch is not known to be durable until this resolves"]
pub struct Durable(oneshot::Receiver<Result<(), StorageError>>);

impl Future for Durable {
    type Output = Result<(), StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|result| result.unwrap_or_else(|_| Err(stopped())))
    }
}

fn stopped() -> StorageError {
    StorageError::Backend("group committer stopped".into())
}

fn batch_bytes(batch: &Batch) -> usize {
    batch
        .ops
        .iter()
        .map(|op| match op {
            Op::Put(key, value) => key.len() + value.len(),
            Op::Delete(key) => key.len(),
        })
        .sum()
}

/// The commit thread: runs until every handle is dropped or a shutdown has drained the queue.
fn run(
    storage: &dyn Storage,
    mut queue: mpsc::Receiver<Request>,
    config: &CommitterConfig,
    stats: &CommitStats,
) {
    let mut group = Vec::new();
    let mut waiters = Vec::new();
    let mut shutdowns = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Commit { batch, done } => {
                    bytes += batch_bytes(&batch);
                    group.push(batch);
                    waiters.push(done);
                }
                // Closing refuses new batches; those already queued are still received.
                Request::Shutdown(done) => {
                    queue.close();
                    shutdowns.push(done);
                }
            }
            if group.len() < config.max_batches && bytes < config.max_bytes {
                next = queue.try_recv().ok();
            }
        }
        if group.is_empty() {
            continue;
        }
        let started = Instant::now();
        let result = storage.commit(&group);
        let report = FlushReport {
            batches: group.len(),
            bytes,
            latency: started.elapsed(),
            ok: result.is_ok(),
        };
        stats.record(&report);
        if let Some(observer) = &config.on_flush {
            observer(&report);
        }
        for done in waiters.drain(..) {
            // A waiter that went away no longer needs the answer.
            let _ = done.send(result.clone());
        }
        group.clear();
    }
    for done in shutdowns {
        let _ = done.send(());
    }
}
