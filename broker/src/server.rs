//! The tokio driver: one task owns the [`Shard`] and is fed by bounded channels from link
//! tasks, the group committer and webhook posts; links are served from any byte stream,
//! inside mutual TLS when the cluster configures it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use natter_codec::{Frame, FrameCodec};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::config::{Backend, BrokerConfig, PeerConfig};
use crate::link::{self, Credentials, LinkError};
use crate::metrics::{BrokerMetrics, BrokerStatus, Depths, Sample};
use crate::shard::{CommitId, LinkId, Millis, Output, Peer, Shard};
use crate::storage::{
    CommitStats, CommitterConfig, GroupCommitter, RedbStorage, SledStorage, Storage, StorageError,
};
use crate::tls::LinkTls;
use crate::webhook::Endpoint;

/// Inputs queued for the shard task before link tasks wait.
const INPUT_QUEUE: usize = 4096;
/// Links served at once by [`Broker::serve`].
const MAX_LINKS: usize = 1024;
/// The longest wait between two dial attempts.
const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(5);

/// What link tasks and the runtime tell the shard task.
#[derive(Debug)]
pub(crate) enum Input {
    LinkUp {
        link: LinkId,
        peer: Peer,
        outbound: mpsc::Sender<Frame>,
    },
    LinkDown {
        link: LinkId,
    },
    Frame {
        link: LinkId,
        frame: Frame,
    },
}

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The data directory could not be opened or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// The metrics could not be made.
    #[error("metrics: {0}")]
    Metrics(String),
    /// Accepting connections failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A running broker: a cheap handle, clone it freely.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    credentials: Credentials,
    link_frame_size: u64,
    link_queue: usize,
    /// Mutual TLS on links to and from this broker, when configured.
    tls: Option<LinkTls>,
    inputs: mpsc::Sender<Input>,
    next_link: AtomicU64,
    committer: GroupCommitter,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    metrics: BrokerMetrics,
    /// `redb`, `sled`, or `custom` for storage the caller opened.
    storage_kind: &'static str,
    /// The data directory, when the broker opened its storage there.
    data_dir: Option<PathBuf>,
}

impl Sample for Inner {
    fn node(&self) -> &str {
        &self.credentials.node
    }

    fn storage_kind(&self) -> &'static str {
        self.storage_kind
    }

    fn storage_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    fn depths(&self) -> Depths {
        Depths {
            inputs: self.inputs.max_capacity() - self.inputs.capacity(),
            commits: self.committer.queue_depth(),
        }
    }
}

