//! What workload controllers read from a Pod: whether it still counts (active), whether it is
//! ready and since when, whether it is available after `minReadySeconds`, and which pods to
//! delete first when scaling down (Kubernetes' `ActivePodsWithRanks` order, with the
//! `PodDeletionCost` and `LogarithmicScaleDown` features on, as in 1.33).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::ownership::controller_ref;
use crate::runtime::Action;

/// The annotation by which users rank pods for deletion: lower costs go first.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Does the pod still count toward its controller's replicas? Finished (Succeeded, Failed) and
/// terminating pods do not (Kubernetes' `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's `Ready` condition.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod became ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// When a ready pod counts as available: `minReadySeconds` after it became ready. `None` when it
/// is not ready, or ready without a transition time while `minReadySeconds` is set (Kubernetes
/// never counts such a pod available).
pub fn available_from(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    if !is_ready(pod) {
        return None;
    }
    if min_ready_seconds <= 0 {
        return Some(Timestamp::MIN);
    }
    let since = ready_since(pod)?;
    since
        .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
        .ok()
}

/// Kubernetes' `IsPodAvailable`: ready for at least `minReadySeconds`, strictly before `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match available_from(pod, min_ready_seconds) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(from) => from < now,
    }
}

/// A requeue for the moment the next ready pod becomes available, so that availableReplicas
/// moves exactly when minReadySeconds expire rather than at the next unrelated event.
pub fn next_availability_check(pods: &[&Pod], min_ready_seconds: i32, now: Timestamp) -> Action {
    if min_ready_seconds <= 0 {
        return Action::AwaitChange;
    }
    pods.iter()
        .filter(|pod| !is_available(pod, min_ready_seconds, now))
        .filter_map(|pod| available_from(pod, min_ready_seconds))
        .min()
        .map_or(Action::AwaitChange, |from| {
            let wait = from.duration_since(now);
            // Availability needs `now` strictly after `from`: wake a millisecond late.
            let wait = Duration::try_from(wait).unwrap_or_default() + Duration::from_millis(1);
            Action::RequeueAfter(wait)
        })
}

/// The pod a controller creates from `template` (Kubernetes' `GetPodFromTemplate`): named
/// `<owner>-<random>`, with the template's labels, annotations and finalizers, controlled by
/// `owner`.
pub fn from_template<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: Option<&PodTemplateSpec>,
) -> Pod {
    let template = template.cloned().unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let owner_meta = owner.meta();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                owner_meta.name.as_deref().unwrap_or_default()
            )),
            namespace: owner_meta.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    // Kubernetes treats an unparsable cost as 0 (validation refuses it on create).
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// The highest restart counts of the pod's regular containers and of its sidecars (init
/// containers with `restartPolicy: Always`).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|s| s.restart_count)
        .max()
        .unwrap_or(0);
    let sidecar_names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|s| sidecar_names.contains(&s.name.as_str()))
        .map(|s| s.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// Go's `afterOrZero`: a missing time sorts first, then the later time.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// `LogarithmicScaleDown`: times are compared by the base-2 logarithm of their age in
/// nanoseconds, so pods of similar age rank equal; the tie is broken by uid at the very end of
/// [`deletion_order`] (spreading deletions instead of always picking the very newest).
fn logarithmic_order(a: Timestamp, b: Timestamp, now: Timestamp) -> Ordering {
    fn rank(t: Timestamp, now: Timestamp) -> i64 {
        let age = now.duration_since(t).as_nanos();
        if age > 0 {
            (age as f64).log2() as i64
        } else {
            -1
        }
    }
    rank(a, now).cmp(&rank(b, now))
}

/// Each step compares one key per pod, so that the steps together are a total order, as
/// sorting needs (a tie broken inside one step, as Go's `Less` may, is not transitive).
fn time_order(a: Option<Timestamp>, b: Option<Timestamp>, now: Timestamp) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => logarithmic_order(a, b, now),
        _ => after_or_zero(a, b),
    }
}

