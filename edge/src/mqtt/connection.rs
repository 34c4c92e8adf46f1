//! Drives one MQTT connection: the client's byte stream on one side, the edge's native
//! connection driver ([`crate::connection::serve`]) on the other, [`MqttSession`] between.
//!
//! The native driver reads frames from a [`FrameSource`] and writes frames to a
//! [`FrameSink`]; here the source decodes MQTT packets and yields the native frames they
//! translate to, and the sink translates what the edge writes back into MQTT packets. So an
//! MQTT device goes through the same session, routing, limits and slow-consumer policy as a
//! native client.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use natter_codec::FrameType;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tracing::{debug, warn};

use super::codec::{Packet, split_packet};
use super::session::{MqttConfig, MqttSession, Sessions};
use crate::connection::{FrameSink, FrameSource, ReadError, serve};
use crate::hub::{Hub, lock, now_ms};

/// How long the sink waits for the client's window before looking again.
const WINDOW_POLL: Duration = Duration::from_millis(100);

/// What the two halves of one MQTT connection share.
#[derive(Debug)]
struct Shared {
    session: Mutex<MqttSession>,
    /// Frames for the broker were queued, or the connection is ending.
    wake_source: Notify,
    /// The client acknowledged deliveries: the window may have room.
    wake_sink: Notify,
}

/// Reads MQTT packets and yields native frames.
#[derive(Debug)]
struct MqttSource<R> {
    reader: R,
    buf: BytesMut,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    pending: std::collections::VecDeque<Bytes>,
}

impl<R> Drop for MqttSource<R> {
    fn drop(&mut self) {
        lock(&self.shared.session).ended(now_ms());
    }
}

impl<R: AsyncRead + Send + Unpin + 'static> FrameSource for MqttSource<R> {
    async fn next(&mut self, _max_frame_size: u64) -> Result<Option<Bytes>, ReadError> {
        let max_packet = self.hub.config.limits.max_frame_size as usize;
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(Some(frame));
            }
            let now = now_ms();
            let (may_read, deadline) = {
                let mut session = lock(&self.shared.session);
                session.poll(now);
                for frame in session.take_frames(now) {
                    if let Ok(bytes) = frame.to_bytes() {
                        self.pending.push_back(bytes);
                    }
                }
                if !self.pending.is_empty() {
                    continue;
                }
                if let Some(end) = session.end() {
                    return match end.code {
                        natter_codec::ErrorCode::SHUTTING_DOWN => Ok(None),
                        code => Err(ReadError::Protocol(code)),
                    };
                }
                let may_read = session.may_read(now);
                if may_read {
                    match split_packet(&mut self.buf, max_packet) {
                        Ok(Some((first, body))) => {
                            match Packet::decode(first, body, session.level()) {
                                Ok(packet) => session.on_packet(packet, now, &self.hub.keys),
                                Err(error) => {
                                    debug!(what = error.what, "malformed MQTT packet");
                                    session.malformed(error.reason);
                                }
                            }
                            self.shared.wake_sink.notify_one();
                            continue;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            debug!(what = error.what, "malformed MQTT packet");
                            session.malformed(error.reason);
                            continue;
                        }
                    }
                }
                let mut deadline = session.next_deadline();
                if let Some(wait) = session.read_wait(now) {
                    deadline = deadline.min(now + wait);
                }
                (may_read, deadline.min(now + 1_000))
            };
            let wait = Duration::from_millis(deadline.saturating_sub(now));
            tokio::select! {
                read = self.reader.read_buf(&mut self.buf), if may_read => match read {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(error) => return Err(ReadError::Io(error)),
                },
                _ = self.shared.wake_source.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Turns the native frames the edge writes into MQTT packets.
#[derive(Debug)]
struct MqttSink<W> {
    writer: W,
    shared: Arc<Shared>,
    buf: BytesMut,
}

impl<W: AsyncWrite + Send + Unpin + 'static> FrameSink for MqttSink<W> {
    async fn send(&mut self, frames: Vec<Bytes>) -> io::Result<()> {
        self.buf.clear();
        for raw in frames {
            // [NWP-14-11] A delivery waits for room in the client's window; meanwhile the
            // edge's queue for this client grows, under the native slow-consumer policy.
            if natter_codec::frame::peek_type(&raw) == Ok(FrameType::DELIVER) {
                while lock(&self.shared.session).window_full() {
                    if !self.buf.is_empty() {
                        self.writer.write_all(&self.buf).await?;
                        self.buf.clear();
                    }
                    let _ =
                        tokio::time::timeout(WINDOW_POLL, self.shared.wake_sink.notified()).await;
                }
            }
            let out = lock(&self.shared.session).on_server(raw, now_ms());
            for bytes in out {
                self.buf.extend_from_slice(&bytes);
            }
        }
        self.shared.wake_source.notify_one();
        if self.buf.is_empty() {
            return Ok(());
        }
        self.writer.write_all(&self.buf).await
    }

    async fn close(&mut self) {
        let _ = self.writer.shutdown().await;
    }
}

/// Serves one MQTT client connection over a byte stream.
async fn serve_stream<S>(
    hub: Arc<Hub>,
    sessions: Arc<Sessions>,
    stream: S,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let limits = &hub.config.limits;
    let config = MqttConfig {
        heartbeat_ms: hub.config.timing.heartbeat_ms,
        max_packet_size: limits.max_frame_size as usize,
        receive_maximum: limits.max_in_flight.saturating_sub(4).clamp(1, 65_535) as u16,
        requests_per_sec: limits.requests_per_sec,
        request_burst: limits.request_burst,
    };
    let session = MqttSession::new(config, sessions, hub.session_id(), now_ms());
    let shared = Arc::new(Shared {
        session: Mutex::new(session),
        wake_source: Notify::new(),
        wake_sink: Notify::new(),
    });
    let (reader, writer) = tokio::io::split(stream);
    let source = MqttSource {
        reader,
        buf: BytesMut::with_capacity(512),
        shared: shared.clone(),
        hub: hub.clone(),
        pending: Default::default(),
    };
    let sink = MqttSink {
        writer,
        shared,
        buf: BytesMut::new(),
    };
    serve(hub, source, sink, "mqtt", shutdown).await;
}

/// Accepts MQTT connections until `shutdown` turns true; connections count against the
/// same limit as native ones.
pub async fn accept_loop(
    hub: Arc<Hub>,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    tracker: mpsc::Sender<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sessions = Arc::new(Sessions::default());
    let mut backoff_ms = 1;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let stream: TcpStream = match accepted {
            Ok((stream, _)) => {
                backoff_ms = 1;
                stream
            }
            Err(error) => {
                warn!(%error, backoff_ms, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(1_000);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Before CONNECT the version is unknown, so there is no CONNACK to write.
            hub.count_error(natter_codec::ErrorCode::TOO_MANY_CONNECTIONS);
            continue;
        };
        let hub = hub.clone();
        let sessions = sessions.clone();
        let tracker = tracker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_stream(hub, sessions, stream, shutdown).await;
            drop(permit);
            drop(tracker);
        });
    }
}
