//! Durable storage behind one small trait, so the broker's logic does not depend on a backend.
//!
//! The broker keeps everything in one ordered key space (keys start with a table prefix byte,
//! see `keys`); a backend only needs atomic batches, point reads and ordered range scans.
//! Durability is explicit: [`Storage::commit`] returns only once every batch it was given is
//! on disk, which is what lets the group committer share one flush among many messages.
//!
//! - [`GroupCommitter`] (`committer`): the thread that batches commits and acknowledges them.
//! - [`RedbStorage`] and [`SledStorage`]: the disk backends; redb is the better default (it
//!   was faster and had the lower tail latency under the durability benchmark, and its
//!   commit is a real `fdatasync`, see `sled` for what sled needs on top).
//! - [`MemoryStorage`]: for tests and the deterministic simulation.
//! - `checksum`: the record format, `value || crc32c(key || value)`, checked on every read.

use bytes::Bytes;

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key` (no error if it is absent).
    Delete(Vec<u8>),
}

/// Writes that are applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The writes, applied in order.
    pub ops: Vec<Op>,
}

impl Batch {
    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(key.into(), value.into()));
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(key.into()));
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Why storage failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A stored record failed its checksum: the disk or the backend corrupted it.
    #[error("corrupt record at key {key:02x?}")]
    Corrupt {
        /// The key whose value is corrupt.
        key: Vec<u8>,
    },
    /// The backend failed (I/O error, full disk, poisoned database).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// An ordered, durable key-value store.
///
/// Implementations checksum every value they store and verify it on every read, returning
/// [`StorageError::Corrupt`] instead of bad data.
pub trait Storage: Send + Sync + 'static {
    /// Applies each batch atomically, in order, and returns once all of them are durable
    /// (fsync or the backend's equivalent). After a crash, a batch is there whole or not at
    /// all, and a batch is never there without every batch committed before it.
    fn commit(&self, batches: &[Batch]) -> Result<(), StorageError>;

    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Reads at most `limit` entries with `start <= key < end`, ascending, or descending when
    /// `reverse` is set (then the first entry is the greatest key below `end`).
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError>;
}

mod checksum;
pub mod committer;
pub mod memory;
pub mod redb;
pub mod sled;
#[cfg(test)]
mod tests;

pub use self::committer::{CommitStats, CommitterConfig, Durable, GroupCommitter};
pub use self::memory::MemoryStorage;
pub use self::redb::RedbStorage;
pub use self::sled::SledStorage;
