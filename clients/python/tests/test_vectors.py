"""Every vector of spec/vectors against the codec, as the Rust codec's tests/vectors.rs does."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest

from natter import codec, frames, varint
from natter.errors import DecodeError, EncodeError, NonMinimalVarint

from vectors import Vector, frame_from_json, load_all, to_json, vectors_dir

if not vectors_dir().is_dir():
    pytest.skip(f"no spec vectors at {vectors_dir()}", allow_module_level=True)

VECTORS = load_all()
DECODE_ERRORS = {
    "frame_too_large",
    "empty_frame",
    "truncated",
    "non_minimal_varint",
    "invalid_utf8",
    "invalid_flag",
    "trailing_data",
    "not_one_frame",
}


def by_expect(expect: str, mode: Optional[str] = None) -> list:
    """The vectors expecting `expect` ("error" for any decode error), as test parameters."""
    chosen = [
        v
        for v in VECTORS
        if (v.expect in DECODE_ERRORS if expect == "error" else v.expect == expect)
        and mode in (None, v.mode)
    ]
    return [pytest.param(v, id=v.id) for v in chosen]


def decode(vector: Vector) -> Tuple[Optional[frames.Frame], int]:
    """Decodes the whole input as its mode says; also returns what a stream left buffered."""
    if vector.mode == "nested":
        return frames.decode(vector.data), 0
    if vector.mode == "message":
        return frames.decode_message(vector.data, vector.max_frame_size), 0
    buf = bytearray(vector.data)
    return frames.decode_frame(buf, vector.max_frame_size), len(buf)


@pytest.mark.parametrize("vector", by_expect("frame"))
def test_valid_vectors_decode_to_their_value_and_reencode_to_their_bytes(vector: Vector) -> None:
    frame, left = decode(vector)
    assert frame is not None, "incomplete"
    decoded = to_json(frame)
    assert decoded == vector.decoded
    assert list(decoded) == list(vector.decoded or {}), "fields in wire order"
    assert left == vector.trailing, "the decoder stops at the frame's end"
    # The stream decoder and the exact-frame decoder agree, and so does the JSON.
    assert frames.decode(vector.frame_bytes) == frame
    assert frame_from_json(vector.decoded or {}) == frame

    encoded = frames.encode(frame)
    if vector.roundtrip:
        assert encoded.hex() == vector.frame_bytes.hex()
    else:
        # Extension bytes are dropped, and what is left decodes to the same frame.
        assert len(encoded) < len(vector.frame_bytes)
        assert frames.decode(encoded) == frame


@pytest.mark.parametrize("vector", by_expect("frame", mode="stream"))
def test_valid_vectors_decode_when_split_at_every_byte_boundary(vector: Vector) -> None:
    frame_len = len(vector.frame_bytes)
    expected, _ = decode(vector)
    for split in range(1, len(vector.data)):
        buf = bytearray(vector.data[:split])
        early = codec.split_frame(buf, vector.max_frame_size)
        assert (early is not None) == (split >= frame_len), split
        buf += vector.data[split:]
        frame = early if early is not None else codec.split_frame(buf, vector.max_frame_size)
        assert frame == vector.frame_bytes
        assert frames.decode(frame) == expected
        assert len(buf) == vector.trailing
    # One byte at a time: nothing until the frame's last byte, then the frame.
    buf = bytearray()
    for index, byte in enumerate(vector.frame_bytes):
        buf.append(byte)
        got = frames.decode_frame(buf, vector.max_frame_size)
        assert got == (expected if index + 1 == frame_len else None), index
    assert not buf


@pytest.mark.parametrize("vector", by_expect("incomplete"))
def test_incomplete_vectors_ask_for_more(vector: Vector) -> None:
    assert vector.mode == "stream", "a message is never continued by the next one"
    frame, left = decode(vector)
    assert frame is None
    assert left == len(vector.data), "nothing consumed"


@pytest.mark.parametrize("vector", by_expect("error"))
def test_invalid_vectors_give_the_named_error(vector: Vector) -> None:
    with pytest.raises(DecodeError) as raised:
        decode(vector)
    assert raised.value.name == vector.expect
    expected_code = 0x02 if vector.expect == "frame_too_large" else 0x01
    assert raised.value.code == expected_code, "FRAME_TOO_LARGE or PROTOCOL_VIOLATION"


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v.id) for v in VECTORS if v.expect == "frame_too_large"]
)
def test_oversized_frames_are_rejected_from_the_length_alone(vector: Vector) -> None:
    got = varint.peek(vector.data)
    assert got is not None
    with pytest.raises(DecodeError) as raised:
        codec.split_frame(bytearray(vector.data[: got[1]]), vector.max_frame_size)
    assert raised.value.name == "frame_too_large"


def test_vectors_cover_every_frame_type_and_every_decode_error() -> None:
    names = [v.name for v in VECTORS]
    assert len(names) == len(set(names)), "vector names are unique"
    assert sum(v.expect == "frame" for v in VECTORS) > 40
    valid_types = {(v.decoded or {}).get("type") for v in VECTORS if v.expect == "frame"}
    for cls in frames.FRAME_TYPES.values():
        assert cls.NAME in valid_types, f"no valid vector for {cls.NAME}"
    assert "UNKNOWN" in valid_types
    assert {v.expect for v in VECTORS if v.expect not in ("frame", "incomplete")} == DECODE_ERRORS
    assert any(v.trailing > 0 and v.expect == "frame" for v in VECTORS)
    assert {v.mode for v in VECTORS} == {"stream", "nested", "message"}


def test_every_frame_type_of_table_2_is_declared_once() -> None:
    assert len(frames.FRAME_TYPES) == 39
    assert len({cls.NAME for cls in frames.FRAME_TYPES.values()}) == 39


# Varints (spec 2.2), beyond the vectors.


@pytest.mark.parametrize(
    "hex_bytes, value",
    [
        ("c2197c5eff14e88c", 151_288_809_941_952_652),
        ("9d7f3e7d", 494_878_333),
        ("7bbd", 15_293),
        ("25", 37),
    ],
)
def test_varints_match_the_rfc9000_examples(hex_bytes: str, value: int) -> None:
    data = bytes.fromhex(hex_bytes)
    assert varint.peek(data) == (value, len(data))
    out = bytearray()
    varint.encode(value, out)
    assert out == data


def test_varints_reject_non_minimal_forms_and_overflow() -> None:
    with pytest.raises(NonMinimalVarint):
        varint.peek(bytes.fromhex("4025"))  # 37 in two bytes: legal in QUIC, not in natter
    assert varint.peek(b"") is None
    assert varint.peek(bytes.fromhex("9d7f3e")) is None
    for bad in (varint.MAX + 1, -1):
        with pytest.raises(EncodeError):
            varint.encode(bad, bytearray())
    with pytest.raises(EncodeError):
        frames.encode(frames.Typing("\ud800", True))  # a lone surrogate has no UTF-8


def test_member_change_bodies_ignore_extension_bytes() -> None:
    change = frames.MemberChange("bob", frames.Role.ADMIN)
    body = bytearray()
    change._encode(body)
    assert frames.MemberChange.from_body(bytes(body) + b"\x07\x07") == change
