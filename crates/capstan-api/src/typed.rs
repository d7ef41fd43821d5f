//! Decoding through the typed k8s-openapi structs: a body whose fields have the wrong type is
//! refused as Kubernetes refuses it, and fields no version of the kind knows are found (for
//! `fieldValidation`) and dropped, as Kubernetes' decoder drops them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::resource::ResourceInfo;

/// Why a body could not be decoded as its kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A field has the wrong JSON type; the same body always fails (answer 400).
    #[error("{kind} in version {version:?} cannot be handled as a {kind}: {detail}")]
    WrongType {
        kind: String,
        version: String,
        detail: String,
    },
}

/// A decoded object: normalized through the typed struct, with the paths of the fields that the
/// kind does not have (already removed from `object`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

/// Decodes `body` as an object of `resource`, normalizing it (quantities as strings, unknown
/// fields dropped) and listing the unknown fields for `fieldValidation`.
pub fn decode(resource: &ResourceInfo, mut body: Value) -> Result<Decoded, DecodeError> {
    stringify_quantities(&mut body, false);
    let typed = roundtrip(resource, body.clone()).map_err(|detail| DecodeError::WrongType {
        kind: resource.kind.to_string(),
        version: resource.version.to_string(),
        detail,
    })?;
    let mut unknown_fields = Vec::new();
    collect_unknown(&body, &typed, "", &mut unknown_fields);
    Ok(Decoded {
        object: typed,
        unknown_fields,
    })
}

fn roundtrip_as<T: DeserializeOwned + Serialize>(body: Value) -> Result<Value, String> {
    let typed: T = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

macro_rules! typed_kinds {
    ($( ($group:literal, $version:literal, $kind:literal) => $ty:ty, )*) => {
        fn roundtrip(resource: &ResourceInfo, body: Value) -> Result<Value, String> {
            match (resource.group, resource.version, resource.kind) {
                $( ($group, $version, $kind) => roundtrip_as::<$ty>(body), )*
                // Every registered resource is listed above; a test holds that true.
                _ => Ok(body),
            }
        }

        /// Adds the JSON schema of `resource`'s kind, and of every type inside it, to
        /// `generator`'s definitions; `None` for a kind without a typed struct.
        #[cfg(feature = "schemars")]
        pub(crate) fn add_json_schema(
            resource: &ResourceInfo,
            generator: &mut k8s_openapi::schemars::SchemaGenerator,
        ) -> Option<()> {
            match (resource.group, resource.version, resource.kind) {
                $( ($group, $version, $kind) => { generator.subschema_for::<$ty>(); Some(()) } )*
                _ => None,
            }
        }

        #[cfg(test)]
        fn has_typed_struct(resource: &ResourceInfo) -> bool {
            matches!((resource.group, resource.version, resource.kind), $( ($group, $version, $kind) )|*)
        }
    };
}

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2,
    batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, networking::v1 as networking, policy::v1 as policy,
    rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};

typed_kinds! {
    ("", "v1", "Binding") => core::Binding,
    ("", "v1", "ConfigMap") => core::ConfigMap,
    ("", "v1", "Endpoints") => core::Endpoints,
    ("", "v1", "Event") => core::Event,
    ("", "v1", "LimitRange") => core::LimitRange,
    ("", "v1", "Namespace") => core::Namespace,
    ("", "v1", "Node") => core::Node,
    ("", "v1", "PersistentVolumeClaim") => core::PersistentVolumeClaim,
    ("", "v1", "PersistentVolume") => core::PersistentVolume,
    ("", "v1", "Pod") => core::Pod,
    ("", "v1", "PodTemplate") => core::PodTemplate,
    ("", "v1", "ResourceQuota") => core::ResourceQuota,
    ("", "v1", "Secret") => core::Secret,
    ("", "v1", "ServiceAccount") => core::ServiceAccount,
    ("", "v1", "Service") => core::Service,
    ("apps", "v1", "ControllerRevision") => apps::ControllerRevision,
    ("apps", "v1", "DaemonSet") => apps::DaemonSet,
    ("apps", "v1", "Deployment") => apps::Deployment,
    ("apps", "v1", "ReplicaSet") => apps::ReplicaSet,
    ("apps", "v1", "StatefulSet") => apps::StatefulSet,
    ("autoscaling", "v2", "HorizontalPodAutoscaler") => autoscaling_v2::HorizontalPodAutoscaler,
    ("autoscaling", "v1", "HorizontalPodAutoscaler") => autoscaling_v1::HorizontalPodAutoscaler,
    ("batch", "v1", "CronJob") => batch::CronJob,
    ("batch", "v1", "Job") => batch::Job,
    ("coordination.k8s.io", "v1", "Lease") => coordination::Lease,
    ("discovery.k8s.io", "v1", "EndpointSlice") => discovery::EndpointSlice,
    ("networking.k8s.io", "v1", "IngressClass") => networking::IngressClass,
    ("networking.k8s.io", "v1", "Ingress") => networking::Ingress,
    ("networking.k8s.io", "v1", "NetworkPolicy") => networking::NetworkPolicy,
    ("policy", "v1", "PodDisruptionBudget") => policy::PodDisruptionBudget,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => rbac::ClusterRoleBinding,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole") => rbac::ClusterRole,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding") => rbac::RoleBinding,
    ("rbac.authorization.k8s.io", "v1", "Role") => rbac::Role,
    ("scheduling.k8s.io", "v1", "PriorityClass") => scheduling::PriorityClass,
    ("storage.k8s.io", "v1", "StorageClass") => storage::StorageClass,
}

