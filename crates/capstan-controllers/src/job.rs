//! The Job controller, as Kubernetes' `job` controller for NonIndexed Jobs: it runs pods from
//! `spec.template` until `spec.completions` of them succeed (or, without completions, until one
//! succeeded and none is running), at most `spec.parallelism` at once; it counts failed pods
//! against `spec.backoffLimit` (and container restarts for `restartPolicy: OnFailure`), delays
//! replacements of failed pods by Kubernetes' pod-failure backoff (10 s doubling to 6 min), fails
//! the Job after `spec.activeDeadlineSeconds`, honours `spec.suspend`, writes `status` (active,
//! ready, succeeded, failed, startTime, completionTime and the SuccessCriteriaMet/Complete,
//! FailureTarget/Failed and Suspended conditions), and deletes a finished Job once its
//! `ttlSecondsAfterFinished` has passed (Kubernetes' TTL-after-finished controller, folded in).
//!
//! Differences from Kubernetes: Indexed completion mode, `podFailurePolicy`,
//! `backoffLimitPerIndex`, `successPolicy` and `podReplacementPolicy: Failed` are not
//! implemented; pods carry no `batch.kubernetes.io/job-tracking` finalizer, so succeeded and
//! failed are counted from the pods that exist (never decreasing), and a finished pod deleted
//! before the controller saw it is not counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as metav1, ObjectMeta, Time};
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::expectations::{Cached, Expectations};
use crate::ownership::{claim_pods, controller_ref, enqueue_pod_owner, plan_claim, selector_of};
use crate::pod_cache::PodCache;
use crate::pods::{is_active, is_ready, pods_to_delete};
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The controller's name, the `source.component` of its events.
pub const CONTROLLER_NAME: &str = "job-controller";
/// The label naming a pod's Job (and its legacy form).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// The label carrying the uid of a pod's Job (and its legacy form); a Job without a selector
/// selects its pods by it, as the selector the API server generates would.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// At most this many pods are created or deleted per sync (Kubernetes' `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// The first replacement of a failed pod waits this long, doubling per further failure
/// (Kubernetes' `DefaultJobPodFailureBackOff`)…
pub const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// …up to this (Kubernetes' `MaxJobPodFailureBackOff`).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);
/// `spec.backoffLimit` when unset (the API server defaults it).
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// Why a sync failed. The key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Adopting or releasing a pod failed (usually a conflict: retrying helps).
    #[error("claiming pods of {job}: {source}")]
    ClaimPods { job: String, source: ActionError },
    /// Creating or deleting pods failed. Retrying helps when the cause goes away.
    #[error("{0}")]
    ManagePods(String),
    /// Writing the status failed (usually a conflict: retrying helps).
    #[error("updating status of {job}: {source}")]
    UpdateStatus { job: String, source: ActionError },
    /// Deleting a Job whose TTL expired failed.
    #[error("deleting expired job {job}: {source}")]
    DeleteJob { job: String, source: ActionError },
}

/// The Job controller: its caches, its effects and its expectations.
pub struct JobController<A> {
    pub jobs: Store<Job>,
    pub pods: PodCache,
    pub actions: A,
    pub expectations: Arc<Expectations>,
}

impl<A: Actions> Reconciler for JobController<A> {
    type Error = SyncError;

    fn name(&self) -> &'static str {
        CONTROLLER_NAME
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(job) = self.jobs.get(&key.object_ref()) else {
            self.expectations.forget(key);
            return Ok(Action::AwaitChange);
        };
        // Only the pods it controls and the orphans: claiming ignores every other pod, and its
        // expectations are about pods it created or deleted.
        let owner_uid = job.metadata.uid.as_deref().unwrap_or_default();
        let pods = self.pods.claimable_by(&key.namespace, owner_uid);
        let pods: Vec<&Pod> = pods.iter().map(|pod| &**pod).collect();
        sync_job(
            &job,
            &pods,
            &self.actions,
            &self.expectations,
            Timestamp::now(),
        )
        .await
    }
}

