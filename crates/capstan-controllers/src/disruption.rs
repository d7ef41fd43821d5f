//! The disruption controller, as Kubernetes' `DisruptionController`: it keeps the `status` of
//! every PodDisruptionBudget up to date, so that the eviction API (`pods/<name>/eviction`, see
//! the apiserver's `eviction.rs`) can decide from `status.disruptionsAllowed` alone.
//!
//! For one budget, from a snapshot of its namespace:
//! - the pods it protects are those its selector matches (a missing, empty or invalid selector
//!   protects nothing, as the eviction API reads it);
//! - `expectedPods` is the number of those pods when `minAvailable` is an integer, and otherwise
//!   (a percentage, or `maxUnavailable`) the summed `spec.replicas` of their controllers
//!   (ReplicaSet, the Deployment owning a ReplicaSet, StatefulSet) — the count the workloads are
//!   converging to, not what happens to exist now;
//! - `desiredHealthy` is `minAvailable`, or `expectedPods − maxUnavailable` (at least 0);
//!   percentages round up, as `intstr.GetScaledValueFromIntOrPercent(…, true)`;
//! - `currentHealthy` counts the Ready pods that are not terminating and not listed in
//!   `status.disruptedPods`: the eviction API records a pod there when it takes an allowance,
//!   so that the pod is not counted healthy again before its deletion is seen. An entry whose
//!   pod is gone or terminating is dropped; one older than [`DELETION_TIMEOUT`] is dropped too
//!   (the deletion evidently failed), and the budget is requeued exactly when the next entry
//!   expires;
//! - `disruptionsAllowed` is `currentHealthy − desiredHealthy`, never negative, and 0 while no
//!   pod is expected (a budget that matches nothing yet must not allow disruptions the moment
//!   its first pods appear);
//! - the `DisruptionAllowed` condition says the same (`SufficientPods` / `InsufficientPods`).
//!
//! The status is written only when it changes, guarded by the budget's `resourceVersion`: an
//! eviction that took an allowance meanwhile makes the write conflict, and the retry recomputes
//! from the budget the eviction wrote. When `expectedPods` cannot be computed (a pod's controller
//! is not in the caches yet, an unparsable percentage), the controller fails safe like
//! Kubernetes' `failSafe`: it writes `disruptionsAllowed: 0` with the condition `False/SyncFailed`
//! and retries with backoff.
//!
//! ReplicationControllers are not served by capstan, so pods controlled by one count as having
//! no known controller.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::informers::SharedInformers;
use crate::namespace_index::NamespacedStore;
use crate::ownership::{controller_of, selector_of, selects};
use crate::pod_cache::PodCache;
use crate::pods::is_ready;
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The controller's name, the `source.component` of its events.
pub const CONTROLLER_NAME: &str = "disruption-controller";
/// How long a pod listed in `status.disruptedPods` is expected to take to be deleted
/// (Kubernetes' `DeletionTimeout`); after that it counts again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// The condition the controller maintains (`policy.DisruptionAllowedCondition`).
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// Reason of `DisruptionAllowed=True`.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// Reason of `DisruptionAllowed=False` when too few pods are healthy.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// Reason of `DisruptionAllowed=False` when the status could not be computed.
pub const SYNC_FAILED: &str = "SyncFailed";

/// Why a sync failed. The key is retried with backoff; each variant says whether that helps.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The expected pod count could not be computed; the budget was set to allow no disruption.
    /// Retrying helps when a controller missing from the caches arrives; an invalid percentage
    /// stays invalid until the budget is edited (which requeues it anyway).
    #[error("computing expected pods of {budget}: {message}")]
    ExpectedPods { budget: String, message: String },
    /// Writing the status failed (usually a conflict with an eviction: retrying helps).
    #[error("updating status of {budget}: {source}")]
    UpdateStatus { budget: String, source: ActionError },
}

/// The workload controllers of one namespace, from which the scale of pods' controllers is read.
#[derive(Default)]
pub struct Workloads {
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    pub deployments: Vec<Arc<Deployment>>,
    pub stateful_sets: Vec<Arc<StatefulSet>>,
}

