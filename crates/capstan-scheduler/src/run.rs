//! The runner: watches Nodes, Pods and PodDisruptionBudgets, keeps the snapshot and the queue
//! current, schedules one pod at a time through the pure core, and acts through
//! [`ApiActions`] — binding, reporting `PodScheduled=False`, recording Events, nominating and
//! evicting for preemption.
//!
//! [`SchedulerLoop`] holds every decision and returns the [`Action`]s to take, so tests drive
//! it with objects and a fixed clock and assert the exact actions; [`run`] only wires watch
//! streams, the clock and [`KubeActions`] to it. Binding runs concurrently: the pod is assumed
//! into the snapshot first (so the next pod sees it), and forgotten and retried with backoff if
//! the bind fails.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::framework::{Bind, BindFuture, Status};
use crate::plugins::Profile;
use crate::plugins::default_binder::{BindPod, DefaultBinder};
use crate::plugins::node_resources_fit::ScoringStrategy;
use crate::pod_info::PodInfo;
use crate::queue::{ClusterEvent, SchedulingQueue};
use crate::schedule::{DecisionConfig, ScheduleError, Scheduler};
use crate::snapshot::Snapshot;

pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this (or unset, for the default) are ours.
    pub scheduler_name: String,
    /// `percentageOfNodesToScore`; `None` uses kube-scheduler's adaptive rule.
    pub percentage_of_nodes_to_score: Option<u32>,
    pub scoring_strategy: ScoringStrategy,
    /// Identifies this instance in Events' `reportingInstance`.
    pub instance: String,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            percentage_of_nodes_to_score: None,
            scoring_strategy: ScoringStrategy::LeastAllocated,
            instance: DEFAULT_SCHEDULER_NAME.into(),
        }
    }
}

/// A pod the scheduler acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    fn of(pod: &PodInfo) -> PodRef {
        PodRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }
}

/// One effect on the API, decided by [`SchedulerLoop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// POST `pods/{name}/binding` with target `node`.
    Bind { pod: PodRef, node: String },
    /// Set condition `PodScheduled=False`, reason `Unschedulable`, with the FitError text.
    MarkUnschedulable { pod: PodRef, message: String },
    /// Record a core/v1 Event about the pod (`Scheduled`, `FailedScheduling`, `Preempted`).
    RecordEvent {
        pod: PodRef,
        kind: EventKind,
        reason: String,
        message: String,
    },
    /// Set `status.nominatedNodeName` on a preemptor.
    Nominate { pod: PodRef, node: String },
    /// Remove `status.nominatedNodeName`: preemption no longer holds a node for the pod.
    ClearNomination { pod: PodRef },
    /// Mark a preemption victim with `DisruptionTarget`, then delete it with its own grace.
    Evict {
        pod: PodRef,
        grace_period_seconds: Option<i64>,
        /// `<preemptor uid> on node <node>`, as the victim's `Preempted` event words it.
        preemptor: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// Why an action failed. Binding failures are retried by re-queueing the pod; other failures
/// are logged (status and events are informational, and the next attempt writes them again).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{action} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub type ActionFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + 'a>>;

/// The scheduler's effects on the cluster, one method so a fake can record them in order.
pub trait ApiActions: Send + Sync + 'static {
    /// Performs one action. Not idempotent for `Bind` (a second bind conflicts) or
    /// `RecordEvent` (a second event is recorded); cancel-safe in that a dropped future leaves
    /// at most the action done, which the watch then shows.
    fn perform(&self, action: Action) -> ActionFuture<'_>;
}

/// Lets DefaultBinder bind through the runner's [`ApiActions`].
pub struct ActionsBinder(pub Arc<dyn ApiActions>);

impl BindPod for ActionsBinder {
    fn bind_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
        node: &'a str,
    ) -> BindFuture<'a> {
        let action = Action::Bind {
            pod: PodRef {
                namespace: namespace.into(),
                name: name.into(),
                uid: uid.into(),
            },
            node: node.into(),
        };
        Box::pin(async move {
            match self.0.perform(action).await {
                Ok(()) => Status::success(),
                Err(error) => Status::error(error.to_string()),
            }
        })
    }
}

/// A bind handed to the binder; its outcome comes back through [`SchedulerLoop::bind_finished`].
#[derive(Debug, Clone)]
pub struct PendingBind {
    pub pod: Arc<PodInfo>,
    pub node: String,
    pub attempts: u32,
}

/// The runner's state and decisions: snapshot, queue and scheduler, fed by watch events.
pub struct SchedulerLoop {
    config: SchedulerConfig,
    scheduler: Scheduler,
    snapshot: Snapshot,
    queue: SchedulingQueue,
    /// Pods assumed and being bound, by key.
    binding: HashSet<String>,
}

/// What a scheduling step decided.
#[derive(Debug, Default)]
pub struct StepOutcome {
    pub actions: Vec<Action>,
    pub bind: Option<PendingBind>,
}

