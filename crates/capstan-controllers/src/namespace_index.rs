//! A cache with a namespace index (client-go's `NamespaceIndex`), for the kinds whose syncs
//! read one namespace's objects: a Deployment sync reads its namespace's ReplicaSets, a
//! StatefulSet or DaemonSet sync its namespace's ControllerRevisions. Without the index every
//! sync clones and filters the whole cache, and a Deployment is synced at every status change
//! of its ReplicaSets.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use crate::runtime::{StoreIndex, update_indexes};

/// A kind's objects by namespace, then name, kept by its informer (see [`StoreIndex`]).
pub struct NamespaceIndex<K> {
    by_namespace: RwLock<HashMap<String, HashMap<String, Arc<K>>>>,
}

impl<K> Default for NamespaceIndex<K> {
    fn default() -> Self {
        NamespaceIndex {
            by_namespace: RwLock::new(HashMap::new()),
        }
    }
}

fn namespace_and_name<K: Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl<K: Resource> NamespaceIndex<K> {
    /// The objects of `namespace`, in no particular order.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        // A writer that panicked left whole maps behind, so a poisoned lock is still usable.
        let by_namespace = self.by_namespace.read().unwrap_or_else(|p| p.into_inner());
        by_namespace
            .get(namespace)
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl<K: Resource + Send + Sync> StoreIndex<K> for NamespaceIndex<K> {
    fn applied(&self, object: Arc<K>) {
        let (namespace, name) = namespace_and_name(&*object);
        let mut by_namespace = self.by_namespace.write().unwrap_or_else(|p| p.into_inner());
        by_namespace
            .entry(namespace)
            .or_default()
            .insert(name, object);
    }

    fn deleted(&self, object: &K) {
        let (namespace, name) = namespace_and_name(object);
        let mut by_namespace = self.by_namespace.write().unwrap_or_else(|p| p.into_inner());
        if let Some(objects) = by_namespace.get_mut(&namespace) {
            objects.remove(&name);
            if objects.is_empty() {
                by_namespace.remove(&namespace);
            }
        }
    }

    fn replaced(&self, objects: &[Arc<K>]) {
        let mut fresh: HashMap<String, HashMap<String, Arc<K>>> = HashMap::new();
        for object in objects {
            let (namespace, name) = namespace_and_name(&**object);
            fresh
                .entry(namespace)
                .or_default()
                .insert(name, object.clone());
        }
        *self.by_namespace.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }
}

/// A shared cache and its namespace index. Reads as the [`Store`] it wraps. Cheap to clone.
pub struct NamespacedStore<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    index: Arc<NamespaceIndex<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for NamespacedStore<K> {
    fn clone(&self) -> Self {
        NamespacedStore {
            store: self.store.clone(),
            index: self.index.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> NamespacedStore<K> {
    pub fn new(store: Store<K>, index: Arc<NamespaceIndex<K>>) -> Self {
        NamespacedStore { store, index }
    }

    /// The cached objects of `namespace`, without looking at any other.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.index.in_namespace(namespace)
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Deref for NamespacedStore<K> {
    type Target = Store<K>;

    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

/// A namespaced cache fed by hand, as a reflector `Writer` feeds a store: for tests.
pub struct NamespacedWriter<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    index: Arc<NamespaceIndex<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> Default
    for NamespacedWriter<K>
{
    fn default() -> Self {
        NamespacedWriter {
            writer: Writer::default(),
            index: Arc::default(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> NamespacedWriter<K> {
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<K>) {
        self.writer.apply_watcher_event(event);
        let index: Arc<dyn StoreIndex<K>> = self.index.clone();
        update_indexes(&self.writer.as_reader(), &[index], event);
    }

    pub fn as_reader(&self) -> NamespacedStore<K> {
        NamespacedStore::new(self.writer.as_reader(), self.index.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use watcher::Event;

    fn replica_set(namespace: &str, name: &str, replicas: i32) -> ReplicaSet {
        let mut replica_set = ReplicaSet::default();
        replica_set.metadata.namespace = Some(namespace.into());
        replica_set.metadata.name = Some(name.into());
        replica_set.spec = Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
            replicas: Some(replicas),
            ..Default::default()
        });
        replica_set
    }

    fn listed(store: &NamespacedStore<ReplicaSet>, namespace: &str) -> Vec<(String, i32)> {
        let mut listed: Vec<(String, i32)> = store
            .in_namespace(namespace)
            .iter()
            .map(|rs| {
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                (rs.metadata.name.clone().unwrap_or_default(), replicas)
            })
            .collect();
        listed.sort();
        listed
    }

    #[test]
    fn a_namespace_lists_its_newest_objects_only_until_they_are_deleted_or_relisted_away() {
        let mut writer = NamespacedWriter::<ReplicaSet>::default();
        let store = writer.as_reader();
        writer.apply_watcher_event(&Event::Apply(replica_set("a", "web", 1)));
        writer.apply_watcher_event(&Event::Apply(replica_set("a", "db", 1)));
        writer.apply_watcher_event(&Event::Apply(replica_set("b", "web", 1)));
        writer.apply_watcher_event(&Event::Apply(replica_set("a", "web", 3)));
        assert_eq!(listed(&store, "a"), [("db".into(), 1), ("web".into(), 3)]);
        assert_eq!(listed(&store, "b"), [("web".into(), 1)]);
        assert_eq!(store.state().len(), 3, "reads as the store it wraps");

        writer.apply_watcher_event(&Event::Delete(replica_set("a", "db", 1)));
        assert_eq!(listed(&store, "a"), [("web".into(), 3)]);

        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(replica_set("b", "web", 2)));
        writer.apply_watcher_event(&Event::InitDone);
        assert!(
            listed(&store, "a").is_empty(),
            "deleted while the watch was down"
        );
        assert_eq!(listed(&store, "b"), [("web".into(), 2)]);
    }
}
