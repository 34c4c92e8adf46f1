//! One MQTT connection's translation state, as a sans-IO state machine (spec chapter 14).
//!
//! An MQTT device is a natter device: this state turns the client's MQTT packets into the
//! native frames a native client would send (HELLO, SEND, ACK, RESUME, PING), which then pass
//! through the edge's native [`crate::session::Session`] like any other client's, and turns
//! the native frames the edge writes back (READY, SEND_ACK, DELIVER, ERROR, ...) into MQTT
//! packets. Inputs take `now` in milliseconds since the Unix epoch:
//!
//! - [`MqttSession::on_packet`]: a packet from the client; native frames to send go to
//!   [`MqttSession::take_frames`], MQTT answers that need no broker wait behind a PING fence
//!   until the fence's PONG reaches [`MqttSession::on_server`], so they keep their place in
//!   the stream.
//! - [`MqttSession::on_server`]: a native frame the edge writes to this client; returns the
//!   MQTT bytes to write.
//! - [`MqttSession::poll`]: timers (keep-alive, heartbeats, ACK pacing).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use natter_codec::frame::{Ack, Hello, Ping, Resume, Send};
use natter_codec::types::{EventKind, Features};
use natter_codec::{ErrorCode, Frame, MAX_FRAME_SIZE_CAP};
use sha2::{Digest, Sha256};

use super::codec::{
    self, Connect, OutProperties, Packet, Publish, Reason, V5, V311, encode_connack,
    encode_disconnect, encode_puback, encode_publish, encode_suback, encode_unsuback, reason,
};
use super::topics::{self, Refusal};
use crate::auth::{AuthError, TokenKeys};
use crate::hub::lock;
use crate::limits::TokenBucket;

/// PING nonces at or above this fence queued MQTT answers (`[NWP-14-3]`).
const FENCE: u64 = 1 << 61;
/// The PING nonce of a heartbeat the edge sends on the device's behalf.
const HEARTBEAT: u64 = 1 << 60;
/// Subscriptions one MQTT session may hold.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// How long a 3.1.1 persistent session outlives its connection: the inbox retention window.
const V311_SESSION_EXPIRY_S: u64 = 7 * 24 * 3600;
/// ACKs to the home broker are sent at most this often; the cursor is kept at once.
const ACK_INTERVAL_MS: u64 = 100;
/// How many `client_msg_id`s a new QoS 1 message of a persistent session tries before it
/// falls back to one that is unique to the connection (`[NWP-14-9]`).
const MAX_PROBES: u32 = 16;
/// The largest client_msg_id, a varint.
const MAX_MSG_ID: u64 = (1 << 62) - 1;

/// The knobs of an MQTT session, from the edge's configuration.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The native heartbeat the edge expects from every device session.
    pub heartbeat_ms: u64,
    /// The largest packet a client may send (the native `max_frame_size`).
    pub max_packet_size: usize,
    /// QoS 1 PUBLISHes a client may have unacknowledged (announced as Receive Maximum).
    pub receive_maximum: u16,
    /// The native request rate, which the MQTT session keeps under by reading no faster.
    pub requests_per_sec: f64,
    /// The native request burst.
    pub request_burst: f64,
}

/// The persistent MQTT sessions of one edge, by (user, device) (`[NWP-14-8]`).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<(String, String), Stored>>,
}

#[derive(Debug, Clone, Default)]
struct Stored {
    subscriptions: BTreeMap<String, Subscription>,
    /// The highest inbox_seq the device has acknowledged.
    cursor: u64,
    /// When the session expires; `u64::MAX` while a connection holds it.
    expires_ms: u64,
    /// For QoS 1 messages not yet PUBACKed: the probe their `client_msg_id` took.
    probes: HashMap<u16, u32>,
}

impl Sessions {
    fn take(&self, key: &(String, String), now_ms: u64) -> Option<Stored> {
        let mut map = lock(&self.map);
        map.retain(|_, stored| stored.expires_ms > now_ms);
        map.get(key).cloned()
    }

    fn remove(&self, key: &(String, String)) {
        lock(&self.map).remove(key);
    }

    fn update(&self, key: &(String, String), f: impl FnOnce(&mut Stored)) {
        if let Some(stored) = lock(&self.map).get_mut(key) {
            f(stored);
        }
    }

