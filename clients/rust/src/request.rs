//! What an application asks the server, and the answers it gets back.

use bytes::Bytes;
use natter_codec::Frame;
use natter_codec::frame::{
    Conversations, GroupCreate, GroupGet, GroupUpdate, History, Mark, PresenceSubscribe, Send,
};
use natter_codec::types::{
    ConversationKind, Direction, EventKind, GroupOp, Marker, Member, Role, Summary,
};

use crate::event::ChatEvent;

/// A message, edit or delete to append to a conversation.
///
/// `client_msg_id` is the idempotency key: the session repeats the SEND with the same id
/// until the server acknowledges it, and the server answers a repeat with the original seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The conversation to append to.
    pub conversation: String,
    /// Unique per device and message, non-zero, below 2^62.
    pub client_msg_id: u64,
    /// MESSAGE, EDIT or DELETE.
    pub kind: EventKind,
    /// The seq an EDIT or DELETE names; 0 for a MESSAGE.
    pub target: u64,
    /// The body's media type; empty means `text/plain; charset=utf-8`.
    pub content_type: String,
    /// The body, opaque to the server.
    pub body: Bytes,
}

/// A request that gets exactly one answer from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Append a message, edit or delete; answered by [`Reply::Sent`].
    Send(OutgoingMessage),
    /// Move the user's delivered or read pointer; answered by [`Reply::Done`].
    Mark {
        /// The conversation.
        conversation: String,
        /// Which pointer.
        marker: Marker,
        /// The new position.
        seq: u64,
    },
    /// Read a page of a conversation; answered by [`Reply::History`].
    History {
        /// The conversation.
        conversation: String,
        /// Exclusive start; 0 is the newest end (backward) or the start (forward).
        anchor: u64,
        /// Older or newer.
        direction: Direction,
        /// At most this many events.
        limit: u64,
    },
    /// List the user's conversations; answered by [`Reply::Conversations`].
    Conversations {
        /// Empty for the first page, else the previous page's `next_cursor`.
        cursor: Bytes,
        /// At most this many entries.
        limit: u64,
    },
    /// Create a group owned by the user; answered by [`Reply::Group`].
    GroupCreate {
        /// Shown to members.
        title: String,
        /// Members besides the creator.
        members: Vec<String>,
    },
    /// Add, remove or change the role of a member; answered by [`Reply::Sent`].
    GroupUpdate {
        /// The group.
        conversation: String,
        /// What to do.
        op: GroupOp,
        /// To whom.
        user: String,
        /// The role for ADD and SET_ROLE.
        role: Role,
    },
    /// A group's title and members; answered by [`Reply::Group`].
    GroupGet {
        /// The group.
        conversation: String,
    },
    /// Watch the presence of a conversation's members; answered by [`Reply::Done`].
    PresenceSubscribe {
        /// The conversation.
        conversation: String,
        /// How long, in milliseconds; 0 ends the interest.
        ttl_ms: u64,
    },
}

impl Request {
    /// Whether sending the request twice has the effect of sending it once, so the session
    /// may repeat it after a reconnect. Group changes are not: a second create makes a
    /// second group.
    pub fn is_idempotent(&self) -> bool {
        !matches!(self, Self::GroupCreate { .. } | Self::GroupUpdate { .. })
    }

    /// The wire frame carrying this request under wire request id `request`.
    pub fn to_frame(&self, request: u64) -> Frame {
        match self.clone() {
            Self::Send(message) => Send {
                request,
                conversation: message.conversation.into(),
                client_msg_id: message.client_msg_id,
                kind: message.kind,
                target: message.target,
                content_type: message.content_type.into(),
                body: message.body,
            }
            .into(),
            Self::Mark {
                conversation,
                marker,
                seq,
            } => Mark {
                request,
                conversation: conversation.into(),
                marker,
                seq,
            }
            .into(),
            Self::History {
                conversation,
                anchor,
                direction,
                limit,
            } => History {
                request,
                conversation: conversation.into(),
                anchor,
                direction,
                limit,
            }
            .into(),
            Self::Conversations { cursor, limit } => Conversations {
                request,
                cursor,
                limit,
            }
            .into(),
            Self::GroupCreate { title, members } => GroupCreate {
                request,
                title: title.into(),
                members: members.into_iter().map(Into::into).collect(),
            }
            .into(),
            Self::GroupUpdate {
                conversation,
                op,
                user,
                role,
            } => GroupUpdate {
                request,
                conversation: conversation.into(),
                op,
                user: user.into(),
                role,
            }
            .into(),
            Self::GroupGet { conversation } => GroupGet {
                request,
                conversation: conversation.into(),
            }
            .into(),
            Self::PresenceSubscribe {
                conversation,
                ttl_ms,
            } => PresenceSubscribe {
                request,
                conversation: conversation.into(),
                ttl_ms,
            }
            .into(),
        }
    }
}

/// The server's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The event is durable at `seq` (SEND and GROUP_UPDATE).
    Sent(Sent),
    /// The request took effect (MARK, PRESENCE_SUBSCRIBE).
    Done,
    /// A page of history.
    History(HistoryPage),
    /// A page of the user's conversations.
    Conversations(ConversationPage),
    /// A group's title and members.
    Group(GroupInfo),
}

/// A durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The event's seq in its conversation.
    pub seq: u64,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The server had already accepted this client_msg_id (a retry); seq is the original.
    pub duplicate: bool,
}

/// A page of a conversation's events, ascending by seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The conversation.
    pub conversation: String,
    /// More events lie beyond this page in the direction read.
    pub more: bool,
    /// The events, ascending.
    pub events: Vec<ChatEvent>,
}

/// A page of the user's conversations, most recently active first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPage {
    /// Pass it to the next call; empty when this is the last page.
    pub next_cursor: Bytes,
    /// The entries.
    pub conversations: Vec<ConversationSummary>,
}

/// One of the user's conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The conversation id.
    pub conversation: String,
    /// Direct or group.
    pub kind: ConversationKind,
    /// The group title; empty for direct conversations.
    pub title: String,
    /// The newest seq.
    pub last_seq: u64,
    /// When the newest event was accepted, in milliseconds since the Unix epoch.
    pub last_timestamp: u64,
    /// The user's read pointer.
    pub read_seq: u64,
    /// Messages from others after the read pointer.
    pub unread: u64,
}

impl From<Summary> for ConversationSummary {
    fn from(summary: Summary) -> Self {
        Self {
            conversation: summary.conversation.to_string(),
            kind: summary.kind,
            title: summary.title.to_string(),
            last_seq: summary.last_seq,
            last_timestamp: summary.last_timestamp,
            read_seq: summary.read_seq,
            unread: summary.unread,
        }
    }
}

/// A group's title and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's conversation id.
    pub conversation: String,
    /// The title.
    pub title: String,
    /// The members and their roles.
    pub members: Vec<(String, Role)>,
}

impl GroupInfo {
    pub(crate) fn from_wire(conversation: &str, title: &str, members: Vec<Member>) -> Self {
        Self {
            conversation: conversation.to_owned(),
            title: title.to_owned(),
            members: members
                .into_iter()
                .map(|member| (member.user.to_string(), member.role))
                .collect(),
        }
    }
}
