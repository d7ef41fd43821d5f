//! The storage engine under [`crate::KvStore`]: a durable sorted map plus the last revision.
//! Revision accounting, compare-and-swap and watch fan-out live in `KvStore`, once for all
//! engines; an engine only reads and applies writes.

use crate::{KeyValue, Revision, StoreError};

/// One page of a scan and the revision it was read at.
#[derive(Debug)]
pub struct Scan {
    pub items: Vec<KeyValue>,
    pub more: bool,
    pub revision: Revision,
}

/// One write, applied atomically together with the new store revision.
#[derive(Debug)]
pub enum Write<'a> {
    Put(&'a KeyValue),
    Delete(&'a str),
}

/// A sorted, durable map. `KvStore` applies all writes from one committer thread, in batches,
/// so a batch is never concurrent with another; reads may run alongside a batch and see only
/// committed data.
pub trait Engine: Send + Sync + 'static {
    type Batch<'a>: Batch
    where
        Self: 'a;

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Up to `limit` keys (0: all) under `prefix` after `start_after`, read from one snapshot
    /// together with that snapshot's revision: a watch from that revision misses nothing.
    fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Scan, StoreError>;

    /// Starts a batch of writes that become durable together.
    fn begin(&self) -> Result<Self::Batch<'_>, StoreError>;

    /// The revision recorded by the last committed batch (0 for a new store).
    fn last_revision(&self) -> Result<Revision, StoreError>;
}

/// Writes that commit together: one transaction, one fsync.
pub trait Batch {
    /// The state of `key` including the writes applied earlier in this batch.
    fn get(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Applies `write` and records `revision` as the store's last.
    fn apply(&mut self, write: Write<'_>, revision: Revision) -> Result<(), StoreError>;

    /// Makes every applied write durable; on error none of them is.
    fn commit(self) -> Result<(), StoreError>;
}
