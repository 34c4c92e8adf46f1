//! Scripted frames with a fake clock: every rule of the session, without a socket.

use std::time::{Duration, Instant};

use bytes::Bytes;
use natter_codec::frame::{
    ConversationList, Deliver, Done, Error as ErrorFrame, Gap, Goaway, HistoryPage as Page, Pong,
    Ready, SendAck, Synced,
};
use natter_codec::types::{ConversationKind, Event as WireEvent, EventKind, Summary};
use natter_codec::{ErrorCode, Frame};

use super::*;
use crate::request::OutgoingMessage;

const CONV: &str = "d/alice/bob";

struct Harness {
    session: Session,
    start: Instant,
}

impl Harness {
    fn new(cursor: Cursor) -> Self {
        let config = SessionConfig {
            token: Bytes::from_static(b"tok"),
            ..SessionConfig::default()
        };
        Self {
            session: Session::new(config, cursor),
            start: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Connects, answers HELLO with READY, and returns the RESUME's request id and cursor.
    fn connect(&mut self, ms: u64, inbox_head: u64) -> (u64, u64) {
        self.session.connected(self.at(ms));
        assert!(matches!(self.sent()[..], [Frame::Hello(_)]));
        self.frame(
            ms,
            Ready {
                version: 1,
                max_frame_size: 65_536,
                heartbeat_ms: 10_000,
                session: 9,
                user: "alice".into(),
                device: "phone".into(),
                inbox_head,
                ..Ready::default()
            },
        );
        match self.session.poll_transmit() {
            Some(Frame::Resume(resume)) => (resume.request, resume.after),
            other => panic!("expected RESUME, got {other:?}"),
        }
    }

    /// Connects and finishes the (empty) replay.
    fn live(&mut self, ms: u64, inbox_head: u64) {
        let (request, _) = self.connect(ms, inbox_head);
        self.frame(
            ms,
            Synced {
                request,
                inbox_head,
            },
        );
    }

    fn frame(&mut self, ms: u64, frame: impl Into<Frame>) {
        let now = self.at(ms);
        self.session.handle_frame(now, frame.into());
    }

    fn sent(&mut self) -> Vec<Frame> {
        std::iter::from_fn(|| self.session.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    fn completions(&mut self) -> Vec<(Ticket, Result<Reply>)> {
        std::iter::from_fn(|| self.session.poll_completion()).collect()
    }

    fn send(&mut self, ms: u64, client_msg_id: u64) -> Ticket {
        let mut message = OutgoingMessage::text(CONV, "hi");
        message.client_msg_id = client_msg_id;
        let now = self.at(ms);
        self.session.submit(now, Request::Send(message)).unwrap()
    }

    /// The message seqs among `events`, to compare orders at a glance.
    fn message_seqs(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(Event::chat_event)
            .map(|event| event.seq)
            .collect()
    }
}

fn deliver(inbox_seq: u64, conversation: &str, seq: u64) -> Deliver {
    Deliver {
        inbox_seq,
        conversation: conversation.into(),
        event: message(seq),
    }
}

fn message(seq: u64) -> WireEvent {
    WireEvent {
        seq,
        kind: EventKind::MESSAGE,
        sender: "bob".into(),
        body: Bytes::from(format!("m{seq}")),
        ..WireEvent::default()
    }
}

fn sends(frames: &[Frame]) -> Vec<(u64, u64)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Send(send) => Some((send.request, send.client_msg_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_sends_hello_then_resumes_a_new_device_at_the_head() {
    let mut h = Harness::new(Cursor::default());
    h.session.connected(h.at(0));
    let hello = h.sent();
    let [Frame::Hello(hello)] = &hello[..] else {
        panic!("expected HELLO, got {hello:?}");
    };
    assert_eq!(hello.token, Bytes::from_static(b"tok"));
    assert_eq!((hello.min_version, hello.max_version), (1, 1));

    let (request, after) = h.connect(0, 41);
    assert_eq!(after, 41, "a new device starts at inbox_head");
    assert_eq!(h.session.identity(), Some(("alice", "phone")));
    assert!(!h.session.is_live());
    h.frame(
        1,
        Synced {
            request,
            inbox_head: 41,
        },
    );
    assert!(h.session.is_live());
    let events = h.events();
    assert!(matches!(
        events[0],
        Event::Connection(ConnectionState::Connected { .. })
    ));
    assert!(matches!(
        events.last(),
        Some(Event::Connection(ConnectionState::Synced {
            inbox_head: 41
        }))
    ));
}

#[test]
fn a_refused_token_is_fatal_and_a_busy_server_is_not() {
    let mut h = Harness::new(Cursor::default());
    h.session.connected(h.at(0));
    h.frame(0, ErrorFrame::new(0, ErrorCode::TOKEN_EXPIRED, "expired"));
    match h.session.poll_disconnect() {
        Some(Disconnect::Fatal(error)) => assert_eq!(error.code(), Some(ErrorCode::TOKEN_EXPIRED)),
        other => panic!("expected a fatal disconnect, got {other:?}"),
    }

    let mut h = Harness::new(Cursor::default());
    h.session.connected(h.at(0));
    let mut busy = ErrorFrame::new(0, ErrorCode::TOO_MANY_CONNECTIONS, "busy");
    busy.retry_after_ms = 1500;
    h.frame(0, busy);
    assert!(matches!(
        h.session.poll_disconnect(),
        Some(Disconnect::Reconnect(_))
    ));
    assert_eq!(
        h.session.take_reconnect_hint(),
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn no_ready_in_time_asks_for_a_reconnect() {
    let mut h = Harness::new(Cursor::default());
    h.session.connected(h.at(0));
    assert_eq!(h.session.poll_timeout(), Some(h.at(10_000)));
    h.session.handle_timeout(h.at(9_999));
    assert_eq!(h.session.poll_disconnect(), None);
    h.session.handle_timeout(h.at(10_000));
    assert!(matches!(
        h.session.poll_disconnect(),
        Some(Disconnect::Reconnect(_))
    ));
}

#[test]
fn every_request_gets_exactly_one_answer() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    let send = h.send(1, 77);
    let history = h
        .session
        .submit(
            h.at(1),
            Request::History {
                conversation: CONV.into(),
                anchor: 0,
                direction: Direction::BACKWARD,
                limit: 10,
            },
        )
        .unwrap();
    let frames = h.sent();
    let (send_wire, history_wire) = (frames[0].request().unwrap(), frames[1].request().unwrap());
    assert_ne!(send_wire, history_wire);

    h.frame(
        2,
        ErrorFrame::new(history_wire, ErrorCode::FORBIDDEN, "not a member"),
    );
    let ack = SendAck {
        request: send_wire,
        seq: 12,
        timestamp: 5,
        duplicate: false,
    };
    h.frame(3, ack.clone());
    h.frame(3, ack); // a second answer to the same id is ignored
    h.frame(3, Done { request: 999 }); // so is an answer to nothing

    let completions = h.completions();
    assert_eq!(completions.len(), 2);
    assert_eq!(completions[0].0, history);
    assert_eq!(
        completions[0].1.as_ref().unwrap_err().code(),
        Some(ErrorCode::FORBIDDEN)
    );
    assert_eq!(completions[1].0, send);
    assert!(matches!(
        &completions[1].1,
        Ok(Reply::Sent(Sent { seq: 12, .. }))
    ));
    assert_eq!(h.session.pending_requests(), 0);
}

#[test]
fn unacknowledged_sends_are_repeated_in_order_with_the_same_id_after_a_reconnect() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    let tickets: Vec<Ticket> = (1..=3).map(|id| h.send(1, id)).collect();
    let create = h
        .session
        .submit(
            h.at(1),
            Request::GroupCreate {
                title: "t".into(),
                members: vec![],
            },
        )
        .unwrap();
    let first = sends(&h.sent());
    assert_eq!(first.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 2, 3]);
    h.frame(
        2,
        SendAck {
            request: first[0].0,
            seq: 1,
            ..SendAck::default()
        },
    );

    h.session.disconnected();
    // The group create may or may not have happened: it is not repeated.
    let lost = h.completions();
    assert_eq!(lost.len(), 2);
    assert_eq!(lost[1], (create, Err(Error::ConnectionLost)));
    // Offline, a new send waits in the outbox behind the others.
    let later = h.send(3, 4);

    h.connect(5, 0);
    let again = sends(&h.sent());
    assert_eq!(again.iter().map(|s| s.1).collect::<Vec<_>>(), [2, 3, 4]);
    for (seq, (request, _)) in again.iter().enumerate() {
        let ack = SendAck {
            request: *request,
            seq: seq as u64 + 2,
            duplicate: seq < 2,
            ..SendAck::default()
        };
        h.frame(6, ack);
    }
    let done: Vec<Ticket> = h
        .completions()
        .into_iter()
        .map(|(ticket, _)| ticket)
        .collect();
    assert_eq!(done, [tickets[1], tickets[2], later]);
}

#[test]
fn requests_answered_rate_limited_are_retried_after_the_delay() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    let ticket = h.send(0, 5);
    let request = h.sent()[0].request().unwrap();
    let mut limited = ErrorFrame::new(request, ErrorCode::RATE_LIMITED, "slow down");
    limited.retry_after_ms = 500;
    h.frame(10, limited);
    assert!(h.completions().is_empty());
    assert_eq!(h.session.poll_timeout(), Some(h.at(510)));
    h.session.handle_timeout(h.at(509));
    assert!(sends(&h.sent()).is_empty());
    h.session.handle_timeout(h.at(510));
    let retry = sends(&h.sent());
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].1, 5, "same client_msg_id");
    h.frame(
        600,
        SendAck {
            request: retry[0].0,
            seq: 3,
            ..SendAck::default()
        },
    );
    assert_eq!(h.completions()[0].0, ticket);
}

#[test]
fn deliveries_are_deduplicated_and_acked_cumulatively() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    h.frame(1, deliver(1, CONV, 1));
    h.frame(1, deliver(2, CONV, 2));
    h.frame(1, deliver(2, CONV, 2)); // same inbox_seq
    h.frame(1, deliver(3, CONV, 2)); // same (conversation, seq) under another inbox entry
    h.frame(1, deliver(4, CONV, 3));
    assert_eq!(Harness::message_seqs(&h.events()), [1, 2, 3]);

    assert!(h.sent().is_empty(), "acks are coalesced");
    assert_eq!(h.session.poll_timeout(), Some(h.at(101)));
    h.session.handle_timeout(h.at(101));
    assert_eq!(h.sent(), [Frame::Ack(Ack { inbox_seq: 4 })]);
    let cursor = h.session.take_cursor().unwrap();
    assert_eq!(cursor.inbox, Some(4));
    assert_eq!(cursor.conversations[CONV], 3);
    assert_eq!(h.session.take_cursor(), None);
}

#[test]
fn a_full_batch_is_acked_at_once() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    for n in 1..=64 {
        h.frame(1, deliver(n, CONV, n));
    }
    assert_eq!(h.sent(), [Frame::Ack(Ack { inbox_seq: 64 })]);
}

