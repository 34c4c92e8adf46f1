"""The sans-IO session with scripted frames and a fake clock: every rule, without a socket.

Mirrors the Rust SDK's session tests (clients/rust/src/session/tests.rs).
"""

from __future__ import annotations

import random
from typing import List, Optional, Tuple, Union

import pytest

from natter import events as ev
from natter import frames
from natter.cursor import Cursor
from natter.errors import (
    ClientClosed,
    ConfigError,
    ConnectionLost,
    ErrorCode,
    HistoryIncomplete,
    InvalidArgument,
    NatterError,
    ServerError,
)
from natter.frames import Direction, EventFlags
from natter.requests import (
    GroupCreateRequest,
    HistoryRequest,
    OutgoingMessage,
    Reply,
    Sent,
)
from natter.session import Session, SessionConfig, Ticket

CONV = "d/alice/bob"


class Harness:
    """A session, a clock in milliseconds, and helpers to drain its outputs."""

    def __init__(self, cursor: Optional[Cursor] = None, **config: object) -> None:
        settings = SessionConfig(token=b"tok", **config)  # type: ignore[arg-type]
        self.session = Session(settings, cursor, rng=random.Random(7))

    @staticmethod
    def at(ms: float) -> float:
        return 1000.0 + ms / 1000

    def connect(self, ms: float, inbox_head: int) -> Tuple[int, int]:
        """Connects, answers HELLO with READY; returns the RESUME's request id and after."""
        self.session.connected(self.at(ms))
        sent = self.sent()
        assert len(sent) == 1 and isinstance(sent[0], frames.Hello)
        ready = frames.Ready(
            version=1,
            heartbeat_ms=10_000,
            max_frame_size=65536,
            session=9,
            user="alice",
            device="phone",
            inbox_head=inbox_head,
        )
        self.frame(ms, ready)
        resume = self.session.poll_transmit()
        assert isinstance(resume, frames.Resume), resume
        return resume.request, resume.after

    def live(self, ms: float, inbox_head: int) -> None:
        """Connects and finishes an empty replay."""
        request, _ = self.connect(ms, inbox_head)
        self.frame(ms, frames.Synced(request, inbox_head))

    def frame(self, ms: float, frame: frames.Frame) -> None:
        self.session.handle_frame(self.at(ms), frame)

    def timeout(self, ms: float) -> None:
        self.session.handle_timeout(self.at(ms))

    def sent(self) -> List[frames.Frame]:
        out = []
        while (frame := self.session.poll_transmit()) is not None:
            out.append(frame)
        return out

    def events(self) -> List[ev.Event]:
        out = []
        while (event := self.session.poll_event()) is not None:
            out.append(event)
        return out

    def completions(self) -> List[Tuple[Ticket, Union[Reply, NatterError]]]:
        out = []
        while (completion := self.session.poll_completion()) is not None:
            out.append(completion)
        return out

    def send(self, ms: float, client_msg_id: int) -> Ticket:
        message = OutgoingMessage(CONV, b"hi", client_msg_id=client_msg_id)
        ticket = self.session.submit(self.at(ms), message)
        assert ticket is not None
        return ticket


def deliver(inbox_seq: int, conversation: str, seq: int) -> frames.Deliver:
    return frames.Deliver(inbox_seq, conversation, message(seq))


def message(seq: int) -> frames.Event:
    return frames.Event(seq=seq, sender="bob", body=f"m{seq}".encode())


def sends(sent: List[frames.Frame]) -> List[Tuple[int, int]]:
    """(request, client_msg_id) of each SEND."""
    return [(f.request, f.client_msg_id) for f in sent if isinstance(f, frames.Send)]


def seqs(events: List[ev.Event]) -> List[int]:
    return [e.seq for e in events if isinstance(e, ev.ChatEvent)]


def only(sent: List[frames.Frame], kind: type) -> frames.Frame:
    assert len(sent) == 1 and isinstance(sent[0], kind), sent
    return sent[0]


