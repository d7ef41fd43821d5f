//! PersistentVolumeClaims, PersistentVolumes and StorageClasses.

use super::field_error::{FieldError, FieldPath};
use super::labels::{qualified_name_errors, validate_label_selector};
use super::names::is_dns1123_subdomain;
use super::quantity::Quantity;
use super::{
    array_field, describe_diff, invalid_each, map_field, present, semantic_eq, str_field,
    str_or_empty,
};
use serde_json::Value;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

fn spec_of(object: &Value) -> &Value {
    static NULL: Value = Value::Null;
    object.get("spec").unwrap_or(&NULL)
}

fn validate_access_modes(spec: &Value, path: &FieldPath, required_detail: &str) -> Vec<FieldError> {
    let modes = array_field(spec, "accessModes");
    let mut errors = Vec::new();
    if modes.is_empty() {
        errors.push(FieldError::required(
            path.child("accessModes"),
            required_detail,
        ));
    }
    let mut once_pod = false;
    let mut others = false;
    for mode in modes.iter().filter_map(Value::as_str) {
        if !ACCESS_MODES.contains(&mode) {
            errors.push(FieldError::not_supported(
                path.child("accessModes"),
                mode,
                ACCESS_MODES,
            ));
        } else if mode == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            others = true;
        }
    }
    if once_pod && others {
        errors.push(FieldError::forbidden(
            path.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errors
}

pub(super) fn validate_persistent_volume_claim(
    object: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = validate_access_modes(spec, &path, "at least 1 access mode is required");
    if let Some(selector) = present(spec, "selector") {
        errors.extend(validate_label_selector(selector, &path.child("selector")));
    }
    let storage_path = path.child("resources").key("storage");
    let storage = spec
        .get("resources")
        .and_then(|r| map_field(r, "requests"))
        .and_then(|r| r.get("storage"))
        .and_then(Value::as_str);
    match storage {
        None => errors.push(FieldError::required(&storage_path, "")),
        Some(text) => {
            if Quantity::parse(text)
                .is_some_and(|q| q.compare(Quantity::parse("0").unwrap_or(q)).is_le())
            {
                errors.push(FieldError::invalid(
                    &storage_path,
                    text,
                    "must be greater than zero",
                ));
            }
        }
    }
    if let Some(class) = str_field(spec, "storageClassName").filter(|c| !c.is_empty()) {
        errors.extend(invalid_each(
            &path.child("storageClassName"),
            class,
            is_dns1123_subdomain(class),
        ));
    }
    if let Some(mode) = str_field(spec, "volumeMode")
        && !VOLUME_MODES.contains(&mode)
    {
        errors.push(FieldError::not_supported(
            path.child("volumeMode"),
            mode,
            VOLUME_MODES,
        ));
    }
    if let Some(old) = old {
        errors.extend(validate_claim_update(object, old));
    }
    errors
}

/// A claim is fixed at creation, except that its volume may be bound once and a bound claim
/// may grow.
fn validate_claim_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let (new_spec, old_spec) = (spec_of(new), spec_of(old));
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    let munge = |spec: &Value, take_volume_name: bool| {
        let mut spec = spec.clone();
        if let Some(map) = spec.as_object_mut() {
            if take_volume_name {
                map.remove("volumeName");
            }
            if bound {
                map.remove("volumeAttributesClassName");
            }
        }
        if bound
            && let Some(requests) = spec
                .pointer_mut("/resources/requests")
                .and_then(Value::as_object_mut)
        {
            requests.remove("storage");
        }
        spec
    };
    let volume_name_free = str_or_empty(old_spec, "volumeName").is_empty();
    let (new_munged, old_munged) = (
        munge(new_spec, volume_name_free),
        munge(old_spec, volume_name_free),
    );
    let mut errors = Vec::new();
    if !semantic_eq(&new_munged, &old_munged) {
        errors.push(FieldError::forbidden(
            FieldPath::new("spec"),
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                describe_diff(&old_munged, &new_munged, "spec")
            ),
        ));
    }
    let size = |spec: &Value| {
        spec.pointer("/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(Quantity::parse)
    };
    if let (Some(new_size), Some(old_size)) = (size(new_spec), size(old_spec))
        && new_size.compare(old_size).is_lt()
    {
        errors.push(FieldError::forbidden(
            FieldPath::new("spec")
                .child("resources")
                .child("requests")
                .child("storage"),
            "field can not be less than previous value",
        ));
    }
    errors
}

/// The volume sources a PersistentVolume may use.
const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

pub(super) fn validate_persistent_volume(object: &Value) -> Vec<FieldError> {
    let spec = spec_of(object);
    let path = FieldPath::new("spec");
    let mut errors = validate_access_modes(spec, &path, "");
    let capacity = map_field(spec, "capacity");
    match capacity {
        None => errors.push(FieldError::required(path.child("capacity"), "")),
        Some(capacity) if !capacity.contains_key("storage") || capacity.len() > 1 => {
            errors.push(FieldError::not_supported(
                path.child("capacity"),
                Value::Object(capacity.clone()),
                &["storage"],
            ));
        }
        Some(_) => {}
    }
    if let Some(policy) = str_field(spec, "persistentVolumeReclaimPolicy")
        && !["Delete", "Recycle", "Retain"].contains(&policy)
    {
        errors.push(FieldError::not_supported(
            path.child("persistentVolumeReclaimPolicy"),
            policy,
            &["Delete", "Recycle", "Retain"],
        ));
    }
    let mut sources = 0;
    for key in PV_SOURCES {
        if present(spec, key).is_some() {
            if sources > 0 {
                errors.push(FieldError::forbidden(
                    path.child(key),
                    "may not specify more than 1 volume type",
                ));
            }
            sources += 1;
        }
    }
    if sources == 0 {
        errors.push(FieldError::required(&path, "must specify a volume type"));
    }
    if let Some(host_path) = present(spec, "hostPath")
        && str_or_empty(host_path, "path").is_empty()
    {
        errors.push(FieldError::required(
            path.child("hostPath").child("path"),
            "",
        ));
    }
    if let Some(mode) = str_field(spec, "volumeMode")
        && !VOLUME_MODES.contains(&mode)
    {
        errors.push(FieldError::not_supported(
            path.child("volumeMode"),
            mode,
            VOLUME_MODES,
        ));
    }
    errors
}

pub(super) fn validate_storage_class(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let provisioner = str_or_empty(object, "provisioner");
    let provisioner_path = FieldPath::new("provisioner");
    if provisioner.is_empty() {
        errors.push(FieldError::required(&provisioner_path, ""));
    } else {
        errors.extend(invalid_each(
            &provisioner_path,
            provisioner,
            qualified_name_errors(&provisioner.to_lowercase()),
        ));
    }
    if let Some(policy) = str_field(object, "reclaimPolicy")
        && policy != "Delete"
        && policy != "Retain"
    {
        errors.push(FieldError::not_supported(
            FieldPath::new("reclaimPolicy"),
            policy,
            &["Delete", "Retain"],
        ));
    }
    match str_field(object, "volumeBindingMode") {
        None => errors.push(FieldError::required(
            FieldPath::new("volumeBindingMode"),
            "",
        )),
        Some("Immediate" | "WaitForFirstConsumer") => {}
        Some(mode) => errors.push(FieldError::not_supported(
            FieldPath::new("volumeBindingMode"),
            mode,
            &["Immediate", "WaitForFirstConsumer"],
        )),
    }
    if let Some(old) = old {
        // Volumes already provisioned from a class would no longer match it.
        for key in ["parameters", "provisioner", "reclaimPolicy"] {
            let (a, b) = (
                object.get(key).unwrap_or(&Value::Null),
                old.get(key).unwrap_or(&Value::Null),
            );
            if !semantic_eq(a, b) {
                errors.push(FieldError::forbidden(
                    FieldPath::new(key),
                    format!("updates to {key} are forbidden."),
                ));
            }
        }
        errors.extend(super::immutable(
            object,
            old,
            "volumeBindingMode",
            &FieldPath::default(),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::messages;
    use serde_json::json;

    #[test]
    fn claims_need_access_modes_and_storage() {
        let pvc = json!({"spec": {"volumeMode": "Filesystem"}});
        assert_eq!(
            messages(validate_persistent_volume_claim(&pvc, None)),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
    }

    #[test]
    fn bound_claims_may_grow_but_not_shrink() {
        let claim = |size: &str| json!({"spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-1", "resources": {"requests": {"storage": size}}}, "status": {"phase": "Bound"}});
        assert!(validate_persistent_volume_claim(&claim("2Gi"), Some(&claim("1Gi"))).is_empty());
        assert_eq!(
            messages(validate_persistent_volume_claim(
                &claim("1Gi"),
                Some(&claim("2Gi"))
            )),
            vec![
                "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
            ]
        );
    }

    #[test]
    fn storage_class_provisioner_is_fixed() {
        let old = json!({"provisioner": "a.io/x", "volumeBindingMode": "Immediate"});
        let new = json!({"provisioner": "b.io/y", "volumeBindingMode": "Immediate"});
        assert_eq!(
            messages(validate_storage_class(&new, Some(&old))),
            vec!["provisioner: Forbidden: updates to provisioner are forbidden."]
        );
    }
}
