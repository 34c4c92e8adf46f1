//! The async client: one connection task drives a [`Session`] over a [`Transport`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use natter_codec::types::{Direction, EventKind, GroupOp, Marker, Role};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::cursor::{CursorStore, MemoryCursorStore};
use crate::event::{ConnectionState, Event};
use crate::request::{
    ConversationPage, GroupInfo, HistoryPage, OutgoingMessage, Reply, Request, Sent,
};
use crate::session::{Disconnect, Session, SessionConfig, Ticket};
use crate::transport::{Endpoint, Transport, tls_config};
use crate::{Error, Result};

/// How a [`Client`] connects and behaves.
#[derive(Clone)]
pub struct Config {
    /// The server.
    pub endpoint: Endpoint,
    /// A PEM file of CA certificates to trust instead of the web PKI roots (TLS only).
    pub ca_file: Option<PathBuf>,
    /// Session tunables; `session.token` is the credential.
    pub session: SessionConfig,
    /// The first reconnect delay; it doubles per failed attempt, with jitter.
    pub backoff_initial: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// Give up on one connection attempt after this long.
    pub connect_timeout: Duration,
    /// Where the resume cursor is kept.
    pub cursor_store: Arc<dyn CursorStore>,
    /// Commands queued to the connection task before callers wait (backpressure).
    pub command_capacity: usize,
    /// Events queued to the application before the connection task waits.
    pub event_capacity: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("ca_file", &self.ca_file)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration for the server at `url` (`tcp://`, `tls://`, `ws://`, `wss://`) with
    /// a token minted by the application's backend (or `natter token`).
    pub fn new(url: &str, token: impl Into<String>) -> Result<Self> {
        let session = SessionConfig {
            token: Bytes::from(token.into()),
            ..SessionConfig::default()
        };
        Ok(Self {
            endpoint: url.parse()?,
            ca_file: None,
            session,
            // From 1 s, doubling, at most 60 s ([NWP-5.5-3]) is the spec's advice; 30 s is
            // below its ceiling.
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            cursor_store: Arc::new(MemoryCursorStore::default()),
            command_capacity: 256,
            event_capacity: 1024,
        })
    }

    /// Keeps the resume cursor in `store`.
    pub fn with_cursor_store(mut self, store: impl CursorStore) -> Self {
        self.cursor_store = Arc::new(store);
        self
    }

    /// Trusts only the CA certificates in this PEM file.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}

enum Command {
    Request(Request, oneshot::Sender<Result<Reply>>),
    Typing(String, bool),
    Close(oneshot::Sender<()>),
}

/// A handle to a natter connection; clone it freely. The connection closes when the last
/// handle is dropped or [`Client::close`] is called.
///
/// ```no_run
/// use natter_client::{Client, Config, Event};
///
/// # async fn run() -> natter_client::Result<()> {
/// let config = Config::new("tcp://127.0.0.1:7400", "TOKEN")?;
/// let (client, mut events) = Client::connect(config).await?;
/// let chat = client.direct_conversation("bob");
/// let sent = client.send_text(&chat, "hello bob").await?;
/// println!("stored at seq {}", sent.seq);
/// while let Some(event) = events.next().await {
///     if let Event::Message(message) = event {
///         println!("{}: {}", message.sender, message.text().unwrap_or("<binary>"));
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    user: Arc<str>,
    device: Arc<str>,
}

