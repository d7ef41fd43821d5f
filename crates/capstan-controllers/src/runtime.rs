//! The shape every controller in this crate shares: watch → cache → queue of keys → reconcile.
//!
//! - **Watch and cache**: an [`Informer`] runs a kube-runtime watcher whose events first
//!   update a reflector [`Store`] (and any [`StoreIndex`] beside it) and are then handed to
//!   every registered event handler. The store is therefore never older than the event that
//!   enqueued a key, so a reconcile that reads the store sees at least what caused it. The
//!   controller manager keeps one informer per kind, shared by all controllers
//!   ([`crate::informers`]); [`watch_into_store`] is an informer with a single handler.
//! - **Handlers only enqueue**: a handler maps an object to the keys of the objects that must be
//!   reconciled (the object itself, the controller named by its `ownerReferences`, or the owners
//!   whose selector matches an orphan) and calls [`WorkQueue::add`]. It never calls the API.
//! - **Queue**: [`WorkQueue`] has client-go's semantics: a key is queued at most once however
//!   often it is added, and never handed to two workers at once (a key added while it is being
//!   reconciled is queued again when that reconcile ends). Several workers drain it.
//! - **Reconcile**: [`Reconciler::reconcile`] takes a key, reads the caches, decides, acts
//!   through the API and returns an [`Action`]. It must be idempotent: it may run again for the
//!   same state at any time (a slow watch, a restart, a requeue).
//! - **Retry backoff**: when a reconcile fails the key is re-added after a per-key exponential
//!   delay of 5 ms doubling up to 1000 s, as client-go's default controller rate limiter
//!   (`ItemExponentialFailureRateLimiter(5ms, 1000s)`); a success forgets the failures. Conflicts
//!   from a stale cache therefore retry within milliseconds, while a persistently failing object
//!   costs almost nothing.
//!
//! Controllers implement [`Reconciler`], register their handlers and take their stores from
//! [`crate::informers::SharedInformers`], and start with [`run_workers`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// The first retry delay of a failing key (client-go's `DefaultControllerRateLimiter` base).
pub const RETRY_BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay of a failing key (client-go's `DefaultControllerRateLimiter` cap).
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(1000);

/// The name of a namespaced object: what the queues hold. Objects are reconciled by key, not by
/// value, so that a reconcile always reads the newest cached state, and a deleted object can
/// still be reconciled (its key outlives it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object from its metadata; cluster-scoped objects have an empty namespace.
    pub fn of<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    /// The reflector-store reference of this key, to read the cache.
    pub fn object_ref<K: Resource<DynamicType = ()>>(&self) -> reflector::ObjectRef<K> {
        reflector::ObjectRef::new(&self.name).within(&self.namespace)
    }
}

impl fmt::Display for ObjectKey {
    /// client-go's `namespace/name` key format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What a successful reconcile asks of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing more to do until a watched object changes.
    AwaitChange,
    /// Reconcile again after this delay even if nothing changes: a timer the decision depends
    /// on (minReadySeconds, a progress deadline) expires then.
    RequeueAfter(Duration),
}

impl Action {
    /// The sooner of two requests: a reconcile that has several timers must wake for the first.
    pub fn sooner(self, other: Action) -> Action {
        match (self, other) {
            (Action::AwaitChange, other) | (other, Action::AwaitChange) => other,
            (Action::RequeueAfter(a), Action::RequeueAfter(b)) => Action::RequeueAfter(a.min(b)),
        }
    }
}

/// A controller's decision loop for one key. Implementations read their caches, decide from
/// that snapshot, and act through an effects trait.
pub trait Reconciler: Send + Sync + 'static {
    /// The error of a failed reconcile; the key is retried with backoff.
    type Error: std::error::Error + Send;

    /// The controller's name in logs and events, as Kubernetes names it
    /// (`replicaset-controller`).
    fn name(&self) -> &'static str;

    /// Brings the world closer to the desired state of `key`. Idempotent: running it twice on
    /// the same cached state performs no extra effect. A key whose object is gone from the cache
    /// succeeds after forgetting whatever the controller remembers about it.
    fn reconcile(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;
}

struct QueueState<T> {
    queue: VecDeque<T>,
    /// Keys waiting to be processed (queued, or re-added while processing).
    dirty: HashSet<T>,
    /// Keys a worker is reconciling now.
    processing: HashSet<T>,
    /// Consecutive failures per key, for the retry backoff.
    failures: HashMap<T, u32>,
}

