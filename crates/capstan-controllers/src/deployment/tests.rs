//! Deployment decisions, table by table, against the recording fake.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy, ReplicaSetSpec,
    ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::sync::compute_hash;
use super::*;
use crate::actions::{Recorded, RecordingActions};
use crate::pods::tests::at;

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "web".to_string())])
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavailable),
        }),
    }
}

fn deployment(replicas: i32, image: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-deploy".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels()),
                match_expressions: None,
            },
            template: template(image),
            strategy: Some(rolling(
                IntOrString::String("25%".into()),
                IntOrString::String("25%".into()),
            )),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(1),
            ..DeploymentStatus::default()
        }),
    }
}

/// A ReplicaSet of `d` for `image`, sized as the deployment last sized it.
fn replica_set_of(
    d: &Deployment,
    image: &str,
    replicas: i32,
    available: i32,
    revision: i64,
    created: i64,
) -> ReplicaSet {
    let mut template = template(image);
    let hash = compute_hash(&template, None);
    template
        .metadata
        .as_mut()
        .and_then(|m| m.labels.as_mut())
        .map(|l| l.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone()));
    let desired = deployment_replicas(d);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{hash}")),
            namespace: Some("default".into()),
            uid: Some(format!("uid-rs-{image}")),
            generation: Some(1),
            creation_timestamp: Some(Time(at(created))),
            owner_references: Some(vec![controller_ref(d)]),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(BTreeMap::from([
                (REVISION_ANNOTATION.to_string(), revision.to_string()),
                (DESIRED_REPLICAS_ANNOTATION.to_string(), desired.to_string()),
                (
                    MAX_REPLICAS_ANNOTATION.to_string(),
                    (desired + rolling::max_surge(d)).to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                match_expressions: None,
            },
            template: Some(template),
            min_ready_seconds: None,
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            observed_generation: Some(1),
            ..ReplicaSetStatus::default()
        }),
    }
}

async fn sync(
    d: &Deployment,
    rss: &[ReplicaSet],
    actions: &RecordingActions,
    now: i64,
) -> Result<Action, SyncError> {
    let refs: Vec<&ReplicaSet> = rss.iter().collect();
    sync_deployment(d, &refs, &[], actions, at(now)).await
}

/// The scaling actions only: what a rollout step decided.
fn scaling(actions: &RecordingActions) -> Vec<String> {
    actions
        .summaries()
        .into_iter()
        .filter(|s| {
            s.starts_with("create replicaset")
                || s.starts_with("update replicaset")
                || s.starts_with("delete replicaset")
        })
        .filter(|s| !s.contains(" status:"))
        .collect()
}

fn last_status(actions: &RecordingActions) -> DeploymentStatus {
    actions
        .recorded()
        .into_iter()
        .rev()
        .find_map(|r| match r {
            Recorded::UpdateDeploymentStatus(d) => d.status,
            _ => None,
        })
        .expect("a status was written")
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn pod_template_hash_is_stable_safe_encoded_and_changes_with_the_collision_count() {
    let hash = compute_hash(&template("nginx:1"), None);
    assert_eq!(hash, compute_hash(&template("nginx:1"), None));
    assert_ne!(hash, compute_hash(&template("nginx:2"), None));
    assert_ne!(hash, compute_hash(&template("nginx:1"), Some(1)));
    assert!(
        hash.chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{hash}"
    );
}

#[tokio::test]
async fn a_new_deployment_creates_its_replica_set_labelled_with_the_template_hash() {
    let d = deployment(3, "nginx:1");
    let actions = RecordingActions::new();
    sync(&d, &[], &actions, 0).await.unwrap();
    let hash = compute_hash(&template("nginx:1"), None);
    let Recorded::CreateReplicaSet(rs) = &actions.recorded()[0] else {
        panic!(
            "first action creates the replica set: {:?}",
            actions.summaries()
        );
    };
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL],
        hash
    );
    let template_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(template_labels[POD_TEMPLATE_HASH_LABEL], hash);
    let annotations = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[REVISION_ANNOTATION], "1");
    assert_eq!(annotations[DESIRED_REPLICAS_ANNOTATION], "3");
    assert_eq!(annotations[MAX_REPLICAS_ANNOTATION], "4");
    assert_eq!(
        actions.events(),
        [format!(
            "Normal ScalingReplicaSet Scaled up replica set web-{hash} from 0 to 3"
        )]
    );
    // The revision annotation goes through the main resource, the condition through status.
    let Recorded::UpdateDeployment(updated) = &actions.recorded()[1] else {
        panic!("then the deployment's revision: {:?}", actions.summaries());
    };
    assert_eq!(
        updated.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
        "1"
    );
    let progressing = condition(&last_status(&actions), reasons::PROGRESSING).clone();
    assert_eq!(progressing.reason.as_deref(), Some(reasons::NEW_RS_CREATED));
    assert_eq!(
        progressing.message,
        Some(format!("Created new replica set \"web-{hash}\""))
    );
}

