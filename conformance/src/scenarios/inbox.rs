//! Delivery, acknowledgement, resume, receipts and overflow: spec 6.2.3 to 6.2.11, 7.3, 7.4,
//! 7.11.

use std::collections::BTreeSet;
use std::time::Duration;

use natter_codec::Frame;
use natter_codec::frame::{Ack, Deliver, Mark, Resume, Typing};
use natter_codec::ids::direct_conversation;
use natter_codec::types::{Direction, EventFlags, Features, Marker};

use super::{
    check, connect, connect_small, delivered, history, live, message, pause, scenarios, send,
    send_bytes, sent,
};
use crate::wire::Conn;
use crate::{Ctx, Failure};

scenarios! {
    "no-deliver-before-resume" ["NWP-6.2.3-1", "NWP-6.2.9-4"] => no_deliver_before_resume,
    "resume-replays" ["NWP-7.3-2", "NWP-7.3-3", "NWP-6.2.3-2", "NWP-6.2.9-2"] => resume_replays,
    "resume-above-head" ["NWP-6.2.9-3"] => resume_above_head,
    "deliver-too-large-becomes-gap" [
        "NWP-6.2.3-4", "NWP-7.12-3", "NWP-12-2", "NWP-5.1-5", "NWP-6.2.11-1", "NWP-7.11-2",
    ] => deliver_too_large,
    "ack-moves-delivered" ["NWP-7.4-2", "NWP-6.2.4-2"] => ack_moves_delivered,
    "read-receipt" ["NWP-7.4-1", "NWP-7.4-3", "NWP-6.2.5-1", "NWP-6.2.6-1"] => read_receipt,
    "receipts-on-open" ["NWP-7.4-4"] => receipts_on_open,
    "overflow-becomes-gap" ["NWP-7.11-1"] => overflow (alone),
    "large-group-fans-out-on-read" ["NWP-7.3-5"] => large_group (alone),
}

async fn no_deliver_before_resume(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    // bob is connected but has not sent RESUME: [`Conn`] fails on any DELIVER or inbox GAP.
    let mut waiting = connect(ctx, &bob, Features::ALL).await?;
    let mut sender = live(ctx, &alice, Features::ALL).await?;
    let seq = send(&mut sender, 1, &conversation, "are you there?").await?;
    waiting
        .quiet(
            Duration::from_millis(500),
            |f| matches!(f, Frame::Deliver(_)),
            "DELIVER before RESUME",
        )
        .await?;
    // What does not come from the inbox flows before RESUME: answers, RECEIPT, TYPING_UPDATE.
    let page = history(&mut waiting, 1, &conversation, 0, Direction::BACKWARD, 10).await?;
    check(page.events.iter().any(|e| e.seq == seq), || {
        format!("history before RESUME: {page:?}")
    })?;
    let mark = Mark {
        request: 2,
        conversation: conversation.as_str().into(),
        marker: Marker::READ,
        seq,
    };
    sender.send(mark.into()).await?;
    sender.answer(2).await?;
    let alice_id = alice.clone();
    waiting
        .expect(
            |f| matches!(f, Frame::Receipt(r) if *r.user == *alice_id),
            "RECEIPT before RESUME",
        )
        .await?;
    let typing = Typing {
        conversation: conversation.as_str().into(),
        active: true,
    };
    sender.send(typing.into()).await?;
    waiting
        .expect(
            |f| matches!(f, Frame::TypingUpdate(_)),
            "TYPING_UPDATE before RESUME",
        )
        .await?;
    // Then RESUME delivers what waited.
    let after = waiting.inbox_head();
    waiting.send(Resume { request: 3, after }.into()).await?;
    delivered(&mut waiting, &conversation, seq).await.map(drop)
}

