//! Template history as DaemonSets and StatefulSets keep it (Kubernetes' `controller/history`):
//! each distinct pod template is a ControllerRevision owned by the set, named
//! `<set>-<hash>`, numbered in the order the templates were last used, and its pods carry the
//! hash in the `controller-revision-hash` label. Also the hash and the Go-style equality the
//! Deployment controller uses for its ReplicaSets.

use std::borrow::Borrow;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Resource;
use serde_json::{Value, json};

use crate::ownership::controller_ref;

/// The label naming a pod's (and a revision's) template revision.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Kubernetes' `controller.ComputeHash` shape: FNV-32a of `bytes` and of the collision count,
/// rendered with `rand.SafeEncodeString` (digits mapped onto consonants and digits that spell
/// no words).
pub fn safe_hash(bytes: &[u8], collision_count: Option<i32>) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    write(bytes);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        write(&bytes);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// JSON equality as Go compares structs: a missing field equals `null`, `false`, `0`, `""`,
/// `[]` and an object of such values. A template that came in as protobuf carries
/// `stdin: false`, while the same template written back by a Go client omits it.
pub fn equal_as_go(a: &Value, b: &Value) -> bool {
    fn zero(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.values().all(zero),
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).all(|k| {
            equal_as_go(
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
            )
        }),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal_as_go(p, q))
        }
        (Value::Null, other) | (other, Value::Null) => zero(other),
        _ => a == b,
    }
}

/// What a revision records of its set (Kubernetes' `getPatch`): the pod template, as a
/// strategic-merge patch that replaces the set's template when applied (`kubectl rollout undo`).
pub fn template_patch(template: &impl serde::Serialize) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Value::Object(fields) = &mut template {
        fields.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": template } })
}

/// The revision's name for `owner` and `hash` (Kubernetes' `ControllerRevisionName`: the
/// owner's name is cut so that the whole stays a valid name).
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// A new revision of `owner` recording `data`, numbered `revision`. Its labels are the
/// template's labels plus the hash, as Kubernetes' `NewControllerRevision` sets them.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template_labels: Option<&std::collections::BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = safe_hash(
        &serde_json::to_vec(&data).unwrap_or_default(),
        collision_count,
    );
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
    let owner_meta = owner.meta();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                owner_meta.name.as_deref().unwrap_or_default(),
                &hash,
            )),
            namespace: owner_meta.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The hash a revision was named by (its label).
pub fn hash_of(revision: &ControllerRevision) -> Option<&str> {
    revision
        .metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// Do two revisions record the same template? (Kubernetes' `EqualRevision` compares the bytes;
/// the data here may have been re-encoded by the API server, so it is compared as Go would.)
pub fn same_data(revision: &ControllerRevision, data: &Value) -> bool {
    let stored = revision.data.as_ref().map(|d| &d.0).unwrap_or(&Value::Null);
    equal_as_go(stored, data)
}

/// The revisions controlled by the object with `owner_uid`, oldest revision first (ties by
/// creation time, then name, as Kubernetes' `byRevision`).
pub fn owned_by<'a>(
    revisions: impl IntoIterator<Item = &'a ControllerRevision>,
    owner_uid: &str,
) -> Vec<&'a ControllerRevision> {
    let mut owned: Vec<&ControllerRevision> = revisions
        .into_iter()
        .filter(|r| {
            crate::ownership::controller_of(&r.metadata).is_some_and(|o| o.uid == owner_uid)
        })
        .collect();
    sort_revisions(&mut owned);
    owned
}

/// Oldest revision first; ties by creation time, then name.
pub fn sort_revisions<R: Borrow<ControllerRevision>>(revisions: &mut [R]) {
    revisions.sort_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let created =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                created(a).cmp(&created(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The number the next new (or reused) revision gets: one past the highest.
pub fn next_revision<R: Borrow<ControllerRevision>>(revisions: &[R]) -> i64 {
    revisions
        .iter()
        .map(|r| r.borrow().revision)
        .max()
        .unwrap_or(0)
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(name: &str, number: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: None,
            revision: number,
        }
    }

    #[test]
    fn revisions_sort_by_number_then_name_and_the_next_is_one_past_the_highest() {
        let mut revisions = vec![revision("b", 3), revision("a", 1), revision("c", 1)];
        sort_revisions(&mut revisions);
        let names: Vec<_> = revisions
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "c", "b"]);
        assert_eq!(next_revision(&revisions), 4);
        assert_eq!(next_revision::<ControllerRevision>(&[]), 1);
    }

    #[test]
    fn a_template_patch_replaces_the_template_and_is_named_by_its_hash() {
        let data = template_patch(&json!({"metadata": {"labels": {"app": "a"}}}));
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let owner = k8s_openapi::api::apps::v1::DaemonSet {
            metadata: ObjectMeta {
                name: Some("logs".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        let labels = [("app".to_string(), "a".to_string())].into();
        let first = new_revision(&owner, Some(&labels), data.clone(), 1, None);
        let hash = hash_of(&first).unwrap().to_string();
        assert_eq!(
            first.metadata.name.as_deref(),
            Some(&*format!("logs-{hash}"))
        );
        assert_eq!(first.metadata.labels.as_ref().unwrap()["app"], "a");
        assert!(same_data(&first, &data));
        let collided = new_revision(&owner, Some(&labels), data, 1, Some(1));
        assert_ne!(hash_of(&collided), Some(&*hash));
    }

    #[test]
    fn go_equality_treats_missing_fields_as_zero_values() {
        assert!(equal_as_go(
            &json!({"a": 1, "stdin": false, "env": []}),
            &json!({"a": 1})
        ));
        assert!(!equal_as_go(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!equal_as_go(&json!({"tty": true}), &json!({})));
    }
}
