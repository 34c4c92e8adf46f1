"""The asyncio client: one task drives a `Session` over a `Transport` and reconnects.

Everything runs on one event loop, so the application's calls hand requests to the session
directly and wake the driver; only the driver writes frames and hands out answers and
events, which keeps both in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Type, TypeVar, Union

from . import events as ev
from .cursor import CursorStore, MemoryCursorStore
from .errors import ClientClosed, ErrorCode, NatterError, ProtocolError, ServerError, TransportError
from .frames import Direction, EventKind, GroupOp, Marker, Role
from .ids import direct_conversation
from .requests import (
    ConversationPage,
    ConversationsRequest,
    Done,
    GroupCreateRequest,
    GroupGetRequest,
    GroupInfo,
    GroupUpdateRequest,
    HistoryPage,
    HistoryRequest,
    MarkRequest,
    OutgoingMessage,
    PresenceSubscribeRequest,
    Reply,
    Request,
    Sent,
)
from .session import Disconnect, Session, SessionConfig, Ticket
from .transport import Endpoint, Transport, open_transport

log = logging.getLogger("natter")

T = TypeVar("T")


@dataclass
class Config:
    """How a `Client` connects and behaves. Durations are in seconds."""

    url: str
    """`tcp://host:port`, `tls://host:port`, `ws://host:port/ws` or `wss://host/ws`."""
    token: Union[str, bytes]
    """Minted by the application's backend (or `natter token`); never logged."""
    token_refresh: Optional[Callable[[], Awaitable[Union[str, bytes]]]] = None
    """Called for a new token when the server reports TOKEN_EXPIRED [NWP-5.1-8]; the client
    then reconnects and resumes. Without it, an expired token stops the client."""
    cursor_store: CursorStore = field(default_factory=MemoryCursorStore)
    """Where the resume cursor is kept; a `FileCursorStore` survives restarts."""
    ssl_context: Optional[ssl.SSLContext] = None
    """For `tls://` and `wss://`: the system's trusted certificates when None."""
    session: SessionConfig = field(default_factory=SessionConfig)
    """Protocol tunables; its token is replaced by `token`."""
    backoff_initial: float = 1.0
    """The first reconnect delay; it doubles per failed attempt, with jitter [NWP-5.5-3]."""
    backoff_max: float = 60.0
    connect_timeout: float = 10.0
    event_capacity: int = 1024
    """Events queued for the application before the client stops reading the socket."""


