//! The redb 2 backend.
//!
//! Everything lives in one table of byte keys and byte records. A commit is one write
//! transaction holding all its batches (so each batch is atomic within it) with
//! `Durability::Immediate`: redb fsyncs before `commit` returns.

use std::fmt::Display;
use std::path::Path;

use ::redb::{Database, Durability, TableDefinition};
use bytes::Bytes;

use super::{Batch, Op, Storage, StorageError, checksum};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("natter");

/// The database file inside the directory given to [`RedbStorage::open`].
const FILE_NAME: &str = "natter.redb";

/// A [`Storage`] on redb.
#[derive(Debug)]
pub struct RedbStorage {
    db: Database,
}

impl RedbStorage {
    /// Opens (or creates) the database in directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(backend)?;
        let db = Database::create(dir.join(FILE_NAME)).map_err(backend)?;
        let storage = Self { db };
        // Create the table up front so reads never meet a missing table.
        storage.write(|_| Ok(()))?;
        Ok(storage)
    }

    /// Stores `record` under `key` as is, without a checksum: tests use it to plant corrupt
    /// records.
    #[cfg(test)]
    pub(crate) fn put_raw(&self, key: &[u8], record: &[u8]) -> Result<(), StorageError> {
        self.write(|table| {
            table.insert(key, record).map_err(backend)?;
            Ok(())
        })
    }

    /// Runs `apply` in one durable write transaction.
    fn write(
        &self,
        apply: impl FnOnce(&mut ::redb::Table<&[u8], &[u8]>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut transaction = self.db.begin_write().map_err(backend)?;
        transaction.set_durability(Durability::Immediate);
        {
            let mut table = transaction.open_table(TABLE).map_err(backend)?;
            apply(&mut table)?;
        }
        transaction.commit().map_err(backend)
    }
}

fn backend(error: impl Display) -> StorageError {
    StorageError::Backend(format!("redb: {error}"))
}

impl Storage for RedbStorage {
    fn commit(&self, batches: &[Batch]) -> Result<(), StorageError> {
        self.write(|table| {
            for op in batches.iter().flat_map(|batch| &batch.ops) {
                match op {
                    Op::Put(key, value) => {
                        table.insert(key.as_slice(), checksum::seal(key, value).as_slice())
                    }
                    Op::Delete(key) => table.remove(key.as_slice()),
                }
                .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let transaction = self.db.begin_read().map_err(backend)?;
        let table = transaction.open_table(TABLE).map_err(backend)?;
        let record = table.get(key).map_err(backend)?;
        record
            .map(|record| checksum::open(key, Bytes::copy_from_slice(record.value())))
            .transpose()
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
        let transaction = self.db.begin_read().map_err(backend)?;
        let table = transaction.open_table(TABLE).map_err(backend)?;
        let entries = table.range(start..end).map_err(backend)?;
        let entries: Box<dyn Iterator<Item = _>> = if reverse {
            Box::new(entries.rev())
        } else {
            Box::new(entries)
        };
        entries
            .take(limit)
            .map(|item| {
                let (key, record) = item.map_err(backend)?;
                let key = key.value();
                let value = checksum::open(key, Bytes::copy_from_slice(record.value()))?;
                Ok((Bytes::copy_from_slice(key), value))
            })
            .collect()
    }
}
