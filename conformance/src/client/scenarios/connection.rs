//! The connection lifecycle from the client's side: spec section 5, HELLO and READY (6.1).

use std::time::Duration;

use natter_codec::frame::{Error, Ping, Pong};
use natter_codec::{ErrorCode, Frame};
use tokio::time::Instant;

use super::{all_sent, check, client_scenarios, m, ms, same_retries};
use crate::Failure;
use crate::client::Ctx;
use crate::client::process::Args;
use crate::client::server::{CONVERSATION, Harness, PATIENCE, Reaction, ReadyOpts};

client_scenarios! {
    "hello-and-resume-as-a-new-device" [
        "NWP-5.1-1", "NWP-3-4", "NWP-6.1.2-2", "NWP-6.2.9-1", "NWP-6.2.9-2", "NWP-2.3-4",
        "NWP-6.2.1-1", "NWP-2.2-2",
    ] => new_device,
    "nothing-between-hello-and-ready" ["NWP-5.3-4", "NWP-5.1-1"] => nothing_before_ready,
    "heartbeat" ["NWP-5.2-1", "NWP-5.2-3", "NWP-6.1.3-1", "NWP-6.1.4-1"] => heartbeat,
    "a-silent-server-is-dead" ["NWP-5.2-3", "NWP-5.5-2", "NWP-6.2.1-1"] => dead_connection,
    "goaway" ["NWP-5.4-2", "NWP-6.2.9-1", "NWP-6.2.1-1"] => goaway,
    "backoff-after-connection-errors" ["NWP-5.5-3", "NWP-5.5-1", "NWP-10-1"] => backoff,
    "no-reconnect-after-unauthenticated" ["NWP-5.5-3", "NWP-8.1-2"] => unauthenticated,
    "no-reconnect-after-token-expired" ["NWP-5.5-3", "NWP-5.1-8", "NWP-8.1-2"] => token_expired,
    "no-reconnect-after-unsupported-version" ["NWP-5.5-3"] => unsupported_version,
    "ready-outside-what-hello-offered" ["NWP-5.1-3", "NWP-3-4"] => bad_ready,
}

/// The slack allowed on a client's timers: scheduling, the pipe, a loaded machine.
const SLACK: Duration = Duration::from_millis(250);

async fn new_device(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(3)).await?;
    h.world.set_base(42);
    let after = h.live(ReadyOpts::default()).await?;
    check(after == 42, || {
        format!(
            "a device with no cursor RESUMEd after {after}, not after READY's inbox_head 42 \
             (NWP-6.1.2-2, NWP-6.2.9-1)"
        )
    })?;
    h.serve_until(PATIENCE, "m1 to m3 acknowledged", |h| all_sent(h, 3))
        .await?;
    // Its own messages come back as DELIVERs, which it shows and acknowledges.
    h.serve_until(PATIENCE, "its own messages shown", |h| {
        (1..=3).all(|seq| h.client.printed(CONVERSATION, seq)) && h.world.last_ack() >= 45
    })
    .await?;
    let bodies: Vec<String> = h
        .world
        .sends
        .iter()
        .map(|record| String::from_utf8_lossy(&record.send.body).into_owned())
        .collect();
    check(bodies == ["m1", "m2", "m3"], || {
        format!("the client sent {bodies:?}, not m1, m2, m3 once each")
    })?;
    let mut ids: Vec<u64> = h.world.sends.iter().map(|r| r.send.client_msg_id).collect();
    ids.sort_unstable();
    ids.dedup();
    check(ids.len() == 3, || {
        "two messages share a client_msg_id (NWP-6.2.1-1)".into()
    })?;
    h.client.close_stdin();
    let status = h.client.wait_exit(PATIENCE).await;
    check(status == Some(Some(0)), || {
        format!("the client did not exit with status 0 once stdin closed: {status:?} (README.md)")
    })?;
    h.finish().await
}

