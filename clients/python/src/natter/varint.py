"""Variable-length integers, encoded as in RFC 9000 section 16 (spec 2.2).

The two most significant bits of the first byte give the length (1, 2, 4 or 8 bytes); the
rest is the value in network byte order. natter requires the shortest encoding [NWP-2.2-2],
so every value has exactly one encoding and decode/encode round-trips.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

from .errors import EncodeError, NonMinimalVarint

MAX = (1 << 62) - 1
"""The largest value a varint can carry: 2^62 - 1."""


def encoded_len(value: int) -> int:
    """The number of bytes the shortest encoding of `value` takes."""
    if value < 1 << 6:
        return 1
    if value < 1 << 14:
        return 2
    if value < 1 << 30:
        return 4
    return 8


def encode(value: int, out: bytearray) -> None:
    """Appends the shortest encoding of `value`."""
    if not 0 <= value <= MAX:
        raise EncodeError(f"{value} does not fit in a varint")
    size = encoded_len(value)
    # The length code is log2 of the size: 00, 01, 10, 11 for 1, 2, 4, 8 bytes.
    tag = (size.bit_length() - 1) << (8 * size - 2)
    out += (tag | value).to_bytes(size, "big")


def peek(
    data: Union[bytes, bytearray], pos: int = 0, end: Optional[int] = None
) -> Optional[Tuple[int, int]]:
    """Reads the varint at `data[pos:end]` without consuming it.

    Returns None when the bytes hold only part of it, else the value and its encoded length.
    A longer encoding than necessary is malformed [NWP-2.2-2].
    """
    if end is None:
        end = len(data)
    if pos >= end:
        return None
    first = data[pos]
    # Most varints on the wire are one byte, and a one-byte encoding is always the shortest.
    if first < 0x40:
        return first, 1
    size = 1 << (first >> 6)
    if pos + size > end:
        return None
    value = int.from_bytes(data[pos : pos + size], "big") & ((1 << (8 * size - 2)) - 1)
    if encoded_len(value) != size:
        raise NonMinimalVarint()
    return value, size
