//! Error messages worded as Kubernetes words them (`k8s.io/apimachinery/pkg/util/mergepatch`),
//! values included: clients and tests match on these strings, and Go prints a decoded JSON
//! value with `%v` (`map[k:v]`, `[a b]`, `<nil>`), not as JSON.

use serde_json::{Map, Value};

use super::PatchError;

pub(super) const BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST: &str =
    "invalid patch format of primitive list";
pub(super) const BAD_PATCH_FORMAT_FOR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
pub(super) const BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST: &str =
    "invalid patch format of setElementOrder list";
pub(super) const NO_LIST_OF_LISTS: &str = "lists of lists are not supported";
pub(super) const BAD_JSON_DOC: &str = "invalid JSON document";
/// A `$patch: merge` element in a list: Kubernetes reserves the word but never implemented it.
pub(super) const MERGE_DIRECTIVE_IN_LIST: &str =
    "merging lists cannot yet be specified in the patch";

/// The Go type names of `reflect.TypeOf` that Kubernetes prints in `ErrBadArgType`.
pub(super) const GO_MAP: &str = "map[string]interface {}";
pub(super) const GO_SLICE: &str = "[]interface {}";

pub(super) fn invalid(message: impl Into<String>) -> PatchError {
    PatchError::Invalid(message.into())
}

/// `mergepatch.ErrBadPatchType`: a `$patch` value that is neither `replace` nor `delete`.
pub(super) fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    invalid(format!(
        "unknown patch type: {} in map: {}",
        go_string_verb(directive),
        go_map(map)
    ))
}

/// `mergepatch.ErrNoMergeKey`: a merging-list element without its merge key.
pub(super) fn no_merge_key(map: &Map<String, Value>, merge_key: &str) -> PatchError {
    invalid(format!(
        "map: {} does not contain declared merge key: {merge_key}",
        go_map(map)
    ))
}

/// `mergepatch.ErrBadArgType`: a value of the wrong JSON type where a list or map was needed.
pub(super) fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    invalid(format!(
        "expected a {expected}, but received a {}",
        go_type_for_s(actual)
    ))
}

/// A list mixing element types, worded like `sliceElementType` (which prints every list).
pub(super) fn mixed_element_types(lists: &[&[Value]]) -> PatchError {
    let lists: Vec<String> = lists.iter().map(|l| go_list(l)).collect();
    invalid(format!(
        "list element types are not identical: [{}]",
        lists.join(" ")
    ))
}

/// `validatePatchWithSetOrderList`: the patch list is not in `$setElementOrder` order.
pub(super) fn order_mismatch(patch_list: &[Value], order: &[Value]) -> PatchError {
    invalid(format!(
        "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
        go_list(patch_list),
        go_list(order)
    ))
}

/// A value as Go's `%v` prints the `interface{}` that `encoding/json` decoded it into.
pub(super) fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            // The API server decodes integers as int64 and the rest as float64.
            Some(f) if !(n.is_i64() || n.is_u64()) => go_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => go_list(items),
        Value::Object(map) => go_map(map),
    }
}

fn go_list(items: &[Value]) -> String {
    let items: Vec<String> = items.iter().map(go_value).collect();
    format!("[{}]", items.join(" "))
}

/// Go prints maps with their keys sorted.
fn go_map(map: &Map<String, Value>) -> String {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let entries: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{k}:{}", go_value(v)))
        .collect();
    format!("map[{}]", entries.join(" "))
}

/// Go's `%v` of a float64: the shortest representation, in exponent form (`1e+06`) when the
/// exponent is below -4 or at least 6 (the rule of `strconv.FormatFloat(f, 'g', -1, 64)`).
fn go_float(f: f64) -> String {
    let scientific = format!("{f:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) {
        format!("{f}")
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// The name `reflect.TypeOf` gives a decoded JSON value, as `%s` prints it.
fn go_type_for_s(value: &Value) -> &'static str {
    match value {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => GO_SLICE,
        Value::Object(_) => GO_MAP,
    }
}

/// A value printed with `%s`: strings as they are, other values with Go's bad-verb marker.
fn go_string_verb(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".to_owned(),
        Value::Array(_) | Value::Object(_) => go_value(value),
        other => format!("%!s({}={})", go_type_for_s(other), go_value(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_print_like_go_percent_v() {
        let cases = [
            (json!(null), "<nil>"),
            (json!(true), "true"),
            (json!(80), "80"),
            (json!(1.5), "1.5"),
            (json!(1000000.0), "1e+06"),
            (json!(123456.0), "123456"),
            (json!(0.00001), "1e-05"),
            (json!("web"), "web"),
            (json!(["a", 1]), "[a 1]"),
            (json!({"name": "b", "$patch": "x"}), "map[$patch:x name:b]"),
        ];
        for (value, printed) in cases {
            assert_eq!(go_value(&value), printed, "{value}");
        }
    }

    #[test]
    fn bad_patch_type_names_the_directive_and_the_map() {
        let map = json!({"name": "web", "$patch": "merge"});
        let err = bad_patch_type(&map["$patch"], map.as_object().unwrap());
        assert_eq!(
            err.to_string(),
            "unknown patch type: merge in map: map[$patch:merge name:web]"
        );
        let err = bad_patch_type(&json!(1), map.as_object().unwrap());
        assert!(
            err.to_string()
                .starts_with("unknown patch type: %!s(int64=1) in map")
        );
    }
}
