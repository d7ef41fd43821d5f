//! The controller manager's one cache of Pods with the indexes its controllers look pods up by
//! (client-go's pod informer with its namespace and controller-owner indexers): a namespace's
//! pods, the pods a controller may claim (those it controls and the namespace's orphans), and the
//! pods bound to a node. At a hundred thousand pods, scanning the whole cache on every sync is
//! what made the controllers quadratic; every lookup here costs what it returns.
//!
//! The index is kept by the shared pod [`Informer`](crate::runtime::Informer) from the same
//! events as the store (after it, before the handlers), and holds the store's own `Arc`s.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use crate::ownership::controller_of;
use crate::runtime::{StoreIndex, update_indexes};

/// A pod's name within its namespace.
type Name = String;

#[derive(Debug, Default)]
struct Buckets {
    /// Every pod, by namespace then name: the source of truth for what the index holds.
    by_namespace: HashMap<String, HashMap<Name, Arc<Pod>>>,
    /// Pods with a controller reference, by the controller's uid, then namespace and name.
    by_controller: HashMap<String, HashMap<(String, Name), Arc<Pod>>>,
    /// Pods without a controller reference, by namespace then name.
    orphans: HashMap<String, HashMap<Name, Arc<Pod>>>,
    /// Pods bound to a node (`spec.nodeName`), by node, then namespace and name.
    by_node: HashMap<String, HashMap<(String, Name), Arc<Pod>>>,
}

fn namespace_and_name(pod: &Pod) -> (String, Name) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Removes `key` from the bucket `bucket` of `map`, dropping the bucket once empty so that the
/// maps do not grow with every owner and node ever seen.
fn remove_from<Q, T>(map: &mut HashMap<String, HashMap<Q, T>>, bucket: &str, key: &Q)
where
    Q: Eq + std::hash::Hash,
{
    if let Some(entries) = map.get_mut(bucket) {
        entries.remove(key);
        if entries.is_empty() {
            map.remove(bucket);
        }
    }
}

impl Buckets {
    fn insert(&mut self, pod: Arc<Pod>) {
        let (namespace, name) = namespace_and_name(&pod);
        let previous = self
            .by_namespace
            .entry(namespace.clone())
            .or_default()
            .insert(name.clone(), pod.clone());
        // The previous version may have had another controller (adoption, release) or node.
        if let Some(previous) = previous {
            self.unlink(&previous, &namespace, &name);
        }
        match controller_of(&pod.metadata) {
            Some(reference) => {
                self.by_controller
                    .entry(reference.uid.clone())
                    .or_default()
                    .insert((namespace.clone(), name.clone()), pod.clone());
            }
            None => {
                self.orphans
                    .entry(namespace.clone())
                    .or_default()
                    .insert(name.clone(), pod.clone());
            }
        }
        if let Some(node) = node_of(&pod) {
            self.by_node
                .entry(node.to_string())
                .or_default()
                .insert((namespace, name), pod.clone());
        }
    }

    fn remove(&mut self, pod: &Pod) {
        let (namespace, name) = namespace_and_name(pod);
        // What the index holds decides which buckets to clean, not the deleted object: they
        // are the same version unless an event was missed.
        let Some(namespace_pods) = self.by_namespace.get_mut(&namespace) else {
            return;
        };
        let Some(previous) = namespace_pods.remove(&name) else {
            return;
        };
        if namespace_pods.is_empty() {
            self.by_namespace.remove(&namespace);
        }
        self.unlink(&previous, &namespace, &name);
    }

    /// Drops `pod` (stored under `namespace`/`name`) from the controller, orphan and node
    /// buckets.
    fn unlink(&mut self, pod: &Pod, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        match controller_of(&pod.metadata) {
            Some(reference) => remove_from(&mut self.by_controller, &reference.uid, &key),
            None => remove_from(&mut self.orphans, namespace, &key.1),
        }
        if let Some(node) = node_of(pod) {
            remove_from(&mut self.by_node, node, &key);
        }
    }
}

/// The pod indexes, kept by the pod informer (see [`StoreIndex`]).
#[derive(Debug, Default)]
pub struct PodIndex {
    buckets: RwLock<Buckets>,
}

impl PodIndex {
    // A writer that panicked left whole maps behind (every update is a few inserts and
    // removes), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, Buckets> {
        self.buckets.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Buckets> {
        self.buckets.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The pods of `namespace`, in no particular order.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.read()
            .by_namespace
            .get(namespace)
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }

