//! Probes and lifecycle hooks on real containers: readiness, liveness and startup probes as
//! kubelet runs them (exec, httpGet, tcpSocket from inside the pod's network), postStart and
//! preStop hooks, and the events kubelet records about them. Needs root.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, eventually, path_str};

const READY: &str = "{.status.conditions[?(@.type==\"Ready\")].status}";

/// Waits until `pod` has an event with `reason` whose message starts with `message`.
fn wait_for_event(cluster: &Cluster, pod: &str, reason: &str, message: &str) {
    let mut seen = Vec::new();
    let found = eventually(Duration::from_secs(20), || {
        seen = cluster.pod_events(pod);
        seen.iter()
            .any(|(r, m)| r == reason && m.starts_with(message))
    });
    assert!(found, "no {reason} event {message:?} for {pod}: {seen:#?}");
}

#[test]
fn readiness_follows_an_exec_probe_both_ways() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: flag
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sleep", "3600"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    cluster.wait_for_pod(
        "flag",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    wait_for_event(
        &cluster,
        "flag",
        "Unhealthy",
        "Readiness probe failed: cat: can't open '/tmp/ready'",
    );
    assert_eq!(cluster.pod_field("flag", READY), "False");
    assert_eq!(
        cluster.pod_field(
            "flag",
            "{.status.containerStatuses[0].ready} {.status.containerStatuses[0].started}"
        ),
        "false true"
    );

    cluster.kubectl(&["exec", "flag", "--", "touch", "/tmp/ready"]);
    cluster.wait_for_pod("flag", READY, "True", Duration::from_secs(10));
    assert_eq!(
        cluster.pod_field("flag", "{.status.containerStatuses[0].ready}"),
        "true"
    );

    cluster.kubectl(&["exec", "flag", "--", "rm", "/tmp/ready"]);
    cluster.wait_for_pod("flag", READY, "False", Duration::from_secs(10));
    assert_eq!(
        cluster.pod_field("flag", "{.status.containerStatuses[0].restartCount}"),
        "0",
        "readiness never restarts a container"
    );
}

#[test]
fn exec_probes_that_time_out_fail_and_are_killed() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: stuck
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sleep", "3600"]
    readinessProbe:
      exec:
        command: ["sleep", "30"]
      periodSeconds: 1
      timeoutSeconds: 1
"#,
    );
    wait_for_event(
        &cluster,
        "stuck",
        "Unhealthy",
        "Readiness probe failed: command \"sleep 30\" timed out",
    );
    // A probe every second for a few seconds: the timed-out ones are gone, not piling up.
    std::thread::sleep(Duration::from_secs(4));
    let processes = cluster.kubectl(&["exec", "stuck", "--", "ps", "-o", "args"]);
    let probes = processes.lines().filter(|l| l.trim() == "sleep 30").count();
    assert!(probes <= 1, "timed-out probes left running:\n{processes}");
    assert_eq!(cluster.pod_field("stuck", READY), "False");
}

#[test]
fn http_readiness_probes_reach_busybox_httpd_inside_the_pod() {
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
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: capstan.test/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports:
    - name: http
      containerPort: 8080
    readinessProbe:
      httpGet:
        path: /index.html
        port: http
        httpHeaders:
        - name: X-Probe
          value: e2e
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: missing
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: capstan.test/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    readinessProbe:
      httpGet:
        path: /missing
        port: 8080
      periodSeconds: 1
"#,
    );
    cluster.wait_for_pod("web", READY, "True", Duration::from_secs(30));
    wait_for_event(
        &cluster,
        "missing",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 404",
    );
    assert_eq!(cluster.pod_field("missing", READY), "False");
    assert_eq!(cluster.pod_field("missing", "{.status.phase}"), "Running");
}

#[test]
fn a_failing_tcp_liveness_probe_kills_and_restarts_the_container() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  nodeName: e2e-node
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sleep", "3600"]
    livenessProbe:
      tcpSocket:
        port: 8080
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
"#,
    );
    let mut restarts = String::new();
    assert!(
        eventually(Duration::from_secs(40), || {
            restarts = cluster.pod_field("live", "{.status.containerStatuses[0].restartCount}");
            restarts.parse::<u32>().is_ok_and(|n| n >= 1)
        }),
        "never restarted ({restarts:?}): {:#?}",
        cluster.pod_events("live")
    );
    wait_for_event(
        &cluster,
        "live",
        "Unhealthy",
        "Liveness probe failed: dial tcp 127.0.0.1:8080: connect: connection refused",
    );
    wait_for_event(
        &cluster,
        "live",
        "Killing",
        "Container main failed liveness probe, will be restarted",
    );
    // sleep, as PID 1, ignores SIGTERM: the probe's grace (two seconds at least) ends in SIGKILL.
    let last = cluster.pod_field(
        "live",
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "137");
}

