//! The garbage collector, as Kubernetes' `garbagecollector`: a graph of every object's
//! `ownerReferences`, built from metadata-only watches of each deletable resource, and acted on
//! in three ways:
//! - a dependent whose owners are all gone is deleted (background deletion of the owner);
//! - an owner deleted in the foreground (finalizer `foregroundDeletion`) has its dependents
//!   deleted, and keeps its finalizer until no dependent with `blockOwnerDeletion` is left;
//! - an owner deleted with orphaning (finalizer `orphan`) has its reference removed from every
//!   dependent before its finalizer goes.
//!
//! Decisions ([`decide`]) are pure, over the graph and the owners' states. The graph can lag
//! behind the API (each resource has its own watch, so a new pod can be seen before its new
//! ReplicaSet), so an owner missing from the graph is looked up live before its dependents go.

use std::collections::{BTreeSet, HashMap, HashSet};

use capstan_api::resource::{RESOURCES, ResourceInfo};
use futures_util::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

/// One object as the collector knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphObject {
    /// Index into the watched resources.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl GraphObject {
    fn waits_for_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)
    }

    fn orphans_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN_FINALIZER)
    }
}

/// Every object by uid, and the dependents of each owner uid.
#[derive(Debug, Default)]
pub struct Graph {
    objects: HashMap<String, GraphObject>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Adds or replaces an object; returns the uids worth a look because of the change.
    pub fn apply(&mut self, uid: &str, object: GraphObject) -> Vec<String> {
        let previous = self.objects.insert(uid.to_string(), object.clone());
        let mut attention = Vec::new();
        if let Some(previous) = &previous {
            for owner in &previous.owners {
                if let Some(set) = self.dependents.get_mut(&owner.uid) {
                    set.remove(uid);
                }
                // An owner this object let go of may have been waiting for exactly that.
                let released = !object.owners.iter().any(|o| o.uid == owner.uid);
                if released
                    && self
                        .objects
                        .get(&owner.uid)
                        .is_some_and(|o| o.orphans_dependents() || o.waits_for_dependents())
                {
                    attention.push(owner.uid.clone());
                }
            }
        }
        for owner in &object.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.to_string());
        }
        if object.waits_for_dependents() || object.orphans_dependents() {
            attention.push(uid.to_string());
        }
        let owners_need_look = object.owners.iter().any(|o| {
            self.objects
                .get(&o.uid)
                .is_none_or(GraphObject::waits_for_dependents)
        });
        if owners_need_look {
            attention.push(uid.to_string());
        }
        // A dependent that starts going lets a foreground owner re-check what still blocks it.
        if object.deleting {
            attention.extend(self.waiting_owners(&object));
        }
        attention
    }

    /// Removes an object; returns its dependents (possibly orphaned now) and owners waiting on it.
    pub fn delete(&mut self, uid: &str) -> Vec<String> {
        let Some(object) = self.objects.remove(uid) else {
            return Vec::new();
        };
        for owner in &object.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        let mut attention: Vec<String> = self
            .dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        attention.extend(self.waiting_owners(&object));
        attention
    }

    fn waiting_owners(&self, object: &GraphObject) -> Vec<String> {
        object
            .owners
            .iter()
            .filter(|o| {
                self.objects
                    .get(&o.uid)
                    .is_some_and(GraphObject::waits_for_dependents)
            })
            .map(|o| o.uid.clone())
            .collect()
    }

    pub fn get(&self, uid: &str) -> Option<&GraphObject> {
        self.objects.get(uid)
    }

    /// The uids of every object whose resource is `resource`.
    fn uids_of(&self, resource: usize) -> HashSet<String> {
        self.objects
            .iter()
            .filter(|(_, o)| o.resource == resource)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// Every uid that may need work: owners being deleted with a finalizer, and objects
    /// with owners.
    fn all_candidates(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(_, o)| {
                !o.owners.is_empty() || o.waits_for_dependents() || o.orphans_dependents()
            })
            .map(|(uid, _)| uid.clone())
            .collect()
    }
}

/// What an owner reference points at, as far as the collector can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    Exists,
    Absent,
    /// Being deleted in the foreground: its dependents must go first.
    WaitingForDependents,
}

/// One change the collector makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcAction {
    Delete {
        uid: String,
        propagation: Propagation,
    },
    /// Drop the references to these owners from the object.
    RemoveOwners {
        uid: String,
        owners: Vec<String>,
    },
    RemoveFinalizer {
        uid: String,
        finalizer: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
}