#[tokio::test]
async fn rolling_update_never_exceeds_max_surge() {
    // (replicas, maxSurge, maxUnavailable, old size and availability, new size and availability)
    // → expected scaling actions.
    let cases: Vec<(IntOrString, IntOrString, i32, i32, Vec<&str>)> = vec![
        // 100 replicas, surge 10: the new ReplicaSet starts at 10 and nothing old goes yet.
        (
            IntOrString::Int(10),
            IntOrString::Int(0),
            0,
            0,
            vec!["create replicaset web-NEW with 10 replicas"],
        ),
        // 10 new pods available: 10 old ones go, the total stays at 110.
        (
            IntOrString::Int(10),
            IntOrString::Int(0),
            10,
            10,
            vec!["update replicaset web-OLD to 90 replicas"],
        ),
        // New pods not yet available: nothing moves, availability stays at 100.
        (IntOrString::Int(10), IntOrString::Int(0), 10, 0, vec![]),
        // 25% surge rounds up to 25, 25% unavailable down to 25: old scales to 75 at once.
        (
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
            25,
            0,
            vec!["update replicaset web-OLD to 75 replicas"],
        ),
    ];
    for (surge, unavailable, new_size, new_available, expected) in cases {
        let mut d = deployment(100, "nginx:2");
        d.spec.as_mut().unwrap().strategy = Some(rolling(surge.clone(), unavailable.clone()));
        let old = replica_set_of(&d, "nginx:1", 100, 100, 1, 0);
        let mut rss = vec![old.clone()];
        let new = replica_set_of(&d, "nginx:2", new_size, new_available, 2, 10);
        if new_size > 0 {
            rss.push(new.clone());
        }
        let actions = RecordingActions::new();
        sync(&d, &rss, &actions, 20).await.unwrap();
        let expected: Vec<String> = expected
            .iter()
            .map(|s| {
                s.replace("web-OLD", name(&old.metadata))
                    .replace("web-NEW", name(&new.metadata))
            })
            .collect();
        assert_eq!(
            scaling(&actions),
            expected,
            "surge {surge:?} unavailable {unavailable:?} new {new_size}/{new_available}"
        );
    }
}

#[tokio::test]
async fn an_old_replica_set_whose_status_lags_its_scale_down_is_not_scaled_down_twice() {
    // The old ReplicaSet was just scaled to 60; its status still counts the 62 pods it had.
    // Summing statuses as Kubernetes does would scale it to 56 and leave 98 available pods;
    // counting at most its 60 scales it to 58, keeping 100.
    let mut d = deployment(100, "nginx:2");
    d.spec.as_mut().unwrap().strategy = Some(rolling(IntOrString::Int(10), IntOrString::Int(0)));
    let mut old = replica_set_of(&d, "nginx:1", 60, 62, 1, 0);
    old.status.as_mut().unwrap().replicas = 62;
    let new = replica_set_of(&d, "nginx:2", 50, 42, 2, 10);
    let actions = RecordingActions::new();
    sync(&d, &[old.clone(), new], &actions, 20).await.unwrap();
    assert_eq!(
        scaling(&actions),
        [format!(
            "update replicaset {} to 58 replicas",
            name(&old.metadata)
        )]
    );
}

#[tokio::test]
async fn a_finished_rollout_reports_new_replica_set_available_and_exact_counts() {
    let mut d = deployment(3, "nginx:2");
    d.metadata.generation = Some(2);
    let old = replica_set_of(&d, "nginx:1", 0, 0, 1, 0);
    let new = replica_set_of(&d, "nginx:2", 3, 3, 2, 10);
    let actions = RecordingActions::new();
    sync(&d, &[old, new.clone()], &actions, 20).await.unwrap();
    let status = last_status(&actions);
    assert_eq!(
        (
            status.observed_generation,
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (Some(2), Some(3), Some(3), Some(3), Some(3), None)
    );
    let progressing = condition(&status, reasons::PROGRESSING);
    assert_eq!(
        progressing.reason.as_deref(),
        Some(reasons::NEW_RS_AVAILABLE)
    );
    assert_eq!(
        progressing.message,
        Some(format!(
            "ReplicaSet \"{}\" has successfully progressed.",
            name(&new.metadata)
        ))
    );
    let available = condition(&status, reasons::AVAILABLE);
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some(reasons::MINIMUM_REPLICAS_AVAILABLE))
    );
    assert_eq!(
        available.message.as_deref(),
        Some("Deployment has minimum availability.")
    );
}

