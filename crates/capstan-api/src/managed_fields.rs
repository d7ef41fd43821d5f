//! Field ownership (`metadata.managedFields`) and server-side apply, as Kubernetes does them:
//! every write records which manager set which fields (in the `FieldsV1` format), an apply
//! merges the applied configuration into the object, refuses to change fields another manager
//! set (unless forced, which moves the ownership), and removes the fields the manager applied
//! before and no longer applies.
//!
//! Lists follow the same rules as strategic merge patch ([`TypeCursor`]): keyed lists are
//! owned element by element (`k:{"name":"web"}`), sets value by value (`v:"x"`), other lists
//! whole.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::strategic_merge::{ListType, TypeCursor};

/// A set of field paths, as `FieldsV1` encodes it: a tree keyed by path elements (`f:name`,
/// `k:{…}`, `v:…`), where an empty subtree is a leaf and `.` marks an element owned as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    children: BTreeMap<String, FieldSet>,
    itself: bool,
}

const ITSELF: &str = ".";

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.children.is_empty() && !self.itself
    }

    /// Every owned path down to its leaves; a path ending in `.` is an element owned whole.
    pub fn leaves(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.itself {
            let mut path = prefix.clone();
            path.push(ITSELF.into());
            out.push(path);
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            if child.children.is_empty() && !child.itself {
                out.push(prefix.clone());
            } else {
                child.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => true,
            Some((first, [])) if first == ITSELF => self.itself,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| {
                if rest.is_empty() {
                    c.children.is_empty() && !c.itself || c.contains(rest)
                } else {
                    c.contains(rest)
                }
            }),
        }
    }

    pub fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => {}
            Some((first, [])) if first == ITSELF => self.itself = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Removes `path`, and the subtrees it leaves empty.
    pub fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => {}
            Some((first, [])) if first == ITSELF => self.itself = false,
            // A leaf goes; a subtree named by its parent path alone stays (only its leaves
            // can be removed).
            Some((first, []))
                if self
                    .children
                    .get(first)
                    .is_some_and(|c| c.children.is_empty()) =>
            {
                self.children.remove(first);
            }
            Some((_, [])) => {}
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// The `fieldsV1` JSON.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.itself {
            map.insert(ITSELF.into(), json!({}));
        }
        for (element, child) in &self.children {
            map.insert(element.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    pub fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        for (element, child) in value.as_object().into_iter().flatten() {
            if element == ITSELF {
                set.itself = true;
            } else {
                set.children
                    .insert(element.clone(), FieldSet::from_fields_v1(child));
            }
        }
        set
    }
}

/// The path element of a keyed list element: `k:{"name":"web"}`.
fn key_element(key: &str, value: &Value) -> String {
    format!("k:{}", json!({ key: value }))
}

fn value_element(value: &Value) -> String {
    format!("v:{value}")
}

/// The fields of `object` a manager can own: everything but identity, server-owned metadata
/// and status (written through its own subresource).
pub fn tracked_fields(kind: &str, object: &Value) -> FieldSet {
    let cursor = TypeCursor::of_kind(kind);
    let mut set = FieldSet::default();
    for (key, value) in object.as_object().into_iter().flatten() {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let mut meta = FieldSet::default();
                let (_, meta_cursor) = cursor.field("metadata");
                for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = value.get(field).filter(|v| !is_empty(v)) {
                        let (list_type, child) = meta_cursor.field(field);
                        meta.children
                            .insert(format!("f:{field}"), value_fields(v, list_type, child));
                    }
                }
                if !meta.is_empty() {
                    set.children.insert("f:metadata".into(), meta);
                }
            }
            _ => {
                let (list_type, child) = cursor.field(key);
                set.children
                    .insert(format!("f:{key}"), value_fields(value, list_type, child));
            }
        }
    }
    set
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn value_fields(value: &Value, list_type: ListType, cursor: TypeCursor) -> FieldSet {
    let mut set = FieldSet::default();
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let (child_list, child_cursor) = cursor.field(key);
                set.children.insert(
                    format!("f:{key}"),
                    value_fields(child, child_list, child_cursor),
                );
            }
        }
        Value::Array(items) => match list_type {
            ListType::Map { key } => {
                for item in items {
                    let Some(id) = item.get(key) else { continue };
                    let mut element = value_fields(item, ListType::Atomic, cursor);
                    element.itself = true;
                    set.children.insert(key_element(key, id), element);
                }
            }
            ListType::Set => {
                for item in items {
                    set.children
                        .insert(value_element(item), FieldSet::default());
                }
            }
            ListType::Atomic => {}
        },
        _ => {}
    }
    set
}

