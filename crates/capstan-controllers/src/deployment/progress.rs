//! Rollout progress (Kubernetes' `deployment/progress.go` and the condition helpers of
//! `deployment/util`): the `Progressing` condition — `NewReplicaSetCreated`,
//! `FoundNewReplicaSet`, `ReplicaSetUpdated` while pods move, `NewReplicaSetAvailable` when done,
//! `ProgressDeadlineExceeded` when nothing moved for `progressDeadlineSeconds` — and the requeue
//! that checks the deadline exactly when it can expire. A timed-out rollout is only reported:
//! the controller keeps reconciling, and since new pods are not available, `maxUnavailable`
//! keeps the old pods serving.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::sync::{calculate_status, deployment_complete, normalized};
use super::*;

/// Condition times are stored with second precision; truncating here makes a condition built
/// now compare equal to the same condition read back.
fn seconds(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Kubernetes' `NewDeploymentCondition`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(seconds(now)),
        last_transition_time: Some(seconds(now)),
    }
}

pub fn get_condition<'a>(
    status: Option<&'a DeploymentStatus>,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Kubernetes' `SetDeploymentCondition`: a condition with the same status and reason is left
/// alone; a changed reason with the same status keeps the transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(Some(status), &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Is a deadline set? (`MaxInt32` means none, as Kubernetes reads it.)
pub fn has_progress_deadline(d: &Deployment) -> bool {
    progress_deadline(d).is_some()
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// Kubernetes' `DeploymentProgressing`: did any pod move toward the new template since the
/// last status?
pub fn deployment_progressing(d: &Deployment, new_status: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let count = |n: Option<i32>| n.unwrap_or(0);
    let old_old_replicas = count(old.replicas) - count(old.updated_replicas);
    let new_old_replicas = count(new_status.replicas) - count(new_status.updated_replicas);
    count(new_status.updated_replicas) > count(old.updated_replicas)
        || new_old_replicas < old_old_replicas
        || count(new_status.ready_replicas) > count(old.ready_replicas)
        || count(new_status.available_replicas) > count(old.available_replicas)
}

/// When the deadline expires: `progressDeadlineSeconds` after the Progressing condition last
/// changed.
fn deadline_of(d: &Deployment, condition: &DeploymentCondition) -> Option<Timestamp> {
    let seconds = progress_deadline(d)?;
    let from = condition.last_update_time.as_ref()?.0;
    from.checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .ok()
}

/// Kubernetes' `DeploymentTimedOut`.
pub fn deployment_timed_out(d: &Deployment, new_status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(condition) = get_condition(Some(new_status), reasons::PROGRESSING) else {
        return false;
    };
    match condition.reason.as_deref() {
        Some(reasons::NEW_RS_AVAILABLE) => false,
        Some(reasons::TIMED_OUT) => true,
        _ => deadline_of(d, condition).is_some_and(|deadline| deadline < now),
    }
}

/// The ReplicaFailure condition of the first ReplicaSet that has one, new one first.
fn replica_failure(
    all_rss: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> Option<DeploymentCondition> {
    let candidates = new_rs.into_iter().chain(all_rss.iter());
    for rs in candidates {
        let conditions = rs
            .status
            .as_ref()
            .and_then(|s: &ReplicaSetStatus| s.conditions.as_ref());
        if let Some(failure) = conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == reasons::REPLICA_FAILURE)
        {
            let mut condition = new_condition(
                reasons::REPLICA_FAILURE,
                &failure.status,
                failure.reason.as_deref().unwrap_or_default(),
                failure.message.clone().unwrap_or_default(),
                now,
            );
            condition.last_transition_time = failure
                .last_transition_time
                .clone()
                .or(condition.last_transition_time);
            return Some(condition);
        }
    }
    None
}

impl<A: Actions> sync::Syncer<'_, A> {
    /// Kubernetes' `syncRolloutStatus`: the counts, the Progressing condition and the replica
    /// failures; written when changed. Returns when to check the deadline again.
    pub(crate) async fn sync_rollout_status(
        &self,
        all_rss: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
        d: &mut Deployment,
    ) -> Result<Action, SyncError> {
        let mut status = calculate_status(all_rss, new_rs, d, self.now);
        if !has_progress_deadline(d) {
            remove_condition(&mut status, reasons::PROGRESSING);
        }
        let current = get_condition(d.status.as_ref(), reasons::PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(reasons::NEW_RS_AVAILABLE));
        if has_progress_deadline(d) && !complete_before {
            let rs_name = new_rs.map(|rs| name(&rs.metadata).to_string());
            let subject = |fallback: String| match &rs_name {
                Some(rs) => format!("ReplicaSet \"{rs}\""),
                None => fallback,
            };
            let d_subject = format!("Deployment \"{}\"", name(&d.metadata));
            if deployment_complete(d, &status) {
                let message = format!("{} has successfully progressed.", subject(d_subject));
                set_condition(
                    &mut status,
                    new_condition(
                        reasons::PROGRESSING,
                        "True",
                        reasons::NEW_RS_AVAILABLE,
                        message,
                        self.now,
                    ),
                );
            } else if deployment_progressing(d, &status) {
                let message = format!("{} is progressing.", subject(d_subject));
                let mut condition = new_condition(
                    reasons::PROGRESSING,
                    "True",
                    reasons::RS_UPDATED,
                    message,
                    self.now,
                );
                // Progress refreshes lastUpdateTime even when the reason stays the same; the
                // transition time stays while the status is True.
                if let Some(current) = &current {
                    if current.status == "True" {
                        condition.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, reasons::PROGRESSING);
                }
                set_condition(&mut status, condition);
            } else if deployment_timed_out(d, &status, self.now) {
                let message = format!("{} has timed out progressing.", subject(d_subject));
                set_condition(
                    &mut status,
                    new_condition(
                        reasons::PROGRESSING,
                        "False",
                        reasons::TIMED_OUT,
                        message,
                        self.now,
                    ),
                );
            }
        }
        match replica_failure(all_rss, new_rs, self.now) {
            Some(failure) => set_condition(&mut status, failure),
            None => remove_condition(&mut status, reasons::REPLICA_FAILURE),
        }
        let status = normalized(&status);
        if normalized(&d.status.clone().unwrap_or_default()) == status {
            return Ok(self.requeue_stuck_deployment(d, &status));
        }
        d.status = Some(status);
        self.write_deployment(d, false).await?;
        // The write triggers another sync through the watch, which requeues for the deadline;
        // asking here too costs nothing and does not depend on that event.
        let written = d.status.clone().unwrap_or_default();
        Ok(self.requeue_stuck_deployment(d, &written))
    }

    /// Kubernetes' `requeueStuckDeployment`: when an unfinished rollout shows no progress, look
    /// again when its deadline expires (plus a second against clock skew, as Kubernetes does).
    pub(crate) fn requeue_stuck_deployment(
        &self,
        d: &Deployment,
        new_status: &DeploymentStatus,
    ) -> Action {
        let Some(current) = get_condition(d.status.as_ref(), reasons::PROGRESSING) else {
            return Action::AwaitChange;
        };
        if !has_progress_deadline(d)
            || deployment_complete(d, new_status)
            || current.reason.as_deref() == Some(reasons::TIMED_OUT)
        {
            return Action::AwaitChange;
        }
        let Some(deadline) = deadline_of(d, current) else {
            return Action::AwaitChange;
        };
        let after = Duration::try_from(deadline.duration_since(self.now)).unwrap_or_default();
        if after < Duration::from_secs(1) {
            return Action::RequeueAfter(Duration::from_secs(1));
        }
        Action::RequeueAfter(after + Duration::from_secs(1))
    }
}