    fn put(&self, key: (String, String), stored: Stored) {
        lock(&self.map).insert(key, stored);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subscription {
    qos: u8,
    no_local: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitConnect,
    /// HELLO sent; READY not yet written.
    Connecting,
    Ready,
    Closed,
}

/// How the connection ends, once decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// The MQTT 5 reason, written in CONNACK or DISCONNECT when the version has a place for
    /// it; `None` closes without a word.
    pub reason: Option<Reason>,
    /// The native code the edge closes the native session with.
    pub code: ErrorCode,
}

/// A SEND waiting for its answer.
#[derive(Debug, Clone)]
struct Pending {
    packet_id: u16,
    qos: u8,
    conversation: String,
    content_type: String,
    kind: EventKind,
    target: u64,
    body: Bytes,
    /// Set by a v5 user property: the device chose its own idempotency key.
    explicit_id: Option<u64>,
    /// The probe of a content-derived id; `None` for an id unique to the connection.
    probe: Option<u32>,
    /// The PUBLISH had DUP set: a resend, never a new message.
    dup: bool,
    unique: u64,
}

/// The state of one MQTT connection.
#[derive(Debug)]
pub struct MqttSession {
    config: MqttConfig,
    store: Arc<Sessions>,
    /// The native session id, salt for ids unique to this connection.
    id: u64,
    phase: Phase,
    level: u8,
    client_id: String,
    assigned_client_id: bool,
    key: (String, String),
    persistent: bool,
    session_present: bool,
    expiry_s: u64,
    keep_alive_ms: u64,
    heard_ms: u64,
    last_frame_ms: u64,
    /// The client's Receive Maximum: PUBLISHes to it unacknowledged at most.
    client_window: usize,
    client_max_packet: usize,
    subscriptions: BTreeMap<String, Subscription>,
    frames: VecDeque<Frame>,
    local: VecDeque<(u64, Bytes)>,
    next_fence: u64,
    next_request: u64,
    next_unique: u64,
    sends: HashMap<u64, Pending>,
    /// QoS 1 PUBLISHes in the order they arrived, and the PUBACKs ready for them: PUBACKs
    /// go out in that order ([MQTT-4.6.0-2], `[NWP-14-3]`).
    puback_order: VecDeque<u64>,
    pubacks: HashMap<u64, Bytes>,
    bucket: TokenBucket,
    resumed: bool,
    /// RESUME requests not yet answered.
    resumes: BTreeSet<u64>,
    inbox_head: u64,
    /// Deliveries written and not yet acknowledged: packet id -> inbox_seq.
    unacked: BTreeMap<u16, u64>,
    outstanding: BTreeSet<u64>,
    highest_seen: u64,
    next_packet_id: u16,
    acked_sent: u64,
    last_ack_ms: u64,
    end: Option<End>,
}

impl MqttSession {
    /// A connection accepted at `now_ms`, whose native session is `id`.
    pub fn new(config: MqttConfig, store: Arc<Sessions>, id: u64, now_ms: u64) -> Self {
        let bucket = TokenBucket::new(
            config.requests_per_sec,
            (config.request_burst - 2.0).max(1.0),
            now_ms,
        );
        let window = usize::from(config.receive_maximum);
        Self {
            client_max_packet: config.max_packet_size,
            config,
            store,
            id,
            phase: Phase::AwaitConnect,
            level: 0,
            client_id: String::new(),
            assigned_client_id: false,
            key: Default::default(),
            persistent: false,
            session_present: false,
            expiry_s: 0,
            keep_alive_ms: 0,
            heard_ms: now_ms,
            last_frame_ms: now_ms,
            client_window: window,
            subscriptions: BTreeMap::new(),
            frames: VecDeque::new(),
            local: VecDeque::new(),
            next_fence: FENCE,
            next_request: 1,
            next_unique: 1,
            sends: HashMap::new(),
            puback_order: VecDeque::new(),
            pubacks: HashMap::new(),
            bucket,
            resumed: false,
            resumes: BTreeSet::new(),
            inbox_head: 0,
            unacked: BTreeMap::new(),
            outstanding: BTreeSet::new(),
            highest_seen: 0,
            next_packet_id: 1,
            acked_sent: 0,
            last_ack_ms: 0,
            end: None,
        }
    }

    /// The protocol level: 0 before CONNECT.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Whether the driver may read and decode the next packet now: not while the native
    /// session opens, and not while the device has as many sends in flight as it may
    /// (`[NWP-14-11]`), nor faster than the native rate limit allows.
    pub fn may_read(&mut self, now_ms: u64) -> bool {
        if self.end.is_some() {
            return false;
        }
        match self.phase {
            Phase::AwaitConnect => true,
            Phase::Ready => {
                self.sends.len() < usize::from(self.config.receive_maximum)
                    && self.rate_wait(now_ms).is_none()
            }
            Phase::Connecting | Phase::Closed => false,
        }
    }

    /// Milliseconds until the rate limit lets another PUBLISH in, if it does not now.
    fn rate_wait(&mut self, now_ms: u64) -> Option<u64> {
        // Peeking a token bucket: take one and give it back when there is one.
        let mut probe = self.bucket.clone();
        probe.take(now_ms).err()
    }

    /// Native frames to send, in order.
    pub fn take_frames(&mut self, now_ms: u64) -> Vec<Frame> {
        if !self.frames.is_empty() {
            self.last_frame_ms = now_ms;
        }
        self.frames.drain(..).collect()
    }

    /// How the connection ends, once the frames before it are sent.
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// Whether no more deliveries fit in the client's window.
    pub fn window_full(&self) -> bool {
        self.unacked.len() >= self.client_window
    }

