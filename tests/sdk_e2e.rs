//! The Rust SDK against the real `natter serve`: chat, a connection cut mid-send, server
//! restarts, and gap repair from history.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use natter_client::{
    ChatEvent, Client, Config, CursorStore, Direction, Event, Events, MemoryCursorStore,
    OutgoingMessage, Request,
};
use support::{PATIENCE, Server, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio::time::timeout;

/// Connects `user` on `device` to `server`, resuming from `store`.
async fn client(
    server: &Server,
    user: &str,
    device: &str,
    store: &MemoryCursorStore,
) -> (Client, Events) {
    connect(&server.url(), &token(user, device), store).await
}

async fn connect(url: &str, token: &str, store: &MemoryCursorStore) -> (Client, Events) {
    let mut config = Config::new(url, token)
        .unwrap()
        .with_cursor_store(store.clone());
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(500);
    timeout(PATIENCE, Client::connect(config))
        .await
        .unwrap()
        .unwrap()
}

/// The next `count` conversation events of `conversation`, in the order they came.
async fn chat_events(events: &mut Events, conversation: &str, count: usize) -> Vec<ChatEvent> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let event = timeout(PATIENCE, events.next())
            .await
            .unwrap_or_else(|_| panic!("waited for {count} events, got {seen:?}"))
            .expect("the event stream ended");
        if let Some(chat) = event
            .chat_event()
            .filter(|e| e.conversation == conversation)
        {
            seen.push(chat.clone());
        }
    }
    seen
}

/// Reads and discards a client's events: an application must keep reading them, since
/// answers wait behind a full event queue.
fn ignore(mut events: Events) {
    tokio::spawn(async move { while events.next().await.is_some() {} });
}

fn texts(events: &[ChatEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.text().unwrap().to_owned())
        .collect()
}

fn numbered(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("{prefix}{n}")).collect()
}

#[tokio::test]
async fn two_users_chat() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (alice, mut alice_events) =
        client(&server, "alice", "laptop", &MemoryCursorStore::default()).await;
    let (bob, mut bob_events) =
        client(&server, "bob", "phone", &MemoryCursorStore::default()).await;
    let chat = alice.direct_conversation("bob");
    assert_eq!(chat, bob.direct_conversation("alice"));

    let first = alice.send_text(&chat, "hi bob").await.unwrap();
    let got = chat_events(&mut bob_events, &chat, 1).await;
    assert_eq!((got[0].seq, got[0].sender.as_str()), (first.seq, "alice"));
    assert_eq!(got[0].text(), Some("hi bob"));

    let reply = bob.send_text(&chat, "hi alice").await.unwrap();
    assert_eq!(reply.seq, first.seq + 1);
    // Alice sees her own message (from her inbox) and then bob's, in seq order.
    let got = chat_events(&mut alice_events, &chat, 2).await;
    assert_eq!(texts(&got), ["hi bob", "hi alice"]);

    let page = bob
        .history(&chat, 0, Direction::BACKWARD, 10)
        .await
        .unwrap();
    assert_eq!(texts(&page.events), ["hi bob", "hi alice"]);
    let list = bob.conversations(Default::default(), 10).await.unwrap();
    assert!(
        list.conversations
            .iter()
            .any(|c| c.conversation == chat && c.last_seq == reply.seq)
    );
    bob.mark_read(&chat, first.seq).await.unwrap();
}

