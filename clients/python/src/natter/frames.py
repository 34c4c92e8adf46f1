"""Every frame of protocol v1 and the values they share (spec sections 4, 6 and 9).

Each frame and record is a dataclass whose fields are its wire fields in wire order. The
annotations say how each is encoded: `int` a varint `(i)`, `bool` a `(flag)`, `Byte` a
one-byte bit set `(8)`, `str` a string `(s)`, `bytes` a byte string `(b)`, `List[T]` a list,
and a record class a record inline. So the layout is declared once, and encode and decode
cannot disagree. Enum fields are plain ints, so
values this version does not know decode without error [NWP-4.3-1]; the IntEnum classes
below name the known ones.
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Callable, ClassVar, Dict, List, Optional, Tuple, Type, TypeVar

from . import varint
from .codec import Reader, split_frame
from .errors import EmptyFrame, EncodeError, NotOneFrame, TrailingData, Truncated

_BYTE = "(8)"
Byte = Annotated[int, _BYTE]
"""`(8)`: a one-byte bit set (event flags); unlike a `(flag)`, any value is valid."""

Read = Callable[[Reader], Any]
Write = Callable[[Any, bytearray], None]


# Enumerations and flag sets (spec 4.1 to 4.3).


class EventKind(enum.IntEnum):
    """What a conversation event is (table 3)."""

    MESSAGE = 0x00
    EDIT = 0x01
    DELETE = 0x02
    MEMBER_ADDED = 0x03
    MEMBER_REMOVED = 0x04
    ROLE_CHANGED = 0x05
    GROUP_CREATED = 0x06


class Role(enum.IntEnum):
    """A member's role in a group (table 4)."""

    MEMBER = 0x00
    ADMIN = 0x01
    OWNER = 0x02


class Direction(enum.IntEnum):
    """Which way a HISTORY page reads from its anchor."""

    BACKWARD = 0x00
    FORWARD = 0x01


class Marker(enum.IntEnum):
    """Which receipt pointer a MARK moves."""

    DELIVERED = 0x01
    READ = 0x02


class Status(enum.IntEnum):
    """A user's presence."""

    UNKNOWN = 0x00
    OFFLINE = 0x01
    ONLINE = 0x02


class GroupOp(enum.IntEnum):
    """What a GROUP_UPDATE does."""

    ADD = 0x01
    REMOVE = 0x02
    SET_ROLE = 0x03


class ConversationKind(enum.IntEnum):
    """What a conversation is."""

    DIRECT = 0x01
    GROUP = 0x02


class NodeRole(enum.IntEnum):
    """What a node on a cluster link is."""

    EDGE = 0x01
    BROKER = 0x02


class Features(enum.IntFlag):
    """Optional parts of the protocol, negotiated in HELLO and READY [NWP-5.1-4]."""

    RECEIPTS = 0x01
    TYPING = 0x02
    PRESENCE = 0x04
    ALL = 0x07


class EventFlags(enum.IntFlag):
    """The event flags bit set `(8)`; unknown bits are kept and ignored [NWP-2.2-4]."""

    DELETED = 0x01
    """A tombstone: body and content type are empty."""
    EDITED = 0x02
    """A later EDIT names this event."""
    OMITTED = 0x04
    """This copy's body and content type were left out: the event alone does not fit the
    receiver's maximum frame size [NWP-4.1-4]. The body is not empty, only absent."""


# The field vocabulary (spec 2.2).


def _write_byte(value: int, out: bytearray) -> None:
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"{value} does not fit in a byte")
    out.append(value)


def _write_flag(value: bool, out: bytearray) -> None:
    out.append(1 if value else 0)


def _write_blob(value: bytes, out: bytearray) -> None:
    varint.encode(len(value), out)
    out += value


def _write_text(value: str, out: bytearray) -> None:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError(f"{value!r} is not encodable as UTF-8") from None
    _write_blob(raw, out)


_SCALARS: Dict[object, Tuple[Read, Write]] = {
    int: (Reader.varint, varint.encode),
    bool: (Reader.flag, _write_flag),
    str: (Reader.text, _write_text),
    bytes: (Reader.blob, _write_blob),
}