    /// A decode error: the connection ends with its reason (`[NWP-14-13]`).
    pub fn malformed(&mut self, reason: Reason) {
        let code = if reason == codec::reason::PACKET_TOO_LARGE {
            ErrorCode::FRAME_TOO_LARGE
        } else {
            ErrorCode::PROTOCOL_VIOLATION
        };
        match self.phase {
            // Before CONNECT, and for a CONNECT that cannot be read, the edge closes without
            // a CONNACK, except for an unsupported protocol version ([MQTT-3.1.2-2]).
            Phase::AwaitConnect if reason == codec::reason::UNSUPPORTED_VERSION => {
                let connack = encode_connack(V311, false, 0x01, &OutProperties::default());
                self.local_reply(connack);
                self.finish(None, ErrorCode::UNSUPPORTED_VERSION);
            }
            Phase::AwaitConnect => self.finish(None, code),
            _ => self.finish(Some(reason), code),
        }
    }

    /// Handles one packet from the client.
    pub fn on_packet(&mut self, packet: Packet, now_ms: u64, keys: &TokenKeys) {
        self.heard_ms = now_ms;
        if self.end.is_some() {
            return;
        }
        match (self.phase, packet) {
            (Phase::AwaitConnect, Packet::Connect(connect)) => self.connect(connect, now_ms, keys),
            // [MQTT-3.1.0-1]: the first packet must be CONNECT.
            (Phase::AwaitConnect, _) => self.finish(None, ErrorCode::PROTOCOL_VIOLATION),
            (_, Packet::Connect(_)) => self.protocol_error(reason::PROTOCOL_ERROR),
            (_, Packet::Publish(publish)) => self.publish(publish, now_ms),
            (_, Packet::Puback(packet_id)) => self.puback(packet_id, now_ms),
            (
                _,
                Packet::Subscribe {
                    packet_id,
                    subscription_id,
                    filters,
                },
            ) => {
                if subscription_id.is_some() {
                    return self.protocol_error(reason::SUBSCRIPTION_IDS_NOT_SUPPORTED);
                }
                let mut codes = Vec::with_capacity(filters.len());
                for filter in filters {
                    codes.push(self.subscribe(filter));
                }
                let suback = encode_suback(self.level, packet_id, &codes);
                self.local_reply(suback);
                self.save(|stored, session| stored.subscriptions = session.subscriptions.clone());
                self.maybe_resume();
            }
            (_, Packet::Unsubscribe { packet_id, filters }) => {
                let codes: Vec<u8> = filters
                    .iter()
                    .map(|filter| match self.subscriptions.remove(filter) {
                        Some(_) => reason::SUCCESS,
                        None => 0x11,
                    })
                    .collect();
                let unsuback = encode_unsuback(self.level, packet_id, &codes);
                self.local_reply(unsuback);
                self.save(|stored, session| stored.subscriptions = session.subscriptions.clone());
            }
            (_, Packet::Pingreq) => self.local_reply(codec::encode_pingresp()),
            // A will is never published: presence going offline is natter's will
            // (`[NWP-14-10]`), so DISCONNECT's reason changes nothing.
            (_, Packet::Disconnect(_)) => self.finish(None, ErrorCode::SHUTTING_DOWN),
        }
    }

    fn connect(&mut self, connect: Connect, now_ms: u64, keys: &TokenKeys) {
        self.level = connect.level;
        let v5 = connect.level == V5;
        // [NWP-14-1] The password is the token.
        let Some(password) = connect.password.clone() else {
            return self.refuse(0x04, reason::BAD_CREDENTIALS, ErrorCode::UNAUTHENTICATED);
        };
        let claims = match keys.verify(&password, now_ms) {
            Ok(claims) => claims,
            Err(AuthError::Expired) => {
                return self.refuse(0x05, reason::NOT_AUTHORIZED, ErrorCode::TOKEN_EXPIRED);
            }
            Err(AuthError::Unauthenticated) => {
                return self.refuse(0x04, reason::BAD_CREDENTIALS, ErrorCode::UNAUTHENTICATED);
            }
        };
        if connect
            .username
            .as_deref()
            .is_some_and(|name| !name.is_empty() && name != claims.user)
        {
            return self.refuse(0x04, reason::BAD_CREDENTIALS, ErrorCode::UNAUTHENTICATED);
        }
        // [NWP-14-2] The client id is the token's device, or empty to be given it.
        if connect.client_id.is_empty() {
            self.assigned_client_id = true;
        } else if connect.client_id != claims.device {
            return self.refuse(
                0x02,
                reason::CLIENT_ID_NOT_VALID,
                ErrorCode::UNAUTHENTICATED,
            );
        }
        if connect.properties.auth_method.is_some() {
            return self.refuse(0x05, reason::BAD_AUTH_METHOD, ErrorCode::UNAUTHENTICATED);
        }
        self.client_id = claims.device.clone();
        self.key = (claims.user.clone(), claims.device.clone());
        self.keep_alive_ms = u64::from(connect.keep_alive) * 1000;
        if v5 {
            self.expiry_s = u64::from(connect.properties.session_expiry.unwrap_or(0));
            if let Some(max) = connect.properties.receive_maximum {
                self.client_window = self.client_window.min(usize::from(max));
            }
            if let Some(max) = connect.properties.maximum_packet_size {
                self.client_max_packet = self.client_max_packet.min(max as usize);
            }
        } else if !connect.clean {
            self.expiry_s = V311_SESSION_EXPIRY_S;
        }
        self.persistent = self.expiry_s > 0;
        if connect.clean {
            self.store.remove(&self.key);
        } else if let Some(stored) = self.store.take(&self.key, now_ms) {
            self.session_present = true;
            self.subscriptions = stored.subscriptions;
            self.highest_seen = stored.cursor;
            self.acked_sent = stored.cursor;
        }
        self.phase = Phase::Connecting;
        let max_frame = (self.client_max_packet as u64).clamp(4_096, MAX_FRAME_SIZE_CAP);
        self.frames.push_back(
            Hello {
                min_version: 1,
                max_version: 1,
                features: Features::NONE,
                max_frame_size: max_frame,
                token: password,
                agent: format!("mqtt/{}", if v5 { "5" } else { "3.1.1" }).into(),
            }
            .into(),
        );
    }

