//! One client connection's protocol state, as a sans-IO state machine.
//!
//! The driver (`connection.rs`) feeds it what the client sent with
//! [`Session::handle_client`], what brokers sent for it with [`Session::handle_server`], and the
//! clock with [`Session::poll`]; every input takes `now` in milliseconds since the Unix epoch.
//! Outputs are [`Action`]s the driver carries out in order. The lifecycle is:
//!
//! 1. `AwaitHello`: HELLO must arrive before the hello deadline (else IDLE_TIMEOUT); any other
//!    frame is a PROTOCOL_VIOLATION. The token is checked here.
//! 2. `Opening`: the driver registers the session at the home broker ([`Action::Open`]) and
//!    hands its inbox head to [`Session::opened`], which answers READY.
//! 3. `Ready`: requests are routed by the table of docs/ARCHITECTURE.md; the client must be
//!    heard from at least every 2 x heartbeat (else IDLE_TIMEOUT).

use std::collections::HashMap;

use bytes::Bytes;
use natter_codec::frame::{Conversations, Error, Gap, HistoryPage, Origin, Pong, Ready};
use natter_codec::ids::ConversationId;
use natter_codec::types::{Direction, EventFlags, Features};
use natter_codec::{
    DEFAULT_MAX_FRAME_SIZE, ErrorCode, Frame, FrameType, MAX_FRAME_SIZE_CAP, VERSION,
};

use crate::auth::{AuthError, TokenKeys};
use crate::limits::TokenBucket;
use crate::router::{Destination, Router};

/// ACK and TYPING may come this many times as often as requests.
const CHATTER_FACTOR: f64 = 4.0;
/// The smallest `max_frame_size` a HELLO may announce (`[NWP-3-4]`).
const MIN_CLIENT_FRAME_SIZE: u64 = 4_096;
/// TYPING is relayed at most once a second per conversation (`[NWP-6.2.7-2]`).
const TYPING_INTERVAL_MS: u64 = 1_000;
/// Conversations whose typing rate one connection tracks; past this, new ones wait.
const MAX_TYPING_TRACKED: usize = 64;
/// Presence subscriptions one connection may hold (`[NWP-7.9-6]`).
pub const MAX_PRESENCE_SUBSCRIPTIONS: usize = 64;
/// The longest presence interest (`[NWP-7.9-2]`); longer TTLs are reduced.
const MAX_INTEREST_TTL_MS: u64 = 300_000;
/// The most a conversation summary can take on the wire: a 160-byte id, a 256-byte title,
/// their lengths, the kind and four 8-byte varints.
const MAX_SUMMARY_LEN: u64 = 162 + 1 + 258 + 4 * 8;
/// Room in a CONVERSATION_LIST for everything but its entries (type, request, cursor, count).
const LIST_OVERHEAD: u64 = 256;

/// The knobs of a session, from [`crate::config::EdgeConfig`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// HELLO must arrive within this many milliseconds.
    pub hello_timeout_ms: u64,
    /// The heartbeat interval announced in READY.
    pub heartbeat_ms: u64,
    /// The largest frame the client may send (announced in READY).
    pub max_frame_size: u64,
    /// Requests awaiting an answer, at most.
    pub max_in_flight: usize,
    /// Token bucket refill rate, requests per second.
    pub requests_per_sec: f64,
    /// Token bucket size.
    pub request_burst: f64,
    /// Retry-after for UNAVAILABLE.
    pub unavailable_retry_ms: u64,
}

/// Something the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this edge-made frame to the client.
    Reply(Frame),
    /// Register the session at the user's home broker (broker index), then call
    /// [`Session::opened`] or [`Session::open_failed`].
    Open {
        /// The home broker's index.
        broker: usize,
        /// The authenticated user.
        user: String,
        /// The authenticated device.
        device: String,
    },
    /// Forward the client's frame, verbatim, to a broker inside ROUTED.
    Route {
        /// The broker's index.
        broker: usize,
        /// The request id, when the frame expects an answer.
        request: Option<u64>,
        /// The frame as the client sent it.
        frame: Bytes,
    },
    /// Send `ERROR{0, code}` and close the connection.
    Close(ErrorCode, &'static str),
}

/// A request awaiting its answer from a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The broker it was routed to.
    pub broker: usize,
    /// The request's frame type.
    pub frame_type: FrameType,
    /// When the edge forwarded it.
    pub sent_ms: u64,
    /// For HISTORY: whether it reads backward, so a page too large for the client is cut at
    /// the end away from the anchor.
    pub backward: bool,
}

/// What to do with a frame a broker sent for this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// The frame to write to the client, if it passes the feature filter.
    pub forward: Option<Bytes>,
    /// The request this frame answered, for latency metrics.
    pub answered: Option<InFlight>,
}

#[derive(Debug)]
enum Phase {
    AwaitHello,
    Opening {
        user: String,
        device: String,
        features: Features,
    },
    Ready,
    Closed,
}

/// The state of one client connection.
#[derive(Debug)]
pub struct Session {
    id: u64,
    config: SessionConfig,
    phase: Phase,
    opened_ms: u64,
    heard_ms: u64,
    user: String,
    device: String,
    features: Features,
    bucket: TokenBucket,
    /// ACK and TYPING have no answer to carry a RATE_LIMITED, so past their own, roomier
    /// bucket they are dropped: harmless, since ACKs are cumulative and typing repeats.
    chatter: TokenBucket,
    in_flight: HashMap<u64, InFlight>,
    draining: bool,
    /// The largest frame the client accepts (`[NWP-3-3]`): the default until HELLO.
    client_max_frame: u64,
    /// When the token expires (`[NWP-5.1-8]`).
    expires_at: u64,
    /// Per conversation: when TYPING was last relayed, and whether it said active.
    typing: HashMap<String, (u64, bool)>,
    /// Per conversation: when this connection's presence interest ends.
    presence: HashMap<String, u64>,
    /// PRESENCE_SUBSCRIBE requests in flight, by request id: the conversation they name.
    subscribing: HashMap<u64, String>,
}

