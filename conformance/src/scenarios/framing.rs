//! Data types, framing and extensions: spec sections 2.2, 3 and 11.

use bytes::Bytes;
use natter_codec::frame::{Conversations, GroupCreate, History, Mark, Ping, Send};
use natter_codec::types::{Direction, EventKind, Features, Marker};
use natter_codec::{ErrorCode, Frame, FrameType, varint};

use super::{
    DEVICE, check, connect, create_group, history, live, message, pause, scenarios, send,
    send_bytes,
};
use crate::spec::{INVALID_VECTORS, vectors};
use crate::wire::{Conn, hex};
use crate::{Ctx, Failure};

scenarios! {
    "malformed-input-closes" [
        "NWP-2.2-2", "NWP-2.2-3", "NWP-2.2-4", "NWP-2.2-5", "NWP-3-2", "NWP-3-5", "NWP-3-7",
        "NWP-3-9", "NWP-5.5-1", "NWP-6.1.6-1", "NWP-10-1",
    ] => malformed_input,
    "oversized-frame" ["NWP-3-3", "NWP-3-4"] => oversized_frame,
    "frames-split-and-merged" ["NWP-3-1", "NWP-3-8", "NWP-5.6-1"] => split_and_merged,
    "unknown-frame-ignored" ["NWP-3-6", "NWP-11-1"] => unknown_frame,
    "extension-bytes-ignored" ["NWP-11-2"] => extension_bytes,
    "unknown-enum-values" ["NWP-4.3-1", "NWP-11-3"] => unknown_enum_values,
    "nul-in-strings" ["NWP-2.2-7"] => nul_in_strings,
    "server-frames-canonical" [
        "NWP-2.2-1", "NWP-2.2-2", "NWP-2.2-3", "NWP-2.2-6", "NWP-11-2",
    ] => server_frames_canonical,
}

/// Every stream vector of spec/vectors/invalid.txt, sent after READY on a connection of its
/// own: the server closes with the vector's error code, request id 0.
async fn malformed_input(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let token = ctx.token(&user, DEVICE)?;
    let mut checked = 0;
    for vector in vectors(INVALID_VECTORS) {
        if vector.mode != "stream" {
            continue;
        }
        let mut conn = Conn::ready(ctx.addr(), &token, Features::NONE).await?;
        let max = conn.ready.as_ref().map_or(0, |r| r.max_frame_size);
        let code = if vector.expect == "frame_too_large" {
            if vector.max_frame_size != max {
                continue;
            }
            ErrorCode::FRAME_TOO_LARGE
        } else {
            ErrorCode::PROTOCOL_VIOLATION
        };
        conn.send_raw(&vector.bytes).await?;
        conn.expect_close(code).await.map_err(|f| {
            f.context(&format!(
                "vector {} ({}: {})",
                vector.name,
                vector.expect,
                hex(&vector.bytes)
            ))
        })?;
        checked += 1;
    }
    check(checked >= 15, || format!("only {checked} vectors apply"))
}

async fn oversized_frame(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let mut conn = connect(ctx, &user, Features::NONE).await?;
    let max = conn.ready.as_ref().map_or(0, |r| r.max_frame_size);
    // Only the length prefix and the type: the server must refuse before reading the body.
    let mut prefix = Vec::new();
    varint::encode(max + 1, &mut prefix).map_err(|e| Failure::new(e.to_string()))?;
    prefix.push(FrameType::SEND.0 as u8);
    conn.send_raw(&prefix).await?;
    conn.expect_close(ErrorCode::FRAME_TOO_LARGE)
        .await
        .map_err(|f| f.context("Length max_frame_size + 1"))?;
    // Above the 16 MiB cap, whatever the server announced.
    let mut conn = connect(ctx, &user, Features::NONE).await?;
    conn.send_raw(&[0x81, 0x00, 0x00, 0x01]).await?;
    conn.expect_close(ErrorCode::FRAME_TOO_LARGE)
        .await
        .map_err(|f| f.context("Length 16 MiB + 1"))
}

