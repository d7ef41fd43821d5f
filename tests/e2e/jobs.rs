//! The Job controller on real containers: a Job runs its completions a few pods at a time and
//! completes (`kubectl wait --for=condition=complete`), a Job whose pods fail stops at its
//! backoff limit, a Job past its active deadline fails and stops its pods, a finished Job with
//! a TTL is deleted with its pods, `kubectl create job --from=cronjob/x` runs a CronJob's
//! template once, and a CronJob runs on its schedule (concurrency policies are unit-tested).

use std::time::Duration;

use crate::harness::{Cluster, eventually};

fn job(name: &str, script: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: capstan.test/busybox:1
        command: [sh, -c, '{script}']
"
    )
}

fn job_field(cluster: &Cluster, name: &str, jsonpath: &str) -> String {
    cluster.kubectl(&["get", "job", name, "-o", &format!("jsonpath={jsonpath}")])
}

#[test]
fn a_job_runs_its_completions_two_at_a_time_and_completes() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &job("count", "exit 0", "  completions: 3\n  parallelism: 2\n"),
    );
    cluster.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/count",
        "--timeout=120s",
    ]);
    assert_eq!(
        job_field(
            &cluster,
            "count",
            "{.status.succeeded} {.status.active} {.status.conditions[?(@.type==\"SuccessCriteriaMet\")].status} {.status.conditions[?(@.type==\"Complete\")].status}"
        ),
        "3 0 True True"
    );
    assert!(!job_field(&cluster, "count", "{.status.startTime}").is_empty());
    assert!(!job_field(&cluster, "count", "{.status.completionTime}").is_empty());
    let row = cluster.kubectl(&["get", "jobs", "count", "--no-headers"]);
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[..3], ["count", "Complete", "3/3"], "{row}");

    let pods = cluster.kubectl(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=count",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {.metadata.ownerReferences[0].kind}{\"\\n\"}{end}",
    ]);
    assert_eq!(
        pods.lines().collect::<Vec<_>>(),
        ["Succeeded Job"; 3],
        "{pods}"
    );
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=count",
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    assert_eq!(
        events.lines().filter(|r| *r == "SuccessfulCreate").count(),
        3,
        "{events}"
    );
    assert!(events.lines().any(|r| r == "Completed"), "{events}");

    // A finished Job with a TTL goes, and its pods with it.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &job("brief", "exit 0", "  ttlSecondsAfterFinished: 1\n"),
    );
    assert!(
        eventually(Duration::from_secs(90), || {
            cluster
                .kubectl(&["get", "jobs", "-o", "name"])
                .lines()
                .all(|l| l != "job.batch/brief")
                && cluster
                    .kubectl(&["get", "pods", "-l", "job-name=brief", "-o", "name"])
                    .trim()
                    .is_empty()
        }),
        "the Job past its TTL was not deleted with its pods"
    );
}

#[test]
fn a_job_whose_pods_fail_stops_at_its_backoff_limit() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &job("doomed", "exit 1", "  backoffLimit: 1\n"),
    );
    cluster.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/doomed",
        "--timeout=120s",
    ]);
    assert_eq!(
        job_field(
            &cluster,
            "doomed",
            "{.status.failed} {.status.active} {.status.conditions[?(@.type==\"Failed\")].reason}"
        ),
        "2 0 BackoffLimitExceeded"
    );
    assert_eq!(
        job_field(
            &cluster,
            "doomed",
            "{.status.conditions[?(@.type==\"Failed\")].message}"
        ),
        "Job has reached the specified backoff limit"
    );
    let row = cluster.kubectl(&["get", "jobs", "doomed", "--no-headers"]);
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[..3], ["doomed", "Failed", "0/1"], "{row}");
    let pods = cluster.kubectl(&["get", "pods", "-l", "job-name=doomed", "-o", "name"]);
    assert_eq!(pods.lines().count(), 2, "one pod and one retry: {pods}");
}

#[test]
fn a_job_created_from_a_cron_job_runs_to_completion() {
    let cluster = Cluster::start_with_node();
    // Once a year: the controller schedules nothing during the test, only the manual run.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: '0 0 1 1 *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: capstan.test/busybox:1
            command: [sh, -c, 'exit 0']
",
    );
    cluster.kubectl(&["create", "job", "manual", "--from=cronjob/nightly"]);
    cluster.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/manual",
        "--timeout=120s",
    ]);
    assert_eq!(
        job_field(
            &cluster,
            "manual",
            "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.status.succeeded}"
        ),
        "CronJob/nightly 1"
    );
    let row = cluster.kubectl(&["get", "cronjobs", "nightly", "--no-headers"]);
    assert!(row.starts_with("nightly"), "{row}");
}

#[test]
fn a_job_past_its_active_deadline_fails_and_its_pods_are_stopped() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &job(
            "slow",
            "trap \"exit 0\" TERM; while true; do sleep 1; done",
            "  activeDeadlineSeconds: 3\n",
        ),
    );
    cluster.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/slow",
        "--timeout=60s",
    ]);
    assert_eq!(
        job_field(
            &cluster,
            "slow",
            "{.status.active} {.status.conditions[?(@.type==\"Failed\")].reason}"
        ),
        "0 DeadlineExceeded"
    );
    assert_eq!(
        job_field(
            &cluster,
            "slow",
            "{.status.conditions[?(@.type==\"Failed\")].message}"
        ),
        "Job was active longer than specified deadline"
    );
    let running = || {
        cluster.kubectl(&[
            "get",
            "pods",
            "-l",
            "job-name=slow",
            "-o",
            "jsonpath={.items[?(@.status.phase==\"Running\")].metadata.name}",
        ])
    };
    assert!(
        eventually(Duration::from_secs(30), || running().is_empty()),
        "still running: {}",
        running()
    );
}

#[test]
fn a_cron_job_runs_on_its_schedule() {
    let cluster = Cluster::start_with_node();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: batch/v1
kind: CronJob
metadata:
  name: minutely
spec:
  schedule: '* * * * *'
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: capstan.test/busybox:1
            command: [sh, -c, 'exit 0']
",
    );
    // The next minute boundary comes within 60 s; the Job is named after the scheduled minute.
    let cron_field = |path: &str| {
        cluster.kubectl(&[
            "get",
            "cronjob",
            "minutely",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert!(
        eventually(Duration::from_secs(90), || !cron_field(
            "{.status.lastSuccessfulTime}"
        )
        .is_empty()),
        "no successful run: {}",
        cron_field("{.status}")
    );
    let scheduled = cron_field("{.status.lastScheduleTime}");
    let minutes = scheduled
        .parse::<jiff::Timestamp>()
        .expect("an RFC 3339 time")
        .as_second()
        / 60;
    let job = format!("minutely-{minutes}");
    assert_eq!(
        job_field(
            &cluster,
            &job,
            "{.metadata.ownerReferences[0].name} {.status.succeeded}"
        ),
        "minutely 1"
    );
}
