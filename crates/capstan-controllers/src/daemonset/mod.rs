//! The DaemonSet controller, as Kubernetes' `DaemonSetsController`: one pod of the template on
//! every node that should run it, none on the others.
//!
//! - A node should run the pod when it fits the template's `nodeSelector`, required node
//!   affinity and `nodeName`, and its NoSchedule and NoExecute taints are tolerated. The pod
//!   keeps running on a node whose new taints are only NoSchedule.
//! - Daemon pods tolerate the node-condition taints (not-ready, unreachable, pressure,
//!   unschedulable) and go through the scheduler like any pod: each is pinned to its node by a
//!   required node affinity on `metadata.name`, so resources, ports and preemption still apply.
//! - Failed pods are deleted and replaced, backing off per node (1 s doubling to 15 min) so a
//!   pod that fails at once does not spin. Pods left on nodes that no longer exist are deleted.
//! - The template's history is kept as ControllerRevisions ([`crate::history`]); pods carry
//!   the revision's hash. `RollingUpdate` replaces old pods node by node within `maxUnavailable`
//!   (delete, then create) or `maxSurge` (create, then delete once the new pod is available);
//!   `OnDelete` replaces a pod only when the user deletes it.
//! - `status` counts desired, current, misscheduled, ready, available and updated pods, as
//!   `kubectl rollout status daemonset` reads them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_scheduler::selectors::NodeRequirement;
use capstan_scheduler::snapshot::tolerates;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::expectations::{Cached, Expectations};
use crate::history::{self, CONTROLLER_REVISION_HASH_LABEL};
use crate::informers::SharedInformers;
use crate::namespace_index::NamespacedStore;
use crate::ownership::{claim_pods, controller_of, enqueue_pod_owner, plan_claim, selector_of};
use crate::pod_cache::PodCache;
use crate::pod_control::{create_pods, delete_pods};
use crate::pods::{from_template, is_available, is_ready, next_availability_check};
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The controller's name, the `source.component` of its events.
pub const CONTROLLER_NAME: &str = "daemonset-controller";
/// The deprecated label with the template generation, still set on daemon pods.
pub const POD_TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The annotation the API server keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The history kept when `revisionHistoryLimit` is unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const FAILED_POD_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Why a sync failed. The key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Writing the template's revision failed (a conflict or a hash collision: retrying helps).
    #[error("constructing the history of {daemon_set}: {source}")]
    History {
        daemon_set: String,
        source: ActionError,
    },
    /// Adopting or releasing a pod failed (usually a conflict: retrying helps).
    #[error("claiming pods of {daemon_set}: {source}")]
    ClaimPods {
        daemon_set: String,
        source: ActionError,
    },
    /// Creating or deleting pods failed; events say why.
    #[error("{0}")]
    ManagePods(String),
    /// Writing the status failed (usually a conflict: retrying helps).
    #[error("updating status of {daemon_set}: {source}")]
    UpdateStatus {
        daemon_set: String,
        source: ActionError,
    },
}

/// The DaemonSet controller: its caches, its effects, its expectations and the back-off of
/// failed pods.
pub struct DaemonSetController<A> {
    pub daemon_sets: Store<DaemonSet>,
    pub pods: PodCache,
    pub nodes: Store<Node>,
    pub revisions: NamespacedStore<ControllerRevision>,
    pub actions: A,
    pub expectations: Arc<Expectations>,
    pub failed_pod_backoff: FailedPodBackoff,
}

impl<A: Actions> Reconciler for DaemonSetController<A> {
    type Error = SyncError;