async fn split_and_merged(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = natter_codec::ids::direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    let ping = |nonce| Frame::from(Ping { nonce }).to_bytes().unwrap_or_default();
    let pong = |nonce| move |f: &Frame| matches!(f, Frame::Pong(p) if p.nonce == nonce);

    // Three frames in one write, the third only half.
    let mut bytes = [ping(1), ping(2), ping(1 << 61)].concat();
    let rest = bytes.split_off(bytes.len() - 4);
    conn.send_raw(&bytes).await?;
    for nonce in [1, 2] {
        conn.expect(pong(nonce), &format!("PONG {nonce}")).await?;
    }
    pause(100).await;
    conn.send_raw(&rest).await?;
    conn.expect(pong(1 << 61), "PONG of the split PING").await?;

    // A SEND one byte at a time.
    let send = message(7, &conversation, 7, b"one byte at a time")
        .to_bytes()
        .map_err(|e| Failure::new(e.to_string()))?;
    for byte in send.iter() {
        conn.send_raw(&[*byte]).await?;
        tokio::task::yield_now().await;
    }
    super::sent(&mut conn, 7).await.map(drop)
}

async fn unknown_frame(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    // Type 0x3f is unassigned in v1 (three payload bytes); 0x1234 is a two-byte type code.
    conn.send_raw(&[0x04, 0x3f, 0x01, 0x02, 0x03]).await?;
    conn.send_raw(&[0x03, 0x52, 0x34, 0xff]).await?;
    conn.send(Ping { nonce: 77 }.into()).await?;
    conn.expect(|f| matches!(f, Frame::Pong(p) if p.nonce == 77), "PONG 77")
        .await
        .map(drop)
}

