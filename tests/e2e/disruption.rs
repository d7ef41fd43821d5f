//! PodDisruptionBudgets, PriorityClasses, pod admission and the eviction subresource, driven by
//! kubectl against a server without nodes: budgets' status is written by hand in place of the
//! disruption controller, and pods are made Running through their status subresource.

use crate::harness::Cluster;

const MANIFESTS: &str = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector:
    matchLabels:
      app: web
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
description: for web servers
";

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels:
    app: web
spec:
  priorityClassName: high
  containers:
  - name: httpd
    image: busybox:1.36
";

fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Writes the budget's status as the disruption controller would.
fn set_budget_status(cluster: &Cluster, disruptions_allowed: i64) {
    let patch = format!(
        r#"{{"status":{{"observedGeneration":1,"disruptionsAllowed":{disruptions_allowed},"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}}}"#
    );
    cluster.kubectl(&[
        "patch",
        "pdb",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[test]
fn budgets_and_priority_classes_print_as_kubectl_shows_them() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(&["create", "-f", "-"], MANIFESTS);

    let pdb = rows(&cluster.kubectl(&["get", "pdb"]));
    assert_eq!(
        pdb[0],
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ]
    );
    assert_eq!(pdb[1][..4], ["web", "1", "N/A", "0"]);

    let pc = rows(&cluster.kubectl(&["get", "pc"]));
    assert_eq!(
        pc[0],
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    let class = |name: &str| {
        pc.iter()
            .find(|r| r[0] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {pc:?}"))
    };
    let high = class("high");
    assert_eq!(high[..3], ["high", "1000", "false"]);
    assert_eq!(high[4], "PreemptLowerPriority");
    assert_eq!(class("system-node-critical")[1], "2000001000");
    assert_eq!(class("system-cluster-critical")[1], "2000000000");

    // Kubernetes' refusals, in its words.
    let too_high = cluster.kubectl_stdin_output(
        &["create", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: huge\nvalue: 2000000000\n",
    );
    assert!(!too_high.status.success());
    assert!(
        String::from_utf8_lossy(&too_high.stderr)
            .contains("maximum allowed value of a user defined priority is 1000000000"),
        "{}",
        String::from_utf8_lossy(&too_high.stderr)
    );
    let both = cluster.kubectl_stdin_output(
        &["create", "-f", "-"],
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: both\nspec:\n  minAvailable: 1\n  maxUnavailable: 1\n",
    );
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr)
            .contains("minAvailable and maxUnavailable cannot be both set"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let system = cluster.kubectl_output(&["delete", "pc", "system-node-critical"]);
    assert!(!system.status.success());
    assert!(
        String::from_utf8_lossy(&system.stderr)
            .contains("this is a system priority class and cannot be deleted")
    );
}

#[test]
fn pods_get_their_class_priority_and_default_tolerations() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(&["create", "-f", "-"], MANIFESTS);
    cluster.kubectl_stdin(&["create", "-f", "-"], POD);
    let priority = cluster.kubectl(&["get", "pod", "web-1", "-o", "jsonpath={.spec.priority}"]);
    assert_eq!(priority, "1000");
    let policy = cluster.kubectl(&[
        "get",
        "pod",
        "web-1",
        "-o",
        "jsonpath={.spec.preemptionPolicy}",
    ]);
    assert_eq!(policy, "PreemptLowerPriority");
    let tolerations = cluster.kubectl(&[
        "get",
        "pod",
        "web-1",
        "-o",
        r#"jsonpath={range .spec.tolerations[*]}{.key}:{.effect}:{.operator}:{.tolerationSeconds}{"\n"}{end}"#,
    ]);
    assert_eq!(
        tolerations.lines().collect::<Vec<_>>(),
        [
            "node.kubernetes.io/not-ready:NoExecute:Exists:300",
            "node.kubernetes.io/unreachable:NoExecute:Exists:300",
        ]
    );

    let unknown = cluster.kubectl_stdin_output(
        &["create", "-f", "-"],
        &POD.replace("web-1", "bad").replace("high", "foo"),
    );
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("pods \"bad\" is forbidden: no PriorityClass with name foo was found"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn the_toleration_seconds_follow_the_server_flags() {
    let cluster = Cluster::start_with(&[
        "--default-not-ready-toleration-seconds",
        "60",
        "--default-unreachable-toleration-seconds",
        "120",
    ]);
    cluster.kubectl(&["run", "p", "--image=busybox:1.36"]);
    let seconds = cluster.kubectl(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.spec.tolerations[*].tolerationSeconds}",
    ]);
    assert_eq!(seconds, "60 120");
}

#[test]
fn an_eviction_waits_for_the_budget_to_allow_a_disruption() {
    // The budget's status is set by hand here: no disruption controller to overwrite it.
    let cluster = Cluster::start_with(&["--disable-controller-manager"]);
    // kubectl drain looks the subresource up in discovery before it evicts anything.
    let (code, discovery) = cluster.curl(true, &[], "/api/v1");
    assert_eq!(code, 200);
    assert!(
        discovery.contains(r#""name":"pods/eviction""#),
        "{discovery}"
    );

    cluster.kubectl_stdin(&["create", "-f", "-"], MANIFESTS);
    cluster.kubectl_stdin(&["create", "-f", "-"], POD);
    // A pending pod disrupts nothing: it would be evicted whatever the budget says.
    cluster.kubectl(&[
        "patch",
        "pod",
        "web-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    let eviction = cluster.write_file(
        "eviction.json",
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"default"},"deleteOptions":{"gracePeriodSeconds":0}}"#,
    );
    let path = "/api/v1/namespaces/default/pods/web-1/eviction";

    set_budget_status(&cluster, 0);
    let (code, body) = cluster.post_file(&eviction, path);
    assert_eq!(code, 429, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(
        status["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "DisruptionBudget", "message": "The disruption budget web needs 1 healthy pods and has 1 currently"})
    );
    cluster.kubectl(&["get", "pod", "web-1"]);

    set_budget_status(&cluster, 1);
    let out = cluster.kubectl(&["create", "--raw", path, "-f", eviction.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Success");
    let gone = cluster.kubectl_output(&["get", "pod", "web-1"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("pods \"web-1\" not found"));

    let pdb = rows(&cluster.kubectl(&["get", "pdb", "web"]));
    assert_eq!(pdb[1][3], "0", "the eviction took the allowed disruption");
    let disrupted = cluster.kubectl(&[
        "get",
        "pdb",
        "web",
        "-o",
        "jsonpath={.status.disruptedPods}",
    ]);
    assert!(disrupted.contains("web-1"), "{disrupted}");

    let (code, body) = cluster.post_file(&eviction, path);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("pods \\\"web-1\\\" not found"), "{body}");
}

#[test]
fn kubectl_drain_evicts_through_the_budget() {
    // The budget's status is set by hand here: no disruption controller to overwrite it.
    let cluster = Cluster::start_with(&["--disable-controller-manager"]);
    cluster.kubectl_stdin(&["create", "-f", "-"], MANIFESTS);
    cluster.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    );
    cluster.kubectl_stdin(
        &["create", "-f", "-"],
        &POD.replace("spec:\n", "spec:\n  nodeName: n1\n"),
    );
    cluster.kubectl(&[
        "patch",
        "pod",
        "web-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);

    set_budget_status(&cluster, 0);
    let refused =
        cluster.kubectl_output(&["drain", "n1", "--force", "--grace-period=0", "--timeout=3s"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    cluster.kubectl(&["get", "pod", "web-1"]);

    set_budget_status(&cluster, 1);
    let out = cluster.kubectl(&[
        "drain",
        "n1",
        "--force",
        "--grace-period=0",
        "--timeout=30s",
    ]);
    assert!(out.contains("pod/web-1 evicted"), "{out}");
    assert!(out.contains("node/n1 drained"), "{out}");
}
