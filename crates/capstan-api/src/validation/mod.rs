//! Validation of objects on create and update, worded as Kubernetes words it.
//!
//! One module per family of kinds, each mirroring the Kubernetes package it follows
//! (`pkg/apis/core/validation`, `pkg/apis/apps/validation`, …): `meta` for what every object
//! shares, `pod` for pods and pod templates, `workloads` for the apps group, `batch`, `service`,
//! `config` (ConfigMap, Secret), `cluster` (Namespace, Node and other core kinds), `storage`,
//! `networking`, `rbac`, `autoscaling`, `policy` (PodDisruptionBudget) and `scheduling`
//! (PriorityClass). [`validate`] picks the checks by `kind`.
//!
//! Objects arrive as JSON already decoded through the typed structs, so field types are right
//! and unknown fields are gone; what is checked here is what a schema cannot say.

mod autoscaling;
mod batch;
mod cluster;
mod config;
pub mod field_error;
mod labels;
pub mod meta;
pub mod names;
mod networking;
mod pod;
mod policy;
pub(crate) use crate::quantity;
mod rbac;
pub mod scheduling;
mod service;
mod storage;
mod workloads;

use crate::resource::ResourceInfo;
use field_error::{FieldError, FieldPath};
use serde_json::{Map, Value};

pub use meta::validate_object_meta;

/// Every field error of `object` (already defaulted), checked as a create when `old` is `None`
/// and as an update of `old` otherwise. An empty result means the object may be stored.
pub fn validate(resource: &ResourceInfo, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let kind = resource.kind;
    // A Binding is a request, not a stored object: Kubernetes checks only its target.
    if kind == "Binding" {
        return cluster::validate_binding(object);
    }
    let mut errors = validate_object_meta(resource, object);
    if let Some(old) = old {
        errors.extend(meta::validate_object_meta_update(object, old));
    }
    errors.extend(match kind {
        "Pod" => pod::validate_pod(object, old),
        "PodTemplate" => pod::validate_pod_template(object),
        "Deployment" => workloads::validate_deployment(object, old),
        "ReplicaSet" => workloads::validate_replica_set(object, old),
        "StatefulSet" => workloads::validate_stateful_set(object, old),
        "DaemonSet" => workloads::validate_daemon_set(object, old),
        "ControllerRevision" => workloads::validate_controller_revision(object, old),
        "Job" => batch::validate_job(object, old),
        "CronJob" => batch::validate_cron_job(object, old),
        "Service" => service::validate_service(object, old),
        "Endpoints" => service::validate_endpoints(object),
        "EndpointSlice" => service::validate_endpoint_slice(object),
        "ConfigMap" => config::validate_config_map(object, old),
        "Secret" => config::validate_secret(object, old),
        "Namespace" => cluster::validate_namespace(object),
        "Node" => cluster::validate_node(object, old),
        "ServiceAccount" => cluster::validate_service_account(object),
        "ResourceQuota" => cluster::validate_resource_quota(object, old),
        "LimitRange" => cluster::validate_limit_range(object),
        "Event" => cluster::validate_event(object),
        "Lease" => cluster::validate_lease(object),
        "PersistentVolumeClaim" => storage::validate_persistent_volume_claim(object, old),
        "PersistentVolume" => storage::validate_persistent_volume(object),
        "StorageClass" => storage::validate_storage_class(object, old),
        "Ingress" => networking::validate_ingress(object),
        "IngressClass" => networking::validate_ingress_class(object, old),
        "NetworkPolicy" => networking::validate_network_policy(object),
        "Role" | "ClusterRole" => rbac::validate_role(object, resource.namespaced),
        "RoleBinding" | "ClusterRoleBinding" => {
            rbac::validate_role_binding(object, old, resource.namespaced)
        }
        "HorizontalPodAutoscaler" => autoscaling::validate_horizontal_pod_autoscaler(object),
        "PodDisruptionBudget" => policy::validate_pod_disruption_budget(object),
        "PriorityClass" => scheduling::validate_priority_class(object, old),
        // Every served kind is listed above; an unknown one gets the metadata checks only.
        _ => Vec::new(),
    });
    errors
}

