//! The scripted server a client under test connects to.
//!
//! [`Harness`] listens on a loopback port, starts the client with the contract's arguments,
//! and plays the server frame by frame. It keeps a small model of the server's state
//! ([`World`]: the user's inbox and the conversations' logs), so that whatever the client
//! asks in between (a RESUME, a SEND, a HISTORY page) gets a coherent answer without the
//! scenario scripting it; the scenario scripts only what it is about (a cut, a GOAWAY, an
//! error, a gap) through the model's knobs ([`World::reactions`], [`Conn::silent`], ...).
//!
//! Every frame the client sends is checked against the rules that hold for all of them,
//! whatever the scenario ([`Harness::observe`]), and when a scenario ends its output is
//! checked against the rules about what a client shows ([`Harness::finish`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use natter_codec::frame::{
    ConversationList, Deliver, Done, Gap, Goaway, Hello, HistoryPage, Pong, Ready, Send, SendAck,
    Synced,
};
use natter_codec::types::{ConversationKind, Direction, Event, EventFlags, EventKind, Summary};
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, DecodeError, ErrorCode, Frame, split_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::process::{Args, Proc};
use super::{ClientTarget, Ctx};
use crate::Failure;
use crate::wire::{brief, hex};
use crate::ws::{Message, WsServerConn};

/// The user the runner's READY names, and the other member of the conversation.
pub const USER: &str = "alice";
/// The device the runner's READY names.
pub const DEVICE: &str = "conformance";
/// The other user of [`CONVERSATION`], who sends the messages the client receives.
pub const PEER: &str = "bob";
/// The conversation the client is told to send to.
pub const CONVERSATION: &str = "d/alice/bob";

/// How long a client may take to connect, or to answer, before a scenario fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// How late a frame the client sent before it could have read a GOAWAY or a closing ERROR
/// may arrive after it: such a frame is not a reaction to it.
const GRACE: Duration = Duration::from_millis(100);

/// A fixed timestamp for the events the runner makes (2026-01-01).
const TIMESTAMP: u64 = 1_767_225_600_000;

/// What READY announces.
#[derive(Debug, Clone, Copy)]
pub struct ReadyOpts {
    /// `version`.
    pub version: u64,
    /// `max_frame_size`: the largest frame the client may send.
    pub max_frame_size: u64,
    /// `heartbeat_ms`.
    pub heartbeat_ms: u64,
}

impl Default for ReadyOpts {
    fn default() -> Self {
        Self {
            version: 1,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            heartbeat_ms: 5_000,
        }
    }
}

impl ReadyOpts {
    /// With this `heartbeat_ms`.
    pub fn heartbeat(heartbeat_ms: u64) -> Self {
        Self {
            heartbeat_ms,
            ..Self::default()
        }
    }
}

/// How the server answers one SEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Append it (or find it, for a repeat) and answer SEND_ACK.
    Ack,
    /// Do nothing: the SEND is lost with the connection.
    Hold,
    /// Append it but leave it unanswered: its SEND_ACK is lost with the connection.
    Store,
    /// Answer this ERROR.
    Error {
        /// The code.
        code: ErrorCode,
        /// Its `retry_after_ms`.
        retry_after_ms: u64,
    },
}

/// A SEND the client wrote.
#[derive(Debug, Clone)]
pub struct SendRecord {
    /// When it arrived.
    pub at: Instant,
    /// On which connection (from 1).
    pub conn: usize,
    /// The frame.
    pub send: Send,
}

/// An inbox entry the runner sent as a DELIVER.
#[derive(Debug, Clone)]
struct Delivered {
    conversation: String,
    seq: u64,
    kind: EventKind,
}

/// The server's state as far as the client can see it: the user's inbox and the logs of the
/// conversations it names.
#[derive(Debug, Default)]
pub struct World {
    logs: BTreeMap<String, Vec<Event>>,
    /// Inbox entries after [`World::base`]: (conversation, seq).
    inbox: Vec<(String, u64)>,
    /// The inbox entries up to here are the past: a RESUME below it gets an inbox GAP
    /// ([NWP-7.3-4]), as for a pruned inbox.
    base: u64,
    dedup: HashMap<(String, u64), u64>,
    /// Scripted reactions to SENDs, by body, used up in order; [`Reaction::Ack`] after.
    pub reactions: HashMap<String, VecDeque<Reaction>>,
    /// Whether the client's own messages come back to it as DELIVERs ([NWP-7.2-5]).
    pub echo: bool,
    /// Whether a RESUME is answered (replay and SYNCED) as soon as it arrives.
    pub auto_resume: bool,
    /// The next RESUME replays from here if it is below its `after`: the same events again.
    pub replay_from: Option<u64>,
    /// Every SEND received, in order.
    pub sends: Vec<SendRecord>,
    /// Every ACK received: when, on which connection, and its inbox_seq.
    pub acks: Vec<(Instant, usize, u64)>,
    /// The highest inbox_seq the client may acknowledge: delivered, skipped by a GAP, or
    /// below the `after` of its RESUME.
    pub ackable: u64,
    delivered: BTreeMap<u64, Delivered>,
}

impl World {
    fn new() -> Self {
        Self {
            echo: true,
            auto_resume: true,
            ..Self::default()
        }
    }

    /// The newest inbox_seq.
    pub fn head(&self) -> u64 {
        self.base + self.inbox.len() as u64
    }

    /// Makes the inbox start after `head` entries the client will never see (READY announces
    /// them; a new device starts after them).
    pub fn set_base(&mut self, head: u64) {
        self.base = head;
        self.inbox.clear();
    }

