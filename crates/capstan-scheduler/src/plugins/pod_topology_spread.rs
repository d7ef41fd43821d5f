//! PodTopologySpread: keeps pods matching a constraint's selector spread across the values of
//! its `topologyKey` (zones, hostnames). `DoNotSchedule` constraints filter: placing the pod
//! must not make its domain exceed the least-loaded eligible domain by more than `maxSkew`
//! (with fewer eligible domains than `minDomains`, the minimum counts as 0). `ScheduleAnyway`
//! constraints score: fewer matching pods in the node's domain is better.
//!
//! Counts come from the snapshot's domain counters (registered by `Snapshot::prepare_for`,
//! updated incrementally), never from a scan of pods, so a cycle is O(domains). With the
//! default `nodeAffinityPolicy: Honor`, only nodes matching the pod's node affinity and selector
//! contribute domains and counts.

use crate::framework::{Cycle, Filter, MAX_NODE_SCORE, Plugin, PreFilter, Score, Status};
use crate::snapshot::NodeInfo;

pub const NAME: &str = "PodTopologySpread";
pub const REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// One hard constraint prepared for filtering.
struct HardConstraint {
    counter: usize,
    max_skew: i64,
    /// The fewest matching pods in any eligible domain.
    min_count: i64,
    /// 1 when the incoming pod matches its own selector (it will count once placed).
    self_match: i64,
}

struct FilterState(Vec<HardConstraint>);

/// One soft constraint prepared for scoring.
struct SoftConstraint {
    counter: usize,
    max_skew: i64,
    /// kube-scheduler weighs constraints by log(domains + 2), so that spreading over many
    /// hostnames does not drown spreading over a few zones.
    weight: f64,
}

struct ScoreState(Vec<SoftConstraint>);

fn missing_counter() -> Status {
    Status::error("topology spread counter was not prepared for this pod").with_plugin(NAME)
}

impl PreFilter for PodTopologySpread {
    fn pre_filter(&self, cycle: &mut Cycle<'_>) -> Status {
        let pod = cycle.pod;
        let mut hard = Vec::new();
        for constraint in pod.spread_constraints.iter().filter(|c| c.hard) {
            let Some(position) = cycle.snapshot.counter_position(&constraint.counter) else {
                return missing_counter();
            };
            let counter = cycle.snapshot.counter_at(position);
            let mut domains = 0;
            let mut min_count = i64::MAX;
            for (_, count) in counter.eligible_domains() {
                domains += 1;
                min_count = min_count.min(count);
            }
            if domains == 0 || constraint.min_domains.is_some_and(|m| domains < m) {
                min_count = 0;
            }
            hard.push(HardConstraint {
                counter: position,
                max_skew: constraint.max_skew,
                min_count,
                self_match: i64::from(constraint.selector.matches(&pod.labels)),
            });
        }
        if hard.is_empty() {
            return Status::skip();
        }
        cycle.state.insert(FilterState(hard));
        Status::success()
    }
}

