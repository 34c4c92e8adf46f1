//! Reads and writes over [`Storage`] with the shard's own writes layered on top.
//!
//! Writes are staged in a transaction (one per input the shard handles). A finished
//! transaction becomes a [`Batch`] for the group committer and stays readable in an overlay
//! until the driver reports it durable, so the next request already sees seq 42 while seq 41
//! is still being flushed. A failed request aborts its transaction and leaves no trace.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use natter_codec::field::Field;

use crate::records::{self, Corrupt};
use crate::storage::{Batch, Storage, StorageError};

/// Identifies a batch handed to the driver for a durable commit.
pub type CommitId = u64;

/// Why a read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The backend failed or its checksum caught a corrupt record.
    Storage(StorageError),
    /// A record passed its checksum but does not decode.
    Corrupt,
}

impl From<StorageError> for ReadError {
    fn from(error: StorageError) -> Self {
        Self::Storage(error)
    }
}

impl From<Corrupt> for ReadError {
    fn from(Corrupt: Corrupt) -> Self {
        Self::Corrupt
    }
}

/// Storage plus the writes that are not durable yet.
pub(crate) struct Store {
    storage: Arc<dyn Storage>,
    /// Writes of the transaction in progress.
    txn: BTreeMap<Vec<u8>, Option<Bytes>>,
    /// Writes handed to the committer, with the commit that wrote each key last.
    overlay: BTreeMap<Vec<u8>, (CommitId, Option<Bytes>)>,
    /// The keys each commit in flight wrote, oldest first.
    in_flight: VecDeque<(CommitId, Vec<Vec<u8>>)>,
    /// The newest commit handed out.
    last_commit: CommitId,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("txn", &self.txn.len())
            .field("overlay", &self.overlay.len())
            .field("last_commit", &self.last_commit)
            .finish()
    }
}

impl Store {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            txn: BTreeMap::new(),
            overlay: BTreeMap::new(),
            in_flight: VecDeque::new(),
            last_commit: 0,
        }
    }

    /// Reads one key as the shard last wrote it.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        if let Some(value) = self.txn.get(key) {
            return Ok(value.clone());
        }
        if let Some((_, value)) = self.overlay.get(key) {
            return Ok(value.clone());
        }
        self.storage.get(key)
    }

    /// Reads and decodes one record.
    pub(crate) fn record<T: Field>(&self, key: &[u8]) -> Result<Option<T>, ReadError> {
        match self.get(key)? {
            Some(value) => Ok(Some(records::decode(value)?)),
            None => Ok(None),
        }
    }

    /// Reads at most `limit` entries with `start <= key < end`, ascending or descending.
    pub(crate) fn range(
        &self,
        (start, end): (&[u8], &[u8]),
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StorageError> {
        let staged: Vec<(&Vec<u8>, &Option<Bytes>)> = self
            .overlay
            .range::<[u8], _>((
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ))
            .map(|(k, (_, v))| (k, v))
            .chain(self.txn.range::<[u8], _>((
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            )))
            .collect();
        // Each staged delete can hide at most one stored entry, so reading that many more
        // from storage is always enough to fill the page.
        let stored = self
            .storage
            .range(start, end, reverse, limit.saturating_add(staged.len()))?;
        if staged.is_empty() {
            return Ok(stored.into_iter().map(|(k, v)| (k.to_vec(), v)).collect());
        }
        let mut merged: BTreeMap<Vec<u8>, Option<Bytes>> = stored
            .into_iter()
            .map(|(k, v)| (k.to_vec(), Some(v)))
            .collect();
        // The overlay comes first in `staged`, so the transaction's writes win.
        for (key, value) in staged {
            merged.insert(key.clone(), value.clone());
        }
        let live = merged.into_iter().filter_map(|(k, v)| Some((k, v?)));
        Ok(if reverse {
            live.rev().take(limit).collect()
        } else {
            live.take(limit).collect()
        })
    }

    /// Stages a put.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.txn.insert(key, Some(value.into()));
    }

    /// Stages a put of a record.
    pub(crate) fn put_record<T: Field>(&mut self, key: Vec<u8>, record: &T) {
        self.put(key, records::encode(record));
    }

    /// Stages a delete.
    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.txn.insert(key, None);
    }

    /// Drops the transaction's writes.
    pub(crate) fn abort(&mut self) {
        self.txn.clear();
    }

    /// Ends the transaction: its writes, if any, as a batch to commit.
    pub(crate) fn finish(&mut self) -> Option<(CommitId, Batch)> {
        if self.txn.is_empty() {
            return None;
        }
        self.last_commit += 1;
        let id = self.last_commit;
        let mut batch = Batch::default();
        let mut keys = Vec::with_capacity(self.txn.len());
        for (key, value) in std::mem::take(&mut self.txn) {
            match &value {
                Some(v) => batch.put(key.clone(), v.to_vec()),
                None => batch.delete(key.clone()),
            }
            self.overlay.insert(key.clone(), (id, value));
            keys.push(key);
        }
        self.in_flight.push_back((id, keys));
        Some((id, batch))
    }

    /// The newest commit handed out: everything the shard has written is in it or before it.
    pub(crate) fn last_commit(&self) -> CommitId {
        self.last_commit
    }

    /// Forgets the overlay of every commit up to `id`: storage now has it.
    pub(crate) fn durable(&mut self, id: CommitId) {
        while let Some((commit, _)) = self.in_flight.front() {
            if *commit > id {
                break;
            }
            let Some((commit, keys)) = self.in_flight.pop_front() else {
                break;
            };
            for key in keys {
                if self
                    .overlay
                    .get(&key)
                    .is_some_and(|(writer, _)| *writer == commit)
                {
                    self.overlay.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn staged_writes_are_read_back_and_merged_into_ranges() {
        let storage = Arc::new(MemoryStorage::new());
        let mut setup = Batch::default();
        for k in [1u8, 3, 5] {
            setup.put(vec![k], vec![k]);
        }
        storage.commit(&[setup]).unwrap();
        let mut store = Store::new(storage.clone());
        store.delete(vec![3]);
        store.put(vec![4], vec![40]);
        let (id, batch) = store.finish().unwrap();
        store.put(vec![2], vec![20]);
        let keys = |r: Vec<(Vec<u8>, Bytes)>| r.into_iter().map(|(k, _)| k[0]).collect::<Vec<_>>();
        assert_eq!(
            keys(store.range((&[0], &[9]), false, 10).unwrap()),
            [1, 2, 4, 5]
        );
        assert_eq!(keys(store.range((&[0], &[9]), true, 2).unwrap()), [5, 4]);
        store.abort();
        assert_eq!(store.get(&[2]).unwrap(), None);
        storage.commit(&[batch]).unwrap();
        store.durable(id);
        assert_eq!(store.get(&[4]).unwrap().as_deref(), Some(&[40][..]));
        assert_eq!(
            keys(store.range((&[0], &[9]), false, 10).unwrap()),
            [1, 4, 5]
        );
    }
}
