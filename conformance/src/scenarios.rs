//! The scenarios, in spec order. Each names the rules it checks; keep them in step with
//! spec/PROTOCOL.md.

use bytes::Bytes;
use natter_codec::frame::{
    Ack, GroupCreate, GroupUpdate, History, Mark, Ping, Resume, Send, SendAck, Typing,
};
use natter_codec::ids::direct_conversation;
use natter_codec::types::{Direction, EventFlags, EventKind, Features, GroupOp, Marker, Role};
use natter_codec::{ErrorCode, Frame, FrameType, varint};

use crate::wire::Conn;
use crate::{Ctx, Failure, Scenario};

macro_rules! scenarios {
    ($( $name:literal [$($rule:literal),*] => $run:ident, )*) => {
        /// Every scenario, in spec order.
        pub static SCENARIOS: &[Scenario] = &[
            $( Scenario { name: $name, rules: &[$($rule),*], run: |ctx| Box::pin($run(ctx)) }, )*
        ];
    };
}

scenarios! {
    "handshake" ["NWP-5.1-2", "NWP-5.1-3", "NWP-5.1-4", "NWP-6.1.2-1"] => handshake,
    "hello-must-come-first" ["NWP-5.1-1"] => hello_first,
    "second-hello" ["NWP-5.1-6"] => second_hello,
    "bad-token" ["NWP-5.1-2"] => bad_token,
    "unsupported-version" ["NWP-5.1-2", "NWP-6.1.1-1"] => unsupported_version,
    "empty-frame" ["NWP-3-2", "NWP-3-7"] => empty_frame,
    "oversized-frame" ["NWP-3-3", "NWP-3-7"] => oversized_frame,
    "unknown-frame-ignored" ["NWP-3-6", "NWP-11-1"] => unknown_frame,
    "wrong-side-frame" ["NWP-5.3-4"] => wrong_side,
    "ping-pong" ["NWP-5.2-3", "NWP-6.1.3-1"] => ping_pong,
    "pipelined-sends-gapless" ["NWP-5.3-2", "NWP-7.1-1", "NWP-7.2-4"] => pipelined,
    "dedup" ["NWP-7.2-2"] => dedup,
    "zero-client-msg-id" ["NWP-6.2.1-1"] => zero_client_msg_id,
    "non-member-send" ["NWP-7.2-1"] => non_member,
    "deliver-after-resume" ["NWP-6.2.3-2", "NWP-7.2-5", "NWP-7.3-1", "NWP-7.13-1"] => deliver,
    "resume-replays" ["NWP-7.3-2", "NWP-7.3-3"] => resume_replays,
    "history-paging" ["NWP-7.5-1", "NWP-7.5-2"] => history_paging,
    "delete-tombstone" ["NWP-7.5-3"] => delete_tombstone,
    "read-receipt" ["NWP-7.4-1", "NWP-7.4-3"] => read_receipt,
    "receipts-on-open" ["NWP-7.4-4"] => receipts_on_open,
    "typing" ["NWP-7.10-1"] => typing,
    "groups" ["NWP-7.7-1", "NWP-7.7-2"] => groups,
}

/// A connection for `name` on device `device`, through HELLO and READY.
async fn connect(ctx: &Ctx<'_>, user: &str, features: Features) -> Result<Conn, Failure> {
    Conn::ready(ctx.addr(), &ctx.token(user, "conformance")?, features).await
}

/// Like [`connect`], then RESUME from the inbox head.
async fn live(ctx: &Ctx<'_>, user: &str, features: Features) -> Result<Conn, Failure> {
    Conn::live(ctx.addr(), &ctx.token(user, "conformance")?, features).await
}