#[test]
fn a_reconnect_resumes_after_the_last_processed_inbox_seq() {
    let mut h = Harness::new(Cursor::default());
    let (request, _) = h.connect(0, 0);
    h.frame(0, deliver(1, CONV, 1));
    h.frame(0, deliver(2, CONV, 2));
    h.frame(
        0,
        Synced {
            request,
            inbox_head: 2,
        },
    );
    h.session.disconnected();
    let (_, after) = h.connect(10, 2);
    assert_eq!(after, 2);

    // A restarted process resumes from the stored cursor.
    let mut restarted = Harness::new(h.session.cursor());
    let (request, after) = restarted.connect(0, 9);
    assert_eq!(after, 2);
    // The replay repeats nothing already seen, and continues in order.
    restarted.frame(0, deliver(2, CONV, 2));
    restarted.frame(0, deliver(3, CONV, 3));
    restarted.frame(
        0,
        Synced {
            request,
            inbox_head: 3,
        },
    );
    assert_eq!(Harness::message_seqs(&restarted.events()), [3]);
    assert!(restarted.sent().contains(&Frame::Ack(Ack { inbox_seq: 3 })));
}

#[test]
fn the_heartbeat_pings_when_idle_and_gives_up_on_a_silent_server() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    assert_eq!(h.session.poll_timeout(), Some(h.at(5_000)));
    h.session.handle_timeout(h.at(5_000));
    let [Frame::Ping(ping)] = &h.sent()[..] else {
        panic!("expected a PING");
    };
    h.frame(5_010, Pong { nonce: ping.nonce });
    assert_eq!(h.session.poll_timeout(), Some(h.at(10_000)));
    h.session.handle_timeout(h.at(10_000));
    assert!(matches!(h.sent()[..], [Frame::Ping(_)]));
    // No PONG, nothing at all: dead after two heartbeats of silence.
    h.session.handle_timeout(h.at(25_009));
    assert_eq!(h.session.poll_disconnect(), None);
    h.session.handle_timeout(h.at(25_010));
    assert!(matches!(
        h.session.poll_disconnect(),
        Some(Disconnect::Reconnect(_))
    ));
}

