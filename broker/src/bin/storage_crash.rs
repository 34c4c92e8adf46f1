//! Crash-safety driver for the storage backends (used by `tests/storage_crash.rs`).
//!
//! `storage_crash write <sled|redb> <dir>` appends numbered batches through the group
//! committer, continuing after the last stored number, and prints each number once it is
//! durable. Kill it at any moment, then
//! `storage_crash check <sled|redb> <dir> [<highest printed number>]` reopens the store and
//! checks that the stored numbers are exactly 0..=last, each batch whole, and that every
//! printed number is among them. It prints `last=<n>` (or `last=none`) and exits 1 on a
//! violation.
//!
//! Batch `n` writes `log/n` (the number and a filler derived from it), sets `last` to `n`,
//! and moves the single `tail/*` key from `n - 1` to `n`: a torn batch shows up as a `last`
//! that disagrees with the log or as zero or two tail keys.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use natter_broker::storage::{
    Batch, CommitterConfig, GroupCommitter, RedbStorage, SledStorage, Storage, StorageError,
};

/// Batches in flight between enqueue and print; bounds how many share one flush.
const PIPELINE: usize = 256;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn log_key(n: u64) -> Vec<u8> {
    [b"log/".as_slice(), &n.to_be_bytes()].concat()
}

fn tail_key(n: u64) -> Vec<u8> {
    [b"tail/".as_slice(), &n.to_be_bytes()].concat()
}

/// The value of `log/n`: the number, then a filler only `n` produces.
fn log_value(n: u64) -> Vec<u8> {
    let mut value = n.to_be_bytes().to_vec();
    value.extend((0..120u64).map(|i| (n.wrapping_mul(31).wrapping_add(i) % 251) as u8));
    value
}

fn numbered_batch(n: u64) -> Batch {
    let mut batch = Batch::default();
    batch.put(log_key(n), log_value(n));
    batch.put(*b"last", n.to_be_bytes());
    if let Some(previous) = n.checked_sub(1) {
        batch.delete(tail_key(previous));
    }
    batch.put(tail_key(n), n.to_be_bytes());
    batch
}

fn open(backend: &str, dir: &str) -> Result<Arc<dyn Storage>> {
    let storage: Arc<dyn Storage> = match backend {
        "sled" => Arc::new(SledStorage::open(dir)?),
        "redb" => Arc::new(RedbStorage::open(dir)?),
        other => return Err(format!("unknown backend {other:?} (sled or redb)").into()),
    };
    Ok(storage)
}

fn number(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn stored_last(storage: &dyn Storage) -> Result<Option<u64>> {
    match storage.get(b"last")? {
        Some(bytes) => Ok(Some(
            number(&bytes).ok_or(format!("bad last record {bytes:02x?}"))?,
        )),
        None => Ok(None),
    }
}

async fn write(storage: Arc<dyn Storage>) -> Result<()> {
    let first = stored_last(storage.as_ref())?.map_or(0, |last| last + 1);
    let committer = GroupCommitter::start(storage, CommitterConfig::default())?;
    let (durables, mut in_order) = tokio::sync::mpsc::channel(PIPELINE);
    let producer = tokio::spawn(async move {
        for n in first.. {
            let durable = committer.enqueue(numbered_batch(n)).await?;
            if durables.send((n, durable)).await.is_err() {
                break;
            }
        }
        Ok::<_, StorageError>(())
    });
    let mut stdout = std::io::stdout();
    while let Some((n, durable)) = in_order.recv().await {
        durable.await.map_err(|e| format!("batch {n}: {e}"))?;
        writeln!(stdout, "{n}").and_then(|()| stdout.flush())?;
    }
    Ok(producer.await??)
}

fn check(storage: &dyn Storage, printed: Option<u64>) -> Result<Option<u64>> {
    let last = stored_last(storage)?;
    let expected = last.map_or(0, |last| last + 1);
    let mut next = 0u64;
    let mut start = log_key(0);
    loop {
        let page = storage.range(&start, b"log0", false, 4096)?;
        let Some((last_key, _)) = page.last() else {
            break;
        };
        start = [last_key.as_ref(), &[0]].concat();
        for (key, value) in &page {
            if key.as_ref() != log_key(next) || value.as_ref() != log_value(next) {
                return Err(format!("log entry {next}: found key {key:02x?}").into());
            }
            next += 1;
        }
    }
    if next != expected {
        return Err(format!("log holds {next} entries but last is {last:?}").into());
    }
    let tails = storage.range(b"tail/", b"tail0", false, 3)?;
    let tails: Vec<_> = tails
        .iter()
        .map(|(key, value)| (key.to_vec(), number(value)))
        .collect();
    let expected_tails: Vec<_> = last
        .map(|last| (tail_key(last), Some(last)))
        .into_iter()
        .collect();
    if tails != expected_tails {
        return Err(format!("tail keys {tails:02x?} do not match last {last:?}").into());
    }
    if let Some(printed) = printed {
        if last.is_none_or(|last| last < printed) {
            return Err(
                format!("{printed} was reported durable but the store ends at {last:?}").into(),
            );
        }
    }
    Ok(last)
}

fn run(args: &[String]) -> Result<()> {
    match args {
        [mode, backend, dir] if mode == "write" => {
            let storage = open(backend, dir)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            runtime.block_on(write(storage))
        }
        [mode, backend, dir, printed @ ..] if mode == "check" && printed.len() <= 1 => {
            let printed = match printed.first() {
                Some(n) => Some(n.parse().map_err(|_| format!("bad number {n:?}"))?),
                None => None,
            };
            let last = check(open(backend, dir)?.as_ref(), printed)?;
            match last {
                Some(last) => println!("last={last}"),
                None => println!("last=none"),
            }
            Ok(())
        }
        _ => Err("usage: storage_crash write|check <sled|redb> <dir> [<highest printed>]".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("storage_crash: {error}");
            ExitCode::FAILURE
        }
    }
}
