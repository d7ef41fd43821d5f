//! DaemonSets on real containers through kubectl: one pod per node, a node that joins gets its
//! pod, rolling updates and rollbacks node by node, a tainted node loses its pod, and deleting
//! the DaemonSet deletes its pods.

use std::time::Duration;

use crate::harness::{Cluster, eventually};

const DAEMON_SET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: logs
spec:
  selector:
    matchLabels: {app: logs}
  template:
    metadata:
      labels: {app: logs}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: capstan.test/busybox:1
        command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
        readinessProbe:
          exec: {command: [\"true\"]}
          periodSeconds: 1
";

/// The live pods of the DaemonSet as `node hash` pairs, sorted.
fn daemon_pods(cluster: &Cluster) -> Vec<String> {
    let out = cluster.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=logs",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.metadata.labels.controller-revision-hash} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut pods: Vec<String> = out
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // A fourth field is a deletionTimestamp: the pod is going.
            (fields.len() == 3 && fields[2] == "Running")
                .then(|| format!("{} {}", fields[0], fields[1]))
        })
        .collect();
    pods.sort();
    pods
}

fn rollout_status(cluster: &Cluster) {
    cluster.kubectl(&["rollout", "status", "daemonset/logs", "--timeout=90s"]);
}

fn status(cluster: &Cluster) -> String {
    cluster.kubectl(&[
        "get",
        "daemonset",
        "logs",
        "-o",
        "jsonpath={.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled} {.status.numberAvailable}",
    ])
}

fn node_ready(cluster: &Cluster, node: &str) -> bool {
    cluster.kubectl(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]) == "True"
}

#[test]
fn a_daemon_set_runs_one_pod_per_node_and_rolls_out_node_by_node() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(&["apply", "-f", "-"], DAEMON_SET);
    rollout_status(&cluster);
    let first = daemon_pods(&cluster);
    assert_eq!(first.len(), 1, "{first:?}");
    let first_hash = first[0].split(' ').nth(1).unwrap().to_string();
    assert_eq!(first[0], format!("e2e-node {first_hash}"));

    // A node that joins gets its pod.
    let _second = cluster.join_agent("e2e-node-2");
    assert!(eventually(Duration::from_secs(20), || node_ready(
        &cluster,
        "e2e-node-2"
    )));
    assert!(
        eventually(Duration::from_secs(40), || daemon_pods(&cluster).len() == 2
            && status(&cluster) == "2 2 2 2 2"),
        "{:?} / {}",
        daemon_pods(&cluster),
        status(&cluster)
    );
    let table = cluster.kubectl(&["get", "daemonset", "logs"]);
    assert!(
        table.starts_with("NAME   DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE"),
        "{table}"
    );

    // A template change rolls out node by node; rollout status waits for it.
    cluster.kubectl(&["set", "env", "daemonset/logs", "VERSION=2"]);
    rollout_status(&cluster);
    let updated = daemon_pods(&cluster);
    let new_hash = updated[0].split(' ').nth(1).unwrap().to_string();
    assert_ne!(new_hash, first_hash);
    assert_eq!(
        updated,
        [
            format!("e2e-node {new_hash}"),
            format!("e2e-node-2 {new_hash}")
        ]
    );
    let history = cluster.kubectl(&["rollout", "history", "daemonset/logs"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // Undo brings back the first template, under its first hash.
    cluster.kubectl(&["rollout", "undo", "daemonset/logs"]);
    rollout_status(&cluster);
    assert!(
        eventually(Duration::from_secs(30), || daemon_pods(&cluster)
            == [
                format!("e2e-node {first_hash}"),
                format!("e2e-node-2 {first_hash}")
            ]),
        "{:?}",
        daemon_pods(&cluster)
    );

    // A NoExecute taint the pod does not tolerate removes it from that node.
    cluster.kubectl(&["taint", "node", "e2e-node-2", "dedicated=db:NoExecute"]);
    assert!(
        eventually(Duration::from_secs(30), || daemon_pods(&cluster)
            == [format!("e2e-node {first_hash}")]
            && status(&cluster) == "1 1 1 1 1"),
        "{:?} / {}",
        daemon_pods(&cluster),
        status(&cluster)
    );

    // Deleting the DaemonSet deletes its pods.
    cluster.kubectl(&[
        "delete",
        "daemonset",
        "logs",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(
        eventually(Duration::from_secs(40), || cluster
            .kubectl(&["get", "pods", "-l", "app=logs", "-o", "name"])
            .is_empty()),
        "pods left behind"
    );
}
