//! What keeps one edge serving everyone under abuse: the backend API checks its key before it
//! reads anything and answers every error as JSON; HTTP connections are bounded and timed out
//! without touching native clients or health checks; and many slow consumers together stay
//! within the process-wide outbound budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use natter_codec::Frame;
use natter_codec::frame::Send;
use support::{Client, HANG_GUARD, TestEdge, http};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A SEND round trip: proves the client is served.
async fn round_trip(client: &mut Client<TcpStream>, request: u64) {
    let send = Send {
        request,
        conversation: "d/good/x".into(),
        client_msg_id: request,
        body: Bytes::from_static(b"hello"),
        ..Send::default()
    };
    client.send(send).await;
    match client.recv().await {
        Some(Frame::SendAck(ack)) => assert_eq!(ack.request, request),
        other => panic!("expected SEND_ACK, got {other:?}"),
    }
}

/// The `error` field of a JSON error body.
fn error_of(body: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    json["error"].as_str().unwrap_or_default().to_string()
}

/// Method, path, headers, body, and the status and error code expected.
type ApiCase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    u16,
    &'static str,
);

#[tokio::test]
async fn api_errors_are_json_and_the_key_is_checked_first() {
    let edge = TestEdge::start(&["b1"], |_| {}).await;
    let cases: [ApiCase; 8] = [
        // Without a key, a body that does not parse still gets 401: nothing leaks.
        (
            "POST",
            "/v1/messages",
            &[],
            "{not json",
            401,
            "UNAUTHENTICATED",
        ),
        (
            "POST",
            "/v1/messages",
            &[("authorization", "Bearer wrong")],
            "{}",
            401,
            "UNAUTHENTICATED",
        ),
        (
            "POST",
            "/v1/messages",
            &[("authorization", "Bearer api-key")],
            "{not json",
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            "/v1/messages",
            &[("authorization", "Bearer api-key")],
            r#"{"conversation":"d/a/b"}"#,
            400,
            "INVALID_REQUEST",
        ),
        (
            "GET",
            "/v1/history?conversation=d/a/b",
            &[("authorization", "Bearer api-key")],
            "",
            400,
            "INVALID_REQUEST",
        ),
        (
            "GET",
            "/v1/presence?user=Alice",
            &[("authorization", "Bearer api-key")],
            "",
            400,
            "INVALID_REQUEST",
        ),
        ("GET", "/v1/nothing-here", &[], "", 404, "NOT_FOUND"),
        ("GET", "/v1/messages", &[], "", 405, "INVALID_REQUEST"),
    ];
    for (method, path, headers, body, status, code) in cases {
        let (got, answer) = http(edge.http, method, path, headers, body).await;
        assert_eq!(
            (got, error_of(&answer).as_str()),
            (status, code),
            "{method} {path} {body}"
        );
    }
    // Without a Content-Type the body is still read as JSON.
    let headers = [
        ("authorization", "Bearer api-key"),
        ("idempotency-key", "k1"),
    ];
    let message = r#"{"conversation":"d/alice/bot","sender":"bot","body":"hi"}"#;
    let (status, body) = http(edge.http, "POST", "/v1/messages", &headers, message).await;
    assert_eq!(status, 200, "{body}");
}

/// Opens a TCP connection to the HTTP listener that sends nothing.
async fn idle_socket(edge: &TestEdge) -> TcpStream {
    TcpStream::connect(edge.http).await.unwrap()
}

#[tokio::test]
async fn idle_http_connections_cannot_lock_out_clients_or_health_checks() {
    let edge = TestEdge::start(&["b1"], |config| {
        config.limits.max_connections = 64;
        config.limits.max_http_connections = 8;
        config.timing.http_header_timeout_ms = 500;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(idle_socket(&edge).await);
    }
    // Give the listener time to take them all before the next ones arrive.
    edge.wait_for(|m| m.connections.with_label_values(&["http"]).get() == 8)
        .await;
    let (status, _) = http(edge.http, "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200, "health checks have a reserve");
    let (status, body) = http(edge.http, "GET", "/v1/history?x=1", &[], "").await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (503, "UNAVAILABLE"),
        "the reserve serves health checks only"
    );
    let (mut good, _) = edge.ready_client("good", "phone").await;
    round_trip(&mut good, 1).await;
    // Past the header deadline, every idle socket is closed by the server.
    for mut socket in idle {
        let mut byte = [0; 1];
        let read = tokio::time::timeout(HANG_GUARD, socket.read(&mut byte))
            .await
            .expect("an idle HTTP connection was never closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    edge.wait_for(|m| m.connections.with_label_values(&["http"]).get() == 0)
        .await;
}

#[tokio::test]
async fn beyond_every_http_slot_a_connection_gets_503_at_once() {
    let edge = TestEdge::start(&["b1"], |config| {
        config.limits.max_connections = 64;
        config.limits.max_http_connections = 2;
    })
    .await;
    let mut idle = Vec::new();
    // Two HTTP slots and the sixteen of the health reserve.
    for _ in 0..18 {
        idle.push(idle_socket(&edge).await);
    }
    edge.wait_for(|m| m.connections.with_label_values(&["http"]).get() == 18)
        .await;
    let (status, body) = http(edge.http, "GET", "/healthz", &[], "").await;
    assert_eq!((status, error_of(&body).as_str()), (503, "UNAVAILABLE"));
    assert!(edge.metrics.http_refused.get() >= 1);
    let (mut good, _) = edge.ready_client("good", "phone").await;
    round_trip(&mut good, 1).await;
}

#[tokio::test]
async fn many_slow_consumers_stay_within_the_process_budget() {
    let total = 256 * 1024;
    let edge = TestEdge::start(&["b1"], |config| {
        config.limits.outbound_budget = 128 * 1024;
        config.limits.outbound_total_budget = total;
        config.timing.slow_consumer_ms = 60_000;
    })
    .await;
    let mut sleepers = Vec::new();
    for i in 0..10 {
        let (sleeper, ready) = edge.sleeper(&format!("sleeper{i}")).await;
        sleepers.push((sleeper, ready.session));
    }
    let (mut good, _) = edge.ready_client("good", "phone").await;
    let body = Bytes::from(vec![b'x'; 16 * 1024]);
    // The policy may overshoot by what is being written and by answers, never by much.
    let bound = (total + total / 4) as i64;
    let mut peak = 0;
    let mut inbox_seq = 0;
    // The kernel absorbs a few megabytes per socket before the edge queues anything: push
    // until the policy has had to act.
    tokio::time::timeout(HANG_GUARD, async {
        while edge.metrics.dropped_frames.get() == 0 {
            inbox_seq += 1;
            for (_, session) in &sleepers {
                let deliver = support::deliver(inbox_seq, body.clone());
                edge.brokers["b1"].push(*session, deliver).await;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            peak = peak.max(edge.metrics.outbound_queue_bytes.get());
            assert!(
                peak <= bound,
                "peak {peak} bytes queued, process budget {total}"
            );
        }
    })
    .await
    .expect("the process budget never made the policy act");
    round_trip(&mut good, 1).await;
    let closed = edge
        .metrics
        .errors
        .with_label_values(&["SLOW_CONSUMER"])
        .get();
    let shed = edge.metrics.outbound_shed.get();
    assert!(
        shed <= closed,
        "every shed connection was closed with SLOW_CONSUMER"
    );
}
