//! DaemonSet decisions against the recording fake.

use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{Container, NodeSpec, PodTemplateSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::*;
use crate::actions::{Recorded, RecordingActions};
use crate::ownership::controller_ref;
use crate::pods::tests::{at, pod};

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "logs".to_string())])
}

fn daemon_set(image: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("logs".into()),
            namespace: Some("default".into()),
            uid: Some("uid-ds".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "logs".into(),
                        image: Some(image.into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}

fn with_strategy(mut ds: DaemonSet, surge: i32, unavailable: i32) -> DaemonSet {
    ds.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_surge: Some(IntOrString::Int(surge)),
            max_unavailable: Some(IntOrString::Int(unavailable)),
        }),
    });
    ds
}

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                name.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

fn tainted(mut node: Node, key: &str, effect: &str) -> Node {
    node.spec = Some(NodeSpec {
        taints: Some(vec![Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }]),
        ..NodeSpec::default()
    });
    node
}

/// The revision of `ds`'s current template, numbered `number`.
fn revision_of(ds: &DaemonSet, number: i64) -> ControllerRevision {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let mut revision = history::new_revision(
        ds,
        Some(&labels()),
        history::template_patch(&template),
        number,
        None,
    );
    revision.metadata.uid = Some(format!("uid-rev-{number}"));
    revision
}

fn hash(ds: &DaemonSet) -> String {
    history::hash_of(&revision_of(ds, 1)).unwrap().to_string()
}

/// A running daemon pod of `ds` on `node` at revision `hash`, ready since `ready_at`.
fn daemon_pod_on(ds: &DaemonSet, name: &str, node: &str, hash: &str, ready_at: Option<i64>) -> Pod {
    let mut p = pod(name, node, "Running", ready_at);
    p.metadata.namespace = Some("default".into());
    let mut pod_labels = labels();
    pod_labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    p.metadata.labels = Some(pod_labels);
    p.metadata.owner_references = Some(vec![controller_ref(ds)]);
    p
}

async fn sync(
    ds: &DaemonSet,
    pods: &[Pod],
    nodes: &[Node],
    revisions: &[ControllerRevision],
    now: i64,
) -> (RecordingActions, Action) {
    let actions = RecordingActions::new();
    let action = sync_with(
        ds,
        pods,
        nodes,
        revisions,
        now,
        &actions,
        &FailedPodBackoff::default(),
    )
    .await;
    (actions, action)
}

async fn sync_with(
    ds: &DaemonSet,
    pods: &[Pod],
    nodes: &[Node],
    revisions: &[ControllerRevision],
    now: i64,
    actions: &RecordingActions,
    backoff: &FailedPodBackoff,
) -> Action {
    let snapshot = Snapshot {
        pods: pods.iter().collect(),
        nodes: nodes.iter().collect(),
        revisions: revisions.iter().collect(),
    };
    sync_daemon_set(
        ds,
        &snapshot,
        actions,
        &Expectations::new(),
        backoff,
        at(now),
    )
    .await
    .unwrap()
}

fn pod_actions(actions: &RecordingActions) -> Vec<String> {
    actions
        .summaries()
        .into_iter()
        .filter(|s| s.contains(" pod "))
        .collect()
}

#[test]
fn placement_follows_selectors_node_names_and_taints_as_kubernetes_does() {
    let ds = daemon_set("img:1");
    let mut selective = daemon_set("img:1");
    selective
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())]));
    let mut named = daemon_set("img:1");
    named
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_name = Some("b".into());
    let run = Placement {
        should_run: true,
        should_continue_running: true,
    };
    let stay_only = Placement {
        should_run: false,
        should_continue_running: true,
    };
    let nowhere = Placement {
        should_run: false,
        should_continue_running: false,
    };
    let cases = [
        ("plain node", &ds, node("a"), run),
        ("nodeSelector unmatched", &selective, node("a"), nowhere),
        ("nodeName elsewhere", &named, node("a"), nowhere),
        ("nodeName here", &named, node("b"), run),
        (
            "untolerated NoSchedule",
            &ds,
            tainted(node("a"), "dedicated", "NoSchedule"),
            stay_only,
        ),
        (
            "untolerated NoExecute",
            &ds,
            tainted(node("a"), "dedicated", "NoExecute"),
            nowhere,
        ),
        (
            "cordoned",
            &ds,
            tainted(node("a"), "node.kubernetes.io/unschedulable", "NoSchedule"),
            run,
        ),
        (
            "unreachable",
            &ds,
            tainted(node("a"), "node.kubernetes.io/unreachable", "NoExecute"),
            run,
        ),
    ];
    for (case, ds, node, expected) in cases {
        assert_eq!(placement(ds, &node), expected, "{case}");
    }
}