def test_handshake_sends_hello_then_resumes_a_new_device_at_the_head() -> None:
    h = Harness()
    h.session.connected(h.at(0))
    hello = only(h.sent(), frames.Hello)
    assert isinstance(hello, frames.Hello)
    assert (hello.token, hello.min_version, hello.max_version) == (b"tok", 1, 1)
    assert hello.max_frame_size >= 4096

    request, after = h.connect(0, 41)
    assert after == 41, "a new device starts at inbox_head"
    assert h.session.identity == ("alice", "phone")
    assert not h.session.is_live
    h.frame(1, frames.Synced(request, 41))
    assert h.session.is_live
    events = h.events()
    assert isinstance(events[0], ev.Connected)
    assert events[-1] == ev.Synced(41)


def test_a_refused_token_is_fatal_and_a_busy_server_is_not() -> None:
    h = Harness()
    h.session.connected(h.at(0))
    h.frame(0, frames.Error(0, ErrorCode.TOKEN_EXPIRED, 0, "expired"))
    disconnect = h.session.poll_disconnect()
    assert disconnect is not None and disconnect.fatal
    assert isinstance(disconnect.error, ServerError)
    assert disconnect.error.code == ErrorCode.TOKEN_EXPIRED

    h = Harness()
    h.session.connected(h.at(0))
    h.frame(0, frames.Error(0, ErrorCode.TOO_MANY_CONNECTIONS, 1500, "busy"))
    disconnect = h.session.poll_disconnect()
    assert disconnect is not None and not disconnect.fatal
    assert h.session.take_reconnect_hint() == 1.5


def test_after_a_connection_error_nothing_more_is_sent() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    h.send(1, 5)
    h.frame(1, frames.Error(0, ErrorCode.INTERNAL_ERROR, 0, "bye"))
    assert h.sent() == [], "[NWP-5.5-1]"
    disconnect = h.session.poll_disconnect()
    assert disconnect is not None and not disconnect.fatal


def test_a_ready_with_another_version_is_refused() -> None:
    h = Harness()
    h.session.connected(h.at(0))
    h.frame(0, frames.Ready(version=2, heartbeat_ms=10_000, user="alice", device="phone"))
    disconnect = h.session.poll_disconnect()
    assert disconnect is not None and disconnect.fatal
    assert h.session.identity is None


def test_no_ready_in_time_asks_for_a_reconnect() -> None:
    h = Harness()
    h.session.connected(h.at(0))
    assert h.session.poll_timeout() == h.at(10_000)
    h.timeout(9_999)
    assert h.session.poll_disconnect() is None
    h.timeout(10_000)
    disconnect = h.session.poll_disconnect()
    assert disconnect is not None and not disconnect.fatal


def test_every_request_gets_exactly_one_answer() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    send = h.send(1, 77)
    history = h.session.submit(h.at(1), HistoryRequest(CONV, 0, Direction.BACKWARD, 10))
    sent = h.sent()
    send_wire, history_wire = frames.request_id(sent[0]), frames.request_id(sent[1])
    assert send_wire and history_wire and send_wire != history_wire

    h.frame(2, frames.Error(history_wire, ErrorCode.NOT_FOUND, 0, "not a member"))
    ack = frames.SendAck(send_wire, 12, 5, False)
    h.frame(3, ack)
    h.frame(3, ack)  # a second answer to the same id is ignored
    h.frame(3, frames.Done(999))  # so is an answer to nothing
    h.frame(3, frames.Error(998, ErrorCode.NOT_FOUND, 0, ""))  # [NWP-6.1.6-3]

    completions = h.completions()
    assert len(completions) == 2
    assert completions[0][0] == history
    assert isinstance(completions[0][1], ServerError)
    assert completions[0][1].code == ErrorCode.NOT_FOUND
    assert completions[1] == (send, Sent(12, 5, False))
    assert h.session.pending_requests == 0


