//! The state one edge process shares between its connections, links and HTTP handlers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use natter_codec::frame::{Error, Goaway, Routed};
use natter_codec::{ErrorCode, Frame, FrameType};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::admin::Sections;
use crate::auth::TokenKeys;
use crate::config::EdgeConfig;
use crate::metrics::{self, Metrics, type_label};
use crate::outbound::{Outbound, Pushed, Room};
use crate::router::Router;
use crate::session::{Action, Session};

/// Counts accepted connections, for [`Conn::accepted`].
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Connections being refused at once, at most.
const MAX_REFUSALS: usize = 64;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the home broker answered to SESSION_OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAnswer {
    /// Registered; the user's newest inbox_seq.
    Opened(u64),
    /// Refused or unreachable.
    Failed(ErrorCode),
}

/// The shared half of one client connection: its session and its outbound queue.
#[derive(Debug)]
pub struct Conn {
    /// The session id.
    pub id: u64,
    /// How the client reached the edge: `tcp`, `tls` or `ws`.
    pub transport: &'static str,
    /// When the connection was accepted, in milliseconds since the Unix epoch.
    pub since: u64,
    /// The order connections were accepted in (session ids are random).
    pub accepted: u64,
    state: Mutex<ConnState>,
    /// Wakes the writer when frames are queued or the connection closes.
    pub wake_writer: Notify,
    /// Wakes the reader when the connection must close.
    pub wake_reader: Notify,
}

/// The mutable part of a connection, shared by its reader, its writer and the links.
#[derive(Debug)]
pub struct ConnState {
    /// The protocol state.
    pub session: Session,
    /// Frames waiting for the writer.
    pub outbound: Outbound,
    /// The home broker, once SESSION_OPEN was sent.
    pub home: Option<usize>,
    /// Waits for the home broker's answer to SESSION_OPEN.
    pub opening: Option<oneshot::Sender<OpenAnswer>>,
    /// Set once the connection is closing: the writer flushes and stops, the reader stops.
    pub closing: Option<ErrorCode>,
    /// RESUMEs forwarded and not yet answered: the DELIVERs that arrive meanwhile are the
    /// replay of inbox entries, not live events (`natter_delivery_seconds{kind}`).
    pub resuming: u32,
}

impl Conn {
    /// A connection over `transport` in its first state.
    pub fn new(id: u64, transport: &'static str, session: Session, outbound: Outbound) -> Self {
        Self {
            id,
            transport,
            since: now_ms(),
            accepted: ACCEPTED.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(ConnState {
                session,
                outbound,
                home: None,
                opening: None,
                closing: None,
                resuming: 0,
            }),
            wake_writer: Notify::new(),
            wake_reader: Notify::new(),
        }
    }

    /// Locks the connection's state.
    pub fn state(&self) -> MutexGuard<'_, ConnState> {
        lock(&self.state)
    }
}

/// A link's sending half, as connections see it.
#[derive(Debug)]
pub struct LinkHandle {
    /// The broker id.
    pub broker: String,
    /// Frames for the link writer.
    pub tx: mpsc::Sender<Frame>,
    /// Whether the link is handshaken and running.
    pub up: AtomicBool,
}

impl LinkHandle {
    /// Queues a frame, or refuses at once if the link is down or full: callers answer
    /// UNAVAILABLE rather than wait.
    pub fn send(&self, frame: Frame) -> bool {
        self.up.load(Ordering::Acquire) && self.tx.try_send(frame).is_ok()
    }
}

/// Everything shared.
#[derive(Debug)]
pub struct Hub {
    /// The configuration.
    pub config: EdgeConfig,
    /// Token verification keys.
    pub keys: TokenKeys,
    /// The ring.
    pub router: Router,
    /// The metrics.
    pub metrics: Metrics,
    /// One link per broker, indexed like [`Router::brokers`].
    pub links: Vec<LinkHandle>,
    sessions: Mutex<HashMap<u64, Arc<Conn>>>,
    users: Mutex<HashMap<String, usize>>,
    waiters: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
    /// Set once the edge starts draining.
    pub draining: AtomicBool,
    /// Refusals being written; bounded so a connection flood cannot spend the descriptors
    /// kept for storage and links.
    refusals: Arc<Semaphore>,
    /// Bytes queued towards all clients: what the process-wide outbound budget limits.
    outbound_used: AtomicUsize,
    /// Wakes the shedder when the process is over its outbound budget.
    pub over_budget: Notify,
    /// When the hub was made, in milliseconds since the Unix epoch.
    pub started_at: u64,
    /// Sections the embedding process adds to `GET /v1/admin/server`.
    pub admin: Sections,
}

