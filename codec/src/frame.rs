//! Every frame of protocol v1, declared once (spec section 6 and 9).
//!
//! The table below generates the payload structs, the [`FrameType`] newtype, the [`Frame`]
//! enum and its encoding. A payload is its fields in the order listed; a receiver ignores
//! bytes after the last field it knows (`[NWP-11-2]`), which is how later versions add
//! fields.

use bytes::{Bytes, BytesMut};

use crate::field::{Field, Text};
use crate::open_enum::open_enum;
use crate::types::{
    Direction, Event, EventKind, Features, GroupOp, Marker, Member, NodeRole, Role, Status,
    Summary, record,
};
use crate::{DecodeError, EncodeError, ErrorCode, varint};

/// Who may send a frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Clients send it to servers.
    Client,
    /// Servers send it to clients.
    Server,
    /// Either side of a client connection.
    Either,
    /// Only nodes of a cluster, on links.
    Link,
}

macro_rules! frames {
    (
        $(
            $(#[$meta:meta])*
            $code:literal $upper:ident $name:ident ($origin:ident) {
                $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )*
            }
        )*
    ) => {
        open_enum! {
            /// A frame type code (spec section 6, table 2).
            pub struct FrameType(u64) {
                $( #[doc = concat!("The type of [`", stringify!($name), "`].")] $upper = $code, )*
            }
        }

        impl FrameType {
            /// Who may send this frame type; `None` for types this version does not know.
            pub fn origin(self) -> Option<Origin> {
                match self {
                    $( Self::$upper => Some(Origin::$origin), )*
                    _ => None,
                }
            }
        }

        $(
            record! {
                $(#[$meta])*
                pub struct $name {
                    $( $(#[$fmeta])* pub $field: $ty, )*
                }
            }

            impl From<$name> for Frame {
                fn from(payload: $name) -> Self {
                    Frame::$name(payload)
                }
            }
        )*

        /// A decoded frame.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Frame {
            $( $(#[$meta])* $name($name), )*
            /// A frame of a type this version does not know; receivers ignore it.
            Unknown(UnknownFrame),
        }

        impl Frame {
            /// The frame's type code.
            pub fn frame_type(&self) -> FrameType {
                match self {
                    $( Frame::$name(_) => FrameType::$upper, )*
                    Frame::Unknown(unknown) => unknown.frame_type,
                }
            }

            fn payload_len(&self) -> usize {
                match self {
                    $( Frame::$name(payload) => payload.encoded_len(), )*
                    Frame::Unknown(unknown) => unknown.payload.len(),
                }
            }

            fn encode_payload(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
                match self {
                    $( Frame::$name(payload) => payload.encode(dst), )*
                    Frame::Unknown(unknown) => {
                        dst.extend_from_slice(&unknown.payload);
                        Ok(())
                    }
                }
            }

            fn decode_payload(frame_type: FrameType, mut payload: Bytes)
                -> Result<Self, DecodeError>
            {
                Ok(match frame_type {
                    $( FrameType::$upper => Frame::$name($name::decode(&mut payload)?), )*
                    _ => Frame::Unknown(UnknownFrame { frame_type, payload }),
                })
            }
        }

        /// The frame as in `spec/vectors`: `"type"` (its name), then each field by name.
        #[cfg(feature = "serde")]
        impl ::serde::Serialize for Frame {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap;
                use crate::serde_form::AsVector;
                let mut map = serializer.serialize_map(None)?;
                match self {
                    $( Frame::$name(payload) => {
                        map.serialize_entry("type", stringify!($upper))?;
                        $( map.serialize_entry(stringify!($field), &AsVector(&payload.$field))?; )*
                    } )*
                    Frame::Unknown(unknown) => {
                        map.serialize_entry("type", "UNKNOWN")?;
                        map.serialize_entry("frame_type", &AsVector(&unknown.frame_type.0))?;
                        map.serialize_entry("payload", &AsVector(&unknown.payload))?;
                    }
                }
                map.end()
            }
        }

        /// Any frame: every known type, and unknown types with any payload.
        #[cfg(feature = "proptest")]
        impl ::proptest::arbitrary::Arbitrary for Frame {
            type Parameters = ();
            type Strategy = ::proptest::strategy::BoxedStrategy<Self>;

            fn arbitrary_with((): ()) -> Self::Strategy {
                use ::proptest::strategy::Strategy;
                use crate::arbitrary::ArbitraryField;
                ::proptest::strategy::Union::new([
                    $( $name::field_strategy().prop_map(Frame::$name).boxed(), )*
                    (
                        u64::field_strategy().prop_filter("unknown type", |code| {
                            FrameType(*code).origin().is_none()
                        }),
                        Bytes::field_strategy(),
                    )
                        .prop_map(|(code, payload)| Frame::Unknown(UnknownFrame {
                            frame_type: FrameType(code),
                            payload,
                        }))
                        .boxed(),
                ])
                .boxed()
            }
        }
    };
}

frames! {
    // Connection lifecycle (spec 6.1).

    /// Opens a connection: versions, features, frame size and the client's token.
    0x01 HELLO Hello (Client) {
        /// The lowest protocol version the client speaks.
        min_version: u64,
        /// The highest protocol version the client speaks.
        max_version: u64,
        /// Features the client wants.
        features: Features,
        /// The largest frame the client accepts, in bytes.
        max_frame_size: u64,
        /// The credential; its format is the server's (spec 8.1).
        token: Bytes,
        /// Client name and version, for logs.
        agent: Text,
    }
    /// Accepts a HELLO: the chosen version, features and the server's timing.
    0x02 READY Ready (Server) {
        /// The version both sides now speak.
        version: u64,
        /// The features granted: a subset of those asked for.
        features: Features,
        /// The largest frame the server accepts, in bytes.
        max_frame_size: u64,
        /// The client sends a frame at least this often, in milliseconds.
        heartbeat_ms: u64,
        /// The server's name for this connection, for logs and support.
        session: u64,
        /// The authenticated user.
        user: Text,
        /// The authenticated device.
        device: Text,
        /// The user's newest inbox_seq.
        inbox_head: u64,
        /// Server time in milliseconds since the Unix epoch.
        server_time: u64,
    }
    /// Asks the peer for a PONG; also a heartbeat.
    0x03 PING Ping (Either) {
        /// Echoed in the PONG.
        nonce: u64,
    }
    /// Answers a PING.
    0x04 PONG Pong (Either) {
        /// The PING's nonce.
        nonce: u64,
    }
    /// The server is going away: finish, then reconnect after the delay.
    0x05 GOAWAY Goaway (Server) {
        /// Why: SHUTTING_DOWN for a drain.
        code: ErrorCode,
        /// Wait this long before reconnecting, in milliseconds.
        reconnect_ms: u64,
        /// For people.
        message: Text,
    }
    /// Reports an error; codes below 0x10 close the connection.
    0x06 ERROR Error (Either) {
        /// The request it answers, or 0 for the connection.
        request: u64,
        /// What went wrong.
        code: ErrorCode,
        /// Retry no sooner than this, in milliseconds; 0 when no wait is needed.
        retry_after_ms: u64,
        /// For people; never parsed.
        message: Text,
    }
    /// Answers a request that has no other answer.
    0x07 DONE Done (Server) {
        /// The request it answers.
        request: u64,
    }

    // Messaging (spec 6.2).

    /// Appends a message, edit or delete to a conversation.
    0x10 SEND Send (Client) {
        /// Correlates the answer.
        request: u64,
        /// Where to append.
        conversation: Text,
        /// The sender's idempotency key, stable across retries.
        client_msg_id: u64,
        /// MESSAGE, EDIT or DELETE.
        kind: EventKind,
        /// The seq an EDIT or DELETE names; 0 for a MESSAGE.
        target: u64,
        /// The body's media type; empty means `text/plain; charset=utf-8`.
        content_type: Text,
        /// Opaque to the server.
        body: Bytes,
    }
    /// Confirms a durable append and gives its seq.
    0x11 SEND_ACK SendAck (Server) {
        /// The request it answers.
        request: u64,
        /// The event's seq.
        seq: u64,
        /// When the event was accepted.
        timestamp: u64,
        /// The request repeated an earlier one; seq and timestamp are the original's.
        duplicate: bool,
    }
    /// Delivers an event to a device.
    0x12 DELIVER Deliver (Server) {
        /// Position in the user's inbox; 0 for a live event of a large group.
        inbox_seq: u64,
        /// The event's conversation.
        conversation: Text,
        /// The event.
        event: Event,
    }
    /// Acknowledges every inbox entry up to and including inbox_seq.
    0x13 ACK Ack (Client) {
        /// The highest inbox_seq the device has processed.
        inbox_seq: u64,
    }
    /// Moves the user's delivered or read pointer in a conversation.
    0x14 MARK Mark (Client) {
        /// Correlates the answer.
        request: u64,
        /// The conversation.
        conversation: Text,
        /// Which pointer.
        marker: Marker,
        /// The new position; a lower one than stored changes nothing.
        seq: u64,
    }
    /// A member's receipt pointers in a conversation.
    0x15 RECEIPT Receipt (Server) {
        /// The conversation.
        conversation: Text,
        /// The member.
        user: Text,
        /// The member's devices have received up to here.
        delivered: u64,
        /// The member has read up to here.
        read: u64,
    }
    /// Says whether the user is typing.
    0x16 TYPING Typing (Client) {
        /// The conversation.
        conversation: Text,
        /// Typing now, or stopped.
        active: bool,
    }
    /// Another member started or stopped typing.
    0x17 TYPING_UPDATE TypingUpdate (Server) {
        /// The conversation.
        conversation: Text,
        /// Who.
        user: Text,
        /// Typing now, or stopped.
        active: bool,
    }
    /// Replays the inbox after `after`, then streams new entries.
    0x18 RESUME Resume (Client) {
        /// Correlates the SYNCED.
        request: u64,
        /// The device's last acknowledged inbox_seq.
        after: u64,
    }
    /// The replay is complete; what follows is live.
    0x19 SYNCED Synced (Server) {
        /// The RESUME it answers.
        request: u64,
        /// The newest inbox_seq replayed.
        inbox_head: u64,
    }
    /// Events the server cannot deliver: fetch them from history.
    0x1a GAP Gap (Server) {
        /// The conversation, or empty for the inbox.
        conversation: Text,
        /// The first missing seq (or inbox_seq).
        from: u64,
        /// The last missing seq (or inbox_seq).
        to: u64,
    }

    // Queries (spec 6.3).

    /// Asks for a page of a conversation's events.
    0x20 HISTORY History (Client) {
        /// Correlates the page.
        request: u64,
        /// The conversation.
        conversation: Text,
        /// Read from here, exclusive; 0 means the newest end (BACKWARD) or the start (FORWARD).
        anchor: u64,
        /// Older or newer.
        direction: Direction,
        /// At most this many events.
        limit: u64,
    }
    /// A page of events in ascending seq order.
    0x21 HISTORY_PAGE HistoryPage (Server) {
        /// The HISTORY it answers.
        request: u64,
        /// The conversation.
        conversation: Text,
        /// More events lie beyond this page in the direction read.
        more: bool,
        /// The events, ascending.
        events: Vec<Event>,
    }
    /// Asks for the user's conversations, most recently active first.
    0x22 CONVERSATIONS Conversations (Client) {
        /// Correlates the list.
        request: u64,
        /// Empty for the first page, else the previous list's `next_cursor`.
        cursor: Bytes,
        /// At most this many entries.
        limit: u64,
    }
    /// A page of the user's conversations.
    0x23 CONVERSATION_LIST ConversationList (Server) {
        /// The CONVERSATIONS it answers.
        request: u64,
        /// Opaque; empty when this is the last page.
        next_cursor: Bytes,
        /// The entries.
        conversations: Vec<Summary>,
    }

    // Groups (spec 6.4).

    /// Creates a group with the sender as owner.
    0x30 GROUP_CREATE GroupCreate (Client) {
        /// Correlates the GROUP_INFO.
        request: u64,
        /// Shown to members.
        title: Text,
        /// Initial members besides the creator.
        members: Vec<Text>,
    }
    /// Adds, removes or changes the role of a member.
    0x31 GROUP_UPDATE GroupUpdate (Client) {
        /// Correlates the SEND_ACK.
        request: u64,
        /// The group.
        conversation: Text,
        /// What to do.
        op: GroupOp,
        /// To whom.
        user: Text,
        /// The role for ADD and SET_ROLE; ignored for REMOVE.
        role: Role,
    }
    /// Asks for a group's title and members.
    0x32 GROUP_GET GroupGet (Client) {
        /// Correlates the GROUP_INFO.
        request: u64,
        /// The group.
        conversation: Text,
    }
    /// A group's title and members.
    0x33 GROUP_INFO GroupInfo (Server) {
        /// The request it answers.
        request: u64,
        /// The group.
        conversation: Text,
        /// The title.
        title: Text,
        /// The members and their roles.
        members: Vec<Member>,
    }

    // Presence (spec 6.5).

    /// Asks for the presence of a conversation's members for a while.
    0x40 PRESENCE_SUBSCRIBE PresenceSubscribe (Client) {
        /// Correlates the DONE.
        request: u64,
        /// The conversation whose members to watch.
        conversation: Text,
        /// How long the interest lasts, in milliseconds; 0 ends it.
        ttl_ms: u64,
    }
    /// A user's presence.
    0x41 PRESENCE Presence (Server) {
        /// The user.
        user: Text,
        /// Online, offline or unknown.
        status: Status,
        /// When the user was last online, in milliseconds since the Unix epoch; 0 if never.
        last_seen: u64,
    }

    // Cluster links (spec section 9).

    /// Opens a link between two nodes.
    0x60 LINK_HELLO LinkHello (Link) {
        /// The protocol version.
        version: u64,
        /// The sender's node id from the cluster file.
        node: Text,
        /// Edge or broker.
        role: NodeRole,
        /// The sender's ring version.
        ring_version: u64,
        /// The cluster's shared secret.
        secret: Bytes,
    }
    /// Accepts a LINK_HELLO.
    0x61 LINK_READY LinkReady (Link) {
        /// The accepting node's id.
        node: Text,
        /// Its ring version, equal to the hello's.
        ring_version: u64,
    }
    /// Carries one client frame for a session, in either direction.
    0x62 ROUTED Routed (Link) {
        /// The edge's session id.
        session: u64,
        /// The session's user (empty from a broker).
        user: Text,
        /// The session's device (empty from a broker).
        device: Text,
        /// One complete frame, length prefix included.
        frame: Bytes,
    }
    /// Registers or renews a device session at the user's home broker.
    0x63 SESSION_OPEN SessionOpen (Link) {
        /// The edge's session id.
        session: u64,
        /// The user.
        user: Text,
        /// The device.
        device: Text,
        /// The lease lasts this long unless renewed, in milliseconds.
        lease_ms: u64,
    }
    /// Ends a device session at the user's home broker.
    0x64 SESSION_CLOSE SessionClose (Link) {
        /// The edge's session id.
        session: u64,
    }
    /// Hands a new event to the home broker of some of its conversation's members.
    0x65 FANOUT Fanout (Link) {
        /// The conversation.
        conversation: Text,
        /// Append inbox entries (fan-out on write), or only push live (fan-out on read).
        inbox: bool,
        /// The members whose home broker this is.
        users: Vec<Text>,
        /// The event.
        event: Event,
    }
    /// Asks a home broker to push one frame to every session of some users; never stored.
    0x66 PUSH Push (Link) {
        /// The users.
        users: Vec<Text>,
        /// One complete frame, length prefix included.
        frame: Bytes,
    }
    /// Registers a session's interest in the presence of some users at their home broker.
    0x67 INTEREST Interest (Link) {
        /// The edge holding the session.
        node: Text,
        /// The edge's session id.
        session: u64,
        /// How long the interest lasts, in milliseconds; 0 ends it.
        ttl_ms: u64,
        /// The users.
        users: Vec<Text>,
        /// The conversation that makes them visible, so that the interest ends with the
        /// membership (`[NWP-7.9-5]`); empty for an edge's own lookup (`[NWP-9.6-3]`).
        conversation: Text,
    }
    /// Asks a conversation's owner for events by seq.
    0x68 FETCH Fetch (Link) {
        /// Correlates the EVENTS.
        request: u64,
        /// The conversation.
        conversation: Text,
        /// The seqs wanted.
        seqs: Vec<u64>,
    }
    /// Answers a FETCH.
    0x69 EVENTS Events (Link) {
        /// The FETCH it answers.
        request: u64,
        /// The conversation.
        conversation: Text,
        /// The events found, ascending by seq.
        events: Vec<Event>,
    }
    /// A home broker has durably applied every FANOUT of a conversation up to seq.
    0x6a FANOUT_ACK FanoutAck (Link) {
        /// The conversation.
        conversation: Text,
        /// The highest seq applied.
        seq: u64,
    }
}

/// A frame of a type this version does not know, kept whole so it can be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFrame {
    /// The type code.
    pub frame_type: FrameType,
    /// Everything after the type code.
    pub payload: Bytes,
}

impl Frame {
    /// Decodes exactly one complete frame, length prefix included.
    ///
    /// The caller has already checked the length against its limit, usually with
    /// [`crate::split_frame`]; bytes after the frame are an error here because a nested frame
    /// (ROUTED, PUSH) must fill its field exactly.
    pub fn decode(mut frame: Bytes) -> Result<Self, DecodeError> {
        let len = varint::decode(&mut frame)?;
        if len == 0 {
            return Err(DecodeError::EmptyFrame);
        }
        match (frame.len() as u64).cmp(&len) {
            std::cmp::Ordering::Less => return Err(DecodeError::Truncated),
            std::cmp::Ordering::Greater => return Err(DecodeError::TrailingData),
            std::cmp::Ordering::Equal => {}
        }
        let frame_type = FrameType::decode(&mut frame)?;
        Self::decode_payload(frame_type, frame)
    }

    /// Appends the frame, length prefix included; on error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        let body_len = self.frame_type().encoded_len() + self.payload_len();
        dst.reserve(varint::len(body_len as u64) + body_len);
        let result = varint::encode(body_len as u64, dst)
            .and_then(|()| self.frame_type().encode(dst))
            .and_then(|()| self.encode_payload(dst));
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    /// The number of bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let body_len = self.frame_type().encoded_len() + self.payload_len();
        varint::len(body_len as u64) + body_len
    }

    /// Encodes the frame into a buffer of its own.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// The request id of a request or of its answer; `None` for frames that have none.
    pub fn request(&self) -> Option<u64> {
        match self {
            Frame::Error(f) => Some(f.request),
            Frame::Done(f) => Some(f.request),
            Frame::Send(f) => Some(f.request),
            Frame::SendAck(f) => Some(f.request),
            Frame::Mark(f) => Some(f.request),
            Frame::Resume(f) => Some(f.request),
            Frame::Synced(f) => Some(f.request),
            Frame::History(f) => Some(f.request),
            Frame::HistoryPage(f) => Some(f.request),
            Frame::Conversations(f) => Some(f.request),
            Frame::ConversationList(f) => Some(f.request),
            Frame::GroupCreate(f) => Some(f.request),
            Frame::GroupUpdate(f) => Some(f.request),
            Frame::GroupGet(f) => Some(f.request),
            Frame::GroupInfo(f) => Some(f.request),
            Frame::PresenceSubscribe(f) => Some(f.request),
            Frame::Fetch(f) => Some(f.request),
            Frame::Events(f) => Some(f.request),
            _ => None,
        }
    }
}

impl Error {
    /// An ERROR answering `request` with `code` and a message for people.
    pub fn new(request: u64, code: ErrorCode, message: impl Into<Text>) -> Self {
        Self {
            request,
            code,
            retry_after_ms: 0,
            message: message.into(),
        }
    }
}

/// Reads the frame type of a complete encoded frame without decoding its payload.
pub fn peek_type(frame: &[u8]) -> Result<FrameType, DecodeError> {
    let mut rest = frame;
    varint::decode(&mut rest)?;
    varint::decode(&mut rest).map(FrameType)
}
