//! The store behind the API: a revisioned key/value map with etcd's semantics, so that the
//! embedded default (redb) and a distributed engine (etcd, later) are interchangeable.
//!
//! - Every successful write gets the next store-wide revision; an object's `resourceVersion` is
//!   the revision of its last write (`mod_revision`).
//! - Writes are compare-and-swap: create fails if the key exists, update and delete can demand
//!   the revision the caller last read.
//! - A watch replays every change after a revision and then follows new ones; a revision older
//!   than the compacted one is gone ([`StoreError::Compacted`], HTTP 410 upstream).

mod engine;
mod kv;
mod memory;
mod redb_engine;
mod watch;

pub use kv::KvStore;
pub use memory::MemoryEngine;
pub use redb_engine::RedbEngine;
pub use watch::Watch;

use std::sync::Arc;

/// A store-wide revision: the count of writes since the store was created.
pub type Revision = i64;

/// A key with its value and the revisions that created and last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Arc<[u8]>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change, delivered to watchers in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    /// The revision of this change.
    pub revision: Revision,
    /// After a put: the new state. After a delete: the last state, with `mod_revision` the
    /// revision of the delete (as the object a `DELETED` watch event carries).
    pub kv: KeyValue,
    /// The state before the change, when the key existed.
    pub prev: Option<KeyValue>,
    /// What watchers derive from this event, computed once and shared by all of them.
    pub derived: Derived,
}

/// A slot for data that consumers of an event derive from it (decoded objects, encoded
/// lines): the first watcher to need it computes it, every other watcher of the same event
/// reuses it, so fan-out to N watchers decodes once instead of N times. The store never reads
/// it; it is not part of the event's value (clones start empty, and it never affects
/// equality). The watch history drops it once every watcher has taken the event, so that only
/// events in flight hold decoded copies: a decoded object is many times its JSON.
#[derive(Default)]
pub struct Derived(std::sync::Mutex<Option<Arc<dyn std::any::Any + Send + Sync>>>);

impl Derived {
    /// The derived value, computing it with `init` if this is the first call. `None` if
    /// another consumer stored a value of another type.
    pub fn get_or_init<T: std::any::Any + Send + Sync>(
        &self,
        init: impl FnOnce() -> T,
    ) -> Option<Arc<T>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let value = slot.get_or_insert_with(|| Arc::new(init())).clone();
        drop(slot);
        value.downcast::<T>().ok()
    }

    /// Forgets the derived value (consumers holding it keep their copy).
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_set() {
            "Derived(set)"
        } else {
            "Derived(empty)"
        })
    }
}

/// One page of a prefix list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at.
    pub revision: Revision,
    /// More keys follow the last item.
    pub more: bool,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Create of a key that exists; retrying fails the same way.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// Update or delete of a missing key.
    #[error("key {key} not found")]
    NotFound { key: String },
    /// The key changed since the caller read it; re-read and retry.
    #[error("key {key} is at revision {current}, not the expected {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The requested revision was compacted away; list again and watch from the new revision.
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The storage engine failed (I/O, corruption). A retry may help if the cause was transient.
    #[error("storage engine: {0}")]
    Engine(String),
}

/// The store the API server writes through. Implementations are safe to share across threads;
/// every method may block on disk I/O, so async callers run writes on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`. Never blocks on writers.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, in key order, after `start_after` when given, at most
    /// `limit` items (0: no limit). `more` says whether the page was cut short.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StoreError>;

    /// Creates `key`; fails with `AlreadyExists` if it is there. Durable when it returns.
    fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replaces `key`'s value if its `mod_revision` is still `expected`, else `Conflict`;
    /// `NotFound` if it is gone. Durable when it returns.
    fn update(&self, key: &str, value: Vec<u8>, expected: Revision)
    -> Result<KeyValue, StoreError>;

    /// Deletes `key`, if `expected` is given only while its `mod_revision` is `expected`.
    /// Returns the last state, with `mod_revision` set to the revision of the delete.
    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// The revision of the last write.
    fn revision(&self) -> Revision;

    /// Forgets the history up to and including `revision`: watches from older revisions fail
    /// with `Compacted`. Compacting to an older revision than before does nothing.
    fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The newest revision that watches can no longer start from.
    fn compacted_revision(&self) -> Revision;

    /// Every change to keys under `prefix` after `after`, then new ones as they happen.
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError>;
}