impl Hub {
    /// A hub with no connections yet; `links` come from `link::handles`.
    pub fn new(
        config: EdgeConfig,
        keys: TokenKeys,
        router: Router,
        metrics: Metrics,
        links: Vec<LinkHandle>,
    ) -> Self {
        Self {
            config,
            keys,
            router,
            metrics,
            links,
            sessions: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
            outbound_used: AtomicUsize::new(0),
            over_budget: Notify::new(),
            started_at: now_ms(),
            admin: Sections::default(),
        }
    }

    /// Runs a refusal (an error written to a connection there is no room for) in the
    /// background; when too many are under way, `fallback` runs at once instead (it must not
    /// wait: it writes what fits in the socket's buffer, then the connection is dropped).
    pub fn refuse(
        &self,
        refusal: impl Future<Output = ()> + Send + 'static,
        fallback: impl FnOnce(),
    ) {
        match self.refusals.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    refusal.await;
                    drop(permit);
                });
            }
            Err(_) => fallback(),
        }
    }

    /// Whether every link is up and the edge is not draining.
    pub fn is_ready(&self) -> bool {
        self.links
            .iter()
            .all(|link| link.up.load(Ordering::Acquire))
            && !self.draining.load(Ordering::Acquire)
    }

    /// A fresh session id, from a cryptographically secure generator: a client sees its id in
    /// READY, and it must reveal nothing about other sessions. An id still in use here is
    /// drawn again; across restarts, 62 random bits keep a broker's old leases apart.
    pub fn session_id(&self) -> u64 {
        loop {
            let id = rand::random::<u64>() & ((1 << 62) - 1);
            let taken =
                lock(&self.sessions).contains_key(&id) || lock(&self.waiters).contains_key(&id);
            if id != 0 && !taken {
                return id;
            }
        }
    }

    /// Registers a new connection.
    pub fn register(&self, conn: Arc<Conn>) {
        lock(&self.sessions).insert(conn.id, conn);
    }

    /// Forgets a connection.
    pub fn unregister(&self, id: u64) {
        lock(&self.sessions).remove(&id);
    }

    /// Every live connection.
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// How many live connections there are.
    pub fn connection_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// How many users hold at least one connection.
    pub fn user_count(&self) -> usize {
        lock(&self.users).len()
    }

    /// Bytes queued towards all clients.
    pub fn outbound_used(&self) -> usize {
        self.outbound_used.load(Ordering::Relaxed)
    }

    /// Counts a connection of `user`; false if the user is at the limit.
    pub fn add_user_connection(&self, user: &str) -> bool {
        let mut users = lock(&self.users);
        let count = users.entry(user.to_string()).or_insert(0);
        if *count >= self.config.limits.max_connections_per_user {
            return false;
        }
        *count += 1;
        true
    }

    /// Uncounts a connection of `user`.
    pub fn remove_user_connection(&self, user: &str) {
        let mut users = lock(&self.users);
        if let Some(count) = users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                users.remove(user);
            }
        }
    }

    /// Registers a one-off session for an HTTP API call; frames for it go to the returned
    /// receiver until [`Hub::forget_waiter`].
    pub fn waiter(&self) -> (u64, mpsc::Receiver<Bytes>) {
        let id = self.session_id();
        let (tx, rx) = mpsc::channel(16);
        lock(&self.waiters).insert(id, tx);
        (id, rx)
    }

    /// Ends a one-off API session.
    pub fn forget_waiter(&self, id: u64) {
        lock(&self.waiters).remove(&id);
    }

    /// Sends a frame to a broker's link; false if the link cannot take it now.
    pub fn send_to(&self, broker: usize, frame: Frame) -> bool {
        self.links.get(broker).is_some_and(|link| link.send(frame))
    }

    /// Routes a client frame to a broker on behalf of a session.
    pub fn route(
        &self,
        broker: usize,
        session: u64,
        user: &str,
        device: &str,
        frame: Bytes,
    ) -> bool {
        self.send_to(
            broker,
            Routed {
                session,
                user: user.into(),
                device: device.into(),
                frame,
            }
            .into(),
        )
    }

    /// A broker sent `frame` for `session`: hand it to the connection or the API waiter.
    pub fn dispatch(&self, session: u64, frame: Bytes) {
        let conn = lock(&self.sessions).get(&session).cloned();
        let Some(conn) = conn else {
            if let Some(waiter) = lock(&self.waiters).get(&session) {
                // A full waiter is an API call that stopped listening; it will time out.
                let _ = waiter.try_send(frame);
            }
            return;
        };
        let mut state = conn.state();
        if let Some(opening) = state.opening.take() {
            match open_answer(&frame) {
                Some(answer) => {
                    let _ = opening.send(answer);
                }
                None => state.opening = Some(opening),
            }
            return;
        }
        if is_open_answer(&frame) {
            return;
        }
        let server = state.session.handle_server(frame);
        match server.answered {
            Some(answered) if answered.frame_type == FrameType::SEND => {
                let seconds = now_ms().saturating_sub(answered.sent_ms) as f64 / 1000.0;
                self.metrics.send_ack_seconds.observe(seconds);
            }
            // SYNCED (or an ERROR) ends the replay that RESUME asked for.
            Some(answered) if answered.frame_type == FrameType::RESUME => {
                state.resuming = state.resuming.saturating_sub(1);
            }
            _ => {}
        }
        if let Some(frame) = server.forward {
            self.observe_delivery(&frame, state.resuming > 0);
            self.push(&conn, &mut state, frame);
        }
    }

    /// The link PONG that follows a SESSION_OPEN came back: a home broker that had refused
    /// the session would have said so before it, so the session is open. The home broker
    /// names the inbox head only if it answers SESSION_OPEN itself; without that, READY
    /// carries 0 and a new device replays what the inbox retains.
    pub fn fence(&self, session: u64) {
        let conn = lock(&self.sessions).get(&session).cloned();
        if let Some(conn) = conn
            && let Some(opening) = conn.state().opening.take()
        {
            let _ = opening.send(OpenAnswer::Opened(0));
        }
    }

    /// Queues a frame for a client under the slow-consumer policy.
    pub fn push(&self, conn: &Conn, state: &mut ConnState, frame: Bytes) {
        if state.closing.is_some() {
            return;
        }
        let frame_type = natter_codec::frame::peek_type(&frame).unwrap_or_default();
        // Read before the queue takes the frame; only ERRORs pay for it, and only their code.
        let error = (frame_type == FrameType::ERROR)
            .then(|| metrics::error_code(&frame))
            .flatten();
        let before = state.outbound.used();
        match state.outbound.push(frame, now_ms(), self.room()) {
            Ok(Pushed::Queued) => {
                self.metrics
                    .frames_out
                    .with_label_values(&[type_label(frame_type)])
                    .inc();
                if let Some(code) = error {
                    self.count_error(code);
                }
                conn.wake_writer.notify_one();
            }
            Ok(Pushed::Dropped) => self.metrics.dropped_frames.inc(),
            Err(slow) => self.close(conn, state, slow.code(), "slow consumer"),
        }
        self.account(before, state.outbound.used());
    }

    /// Queues an edge-made frame for a client; [`Hub::push`] counts it.
    pub fn reply(&self, conn: &Conn, state: &mut ConnState, frame: Frame) {
        if let Ok(bytes) = frame.to_bytes() {
            self.push(conn, state, bytes);
        }
    }

    /// Closes a connection: a last ERROR (or GOAWAY) is queued if the reserve allows, the writer
    /// flushes it, and the reader stops.
    pub fn close(&self, conn: &Conn, state: &mut ConnState, code: ErrorCode, message: &str) {
        if state.closing.is_some() {
            return;
        }
        tracing::debug!(
            session = conn.id,
            user = state.session.user(),
            ?code,
            message,
            "closing"
        );
        self.count_error(code);
        let goaway = code == ErrorCode::SHUTTING_DOWN || code == ErrorCode::UNAVAILABLE;
        let frame = if goaway {
            Frame::from(Goaway {
                code,
                reconnect_ms: self.config.timing.goaway_reconnect_ms,
                message: message.into(),
            })
        } else {
            Frame::from(Error::new(0, code, message))
        };
        if let Ok(bytes) = frame.to_bytes() {
            if code == ErrorCode::SLOW_CONSUMER {
                // It would not read what is queued, and the process wants the memory back.
                let before = state.outbound.used();
                state.outbound.clear();
                self.account(before, state.outbound.used());
            }
            let before = state.outbound.used();
            // The policy may refuse it to a slow consumer; then the close is silent.
            if let Ok(Pushed::Queued) = state.outbound.push(bytes, now_ms(), Room::UNLIMITED) {
                let frame_type = if goaway {
                    FrameType::GOAWAY
                } else {
                    FrameType::ERROR
                };
                self.metrics
                    .frames_out
                    .with_label_values(&[type_label(frame_type)])
                    .inc();
            }
            self.account(before, state.outbound.used());
        }
        state.closing = Some(code);
        if let Some(opening) = state.opening.take() {
            let _ = opening.send(OpenAnswer::Failed(code));
        }
        conn.wake_writer.notify_one();
        conn.wake_reader.notify_one();
    }

    /// Carries out what the session decided.
    pub fn perform(&self, conn: &Conn, state: &mut ConnState, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply(frame) => self.reply(conn, state, frame),
                Action::Route {
                    broker,
                    request,
                    frame,
                } => {
                    let resume = request.is_some()
                        && natter_codec::frame::peek_type(&frame) == Ok(FrameType::RESUME);
                    let session = &state.session;
                    let sent = self.route(
                        broker,
                        session.id(),
                        session.user(),
                        session.device(),
                        frame,
                    );
                    if sent && resume {
                        state.resuming += 1;
                    }
                    if !sent {
                        let actions = state.session.route_failed(request);
                        self.perform(conn, state, actions);
                    }
                }
                Action::Close(code, message) => self.close(conn, state, code, message),
                // Opening needs an await; the connection driver handles it.
                Action::Open { .. } => {}
            }
        }
    }

    /// A link to `broker` went down: answer its requests and move its users elsewhere.
    pub fn broker_lost(&self, broker: usize) {
        for conn in self.connections() {
            let mut state = conn.state();
            let lost = state.session.broker_lost(broker);
            for frame in lost {
                self.reply(&conn, &mut state, frame);
            }
            if state.home == Some(broker) {
                // The home broker lost this session's lease and live stream; the client must
                // reconnect and RESUME, which it does on GOAWAY.
                self.close(
                    &conn,
                    &mut state,
                    ErrorCode::UNAVAILABLE,
                    "home broker lost",
                );
            }
        }
    }

    /// Counts an error sent to a client, or a connection refused or closed with `code`.
    pub fn count_error(&self, code: ErrorCode) {
        self.metrics.count_error(code);
    }

    /// Moves the outbound-bytes count by a connection's change in queued bytes, and wakes the
    /// shedder when the process goes over its budget.
    pub fn account(&self, before: usize, after: usize) {
        let used = if after >= before {
            self.outbound_used
                .fetch_add(after - before, Ordering::Relaxed)
                + (after - before)
        } else {
            self.outbound_used
                .fetch_sub(before - after, Ordering::Relaxed)
                - (before - after)
        };
        self.metrics.outbound_queue_bytes.set(used as i64);
        if used > self.config.limits.outbound_total_budget {
            self.over_budget.notify_one();
        }
    }

    /// The room left in the process-wide outbound budget.
    fn room(&self) -> Room {
        Room {
            used: self.outbound_used.load(Ordering::Relaxed),
            budget: self.config.limits.outbound_total_budget,
        }
    }

    /// Closes the connections with the largest queues until the process is back under its
    /// outbound budget: they hold the most memory, and they are the ones not reading.
    pub fn shed(&self) {
        let budget = self.config.limits.outbound_total_budget;
        let mut queues: Vec<(usize, Arc<Conn>)> = self
            .connections()
            .into_iter()
            .map(|conn| {
                let used = conn.state().outbound.used();
                (used, conn)
            })
            .collect();
        queues.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        for (_, conn) in queues {
            if self.outbound_used.load(Ordering::Relaxed) <= budget {
                break;
            }
            let mut state = conn.state();
            if state.closing.is_none() {
                self.metrics.outbound_shed.inc();
                self.close(
                    &conn,
                    &mut state,
                    ErrorCode::SLOW_CONSUMER,
                    "the server's outbound memory is full",
                );
            }
        }
    }

    /// Times a DELIVER from its event's acceptance, as a replay while a RESUME of the session
    /// is unanswered (live events of large groups, inbox_seq 0, are never replays).
    fn observe_delivery(&self, frame: &Bytes, replaying: bool) {
        let Some((inbox_seq, timestamp)) = metrics::deliver_timing(frame) else {
            return;
        };
        let seconds = now_ms().saturating_sub(timestamp) as f64 / 1000.0;
        if replaying && inbox_seq != 0 {
            self.metrics.delivery_replay.observe(seconds);
        } else {
            self.metrics.delivery_live.observe(seconds);
        }
    }
}

/// Whether a broker frame is (another) answer to SESSION_OPEN, which clients never see.
fn is_open_answer(frame: &Bytes) -> bool {
    match natter_codec::frame::peek_type(frame) {
        Ok(FrameType::READY) => true,
        Ok(FrameType::SYNCED) => {
            matches!(Frame::decode(frame.clone()), Ok(Frame::Synced(synced)) if synced.request == 0)
        }
        _ => false,
    }
}

/// Reads the home broker's answer to SESSION_OPEN: READY or `SYNCED{0, inbox_head}` carries
/// the inbox head, a closing ERROR refuses. Anything else is not the answer.
fn open_answer(frame: &Bytes) -> Option<OpenAnswer> {
    match Frame::decode(frame.clone()).ok()? {
        Frame::Ready(ready) => Some(OpenAnswer::Opened(ready.inbox_head)),
        Frame::Synced(synced) if synced.request == 0 => Some(OpenAnswer::Opened(synced.inbox_head)),
        Frame::Error(error) if error.request == 0 => Some(OpenAnswer::Failed(error.code)),
        _ => None,
    }
}