async fn nothing_before_ready(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(3)).await?;
    for n in 1..=3 {
        h.world.react(&m(n), &[Reaction::Hold]);
    }
    h.live(ReadyOpts::default()).await?;
    h.serve_until(PATIENCE, "a SEND", |h| !h.world.sends.is_empty())
        .await?;
    h.serve_for(Duration::from_millis(300)).await?;
    h.cut();
    // Sends are waiting; none of them, nor a PING, may go out before READY.
    h.hello(PATIENCE).await?;
    h.serve_for(Duration::from_millis(1_500)).await?;
    h.ready(ReadyOpts::default()).await?;
    h.resumed().await?;
    h.serve_until(PATIENCE, "m1 to m3 acknowledged", |h| all_sent(h, 3))
        .await?;
    h.finish().await
}

async fn heartbeat(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::heartbeat(1_000)).await?;
    let start = h.conn().ready_at.unwrap_or_else(Instant::now);
    h.serve_for(Duration::from_millis(1_200)).await?;
    let nonce = 0x0123_4567;
    h.send(Ping { nonce }.into()).await?;
    h.serve_until(
        Duration::from_secs(1),
        "the PONG to the server's PING",
        |h| {
            h.conn()
                .frames(|f| matches!(f, Frame::Pong(pong) if pong.nonce == nonce))
                .next()
                .is_some()
        },
    )
    .await
    .map_err(|f| f.context("NWP-5.2-3, NWP-6.1.3-1"))?;
    // A PONG that matches no PING is ignored.
    h.send(Pong { nonce: 987_654 }.into()).await?;
    let end = start + Duration::from_millis(4_500);
    h.serve_for(end.saturating_duration_since(Instant::now()))
        .await
        .map_err(|f| f.context("an idle connection with heartbeat_ms 1000 (NWP-6.1.4-1)"))?;
    let mut times: Vec<Instant> = vec![start];
    times.extend(
        h.conn()
            .received
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| *at > start),
    );
    times.push(Instant::now());
    let longest = times
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    check(longest <= Duration::from_millis(1_000) + SLACK, || {
        format!(
            "the client sent nothing for {} ms with heartbeat_ms 1000 (NWP-5.2-1)",
            ms(longest)
        )
    })?;
    h.finish().await
}

async fn dead_connection(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(1)).await?;
    h.world.react("m1", &[Reaction::Hold]);
    h.live(ReadyOpts::heartbeat(1_000)).await?;
    h.serve_until(PATIENCE, "m1", |h| h.world.sends_of("m1").count() == 1)
        .await?;
    if let Some(conn) = h.conn_mut() {
        conn.silent = true;
    }
    let last = h.conn().last_sent_at;
    h.expect_close(
        Duration::from_secs(4),
        "while the server stayed silent with heartbeat_ms 1000 (NWP-5.2-3)",
    )
    .await?;
    let silence = h.conn().closed_at.unwrap_or_else(Instant::now) - last;
    check(silence >= Duration::from_millis(950), || {
        format!(
            "the client gave up after {} ms of silence, less than heartbeat_ms 1000",
            ms(silence)
        )
    })?;
    check(silence <= Duration::from_millis(2_000) + SLACK * 3, || {
        format!(
            "the client took {} ms of silence to give up, with heartbeat_ms 1000 (NWP-5.2-3)",
            ms(silence)
        )
    })?;
    // It comes back, and the SEND whose outcome it does not know goes again, unchanged.
    h.hello(Duration::from_secs(4)).await?;
    h.ready(ReadyOpts::default()).await?;
    h.resumed().await?;
    h.serve_until(PATIENCE, "m1 acknowledged", |h| h.client.sent("m1") == 1)
        .await?;
    same_retries(&h.world, "m1")?;
    h.finish().await
}

/// GOAWAY's reconnect window, and how many times the runner sends GOAWAY.
const RECONNECT_MS: u64 = 1_000;
const GOAWAYS: usize = 5;

