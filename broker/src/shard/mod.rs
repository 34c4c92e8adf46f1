//! The broker's sans-IO state machine.
//!
//! A [`Shard`] owns the conversations and users the ring gives its node. It never reads the
//! clock or touches a socket: the driver feeds it with `handle_*(now, ...)`, where `now` is
//! milliseconds since the Unix epoch, and then drains [`Shard::poll_output`] until it returns
//! `None`. Call [`Shard::handle_timeout`] when [`Shard::poll_timeout`] says so.
//!
//! Every input is one transaction: its writes leave as one [`Output::Commit`] batch, and the
//! frames it produced are held back until [`Shard::handle_durable`] reports that commit (and
//! so every earlier one) durable. Batches must therefore be committed in the order they are
//! emitted. Frames to other brokers are addressed by node and to edges by link; frames to this
//! node itself never leave the shard (the in-process link of docs/ARCHITECTURE.md).

mod conversation;
mod fanout;
mod groups;
mod inbox;
mod notify;
mod presence;
mod receipts;
mod store;
mod summaries;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use natter_codec::frame::{Origin, Routed};
use natter_codec::ring::Ring;
use natter_codec::types::NodeRole;
use natter_codec::{ErrorCode, Frame, Text, ids};
use rand::Rng;
use rand::rngs::StdRng;

use crate::config::{BrokerConfig, Limits};
use crate::storage::{Batch, Storage, StorageError};
pub use store::CommitId;
use store::{ReadError, Store};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// How often the shard wakes up to expire leases and interests and to flush acks.
const TICK_MS: Millis = 1_000;

/// A link, named by the driver; ids are never reused while the shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// The node at the other end of a link, as its LINK_HELLO introduced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node id.
    pub node: String,
    /// Edge or broker.
    pub role: NodeRole,
    /// Whether this node dialed the link. The shard sends to another broker only on the link
    /// it dialed; the link that broker dialed carries its frames in.
    pub dialed: bool,
}

/// What the driver must do next.
// Outputs are moved once from the shard to the driver; boxing frames would cost an
// allocation per frame to save a few hundred bytes of queue slack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Write a frame on a link.
    Frame {
        /// Where.
        link: LinkId,
        /// What.
        frame: Frame,
    },
    /// Make a batch durable, after every batch emitted before it, then call
    /// [`Shard::handle_durable`] with its id.
    Commit {
        /// Passed back to [`Shard::handle_durable`].
        id: CommitId,
        /// The writes.
        batch: Batch,
    },
    /// POST `body` (JSON) to the webhook URL, then call [`Shard::handle_webhook`].
    Webhook {
        /// Passed back to [`Shard::handle_webhook`].
        id: u64,
        /// The JSON document.
        body: String,
    },
    /// Close a link after the frames already written on it.
    Close {
        /// Which.
        link: LinkId,
    },
}

/// Where a frame goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    /// Back on a particular link (answers and pushes to edges).
    Link(LinkId),
    /// To a node by id: another broker over the link this node dialed, an edge over its
    /// link, or this node itself.
    Node(String),
}

/// Something held back until a commit is durable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Held {
    Frame {
        dest: Dest,
        /// The route generation when the frame was made: a frame made for a link that has
        /// since gone down is dropped, and the resend logic of its feature takes over.
        generation: Option<u64>,
        frame: Frame,
    },
    Webhook {
        id: u64,
        body: String,
    },
    /// Closing a link waits behind the frames before it, its ERROR in particular.
    Close(LinkId),
}

/// A link this node sends to another node on.
#[derive(Debug, Clone, Copy)]
struct Route {
    link: LinkId,
    generation: u64,
}

/// Why a request failed: the ERROR its sender gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    code: ErrorCode,
    message: String,
}

