//! `natter-cli` against a scripted server: output is JSON with `--json` and readable text
//! without, settings come from the environment, usage errors exit 2 before connecting,
//! failures exit non-zero with the reason, and chat's `/` lines are commands, never messages.

#![allow(clippy::unwrap_used, reason = "a test: a failed step should panic")]

use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use natter_codec::frame::{
    Done, Error as ErrorFrame, HistoryPage, Pong, Presence, Ready, SendAck, Synced,
};
use natter_codec::types::{Event as WireEvent, EventKind, Status};
use natter_codec::{DEFAULT_MAX_FRAME_SIZE, ErrorCode, Frame, FrameCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_util::codec::Framed;

/// 2025-12-31 23:59 UTC: 2026-01-01 08:59 in the tests' zone.
const NEW_YEAR: u64 = 1_767_225_540_000;
/// A POSIX zone nine hours east of UTC that needs no zone database on the machine.
const TZ: &str = "XST-9";

fn answer(frame: &Frame) -> Vec<Frame> {
    let reply: Frame = match frame {
        Frame::Hello(hello) if hello.token == "bad" => {
            ErrorFrame::new(0, ErrorCode::UNAUTHENTICATED, "bad token").into()
        }
        Frame::Hello(_) => Ready {
            version: 1,
            max_frame_size: 65_536,
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
            timestamp: NEW_YEAR,
            duplicate: false,
        }
        .into(),
        Frame::History(history) => HistoryPage {
            request: history.request,
            conversation: history.conversation.clone(),
            more: false,
            events: (1..=2)
                .map(|seq| WireEvent {
                    seq,
                    kind: EventKind::MESSAGE,
                    sender: "bob".into(),
                    timestamp: NEW_YEAR,
                    body: Bytes::from(format!("line {seq}")),
                    ..WireEvent::default()
                })
                .collect(),
        }
        .into(),
        Frame::Mark(mark) => Done {
            request: mark.request,
        }
        .into(),
        // zed shares nothing with alice; bob was last seen at NEW_YEAR.
        Frame::PresenceSubscribe(subscribe) => {
            let user = subscribe.conversation.trim_start_matches("d/alice/");
            let last_seen = if user == "zed" { 0 } else { NEW_YEAR };
            let presence = Presence {
                user: user.into(),
                status: Status::OFFLINE,
                last_seen,
            };
            let done = Done {
                request: subscribe.request,
            };
            return vec![presence.into(), done.into()];
        }
        Frame::Ping(ping) => Pong { nonce: ping.nonce }.into(),
        _ => return Vec::new(),
    };
    vec![reply]
}

/// A scripted server that records what it was sent.
struct Server {
    url: String,
    frames: Arc<Mutex<Vec<Frame>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        let frames = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen, count) = (frames.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut framed = Framed::new(tcp, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE));
                    while let Some(Ok(frame)) = framed.next().await {
                        // Recorded before the answer, which may end the CLI.
                        seen.lock().unwrap().push(frame.clone());
                        for reply in answer(&frame) {
                            framed.send(reply).await.unwrap();
                        }
                    }
                });
            }
        });
        Self {
            url,
            frames,
            connections,
        }
    }

    /// `natter-cli` with this server, a good token and the tests' time zone.
    fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_natter-cli"));
        command
            .env("NATTER_URL", &self.url)
            .env("NATTER_TOKEN", "good")
            .env("TZ", TZ)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.cli(args).output().await.unwrap()
    }

    fn sent_texts(&self) -> Vec<String> {
        let frames = self.frames.lock().unwrap();
        let sends = frames.iter().filter_map(|frame| match frame {
            Frame::Send(send) => Some(String::from_utf8_lossy(&send.body).into_owned()),
            _ => None,
        });
        sends.collect()
    }

    fn marks(&self) -> Vec<u64> {
        let frames = self.frames.lock().unwrap();
        let marks = frames.iter().filter_map(|frame| match frame {
            Frame::Mark(mark) => Some(mark.seq),
            _ => None,
        });
        marks.collect()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "{output:?}");
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn send_and_history_print_json() {
    let server = Server::start().await;
    let sent = json_lines(
        &server
            .run(&["--json", "send", "bob", "hello", "there"])
            .await,
    );
    assert_eq!(sent[0]["conversation"], "d/alice/bob");
    assert_eq!(sent[0]["seq"], 42);
    assert_eq!(sent[0]["timestamp"], NEW_YEAR);
    assert_eq!(sent[0]["timestamp_iso"], "2025-12-31T23:59:00.000Z");
    assert_eq!(server.sent_texts(), ["hello there"]);

    let history = json_lines(&server.run(&["--json", "history", "d/alice/bob"]).await);
    let texts: Vec<_> = history.iter().map(|line| line["text"].clone()).collect();
    assert_eq!(texts, ["line 1", "line 2"]);
    assert_eq!(history[1]["sender"], "bob");
}

