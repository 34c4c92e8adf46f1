//! Sending, dedup, edits, deletes and typing: spec 6.2.1, 6.2.7, 7.1, 7.2, 7.8, 7.10, 7.13,
//! and who may ask what (8.2).

use std::time::Duration;

use bytes::Bytes;
use natter_codec::frame::{GroupGet, History, Mark, PresenceSubscribe, Send, Typing};
use natter_codec::ids::direct_conversation;
use natter_codec::types::{
    Direction, EventFlags, EventKind, Features, GroupOp, Marker, MemberChange, Role,
};
use natter_codec::{ErrorCode, Frame};

use super::{
    DEVICE, check, connect, connect_device, create_group, delivered, group_update, history, live,
    message, scenarios, send, send_frame, sent, update_group,
};
use crate::wire::Conn;
use crate::{Ctx, Failure};

scenarios! {
    "pipelined-sends-gapless" ["NWP-5.3-2", "NWP-7.1-1", "NWP-7.2-4"] => pipelined,
    "dedup" ["NWP-7.2-2"] => dedup,
    "send-validation" ["NWP-6.2.1-1", "NWP-6.2.1-2"] => send_validation,
    "non-members-get-not-found" ["NWP-7.2-1", "NWP-8.2-1"] => non_members,
    "deliver-to-every-device" [
        "NWP-2.3-2", "NWP-6.2.3-2", "NWP-7.2-5", "NWP-7.3-1", "NWP-7.13-1",
    ] => deliver,
    "direct-conversation-on-first-send" ["NWP-7.1-3"] => direct_on_first_send,
    "edit-and-delete" ["NWP-7.1-2", "NWP-7.5-3", "NWP-7.8-1", "NWP-7.8-2"] => edit_and_delete,
    "events-carry-their-origin" ["NWP-4.1-3"] => events_carry_their_origin,
    "typing" ["NWP-7.10-1", "NWP-5.1-4"] => typing,
    "typing-limits" ["NWP-6.2.7-2"] => typing_limits,
}

async fn pipelined(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    for request in 1..=20 {
        let body = format!("m{request}");
        conn.send(message(request, &conversation, request, body.as_bytes()))
            .await?;
    }
    for request in 1..=20 {
        let seq = sent(&mut conn, request).await?;
        check(seq == request, || {
            format!("send {request} got seq {seq}, expected {request}")
        })?;
    }
    Ok(())
}

async fn dedup(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    send(&mut conn, 1, &conversation, "first").await?;
    conn.send(message(2, &conversation, 7, b"hello")).await?;
    let Frame::SendAck(original) = conn.answer(2).await? else {
        return Err(Failure::new("expected SEND_ACK"));
    };
    // The same client_msg_id and body from a new connection of the same device.
    let mut again = connect(ctx, &alice, Features::NONE).await?;
    again.send(message(1, &conversation, 7, b"hello")).await?;
    let Frame::SendAck(retry) = again.answer(1).await? else {
        return Err(Failure::new("expected SEND_ACK"));
    };
    check(
        retry.duplicate && retry.seq == original.seq && retry.timestamp == original.timestamp,
        || format!("retry answered {retry:?}, original was {original:?}"),
    )?;
    check(!original.duplicate, || "the original is a duplicate".into())?;
    again
        .send(message(2, &conversation, 7, b"something else"))
        .await?;
    again.answer_error(2, ErrorCode::DUPLICATE_MISMATCH).await?;
    // Nothing was appended by the retry.
    let page = history(&mut again, 3, &conversation, 0, Direction::BACKWARD, 10).await?;
    check(page.events.len() == 2, || {
        format!("{} events after one retry of the second", page.events.len())
    })
}

