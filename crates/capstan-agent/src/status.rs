//! Pod status from what the node knows: kubelet's `generateAPIPodStatus` and `getPhase`,
//! as a pure function of the pod spec and the worker's view of each container.

use capstan_runtime::ContainerState;
use capstan_runtime::shim::Exited;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// The worker's view of one container (init or regular) of the pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub restart_count: u32,
    /// The current attempt: its runtime id and state.
    pub current: Option<(String, ContainerState)>,
    /// The attempt before, once it ended.
    pub previous: Option<(String, ContainerState)>,
    /// Why the container is not running, when it is not: kubelet's waiting reasons
    /// (`ContainerCreating`, `PodInitializing`, `CrashLoopBackOff`, `ErrImagePull`, ...).
    pub waiting: Option<(String, String)>,
    pub ready: bool,
    /// kubelet's `started`: running, and past its startup probe (if it has one).
    pub started: bool,
    /// The termination message read from the container's `terminationMessagePath`.
    pub termination_message: Option<String>,
}

impl ContainerView {
    fn running(&self) -> bool {
        matches!(self.current, Some((_, ContainerState::Running(_))))
    }

    fn exited(&self) -> Option<&Exited> {
        match &self.current {
            Some((_, ContainerState::Exited { exit, .. })) => Some(exit),
            _ => None,
        }
    }

    /// Ended successfully, for an init container (and for regular ones under Never/OnFailure).
    pub fn succeeded(&self) -> bool {
        self.exited().is_some_and(|e| e.exit_code == 0)
    }
}

/// kubelet's terminated reason.
fn terminated_reason(exit: &Exited) -> &'static str {
    if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

fn terminated(id: &str, state: &ContainerState, message: Option<&str>) -> Option<Value> {
    let (started, exit) = match state {
        ContainerState::Exited { started, exit } => {
            (started.as_ref().map(|s| s.started_at), Some(exit))
        }
        ContainerState::Lost { started } => (started.as_ref().map(|s| s.started_at), None),
        _ => return None,
    };
    let mut value = match exit {
        Some(exit) => json!({
            "exitCode": exit.exit_code,
            "reason": terminated_reason(exit),
            "finishedAt": format_time(exit.finished_at),
        }),
        // The shim vanished without a record: kubelet's words for a container it lost.
        None => {
            json!({"exitCode": 137, "reason": "ContainerStatusUnknown", "message": "The container could not be located when the pod was terminated"})
        }
    };
    if let Some(signal) = exit.and_then(|e| e.signal) {
        value["signal"] = json!(signal);
    }
    if let Some(started) = started {
        value["startedAt"] = json!(format_time(started));
    }
    if let Some(message) = message.filter(|m| !m.is_empty()) {
        value["message"] = json!(message);
    }
    value["containerID"] = json!(container_id(id));
    Some(value)
}

/// The `containerID` Kubernetes shows: `<runtime>://<id>`.
pub fn container_id(id: &str) -> String {
    format!("capstan://{id}")
}