fn find<'a, K: Resource>(objects: &'a [Arc<K>], reference: &OwnerReference) -> Option<&'a K> {
    objects
        .iter()
        .map(|object| &**object)
        .find(|object| object.meta().name.as_deref() == Some(reference.name.as_str()))
        // A controller recreated under the same name is not the pod's controller.
        .filter(|object| object.meta().uid.as_deref() == Some(reference.uid.as_str()))
}

fn is_apps(reference: &OwnerReference, kind: &str) -> bool {
    reference.kind == kind
        && (reference.api_version.starts_with("apps/")
            || reference.api_version.starts_with("extensions/"))
}

impl Workloads {
    /// The uid and desired scale of the controller of a pod (Kubernetes' `finders`): the
    /// Deployment for a ReplicaSet it controls, else the ReplicaSet or StatefulSet itself.
    /// `None` when the controller is not (yet) cached or not a kind with a scale.
    fn scale_of(&self, reference: &OwnerReference) -> Option<(String, i32)> {
        if is_apps(reference, "ReplicaSet") {
            let replica_set = find(&self.replica_sets, reference)?;
            return match controller_of(&replica_set.metadata) {
                Some(owner) if owner.kind == "Deployment" => {
                    let deployment = find(&self.deployments, owner)?;
                    let replicas = deployment.spec.as_ref().and_then(|s| s.replicas);
                    Some((owner.uid.clone(), replicas.unwrap_or(1)))
                }
                _ => {
                    let replicas = replica_set.spec.as_ref().and_then(|s| s.replicas);
                    Some((reference.uid.clone(), replicas.unwrap_or(1)))
                }
            };
        }
        if is_apps(reference, "StatefulSet") {
            let stateful_set = find(&self.stateful_sets, reference)?;
            let replicas = stateful_set.spec.as_ref().and_then(|s| s.replicas);
            return Some((reference.uid.clone(), replicas.unwrap_or(1)));
        }
        None
    }
}

/// The DisruptionController: its caches and its effects.
pub struct DisruptionController<A> {
    pub budgets: Store<PodDisruptionBudget>,
    pub pods: PodCache,
    pub replica_sets: NamespacedStore<ReplicaSet>,
    pub deployments: NamespacedStore<Deployment>,
    pub stateful_sets: NamespacedStore<StatefulSet>,
    pub actions: A,
}

impl<A: Actions> Reconciler for DisruptionController<A> {
    type Error = SyncError;

    fn name(&self) -> &'static str {
        CONTROLLER_NAME
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(budget) = self.budgets.get(&key.object_ref()) else {
            return Ok(Action::AwaitChange);
        };
        let pods = self.pods.in_namespace(&key.namespace);
        let pods: Vec<&Pod> = pods.iter().map(|pod| &**pod).collect();
        let workloads = Workloads {
            replica_sets: self.replica_sets.in_namespace(&key.namespace),
            deployments: self.deployments.in_namespace(&key.namespace),
            stateful_sets: self.stateful_sets.in_namespace(&key.namespace),
        };
        sync_budget(&budget, &pods, &workloads, &self.actions, Timestamp::now()).await
    }
}

