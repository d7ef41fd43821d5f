//! DefaultPreemption: when no node fits, find a node where evicting pods of lower priority
//! (`spec.priority`, resolved from the PriorityClass at admission) would make the pod fit
//! (kube-scheduler's `defaultpreemption` and `framework/preemption`).
//!
//! On each candidate node every lower-priority pod is removed in a what-if copy; if the pod
//! then fits, victims are reprieved one by one as long as the pod still fits: first those whose
//! eviction would violate a PodDisruptionBudget, then the others, each group most important
//! first. The chosen node is the first by, in order: fewest budget-violating victims, lowest
//! highest-victim priority, smallest sum of victim priorities (each shifted by 2^31, so that
//! more victims never look cheaper), fewest victims, latest start of its highest-priority
//! victims (`pickOneNodeForPreemption`); a full tie goes to the first node. Budgets steer the
//! choice but never block it: if every candidate violates one, preemption still goes ahead.
//!
//! A pod already nominated to a node where lower-priority victims are still terminating does
//! not preempt again: it waits for them (`PodEligibleToPreemptOthers`). The what-if checks run
//! the filters with the pods nominated to the node, like every Filter run.
//!
//! Filters that read the snapshot's counters (PodTopologySpread, InterPodAffinity) see the
//! victims still in place, as kube-scheduler also declines to reason about affinity to victims.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::disruption_budget::split_by_violation;
use crate::framework::{
    Code, Cycle, FilterRunner, NodeStatuses, Nomination, Plugin, PostFilter, Status,
};
use crate::pod_info::PodInfo;
use crate::snapshot::NodeInfo;

pub const NAME: &str = "DefaultPreemption";
pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const REASON_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const REASON_TERMINATING_ON_NOMINATED: &str =
    "not eligible due to a terminating pod on the nominated node.";

pub struct DefaultPreemption;

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// A node where preemption would work, with what it would cost.
#[derive(Debug)]
struct Candidate {
    node_index: usize,
    /// Most important first.
    victims: Vec<Arc<PodInfo>>,
    /// Victims whose eviction violates a PodDisruptionBudget.
    pdb_violations: usize,
}

/// When a pod started, in nanoseconds; a pod not started yet counts as starting now, later than
/// any started pod (kube-scheduler's `GetPodStartTime`).
fn start_time(pod: &PodInfo) -> i128 {
    pod.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(i128::MAX, |t| t.0.as_nanosecond())
}

/// Sort key putting the more important pod first: higher priority, then earlier start
/// (kube-scheduler's `MoreImportantPod`).
fn importance(pod: &PodInfo) -> (Reverse<i32>, i128) {
    (Reverse(pod.priority), start_time(pod))
}

impl Candidate {
    /// Smaller is better, compared field by field in `pickOneNodeForPreemption`'s order.
    fn cost(&self) -> (usize, i32, i64, usize, Reverse<i128>) {
        let highest = self.victims.iter().map(|v| v.priority).max();
        let highest = highest.unwrap_or(i32::MIN);
        // Each priority is shifted by 2^31 so that all terms are positive, as kube-scheduler
        // does: more victims of a negative priority must not look cheaper than fewer.
        let sum = self
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + (i64::from(i32::MAX) + 1))
            .sum();
        // The earliest start among the highest-priority victims; the later it is, the less
        // work preemption throws away.
        let earliest_start = self
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .map(|v| start_time(v))
            .min()
            .unwrap_or(i128::MIN);
        (
            self.pdb_violations,
            highest,
            sum,
            self.victims.len(),
            Reverse(earliest_start),
        )
    }
}