/// Reads a replay: the DELIVERs' (inbox_seq, seq) until SYNCED, and SYNCED's head.
async fn replay(conn: &mut Conn, request: u64) -> Result<(Vec<(u64, u64)>, u64), Failure> {
    let mut replayed = Vec::new();
    loop {
        let frame = conn
            .expect(
                |f| {
                    matches!(f, Frame::Deliver(_))
                        || matches!(f, Frame::Synced(s) if s.request == request)
                },
                "the replay",
            )
            .await?;
        match frame {
            Frame::Deliver(d) => replayed.push((d.inbox_seq, d.event.seq)),
            Frame::Synced(synced) => return Ok((replayed, synced.inbox_head)),
            _ => {}
        }
    }
}

async fn resume_replays(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut receiver = live(ctx, &bob, Features::NONE).await?;
    let mut sender = connect(ctx, &alice, Features::NONE).await?;
    let first = send(&mut sender, 1, &conversation, "before").await?;
    let d = delivered(&mut receiver, &conversation, first).await?;
    receiver
        .send(
            Ack {
                inbox_seq: d.inbox_seq,
            }
            .into(),
        )
        .await?;
    // The ACK was read before the PONG.
    receiver.barrier().await?;
    drop(receiver);
    let mut missed = Vec::new();
    for request in 2..=4 {
        missed.push(send(&mut sender, request, &conversation, "while away").await?);
    }
    let mut back = connect(ctx, &bob, Features::NONE).await?;
    let resume = |request| -> Frame {
        Resume {
            request,
            after: d.inbox_seq,
        }
        .into()
    };
    back.send(resume(9)).await?;
    let (replayed, head) = replay(&mut back, 9).await?;
    let seqs: Vec<u64> = replayed.iter().map(|(_, seq)| *seq).collect();
    check(seqs == missed, || {
        format!("replayed seqs {seqs:?}, missed {missed:?}")
    })?;
    let inbox_seqs: Vec<u64> = replayed.iter().map(|(inbox, _)| *inbox).collect();
    check(
        inbox_seqs == (d.inbox_seq + 1..=d.inbox_seq + 3).collect::<Vec<_>>()
            && head == d.inbox_seq + 3,
        || format!("replayed inbox_seqs {inbox_seqs:?}, SYNCED at {head}"),
    )?;
    // A second RESUME restarts the replay from its own `after`.
    back.send(resume(10)).await?;
    let (again, _) = replay(&mut back, 10).await?;
    check(again == replayed, || {
        format!("the second replay gave {again:?}, the first {replayed:?}")
    })
}

async fn resume_above_head(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut sender = connect(ctx, &alice, Features::NONE).await?;
    send(&mut sender, 1, &conversation, "one").await?;
    send(&mut sender, 2, &conversation, "two").await?;
    let mut conn = connect(ctx, &bob, Features::NONE).await?;
    let head = conn.inbox_head();
    check(head >= 2, || {
        format!("inbox head {head} after two messages")
    })?;
    conn.send(
        Resume {
            request: 1,
            after: head + 100,
        }
        .into(),
    )
    .await?;
    let (replayed, synced) = replay(&mut conn, 1).await?;
    check(replayed.is_empty() && synced == head, || {
        format!("RESUME above the head {head} replayed {replayed:?} and SYNCED at {synced}")
    })?;
    // What comes next is live from the head.
    let seq = send(&mut sender, 3, &conversation, "three").await?;
    let d = delivered(&mut conn, &conversation, seq).await?;
    check(d.inbox_seq == head + 1, || {
        format!(
            "the next entry came with inbox_seq {}, not {}",
            d.inbox_seq,
            head + 1
        )
    })
}

