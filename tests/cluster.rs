//! Cluster mode on real processes: two brokers and two edges joined by a cluster file. A
//! device drops its connection to one edge and resumes on the other without missing or
//! reordering anything, with its user, its peer and their conversation owned by different
//! brokers, so every message crosses broker-to-broker links.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use natter_client::{Client, Config, Event, Events, MemoryCursorStore};
use natter_codec::ring::{DEFAULT_VNODES, Ring};

const PATIENCE: Duration = Duration::from_secs(30);

/// Child processes, killed when dropped.
struct Cluster(Vec<Child>);

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn spawn(config: &Path, args: &[&str]) -> Child {
    Command::new(support::natter())
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start natter")
}

/// Two users whose home brokers differ, and whose conversation the first one's home does
/// not own, so a message travels edge -> owner -> the other home broker.
fn spread_users(ring: &Ring) -> (String, String) {
    for a in 0..100 {
        for b in 0..100 {
            let (alice, bob) = (format!("alice{a}"), format!("bob{b}"));
            let conversation = natter_codec::ids::direct_conversation(&alice, &bob);
            let (home_a, home_b) = (ring.home(&alice), ring.home(&bob));
            if home_a != home_b && ring.conversation_owner(&conversation) == home_b {
                return (alice, bob);
            }
        }
    }
    panic!("no spread of users found");
}

/// Writes a cluster file for `brokers` (id, link port) that accepts the test tokens.
fn cluster_file(dir: &Path, brokers: &[(&str, u16)]) -> std::path::PathBuf {
    let brokers: Vec<String> = brokers
        .iter()
        .map(|(id, port)| format!("{{ id = \"{id}\", link = \"127.0.0.1:{port}\" }}"))
        .collect();
    let path = dir.join("cluster.toml");
    let text = format!(
        "[cluster]\nring_version = 3\nsecret = \"cluster secret\"\nbrokers = [{}]\n\n\
         [edge]\ntoken_keys = [{{ id = \"k1\", secret = \"{}\" }}]\n",
        brokers.join(", "),
        support::SECRET
    );
    std::fs::write(&path, text).expect("write cluster file");
    path
}

async fn connect(edge: &str, user: &str, store: &MemoryCursorStore) -> (Client, Events) {
    let config = Config::new(&format!("tcp://{edge}"), support::token(user, "phone"))
        .expect("config")
        .with_cursor_store(store.clone());
    // The edges may still be dialing the brokers: retry until one answers.
    tokio::time::timeout(PATIENCE, async {
        loop {
            match Client::connect(config.clone()).await {
                Ok(connected) => return connected,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the edge serves")
}

async fn next_message(events: &mut Events) -> u64 {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.next().await {
                Some(Event::Message(message)) => return message.seq,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("a message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resumes_on_another_edge_without_missing_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (link1, link2) = (free_port(), free_port());
    let config = cluster_file(dir.path(), &[("b1", link1), ("b2", link2)]);
    let edges: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut processes = Vec::new();
    for (node, data) in [("b1", "b1-data"), ("b2", "b2-data")] {
        let data = dir.path().join(data);
        let data = data.to_str().expect("UTF-8 path");
        processes.push(spawn(
            &config,
            &["broker", "--node", node, "--data-dir", data],
        ));
    }
    for (index, edge) in edges.iter().enumerate() {
        let (node, http) = (format!("e{index}"), format!("127.0.0.1:{}", free_port()));
        let data = dir.path().join(&node);
        let data = data.to_str().expect("UTF-8 path");
        processes.push(spawn(
            &config,
            &[
                "edge",
                "--node",
                &node,
                "--tcp",
                edge,
                "--http",
                &http,
                "--data-dir",
                data,
            ],
        ));
    }
    let _cluster = Cluster(processes);

    let ring = Ring::new(3, ["b1".to_string(), "b2".to_string()], DEFAULT_VNODES);
    let (alice, bob) = spread_users(&ring);
    let bob_cursor = MemoryCursorStore::default();
    let (alice_client, _alice_events) =
        connect(&edges[1], &alice, &MemoryCursorStore::default()).await;
    let (bob_client, mut bob_events) = connect(&edges[0], &bob, &bob_cursor).await;
    let chat = alice_client.direct_conversation(&bob);

    let first = alice_client
        .send_text(&chat, "first")
        .await
        .expect("send")
        .seq;
    assert_eq!(next_message(&mut bob_events).await, first);
    bob_client.close().await;

    let mut missed = Vec::new();
    for n in 0..5 {
        missed.push(
            alice_client
                .send_text(&chat, &format!("while away {n}"))
                .await
                .expect("send")
                .seq,
        );
    }
    let (_bob_again, mut events) = connect(&edges[1], &bob, &bob_cursor).await;
    let mut received = Vec::new();
    while received.len() < missed.len() {
        let seq = next_message(&mut events).await;
        // A replay may repeat what the device had not acknowledged yet ([NWP-6.2.3-3]).
        if seq > first {
            received.push(seq);
        }
    }
    assert_eq!(
        received, missed,
        "after resuming on the other edge, bob has every message in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_processes_share_one_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = cluster_file(dir.path(), &[("b1", free_port())]);
    let data = dir.path().join("b1-data");
    let broker = spawn(
        &config,
        &[
            "broker",
            "--node",
            "b1",
            "--data-dir",
            data.to_str().expect("UTF-8"),
        ],
    );
    let shared = format!("127.0.0.1:{}", free_port());
    let mut edges = Vec::new();
    for node in ["e0", "e1"] {
        let http = format!("127.0.0.1:{}", free_port());
        let data = dir.path().join(node);
        let data = data.to_str().expect("UTF-8 path");
        edges.push(spawn(
            &config,
            &[
                "edge",
                "--node",
                node,
                "--tcp",
                &shared,
                "--http",
                &http,
                "--data-dir",
                data,
            ],
        ));
    }
    let mut cluster = Cluster(vec![broker]);
    cluster.0.extend(edges);
    connect(&shared, "alice", &MemoryCursorStore::default()).await;
    // Both edges bound the port: with the first one gone, the second still serves it.
    let first = cluster.0.get_mut(1).expect("first edge");
    first.kill().expect("kill the first edge");
    first.wait().expect("reap it");
    for n in 0..4 {
        let (client, _events) =
            connect(&shared, &format!("user{n}"), &MemoryCursorStore::default()).await;
        client
            .send_text(&client.direct_conversation("alice"), "still here")
            .await
            .expect("send");
    }
    let second = cluster.0.get_mut(2).expect("second edge");
    assert!(
        second.try_wait().expect("poll").is_none(),
        "the second edge is still running"
    );
}
