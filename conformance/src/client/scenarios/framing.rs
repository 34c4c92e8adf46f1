//! What the client reads: framing (3), extensions (11), malformed input (3, 12), frames of the
//! wrong side (5.3), and the transports (5.6).

use std::time::Duration;

use bytes::BytesMut;
use natter_codec::frame::{Ack, Deliver, Ping, Ready, SendAck, SessionClose};
use natter_codec::types::{EventFlags, EventKind, Features};
use natter_codec::{ErrorCode, Frame};

use super::{all_sent, check, client_scenarios};
use crate::Failure;
use crate::client::Ctx;
use crate::client::process::Args;
use crate::client::server::{
    CONVERSATION, DEVICE, Harness, PATIENCE, Reaction, ReadyOpts, USER, peer_event,
};

client_scenarios! {
    "unknown-frame-types-are-skipped" ["NWP-3-6", "NWP-11-1"] => unknown_types,
    "bytes-after-the-known-fields" ["NWP-11-2"] => extension_bytes,
    "unknown-values" ["NWP-4.1-1", "NWP-11-3", "NWP-4.3-1", "NWP-7.13-2", "NWP-2.2-4"]
        => unknown_values,
    "malformed-frames-close-the-connection" [
        "NWP-12-1", "NWP-3-7", "NWP-2.2-2", "NWP-2.2-3", "NWP-2.2-4", "NWP-3-2", "NWP-3-5",
        "NWP-6.1.6-4",
    ] => malformed,
    "a-frame-above-the-client-maximum" ["NWP-3-3", "NWP-12-1", "NWP-6.1.6-4"] => oversized,
    "frames-from-the-wrong-side" ["NWP-5.3-4"] => wrong_side,
    "frames-split-and-merged" ["NWP-5.6-1", "NWP-3-8", "NWP-3-1"] => split,
    "one-frame-per-websocket-message" ["NWP-5.6-2"] => websocket,
}

/// Whether the client answered PING `nonce`.
fn ponged(h: &Harness, nonce: u64) -> bool {
    h.conns().any(|conn| {
        conn.frames(|f| matches!(f, Frame::Pong(pong) if pong.nonce == nonce))
            .next()
            .is_some()
    })
}

async fn unknown_types(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(1)).await?;
    h.live(ReadyOpts::default()).await?;
    let unknown: [&[u8]; 4] = [
        // Vector unknown_type: type 0x7f and five bytes.
        &[0x07, 0x40, 0x7f, 0x01, 0x02, 0x03, 0x04, 0x05],
        // A reserved type with nothing after it.
        &[0x01, 0x1b],
        // An experimental type, whose payload would be malformed as any known frame.
        &[0x05, 0x7f, 0xff, 0xff, 0xff, 0x00],
        &[0x03, 0x40, 0x80, 0x78],
    ];
    for frame in unknown {
        h.send_raw(frame).await?;
    }
    let entry = h.world.peer_message("after unknown frames");
    h.deliver(entry).await?;
    h.send(Ping { nonce: 5 }.into()).await?;
    h.serve_until(PATIENCE, "the next frames handled", |h| {
        h.world.last_ack() >= entry && all_sent(h, 1) && ponged(h, 5)
    })
    .await
    .map_err(|f| f.context("after four frames of unknown types (NWP-3-6)"))?;
    h.finish().await
}

async fn extension_bytes(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(1)).await?;
    h.hello(PATIENCE).await?;
    // Every frame from READY on carries three bytes after its known fields.
    if let Some(conn) = h.conn_mut() {
        conn.extension = vec![0x0a, 0x0b, 0x0c];
    }
    h.ready(ReadyOpts::default()).await?;
    h.resumed().await?;
    let entry = h.world.peer_message("with extension bytes");
    h.deliver(entry).await?;
    h.send(Ping { nonce: 7 }.into()).await?;
    h.serve_until(
        PATIENCE,
        "every frame handled as if the bytes were not there",
        |h| h.world.last_ack() >= entry && all_sent(h, 1) && ponged(h, 7),
    )
    .await
    .map_err(|f| f.context("with 3 bytes after the known fields of each frame (NWP-11-2)"))?;
    h.finish().await
}

async fn unknown_values(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    // An event of a kind from a later version: it takes its seq all the same.
    let future = peer_event(EventKind(0x2a), "from a later version");
    let first = h.world.append_entry(CONVERSATION, future);
    // Flags a later version defines, and a body in UTF-8 with an empty content type.
    let mut flagged = peer_event(EventKind::MESSAGE, "héllo ✓ ünïcode");
    flagged.flags = EventFlags(0x80 | 0x40);
    h.world.append_entry(CONVERSATION, flagged);
    let mut plain = peer_event(EventKind::MESSAGE, "explicitly plain");
    plain.content_type = "text/plain; charset=utf-8".into();
    let last = h.world.append_entry(CONVERSATION, plain);
    for entry in first..=last {
        h.deliver(entry).await?;
    }
    h.serve_until(
        PATIENCE,
        "the two messages shown and everything acknowledged",
        |h| {
            h.world.last_ack() >= last
                && h.client.printed(CONVERSATION, 2)
                && h.client.printed(CONVERSATION, 3)
        },
    )
    .await
    .map_err(|f| f.context("after an event of kind 0x2a and flags 0xc0 (NWP-4.1-1, NWP-11-3)"))?;
    // The output checks compare each body shown with the one sent: an empty content type is
    // UTF-8 text (NWP-7.13-2).
    h.finish().await
}