/// Event handler for budgets: every change recomputes the budget.
pub fn budget_changed(change: Change<'_, PodDisruptionBudget>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// Event handler for pods: recomputes every budget of the pod's namespace that selects it (a
/// pod becoming ready or unready, starting to terminate, or going away changes their counts).
pub fn pod_changed(
    change: Change<'_, Pod>,
    budgets: &Store<PodDisruptionBudget>,
    queue: &WorkQueue<ObjectKey>,
) {
    let pod = change.object();
    for budget in budgets.state() {
        if budget.metadata.namespace == pod.metadata.namespace && budget_selects(&budget, pod) {
            queue.add(ObjectKey::of(&*budget));
        }
    }
}

/// Does `budget` protect `pod`? As the eviction API decides it: a missing, empty or invalid
/// selector protects nothing.
pub fn budget_selects(budget: &PodDisruptionBudget, pod: &Pod) -> bool {
    let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    match selector_of(Some(selector)) {
        Ok(selector) => !selector.is_empty() && selects(&selector, &pod.metadata),
        Err(_) => false,
    }
}

/// `getExpectedScale`: the summed scale of the pods' controllers, each counted once. Pods
/// without a controller are returned by name (they cannot be accounted for).
fn expected_scale(pods: &[&Pod], workloads: &Workloads) -> Result<(i32, Vec<String>), String> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(reference) = controller_of(&pod.metadata) else {
            unmanaged.push(pod.metadata.name.clone().unwrap_or_default());
            continue;
        };
        if scales.contains_key(&reference.uid) {
            continue;
        }
        let (uid, scale) = workloads.scale_of(reference).ok_or_else(|| {
            format!(
                "found no controllers for pod {:?}",
                pod.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
        // Key by the pod's controller too, so its sibling pods skip the lookup.
        scales.insert(reference.uid.clone(), 0);
        scales.insert(uid, scale);
    }
    Ok((scales.values().sum(), unmanaged))
}

/// `getExpectedPodCount`: (expectedPods, desiredHealthy, unmanaged pods).
fn expected_and_desired(
    budget: &PodDisruptionBudget,
    pods: &[&Pod],
    workloads: &Workloads,
) -> Result<(i32, i32, Vec<String>), String> {
    let spec = budget.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale(pods, workloads)?;
        let max_unavailable = crate::intstr::scaled_value(max_unavailable, expected, true)?;
        return Ok((expected, (expected - max_unavailable).max(0), unmanaged));
    }
    match &spec.min_available {
        Some(IntOrString::Int(min_available)) => {
            Ok((pods.len() as i32, *min_available, Vec::new()))
        }
        Some(percentage) => {
            let (expected, unmanaged) = expected_scale(pods, workloads)?;
            Ok((
                expected,
                crate::intstr::scaled_value(percentage, expected, true)?,
                unmanaged,
            ))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// `buildDisruptedPodMap`: the entries of `status.disruptedPods` still pending, and when the
/// first of them expires. Entries of pods gone or terminating are dropped; expired ones too.
fn pending_disruptions(
    budget: &PodDisruptionBudget,
    pods: &[&Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Vec<String>, Option<Timestamp>) {
    let recorded = budget
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.as_ref());
    let mut pending = BTreeMap::new();
    let mut expired = Vec::new();
    let mut recheck: Option<Timestamp> = None;
    let timeout = SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or(SignedDuration::MAX);
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(disrupted_at) = recorded.and_then(|r| r.get(&name)) else {
            continue;
        };
        let expected_deletion = disrupted_at
            .0
            .checked_add(timeout)
            .unwrap_or(Timestamp::MAX);
        if expected_deletion < now {
            expired.push(name);
            continue;
        }
        recheck = Some(recheck.map_or(expected_deletion, |t| t.min(expected_deletion)));
        pending.insert(name, disrupted_at.clone());
    }
    (pending, expired, recheck)
}

/// `meta.SetStatusCondition`: replaces the condition of the same type, keeping its transition
/// time unless its status changes.
fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}

fn disruption_allowed(
    status: &str,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation,
        last_transition_time: Time(now),
    }
}

/// The computed part of a budget's status; conditions are derived from it.
#[derive(Debug, Clone, PartialEq)]
struct Computed {
    expected_pods: i32,
    desired_healthy: i32,
    current_healthy: i32,
    disruptions_allowed: i32,
    disrupted_pods: BTreeMap<String, Time>,
}

/// `updatePdbStatus`: is the budget's status already exactly this (`ConditionsAreUpToDate`
/// included)?
fn status_is_current(budget: &PodDisruptionBudget, computed: &Computed) -> bool {
    let Some(status) = budget.status.as_ref() else {
        return false;
    };
    let generation = budget.metadata.generation;
    let condition_current = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
        .is_some_and(|c| {
            c.observed_generation == status.observed_generation
                && (c.status == "True") == (status.disruptions_allowed > 0)
        });
    status.expected_pods == computed.expected_pods
        && status.desired_healthy == computed.desired_healthy
        && status.current_healthy == computed.current_healthy
        && status.disruptions_allowed == computed.disruptions_allowed
        // Absent and empty are the same map.
        && status.disrupted_pods.clone().unwrap_or_default() == computed.disrupted_pods
        && status.observed_generation == generation
        && condition_current
}

fn budget_key(budget: &PodDisruptionBudget) -> String {
    ObjectKey::of(budget).to_string()
}

/// One sync of one budget from a snapshot of its namespace: compute the status, write it if it
/// changed, and ask to look again when the first pending disruption expires.
pub async fn sync_budget<A: Actions>(
    budget: &PodDisruptionBudget,
    namespace_pods: &[&Pod],
    workloads: &Workloads,
    actions: &A,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let pods: Vec<&Pod> = namespace_pods
        .iter()
        .copied()
        .filter(|pod| budget_selects(budget, pod))
        .collect();
    if pods.is_empty() {
        actions.record_event(EventRecord::normal(
            CONTROLLER_NAME,
            budget,
            "NoPods",
            "No matching pods found".into(),
        ));
    }
    let (expected_pods, desired_healthy, unmanaged) =
        match expected_and_desired(budget, &pods, workloads) {
            Ok(counts) => counts,
            Err(message) => return fail_safe(budget, message, actions, now).await,
        };
    if !unmanaged.is_empty() {
        actions.record_event(EventRecord::warning(
            CONTROLLER_NAME,
            budget,
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget were found to be unmanaged: {}. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                unmanaged.join(", ")
            ),
        ));
    }
    let (disrupted_pods, expired, recheck) = pending_disruptions(budget, &pods, now);
    for pod in pods
        .iter()
        .filter(|pod| expired.contains(pod.metadata.name.as_ref().unwrap_or(&String::new())))
    {
        actions.record_event(EventRecord::warning(
            CONTROLLER_NAME,
            *pod,
            "NotDeleted",
            format!(
                "Pod was expected by PDB {} to be deleted but it wasn't",
                budget_key(budget)
            ),
        ));
    }
    let current_healthy = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| !disrupted_pods.contains_key(pod.metadata.name.as_deref().unwrap_or("")))
        .filter(|pod| is_ready(pod))
        .count() as i32;
    let disruptions_allowed = if expected_pods <= 0 {
        0
    } else {
        (current_healthy - desired_healthy).max(0)
    };
    let computed = Computed {
        expected_pods,
        desired_healthy,
        current_healthy,
        disruptions_allowed,
        disrupted_pods,
    };
    let action = match recheck {
        // Round up so that the requeued sync sees the entry expired, not a nanosecond short.
        Some(at) => Action::RequeueAfter(
            Duration::try_from(at.duration_since(now))
                .unwrap_or_default()
                .saturating_add(Duration::from_nanos(1)),
        ),
        None => Action::AwaitChange,
    };
    if status_is_current(budget, &computed) {
        return Ok(action);
    }

    let generation = budget.metadata.generation;
    let mut conditions = budget
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let condition = if disruptions_allowed > 0 {
        disruption_allowed("True", SUFFICIENT_PODS, String::new(), generation, now)
    } else {
        disruption_allowed("False", INSUFFICIENT_PODS, String::new(), generation, now)
    };
    set_condition(&mut conditions, condition);
    let mut updated = budget.clone();
    updated.status = Some(PodDisruptionBudgetStatus {
        conditions: Some(conditions),
        current_healthy,
        desired_healthy,
        disrupted_pods: (!computed.disrupted_pods.is_empty()).then_some(computed.disrupted_pods),
        disruptions_allowed,
        expected_pods,
        observed_generation: generation,
    });
    actions
        .update_pod_disruption_budget_status(&updated)
        .await
        .map_err(|source| SyncError::UpdateStatus {
            budget: budget_key(budget),
            source,
        })?;
    Ok(action)
}

