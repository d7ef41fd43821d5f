//! StatefulSets on real containers through kubectl: pods created one at a time in ordinal order
//! with stable names, a deleted pod coming back under its name, scaling down from the highest
//! ordinal, rolling updates from the highest ordinal down, `rollout status`, `rollout history`
//! and `rollout undo`, and the garbage collector taking the pods with the set.

use std::time::Duration;

use crate::harness::{Cluster, eventually};

/// A headless Service and the StatefulSet `web` with `replicas` pods that stop at once on
/// SIGTERM (a shell trapping it), so deletions do not wait out a grace period.
fn stateful_set(replicas: u32) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {{app: web}}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: capstan.test/busybox:1
        command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']
        readinessProbe:
          exec: {{command: [\"true\"]}}
          periodSeconds: 1
"
    )
}

/// One pod of the set as kubectl shows it.
#[derive(Debug, Clone)]
struct SetPod {
    name: String,
    uid: String,
    revision: String,
    created: String,
    /// When it became Ready, empty if it is not.
    ready_since: String,
    terminating: bool,
}

/// Every pod of the set, sorted by name.
fn set_pods(cluster: &Cluster) -> Vec<SetPod> {
    let list: serde_json::Value =
        serde_json::from_str(&cluster.kubectl(&["get", "pods", "-l", "app=web", "-o", "json"]))
            .unwrap();
    let mut pods: Vec<SetPod> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pod| {
            let meta = &pod["metadata"];
            let ready = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready" && c["status"] == "True");
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            SetPod {
                name: text(&meta["name"]),
                uid: text(&meta["uid"]),
                revision: text(&meta["labels"]["controller-revision-hash"]),
                created: text(&meta["creationTimestamp"]),
                ready_since: ready
                    .map(|c| text(&c["lastTransitionTime"]))
                    .unwrap_or_default(),
                terminating: !meta["deletionTimestamp"].is_null(),
            }
        })
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    pods
}

fn pod<'a>(pods: &'a [SetPod], name: &str) -> &'a SetPod {
    pods.iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pod {name} in {pods:?}"))
}

fn rollout_status(cluster: &Cluster) -> String {
    cluster.kubectl(&["rollout", "status", "statefulset/web", "--timeout=60s"])
}

fn status(cluster: &Cluster) -> String {
    cluster.kubectl(&[
        "get",
        "statefulset",
        "web",
        "-o",
        "jsonpath={.status.replicas} {.status.readyReplicas} {.status.currentReplicas} {.status.updatedReplicas} {.status.availableReplicas}",
    ])
}

fn revisions(cluster: &Cluster) -> (String, String) {
    let out = cluster.kubectl(&[
        "get",
        "statefulset",
        "web",
        "-o",
        "jsonpath={.status.currentRevision} {.status.updateRevision}",
    ]);
    let (current, update) = out.split_once(' ').unwrap_or_default();
    (current.to_string(), update.to_string())
}

/// `later` was created no earlier than `earlier` became ready (timestamps are RFC 3339 to the
/// second, so they compare as strings).
fn assert_created_after_ready(later: &SetPod, earlier: &SetPod) {
    assert!(
        !earlier.ready_since.is_empty() && later.created >= earlier.ready_since,
        "{} was created at {} before {} was ready ({})",
        later.name,
        later.created,
        earlier.name,
        earlier.ready_since
    );
}