/// A TCP relay whose first connection is cut after `budget` bytes from the client, in the
/// middle of whatever the client was writing.
struct CuttingProxy {
    address: String,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl CuttingProxy {
    async fn start(upstream: String, budget: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let registry = tasks.clone();
        tokio::spawn(async move {
            let mut budget = Some(budget);
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                let task = tokio::spawn(relay(client, server, budget.take()));
                registry.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { address, tasks }
    }
}

impl CuttingProxy {
    /// How many client connections it has relayed.
    fn connections(&self) -> usize {
        self.tasks.lock().unwrap().len()
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Relays both ways; with a budget, closes both sides once that many client bytes passed.
async fn relay(client: TcpStream, server: TcpStream, budget: Option<usize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut left = budget.unwrap_or(usize::MAX);
    let mut buf = vec![0; 4096];
    while left > 0 {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n.min(left),
        };
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
        left -= n;
    }
    down.abort();
}

#[tokio::test]
async fn sends_cut_mid_flight_are_acknowledged_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // HELLO (with a token of ~100 bytes) and RESUME go through; the cut falls inside the
    // pipelined sends, possibly mid-frame.
    let proxy = CuttingProxy::start(server.tcp.clone(), 1200).await;
    let store = MemoryCursorStore::default();
    let (alice, events) = connect(
        &format!("tcp://{}", proxy.address),
        &token("alice", "laptop"),
        &store,
    )
    .await;
    ignore(events);
    let chat = alice.direct_conversation("bob");

    let mut pending = Vec::new();
    let mut ids = Vec::new();
    for text in numbered("m", 1..=60) {
        let message = OutgoingMessage::text(&chat, &text);
        ids.push(message.client_msg_id);
        pending.push(alice.enqueue(Request::Send(message)).await.unwrap());
    }
    let mut seqs = Vec::new();
    for reply in pending {
        seqs.push(timeout(PATIENCE, reply.sent()).await.unwrap().unwrap().seq);
    }
    assert_eq!(
        seqs,
        (1..=60).collect::<Vec<u64>>(),
        "one seq each, in send order"
    );

    assert!(proxy.connections() >= 2, "the cut forced a reconnect");

    let (bob, bob_events) = client(&server, "bob", "phone", &MemoryCursorStore::default()).await;
    ignore(bob_events);
    let page = bob
        .history(&chat, 0, Direction::FORWARD, 200)
        .await
        .unwrap();
    assert!(!page.more);
    assert_eq!(
        texts(&page.events),
        numbered("m", 1..=60),
        "no duplicates, no holes"
    );
    let stored_ids: Vec<u64> = page.events.iter().map(|e| e.client_msg_id).collect();
    assert_eq!(stored_ids, ids);
}

#[tokio::test]
async fn clients_resume_across_server_restarts_and_miss_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let bob_store = MemoryCursorStore::default();
    let (alice, alice_events) =
        client(&server, "alice", "laptop", &MemoryCursorStore::default()).await;
    ignore(alice_events);
    let (bob, mut bob_events) = client(&server, "bob", "phone", &bob_store).await;
    let chat = alice.direct_conversation("bob");

    alice.send_text(&chat, "m1").await.unwrap();
    assert_eq!(texts(&chat_events(&mut bob_events, &chat, 1).await), ["m1"]);
    bob.close().await;

    // Bob is away: messages before and after a restart wait in his inbox.
    for text in numbered("m", 2..=5) {
        alice.send_text(&chat, &text).await.unwrap();
    }
    server.drain_and_restart();
    // Alice's client reconnects by itself; her sends wait for it.
    for text in numbered("m", 6..=8) {
        timeout(PATIENCE, alice.send_text(&chat, &text))
            .await
            .unwrap()
            .unwrap();
    }

    // Bob comes back with his saved cursor and gets exactly what he missed, in order.
    let (bob, mut bob_events) = client(&server, "bob", "phone", &bob_store).await;
    assert_eq!(
        texts(&chat_events(&mut bob_events, &chat, 7).await),
        numbered("m", 2..=8)
    );

    // A restart while bob is connected: his client resumes without help.
    server.drain_and_restart();
    for text in numbered("m", 9..=10) {
        timeout(PATIENCE, alice.send_text(&chat, &text))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        texts(&chat_events(&mut bob_events, &chat, 2).await),
        ["m9", "m10"]
    );
    drop(bob);
}

#[tokio::test]
async fn a_hole_in_the_inbox_is_repaired_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let bob_store = MemoryCursorStore::default();
    let (alice, alice_events) =
        client(&server, "alice", "laptop", &MemoryCursorStore::default()).await;
    ignore(alice_events);
    let (bob, mut bob_events) = client(&server, "bob", "phone", &bob_store).await;
    let chat = alice.direct_conversation("bob");
    for text in ["m1", "m2"] {
        alice.send_text(&chat, text).await.unwrap();
    }
    assert_eq!(
        texts(&chat_events(&mut bob_events, &chat, 2).await),
        ["m1", "m2"]
    );
    bob.close().await;

    for text in numbered("m", 3..=10) {
        alice.send_text(&chat, &text).await.unwrap();
    }
    // Lose inbox entries 3..9 the way a pruned inbox would: bob's cursor skips them, so
    // the replay brings only m10 and the SDK must find m3..m9 in history.
    let mut cursor = bob_store.load();
    let inbox = cursor.inbox.unwrap();
    cursor.inbox = Some(inbox + 7);
    bob_store.save(&cursor);

    let (_bob, mut bob_events) = client(&server, "bob", "phone", &bob_store).await;
    let mut gap = None;
    let mut repaired = None;
    let mut got = Vec::new();
    while repaired.is_none() || got.len() < 8 {
        match timeout(PATIENCE, bob_events.next()).await.unwrap().unwrap() {
            Event::Gap {
                conversation,
                from,
                to,
            } => gap = Some((conversation, from, to)),
            Event::Repaired { through, .. } => repaired = Some(through),
            Event::RepairFailed { error, .. } => panic!("repair failed: {error}"),
            event => got.extend(event.chat_event().and_then(|e| e.text()).map(str::to_owned)),
        }
    }
    assert_eq!(gap, Some((Some(chat.clone()), 3, 9)));
    assert_eq!(repaired, Some(10));
    assert_eq!(
        got,
        numbered("m", 3..=10),
        "repaired events come in seq order"
    );
}

/// A TCP relay that can stop reading from the server, so the server's queue towards the
/// client fills up exactly as with a slow client.
struct PausingProxy {
    address: String,
    paused: tokio::sync::watch::Sender<bool>,
    task: AbortHandle,
}

impl PausingProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (paused, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A small fixed receive buffer: the kernel cannot absorb the backlog.
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(16 * 1024).unwrap();
                let server = socket.connect(upstream.parse().unwrap()).await.unwrap();
                tokio::spawn(pausable_relay(client, server, watch.clone()));
            }
        });
        Self {
            address,
            paused,
            task: task.abort_handle(),
        }
    }

    fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

