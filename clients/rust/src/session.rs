//! The sans-IO client session: protocol state without sockets or clocks.
//!
//! Like quinn-proto, the session never does I/O and never reads the clock. The driver (the
//! async [`crate::Client`], or a test) feeds it with `now` and frames, and drains what it
//! produced:
//!
//! 1. When a transport opens call [`Session::connected`]; for every frame received call
//!    [`Session::handle_frame`]; when the transport ends call [`Session::disconnected`].
//! 2. Application calls go in through [`Session::submit`] and [`Session::typing`].
//! 3. After each input, drain [`Session::poll_transmit`] (write the frames in order),
//!    [`Session::poll_event`], [`Session::poll_completion`] and [`Session::poll_disconnect`],
//!    then sleep until [`Session::poll_timeout`] and call [`Session::handle_timeout`].
//!
//! What the session guarantees across reconnects: every request gets exactly one completion;
//! idempotent requests (sends, marks, queries) are repeated after a reconnect with the same
//! client_msg_id until answered, in submission order; the inbox resumes after the last
//! processed inbox_seq; deliveries are deduplicated by inbox_seq and by (conversation, seq);
//! and gaps are repaired from history before later events of that conversation are shown.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use natter_codec::frame::Origin;
use natter_codec::frame::{self, Ack, Hello, Ping, Pong, Resume, Typing};
use natter_codec::types::{self, Direction, Features};
use natter_codec::{ErrorCode, Frame, MAX_FRAME_SIZE_CAP, VERSION};

use crate::cursor::Cursor;
use crate::event::{ChatEvent, ConnectionState, Event};
use crate::request::{ConversationPage, GroupInfo, HistoryPage, Reply, Request, Sent};
use crate::{Error, Result};

/// The largest value a varint can carry, hence the largest valid client_msg_id.
const MAX_VARINT: u64 = (1 << 62) - 1;

/// The smallest `max_frame_size` a peer may announce ([NWP-3-4]).
const MIN_MAX_FRAME_SIZE: u64 = 4_096;

/// At most one TYPING a second goes to a conversation ([NWP-6.2.7-1]).
const TYPING_INTERVAL: Duration = Duration::from_secs(1);

/// Tunables of a [`Session`]; the defaults suit most applications.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The credential sent in HELLO.
    pub token: Bytes,
    /// Client name and version, for the server's logs.
    pub agent: String,
    /// Optional protocol features to ask for.
    pub features: Features,
    /// The largest frame this client accepts. Above the 64 KiB default of the protocol so a
    /// history page of large messages still fits in one frame; the codec checks it before
    /// buffering, so it bounds memory per connection.
    pub max_frame_size: u64,
    /// Give up on a connection whose READY has not come within this time.
    pub handshake_timeout: Duration,
    /// Heartbeat to assume until READY says otherwise.
    pub default_heartbeat: Duration,
    /// Send a cumulative ACK at most this long after the first unacknowledged delivery.
    pub ack_delay: Duration,
    /// ... or as soon as this many deliveries are unacknowledged.
    pub ack_batch: u64,
    /// At most this many requests wait for an answer; [`Session::submit`] refuses more.
    pub max_pending: usize,
    /// At most this many requests are on the wire at once; the rest wait their turn in
    /// order. Stay below the server's per-connection limit (256 by default).
    pub max_in_flight: usize,
    /// Events per HISTORY page when repairing a gap; 50 bodies of the 16 KiB maximum still
    /// fit in a 1 MiB frame and in the server's per-connection outbound budget.
    pub repair_page: u64,
    /// How often a request answered UNAVAILABLE is repeated. RATE_LIMITED is flow
    /// control, not failure: it pauses requests and is repeated for as long as it lasts.
    pub max_retries: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            token: Bytes::new(),
            agent: concat!("natter-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            features: Features::ALL,
            max_frame_size: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            default_heartbeat: Duration::from_secs(30),
            ack_delay: Duration::from_millis(100),
            ack_batch: 64,
            max_pending: 1024,
            max_in_flight: 128,
            repair_page: 50,
            max_retries: 5,
        }
    }
}

/// Names one application request until its completion comes out of
/// [`Session::poll_completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The session wants the transport closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// Close it and connect again (after [`Session::take_reconnect_hint`], or within
    /// [`Session::take_reconnect_window`], if any).
    Reconnect(String),
    /// Close it and stop: reconnecting cannot help (bad or expired token, no common version).
    Fatal(Error),
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offline,
    Handshake { deadline: Instant },
    Resuming { request: u64 },
    Live,
    Closed,
}

/// Per-transport state, present from READY until the transport ends.
#[derive(Debug)]
struct Link {
    heartbeat: Duration,
    last_sent: Instant,
    last_received: Instant,
    ping: Option<u64>,
    /// The server's `max_frame_size`: no longer frame may be written ([NWP-5.1-5]).
    max_frame_size: u64,
}

