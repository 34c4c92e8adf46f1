//! Drives one client connection: reads frames into its [`Session`], writes its outbound queue,
//! and cleans up at the end, for any transport (byte stream or WebSocket).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use natter_codec::frame::{Goaway, Ping, PresenceSubscribe, SessionClose, SessionOpen};
use natter_codec::{ErrorCode, Frame, split_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tracing::debug;

use crate::hub::{Conn, Hub, OpenAnswer, now_ms};
use crate::metrics::type_label;
use crate::outbound::Outbound;
use crate::router::Destination;
use crate::session::{Action, Session, SessionConfig};

/// At most this many bytes are handed to a transport in one write.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a closing connection may take to flush its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why reading the next frame failed.
#[derive(Debug)]
pub enum ReadError {
    /// The transport failed or the peer vanished.
    Io(io::Error),
    /// The peer sent bytes that are not a frame; close with this code.
    Protocol(ErrorCode),
}

/// The receiving half of a client transport.
pub trait FrameSource: Send + 'static {
    /// The next complete frame, length prefix included; `None` at a clean end of stream.
    fn next(
        &mut self,
        max_frame_size: u64,
    ) -> impl Future<Output = Result<Option<Bytes>, ReadError>> + Send;
}

/// The sending half of a client transport.
pub trait FrameSink: Send + 'static {
    /// Writes complete frames, in order.
    fn send(&mut self, frames: Vec<Bytes>) -> impl Future<Output = io::Result<()>> + Send;
    /// Ends the transport politely.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Reads frames from a byte stream (TCP, TLS).
#[derive(Debug)]
pub struct StreamSource<R> {
    reader: R,
    buf: BytesMut,
}

impl<R> StreamSource<R> {
    /// Wraps the read half of a stream.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            // Most connections are idle: a small first buffer keeps them cheap (5.0 instead
            // of 8.5 KiB per idle connection, bench/run.sh), and it doubles as a busy one
            // needs more.
            buf: BytesMut::with_capacity(512),
        }
    }
}

impl<R: AsyncRead + Send + Unpin + 'static> FrameSource for StreamSource<R> {
    async fn next(&mut self, max_frame_size: u64) -> Result<Option<Bytes>, ReadError> {
        loop {
            match split_frame(&mut self.buf, max_frame_size) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(error) => return Err(ReadError::Protocol(error.code())),
            }
            let read = self
                .reader
                .read_buf(&mut self.buf)
                .await
                .map_err(ReadError::Io)?;
            if read == 0 {
                return Ok(None);
            }
        }
    }
}

/// Writes frames to a byte stream (TCP, TLS).
#[derive(Debug)]
pub struct StreamSink<W> {
    writer: W,
    buf: BytesMut,
}

impl<W> StreamSink<W> {
    /// Wraps the write half of a stream.
    pub fn new(writer: W) -> Self {
        Self {
            writer,
            buf: BytesMut::new(),
        }
    }
}

impl<W: AsyncWrite + Send + Unpin + 'static> FrameSink for StreamSink<W> {
    async fn send(&mut self, frames: Vec<Bytes>) -> io::Result<()> {
        if let [frame] = frames.as_slice() {
            return self.writer.write_all(frame).await;
        }
        self.buf.clear();
        for frame in &frames {
            self.buf.extend_from_slice(frame);
        }
        self.writer.write_all(&self.buf).await
    }

    async fn close(&mut self) {
        let _ = self.writer.shutdown().await;
    }
}

