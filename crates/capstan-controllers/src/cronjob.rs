//! The CronJob controller, as Kubernetes' `cronjob` controller (v2): at each time its
//! `spec.schedule` names it creates a Job from `spec.jobTemplate` named
//! `<cronjob>-<scheduled time in minutes since the epoch>`, honouring `concurrencyPolicy`
//! (Allow, Forbid, Replace), `startingDeadlineSeconds` and `suspend`; it keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, deletes finished Jobs beyond
//! `successfulJobsHistoryLimit` and `failedJobsHistoryLimit`, and wakes exactly at the next
//! scheduled time.
//!
//! Schedules are the five-field cron format of Kubernetes (robfig/cron's standard parser: `*`,
//! `?`, lists, ranges, steps, month and weekday names, and `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`). Only UTC is supported: a `timeZone` other than
//! `UTC` or `Etc/UTC` is reported with an `UnknownTimeZone` event and nothing is scheduled.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::{DateTime, date};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord, object_reference};
use crate::ownership::{controller_of, controller_ref};
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The controller's name, the `source.component` of its events.
pub const CONTROLLER_NAME: &str = "cronjob-controller";
/// The annotation of a Job made by a CronJob: the time it was scheduled for (RFC 3339).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Why a sync failed. The key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("creating job for {cron_job}: {source}")]
    CreateJob {
        cron_job: String,
        source: ActionError,
    },
    #[error("deleting job {job}: {source}")]
    DeleteJob { job: String, source: ActionError },
    #[error("updating status of {cron_job}: {source}")]
    UpdateStatus {
        cron_job: String,
        source: ActionError,
    },
}

/// The CronJob controller: its caches and its effects.
pub struct CronJobController<A> {
    pub cron_jobs: Store<CronJob>,
    pub jobs: Store<Job>,
    pub actions: A,
}

impl<A: Actions> Reconciler for CronJobController<A> {
    type Error = SyncError;

