//! The inbox from the client's side: RESUME and its cursor (6.2.9, 7.3), ACK (6.2.4),
//! duplicates (6.2.3) and gaps (6.2.11, 7.11).

use std::time::Duration;

use natter_codec::frame::Gap;

use super::{check, client_scenarios};
use crate::Failure;
use crate::client::Ctx;
use crate::client::process::Args;
use crate::client::server::{CONVERSATION, Harness, PATIENCE, ReadyOpts};

client_scenarios! {
    "resume-after-a-reconnect" ["NWP-6.2.9-1", "NWP-6.2.4-1"] => resume_after_reconnect,
    "resume-after-a-restart" ["NWP-6.2.9-1"] => resume_after_restart,
    "acks-are-cumulative-and-few" ["NWP-6.2.4-1"] => acks,
    "the-same-event-twice" ["NWP-6.2.3-3"] => duplicates,
    "gaps" ["NWP-6.2.11-1", "NWP-6.2.9-2"] => gaps,
}

/// Appends `n` messages from the peer and delivers them; returns the last inbox_seq.
async fn deliver_new(h: &mut Harness, n: u32) -> Result<u64, Failure> {
    let mut last = 0;
    for _ in 0..n {
        let body = format!("b{}", h.world.head() + 1);
        last = h.world.peer_message(&body);
        h.deliver(last).await?;
    }
    Ok(last)
}

async fn acked(h: &mut Harness, inbox_seq: u64) -> Result<(), Failure> {
    h.serve_until(
        PATIENCE,
        &format!("the ACK of inbox_seq {inbox_seq}"),
        |h| h.world.last_ack() >= inbox_seq,
    )
    .await
}

async fn resume_after_reconnect(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.world.set_base(10);
    let after = h.live(ReadyOpts::default()).await?;
    check(after == 10, || {
        format!("a new device RESUMEd after {after}, not after READY's inbox_head 10 (NWP-6.1.2-2)")
    })?;
    let last = deliver_new(&mut h, 5).await?;
    acked(&mut h, last).await?;
    h.cut();
    // Two more arrive while it is away.
    h.world.peer_message("while away 1");
    h.world.peer_message("while away 2");
    let after = h.live(ReadyOpts::default()).await?;
    check(after == last, || {
        format!(
            "after a reconnect the client RESUMEd after {after}, not after {last}, the last it acknowledged (NWP-6.2.9-1)"
        )
    })?;
    let head = h.world.head();
    acked(&mut h, head).await?;
    h.finish().await
}

async fn resume_after_restart(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.world.set_base(5);
    h.live(ReadyOpts::default()).await?;
    let last = deliver_new(&mut h, 3).await?;
    acked(&mut h, last).await?;
    h.client.close_stdin();
    let status = h.client.wait_exit(PATIENCE).await;
    check(status == Some(Some(0)), || {
        format!("the client did not exit with status 0 once stdin closed: {status:?} (README.md)")
    })?;
    h.cut();
    // One more arrives while it is not running: the next run must not take READY's head.
    h.world.peer_message("while stopped");
    h.restart(&Args::send(0))?;
    let after = h.live(ReadyOpts::default()).await?;
    check(after == last, || {
        format!(
            "after a restart the client RESUMEd after {after}, not after {last}, the last it \
             acknowledged before it stopped (NWP-6.2.9-1)"
        )
    })?;
    let head = h.world.head();
    acked(&mut h, head).await?;
    h.finish().await
}

async fn acks(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    // A steady stream: 60 entries, one every 20 ms.
    let mut last = 0;
    for _ in 0..60 {
        last = deliver_new(&mut h, 1).await?;
        h.serve_for(Duration::from_millis(20)).await?;
    }
    acked(&mut h, last).await?;
    let acks: Vec<_> = h.world.acks.clone();
    for pair in acks.windows(2) {
        check(pair[1].2 >= pair[0].2, || {
            format!(
                "ACK {} after ACK {}: acknowledgements are cumulative (NWP-6.2.4-1)",
                pair[1].2, pair[0].2
            )
        })?;
    }
    let most = acks
        .iter()
        .map(|(at, _, _)| {
            acks.iter()
                .filter(|(other, _, _)| *other >= *at && *other < *at + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    check(most <= 15, || {
        format!(
            "{most} ACKs within one second for 50 deliveries a second: an ACK should cover \
             many entries, a few times a second (NWP-6.2.4-1)"
        )
    })?;
    h.finish().await
}

async fn duplicates(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    let last = deliver_new(&mut h, 3).await?;
    acked(&mut h, last).await?;
    h.cut();
    h.world.peer_message("new");
    // The replay starts again at the second entry: entries 2 and 3 come a second time.
    h.world.replay_from = Some(1);
    h.live(ReadyOpts::default()).await?;
    let head = h.world.head();
    acked(&mut h, head).await?;
    // The output checks refuse an event shown twice.
    h.finish().await
}

async fn gaps(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let mut h = Harness::start(ctx, &Args::send(0)).await?;
    h.live(ReadyOpts::default()).await?;
    let last = deliver_new(&mut h, 2).await?;
    acked(&mut h, last).await?;
    // Entries 3 to 5 are dropped under pressure (NWP-7.11-1): an inbox GAP after SYNCED.
    for i in 3..=5 {
        h.world.peer_message(&format!("dropped {i}"));
    }
    let gap = Gap {
        conversation: "".into(),
        from: last + 1,
        to: last + 3,
    };
    h.send(gap.into()).await?;
    if !h.is_minimal() {
        h.serve_until(
            PATIENCE,
            "the events of the dropped entries, by a new RESUME or from history",
            |h| (3..=5).all(|seq| h.client.printed(CONVERSATION, seq)),
        )
        .await
        .map_err(|f| f.context("after GAP{\"\", 3, 5} (NWP-6.2.11-1)"))?;
        let resumes = h.conn().resumes.clone();
        if let Some(again) = resumes.get(1) {
            check(*again == last, || {
                format!(
                    "after the GAP the client RESUMEd after {again}, not after {last}, the last \
                     it acknowledged (NWP-6.2.11-1)"
                )
            })?;
        }
    }
    // An event too large for the client: a conversation GAP stands for its inbox entry, which
    // counts as sent (NWP-6.2.3-4); the next one is delivered.
    let standing = h.world.peer_message("too large");
    let (_, event) = h
        .world
        .entry(standing)
        .ok_or_else(|| Failure::new("no entry"))?;
    let gap = Gap {
        conversation: CONVERSATION.into(),
        from: event.seq,
        to: event.seq,
    };
    h.send(gap.into()).await?;
    h.world.ackable = h.world.ackable.max(standing);
    let next = h.world.peer_message("after the large one");
    h.deliver(next).await?;
    let seq = event.seq;
    let minimal = h.is_minimal();
    h.serve_until(
        PATIENCE,
        "the event after the GAP, shown and acknowledged",
        |h| {
            h.world.last_ack() >= next
                && h.client.printed(CONVERSATION, seq + 1)
                && (minimal || h.client.printed(CONVERSATION, seq))
        },
    )
    .await
    .map_err(|f| f.context(&format!("after GAP{{{CONVERSATION}, {seq}, {seq}}}")))?;
    h.finish().await
}
