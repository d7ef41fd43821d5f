//! `metadata` checks shared by every kind (Kubernetes' `ValidateObjectMeta` and
//! `ValidateObjectMetaUpdate`). The namespace itself is left to the API server, which sets it
//! from the URL before anything here runs.

use super::field_error::{FieldError, FieldPath};
use super::labels::{qualified_name_errors, validate_annotations, validate_labels};
use super::names::NameRule;
use super::{array_field, map_field, str_field, str_or_empty};
use crate::resource::ResourceInfo;
use serde_json::Value;

/// Finalizers without a `/` that Kubernetes accepts; any other must be domain-qualified.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// The metadata errors of a new object of `resource`'s kind: name or generateName, name format
/// for the kind, labels, annotations, owner references and finalizers.
pub fn validate_object_meta(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let empty = Value::Null;
    let meta = object.get("metadata").unwrap_or(&empty);
    let rule = NameRule::for_kind(resource.kind);
    let mut errors = Vec::new();

    let generate_name = str_or_empty(meta, "generateName");
    if !generate_name.is_empty() {
        errors.extend(super::invalid_each(
            &path.child("generateName"),
            generate_name,
            rule.check(generate_name, true),
        ));
    }
    match str_field(meta, "name").filter(|n| !n.is_empty()) {
        None => errors.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        )),
        Some(name) => {
            errors.extend(super::invalid_each(
                &path.child("name"),
                name,
                rule.check(name, false),
            ));
        }
    }
    errors.extend(super::non_negative(meta, "generation", &path));
    errors.extend(validate_labels(
        map_field(meta, "labels"),
        &path.child("labels"),
    ));
    errors.extend(validate_annotations(
        map_field(meta, "annotations"),
        &path.child("annotations"),
    ));
    errors.extend(validate_owner_references(
        meta,
        &path.child("ownerReferences"),
    ));
    errors.extend(validate_finalizers(meta, &path.child("finalizers")));
    errors
}

fn validate_owner_references(meta: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut first_controller: Option<String> = None;
    let references = array_field(meta, "ownerReferences");
    for reference in references {
        let api_version = str_or_empty(reference, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errors.push(FieldError::invalid(
                path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for key in ["kind", "name", "uid"] {
            let value = str_or_empty(reference, key);
            if value.is_empty() {
                errors.push(FieldError::invalid(
                    path.child(key),
                    value,
                    "must not be empty",
                ));
            }
        }
        if api_version == "v1" && str_or_empty(reference, "kind") == "Event" {
            errors.push(FieldError::invalid(
                path,
                reference.clone(),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if reference.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!(
                "{}/{}",
                str_or_empty(reference, "kind"),
                str_or_empty(reference, "name")
            );
            match &first_controller {
                Some(first) => errors.push(FieldError::invalid(
                    path,
                    Value::Array(references.to_vec()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errors
}

fn validate_finalizers(meta: &Value, path: &FieldPath) -> Vec<FieldError> {
    let finalizers: Vec<&str> = array_field(meta, "finalizers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut errors = Vec::new();
    for finalizer in &finalizers {
        errors.extend(super::invalid_each(
            path,
            finalizer,
            qualified_name_errors(finalizer),
        ));
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        errors.push(FieldError::invalid(
            path,
            Value::from(finalizers.clone()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    // Core's extra rule: a finalizer without a domain must be one Kubernetes itself knows.
    for (i, finalizer) in finalizers.iter().enumerate() {
        if !finalizer.contains('/') && !STANDARD_FINALIZERS.contains(finalizer) {
            errors.push(FieldError::invalid(
                path.index(i),
                *finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errors
}

/// The metadata errors of an update: identity fields may not change, and a terminating object
/// takes no new finalizers. Fields the API server fills in itself (uid, resourceVersion,
/// creationTimestamp) are only compared when the client sent them.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let empty = Value::Null;
    let new_meta = new.get("metadata").unwrap_or(&empty);
    let old_meta = old.get("metadata").unwrap_or(&empty);
    let mut errors = Vec::new();
    for key in ["name", "namespace", "uid"] {
        let (Some(new_value), Some(old_value)) =
            (str_field(new_meta, key), str_field(old_meta, key))
        else {
            continue;
        };
        if !new_value.is_empty() && !old_value.is_empty() && new_value != old_value {
            errors.push(FieldError::invalid(
                path.child(key),
                new_value,
                "field is immutable",
            ));
        }
    }
    if old_meta
        .get("deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        let old_finalizers: Vec<&str> = array_field(old_meta, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut added: Vec<&str> = array_field(new_meta, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_finalizers.contains(f))
            .collect();
        added.sort_unstable();
        added.dedup();
        if !added.is_empty() {
            let quoted: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            errors.push(FieldError::forbidden(
                path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;
    use crate::validation::messages;
    use serde_json::json;

    #[test]
    fn name_or_generate_name_is_required() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            messages(validate_object_meta(pods, &json!({"metadata": {}}))),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn names_are_checked_by_the_rule_of_their_kind() {
        let cases = [
            ("", "v1", "pods", "web.v1", true),
            ("", "v1", "namespaces", "web.v1", false),
            ("", "v1", "services", "1web", false),
            ("", "v1", "pods", "1web", true),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                "system:view",
                true,
            ),
            ("", "v1", "configmaps", "system:view", false),
        ];
        for (group, version, plural, name, ok) in cases {
            let resource = find(group, version, plural).unwrap();
            let errors = validate_object_meta(resource, &json!({"metadata": {"name": name}}));
            assert_eq!(errors.is_empty(), ok, "{plural} {name}: {errors:?}");
        }
    }

    #[test]
    fn unqualified_finalizers_must_be_standard() {
        let pods = find("", "v1", "pods").unwrap();
        let object = json!({"metadata": {"name": "p", "finalizers": ["kubernetes", "mine", "example.com/mine"]}});
        assert_eq!(
            messages(validate_object_meta(pods, &object)),
            vec![
                "metadata.finalizers[1]: Invalid value: \"mine\": name is neither a standard finalizer name nor is it fully qualified"
            ]
        );
    }

    #[test]
    fn only_one_owner_may_be_the_controller() {
        let pods = find("", "v1", "pods").unwrap();
        let owner = |name: &str| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": "u", "controller": true});
        let object =
            json!({"metadata": {"name": "p", "ownerReferences": [owner("a"), owner("b")]}});
        let errors = messages(validate_object_meta(pods, &object));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].ends_with(
            "Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"
        ));
    }

    #[test]
    fn terminating_objects_take_no_new_finalizers() {
        let old = json!({"metadata": {"name": "p", "deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["a.io/x"]}});
        let new = json!({"metadata": {"name": "p", "deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["a.io/x", "b.io/y"]}});
        assert_eq!(
            messages(validate_object_meta_update(&new, &old)),
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b.io/y\"}"
            ]
        );
    }

    #[test]
    fn the_name_of_an_object_is_immutable() {
        let old = json!({"metadata": {"name": "a"}});
        let new = json!({"metadata": {"name": "b"}});
        assert_eq!(
            messages(validate_object_meta_update(&new, &old)),
            vec!["metadata.name: Invalid value: \"b\": field is immutable"]
        );
    }
}