#[test]
fn a_hole_in_a_conversation_is_repaired_from_history_in_order() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    h.frame(1, deliver(1, CONV, 1));
    h.frame(1, deliver(2, CONV, 4));
    h.frame(1, deliver(3, CONV, 5)); // arrives while repairing: held back
    let history = h.sent();
    let [Frame::History(history)] = &history[..] else {
        panic!("expected HISTORY, got {history:?}");
    };
    assert_eq!((history.anchor, history.direction), (1, Direction::FORWARD));
    let events = h.events();
    assert_eq!(Harness::message_seqs(&events), [1]);
    assert!(events.contains(&Event::Gap {
        conversation: Some(CONV.into()),
        from: 2,
        to: 3,
    }));

    let page = |request, seqs: &[u64], more| Page {
        request,
        conversation: CONV.into(),
        more,
        events: seqs.iter().map(|&seq| message(seq)).collect(),
    };
    h.frame(2, page(history.request, &[2, 3], true));
    let next = h.sent();
    let [Frame::History(next)] = &next[..] else {
        panic!("expected the next page, got {next:?}");
    };
    assert_eq!(next.anchor, 3);
    h.frame(3, page(next.request, &[4, 5], false));
    let events = h.events();
    assert_eq!(Harness::message_seqs(&events), [2, 3, 4, 5]);
    assert_eq!(
        events.last(),
        Some(&Event::Repaired {
            conversation: CONV.into(),
            through: 5
        })
    );
    h.frame(4, deliver(4, CONV, 6));
    assert_eq!(Harness::message_seqs(&h.events()), [6]);
}