    /// What a controller with uid `owner_uid` in `namespace` may claim: the pods it controls
    /// and the namespace's orphans, in no particular order. Pods controlled by anyone else are
    /// left out: [`plan_claim`](crate::ownership::plan_claim) never touches them.
    pub fn claimable_by(&self, namespace: &str, owner_uid: &str) -> Vec<Arc<Pod>> {
        let buckets = self.read();
        let controlled = buckets
            .by_controller
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter(|((pod_namespace, _), _)| pod_namespace == namespace)
            .map(|(_, pod)| pod.clone());
        let orphans = buckets.orphans.get(namespace).into_iter().flatten();
        controlled
            .chain(orphans.map(|(_, pod)| pod.clone()))
            .collect()
    }

    /// The pods bound to `node`, in no particular order.
    pub fn on_node(&self, node: &str) -> Vec<Arc<Pod>> {
        self.read()
            .by_node
            .get(node)
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl StoreIndex<Pod> for PodIndex {
    fn applied(&self, pod: Arc<Pod>) {
        self.write().insert(pod);
    }

    fn deleted(&self, pod: &Pod) {
        self.write().remove(pod);
    }

    fn replaced(&self, pods: &[Arc<Pod>]) {
        let mut buckets = Buckets::default();
        for pod in pods {
            buckets.insert(pod.clone());
        }
        *self.write() = buckets;
    }
}

/// The shared pod cache: the informer's store and its indexes. Cheap to clone.
#[derive(Clone)]
pub struct PodCache {
    pub store: Store<Pod>,
    pub index: Arc<PodIndex>,
}

impl PodCache {
    /// The pods of `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.index.in_namespace(namespace)
    }

    /// The pods a controller with uid `owner_uid` may claim in `namespace`: its own and the
    /// orphans.
    pub fn claimable_by(&self, namespace: &str, owner_uid: &str) -> Vec<Arc<Pod>> {
        self.index.claimable_by(namespace, owner_uid)
    }

    /// The pods bound to `node`.
    pub fn on_node(&self, node: &str) -> Vec<Arc<Pod>> {
        self.index.on_node(node)
    }
}

/// A pod cache fed by hand, as a reflector `Writer` feeds a store: for tests, which have no
/// watch. Keeps the indexes as the informer does.
#[derive(Default)]
pub struct PodCacheWriter {
    writer: Writer<Pod>,
    index: Arc<PodIndex>,
}

impl PodCacheWriter {
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<Pod>) {
        self.writer.apply_watcher_event(event);
        let index: Arc<dyn StoreIndex<Pod>> = self.index.clone();
        update_indexes(&self.writer.as_reader(), &[index], event);
    }