/// The last TYPING written to a conversation, and the state waiting for its second to end.
#[derive(Debug)]
struct TypingState {
    sent_at: Instant,
    pending: Option<bool>,
}

/// An application request waiting for its answer.
#[derive(Debug)]
struct Pending {
    request: Request,
    /// The wire request id while it is written on the current transport.
    wire: Option<u64>,
    /// Not to be (re)sent before this, after a retry-after.
    not_before: Option<Instant>,
    retries: u32,
}

/// What a wire request id on the current transport stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WireUse {
    User(Ticket),
    Resume,
    Repair(String),
    Scan(u64),
}

/// A conversation being refilled from history: forward pages from the last seq held.
#[derive(Debug, Default)]
struct Repair {
    /// Keep reading at least up to here.
    until: u64,
    wire: Option<u64>,
    not_before: Option<Instant>,
}

/// A walk over CONVERSATIONS after an inbox gap, to find which conversations to repair.
#[derive(Debug, Default)]
struct Scan {
    /// A later gap restarts the walk; answers to an earlier walk only start repairs.
    generation: u64,
    cursor: Bytes,
    wire: Option<u64>,
    not_before: Option<Instant>,
}

/// What the session knows of one conversation.
#[derive(Debug, Default, Clone, Copy)]
struct Conversation {
    /// The last seq delivered, with every seq before it delivered too (or unknown history).
    last: u64,
    /// Delivered live without inbox entries (a large group): caught up after reconnects.
    live_only: bool,
}

/// The protocol state of one client across any number of transports.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    link: Option<Link>,
    identity: Option<(String, String)>,
    next_wire: u64,
    next_ticket: u64,
    next_nonce: u64,
    pending: BTreeMap<Ticket, Pending>,
    wire: HashMap<u64, WireUse>,
    inbox: Option<u64>,
    acked: u64,
    ack_due: Option<Instant>,
    conversations: HashMap<String, Conversation>,
    repairs: BTreeMap<String, Repair>,
    scan: Option<Scan>,
    scan_generation: u64,
    drain_deadline: Option<Instant>,
    /// RATE_LIMITED: no application request is written before this.
    throttled_until: Option<Instant>,
    reconnect_hint: Option<Duration>,
    /// GOAWAY's `reconnect_ms`: reconnect after a random delay within it.
    reconnect_window: Option<Duration>,
    typing: HashMap<String, TypingState>,
    cursor_dirty: bool,
    transmit: VecDeque<Frame>,
    events: VecDeque<Event>,
    completions: VecDeque<(Ticket, Result<Reply>)>,
    disconnect: Option<Disconnect>,
}

impl Session {
    /// A session that resumes from `cursor` once connected.
    pub fn new(config: SessionConfig, cursor: Cursor) -> Self {
        let conversations = cursor
            .conversations
            .into_iter()
            .map(|(id, last)| {
                let state = Conversation {
                    last,
                    live_only: false,
                };
                (id, state)
            })
            .collect();
        Self {
            config,
            phase: Phase::Offline,
            link: None,
            identity: None,
            next_wire: 1,
            next_ticket: 1,
            next_nonce: 1,
            pending: BTreeMap::new(),
            wire: HashMap::new(),
            inbox: cursor.inbox,
            acked: 0,
            ack_due: None,
            conversations,
            repairs: BTreeMap::new(),
            scan: None,
            scan_generation: 0,
            drain_deadline: None,
            throttled_until: None,
            reconnect_hint: None,
            reconnect_window: None,
            typing: HashMap::new(),
            cursor_dirty: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            completions: VecDeque::new(),
            disconnect: None,
        }
    }

    // Inputs.

    /// A transport is open: the session writes HELLO and waits for READY.
    pub fn connected(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        self.reset_transport();
        self.phase = Phase::Handshake {
            deadline: now + self.config.handshake_timeout,
        };
        self.transmit.push_back(
            Hello {
                min_version: VERSION,
                max_version: VERSION,
                features: self.config.features,
                max_frame_size: self.config.max_frame_size,
                token: self.config.token.clone(),
                agent: self.config.agent.as_str().into(),
            }
            .into(),
        );
    }

    /// The transport ended. Requests safe to repeat wait for the next transport; the others
    /// complete with [`Error::ConnectionLost`].
    pub fn disconnected(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Offline;
        for (_, used) in std::mem::take(&mut self.wire) {
            if let WireUse::User(ticket) = used {
                let repeatable = self
                    .pending
                    .get(&ticket)
                    .is_some_and(|pending| pending.request.is_idempotent());
                if !repeatable {
                    self.complete(ticket, Err(Error::ConnectionLost));
                }
            }
        }
        self.reset_transport();
    }