#[tokio::test]
async fn a_new_daemon_set_records_its_template_and_pins_a_pod_to_each_eligible_node() {
    let ds = daemon_set("img:1");
    let nodes = [
        node("a"),
        node("b"),
        tainted(node("c"), "dedicated", "NoSchedule"),
    ];
    let (actions, _) = sync(&ds, &[], &nodes, &[], 0).await;
    let hash = hash(&ds);
    assert_eq!(
        actions.summaries(),
        [
            format!("create controllerrevision logs-{hash} revision 1"),
            "create pod logs-".to_string(),
            "create pod logs-".to_string(),
            "update daemonset logs status: desired=2 current=0 ready=0 updated=0 available=0 misscheduled=0 observedGeneration=1".to_string(),
        ]
    );
    let created: Vec<Pod> = actions
        .recorded()
        .into_iter()
        .filter_map(|r| match r {
            Recorded::CreatePod(pod) => Some(pod),
            _ => None,
        })
        .collect();
    let targets: Vec<&str> = created.iter().filter_map(target_node).collect();
    assert_eq!(targets, ["a", "b"]);
    let pod = &created[0];
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL],
        hash
    );
    let tolerations = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
    assert!(tolerations.iter().any(
        |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")
            && t.toleration_seconds.is_none()
    ));
    assert_eq!(
        actions.events(),
        [
            "Normal SuccessfulCreate Created pod: logs-1",
            "Normal SuccessfulCreate Created pod: logs-2"
        ]
    );
}

#[tokio::test]
async fn status_counts_the_oldest_pod_per_node_and_misplaced_pods() {
    // OnDelete, so that the old pod is counted rather than replaced.
    let mut ds = daemon_set("img:1");
    ds.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    let hash = hash(&ds);
    let nodes = [
        node("a"),
        node("b"),
        tainted(node("c"), "dedicated", "NoSchedule"),
    ];
    let pods = [
        daemon_pod_on(&ds, "logs-a", "a", &hash, Some(1)),
        daemon_pod_on(&ds, "logs-b", "b", "old", None),
        // Stays (NoSchedule only), but counts as misscheduled.
        daemon_pod_on(&ds, "logs-c", "c", &hash, Some(1)),
    ];
    let (actions, _) = sync(&ds, &pods, &nodes, &[revision_of(&ds, 1)], 10).await;
    assert_eq!(
        actions.summaries(),
        [
            "update daemonset logs status: desired=2 current=2 ready=1 updated=1 available=1 misscheduled=1 observedGeneration=1"
        ]
    );
}

#[tokio::test]
async fn failed_pods_are_replaced_with_a_backoff_and_pods_of_untolerated_or_vanished_nodes_go() {
    let ds = daemon_set("img:1");
    let hash = hash(&ds);
    let nodes = [node("a"), tainted(node("b"), "dedicated", "NoExecute")];
    let mut failed = daemon_pod_on(&ds, "logs-a", "a", &hash, None);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = [
        failed,
        daemon_pod_on(&ds, "logs-b", "b", &hash, Some(1)),
        daemon_pod_on(&ds, "logs-gone", "gone", &hash, Some(1)),
    ];
    let revisions = [revision_of(&ds, 1)];
    let backoff = FailedPodBackoff::default();
    let actions = RecordingActions::new();
    sync_with(&ds, &pods, &nodes, &revisions, 10, &actions, &backoff).await;
    let mut deleted = pod_actions(&actions);
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "delete pod logs-a",
            "delete pod logs-b",
            "delete pod logs-gone"
        ]
    );
    assert!(actions.events().contains(
        &"Warning FailedDaemonPod Found failed daemon pod default/logs-a on node a, will try to kill it"
            .to_string()
    ));

    // The same failure again within the back-off is left alone and looked at later.
    let actions = RecordingActions::new();
    let action = sync_with(&ds, &pods[..1], &nodes, &revisions, 10, &actions, &backoff).await;
    assert!(
        pod_actions(&actions).is_empty(),
        "{:?}",
        actions.summaries()
    );
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(1)));
}

#[tokio::test]
async fn duplicate_pods_on_a_node_leave_only_the_oldest() {
    let ds = daemon_set("img:1");
    let hash = hash(&ds);
    let mut newer = daemon_pod_on(&ds, "logs-y", "a", &hash, Some(1));
    newer.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5)));
    let pods = [daemon_pod_on(&ds, "logs-x", "a", &hash, Some(1)), newer];
    let (actions, _) = sync(&ds, &pods, &[node("a")], &[revision_of(&ds, 1)], 10).await;
    assert_eq!(pod_actions(&actions), ["delete pod logs-y"]);
}

