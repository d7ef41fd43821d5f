//! Accessors for the parts of an object every kind shares (`apiVersion`, `kind`, `metadata`),
//! over `serde_json::Value` so that one code path serves every kind.

use serde_json::{Map, Value};

/// A `&str` at a JSON pointer, if it is a string.
pub fn str_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

pub fn name(object: &Value) -> Option<&str> {
    str_at(object, "/metadata/name").filter(|s| !s.is_empty())
}

pub fn namespace(object: &Value) -> Option<&str> {
    str_at(object, "/metadata/namespace").filter(|s| !s.is_empty())
}

pub fn resource_version(object: &Value) -> Option<&str> {
    str_at(object, "/metadata/resourceVersion").filter(|s| !s.is_empty())
}

pub fn uid(object: &Value) -> Option<&str> {
    str_at(object, "/metadata/uid").filter(|s| !s.is_empty())
}

/// `metadata`, created empty when missing or not an object.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    object_field_mut(object, "metadata")
}

/// The object under `key` of `object`, created empty when missing or of another type.
/// `object` itself is made an object first when it is not one.
pub fn object_field_mut<'a>(object: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let map = object.as_object_mut().expect("made an object above");
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("made an object above")
}

/// Sets `metadata.<key>`, removing it when `value` is null.
pub fn set_meta(object: &mut Value, key: &str, value: Value) {
    let meta = metadata_mut(object);
    if value.is_null() {
        meta.remove(key);
    } else {
        meta.insert(key.to_string(), value);
    }
}

/// The labels of an object (empty when it has none).
pub fn labels(object: &Value) -> Option<&Map<String, Value>> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
}

/// The finalizers of an object, in order.
pub fn finalizers(object: &Value) -> Vec<&str> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Is the object marked for deletion (`metadata.deletionTimestamp` set)?
pub fn is_terminating(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// An RFC 3339 timestamp with second precision, as Kubernetes writes `metav1.Time`.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a `metav1.Time`.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The object with everything but `apiVersion`, `kind` and `metadata` removed: the
/// `PartialObjectMetadata` a Table row carries.
pub fn partial_metadata(object: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), Value::from("PartialObjectMetadata"));
    out.insert("apiVersion".into(), Value::from("meta.k8s.io/v1"));
    if let Some(meta) = object.get("metadata") {
        out.insert("metadata".into(), meta.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_metadata_is_created_on_write() {
        let mut obj = json!({"kind": "Pod"});
        set_meta(&mut obj, "name", json!("p"));
        assert_eq!(name(&obj), Some("p"));
        set_meta(&mut obj, "name", Value::Null);
        assert_eq!(name(&obj), None);
    }

    #[test]
    fn times_print_in_kubernetes_form() {
        let t: jiff::Timestamp = "2026-11-24T15:33:00.123Z".parse().unwrap();
        assert_eq!(format_time(t), "2026-11-24T15:33:00Z");
        assert_eq!(
            parse_time("2026-11-24T15:33:00Z")
                .map(format_time)
                .as_deref(),
            Some("2026-11-24T15:33:00Z")
        );
    }
}