    pub fn as_reader(&self) -> PodCache {
        PodCache {
            store: self.writer.as_reader(),
            index: self.index.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(namespace: &str, name: &str, controller: Option<&str>, node: Option<&str>) -> Arc<Pod> {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some(namespace.into());
        pod.metadata.name = Some(name.into());
        pod.metadata.owner_references = controller.map(|uid| {
            vec![
                OwnerReference {
                    uid: format!("not-the-controller-of-{name}"),
                    ..OwnerReference::default()
                },
                OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                },
            ]
        });
        pod.spec = Some(PodSpec {
            node_name: node.map(Into::into),
            ..PodSpec::default()
        });
        Arc::new(pod)
    }

    fn names(pods: Vec<Arc<Pod>>) -> Vec<String> {
        let mut names: Vec<String> = pods
            .iter()
            .map(|p| {
                let (namespace, name) = namespace_and_name(p);
                format!("{namespace}/{name}")
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn added_pods_are_listed_by_namespace_controller_and_node() {
        let index = PodIndex::default();
        index.applied(pod("a", "web-1", Some("rs-1"), Some("n1")));
        index.applied(pod("a", "web-2", Some("rs-1"), None));
        index.applied(pod("a", "db-1", Some("rs-2"), Some("n1")));
        index.applied(pod("a", "loose", None, Some("n2")));
        index.applied(pod("b", "loose", None, None));
        index.applied(pod("b", "web-1", Some("rs-1"), None));

        assert_eq!(
            names(index.in_namespace("a")),
            ["a/db-1", "a/loose", "a/web-1", "a/web-2"]
        );
        assert_eq!(names(index.in_namespace("b")), ["b/loose", "b/web-1"]);
        assert!(index.in_namespace("c").is_empty());
        // Another owner's pods are not claimable; another namespace's are not either.
        assert_eq!(
            names(index.claimable_by("a", "rs-1")),
            ["a/loose", "a/web-1", "a/web-2"]
        );
        assert_eq!(names(index.claimable_by("a", "nobody")), ["a/loose"]);
        assert_eq!(names(index.on_node("n1")), ["a/db-1", "a/web-1"]);
        assert_eq!(names(index.on_node("n2")), ["a/loose"]);
    }

    #[test]
    fn an_adopted_orphan_moves_to_its_controller_and_a_released_pod_back() {
        let index = PodIndex::default();
        index.applied(pod("a", "p", None, None));
        assert_eq!(names(index.claimable_by("a", "other")), ["a/p"]);

        index.applied(pod("a", "p", Some("rs-1"), None));
        assert_eq!(names(index.claimable_by("a", "rs-1")), ["a/p"]);
        assert!(
            index.claimable_by("a", "other").is_empty(),
            "no orphan any more"
        );

        index.applied(pod("a", "p", Some("rs-2"), None));
        assert!(index.claimable_by("a", "rs-1").is_empty());
        assert_eq!(names(index.claimable_by("a", "rs-2")), ["a/p"]);

        index.applied(pod("a", "p", None, None));
        assert!(
            index.claimable_by("a", "rs-2").len() == 1,
            "an orphan again, for anyone"
        );
        assert_eq!(names(index.claimable_by("a", "other")), ["a/p"]);
        assert!(index.read().by_controller.is_empty());
        assert_eq!(names(index.in_namespace("a")), ["a/p"]);
    }

    #[test]
    fn a_modified_pod_replaces_its_previous_version_and_follows_its_node() {
        let index = PodIndex::default();
        index.applied(pod("a", "p", Some("rs-1"), None));
        index.applied(pod("a", "p", Some("rs-1"), Some("n1")));
        assert_eq!(names(index.in_namespace("a")), ["a/p"]);
        assert_eq!(names(index.claimable_by("a", "rs-1")), ["a/p"]);
        assert_eq!(names(index.on_node("n1")), ["a/p"]);
        let newest = pod("a", "p", Some("rs-1"), Some("n1"));
        index.applied(newest.clone());
        let listed = index.claimable_by("a", "rs-1");
        assert!(
            Arc::ptr_eq(&listed[0], &newest),
            "the newest version is listed"
        );
    }

    #[test]
    fn a_deleted_pod_leaves_every_index_and_empty_buckets_go() {
        let index = PodIndex::default();
        index.applied(pod("a", "p", Some("rs-1"), Some("n1")));
        index.applied(pod("a", "q", None, None));
        // The delete event may carry an older version: the index forgets what it holds.
        index.deleted(&pod("a", "p", None, None));
        index.deleted(&pod("a", "q", None, None));
        index.deleted(&pod("a", "never-seen", None, None));
        assert!(index.in_namespace("a").is_empty());
        assert!(index.claimable_by("a", "rs-1").is_empty());
        assert!(index.on_node("n1").is_empty());
        let buckets = index.read();
        assert!(buckets.by_namespace.is_empty());
        assert!(buckets.by_controller.is_empty());
        assert!(buckets.orphans.is_empty());
        assert!(buckets.by_node.is_empty());
    }

    #[test]
    fn a_hand_fed_cache_keeps_its_index_like_the_informer() {
        let mut writer = PodCacheWriter::default();
        writer.apply_watcher_event(&watcher::Event::Apply((*pod("a", "p", None, None)).clone()));
        let cache = writer.as_reader();
        assert_eq!(names(cache.in_namespace("a")), ["a/p"]);
        let listed = cache.in_namespace("a");
        let stored = cache.store.state();
        assert!(
            Arc::ptr_eq(&listed[0], &stored[0]),
            "the index shares the store's pod"
        );
        writer.apply_watcher_event(&watcher::Event::Delete(
            (*pod("a", "p", None, None)).clone(),
        ));
        assert!(cache.in_namespace("a").is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_forgetting_pods_deleted_meanwhile() {
        let index = PodIndex::default();
        index.applied(pod("a", "gone", Some("rs-1"), Some("n1")));
        index.applied(pod("a", "kept", None, None));
        index.replaced(&[pod("a", "kept", Some("rs-1"), None)]);
        assert_eq!(names(index.in_namespace("a")), ["a/kept"]);
        assert_eq!(names(index.claimable_by("a", "rs-1")), ["a/kept"]);
        assert!(index.claimable_by("a", "other").is_empty());
        assert!(index.on_node("n1").is_empty());
    }
}
