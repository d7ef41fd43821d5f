//! [`KvStore`]: the [`Store`] semantics (revisions, compare-and-swap, watches, compaction)
//! over any [`Engine`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::engine::{Batch, Engine, Write};
use crate::memory::MemoryEngine;
use crate::redb_engine::RedbEngine;
use crate::watch::{DEFAULT_HISTORY, WatchHub};
use crate::{Event, EventType, KeyValue, ListResult, Revision, Store, StoreError, Watch};

pub struct KvStore<E: Engine> {
    shared: Arc<Shared<E>>,
    /// Writes go to the committer thread, which applies whatever is waiting in one
    /// transaction (group commit): one fsync serves many writers.
    committer: Option<std::sync::mpsc::Sender<WriteRequest>>,
    committer_thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared<E> {
    engine: E,
    revision: AtomicI64,
    hub: WatchHub,
}

/// Decides the event of one write from the key's current state and the revision it would
/// get; an error refuses the write (and uses no revision).
type Prepare = Box<dyn FnOnce(Option<KeyValue>, Revision) -> Result<Event, StoreError> + Send>;

struct WriteRequest {
    key: String,
    prepare: Prepare,
    reply: std::sync::mpsc::SyncSender<Result<Event, StoreError>>,
}

/// The most writes committed in one transaction.
const MAX_BATCH: usize = 512;

impl KvStore<RedbEngine> {
    /// Opens the durable store file at `path`, creating it if missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::with_engine(RedbEngine::open(path)?)
    }
}

impl KvStore<MemoryEngine> {
    /// A store that lives in memory only, for tests.
    pub fn memory() -> Self {
        Self::with_engine(MemoryEngine::new()).expect("memory engine cannot fail")
    }
}

impl<E: Engine> KvStore<E> {
    pub(crate) fn with_engine(engine: E) -> Result<Self, StoreError> {
        Self::with_engine_and_history(engine, DEFAULT_HISTORY)
    }