    fn name(&self) -> &'static str {
        CONTROLLER_NAME
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(daemon_set) = self.daemon_sets.get(&key.object_ref()) else {
            self.expectations.forget(key);
            return Ok(Action::AwaitChange);
        };
        // Only the pods it controls and the orphans: claiming ignores every other pod, and its
        // expectations are about pods it created or deleted.
        let owner_uid = daemon_set.metadata.uid.as_deref().unwrap_or_default();
        let pods = self.pods.claimable_by(&key.namespace, owner_uid);
        let nodes = self.nodes.state();
        let uid = daemon_set.metadata.uid.as_deref().unwrap_or_default();
        let namespace_revisions = self.revisions.in_namespace(&key.namespace);
        let namespace_revisions = namespace_revisions.iter().map(|r| &**r);
        let revisions = history::owned_by(namespace_revisions, uid);
        let snapshot = Snapshot {
            pods: pods.iter().map(|p| &**p).collect(),
            nodes: nodes.iter().map(|n| &**n).collect(),
            revisions,
        };
        sync_daemon_set(
            &daemon_set,
            &snapshot,
            &self.actions,
            &self.expectations,
            &self.failed_pod_backoff,
            Timestamp::now(),
        )
        .await
    }
}

/// What a sync reads: the namespace's pods, every node, and the set's revisions.
pub struct Snapshot<'a> {
    pub pods: Vec<&'a Pod>,
    pub nodes: Vec<&'a Node>,
    pub revisions: Vec<&'a ControllerRevision>,
}

/// Per DaemonSet and node, how long to wait before deleting the next failed pod.
#[derive(Debug, Default)]
pub struct FailedPodBackoff {
    entries: Mutex<HashMap<(ObjectKey, String), (Duration, Timestamp)>>,
}

impl FailedPodBackoff {
    /// `None` when a failed pod on `node` may be deleted now (and starts or doubles the wait
    /// for the next); otherwise how long is left.
    fn try_delete(&self, key: &ObjectKey, node: &str, now: Timestamp) -> Option<Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry((key.clone(), node.to_string()));
        match entry {
            std::collections::hash_map::Entry::Occupied(mut occupied) => {
                let (delay, last) = *occupied.get();
                let until = last
                    .checked_add(SignedDuration::try_from(delay).unwrap_or_default())
                    .unwrap_or(now);
                if now < until {
                    return Some(Duration::try_from(until.duration_since(now)).unwrap_or_default());
                }
                *occupied.get_mut() = ((delay * 2).min(FAILED_POD_BACKOFF_MAX), now);
                None
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert((FAILED_POD_BACKOFF_INITIAL, now));
                None
            }
        }
    }

    /// Drops the back-off of a DaemonSet that is gone.
    fn forget(&self, key: &ObjectKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(k, _), _| k != key);
    }
}

/// Event handler for DaemonSets.
pub fn daemon_set_changed(change: Change<'_, DaemonSet>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// Event handler for pods: reconciles the DaemonSet controlling the pod, or every DaemonSet that
/// might adopt an orphan.
pub fn pod_changed(
    change: Change<'_, Pod>,
    daemon_sets: &Store<DaemonSet>,
    expectations: &Expectations,
    queue: &WorkQueue<ObjectKey>,
) {
    enqueue_pod_owner(
        change,
        "apps/",
        daemon_sets,
        |ds| selector_of(ds.spec.as_ref().map(|s| &s.selector)),
        expectations,
        queue,
    );
}

/// What about a node decides where daemon pods go. Status heartbeats change none of it, so
/// they reconcile nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeShape {
    labels: Option<BTreeMap<String, String>>,
    taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
}

/// Event handler for nodes: a node added, removed, relabelled or retainted reconciles every
/// DaemonSet; other node changes (status heartbeats) are ignored.
pub fn node_changed(
    change: Change<'_, Node>,
    seen: &mut HashMap<String, NodeShape>,
    daemon_sets: &Store<DaemonSet>,
    queue: &WorkQueue<ObjectKey>,
) {
    let node = change.object();
    let name = node.metadata.name.clone().unwrap_or_default();
    let changed = match change {
        Change::Deleted(_) => seen.remove(&name).is_some(),
        Change::Applied(_) => {
            let shape = NodeShape {
                labels: node.metadata.labels.clone(),
                taints: node.spec.as_ref().and_then(|s| s.taints.clone()),
            };
            seen.insert(name, shape.clone()) != Some(shape)
        }
    };
    if changed {
        for daemon_set in daemon_sets.state() {
            queue.add(ObjectKey::of(&*daemon_set));
        }
    }
}

