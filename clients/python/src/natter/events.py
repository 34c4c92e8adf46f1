"""The typed events a session hands to the application, in the order they happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from . import frames
from .errors import DecodeError, NatterError
from .frames import EventFlags, EventKind


@dataclass(frozen=True)
class ChatEvent:
    """One event of a conversation log; its subclass says which kind (spec 4.1)."""

    conversation: str
    seq: int
    """Position in the conversation, from 1, gapless [NWP-7.1-1]."""
    kind: int
    """An `EventKind`; kinds this version does not know arrive as `OtherEvent` [NWP-4.1-1]."""
    target: int
    """The seq an EDIT or DELETE names; 0 otherwise."""
    flags: int
    """`EventFlags` as history shows them; not to be relied on for live events [NWP-4.1-2]."""
    timestamp: int
    """When the server accepted it, in milliseconds since the Unix epoch."""
    sender: str
    device: str
    """The device it came from; empty for server-made events."""
    client_msg_id: int
    """The sender's idempotency key; 0 for server-made events."""
    content_type: str
    """The body's media type; empty means `text/plain; charset=utf-8` [NWP-7.13-2]."""
    body: bytes

    @property
    def omitted(self) -> bool:
        """Whether this copy left the body out because the event alone does not fit this
        client's maximum frame size; the body is then absent, not empty [NWP-4.1-4]."""
        return bool(self.flags & EventFlags.OMITTED)

    @property
    def text(self) -> Optional[str]:
        """The body as text, when it is UTF-8 and not omitted."""
        if self.omitted:
            return None
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def member_change(self) -> Optional[Tuple[str, int]]:
        """The member and role a MEMBER_ADDED, MEMBER_REMOVED or ROLE_CHANGED event names."""
        if self.kind not in _MEMBERSHIP:
            return None
        try:
            change = frames.MemberChange.from_body(self.body)
        except DecodeError:
            return None
        return change.user, change.role


_MEMBERSHIP = (EventKind.MEMBER_ADDED, EventKind.MEMBER_REMOVED, EventKind.ROLE_CHANGED)


@dataclass(frozen=True)
class Message(ChatEvent):
    """A new message."""


@dataclass(frozen=True)
class Edit(ChatEvent):
    """A message was edited: `target` names it and `body` is its new body."""


@dataclass(frozen=True)
class Delete(ChatEvent):
    """A message was deleted: `target` names it."""


@dataclass(frozen=True)
class Membership(ChatEvent):
    """A group was created, or a member was added, removed or changed role."""


@dataclass(frozen=True)
class OtherEvent(ChatEvent):
    """An event of a kind this version does not know; it still occupies its seq."""


def chat_event(conversation: str, event: frames.Event) -> ChatEvent:
    """The typed event for a wire event of `conversation`."""
    kind = event.kind
    if kind == EventKind.MESSAGE:
        cls: type[ChatEvent] = Message
    elif kind == EventKind.EDIT:
        cls = Edit
    elif kind == EventKind.DELETE:
        cls = Delete
    elif kind in _MEMBERSHIP or kind == EventKind.GROUP_CREATED:
        cls = Membership
    else:
        cls = OtherEvent
    return cls(
        conversation,
        event.seq,
        kind,
        event.target,
        event.flags,
        event.timestamp,
        event.sender,
        event.device,
        event.client_msg_id,
        event.content_type,
        event.body,
    )


@dataclass(frozen=True)
class Receipt:
    """A member's delivered and read pointers in a conversation; they never decrease."""

    conversation: str
    user: str
    delivered: int
    read: int


@dataclass(frozen=True)
class Presence:
    """A user's presence: a `Status`, and when last online (ms since the epoch; 0 if never)."""

    user: str
    status: int
    last_seen: int


@dataclass(frozen=True)
class Typing:
    """Another member started or stopped typing; `active` expires after 6 s [NWP-6.2.8-1]."""

    conversation: str
    user: str
    active: bool


@dataclass(frozen=True)
class Gap:
    """Events were missed (`from_..=to`); the session is repairing them from history.

    `conversation` is None for a range of the inbox.
    """

    conversation: Optional[str]
    from_: int
    to: int


@dataclass(frozen=True)
class Repaired:
    """A conversation is complete again up to `through`; repaired events came before this."""

    conversation: str
    through: int


@dataclass(frozen=True)
class RepairFailed:
    """A conversation could not be repaired from history (empty for the conversation list)."""

    conversation: str
    error: NatterError


# The connection's state.


@dataclass(frozen=True)
class Connecting:
    """Opening a connection; `attempt` counts from 1 since the last success."""

    attempt: int


@dataclass(frozen=True)
class Connected:
    """The server accepted the HELLO."""

    user: str
    device: str
    session: int
    """The server's name for the connection, for logs and support requests."""


@dataclass(frozen=True)
class Synced:
    """The inbox replay is complete; what follows is live."""

    inbox_head: int


@dataclass(frozen=True)
class GoingAway:
    """The server is draining; the client reconnects after `reconnect_after` seconds."""

    reconnect_after: float


@dataclass(frozen=True)
class Disconnected:
    """The connection ended; the client reconnects after `retry_in` seconds."""

    reason: str
    retry_in: float


@dataclass(frozen=True)
class Closed:
    """The client stopped for good: closed, or a fatal error such as an expired token."""

    error: Optional[NatterError] = None


Event = Union[
    ChatEvent,
    Receipt,
    Presence,
    Typing,
    Gap,
    Repaired,
    RepairFailed,
    Connecting,
    Connected,
    Synced,
    GoingAway,
    Disconnected,
    Closed,
]
"""Everything `Client.events` yields."""