def test_unacknowledged_sends_are_repeated_in_order_with_the_same_id_after_a_reconnect() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    tickets = [h.send(1, client_msg_id) for client_msg_id in (1, 2, 3)]
    create = h.session.submit(h.at(1), GroupCreateRequest("t"))
    first = sends(h.sent())
    assert [cmid for _, cmid in first] == [1, 2, 3]
    h.frame(2, frames.SendAck(first[0][0], 1, 0, False))

    h.session.disconnected()
    # The group create may or may not have happened: it is not repeated.
    lost = h.completions()
    assert len(lost) == 2
    assert lost[1][0] == create and isinstance(lost[1][1], ConnectionLost)
    # Offline, a new send waits in the outbox behind the others.
    later = h.send(3, 4)

    h.connect(5, 0)
    again = sends(h.sent())
    assert [cmid for _, cmid in again] == [2, 3, 4]
    assert len({request for request, _ in again}) == 3
    for index, (request, _) in enumerate(again):
        h.frame(6, frames.SendAck(request, index + 2, 0, index < 2))
    assert [ticket for ticket, _ in h.completions()] == [tickets[1], tickets[2], later]


def test_requests_answered_rate_limited_are_retried_after_the_delay() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    ticket = h.send(0, 5)
    request = frames.request_id(h.sent()[0])
    assert request
    h.frame(10, frames.Error(request, ErrorCode.RATE_LIMITED, 500, "slow down"))
    assert h.completions() == []
    assert h.session.poll_timeout() == pytest.approx(h.at(510))
    h.timeout(509)
    assert sends(h.sent()) == []
    h.timeout(510)
    retry = sends(h.sent())
    assert len(retry) == 1 and retry[0][1] == 5, "same client_msg_id"
    h.frame(600, frames.SendAck(retry[0][0], 3, 0, False))
    assert h.completions()[0][0] == ticket


def test_rate_limiting_pauses_every_request_without_using_up_retries() -> None:
    h = Harness(max_retries=0)
    h.live(0, 0)
    h.sent()
    tickets = [h.send(0, client_msg_id) for client_msg_id in (1, 2)]
    first = sends(h.sent())
    h.frame(1, frames.Error(first[0][0], ErrorCode.RATE_LIMITED, 40, "slow down"))
    h.send(2, 3)  # queued behind the pause
    assert h.sent() == []
    assert h.session.poll_timeout() == pytest.approx(h.at(41))
    h.timeout(41)
    retried = sends(h.sent())
    assert [cmid for _, cmid in retried] == [1, 3]
    h.frame(42, frames.SendAck(retried[0][0], 1, 0, False))
    assert h.completions()[0] == (tickets[0], Sent(1, 0, False))


def test_unavailable_is_retried_a_few_times_then_fails() -> None:
    h = Harness(max_retries=1)
    h.live(0, 0)
    h.sent()
    ticket = h.send(0, 5)
    request = frames.request_id(h.sent()[0])
    h.frame(1, frames.Error(request or 0, ErrorCode.UNAVAILABLE, 100, "later"))
    h.timeout(101)
    retry = sends(h.sent())
    assert [cmid for _, cmid in retry] == [5]
    h.frame(102, frames.Error(retry[0][0], ErrorCode.UNAVAILABLE, 100, "later"))
    [(done, error)] = h.completions()
    assert done == ticket and isinstance(error, ServerError) and error.retryable


def test_deliveries_are_deduplicated_and_acked_cumulatively() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    h.frame(1, deliver(1, CONV, 1))
    h.frame(1, deliver(2, CONV, 2))
    h.frame(1, deliver(2, CONV, 2))  # same inbox_seq
    h.frame(1, deliver(3, CONV, 2))  # same (conversation, seq) under another inbox entry
    h.frame(1, deliver(4, CONV, 3))
    chat = [e for e in h.events() if isinstance(e, ev.ChatEvent)]
    assert seqs(chat) == [1, 2, 3]  # type: ignore[arg-type]
    assert all(isinstance(e, ev.Message) and e.text == f"m{e.seq}" for e in chat)

    assert h.sent() == [], "acks are coalesced"
    assert h.session.poll_timeout() == pytest.approx(h.at(101))
    h.timeout(101)
    assert h.sent() == [frames.Ack(4)]
    cursor = h.session.take_cursor()
    assert cursor is not None and cursor.inbox == 4 and cursor.conversations[CONV] == 3
    assert h.session.take_cursor() is None


