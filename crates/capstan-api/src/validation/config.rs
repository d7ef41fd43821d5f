//! ConfigMaps and Secrets (Kubernetes' `ValidateConfigMap`, `ValidateSecret` and their
//! update rules). Keys become file names in volumes, so they are checked as config keys.

use super::field_error::{FieldError, FieldPath};
use super::names::is_config_map_key;
use super::{immutable, map_field, semantic_eq, str_or_empty};
use serde_json::{Map, Value};

/// The most data one ConfigMap or Secret may hold, in bytes: it has to fit in one store value.
const MAX_DATA_SIZE: usize = 1024 * 1024;

fn key_errors(data: Option<&Map<String, Value>>, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in data.into_iter().flatten().map(|(k, _)| k) {
        for msg in is_config_map_key(key) {
            errors.push(FieldError::invalid(path.key(key), key.as_str(), msg));
        }
    }
    errors
}

/// Bytes after base64 decoding, without decoding.
fn decoded_len(encoded: &str) -> usize {
    let trimmed = encoded.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

pub(super) fn validate_config_map(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let data = map_field(object, "data");
    let binary = map_field(object, "binaryData");
    let data_path = FieldPath::new("data");
    let mut errors = key_errors(data, &data_path);
    for key in data.into_iter().flatten().map(|(k, _)| k) {
        if binary.is_some_and(|b| b.contains_key(key)) {
            errors.push(FieldError::invalid(
                data_path.key(key),
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
    }
    errors.extend(key_errors(binary, &FieldPath::new("binaryData")));
    let size: usize = data
        .into_iter()
        .flatten()
        .map(|(_, v)| v.as_str().map_or(0, str::len))
        .chain(
            binary
                .into_iter()
                .flatten()
                .map(|(_, v)| v.as_str().map_or(0, decoded_len)),
        )
        .sum();
    if size > MAX_DATA_SIZE {
        errors.push(FieldError::too_long(FieldPath::default(), MAX_DATA_SIZE));
    }
    if let Some(old) = old {
        errors.extend(immutable_contents(object, old, &["data", "binaryData"]));
    }
    errors
}

/// Once `immutable: true` is set, neither the flag nor the contents may change.
fn immutable_contents(new: &Value, old: &Value, contents: &[&str]) -> Vec<FieldError> {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return Vec::new();
    }
    let mut errors = Vec::new();
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errors.push(FieldError::forbidden(
            FieldPath::new("immutable"),
            "field is immutable when `immutable` is set",
        ));
    }
    for key in contents {
        let (a, b) = (new.get(*key), old.get(*key));
        if !semantic_eq(a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null)) {
            errors.push(FieldError::forbidden(
                FieldPath::new(key),
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errors
}

pub(super) fn validate_secret(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let data_path = FieldPath::new("data");
    let data = map_field(object, "data");
    let mut errors = key_errors(data, &data_path);
    let size: usize = data
        .into_iter()
        .flatten()
        .map(|(_, v)| v.as_str().map_or(0, decoded_len))
        .sum();
    if size > MAX_DATA_SIZE {
        errors.push(FieldError::too_long(&data_path, MAX_DATA_SIZE));
    }
    let has = |key: &str| data.is_some_and(|d| d.contains_key(key));
    let non_empty = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    match str_or_empty(object, "type") {
        "kubernetes.io/service-account-token" => {
            let account = object
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if account.is_empty() {
                errors.push(FieldError::required(
                    FieldPath::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => {
            errors.extend(require_json_key(data, ".dockercfg", &data_path))
        }
        "kubernetes.io/dockerconfigjson" => {
            errors.extend(require_json_key(data, ".dockerconfigjson", &data_path));
        }
        // Either may be empty, but one of the two must be there.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errors.push(FieldError::required(data_path.key("username"), ""));
            errors.push(FieldError::required(data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if !non_empty("ssh-privatekey") => {
            errors.push(FieldError::required(data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errors.push(FieldError::required(data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        errors.extend(immutable(object, old, "type", &FieldPath::default()));
        errors.extend(immutable_contents(object, old, &["data"]));
    }
    errors
}

/// Docker config secrets must carry their key with well-formed JSON in it.
fn require_json_key(
    data: Option<&Map<String, Value>>,
    key: &str,
    path: &FieldPath,
) -> Vec<FieldError> {
    let Some(encoded) = data.and_then(|d| d.get(key)).and_then(Value::as_str) else {
        return vec![FieldError::required(path.key(key), "")];
    };
    let decoded = decode_base64(encoded).unwrap_or_default();
    match serde_json::from_slice::<Map<String, Value>>(&decoded) {
        Ok(_) => Vec::new(),
        Err(e) => vec![FieldError::invalid(
            path.key(key),
            "<secret contents redacted>",
            e.to_string(),
        )],
    }
}

/// Standard base64, enough to look inside a docker config secret.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len().saturating_sub(1);
        for i in 0..produced {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::messages;
    use serde_json::json;

    #[test]
    fn config_map_keys_must_be_valid_config_keys() {
        let cm = json!({"data": {"good.key": "v", "bad/key": "v"}});
        assert_eq!(
            messages(validate_config_map(&cm, None)),
            vec![
                "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
    }

    #[test]
    fn immutable_config_maps_keep_their_data() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(
            messages(validate_config_map(&new, Some(&old))),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    #[test]
    fn secret_type_is_immutable() {
        let old = json!({"type": "Opaque"});
        let new = json!({"type": "kubernetes.io/basic-auth", "data": {"username": "YQ=="}});
        assert_eq!(
            messages(validate_secret(&new, Some(&old))),
            vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]
        );
    }

    #[test]
    fn typed_secrets_need_their_keys() {
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(
            messages(validate_secret(&tls, None)),
            vec!["data[tls.key]: Required value"]
        );
        let docker = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}});
        assert!(validate_secret(&docker, None).is_empty());
    }
}