/// Serves one accepted client connection until it closes or the edge has drained.
pub async fn serve(
    hub: Arc<Hub>,
    mut source: impl FrameSource,
    sink: impl FrameSink,
    transport: &'static str,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = &hub.config;
    let session_config = SessionConfig {
        hello_timeout_ms: config.timing.hello_timeout_ms,
        heartbeat_ms: config.timing.heartbeat_ms,
        max_frame_size: config.limits.max_frame_size,
        max_in_flight: config.limits.max_in_flight,
        requests_per_sec: config.limits.requests_per_sec,
        request_burst: config.limits.request_burst,
        unavailable_retry_ms: config.timing.unavailable_retry_ms,
    };
    let id = hub.session_id();
    let conn = Arc::new(Conn::new(
        id,
        transport,
        Session::new(id, session_config, now_ms()),
        Outbound::new(
            config.limits.outbound_budget,
            config.timing.slow_consumer_ms,
        ),
    ));
    hub.register(conn.clone());
    let gauge = hub.metrics.connections.with_label_values(&[transport]);
    gauge.inc();
    let writer = tokio::spawn(write_loop(hub.clone(), conn.clone(), sink));

    let mut counted_user = None;
    read_loop(&hub, &conn, &mut source, &mut shutdown, &mut counted_user).await;

    {
        let mut state = conn.state();
        if state.closing.is_none() {
            state.closing = Some(ErrorCode::SHUTTING_DOWN);
        }
        conn.wake_writer.notify_one();
    }
    let abort = writer.abort_handle();
    if tokio::time::timeout(CLOSE_GRACE, writer).await.is_err() {
        abort.abort();
    }
    hub.unregister(id);
    gauge.dec();
    let (home, used, subscriptions) = {
        let state = conn.state();
        let subscriptions = state.session.presence_subscriptions(now_ms());
        (state.home, state.outbound.used(), subscriptions)
    };
    hub.account(used, 0);
    if let Some(user) = counted_user {
        end_interests(&hub, &conn, &user, subscriptions);
        hub.remove_user_connection(&user);
    }
    if let Some(home) = home {
        hub.send_to(home, SessionClose { session: id }.into());
    }
}

/// Ends the presence interests a closed connection held, so that they neither outlive it nor
/// keep counting against anyone's limit (`[NWP-7.9-5]`). The answers find no session and are
/// dropped.
fn end_interests(hub: &Hub, conn: &Conn, user: &str, conversations: Vec<String>) {
    let device = conn.state().session.device().to_string();
    for conversation in conversations {
        let end = PresenceSubscribe {
            request: 1,
            conversation: conversation.as_str().into(),
            ttl_ms: 0,
        };
        let destination = Destination::Conversation(conversation);
        if let (Some(broker), Ok(raw)) = (
            hub.router.broker_for(&destination, user),
            Frame::from(end).to_bytes(),
        ) {
            hub.route(broker, conn.id, user, &device, raw);
        }
    }
}

async fn read_loop(
    hub: &Hub,
    conn: &Conn,
    source: &mut impl FrameSource,
    shutdown: &mut watch::Receiver<bool>,
    counted_user: &mut Option<String>,
) {
    let max_frame_size = hub.config.limits.max_frame_size;
    let mut drain_deadline = None;
    loop {
        let deadline = {
            let state = conn.state();
            if state.closing.is_some() {
                return;
            }
            let next = state.session.next_deadline().min(now_ms() + 1_000);
            drain_deadline.map_or(next, |drain: u64| next.min(drain))
        };
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms()));
        tokio::select! {
            read = source.next(max_frame_size) => match read {
                Ok(Some(raw)) => {
                    let frame_type = natter_codec::frame::peek_type(&raw).unwrap_or_default();
                    hub.metrics.frames_in.with_label_values(&[type_label(frame_type)]).inc();
                    let actions = {
                        let mut state = conn.state();
                        state.session.handle_client(raw, now_ms(), &hub.keys, &hub.router)
                    };
                    for action in actions {
                        match action {
                            Action::Open { broker, user, device } => {
                                open(hub, conn, broker, user, device, counted_user).await;
                            }
                            other => {
                                let mut state = conn.state();
                                hub.perform(conn, &mut state, vec![other]);
                            }
                        }
                    }
                }
                Ok(None) => return,
                Err(ReadError::Io(error)) => {
                    debug!(%error, session = conn.id, "client read failed");
                    return;
                }
                Err(ReadError::Protocol(code)) => {
                    let mut state = conn.state();
                    hub.close(conn, &mut state, code, "malformed frame");
                    return;
                }
            },
            _ = tokio::time::sleep(wait) => {
                let now = now_ms();
                let mut state = conn.state();
                let actions = state.session.poll(now);
                hub.perform(conn, &mut state, actions);
                if let Err(slow) = state.outbound.poll(now) {
                    hub.close(conn, &mut state, slow.code(), "slow consumer");
                }
                if drain_deadline.is_some_and(|drain| now >= drain) {
                    state.closing = Some(ErrorCode::SHUTTING_DOWN);
                }
            }
            _ = conn.wake_reader.notified() => {}
            changed = shutdown.changed(), if drain_deadline.is_none() => {
                if changed.is_err() || *shutdown.borrow() {
                    drain_deadline = Some(now_ms() + hub.config.timing.drain_ms);
                    let mut state = conn.state();
                    state.session.drain();
                    let goaway = Goaway {
                        code: ErrorCode::SHUTTING_DOWN,
                        reconnect_ms: hub.config.timing.goaway_reconnect_ms,
                        message: "server draining".into(),
                    };
                    hub.reply(conn, &mut state, goaway.into());
                }
            }
        }
        if drain_deadline.is_some() {
            let mut state = conn.state();
            if !state.session.has_in_flight() {
                state.closing.get_or_insert(ErrorCode::SHUTTING_DOWN);
            }
        }
    }
}