#[tokio::test]
async fn text_output_shows_local_times_not_epoch_milliseconds() {
    let server = Server::start().await;
    let history = server.run(&["history", "bob"]).await;
    assert!(history.status.success(), "{history:?}");
    assert_eq!(
        stdout(&history),
        "2026-01-01 08:59 #1 bob: line 1\n2026-01-01 08:59 #2 bob: line 2\n"
    );
    let sent = server.run(&["send", "bob", "hi"]).await;
    assert_eq!(
        stdout(&sent),
        "sent to d/alice/bob at seq 42, 2026-01-01 08:59\n"
    );
}

#[tokio::test]
async fn a_refused_token_fails_with_the_reason() {
    let server = Server::start().await;
    let mut conversations = server.cli(&["conversations"]);
    let output = conversations
        .env("NATTER_TOKEN", "bad")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("UNAUTHENTICATED"));
}

#[tokio::test]
async fn a_missing_token_says_how_to_get_one() {
    let server = Server::start().await;
    let output = server
        .cli(&["send", "bob", "hi"])
        .env_remove("NATTER_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let message = stderr(&output);
    assert!(
        message.starts_with("natter-cli: no token: pass --token TOKEN or set NATTER_TOKEN"),
        "{message}"
    );
    assert!(message.contains("export NATTER_TOKEN=$(natter token --user alice --device cli)"));
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn invalid_user_ids_are_usage_errors_that_name_the_rule() {
    let server = Server::start().await;
    let cases: [(&[&str], &str); 5] = [
        (
            &["send", "BOB", "hi"],
            r#""BOB" is not a valid user id: user ids are lower case (NWP-2.3-5); did you mean "bob"?"#,
        ),
        (
            &["send", "Bob Smith", "hi"],
            r#""Bob Smith" is not a valid user id: a user id contains no white space (NWP-2.3-1)"#,
        ),
        (
            &["history", "d/bob/alice"],
            r#""d/bob/alice" is not a valid conversation id: the lower user id comes first (NWP-2.3-2); did you mean "d/alice/bob"?"#,
        ),
        (
            &["group", "create", "Team", "bob", "Carol"],
            r#""Carol" is not a valid user id: user ids are lower case (NWP-2.3-5); did you mean "carol"?"#,
        ),
        (
            &["group", "add", "d/alice/bob", "carol"],
            r#""d/alice/bob" is not a group id: group ids start with g/ (NWP-2.3-3); `natter-cli conversations` lists yours"#,
        ),
    ];
    for (args, message) in cases {
        let output = server.run(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert_eq!(stderr(&output), format!("natter-cli: {message}\n"));
    }
    // Refused before connecting: nothing reached the server.
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn chat_slash_lines_are_commands_and_never_sent() {
    let server = Server::start().await;
    let mut chat = server.cli(&["chat", "bob"]);
    let mut child = chat
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = "/help\n/nope\n/history x\n//slash text\nhello\n/read\n/quit\nnot sent\n";
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{output:?}");

    assert_eq!(server.sent_texts(), ["/slash text", "hello"]);
    // /read marks what was shown: the backlog ends at seq 2.
    assert_eq!(server.marks(), [2]);
    assert!(stdout(&output).starts_with("2026-01-01 08:59 #1 bob: line 1\n"));
    let errors = stderr(&output);
    for line in [
        "/history [N]   show the last N events (default 20)",
        "unknown command /nope, not sent; /help lists them",
        "usage: /history [N]",
        "marked d/alice/bob read up to seq 2",
    ] {
        assert!(errors.contains(line), "{line:?} missing from:\n{errors}");
    }
}

#[tokio::test]
async fn presence_of_an_unknown_user_is_not_offline_and_fails() {
    let server = Server::start().await;
    let zed = server.run(&["presence", "zed"]).await;
    assert_eq!(zed.status.code(), Some(1), "{zed:?}");
    assert_eq!(
        stdout(&zed),
        "zed: unknown (no shared conversation, or never seen)\n"
    );

    let bob = server.run(&["presence", "bob"]).await;
    assert!(bob.status.success(), "{bob:?}");
    assert_eq!(stdout(&bob), "bob is offline, last seen 2026-01-01 08:59\n");
    let json = json_lines(&server.run(&["--json", "presence", "bob"]).await);
    assert_eq!(json[0]["last_seen"], NEW_YEAR);
    assert_eq!(json[0]["last_seen_iso"], "2025-12-31T23:59:00.000Z");
}

#[tokio::test]
async fn mark_read_says_what_it_did() {
    let server = Server::start().await;
    let given = server.run(&["mark-read", "bob", "42"]).await;
    assert_eq!(stdout(&given), "marked d/alice/bob read up to seq 42\n");
    // Without a seq: the newest event, from history.
    let newest = server.run(&["mark-read", "bob"]).await;
    assert_eq!(stdout(&newest), "marked d/alice/bob read up to seq 2\n");
    assert_eq!(server.marks(), [42, 2]);
}
