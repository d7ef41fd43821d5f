//! DefaultPreemption: when no node fits, find a node where evicting pods of lower priority
//! (`spec.priority`, resolved from the PriorityClass at admission) would make the pod fit.
//! On each candidate node every lower-priority pod is removed in a what-if copy; if the pod
//! then fits, victims are reprieved one by one, most important first, as long as the pod still
//! fits. The chosen node has the lowest highest-victim priority, then the lowest priority sum,
//! then the fewest victims (kube-scheduler's `pickOneNodeForPreemption`, without the
//! PodDisruptionBudget and start-time criteria).
//!
//! Filters that read the snapshot's counters (PodTopologySpread, InterPodAffinity) see the
//! victims still in place, as kube-scheduler also declines to reason about affinity to victims.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::framework::{
    Code, Cycle, FilterRunner, NodeStatuses, Nomination, Plugin, PostFilter, Status,
};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;

pub const NAME: &str = "DefaultPreemption";
pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const REASON_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

pub struct DefaultPreemption;

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

struct Candidate {
    node_index: usize,
    victims: Vec<Arc<PodInfo>>,
}

impl Candidate {
    /// Smaller is better: highest victim priority, sum of priorities, number of victims.
    fn cost(&self) -> (i64, i64, usize) {
        let highest = self.victims.iter().map(|v| i64::from(v.priority)).max();
        let sum = self.victims.iter().map(|v| i64::from(v.priority)).sum();
        (highest.unwrap_or(i64::MIN), sum, self.victims.len())
    }
}

/// Victims on `node` that make `cycle.pod` fit, or the status explaining why none do.
fn select_victims(
    cycle: &Cycle<'_>,
    node: &NodeInfo,
    run_filters: &FilterRunner<'_>,
) -> Result<Vec<Arc<PodInfo>>, Status> {
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < cycle.pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return Err(Status::unresolvable(REASON_NO_VICTIMS));
    }
    let mut what_if = node.clone();
    for victim in &lower {
        what_if.remove_pod(&victim.namespace, &victim.name);
    }
    let status = run_filters(cycle, &what_if);
    if !status.is_success() {
        return Err(status);
    }
    // Most important first, so they are the first given back.
    lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let mut victims = Vec::new();
    for pod in lower {
        what_if.add_pod(Arc::clone(&pod));
        if !run_filters(cycle, &what_if).is_success() {
            what_if.remove_pod(&pod.namespace, &pod.name);
            victims.push(pod);
        }
    }
    if victims.is_empty() {
        return Err(Status::error("expected at least one victim pod"));
    }
    Ok(victims)
}

impl PostFilter for DefaultPreemption {
    fn post_filter(
        &self,
        cycle: &Cycle<'_>,
        statuses: &NodeStatuses,
        run_filters: &FilterRunner<'_>,
    ) -> Result<Nomination, Status> {
        if !cycle.pod.preempts {
            return Err(Status::unschedulable(format!(
                "preemption: {REASON_POLICY_NEVER}"
            )));
        }
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<Candidate> = None;
        for node in cycle.snapshot.nodes() {
            let helpful = statuses
                .get(node.index)
                .is_some_and(|s| s.code == Code::Unschedulable);
            if !helpful {
                *reasons.entry(REASON_NOT_HELPFUL.to_owned()).or_default() += 1;
                continue;
            }
            match select_victims(cycle, node, run_filters) {
                Ok(victims) => {
                    let candidate = Candidate {
                        node_index: node.index,
                        victims,
                    };
                    if best.as_ref().is_none_or(|b| candidate.cost() < b.cost()) {
                        best = Some(candidate);
                    }
                }
                Err(status) => {
                    for reason in status.reasons {
                        *reasons.entry(reason.into_owned()).or_default() += 1;
                    }
                }
            }
        }
        if let Some(best) = best {
            return Ok(Nomination {
                node: cycle.snapshot.nodes()[best.node_index].name.clone(),
                victims: best.victims,
            });
        }
        let mut histogram: Vec<String> = reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        histogram.sort();
        Err(Status::unschedulable(format!(
            "preemption: 0/{} nodes are available: {}.",
            cycle.snapshot.node_count(),
            histogram.join(", ")
        ))
        .with_plugin(NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Cycle, Filter};
    use crate::plugins::node_resources_fit::NodeResourcesFit;
    use crate::testing::{node, pod, snapshot};

    fn preempt(
        snapshot: &crate::snapshot::Snapshot,
        incoming: &PodInfo,
    ) -> Result<Nomination, Status> {
        let cycle = Cycle::new(incoming, snapshot);
        let fit = NodeResourcesFit::default();
        let run = |c: &Cycle<'_>, n: &NodeInfo| fit.filter(c, n);
        let mut statuses = NodeStatuses::default();
        for node in snapshot.nodes() {
            let status = run(&cycle, node);
            if !status.is_success() {
                statuses.failed.push((node.index, status));
            }
        }
        DefaultPreemption.post_filter(&cycle, &statuses, &run)
    }

    fn full(name: &str) -> std::sync::Arc<k8s_openapi::api::core::v1::Node> {
        node(name)
            .allocatable(&[("cpu", "2"), ("memory", "4Gi"), ("pods", "110")])
            .build()
    }

    #[test]
    fn preemption_picks_the_node_with_the_least_important_victims() {
        let snapshot = snapshot(
            vec![full("n1"), full("n2")],
            vec![
                pod("n1-low")
                    .priority(10)
                    .requests(&[("cpu", "1")])
                    .node_name("n1")
                    .info(),
                pod("n1-mid")
                    .priority(50)
                    .requests(&[("cpu", "1")])
                    .node_name("n1")
                    .info(),
                pod("n2-a")
                    .priority(5)
                    .requests(&[("cpu", "1")])
                    .node_name("n2")
                    .info(),
                pod("n2-b")
                    .priority(60)
                    .requests(&[("cpu", "1")])
                    .node_name("n2")
                    .info(),
            ],
        );
        let incoming = pod("p").priority(100).requests(&[("cpu", "1")]).info();
        let nomination = preempt(&snapshot, &incoming).unwrap();
        // n2 would evict only n2-a (priority 5); n1 only n1-low (10): the lowest wins.
        assert_eq!(nomination.node, "n2");
        let names: Vec<_> = nomination.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["n2-a"]);
    }

    #[test]
    fn preemption_explains_itself_when_nothing_helps() {
        let snapshot = snapshot(
            vec![full("n1"), full("n2")],
            vec![
                pod("n1-high")
                    .priority(1000)
                    .requests(&[("cpu", "2")])
                    .node_name("n1")
                    .info(),
                pod("n2-low")
                    .priority(1)
                    .requests(&[("cpu", "1")])
                    .node_name("n2")
                    .info(),
            ],
        );
        let incoming = pod("p").priority(100).requests(&[("cpu", "3")]).info();
        let status = preempt(&snapshot, &incoming).unwrap_err();
        assert_eq!(
            status.message(),
            "preemption: 0/2 nodes are available: 1 Insufficient cpu, 1 No preemption victims found for incoming pod."
        );
        let never = PodInfo {
            preempts: false,
            ..(*pod("p").priority(100).requests(&[("cpu", "3")]).info()).clone()
        };
        assert_eq!(
            preempt(&snapshot, &never).unwrap_err().message(),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
