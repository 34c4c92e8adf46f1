"""The resume cursor: how far this device has read, kept across restarts."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Optional, Protocol, Union


@dataclass
class Cursor:
    """How far a device has processed its inbox and each conversation."""

    inbox: Optional[int] = None
    """The last inbox_seq processed; None for a new device, which starts at the server's
    inbox head instead of replaying the whole inbox [NWP-6.1.2-2]."""
    conversations: Dict[str, int] = field(default_factory=dict)
    """The last contiguous seq delivered per conversation: where a history repair starts."""


class CursorStore(Protocol):
    """Where the client keeps its `Cursor` between runs.

    `save` is called after each coalesced ACK, on the event loop, so it should be quick. A
    store that fails to save only makes the next run resume from an older cursor; the
    session deduplicates what it sees again [NWP-6.2.3-3].
    """

    def load(self) -> Cursor:
        """The cursor saved last, or `Cursor()` for a new device."""
        ...

    def save(self, cursor: Cursor) -> None:
        """Saves the cursor."""
        ...


class MemoryCursorStore:
    """A `CursorStore` in memory: the cursor survives reconnects but not the process."""

    def __init__(self, cursor: Optional[Cursor] = None) -> None:
        self._cursor = _copy(cursor or Cursor())

    def load(self) -> Cursor:
        return _copy(self._cursor)

    def save(self, cursor: Cursor) -> None:
        self._cursor = _copy(cursor)


class FileCursorStore:
    """A `CursorStore` in a JSON file, replaced atomically on every save.

    The new cursor is written to a temporary file in the same directory, flushed to disk,
    then renamed over the old one, so a crash leaves either the old cursor or the new one,
    never a torn file.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = os.fspath(path)

    def load(self) -> Cursor:
        try:
            with open(self.path, encoding="utf-8") as file:
                data = json.load(file)
        except FileNotFoundError:
            return Cursor()
        # A torn file cannot happen (saves are atomic), so anything else is not ours: refuse
        # it rather than silently start over as a new device.
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: not a natter cursor")
        inbox = data.get("inbox")
        conversations = data.get("conversations", {})
        if not (inbox is None or isinstance(inbox, int)) or not isinstance(conversations, dict):
            raise ValueError(f"{self.path}: not a natter cursor")
        return Cursor(inbox, {str(k): int(v) for k, v in conversations.items()})

    def save(self, cursor: Cursor) -> None:
        data = {"version": 1, "inbox": cursor.inbox, "conversations": cursor.conversations}
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temp = tempfile.mkstemp(prefix=".cursor-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(data, file, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Makes a rename durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy(cursor: Cursor) -> Cursor:
    return Cursor(cursor.inbox, dict(cursor.conversations))
