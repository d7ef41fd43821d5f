//! One scheduling cycle: PreFilter, Filter over enough nodes (kube-scheduler's adaptive
//! `percentageOfNodesToScore`, starting where the last cycle stopped so that every node gets
//! its turn), PostFilter when nothing fits, Score and normalize the feasible nodes, and pick the
//! best, breaking ties at random so equal nodes share the load. Pure: it reads the snapshot and
//! returns a decision; assuming the pod is a separate step.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::framework::{Code, Cycle, Filter, NodeStatuses, Nomination, Status};
use crate::plugins::Profile;
use crate::pod_info::PodInfo;
use crate::snapshot::{NodeInfo, Snapshot, SnapshotError};

/// Below this many nodes every node is evaluated (kube-scheduler's `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to find before scoring: all of them on small clusters, then an
/// adaptive percentage (50% minus 1% per 125 nodes, at least 5%), unless configured.
pub fn num_feasible_nodes_to_find(
    percentage_of_nodes_to_score: Option<u32>,
    node_count: usize,
) -> usize {
    if node_count < MIN_FEASIBLE_NODES_TO_FIND {
        return node_count;
    }
    let percentage = match percentage_of_nodes_to_score {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => (50usize.saturating_sub(node_count / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (node_count * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The decision of a successful cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// Why each node was refused, as kube-scheduler's `Diagnosis`.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub node_statuses: NodeStatuses,
    /// Set when a PreFilter rejected the pod for every node.
    pub pre_filter_message: Option<String>,
    /// Preemption's explanation when it found nothing.
    pub post_filter_message: Option<String>,
    /// Plugins that refused at least one node; the queue uses them to decide which cluster
    /// events may help the pod.
    pub unschedulable_plugins: Vec<&'static str>,
}

/// No node fits the pod. `Display` is kube-scheduler's `FitError.Error()` text, word for word,
/// which users see in events and in the `PodScheduled` condition.
#[derive(Debug, Clone)]
pub struct FitError {
    pub pod: String,
    pub node_count: usize,
    pub diagnosis: Diagnosis,
    /// Preemption found a node: evict these victims, then the pod fits there.
    pub nomination: Option<Nomination>,
    /// Preemption found no node at all: a nomination the pod has is stale and must go.
    pub clear_nomination: bool,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.node_count)?;
        if let Some(message) = &self.diagnosis.pre_filter_message {
            write!(f, " {message}.")?;
        } else {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, status) in &self.diagnosis.node_statuses.failed {
                for reason in &status.reasons {
                    *counts.entry(reason).or_default() += 1;
                }
            }
            // Go sorts the formatted "count reason" strings, so "10 x" sorts before "2 y".
            let mut histogram: Vec<String> = counts
                .iter()
                .map(|(reason, count)| format!("{count} {reason}"))
                .collect();
            histogram.sort();
            if !histogram.is_empty() {
                write!(f, " {}.", histogram.join(", "))?;
            }
        }
        if let Some(message) = &self.diagnosis.post_filter_message {
            write!(f, " {message}.")?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Why a cycle did not produce a node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScheduleError {
    /// The snapshot has no nodes; retrying helps once a node registers.
    #[error("no nodes available to schedule pods")]
    NoNodesAvailable,
    /// No node fits; retrying helps once the cluster changes (or after preemption).
    #[error("{0}")]
    Unschedulable(Box<FitError>),
    /// A plugin failed internally; retried with backoff.
    #[error("running {plugin}: {message}")]
    Plugin {
        plugin: &'static str,
        message: String,
    },
}

/// Scheduler configuration that shapes the decision.
#[derive(Debug, Clone, Default)]
pub struct DecisionConfig {
    /// `percentageOfNodesToScore`; `None` or 0 uses the adaptive rule.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Seed of the tie-breaking random numbers; fixed in tests for determinism.
    pub seed: u64,
}

/// The decision-making half of the scheduler: a profile plus the little state kube-scheduler
/// keeps between cycles (where to start the next node scan, the tie-break generator).
pub struct Scheduler {
    profile: Profile,
    config: DecisionConfig,
    next_start_node_index: usize,
    random_state: u64,
}

impl Scheduler {
    pub fn new(profile: Profile, config: DecisionConfig) -> Scheduler {
        Scheduler {
            profile,
            random_state: config.seed | 1,
            config,
            next_start_node_index: 0,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// xorshift64*: deterministic for a seed, cheap, good enough to spread ties.
    fn next_random(&mut self) -> u64 {
        let mut x = self.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Decides where `pod` goes. Registers the snapshot counters the pod needs (hence `&mut`),
    /// but does not place the pod: call [`Scheduler::assume`] with the result.
    pub fn schedule_one(
        &mut self,
        snapshot: &mut Snapshot,
        pod: &PodInfo,
    ) -> Result<ScheduleResult, ScheduleError> {
        if snapshot.node_count() == 0 {
            return Err(ScheduleError::NoNodesAvailable);
        }
        snapshot.prepare_for(pod);
        let snapshot: &Snapshot = snapshot;
        let node_count = snapshot.node_count();
        let mut cycle = Cycle::new(pod, snapshot);
        let mut diagnosis = Diagnosis::default();

        let mut skipped: Vec<&'static str> = Vec::new();
        let mut pre_filter_rejection: Option<Status> = None;
        for plugin in &self.profile.pre_filters {
            let status = plugin.pre_filter(&mut cycle);
            match status.code {
                Code::Success => {}
                Code::Skip => skipped.push(plugin.name()),
                Code::Error => {
                    return Err(ScheduleError::Plugin {
                        plugin: plugin.name(),
                        message: status.message(),
                    });
                }
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    pre_filter_rejection = Some(status.with_plugin(plugin.name()));
                    break;
                }
            }
        }
        let filters: Vec<&dyn Filter> = self
            .profile
            .filters
            .iter()
            .filter(|f| !skipped.contains(&f.name()))
            .map(|f| f.as_ref())
            .collect();

        let mut feasible: Vec<usize> = Vec::new();
        let mut evaluated = 0;
        if let Some(rejection) = pre_filter_rejection {
            diagnosis.pre_filter_message = Some(rejection.message());
            diagnosis.unschedulable_plugins.push(rejection.plugin);
            diagnosis.node_statuses.failed =
                (0..node_count).map(|i| (i, rejection.clone())).collect();
            evaluated = node_count;
        } else {
            let wanted =
                num_feasible_nodes_to_find(self.config.percentage_of_nodes_to_score, node_count);
            let start = self.next_start_node_index % node_count;
            let nodes = snapshot.nodes();
            for offset in 0..node_count {
                let index = (start + offset) % node_count;
                evaluated = offset + 1;
                match run_filters_with_nominated_pods(&filters, &cycle, &nodes[index]) {
                    None => {
                        feasible.push(index);
                        if feasible.len() >= wanted {
                            break;
                        }
                    }
                    Some(status) if status.code == Code::Error => {
                        return Err(ScheduleError::Plugin {
                            plugin: status.plugin,
                            message: status.message(),
                        });
                    }
                    Some(status) => {
                        if !diagnosis.unschedulable_plugins.contains(&status.plugin) {
                            diagnosis.unschedulable_plugins.push(status.plugin);
                        }
                        diagnosis.node_statuses.failed.push((index, status));
                    }
                }
            }
            self.next_start_node_index = (start + evaluated) % node_count;
        }

        if feasible.is_empty() {
            let mut nomination = None;
            let mut clear_nomination = false;
            let run = |c: &Cycle<'_>, n: &NodeInfo| {
                run_filters_with_nominated_pods(&filters, c, n).unwrap_or_else(Status::success)
            };
            for plugin in &self.profile.post_filters {
                match plugin.post_filter(&cycle, &diagnosis.node_statuses, &run) {
                    Ok(found) => {
                        nomination = Some(found);
                        break;
                    }
                    Err(status) => {
                        clear_nomination |= status.code == Code::UnschedulableAndUnresolvable;
                        let message = status.message();
                        if !message.is_empty() {
                            diagnosis.post_filter_message = Some(message);
                        }
                    }
                }
            }
            if nomination.is_some() {
                diagnosis.post_filter_message = None;
                clear_nomination = false;
            }
            return Err(ScheduleError::Unschedulable(Box::new(FitError {
                pod: pod.key(),
                node_count,
                diagnosis,
                nomination,
                clear_nomination,
            })));
        }

        let result = |index: usize| ScheduleResult {
            node: snapshot.nodes()[index].name.clone(),
            evaluated_nodes: evaluated,
            feasible_nodes: feasible.len(),
        };
        if feasible.len() == 1 {
            return Ok(result(feasible[0]));
        }

        let mut totals = vec![0i64; feasible.len()];
        let mut scores = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.profile.scores {
            let status = plugin.pre_score(&mut cycle, &feasible);
            match status.code {
                Code::Skip => continue,
                Code::Success => {}
                _ => {
                    return Err(ScheduleError::Plugin {
                        plugin: plugin.name(),
                        message: status.message(),
                    });
                }
            }
            for (score, &index) in scores.iter_mut().zip(&feasible) {
                *score = plugin.score(&cycle, &snapshot.nodes()[index]);
            }
            plugin.normalize(&cycle, &mut scores);
            for (total, score) in totals.iter_mut().zip(&scores) {
                *total += score * weight;
            }
        }

        // Reservoir sampling over the best scores: every tied node is equally likely.
        let mut best = 0;
        let mut ties = 1u64;
        for i in 1..totals.len() {
            if totals[i] > totals[best] {
                best = i;
                ties = 1;
            } else if totals[i] == totals[best] {
                ties += 1;
                if self.next_random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        Ok(result(feasible[best]))
    }

    /// Places the pod on `node` in the snapshot, so the next cycle sees its resources and
    /// labels, and runs the Reserve plugins. On failure nothing is left behind.
    pub fn assume(
        &self,
        snapshot: &mut Snapshot,
        pod: Arc<PodInfo>,
        node: &str,
    ) -> Result<(), AssumeError> {
        snapshot.add_pod(Arc::clone(&pod), node)?;
        for (done, plugin) in self.profile.reserves.iter().enumerate() {
            let status = plugin.reserve(&pod, node);
            if !status.is_success() {
                for earlier in self.profile.reserves[..done].iter().rev() {
                    earlier.unreserve(&pod, node);
                }
                snapshot.remove_pod(&pod.namespace, &pod.name);
                return Err(AssumeError::Reserve {
                    plugin: plugin.name(),
                    message: status.message(),
                });
            }
        }
        Ok(())
    }

    /// Undoes [`Scheduler::assume`] (the bind failed): Unreserve in reverse, then the snapshot.
    pub fn forget(&self, snapshot: &mut Snapshot, pod: &PodInfo, node: &str) {
        for plugin in self.profile.reserves.iter().rev() {
            plugin.unreserve(pod, node);
        }
        snapshot.remove_pod(&pod.namespace, &pod.name);
    }
}

/// Why a decided pod could not be assumed; the pod is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum AssumeError {
    /// The snapshot changed under the decision (node gone, pod already placed).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A Reserve plugin refused.
    #[error("reserving with {plugin}: {message}")]
    Reserve {
        plugin: &'static str,
        message: String,
    },
}

/// The first failing filter's status (with its plugin name), or `None` when the node fits.
fn run_filters(filters: &[&dyn Filter], cycle: &Cycle<'_>, node: &NodeInfo) -> Option<Status> {
    for filter in filters {
        let status = filter.filter(cycle, node);
        if !status.is_success() {
            return Some(status.with_plugin(filter.name()));
        }
    }
    None
}

/// [`run_filters`] as kube-scheduler's `RunFilterPluginsWithNominatedPods`: when pods of the
/// same or higher priority are nominated to the node, the pod must fit with them in place (so
/// it does not take the space preemption freed for them) and also without them (so it does not
/// rely on their affinity before they are there). Without nominations — the common case — it
/// costs one check of an empty map.
fn run_filters_with_nominated_pods(
    filters: &[&dyn Filter],
    cycle: &Cycle<'_>,
    node: &NodeInfo,
) -> Option<Status> {
    if cycle.snapshot.has_nominated_pods() {
        let pod = cycle.pod;
        let mut nominated = cycle
            .snapshot
            .nominated_pods(&node.name)
            .iter()
            .filter(|p| {
                p.priority >= pod.priority && !(p.namespace == pod.namespace && p.name == pod.name)
            })
            .peekable();
        if nominated.peek().is_some() {
            let mut with_nominated = node.clone();
            for nominated_pod in nominated {
                with_nominated.add_pod(Arc::clone(nominated_pod));
            }
            if let Some(status) = run_filters(filters, cycle, &with_nominated) {
                return Some(status);
            }
        }
    }
    run_filters(filters, cycle, node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, snapshot};

    fn scheduler() -> Scheduler {
        Scheduler::new(Profile::default(), DecisionConfig::default())
    }

    #[test]
    fn feasible_nodes_to_find_follow_the_adaptive_percentage() {
        let cases = [
            (None, 50, 50),
            (None, 100, 100),
            (None, 1000, 420),
            (None, 5000, 500),
            (None, 6000, 300),
            (None, 100_000, 5000),
            (Some(100), 5000, 5000),
            (Some(1), 5000, 100),
        ];
        for (percentage, nodes, want) in cases {
            assert_eq!(
                num_feasible_nodes_to_find(percentage, nodes),
                want,
                "{percentage:?} of {nodes}"
            );
        }
    }

    #[test]
    fn fit_error_reads_like_kube_schedulers() {
        let mut snapshot = snapshot(
            vec![
                node("worker")
                    .allocatable(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "110")])
                    .build(),
                node("cp1")
                    .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
                    .build(),
                node("cp2")
                    .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
                    .build(),
            ],
            vec![],
        );
        let incoming = pod("p").requests(&[("cpu", "2")]).info();
        let Err(ScheduleError::Unschedulable(error)) =
            scheduler().schedule_one(&mut snapshot, &incoming)
        else {
            panic!("expected a FitError");
        };
        // kube-scheduler appends preemption's own FitError text, which ends in a period, with
        // " %v." — hence the double period real clusters show.
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: \
             1 No preemption victims found for incoming pod, 2 Preemption is not helpful for \
             scheduling.."
        );
        let mut plugins = error.diagnosis.unschedulable_plugins.clone();
        plugins.sort();
        assert_eq!(plugins, vec!["NodeResourcesFit", "TaintToleration"]);
        assert!(error.nomination.is_none());
    }

    #[test]
    fn counts_sort_as_text_like_go() {
        let nodes = (0..12)
            .map(|i| {
                let b = node(&format!("n{i}"));
                if i >= 10 { b.label("zone", "y") } else { b }.build()
            })
            .collect();
        let mut snapshot = snapshot(nodes, vec![]);
        let incoming = pod("p")
            .node_selector("zone", "y")
            .requests(&[("cpu", "100")])
            .info();
        let Err(ScheduleError::Unschedulable(error)) =
            scheduler().schedule_one(&mut snapshot, &incoming)
        else {
            panic!("expected a FitError");
        };
        assert!(
            error.to_string().starts_with("0/12 nodes are available: 10 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."),
            "{error}"
        );
    }

    #[test]
    fn the_best_scoring_node_wins_and_assumed_pods_count_for_the_next() {
        let mut snapshot = snapshot(
            vec![
                node("big")
                    .allocatable(&[("cpu", "8"), ("memory", "16Gi"), ("pods", "110")])
                    .build(),
                node("small")
                    .allocatable(&[("cpu", "2"), ("memory", "4Gi"), ("pods", "110")])
                    .build(),
            ],
            vec![],
        );
        let mut scheduler = scheduler();
        let first = pod("p1")
            .requests(&[("cpu", "1"), ("memory", "1Gi")])
            .info();
        let result = scheduler.schedule_one(&mut snapshot, &first).unwrap();
        assert_eq!(result.node, "big");
        scheduler
            .assume(&mut snapshot, first.clone(), "big")
            .unwrap();
        assert_eq!(snapshot.node("big").unwrap().requested.milli_cpu, 1000);
        scheduler.forget(&mut snapshot, &first, "big");
        assert_eq!(snapshot.node("big").unwrap().requested.milli_cpu, 0);
    }

    #[test]
    fn ties_are_shared_between_equal_nodes() {
        let nodes = (0..4).map(|i| node(&format!("n{i}")).build()).collect();
        let mut snapshot = snapshot(nodes, vec![]);
        let mut scheduler = scheduler();
        let mut chosen = std::collections::BTreeSet::new();
        for i in 0..40 {
            let p = pod(&format!("p{i}")).info();
            let result = scheduler.schedule_one(&mut snapshot, &p).unwrap();
            chosen.insert(result.node);
        }
        assert_eq!(chosen.len(), 4, "{chosen:?}");
    }

    #[test]
    fn spread_pods_fill_zones_evenly() {
        let nodes = (0..6)
            .map(|i| {
                node(&format!("n{i}"))
                    .label("zone", ["a", "b", "c"][i % 3])
                    .build()
            })
            .collect();
        let mut snapshot = snapshot(nodes, vec![]);
        let mut scheduler = scheduler();
        let mut per_zone = BTreeMap::new();
        for i in 0..30 {
            let p = pod(&format!("p{i}"))
                .label("app", "web")
                .spread(1, "zone", true, "web")
                .info();
            let result = scheduler.schedule_one(&mut snapshot, &p).unwrap();
            let zone = snapshot.node(&result.node).unwrap().labels["zone"].clone();
            *per_zone.entry(zone).or_insert(0) += 1;
            scheduler.assume(&mut snapshot, p, &result.node).unwrap();
        }
        assert_eq!(
            per_zone.values().copied().collect::<Vec<_>>(),
            vec![10, 10, 10]
        );
    }

    #[test]
    fn preemption_nominates_a_node_and_names_victims() {
        let mut snapshot = snapshot(
            vec![
                node("n")
                    .allocatable(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "110")])
                    .build(),
            ],
            vec![
                pod("low")
                    .priority(1)
                    .requests(&[("cpu", "1")])
                    .node_name("n")
                    .info(),
            ],
        );
        let incoming = pod("p").priority(100).requests(&[("cpu", "1")]).info();
        let Err(ScheduleError::Unschedulable(error)) =
            scheduler().schedule_one(&mut snapshot, &incoming)
        else {
            panic!("expected a FitError");
        };
        let nomination = error.nomination.clone().expect("nominated");
        assert_eq!(nomination.node, "n");
        assert_eq!(nomination.victims[0].name, "low");
        assert_eq!(
            error.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn an_empty_cluster_has_no_nodes_available() {
        let mut snapshot = Snapshot::default();
        let error = scheduler()
            .schedule_one(&mut snapshot, &pod("p").info())
            .unwrap_err();
        assert_eq!(error.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn nominated_pods_of_equal_or_higher_priority_hold_their_space() {
        // (case, nominated pod's priority, nominated node, incoming priority, incoming is the
        // nominated pod, expected node or None for unschedulable)
        let cases = [
            (
                "higher-priority nomination holds the space",
                100,
                "n1",
                50,
                false,
                None,
            ),
            ("equal priority holds it too", 50, "n1", 50, false, None),
            (
                "a lower-priority nomination does not",
                10,
                "n1",
                50,
                false,
                Some("n1"),
            ),
            (
                "a pod does not hold space against itself",
                100,
                "n1",
                100,
                true,
                Some("n1"),
            ),
            (
                "a nomination elsewhere does not matter",
                100,
                "n2",
                50,
                false,
                Some("n1"),
            ),
        ];
        for (name, nominated_priority, nominated_node, priority, itself, want) in cases {
            let small = |n: &str| {
                node(n)
                    .allocatable(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "110")])
                    .build()
            };
            let mut nodes = vec![small("n1")];
            if nominated_node == "n2" {
                nodes.push(small("n2"));
            }
            let mut snapshot = snapshot(nodes, vec![]);
            if nominated_node == "n2" {
                // n2 is full, so only n1 can take the incoming pod.
                snapshot
                    .add_pod(pod("n2-full").requests(&[("cpu", "1")]).info(), "n2")
                    .unwrap();
            }
            let nominated = pod("nominated")
                .priority(nominated_priority)
                .requests(&[("cpu", "1")])
                .info();
            snapshot.nominate(Arc::clone(&nominated), nominated_node);
            let incoming = if itself {
                nominated
            } else {
                pod("incoming")
                    .priority(priority)
                    .requests(&[("cpu", "1")])
                    .info()
            };
            let result = scheduler().schedule_one(&mut snapshot, &incoming);
            match (want, result) {
                (Some(node), Ok(result)) => assert_eq!(result.node, node, "{name}"),
                (None, Err(ScheduleError::Unschedulable(error))) => assert_eq!(
                    error.diagnosis.node_statuses.failed[0].1.message(),
                    "Insufficient cpu",
                    "{name}"
                ),
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_nomination_ends_when_the_pod_is_placed() {
        let mut snapshot = snapshot(vec![node("n1").build()], vec![]);
        let nominated = pod("p").priority(100).info();
        snapshot.nominate(Arc::clone(&nominated), "n1");
        assert_eq!(snapshot.nominated_node("default/p"), Some("n1"));
        scheduler()
            .assume(&mut snapshot, Arc::clone(&nominated), "n1")
            .unwrap();
        assert!(!snapshot.has_nominated_pods());
        assert!(snapshot.nominated_pods("n1").is_empty());
    }
}