impl Reject {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ReadError> for Reject {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Storage(error) => tracing::error!(%error, "storage read failed"),
            ReadError::Corrupt => tracing::error!("stored record does not decode"),
        }
        Self::new(ErrorCode::INTERNAL_ERROR, "storage error")
    }
}

impl From<StorageError> for Reject {
    fn from(error: StorageError) -> Self {
        ReadError::Storage(error).into()
    }
}

impl From<crate::records::Corrupt> for Reject {
    fn from(error: crate::records::Corrupt) -> Self {
        ReadError::from(error).into()
    }
}

/// The session a client request came from.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    link: LinkId,
    /// The edge holding the session.
    edge: String,
    session: u64,
    user: Text,
    device: Text,
}

/// The broker's state machine; see the module docs for how to drive it.
#[derive(Debug)]
pub struct Shard {
    node: String,
    ring: Ring,
    limits: Limits,
    webhooks: bool,
    store: Store,
    now: Millis,
    rng: StdRng,
    next_request: u64,
    links: HashMap<LinkId, Peer>,
    routes: HashMap<String, Route>,
    next_generation: u64,
    /// Frames of the input being handled; dropped if it fails.
    staged: Vec<Held>,
    held: VecDeque<(CommitId, Held)>,
    ready: VecDeque<Output>,
    durable: CommitId,
    next_tick: Millis,
    fanout: fanout::Cursors,
    sessions: presence::Sessions,
    subscriptions: presence::Subscriptions,
    replays: inbox::Replays,
    acks: inbox::Acks,
    notify: notify::Notifier,
}

impl Shard {
    /// A shard for `config.node`, reading what `storage` holds (after a restart: exactly what
    /// was committed). `rng` names groups: seed it from the OS (`StdRng::from_os_rng`) so
    /// that group ids are unpredictable (`[NWP-7.7-5]`); tests seed it for repeatability.
    pub fn new(
        config: &BrokerConfig,
        storage: Arc<dyn Storage>,
        now: Millis,
        rng: StdRng,
    ) -> Result<Self, StorageError> {
        let store = Store::new(storage);
        let fanout = fanout::Cursors::load(&store, now)?;
        let notify = notify::Notifier::load(&store, now, config.webhook_url.is_some())?;
        let mut shard = Self {
            node: config.node.clone(),
            ring: config.ring(),
            limits: config.limits.clone(),
            webhooks: config.webhook_url.is_some(),
            store,
            now,
            rng,
            next_request: 1,
            links: HashMap::new(),
            routes: HashMap::new(),
            next_generation: 1,
            staged: Vec::new(),
            held: VecDeque::new(),
            ready: VecDeque::new(),
            durable: 0,
            next_tick: now + TICK_MS,
            fanout,
            sessions: presence::Sessions::default(),
            subscriptions: presence::Subscriptions::default(),
            replays: inbox::Replays::default(),
            acks: inbox::Acks::default(),
            notify,
        };
        // Fan-out to this node's own inboxes has no link to come up: resume it now.
        let node = shard.node.clone();
        shard.resend_fanout(&node);
        shard.end_input();
        Ok(shard)
    }

    /// This shard's node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A link finished its handshake.
    pub fn handle_link_up(&mut self, now: Millis, link: LinkId, peer: Peer) {
        self.now = now;
        let routes = (peer.role == NodeRole::BROKER && peer.dialed) || peer.role == NodeRole::EDGE;
        if routes && peer.node != self.node {
            let generation = self.bump_generation();
            self.routes
                .insert(peer.node.clone(), Route { link, generation });
            if peer.role == NodeRole::BROKER {
                self.resend_fanout(&peer.node);
            }
        }
        self.links.insert(link, peer);
        self.end_input();
    }

    /// A link closed or failed; frames still held for it are dropped.
    pub fn handle_link_down(&mut self, now: Millis, link: LinkId) {
        self.now = now;
        let Some(peer) = self.links.remove(&link) else {
            return;
        };
        if self.routes.get(&peer.node).is_some_and(|r| r.link == link) {
            self.routes.remove(&peer.node);
            self.bump_generation();
        }
        if peer.role == NodeRole::EDGE {
            self.close_link_sessions(link);
        }
        self.end_input();
    }

