//! One multiplexed link per broker: dial, LINK_HELLO/LINK_READY, forward, renew leases,
//! reconnect with jittered backoff.
//!
//! While a link is down its [`LinkHandle`] refuses frames at once, so requests for that broker
//! are answered UNAVAILABLE instead of waiting; requests already forwarded are answered
//! UNAVAILABLE when the link drops, and sessions homed there get GOAWAY so they reconnect and
//! RESUME (their lease and live stream died with the link).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use natter_codec::frame::{LinkHello, Pong, SessionClose, SessionOpen};
use natter_codec::types::NodeRole;
use natter_codec::{ErrorCode, Frame, FrameCodec, MAX_FRAME_SIZE_CAP, VERSION};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::codec::FramedRead;
use tracing::{info, warn};

use crate::hub::{Hub, LinkHandle};

/// A bidirectional byte stream to a broker.
pub trait LinkStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> LinkStream for T {}

/// A boxed link stream.
pub type BoxedStream = Box<dyn LinkStream>;

/// The future a [`Connector`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxedStream>> + Send>>;

/// Opens a link stream to a broker by id: TCP in a cluster, an in-process pipe in `serve`.
pub trait Connector: Send + Sync + 'static {
    /// Dials `broker`.
    fn connect(&self, broker: &str) -> ConnectFuture;
}

impl<F> Connector for F
where
    F: Fn(&str) -> ConnectFuture + Send + Sync + 'static,
{
    fn connect(&self, broker: &str) -> ConnectFuture {
        self(broker)
    }
}

/// Dials brokers over TCP at the addresses of the cluster file, inside TLS if configured.
#[derive(Clone)]
pub struct TcpConnector {
    addresses: Arc<std::collections::HashMap<String, String>>,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for TcpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnector")
            .field("addresses", &self.addresses)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl TcpConnector {
    /// A connector for `(broker id, host:port)` pairs.
    pub fn new(addresses: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            addresses: Arc::new(addresses.into_iter().collect()),
            tls: None,
        }
    }

    /// Wraps every link in TLS with `tls`, which presents this edge's certificate; each
    /// broker's certificate must carry the broker's id as a DNS name.
    pub fn with_tls(mut self, tls: TlsConnector) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl Connector for TcpConnector {
    fn connect(&self, broker: &str) -> ConnectFuture {
        let address = self.addresses.get(broker).cloned();
        let tls = self.tls.clone();
        let broker = broker.to_string();
        Box::pin(async move {
            let address = address
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "broker not in cluster"))?;
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let Some(tls) = tls else {
                return Ok(Box::new(stream) as BoxedStream);
            };
            let name = ServerName::try_from(broker.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("broker id {broker:?} is not a valid TLS server name"),
                )
            })?;
            let stream = tls.connect(name, stream).await.map_err(|error| {
                io::Error::new(error.kind(), format!("TLS handshake failed: {error}"))
            })?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }
}

/// Creates the handles of every link; the tasks start with [`run`].
pub fn handles(brokers: &[String], queue: usize) -> (Vec<LinkHandle>, Vec<mpsc::Receiver<Frame>>) {
    brokers
        .iter()
        .map(|broker| {
            let (tx, rx) = mpsc::channel(queue.max(1));
            let handle = LinkHandle {
                broker: broker.clone(),
                tx,
                up: false.into(),
            };
            (handle, rx)
        })
        .unzip()
}

/// Runs the link to broker `index` until `shutdown` turns true.
pub async fn run(
    hub: Arc<Hub>,
    index: usize,
    mut rx: mpsc::Receiver<Frame>,
    connector: Arc<dyn Connector>,
    mut shutdown: watch::Receiver<bool>,
) {
    let broker = hub.links[index].broker.clone();
    let timing = hub.config.timing.clone();
    let mut backoff = timing.link_backoff_min_ms.max(1);
    while !*shutdown.borrow() {
        let handshake = Duration::from_millis(timing.link_handshake_ms);
        match tokio::time::timeout(handshake, dial(&hub, &*connector, &broker)).await {
            Ok(Ok((stream, early))) => {
                info!(broker, "link up");
                backoff = timing.link_backoff_min_ms.max(1);
                hub.links[index].up.store(true, Ordering::Release);
                hub.metrics.link_up.with_label_values(&[&broker]).set(1);
                let result = serve(&hub, index, stream, early, &mut rx, &mut shutdown).await;
                hub.links[index].up.store(false, Ordering::Release);
                hub.metrics.link_up.with_label_values(&[&broker]).set(0);
                // Frames queued for the dead link are lost; their requests are answered below.
                while rx.try_recv().is_ok() {}
                hub.broker_lost(index);
                match result {
                    Ok(()) => info!(broker, "link closed"),
                    Err(error) => warn!(broker, %error, "link lost"),
                }
            }
            Ok(Err(error)) => warn!(broker, %error, "link dial failed"),
            Err(_) => warn!(broker, "link handshake timed out"),
        }
        let jittered = rand::rng().random_range(backoff / 2..=backoff);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(jittered)) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(timing.link_backoff_max_ms.max(1));
    }
}