def _list_codec(item: Tuple[Read, Write]) -> Tuple[Read, Write]:
    read_item, write_item = item

    def read(reader: Reader) -> List[Any]:
        return [read_item(reader) for _ in range(reader.count())]

    def write(values: List[Any], out: bytearray) -> None:
        varint.encode(len(values), out)
        for value in values:
            write_item(value, out)

    return read, write


def _codec(hint: object) -> Tuple[Read, Write]:
    """How a field with this annotation is read and written."""
    origin = typing.get_origin(hint)
    if origin is Annotated and _BYTE in typing.get_args(hint)[1:]:
        return Reader.byte, _write_byte
    if origin is list:
        return _list_codec(_codec(typing.get_args(hint)[0]))
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint._decode, _write_record
    if hint in _SCALARS:
        return _SCALARS[hint]
    raise TypeError(f"no wire encoding for {hint!r}")


R = TypeVar("R", bound="Record")


class Record:
    """A value encoded as its fields in order, with no length of its own (spec 2.2).

    Its methods start with `_` so that no wire field name can shadow them.
    """

    _layout: ClassVar[Tuple[Tuple[str, Read, Write], ...]] = ()

    @classmethod
    def _decode(cls: Type[R], reader: Reader) -> R:
        """Reads the fields in order; bytes after them are left to the caller."""
        make = typing.cast(Callable[..., R], cls)
        return make(*[read(reader) for _, read, _ in cls._layout])

    def _encode(self, out: bytearray) -> None:
        """Appends the fields in order."""
        for name, _, write in self._layout:
            write(getattr(self, name), out)


def _write_record(value: Record, out: bytearray) -> None:
    value._encode(out)


def _laid_out(cls: Type[R]) -> Type[R]:
    """Derives a dataclass's wire layout from its annotations, once."""
    hints = typing.get_type_hints(cls, include_extras=True)
    layout = []
    for f in fields(typing.cast(Any, cls)):
        read, write = _codec(hints[f.name])
        layout.append((f.name, read, write))
    cls._layout = tuple(layout)
    return cls


# Records (spec 4).


@_laid_out
@dataclass
class Event(Record):
    """One entry of a conversation log (spec 4.1)."""

    seq: int = 0
    kind: int = EventKind.MESSAGE
    target: int = 0
    flags: Byte = 0
    timestamp: int = 0
    sender: str = ""
    device: str = ""
    client_msg_id: int = 0
    content_type: str = ""
    body: bytes = b""


@_laid_out
@dataclass
class Member(Record):
    """A group member and role (spec 4.2)."""

    user: str = ""
    role: int = Role.MEMBER


@_laid_out
@dataclass
class MemberChange(Record):
    """The body of MEMBER_ADDED, MEMBER_REMOVED and ROLE_CHANGED events (spec 4.2)."""

    user: str = ""
    role: int = Role.MEMBER

    @classmethod
    def from_body(cls, body: bytes) -> MemberChange:
        """Decodes an event body; bytes after the known fields are ignored [NWP-11-2]."""
        return cls._decode(Reader(body))


@_laid_out
@dataclass
class Summary(Record):
    """One entry of a CONVERSATION_LIST (spec 4.4)."""

    conversation: str = ""
    kind: int = ConversationKind.DIRECT
    title: str = ""
    last_seq: int = 0
    last_timestamp: int = 0
    read_seq: int = 0
    unread: int = 0


# Frames (spec 6 and 9).


class Origin(enum.Enum):
    """Who may send a frame type (table 2)."""

    CLIENT = "C"
    SERVER = "S"
    EITHER = "C/S"
    LINK = "L"


class Frame(Record):
    """A frame of protocol v1; subclasses are the frame types of table 2."""

    TYPE: ClassVar[int]
    """The frame type code."""
    NAME: ClassVar[str]
    """The spec's name for it, as in spec/vectors."""
    ORIGIN: ClassVar[Optional[Origin]]
    """Who may send it; None for types this version does not know."""


FRAME_TYPES: Dict[int, Type[Frame]] = {}
"""Every frame type this version knows, by type code."""

F = TypeVar("F", bound=Frame)


def _frame(code: int, name: str, origin: Origin) -> Callable[[Type[F]], Type[F]]:
    def register(cls: Type[F]) -> Type[F]:
        cls.TYPE, cls.NAME, cls.ORIGIN = code, name, origin
        FRAME_TYPES[code] = _laid_out(cls)
        return cls

    return register


