"""The asyncio client against scripted servers on loopback, and its small parts: endpoints,
backoff and cursor stores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from pathlib import Path
from typing import Any, Awaitable, Callable, List, Optional

import pytest

import natter
from natter import frames
from natter.client import backoff
from natter.cursor import Cursor, FileCursorStore, MemoryCursorStore
from natter.errors import ConfigError, ErrorCode, ServerError
from natter.ids import is_valid_id
from natter.transport import Endpoint


class Conn:
    """One connection to the scripted server, speaking frames with the SDK's own codec."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.index = index
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.received: List[frames.Frame] = []

    async def recv(self) -> Optional[frames.Frame]:
        while True:
            frame = frames.decode_frame(self.buf, 1 << 20)
            if frame is not None:
                self.received.append(frame)
                return frame
            chunk = await self.reader.read(4096)
            if not chunk:
                return None
            self.buf += chunk

    def send(self, *batch: frames.Frame) -> None:
        self.writer.write(b"".join(frames.encode(frame) for frame in batch))

    async def handshake(self, inbox_head: int = 0) -> frames.Resume:
        hello = await self.recv()
        assert isinstance(hello, frames.Hello)
        self.send(frames.Ready(1, 0, 65536, 10_000, self.index, "alice", "phone", inbox_head, 0))
        resume = await self.recv()
        assert isinstance(resume, frames.Resume)
        self.send(frames.Synced(resume.request, inbox_head))
        return resume

    async def until_closed(self) -> None:
        while await self.recv() is not None:
            pass


Script = Callable[[Conn], Awaitable[None]]


async def scripted(script: Script) -> "tuple[asyncio.AbstractServer, str, List[Conn]]":
    conns: List[Conn] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(len(conns), reader, writer)
        conns.append(conn)
        try:
            await script(conn)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"tcp://127.0.0.1:{port}", conns


async def until(event_type: type, client: natter.Client) -> natter.Event:
    while True:
        event = await client.events.next(timeout=5)
        assert event is not None, f"the events ended before a {event_type.__name__}"
        if isinstance(event, event_type):
            return event


def config(url: str, **options: Any) -> natter.Config:
    return natter.Config(url, "t1", backoff_initial=0.01, backoff_max=0.05, **options)


def test_an_expired_token_stops_the_client_without_reconnecting() -> None:
    async def script(conn: Conn) -> None:
        await conn.handshake()
        conn.send(frames.Error(0, ErrorCode.TOKEN_EXPIRED, 0, "expired"))

    async def scenario() -> None:
        server, url, conns = await scripted(script)
        client = await natter.Client.connect(config(url))
        closed = await until(natter.Closed, client)
        assert isinstance(closed, natter.Closed) and isinstance(closed.error, ServerError)
        assert closed.error.code == ErrorCode.TOKEN_EXPIRED
        assert await client.events.next() is None, "the stream ends"
        await asyncio.sleep(0.1)
        assert len(conns) == 1, "no reconnect with the same HELLO [NWP-5.5-3]"
        with pytest.raises(natter.ClientClosed):
            await client.send_text("d/alice/bob", "late")
        server.close()

    asyncio.run(scenario())


