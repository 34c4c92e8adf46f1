"""The sans-IO client session: protocol state without sockets or clocks.

Like the Rust SDK's session (and quinn-proto), it never does I/O and never reads the clock.
The driver (the asyncio `Client`, or a test) feeds it `now` (seconds on a monotonic clock)
and frames, and drains what it produced:

1. When a transport opens call `connected`; for every frame received call `handle_frame`;
   when the transport ends call `disconnected`.
2. Application calls go in through `submit` and `typing`.
3. After each input, drain `poll_transmit` (write the frames in order), `poll_completion`,
   `poll_event` and `poll_disconnect`, save `take_cursor`, then sleep until
   `poll_timeout` and call `handle_timeout`.

What it guarantees across reconnects: every request gets exactly one completion; requests
safe to repeat (sends, marks, queries) are written again on the next connection, with the
same client_msg_id, in submission order, until answered; the inbox resumes after the last
processed inbox_seq; deliveries are deduplicated by inbox_seq and by (conversation, seq);
and a hole in a conversation is repaired from history before later events of it are shown.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, NewType, Optional, Tuple, Union

from . import events as ev
from . import frames, varint
from .codec import DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_CAP, MIN_MAX_FRAME_SIZE, VERSION
from .cursor import Cursor
from .errors import (
    ClientClosed,
    ConfigError,
    ConnectionLost,
    ErrorCode,
    HistoryIncomplete,
    InvalidArgument,
    NatterError,
    ProtocolError,
    ServerError,
    closes_connection,
    code_name,
)
from .frames import Direction, Origin
from .requests import (
    ConversationPage,
    ConversationsRequest,
    Done,
    GroupInfo,
    HistoryPage,
    HistoryRequest,
    OutgoingMessage,
    Reply,
    Request,
    Sent,
)
from .varint import MAX as MAX_VARINT

TYPING_INTERVAL = 1.0
"""Seconds between two TYPING frames to one conversation, at least [NWP-6.2.7-1]."""

Ticket = NewType("Ticket", int)
"""Names one submitted request until its completion comes out of `poll_completion`."""

Completion = Tuple[Ticket, Union[Reply, NatterError]]
"""A request's one answer: a reply, or the error it failed with."""


@dataclass
class SessionConfig:
    """Tunables of a `Session`; the defaults suit most applications. Durations in seconds."""

    token: bytes = b""
    """The credential sent in HELLO; a bearer secret, never logged [NWP-8.1-2]."""
    agent: str = "natter-py/0.1"
    features: int = frames.Features.ALL
    max_frame_size: int = 1024 * 1024
    """The largest frame accepted: above the 64 KiB default so a history page of large
    messages fits in one frame; checked before buffering, so it bounds memory."""
    handshake_timeout: float = 10.0
    default_heartbeat: float = 30.0
    """The heartbeat to assume if READY says 0."""
    ack_delay: float = 0.1
    """Send a cumulative ACK at most this long after the first unacknowledged delivery..."""
    ack_batch: int = 64
    """... or as soon as this many deliveries are unacknowledged [NWP-6.2.4-1]."""
    max_pending: int = 1024
    """At most this many requests wait for an answer; `submit` refuses more."""
    max_in_flight: int = 128
    """At most this many requests are on the wire at once; stay below the server's
    per-connection limit [NWP-5.3-5]."""
    repair_page: int = 50
    """Events per HISTORY page when repairing a gap."""
    max_retries: int = 5
    """How often a request answered UNAVAILABLE is repeated. RATE_LIMITED is flow control,
    not failure: it pauses requests for as long as it lasts."""
    drain_timeout: float = 5.0
    """After GOAWAY, give up on the server's answers after this long."""


@dataclass(frozen=True)
class Disconnect:
    """The session wants the transport closed."""

    reason: str
    error: Optional[NatterError] = None
    """Set when reconnecting cannot help (bad or expired token, no common version)."""

    @property
    def fatal(self) -> bool:
        """Whether the client should stop instead of reconnecting [NWP-5.5-3]."""
        return self.error is not None


class _Phase(enum.Enum):
    OFFLINE = "offline"
    HANDSHAKE = "handshake"
    RESUMING = "resuming"
    LIVE = "live"
    CLOSED = "closed"


@dataclass
class _Link:
    """Per-transport state, from READY until the transport ends."""

    heartbeat: float
    last_sent: float
    last_received: float
    ping: Optional[int] = None


