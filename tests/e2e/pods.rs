//! Pods on a real node: the built-in agent runs them as Linux containers (libcontainer,
//! namespaces, cgroups) and kubectl sees what really happens. Needs root.

use std::time::Duration;

use crate::harness::{Cluster, eventually};

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
    cluster.wait_for_pod("web", "{.status.phase}", "Running", Duration::from_secs(30));
    cluster.wait_for_pod(
        "web",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
        Duration::from_secs(10),
    );
    assert_eq!(cluster.pod_field("web", "{.status.qosClass}"), "BestEffort");
    assert!(
        cluster
            .pod_field("web", "{.status.containerStatuses[0].containerID}")
            .starts_with("capstan://")
    );
    assert!(
        cluster
            .pod_field("web", "{.status.containerStatuses[0].imageID}")
            .starts_with("sha256:")
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
    cluster.wait_for_pod(
        "crash",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CrashLoopBackOff",
        Duration::from_secs(30),
    );
    assert_eq!(
        cluster.pod_field(
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "3"
    );
    assert_eq!(
        cluster.pod_field(
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.reason}"
        ),
        "Error"
    );
    assert!(
        cluster
            .pod_field("crash", "{.status.containerStatuses[0].restartCount}")
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert_eq!(cluster.pod_field("crash", "{.status.phase}"), "Running");
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
    cluster.wait_for_pod(
        "done",
        "{.status.phase}",
        "Succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(
        cluster.pod_field(
            "done",
            "{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
    assert_eq!(
        cluster.pod_field(
            "done",
            "{.status.containerStatuses[0].state.terminated.message}"
        ),
        "finished\n"
    );

    // A memory limit is a real cgroup limit: the kernel kills the container, reported as OOMKilled.
    cluster.wait_for_pod("hog", "{.status.phase}", "Failed", Duration::from_secs(60));
    assert_eq!(
        cluster.pod_field(
            "hog",
            "{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "OOMKilled"
    );
    assert_eq!(
        cluster.pod_field(
            "hog",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "137"
    );
    assert_eq!(cluster.pod_field("hog", "{.status.qosClass}"), "Burstable");
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
    cluster.wait_for_pod(
        "steady",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    let id = cluster.pod_field("steady", "{.status.containerStatuses[0].containerID}");
    let started = cluster.pod_field(
        "steady",
        "{.status.containerStatuses[0].state.running.startedAt}",
    );

    // kill -9 takes the agent down with the server; the container keeps running.
    cluster.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        cluster.pod_field("steady", "{.status.containerStatuses[0].containerID}"),
        id
    );
    assert_eq!(
        cluster.pod_field(
            "steady",
            "{.status.containerStatuses[0].state.running.startedAt}"
        ),
        started
    );
    assert_eq!(
        cluster.pod_field("steady", "{.status.containerStatuses[0].restartCount}"),
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

#[test]
fn exec_cp_and_follow_reach_a_running_container() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: shell
spec:
  nodeName: e2e-node
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
    env:
    - name: GREETING
      value: hello
"#,
    );
    cluster.wait_for_pod(
        "shell",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );

    // Output, environment and the exit code come back through the API server's proxy.
    let output = cluster.kubectl_output(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo $GREETING; echo oops >&2; exit 3",
    ]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("oops"));
    assert_eq!(
        output.status.code(),
        Some(3),
        "kubectl exits with the command's code"
    );
    // stdin reaches the command, and its end is seen.
    assert_eq!(
        cluster.kubectl_stdin(
            &["exec", "-i", "shell", "--", "sh", "-c", "cat; echo end"],
            "piped\n"
        ),
        "piped\nend\n"
    );
    // A command that does not exist is an error, as containerd words it.
    let missing = cluster.kubectl_output(&["exec", "shell", "--", "no-such-command"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("executable file not found in $PATH")
    );
    // -it gives the command a terminal (kubectl wants one of its own: `script` lends it one).
    let output = std::process::Command::new("script")
        .args([
            "-qec",
            "kubectl exec -it shell -- sh -c 'tty; exit 5'",
            "/dev/null",
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("HOME", cluster.dir.path().join("home"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert_eq!(output.status.code(), Some(5), "{text}");

    // kubectl cp runs tar through exec, both ways.
    let local = cluster.write_file("copied.txt", "copied content\n");
    cluster.kubectl(&["cp", local.to_str().unwrap(), "shell:/tmp/copied.txt"]);
    assert_eq!(
        cluster.kubectl(&["exec", "shell", "--", "cat", "/tmp/copied.txt"]),
        "copied content\n"
    );
    let back = cluster.dir.path().join("back.txt");
    cluster.kubectl(&["cp", "shell:/tmp/copied.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied content\n");

    // logs -f streams new lines as they are written.
    let mut follow = cluster
        .kubectl_command(&["logs", "-f", "shell", "--tail", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        lines.push(line);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let numbers: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 4, "{lines:?}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "followed lines are consecutive: {lines:?}"
    );
}

#[test]
fn containers_of_a_pod_share_processes_only_when_asked() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: shared
spec:
  nodeName: e2e-node
  shareProcessNamespace: true
  containers:
  - name: a
    image: capstan.test/busybox:1
    command: ["sleep", "3600"]
  - name: b
    image: capstan.test/busybox:1
    command: ["sh", "-c", "while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: separate
spec:
  nodeName: e2e-node
  containers:
  - name: a
    image: capstan.test/busybox:1
    command: ["sleep", "3600"]
  - name: b
    image: capstan.test/busybox:1
    command: ["sh", "-c", "while true; do sleep 1; done"]
"#,
    );
    cluster.wait_for_pod(
        "shared",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    cluster.wait_for_pod(
        "separate",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );

    // One PID namespace: b sees a's process, and PID 1 is the pod's pause process.
    let ps = cluster.kubectl(&["exec", "shared", "-c", "b", "--", "ps", "-o", "pid,args"]);
    assert!(ps.contains("sleep 3600"), "{ps}");
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("pause")),
        "{ps}"
    );
    // ... and can signal it: a ends and is restarted.
    cluster.kubectl(&[
        "exec",
        "shared",
        "-c",
        "b",
        "--",
        "sh",
        "-c",
        "ps -o pid,args | awk '/sleep 3600/ && !/awk/ {print $1}' | xargs kill",
    ]);
    cluster.wait_for_pod(
        "shared",
        "{.status.containerStatuses[?(@.name==\"a\")].restartCount}",
        "1",
        Duration::from_secs(20),
    );

    // Separate namespaces by default: b sees only its own processes.
    let ps = cluster.kubectl(&["exec", "separate", "-c", "b", "--", "ps", "-o", "pid,args"]);
    assert!(!ps.contains("sleep 3600"), "{ps}");

    // The pause process goes with the pod.
    let pid_file = std::fs::read_dir(cluster.data_dir().join("agent/pods"))
        .unwrap()
        .flatten()
        .map(|pod| pod.path().join("ns/pause.pid"))
        .find(|p| p.exists())
        .expect("the shared pod has a pause process");
    let pause = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(std::path::Path::new(&format!("/proc/{pause}")).exists());
    cluster.kubectl(&["delete", "pod", "shared", "--grace-period=1"]);
    assert!(
        eventually(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pause}"
        ))
        .exists()),
        "the pause process outlived its pod"
    );
}

#[test]
fn attach_reaches_a_running_containers_own_streams() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: echo
spec:
  nodeName: e2e-node
  restartPolicy: Never
  containers:
  - name: main
    image: capstan.test/busybox:1
    stdin: true
    stdinOnce: true
    command: ["sh", "-c", "echo ready; while read line; do echo got $line; echo err $line >&2; done; echo bye"]
"#,
    );
    cluster.wait_for_pod(
        "echo",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    // What kubectl attach -i sends reaches the container's stdin; its output comes back on
    // stdout and stderr; stdinOnce closes the container's stdin when kubectl's input ends, so
    // the container finishes and the attachment with it.
    let output =
        cluster.kubectl_stdin_output(&["attach", "-i", "echo", "-c", "main"], "one\ntwo\n");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("got one\ngot two\n"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("err two"));
    cluster.wait_for_pod(
        "echo",
        "{.status.phase}",
        "Succeeded",
        Duration::from_secs(20),
    );
    // The log keeps both streams; stdout and stderr lines of one moment may land in either
    // order, so the stdout lines are checked in their own order.
    let logs = cluster.kubectl(&["logs", "echo"]);
    let stdout_lines: Vec<&str> = logs.lines().filter(|l| !l.starts_with("err ")).collect();
    assert!(
        stdout_lines.ends_with(&["got one", "got two", "bye"]),
        "{logs}"
    );
    assert!(logs.contains("err two"), "{logs}");
}

/// Starts `kubectl port-forward TARGET :PORT` and returns it, its stdout (kept open: kubectl
/// goes on writing to it) and the free local port kubectl picked and printed.
fn port_forward(
    cluster: &Cluster,
    target: &str,
    remote: u16,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    u16,
) {
    let mut child = cluster
        .kubectl_command(&["port-forward", target, &format!(":{remote}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {line:?}"));
    (child, stdout, port)
}

/// GETs `path` from a server on loopback with plain HTTP/1.0 and returns the body.
fn http_get(port: u16, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |at| at + 4);
    response.split_off(body)
}

#[test]
fn port_forward_reaches_a_port_inside_the_pod() {
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
  containers:
  - name: httpd
    image: capstan.test/busybox:1
    command: ["sh", "-c", "head -c 2000000 /dev/urandom > /www/big && exec httpd -f -p 8080 -h /www"]
    readinessProbe:
      tcpSocket:
        port: 8080
      periodSeconds: 1
"#,
    );
    cluster.wait_for_pod(
        "web",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
        Duration::from_secs(30),
    );
    let inside = cluster.kubectl(&["exec", "web", "--", "md5sum", "/www/big"]);

    // The pod's port 8080 is only reachable inside its network namespace.
    let (mut forward, stdout, port) = port_forward(&cluster, "pod/web", 8080);
    assert_eq!(http_get(port, "/index.html"), b"hello from capstan\n");
    // Two megabytes arrive whole, on a second connection through the same forward.
    let big = http_get(port, "/big");
    assert_eq!(big.len(), 2_000_000);
    let copy = cluster.write_file("big", "");
    std::fs::write(&copy, &big).unwrap();
    let local = std::process::Command::new("md5sum")
        .arg(&copy)
        .output()
        .unwrap();
    let local = String::from_utf8_lossy(&local.stdout);
    assert_eq!(
        inside.split_whitespace().next(),
        local.split_whitespace().next()
    );
    let _ = forward.kill();
    let _ = forward.wait();
    drop(stdout);

    // Nothing listens on 9999: kubectl reports the pod's refusal and stops.
    let (refused, stdout, port) = port_forward(&cluster, "pod/web", 9999);
    let _ = std::net::TcpStream::connect(("127.0.0.1", port)).map(|mut s| {
        let _ = std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n");
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    });
    let output = refused.wait_with_output().unwrap();
    drop(stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("failed to connect to localhost:9999 inside the pod"),
        "{stderr}"
    );
}

#[test]
fn container_logs_rotate_and_the_agent_reports_stats_from_cgroups() {
    let cluster = Cluster::start_with_node();
    // Over 10 MiB of log lines (kubelet's containerLogMaxSize), 12,000 lines of 999 bytes:
    // the file rotates.
    cluster.kubectl(&[
        "run",
        "chatty",
        "--image=capstan.test/busybox:1",
        "--",
        "sh",
        "-c",
        "head -c 11988000 /dev/zero | tr '\\0' a | fold -w 999; echo; echo last-line; exec sleep 3600",
    ]);
    assert!(
        eventually(Duration::from_secs(60), || cluster
            .kubectl_output(&["logs", "chatty", "--tail", "1"])
            .stdout
            == b"last-line\n"),
        "the last line never showed: {:?} {:?}",
        String::from_utf8_lossy(
            &cluster
                .kubectl_output(&["logs", "chatty", "--tail", "2"])
                .stdout
        ),
        cluster.kubectl(&["get", "pod", "chatty", "-o", "jsonpath={.status}"])
    );
    let uid = cluster.pod_field("chatty", "{.metadata.uid}");
    let logs = cluster
        .data_dir()
        .join(format!("agent/pods/{uid}/logs/chatty"));
    let rotated = std::fs::metadata(logs.join("0.log.1")).expect("a rotated log file");
    let current = std::fs::metadata(logs.join("0.log")).unwrap();
    assert!(
        rotated.len() >= 10 << 20,
        "rotated at {} bytes",
        rotated.len()
    );
    assert!(
        current.len() < 10 << 20,
        "the current file is {} bytes",
        current.len()
    );

    // The agent's stats endpoint (kubelet's /stats/summary) reports the pod's usage read from
    // its cgroups; it takes a client certificate of the cluster's CA.
    let port = cluster.kubectl(&[
        "get",
        "node",
        "e2e-node",
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let tls = cluster.data_dir().join("tls");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(tls.join("ca.crt"))
        .arg("--cert")
        .arg(tls.join("admin.crt"))
        .arg("--key")
        .arg(tls.join("admin.key"))
        .arg(format!("https://127.0.0.1:{port}/stats/summary"))
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let pod = summary["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["podRef"]["name"] == "chatty")
        .unwrap_or_else(|| panic!("no stats for chatty: {summary}"));
    assert!(
        pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0,
        "{pod}"
    );
    assert_eq!(summary["node"]["nodeName"], "e2e-node");
}