/// Kubernetes' `ActivePodsWithRanks.Less`: `Less` means "delete first".
fn deletion_order(a: (&Pod, usize), b: (&Pod, usize), now: Timestamp) -> Ordering {
    let ((pa, rank_a), (pb, rank_b)) = (a, b);
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let (node_a, node_b) = (node(pa), node(pb));
    // 1. Unscheduled before scheduled.
    if node_a != node_b && (node_a.is_empty() || node_b.is_empty()) {
        return if node_a.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending before Unknown before Running.
    let by_phase = phase_ordinal(pa).cmp(&phase_ordinal(pb));
    if by_phase != Ordering::Equal {
        return by_phase;
    }
    // 3. Not ready before ready.
    let by_ready = is_ready(pa).cmp(&is_ready(pb));
    if by_ready != Ordering::Equal {
        return by_ready;
    }
    // 4. Lower pod-deletion-cost first.
    let by_cost = deletion_cost(pa).cmp(&deletion_cost(pb));
    if by_cost != Ordering::Equal {
        return by_cost;
    }
    // 5. Doubled up (more related pods on the same node) first.
    let by_rank = rank_b.cmp(&rank_a);
    if by_rank != Ordering::Equal {
        return by_rank;
    }
    // 6. Ready for less time first.
    if is_ready(pa) && is_ready(pb) {
        let by_ready_time = time_order(ready_since(pa), ready_since(pb), now);
        if by_ready_time != Ordering::Equal {
            return by_ready_time;
        }
    }
    // 7. More restarts first, regular containers, then sidecars.
    let (regular_a, sidecar_a) = max_restarts(pa);
    let (regular_b, sidecar_b) = max_restarts(pb);
    let by_restarts = regular_b.cmp(&regular_a).then(sidecar_b.cmp(&sidecar_a));
    if by_restarts != Ordering::Equal {
        return by_restarts;
    }
    // 8. Newer first (missing creation time first), then by uid.
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    time_order(created(pa), created(pb), now).then_with(|| pa.metadata.uid.cmp(&pb.metadata.uid))
}

/// The `count` pods to delete first among `pods`, ranking pods that share a node with more
/// `related` pods (including themselves) as doubled up (Kubernetes' `getPodsToDelete`).
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in related {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
            && is_active(pod)
        {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&'a Pod, usize)> = pods
        .iter()
        .map(|pod| {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or("");
            (*pod, per_node.get(node).copied().unwrap_or(0))
        })
        .collect();
    ranked.sort_by(|a, b| deletion_order(*a, *b, now));
    ranked.into_iter().take(count).map(|(pod, _)| pod).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub(crate) fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    /// A pod built for ranking tests: `node` empty = unscheduled; `ready_at` Some = Ready since.
    pub(crate) fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.metadata.creation_timestamp = Some(Time(at(0)));
        pod.spec = Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.into()),
            ..PodSpec::default()
        });
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready_at.is_some() { "True" } else { "False" }.into(),
                last_transition_time: ready_at.map(|s| Time(at(s))),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn the_deletion_order_is_a_total_order_even_with_equal_times() {
        // Many pods with a few distinct creation and ready times: a comparator that breaks
        // ties inside one step is not transitive here, and sorting panics on that.
        let pods: Vec<Pod> = (0..40)
            .map(|i| {
                let mut p = pod(&format!("p{i:02}"), "n", "Running", Some(100 + (i % 3) * 7));
                p.metadata.creation_timestamp = Some(Time(at((i % 4) * 1000)));
                p
            })
            .collect();
        let ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (p, 1)).collect();
        let now = at(100_000);
        for a in &ranked {
            for b in &ranked {
                for c in &ranked {
                    let ab = deletion_order(*a, *b, now);
                    let bc = deletion_order(*b, *c, now);
                    if ab != Ordering::Greater && bc != Ordering::Greater {
                        assert_ne!(deletion_order(*a, *c, now), Ordering::Greater);
                    }
                }
            }
        }
        let all: Vec<&Pod> = pods.iter().collect();
        assert_eq!(pods_to_delete(&all, &all, 40, now).len(), 40);
    }

    fn restarts(mut pod: Pod, count: i32) -> Pod {
        if let Some(status) = pod.status.as_mut() {
            status.container_statuses = Some(vec![ContainerStatus {
                name: "c".into(),
                restart_count: count,
                ..ContainerStatus::default()
            }]);
        }
        pod
    }

    fn created(mut pod: Pod, seconds: i64) -> Pod {
        pod.metadata.creation_timestamp = Some(Time(at(seconds)));
        pod
    }

    fn first_to_delete(pods: &[Pod]) -> String {
        let refs: Vec<&Pod> = pods.iter().collect();
        let first = pods_to_delete(&refs, &refs, 1, at(100_000));
        first[0].metadata.name.clone().unwrap_or_default()
    }

    #[test]
    fn scale_down_deletes_the_least_valuable_pod_first() {
        let cases = [
            (
                "unscheduled before scheduled",
                vec![
                    pod("scheduled", "n1", "Pending", None),
                    pod("unscheduled", "", "Pending", None),
                ],
                "unscheduled",
            ),
            (
                "pending before running",
                vec![
                    pod("running", "n1", "Running", None),
                    pod("pending", "n2", "Pending", None),
                ],
                "pending",
            ),
            (
                "unknown before running",
                vec![
                    pod("running", "n1", "Running", None),
                    pod("unknown", "n2", "Unknown", None),
                ],
                "unknown",
            ),
            (
                "not ready before ready",
                vec![
                    pod("ready", "n1", "Running", Some(0)),
                    pod("not-ready", "n2", "Running", None),
                ],
                "not-ready",
            ),
            (
                "doubled up before alone",
                vec![
                    pod("alone", "n1", "Running", Some(0)),
                    pod("doubled-a", "n2", "Running", Some(0)),
                    pod("doubled-b", "n2", "Running", Some(0)),
                ],
                "doubled-a",
            ),
            (
                "recently ready before long ready",
                vec![
                    pod("old", "n1", "Running", Some(0)),
                    pod("recent", "n2", "Running", Some(99_000)),
                ],
                "recent",
            ),
            (
                "more restarts first",
                vec![
                    restarts(pod("calm", "n1", "Running", Some(0)), 0),
                    restarts(pod("crashy", "n2", "Running", Some(0)), 5),
                ],
                "crashy",
            ),
            (
                "newer first",
                vec![
                    created(pod("older", "n1", "Running", Some(0)), 0),
                    created(pod("newer", "n2", "Running", Some(0)), 90_000),
                ],
                "newer",
            ),
        ];
        for (case, pods, expected) in cases {
            assert_eq!(first_to_delete(&pods), expected, "{case}");
        }
    }

    #[test]
    fn a_lower_deletion_cost_goes_first() {
        let mut cheap = pod("cheap", "n1", "Running", Some(0));
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST_ANNOTATION.to_string(), "-10".to_string())].into());
        let mut bad = pod("bad-cost", "n2", "Running", Some(0));
        bad.metadata.annotations =
            Some([(POD_DELETION_COST_ANNOTATION.to_string(), "lots".to_string())].into());
        assert_eq!(first_to_delete(&[bad, cheap]), "cheap");
    }

    #[test]
    fn a_pod_is_available_only_after_min_ready_seconds_have_passed() {
        let ready = pod("p", "n1", "Running", Some(0));
        assert!(is_available(&ready, 0, at(0)));
        assert!(!is_available(&ready, 10, at(10)), "strictly after");
        assert!(is_available(&ready, 10, at(11)));
        assert!(!is_available(&pod("q", "n1", "Running", None), 0, at(11)));
    }

    #[test]
    fn terminating_and_finished_pods_are_not_active() {
        let mut terminating = pod("t", "n1", "Running", Some(0));
        terminating.metadata.deletion_timestamp = Some(Time(at(1)));
        assert!(!is_active(&terminating));
        assert!(!is_active(&pod("s", "n1", "Succeeded", None)));
        assert!(!is_active(&pod("f", "n1", "Failed", None)));
        assert!(is_active(&pod("r", "n1", "Running", None)));
        assert!(
            is_active(&Pod::default()),
            "a pod without status is pending"
        );
    }
}