impl Session {
    /// A new connection, accepted at `now_ms`, named `id` on links.
    pub fn new(id: u64, config: SessionConfig, now_ms: u64) -> Self {
        let bucket = TokenBucket::new(config.requests_per_sec, config.request_burst, now_ms);
        let chatter = TokenBucket::new(
            config.requests_per_sec * CHATTER_FACTOR,
            config.request_burst * CHATTER_FACTOR,
            now_ms,
        );
        Self {
            id,
            config,
            phase: Phase::AwaitHello,
            opened_ms: now_ms,
            heard_ms: now_ms,
            user: String::new(),
            device: String::new(),
            features: Features::NONE,
            bucket,
            chatter,
            in_flight: HashMap::new(),
            draining: false,
            client_max_frame: DEFAULT_MAX_FRAME_SIZE,
            expires_at: u64::MAX,
            typing: HashMap::new(),
            presence: HashMap::new(),
            subscribing: HashMap::new(),
        }
    }

    /// The session id sent in READY and on links.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The authenticated user; empty before HELLO.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The authenticated device; empty before HELLO.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether READY has been sent.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Whether requests are still awaiting answers.
    pub fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The conversations whose presence interest this connection still holds; the driver
    /// ends them when the connection closes (`[NWP-7.9-5]`).
    pub fn presence_subscriptions(&self, now_ms: u64) -> Vec<String> {
        self.presence
            .iter()
            .filter(|(_, until)| **until > now_ms)
            .map(|(conversation, _)| conversation.clone())
            .collect()
    }

    /// Handles one complete frame from the client.
    pub fn handle_client(
        &mut self,
        raw: Bytes,
        now_ms: u64,
        keys: &TokenKeys,
        router: &Router,
    ) -> Vec<Action> {
        self.heard_ms = now_ms;
        let frame = match Frame::decode(raw.clone()) {
            Ok(frame) => frame,
            Err(error) => return self.close(error.code(), "malformed frame"),
        };
        match self.phase {
            Phase::AwaitHello => match frame {
                Frame::Hello(hello) => self.hello(hello, now_ms, keys, router),
                _ => self.close(ErrorCode::PROTOCOL_VIOLATION, "expected HELLO"),
            },
            Phase::Opening { .. } => {
                self.close(ErrorCode::PROTOCOL_VIOLATION, "frame before READY")
            }
            Phase::Ready => self.ready_frame(frame, raw, now_ms, router),
            Phase::Closed => Vec::new(),
        }
    }

