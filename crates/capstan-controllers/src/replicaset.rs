//! The ReplicaSet controller, as Kubernetes' `ReplicaSetController`: it keeps `spec.replicas`
//! active pods from `spec.template`, adopting orphans its selector matches and releasing pods
//! that stopped matching, creates in slow-start batches (1, 2, 4, … so that a broken template
//! costs one failed create, not hundreds), deletes the least valuable pods first, and writes
//! `status` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration,
//! the ReplicaFailure condition).
//!
//! Expectations keep a slow watch from causing double creates or deletes. Scaling through the
//! `/scale` subresource needs nothing here: it only changes `spec.replicas`.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions};
use crate::expectations::{Cached, Expectations};
use crate::ownership::{claim_pods, enqueue_pod_owner, plan_claim, selector_of};
use crate::pod_cache::PodCache;
use crate::pod_control::{create_pods, delete_pods};
use crate::pods::{is_active, is_available, is_ready, next_availability_check, pods_to_delete};
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The controller's name, the `source.component` of its events.
pub const CONTROLLER_NAME: &str = "replicaset-controller";
/// At most this many pods are created or deleted per sync (Kubernetes' `BurstReplicas`), so one
/// ReplicaSet cannot monopolise the API.
pub const BURST_REPLICAS: usize = 500;
/// The condition type written when pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Why a sync failed. The key is retried with backoff; each variant says whether that helps.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Adopting or releasing a pod failed (usually a conflict with a concurrent change: retrying
    /// helps).
    #[error("claiming pods of {replica_set}: {source}")]
    ClaimPods {
        replica_set: String,
        source: ActionError,
    },
    /// Creating or deleting pods failed; the ReplicaFailure condition carries the message.
    /// Retrying helps when the cause (quota, admission) goes away.
    #[error("{0}")]
    ManageReplicas(String),
    /// Writing the status failed (usually a conflict: retrying helps).
    #[error("updating status of {replica_set}: {source}")]
    UpdateStatus {
        replica_set: String,
        source: ActionError,
    },
}

/// The ReplicaSet controller: its caches, its effects and its expectations.
pub struct ReplicaSetController<A> {
    pub replica_sets: Store<ReplicaSet>,
    pub pods: PodCache,
    pub actions: A,
    pub expectations: Arc<Expectations>,
}

impl<A: Actions> Reconciler for ReplicaSetController<A> {
    type Error = SyncError;

    fn name(&self) -> &'static str {
        CONTROLLER_NAME
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(replica_set) = self.replica_sets.get(&key.object_ref()) else {
            self.expectations.forget(key);
            return Ok(Action::AwaitChange);
        };
        // Only the pods it controls and the orphans: claiming ignores every other pod, and its
        // expectations are about pods it created or deleted.
        let owner_uid = replica_set.metadata.uid.as_deref().unwrap_or_default();
        let pods = self.pods.claimable_by(&key.namespace, owner_uid);
        let pods: Vec<&Pod> = pods.iter().map(|pod| &**pod).collect();
        sync_replica_set(
            &replica_set,
            &pods,
            &self.actions,
            &self.expectations,
            Timestamp::now(),
        )
        .await
    }
}

