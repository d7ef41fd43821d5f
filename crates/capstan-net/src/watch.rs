//! The watch shapes the node's components share:
//!
//! - [`reflect`]: a reflector's cache of every object of a kind that wakes one `Notify` on
//!   any change, so that a rule syncer (service proxy, network policy) can debounce and then
//!   read all its caches at once;
//! - [`Cache`]: the same kept by hand from watch events, for components that rebuild an
//!   immutable snapshot (cluster DNS, ingress) and must know when every initial list is in.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::sync::Notify;

/// Starts a reflector over `api` in `watches` that wakes `changed` on every event after the
/// initial list; `what` names the component in log lines.
pub fn reflect<K>(
    watches: &mut tokio::task::JoinSet<()>,
    api: Api<K>,
    changed: &Arc<Notify>,
    what: &'static str,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let writer = reflector::store::Writer::<K>::default();
    let store = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default()).default_backoff(),
    );
    let changed = Arc::clone(changed);
    watches.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone) => changed.notify_one(),
                Ok(Event::Init | Event::InitApply(_)) => {}
                Err(error) => tracing::warn!("{what} watch failed, retrying: {error}"),
            }
        }
    });
    store
}

/// The objects of one kind by namespace and name, replaced whole by each (re)list.
pub struct Cache<K> {
    pub objects: HashMap<(String, String), K>,
    relisting: Option<HashMap<(String, String), K>>,
    /// The first list is complete: the cache holds the whole kind.
    pub listed: bool,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            relisting: None,
            listed: false,
        }
    }
}

impl<K: kube::Resource> Cache<K> {
    /// Applies one watch event; whether what is built from the cache needs a rebuild.
    pub fn apply(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Init => {
                self.relisting = Some(HashMap::new());
                false
            }
            Event::InitApply(object) => {
                let key = key(&object);
                self.relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(key, object);
                false
            }
            Event::InitDone => {
                self.objects = self.relisting.take().unwrap_or_default();
                self.listed = true;
                true
            }
            Event::Apply(object) => {
                self.objects.insert(key(&object), object);
                true
            }
            Event::Delete(object) => self.objects.remove(&key(&object)).is_some(),
        }
    }
}

/// An object's `(namespace, name)`.
pub fn key<K: kube::Resource>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}
