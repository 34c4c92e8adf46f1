//! What independent testers broke, against the real binary: one HTTP call must never
//! disconnect the edge's clients, the backend API answers what it documents, and a server at
//! its file-descriptor limit refuses clients with a reason instead of leaving them hanging.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::time::Duration;

use natter_client::{Client, Config, Event, Events};
use support::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guards against a hang; no assertion depends on how fast anything is.
const PATIENCE: Duration = Duration::from_secs(30);
const API_KEY: &str = "hostile-test-key";

async fn connect(url: &str, user: &str) -> (Client, Events) {
    let config = Config::new(url, support::token(user, "hostile")).expect("config");
    Client::connect(config).await.expect("connect")
}

/// A minimal HTTP/1.1 request with the API key; returns the status and the body as JSON.
async fn api(server: &Server, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(&server.http).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         authorization: Bearer {API_KEY}\r\nidempotency-key: {path}{body}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("no HTTP answer")
        .unwrap();
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {response}"));
    (status, json)
}

async fn next_message(events: &mut Events) -> String {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.next().await.expect("events ended") {
                Event::Message(message) => {
                    return String::from_utf8_lossy(&message.body).to_string();
                }
                _ => continue,
            }
        }
    })
    .await
    .expect("no message")
}

#[tokio::test]
async fn backend_api_calls_never_disconnect_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--api-key", API_KEY]);
    let (alice, _alice_events) = connect(&server.url(), "alice").await;
    let (bob, mut bob_events) = connect(&server.url(), "bob").await;
    let conv = natter_codec::ids::direct_conversation("alice", "bob");
    alice.send_text(&conv, "before").await.expect("send");
    assert_eq!(next_message(&mut bob_events).await, "before");
    bob.mark_read(&conv, 1).await.expect("mark read");

    // Once broke the edge's link: every session got GOAWAY.
    let (status, presence) = api(&server, "GET", "/v1/presence?user=alice", "").await;
    assert_eq!(status, 200, "{presence}");
    assert_eq!(presence["status"], "online");
    // Once answered 500: the newest page is preceded by RECEIPTs (NWP-7.4-4).
    let path = format!("/v1/history?conversation={conv}&user=bob");
    let (status, history) = api(&server, "GET", &path, "").await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["events"][0]["body"], "before");
    // Requests the broker refuses fail alone.
    let (status, error) = api(
        &server,
        "GET",
        "/v1/history?conversation=g/nope&user=bob",
        "",
    )
    .await;
    assert_eq!((status, error["error"].as_str()), (404, Some("NOT_FOUND")));
    let bad = r#"{"conversation":"d/alice/bob","sender":"Alice","body":"x"}"#;
    let (status, error) = api(&server, "POST", "/v1/messages", bad).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );

    // The clients never noticed.
    alice
        .send_text(&conv, "after")
        .await
        .expect("send after the API calls");
    assert_eq!(next_message(&mut bob_events).await, "after");
}

/// Reads frames until an ERROR arrives; its code.
async fn error_code(stream: &mut TcpStream) -> Option<u64> {
    let mut buf = bytes::BytesMut::new();
    loop {
        match natter_codec::decode_frame(&mut buf, 65_536) {
            Ok(Some(natter_codec::Frame::Error(error))) => return Some(error.code.0),
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(_) => return None,
        }
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
}

#[tokio::test]
async fn at_the_descriptor_limit_clients_are_refused_with_a_reason() {
    // 400 descriptors: the derived limit is 144 connections, leaving 256 for storage, links,
    // listeners and refusals.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_nofile(dir.path(), 400);
    let mut streams = Vec::new();
    // Quickly, well within the HELLO deadline, so that no slot frees up meanwhile.
    for _ in 0..200 {
        streams.push(TcpStream::connect(&server.tcp).await.expect("connect"));
    }
    let mut refused = streams.split_off(150);
    for stream in &mut refused {
        let code = tokio::time::timeout(PATIENCE, error_code(stream)).await;
        assert_eq!(
            code.expect("a refused client was left hanging"),
            Some(natter_codec::ErrorCode::TOO_MANY_CONNECTIONS.0)
        );
    }
    let mut probe = [0; 1];
    let early = tokio::time::timeout(Duration::from_millis(100), streams[0].peek(&mut probe)).await;
    assert!(
        early.is_err(),
        "a client within the limit waits for its HELLO"
    );
    // The server itself is fine: freeing slots lets a real client in.
    streams.clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (client, _events) = connect(&server.url(), "carol").await;
    client
        .send_text("d/carol/dave", "still serving")
        .await
        .expect("send");
}
