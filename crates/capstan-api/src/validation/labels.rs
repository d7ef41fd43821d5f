//! Labels, annotations and label selectors as objects carry them (`metadata.labels`,
//! `spec.selector`), checked with the label-key and label-value rules of `crate::selector`.

use super::field_error::{FieldError, FieldPath};
use super::{array_field, map_field, str_or_empty};
use serde_json::{Map, Value};

/// Kubernetes' limit on the summed size of an object's annotation keys and values.
pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

pub(crate) use crate::selector::{label_value_errors, qualified_name_errors};

/// `ValidateLabelName`: a qualified name, each message an `Invalid` at `path`.
pub(crate) fn validate_label_name(name: &str, path: &FieldPath) -> Vec<FieldError> {
    super::invalid_each(path, name, qualified_name_errors(name))
}

/// `ValidateLabels`: keys and values of a label map. Kubernetes reports every problem at the
/// map's own path, not at the key.
pub(crate) fn validate_labels(
    labels: Option<&Map<String, Value>>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in labels.into_iter().flatten() {
        errors.extend(validate_label_name(key, path));
        let value = value.as_str().unwrap_or("");
        errors.extend(super::invalid_each(path, value, label_value_errors(value)));
    }
    errors
}

/// `ValidateAnnotations`: keys are qualified names compared case-insensitively, and all keys
/// and values together fit in 256 KiB.
pub(crate) fn validate_annotations(
    annotations: Option<&Map<String, Value>>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = 0;
    for (key, value) in annotations.into_iter().flatten() {
        for msg in qualified_name_errors(&key.to_lowercase()) {
            errors.push(FieldError::invalid(path, key.as_str(), msg));
        }
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errors
}

/// `ValidateLabelSelector` (metav1): matchLabels as labels, each expression's operator, key
/// and values.
pub(crate) fn validate_label_selector(selector: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = validate_labels(
        map_field(selector, "matchLabels"),
        &path.child("matchLabels"),
    );
    for (i, expression) in array_field(selector, "matchExpressions").iter().enumerate() {
        let expr_path = path.child("matchExpressions").index(i);
        let values = array_field(expression, "values");
        let operator = str_or_empty(expression, "operator");
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errors.push(FieldError::required(
                        expr_path.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errors.push(FieldError::forbidden(
                        expr_path.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errors.push(FieldError::invalid(
                expr_path.child("operator"),
                operator,
                "not a valid selector operator",
            )),
        }
        errors.extend(validate_label_name(
            str_or_empty(expression, "key"),
            &expr_path.child("key"),
        ));
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or("");
            errors.extend(super::invalid_each(
                &expr_path.child("values").index(j),
                value,
                label_value_errors(value),
            ));
        }
    }
    errors
}

/// Does the selector have no requirement at all (and so select everything)?
pub(crate) fn selector_is_empty(selector: &Value) -> bool {
    map_field(selector, "matchLabels").is_none_or(Map::is_empty)
        && array_field(selector, "matchExpressions").is_empty()
}

/// Does a metav1 `LabelSelector` select an object with `labels`? A selector Kubernetes could
/// not convert selects nothing; callers report its problems through
/// [`validate_label_selector`].
pub(crate) fn selector_matches(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    crate::selector::LabelSelector::from_label_selector(selector)
        .is_ok_and(|selector| selector.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        let labels = labels.as_object();
        let cases = [
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "Exists"}]}),
                false,
            ),
        ];
        for (selector, want) in cases {
            assert_eq!(selector_matches(&selector, labels), want, "{selector}");
        }
    }

    #[test]
    fn selector_operators_are_checked() {
        let selector = json!({"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near"},
        ]});
        let errors: Vec<String> =
            validate_label_selector(&selector, &FieldPath::new("spec").child("selector"))
                .iter()
                .map(ToString::to_string)
                .collect();
        assert_eq!(
            errors,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
    }

    #[test]
    fn annotations_may_not_exceed_256_kib_in_total() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let annotations = json!({"a": big});
        let errors = validate_annotations(
            annotations.as_object(),
            &FieldPath::new("metadata").child("annotations"),
        );
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }
}
