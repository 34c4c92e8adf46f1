//! The edge over real sockets, in front of fake brokers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use natter_codec::frame::{
    Ack, Deliver, Error, Hello, LinkHello, Ping, Pong, Resume, Send, SessionOpen, Typing,
};
use natter_codec::types::Event;
use natter_codec::{ErrorCode, Frame};
use support::{Client, HANG_GUARD, TestEdge, hello, http, keys, now_ms, token};
use tokio::net::TcpStream;

fn send(request: u64, conversation: &str) -> Send {
    Send {
        request,
        conversation: conversation.into(),
        client_msg_id: request,
        body: Bytes::from_static(b"hello"),
        ..Send::default()
    }
}

/// A SEND round trip: proves the client is served.
async fn round_trip(client: &mut Client<TcpStream>, request: u64, conversation: &str) {
    client.send(send(request, conversation)).await;
    match client.recv().await {
        Some(Frame::SendAck(ack)) => assert_eq!(ack.request, request),
        other => panic!("expected SEND_ACK, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_routes_requests_and_registers_the_session() {
    let edge = TestEdge::start(&["b1", "b2"], |_| {}).await;
    let user = edge.user_on("b1");
    let (mut client, ready) = edge.ready_client(&user, "phone").await;
    assert_eq!(ready.user, user.as_str());
    assert_eq!(ready.device, "phone");
    assert_eq!(ready.heartbeat_ms, 30_000);
    assert_eq!(ready.features.0, 0x07);

    let opened = edge.brokers["b1"].opened.lock().unwrap().clone();
    assert_eq!(
        opened,
        vec![(ready.session, user.clone(), "phone".to_string())]
    );
    assert!(edge.brokers["b2"].opened.lock().unwrap().is_empty());

    client
        .send(Resume {
            request: 1,
            after: 0,
        })
        .await;
    assert!(matches!(client.recv().await, Some(Frame::Synced(s)) if s.request == 1));
    for (request, broker) in [(2, "b1"), (3, "b2")] {
        let conversation = edge.conversation_on(&user, broker);
        round_trip(&mut client, request, &conversation).await;
    }
    client.send(Ping { nonce: 5 }).await;
    assert_eq!(client.recv().await, Some(Frame::Pong(Pong { nonce: 5 })));
    // Requests carry the token's identity: a client cannot send as another user.
    let routed_as = edge.brokers["b1"].routed_as.lock().unwrap().clone();
    assert!(!routed_as.is_empty());
    assert!(routed_as.iter().all(|(u, d)| *u == user && d == "phone"));

    // A broker push reaches exactly this session.
    let deliver = Deliver {
        inbox_seq: 1,
        conversation: "d/a/b".into(),
        event: Event {
            seq: 1,
            timestamp: now_ms(),
            ..Event::default()
        },
    };
    edge.brokers["b1"]
        .push(ready.session, deliver.clone())
        .await;
    assert_eq!(client.recv().await, Some(Frame::Deliver(deliver)));
}

#[tokio::test]
async fn an_unreachable_broker_gets_unavailable_never_silence() {
    let edge = TestEdge::start(&["b1", "b2"], |_| {}).await;
    let user = edge.user_on("b1");
    let (mut client, _) = edge.ready_client(&user, "phone").await;
    edge.brokers["b2"].go_down();
    edge.wait_links(1).await;

    let conversation = edge.conversation_on(&user, "b2");
    client.send(send(1, &conversation)).await;
    match client.recv().await {
        Some(Frame::Error(error)) => {
            assert_eq!((error.request, error.code), (1, ErrorCode::UNAVAILABLE));
            assert!(error.retry_after_ms > 0);
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    // The other broker still serves the same connection.
    round_trip(&mut client, 2, &edge.conversation_on(&user, "b1")).await;

    // A user whose home broker is down cannot open a session: told to come back later.
    let stranded = edge.user_on("b2");
    let mut other = edge.connect().await;
    other.send(hello(&token(&stranded, "phone"))).await;
    assert!(
        matches!(other.recv().await, Some(Frame::Goaway(g)) if g.code == ErrorCode::UNAVAILABLE)
    );
}

#[tokio::test]
async fn a_lost_home_broker_answers_in_flight_requests_and_sends_goaway() {
    let edge = TestEdge::start(&["b1"], |_| {}).await;
    let (mut client, _) = edge.ready_client("alice", "phone").await;
    edge.brokers["b1"]
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);
    client.send(send(1, "d/alice/bob")).await;
    edge.wait_for(|m| m.frames_in.with_label_values(&["SEND"]).get() == 1)
        .await;
    edge.brokers["b1"].go_down();
    match client.recv().await {
        Some(Frame::Error(error)) => {
            assert_eq!((error.request, error.code), (1, ErrorCode::UNAVAILABLE))
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    assert!(
        matches!(client.recv().await, Some(Frame::Goaway(g)) if g.code == ErrorCode::UNAVAILABLE)
    );
    assert_eq!(client.recv().await, None);
}

/// Each hostile input gets its exact error code, and a well-behaved client is served throughout.
#[tokio::test]
async fn hostile_inputs_get_their_error_codes() {
    let edge = TestEdge::start(&["b1"], |config| {
        config.limits.max_connections_per_user = 2;
    })
    .await;
    let (mut good, _) = edge.ready_client("good", "phone").await;
    let expired = keys().mint("mallory", "phone", now_ms() - 1);
    let forged = natter_edge::TokenKeys::new(vec![natter_edge::TokenKey {
        id: "k1".into(),
        secret: "guessed".into(),
    }])
    .unwrap()
    .mint("mallory", "phone", now_ms() + 60_000);
    let hello_with = |token: &str| Frame::from(hello(token)).to_bytes().unwrap().to_vec();

    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "garbage bytes",
            vec![0x05, 0x01, 0xff, 0xff, 0xff, 0xff],
            ErrorCode::PROTOCOL_VIOLATION,
        ),
        (
            "oversized length",
            vec![0xbf, 0xff, 0xff, 0xff, 0x01],
            ErrorCode::FRAME_TOO_LARGE,
        ),
        (
            "frame before HELLO",
            Frame::from(Ping { nonce: 1 }).to_bytes().unwrap().to_vec(),
            ErrorCode::PROTOCOL_VIOLATION,
        ),
        (
            "garbage token",
            hello_with("not a token"),
            ErrorCode::UNAUTHENTICATED,
        ),
        (
            "expired token",
            hello_with(&expired),
            ErrorCode::TOKEN_EXPIRED,
        ),
        (
            "wrongly signed token",
            hello_with(&forged),
            ErrorCode::UNAUTHENTICATED,
        ),
        (
            "unsupported version",
            Frame::from(Hello {
                min_version: 7,
                max_version: 9,
                ..hello(&token("m", "p"))
            })
            .to_bytes()
            .unwrap()
            .to_vec(),
            ErrorCode::UNSUPPORTED_VERSION,
        ),
    ];
    for (round, (name, bytes, code)) in cases.into_iter().enumerate() {
        let mut hostile = edge.connect().await;
        hostile.send_raw(&bytes).await;
        hostile.expect_close(code).await;
        round_trip(&mut good, round as u64 + 1, "d/good/other").await;
        eprintln!("{name}: {code:?}");
    }

    // A link-only frame from a client, after READY.
    let (mut hostile, _) = edge.ready_client("mallory", "phone").await;
    hostile
        .send(SessionOpen {
            session: 1,
            user: "alice".into(),
            device: "x".into(),
            lease_ms: 1,
        })
        .await;
    hostile.expect_close(ErrorCode::PROTOCOL_VIOLATION).await;
    let (mut hostile, _) = edge.ready_client("mallory", "phone").await;
    hostile.send(LinkHello::default()).await;
    hostile.expect_close(ErrorCode::PROTOCOL_VIOLATION).await;
    round_trip(&mut good, 100, "d/good/other").await;

    // Too many connections for one user.
    let (_first, _) = edge.ready_client("busy", "a").await;
    let (_second, _) = edge.ready_client("busy", "b").await;
    let mut third = edge.connect().await;
    third.send(hello(&token("busy", "c"))).await;
    third.expect_close(ErrorCode::TOO_MANY_CONNECTIONS).await;
    round_trip(&mut good, 101, "d/good/other").await;
}

#[tokio::test]
async fn a_flood_past_the_rate_limit_is_answered_rate_limited() {
    let edge = TestEdge::start(&["b1"], |config| {
        // Refill so slow that the burst is all the test can use, however slow the machine.
        config.limits.requests_per_sec = 0.001;
        config.limits.request_burst = 5.0;
    })
    .await;
    let (mut flooder, _) = edge.ready_client("flood", "phone").await;
    let (mut good, _) = edge.ready_client("good", "phone").await;
    for request in 1..=50 {
        flooder.send(send(request, "d/flood/x")).await;
    }
    let mut acked = 0;
    let mut limited = 0;
    for _ in 1..=50 {
        match flooder.recv().await {
            Some(Frame::SendAck(_)) => acked += 1,
            Some(Frame::Error(error)) => {
                assert_eq!(error.code, ErrorCode::RATE_LIMITED);
                assert!(error.retry_after_ms > 0);
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acked, 5);
    assert_eq!(acked + limited, 50);
    round_trip(&mut good, 1, "d/good/x").await;
    // The flooder's connection stays usable: rate limiting answers, it does not close.
    flooder.send(Ping { nonce: 1 }).await;
    assert_eq!(flooder.recv().await, Some(Frame::Pong(Pong { nonce: 1 })));
}

#[tokio::test]
async fn a_client_that_never_reads_is_bounded_then_closed() {
    let budget = 64 * 1024;
    let edge = TestEdge::start(&["b1"], |config| {
        config.limits.outbound_budget = budget;
        config.timing.slow_consumer_ms = 200;
    })
    .await;
    let (_sleeper, ready) = edge.sleeper("sleeper").await;
    let (mut good, _) = edge.ready_client("good", "phone").await;

    let body = Bytes::from(vec![b'x'; 1000]);
    let mut inbox_seq = 0;
    let bound = (budget + budget / 4) as i64;
    let closed =
        |m: &natter_edge::Metrics| m.errors.with_label_values(&["SLOW_CONSUMER"]).get() == 1;
    tokio::time::timeout(HANG_GUARD, async {
        while !closed(&edge.metrics) {
            for _ in 0..50 {
                inbox_seq += 1;
                let deliver = support::deliver(inbox_seq, body.clone());
                edge.brokers["b1"].push(ready.session, deliver).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let queued = edge.metrics.outbound_queue_bytes.get();
            assert!(queued <= bound, "{queued} bytes queued, budget {budget}");
        }
    })
    .await
    .expect("the slow consumer was never closed");
    assert!(edge.metrics.dropped_frames.get() > 0);
    round_trip(&mut good, 1, "d/good/x").await;
    edge.wait_for(|m| m.outbound_queue_bytes.get() == 0).await;
}

#[tokio::test]
async fn half_open_connections_time_out_and_do_not_block_others() {
    let edge = TestEdge::start(&["b1"], |config| {
        config.timing.hello_timeout_ms = 300;
    })
    .await;
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut client = edge.connect().await;
        if i % 2 == 0 {
            // Half a HELLO: a length prefix promising more than ever comes.
            client.send_raw(&[0x40, 0x40, 0x01]).await;
        }
        idle.push(client);
    }
    let (mut good, _) = edge.ready_client("good", "phone").await;
    round_trip(&mut good, 1, "d/good/x").await;
    for mut client in idle {
        client.expect_close(ErrorCode::IDLE_TIMEOUT).await;
    }
    edge.wait_for(|m| m.connections.with_label_values(&["tcp"]).get() == 1)
        .await;
}

#[tokio::test]
async fn the_process_connection_limit_refuses_with_a_reason() {
    let edge = TestEdge::start(&["b1"], |config| {
        config.limits.max_connections = 2;
    })
    .await;
    let (_a, _) = edge.ready_client("a", "1").await;
    let (_b, _) = edge.ready_client("b", "1").await;
    let mut refused = edge.connect().await;
    refused.expect_close(ErrorCode::TOO_MANY_CONNECTIONS).await;
}

#[tokio::test]
async fn drain_sends_goaway_answers_in_flight_requests_then_closes() {
    let mut edge = TestEdge::start(&["b1"], |_| {}).await;
    let (mut client, _) = edge.ready_client("alice", "phone").await;
    edge.brokers["b1"]
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);
    client.send(send(1, "d/alice/bob")).await;
    edge.wait_for(|m| m.frames_in.with_label_values(&["SEND"]).get() == 1)
        .await;
    edge.begin_shutdown();
    match client.recv().await {
        Some(Frame::Goaway(goaway)) => {
            assert_eq!(goaway.code, ErrorCode::SHUTTING_DOWN);
            assert!(goaway.reconnect_ms > 0);
        }
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    // New requests are refused while the old one is still answered.
    client.send(send(2, "d/alice/bob")).await;
    assert!(
        matches!(client.recv().await, Some(Frame::Error(e)) if e.request == 2 && e.code == ErrorCode::UNAVAILABLE)
    );
    edge.brokers["b1"].release().await;
    assert!(matches!(client.recv().await, Some(Frame::SendAck(a)) if a.request == 1));
    assert_eq!(client.recv().await, None);
    edge.shutdown().await;
}

#[tokio::test]
async fn acks_and_typing_are_forwarded_without_answers() {
    let edge = TestEdge::start(&["b1"], |_| {}).await;
    let (mut client, _) = edge.ready_client("alice", "phone").await;
    client.send(Ack { inbox_seq: 3 }).await;
    client
        .send(Typing {
            conversation: "d/alice/bob".into(),
            active: true,
        })
        .await;
    // An answer to a later request arrives first: nothing was sent for ACK and TYPING.
    round_trip(&mut client, 1, "d/alice/bob").await;
    // A client may not send errors that close, but ERROR from a client is ignored.
    client
        .send(Error::new(0, ErrorCode::INTERNAL_ERROR, "client says"))
        .await;
    round_trip(&mut client, 2, "d/alice/bob").await;
}

#[tokio::test]
async fn tls_with_a_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let edge = TestEdge::start(&["b1"], |config| {
        config.tls = Some("127.0.0.1:0".parse().unwrap());
        config.tls_cert = Some(cert_path.clone());
        config.tls_key = Some(key_path.clone());
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(edge.tls.unwrap()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let mut client = Client::new(stream);
    let ready = client.hello(&token("alice", "phone")).await;
    assert_eq!(ready.user, "alice");
    client.send(send(1, "d/alice/bob")).await;
    assert!(matches!(client.recv().await, Some(Frame::SendAck(a)) if a.request == 1));
    edge.wait_for(|m| m.connections.with_label_values(&["tls"]).get() == 1)
        .await;
}

#[tokio::test]
async fn websocket_bridge_carries_one_frame_per_binary_message() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let edge = TestEdge::start(&["b1"], |_| {}).await;
    let url = format!("ws://{}/ws", edge.http);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let binary = |frame: Frame| Message::Binary(frame.to_bytes().unwrap());
    let next_frame = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match tokio::time::timeout(HANG_GUARD, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(data))) => return Some(Frame::decode(data).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    };
    ws.send(binary(hello(&token("alice", "web")).into()))
        .await
        .unwrap();
    assert!(matches!(next_frame(&mut ws).await, Some(Frame::Ready(r)) if r.device == "web"));
    ws.send(binary(send(1, "d/alice/bob").into()))
        .await
        .unwrap();
    assert!(matches!(next_frame(&mut ws).await, Some(Frame::SendAck(a)) if a.request == 1));
    ws.send(Message::Text("hello?".into())).await.unwrap();
    assert!(matches!(
        next_frame(&mut ws).await,
        Some(Frame::Error(e)) if e.code == ErrorCode::PROTOCOL_VIOLATION
    ));
    assert_eq!(next_frame(&mut ws).await, None);
}

#[tokio::test]
async fn http_health_metrics_dev_tokens_and_backend_api() {
    let edge = TestEdge::start(&["b1"], |config| config.dev = true).await;
    assert_eq!(http(edge.http, "GET", "/healthz", &[], "").await.0, 200);
    assert_eq!(http(edge.http, "GET", "/readyz", &[], "").await.0, 200);

    let json = [("content-type", "application/json")];
    let (status, body) = http(
        edge.http,
        "POST",
        "/v1/dev/token",
        &json,
        r#"{"user":"carol"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(answer["device"].as_str().unwrap().starts_with("web-"));
    let mut client = edge.connect().await;
    let ready = client.hello(answer["token"].as_str().unwrap()).await;
    assert_eq!(ready.user, "carol");
    assert_eq!(http(edge.http, "GET", "/dev", &[], "").await.0, 200);

    let message = r#"{"conversation":"d/alice/bot","sender":"bot","body":"hi"}"#;
    let (status, _) = http(edge.http, "POST", "/v1/messages", &json, message).await;
    assert_eq!(status, 401, "no API key");
    let auth = [
        ("content-type", "application/json"),
        ("authorization", "Bearer api-key"),
    ];
    let (status, _) = http(edge.http, "POST", "/v1/messages", &auth, message).await;
    assert_eq!(status, 400, "no Idempotency-Key");
    let keyed = [auth[0], auth[1], ("idempotency-key", "order-1")];
    let (status, body) = http(edge.http, "POST", "/v1/messages", &keyed, message).await;
    assert_eq!(status, 200, "{body}");
    let ack: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(ack["seq"].as_u64().unwrap() > 0);

    let (status, body) = http(
        edge.http,
        "GET",
        "/v1/history?conversation=d/alice/bot&user=bot",
        &auth[1..],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(edge.http, "GET", "/v1/presence?user=alice", &auth[1..], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"online""#), "{body}");

    let (status, metrics) = http(edge.http, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    for name in [
        "natter_connections{transport=\"tcp\"} 1",
        "natter_frames_in_total{type=\"HELLO\"}",
        "natter_frames_out_total{type=\"READY\"}",
        "natter_link_up{broker=\"b1\"} 1",
        "natter_send_ack_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn dev_endpoints_are_off_unless_enabled() {
    let edge = TestEdge::start(&["b1"], |_| {}).await;
    let json = [("content-type", "application/json")];
    let (status, _) = http(
        edge.http,
        "POST",
        "/v1/dev/token",
        &json,
        r#"{"user":"carol"}"#,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn tls_client_certificates_are_required_when_a_device_ca_is_configured() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let device_key = KeyPair::generate().unwrap();
    let device = CertificateParams::new(vec!["device-1".to_string()])
        .unwrap()
        .signed_by(&device_key, &ca, &ca_key)
        .unwrap();
    let paths = ["cert.pem", "key.pem", "ca.pem"].map(|name| dir.path().join(name));
    std::fs::write(&paths[0], server.cert.pem()).unwrap();
    std::fs::write(&paths[1], server.key_pair.serialize_pem()).unwrap();
    std::fs::write(&paths[2], ca.pem()).unwrap();
    let edge = TestEdge::start(&["b1"], |config| {
        config.tls = Some("127.0.0.1:0".parse().unwrap());
        config.tls_cert = Some(paths[0].clone());
        config.tls_key = Some(paths[1].clone());
        config.tls_client_ca = Some(paths[2].clone());
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
    };
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(device_key.serialize_der()));
    let with_cert = builder()
        .with_client_auth_cert(vec![device.der().clone()], key)
        .unwrap();
    let without_cert = builder().with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let dial = async |config: rustls::ClientConfig| {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(edge.tls.unwrap()).await.unwrap();
        connector.connect(name.clone(), tcp).await
    };

    let mut client = Client::new(dial(with_cert).await.unwrap());
    let ready = client.hello(&token("alice", "device-1")).await;
    assert_eq!(ready.device, "device-1");

    // Without a certificate the handshake fails (with TLS 1.3, at the first read at the latest).
    if let Ok(stream) = dial(without_cert).await {
        let mut client = Client::new(stream);
        client.send(hello(&token("mallory", "x"))).await;
        assert_eq!(client.recv().await, None);
    }
}