/// A deduplicating work queue of keys with delayed and rate-limited adds (client-go's
/// `workqueue.TypedRateLimitingInterface`). Cheap to clone; clones share the queue.
pub struct WorkQueue<T> {
    state: Arc<Mutex<QueueState<T>>>,
    ready: Arc<Notify>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn new() -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(QueueState {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            })),
            ready: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        // A worker that panicked while holding the lock left consistent sets behind (every
        // mutation is a single insert or remove), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` unless it is already waiting. A key being processed is queued again when
    /// its worker calls [`WorkQueue::done`], so it is never reconciled twice at once.
    pub fn add(&self, key: T) {
        let mut state = self.lock();
        if !state.dirty.insert(key.clone()) {
            return;
        }
        if state.processing.contains(&key) {
            return;
        }
        state.queue.push_back(key);
        drop(state);
        self.ready.notify_one();
    }

    /// Queues `key` after `delay` (at once for a zero delay).
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` after its next backoff delay: 5 ms doubling per consecutive failure up to
    /// 1000 s.
    pub fn add_rate_limited(&self, key: T) {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let current = *failures;
            *failures = failures.saturating_add(1);
            current
        };
        self.add_after(key, retry_delay(failures));
    }

    /// Forgets the failures of `key`: its next failure retries after the base delay again.
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    /// How many consecutive failures `key` has had.
    pub fn failures(&self, key: &T) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Waits for the next key and marks it as processing. Cancel-safe: a cancelled wait takes
    /// no key.
    pub async fn next(&self) -> T {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        // Another worker may be asleep while keys are waiting.
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Ends the processing of `key`; a key re-added meanwhile is queued now.
    pub fn done(&self, key: &T) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.clone());
            drop(state);
            self.ready.notify_one();
        }
    }

    /// How many keys are waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The backoff before retry number `failures + 1`: 5 ms · 2^failures, at most 1000 s.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 2u64.checked_pow(failures).unwrap_or(u64::MAX);
    let millis = (RETRY_BASE_DELAY.as_millis() as u64).saturating_mul(factor);
    Duration::from_millis(millis).min(RETRY_MAX_DELAY)
}

/// Runs `workers` loops that take keys from `queue` and reconcile them, applying the retry and
/// requeue policy. Runs until dropped.
pub async fn run_workers<R: Reconciler>(
    reconciler: Arc<R>,
    queue: WorkQueue<ObjectKey>,
    workers: usize,
) {
    // A JoinSet aborts its workers when dropped, so dropping this future stops the controller.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let reconciler = reconciler.clone();
        let queue = queue.clone();
        tasks.spawn(async move {
            loop {
                let key = queue.next().await;
                // A reconcile that panics (a bug) must not take its worker with it: the key is
                // retried with backoff like any failure, and the panic is logged as an error.
                let run = std::panic::AssertUnwindSafe(process(&*reconciler, &queue, key.clone()));
                if run.catch_unwind().await.is_err() {
                    tracing::error!(controller = reconciler.name(), %key,
                        "reconcile panicked; retrying with backoff");
                    queue.add_rate_limited(key.clone());
                    queue.done(&key);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One reconcile of `key` with the queue bookkeeping around it.
pub async fn process<R: Reconciler>(reconciler: &R, queue: &WorkQueue<ObjectKey>, key: ObjectKey) {
    let result = reconciler.reconcile(&key).await;
    match result {
        Ok(action) => {
            queue.forget(&key);
            if let Action::RequeueAfter(delay) = action {
                queue.add_after(key.clone(), delay);
            }
        }
        Err(error) => {
            // A write decided from a cache a moment behind meets a conflict now and then and
            // succeeds on retry: only failures that keep coming are worth a warning.
            let failures = queue.failures(&key) + 1;
            if failures > QUIET_FAILURES {
                tracing::warn!(controller = reconciler.name(), %key, failures,
                    "reconcile failed, retrying with backoff: {error}");
            } else {
                tracing::debug!(controller = reconciler.name(), %key, failures,
                    "reconcile failed, retrying with backoff: {error}");
            }
            queue.add_rate_limited(key.clone());
        }
    }
    queue.done(&key);
}

/// Consecutive failures of one key logged at debug level before they become warnings.
const QUIET_FAILURES: u32 = 3;

/// A watched object as handlers see it: applied (added or modified) or deleted.
#[derive(Debug)]
pub enum Change<'a, K> {
    Applied(&'a K),
    Deleted(&'a K),
}

// By hand: a derive would require `K: Copy`, but only the reference is copied.
impl<K> Clone for Change<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Change<'_, K> {}

impl<'a, K> Change<'a, K> {
    pub fn object(&self) -> &'a K {
        match self {
            Change::Applied(object) | Change::Deleted(object) => object,
        }
    }
}

/// Aborts the watch tasks of a controller's `run` when it is dropped, so that stopping a
/// controller stops its watches.
pub struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl AbortOnDrop {
    pub fn new(tasks: &[tokio::task::JoinHandle<()>]) -> Self {
        AbortOnDrop(tasks.iter().map(|t| t.abort_handle()).collect())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// Starts watching `api` into a new reflector store and calls `handler` for every change after
/// the store has applied it. Returns the store and the task driving the watch; the store is
/// ready (see [`Store::wait_until_ready`]) once the first list has been applied. Watch errors
/// are retried with kube-runtime's default watcher backoff. An [`Informer`] with one handler.
pub fn watch_into_store<K, H>(
    api: kube::Api<K>,
    config: watcher::Config,
    handler: H,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    H: FnMut(Change<'_, K>) + Send + 'static,
{
    let mut informer = Informer::new(api, config);
    informer.add_handler(handler);
    let store = informer.store();
    (store, informer.start())
}

/// An event handler of an [`Informer`].
pub type Handler<K> = Box<dyn FnMut(Change<'_, K>) + Send>;

/// A secondary index kept beside an informer's store (client-go's `Indexer`), updated from the
/// same events after the store and before any handler, so a reconcile enqueued by an event
/// finds the object in the index too. Objects come as the store's own `Arc`s: an index shares
/// them rather than copying.
pub trait StoreIndex<K>: Send + Sync {
    /// The object was added or modified; `object` is the store's copy.
    fn applied(&self, object: Arc<K>);
    /// The object was deleted.
    fn deleted(&self, object: &K);
    /// A (re)list replaced the store with `objects`: forget everything else (objects deleted
    /// while the watch was down are never announced).
    fn replaced(&self, objects: &[Arc<K>]);
}

/// One watch and one cache of a kind shared by any number of handlers (client-go's
/// `SharedIndexInformer`): every event updates the store first, then the indexes, then each
/// handler in registration order, with [`watch_into_store`]'s contract (on `InitDone` every
/// cached object is handed over as applied). Handlers and indexes are registered before
/// [`Informer::start`]; the store can be handed out at any time.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    api: kube::Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    handlers: Vec<Handler<K>>,
    indexes: Vec<Arc<dyn StoreIndex<K>>>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
{
    pub fn new(api: kube::Api<K>, config: watcher::Config) -> Self {
        Informer {
            api,
            config,
            writer: reflector::store::Writer::default(),
            handlers: Vec::new(),
            indexes: Vec::new(),
        }
    }

    /// The cache this informer fills; ready once the first list has been applied.
    pub fn store(&self) -> Store<K> {
        self.writer.as_reader()
    }

    /// Registers a handler, called for every change after the store and indexes have it.
    pub fn add_handler(&mut self, handler: impl FnMut(Change<'_, K>) + Send + 'static) {
        self.handlers.push(Box::new(handler));
    }

    /// Registers an index, updated for every change after the store and before the handlers.
    pub fn add_index(&mut self, index: Arc<dyn StoreIndex<K>>) {
        self.indexes.push(index);
    }

    /// Starts the watch; the returned task drives it until aborted. Watch errors are retried
    /// with kube-runtime's default watcher backoff.
    pub fn start(self) -> tokio::task::JoinHandle<()> {
        let Informer {
            api,
            config,
            writer,
            handlers,
            indexes,
        } = self;
        // Field ownership is never read by a controller and is much of each object: the cache
        // goes without it, as kube-controller-manager's informers trim managedFields. A write
        // of a cached object without it keeps the stored ownership (the API server ignores a
        // writer's own claims).
        let events = watcher::watcher(api, config)
            .default_backoff()
            .modify(|object| object.meta_mut().managed_fields = None);
        tokio::spawn(fan_out(events, writer, handlers, indexes))
    }
}

/// The loop of an [`Informer`]: applies each event to the store, then the indexes, then hands
/// it to every handler.
async fn fan_out<K, S>(
    events: S,
    mut writer: reflector::store::Writer<K>,
    mut handlers: Vec<Handler<K>>,
    indexes: Vec<Arc<dyn StoreIndex<K>>>,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: futures_util::Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let reader = writer.as_reader();
    let mut events = std::pin::pin!(events);
    fn notify<K>(handlers: &mut [Handler<K>], change: Change<'_, K>) {
        for handler in handlers.iter_mut() {
            handler(change);
        }
    }
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!("watch failed, retrying: {error}");
                continue;
            }
        };
        writer.apply_watcher_event(&event);
        update_indexes(&reader, &indexes, &event);
        match event {
            Event::Apply(object) => {
                notify(&mut handlers, Change::Applied(&object));
            }
            Event::Delete(object) => notify(&mut handlers, Change::Deleted(&object)),
            // A (re)list replaces the store only at InitDone; handing its objects over then
            // means a reconcile never reads a store older than what enqueued it. Objects
            // deleted while the watch was down are not announced: their owners' keys come
            // from the objects that remain, and reconcilers tolerate missing objects.
            Event::InitDone => {
                for object in &reader.state() {
                    notify(&mut handlers, Change::Applied(object));
                }
            }
            Event::Init | Event::InitApply(_) => {}
        }
    }
}

/// Brings `indexes` up to `event`, which `store` has just applied: what an [`Informer`] does
/// between its store and its handlers, and what a cache fed by hand (in tests) must do too.
pub fn update_indexes<K>(store: &Store<K>, indexes: &[Arc<dyn StoreIndex<K>>], event: &Event<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    if indexes.is_empty() {
        return;
    }
    match event {
        Event::Apply(object) => {
            // The store's own Arc, so that indexes share it rather than copy it.
            let cached = store
                .get(&reflector::ObjectRef::from_obj(object))
                .unwrap_or_else(|| Arc::new(object.clone()));
            for index in indexes {
                index.applied(cached.clone());
            }
        }
        Event::Delete(object) => {
            for index in indexes {
                index.deleted(object);
            }
        }
        Event::InitDone => {
            let objects = store.state();
            for index in indexes {
                index.replaced(&objects);
            }
        }
        Event::Init | Event::InitApply(_) => {}
    }
}

/// Waits for a cache's first list; `kind` names it in the error.
pub async fn wait_for_cache<K>(kind: &'static str, store: &Store<K>) -> Result<(), CacheNotReady>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .wait_until_ready()
        .await
        .map_err(|_| CacheNotReady(kind))
}

/// A watch ended before its first list: the API is unreachable or refused the watch.
/// Restarting the controllers may help.
#[derive(Debug, thiserror::Error)]
#[error("the {0} cache never became ready")]
pub struct CacheNotReady(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn config_map(name: &str, data: &str) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.name = Some(name.into());
        object.metadata.namespace = Some("default".into());
        object.data = Some([("v".to_string(), data.to_string())].into());
        object
    }

    /// Counts what an index is told, to check it runs before the handlers.
    #[derive(Default)]
    struct CountingIndex(Mutex<Vec<String>>);

    impl StoreIndex<ConfigMap> for CountingIndex {
        fn applied(&self, object: Arc<ConfigMap>) {
            let name = object.metadata.name.clone().unwrap_or_default();
            self.0.lock().unwrap().push(format!("applied {name}"));
        }
        fn deleted(&self, object: &ConfigMap) {
            let name = object.metadata.name.clone().unwrap_or_default();
            self.0.lock().unwrap().push(format!("deleted {name}"));
        }
        fn replaced(&self, objects: &[Arc<ConfigMap>]) {
            self.0
                .lock()
                .unwrap()
                .push(format!("replaced {}", objects.len()));
        }
    }

    #[tokio::test]
    async fn every_handler_of_an_informer_sees_every_change_after_the_store_and_index_have_it() {
        let writer = reflector::store::Writer::<ConfigMap>::default();
        let store = writer.as_reader();
        let index = Arc::new(CountingIndex::default());
        let seen = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
        let handlers: Vec<Handler<ConfigMap>> = (0..2)
            .map(|handler_number| {
                let store = store.clone();
                let index = index.clone();
                let seen = seen.clone();
                Box::new(move |change: Change<'_, ConfigMap>| {
                    let object = change.object();
                    let cached = store.get(&reflector::ObjectRef::from_obj(object));
                    let indexed = index.0.lock().unwrap().len();
                    let what = match change {
                        Change::Applied(_) => {
                            // The store already holds this very version.
                            assert_eq!(cached.map(|c| c.data.clone()), Some(object.data.clone()));
                            "applied"
                        }
                        Change::Deleted(_) => {
                            assert!(cached.is_none(), "the store forgot it first");
                            "deleted"
                        }
                    };
                    assert!(indexed > 0, "the index is told before the handlers");
                    let name = object.metadata.name.clone().unwrap_or_default();
                    let data = object.data.as_ref().unwrap()["v"].clone();
                    seen.lock()
                        .unwrap()
                        .push((handler_number, format!("{what} {name}={data}")));
                }) as Handler<ConfigMap>
            })
            .collect();
        let events = futures_util::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply(config_map("a", "1"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(config_map("b", "1"))),
            Ok(Event::Apply(config_map("a", "2"))),
            Ok(Event::Delete(config_map("b", "1"))),
        ]);
        let indexes: Vec<Arc<dyn StoreIndex<ConfigMap>>> = vec![index.clone()];
        fan_out(events, writer, handlers, indexes).await;

        let expected = ["applied a=1", "applied b=1", "applied a=2", "deleted b=1"];
        let seen = seen.lock().unwrap().clone();
        for handler_number in 0..2 {
            let mine: Vec<&str> = seen
                .iter()
                .filter(|(n, _)| *n == handler_number)
                .map(|(_, what)| what.as_str())
                .collect();
            assert_eq!(mine, expected, "handler {handler_number}");
        }
        assert_eq!(
            *index.0.lock().unwrap(),
            ["replaced 1", "applied b", "applied a", "deleted b"]
        );
        assert!(store.wait_until_ready().now_or_never().is_some());
        assert_eq!(store.state().len(), 1);
    }

    #[test]
    fn retry_delay_doubles_from_five_milliseconds_to_a_thousand_seconds() {
        let cases = [
            (0, Duration::from_millis(5)),
            (1, Duration::from_millis(10)),
            (2, Duration::from_millis(20)),
            (10, Duration::from_millis(5120)),
            (17, Duration::from_millis(655_360)),
            (18, Duration::from_secs(1000)),
            (63, Duration::from_secs(1000)),
            (u32::MAX, Duration::from_secs(1000)),
        ];
        for (failures, expected) in cases {
            assert_eq!(retry_delay(failures), expected, "after {failures} failures");
        }
    }

    /// Panics on its first reconcile, then counts the calls.
    struct PanicsOnce(std::sync::atomic::AtomicU32);

    impl Reconciler for PanicsOnce {
        type Error = std::io::Error;

        fn name(&self) -> &'static str {
            "test"
        }

        async fn reconcile(&self, _key: &ObjectKey) -> Result<Action, std::io::Error> {
            let calls = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if calls == 0 {
                panic!("a bug in the first reconcile");
            }
            Ok(Action::AwaitChange)
        }
    }

    #[tokio::test]
    async fn a_panicking_reconcile_is_retried_and_the_worker_survives() {
        let reconciler = Arc::new(PanicsOnce(Default::default()));
        let queue = WorkQueue::new();
        let workers = tokio::spawn(run_workers(reconciler.clone(), queue.clone(), 1));
        queue.add(ObjectKey::new("default", "web"));
        let calls = || reconciler.0.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while calls() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(calls(), 2, "the key was retried by the same worker");
        workers.abort();
    }

    #[tokio::test]
    async fn a_key_added_twice_is_queued_once() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
    }

    #[tokio::test]
    async fn a_key_added_while_processing_is_queued_again_when_done() {
        let queue = WorkQueue::new();
        queue.add("a");
        let key = queue.next().await;
        queue.add("a");
        assert!(queue.is_empty(), "never handed to two workers at once");
        queue.done(&key);
        assert_eq!(queue.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_adds_back_off_per_key_and_forget_resets() {
        let queue = WorkQueue::new();
        queue.add_rate_limited("a");
        queue.add_rate_limited("a");
        assert_eq!(queue.failures(&"a"), 2);
        tokio::time::sleep(Duration::from_millis(4)).await;
        assert!(queue.is_empty(), "the first retry waits 5 ms");
        tokio::time::sleep(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(queue.len(), 1);
        queue.forget(&"a");
        assert_eq!(queue.failures(&"a"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_after_wakes_precisely() {
        let queue = WorkQueue::new();
        queue.add_after("a", Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        assert!(queue.is_empty());
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Let the timer task that fired at the same instant run.
        tokio::task::yield_now().await;
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn sooner_picks_the_first_timer() {
        let ten = Action::RequeueAfter(Duration::from_secs(10));
        let five = Action::RequeueAfter(Duration::from_secs(5));
        assert_eq!(ten.sooner(five), five);
        assert_eq!(Action::AwaitChange.sooner(ten), ten);
        assert_eq!(
            Action::AwaitChange.sooner(Action::AwaitChange),
            Action::AwaitChange
        );
    }
}