    /// A frame arrived on a link.
    pub fn handle_frame(&mut self, now: Millis, link: LinkId, frame: Frame) {
        self.now = now;
        let Some(peer) = self.links.get(&link).cloned() else {
            return;
        };
        let outcome = if peer.role == NodeRole::EDGE {
            self.edge_frame(link, &peer.node, frame)
        } else {
            self.broker_frame(&peer.node, frame)
        };
        if let Err(reject) = outcome {
            self.abort();
            self.send(
                Dest::Link(link),
                natter_codec::frame::Error::new(0, reject.code, reject.message).into(),
            );
            if reject.code.closes_connection() {
                self.staged.push(Held::Close(link));
            }
        }
        self.end_input();
    }

    /// Every batch up to `id` is durable: release what waited for it.
    pub fn handle_durable(&mut self, now: Millis, id: CommitId) {
        self.now = now;
        self.durable = self.durable.max(id);
        self.store.durable(self.durable);
    }

    /// The webhook POST of notification `id` finished.
    pub fn handle_webhook(&mut self, now: Millis, id: u64, delivered: bool) {
        self.now = now;
        self.webhook_done(id, delivered);
        self.end_input();
    }

    /// Time passed; call at or after [`Shard::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK_MS;
        self.expire_sessions();
        self.expire_subscriptions();
        self.expire_replays();
        self.retransmit_fanout();
        self.flush_acks();
        self.poll_webhooks();
        self.end_input();
    }

    /// Writes what is coalesced in memory (device acks); call before shutting down.
    pub fn flush(&mut self, now: Millis) {
        self.now = now;
        self.flush_acks();
        self.end_input();
    }

    /// When [`Shard::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Millis {
        self.next_tick
    }

    /// The next thing for the driver to do; call until `None` after every `handle_*`.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(output) = self.ready.pop_front() {
                return Some(output);
            }
            if self
                .held
                .front()
                .is_none_or(|(watermark, _)| *watermark > self.durable)
            {
                return None;
            }
            let (_, held) = self.held.pop_front()?;
            self.release(held);
        }
    }

    fn release(&mut self, held: Held) {
        match held {
            Held::Webhook { id, body } => self.ready.push_back(Output::Webhook { id, body }),
            Held::Close(link) => self.ready.push_back(Output::Close { link }),
            Held::Frame {
                dest: Dest::Link(link),
                frame,
                ..
            } => {
                if self.links.contains_key(&link) {
                    self.ready.push_back(Output::Frame { link, frame });
                }
            }
            Held::Frame {
                dest: Dest::Node(node),
                generation,
                frame,
            } => {
                if node == self.node {
                    let node = self.node.clone();
                    if let Err(reject) = self.broker_frame(&node, frame) {
                        self.abort();
                        tracing::warn!(?reject, "in-process link frame failed");
                    }
                    self.end_input();
                } else if let Some(route) = self.routes.get(&node) {
                    if generation == Some(route.generation) {
                        self.ready.push_back(Output::Frame {
                            link: route.link,
                            frame,
                        });
                    }
                }
            }
        }
    }

    /// Ends the input being handled: its writes become a commit and its frames wait for it.
    fn end_input(&mut self) {
        if let Some((id, batch)) = self.store.finish() {
            self.ready.push_back(Output::Commit { id, batch });
        }
        let watermark = self.store.last_commit();
        for held in self.staged.drain(..) {
            self.held.push_back((watermark, held));
        }
    }

    /// Forgets the writes and frames of the input being handled.
    fn abort(&mut self) {
        self.store.abort();
        self.staged.clear();
    }

    fn bump_generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Queues a frame; it leaves once this input's writes are durable.
    fn send(&mut self, dest: Dest, frame: Frame) {
        let generation = match &dest {
            Dest::Node(node) => self.routes.get(node).map(|r| r.generation),
            Dest::Link(_) => None,
        };
        self.staged.push(Held::Frame {
            dest,
            generation,
            frame,
        });
    }

    /// Queues a frame for a client session behind an edge link.
    fn send_to_session(&mut self, dest: Dest, session: u64, frame: &Frame) {
        match frame.to_bytes() {
            Ok(bytes) => self.send(dest, routed(session, "", "", bytes)),
            Err(error) => tracing::error!(?error, "unencodable frame for a session"),
        }
    }

    /// Answers a client request.
    fn answer(&mut self, client: &Client, frame: Frame) {
        self.send_to_session(Dest::Link(client.link), client.session, &frame);
    }

    fn is_mine(&self, ring_key_owner: Option<&str>) -> bool {
        ring_key_owner == Some(self.node.as_str())
    }

    /// The home broker of a user.
    fn home(&self, user: &str) -> String {
        self.ring.home(user).unwrap_or(&self.node).to_string()
    }

    fn owner(&self, conversation: &str) -> String {
        self.ring
            .conversation_owner(conversation)
            .unwrap_or(&self.node)
            .to_string()
    }

    fn check_home(&self, user: &str) -> Result<(), Reject> {
        if self.is_mine(self.ring.home(user)) {
            Ok(())
        } else {
            Err(Reject::new(
                ErrorCode::WRONG_OWNER,
                "not this user's home broker",
            ))
        }
    }

    /// 64 bits from a cryptographically secure generator: one group id reveals nothing
    /// about another.
    fn random(&mut self) -> u64 {
        self.rng.random()
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// A frame from an edge link.
    fn edge_frame(&mut self, link: LinkId, edge: &str, frame: Frame) -> Result<(), Reject> {
        match frame {
            Frame::Routed(routed) => {
                self.routed_from_edge(link, edge, routed);
                Ok(())
            }
            Frame::SessionOpen(open) => {
                self.session_open(link, open);
                Ok(())
            }
            Frame::SessionClose(close) => {
                self.session_close(link, close.session);
                Ok(())
            }
            Frame::Ping(ping) => {
                self.send(
                    Dest::Link(link),
                    natter_codec::frame::Pong { nonce: ping.nonce }.into(),
                );
                Ok(())
            }
            // [NWP-9.6-3]: an edge watching presence for its own sessions (the backend API).
            Frame::Interest(interest) if *interest.node == *edge => self.interest(interest),
            Frame::Pong(_) | Frame::Unknown(_) => Ok(()),
            other => {
                // [NWP-9.3-7]: the link carries many users' sessions; one stray frame must not
                // take them all down.
                tracing::warn!(edge, frame = ?other.frame_type(), "dropped a frame edges may not send");
                Ok(())
            }
        }
    }

    /// A frame from another broker, or from this one over the in-process link.
    fn broker_frame(&mut self, from: &str, frame: Frame) -> Result<(), Reject> {
        match frame {
            Frame::Fanout(fanout) => self.apply_fanout(from, fanout),
            Frame::FanoutAck(ack) => self.fanout_acked(from, ack),
            Frame::Push(push) => self.push(push),
            Frame::Interest(interest) => self.interest(interest),
            Frame::Fetch(fetch) => self.fetch(from, fetch),
            Frame::Events(events) => self.events(events),
            Frame::Error(error) => {
                self.fetch_failed(error.request);
                Ok(())
            }
            Frame::Routed(routed) => self.routed_from_broker(from, routed),
            Frame::Pong(_) | Frame::Ping(_) | Frame::Unknown(_) => Ok(()),
            other => {
                // [NWP-9.3-7]
                tracing::warn!(from, frame = ?other.frame_type(), "dropped a frame brokers may not send");
                Ok(())
            }
        }
    }

    /// A client request relayed by an edge; every outcome is answered inside ROUTED.
    fn routed_from_edge(&mut self, link: LinkId, edge: &str, routed: Routed) {
        let client = Client {
            link,
            edge: edge.to_string(),
            session: routed.session,
            user: routed.user,
            device: routed.device,
        };
        let (request, outcome) = match Frame::decode(routed.frame) {
            Ok(frame) => (
                frame.request().unwrap_or(0),
                self.client_frame(&client, frame),
            ),
            Err(error) => (
                0,
                Err(Reject::new(
                    ErrorCode::PROTOCOL_VIOLATION,
                    error.to_string(),
                )),
            ),
        };
        if let Err(reject) = outcome {
            self.abort();
            if request == 0 && !reject.code.closes_connection() {
                // ACK and TYPING have no answer: an ERROR with request 0 would read as a
                // connection error (`[NWP-6.1.6-2]`).
                tracing::debug!(?reject, "dropped a failed frame that has no answer");
                return;
            }
            let error = natter_codec::frame::Error::new(request, reject.code, reject.message);
            self.answer(&client, error.into());
        }
    }

    /// A request from a client session: check who may send it, then dispatch by type.
    fn client_frame(&mut self, client: &Client, frame: Frame) -> Result<(), Reject> {
        if frame.frame_type().origin() != Some(Origin::Client)
            && !matches!(frame, Frame::Unknown(_))
        {
            return Err(Reject::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!("{:?} may not be routed to a broker", frame.frame_type()),
            ));
        }
        if !ids::is_valid_user_id(&client.user) || !ids::is_valid_device_id(&client.device) {
            return Err(Reject::new(
                ErrorCode::INVALID_REQUEST,
                "ROUTED names no valid user and device",
            ));
        }
        match frame {
            Frame::Send(send) => self.send_message(client, send),
            Frame::Mark(mark) => self.mark(client, mark),
            Frame::History(history) => self.history(client, history),
            Frame::Typing(typing) => self.typing(client, typing),
            Frame::GroupCreate(create) => self.group_create(client, create),
            Frame::GroupUpdate(update) => self.group_update(client, update),
            Frame::GroupGet(get) => self.group_get(client, get),
            Frame::PresenceSubscribe(subscribe) => self.presence_subscribe(client, subscribe),
            Frame::Resume(resume) => self.resume(client, resume),
            Frame::Ack(ack) => self.ack(client, ack.inbox_seq),
            Frame::Conversations(list) => self.conversations(client, list),
            Frame::Unknown(_) => Ok(()),
            other => Err(Reject::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!("{:?} ends at the edge", other.frame_type()),
            )),
        }
    }

    /// A ROUTED from a broker: a home broker marking delivered on a user's behalf.
    fn routed_from_broker(&mut self, from: &str, routed: Routed) -> Result<(), Reject> {
        let frame = Frame::decode(routed.frame)
            .map_err(|e| Reject::new(ErrorCode::PROTOCOL_VIOLATION, e.to_string()))?;
        match frame {
            Frame::Mark(mark) if routed.session == 0 && mark.request == 0 => {
                if self.ring.home(&routed.user) != Some(from) {
                    return Err(Reject::new(
                        ErrorCode::FORBIDDEN,
                        "only a user's home broker marks on its behalf",
                    ));
                }
                self.apply_mark(&routed.user, &mark.conversation, mark.marker, mark.seq)
            }
            other => Err(Reject::new(
                ErrorCode::PROTOCOL_VIOLATION,
                format!("{:?} is not routed between brokers", other.frame_type()),
            )),
        }
    }
}

/// A ROUTED frame carrying `frame` (already encoded).
fn routed(session: u64, user: &str, device: &str, frame: Bytes) -> Frame {
    Routed {
        session,
        user: user.into(),
        device: device.into(),
        frame,
    }
    .into()
}