class Events:
    """The application's stream of events, in order; it ends when the client stops.

    Keep reading it: when its queue is full the client stops reading from the server, which
    is how a slow application slows the server down instead of growing memory.
    """

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[Optional[ev.Event]] = asyncio.Queue(max(capacity, 16))
        self._ended = False

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> ev.Event:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next(self, timeout: Optional[float] = None) -> Optional[ev.Event]:
        """The next event, or None once the client has stopped. Raises
        `asyncio.TimeoutError` after `timeout` seconds without one."""
        if self._ended and self._queue.empty():
            return None
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _put(self, event: ev.Event, closing: asyncio.Event) -> None:
        """Queues an event, waiting while the queue is full unless `closing` is set: nobody
        may be reading then, and the event is dropped."""
        if not self._queue.full():
            self._queue.put_nowait(event)
            return
        put = asyncio.ensure_future(self._queue.put(event))
        stop = asyncio.ensure_future(closing.wait())
        try:
            await asyncio.wait({put, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()
            stop.cancel()

    def _end(self) -> None:
        self._ended = True
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # the reader sees the end once it has drained the queue


class Client:
    """A connection to a natter server that stays up: it reconnects with jittered
    exponential backoff and resumes from the cursor in `Config.cursor_store`.

    ```python
    client = await Client.connect(Config("tcp://127.0.0.1:7400", token))
    chat = client.direct_conversation("bob")
    sent = await client.send_text(chat, "hello bob")
    async for event in client.events:
        if isinstance(event, natter.Message):
            print(event.sender, event.text)
    ```
    """

    def __init__(self, config: Config) -> None:
        """Use `await Client.connect(config)`, which also makes the first connection."""
        token = _token_bytes(config.token)
        self.config = config
        self.endpoint = Endpoint.parse(config.url)
        self.events = Events(config.event_capacity)
        self._session = Session(
            dataclasses.replace(config.session, token=token), config.cursor_store.load()
        )
        self._rng = random.Random()
        self._waiting: Dict[Ticket, asyncio.Future[Reply]] = {}
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: Optional[asyncio.Task[None]] = None
        self._identity = ("", "")
        self._attempt = 0

    @classmethod
    async def connect(cls, config: Config) -> Client:
        """Connects and authenticates, then keeps the connection up in a background task.

        Raises if the first connection fails or the server refuses the token; later losses
        are repaired by reconnecting.
        """
        client = cls(config)
        transport = await client._open()
        try:
            await client._handshake(transport)
        except BaseException:
            await transport.close()
            raise
        client._task = asyncio.ensure_future(client._run(transport))
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def user(self) -> str:
        """The authenticated user."""
        return self._identity[0]

    @property
    def device(self) -> str:
        """The authenticated device."""
        return self._identity[1]

    @property
    def _running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing.is_set()

    def direct_conversation(self, other: str) -> str:
        """The id of the direct conversation between this user and `other`."""
        return direct_conversation(self.user, other)

    # Requests.

    async def enqueue(self, request: Request) -> asyncio.Future[Reply]:
        """Queues a request and returns at once with a future for its answer, so requests
        can be pipelined: they are written in the order they were queued [NWP-5.3-2]. Waits
        only while `SessionConfig.max_pending` requests are unanswered."""
        while True:
            if not self._running:
                raise ClientClosed()
            ticket = self._session.submit(time.monotonic(), request)
            if ticket is not None:
                break
            self._room.clear()
            await self._room.wait()
        answer: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = answer
        self._wake.set()
        return answer

    async def request(self, request: Request) -> Reply:
        """Sends a request and waits for its answer."""
        return await (await self.enqueue(request))

    async def send(self, message: OutgoingMessage) -> Sent:
        """Appends a message, edit or delete, and waits until it is durable [NWP-7.2-3].

        Safe to call again with the same message: the server answers the original seq."""
        return _expect(await self.request(message), Sent)

    async def send_text(self, conversation: str, text: str) -> Sent:
        """Sends a text message."""
        return await self.send(OutgoingMessage.text(conversation, text))

    async def edit(self, conversation: str, target: int, text: str) -> Sent:
        """Replaces the body of the message at seq `target`."""
        message = OutgoingMessage(conversation, text.encode(), kind=EventKind.EDIT, target=target)
        return await self.send(message)

    async def delete(self, conversation: str, target: int) -> Sent:
        """Deletes the message at seq `target`."""
        return await self.send(OutgoingMessage(conversation, kind=EventKind.DELETE, target=target))

    async def history(
        self,
        conversation: str,
        anchor: int = 0,
        direction: int = Direction.BACKWARD,
        limit: int = 50,
    ) -> HistoryPage:
        """A page of `limit` events before (BACKWARD) or after (FORWARD) seq `anchor`;
        anchor 0 is the newest end or the start. Events are ascending either way."""
        request = HistoryRequest(conversation, anchor, direction, limit)
        return _expect(await self.request(request), HistoryPage)

    async def conversations(self, cursor: bytes = b"", limit: int = 50) -> ConversationPage:
        """The user's conversations, most recently active first; pass the previous page's
        `next_cursor` for the next page."""
        return _expect(await self.request(ConversationsRequest(cursor, limit)), ConversationPage)

    async def create_group(self, title: str, members: Sequence[str] = ()) -> GroupInfo:
        """Creates a group owned by this user, with `members` as MEMBER."""
        request = GroupCreateRequest(title, list(members))
        return _expect(await self.request(request), GroupInfo)

    async def group_info(self, conversation: str) -> GroupInfo:
        """A group's title and members."""
        return _expect(await self.request(GroupGetRequest(conversation)), GroupInfo)

    async def add_member(self, conversation: str, user: str, role: int = Role.MEMBER) -> Sent:
        """Adds a member; answers the seq of the MEMBER_ADDED event."""
        return await self._group_update(conversation, GroupOp.ADD, user, role)

    async def remove_member(self, conversation: str, user: str) -> Sent:
        """Removes a member; answers the seq of the MEMBER_REMOVED event."""
        return await self._group_update(conversation, GroupOp.REMOVE, user, Role.MEMBER)

    async def set_role(self, conversation: str, user: str, role: int) -> Sent:
        """Changes a member's role (owner only)."""
        return await self._group_update(conversation, GroupOp.SET_ROLE, user, role)

    async def leave(self, conversation: str) -> Sent:
        """Leaves a group."""
        return await self.remove_member(conversation, self.user)

    async def mark_read(self, conversation: str, seq: int) -> None:
        """Marks everything up to `seq` read, on all of this user's devices [NWP-7.4-3]."""
        _expect(await self.request(MarkRequest(conversation, Marker.READ, seq)), Done)

    async def mark_delivered(self, conversation: str, seq: int) -> None:
        """Moves the delivered pointer (the server also derives it from ACKs)."""
        _expect(await self.request(MarkRequest(conversation, Marker.DELIVERED, seq)), Done)

    async def subscribe_presence(self, conversation: str, ttl: float = 300.0) -> None:
        """Watches the presence of a conversation's members for `ttl` seconds (at most 5
        minutes; renew it) [NWP-7.9-2]; `Presence` events follow."""
        request = PresenceSubscribeRequest(conversation, int(ttl * 1000))
        _expect(await self.request(request), Done)

    async def typing(self, conversation: str, active: bool) -> None:
        """Says whether the user is typing; repeat True every 3 s while typing, at most once
        a second [NWP-6.2.7-1]. Dropped while disconnected."""
        if not self._running:
            raise ClientClosed()
        self._session.typing(time.monotonic(), conversation, active)
        self._wake.set()

    async def close(self) -> None:
        """Acknowledges what was processed, closes the connection and stops; requests still
        waiting fail with `ClientClosed`."""
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _group_update(self, conversation: str, op: int, user: str, role: int) -> Sent:
        request = GroupUpdateRequest(conversation, op, user, role)
        return _expect(await self.request(request), Sent)

    # The driver.

    async def _open(self) -> Transport:
        try:
            transport = await asyncio.wait_for(
                open_transport(
                    self.endpoint, self._session.config.max_frame_size, self.config.ssl_context
                ),
                self.config.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise TransportError(f"{self.endpoint}: connect timed out") from None
        self._session.connected(time.monotonic())
        return transport

    async def _handshake(self, transport: Transport) -> None:
        """Drives the first connection until READY, so `connect` can report a refused
        token."""
        read = asyncio.ensure_future(transport.recv())
        try:
            while True:
                await self._output(transport)
                identity = self._session.identity
                if identity is not None:
                    self._identity = identity
                    return
                disconnect = self._session.poll_disconnect()
                if disconnect is not None:
                    raise disconnect.error or TransportError(disconnect.reason)
                await asyncio.wait({read}, timeout=self._timeout())
                if read.done():
                    frame = read.result()
                    if frame is None:
                        raise TransportError("the server closed the connection in the handshake")
                    self._session.handle_frame(time.monotonic(), frame)
                    read = asyncio.ensure_future(transport.recv())
                else:
                    self._session.handle_timeout(time.monotonic())
        finally:
            read.cancel()

    async def _run(self, transport: Transport) -> None:
        try:
            while True:
                disconnect = await self._serve(transport)
                await transport.close()
                self._session.disconnected()
                if disconnect is None:
                    return await self._stop(None)
                if disconnect.fatal:
                    if not await self._refresh_token(disconnect.error):
                        return await self._stop(disconnect.error)
                reason = disconnect.reason
                while True:
                    self._attempt += 1
                    hint = self._session.take_reconnect_hint() or 0.0
                    drain = self._session.take_drain_delay()
                    if drain is not None:
                        delay = drain  # GOAWAY's own window, not the backoff [NWP-5.4-2]
                    else:
                        delay = max(hint, self._backoff(self._attempt))
                    await self._emit(ev.Disconnected(reason, delay))
                    if await self._idle(delay):
                        return await self._stop(None)
                    await self._emit(ev.Connecting(self._attempt))
                    try:
                        transport = await self._open()
                        break
                    except NatterError as error:
                        reason = str(error)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug here must not leave callers waiting forever
            log.exception("natter client driver failed")
            await self._stop(ProtocolError(f"client driver failed: {error!r}"))

    async def _refresh_token(self, error: Optional[NatterError]) -> bool:
        """Gets a new token after TOKEN_EXPIRED, if the application gave a way to."""
        expired = isinstance(error, ServerError) and error.code == ErrorCode.TOKEN_EXPIRED
        if not expired or self.config.token_refresh is None:
            return False
        try:
            token = await self.config.token_refresh()
        except Exception:
            log.warning("natter: token_refresh failed", exc_info=True)
            return False
        self._session.config.token = _token_bytes(token)
        return True

    async def _serve(self, transport: Transport) -> Optional[Disconnect]:
        """Runs one connection until it ends; None when the application closed it."""
        read = asyncio.ensure_future(transport.recv())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            while True:
                self._wake.clear()
                try:
                    await self._output(transport)
                except TransportError as error:
                    return Disconnect(str(error))
                if self._session.is_live:
                    self._attempt = 0
                disconnect = self._session.poll_disconnect()
                if disconnect is not None:
                    return disconnect
                if self._closing.is_set():
                    self._session.flush_acks(time.monotonic())
                    try:
                        await self._output(transport)
                    except TransportError:
                        pass
                    return None
                done, _ = await asyncio.wait(
                    {read, wake}, timeout=self._timeout(), return_when=asyncio.FIRST_COMPLETED
                )
                now = time.monotonic()
                if read in done:
                    try:
                        frame = read.result()
                    except NatterError as error:
                        return Disconnect(str(error))
                    if frame is None:
                        return Disconnect("connection closed by the server")
                    self._session.handle_frame(now, frame)
                    read = asyncio.ensure_future(transport.recv())
                if wake in done:
                    wake = asyncio.ensure_future(self._wake.wait())
                deadline = self._session.poll_timeout()
                if deadline is not None and now >= deadline:
                    self._session.handle_timeout(now)
        finally:
            read.cancel()
            wake.cancel()

    async def _idle(self, delay: float) -> bool:
        """Waits out a reconnect delay while still answering what the session completes
        offline; True if the application closed the client meanwhile."""
        until = time.monotonic() + delay
        while not self._closing.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return False
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                pass
            await self._output(None)
        return True

    async def _output(self, transport: Optional[Transport]) -> None:
        """Hands out answers and events, saves the cursor, then writes what the session
        produced: an ACK leaves only after its events reached the application's queue."""
        self._dispatch()
        while True:
            event = self._session.poll_event()
            if event is None:
                break
            await self._emit(event)
        cursor = self._session.take_cursor()
        if cursor is not None:
            try:
                self.config.cursor_store.save(cursor)
            except Exception:  # an older cursor only means seeing some events again
                log.warning("natter: saving the cursor failed", exc_info=True)
        batch: List[Any] = []
        while True:
            frame = self._session.poll_transmit()
            if frame is None:
                break
            batch.append(frame)
        if batch and transport is not None:
            await transport.send(batch)

    def _dispatch(self) -> None:
        while True:
            completion = self._session.poll_completion()
            if completion is None:
                break
            ticket, result = completion
            answer = self._waiting.pop(ticket, None)
            if answer is None or answer.done():
                continue
            if isinstance(result, NatterError):
                answer.set_exception(result)
            else:
                answer.set_result(result)
        self._room.set()

    async def _emit(self, event: ev.Event) -> None:
        await self.events._put(event, self._closing)

    async def _stop(self, error: Optional[NatterError]) -> None:
        self._session.close(error)
        self._closing.set()
        await self._output(None)
        self.events._end()

    def _timeout(self) -> Optional[float]:
        deadline = self._session.poll_timeout()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.config.backoff_initial, self.config.backoff_max, self._rng)


def backoff(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """The delay before reconnect attempt `attempt` (from 1): doubling from `initial` up to
    `maximum`, with equal jitter (half fixed, half random) so that clients cut off together
    do not come back together [NWP-5.5-3]."""
    ceiling = min(initial * (1 << min(attempt - 1, 16)), maximum)
    return ceiling / 2 + rng.random() * ceiling / 2


async def connect(url: str, token: Union[str, bytes], **options: Any) -> Client:
    """Connects with a `Config` built from `url`, `token` and any other `Config` field."""
    return await Client.connect(Config(url, token, **options))


def _token_bytes(token: Union[str, bytes]) -> bytes:
    return token.encode() if isinstance(token, str) else token


def _expect(reply: Reply, kind: Type[T]) -> T:
    if not isinstance(reply, kind):
        raise ProtocolError(f"unexpected answer {reply!r}")
    return reply