    /// Refuses a CONNECT with its return code (3.1.1) or reason code (5), then closes.
    fn refuse(&mut self, v311: u8, v5: Reason, code: ErrorCode) {
        let connack = if self.level == V5 {
            encode_connack(V5, false, v5, &OutProperties::default())
        } else {
            encode_connack(V311, false, v311, &OutProperties::default())
        };
        self.local_reply(connack);
        self.finish(None, code);
    }

    fn subscribe(&mut self, filter: codec::Filter) -> u8 {
        let failure = if self.level == V5 { None } else { Some(0x80) };
        // [NWP-14-6]
        match topics::check_filter(&filter.filter) {
            Ok(()) => {}
            Err(Refusal::Invalid) => return failure.unwrap_or(reason::TOPIC_FILTER_INVALID),
            Err(Refusal::Shared) => return failure.unwrap_or(reason::SHARED_NOT_SUPPORTED),
            Err(Refusal::NotAuthorized) => return failure.unwrap_or(reason::NOT_AUTHORIZED),
        }
        if !self.subscriptions.contains_key(&filter.filter)
            && self.subscriptions.len() >= MAX_SUBSCRIPTIONS
        {
            return failure.unwrap_or(reason::QUOTA_EXCEEDED);
        }
        // QoS 2 is granted as QoS 1: SUBACK says so ([MQTT-3.9.3-1]).
        let qos = filter.qos.min(1);
        self.subscriptions.insert(
            filter.filter,
            Subscription {
                qos,
                no_local: filter.no_local,
            },
        );
        qos
    }

    /// Starts the inbox stream once the session is ready and has a subscription: from the
    /// stored cursor for a resumed session, else from the inbox head at CONNECT.
    fn maybe_resume(&mut self) {
        if self.resumed || self.phase != Phase::Ready || self.subscriptions.is_empty() {
            return;
        }
        self.resumed = true;
        let request = self.request_id();
        let after = if self.session_present {
            self.highest_seen
        } else {
            self.inbox_head
        };
        self.highest_seen = after;
        self.acked_sent = self.acked_sent.max(after);
        self.resumes.insert(request);
        self.frames.push_back(Resume { request, after }.into());
    }