impl SchedulerLoop {
    pub fn new(config: SchedulerConfig) -> SchedulerLoop {
        let decision = DecisionConfig {
            percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
            seed: 0x5eed,
        };
        SchedulerLoop {
            scheduler: Scheduler::new(Profile::default_with(config.scoring_strategy), decision),
            config,
            snapshot: Snapshot::default(),
            queue: SchedulingQueue::new(),
            binding: HashSet::new(),
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn queue(&self) -> &SchedulingQueue {
        &self.queue
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        let spec = pod.spec.as_ref();
        let scheduler = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER_NAME);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        scheduler == self.config.scheduler_name
            && pod.metadata.deletion_timestamp.is_none()
            && !matches!(phase, Some("Succeeded" | "Failed"))
            && spec
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_none_or(|g| g.is_empty())
    }

    /// A Node was added or changed.
    pub fn node_applied(&mut self, node: Node, now: Instant) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let event = match self.snapshot.node(&name) {
            None => Some(ClusterEvent::NodeAdded),
            Some(old) => {
                let spec = node.spec.as_ref();
                let changed = old.labels != node.metadata.labels.clone().unwrap_or_default()
                    || old.taints != spec.and_then(|s| s.taints.clone()).unwrap_or_default()
                    || old.unschedulable != spec.and_then(|s| s.unschedulable).unwrap_or(false)
                    || old
                        .node
                        .status
                        .as_ref()
                        .and_then(|s| s.allocatable.as_ref())
                        != node.status.as_ref().and_then(|s| s.allocatable.as_ref());
                // Heartbeats change only conditions: no reason to wake unschedulable pods.
                changed.then_some(ClusterEvent::NodeUpdated)
            }
        };
        self.snapshot.upsert_node(Arc::new(node));
        if let Some(event) = event {
            self.queue.on_cluster_event(event, now);
        }
    }

    pub fn node_deleted(&mut self, name: &str, now: Instant) {
        self.snapshot.remove_node(name);
        self.queue.on_cluster_event(ClusterEvent::NodeDeleted, now);
    }

    /// A Pod was added or changed.
    pub fn pod_applied(&mut self, pod: Pod, now: Instant) {
        let info = Arc::new(PodInfo::new(pod));
        let key = info.key();
        let finished = matches!(
            info.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        match info.node_name.clone() {
            Some(node) => {
                self.queue.delete(&key);
                let placed = self.snapshot.pod_node(&key).map(|n| n.name.clone());
                if finished {
                    // A finished pod no longer holds resources on its node.
                    if self
                        .snapshot
                        .remove_pod(&info.namespace, &info.name)
                        .is_some()
                    {
                        self.queue
                            .on_cluster_event(ClusterEvent::AssignedPodDeleted, now);
                    }
                    return;
                }
                // Labels matter to selectors; the start of a deletion to preemption, which
                // waits for its own victims to terminate rather than preempting again.
                let changed = self
                    .snapshot
                    .pod_node(&key)
                    .and_then(|n| n.pods.iter().find(|p| p.key() == key))
                    .is_some_and(|p| {
                        p.labels != info.labels
                            || p.pod.metadata.deletion_timestamp.is_some()
                                != info.pod.metadata.deletion_timestamp.is_some()
                    });
                if placed.as_deref() == Some(node.as_str()) && !changed {
                    return;
                }
                self.snapshot.remove_pod(&info.namespace, &info.name);
                let _ = self.snapshot.add_pod(info, &node);
                self.queue.on_cluster_event(
                    if placed.is_some() {
                        ClusterEvent::AssignedPodUpdated
                    } else {
                        ClusterEvent::AssignedPodAdded
                    },
                    now,
                );
            }
            None if self.binding.contains(&key) => {}
            None if self.is_ours(&info.pod) => {
                // The API's nomination wins. Without one, a nomination made in memory stands
                // (the watch may echo the pod before the nominating patch lands), unless the
                // API had it and it was cleared since (kube-scheduler's `updateNominatedPod`).
                match nominated_node_name(&info) {
                    Some(node) => self.snapshot.nominate(Arc::clone(&info), &node),
                    None => {
                        if let Some(node) = self.snapshot.nominated_node(&key).map(str::to_owned) {
                            let cleared = self
                                .snapshot
                                .nominated_pods(&node)
                                .iter()
                                .find(|p| p.key() == key)
                                .is_some_and(|p| nominated_node_name(p).is_some());
                            if cleared {
                                self.snapshot.remove_nomination(&key);
                            } else {
                                self.snapshot.nominate(Arc::clone(&info), &node);
                            }
                        }
                    }
                }
                self.queue.add_or_update(info)
            }
            None => {
                self.snapshot.remove_nomination(&key);
                self.queue.delete(&key)
            }
        }
    }

    pub fn pod_deleted(&mut self, namespace: &str, name: &str, now: Instant) {
        self.queue.delete(&format!("{namespace}/{name}"));
        self.snapshot
            .remove_nomination(&format!("{namespace}/{name}"));
        if self.snapshot.remove_pod(namespace, name).is_some() {
            self.queue
                .on_cluster_event(ClusterEvent::AssignedPodDeleted, now);
        }
    }

    /// A PodDisruptionBudget was added or changed. Budgets only steer preemption, never make
    /// it impossible, so no waiting pod is woken.
    pub fn disruption_budget_applied(&mut self, pdb: &PodDisruptionBudget) {
        self.snapshot.upsert_disruption_budget(pdb);
    }

    pub fn disruption_budget_deleted(&mut self, namespace: &str, name: &str) {
        self.snapshot.remove_disruption_budget(namespace, name);
    }

    /// When to call [`SchedulerLoop::schedule_next`] again if no event arrives.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.queue.next_wakeup()
    }

