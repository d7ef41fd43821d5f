//! The Deployment controller, split as Kubernetes' is: [`sync`] (finding the new and old
//! ReplicaSets, revisions, proportional scaling, status, history cleanup), [`rolling`]
//! (`RollingUpdate`), [`recreate`] (`Recreate`), [`rollback`] (the legacy rollback annotation)
//! and [`progress`] (the `Progressing` condition and `progressDeadlineSeconds`).
//!
//! A Deployment owns ReplicaSets named `<deployment>-<pod-template-hash>`, one per distinct pod
//! template; the controller moves replicas from old ReplicaSets to the new one within
//! `maxSurge`/`maxUnavailable`, and the ReplicaSet controller turns replicas into pods. Every
//! sync starts over from the cache: the decisions depend only on the Deployment, its
//! ReplicaSets (and, for Recreate, its pods) and the clock.

pub mod progress;
pub mod recreate;
pub mod rollback;
pub mod rolling;
pub mod sync;

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::namespace_index::NamespacedStore;
use crate::ownership::{
    controller_of, controller_ref, plan_claim, selector_of, selects, with_controller_ref,
    without_owner,
};
use crate::pod_cache::PodCache;
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The controller's name, the `source.component` of its events.
pub const CONTROLLER_NAME: &str = "deployment-controller";

/// The revision of a ReplicaSet, and of the Deployment (its newest ReplicaSet's).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had before a rollback made it new again.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when it last scaled the ReplicaSet.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when it last scaled the ReplicaSet.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// The legacy rollback request (`spec.rollbackTo` of extensions/v1beta1, kept as an annotation).
pub const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// Why the Deployment changed, as `kubectl --record` or users set it; copied to ReplicaSets.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The label distinguishing the ReplicaSets (and pods) of each template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The longest `revision-history` annotation kept (Kubernetes' `maxRevHistoryLengthInChars`).
pub const MAX_REVISION_HISTORY_LENGTH: usize = 2000;

/// Condition types and reasons, in Kubernetes' words.
pub mod reasons {
    pub const PROGRESSING: &str = "Progressing";
    pub const AVAILABLE: &str = "Available";
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";

    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    pub const PAUSED: &str = "DeploymentPaused";
    pub const RESUMED: &str = "DeploymentResumed";
    pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

    pub const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";
    pub const SELECTING_ALL: &str = "SelectingAll";
    pub const DEPLOYMENT_ROLLBACK: &str = "DeploymentRollback";
    pub const ROLLBACK_REVISION_NOT_FOUND: &str = "DeploymentRollbackRevisionNotFound";
    pub const ROLLBACK_TEMPLATE_UNCHANGED: &str = "DeploymentRollbackTemplateUnchanged";
}

/// Why a sync failed. The key is retried with backoff; each variant says whether that helps.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API write failed (`what` names it). Conflicts and transient failures clear on retry.
    #[error("{what}: {source}")]
    Api { what: String, source: ActionError },
    /// The new ReplicaSet's name is taken by a ReplicaSet with another template; collisionCount
    /// was raised, so the retry tries another name.
    #[error("hash collision creating replica set {0}; collisionCount raised")]
    HashCollision(String),
    /// The created ReplicaSet is not in the cache yet: retrying soon finds it.
    #[error("replica set {0} exists but is not cached yet")]
    NotCachedYet(String),
    /// `maxSurge` or `maxUnavailable` is not an integer or a percentage. Validation refuses this;
    /// a retry does not help until the Deployment is fixed.
    #[error("{0}")]
    InvalidStrategy(String),
}

pub(crate) fn api_error(what: impl Into<String>) -> impl FnOnce(ActionError) -> SyncError {
    let what = what.into();
    move |source| SyncError::Api { what, source }
}

/// The Deployment controller: its caches and its effects.
pub struct DeploymentController<A> {
    pub deployments: Store<Deployment>,
    pub replica_sets: NamespacedStore<ReplicaSet>,
    pub pods: PodCache,
    pub actions: A,
}

impl<A: Actions> Reconciler for DeploymentController<A> {
    type Error = SyncError;