    /// Takes one frame from the server.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) {
        if let Some(link) = &mut self.link {
            link.last_received = now;
        }
        match frame {
            Frame::Ready(ready) => self.on_ready(now, ready),
            Frame::Error(error) => self.on_error(now, error),
            Frame::Goaway(goaway) => self.on_goaway(now, goaway),
            Frame::Ping(ping) => self.write(now, Pong { nonce: ping.nonce }.into()),
            Frame::Pong(pong) => {
                if let Some(link) = &mut self.link
                    && link.ping == Some(pong.nonce)
                {
                    link.ping = None;
                }
            }
            Frame::Deliver(deliver) => self.on_deliver(now, deliver),
            Frame::Synced(synced) => self.on_synced(now, synced),
            Frame::Gap(gap) => self.on_gap(now, gap),
            Frame::Receipt(receipt) => self.events.push_back(Event::Receipt {
                conversation: receipt.conversation.to_string(),
                user: receipt.user.to_string(),
                delivered: receipt.delivered,
                read: receipt.read,
            }),
            Frame::TypingUpdate(typing) => self.events.push_back(Event::Typing {
                conversation: typing.conversation.to_string(),
                user: typing.user.to_string(),
                active: typing.active,
            }),
            Frame::Presence(presence) => self.events.push_back(Event::Presence {
                user: presence.user.to_string(),
                status: presence.status,
                last_seen: presence.last_seen,
            }),
            Frame::SendAck(ack) => {
                let sent = Sent {
                    seq: ack.seq,
                    timestamp: ack.timestamp,
                    duplicate: ack.duplicate,
                };
                self.on_answer(now, ack.request, Reply::Sent(sent));
            }
            Frame::Done(done) => self.on_answer(now, done.request, Reply::Done),
            Frame::HistoryPage(page) => self.on_history(now, page),
            Frame::ConversationList(list) => self.on_conversation_list(now, list),
            Frame::GroupInfo(info) => {
                let group = GroupInfo::from_wire(&info.conversation, &info.title, info.members);
                self.on_answer(now, info.request, Reply::Group(group));
            }
            // A frame of a later version is skipped by its length ([NWP-3-6]); a client or
            // link frame is not unknown, it is a violation ([NWP-5.3-4]).
            other => {
                if matches!(
                    other.frame_type().origin(),
                    Some(Origin::Client | Origin::Link)
                ) {
                    let message = format!("{:?} is not a server frame", other.frame_type());
                    self.violation(now, message);
                }
            }
        }
    }

    /// Runs the timers: handshake and heartbeat deadlines, pings, coalesced ACKs, retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Handshake { deadline } = self.phase
            && now >= deadline
        {
            self.request_disconnect(Disconnect::Reconnect("no READY in time".into()));
        }
        if let Some(link) = &self.link {
            if now >= link.last_received + link.heartbeat * 2 {
                self.request_disconnect(Disconnect::Reconnect("server silent".into()));
            } else if link.ping.is_none()
                && now >= link.last_sent.min(link.last_received) + link.heartbeat / 2
            {
                let nonce = self.next_nonce;
                self.next_nonce += 1;
                self.write(now, Ping { nonce }.into());
                if let Some(link) = &mut self.link {
                    link.ping = Some(nonce);
                }
            }
        }
        if self.drain_deadline.is_some_and(|deadline| now >= deadline) {
            self.request_disconnect(Disconnect::Reconnect("server draining".into()));
        }
        if self.ack_due.is_some_and(|due| now >= due) {
            self.flush_ack(now);
        }
        self.flush_typing(now);
        self.flush_requests(now);
    }

    /// Queues a request; it is written as soon as a connection is ready.
    ///
    /// Gives the request back when [`SessionConfig::max_pending`] requests already wait, so
    /// the caller can hold it (and stop taking more) until completions make room.
    pub fn submit(&mut self, now: Instant, request: Request) -> Result<Ticket, Request> {
        if !self.can_submit() {
            return Err(request);
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        if self.phase == Phase::Closed {
            self.completions.push_back((ticket, Err(Error::Closed)));
            return Ok(ticket);
        }
        if let Err(error) = validate(&request) {
            self.completions.push_back((ticket, Err(error)));
            return Ok(ticket);
        }
        let pending = Pending {
            request,
            wire: None,
            not_before: None,
            retries: 0,
        };
        self.pending.insert(ticket, pending);
        self.flush_requests(now);
        Ok(ticket)
    }

    /// Tells the conversation whether the user is typing; dropped while offline, since a
    /// typing indicator is only worth anything live.
    ///
    /// At most one TYPING a second goes to a conversation ([NWP-6.2.7-1]): a change within
    /// the second is written when it ends, the latest state winning, so the application may
    /// call this on every keystroke.
    pub fn typing(&mut self, now: Instant, conversation: &str, active: bool) {
        if !self.writable() {
            return;
        }
        if let Some(state) = self.typing.get_mut(conversation)
            && now < state.sent_at + TYPING_INTERVAL
        {
            state.pending = Some(active);
            return;
        }
        let state = TypingState {
            sent_at: now,
            pending: None,
        };
        self.typing.insert(conversation.to_owned(), state);
        self.write_typing(now, conversation, active);
    }

    fn write_typing(&mut self, now: Instant, conversation: &str, active: bool) {
        let typing = Typing {
            conversation: conversation.into(),
            active,
        };
        self.write(now, typing.into());
    }

    /// Writes the typing states whose second is over, and forgets the quiet ones.
    fn flush_typing(&mut self, now: Instant) {
        let writable = self.writable();
        let due: Vec<(String, Option<bool>)> = self
            .typing
            .iter()
            .filter(|(_, state)| now >= state.sent_at + TYPING_INTERVAL)
            .map(|(conversation, state)| (conversation.clone(), state.pending))
            .collect();
        for (conversation, pending) in due {
            match pending {
                Some(active) if writable => {
                    let state = TypingState {
                        sent_at: now,
                        pending: None,
                    };
                    self.typing.insert(conversation.clone(), state);
                    self.write_typing(now, &conversation, active);
                }
                _ => {
                    self.typing.remove(&conversation);
                }
            }
        }
    }

    /// Acknowledges every delivery processed so far at once, before a clean close.
    pub fn flush_acks(&mut self, now: Instant) {
        self.flush_ack(now);
    }

    /// Stops for good: every waiting request completes with `error` (or [`Error::Closed`]).
    ///
    /// The cursor is marked for saving, so a restart resumes after what was processed even
    /// if its ACK never left.
    pub fn close(&mut self, error: Option<Error>) {
        self.phase = Phase::Closed;
        self.cursor_dirty = true;
        let error = error.unwrap_or(Error::Closed);
        for (ticket, _) in std::mem::take(&mut self.pending) {
            self.completions.push_back((ticket, Err(error.clone())));
        }
        self.events
            .push_back(Event::Connection(ConnectionState::Closed {
                error: (error != Error::Closed).then_some(error),
            }));
        self.reset_transport();
    }

    // Outputs.

    /// The next frame to write, in order.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next answered request: exactly one per [`Ticket`].
    pub fn poll_completion(&mut self) -> Option<(Ticket, Result<Reply>)> {
        self.completions.pop_front()
    }

    /// Whether the session wants the transport closed, and why.
    pub fn poll_disconnect(&mut self) -> Option<Disconnect> {
        self.disconnect.take()
    }

    /// The server's wish for the least reconnect delay (a retry-after), once.
    pub fn take_reconnect_hint(&mut self) -> Option<Duration> {
        self.reconnect_hint.take()
    }

    /// GOAWAY's window, once: reconnect after a random delay between 0 and this, so that
    /// the clients of a draining server do not all come back at once ([NWP-5.4-2]).
    pub fn take_reconnect_window(&mut self) -> Option<Duration> {
        self.reconnect_window.take()
    }

    /// When to call [`Session::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let handshake = match self.phase {
            Phase::Handshake { deadline } => Some(deadline),
            _ => None,
        };
        let heartbeat = self.link.as_ref().map(|link| {
            let dead = link.last_received + link.heartbeat * 2;
            match link.ping {
                Some(_) => dead,
                None => dead.min(link.last_sent.min(link.last_received) + link.heartbeat / 2),
            }
        });
        let retries = self.writable().then(|| self.next_retry()).flatten();
        let typing = self
            .typing
            .values()
            .map(|state| state.sent_at + TYPING_INTERVAL)
            .min();
        [
            handshake,
            heartbeat,
            self.ack_due,
            self.drain_deadline,
            retries,
            typing,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The cursor to persist, when it moved since the last call.
    pub fn take_cursor(&mut self) -> Option<Cursor> {
        std::mem::take(&mut self.cursor_dirty).then(|| self.cursor())
    }

    /// How far this device has read.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            inbox: self.inbox,
            conversations: self
                .conversations
                .iter()
                .map(|(id, state)| (id.clone(), state.last))
                .collect(),
        }
    }

    /// Whether [`Session::submit`] takes another request now.
    pub fn can_submit(&self) -> bool {
        self.pending.len() < self.config.max_pending
    }

    /// Whether the session stopped for good.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the inbox replay is done and events are live.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// The authenticated user and device, once a READY has come.
    pub fn identity(&self) -> Option<(&str, &str)> {
        self.identity
            .as_ref()
            .map(|(user, device)| (user.as_str(), device.as_str()))
    }

    /// The number of requests waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    // Handlers.

    fn on_ready(&mut self, now: Instant, ready: frame::Ready) {
        if !matches!(self.phase, Phase::Handshake { .. }) {
            // A READY in the wrong state is a violation, not a renegotiation ([NWP-5.3-4]).
            return self.violation(now, "a second READY".into());
        }
        if ready.version != VERSION {
            // Outside what HELLO offered: close, and do not offer it again ([NWP-5.1-3]).
            let message = format!("READY version {}, HELLO offered {VERSION}", ready.version);
            self.write_error(now, ErrorCode::PROTOCOL_VIOLATION, &message);
            let error = Error::server(ErrorCode::UNSUPPORTED_VERSION, 0, &message);
            return self.request_disconnect(Disconnect::Fatal(error));
        }
        if ready.max_frame_size < MIN_MAX_FRAME_SIZE {
            let message = format!("READY max_frame_size {}", ready.max_frame_size);
            return self.violation(now, message);
        }
        let heartbeat = match ready.heartbeat_ms {
            0 => self.config.default_heartbeat,
            ms => Duration::from_millis(ms),
        };
        self.link = Some(Link {
            heartbeat,
            last_sent: now,
            last_received: now,
            ping: None,
            max_frame_size: ready.max_frame_size.min(MAX_FRAME_SIZE_CAP),
        });
        self.identity = Some((ready.user.to_string(), ready.device.to_string()));
        self.events
            .push_back(Event::Connection(ConnectionState::Connected {
                user: ready.user.to_string(),
                device: ready.device.to_string(),
                session: ready.session,
            }));
        // A new device starts at the head: history, not the inbox, holds the past.
        let after = *self.inbox.get_or_insert(ready.inbox_head);
        self.acked = 0;
        let request = self.wire_id(WireUse::Resume);
        self.write(now, Resume { request, after }.into());
        self.phase = Phase::Resuming { request };
        self.flush_requests(now);
    }

    fn on_error(&mut self, now: Instant, error: frame::Error) {
        let code = error.code;
        let failure = Error::server(code, error.retry_after_ms, &error.message);
        if error.request == 0 || code.closes_connection() {
            if let Some(retry_after) = failure.retry_after() {
                self.reconnect_hint = Some(retry_after);
            }
            let fatal = matches!(
                code,
                ErrorCode::UNAUTHENTICATED
                    | ErrorCode::TOKEN_EXPIRED
                    | ErrorCode::UNSUPPORTED_VERSION
            );
            self.request_disconnect(if fatal {
                Disconnect::Fatal(failure)
            } else {
                Disconnect::Reconnect(format!("server error {code}: {}", error.message))
            });
            return;
        }
        let Some(used) = self.wire.remove(&error.request) else {
            return;
        };
        let retry = matches!(code, ErrorCode::RATE_LIMITED | ErrorCode::UNAVAILABLE);
        let not_before = now + failure.retry_after().unwrap_or(Duration::from_millis(200));
        match used {
            WireUse::User(ticket) if code == ErrorCode::RATE_LIMITED => {
                // Pause every request, not just this one, so the ones behind it keep
                // their order.
                if let Some(pending) = self.pending.get_mut(&ticket) {
                    pending.wire = None;
                }
                let until = now + failure.retry_after().unwrap_or(Duration::from_millis(20));
                self.throttled_until = Some(self.throttled_until.map_or(until, |t| t.max(until)));
            }
            WireUse::User(ticket) => {
                let max_retries = self.config.max_retries;
                match self.pending.get_mut(&ticket) {
                    Some(pending) if retry && pending.retries < max_retries => {
                        pending.retries += 1;
                        pending.wire = None;
                        pending.not_before = Some(not_before);
                    }
                    _ => self.complete(ticket, Err(failure)),
                }
                self.flush_requests(now);
            }
            WireUse::Resume => {
                self.reconnect_hint = failure.retry_after();
                self.request_disconnect(Disconnect::Reconnect(format!("RESUME failed: {code}")));
            }
            WireUse::Repair(conversation) => match self.repairs.get_mut(&conversation) {
                Some(repair) if retry => {
                    repair.wire = None;
                    repair.not_before = Some(not_before);
                }
                _ => {
                    self.repairs.remove(&conversation);
                    self.events.push_back(Event::RepairFailed {
                        conversation,
                        error: failure,
                    });
                }
            },
            WireUse::Scan(_) => match &mut self.scan {
                Some(scan) if retry => {
                    scan.wire = None;
                    scan.not_before = Some(not_before);
                }
                _ => {
                    self.scan = None;
                    self.events.push_back(Event::RepairFailed {
                        conversation: String::new(),
                        error: failure,
                    });
                }
            },
        }
    }

    fn on_goaway(&mut self, now: Instant, goaway: frame::Goaway) {
        let delay = Duration::from_millis(goaway.reconnect_ms);
        self.reconnect_window = Some(delay);
        // The server answers what is in flight, then closes; a deadline covers one that
        // never does.
        self.drain_deadline = Some(now + Duration::from_secs(5));
        self.events
            .push_back(Event::Connection(ConnectionState::GoingAway {
                reconnect_after: delay,
            }));
    }

    fn on_deliver(&mut self, now: Instant, deliver: frame::Deliver) {
        if deliver.inbox_seq > 0 {
            let processed = self.inbox.unwrap_or(0);
            if deliver.inbox_seq <= processed {
                return;
            }
            if deliver.inbox_seq > processed + 1 {
                // Entries went missing without a GAP frame: the same repair as with one.
                self.skip_inbox(processed + 1, deliver.inbox_seq - 1);
            }
            self.inbox = Some(deliver.inbox_seq);
            self.ack_due.get_or_insert(now + self.config.ack_delay);
            if deliver.inbox_seq - self.acked >= self.config.ack_batch {
                self.flush_ack(now);
            }
        } else {
            self.conversations
                .entry(deliver.conversation.to_string())
                .or_default()
                .live_only = true;
        }
        self.accept(now, &deliver.conversation, deliver.event, false);
    }

    fn on_synced(&mut self, now: Instant, synced: frame::Synced) {
        if self.phase
            != (Phase::Resuming {
                request: synced.request,
            })
        {
            return;
        }
        self.wire.remove(&synced.request);
        self.phase = Phase::Live;
        self.inbox = Some(self.inbox.unwrap_or(0).max(synced.inbox_head));
        self.events
            .push_back(Event::Connection(ConnectionState::Synced {
                inbox_head: synced.inbox_head,
            }));
        // Large groups have no inbox entries to replay: catch them up from history.
        let live_only: Vec<String> = self
            .conversations
            .iter()
            .filter(|(_, state)| state.live_only)
            .map(|(id, _)| id.clone())
            .collect();
        for conversation in live_only {
            self.repairs.entry(conversation).or_default();
        }
        self.flush_ack(now);
        self.flush_requests(now);
    }

    fn on_gap(&mut self, now: Instant, gap: frame::Gap) {
        let conversation = (!gap.conversation.is_empty()).then(|| gap.conversation.to_string());
        self.events.push_back(Event::Gap {
            conversation: conversation.clone(),
            from: gap.from,
            to: gap.to,
        });
        match conversation {
            Some(conversation) => self.start_repair(conversation, gap.to),
            None => {
                self.inbox = Some(self.inbox.unwrap_or(0).max(gap.to));
                self.start_scan();
            }
        }
        self.flush_requests(now);
    }

    /// Gives up on inbox entries `from..=to` and finds their events in history instead.
    ///
    /// Whether the entries were pruned (a GAP before a replay) or dropped by a slow-consumer
    /// policy (a GAP while live), every event they named is in its conversation's history
    /// after the last seq delivered, so one repair covers both; and unlike a second RESUME,
    /// reading history is paced by the client, so a slow reader cannot overflow again.
    fn skip_inbox(&mut self, from: u64, to: u64) {
        self.events.push_back(Event::Gap {
            conversation: None,
            from,
            to,
        });
        self.start_scan();
    }

    fn start_scan(&mut self) {
        self.scan_generation += 1;
        self.scan = Some(Scan {
            generation: self.scan_generation,
            ..Scan::default()
        });
    }

    fn on_answer(&mut self, now: Instant, request: u64, reply: Reply) {
        match self.wire.get(&request) {
            Some(WireUse::User(ticket)) => {
                let ticket = *ticket;
                self.wire.remove(&request);
                self.complete(ticket, Ok(reply));
                // The window has room for the next request.
                self.flush_requests(now);
            }
            Some(_) => {
                // An internal request answered with the wrong frame: read it again.
                self.disown(request);
                self.flush_requests(now);
            }
            None => {}
        }
    }

    fn on_history(&mut self, now: Instant, page: frame::HistoryPage) {
        let Some(WireUse::Repair(conversation)) = self.wire.get(&page.request).cloned() else {
            let events = page
                .events
                .into_iter()
                .map(|event| ChatEvent::from_wire(&page.conversation, event))
                .collect();
            let reply = HistoryPage {
                conversation: page.conversation.to_string(),
                more: page.more,
                events,
            };
            return self.on_answer(now, page.request, Reply::History(reply));
        };
        self.wire.remove(&page.request);
        let before = self.last_seq(&conversation);
        for event in page.events {
            self.accept(now, &conversation, event, true);
        }
        let through = self.last_seq(&conversation);
        let until = self
            .repairs
            .get(&conversation)
            .map_or(0, |repair| repair.until);
        if page.more || through < until {
            if through == before {
                self.repairs.remove(&conversation);
                let error = Error::HistoryIncomplete { through, until };
                self.events.push_back(Event::RepairFailed {
                    conversation,
                    error,
                });
            } else if let Some(repair) = self.repairs.get_mut(&conversation) {
                repair.wire = None;
            }
        } else {
            self.repairs.remove(&conversation);
            self.cursor_dirty = true;
            self.events.push_back(Event::Repaired {
                conversation,
                through,
            });
        }
        self.flush_requests(now);
    }

    fn on_conversation_list(&mut self, now: Instant, list: frame::ConversationList) {
        let Some(WireUse::Scan(generation)) = self.wire.get(&list.request).cloned() else {
            let reply = ConversationPage {
                next_cursor: list.next_cursor,
                conversations: list.conversations.into_iter().map(Into::into).collect(),
            };
            return self.on_answer(now, list.request, Reply::Conversations(reply));
        };
        self.wire.remove(&list.request);
        for summary in list.conversations {
            if summary.last_seq > self.last_seq(&summary.conversation) {
                self.start_repair(summary.conversation.to_string(), summary.last_seq);
            }
        }
        if let Some(scan) = self
            .scan
            .as_mut()
            .filter(|scan| scan.generation == generation)
        {
            if list.next_cursor.is_empty() {
                self.scan = None;
            } else {
                scan.cursor = list.next_cursor;
                scan.wire = None;
            }
        }
        self.flush_requests(now);
    }

    // Helpers.

    /// Shows one conversation event unless it is a duplicate or comes after a hole, which
    /// it opens a repair for instead: the application sees each conversation in seq order.
    fn accept(
        &mut self,
        now: Instant,
        conversation: &str,
        event: types::Event,
        from_history: bool,
    ) {
        let state = self
            .conversations
            .entry(conversation.to_owned())
            .or_default();
        let last = state.last;
        if event.seq <= last {
            return;
        }
        if !from_history {
            if let Some(repair) = self.repairs.get_mut(conversation) {
                repair.until = repair.until.max(event.seq);
                return;
            }
            // A conversation first seen while inbox entries are being recovered may have
            // lost its beginning in them.
            let known_start = last > 0 || self.scan.is_some();
            if known_start && event.seq > last + 1 {
                self.events.push_back(Event::Gap {
                    conversation: Some(conversation.to_owned()),
                    from: last + 1,
                    to: event.seq - 1,
                });
                self.start_repair(conversation.to_owned(), event.seq);
                self.flush_requests(now);
                return;
            }
        }
        state.last = event.seq;
        let event = ChatEvent::from_wire(conversation, event);
        self.events.push_back(Event::from_chat(event));
    }

    fn start_repair(&mut self, conversation: String, until: u64) {
        let repair = self.repairs.entry(conversation).or_default();
        repair.until = repair.until.max(until);
    }

    fn last_seq(&self, conversation: &str) -> u64 {
        self.conversations
            .get(conversation)
            .map_or(0, |state| state.last)
    }

    /// Writes every request, repair page and scan page that is due and not on the wire.
    fn flush_requests(&mut self, now: Instant) {
        if !self.writable() {
            return;
        }
        let due = |not_before: Option<Instant>| not_before.is_none_or(|at| at <= now);
        if !due(self.throttled_until) {
            return self.flush_internal(now);
        }
        self.throttled_until = None;
        let on_wire = self.pending.values().filter(|p| p.wire.is_some()).count();
        let room = self.config.max_in_flight.saturating_sub(on_wire);
        let tickets: Vec<Ticket> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.wire.is_none() && due(pending.not_before))
            .map(|(ticket, _)| *ticket)
            .take(room)
            .collect();
        let limit = self.link.as_ref().map_or(0, |link| link.max_frame_size);
        for ticket in tickets {
            let request = self.wire_id(WireUse::User(ticket));
            let Some(pending) = self.pending.get_mut(&ticket) else {
                continue;
            };
            let frame = pending.request.to_frame(request);
            if frame_length(&frame) > limit {
                // The server would close the connection, and every retry again ([NWP-5.1-5]).
                self.wire.remove(&request);
                let message = format!("the request exceeds the server's {limit} bytes");
                self.complete(ticket, Err(Error::InvalidArgument(message)));
                continue;
            }
            pending.wire = Some(request);
            pending.not_before = None;
            self.write(now, frame);
        }
        self.flush_internal(now);
    }

    /// Writes the repair and scan pages that are due and not on the wire.
    fn flush_internal(&mut self, now: Instant) {
        let due = |not_before: Option<Instant>| not_before.is_none_or(|at| at <= now);
        let repairs: Vec<String> = self
            .repairs
            .iter()
            .filter(|(_, repair)| repair.wire.is_none() && due(repair.not_before))
            .map(|(conversation, _)| conversation.clone())
            .collect();
        for conversation in repairs {
            let anchor = self.last_seq(&conversation);
            let request = self.wire_id(WireUse::Repair(conversation.clone()));
            let history = Request::History {
                conversation: conversation.clone(),
                anchor,
                direction: Direction::FORWARD,
                limit: self.config.repair_page,
            };
            self.write(now, history.to_frame(request));
            if let Some(repair) = self.repairs.get_mut(&conversation) {
                repair.wire = Some(request);
                repair.not_before = None;
            }
        }
        if let Some(scan) = &self.scan
            && scan.wire.is_none()
            && due(scan.not_before)
        {
            let cursor = scan.cursor.clone();
            let request = self.wire_id(WireUse::Scan(scan.generation));
            let list = Request::Conversations { cursor, limit: 100 };
            self.write(now, list.to_frame(request));
            if let Some(scan) = &mut self.scan {
                scan.wire = Some(request);
                scan.not_before = None;
            }
        }
    }

    /// The earliest retry-after among requests that are off the wire.
    fn next_retry(&self) -> Option<Instant> {
        let waiting = self
            .pending
            .values()
            .filter(|pending| pending.wire.is_none());
        let throttle = self
            .throttled_until
            .filter(|_| waiting.clone().next().is_some());
        let requests = waiting
            .filter_map(|pending| pending.not_before)
            .chain(throttle);
        let repairs = self
            .repairs
            .values()
            .filter(|repair| repair.wire.is_none())
            .filter_map(|repair| repair.not_before);
        let scan = self
            .scan
            .as_ref()
            .filter(|scan| scan.wire.is_none())
            .and_then(|scan| scan.not_before);
        requests.chain(repairs).chain(scan).min()
    }

    fn flush_ack(&mut self, now: Instant) {
        self.ack_due = None;
        let inbox = self.inbox.unwrap_or(0);
        if self.writable() && inbox > self.acked {
            self.write(now, Ack { inbox_seq: inbox }.into());
            self.acked = inbox;
            self.cursor_dirty = true;
        }
    }

    /// Forgets an internal request's wire id so that it is written again.
    fn disown(&mut self, request: u64) {
        match self.wire.remove(&request) {
            Some(WireUse::Repair(conversation)) => {
                if let Some(repair) = self.repairs.get_mut(&conversation) {
                    repair.wire = None;
                }
            }
            Some(WireUse::Scan(_)) => {
                if let Some(scan) = &mut self.scan {
                    scan.wire = None;
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, ticket: Ticket, result: Result<Reply>) {
        if self.pending.remove(&ticket).is_some() {
            self.completions.push_back((ticket, result));
        }
    }

    fn wire_id(&mut self, used: WireUse) -> u64 {
        let id = self.next_wire;
        self.next_wire = if id >= MAX_VARINT { 1 } else { id + 1 };
        self.wire.insert(id, used);
        id
    }

    fn write(&mut self, now: Instant, frame: Frame) {
        if let Some(link) = &mut self.link {
            link.last_sent = now;
        }
        self.transmit.push_back(frame);
    }

    fn writable(&self) -> bool {
        matches!(self.phase, Phase::Resuming { .. } | Phase::Live)
            && self.drain_deadline.is_none()
            && self.disconnect.is_none()
    }

    /// The server broke the protocol: say so and close ([NWP-3-7], [NWP-6.1.6-4]).
    fn violation(&mut self, now: Instant, message: String) {
        self.write_error(now, ErrorCode::PROTOCOL_VIOLATION, &message);
        self.request_disconnect(Disconnect::Reconnect(format!(
            "protocol violation: {message}"
        )));
    }

    fn write_error(&mut self, now: Instant, code: ErrorCode, message: &str) {
        self.write(now, frame::Error::new(0, code, message).into());
    }

    fn request_disconnect(&mut self, disconnect: Disconnect) {
        if self.disconnect.is_none() {
            self.disconnect = Some(disconnect);
        }
    }

    /// Forgets everything that belonged to one transport; requests go off the wire.
    fn reset_transport(&mut self) {
        self.link = None;
        self.wire.clear();
        self.transmit.clear();
        self.ack_due = None;
        self.drain_deadline = None;
        self.throttled_until = None;
        self.typing.clear();
        self.disconnect = None;
        for pending in self.pending.values_mut() {
            pending.wire = None;
        }
        for repair in self.repairs.values_mut() {
            repair.wire = None;
        }
        if let Some(scan) = &mut self.scan {
            scan.wire = None;
        }
    }
}

/// A frame's Length: the bytes after its length prefix.
fn frame_length(frame: &Frame) -> u64 {
    let total = frame.encoded_len() as u64;
    [1, 2, 4, 8]
        .into_iter()
        .map(|prefix| total.saturating_sub(prefix))
        .find(|length| natter_codec::varint::len(*length) as u64 + length == total)
        .unwrap_or(total)
}

/// Rejects requests the server would refuse for their form alone.
fn validate(request: &Request) -> Result<()> {
    match request {
        Request::Send(message) if !(1..=MAX_VARINT).contains(&message.client_msg_id) => Err(
            Error::InvalidArgument("client_msg_id must be between 1 and 2^62 - 1".into()),
        ),
        Request::Send(message) if message.kind.has_target() && message.target == 0 => Err(
            Error::InvalidArgument("an edit or delete needs a target seq".into()),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
