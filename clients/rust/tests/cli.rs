//! `natter-cli` against a scripted server: output is JSON with `--json`, settings come from
//! the environment, and failures exit non-zero with the server's reason.

#![allow(clippy::unwrap_used, reason = "a test: a failed step should panic")]

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use natter_codec::frame::{Error as ErrorFrame, HistoryPage, Pong, Ready, SendAck, Synced};
use natter_codec::types::{Event as WireEvent, EventKind};
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, ErrorCode, Frame, FrameCodec};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_util::codec::Framed;

fn answer(frame: Frame) -> Option<Frame> {
    Some(match frame {
        Frame::Hello(hello) if hello.token == "bad" => {
            ErrorFrame::new(0, ErrorCode::UNAUTHENTICATED, "bad token").into()
        }
        Frame::Hello(_) => Ready {
            version: 1,
            heartbeat_ms: 30_000,
            user: "alice".into(),
            device: "cli".into(),
            ..Ready::default()
        }
        .into(),
        Frame::Resume(resume) => Synced {
            request: resume.request,
            inbox_head: 0,
        }
        .into(),
        Frame::Send(send) => SendAck {
            request: send.request,
            seq: 42,
            timestamp: 7,
            duplicate: false,
        }
        .into(),
        Frame::History(history) => HistoryPage {
            request: history.request,
            conversation: history.conversation,
            more: false,
            events: (1..=2)
                .map(|seq| WireEvent {
                    seq,
                    kind: EventKind::MESSAGE,
                    sender: "bob".into(),
                    body: Bytes::from(format!("line {seq}")),
                    ..WireEvent::default()
                })
                .collect(),
        }
        .into(),
        Frame::Ping(ping) => Pong { nonce: ping.nonce }.into(),
        _ => return None,
    })
}

async fn scripted_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut framed = Framed::new(tcp, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE));
                while let Some(Ok(frame)) = framed.next().await {
                    if let Some(reply) = answer(frame) {
                        framed.send(reply).await.unwrap();
                    }
                }
            });
        }
    });
    url
}

async fn cli(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_natter-cli"))
        .env("NATTER_URL", url)
        .env("NATTER_TOKEN", token)
        .arg("--json")
        .args(args)
        .output()
        .await
        .unwrap()
}

fn json_lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn send_and_history_print_json() {
    let url = scripted_server().await;
    let sent = json_lines(&cli(&url, "good", &["send", "bob", "hello", "there"]).await);
    assert_eq!(sent[0]["conversation"], "d/alice/bob");
    assert_eq!(sent[0]["seq"], 42);

    let history = json_lines(&cli(&url, "good", &["history", "d/alice/bob"]).await);
    let texts: Vec<_> = history.iter().map(|line| line["text"].clone()).collect();
    assert_eq!(texts, ["line 1", "line 2"]);
    assert_eq!(history[1]["sender"], "bob");
}

#[tokio::test]
async fn a_refused_token_fails_with_the_reason() {
    let url = scripted_server().await;
    let output = cli(&url, "bad", &["conversations"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("UNAUTHENTICATED"));
}
