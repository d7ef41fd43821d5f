//! Builders of Nodes and Pods for the plugins' table-driven tests, and a helper that runs one
//! plugin's PreFilter and Filter the way the scheduler does.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity,
    PodCondition, PodSpec, PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use crate::framework::{Code, Cycle, Filter, PreFilter, Status};
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

pub struct NodeBuilder(Node);

pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(list(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")])),
            ..Default::default()
        }),
    })
}

impl NodeBuilder {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    pub fn allocatable(mut self, pairs: &[(&str, &str)]) -> Self {
        self.0.status.get_or_insert_default().allocatable = Some(list(pairs));
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.0
            .spec
            .get_or_insert_default()
            .taints
            .get_or_insert_default()
            .push(Taint {
                key: key.into(),
                value: (!value.is_empty()).then(|| value.into()),
                effect: effect.into(),
                time_added: None,
            });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.0.spec.get_or_insert_default().unschedulable = Some(true);
        self
    }

    pub fn image(mut self, name: &str, size: i64) -> Self {
        self.0
            .status
            .get_or_insert_default()
            .images
            .get_or_insert_default()
            .push(ContainerImage {
                names: Some(vec![name.into()]),
                size_bytes: Some(size),
            });
        self
    }

    pub fn build(self) -> Arc<Node> {
        Arc::new(self.0)
    }
}

pub struct PodBuilder(Pod);

pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    })
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.get_or_insert_default()
    }

    fn affinity(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_default()
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    pub fn requests(mut self, pairs: &[(&str, &str)]) -> Self {
        self.spec().containers[0].resources = Some(ResourceRequirements {
            requests: Some(list(pairs)),
            ..Default::default()
        });
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.spec().containers[0].image = Some(image.into());
        self
    }

    pub fn node_name(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.spec().priority = Some(priority);
        self
    }

    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec()
            .tolerations
            .get_or_insert_default()
            .push(Toleration {
                key: some(key),
                operator: some(operator),
                value: some(value),
                effect: some(effect),
                toleration_seconds: None,
            });
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_default()
            .insert(key.into(), value.into());
        self
    }

    /// Adds a required node affinity term with one expression.
    pub fn required_node_term(mut self, key: &str, operator: &str, values: &[&str]) -> Self {
        let term = node_term(key, operator, values);
        let node_affinity = self.affinity().node_affinity.get_or_insert_default();
        node_affinity
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            })
            .node_selector_terms
            .push(term);
        self
    }

    pub fn preferred_node_term(
        mut self,
        weight: i32,
        key: &str,
        operator: &str,
        values: &[&str],
    ) -> Self {
        let preference = node_term(key, operator, values);
        let node_affinity: &mut NodeAffinity =
            self.affinity().node_affinity.get_or_insert_default();
        node_affinity
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(PreferredSchedulingTerm { preference, weight });
        self
    }

    pub fn spread(mut self, max_skew: i32, topology_key: &str, hard: bool, app: &str) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_default()
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: topology_key.into(),
                when_unsatisfiable: if hard {
                    "DoNotSchedule"
                } else {
                    "ScheduleAnyway"
                }
                .into(),
                label_selector: Some(app_selector(app)),
                ..Default::default()
            });
        self
    }

    pub fn min_domains(mut self, min_domains: i32) -> Self {
        if let Some(c) = self
            .spec()
            .topology_spread_constraints
            .as_mut()
            .and_then(|c| c.last_mut())
        {
            c.min_domains = Some(min_domains);
        }
        self
    }

    pub fn pod_affinity(mut self, topology_key: &str, app: &str) -> Self {
        let term = affinity_term(topology_key, app);
        let affinity: &mut PodAffinity = self.affinity().pod_affinity.get_or_insert_default();
        affinity
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(term);
        self
    }

    pub fn pod_anti_affinity(mut self, topology_key: &str, app: &str) -> Self {
        let term = affinity_term(topology_key, app);
        let anti: &mut PodAntiAffinity = self.affinity().pod_anti_affinity.get_or_insert_default();
        anti.required_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(term);
        self
    }

    pub fn preferred_pod_affinity(mut self, weight: i32, topology_key: &str, app: &str) -> Self {
        let term = affinity_term(topology_key, app);
        let affinity: &mut PodAffinity = self.affinity().pod_affinity.get_or_insert_default();
        affinity
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(WeightedPodAffinityTerm {
                pod_affinity_term: term,
                weight,
            });
        self
    }

    pub fn preferred_pod_anti_affinity(
        mut self,
        weight: i32,
        topology_key: &str,
        app: &str,
    ) -> Self {
        let term = affinity_term(topology_key, app);
        let anti: &mut PodAntiAffinity = self.affinity().pod_anti_affinity.get_or_insert_default();
        anti.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_default()
            .push(WeightedPodAffinityTerm {
                pod_affinity_term: term,
                weight,
            });
        self
    }

    /// Sets `status.startTime` to `seconds` after the Unix epoch.
    pub fn started(mut self, seconds: i64) -> Self {
        self.0.status.get_or_insert_default().start_time = Some(Time(
            jiff::Timestamp::from_second(seconds).expect("a valid timestamp"),
        ));
        self
    }

    /// Sets `status.nominatedNodeName`, as preemption does through the API.
    pub fn nominated(mut self, node: &str) -> Self {
        self.0.status.get_or_insert_default().nominated_node_name = Some(node.into());
        self
    }

    /// Marks the pod as a preemption victim being deleted: `deletionTimestamp` and the
    /// `DisruptionTarget` condition the scheduler sets.
    pub fn terminating_by_preemption(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        self.0
            .status
            .get_or_insert_default()
            .conditions
            .get_or_insert_default()
            .push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("PreemptionByScheduler".into()),
                ..Default::default()
            });
        self
    }

    #[allow(dead_code)]
    pub fn build(self) -> Pod {
        self.0
    }

    pub fn info(self) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(self.0))
    }
}