# Connection lifecycle (6.1).


@_frame(0x01, "HELLO", Origin.CLIENT)
@dataclass
class Hello(Frame):
    """Opens a connection: versions, features, frame size and the client's token."""

    min_version: int = 0
    max_version: int = 0
    features: int = 0
    max_frame_size: int = 0
    token: bytes = b""
    agent: str = ""


@_frame(0x02, "READY", Origin.SERVER)
@dataclass
class Ready(Frame):
    """Accepts a HELLO: the version in use, features granted, limits and identity."""

    version: int = 0
    features: int = 0
    max_frame_size: int = 0
    heartbeat_ms: int = 0
    session: int = 0
    user: str = ""
    device: str = ""
    inbox_head: int = 0
    server_time: int = 0


@_frame(0x03, "PING", Origin.EITHER)
@dataclass
class Ping(Frame):
    """Asks the peer for a PONG; also a heartbeat."""

    nonce: int = 0


@_frame(0x04, "PONG", Origin.EITHER)
@dataclass
class Pong(Frame):
    """Answers a PING with its nonce."""

    nonce: int = 0


@_frame(0x05, "GOAWAY", Origin.SERVER)
@dataclass
class Goaway(Frame):
    """The server is going away: finish, then reconnect after a random delay."""

    code: int = 0
    reconnect_ms: int = 0
    message: str = ""


@_frame(0x06, "ERROR", Origin.EITHER)
@dataclass
class Error(Frame):
    """Answers one request with an error, or (codes below 0x10) closes the connection."""

    request: int = 0
    code: int = 0
    retry_after_ms: int = 0
    message: str = ""


@_frame(0x07, "DONE", Origin.SERVER)
@dataclass
class Done(Frame):
    """Answers a request that has no other answer (MARK, PRESENCE_SUBSCRIBE)."""

    request: int = 0


# Messaging (6.2).


@_frame(0x10, "SEND", Origin.CLIENT)
@dataclass
class Send(Frame):
    """Appends a message, edit or delete to a conversation."""

    request: int = 0
    conversation: str = ""
    client_msg_id: int = 0
    kind: int = EventKind.MESSAGE
    target: int = 0
    content_type: str = ""
    body: bytes = b""


@_frame(0x11, "SEND_ACK", Origin.SERVER)
@dataclass
class SendAck(Frame):
    """Confirms a durable append and gives its seq; also answers GROUP_UPDATE."""

    request: int = 0
    seq: int = 0
    timestamp: int = 0
    duplicate: bool = False


@_frame(0x12, "DELIVER", Origin.SERVER)
@dataclass
class Deliver(Frame):
    """Delivers an event of a conversation to a device."""

    inbox_seq: int = 0
    conversation: str = ""
    event: Event = field(default_factory=Event)


@_frame(0x13, "ACK", Origin.CLIENT)
@dataclass
class Ack(Frame):
    """Acknowledges every inbox entry up to and including inbox_seq."""

    inbox_seq: int = 0


@_frame(0x14, "MARK", Origin.CLIENT)
@dataclass
class Mark(Frame):
    """Moves the user's delivered or read pointer in a conversation."""

    request: int = 0
    conversation: str = ""
    marker: int = Marker.READ
    seq: int = 0


@_frame(0x15, "RECEIPT", Origin.SERVER)
@dataclass
class Receipt(Frame):
    """A member's receipt pointers in a conversation (feature RECEIPTS)."""

    conversation: str = ""
    user: str = ""
    delivered: int = 0
    read: int = 0


@_frame(0x16, "TYPING", Origin.CLIENT)
@dataclass
class Typing(Frame):
    """Says whether the user is typing in a conversation."""

    conversation: str = ""
    active: bool = False


@_frame(0x17, "TYPING_UPDATE", Origin.SERVER)
@dataclass
class TypingUpdate(Frame):
    """Another member started or stopped typing (feature TYPING)."""

    conversation: str = ""
    user: str = ""
    active: bool = False


@_frame(0x18, "RESUME", Origin.CLIENT)
@dataclass
class Resume(Frame):
    """Asks for the inbox entries after `after`, then for live entries."""

    request: int = 0
    after: int = 0