/// Event handler for ReplicaSets: every change reconciles the ReplicaSet.
pub fn replica_set_changed(change: Change<'_, ReplicaSet>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// Event handler for pods: reconciles the ReplicaSet controlling the pod, or, for an orphan,
/// every ReplicaSet that might adopt it. Marks the pod's creation as observed.
pub fn pod_changed(
    change: Change<'_, Pod>,
    replica_sets: &Store<ReplicaSet>,
    expectations: &Expectations,
    queue: &WorkQueue<ObjectKey>,
) {
    enqueue_pod_owner(
        change,
        "apps/",
        replica_sets,
        |rs| selector_of(rs.spec.as_ref().map(|s| &s.selector)),
        expectations,
        queue,
    );
}

fn desired_replicas(replica_set: &ReplicaSet) -> i32 {
    // The API server defaults spec.replicas to 1; a missing value means the same here.
    replica_set
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn min_ready_seconds(replica_set: &ReplicaSet) -> i32 {
    replica_set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// One sync of one ReplicaSet from a snapshot of its namespace's pods: claim, create or delete,
/// write status. Returns when to look again if a pod's minReadySeconds will expire.
pub async fn sync_replica_set<A: Actions>(
    replica_set: &ReplicaSet,
    namespace_pods: &[&Pod],
    actions: &A,
    expectations: &Expectations,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let key = ObjectKey::of(replica_set);
    let rs_name = name(&replica_set.metadata).to_string();
    let rs_uid = replica_set.metadata.uid.clone().unwrap_or_default();
    let deleting = replica_set.metadata.deletion_timestamp.is_some();

    let by_uid: HashMap<&str, &Pod> = namespace_pods
        .iter()
        .filter_map(|pod| Some((pod.metadata.uid.as_deref()?, *pod)))
        .collect();
    let needs_sync = expectations.satisfied(&key, now, |uid| match by_uid.get(uid) {
        None => Cached::Absent,
        Some(pod) if pod.metadata.deletion_timestamp.is_some() => Cached::Terminating,
        Some(_) => Cached::Present,
    });

    let selector = match selector_of(replica_set.spec.as_ref().map(|s| &s.selector)) {
        Ok(selector) => selector,
        Err(error) => {
            // Validation refuses such selectors; retrying would not help.
            tracing::warn!(replica_set = %key, "invalid selector: {error}");
            return Ok(Action::AwaitChange);
        }
    };

    let active: Vec<&Pod> = namespace_pods
        .iter()
        .copied()
        .filter(|pod| is_active(pod))
        .collect();
    let plan = plan_claim(&rs_uid, deleting, &selector, active.iter().copied());
    let owned = claim_pods(actions, replica_set, plan.owned, plan.adopt, plan.release)
        .await
        .map_err(|source| SyncError::ClaimPods {
            replica_set: rs_name.clone(),
            source,
        })?;

    let manage_error = if needs_sync && !deleting {
        manage_replicas(replica_set, &owned, actions, expectations, now)
            .await
            .err()
    } else {
        None
    };

    let status = calculate_status(replica_set, &owned, manage_error.as_deref(), now);
    if status_differs(replica_set, &status) {
        let mut updated = replica_set.clone();
        updated.status = Some(status);
        if let Err(source) = actions.update_replica_set_status(&updated).await {
            return Err(SyncError::UpdateStatus {
                replica_set: rs_name,
                source,
            });
        }
    }
    if let Some(error) = manage_error {
        return Err(SyncError::ManageReplicas(error));
    }
    Ok(next_availability_check(
        &owned,
        min_ready_seconds(replica_set),
        now,
    ))
}

/// The pod a ReplicaSet creates from its template (Kubernetes' `GetPodFromTemplate`).
pub fn pod_from_template(replica_set: &ReplicaSet) -> Pod {
    let template = replica_set.spec.as_ref().and_then(|s| s.template.as_ref());
    crate::pods::from_template(replica_set, template)
}

/// Creates or deletes pods toward `spec.replicas`. Returns the first error's message.
async fn manage_replicas<A: Actions>(
    replica_set: &ReplicaSet,
    owned: &[&Pod],
    actions: &A,
    expectations: &Expectations,
    now: Timestamp,
) -> Result<(), String> {
    let diff = owned.len() as i64 - i64::from(desired_replicas(replica_set));
    if diff < 0 {
        let missing = (diff.unsigned_abs() as usize).min(BURST_REPLICAS);
        let pods = vec![pod_from_template(replica_set); missing];
        create_pods(
            actions,
            CONTROLLER_NAME,
            replica_set,
            &pods,
            expectations,
            now,
        )
        .await
    } else if diff > 0 {
        let excess = (diff as usize).min(BURST_REPLICAS);
        let victims = pods_to_delete(owned, owned, excess, now);
        delete_pods(
            actions,
            CONTROLLER_NAME,
            replica_set,
            &victims,
            expectations,
            now,
        )
        .await
    } else {
        Ok(())
    }
}

fn nonzero(n: usize) -> Option<i32> {
    (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

/// The status the pods show (Kubernetes' `calculateStatus`). `replicas` counts the pods the
/// sync started from, so pods just created appear when their watch events arrive.
pub fn calculate_status(
    replica_set: &ReplicaSet,
    owned: &[&Pod],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let template_labels = replica_set
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = min_ready_seconds(replica_set);
    let fully_labeled = owned
        .iter()
        .filter(|pod| {
            let labels = pod.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = owned.iter().filter(|pod| is_ready(pod)).count();
    let available = owned
        .iter()
        .filter(|pod| is_available(pod, min_ready, now))
        .count();

    let mut conditions = replica_set
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(message) if !has_failure => {
            let diff = owned.len() as i64 - i64::from(desired_replicas(replica_set));
            let reason = if diff < 0 {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }

    ReplicaSetStatus {
        replicas: i32::try_from(owned.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: replica_set.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

/// Does writing `status` change anything? Zero and absent counts are the same (Go's
/// `omitempty`), and an observedGeneration behind the generation always needs a write.
fn status_differs(replica_set: &ReplicaSet, status: &ReplicaSetStatus) -> bool {
    let current = replica_set.status.clone().unwrap_or_default();
    let counts = |s: &ReplicaSetStatus| {
        (
            s.replicas,
            s.fully_labeled_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
            s.observed_generation.unwrap_or(0),
        )
    };
    counts(&current) != counts(status)
        || current.conditions.unwrap_or_default() != status.conditions.clone().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::actions::RecordingActions;
    use crate::ownership::controller_ref;
    use crate::pods::tests::{at, pod};
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
    use std::collections::BTreeMap;

    fn web_labels() -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), "web".to_string())])
    }

    pub(crate) fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: None,
                selector: LabelSelector {
                    match_labels: Some(web_labels()),
                    match_expressions: None,
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(web_labels()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "web".into(),
                            image: Some("busybox".into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                }),
            }),
            status: Some(ReplicaSetStatus {
                observed_generation: Some(1),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    /// A pod of `rs` (or an orphan with `None`), labelled app=web.
    pub(crate) fn owned_pod(
        name: &str,
        owner: Option<&ReplicaSet>,
        node: &str,
        phase: &str,
        ready_at: Option<i64>,
    ) -> Pod {
        let mut pod = pod(name, node, phase, ready_at);
        pod.metadata.namespace = Some("default".into());
        pod.metadata.labels = Some(web_labels());
        pod.metadata.owner_references = owner.map(|rs| vec![controller_ref(rs)]);
        pod
    }

    async fn sync(
        rs: &ReplicaSet,
        pods: &[Pod],
        actions: &RecordingActions,
        expectations: &Expectations,
    ) -> Result<Action, SyncError> {
        let refs: Vec<&Pod> = pods.iter().collect();
        sync_replica_set(rs, &refs, actions, expectations, at(1000)).await
    }

    fn creates(actions: &RecordingActions) -> usize {
        actions
            .summaries()
            .iter()
            .filter(|s| s.starts_with("create pod"))
            .count()
    }

    #[tokio::test]
    async fn missing_pods_are_created_from_the_template_with_a_controller_reference() {
        let rs = replica_set("web", 3);
        let actions = RecordingActions::new();
        sync(&rs, &[], &actions, &Expectations::new())
            .await
            .unwrap();
        assert_eq!(creates(&actions), 3);
        let crate::actions::Recorded::CreatePod(created) = &actions.recorded()[0] else {
            panic!("first action is a create");
        };
        assert_eq!(created.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(created.metadata.labels, Some(web_labels()));
        assert_eq!(
            created.metadata.owner_references,
            Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web".into(),
                uid: "uid-web".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }])
        );
        assert_eq!(
            actions.events()[0],
            "Normal SuccessfulCreate Created pod: web-1"
        );
    }

    #[tokio::test]
    async fn creation_stops_after_the_slow_start_batch_with_a_failure() {
        // Batches of 1, 2, 4, then the 3 left of 10: a failing create lets the other creates of
        // its batch run and skips the later batches.
        let cases = [(1, 1), (2, 3), (3, 3), (4, 7), (7, 7), (8, 10)];
        for (failing_create, attempted) in cases {
            let actions = RecordingActions::new();
            actions.fail_nth(
                "create pod",
                failing_create,
                ActionError::Failed("exceeded quota".into()),
            );
            let result = sync(&replica_set("web", 10), &[], &actions, &Expectations::new()).await;
            assert_eq!(
                creates(&actions),
                attempted,
                "failing create {failing_create}"
            );
            assert!(matches!(result, Err(SyncError::ManageReplicas(_))));
        }
    }

    #[tokio::test]
    async fn a_failed_create_sets_the_replica_failure_condition_and_a_later_success_clears_it() {
        let rs = replica_set("web", 1);
        let actions = RecordingActions::new();
        actions.fail(
            "create pod",
            ActionError::Failed("pods \"web-\" is forbidden: exceeded quota".into()),
        );
        let error = sync(&rs, &[], &actions, &Expectations::new())
            .await
            .unwrap_err();
        assert!(matches!(error, SyncError::ManageReplicas(_)));
        let crate::actions::Recorded::UpdateReplicaSetStatus(failed) =
            actions.recorded().last().cloned().unwrap()
        else {
            panic!("status written");
        };
        let condition = &failed.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
        assert_eq!(
            (condition.type_.as_str(), condition.reason.as_deref()),
            ("ReplicaFailure", Some("FailedCreate"))
        );
        assert_eq!(
            condition.message.as_deref(),
            Some("pods \"web-\" is forbidden: exceeded quota")
        );

        let actions = RecordingActions::new();
        sync(&failed, &[], &actions, &Expectations::new())
            .await
            .unwrap();
        let crate::actions::Recorded::UpdateReplicaSetStatus(recovered) =
            actions.recorded().last().cloned().unwrap()
        else {
            panic!("status written");
        };
        assert_eq!(recovered.status.unwrap().conditions, None);
    }

    #[tokio::test]
    async fn a_slow_watch_never_makes_it_create_twice() {
        let rs = replica_set("web", 3);
        let actions = RecordingActions::new();
        let expectations = Expectations::new();
        sync(&rs, &[], &actions, &expectations).await.unwrap();
        sync(&rs, &[], &actions, &expectations).await.unwrap();
        assert_eq!(
            creates(&actions),
            3,
            "the second sync waits for the first pods to show"
        );
        let seen: Vec<Pod> = (1..=3)
            .map(|n| {
                let mut pod = owned_pod(&format!("web-{n}"), Some(&rs), "", "Pending", None);
                pod.metadata.uid = Some(format!("uid-web-{n}"));
                pod
            })
            .collect();
        sync(&rs, &seen, &actions, &expectations).await.unwrap();
        assert_eq!(creates(&actions), 3);
    }

    #[tokio::test]
    async fn at_most_burst_replicas_are_created_per_sync() {
        let rs = replica_set("web", 600);
        let actions = RecordingActions::new();
        sync(&rs, &[], &actions, &Expectations::new())
            .await
            .unwrap();
        assert_eq!(creates(&actions), BURST_REPLICAS);
    }

    #[tokio::test]
    async fn scale_down_deletes_unscheduled_pods_first() {
        let rs = replica_set("web", 2);
        let pods = [
            owned_pod("running", Some(&rs), "n1", "Running", Some(0)),
            owned_pod("unscheduled", Some(&rs), "", "Pending", None),
            owned_pod("pending", Some(&rs), "n2", "Pending", None),
            owned_pod("not-ready", Some(&rs), "n3", "Running", None),
        ];
        let actions = RecordingActions::new();
        sync(&rs, &pods, &actions, &Expectations::new())
            .await
            .unwrap();
        assert_eq!(
            actions.summaries()[..2],
            [
                "delete pod unscheduled".to_string(),
                "delete pod pending".to_string()
            ]
        );
        assert_eq!(
            actions.events(),
            [
                "Normal SuccessfulDelete Deleted pod: unscheduled",
                "Normal SuccessfulDelete Deleted pod: pending",
            ]
        );
    }

    #[tokio::test]
    async fn orphans_matching_the_selector_are_adopted_and_owned_pods_that_stopped_matching_are_released()
     {
        let rs = replica_set("web", 2);
        let mut relabelled = owned_pod("relabelled", Some(&rs), "n1", "Running", Some(0));
        relabelled.metadata.labels = Some(BTreeMap::from([("app".into(), "debug".into())]));
        let pods = [
            owned_pod("mine", Some(&rs), "n1", "Running", Some(0)),
            owned_pod("orphan", None, "n1", "Running", Some(0)),
            relabelled,
        ];
        let actions = RecordingActions::new();
        sync(&rs, &pods, &actions, &Expectations::new())
            .await
            .unwrap();
        assert_eq!(
            actions.summaries(),
            [
                "set owners of pod orphan to [ReplicaSet/web]",
                "set owners of pod relabelled to []",
                "update replicaset web status: replicas=2 fullyLabeled=2 ready=2 available=2 observedGeneration=1",
            ]
        );
    }

    #[tokio::test]
    async fn terminating_and_finished_pods_are_ignored_and_replaced() {
        let rs = replica_set("web", 2);
        let mut terminating = owned_pod("terminating", Some(&rs), "n1", "Running", Some(0));
        terminating.metadata.deletion_timestamp = Some(Time(at(10)));
        let pods = [
            owned_pod("running", Some(&rs), "n1", "Running", Some(0)),
            terminating,
            owned_pod("done", Some(&rs), "n1", "Succeeded", None),
        ];
        let actions = RecordingActions::new();
        sync(&rs, &pods, &actions, &Expectations::new())
            .await
            .unwrap();
        assert_eq!(
            actions.summaries(),
            [
                "create pod web-",
                "update replicaset web status: replicas=1 fullyLabeled=1 ready=1 available=1 observedGeneration=1",
            ]
        );
    }

    #[tokio::test]
    async fn status_counts_ready_and_available_pods_honouring_min_ready_seconds() {
        let mut rs = replica_set("web", 3);
        rs.metadata.generation = Some(4);
        if let Some(spec) = rs.spec.as_mut() {
            spec.min_ready_seconds = Some(30);
        }
        let mut unlabelled = owned_pod("partial", Some(&rs), "n1", "Pending", None);
        unlabelled.metadata.labels = Some(BTreeMap::from([
            ("app".into(), "web".into()),
            ("extra".into(), "x".into()),
        ]));
        let pods = [
            owned_pod("long-ready", Some(&rs), "n1", "Running", Some(0)),
            owned_pod("just-ready", Some(&rs), "n1", "Running", Some(990)),
            unlabelled,
        ];
        let actions = RecordingActions::new();
        let action = sync(&rs, &pods, &actions, &Expectations::new())
            .await
            .unwrap();
        assert_eq!(
            actions.summaries(),
            [
                "update replicaset web status: replicas=3 fullyLabeled=3 ready=2 available=1 observedGeneration=4",
            ]
        );
        // just-ready became ready at 990 and is available after 1020; the sync ran at 1000.
        assert_eq!(
            action,
            Action::RequeueAfter(std::time::Duration::from_millis(20_001))
        );
    }

    #[tokio::test]
    async fn an_unchanged_status_is_not_written() {
        let mut rs = replica_set("web", 1);
        rs.status = Some(ReplicaSetStatus {
            replicas: 1,
            fully_labeled_replicas: Some(1),
            ready_replicas: Some(1),
            available_replicas: Some(1),
            observed_generation: Some(1),
            ..ReplicaSetStatus::default()
        });
        let pods = [owned_pod("p", Some(&rs), "n1", "Running", Some(0))];
        let actions = RecordingActions::new();
        assert_eq!(
            sync(&rs, &pods, &actions, &Expectations::new())
                .await
                .unwrap(),
            Action::AwaitChange
        );
        assert!(actions.summaries().is_empty());
    }

    #[tokio::test]
    async fn a_deleting_replica_set_neither_creates_nor_adopts() {
        let mut rs = replica_set("web", 3);
        rs.metadata.deletion_timestamp = Some(Time(at(0)));
        let pods = [owned_pod("orphan", None, "n1", "Running", Some(0))];
        let actions = RecordingActions::new();
        sync(&rs, &pods, &actions, &Expectations::new())
            .await
            .unwrap();
        assert!(actions.summaries().is_empty(), "{:?}", actions.summaries());
    }

    #[tokio::test]
    async fn pods_of_other_controllers_are_left_alone() {
        let rs = replica_set("web", 1);
        let other = replica_set("other", 1);
        let pods = [owned_pod("theirs", Some(&other), "n1", "Running", Some(0))];
        let actions = RecordingActions::new();
        sync(&rs, &pods, &actions, &Expectations::new())
            .await
            .unwrap();
        assert_eq!(actions.summaries()[0], "create pod web-");
    }

    #[test]
    fn a_pod_event_enqueues_its_controller_or_the_replica_sets_that_may_adopt_it() {
        let queue = WorkQueue::new();
        let expectations = Expectations::new();
        let mut writer = kube::runtime::reflector::store::Writer::<ReplicaSet>::default();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(replica_set("web", 1)));
        let store = writer.as_reader();
        let rs = replica_set("owner", 1);
        pod_changed(
            Change::Applied(&owned_pod("owned", Some(&rs), "", "Pending", None)),
            &store,
            &expectations,
            &queue,
        );
        pod_changed(
            Change::Applied(&owned_pod("orphan", None, "", "Pending", None)),
            &store,
            &expectations,
            &queue,
        );
        assert_eq!(queue.len(), 2);
    }
}