/// Event handler for Jobs: every change reconciles the Job.
pub fn job_changed(change: Change<'_, Job>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// Event handler for pods: reconciles the Job controlling the pod, or, for an orphan, every Job
/// that might adopt it. Marks the pod's creation as observed.
pub fn pod_changed(
    change: Change<'_, Pod>,
    jobs: &Store<Job>,
    expectations: &Expectations,
    queue: &WorkQueue<ObjectKey>,
) {
    enqueue_pod_owner(change, "batch/", jobs, job_selector, expectations, queue);
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The Job's selector: `spec.selector`, or the one the API server generates
/// (`batch.kubernetes.io/controller-uid=<uid>`) when it is unset.
fn job_selector(job: &Job) -> Result<capstan_api::selector::LabelSelector, String> {
    match job.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(selector) => selector_of(Some(selector)),
        None => selector_of(Some(&metav1::LabelSelector {
            match_labels: Some(BTreeMap::from([(
                CONTROLLER_UID_LABEL.to_string(),
                job.metadata.uid.clone().unwrap_or_default(),
            )])),
            match_expressions: None,
        })),
    }
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// When the Job finished (Complete or Failed), or `None` while it runs.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    ["Complete", "Failed"].into_iter().find_map(|type_| {
        let condition = condition(job, type_)?;
        Some(
            condition
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| job.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
                .unwrap_or(Timestamp::UNIX_EPOCH),
        )
    })
}