    /// The home broker registered the session: answers READY.
    pub fn opened(&mut self, inbox_head: u64, now_ms: u64) -> Vec<Action> {
        let Phase::Opening {
            user,
            device,
            features,
        } = std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            return Vec::new();
        };
        self.user = user;
        self.device = device;
        self.features = features;
        self.heard_ms = now_ms;
        vec![Action::Reply(Frame::Ready(Ready {
            version: VERSION,
            features,
            max_frame_size: self.config.max_frame_size,
            heartbeat_ms: self.config.heartbeat_ms,
            session: self.id,
            user: self.user.as_str().into(),
            device: self.device.as_str().into(),
            inbox_head,
            server_time: now_ms,
        }))]
    }

    /// The home broker could not register the session.
    pub fn open_failed(&mut self, code: ErrorCode) -> Vec<Action> {
        let code = if code.closes_connection() {
            code
        } else {
            ErrorCode::UNAVAILABLE
        };
        self.close(code, "home broker unavailable")
    }

    /// Handles one complete frame a broker sent for this session.
    pub fn handle_server(&mut self, raw: Bytes) -> ServerFrame {
        let Ok(frame_type) = natter_codec::frame::peek_type(&raw) else {
            return ServerFrame {
                forward: None,
                answered: None,
            };
        };
        let wanted = match frame_type {
            FrameType::RECEIPT => self.features.contains(Features::RECEIPTS),
            FrameType::TYPING_UPDATE => self.features.contains(Features::TYPING),
            FrameType::PRESENCE => self.features.contains(Features::PRESENCE),
            _ => true,
        };
        if !self.is_ready() || !wanted {
            return ServerFrame {
                forward: None,
                answered: None,
            };
        }
        let mut answered = None;
        if is_answer(frame_type) {
            let Ok(frame) = Frame::decode(raw.clone()) else {
                return ServerFrame {
                    forward: None,
                    answered: None,
                };
            };
            if let Frame::Error(error) = &frame
                && error.code == ErrorCode::WRONG_OWNER
            {
                // The broker disagrees with our ring; to the client this is a retryable outage.
                answered = self.in_flight.remove(&error.request);
                let reply = self.unavailable(error.request, "ring is changing");
                return ServerFrame {
                    forward: Frame::from(reply).to_bytes().ok(),
                    answered,
                };
            }
            if let Some(request) = frame.request().filter(|request| *request != 0) {
                answered = self.in_flight.remove(&request);
                if let Some(conversation) = self.subscribing.remove(&request)
                    && frame_type == FrameType::ERROR
                {
                    self.presence.remove(&conversation);
                }
            }
        }
        let forward = if frame_len(&raw) > self.client_max_frame {
            self.fit(raw, answered)
        } else {
            Some(raw)
        };
        ServerFrame { forward, answered }
    }

    /// Shapes a frame longer than the client's maximum so that it fits (`[NWP-7.12-3]`): a
    /// DELIVER becomes a GAP naming its event, a HISTORY_PAGE loses events at the end away
    /// from the anchor, and any other answer becomes LIMIT_EXCEEDED.
    fn fit(&self, raw: Bytes, answered: Option<InFlight>) -> Option<Bytes> {
        let frame = Frame::decode(raw).ok()?;
        let fitted: Frame = match frame {
            // [NWP-6.2.3-4]
            Frame::Deliver(deliver) => Gap {
                conversation: deliver.conversation,
                from: deliver.event.seq,
                to: deliver.event.seq,
            }
            .into(),
            Frame::HistoryPage(page) => {
                let backward = answered.is_none_or(|request| request.backward);
                shorten_page(page, backward, self.client_max_frame).into()
            }
            other => match other.request().filter(|request| *request != 0) {
                Some(request) => Error::new(
                    request,
                    ErrorCode::LIMIT_EXCEEDED,
                    "the answer does not fit your max_frame_size",
                )
                .into(),
                // A push that cannot fit carries nothing the client must have.
                None => return None,
            },
        };
        fitted.to_bytes().ok()
    }

    /// A link went down: every request routed to `broker` is answered UNAVAILABLE.
    pub fn broker_lost(&mut self, broker: usize) -> Vec<Frame> {
        let lost: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, in_flight)| in_flight.broker == broker)
            .map(|(request, _)| *request)
            .collect();
        lost.into_iter()
            .map(|request| {
                self.in_flight.remove(&request);
                Frame::from(self.unavailable(request, "broker unreachable"))
            })
            .collect()
    }

    /// A routed request could not be handed to its broker's link.
    pub fn route_failed(&mut self, request: Option<u64>) -> Vec<Action> {
        match request {
            Some(request) => {
                self.in_flight.remove(&request);
                vec![Action::Reply(
                    self.unavailable(request, "broker unreachable").into(),
                )]
            }
            None => Vec::new(),
        }
    }

    /// The edge is draining: new requests are refused with UNAVAILABLE from now on.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Checks the HELLO and heartbeat deadlines.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Action> {
        let silent = now_ms.saturating_sub(self.heard_ms);
        match self.phase {
            Phase::AwaitHello | Phase::Opening { .. }
                if now_ms.saturating_sub(self.opened_ms) >= self.config.hello_timeout_ms =>
            {
                self.close(ErrorCode::IDLE_TIMEOUT, "no HELLO in time")
            }
            Phase::Ready if silent >= 2 * self.config.heartbeat_ms => {
                self.close(ErrorCode::IDLE_TIMEOUT, "no heartbeat")
            }
            // [NWP-5.1-8]
            Phase::Ready if now_ms >= self.expires_at => {
                self.close(ErrorCode::TOKEN_EXPIRED, "token expired")
            }
            _ => Vec::new(),
        }
    }

    /// When [`Session::poll`] next needs to run, in milliseconds since the epoch.
    pub fn next_deadline(&self) -> u64 {
        match self.phase {
            Phase::Ready => (self.heard_ms + 2 * self.config.heartbeat_ms).min(self.expires_at),
            _ => self.opened_ms + self.config.hello_timeout_ms,
        }
    }

    fn hello(
        &mut self,
        hello: natter_codec::frame::Hello,
        now_ms: u64,
        keys: &TokenKeys,
        router: &Router,
    ) -> Vec<Action> {
        if !(hello.min_version..=hello.max_version).contains(&VERSION) {
            return self.close(
                ErrorCode::UNSUPPORTED_VERSION,
                "this server speaks version 1",
            );
        }
        if hello.max_frame_size < MIN_CLIENT_FRAME_SIZE {
            // [NWP-3-4]
            return self.close(
                ErrorCode::PROTOCOL_VIOLATION,
                "max_frame_size is below 4096",
            );
        }
        self.client_max_frame = hello.max_frame_size.min(MAX_FRAME_SIZE_CAP);
        let claims = match keys.verify(&hello.token, now_ms) {
            Ok(claims) => claims,
            Err(AuthError::Expired) => {
                return self.close(ErrorCode::TOKEN_EXPIRED, "token expired");
            }
            Err(AuthError::Unauthenticated) => {
                return self.close(ErrorCode::UNAUTHENTICATED, "token not valid");
            }
        };
        let Some(broker) = router.home(&claims.user) else {
            return self.close(ErrorCode::INTERNAL_ERROR, "no brokers configured");
        };
        self.user = claims.user.clone();
        self.device = claims.device.clone();
        self.expires_at = claims.expires_at;
        self.phase = Phase::Opening {
            user: claims.user.clone(),
            device: claims.device.clone(),
            features: hello.features & Features::ALL,
        };
        vec![Action::Open {
            broker,
            user: claims.user,
            device: claims.device,
        }]
    }

    fn ready_frame(
        &mut self,
        frame: Frame,
        raw: Bytes,
        now_ms: u64,
        router: &Router,
    ) -> Vec<Action> {
        let frame_type = frame.frame_type();
        match frame_type.origin() {
            None => return Vec::new(),
            Some(Origin::Server | Origin::Link) => {
                return self.close(
                    ErrorCode::PROTOCOL_VIOLATION,
                    "frame not allowed from a client",
                );
            }
            Some(Origin::Client | Origin::Either) => {}
        }
        let destination = match &frame {
            Frame::Ping(ping) => return vec![Action::Reply(Pong { nonce: ping.nonce }.into())],
            Frame::Pong(_) | Frame::Error(_) => return Vec::new(),
            Frame::Hello(_) => return self.close(ErrorCode::PROTOCOL_VIOLATION, "second HELLO"),
            Frame::Send(f) => Destination::Conversation(f.conversation.to_string()),
            Frame::Mark(f) => Destination::Conversation(f.conversation.to_string()),
            Frame::History(f) => Destination::Conversation(f.conversation.to_string()),
            Frame::GroupUpdate(f) => Destination::Conversation(f.conversation.to_string()),
            Frame::GroupGet(f) => Destination::Conversation(f.conversation.to_string()),
            Frame::PresenceSubscribe(f) => Destination::Conversation(f.conversation.to_string()),
            Frame::Typing(f) => Destination::Conversation(f.conversation.to_string()),
            Frame::Ack(_) | Frame::Resume(_) | Frame::Conversations(_) | Frame::GroupCreate(_) => {
                Destination::Home
            }
            _ => return Vec::new(),
        };
        let request = frame.request();
        if request == Some(0) {
            return self.close(ErrorCode::PROTOCOL_VIOLATION, "request id 0");
        }
        if let Destination::Conversation(conversation) = &destination
            && ConversationId::parse(conversation).is_none()
        {
            return match request {
                Some(request) => vec![Action::Reply(
                    Error::new(request, ErrorCode::INVALID_REQUEST, "bad conversation id").into(),
                )],
                None => Vec::new(),
            };
        }
        let Some(request) = request else {
            if let Frame::Typing(typing) = &frame
                && !self.typing_allowed(&typing.conversation, typing.active, now_ms)
            {
                return Vec::new();
            }
            let limited = self.chatter.take(now_ms).is_err();
            return match router.broker_for(&destination, &self.user) {
                Some(broker) if !limited => vec![Action::Route {
                    broker,
                    request: None,
                    frame: raw,
                }],
                _ => Vec::new(),
            };
        };
        if let Some(refusal) = self.refuse(request, now_ms) {
            return vec![Action::Reply(refusal.into())];
        }
        let Some(broker) = router.broker_for(&destination, &self.user) else {
            return vec![Action::Reply(self.unavailable(request, "no broker").into())];
        };
        let raw = match &frame {
            Frame::PresenceSubscribe(subscribe) => {
                let until = now_ms + subscribe.ttl_ms.min(MAX_INTEREST_TTL_MS);
                if !self.hold_interest(&subscribe.conversation, until, now_ms) {
                    return vec![Action::Reply(
                        Error::new(
                            request,
                            ErrorCode::LIMIT_EXCEEDED,
                            "at most 64 presence subscriptions per connection",
                        )
                        .into(),
                    )];
                }
                self.subscribing
                    .insert(request, subscribe.conversation.to_string());
                raw
            }
            Frame::Conversations(list) => self.fit_conversations(list, raw),
            _ => raw,
        };
        let backward = matches!(&frame, Frame::History(h) if h.direction != Direction::FORWARD);
        self.in_flight.insert(
            request,
            InFlight {
                broker,
                frame_type,
                sent_ms: now_ms,
                backward,
            },
        );
        vec![Action::Route {
            broker,
            request: Some(request),
            frame: raw,
        }]
    }

    /// Whether a TYPING may be relayed: once a second per conversation, except that the
    /// `false` ending a relayed `true` always goes through (`[NWP-6.2.7-2]`).
    fn typing_allowed(&mut self, conversation: &str, active: bool, now_ms: u64) -> bool {
        let allowed = match self.typing.get(conversation) {
            Some((last, was_active)) => {
                now_ms >= last + TYPING_INTERVAL_MS || (*was_active && !active)
            }
            None => {
                if self.typing.len() >= MAX_TYPING_TRACKED {
                    self.typing
                        .retain(|_, (last, _)| now_ms < *last + TYPING_INTERVAL_MS);
                }
                self.typing.len() < MAX_TYPING_TRACKED
            }
        };
        if allowed {
            self.typing
                .insert(conversation.to_string(), (now_ms, active));
        }
        allowed
    }

    /// Records a presence interest until `until` (or its end when `until` is now), within
    /// the per-connection limit (`[NWP-7.9-6]`); false if the limit is reached.
    fn hold_interest(&mut self, conversation: &str, until: u64, now_ms: u64) -> bool {
        if until <= now_ms {
            self.presence.remove(conversation);
            return true;
        }
        if !self.presence.contains_key(conversation) {
            self.presence.retain(|_, end| *end > now_ms);
            if self.presence.len() >= MAX_PRESENCE_SUBSCRIPTIONS {
                return false;
            }
        }
        self.presence.insert(conversation.to_string(), until);
        true
    }

    /// Lowers a CONVERSATIONS limit so the answer fits the client's maximum frame size
    /// (`[NWP-6.3.3-1]`): the list's cursor is the broker's, so it cannot be cut afterwards.
    fn fit_conversations(&self, list: &Conversations, raw: Bytes) -> Bytes {
        let fits = (self.client_max_frame.saturating_sub(LIST_OVERHEAD) / MAX_SUMMARY_LEN).max(1);
        if list.limit <= fits {
            return raw;
        }
        let mut lowered = list.clone();
        lowered.limit = fits;
        Frame::from(lowered).to_bytes().unwrap_or(raw)
    }

    /// Why a request cannot be forwarded now, as the ERROR that answers it.
    fn refuse(&mut self, request: u64, now_ms: u64) -> Option<Error> {
        if self.draining {
            return Some(self.unavailable(request, "server draining"));
        }
        if self.in_flight.contains_key(&request) {
            return Some(Error::new(
                request,
                ErrorCode::INVALID_REQUEST,
                "request id already in flight",
            ));
        }
        if self.in_flight.len() >= self.config.max_in_flight {
            let mut error = Error::new(
                request,
                ErrorCode::RATE_LIMITED,
                "too many requests in flight",
            );
            error.retry_after_ms = 100;
            return Some(error);
        }
        if let Err(wait_ms) = self.bucket.take(now_ms) {
            let mut error = Error::new(request, ErrorCode::RATE_LIMITED, "rate limit");
            error.retry_after_ms = wait_ms;
            return Some(error);
        }
        None
    }

    fn unavailable(&self, request: u64, message: &'static str) -> Error {
        let mut error = Error::new(request, ErrorCode::UNAVAILABLE, message);
        error.retry_after_ms = self.config.unavailable_retry_ms;
        error
    }

    fn close(&mut self, code: ErrorCode, message: &'static str) -> Vec<Action> {
        self.phase = Phase::Closed;
        vec![Action::Close(code, message)]
    }
}

