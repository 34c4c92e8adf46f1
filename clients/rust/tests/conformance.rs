//! The SDK passes natter-conformance's client mode: every client scenario, over TCP and over
//! WebSocket, against `examples/conformance_client.rs` (the contract of conformance/README.md).
//!
//! `cargo test -p natter-client` builds the example first; run alone (`--test conformance`),
//! the test builds it if it is missing, and otherwise uses the one there.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

use std::path::PathBuf;

use natter_conformance::client::{ClientTarget, SCENARIOS, run};

/// target/debug/examples/conformance_client, next to this test's own directory.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug");
    let example = debug.join("examples").join("conformance_client");
    if !example.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "natter-client",
                "--example",
                "conformance_client",
            ])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the conformance client failed");
    }
    example
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sdk_passes_every_client_scenario_over_tcp_and_websocket() {
    let cmd = format!("'{}'", example().display());
    let target = |ws| ClientTarget {
        cmd: cmd.clone(),
        ws,
        minimal: false,
    };
    let (tcp, ws) = (target(false), target(true));
    let (tcp, ws) = tokio::join!(run(&tcp, "", 6), run(&ws, "", 6));
    let mut failed = Vec::new();
    for (transport, outcomes) in [("tcp", &tcp), ("ws", &ws)] {
        assert_eq!(outcomes.len(), SCENARIOS.len());
        for outcome in outcomes.iter() {
            if let Err(failure) = &outcome.result
                && !failure.is_skip()
            {
                failed.push(format!(
                    "{transport}: {} {:?}: {failure}",
                    outcome.name, outcome.rules
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
    // A scenario may be skipped on one transport (frames split on TCP, one frame per message
    // on a WebSocket), never on both.
    for (over_tcp, over_ws) in tcp.iter().zip(ws.iter()) {
        assert!(
            over_tcp.result.is_ok() || over_ws.result.is_ok(),
            "{} ran on neither transport",
            over_tcp.name
        );
    }
}
