//! The StatefulSet controller, as Kubernetes' `StatefulSetController` (`pkg/controller/
//! statefulset`): it keeps one pod per ordinal, named `<set>-<ordinal>`, with a stable identity
//! (hostname, the headless Service's subdomain, the `statefulset.kubernetes.io/pod-name` and
//! `apps.kubernetes.io/pod-index` labels), and recreates a pod under the same name when it fails
//! or is deleted.
//!
//! - `OrderedReady` (the default) creates pods in ordinal order, one at a time, each only once
//!   its predecessors are Running, Ready and available; it scales down from the highest ordinal,
//!   one at a time, and never while a pod is unhealthy. `Parallel` creates and deletes at once.
//! - Every distinct template is a ControllerRevision ([`crate::history`]); pods carry their
//!   revision's name in `controller-revision-hash`. `RollingUpdate` replaces the pods not on the
//!   update revision from the highest ordinal down, one at a time, each after the one above is
//!   healthy again, leaving ordinals below `partition` on the current revision; `OnDelete`
//!   only uses the update revision for pods the user deleted. `maxUnavailable` is not honoured
//!   (the `MaxUnavailableStatefulSet` feature gate is off by default in 1.33): one at a time.
//! - Status carries the counts and revisions `kubectl rollout status` reads; once every pod is
//!   updated and ready, `currentRevision` becomes `updateRevision`.
//!
//! Not here yet: `volumeClaimTemplates` and `persistentVolumeClaimRetentionPolicy` (no storage
//! yet: pods are created without claims), fixing the identity of a pod whose labels were edited
//! (needs a pod update action), and adopting orphan ControllerRevisions (needs a revision
//! owner-reference patch). Deleting a set needs nothing here: the garbage collector deletes its
//! pods and revisions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::expectations::{Cached, Expectations};
use crate::history::{
    CONTROLLER_REVISION_HASH_LABEL, new_revision, next_revision, same_data, template_patch,
};
use crate::informers::SharedInformers;
use crate::namespace_index::NamespacedStore;
use crate::ownership::{
    claim_pods, controller_of, controller_ref, enqueue_pod_owner, plan_claim, selector_of,
};
use crate::pod_cache::PodCache;
use crate::pods::{is_available, is_ready, next_availability_check};
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The controller's name, the `source.component` of its events.
pub const CONTROLLER_NAME: &str = "statefulset-controller";
/// The label naming a pod after itself, so that a Service can select one pod of the set.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a pod's ordinal (the `PodIndexLabel` feature, on since 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// `spec.podManagementPolicy` values.
pub const ORDERED_READY: &str = "OrderedReady";
pub const PARALLEL: &str = "Parallel";
/// `spec.updateStrategy.type` values.
pub const ROLLING_UPDATE: &str = "RollingUpdate";
pub const ON_DELETE: &str = "OnDelete";
/// The API's default `spec.revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// Why a sync failed. The key is retried with backoff; each variant says whether that helps.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Adopting or releasing a pod failed (usually a conflict with a concurrent change: retrying
    /// helps).
    #[error("claiming pods of {stateful_set}: {source}")]
    ClaimPods {
        stateful_set: String,
        source: ActionError,
    },
    /// Creating or renumbering the update revision failed. A conflict or a revision the cache
    /// has not shown yet is cured by a retry.
    #[error("revisions of {stateful_set}: {source}")]
    Revisions {
        stateful_set: String,
        source: ActionError,
    },
    /// Creating or deleting a pod failed; the set's events say which. Retrying helps when the
    /// cause (quota, admission, a name still taken by a terminating pod) goes away.
    #[error("pods of {stateful_set}: {source}")]
    ManagePods {
        stateful_set: String,
        source: ActionError,
    },
    /// Writing the status failed (usually a conflict: retrying helps).
    #[error("updating status of {stateful_set}: {source}")]
    UpdateStatus {
        stateful_set: String,
        source: ActionError,
    },
    /// Deleting revisions beyond `revisionHistoryLimit` failed; retrying helps.
    #[error("truncating the history of {stateful_set}: {source}")]
    TruncateHistory {
        stateful_set: String,
        source: ActionError,
    },
}

/// The StatefulSet controller: its caches, its effects and its expectations.
pub struct StatefulSetController<A> {
    pub stateful_sets: Store<StatefulSet>,
    pub pods: PodCache,
    pub revisions: NamespacedStore<ControllerRevision>,
    pub actions: A,
    /// Kubernetes' StatefulSet controller has none and relies on AlreadyExists and conflicts;
    /// waiting for the cache to show its own creates and deletes instead spares the set a
    /// `FailedCreate` event each time a watch is slow.
    pub expectations: Arc<Expectations>,
}

impl<A: Actions> Reconciler for StatefulSetController<A> {
    type Error = SyncError;

    fn name(&self) -> &'static str {
        CONTROLLER_NAME
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(stateful_set) = self.stateful_sets.get(&key.object_ref()) else {
            self.expectations.forget(key);
            return Ok(Action::AwaitChange);
        };
        // Only the pods it controls and the orphans: claiming ignores every other pod, and its
        // expectations are about pods it created or deleted.
        let owner_uid = stateful_set.metadata.uid.as_deref().unwrap_or_default();
        let pods = self.pods.claimable_by(&key.namespace, owner_uid);
        let pods: Vec<&Pod> = pods.iter().map(|pod| &**pod).collect();
        let revisions: Vec<Arc<ControllerRevision>> = self.revisions.in_namespace(&key.namespace);
        let revisions: Vec<&ControllerRevision> = revisions.iter().map(|r| &**r).collect();
        sync_stateful_set(
            &stateful_set,
            &pods,
            &revisions,
            &self.actions,
            &self.expectations,
            Timestamp::now(),
        )
        .await
    }
}

