//! NodeResourcesFit: the pod's effective request (computed once in `PodInfo`) must fit in the
//! node's allocatable minus what its pods already request, for CPU, memory, ephemeral storage,
//! extended resources and the pod count. Scores by `LeastAllocated` (the default: spread load)
//! or `MostAllocated` (bin-pack), over CPU and memory with weight 1 each, using requests with
//! kube-scheduler's defaults for containers that request nothing.

use std::borrow::Cow;

use crate::framework::{Code, Cycle, Filter, MAX_NODE_SCORE, Plugin, Score, Status};
use crate::resources::Resources;
use crate::snapshot::NodeInfo;

pub const NAME: &str = "NodeResourcesFit";
pub const TOO_MANY_PODS: &str = "Too many pods";
pub const INSUFFICIENT_CPU: &str = "Insufficient cpu";
pub const INSUFFICIENT_MEMORY: &str = "Insufficient memory";
pub const INSUFFICIENT_EPHEMERAL_STORAGE: &str = "Insufficient ephemeral-storage";

/// How NodeResourcesFit ranks nodes that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringStrategy {
    /// Prefer the emptiest node (kube-scheduler's default).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node that still fits (bin-packing).
    MostAllocated,
}

#[derive(Debug, Default)]
pub struct NodeResourcesFit {
    pub strategy: ScoringStrategy,
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The reasons the pod's request does not fit the node, empty when it fits (kube-scheduler's
/// `fitsRequest`, in its order). Also used by preemption on a node with victims removed.
pub fn insufficient_resources(request: &Resources, node: &NodeInfo) -> Vec<Cow<'static, str>> {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.pods {
        reasons.push(Cow::Borrowed(TOO_MANY_PODS));
    }
    if request.is_zero() {
        return reasons;
    }
    let free = |requested: i64, allocatable: i64| allocatable.saturating_sub(requested);
    let (allocatable, requested) = (&node.allocatable, &node.requested);
    if request.milli_cpu > 0 && request.milli_cpu > free(requested.milli_cpu, allocatable.milli_cpu)
    {
        reasons.push(Cow::Borrowed(INSUFFICIENT_CPU));
    }
    if request.memory > 0 && request.memory > free(requested.memory, allocatable.memory) {
        reasons.push(Cow::Borrowed(INSUFFICIENT_MEMORY));
    }
    if request.ephemeral_storage > 0
        && request.ephemeral_storage
            > free(requested.ephemeral_storage, allocatable.ephemeral_storage)
    {
        reasons.push(Cow::Borrowed(INSUFFICIENT_EPHEMERAL_STORAGE));
    }
    for (name, amount) in &request.extended {
        if *amount > 0 && *amount > free(requested.get(name), allocatable.get(name)) {
            reasons.push(Cow::Owned(format!("Insufficient {name}")));
        }
    }
    reasons
}

impl Filter for NodeResourcesFit {
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status {
        let reasons = insufficient_resources(&cycle.pod.requests, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: Code::Unschedulable,
                reasons,
                plugin: NAME,
            }
        }
    }
}

fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

impl Score for NodeResourcesFit {
    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64 {
        let pod = &cycle.pod.non_zero_requests;
        let cpu = node
            .non_zero_requested
            .milli_cpu
            .saturating_add(pod.milli_cpu);
        let memory = node.non_zero_requested.memory.saturating_add(pod.memory);
        let per_resource = match self.strategy {
            ScoringStrategy::LeastAllocated => least_allocated,
            ScoringStrategy::MostAllocated => most_allocated,
        };
        (per_resource(cpu, node.allocatable.milli_cpu)
            + per_resource(memory, node.allocatable.memory))
            / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, run_plain_filter, run_score, snapshot};

    #[test]
    fn pods_fit_only_where_requests_leave_room() {
        let nodes = vec![
            node("small")
                .allocatable(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "2")])
                .build(),
            node("gpu")
                .allocatable(&[
                    ("cpu", "4"),
                    ("memory", "8Gi"),
                    ("pods", "110"),
                    ("example.com/gpu", "1"),
                ])
                .build(),
        ];
        let existing = vec![
            pod("a")
                .node_name("small")
                .requests(&[("cpu", "600m"), ("memory", "512Mi")])
                .info(),
        ];
        let snapshot = snapshot(nodes, existing);
        let cases: Vec<(&str, _, &str, Vec<&str>)> = vec![
            (
                "a pod within the free room fits",
                pod("p").requests(&[("cpu", "400m")]).info(),
                "small",
                vec![],
            ),
            (
                "too much cpu is refused",
                pod("p").requests(&[("cpu", "500m")]).info(),
                "small",
                vec![INSUFFICIENT_CPU],
            ),
            (
                "every missing resource is reported",
                pod("p").requests(&[("cpu", "2"), ("memory", "1Gi")]).info(),
                "small",
                vec![INSUFFICIENT_CPU, INSUFFICIENT_MEMORY],
            ),
            (
                "an extended resource the node has fits",
                pod("p").requests(&[("example.com/gpu", "1")]).info(),
                "gpu",
                vec![],
            ),
            (
                "an extended resource the node lacks is refused",
                pod("p").requests(&[("example.com/gpu", "1")]).info(),
                "small",
                vec!["Insufficient example.com/gpu"],
            ),
            (
                "a pod without requests fits",
                pod("p").info(),
                "small",
                vec![],
            ),
        ];
        for (name, pod, node, want) in cases {
            let status = run_plain_filter(&NodeResourcesFit::default(), &snapshot, &pod, node);
            assert_eq!(status.reasons, want, "{name}");
            assert_eq!(status.is_success(), want.is_empty(), "{name}");
        }
    }

    #[test]
    fn a_full_node_reports_too_many_pods() {
        let snapshot = snapshot(
            vec![
                node("n")
                    .allocatable(&[("cpu", "4"), ("memory", "4Gi"), ("pods", "1")])
                    .build(),
            ],
            vec![pod("a").node_name("n").info()],
        );
        let status = run_plain_filter(
            &NodeResourcesFit::default(),
            &snapshot,
            &pod("p").info(),
            "n",
        );
        assert_eq!(status.reasons, vec![TOO_MANY_PODS]);
    }

    #[test]
    fn least_allocated_prefers_empty_nodes_and_most_allocated_full_ones() {
        let nodes = vec![
            node("empty")
                .allocatable(&[("cpu", "4"), ("memory", "4Gi"), ("pods", "110")])
                .build(),
            node("busy")
                .allocatable(&[("cpu", "4"), ("memory", "4Gi"), ("pods", "110")])
                .build(),
        ];
        let existing = vec![
            pod("a")
                .node_name("busy")
                .requests(&[("cpu", "2"), ("memory", "2Gi")])
                .info(),
        ];
        let incoming = pod("p").requests(&[("cpu", "1"), ("memory", "1Gi")]).info();
        let mut snap = snapshot(nodes, existing);
        let least = run_score(&NodeResourcesFit::default(), &mut snap, &incoming);
        assert_eq!(least, vec![75, 25]);
        let most = NodeResourcesFit {
            strategy: ScoringStrategy::MostAllocated,
        };
        assert_eq!(run_score(&most, &mut snap, &incoming), vec![25, 75]);
    }
}