/// The value at `path` inside `value`, if there.
fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    if first == ITSELF {
        return Some(value);
    }
    let child = if let Some(name) = first.strip_prefix("f:") {
        value.get(name)?
    } else if let Some(key) = first.strip_prefix("k:") {
        let key: Value = serde_json::from_str(key).ok()?;
        let (k, v) = key.as_object()?.iter().next()?;
        value
            .as_array()?
            .iter()
            .find(|item| item.get(k) == Some(v))?
    } else if let Some(v) = first.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        value.as_array()?.iter().find(|item| **item == v)?
    } else {
        return None;
    };
    value_at(child, rest)
}

/// Removes what `path` names from `value`: a field, a keyed element, or a set value.
fn remove_at(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let is_last = rest.is_empty() || rest == [ITSELF.to_string()];
    if let Some(name) = first.strip_prefix("f:") {
        let Some(map) = value.as_object_mut() else {
            return;
        };
        if is_last {
            map.remove(name);
        } else if let Some(child) = map.get_mut(name) {
            remove_at(child, rest);
        }
    } else if let Some(key) = first.strip_prefix("k:") {
        let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
            return;
        };
        let Some((k, v)) = key.iter().next() else {
            return;
        };
        let Some(items) = value.as_array_mut() else {
            return;
        };
        let Some(index) = items.iter().position(|item| item.get(k) == Some(v)) else {
            return;
        };
        if is_last {
            items.remove(index);
        } else {
            remove_at(&mut items[index], rest);
        }
    } else if let Some(v) = first.strip_prefix("v:") {
        let Ok(v) = serde_json::from_str::<Value>(v) else {
            return;
        };
        if let Some(items) = value.as_array_mut() {
            items.retain(|item| *item != v);
        }
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.template.spec.containers[name="web"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = element.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).unwrap_or(Value::Null);
            let parts: Vec<String> = key
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = element.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn to_json(&self) -> Value {
        json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        })
    }
}

/// The entries of an object's `metadata.managedFields`.
pub fn entries(object: &Value) -> Vec<ManagedEntry> {
    let text = |e: &Value, k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| ManagedEntry {
            manager: text(e, "manager"),
            operation: text(e, "operation"),
            api_version: text(e, "apiVersion"),
            time: text(e, "time"),
            fields: FieldSet::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
        })
        .collect()
}

fn set_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    let meta = crate::object::metadata_mut(object);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Who writes, for the ownership records.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    /// `metav1.Time` of the write.
    pub time: &'a str,
}

/// Records a non-apply write (create, update, patch) of `new` over `old`: the writer takes
/// ownership of every field whose value it changed, from whoever held it; fields that are
/// gone are owned by nobody. Ownership stored in `old` is kept; `new`'s own claims are ignored.
pub fn record_update(kind: &str, old: Option<&Value>, new: &mut Value, writer: &Writer) {
    let mut list = old.map(entries).unwrap_or_default();
    let new_fields = tracked_fields(kind, new);
    let changed: Vec<Vec<String>> = new_fields
        .leaves()
        .into_iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .collect();
    for entry in &mut list {
        for path in &changed {
            entry.fields.remove(path);
        }
        for path in entry.fields.leaves() {
            if !new_fields.contains(&path) {
                entry.fields.remove(&path);
            }
        }
    }
    if !changed.is_empty() {
        let index = list
            .iter()
            .position(|e| e.manager == writer.manager && e.operation == "Update")
            .unwrap_or_else(|| {
                list.push(ManagedEntry {
                    manager: writer.manager.to_string(),
                    operation: "Update".into(),
                    api_version: writer.api_version.to_string(),
                    time: String::new(),
                    fields: FieldSet::default(),
                });
                list.len() - 1
            });
        let entry = &mut list[index];
        entry.time = writer.time.to_string();
        entry.api_version = writer.api_version.to_string();
        for path in &changed {
            entry.fields.insert(path);
        }
    }
    set_entries(new, &list);
}

/// A field an apply would change that another manager set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: String,
}