// Small readers over JSON shared by the kind modules. Missing fields and fields of another type
// read as absent: the typed decode has already rejected wrong types.

/// The string at `key`, if any.
pub(crate) fn str_field<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// The string at `key`, empty when missing (Go's zero value, which is what Kubernetes checks).
pub(crate) fn str_or_empty<'a>(object: &'a Value, key: &str) -> &'a str {
    str_field(object, key).unwrap_or("")
}

/// The integer at `key`, if any.
pub(crate) fn int_field(object: &Value, key: &str) -> Option<i64> {
    object.get(key).and_then(Value::as_i64)
}

/// The boolean at `key`, false when missing.
pub(crate) fn bool_field(object: &Value, key: &str) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `key`, empty when missing.
pub(crate) fn array_field<'a>(object: &'a Value, key: &str) -> &'a [Value] {
    object
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The map at `key`, if any.
pub(crate) fn map_field<'a>(object: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    object.get(key).and_then(Value::as_object)
}

/// The value at `key`, unless missing or null.
pub(crate) fn present<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// `must be greater than or equal to 0` for a negative integer field.
pub(crate) fn non_negative(object: &Value, key: &str, path: &FieldPath) -> Vec<FieldError> {
    match int_field(object, key) {
        Some(value) if value < 0 => vec![FieldError::invalid(
            path.child(key),
            value,
            "must be greater than or equal to 0",
        )],
        _ => Vec::new(),
    }
}

/// One `Invalid` error per message, as Kubernetes turns a format check into field errors.
pub(crate) fn invalid_each(
    path: &FieldPath,
    value: &str,
    messages: Vec<String>,
) -> Vec<FieldError> {
    messages
        .into_iter()
        .map(|msg| FieldError::invalid(path, value, msg))
        .collect()
}

/// `field is immutable` when `key` differs between the new and the old object.
pub(crate) fn immutable(new: &Value, old: &Value, key: &str, path: &FieldPath) -> Vec<FieldError> {
    let new_value = new.get(key).cloned().unwrap_or(Value::Null);
    let old_value = old.get(key).cloned().unwrap_or(Value::Null);
    if semantic_eq(&new_value, &old_value) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path.child(key),
            new_value,
            "field is immutable",
        )]
    }
}

/// Kubernetes reports a name that refers to nothing as `Not found: "x"`. The shared
/// `FieldError` has no not-found kind yet, so this is worded as the closest `Invalid` until it
/// gains one; callers use this helper so that the switch is one line.
/// The errors as Kubernetes prints them, for tests' expectations.
#[cfg(test)]
pub(crate) fn messages(errors: Vec<FieldError>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

pub(crate) fn not_found(path: FieldPath, value: &str) -> FieldError {
    FieldError::not_found(path, value)
}

/// Kubernetes' semantic equality over JSON: a missing field, `null`, `[]` and `{}` are the same
/// (Go's nil and empty slices and maps compare equal), so that a client that omits an empty
/// list is not accused of changing it.
pub(crate) fn semantic_eq(a: &Value, b: &Value) -> bool {
    fn is_empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = x.keys().chain(y.keys());
            keys.into_iter().all(|k| {
                let xv = x.get(k).unwrap_or(&Value::Null);
                let yv = y.get(k).unwrap_or(&Value::Null);
                semantic_eq(xv, yv)
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| semantic_eq(a, b))
        }
        (x, y) if is_empty(x) && is_empty(y) => true,
        (x, y) => x == y,
    }
}

/// The leaves that differ between `old` and `new`, as `-`/`+` lines under their paths: a short
/// stand-in for the Go struct diff Kubernetes appends to "may not change" messages.
pub(crate) fn describe_diff(old: &Value, new: &Value, path: &str) -> String {
    let mut out = String::new();
    diff_into(old, new, path, &mut out);
    out
}

