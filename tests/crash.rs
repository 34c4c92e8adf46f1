//! Crash safety on real processes: `natter serve` is killed with SIGKILL at random moments
//! while SDK clients send pipelined messages, then restarted on the same data directory.
//! Afterwards every acknowledged message must be in history exactly once with the seq its
//! ack gave, seqs must be gapless, every receiver device must have seen every message in
//! order, and a new device's inbox replay must hold each event once, in order.
//!
//! CI runs 20 kills per backend. For the long run:
//! `NATTER_CRASH_ROUNDS=200 cargo test --release --test crash -- --nocapture`;
//! `NATTER_CRASH_SEED` replays a run's kill timings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natter_client::{Client, Config, Direction, Event, Events, OutgoingMessage, Request};
use natter_codec::Frame;
use natter_codec::frame::Resume;
use natter_codec::types::Features;
use natter_conformance::wire::Conn;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::Server;
use tokio::task::JoinHandle;

/// Sender/receiver pairs, each in its own direct conversation.
const PAIRS: usize = 3;
/// Sends in flight per sender.
const PIPELINE: usize = 8;
/// Guards against a hang; no assertion depends on how fast anything is.
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_keeps_every_acknowledged_message_across_sigkill() {
    crash_rounds("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_keeps_every_acknowledged_message_across_sigkill() {
    crash_rounds("sled").await;
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Connects `user` with a short reconnect backoff, so each restart is found quickly.
async fn connect(server: &Server, user: &str) -> (Client, Events) {
    let mut config = Config::new(
        &format!("tcp://{}", server.tcp),
        support::token(user, "crash"),
    )
    .expect("config");
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(300);
    Client::connect(config).await.expect("connect")
}

/// A receiver: collects the seqs of the messages its device is handed, in order.
async fn receiver(server: &Server, user: &str) -> (Client, Arc<Mutex<Vec<u64>>>, JoinHandle<()>) {
    let (client, mut events) = connect(server, user).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let collect = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Event::Message(message) = event {
                collect.lock().unwrap().push(message.seq);
            }
        }
    });
    (client, seen, task)
}

/// Sends numbered messages with `PIPELINE` in flight until `stop`, then waits for every one
/// to be acknowledged; returns each body with the seq its ack gave.
async fn sender(client: Client, conversation: String, stop: Arc<AtomicBool>) -> Vec<(String, u64)> {
    let mut in_flight = VecDeque::new();
    let mut acked = Vec::new();
    let mut next = 0u64;
    loop {
        if !stop.load(Ordering::Relaxed) && in_flight.len() < PIPELINE {
            next += 1;
            let body = format!("{}-{next}", client.user());
            let message = OutgoingMessage::text(&conversation, &body);
            let pending = client
                .enqueue(Request::Send(message))
                .await
                .expect("enqueue");
            in_flight.push_back((body, pending));
            continue;
        }
        let Some((body, pending)) = in_flight.pop_front() else {
            break;
        };
        let sent = pending
            .sent()
            .await
            .expect("a send survives crashes through retries");
        acked.push((body, sent.seq));
    }
    acked
}

