"""Identifiers (spec 2.3): valid user and device ids, and direct conversation ids."""

from __future__ import annotations

import unicodedata

MAX_ID_LEN = 64
"""A user or device id is 1 to 64 bytes of UTF-8."""


def is_valid_id(value: str) -> bool:
    """Whether `value` is a valid user or device id [NWP-2.3-1]: 1 to 64 bytes, no control
    characters, no white space and no `/`, so ids can be joined into conversation ids."""
    size = len(value.encode("utf-8", "surrogatepass"))
    return 1 <= size <= MAX_ID_LEN and not any(
        c == "/" or c.isspace() or unicodedata.category(c) == "Cc" for c in value
    )


def direct_conversation(a: str, b: str) -> str:
    """The id of the direct conversation between users `a` and `b`: `d/<low>/<high>`, the
    two ids in byte order, so both sides name the same conversation [NWP-2.3-2]."""
    low, high = sorted((a, b), key=lambda user: user.encode("utf-8"))
    return f"d/{low}/{high}"