fn message(request: u64, conversation: &str, client_msg_id: u64, body: &str) -> Frame {
    Send {
        request,
        conversation: conversation.into(),
        client_msg_id,
        kind: EventKind::MESSAGE,
        target: 0,
        content_type: "".into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
    .into()
}

/// Sends a message and returns its seq.
async fn send(
    conn: &mut Conn,
    request: u64,
    conversation: &str,
    body: &str,
) -> Result<u64, Failure> {
    conn.send(message(request, conversation, request, body))
        .await?;
    match conn.answer(request).await? {
        Frame::SendAck(ack) => Ok(ack.seq),
        other => Err(Failure::new(format!("expected SEND_ACK, got {other:?}"))),
    }
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(Failure::new(message()))
    }
}

async fn handshake(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let asked = Features::RECEIPTS | Features(1 << 40);
    let conn = connect(ctx, &user, asked).await?;
    let ready = conn
        .ready
        .as_ref()
        .ok_or_else(|| Failure::new("no READY"))?;
    check(ready.version == 1, || {
        format!("version {} instead of 1", ready.version)
    })?;
    check(asked.contains(ready.features), || {
        format!("granted {:?}, which was not asked for", ready.features)
    })?;
    check(ready.heartbeat_ms >= 1_000, || {
        format!("heartbeat_ms {}", ready.heartbeat_ms)
    })?;
    check(*ready.user == *user, || {
        format!("READY names user {:?}", ready.user)
    })
}

async fn hello_first(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = Conn::open(ctx.addr()).await?;
    conn.send(Ping { nonce: 1 }.into()).await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION).await
}

async fn second_hello(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let mut conn = connect(ctx, &user, Features::NONE).await?;
    conn.send(crate::wire::hello(
        &ctx.token(&user, "conformance")?,
        Features::NONE,
    ))
    .await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION).await
}

async fn bad_token(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = Conn::open(ctx.addr()).await?;
    conn.send(crate::wire::hello("not a token", Features::NONE))
        .await?;
    conn.expect_close(ErrorCode::UNAUTHENTICATED).await
}

async fn unsupported_version(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = Conn::open(ctx.addr()).await?;
    let mut hello = crate::wire::hello(
        &ctx.token(&ctx.user("alice"), "conformance")?,
        Features::NONE,
    );
    if let Frame::Hello(h) = &mut hello {
        h.min_version = 90;
        h.max_version = 99;
    }
    conn.send(hello).await?;
    conn.expect_close(ErrorCode::UNSUPPORTED_VERSION).await
}

async fn empty_frame(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    conn.send_raw(&[0x00]).await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION).await
}

async fn oversized_frame(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    let max = conn.ready.as_ref().map_or(0, |r| r.max_frame_size);
    // Only the length prefix and the type: the server must refuse before reading the body.
    let mut prefix = Vec::new();
    varint::encode(max + 1, &mut prefix).map_err(|e| Failure::new(e.to_string()))?;
    prefix.push(FrameType::SEND.0 as u8);
    conn.send_raw(&prefix).await?;
    conn.expect_close(ErrorCode::FRAME_TOO_LARGE).await
}

async fn unknown_frame(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    // Type 0x3f is unassigned in v1; three payload bytes follow it.
    conn.send_raw(&[0x04, 0x3f, 0x01, 0x02, 0x03]).await?;
    conn.send(Ping { nonce: 77 }.into()).await?;
    conn.expect(|f| matches!(f, Frame::Pong(p) if p.nonce == 77), "PONG 77")
        .await
        .map(drop)
}

async fn wrong_side(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    let ack = SendAck {
        request: 1,
        seq: 1,
        timestamp: 1,
        duplicate: false,
    };
    conn.send(ack.into()).await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION).await
}

async fn ping_pong(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    for nonce in [0, 1, 1 << 40] {
        conn.send(Ping { nonce }.into()).await?;
        conn.expect(|f| matches!(f, Frame::Pong(p) if p.nonce == nonce), "PONG")
            .await?;
    }
    Ok(())
}

