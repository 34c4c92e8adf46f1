//! natter passes its own conformance suite: every scenario of conformance/ against a real
//! `natter serve`, over TCP and over its WebSocket bridge.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a failed step should panic"
)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use natter_conformance::{Failure, Target, TokenSource};
use natter_edge::{TokenKey, TokenKeys};
use support::Server;

/// Short deadlines, so that the scenarios that wait for them fit in the run: a silent
/// connection is closed after 2 x 5 s instead of a minute.
const CONFIG: &str = "[edge.timing]\nheartbeat_ms = 5000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn natter_serve_passes_every_scenario() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("natter.toml");
    std::fs::write(&config, CONFIG).expect("write the config");
    let server = Server::start(dir.path(), &["--config", config.to_str().unwrap()]);
    // Tokens are minted in process with the server's secret, for any validity; the ids are
    // not checked here, so the server's own refusal of bad ids is what the scenarios see.
    let keys = TokenKeys::new(vec![TokenKey {
        id: "k1".into(),
        secret: support::SECRET.into(),
    }])
    .unwrap();
    let tokens = TokenSource(Box::new(move |user, device, validity: Duration| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| Failure::new(e.to_string()))?;
        let expires_at = (now + validity).as_millis() as u64;
        Ok(keys.mint(user, device, expires_at))
    }));
    let target = Target {
        addr: server.tcp.clone(),
        ws: Some(format!("{}/ws", server.http)),
        tokens,
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
    // Skips count as failures here: natter gives every scenario what it needs.
    assert!(
        failed.is_empty(),
        "failed or skipped scenarios:\n{}",
        failed.join("\n")
    );
    let coverage = natter_conformance::coverage();
    assert!(coverage.uncovered.is_empty(), "{coverage}");
}