#[test]
fn a_gap_frame_for_a_conversation_reads_forward_from_the_last_seq_held() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.frame(1, deliver(1, CONV, 7));
    h.sent();
    h.frame(
        2,
        Gap {
            conversation: CONV.into(),
            from: 8,
            to: 9,
        },
    );
    let [Frame::History(history)] = &h.sent()[..] else {
        panic!("expected HISTORY");
    };
    assert_eq!(history.anchor, 7);
    // History that stops short of the gap is reported, not looped on.
    h.frame(
        3,
        Page {
            request: history.request,
            conversation: CONV.into(),
            more: false,
            events: vec![],
        },
    );
    assert!(h.events().iter().any(|event| matches!(
        event,
        Event::RepairFailed {
            error: Error::HistoryIncomplete {
                through: 7,
                until: 9
            },
            ..
        }
    )));
}

#[test]
fn a_pruned_inbox_is_repaired_through_the_conversation_list() {
    let cursor = Cursor {
        inbox: Some(4),
        conversations: [(CONV.to_owned(), 3)].into(),
    };
    let mut h = Harness::new(cursor);
    let (request, after) = h.connect(0, 20);
    assert_eq!(after, 4);
    h.frame(
        0,
        Gap {
            conversation: "".into(),
            from: 5,
            to: 9,
        },
    );
    let [Frame::Conversations(list)] = &h.sent()[..] else {
        panic!("expected CONVERSATIONS");
    };
    h.frame(0, deliver(10, "g/new", 1));
    h.frame(
        0,
        Synced {
            request,
            inbox_head: 10,
        },
    );
    assert_eq!(h.session.cursor().inbox, Some(10));
    let summary = |conversation: &str, last_seq| Summary {
        conversation: conversation.into(),
        kind: ConversationKind::DIRECT,
        last_seq,
        ..Summary::default()
    };
    let reply = ConversationList {
        request: list.request,
        next_cursor: Bytes::new(),
        conversations: vec![summary(CONV, 6), summary("g/new", 1)],
    };
    h.frame(1, reply);
    let frames = h.sent();
    let histories: Vec<_> = frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::History(history) => Some((history.conversation.to_string(), history.anchor)),
            _ => None,
        })
        .collect();
    assert_eq!(
        histories,
        [(CONV.to_owned(), 3)],
        "only what is behind is repaired"
    );
}