    fn publish(&mut self, publish: Publish, now_ms: u64) {
        let v5 = self.level == V5;
        // [NWP-14-9] QoS 2 is refused, never downgraded.
        if publish.qos == 2 {
            return self.protocol_error(reason::QOS_NOT_SUPPORTED);
        }
        if publish.retain {
            return self.protocol_error(reason::RETAIN_NOT_SUPPORTED);
        }
        if publish.properties.topic_alias.is_some() {
            return self.protocol_error(reason::TOPIC_ALIAS_INVALID);
        }
        if topics::has_wildcard(&publish.topic) {
            return self.protocol_error(reason::TOPIC_NAME_INVALID);
        }
        let refuse = |session: &mut Self, code: Reason| {
            if publish.qos == 1 && v5 {
                let puback = encode_puback(V5, publish.packet_id, code);
                session.local_reply(puback);
            } else {
                session.protocol_error(code);
            }
        };
        // [NWP-14-4]
        let Some(conversation) = topics::send_target(&publish.topic) else {
            return refuse(self, reason::TOPIC_NAME_INVALID);
        };
        if publish.properties.payload_utf8 && std::str::from_utf8(&publish.payload).is_err() {
            return refuse(self, reason::PAYLOAD_FORMAT_INVALID);
        }
        let mut kind = EventKind::MESSAGE;
        let mut target = 0;
        let mut explicit_id = None;
        for (key, value) in &publish.properties.user {
            match key.as_str() {
                "kind" => {
                    kind = match value.as_str() {
                        "message" => EventKind::MESSAGE,
                        "edit" => EventKind::EDIT,
                        "delete" => EventKind::DELETE,
                        _ => return refuse(self, reason::IMPLEMENTATION_SPECIFIC),
                    }
                }
                "target" => match value.parse() {
                    Ok(seq) => target = seq,
                    Err(_) => return refuse(self, reason::IMPLEMENTATION_SPECIFIC),
                },
                "client_msg_id" => match value.parse::<u64>() {
                    Ok(id @ 1..=MAX_MSG_ID) => explicit_id = Some(id),
                    _ => return refuse(self, reason::IMPLEMENTATION_SPECIFIC),
                },
                _ => {}
            }
        }
        // A resend within the connection of a PUBLISH still in flight: its answer PUBACKs it.
        if publish.dup
            && self
                .sends
                .values()
                .any(|pending| pending.qos == 1 && pending.packet_id == publish.packet_id)
        {
            return;
        }
        let _ = self.bucket.take(now_ms);
        let probe = match (self.persistent && publish.qos == 1, publish.dup) {
            (false, _) => None,
            // A resend after a reconnect takes the probe its original took, if this edge
            // still knows it; else the first.
            (true, true) => {
                let mut probe = 0;
                self.store.update(&self.key, |stored| {
                    probe = stored.probes.get(&publish.packet_id).copied().unwrap_or(0);
                });
                Some(probe)
            }
            (true, false) => Some(0),
        };
        let unique = self.next_unique;
        self.next_unique += 1;
        if publish.qos == 1 {
            self.puback_order.push_back(unique);
        }
        let pending = Pending {
            packet_id: publish.packet_id,
            qos: publish.qos,
            conversation: conversation.to_string(),
            content_type: publish.properties.content_type.clone().unwrap_or_default(),
            kind,
            target,
            body: publish.payload,
            explicit_id,
            probe,
            dup: publish.dup,
            unique,
        };
        self.send(pending);
    }

    fn send(&mut self, pending: Pending) {
        let request = self.request_id();
        let frame = Send {
            request,
            conversation: pending.conversation.as_str().into(),
            client_msg_id: self.client_msg_id(&pending),
            kind: pending.kind,
            target: pending.target,
            content_type: pending.content_type.as_str().into(),
            body: pending.body.clone(),
        };
        self.frames.push_back(frame.into());
        self.sends.insert(request, pending);
    }

    /// The SEND's idempotency key (`[NWP-14-9]`): the device's own, if it named one; for a
    /// persistent session a digest of what a resend repeats (client id, packet id, topic,
    /// content) and the probe; otherwise a digest of the connection and a counter.
    fn client_msg_id(&self, pending: &Pending) -> u64 {
        if let Some(id) = pending.explicit_id {
            return id;
        }
        let mut hash = Sha256::new();
        match pending.probe {
            Some(probe) => {
                hash.update(b"natter-mqtt-1\0");
                for part in [
                    self.key.0.as_bytes(),
                    self.client_id.as_bytes(),
                    pending.conversation.as_bytes(),
                    pending.content_type.as_bytes(),
                ] {
                    hash.update((part.len() as u64).to_be_bytes());
                    hash.update(part);
                }
                hash.update(pending.packet_id.to_be_bytes());
                hash.update(pending.kind.0.to_be_bytes());
                hash.update(pending.target.to_be_bytes());
                hash.update(probe.to_be_bytes());
                hash.update(&pending.body);
            }
            None => {
                hash.update(b"natter-mqtt-conn-1\0");
                hash.update(self.id.to_be_bytes());
                hash.update(pending.unique.to_be_bytes());
            }
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) & MAX_MSG_ID).max(1)
    }

    fn puback(&mut self, packet_id: u16, now_ms: u64) {
        // A PUBACK for no packet the edge sent is ignored, as MQTT brokers do.
        let Some(inbox_seq) = self.unacked.remove(&packet_id) else {
            return;
        };
        self.outstanding.remove(&inbox_seq);
        self.advance(now_ms);
    }

    /// Stores the new cursor at once and ACKs it to the home broker, paced (`[NWP-14-8]`).
    fn advance(&mut self, now_ms: u64) {
        let cursor = self.cursor();
        if self.persistent {
            self.store.update(&self.key, |stored| {
                stored.cursor = stored.cursor.max(cursor)
            });
        }
        if cursor > self.acked_sent && now_ms >= self.last_ack_ms + ACK_INTERVAL_MS {
            self.send_ack(now_ms);
        }
    }

    fn send_ack(&mut self, now_ms: u64) {
        let cursor = self.cursor();
        self.acked_sent = cursor;
        self.last_ack_ms = now_ms;
        self.frames.push_back(Ack { inbox_seq: cursor }.into());
    }

    /// Everything up to here was delivered and acknowledged, or matched no subscription.
    fn cursor(&self) -> u64 {
        self.outstanding
            .first()
            .map_or(self.highest_seen, |first| first - 1)
    }