/// The pod a Job creates from its template: its labels plus the Job's name and uid labels, and a
/// controller reference.
pub fn pod_from_template(job: &Job) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let job_name = name(&job.metadata).to_string();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(JOB_NAME_LABEL.into(), job_name.clone());
    labels.insert(LEGACY_JOB_NAME_LABEL.into(), job_name.clone());
    labels.insert(CONTROLLER_UID_LABEL.into(), uid.clone());
    labels.insert(LEGACY_CONTROLLER_UID_LABEL.into(), uid);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{job_name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![controller_ref(job)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// When a finished pod finished: the latest container termination, else when it was last
/// ready or created.
fn pod_finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|s| s.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    terminated
        .or_else(|| {
            status
                .conditions
                .iter()
                .flatten()
                .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
                .max()
        })
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Container restarts of active pods, counted against the backoff limit under
/// `restartPolicy: OnFailure` (Kubernetes' `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(job: &Job, active: &[&Pod], backoff_limit: i32) -> bool {
    let on_failure = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i64 = active
        .iter()
        .filter_map(|pod| pod.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|s| i64::from(s.restart_count))
        .sum();
    if backoff_limit == 0 {
        return restarts > 0;
    }
    restarts >= i64::from(backoff_limit)
}

/// How long replacements of failed pods still wait: Kubernetes' pod-failure backoff, 10 s
/// doubling per failure since the last success, at most 6 min, from the last failure.
fn pod_failure_backoff(finished: &[&Pod], now: Timestamp) -> Option<Duration> {
    let last_success = finished
        .iter()
        .filter(|pod| phase(pod) == "Succeeded")
        .filter_map(|pod| pod_finished_at(pod))
        .max();
    let failures: Vec<Timestamp> = finished
        .iter()
        .filter(|pod| phase(pod) == "Failed")
        .filter_map(|pod| pod_finished_at(pod))
        .filter(|at| last_success.is_none_or(|success| *at > success))
        .collect();
    let last_failure = failures.iter().max()?;
    let doublings = u32::try_from(failures.len() - 1)
        .unwrap_or(u32::MAX)
        .min(16);
    let delay = (POD_FAILURE_BACKOFF * 2u32.pow(doublings)).min(MAX_POD_FAILURE_BACKOFF);
    let ends = last_failure
        .checked_add(SignedDuration::try_from(delay).ok()?)
        .ok()?;
    (ends > now).then(|| Duration::try_from(ends.duration_since(now)).unwrap_or_default())
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(conditions: &mut Vec<JobCondition>, condition: JobCondition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) if existing.status == condition.status => {
            existing.reason = condition.reason;
            existing.message = condition.message;
        }
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

fn requeue_at(at: Timestamp, now: Timestamp) -> Action {
    Action::RequeueAfter(Duration::try_from(at.duration_since(now)).unwrap_or_default())
}

/// One sync of one Job from a snapshot of its namespace's pods: claim pods, count them, decide
/// whether the Job succeeded or failed, create or delete pods, write status, and delete the Job
/// once finished and past its TTL. Returns when to look again for the Job's timers (the active
/// deadline, the pod-failure backoff, the TTL).
pub async fn sync_job<A: Actions>(
    job: &Job,
    namespace_pods: &[&Pod],
    actions: &A,
    expectations: &Expectations,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let key = ObjectKey::of(job);
    let job_name = name(&job.metadata).to_string();
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::AwaitChange);
    }
    if let Some(finished) = finished_at(job) {
        return expire(job, finished, actions, now).await;
    }
    let spec = job.spec.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();

    let by_uid: HashMap<&str, &Pod> = namespace_pods
        .iter()
        .filter_map(|pod| Some((pod.metadata.uid.as_deref()?, *pod)))
        .collect();
    let needs_sync = expectations.satisfied(&key, now, |uid| match by_uid.get(uid) {
        None => Cached::Absent,
        Some(pod) if pod.metadata.deletion_timestamp.is_some() => Cached::Terminating,
        Some(_) => Cached::Present,
    });

    let selector = match job_selector(job) {
        Ok(selector) => selector,
        Err(error) => {
            tracing::warn!(job = %key, "invalid selector: {error}");
            return Ok(Action::AwaitChange);
        }
    };
    let plan = plan_claim(&uid, false, &selector, namespace_pods.iter().copied());
    let owned = claim_pods(actions, job, plan.owned, plan.adopt, plan.release)
        .await
        .map_err(|source| SyncError::ClaimPods {
            job: job_name.clone(),
            source,
        })?;

    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let mut events = Vec::new();

    let active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let terminating = owned
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .count();
    let finished: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| matches!(phase(p), "Succeeded" | "Failed"))
        .collect();
    let count = |wanted: &str| finished.iter().filter(|p| phase(p) == wanted).count() as i32;
    // Without tracking finalizers a counted pod may be gone: counts never go down.
    let succeeded = count("Succeeded").max(old_status.succeeded.unwrap_or(0));
    let failed = count("Failed").max(old_status.failed.unwrap_or(0));
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let suspended = spec.suspend == Some(true);

    let mut timers = Action::AwaitChange;
    if suspended {
        status.start_time = None;
    } else if status.start_time.is_none() {
        status.start_time = Some(Time(now));
    }

    // A Job already marked to fail or succeed only waits for its pods to go.
    let mut failure = condition(job, "FailureTarget").map(|c| {
        (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    });
    let mut success = condition(job, "SuccessCriteriaMet").is_some();
    if failure.is_none() && !success {
        let deadline = spec.active_deadline_seconds.and_then(|seconds| {
            let start = status.start_time.as_ref()?.0;
            start.checked_add(SignedDuration::from_secs(seconds)).ok()
        });
        if failed > backoff_limit || past_backoff_limit_on_failure(job, &active, backoff_limit) {
            failure = Some((
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into(),
            ));
        } else if let Some(deadline) = deadline.filter(|_| !suspended) {
            if deadline <= now {
                failure = Some((
                    "DeadlineExceeded".into(),
                    "Job was active longer than specified deadline".into(),
                ));
            } else {
                timers = timers.sooner(requeue_at(deadline, now));
            }
        }
        if failure.is_none() {
            success = match spec.completions {
                None => succeeded > 0 && active.is_empty(),
                Some(completions) => succeeded >= completions,
            };
        }
    }

    // What runs: nothing once the Job is decided or suspended, else toward completions.
    let want_active = if failure.is_some() || success || suspended {
        0
    } else {
        let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
        match spec.completions {
            None if succeeded > 0 => active.len(),
            None => parallelism,
            Some(completions) => ((completions - succeeded).max(0) as usize).min(parallelism),
        }
    };
    let mut manage_error = None;
    let mut active_count = active.len();
    let mut terminating = terminating;
    if needs_sync {
        if active.len() > want_active {
            let excess = (active.len() - want_active).min(MAX_POD_CREATE_DELETE_PER_SYNC);
            let victims = if want_active == 0 {
                active.clone()
            } else {
                pods_to_delete(&active, &active, excess, now)
            };
            match delete_pods(job, &key, &victims, actions, expectations, now).await {
                Ok(deleted) => {
                    // Deleted pods terminate before the Job may be marked finished.
                    active_count -= deleted;
                    terminating += deleted;
                }
                Err(error) => manage_error = Some(error),
            }
        } else if active.len() < want_active {
            match pod_failure_backoff(&finished, now) {
                Some(wait) => timers = timers.sooner(Action::RequeueAfter(wait)),
                None => {
                    let missing = (want_active - active.len()).min(MAX_POD_CREATE_DELETE_PER_SYNC);
                    match create_pods(job, &key, missing, actions, expectations, now).await {
                        Ok(created) => active_count += created,
                        Err((created, error)) => {
                            active_count += created;
                            manage_error = Some(error);
                        }
                    }
                }
            }
        }
    }

    if suspended && failure.is_none() && !success {
        if condition(job, "Suspended").is_none() {
            set_condition(
                &mut conditions,
                new_condition("Suspended", "True", "JobSuspended", "Job suspended", now),
            );
            events.push(EventRecord::normal(
                CONTROLLER_NAME,
                job,
                "Suspended",
                "Job suspended".into(),
            ));
        }
    } else if condition(job, "Suspended").is_some() {
        set_condition(
            &mut conditions,
            new_condition("Suspended", "False", "JobResumed", "Job resumed", now),
        );
        events.push(EventRecord::normal(
            CONTROLLER_NAME,
            job,
            "Resumed",
            "Job resumed".into(),
        ));
    }

    let pods_gone = active_count == 0 && terminating == 0;
    if let Some((reason, message)) = &failure {
        set_condition(
            &mut conditions,
            new_condition("FailureTarget", "True", reason, message, now),
        );
        if pods_gone {
            set_condition(
                &mut conditions,
                new_condition("Failed", "True", reason, message, now),
            );
            let reason = if reason == "BackoffLimitExceeded" {
                "BackoffLimitExceeded"
            } else {
                "DeadlineExceeded"
            };
            events.push(EventRecord::warning(
                CONTROLLER_NAME,
                job,
                reason,
                message.clone(),
            ));
        }
    } else if success {
        set_condition(
            &mut conditions,
            new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ),
        );
        if pods_gone {
            set_condition(
                &mut conditions,
                new_condition(
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ),
            );
            status.completion_time = Some(Time(now));
            events.push(EventRecord::normal(
                CONTROLLER_NAME,
                job,
                "Completed",
                "Job completed".into(),
            ));
        }
    }

    status.active = Some(active_count as i32);
    status.ready = Some(
        active
            .iter()
            .filter(|p| is_ready(p))
            .count()
            .min(active_count) as i32,
    );
    status.terminating = Some(terminating as i32);
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if status != old_status {
        let mut updated = job.clone();
        updated.status = Some(status);
        if let Err(source) = actions.update_job_status(&updated).await {
            return Err(SyncError::UpdateStatus {
                job: job_name,
                source,
            });
        }
        for event in events {
            actions.record_event(event);
        }
        if let Some(finished) = finished_at(&updated) {
            timers = expire(&updated, finished, actions, now).await?;
        }
    }
    if let Some(error) = manage_error {
        return Err(SyncError::ManagePods(error));
    }
    Ok(timers)
}

