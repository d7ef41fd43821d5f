//! The garbage collector: `ownerReferences` with background, foreground and orphan deletion,
//! driven by kubectl's `--cascade` flag on ConfigMaps (no node needed: the collector treats
//! every kind alike).

use std::time::Duration;

use crate::harness::{Cluster, eventually};

/// Creates ConfigMap `owner` and `count` dependents `dep-<i>` that point at it.
fn owner_with_dependents(cluster: &Cluster, count: usize) {
    cluster.kubectl(&["create", "configmap", "owner"]);
    let uid = cluster.kubectl(&[
        "get",
        "configmap",
        "owner",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    for i in 0..count {
        let manifest = format!(
            "apiVersion: v1
kind: ConfigMap
metadata:
  name: dep-{i}
  ownerReferences:
  - apiVersion: v1
    kind: ConfigMap
    name: owner
    uid: {uid}
    blockOwnerDeletion: true
"
        );
        cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    }
}

fn exists(cluster: &Cluster, name: &str) -> bool {
    cluster
        .kubectl_output(&["get", "configmap", name, "-o", "name"])
        .status
        .success()
}

#[test]
fn dependents_go_after_their_owner_is_deleted_in_the_background() {
    let cluster = Cluster::start();
    owner_with_dependents(&cluster, 3);
    cluster.kubectl(&["delete", "configmap", "owner"]);
    assert!(
        eventually(Duration::from_secs(10), || (0..3)
            .all(|i| !exists(&cluster, &format!("dep-{i}")))),
        "the dependents were not collected"
    );
    // An object whose owner never existed is collected too.
    let manifest = "apiVersion: v1
kind: ConfigMap
metadata:
  name: stray
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: ghost, uid: 6f1a3e4c-0000-4000-8000-000000000000}
";
    cluster.kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(
        eventually(Duration::from_secs(10), || !exists(&cluster, "stray")),
        "an object with a missing owner was kept"
    );
}

#[test]
fn foreground_deletion_keeps_the_owner_until_its_dependents_are_gone() {
    let cluster = Cluster::start();
    owner_with_dependents(&cluster, 2);
    // A finalizer on one dependent holds it, and so holds its owner.
    cluster.kubectl(&[
        "patch",
        "configmap",
        "dep-0",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["e2e.capstan.dev/hold"]}}"#,
    ]);
    cluster.kubectl(&[
        "delete",
        "configmap",
        "owner",
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert!(
        eventually(Duration::from_secs(10), || !exists(&cluster, "dep-1")),
        "the free dependent was not deleted"
    );
    let finalizers = cluster.kubectl(&[
        "get",
        "configmap",
        "owner",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert!(finalizers.contains("foregroundDeletion"), "{finalizers}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        exists(&cluster, "owner"),
        "the owner went before its dependent"
    );
    cluster.kubectl(&[
        "patch",
        "configmap",
        "dep-0",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(
        eventually(Duration::from_secs(10), || !exists(&cluster, "owner")
            && !exists(&cluster, "dep-0")),
        "the owner was not deleted once its dependents were"
    );
}

#[test]
fn orphan_deletion_leaves_the_dependents_without_their_owner() {
    let cluster = Cluster::start();
    owner_with_dependents(&cluster, 2);
    cluster.kubectl(&["delete", "configmap", "owner", "--cascade=orphan"]);
    assert!(
        eventually(Duration::from_secs(10), || !exists(&cluster, "owner")),
        "the owner was not deleted"
    );
    for i in 0..2 {
        let name = format!("dep-{i}");
        assert!(exists(&cluster, &name));
        assert_eq!(
            cluster.kubectl(&[
                "get",
                "configmap",
                &name,
                "-o",
                "jsonpath={.metadata.ownerReferences}"
            ]),
            ""
        );
    }
    // And they stay: nothing collects them later.
    std::thread::sleep(Duration::from_secs(2));
    assert!(exists(&cluster, "dep-0"));
}