/// Maps whose values are `resource.Quantity`: Kubernetes accepts numbers there (`cpu: 1`) and
/// stores them as strings.
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
    "min",
    "max",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
    "overhead",
    "allocatedResources",
];

/// Scalar fields whose value is a `resource.Quantity`.
const QUANTITY_FIELDS: &[&str] = &["sizeLimit", "divisor", "storageCapacity"];

fn stringify_quantities(value: &mut Value, in_quantity_map: bool) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if (in_quantity_map || QUANTITY_FIELDS.contains(&key.as_str()))
                    && let Value::Number(n) = child
                {
                    *child = Value::String(n.to_string());
                    continue;
                }
                let is_map = QUANTITY_MAPS.contains(&key.as_str());
                stringify_quantities(child, is_map);
            }
        }
        Value::Array(items) => {
            for item in items {
                stringify_quantities(item, false);
            }
        }
        _ => {}
    }
}

/// Records every field of `input` that is absent from `decoded`: the fields the typed struct did
/// not know. Nulls are skipped: a null is "unset" and decodes to nothing.
fn collect_unknown(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(a), Value::Object(b)) => collect_unknown_in_map(a, b, path, out),
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                collect_unknown(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn collect_unknown_in_map(
    input: &Map<String, Value>,
    decoded: &Map<String, Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in input {
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match decoded.get(key) {
            Some(d) => collect_unknown(value, d, &child_path, out),
            None if value.is_null() => {}
            None => out.push(child_path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{RESOURCES, find};
    use serde_json::json;

    #[test]
    fn every_registered_resource_has_a_typed_struct() {
        for r in RESOURCES {
            assert!(
                has_typed_struct(r),
                "{} {} has no typed struct",
                r.api_version(),
                r.kind
            );
        }
    }

    #[test]
    fn unknown_fields_are_found_and_dropped() {
        let pods = find("", "v1", "pods").unwrap();
        let body = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "busybox", "colour": "red"}]},
            "extra": null
        });
        let decoded = decode(pods, body).unwrap();
        assert_eq!(
            decoded.unknown_fields,
            vec!["metadata.bogus", "spec.containers[0].colour"]
        );
        assert!(
            decoded
                .object
                .pointer("/spec/containers/0/colour")
                .is_none()
        );
        assert_eq!(
            decoded.object.pointer("/spec/containers/0/image"),
            Some(&json!("busybox"))
        );
    }

    #[test]
    fn numeric_quantities_become_strings() {
        let pods = find("", "v1", "pods").unwrap();
        let body = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}]}
        });
        let decoded = decode(pods, body).unwrap();
        assert_eq!(
            decoded
                .object
                .pointer("/spec/containers/0/resources/limits/cpu"),
            Some(&json!("1"))
        );
        assert!(decoded.unknown_fields.is_empty());
    }

    #[test]
    fn wrong_types_are_refused_with_the_path() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": "three"}});
        let err = decode(deployments, body).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(
                "Deployment in version \"v1\" cannot be handled as a Deployment: spec.replicas"
            ),
            "{message}"
        );
    }
}