def test_a_full_batch_is_acked_at_once() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    for n in range(1, 65):
        h.frame(1, deliver(n, CONV, n))
    assert h.sent() == [frames.Ack(64)]


def test_a_reconnect_resumes_after_the_last_processed_inbox_seq() -> None:
    h = Harness()
    request, _ = h.connect(0, 0)
    h.frame(0, deliver(1, CONV, 1))
    h.frame(0, deliver(2, CONV, 2))
    h.frame(0, frames.Synced(request, 2))
    h.session.disconnected()
    _, after = h.connect(10, 2)
    assert after == 2

    # A restarted process resumes from the stored cursor.
    restarted = Harness(h.session.cursor())
    request, after = restarted.connect(0, 9)
    assert after == 2
    # The replay repeats nothing already seen, and continues in order.
    restarted.frame(0, deliver(2, CONV, 2))
    restarted.frame(0, deliver(3, CONV, 3))
    restarted.frame(0, frames.Synced(request, 3))
    assert seqs(restarted.events()) == [3]
    assert frames.Ack(3) in restarted.sent()


def test_the_heartbeat_pings_when_idle_and_gives_up_on_a_silent_server() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    assert h.session.poll_timeout() == pytest.approx(h.at(5_000))
    h.timeout(5_000)
    ping = only(h.sent(), frames.Ping)
    assert isinstance(ping, frames.Ping)
    h.frame(5_010, frames.Pong(ping.nonce))
    assert h.session.poll_timeout() == pytest.approx(h.at(10_000))
    h.timeout(10_000)
    only(h.sent(), frames.Ping)
    # No PONG, nothing at all: dead after two heartbeats of silence.
    h.timeout(25_009)
    assert h.session.poll_disconnect() is None
    h.timeout(25_010)
    assert h.session.poll_disconnect() is not None


def test_a_server_ping_is_answered_with_its_nonce() -> None:
    h = Harness()
    h.session.connected(h.at(0))
    h.sent()
    h.frame(0, frames.Ping(3))
    assert h.sent() == [], "nothing but HELLO before READY [NWP-5.1-2]"
    h.live(1, 0)
    h.sent()
    h.frame(2, frames.Ping(77))
    assert h.sent() == [frames.Pong(77)]


def test_a_hole_in_a_conversation_is_repaired_from_history_in_order() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    h.frame(1, deliver(1, CONV, 1))
    h.frame(1, deliver(2, CONV, 4))
    h.frame(1, deliver(3, CONV, 5))  # arrives while repairing: held back
    history = only(h.sent(), frames.History)
    assert isinstance(history, frames.History)
    assert (history.anchor, history.direction) == (1, Direction.FORWARD)
    events = h.events()
    assert seqs(events) == [1]
    assert ev.Gap(CONV, 2, 3) in events

    def page(request: int, page_seqs: List[int], more: bool) -> frames.HistoryPage:
        return frames.HistoryPage(request, CONV, more, [message(s) for s in page_seqs])

    h.frame(2, page(history.request, [2, 3], True))
    nxt = only(h.sent(), frames.History)
    assert isinstance(nxt, frames.History) and nxt.anchor == 3
    h.frame(3, page(nxt.request, [4, 5], False))
    events = h.events()
    assert seqs(events) == [2, 3, 4, 5]
    assert events[-1] == ev.Repaired(CONV, 5)
    h.frame(4, deliver(4, CONV, 6))
    assert seqs(h.events()) == [6]


def test_a_gap_frame_for_a_conversation_reads_forward_from_the_last_seq_held() -> None:
    h = Harness()
    h.live(0, 0)
    h.frame(1, deliver(1, CONV, 7))
    h.sent()
    h.frame(2, frames.Gap(CONV, 8, 9))
    history = only(h.sent(), frames.History)
    assert isinstance(history, frames.History) and history.anchor == 7  # from - 1 [NWP-7.11-2]
    # History that stops short of the gap is reported, not looped on.
    h.frame(3, frames.HistoryPage(history.request, CONV, False, []))
    failed = [e for e in h.events() if isinstance(e, ev.RepairFailed)]
    assert len(failed) == 1 and isinstance(failed[0].error, HistoryIncomplete)
    assert (failed[0].error.through, failed[0].error.until) == (7, 9)