fn delete_set(cluster: &Cluster) {
    cluster.kubectl(&[
        "delete",
        "statefulset",
        "web",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(
        eventually(Duration::from_secs(40), || cluster
            .kubectl(&["get", "pods", "-l", "app=web", "-o", "name"])
            .is_empty()),
        "pods left behind: {:?}",
        set_pods(cluster)
    );
}

#[test]
fn a_stateful_set_creates_pods_in_order_keeps_their_names_and_scales_down_from_the_top() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &stateful_set(3));
    let done = rollout_status(&cluster);
    assert!(done.contains("3 new pods have been updated"), "{done}");
    assert_eq!(status(&cluster), "3 3 3 3 3");

    // Created in ordinal order, each once its predecessor was ready.
    let pods = set_pods(&cluster);
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    assert_created_after_ready(pod(&pods, "web-1"), pod(&pods, "web-0"));
    assert_created_after_ready(pod(&pods, "web-2"), pod(&pods, "web-1"));
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,reason=SuccessfulCreate",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    for n in 0..3 {
        let message = format!("create Pod web-{n} in StatefulSet web successful");
        assert!(events.contains(&message), "{message} not in {events}");
    }

    // The stable identity.
    assert_eq!(
        cluster.pod_field(
            "web-1",
            "{.spec.hostname} {.spec.subdomain} {.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index} {.metadata.ownerReferences[0].kind}"
        ),
        "web-1 web web-1 1 StatefulSet"
    );

    // A deleted pod comes back under its name.
    let old_uid = pod(&pods, "web-1").uid.clone();
    cluster.kubectl(&["delete", "pod", "web-1", "--wait=false"]);
    assert!(
        eventually(Duration::from_secs(30), || {
            let pods = set_pods(&cluster);
            pods.len() == 3
                && pods
                    .iter()
                    .all(|p| !p.ready_since.is_empty() && !p.terminating)
                && pod(&pods, "web-1").uid != old_uid
        }),
        "web-1 did not come back: {:?}",
        set_pods(&cluster)
    );
    rollout_status(&cluster);

    // Scaling down removes web-2, and only then web-1.
    cluster.kubectl(&["scale", "statefulset/web", "--replicas=1"]);
    assert!(
        eventually(Duration::from_secs(40), || {
            let pods = set_pods(&cluster);
            let live = |name: &str| pods.iter().any(|p| p.name == name && !p.terminating);
            let present = |name: &str| pods.iter().any(|p| p.name == name);
            assert!(
                live("web-1") || !present("web-2"),
                "web-1 went while web-2 was still there: {pods:?}"
            );
            pods.len() == 1 && live("web-0")
        }),
        "did not scale down to web-0: {:?}",
        set_pods(&cluster)
    );
    assert!(
        eventually(Duration::from_secs(10), || status(&cluster) == "1 1 1 1 1"),
        "{}",
        status(&cluster)
    );

    delete_set(&cluster);
}

#[test]
fn a_stateful_set_rolls_out_from_the_highest_ordinal_down_and_rolls_back() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &stateful_set(3));
    rollout_status(&cluster);
    let (first, update) = revisions(&cluster);
    assert_eq!(first, update);
    assert!(first.starts_with("web-"), "{first}");

    // A template change replaces web-2, then web-1, then web-0, each after the one above is
    // ready again.
    cluster.kubectl(&["set", "env", "statefulset/web", "VERSION=2"]);
    rollout_status(&cluster);
    let (current, second) = revisions(&cluster);
    assert_eq!(current, second, "the rollout completed");
    assert_ne!(second, first);
    let pods = set_pods(&cluster);
    assert!(
        pods.len() == 3 && pods.iter().all(|p| p.revision == second),
        "{pods:?}"
    );
    assert_created_after_ready(pod(&pods, "web-1"), pod(&pods, "web-2"));
    assert_created_after_ready(pod(&pods, "web-0"), pod(&pods, "web-1"));
    assert_eq!(status(&cluster), "3 3 3 3 3");

    let history = cluster.kubectl(&["rollout", "history", "statefulset/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["1", "2"], "{history}");

    // Undo brings back the first template under its first revision, renumbered 3.
    cluster.kubectl(&["rollout", "undo", "statefulset/web"]);
    rollout_status(&cluster);
    assert!(
        eventually(Duration::from_secs(30), || {
            let pods = set_pods(&cluster);
            pods.len() == 3 && pods.iter().all(|p| p.revision == first && !p.terminating)
        }),
        "{:?}",
        set_pods(&cluster)
    );
    assert_eq!(revisions(&cluster), (first.clone(), first));
    let history = cluster.kubectl(&["rollout", "history", "statefulset/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["2", "3"], "{history}");

    delete_set(&cluster);
}