async fn goaway(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(3)).await?;
    for n in 1..=3 {
        h.world.react(&m(n), &[Reaction::Hold]);
    }
    h.live(ReadyOpts::default()).await?;
    h.serve_until(PATIENCE, "a SEND", |h| !h.world.sends.is_empty())
        .await?;
    // Pipelined sends arrive together; a client sending one at a time waits for the answer.
    h.serve_for(Duration::from_millis(300)).await?;
    h.world.reactions.clear();
    let first = h.world.sends[0].send.clone();
    let last = h.world.sends.last().map(|record| record.send.clone());
    h.goaway(RECONNECT_MS).await?;
    // Answers to requests received before GOAWAY still come. A client that sends one at a
    // time now has the next message to send; a client that pipelined gets a retryable
    // ERROR for its last one: both must keep them for the next connection.
    h.ack(&first).await?;
    if let Some(last) = last.filter(|last| last.request != first.request) {
        let mut error = Error::new(last.request, ErrorCode::UNAVAILABLE, "draining");
        error.retry_after_ms = 100;
        h.send(error.into()).await?;
    }
    // Long enough for a retry after 100 ms, or after a backoff of a second.
    h.serve_for(Duration::from_millis(1_500))
        .await
        .map_err(|f| f.context("after GOAWAY"))?;
    let mut delays = Vec::new();
    for round in 1..=GOAWAYS {
        h.cut();
        let closed = h.conn().closed_at.unwrap_or_else(Instant::now);
        let window = Duration::from_millis(RECONNECT_MS);
        h.hello(window + Duration::from_secs(2)).await?;
        let delay = h.conn().accepted_at.saturating_duration_since(closed);
        check(delay <= window + SLACK * 2, || {
            format!(
                "after GOAWAY with reconnect_ms {RECONNECT_MS} the client reconnected after {} \
                 ms (NWP-5.4-2)",
                ms(delay)
            )
        })?;
        delays.push(delay);
        h.ready(ReadyOpts::default()).await?;
        let after = h.resumed().await?;
        let acked = h.world.last_ack();
        check(after >= acked, || {
            format!("RESUME after {after}, below the {acked} acknowledged (NWP-6.2.9-1)")
        })?;
        if round < GOAWAYS {
            h.serve_until(PATIENCE, "m1 to m3 acknowledged", |h| all_sent(h, 3))
                .await?;
            h.serve_for(Duration::from_millis(100)).await?;
            h.goaway(RECONNECT_MS).await?;
            h.serve_for(Duration::from_millis(100)).await?;
        }
    }
    let late = Duration::from_millis(RECONNECT_MS * 85 / 100);
    check(delays.iter().any(|delay| *delay < late), || {
        format!(
            "after {GOAWAYS} GOAWAYs with reconnect_ms {RECONNECT_MS} the client waited {:?} ms: \
             the whole window every time, not a random delay within it (NWP-5.4-2)",
            delays.iter().map(|d| ms(*d)).collect::<Vec<_>>()
        )
    })?;
    for n in 1..=3 {
        same_retries(&h.world, &m(n))?;
    }
    h.serve_until(PATIENCE, "m1 to m3 acknowledged", |h| all_sent(h, 3))
        .await?;
    h.finish().await
}

async fn backoff(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    h.serve_for(Duration::from_millis(200)).await?;
    // Reconnect n waits between half and one and a half times 2^(n-1) seconds: from 1 s,
    // doubling, with jitter.
    let bounds = [(500, 1_500), (1_000, 3_000)];
    for (attempt, (low, high)) in bounds.into_iter().enumerate() {
        h.send_error(ErrorCode::INTERNAL_ERROR, "scripted failure")
            .await?;
        let failed = Instant::now();
        // Nothing more may come on the connection (NWP-5.5-1), which the checks of every
        // frame enforce.
        h.linger(Duration::from_millis(300)).await?;
        h.cut();
        h.hello(Duration::from_millis(high) + Duration::from_secs(1))
            .await?;
        let delay = h.conn().accepted_at.saturating_duration_since(failed);
        check(
            delay + Duration::from_millis(50) >= Duration::from_millis(low)
                && delay <= Duration::from_millis(high) + SLACK,
            || {
                format!(
                    "reconnect {} after ERROR INTERNAL_ERROR came after {} ms, not within {low} \
                     to {high} ms: backoff from 1 s, doubling, with jitter (NWP-5.5-3)",
                    attempt + 1,
                    ms(delay)
                )
            },
        )?;
    }
    h.finish().await
}