impl Filter for PodTopologySpread {
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status {
        let Some(FilterState(constraints)) = cycle.state.get::<FilterState>() else {
            return Status::success();
        };
        for constraint in constraints {
            let counter = cycle.snapshot.counter_at(constraint.counter);
            let Some(count) = counter.count_for_node(node.index) else {
                return Status::unresolvable(REASON_MISSING_LABEL);
            };
            let skew = count + constraint.self_match - constraint.min_count;
            if skew > constraint.max_skew {
                return Status::unschedulable(REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

impl Score for PodTopologySpread {
    fn pre_score(&self, cycle: &mut Cycle<'_>, _feasible: &[usize]) -> Status {
        let mut soft = Vec::new();
        for constraint in cycle.pod.spread_constraints.iter().filter(|c| !c.hard) {
            let Some(position) = cycle.snapshot.counter_position(&constraint.counter) else {
                return missing_counter();
            };
            let domains = cycle
                .snapshot
                .counter_at(position)
                .eligible_domains()
                .count();
            soft.push(SoftConstraint {
                counter: position,
                max_skew: constraint.max_skew,
                weight: ((domains + 2) as f64).ln(),
            });
        }
        if soft.is_empty() {
            return Status::skip();
        }
        cycle.state.insert(ScoreState(soft));
        Status::success()
    }

    /// The weighted count of matching pods in the node's domains; -1 marks a node lacking a
    /// topology key, which scores 0 after normalization.
    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64 {
        let Some(ScoreState(constraints)) = cycle.state.get::<ScoreState>() else {
            return 0;
        };
        let mut total = 0.0;
        for constraint in constraints {
            let counter = cycle.snapshot.counter_at(constraint.counter);
            let Some(count) = counter.count_for_node(node.index) else {
                return -1;
            };
            total += (count + constraint.max_skew - 1) as f64 * constraint.weight;
        }
        total.round() as i64
    }

    fn normalize(&self, _cycle: &Cycle<'_>, scores: &mut [i64]) {
        let counted = scores.iter().copied().filter(|s| *s >= 0);
        let min = counted.clone().min().unwrap_or(0);
        let max = counted.max().unwrap_or(0);
        for score in scores.iter_mut() {
            *score = if *score < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod, run_filter, run_score, snapshot};

    fn zones() -> Vec<std::sync::Arc<k8s_openapi::api::core::v1::Node>> {
        vec![
            node("a1").label("zone", "a").build(),
            node("a2").label("zone", "a").build(),
            node("b1").label("zone", "b").build(),
            node("c1").label("zone", "c").label("pool", "other").build(),
            node("nozone").build(),
        ]
    }

    #[test]
    fn hard_constraints_refuse_nodes_that_would_exceed_max_skew() {
        let existing = vec![
            pod("w1").label("app", "web").node_name("a1").info(),
            pod("w2").label("app", "web").node_name("a2").info(),
            pod("w3").label("app", "web").node_name("b1").info(),
            pod("other").label("app", "db").node_name("b1").info(),
        ];
        let mut snapshot = snapshot(zones(), existing);
        let web = || pod("p").label("app", "web").spread(1, "zone", true, "web");
        let cases = [
            (
                "the empty zone is always fine",
                web().info(),
                "c1",
                Code::Success,
            ),
            (
                "zone b (1 pod) exceeds min 0 + 1 when placed",
                web().info(),
                "b1",
                Code::Unschedulable,
            ),
            (
                "zone a (2 pods) exceeds",
                web().info(),
                "a1",
                Code::Unschedulable,
            ),
            (
                "a node without the key is unresolvable",
                web().info(),
                "nozone",
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "a larger max skew allows zone a",
                pod("p")
                    .label("app", "web")
                    .spread(3, "zone", true, "web")
                    .info(),
                "a1",
                Code::Success,
            ),
            (
                "honoring node affinity leaves zone c out, so zone b is the minimum",
                web().required_node_term("zone", "In", &["a", "b"]).info(),
                "b1",
                Code::Success,
            ),
            (
                "minDomains above the eligible domains makes the minimum 0",
                web()
                    .required_node_term("zone", "In", &["a", "b"])
                    .min_domains(3)
                    .info(),
                "b1",
                Code::Unschedulable,
            ),
            (
                "a pod not matching its own selector adds nothing",
                pod("p").spread(1, "zone", true, "web").info(),
                "b1",
                Code::Success,
            ),
        ];
        for (name, pod, node, want) in cases {
            let status = run_filter(&PodTopologySpread, &mut snapshot, &pod, node);
            assert_eq!(status.code, want, "{name}: {status:?}");
        }
    }

    #[test]
    fn counters_follow_assumed_and_removed_pods() {
        let mut snapshot = snapshot(zones(), vec![]);
        let web = pod("p")
            .label("app", "web")
            .spread(1, "zone", true, "web")
            .info();
        assert!(run_filter(&PodTopologySpread, &mut snapshot, &web, "a1").is_success());
        snapshot
            .add_pod(pod("w1").label("app", "web").info(), "a1")
            .unwrap();
        assert_eq!(
            run_filter(&PodTopologySpread, &mut snapshot, &web, "a2").code,
            Code::Unschedulable
        );
        snapshot.remove_pod("default", "w1").unwrap();
        assert!(run_filter(&PodTopologySpread, &mut snapshot, &web, "a2").is_success());
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let existing = vec![
            pod("w1").label("app", "web").node_name("a1").info(),
            pod("w2").label("app", "web").node_name("a2").info(),
            pod("w3").label("app", "web").node_name("b1").info(),
        ];
        let mut snapshot = snapshot(zones(), existing);
        let incoming = pod("p")
            .label("app", "web")
            .spread(1, "zone", false, "web")
            .info();
        let scores = run_score(&PodTopologySpread, &mut snapshot, &incoming);
        assert_eq!(scores[4], 0, "no zone label: {scores:?}");
        assert!(scores[3] > scores[2] && scores[2] > scores[0], "{scores:?}");
        assert_eq!(scores[3], MAX_NODE_SCORE);
    }
}
