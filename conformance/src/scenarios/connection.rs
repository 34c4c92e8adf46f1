//! The connection lifecycle: spec section 5, the frames of 6.1, tokens (8.1).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use natter_codec::frame::{Ack, Deliver, Ping, Pong, Ready, Resume, Routed, SendAck, Typing};
use natter_codec::ids::direct_conversation;
use natter_codec::types::Features;
use natter_codec::{ErrorCode, Frame, split_frame};

use super::{
    DEVICE, SMALL_FRAME, check, connect, delivered, hello_with_max, live, scenarios, send,
};
use crate::spec::{WEBSOCKET_VECTORS, vectors};
use crate::wire::{Conn, hello, hello_frame};
use crate::ws::{Message, WsConn};
use crate::{Ctx, Failure};

scenarios! {
    "handshake" ["NWP-5.1-2", "NWP-5.1-3", "NWP-5.1-4", "NWP-6.1.2-1", "NWP-11-4"] => handshake,
    "hello-must-come-first" ["NWP-5.1-1"] => hello_first,
    "hello-first-whatever-the-type" ["NWP-5.1-7"] => hello_first_unknown,
    "hello-timeout" ["NWP-5.1-1"] => hello_timeout,
    "second-hello" ["NWP-5.1-6"] => second_hello,
    "bad-token" ["NWP-5.1-2", "NWP-8.1-1"] => bad_token,
    "expired-token" ["NWP-5.1-2", "NWP-8.1-1"] => expired_token,
    "token-expiry-closes" ["NWP-5.1-8"] => token_expiry,
    "unsupported-version" ["NWP-5.1-2", "NWP-6.1.1-1"] => unsupported_version,
    "small-max-frame-size" ["NWP-3-4", "NWP-5.1-5"] => small_max_frame_size,
    "too-many-connections" ["NWP-5.1-2"] => too_many_connections,
    "heartbeat-deadline" ["NWP-5.2-2"] => heartbeat_deadline,
    "ping-pong" ["NWP-5.2-3", "NWP-6.1.3-1", "NWP-6.1.4-1"] => ping_pong,
    "no-answer-frames" ["NWP-5.3-3"] => no_answer_frames,
    "wrong-side-frame" ["NWP-5.3-4"] => wrong_side,
    "websocket-one-frame-per-message" ["NWP-5.6-2"] => websocket,
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
    check(!ready.features.contains(Features(1 << 40)), || {
        "granted an unknown feature bit".into()
    })?;
    check(ready.heartbeat_ms >= 1_000, || {
        format!("heartbeat_ms {}", ready.heartbeat_ms)
    })?;
    check(ready.max_frame_size >= 4_096, || {
        format!("max_frame_size {}", ready.max_frame_size)
    })?;
    check(*ready.user == *user && *ready.device == *DEVICE, || {
        format!("READY names {:?} on {:?}", ready.user, ready.device)
    })?;
    // A client offering versions 1 to 9 gets 1, the highest both speak.
    let mut wide = hello_frame(&ctx.token(&user, DEVICE)?, Features::NONE);
    wide.max_version = 9;
    let conn = Conn::ready_with(ctx.addr(), wide).await?;
    let version = conn.ready.as_ref().map_or(0, |r| r.version);
    check(version == 1, || {
        format!("HELLO 1..=9 got version {version}")
    })
}

async fn hello_first(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = Conn::open(ctx.addr()).await?;
    conn.send(Ping { nonce: 1 }.into()).await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION).await
}

async fn hello_first_unknown(ctx: &Ctx<'_>) -> Result<(), Failure> {
    // Vector unknown_type: a frame a receiver skips after READY, but not before HELLO.
    let mut conn = Conn::open(ctx.addr()).await?;
    conn.send_raw(&[0x07, 0x40, 0x7f, 0x01, 0x02, 0x03, 0x04, 0x05])
        .await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION).await
}

async fn hello_timeout(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = Conn::open(ctx.addr()).await?;
    let start = Instant::now();
    conn.expect_close_within(ErrorCode::IDLE_TIMEOUT, Duration::from_secs(13))
        .await?;
    let waited = start.elapsed();
    // Closing much sooner would refuse clients that take the 10 seconds they are allowed.
    check(waited >= Duration::from_secs(9), || {
        format!("closed after {waited:?}, before the 10 s HELLO deadline")
    })
}

