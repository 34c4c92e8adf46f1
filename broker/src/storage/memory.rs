//! An in-memory backend for tests and the deterministic simulation.
//!
//! It stores sealed records like the disk backends do, so corruption is detected the same way
//! and a test can inject it with [`MemoryStorage::corrupt`]. `commit` is synchronous, so
//! everything committed is "durable": [`MemoryStorage::crash_copy`] models a restart after a
//! crash by handing a fresh broker exactly the committed state.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::{Batch, Op, Storage, StorageError, checksum};

/// A [`Storage`] in a `BTreeMap` behind a mutex.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: BTreeMap<Vec<u8>, Bytes>,
    commits: u64,
    failing: bool,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, independent store holding exactly what was committed here: the state a broker
    /// finds when it restarts after a crash. Counters and injected faults are not copied.
    pub fn crash_copy(&self) -> Self {
        let records = self.state().records.clone();
        Self {
            state: Mutex::new(State {
                records,
                ..State::default()
            }),
        }
    }

    /// How many calls to `commit` succeeded (group-commit tests count flushes with it).
    pub fn commit_count(&self) -> u64 {
        self.state().commits
    }

    /// While `failing` is set, `commit` writes nothing and returns a backend error, like a
    /// full disk would.
    pub fn fail_commits(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// Flips a bit in the stored record of `key`, as a bad disk would; returns whether the
    /// key existed. Reads of it then fail with [`StorageError::Corrupt`].
    pub fn corrupt(&self, key: &[u8]) -> bool {
        let mut state = self.state();
        let Some(record) = state.records.get_mut(key) else {
            return false;
        };
        let mut bytes = record.to_vec();
        bytes[0] ^= 0x01;
        *record = bytes.into();
        true
    }

    /// Stores `record` under `key` as is, without a checksum: tests use it to plant corrupt
    /// records.
    #[cfg(test)]
    pub(crate) fn put_raw(&self, key: &[u8], record: &[u8]) {
        self.state()
            .records
            .insert(key.to_vec(), Bytes::copy_from_slice(record));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the state consistent before it can panic, so a poisoned
        // lock holds nothing half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemoryStorage {
    fn commit(&self, batches: &[Batch]) -> Result<(), StorageError> {
        let mut state = self.state();
        if state.failing {
            return Err(StorageError::Backend("injected commit failure".into()));
        }
        for op in batches.iter().flat_map(|batch| &batch.ops) {
            match op {
                Op::Put(key, value) => {
                    state
                        .records
                        .insert(key.clone(), checksum::seal(key, value).into());
                }
                Op::Delete(key) => {
                    state.records.remove(key);
                }
            }
        }
        state.commits += 1;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let record = self.state().records.get(key).cloned();
        record.map(|record| checksum::open(key, record)).transpose()
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let state = self.state();
        let entries = state.records.range::<[u8], _>((
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        ));
        let entries: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(entries.rev())
        } else {
            Box::new(entries)
        };
        entries
            .take(limit)
            .map(|(key, record)| {
                let value = checksum::open(key, record.clone())?;
                Ok((Bytes::copy_from_slice(key), value))
            })
            .collect()
    }
}