def test_a_deliver_too_large_for_the_client_becomes_an_omitted_event_without_a_scan() -> None:
    h = Harness()
    h.live(0, 0)
    h.frame(1, deliver(1, CONV, 1))
    h.sent()
    # [NWP-6.2.3-4]: the server sends GAP{conv, seq, seq} in place of the DELIVER, and the
    # inbox entry counts as sent.
    h.frame(2, frames.Gap(CONV, 2, 2))
    h.frame(2, deliver(3, CONV, 3))
    history = only(h.sent(), frames.History)
    assert isinstance(history, frames.History) and history.anchor == 1
    omitted = frames.Event(seq=2, sender="bob", flags=EventFlags.OMITTED)
    h.frame(3, frames.HistoryPage(history.request, CONV, False, [omitted, message(3)]))
    events = h.events()
    assert seqs(events) == [1, 2, 3]
    assert [e for e in events if isinstance(e, ev.Gap)] == [ev.Gap(CONV, 2, 2)], "no inbox scan"
    too_large = [e for e in events if isinstance(e, ev.ChatEvent) and e.seq == 2][0]
    assert too_large.omitted and too_large.text is None, "absent, not empty [NWP-4.1-4]"
    assert h.session.cursor().inbox == 3


def test_a_pruned_inbox_is_repaired_through_the_conversation_list() -> None:
    h = Harness(Cursor(4, {CONV: 3}))
    request, after = h.connect(0, 20)
    assert after == 4
    h.frame(0, frames.Gap("", 5, 9))
    scan = only(h.sent(), frames.Conversations)
    h.frame(0, deliver(10, "g/new", 1))
    h.frame(0, frames.Synced(request, 10))
    assert h.session.cursor().inbox == 10
    summaries = [frames.Summary(CONV, last_seq=6), frames.Summary("g/new", last_seq=1)]
    assert isinstance(scan, frames.Conversations)
    h.frame(1, frames.ConversationList(scan.request, b"", summaries))
    histories = [(f.conversation, f.anchor) for f in h.sent() if isinstance(f, frames.History)]
    assert histories == [(CONV, 3)], "only what is behind is repaired"


def test_an_inbox_gap_while_live_is_repaired_from_history_not_replayed() -> None:
    h = Harness()
    h.live(0, 0)
    h.frame(1, deliver(1, CONV, 1))
    h.sent()
    # The edge dropped inbox entries 2..=5 for a slow reader; 6 fit.
    h.frame(2, frames.Gap("", 2, 5))
    scan = only(h.sent(), frames.Conversations)
    assert h.session.is_live, "no second RESUME: its replay could overflow again"
    h.frame(2, deliver(6, "g/new", 4))
    assert h.session.cursor().inbox == 6
    # g/new was first seen after the hole: its beginning may be in it, so it is held back
    # and read from the start.
    history = only(h.sent(), frames.History)
    assert isinstance(history, frames.History)
    assert (history.conversation, history.anchor) == ("g/new", 0)
    assert seqs(h.events()) == [1]
    assert isinstance(scan, frames.Conversations)
    h.frame(3, frames.ConversationList(scan.request, b"", [frames.Summary(CONV, last_seq=3)]))
    history = only(h.sent(), frames.History)
    assert isinstance(history, frames.History)
    assert (history.conversation, history.anchor) == (CONV, 1)


def test_an_inbox_jump_without_a_gap_frame_is_repaired_the_same_way() -> None:
    h = Harness()
    h.live(0, 0)
    h.frame(1, deliver(1, CONV, 1))
    h.frame(1, deliver(4, CONV, 4))
    assert ev.Gap(None, 2, 3) in h.events()
    sent = h.sent()
    assert any(isinstance(f, frames.Conversations) for f in sent)
    assert any(isinstance(f, frames.History) and f.anchor == 1 for f in sent)