/// `failSafe`: a budget whose status cannot be computed allows no disruption until it can.
async fn fail_safe<A: Actions>(
    budget: &PodDisruptionBudget,
    message: String,
    actions: &A,
    now: Timestamp,
) -> Result<Action, SyncError> {
    actions.record_event(EventRecord::warning(
        CONTROLLER_NAME,
        budget,
        "CalculateExpectedPodCountFailed",
        format!("Failed to calculate the number of expected pods: {message}"),
    ));
    let mut status = budget.status.clone().unwrap_or_default();
    let already_safe = status.disruptions_allowed == 0
        && status.conditions.iter().flatten().any(|c| {
            c.type_ == DISRUPTION_ALLOWED && c.reason == SYNC_FAILED && c.message == message
        });
    if !already_safe {
        status.disruptions_allowed = 0;
        let observed_generation = status.observed_generation;
        set_condition(
            status.conditions.get_or_insert_with(Vec::new),
            disruption_allowed(
                "False",
                SYNC_FAILED,
                message.clone(),
                observed_generation,
                now,
            ),
        );
        let mut updated = budget.clone();
        updated.status = Some(status);
        actions
            .update_pod_disruption_budget_status(&updated)
            .await
            .map_err(|source| SyncError::UpdateStatus {
                budget: budget_key(budget),
                source,
            })?;
    }
    Err(SyncError::ExpectedPods {
        budget: budget_key(budget),
        message,
    })
}