@dataclass
class _Pending:
    """An application request waiting for its answer."""

    request: Request
    wire: Optional[int] = None
    """The wire request id while it is written on the current transport."""
    not_before: Optional[float] = None
    retries: int = 0


@dataclass(frozen=True)
class _User:
    ticket: Ticket


@dataclass(frozen=True)
class _Resume:
    pass


@dataclass(frozen=True)
class _Repair:
    conversation: str


@dataclass(frozen=True)
class _Scan:
    generation: int


_WireUse = Union[_User, _Resume, _Repair, _Scan]
"""What a wire request id on the current transport stands for."""


@dataclass
class _RepairState:
    """A conversation being refilled from history: forward pages from the last seq held."""

    until: int = 0
    wire: Optional[int] = None
    not_before: Optional[float] = None


@dataclass
class _ScanState:
    """A walk over CONVERSATIONS after an inbox gap, to find which conversations to repair."""

    generation: int
    cursor: bytes = b""
    wire: Optional[int] = None
    not_before: Optional[float] = None


@dataclass
class _TypingState:
    """The last TYPING sent to a conversation, and the state waiting for its second to end."""

    sent_at: float
    pending: Optional[bool] = None


@dataclass
class _Conversation:
    last: int = 0
    """The last seq delivered, with every seq before it delivered too."""
    live_only: bool = False
    """Delivered live without inbox entries (a large group): caught up after reconnects."""