    fn name(&self) -> &'static str {
        CONTROLLER_NAME
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(deployment) = self.deployments.get(&key.object_ref()) else {
            return Ok(Action::AwaitChange);
        };
        let replica_sets: Vec<Arc<ReplicaSet>> = self.replica_sets.in_namespace(&key.namespace);
        let pods: Vec<Arc<Pod>> = if is_recreate(&deployment) {
            self.pods.in_namespace(&key.namespace)
        } else {
            Vec::new()
        };
        let replica_sets: Vec<&ReplicaSet> = replica_sets.iter().map(|rs| &**rs).collect();
        let pods: Vec<&Pod> = pods.iter().map(|pod| &**pod).collect();
        sync_deployment(
            &deployment,
            &replica_sets,
            &pods,
            &self.actions,
            Timestamp::now(),
        )
        .await
    }
}

/// Event handler for Deployments: every change reconciles the Deployment.
pub fn deployment_changed(change: Change<'_, Deployment>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// The Deployment named by a controller reference, if the cache holds it with that uid.
fn resolve_deployment(
    namespace: &str,
    reference: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    deployments: &Store<Deployment>,
) -> Option<Arc<Deployment>> {
    if reference.kind != "Deployment" || !reference.api_version.starts_with("apps/") {
        return None;
    }
    let key = ObjectKey::new(namespace, reference.name.clone());
    deployments
        .get(&key.object_ref())
        .filter(|d| d.metadata.uid.as_deref() == Some(reference.uid.as_str()))
}

/// Event handler for ReplicaSets: reconciles the controlling Deployment or, for an orphan,
/// every Deployment that might adopt it.
pub fn replica_set_changed(
    change: Change<'_, ReplicaSet>,
    deployments: &Store<Deployment>,
    queue: &WorkQueue<ObjectKey>,
) {
    let rs = change.object();
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    match controller_of(&rs.metadata) {
        Some(reference) => {
            if let Some(deployment) = resolve_deployment(&namespace, reference, deployments) {
                queue.add(ObjectKey::of(&*deployment));
            }
        }
        None => {
            if matches!(change, Change::Deleted(_)) {
                return;
            }
            for deployment in deployments.state() {
                if deployment.metadata.namespace.as_deref() != Some(namespace.as_str()) {
                    continue;
                }
                let selector = deployment.spec.as_ref().map(|s| &s.selector);
                if selector_of(selector).is_ok_and(|s| !s.is_empty() && selects(&s, &rs.metadata)) {
                    queue.add(ObjectKey::of(&*deployment));
                }
            }
        }
    }
}

/// Event handler for pods: a deleted pod may be the last old pod a Recreate rollout waits for.
pub fn pod_changed(
    change: Change<'_, Pod>,
    replica_sets: &Store<ReplicaSet>,
    deployments: &Store<Deployment>,
    queue: &WorkQueue<ObjectKey>,
) {
    let Change::Deleted(pod) = change else {
        return;
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(rs_ref) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
        return;
    };
    let Some(rs) =
        replica_sets.get(&ObjectKey::new(namespace.clone(), rs_ref.name.clone()).object_ref())
    else {
        return;
    };
    if let Some(deployment) =
        controller_of(&rs.metadata).and_then(|r| resolve_deployment(&namespace, r, deployments))
        && is_recreate(&deployment)
    {
        queue.add(ObjectKey::of(&*deployment));
    }
}

pub(crate) fn is_recreate(deployment: &Deployment) -> bool {
    strategy_type(deployment) == "Recreate"
}

/// `spec.strategy.type`, defaulted to RollingUpdate as the API server does.
pub(crate) fn strategy_type(deployment: &Deployment) -> &str {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub(crate) fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// `spec.replicas` of a Deployment, defaulted to 1 as the API server does.
pub(crate) fn deployment_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// `spec.replicas` of a ReplicaSet, defaulted to 1 as the API server does.
pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn set_rs_replicas(rs: &mut ReplicaSet, replicas: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
}

pub(crate) fn rs_status_count(
    rs: &ReplicaSet,
    field: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i32 {
    rs.status.as_ref().and_then(field).unwrap_or(0)
}

pub(crate) fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status_count(rs, |s| s.available_replicas)
}

pub(crate) fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// One sync of one Deployment from a snapshot of its namespace's ReplicaSets (and pods, for
/// Recreate): Kubernetes' `syncDeployment`.
pub async fn sync_deployment<A: Actions>(
    deployment: &Deployment,
    namespace_replica_sets: &[&ReplicaSet],
    namespace_pods: &[&Pod],
    actions: &A,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let syncer = sync::Syncer {
        actions,
        now,
        namespace_replica_sets,
    };
    let mut d = deployment.clone();
    let d_name = name(&d.metadata).to_string();

    let empty_selector = d.spec.as_ref().is_some_and(|s| {
        s.selector
            .match_labels
            .as_ref()
            .is_none_or(|l| l.is_empty())
            && s.selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty())
    });
    if empty_selector {
        actions.record_event(EventRecord::warning(
            CONTROLLER_NAME,
            &d,
            reasons::SELECTING_ALL,
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        ));
        let status = d.status.get_or_insert_with(Default::default);
        if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
            status.observed_generation = d.metadata.generation;
            actions
                .update_deployment_status(&d)
                .await
                .map_err(api_error(format!("updating status of deployment {d_name}")))?;
        }
        return Ok(Action::AwaitChange);
    }
    let selector = match selector_of(d.spec.as_ref().map(|s| &s.selector)) {
        Ok(selector) => selector,
        Err(error) => {
            tracing::warn!(deployment = %ObjectKey::of(&d), "invalid selector: {error}");
            return Ok(Action::AwaitChange);
        }
    };

    // Claim ReplicaSets: adopt matching orphans, release those that stopped matching.
    let d_uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let plan = plan_claim(
        &d_uid,
        deleting,
        &selector,
        namespace_replica_sets.iter().copied(),
    );
    let mut rs_list: Vec<ReplicaSet> = plan.owned.into_iter().cloned().collect();
    for rs in plan.adopt {
        let references = with_controller_ref(&rs.metadata, controller_ref(&d));
        match actions
            .patch_replica_set_owner_references(rs, &references)
            .await
        {
            Ok(()) => {
                let mut adopted = rs.clone();
                adopted.metadata.owner_references = Some(references);
                rs_list.push(adopted);
            }
            Err(ActionError::NotFound(_)) => {}
            Err(source) => {
                return Err(api_error(format!(
                    "adopting replica set {}",
                    name(&rs.metadata)
                ))(source));
            }
        }
    }
    for rs in plan.release {
        let references = without_owner(&rs.metadata, &d_uid);
        match actions
            .patch_replica_set_owner_references(rs, &references)
            .await
        {
            Ok(()) | Err(ActionError::NotFound(_)) => {}
            Err(source) => {
                return Err(api_error(format!(
                    "releasing replica set {}",
                    name(&rs.metadata)
                ))(source));
            }
        }
    }

    if deleting {
        return syncer.sync_status_only(&mut d, &rs_list).await;
    }
    syncer.check_paused_conditions(&mut d).await?;
    if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
        return syncer.sync(&mut d, &rs_list).await;
    }
    if rollback::rollback_to(&d).is_some() {
        return syncer.rollback(&mut d, &rs_list).await;
    }
    if syncer.is_scaling_event(&mut d, &rs_list).await? {
        return syncer.sync(&mut d, &rs_list).await;
    }
    match strategy_type(&d) {
        "Recreate" => {
            // Pods the Deployment's ReplicaSets control, matched by the Deployment's selector.
            let pods: Vec<&Pod> = namespace_pods
                .iter()
                .copied()
                .filter(|pod| selects(&selector, &pod.metadata))
                .collect();
            syncer.rollout_recreate(&mut d, &rs_list, &pods).await
        }
        _ => syncer.rollout_rolling(&mut d, &rs_list).await,
    }
}

#[cfg(test)]
pub(crate) mod tests;