#[tokio::test]
async fn a_stalled_rollout_times_out_after_the_progress_deadline_and_old_pods_keep_serving() {
    let mut d = deployment(2, "nginx:2");
    d.spec.as_mut().unwrap().strategy = Some(rolling(IntOrString::Int(1), IntOrString::Int(0)));
    let old = replica_set_of(&d, "nginx:1", 2, 2, 1, 0);
    let new = replica_set_of(&d, "nginx:2", 1, 0, 2, 10);
    let mut status = d.status.clone().unwrap();
    status.replicas = Some(3);
    status.updated_replicas = Some(1);
    status.ready_replicas = Some(2);
    status.available_replicas = Some(2);
    status.unavailable_replicas = Some(1);
    let mut progressing = progress::new_condition(
        reasons::PROGRESSING,
        "True",
        reasons::RS_UPDATED,
        "ReplicaSet is progressing.".into(),
        at(100),
    );
    progressing.last_transition_time = Some(Time(at(100)));
    status.conditions = Some(vec![progressing]);
    d.status = Some(status);

    // Before the deadline: nothing changes; look again one second after it expires.
    let actions = RecordingActions::new();
    let action = sync(&d, &[old.clone(), new.clone()], &actions, 400)
        .await
        .unwrap();
    assert!(scaling(&actions).is_empty());
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(301)));

    // After it: ProgressDeadlineExceeded, and still no old pod is removed.
    let actions = RecordingActions::new();
    sync(&d, &[old, new.clone()], &actions, 701).await.unwrap();
    assert!(scaling(&actions).is_empty(), "{:?}", actions.summaries());
    let progressing = condition(&last_status(&actions), reasons::PROGRESSING).clone();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("False", Some(reasons::TIMED_OUT))
    );
    assert_eq!(
        progressing.message,
        Some(format!(
            "ReplicaSet \"{}\" has timed out progressing.",
            name(&new.metadata)
        ))
    );
}

#[tokio::test]
async fn recreate_scales_old_replica_sets_to_zero_before_creating_the_new_one() {
    let mut d = deployment(3, "nginx:2");
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let old = replica_set_of(&d, "nginx:1", 3, 3, 1, 0);
    let actions = RecordingActions::new();
    sync(&d, std::slice::from_ref(&old), &actions, 20)
        .await
        .unwrap();
    assert_eq!(
        scaling(&actions),
        [format!(
            "update replicaset {} to 0 replicas",
            name(&old.metadata)
        )]
    );

    // Old ReplicaSet at zero but its pods still reported: wait.
    let mut draining = replica_set_of(&d, "nginx:1", 0, 0, 1, 0);
    draining.status.as_mut().unwrap().replicas = 1;
    let actions = RecordingActions::new();
    sync(&d, &[draining], &actions, 21).await.unwrap();
    assert!(scaling(&actions).is_empty());

    // All gone: the new ReplicaSet is created at full size.
    let gone = replica_set_of(&d, "nginx:1", 0, 0, 1, 0);
    let actions = RecordingActions::new();
    sync(&d, &[gone], &actions, 22).await.unwrap();
    let new = replica_set_of(&d, "nginx:2", 3, 0, 2, 0);
    assert_eq!(
        scaling(&actions),
        [format!(
            "create replicaset {} with 3 replicas",
            name(&new.metadata)
        )]
    );
}

#[tokio::test]
async fn a_paused_deployment_scales_but_does_not_roll_out() {
    let mut d = deployment(5, "nginx:2");
    d.spec.as_mut().unwrap().paused = Some(true);
    let old = replica_set_of(&deployment(3, "nginx:1"), "nginx:1", 3, 3, 1, 0);
    let actions = RecordingActions::new();
    sync(&d, std::slice::from_ref(&old), &actions, 20)
        .await
        .unwrap();
    assert_eq!(
        scaling(&actions),
        [format!(
            "update replicaset {} to 5 replicas",
            name(&old.metadata)
        )]
    );
    let progressing = condition(&last_status(&actions), reasons::PROGRESSING).clone();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("Unknown", Some(reasons::PAUSED))
    );
    assert_eq!(progressing.message.as_deref(), Some("Deployment is paused"));
}

#[tokio::test]
async fn scaling_mid_rollout_is_proportional_across_replica_sets() {
    // 10 replicas, surge 3: old 8 and new 5 (13 = 10 + 3). Scaled to 20 (max 23): +10 split
    // 8·23/13 ≈ 14 (+6) and 5·23/13 ≈ 9 (+4).
    let mut before = deployment(10, "nginx:2");
    before.spec.as_mut().unwrap().strategy =
        Some(rolling(IntOrString::Int(3), IntOrString::Int(2)));
    let old = replica_set_of(&before, "nginx:1", 8, 8, 1, 0);
    let new = replica_set_of(&before, "nginx:2", 5, 2, 2, 10);
    let mut d = before.clone();
    d.spec.as_mut().unwrap().replicas = Some(20);
    let actions = RecordingActions::new();
    sync(&d, &[old.clone(), new.clone()], &actions, 20)
        .await
        .unwrap();
    assert_eq!(
        scaling(&actions),
        [
            format!("update replicaset {} to 14 replicas", name(&old.metadata)),
            format!("update replicaset {} to 9 replicas", name(&new.metadata)),
        ]
    );
}