/// A frame's Length: the bytes after its length prefix.
fn frame_len(raw: &Bytes) -> u64 {
    let prefix = raw.first().map_or(1, |first| 1usize << (first >> 6));
    raw.len().saturating_sub(prefix) as u64
}

/// Cuts a page until it fits in `max` (`[NWP-7.5-6]`): events go from the end away from the
/// anchor (the oldest when reading backward) so the client pages on without a hole, and an
/// event too large alone keeps its seq with its body left out.
fn shorten_page(mut page: HistoryPage, backward: bool, max: u64) -> HistoryPage {
    use natter_codec::field::Field;
    // The length prefix is counted too, which errs on the safe side by a few bytes.
    let mut len = Frame::from(page.clone()).encoded_len() as u64;
    while page.events.len() > 1 && len > max {
        let dropped = if backward {
            page.events.remove(0)
        } else {
            page.events.pop().unwrap_or_default()
        };
        len -= dropped.encoded_len() as u64;
        page.more = true;
    }
    if len > max
        && let Some(event) = page.events.first_mut()
    {
        event.body = Bytes::new();
        event.content_type = "".into();
        event.flags = event.flags | EventFlags::OMITTED;
    }
    page
}

/// Whether a server frame type is the terminal answer to a request.
fn is_answer(frame_type: FrameType) -> bool {
    matches!(
        frame_type,
        FrameType::ERROR
            | FrameType::DONE
            | FrameType::SEND_ACK
            | FrameType::SYNCED
            | FrameType::HISTORY_PAGE
            | FrameType::CONVERSATION_LIST
            | FrameType::GROUP_INFO
    )
}