/// TTL-after-finished: deletes a finished Job (background propagation) once
/// `ttlSecondsAfterFinished` have passed, else wakes then.
async fn expire<A: Actions>(
    job: &Job,
    finished: Timestamp,
    actions: &A,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::AwaitChange);
    };
    let expires = finished
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
        .unwrap_or(Timestamp::MAX);
    if expires > now {
        return Ok(requeue_at(expires, now));
    }
    let key = ObjectKey::of(job);
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    match actions.delete_job(&key.namespace, &key.name, uid).await {
        Ok(()) | Err(ActionError::NotFound(_)) => Ok(Action::AwaitChange),
        Err(source) => Err(SyncError::DeleteJob {
            job: key.name,
            source,
        }),
    }
}

/// Creates `count` pods in slow-start batches (1, 2, 4, …). Returns how many were created, and
/// the first error's message with the count on failure.
async fn create_pods<A: Actions>(
    job: &Job,
    key: &ObjectKey,
    count: usize,
    actions: &A,
    expectations: &Expectations,
    now: Timestamp,
) -> Result<usize, (usize, String)> {
    let pod = pod_from_template(job);
    let mut remaining = count;
    let mut batch = remaining.min(1);
    let mut total = 0;
    while batch > 0 {
        let results = join_all((0..batch).map(|_| actions.create_pod(&key.namespace, &pod))).await;
        let mut created = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(pod) => {
                    actions.record_event(EventRecord::normal(
                        CONTROLLER_NAME,
                        job,
                        "SuccessfulCreate",
                        format!("Created pod: {}", name(&pod.metadata)),
                    ));
                    created.extend(pod.metadata.uid);
                }
                Err(error) => {
                    actions.record_event(EventRecord::warning(
                        CONTROLLER_NAME,
                        job,
                        "FailedCreate",
                        format!("Error creating: {error}"),
                    ));
                    first_error.get_or_insert(error);
                }
            }
        }
        total += created.len();
        expectations.expect_creations(key, created, now);
        if let Some(error) = first_error {
            return Err((total, error.to_string()));
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    Ok(total)
}