async fn pipelined(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    for request in 1..=20 {
        conn.send(message(
            request,
            &conversation,
            request,
            &format!("m{request}"),
        ))
        .await?;
    }
    for request in 1..=20 {
        match conn.answer(request).await? {
            Frame::SendAck(ack) => check(ack.seq == request, || {
                format!("send {request} got seq {}, expected {request}", ack.seq)
            })?,
            other => return Err(Failure::new(format!("expected SEND_ACK, got {other:?}"))),
        }
    }
    Ok(())
}

async fn dedup(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    send(&mut conn, 1, &conversation, "first").await?;
    conn.send(message(2, &conversation, 7, "hello")).await?;
    let Frame::SendAck(original) = conn.answer(2).await? else {
        return Err(Failure::new("expected SEND_ACK"));
    };
    // The same client_msg_id and body from a new connection of the same device.
    let mut again = connect(ctx, &alice, Features::NONE).await?;
    again.send(message(1, &conversation, 7, "hello")).await?;
    let Frame::SendAck(retry) = again.answer(1).await? else {
        return Err(Failure::new("expected SEND_ACK"));
    };
    check(
        retry.duplicate && retry.seq == original.seq && retry.timestamp == original.timestamp,
        || format!("retry answered {retry:?}, original was {original:?}"),
    )?;
    again
        .send(message(2, &conversation, 7, "something else"))
        .await?;
    again.answer_error(2, ErrorCode::DUPLICATE_MISMATCH).await
}

async fn zero_client_msg_id(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    conn.send(message(1, &direct_conversation(&alice, &bob), 0, "x"))
        .await?;
    conn.answer_error(1, ErrorCode::INVALID_REQUEST).await
}

async fn non_member(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    conn.send(message(
        1,
        &direct_conversation(&bob, &carol),
        1,
        "let me in",
    ))
    .await?;
    conn.answer_error(1, ErrorCode::FORBIDDEN).await?;
    // The connection still works.
    send(&mut conn, 2, &direct_conversation(&alice, &bob), "hi")
        .await
        .map(drop)
}

async fn deliver(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut receiver = live(ctx, &bob, Features::NONE).await?;
    let mut sender = live(ctx, &alice, Features::NONE).await?;
    let body = "h\u{e9}llo \u{1f44b}\0binary\u{7f}";
    let seq = send(&mut sender, 10, &conversation, body).await?;
    for (who, conn) in [("bob", &mut receiver), ("alice's own device", &mut sender)] {
        let frame = conn
            .expect(
                |f| matches!(f, Frame::Deliver(d) if d.event.seq == seq),
                "DELIVER",
            )
            .await
            .map_err(|f| f.context(who))?;
        let Frame::Deliver(d) = frame else {
            unreachable!()
        };
        check(d.inbox_seq > 0, || {
            format!("{who}: inbox_seq 0 in a direct conversation")
        })?;
        check(
            *d.conversation == *conversation && *d.event.sender == *alice,
            || {
                format!(
                    "{who}: DELIVER names {:?} from {:?}",
                    d.conversation, d.event.sender
                )
            },
        )?;
        check(d.event.body == body.as_bytes(), || {
            format!("{who}: body changed in transit")
        })?;
    }
    Ok(())
}

async fn resume_replays(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut receiver = live(ctx, &bob, Features::NONE).await?;
    let mut sender = connect(ctx, &alice, Features::NONE).await?;
    let first = send(&mut sender, 1, &conversation, "before").await?;
    let Frame::Deliver(d) = receiver
        .expect(
            |f| matches!(f, Frame::Deliver(d) if d.event.seq == first),
            "DELIVER",
        )
        .await?
    else {
        unreachable!()
    };
    receiver
        .send(
            Ack {
                inbox_seq: d.inbox_seq,
            }
            .into(),
        )
        .await?;
    // A barrier: the ACK was read before the PONG.
    receiver.send(Ping { nonce: 5 }.into()).await?;
    receiver
        .expect(|f| matches!(f, Frame::Pong(p) if p.nonce == 5), "PONG")
        .await?;
    drop(receiver);
    let mut missed = Vec::new();
    for request in 2..=4 {
        missed.push(send(&mut sender, request, &conversation, "while away").await?);
    }
    let mut back = connect(ctx, &bob, Features::NONE).await?;
    back.send(
        Resume {
            request: 9,
            after: d.inbox_seq,
        }
        .into(),
    )
    .await?;
    let mut replayed = Vec::new();
    let replay = |f: &Frame| matches!(f, Frame::Deliver(_) | Frame::Synced(_));
    while let Frame::Deliver(d) = back.expect(replay, "replay").await? {
        replayed.push(d.event.seq);
    }
    check(replayed == missed, || {
        format!("replayed seqs {replayed:?}, missed {missed:?}")
    })
}