/// `frame` with `extra` bytes after its known fields, its Length adjusted.
fn with_extension(frame: Frame, extra: &[u8]) -> Result<Vec<u8>, Failure> {
    let bytes = frame.to_bytes().map_err(|e| Failure::new(e.to_string()))?;
    let (_, prefix) = varint::peek(&bytes)
        .ok()
        .flatten()
        .ok_or_else(|| Failure::new("no length"))?;
    let body = [&bytes[prefix..], extra].concat();
    let mut out = Vec::new();
    varint::encode(body.len() as u64, &mut out).map_err(|e| Failure::new(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

async fn extension_bytes(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = natter_codec::ids::direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    // Vector ping_extension_bytes.
    conn.send_raw(&[0x05, 0x03, 0x07, 0x0a, 0x0b, 0x0c]).await?;
    conn.expect(|f| matches!(f, Frame::Pong(p) if p.nonce == 7), "PONG 7")
        .await?;
    let send = message(1, &conversation, 1, b"with extension bytes");
    conn.send_raw(&with_extension(send, &[0x01, 0x05])?).await?;
    let seq = super::sent(&mut conn, 1).await?;
    let history = History {
        request: 2,
        conversation: conversation.as_str().into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 5,
    };
    conn.send_raw(&with_extension(history.into(), &[0x00])?)
        .await?;
    let Frame::HistoryPage(page) = conn.answer(2).await? else {
        return Err(Failure::new("expected HISTORY_PAGE"));
    };
    check(page.events.iter().any(|e| e.seq == seq), || {
        format!("the page lacks seq {seq}: {page:?}")
    })
}

async fn unknown_enum_values(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = natter_codec::ids::direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    send(&mut conn, 1, &conversation, "hi").await?;
    let cases: [(&str, Frame); 3] = [
        (
            "HISTORY direction 7",
            History {
                request: 2,
                conversation: conversation.as_str().into(),
                anchor: 0,
                direction: Direction(7),
                limit: 5,
            }
            .into(),
        ),
        (
            "MARK marker 9",
            Mark {
                request: 3,
                conversation: conversation.as_str().into(),
                marker: Marker(9),
                seq: 1,
            }
            .into(),
        ),
        (
            "SEND kind 0x40",
            Send {
                request: 4,
                conversation: conversation.as_str().into(),
                client_msg_id: 4,
                kind: EventKind(0x40),
                target: 0,
                content_type: "".into(),
                body: Bytes::from_static(b"x"),
            }
            .into(),
        ),
    ];
    for (what, frame) in cases {
        let request = frame.request().unwrap_or_default();
        conn.send(frame).await?;
        conn.answer_error(request, ErrorCode::INVALID_REQUEST)
            .await
            .map_err(|f| f.context(what))?;
    }
    Ok(())
}

async fn nul_in_strings(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = natter_codec::ids::direct_conversation(&alice, &bob);
    let mut conn = connect(ctx, &alice, Features::NONE).await?;
    // A body is bytes: U+0000 in it is nothing special.
    send_bytes(&mut conn, 1, &conversation, b"a\0b").await?;
    let nul_content_type = Send {
        request: 2,
        conversation: conversation.as_str().into(),
        client_msg_id: 2,
        kind: EventKind::MESSAGE,
        target: 0,
        content_type: "text/plain\0".into(),
        body: Bytes::from_static(b"x"),
    };
    conn.send(nul_content_type.into()).await?;
    conn.answer_error(2, ErrorCode::INVALID_REQUEST)
        .await
        .map_err(|f| f.context("U+0000 in a content type"))?;
    let nul_title = GroupCreate {
        request: 3,
        title: "cl\0imbing".into(),
        members: vec![bob.as_str().into()],
    };
    conn.send(nul_title.into()).await?;
    conn.answer_error(3, ErrorCode::INVALID_REQUEST)
        .await
        .map_err(|f| f.context("U+0000 in a group title"))?;
    let nul_id = format!("d/{alice}/\0{bob}");
    conn.send(message(4, &nul_id, 4, b"x")).await?;
    conn.answer_error(4, ErrorCode::INVALID_REQUEST)
        .await
        .map_err(|f| f.context("U+0000 in a user id"))?;
    let nul_member = GroupCreate {
        request: 5,
        title: "crew".into(),
        members: vec![format!("{bob}\0").into()],
    };
    conn.send(nul_member.into()).await?;
    conn.answer_error(5, ErrorCode::INVALID_REQUEST)
        .await
        .map_err(|f| f.context("U+0000 in a member id"))
        .map(drop)
}

/// Makes the server send most of its frame types; [`Conn`] checks each is in its canonical
/// form (shortest varints, flags 0 or 1, valid UTF-8, no extension bytes).
async fn server_frames_canonical(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = natter_codec::ids::direct_conversation(&alice, &bob);
    let mut conn = live(ctx, &alice, Features::ALL).await?;
    let mut other = live(ctx, &bob, Features::ALL).await?;
    // SEND_ACK, DELIVER (8-byte timestamps, 2-byte client_msg_id), and a duplicate.
    conn.send(message(
        1,
        &conversation,
        1_000_000,
        "\u{1f44b} hi".as_bytes(),
    ))
    .await?;
    let seq = super::sent(&mut conn, 1).await?;
    conn.send(message(
        2,
        &conversation,
        1_000_000,
        "\u{1f44b} hi".as_bytes(),
    ))
    .await?;
    super::sent(&mut conn, 2).await?;
    super::delivered(&mut other, &conversation, seq).await?;
    // DONE and RECEIPT.
    let mark = Mark {
        request: 3,
        conversation: conversation.as_str().into(),
        marker: Marker::READ,
        seq,
    };
    other.send(mark.into()).await?;
    other.answer(3).await?;
    conn.expect(|f| matches!(f, Frame::Receipt(_)), "RECEIPT")
        .await?;
    // HISTORY_PAGE, empty and not.
    history(&mut conn, 4, &conversation, 0, Direction::BACKWARD, 50).await?;
    history(&mut conn, 5, &conversation, seq, Direction::FORWARD, 50).await?;
    // CONVERSATION_LIST, GROUP_INFO, ERROR, PONG with the largest varint.
    let list = Conversations {
        request: 6,
        cursor: Bytes::new(),
        limit: 50,
    };
    conn.send(list.into()).await?;
    conn.answer(6).await?;
    create_group(&mut conn, 7, "\u{e9}quipe", &[&bob]).await?;
    conn.send(message(8, &conversation, 0, b"x")).await?;
    conn.answer_error(8, ErrorCode::INVALID_REQUEST).await?;
    let nonce = (1 << 62) - 1;
    conn.send(Ping { nonce }.into()).await?;
    conn.expect(|f| matches!(f, Frame::Pong(p) if p.nonce == nonce), "PONG")
        .await
        .map(drop)
}