/// What to do about `uid`, given each owner's state.
pub fn decide(
    graph: &Graph,
    uid: &str,
    owner_state: &dyn Fn(&OwnerReference) -> OwnerState,
) -> Vec<GcAction> {
    let Some(object) = graph.get(uid) else {
        return Vec::new();
    };
    let dependents: Vec<(&String, &GraphObject)> = graph
        .dependents
        .get(uid)
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d, graph.get(d)?)))
        .collect();
    if object.orphans_dependents() {
        let mut actions: Vec<GcAction> = dependents
            .iter()
            .map(|(d, _)| GcAction::RemoveOwners {
                uid: d.to_string(),
                owners: vec![uid.to_string()],
            })
            .collect();
        if actions.is_empty() {
            actions.push(GcAction::RemoveFinalizer {
                uid: uid.to_string(),
                finalizer: ORPHAN_FINALIZER.into(),
            });
        }
        return actions;
    }
    if object.waits_for_dependents() {
        let mut actions = Vec::new();
        let mut blocked = false;
        for (d, dependent) in &dependents {
            let blocks = dependent
                .owners
                .iter()
                .any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
            blocked |= blocks;
            if !dependent.deleting {
                let has_own_dependents = graph.dependents.contains_key(*d);
                actions.push(GcAction::Delete {
                    uid: d.to_string(),
                    propagation: if has_own_dependents {
                        Propagation::Foreground
                    } else {
                        Propagation::Background
                    },
                });
            }
        }
        if !blocked {
            actions.push(GcAction::RemoveFinalizer {
                uid: uid.to_string(),
                finalizer: FOREGROUND_FINALIZER.into(),
            });
        }
        return actions;
    }
    if object.owners.is_empty() || object.deleting {
        return Vec::new();
    }
    let states: Vec<(&OwnerReference, OwnerState)> =
        object.owners.iter().map(|o| (o, owner_state(o))).collect();
    let solid = states.iter().any(|(_, s)| *s == OwnerState::Exists);
    let waiting = states
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if solid {
        // Keep the object for its living owners; forget the ones that are gone or going.
        let gone: Vec<String> = states
            .iter()
            .filter(|(_, s)| *s != OwnerState::Exists)
            .map(|(o, _)| o.uid.clone())
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        return vec![GcAction::RemoveOwners {
            uid: uid.to_string(),
            owners: gone,
        }];
    }
    vec![GcAction::Delete {
        uid: uid.to_string(),
        propagation: if waiting {
            Propagation::Foreground
        } else {
            Propagation::Background
        },
    }]
}

/// The resources the collector watches: every one that can be listed, watched and deleted.
/// Events are left out: nothing owns them in practice and they are the busiest kind.
fn watched_resources() -> Vec<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .filter(|r| r.preferred && r.kind != "Event")
        .filter(|r| {
            ["list", "watch", "delete"]
                .iter()
                .all(|v| r.verbs.contains(v))
        })
        .collect()
}

fn api_resource(info: &ResourceInfo) -> ApiResource {
    let api_version = if info.group.is_empty() {
        info.version.to_string()
    } else {
        format!("{}/{}", info.group, info.version)
    };
    ApiResource {
        group: info.group.to_string(),
        version: info.version.to_string(),
        api_version,
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    }
}

fn graph_object(resource: usize, meta: &PartialObjectMeta<DynamicObject>) -> GraphObject {
    let m = &meta.metadata;
    GraphObject {
        resource,
        namespace: m.namespace.clone(),
        name: m.name.clone().unwrap_or_default(),
        owners: m.owner_references.clone().unwrap_or_default(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
    }
}

/// Why one action failed; the uid is looked at again later, so a retry usually helps.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("updating {kind} {name}: {source}")]
    Patch {
        kind: String,
        name: String,
        source: kube::Error,
    },
}

/// Runs the collector until the task is dropped.
pub async fn run(client: kube::Client) {
    let resources = watched_resources();
    let mut streams = Vec::new();
    for (index, info) in resources.iter().enumerate() {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(client.clone(), &api_resource(info));
        streams.push(
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |event| (index, event))
                .boxed(),
        );
    }
    let mut events = futures_util::stream::select_all(streams);
    let mut collector = Collector {
        client,
        resources,
        graph: Graph::default(),
        queue: Vec::new(),
        queued: HashSet::new(),
        synced: HashSet::new(),
        relisting: HashMap::new(),
    };
    let mut retry = tokio::time::interval(std::time::Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some((index, event)) = events.next() => collector.observe(index, event),
            _ = retry.tick() => {}
        }
        // Drain what the watches have ready before acting, so decisions see a fresh graph.
        while let Some(Some((index, event))) = events.next().now_or_never() {
            collector.observe(index, event);
        }
        if collector.synced.len() == collector.resources.len() {
            collector.work().await;
        }
    }
}

