//! The typed events a session hands to the application.

use std::time::Duration;

use bytes::Bytes;
use natter_codec::types::{self, EventFlags, EventKind, MemberChange, Role, Status};

use crate::Error;

/// One event of a conversation log: a message, edit, delete or membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEvent {
    /// The conversation.
    pub conversation: String,
    /// Position in the conversation, from 1, gapless.
    pub seq: u64,
    /// What the event is.
    pub kind: EventKind,
    /// The seq an EDIT or DELETE names; 0 otherwise.
    pub target: u64,
    /// Tombstone and edit state, as history shows it.
    pub flags: EventFlags,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The user who caused it.
    pub sender: String,
    /// The device it came from; empty for server-made events.
    pub device: String,
    /// The sender's idempotency key; 0 for server-made events.
    pub client_msg_id: u64,
    /// The body's media type; empty means `text/plain; charset=utf-8`.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

impl ChatEvent {
    /// Converts a wire event of `conversation`.
    pub fn from_wire(conversation: &str, event: types::Event) -> Self {
        Self {
            conversation: conversation.to_owned(),
            seq: event.seq,
            kind: event.kind,
            target: event.target,
            flags: event.flags,
            timestamp: event.timestamp,
            sender: event.sender.to_string(),
            device: event.device.to_string(),
            client_msg_id: event.client_msg_id,
            content_type: event.content_type.to_string(),
            body: event.body,
        }
    }

    /// The body as text, when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The membership change a MEMBER_ADDED, MEMBER_REMOVED or ROLE_CHANGED event carries.
    pub fn member_change(&self) -> Option<(String, Role)> {
        if !self.kind.is_membership() {
            return None;
        }
        let change = MemberChange::from_body(self.body.clone()).ok()?;
        Some((change.user.to_string(), change.role))
    }
}

/// Something that happened, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The connection changed state.
    Connection(ConnectionState),
    /// A new message.
    Message(ChatEvent),
    /// A message was edited; `target` names it and `body` is the new body.
    Edit(ChatEvent),
    /// A message was deleted; `target` names it.
    Delete(ChatEvent),
    /// A group was created, or a member was added, removed or changed role.
    Membership(ChatEvent),
    /// An event of a kind this version does not know.
    Other(ChatEvent),
    /// A member's delivered and read pointers in a conversation.
    Receipt {
        /// The conversation.
        conversation: String,
        /// The member.
        user: String,
        /// Received up to here.
        delivered: u64,
        /// Read up to here.
        read: u64,
    },
    /// A user's presence.
    Presence {
        /// The user.
        user: String,
        /// Online, offline or unknown.
        status: Status,
        /// When last online, in milliseconds since the Unix epoch; 0 if never.
        last_seen: u64,
    },
    /// Another member started or stopped typing.
    Typing {
        /// The conversation.
        conversation: String,
        /// Who.
        user: String,
        /// Typing now, or stopped.
        active: bool,
    },
    /// Events were missed; the session is repairing them from history.
    Gap {
        /// The conversation, or `None` for the inbox.
        conversation: Option<String>,
        /// The first missing seq (or inbox_seq).
        from: u64,
        /// The last missing seq (or inbox_seq).
        to: u64,
    },
    /// A conversation is complete again up to `through`; repaired events came before this.
    Repaired {
        /// The conversation.
        conversation: String,
        /// Every event up to this seq has been delivered.
        through: u64,
    },
    /// A conversation could not be repaired from history.
    RepairFailed {
        /// The conversation.
        conversation: String,
        /// Why.
        error: Error,
    },
}

impl Event {
    /// The conversation event this event carries, if any.
    pub fn chat_event(&self) -> Option<&ChatEvent> {
        match self {
            Self::Message(event)
            | Self::Edit(event)
            | Self::Delete(event)
            | Self::Membership(event)
            | Self::Other(event) => Some(event),
            _ => None,
        }
    }

    pub(crate) fn from_chat(event: ChatEvent) -> Self {
        match event.kind {
            EventKind::MESSAGE => Self::Message(event),
            EventKind::EDIT => Self::Edit(event),
            EventKind::DELETE => Self::Delete(event),
            kind if kind.is_membership() || kind == EventKind::GROUP_CREATED => {
                Self::Membership(event)
            }
            _ => Self::Other(event),
        }
    }
}

/// The state of the connection to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening a connection; `attempt` counts from 1 since the last success.
    Connecting {
        /// The attempt number.
        attempt: u32,
    },
    /// The server accepted the HELLO.
    Connected {
        /// The authenticated user.
        user: String,
        /// The authenticated device.
        device: String,
        /// The server's name for this connection.
        session: u64,
    },
    /// The inbox replay is complete; what follows is live.
    Synced {
        /// The newest inbox_seq replayed.
        inbox_head: u64,
    },
    /// The server is draining; the client reconnects after the delay.
    GoingAway {
        /// The server's suggested delay.
        reconnect_after: Duration,
    },
    /// The connection ended; the client reconnects after `retry_in`.
    Disconnected {
        /// Why, for people.
        reason: String,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// The client stopped for good (closed, or a fatal error such as an expired token).
    Closed {
        /// The fatal error, if that is why.
        error: Option<Error>,
    },
}
