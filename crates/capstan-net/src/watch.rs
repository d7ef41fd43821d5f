//! The watch shape the node's rule syncers share: a cache of every object of a kind, kept by a
//! reflector, that wakes one `Notify` whenever anything changes, so that a sync loop can
//! debounce and then read all its caches at once.

use std::sync::Arc;

use futures_util::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
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