async fn second_hello(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let mut conn = connect(ctx, &user, Features::NONE).await?;
    conn.send(hello(&ctx.token(&user, DEVICE)?, Features::NONE))
        .await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION).await
}

async fn bad_token(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = Conn::open(ctx.addr()).await?;
    conn.send(hello("not a token", Features::NONE)).await?;
    conn.expect_close(ErrorCode::UNAUTHENTICATED).await
}

async fn expired_token(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let token = ctx.token_valid_for(&ctx.user("alice"), DEVICE, Duration::ZERO)?;
    let mut conn = Conn::open(ctx.addr()).await?;
    conn.send(hello(&token, Features::NONE)).await?;
    conn.expect_close(ErrorCode::TOKEN_EXPIRED).await
}

async fn token_expiry(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let validity = Duration::from_secs(2);
    let token = ctx.token_valid_for(&alice, DEVICE, validity)?;
    let minted = Instant::now();
    let mut conn = Conn::live(ctx.addr(), &token, Features::NONE).await?;
    let cursor = conn.inbox_head();
    // Stay alive by the heartbeat rules until the token runs out.
    let deadline = minted + validity + Duration::from_secs(4);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                "the connection outlived its token by 4 s without TOKEN_EXPIRED",
            ));
        }
        match conn
            .recv_within(left.min(Duration::from_millis(500)))
            .await?
        {
            Some(Frame::Error(error)) => {
                check(
                    error.code == ErrorCode::TOKEN_EXPIRED && error.request == 0,
                    || format!("expected ERROR{{0, TOKEN_EXPIRED}}, got {error:?}"),
                )?;
                break;
            }
            Some(Frame::Ping(ping)) => conn.send(Pong { nonce: ping.nonce }.into()).await?,
            Some(_) => {}
            None => conn.send(Ping { nonce: 1 }.into()).await?,
        }
    }
    check(
        minted.elapsed() >= validity - Duration::from_millis(500),
        || {
            format!(
                "TOKEN_EXPIRED after {:?}, before the token expired",
                minted.elapsed()
            )
        },
    )?;
    conn.expect_end().await?;
    // Nothing is lost: what arrives meanwhile is replayed to the next connection.
    let mut sender = connect(ctx, &bob, Features::NONE).await?;
    let seq = send(&mut sender, 1, &conversation, "while you were out").await?;
    let mut again = Conn::ready(ctx.addr(), &ctx.token(&alice, DEVICE)?, Features::NONE).await?;
    again
        .send(
            Resume {
                request: 1,
                after: cursor,
            }
            .into(),
        )
        .await?;
    delivered(&mut again, &conversation, seq).await.map(drop)
}

async fn unsupported_version(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let token = ctx.token(&ctx.user("alice"), DEVICE)?;
    for (min, max) in [(90, 99), (2, 1)] {
        let mut conn = Conn::open(ctx.addr()).await?;
        let mut hello = hello_frame(&token, Features::NONE);
        hello.min_version = min;
        hello.max_version = max;
        conn.send(hello.into()).await?;
        conn.expect_close(ErrorCode::UNSUPPORTED_VERSION)
            .await
            .map_err(|f| f.context(&format!("HELLO versions {min}..={max}")))?;
    }
    Ok(())
}

async fn small_max_frame_size(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let mut conn = Conn::open(ctx.addr()).await?;
    conn.send(hello_with_max(ctx, &user, Features::NONE, SMALL_FRAME - 1)?.into())
        .await?;
    conn.expect_close(ErrorCode::PROTOCOL_VIOLATION)
        .await
        .map_err(|f| f.context("HELLO max_frame_size 4095"))?;
    // 4,096 is allowed, and so is a maximum above the 16 MiB cap (treated as the cap).
    for max in [SMALL_FRAME, 1 << 30] {
        let hello = hello_with_max(ctx, &user, Features::NONE, max)?;
        let mut conn = Conn::ready_with(ctx.addr(), hello)
            .await
            .map_err(|f| f.context(&format!("HELLO max_frame_size {max}")))?;
        conn.barrier().await?;
    }
    Ok(())
}