    /// Timers: the keep-alive deadline, the native heartbeat, and a paced ACK.
    pub fn poll(&mut self, now_ms: u64) {
        if self.end.is_some() {
            return;
        }
        // [MQTT-3.1.2-24]: nothing for 1.5 x keep alive ends the connection.
        if self.keep_alive_ms > 0 && now_ms >= self.heard_ms + self.keep_alive_ms * 3 / 2 {
            return self.protocol_error(reason::KEEP_ALIVE_TIMEOUT);
        }
        if self.phase != Phase::Ready {
            return;
        }
        // [NWP-14-10] The device is heard from within its keep alive: keep its native
        // session alive meanwhile.
        if now_ms >= self.last_frame_ms + self.config.heartbeat_ms / 2 {
            self.last_frame_ms = now_ms;
            self.frames.push_back(Ping { nonce: HEARTBEAT }.into());
        }
        if self.cursor() > self.acked_sent && now_ms >= self.last_ack_ms + ACK_INTERVAL_MS {
            self.send_ack(now_ms);
        }
    }

    /// When [`MqttSession::poll`] next has something to do.
    pub fn next_deadline(&self) -> u64 {
        let mut next = u64::MAX;
        if self.keep_alive_ms > 0 {
            next = next.min(self.heard_ms + self.keep_alive_ms * 3 / 2);
        }
        if self.phase == Phase::Ready {
            next = next.min(self.last_frame_ms + self.config.heartbeat_ms / 2);
            if self.cursor() > self.acked_sent {
                next = next.min(self.last_ack_ms + ACK_INTERVAL_MS);
            }
        }
        next
    }

    /// Milliseconds until reading may go on, when only the rate limit holds it back.
    pub fn read_wait(&mut self, now_ms: u64) -> Option<u64> {
        if self.phase == Phase::Ready && self.end.is_none() {
            self.rate_wait(now_ms)
        } else {
            None
        }
    }

    /// The connection is gone: a persistent session waits `expiry` for its device.
    pub fn ended(&mut self, now_ms: u64) {
        if !self.persistent || self.phase == Phase::AwaitConnect {
            return;
        }
        let expires = now_ms.saturating_add(self.expiry_s.saturating_mul(1000));
        let cursor = self.cursor();
        self.store.update(&self.key, |stored| {
            stored.expires_ms = expires;
            stored.cursor = stored.cursor.max(cursor);
        });
    }

    /// Handles a native frame the edge writes to this client; returns the MQTT bytes.
    pub fn on_server(&mut self, raw: Bytes, now_ms: u64) -> Vec<Bytes> {
        let Ok(frame) = Frame::decode(raw) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match frame {
            Frame::Ready(ready) => {
                self.phase = Phase::Ready;
                self.inbox_head = ready.inbox_head;
                self.last_frame_ms = now_ms;
                if self.persistent && !self.session_present {
                    self.highest_seen = ready.inbox_head;
                    self.acked_sent = ready.inbox_head;
                }
                if self.persistent {
                    self.store.put(
                        self.key.clone(),
                        Stored {
                            subscriptions: self.subscriptions.clone(),
                            cursor: self.highest_seen,
                            expires_ms: u64::MAX,
                            probes: HashMap::new(),
                        },
                    );
                }
                out.push(self.connack());
                self.maybe_resume();
            }
            Frame::Pong(pong) if pong.nonce >= FENCE => {
                while let Some((fence, _)) = self.local.front() {
                    if *fence > pong.nonce {
                        break;
                    }
                    if let Some((_, bytes)) = self.local.pop_front() {
                        out.push(bytes);
                    }
                }
            }
            Frame::SendAck(ack) => {
                if let Some(pending) = self.sends.remove(&ack.request) {
                    self.send_answered(pending, ack.duplicate, &mut out);
                }
            }
            Frame::Error(error) if error.request != 0 => {
                if let Some(pending) = self.sends.remove(&error.request) {
                    self.send_failed(pending, error.code, &mut out);
                } else if self.resumes.remove(&error.request) {
                    // The RESUME failed: the device reconnects and resumes from its cursor.
                    self.finish(Some(reason::SERVER_BUSY), ErrorCode::UNAVAILABLE);
                }
            }
            Frame::Synced(synced) => {
                self.resumes.remove(&synced.request);
            }
            Frame::Error(error) => out.extend(self.closing(error.code)),
            Frame::Goaway(goaway) => out.extend(self.closing(goaway.code)),
            Frame::Deliver(deliver) => {
                if let Some(bytes) = self.deliver(deliver, now_ms) {
                    out.push(bytes);
                }
            }
            Frame::Gap(gap) if gap.conversation.is_empty() && self.resumed => {
                // Entries dropped under pressure: replay from the cursor ([NWP-6.2.11-1]).
                let request = self.request_id();
                let after = self.cursor();
                self.outstanding.clear();
                self.unacked.clear();
                self.highest_seen = after;
                self.resumes.insert(request);
                self.frames.push_back(Resume { request, after }.into());
            }
            _ => {}
        }
        out
    }

