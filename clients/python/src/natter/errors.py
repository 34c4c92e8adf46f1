"""Errors: the wire error codes (spec section 10), decode errors, and what SDK calls raise."""

from __future__ import annotations

import enum
from typing import ClassVar, Optional


class ErrorCode(enum.IntEnum):
    """A wire error code, carried by ERROR and GOAWAY frames (spec table 6).

    Fields of decoded frames are plain ints, so a code this version does not know is still
    representable [NWP-10-2]; known codes compare equal to these members.
    """

    PROTOCOL_VIOLATION = 0x01
    FRAME_TOO_LARGE = 0x02
    UNSUPPORTED_VERSION = 0x03
    UNAUTHENTICATED = 0x04
    TOKEN_EXPIRED = 0x05
    IDLE_TIMEOUT = 0x06
    SLOW_CONSUMER = 0x07
    TOO_MANY_CONNECTIONS = 0x08
    SHUTTING_DOWN = 0x09
    RING_MISMATCH = 0x0A
    INTERNAL_ERROR = 0x0B
    INVALID_REQUEST = 0x10
    NOT_FOUND = 0x11
    FORBIDDEN = 0x12
    PAYLOAD_TOO_LARGE = 0x13
    DUPLICATE_MISMATCH = 0x14
    RATE_LIMITED = 0x15
    LIMIT_EXCEEDED = 0x16
    UNAVAILABLE = 0x17
    WRONG_OWNER = 0x18
    CONFLICT = 0x19
    UNKNOWN_SESSION = 0x1A


def code_name(code: int) -> str:
    """The name of an error code, or its hex value when this version does not know it."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:02x}"


def closes_connection(code: int) -> bool:
    """Whether an ERROR with this code closes the connection [NWP-10-1]."""
    return code < 0x10


def is_retryable(code: int) -> bool:
    """Whether the same request may be sent again unchanged, after any delay [NWP-10-3]."""
    return code in _RETRYABLE


_RETRYABLE = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.UNAVAILABLE,
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.IDLE_TIMEOUT,
        ErrorCode.SLOW_CONSUMER,
    }
)


# Codec errors.


class DecodeError(Exception):
    """Bytes that are not a valid frame; every decode error is a connection error [NWP-3-7]."""

    name: ClassVar[str] = "decode_error"
    """The error's name in spec/vectors."""

    @property
    def code(self) -> ErrorCode:
        """The code a receiver sends in ERROR before closing the connection."""
        return ErrorCode.PROTOCOL_VIOLATION


class FrameTooLarge(DecodeError):
    """The length prefix exceeds the receiver's maximum frame size [NWP-3-3] [NWP-3-4]."""

    name = "frame_too_large"

    def __init__(self, length: int, maximum: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the maximum of {maximum}")
        self.length = length
        self.maximum = maximum

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.FRAME_TOO_LARGE


class EmptyFrame(DecodeError):
    """The length prefix is zero, so the frame has no type [NWP-3-2]."""

    name = "empty_frame"


class Truncated(DecodeError):
    """A field runs past the end of the frame [NWP-3-5] [NWP-2.2-5]."""

    name = "truncated"


class NonMinimalVarint(DecodeError):
    """A varint is not in its shortest form [NWP-2.2-2]."""

    name = "non_minimal_varint"


class InvalidUtf8(DecodeError):
    """A string field is not valid UTF-8 [NWP-2.2-3]."""

    name = "invalid_utf8"


class InvalidFlag(DecodeError):
    """A flag byte is neither 0x00 nor 0x01 [NWP-2.2-4]."""

    name = "invalid_flag"


class TrailingData(DecodeError):
    """A nested frame (ROUTED.frame, PUSH.frame) is followed by more bytes [NWP-9.3-2]."""

    name = "trailing_data"


class NotOneFrame(DecodeError):
    """A WebSocket message holds less or more than one whole frame [NWP-5.6-2]."""

    name = "not_one_frame"


class EncodeError(ValueError):
    """A value that has no wire encoding (an integer outside 0..2^62-1, a lone surrogate)."""


# What SDK calls raise.


class NatterError(Exception):
    """Base of every error a natter client call raises."""

    @property
    def retryable(self) -> bool:
        """Whether repeating the same call later may succeed."""
        return False


class ServerError(NatterError):
    """The server answered a request, or closed the connection, with an error code."""

    def __init__(self, code: int, message: str = "", retry_after: Optional[float] = None) -> None:
        super().__init__(f"server error {code_name(code)}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after
        """Seconds to wait before a retry, when the server said so."""

    @classmethod
    def from_wire(cls, code: int, retry_after_ms: int, message: str) -> ServerError:
        """An error built from an ERROR or GOAWAY frame's fields."""
        return cls(code, message, retry_after_ms / 1000 if retry_after_ms else None)

    @property
    def retryable(self) -> bool:
        return is_retryable(self.code)


class ConnectionLost(NatterError):
    """The connection dropped while a request that is not safe to repeat (group create or
    update) was in flight: it may or may not have taken effect."""

    def __init__(self) -> None:
        super().__init__("connection lost before the answer; the request may have taken effect")

    @property
    def retryable(self) -> bool:
        return True


class ClientClosed(NatterError):
    """The client was closed, or stopped for good after a fatal error."""

    def __init__(self) -> None:
        super().__init__("the client is closed")


class HistoryIncomplete(NatterError):
    """History ended before the seq a gap repair needed; the conversation stays incomplete."""

    def __init__(self, through: int, until: int) -> None:
        super().__init__(f"history ends at seq {through}, before seq {until}")
        self.through = through
        self.until = until


class ProtocolError(NatterError):
    """The server broke the protocol (an answer of the wrong type, a malformed frame)."""


class InvalidArgument(NatterError):
    """An argument was rejected before anything was sent."""


class ConfigError(NatterError):
    """The configuration cannot work (a bad URL, an unreadable CA file, ...)."""


class TransportError(NatterError):
    """Connecting or talking to the server failed at the transport level."""

    @property
    def retryable(self) -> bool:
        return True