#[test]
fn an_inbox_gap_while_live_is_repaired_from_history_not_replayed() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.frame(1, deliver(1, CONV, 1));
    h.sent();
    // The edge dropped inbox entries 2..=5 for a slow reader; 6 fit.
    h.frame(
        2,
        Gap {
            conversation: "".into(),
            from: 2,
            to: 5,
        },
    );
    let frames = h.sent();
    let [Frame::Conversations(list)] = &frames[..] else {
        panic!("expected CONVERSATIONS, got {frames:?}");
    };
    assert!(
        h.session.is_live(),
        "no second RESUME: its replay could overflow again"
    );
    h.frame(2, deliver(6, "g/new", 4));
    assert_eq!(h.session.cursor().inbox, Some(6));
    // g/new was first seen after the hole: its beginning may be in it, so it is held back
    // and read from the start.
    let [Frame::History(history)] = &h.sent()[..] else {
        panic!("expected HISTORY");
    };
    assert_eq!((&*history.conversation, history.anchor), ("g/new", 0));
    let events = h.events();
    assert_eq!(Harness::message_seqs(&events), [1]);
    let summary = Summary {
        conversation: CONV.into(),
        kind: ConversationKind::DIRECT,
        last_seq: 3,
        ..Summary::default()
    };
    let reply = ConversationList {
        request: list.request,
        next_cursor: Bytes::new(),
        conversations: vec![summary],
    };
    h.frame(3, reply);
    let [Frame::History(history)] = &h.sent()[..] else {
        panic!("expected HISTORY");
    };
    assert_eq!((&*history.conversation, history.anchor), (CONV, 1));
}

#[test]
fn an_inbox_jump_without_a_gap_frame_is_repaired_the_same_way() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.frame(1, deliver(1, CONV, 1));
    h.frame(1, deliver(4, CONV, 4));
    assert!(h.events().contains(&Event::Gap {
        conversation: None,
        from: 2,
        to: 3
    }));
    let frames = h.sent();
    assert!(
        frames
            .iter()
            .any(|frame| matches!(frame, Frame::Conversations(_)))
    );
    assert!(
        frames
            .iter()
            .any(|frame| matches!(frame, Frame::History(h) if h.anchor == 1))
    );
}

