"""Where the server is and how frames travel to it: TCP, TLS or WebSocket (spec 5.6)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from . import frames
from .errors import (
    ConfigError,
    DecodeError,
    FrameTooLarge,
    NotOneFrame,
    ProtocolError,
    TransportError,
)

_DEFAULT_PORTS = {"tcp": 7400, "tls": 7443, "ws": 7480, "wss": 443}


@dataclass(frozen=True)
class Endpoint:
    """A server address: `tcp://host:port`, `tls://host:port`, `ws://host:port/ws` or
    `wss://host/ws`."""

    scheme: str
    host: str
    port: int
    path: str = "/ws"
    """The WebSocket path."""

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parses a server URL; the port defaults by scheme (7400, 7443, 7480, 443)."""

        def bad(why: str) -> ConfigError:
            return ConfigError(f"bad server URL {url!r}: {why}")

        scheme, sep, rest = url.partition("://")
        if not sep:
            raise bad("no scheme")
        if scheme not in _DEFAULT_PORTS:
            raise bad("the scheme must be tcp, tls, ws or wss")
        authority, slash, path = rest.partition("/")
        port = _DEFAULT_PORTS[scheme]
        host = authority
        head, colon, tail = authority.rpartition(":")
        if colon and "]" not in tail:
            host = head
            if not tail.isdigit() or not 0 < int(tail) < 65536:
                raise bad("bad port")
            port = int(tail)
        host = host.strip("[]")
        if not host:
            raise bad("no host")
        return cls(scheme, host, port, slash + path if path else "/ws")

    @property
    def tls(self) -> bool:
        """Whether the transport runs over TLS."""
        return self.scheme in ("tls", "wss")

    @property
    def websocket(self) -> bool:
        """Whether frames travel in WebSocket messages."""
        return self.scheme in ("ws", "wss")

    @property
    def authority(self) -> str:
        """`host:port`, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path if self.websocket else ''}"


class Transport:
    """An open connection that reads and writes whole frames."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame_size: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_frame_size = max_frame_size

    async def recv(self) -> Optional[frames.Frame]:
        """The next frame; None when the server closed the connection."""
        raise NotImplementedError

    async def send(self, batch: Sequence[frames.Frame]) -> None:
        """Writes frames in order and waits until the socket took them."""
        raise NotImplementedError

    async def close(self) -> None:
        """Closes the connection; never raises."""
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass

    async def _refuse(self, error: DecodeError) -> ProtocolError:
        """Says why before closing on malformed input [NWP-3-7] [NWP-6.1.6-4]; the frame
        boundaries are lost, so nothing more is read."""
        try:
            await self.send([frames.Error(0, error.code, 0, str(error) or error.name)])
        except (TransportError, ConnectionError):
            pass
        return ProtocolError(f"malformed frame from the server: {error.name}")