/// Event handler for ControllerRevisions: reconciles the DaemonSet that owns the revision.
pub fn revision_changed(change: Change<'_, ControllerRevision>, queue: &WorkQueue<ObjectKey>) {
    let revision = change.object();
    if let Some(owner) = controller_of(&revision.metadata)
        && owner.kind == "DaemonSet"
    {
        let namespace = revision.metadata.namespace.clone().unwrap_or_default();
        queue.add(ObjectKey::new(namespace, owner.name.clone()));
    }
}

fn ds_name(daemon_set: &DaemonSet) -> String {
    daemon_set.metadata.name.clone().unwrap_or_default()
}

fn template_spec(daemon_set: &DaemonSet) -> PodSpec {
    daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default()
}

fn min_ready_seconds(daemon_set: &DaemonSet) -> i32 {
    daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Kubernetes' `AddOrUpdateDaemonPodTolerations`: daemon pods stay through node conditions
/// and cordons, which is what makes them daemons.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Toleration::default()
        };
        // Kubernetes' AddOrUpdateTolerationInPodSpec: a toleration of the same key, operator,
        // value and effect is replaced, anything else kept.
        tolerations.retain(|t| {
            !(t.key == toleration.key
                && t.effect == toleration.effect
                && t.operator.as_deref().unwrap_or("Equal") == "Exists")
        });
        tolerations.push(toleration);
    }
}

/// Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod's required node affinity
/// becomes "this node, by name". The node was already checked against the template's own terms.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    affinity
}

/// The node a daemon pod is on or pinned to (Kubernetes' `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|term| term.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first())
        .map(String::as_str)
}

/// Whether a daemon pod should be on `node`, and whether one already there may stay (Kubernetes'
/// `NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub should_run: bool,
    pub should_continue_running: bool,
}

pub fn placement(daemon_set: &DaemonSet, node: &Node) -> Placement {
    let mut spec = template_spec(daemon_set);
    add_daemon_tolerations(&mut spec);
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let nowhere = Placement {
        should_run: false,
        should_continue_running: false,
    };
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return nowhere;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !NodeRequirement::of(&spec).matches(node_name, &labels) {
        return nowhere;
    }
    let tolerations = spec.tolerations.unwrap_or_default();
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|taint| taint.effect == effect)
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    let no_execute = untolerated("NoExecute");
    Placement {
        should_run: !no_execute && !untolerated("NoSchedule"),
        should_continue_running: !no_execute,
    }
}