#[test]
fn goaway_holds_new_requests_until_the_next_connection() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    h.frame(
        1,
        Goaway {
            code: ErrorCode::SHUTTING_DOWN,
            reconnect_ms: 250,
            message: "".into(),
        },
    );
    assert!(
        h.events()
            .iter()
            .any(|event| matches!(event, Event::Connection(ConnectionState::GoingAway { .. })))
    );
    h.send(2, 9);
    assert!(h.sent().is_empty());
    assert_eq!(
        h.session.take_reconnect_window(),
        Some(Duration::from_millis(250))
    );
    h.session.handle_timeout(h.at(5_001));
    assert!(matches!(
        h.session.poll_disconnect(),
        Some(Disconnect::Reconnect(_))
    ));
    h.session.disconnected();
    h.connect(6_000, 0);
    assert_eq!(sends(&h.sent()).len(), 1);
}

#[test]
fn a_full_outbox_pushes_back_and_bad_sends_fail_at_once() {
    let mut h = Harness::new(Cursor::default());
    h.session.config.max_pending = 2;
    h.send(0, 1);
    h.send(0, 2);
    assert!(!h.session.can_submit());
    let mut third = OutgoingMessage::text(CONV, "x");
    third.client_msg_id = 3;
    assert!(h.session.submit(h.at(0), Request::Send(third)).is_err());

    let mut h = Harness::new(Cursor::default());
    let bad = h.send(0, 0);
    assert!(matches!(&h.completions()[..], [(t, Err(Error::InvalidArgument(_)))] if *t == bad));
    h.session.close(None);
    let late = h.send(0, 1);
    assert_eq!(h.completions(), [(late, Err(Error::Closed))]);
}

#[test]
fn at_most_max_in_flight_requests_are_on_the_wire_in_order() {
    let mut h = Harness::new(Cursor::default());
    h.session.config.max_in_flight = 2;
    h.live(0, 0);
    h.sent();
    for id in 1..=4 {
        h.send(0, id);
    }
    let first = sends(&h.sent());
    assert_eq!(first.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 2]);
    h.frame(
        1,
        SendAck {
            request: first[0].0,
            seq: 1,
            ..SendAck::default()
        },
    );
    assert_eq!(
        sends(&h.sent()).iter().map(|s| s.1).collect::<Vec<_>>(),
        [3]
    );
}

#[test]
fn rate_limiting_pauses_every_request_without_using_up_retries() {
    let mut h = Harness::new(Cursor::default());
    h.session.config.max_retries = 0;
    h.live(0, 0);
    h.sent();
    let tickets: Vec<Ticket> = (1..=2).map(|id| h.send(0, id)).collect();
    let first = sends(&h.sent());
    let mut limited = ErrorFrame::new(first[0].0, ErrorCode::RATE_LIMITED, "slow down");
    limited.retry_after_ms = 40;
    h.frame(1, limited);
    h.send(2, 3); // queued behind the pause
    assert!(h.sent().is_empty());
    assert_eq!(h.session.poll_timeout(), Some(h.at(41)));
    h.session.handle_timeout(h.at(41));
    let retried = sends(&h.sent());
    assert_eq!(retried.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 3]);
    h.frame(
        42,
        SendAck {
            request: retried[0].0,
            seq: 1,
            ..SendAck::default()
        },
    );
    assert_eq!(
        h.completions()[0],
        (
            tickets[0],
            Ok(Reply::Sent(Sent {
                seq: 1,
                timestamp: 0,
                duplicate: false
            }))
        )
    );
}

#[test]
fn a_clean_close_saves_the_cursor_even_before_its_ack_left() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.frame(1, deliver(1, CONV, 1));
    h.session.take_cursor();
    h.session.close(None);
    assert_eq!(
        h.session.take_cursor().map(|cursor| cursor.inbox),
        Some(Some(1))
    );
    assert!(h.session.is_closed());
}