    fn connack(&self) -> Bytes {
        if self.level != V5 {
            return encode_connack(V311, self.session_present, 0, &OutProperties::default());
        }
        let mut props = OutProperties {
            bytes: vec![(0x24, 1), (0x25, 0), (0x29, 0), (0x2a, 0)],
            shorts: vec![(0x21, self.config.receive_maximum)],
            words: vec![(0x27, self.config.max_packet_size as u32)],
            ..Default::default()
        };
        if self.assigned_client_id {
            props.strings.push((0x12, self.client_id.clone()));
        }
        encode_connack(V5, self.session_present, 0, &props)
    }

    fn send_answered(&mut self, mut pending: Pending, duplicate: bool, out: &mut Vec<Bytes>) {
        // A new message whose content-derived id an earlier one took: try the next probe.
        if let Some(probe) = pending.probe
            && duplicate
            && !self.is_resend(&pending)
        {
            if probe + 1 < MAX_PROBES {
                pending.probe = Some(probe + 1);
            } else {
                pending.probe = None;
            }
            let (packet_id, next) = (pending.packet_id, pending.probe);
            self.store.update(&self.key, |stored| {
                stored.probes.insert(packet_id, next.unwrap_or(MAX_PROBES));
            });
            return self.send(pending);
        }
        if pending.qos == 1 {
            let packet_id = pending.packet_id;
            self.store.update(&self.key, |stored| {
                stored.probes.remove(&packet_id);
            });
            let puback = encode_puback(self.level, packet_id, reason::SUCCESS);
            self.puback_ready(pending.unique, puback, out);
        }
    }

    /// Releases PUBACKs in the order their PUBLISHes arrived.
    fn puback_ready(&mut self, unique: u64, puback: Bytes, out: &mut Vec<Bytes>) {
        self.pubacks.insert(unique, puback);
        while let Some(front) = self.puback_order.front() {
            let Some(puback) = self.pubacks.remove(front) else {
                break;
            };
            self.puback_order.pop_front();
            out.push(puback);
        }
    }

    /// Whether a pending SEND came from a PUBLISH with DUP set.
    fn is_resend(&self, pending: &Pending) -> bool {
        pending.dup
    }

    fn send_failed(&mut self, pending: Pending, code: ErrorCode, out: &mut Vec<Bytes>) {
        if pending.qos == 0 {
            return;
        }
        let mqtt = match code {
            ErrorCode::NOT_FOUND | ErrorCode::FORBIDDEN => reason::NOT_AUTHORIZED,
            ErrorCode::RATE_LIMITED => reason::QUOTA_EXCEEDED,
            ErrorCode::UNAVAILABLE => {
                // The outcome is unknown: the device resends after reconnecting.
                self.finish(Some(reason::SERVER_BUSY), ErrorCode::UNAVAILABLE);
                return;
            }
            ErrorCode::INVALID_REQUEST
            | ErrorCode::PAYLOAD_TOO_LARGE
            | ErrorCode::DUPLICATE_MISMATCH => reason::IMPLEMENTATION_SPECIFIC,
            _ => reason::UNSPECIFIED,
        };
        if self.level == V5 {
            let puback = encode_puback(V5, pending.packet_id, mqtt);
            self.puback_ready(pending.unique, puback, out);
        } else {
            // 3.1.1 has no negative PUBACK: closing is the only honest answer.
            self.finish(None, ErrorCode::PROTOCOL_VIOLATION);
        }
    }

    fn deliver(&mut self, deliver: natter_codec::frame::Deliver, now_ms: u64) -> Option<Bytes> {
        let inbox_seq = deliver.inbox_seq;
        if inbox_seq != 0 {
            // Each inbox entry once per connection ([NWP-14-8]).
            if inbox_seq <= self.highest_seen {
                return None;
            }
            self.highest_seen = inbox_seq;
        }
        let event = &deliver.event;
        let v5 = self.level == V5;
        let topic = topics::inbox_topic(&deliver.conversation, event.seq, &event.sender, v5);
        let own = &*event.sender == self.key.0.as_str() && &*event.device == self.key.1.as_str();
        let qos = self
            .subscriptions
            .iter()
            .filter(|(filter, sub)| topics::matches(filter, &topic) && !(own && sub.no_local))
            .map(|(_, sub)| sub.qos)
            .max();
        let bytes = qos.and_then(|qos| {
            let qos = if inbox_seq == 0 { 0 } else { qos };
            let packet_id = if qos == 1 { self.packet_id() } else { 0 };
            let mut props = OutProperties::default();
            if v5 {
                if !event.content_type.is_empty() {
                    props.strings.push((0x03, event.content_type.to_string()));
                }
                props.user = vec![
                    ("sender".into(), event.sender.to_string()),
                    ("device".into(), event.device.to_string()),
                    ("seq".into(), event.seq.to_string()),
                    ("time".into(), event.timestamp.to_string()),
                    ("inbox_seq".into(), inbox_seq.to_string()),
                ];
                if event.kind != EventKind::MESSAGE {
                    let kind = match event.kind {
                        EventKind::EDIT => "edit".to_string(),
                        EventKind::DELETE => "delete".to_string(),
                        other => format!("{}", other.0),
                    };
                    props.user.push(("kind".into(), kind));
                    props.user.push(("target".into(), event.target.to_string()));
                }
            }
            let bytes = encode_publish(self.level, qos, &topic, packet_id, &props, &event.body);
            // [MQTT-3.1.2-25]: a packet over the client's maximum is not sent, and counts
            // as delivered.
            if bytes.len() > self.client_max_packet {
                return None;
            }
            if qos == 1 {
                self.unacked.insert(packet_id, inbox_seq);
                self.outstanding.insert(inbox_seq);
            }
            Some(bytes)
        });
        if bytes.is_none() || qos == Some(0) {
            self.advance(now_ms);
        }
        bytes
    }

