//! Pods on a real node: the built-in agent runs them as Linux containers (libcontainer,
//! namespaces, cgroups) and kubectl sees what really happens. Needs root.

use std::time::Duration;

use crate::harness::{Cluster, eventually};

fn jsonpath(cluster: &Cluster, pod: &str, path: &str) -> String {
    cluster.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
}

fn wait_for(cluster: &Cluster, pod: &str, path: &str, want: &str, timeout: Duration) {
    let mut last = String::new();
    let ok = eventually(timeout, || {
        last = jsonpath(cluster, pod, path);
        last == want
    });
    assert!(
        ok,
        "pod {pod}: {path} is {last:?}, not {want:?}\n{}",
        cluster.kubectl(&["get", "pod", pod, "-o", "yaml"])
    );
}

#[test]
fn a_pod_runs_as_a_container_shows_its_logs_and_is_deleted_gracefully() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo hello from $(POD_NAME) as $(id -u) on $(hostname); trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
"#,
    );
    wait_for(
        &cluster,
        "web",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    wait_for(
        &cluster,
        "web",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
        Duration::from_secs(10),
    );
    assert_eq!(
        jsonpath(&cluster, "web", "{.status.qosClass}"),
        "BestEffort"
    );
    assert!(
        jsonpath(
            &cluster,
            "web",
            "{.status.containerStatuses[0].containerID}"
        )
        .starts_with("capstan://")
    );
    assert!(
        jsonpath(&cluster, "web", "{.status.containerStatuses[0].imageID}").starts_with("sha256:")
    );

    assert!(
        eventually(Duration::from_secs(10), || cluster
            .kubectl(&["logs", "web"])
            .contains("hello from web as 0 on web")),
        "logs: {}",
        cluster.kubectl(&["logs", "web"])
    );
    let timestamped = cluster.kubectl(&["logs", "web", "--timestamps", "--tail", "1"]);
    assert!(
        timestamped.starts_with("20") && timestamped.contains("Z hello from web"),
        "{timestamped}"
    );

    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    for reason in ["Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "events: {events}");
    }

    // The pod is marked, the container gets SIGTERM and its trap runs, then the agent removes
    // everything and deletes the pod for good; kubectl waits for that.
    let container_dirs = cluster.data_dir().join("agent/containers");
    assert_eq!(std::fs::read_dir(&container_dirs).unwrap().count(), 1);
    cluster.kubectl(&["delete", "pod", "web", "--timeout=30s"]);
    let output = cluster.kubectl_output(&["get", "pod", "web"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("NotFound"));
    assert_eq!(
        std::fs::read_dir(&container_dirs).unwrap().count(),
        0,
        "containers left behind"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(cluster.data_dir().to_str().unwrap()),
        "mounts left behind"
    );
}

#[test]
fn containers_restart_with_back_off_and_report_how_they_ended() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  nodeName: e2e-node
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo attempt; exit 3"]
---
apiVersion: v1
kind: Pod
metadata:
  name: done
spec:
  nodeName: e2e-node
  restartPolicy: Never
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo finished > /dev/termination-log"]
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  nodeName: e2e-node
  restartPolicy: Never
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived"]
    resources:
      limits:
        memory: 32Mi
"#,
    );
    // Always: restarted at once, then held in CrashLoopBackOff with the last exit recorded.
    wait_for(
        &cluster,
        "crash",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CrashLoopBackOff",
        Duration::from_secs(30),
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "3"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.reason}"
        ),
        "Error"
    );
    assert!(
        jsonpath(
            &cluster,
            "crash",
            "{.status.containerStatuses[0].restartCount}"
        )
        .parse::<u32>()
        .unwrap()
            >= 1
    );
    assert_eq!(jsonpath(&cluster, "crash", "{.status.phase}"), "Running");
    assert!(
        cluster
            .kubectl(&["logs", "crash", "--previous"])
            .contains("attempt")
    );
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crash",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("BackOff"), "events: {events}");

    // Never + exit 0: Succeeded, Completed, with the termination message.
    wait_for(
        &cluster,
        "done",
        "{.status.phase}",
        "Succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "done",
            "{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "done",
            "{.status.containerStatuses[0].state.terminated.message}"
        ),
        "finished\n"
    );

    // A memory limit is a real cgroup limit: the kernel kills the container, reported as OOMKilled.
    wait_for(
        &cluster,
        "hog",
        "{.status.phase}",
        "Failed",
        Duration::from_secs(60),
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "hog",
            "{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "OOMKilled"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "hog",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "137"
    );
    assert_eq!(jsonpath(&cluster, "hog", "{.status.qosClass}"), "Burstable");
}

#[test]
fn containers_survive_an_agent_killed_and_restarted() {
    let mut cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: steady
spec:
  nodeName: e2e-node
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "while true; do sleep 1; done"]
"#,
    );
    wait_for(
        &cluster,
        "steady",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    let id = jsonpath(
        &cluster,
        "steady",
        "{.status.containerStatuses[0].containerID}",
    );
    let started = jsonpath(
        &cluster,
        "steady",
        "{.status.containerStatuses[0].state.running.startedAt}",
    );

    // kill -9 takes the agent down with the server; the container keeps running.
    cluster.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        jsonpath(
            &cluster,
            "steady",
            "{.status.containerStatuses[0].containerID}"
        ),
        id
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "steady",
            "{.status.containerStatuses[0].state.running.startedAt}"
        ),
        started
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "steady",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );

    // A pod deleted while its agent is away is cleaned up when the agent returns (with no
    // agent to finish a graceful deletion, it is force-deleted, as `kubectl delete --force`).
    cluster.restart_with(&["--disable-agent"]);
    cluster.kubectl(&["delete", "pod", "steady", "--force", "--grace-period=0"]);
    cluster.restart_with(&[]);
    let containers = cluster.data_dir().join("agent/containers");
    assert!(
        eventually(Duration::from_secs(20), || std::fs::read_dir(&containers)
            .unwrap()
            .count()
            == 0),
        "the force-deleted pod's container was not cleaned up"
    );
}
