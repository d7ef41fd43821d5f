//! Node lifecycle, as kube-controller-manager's node lifecycle controller and taint manager:
//! a node whose agent stops renewing its Lease goes `Ready=Unknown` after the grace period,
//! node conditions and `spec.unschedulable` become `node.kubernetes.io/*` taints, and pods on a
//! node with a `NoExecute` taint they do not tolerate are deleted — at once, or after their
//! `tolerationSeconds` — so that their controllers recreate them on nodes that work.
//!
//! The decisions ([`assess`], [`desired_taints`], [`eviction_due`]) are pure; [`run`] reads them
//! from reflector caches once per monitor period and applies what changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;

use capstan_scheduler::snapshot::tolerates;

use crate::actions::{Actions, EventRecord, KubeActions};
use crate::informers::SharedInformers;
use crate::pod_cache::PodCache;
use serde_json::json;

/// Taint keys the controller owns (`k8s.io/api/core/v1` well-known taints).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";

const OWNED_TAINTS: &[&str] = &[
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    TAINT_MEMORY_PRESSURE,
    TAINT_DISK_PRESSURE,
    TAINT_PID_PRESSURE,
];

/// The conditions an agent reports, all set to Unknown when it goes silent.
const AGENT_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// How often nodes are looked at (`--node-monitor-period`, 5 s).
    pub monitor_period: Duration,
    /// How long a node may go without a heartbeat before it is Unknown
    /// (`--node-monitor-grace-period`, 40 s).
    pub grace_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(40),
        }
    }
}

/// What the controller concludes about a node's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Heard from within the grace period; its conditions stand as it wrote them.
    Reporting,
    /// Silent for longer than the grace period, and not yet marked Unknown.
    WentSilent,
    /// Silent and already marked Unknown.
    Silent,
}

/// When the agent was last heard from: its Lease renewal or its Ready heartbeat, whichever
/// is later (kubelet writes both; either proves it alive).
fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let ready = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    ready.max(renewed)
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether `node`'s agent still reports. A node never heard from counts from its creation.
pub fn assess(node: &Node, lease: Option<&Lease>, now: Timestamp, grace: Duration) -> Health {
    let since = last_heartbeat(node, lease)
        .or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    let silent_for = now.duration_since(since);
    if silent_for.as_secs_f64() <= grace.as_secs_f64() {
        return Health::Reporting;
    }
    match ready_condition(node) {
        Some(c) if c.status == "Unknown" => Health::Silent,
        _ => Health::WentSilent,
    }
}

