//! What an operator sees of a real `natter serve`: every ERROR counted by code, deliveries
//! timed as live or replay, the broker's and the process's metrics on the same `/metrics`,
//! the admin view with the broker's storage, the Grafana dashboard's queries all served, and
//! a banner whose token command works as printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use natter_codec::frame::{Hello, History, Resume, Send};
use natter_codec::types::{Direction, EventKind, Features};
use natter_codec::{ErrorCode, Frame, MAX_FRAME_SIZE_CAP, decode_frame};
use support::{PATIENCE, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const API_KEY: &str = "ops-test-key";

/// A raw protocol client: frames in, frames out, nothing hidden.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    /// Connects and says HELLO as `user`; returns once READY came.
    async fn connect(server: &Server, user: &str) -> Self {
        let stream = TcpStream::connect(&server.tcp).await.unwrap();
        let mut raw = Self {
            stream,
            buf: BytesMut::new(),
        };
        let token = support::token(user, "ops");
        raw.send(Hello {
            min_version: 1,
            max_version: 1,
            features: Features::ALL,
            max_frame_size: 65_536,
            token: Bytes::from(token),
            agent: "operations-test".into(),
        })
        .await;
        assert!(matches!(raw.recv().await, Frame::Ready(_)));
        raw
    }

    async fn send(&mut self, frame: impl Into<Frame>) {
        let bytes = frame.into().to_bytes().unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Frame {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(frame) = decode_frame(&mut self.buf, MAX_FRAME_SIZE_CAP).unwrap() {
                    return frame;
                }
                let read = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(read > 0, "the server closed the connection");
            }
        })
        .await
        .expect("no frame in time")
    }

    /// The next frame that `wanted` accepts, skipping pushes such as RECEIPT and PRESENCE.
    async fn expect<T>(&mut self, what: &str, mut wanted: impl FnMut(Frame) -> Option<T>) -> T {
        for _ in 0..100 {
            if let Some(found) = wanted(self.recv().await) {
                return found;
            }
        }
        panic!("no {what}");
    }

    /// Sends a message (or an edit or delete) and returns its seq.
    async fn send_message(
        &mut self,
        request: u64,
        conversation: &str,
        kind: EventKind,
        target: u64,
    ) -> u64 {
        self.send(message(request, conversation, kind, target))
            .await;
        self.expect("SEND_ACK", |frame| match frame {
            Frame::SendAck(ack) if ack.request == request => Some(ack.seq),
            Frame::Error(error) => panic!("SEND {request} refused: {error:?}"),
            _ => None,
        })
        .await
    }

    /// Sends a request and expects ERROR with `code` for it.
    async fn refused(&mut self, request: impl Into<Frame>, code: ErrorCode) {
        let request = request.into();
        let id = request.request().unwrap();
        self.send(request).await;
        let got = self
            .expect("ERROR", |frame| match frame {
                Frame::Error(error) if error.request == id => Some(error.code),
                _ => None,
            })
            .await;
        assert_eq!(got, code, "request {id}");
    }
}

fn message(request: u64, conversation: &str, kind: EventKind, target: u64) -> Send {
    Send {
        request,
        conversation: conversation.into(),
        client_msg_id: request,
        kind,
        target,
        content_type: "".into(),
        body: Bytes::from(format!("message {request}")),
    }
}

