//! Sending from the client's side: SEND and its retries (6.2.1, 7.2), request errors (10),
//! limits (7.12) and TYPING (6.2.7).

use std::time::Duration;

use natter_codec::frame::Error;
use natter_codec::{ErrorCode, Frame};

use super::{all_sent, check, client_scenarios, ms, same_retries};
use crate::Failure;
use crate::client::Ctx;
use crate::client::process::Args;
use crate::client::server::{CONVERSATION, Harness, PATIENCE, Reaction, ReadyOpts};

client_scenarios! {
    "resend-after-a-lost-connection" ["NWP-6.2.1-1", "NWP-6.2.9-1"] => resend,
    "retry-after" ["NWP-7.12-1", "NWP-10-3", "NWP-6.2.1-1"] => retry_after,
    "request-errors" ["NWP-10-2", "NWP-10-3", "NWP-6.1.6-3", "NWP-5.5-1"] => request_errors,
    "frames-within-the-server-maximum" ["NWP-5.1-5", "NWP-3-3", "NWP-7.12-2"] => server_maximum,
    "typing-at-most-once-a-second" ["NWP-6.2.7-1"] => typing,
}

async fn resend(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(3)).await?;
    // m2 is stored but its SEND_ACK is lost with the connection; m3 is lost itself.
    h.world.react("m2", &[Reaction::Store]);
    h.world.react("m3", &[Reaction::Hold]);
    h.live(ReadyOpts::default()).await?;
    h.serve_until(PATIENCE, "m1 acknowledged and m2 sent", |h| {
        h.client.sent("m1") == 1 && h.world.sends_of("m2").count() == 1
    })
    .await?;
    h.serve_for(Duration::from_millis(300)).await?;
    h.cut();
    let after = h.live(ReadyOpts::default()).await?;
    let acked = h.world.last_ack();
    check(after >= acked, || {
        format!("RESUME after {after}, below the {acked} acknowledged (NWP-6.2.9-1)")
    })?;
    h.serve_until(PATIENCE, "m2 and m3 acknowledged", |h| all_sent(h, 3))
        .await?;
    let m1 = h.world.sends_of("m1").count();
    check(m1 == 1, || {
        format!("m1 was sent {m1} times, though its SEND_ACK had come")
    })?;
    for body in ["m2", "m3"] {
        let sends = h.world.sends_of(body).count();
        check(sends >= 2, || {
            format!("{body} was not sent again after the connection was lost (NWP-6.2.1-1)")
        })?;
        same_retries(&h.world, body)?;
    }
    h.finish().await
}

async fn retry_after(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(2)).await?;
    let waits = [
        ("m1", ErrorCode::RATE_LIMITED, 1_200),
        ("m2", ErrorCode::UNAVAILABLE, 800),
    ];
    for (body, code, retry_after_ms) in waits {
        let error = Reaction::Error {
            code,
            retry_after_ms,
        };
        h.world.react(body, &[error]);
    }
    h.live(ReadyOpts::default()).await?;
    h.serve_until(Duration::from_secs(8), "m1 and m2 acknowledged", |h| {
        all_sent(h, 2)
    })
    .await?;
    for (body, code, retry_after_ms) in waits {
        let sends: Vec<_> = h.world.sends_of(body).map(|record| record.at).collect();
        check(sends.len() >= 2, || {
            format!("{body} was acknowledged without being sent again after ERROR {code:?}")
        })?;
        let waited = sends[1] - sends[0];
        check(
            waited + Duration::from_millis(20) >= Duration::from_millis(retry_after_ms),
            || {
                format!(
                    "{body} was sent again {} ms after ERROR {code:?} with retry_after_ms \
                     {retry_after_ms} (NWP-7.12-1)",
                    ms(waited)
                )
            },
        )?;
        same_retries(&h.world, body)?;
    }
    h.finish().await
}

/// An error code version 1 does not know, above 0x10: a request error, not retryable
/// ([NWP-10-2]).
const UNKNOWN_REQUEST_ERROR: ErrorCode = ErrorCode(0x3e);
/// An error code version 1 does not know, below 0x10: INTERNAL_ERROR, which closes.
const UNKNOWN_CONNECTION_ERROR: ErrorCode = ErrorCode(0x0e);