    /// Schedules the next due pod, if any: `None` when nothing is due.
    pub fn schedule_next(&mut self, now: Instant) -> Option<StepOutcome> {
        let queued = self.queue.pop(now)?;
        let pod = queued.info;
        let key = pod.key();
        let mut outcome = StepOutcome::default();
        match self.scheduler.schedule_one(&mut self.snapshot, &pod) {
            Ok(result) => {
                match self
                    .scheduler
                    .assume(&mut self.snapshot, Arc::clone(&pod), &result.node)
                {
                    Ok(()) => {
                        self.binding.insert(key);
                        outcome.actions.push(Action::Bind {
                            pod: PodRef::of(&pod),
                            node: result.node.clone(),
                        });
                        outcome.bind = Some(PendingBind {
                            pod,
                            node: result.node,
                            attempts: queued.attempts,
                        });
                    }
                    Err(error) => {
                        tracing::warn!(pod = %key, %error, "assuming the pod failed; retrying");
                        self.queue.done_error(&key, now);
                    }
                }
            }
            Err(ScheduleError::Unschedulable(fit)) => {
                let message = fit.to_string();
                let pod_ref = PodRef::of(&pod);
                if let Some(nomination) = &fit.nomination {
                    for victim in &nomination.victims {
                        outcome.actions.push(Action::Evict {
                            pod: PodRef::of(victim),
                            grace_period_seconds: victim.termination_grace_period_seconds,
                            // Kubernetes' event names the preemptor by uid and the node.
                            preemptor: format!("{} on node {}", pod.uid, nomination.node),
                        });
                    }
                    outcome.actions.push(Action::Nominate {
                        pod: pod_ref.clone(),
                        node: nomination.node.clone(),
                    });
                    // Less important pods nominated to the same node lose their claim: the
                    // space is this pod's now (kube-scheduler's `prepareCandidate`).
                    let displaced: Vec<Arc<PodInfo>> = self
                        .snapshot
                        .nominated_pods(&nomination.node)
                        .iter()
                        .filter(|p| p.priority < pod.priority && p.key() != key)
                        .cloned()
                        .collect();
                    for displaced in displaced {
                        self.snapshot.remove_nomination(&displaced.key());
                        outcome.actions.push(Action::ClearNomination {
                            pod: PodRef::of(&displaced),
                        });
                    }
                    // At once, not when the patch comes back: the next cycle must already
                    // leave the freed space to this pod.
                    self.snapshot.nominate(Arc::clone(&pod), &nomination.node);
                } else if fit.clear_nomination {
                    let in_memory = self.snapshot.remove_nomination(&key).is_some();
                    if in_memory || nominated_node_name(&pod).is_some() {
                        outcome.actions.push(Action::ClearNomination {
                            pod: pod_ref.clone(),
                        });
                    }
                }
                outcome.actions.push(Action::MarkUnschedulable {
                    pod: pod_ref.clone(),
                    message: message.clone(),
                });
                outcome.actions.push(Action::RecordEvent {
                    pod: pod_ref,
                    kind: EventKind::Warning,
                    reason: "FailedScheduling".into(),
                    message,
                });
                self.queue.done_unschedulable(
                    &key,
                    fit.diagnosis.unschedulable_plugins.clone(),
                    now,
                );
            }
            Err(error) => {
                let pod_ref = PodRef::of(&pod);
                outcome.actions.push(Action::RecordEvent {
                    pod: pod_ref,
                    kind: EventKind::Warning,
                    reason: "FailedScheduling".into(),
                    message: error.to_string(),
                });
                if matches!(error, ScheduleError::NoNodesAvailable) {
                    self.queue.done_unschedulable(&key, Vec::new(), now);
                } else {
                    self.queue.done_error(&key, now);
                }
            }
        }
        Some(outcome)
    }

    /// The binder reported. On success the pod leaves the queue and a `Scheduled` event is
    /// due; on failure the assumption is forgotten and the pod retried with backoff.
    pub fn bind_finished(
        &mut self,
        bind: PendingBind,
        status: Status,
        now: Instant,
    ) -> Vec<Action> {
        let key = bind.pod.key();
        self.binding.remove(&key);
        if status.is_success() {
            self.queue.done_scheduled(&key);
            return vec![Action::RecordEvent {
                pod: PodRef::of(&bind.pod),
                kind: EventKind::Normal,
                reason: "Scheduled".into(),
                message: format!("Successfully assigned {key} to {}", bind.node),
            }];
        }
        tracing::warn!(pod = %key, node = %bind.node, error = %status.message(), "binding failed; retrying");
        self.scheduler
            .forget(&mut self.snapshot, &bind.pod, &bind.node);
        // Assuming ended the pod's nomination; the API still holds it.
        if let Some(node) = nominated_node_name(&bind.pod) {
            self.snapshot.nominate(Arc::clone(&bind.pod), &node);
        }
        // The pod is still in the queue, in flight; if it was deleted meanwhile it stays gone.
        self.queue.done_error(&key, now);
        Vec::new()
    }
}