/// Kubernetes' message for refused applies.
pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    let count = if conflicts.len() == 1 {
        "1 conflict".to_string()
    } else {
        format!("{} conflicts", conflicts.len())
    };
    let mut by_manager: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager
            .entry((&c.manager, &c.api_version))
            .or_default()
            .push(&c.path);
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|((manager, version), paths)| match paths.as_slice() {
            [one] => format!("conflict with {manager:?} using {version}: {one}"),
            many => format!(
                "conflicts with {manager:?} using {version}:\n- {}",
                many.join("\n- ")
            ),
        })
        .collect();
    format!("Apply failed with {count}: {}", parts.join("\n"))
}

/// Merges `applied` into `base` by the list rules: objects key by key, keyed lists element by
/// element, sets as unions, everything else replaced.
fn merge(base: &Value, applied: &Value, list_type: ListType, cursor: TypeCursor) -> Value {
    match (base, applied) {
        (Value::Object(b), Value::Object(a)) => {
            let mut out = b.clone();
            for (key, value) in a {
                let (child_list, child_cursor) = cursor.field(key);
                let merged = match b.get(key) {
                    Some(existing) => merge(existing, value, child_list, child_cursor),
                    None => value.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(b), Value::Array(a)) => match list_type {
            ListType::Map { key } => {
                let mut out = b.clone();
                for item in a {
                    match out
                        .iter()
                        .position(|e| e.get(key).is_some() && e.get(key) == item.get(key))
                    {
                        Some(i) => out[i] = merge(&out[i], item, ListType::Atomic, cursor),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
            ListType::Set => {
                let mut out = b.clone();
                for item in a {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Atomic => applied.clone(),
        },
        _ => applied.clone(),
    }
}

/// Server-side apply of `applied` (an object of `kind`, already decoded) over `current`
/// (`None`: the object does not exist yet) by `writer`. With `force`, conflicting fields
/// change owner; without it they refuse the apply. Returns the new object with its
/// `managedFields`.
pub fn apply(
    kind: &str,
    current: Option<&Value>,
    applied: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut list = current.map(entries).unwrap_or_default();
    let applied_fields = tracked_fields(kind, applied);
    let previous = list
        .iter()
        .find(|e| e.manager == writer.manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let base = current.cloned().unwrap_or_else(|| json!({}));

    // A field conflicts when another manager owns it and the apply would change its value.
    let mut conflicts = Vec::new();
    let mut taken = Vec::new();
    for path in applied_fields.leaves() {
        let live = value_at(&base, &path);
        if live.is_none() || live == value_at(applied, &path) {
            continue;
        }
        for entry in list
            .iter()
            .filter(|e| !(e.manager == writer.manager && e.operation == "Apply"))
        {
            if entry.fields.contains(&path) {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    api_version: entry.api_version.clone(),
                    path: display_path(&path),
                });
                taken.push(path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for entry in &mut list {
        if entry.manager == writer.manager && entry.operation == "Apply" {
            continue;
        }
        for path in &taken {
            entry.fields.remove(path);
        }
    }

    let mut merged = merge(&base, applied, ListType::Atomic, TypeCursor::of_kind(kind));
    // What this manager applied before and no longer applies goes, unless someone else
    // still owns it. Deepest paths first, so an element goes after its fields.
    let mut dropped: Vec<Vec<String>> = previous
        .leaves()
        .into_iter()
        .filter(|p| !applied_fields.contains(p))
        .filter(|p| {
            !list
                .iter()
                .any(|e| e.manager != writer.manager && e.fields.contains(p))
        })
        .collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in &dropped {
        remove_at(&mut merged, path);
    }

    list.retain(|e| !(e.manager == writer.manager && e.operation == "Apply"));
    list.push(ManagedEntry {
        manager: writer.manager.to_string(),
        operation: "Apply".into(),
        api_version: writer.api_version.to_string(),
        time: writer.time.to_string(),
        fields: applied_fields,
    });
    set_entries(&mut merged, &list);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-24T16:00:00Z";

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "apps/v1",
            time: NOW,
        }
    }

    fn deployment(replicas: i64, containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}})
    }

    #[test]
    fn fields_v1_names_keyed_elements_and_round_trips() {
        let d = deployment(2, json!([{"name": "web", "image": "nginx"}]));
        let set = tracked_fields("Deployment", &d);
        let v1 = set.to_fields_v1();
        assert_eq!(v1["f:spec"]["f:replicas"], json!({}));
        let container =
            &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:image"], json!({}));
        assert_eq!(v1["f:metadata"]["f:labels"]["f:app"], json!({}));
        assert!(
            v1["f:metadata"].get("f:name").is_none(),
            "identity is nobody's field"
        );
        assert_eq!(FieldSet::from_fields_v1(&v1), set);
    }

    #[test]
    fn an_apply_creates_and_records_the_applier() {
        let d = deployment(2, json!([{"name": "web", "image": "nginx"}]));
        let out = apply("Deployment", None, &d, &writer("kubectl"), false).unwrap();
        let list = entries(&out);
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].manager.as_str(), list[0].operation.as_str()),
            ("kubectl", "Apply")
        );
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn changing_a_field_another_manager_set_conflicts_unless_forced() {
        let d = deployment(2, json!([{"name": "web", "image": "nginx"}]));
        let mut live = apply("Deployment", None, &d, &writer("kubectl"), false).unwrap();
        let before = live.clone();
        live["spec"]["replicas"] = json!(5);
        record_update(
            "Deployment",
            Some(&before),
            &mut live,
            &writer("kubectl-scale"),
        );
        let again = deployment(3, json!([{"name": "web", "image": "nginx"}]));
        let conflicts =
            apply("Deployment", Some(&live), &again, &writer("kubectl"), false).unwrap_err();
        assert_eq!(
            conflicts_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
        let forced = apply("Deployment", Some(&live), &again, &writer("kubectl"), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(
            entries(&forced)
                .iter()
                .all(|e| e.manager != "kubectl-scale"),
            "ownership moved"
        );
        // Applying the live value is no conflict.
        let same = deployment(5, json!([{"name": "web", "image": "nginx"}]));
        assert!(apply("Deployment", Some(&live), &same, &writer("kubectl"), false).is_ok());
    }

    #[test]
    fn fields_no_longer_applied_are_removed_and_others_fields_stay() {
        let two = deployment(
            2,
            json!([{"name": "web", "image": "nginx"}, {"name": "sidecar", "image": "busybox"}]),
        );
        let mut live = apply("Deployment", None, &two, &writer("kubectl"), false).unwrap();
        let before = live.clone();
        live["metadata"]["labels"]["team"] = json!("blue");
        record_update(
            "Deployment",
            Some(&before),
            &mut live,
            &writer("kubectl-label"),
        );
        let one = deployment(2, json!([{"name": "web", "image": "nginx:2"}]));
        let out = apply("Deployment", Some(&live), &one, &writer("kubectl"), false).unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["web"],
            "the sidecar this manager stopped applying is gone"
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        assert_eq!(
            out["metadata"]["labels"]["team"], "blue",
            "another manager's label stays"
        );
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let old =
            json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let mut created = old.clone();
        record_update("ConfigMap", None, &mut created, &writer("creator"));
        let mut new = created.clone();
        new["data"]["a"] = json!("9");
        record_update("ConfigMap", Some(&created), &mut new, &writer("editor"));
        let list = entries(&new);
        let creator = list.iter().find(|e| e.manager == "creator").unwrap();
        let editor = list.iter().find(|e| e.manager == "editor").unwrap();
        assert!(creator.fields.contains(&["f:data".into(), "f:b".into()]));
        assert!(!creator.fields.contains(&["f:data".into(), "f:a".into()]));
        assert!(editor.fields.contains(&["f:data".into(), "f:a".into()]));
    }

    #[test]
    fn sets_merge_as_unions_and_paths_print_as_kubernetes_prints_them() {
        let live = json!({"metadata": {"finalizers": ["a"]}});
        let merged = merge(
            &live,
            &json!({"metadata": {"finalizers": ["b", "a"]}}),
            ListType::Atomic,
            TypeCursor::of_kind("ConfigMap"),
        );
        assert_eq!(merged["metadata"]["finalizers"], json!(["a", "b"]));
        let path = vec![
            "f:spec".to_string(),
            "f:containers".into(),
            "k:{\"name\":\"web\"}".into(),
            "f:image".into(),
        ];
        assert_eq!(display_path(&path), ".spec.containers[name=\"web\"].image");
    }
}
