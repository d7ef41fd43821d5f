//! The disruption controller on real containers: a budget's status follows the pods it
//! protects, and `kubectl drain` is held back by it — on a single node the evicted pod's
//! replacement cannot be scheduled, so the drain stops after exactly one eviction.

use std::time::Duration;

use crate::harness::{Cluster, eventually};

/// Three pods that are ready at once and stop at once on SIGTERM, and a budget keeping two.
const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: capstan.test/busybox:1
        command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
        readinessProbe:
          exec: {command: [\"true\"]}
          periodSeconds: 1
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
";

/// The `ALLOWED DISRUPTIONS` column of `kubectl get pdb web`.
fn allowed_disruptions(cluster: &Cluster) -> String {
    let out = cluster.kubectl(&["get", "pdb", "web", "--no-headers"]);
    out.split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string()
}

/// Names of the pods of the Deployment that are not being deleted.
fn live_pods(cluster: &Cluster) -> Vec<String> {
    cluster
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let name = fields.next()?;
            fields.next().is_none().then(|| name.to_string())
        })
        .collect()
}

#[test]
fn drain_of_the_only_node_stops_after_the_one_eviction_the_budget_allows() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(&["apply", "-f", "-"], MANIFESTS);
    cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        eventually(Duration::from_secs(20), || allowed_disruptions(&cluster)
            == "1"),
        "ALLOWED DISRUPTIONS never became 1: {}",
        cluster.kubectl(&["get", "pdb", "web", "-o", "yaml"])
    );
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.expectedPods} {.status.desiredHealthy} {.status.currentHealthy} {.status.conditions[?(@.type==\"DisruptionAllowed\")].reason}",
        ]),
        "3 2 3 SufficientPods"
    );
    let before = live_pods(&cluster);
    assert_eq!(before.len(), 3, "{before:?}");

    // One pod may go; its replacement stays Pending on the cordoned node, so the budget then
    // refuses every further eviction until the drain gives up.
    let out = cluster.kubectl_output(&[
        "drain",
        "e2e-node",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=20s",
    ]);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the drain finished: {log}");
    let after = live_pods(&cluster);
    let evicted: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(evicted.len(), 1, "evicted {evicted:?}; drain said: {log}");
    assert!(
        log.contains(&format!("pod/{} evicted", evicted[0])),
        "{log}"
    );
    assert_eq!(allowed_disruptions(&cluster), "0");

    // Back in service the replacement runs and the budget allows one disruption again.
    cluster.kubectl(&["uncordon", "e2e-node"]);
    cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        eventually(Duration::from_secs(20), || allowed_disruptions(&cluster)
            == "1"),
        "ALLOWED DISRUPTIONS never returned to 1"
    );
}