/// Drops what the scheduler never reads from a pod it caches: field ownership, and the status
/// but for its phase, nominated node and start time. A decoded Pod takes about 11 KiB, its
/// conditions and container statuses 4.7 KiB of that; with 150,000 pods cached that is 0.7 GB.
fn trim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(status) = pod.status.take() {
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase,
            nominated_node_name: status.nominated_node_name,
            start_time: status.start_time,
            ..Default::default()
        });
    }
}

/// The pod's `status.nominatedNodeName`, if set.
fn nominated_node_name(pod: &PodInfo) -> Option<String> {
    pod.pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.clone())
        .filter(|n| !n.is_empty())
}

/// [`ApiActions`] through a kube client.
pub struct KubeActions {
    client: kube::Client,
    scheduler_name: String,
    instance: String,
}

impl KubeActions {
    pub fn new(client: kube::Client, config: &SchedulerConfig) -> KubeActions {
        KubeActions {
            client,
            scheduler_name: config.scheduler_name.clone(),
            instance: config.instance.clone(),
        }
    }

    async fn act(&self, action: Action) -> Result<(), ActionError> {
        let now = jiff::Timestamp::now();
        let api_error = |action: &'static str, pod: &PodRef| {
            let (namespace, name) = (pod.namespace.clone(), pod.name.clone());
            move |source| ActionError::Api {
                action,
                namespace,
                name,
                source,
            }
        };
        match action {
            Action::Bind { pod, node } => {
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(pod.name.clone()),
                        namespace: Some(pod.namespace.clone()),
                        uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
                        ..Default::default()
                    },
                    target: ObjectReference {
                        kind: Some("Node".into()),
                        name: Some(node),
                        ..Default::default()
                    },
                };
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                api.create_subresource::<_, serde_json::Value>(
                    "binding",
                    &pod.name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .map(drop)
                .map_err(api_error("binding", &pod))
            }
            Action::MarkUnschedulable { pod, message } => {
                let patch = serde_json::json!({"status": {"conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastProbeTime": null,
                    "lastTransitionTime": now.to_string(),
                }]}});
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                api.patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                    .map(drop)
                    .map_err(api_error("updating the status of", &pod))
            }
            Action::Nominate { pod, node } => {
                let patch = serde_json::json!({"status": {"nominatedNodeName": node}});
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                api.patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(drop)
                    .map_err(api_error("nominating a node for", &pod))
            }
            Action::ClearNomination { pod } => {
                let patch = serde_json::json!({"status": {"nominatedNodeName": null}});
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                api.patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(drop)
                    .map_err(api_error("clearing the nominated node of", &pod))
            }
            Action::Evict {
                pod,
                grace_period_seconds,
                preemptor,
            } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
                let condition = serde_json::json!({"status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!("{}: preempting to accommodate a higher priority pod", self.scheduler_name),
                    "lastTransitionTime": now.to_string(),
                }]}});
                // The condition is informational: a failure must not stop the preemption.
                if let Err(error) = api
                    .patch_status(
                        &pod.name,
                        &PatchParams::default(),
                        &Patch::Strategic(condition),
                    )
                    .await
                {
                    tracing::debug!(%error, pod = %pod.name, "setting DisruptionTarget failed");
                }
                let params = DeleteParams {
                    grace_period_seconds: grace_period_seconds.and_then(|g| u32::try_from(g).ok()),
                    ..Default::default()
                };
                self.record_event(
                    &pod,
                    EventKind::Normal,
                    "Preempted",
                    &format!("Preempted by pod {preemptor}"),
                    now,
                )
                .await?;
                api.delete(&pod.name, &params)
                    .await
                    .map(drop)
                    .map_err(api_error("deleting", &pod))
            }
            Action::RecordEvent {
                pod,
                kind,
                reason,
                message,
            } => self.record_event(&pod, kind, &reason, &message, now).await,
        }
    }

    async fn record_event(
        &self,
        pod: &PodRef,
        kind: EventKind,
        reason: &str,
        message: &str,
        now: jiff::Timestamp,
    ) -> Result<(), ActionError> {
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
                ..Default::default()
            },
            type_: Some(match kind {
                EventKind::Normal => "Normal".into(),
                EventKind::Warning => "Warning".into(),
            }),
            reason: Some(reason.into()),
            message: Some(message.into()),
            source: Some(EventSource {
                component: Some(self.scheduler_name.clone()),
                host: None,
            }),
            reporting_component: Some(self.scheduler_name.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(
                if reason == "Scheduled" {
                    "Binding"
                } else {
                    "Scheduling"
                }
                .into(),
            ),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        api.create(&PostParams::default(), &event)
            .await
            .map(drop)
            .map_err(|source| ActionError::Api {
                action: "recording an event for",
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                source,
            })
    }
}