#[test]
fn a_startup_probe_holds_readiness_back_until_it_passes() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: slow
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "sleep 6; touch /tmp/started; exec sleep 3600"]
    startupProbe:
      exec:
        command: ["cat", "/tmp/started"]
      periodSeconds: 1
      failureThreshold: 30
    readinessProbe:
      exec:
        command: ["true"]
      periodSeconds: 1
"#,
    );
    cluster.wait_for_pod(
        "slow",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    let running_at = Instant::now();
    wait_for_event(
        &cluster,
        "slow",
        "Unhealthy",
        "Startup probe failed: cat: can't open '/tmp/started'",
    );
    assert_eq!(
        cluster.pod_field(
            "slow",
            "{.status.containerStatuses[0].started} {.status.containerStatuses[0].ready}"
        ),
        "false false"
    );
    assert_eq!(cluster.pod_field("slow", READY), "False");

    cluster.wait_for_pod("slow", READY, "True", Duration::from_secs(20));
    assert!(
        running_at.elapsed() >= Duration::from_secs(3),
        "ready {:?} after running: the startup probe did not hold it back",
        running_at.elapsed()
    );
    assert_eq!(
        cluster.pod_field("slow", "{.status.containerStatuses[0].started}"),
        "true"
    );
    assert!(
        !cluster
            .pod_events("slow")
            .iter()
            .any(|(_, m)| m.starts_with("Readiness probe")),
        "the readiness probe ran before the startup probe passed"
    );
}

#[test]
fn post_start_hooks_run_right_after_the_start_and_a_failed_one_restarts_the_container() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "while [ ! -f /tmp/hook ]; do sleep 0.1; done; echo saw $(cat /tmp/hook); exec sleep 3600"]
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "echo from-post-start > /tmp/hook"]
---
apiVersion: v1
kind: Pod
metadata:
  name: bad-hook
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        exec:
          command: ["sh", "-c", "echo no; exit 1"]
"#,
    );
    cluster.wait_for_pod("hooked", READY, "True", Duration::from_secs(30));
    assert!(
        eventually(Duration::from_secs(10), || cluster
            .kubectl(&["logs", "hooked"])
            .contains("saw from-post-start")),
        "logs: {}",
        cluster.kubectl(&["logs", "hooked"])
    );

    wait_for_event(
        &cluster,
        "bad-hook",
        "FailedPostStartHook",
        "PostStartHook failed",
    );
    wait_for_event(&cluster, "bad-hook", "Killing", "FailedPostStartHook");
    let mut restarts = String::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            restarts = cluster.pod_field("bad-hook", "{.status.containerStatuses[0].restartCount}");
            restarts.parse::<u32>().is_ok_and(|n| n >= 1)
        }),
        "never restarted ({restarts:?})"
    );
    assert_eq!(cluster.pod_field("bad-hook", READY), "False");
}

#[test]
fn pre_stop_hooks_run_before_sigterm_within_the_grace_period() {
    let cluster = Cluster::start_with_node();
    let out = cluster.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: polite
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 20
  volumes:
  - name: out
    hostPath:
      path: OUT
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "trap 'echo term >> /out/log; exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts:
    - name: out
      mountPath: /out
    lifecycle:
      preStop:
        exec:
          command: ["sh", "-c", "echo pre-stop >> /out/log; sleep 2"]
---
apiVersion: v1
kind: Pod
metadata:
  name: stubborn
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 6
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
    lifecycle:
      preStop:
        sleep:
          seconds: 3
"#
    .replace("OUT", path_str(&out));
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    for pod in ["polite", "stubborn"] {
        cluster.wait_for_pod(pod, "{.status.phase}", "Running", Duration::from_secs(30));
    }

    // The hook runs first and takes its two seconds; SIGTERM follows and ends the container.
    let began = Instant::now();
    cluster.kubectl(&["delete", "pod", "polite", "--timeout=30s"]);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "deleting took {took:?}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("log")).unwrap(),
        "pre-stop\nterm\n"
    );

    // The hook's three seconds come out of the six of grace: SIGKILL comes after six, not nine.
    let began = Instant::now();
    cluster.kubectl(&["delete", "pod", "stubborn", "--timeout=30s"]);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(5500) && took < Duration::from_millis(8500),
        "deleting took {took:?}"
    );
}