@_frame(0x19, "SYNCED", Origin.SERVER)
@dataclass
class Synced(Frame):
    """The replay asked for by RESUME is complete; what follows is live."""

    request: int = 0
    inbox_head: int = 0


@_frame(0x1A, "GAP", Origin.SERVER)
@dataclass
class Gap(Frame):
    """Events the server cannot deliver (`from_..=to`); the client reads them from history."""

    conversation: str = ""
    from_: int = 0
    to: int = 0


# Queries (6.3).


@_frame(0x20, "HISTORY", Origin.CLIENT)
@dataclass
class History(Frame):
    """Asks for a page of a conversation's events."""

    request: int = 0
    conversation: str = ""
    anchor: int = 0
    direction: int = Direction.BACKWARD
    limit: int = 0


@_frame(0x21, "HISTORY_PAGE", Origin.SERVER)
@dataclass
class HistoryPage(Frame):
    """A page of events in ascending seq order."""

    request: int = 0
    conversation: str = ""
    more: bool = False
    events: List[Event] = field(default_factory=list)


@_frame(0x22, "CONVERSATIONS", Origin.CLIENT)
@dataclass
class Conversations(Frame):
    """Asks for the user's conversations, most recently active first."""

    request: int = 0
    cursor: bytes = b""
    limit: int = 0


@_frame(0x23, "CONVERSATION_LIST", Origin.SERVER)
@dataclass
class ConversationList(Frame):
    """A page of the user's conversations."""

    request: int = 0
    next_cursor: bytes = b""
    conversations: List[Summary] = field(default_factory=list)


# Groups (6.4).


@_frame(0x30, "GROUP_CREATE", Origin.CLIENT)
@dataclass
class GroupCreate(Frame):
    """Creates a group owned by the sender."""

    request: int = 0
    title: str = ""
    members: List[str] = field(default_factory=list)


@_frame(0x31, "GROUP_UPDATE", Origin.CLIENT)
@dataclass
class GroupUpdate(Frame):
    """Adds or removes a member, or changes a member's role."""

    request: int = 0
    conversation: str = ""
    op: int = GroupOp.ADD
    user: str = ""
    role: int = Role.MEMBER


@_frame(0x32, "GROUP_GET", Origin.CLIENT)
@dataclass
class GroupGet(Frame):
    """Asks for a group's title and members."""

    request: int = 0
    conversation: str = ""


@_frame(0x33, "GROUP_INFO", Origin.SERVER)
@dataclass
class GroupInfo(Frame):
    """A group's title and members; answers GROUP_CREATE and GROUP_GET."""

    request: int = 0
    conversation: str = ""
    title: str = ""
    members: List[Member] = field(default_factory=list)


# Presence (6.5).


@_frame(0x40, "PRESENCE_SUBSCRIBE", Origin.CLIENT)
@dataclass
class PresenceSubscribe(Frame):
    """Asks for the presence of a conversation's members for a while."""

    request: int = 0
    conversation: str = ""
    ttl_ms: int = 0


@_frame(0x41, "PRESENCE", Origin.SERVER)
@dataclass
class Presence(Frame):
    """A user's presence (feature PRESENCE)."""

    user: str = ""
    status: int = Status.UNKNOWN
    last_seen: int = 0


# Cluster links (9). A client never sees them; they are here so the codec is complete.


@_frame(0x60, "LINK_HELLO", Origin.LINK)
@dataclass
class LinkHello(Frame):
    """Opens a link between two nodes."""

    version: int = 0
    node: str = ""
    role: int = NodeRole.EDGE
    ring_version: int = 0
    secret: bytes = b""


@_frame(0x61, "LINK_READY", Origin.LINK)
@dataclass
class LinkReady(Frame):
    """Accepts a LINK_HELLO."""

    node: str = ""
    ring_version: int = 0


@_frame(0x62, "ROUTED", Origin.LINK)
@dataclass
class Routed(Frame):
    """Carries one client frame, length prefix included, for a session [NWP-9.3-2]."""

    session: int = 0
    user: str = ""
    device: str = ""
    frame: bytes = b""


@_frame(0x63, "SESSION_OPEN", Origin.LINK)
@dataclass
class SessionOpen(Frame):
    """Registers or renews a device session at the user's home broker."""

    session: int = 0
    user: str = ""
    device: str = ""
    lease_ms: int = 0