async fn crash_rounds(backend: &str) {
    let rounds = env_u64("NATTER_CRASH_ROUNDS").unwrap_or(20);
    let seed = env_u64("NATTER_CRASH_SEED").unwrap_or_else(rand::random);
    println!("{backend}: {rounds} kills, NATTER_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(dir.path(), &["--backend", backend]);

    let stop = Arc::new(AtomicBool::new(false));
    let mut pairs = Vec::new();
    for pair in 0..PAIRS {
        let (from, to) = (format!("sender{pair}"), format!("receiver{pair}"));
        let conversation = natter_codec::ids::direct_conversation(&from, &to);
        let (rx_client, seen, rx_task) = receiver(&server, &to).await;
        let sending = tokio::spawn(sender(
            connect(&server, &from).await.0,
            conversation.clone(),
            Arc::clone(&stop),
        ));
        pairs.push((conversation, to, rx_client, seen, rx_task, sending));
    }

    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..250))).await;
        server.kill();
        if round % 10 == 9 {
            println!("{backend}: {} kills", round + 1);
        }
        server.restart();
    }
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for (conversation, receiver_user, rx_client, seen, rx_task, sending) in pairs {
        let acked = tokio::time::timeout(PATIENCE, sending)
            .await
            .expect("senders finish")
            .expect("sender task");
        total += acked.len();
        let history = full_history(&rx_client, &conversation).await;
        check_history(&conversation, &acked, &history);
        let count = history.len() as u64;
        wait_until(|| seen.lock().unwrap().len() as u64 >= count).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            (1..=count).collect::<Vec<_>>(),
            "{conversation}: the receiver's device saw seqs out of order or twice"
        );
        audit_inbox(&server, &receiver_user, &conversation, count).await;
        rx_client.close().await;
        rx_task.abort();
    }
    println!("{backend}: {rounds} kills, {total} messages acknowledged, all present exactly once");
}

/// Every event of a conversation as (seq, body), read forward page by page.
async fn full_history(client: &Client, conversation: &str) -> Vec<(u64, String)> {
    let mut events = Vec::new();
    loop {
        let anchor = events.last().map_or(0, |(seq, _)| *seq);
        let page = client
            .history(conversation, anchor, Direction::FORWARD, 200)
            .await
            .expect("history");
        events.extend(
            page.events
                .into_iter()
                .map(|e| (e.seq, String::from_utf8_lossy(&e.body).into_owned())),
        );
        if !page.more {
            return events;
        }
    }
}

fn check_history(conversation: &str, acked: &[(String, u64)], history: &[(u64, String)]) {
    let seqs: Vec<u64> = history.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "{conversation}: seqs are not gapless"
    );
    let mut by_body: HashMap<&str, u64> = HashMap::new();
    for (seq, body) in history {
        assert!(
            by_body.insert(body, *seq).is_none(),
            "{conversation}: {body} stored twice"
        );
    }
    for (body, seq) in acked {
        assert_eq!(
            by_body.get(body.as_str()),
            Some(seq),
            "{conversation}: acked {body} at seq {seq}"
        );
    }
    assert_eq!(
        history.len(),
        acked.len(),
        "{conversation}: history holds messages nobody sent"
    );
}

/// A new device of the receiver replays its whole inbox: inbox_seqs gapless from 1, and the
/// conversation's events each once, in seq order.
async fn audit_inbox(server: &Server, user: &str, conversation: &str, count: u64) {
    let mut conn = Conn::ready(&server.tcp, &support::token(user, "audit"), Features::NONE)
        .await
        .expect("audit device");
    conn.send(
        Resume {
            request: 1,
            after: 0,
        }
        .into(),
    )
    .await
    .expect("resume");
    let mut entries = Vec::new();
    loop {
        let frame = conn
            .expect(
                |f| matches!(f, Frame::Deliver(_) | Frame::Synced(_)),
                "replay",
            )
            .await
            .expect("replay");
        match frame {
            Frame::Deliver(d) => {
                entries.push((d.inbox_seq, d.conversation.to_string(), d.event.seq))
            }
            _ => break,
        }
    }
    let inbox_seqs: Vec<u64> = entries.iter().map(|e| e.0).collect();
    assert_eq!(
        inbox_seqs,
        (1..=entries.len() as u64).collect::<Vec<_>>(),
        "{user}: inbox_seqs are not gapless"
    );
    let seqs: Vec<u64> = entries
        .iter()
        .filter(|e| e.1 == conversation)
        .map(|e| e.2)
        .collect();
    assert_eq!(
        seqs,
        (1..=count).collect::<Vec<_>>(),
        "{user}: inbox entries of {conversation}"
    );
}

async fn wait_until(done: impl Fn() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition reached");
}