#[test]
fn a_ready_outside_what_hello_offered_closes_the_connection() {
    // Another version: close for good, saying why ([NWP-5.1-3]).
    let mut h = Harness::new(Cursor::default());
    h.session.connected(h.at(0));
    h.sent();
    let ready = Ready {
        version: 2,
        max_frame_size: 65_536,
        ..Ready::default()
    };
    h.frame(0, ready);
    let sent = h.sent();
    assert!(matches!(&sent[..], [Frame::Error(e)] if e.code == ErrorCode::PROTOCOL_VIOLATION));
    assert!(matches!(
        h.session.poll_disconnect(),
        Some(Disconnect::Fatal(_))
    ));

    // A max_frame_size below 4,096 is a violation ([NWP-3-4]).
    let mut h = Harness::new(Cursor::default());
    h.session.connected(h.at(0));
    h.sent();
    let ready = Ready {
        version: 1,
        max_frame_size: 1_024,
        ..Ready::default()
    };
    h.frame(0, ready);
    assert!(matches!(&h.sent()[..], [Frame::Error(_)]));
    assert!(matches!(
        h.session.poll_disconnect(),
        Some(Disconnect::Reconnect(_))
    ));
}

#[test]
fn frames_of_the_wrong_side_are_violations_and_unknown_ones_are_skipped() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    let unknown = natter_codec::frame::UnknownFrame {
        frame_type: natter_codec::FrameType(0x7f),
        payload: Bytes::from_static(b"\x01\x02"),
    };
    h.frame(1, Frame::Unknown(unknown));
    assert!(h.sent().is_empty() && h.session.poll_disconnect().is_none());
    // A client frame (and a second READY) from the server ([NWP-5.3-4]).
    h.frame(2, natter_codec::frame::Ack { inbox_seq: 1 });
    assert!(matches!(&h.sent()[..], [Frame::Error(e)] if e.code == ErrorCode::PROTOCOL_VIOLATION));
    assert!(matches!(
        h.session.poll_disconnect(),
        Some(Disconnect::Reconnect(_))
    ));
}

#[test]
fn typing_goes_out_at_most_once_a_second_and_the_last_state_wins() {
    let mut h = Harness::new(Cursor::default());
    h.live(0, 0);
    h.sent();
    let typing = |frames: Vec<Frame>| -> Vec<bool> {
        frames
            .into_iter()
            .filter_map(|frame| match frame {
                Frame::Typing(typing) => Some(typing.active),
                _ => None,
            })
            .collect()
    };
    for ms in (0..1_500).step_by(100) {
        h.session.typing(h.at(ms), CONV, true);
        h.session.handle_timeout(h.at(ms));
    }
    h.session.typing(h.at(1_500), CONV, false);
    assert_eq!(
        typing(h.sent()),
        [true, true],
        "at 0 and 1,000 ms ([NWP-6.2.7-1])"
    );
    assert_eq!(h.session.poll_timeout(), Some(h.at(2_000)));
    h.session.handle_timeout(h.at(2_000));
    assert_eq!(
        typing(h.sent()),
        [false],
        "the stop goes out when its second comes"
    );
    h.session.handle_timeout(h.at(3_000));
    assert!(typing(h.sent()).is_empty());
}

#[test]
fn a_request_longer_than_the_server_accepts_fails_without_being_written() {
    let mut h = Harness::new(Cursor::default());
    h.session.connected(h.at(0));
    h.sent();
    let ready = Ready {
        version: 1,
        max_frame_size: 4_096,
        heartbeat_ms: 10_000,
        ..Ready::default()
    };
    h.frame(0, ready);
    h.sent();
    let big = OutgoingMessage::text(CONV, &"x".repeat(5_000));
    let ticket = h.session.submit(h.at(1), Request::Send(big)).unwrap();
    let small = h.send(1, 7);
    assert_eq!(
        sends(&h.sent()).len(),
        1,
        "only the small one ([NWP-5.1-5])"
    );
    let completions = h.completions();
    assert!(matches!(
        &completions[..],
        [(t, Err(Error::InvalidArgument(_)))] if *t == ticket
    ));
    assert_ne!(ticket, small);
}