class StreamTransport(Transport):
    """The natter byte stream over TCP or TLS: frames follow one another [NWP-3-1]."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame_size: int
    ) -> None:
        super().__init__(reader, writer, max_frame_size)
        self._buf = bytearray()

    async def recv(self) -> Optional[frames.Frame]:
        while True:
            try:
                frame = frames.decode_frame(self._buf, self._max_frame_size)
            except DecodeError as error:
                raise await self._refuse(error) from error
            if frame is not None:
                return frame
            # A buffer that ends inside a frame only needs more bytes [NWP-3-8].
            try:
                chunk = await self._reader.read(64 * 1024)
            except (OSError, ssl.SSLError) as error:
                raise TransportError(f"read failed: {error}") from error
            if not chunk:
                if self._buf:
                    raise TransportError("connection closed inside a frame")
                return None
            self._buf += chunk

    async def send(self, batch: Sequence[frames.Frame]) -> None:
        try:
            self._writer.write(b"".join(frames.encode(frame) for frame in batch))
            await self._writer.drain()
        except (OSError, ssl.SSLError) as error:
            raise TransportError(f"write failed: {error}") from error


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketTransport(Transport):
    """Frames in binary WebSocket messages (RFC 6455), exactly one whole frame per message
    in both directions [NWP-5.6-2]."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame_size: int
    ) -> None:
        super().__init__(reader, writer, max_frame_size)
        self._closing = False

    @classmethod
    async def open(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: Endpoint,
        max_frame_size: int,
    ) -> WebSocketTransport:
        """Upgrades an open connection to a WebSocket at `endpoint.path`."""
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {endpoint.path} HTTP/1.1\r\n"
            f"Host: {endpoint.authority}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            writer.write(request.encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            raise TransportError(f"{endpoint}: WebSocket handshake failed: {error}") from error
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, sep, value in (line.partition(":") for line in lines)
            if sep
        }
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()
        if status.split(" ")[1:2] != ["101"] or headers.get("sec-websocket-accept") != accept:
            raise TransportError(f"{endpoint}: WebSocket upgrade refused: {status}")
        return cls(reader, writer, max_frame_size)

    async def recv(self) -> Optional[frames.Frame]:
        while True:
            try:
                message = await self._message()
            except DecodeError as error:
                raise await self._refuse(error) from error
            if message is None:
                return None
            opcode, data = message
            if opcode == _BINARY:
                return await self._one_frame(data)
            if opcode == _TEXT:
                # A text message is a PROTOCOL_VIOLATION [NWP-5.6-2].
                raise await self._refuse(NotOneFrame("a text WebSocket message"))
            if opcode == _CLOSE:
                await self._close_message(data[:2])
                return None

    async def send(self, batch: Sequence[frames.Frame]) -> None:
        for frame in batch:
            self._write_message(_BINARY, frames.encode(frame))
        try:
            await self._writer.drain()
        except (OSError, ssl.SSLError) as error:
            raise TransportError(f"write failed: {error}") from error

    async def close(self) -> None:
        await self._close_message((1000).to_bytes(2, "big"))
        await super().close()

    async def _close_message(self, status: bytes) -> None:
        """Starts or answers the closing handshake, once."""
        if not self._closing:
            self._closing = True
            try:
                await self._send_message(_CLOSE, status)
            except TransportError:
                pass

    async def _one_frame(self, data: bytes) -> frames.Frame:
        try:
            return frames.decode_message(data, self._max_frame_size)
        except DecodeError as error:
            raise await self._refuse(error) from error

    async def _message(self) -> Optional[Tuple[int, bytes]]:
        """The next data message, reassembled from its fragments, or a close message; pings
        are answered and pongs dropped on the way. None at the end of the stream."""
        opcode = None
        parts = []
        size = 0
        # A message carries one frame, so the frame limit (plus its prefix) bounds it.
        limit = self._max_frame_size + 16
        while True:
            try:
                head = await self._reader.readexactly(2)
                fin, code, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
                if head[1] & 0x80:
                    raise ProtocolError("the server masked a WebSocket frame")
                if length >= 126:
                    extended = await self._reader.readexactly(2 if length == 126 else 8)
                    length = int.from_bytes(extended, "big")
                if size + length > limit:
                    raise FrameTooLarge(size + length, limit)
                payload = await self._reader.readexactly(length)
            except asyncio.IncompleteReadError as error:
                if opcode is None and not error.partial:
                    return None
                raise TransportError("connection closed inside a WebSocket message") from None
            except (OSError, ssl.SSLError) as error:
                raise TransportError(f"read failed: {error}") from error
            # Control frames may come between the fragments of a message.
            if code == _PING:
                await self._send_message(_PONG, payload)
                continue
            if code >= _CLOSE:
                return code, payload
            if (code == _CONTINUATION) != (opcode is not None):
                raise ProtocolError("bad WebSocket fragmentation")
            if opcode is None:
                opcode = code
            parts.append(payload)
            size += length
            if fin:
                return opcode, b"".join(parts)

    async def _send_message(self, opcode: int, payload: bytes) -> None:
        self._write_message(opcode, payload)
        try:
            await self._writer.drain()
        except (OSError, ssl.SSLError) as error:
            raise TransportError(f"write failed: {error}") from error

    def _write_message(self, opcode: int, payload: bytes) -> None:
        """One unfragmented message; a client masks every frame it sends (RFC 6455 5.3)."""
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, 0x80 | size])
        elif size < 1 << 16:
            head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
        key = os.urandom(4)
        self._writer.write(head + key + _mask(payload, key))


def _mask(payload: bytes, key: bytes) -> bytes:
    size = len(payload)
    repeated = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(size, "big")


async def open_transport(
    endpoint: Endpoint, max_frame_size: int, ssl_context: Optional[ssl.SSLContext] = None
) -> Transport:
    """Opens a connection to `endpoint`; TLS uses `ssl_context`, or the system's trusted
    certificates without one."""
    context = (ssl_context or ssl.create_default_context()) if endpoint.tls else None
    try:
        reader, writer = await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=context,
            server_hostname=endpoint.host if context else None,
        )
    except (OSError, ssl.SSLError) as error:
        raise TransportError(f"{endpoint}: {error}") from error
    if endpoint.websocket:
        try:
            return await WebSocketTransport.open(reader, writer, endpoint, max_frame_size)
        except BaseException:
            writer.close()
            raise
    return StreamTransport(reader, writer, max_frame_size)