#[cfg(test)]
mod tests {
    use natter_codec::frame::{
        Ack, Deliver, Done, GroupInfo, Hello, History, Ping, PresenceSubscribe, Receipt, Resume,
        Routed, Send, SendAck, Typing, TypingUpdate,
    };
    use natter_codec::types::{Member, Role};

    use super::*;
    use crate::config::TokenKey;

    const T0: u64 = 1_000_000;

    fn config() -> SessionConfig {
        SessionConfig {
            hello_timeout_ms: 10_000,
            heartbeat_ms: 30_000,
            max_frame_size: 65_536,
            max_in_flight: 4,
            requests_per_sec: 10.0,
            request_burst: 3.0,
            unavailable_retry_ms: 500,
        }
    }

    fn keys() -> TokenKeys {
        TokenKeys::new(vec![TokenKey {
            id: "k1".into(),
            secret: "s".into(),
        }])
        .unwrap()
    }

    fn router() -> Router {
        Router::new(1, vec!["b1".into(), "b2".into(), "b3".into()], 64)
    }

    fn raw(frame: impl Into<Frame>) -> Bytes {
        frame.into().to_bytes().unwrap()
    }

    fn hello(token: &str, features: Features) -> Bytes {
        raw(Hello {
            min_version: 1,
            max_version: 1,
            features,
            max_frame_size: 65_536,
            token: Bytes::copy_from_slice(token.as_bytes()),
            agent: "test".into(),
        })
    }

    fn send(request: u64, conversation: &str) -> Bytes {
        raw(Send {
            request,
            conversation: conversation.into(),
            client_msg_id: request,
            body: Bytes::from_static(b"hi"),
            ..Send::default()
        })
    }

    /// A session past READY for alice with the given features, on a token valid for a day.
    fn ready(features: Features) -> Session {
        let mut session = Session::new(7, config(), T0);
        let token = keys().mint("alice", "phone", T0 + 86_400_000);
        let actions = session.handle_client(hello(&token, features), T0, &keys(), &router());
        let home = router().home("alice").unwrap();
        assert_eq!(
            actions,
            vec![Action::Open {
                broker: home,
                user: "alice".into(),
                device: "phone".into()
            }]
        );
        session.opened(42, T0);
        session
    }

    fn closed_with(actions: &[Action]) -> Option<ErrorCode> {
        match actions {
            [Action::Close(code, _)] => Some(*code),
            _ => None,
        }
    }

    fn replied_error(actions: &[Action]) -> Option<(u64, ErrorCode, u64)> {
        match actions {
            [Action::Reply(Frame::Error(e))] => Some((e.request, e.code, e.retry_after_ms)),
            _ => None,
        }
    }

    #[test]
    fn hello_opens_the_session_and_ready_grants_the_common_features() {
        let mut session = Session::new(7, config(), T0);
        let token = keys().mint("alice", "phone", T0 + 60_000);
        let wanted = Features::RECEIPTS | Features(0x80);
        session.handle_client(hello(&token, wanted), T0, &keys(), &router());
        assert!(!session.is_ready());
        let actions = session.opened(42, T0 + 5);
        let [Action::Reply(Frame::Ready(ready))] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(
            ready.features,
            Features::RECEIPTS,
            "unknown feature bits are not granted"
        );
        assert_eq!(ready.inbox_head, 42);
        assert_eq!(ready.heartbeat_ms, 30_000);
        assert_eq!(ready.session, 7);
        assert_eq!(
            (ready.user.as_ref(), ready.device.as_ref()),
            ("alice", "phone")
        );
        assert_eq!(ready.server_time, T0 + 5);
        assert!(session.is_ready());
    }