async fn history_paging(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    for request in 1..=12 {
        send(&mut conn, request, &conversation, &format!("m{request}")).await?;
    }
    let page = |request, anchor, direction| History {
        request,
        conversation: conversation.as_str().into(),
        anchor,
        direction,
        limit: 5,
    };
    let cases = [
        (
            page(20, 0, Direction::BACKWARD),
            (8..=12).collect::<Vec<u64>>(),
            true,
        ),
        (page(21, 8, Direction::BACKWARD), (3..=7).collect(), true),
        (page(22, 3, Direction::BACKWARD), (1..=2).collect(), false),
        (page(23, 0, Direction::FORWARD), (1..=5).collect(), true),
        (page(24, 10, Direction::FORWARD), (11..=12).collect(), false),
    ];
    for (history, expected, more) in cases {
        let request = history.request;
        conn.send(history.into()).await?;
        let Frame::HistoryPage(page) = conn.answer(request).await? else {
            return Err(Failure::new("expected HISTORY_PAGE"));
        };
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        check(seqs == expected && page.more == more, || {
            format!(
                "request {request}: seqs {seqs:?} more {}, expected {expected:?} more {more}",
                page.more
            )
        })?;
    }
    Ok(())
}

async fn delete_tombstone(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let seq = send(&mut conn, 1, &conversation, "regrettable").await?;
    let delete = Send {
        request: 2,
        conversation: conversation.as_str().into(),
        client_msg_id: 2,
        kind: EventKind::DELETE,
        target: seq,
        content_type: "".into(),
        body: Bytes::new(),
    };
    conn.send(delete.into()).await?;
    conn.answer(2).await?;
    let history = History {
        request: 3,
        conversation: conversation.as_str().into(),
        anchor: 0,
        direction: Direction::FORWARD,
        limit: 10,
    };
    conn.send(history.into()).await?;
    let Frame::HistoryPage(page) = conn.answer(3).await? else {
        return Err(Failure::new("expected HISTORY_PAGE"));
    };
    let target = page
        .events
        .iter()
        .find(|e| e.seq == seq)
        .ok_or_else(|| Failure::new("target missing"))?;
    check(
        target.flags.contains(EventFlags::DELETED) && target.body.is_empty(),
        || {
            format!(
                "deleted event shows flags {:?} and {} body bytes",
                target.flags,
                target.body.len()
            )
        },
    )
}

async fn read_receipt(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut sender = live(ctx, &alice, Features::RECEIPTS).await?;
    let mut reader = connect(ctx, &bob, Features::RECEIPTS).await?;
    send(&mut sender, 1, &conversation, "one").await?;
    let two = send(&mut sender, 2, &conversation, "two").await?;
    let mark = |request, seq| Mark {
        request,
        conversation: conversation.as_str().into(),
        marker: Marker::READ,
        seq,
    };
    reader.send(mark(1, two).into()).await?;
    reader.answer(1).await?;
    let bob_id = bob.clone();
    sender
        .expect(
            |f| matches!(f, Frame::Receipt(r) if *r.user == *bob_id && r.read == two),
            "RECEIPT read",
        )
        .await?;
    // Backwards is no change: the pointer stays at `two`.
    reader.send(mark(2, 1).into()).await?;
    reader.answer(2).await?;
    reader.send(mark(3, two).into()).await?;
    reader.answer(3).await.map(drop)
}