async fn deliver_too_large(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut small = connect_small(ctx, &bob, Features::NONE).await?;
    let cursor = small.inbox_head();
    small.resume_from_head().await?;
    let mut sender = connect(ctx, &alice, Features::NONE).await?;
    let before = send(&mut sender, 1, &conversation, "small").await?;
    let big = send_bytes(&mut sender, 2, &conversation, &[b'x'; 10_000]).await?;
    let after = send(&mut sender, 3, &conversation, "small again").await?;
    // [`Conn`] refuses any frame above the 4,096 bytes announced; the big event is a GAP.
    let mut seen = Vec::new();
    loop {
        let frame = small
            .expect(
                |f| matches!(f, Frame::Deliver(_) | Frame::Gap(_)),
                "DELIVER or GAP",
            )
            .await?;
        let last = matches!(&frame, Frame::Deliver(d) if d.event.seq == after);
        seen.push(frame);
        if last {
            break;
        }
    }
    let summary = |frames: &[Frame]| -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Deliver(d) => format!("DELIVER {} seq {}", d.inbox_seq, d.event.seq),
                Frame::Gap(g) => format!("GAP {:?} {}..={}", g.conversation, g.from, g.to),
                _ => String::new(),
            })
            .collect()
    };
    let expected = [
        format!("DELIVER {} seq {before}", cursor + 1),
        format!("GAP {conversation:?} {big}..={big}"),
        format!("DELIVER {} seq {after}", cursor + 3),
    ];
    check(summary(&seen) == expected, || {
        format!("received {:?}, expected {expected:?}", summary(&seen))
    })?;
    // The entry counts as sent: ACK past it. A replay gives the same GAP again.
    small
        .send(
            Ack {
                inbox_seq: cursor + 3,
            }
            .into(),
        )
        .await?;
    small.barrier().await?;
    let mut again = connect_small(ctx, &bob, Features::NONE).await?;
    again
        .send(
            Resume {
                request: 1,
                after: cursor,
            }
            .into(),
        )
        .await?;
    let mut replayed = Vec::new();
    loop {
        let frame = again
            .expect(
                |f| matches!(f, Frame::Deliver(_) | Frame::Gap(_) | Frame::Synced(_)),
                "the replay",
            )
            .await?;
        if matches!(frame, Frame::Synced(_)) {
            break;
        }
        replayed.push(frame);
    }
    check(summary(&replayed) == expected, || {
        format!("replayed {:?}, expected {expected:?}", summary(&replayed))
    })?;
    // The client may read the event from history (its body left out: [NWP-7.5-6]).
    let page = history(&mut again, 2, &conversation, big - 1, Direction::FORWARD, 1).await?;
    let event = page.events.first();
    check(
        event.is_some_and(|e| e.seq == big && e.flags.contains(EventFlags::OMITTED)),
        || format!("HISTORY FORWARD from {}: {page:?}", big - 1),
    )
}

async fn ack_moves_delivered(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut sender = live(ctx, &alice, Features::RECEIPTS).await?;
    let mut receiver = live(ctx, &bob, Features::NONE).await?;
    let one = send(&mut sender, 1, &conversation, "one").await?;
    let two = send(&mut sender, 2, &conversation, "two").await?;
    let first = delivered(&mut receiver, &conversation, one).await?;
    let second = delivered(&mut receiver, &conversation, two).await?;
    receiver
        .send(
            Ack {
                inbox_seq: second.inbox_seq,
            }
            .into(),
        )
        .await?;
    let bob_id = bob.clone();
    sender
        .expect(
            |f| matches!(f, Frame::Receipt(r) if *r.user == *bob_id && r.delivered == two),
            "RECEIPT delivered",
        )
        .await?;
    // A lower ACK changes nothing; one above the head is clamped to it.
    receiver
        .send(
            Ack {
                inbox_seq: first.inbox_seq,
            }
            .into(),
        )
        .await?;
    receiver
        .send(
            Ack {
                inbox_seq: second.inbox_seq + 1_000,
            }
            .into(),
        )
        .await?;
    let answered = receiver.barrier().await?;
    check(answered.is_empty(), || {
        format!("ACK answered with {answered:?}")
    })?;
    let bob_id = bob.clone();
    sender
        .quiet(
            Duration::from_millis(500),
            |f| matches!(f, Frame::Receipt(r) if *r.user == *bob_id && r.delivered != two),
            "the delivered pointer moved on an ACK that was lower, or above the head",
        )
        .await
}