impl Drop for PausingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pausable_relay(
    client: TcpStream,
    server: TcpStream,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut buf = vec![0; 16 * 1024];
    loop {
        if paused.wait_for(|paused| !paused).await.is_err() {
            break;
        }
        match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    up.abort();
}

#[tokio::test]
async fn a_reader_too_slow_for_the_server_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[edge.limits]\noutbound_budget = 262144\nrequests_per_sec = 100000.0\n\
                  request_burst = 100000.0\n";
    let config_file = dir.path().join("natter.toml");
    std::fs::write(&config_file, config).unwrap();
    let config_file = config_file.to_str().unwrap();
    let server = Server::start(dir.path(), &["--config", config_file]);
    let proxy = PausingProxy::start(server.tcp.clone()).await;
    let (alice, alice_events) =
        client(&server, "alice", "laptop", &MemoryCursorStore::default()).await;
    ignore(alice_events);
    let store = MemoryCursorStore::default();
    let (_bob, mut bob_events) = connect(
        &format!("tcp://{}", proxy.address),
        &token("bob", "phone"),
        &store,
    )
    .await;
    let chat = alice.direct_conversation("bob");

    // Far more than the server's budget (256 KiB) and socket send buffer (Linux grows it to
    // net.ipv4.tcp_wmem's maximum, 4 MiB by default) can hold while bob is stalled.
    proxy.pause(true);
    let padding = "x".repeat(2_000);
    let total = 3000;
    let mut pending = Vec::new();
    for n in 1..=total {
        let message = OutgoingMessage::text(&chat, &format!("{n} {padding}"));
        let queued = timeout(PATIENCE, alice.enqueue(Request::Send(message)));
        pending.push(queued.await.unwrap().unwrap());
    }
    for reply in pending {
        timeout(PATIENCE, reply.sent()).await.unwrap().unwrap();
    }
    proxy.pause(false);

    // One deadline for the whole catch-up, so a livelock fails instead of hanging.
    let catch_up = async {
        let mut numbers = Vec::new();
        let mut gaps = 0;
        while numbers.len() < total {
            match bob_events.next().await.unwrap() {
                Event::Gap {
                    conversation: None, ..
                } => gaps += 1,
                Event::Message(message) => {
                    let text = message.text().unwrap();
                    numbers.push(text.split(' ').next().unwrap().parse::<usize>().unwrap());
                }
                _ => {}
            }
        }
        (numbers, gaps)
    };
    let (numbers, gaps) = timeout(PATIENCE * 2, catch_up).await.unwrap();
    assert!(
        gaps > 0,
        "the server never had to drop a delivery: the test proved nothing"
    );
    assert_eq!(
        numbers,
        (1..=total).collect::<Vec<_>>(),
        "every message once, in order"
    );
}
