//! One test per broker rule and per bad input, on the deterministic cluster harness.

// Test code: a panic is a failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use bytes::Bytes;
use harness::Cluster;
use natter_broker::storage::Storage;
use natter_codec::frame::{
    Ack, Conversations, GroupCreate, GroupGet, GroupUpdate, History, Mark, PresenceSubscribe,
    Resume, Send, SessionOpen, Typing,
};
use natter_codec::types::{Direction, EventFlags, EventKind, GroupOp, Marker, Role, Status};
use natter_codec::{ErrorCode, Frame, ids};

fn send(request: u64, conversation: &str, client_msg_id: u64, body: &'static str) -> Send {
    Send {
        request,
        conversation: conversation.into(),
        client_msg_id,
        kind: EventKind::MESSAGE,
        target: 0,
        content_type: "".into(),
        body: Bytes::from_static(body.as_bytes()),
    }
}

fn resume(c: &mut Cluster, session: u64, after: u64) -> Vec<Frame> {
    c.call(
        session,
        Resume {
            request: 999,
            after,
        },
    )
}

fn online(c: &mut Cluster, user: &str, device: &str) -> u64 {
    let session = c.connect(user, device);
    c.settle();
    let opened = c.take(session);
    assert!(
        matches!(opened.as_slice(), [Frame::Synced(s)] if s.request == 0),
        "{opened:?}"
    );
    let frames = resume(c, session, 0);
    assert!(
        matches!(frames.last(), Some(Frame::Synced(_))),
        "{frames:?}"
    );
    session
}

/// A HISTORY page for `session`: its seqs and whether more lie beyond it.
fn history_page(
    c: &mut Cluster,
    session: u64,
    conversation: &str,
    anchor: u64,
    direction: Direction,
) -> (Vec<u64>, bool) {
    let history = History {
        request: 9,
        conversation: conversation.into(),
        anchor,
        direction,
        limit: 100,
    };
    match c.call(session, history).pop() {
        Some(Frame::HistoryPage(p)) => (p.events.iter().map(|e| e.seq).collect(), p.more),
        other => panic!("{other:?}"),
    }
}

fn error_code(frames: &[Frame]) -> Option<ErrorCode> {
    frames.iter().find_map(|f| match f {
        Frame::Error(e) => Some(e.code),
        _ => None,
    })
}

fn acks(frames: &[Frame]) -> Vec<(u64, bool)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::SendAck(a) => Some((a.seq, a.duplicate)),
            _ => None,
        })
        .collect()
}

fn delivered(frames: &[Frame]) -> Vec<(u64, u64, EventKind)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Deliver(d) => Some((d.inbox_seq, d.event.seq, d.event.kind)),
            _ => None,
        })
        .collect()
}

