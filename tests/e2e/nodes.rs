//! Nodes: registration, leases and conditions of the built-in agent, and a second machine's
//! agent joining with a token (on loopback here) and running pods like the first.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Cluster, eventually};

#[test]
fn the_built_in_node_registers_what_the_machine_has_and_keeps_its_lease() {
    let cluster = Cluster::start_with_node();
    let get = |path: &str| {
        cluster.kubectl(&["get", "node", "e2e-node", "-o", &format!("jsonpath={path}")])
    };
    assert_eq!(
        get("{.metadata.labels.kubernetes\\.io/hostname}"),
        "e2e-node"
    );
    assert_eq!(get("{.metadata.labels.kubernetes\\.io/os}"), "linux");
    assert_eq!(get("{.metadata.labels.kubernetes\\.io/arch}"), "amd64");
    assert_eq!(get("{.status.nodeInfo.operatingSystem}"), "linux");
    assert!(get("{.status.nodeInfo.kernelVersion}").starts_with(|c: char| c.is_ascii_digit()));
    assert!(get("{.status.nodeInfo.containerRuntimeVersion}").starts_with("capstan://"));
    let cpus = std::thread::available_parallelism()
        .unwrap()
        .get()
        .to_string();
    assert_eq!(get("{.status.capacity.cpu}"), cpus);
    assert_eq!(get("{.status.allocatable.pods}"), "110");
    assert!(get("{.status.capacity.memory}").ends_with("Ki"));
    assert!(
        get("{.status.capacity.ephemeral-storage}")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    for condition in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(
            get(&format!(
                "{{.status.conditions[?(@.type==\"{condition}\")].status}}"
            )),
            "False"
        );
    }
    assert_eq!(
        get("{.status.conditions[?(@.type==\"Ready\")].reason}"),
        "KubeletReady"
    );

    // The Lease is renewed every 10 s.
    let renewed = || {
        cluster.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "e2e-node",
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
    };
    let first = renewed();
    assert!(!first.is_empty());
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "e2e-node",
            "-o",
            "jsonpath={.spec.holderIdentity}/{.spec.leaseDurationSeconds}"
        ]),
        "e2e-node/40"
    );
    assert!(
        eventually(Duration::from_secs(15), || renewed() != first),
        "the lease was not renewed"
    );
}

#[test]
fn a_node_past_its_eviction_threshold_reports_pressure() {
    let mut cluster = Cluster::start_with_node();
    // No disk can have more than 100% free: the threshold is crossed at once.
    cluster.restart_with(&["--eviction-hard", "nodefs.available<100%"]);
    let disk = || {
        cluster.kubectl(&[
            "get",
            "node",
            "e2e-node",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"DiskPressure\")].status}/{.status.conditions[?(@.type==\"DiskPressure\")].reason}/{.status.conditions[?(@.type==\"MemoryPressure\")].status}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(15), || disk()
            == "True/KubeletHasDiskPressure/False"),
        "disk pressure was not reported: {}",
        disk()
    );
}

#[test]
fn a_second_node_joins_with_a_token_and_runs_pods() {
    let cluster = Cluster::start_with_node();
    let agent = cluster.join_agent("worker-2");
    assert!(
        eventually(Duration::from_secs(20), || cluster.kubectl(&[
            "get",
            "node",
            "worker-2",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"
        ]) == "True"),
        "the joined node never became Ready"
    );
    // Its identity is its own node certificate, not the admin's.
    let credentials = std::fs::read_to_string(agent.dir.join("node-credentials.json")).unwrap();
    assert!(credentials.contains("clientCert"));

    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: remote
spec:
  nodeName: worker-2
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: ["sh", "-c", "echo running on $(hostname); sleep 3600"]
"#,
    );
    assert!(
        eventually(Duration::from_secs(30), || cluster.kubectl(&[
            "get",
            "pod",
            "remote",
            "-o",
            "jsonpath={.status.phase}"
        ]) == "Running"),
        "{}",
        cluster.kubectl(&["get", "pod", "remote", "-o", "yaml"])
    );
    assert!(eventually(Duration::from_secs(10), || cluster
        .kubectl(&["logs", "remote"])
        == "running on remote\n"));
    assert_eq!(
        cluster.kubectl(&["exec", "remote", "--", "echo", "exec works"]),
        "exec works\n"
    );
    // The container runs under the joined agent, not the built-in one.
    assert_eq!(
        std::fs::read_dir(agent.dir.join("containers"))
            .unwrap()
            .count(),
        1
    );
    cluster.kubectl(&["delete", "pod", "remote", "--grace-period=1"]);
    assert_eq!(
        std::fs::read_dir(agent.dir.join("containers"))
            .unwrap()
            .count(),
        0
    );

    // A token whose CA hash is not this cluster's is refused before anything is sent.
    let forged = format!("K10{}::abcdef.0123456789abcdef", "0".repeat(64));
    let refused = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args([
            "agent",
            "--server",
            &format!("https://127.0.0.1:{}", cluster.port),
            "--token",
            &forged,
        ])
        .args(["--node-ip", "127.0.0.1", "--data-dir"])
        .arg(cluster.dir.path().join("forged"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not match the join token"));
}
