//! What operators see of an edge: error counts, delivery latency by kind and the admin view,
//! over real sockets in front of fake brokers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use natter_codec::frame::{Deliver, Error, Send};
use natter_codec::types::Event;
use natter_codec::{ErrorCode, Frame};
use support::{TestEdge, http, now_ms};

fn send(request: u64, conversation: &str) -> Send {
    Send {
        request,
        conversation: conversation.into(),
        client_msg_id: request,
        body: Bytes::from_static(b"hello"),
        ..Send::default()
    }
}

fn errors(edge: &TestEdge, code: &str) -> u64 {
    edge.metrics.errors.with_label_values(&[code]).get()
}

/// Broker answers are ERRORs written to clients like the edge's own: all are counted, by code.
#[tokio::test]
async fn errors_from_brokers_are_counted_by_code() {
    let edge = TestEdge::start(&["b1"], |_| {}).await;
    let (mut client, ready) = edge.ready_client("alice", "phone").await;
    edge.brokers["b1"].hold.store(true, Ordering::SeqCst);
    client.send(send(1, "d/alice/bob")).await;
    client.send(send(2, "d/alice/carol")).await;
    edge.wait_for(|m| m.frames_in.with_label_values(&["SEND"]).get() == 2)
        .await;
    for (request, code) in [(1, ErrorCode::FORBIDDEN), (2, ErrorCode::NOT_FOUND)] {
        edge.brokers["b1"]
            .push(ready.session, Error::new(request, code, "no"))
            .await;
        assert!(matches!(client.recv().await, Some(Frame::Error(e)) if e.code == code));
    }
    // And one the edge makes itself.
    client.send(send(3, "not a conversation")).await;
    assert!(
        matches!(client.recv().await, Some(Frame::Error(e)) if e.code == ErrorCode::INVALID_REQUEST)
    );

    assert_eq!(errors(&edge, "FORBIDDEN"), 1);
    assert_eq!(errors(&edge, "NOT_FOUND"), 1);
    assert_eq!(errors(&edge, "INVALID_REQUEST"), 1);
    let out = edge.metrics.frames_out.with_label_values(&["ERROR"]).get();
    assert_eq!(out, 3, "every ERROR written is counted once");
}

/// A DELIVER between RESUME and SYNCED is a replay; one after SYNCED, or of a large group
/// (inbox_seq 0), is live.
#[tokio::test]
async fn deliveries_are_timed_as_live_or_replay() {
    let edge = TestEdge::start(&["b1"], |_| {}).await;
    let (mut client, ready) = edge.ready_client("alice", "phone").await;
    let deliver = |inbox_seq: u64, age_ms: u64| Deliver {
        inbox_seq,
        conversation: "d/alice/bob".into(),
        event: Event {
            seq: inbox_seq.max(1),
            timestamp: now_ms() - age_ms,
            ..Event::default()
        },
    };
    let broker = &edge.brokers["b1"];
    broker.hold_resume.store(true, Ordering::SeqCst);
    client
        .send(natter_codec::frame::Resume {
            request: 1,
            after: 0,
        })
        .await;
    edge.wait_for(|m| m.frames_in.with_label_values(&["RESUME"]).get() == 1)
        .await;
    for inbox_seq in 1..=3 {
        broker
            .push(ready.session, deliver(inbox_seq, 3_600_000))
            .await;
    }
    broker.push(ready.session, deliver(0, 5)).await;
    broker.release().await;
    for _ in 0..4 {
        assert!(matches!(client.recv().await, Some(Frame::Deliver(_))));
    }
    assert!(matches!(client.recv().await, Some(Frame::Synced(s)) if s.request == 1));
    broker.push(ready.session, deliver(4, 5)).await;
    assert!(matches!(client.recv().await, Some(Frame::Deliver(_))));

    let replay = &edge.metrics.delivery_replay;
    let live = &edge.metrics.delivery_live;
    assert_eq!(replay.get_sample_count(), 3);
    assert!(
        replay.get_sample_sum() >= 3.0 * 3_600.0,
        "replays are an hour old"
    );
    assert_eq!(live.get_sample_count(), 2);
    assert!(live.get_sample_sum() < 60.0, "live deliveries are fresh");
}

