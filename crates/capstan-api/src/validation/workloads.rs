//! The apps group: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision
//! (Kubernetes' `pkg/apis/apps/validation` and the apps/v1 strategies).

use super::field_error::{FieldError, FieldPath};
use super::labels::{selector_is_empty, selector_matches, validate_label_selector};
use super::names::is_valid_percent;
use super::pod::validate_pod_template_spec;
use super::{immutable, int_field, map_field, non_negative, present, semantic_eq, str_or_empty};
use serde_json::Value;

fn spec_of(object: &Value) -> &Value {
    static NULL: Value = Value::Null;
    object.get("spec").unwrap_or(&NULL)
}

/// How a controller kind words its template rules.
struct TemplateRules {
    /// `empty selector is invalid for <kind>`
    kind_word: &'static str,
    /// The error for `activeDeadlineSeconds` in the template.
    deadline: fn(&Value, FieldPath) -> FieldError,
}

/// The selector and template rules every replicated workload shares: a non-empty valid
/// selector that selects the template's labels, a valid pod template, and pods that restart.
fn validate_selector_and_template(spec: &Value, rules: &TemplateRules) -> Vec<FieldError> {
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    let selector = present(spec, "selector");
    match selector {
        None => errors.push(FieldError::required(path.child("selector"), "")),
        Some(selector) => {
            errors.extend(validate_label_selector(selector, &path.child("selector")));
            if selector_is_empty(selector) {
                errors.push(FieldError::invalid(
                    path.child("selector"),
                    selector.clone(),
                    format!("empty selector is invalid for {}", rules.kind_word),
                ));
            }
        }
    }
    let template_path = path.child("template");
    let Some(template) = present(spec, "template") else {
        errors.push(FieldError::required(template_path, ""));
        return errors;
    };
    let labels = template
        .get("metadata")
        .and_then(|m| map_field(m, "labels"));
    if let Some(selector) = selector
        && !selector_is_empty(selector)
        && !selector_matches(selector, labels)
    {
        errors.push(FieldError::invalid(
            template_path.child("metadata").child("labels"),
            labels.cloned().map_or(Value::Null, Value::Object),
            "`selector` does not match template `labels`",
        ));
    }
    errors.extend(validate_pod_template_spec(template, &template_path));
    let pod_spec = template.get("spec").unwrap_or(&Value::Null);
    let restart_policy = str_or_empty(pod_spec, "restartPolicy");
    if restart_policy != "Always" {
        errors.push(FieldError::not_supported(
            template_path.child("spec").child("restartPolicy"),
            restart_policy,
            &["Always"],
        ));
    }
    if let Some(deadline) = present(pod_spec, "activeDeadlineSeconds") {
        errors.push((rules.deadline)(
            deadline,
            template_path.child("spec").child("activeDeadlineSeconds"),
        ));
    }
    errors
}

const REPLICA_SET_RULES: TemplateRules = TemplateRules {
    // Kubernetes reuses the Deployment wording for ReplicaSets.
    kind_word: "deployment",
    deadline: |_, path| {
        FieldError::forbidden(path, "activeDeadlineSeconds in ReplicaSet is not Supported")
    },
};

/// `spec.selector` may not change in apps/v1 once the object exists: pods already created
/// would be orphaned.
fn selector_is_immutable(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match old {
        Some(old) => immutable(
            spec_of(new),
            spec_of(old),
            "selector",
            &FieldPath::new("spec"),
        ),
        None => Vec::new(),
    }
}