async fn send_validation(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let seq = send(&mut conn, 1, &conversation, "target").await?;
    let cases = [
        ("client_msg_id 0", 0, EventKind::MESSAGE, 0),
        ("kind MEMBER_ADDED", 11, EventKind::MEMBER_ADDED, 0),
        ("kind GROUP_CREATED", 12, EventKind::GROUP_CREATED, 0),
        ("MESSAGE with a target", 13, EventKind::MESSAGE, seq),
        ("EDIT without a target", 14, EventKind::EDIT, 0),
        ("DELETE without a target", 15, EventKind::DELETE, 0),
    ];
    for (index, (what, client_msg_id, kind, target)) in cases.into_iter().enumerate() {
        let request = 10 + index as u64;
        conn.send(send_frame(
            request,
            &conversation,
            client_msg_id,
            kind,
            target,
            b"x",
        ))
        .await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(what))?;
    }
    Ok(())
}

/// A request naming a conversation, for the non-member checks.
fn ask(kind: &str, request: u64, id: &str) -> Frame {
    let conversation: natter_codec::Text = id.into();
    match kind {
        "SEND" => message(request, id, request, b"let me in"),
        "HISTORY" => History {
            request,
            conversation,
            anchor: 0,
            direction: Direction::BACKWARD,
            limit: 10,
        }
        .into(),
        "MARK" => Mark {
            request,
            conversation,
            marker: Marker::READ,
            seq: 1,
        }
        .into(),
        "PRESENCE_SUBSCRIBE" => PresenceSubscribe {
            request,
            conversation,
            ttl_ms: 10_000,
        }
        .into(),
        "GROUP_GET" => GroupGet {
            request,
            conversation,
        }
        .into(),
        _ => group_update(request, id, GroupOp::ADD, "someone", Role::MEMBER),
    }
}

async fn non_members(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol, dave) = (
        ctx.user("alice"),
        ctx.user("bob"),
        ctx.user("carol"),
        ctx.user("dave"),
    );
    // bob and carol talk, and carol has a group with bob; alice is in neither.
    let mut carols = connect(ctx, &carol, Features::NONE).await?;
    let talk = direct_conversation(&bob, &carol);
    send(&mut carols, 1, &talk, "between us").await?;
    let group = create_group(&mut carols, 2, "private", &[&bob]).await?;
    send(&mut carols, 3, &group.conversation, "members only").await?;
    let silent = direct_conversation(&bob, &dave);
    let no_group = format!("g/{:016x}", rand::random::<u64>());
    let mut conn = connect(ctx, &alice, Features::ALL).await?;
    let mut request = 0;
    let direct_kinds = ["SEND", "HISTORY", "MARK", "PRESENCE_SUBSCRIBE"];
    let group_kinds = [
        "SEND",
        "HISTORY",
        "MARK",
        "PRESENCE_SUBSCRIBE",
        "GROUP_GET",
        "GROUP_UPDATE",
    ];
    let group_id = group.conversation.to_string();
    let mut cases: Vec<(&str, &str, &str)> = direct_kinds
        .iter()
        .map(|kind| (*kind, talk.as_str(), silent.as_str()))
        .collect();
    cases.extend(
        group_kinds
            .iter()
            .map(|kind| (*kind, group_id.as_str(), no_group.as_str())),
    );
    for (kind, existing, missing) in cases {
        let mut messages = Vec::new();
        for conversation in [existing, missing] {
            request += 1;
            conn.send(ask(kind, request, conversation)).await?;
            let text = conn
                .answer_error(request, ErrorCode::NOT_FOUND)
                .await
                .map_err(|f| f.context(&format!("{kind} on {conversation} by a non-member")))?;
            messages.push(text);
        }
        check(messages[0] == messages[1], || {
            format!(
                "{kind}: the NOT_FOUND messages differ, telling {existing} from {missing}: \
                 {messages:?}"
            )
        })?;
    }
    Ok(())
}

