//! rbac.authorization.k8s.io: Roles, ClusterRoles and their bindings.

use super::field_error::{FieldError, FieldPath};
use super::labels::validate_label_selector;
use super::names::{NameRule, is_valid_path_segment_name};
use super::{array_field, invalid_each, present, semantic_eq, str_or_empty};
use serde_json::Value;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(super) fn validate_role(object: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, rule) in array_field(object, "rules").iter().enumerate() {
        errors.extend(validate_policy_rule(
            rule,
            namespaced,
            &FieldPath::new("rules").index(i),
        ));
    }
    if let Some(aggregation) = present(object, "aggregationRule") {
        let path = FieldPath::new("aggregationRule").child("clusterRoleSelectors");
        let selectors = array_field(aggregation, "clusterRoleSelectors");
        if selectors.is_empty() {
            errors.push(FieldError::required(
                &path,
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        for (i, selector) in selectors.iter().enumerate() {
            errors.extend(validate_label_selector(selector, &path.index(i)));
        }
    }
    errors
}

fn validate_policy_rule(rule: &Value, namespaced: bool, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if array_field(rule, "verbs").is_empty() {
        errors.push(FieldError::required(
            path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = array_field(rule, "nonResourceURLs");
    if !urls.is_empty() {
        let urls_value = Value::from(urls.to_vec());
        if namespaced {
            errors.push(FieldError::invalid(
                path.child("nonResourceURLs"),
                urls_value.clone(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if ["apiGroups", "resources", "resourceNames"]
            .iter()
            .any(|k| !array_field(rule, k).is_empty())
        {
            errors.push(FieldError::invalid(
                path.child("nonResourceURLs"),
                urls_value,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errors;
    }
    if array_field(rule, "apiGroups").is_empty() {
        errors.push(FieldError::required(
            path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if array_field(rule, "resources").is_empty() {
        errors.push(FieldError::required(
            path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errors
}

pub(super) fn validate_role_binding(
    object: &Value,
    old: Option<&Value>,
    namespaced: bool,
) -> Vec<FieldError> {
    let role_ref = object.get("roleRef").unwrap_or(&Value::Null);
    let ref_path = FieldPath::new("roleRef");
    let mut errors = Vec::new();
    if str_or_empty(role_ref, "apiGroup") != RBAC_GROUP {
        errors.push(FieldError::not_supported(
            ref_path.child("apiGroup"),
            str_or_empty(role_ref, "apiGroup"),
            &[RBAC_GROUP],
        ));
    }
    let kind = str_or_empty(role_ref, "kind");
    let allowed: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !allowed.contains(&kind) {
        errors.push(FieldError::not_supported(
            ref_path.child("kind"),
            kind,
            allowed,
        ));
    }
    let name = str_or_empty(role_ref, "name");
    if name.is_empty() {
        errors.push(FieldError::required(ref_path.child("name"), ""));
    } else {
        errors.extend(invalid_each(
            &ref_path.child("name"),
            name,
            is_valid_path_segment_name(name),
        ));
    }
    for (i, subject) in array_field(object, "subjects").iter().enumerate() {
        errors.extend(validate_subject(
            subject,
            namespaced,
            &FieldPath::new("subjects").index(i),
        ));
    }
    if let Some(old) = old {
        let old_ref = old.get("roleRef").unwrap_or(&Value::Null);
        if !semantic_eq(role_ref, old_ref) {
            errors.push(FieldError::invalid(
                ref_path,
                role_ref.clone(),
                "cannot change roleRef",
            ));
        }
    }
    errors
}

fn validate_subject(subject: &Value, namespaced: bool, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = str_or_empty(subject, "name");
    if name.is_empty() {
        errors.push(FieldError::required(path.child("name"), ""));
    }
    let api_group = str_or_empty(subject, "apiGroup");
    match str_or_empty(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                errors.extend(invalid_each(
                    &path.child("name"),
                    name,
                    NameRule::Dns1123Subdomain.check(name, false),
                ));
            }
            if !api_group.is_empty() {
                errors.push(FieldError::not_supported(
                    path.child("apiGroup"),
                    api_group,
                    &[""],
                ));
            }
            if !namespaced && str_or_empty(subject, "namespace").is_empty() {
                errors.push(FieldError::required(path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != RBAC_GROUP {
                errors.push(FieldError::not_supported(
                    path.child("apiGroup"),
                    api_group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::messages;
    use serde_json::json;

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let role = json!({"rules": [{"resources": ["pods"]}]});
        assert_eq!(
            messages(validate_role(&role, true)),
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
            ]
        );
    }

    #[test]
    fn cluster_role_bindings_refer_to_cluster_roles() {
        let binding = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
        assert_eq!(
            messages(validate_role_binding(&binding, None, false)),
            vec![
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value",
            ]
        );
    }

    #[test]
    fn role_ref_cannot_change() {
        let old =
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"}});
        let new =
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "edit"}});
        let errors = messages(validate_role_binding(&new, Some(&old), true));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].ends_with(": cannot change roleRef"));
    }
}