/// How long a client that must not reconnect is watched.
const NO_RECONNECT: Duration = Duration::from_secs(4);

/// Checks that the client stops for good after `code`: no connection for a while, then the
/// contract's `fatal` line and exit status 3.
async fn stops(h: &mut Harness, code: ErrorCode) -> Result<(), Failure> {
    h.linger(Duration::from_millis(300)).await?;
    h.cut();
    h.expect_no_connection(
        NO_RECONNECT,
        &format!("with the same token after ERROR {code:?} (NWP-5.5-3)"),
    )
    .await?;
    let status = h.client.wait_exit(Duration::from_secs(1)).await;
    if status != Some(Some(3)) {
        return Err(h.fail(format!(
            "after ERROR {code:?} the client neither reconnected nor exited with status 3 \
             (README.md): {status:?}"
        )));
    }
    let fatal = h
        .client
        .events("fatal")
        .next()
        .and_then(|line| line.u64("code"));
    if fatal != Some(code.0) {
        return Err(h.fail(format!(
            "no {{\"event\":\"fatal\",\"code\":{}}} line (README.md)",
            code.0
        )));
    }
    Ok(())
}

async fn unauthenticated(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    h.serve_for(Duration::from_millis(200)).await?;
    h.cut();
    // The token was revoked meanwhile.
    h.hello(Duration::from_secs(4)).await?;
    h.send_error(ErrorCode::UNAUTHENTICATED, "bad token")
        .await?;
    stops(&mut h, ErrorCode::UNAUTHENTICATED).await?;
    h.finish().await
}

async fn token_expired(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    h.serve_for(Duration::from_millis(200)).await?;
    // The token expires on the open connection ([NWP-5.1-8]).
    h.send_error(ErrorCode::TOKEN_EXPIRED, "token expired")
        .await?;
    stops(&mut h, ErrorCode::TOKEN_EXPIRED).await?;
    h.finish().await
}

async fn unsupported_version(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    h.serve_for(Duration::from_millis(200)).await?;
    h.cut();
    // The deployment was upgraded to versions this client does not speak.
    h.hello(Duration::from_secs(4)).await?;
    h.send_error(ErrorCode::UNSUPPORTED_VERSION, "version 2 only")
        .await?;
    stops(&mut h, ErrorCode::UNSUPPORTED_VERSION).await?;
    h.finish().await
}

async fn bad_ready(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let cases = [
        (
            ReadyOpts {
                version: 2,
                ..ReadyOpts::default()
            },
            "READY version 2, outside the 1 to 1 HELLO offered (NWP-5.1-3)",
        ),
        (
            ReadyOpts {
                max_frame_size: 1_024,
                ..ReadyOpts::default()
            },
            "READY max_frame_size 1024, below 4,096 (NWP-3-4)",
        ),
    ];
    for (opts, what) in cases {
        // A client of its own per case, on a port of its own: a client that reconnects after
        // the first case must not be taken for the second.
        let mut h = Harness::start(ctx, &Args::send(1)).await?;
        h.hello(PATIENCE).await?;
        h.ready(opts).await?;
        h.expect_close(Duration::from_secs(3), &format!("after {what}"))
            .await?;
        let went_on = h
            .conn()
            .frames(|f| !matches!(f, Frame::Hello(_) | Frame::Error(_)))
            .next()
            .map(|(_, frame)| crate::wire::brief(frame));
        check(went_on.is_none(), || {
            format!("after {what} the client sent {went_on:?}")
        })?;
        h.finish().await?;
    }
    Ok(())
}
