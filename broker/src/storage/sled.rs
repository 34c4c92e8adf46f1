//! The sled 0.34.7 backend.
//!
//! Everything lives in sled's default tree. Each [`Batch`] becomes one `sled::Batch`, which
//! sled applies atomically; a commit then calls `flush` once.
//!
//! On Linux, sled 0.34.7's `flush` ends its log writes with `sync_file_range`, which neither
//! flushes the drive's write cache nor persists the file's size, so it survives a process
//! crash but not a power cut. `commit` therefore also `fdatasync`s sled's log file (`db`)
//! after the flush: one more sync per group commit, shared by every batch in it.
//!
//! sled's background flusher is turned off (`flush_every_ms(None)`): durability comes only
//! from the syncs in `commit`, so what the group committer acknowledges is exactly what was
//! flushed, and the flusher does not spend disk bandwidth on syncs nobody waits for.

use std::fs::File;
use std::path::Path;

use bytes::Bytes;

use super::{Batch, Op, Storage, StorageError, checksum};

/// A [`Storage`] on sled.
#[derive(Debug)]
pub struct SledStorage {
    db: ::sled::Db,
    /// sled's log file, opened only to `fdatasync` it.
    log: File,
}

impl SledStorage {
    /// Opens (or creates) the database in directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        let dir = dir.as_ref();
        let db = ::sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let log = File::open(dir.join("db")).map_err(io)?;
        // The directory entries of files sled just created must be durable too.
        File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
        Ok(Self { db, log })
    }

    /// Stores `record` under `key` as is, without a checksum: tests use it to plant corrupt
    /// records.
    #[cfg(test)]
    pub(crate) fn put_raw(&self, key: &[u8], record: &[u8]) -> Result<(), StorageError> {
        self.db.insert(key, record).map_err(backend)?;
        Ok(())
    }
}

fn backend(error: ::sled::Error) -> StorageError {
    StorageError::Backend(format!("sled: {error}"))
}

fn io(error: std::io::Error) -> StorageError {
    StorageError::Backend(format!("sled log file: {error}"))
}

fn entry(key: &[u8], record: &::sled::IVec) -> Result<Bytes, StorageError> {
    checksum::open(key, Bytes::copy_from_slice(record))
}

impl Storage for SledStorage {
    fn commit(&self, batches: &[Batch]) -> Result<(), StorageError> {
        for batch in batches {
            let mut writes = ::sled::Batch::default();
            for op in &batch.ops {
                match op {
                    Op::Put(key, value) => {
                        writes.insert(key.as_slice(), checksum::seal(key, value))
                    }
                    Op::Delete(key) => writes.remove(key.as_slice()),
                }
            }
            self.db.apply_batch(writes).map_err(backend)?;
        }
        self.db.flush().map_err(backend)?;
        self.log.sync_data().map_err(io)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let record = self.db.get(key).map_err(backend)?;
        record.map(|record| entry(key, &record)).transpose()
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
        let entries = self.db.range(start..end);
        let entries: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(entries.rev())
        } else {
            Box::new(entries)
        };
        entries
            .take(limit)
            .map(|item| {
                let (key, record) = item.map_err(backend)?;
                let value = entry(&key, &record)?;
                Ok((Bytes::copy_from_slice(&key), value))
            })
            .collect()
    }
}
