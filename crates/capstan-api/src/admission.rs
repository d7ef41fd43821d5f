//! The mutating admission plugins every Kubernetes cluster runs that need more than the object
//! itself: `Priority` (a pod's `priorityClassName` resolved to `priority` and
//! `preemptionPolicy`; one global default PriorityClass at most) and `DefaultTolerationSeconds`
//! (pods tolerate a not-ready or unreachable node for a configured time before eviction).
//!
//! Pure decisions: the API server passes in the PriorityClasses it read and its flags, applies
//! the result, and turns a refusal into a 403. Like Kubernetes, these run on pods proper (not on
//! their subresources), after defaulting and before validation.

use serde_json::{Map, Value, json};

use crate::validation::scheduling::SYSTEM_PRIORITY_CLASSES;

/// kube-apiserver's flags for `DefaultTolerationSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAdmission {
    /// `--default-not-ready-toleration-seconds`
    pub not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds`
    pub unreachable_toleration_seconds: i64,
}

impl Default for PodAdmission {
    /// Kubernetes' defaults: five minutes each.
    fn default() -> Self {
        PodAdmission {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

/// Why admission refused an object. Answered as 403 Forbidden; the same request always fails
/// until the cluster changes (a PriorityClass is created or removed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// The message after `<resource> "<name>" is forbidden: `.
    #[error("{0}")]
    Forbidden(String),
}

/// The taint keys whose NoExecute effect `DefaultTolerationSeconds` tolerates for a while.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Priority of a pod when no class names one and no class is the global default.
pub const DEFAULT_PRIORITY_WHEN_NO_DEFAULT_CLASS_EXISTS: i64 = 0;

/// What a PriorityClass gives a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    class_name: String,
    value: i64,
    preemption_policy: Option<String>,
}

fn resolved(class: &Value) -> Resolved {
    Resolved {
        class_name: class
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        value: class.get("value").and_then(Value::as_i64).unwrap_or(0),
        preemption_policy: class
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// The class named `name` among `classes`, the system classes included even when the store
/// does not hold them yet (the server creates them at start and never lets them be deleted).
fn find_class(classes: &[Value], name: &str) -> Option<Resolved> {
    if let Some(class) = classes
        .iter()
        .find(|c| c.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
    {
        return Some(resolved(class));
    }
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .find(|c| c.name == name)
        .map(|c| Resolved {
            class_name: c.name.to_string(),
            value: c.value,
            preemption_policy: Some("PreemptLowerPriority".into()),
        })
}

/// The global default class: when a race left several, the one with the lowest value, as
/// Kubernetes picks it.
pub fn default_priority_class(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
}

fn spec_mut(pod: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = pod.as_object_mut()?;
    let spec = map
        .entry("spec")
        .or_insert_with(|| Value::Object(Map::new()));
    if !spec.is_object() {
        *spec = Value::Object(Map::new());
    }
    spec.as_object_mut()
}

/// `Priority` on a pod create: resolves `priorityClassName` (or the global default class) into
/// `priority` and `preemptionPolicy`; a pod that states a different value itself is refused.
pub fn admit_pod_priority(pod: &mut Value, classes: &[Value]) -> Result<(), AdmissionError> {
    let Some(spec) = spec_mut(pod) else {
        return Ok(());
    };
    let class_name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let resolved = if class_name.is_empty() {
        match default_priority_class(classes) {
            Some(class) => resolved(class),
            None => Resolved {
                class_name: String::new(),
                value: DEFAULT_PRIORITY_WHEN_NO_DEFAULT_CLASS_EXISTS,
                preemption_policy: Some("PreemptLowerPriority".into()),
            },
        }
    } else {
        find_class(classes, &class_name).ok_or_else(|| {
            AdmissionError::Forbidden(format!("no PriorityClass with name {class_name} was found"))
        })?
    };
    if let Some(stated) = spec.get("priority").filter(|v| !v.is_null()) {
        let stated_value = stated.as_i64().unwrap_or_default();
        if stated_value != resolved.value {
            return Err(AdmissionError::Forbidden(format!(
                "the integer value of priority ({stated_value}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                resolved.value
            )));
        }
    }
    if class_name.is_empty() && !resolved.class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(resolved.class_name));
    }
    spec.insert("priority".into(), json!(resolved.value));
    if let Some(policy) = resolved.preemption_policy {
        if let Some(stated) = spec
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .filter(|s| *s != policy)
        {
            return Err(AdmissionError::Forbidden(format!(
                "the string value of PreemptionPolicy ({stated}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            )));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// `Priority` on a pod update: the priority admission set on create is kept when the new pod
/// leaves it out (validation refuses any other change).
pub fn keep_pod_priority(pod: &mut Value, old: &Value) {
    let Some(spec) = spec_mut(pod) else { return };
    for key in ["priority", "preemptionPolicy"] {
        let missing = spec.get(key).is_none_or(Value::is_null);
        if missing && let Some(value) = old.pointer(&format!("/spec/{key}")) {
            spec.insert(key.into(), value.clone());
        }
    }
}

/// `DefaultTolerationSeconds` (create and update): unless the pod already tolerates NoExecute
/// taints of a not-ready or unreachable node, it does so for the configured seconds.
pub fn admit_default_tolerations(pod: &mut Value, config: &PodAdmission) {
    let Some(spec) = spec_mut(pod) else { return };
    let tolerates = |spec: &Map<String, Value>, key: &str| {
        spec.get("tolerations")
            .and_then(Value::as_array)
            .is_some_and(|tolerations| {
                tolerations.iter().any(|t| {
                    let k = t.get("key").and_then(Value::as_str).unwrap_or_default();
                    let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
                    (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
                })
            })
    };
    let wanted = [
        (TAINT_NODE_NOT_READY, config.not_ready_toleration_seconds),
        (
            TAINT_NODE_UNREACHABLE,
            config.unreachable_toleration_seconds,
        ),
    ];
    let missing: Vec<(&str, i64)> = wanted
        .into_iter()
        .filter(|(key, _)| !tolerates(spec, key))
        .collect();
    if missing.is_empty() {
        return;
    }
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !tolerations.is_array() {
        *tolerations = Value::Array(Vec::new());
    }
    if let Some(list) = tolerations.as_array_mut() {
        for (key, seconds) in missing {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }));
        }
    }
}

/// `Priority` on a PriorityClass create or update: at most one class is the global default.
/// `existing` are the stored classes; `updating` is true for an update of `class`.
pub fn admit_priority_class(
    class: &Value,
    existing: &[Value],
    updating: bool,
) -> Result<(), AdmissionError> {
    if class.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let Some(default) = default_priority_class(existing) else {
        return Ok(());
    };
    let default_name = default
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = class
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !updating || default_name != name {
        return Err(AdmissionError::Forbidden(format!(
            "PriorityClass {default_name} is marked as default. Only one default can exist"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "a", "image": "x"}]);
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    fn class(name: &str, value: i64, global_default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": global_default, "preemptionPolicy": "PreemptLowerPriority"})
    }

    #[test]
    fn a_priority_class_name_resolves_into_priority_and_preemption_policy() {
        let mut never = class("batch", 50, false);
        never["preemptionPolicy"] = json!("Never");
        let classes = vec![class("high", 1000, false), never];
        let mut p = pod(json!({"priorityClassName": "high"}));
        admit_pod_priority(&mut p, &classes).unwrap();
        assert_eq!(p["spec"]["priority"], 1000);
        assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        let mut p = pod(json!({"priorityClassName": "batch"}));
        admit_pod_priority(&mut p, &classes).unwrap();
        assert_eq!(p["spec"]["priority"], 50);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");
        let mut p = pod(json!({"priorityClassName": "system-node-critical"}));
        admit_pod_priority(&mut p, &[]).unwrap();
        assert_eq!(p["spec"]["priority"], 2_000_001_000);
    }

    #[test]
    fn pods_without_a_class_get_the_global_default_or_zero() {
        let mut p = pod(json!({}));
        admit_pod_priority(&mut p, &[class("high", 1000, false)]).unwrap();
        assert_eq!(p["spec"]["priority"], 0);
        assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert!(p["spec"].get("priorityClassName").is_none());

        let classes = vec![class("b", 20, true), class("a", 10, true)];
        let mut p = pod(json!({}));
        admit_pod_priority(&mut p, &classes).unwrap();
        assert_eq!(p["spec"]["priority"], 10);
        assert_eq!(p["spec"]["priorityClassName"], "a");
    }

    #[test]
    fn unknown_classes_and_contradicting_values_are_forbidden() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"priorityClassName": "foo"}),
                "no PriorityClass with name foo was found",
            ),
            (
                json!({"priorityClassName": "high", "priority": 5}),
                "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name",
            ),
            (
                json!({"priority": 7}),
                "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name",
            ),
            (
                json!({"priorityClassName": "high", "preemptionPolicy": "Never"}),
                "the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name",
            ),
        ];
        for (spec, want) in cases {
            let mut p = pod(spec.clone());
            let err = admit_pod_priority(&mut p, &[class("high", 1000, false)]).unwrap_err();
            assert_eq!(err.to_string(), want, "{spec}");
        }
        let mut same = pod(json!({"priorityClassName": "high", "priority": 1000}));
        assert!(admit_pod_priority(&mut same, &[class("high", 1000, false)]).is_ok());
    }

    #[test]
    fn updates_keep_the_priority_set_on_create() {
        let old = pod(json!({"priority": 1000, "preemptionPolicy": "Never"}));
        let mut new = pod(json!({}));
        keep_pod_priority(&mut new, &old);
        assert_eq!(new["spec"]["priority"], 1000);
        assert_eq!(new["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn default_tolerations_use_the_configured_seconds_unless_already_tolerated() {
        let config = PodAdmission {
            not_ready_toleration_seconds: 60,
            unreachable_toleration_seconds: 120,
        };
        let mut p = pod(json!({}));
        admit_default_tolerations(&mut p, &config);
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120},
            ])
        );
        // Admitting again adds nothing.
        let before = p.clone();
        admit_default_tolerations(&mut p, &config);
        assert_eq!(p, before);

        let mut everything = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        admit_default_tolerations(&mut everything, &config);
        assert_eq!(
            everything["spec"]["tolerations"],
            json!([{"operator": "Exists"}])
        );

        let mut not_ready = pod(json!({"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
        ]}));
        admit_default_tolerations(&mut not_ready, &config);
        let keys: Vec<&str> = not_ready["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            vec![
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable"
            ]
        );
    }

    #[test]
    fn only_one_priority_class_may_be_the_global_default() {
        let existing = vec![class("a", 10, true), class("b", 5, false)];
        let err = admit_priority_class(&class("c", 1, true), &existing, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PriorityClass a is marked as default. Only one default can exist"
        );
        assert!(admit_priority_class(&class("a", 10, true), &existing, true).is_ok());
        assert!(admit_priority_class(&class("b", 5, true), &existing, true).is_err());
        assert!(admit_priority_class(&class("c", 1, false), &existing, false).is_ok());
    }
}
