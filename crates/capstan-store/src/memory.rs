//! An in-memory engine for tests: the same semantics as redb, nothing on disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockWriteGuard};

use crate::engine::{Batch, Engine, Scan, Write};
use crate::{KeyValue, Revision, StoreError};

#[derive(Debug, Default)]
pub struct MemoryEngine {
    state: RwLock<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    data: BTreeMap<String, KeyValue>,
    revision: Revision,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemoryEngine {
    type Batch<'a> = MemoryBatch<'a>;

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self
            .state
            .read()
            .expect("memory store lock")
            .data
            .get(key)
            .cloned())
    }

    fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Scan, StoreError> {
        let state = self.state.read().expect("memory store lock");
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let mut items = Vec::new();
        for (key, kv) in state.data.range((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if limit > 0 && items.len() == limit {
                return Ok(Scan {
                    items,
                    more: true,
                    revision: state.revision,
                });
            }
            items.push(kv.clone());
        }
        Ok(Scan {
            items,
            more: false,
            revision: state.revision,
        })
    }

    fn begin(&self) -> Result<MemoryBatch<'_>, StoreError> {
        Ok(MemoryBatch(self.state.write().expect("memory store lock")))
    }

    fn last_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.state.read().expect("memory store lock").revision)
    }
}

/// A batch holds the write lock: nothing to roll back, since applying cannot fail.
pub struct MemoryBatch<'a>(RwLockWriteGuard<'a, MemoryState>);

impl Batch for MemoryBatch<'_> {
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.0.data.get(key).cloned())
    }

    fn apply(&mut self, write: Write<'_>, revision: Revision) -> Result<(), StoreError> {
        match write {
            Write::Put(kv) => {
                self.0.data.insert(kv.key.clone(), kv.clone());
            }
            Write::Delete(key) => {
                self.0.data.remove(key);
            }
        }
        self.0.revision = revision;
        Ok(())
    }

    fn commit(self) -> Result<(), StoreError> {
        Ok(())
    }
}