/// Event handler for StatefulSets: every change reconciles the set.
pub fn stateful_set_changed(change: Change<'_, StatefulSet>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// Event handler for pods: reconciles the set controlling the pod, or, for an orphan, every set
/// that might adopt it. Marks the pod's creation as observed.
pub fn pod_changed(
    change: Change<'_, Pod>,
    stateful_sets: &Store<StatefulSet>,
    expectations: &Expectations,
    queue: &WorkQueue<ObjectKey>,
) {
    enqueue_pod_owner(
        change,
        "apps/",
        stateful_sets,
        |set| selector_of(set.spec.as_ref().map(|s| &s.selector)),
        expectations,
        queue,
    );
}

/// Event handler for ControllerRevisions: reconciles the set controlling the revision, so that
/// a revision the cache was missing (a create answered AlreadyExists) is picked up at once.
pub fn revision_changed(change: Change<'_, ControllerRevision>, queue: &WorkQueue<ObjectKey>) {
    let revision = change.object();
    if let Some(owner) = controller_of(&revision.metadata)
        && owner.kind == "StatefulSet"
        && owner.api_version.starts_with("apps/")
    {
        let namespace = revision.metadata.namespace.clone().unwrap_or_default();
        queue.add(ObjectKey::new(namespace, owner.name.clone()));
    }
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn spec(set: &StatefulSet) -> StatefulSetSpec {
    set.spec.clone().unwrap_or_default()
}

/// `spec.replicas`, which the API server defaults to 1.
fn desired_replicas(spec: &StatefulSetSpec) -> i32 {
    spec.replicas.unwrap_or(1).max(0)
}

/// The first ordinal (`spec.ordinals.start`, 0 by default).
fn start_ordinal(spec: &StatefulSetSpec) -> i32 {
    spec.ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

/// Are pods managed in order (`OrderedReady`, Kubernetes' "monotonic"), rather than `Parallel`?
fn monotonic(spec: &StatefulSetSpec) -> bool {
    spec.pod_management_policy.as_deref() != Some(PARALLEL)
}

fn on_delete(spec: &StatefulSetSpec) -> bool {
    spec.update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some(ON_DELETE)
}

/// `rollingUpdate.partition`: ordinals below `start + partition` stay on the current revision.
fn partition(spec: &StatefulSetSpec) -> i32 {
    spec.update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0)
}

fn min_ready_seconds(spec: &StatefulSetSpec) -> i32 {
    spec.min_ready_seconds.unwrap_or(0)
}

/// The pod of `set` at `ordinal`: `<set>-<ordinal>`.
pub fn pod_name(set_name: &str, ordinal: i32) -> String {
    format!("{set_name}-{ordinal}")
}

/// The ordinal of a pod of `set_name` (Kubernetes' `getParentNameAndOrdinal`), or `None` for a
/// pod that is not a member of the set. Only the canonical spelling counts (`web-01` does not),
/// since a pod's identity is its name.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let digits = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    let ordinal: i32 = digits.parse().ok()?;
    (ordinal >= 0 && ordinal.to_string() == digits).then_some(ordinal)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// Kubernetes' `isHealthy`: running, ready and not being deleted.
fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// The revision a pod was created from: the value of its `controller-revision-hash` label,
/// which for a StatefulSet is the revision's whole name.
fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// The template a revision recorded (Kubernetes' `ApplyRevision`: its data is a patch that
/// replaces the set's template).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    if let Some(fields) = template.as_object_mut() {
        fields.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// The pod of `set` at `ordinal` from `template` at `revision` (Kubernetes'
/// `newStatefulSetPod` with `setPodRevision`).
pub fn new_stateful_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Pod {
    let set_name = name(&set.metadata);
    let pod_name = pod_name(set_name, ordinal);
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), revision.into());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(pod_name.clone());
    pod_spec.subdomain = spec(set).service_name.filter(|s| !s.is_empty());
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name),
            generate_name: Some(format!("{set_name}-")),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The current and update revisions of a set, as Kubernetes' `getStatefulSetRevisions` finds
/// or makes them.
#[derive(Debug, Clone)]
pub struct Revisions {
    /// The revision the pods below the partition (and, until a rollout completes, the pods not
    /// yet replaced) run.
    pub current: ControllerRevision,
    /// The revision of the set's template now.
    pub update: ControllerRevision,
    /// `status.collisionCount`, raised when a revision name was taken by different data.
    pub collision_count: i32,
}

/// Finds the revision of the set's template among `owned` (oldest first) — reusing it, with a
/// new number if it is not the newest (a rollback) — or creates it. `namespace_revisions` tells
/// what holds a name that is already taken.
async fn find_or_create_revisions<A: Actions>(
    set: &StatefulSet,
    owned: &[&ControllerRevision],
    namespace_revisions: &[&ControllerRevision],
    actions: &A,
) -> Result<Revisions, ActionError> {
    let spec = spec(set);
    let set_uid = set.metadata.uid.as_deref().unwrap_or_default();
    let mut collision_count = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let data = template_patch(&spec.template);
    let number = next_revision(owned);
    let latest = owned.last().filter(|r| same_data(r, &data));
    let equal = owned.iter().rev().find(|r| same_data(r, &data));

    let update = match (latest, equal) {
        (Some(latest), _) => (*latest).clone(),
        (None, Some(equal)) => {
            // An earlier template again (`kubectl rollout undo`): its revision becomes the
            // newest rather than a copy of it.
            let mut renumbered = (*equal).clone();
            renumbered.revision = number;
            actions.update_controller_revision(&renumbered).await?
        }
        (None, None) => loop {
            let mut revision = new_revision(
                set,
                spec.template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref()),
                data.clone(),
                number,
                Some(collision_count),
            );
            // The set's annotations travel with its revision (`kubernetes.io/change-cause` is
            // what `kubectl rollout history` shows).
            revision.metadata.annotations = set.metadata.annotations.clone();
            let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
            match actions
                .create_controller_revision(namespace, &revision)
                .await
            {
                Ok(created) => break created,
                Err(ActionError::AlreadyExists(message)) => {
                    let taken = namespace_revisions
                        .iter()
                        .find(|r| r.metadata.name == revision.metadata.name);
                    match taken {
                        // Ours and equal: created by an earlier sync the cache now shows.
                        Some(taken)
                            if same_data(taken, &data)
                                && controller_of(&taken.metadata)
                                    .is_some_and(|o| o.uid == set_uid) =>
                        {
                            break (*taken).clone();
                        }
                        // A hash collision: probe the next name.
                        Some(_) => collision_count += 1,
                        // Not cached yet: only a fresher cache tells whether it is ours.
                        None => return Err(ActionError::AlreadyExists(message)),
                    }
                }
                Err(error) => return Err(error),
            }
        },
    };
    let current_name = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref());
    let current = owned
        .iter()
        .find(|r| current_name.is_some() && r.metadata.name.as_deref() == current_name)
        .map(|r| (*r).clone())
        .unwrap_or_else(|| update.clone());
    Ok(Revisions {
        current,
        update,
        collision_count,
    })
}

/// One sync of one StatefulSet from a snapshot of its namespace's pods and ControllerRevisions:
/// claim pods, find the revisions, create, delete and replace pods, write status, trim history.
/// Returns when to look again if a pod's minReadySeconds will expire.
pub async fn sync_stateful_set<A: Actions>(
    set: &StatefulSet,
    namespace_pods: &[&Pod],
    namespace_revisions: &[&ControllerRevision],
    actions: &A,
    expectations: &Expectations,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let key = ObjectKey::of(set);
    let set_name = name(&set.metadata).to_string();
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let deleting = set.metadata.deletion_timestamp.is_some();
    let spec = spec(set);

    let selector = match selector_of(Some(&spec.selector)) {
        Ok(selector) => selector,
        Err(error) => {
            // Validation refuses such selectors; retrying would not help.
            tracing::warn!(stateful_set = %key, "invalid selector: {error}");
            return Ok(Action::AwaitChange);
        }
    };

    let by_uid: HashMap<&str, &Pod> = namespace_pods
        .iter()
        .filter_map(|pod| Some((pod.metadata.uid.as_deref()?, *pod)))
        .collect();
    let caught_up = expectations.satisfied(&key, now, |uid| match by_uid.get(uid) {
        None => Cached::Absent,
        Some(pod) if is_terminating(pod) => Cached::Terminating,
        Some(_) => Cached::Present,
    });

    // Unlike a ReplicaSet, a set claims finished and terminating pods too: they still hold
    // their ordinal's name. Pods whose name is not one of the set's ordinals are not members
    // (Kubernetes' `isMemberOf` filter of `ClaimPods`).
    let member = |pod: &Pod| ordinal_of(&set_name, name(&pod.metadata)).is_some();
    let plan = plan_claim(
        &set_uid,
        deleting,
        &selector,
        namespace_pods.iter().copied(),
    );
    let (owned, strangers): (Vec<&Pod>, Vec<&Pod>) =
        plan.owned.into_iter().partition(|pod| member(pod));
    // Only pods named as members are adopted; owned pods that are not are released.
    let adopt: Vec<&Pod> = plan.adopt.into_iter().filter(|pod| member(pod)).collect();
    let release: Vec<&Pod> = plan.release.into_iter().chain(strangers).collect();
    let owned = claim_pods(actions, set, owned, adopt, release)
        .await
        .map_err(|source| SyncError::ClaimPods {
            stateful_set: set_name.clone(),
            source,
        })?;

    let owned_revisions = crate::history::owned_by(namespace_revisions.iter().copied(), &set_uid);
    let revisions = find_or_create_revisions(set, &owned_revisions, namespace_revisions, actions)
        .await
        .map_err(|source| SyncError::Revisions {
            stateful_set: set_name.clone(),
            source,
        })?;

    let sync = PodSync {
        set,
        spec: &spec,
        revisions: &revisions,
        actions,
        expectations,
        key: &key,
        now,
    };
    let outcome = if deleting || !caught_up {
        Ok(Outcome::default())
    } else {
        sync.manage_pods(&owned).await
    };
    let (retired, manage_error) = match outcome {
        Ok(outcome) => (outcome.retired_current, None),
        Err(error) => (0, Some(error)),
    };

    let mut status = calculate_status(set, &spec, &owned, &revisions, now);
    status.current_replicas = Some(status.current_replicas.unwrap_or(0) - retired);
    complete_rolling_update(&spec, &mut status);
    if status_differs(set, &status) {
        let mut updated = set.clone();
        updated.status = Some(status);
        if let Err(source) = actions.update_stateful_set_status(&updated).await {
            return Err(SyncError::UpdateStatus {
                stateful_set: set_name,
                source,
            });
        }
    }
    if let Some(source) = manage_error {
        return Err(SyncError::ManagePods {
            stateful_set: set_name,
            source,
        });
    }

    truncate_history(set, &spec, &owned, &owned_revisions, &revisions, actions)
        .await
        .map_err(|source| SyncError::TruncateHistory {
            stateful_set: set_name,
            source,
        })?;

    Ok(next_availability_check(
        &owned,
        min_ready_seconds(&spec),
        now,
    ))
}