impl ApiActions for KubeActions {
    fn perform(&self, action: Action) -> ActionFuture<'_> {
        Box::pin(self.act(action))
    }
}

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A watch stream ended, which kube-runtime's watcher only does when dropped; restarting
    /// the scheduler helps.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

fn spawn_action(actions: &Arc<dyn ApiActions>, action: Action) {
    let actions = Arc::clone(actions);
    tokio::spawn(async move {
        if let Err(error) = actions.perform(action).await {
            tracing::warn!(%error, "scheduler action failed");
        }
    });
}

/// Runs the scheduler until a watch ends: waits for the first full list of Nodes, Pods and
/// PodDisruptionBudgets, then schedules pending pods as they become due, binding concurrently.
pub async fn run(client: kube::Client, config: SchedulerConfig) -> Result<(), RunError> {
    let actions: Arc<dyn ApiActions> = Arc::new(KubeActions::new(client.clone(), &config));
    run_with(client, config, actions).await
}

/// [`run`] with the effects supplied (tests, or a caller wrapping them with metrics).
pub async fn run_with(
    client: kube::Client,
    config: SchedulerConfig,
    actions: Arc<dyn ApiActions>,
) -> Result<(), RunError> {
    // Field ownership is never read here, and is often the bulk of an object: it is dropped
    // from what the caches hold, as kube-scheduler's informers trim managedFields.
    let mut nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|node| node.metadata.managed_fields = None)
        .boxed();
    let mut pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(trim_pod)
        .boxed();
    let mut budgets = watcher(
        Api::<PodDisruptionBudget>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut state = SchedulerLoop::new(config);
    let binder: Arc<dyn Bind> = Arc::new(DefaultBinder {
        api: Arc::new(ActionsBinder(Arc::clone(&actions))),
    });
    let (bind_done_tx, mut bind_done) = mpsc::unbounded_channel::<(PendingBind, Status)>();
    let (mut nodes_synced, mut pods_synced, mut budgets_synced) = (false, false, false);
    let mut seen_nodes: Option<HashSet<String>> = None;
    let mut seen_pods: Option<HashSet<(String, String)>> = None;
    let mut seen_budgets: Option<HashSet<(String, String)>> = None;
    loop {
        // Like kube-scheduler, wait for every cache: preempting before the budgets are known
        // could pick victims a budget protects.
        let ready = nodes_synced && pods_synced && budgets_synced;
        let schedule_now = ready && state.queue.has_active();
        // Only needed when nothing is due now (it looks at every queued pod).
        let wakeup = if schedule_now {
            Instant::now() + Duration::from_secs(3600)
        } else {
            state
                .next_wakeup()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
        };
        // Not `biased`: tokio picks among the ready branches at random, so a burst of watch
        // events (thousands a second while a cluster fills) cannot starve scheduling, nor
        // scheduling the watches — kube-scheduler runs its handlers and its scheduling loop
        // side by side. A pod due now is scheduled without a timer (a timer fires on the next
        // millisecond tick at the soonest).
        tokio::select! {
            event = nodes.next() => {
                let now = Instant::now();
                match event {
                    None => return Err(RunError::WatchEnded("node")),
                    Some(Err(error)) => tracing::warn!(%error, "node watch failed; retrying"),
                    Some(Ok(watcher::Event::Init)) => seen_nodes = Some(HashSet::new()),
                    Some(Ok(watcher::Event::InitApply(node) | watcher::Event::Apply(node))) => {
                        if let (Some(seen), Some(name)) = (seen_nodes.as_mut(), node.metadata.name.as_ref()) {
                            seen.insert(name.clone());
                        }
                        state.node_applied(node, now);
                    }
                    Some(Ok(watcher::Event::Delete(node))) => {
                        state.node_deleted(node.metadata.name.as_deref().unwrap_or_default(), now);
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        // A relist: nodes not listed again are gone.
                        if let Some(seen) = seen_nodes.take() {
                            let stale: Vec<String> = state.snapshot.nodes().iter()
                                .map(|n| n.name.clone()).filter(|n| !seen.contains(n)).collect();
                            for name in stale {
                                state.node_deleted(&name, now);
                            }
                        }
                        nodes_synced = true;
                    }
                }
            }
            event = pods.next() => {
                let now = Instant::now();
                match event {
                    None => return Err(RunError::WatchEnded("pod")),
                    Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                    Some(Ok(watcher::Event::Init)) => seen_pods = Some(HashSet::new()),
                    Some(Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod))) => {
                        if let Some(seen) = seen_pods.as_mut() {
                            seen.insert((
                                pod.metadata.namespace.clone().unwrap_or_default(),
                                pod.metadata.name.clone().unwrap_or_default(),
                            ));
                        }
                        state.pod_applied(pod, now);
                    }
                    Some(Ok(watcher::Event::Delete(pod))) => {
                        state.pod_deleted(
                            pod.metadata.namespace.as_deref().unwrap_or_default(),
                            pod.metadata.name.as_deref().unwrap_or_default(),
                            now,
                        );
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Some(seen) = seen_pods.take() {
                            let stale: Vec<(String, String)> = state.snapshot.nodes().iter()
                                .flat_map(|n| n.pods.iter())
                                .map(|p| (p.namespace.clone(), p.name.clone()))
                                .filter(|k| !seen.contains(k) && !state.binding.contains(&format!("{}/{}", k.0, k.1)))
                                .collect();
                            for (namespace, name) in stale {
                                state.pod_deleted(&namespace, &name, now);
                            }
                        }
                        pods_synced = true;
                    }
                }
            }
            event = budgets.next() => {
                match event {
                    None => return Err(RunError::WatchEnded("poddisruptionbudget")),
                    Some(Err(error)) => tracing::warn!(%error, "poddisruptionbudget watch failed; retrying"),
                    Some(Ok(watcher::Event::Init)) => seen_budgets = Some(HashSet::new()),
                    Some(Ok(watcher::Event::InitApply(pdb) | watcher::Event::Apply(pdb))) => {
                        if let Some(seen) = seen_budgets.as_mut() {
                            seen.insert((
                                pdb.metadata.namespace.clone().unwrap_or_default(),
                                pdb.metadata.name.clone().unwrap_or_default(),
                            ));
                        }
                        state.disruption_budget_applied(&pdb);
                    }
                    Some(Ok(watcher::Event::Delete(pdb))) => {
                        state.disruption_budget_deleted(
                            pdb.metadata.namespace.as_deref().unwrap_or_default(),
                            pdb.metadata.name.as_deref().unwrap_or_default(),
                        );
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Some(seen) = seen_budgets.take() {
                            let stale: Vec<(String, String)> = state.snapshot.disruption_budgets()
                                .map(|b| (b.namespace.clone(), b.name.clone()))
                                .filter(|k| !seen.contains(k))
                                .collect();
                            for (namespace, name) in stale {
                                state.disruption_budget_deleted(&namespace, &name);
                            }
                        }
                        budgets_synced = true;
                    }
                }
            }
            Some((bind, status)) = bind_done.recv() => {
                for action in state.bind_finished(bind, status, Instant::now()) {
                    spawn_action(&actions, action);
                }
            }
            _ = std::future::ready(()), if schedule_now => {
                schedule_next(&mut state, &actions, &binder, &bind_done_tx);
            }
            _ = tokio::time::sleep_until(wakeup), if ready && !schedule_now => {
                schedule_next(&mut state, &actions, &binder, &bind_done_tx);
            }
        }
    }
}

