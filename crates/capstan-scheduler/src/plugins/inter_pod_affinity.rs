//! InterPodAffinity: required pod affinity (the node's topology domain must hold a matching
//! pod), required anti-affinity (it must not), existing pods' required anti-affinity against
//! the incoming pod (symmetry), and preferred terms of both sides as a score.
//!
//! The incoming pod's terms are answered by the snapshot's domain counters; existing pods'
//! terms come from the snapshot's short list of pods that have any, so no cycle scans all pods.
//! `namespaceSelector` is best effort: `{}` means every namespace, other selectors fall back to
//! the listed namespaces (the scheduler does not watch Namespaces).

use std::collections::HashMap;

use crate::framework::{Cycle, Filter, MAX_NODE_SCORE, Plugin, PreFilter, Score, Status};
use crate::snapshot::{NodeInfo, affinity_counter_key};

pub const NAME: &str = "InterPodAffinity";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// kube-scheduler's `hardPodAffinityWeight`: an existing pod's required affinity towards the
/// incoming pod also attracts it, with this weight.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

struct FilterState {
    /// (topology key, value) domains where an existing pod's anti-affinity forbids the pod.
    forbidden_domains: Vec<(String, String)>,
    affinity_counters: Vec<usize>,
    anti_affinity_counters: Vec<usize>,
    /// No pod anywhere matches the affinity terms, but the pod matches them itself: the first
    /// pod of a group that wants to be together may go anywhere with the topology keys.
    first_of_its_group: bool,
}

fn missing_counter() -> Status {
    Status::error("inter-pod affinity counter was not prepared for this pod").with_plugin(NAME)
}

impl PreFilter for InterPodAffinity {
    fn pre_filter(&self, cycle: &mut Cycle<'_>) -> Status {
        let pod = cycle.pod;
        let snapshot = cycle.snapshot;
        let mut forbidden_domains = Vec::new();
        for (node_index, existing) in snapshot.pods_with_affinity() {
            for term in &existing.required_anti_affinity {
                if term.matches(pod)
                    && let Some(value) =
                        snapshot.nodes()[*node_index].labels.get(&term.topology_key)
                {
                    forbidden_domains.push((term.topology_key.clone(), value.clone()));
                }
            }
        }
        if forbidden_domains.is_empty()
            && pod.required_affinity.is_empty()
            && pod.required_anti_affinity.is_empty()
        {
            return Status::skip();
        }
        let positions = |terms: &[crate::pod_info::AffinityTerm]| -> Option<Vec<usize>> {
            terms
                .iter()
                .map(|t| snapshot.counter_position(&affinity_counter_key(t)))
                .collect()
        };
        let (Some(affinity_counters), Some(anti_affinity_counters)) = (
            positions(&pod.required_affinity),
            positions(&pod.required_anti_affinity),
        ) else {
            return missing_counter();
        };
        let nobody_matches = affinity_counters.iter().all(|p| {
            snapshot
                .counter_at(*p)
                .domain_counts
                .iter()
                .all(|c| *c <= 0)
        });
        let first_of_its_group = !affinity_counters.is_empty()
            && nobody_matches
            && pod.required_affinity.iter().all(|t| t.matches(pod));
        cycle.state.insert(FilterState {
            forbidden_domains,
            affinity_counters,
            anti_affinity_counters,
            first_of_its_group,
        });
        Status::success()
    }
}

impl Filter for InterPodAffinity {
    fn filter(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> Status {
        let Some(state) = cycle.state.get::<FilterState>() else {
            return Status::success();
        };
        if state
            .forbidden_domains
            .iter()
            .any(|(key, value)| node.labels.get(key) == Some(value))
        {
            return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY);
        }
        let snapshot = cycle.snapshot;
        let mut pods_exist = true;
        for position in &state.affinity_counters {
            match snapshot.counter_at(*position).count_for_node(node.index) {
                None => return Status::unresolvable(REASON_AFFINITY),
                Some(count) if count <= 0 => pods_exist = false,
                Some(_) => {}
            }
        }
        if !pods_exist && !state.first_of_its_group {
            return Status::unresolvable(REASON_AFFINITY);
        }
        for position in &state.anti_affinity_counters {
            if snapshot
                .counter_at(*position)
                .count_for_node(node.index)
                .is_some_and(|count| count > 0)
            {
                return Status::unschedulable(REASON_ANTI_AFFINITY);
            }
        }
        Status::success()
    }
}

/// Score contributions per topology key, then per value of that key.
struct ScoreState(HashMap<String, HashMap<String, i64>>);