/// The application's stream of [`Event`]s, in order; it ends when the client stops.
///
/// Keep reading it: when its queue is full the connection task waits, which is how a slow
/// application slows the server down instead of growing memory, and answers to requests
/// wait behind the events queued before them.
#[derive(Debug)]
pub struct Events {
    events: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` once the client has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

/// The answer to a request queued with [`Client::enqueue`].
#[derive(Debug)]
pub struct PendingReply {
    answer: oneshot::Receiver<Result<Reply>>,
}

impl PendingReply {
    /// Waits for the answer.
    pub async fn reply(self) -> Result<Reply> {
        self.answer.await.map_err(|_| Error::Closed)?
    }

    /// Waits for the answer of a send.
    pub async fn sent(self) -> Result<Sent> {
        match self.reply().await? {
            Reply::Sent(sent) => Ok(sent),
            other => Err(unexpected(&other)),
        }
    }
}

impl Client {
    /// Connects and authenticates, then keeps the connection up in a background task.
    ///
    /// Fails if the first connection cannot be made or the server refuses the token; later
    /// connection losses are repaired by reconnecting with jittered exponential backoff and
    /// resuming from the cursor in [`Config::cursor_store`].
    pub async fn connect(config: Config) -> Result<(Client, Events)> {
        let tls = match config.endpoint.scheme.is_tls() {
            true => Some(tls_config(config.ca_file.as_deref())?),
            false => None,
        };
        let session = Session::new(config.session.clone(), config.cursor_store.load());
        let (commands, command_rx) = mpsc::channel(config.command_capacity.max(1));
        let (event_tx, events) = mpsc::channel(config.event_capacity.max(16));
        let mut driver = Driver {
            session,
            config,
            tls,
            waiting: HashMap::new(),
            events: event_tx,
            commands: command_rx,
        };
        let mut transport = driver.open().await?;
        let (user, device) = driver.handshake(&mut transport).await?;
        tokio::spawn(driver.run(transport));
        let client = Client {
            commands,
            user: user.into(),
            device: device.into(),
        };
        Ok((client, Events { events }))
    }

    /// The authenticated user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The authenticated device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The id of the direct conversation between this user and `other`.
    pub fn direct_conversation(&self, other: &str) -> String {
        natter_codec::ids::direct_conversation(&self.user, other)
    }

    /// Queues a request and returns at once with a handle to its answer, so requests can
    /// be pipelined: they are written in the order they were queued. Waits only while the
    /// command queue is full.
    pub async fn enqueue(&self, request: Request) -> Result<PendingReply> {
        let (tx, answer) = oneshot::channel();
        self.commands
            .send(Command::Request(request, tx))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(PendingReply { answer })
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, request: Request) -> Result<Reply> {
        self.enqueue(request).await?.reply().await
    }

    /// Appends a message, edit or delete and waits until it is durable.
    ///
    /// Safe to call again with the same message: the server returns the original seq.
    pub async fn send(&self, message: OutgoingMessage) -> Result<Sent> {
        self.enqueue(Request::Send(message)).await?.sent().await
    }

    /// Sends a text message to a conversation.
    pub async fn send_text(&self, conversation: &str, text: &str) -> Result<Sent> {
        self.send(OutgoingMessage::text(conversation, text)).await
    }

    /// Replaces the body of the message at `target` with `text`.
    pub async fn edit(&self, conversation: &str, target: u64, text: &str) -> Result<Sent> {
        let mut message = OutgoingMessage::text(conversation, text);
        message.kind = EventKind::EDIT;
        message.target = target;
        self.send(message).await
    }

    /// Deletes the message at `target`.
    pub async fn delete(&self, conversation: &str, target: u64) -> Result<Sent> {
        let mut message = OutgoingMessage::text(conversation, "");
        message.kind = EventKind::DELETE;
        message.target = target;
        self.send(message).await
    }

    /// Reads a page of history: `limit` events before (`Direction::BACKWARD`) or after
    /// (`Direction::FORWARD`) the seq `anchor`; anchor 0 is the newest end or the start.
    pub async fn history(
        &self,
        conversation: &str,
        anchor: u64,
        direction: Direction,
        limit: u64,
    ) -> Result<HistoryPage> {
        let request = Request::History {
            conversation: conversation.to_owned(),
            anchor,
            direction,
            limit,
        };
        match self.request(request).await? {
            Reply::History(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    /// Lists the user's conversations, most recently active first; pass the previous page's
    /// `next_cursor` for the next page.
    pub async fn conversations(&self, cursor: Bytes, limit: u64) -> Result<ConversationPage> {
        match self
            .request(Request::Conversations { cursor, limit })
            .await?
        {
            Reply::Conversations(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a group owned by this user with the given members.
    pub async fn create_group(&self, title: &str, members: &[&str]) -> Result<GroupInfo> {
        let request = Request::GroupCreate {
            title: title.to_owned(),
            members: members.iter().map(|member| (*member).to_owned()).collect(),
        };
        self.group_reply(request).await
    }

    /// A group's title and members.
    pub async fn group_info(&self, conversation: &str) -> Result<GroupInfo> {
        let conversation = conversation.to_owned();
        self.group_reply(Request::GroupGet { conversation }).await
    }

    /// Adds a member; answers the seq of the membership event.
    pub async fn add_member(&self, conversation: &str, user: &str, role: Role) -> Result<Sent> {
        self.group_update(conversation, GroupOp::ADD, user, role)
            .await
    }

    /// Removes a member.
    pub async fn remove_member(&self, conversation: &str, user: &str) -> Result<Sent> {
        self.group_update(conversation, GroupOp::REMOVE, user, Role::MEMBER)
            .await
    }

    /// Changes a member's role (owner only).
    pub async fn set_role(&self, conversation: &str, user: &str, role: Role) -> Result<Sent> {
        self.group_update(conversation, GroupOp::SET_ROLE, user, role)
            .await
    }

    /// Leaves a group.
    pub async fn leave(&self, conversation: &str) -> Result<Sent> {
        let user = self.user.clone();
        self.remove_member(conversation, &user).await
    }

    /// Marks everything up to `seq` read, on all of this user's devices.
    pub async fn mark_read(&self, conversation: &str, seq: u64) -> Result<()> {
        self.mark(conversation, Marker::READ, seq).await
    }

    /// Moves the user's delivered pointer (the server also derives it from ACKs).
    pub async fn mark_delivered(&self, conversation: &str, seq: u64) -> Result<()> {
        self.mark(conversation, Marker::DELIVERED, seq).await
    }

    /// Says whether the user is typing; repeat `true` every 3 s while typing.
    pub async fn typing(&self, conversation: &str, active: bool) -> Result<()> {
        self.commands
            .send(Command::Typing(conversation.to_owned(), active))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Watches the presence of a conversation's members for `ttl` (at most 5 min; renew
    /// it). [`Event::Presence`] events follow.
    pub async fn subscribe_presence(&self, conversation: &str, ttl: Duration) -> Result<()> {
        let request = Request::PresenceSubscribe {
            conversation: conversation.to_owned(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        self.done(request).await
    }

    /// Closes the connection; requests still waiting complete with [`Error::Closed`].
    pub async fn close(&self) {
        let (tx, done) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).await.is_ok() {
            let _ = done.await;
        }
    }

    async fn mark(&self, conversation: &str, marker: Marker, seq: u64) -> Result<()> {
        let conversation = conversation.to_owned();
        self.done(Request::Mark {
            conversation,
            marker,
            seq,
        })
        .await
    }

    async fn group_update(
        &self,
        conversation: &str,
        op: GroupOp,
        user: &str,
        role: Role,
    ) -> Result<Sent> {
        let request = Request::GroupUpdate {
            conversation: conversation.to_owned(),
            op,
            user: user.to_owned(),
            role,
        };
        self.enqueue(request).await?.sent().await
    }

    async fn group_reply(&self, request: Request) -> Result<GroupInfo> {
        match self.request(request).await? {
            Reply::Group(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    async fn done(&self, request: Request) -> Result<()> {
        match self.request(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

impl OutgoingMessage {
    /// A message with a fresh random client_msg_id.
    pub fn new(conversation: &str, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            conversation: conversation.to_owned(),
            client_msg_id: new_client_msg_id(),
            kind: EventKind::MESSAGE,
            target: 0,
            content_type: content_type.to_owned(),
            body: body.into(),
        }
    }

    /// A plain text message with a fresh random client_msg_id.
    pub fn text(conversation: &str, text: &str) -> Self {
        Self::new(conversation, "", Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// A random id in 1..2^62, unique enough per device that applications need not store a
/// counter.
pub fn new_client_msg_id() -> u64 {
    rand::rng().random_range(1..(1 << 62))
}

fn unexpected(reply: &Reply) -> Error {
    Error::Protocol(format!("unexpected answer {reply:?}"))
}

/// Why one connection ended.
enum Exit {
    Reconnect(String),
    Fatal(Error),
    Close(Option<oneshot::Sender<()>>),
}

/// The connection task: owns the session and everything that waits on it.
struct Driver {
    session: Session,
    config: Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    waiting: HashMap<Ticket, oneshot::Sender<Result<Reply>>>,
    events: mpsc::Sender<Event>,
    commands: mpsc::Receiver<Command>,
}

impl Driver {
    async fn open(&mut self) -> Result<Transport> {
        let connect = Transport::connect(
            &self.config.endpoint,
            self.tls.as_ref(),
            self.config.session.max_frame_size,
        );
        let transport = timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| {
                Error::Transport(format!("{}: connect timed out", self.config.endpoint))
            })??;
        self.session.connected(Instant::now().into_std());
        Ok(transport)
    }

    /// Drives the first connection until READY, so `connect` can report a refused token.
    async fn handshake(&mut self, transport: &mut Transport) -> Result<(String, String)> {
        loop {
            self.write(transport).await?;
            if let Some((user, device)) = self.session.identity() {
                return Ok((user.to_owned(), device.to_owned()));
            }
            match self.session.poll_disconnect() {
                Some(Disconnect::Fatal(error)) => return Err(error),
                Some(Disconnect::Reconnect(reason)) => return Err(Error::Transport(reason)),
                None => {}
            }
            let deadline = self.session.poll_timeout().map(Instant::from_std);
            tokio::select! {
                frame = transport.recv() => match frame {
                    Some(frame) => self.session.handle_frame(Instant::now().into_std(), frame?),
                    None => return Err(Error::Transport("closed during the handshake".into())),
                },
                () = sleep_until_or_never(deadline) => {
                    self.session.handle_timeout(Instant::now().into_std());
                }
            }
        }
    }

    async fn run(mut self, mut transport: Transport) {
        let mut attempt = 0;
        loop {
            let exit = self.serve(&mut transport, &mut attempt).await;
            drop(transport);
            self.session.disconnected();
            let mut reason = match exit {
                Exit::Reconnect(reason) => reason,
                Exit::Fatal(error) => return self.stop(Some(error), None).await,
                Exit::Close(done) => return self.stop(None, done).await,
            };
            transport = loop {
                attempt += 1;
                let hint = self.session.take_reconnect_hint().unwrap_or_default();
                let delay = match self.session.take_reconnect_window() {
                    // A drain: anywhere in the server's window, so that its clients spread
                    // out rather than come back together ([NWP-5.4-2]).
                    Some(window) => window.mul_f64(rand::rng().random::<f64>()),
                    None => hint.max(backoff(&self.config, attempt)),
                };
                let state = ConnectionState::Disconnected {
                    reason: reason.clone(),
                    retry_in: delay,
                };
                self.emit(Event::Connection(state)).await;
                if let Some(done) = self.idle(delay).await {
                    return self.stop(None, done).await;
                }
                self.emit(Event::Connection(ConnectionState::Connecting { attempt }))
                    .await;
                match self.open().await {
                    Ok(transport) => break transport,
                    Err(error) => reason = error.to_string(),
                }
            };
        }
    }

    /// Runs one connection until it ends.
    async fn serve(&mut self, transport: &mut Transport, attempt: &mut u32) -> Exit {
        loop {
            if let Err(error) = self.write(transport).await {
                return Exit::Reconnect(error.to_string());
            }
            if self.session.is_live() {
                *attempt = 0;
            }
            match self.session.poll_disconnect() {
                Some(Disconnect::Reconnect(reason)) => return Exit::Reconnect(reason),
                Some(Disconnect::Fatal(error)) => return Exit::Fatal(error),
                None => {}
            }
            let deadline = self.session.poll_timeout().map(Instant::from_std);
            let accepting = self.session.can_submit();
            tokio::select! {
                frame = transport.recv() => match frame {
                    Some(Ok(frame)) => self.session.handle_frame(Instant::now().into_std(), frame),
                    Some(Err(error)) => return Exit::Reconnect(error.to_string()),
                    None => return Exit::Reconnect("connection closed by the server".into()),
                },
                command = self.commands.recv(), if accepting => {
                    if let Some(done) = self.command(command) {
                        self.session.flush_acks(Instant::now().into_std());
                        let _ = self.write(transport).await;
                        return Exit::Close(done);
                    }
                }
                () = sleep_until_or_never(deadline) => {
                    self.session.handle_timeout(Instant::now().into_std());
                }
            }
        }
    }

    /// Waits out a reconnect delay while still queueing commands; returns if asked to close.
    async fn idle(&mut self, delay: Duration) -> Option<Option<oneshot::Sender<()>>> {
        let wake = sleep(delay);
        tokio::pin!(wake);
        loop {
            let accepting = self.session.can_submit();
            tokio::select! {
                () = &mut wake => return None,
                command = self.commands.recv(), if accepting => {
                    if let Some(done) = self.command(command) {
                        return Some(done);
                    }
                    self.dispatch().await;
                }
            }
        }
    }

    /// Hands one command to the session; `Some` when the client is to close.
    fn command(&mut self, command: Option<Command>) -> Option<Option<oneshot::Sender<()>>> {
        let now = Instant::now().into_std();
        match command {
            Some(Command::Request(request, answer)) => match self.session.submit(now, request) {
                Ok(ticket) => {
                    self.waiting.insert(ticket, answer);
                }
                // `accepting` was checked before receiving, so the session has room.
                Err(_) => {
                    let _ = answer.send(Err(Error::Closed));
                }
            },
            Some(Command::Typing(conversation, active)) => {
                self.session.typing(now, &conversation, active);
            }
            Some(Command::Close(done)) => return Some(Some(done)),
            None => return Some(None),
        }
        None
    }

    /// Writes what the session produced, then hands out completions, events and the cursor.
    async fn write(&mut self, transport: &mut Transport) -> Result<()> {
        let frames: Vec<_> = std::iter::from_fn(|| self.session.poll_transmit()).collect();
        if !frames.is_empty() {
            transport.send(frames).await?;
        }
        self.dispatch().await;
        Ok(())
    }

    async fn dispatch(&mut self) {
        while let Some((ticket, result)) = self.session.poll_completion() {
            if let Some(answer) = self.waiting.remove(&ticket) {
                let _ = answer.send(result);
            }
        }
        if let Some(cursor) = self.session.take_cursor() {
            self.config.cursor_store.save(&cursor);
        }
        while let Some(event) = self.session.poll_event() {
            self.emit(event).await;
        }
    }

    /// Hands an event to the application, waiting while its queue is full (backpressure
    /// reaches the socket). An application that dropped [`Events`] just misses them.
    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    async fn stop(mut self, error: Option<Error>, done: Option<oneshot::Sender<()>>) {
        self.session.close(error);
        self.dispatch().await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Equal-jitter exponential backoff: half the doubled delay fixed, half random.
fn backoff(config: &Config, attempt: u32) -> Duration {
    let doubled = config
        .backoff_initial
        .saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let ceiling = doubled.min(config.backoff_max);
    let half = ceiling / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_ceiling() {
        let config = Config::new("tcp://127.0.0.1:1", "t").unwrap();
        for attempt in 1..=12 {
            let ceiling = (config.backoff_initial * (1 << (attempt - 1))).min(config.backoff_max);
            for _ in 0..20 {
                let delay = backoff(&config, attempt);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{attempt}: {delay:?}"
                );
            }
        }
        assert!(backoff(&config, u32::MAX) <= config.backoff_max);
    }
}
