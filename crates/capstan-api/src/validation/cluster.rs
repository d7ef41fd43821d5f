//! Core kinds about the cluster itself and its bookkeeping: Namespace, Node, Binding,
//! ServiceAccount, ResourceQuota, LimitRange, Event and Lease.

use super::field_error::{FieldError, FieldPath};
use super::labels::{label_value_errors, qualified_name_errors, validate_label_name};
use super::quantity::Quantity;
use super::{array_field, int_field, invalid_each, map_field, str_field, str_or_empty};
use serde_json::Value;
use std::collections::HashSet;

/// A Binding only names where its pod goes.
pub(super) fn validate_binding(object: &Value) -> Vec<FieldError> {
    let target = object.get("target").unwrap_or(&Value::Null);
    let path = FieldPath::new("target");
    let mut errors = Vec::new();
    let kind = str_or_empty(target, "kind");
    if !kind.is_empty() && kind != "Node" {
        errors.push(FieldError::not_supported(
            path.child("kind"),
            kind,
            &["Node", "<empty>"],
        ));
    }
    if str_or_empty(target, "name").is_empty() {
        errors.push(FieldError::required(path.child("name"), ""));
    }
    errors
}

pub(super) fn validate_namespace(object: &Value) -> Vec<FieldError> {
    let path = FieldPath::new("spec").child("finalizers");
    let mut errors = Vec::new();
    let spec = object.get("spec").unwrap_or(&Value::Null);
    for finalizer in array_field(spec, "finalizers")
        .iter()
        .filter_map(Value::as_str)
    {
        errors.extend(invalid_each(
            &path,
            finalizer,
            qualified_name_errors(finalizer),
        ));
        if !finalizer.contains('/') && finalizer != "kubernetes" {
            errors.push(FieldError::invalid(
                &path,
                finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errors
}

pub(super) fn validate_node(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    // Kubernetes reports node taints under `metadata`, a long-standing quirk kept here.
    let mut errors = validate_taints(
        array_field(spec, "taints"),
        &FieldPath::new("metadata").child("taints"),
    );
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let old_cidrs = array_field(old_spec, "podCIDRs");
        if !old_cidrs.is_empty() && old_cidrs != array_field(spec, "podCIDRs") {
            errors.push(FieldError::forbidden(
                FieldPath::new("spec").child("podCIDRs"),
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = str_or_empty(old_spec, "providerID");
        if !old_provider.is_empty() && old_provider != str_or_empty(spec, "providerID") {
            errors.push(FieldError::forbidden(
                FieldPath::new("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
    errors
}

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_taints(taints: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, taint) in taints.iter().enumerate() {
        let item = path.index(i);
        let key = str_or_empty(taint, "key");
        errors.extend(validate_label_name(key, &item.child("key")));
        let value = str_or_empty(taint, "value");
        let messages = label_value_errors(value);
        if !messages.is_empty() {
            errors.push(FieldError::invalid(
                item.child("value"),
                value,
                messages.join(";"),
            ));
        }
        let effect = str_or_empty(taint, "effect");
        if effect.is_empty() {
            errors.push(FieldError::required(item.child("effect"), ""));
        } else if !TAINT_EFFECTS.contains(&effect) {
            errors.push(FieldError::not_supported(
                item.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
        // A taint is identified by its key and effect.
        if !seen.insert((key, effect)) {
            errors.push(FieldError::duplicate(&item, taint.clone()));
        }
    }
    errors
}

pub(super) fn validate_service_account(_object: &Value) -> Vec<FieldError> {
    // Only metadata is checked; secret references are resolved by the token controller.
    Vec::new()
}

pub(super) fn validate_resource_quota(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let hard_path = FieldPath::new("spec").child("hard");
    let mut errors = Vec::new();
    for (name, value) in map_field(spec, "hard").into_iter().flatten() {
        let path = hard_path.key(name);
        let name_errors = validate_label_name(name, &path);
        if name_errors.is_empty()
            && !name.contains('/')
            && !super::pod::STANDARD_RESOURCES.contains(&name.as_str())
            && !name.starts_with("hugepages-")
            && !name.starts_with("requests.hugepages-")
            && !name.starts_with("count/")
        {
            errors.push(FieldError::invalid(
                &path,
                name.as_str(),
                "must be a standard resource for quota",
            ));
        }
        errors.extend(name_errors);
        errors.extend(non_negative_quantity(value, &path));
    }
    if let Some(old) = old {
        let scopes = |o: &Value| -> HashSet<String> {
            o.get("spec")
                .map(|s| array_field(s, "scopes"))
                .unwrap_or(&[])
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        if scopes(object) != scopes(old) {
            errors.push(FieldError::invalid(
                FieldPath::new("spec").child("scopes"),
                spec.get("scopes").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    }
    errors
}

fn non_negative_quantity(value: &Value, path: &FieldPath) -> Vec<FieldError> {
    let text = value.as_str().unwrap_or("");
    if Quantity::parse(text).is_some_and(Quantity::is_negative) {
        vec![FieldError::invalid(
            path,
            text,
            "must be greater than or equal to 0",
        )]
    } else {
        Vec::new()
    }
}

pub(super) fn validate_limit_range(object: &Value) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let mut errors = Vec::new();
    for (i, limit) in array_field(spec, "limits").iter().enumerate() {
        let path = FieldPath::new("spec").child("limits").index(i);
        let limit_type = str_or_empty(limit, "type");
        if limit_type.is_empty() {
            errors.push(FieldError::required(path.child("type"), ""));
        }
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            for (name, value) in map_field(limit, key).into_iter().flatten() {
                errors.extend(non_negative_quantity(value, &path.child(key).key(name)));
            }
        }
        // min ≤ max for every resource named in both.
        let quantity = |key: &str, name: &str| {
            map_field(limit, key)
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .and_then(|s| Quantity::parse(s).map(|q| (s, q)))
        };
        for name in map_field(limit, "min")
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if let (Some((min_text, min)), Some((max_text, max))) =
                (quantity("min", name), quantity("max", name))
                && min.compare(max).is_gt()
            {
                errors.push(FieldError::invalid(
                    path.child("min").key(name),
                    min_text,
                    format!("min value {min_text} is greater than max value {max_text}"),
                ));
            }
        }
    }
    errors
}

pub(super) fn validate_event(object: &Value) -> Vec<FieldError> {
    let namespace = object
        .get("metadata")
        .map_or("", |m| str_or_empty(m, "namespace"));
    let involved = object.get("involvedObject").unwrap_or(&Value::Null);
    let involved_namespace = str_or_empty(involved, "namespace");
    // Events about cluster-scoped objects live in `default`.
    let mismatch = if involved_namespace.is_empty() {
        !namespace.is_empty() && namespace != "default"
    } else {
        involved_namespace != namespace
    };
    if mismatch && str_field(object, "apiVersion").is_none_or(|v| v == "v1") {
        vec![FieldError::invalid(
            FieldPath::new("involvedObject").child("namespace"),
            involved_namespace,
            "does not match event.namespace",
        )]
    } else {
        Vec::new()
    }
}

pub(super) fn validate_lease(object: &Value) -> Vec<FieldError> {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let path = FieldPath::new("spec");
    let mut errors = Vec::new();
    if let Some(duration) = int_field(spec, "leaseDurationSeconds")
        && duration <= 0
    {
        errors.push(FieldError::invalid(
            path.child("leaseDurationSeconds"),
            duration,
            "must be greater than 0",
        ));
    }
    errors.extend(super::non_negative(spec, "leaseTransitions", &path));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::messages;
    use serde_json::json;

    #[test]
    fn bindings_target_a_named_node() {
        assert_eq!(
            messages(validate_binding(&json!({"target": {"kind": "Pod"}}))),
            vec![
                "target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\"",
                "target.name: Required value",
            ]
        );
    }

    #[test]
    fn node_taints_are_unique_by_key_and_effect() {
        let node = json!({"spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"},
            {"key": "a", "effect": "NoExecute"},
            {"key": "a", "effect": "NoSchedule"},
            {"key": "b", "effect": "Sometimes"},
        ]}});
        let errors = messages(validate_node(&node, None));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("metadata.taints[2]: Duplicate value: "));
        assert!(
            errors[1].starts_with("metadata.taints[3].effect: Unsupported value: \"Sometimes\"")
        );
    }

    #[test]
    fn namespace_finalizers_must_be_known_or_qualified() {
        let ns = json!({"spec": {"finalizers": ["kubernetes", "custom"]}});
        assert_eq!(
            messages(validate_namespace(&ns)),
            vec![
                "spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
            ]
        );
    }
}