def test_goaway_holds_new_requests_until_the_next_connection() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    h.frame(1, frames.Goaway(ErrorCode.SHUTTING_DOWN, 250, ""))
    assert ev.GoingAway(0.25) in h.events()
    h.send(2, 9)
    assert h.sent() == [], "[NWP-5.4-2]"
    delay = h.session.take_drain_delay()
    assert delay is not None and 0 <= delay <= 0.25, "a random delay within the window"
    assert h.session.take_reconnect_hint() is None, "not a least delay on top of the backoff"
    h.timeout(5_001)
    assert h.session.poll_disconnect() is not None
    h.session.disconnected()
    h.connect(6_000, 0)
    assert len(sends(h.sent())) == 1


def test_a_full_outbox_pushes_back_and_bad_sends_fail_at_once() -> None:
    h = Harness(max_pending=2)
    h.send(0, 1)
    h.send(0, 2)
    assert not h.session.can_submit()
    assert h.session.submit(h.at(0), OutgoingMessage(CONV, b"x", client_msg_id=3)) is None

    h = Harness()
    bad = h.send(0, 0)
    [(ticket, error)] = h.completions()
    assert ticket == bad and isinstance(error, InvalidArgument)
    edit = h.session.submit(h.at(0), OutgoingMessage(CONV, kind=frames.EventKind.EDIT))
    [(ticket, error)] = h.completions()
    assert ticket == edit and isinstance(error, InvalidArgument), "an edit needs a target"
    h.session.close()
    late = h.send(0, 1)
    [(ticket, error)] = h.completions()
    assert ticket == late and isinstance(error, ClientClosed)


def test_a_send_larger_than_the_server_accepts_fails_instead_of_looping() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    ticket = h.session.submit(h.at(0), OutgoingMessage(CONV, b"x" * 70_000))
    assert h.sent() == []
    [(done, error)] = h.completions()
    assert done == ticket and isinstance(error, InvalidArgument)


def test_at_most_max_in_flight_requests_are_on_the_wire_in_order() -> None:
    h = Harness(max_in_flight=2)
    h.live(0, 0)
    h.sent()
    for client_msg_id in (1, 2, 3, 4):
        h.send(0, client_msg_id)
    first = sends(h.sent())
    assert [cmid for _, cmid in first] == [1, 2]
    h.frame(1, frames.SendAck(first[0][0], 1, 0, False))
    assert [cmid for _, cmid in sends(h.sent())] == [3]


def test_unknown_frames_are_skipped_and_frames_from_the_wrong_side_close() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    h.frame(1, frames.UnknownFrame(0x7F, b"\x01\x02"))  # [NWP-3-6]
    assert h.sent() == [] and h.session.poll_disconnect() is None
    h.frame(1, frames.Send(1, CONV, 5))  # a client frame from the server [NWP-5.3-4]
    error = only(h.sent(), frames.Error)
    assert isinstance(error, frames.Error) and error.code == ErrorCode.PROTOCOL_VIOLATION
    assert h.session.poll_disconnect() is not None


def test_a_second_ready_is_a_violation() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    # A frame in the wrong state is a violation, not a renegotiation [NWP-5.3-4].
    h.frame(1, frames.Ready(version=1, max_frame_size=65536, heartbeat_ms=10_000))
    error = only(h.sent(), frames.Error)
    assert isinstance(error, frames.Error) and error.code == ErrorCode.PROTOCOL_VIOLATION
    assert h.session.poll_disconnect() is not None


def test_receipts_typing_and_presence_become_events() -> None:
    h = Harness()
    h.live(0, 0)
    h.events()
    h.frame(1, frames.Receipt(CONV, "bob", 6, 5))
    h.frame(1, frames.TypingUpdate(CONV, "bob", True))
    h.frame(1, frames.Presence("bob", frames.Status.ONLINE, 0))
    assert h.events() == [
        ev.Receipt(CONV, "bob", 6, 5),
        ev.Typing(CONV, "bob", True),
        ev.Presence("bob", frames.Status.ONLINE, 0),
    ]
    h.session.typing(h.at(2), CONV, True)
    assert h.sent() == [frames.Typing(CONV, True)]