/// Victims on `node` that make `cycle.pod` fit, with how many of them violate a budget, or the
/// status explaining why none do (kube-scheduler's `SelectVictimsOnNode`). `Ok` with no
/// victims means the pod fits without evicting anything.
fn select_victims(
    cycle: &Cycle<'_>,
    node: &NodeInfo,
    run_filters: &FilterRunner<'_>,
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
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
    // Most important first, so they are the first given back; budget violations are counted
    // in that order too.
    lower.sort_by_cached_key(|p| importance(p));
    let (violating, non_violating) = split_by_violation(lower, cycle.snapshot.disruption_budgets());
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    let mut reprieve = |pod: Arc<PodInfo>| -> bool {
        what_if.add_pod(Arc::clone(&pod));
        if run_filters(cycle, &what_if).is_success() {
            return true;
        }
        what_if.remove_pod(&pod.namespace, &pod.name);
        victims.push(pod);
        false
    };
    // Budget-violating victims are given back first: keeping them is what matters most.
    for pod in violating {
        if !reprieve(pod) {
            pdb_violations += 1;
        }
    }
    for pod in non_violating {
        reprieve(pod);
    }
    victims.sort_by_cached_key(|p| importance(p));
    Ok((victims, pdb_violations))
}

/// Is the pod terminating because the scheduler preempted it? (`podTerminatingByPreemption`:
/// deleting, with the `DisruptionTarget` condition the scheduler sets before deleting.)
fn terminating_by_preemption(pod: &PodInfo) -> bool {
    pod.pod.metadata.deletion_timestamp.is_some()
        && pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions.iter().any(|c| {
                    c.type_ == "DisruptionTarget"
                        && c.status == "True"
                        && c.reason.as_deref() == Some("PreemptionByScheduler")
                })
            })
}

/// kube-scheduler's `PodEligibleToPreemptOthers`: `Err` with the reason when the pod must not
/// preempt now.
fn eligible_to_preempt(cycle: &Cycle<'_>, statuses: &NodeStatuses) -> Result<(), Status> {
    let pod = cycle.pod;
    if !pod.preempts {
        return Err(Status::unschedulable(format!(
            "preemption: {REASON_POLICY_NEVER}"
        )));
    }
    let nominated = cycle.snapshot.nominated_node(&pod.key()).or_else(|| {
        pod.pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
    });
    let Some(node) = nominated.and_then(|n| cycle.snapshot.node(n)) else {
        return Ok(());
    };
    // A nominated node that can never fit the pod is no reason to wait.
    if statuses
        .get(node.index)
        .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable)
    {
        return Ok(());
    }
    // Its victims are still leaving: preempting again would evict more pods for nothing.
    if node
        .pods
        .iter()
        .any(|p| p.priority < pod.priority && terminating_by_preemption(p))
    {
        return Err(Status::unschedulable(format!(
            "preemption: {REASON_TERMINATING_ON_NOMINATED}"
        )));
    }
    Ok(())
}