async fn read_receipt(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let mut sender = live(ctx, &alice, Features::RECEIPTS).await?;
    let mut reader = connect(ctx, &bob, Features::RECEIPTS).await?;
    let mut readers_tablet =
        Conn::ready(ctx.addr(), &ctx.token(&bob, "tablet")?, Features::RECEIPTS).await?;
    send(&mut sender, 1, &conversation, "one").await?;
    let two = send(&mut sender, 2, &conversation, "two").await?;
    let mark = |request, seq| Mark {
        request,
        conversation: conversation.as_str().into(),
        marker: Marker::READ,
        seq,
    };
    reader.send(mark(1, two - 1).into()).await?;
    reader.answer(1).await?;
    let bob_id = bob.clone();
    let read = move |seq: u64| {
        let bob_id = bob_id.clone();
        move |f: &Frame| matches!(f, Frame::Receipt(r) if *r.user == *bob_id && r.read == seq)
    };
    sender.expect(read(two - 1), "RECEIPT read").await?;
    // Read on one device is read on all of them.
    readers_tablet
        .expect(read(two - 1), "RECEIPT on the reader's other device")
        .await?;
    // Backwards changes nothing and is still DONE; beyond the head is clamped to it.
    reader.send(mark(2, 1).into()).await?;
    reader.answer(2).await?;
    reader.send(mark(3, two + 50).into()).await?;
    reader.answer(3).await?;
    sender.expect(read(two), "RECEIPT read, clamped").await?;
    let bob_id = bob.clone();
    sender
        .quiet(
            Duration::from_millis(300),
            |f| matches!(f, Frame::Receipt(r) if *r.user == *bob_id && r.read != two),
            "a read pointer moved back, or beyond the head",
        )
        .await
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
    let newest = natter_codec::frame::History {
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

async fn overflow(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let conversation = direct_conversation(&alice, &bob);
    let token = ctx.token(&bob, "slow")?;
    let mut slow = Conn::open_with_small_buffer(ctx.addr()).await?;
    slow.handshake(crate::wire::hello_frame(&token, Features::NONE))
        .await?;
    let cursor = slow.inbox_head();
    slow.resume_from_head().await?;
    // bob stops reading; alice's devices send more than any outbound queue should hold.
    const DEVICES: u64 = 3;
    const PER_DEVICE: u64 = 100;
    let body = vec![b'o'; 15_000];
    let mut senders = Vec::new();
    for device in 0..DEVICES {
        let token = ctx.token(&alice, &format!("sender-{device}"))?;
        senders.push(Conn::ready(ctx.addr(), &token, Features::NONE).await?);
    }
    for (device, conn) in senders.iter_mut().enumerate() {
        for request in 1..=PER_DEVICE {
            let id = device as u64 * 1_000 + request;
            conn.send(message(request, &conversation, id, &body))
                .await?;
        }
    }
    for conn in &mut senders {
        for request in 1..=PER_DEVICE {
            sent(conn, request)
                .await
                .map_err(|f| f.context("sending the flood"))?;
        }
    }
    pause(500).await;
    // Now read everything there is: DELIVERs, and a GAP for what did not fit.
    let mut entries = BTreeSet::new();
    let mut gaps = Vec::new();
    while let Some(frame) = slow.recv_within(Duration::from_secs(1)).await? {
        match frame {
            Frame::Deliver(Deliver { inbox_seq, .. }) => {
                entries.insert(inbox_seq);
            }
            Frame::Gap(gap) if gap.conversation.is_empty() => gaps.push((gap.from, gap.to)),
            Frame::Error(error) => {
                return Err(Failure::new(format!(
                    "closed before the client could catch up: {error:?}"
                )));
            }
            _ => {}
        }
    }
    let total = DEVICES * PER_DEVICE;
    check(!gaps.is_empty(), || {
        format!(
            "{} of {total} entries of 15 KB reached a client that did not read, and no GAP: \
             is the outbound queue bounded?",
            entries.len()
        )
    })?;
    // The client re-RESUMEs from its cursor and gets what was dropped.
    let contiguous = (cursor + 1..)
        .take_while(|seq| entries.contains(seq))
        .last()
        .unwrap_or(cursor);
    slow.send(
        Resume {
            request: 2,
            after: contiguous,
        }
        .into(),
    )
    .await?;
    let (replayed, head) = replay(&mut slow, 2).await?;
    entries.extend(replayed.iter().map(|(inbox, _)| *inbox));
    let missing: Vec<u64> = (cursor + 1..=cursor + total)
        .filter(|seq| !entries.contains(seq))
        .collect();
    check(missing.is_empty() && head >= cursor + total, || {
        format!("after the GAPs {gaps:?} and a new RESUME, inbox_seqs {missing:?} never came")
    })
}

async fn large_group(ctx: &Ctx<'_>) -> Result<(), Failure> {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    // A member is online from the start; creating a group this large takes the server a while.
    let mut member = live(ctx, &bob, Features::NONE).await?;
    let head = member.inbox_head();
    let mut owner = connect(ctx, &alice, Features::NONE).await?;
    let others: Vec<String> = (0..500).map(|i| ctx.user(&format!("m{i}"))).collect();
    let mut members: Vec<&str> = others.iter().map(String::as_str).collect();
    members.push(&bob);
    let create = natter_codec::frame::GroupCreate {
        request: 1,
        title: "stadium".into(),
        members: members.iter().map(|m| (*m).into()).collect(),
    };
    owner.send(create.into()).await?;
    let patience = Duration::from_secs(60);
    // bob waits too, and keeps his connection alive meanwhile.
    let info = tokio::select! {
        info = owner.expect_patiently(|f| f.request() == Some(1), "GROUP_INFO", patience) => info?,
        failure = member.expect_patiently(|_| false, "nothing", Duration::from_secs(3_600)) => {
            return Err(failure.err().unwrap_or_else(|| Failure::new("?")).context("bob"));
        }
    };
    let info = match info {
        Frame::GroupInfo(info) => info,
        other => return Err(Failure::new(format!("expected GROUP_INFO, got {other:?}"))),
    };
    check(info.members.len() == 502, || {
        format!("{} members instead of 502", info.members.len())
    })?;
    let group = info.conversation.to_string();
    owner
        .send(message(2, &group, 2, b"welcome, all 502 of you"))
        .await?;
    let seq = match owner
        .expect_patiently(|f| f.request() == Some(2), "SEND_ACK", patience)
        .await?
    {
        Frame::SendAck(ack) => ack.seq,
        other => return Err(Failure::new(format!("expected SEND_ACK, got {other:?}"))),
    };
    let frame = member
        .expect_patiently(
            |f| matches!(f, Frame::Deliver(d) if *d.conversation == *group && d.event.seq == seq),
            "the DELIVER of the message",
            patience,
        )
        .await?;
    let Frame::Deliver(d) = frame else {
        return Err(Failure::new("expected DELIVER"));
    };
    check(d.inbox_seq == 0, || {
        format!(
            "a live event of a 502-member group came with inbox_seq {}",
            d.inbox_seq
        )
    })?;
    // No inbox entry: a new connection finds the inbox head where it was.
    let mut later = connect(ctx, &bob, Features::NONE).await?;
    check(later.inbox_head() == head, || {
        format!(
            "the group made inbox entries: head {} after, {head} before",
            later.inbox_head()
        )
    })?;
    // Offline members catch up through history.
    let page = history(&mut later, 1, &group, 0, Direction::BACKWARD, 1).await?;
    check(page.events.first().is_some_and(|e| e.seq == seq), || {
        format!("history of the large group: {page:?}")
    })
}