class Session:
    """The protocol state of one client across any number of transports."""

    def __init__(
        self,
        config: SessionConfig,
        cursor: Optional[Cursor] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        if not MIN_MAX_FRAME_SIZE <= config.max_frame_size <= MAX_FRAME_SIZE_CAP:
            # [NWP-3-4]: a smaller HELLO max_frame_size is a PROTOCOL_VIOLATION.
            raise ConfigError(
                f"max_frame_size must be {MIN_MAX_FRAME_SIZE} to {MAX_FRAME_SIZE_CAP}"
            )
        cursor = cursor or Cursor()
        self.config = config
        self._rng = rng or random.Random()
        self._phase = _Phase.OFFLINE
        self._handshake_deadline = 0.0
        self._resume_request = 0
        self._link: Optional[_Link] = None
        self._identity: Optional[Tuple[str, str]] = None
        self._peer_max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self._next_wire = 1
        self._next_ticket = 1
        self._next_nonce = 1
        self._pending: Dict[Ticket, _Pending] = {}  # in ticket order: tickets only grow
        self._wire: Dict[int, _WireUse] = {}
        self._inbox = cursor.inbox
        self._acked = 0
        self._ack_due: Optional[float] = None
        self._gap_credit = 0
        """Inbox entries sent as a conversation GAP since the last DELIVER [NWP-6.2.3-4]."""
        self._conversations = {
            conversation: _Conversation(last) for conversation, last in cursor.conversations.items()
        }
        self._repairs: Dict[str, _RepairState] = {}
        self._scan: Optional[_ScanState] = None
        self._scan_generation = 0
        self._typing: Dict[str, _TypingState] = {}
        self._drain_deadline: Optional[float] = None
        self._throttled_until: Optional[float] = None
        """RATE_LIMITED: no application request is written before this."""
        self._reconnect_hint: Optional[float] = None
        self._drain_delay: Optional[float] = None
        """After GOAWAY: when to reconnect, a random point of its window [NWP-5.4-2]."""
        self._cursor_dirty = False
        self._transmit: Deque[frames.Frame] = deque()
        self._events: Deque[ev.Event] = deque()
        self._completions: Deque[Completion] = deque()
        self._disconnect: Optional[Disconnect] = None

    # Inputs.

    def connected(self, now: float) -> None:
        """A transport is open: the session writes HELLO and waits for READY."""
        if self._phase == _Phase.CLOSED:
            return
        self._reset_transport()
        self._phase = _Phase.HANDSHAKE
        self._handshake_deadline = now + self.config.handshake_timeout
        # [NWP-5.1-1]: HELLO is the first frame; nothing else is sent until READY [NWP-5.1-2].
        hello = frames.Hello(
            VERSION,
            VERSION,
            self.config.features,
            self.config.max_frame_size,
            self.config.token,
            self.config.agent,
        )
        self._transmit.append(hello)

    def disconnected(self) -> None:
        """The transport ended. Requests safe to repeat wait for the next transport; the
        others complete with `ConnectionLost` [NWP-5.5-2]."""
        if self._phase == _Phase.CLOSED:
            return
        self._phase = _Phase.OFFLINE
        for used in self._wire.values():
            if isinstance(used, _User):
                pending = self._pending.get(used.ticket)
                if pending is not None and not pending.request.idempotent:
                    self._complete(used.ticket, ConnectionLost())
        self._reset_transport()

    def handle_frame(self, now: float, frame: frames.Frame) -> None:
        """Takes one frame from the server."""
        if self._link is not None:
            self._link.last_received = now
        if isinstance(frame, frames.Deliver):
            self._on_deliver(now, frame)
        elif isinstance(frame, frames.SendAck):
            sent = Sent(frame.seq, frame.timestamp, frame.duplicate)
            self._on_answer(now, frame.request, sent)
        elif isinstance(frame, frames.Ready):
            self._on_ready(now, frame)
        elif isinstance(frame, frames.Synced):
            self._on_synced(now, frame)
        elif isinstance(frame, frames.Error):
            self._on_error(now, frame)
        elif isinstance(frame, frames.Ping):
            if self._link is not None:
                self._write(now, frames.Pong(frame.nonce))  # [NWP-5.2-3]
        elif isinstance(frame, frames.Pong):
            # A PONG matching no PING is ignored [NWP-6.1.4-1].
            if self._link is not None and self._link.ping == frame.nonce:
                self._link.ping = None
        elif isinstance(frame, frames.Goaway):
            self._on_goaway(now, frame)
        elif isinstance(frame, frames.Gap):
            self._on_gap(now, frame)
        elif isinstance(frame, frames.Receipt):
            receipt = ev.Receipt(frame.conversation, frame.user, frame.delivered, frame.read)
            self._events.append(receipt)
        elif isinstance(frame, frames.TypingUpdate):
            self._events.append(ev.Typing(frame.conversation, frame.user, frame.active))
        elif isinstance(frame, frames.Presence):
            self._events.append(ev.Presence(frame.user, frame.status, frame.last_seen))
        elif isinstance(frame, frames.Done):
            self._on_answer(now, frame.request, Done())
        elif isinstance(frame, frames.HistoryPage):
            self._on_history(now, frame)
        elif isinstance(frame, frames.ConversationList):
            self._on_conversation_list(now, frame)
        elif isinstance(frame, frames.GroupInfo):
            info = GroupInfo(frame.conversation, frame.title, frame.members)
            self._on_answer(now, frame.request, info)
        elif frame.ORIGIN in (Origin.CLIENT, Origin.LINK):
            # A frame from the wrong side is a violation, not an unknown frame [NWP-5.3-4];
            # a client MAY say so before closing [NWP-6.1.6-4].
            message = f"{frame.NAME} is not a server frame"
            self._transmit.append(frames.Error(0, ErrorCode.PROTOCOL_VIOLATION, 0, message))
            self._request_disconnect(Disconnect(f"protocol violation: {message}"))
        # Anything else is a frame type this version does not know: skipped [NWP-3-6].

    def handle_timeout(self, now: float) -> None:
        """Runs the timers: handshake and heartbeat deadlines, pings, coalesced ACKs,
        retries."""
        if self._phase == _Phase.HANDSHAKE and now >= self._handshake_deadline:
            self._request_disconnect(Disconnect("no READY in time"))
        link = self._link
        if link is not None:
            if now >= link.last_received + 2 * link.heartbeat:
                # [NWP-5.2-3]: no PONG, nor anything else: the connection is dead.
                self._request_disconnect(Disconnect("server silent"))
            elif link.ping is None and now >= _ping_due(link):
                # [NWP-5.2-1]: at least one frame every heartbeat, PING when idle.
                nonce = self._next_nonce
                self._next_nonce += 1
                self._write(now, frames.Ping(nonce))
                link.ping = nonce
        if self._drain_deadline is not None and now >= self._drain_deadline:
            self._request_disconnect(Disconnect("server draining"))
        if self._ack_due is not None and now >= self._ack_due:
            self._flush_ack(now)
        self._flush_typing(now)
        self._flush_requests(now)

    def submit(self, now: float, request: Request) -> Optional[Ticket]:
        """Queues a request; it is written as soon as a connection is ready.

        Returns None, taking nothing, when `max_pending` requests already wait, so the
        caller can hold the request until completions make room.
        """
        if not self.can_submit():
            return None
        ticket = Ticket(self._next_ticket)
        self._next_ticket += 1
        if self._phase == _Phase.CLOSED:
            self._completions.append((ticket, ClientClosed()))
            return ticket
        problem = _validate(request)
        if problem is not None:
            self._completions.append((ticket, problem))
            return ticket
        self._pending[ticket] = _Pending(request)
        self._flush_requests(now)
        return ticket

    def typing(self, now: float, conversation: str, active: bool) -> None:
        """Tells a conversation whether the user is typing; dropped while offline, since a
        typing indicator is only worth anything live.

        At most one TYPING a second goes to a conversation [NWP-6.2.7-1]: a change within
        the second is sent when it ends, the latest state winning.
        """
        if not self._writable():
            return
        state = self._typing.get(conversation)
        if state is not None and now < state.sent_at + TYPING_INTERVAL:
            state.pending = active
            return
        self._typing[conversation] = _TypingState(now)
        self._write(now, frames.Typing(conversation, active))

    def flush_acks(self, now: float) -> None:
        """Acknowledges every delivery processed so far at once, before a clean close."""
        self._flush_ack(now)

    def close(self, error: Optional[NatterError] = None) -> None:
        """Stops for good: every waiting request completes with `error` (or
        `ClientClosed`). The cursor is marked for saving, so a restart resumes after what
        was processed even if its ACK never left."""
        self._phase = _Phase.CLOSED
        self._cursor_dirty = True
        for ticket in list(self._pending):
            self._complete(ticket, error or ClientClosed())
        self._events.append(ev.Closed(error))
        self._reset_transport()

    # Outputs.

    def poll_transmit(self) -> Optional[frames.Frame]:
        """The next frame to write, in order."""
        return self._transmit.popleft() if self._transmit else None

    def poll_event(self) -> Optional[ev.Event]:
        """The next event for the application."""
        return self._events.popleft() if self._events else None

    def poll_completion(self) -> Optional[Completion]:
        """The next answered request: exactly one per ticket."""
        return self._completions.popleft() if self._completions else None

    def poll_disconnect(self) -> Optional[Disconnect]:
        """Whether the session wants the transport closed, and why; once."""
        disconnect, self._disconnect = self._disconnect, None
        return disconnect

    def take_reconnect_hint(self) -> Optional[float]:
        """The least reconnect delay the server asked for, in seconds (a retry-after); once."""
        hint, self._reconnect_hint = self._reconnect_hint, None
        return hint

    def take_drain_delay(self) -> Optional[float]:
        """After GOAWAY, the reconnect delay in seconds: a random point of the server's
        window, which replaces the backoff so that the clients of a draining server spread
        out over the window rather than come back together [NWP-5.4-2]; once."""
        delay, self._drain_delay = self._drain_delay, None
        return delay

    def poll_timeout(self) -> Optional[float]:
        """When to call `handle_timeout` next."""
        deadlines: List[Optional[float]] = [self._ack_due, self._drain_deadline]
        if self._phase == _Phase.HANDSHAKE:
            deadlines.append(self._handshake_deadline)
        link = self._link
        if link is not None:
            deadlines.append(link.last_received + 2 * link.heartbeat)
            if link.ping is None:
                deadlines.append(_ping_due(link))
        if self._writable():
            deadlines.append(self._next_retry())
            deadlines += [
                state.sent_at + TYPING_INTERVAL
                for state in self._typing.values()
                if state.pending is not None
            ]
        return min((d for d in deadlines if d is not None), default=None)

    def take_cursor(self) -> Optional[Cursor]:
        """The cursor to persist, when it moved since the last call."""
        if not self._cursor_dirty:
            return None
        self._cursor_dirty = False
        return self.cursor()

    def cursor(self) -> Cursor:
        """How far this device has read."""
        return Cursor(
            self._inbox, {conv: state.last for conv, state in self._conversations.items()}
        )

    def can_submit(self) -> bool:
        """Whether `submit` takes another request now."""
        return len(self._pending) < self.config.max_pending

    @property
    def is_closed(self) -> bool:
        """Whether the session stopped for good."""
        return self._phase == _Phase.CLOSED

    @property
    def is_live(self) -> bool:
        """Whether the inbox replay is done and events are live."""
        return self._phase == _Phase.LIVE

    @property
    def identity(self) -> Optional[Tuple[str, str]]:
        """The authenticated user and device, once a READY has come."""
        return self._identity

    @property
    def pending_requests(self) -> int:
        """The number of requests waiting for an answer."""
        return len(self._pending)

    # Handlers.

    def _on_ready(self, now: float, ready: frames.Ready) -> None:
        if self._phase != _Phase.HANDSHAKE:
            # A READY in the wrong state is a violation, not a renegotiation [NWP-5.3-4].
            message = "a second READY"
            self._transmit.append(frames.Error(0, ErrorCode.PROTOCOL_VIOLATION, 0, message))
            self._request_disconnect(Disconnect(f"protocol violation: {message}"))
            return
        if ready.version != VERSION:
            # [NWP-5.1-3]: a version outside the range offered closes the connection.
            error = ProtocolError(f"server chose version {ready.version}, not {VERSION}")
            self._request_disconnect(Disconnect(str(error), error))
            return
        if ready.max_frame_size < MIN_MAX_FRAME_SIZE:
            # [NWP-3-4]: a smaller maximum is a PROTOCOL_VIOLATION; say so and close.
            message = f"READY max_frame_size {ready.max_frame_size} is below 4096"
            self._transmit.append(frames.Error(0, ErrorCode.PROTOCOL_VIOLATION, 0, message))
            self._request_disconnect(Disconnect(message))
            return
        heartbeat = ready.heartbeat_ms / 1000 if ready.heartbeat_ms else None
        self._link = _Link(heartbeat or self.config.default_heartbeat, now, now)
        # [NWP-5.1-5]: frames to the server stay within its maximum, capped [NWP-3-4].
        self._peer_max_frame_size = min(ready.max_frame_size, MAX_FRAME_SIZE_CAP)
        self._identity = (ready.user, ready.device)
        self._events.append(ev.Connected(ready.user, ready.device, ready.session))
        # A new device starts at the head: history, not the inbox, holds the past
        # [NWP-6.1.2-2]. Otherwise resume after the last processed entry [NWP-6.2.9-1].
        if self._inbox is None:
            self._inbox = ready.inbox_head
        self._acked = 0
        request = self._wire_id(_Resume())
        self._write(now, frames.Resume(request, self._inbox))
        self._phase = _Phase.RESUMING
        self._resume_request = request
        self._flush_requests(now)

    def _on_error(self, now: float, error: frames.Error) -> None:
        failure = ServerError.from_wire(error.code, error.retry_after_ms, error.message)
        # INTERNAL_ERROR may also answer one request and leave the connection open (spec
        # section 10); every other code below 0x10 closes it [NWP-10-1].
        one_request = error.code == ErrorCode.INTERNAL_ERROR and error.request in self._wire
        if error.request == 0 or (closes_connection(error.code) and not one_request):
            # A connection error: its sender closes, and nothing more may be sent
            # [NWP-5.5-1].
            self._transmit.clear()
            if failure.retry_after is not None:
                self._reconnect_hint = failure.retry_after
            # [NWP-5.5-3]: reconnecting with the same HELLO cannot help after these.
            fatal = error.code in (
                ErrorCode.UNAUTHENTICATED,
                ErrorCode.TOKEN_EXPIRED,
                ErrorCode.UNSUPPORTED_VERSION,
            )
            reason = f"server error {code_name(error.code)}: {error.message}"
            self._request_disconnect(Disconnect(reason, failure if fatal else None))
            return
        used = self._wire.pop(error.request, None)
        if used is None:
            return  # [NWP-6.1.6-3]: an ERROR for an unknown request id is ignored.
        retry = error.code in (ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE)
        # [NWP-7.12-1]: never sooner than the server said.
        not_before = now + (failure.retry_after or 0.2)
        if isinstance(used, _User):
            pending = self._pending.get(used.ticket)
            if error.code == ErrorCode.RATE_LIMITED:
                # Pause every request, not just this one, so the ones behind it keep their
                # order; flow control does not use up retries.
                if pending is not None:
                    pending.wire = None
                until = now + (failure.retry_after or 0.02)
                self._throttled_until = max(until, self._throttled_until or until)
            elif pending is not None and retry and pending.retries < self.config.max_retries:
                pending.retries += 1
                pending.wire = None
                pending.not_before = not_before
            else:
                self._complete(used.ticket, failure)
            self._flush_requests(now)
        elif isinstance(used, _Resume):
            self._reconnect_hint = failure.retry_after
            reason = f"RESUME failed: {code_name(error.code)}"
            self._request_disconnect(Disconnect(reason))
        elif isinstance(used, _Repair):
            repair = self._repairs.get(used.conversation)
            if repair is not None and retry:
                repair.wire = None
                repair.not_before = not_before
            else:
                self._repairs.pop(used.conversation, None)
                self._events.append(ev.RepairFailed(used.conversation, failure))
        else:
            if self._scan is not None and retry:
                self._scan.wire = None
                self._scan.not_before = not_before
            else:
                self._scan = None
                self._events.append(ev.RepairFailed("", failure))

    def _on_goaway(self, now: float, goaway: frames.Goaway) -> None:
        # [NWP-5.4-2]: no new requests here; reconnect after a random delay within the
        # window. The server answers what is in flight, then closes; a deadline covers a
        # server that never does.
        window = goaway.reconnect_ms / 1000
        self._drain_delay = self._rng.uniform(0, window)
        self._drain_deadline = now + self.config.drain_timeout
        self._events.append(ev.GoingAway(window))

    def _on_deliver(self, now: float, deliver: frames.Deliver) -> None:
        if deliver.inbox_seq > 0:
            processed = self._inbox or 0
            if deliver.inbox_seq <= processed:
                return  # replayed after a reconnect [NWP-6.2.3-3]
            skipped = deliver.inbox_seq - processed - 1
            if skipped > self._gap_credit:
                # Entries went missing without a GAP frame: the same repair as with one.
                self._skip_inbox(processed + 1, deliver.inbox_seq - 1)
            self._gap_credit = 0
            self._inbox = deliver.inbox_seq
            if self._ack_due is None:
                self._ack_due = now + self.config.ack_delay
            if deliver.inbox_seq - self._acked >= self.config.ack_batch:
                self._flush_ack(now)
        else:
            # A large group fans out on read: no inbox entry, no replay [NWP-7.3-5].
            self._conversation(deliver.conversation).live_only = True
        self._accept(now, deliver.conversation, deliver.event, from_history=False)

    def _on_synced(self, now: float, synced: frames.Synced) -> None:
        if self._phase != _Phase.RESUMING or synced.request != self._resume_request:
            return
        self._wire.pop(synced.request, None)
        self._phase = _Phase.LIVE
        self._inbox = max(self._inbox or 0, synced.inbox_head)
        self._events.append(ev.Synced(synced.inbox_head))
        # Large groups have no inbox entries to replay: catch them up from history.
        for conversation, state in self._conversations.items():
            if state.live_only:
                self._repairs.setdefault(conversation, _RepairState())
        self._flush_ack(now)
        self._flush_requests(now)

    def _on_gap(self, now: float, gap: frames.Gap) -> None:
        conversation = gap.conversation or None
        self._events.append(ev.Gap(conversation, gap.from_, gap.to))
        if conversation is not None:
            # [NWP-7.11-2]: read them with HISTORY FORWARD from `from - 1`, which is at
            # most the last seq held. A GAP naming one event may stand in for a DELIVER too
            # large for this client, whose inbox entry counts as sent [NWP-6.2.3-4].
            if gap.from_ == gap.to:
                self._gap_credit += 1
            self._start_repair(conversation, gap.to)
        else:
            self._inbox = max(self._inbox or 0, gap.to)
            self._start_scan()
        self._flush_requests(now)

    def _skip_inbox(self, first: int, last: int) -> None:
        """Gives up on inbox entries `first..=last` and finds their events in history.

        Whether they were pruned (a GAP before SYNCED) or dropped for a slow reader (a GAP
        while live), every event they named is in its conversation's history after the
        last seq delivered, so one repair covers both [NWP-6.2.11-1]; and unlike a second
        RESUME, reading history is paced by the client, so it cannot overflow again.
        """
        self._events.append(ev.Gap(None, first, last))
        self._start_scan()

    def _start_scan(self) -> None:
        self._scan_generation += 1
        self._scan = _ScanState(self._scan_generation)

    def _on_answer(self, now: float, request: int, reply: Reply) -> None:
        used = self._wire.get(request)
        if isinstance(used, _User):
            del self._wire[request]
            self._complete(used.ticket, reply)
        elif used is not None:
            # An internal request answered with the wrong frame: read it again.
            self._disown(request)
        else:
            return  # an answer to nothing, or a second answer
        # The window has room for the next request.
        self._flush_requests(now)

    def _on_history(self, now: float, page: frames.HistoryPage) -> None:
        used = self._wire.get(page.request)
        if not isinstance(used, _Repair):
            chat = [ev.chat_event(page.conversation, event) for event in page.events]
            self._on_answer(now, page.request, HistoryPage(page.conversation, page.more, chat))
            return
        del self._wire[page.request]
        conversation = used.conversation
        before = self._last_seq(conversation)
        for event in page.events:
            self._accept(now, conversation, event, from_history=True)
        through = self._last_seq(conversation)
        repair = self._repairs.get(conversation)
        until = repair.until if repair is not None else 0
        if page.more or through < until:
            if through == before:
                # History stops short of what was promised: report it, do not loop.
                self._repairs.pop(conversation, None)
                error = HistoryIncomplete(through, until)
                self._events.append(ev.RepairFailed(conversation, error))
            elif repair is not None:
                repair.wire = None
        else:
            self._repairs.pop(conversation, None)
            self._cursor_dirty = True
            self._events.append(ev.Repaired(conversation, through))
        self._flush_requests(now)

    def _on_conversation_list(self, now: float, page: frames.ConversationList) -> None:
        used = self._wire.get(page.request)
        if not isinstance(used, _Scan):
            reply = ConversationPage(page.next_cursor, page.conversations)
            self._on_answer(now, page.request, reply)
            return
        del self._wire[page.request]
        for summary in page.conversations:
            if summary.last_seq > self._last_seq(summary.conversation):
                self._start_repair(summary.conversation, summary.last_seq)
        scan = self._scan
        if scan is not None and scan.generation == used.generation:
            if page.next_cursor:
                scan.cursor = page.next_cursor
                scan.wire = None
            else:
                self._scan = None
        self._flush_requests(now)

    # Helpers.

    def _accept(
        self, now: float, conversation: str, event: frames.Event, *, from_history: bool
    ) -> None:
        """Shows one conversation event unless it is a duplicate or comes after a hole,
        which it opens a repair for instead: the application sees each conversation in seq
        order, each seq once [NWP-6.2.3-3]."""
        state = self._conversation(conversation)
        last = state.last
        if event.seq <= last:
            return
        if not from_history:
            repair = self._repairs.get(conversation)
            if repair is not None:
                repair.until = max(repair.until, event.seq)
                return
            # A conversation first seen while inbox entries are being recovered may have
            # lost its beginning in them.
            known_start = last > 0 or self._scan is not None
            if known_start and event.seq > last + 1:
                self._events.append(ev.Gap(conversation, last + 1, event.seq - 1))
                self._start_repair(conversation, event.seq)
                self._flush_requests(now)
                return
        state.last = event.seq
        self._events.append(ev.chat_event(conversation, event))

    def _conversation(self, conversation: str) -> _Conversation:
        state = self._conversations.get(conversation)
        if state is None:
            state = self._conversations[conversation] = _Conversation()
        return state

    def _start_repair(self, conversation: str, until: int) -> None:
        repair = self._repairs.setdefault(conversation, _RepairState())
        repair.until = max(repair.until, until)

    def _last_seq(self, conversation: str) -> int:
        state = self._conversations.get(conversation)
        return state.last if state is not None else 0

    def _flush_requests(self, now: float) -> None:
        """Writes every request, repair page and scan page that is due and not on the
        wire; at most `max_in_flight` requests, in submission order [NWP-7.2-4]."""
        if not self._writable():
            return
        if self._throttled_until is None or self._throttled_until <= now:
            self._throttled_until = None
            on_wire = sum(1 for pending in self._pending.values() if pending.wire is not None)
            room = self.config.max_in_flight - on_wire
            due = [
                ticket
                for ticket, pending in self._pending.items()
                if pending.wire is None and _due(pending.not_before, now)
            ][: max(room, 0)]
            for ticket in due:
                self._write_request(now, ticket)
        self._flush_internal(now)

    def _write_request(self, now: float, ticket: Ticket) -> None:
        pending = self._pending[ticket]
        request = self._wire_id(_User(ticket))
        frame = pending.request.to_frame(request)
        if _length(frame) > self._peer_max_frame_size:
            # The server would close the connection, and the retry would do it again.
            del self._wire[request]
            limit = self._peer_max_frame_size
            self._complete(ticket, InvalidArgument(f"frame exceeds the server's {limit} bytes"))
            return
        pending.wire = request
        pending.not_before = None
        self._write(now, frame)

    def _flush_internal(self, now: float) -> None:
        """Writes the repair and scan pages that are due and not on the wire."""
        for conversation, repair in list(self._repairs.items()):
            if repair.wire is None and _due(repair.not_before, now):
                request = self._wire_id(_Repair(conversation))
                history = HistoryRequest(
                    conversation,
                    self._last_seq(conversation),
                    Direction.FORWARD,
                    self.config.repair_page,
                )
                self._write(now, history.to_frame(request))
                repair.wire = request
                repair.not_before = None
        scan = self._scan
        if scan is not None and scan.wire is None and _due(scan.not_before, now):
            request = self._wire_id(_Scan(scan.generation))
            self._write(now, ConversationsRequest(scan.cursor, 100).to_frame(request))
            scan.wire = request
            scan.not_before = None

    def _next_retry(self) -> Optional[float]:
        """The earliest retry-after among requests that are off the wire."""
        waiting = [pending for pending in self._pending.values() if pending.wire is None]
        times = [pending.not_before for pending in waiting]
        if waiting:
            times.append(self._throttled_until)
        times += [r.not_before for r in self._repairs.values() if r.wire is None]
        if self._scan is not None and self._scan.wire is None:
            times.append(self._scan.not_before)
        return min((t for t in times if t is not None), default=None)

    def _flush_typing(self, now: float) -> None:
        """Sends the typing states whose second is over, and forgets the quiet ones."""
        for conversation, state in list(self._typing.items()):
            if now < state.sent_at + TYPING_INTERVAL:
                continue
            if state.pending is None or not self._writable():
                del self._typing[conversation]
            else:
                self._typing[conversation] = _TypingState(now)
                self._write(now, frames.Typing(conversation, state.pending))

    def _flush_ack(self, now: float) -> None:
        """Acknowledges every processed entry at once [NWP-6.2.4-1]: the ACK is cumulative,
        and the events were handed to the application before it."""
        self._ack_due = None
        inbox = self._inbox or 0
        if self._writable() and inbox > self._acked:
            self._write(now, frames.Ack(inbox))
            self._acked = inbox
            self._cursor_dirty = True

    def _disown(self, request: int) -> None:
        """Forgets an internal request's wire id so that it is written again."""
        used = self._wire.pop(request, None)
        if isinstance(used, _Repair):
            repair = self._repairs.get(used.conversation)
            if repair is not None:
                repair.wire = None
        elif isinstance(used, _Scan) and self._scan is not None:
            self._scan.wire = None

    def _complete(self, ticket: Ticket, result: Union[Reply, NatterError]) -> None:
        if self._pending.pop(ticket, None) is not None:
            self._completions.append((ticket, result))

    def _wire_id(self, used: _WireUse) -> int:
        """A request id not in use on this connection: non-zero [NWP-2.3-4]."""
        request = self._next_wire
        self._next_wire = 1 if request >= MAX_VARINT else request + 1
        self._wire[request] = used
        return request

    def _write(self, now: float, frame: frames.Frame) -> None:
        if self._link is not None:
            self._link.last_sent = now
        self._transmit.append(frame)

    def _writable(self) -> bool:
        # [NWP-5.4-2]: after GOAWAY no new requests go out on this connection.
        return self._phase in (_Phase.RESUMING, _Phase.LIVE) and self._drain_deadline is None

    def _request_disconnect(self, disconnect: Disconnect) -> None:
        if self._disconnect is None:
            self._disconnect = disconnect

    def _reset_transport(self) -> None:
        """Forgets everything that belonged to one transport; requests go off the wire."""
        self._link = None
        self._peer_max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self._wire.clear()
        self._transmit.clear()
        self._ack_due = None
        self._gap_credit = 0
        self._typing.clear()
        self._drain_deadline = None
        self._throttled_until = None
        self._disconnect = None
        for pending in self._pending.values():
            pending.wire = None
        for repair in self._repairs.values():
            repair.wire = None
        if self._scan is not None:
            self._scan.wire = None


def _ping_due(link: _Link) -> float:
    """Half a heartbeat after the link went quiet in either direction, so a PING and its
    PONG fit in the heartbeat."""
    return min(link.last_sent, link.last_received) + link.heartbeat / 2


def _length(frame: frames.Frame) -> int:
    """The frame's Length: its bytes after the length prefix."""
    prefix = varint.peek(frames.encode(frame))
    assert prefix is not None  # an encoded frame starts with its whole length
    return prefix[0]


def _due(not_before: Optional[float], now: float) -> bool:
    return not_before is None or not_before <= now


def _validate(request: Request) -> Optional[NatterError]:
    """Rejects requests the server would refuse for their form alone."""
    if isinstance(request, OutgoingMessage):
        if not 1 <= request.client_msg_id <= MAX_VARINT:
            return InvalidArgument("client_msg_id must be between 1 and 2^62 - 1")
        has_target = request.kind in (frames.EventKind.EDIT, frames.EventKind.DELETE)
        if has_target and request.target == 0:
            return InvalidArgument("an edit or delete needs a target seq")
    return None