    fn packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.unacked.contains_key(&id) {
                return id;
            }
        }
    }

    /// The native session closes with `code`: the MQTT answers decided before it go out,
    /// then CONNACK or DISCONNECT says why, where the version has a place for it.
    fn closing(&mut self, code: ErrorCode) -> Vec<Bytes> {
        let was = std::mem::replace(&mut self.phase, Phase::Closed);
        let mut out: Vec<Bytes> = self.local.drain(..).map(|(_, bytes)| bytes).collect();
        match self.end {
            Some(End { reason: None, .. }) => return out,
            Some(End {
                reason: Some(reason),
                ..
            }) => {
                out.push(encode_disconnect(reason));
                return out;
            }
            None => {}
        }
        let v5 = self.level == V5;
        match was {
            // The native session refused the HELLO: answer the CONNECT.
            Phase::Connecting => {
                let (v311, v5_reason) = match code {
                    ErrorCode::UNAUTHENTICATED => (0x04, reason::BAD_CREDENTIALS),
                    ErrorCode::TOKEN_EXPIRED => (0x05, reason::NOT_AUTHORIZED),
                    ErrorCode::TOO_MANY_CONNECTIONS => (0x03, reason::QUOTA_EXCEEDED),
                    _ => (0x03, reason::SERVER_UNAVAILABLE),
                };
                let connack = if v5 {
                    encode_connack(V5, false, v5_reason, &OutProperties::default())
                } else {
                    encode_connack(V311, false, v311, &OutProperties::default())
                };
                out.push(connack);
            }
            Phase::Ready if v5 => {
                let reason = match code {
                    ErrorCode::IDLE_TIMEOUT => reason::KEEP_ALIVE_TIMEOUT,
                    ErrorCode::TOKEN_EXPIRED => reason::NOT_AUTHORIZED,
                    ErrorCode::SLOW_CONSUMER | ErrorCode::TOO_MANY_CONNECTIONS => {
                        reason::QUOTA_EXCEEDED
                    }
                    ErrorCode::FRAME_TOO_LARGE => reason::PACKET_TOO_LARGE,
                    ErrorCode::PROTOCOL_VIOLATION => reason::PROTOCOL_ERROR,
                    ErrorCode::SHUTTING_DOWN => reason::SHUTTING_DOWN,
                    ErrorCode::UNAVAILABLE => reason::SERVER_BUSY,
                    _ => reason::UNSPECIFIED,
                };
                out.push(encode_disconnect(reason));
            }
            _ => {}
        }
        out
    }

    /// A protocol error after CONNECT: MQTT 5 says why in DISCONNECT; 3.1.1 just closes.
    fn protocol_error(&mut self, reason: Reason) {
        let code = if reason == codec::reason::KEEP_ALIVE_TIMEOUT {
            ErrorCode::IDLE_TIMEOUT
        } else {
            ErrorCode::PROTOCOL_VIOLATION
        };
        self.finish(Some(reason), code);
    }

    fn finish(&mut self, reason: Option<Reason>, code: ErrorCode) {
        if self.end.is_none() {
            let reason = reason.filter(|_| self.level == V5 && self.phase != Phase::AwaitConnect);
            self.end = Some(End { reason, code });
        }
    }

    /// Queues an MQTT answer behind a PING fence, so it keeps its place among what the
    /// native session writes to the client.
    fn local_reply(&mut self, bytes: Bytes) {
        let fence = self.next_fence;
        self.next_fence += 1;
        self.local.push_back((fence, bytes));
        // Before READY a PING would break the native handshake; these answers (a refused
        // CONNECT) go out when the connection closes.
        if self.phase == Phase::Ready {
            self.frames.push_back(Ping { nonce: fence }.into());
        }
    }

    fn request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Applies a change to the stored session, when the session is persistent.
    fn save(&self, f: impl FnOnce(&mut Stored, &Self)) {
        if self.persistent && self.phase == Phase::Ready {
            self.store.update(&self.key, |stored| f(stored, self));
        }
    }
}