/// Registers the session at its home broker and answers READY, or closes.
async fn open(
    hub: &Hub,
    conn: &Conn,
    broker: usize,
    user: String,
    device: String,
    counted_user: &mut Option<String>,
) {
    if !hub.add_user_connection(&user) {
        let mut state = conn.state();
        hub.close(
            conn,
            &mut state,
            ErrorCode::TOO_MANY_CONNECTIONS,
            "too many connections for this user",
        );
        return;
    }
    *counted_user = Some(user.clone());
    let (tx, rx) = oneshot::channel();
    {
        let mut state = conn.state();
        state.home = Some(broker);
        state.opening = Some(tx);
    }
    let open = SessionOpen {
        session: conn.id,
        user: user.into(),
        device: device.into(),
        lease_ms: hub.config.timing.lease_ms,
    };
    // The PING fences the open: see `Hub::fence`.
    let fence = Ping { nonce: conn.id };
    let answer = if hub.send_to(broker, open.into()) && hub.send_to(broker, fence.into()) {
        let timeout = Duration::from_millis(hub.config.timing.open_timeout_ms);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            _ => OpenAnswer::Failed(ErrorCode::UNAVAILABLE),
        }
    } else {
        OpenAnswer::Failed(ErrorCode::UNAVAILABLE)
    };
    let mut state = conn.state();
    state.opening = None;
    let actions = match answer {
        OpenAnswer::Opened(inbox_head) => state.session.opened(inbox_head, now_ms()),
        OpenAnswer::Failed(code) => {
            // A session the broker refused holds no lease there.
            state.home = None;
            state.session.open_failed(code)
        }
    };
    hub.perform(conn, &mut state, actions);
}

async fn write_loop(hub: Arc<Hub>, conn: Arc<Conn>, mut sink: impl FrameSink) {
    loop {
        let (frames, closing) = {
            let mut state = conn.state();
            (state.outbound.take(WRITE_BATCH), state.closing.is_some())
        };
        if frames.is_empty() {
            if closing {
                break;
            }
            conn.wake_writer.notified().await;
            continue;
        }
        let written: usize = frames.iter().map(Bytes::len).sum();
        if sink.send(frames).await.is_err() {
            let mut state = conn.state();
            state.closing.get_or_insert(ErrorCode::SHUTTING_DOWN);
            conn.wake_reader.notify_one();
            break;
        }
        let mut state = conn.state();
        let before = state.outbound.used();
        state.outbound.written(written);
        hub.account(before, state.outbound.used());
    }
    sink.close().await;
}