    #[test]
    fn hello_errors_close_with_their_code() {
        let good = keys().mint("alice", "phone", T0 + 1);
        let expired = keys().mint("alice", "phone", T0);
        let foreign = TokenKeys::new(vec![TokenKey {
            id: "k1".into(),
            secret: "not ours".into(),
        }])
        .unwrap()
        .mint("alice", "phone", T0 + 1);
        let old_version = raw(Hello {
            min_version: 2,
            max_version: 3,
            token: Bytes::from(good.clone()),
            ..Hello::default()
        });
        let cases = [
            (hello(&expired, Features::ALL), ErrorCode::TOKEN_EXPIRED),
            (hello(&foreign, Features::ALL), ErrorCode::UNAUTHENTICATED),
            (hello("garbage", Features::ALL), ErrorCode::UNAUTHENTICATED),
            (old_version, ErrorCode::UNSUPPORTED_VERSION),
            (raw(Ping { nonce: 1 }), ErrorCode::PROTOCOL_VIOLATION),
            (send(1, "d/a/b"), ErrorCode::PROTOCOL_VIOLATION),
            (
                Bytes::from_static(&[0x02, 0x03, 0x80]),
                ErrorCode::PROTOCOL_VIOLATION,
            ),
        ];
        for (frame, code) in cases {
            let mut session = Session::new(1, config(), T0);
            let actions = session.handle_client(frame, T0, &keys(), &router());
            assert_eq!(closed_with(&actions), Some(code));
        }
    }

    #[test]
    fn hello_must_come_in_time() {
        let mut session = Session::new(1, config(), T0);
        assert_eq!(session.next_deadline(), T0 + 10_000);
        assert!(session.poll(T0 + 9_999).is_empty());
        assert_eq!(
            closed_with(&session.poll(T0 + 10_000)),
            Some(ErrorCode::IDLE_TIMEOUT)
        );
    }

    #[test]
    fn silence_for_two_heartbeats_is_a_zombie() {
        let mut session = ready(Features::ALL);
        let later = T0 + 50_000;
        session.handle_client(raw(Ping { nonce: 1 }), later, &keys(), &router());
        assert_eq!(session.next_deadline(), later + 60_000);
        assert!(session.poll(later + 59_999).is_empty());
        assert_eq!(
            closed_with(&session.poll(later + 60_000)),
            Some(ErrorCode::IDLE_TIMEOUT)
        );
    }

    #[test]
    fn requests_are_routed_by_the_architecture_table() {
        let router = router();
        let mut session = ready(Features::ALL);
        let home = router.home("alice").unwrap();
        let conversation = "d/alice/bob";
        let owner = router
            .broker_for(&Destination::Conversation(conversation.into()), "alice")
            .unwrap();

        let frame = send(1, conversation);
        let actions = session.handle_client(frame.clone(), T0, &keys(), &router);
        assert_eq!(
            actions,
            vec![Action::Route {
                broker: owner,
                request: Some(1),
                frame
            }]
        );

        let frame = raw(Resume {
            request: 2,
            after: 0,
        });
        let actions = session.handle_client(frame.clone(), T0, &keys(), &router);
        assert_eq!(
            actions,
            vec![Action::Route {
                broker: home,
                request: Some(2),
                frame
            }]
        );

        let frame = raw(Ack { inbox_seq: 3 });
        let actions = session.handle_client(frame.clone(), T0, &keys(), &router);
        assert_eq!(
            actions,
            vec![Action::Route {
                broker: home,
                request: None,
                frame
            }]
        );

        let actions = session.handle_client(raw(Ping { nonce: 9 }), T0, &keys(), &router);
        assert_eq!(actions, vec![Action::Reply(Pong { nonce: 9 }.into())]);

        let actions = session.handle_client(send(4, "x/nope"), T0, &keys(), &router);
        assert_eq!(
            replied_error(&actions),
            Some((4, ErrorCode::INVALID_REQUEST, 0))
        );
    }

    #[test]
    fn frames_from_the_wrong_side_are_protocol_violations() {
        let deliver = raw(Deliver::default());
        let routed = raw(Routed::default());
        for frame in [deliver, routed, hello("x", Features::ALL)] {
            let mut session = ready(Features::ALL);
            let actions = session.handle_client(frame, T0, &keys(), &router());
            assert_eq!(closed_with(&actions), Some(ErrorCode::PROTOCOL_VIOLATION));
        }
        let mut session = ready(Features::ALL);
        let unknown = Bytes::from_static(&[0x02, 0x3f, 0x00]);
        assert!(
            session
                .handle_client(unknown, T0, &keys(), &router())
                .is_empty()
        );
        let zero = send(0, "d/alice/bob");
        let actions = session.handle_client(zero, T0, &keys(), &router());
        assert_eq!(closed_with(&actions), Some(ErrorCode::PROTOCOL_VIOLATION));
    }

    #[test]
    fn the_rate_limit_answers_with_retry_after() {
        let mut session = ready(Features::ALL);
        for request in 1..=3 {
            let actions =
                session.handle_client(send(request, "d/alice/bob"), T0, &keys(), &router());
            assert!(matches!(actions.as_slice(), [Action::Route { .. }]));
            session.handle_server(raw(Done { request }));
        }
        let actions = session.handle_client(send(4, "d/alice/bob"), T0, &keys(), &router());
        assert_eq!(
            replied_error(&actions),
            Some((4, ErrorCode::RATE_LIMITED, 100))
        );
        let actions = session.handle_client(send(4, "d/alice/bob"), T0 + 100, &keys(), &router());
        assert!(matches!(actions.as_slice(), [Action::Route { .. }]));
    }

    #[test]
    fn acks_and_typing_have_their_own_roomier_bucket() {
        let mut session = ready(Features::ALL);
        let routed = (0..20)
            .filter(|i| {
                let frame = raw(Ack { inbox_seq: *i });
                !session
                    .handle_client(frame, T0, &keys(), &router())
                    .is_empty()
            })
            .count();
        assert_eq!(routed, 12, "4 x the burst of 3");
        let actions = session.handle_client(send(1, "d/alice/bob"), T0, &keys(), &router());
        assert!(
            matches!(actions.as_slice(), [Action::Route { .. }]),
            "requests are unaffected"
        );
    }