async fn request_errors(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(3)).await?;
    let refusals = [
        ("m1", UNKNOWN_REQUEST_ERROR),
        ("m2", ErrorCode::PAYLOAD_TOO_LARGE),
    ];
    for (body, code) in refusals {
        let error = Reaction::Error {
            code,
            retry_after_ms: 0,
        };
        h.world.react(body, &[error]);
    }
    h.live(ReadyOpts::default()).await?;
    h.serve_until(PATIENCE, "m1 and m2 refused and m3 acknowledged", |h| {
        h.client.failed("m1").is_some()
            && h.client.failed("m2").is_some()
            && h.client.sent("m3") == 1
    })
    .await?;
    for (body, code) in refusals {
        let reported = h.client.failed(body).and_then(|line| line.u64("code"));
        check(reported == Some(code.0), || {
            format!(
                "the client reported {body} failed with code {reported:?}, not {}",
                code.0
            )
        })?;
    }
    // An ERROR for a request the client never made changes nothing.
    let stray = Error::new(4_000, ErrorCode::NOT_FOUND, "no such request");
    h.send(stray.into()).await?;
    let entry = h.world.peer_message("after a stray ERROR");
    h.deliver(entry).await?;
    h.serve_until(PATIENCE, "the next event shown and acknowledged", |h| {
        h.world.last_ack() >= entry
    })
    .await
    .map_err(|f| f.context("after an ERROR for request 4000, never sent (NWP-6.1.6-3)"))?;
    // A connection error of unknown code is INTERNAL_ERROR: it closes, and the client comes
    // back, but the refused requests stay refused.
    h.send_error(UNKNOWN_CONNECTION_ERROR, "a code from the future")
        .await?;
    h.linger(Duration::from_millis(300)).await?;
    h.cut();
    h.hello(Duration::from_secs(4))
        .await
        .map_err(|f| f.context("after ERROR 0x0e, an INTERNAL_ERROR to a v1 client (NWP-10-2)"))?;
    h.ready(ReadyOpts::default()).await?;
    h.resumed().await?;
    h.serve_for(Duration::from_millis(1_500)).await?;
    for (body, code) in refusals {
        let sends = h.world.sends_of(body).count();
        check(sends == 1, || {
            format!(
                "{body} was sent {sends} times, though ERROR {code:?} refused it for good \
                 (NWP-10-2, NWP-10-3)"
            )
        })?;
    }
    h.finish().await
}

async fn server_maximum(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let big = 5_000;
    let args = Args {
        send: 1,
        big: Some(big),
        ..Args::default()
    };
    let mut h = Harness::start(ctx, &args).await?;
    h.hello(PATIENCE).await?;
    let opts = ReadyOpts {
        max_frame_size: 4_096,
        ..ReadyOpts::default()
    };
    h.ready(opts).await?;
    h.resumed().await?;
    // Every frame is checked against the 4,096 READY announced.
    let body = "x".repeat(big);
    h.serve_until(
        PATIENCE,
        "m1 acknowledged and the big message refused",
        |h| h.client.sent("m1") == 1 && h.client.failed(&body).is_some(),
    )
    .await?;
    h.finish().await
}

async fn typing(ctx: &Ctx<'_>) -> Result<(), Failure> {
    if ctx.target.minimal {
        return Err(Failure::skip(
            "the minimal profile sends no TYPING (spec 12)",
        ));
    }
    let args = Args {
        typing: true,
        ..Args::default()
    };
    let mut h = Harness::start(ctx, &args).await?;
    h.live(ReadyOpts::default()).await?;
    // The checks of every frame refuse two TYPINGs to a conversation within a second.
    let stopped = |frame: &Frame| matches!(frame, Frame::Typing(t) if !t.active);
    h.serve_until(Duration::from_secs(6), "TYPING active = false", |h| {
        h.conn().frames(stopped).next().is_some()
    })
    .await?;
    h.serve_for(Duration::from_millis(1_200)).await?;
    let typing: Vec<(bool, String)> = h
        .conn()
        .frames(|f| matches!(f, Frame::Typing(_)))
        .filter_map(|(_, frame)| match frame {
            Frame::Typing(t) => Some((t.active, t.conversation.to_string())),
            _ => None,
        })
        .collect();
    check(typing.first().is_some_and(|(active, _)| *active), || {
        format!("the client's TYPING frames were {typing:?}: none said the user was typing")
    })?;
    check(typing.last().is_some_and(|(active, _)| !active), || {
        format!("the client's last TYPING said the user was still typing: {typing:?} (NWP-6.2.7-1)")
    })?;
    check(typing.iter().all(|(_, c)| c == CONVERSATION), || {
        format!("TYPING to another conversation than {CONVERSATION}: {typing:?}")
    })?;
    h.finish().await
}