async fn too_many_connections(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let token = ctx.token(&user, DEVICE)?;
    let mut open = Vec::new();
    for count in 1..=100 {
        let mut conn = Conn::open(ctx.addr()).await?;
        conn.send(hello(&token, Features::NONE)).await?;
        match conn.recv().await? {
            Frame::Ready(_) => open.push(conn),
            Frame::Error(error) if error.code == ErrorCode::TOO_MANY_CONNECTIONS => {
                check(count > 1, || "the first connection was refused".into())?;
                return conn.expect_end().await;
            }
            other => return Err(Failure::new(format!("expected READY, got {other:?}"))),
        }
    }
    Err(Failure::new(
        "100 connections of one user were all accepted: no TOO_MANY_CONNECTIONS",
    ))
}

async fn heartbeat_deadline(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let mut silent = connect(ctx, &user, Features::NONE).await?;
    let mut chatty = connect(ctx, &user, Features::NONE).await?;
    let heartbeat = silent.ready.as_ref().map_or(0, |r| r.heartbeat_ms);
    let heartbeat = Duration::from_millis(heartbeat);
    if heartbeat > Duration::from_secs(10) {
        return Err(Failure::skip(format!(
            "heartbeat_ms is {heartbeat:?}: waiting twice that is too long for one run"
        )));
    }
    silent.never_pong();
    let start = Instant::now();
    let quiet = async {
        // Never answers anything, not even a PING: silence is the point.
        loop {
            match silent
                .recv_within(2 * heartbeat + Duration::from_secs(3))
                .await
            {
                Ok(Some(Frame::Error(error))) if error.code == ErrorCode::IDLE_TIMEOUT => {
                    return Ok(start.elapsed());
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(Failure::new("a silent connection stayed open")),
                Err(failure) => return Err(failure.context("the silent connection")),
            }
        }
    };
    let alive = async {
        let mut nonce = 0;
        while start.elapsed() < 2 * heartbeat + Duration::from_secs(1) {
            nonce += 1;
            chatty.send(Ping { nonce }.into()).await?;
            chatty
                .expect(|f| matches!(f, Frame::Pong(p) if p.nonce == nonce), "PONG")
                .await?;
            tokio::time::sleep(heartbeat / 2).await;
        }
        Ok::<(), Failure>(())
    };
    let (closed_after, alive) = tokio::join!(quiet, alive);
    let closed_after = closed_after?;
    alive.map_err(|f| f.context("a connection that sends PING every heartbeat_ms / 2"))?;
    check(closed_after >= heartbeat, || {
        format!("closed after {closed_after:?}, sooner than heartbeat_ms {heartbeat:?}")
    })
}

async fn ping_pong(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut conn = connect(ctx, &ctx.user("alice"), Features::NONE).await?;
    for nonce in [0, 1, 1 << 40] {
        conn.send(Ping { nonce }.into()).await?;
        conn.expect(|f| matches!(f, Frame::Pong(p) if p.nonce == nonce), "PONG")
            .await?;
    }
    // A PONG that answers no PING is ignored.
    conn.send(Pong { nonce: 99 }.into()).await?;
    let before = conn.barrier().await?;
    check(before.is_empty(), || {
        format!("a stray PONG was answered with {before:?}")
    })
}

async fn no_answer_frames(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let mut conn = live(ctx, &alice, Features::ALL).await?;
    conn.send(Ack { inbox_seq: 0 }.into()).await?;
    conn.send(Ack { inbox_seq: 5 }.into()).await?;
    let typing = Typing {
        conversation: direct_conversation(&alice, &bob).into(),
        active: true,
    };
    conn.send(typing.into()).await?;
    let before = conn.barrier().await?;
    check(before.is_empty(), || {
        format!("ACK or TYPING was answered with {before:?}")
    })
}

async fn wrong_side(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    let frames: [(&str, Frame); 4] = [
        (
            "SEND_ACK",
            SendAck {
                request: 1,
                seq: 1,
                timestamp: 1,
                duplicate: false,
            }
            .into(),
        ),
        (
            "DELIVER",
            Deliver {
                inbox_seq: 1,
                conversation: "g/x".into(),
                event: Default::default(),
            }
            .into(),
        ),
        (
            "READY",
            Ready {
                version: 1,
                features: Features::NONE,
                max_frame_size: 65_536,
                heartbeat_ms: 30_000,
                session: 1,
                user: user.as_str().into(),
                device: DEVICE.into(),
                inbox_head: 0,
                server_time: 0,
            }
            .into(),
        ),
        (
            "ROUTED (a link frame)",
            Routed {
                session: 1,
                user: user.as_str().into(),
                device: DEVICE.into(),
                frame: Frame::from(Ping { nonce: 1 })
                    .to_bytes()
                    .map_err(|e| Failure::new(e.to_string()))?,
            }
            .into(),
        ),
    ];
    for (what, frame) in frames {
        let mut conn = connect(ctx, &user, Features::NONE).await?;
        conn.send(frame).await?;
        conn.expect_close(ErrorCode::PROTOCOL_VIOLATION)
            .await
            .map_err(|f| f.context(what))?;
    }
    Ok(())
}

/// The one frame a WebSocket message must hold.
fn one_frame(message: Message) -> Result<Frame, Failure> {
    let Message::Binary(payload) = message else {
        return Err(Failure::new(format!(
            "expected a binary message, got {message:?}"
        )));
    };
    let mut buf = BytesMut::from(&payload[..]);
    match split_frame(&mut buf, natter_codec::MAX_FRAME_SIZE_CAP) {
        Ok(Some(raw)) if buf.is_empty() => {
            Frame::decode(raw).map_err(|e| Failure::new(format!("malformed frame: {e}")))
        }
        _ => Err(Failure::new(format!(
            "a message that is not exactly one frame: {}",
            crate::wire::hex(&payload)
        ))),
    }
}

/// A WebSocket connection through HELLO and READY.
async fn ws_ready(ctx: &Ctx<'_>, user: &str) -> Result<WsConn, Failure> {
    let (addr, path) = ctx.ws()?;
    let mut ws = WsConn::open(addr, path).await?;
    let hello = hello(&ctx.token(user, DEVICE)?, Features::NONE)
        .to_bytes()
        .map_err(|e| Failure::new(e.to_string()))?;
    ws.send_binary(&hello).await?;
    match one_frame(ws.recv().await?)? {
        Frame::Ready(_) => Ok(ws),
        other => Err(Failure::new(format!("expected READY, got {other:?}"))),
    }
}

/// Expects ERROR PROTOCOL_VIOLATION in one message, then the end of the WebSocket.
async fn ws_expect_violation(ws: &mut WsConn) -> Result<(), Failure> {
    loop {
        match one_frame(ws.recv().await?)? {
            Frame::Error(error) if error.code == ErrorCode::PROTOCOL_VIOLATION => break,
            Frame::Error(error) => {
                return Err(Failure::new(format!(
                    "expected PROTOCOL_VIOLATION, got {error:?}"
                )));
            }
            Frame::Ping(_) => {}
            other => return Err(Failure::new(format!("expected ERROR, got {other:?}"))),
        }
    }
    match ws.recv_within(crate::wire::ANSWER_TIMEOUT).await? {
        Some(Message::Close) => Ok(()),
        None => Err(Failure::new("the WebSocket stayed open after the ERROR")),
        Some(other) => Err(Failure::new(format!("after the ERROR: {other:?}"))),
    }
}

async fn websocket(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let user = ctx.user("alice");
    // Every answer is one frame in one message.
    let mut ws = ws_ready(ctx, &user).await?;
    for nonce in [1, 2] {
        let ping = Frame::from(Ping { nonce })
            .to_bytes()
            .map_err(|e| Failure::new(e.to_string()))?;
        ws.send_binary(&ping).await?;
        match one_frame(ws.recv().await?)? {
            Frame::Pong(pong) if pong.nonce == nonce => {}
            other => {
                return Err(Failure::new(format!(
                    "expected PONG {nonce}, got {other:?}"
                )));
            }
        }
    }
    // The vectors of spec/vectors/websocket.txt, each on a connection of its own.
    for vector in vectors(WEBSOCKET_VECTORS) {
        let mut ws = ws_ready(ctx, &user).await?;
        ws.send_binary(&vector.bytes).await?;
        let outcome = if vector.expect == "frame" {
            match one_frame(ws.recv().await?)? {
                Frame::Pong(_) => Ok(()),
                other => Err(Failure::new(format!("expected PONG, got {other:?}"))),
            }
        } else {
            ws_expect_violation(&mut ws).await
        };
        outcome.map_err(|f| f.context(&format!("vector {}", vector.name)))?;
    }
    let mut ws = ws_ready(ctx, &user).await?;
    ws.send_text("hello").await?;
    ws_expect_violation(&mut ws)
        .await
        .map_err(|f| f.context("a text message"))
}