impl Score for InterPodAffinity {
    fn pre_score(&self, cycle: &mut Cycle<'_>, _feasible: &[usize]) -> Status {
        let pod = cycle.pod;
        let snapshot = cycle.snapshot;
        let mut by_key: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let mut add = |key: &str, value: &str, amount: i64| {
            *by_key
                .entry(key.to_owned())
                .or_default()
                .entry(value.to_owned())
                .or_default() += amount;
        };
        let incoming = pod
            .preferred_affinity
            .iter()
            .map(|(w, t)| (*w, t))
            .chain(pod.preferred_anti_affinity.iter().map(|(w, t)| (-*w, t)));
        for (weight, term) in incoming {
            let Some(counter) = snapshot.counter(&affinity_counter_key(term)) else {
                return missing_counter();
            };
            for (domain, count) in counter.domain_counts.iter().enumerate() {
                if *count > 0 {
                    add(
                        &term.topology_key,
                        &counter.domain_values[domain],
                        weight * count,
                    );
                }
            }
        }
        for (node_index, existing) in snapshot.pods_with_affinity() {
            let labels = &snapshot.nodes()[*node_index].labels;
            let terms = existing
                .preferred_affinity
                .iter()
                .map(|(w, t)| (*w, t))
                .chain(
                    existing
                        .preferred_anti_affinity
                        .iter()
                        .map(|(w, t)| (-*w, t)),
                )
                .chain(
                    existing
                        .required_affinity
                        .iter()
                        .map(|t| (HARD_POD_AFFINITY_WEIGHT, t)),
                );
            for (weight, term) in terms {
                if term.matches(pod)
                    && let Some(value) = labels.get(&term.topology_key)
                {
                    add(&term.topology_key, value, weight);
                }
            }
        }
        if by_key.is_empty() {
            return Status::skip();
        }
        cycle.state.insert(ScoreState(by_key));
        Status::success()
    }

    fn score(&self, cycle: &Cycle<'_>, node: &NodeInfo) -> i64 {
        let Some(ScoreState(by_key)) = cycle.state.get::<ScoreState>() else {
            return 0;
        };
        by_key
            .iter()
            .filter_map(|(key, values)| values.get(node.labels.get(key)?))
            .sum()
    }

    fn normalize(&self, _cycle: &Cycle<'_>, scores: &mut [i64]) {
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let spread = max - min;
        for score in scores.iter_mut() {
            *score = if spread > 0 {
                MAX_NODE_SCORE * (*score - min) / spread
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod, run_filter, run_score, snapshot};

    fn cluster() -> crate::snapshot::Snapshot {
        snapshot(
            vec![
                node("a1").label("zone", "a").build(),
                node("a2").label("zone", "a").build(),
                node("b1").label("zone", "b").build(),
                node("nozone").build(),
            ],
            vec![
                pod("cache").label("app", "cache").node_name("a1").info(),
                pod("guard")
                    .label("app", "guard")
                    .pod_anti_affinity("zone", "web")
                    .node_name("b1")
                    .info(),
            ],
        )
    }

    #[test]
    fn required_terms_follow_topology_domains() {
        let mut snapshot = cluster();
        let cases = [
            (
                "affinity is met by a pod in the same zone",
                pod("p").pod_affinity("zone", "cache").info(),
                "a2",
                Code::Success,
            ),
            (
                "affinity fails in a zone without one",
                pod("p").pod_affinity("zone", "cache").info(),
                "b1",
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "affinity fails on a node without the key",
                pod("p").pod_affinity("zone", "cache").info(),
                "nozone",
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "anti-affinity refuses the zone with a match",
                pod("p").pod_anti_affinity("zone", "cache").info(),
                "a2",
                Code::Unschedulable,
            ),
            (
                "anti-affinity allows another zone",
                pod("p").pod_anti_affinity("zone", "cache").info(),
                "b1",
                Code::Success,
            ),
            (
                "an existing pod's anti-affinity refuses its zone",
                pod("p").label("app", "web").info(),
                "b1",
                Code::Unschedulable,
            ),
            (
                "an existing pod's anti-affinity leaves other zones",
                pod("p").label("app", "web").info(),
                "a1",
                Code::Success,
            ),
            (
                "the first pod of a self-affine group goes anywhere",
                pod("p")
                    .label("app", "new")
                    .pod_affinity("zone", "new")
                    .info(),
                "b1",
                Code::Success,
            ),
            (
                "other namespaces do not count by default",
                pod("p")
                    .namespace("other")
                    .pod_affinity("zone", "cache")
                    .info(),
                "a2",
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, pod, node, want) in cases {
            let status = run_filter(&InterPodAffinity, &mut snapshot, &pod, node);
            assert_eq!(status.code, want, "{name}: {status:?}");
        }
        let status = run_filter(
            &InterPodAffinity,
            &mut snapshot,
            &pod("p").label("app", "web").info(),
            "b1",
        );
        assert_eq!(status.reasons, vec![REASON_EXISTING_ANTI_AFFINITY]);
    }

    #[test]
    fn preferred_terms_attract_and_repel_by_weight() {
        let mut snapshot = cluster();
        let attracted = pod("p").preferred_pod_affinity(10, "zone", "cache").info();
        assert_eq!(
            run_score(&InterPodAffinity, &mut snapshot, &attracted),
            vec![100, 100, 0, 0]
        );
        let repelled = pod("p")
            .preferred_pod_anti_affinity(10, "zone", "cache")
            .info();
        assert_eq!(
            run_score(&InterPodAffinity, &mut snapshot, &repelled),
            vec![0, 0, 100, 100]
        );
        let plain = pod("p").info();
        assert_eq!(
            run_score(&InterPodAffinity, &mut snapshot, &plain),
            vec![0, 0, 0, 0]
        );
    }
}
