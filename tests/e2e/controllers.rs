//! The scheduler and workload controllers on real containers: Deployments rolling out, scaling,
//! pausing and rolling back through kubectl; killed pods replaced; pods that fit nowhere left
//! Pending with the scheduler's reasons; cordoned nodes; a higher-priority pod preempting a
//! lower-priority one; and a node taken away, its pods recreated on the node that is left.

use std::time::Duration;

use crate::harness::{Cluster, eventually};

/// A Deployment whose pods stop at once on SIGTERM (a shell trapping it), so rollouts do not
/// wait out the 30 s grace period of a `sleep` that ignores signals as PID 1.
fn deployment(name: &str, replicas: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
{extra_spec}      containers:
      - name: main
        image: capstan.test/busybox:1
        command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
        readinessProbe:
          exec: {{command: [\"true\"]}}
          periodSeconds: 1
"
    )
}

/// Names of the pods of `app` that are Running and not being deleted, with their nodes.
fn running_pods(cluster: &Cluster, app: &str) -> Vec<(String, String)> {
    cluster
        .kubectl(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (name, node) = (fields.next()?, fields.next()?);
            // A third field is a deletionTimestamp: the pod is going.
            fields.next().is_none().then(|| (name.to_string(), node.to_string()))
        })
        .collect()
}

fn rollout_status(cluster: &Cluster, name: &str) {
    cluster.kubectl(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ]);
}

fn replica_sets(cluster: &Cluster, app: &str) -> Vec<String> {
    let out = cluster.kubectl(&[
        "get",
        "rs",
        "-l",
        &format!("app={app}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    out.split_whitespace().map(str::to_string).collect()
}

#[test]
fn a_deployment_rolls_out_scales_pauses_and_rolls_back() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &deployment("web", 3, ""));
    rollout_status(&cluster, "web");
    assert_eq!(running_pods(&cluster, "web").len(), 3);
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.status.readyReplicas} {.status.conditions[?(@.type==\"Available\")].status}"
        ]),
        "1 3 True"
    );

    // A second revision, with its change cause.
    cluster.kubectl(&["set", "env", "deployment/web", "COLOR=blue"]);
    cluster.kubectl(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=color blue",
    ]);
    rollout_status(&cluster, "web");
    let history = cluster.kubectl(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("color blue"), "{history}");
    assert_eq!(replica_sets(&cluster, "web").len(), 2);

    // Undo goes back to the first template, reusing its ReplicaSet as revision 3.
    cluster.kubectl(&["rollout", "undo", "deployment/web"]);
    rollout_status(&cluster, "web");
    assert_eq!(
        replica_sets(&cluster, "web").len(),
        2,
        "undo made a new ReplicaSet"
    );
    assert_eq!(
        cluster.kubectl(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ]),
        "3"
    );

    // Scaling.
    cluster.kubectl(&["scale", "deployment/web", "--replicas=5"]);
    rollout_status(&cluster, "web");
    assert!(eventually(Duration::from_secs(20), || running_pods(
        &cluster, "web"
    )
    .len()
        == 5));

    // Paused, a template change makes no new ReplicaSet; resumed, it rolls out.
    cluster.kubectl(&["rollout", "pause", "deployment/web"]);
    cluster.kubectl(&["set", "env", "deployment/web", "COLOR=green"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        replica_sets(&cluster, "web").len(),
        2,
        "a paused deployment rolled out"
    );
    cluster.kubectl(&["rollout", "resume", "deployment/web"]);
    rollout_status(&cluster, "web");
    assert_eq!(replica_sets(&cluster, "web").len(), 3);

    // Restart rolls every pod.
    let before: Vec<String> = running_pods(&cluster, "web")
        .into_iter()
        .map(|p| p.0)
        .collect();
    cluster.kubectl(&["rollout", "restart", "deployment/web"]);
    rollout_status(&cluster, "web");
    assert!(eventually(Duration::from_secs(30), || {
        let now = running_pods(&cluster, "web");
        now.len() == 5 && now.iter().all(|(name, _)| !before.contains(name))
    }));

    // Deleting the Deployment takes its ReplicaSets and pods with it.
    cluster.kubectl(&["delete", "deployment/web"]);
    assert!(
        eventually(Duration::from_secs(30), || replica_sets(&cluster, "web")
            .is_empty()
            && cluster
                .kubectl(&["get", "pods", "-l", "app=web", "-o", "name"])
                .is_empty()),
        "the deployment's ReplicaSets and pods were not collected"
    );
}

#[test]
fn a_killed_pod_is_replaced() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &deployment("heal", 2, ""));
    rollout_status(&cluster, "heal");
    let victim = running_pods(&cluster, "heal")[0].0.clone();
    cluster.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    assert!(
        eventually(Duration::from_secs(10), || {
            let pods = running_pods(&cluster, "heal");
            pods.len() == 2 && pods.iter().all(|(name, _)| *name != victim)
        }),
        "the killed pod was not replaced"
    );
}

