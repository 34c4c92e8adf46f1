//! The client over each transport, against a scripted server: TCP is covered by
//! `fake_server.rs`; here TLS with a custom CA, and WebSocket with one frame per message.

#![allow(clippy::unwrap_used, reason = "a test: a failed step should panic")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use natter_client::{Client, Config, Direction};
use natter_codec::frame::{HistoryPage, Pong, Ready, Synced};
use natter_codec::types::{Event as WireEvent, EventKind};
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, Frame, FrameCodec};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::Framed;

/// The scripted server's answer to a client frame.
fn answer(frame: Frame) -> Option<Frame> {
    Some(match frame {
        Frame::Hello(_) => Ready {
            version: 1,
            max_frame_size: 65_536,
            heartbeat_ms: 30_000,
            user: "alice".into(),
            device: "d1".into(),
            ..Ready::default()
        }
        .into(),
        Frame::Resume(resume) => Synced {
            request: resume.request,
            inbox_head: 0,
        }
        .into(),
        Frame::History(history) => HistoryPage {
            request: history.request,
            conversation: history.conversation,
            more: false,
            events: vec![WireEvent {
                seq: 1,
                kind: EventKind::MESSAGE,
                sender: "bob".into(),
                body: Bytes::from_static(b"over the wire"),
                ..WireEvent::default()
            }],
        }
        .into(),
        Frame::Ping(ping) => Pong { nonce: ping.nonce }.into(),
        _ => return None,
    })
}

async fn read_history(config: Config) {
    let (client, _events) = timeout(Duration::from_secs(10), Client::connect(config))
        .await
        .unwrap()
        .unwrap();
    let page = client
        .history("d/alice/bob", 0, Direction::BACKWARD, 10)
        .await
        .unwrap();
    assert_eq!(page.events[0].text(), Some("over the wire"));
    client.close().await;
}

#[tokio::test]
async fn tls_with_a_custom_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert.cert.pem()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server_config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut framed = Framed::new(tls, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE));
            while let Some(Ok(frame)) = framed.next().await {
                if let Some(reply) = answer(frame) {
                    framed.send(reply).await.unwrap();
                }
            }
        }
    });

    let url = format!("tls://localhost:{port}");
    read_history(Config::new(&url, "t").unwrap().with_ca_file(&ca_file)).await;

    // Without the CA the certificate is not trusted.
    let untrusted = Client::connect(Config::new(&url, "t").unwrap()).await;
    match untrusted {
        Err(natter_client::Error::Transport(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_carries_one_frame_per_binary_message() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(message)) = socket.next().await {
            let Message::Binary(bytes) = message else {
                continue;
            };
            let frame = Frame::decode(bytes).unwrap();
            if let Some(reply) = answer(frame) {
                let message = Message::Binary(reply.to_bytes().unwrap());
                socket.send(message).await.unwrap();
            }
        }
    });
    read_history(Config::new(&format!("ws://{address}/ws"), "t").unwrap()).await;
}