/// Kubernetes times are RFC 3339 to the second.
pub fn format_time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn container_status(view: &ContainerView) -> Value {
    let state = match &view.current {
        Some((_, ContainerState::Running(started))) => {
            json!({"running": {"startedAt": format_time(started.started_at)}})
        }
        // A container waiting to be restarted shows why it waits, and its last run in lastState.
        _ if view.waiting.is_some() => {
            let (reason, message) = view.waiting.clone().unwrap_or_default();
            let mut waiting = json!({"reason": reason});
            if !message.is_empty() {
                waiting["message"] = json!(message);
            }
            json!({"waiting": waiting})
        }
        Some((id, state)) => match terminated(id, state, view.termination_message.as_deref()) {
            Some(t) => json!({"terminated": t}),
            None => json!({"waiting": {"reason": "ContainerCreating"}}),
        },
        None => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    // lastState: the previous attempt, or the current one when it ended and waits to restart.
    let last = match (&view.current, &view.waiting) {
        (Some((id, state)), Some(_)) => terminated(id, state, view.termination_message.as_deref()),
        _ => view
            .previous
            .as_ref()
            .and_then(|(id, state)| terminated(id, state, None)),
    };
    let mut status = json!({
        "name": view.name,
        "image": view.image,
        "imageID": view.image_id,
        "ready": view.ready,
        "restartCount": view.restart_count,
        "started": view.running() && view.started,
        "state": state,
        "lastState": last.map_or(json!({}), |t| json!({"terminated": t})),
    });
    if let Some((id, _)) = &view.current {
        status["containerID"] = json!(container_id(id));
    }
    status
}

/// kubelet's `getPhase`.
pub fn phase(pod: &Pod, init: &[ContainerView], containers: &[ContainerView]) -> &'static str {
    let restart_policy = restart_policy(pod);
    // An init container that failed for good fails the pod.
    if restart_policy == "Never"
        && init
            .iter()
            .any(|c| c.exited().is_some_and(|e| e.exit_code != 0))
    {
        return "Failed";
    }
    if !init.iter().all(ContainerView::succeeded) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        if c.running() {
            running += 1;
        } else if let Some(exit) = c.exited() {
            stopped += 1;
            if exit.exit_code == 0 {
                succeeded += 1;
            }
        } else if matches!(c.current, Some((_, ContainerState::Lost { .. }))) {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The pod's QoS class, as Kubernetes computes it: Guaranteed when every container has CPU
/// and memory limits equal to its requests, BestEffort when none has any, else Burstable.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let mut any = false;
    let mut guaranteed = true;
    for container in all {
        let resources = container.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        if !requests.is_empty() || !limits.is_empty() {
            any = true;
        }
        for name in ["cpu", "memory"] {
            let limit = limits.get(name);
            // A request left out defaults to the limit.
            let request = requests.get(name).or(limit);
            if limit.is_none() || request.map(|q| &q.0) != limit.map(|q| &q.0) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Everything the status needs besides the containers.
pub struct PodFacts<'a> {
    pub host_ip: &'a str,
    pub pod_ip: Option<&'a str>,
    pub start_time: jiff::Timestamp,
    /// Whether the sandbox (namespaces, volumes) is ready for containers.
    pub sandbox_ready: bool,
}

/// The pod's status. `previous` is the status last written, whose condition transition
/// times are kept for conditions that did not change.
pub fn pod_status(
    pod: &Pod,
    facts: &PodFacts,
    init: &[ContainerView],
    containers: &[ContainerView],
    previous: Option<&Value>,
) -> Value {
    let phase = phase(pod, init, containers);
    let initialized = init.iter().all(ContainerView::succeeded);
    let containers_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let now = format_time(jiff::Timestamp::now());
    let condition = |kind: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .and_then(|p| p["conditions"].as_array())
            .and_then(|list| {
                list.iter()
                    .find(|c| c["type"] == kind && c["status"] == status)
            })
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map_or_else(|| now.clone(), str::to_owned);
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(reason) = reason.filter(|_| !ok) {
            c["reason"] = json!(reason);
        }
        c
    };
    let not_ready_reason = if phase == "Succeeded" || phase == "Failed" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", facts.sandbox_ready, None),
        condition(
            "Initialized",
            initialized,
            Some(if phase == "Succeeded" || phase == "Failed" {
                "PodCompleted"
            } else {
                "ContainersNotInitialized"
            }),
        ),
        condition("Ready", containers_ready, Some(not_ready_reason)),
        condition("ContainersReady", containers_ready, Some(not_ready_reason)),
    ];
    // PodScheduled belongs to the scheduler: keep what it wrote.
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|list| list.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .unwrap_or_else(|| condition("PodScheduled", true, None));
    conditions.push(scheduled);

    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": facts.host_ip,
        "hostIPs": [{"ip": facts.host_ip}],
        "startTime": format_time(facts.start_time),
        "qosClass": qos_class(pod),
        "containerStatuses": containers.iter().map(container_status).collect::<Vec<_>>(),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] =
            json!(init.iter().map(container_status).collect::<Vec<_>>());
    }
    if let Some(ip) = facts.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_runtime::shim::Started;

    fn pod(restart_policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": restart_policy, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap()
    }

    fn started() -> Started {
        Started {
            shim_pid: 1,
            pid: 2,
            started_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    fn view(state: Option<ContainerState>) -> ContainerView {
        ContainerView {
            name: "c".into(),
            current: state.map(|s| ("id".to_string(), s)),
            ..Default::default()
        }
    }

    fn exited(code: i32) -> ContainerState {
        ContainerState::Exited {
            started: Some(started()),
            exit: Exited {
                exit_code: code,
                signal: None,
                oom_killed: false,
                finished_at: jiff::Timestamp::UNIX_EPOCH,
            },
        }
    }

    #[test]
    fn phase_follows_kubelet_get_phase() {
        let running = Some(ContainerState::Running(started()));
        let cases = [
            ("Always", None, "Pending"),
            ("Always", running.clone(), "Running"),
            ("Always", Some(exited(0)), "Running"),
            ("OnFailure", Some(exited(0)), "Succeeded"),
            ("OnFailure", Some(exited(1)), "Running"),
            ("Never", Some(exited(0)), "Succeeded"),
            ("Never", Some(exited(2)), "Failed"),
        ];
        for (policy, state, want) in cases {
            assert_eq!(
                phase(&pod(policy), &[], &[view(state.clone())]),
                want,
                "{policy} {state:?}"
            );
        }
    }

    #[test]
    fn a_pod_stays_pending_until_its_init_containers_succeed_and_fails_when_one_fails_under_never()
    {
        let main = [view(None)];
        assert_eq!(
            phase(
                &pod("Always"),
                &[view(Some(ContainerState::Running(started())))],
                &main
            ),
            "Pending"
        );
        assert_eq!(
            phase(&pod("Never"), &[view(Some(exited(1)))], &main),
            "Failed"
        );
        assert_eq!(
            phase(&pod("OnFailure"), &[view(Some(exited(1)))], &main),
            "Pending"
        );
    }

    #[test]
    fn qos_class_is_computed_as_kubernetes_does() {
        let with = |resources: Value| -> Pod {
            serde_json::from_value(
                json!({"spec": {"containers": [{"name": "c", "resources": resources}]}}),
            )
            .unwrap()
        };
        assert_eq!(qos_class(&with(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&with(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&with(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&with(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&with(
                json!({"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}})
            )),
            "Burstable"
        );
    }

    #[test]
    fn a_crash_looping_container_shows_waiting_with_its_last_run_in_last_state() {
        let mut v = view(Some(ContainerState::Exited {
            started: Some(started()),
            exit: Exited {
                exit_code: 137,
                signal: Some(9),
                oom_killed: true,
                finished_at: jiff::Timestamp::UNIX_EPOCH,
            },
        }));
        v.waiting = Some((
            "CrashLoopBackOff".into(),
            "back-off 10s restarting failed container=c pod=p_default(u)".into(),
        ));
        v.restart_count = 1;
        let status = container_status(&v);
        assert_eq!(status["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(status["lastState"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(status["lastState"]["terminated"]["exitCode"], 137);
        assert_eq!(status["restartCount"], 1);
    }

    #[test]
    fn condition_transition_times_are_kept_while_the_status_does_not_change() {
        let p = pod("Always");
        let facts = PodFacts {
            host_ip: "10.0.0.1",
            pod_ip: None,
            start_time: jiff::Timestamp::UNIX_EPOCH,
            sandbox_ready: true,
        };
        let mut previous = pod_status(&p, &facts, &[], &[view(None)], None);
        previous["conditions"][2]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        let next = pod_status(&p, &facts, &[], &[view(None)], Some(&previous));
        assert_eq!(next["conditions"][2]["type"], "Ready");
        assert_eq!(
            next["conditions"][2]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(next["conditions"][2]["reason"], "ContainersNotReady");
    }
}