/// A frame of `frame`'s encoding with one byte changed.
fn patched(frame: Frame, find: &[u8], replace: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut bytes = frame
        .to_bytes()
        .map_err(|e| Failure::new(format!("encode: {e}")))?
        .to_vec();
    let at = bytes
        .windows(find.len())
        .rposition(|window| window == find)
        .ok_or_else(|| Failure::new("nothing to patch"))?;
    bytes[at..at + find.len()].copy_from_slice(replace);
    Ok(bytes)
}

async fn malformed(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let deliver = |body: &str| -> Frame {
        Deliver {
            inbox_seq: 1,
            conversation: CONVERSATION.into(),
            event: peer_event(EventKind::MESSAGE, body),
        }
        .into()
    };
    // (what, bytes, or None for the SEND_ACK case, which needs the request id).
    let cases: Vec<(&str, Option<Vec<u8>>)> = vec![
        (
            "a PING whose nonce is not in its shortest form (NWP-2.2-2)",
            Some(vec![0x03, 0x03, 0x40, 0x07]),
        ),
        ("a frame of Length 0 (NWP-3-2)", Some(vec![0x00])),
        (
            "a DELIVER whose conversation runs past the end of the frame (NWP-3-5)",
            Some(vec![0x05, 0x12, 0x01, 0x0b, 0x64, 0x2f]),
        ),
        (
            "a DELIVER whose conversation is not UTF-8 (NWP-2.2-3)",
            Some(patched(deliver("x"), b"bob", b"bo\xff")?),
        ),
        ("a SEND_ACK whose duplicate flag is 0x02 (NWP-2.2-4)", None),
    ];
    let mut h = Harness::start(ctx, &Args::send(1)).await?;
    h.world.react("m1", &[Reaction::Hold; 8]);
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let wait = if i == 0 {
            PATIENCE
        } else {
            Duration::from_secs(5)
        };
        h.hello(wait)
            .await
            .map_err(|f| f.context("reconnecting after a malformed frame (NWP-5.5-3)"))?;
        h.ready(ReadyOpts::default()).await?;
        h.resumed().await?;
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                h.serve_until(PATIENCE, "m1", |h| {
                    h.conn()
                        .frames(|f| matches!(f, Frame::Send(_)))
                        .next()
                        .is_some()
                })
                .await?;
                let request = h
                    .conn()
                    .frames(|f| matches!(f, Frame::Send(_)))
                    .find_map(|(_, f)| f.request())
                    .unwrap_or(1);
                let ack = SendAck {
                    request,
                    seq: 1,
                    timestamp: 1,
                    duplicate: true,
                };
                let mut bytes = Frame::from(ack)
                    .to_bytes()
                    .map_err(|e| Failure::new(format!("encode: {e}")))?
                    .to_vec();
                if let Some(flag) = bytes.last_mut() {
                    *flag = 0x02;
                }
                bytes
            }
        };
        h.serve_for(Duration::from_millis(100)).await?;
        h.send_raw(&bytes).await?;
        h.expect_close(
            Duration::from_secs(3),
            &format!("after {what} (NWP-3-7, NWP-12-1)"),
        )
        .await?;
        if let Some(error) = &h.conn().client_error {
            check(error.code == ErrorCode::PROTOCOL_VIOLATION, || {
                format!(
                    "after {what} the client sent ERROR {:?}, not PROTOCOL_VIOLATION (NWP-6.1.6-4, NWP-3-7)",
                    error.code
                )
            })?;
        }
    }
    h.finish().await
}

async fn oversized(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    let hello = h.hello(PATIENCE).await?;
    h.ready(ReadyOpts::default()).await?;
    h.resumed().await?;
    h.serve_for(Duration::from_millis(100)).await?;
    // The Length of a frame one byte longer than the client accepts, and a little of it.
    let length = hello.max_frame_size.min(natter_codec::MAX_FRAME_SIZE_CAP) + 1;
    let mut bytes = BytesMut::new();
    natter_codec::varint::encode(length, &mut bytes)
        .map_err(|e| Failure::new(format!("encode: {e}")))?;
    bytes.extend_from_slice(&[0x12; 16]);
    h.send_raw(&bytes).await?;
    h.expect_close(
        Duration::from_secs(3),
        &format!(
            "after the Length {length}, above the max_frame_size {} it announced, with the \
             frame still to come (NWP-3-3)",
            hello.max_frame_size
        ),
    )
    .await?;
    if let Some(error) = &h.conn().client_error {
        let allowed = [ErrorCode::FRAME_TOO_LARGE, ErrorCode::PROTOCOL_VIOLATION];
        check(allowed.contains(&error.code), || {
            format!(
                "the client closed with ERROR {:?}, not FRAME_TOO_LARGE (NWP-6.1.6-4, NWP-3-7)",
                error.code
            )
        })?;
    }
    h.finish().await
}