struct Collector {
    client: kube::Client,
    resources: Vec<&'static ResourceInfo>,
    graph: Graph,
    queue: Vec<String>,
    queued: HashSet<String>,
    /// Resources whose first list is complete: nothing is collected before all are.
    synced: HashSet<usize>,
    /// Uids seen since a resource's watch restarted, to find deletions missed meanwhile.
    relisting: HashMap<usize, HashSet<String>>,
}

impl Collector {
    fn enqueue(&mut self, uids: Vec<String>) {
        for uid in uids {
            if self.queued.insert(uid.clone()) {
                self.queue.push(uid);
            }
        }
    }

    fn observe(
        &mut self,
        index: usize,
        event: Result<Event<PartialObjectMeta<DynamicObject>>, watcher::Error>,
    ) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(resource = self.resources[index].plural, "gc watch: {e}");
                return;
            }
        };
        match event {
            Event::Apply(meta) | Event::InitApply(meta) => {
                let Some(uid) = meta.metadata.uid.clone() else {
                    return;
                };
                if let Some(seen) = self.relisting.get_mut(&index) {
                    seen.insert(uid.clone());
                }
                let attention = self.graph.apply(&uid, graph_object(index, &meta));
                self.enqueue(attention);
            }
            Event::Delete(meta) => {
                if let Some(uid) = meta.metadata.uid.as_deref() {
                    let attention = self.graph.delete(uid);
                    self.enqueue(attention);
                }
            }
            Event::Init => {
                self.relisting.insert(index, HashSet::new());
            }
            Event::InitDone => {
                let seen = self.relisting.remove(&index).unwrap_or_default();
                for uid in self.graph.uids_of(index) {
                    if !seen.contains(&uid) {
                        let attention = self.graph.delete(&uid);
                        self.enqueue(attention);
                    }
                }
                let first = self.synced.insert(index);
                if first && self.synced.len() == self.resources.len() {
                    let all = self.graph.all_candidates();
                    self.enqueue(all);
                }
            }
        }
    }

    /// Works through the queue; failures go back on it for the next round.
    async fn work(&mut self) {
        let batch = std::mem::take(&mut self.queue);
        self.queued.clear();
        let mut failed = Vec::new();
        for uid in batch {
            let states = self.owner_states(&uid).await;
            let actions = decide(&self.graph, &uid, &|o: &OwnerReference| {
                states.get(&o.uid).copied().unwrap_or(OwnerState::Exists)
            });
            for action in actions {
                if let Err(e) = self.act(&action).await {
                    tracing::warn!("garbage collector: {e}");
                    failed.push(uid.clone());
                }
            }
        }
        self.enqueue(failed);
    }

    /// The state of each owner of `uid`; owners missing from the graph are looked up live.
    async fn owner_states(&self, uid: &str) -> HashMap<String, OwnerState> {
        let mut states = HashMap::new();
        let Some(object) = self.graph.get(uid) else {
            return states;
        };
        for owner in &object.owners {
            let state = match self.graph.get(&owner.uid) {
                Some(o) if o.waits_for_dependents() => OwnerState::WaitingForDependents,
                Some(_) => OwnerState::Exists,
                None => self.live_owner_state(object, owner).await,
            };
            states.insert(owner.uid.clone(), state);
        }
        states
    }

    async fn live_owner_state(
        &self,
        dependent: &GraphObject,
        owner: &OwnerReference,
    ) -> OwnerState {
        let (group, version) = match owner.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", owner.api_version.as_str()),
        };
        let Some(info) = RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == owner.kind)
            .or_else(|| {
                RESOURCES
                    .iter()
                    .find(|r| r.group == group && r.kind == owner.kind)
            })
        else {
            // Kubernetes treats an owner of an unknown kind as absent, but capstan may simply
            // not serve it yet: keep the dependent.
            return OwnerState::Exists;
        };
        let ar = api_resource(info);
        let api: Api<PartialObjectMeta<DynamicObject>> =
            match (&dependent.namespace, info.namespaced) {
                (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &ar),
                (None, true) => return OwnerState::Absent,
                _ => Api::all_with(self.client.clone(), &ar),
            };
        match api.get_opt(&owner.name).await {
            Ok(Some(found)) if found.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                let deleting = found.metadata.deletion_timestamp.is_some();
                let fg = found
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND_FINALIZER);
                if deleting && fg {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Exists
                }
            }
            Ok(_) => OwnerState::Absent,
            // Unsure: keep the dependent, look again later.
            Err(_) => OwnerState::Exists,
        }
    }

    fn api_for(&self, uid: &str) -> Option<(Api<DynamicObject>, &GraphObject)> {
        let object = self.graph.get(uid)?;
        let ar = api_resource(self.resources[object.resource]);
        let api = match &object.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        Some((api, object))
    }

    async fn act(&self, action: &GcAction) -> Result<(), GcError> {
        match action {
            GcAction::Delete { uid, propagation } => {
                let Some((api, object)) = self.api_for(uid) else {
                    return Ok(());
                };
                let params = DeleteParams {
                    propagation_policy: Some(match propagation {
                        Propagation::Background => PropagationPolicy::Background,
                        Propagation::Foreground => PropagationPolicy::Foreground,
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                tracing::debug!(kind = self.resources[object.resource].kind, name = %object.name, "garbage collector deletes");
                match api.delete(&object.name, &params).await {
                    Ok(_) => Ok(()),
                    // Gone already, or a new object under the same name: nothing to do.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                    Err(source) => Err(GcError::Delete {
                        kind: self.resources[object.resource].kind.into(),
                        name: object.name.clone(),
                        source,
                    }),
                }
            }
            GcAction::RemoveOwners { uid, owners } => {
                let Some((api, object)) = self.api_for(uid) else {
                    return Ok(());
                };
                let kept: Vec<&OwnerReference> = object
                    .owners
                    .iter()
                    .filter(|o| !owners.contains(&o.uid))
                    .collect();
                // An empty list is removed, as Kubernetes omits empty lists.
                let kept = if kept.is_empty() {
                    json!(null)
                } else {
                    json!(kept)
                };
                let patch = json!({"metadata": {"ownerReferences": kept}});
                self.patch(&api, object, &patch).await
            }
            GcAction::RemoveFinalizer { uid, finalizer } => {
                let Some((api, object)) = self.api_for(uid) else {
                    return Ok(());
                };
                let kept: Vec<&String> = object
                    .finalizers
                    .iter()
                    .filter(|f| *f != finalizer)
                    .collect();
                let kept = if kept.is_empty() {
                    json!(null)
                } else {
                    json!(kept)
                };
                let patch = json!({"metadata": {"finalizers": kept}});
                self.patch(&api, object, &patch).await
            }
        }
    }

    async fn patch(
        &self,
        api: &Api<DynamicObject>,
        object: &GraphObject,
        patch: &serde_json::Value,
    ) -> Result<(), GcError> {
        match api
            .patch(&object.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(GcError::Patch {
                kind: self.resources[object.resource].kind.into(),
                name: object.name.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn object(owners: Vec<OwnerReference>, finalizers: &[&str], deleting: bool) -> GraphObject {
        GraphObject {
            resource: 0,
            namespace: Some("default".into()),
            name: "x".into(),
            owners,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deleting,
        }
    }

    fn exists(_: &OwnerReference) -> OwnerState {
        OwnerState::Exists
    }

    #[test]
    fn a_dependent_whose_owners_are_all_gone_is_deleted_in_the_background() {
        let mut graph = Graph::default();
        graph.apply("pod", object(vec![owner("rs", true)], &[], false));
        let actions = decide(&graph, "pod", &|_| OwnerState::Absent);
        assert_eq!(
            actions,
            [GcAction::Delete {
                uid: "pod".into(),
                propagation: Propagation::Background
            }]
        );
        assert!(decide(&graph, "pod", &exists).is_empty());
    }

    #[test]
    fn a_dependent_keeps_living_owners_and_forgets_the_gone_ones() {
        let mut graph = Graph::default();
        graph.apply(
            "pod",
            object(vec![owner("a", false), owner("b", false)], &[], false),
        );
        let actions = decide(&graph, "pod", &|o| {
            if o.uid == "a" {
                OwnerState::Exists
            } else {
                OwnerState::Absent
            }
        });
        assert_eq!(
            actions,
            [GcAction::RemoveOwners {
                uid: "pod".into(),
                owners: vec!["b".into()]
            }]
        );
    }

    #[test]
    fn a_foreground_owner_deletes_its_dependents_and_waits_for_the_blocking_ones() {
        let mut graph = Graph::default();
        graph.apply("rs", object(vec![], &[FOREGROUND_FINALIZER], true));
        graph.apply("p1", object(vec![owner("rs", true)], &[], false));
        graph.apply("p2", object(vec![owner("rs", false)], &[], false));
        let actions = decide(&graph, "rs", &exists);
        assert_eq!(
            actions,
            [
                GcAction::Delete {
                    uid: "p1".into(),
                    propagation: Propagation::Background
                },
                GcAction::Delete {
                    uid: "p2".into(),
                    propagation: Propagation::Background
                },
            ]
        );
        // The blocking dependent is on its way out but still there: keep waiting.
        graph.apply("p1", object(vec![owner("rs", true)], &[], true));
        graph.delete("p2");
        assert!(decide(&graph, "rs", &exists).is_empty());
        // Once it is gone the finalizer goes.
        let attention = graph.delete("p1");
        assert_eq!(attention, ["rs"]);
        assert_eq!(
            decide(&graph, "rs", &exists),
            [GcAction::RemoveFinalizer {
                uid: "rs".into(),
                finalizer: FOREGROUND_FINALIZER.into()
            }]
        );
    }

    #[test]
    fn an_orphaning_owner_releases_its_dependents_before_its_finalizer_goes() {
        let mut graph = Graph::default();
        graph.apply("rs", object(vec![], &[ORPHAN_FINALIZER], true));
        graph.apply("p1", object(vec![owner("rs", true)], &[], false));
        assert_eq!(
            decide(&graph, "rs", &exists),
            [GcAction::RemoveOwners {
                uid: "p1".into(),
                owners: vec!["rs".into()]
            }]
        );
        graph.apply("p1", object(vec![], &[], false));
        assert_eq!(
            decide(&graph, "rs", &exists),
            [GcAction::RemoveFinalizer {
                uid: "rs".into(),
                finalizer: ORPHAN_FINALIZER.into()
            }]
        );
    }

    #[test]
    fn dependents_of_a_foreground_owner_go_in_the_foreground_when_they_have_dependents() {
        let mut graph = Graph::default();
        graph.apply("deploy", object(vec![], &[FOREGROUND_FINALIZER], true));
        graph.apply("rs", object(vec![owner("deploy", true)], &[], false));
        graph.apply("pod", object(vec![owner("rs", true)], &[], false));
        assert_eq!(
            decide(&graph, "deploy", &exists),
            [GcAction::Delete {
                uid: "rs".into(),
                propagation: Propagation::Foreground
            }]
        );
        // A dependent whose only owner waits for it goes in the foreground too.
        assert_eq!(
            decide(&graph, "pod", &|_| OwnerState::WaitingForDependents),
            [GcAction::Delete {
                uid: "pod".into(),
                propagation: Propagation::Foreground
            }]
        );
    }

    #[test]
    fn the_graph_flags_an_orphaning_owner_once_a_dependent_lets_go_of_it() {
        let mut graph = Graph::default();
        graph.apply("rs", object(vec![], &[ORPHAN_FINALIZER], true));
        graph.apply("p1", object(vec![owner("rs", true)], &[], false));
        assert_eq!(graph.apply("p1", object(vec![], &[], false)), ["rs"]);
    }

    #[test]
    fn the_graph_flags_objects_whose_owner_it_has_not_seen() {
        let mut graph = Graph::default();
        assert_eq!(
            graph.apply("pod", object(vec![owner("rs", true)], &[], false)),
            ["pod"]
        );
        graph.apply("rs", object(vec![], &[], false));
        assert!(
            graph
                .apply("pod2", object(vec![owner("rs", true)], &[], false))
                .is_empty()
        );
        let mut attention = graph.delete("rs");
        attention.sort();
        assert_eq!(attention, ["pod", "pod2"]);
    }

    #[test]
    fn the_collector_watches_workloads_and_pods_but_not_events_or_bindings() {
        let kinds: Vec<&str> = watched_resources().iter().map(|r| r.kind).collect();
        for kind in ["Pod", "ReplicaSet", "Deployment", "ConfigMap", "Job"] {
            assert!(kinds.contains(&kind), "{kind}");
        }
        assert!(!kinds.contains(&"Event"));
        assert!(!kinds.contains(&"Binding"));
    }
}