impl Broker {
    /// Opens the data directory with the configured backend and starts the broker: the
    /// group committer, the shard task and the dialers of the other brokers. The data lives
    /// in `data_dir/redb` or `data_dir/sled`.
    pub async fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
        let dir = config.data_dir.clone();
        let backend = config.backend;
        let storage =
            tokio::task::spawn_blocking(move || -> Result<Arc<dyn Storage>, StorageError> {
                Ok(match backend {
                    Backend::Redb => Arc::new(RedbStorage::open(dir.join("redb"))?),
                    Backend::Sled => Arc::new(SledStorage::open(dir.join("sled"))?),
                })
            })
            .await
            .map_err(|e| BrokerError::Config(format!("opening storage: {e}")))??;
        let kind = match backend {
            Backend::Redb => "redb",
            Backend::Sled => "sled",
        };
        let dir = config.data_dir.clone();
        Self::start(config, storage, kind, Some(dir))
    }

    /// Starts a broker on storage the caller opened (tests use `MemoryStorage`). Call it
    /// within a tokio runtime: it spawns the broker's tasks.
    pub fn with_storage(
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, BrokerError> {
        Self::start(config, storage, "custom", None)
    }

    fn start(
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
        storage_kind: &'static str,
        data_dir: Option<PathBuf>,
    ) -> Result<Self, BrokerError> {
        if config.node.is_empty() || config.node.len() > 64 {
            return Err(BrokerError::Config("node id must be 1 to 64 bytes".into()));
        }
        let listed = config.cluster.brokers.iter().any(|b| b.id == config.node);
        if !config.cluster.brokers.is_empty() && !listed {
            return Err(BrokerError::Config(format!(
                "node {} is not in the cluster's broker list",
                config.node
            )));
        }
        let webhook = match &config.webhook_url {
            Some(url) => Some(Endpoint::parse(url).ok_or_else(|| {
                BrokerError::Config(format!("webhook_url {url} is not an http:// URL"))
            })?),
            None => None,
        };
        let tls = match &config.cluster.tls {
            Some(files) => Some(
                LinkTls::load(files).map_err(|e| BrokerError::Config(format!("link TLS: {e}")))?,
            ),
            None => None,
        };
        let metrics = BrokerMetrics::new().map_err(|e| BrokerError::Metrics(e.to_string()))?;
        for peer in config.peers() {
            metrics.expect_peer(&peer.id, natter_codec::types::NodeRole::BROKER);
        }
        let (lent, returned) = Lent::new(Arc::clone(&storage));
        let flushes = metrics.clone();
        let committer_config = CommitterConfig {
            on_flush: Some(Arc::new(move |report| flushes.observe_flush(report))),
            ..CommitterConfig::default()
        };
        let committer = GroupCommitter::start(Arc::new(lent), committer_config)?;
        let shard = Shard::new(&config, storage, now_ms(), StdRng::from_os_rng())?;
        let (inputs, queue) = mpsc::channel(INPUT_QUEUE);
        let (shutdown, stopping) = watch::channel(false);
        let inner = Arc::new(Inner {
            credentials: Credentials {
                node: config.node.clone(),
                ring_version: config.cluster.ring_version,
                secret: config.cluster.secret.clone(),
            },
            link_frame_size: config.limits.link_frame_size,
            link_queue: config.limits.link_queue.max(1),
            tls,
            inputs,
            next_link: AtomicU64::new(1),
            committer: committer.clone(),
            shutdown,
            task: Mutex::new(None),
            metrics: metrics.clone(),
            storage_kind,
            data_dir,
        });
        let driver = Driver {
            shard,
            committer,
            returned,
            webhook,
            links: HashMap::new(),
            metrics,
        };
        let task = tokio::spawn(driver.run(queue, stopping.clone()));
        *inner.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        let broker = Self { inner };
        for peer in config.peers() {
            tokio::spawn(broker.clone().dial_loop(peer.clone(), stopping.clone()));
        }
        Ok(broker)
    }

    /// Serves one link on an accepted stream (a TCP connection, or one half of
    /// `tokio::io::duplex` for an in-process edge): runs the accepting side of the
    /// handshake, then relays frames until the link closes.
    pub async fn serve_link<S>(&self, stream: S) -> Result<(), LinkError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut framed = Framed::new(stream, FrameCodec::new(self.inner.link_frame_size));
        let peer = link::accept(&mut framed, &self.inner.credentials).await?;
        self.attach(framed, peer).await
    }

    /// Serves one link on an accepted TCP connection, inside TLS when the cluster says so.
    async fn serve_tcp(&self, socket: TcpStream, from: SocketAddr) {
        let result = match &self.inner.tls {
            None => self.serve_link(socket).await,
            Some(tls) => match tls.accept(socket).await {
                Ok(stream) => self.serve_link(stream).await,
                Err(error) => {
                    tracing::warn!(%error, %from, "link refused: TLS handshake failed");
                    return;
                }
            },
        };
        if let Err(error) = result {
            tracing::debug!(%error, %from, "link ended");
        }
    }

    /// Accepts links on `listener` until `shutdown` resolves, then shuts the broker down.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future,
    ) -> Result<(), BrokerError> {
        let permits = Arc::new(Semaphore::new(MAX_LINKS));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((socket, from)) => {
                    // Nagle would hold small frames back behind unacknowledged ones.
                    let _ = socket.set_nodelay(true);
                    let broker = self.clone();
                    tokio::spawn(async move {
                        broker.serve_tcp(socket, from).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Out of descriptors, usually: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// Counters of the group committer (flushes, batches, time spent flushing), for metrics.
    pub fn commit_stats(&self) -> &CommitStats {
        self.inner.committer.stats()
    }

    /// The broker's metrics.
    pub fn metrics(&self) -> &BrokerMetrics {
        &self.inner.metrics
    }

    /// Adds the broker's metrics to `registry`, those sampled at each gather included (queue
    /// depths, storage size). The registry may outlive the broker.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let source: Weak<dyn Sample> = Arc::downgrade(&self.inner) as Weak<Inner>;
        self.inner.metrics.register(registry, source)
    }

    /// The broker's state now, for an admin view; it measures the data directory, so call it
    /// off the async threads (`spawn_blocking`) when the directory may be large.
    pub fn status(&self) -> BrokerStatus {
        self.inner.metrics.status(self.inner.as_ref())
    }

    /// Stops the broker: no new inputs, every pending commit flushed, links closed. Returns
    /// once that is done; later calls return at once.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(%error, "broker task failed");
            }
        }
    }

    /// Registers an established link with the shard and pumps it until it closes.
    async fn attach<S>(&self, framed: link::LinkStream<S>, peer: Peer) -> Result<(), LinkError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let link = LinkId(self.inner.next_link.fetch_add(1, Ordering::Relaxed));
        let (outbound, queue) = mpsc::channel(self.inner.link_queue);
        let inputs = &self.inner.inputs;
        let (node, role) = (peer.node.clone(), peer.role);
        let up = Input::LinkUp {
            link,
            peer,
            outbound,
        };
        if inputs.send(up).await.is_err() {
            return Err(LinkError::ShuttingDown);
        }
        let metrics = &self.inner.metrics;
        metrics.link_changed(&node, role, 1);
        let result = link::pump(framed, link, queue, inputs).await;
        metrics.link_changed(&node, role, -1);
        // The shard task may be gone already, which closes every link anyway.
        let _ = inputs.send(Input::LinkDown { link }).await;
        result
    }

    /// Keeps a link to another broker up, redialing with backoff.
    async fn dial_loop(self, peer: PeerConfig, mut stopping: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        while !*stopping.borrow() {
            match self.dial(&peer).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => tracing::debug!(%error, peer = peer.id, "link to broker down"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopping.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_DIAL_BACKOFF);
        }
    }

    async fn dial(&self, peer: &PeerConfig) -> Result<(), LinkError> {
        let socket = TcpStream::connect(peer.link)
            .await
            .map_err(|e| LinkError::Codec(e.into()))?;
        let _ = socket.set_nodelay(true);
        match &self.inner.tls {
            None => self.link_to(socket, peer).await,
            Some(tls) => match tls.connect(&peer.id, socket).await {
                Ok(stream) => self.link_to(stream, peer).await,
                Err(error) => {
                    let peer = &peer.id;
                    tracing::warn!(%error, peer, "link to broker refused: TLS handshake failed");
                    Err(LinkError::Codec(error.into()))
                }
            },
        }
    }

    /// Runs the dialing side of the link handshake on `stream`, then pumps the link.
    async fn link_to<S>(&self, stream: S, peer: &PeerConfig) -> Result<(), LinkError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut framed = Framed::new(stream, FrameCodec::new(self.inner.link_frame_size));
        let established = link::dial(&mut framed, &self.inner.credentials, &peer.id)
            .await
            // A peer that takes the connection but refuses us is misconfigured, not just down;
            // with TLS 1.3 this is also where a refused client certificate shows.
            .inspect_err(
                |error| tracing::warn!(%error, peer = peer.id, "link to broker refused"),
            )?;
        tracing::info!(peer = peer.id, "link to broker up");
        self.attach(framed, established).await
    }
}