    /// Appends an event to a conversation's log and returns its seq.
    pub fn append(&mut self, conversation: &str, mut event: Event) -> u64 {
        let log = self.logs.entry(conversation.to_owned()).or_default();
        event.seq = log.len() as u64 + 1;
        log.push(event);
        log.len() as u64
    }

    /// Appends an event and its inbox entry; returns the inbox_seq.
    pub fn append_entry(&mut self, conversation: &str, event: Event) -> u64 {
        let seq = self.append(conversation, event);
        self.inbox.push((conversation.to_owned(), seq));
        self.head()
    }

    /// A message from [`PEER`] in [`CONVERSATION`], with its inbox entry; returns the
    /// inbox_seq.
    pub fn peer_message(&mut self, body: &str) -> u64 {
        self.append_entry(CONVERSATION, peer_event(EventKind::MESSAGE, body))
    }

    /// The event of an inbox entry, if the inbox holds it.
    pub fn entry(&self, inbox_seq: u64) -> Option<(String, Event)> {
        let index = inbox_seq.checked_sub(self.base + 1)?;
        let (conversation, seq) = self.inbox.get(usize::try_from(index).ok()?)?;
        let event = self.event(conversation, *seq)?;
        Some((conversation.clone(), event))
    }

    /// An event of a conversation.
    pub fn event(&self, conversation: &str, seq: u64) -> Option<Event> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.logs.get(conversation)?.get(index).cloned()
    }

    /// The highest ACK received so far.
    pub fn last_ack(&self) -> u64 {
        self.acks.iter().map(|(_, _, ack)| *ack).max().unwrap_or(0)
    }

    /// The SENDs received with this body.
    pub fn sends_of<'a>(&'a self, body: &'a str) -> impl Iterator<Item = &'a SendRecord> + 'a {
        self.sends
            .iter()
            .filter(move |record| &record.send.body[..] == body.as_bytes())
    }

    /// Scripts the reactions to the SENDs of `body`.
    pub fn react(&mut self, body: &str, reactions: &[Reaction]) {
        self.reactions
            .insert(body.to_owned(), reactions.iter().copied().collect());
    }

    /// Appends a SEND's event unless it repeats one; returns its seq, whether it is a
    /// repeat, and the new inbox entry.
    fn store(&mut self, send: &Send) -> (u64, bool, Option<u64>) {
        let key = (send.conversation.to_string(), send.client_msg_id);
        if let Some(seq) = self.dedup.get(&key) {
            return (*seq, true, None);
        }
        let event = Event {
            seq: 0,
            kind: send.kind,
            target: send.target,
            flags: EventFlags::NONE,
            timestamp: TIMESTAMP,
            sender: USER.into(),
            device: DEVICE.into(),
            client_msg_id: send.client_msg_id,
            content_type: send.content_type.clone(),
            body: send.body.clone(),
        };
        let inbox_seq = self.append_entry(&send.conversation, event);
        let seq = self.inbox.last().map_or(0, |(_, seq)| *seq);
        self.dedup.insert(key, seq);
        (seq, false, Some(inbox_seq))
    }
}