    #[test]
    fn in_flight_requests_are_unique_and_bounded() {
        let mut session = ready(Features::ALL);
        session.config.request_burst = 100.0;
        session.bucket = TokenBucket::new(100.0, 100.0, T0);
        session.handle_client(send(1, "d/alice/bob"), T0, &keys(), &router());
        let actions = session.handle_client(send(1, "d/alice/bob"), T0, &keys(), &router());
        assert_eq!(
            replied_error(&actions),
            Some((1, ErrorCode::INVALID_REQUEST, 0))
        );
        for request in 2..=4 {
            session.handle_client(send(request, "d/alice/bob"), T0, &keys(), &router());
        }
        let actions = session.handle_client(send(5, "d/alice/bob"), T0, &keys(), &router());
        assert_eq!(
            replied_error(&actions).map(|e| e.1),
            Some(ErrorCode::RATE_LIMITED)
        );
    }

    #[test]
    fn answers_end_requests_and_a_lost_broker_fails_only_its_own() {
        let router = router();
        let mut session = ready(Features::ALL);
        let owner = |conversation: &str| {
            router
                .broker_for(&Destination::Conversation(conversation.into()), "alice")
                .unwrap()
        };
        // Find two conversations owned by different brokers.
        let first = "d/alice/bob".to_string();
        let second = (0..100)
            .map(|i| format!("d/alice/u{i}"))
            .find(|c| owner(c) != owner(&first))
            .unwrap();
        session.handle_client(send(1, &first), T0, &keys(), &router);
        session.handle_client(send(2, &second), T0 + 1, &keys(), &router);
        session.handle_client(send(3, &first), T0 + 2, &keys(), &router);

        let ack = raw(SendAck {
            request: 3,
            seq: 1,
            timestamp: 0,
            duplicate: false,
        });
        let handled = session.handle_server(ack.clone());
        assert_eq!(handled.forward, Some(ack));
        assert_eq!(
            handled.answered.map(|a| (a.frame_type, a.sent_ms)),
            Some((FrameType::SEND, T0 + 2))
        );

        let failed = session.broker_lost(owner(&first));
        let requests: Vec<u64> = failed.iter().filter_map(Frame::request).collect();
        assert_eq!(requests, vec![1]);
        assert!(
            matches!(&failed[0], Frame::Error(e) if e.code == ErrorCode::UNAVAILABLE && e.retry_after_ms == 500)
        );
        assert!(session.has_in_flight(), "request 2 is still waiting");
    }

    #[test]
    fn wrong_owner_becomes_unavailable_for_the_client() {
        let mut session = ready(Features::ALL);
        session.handle_client(send(1, "d/alice/bob"), T0, &keys(), &router());
        let wrong = raw(Error::new(1, ErrorCode::WRONG_OWNER, "not mine"));
        let forward = session.handle_server(wrong).forward.unwrap();
        let Frame::Error(error) = Frame::decode(forward).unwrap() else {
            panic!()
        };
        assert_eq!((error.request, error.code), (1, ErrorCode::UNAVAILABLE));
        assert!(!session.has_in_flight());
    }

    #[test]
    fn frames_of_features_not_negotiated_are_filtered() {
        let typing = raw(TypingUpdate::default());
        let receipt = raw(Receipt::default());
        let mut session = ready(Features::RECEIPTS);
        assert_eq!(session.handle_server(typing.clone()).forward, None);
        assert_eq!(
            session.handle_server(receipt.clone()).forward,
            Some(receipt)
        );
        let mut session = ready(Features::TYPING);
        assert_eq!(session.handle_server(typing.clone()).forward, Some(typing));
    }

    #[test]
    fn a_draining_session_refuses_new_requests() {
        let mut session = ready(Features::ALL);
        session.drain();
        let actions = session.handle_client(send(1, "d/alice/bob"), T0, &keys(), &router());
        assert_eq!(
            replied_error(&actions),
            Some((1, ErrorCode::UNAVAILABLE, 500))
        );
    }

    /// A session past READY whose HELLO announced `max_frame_size`.
    fn ready_with_max_frame(max_frame_size: u64) -> Session {
        let mut session = Session::new(7, config(), T0);
        let token = keys().mint("alice", "phone", T0 + 60_000);
        let hello = raw(Hello {
            min_version: 1,
            max_version: 1,
            features: Features::NONE,
            max_frame_size,
            token: Bytes::copy_from_slice(token.as_bytes()),
            agent: "".into(),
        });
        session.handle_client(hello, T0, &keys(), &router());
        session.opened(0, T0);
        session
    }

    fn forwarded(session: &mut Session, frame: impl Into<Frame>) -> Option<Frame> {
        session
            .handle_server(raw(frame))
            .forward
            .map(|bytes| Frame::decode(bytes).unwrap())
    }