async fn deliver(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    // Either side names the conversation the same way.
    let conversation = direct_conversation(&bob, &alice);
    check(conversation == direct_conversation(&alice, &bob), || {
        "direct ids are not symmetric".into()
    })?;
    let mut receiver = live(ctx, &bob, Features::NONE).await?;
    let mut sender = live(ctx, &alice, Features::NONE).await?;
    let mut other_device =
        Conn::live(ctx.addr(), &ctx.token(&alice, "tablet")?, Features::NONE).await?;
    let body = "h\u{e9}llo \u{1f44b}\0binary\u{7f}";
    let seq = send(&mut sender, 10, &conversation, body).await?;
    for (who, conn) in [
        ("bob", &mut receiver),
        ("alice's sending device", &mut sender),
        ("alice's other device", &mut other_device),
    ] {
        let d = delivered(conn, &conversation, seq)
            .await
            .map_err(|f| f.context(who))?;
        check(d.inbox_seq > 0, || {
            format!("{who}: inbox_seq 0 in a direct conversation")
        })?;
        check(
            *d.event.sender == *alice && *d.event.device == *DEVICE,
            || {
                format!(
                    "{who}: DELIVER from {:?} on {:?}",
                    d.event.sender, d.event.device
                )
            },
        )?;
        check(d.event.client_msg_id == 10, || {
            format!("{who}: client_msg_id {}", d.event.client_msg_id)
        })?;
        check(d.event.body == body.as_bytes(), || {
            format!("{who}: body changed in transit")
        })?;
    }
    // Opaque bodies, whatever they claim to be.
    let opaque = Send {
        request: 11,
        conversation: conversation.as_str().into(),
        client_msg_id: 11,
        kind: EventKind::MESSAGE,
        target: 0,
        content_type: "application/vnd.example.e2e".into(),
        body: Bytes::from_static(&[0xff, 0xfe, 0x00, 0x80, 0xc0]),
    };
    sender.send(opaque.into()).await?;
    let seq = sent(&mut sender, 11).await?;
    let d = delivered(&mut receiver, &conversation, seq).await?;
    check(
        d.event.body[..] == [0xff, 0xfe, 0x00, 0x80, 0xc0]
            && *d.event.content_type == *"application/vnd.example.e2e",
        || format!("opaque body delivered as {d:?}"),
    )
}

async fn direct_on_first_send(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let conversation = direct_conversation(&alice, &bob);
    let mut sender = connect(ctx, &alice, Features::NONE).await?;
    let seq = send(&mut sender, 1, &conversation, "hello stranger").await?;
    // bob was never invited and is a member all the same.
    let mut other = connect(ctx, &bob, Features::NONE).await?;
    let page = history(&mut other, 1, &conversation, 0, Direction::BACKWARD, 10).await?;
    check(page.events.iter().any(|e| e.seq == seq), || {
        format!("bob's history lacks seq {seq}: {page:?}")
    })?;
    send(&mut other, 2, &conversation, "hi").await?;
    let mut outsider = connect(ctx, &carol, Features::NONE).await?;
    outsider
        .send(message(1, &conversation, 1, b"me too"))
        .await?;
    outsider
        .answer_error(1, ErrorCode::NOT_FOUND)
        .await
        .map(drop)
}