def test_an_expired_token_is_refreshed_and_the_client_resumes() -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.handshake(inbox_head=3)
            conn.send(frames.Error(0, ErrorCode.TOKEN_EXPIRED, 0, "expired"))
        else:
            await conn.handshake(inbox_head=3)
            await conn.until_closed()

    async def refresh() -> str:
        return "t2"

    async def scenario() -> None:
        server, url, conns = await scripted(script)
        client = await natter.Client.connect(config(url, token_refresh=refresh))
        await until(natter.Disconnected, client)
        await until(natter.Synced, client)
        tokens = [c.received[0].token for c in conns]  # type: ignore[attr-defined]
        assert tokens == [b"t1", b"t2"]
        resume = conns[1].received[1]
        assert isinstance(resume, frames.Resume) and resume.after == 3
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_malformed_input_is_refused_with_an_error_then_the_client_reconnects() -> None:
    async def script(conn: Conn) -> None:
        await conn.handshake()
        if conn.index == 0:
            conn.writer.write(bytes.fromhex("40020307"))  # a non-minimal Length
        await conn.until_closed()

    async def scenario() -> None:
        server, url, conns = await scripted(script)
        client = await natter.Client.connect(config(url))
        disconnected = await until(natter.Disconnected, client)
        assert isinstance(disconnected, natter.Disconnected)
        assert "non_minimal_varint" in disconnected.reason
        await until(natter.Synced, client)
        refusal = conns[0].received[-1]
        # [NWP-3-7]: ERROR PROTOCOL_VIOLATION with request 0, then close.
        assert isinstance(refusal, frames.Error)
        assert (refusal.request, refusal.code) == (0, ErrorCode.PROTOCOL_VIOLATION)
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_goaway_drains_then_unanswered_sends_are_repeated_on_the_next_connection() -> None:
    async def script(conn: Conn) -> None:
        await conn.handshake()
        send = await conn.recv()
        assert isinstance(send, frames.Send)
        if conn.index == 0:
            # Going away without answering: the outcome of the SEND is unknown [NWP-5.4-2].
            conn.send(frames.Goaway(ErrorCode.SHUTTING_DOWN, 50, "draining"))
            await conn.writer.drain()
            await asyncio.sleep(0.05)
            return
        conn.send(frames.SendAck(send.request, 7, 1, True))
        await conn.until_closed()

    async def scenario() -> None:
        server, url, conns = await scripted(script)
        client = await natter.Client.connect(config(url))
        message = natter.OutgoingMessage.text("d/alice/bob", "hi")
        sent = await asyncio.wait_for(client.send(message), 5)
        assert sent == natter.Sent(7, 1, True)
        sends = [f for c in conns for f in c.received if isinstance(f, frames.Send)]
        assert [s.client_msg_id for s in sends] == [message.client_msg_id] * 2
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_close_acknowledges_what_was_processed_and_fails_waiting_requests() -> None:
    async def script(conn: Conn) -> None:
        await conn.handshake()
        conn.send(frames.Deliver(1, "d/alice/bob", frames.Event(seq=1, sender="bob")))
        await conn.until_closed()

    async def scenario() -> None:
        server, url, conns = await scripted(script)
        store = MemoryCursorStore()
        client = await natter.Client.connect(config(url, cursor_store=store))
        await until(natter.Message, client)
        pending = await client.enqueue(natter.HistoryRequest("d/alice/bob"))
        await client.close()
        with pytest.raises(natter.ClientClosed):
            await pending
        await asyncio.sleep(0.05)
        assert frames.Ack(1) in conns[0].received
        assert store.load() == Cursor(1, {"d/alice/bob": 1})
        server.close()

    asyncio.run(scenario())