async fn wrong_side(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let second_ready = Ready {
        version: 1,
        features: Features::NONE,
        max_frame_size: 65_536,
        heartbeat_ms: 5_000,
        session: 9,
        user: USER.into(),
        device: DEVICE.into(),
        inbox_head: 0,
        server_time: 0,
    };
    let cases: [(&str, Frame); 3] = [
        ("ACK, a client frame", Ack { inbox_seq: 1 }.into()),
        (
            "SESSION_CLOSE, a link frame",
            SessionClose { session: 1 }.into(),
        ),
        ("a second READY", second_ready.into()),
    ];
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    for (i, (what, frame)) in cases.into_iter().enumerate() {
        let wait = if i == 0 {
            PATIENCE
        } else {
            Duration::from_secs(5)
        };
        h.hello(wait).await?;
        h.ready(ReadyOpts::default()).await?;
        h.resumed().await?;
        h.serve_for(Duration::from_millis(100)).await?;
        let bytes = frame
            .to_bytes()
            .map_err(|e| Failure::new(format!("encode: {e}")))?;
        h.send_raw(&bytes).await?;
        h.expect_close(
            Duration::from_secs(3),
            &format!("after {what}: a PROTOCOL_VIOLATION, not an unknown frame (NWP-5.3-4)"),
        )
        .await?;
        if let Some(error) = &h.conn().client_error {
            check(error.code == ErrorCode::PROTOCOL_VIOLATION, || {
                format!("after {what} the client sent ERROR {:?}", error.code)
            })?;
        }
    }
    h.finish().await
}

async fn split(ctx: &Ctx<'_>) -> Result<(), Failure> {
    if ctx.target.ws {
        return Err(Failure::skip(
            "a WebSocket carries one frame per message: nothing to split",
        ));
    }
    let mut h = Harness::start(ctx, &Args::send(2)).await?;
    h.hello(PATIENCE).await?;
    // One byte per write, from READY on.
    if let Some(conn) = h.conn_mut() {
        conn.split = true;
    }
    h.ready(ReadyOpts::default()).await?;
    h.resumed().await?;
    for _ in 0..3 {
        let entry = h.world.peer_message("one byte at a time");
        h.deliver(entry).await?;
    }
    h.serve_until(PATIENCE, "m1 and m2 acknowledged", |h| all_sent(h, 2))
        .await?;
    if let Some(conn) = h.conn_mut() {
        conn.split = false;
    }
    // Then several frames in one write.
    let mut frames = Vec::new();
    for _ in 0..4 {
        let entry = h.world.peer_message("merged");
        let (conversation, event) = h
            .world
            .entry(entry)
            .ok_or_else(|| Failure::new("no entry"))?;
        frames.push(
            Deliver {
                inbox_seq: entry,
                conversation: conversation.as_str().into(),
                event,
            }
            .into(),
        );
    }
    frames.push(Ping { nonce: 11 }.into());
    h.send_merged(&frames).await?;
    let head = h.world.head();
    h.serve_until(PATIENCE, "every merged frame handled", |h| {
        h.world.last_ack() >= head && ponged(h, 11)
    })
    .await
    .map_err(|f| f.context("frames split and merged on TCP (NWP-5.6-1)"))?;
    h.finish().await
}

async fn websocket(ctx: &Ctx<'_>) -> Result<(), Failure> {
    if !ctx.target.ws {
        return Err(Failure::skip("for clients on a WebSocket (--ws)"));
    }
    // Every message the client sends is checked to hold exactly one frame.
    let mut h = Harness::start(ctx, &Args::send(2)).await?;
    h.live(ReadyOpts::default()).await?;
    let entry = h.world.peer_message("one frame per message");
    h.deliver(entry).await?;
    h.serve_until(
        PATIENCE,
        "m1 and m2 acknowledged, the event acknowledged",
        |h| all_sent(h, 2) && h.world.last_ack() >= entry,
    )
    .await?;
    // Two PINGs in one message.
    h.send_raw(&[0x02, 0x03, 0x01, 0x02, 0x03, 0x02]).await?;
    h.expect_close(
        Duration::from_secs(3),
        "after a WebSocket message holding two frames (NWP-5.6-2)",
    )
    .await?;
    if let Some(error) = &h.conn().client_error {
        check(error.code == ErrorCode::PROTOCOL_VIOLATION, || {
            format!(
                "the client closed with ERROR {:?}, not PROTOCOL_VIOLATION",
                error.code
            )
        })?;
    }
    h.finish().await
}