/// Deletes `victims`; returns how many are gone.
async fn delete_pods<A: Actions>(
    job: &Job,
    key: &ObjectKey,
    victims: &[&Pod],
    actions: &A,
    expectations: &Expectations,
    now: Timestamp,
) -> Result<usize, String> {
    let results = join_all(victims.iter().map(|pod| {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        actions.delete_pod(&key.namespace, name(&pod.metadata), uid)
    }))
    .await;
    let mut deleted = Vec::new();
    let mut gone = 0;
    let mut first_error = None;
    for (pod, result) in victims.iter().zip(results) {
        match result {
            Ok(()) => {
                actions.record_event(EventRecord::normal(
                    CONTROLLER_NAME,
                    job,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", name(&pod.metadata)),
                ));
                deleted.extend(pod.metadata.uid.clone());
                gone += 1;
            }
            Err(ActionError::NotFound(_)) => gone += 1,
            Err(error) => {
                actions.record_event(EventRecord::warning(
                    CONTROLLER_NAME,
                    job,
                    "FailedDelete",
                    format!("Error deleting: {error}"),
                ));
                first_error.get_or_insert(error);
            }
        }
    }
    expectations.expect_deletions(key, deleted, now);
    match first_error {
        Some(error) => Err(error.to_string()),
        None => Ok(gone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{Recorded, RecordingActions};
    use crate::pods::tests::{at, pod};
    use k8s_openapi::api::batch::v1::{JobSpec, JobStatus};
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec,
        PodTemplateSpec,
    };

    /// (case, completions, parallelism, phases of the existing pods, pods expected created)
    type CreateCase = (
        &'static str,
        Option<i32>,
        i32,
        &'static [&'static str],
        usize,
    );

    /// The moment every sync of these tests runs.
    const NOW: i64 = 1000;

    fn job(name: &str, completions: Option<i32>, parallelism: i32, backoff_limit: i32) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(backoff_limit),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), name.into())])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        containers: vec![Container {
                            name: "main".into(),
                            image: Some("busybox".into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
            status: Some(JobStatus {
                start_time: Some(Time(at(0))),
                ..JobStatus::default()
            }),
        }
    }

    /// A pod of `job` in `phase`; a finished one finished at `NOW - finished_ago` seconds.
    fn job_pod(name: &str, job: &Job, phase: &str, finished_ago: i64) -> Pod {
        let mut pod = pod(name, "n1", phase, None);
        pod.metadata.namespace = Some("default".into());
        pod.metadata.labels = pod_from_template(job).metadata.labels;
        pod.metadata.owner_references = Some(vec![controller_ref(job)]);
        if matches!(phase, "Succeeded" | "Failed")
            && let Some(status) = pod.status.as_mut()
        {
            status.container_statuses = Some(vec![ContainerStatus {
                name: "main".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: i32::from(phase == "Failed"),
                        finished_at: Some(Time(at(NOW - finished_ago))),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]);
        }
        pod
    }

    fn pods_of(job: &Job, phases: &[&str]) -> Vec<Pod> {
        phases
            .iter()
            .enumerate()
            .map(|(n, phase)| job_pod(&format!("p{n}"), job, phase, 600))
            .collect()
    }

    async fn sync(job: &Job, pods: &[Pod], actions: &RecordingActions) -> Action {
        let refs: Vec<&Pod> = pods.iter().collect();
        sync_job(job, &refs, actions, &Expectations::new(), at(NOW))
            .await
            .unwrap()
    }

    fn creates(actions: &RecordingActions) -> usize {
        actions
            .summaries()
            .iter()
            .filter(|s| s.starts_with("create pod"))
            .count()
    }

    fn written_status(actions: &RecordingActions) -> Job {
        actions
            .recorded()
            .into_iter()
            .rev()
            .find_map(|r| match r {
                Recorded::UpdateJobStatus(job) => Some(*job),
                _ => None,
            })
            .expect("status written")
    }

    /// The job with the status `sync` wrote, as the next sync would read it.
    fn with_status_of(actions: &RecordingActions) -> Job {
        written_status(actions)
    }

    #[tokio::test]
    async fn a_new_job_creates_parallelism_pods_labelled_with_its_name_and_uid() {
        let mut new = job("pi", Some(3), 2, 6);
        new.status = None;
        let actions = RecordingActions::new();
        sync(&new, &[], &actions).await;
        assert_eq!(
            actions.summaries(),
            [
                "create pod pi-",
                "create pod pi-",
                "update job pi status: active=2 ready=0 succeeded=0 failed=0 conditions=[]",
            ]
        );
        let Recorded::CreatePod(created) = &actions.recorded()[0] else {
            panic!("first action is a create");
        };
        let labels = created.metadata.labels.clone().unwrap();
        for (key, value) in [
            ("app", "pi"),
            ("batch.kubernetes.io/job-name", "pi"),
            ("job-name", "pi"),
            ("batch.kubernetes.io/controller-uid", "uid-pi"),
            ("controller-uid", "uid-pi"),
        ] {
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
        }
        let owner = &created.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.controller
            ),
            ("batch/v1", "Job", Some(true))
        );
        assert_eq!(
            actions.events(),
            [
                "Normal SuccessfulCreate Created pod: pi-1",
                "Normal SuccessfulCreate Created pod: pi-2",
            ]
        );
        let status = written_status(&actions).status.unwrap();
        assert_eq!(status.start_time, Some(Time(at(NOW))));
    }

    #[tokio::test]
    async fn pods_are_created_toward_completions_at_most_parallelism_at_once() {
        let cases: [CreateCase; 7] = [
            ("fresh", Some(3), 2, &[], 2),
            (
                "two done, one to go",
                Some(3),
                2,
                &["Succeeded", "Succeeded"],
                1,
            ),
            (
                "one running, one to go",
                Some(3),
                2,
                &["Succeeded", "Running"],
                1,
            ),
            ("parallelism above completions", Some(1), 5, &[], 1),
            ("failed pods are replaced", Some(2), 2, &["Failed"], 2),
            ("work queue starts parallelism", None, 2, &[], 2),
            (
                "work queue stops after a success",
                None,
                3,
                &["Succeeded", "Running"],
                0,
            ),
        ];
        for (case, completions, parallelism, phases, expected) in cases {
            let job = job("j", completions, parallelism, 6);
            let actions = RecordingActions::new();
            // The failure happened long enough ago for the pod-failure backoff to be over.
            sync(&job, &pods_of(&job, phases), &actions).await;
            assert_eq!(creates(&actions), expected, "{case}");
        }
    }

    #[tokio::test]
    async fn a_job_succeeds_when_its_completions_succeeded_or_a_work_queue_pod_succeeded_and_none_runs()
     {
        let cases: [(&str, Option<i32>, &[&str], bool); 5] = [
            (
                "all completions",
                Some(2),
                &["Succeeded", "Succeeded"],
                true,
            ),
            ("one missing", Some(2), &["Succeeded", "Running"], false),
            (
                "work queue, one succeeded",
                None,
                &["Succeeded", "Failed"],
                true,
            ),
            (
                "work queue, one still running",
                None,
                &["Succeeded", "Running"],
                false,
            ),
            ("work queue, none succeeded", None, &["Failed"], false),
        ];
        for (case, completions, phases, complete) in cases {
            let job = job("j", completions, 2, 6);
            let actions = RecordingActions::new();
            sync(&job, &pods_of(&job, phases), &actions).await;
            let status = written_status(&actions).status.unwrap();
            let types: Vec<String> = status
                .conditions
                .iter()
                .flatten()
                .map(|c| c.type_.clone())
                .collect();
            if complete {
                assert_eq!(types, ["SuccessCriteriaMet", "Complete"], "{case}");
                assert_eq!(status.completion_time, Some(Time(at(NOW))), "{case}");
                assert_eq!(
                    actions.events(),
                    ["Normal Completed Job completed"],
                    "{case}"
                );
            } else {
                assert!(types.is_empty(), "{case}: {types:?}");
                assert_eq!(status.completion_time, None, "{case}");
            }
        }
    }

    #[tokio::test]
    async fn failed_pods_beyond_the_backoff_limit_delete_the_active_ones_then_fail_the_job() {
        let job = job("j", Some(5), 2, 1);
        let pods = pods_of(&job, &["Failed", "Failed", "Running"]);
        let actions = RecordingActions::new();
        sync(&job, &pods, &actions).await;
        assert_eq!(
            actions.summaries(),
            [
                "delete pod p2",
                "update job j status: active=0 ready=0 succeeded=0 failed=2 conditions=[FailureTarget(BackoffLimitExceeded)]",
            ],
            "the Job fails only once its pods are gone"
        );

        let failing = with_status_of(&actions);
        let actions = RecordingActions::new();
        sync(&failing, &pods[..2], &actions).await;
        assert_eq!(
            actions.summaries(),
            [
                "update job j status: active=0 ready=0 succeeded=0 failed=2 conditions=[FailureTarget(BackoffLimitExceeded),Failed(BackoffLimitExceeded)]",
            ]
        );
        assert_eq!(
            actions.events(),
            ["Warning BackoffLimitExceeded Job has reached the specified backoff limit"]
        );
        let failed = with_status_of(&actions);
        let condition = condition(&failed, "Failed").unwrap();
        assert_eq!(
            condition.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert_eq!(failed.status.unwrap().completion_time, None);
    }

    #[tokio::test]
    async fn container_restarts_count_toward_the_backoff_limit_under_on_failure() {
        let cases = [
            ("Never", 5, false),
            ("OnFailure", 1, false),
            ("OnFailure", 2, true),
        ];
        for (policy, restarts, fails) in cases {
            let mut job = job("j", Some(1), 1, 2);
            if let Some(spec) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
                spec.restart_policy = Some(policy.into());
            }
            let mut running = job_pod("p", &job, "Running", 0);
            if let Some(status) = running.status.as_mut() {
                status.container_statuses = Some(vec![ContainerStatus {
                    name: "main".into(),
                    restart_count: restarts,
                    ..ContainerStatus::default()
                }]);
            }
            let actions = RecordingActions::new();
            sync(&job, &[running], &actions).await;
            assert_eq!(
                actions.summaries().first().map(String::as_str) == Some("delete pod p"),
                fails,
                "{policy} with {restarts} restarts: {:?}",
                actions.summaries()
            );
        }
    }

    #[tokio::test]
    async fn replacements_of_failed_pods_wait_out_the_pod_failure_backoff() {
        // (seconds since each failure, expected wait): 10 s after one failure, doubling.
        let cases: [(&[i64], Option<u64>); 4] = [
            (&[3], Some(7)),
            (&[10], None),
            (&[3, 30], Some(17)),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], Some(359)),
        ];
        for (ages, wait) in cases {
            let job = job("j", Some(1), 1, 100);
            let pods: Vec<Pod> = ages
                .iter()
                .enumerate()
                .map(|(n, age)| job_pod(&format!("f{n}"), &job, "Failed", *age))
                .collect();
            let actions = RecordingActions::new();
            let action = sync(&job, &pods, &actions).await;
            match wait {
                Some(seconds) => {
                    assert_eq!(creates(&actions), 0, "{ages:?}");
                    assert_eq!(
                        action,
                        Action::RequeueAfter(Duration::from_secs(seconds)),
                        "{ages:?}"
                    );
                }
                None => assert_eq!(creates(&actions), 1, "{ages:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_active_deadline_fails_the_job_when_passed_and_wakes_it_when_due() {
        let cases = [(100, None), (NOW + 90, Some(Duration::from_secs(90)))];
        for (deadline, wait) in cases {
            let mut job = job("j", Some(1), 1, 6);
            if let Some(spec) = job.spec.as_mut() {
                spec.active_deadline_seconds = Some(deadline);
            }
            let pods = pods_of(&job, &["Running"]);
            let actions = RecordingActions::new();
            let action = sync(&job, &pods, &actions).await;
            match wait {
                Some(wait) => {
                    assert_eq!(action, Action::RequeueAfter(wait));
                    assert_eq!(
                        actions.summaries(),
                        [
                            "update job j status: active=1 ready=0 succeeded=0 failed=0 conditions=[]"
                        ]
                    );
                }
                None => {
                    assert_eq!(
                        actions.summaries(),
                        [
                            "delete pod p0",
                            "update job j status: active=0 ready=0 succeeded=0 failed=0 conditions=[FailureTarget(DeadlineExceeded)]",
                        ]
                    );
                    let failing = with_status_of(&actions);
                    let actions = RecordingActions::new();
                    sync(&failing, &[], &actions).await;
                    assert_eq!(
                        actions.events(),
                        ["Warning DeadlineExceeded Job was active longer than specified deadline"]
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_suspended_job_deletes_its_pods_and_a_resumed_one_starts_again() {
        let mut job = job("j", Some(2), 2, 6);
        if let Some(spec) = job.spec.as_mut() {
            spec.suspend = Some(true);
        }
        let actions = RecordingActions::new();
        sync(&job, &pods_of(&job, &["Running"]), &actions).await;
        assert_eq!(
            actions.summaries(),
            [
                "delete pod p0",
                "update job j status: active=0 ready=0 succeeded=0 failed=0 conditions=[Suspended(JobSuspended)]",
            ]
        );
        let mut suspended = with_status_of(&actions);
        assert_eq!(suspended.status.as_ref().unwrap().start_time, None);
        if let Some(spec) = suspended.spec.as_mut() {
            spec.suspend = Some(false);
        }
        let actions = RecordingActions::new();
        sync(&suspended, &[], &actions).await;
        assert_eq!(creates(&actions), 2);
        assert_eq!(
            actions.events().last().map(String::as_str),
            Some("Normal Resumed Job resumed")
        );
        let resumed = with_status_of(&actions).status.unwrap();
        assert_eq!(resumed.start_time, Some(Time(at(NOW))));
    }

    #[tokio::test]
    async fn a_finished_job_is_deleted_once_its_ttl_has_passed() {
        let cases = [
            (None, Action::AwaitChange, false),
            (Some(5), Action::AwaitChange, true),
            (
                Some(30),
                Action::RequeueAfter(Duration::from_secs(20)),
                false,
            ),
        ];
        for (ttl, action, deleted) in cases {
            let mut job = job("j", Some(1), 1, 6);
            if let Some(spec) = job.spec.as_mut() {
                spec.ttl_seconds_after_finished = ttl;
            }
            job.status = Some(JobStatus {
                conditions: Some(vec![new_condition(
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "",
                    at(NOW - 10),
                )]),
                ..JobStatus::default()
            });
            let actions = RecordingActions::new();
            assert_eq!(sync(&job, &[], &actions).await, action, "ttl {ttl:?}");
            let expected: &[&str] = if deleted { &["delete job j"] } else { &[] };
            assert_eq!(actions.summaries(), expected, "ttl {ttl:?}");
        }
    }

    #[tokio::test]
    async fn a_job_that_completes_now_with_a_ttl_wakes_when_it_expires() {
        let mut job = job("j", Some(1), 1, 6);
        if let Some(spec) = job.spec.as_mut() {
            spec.ttl_seconds_after_finished = Some(60);
        }
        let actions = RecordingActions::new();
        let action = sync(&job, &pods_of(&job, &["Succeeded"]), &actions).await;
        assert_eq!(action, Action::RequeueAfter(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn a_slow_watch_never_makes_it_create_twice() {
        let job = job("j", Some(4), 2, 6);
        let actions = RecordingActions::new();
        let expectations = Expectations::new();
        for _ in 0..2 {
            sync_job(&job, &[], &actions, &expectations, at(NOW))
                .await
                .unwrap();
        }
        assert_eq!(creates(&actions), 2);
    }

    #[tokio::test]
    async fn orphans_with_its_uid_label_are_adopted_and_other_jobs_pods_left_alone() {
        let job = job("j", Some(2), 2, 6);
        let other = self::job("other", Some(1), 1, 6);
        let mut orphan = job_pod("orphan", &job, "Running", 0);
        orphan.metadata.owner_references = None;
        let theirs = job_pod("theirs", &other, "Running", 0);
        let actions = RecordingActions::new();
        sync(&job, &[orphan, theirs], &actions).await;
        assert_eq!(
            actions.summaries(),
            [
                "set owners of pod orphan to [Job/j]",
                "create pod j-",
                "update job j status: active=2 ready=0 succeeded=0 failed=0 conditions=[]",
            ]
        );
    }

    #[tokio::test]
    async fn an_unchanged_status_is_not_written() {
        let mut job = job("j", Some(1), 1, 6);
        job.status = Some(JobStatus {
            start_time: Some(Time(at(0))),
            active: Some(1),
            ready: Some(0),
            terminating: Some(0),
            succeeded: Some(0),
            failed: Some(0),
            ..JobStatus::default()
        });
        let actions = RecordingActions::new();
        sync(&job, &pods_of(&job, &["Running"]), &actions).await;
        assert!(actions.summaries().is_empty(), "{:?}", actions.summaries());
    }

    #[test]
    fn a_pod_event_enqueues_its_job() {
        let queue = WorkQueue::new();
        let store = kube::runtime::reflector::store::Writer::<Job>::default().as_reader();
        let job = job("j", Some(1), 1, 6);
        pod_changed(
            Change::Applied(&job_pod("p", &job, "Running", 0)),
            &store,
            &Expectations::new(),
            &queue,
        );
        assert_eq!(queue.len(), 1);
    }
}
