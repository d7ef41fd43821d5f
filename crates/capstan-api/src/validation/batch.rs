//! The batch group: Job and CronJob (Kubernetes' `pkg/apis/batch/validation`).
//!
//! A Job's generated selector and `batch.kubernetes.io/controller-uid` labels are the API
//! server's to set; a Job without a selector is therefore accepted here unless it asks for a
//! manual one.

use super::field_error::{FieldError, FieldPath};
use super::labels::{selector_matches, validate_label_selector};
use super::pod::validate_pod_template_spec;
use super::{
    bool_field, immutable, int_field, map_field, non_negative, present, semantic_eq, str_field,
    str_or_empty,
};
use serde_json::Value;

fn spec_of(object: &Value) -> &Value {
    static NULL: Value = Value::Null;
    object.get("spec").unwrap_or(&NULL)
}

pub(super) fn validate_job(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = validate_job_spec(spec, &path);
    match present(spec, "selector") {
        Some(selector) => {
            errors.extend(validate_label_selector(selector, &path.child("selector")));
            let labels = spec
                .get("template")
                .and_then(|t| t.get("metadata"))
                .and_then(|m| map_field(m, "labels"));
            if !selector_matches(selector, labels) {
                errors.push(FieldError::invalid(
                    path.child("template").child("metadata").child("labels"),
                    labels.cloned().map_or(Value::Null, Value::Object),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        None if bool_field(spec, "manualSelector") => {
            errors.push(FieldError::required(path.child("selector"), ""));
        }
        None => {}
    }
    if let Some(old) = old {
        errors.extend(validate_job_spec_update(object, old, &path));
    }
    errors
}

/// The rules a Job and a CronJob's job template share.
fn validate_job_spec(spec: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        errors.extend(non_negative(spec, key, path));
    }
    if let Some(mode) = str_field(spec, "completionMode") {
        match mode {
            "NonIndexed" => {}
            "Indexed" => {
                if present(spec, "completions").is_none() {
                    errors.push(FieldError::required(
                        path.child("completions"),
                        "when completion mode is Indexed",
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                path.child("completionMode"),
                other,
                &["NonIndexed", "Indexed"],
            )),
        }
    }
    let template_path = path.child("template");
    let template = spec.get("template").unwrap_or(&Value::Null);
    errors.extend(validate_pod_template_spec(template, &template_path));
    let restart_policy = template
        .get("spec")
        .map_or("", |s| str_or_empty(s, "restartPolicy"));
    if restart_policy != "OnFailure" && restart_policy != "Never" {
        errors.push(FieldError::not_supported(
            template_path.child("spec").child("restartPolicy"),
            restart_policy,
            &["OnFailure", "Never"],
        ));
    }
    errors
}

/// Scheduling directives a suspended Job that never started may still change, so that queue
/// controllers can place it before it runs.
const SCHEDULING_DIRECTIVES: &[&str] =
    &["nodeSelector", "affinity", "tolerations", "schedulingGates"];

fn validate_job_spec_update(new: &Value, old: &Value, path: &FieldPath) -> Vec<FieldError> {
    let (new_spec, old_spec) = (spec_of(new), spec_of(old));
    let mut errors = Vec::new();
    // An Indexed Job may change completions together with parallelism (elastic Jobs).
    let elastic = str_or_empty(new_spec, "completionMode") == "Indexed"
        && int_field(new_spec, "completions") == int_field(new_spec, "parallelism")
        && int_field(old_spec, "completions") == int_field(old_spec, "parallelism");
    if !elastic {
        errors.extend(immutable(new_spec, old_spec, "completions", path));
    }
    errors.extend(immutable(new_spec, old_spec, "selector", path));
    errors.extend(immutable(new_spec, old_spec, "completionMode", path));
    let never_started = new
        .get("status")
        .and_then(|s| s.get("startTime"))
        .is_none_or(Value::is_null);
    if bool_field(old_spec, "suspend") && never_started {
        let strip = |spec: &Value| {
            let mut template = spec.get("template").cloned().unwrap_or(Value::Null);
            if let Some(meta) = template.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("labels");
                meta.remove("annotations");
            }
            if let Some(pod) = template.get_mut("spec").and_then(Value::as_object_mut) {
                for key in SCHEDULING_DIRECTIVES {
                    pod.remove(*key);
                }
            }
            template
        };
        if !semantic_eq(&strip(new_spec), &strip(old_spec)) {
            errors.push(FieldError::invalid(
                path.child("template"),
                new_spec.get("template").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    } else {
        errors.extend(immutable(new_spec, old_spec, "template", path));
    }
    errors
}

/// CronJob names leave room for the 11 characters of the Jobs it creates (`-<timestamp>`).
const CRON_JOB_NAME_MAX: usize = 52;

pub(super) fn validate_cron_job(object: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    let name = object
        .get("metadata")
        .map_or("", |m| str_or_empty(m, "name"));
    if name.len() > CRON_JOB_NAME_MAX {
        errors.push(FieldError::invalid(
            FieldPath::new("metadata").child("name"),
            name,
            format!("must be no more than {CRON_JOB_NAME_MAX} characters"),
        ));
    }
    let schedule = str_or_empty(spec, "schedule");
    if schedule.is_empty() {
        errors.push(FieldError::required(path.child("schedule"), ""));
    } else {
        if let Err(message) = parse_schedule(schedule) {
            errors.push(FieldError::invalid(
                path.child("schedule"),
                schedule,
                message,
            ));
        }
        if schedule.contains("TZ") {
            errors.push(FieldError::invalid(
                path.child("schedule"),
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(zone) = str_field(spec, "timeZone") {
        errors.extend(validate_time_zone(zone, &path.child("timeZone")));
    }
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        errors.extend(non_negative(spec, key, &path));
    }
    match str_or_empty(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errors.push(FieldError::required(path.child("concurrencyPolicy"), "")),
        other => errors.push(FieldError::not_supported(
            path.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let template_path = path.child("jobTemplate");
    let template = spec.get("jobTemplate").unwrap_or(&Value::Null);
    if let Some(meta) = present(template, "metadata") {
        errors.extend(super::labels::validate_labels(
            map_field(meta, "labels"),
            &template_path.child("metadata").child("labels"),
        ));
        errors.extend(super::labels::validate_annotations(
            map_field(meta, "annotations"),
            &template_path.child("metadata").child("annotations"),
        ));
    }
    let job_spec = template.get("spec").unwrap_or(&Value::Null);
    let job_spec_path = template_path.child("spec");
    errors.extend(validate_job_spec(job_spec, &job_spec_path));
    if let Some(selector) = present(job_spec, "selector") {
        errors.push(FieldError::invalid(
            job_spec_path.child("selector"),
            selector.clone(),
            "`selector` will be auto-generated",
        ));
    }
    if bool_field(job_spec, "manualSelector") {
        errors.push(FieldError::not_supported(
            job_spec_path.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    errors
}

fn validate_time_zone(zone: &str, path: &FieldPath) -> Vec<FieldError> {
    if zone.is_empty() {
        return vec![FieldError::invalid(
            path,
            zone,
            "timeZone must be nil or non-empty string",
        )];
    }
    let bad_part = zone.split('/').any(|part| {
        part == "."
            || part == ".."
            || part.starts_with('-')
            || part.is_empty()
            || part.len() > 14
            || !part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    });
    if bad_part {
        return vec![FieldError::invalid(
            path,
            zone,
            format!("unknown time zone {zone}"),
        )];
    }
    if zone.eq_ignore_ascii_case("Local") {
        return vec![FieldError::invalid(
            path,
            zone,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        )];
    }
    Vec::new()
}

/// One cron field's range and names.
struct CronField {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: CronField = CronField {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: CronField = CronField {
    min: 0,
    max: 23,
    names: &[],
};
const DAYS_OF_MONTH: CronField = CronField {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: CronField = CronField {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAYS_OF_WEEK: CronField = CronField {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses a schedule as the cron library Kubernetes uses does (`robfig/cron` standard
/// syntax: five fields or a `@descriptor`), returning its error message on failure.
pub(crate) fn parse_schedule(schedule: &str) -> Result<(), String> {
    let mut spec = schedule.trim();
    // A leading TZ=/CRON_TZ= is parsed by the library; Kubernetes rejects it separately.
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec.split_once(' ').map_or("", |(_, rest)| rest.trim());
    }
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match descriptor.strip_prefix("every ") {
                Some(duration) => parse_go_duration(duration)
                    .map_err(|e| format!("failed to parse duration {spec}: {e}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, bounds) in
        fields
            .iter()
            .zip([&MINUTES, &HOURS, &DAYS_OF_MONTH, &MONTHS, &DAYS_OF_WEEK])
    {
        for expr in field.split(',') {
            parse_range(expr, bounds)?;
        }
    }
    Ok(())
}

fn parse_range(expr: &str, bounds: &CronField) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (bounds.min, bounds.max)
    } else {
        let start = parse_int_or_name(low_and_high[0], bounds.names)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], bounds.names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // `N/step` means `N-max/step`.
            if low_and_high.len() == 1 {
                end = bounds.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < bounds.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            bounds.min
        ));
    }
    if end > bounds.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            bounds.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn parse_int_or_name(expr: &str, names: &[&str]) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some(index) = names.iter().position(|n| *n == lower) {
        // Month names count from 1, weekday names from 0.
        let offset = u32::from(names.len() == 12);
        return Ok(index as u32 + offset);
    }
    parse_int(expr)
}

fn parse_int(expr: &str) -> Result<u32, String> {
    match expr.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {expr}")),
        Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
        Err(_) => Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax"
        )),
    }
}

/// Go's `time.ParseDuration` syntax: `1h30m`, `10s`, `1.5h`.
fn parse_go_duration(text: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut rest = text.trim();
    rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {text:?}"))?;
        if number_end == 0 {
            return Err(invalid());
        }
        rest = &rest[number_end..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| rest.starts_with(u))
            .max_by_key(|u| u.len())
            .ok_or_else(|| format!("time: unknown unit {:?} in duration {text:?}", rest))?;
        rest = &rest[unit.len()..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resource::find;
    use crate::validation::messages;
    use serde_json::json;

    fn pod_template(restart_policy: &str) -> Value {
        json!({"metadata": {"labels": {"app": "batch"}}, "spec": {"restartPolicy": restart_policy, "containers": [{"name": "c", "image": "busybox"}]}})
    }

    #[test]
    fn cron_schedules_parse_like_robfig_cron() {
        let cases = [
            ("*/5 * * * *", Ok(())),
            ("0 0 1 jan,jul mon-fri", Ok(())),
            ("@hourly", Ok(())),
            ("@every 1h30m", Ok(())),
            (
                "* * * *",
                Err("expected exactly 5 fields, found 4: [* * * *]"),
            ),
            (
                "61 * * * *",
                Err("end of range (61) above maximum (59): 61"),
            ),
            ("@fortnightly", Err("unrecognized descriptor: @fortnightly")),
            (
                "x * * * *",
                Err("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ),
            (
                "5-1 * * * *",
                Err("beginning of range (5) beyond end of range (1): 5-1"),
            ),
            (
                "* * 0 * *",
                Err("beginning of range (0) below minimum (1): 0"),
            ),
        ];
        for (schedule, want) in cases {
            assert_eq!(
                parse_schedule(schedule),
                want.map_err(str::to_string),
                "{schedule}"
            );
        }
    }

    #[test]
    fn job_template_must_not_restart_always() {
        let mut job =
            json!({"metadata": {"name": "j"}, "spec": {"template": pod_template("Always")}});
        apply_defaults(find("batch", "v1", "jobs").unwrap(), &mut job);
        assert_eq!(
            messages(validate_job(&job, None)),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
            ]
        );
    }

    #[test]
    fn job_counts_must_not_be_negative() {
        let mut job = json!({"metadata": {"name": "j"}, "spec": {"completions": -1, "parallelism": -2, "template": pod_template("Never")}});
        apply_defaults(find("batch", "v1", "jobs").unwrap(), &mut job);
        assert_eq!(
            messages(validate_job(&job, None)),
            vec![
                "spec.parallelism: Invalid value: -2: must be greater than or equal to 0",
                "spec.completions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn job_selector_and_template_are_immutable() {
        let resource = find("batch", "v1", "jobs").unwrap();
        let mut old = json!({"metadata": {"name": "j"}, "spec": {"selector": {"matchLabels": {"app": "batch"}}, "template": pod_template("Never")}});
        apply_defaults(resource, &mut old);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
        let errors = messages(validate_job(&new, Some(&old)));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("spec.template: Invalid value: ")
                && errors[0].ends_with(": field is immutable")
        );
    }

    #[test]
    fn cron_job_needs_a_parseable_schedule() {
        let resource = find("batch", "v1", "cronjobs").unwrap();
        let mut cron = json!({"metadata": {"name": "c"}, "spec": {"schedule": "every minute", "jobTemplate": {"spec": {"template": pod_template("OnFailure")}}}});
        apply_defaults(resource, &mut cron);
        assert_eq!(
            messages(validate_cron_job(&cron, None)),
            vec![
                "spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"
            ]
        );
        cron["spec"]["schedule"] = json!("");
        assert_eq!(
            messages(validate_cron_job(&cron, None)),
            vec!["spec.schedule: Required value"]
        );
    }
}