#[test]
fn a_pod_that_fits_nowhere_stays_pending_with_the_schedulers_reasons() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: Pod
metadata:
  name: greedy
spec:
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: [sleep, '3600']
    resources:
      requests: {cpu: '1000'}
",
    );
    let condition = || {
        cluster.kubectl(&[
            "get",
            "pod",
            "greedy",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}/{.status.conditions[?(@.type==\"PodScheduled\")].reason}/{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(10), || condition()
            .starts_with("False/Unschedulable/")),
        "{}",
        condition()
    );
    assert!(
        condition().contains("0/1 nodes are available: 1 Insufficient cpu."),
        "{}",
        condition()
    );
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=greedy",
        "-o",
        "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("Warning FailedScheduling: 0/1 nodes are available: 1 Insufficient cpu."),
        "{events}"
    );

    // A cordoned node takes no new pods; uncordoned, it does.
    cluster.kubectl(&["cordon", "e2e-node"]);
    assert!(eventually(Duration::from_secs(10), || cluster
        .kubectl(&[
            "get",
            "node",
            "e2e-node",
            "-o",
            "jsonpath={.spec.taints[*].key}"
        ])
        .contains("node.kubernetes.io/unschedulable")));
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: Pod
metadata:
  name: later
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: capstan.test/busybox:1, command: [sleep, '3600']}
",
    );
    let later = || {
        cluster.kubectl(&[
            "get",
            "pod",
            "later",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(10), || later()
            .contains("unschedulable")),
        "{}",
        later()
    );
    cluster.kubectl(&["uncordon", "e2e-node"]);
    cluster.wait_for_pod(
        "later",
        "{.status.phase}",
        "Running",
        Duration::from_secs(20),
    );
}

#[test]
fn a_higher_priority_pod_preempts_a_lower_priority_one() {
    let cluster = Cluster::start_with_node();
    // The node has 2 CPUs: either pod fits, both do not.
    let pod = |name: &str, class: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  priorityClassName: {class}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: capstan.test/busybox:1
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
    resources:
      requests: {{cpu: 1500m}}
"
        )
    };
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: batch}
value: 100
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: urgent}
value: 1000000
",
    );
    cluster.kubectl_stdin(&["apply", "-f", "-"], &pod("background", "batch"));
    cluster.wait_for_pod(
        "background",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    cluster.kubectl_stdin(&["apply", "-f", "-"], &pod("vip", "urgent"));
    cluster.wait_for_pod("vip", "{.status.phase}", "Running", Duration::from_secs(40));
    assert_eq!(cluster.pod_field("vip", "{.spec.nodeName}"), "e2e-node");
    let gone = cluster.kubectl_output(&["get", "pod", "background"]);
    assert!(
        !gone.status.success(),
        "the lower-priority pod is still there"
    );
    let uid = cluster.pod_field("vip", "{.metadata.uid}");
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=background",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains(&format!(
            "Preempted: Preempted by pod {uid} on node e2e-node"
        )),
        "{events}"
    );
}

#[test]
fn a_node_taken_away_has_its_pods_recreated_on_another_node() {
    // A short grace period and toleration keep the test quick; the defaults are 40 s and 300 s.
    let cluster = Cluster::start_with_node_and(&[
        "--node-monitor-grace-period",
        "8s",
        "--default-unreachable-toleration-seconds",
        "2",
    ]);
    let second = cluster.join_agent("e2e-node-2");
    assert!(eventually(Duration::from_secs(20), || cluster.kubectl(&[
        "get",
        "node",
        "e2e-node-2",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"
    ]) == "True"));
    // One pod per node, by hostname spread.
    let spread = "      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         nodeTaintsPolicy: Honor, labelSelector: {matchLabels: {app: spread}}}
";
    cluster.kubectl_stdin(&["apply", "-f", "-"], &deployment("spread", 2, spread));
    rollout_status(&cluster, "spread");
    let mut nodes: Vec<String> = running_pods(&cluster, "spread")
        .into_iter()
        .map(|p| p.1)
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["e2e-node", "e2e-node-2"]);

    drop(second);
    let ready = || {
        cluster.kubectl(&[
            "get",
            "node",
            "e2e-node-2",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.spec.taints[*].key}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(30), || ready()
            == "Unknown/node.kubernetes.io/unreachable node.kubernetes.io/unreachable"),
        "{}",
        ready()
    );
    // With `nodeTaintsPolicy: Honor` the tainted node is no longer a spread domain, so the
    // replacement may join the other pod on the node that is left.
    assert!(
        eventually(Duration::from_secs(30), || {
            let pods = running_pods(&cluster, "spread");
            pods.iter().filter(|(_, node)| node == "e2e-node").count() == 2
        }),
        "the pod of the lost node was not recreated: {:?}",
        running_pods(&cluster, "spread")
    );
}
