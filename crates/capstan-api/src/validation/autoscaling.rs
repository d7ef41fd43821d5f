//! autoscaling: HorizontalPodAutoscaler, v2 and the v1 view of it. Kubernetes validates the
//! internal (v2-shaped) object, so v1's `targetCPUUtilizationPercentage` is checked on its own.

use super::field_error::{FieldError, FieldPath};
use super::names::is_valid_path_segment_name;
use super::{int_field, invalid_each, str_or_empty};
use serde_json::Value;

pub(super) fn validate_horizontal_pod_autoscaler(object: &Value) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    let target = spec.get("scaleTargetRef").unwrap_or(&Value::Null);
    let target_path = path.child("scaleTargetRef");
    for key in ["kind", "name"] {
        let value = str_or_empty(target, key);
        if value.is_empty() {
            errors.push(FieldError::required(target_path.child(key), ""));
        } else {
            errors.extend(invalid_each(
                &target_path.child(key),
                value,
                is_valid_path_segment_name(value),
            ));
        }
    }
    let min = int_field(spec, "minReplicas");
    if let Some(min) = min
        && min < 1
    {
        // Scaling to zero needs the alpha HPAScaleToZero gate, off in 1.33.
        errors.push(FieldError::invalid(
            path.child("minReplicas"),
            min,
            "must be greater than or equal to 1",
        ));
    }
    let max = int_field(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        errors.push(FieldError::invalid(
            path.child("maxReplicas"),
            max,
            "must be greater than 0",
        ));
    }
    if let Some(min) = min
        && max < min
    {
        errors.push(FieldError::invalid(
            path.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    if let Some(target) = int_field(spec, "targetCPUUtilizationPercentage")
        && target < 1
    {
        errors.push(FieldError::invalid(
            path.child("targetCPUUtilizationPercentage"),
            target,
            "must be greater than 0",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hpa_max_replicas_must_cover_min_replicas() {
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 5, "maxReplicas": 2}});
        let errors: Vec<String> = validate_horizontal_pod_autoscaler(&hpa)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
            ]
        );
    }
}