fn create_group(c: &mut Cluster, session: u64, members: &[&str]) -> String {
    let frames = c.call(
        session,
        GroupCreate {
            request: 50,
            title: "team".into(),
            members: members.iter().map(|m| (*m).into()).collect(),
        },
    );
    frames
        .iter()
        .find_map(|f| match f {
            Frame::GroupInfo(info) => Some(info.conversation.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{frames:?}"))
}

#[test]
fn direct_messages_get_gapless_seqs_and_reach_every_device() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let alice_laptop = online(&mut c, "alice", "laptop");
    let bob = online(&mut c, "bob", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    for i in 1..=3 {
        c.request(alice, send(i, &conv, i, "hi"));
    }
    c.settle();
    let frames = c.take(alice);
    assert_eq!(acks(&frames), [(1, false), (2, false), (3, false)]);
    let seqs = |frames: &[Frame]| delivered(frames).iter().map(|d| d.1).collect::<Vec<_>>();
    assert_eq!(seqs(&frames), [1, 2, 3], "the sender's own device");
    assert_eq!(seqs(&c.take(alice_laptop)), [1, 2, 3]);
    let bob_frames = c.take(bob);
    assert_eq!(
        delivered(&bob_frames)
            .iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn a_retried_send_returns_the_original_seq_and_a_changed_one_is_refused() {
    let mut c = Cluster::new(1, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    assert_eq!(acks(&c.call(alice, send(1, &conv, 7, "hi"))), [(1, false)]);
    assert_eq!(acks(&c.call(alice, send(2, &conv, 7, "hi"))), [(1, true)]);
    let frames = c.call(alice, send(3, &conv, 7, "changed"));
    assert_eq!(error_code(&frames), Some(ErrorCode::DUPLICATE_MISMATCH));
    assert_eq!(
        acks(&c.call(alice, send(4, &conv, 8, "next"))),
        [(2, false)]
    );
}

#[test]
fn bad_sends_get_their_error_code_and_change_nothing() {
    let mut c = Cluster::new(1, |config| config.limits.body = 8);
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    let cases: Vec<(Send, ErrorCode)> = vec![
        (send(1, "x/nope", 1, "a"), ErrorCode::INVALID_REQUEST),
        // [NWP-8.2-1]: not a member and no such conversation look alike.
        (send(2, "d/bob/carol", 1, "a"), ErrorCode::NOT_FOUND),
        (send(3, "g/nosuchgroup", 1, "a"), ErrorCode::NOT_FOUND),
        (send(3, "d/alice/Bob", 1, "a"), ErrorCode::INVALID_REQUEST),
        (
            send(4, &conv, 1, "much too long"),
            ErrorCode::PAYLOAD_TOO_LARGE,
        ),
        (send(5, &conv, 0, "a"), ErrorCode::INVALID_REQUEST),
        (
            Send {
                kind: EventKind::EDIT,
                target: 9,
                ..send(6, &conv, 2, "a")
            },
            ErrorCode::NOT_FOUND,
        ),
        (
            Send {
                kind: EventKind::MEMBER_ADDED,
                ..send(7, &conv, 3, "a")
            },
            ErrorCode::INVALID_REQUEST,
        ),
        // [NWP-6.2.1-2]: an EDIT or DELETE names a target.
        (
            Send {
                kind: EventKind::DELETE,
                target: 0,
                ..send(8, &conv, 4, "")
            },
            ErrorCode::INVALID_REQUEST,
        ),
        // [NWP-2.2-7]
        (
            Send {
                content_type: "text/plain\0".into(),
                ..send(9, &conv, 5, "a")
            },
            ErrorCode::INVALID_REQUEST,
        ),
    ];
    for (request, code) in cases {
        let frames = c.call(alice, request.clone());
        assert_eq!(error_code(&frames), Some(code), "{request:?}");
        assert!(acks(&frames).is_empty());
    }
    assert_eq!(acks(&c.call(alice, send(8, &conv, 4, "ok"))), [(1, false)]);
}

#[test]
fn link_only_and_server_frames_inside_routed_are_refused() {
    let mut c = Cluster::new(1, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let link_frame: Frame = SessionOpen {
        session: 1,
        user: "x".into(),
        device: "y".into(),
        lease_ms: 1,
    }
    .into();
    c.request_to(alice, link_frame, Some(0));
    c.settle();
    assert_eq!(
        error_code(&c.take(alice)),
        Some(ErrorCode::PROTOCOL_VIOLATION)
    );
    let server_frame: Frame = natter_codec::frame::Done { request: 4 }.into();
    c.request_to(alice, server_frame, Some(0));
    c.settle();
    assert_eq!(
        error_code(&c.take(alice)),
        Some(ErrorCode::PROTOCOL_VIOLATION)
    );
    let conv = ids::direct_conversation("alice", "bob");
    assert_eq!(
        acks(&c.call(alice, send(1, &conv, 1, "still fine"))),
        [(1, false)]
    );
}

#[test]
fn requests_for_keys_of_another_broker_get_wrong_owner() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    let wrong = (c.owner(&conv) + 1) % 3;
    c.request_to(alice, send(1, &conv, 1, "a").into(), Some(wrong));
    c.settle();
    assert_eq!(error_code(&c.take(alice)), Some(ErrorCode::WRONG_OWNER));
    let not_home = (c.home("alice") + 1) % 3;
    c.request_to(
        alice,
        Resume {
            request: 2,
            after: 0,
        }
        .into(),
        Some(not_home),
    );
    c.settle();
    assert_eq!(error_code(&c.take(alice)), Some(ErrorCode::WRONG_OWNER));
}

#[test]
fn edit_and_delete_are_events_and_delete_leaves_a_tombstone() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let bob = online(&mut c, "bob", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    c.call(alice, send(1, &conv, 1, "one"));
    c.call(alice, send(2, &conv, 2, "two"));
    let edit = Send {
        kind: EventKind::EDIT,
        target: 1,
        ..send(3, &conv, 3, "uno")
    };
    assert_eq!(acks(&c.call(alice, edit)), [(3, false)]);
    let by_bob = Send {
        kind: EventKind::DELETE,
        target: 2,
        ..send(4, &conv, 1, "")
    };
    assert_eq!(error_code(&c.call(bob, by_bob)), Some(ErrorCode::FORBIDDEN));
    let delete = Send {
        kind: EventKind::DELETE,
        target: 2,
        ..send(5, &conv, 4, "")
    };
    assert_eq!(acks(&c.call(alice, delete)), [(4, false)]);
    let history = History {
        request: 6,
        conversation: conv.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 10,
    };
    let frames = c.call(bob, history);
    let Some(Frame::HistoryPage(page)) = frames.last() else {
        panic!("{frames:?}")
    };
    let events: Vec<_> = page
        .events
        .iter()
        .map(|e| (e.seq, e.kind, e.flags, e.body.clone()))
        .collect();
    assert_eq!(
        events,
        [
            (
                1,
                EventKind::MESSAGE,
                EventFlags::EDITED,
                Bytes::from("one")
            ),
            (2, EventKind::MESSAGE, EventFlags::DELETED, Bytes::new()),
            (3, EventKind::EDIT, EventFlags::NONE, Bytes::from("uno")),
            (4, EventKind::DELETE, EventFlags::NONE, Bytes::new()),
        ]
    );
    // The deleted message's retry still gets its original seq.
    assert_eq!(acks(&c.call(alice, send(7, &conv, 2, "two"))), [(2, true)]);
}

#[test]
fn history_pages_both_ways_for_members_only() {
    let mut c = Cluster::new(1, |config| config.limits.history_page = 3);
    let alice = online(&mut c, "alice", "phone");
    let carol = online(&mut c, "carol", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    for i in 1..=5 {
        c.call(alice, send(i, &conv, i, "m"));
    }
    let mut page = |anchor, direction| history_page(&mut c, alice, &conv, anchor, direction);
    assert_eq!(page(0, Direction::BACKWARD), (vec![3, 4, 5], true));
    assert_eq!(page(3, Direction::BACKWARD), (vec![1, 2], false));
    assert_eq!(page(0, Direction::FORWARD), (vec![1, 2, 3], true));
    assert_eq!(page(3, Direction::FORWARD), (vec![4, 5], false));
    let foreign = History {
        request: 1,
        conversation: conv.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 1,
    };
    assert_eq!(
        error_code(&c.call(carol, foreign)),
        Some(ErrorCode::NOT_FOUND)
    );
}

#[test]
fn history_pages_stop_at_their_byte_budget_but_hold_at_least_one_event() {
    let mut c = Cluster::new(1, |config| config.limits.history_page_bytes = 1_000);
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    let body: &'static str = "x".repeat(400).leak();
    for i in 1..=5 {
        c.call(alice, send(i, &conv, i, body));
    }
    c.call(alice, send(6, &conv, 6, "y".repeat(1_500).leak()));
    let mut page = |anchor, direction| history_page(&mut c, alice, &conv, anchor, direction);
    // The newest event alone is over budget: it still comes, alone.
    assert_eq!(page(0, Direction::BACKWARD), (vec![6], true));
    assert_eq!(page(6, Direction::BACKWARD), (vec![4, 5], true));
    assert_eq!(page(0, Direction::FORWARD), (vec![1, 2], true));
    assert_eq!(page(4, Direction::FORWARD), (vec![5], true));
}

#[test]
fn resume_replays_missed_entries_then_streams_live() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let conv_b = ids::direct_conversation("alice", "bob");
    let conv_c = ids::direct_conversation("alice", "carol");
    c.call(alice, send(1, &conv_b, 1, "1"));
    c.call(alice, send(2, &conv_c, 2, "2"));
    c.call(alice, send(3, &conv_b, 3, "3"));
    let bob = c.connect("bob", "tablet");
    c.request(alice, send(4, &conv_b, 4, "4"));
    c.settle();
    assert!(
        delivered(&c.take(bob)).is_empty(),
        "no DELIVER before RESUME"
    );
    let frames = resume(&mut c, bob, 1);
    // bob's inbox holds conv_b seqs 1, 2, 3 at inbox_seq 1, 2, 3; he acked 1.
    assert_eq!(
        delivered(&frames)
            .iter()
            .map(|d| (d.0, d.1))
            .collect::<Vec<_>>(),
        [(2, 2), (3, 3)]
    );
    assert!(matches!(frames.last(), Some(Frame::Synced(s)) if s.inbox_head == 3));
    c.request(alice, send(5, &conv_b, 5, "5"));
    c.settle();
    assert_eq!(delivered(&c.take(bob)), [(4, 4, EventKind::MESSAGE)]);
}

#[test]
fn acks_derive_delivered_receipts_and_read_marks_sync_devices() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let bob = online(&mut c, "bob", "phone");
    let bob_laptop = online(&mut c, "bob", "laptop");
    let conv = ids::direct_conversation("alice", "bob");
    c.call(alice, send(1, &conv, 1, "a"));
    c.call(alice, send(2, &conv, 2, "b"));
    c.take(alice);
    c.request(bob, Ack { inbox_seq: 2 });
    c.settle();
    c.take(bob_laptop);
    let receipts = |frames: Vec<Frame>| {
        frames
            .into_iter()
            .filter_map(|f| match f {
                Frame::Receipt(r) => Some((r.user.to_string(), r.delivered, r.read)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(receipts(c.take(alice)), [("bob".to_string(), 2, 0)]);
    let mark = Mark {
        request: 3,
        conversation: conv.as_str().into(),
        marker: Marker::READ,
        seq: 2,
    };
    let frames = c.call(bob, mark.clone());
    assert!(frames.iter().any(|f| matches!(f, Frame::Done(_))));
    assert_eq!(receipts(c.take(bob_laptop)), [("bob".to_string(), 2, 2)]);
    assert_eq!(receipts(c.take(alice)), [("bob".to_string(), 2, 2)]);
    let lower = Mark {
        seq: 1,
        request: 4,
        ..mark
    };
    c.call(bob, lower);
    assert!(
        receipts(c.take(alice)).is_empty(),
        "a lower mark changes nothing"
    );
    let list = c.call(
        bob,
        Conversations {
            request: 5,
            cursor: Bytes::new(),
            limit: 10,
        },
    );
    let Some(Frame::ConversationList(list)) = list.last() else {
        panic!("{list:?}")
    };
    assert_eq!(list.conversations.len(), 1);
    assert_eq!(
        (
            list.conversations[0].last_seq,
            list.conversations[0].read_seq,
            list.conversations[0].unread
        ),
        (2, 2, 0)
    );
}

#[test]
fn groups_follow_role_rules_and_fan_out_membership_events() {
    let mut c = Cluster::new(3, |_| {});
    let owner = online(&mut c, "olga", "phone");
    let member = online(&mut c, "mia", "phone");
    let newcomer = online(&mut c, "nick", "phone");
    let group = create_group(&mut c, owner, &["mia"]);
    let kinds = |frames: &[Frame]| delivered(frames).iter().map(|d| d.2).collect::<Vec<_>>();
    assert_eq!(
        kinds(&c.take(member)),
        [
            EventKind::GROUP_CREATED,
            EventKind::MEMBER_ADDED,
            EventKind::MEMBER_ADDED
        ]
    );
    let update = |request, op, user: &str, role| GroupUpdate {
        request,
        conversation: group.as_str().into(),
        op,
        user: user.into(),
        role,
    };
    let frames = c.call(member, update(1, GroupOp::ADD, "nick", Role::MEMBER));
    assert_eq!(error_code(&frames), Some(ErrorCode::FORBIDDEN));
    assert_eq!(
        acks(&c.call(owner, update(2, GroupOp::ADD, "nick", Role::MEMBER))),
        [(4, false)]
    );
    assert_eq!(
        error_code(&c.call(owner, update(3, GroupOp::ADD, "nick", Role::MEMBER))),
        Some(ErrorCode::CONFLICT)
    );
    assert_eq!(kinds(&c.take(newcomer)), [EventKind::MEMBER_ADDED]);
    assert_eq!(
        error_code(&c.call(member, update(4, GroupOp::REMOVE, "olga", Role::MEMBER))),
        Some(ErrorCode::FORBIDDEN)
    );
    assert_eq!(
        error_code(&c.call(member, update(5, GroupOp::SET_ROLE, "nick", Role::ADMIN))),
        Some(ErrorCode::FORBIDDEN)
    );
    assert_eq!(
        acks(&c.call(owner, update(6, GroupOp::SET_ROLE, "mia", Role::ADMIN))),
        [(5, false)]
    );
    assert_eq!(
        acks(&c.call(member, update(7, GroupOp::REMOVE, "nick", Role::MEMBER))),
        [(6, false)]
    );
    assert!(
        kinds(&c.take(newcomer)).ends_with(&[EventKind::MEMBER_REMOVED]),
        "the removed member hears it"
    );
    assert_eq!(
        error_code(&c.call(newcomer, send(8, &group, 1, "x"))),
        Some(ErrorCode::NOT_FOUND),
        "a removed member is told what anyone outside is told (NWP-8.2-1)"
    );
    let frames = c.call(
        owner,
        GroupGet {
            request: 9,
            conversation: group.as_str().into(),
        },
    );
    let Some(Frame::GroupInfo(info)) = frames.iter().find(|f| matches!(f, Frame::GroupInfo(_)))
    else {
        panic!("{frames:?}")
    };
    let mut members: Vec<_> = info
        .members
        .iter()
        .map(|m| (m.user.to_string(), m.role))
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            ("mia".to_string(), Role::ADMIN),
            ("olga".to_string(), Role::OWNER)
        ]
    );
}

#[test]
fn too_many_members_is_refused() {
    let mut c = Cluster::new(1, |config| config.limits.group_members = 3);
    let owner = online(&mut c, "olga", "phone");
    let create = GroupCreate {
        request: 1,
        title: "big".into(),
        members: vec!["a".into(), "b".into(), "c".into()],
    };
    assert_eq!(
        error_code(&c.call(owner, create)),
        Some(ErrorCode::LIMIT_EXCEEDED)
    );
    let group = create_group(&mut c, owner, &["a", "b"]);
    let add = GroupUpdate {
        request: 2,
        conversation: group.as_str().into(),
        op: GroupOp::ADD,
        user: "c".into(),
        role: Role::MEMBER,
    };
    assert_eq!(
        error_code(&c.call(owner, add)),
        Some(ErrorCode::LIMIT_EXCEEDED)
    );
}

#[test]
fn large_groups_fan_out_on_read() {
    let mut c = Cluster::new(3, |config| config.limits.fanout_threshold = 2);
    let owner = online(&mut c, "olga", "phone");
    let reader = online(&mut c, "mia", "phone");
    let group = create_group(&mut c, owner, &["mia", "nick"]);
    c.take(reader);
    c.call(owner, send(1, &group, 1, "hello"));
    let frames = c.take(reader);
    assert_eq!(
        delivered(&frames),
        [(0, 5, EventKind::MESSAGE)],
        "live push, no inbox entry"
    );
    let late = c.connect("nick", "phone");
    let frames = resume(&mut c, late, 0);
    assert_eq!(
        delivered(&frames),
        [],
        "fan-out on read: nothing in the inbox"
    );
    // The conversation list still shows the group with its newest seq and the unread message.
    let list = Conversations {
        request: 7,
        cursor: Bytes::new(),
        limit: 10,
    };
    let summary = match c.call(late, list).pop() {
        Some(Frame::ConversationList(list)) => list
            .conversations
            .into_iter()
            .find(|s| *s.conversation == *group)
            .expect("the group is listed"),
        other => panic!("{other:?}"),
    };
    assert_eq!((summary.last_seq, summary.unread), (5, 1));
}

#[test]
fn pruned_inboxes_answer_with_a_gap() {
    let mut c = Cluster::new(1, |config| config.limits.retention_ms = 2_000);
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    for i in 1..=3 {
        c.call(alice, send(i, &conv, i, "m"));
    }
    // The entries age past the window; the phone, seen recently, has acked only two.
    c.advance(5_000);
    c.request(alice, Ack { inbox_seq: 2 });
    c.settle();
    c.advance(1_000);
    c.settle();
    let late = c.connect("alice", "old-tablet");
    let frames = resume(&mut c, late, 0);
    let gap = frames.iter().find_map(|f| match f {
        Frame::Gap(g) => Some((g.conversation.to_string(), g.from, g.to)),
        _ => None,
    });
    assert_eq!(gap, Some((String::new(), 1, 2)), "{frames:?}");
    assert_eq!(
        delivered(&frames).iter().map(|d| d.0).collect::<Vec<_>>(),
        [3]
    );
}

fn subscribe(request: u64, conversation: &str, ttl_ms: u64) -> PresenceSubscribe {
    PresenceSubscribe {
        request,
        conversation: conversation.into(),
        ttl_ms,
    }
}

fn statuses(frames: &[Frame]) -> Vec<(String, Status)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Presence(p) => Some((p.user.to_string(), p.status)),
            _ => None,
        })
        .collect()
}

#[test]
fn presence_is_visible_to_members_and_follows_transitions() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    // [NWP-7.9-4]: bob has not written to alice yet, so his presence is not hers to see.
    let frames = c.call(alice, subscribe(1, &conv, 60_000));
    assert_eq!(statuses(&frames), [("bob".to_string(), Status::UNKNOWN)]);
    assert!(frames.iter().any(|f| matches!(f, Frame::Done(_))));
    let bob = online(&mut c, "bob", "phone");
    assert!(
        statuses(&c.take(alice)).is_empty(),
        "nothing about bob leaks"
    );
    // bob's first message makes him visible to alice's subscription at once.
    c.call(bob, send(1, &conv, 1, "hi alice"));
    c.settle();
    assert_eq!(
        statuses(&c.take(alice)),
        [("bob".to_string(), Status::ONLINE)]
    );
    let frames = c.call(alice, subscribe(2, &conv, 60_000));
    assert_eq!(statuses(&frames), [("bob".to_string(), Status::ONLINE)]);
    c.disconnect(bob);
    c.settle();
    assert_eq!(
        statuses(&c.take(alice)),
        [("bob".to_string(), Status::OFFLINE)]
    );
    let carol = online(&mut c, "carol", "phone");
    let spy = subscribe(3, &conv, 60_000);
    assert_eq!(error_code(&c.call(carol, spy)), Some(ErrorCode::NOT_FOUND));
}

#[test]
fn a_user_who_never_wrote_looks_like_one_who_does_not_exist() {
    let mut c = Cluster::new(3, |_| {});
    let mallory = online(&mut c, "mallory", "phone");
    let _alice = online(&mut c, "alice", "phone");
    let real = c.call(mallory, subscribe(1, "d/alice/mallory", 60_000));
    let ghost = c.call(mallory, subscribe(2, "d/mallory/nobody", 60_000));
    assert_eq!(statuses(&real), [("alice".to_string(), Status::UNKNOWN)]);
    assert_eq!(statuses(&ghost), [("nobody".to_string(), Status::UNKNOWN)]);
    for frames in [&real, &ghost] {
        let presence = frames.iter().find_map(|f| match f {
            Frame::Presence(p) => Some(p.last_seen),
            _ => None,
        });
        assert_eq!(presence, Some(0));
    }
}

#[test]
fn an_expired_interest_hears_nothing_even_before_it_is_swept() {
    let mut c = Cluster::new(1, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let bob = online(&mut c, "bob", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    c.call(bob, send(1, &conv, 1, "hi"));
    c.take(alice);
    // A tick sweeps expired interests every second: line one up, then let the interest
    // lapse before the next.
    c.advance(1_000);
    c.advance(1_000);
    c.call(alice, subscribe(2, &conv, 500));
    c.take(alice);
    c.advance(600);
    c.disconnect(bob);
    c.settle();
    assert!(statuses(&c.take(alice)).is_empty());
}

#[test]
fn interest_ends_with_the_membership_that_allowed_it() {
    let mut c = Cluster::new(3, |_| {});
    let owner = online(&mut c, "olga", "phone");
    let frames = c.call(
        owner,
        GroupCreate {
            request: 1,
            title: "t".into(),
            members: vec!["pete".into(), "quin".into()],
        },
    );
    let group = frames
        .iter()
        .find_map(|f| match f {
            Frame::GroupInfo(info) => Some(info.conversation.to_string()),
            _ => None,
        })
        .unwrap();
    let pete = online(&mut c, "pete", "phone");
    let quin = online(&mut c, "quin", "phone");
    c.call(pete, send(1, &group, 1, "hi"));
    c.call(quin, send(2, &group, 1, "hi"));
    c.call(owner, send(3, &group, 1, "hi"));
    // quin watches pete, then quin is removed from the group.
    let frames = c.call(quin, subscribe(4, &group, 60_000));
    assert!(statuses(&frames).contains(&("pete".to_string(), Status::ONLINE)));
    let remove = GroupUpdate {
        request: 5,
        conversation: group.as_str().into(),
        op: GroupOp::REMOVE,
        user: "quin".into(),
        role: Role::MEMBER,
    };
    assert_eq!(acks(&c.call(owner, remove)).len(), 1);
    c.take(quin);
    c.disconnect(pete);
    c.settle();
    assert!(
        statuses(&c.take(quin)).is_empty(),
        "a removed member hears no more presence (NWP-7.9-5)"
    );
}

#[test]
fn typing_is_relayed_to_the_other_members_and_never_stored() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let bob = online(&mut c, "bob", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    let owner = c.owner(&conv);
    let commits_before = c.nodes[owner].storage.commit_count();
    c.request(
        alice,
        Typing {
            conversation: conv.as_str().into(),
            active: true,
        },
    );
    c.settle();
    let frames = c.take(bob);
    assert!(matches!(frames.as_slice(), [Frame::TypingUpdate(t)] if t.user == "alice" && t.active));
    assert!(c.take(alice).is_empty());
    assert_eq!(c.nodes[owner].storage.commit_count(), commits_before);
    // [NWP-6.2.7-2]: TYPING has no answer, so a non-member's is dropped without one.
    let carol = online(&mut c, "carol", "phone");
    c.request(
        carol,
        Typing {
            conversation: conv.as_str().into(),
            active: true,
        },
    );
    c.settle();
    assert!(c.take(carol).is_empty());
    assert!(c.take(bob).is_empty());
}

#[test]
fn membership_events_name_the_actor_but_no_device() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let group = create_group(&mut c, alice, &["bob"]);
    let page = c.call(
        alice,
        History {
            request: 9,
            conversation: group.as_str().into(),
            anchor: 0,
            direction: Direction::FORWARD,
            limit: 10,
        },
    );
    let events = page
        .iter()
        .find_map(|f| match f {
            Frame::HistoryPage(page) => Some(page.events.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(events.len(), 3, "GROUP_CREATED and two MEMBER_ADDED");
    for event in events {
        // [NWP-4.1-3]
        assert_eq!(
            (
                event.sender.as_ref(),
                event.device.as_ref(),
                event.client_msg_id
            ),
            ("alice", "", 0),
            "{event:?}"
        );
    }
}

#[test]
fn offline_users_get_a_coalesced_webhook() {
    let mut c = Cluster::new(1, |config| {
        config.webhook_url = Some("http://hooks/x".into())
    });
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    c.call(alice, send(1, &conv, 1, "a"));
    c.call(alice, send(2, &conv, 2, "b"));
    c.advance(1_000);
    c.settle();
    assert_eq!(c.webhooks.len(), 1, "{:?}", c.webhooks);
    let body: serde_json::Value = serde_json::from_str(&c.webhooks[0]).unwrap();
    assert_eq!(
        (body["user"].as_str(), body["count"].as_u64()),
        (Some("bob"), Some(2))
    );
}

#[test]
fn a_corrupt_record_fails_only_its_own_request() {
    let mut c = Cluster::new(1, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    let other = ids::direct_conversation("alice", "carol");
    c.call(alice, send(1, &conv, 1, "a"));
    c.call(alice, send(2, &other, 2, "b"));
    c.take(alice);
    let storage = c.nodes[0].storage.clone();
    let mut corrupted = 0;
    let keys: Vec<_> = storage
        .range(&[0x02], &[0x03], false, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for key in keys
        .iter()
        .filter(|k| k.windows(conv.len()).any(|w| w == conv.as_bytes()))
    {
        corrupted += usize::from(storage.corrupt(key));
    }
    assert_eq!(corrupted, 1);
    let history = History {
        request: 3,
        conversation: conv.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 10,
    };
    assert_eq!(
        error_code(&c.call(alice, history.clone())),
        Some(ErrorCode::INTERNAL_ERROR)
    );
    let fine = History {
        conversation: other.as_str().into(),
        ..history
    };
    assert!(matches!(
        c.call(alice, fine).last(),
        Some(Frame::HistoryPage(_))
    ));
}

#[test]
fn only_a_users_home_broker_may_mark_on_its_behalf() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    c.call(alice, send(1, &conv, 1, "a"));
    c.take(alice);
    let owner = c.owner(&conv);
    let home = c.home("bob");
    let mark = |seq| -> Frame {
        let mark: Frame = Mark {
            request: 0,
            conversation: conv.as_str().into(),
            marker: Marker::DELIVERED,
            seq,
        }
        .into();
        natter_codec::frame::Routed {
            session: 0,
            user: "bob".into(),
            device: "".into(),
            frame: mark.to_bytes().unwrap(),
        }
        .into()
    };
    let impostor = (0..3).find(|b| *b != home && *b != owner).unwrap();
    c.broker_send(impostor, owner, mark(1));
    c.settle();
    let receipts = |frames: Vec<Frame>| {
        frames
            .into_iter()
            .filter(|f| matches!(f, Frame::Receipt(_)))
            .count()
    };
    assert_eq!(
        receipts(c.take(alice)),
        0,
        "a broker that is not bob's home is ignored"
    );
    if home != owner {
        c.broker_send(home, owner, mark(1));
        c.settle();
        assert_eq!(receipts(c.take(alice)), 1);
    }
}

#[test]
fn resume_needs_an_open_session() {
    let mut c = Cluster::new(1, |_| {});
    let alice = c.connect("alice", "phone");
    c.settle();
    c.take(alice);
    c.edge_send(
        0,
        natter_codec::frame::SessionClose { session: alice }.into(),
    );
    c.settle();
    let frames = resume(&mut c, alice, 0);
    assert_eq!(error_code(&frames), Some(ErrorCode::UNKNOWN_SESSION));
}

#[test]
fn a_session_open_answers_with_the_inbox_head() {
    let mut c = Cluster::new(1, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let conv = ids::direct_conversation("alice", "bob");
    c.call(alice, send(1, &conv, 1, "a"));
    c.call(alice, send(2, &conv, 2, "b"));
    let tablet = c.connect("alice", "tablet");
    c.settle();
    assert!(matches!(c.take(tablet).as_slice(), [Frame::Synced(s)] if s.inbox_head == 2));
}

#[test]
fn conversations_are_listed_newest_first_in_pages() {
    let mut c = Cluster::new(3, |_| {});
    let alice = online(&mut c, "alice", "phone");
    for (i, peer) in ["bob", "carol", "dave"].into_iter().enumerate() {
        c.advance(1_000);
        let conv = ids::direct_conversation("alice", peer);
        c.call(alice, send(i as u64 + 1, &conv, i as u64 + 1, "hi"));
    }
    let page = |c: &mut Cluster, cursor: Bytes| {
        let list = Conversations {
            request: 9,
            cursor,
            limit: 2,
        };
        match c.call(alice, list).pop() {
            Some(Frame::ConversationList(list)) => list,
            other => panic!("{other:?}"),
        }
    };
    let first = page(&mut c, Bytes::new());
    let names = |list: &natter_codec::frame::ConversationList| {
        list.conversations
            .iter()
            .map(|s| s.conversation.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), ["d/alice/dave", "d/alice/carol"]);
    assert!(!first.next_cursor.is_empty());
    let second = page(&mut c, first.next_cursor.clone());
    assert_eq!(names(&second), ["d/alice/bob"]);
    assert!(second.next_cursor.is_empty());
}

#[test]
fn a_cursor_the_server_did_not_make_is_refused() {
    let mut c = Cluster::new(1, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let list = Conversations {
        request: 1,
        cursor: Bytes::from_static(b"not a cursor of yours"),
        limit: 10,
    };
    // [NWP-6.3.3-1]
    assert_eq!(
        error_code(&c.call(alice, list)),
        Some(ErrorCode::INVALID_REQUEST)
    );
}

#[test]
fn a_link_frame_from_the_wrong_side_is_dropped_and_the_link_stays() {
    let mut c = Cluster::new(1, |_| {});
    let alice = online(&mut c, "alice", "phone");
    let forged = natter_codec::frame::FanoutAck {
        conversation: "d/alice/bob".into(),
        seq: 1,
    };
    c.edge_send(0, forged.into());
    c.settle();
    assert!(
        c.closed.is_empty(),
        "one stray frame must not close a link every session shares (NWP-9.3-7)"
    );
    let conv = ids::direct_conversation("alice", "bob");
    assert_eq!(
        acks(&c.call(alice, send(1, &conv, 1, "still here"))),
        [(1, false)]
    );
}

#[test]
fn fan_out_lost_on_a_one_way_link_is_sent_again() {
    let mut c = Cluster::new(3, |_| {});
    let (alice_user, bob_user) = (0..100)
        .map(|i| (format!("a{i}"), format!("b{i}")))
        .find(|(a, b)| {
            let conv = ids::direct_conversation(a, b);
            c.home(b) != c.owner(&conv) && c.home(a) == c.owner(&conv)
        })
        .unwrap();
    let alice = online(&mut c, &alice_user, "phone");
    let conv = ids::direct_conversation(&alice_user, &bob_user);
    let (owner, home) = (c.owner(&conv), c.home(&bob_user));
    // bob's home cannot answer the owner: its FANOUT_ACKs are lost.
    c.cut(home, owner);
    c.call(alice, send(1, &conv, 1, "hi"));
    let cursors = |c: &Cluster| {
        c.nodes[owner]
            .storage
            .range(&[0x06], &[0x07], false, usize::MAX)
            .unwrap()
            .len()
    };
    assert_eq!(cursors(&c), 1, "bob's home has not acknowledged");
    c.heal();
    c.settle();
    c.advance(6_000);
    c.settle();
    assert_eq!(cursors(&c), 0, "the FANOUT was sent again and acknowledged");
}