/// An event from [`PEER`].
pub fn peer_event(kind: EventKind, body: &str) -> Event {
    Event {
        seq: 0,
        kind,
        target: 0,
        flags: EventFlags::NONE,
        timestamp: TIMESTAMP,
        sender: PEER.into(),
        device: "phone".into(),
        client_msg_id: 77,
        content_type: "".into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

/// How frames travel on one connection.
#[derive(Debug)]
enum Wire {
    Tcp { stream: TcpStream, buf: BytesMut },
    Ws(Box<WsServerConn>),
}

/// One connection from the client.
#[derive(Debug)]
pub struct Conn {
    wire: Option<Wire>,
    /// Its number, from 1.
    pub index: usize,
    /// When it was accepted.
    pub accepted_at: Instant,
    /// When it ended: the client closed it or the runner cut it.
    pub closed_at: Option<Instant>,
    /// The HELLO it opened with.
    pub hello: Option<Hello>,
    /// The READY the runner sent, and when.
    pub ready: Option<Ready>,
    /// When the runner sent READY.
    pub ready_at: Option<Instant>,
    /// The `after` of each RESUME, in order.
    pub resumes: Vec<u64>,
    /// Whether a SYNCED has been sent: DELIVERs are live.
    pub synced: bool,
    /// Inbox GAPs the runner sent, each allowing one more RESUME ([NWP-6.2.9-2]).
    inbox_gaps: usize,
    outstanding: HashSet<u64>,
    /// When the runner sent GOAWAY.
    pub goaway_at: Option<Instant>,
    /// When the runner sent an ERROR that closes the connection.
    pub error_at: Option<Instant>,
    /// The ERROR the client sent, if it sent one.
    pub client_error: Option<natter_codec::frame::Error>,
    /// Every frame the client sent, with when it arrived.
    pub received: Vec<(Instant, Frame)>,
    /// When the runner last sent a frame.
    pub last_sent_at: Instant,
    last_typing: HashMap<String, Instant>,
    /// Neither answer nor PONG: the server looks dead.
    pub silent: bool,
    /// Write every frame one byte at a time (stream transports only).
    pub split: bool,
    /// Bytes appended to every frame the runner sends, after its known fields.
    pub extension: Vec<u8>,
}

impl Conn {
    fn new(index: usize, wire: Option<Wire>) -> Self {
        let now = Instant::now();
        Self {
            wire,
            index,
            accepted_at: now,
            closed_at: None,
            hello: None,
            ready: None,
            ready_at: None,
            resumes: Vec::new(),
            synced: false,
            inbox_gaps: 0,
            outstanding: HashSet::new(),
            goaway_at: None,
            error_at: None,
            client_error: None,
            received: Vec::new(),
            last_sent_at: now,
            last_typing: HashMap::new(),
            silent: false,
            split: false,
            extension: Vec::new(),
        }
    }

    /// The largest frame the client may send: READY's, or the default before it ([NWP-3-3]).
    fn limit(&self) -> u64 {
        self.ready
            .as_ref()
            .map_or(DEFAULT_MAX_FRAME_SIZE, |ready| ready.max_frame_size)
    }

    /// The frames the client sent that match.
    pub fn frames<'a>(
        &'a self,
        wanted: impl Fn(&Frame) -> bool + 'a,
    ) -> impl Iterator<Item = &'a (Instant, Frame)> + 'a {
        self.received.iter().filter(move |(_, frame)| wanted(frame))
    }

    async fn read(&mut self) -> Result<Option<Bytes>, Failure> {
        let limit = self.limit();
        let Some(wire) = &mut self.wire else {
            return std::future::pending().await;
        };
        match wire {
            Wire::Tcp { stream, buf } => loop {
                match split_frame(buf, limit) {
                    Ok(Some(raw)) => return Ok(Some(raw)),
                    Ok(None) => {}
                    Err(e) => return Err(malformed(&e, limit)),
                }
                match stream.read_buf(buf).await {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                }
            },
            Wire::Ws(ws) => match ws.recv().await? {
                Message::Close => Ok(None),
                Message::Text(_) => Err(Failure::new(
                    "the client sent a text WebSocket message (NWP-5.6-2)",
                )),
                Message::Binary(message) => {
                    let mut buf = BytesMut::from(&message[..]);
                    match split_frame(&mut buf, limit) {
                        Ok(Some(raw)) if buf.is_empty() => Ok(Some(raw)),
                        Ok(_) => Err(Failure::new(format!(
                            "the client sent a WebSocket message that is not exactly one frame: \
                             {} (NWP-5.6-2)",
                            hex(&message)
                        ))),
                        Err(e) => Err(malformed(&e, limit)),
                    }
                }
            },
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let split = self.split;
        let Some(wire) = &mut self.wire else {
            return Ok(());
        };
        // A write to a client that closed meanwhile fails; the next read notices the end.
        match wire {
            Wire::Tcp { stream, .. } if split => {
                for byte in bytes {
                    if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Wire::Tcp { stream, .. } => {
                let _ = stream.write_all(bytes).await;
            }
            Wire::Ws(ws) => {
                let _ = ws.send_binary(bytes).await;
            }
        }
        self.last_sent_at = Instant::now();
        Ok(())
    }
}

fn malformed(error: &DecodeError, limit: u64) -> Failure {
    match error {
        DecodeError::FrameTooLarge { len, .. } => Failure::new(format!(
            "the client sent a frame of Length {len}, above the max_frame_size {limit} the \
             server announced (NWP-3-3, NWP-5.1-5)"
        )),
        other => Failure::new(format!(
            "the client sent a malformed frame: {other} (NWP-2.2-2, NWP-3-5)"
        )),
    }
}

/// Adds `extension` after a frame's known fields, fixing its Length.
fn extend(frame: &[u8], extension: &[u8]) -> Vec<u8> {
    if extension.is_empty() {
        return frame.to_vec();
    }
    let mut rest = frame;
    let len = natter_codec::varint::decode(&mut rest).unwrap_or(0);
    let mut out = BytesMut::new();
    let _ = natter_codec::varint::encode(len + extension.len() as u64, &mut out);
    out.extend_from_slice(rest);
    out.extend_from_slice(extension);
    out.to_vec()
}

/// What happened while the harness waited.
enum Happened {
    Frame(Bytes),
    Closed,
    Line,
    Exited,
    Timeout,
}

/// One scenario's server, client and model.
#[derive(Debug)]
pub struct Harness {
    listener: TcpListener,
    url: String,
    ws: bool,
    minimal: bool,
    cmd: String,
    dir: PathBuf,
    token: String,
    /// The model.
    pub world: World,
    /// The client under test.
    pub client: Proc,
    conn: Option<Conn>,
    /// Connections that ended, oldest first.
    pub old: Vec<Conn>,
    /// The events earlier runs of the client showed.
    shown_before: HashSet<(String, u64)>,
}

/// The command-line arguments of the contract (README.md).
fn contract_arguments(url: &str, token: &str, dir: &std::path::Path, args: &Args) -> Vec<String> {
    let mut arguments = vec![
        "--url".to_owned(),
        url.to_owned(),
        "--token".to_owned(),
        token.to_owned(),
        "--cursor-file".to_owned(),
        dir.join("cursor").to_string_lossy().into_owned(),
        "--conversation".to_owned(),
        CONVERSATION.to_owned(),
        "--send".to_owned(),
        args.send.to_string(),
    ];
    if let Some(big) = args.big {
        arguments.extend(["--big".to_owned(), big.to_string()]);
    }
    if args.typing {
        arguments.push("--typing".to_owned());
    }
    arguments
}

impl Harness {
    /// Listens on a loopback port and starts the client.
    pub async fn start(ctx: &Ctx<'_>, args: &Args) -> Result<Self, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Failure::new(format!("listen: {e}")))?;
        let target: &ClientTarget = ctx.target;
        let port = listener
            .local_addr()
            .map_err(|e| Failure::new(format!("listen: {e}")))?
            .port();
        let url = if target.ws {
            format!("ws://127.0.0.1:{port}/ws")
        } else {
            format!("tcp://127.0.0.1:{port}")
        };
        let arguments = contract_arguments(&url, &ctx.token, &ctx.dir, args);
        let client = Proc::spawn(&target.cmd, &arguments, &ctx.token)?;
        Ok(Self {
            listener,
            url,
            minimal: target.minimal,
            ws: target.ws,
            cmd: target.cmd.clone(),
            dir: ctx.dir.clone(),
            token: ctx.token.clone(),
            world: World::new(),
            client,
            conn: None,
            old: Vec::new(),
            shown_before: HashSet::new(),
        })
    }

    /// Starts the client again, with the same cursor file, once the previous run has ended
    /// (or is stopped now).
    pub fn restart(&mut self, args: &Args) -> Result<(), Failure> {
        self.client.kill();
        self.client.poll();
        self.check_output()?;
        for line in self.client.events("message") {
            if let Some(seq) = line.u64("seq") {
                self.shown_before
                    .insert((line.str("conversation").to_owned(), seq));
            }
        }
        let arguments = contract_arguments(&self.url, &self.token, &self.dir, args);
        self.client = Proc::spawn(&self.cmd, &arguments, &self.token)?;
        Ok(())
    }

    /// Whether the client claims only the minimal profile (spec 12).
    pub fn is_minimal(&self) -> bool {
        self.minimal
    }

    /// The current connection.
    pub fn conn(&self) -> &Conn {
        match &self.conn {
            Some(conn) => conn,
            None => self.old.last().unwrap_or_else(|| no_conn()),
        }
    }

    /// The current connection, to adjust.
    pub fn conn_mut(&mut self) -> Option<&mut Conn> {
        self.conn.as_mut()
    }

    /// Every connection so far, oldest first.
    pub fn conns(&self) -> impl Iterator<Item = &Conn> {
        self.old.iter().chain(self.conn.as_ref())
    }

    /// A failure, with the end of the client's stderr.
    pub fn fail(&self, message: impl Into<String>) -> Failure {
        Failure::new(format!("{}{}", message.into(), self.client.stderr_tail()))
    }

    // Connections.

    /// Waits up to `wait` for the client's next connection.
    pub async fn accept(&mut self, wait: Duration) -> Result<(), Failure> {
        self.drop_conn();
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(wait, self.listener.accept()) => accepted,
            () = self.client.ended() => {
                let status = self.client.exit_status().flatten();
                return Err(self.fail(format!(
                    "the client exited (status {status:?}) instead of connecting"
                )));
            }
        };
        let stream = match accepted {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(e)) => return Err(Failure::new(format!("accept: {e}"))),
            Err(_) => {
                return Err(self.fail(format!("the client did not connect within {wait:?}")));
            }
        };
        stream.set_nodelay(true).ok();
        let wire = if self.ws {
            Wire::Ws(Box::new(WsServerConn::accept(stream, PATIENCE).await?))
        } else {
            Wire::Tcp {
                stream,
                buf: BytesMut::new(),
            }
        };
        let index = self.conns().count() + 1;
        self.conn = Some(Conn::new(index, Some(wire)));
        Ok(())
    }

    /// Expects no connection for `wait`; succeeds early if the client exits.
    pub async fn expect_no_connection(&mut self, wait: Duration, why: &str) -> Result<(), Failure> {
        self.drop_conn();
        tokio::select! {
            accepted = tokio::time::timeout(wait, self.listener.accept()) => match accepted {
                Err(_) => Ok(()),
                Ok(_) => Err(self.fail(format!("the client connected again {why}"))),
            },
            () = self.client.ended() => Ok(()),
        }
    }

    /// Closes the current connection abruptly, as a lost network does.
    pub fn cut(&mut self) {
        self.drop_conn();
    }

    fn drop_conn(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.wire = None;
            conn.closed_at.get_or_insert_with(Instant::now);
            self.old.push(conn);
        }
    }

    /// Accepts a connection and expects HELLO as its first frame, within the 10 seconds
    /// [NWP-5.1-1] gives, offering version 1 and a `max_frame_size` of at least 4,096
    /// ([NWP-3-4]), with the token it was given.
    pub async fn hello(&mut self, wait: Duration) -> Result<Hello, Failure> {
        self.accept(wait).await?;
        self.serve_until(Duration::from_secs(10), "HELLO", |h| {
            h.conn().hello.is_some()
        })
        .await?;
        let hello = self
            .conn()
            .hello
            .clone()
            .ok_or_else(|| self.fail("no HELLO"))?;
        if !(hello.min_version..=hello.max_version).contains(&1) {
            return Err(self.fail(format!(
                "HELLO offers versions {} to {}, not 1",
                hello.min_version, hello.max_version
            )));
        }
        if hello.max_frame_size < 4_096 {
            return Err(self.fail(format!(
                "HELLO announces max_frame_size {}, below 4,096 (NWP-3-4)",
                hello.max_frame_size
            )));
        }
        if hello.token[..] != *self.token.as_bytes() {
            return Err(self.fail("HELLO does not carry the token given with --token"));
        }
        Ok(hello)
    }

    /// Sends READY; the inbox head is the model's.
    pub async fn ready(&mut self, opts: ReadyOpts) -> Result<(), Failure> {
        let ready = Ready {
            version: opts.version,
            features: natter_codec::types::Features::NONE,
            max_frame_size: opts.max_frame_size,
            heartbeat_ms: opts.heartbeat_ms,
            session: self.conns().count() as u64,
            user: USER.into(),
            device: DEVICE.into(),
            inbox_head: self.world.head(),
            server_time: TIMESTAMP,
        };
        self.send(ready.into()).await
    }

    /// HELLO, READY, then the RESUME (answered by the model); returns the RESUME's `after`.
    pub async fn live(&mut self, opts: ReadyOpts) -> Result<u64, Failure> {
        self.hello(PATIENCE).await?;
        self.ready(opts).await?;
        self.resumed().await
    }

    /// Waits for the connection's RESUME and returns its `after`.
    pub async fn resumed(&mut self) -> Result<u64, Failure> {
        self.serve_until(PATIENCE, "RESUME", |h| !h.conn().resumes.is_empty())
            .await?;
        Ok(self.conn().resumes[0])
    }

    // Sending.

    /// Sends a frame (with the connection's extension bytes, if any).
    pub async fn send(&mut self, frame: Frame) -> Result<(), Failure> {
        let bytes = frame
            .to_bytes()
            .map_err(|e| Failure::new(format!("encode: {e}")))?;
        let Some(conn) = &mut self.conn else {
            return Ok(());
        };
        let bytes = extend(&bytes, &conn.extension);
        conn.write(&bytes).await?;
        self.note(&frame);
        Ok(())
    }

    /// Sends frames in one write: one segment, or one WebSocket message.
    pub async fn send_merged(&mut self, frames: &[Frame]) -> Result<(), Failure> {
        let mut bytes = Vec::new();
        for frame in frames {
            let frame = frame
                .to_bytes()
                .map_err(|e| Failure::new(format!("encode: {e}")))?;
            bytes.extend_from_slice(&frame);
        }
        self.send_raw(&bytes).await?;
        for frame in frames {
            self.note(frame);
        }
        Ok(())
    }

    /// Updates the connection and the model for a frame the runner sent.
    fn note(&mut self, frame: &Frame) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        let now = Instant::now();
        match frame {
            Frame::Ready(ready) => {
                conn.ready = Some(ready.clone());
                conn.ready_at = Some(now);
            }
            Frame::Goaway(_) => conn.goaway_at = Some(now),
            Frame::Error(error) if error.code.closes_connection() => conn.error_at = Some(now),
            Frame::Synced(synced) => {
                conn.synced = true;
                self.world.ackable = self.world.ackable.max(synced.inbox_head);
            }
            Frame::Gap(gap) if gap.conversation.is_empty() => {
                conn.inbox_gaps += 1;
                self.world.ackable = self.world.ackable.max(gap.to);
            }
            Frame::Deliver(deliver) if deliver.inbox_seq != 0 => {
                self.world.ackable = self.world.ackable.max(deliver.inbox_seq);
                self.world.delivered.insert(
                    deliver.inbox_seq,
                    Delivered {
                        conversation: deliver.conversation.to_string(),
                        seq: deliver.event.seq,
                        kind: deliver.event.kind,
                    },
                );
            }
            _ => {}
        }
        if let Some(request) = frame.request() {
            conn.outstanding.remove(&request);
        }
    }

    /// Writes bytes as they are: one WebSocket message, or part of the stream.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match &mut self.conn {
            Some(conn) => conn.write(bytes).await,
            None => Ok(()),
        }
    }

    /// Sends the DELIVER of an inbox entry of the model.
    pub async fn deliver(&mut self, inbox_seq: u64) -> Result<(), Failure> {
        let (conversation, event) = self
            .world
            .entry(inbox_seq)
            .ok_or_else(|| Failure::new(format!("the model has no inbox entry {inbox_seq}")))?;
        let deliver = Deliver {
            inbox_seq,
            conversation: conversation.as_str().into(),
            event,
        };
        self.send(deliver.into()).await
    }

    /// Sends a connection error and notes when.
    pub async fn send_error(&mut self, code: ErrorCode, message: &str) -> Result<(), Failure> {
        self.send(natter_codec::frame::Error::new(0, code, message).into())
            .await
    }

    /// Sends GOAWAY.
    pub async fn goaway(&mut self, reconnect_ms: u64) -> Result<(), Failure> {
        let goaway = Goaway {
            code: ErrorCode::SHUTTING_DOWN,
            reconnect_ms,
            message: "draining".into(),
        };
        self.send(goaway.into()).await
    }

    /// Answers a RESUME: the inbox after `after` (a GAP for what is before the model's
    /// base), then SYNCED ([NWP-7.3-2]).
    async fn replay(&mut self, request: u64, after: u64) -> Result<(), Failure> {
        let mut from = match self.world.replay_from.take() {
            Some(from) => from.min(after),
            None => after,
        };
        if from < self.world.base {
            let gap = Gap {
                conversation: "".into(),
                from: from + 1,
                to: self.world.base,
            };
            self.send(gap.into()).await?;
            from = self.world.base;
        }
        for inbox_seq in from + 1..=self.world.head() {
            self.deliver(inbox_seq).await?;
        }
        let synced = Synced {
            request,
            inbox_head: self.world.head(),
        };
        self.send(synced.into()).await
    }

    // Receiving.

    /// Serves the connection (answers, model, checks) and reads the client's output until
    /// `until` holds; fails after `wait`, or if the connection or the client ends first.
    pub async fn serve_until(
        &mut self,
        wait: Duration,
        what: &str,
        mut until: impl FnMut(&Self) -> bool,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + wait;
        loop {
            self.client.poll();
            if until(self) {
                return Ok(());
            }
            match self.step(deadline).await? {
                Happened::Timeout => {
                    return Err(self.fail(format!("no {what} within {wait:?}")));
                }
                Happened::Closed => {
                    if until(self) {
                        return Ok(());
                    }
                    return Err(self.fail(format!(
                        "the client closed the connection while the runner waited for {what}"
                    )));
                }
                Happened::Exited if !until(self) => {
                    let status = self.client.exit_status().flatten();
                    return Err(self.fail(format!(
                        "the client exited (status {status:?}) while the runner waited for {what}"
                    )));
                }
                _ => {}
            }
        }
    }

    /// Serves the connection for `wait`, failing if the client closes it or exits.
    pub async fn serve_for(&mut self, wait: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + wait;
        loop {
            match self.step(deadline).await? {
                Happened::Timeout => return Ok(()),
                Happened::Closed => {
                    return Err(self.fail("the client closed the connection unexpectedly"));
                }
                Happened::Exited => {
                    let status = self.client.exit_status().flatten();
                    return Err(self.fail(format!("the client exited (status {status:?})")));
                }
                _ => {}
            }
        }
    }

    /// Waits up to `wait` for the client to close the connection; returns how long that took.
    pub async fn expect_close(&mut self, wait: Duration, why: &str) -> Result<Duration, Failure> {
        let start = Instant::now();
        let deadline = start + wait;
        loop {
            match self.step(deadline).await? {
                Happened::Closed | Happened::Exited => return Ok(start.elapsed()),
                Happened::Timeout => {
                    return Err(self.fail(format!(
                        "the client kept the connection open for {wait:?} {why}"
                    )));
                }
                _ => {}
            }
        }
    }

    /// Serves the connection for `wait` whether or not the client closes it meanwhile (after
    /// a connection error, either side may close first).
    pub async fn linger(&mut self, wait: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + wait;
        loop {
            match self.step(deadline).await? {
                Happened::Timeout | Happened::Closed | Happened::Exited => return Ok(()),
                _ => {}
            }
        }
    }

    /// Appends a SEND the runner held (or finds it again) and answers SEND_ACK.
    pub async fn ack(&mut self, send: &Send) -> Result<(), Failure> {
        let (seq, duplicate, _) = self.world.store(send);
        let ack = SendAck {
            request: send.request,
            seq,
            timestamp: TIMESTAMP,
            duplicate,
        };
        self.send(ack.into()).await
    }

    /// Waits for one thing: a frame (handled), the end of the connection, a line, the end of
    /// the process, or the deadline.
    async fn step(&mut self, deadline: Instant) -> Result<Happened, Failure> {
        let exited = self.client.exit_status().is_some();
        let happened = {
            let ended = self.client.ended();
            let conn = self.conn.as_mut().filter(|conn| conn.wire.is_some());
            let read = async {
                match conn {
                    Some(conn) => conn.read().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                frame = read => match frame? {
                    Some(raw) => Happened::Frame(raw),
                    None => Happened::Closed,
                },
                line = self.client.next_line(deadline) => {
                    if line { Happened::Line } else { Happened::Timeout }
                }
                () = ended, if !exited => Happened::Exited,
                () = tokio::time::sleep_until(deadline) => Happened::Timeout,
            }
        };
        match &happened {
            Happened::Frame(raw) => {
                let raw = raw.clone();
                self.on_frame(raw).await?;
            }
            Happened::Closed => self.drop_conn(),
            _ => {}
        }
        Ok(happened)
    }

    async fn on_frame(&mut self, raw: Bytes) -> Result<(), Failure> {
        let frame = Frame::decode(raw.clone())
            .map_err(|e| self.fail(format!("the client sent a malformed frame: {e}")))?;
        self.observe(&frame, &raw)?;
        self.respond(&frame).await
    }

    /// Checks a frame from the client against the rules every client frame obeys.
    fn observe(&mut self, frame: &Frame, raw: &Bytes) -> Result<(), Failure> {
        let now = Instant::now();
        let Some(conn) = &mut self.conn else {
            return Ok(());
        };
        let broken = |what: String| Err(Failure::new(what));
        // One encoding per frame: shortest varints, nothing after the known fields
        // ([NWP-2.2-2], [NWP-11-2]).
        if frame.to_bytes().map(|bytes| bytes == *raw) != Ok(true) {
            return broken(format!(
                "the client sent {:?} in a form that is not its canonical encoding: {} \
                 (NWP-2.2-2, NWP-11-2)",
                frame.frame_type(),
                hex(raw)
            ));
        }
        if conn.client_error.is_some() {
            return broken(format!(
                "the client sent {} after its own connection ERROR (NWP-10-1)",
                brief(frame)
            ));
        }
        if conn.error_at.is_some_and(|at| now > at + GRACE) {
            return broken(format!(
                "the client sent {} after the server's connection ERROR (NWP-5.5-1)",
                brief(frame)
            ));
        }
        let first = conn.received.is_empty();
        conn.received.push((now, frame.clone()));
        match frame {
            Frame::Hello(hello) if first => conn.hello = Some(hello.clone()),
            Frame::Hello(_) => return broken("a second HELLO on a connection (NWP-5.1-6)".into()),
            other if first => {
                return broken(format!(
                    "the client's first frame is {}, not HELLO (NWP-5.1-1)",
                    brief(other)
                ));
            }
            other if conn.ready.is_none() => {
                return broken(format!(
                    "the client sent {} after HELLO, before READY (NWP-5.3-4, NWP-5.1-2)",
                    brief(other)
                ));
            }
            _ => {}
        }
        let origin = frame.frame_type().origin();
        if matches!(
            origin,
            Some(natter_codec::frame::Origin::Server | natter_codec::frame::Origin::Link)
        ) {
            return broken(format!(
                "the client sent {}, a frame of the wrong side (NWP-5.3-4)",
                brief(frame)
            ));
        }
        if let Some(request) = frame.request()
            && !matches!(frame, Frame::Error(_))
        {
            if request == 0 {
                return broken(format!("{} with request id 0 (NWP-2.3-4)", brief(frame)));
            }
            if !conn.outstanding.insert(request) {
                return broken(format!(
                    "{} reuses request id {request}, still outstanding (NWP-2.3-4)",
                    brief(frame)
                ));
            }
            if conn.goaway_at.is_some_and(|at| now > at + GRACE) {
                return broken(format!(
                    "the client sent a new request, {}, after GOAWAY (NWP-5.4-2)",
                    brief(frame)
                ));
            }
        }
        match frame {
            Frame::Send(send) => {
                if send.client_msg_id == 0 {
                    return broken("a SEND with client_msg_id 0 (NWP-6.2.1-1)".into());
                }
                let kinds = [EventKind::MESSAGE, EventKind::EDIT, EventKind::DELETE];
                if !kinds.contains(&send.kind)
                    || (send.kind == EventKind::MESSAGE) != (send.target == 0)
                {
                    return broken(format!(
                        "a SEND of kind {:?} with target {} (NWP-6.2.1-2)",
                        send.kind, send.target
                    ));
                }
                self.world.sends.push(SendRecord {
                    at: now,
                    conn: conn.index,
                    send: send.clone(),
                });
            }
            Frame::Resume(resume) => {
                if conn.resumes.len() > conn.inbox_gaps {
                    return broken(format!(
                        "a second RESUME on the connection, after {:?}, with no inbox GAP \
                         between (NWP-6.2.9-2)",
                        conn.resumes
                    ));
                }
                conn.resumes.push(resume.after);
                self.world.ackable = self.world.ackable.max(resume.after);
            }
            Frame::Ack(ack) => {
                if ack.inbox_seq > self.world.ackable {
                    return broken(format!(
                        "the client acknowledged inbox_seq {}, but only {} had reached it \
                         (NWP-6.2.4-1)",
                        ack.inbox_seq, self.world.ackable
                    ));
                }
                self.world.acks.push((now, conn.index, ack.inbox_seq));
            }
            Frame::Typing(typing) => {
                let conversation = typing.conversation.to_string();
                if let Some(last) = conn.last_typing.insert(conversation, now)
                    && now < last + Duration::from_millis(900)
                {
                    return broken(format!(
                        "two TYPING to {} {:?} apart (NWP-6.2.7-1)",
                        typing.conversation,
                        now - last
                    ));
                }
            }
            Frame::Error(error) => {
                if !error.code.closes_connection() || error.request != 0 {
                    return broken(format!(
                        "the client sent ERROR {:?} for request {}; a client only closes with \
                         an ERROR of the connection (NWP-6.1.6-4)",
                        error.code, error.request
                    ));
                }
                conn.client_error = Some(error.clone());
            }
            _ => {}
        }
        Ok(())
    }

    /// Answers what the model answers.
    async fn respond(&mut self, frame: &Frame) -> Result<(), Failure> {
        if self.conn.as_ref().is_none_or(|conn| conn.silent) {
            return Ok(());
        }
        match frame {
            Frame::Ping(ping) => self.send(Pong { nonce: ping.nonce }.into()).await,
            Frame::Resume(resume) if self.world.auto_resume => {
                self.replay(resume.request, resume.after).await
            }
            Frame::Send(send) => self.react(send).await,
            Frame::History(history) => {
                let events = self
                    .world
                    .logs
                    .get(&history.conversation.to_string())
                    .cloned()
                    .unwrap_or_default();
                let limit = history.limit.clamp(1, 200) as usize;
                let (page, more): (Vec<Event>, bool) = if history.direction == Direction::FORWARD {
                    let after: Vec<Event> = events
                        .into_iter()
                        .filter(|e| e.seq > history.anchor)
                        .collect();
                    let more = after.len() > limit;
                    (after.into_iter().take(limit).collect(), more)
                } else {
                    let before: Vec<Event> = events
                        .into_iter()
                        .filter(|e| history.anchor == 0 || e.seq < history.anchor)
                        .collect();
                    let skip = before.len().saturating_sub(limit);
                    (before[skip..].to_vec(), skip > 0)
                };
                let page = HistoryPage {
                    request: history.request,
                    conversation: history.conversation.clone(),
                    more,
                    events: page,
                };
                self.send(page.into()).await
            }
            Frame::Conversations(list) => {
                let conversations = self
                    .world
                    .logs
                    .iter()
                    .map(|(conversation, log)| Summary {
                        conversation: conversation.as_str().into(),
                        kind: ConversationKind::DIRECT,
                        title: "".into(),
                        last_seq: log.len() as u64,
                        last_timestamp: TIMESTAMP,
                        read_seq: 0,
                        unread: 0,
                    })
                    .collect();
                let answer = ConversationList {
                    request: list.request,
                    next_cursor: Bytes::new(),
                    conversations,
                };
                self.send(answer.into()).await
            }
            Frame::Mark(mark) => {
                self.send(
                    Done {
                        request: mark.request,
                    }
                    .into(),
                )
                .await
            }
            Frame::PresenceSubscribe(subscribe) => {
                let done = Done {
                    request: subscribe.request,
                };
                self.send(done.into()).await
            }
            Frame::GroupCreate(_) | Frame::GroupUpdate(_) | Frame::GroupGet(_) => {
                let request = frame.request().unwrap_or_default();
                let error = natter_codec::frame::Error::new(
                    request,
                    ErrorCode::INVALID_REQUEST,
                    "no groups here",
                );
                self.send(error.into()).await
            }
            _ => Ok(()),
        }
    }

    async fn react(&mut self, send: &Send) -> Result<(), Failure> {
        let body = String::from_utf8_lossy(&send.body).into_owned();
        let reaction = self
            .world
            .reactions
            .get_mut(&body)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Reaction::Ack);
        match reaction {
            Reaction::Hold => Ok(()),
            Reaction::Store => {
                self.world.store(send);
                Ok(())
            }
            Reaction::Error {
                code,
                retry_after_ms,
            } => {
                let mut error = natter_codec::frame::Error::new(send.request, code, "scripted");
                error.retry_after_ms = retry_after_ms;
                self.send(error.into()).await
            }
            Reaction::Ack => {
                let (seq, duplicate, entry) = self.world.store(send);
                let ack = SendAck {
                    request: send.request,
                    seq,
                    timestamp: TIMESTAMP,
                    duplicate,
                };
                self.send(ack.into()).await?;
                let live = self.conn.as_ref().is_some_and(|conn| conn.synced);
                match entry {
                    Some(inbox_seq) if live && self.world.echo => self.deliver(inbox_seq).await,
                    _ => Ok(()),
                }
            }
        }
    }

    // The end.

    /// Waits (serving the connection) until the client printed every line the rules require
    /// of what happened, then checks its whole output:
    ///
    /// - every inbox entry it acknowledged was shown first ([NWP-6.2.4-1]), with its body;
    /// - no event was shown twice ([NWP-6.2.3-3]);
    /// - no send was reported twice, and each with the seq the server gave it;
    /// - the token appears nowhere in what it printed ([NWP-8.1-2]);
    /// - every line of stdout is a JSON object with an `event` (the contract).
    pub async fn finish(mut self) -> Result<(), Failure> {
        let acked = self.world.last_ack();
        let required: Vec<(String, u64)> = self
            .world
            .delivered
            .range(..=acked)
            .filter(|(_, d)| known_kind(d.kind))
            .map(|(_, d)| (d.conversation.clone(), d.seq))
            .collect();
        let shown = |h: &Self| required.iter().all(|(c, seq)| h.shown(c, *seq));
        if !shown(&self) {
            let wait = Duration::from_secs(2);
            let _ = self
                .serve_until(wait, "the events acknowledged", shown)
                .await;
        }
        self.client.kill();
        self.client.poll();
        if let Some((conversation, seq)) = required.iter().find(|(c, seq)| !self.shown(c, *seq)) {
            return Err(self.fail(format!(
                "the client acknowledged inbox entries up to {acked} but never showed the event \
                 {conversation} seq {seq} among them (NWP-6.2.4-1)"
            )));
        }
        self.check_output()
    }

    /// Whether this run of the client, or an earlier one, showed the event.
    pub fn shown(&self, conversation: &str, seq: u64) -> bool {
        self.client.printed(conversation, seq)
            || self.shown_before.contains(&(conversation.to_owned(), seq))
    }

    fn check_output(&self) -> Result<(), Failure> {
        if let Some(line) = self.client.bad_lines.first() {
            return Err(self.fail(format!(
                "a line of stdout is not a JSON object with an \"event\": {line:?} (README.md)"
            )));
        }
        let mut shown: HashMap<(String, u64), usize> = HashMap::new();
        for line in self.client.events("message") {
            let conversation = line.str("conversation").to_owned();
            let Some(seq) = line.u64("seq") else {
                return Err(self.fail(format!("a message line without a seq: {}", line.value)));
            };
            let count = shown.entry((conversation.clone(), seq)).or_default();
            *count += 1;
            if *count == 2 {
                return Err(self.fail(format!(
                    "the client showed {conversation} seq {seq} twice (NWP-6.2.3-3)"
                )));
            }
            if let Some(event) = self.world.event(&conversation, seq)
                && event.kind == EventKind::MESSAGE
                && line.value.get("body").is_some()
                && line.str("body").as_bytes() != &event.body[..]
            {
                return Err(self.fail(format!(
                    "the client showed {conversation} seq {seq} with body {:?}, not {:?}",
                    line.str("body"),
                    String::from_utf8_lossy(&event.body)
                )));
            }
        }
        let mut sent: HashMap<String, usize> = HashMap::new();
        for line in self.client.events("sent") {
            let body = line.str("body").to_owned();
            let count = sent.entry(body.clone()).or_default();
            *count += 1;
            if *count == 2 {
                return Err(self.fail(format!("the client reported {body:?} sent twice")));
            }
            let seq = self.world.sends_of(&body).find_map(|record| {
                let key = (
                    record.send.conversation.to_string(),
                    record.send.client_msg_id,
                );
                self.world.dedup.get(&key).copied()
            });
            if seq.is_some() && line.u64("seq") != seq {
                return Err(self.fail(format!(
                    "the client reported {body:?} sent at seq {:?}; the server gave seq {seq:?}",
                    line.u64("seq")
                )));
            }
        }
        if self.client.leaked_token() {
            return Err(self.fail("the client printed its token (NWP-8.1-2)"));
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.client.kill();
    }
}

/// Whether a client must show events of this kind (it may skip kinds it does not know,
/// [NWP-4.1-1]).
fn known_kind(kind: EventKind) -> bool {
    kind.0 <= EventKind::GROUP_CREATED.0
}

/// A connection that never was: scenarios ask for one only after accepting one, and this
/// keeps [`Harness::conn`] total without a panic.
fn no_conn() -> &'static Conn {
    static NONE: std::sync::OnceLock<Conn> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Conn::new(0, None))
}