class WsPeer:
    """The server side of a WebSocket (RFC 6455), enough to script one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def accept(self) -> None:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode()
        assert head.startswith("GET /ws HTTP/1.1\r\n")
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key.encode() + guid).digest()).decode()
        self.writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
        )

    async def read(self) -> "tuple[int, bytes]":
        """One frame from the client, which must mask it."""
        head = await self.reader.readexactly(2)
        assert head[0] & 0x80 and head[1] & 0x80, "unfragmented and masked"
        length = head[1] & 0x7F
        if length >= 126:
            length = int.from_bytes(await self.reader.readexactly(2 if length == 126 else 8), "big")
        key = await self.reader.readexactly(4)
        data = await self.reader.readexactly(length)
        return head[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))

    async def read_frame(self) -> frames.Frame:
        opcode, data = await self.read()
        assert opcode == 0x2
        return frames.decode(data)  # exactly one frame per message [NWP-5.6-2]

    def write(self, opcode: int, data: bytes, fin: bool = True) -> None:
        assert len(data) < 126
        self.writer.write(bytes([(0x80 if fin else 0) | opcode, len(data)]) + data)


def test_websocket_messages_carry_exactly_one_frame_each_way() -> None:
    seen: List[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = WsPeer(reader, writer)
        await peer.accept()
        hello = await peer.read_frame()
        assert isinstance(hello, frames.Hello)
        ready = frames.encode(frames.Ready(1, 0, 65536, 10_000, 1, "alice", "phone", 0, 0))
        peer.write(0x2, ready[:5], fin=False)  # a fragmented message is one message
        peer.write(0x9, b"hb")  # a control frame between the fragments
        peer.write(0x0, ready[5:])
        opcode, data = await peer.read()
        assert (opcode, data) == (0xA, b"hb"), "a WebSocket ping is answered"
        resume = await peer.read_frame()
        assert isinstance(resume, frames.Resume)
        peer.write(0x2, frames.encode(frames.Synced(resume.request, 0)))
        seen.append("synced")
        # Two frames in one message: a PROTOCOL_VIOLATION [NWP-5.6-2].
        peer.write(0x2, frames.encode(frames.Ping(1)) + frames.encode(frames.Pong(2)))
        refusal = await peer.read_frame()
        assert isinstance(refusal, frames.Error)
        assert refusal.code == ErrorCode.PROTOCOL_VIOLATION
        opcode, _ = await peer.read()
        assert opcode == 0x8, "then the close handshake"
        seen.append("refused")
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = await natter.Client.connect(config(f"ws://127.0.0.1:{port}"))
        await until(natter.Synced, client)
        disconnected = await until(natter.Disconnected, client)
        assert isinstance(disconnected, natter.Disconnected)
        assert "not_one_frame" in disconnected.reason
        assert seen == ["synced", "refused"]
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_endpoints_parse() -> None:
    assert Endpoint.parse("tcp://localhost:7400") == Endpoint("tcp", "localhost", 7400)
    v6 = Endpoint.parse("tls://[::1]:9000")
    assert (v6.scheme, v6.host, v6.port, v6.tls) == ("tls", "::1", 9000, True)
    ws = Endpoint.parse("wss://chat.example.com/natter/ws")
    assert (ws.port, ws.path, ws.websocket) == (443, "/natter/ws", True)
    assert str(ws) == "wss://chat.example.com:443/natter/ws"
    assert Endpoint.parse("ws://127.0.0.1:7480").path == "/ws"
    for bad in ["localhost:7400", "http://x", "tcp://:1", "tcp://x:port", "tcp://x:70000"]:
        with pytest.raises(ConfigError):
            Endpoint.parse(bad)


def test_backoff_doubles_with_jitter_up_to_the_ceiling() -> None:
    rng = random.Random(1)
    for attempt in range(1, 13):
        ceiling = min(1.0 * 2 ** (attempt - 1), 60.0)  # [NWP-5.5-3]: from 1 s, at most 60 s
        for _ in range(20):
            assert ceiling / 2 <= backoff(attempt, 1.0, 60.0, rng) <= ceiling
    assert backoff(10_000, 1.0, 60.0, rng) <= 60.0


def test_cursor_stores_keep_what_was_saved(tmp_path: Path) -> None:
    memory = MemoryCursorStore()
    assert memory.load() == Cursor()
    cursor = Cursor(5, {"d/a/b": 3})
    memory.save(cursor)
    cursor.conversations["d/a/b"] = 99  # the store holds a copy
    assert memory.load() == Cursor(5, {"d/a/b": 3})

    path = tmp_path / "cursor.json"
    store = FileCursorStore(path)
    assert store.load() == Cursor(), "a new device"
    store.save(Cursor(7, {"d/a/b": 4, "g/x": 2}))
    store.save(Cursor(8, {"d/a/b": 5, "g/x": 2}))
    assert FileCursorStore(path).load() == Cursor(8, {"d/a/b": 5, "g/x": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["cursor.json"], "no temporary files left"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError):
        store.load()


def test_ids() -> None:
    assert natter.direct_conversation("bob", "alice") == "d/alice/bob"
    assert natter.direct_conversation("alice", "bob") == "d/alice/bob"
    assert natter.direct_conversation("zoë", "zoe") == "d/zoe/zoë", "byte order"
    assert is_valid_id("ünïcode@example.com") and is_valid_id("x" * 64)
    for bad in ["", "a b", "a/b", "tab\t", "nul\x00", "x" * 65]:
        assert not is_valid_id(bad), bad