/// The taints the node should carry from its conditions and `spec.unschedulable`; other
/// taints (users', the control plane's) are never touched.
pub fn desired_taints(node: &Node, now: Timestamp) -> Vec<Taint> {
    let condition = |kind: &str| {
        node.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .map(|c| c.status.as_str())
    };
    let existing = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    // A NoExecute taint keeps the time it was first added: eviction deadlines count from it.
    let taint = |key: &str, effect: &str| {
        let time_added = (effect == "NoExecute").then(|| {
            existing
                .iter()
                .find(|t| t.key == key && t.effect == effect)
                .and_then(|t| t.time_added.clone())
                .unwrap_or(Time(now))
        });
        Taint {
            key: key.to_string(),
            effect: effect.to_string(),
            time_added,
            value: None,
        }
    };
    let mut taints = Vec::new();
    match condition("Ready") {
        Some("True") => {}
        Some("Unknown") => {
            taints.push(taint(TAINT_UNREACHABLE, "NoSchedule"));
            taints.push(taint(TAINT_UNREACHABLE, "NoExecute"));
        }
        Some(_) => {
            taints.push(taint(TAINT_NOT_READY, "NoSchedule"));
            taints.push(taint(TAINT_NOT_READY, "NoExecute"));
        }
        // Not reported yet: nothing new is scheduled there, but nothing is evicted either
        // (Kubernetes' TaintNodesByCondition does the same at registration).
        None => taints.push(taint(TAINT_NOT_READY, "NoSchedule")),
    }
    for (kind, key) in [
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
    ] {
        if condition(kind) == Some("True") {
            taints.push(taint(key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        taints.push(taint(TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    taints
}

/// The node's taints with the controller's own replaced by `desired`, or `None` when nothing
/// changes.
fn merged_taints(node: &Node, desired: &[Taint]) -> Option<Vec<Taint>> {
    let existing = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut merged: Vec<Taint> = existing
        .iter()
        .filter(|t| !OWNED_TAINTS.contains(&t.key.as_str()))
        .cloned()
        .collect();
    merged.extend(desired.iter().cloned());
    let key = |t: &Taint| (t.key.clone(), t.effect.clone());
    let mut before: Vec<_> = existing.iter().map(key).collect();
    let mut after: Vec<_> = merged.iter().map(key).collect();
    before.sort();
    after.sort();
    (before != after).then_some(merged)
}

/// When a pod on a node with these taints must go, as the taint manager decides: now if one
/// NoExecute taint is not tolerated, at the earliest `timeAdded + tolerationSeconds` of the
/// tolerations used, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Never,
    Now,
    At(Timestamp),
}

pub fn eviction_due(pod: &Pod, taints: &[Taint], now: Timestamp) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut due: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        // Tolerated forever if any matching toleration has no limit; otherwise the shortest.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let seconds = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let at = added
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(added);
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    match due {
        None => Eviction::Never,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

/// Why a pass of the controller could not finish; the next pass retries.
#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    #[error("marking node {node} Unknown: {source}")]
    MarkUnknown { node: String, source: kube::Error },
    #[error("updating the taints of node {node}: {source}")]
    Taints { node: String, source: kube::Error },
    #[error("evicting pod {namespace}/{name}: {source}")]
    Evict {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Takes the controller's caches from the shared informers (Nodes, the node Leases, Pods) and
/// returns it, to be polled once they are filled; runs until dropped.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
    config: NodeLifecycleConfig,
) -> impl Future<Output = ()> + use<> {
    // Plain caches: the controller looks at all of them once per monitor period.
    let controller = NodeLifecycle {
        client,
        config,
        nodes: informers.store(),
        leases: informers
            .informer_with(|client| Api::<Lease>::namespaced(client, "kube-node-lease"))
            .store(),
        pods: informers.pods(),
    };
    async move {
        let mut ticks = tokio::time::interval(controller.config.monitor_period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = controller.pass(Timestamp::now()).await {
                tracing::warn!("node lifecycle: {e}");
            }
        }
    }
}

struct NodeLifecycle {
    client: kube::Client,
    config: NodeLifecycleConfig,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: PodCache,
}

impl NodeLifecycle {
    /// One look at every node: health, taints, then evictions.
    async fn pass(&self, now: Timestamp) -> Result<(), NodeLifecycleError> {
        let leases: BTreeMap<String, Arc<Lease>> = self
            .leases
            .state()
            .into_iter()
            .filter_map(|l| Some((l.metadata.name.clone()?, l)))
            .collect();
        let mut taints_by_node: BTreeMap<String, Vec<Taint>> = BTreeMap::new();
        for node in self.nodes.state() {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let mut node = (*node).clone();
            if assess(
                &node,
                leases.get(&name).map(|l| &**l),
                now,
                self.config.grace_period,
            ) == Health::WentSilent
            {
                let never_reported = ready_condition(&node).is_none();
                node = self.mark_unknown(&name, never_reported, now).await?;
                self.mark_pods_not_ready(&name).await;
            }
            let desired = desired_taints(&node, now);
            if let Some(merged) = merged_taints(&node, &desired) {
                let nodes: Api<Node> = Api::all(self.client.clone());
                let patch = json!({"spec": {"taints": merged}});
                nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|source| NodeLifecycleError::Taints {
                        node: name.clone(),
                        source,
                    })?;
            }
            taints_by_node.insert(name, desired);
        }
        // Only NoExecute taints evict: the pods of the other nodes need no look.
        let evicting = taints_by_node
            .iter()
            .filter(|(_, taints)| taints.iter().any(|t| t.effect == "NoExecute"));
        for (node, taints) in evicting {
            for pod in self.pods.on_node(node) {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if eviction_due(&pod, taints, now) == Eviction::Now {
                    self.evict(&pod).await?;
                }
            }
        }
        Ok(())
    }

    /// Sets the agent's conditions to Unknown, as `tryUpdateNodeHealth` does.
    async fn mark_unknown(
        &self,
        name: &str,
        never_reported: bool,
        now: Timestamp,
    ) -> Result<Node, NodeLifecycleError> {
        let (reason, message) = if never_reported {
            (
                "NodeStatusNeverUpdated",
                "Kubelet never posted node status.",
            )
        } else {
            ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        };
        let conditions: Vec<_> = AGENT_CONDITIONS
            .iter()
            .map(|kind| {
                json!({
                    "type": kind,
                    "status": "Unknown",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": Time(now),
                })
            })
            .collect();
        let nodes: Api<Node> = Api::all(self.client.clone());
        // Strategic merge keys conditions by type, so the other conditions stay.
        let patch = json!({"status": {"conditions": conditions}});
        tracing::info!(
            node = name,
            "node stopped posting status; marking it Unknown"
        );
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .map_err(|source| NodeLifecycleError::MarkUnknown {
                node: name.to_string(),
                source,
            })
    }

    /// Pods on a silent node are no longer ready (`MarkPodsNotReady`), so Services and
    /// rollouts stop counting on them.
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.pods.on_node(node) {
            let (Some(namespace), Some(name)) = (
                pod.metadata.namespace.as_deref(),
                pod.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let patch = json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": Time(Timestamp::now())}
            ]}});
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            if let Err(e) = pods
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!("marking pod {namespace}/{name} not ready: {e}");
            }
        }
    }

    /// Deletes a pod the taint manager evicts, saying why in a `DisruptionTarget` condition
    /// and an event first.
    async fn evict(&self, pod: &Pod) -> Result<(), NodeLifecycleError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let patch = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Time(Timestamp::now()),
        }]}});
        let _ = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await;
        KubeActions::new(self.client.clone()).record_event(EventRecord::normal(
            "taint-eviction-controller",
            pod,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {namespace}/{name}"),
        ));
        tracing::info!("taint manager: evicting pod {namespace}/{name}");
        match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(NodeLifecycleError::Evict {
                namespace,
                name,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn node(ready: Option<(&str, i64)>, unschedulable: bool, taints: Vec<Taint>) -> Node {
        let conditions = ready.map(|(status, heartbeat)| {
            vec![NodeCondition {
                type_: "Ready".into(),
                status: status.into(),
                last_heartbeat_time: Some(Time(at(heartbeat))),
                ..Default::default()
            }]
        });
        serde_json::from_value(json!({
            "metadata": {"name": "n", "creationTimestamp": Time(at(0))},
            "spec": {"unschedulable": unschedulable, "taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn lease(renewed: i64) -> Lease {
        serde_json::from_value(json!({"metadata": {"name": "n"},
            "spec": {"renewTime": Time(at(renewed))}}))
        .unwrap()
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: added.map(|s| Time(at(s))),
            value: None,
        }
    }

    #[test]
    fn a_node_is_unknown_only_after_the_grace_period_without_lease_or_heartbeat() {
        let grace = Duration::from_secs(40);
        let cases = [
            (
                "lease renewed recently",
                Some(("True", 0)),
                Some(95),
                100,
                Health::Reporting,
            ),
            (
                "heartbeat recent, no lease",
                Some(("True", 70)),
                None,
                100,
                Health::Reporting,
            ),
            (
                "exactly at the grace period",
                Some(("True", 60)),
                None,
                100,
                Health::Reporting,
            ),
            (
                "silent past the grace period",
                Some(("True", 10)),
                Some(20),
                100,
                Health::WentSilent,
            ),
            (
                "already Unknown",
                Some(("Unknown", 10)),
                Some(20),
                100,
                Health::Silent,
            ),
            (
                "never reported, created long ago",
                None,
                None,
                100,
                Health::WentSilent,
            ),
            (
                "never reported, just created",
                None,
                None,
                30,
                Health::Reporting,
            ),
        ];
        for (case, ready, renewed, now, want) in cases {
            let n = node(ready, false, vec![]);
            let l = renewed.map(lease);
            assert_eq!(assess(&n, l.as_ref(), at(now), grace), want, "{case}");
        }
    }

    #[test]
    fn conditions_and_cordoning_become_the_well_known_taints() {
        let keys = |n: &Node| {
            desired_taints(n, at(5))
                .into_iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect::<Vec<_>>()
        };
        assert!(keys(&node(Some(("True", 0)), false, vec![])).is_empty());
        assert_eq!(
            keys(&node(Some(("Unknown", 0)), false, vec![])),
            [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(
            keys(&node(Some(("False", 0)), true, vec![])),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute",
                "node.kubernetes.io/unschedulable:NoSchedule"
            ]
        );
        assert_eq!(
            keys(&node(None, false, vec![])),
            ["node.kubernetes.io/not-ready:NoSchedule"]
        );
        let mut pressured = node(Some(("True", 0)), false, vec![]);
        pressured
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(NodeCondition {
                type_: "DiskPressure".into(),
                status: "True".into(),
                ..Default::default()
            });
        assert_eq!(
            keys(&pressured),
            ["node.kubernetes.io/disk-pressure:NoSchedule"]
        );
    }

    #[test]
    fn a_no_execute_taint_keeps_the_time_it_was_first_added() {
        let existing = taint(TAINT_UNREACHABLE, "NoExecute", Some(1));
        let n = node(Some(("Unknown", 0)), false, vec![existing]);
        let desired = desired_taints(&n, at(50));
        let no_execute = desired.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert_eq!(no_execute.time_added, Some(Time(at(1))));
    }

    #[test]
    fn merging_keeps_other_taints_and_reports_no_change_when_there_is_none() {
        let user = taint("dedicated", "NoSchedule", None);
        let n = node(Some(("True", 0)), true, vec![user.clone()]);
        let desired = desired_taints(&n, at(0));
        let merged = merged_taints(&n, &desired).unwrap();
        assert_eq!(merged.len(), 2);
        assert!(merged.contains(&user));
        let settled = node(Some(("True", 0)), true, merged);
        assert_eq!(
            merged_taints(&settled, &desired_taints(&settled, at(0))),
            None
        );
    }

    #[test]
    fn tolerations_match_taints_as_kubernetes_does() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        let tol =
            |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| {
                Toleration {
                    key: key.map(Into::into),
                    operator: op.map(Into::into),
                    value: value.map(Into::into),
                    effect: effect.map(Into::into),
                    toleration_seconds: None,
                }
            };
        let cases = [
            (
                "equal key and value",
                tol(Some("k"), None, Some("v"), None),
                true,
            ),
            (
                "wrong value",
                tol(Some("k"), Some("Equal"), Some("w"), None),
                false,
            ),
            (
                "exists on the key",
                tol(Some("k"), Some("Exists"), None, None),
                true,
            ),
            (
                "exists with no key tolerates all",
                tol(None, Some("Exists"), None, None),
                true,
            ),
            (
                "other effect",
                tol(Some("k"), Some("Exists"), None, Some("NoSchedule")),
                false,
            ),
            (
                "other key",
                tol(Some("j"), Some("Exists"), None, None),
                false,
            ),
        ];
        for (case, toleration, want) in cases {
            assert_eq!(tolerates(&toleration, &t), want, "{case}");
        }
    }

    #[test]
    fn pods_are_evicted_after_their_toleration_seconds_or_at_once_or_never() {
        let pod = |seconds: Option<Option<i64>>| -> Pod {
            let tolerations = match seconds {
                None => json!([]),
                Some(s) => json!([{"key": TAINT_UNREACHABLE, "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": s}]),
            };
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [], "tolerations": tolerations}}))
            .unwrap()
        };
        let unreachable = [taint(TAINT_UNREACHABLE, "NoExecute", Some(0))];
        let cases = [
            ("not tolerated", pod(None), 10, Eviction::Now),
            (
                "tolerated for 300 s, 10 s in",
                pod(Some(Some(300))),
                10,
                Eviction::At(at(300)),
            ),
            (
                "tolerated for 300 s, 300 s in",
                pod(Some(Some(300))),
                300,
                Eviction::Now,
            ),
            (
                "tolerated forever",
                pod(Some(None)),
                10_000,
                Eviction::Never,
            ),
        ];
        for (case, p, now, want) in cases {
            assert_eq!(eviction_due(&p, &unreachable, at(now)), want, "{case}");
        }
        // NoSchedule taints never evict.
        let cordoned = [taint(TAINT_UNSCHEDULABLE, "NoSchedule", None)];
        assert_eq!(eviction_due(&pod(None), &cordoned, at(0)), Eviction::Never);
    }
}
