//! `kubectl apply --server-side`: creation, field ownership, conflicts and their forcing, and
//! removal of fields a manager stops applying.

use crate::harness::{Cluster, path_str};

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        env:
        - {name: MODE, value: one}
        - {name: EXTRA, value: x}
";

#[test]
fn server_side_apply_owns_fields_conflicts_and_forces() {
    // Only kubectl's managers: the Deployment controller would add its own.
    let cluster = Cluster::start_with(&["--disable-controller-manager"]);
    let manifest = cluster.write_file("web.yaml", MANIFEST);
    let out = cluster.kubectl(&["apply", "--server-side", "-f", path_str(&manifest)]);
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let managers = cluster.kubectl(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
    ]);
    assert_eq!(managers.trim(), "kubectl/Apply");

    // `kubectl scale` (an Update by manager "kubectl", distinct from the "kubectl" Apply) takes
    // spec.replicas; applying a different value now conflicts.
    cluster.kubectl(&["scale", "deployment", "web", "--replicas=5"]);
    let conflicting =
        cluster.kubectl_output(&["apply", "--server-side", "-f", path_str(&manifest)]);
    let stderr = String::from_utf8_lossy(&conflicting.stderr);
    assert!(!conflicting.status.success());
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1"),
        "{stderr}"
    );
    assert!(stderr.contains(".spec.replicas"), "{stderr}");
    assert_eq!(
        cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );

    let out = cluster.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path_str(&manifest),
    ]);
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(
        cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );

    // A field the manager no longer applies goes; the one it still applies stays.
    let fewer = cluster.write_file(
        "web2.yaml",
        &MANIFEST.replace("        - {name: EXTRA, value: x}\n", ""),
    );
    cluster.kubectl(&["apply", "--server-side", "-f", path_str(&fewer)]);
    let env = cluster.kubectl(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert_eq!(env, "MODE");
}