/// One scheduling cycle: the next due pod is placed, and its binding runs in the background.
fn schedule_next(
    state: &mut SchedulerLoop,
    actions: &Arc<dyn ApiActions>,
    binder: &Arc<dyn Bind>,
    bind_done: &mpsc::UnboundedSender<(PendingBind, Status)>,
) {
    let Some(outcome) = state.schedule_next(Instant::now()) else {
        return;
    };
    for action in outcome.actions {
        if !matches!(action, Action::Bind { .. }) {
            spawn_action(actions, action);
        }
    }
    if let Some(bind) = outcome.bind {
        let binder = Arc::clone(binder);
        let done = bind_done.clone();
        tokio::spawn(async move {
            let status = binder.bind(&bind.pod, &bind.node).await;
            let _ = done.send((bind, status));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};
    use std::sync::Mutex;

    /// Records every action, and fails binds when told to.
    #[derive(Default)]
    struct RecordingActions {
        performed: Mutex<Vec<Action>>,
    }

    impl ApiActions for RecordingActions {
        fn perform(&self, action: Action) -> ActionFuture<'_> {
            self.performed.lock().unwrap().push(action);
            Box::pin(async { Ok(()) })
        }
    }

    fn pod_ref(name: &str) -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn small_node(name: &str) -> Node {
        Arc::unwrap_or_clone(
            node(name)
                .allocatable(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "110")])
                .build(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_fitting_pod_is_assumed_bound_and_announced() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.pod_applied(pod("web").requests(&[("cpu", "600m")]).build(), now);
        let outcome = state.schedule_next(now).expect("a pod was due");
        assert_eq!(
            outcome.actions,
            vec![Action::Bind {
                pod: pod_ref("web"),
                node: "n1".into()
            }]
        );
        // Assumed: the next pod already sees the CPU taken.
        assert_eq!(
            state.snapshot().node("n1").unwrap().requested.milli_cpu,
            600
        );
        let bind = outcome.bind.unwrap();

        let actions = Arc::new(RecordingActions::default());
        let binder = DefaultBinder {
            api: Arc::new(ActionsBinder(actions.clone())),
        };
        let status = binder.bind(&bind.pod, &bind.node).await;
        assert_eq!(actions.performed.lock().unwrap().clone(), outcome.actions);

        let after = state.bind_finished(bind, status, now);
        assert_eq!(
            after,
            vec![Action::RecordEvent {
                pod: pod_ref("web"),
                kind: EventKind::Normal,
                reason: "Scheduled".into(),
                message: "Successfully assigned default/web to n1".into(),
            }]
        );
        assert!(state.queue().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_that_fits_nowhere_is_reported_and_waits() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.pod_applied(pod("big").requests(&[("cpu", "2")]).build(), now);
        let outcome = state.schedule_next(now).unwrap();
        let message = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are \
                       available: 1 No preemption victims found for incoming pod.."
            .to_string();
        assert_eq!(
            outcome.actions,
            vec![
                Action::MarkUnschedulable {
                    pod: pod_ref("big"),
                    message: message.clone()
                },
                Action::RecordEvent {
                    pod: pod_ref("big"),
                    kind: EventKind::Warning,
                    reason: "FailedScheduling".into(),
                    message,
                },
            ]
        );
        assert!(outcome.bind.is_none());
        assert!(
            state.schedule_next(now).is_none(),
            "parked until something changes"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        state.node_applied(
            Arc::unwrap_or_clone(
                node("n2")
                    .allocatable(&[("cpu", "4"), ("pods", "110")])
                    .build(),
            ),
            Instant::now(),
        );
        let retry = state
            .schedule_next(Instant::now())
            .expect("a new node wakes it");
        assert_eq!(
            retry.actions,
            vec![Action::Bind {
                pod: pod_ref("big"),
                node: "n2".into()
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_bind_forgets_the_assumption_and_retries_after_backoff() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.pod_applied(pod("web").requests(&[("cpu", "600m")]).build(), now);
        let bind = state.schedule_next(now).unwrap().bind.unwrap();
        // The watch echoes the still-unbound pod meanwhile: it must not be queued twice.
        state.pod_applied(pod("web").requests(&[("cpu", "600m")]).build(), now);
        let after = state.bind_finished(bind, Status::error("conflict"), now);
        assert!(after.is_empty());
        assert_eq!(state.snapshot().node("n1").unwrap().requested.milli_cpu, 0);
        assert!(state.schedule_next(now).is_none(), "backing off");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(state.schedule_next(Instant::now()).unwrap().bind.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn preemption_evicts_victims_and_nominates_the_node() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.pod_applied(
            pod("low")
                .priority(1)
                .requests(&[("cpu", "1")])
                .node_name("n1")
                .build(),
            now,
        );
        state.pod_applied(
            pod("vip").priority(100).requests(&[("cpu", "1")]).build(),
            now,
        );
        let outcome = state.schedule_next(now).unwrap();
        assert_eq!(
            outcome.actions[..2],
            [
                Action::Evict {
                    pod: pod_ref("low"),
                    grace_period_seconds: None,
                    preemptor: "uid-vip on node n1".into()
                },
                Action::Nominate {
                    pod: pod_ref("vip"),
                    node: "n1".into()
                },
            ]
        );
        // The victim's deletion wakes the preemptor.
        tokio::time::advance(Duration::from_secs(1)).await;
        state.pod_deleted("default", "low", Instant::now());
        assert_eq!(
            state.schedule_next(Instant::now()).unwrap().actions,
            vec![Action::Bind {
                pod: pod_ref("vip"),
                node: "n1".into()
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pods_of_other_schedulers_terminating_or_bound_are_left_alone() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        let mut other = pod("other").build();
        other.spec.as_mut().unwrap().scheduler_name = Some("custom".into());
        state.pod_applied(other, now);
        let mut finished = pod("done").build();
        finished.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        state.pod_applied(finished, now);
        state.pod_applied(pod("bound").node_name("n1").build(), now);
        assert!(state.schedule_next(now).is_none());
        assert_eq!(state.snapshot().node("n1").unwrap().pods.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn space_freed_by_preemption_is_kept_for_the_preemptor() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.pod_applied(
            pod("low")
                .priority(1)
                .requests(&[("cpu", "1")])
                .node_name("n1")
                .build(),
            now,
        );
        state.pod_applied(
            pod("vip").priority(100).requests(&[("cpu", "1")]).build(),
            now,
        );
        let preempting = state.schedule_next(now).unwrap();
        assert!(preempting.actions.contains(&Action::Nominate {
            pod: pod_ref("vip"),
            node: "n1".into()
        }));
        assert_eq!(state.snapshot().nominated_node("default/vip"), Some("n1"));
        // The victim goes at once, while the preemptor serves its backoff; a less important
        // pod arriving now must not take the space.
        state.pod_deleted("default", "low", now);
        state.pod_applied(
            pod("mid").priority(50).requests(&[("cpu", "1")]).build(),
            now,
        );
        let mid = state.schedule_next(now).unwrap();
        assert!(mid.bind.is_none(), "{:?}", mid.actions);
        // The watch echoes the preemptor before the nominating patch lands: still nominated.
        state.pod_applied(
            pod("vip").priority(100).requests(&[("cpu", "1")]).build(),
            now,
        );
        assert_eq!(state.snapshot().nominated_node("default/vip"), Some("n1"));
        tokio::time::advance(Duration::from_secs(1)).await;
        let vip = state.schedule_next(Instant::now()).unwrap();
        assert_eq!(
            vip.actions,
            vec![Action::Bind {
                pod: pod_ref("vip"),
                node: "n1".into()
            }]
        );
        assert!(!state.snapshot().has_nominated_pods());
    }

    #[tokio::test(start_paused = true)]
    async fn nominations_follow_the_api_and_end_with_the_pod() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.pod_applied(pod("waiting").nominated("n1").build(), now);
        assert_eq!(
            state.snapshot().nominated_node("default/waiting"),
            Some("n1")
        );
        // Cleared through the API: the nomination ends.
        state.pod_applied(pod("waiting").build(), now);
        assert!(!state.snapshot().has_nominated_pods());
        state.pod_applied(pod("waiting").nominated("n1").build(), now);
        state.pod_deleted("default", "waiting", now);
        assert!(!state.snapshot().has_nominated_pods());
        state.pod_applied(pod("bound").nominated("n1").build(), now);
        state.pod_applied(pod("bound").nominated("n1").node_name("n1").build(), now);
        assert!(!state.snapshot().has_nominated_pods());
    }

    #[tokio::test(start_paused = true)]
    async fn preemption_spares_pods_a_disruption_budget_protects() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.node_applied(small_node("n2"), now);
        for (name, node, priority, app) in [("db", "n1", 1, "db"), ("web", "n2", 5, "web")] {
            state.pod_applied(
                pod(name)
                    .priority(priority)
                    .label("app", app)
                    .requests(&[("cpu", "1")])
                    .node_name(node)
                    .build(),
                now,
            );
        }
        state.disruption_budget_applied(&crate::testing::budget("db", "db", 0, &[]));
        state.pod_applied(
            pod("vip").priority(100).requests(&[("cpu", "1")]).build(),
            now,
        );
        let outcome = state.schedule_next(now).unwrap();
        assert_eq!(
            outcome.actions[..2],
            [
                Action::Evict {
                    pod: pod_ref("web"),
                    grace_period_seconds: None,
                    preemptor: "uid-vip on node n2".into()
                },
                Action::Nominate {
                    pod: pod_ref("vip"),
                    node: "n2".into()
                },
            ]
        );
        state.disruption_budget_deleted("default", "db");
        assert_eq!(state.snapshot().disruption_budgets().len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_preemptor_waits_for_its_terminating_victims_instead_of_preempting_again() {
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        let low = || {
            pod("low")
                .priority(1)
                .requests(&[("cpu", "1")])
                .node_name("n1")
        };
        state.pod_applied(low().build(), now);
        state.pod_applied(
            pod("vip").priority(100).requests(&[("cpu", "1")]).build(),
            now,
        );
        assert!(matches!(
            state.schedule_next(now).unwrap().actions[0],
            Action::Evict { .. }
        ));
        // The victim is being deleted with a grace period; something else wakes the preemptor.
        state.pod_applied(low().terminating_by_preemption().build(), now);
        tokio::time::advance(Duration::from_secs(2)).await;
        state.node_applied(
            Arc::unwrap_or_clone(node("tiny").allocatable(&[("cpu", "100m")]).build()),
            Instant::now(),
        );
        let retry = state.schedule_next(Instant::now()).unwrap();
        assert!(
            !retry
                .actions
                .iter()
                .any(|a| matches!(a, Action::Evict { .. } | Action::Nominate { .. })),
            "{:?}",
            retry.actions
        );
        let Action::MarkUnschedulable { message, .. } = &retry.actions[0] else {
            panic!("{:?}", retry.actions);
        };
        assert!(
            message.ends_with(
                "preemption: not eligible due to a terminating pod on the nominated node.."
            ),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn preemption_takes_over_or_drops_stale_nominations() {
        // A less important pod nominated to the chosen node loses its claim.
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        let now = Instant::now();
        state.node_applied(small_node("n1"), now);
        state.pod_applied(
            pod("low")
                .priority(1)
                .requests(&[("cpu", "1")])
                .node_name("n1")
                .build(),
            now,
        );
        let requests = [("cpu", "1")];
        state.pod_applied(
            pod("mid")
                .priority(50)
                .requests(&requests)
                .nominated("n1")
                .build(),
            now,
        );
        state.pod_applied(pod("vip").priority(100).requests(&requests).build(), now);
        let outcome = state.schedule_next(now).unwrap();
        assert!(
            outcome.actions.contains(&Action::ClearNomination {
                pod: pod_ref("mid")
            }),
            "{:?}",
            outcome.actions
        );
        assert_eq!(state.snapshot().nominated_node("default/mid"), None);
        assert_eq!(state.snapshot().nominated_node("default/vip"), Some("n1"));

        // A pod no preemption can help any more drops its nomination.
        let mut state = SchedulerLoop::new(SchedulerConfig::default());
        state.node_applied(small_node("n1"), now);
        state.pod_applied(
            pod("big")
                .priority(100)
                .requests(&[("cpu", "2")])
                .nominated("n1")
                .build(),
            now,
        );
        let outcome = state.schedule_next(now).unwrap();
        assert_eq!(
            outcome.actions[0],
            Action::ClearNomination {
                pod: pod_ref("big")
            }
        );
        assert!(!state.snapshot().has_nominated_pods());
    }
}
