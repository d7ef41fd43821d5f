//! scheduling.k8s.io: PriorityClass (Kubernetes' `pkg/apis/scheduling/validation`).

use super::field_error::{FieldError, FieldPath};
use super::{bool_field, immutable, int_field, str_field, str_or_empty};
use serde_json::Value;

/// The highest value a class that is not a system class may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// Names with this prefix are reserved for the system classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";

/// A class the API server creates at start and never lets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemPriorityClass {
    pub name: &'static str,
    pub value: i64,
    pub description: &'static str,
}

/// Kubernetes' `SystemPriorityClasses()`, in its order.
pub const SYSTEM_PRIORITY_CLASSES: &[SystemPriorityClass] = &[
    SystemPriorityClass {
        name: "system-node-critical",
        value: 2_000_001_000,
        description: "Used for system critical pods that must not be moved from their current node.",
    },
    SystemPriorityClass {
        name: "system-cluster-critical",
        value: 2_000_000_000,
        description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    },
];

/// `IsKnownSystemPriorityClass`: why a `system-` class is not one of the system classes as
/// they are defined, if it is not.
fn system_class_error(name: &str, value: i64, global_default: bool) -> Option<String> {
    let Some(class) = SYSTEM_PRIORITY_CLASSES.iter().find(|c| c.name == name) else {
        return Some(format!("{name} is not a known system priority class"));
    };
    if class.value != value {
        return Some(format!(
            "value of {name} PriorityClass must be {}",
            class.value
        ));
    }
    if global_default {
        return Some(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    None
}

/// `ValidatePriorityClass` and, with `old`, `ValidatePriorityClassUpdate`.
pub(super) fn validate_priority_class(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = object
        .get("metadata")
        .map(|m| str_or_empty(m, "name"))
        .unwrap_or_default();
    let value = int_field(object, "value").unwrap_or(0);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Some(reason) = system_class_error(name, value, bool_field(object, "globalDefault")) {
            errors.push(FieldError::forbidden(
                FieldPath::new("metadata").child("name"),
                format!(
                    "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {reason}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errors.push(FieldError::forbidden(
            "value",
            format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    match str_field(object, "preemptionPolicy") {
        None | Some("PreemptLowerPriority" | "Never") => {}
        Some("") => errors.push(FieldError::required("preemptionPolicy", "")),
        Some(other) => errors.push(FieldError::not_supported(
            "preemptionPolicy",
            other,
            &["PreemptLowerPriority", "Never"],
        )),
    }
    if let Some(old) = old {
        if int_field(old, "value").unwrap_or(0) != value {
            errors.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        errors.extend(immutable(
            object,
            old,
            "preemptionPolicy",
            &FieldPath::new(""),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::messages;
    use serde_json::json;

    fn class(name: &str, value: i64) -> Value {
        json!({"metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority"})
    }

    #[test]
    fn user_classes_stay_below_the_system_range() {
        assert!(validate_priority_class(&class("high", 1_000_000_000), None).is_empty());
        assert_eq!(
            messages(validate_priority_class(&class("high", 1_000_000_001), None)),
            vec![
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
            ]
        );
        assert!(validate_priority_class(&class("low", -5), None).is_empty());
    }

    #[test]
    fn system_names_are_reserved_for_the_system_classes() {
        assert!(
            validate_priority_class(&class("system-node-critical", 2_000_001_000), None).is_empty()
        );
        assert_eq!(
            messages(validate_priority_class(&class("system-mine", 10), None)),
            vec![
                "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
            ]
        );
        assert_eq!(
            messages(validate_priority_class(
                &class("system-cluster-critical", 10),
                None
            )),
            vec![
                "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-cluster-critical PriorityClass must be 2000000000"
            ]
        );
    }

    #[test]
    fn value_and_preemption_policy_are_immutable() {
        let old = class("high", 100);
        let mut new = class("high", 200);
        new["preemptionPolicy"] = json!("Never");
        assert_eq!(
            messages(validate_priority_class(&new, Some(&old))),
            vec![
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"Never\": field is immutable",
            ]
        );
        let mut described = old.clone();
        described["description"] = json!("for web servers");
        assert!(validate_priority_class(&described, Some(&old)).is_empty());
    }

    #[test]
    fn preemption_policy_is_one_of_two() {
        let mut c = class("high", 1);
        c["preemptionPolicy"] = json!("Sometimes");
        assert_eq!(
            messages(validate_priority_class(&c, None)),
            vec![
                "preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\""
            ]
        );
    }
}