async fn edit_and_delete(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let mut other = connect(ctx, &bob, Features::NONE).await?;
    let original = send(&mut conn, 1, &conversation, "original").await?;
    let bobs = send(&mut other, 1, &conversation, "bob's").await?;
    let edit = Send {
        request: 2,
        conversation: conversation.as_str().into(),
        client_msg_id: 2,
        kind: EventKind::EDIT,
        target: original,
        content_type: "text/markdown".into(),
        body: Bytes::from_static(b"*edited*"),
    };
    conn.send(edit.into()).await?;
    let edit_seq = sent(&mut conn, 2).await?;
    let page = history(&mut conn, 3, &conversation, 0, Direction::FORWARD, 10).await?;
    let event = |seq: u64| page.events.iter().find(|e| e.seq == seq).cloned();
    let target = event(original).ok_or_else(|| Failure::new("the edited message is gone"))?;
    check(
        target.flags.contains(EventFlags::EDITED)
            && target.body == b"original"[..]
            && target.kind == EventKind::MESSAGE,
        || format!("after an EDIT the target is {target:?}: EDITED, its body unchanged"),
    )?;
    let edit = event(edit_seq).ok_or_else(|| Failure::new("the EDIT event is missing"))?;
    check(
        edit.kind == EventKind::EDIT
            && edit.target == original
            && edit.body == b"*edited*"[..]
            && *edit.content_type == *"text/markdown",
        || format!("the EDIT event is {edit:?}"),
    )?;
    // Only the author edits, only MESSAGEs are targets.
    let refusals = [
        ("EDIT of another's message", bobs, ErrorCode::FORBIDDEN),
        ("EDIT of an EDIT", edit_seq, ErrorCode::NOT_FOUND),
        (
            "EDIT of a seq that does not exist",
            999,
            ErrorCode::NOT_FOUND,
        ),
    ];
    for (index, (what, target, code)) in refusals.into_iter().enumerate() {
        let request = 10 + index as u64;
        conn.send(send_frame(
            request,
            &conversation,
            request,
            EventKind::EDIT,
            target,
            b"x",
        ))
        .await?;
        conn.answer_error(request, code)
            .await
            .map_err(|f| f.context(what))?;
    }
    other
        .send(send_frame(
            2,
            &conversation,
            2,
            EventKind::DELETE,
            original,
            b"",
        ))
        .await?;
    other
        .answer_error(2, ErrorCode::FORBIDDEN)
        .await
        .map_err(|f| f.context("DELETE of another's message in a direct conversation"))?;
    conn.send(send_frame(
        4,
        &conversation,
        4,
        EventKind::DELETE,
        original,
        b"",
    ))
    .await?;
    let delete_seq = sent(&mut conn, 4).await?;
    let page = history(&mut conn, 5, &conversation, 0, Direction::FORWARD, 10).await?;
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    check(seqs == (1..=delete_seq).collect::<Vec<_>>(), || {
        format!("seqs after edit and delete: {seqs:?}")
    })?;
    let target = &page.events[(original - 1) as usize];
    check(
        target.flags.contains(EventFlags::DELETED)
            && target.body.is_empty()
            && target.content_type.is_empty(),
        || format!("a deleted message shows as {target:?}"),
    )?;
    let delete = &page.events[(delete_seq - 1) as usize];
    check(
        delete.kind == EventKind::DELETE && delete.target == original,
        || format!("the DELETE event is {delete:?}"),
    )
}

