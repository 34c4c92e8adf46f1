//! natter passes its own conformance suite: every scenario of conformance/ against a real
//! `natter serve` over TCP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use natter_conformance::{Target, TokenSource};
use support::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natter_serve_passes_every_scenario() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let target = Target {
        addr: server.tcp.clone(),
        tokens: TokenSource(Box::new(|user, device| Ok(support::token(user, device)))),
    };
    let outcomes = natter_conformance::run(&target, "").await;
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .err()
                .map(|e| format!("{} {:?}: {e}", o.name, o.rules))
        })
        .collect();
    assert_eq!(outcomes.len(), natter_conformance::SCENARIOS.len());
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
}