/// Accepts links on `listener` for a broker opened from `config` until `shutdown` resolves,
/// then drains and flushes: `run` in the style of mini-redis.
pub async fn run(
    config: BrokerConfig,
    listener: TcpListener,
    shutdown: impl Future,
) -> Result<(), BrokerError> {
    Broker::open(config).await?.serve(listener, shutdown).await
}

/// The state of the shard task.
struct Driver {
    shard: Shard,
    committer: GroupCommitter,
    /// Resolves once the committer thread has dropped its handle on the storage.
    returned: oneshot::Receiver<()>,
    webhook: Option<Endpoint>,
    links: HashMap<LinkId, mpsc::Sender<Frame>>,
    metrics: BrokerMetrics,
}

type Commit = BoxFuture<'static, (CommitId, Result<(), StorageError>)>;

impl Driver {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>, mut stopping: watch::Receiver<bool>) {
        let mut commits: FuturesOrdered<Commit> = FuturesOrdered::new();
        // The shard keeps at most a few webhook posts in flight, so this never fills.
        let (hooks_done, mut hook_results) = mpsc::channel::<(u64, bool)>(64);
        let mut draining = false;
        loop {
            if let Err(error) = self.flush(&mut commits, &hooks_done).await {
                tracing::error!(%error, "storage failed: broker stops");
                break;
            }
            if draining && commits.is_empty() {
                break;
            }
            let wake = self.shard.poll_timeout().saturating_sub(now_ms());
            tokio::select! {
                input = inputs.recv(), if !draining => match input {
                    Some(input) => self.input(input),
                    None => draining = true,
                },
                Some((id, result)) = commits.next() => match result {
                    Ok(()) => self.shard.handle_durable(now_ms(), id),
                    Err(error) => {
                        tracing::error!(%error, "commit failed: broker stops");
                        break;
                    }
                },
                Some((id, delivered)) = hook_results.recv() => {
                    self.shard.handle_webhook(now_ms(), id, delivered);
                }
                _ = tokio::time::sleep(Duration::from_millis(wake)) => {
                    self.shard.handle_timeout(now_ms());
                }
                _ = stopping.changed(), if !draining => {
                    draining = true;
                    self.shard.flush(now_ms());
                }
            }
        }
        self.committer.shutdown().await;
        // The storage closes when its last handle goes: the committer thread's, then the
        // shard's as this task ends. Waiting for both lets the directory be reopened at once.
        let _ = (&mut self.returned).await;
    }

    fn input(&mut self, input: Input) {
        let now = now_ms();
        match input {
            Input::LinkUp {
                link,
                peer,
                outbound,
            } => {
                self.links.insert(link, outbound);
                self.shard.handle_link_up(now, link, peer);
            }
            Input::LinkDown { link } => {
                self.links.remove(&link);
                self.shard.handle_link_down(now, link);
            }
            Input::Frame { link, frame } => self.shard.handle_frame(now, link, frame),
        }
    }

    /// Carries out everything the shard asked for.
    async fn flush(
        &mut self,
        commits: &mut FuturesOrdered<Commit>,
        hooks_done: &mpsc::Sender<(u64, bool)>,
    ) -> Result<(), StorageError> {
        while let Some(output) = self.shard.poll_output() {
            match output {
                Output::Frame { link, frame } => self.write(link, frame),
                Output::Commit { id, batch } => {
                    self.metrics.observe_batch(&batch);
                    // Enqueued in order, so they become durable in order.
                    let durable = self.committer.enqueue(batch).await?;
                    commits.push_back(Box::pin(async move { (id, durable.await) }));
                }
                Output::Webhook { id, body } => {
                    let Some(endpoint) = self.webhook.clone() else {
                        self.shard.handle_webhook(now_ms(), id, true);
                        continue;
                    };
                    let done = hooks_done.clone();
                    tokio::spawn(async move {
                        let delivered = endpoint.post(&body).await;
                        let _ = done.send((id, delivered)).await;
                    });
                }
                Output::Close { link } => {
                    // Dropping the sender lets the writer finish what is queued, then close.
                    self.links.remove(&link);
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, link: LinkId, frame: Frame) {
        let Some(queue) = self.links.get(&link) else {
            return;
        };
        if queue.try_send(frame).is_err() {
            // A link that cannot take its bounded queue is stuck or gone: closing it makes
            // the peer reconnect, and every feature resends what matters after a reconnect.
            tracing::warn!(?link, "link queue full: closing the link");
            self.links.remove(&link);
            self.shard.handle_link_down(now_ms(), link);
        }
    }
}

/// The storage as lent to the committer thread; its drop tells the driver the thread let go.
struct Lent {
    storage: Arc<dyn Storage>,
    _returned: oneshot::Sender<()>,
}

impl Lent {
    fn new(storage: Arc<dyn Storage>) -> (Self, oneshot::Receiver<()>) {
        let (returned, receiver) = oneshot::channel();
        let lent = Self {
            storage,
            _returned: returned,
        };
        (lent, receiver)
    }
}

impl Storage for Lent {
    fn commit(&self, batches: &[crate::storage::Batch]) -> Result<(), StorageError> {
        self.storage.commit(batches)
    }

    fn get(&self, key: &[u8]) -> Result<Option<bytes::Bytes>, StorageError> {
        self.storage.get(key)
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(bytes::Bytes, bytes::Bytes)>, StorageError> {
        self.storage.range(start, end, reverse, limit)
    }
}

/// Wall-clock milliseconds since the Unix epoch, the shard's notion of `now`.
fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
