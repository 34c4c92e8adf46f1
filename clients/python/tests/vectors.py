"""Reads spec/vectors (format: spec/vectors/README.md) and maps frames to and from the JSON
of their `decoded:` lines."""

from __future__ import annotations

import json
import os
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional

from natter import codec, frames

MAX_EXACT_JSON_INTEGER = (1 << 53) - 1


def vectors_dir() -> Path:
    """spec/vectors of the repository this package lives in, or $NATTER_VECTORS."""
    default = Path(__file__).resolve().parents[3] / "spec" / "vectors"
    return Path(os.environ.get("NATTER_VECTORS", default))


@dataclass
class Vector:
    file: str
    name: str
    mode: str = "stream"
    max_frame_size: int = codec.DEFAULT_MAX_FRAME_SIZE
    roundtrip: bool = True
    data: bytes = b""
    trailing: int = 0
    expect: str = ""
    decoded: Optional[Dict[str, Any]] = None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"

    @property
    def frame_bytes(self) -> bytes:
        """The frame itself, without the bytes after it."""
        return self.data[: len(self.data) - self.trailing]


def load_all() -> List[Vector]:
    """Every vector of every .txt file, in file order."""
    directory = vectors_dir()
    return [
        vector
        for path in sorted(directory.glob("*.txt"))
        for vector in parse(path.name, path.read_text(encoding="utf-8"))
    ]


def parse(file: str, text: str) -> List[Vector]:
    vectors = []
    for block in ("\n" + text).split("\n=== ")[1:]:
        lines = block.splitlines()
        vector = Vector(file, lines[0].strip())
        data = bytearray()
        for line in lines[1:]:
            if line.startswith(" "):
                data += bytes.fromhex(line.split("#")[0].replace(" ", ""))
                continue
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "mode":
                assert value in ("stream", "nested", "message"), vector.id
                vector.mode = value
            elif key == "max_frame_size":
                vector.max_frame_size = int(value)
            elif key == "roundtrip":
                vector.roundtrip = value == "yes"
            elif key == "bytes":
                assert not value, f"{vector.id}: bytes on the key line"
            elif key == "trailing":
                vector.trailing = int(value)
            elif key == "expect":
                vector.expect = value
            elif key == "decoded":
                vector.decoded = json.loads(value)
            else:
                raise AssertionError(f"{vector.id}: unknown key {key}")
        vector.data = bytes(data)
        assert vector.expect, f"{vector.id}: no expect"
        assert (vector.expect == "frame") == (vector.decoded is not None), vector.id
        vectors.append(vector)
    return vectors


def to_json(value: Any) -> Any:
    """A frame (or a field of one) in the JSON form of the vectors."""
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value) if value <= MAX_EXACT_JSON_INTEGER else str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [to_json(item) for item in value]
    assert is_dataclass(value), value
    out: Dict[str, Any] = {}
    if isinstance(value, frames.Frame):
        out["type"] = value.NAME
    for f in fields(value):
        out[json_name(f.name)] = to_json(getattr(value, f.name))
    return out


def frame_from_json(obj: Dict[str, Any]) -> frames.Frame:
    """The frame a `decoded:` line describes, built without the decoder."""
    by_name = {cls.NAME: cls for cls in frames.FRAME_TYPES.values()}
    cls = frames.UnknownFrame if obj["type"] == "UNKNOWN" else by_name[obj["type"]]
    return typing.cast(frames.Frame, _record_from_json(cls, obj, extra={"type"}))


def json_name(field_name: str) -> str:
    """`from_` is `from` in the spec; a trailing underscore only dodges a Python keyword."""
    return field_name.rstrip("_")


def _record_from_json(cls: type, obj: Dict[str, Any], extra: frozenset = frozenset()) -> Any:
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in fields(cls)]
    assert set(obj) == {json_name(n) for n in names} | set(extra), (cls, obj)
    return cls(**{n: _value_from_json(hints[n], obj[json_name(n)]) for n in names})


def _value_from_json(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _value_from_json(typing.get_args(hint)[0], value)
    if origin is list:
        return [_value_from_json(typing.get_args(hint)[0], item) for item in value]
    if isinstance(hint, type) and issubclass(hint, frames.Record):
        return _record_from_json(hint, value)
    if hint is bytes:
        return bytes.fromhex(value)
    if hint is bool:
        assert isinstance(value, bool), value
        return value
    if hint is int:
        assert isinstance(value, int) or (isinstance(value, str) and value.isdigit()), value
        return int(value)
    assert hint is str and isinstance(value, str), (hint, value)
    return value