/// Keys reconciled at once: kube-controller-manager runs one disruption worker.
pub const WORKERS: usize = 1;

/// Registers the disruption controller on the shared informers and returns it, to be polled
/// once their caches are filled; runs until dropped. Budgets and pods enqueue budgets; the
/// workload controllers' caches are read for their scale.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
) -> impl Future<Output = ()> + use<> {
    let queue = WorkQueue::new();
    let budgets = {
        let queue = queue.clone();
        informers.on(move |change| budget_changed(change, &queue))
    };
    let pods = {
        let queue = queue.clone();
        let budgets = budgets.clone();
        informers.on_pods(move |change| pod_changed(change, &budgets, &queue))
    };
    // Scale changes enqueue nothing (as in Kubernetes): they matter only through the pods that
    // follow them.
    let controller = Arc::new(DisruptionController {
        budgets,
        pods,
        replica_sets: informers.namespaced(),
        deployments: informers.namespaced(),
        stateful_sets: informers.namespaced(),
        actions: crate::actions::KubeActions::new(client),
    });
    crate::runtime::run_workers(controller, queue, WORKERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::RecordingActions;
    use crate::ownership::controller_ref;
    use crate::pods::tests::at;
    use crate::replicaset::tests::{owned_pod, replica_set};
    use k8s_openapi::api::apps::v1::{DeploymentSpec, StatefulSetSpec};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn budget(
        min_available: Option<IntOrString>,
        max_unavailable: Option<IntOrString>,
    ) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-pdb".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available,
                max_unavailable,
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    match_expressions: None,
                }),
                unhealthy_pod_eviction_policy: None,
            }),
            status: None,
        }
    }

    fn deployment(replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-deployment-web".into()),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    /// A Deployment of `deployment_replicas` whose ReplicaSet `web-rs` (scaled to `rs_replicas`,
    /// mid-rollout) owns the pods.
    fn workloads(deployment_replicas: i32, rs_replicas: i32) -> (Workloads, ReplicaSet) {
        let deployment = deployment(deployment_replicas);
        let mut rs = replica_set("web-rs", rs_replicas);
        rs.metadata.owner_references = Some(vec![controller_ref(&deployment)]);
        let workloads = Workloads {
            replica_sets: vec![Arc::new(rs.clone())],
            deployments: vec![Arc::new(deployment)],
            stateful_sets: Vec::new(),
        };
        (workloads, rs)
    }

    /// Pods of `rs`: `ready` ready ones, then `unready` unready ones.
    fn pods(rs: &ReplicaSet, ready: usize, unready: usize) -> Vec<Pod> {
        (0..ready + unready)
            .map(|i| {
                let ready_at = (i < ready).then_some(0);
                owned_pod(&format!("web-{i}"), Some(rs), "node-1", "Running", ready_at)
            })
            .collect()
    }

    async fn sync(
        budget: &PodDisruptionBudget,
        pods: &[Pod],
        workloads: &Workloads,
        now: Timestamp,
    ) -> (Result<Action, SyncError>, RecordingActions) {
        let actions = RecordingActions::new();
        let refs: Vec<&Pod> = pods.iter().collect();
        let result = sync_budget(budget, &refs, workloads, &actions, now).await;
        (result, actions)
    }

    fn int(n: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(n))
    }

    fn percent(s: &str) -> Option<IntOrString> {
        Some(IntOrString::String(s.into()))
    }

    #[tokio::test]
    async fn status_follows_min_available_and_max_unavailable_as_integers_and_percentages() {
        // (case, minAvailable, maxUnavailable, deployment replicas, ready pods, unready pods,
        //  expected summary)
        let cases = [
            (
                "minAvailable as an integer counts the matching pods",
                int(2),
                None,
                5,
                3,
                0,
                "expected=3 desired=2 current=3 allowed=1 disrupted=[] observedGeneration=1 DisruptionAllowed=True/SufficientPods",
            ),
            (
                "minAvailable as a percentage scales the controller's replicas, rounding up",
                percent("30%"),
                None,
                4,
                3,
                0,
                "expected=4 desired=2 current=3 allowed=1 disrupted=[] observedGeneration=1 DisruptionAllowed=True/SufficientPods",
            ),
            (
                "maxUnavailable as an integer subtracts from the controller's replicas",
                None,
                int(1),
                3,
                3,
                0,
                "expected=3 desired=2 current=3 allowed=1 disrupted=[] observedGeneration=1 DisruptionAllowed=True/SufficientPods",
            ),
            (
                "maxUnavailable as a percentage rounds up",
                None,
                percent("34%"),
                3,
                3,
                0,
                "expected=3 desired=1 current=3 allowed=2 disrupted=[] observedGeneration=1 DisruptionAllowed=True/SufficientPods",
            ),
            (
                "maxUnavailable larger than the scale desires no healthy pods",
                None,
                int(5),
                3,
                3,
                0,
                "expected=3 desired=0 current=3 allowed=3 disrupted=[] observedGeneration=1 DisruptionAllowed=True/SufficientPods",
            ),
            (
                "not-ready pods are not healthy",
                int(2),
                None,
                3,
                2,
                1,
                "expected=3 desired=2 current=2 allowed=0 disrupted=[] observedGeneration=1 DisruptionAllowed=False/InsufficientPods",
            ),
            (
                "too few healthy pods never allow a negative number of disruptions",
                int(3),
                None,
                3,
                1,
                2,
                "expected=3 desired=3 current=1 allowed=0 disrupted=[] observedGeneration=1 DisruptionAllowed=False/InsufficientPods",
            ),
        ];
        for (case, min_available, max_unavailable, replicas, ready, unready, expected) in cases {
            let (workloads, rs) = workloads(replicas, replicas);
            let budget = budget(min_available, max_unavailable);
            let (result, actions) =
                sync(&budget, &pods(&rs, ready, unready), &workloads, at(100)).await;
            assert_eq!(result.unwrap(), Action::AwaitChange, "{case}");
            assert_eq!(
                actions.summaries(),
                [format!("update poddisruptionbudget web status: {expected}")],
                "{case}"
            );
        }
    }

    #[tokio::test]
    async fn a_statefulset_scale_counts_for_percentages() {
        let stateful_set = StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("default".into()),
                uid: Some("uid-db".into()),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(4),
                ..StatefulSetSpec::default()
            }),
            status: None,
        };
        let mut pods = pods(&replica_set("unused", 1), 2, 0);
        for pod in &mut pods {
            pod.metadata.owner_references = Some(vec![controller_ref(&stateful_set)]);
        }
        let workloads = Workloads {
            stateful_sets: vec![Arc::new(stateful_set)],
            ..Workloads::default()
        };
        let (result, actions) =
            sync(&budget(None, percent("50%")), &pods, &workloads, at(100)).await;
        assert_eq!(result.unwrap(), Action::AwaitChange);
        assert_eq!(
            actions.summaries(),
            [
                "update poddisruptionbudget web status: expected=4 desired=2 current=2 allowed=0 disrupted=[] observedGeneration=1 DisruptionAllowed=False/InsufficientPods"
            ]
        );
    }

    #[tokio::test]
    async fn disrupted_pods_are_not_healthy_until_their_entry_expires_after_two_minutes() {
        let (workloads, rs) = workloads(3, 3);
        let pods = pods(&rs, 3, 0);
        let mut budget = budget(int(2), None);
        budget.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("web-0".to_string(), Time(at(100))),
                // The pod is gone: its entry is dropped at once.
                ("web-gone".to_string(), Time(at(100))),
            ])),
            disruptions_allowed: 0,
            ..PodDisruptionBudgetStatus::default()
        });

        // 30 s after the eviction the pod is still pending deletion: excluded, and the budget
        // is looked at again exactly when the entry expires.
        let (result, actions) = sync(&budget, &pods, &workloads, at(130)).await;
        assert_eq!(
            result.unwrap(),
            Action::RequeueAfter(Duration::from_secs(90) + Duration::from_nanos(1))
        );
        assert_eq!(
            actions.summaries(),
            [
                "update poddisruptionbudget web status: expected=3 desired=2 current=2 allowed=0 disrupted=[web-0] observedGeneration=1 DisruptionAllowed=False/InsufficientPods"
            ]
        );

        // After two minutes the deletion evidently failed: the pod counts again.
        let (result, actions) = sync(&budget, &pods, &workloads, at(221)).await;
        assert_eq!(result.unwrap(), Action::AwaitChange);
        assert_eq!(
            actions.summaries(),
            [
                "update poddisruptionbudget web status: expected=3 desired=2 current=3 allowed=1 disrupted=[] observedGeneration=1 DisruptionAllowed=True/SufficientPods"
            ]
        );
        assert!(
            actions
                .events()
                .iter()
                .any(|e| e.starts_with("Warning NotDeleted"))
        );
    }

    #[tokio::test]
    async fn terminating_pods_are_not_healthy_and_their_disruption_entry_is_dropped() {
        let (workloads, rs) = workloads(3, 3);
        let mut pods = pods(&rs, 3, 0);
        pods[0].metadata.deletion_timestamp = Some(Time(at(110)));
        let mut budget = budget(int(2), None);
        budget.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([("web-0".to_string(), Time(at(100)))])),
            ..PodDisruptionBudgetStatus::default()
        });
        let (result, actions) = sync(&budget, &pods, &workloads, at(120)).await;
        assert_eq!(result.unwrap(), Action::AwaitChange);
        assert_eq!(
            actions.summaries(),
            [
                "update poddisruptionbudget web status: expected=3 desired=2 current=2 allowed=0 disrupted=[] observedGeneration=1 DisruptionAllowed=False/InsufficientPods"
            ]
        );
    }

    #[tokio::test]
    async fn an_unchanged_status_is_not_written_and_a_new_generation_is_observed() {
        let (workloads, rs) = workloads(3, 3);
        let pods = pods(&rs, 3, 0);
        let budget = budget(int(2), None);
        let (_, actions) = sync(&budget, &pods, &workloads, at(100)).await;
        let Some(crate::actions::Recorded::UpdatePodDisruptionBudgetStatus(written)) =
            actions.recorded().pop()
        else {
            panic!("status written");
        };

        let (result, actions) = sync(&written, &pods, &workloads, at(200)).await;
        assert_eq!(result.unwrap(), Action::AwaitChange);
        assert_eq!(actions.summaries(), Vec::<String>::new());

        let mut edited = written.clone();
        edited.metadata.generation = Some(2);
        let (_, actions) = sync(&edited, &pods, &workloads, at(200)).await;
        assert_eq!(
            actions.summaries(),
            [
                "update poddisruptionbudget web status: expected=3 desired=2 current=3 allowed=1 disrupted=[] observedGeneration=2 DisruptionAllowed=True/SufficientPods"
            ]
        );
        let Some(crate::actions::Recorded::UpdatePodDisruptionBudgetStatus(rewritten)) =
            actions.recorded().pop()
        else {
            panic!("status written");
        };
        let condition = &rewritten.status.unwrap().conditions.unwrap()[0];
        assert_eq!(
            condition.last_transition_time,
            Time(at(100)),
            "status unchanged: time kept"
        );
        assert_eq!(condition.observed_generation, Some(2));
    }

    #[tokio::test]
    async fn a_pod_whose_controller_is_not_cached_fails_safe_with_no_disruptions_allowed() {
        let (_, rs) = workloads(3, 3);
        let mut budget = budget(None, int(1));
        budget.status = Some(PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            ..PodDisruptionBudgetStatus::default()
        });
        let (result, actions) =
            sync(&budget, &pods(&rs, 3, 0), &Workloads::default(), at(100)).await;
        assert!(matches!(result, Err(SyncError::ExpectedPods { .. })));
        assert_eq!(
            actions.summaries(),
            [
                "update poddisruptionbudget web status: expected=0 desired=0 current=0 allowed=0 disrupted=[] observedGeneration=0 DisruptionAllowed=False/SyncFailed"
            ]
        );
    }

    #[tokio::test]
    async fn a_budget_matching_no_pods_allows_no_disruption() {
        let (workloads, _) = workloads(3, 3);
        let (result, actions) = sync(&budget(None, int(1)), &[], &workloads, at(100)).await;
        assert_eq!(result.unwrap(), Action::AwaitChange);
        assert_eq!(
            actions.summaries(),
            [
                "update poddisruptionbudget web status: expected=0 desired=0 current=0 allowed=0 disrupted=[] observedGeneration=1 DisruptionAllowed=False/InsufficientPods"
            ]
        );
        assert_eq!(actions.events(), ["Normal NoPods No matching pods found"]);
    }

    #[tokio::test]
    async fn a_pod_event_enqueues_the_budgets_that_select_it() {
        let mut writer = kube::runtime::reflector::store::Writer::<PodDisruptionBudget>::default();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(budget(int(1), None)));
        let mut elsewhere = budget(int(1), None);
        elsewhere.metadata.namespace = Some("other".into());
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(elsewhere));
        let mut empty = budget(int(1), None);
        empty.metadata.name = Some("empty-selector".into());
        empty.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(empty));
        let budgets = writer.as_reader();
        let queue = WorkQueue::new();
        let (_, rs) = workloads(1, 1);
        let mut pod = pods(&rs, 1, 0).remove(0);
        pod_changed(Change::Deleted(&pod), &budgets, &queue);
        assert_eq!(queue.next().await, ObjectKey::new("default", "web"));
        assert!(
            queue.is_empty(),
            "only the budget of its namespace with a selector"
        );
        pod.metadata.labels = None;
        queue.done(&ObjectKey::new("default", "web"));
        pod_changed(Change::Applied(&pod), &budgets, &queue);
        assert!(queue.is_empty(), "an unselected pod enqueues nothing");
    }

    #[test]
    fn percentages_round_up_and_garbage_is_an_error() {
        let cases = [
            ("50%", 3, Ok(2)),
            ("34%", 3, Ok(2)),
            ("33%", 3, Ok(1)),
            ("0%", 3, Ok(0)),
            ("100%", 3, Ok(3)),
        ];
        for (value, total, expected) in cases {
            assert_eq!(
                crate::intstr::scaled_value(&IntOrString::String(value.into()), total, true),
                expected,
                "{value} of {total}"
            );
        }
        assert!(crate::intstr::scaled_value(&IntOrString::String("half".into()), 3, true).is_err());
    }
}