    fn event(seq: u64, body: usize) -> natter_codec::types::Event {
        natter_codec::types::Event {
            seq,
            body: Bytes::from(vec![b'x'; body]),
            content_type: "text/plain".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_hello_announcing_less_than_4096_is_a_violation() {
        let mut session = Session::new(7, config(), T0);
        let token = keys().mint("alice", "phone", T0 + 60_000);
        let hello = raw(Hello {
            min_version: 1,
            max_version: 1,
            features: Features::NONE,
            max_frame_size: 4_095,
            token: Bytes::copy_from_slice(token.as_bytes()),
            agent: "".into(),
        });
        let actions = session.handle_client(hello, T0, &keys(), &router());
        assert_eq!(closed_with(&actions), Some(ErrorCode::PROTOCOL_VIOLATION));
    }

    #[test]
    fn a_deliver_too_large_for_the_client_becomes_a_gap() {
        let mut session = ready_with_max_frame(4_096);
        let deliver = Deliver {
            inbox_seq: 9,
            conversation: "d/alice/bob".into(),
            event: event(5, 10_000),
        };
        assert_eq!(
            forwarded(&mut session, deliver),
            Some(Frame::from(Gap {
                conversation: "d/alice/bob".into(),
                from: 5,
                to: 5
            }))
        );
        let small = Deliver {
            inbox_seq: 10,
            conversation: "d/alice/bob".into(),
            event: event(6, 100),
        };
        assert!(matches!(
            forwarded(&mut session, small),
            Some(Frame::Deliver(_))
        ));
    }

    #[test]
    fn a_page_too_large_is_cut_away_from_its_anchor() {
        for (direction, kept) in [(Direction::BACKWARD, [4, 5]), (Direction::FORWARD, [1, 2])] {
            let mut session = ready_with_max_frame(4_096);
            let history = History {
                request: 3,
                conversation: "d/alice/bob".into(),
                anchor: 0,
                direction,
                limit: 5,
            };
            session.handle_client(raw(history), T0, &keys(), &router());
            let page = HistoryPage {
                request: 3,
                conversation: "d/alice/bob".into(),
                more: false,
                events: (1..=5).map(|seq| event(seq, 1_500)).collect(),
            };
            let Some(Frame::HistoryPage(page)) = forwarded(&mut session, page) else {
                panic!("no page");
            };
            let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, kept, "{direction:?}");
            assert!(page.more);
            assert!(Frame::from(page).encoded_len() <= 4_096);
        }
    }

    #[test]
    fn an_event_too_large_alone_keeps_its_seq_without_its_body() {
        let mut session = ready_with_max_frame(4_096);
        let page = HistoryPage {
            request: 3,
            conversation: "d/alice/bob".into(),
            more: false,
            events: vec![event(7, 10_000)],
        };
        let Some(Frame::HistoryPage(page)) = forwarded(&mut session, page) else {
            panic!("no page");
        };
        assert_eq!(page.events[0].seq, 7);
        assert!(page.events[0].body.is_empty());
        assert!(page.events[0].flags.contains(EventFlags::OMITTED));
    }

    #[test]
    fn other_answers_too_large_become_limit_exceeded() {
        let mut session = ready_with_max_frame(4_096);
        let info = GroupInfo {
            request: 4,
            conversation: "g/x".into(),
            title: "big".into(),
            members: (0..1_000)
                .map(|i| Member {
                    user: format!("member-{i}").into(),
                    role: Role::MEMBER,
                })
                .collect(),
        };
        assert!(matches!(
            forwarded(&mut session, info),
            Some(Frame::Error(e)) if e.request == 4 && e.code == ErrorCode::LIMIT_EXCEEDED
        ));
    }

    #[test]
    fn conversations_ask_for_no_more_than_fits() {
        let mut session = ready_with_max_frame(4_096);
        let list = Conversations {
            request: 2,
            cursor: Bytes::new(),
            limit: 200,
        };
        let actions = session.handle_client(raw(list), T0, &keys(), &router());
        let [Action::Route { frame, .. }] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        let Ok(Frame::Conversations(routed)) = Frame::decode(frame.clone()) else {
            panic!("not CONVERSATIONS");
        };
        assert!(routed.limit >= 1 && routed.limit * MAX_SUMMARY_LEN + LIST_OVERHEAD <= 4_096);
    }

    #[test]
    fn typing_is_relayed_once_a_second_and_its_end_always() {
        let mut session = ready(Features::TYPING);
        let typing = |active| {
            raw(Typing {
                conversation: "d/alice/bob".into(),
                active,
            })
        };
        let routed = |actions: Vec<Action>| matches!(actions.as_slice(), [Action::Route { .. }]);
        assert!(routed(session.handle_client(
            typing(true),
            T0,
            &keys(),
            &router()
        )));
        assert!(!routed(session.handle_client(
            typing(true),
            T0 + 10,
            &keys(),
            &router()
        )));
        assert!(routed(session.handle_client(
            typing(false),
            T0 + 20,
            &keys(),
            &router()
        )));
        assert!(!routed(session.handle_client(
            typing(false),
            T0 + 30,
            &keys(),
            &router()
        )));
        assert!(routed(session.handle_client(
            typing(true),
            T0 + 1_100,
            &keys(),
            &router()
        )));
    }

    #[test]
    fn presence_subscriptions_are_bounded_per_connection_and_listed_for_the_end() {
        let mut session = ready(Features::PRESENCE);
        let mut now = T0;
        for i in 0..MAX_PRESENCE_SUBSCRIPTIONS {
            // Spread out so the request rate limit stays out of the way.
            now += 1_000;
            let subscribe = PresenceSubscribe {
                request: 1 + i as u64,
                conversation: format!("d/alice/u{i}").into(),
                ttl_ms: 300_000,
            };
            let actions = session.handle_client(raw(subscribe), now, &keys(), &router());
            assert!(
                matches!(actions.as_slice(), [Action::Route { .. }]),
                "{actions:?}"
            );
            session.handle_server(raw(Done {
                request: 1 + i as u64,
            }));
        }
        now += 1_000;
        let one_more = PresenceSubscribe {
            request: 999,
            conversation: "d/alice/zed".into(),
            ttl_ms: 300_000,
        };
        let actions = session.handle_client(raw(one_more), now, &keys(), &router());
        assert_eq!(
            replied_error(&actions).map(|e| e.1),
            Some(ErrorCode::LIMIT_EXCEEDED),
            "{actions:?}"
        );
        assert_eq!(
            session.presence_subscriptions(now).len(),
            MAX_PRESENCE_SUBSCRIPTIONS
        );
        assert!(session.presence_subscriptions(now + 300_000).is_empty());
    }

    #[test]
    fn a_connection_ends_when_its_token_expires() {
        let mut session = ready_with_max_frame(65_536);
        // Heard from recently, so only the token's expiry (T0 + 60 s) can end it.
        session.handle_client(raw(Ping { nonce: 1 }), T0 + 50_000, &keys(), &router());
        assert!(session.poll(T0 + 59_999).is_empty());
        assert_eq!(session.next_deadline(), T0 + 60_000);
        assert_eq!(
            closed_with(&session.poll(T0 + 60_000)),
            Some(ErrorCode::TOKEN_EXPIRED)
        );
    }
}
