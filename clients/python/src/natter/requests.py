"""What an application asks the server, and the answers it gets back (spec 5.3)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import ClassVar, List, Union

from . import frames, varint
from .events import ChatEvent
from .frames import Direction, EventKind, Role


def new_client_msg_id() -> int:
    """A random client_msg_id in 1..2^62-1, unique enough per device that an application
    need not store a counter [NWP-6.2.1-1]."""
    return secrets.randbelow(varint.MAX) + 1


@dataclass
class OutgoingMessage:
    """A message, edit or delete to append to a conversation.

    `client_msg_id` is the idempotency key: the session repeats the SEND with the same id
    until the server acknowledges it, and the server answers a repeat with the original seq
    [NWP-7.2-2].
    """

    conversation: str
    body: bytes = b""
    content_type: str = ""
    """Empty means `text/plain; charset=utf-8`."""
    kind: int = EventKind.MESSAGE
    target: int = 0
    """The seq an EDIT or DELETE names; 0 for a MESSAGE [NWP-6.2.1-2]."""
    client_msg_id: int = field(default_factory=new_client_msg_id)

    idempotent: ClassVar[bool] = True

    @classmethod
    def text(cls, conversation: str, text: str) -> OutgoingMessage:
        """A plain text message with a fresh client_msg_id."""
        return cls(conversation, text.encode("utf-8"))

    def to_frame(self, request: int) -> frames.Frame:
        """The SEND carrying this message under wire request id `request`."""
        return frames.Send(
            request,
            self.conversation,
            self.client_msg_id,
            self.kind,
            self.target,
            self.content_type,
            self.body,
        )


@dataclass
class MarkRequest:
    """Moves the user's delivered or read pointer; answered by `Done`."""

    conversation: str
    marker: int
    seq: int

    idempotent: ClassVar[bool] = True

    def to_frame(self, request: int) -> frames.Frame:
        return frames.Mark(request, self.conversation, self.marker, self.seq)


@dataclass
class HistoryRequest:
    """Reads a page of a conversation; answered by `HistoryPage`."""

    conversation: str
    anchor: int = 0
    """Exclusive; 0 is the newest end (BACKWARD) or the start (FORWARD)."""
    direction: int = Direction.BACKWARD
    limit: int = 50

    idempotent: ClassVar[bool] = True

    def to_frame(self, request: int) -> frames.Frame:
        return frames.History(request, self.conversation, self.anchor, self.direction, self.limit)


@dataclass
class ConversationsRequest:
    """Lists the user's conversations; answered by `ConversationPage`."""

    cursor: bytes = b""
    """Empty for the first page, else the previous page's `next_cursor`."""
    limit: int = 50

    idempotent: ClassVar[bool] = True

    def to_frame(self, request: int) -> frames.Frame:
        return frames.Conversations(request, self.cursor, self.limit)


@dataclass
class GroupCreateRequest:
    """Creates a group owned by the user; answered by `GroupInfo`.

    Not repeated after a lost connection: a second create would make a second group.
    """

    title: str
    members: List[str] = field(default_factory=list)

    idempotent: ClassVar[bool] = False

    def to_frame(self, request: int) -> frames.Frame:
        return frames.GroupCreate(request, self.title, list(self.members))


@dataclass
class GroupUpdateRequest:
    """Adds, removes or changes the role of a member; answered by `Sent`.

    Not repeated after a lost connection: a repeat would fail with CONFLICT.
    """

    conversation: str
    op: int
    user: str
    role: int = Role.MEMBER

    idempotent: ClassVar[bool] = False

    def to_frame(self, request: int) -> frames.Frame:
        return frames.GroupUpdate(request, self.conversation, self.op, self.user, self.role)


@dataclass
class GroupGetRequest:
    """A group's title and members; answered by `GroupInfo`."""

    conversation: str

    idempotent: ClassVar[bool] = True

    def to_frame(self, request: int) -> frames.Frame:
        return frames.GroupGet(request, self.conversation)


@dataclass
class PresenceSubscribeRequest:
    """Watches the presence of a conversation's members for `ttl_ms`; answered by `Done`."""

    conversation: str
    ttl_ms: int

    idempotent: ClassVar[bool] = True

    def to_frame(self, request: int) -> frames.Frame:
        return frames.PresenceSubscribe(request, self.conversation, self.ttl_ms)


Request = Union[
    OutgoingMessage,
    MarkRequest,
    HistoryRequest,
    ConversationsRequest,
    GroupCreateRequest,
    GroupUpdateRequest,
    GroupGetRequest,
    PresenceSubscribeRequest,
]
"""A request that gets exactly one answer [NWP-5.3-1]."""


@dataclass(frozen=True)
class Sent:
    """A durable append (SEND and GROUP_UPDATE)."""

    seq: int
    timestamp: int
    """When the server accepted it, in milliseconds since the Unix epoch."""
    duplicate: bool
    """The server had already accepted this client_msg_id; seq is the original's."""


@dataclass(frozen=True)
class Done:
    """The request took effect (MARK, PRESENCE_SUBSCRIBE)."""


@dataclass(frozen=True)
class HistoryPage:
    """A page of a conversation's events, ascending by seq."""

    conversation: str
    more: bool
    """More events lie beyond this page in the direction read [NWP-7.5-2]."""
    events: List[ChatEvent]


ConversationSummary = frames.Summary
"""One of the user's conversations (spec 4.4)."""


@dataclass(frozen=True)
class ConversationPage:
    """A page of the user's conversations, most recently active first."""

    next_cursor: bytes
    """Pass it to the next call; empty on the last page."""
    conversations: List[ConversationSummary]


@dataclass(frozen=True)
class GroupInfo:
    """A group's title and members."""

    conversation: str
    title: str
    members: List[frames.Member]


Reply = Union[Sent, Done, HistoryPage, ConversationPage, GroupInfo]
"""The answer to a `Request`."""
