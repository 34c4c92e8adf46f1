//! SIGKILLs the `storage_crash` writer at random moments and checks after every kill that
//! each number it reported durable is stored, batches are whole and the log is gapless.
//!
//! CI runs a few rounds per backend; `NATTER_CRASH_ROUNDS=200` runs more, and
//! `NATTER_CRASH_SEED` replays a run (the seed is printed).

// The helpers below are test code too: a failed expectation is a failed test.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DRIVER: &str = env!("CARGO_BIN_EXE_storage_crash");

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|value| value.parse().expect("a number"))
}

/// The checker's verdict: the highest stored number, after checking the store.
fn check(backend: &str, dir: &Path, printed: Option<u64>) -> Option<u64> {
    let mut command = Command::new(DRIVER);
    command.args(["check", backend]).arg(dir);
    if let Some(printed) = printed {
        command.arg(printed.to_string());
    }
    let output = command.output().expect("run checker");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{backend}: check failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    match stdout.trim().strip_prefix("last=").expect("last=") {
        "none" => None,
        last => Some(last.parse().expect("last number")),
    }
}

fn crash_repeatedly(backend: &str) {
    let rounds = env_number("NATTER_CRASH_ROUNDS").unwrap_or(5);
    let seed = env_number("NATTER_CRASH_SEED").unwrap_or_else(rand::random);
    println!("{backend}: {rounds} rounds, NATTER_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut stored = None;
    let mut unreported = 0;
    for round in 0..rounds {
        let mut writer = Command::new(DRIVER)
            .args(["write", backend])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let (lines, printed) = mpsc::channel();
        let stdout = BufReader::new(writer.stdout.take().expect("stdout"));
        let reader = std::thread::spawn(move || {
            for line in stdout.lines() {
                let n: u64 = line.expect("read").parse().expect("a number per line");
                if lines.send(n).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of durable batches (none: during open or recovery),
        // then a random extra instant, so kills land at every stage of a flush.
        let wait_for = rng.random_range(0..3000);
        let mut reported = Vec::new();
        while reported.len() < wait_for {
            match printed.recv() {
                Ok(n) => reported.push(n),
                Err(_) => panic!("{backend}: round {round}: writer exited by itself"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
        writer.kill().expect("SIGKILL");
        writer.wait().expect("reap");
        reader.join().expect("reader");
        reported.extend(printed.try_iter());
        let expected_first = stored.map_or(0, |last| last + 1);
        let expected: Vec<u64> = (expected_first..).take(reported.len()).collect();
        assert_eq!(
            reported, expected,
            "{backend}: round {round}: numbers out of order"
        );
        let last_reported = reported.last().copied().or(stored);
        let last = check(backend, dir.path(), last_reported);
        unreported += last.map_or(0, |last| last + 1) - last_reported.map_or(0, |n| n + 1);
        stored = last;
    }
    println!(
        "{backend}: {rounds} kills in {:.1?}: {} batches stored, all {} reported ones present, \
         {unreported} stored without being reported",
        started.elapsed(),
        stored.map_or(0, |last| last + 1),
        stored.map_or(0, |last| last + 1) - unreported,
    );
}

#[test]
fn sled_keeps_every_durable_batch_across_sigkill() {
    crash_repeatedly("sled");
}

#[test]
fn redb_keeps_every_durable_batch_across_sigkill() {
    crash_repeatedly("redb");
}