async fn receipts_on_open(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut sender = connect(ctx, &alice, Features::NONE).await?;
    let seq = send(&mut sender, 1, &conversation, "read me").await?;
    let mut reader = connect(ctx, &bob, Features::NONE).await?;
    let mark = Mark {
        request: 1,
        conversation: conversation.as_str().into(),
        marker: Marker::READ,
        seq,
    };
    reader.send(mark.into()).await?;
    reader.answer(1).await?;
    // Alice opens the conversation on a new connection: bob's pointer comes before the page.
    let mut opener = connect(ctx, &alice, Features::RECEIPTS).await?;
    let newest = History {
        request: 2,
        conversation: conversation.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 10,
    };
    opener.send(newest.into()).await?;
    let mut bob_read = None;
    loop {
        match opener.recv().await? {
            Frame::Receipt(r) if *r.user == *bob => bob_read = Some(r.read),
            Frame::HistoryPage(page) if page.request == 2 => break,
            Frame::Error(error) => return Err(Failure::new(format!("HISTORY failed: {error:?}"))),
            _ => {}
        }
    }
    check(bob_read == Some(seq), || {
        format!("before the page, bob's read pointer was {bob_read:?}, not {seq}")
    })
}

async fn typing(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut watcher = live(ctx, &bob, Features::TYPING).await?;
    let mut typist = live(ctx, &alice, Features::TYPING).await?;
    send(&mut typist, 1, &conversation, "hi").await?;
    typist
        .send(
            Typing {
                conversation: conversation.as_str().into(),
                active: true,
            }
            .into(),
        )
        .await?;
    let alice_id = alice.clone();
    watcher
        .expect(
            |f| matches!(f, Frame::TypingUpdate(t) if *t.user == *alice_id && t.active),
            "TYPING_UPDATE",
        )
        .await
        .map(drop)
}

async fn groups(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let mut owner = connect(ctx, &alice, Features::NONE).await?;
    let create = GroupCreate {
        request: 1,
        title: "crew".into(),
        members: vec![bob.as_str().into()],
    };
    owner.send(create.into()).await?;
    let Frame::GroupInfo(info) = owner.answer(1).await? else {
        return Err(Failure::new("expected GROUP_INFO"));
    };
    let role = |user: &str| {
        info.members
            .iter()
            .find(|m| *m.user == *user)
            .map(|m| m.role)
    };
    check(
        role(&alice) == Some(Role::OWNER) && role(&bob) == Some(Role::MEMBER),
        || format!("members {:?}", info.members),
    )?;
    let group = info.conversation.to_string();
    let mut outsider = connect(ctx, &carol, Features::NONE).await?;
    outsider.send(message(1, &group, 1, "hello?")).await?;
    outsider.answer_error(1, ErrorCode::FORBIDDEN).await?;
    let mut member = connect(ctx, &bob, Features::NONE).await?;
    let add = |request, by: &str| GroupUpdate {
        request,
        conversation: group.as_str().into(),
        op: GroupOp::ADD,
        user: by.into(),
        role: Role::MEMBER,
    };
    member.send(add(1, &carol).into()).await?;
    member.answer_error(1, ErrorCode::FORBIDDEN).await?;
    owner.send(add(2, &carol).into()).await?;
    owner.answer(2).await?;
    send(&mut outsider, 2, &group, "thanks").await?;
    let history = History {
        request: 3,
        conversation: group.as_str().into(),
        anchor: 0,
        direction: Direction::FORWARD,
        limit: 1,
    };
    outsider.send(history.into()).await?;
    let Frame::HistoryPage(page) = outsider.answer(3).await? else {
        return Err(Failure::new("expected HISTORY_PAGE"));
    };
    check(
        page.events.first().map(|e| (e.seq, e.kind)) == Some((1, EventKind::GROUP_CREATED)),
        || format!("first event {:?}", page.events.first()),
    )
}