impl PostFilter for DefaultPreemption {
    fn post_filter(
        &self,
        cycle: &Cycle<'_>,
        statuses: &NodeStatuses,
        run_filters: &FilterRunner<'_>,
    ) -> Result<Nomination, Status> {
        eligible_to_preempt(cycle, statuses)?;
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(Candidate, _)> = None;
        for node in cycle.snapshot.nodes() {
            let helpful = statuses
                .get(node.index)
                .is_some_and(|s| s.code == Code::Unschedulable);
            if !helpful {
                *reasons.entry(REASON_NOT_HELPFUL.to_owned()).or_default() += 1;
                continue;
            }
            match select_victims(cycle, node, run_filters) {
                // The node fits as it is now (its state changed since filtering): nothing to
                // evict, so it is no preemption candidate, as in kube-scheduler.
                Ok((victims, _)) if victims.is_empty() => {}
                Ok((victims, pdb_violations)) => {
                    let candidate = Candidate {
                        node_index: node.index,
                        victims,
                        pdb_violations,
                    };
                    let cost = candidate.cost();
                    // Strictly better only: ties go to the first node.
                    if best.as_ref().is_none_or(|(_, best_cost)| cost < *best_cost) {
                        best = Some((candidate, cost));
                    }
                }
                Err(status) => {
                    for reason in status.reasons {
                        *reasons.entry(reason.into_owned()).or_default() += 1;
                    }
                }
            }
        }
        if let Some((best, _)) = best {
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
        // No candidate at all: the nomination the pod may have is stale.
        Err(Status::unresolvable(format!(
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

    /// A pod on a node for the tables: name, node, priority, CPU, `app` label (or none) and
    /// start time in seconds (or not started).
    struct Placed(
        &'static str,
        &'static str,
        i32,
        &'static str,
        &'static str,
        Option<i64>,
    );

    impl Placed {
        fn info(&self) -> Arc<PodInfo> {
            let Placed(name, node, priority, cpu, app, started) = *self;
            let mut builder = pod(name)
                .priority(priority)
                .requests(&[("cpu", cpu)])
                .node_name(node);
            if !app.is_empty() {
                builder = builder.label("app", app);
            }
            if let Some(seconds) = started {
                builder = builder.started(seconds);
            }
            builder.info()
        }
    }

    struct Case {
        name: &'static str,
        nodes: &'static [&'static str],
        pods: Vec<Placed>,
        /// (budget name, app, disruptions allowed)
        budgets: Vec<(&'static str, &'static str, i32)>,
        /// The incoming pod's priority and CPU.
        incoming: (i32, &'static str),
        node: &'static str,
        victims: Vec<&'static str>,
    }

    fn run_case(case: &Case) {
        let mut snapshot = snapshot(
            case.nodes.iter().map(|n| full(n)).collect(),
            case.pods.iter().map(Placed::info).collect(),
        );
        for (name, app, allowed) in &case.budgets {
            snapshot.upsert_disruption_budget(&crate::testing::budget(name, app, *allowed, &[]));
        }
        let incoming = pod("p")
            .priority(case.incoming.0)
            .requests(&[("cpu", case.incoming.1)])
            .info();
        let nomination = preempt(&snapshot, &incoming)
            .unwrap_or_else(|s| panic!("{}: {}", case.name, s.message()));
        let victims: Vec<&str> = nomination.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            (nomination.node.as_str(), victims),
            (case.node, case.victims.clone()),
            "{}",
            case.name
        );
    }

    #[test]
    fn victims_that_would_violate_a_budget_are_reprieved_first() {
        let pods = || {
            vec![
                Placed("guarded", "n1", 5, "1", "db", None),
                Placed("free", "n1", 10, "1", "web", None),
            ]
        };
        let cases = [
            Case {
                name: "without budgets the more important pod is kept",
                nodes: &["n1"],
                pods: pods(),
                budgets: vec![],
                incoming: (100, "1"),
                node: "n1",
                victims: vec!["guarded"],
            },
            Case {
                name: "a spent budget keeps its pod, at the cost of a more important one",
                nodes: &["n1"],
                pods: pods(),
                budgets: vec![("db", "db", 0)],
                incoming: (100, "1"),
                node: "n1",
                victims: vec!["free"],
            },
            Case {
                name: "a budget with disruptions left does not protect",
                nodes: &["n1"],
                pods: pods(),
                budgets: vec![("db", "db", 1)],
                incoming: (100, "1"),
                node: "n1",
                victims: vec!["guarded"],
            },
            Case {
                name: "when only a violating eviction helps, preemption still goes ahead",
                nodes: &["n1"],
                pods: pods(),
                budgets: vec![("db", "db", 0), ("web", "web", 0)],
                incoming: (100, "2"),
                node: "n1",
                victims: vec!["free", "guarded"],
            },
        ];
        for case in &cases {
            run_case(case);
        }
    }

    #[test]
    fn candidate_nodes_are_ranked_in_kube_schedulers_order() {
        let cases = [
            Case {
                name: "fewest budget violations beats lower victim priority",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-guarded", "n1", 1, "2", "db", None),
                    Placed("n2-free", "n2", 50, "2", "web", None),
                ],
                budgets: vec![("db", "db", 0)],
                incoming: (100, "1"),
                node: "n2",
                victims: vec!["n2-free"],
            },
            Case {
                name: "then the lowest highest-victim priority",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-a", "n1", 10, "2", "", None),
                    Placed("n2-a", "n2", 5, "1", "", None),
                    Placed("n2-b", "n2", 5, "1", "", None),
                ],
                budgets: vec![],
                incoming: (100, "2"),
                node: "n2",
                victims: vec!["n2-a", "n2-b"],
            },
            Case {
                name: "then the smallest sum of priorities",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-a", "n1", 10, "1", "", None),
                    Placed("n1-b", "n1", 10, "1", "", None),
                    Placed("n2-a", "n2", 10, "1", "", None),
                    Placed("n2-b", "n2", 1, "1", "", None),
                ],
                budgets: vec![],
                incoming: (100, "2"),
                node: "n2",
                victims: vec!["n2-a", "n2-b"],
            },
            Case {
                name: "priorities are summed shifted: more negative victims are not cheaper",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-a", "n1", -5, "1", "", None),
                    Placed("n1-b", "n1", -10, "1", "", None),
                    Placed("n2-a", "n2", -5, "2", "", None),
                ],
                budgets: vec![],
                incoming: (100, "2"),
                node: "n2",
                victims: vec!["n2-a"],
            },
            Case {
                name: "then the fewest victims",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-a", "n1", 7, "1", "", None),
                    Placed("n1-b", "n1", i32::MIN, "1", "", None),
                    Placed("n2-a", "n2", 7, "2", "", None),
                ],
                budgets: vec![],
                incoming: (100, "2"),
                node: "n2",
                victims: vec!["n2-a"],
            },
            Case {
                name: "then the latest start of the highest-priority victims",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-a", "n1", 10, "2", "", Some(200)),
                    Placed("n2-a", "n2", 10, "2", "", Some(100)),
                ],
                budgets: vec![],
                incoming: (100, "1"),
                node: "n1",
                victims: vec!["n1-a"],
            },
            Case {
                name: "a victim not started yet counts as the latest",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-a", "n1", 10, "2", "", Some(200)),
                    Placed("n2-a", "n2", 10, "2", "", None),
                ],
                budgets: vec![],
                incoming: (100, "1"),
                node: "n2",
                victims: vec!["n2-a"],
            },
            Case {
                name: "a full tie goes to the first node",
                nodes: &["n1", "n2"],
                pods: vec![
                    Placed("n1-a", "n1", 10, "2", "", Some(100)),
                    Placed("n2-a", "n2", 10, "2", "", Some(100)),
                ],
                budgets: vec![],
                incoming: (100, "1"),
                node: "n1",
                victims: vec!["n1-a"],
            },
        ];
        for case in &cases {
            run_case(case);
        }
    }

    #[test]
    fn a_nominated_pod_waits_for_its_victims_instead_of_preempting_again() {
        let cases = [
            // (victim on the nominated node terminating by preemption?, eligible?)
            ("victim terminating", true, false),
            ("victim still running", false, true),
        ];
        for (name, terminating, eligible) in cases {
            let mut victim = pod("victim")
                .priority(1)
                .requests(&[("cpu", "2")])
                .node_name("n1");
            if terminating {
                victim = victim.terminating_by_preemption();
            }
            let mut snapshot = snapshot(
                vec![full("n1"), full("n2")],
                vec![
                    victim.info(),
                    pod("other")
                        .priority(1)
                        .requests(&[("cpu", "2")])
                        .node_name("n2")
                        .info(),
                ],
            );
            let incoming = pod("p").priority(100).requests(&[("cpu", "2")]).info();
            snapshot.nominate(Arc::clone(&incoming), "n1");
            let result = preempt(&snapshot, &incoming);
            assert_eq!(result.is_ok(), eligible, "{name}");
            if !eligible {
                assert_eq!(
                    result.unwrap_err().message(),
                    format!("preemption: {REASON_TERMINATING_ON_NOMINATED}"),
                    "{name}"
                );
            }
        }
    }
}
