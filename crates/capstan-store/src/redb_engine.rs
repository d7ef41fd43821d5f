//! The embedded, durable engine: one redb file. Every batch of writes is one fsynced
//! transaction, committed before any write in it is acknowledged, so an acknowledged write
//! survives `kill -9` and power loss.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::engine::{Batch, Engine, Scan, Write};
use crate::{KeyValue, Revision, StoreError};

/// key → create revision (8 bytes LE) ++ mod revision (8 bytes LE) ++ value.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// Store-wide counters; `revision` is the last write's revision.
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";

/// The pages redb keeps in memory. redb's default (1 GiB) would make the store the largest
/// part of the server's memory in a big cluster; pages beyond this are read again from the
/// file, which the kernel's page cache usually still holds.
const CACHE_BYTES: usize = 128 << 20;

pub struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(engine_error)?;
        // Create the tables up front so that reads of a new store find them.
        let txn = db.begin_write().map_err(engine_error)?;
        {
            txn.open_table(OBJECTS).map_err(engine_error)?;
            txn.open_table(META).map_err(engine_error)?;
        }
        txn.commit().map_err(engine_error)?;
        Ok(RedbEngine { db })
    }
}

fn engine_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    if bytes.len() < 16 {
        return Err(StoreError::Engine(format!("record of {key} is truncated")));
    }
    let create_revision = i64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let mod_revision = i64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    Ok(KeyValue {
        key: key.to_string(),
        value: bytes[16..].into(),
        create_revision,
        mod_revision,
    })
}

impl Engine for RedbEngine {
    type Batch<'a> = RedbBatch;

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let txn = self.db.begin_read().map_err(engine_error)?;
        let table = txn.open_table(OBJECTS).map_err(engine_error)?;
        match table.get(key).map_err(engine_error)? {
            Some(bytes) => Ok(Some(decode(key, bytes.value())?)),
            None => Ok(None),
        }
    }

    fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Scan, StoreError> {
        let txn = self.db.begin_read().map_err(engine_error)?;
        let revision = read_revision(&txn)?;
        let table = txn.open_table(OBJECTS).map_err(engine_error)?;
        let range = match start_after {
            Some(after) if after >= prefix => {
                table.range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            _ => table.range::<&str>(prefix..),
        }
        .map_err(engine_error)?;
        let mut items = Vec::new();
        for entry in range {
            let (key, value) = entry.map_err(engine_error)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if limit > 0 && items.len() == limit {
                return Ok(Scan {
                    items,
                    more: true,
                    revision,
                });
            }
            items.push(decode(key, value.value())?);
        }
        Ok(Scan {
            items,
            more: false,
            revision,
        })
    }

    fn begin(&self) -> Result<RedbBatch, StoreError> {
        Ok(RedbBatch(self.db.begin_write().map_err(engine_error)?))
    }

    fn last_revision(&self) -> Result<Revision, StoreError> {
        let txn = self.db.begin_read().map_err(engine_error)?;
        read_revision(&txn)
    }
}

fn read_revision(txn: &redb::ReadTransaction) -> Result<Revision, StoreError> {
    let meta = txn.open_table(META).map_err(engine_error)?;
    Ok(meta
        .get(REVISION_KEY)
        .map_err(engine_error)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// One redb write transaction: reads see its own writes, and commit fsyncs once for all.
pub struct RedbBatch(WriteTransaction);

impl Batch for RedbBatch {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let table = self.0.open_table(OBJECTS).map_err(engine_error)?;
        let value = table.get(key).map_err(engine_error)?;
        value.map(|bytes| decode(key, bytes.value())).transpose()
    }

    fn apply(&mut self, write: Write<'_>, revision: Revision) -> Result<(), StoreError> {
        let mut objects = self.0.open_table(OBJECTS).map_err(engine_error)?;
        match write {
            Write::Put(kv) => {
                objects
                    .insert(kv.key.as_str(), encode(kv).as_slice())
                    .map_err(engine_error)?;
            }
            Write::Delete(key) => {
                objects.remove(key).map_err(engine_error)?;
            }
        }
        drop(objects);
        let mut meta = self.0.open_table(META).map_err(engine_error)?;
        meta.insert(REVISION_KEY, revision).map_err(engine_error)?;
        Ok(())
    }

    fn commit(self) -> Result<(), StoreError> {
        self.0.commit().map_err(engine_error)
    }
}