/// Dials and handshakes; returns the stream and any bytes the broker sent after LINK_READY.
async fn dial(
    hub: &Hub,
    connector: &dyn Connector,
    broker: &str,
) -> io::Result<(BoxedStream, BytesMut)> {
    let mut stream = connector.connect(broker).await?;
    let hello = Frame::from(LinkHello {
        version: VERSION,
        node: hub.config.node_id.as_str().into(),
        role: NodeRole::EDGE,
        ring_version: hub.router.version(),
        secret: hub.config.cluster.secret.clone().into(),
    });
    let mut buf = BytesMut::new();
    hello.encode(&mut buf).map_err(io::Error::other)?;
    stream.write_all(&buf).await?;
    let mut read = BytesMut::with_capacity(256);
    loop {
        if let Some(frame) =
            natter_codec::decode_frame(&mut read, MAX_FRAME_SIZE_CAP).map_err(io::Error::other)?
        {
            return match frame {
                Frame::LinkReady(ready) if ready.ring_version == hub.router.version() => {
                    Ok((stream, read))
                }
                Frame::LinkReady(_) => Err(io::Error::other("ring version mismatch")),
                Frame::Error(error) if error.code == ErrorCode::RING_MISMATCH => {
                    Err(io::Error::other("broker refused our ring version"))
                }
                other => Err(io::Error::other(format!(
                    "expected LINK_READY, got {:?}",
                    other.frame_type()
                ))),
            };
        }
        if tokio::io::AsyncReadExt::read_buf(&mut stream, &mut read).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Moves frames both ways until the link fails or the edge shuts down.
async fn serve(
    hub: &Hub,
    index: usize,
    stream: BoxedStream,
    early: BytesMut,
    rx: &mut mpsc::Receiver<Frame>,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<()> {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut frames = FramedRead::new(reader, FrameCodec::new(MAX_FRAME_SIZE_CAP));
    frames.read_buffer_mut().extend_from_slice(&early);
    let lease_ms = hub.config.timing.lease_ms;
    let mut renew = tokio::time::interval(Duration::from_millis((lease_ms / 3).max(1)));
    let mut batch = Vec::with_capacity(64);
    let mut buf = BytesMut::new();
    let mut pongs = Vec::new();
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, 64) => {
                if received == 0 {
                    return Ok(());
                }
            }
            _ = renew.tick() => batch.extend(renewals(hub, index)),
            frame = frames.next() => match frame {
                Some(Ok(frame)) => {
                    if let Some(pong) = handle(hub, frame)? {
                        pongs.push(pong);
                    }
                }
                Some(Err(error)) => return Err(io::Error::other(error)),
                None => return Ok(()),
            },
            _ = shutdown.changed() => {
                batch.extend(closes(hub, index));
                write(&mut writer, &mut buf, &mut batch).await?;
                return writer.shutdown().await;
            }
        }
        batch.append(&mut pongs);
        write(&mut writer, &mut buf, &mut batch).await?;
    }
}

async fn write<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut BytesMut,
    batch: &mut Vec<Frame>,
) -> io::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    buf.clear();
    for frame in batch.drain(..) {
        frame.encode(buf).map_err(io::Error::other)?;
    }
    writer.write_all(buf).await?;
    writer.flush().await
}

/// Handles one frame from a broker; returns a PONG to send, if any.
fn handle(hub: &Hub, frame: Frame) -> io::Result<Option<Frame>> {
    match frame {
        Frame::Routed(routed) => hub.dispatch(routed.session, routed.frame),
        Frame::Ping(ping) => return Ok(Some(Pong { nonce: ping.nonce }.into())),
        // Our only PINGs fence SESSION_OPENs; their nonce is the session id.
        Frame::Pong(pong) => hub.fence(pong.nonce),
        Frame::Error(error) if error.code.closes_connection() => {
            return Err(io::Error::other(format!(
                "broker closed the link: {:?} {}",
                error.code, error.message
            )));
        }
        _ => {}
    }
    Ok(None)
}

/// SESSION_OPEN renewals for every ready session homed at `index`: one batch per period.
fn renewals(hub: &Hub, index: usize) -> Vec<Frame> {
    let lease_ms = hub.config.timing.lease_ms;
    hub.connections()
        .into_iter()
        .filter_map(|conn| {
            let state = conn.state();
            let renew =
                state.home == Some(index) && state.session.is_ready() && state.closing.is_none();
            renew.then(|| {
                Frame::from(SessionOpen {
                    session: conn.id,
                    user: state.session.user().into(),
                    device: state.session.device().into(),
                    lease_ms,
                })
            })
        })
        .collect()
}

/// SESSION_CLOSE for every session homed at `index`, sent when the edge shuts down.
fn closes(hub: &Hub, index: usize) -> Vec<Frame> {
    hub.connections()
        .into_iter()
        .filter(|conn| conn.state().home == Some(index))
        .map(|conn| Frame::from(SessionClose { session: conn.id }))
        .collect()
}