/// What managing the pods changed that the status must reflect.
#[derive(Debug, Default)]
struct Outcome {
    /// Pods on the current revision deleted for the rolling update (Kubernetes decrements
    /// `currentReplicas` at once).
    retired_current: i32,
}

/// Whether a step lets the sync go on to the next ordinal.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    /// OrderedReady must wait here (a create, a deletion in flight, a pod not yet available).
    Wait,
}

/// One sync's view for the pod decisions (Kubernetes' `updateStatefulSet`).
struct PodSync<'a, A> {
    set: &'a StatefulSet,
    spec: &'a StatefulSetSpec,
    revisions: &'a Revisions,
    actions: &'a A,
    expectations: &'a Expectations,
    key: &'a ObjectKey,
    now: Timestamp,
}

impl<A: Actions> PodSync<'_, A> {
    fn set_name(&self) -> &str {
        name(&self.set.metadata)
    }

    /// Creates, replaces and deletes pods toward the spec: first every ordinal in range, in
    /// order, then the condemned ordinals above it from the highest, then the rolling update.
    async fn manage_pods(&self, owned: &[&Pod]) -> Result<Outcome, ActionError> {
        let start = start_ordinal(self.spec);
        let end = start + desired_replicas(self.spec);
        let monotonic = monotonic(self.spec);
        let mut replicas: BTreeMap<i32, Option<&Pod>> = (start..end).map(|o| (o, None)).collect();
        let mut condemned: Vec<(i32, &Pod)> = Vec::new();
        for pod in owned {
            let Some(ordinal) = ordinal_of(self.set_name(), name(&pod.metadata)) else {
                continue;
            };
            match replicas.get_mut(&ordinal) {
                Some(slot) => *slot = Some(pod),
                None => condemned.push((ordinal, pod)),
            }
        }
        // Highest ordinal first.
        condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));

        // A missing pod is unhealthy too: it is about to be created.
        let first_unhealthy: Option<&str> = if replicas
            .values()
            .any(|slot| slot.is_none_or(|pod| !is_healthy(pod)))
        {
            None
        } else {
            condemned
                .iter()
                .rev()
                .find(|(_, pod)| !is_healthy(pod))
                .map(|(_, pod)| name(&pod.metadata))
        };

        let mut first_error = None;
        for (&ordinal, slot) in &replicas {
            match self.process_replica(ordinal, *slot, monotonic).await {
                Ok(Step::Continue) => {}
                Ok(Step::Wait) => return Ok(Outcome::default()),
                // Parallel goes on with the other ordinals, as Kubernetes' slow-start batch.
                Err(error) if !monotonic => {
                    first_error.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }

        // Every ordinal in range exists, and with OrderedReady each is Running and available:
        // scale down from the highest ordinal. Scaling takes precedence over updates.
        for (_, pod) in &condemned {
            match self
                .process_condemned(pod, first_unhealthy, monotonic)
                .await
            {
                Ok(Step::Continue) => {}
                Ok(Step::Wait) => return Ok(Outcome::default()),
                Err(error) if !monotonic => {
                    first_error.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }

        if on_delete(self.spec) {
            // Pods move to the update revision only when the user deletes them.
            return Ok(Outcome::default());
        }
        self.rolling_update(&replicas).await
    }

    /// Kubernetes' `processReplica` for the ordinal's slot.
    async fn process_replica(
        &self,
        ordinal: i32,
        slot: Option<&Pod>,
        monotonic: bool,
    ) -> Result<Step, ActionError> {
        let wait = if monotonic {
            Step::Wait
        } else {
            Step::Continue
        };
        let Some(pod) = slot else {
            self.create(&self.versioned_pod(ordinal)).await?;
            return Ok(wait);
        };
        if matches!(phase(pod), "Failed" | "Succeeded") {
            // The pod is recreated under the same name once this one is gone; the phase of a
            // pod stopped on its node (evicted, rebooted) depends on its exit code, so
            // Succeeded is recreated too.
            if !is_terminating(pod) {
                let (type_, reason, adjective) = if phase(pod) == "Failed" {
                    ("Warning", "RecreatingFailedPod", "failed")
                } else {
                    ("Normal", "RecreatingTerminatedPod", "terminated")
                };
                let message = format!(
                    "StatefulSet {}/{} is recreating {adjective} Pod {}",
                    self.key.namespace,
                    self.set_name(),
                    name(&pod.metadata)
                );
                self.actions.record_event(EventRecord {
                    type_,
                    ..EventRecord::normal(CONTROLLER_NAME, self.set, reason, message)
                });
                self.delete(pod).await?;
            }
            return Ok(wait);
        }
        if is_terminating(pod) {
            // Its successor waits for graceful deletion to finish: the name is still taken.
            return Ok(wait);
        }
        if monotonic && !is_available(pod, min_ready_seconds(self.spec), self.now) {
            return Ok(Step::Wait);
        }
        Ok(Step::Continue)
    }

    /// Kubernetes' `processCondemned` for a pod above the replica range.
    async fn process_condemned(
        &self,
        pod: &Pod,
        first_unhealthy: Option<&str>,
        monotonic: bool,
    ) -> Result<Step, ActionError> {
        if is_terminating(pod) {
            return Ok(if monotonic {
                Step::Wait
            } else {
                Step::Continue
            });
        }
        let first_unhealthy = first_unhealthy == Some(name(&pod.metadata));
        if monotonic
            && !first_unhealthy
            && !(is_running_and_ready(pod)
                && is_available(pod, min_ready_seconds(self.spec), self.now))
        {
            return Ok(Step::Wait);
        }
        self.delete(pod).await?;
        Ok(if monotonic {
            Step::Wait
        } else {
            Step::Continue
        })
    }

    /// Replaces the highest pod in `[start + partition, end)` that is not on the update
    /// revision, once every pod above it is healthy.
    async fn rolling_update(
        &self,
        replicas: &BTreeMap<i32, Option<&Pod>>,
    ) -> Result<Outcome, ActionError> {
        let update_min = start_ordinal(self.spec) + partition(self.spec);
        let update_name = name(&self.revisions.update.metadata);
        let current_name = name(&self.revisions.current.metadata);
        for (&ordinal, slot) in replicas.iter().rev() {
            if ordinal < update_min {
                break;
            }
            // A missing pod was just created at the update revision.
            let Some(pod) = slot else {
                return Ok(Outcome::default());
            };
            if pod_revision(pod) != Some(update_name) && !is_terminating(pod) {
                match self.delete(pod).await {
                    Ok(()) | Err(ActionError::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
                let retired_current = i32::from(pod_revision(pod) == Some(current_name));
                return Ok(Outcome { retired_current });
            }
            if !is_healthy(pod) {
                return Ok(Outcome::default());
            }
        }
        Ok(Outcome::default())
    }

    /// The pod for `ordinal` at the revision its position calls for (Kubernetes'
    /// `newVersionedStatefulSetPod`): below the partition the current revision, else the update
    /// revision.
    fn versioned_pod(&self, ordinal: i32) -> Pod {
        let has_partition = self
            .spec
            .update_strategy
            .as_ref()
            .is_some_and(|s| s.rolling_update.is_some());
        if has_partition && ordinal < start_ordinal(self.spec) + partition(self.spec) {
            let current = &self.revisions.current;
            if let Some(template) = template_of(current) {
                return new_stateful_pod(self.set, &template, name(&current.metadata), ordinal);
            }
            tracing::warn!(stateful_set = %self.key, revision = name(&current.metadata),
                "unreadable revision data; creating the pod from the set's template");
        }
        new_stateful_pod(
            self.set,
            &self.spec.template,
            name(&self.revisions.update.metadata),
            ordinal,
        )
    }

    /// Kubernetes' `CreateStatefulPod` with its event.
    async fn create(&self, pod: &Pod) -> Result<(), ActionError> {
        let pod_name = name(&pod.metadata);
        match self.actions.create_pod(&self.key.namespace, pod).await {
            Ok(created) => {
                self.record_pod_event("create", pod_name, None);
                self.expectations
                    .expect_creations(self.key, created.metadata.uid, self.now);
                Ok(())
            }
            Err(error) => {
                self.record_pod_event("create", pod_name, Some(&error));
                Err(error)
            }
        }
    }

    /// Kubernetes' `DeleteStatefulPod` with its event. A pod already gone is deleted.
    async fn delete(&self, pod: &Pod) -> Result<(), ActionError> {
        let pod_name = name(&pod.metadata);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match self
            .actions
            .delete_pod(&self.key.namespace, pod_name, &uid)
            .await
        {
            Ok(()) => {
                self.record_pod_event("delete", pod_name, None);
                self.expectations
                    .expect_deletions(self.key, [uid], self.now);
                Ok(())
            }
            Err(ActionError::NotFound(_)) => Ok(()),
            Err(error) => {
                self.record_pod_event("delete", pod_name, Some(&error));
                Err(error)
            }
        }
    }

    /// Kubernetes' `recordPodEvent`: `SuccessfulCreate` "create Pod web-0 in StatefulSet web
    /// successful", or `FailedCreate` "create Pod web-0 in StatefulSet web failed error: …".
    fn record_pod_event(&self, verb: &'static str, pod_name: &str, error: Option<&ActionError>) {
        let set_name = self.set_name();
        let event = match error {
            None => EventRecord::normal(
                CONTROLLER_NAME,
                self.set,
                if verb == "create" {
                    "SuccessfulCreate"
                } else {
                    "SuccessfulDelete"
                },
                format!("{verb} Pod {pod_name} in StatefulSet {set_name} successful"),
            ),
            Some(error) => EventRecord::warning(
                CONTROLLER_NAME,
                self.set,
                if verb == "create" {
                    "FailedCreate"
                } else {
                    "FailedDelete"
                },
                format!("{verb} Pod {pod_name} in StatefulSet {set_name} failed error: {error}"),
            ),
        };
        self.actions.record_event(event);
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The status the cached pods show (Kubernetes' `updateStatus` over the replicas and the
/// condemned pods): pods created by this sync appear when their watch events arrive.
pub fn calculate_status(
    set: &StatefulSet,
    spec: &StatefulSetSpec,
    owned: &[&Pod],
    revisions: &Revisions,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = min_ready_seconds(spec);
    let current_name = name(&revisions.current.metadata);
    let update_name = name(&revisions.update.metadata);
    let ready = owned.iter().filter(|p| is_running_and_ready(p)).count();
    let available = owned
        .iter()
        .filter(|p| is_running_and_ready(p) && is_available(p, min_ready, now))
        .count();
    let live: Vec<&&Pod> = owned.iter().filter(|p| !is_terminating(p)).collect();
    let current = live
        .iter()
        .filter(|p| pod_revision(p) == Some(current_name))
        .count();
    let updated = live
        .iter()
        .filter(|p| pod_revision(p) == Some(update_name))
        .count();
    StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: count(owned.len()),
        ready_replicas: Some(count(ready)),
        available_replicas: Some(count(available)),
        current_replicas: Some(count(current)),
        updated_replicas: Some(count(updated)),
        current_revision: Some(current_name.to_string()),
        update_revision: Some(update_name.to_string()),
        collision_count: Some(revisions.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// Kubernetes' `completeRollingUpdate`: once every pod is updated and ready, the update
/// revision is the current one.
fn complete_rolling_update(spec: &StatefulSetSpec, status: &mut StatefulSetStatus) {
    let updated = status.updated_replicas.unwrap_or(0);
    if !on_delete(spec)
        && updated == status.replicas
        && status.ready_replicas.unwrap_or(0) == status.replicas
    {
        status.current_replicas = Some(updated);
        status.current_revision = status.update_revision.clone();
    }
}

/// Kubernetes' `inconsistentStatus` (plus the collision count): zero and absent counts are the
/// same, and an observedGeneration behind the generation always needs a write.
fn status_differs(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let current = set.status.clone().unwrap_or_default();
    let fields = |s: &StatefulSetStatus| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
            s.current_replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
            s.current_revision.clone().unwrap_or_default(),
            s.update_revision.clone().unwrap_or_default(),
            s.collision_count.unwrap_or(0),
        )
    };
    status.observed_generation.unwrap_or(0) > current.observed_generation.unwrap_or(0)
        || fields(&current) != fields(status)
}

/// Kubernetes' `truncateHistory`: deletes the oldest revisions beyond `revisionHistoryLimit`
/// that no pod runs and that are neither current nor update.
async fn truncate_history<A: Actions>(
    set: &StatefulSet,
    spec: &StatefulSetSpec,
    owned: &[&Pod],
    owned_revisions: &[&ControllerRevision],
    revisions: &Revisions,
    actions: &A,
) -> Result<(), ActionError> {
    let mut live: HashSet<&str> = owned.iter().filter_map(|p| pod_revision(p)).collect();
    live.insert(name(&revisions.current.metadata));
    live.insert(name(&revisions.update.metadata));
    let history: Vec<&&ControllerRevision> = owned_revisions
        .iter()
        .filter(|r| !live.contains(name(&r.metadata)))
        .collect();
    let limit = usize::try_from(
        spec.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT),
    )
    .unwrap_or(0);
    let excess = history.len().saturating_sub(limit);
    let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
    for revision in &history[..excess] {
        let uid = revision.metadata.uid.as_deref().unwrap_or_default();
        match actions
            .delete_controller_revision(namespace, name(&revision.metadata), uid)
            .await
        {
            Ok(()) | Err(ActionError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Registers the controller's handlers on the shared informers (StatefulSets, Pods,
/// ControllerRevisions) and returns it: `workers` reconcile loops that run until dropped, to be
/// polled once the informers' caches are filled.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
    workers: usize,
) -> impl Future<Output = ()> + use<> {
    let queue = WorkQueue::new();
    let expectations = Arc::new(Expectations::new());
    let stateful_sets = {
        let queue = queue.clone();
        informers.on(move |change| stateful_set_changed(change, &queue))
    };
    let pods = {
        let queue = queue.clone();
        let stateful_sets = stateful_sets.clone();
        let expectations = expectations.clone();
        informers.on_pods(move |change| pod_changed(change, &stateful_sets, &expectations, &queue))
    };
    let revisions = {
        let queue = queue.clone();
        informers.on_namespaced(move |change| revision_changed(change, &queue))
    };
    let controller = Arc::new(StatefulSetController {
        stateful_sets,
        pods,
        revisions,
        actions: crate::actions::KubeActions::new(client),
        expectations,
    });
    crate::runtime::run_workers(controller, queue, workers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{Recorded, RecordingActions};
    use crate::pods::tests::{at, pod};
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetOrdinals, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};

    fn web_labels() -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), "web".to_string())])
    }

    /// The set `web` (service `web`, selector app=web) running `image`.
    fn stateful_set(replicas: i32, image: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-web".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("web".into()),
                selector: LabelSelector {
                    match_labels: Some(web_labels()),
                    match_expressions: None,
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(web_labels()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "web".into(),
                            image: Some(image.into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(1),
                ..StatefulSetStatus::default()
            }),
        }
    }

    fn edit(mut set: StatefulSet, change: impl FnOnce(&mut StatefulSetSpec)) -> StatefulSet {
        change(set.spec.as_mut().unwrap());
        set
    }

    /// `set` with `current` as its status' current revision.
    fn on_revision(mut set: StatefulSet, current: &ControllerRevision) -> StatefulSet {
        let status = set.status.get_or_insert_with(StatefulSetStatus::default);
        status.current_revision = current.metadata.name.clone();
        set
    }

    /// The revision the controller makes of `image`'s template, numbered `number`, as cached.
    fn revision(image: &str, number: i64) -> ControllerRevision {
        let set = stateful_set(1, image);
        let spec = spec(&set);
        let mut revision = new_revision(
            &set,
            spec.template.metadata.as_ref().unwrap().labels.as_ref(),
            template_patch(&spec.template),
            number,
            Some(0),
        );
        revision.metadata.uid = Some(format!("uid-{}", name(&revision.metadata)));
        revision
    }

    fn rev_name(revision: &ControllerRevision) -> &str {
        name(&revision.metadata)
    }

    #[derive(Clone, Copy)]
    enum State {
        Pending,
        Running,
        Ready,
        Failed,
        Terminating,
    }
    use State::*;

    /// The pod at `ordinal` of `set` created from `revision`, in `state`.
    fn sts_pod(
        set: &StatefulSet,
        revision: &ControllerRevision,
        ordinal: i32,
        state: State,
    ) -> Pod {
        let template = template_of(revision).unwrap();
        let mut created = new_stateful_pod(set, &template, rev_name(revision), ordinal);
        let (phase, ready) = match state {
            Pending => ("Pending", false),
            Running => ("Running", false),
            Ready | Terminating => ("Running", true),
            Failed => ("Failed", false),
        };
        let base = pod(name(&created.metadata), "n1", phase, ready.then_some(0));
        created.metadata.uid = base.metadata.uid;
        created.metadata.creation_timestamp = base.metadata.creation_timestamp;
        if matches!(state, Terminating) {
            created.metadata.deletion_timestamp = Some(Time(at(500)));
        }
        created.status = base.status;
        created
    }

    async fn sync_with(
        set: &StatefulSet,
        pods: &[Pod],
        revisions: &[ControllerRevision],
        actions: &RecordingActions,
        expectations: &Expectations,
    ) -> Result<Action, SyncError> {
        let pods: Vec<&Pod> = pods.iter().collect();
        let revisions: Vec<&ControllerRevision> = revisions.iter().collect();
        sync_stateful_set(set, &pods, &revisions, actions, expectations, at(1000)).await
    }

    async fn sync(
        set: &StatefulSet,
        pods: &[Pod],
        revisions: &[ControllerRevision],
        actions: &RecordingActions,
    ) -> Result<Action, SyncError> {
        sync_with(set, pods, revisions, actions, &Expectations::new()).await
    }

    /// The pod creations and deletions among the actions.
    fn pod_actions(actions: &RecordingActions) -> Vec<String> {
        actions
            .summaries()
            .into_iter()
            .filter(|s| s.starts_with("create pod") || s.starts_with("delete pod"))
            .collect()
    }

    fn last_status(actions: &RecordingActions) -> StatefulSetStatus {
        actions
            .recorded()
            .into_iter()
            .rev()
            .find_map(|r| match r {
                Recorded::UpdateStatefulSetStatus(set) => set.status,
                _ => None,
            })
            .expect("a status was written")
    }

    fn created_pods(actions: &RecordingActions) -> Vec<Pod> {
        actions
            .recorded()
            .into_iter()
            .filter_map(|r| match r {
                Recorded::CreatePod(pod) => Some(pod),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_created_pod_has_the_stable_identity_of_its_ordinal() {
        let set = stateful_set(3, "busybox:1");
        let rev1 = revision("busybox:1", 1);
        let actions = RecordingActions::new();
        sync(&set, &[], &[], &actions).await.unwrap();
        let r1 = rev_name(&rev1);
        assert_eq!(
            actions.summaries(),
            [
                format!("create controllerrevision {r1} revision 1"),
                "create pod web-0".to_string(),
                format!(
                    "update statefulset web status: replicas=0 ready=0 current=0 updated=0 available=0 currentRevision={r1} updateRevision={r1} observedGeneration=1"
                ),
            ]
        );
        assert_eq!(
            actions.events(),
            ["Normal SuccessfulCreate create Pod web-0 in StatefulSet web successful"]
        );
        let pod = &created_pods(&actions)[0];
        assert_eq!(pod.metadata.name.as_deref(), Some("web-0"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(
            pod.metadata.labels,
            Some(BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                (POD_NAME_LABEL.to_string(), "web-0".to_string()),
                (POD_INDEX_LABEL.to_string(), "0".to_string()),
                (CONTROLLER_REVISION_HASH_LABEL.to_string(), r1.to_string()),
            ]))
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        assert_eq!(
            pod.metadata.owner_references,
            Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: "web".into(),
                uid: "uid-web".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }])
        );
    }

    #[tokio::test]
    async fn ordered_ready_creates_the_next_ordinal_only_once_every_lower_one_is_running_and_ready()
    {
        let set = stateful_set(3, "busybox:1");
        let rev1 = revision("busybox:1", 1);
        let set = on_revision(set, &rev1);
        let p = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            ("nothing yet", vec![], vec!["create pod web-0"]),
            ("web-0 pending", vec![p(0, Pending)], vec![]),
            ("web-0 running, not ready", vec![p(0, Running)], vec![]),
            ("web-0 ready", vec![p(0, Ready)], vec!["create pod web-1"]),
            (
                "web-0 and web-1 ready",
                vec![p(0, Ready), p(1, Ready)],
                vec!["create pod web-2"],
            ),
            (
                "web-1 terminating",
                vec![p(0, Ready), p(1, Terminating), p(2, Ready)],
                vec![],
            ),
            (
                "web-1 deleted",
                vec![p(0, Ready), p(2, Ready)],
                vec!["create pod web-1"],
            ),
            (
                "all ready",
                vec![p(0, Ready), p(1, Ready), p(2, Ready)],
                vec![],
            ),
        ];
        for (case, pods, expected) in cases {
            let actions = RecordingActions::new();
            sync(&set, &pods, std::slice::from_ref(&rev1), &actions)
                .await
                .unwrap();
            assert_eq!(pod_actions(&actions), expected, "{case}");
        }
    }

    #[tokio::test]
    async fn min_ready_seconds_hold_the_next_ordinal_and_requeue_when_they_expire() {
        let set = edit(stateful_set(2, "busybox:1"), |s| {
            s.min_ready_seconds = Some(10)
        });
        let rev1 = revision("busybox:1", 1);
        let set = on_revision(set, &rev1);
        let mut web0 = sts_pod(&set, &rev1, 0, Ready);
        web0.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time(at(995)));
        let actions = RecordingActions::new();
        let action = sync(&set, &[web0], &[rev1], &actions).await.unwrap();
        assert_eq!(pod_actions(&actions), Vec::<String>::new());
        assert_eq!(
            action,
            Action::RequeueAfter(std::time::Duration::from_millis(5_001))
        );
    }

    #[tokio::test]
    async fn parallel_creates_and_deletes_every_ordinal_at_once() {
        let rev1 = revision("busybox:1", 1);
        let parallel = |replicas| {
            let set = edit(stateful_set(replicas, "busybox:1"), |s| {
                s.pod_management_policy = Some(PARALLEL.into())
            });
            on_revision(set, &rev1)
        };
        let (three, one) = (parallel(3), parallel(1));
        let p = |ordinal, state| sts_pod(&three, &rev1, ordinal, state);
        let cases: Vec<(&str, &StatefulSet, Vec<Pod>, Vec<&str>)> = vec![
            (
                "create all",
                &three,
                vec![],
                vec!["create pod web-0", "create pod web-1", "create pod web-2"],
            ),
            (
                "create the missing while another is pending",
                &three,
                vec![p(0, Pending)],
                vec!["create pod web-1", "create pod web-2"],
            ),
            (
                "scale down from the highest, unhealthy or not",
                &one,
                vec![p(0, Ready), p(1, Pending), p(2, Ready)],
                vec!["delete pod web-2", "delete pod web-1"],
            ),
        ];
        for (case, set, pods, expected) in cases {
            let actions = RecordingActions::new();
            sync(set, &pods, std::slice::from_ref(&rev1), &actions)
                .await
                .unwrap();
            assert_eq!(pod_actions(&actions), expected, "{case}");
        }
    }

    #[tokio::test]
    async fn ordered_ready_scales_down_from_the_highest_ordinal_one_at_a_time_and_not_while_a_replica_is_unhealthy()
     {
        let rev1 = revision("busybox:1", 1);
        let set = on_revision(stateful_set(1, "busybox:1"), &rev1);
        let p = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            (
                "all healthy",
                vec![p(0, Ready), p(1, Ready), p(2, Ready)],
                vec!["delete pod web-2"],
            ),
            (
                "web-2 still terminating",
                vec![p(0, Ready), p(1, Ready), p(2, Terminating)],
                vec![],
            ),
            (
                "web-2 gone",
                vec![p(0, Ready), p(1, Ready)],
                vec!["delete pod web-1"],
            ),
            (
                "the remaining replica is unhealthy",
                vec![p(0, Running), p(1, Ready), p(2, Ready)],
                vec![],
            ),
            (
                "an unhealthy condemned pod waits for the ones above it",
                vec![p(0, Ready), p(1, Pending), p(2, Terminating)],
                vec![],
            ),
            (
                "the lowest unhealthy condemned pod goes once it is the highest",
                vec![p(0, Ready), p(1, Pending)],
                vec!["delete pod web-1"],
            ),
            (
                "an unhealthy pod waits while a lower one is unhealthy too (the lowest goes first)",
                vec![p(0, Ready), p(1, Pending), p(2, Pending)],
                vec![],
            ),
        ];
        for (case, pods, expected) in cases {
            let actions = RecordingActions::new();
            sync(&set, &pods, std::slice::from_ref(&rev1), &actions)
                .await
                .unwrap();
            assert_eq!(pod_actions(&actions), expected, "{case}");
        }
    }

    #[tokio::test]
    async fn a_failed_pod_is_deleted_and_recreated_under_the_same_name() {
        let rev1 = revision("busybox:1", 1);
        let set = on_revision(stateful_set(2, "busybox:1"), &rev1);
        let p = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let mut failed_terminating = p(0, Failed);
        failed_terminating.metadata.deletion_timestamp = Some(Time(at(900)));
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            (
                "failed",
                vec![p(0, Failed), p(1, Ready)],
                vec!["delete pod web-0"],
            ),
            (
                "being deleted",
                vec![failed_terminating, p(1, Ready)],
                vec![],
            ),
            ("gone", vec![p(1, Ready)], vec!["create pod web-0"]),
        ];
        for (case, pods, expected) in cases {
            let actions = RecordingActions::new();
            sync(&set, &pods, std::slice::from_ref(&rev1), &actions)
                .await
                .unwrap();
            assert_eq!(pod_actions(&actions), expected, "{case}");
        }
        let actions = RecordingActions::new();
        let pods = [p(0, Failed)];
        sync(&set, &pods, std::slice::from_ref(&rev1), &actions)
            .await
            .unwrap();
        assert_eq!(
            actions.events(),
            [
                "Warning RecreatingFailedPod StatefulSet default/web is recreating failed Pod web-0",
                "Normal SuccessfulDelete delete Pod web-0 in StatefulSet web successful",
            ]
        );
    }

    #[tokio::test]
    async fn a_template_change_replaces_pods_from_the_highest_ordinal_down_one_at_a_time() {
        let (rev1, rev2) = (revision("busybox:1", 1), revision("busybox:2", 2));
        let set = on_revision(stateful_set(3, "busybox:2"), &rev1);
        let old = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let new = |ordinal, state| sts_pod(&set, &rev2, ordinal, state);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            (
                "all old",
                vec![old(0, Ready), old(1, Ready), old(2, Ready)],
                vec!["delete pod web-2"],
            ),
            (
                "web-2 terminating",
                vec![old(0, Ready), old(1, Ready), old(2, Terminating)],
                vec![],
            ),
            (
                "web-2 gone",
                vec![old(0, Ready), old(1, Ready)],
                vec!["create pod web-2"],
            ),
            (
                "new web-2 not ready yet",
                vec![old(0, Ready), old(1, Ready), new(2, Running)],
                vec![],
            ),
            (
                "new web-2 ready",
                vec![old(0, Ready), old(1, Ready), new(2, Ready)],
                vec!["delete pod web-1"],
            ),
            (
                "new web-1 ready",
                vec![old(0, Ready), new(1, Ready), new(2, Ready)],
                vec!["delete pod web-0"],
            ),
            (
                "all new",
                vec![new(0, Ready), new(1, Ready), new(2, Ready)],
                vec![],
            ),
        ];
        for (case, pods, expected) in cases {
            let actions = RecordingActions::new();
            sync(&set, &pods, &[rev1.clone(), rev2.clone()], &actions)
                .await
                .unwrap();
            assert_eq!(pod_actions(&actions), expected, "{case}");
            for pod in created_pods(&actions) {
                assert_eq!(pod_revision(&pod), Some(rev_name(&rev2)), "{case}");
            }
        }
    }

    #[tokio::test]
    async fn the_rollout_status_tracks_the_replacement_and_completes_when_every_pod_is_updated_and_ready()
     {
        let (rev1, rev2) = (revision("busybox:1", 1), revision("busybox:2", 2));
        let (r1, r2) = (rev_name(&rev1), rev_name(&rev2));
        let set = on_revision(stateful_set(2, "busybox:2"), &rev1);
        let old = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let new = |ordinal, state| sts_pod(&set, &rev2, ordinal, state);
        let cases = [
            (
                "the update starts",
                vec![old(0, Ready), old(1, Ready)],
                format!("replicas=2 ready=2 current=1 updated=0 available=2 currentRevision={r1}"),
            ),
            (
                "one replaced, not ready",
                vec![old(0, Ready), new(1, Running)],
                format!("replicas=2 ready=1 current=1 updated=1 available=1 currentRevision={r1}"),
            ),
            (
                "all updated, one not ready",
                vec![new(0, Running), new(1, Ready)],
                format!("replicas=2 ready=1 current=0 updated=2 available=1 currentRevision={r1}"),
            ),
            (
                "all updated and ready",
                vec![new(0, Ready), new(1, Ready)],
                format!("replicas=2 ready=2 current=2 updated=2 available=2 currentRevision={r2}"),
            ),
        ];
        for (case, pods, expected) in cases {
            let actions = RecordingActions::new();
            sync(&set, &pods, &[rev1.clone(), rev2.clone()], &actions)
                .await
                .unwrap();
            let summary = actions.summaries().pop().unwrap();
            assert_eq!(
                summary,
                format!(
                    "update statefulset web status: {expected} updateRevision={r2} observedGeneration=1"
                ),
                "{case}"
            );
        }
    }

    #[tokio::test]
    async fn a_partition_keeps_the_ordinals_below_it_on_the_current_revision() {
        let (rev1, rev2) = (revision("busybox:1", 1), revision("busybox:2", 2));
        let set = edit(stateful_set(3, "busybox:2"), |s| {
            s.update_strategy = Some(StatefulSetUpdateStrategy {
                type_: Some(ROLLING_UPDATE.into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(2),
                    max_unavailable: None,
                }),
            })
        });
        let set = on_revision(set, &rev1);
        let old = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let new = |ordinal, state| sts_pod(&set, &rev2, ordinal, state);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>, &ControllerRevision)> = vec![
            (
                "above the partition",
                vec![old(0, Ready), old(1, Ready), old(2, Ready)],
                vec!["delete pod web-2"],
                &rev2,
            ),
            (
                "below the partition",
                vec![old(0, Ready), old(1, Ready), new(2, Ready)],
                vec![],
                &rev2,
            ),
            (
                "a deleted pod below the partition comes back on the current revision",
                vec![old(1, Ready), new(2, Ready)],
                vec!["create pod web-0"],
                &rev1,
            ),
        ];
        for (case, pods, expected, created_at) in cases {
            let actions = RecordingActions::new();
            sync(&set, &pods, &[rev1.clone(), rev2.clone()], &actions)
                .await
                .unwrap();
            assert_eq!(pod_actions(&actions), expected, "{case}");
            for pod in created_pods(&actions) {
                assert_eq!(pod_revision(&pod), Some(rev_name(created_at)), "{case}");
                let image = pod.spec.unwrap().containers[0].image.clone();
                assert_eq!(image.as_deref(), Some("busybox:1"), "{case}");
            }
        }
    }

    #[tokio::test]
    async fn on_delete_replaces_only_the_pods_the_user_deleted() {
        let (rev1, rev2) = (revision("busybox:1", 1), revision("busybox:2", 2));
        let set = edit(stateful_set(2, "busybox:2"), |s| {
            s.update_strategy = Some(StatefulSetUpdateStrategy {
                type_: Some(ON_DELETE.into()),
                rolling_update: None,
            })
        });
        let set = on_revision(set, &rev1);
        let old = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let revisions = [rev1.clone(), rev2.clone()];

        let actions = RecordingActions::new();
        sync(&set, &[old(0, Ready), old(1, Ready)], &revisions, &actions)
            .await
            .unwrap();
        assert_eq!(pod_actions(&actions), Vec::<String>::new());

        let actions = RecordingActions::new();
        sync(&set, &[old(0, Ready)], &revisions, &actions)
            .await
            .unwrap();
        assert_eq!(pod_actions(&actions), ["create pod web-1"]);
        assert_eq!(
            pod_revision(&created_pods(&actions)[0]),
            Some(rev_name(&rev2))
        );
        assert_eq!(
            last_status(&actions).current_revision.as_deref(),
            Some(rev_name(&rev1)),
            "OnDelete never completes a rollout by itself"
        );
    }

    #[tokio::test]
    async fn revisions_are_created_for_new_templates_and_reused_for_old_ones() {
        let (rev1, rev2) = (revision("busybox:1", 1), revision("busybox:2", 2));
        let (r1, r2) = (rev_name(&rev1), rev_name(&rev2));
        let cases = [
            (
                "a new template",
                "busybox:2",
                vec![rev1.clone()],
                format!("create controllerrevision {r2} revision 2"),
            ),
            (
                "an earlier template (rollout undo)",
                "busybox:1",
                vec![rev1.clone(), rev2.clone()],
                format!("update controllerrevision {r1} to revision 3"),
            ),
        ];
        for (case, image, revisions, expected) in cases {
            let set = on_revision(stateful_set(0, image), &revisions[0]);
            let actions = RecordingActions::new();
            sync(&set, &[], &revisions, &actions).await.unwrap();
            assert_eq!(actions.summaries()[0], expected, "{case}");
        }

        // The newest revision already records the template: nothing to write.
        let set = on_revision(stateful_set(0, "busybox:2"), &rev2);
        let actions = RecordingActions::new();
        sync(&set, &[], &[rev1.clone(), rev2.clone()], &actions)
            .await
            .unwrap();
        assert!(
            !actions
                .summaries()
                .iter()
                .any(|s| s.contains("controllerrevision")),
            "{:?}",
            actions.summaries()
        );
    }

    #[tokio::test]
    async fn a_revision_name_taken_by_other_data_raises_the_collision_count() {
        let rev1 = revision("busybox:1", 1);
        let set = on_revision(stateful_set(0, "busybox:2"), &rev1);
        // Someone else's revision holds the name the new template hashes to.
        let mut squatter = revision("busybox:2", 1);
        squatter.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
            serde_json::json!({"other": true}),
        ));
        squatter.metadata.owner_references = None;
        let actions = RecordingActions::new();
        actions.fail(
            "create controllerrevision",
            ActionError::AlreadyExists("taken".into()),
        );
        sync(&set, &[], &[rev1.clone(), squatter.clone()], &actions)
            .await
            .unwrap();
        let probed = {
            let spec = spec(&set);
            let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref();
            new_revision(&set, labels, template_patch(&spec.template), 2, Some(1))
        };
        assert_eq!(
            actions.summaries()[..2],
            [
                format!(
                    "create controllerrevision {} revision 2",
                    rev_name(&squatter)
                ),
                format!("create controllerrevision {} revision 2", rev_name(&probed)),
            ]
        );
        let status = last_status(&actions);
        assert_eq!(status.collision_count, Some(1));
        assert_eq!(status.update_revision.as_deref(), Some(rev_name(&probed)));
    }

    #[tokio::test]
    async fn a_taken_name_the_cache_does_not_show_yet_is_retried_later() {
        let set = stateful_set(1, "busybox:1");
        let actions = RecordingActions::new();
        actions.fail(
            "create controllerrevision",
            ActionError::AlreadyExists("taken".into()),
        );
        let error = sync(&set, &[], &[], &actions).await.unwrap_err();
        assert!(matches!(error, SyncError::Revisions { .. }), "{error}");
        assert_eq!(pod_actions(&actions), Vec::<String>::new());
    }

    #[tokio::test]
    async fn history_beyond_the_limit_is_deleted_oldest_first_sparing_live_revisions() {
        let revisions: Vec<ControllerRevision> = (1..=5)
            .map(|n| revision(&format!("busybox:{n}"), n))
            .collect();
        let names: Vec<&str> = revisions.iter().map(rev_name).collect();
        // Current revision 3, update revision 5, one pod still on revision 1.
        let set = edit(stateful_set(2, "busybox:5"), |s| {
            s.revision_history_limit = Some(1)
        });
        let set = on_revision(set, &revisions[2]);
        let pods = [
            sts_pod(&set, &revisions[0], 0, Pending),
            sts_pod(&set, &revisions[4], 1, Pending),
        ];
        let actions = RecordingActions::new();
        sync(&set, &pods, &revisions, &actions).await.unwrap();
        let deleted: Vec<String> = actions
            .summaries()
            .into_iter()
            .filter(|s| s.starts_with("delete controllerrevision"))
            .collect();
        assert_eq!(
            deleted,
            [format!("delete controllerrevision {}", names[1])],
            "revisions 2 and 4 are history; the limit keeps one"
        );
    }

    #[tokio::test]
    async fn orphans_of_the_set_are_adopted_and_pods_that_stopped_matching_are_released() {
        let rev1 = revision("busybox:1", 1);
        let set = on_revision(stateful_set(2, "busybox:1"), &rev1);
        let orphan = {
            let mut pod = sts_pod(&set, &rev1, 1, Ready);
            pod.metadata.owner_references = None;
            pod
        };
        let relabelled = {
            let mut pod = sts_pod(&set, &rev1, 0, Ready);
            pod.metadata.labels = Some(BTreeMap::from([("app".into(), "debug".into())]));
            pod
        };
        let not_a_member = {
            let mut pod = sts_pod(&set, &rev1, 0, Ready);
            pod.metadata.name = Some("other-0".into());
            pod.metadata.uid = Some("uid-other-0".into());
            pod
        };
        let orphan_not_a_member = {
            let mut pod = not_a_member.clone();
            pod.metadata.name = Some("web-x".into());
            pod.metadata.owner_references = None;
            pod
        };
        let actions = RecordingActions::new();
        sync(
            &set,
            &[orphan, relabelled, not_a_member, orphan_not_a_member],
            &[rev1],
            &actions,
        )
        .await
        .unwrap();
        assert_eq!(
            actions.summaries()[..3],
            [
                "set owners of pod web-1 to [StatefulSet/web]",
                "set owners of pod web-0 to []",
                "set owners of pod other-0 to []",
            ]
        );
        assert_eq!(pod_actions(&actions), ["create pod web-0"]);
    }

    #[tokio::test]
    async fn ordinals_start_at_spec_ordinals_start() {
        let rev1 = revision("busybox:1", 1);
        let set = edit(stateful_set(2, "busybox:1"), |s| {
            s.ordinals = Some(StatefulSetOrdinals { start: Some(3) })
        });
        let set = on_revision(set, &rev1);
        let p = |ordinal, state| sts_pod(&set, &rev1, ordinal, state);
        let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
            ("nothing yet", vec![], vec!["create pod web-3"]),
            ("web-3 ready", vec![p(3, Ready)], vec!["create pod web-4"]),
            (
                "below the start is out of range",
                vec![p(0, Ready), p(3, Ready), p(4, Ready)],
                vec!["delete pod web-0"],
            ),
        ];
        for (case, pods, expected) in cases {
            let actions = RecordingActions::new();
            sync(&set, &pods, std::slice::from_ref(&rev1), &actions)
                .await
                .unwrap();
            assert_eq!(pod_actions(&actions), expected, "{case}");
        }
    }

    #[tokio::test]
    async fn a_slow_watch_never_makes_it_create_or_delete_twice() {
        let rev1 = revision("busybox:1", 1);
        let set = edit(stateful_set(2, "busybox:1"), |s| {
            s.pod_management_policy = Some(PARALLEL.into())
        });
        let set = on_revision(set, &rev1);
        let actions = RecordingActions::new();
        let expectations = Expectations::new();
        let revisions = std::slice::from_ref(&rev1);
        sync_with(&set, &[], revisions, &actions, &expectations)
            .await
            .unwrap();
        sync_with(&set, &[], revisions, &actions, &expectations)
            .await
            .unwrap();
        assert_eq!(
            pod_actions(&actions),
            ["create pod web-0", "create pod web-1"]
        );

        let shown = [
            sts_pod(&set, &rev1, 0, Ready),
            sts_pod(&set, &rev1, 1, Ready),
        ];
        let scaled = edit(set.clone(), |s| s.replicas = Some(1));
        let actions = RecordingActions::new();
        sync_with(&scaled, &shown, revisions, &actions, &expectations)
            .await
            .unwrap();
        sync_with(&scaled, &shown, revisions, &actions, &expectations)
            .await
            .unwrap();
        assert_eq!(pod_actions(&actions), ["delete pod web-1"]);
    }

    #[tokio::test]
    async fn a_deleting_stateful_set_only_writes_its_status() {
        let rev1 = revision("busybox:1", 1);
        let mut set = on_revision(stateful_set(3, "busybox:1"), &rev1);
        set.metadata.deletion_timestamp = Some(Time(at(0)));
        let actions = RecordingActions::new();
        sync(&set, &[], &[rev1], &actions).await.unwrap();
        assert_eq!(pod_actions(&actions), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_failed_create_is_reported_as_an_event_and_retried() {
        let rev1 = revision("busybox:1", 1);
        let set = on_revision(stateful_set(1, "busybox:1"), &rev1);
        let actions = RecordingActions::new();
        actions.fail("create pod", ActionError::Failed("exceeded quota".into()));
        let error = sync(&set, &[], &[rev1], &actions).await.unwrap_err();
        assert!(matches!(error, SyncError::ManagePods { .. }), "{error}");
        assert_eq!(
            actions.events(),
            [
                "Warning FailedCreate create Pod web-0 in StatefulSet web failed error: exceeded quota"
            ]
        );
        assert!(
            actions
                .summaries()
                .last()
                .unwrap()
                .starts_with("update statefulset web status"),
            "the status is written even when pods could not be created"
        );
    }

    #[tokio::test]
    async fn an_unchanged_status_is_not_written() {
        let rev1 = revision("busybox:1", 1);
        let r1 = rev_name(&rev1).to_string();
        let mut set = on_revision(stateful_set(1, "busybox:1"), &rev1);
        set.status = Some(StatefulSetStatus {
            observed_generation: Some(1),
            replicas: 1,
            ready_replicas: Some(1),
            available_replicas: Some(1),
            current_replicas: Some(1),
            updated_replicas: Some(1),
            current_revision: Some(r1.clone()),
            update_revision: Some(r1),
            collision_count: Some(0),
            conditions: None,
        });
        let pods = [sts_pod(&set, &rev1, 0, Ready)];
        let actions = RecordingActions::new();
        sync(&set, &pods, &[rev1], &actions).await.unwrap();
        assert_eq!(actions.summaries(), Vec::<String>::new());
    }

    #[test]
    fn only_canonical_ordinal_names_are_members_of_the_set() {
        let cases = [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-01", None),
            ("web-", None),
            ("web-x", None),
            ("web-0-1", None),
            ("webby-1", None),
            ("web", None),
            ("web--1", None),
        ];
        for (pod_name, expected) in cases {
            assert_eq!(ordinal_of("web", pod_name), expected, "{pod_name}");
        }
    }

    #[test]
    fn pod_and_revision_events_enqueue_the_controlling_set() {
        let queue = WorkQueue::new();
        let expectations = Expectations::new();
        let mut writer = kube::runtime::reflector::store::Writer::<StatefulSet>::default();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(stateful_set(
            1,
            "busybox:1",
        )));
        let store = writer.as_reader();
        let rev1 = revision("busybox:1", 1);
        let set = stateful_set(1, "busybox:1");
        let mut orphan = sts_pod(&set, &rev1, 0, Ready);
        orphan.metadata.owner_references = None;
        pod_changed(Change::Applied(&orphan), &store, &expectations, &queue);
        assert_eq!(queue.len(), 1, "the orphan's adopter");
        revision_changed(Change::Applied(&rev1), &queue);
        assert_eq!(queue.len(), 1, "the same key, queued once");
    }
}