#[tokio::test]
async fn a_rolling_update_without_surge_deletes_old_pods_within_max_unavailable() {
    let old = with_strategy(daemon_set("img:1"), 0, 2);
    let ds = with_strategy(daemon_set("img:2"), 0, 2);
    let old_hash = hash(&old);
    let nodes = [node("a"), node("b"), node("c"), node("d")];
    let mut pods: Vec<Pod> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| daemon_pod_on(&ds, &format!("logs-{n}"), n, &old_hash, Some(1)))
        .collect();
    // An old pod that is not available is replaced at once, at no cost to the budget.
    pods[3] = daemon_pod_on(&ds, "logs-d", "d", &old_hash, None);
    let revisions = [revision_of(&old, 1)];
    let (actions, _) = sync(&ds, &pods, &nodes, &revisions, 10).await;
    assert_eq!(
        pod_actions(&actions),
        [
            "delete pod logs-d",
            "delete pod logs-a",
            "delete pod logs-b"
        ]
    );
    assert!(actions.summaries()[0].starts_with("create controllerrevision logs-"));
    assert!(actions.summaries()[0].ends_with("revision 2"));

    // With one node already updated but not yet available, only one more old pod may go.
    let new_hash = hash(&ds);
    pods[0] = daemon_pod_on(&ds, "logs-a2", "a", &new_hash, None);
    pods[3] = daemon_pod_on(&ds, "logs-d2", "d", &new_hash, Some(1));
    let revisions = [revision_of(&old, 1), revision_of(&ds, 2)];
    let (actions, _) = sync(&ds, &pods, &nodes, &revisions, 10).await;
    assert_eq!(pod_actions(&actions), ["delete pod logs-b"]);
}

#[tokio::test]
async fn a_rolling_update_with_surge_starts_new_pods_first_and_removes_old_ones_once_available() {
    let old = with_strategy(daemon_set("img:1"), 1, 0);
    let ds = with_strategy(daemon_set("img:2"), 1, 0);
    let (old_hash, new_hash) = (hash(&old), hash(&ds));
    let nodes = [node("a"), node("b")];
    let revisions = [revision_of(&old, 1), revision_of(&ds, 2)];
    let pods = [
        daemon_pod_on(&ds, "logs-a", "a", &old_hash, Some(1)),
        daemon_pod_on(&ds, "logs-b", "b", &old_hash, Some(1)),
    ];
    let (actions, _) = sync(&ds, &pods, &nodes, &revisions, 10).await;
    assert_eq!(pod_actions(&actions), ["create pod logs-"]);
    let created = actions.recorded().into_iter().find_map(|r| match r {
        Recorded::CreatePod(pod) => Some(pod),
        _ => None,
    });
    assert_eq!(created.as_ref().and_then(target_node), Some("a"));

    // The surged pod is not ready yet: both stay, and no other node surges.
    let mut surged = daemon_pod_on(&ds, "logs-a2", "a", &new_hash, None);
    surged.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5)));
    let pods = [pods[0].clone(), pods[1].clone(), surged.clone()];
    let (actions, _) = sync(&ds, &pods, &nodes, &revisions, 10).await;
    assert!(
        pod_actions(&actions).is_empty(),
        "{:?}",
        actions.summaries()
    );

    // Once it is available the old pod on its node goes.
    let mut ready = surged;
    ready.status = daemon_pod_on(&ds, "x", "a", &new_hash, Some(6)).status;
    let pods = [pods[0].clone(), pods[1].clone(), ready];
    let (actions, _) = sync(&ds, &pods, &nodes, &revisions, 10).await;
    assert_eq!(pod_actions(&actions), ["delete pod logs-a"]);
}

#[tokio::test]
async fn on_delete_leaves_old_pods_until_the_user_deletes_them() {
    let mut ds = daemon_set("img:2");
    ds.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    let old = daemon_set("img:1");
    let pods = [daemon_pod_on(&ds, "logs-a", "a", &hash(&old), Some(1))];
    let (actions, _) = sync(&ds, &pods, &[node("a")], &[revision_of(&old, 1)], 10).await;
    assert!(
        pod_actions(&actions).is_empty(),
        "{:?}",
        actions.summaries()
    );
}

#[tokio::test]
async fn rolling_back_renumbers_the_old_revision_and_history_is_trimmed_to_the_limit() {
    let mut ds = daemon_set("img:1");
    ds.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let revisions = [
        revision_of(&ds, 1),
        revision_of(&daemon_set("img:2"), 2),
        revision_of(&daemon_set("img:3"), 3),
        revision_of(&daemon_set("img:4"), 4),
    ];
    let pods = [daemon_pod_on(
        &ds,
        "logs-a",
        "a",
        &hash(&daemon_set("img:4")),
        Some(1),
    )];
    let (actions, _) = sync(&ds, &pods, &[node("a")], &revisions, 10).await;
    let history: Vec<String> = actions
        .summaries()
        .into_iter()
        .filter(|s| s.contains("controllerrevision"))
        .collect();
    let name = |image: &str| format!("logs-{}", hash(&daemon_set(image)));
    assert_eq!(
        history,
        [
            format!("update controllerrevision {} to revision 5", name("img:1")),
            // img:1 is current and img:4 still runs a pod: of the other two, one is kept.
            format!("delete controllerrevision {}", name("img:2")),
        ]
    );
}
