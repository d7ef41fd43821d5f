//! NodeAffinity: the pod's `nodeSelector` and required node affinity must match the node's
//! labels (and `metadata.name` for `matchFields`); preferred terms add their weight to the
//! score of nodes they match. Both are compiled once in `PodInfo`.

use crate::framework::{Cycle, Filter, MAX_NODE_SCORE, Plugin, PreFilter, Score, Status};
use crate::snapshot::NodeInfo;

pub const NAME: &str = "NodeAffinity";
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilter for NodeAffinity {
    fn pre_filter(&self, cycle: &mut Cycle<'_>) -> Status {
        // Most pods have neither a selector nor required affinity: skip the per-node filter.
        if cycle.pod.node_requirement.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl Filter for NodeAffinity {
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status {
        if cycle.pod.node_requirement.matches(&node.name, &node.labels) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl Score for NodeAffinity {
    fn pre_score(&self, cycle: &mut Cycle<'_>, _feasible: &[usize]) -> Status {
        if cycle.pod.preferred_node_terms.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }

    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64 {
        cycle
            .pod
            .preferred_node_terms
            .iter()
            .filter(|(_, term)| term.matches(&node.name, &node.labels))
            .map(|(weight, _)| *weight)
            .sum()
    }

    fn normalize(&self, _cycle: &Cycle<'_>, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

/// kube-scheduler's `DefaultNormalizeScore`: scales so the highest score becomes 100; with
/// `reverse`, the lowest raw score wins (counts of something bad).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *score / max;
        *score = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod, run_filter, run_score, snapshot};

    #[test]
    fn pods_land_only_on_nodes_matching_selector_and_required_terms() {
        let mut snapshot = snapshot(
            vec![
                node("a1").label("zone", "a").label("disk", "ssd").build(),
                node("b1").label("zone", "b").build(),
            ],
            vec![],
        );
        let cases = [
            (
                "no requirement fits everywhere",
                pod("p").info(),
                "b1",
                Code::Success,
            ),
            (
                "a matching nodeSelector fits",
                pod("p").node_selector("disk", "ssd").info(),
                "a1",
                Code::Success,
            ),
            (
                "a nodeSelector on a missing label does not",
                pod("p").node_selector("disk", "ssd").info(),
                "b1",
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "In matches",
                pod("p").required_node_term("zone", "In", &["a"]).info(),
                "a1",
                Code::Success,
            ),
            (
                "NotIn excludes",
                pod("p").required_node_term("zone", "NotIn", &["a"]).info(),
                "a1",
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "DoesNotExist matches nodes without the label",
                pod("p")
                    .required_node_term("disk", "DoesNotExist", &[])
                    .info(),
                "b1",
                Code::Success,
            ),
            (
                "terms are ORed",
                pod("p")
                    .required_node_term("zone", "In", &["x"])
                    .required_node_term("zone", "In", &["b"])
                    .info(),
                "b1",
                Code::Success,
            ),
            (
                "selector and affinity must both hold",
                pod("p")
                    .node_selector("disk", "ssd")
                    .required_node_term("zone", "In", &["b"])
                    .info(),
                "b1",
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, pod, node, want) in cases {
            let status = run_filter(&NodeAffinity, &mut snapshot, &pod, node);
            assert_eq!(status.code, want, "{name}");
            if want != Code::Success {
                assert_eq!(status.reasons, vec![REASON], "{name}");
            }
        }
    }

    #[test]
    fn preferred_terms_score_by_weight_normalized_to_100() {
        let mut snapshot = snapshot(
            vec![
                node("a").label("zone", "a").label("disk", "ssd").build(),
                node("b").label("zone", "b").build(),
                node("c").label("zone", "c").label("disk", "ssd").build(),
            ],
            vec![],
        );
        let incoming = pod("p")
            .preferred_node_term(80, "zone", "In", &["a"])
            .preferred_node_term(20, "disk", "Exists", &[])
            .info();
        assert_eq!(
            run_score(&NodeAffinity, &mut snapshot, &incoming),
            vec![100, 0, 20]
        );
    }
}
