//! policy: PodDisruptionBudget (Kubernetes' `pkg/apis/policy/validation`).

use super::field_error::{FieldError, FieldPath};
use super::labels::validate_label_selector;
use super::workloads::{int_or_percent, validate_positive_int_or_percent};
use super::{present, str_field};
use serde_json::Value;

/// The values `spec.unhealthyPodEvictionPolicy` may take, sorted as Kubernetes lists them.
const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// `ValidatePodDisruptionBudget`: the spec only; the name follows the DNS subdomain rule, which
/// the metadata checks apply. The spec may change after creation (since Kubernetes 1.15).
pub(super) fn validate_pod_disruption_budget(object: &Value) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    let min_available = present(spec, "minAvailable");
    let max_unavailable = present(spec, "maxUnavailable");
    if min_available.is_some() && max_unavailable.is_some() {
        errors.push(FieldError::invalid(
            &path,
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (key, value) in [
        ("minAvailable", min_available),
        ("maxUnavailable", max_unavailable),
    ] {
        let Some(value) = value else { continue };
        errors.extend(validate_positive_int_or_percent(value, &path.child(key)));
        if value.is_string() && int_or_percent(value).is_some_and(|p| p > 100) {
            errors.push(FieldError::invalid(
                path.child(key),
                value.clone(),
                "must not be greater than 100%",
            ));
        }
    }
    if let Some(selector) = present(spec, "selector") {
        errors.extend(validate_label_selector(selector, &path.child("selector")));
    }
    if let Some(policy) = str_field(spec, "unhealthyPodEvictionPolicy")
        && !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy)
    {
        errors.push(FieldError::not_supported(
            path.child("unhealthyPodEvictionPolicy"),
            policy,
            UNHEALTHY_POD_EVICTION_POLICIES,
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::messages;
    use serde_json::json;

    fn budget(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn pod_disruption_budget_spec_errors_use_kubernetes_wording() {
        let selector = json!({"matchLabels": {"app": "web"}});
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"minAvailable": 2, "selector": selector}), vec![]),
            (
                json!({"maxUnavailable": "25%", "selector": selector}),
                vec![],
            ),
            (json!({"selector": selector}), vec![]),
            (
                json!({"minAvailable": 1, "maxUnavailable": 1}),
                vec![
                    "spec: Invalid value: {\"minAvailable\":1,\"maxUnavailable\":1}: minAvailable and maxUnavailable cannot be both set",
                ],
            ),
            (
                json!({"minAvailable": -1}),
                vec!["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                json!({"maxUnavailable": "150%"}),
                vec!["spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"],
            ),
            (
                json!({"minAvailable": "half"}),
                vec![
                    "spec.minAvailable: Invalid value: \"half\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ],
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}),
                vec![
                    "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
                ],
            ),
            (
                json!({"unhealthyPodEvictionPolicy": "Sometimes"}),
                vec![
                    "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Sometimes\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
                ],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                messages(validate_pod_disruption_budget(&budget(spec.clone()))),
                want,
                "{spec}"
            );
        }
    }
}