    fn with_engine_and_history(engine: E, history: usize) -> Result<Self, StoreError> {
        let revision = engine.last_revision()?;
        let shared = Arc::new(Shared {
            engine,
            revision: AtomicI64::new(revision),
            // History is in memory: after a restart, watches start from the current revision.
            hub: WatchHub::new(revision, history),
        });
        let (sender, receiver) = std::sync::mpsc::channel::<WriteRequest>();
        let committer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut requests = vec![first];
                    while requests.len() < MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(request) => requests.push(request),
                            Err(_) => break,
                        }
                    }
                    committer_shared.commit(requests);
                }
            })
            .map_err(|e| StoreError::Engine(format!("starting the store committer: {e}")))?;
        Ok(KvStore {
            shared,
            committer: Some(sender),
            committer_thread: Some(thread),
        })
    }

    /// Applies one write at the next revision, durably, and publishes its event. `prepare`
    /// sees the current state of `key` (including writes committed in the same batch before
    /// it) and the new revision, and says what to write.
    fn write(
        &self,
        key: &str,
        prepare: impl FnOnce(Option<KeyValue>, Revision) -> Result<Event, StoreError> + Send + 'static,
    ) -> Result<Event, StoreError> {
        let stopped = || StoreError::Engine("the store committer has stopped".into());
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let request = WriteRequest {
            key: key.to_string(),
            prepare: Box::new(prepare),
            reply,
        };
        self.committer
            .as_ref()
            .ok_or_else(stopped)?
            .send(request)
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl<E: Engine> Shared<E> {
    /// Commits `requests` in one transaction; answers each once the batch is durable. Writes
    /// refused by their own checks are answered at once and take no revision.
    fn commit(&self, requests: Vec<WriteRequest>) {
        let mut batch = match self.engine.begin() {
            Ok(batch) => batch,
            Err(e) => {
                for request in requests {
                    let _ = request.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        let mut revision = self.revision.load(Ordering::SeqCst);
        let mut applied = Vec::with_capacity(requests.len());
        let mut failure = None;
        for request in requests {
            if failure.is_some() {
                applied.push((None, request.reply));
                continue;
            }
            let current = match batch.get(&request.key) {
                Ok(current) => current,
                Err(e) => {
                    failure = Some(e);
                    applied.push((None, request.reply));
                    continue;
                }
            };
            let event = match (request.prepare)(current, revision + 1) {
                Ok(event) => event,
                Err(refused) => {
                    let _ = request.reply.send(Err(refused));
                    continue;
                }
            };
            let write = match event.event_type {
                EventType::Put => Write::Put(&event.kv),
                EventType::Delete => Write::Delete(&request.key),
            };
            if let Err(e) = batch.apply(write, revision + 1) {
                failure = Some(e);
                applied.push((None, request.reply));
                continue;
            }
            revision += 1;
            applied.push((Some(event), request.reply));
        }
        // An engine failure anywhere fails the whole batch: nothing in it was made durable.
        let outcome = match failure {
            Some(e) => Err(e),
            None => batch.commit(),
        };
        match outcome {
            Ok(()) => {
                self.revision.store(revision, Ordering::SeqCst);
                for (event, reply) in applied {
                    let event = event.expect("a successful batch applied every write in it");
                    // Published before it is acknowledged: a writer that watches from its own
                    // write's revision right after the answer finds the event there.
                    let answer = event.clone();
                    self.hub.publish(event);
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                for (_, reply) in applied {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl<E: Engine> Drop for KvStore<E> {
    fn drop(&mut self) {
        // Closing the channel ends the committer once it has answered every write; joining
        // it releases the engine (and the store file) before the drop returns.
        self.committer.take();
        if let Some(thread) = self.committer_thread.take() {
            let _ = thread.join();
        }
    }
}

fn check_expected(key: &str, current: &KeyValue, expected: Revision) -> Result<(), StoreError> {
    if current.mod_revision == expected {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            current: current.mod_revision,
        })
    }
}

impl<E: Engine> Store for KvStore<E> {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.shared.engine.get(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StoreError> {
        let scan = self.shared.engine.scan(prefix, start_after, limit)?;
        Ok(ListResult {
            items: scan.items,
            revision: scan.revision,
            more: scan.more,
        })
    }

    fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let key_owned = key.to_string();
        let event = self.write(key, move |current, revision| {
            let key = key_owned.as_str();
            if current.is_some() {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            Ok(Event {
                event_type: EventType::Put,
                revision,
                kv: KeyValue {
                    key: key.to_string(),
                    value: value.into(),
                    create_revision: revision,
                    mod_revision: revision,
                },
                prev: None,
                derived: Default::default(),
            })
        })?;
        Ok(event.kv)
    }

    fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let key_owned = key.to_string();
        let event = self.write(key, move |current, revision| {
            let key = key_owned.as_str();
            let current = current.ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            check_expected(key, &current, expected)?;
            Ok(Event {
                event_type: EventType::Put,
                revision,
                kv: KeyValue {
                    key: key.to_string(),
                    value: value.into(),
                    create_revision: current.create_revision,
                    mod_revision: revision,
                },
                prev: Some(current),
                derived: Default::default(),
            })
        })?;
        Ok(event.kv)
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let key_owned = key.to_string();
        let event = self.write(key, move |current, revision| {
            let key = key_owned.as_str();
            let current = current.ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            if let Some(expected) = expected {
                check_expected(key, &current, expected)?;
            }
            Ok(Event {
                event_type: EventType::Delete,
                revision,
                kv: KeyValue {
                    mod_revision: revision,
                    ..current.clone()
                },
                prev: Some(current),
                derived: Default::default(),
            })
        })?;
        Ok(event.kv)
    }

    fn revision(&self) -> Revision {
        self.shared.revision.load(Ordering::SeqCst)
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.shared.hub.compact(revision.min(self.revision()));
        Ok(())
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.hub.compacted()
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        self.shared.hub.watch(prefix, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> Vec<(&'static str, Box<dyn Store>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let redb = KvStore::open(&dir.path().join("store.redb")).unwrap();
        vec![
            ("memory", Box::new(KvStore::memory()), None),
            ("redb", Box::new(redb), Some(dir)),
        ]
    }

    #[test]
    fn every_write_takes_the_next_revision() {
        for (name, store, _dir) in stores() {
            let a = store.create("/a", b"1".to_vec()).unwrap();
            let b = store.create("/b", b"2".to_vec()).unwrap();
            let a2 = store.update("/a", b"3".to_vec(), a.mod_revision).unwrap();
            assert_eq!(
                (a.mod_revision, b.mod_revision, a2.mod_revision),
                (1, 2, 3),
                "{name}"
            );
            assert_eq!(a2.create_revision, 1, "{name}");
            let gone = store.delete("/b", None).unwrap();
            assert_eq!(gone.mod_revision, 4, "{name}");
            assert_eq!(store.revision(), 4, "{name}");
        }
    }

    #[test]
    fn create_of_an_existing_key_fails_and_changes_nothing() {
        for (name, store, _dir) in stores() {
            store.create("/a", b"1".to_vec()).unwrap();
            let err = store.create("/a", b"2".to_vec()).unwrap_err();
            assert!(matches!(err, StoreError::AlreadyExists { .. }), "{name}");
            assert_eq!(&*store.get("/a").unwrap().unwrap().value, b"1", "{name}");
            assert_eq!(store.revision(), 1, "{name}");
        }
    }

    #[test]
    fn update_with_a_stale_revision_conflicts() {
        for (name, store, _dir) in stores() {
            let a = store.create("/a", b"1".to_vec()).unwrap();
            store.update("/a", b"2".to_vec(), a.mod_revision).unwrap();
            let err = store
                .update("/a", b"3".to_vec(), a.mod_revision)
                .unwrap_err();
            assert_eq!(
                err,
                StoreError::Conflict {
                    key: "/a".into(),
                    expected: 1,
                    current: 2
                },
                "{name}"
            );
            let err = store.delete("/a", Some(a.mod_revision)).unwrap_err();
            assert!(matches!(err, StoreError::Conflict { .. }), "{name}");
            assert!(matches!(
                store.update("/missing", vec![], 1).unwrap_err(),
                StoreError::NotFound { .. }
            ));
        }
    }

    #[test]
    fn lists_page_through_a_prefix_in_key_order() {
        for (name, store, _dir) in stores() {
            for key in ["/p/c", "/p/a", "/q/x", "/p/b", "/o/z"] {
                store.create(key, key.as_bytes().to_vec()).unwrap();
            }
            let page = store.list("/p/", None, 2).unwrap();
            let keys: Vec<_> = page.items.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["/p/a", "/p/b"], "{name}");
            assert!(page.more);
            assert_eq!(page.revision, 5);
            let rest = store.list("/p/", Some("/p/b"), 2).unwrap();
            let keys: Vec<_> = rest.items.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["/p/c"], "{name}");
            assert!(!rest.more);
            assert_eq!(store.list("/p/", None, 0).unwrap().items.len(), 3);
        }
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows_live_writes() {
        for (name, store, _dir) in stores() {
            let a = store.create("/p/a", b"1".to_vec()).unwrap();
            store.create("/q/b", b"x".to_vec()).unwrap();
            store.update("/p/a", b"2".to_vec(), a.mod_revision).unwrap();
            let mut watch = store.watch("/p/", 1).unwrap();
            store.delete("/p/a", None).unwrap();
            let first = watch.next().await.unwrap();
            assert_eq!(
                (first.revision, first.event_type),
                (3, EventType::Put),
                "{name}"
            );
            assert_eq!(&*first.prev.as_ref().unwrap().value, b"1");
            let second = watch.next().await.unwrap();
            assert_eq!(
                (second.revision, second.event_type),
                (4, EventType::Delete),
                "{name}"
            );
            assert_eq!(&*second.kv.value, b"2", "a delete carries the last state");
        }
    }

    #[test]
    fn watch_from_a_compacted_revision_is_gone() {
        for (name, store, _dir) in stores() {
            for i in 0..5 {
                store.create(&format!("/k{i}"), vec![]).unwrap();
            }
            store.compact(3).unwrap();
            assert_eq!(store.compacted_revision(), 3);
            assert!(
                matches!(
                    store.watch("/", 2).unwrap_err(),
                    StoreError::Compacted {
                        requested: 2,
                        compacted: 3
                    }
                ),
                "{name}"
            );
            assert!(store.watch("/", 3).is_ok());
        }
    }

    #[test]
    fn history_beyond_its_bound_is_compacted() {
        let hub_store = KvStore::with_engine_and_history(MemoryEngine::new(), 2).unwrap();
        for i in 0..5 {
            hub_store.create(&format!("/k{i}"), vec![]).unwrap();
        }
        assert_eq!(hub_store.compacted_revision(), 3);
    }

    #[test]
    fn concurrent_writers_share_commits_and_keep_compare_and_swap() {
        for (name, store, _dir) in stores() {
            let store: Arc<dyn Store> = Arc::from(store);
            let threads: Vec<_> = (0..16)
                .map(|t| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        (0..50)
                            .map(|i| {
                                store
                                    .create(&format!("/k/{t}/{i}"), vec![])
                                    .unwrap()
                                    .mod_revision
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut revisions: Vec<Revision> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            revisions.sort();
            assert_eq!(
                revisions,
                (1..=800).collect::<Vec<_>>(),
                "{name}: one revision per write"
            );
            // Racing updates from the same read: exactly one wins.
            let base = store.create("/race", vec![]).unwrap().mod_revision;
            let racers: Vec<_> = (0..16)
                .map(|i| {
                    let store = store.clone();
                    std::thread::spawn(move || store.update("/race", vec![i], base).is_ok())
                })
                .collect();
            let winners = racers
                .into_iter()
                .map(|r| r.join().unwrap())
                .filter(|won| *won)
                .count();
            assert_eq!(winners, 1, "{name}");
        }
    }

    #[test]
    fn a_reopened_store_keeps_objects_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let store = KvStore::open(&path).unwrap();
            let a = store.create("/a", b"1".to_vec()).unwrap();
            store.update("/a", b"2".to_vec(), a.mod_revision).unwrap();
            store.create("/b", b"3".to_vec()).unwrap();
        }
        let store = KvStore::open(&path).unwrap();
        assert_eq!(store.revision(), 3);
        let a = store.get("/a").unwrap().unwrap();
        assert_eq!(
            (&*a.value, a.create_revision, a.mod_revision),
            (&b"2"[..], 1, 2)
        );
        assert_eq!(store.create("/c", vec![]).unwrap().mod_revision, 4);
        // Nothing before the restart can be replayed; watching from now works.
        assert!(store.watch("/", 2).is_err());
        assert!(store.watch("/", 3).is_ok());
    }
}