fn diff_into(old: &Value, new: &Value, path: &str, out: &mut String) {
    if semantic_eq(old, new) {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.extend(n.keys().filter(|k| !o.contains_key(*k)));
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff_into(
                    o.get(key).unwrap_or(&Value::Null),
                    n.get(key).unwrap_or(&Value::Null),
                    &child,
                    out,
                );
            }
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                diff_into(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            out.push_str(&format!("  {path}:\n-   {old}\n+   {new}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::RESOURCES;
    use serde_json::json;

    #[test]
    fn every_served_kind_accepts_a_minimal_valid_object() {
        // Each kind's smallest object that Kubernetes accepts, after defaulting.
        for resource in RESOURCES {
            let mut object = minimal_object(resource.kind);
            crate::defaults::apply_defaults(resource, &mut object);
            let errors = validate(resource, &object, None);
            assert!(
                errors.is_empty(),
                "{} {}: {:?}",
                resource.kind,
                resource.version,
                errors.iter().map(ToString::to_string).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_missing_name_is_reported_for_every_kind_but_binding() {
        for resource in RESOURCES.iter().filter(|r| r.kind != "Binding") {
            let mut object = minimal_object(resource.kind);
            object["metadata"].as_object_mut().unwrap().remove("name");
            crate::defaults::apply_defaults(resource, &mut object);
            let errors = validate(resource, &object, None);
            assert!(
                errors.iter().any(|e| e.to_string()
                    == "metadata.name: Required value: name or generateName is required"),
                "{}",
                resource.kind
            );
        }
    }

    #[test]
    fn semantic_equality_treats_empty_and_missing_alike() {
        assert!(semantic_eq(&json!({"a": []}), &json!({})));
        assert!(semantic_eq(
            &json!({"a": null, "b": {}}),
            &json!({"b": null})
        ));
        assert!(!semantic_eq(&json!({"a": [1]}), &json!({})));
        assert!(!semantic_eq(&json!({"a": "x"}), &json!({"a": "y"})));
    }

    /// The smallest valid object of `kind`, before defaulting.
    pub(crate) fn minimal_object(kind: &str) -> Value {
        let pod_spec = json!({"containers": [{"name": "app", "image": "busybox:1.36"}]});
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec});
        let selector = json!({"matchLabels": {"app": "web"}});
        let meta = json!({"name": "web", "namespace": "default"});
        let spec = match kind {
            "Pod" => json!({"spec": pod_spec}),
            "PodTemplate" => json!({"template": template}),
            "Deployment" | "ReplicaSet" | "DaemonSet" => {
                json!({"spec": {"selector": selector, "template": template}})
            }
            "StatefulSet" => {
                json!({"spec": {"selector": selector, "serviceName": "web", "template": template}})
            }
            "ControllerRevision" => json!({"data": {}, "revision": 1}),
            "Job" => {
                let mut t = template.clone();
                t["spec"]["restartPolicy"] = json!("Never");
                json!({"spec": {"template": t}})
            }
            "CronJob" => {
                let mut t = template.clone();
                t["spec"]["restartPolicy"] = json!("OnFailure");
                json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": t}}}})
            }
            "Service" => json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            "Endpoints" => {
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]})
            }
            "EndpointSlice" => {
                json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]})
            }
            "ConfigMap" => json!({"data": {"key": "value"}}),
            "Secret" => json!({"data": {"key": "dmFsdWU="}}),
            "Event" => {
                json!({"involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started"})
            }
            "Lease" => json!({"spec": {"holderIdentity": "me"}}),
            "PersistentVolumeClaim" => {
                json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
            }
            "PersistentVolume" => {
                json!({"spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}})
            }
            "StorageClass" => json!({"provisioner": "example.com/local"}),
            "Ingress" => {
                json!({"spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}})
            }
            "IngressClass" => json!({"spec": {"controller": "example.com/ingress"}}),
            "NetworkPolicy" => json!({"spec": {"podSelector": {}}}),
            "Role" | "ClusterRole" => {
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
            }
            "RoleBinding" | "ClusterRoleBinding" => json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]
            }),
            "HorizontalPodAutoscaler" => {
                json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3}})
            }
            "Binding" => json!({"target": {"kind": "Node", "name": "node-1"}}),
            "PodDisruptionBudget" => json!({"spec": {"minAvailable": 1, "selector": selector}}),
            "PriorityClass" => json!({"value": 1000, "description": "for web servers"}),
            _ => json!({}),
        };
        let mut object = spec;
        object["metadata"] = meta;
        object
    }
}