@_frame(0x64, "SESSION_CLOSE", Origin.LINK)
@dataclass
class SessionClose(Frame):
    """Ends a device session at the user's home broker."""

    session: int = 0


@_frame(0x65, "FANOUT", Origin.LINK)
@dataclass
class Fanout(Frame):
    """Hands a new event to the home broker of some of its conversation's members."""

    conversation: str = ""
    inbox: bool = False
    users: List[str] = field(default_factory=list)
    event: Event = field(default_factory=Event)


@_frame(0x66, "PUSH", Origin.LINK)
@dataclass
class Push(Frame):
    """Asks a home broker to push one frame to every session of some users."""

    users: List[str] = field(default_factory=list)
    frame: bytes = b""


@_frame(0x67, "INTEREST", Origin.LINK)
@dataclass
class Interest(Frame):
    """Registers a session's interest in the presence of some users."""

    node: str = ""
    session: int = 0
    ttl_ms: int = 0
    users: List[str] = field(default_factory=list)
    conversation: str = ""
    """Through which the users are visible, so the interest ends with the membership
    [NWP-7.9-5]; empty for an edge's own lookup [NWP-9.6-3]."""


@_frame(0x68, "FETCH", Origin.LINK)
@dataclass
class Fetch(Frame):
    """Asks a conversation's owner for events by seq."""

    request: int = 0
    conversation: str = ""
    seqs: List[int] = field(default_factory=list)


@_frame(0x69, "EVENTS", Origin.LINK)
@dataclass
class Events(Frame):
    """Answers a FETCH."""

    request: int = 0
    conversation: str = ""
    events: List[Event] = field(default_factory=list)


@_frame(0x6A, "FANOUT_ACK", Origin.LINK)
@dataclass
class FanoutAck(Frame):
    """A home broker has durably applied every FANOUT of a conversation up to seq."""

    conversation: str = ""
    seq: int = 0


@dataclass
class UnknownFrame(Frame):
    """A frame of a type this version does not know, kept whole; receivers ignore it [NWP-3-6]."""

    NAME = "UNKNOWN"
    ORIGIN = None

    frame_type: int = 0
    payload: bytes = b""
    """Every byte after the type code."""


# Whole frames (spec 3).


def encode(frame: Frame) -> bytes:
    """The frame's bytes, length prefix included."""
    body = bytearray()
    if isinstance(frame, UnknownFrame):
        varint.encode(frame.frame_type, body)
        body += frame.payload
    else:
        varint.encode(frame.TYPE, body)
        frame._encode(body)
    out = bytearray()
    varint.encode(len(body), out)
    out += body
    return bytes(out)


def decode(data: bytes) -> Frame:
    """Decodes exactly one complete frame, length prefix included.

    Bytes after the frame are an error here, because a nested frame (ROUTED, PUSH) must fill
    its field exactly [NWP-9.3-2]; a stream is cut into frames by `decode_frame`.
    """
    reader = Reader(data)
    length = reader.varint()
    if length == 0:
        raise EmptyFrame()
    if reader.remaining < length:
        raise Truncated()
    if reader.remaining > length:
        raise TrailingData()
    frame_type = reader.varint()
    cls = FRAME_TYPES.get(frame_type)
    if cls is None:
        return UnknownFrame(frame_type, bytes(data[reader.pos :]))
    # Bytes after the last known field are ignored [NWP-11-2].
    return cls._decode(reader)


def decode_frame(buf: bytearray, max_frame_size: int) -> Optional[Frame]:
    """Cuts and decodes the next frame off the front of a stream buffer; None while
    incomplete, which is not an error [NWP-3-8]."""
    frame = split_frame(buf, max_frame_size)
    return None if frame is None else decode(frame)


def decode_message(data: bytes, max_frame_size: int) -> Frame:
    """Decodes the payload of one binary WebSocket message, which must hold exactly one whole
    frame: a message never continues in the next one [NWP-5.6-2]."""
    buf = bytearray(data)
    frame = split_frame(buf, max_frame_size)
    if frame is None or buf:
        raise NotOneFrame("a WebSocket message must hold exactly one frame")
    return decode(frame)


def request_id(frame: Frame) -> Optional[int]:
    """The request id of a request or of its answer; None for frames that have none."""
    request = getattr(frame, "request", None)
    return request if isinstance(request, int) else None
