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
use std::process::Stdio;

use natter_client::MemoryCursorStore;
use natter_codec::ring::{DEFAULT_VNODES, Ring};
use support::{Processes, connect_when_linked, free_port, next_message, spawn_node, spread_users};

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
        processes.push(spawn_node(
            &config,
            &["broker", "--node", node, "--data-dir", data],
            Stdio::inherit(),
        ));
    }
    for (index, edge) in edges.iter().enumerate() {
        let (node, http) = (format!("e{index}"), format!("127.0.0.1:{}", free_port()));
        let data = dir.path().join(&node);
        let data = data.to_str().expect("UTF-8 path");
        processes.push(spawn_node(
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
            Stdio::inherit(),
        ));
    }
    let _cluster = Processes(processes);

    let ring = Ring::new(3, ["b1".to_string(), "b2".to_string()], DEFAULT_VNODES);
    let (alice, bob) = spread_users(&ring);
    let bob_cursor = MemoryCursorStore::default();
    let (alice_client, _alice_events) =
        connect_when_linked(&edges[1], &alice, &MemoryCursorStore::default()).await;
    let (bob_client, mut bob_events) = connect_when_linked(&edges[0], &bob, &bob_cursor).await;
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
    let (_bob_again, mut events) = connect_when_linked(&edges[1], &bob, &bob_cursor).await;
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
    let broker = spawn_node(
        &config,
        &[
            "broker",
            "--node",
            "b1",
            "--data-dir",
            data.to_str().expect("UTF-8"),
        ],
        Stdio::inherit(),
    );
    let shared = format!("127.0.0.1:{}", free_port());
    let mut edges = Vec::new();
    for node in ["e0", "e1"] {
        let http = format!("127.0.0.1:{}", free_port());
        let data = dir.path().join(node);
        let data = data.to_str().expect("UTF-8 path");
        edges.push(spawn_node(
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
            Stdio::inherit(),
        ));
    }
    let mut cluster = Processes(vec![broker]);
    cluster.0.extend(edges);
    connect_when_linked(&shared, "alice", &MemoryCursorStore::default()).await;
    // Both edges bound the port: with the first one gone, the second still serves it.
    let first = cluster.0.get_mut(1).expect("first edge");
    first.kill().expect("kill the first edge");
    first.wait().expect("reap it");
    for n in 0..4 {
        let (client, _events) =
            connect_when_linked(&shared, &format!("user{n}"), &MemoryCursorStore::default()).await;
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