#[tokio::test]
async fn the_admin_view_needs_the_api_key() {
    let edge = TestEdge::start(&["b1"], |_| {}).await;
    for path in ["/v1/admin/connections", "/v1/admin/server"] {
        let (status, body) = http(edge.http, "GET", path, &[], "").await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("UNAUTHENTICATED"), "{body}");
        let wrong = [("authorization", "Bearer api-kez")];
        assert_eq!(http(edge.http, "GET", path, &wrong, "").await.0, 401);
        let malformed = [("authorization", "api-key")];
        assert_eq!(http(edge.http, "GET", path, &malformed, "").await.0, 401);
        // The key is checked before the query is parsed.
        let bad_query = format!("{path}?limit=many");
        assert_eq!(http(edge.http, "GET", &bad_query, &[], "").await.0, 401);
    }
}

#[tokio::test]
async fn the_admin_view_pages_connections_and_describes_the_server() {
    let edge = TestEdge::start(&["b1", "b2"], |_| {}).await;
    // Homed at b1, so they stay connected when b2 goes down below.
    let users: Vec<String> = (0..)
        .map(|i| format!("user{i}"))
        .filter(|user| edge.ring.home(user) == Some("b1"))
        .take(3)
        .collect();
    let mut clients = Vec::new();
    for user in &users {
        clients.push(edge.ready_client(user, "phone").await);
    }
    let sessions: Vec<u64> = clients.iter().map(|(_, ready)| ready.session).collect();
    let auth = [("authorization", "Bearer api-key")];
    let get = |path: &'static str| async move {
        let (status, body) = http(edge.http, "GET", path, &auth, "").await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (status, json, body)
    };

    let (status, page, body) = get("/v1/admin/connections").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(page["total"], 3);
    assert_eq!(
        (page["offset"].as_u64(), page["limit"].as_u64()),
        (Some(0), Some(100))
    );
    let listed: Vec<u64> = page["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["session"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, sessions, "oldest first");
    let first = &page["connections"][0];
    assert_eq!(first["user"], users[0].as_str());
    assert_eq!(first["device"], "phone");
    assert_eq!(first["transport"], "tcp");
    assert_eq!(first["ready"], true);
    assert_eq!(first["queued_bytes"], 0);
    let since = first["since"].as_u64().unwrap();
    assert!(since <= page["now"].as_u64().unwrap() && since > now_ms() - 60_000);

    let (_, page, _) = get("/v1/admin/connections?limit=2&offset=1").await;
    let listed: Vec<&str> = page["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [users[1].as_str(), users[2].as_str()]);
    assert_eq!(page["total"], 3);
    let (_, page, _) = get("/v1/admin/connections?offset=5").await;
    assert_eq!(page["connections"].as_array().unwrap().len(), 0);
    for bad in [
        "/v1/admin/connections?limit=0",
        "/v1/admin/connections?limit=1001",
        "/v1/admin/connections?offset=-1",
    ] {
        let (status, json, body) = get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(json["error"], "INVALID_REQUEST");
    }
    let (status, page, _) = get("/v1/admin/connections?limit=1000").await;
    assert_eq!((status, page["limit"].as_u64()), (200, Some(1000)));

    edge.brokers["b2"].go_down();
    edge.wait_links(1).await;
    let (status, server, body) = get("/v1/admin/server").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(server["node"], "edge-1");
    assert!(server["uptime_ms"].as_u64().is_some());
    assert!(server["started_at"].as_u64().unwrap() <= server["now"].as_u64().unwrap());
    assert_eq!(server["ready"], false, "a link is down");
    assert_eq!(server["draining"], false);
    let connections = &server["connections"];
    assert_eq!(connections["clients"], 3);
    assert_eq!(connections["users"], 3);
    assert_eq!(connections["tcp"], 3);
    assert_eq!(connections["ws"], 0);
    assert!(connections["http"].as_i64().unwrap() >= 1, "this request");
    assert_eq!(server["outbound"]["queued_bytes"], 0);
    assert_eq!(server["outbound"]["budget_bytes"], 64 * 1024 * 1024);
    assert_eq!(server["ring"]["version"], 1);
    assert_eq!(server["ring"]["brokers"], serde_json::json!(["b1", "b2"]));
    let links = serde_json::json!([
        {"broker": "b1", "state": "up", "queued_frames": 0},
        {"broker": "b2", "state": "down", "queued_frames": 0},
    ]);
    assert_eq!(server["links"], links);
    assert_eq!(server["limits"]["max_frame_size"], 65_536);
    assert!(
        server["limits"]["max_connections"].as_u64().unwrap() > 0,
        "resolved"
    );
    drop(clients);
}