#[tokio::test]
async fn old_replica_sets_beyond_the_revision_history_limit_are_deleted_oldest_first() {
    let mut d = deployment(1, "nginx:4");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let rss = [
        replica_set_of(&d, "nginx:1", 0, 0, 1, 0),
        replica_set_of(&d, "nginx:2", 0, 0, 2, 1),
        replica_set_of(&d, "nginx:3", 0, 0, 3, 2),
        replica_set_of(&d, "nginx:4", 1, 1, 4, 3),
    ];
    let mut status = d.status.clone().unwrap();
    status.replicas = Some(1);
    status.updated_replicas = Some(1);
    status.available_replicas = Some(1);
    d.status = Some(status);
    let actions = RecordingActions::new();
    sync(&d, &rss, &actions, 20).await.unwrap();
    assert_eq!(
        scaling(&actions),
        [
            format!("delete replicaset {}", name(&rss[0].metadata)),
            format!("delete replicaset {}", name(&rss[1].metadata)),
        ]
    );
}

#[tokio::test]
async fn a_template_annotation_change_from_rollout_restart_is_a_new_revision() {
    let mut d = deployment(1, "nginx:1");
    let old = replica_set_of(&d, "nginx:1", 1, 1, 1, 0);
    d.spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap()
        .annotations = Some(BTreeMap::from([(
        "kubectl.kubernetes.io/restartedAt".to_string(),
        "2026-01-01T00:00:00Z".to_string(),
    )]));
    d.metadata.annotations = Some(BTreeMap::from([(
        CHANGE_CAUSE_ANNOTATION.to_string(),
        "restart".to_string(),
    )]));
    let actions = RecordingActions::new();
    sync(&d, &[old], &actions, 20).await.unwrap();
    let Recorded::CreateReplicaSet(rs) = &actions.recorded()[0] else {
        panic!("a new replica set: {:?}", actions.summaries());
    };
    let annotations = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[REVISION_ANNOTATION], "2");
    assert_eq!(annotations[CHANGE_CAUSE_ANNOTATION], "restart");
}

#[tokio::test]
async fn a_replica_set_name_taken_by_another_template_raises_the_collision_count() {
    let d = deployment(1, "nginx:1");
    let mut squatter = replica_set_of(&d, "nginx:1", 1, 1, 1, 0);
    squatter.spec.as_mut().unwrap().template = Some(template("other"));
    squatter.metadata.owner_references = None;
    squatter.metadata.labels = None;
    let actions = RecordingActions::new();
    actions.fail(
        "create replicaset",
        ActionError::AlreadyExists("taken".into()),
    );
    let error = sync(&d, &[squatter], &actions, 20).await.unwrap_err();
    assert!(matches!(error, SyncError::HashCollision(_)));
    assert_eq!(last_status(&actions).collision_count, Some(1));
}

#[tokio::test]
async fn orphan_replica_sets_matching_the_selector_are_adopted() {
    let d = deployment(1, "nginx:1");
    let mut orphan = replica_set_of(&d, "nginx:1", 1, 1, 1, 0);
    orphan.metadata.owner_references = None;
    let actions = RecordingActions::new();
    sync(&d, &[orphan.clone()], &actions, 20).await.unwrap();
    assert_eq!(
        actions.summaries()[0],
        format!(
            "set owners of replicaset {} to [Deployment/web]",
            name(&orphan.metadata)
        )
    );
}

#[test]
fn templates_equal_apart_from_zero_values_go_would_omit() {
    let written_by_go = template("busybox");
    let mut from_protobuf = serde_json::to_value(&written_by_go).unwrap();
    from_protobuf["metadata"]["generation"] = serde_json::json!(0);
    from_protobuf["spec"]["containers"][0]["stdin"] = serde_json::json!(false);
    from_protobuf["spec"]["hostNetwork"] = serde_json::json!(false);
    from_protobuf["spec"]["securityContext"] = serde_json::json!({});
    let from_protobuf: PodTemplateSpec = serde_json::from_value(from_protobuf).unwrap();
    assert!(sync::equal_ignore_hash(&written_by_go, &from_protobuf));
    let mut changed = serde_json::to_value(&written_by_go).unwrap();
    changed["spec"]["containers"][0]["stdin"] = serde_json::json!(true);
    let changed: PodTemplateSpec = serde_json::from_value(changed).unwrap();
    assert!(!sync::equal_ignore_hash(&written_by_go, &changed));
    assert!(!sync::equal_ignore_hash(&written_by_go, &template("nginx")));
}