fn node_term(key: &str, operator: &str, values: &[&str]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }]),
        match_fields: None,
    }
}

pub fn app_selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([("app".to_string(), app.to_string())].into()),
        match_expressions: None,
    }
}

fn affinity_term(topology_key: &str, app: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(app_selector(app)),
        topology_key: topology_key.into(),
        ..Default::default()
    }
}

/// A PodDisruptionBudget in `default` covering pods labelled `app`, with `allowed` disruptions
/// left and `disrupted` pods already counted.
pub fn budget(name: &str, app: &str, allowed: i32, disrupted: &[&str]) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(app_selector(app)),
            ..Default::default()
        }),
        status: Some(PodDisruptionBudgetStatus {
            disruptions_allowed: allowed,
            disrupted_pods: (!disrupted.is_empty()).then(|| {
                disrupted
                    .iter()
                    .map(|n| (n.to_string(), Time(jiff::Timestamp::UNIX_EPOCH)))
                    .collect()
            }),
            ..Default::default()
        }),
    }
}

/// A snapshot of `nodes` with `pods` placed by their `spec.nodeName`.
pub fn snapshot(nodes: Vec<Arc<Node>>, pods: Vec<Arc<PodInfo>>) -> Snapshot {
    Snapshot::new(nodes, pods)
}

/// Runs `plugin`'s PreFilter, then its Filter on `node_name`, as a cycle does. A PreFilter
/// `Skip` counts as success; a PreFilter rejection is returned as is.
pub fn run_filter<P: PreFilter + Filter>(
    plugin: &P,
    snapshot: &mut Snapshot,
    pod: &PodInfo,
    node_name: &str,
) -> Status {
    snapshot.prepare_for(pod);
    let snapshot: &Snapshot = snapshot;
    let mut cycle = Cycle::new(pod, snapshot);
    let pre = plugin.pre_filter(&mut cycle);
    match pre.code {
        Code::Skip => return Status::success(),
        Code::Success => {}
        _ => return pre,
    }
    let node = snapshot.node(node_name).expect("test node exists");
    plugin.filter(&cycle, node)
}

/// Runs a Filter-only plugin on one node.
pub fn run_plain_filter<P: Filter>(
    plugin: &P,
    snapshot: &Snapshot,
    pod: &PodInfo,
    node_name: &str,
) -> Status {
    let cycle = Cycle::new(pod, snapshot);
    plugin.filter(&cycle, snapshot.node(node_name).expect("test node exists"))
}

/// Runs a Score plugin over every node of the snapshot (all taken as feasible), normalized.
pub fn run_score<P: crate::framework::Score>(
    plugin: &P,
    snapshot: &mut Snapshot,
    pod: &PodInfo,
) -> Vec<i64> {
    snapshot.prepare_for(pod);
    let snapshot: &Snapshot = snapshot;
    let mut cycle = Cycle::new(pod, snapshot);
    let feasible: Vec<usize> = (0..snapshot.node_count()).collect();
    if plugin.pre_score(&mut cycle, &feasible).code == Code::Skip {
        return vec![0; feasible.len()];
    }
    let mut scores: Vec<i64> = snapshot
        .nodes()
        .iter()
        .map(|n| plugin.score(&cycle, n))
        .collect();
    plugin.normalize(&cycle, &mut scores);
    scores
}
