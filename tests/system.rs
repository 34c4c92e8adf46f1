//! System tests: the Rust SDK against a real `natter serve` over every transport, for what a
//! user of a chat system sees: chat, order, receipts, presence, typing, groups, history and a
//! drain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::time::Duration;

use natter_client::{
    Client, Config, ConnectionState, Direction, ErrorCode, Event, Events, Role, Status,
};
use support::Server;

/// Guards against a hang; no assertion depends on how fast anything is.
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(url: &str, user: &str, ca: Option<&std::path::Path>) -> (Client, Events) {
    let mut config = Config::new(url, support::token(user, "system")).expect("config");
    if let Some(ca) = ca {
        config = config.with_ca_file(ca);
    }
    Client::connect(config).await.expect("connect")
}

/// Reads events until `wanted` returns something, skipping the rest.
async fn wait_for<T>(
    events: &mut Events,
    what: &str,
    mut wanted: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let event = events
                .next()
                .await
                .unwrap_or_else(|| panic!("events ended waiting for {what}"));
            if let Some(found) = wanted(&event) {
                return found;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what}"))
}

/// A CA and a server certificate for localhost signed by it, written as PEM files.
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

/// Two users chat and read over one transport: message, delivery, read receipt.
async fn chat(url: &str, ca: Option<&std::path::Path>, tag: &str) {
    let (alice, bob) = (format!("alice-{tag}"), format!("bob-{tag}"));
    let (alice_client, mut alice_events) = connect(url, &alice, ca).await;
    let (bob_client, mut bob_events) = connect(url, &bob, ca).await;
    let chat = alice_client.direct_conversation(&bob);
    let sent = alice_client
        .send_text(&chat, &format!("hello over {tag}"))
        .await
        .expect("send");
    let message = wait_for(&mut bob_events, "the message", |e| match e {
        Event::Message(m) if m.conversation == chat => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (message.seq, message.sender.as_str()),
        (sent.seq, alice.as_str())
    );
    assert_eq!(message.text(), Some(format!("hello over {tag}").as_str()));
    bob_client
        .mark_read(&chat, message.seq)
        .await
        .expect("mark read");
    wait_for(&mut alice_events, "bob's read receipt", |e| match e {
        Event::Receipt { user, read, .. } if *user == bob && *read == sent.seq => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_over_tcp_tls_and_websocket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(dir.path());
    let (cert, key) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let server = Server::start(
        dir.path(),
        &[
            "--tls",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    chat(&format!("tcp://{}", server.tcp), None, "tcp").await;
    let tls_port = server
        .tls
        .as_deref()
        .expect("a TLS listener")
        .rsplit(':')
        .next()
        .expect("port");
    chat(&format!("tls://localhost:{tls_port}"), Some(&ca), "tls").await;
    chat(&format!("ws://{}/ws", server.http), None, "ws").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_between_members() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let url = format!("tcp://{}", server.tcp);
    let (alice, mut alice_events) = connect(&url, "alice", None).await;
    let (bob, mut bob_events) = connect(&url, "bob", None).await;
    let chat = alice.direct_conversation("bob");
    alice
        .send_text(&chat, "are you there?")
        .await
        .expect("send");
    // bob's presence is alice's to see once bob has written to her (NWP-7.9-4).
    bob.send_text(&chat, "yes").await.expect("send");
    alice
        .subscribe_presence(&chat, Duration::from_secs(60))
        .await
        .expect("subscribe");
    wait_for(&mut alice_events, "bob online", |e| match e {
        Event::Presence { user, status, .. } if user == "bob" && *status == Status::ONLINE => {
            Some(())
        }
        _ => None,
    })
    .await;
    bob.typing(&chat, true).await.expect("typing");
    wait_for(&mut alice_events, "bob typing", |e| match e {
        Event::Typing {
            user, active: true, ..
        } if user == "bob" => Some(()),
        _ => None,
    })
    .await;
    bob.close().await;
    drop(bob_events.next().await);
    let last_seen = wait_for(&mut alice_events, "bob offline", |e| match e {
        Event::Presence {
            user,
            status,
            last_seen,
        } if user == "bob" && *status == Status::OFFLINE => Some(*last_seen),
        _ => None,
    })
    .await;
    assert!(
        last_seen > 0,
        "offline presence carries when bob was last seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_keep_pipelined_order_and_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let url = format!("tcp://{}", server.tcp);
    let (alice, _alice_events) = connect(&url, "alice", None).await;
    let (_bob, mut bob_events) = connect(&url, "bob", None).await;
    let (carol, _carol_events) = connect(&url, "carol", None).await;
    let group = alice
        .create_group("crew", &["bob", "carol"])
        .await
        .expect("create");
    let roles = &group.members;
    assert!(roles.contains(&("alice".into(), Role::OWNER)), "{roles:?}");
    let id = group.conversation.clone();

    // Fifty sends pipelined on one connection get consecutive seqs in send order.
    let mut pending = Vec::new();
    for n in 0..50 {
        let message = natter_client::OutgoingMessage::text(&id, &format!("m{n}"));
        pending.push(
            alice
                .enqueue(natter_client::Request::Send(message))
                .await
                .expect("enqueue"),
        );
    }
    let mut seqs = Vec::new();
    for reply in pending {
        seqs.push(reply.sent().await.expect("sent").seq);
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let received: Vec<u64> = {
        let mut got = Vec::new();
        while got.len() < 50 {
            let seq = wait_for(&mut bob_events, "group messages", |e| match e {
                Event::Message(m) if m.conversation == id => Some(m.seq),
                _ => None,
            })
            .await;
            got.push(seq);
        }
        got
    };
    assert_eq!(
        received, seqs,
        "bob receives the group's messages once, in order"
    );

    let page = carol
        .history(&id, 0, Direction::BACKWARD, 10)
        .await
        .expect("history");
    let bodies: Vec<String> = page
        .events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        (40..50).map(|n| format!("m{n}")).collect::<Vec<_>>()
    );
    assert!(page.more);

    alice
        .remove_member(&id, "carol")
        .await
        .expect("remove carol");
    let refused = carol
        .send_text(&id, "still here?")
        .await
        .expect_err("carol was removed");
    // A former member hears what anyone outside hears (NWP-8.2-1).
    assert_eq!(refused.code(), Some(ErrorCode::NOT_FOUND), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_goaway_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(dir.path(), &[]);
    let url = format!("tcp://{}", server.tcp);
    let (alice, mut events) = connect(&url, "alice", None).await;
    let chat = alice.direct_conversation("bob");
    let before = alice
        .send_text(&chat, "before the drain")
        .await
        .expect("send");
    server.terminate();
    wait_for(&mut events, "GOAWAY", |e| {
        matches!(e, Event::Connection(ConnectionState::GoingAway { .. })).then_some(())
    })
    .await;
    server.wait_exit_success();
    server.restart();
    let after = alice
        .send_text(&chat, "after the restart")
        .await
        .expect("send after restart");
    assert_eq!(after.seq, before.seq + 1);
}