/// A blocking HTTP/1.1 GET; returns the status and body.
fn get(http: &str, path: &str, key: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let auth = key.map_or(String::new(), |key| {
        format!("authorization: Bearer {key}\r\n")
    });
    let request = format!("GET {path} HTTP/1.1\r\nhost: natter\r\nconnection: close\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

fn admin(http: &str, path: &str) -> serde_json::Value {
    let (status, body) = get(http, path, Some(API_KEY));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The value of the sample written exactly `sample` (name and labels) in an exposition.
fn value(metrics: &str, sample: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(sample)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Every sample and family name of an exposition.
fn names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(typed) => typed.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// Polls `/metrics` until `check` holds.
fn metrics_until(http: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (status, metrics) = get(http, "/metrics", None);
        assert_eq!(status, 200);
        if check(&metrics) {
            return metrics;
        }
        assert!(std::time::Instant::now() < deadline, "{what}:\n{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server with some traffic: alice wrote to bob while he was away, he came back and read
/// the replay, she wrote again, and he was refused what he may not do.
async fn traffic(server: &Server) -> (Raw, Raw) {
    let conversation = "d/alice/bob";
    let mut alice = Raw::connect(server, "alice").await;
    for request in 1..=3 {
        alice
            .send_message(request, conversation, EventKind::MESSAGE, 0)
            .await;
    }
    let mut bob = Raw::connect(server, "bob").await;
    bob.send(Resume {
        request: 1,
        after: 0,
    })
    .await;
    let mut replayed = 0;
    bob.expect("SYNCED", |frame| match frame {
        Frame::Deliver(_) => {
            replayed += 1;
            None
        }
        Frame::Synced(synced) if synced.request == 1 => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(replayed, 3, "three messages waited in bob's inbox");

    let seq = alice
        .send_message(4, conversation, EventKind::MESSAGE, 0)
        .await;
    let live = |frame| matches!(frame, Frame::Deliver(d) if d.event.seq == seq).then_some(());
    bob.expect("the live DELIVER", live).await;
    // Deleting her own message appends an event and rewrites its target as a tombstone.
    let deleted = alice
        .send_message(5, conversation, EventKind::DELETE, 2)
        .await;
    let live = |frame| matches!(frame, Frame::Deliver(d) if d.event.seq == deleted).then_some(());
    bob.expect("the DELETE", live).await;

    // Bob may not edit alice's message, edit one that does not exist, or read a
    // conversation he is not in.
    bob.refused(
        message(2, conversation, EventKind::EDIT, 1),
        ErrorCode::FORBIDDEN,
    )
    .await;
    bob.refused(
        message(3, conversation, EventKind::EDIT, 99),
        ErrorCode::NOT_FOUND,
    )
    .await;
    let history = History {
        request: 4,
        conversation: "d/alice/carol".into(),
        anchor: 0,
        direction: Direction::BACKWARD,
        limit: 10,
    };
    bob.refused(history, ErrorCode::NOT_FOUND).await;
    (alice, bob)
}

#[tokio::test]
async fn every_error_is_counted_and_replays_are_told_from_live_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let _clients = traffic(&server).await;
    let http = server.http.clone();
    let metrics = tokio::task::spawn_blocking(move || {
        metrics_until(&http, "the deliveries", |m| {
            value(m, r#"natter_delivery_seconds_count{kind="live"}"#) == Some(2.0)
        })
    })
    .await
    .unwrap();
    let sample = |sample: &str| value(&metrics, sample).unwrap_or(0.0);

    // Errors answered by the broker are counted like the edge's own.
    assert_eq!(sample(r#"natter_errors_total{code="FORBIDDEN"}"#), 1.0);
    assert_eq!(sample(r#"natter_errors_total{code="NOT_FOUND"}"#), 2.0);
    let counted: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("natter_errors_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        counted,
        sample(r#"natter_frames_out_total{type="ERROR"}"#),
        "every ERROR written is counted once"
    );

    // Three messages replayed after RESUME; the fourth and the delete arrived live.
    assert_eq!(
        sample(r#"natter_delivery_seconds_count{kind="replay"}"#),
        3.0
    );
    assert_eq!(sample(r#"natter_delivery_seconds_count{kind="live"}"#), 2.0);

    // The broker's metrics share the edge's /metrics.
    assert_eq!(
        sample("natter_events_appended_total"),
        5.0,
        "not the tombstone"
    );
    assert!(sample("natter_storage_commits_total") >= 1.0);
    assert_eq!(
        sample("natter_storage_commits_total"),
        sample("natter_storage_commit_seconds_count")
    );
    assert!(sample("natter_storage_commit_batches_sum") >= 5.0);
    assert!(sample("natter_storage_written_bytes_total") > 0.0);
    assert_eq!(sample("natter_storage_commit_failures_total"), 0.0);
    assert!(sample("natter_storage_bytes") > 0.0);
    assert_eq!(
        sample(r#"natter_broker_links{peer="edge-1",role="edge"}"#),
        1.0
    );
    assert!(value(&metrics, "natter_broker_queue_depth").is_some());
    assert!(value(&metrics, "natter_storage_queue_depth").is_some());
    // And the process's.
    assert!(sample("process_resident_memory_bytes") > 1e6);
    assert!(sample("process_open_fds") > 0.0);
    assert!(sample("process_cpu_seconds_total") >= 0.0);
}

#[tokio::test]
async fn the_admin_view_and_every_dashboard_query_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--api-key", API_KEY]);
    let _clients = traffic(&server).await;
    let http = server.http.clone();
    tokio::task::spawn_blocking(move || {
        for path in ["/v1/admin/server", "/v1/admin/connections"] {
            assert_eq!(get(&http, path, None).0, 401, "{path} without the key");
            assert_eq!(
                get(&http, path, Some("guess")).0,
                401,
                "{path} with a wrong key"
            );
        }

        let page = admin(&http, "/v1/admin/connections");
        assert_eq!(page["total"], 2);
        let users: Vec<&str> = page["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["user"].as_str().unwrap())
            .collect();
        assert_eq!(users, ["alice", "bob"]);
        assert_eq!(page["connections"][1]["transport"], "tcp");

        let server_info = admin(&http, "/v1/admin/server");
        assert_eq!(server_info["node"], "edge-1");
        assert_eq!(server_info["ready"], true);
        assert_eq!(server_info["connections"]["tcp"], 2);
        assert_eq!(server_info["links"][0]["state"], "up");
        assert_eq!(server_info["ring"]["brokers"], serde_json::json!(["b1"]));
        let broker = &server_info["broker"];
        assert_eq!(broker["node"], "b1");
        assert_eq!(broker["storage"], "redb");
        assert!(broker["storage_bytes"].as_u64().unwrap() > 0);
        assert_eq!(broker["events_appended"], 5);
        assert!(broker["commits"].as_u64().unwrap() >= 1);
        let links = serde_json::json!([{"peer": "edge-1", "role": "edge", "links": 1}]);
        assert_eq!(broker["links"], links);

        let (_, metrics) = get(&http, "/metrics", None);
        check_dashboard(&metrics);
    })
    .await
    .unwrap();
}

/// Every natter_* and process_* name the dashboard queries is in `metrics`.
fn check_dashboard(metrics: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/grafana/natter.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    assert!(queries.len() > 30, "the dashboard has its queries");
    let served = names(metrics);
    let mut queried = BTreeSet::new();
    for query in &queries {
        queried.extend(metric_names(query));
    }
    assert!(queried.len() > 20, "{queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|n| !served.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics natter serve does not have: {missing:?}"
    );
}

/// The PromQL of every panel target and template variable.
fn collect_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", serde_json::Value::String(query)) => {
                        out.push(query.clone())
                    }
                    ("query", serde_json::Value::String(query)) if query.contains('(') => {
                        out.push(query.clone())
                    }
                    _ => collect_queries(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_queries(item, out)),
        _ => {}
    }
}

/// The metric names (`natter_...`, `process_...`) a PromQL expression mentions.
fn metric_names(query: &str) -> Vec<String> {
    let bytes = query.as_bytes();
    let mut names = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let rest = &query[start..];
        let boundary = start == 0 || !is_name_byte(bytes[start - 1]);
        if boundary && (rest.starts_with("natter_") || rest.starts_with("process_")) {
            let len = rest.bytes().take_while(|b| is_name_byte(*b)).count();
            names.push(rest[..len].to_string());
            start += len;
        } else {
            start += 1;
        }
    }
    names
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

#[test]
fn metric_names_are_read_from_promql() {
    let query = concat!(
        r#"histogram_quantile(0.99, sum by (le) (rate(natter_send_ack_seconds_bucket"#,
        r#"{instance=~"$instance"}[$__rate_interval]))) / process_open_fds"#
    );
    assert_eq!(
        metric_names(query),
        ["natter_send_ack_seconds_bucket", "process_open_fds"]
    );
    assert!(
        metric_names(r#"sum(x{code="natter_no"})"#).len() == 1,
        "inside a label too"
    );
}

/// The banner's `get a token` line is a command that works, typed where `serve` runs: from
/// the repository root (a relative path to the binary) and from elsewhere (an absolute one).
#[test]
fn the_banner_command_runs_as_printed() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let elsewhere = tempfile::tempdir().unwrap();
    for cwd in [repo, elsewhere.path()] {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(support::natter())
            .args(["serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .current_dir(cwd)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(command) = line.trim().strip_prefix("get a token: ") {
                    let _ = tx.send(command.to_string());
                }
            }
        });
        let command = rx
            .recv_timeout(PATIENCE)
            .expect("a banner with a token command");
        let _ = child.kill();
        let _ = child.wait();
        if cwd == repo {
            assert!(command.starts_with("./target/"), "{command}");
        } else {
            assert!(command.starts_with('/'), "{command}");
        }
        let output = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(cwd)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{command}: {stderr}");
        let token = String::from_utf8(output.stdout).unwrap();
        assert!(
            token.trim().starts_with("v1.k1."),
            "{command} printed {token}"
        );
    }
}

/// `natter broker` has no HTTP listener of its own: `--metrics` serves its metrics.
#[test]
fn a_broker_alone_serves_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", support::free_port());
    let link = format!("127.0.0.1:{}", support::free_port());
    let mut broker = Command::new(support::natter())
        .args(["broker", "--listen", &link, "--metrics", &metrics])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let exposition = loop {
        if std::net::TcpStream::connect(&metrics).is_ok() {
            break get(&metrics, "/metrics", None);
        }
        assert!(std::time::Instant::now() < deadline, "no metrics listener");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(exposition.0, 200);
    let served = names(&exposition.1);
    for name in [
        "natter_storage_commits_total",
        "natter_storage_commit_seconds_bucket",
        "natter_events_appended_total",
        "natter_broker_queue_depth",
        "natter_storage_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(served.contains(name), "{name} missing:\n{}", exposition.1);
    }
    assert!(!served.contains("natter_connections"), "no edge here");
}