pub(super) fn validate_deployment(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = non_negative(spec, "replicas", &path);
    errors.extend(validate_selector_and_template(spec, &REPLICA_SET_RULES));
    errors.extend(validate_deployment_strategy(spec, &path.child("strategy")));
    errors.extend(non_negative(spec, "minReadySeconds", &path));
    errors.extend(non_negative(spec, "revisionHistoryLimit", &path));
    if let Some(deadline) = int_field(spec, "progressDeadlineSeconds") {
        errors.extend(non_negative(spec, "progressDeadlineSeconds", &path));
        if deadline <= int_field(spec, "minReadySeconds").unwrap_or(0) {
            errors.push(FieldError::invalid(
                path.child("progressDeadlineSeconds"),
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errors.extend(selector_is_immutable(object, old));
    errors
}

fn validate_deployment_strategy(spec: &Value, path: &FieldPath) -> Vec<FieldError> {
    let strategy = spec.get("strategy").cloned().unwrap_or(Value::Null);
    let rolling = present(&strategy, "rollingUpdate");
    match str_or_empty(&strategy, "type") {
        "Recreate" => match rolling {
            Some(_) => vec![FieldError::forbidden(
                path.child("rollingUpdate"),
                "may not be specified when strategy `type` is 'Recreate'",
            )],
            None => Vec::new(),
        },
        "RollingUpdate" => match rolling {
            None => vec![FieldError::required(
                path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )],
            Some(rolling) => validate_rolling_update(rolling, &path.child("rollingUpdate")),
        },
        _ => vec![FieldError::not_supported(
            path,
            strategy.clone(),
            &["Recreate", "RollingUpdate"],
        )],
    }
}

/// maxSurge and maxUnavailable: non-negative counts or percentages, not both zero, and
/// maxUnavailable at most 100%.
fn validate_rolling_update(rolling: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in ["maxUnavailable", "maxSurge"] {
        if let Some(value) = rolling.get(key) {
            errors.extend(validate_positive_int_or_percent(value, &path.child(key)));
        }
    }
    let max_unavailable = rolling.get("maxUnavailable");
    let is_zero = |v: Option<&Value>| v.is_none_or(|v| int_or_percent(v) == Some(0));
    if is_zero(max_unavailable) && is_zero(rolling.get("maxSurge")) {
        errors.push(FieldError::invalid(
            path.child("maxUnavailable"),
            max_unavailable.cloned().unwrap_or(Value::from(0)),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if let Some(value) = max_unavailable
        && value.is_string()
        && int_or_percent(value).is_some_and(|p| p > 100)
    {
        errors.push(FieldError::invalid(
            path.child("maxUnavailable"),
            value.clone(),
            "must not be greater than 100%",
        ));
    }
    errors
}

/// The number in `3` or `25%`.
pub(super) fn int_or_percent(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
        _ => None,
    }
}

pub(super) fn validate_positive_int_or_percent(value: &Value, path: &FieldPath) -> Vec<FieldError> {
    match value {
        Value::String(s) => is_valid_percent(s)
            .into_iter()
            .map(|msg| FieldError::invalid(path, s.as_str(), msg))
            .collect(),
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => vec![FieldError::invalid(
            path,
            value.clone(),
            "must be greater than or equal to 0",
        )],
        _ => Vec::new(),
    }
}

pub(super) fn validate_replica_set(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = non_negative(spec, "replicas", &path);
    errors.extend(non_negative(spec, "minReadySeconds", &path));
    errors.extend(validate_selector_and_template(spec, &REPLICA_SET_RULES));
    errors.extend(selector_is_immutable(object, old));
    errors
}

const STATEFUL_SET_RULES: TemplateRules = TemplateRules {
    kind_word: "statefulset",
    deadline: |value, path| FieldError::invalid(path, value.clone(), "must not be specified"),
};

pub(super) fn validate_stateful_set(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    match str_or_empty(spec, "podManagementPolicy") {
        "" => errors.push(FieldError::required(path.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errors.push(FieldError::invalid(
            path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    let strategy_path = path.child("updateStrategy");
    match str_or_empty(strategy, "type") {
        "" => errors.push(FieldError::required(&strategy_path, "")),
        "OnDelete" => {
            if let Some(rolling) = present(strategy, "rollingUpdate") {
                errors.push(FieldError::invalid(
                    strategy_path.child("rollingUpdate"),
                    rolling.clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(rolling) = present(strategy, "rollingUpdate") {
                let rolling_path = strategy_path.child("rollingUpdate");
                errors.extend(non_negative(rolling, "partition", &rolling_path));
                if let Some(value) = rolling.get("maxUnavailable") {
                    errors.extend(validate_positive_int_or_percent(
                        value,
                        &rolling_path.child("maxUnavailable"),
                    ));
                    if int_or_percent(value) == Some(0) {
                        errors.push(FieldError::invalid(
                            rolling_path.child("maxUnavailable"),
                            value.clone(),
                            "must be greater than 0",
                        ));
                    }
                }
            }
        }
        _ => errors.push(FieldError::invalid(
            &strategy_path,
            strategy.clone(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = present(spec, "persistentVolumeClaimRetentionPolicy") {
        for key in ["whenDeleted", "whenScaled"] {
            let value = str_or_empty(policy, key);
            if value != "Retain" && value != "Delete" {
                errors.push(FieldError::not_supported(
                    path.child("persistentVolumeClaimRetentionPolicy")
                        .child(key),
                    value,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    if let Some(ordinals) = present(spec, "ordinals") {
        errors.extend(non_negative(ordinals, "start", &path.child("ordinals")));
    }
    errors.extend(non_negative(spec, "replicas", &path));
    errors.extend(non_negative(spec, "minReadySeconds", &path));
    errors.extend(validate_selector_and_template(spec, &STATEFUL_SET_RULES));

    if let Some(old) = old {
        // Only these fields may change; everything else about a StatefulSet's identity
        // (selector, serviceName, volumeClaimTemplates…) is fixed at creation.
        let mutable = [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ];
        let strip = |spec: &Value| {
            let mut spec = spec.clone();
            if let Some(map) = spec.as_object_mut() {
                for key in mutable {
                    map.remove(key);
                }
            }
            spec
        };
        if !semantic_eq(&strip(spec), &strip(spec_of(old))) {
            errors.push(FieldError::forbidden(
                &path,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    errors
}

const DAEMON_SET_RULES: TemplateRules = TemplateRules {
    kind_word: "daemonset",
    deadline: |value, path| {
        FieldError::invalid(
            path,
            value.clone(),
            "activeDeadlineSeconds must be nil for daemons",
        )
    },
};

pub(super) fn validate_daemon_set(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = validate_selector_and_template(spec, &DAEMON_SET_RULES);
    errors.extend(non_negative(spec, "minReadySeconds", &path));
    errors.extend(non_negative(spec, "templateGeneration", &path));
    errors.extend(non_negative(spec, "revisionHistoryLimit", &path));
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    let strategy_path = path.child("updateStrategy");
    match str_or_empty(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match present(strategy, "rollingUpdate") {
            None => errors.push(FieldError::required(
                strategy_path.child("rollingUpdate"),
                "",
            )),
            Some(rolling) => {
                errors.extend(validate_rolling_update(
                    rolling,
                    &strategy_path.child("rollingUpdate"),
                ));
            }
        },
        other => errors.push(FieldError::not_supported(
            strategy_path.child("type"),
            other,
            &["RollingUpdate", "OnDelete"],
        )),
    }
    errors.extend(selector_is_immutable(object, old));
    errors
}

pub(super) fn validate_controller_revision(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if present(object, "data").is_none() {
        errors.push(FieldError::required(
            FieldPath::new("data"),
            "data is mandatory",
        ));
    }
    errors.extend(non_negative(object, "revision", &FieldPath::default()));
    if let Some(old) = old {
        errors.extend(immutable(object, old, "data", &FieldPath::default()));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resource::find;
    use crate::validation::messages;
    use serde_json::json;

    fn deployment(spec: Value) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        apply_defaults(find("apps", "v1", "deployments").unwrap(), &mut d);
        d
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    }

    #[test]
    fn deployment_selector_must_match_template_labels() {
        let d = deployment(
            json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "db"}))}),
        );
        assert_eq!(
            messages(validate_deployment(&d, None)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn deployment_spec_errors_use_kubernetes_wording() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"template": template(json!({"app": "web"}))}),
                vec!["spec.selector: Required value"],
            ),
            (
                json!({"selector": {}, "template": template(json!({"app": "web"}))}),
                vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment"],
            ),
            (
                json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                json!({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                vec![
                    "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
                ],
            ),
            (
                json!({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                vec![
                    "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
                ],
            ),
            (
                json!({"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                vec![
                    "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
                ],
            ),
        ];
        for (spec, want) in cases {
            let d = deployment(spec.clone());
            assert_eq!(messages(validate_deployment(&d, None)), want, "{spec}");
        }
    }

    #[test]
    fn deployment_template_must_restart_always() {
        let mut t = template(json!({"app": "web"}));
        t["spec"]["restartPolicy"] = json!("Never");
        let d = deployment(json!({"selector": {"matchLabels": {"app": "web"}}, "template": t}));
        assert_eq!(
            messages(validate_deployment(&d, None)),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
            ]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let old = deployment(
            json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web", "v": "2"}))}),
        );
        let new = deployment(
            json!({"selector": {"matchLabels": {"app": "web", "v": "2"}}, "template": template(json!({"app": "web", "v": "2"}))}),
        );
        assert_eq!(
            messages(validate_deployment(&new, Some(&old))),
            vec![
                "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"
            ]
        );
        assert!(validate_deployment(&old, Some(&old)).is_empty());
    }

    #[test]
    fn statefulset_spec_is_immutable_except_replicas_and_template() {
        let resource = find("apps", "v1", "statefulsets").unwrap();
        let mut old = json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}});
        apply_defaults(resource, &mut old);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        assert!(validate_stateful_set(&scaled, Some(&old)).is_empty());
        let mut renamed = old.clone();
        renamed["spec"]["serviceName"] = json!("other");
        assert_eq!(
            messages(validate_stateful_set(&renamed, Some(&old))),
            vec![
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ]
        );
    }
}