async fn events_carry_their_origin(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let mut owner = live(ctx, &alice, Features::NONE).await?;
    let mut watcher =
        Conn::live(ctx.addr(), &ctx.token(&alice, "watcher")?, Features::NONE).await?;
    let info = create_group(&mut owner, 1, "crew", &[&bob]).await?;
    let group = info.conversation.to_string();
    let mut member = connect_device(ctx, &bob, "phone", Features::NONE).await?;
    let said = send(&mut member, 1, &group, "hi all").await?;
    let added = update_group(&mut owner, 2, &group, GroupOp::ADD, &carol, Role::MEMBER).await?;
    let promoted = update_group(
        &mut owner,
        3,
        &group,
        GroupOp::SET_ROLE,
        &carol,
        Role::ADMIN,
    )
    .await?;
    let left = update_group(&mut member, 2, &group, GroupOp::REMOVE, &bob, Role::MEMBER).await?;
    // Live, a membership event looks the same as in history.
    let live_added = delivered(&mut watcher, &group, added).await?;
    let page = history(&mut owner, 4, &group, 0, Direction::FORWARD, 20).await?;
    let event = |seq: u64| {
        page.events
            .iter()
            .find(|e| e.seq == seq)
            .cloned()
            .ok_or_else(|| Failure::new(format!("seq {seq} missing from {page:?}")))
    };
    let server_made = |seq: u64, kind: EventKind, sender: &str| -> Result<(), Failure> {
        let e = event(seq)?;
        check(
            e.kind == kind && *e.sender == *sender && e.device.is_empty() && e.client_msg_id == 0,
            || {
                format!(
                    "seq {seq} should be {kind:?} by {sender}, with no device and client_msg_id \
                     0: {e:?}"
                )
            },
        )
    };
    server_made(1, EventKind::GROUP_CREATED, &alice)?;
    server_made(2, EventKind::MEMBER_ADDED, &alice)?;
    server_made(3, EventKind::MEMBER_ADDED, &alice)?;
    server_made(added, EventKind::MEMBER_ADDED, &alice)?;
    server_made(promoted, EventKind::ROLE_CHANGED, &alice)?;
    server_made(left, EventKind::MEMBER_REMOVED, &bob)?;
    check(live_added.event == event(added)?, || {
        format!("DELIVER {live_added:?} differs from history")
    })?;
    let change = MemberChange::from_body(event(left)?.body)
        .map_err(|e| Failure::new(format!("MEMBER_REMOVED body: {e}")))?;
    check(*change.user == *bob, || {
        format!("MEMBER_REMOVED names {change:?}")
    })?;
    let m = event(said)?;
    check(
        m.kind == EventKind::MESSAGE
            && *m.sender == *bob
            && *m.device == *"phone"
            && m.client_msg_id == 1,
        || format!("a MESSAGE from bob's phone, client_msg_id 1, shows as {m:?}"),
    )
}

async fn typing(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut watcher = live(ctx, &bob, Features::TYPING).await?;
    // bob's other device did not ask for TYPING: it must get no TYPING_UPDATE.
    let mut plain = Conn::live(ctx.addr(), &ctx.token(&bob, "plain")?, Features::NONE).await?;
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
        .await?;
    // The typist's own sessions are not told.
    typist
        .quiet(
            Duration::from_millis(200),
            |f| matches!(f, Frame::TypingUpdate(_)),
            "the typist got its own TYPING_UPDATE",
        )
        .await?;
    plain.barrier().await.map(drop)
}

async fn typing_limits(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let conversation = direct_conversation(&alice, &bob);
    let mut watcher = live(ctx, &bob, Features::TYPING).await?;
    let mut typist = connect(ctx, &alice, Features::TYPING).await?;
    let typing = |active| -> Frame {
        Typing {
            conversation: conversation.as_str().into(),
            active,
        }
        .into()
    };
    // Three within a second: one is relayed.
    for _ in 0..3 {
        typist.send(typing(true)).await?;
    }
    let alice_id = alice.clone();
    watcher
        .expect(
            |f| matches!(f, Frame::TypingUpdate(t) if *t.user == *alice_id),
            "TYPING_UPDATE",
        )
        .await?;
    let alice_id = alice.clone();
    watcher
        .quiet(
            Duration::from_millis(600),
            |f| matches!(f, Frame::TypingUpdate(t) if *t.user == *alice_id && t.active),
            "a second TYPING within a second was relayed",
        )
        .await?;
    // A non-member's TYPING, and one naming no valid conversation, are dropped in silence.
    let mut outsider = connect(ctx, &carol, Features::TYPING).await?;
    outsider.send(typing(true)).await?;
    let invalid = Typing {
        conversation: "x/not-a-conversation".into(),
        active: true,
    };
    outsider.send(invalid.into()).await?;
    let answered = outsider.barrier().await?;
    check(answered.is_empty(), || {
        format!("TYPING was answered with {answered:?}")
    })?;
    let carol_id = carol.clone();
    watcher
        .quiet(
            Duration::from_millis(500),
            |f| matches!(f, Frame::TypingUpdate(t) if *t.user == *carol_id),
            "a non-member's TYPING was relayed",
        )
        .await
}
