//! NodeResourcesBalancedAllocation: prefers nodes where, with the pod placed, CPU and memory
//! would be used in similar fractions, so that neither runs out while the other idles.
//! Score = (1 − standard deviation of the fractions) × 100, as kube-scheduler computes it.

use crate::framework::{Cycle, MAX_NODE_SCORE, Plugin, Score};
use crate::snapshot::NodeInfo;

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn fraction(requested: i64, capacity: i64) -> Option<f64> {
    (capacity > 0).then(|| (requested as f64 / capacity as f64).min(1.0))
}

impl Score for BalancedAllocation {
    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64 {
        let pod = &cycle.pod.non_zero_requests;
        let cpu = fraction(
            node.non_zero_requested
                .milli_cpu
                .saturating_add(pod.milli_cpu),
            node.allocatable.milli_cpu,
        );
        let memory = fraction(
            node.non_zero_requested.memory.saturating_add(pod.memory),
            node.allocatable.memory,
        );
        let deviation = match (cpu, memory) {
            (Some(cpu), Some(memory)) => ((cpu - memory) / 2.0).abs(),
            // One resource only: nothing to balance against.
            _ => 0.0,
        };
        ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, run_score, snapshot};

    #[test]
    fn nodes_left_balanced_score_higher() {
        let nodes = vec![
            node("balanced")
                .allocatable(&[("cpu", "4"), ("memory", "4Gi"), ("pods", "110")])
                .build(),
            node("cpu-heavy")
                .allocatable(&[("cpu", "4"), ("memory", "4Gi"), ("pods", "110")])
                .build(),
        ];
        let existing = vec![
            pod("a")
                .node_name("cpu-heavy")
                .requests(&[("cpu", "3"), ("memory", "1Mi")])
                .info(),
        ];
        let incoming = pod("p").requests(&[("cpu", "1"), ("memory", "1Gi")]).info();
        let scores = run_score(
            &BalancedAllocation,
            &mut snapshot(nodes, existing),
            &incoming,
        );
        assert_eq!(scores[0], 100);
        assert!(scores[1] < 70, "{scores:?}");
    }
}