    fn name(&self) -> &'static str {
        CONTROLLER_NAME
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, SyncError> {
        let Some(cron_job) = self.cron_jobs.get(&key.object_ref()) else {
            return Ok(Action::AwaitChange);
        };
        let uid = cron_job.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|job| job.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
            .filter(|job| controller_of(&job.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let jobs: Vec<&Job> = jobs.iter().map(|job| &**job).collect();
        sync_cron_job(&cron_job, &jobs, &self.actions, Timestamp::now()).await
    }
}

/// Event handler for CronJobs: every change reconciles the CronJob.
pub fn cron_job_changed(change: Change<'_, CronJob>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
}

/// Event handler for Jobs: reconciles the CronJob controlling the Job.
pub fn job_changed(change: Change<'_, Job>, queue: &WorkQueue<ObjectKey>) {
    let job = change.object();
    if let Some(reference) = controller_of(&job.metadata)
        && reference.kind == "CronJob"
        && reference.api_version.starts_with("batch/")
    {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        queue.add(ObjectKey::new(namespace, reference.name.clone()));
    }
}

/// A parsed five-field schedule: one bit per allowed value, and whether the field was `*` (which
/// decides how day-of-month and day-of-week combine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    day_of_month_star: bool,
    day_of_week_star: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn parse_value(text: &str, names: &[&str], first_name: u32) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = names.iter().position(|n| *n == lower) {
        return Ok(first_name + index as u32);
    }
    text.parse()
        .map_err(|_| format!("failed to parse int from {text}"))
}

/// One field: a comma-separated list of `*`, `?`, `a`, `a-b`, each optionally `/step`.
fn parse_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first_name: u32,
) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                Some(
                    step.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {step}"))?,
                ),
            ),
            None => (part, None),
        };
        let (start, end, is_star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                parse_value(a, names, first_name)?,
                parse_value(b, names, first_name)?,
                false,
            )
        } else {
            let value = parse_value(range, names, first_name)?;
            // `a/step` means from a to the end of the range.
            (value, if step.is_some() { max } else { value }, false)
        };
        if start < min || end > max || start > end {
            return Err(format!("{part}: out of range [{min}, {max}]"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("{part}: step of 0"));
        }
        star |= is_star && step == 1;
        let mut value = start;
        while value <= end {
            bits |= 1 << value;
            value += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a standard cron schedule (five fields or a `@` macro); a leading `TZ=`/`CRON_TZ=`
    /// is refused, as Kubernetes refuses it.
    pub fn parse(schedule: &str) -> Result<Schedule, String> {
        let schedule = schedule.trim();
        let expanded = match schedule {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {other}"));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {schedule}",
                fields.len()
            ));
        }
        let (minutes, _) = parse_field(fields[0], 0, 59, &[], 0)?;
        let (hours, _) = parse_field(fields[1], 0, 23, &[], 0)?;
        let (days_of_month, day_of_month_star) = parse_field(fields[2], 1, 31, &[], 0)?;
        let (months, _) = parse_field(fields[3], 1, 12, &MONTH_NAMES, 1)?;
        let (mut days_of_week, day_of_week_star) = parse_field(fields[4], 0, 7, &DAY_NAMES, 0)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_of_month_star,
            day_of_week_star,
        })
    }

    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = self.days_of_month & (1 << dt.day()) != 0;
        let dow = self.days_of_week & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if self.day_of_month_star || self.day_of_week_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after` (UTC), or `None` if none comes within
    /// five years (a schedule such as February 30th).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(TimeZone::UTC).datetime();
        let mut dt = date(start.year(), start.month(), start.day())
            .at(start.hour(), start.minute(), 0, 0)
            .checked_add(1.minute())
            .ok()?;
        let year_limit = start.year() + 5;
        'wrap: loop {
            if dt.year() > year_limit {
                return None;
            }
            while self.months & (1 << dt.month()) == 0 {
                let (year, month) = if dt.month() == 12 {
                    (dt.year() + 1, 1)
                } else {
                    (dt.year(), dt.month() + 1)
                };
                dt = date(year, month, 1).at(0, 0, 0, 0);
                if month == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(dt) {
                dt = dt.date().tomorrow().ok()?.at(0, 0, 0, 0);
                if dt.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hours & (1 << dt.hour()) == 0 {
                dt = dt.checked_add(1.hour()).ok()?;
                dt = dt.date().at(dt.hour(), 0, 0, 0);
                if dt.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                if dt.minute() == 0 {
                    continue 'wrap;
                }
            }
            return dt.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp());
        }
    }
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// The Job's finished condition (`Complete` or `Failed`) if it finished.
fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn completion_time(job: &Job) -> Option<Timestamp> {
    job.status.as_ref()?.completion_time.as_ref().map(|t| t.0)
}

/// The name of the Job for a scheduled time: minutes since the epoch, as Kubernetes names it.
pub fn job_name(cron_job: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        name(&cron_job.metadata),
        scheduled.as_second().div_euclid(60)
    )
}

/// The Job a CronJob creates for `scheduled` (Kubernetes' `getJobFromTemplate2`).
pub fn job_from_template(cron_job: &CronJob, scheduled: Timestamp) -> Job {
    let template = cron_job
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), scheduled.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cron_job, scheduled)),
            namespace: cron_job.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cron_job)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn requeue_at(at: Timestamp, now: Timestamp) -> Action {
    Action::RequeueAfter(Duration::try_from(at.duration_since(now)).unwrap_or_default())
}

/// The most recent scheduled time in (earliest, now], and how many were missed.
fn most_recent_schedule(
    schedule: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut latest = None;
    let mut missed = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next_after(t) {
        if next > now {
            break;
        }
        latest = Some(next);
        missed += 1;
        t = next;
        if missed > 100_000 {
            // Jump ahead: only the latest matters, and counting is only for the warning.
            t = t.max(now - SignedDuration::from_hours(1));
        }
    }
    (latest, missed)
}

/// One sync of one CronJob from its Jobs: track active and finished Jobs, create the Job of the
/// most recent unmet schedule, clean up history, write status. Returns when the next schedule
/// is due.
pub async fn sync_cron_job<A: Actions>(
    cron_job: &CronJob,
    jobs: &[&Job],
    actions: &A,
    now: Timestamp,
) -> Result<Action, SyncError> {
    let cj_name = name(&cron_job.metadata).to_string();
    let namespace = cron_job.metadata.namespace.clone().unwrap_or_default();
    let spec = cron_job.spec.clone().unwrap_or_default();
    let old_status = cron_job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut active: Vec<ObjectReference> = status.active.take().unwrap_or_default();

    // Finished or vanished Jobs leave the active list.
    active.retain(|reference| {
        let Some(job) = jobs
            .iter()
            .find(|j| j.metadata.uid == reference.uid && reference.uid.is_some())
        else {
            return false;
        };
        match finished(job) {
            None => true,
            Some(kind) => {
                if kind == "Complete"
                    && let Some(done) = completion_time(job)
                    && status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|t| t.0 < done)
                {
                    status.last_successful_time = Some(Time(done));
                }
                actions.record_event(EventRecord::normal(
                    CONTROLLER_NAME,
                    cron_job,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {kind}",
                        name(&job.metadata)
                    ),
                ));
                false
            }
        }
    });

    let mut action = Action::AwaitChange;
    let deleting = cron_job.metadata.deletion_timestamp.is_some();
    let suspended = spec.suspend == Some(true);
    let schedule = Schedule::parse(&spec.schedule);
    let utc = matches!(
        spec.time_zone.as_deref(),
        None | Some("UTC") | Some("Etc/UTC")
    );
    if !utc {
        actions.record_event(EventRecord::warning(
            CONTROLLER_NAME,
            cron_job,
            "UnknownTimeZone",
            format!(
                "invalid timeZone: {:?}: only UTC is supported",
                spec.time_zone.as_deref().unwrap_or_default()
            ),
        ));
    }
    match schedule {
        Err(error) => actions.record_event(EventRecord::warning(
            CONTROLLER_NAME,
            cron_job,
            "UnparseableSchedule",
            format!("unparseable schedule: {:?} : {error}", spec.schedule),
        )),
        Ok(schedule) if !deleting && !suspended && utc => {
            let created = cron_job
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(now, |t| t.0);
            let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
            if let Some(deadline) = spec.starting_deadline_seconds {
                let bound = now - SignedDuration::from_secs(deadline);
                earliest = earliest.max(bound);
            }
            let (scheduled, missed) = most_recent_schedule(&schedule, earliest, now);
            if missed > 100 {
                actions.record_event(EventRecord::warning(
                    CONTROLLER_NAME,
                    cron_job,
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                ));
            }
            if let Some(next) = schedule.next_after(now) {
                action = requeue_at(next, now);
            }
            if let Some(scheduled) = scheduled {
                let wanted = job_name(cron_job, scheduled);
                let exists = jobs.iter().any(|j| name(&j.metadata) == wanted)
                    || active
                        .iter()
                        .any(|r| r.name.as_deref() == Some(wanted.as_str()));
                let too_late = spec
                    .starting_deadline_seconds
                    .is_some_and(|deadline| scheduled + SignedDuration::from_secs(deadline) < now);
                let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                if too_late {
                    actions.record_event(EventRecord::warning(
                        CONTROLLER_NAME,
                        cron_job,
                        "MissSchedule",
                        format!("Missed scheduled time to start a job: {scheduled}"),
                    ));
                } else if exists {
                    // Already created for this time.
                } else if policy == "Forbid" && !active.is_empty() {
                    actions.record_event(EventRecord::normal(
                        CONTROLLER_NAME,
                        cron_job,
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                    ));
                } else {
                    if policy == "Replace" {
                        for reference in std::mem::take(&mut active) {
                            let job_name = reference.name.clone().unwrap_or_default();
                            let uid = reference.uid.clone().unwrap_or_default();
                            match actions.delete_job(&namespace, &job_name, &uid).await {
                                Ok(()) | Err(ActionError::NotFound(_)) => {
                                    actions.record_event(EventRecord::normal(
                                        CONTROLLER_NAME,
                                        cron_job,
                                        "SuccessfulDelete",
                                        format!("Deleted job {job_name}"),
                                    ));
                                }
                                Err(source) => {
                                    return Err(SyncError::DeleteJob {
                                        job: job_name,
                                        source,
                                    });
                                }
                            }
                        }
                    }
                    let job = job_from_template(cron_job, scheduled);
                    match actions.create_job(&namespace, &job).await {
                        Ok(created) => {
                            actions.record_event(EventRecord::normal(
                                CONTROLLER_NAME,
                                cron_job,
                                "SuccessfulCreate",
                                format!("Created job {}", name(&created.metadata)),
                            ));
                            active.push(object_reference(&created));
                        }
                        // Made by an earlier sync the cache has not shown yet.
                        Err(ActionError::AlreadyExists(_)) => {}
                        Err(source) => {
                            actions.record_event(EventRecord::warning(
                                CONTROLLER_NAME,
                                cron_job,
                                "FailedCreate",
                                format!("Error creating job: {source}"),
                            ));
                            return Err(SyncError::CreateJob {
                                cron_job: cj_name,
                                source,
                            });
                        }
                    }
                    status.last_schedule_time = Some(Time(scheduled));
                }
            }
        }
        Ok(_) => {}
    }

    // History: the oldest finished Jobs beyond the limits go.
    if !deleting {
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
            ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let mut done: Vec<&&Job> = jobs
                .iter()
                .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
                .collect();
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            done.sort_by_key(|j| {
                (
                    j.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map(|t| t.0),
                    name(&j.metadata).to_string(),
                )
            });
            for job in done.into_iter().take(excess) {
                let uid = job.metadata.uid.as_deref().unwrap_or_default();
                match actions
                    .delete_job(&namespace, name(&job.metadata), uid)
                    .await
                {
                    Ok(()) => actions.record_event(EventRecord::normal(
                        CONTROLLER_NAME,
                        cron_job,
                        "SuccessfulDelete",
                        format!("Deleted job {}", name(&job.metadata)),
                    )),
                    Err(ActionError::NotFound(_)) => {}
                    Err(source) => {
                        return Err(SyncError::DeleteJob {
                            job: name(&job.metadata).into(),
                            source,
                        });
                    }
                }
            }
        }
    }

    status.active = (!active.is_empty()).then_some(active);
    if status != old_status {
        let mut updated = cron_job.clone();
        updated.status = Some(status);
        if let Err(source) = actions.update_cron_job_status(&updated).await {
            return Err(SyncError::UpdateStatus {
                cron_job: cj_name,
                source,
            });
        }
    }
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{Recorded, RecordingActions};
    use k8s_openapi::api::batch::v1::{
        CronJobSpec, CronJobStatus, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
    };

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The moment the test CronJobs were created.
    const CREATED: &str = "2024-01-01T00:00:00Z";

    fn cron_job(schedule: &str, policy: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("cj".into()),
                namespace: Some("default".into()),
                uid: Some("uid-cj".into()),
                creation_timestamp: Some(Time(t(CREATED))),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                concurrency_policy: Some(policy.into()),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "cj".to_string())].into()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(JobSpec::default()),
                },
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }

    /// A Job of the test CronJob started at `start`, finished as `condition` if given.
    fn job(name: &str, start: &str, condition: Option<&str>) -> Job {
        let cj = cron_job("* * * * *", "Allow");
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                owner_references: Some(vec![controller_ref(&cj)]),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(t(start))),
                completion_time: (condition == Some("Complete")).then(|| Time(t(start))),
                conditions: condition.map(|type_| {
                    vec![JobCondition {
                        type_: type_.into(),
                        status: "True".into(),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
        }
    }

    fn with_active(mut cron_job: CronJob, jobs: &[&Job]) -> CronJob {
        cron_job.status = Some(CronJobStatus {
            active: Some(jobs.iter().map(|j| object_reference(*j)).collect()),
            last_schedule_time: Some(Time(t(CREATED))),
            ..CronJobStatus::default()
        });
        cron_job
    }

    fn written_status(actions: &RecordingActions) -> CronJobStatus {
        actions
            .recorded()
            .into_iter()
            .rev()
            .find_map(|r| match r {
                Recorded::UpdateCronJobStatus(cj) => cj.status,
                _ => None,
            })
            .expect("status written")
    }

    #[test]
    fn schedules_name_the_next_time_as_cron_does() {
        let cases = [
            (
                "*/1 * * * *",
                "2024-01-01T00:00:30Z",
                Some("2024-01-01T00:01:00Z"),
            ),
            (
                "* * * * *",
                "2024-01-01T00:01:00Z",
                Some("2024-01-01T00:02:00Z"),
            ),
            (
                "*/15 * * * *",
                "2024-01-01T00:16:00Z",
                Some("2024-01-01T00:30:00Z"),
            ),
            (
                "0 * * * *",
                "2024-01-01T10:15:00Z",
                Some("2024-01-01T11:00:00Z"),
            ),
            (
                "@hourly",
                "2024-01-01T10:15:00Z",
                Some("2024-01-01T11:00:00Z"),
            ),
            (
                "@daily",
                "2024-01-01T10:00:00Z",
                Some("2024-01-02T00:00:00Z"),
            ),
            (
                "@weekly",
                "2024-01-01T10:00:00Z",
                Some("2024-01-07T00:00:00Z"),
            ),
            (
                "@monthly",
                "2024-01-31T10:00:00Z",
                Some("2024-02-01T00:00:00Z"),
            ),
            (
                "@yearly",
                "2024-06-01T00:00:00Z",
                Some("2025-01-01T00:00:00Z"),
            ),
            (
                "30 2 * * mon",
                "2024-01-01T03:00:00Z",
                Some("2024-01-08T02:30:00Z"),
            ),
            (
                "0 0 * * 7",
                "2024-01-01T00:00:00Z",
                Some("2024-01-07T00:00:00Z"),
            ),
            (
                "0 0 1,15 * *",
                "2024-01-02T00:00:00Z",
                Some("2024-01-15T00:00:00Z"),
            ),
            (
                "0 0 13 * 5",
                "2024-01-01T00:00:00Z",
                Some("2024-01-05T00:00:00Z"),
            ),
            (
                "0 0 * feb-mar *",
                "2024-01-10T00:00:00Z",
                Some("2024-02-01T00:00:00Z"),
            ),
            (
                "59 23 31 dec *",
                "2024-01-01T00:00:00Z",
                Some("2024-12-31T23:59:00Z"),
            ),
            (
                "0 0 29 2 *",
                "2024-03-01T00:00:00Z",
                Some("2028-02-29T00:00:00Z"),
            ),
            ("0 0 30 2 *", "2024-01-01T00:00:00Z", None),
        ];
        for (schedule, after, next) in cases {
            let parsed = Schedule::parse(schedule).unwrap();
            assert_eq!(
                parsed.next_after(t(after)),
                next.map(t),
                "{schedule} after {after}"
            );
        }
    }

    #[test]
    fn malformed_schedules_are_refused() {
        for schedule in [
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "@every 5m",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(Schedule::parse(schedule).is_err(), "{schedule}");
        }
    }

    #[tokio::test]
    async fn a_due_schedule_creates_a_job_named_by_its_minute_and_wakes_at_the_next() {
        let cj = cron_job("*/1 * * * *", "Allow");
        let actions = RecordingActions::new();
        let action = sync_cron_job(&cj, &[], &actions, t("2024-01-01T00:01:30Z"))
            .await
            .unwrap();
        // 2024-01-01T00:01:00Z is 28401121 minutes after the epoch.
        assert_eq!(
            actions.summaries(),
            [
                "create job cj-28401121",
                "update cronjob cj status: active=[cj-28401121] lastSchedule=2024-01-01T00:01:00Z lastSuccessful=-",
            ]
        );
        assert_eq!(action, Action::RequeueAfter(Duration::from_secs(30)));
        let Recorded::CreateJob(created) = &actions.recorded()[0] else {
            panic!("a job was created");
        };
        assert_eq!(
            created.metadata.owner_references,
            Some(vec![controller_ref(&cj)])
        );
        assert_eq!(
            created
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SCHEDULED_TIMESTAMP_ANNOTATION))
                .map(String::as_str),
            Some("2024-01-01T00:01:00Z")
        );
        assert_eq!(
            actions.events(),
            ["Normal SuccessfulCreate Created job cj-28401121"]
        );

        // Before the first schedule nothing happens but the timer.
        let actions = RecordingActions::new();
        let action = sync_cron_job(&cj, &[], &actions, t("2024-01-01T00:00:40Z"))
            .await
            .unwrap();
        assert!(actions.summaries().is_empty());
        assert_eq!(action, Action::RequeueAfter(Duration::from_secs(20)));
    }

    #[tokio::test]
    async fn the_concurrency_policy_decides_what_happens_to_a_running_job() {
        let cases: [(&str, &[&str], &[&str]); 3] = [
            ("Allow", &["create job cj-28401121"], &[]),
            (
                "Forbid",
                &[],
                &[
                    "Normal JobAlreadyActive Not starting job because prior execution is running and concurrency policy is Forbid",
                ],
            ),
            (
                "Replace",
                &["delete job running", "create job cj-28401121"],
                &[],
            ),
        ];
        for (policy, effects, events) in cases {
            let running = job("running", CREATED, None);
            let cj = with_active(cron_job("*/1 * * * *", policy), &[&running]);
            let actions = RecordingActions::new();
            sync_cron_job(&cj, &[&running], &actions, t("2024-01-01T00:01:10Z"))
                .await
                .unwrap();
            let summaries: Vec<String> = actions
                .summaries()
                .into_iter()
                .filter(|s| !s.starts_with("update cronjob"))
                .collect();
            assert_eq!(summaries, effects, "{policy}");
            let warnings: Vec<String> = actions
                .events()
                .into_iter()
                .filter(|e| e.contains("JobAlreadyActive"))
                .collect();
            assert_eq!(warnings, events, "{policy}");
        }
    }

    #[tokio::test]
    async fn suspended_or_late_beyond_the_starting_deadline_creates_nothing() {
        let mut suspended = cron_job("*/1 * * * *", "Allow");
        if let Some(spec) = suspended.spec.as_mut() {
            spec.suspend = Some(true);
        }
        let mut late = cron_job("0 * * * *", "Allow");
        if let Some(spec) = late.spec.as_mut() {
            spec.starting_deadline_seconds = Some(60);
        }
        for (case, cj, now) in [
            ("suspended", suspended, "2024-01-01T00:05:00Z"),
            ("late", late, "2024-01-01T01:05:00Z"),
        ] {
            let actions = RecordingActions::new();
            sync_cron_job(&cj, &[], &actions, t(now)).await.unwrap();
            assert!(
                actions.summaries().is_empty(),
                "{case}: {:?}",
                actions.summaries()
            );
        }
    }

    #[tokio::test]
    async fn a_job_already_made_for_the_schedule_is_not_made_again() {
        let made = job("cj-28401121", "2024-01-01T00:01:00Z", None);
        let mut cj = with_active(cron_job("*/1 * * * *", "Allow"), &[&made]);
        if let Some(status) = cj.status.as_mut() {
            status.last_schedule_time = Some(Time(t("2024-01-01T00:01:00Z")));
        }
        let actions = RecordingActions::new();
        sync_cron_job(&cj, &[&made], &actions, t("2024-01-01T00:01:50Z"))
            .await
            .unwrap();
        assert!(actions.summaries().is_empty(), "{:?}", actions.summaries());
    }

    #[tokio::test]
    async fn finished_jobs_leave_the_active_list_and_the_oldest_beyond_the_history_limits_go() {
        let done = job("done", "2024-01-01T00:00:30Z", Some("Complete"));
        let cj = with_active(cron_job("0 0 1 1 *", "Allow"), &[&done]);
        let jobs = [
            job("ok-1", "2023-12-01T00:00:00Z", Some("Complete")),
            job("ok-2", "2023-12-02T00:00:00Z", Some("Complete")),
            job("ok-3", "2023-12-03T00:00:00Z", Some("Complete")),
            job("bad-1", "2023-12-01T00:00:00Z", Some("Failed")),
            job("bad-2", "2023-12-02T00:00:00Z", Some("Failed")),
            job("running", "2023-12-03T00:00:00Z", None),
        ];
        let mut all: Vec<&Job> = jobs.iter().collect();
        all.push(&done);
        let actions = RecordingActions::new();
        sync_cron_job(&cj, &all, &actions, t("2024-01-01T00:02:00Z"))
            .await
            .unwrap();
        assert_eq!(
            actions.summaries(),
            [
                "delete job ok-1",
                "delete job bad-1",
                "update cronjob cj status: active=[] lastSchedule=2024-01-01T00:00:00Z lastSuccessful=2024-01-01T00:00:30Z",
            ]
        );
        assert_eq!(
            written_status(&actions).last_successful_time,
            Some(Time(t("2024-01-01T00:00:30Z")))
        );
        assert_eq!(
            actions.events()[0],
            "Normal SawCompletedJob Saw completed job: done, condition: Complete"
        );
    }

    #[test]
    fn a_job_event_enqueues_its_cron_job() {
        let queue = WorkQueue::new();
        job_changed(Change::Applied(&job("j", CREATED, None)), &queue);
        let mut orphan = job("o", CREATED, None);
        orphan.metadata.owner_references = None;
        job_changed(Change::Applied(&orphan), &queue);
        assert_eq!(queue.len(), 1);
    }
}