def test_events_are_typed_by_kind() -> None:
    h = Harness()
    h.live(0, 0)
    h.events()
    change = bytearray()
    frames.MemberChange("carol", frames.Role.MEMBER)._encode(change)
    kinds = [
        frames.Event(seq=1, kind=frames.EventKind.GROUP_CREATED, body=b"Climbing"),
        frames.Event(seq=2, kind=frames.EventKind.MEMBER_ADDED, body=bytes(change)),
        frames.Event(seq=3, kind=frames.EventKind.MESSAGE, body=b"hi"),
        frames.Event(seq=4, kind=frames.EventKind.EDIT, target=3, body=b"hey"),
        frames.Event(seq=5, kind=frames.EventKind.DELETE, target=3),
        frames.Event(seq=6, kind=0x3F),  # a kind this version does not know [NWP-4.1-1]
    ]
    for n, event in enumerate(kinds, 1):
        h.frame(1, frames.Deliver(n, "g/x", event))
    got = h.events()
    assert [type(e) for e in got] == [
        ev.Membership,
        ev.Membership,
        ev.Message,
        ev.Edit,
        ev.Delete,
        ev.OtherEvent,
    ]
    added = got[1]
    assert isinstance(added, ev.ChatEvent) and added.member_change() == ("carol", 0)


def test_a_clean_close_saves_the_cursor_even_before_its_ack_left() -> None:
    h = Harness()
    h.live(0, 0)
    h.frame(1, deliver(1, CONV, 1))
    h.session.take_cursor()
    h.session.close()
    cursor = h.session.take_cursor()
    assert cursor is not None and cursor.inbox == 1
    assert h.session.is_closed
    assert h.events()[-1] == ev.Closed(None)


def test_a_frame_size_below_the_minimum_is_refused_up_front() -> None:
    with pytest.raises(ConfigError):
        Session(SessionConfig(max_frame_size=4095))


def test_a_ready_with_a_frame_size_below_the_minimum_is_a_violation() -> None:
    h = Harness()
    h.session.connected(h.at(0))
    h.sent()
    h.frame(0, frames.Ready(version=1, max_frame_size=1024, user="alice", device="phone"))
    error = only(h.sent(), frames.Error)
    assert isinstance(error, frames.Error) and error.code == ErrorCode.PROTOCOL_VIOLATION
    disconnect = h.session.poll_disconnect()
    assert disconnect is not None and not disconnect.fatal


def test_an_internal_error_for_one_request_leaves_the_connection_open() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    ticket = h.send(0, 5)
    request = frames.request_id(h.sent()[0])
    h.frame(1, frames.Error(request or 0, ErrorCode.INTERNAL_ERROR, 0, "corrupt record"))
    [(done, error)] = h.completions()
    assert done == ticket and isinstance(error, ServerError)
    assert error.code == ErrorCode.INTERNAL_ERROR
    assert h.session.poll_disconnect() is None
    # The same code for the connection closes it.
    h.frame(2, frames.Error(0, ErrorCode.INTERNAL_ERROR, 0, "broken"))
    assert h.session.poll_disconnect() is not None


def test_typing_goes_out_at_most_once_a_second_per_conversation() -> None:
    h = Harness()
    h.live(0, 0)
    h.sent()
    h.session.typing(h.at(0), CONV, True)
    h.session.typing(h.at(0), "g/other", True)
    assert h.sent() == [frames.Typing(CONV, True), frames.Typing("g/other", True)]
    h.session.typing(h.at(400), CONV, True)
    h.session.typing(h.at(700), CONV, False)  # the latest state wins
    assert h.sent() == []
    assert h.session.poll_timeout() == pytest.approx(h.at(1000))
    h.timeout(1000)
    assert h.sent() == [frames.Typing(CONV, False)]
    h.timeout(2000)
    h.session.typing(h.at(2500), CONV, True)
    assert h.sent() == [frames.Typing(CONV, True)]
