"""The data types of spec section 2 and the framing of section 3, over byte buffers.

No sockets and no clock: a transport feeds bytes in, `split_frame` cuts whole frames off the
front, and `natter.frames` reads and writes the fields of each.
"""

from __future__ import annotations

from typing import Optional

from . import varint
from .errors import EmptyFrame, FrameTooLarge, InvalidFlag, InvalidUtf8, Truncated

VERSION = 1
"""The protocol version this package speaks."""

DEFAULT_MAX_FRAME_SIZE = 64 * 1024
"""The maximum frame size a peer assumes until HELLO or READY says otherwise [NWP-3-3]."""

MAX_FRAME_SIZE_CAP = 16 * 1024 * 1024
"""No implementation accepts frames longer than this, whatever it announced [NWP-3-4]."""

MIN_MAX_FRAME_SIZE = 4096
"""The smallest max_frame_size HELLO and READY may announce [NWP-3-4]."""


class Reader:
    """Reads fields from one frame: `data[pos:end]`; nothing past `end` is ever read [NWP-3-5]."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: Optional[int] = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        """The bytes left in the frame."""
        return self.end - self.pos

    def varint(self) -> int:
        """`(i)`: a varint."""
        got = varint.peek(self.data, self.pos, self.end)
        if got is None:
            raise Truncated()
        value, size = got
        self.pos += size
        return value

    def byte(self) -> int:
        """`(8)`: one byte."""
        if self.pos >= self.end:
            raise Truncated()
        value = self.data[self.pos]
        self.pos += 1
        return value

    def flag(self) -> bool:
        """`Flag (8)`: 0x00 or 0x01; any other value is malformed [NWP-2.2-4]."""
        value = self.byte()
        if value > 1:
            raise InvalidFlag()
        return value == 1

    def blob(self) -> bytes:
        """`(b)`: a varint length, then that many bytes [NWP-2.2-5]."""
        size = self.varint()
        if size > self.remaining:
            raise Truncated()
        start = self.pos
        self.pos += size
        return bytes(self.data[start : self.pos])

    def text(self) -> str:
        """`(s)`: like `(b)`, and the bytes must be valid UTF-8 [NWP-2.2-3]."""
        raw = self.blob()
        try:
            # Python's strict decoder rejects surrogates and overlong forms, as RFC 3629 does.
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidUtf8() from None

    def count(self) -> int:
        """A list's count, checked against the bytes left before anything is allocated: every
        element takes at least one byte [NWP-2.2-5]."""
        count = self.varint()
        if count > self.remaining:
            raise Truncated()
        return count


def split_frame(buf: bytearray, max_frame_size: int) -> Optional[bytes]:
    """Cuts the next complete frame, length prefix included, off the front of `buf`.

    Returns None while the frame is incomplete. The length is checked against the limit as
    soon as its varint is complete, before a byte of the body is buffered [NWP-3-3].
    """
    got = varint.peek(buf)
    if got is None:
        return None
    length, prefix = got
    limit = min(max_frame_size, MAX_FRAME_SIZE_CAP)
    if length > limit:
        raise FrameTooLarge(length, limit)
    if length == 0:
        raise EmptyFrame()
    total = prefix + length
    if len(buf) < total:
        return None
    frame = bytes(buf[:total])
    # CPython deletes from the front of a bytearray by moving its start: no copy.
    del buf[:total]
    return frame