fn creation_then_name(a: &&Pod, b: &&Pod) -> std::cmp::Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn hash_label(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// One sync of one DaemonSet: history, claim, place and replace pods, write status.
pub async fn sync_daemon_set<A: Actions>(
    daemon_set: &DaemonSet,
    snapshot: &Snapshot<'_>,
    actions: &A,
    expectations: &Expectations,
    backoff: &FailedPodBackoff,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let key = ObjectKey::of(daemon_set);
    let name = ds_name(daemon_set);
    if daemon_set.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods; nothing is created meanwhile.
        backoff.forget(&key);
        return Ok(Action::AwaitChange);
    }
    let selector = match selector_of(daemon_set.spec.as_ref().map(|s| &s.selector)) {
        Ok(selector) if !selector.is_empty() => selector,
        Ok(_) | Err(_) => {
            // Validation refuses such selectors; a DaemonSet selecting everything would claim
            // every pod of the namespace, so nothing is done, as in Kubernetes.
            tracing::warn!(daemon_set = %key, "invalid or empty selector");
            return Ok(Action::AwaitChange);
        }
    };

    let hash = construct_history(daemon_set, &snapshot.revisions, actions)
        .await
        .map_err(|source| SyncError::History {
            daemon_set: name.clone(),
            source,
        })?;

    // Claim: adopt orphans the selector matches, release pods that stopped matching.
    let uid = daemon_set.metadata.uid.clone().unwrap_or_default();
    let plan = plan_claim(&uid, false, &selector, snapshot.pods.iter().copied());
    let owned = claim_pods(actions, daemon_set, plan.owned, plan.adopt, plan.release)
        .await
        .map_err(|source| SyncError::ClaimPods {
            daemon_set: name.clone(),
            source,
        })?;

    // Pods by the node they are on or pinned to; finished pods already being deleted are gone
    // as far as placement goes.
    let mut by_node: HashMap<&str, Vec<&Pod>> = HashMap::new();
    let mut unplaced: Vec<&Pod> = Vec::new();
    for pod in &owned {
        let finished = matches!(phase(pod), "Succeeded" | "Failed");
        if finished && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match target_node(pod) {
            Some(node) => by_node.entry(node).or_default().push(pod),
            None => unplaced.push(pod),
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by(creation_then_name);
    }

    let by_uid: HashMap<&str, &Pod> = snapshot
        .pods
        .iter()
        .filter_map(|pod| Some((pod.metadata.uid.as_deref()?, *pod)))
        .collect();
    let caught_up = expectations.satisfied(&key, now, |uid| match by_uid.get(uid) {
        None => Cached::Absent,
        Some(pod) if pod.metadata.deletion_timestamp.is_some() => Cached::Terminating,
        Some(_) => Cached::Present,
    });

    let mut requeue = Action::AwaitChange;
    let mut manage_error = None;
    if caught_up {
        let plan = manage(
            daemon_set, snapshot, &by_node, &unplaced, &hash, backoff, now,
        );
        requeue = requeue.sooner(
            plan.retry_failed_after
                .map_or(Action::AwaitChange, Action::RequeueAfter),
        );
        let mut plan = plan;
        if plan.is_empty() && is_rolling_update(daemon_set) {
            plan = rolling_update(daemon_set, snapshot, &by_node, &hash, now);
        }
        manage_error = apply(daemon_set, plan, &hash, actions, expectations, now)
            .await
            .err();
        cleanup_history(daemon_set, &snapshot.revisions, &owned, &hash, actions).await;
    }

    let status = calculate_status(daemon_set, snapshot, &by_node, &hash, now);
    let changed = daemon_set.status.as_ref() != Some(&status);
    if changed {
        let mut updated = daemon_set.clone();
        updated.status = Some(status);
        actions
            .update_daemon_set_status(&updated)
            .await
            .map_err(|source| SyncError::UpdateStatus {
                daemon_set: name.clone(),
                source,
            })?;
    }
    if let Some(error) = manage_error {
        return Err(SyncError::ManagePods(error));
    }
    let daemon_pods: Vec<&Pod> = by_node.values().flatten().copied().collect();
    Ok(requeue.sooner(next_availability_check(
        &daemon_pods,
        min_ready_seconds(daemon_set),
        now,
    )))
}

/// The template's revision: an equal revision is reused (and renumbered newest, as a rollback
/// does), otherwise a new one is created. Returns the revision's hash, which pods carry.
async fn construct_history<A: Actions>(
    daemon_set: &DaemonSet,
    revisions: &[&ControllerRevision],
    actions: &A,
) -> Result<String, ActionError> {
    let template = daemon_set.spec.as_ref().map(|s| &s.template);
    let data = history::template_patch(&template);
    let next = history::next_revision(revisions);
    if let Some(existing) = revisions
        .iter()
        .rev()
        .find(|r| history::same_data(r, &data))
    {
        if existing.revision < next - 1 {
            let mut renumbered = (*existing).clone();
            renumbered.revision = next;
            actions.update_controller_revision(&renumbered).await?;
        }
        return Ok(history::hash_of(existing).unwrap_or_default().to_string());
    }
    let collision_count = daemon_set.status.as_ref().and_then(|s| s.collision_count);
    let labels = template.and_then(|t| t.metadata.as_ref()?.labels.as_ref());
    let revision = history::new_revision(daemon_set, labels, data, next, collision_count);
    let hash = history::hash_of(&revision).unwrap_or_default().to_string();
    match actions
        .create_controller_revision(
            revision.metadata.namespace.as_deref().unwrap_or_default(),
            &revision,
        )
        .await
    {
        Ok(_) => Ok(hash),
        Err(ActionError::AlreadyExists(message)) => {
            // The name is taken by a revision the cache has not shown yet, or by a different
            // template with the same hash. Either way the next sync decides from a fresher
            // cache; a true collision bumps `collisionCount` there.
            let mut bumped = daemon_set.clone();
            let status = bumped.status.get_or_insert_with(DaemonSetStatus::default);
            if revisions
                .iter()
                .any(|r| r.metadata.name == revision.metadata.name)
            {
                status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                actions.update_daemon_set_status(&bumped).await?;
            }
            Err(ActionError::AlreadyExists(message))
        }
        Err(error) => Err(error),
    }
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit` that no pod and not the current
/// template uses. Best effort: a failure is retried on a later sync.
async fn cleanup_history<A: Actions>(
    daemon_set: &DaemonSet,
    revisions: &[&ControllerRevision],
    owned: &[&Pod],
    hash: &str,
    actions: &A,
) {
    let limit = daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
        .max(0) as usize;
    let live: HashSet<&str> = owned
        .iter()
        .filter_map(|pod| hash_label(pod))
        .chain([hash])
        .collect();
    let old: Vec<&&ControllerRevision> = revisions
        .iter()
        .filter(|r| !history::hash_of(r).is_some_and(|h| live.contains(h)))
        .collect();
    let excess = old.len().saturating_sub(limit);
    for revision in old.into_iter().take(excess) {
        let meta = &revision.metadata;
        let result = actions
            .delete_controller_revision(
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
                meta.uid.as_deref().unwrap_or_default(),
            )
            .await;
        if let Err(error) = result
            && !matches!(error, ActionError::NotFound(_))
        {
            tracing::debug!("could not delete revision: {error}");
        }
    }
}

/// What one sync does to pods.
#[derive(Debug, Default)]
struct PodPlan<'a> {
    /// Nodes to create a daemon pod on.
    create_on: Vec<String>,
    delete: Vec<&'a Pod>,
    /// Failed pods waiting out their back-off: look again then.
    retry_failed_after: Option<Duration>,
}

impl PodPlan<'_> {
    fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty()
    }
}

fn allows_surge(daemon_set: &DaemonSet) -> bool {
    is_rolling_update(daemon_set) && fenceposts(daemon_set, 1).is_ok_and(|(surge, _)| surge > 0)
}

fn is_rolling_update(daemon_set: &DaemonSet) -> bool {
    let strategy = daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref());
    strategy
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// (maxSurge, maxUnavailable) for `desired` pods, both rounded up; when both come to zero
/// maxUnavailable is 1 so that the update can move (Kubernetes' `updatedDesiredNodeCounts`).
fn fenceposts(daemon_set: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    let rolling = daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = rolling
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(IntOrString::Int(0));
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let surge = crate::intstr::scaled_value(&surge, desired, true)?;
    let unavailable = crate::intstr::scaled_value(&unavailable, desired, true)?;
    Ok(if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    })
}

/// Kubernetes' `manage` (via `podsShouldBeOnNode`): a pod for every node that should run one,
/// failed pods replaced, duplicates and misplaced pods removed.
fn manage<'a>(
    daemon_set: &DaemonSet,
    snapshot: &Snapshot<'_>,
    by_node: &HashMap<&str, Vec<&'a Pod>>,
    unplaced: &[&'a Pod],
    hash: &str,
    backoff: &FailedPodBackoff,
    now: Timestamp,
) -> PodPlan<'a> {
    let key = ObjectKey::of(daemon_set);
    let mut plan = PodPlan::default();
    let surge = allows_surge(daemon_set);
    let min_ready = min_ready_seconds(daemon_set);
    let mut known_nodes = HashSet::new();
    for node in &snapshot.nodes {
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        known_nodes.insert(node_name);
        let placement = placement(daemon_set, node);
        let pods = by_node
            .get(node_name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if placement.should_run && pods.is_empty() {
            plan.create_on.push(node_name.to_string());
        } else if placement.should_continue_running {
            let mut running = Vec::new();
            for pod in pods {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match phase(pod) {
                    "Failed" => match backoff.try_delete(&key, node_name, now) {
                        Some(wait) => {
                            plan.retry_failed_after =
                                Some(plan.retry_failed_after.map_or(wait, |w| w.min(wait)));
                        }
                        None => plan.delete.push(pod),
                    },
                    "Succeeded" => plan.delete.push(pod),
                    _ => running.push(*pod),
                }
            }
            if !surge {
                // One pod per node: the oldest stays.
                plan.delete.extend(running.iter().skip(1));
            } else {
                // While surging, one pod of each revision may share a node; the old one goes
                // once it is not ready or the new one is available.
                let mut oldest_new = None;
                let mut oldest_old = None;
                for pod in running {
                    let slot = if hash_label(pod) == Some(hash) {
                        &mut oldest_new
                    } else {
                        &mut oldest_old
                    };
                    match slot {
                        None => *slot = Some(pod),
                        Some(_) => plan.delete.push(pod),
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                    && (!is_ready(old) || is_available(new, min_ready, now))
                {
                    plan.delete.push(old);
                }
            }
        } else {
            plan.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none()),
            );
        }
    }
    // Pods on (or pinned to) nodes that no longer exist, and pods pinned nowhere, can never run.
    for (node, pods) in by_node {
        if !known_nodes.contains(node) {
            plan.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none()),
            );
        }
    }
    plan.delete.extend(
        unplaced
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none()),
    );
    plan
}

/// Kubernetes' `rollingUpdate`: replace old pods within `maxUnavailable` (delete first) or
/// `maxSurge` (create first). Unavailable old pods are replaced at once: that costs nothing.
fn rolling_update<'a>(
    daemon_set: &DaemonSet,
    snapshot: &Snapshot<'_>,
    by_node: &HashMap<&str, Vec<&'a Pod>>,
    hash: &str,
    now: Timestamp,
) -> PodPlan<'a> {
    let min_ready = min_ready_seconds(daemon_set);
    let desired = snapshot
        .nodes
        .iter()
        .filter(|node| placement(daemon_set, node).should_run)
        .count() as i32;
    let Ok((max_surge, max_unavailable)) = fenceposts(daemon_set, desired) else {
        return PodPlan::default();
    };
    let mut plan = PodPlan::default();
    // Nodes in a stable order, so that which old pods go first does not depend on hashing.
    let mut nodes: Vec<(&str, &Vec<&'a Pod>)> = by_node.iter().map(|(n, p)| (*n, p)).collect();
    nodes.sort_by_key(|(node, _)| *node);
    let known: HashSet<&str> = snapshot
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let nodes = nodes.into_iter().filter(|(node, _)| known.contains(node));

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for (_, pods) in nodes {
            match updated_and_old(pods, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !is_available(new, min_ready, now) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !is_available(old, min_ready, now) {
                        replace_now.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        plan.delete = replace_now;
        plan.delete.extend(candidates.into_iter().take(room));
    } else {
        let mut surging = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for (node, pods) in nodes {
            match updated_and_old(pods, hash) {
                None => surging += 1,
                Some((_, None)) => {}
                Some((None, Some(old))) => {
                    if !is_available(old, min_ready, now) {
                        replace_now.push(node.to_string());
                    } else if surging < max_surge {
                        candidates.push(node.to_string());
                    }
                }
                Some((Some(new), Some(old))) => {
                    if is_available(new, min_ready, now) {
                        plan.delete.push(old);
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        let room = (max_surge - surging).max(0) as usize;
        plan.create_on = replace_now;
        plan.create_on.extend(candidates.into_iter().take(room));
    }
    plan
}

/// Kubernetes' `findUpdatedPodsOnNode`: the node's live pod of the current revision and its
/// live old pod; `None` when there are several of either (the manage pass fixes that first).
#[allow(clippy::type_complexity)]
fn updated_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let mut new = None;
    let mut old = None;
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if hash_label(pod) == Some(hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(*pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// Carries out a plan: deletions first (they make room), then creations.
async fn apply<A: Actions>(
    daemon_set: &DaemonSet,
    plan: PodPlan<'_>,
    hash: &str,
    actions: &A,
    expectations: &Expectations,
    now: Timestamp,
) -> Result<(), String> {
    for pod in plan.delete.iter().filter(|pod| phase(pod) == "Failed") {
        let node = target_node(pod).unwrap_or_default();
        actions.record_event(EventRecord::warning(
            CONTROLLER_NAME,
            daemon_set,
            "FailedDaemonPod",
            format!(
                "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let victims: Vec<&Pod> = plan
        .delete
        .into_iter()
        .filter(|pod| seen.insert(pod.metadata.uid.clone()))
        .collect();
    let deleted = delete_pods(
        actions,
        CONTROLLER_NAME,
        daemon_set,
        &victims,
        expectations,
        now,
    )
    .await;
    let pods: Vec<Pod> = plan
        .create_on
        .iter()
        .map(|node| daemon_pod(daemon_set, node, hash))
        .collect();
    let created = create_pods(
        actions,
        CONTROLLER_NAME,
        daemon_set,
        &pods,
        expectations,
        now,
    )
    .await;
    deleted.and(created)
}

/// The pod the DaemonSet runs on `node`: its template with the daemon tolerations, the
/// revision hash (and template generation) labels, pinned to the node.
pub fn daemon_pod(daemon_set: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = daemon_set.spec.as_ref().map(|s| &s.template);
    let mut pod = from_template(daemon_set, template);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    if let Some(generation) = daemon_set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
    {
        labels.insert(POD_TEMPLATE_GENERATION_LABEL.into(), generation.clone());
    }
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    add_daemon_tolerations(spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    pod
}

/// Kubernetes' `updateDaemonSetStatus`, counting the oldest pod of each node.
pub fn calculate_status(
    daemon_set: &DaemonSet,
    snapshot: &Snapshot<'_>,
    by_node: &HashMap<&str, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let min_ready = min_ready_seconds(daemon_set);
    let mut status = DaemonSetStatus {
        collision_count: daemon_set.status.as_ref().and_then(|s| s.collision_count),
        conditions: daemon_set
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone()),
        observed_generation: daemon_set.metadata.generation,
        ..DaemonSetStatus::default()
    };
    let mut available = 0;
    let mut updated = 0;
    for node in &snapshot.nodes {
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        let pods: Vec<&Pod> = by_node
            .get(node_name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let should_run = placement(daemon_set, node).should_run;
        match pods.first() {
            Some(pod) if should_run => {
                status.current_number_scheduled += 1;
                if is_ready(pod) {
                    status.number_ready += 1;
                    if is_available(pod, min_ready, now) {
                        available += 1;
                    }
                }
                if hash_label(pod) == Some(hash) {
                    updated += 1;
                }
            }
            Some(_) => status.number_misscheduled += 1,
            None => {}
        }
        if should_run {
            status.desired_number_scheduled += 1;
        }
    }
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some(status.desired_number_scheduled - available);
    status
}

/// Registers the DaemonSet controller's handlers on the shared informers (DaemonSets, Pods,
/// Nodes, ControllerRevisions) and returns it: `workers` reconcile loops that run until
/// dropped, to be polled once the informers' caches are filled.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
    workers: usize,
) -> impl Future<Output = ()> + use<> {
    let queue = WorkQueue::new();
    let expectations = Arc::new(Expectations::new());
    let daemon_sets = {
        let queue = queue.clone();
        informers.on(move |change| daemon_set_changed(change, &queue))
    };
    let pods = {
        let queue = queue.clone();
        let daemon_sets = daemon_sets.clone();
        let expectations = expectations.clone();
        informers.on_pods(move |change| pod_changed(change, &daemon_sets, &expectations, &queue))
    };
    let nodes = {
        let queue = queue.clone();
        let daemon_sets = daemon_sets.clone();
        let mut seen = HashMap::new();
        informers.on(move |change| node_changed(change, &mut seen, &daemon_sets, &queue))
    };
    let revisions = {
        let queue = queue.clone();
        informers.on_namespaced(move |change| revision_changed(change, &queue))
    };
    let controller = Arc::new(DaemonSetController {
        daemon_sets,
        pods,
        nodes,
        revisions,
        actions: crate::actions::KubeActions::new(client),
        expectations,
        failed_pod_backoff: FailedPodBackoff::default(),
    });
    crate::runtime::run_workers(controller, queue, workers)
}

#[cfg(test)]
mod tests;
