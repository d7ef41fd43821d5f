//! Field errors worded exactly as Kubernetes' `field.Error`, so that `kubectl` users read the
//! messages they already know.

use serde_json::Value;
use std::fmt;

/// The kind of a field error; its `Display` is Kubernetes' wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    /// `Required value`
    Required,
    /// `Invalid value`
    Invalid,
    /// `Unsupported value`; carries the supported values.
    NotSupported(Vec<String>),
    /// `Duplicate value`
    Duplicate,
    /// `Not found`: a reference to something that does not exist.
    NotFound,
    /// `Forbidden`
    Forbidden,
    /// `Too long`; carries the maximum length in bytes.
    TooLong(usize),
    /// `Too many`; carries the maximum number of items.
    TooMany(usize),
}

impl ErrorType {
    /// The `reason` of a `StatusCause`.
    pub fn cause_reason(&self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported(_) => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong(_) => "FieldValueTooLong",
            ErrorType::TooMany(_) => "FieldValueTooMany",
        }
    }
}

/// One invalid field: what is wrong, where, with which value.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub error_type: ErrorType,
    /// The field path as Kubernetes prints it: `spec.containers[0].image`.
    pub field: String,
    /// The offending value, printed for `Invalid`, `NotSupported` and `Duplicate`.
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            error_type: ErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            error_type: ErrorType::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        FieldError {
            error_type: ErrorType::NotSupported(supported.iter().map(|s| s.to_string()).collect()),
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            error_type: ErrorType::Duplicate,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            error_type: ErrorType::NotFound,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            error_type: ErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            error_type: ErrorType::TooLong(max),
            field: field.into(),
            value: None,
            detail: String::new(),
        }
    }

    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        FieldError {
            error_type: ErrorType::TooMany(max),
            field: field.into(),
            value: Some(Value::from(actual)),
            detail: String::new(),
        }
    }

    /// The message without the field path, as a `StatusCause.message` carries it.
    pub fn body(&self) -> String {
        let value = self.value.as_ref().map(render_value);
        match &self.error_type {
            ErrorType::Required | ErrorType::Forbidden => {
                let head = if self.error_type == ErrorType::Required {
                    "Required value"
                } else {
                    "Forbidden"
                };
                if self.detail.is_empty() {
                    head.to_string()
                } else {
                    format!("{head}: {}", self.detail)
                }
            }
            ErrorType::Invalid => {
                let mut s = format!("Invalid value: {}", value.unwrap_or_default());
                if !self.detail.is_empty() {
                    s.push_str(": ");
                    s.push_str(&self.detail);
                }
                s
            }
            ErrorType::NotSupported(supported) => {
                let mut s = format!("Unsupported value: {}", value.unwrap_or_default());
                if !supported.is_empty() {
                    let quoted: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
                    s.push_str(": supported values: ");
                    s.push_str(&quoted.join(", "));
                }
                s
            }
            ErrorType::Duplicate => format!("Duplicate value: {}", value.unwrap_or_default()),
            ErrorType::NotFound => format!("Not found: {}", value.unwrap_or_default()),
            ErrorType::TooLong(max) => format!("Too long: may not be more than {max} bytes"),
            ErrorType::TooMany(max) => match value {
                Some(actual) => format!("Too many: {actual}: must have at most {max} items"),
                None => format!("Too many: must have at most {max} items"),
            },
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

/// Values print as Go's `%#v` prints the Go value Kubernetes validated: strings quoted, maps
/// of strings (labels, selectors) as `map[string]string{"k":"v"}` with sorted keys, the rest as
/// JSON.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(map) if !map.is_empty() && map.values().all(Value::is_string) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// The `… is invalid: …` message of a 422, one error bare, several in brackets.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(|e| e.to_string()).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

/// Builds field paths as Kubernetes prints them: `spec.containers[0].image`, `metadata.labels[app]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn new(root: &str) -> Self {
        FieldPath(root.to_string())
    }

    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&FieldPath> for String {
    fn from(p: &FieldPath) -> String {
        p.0.clone()
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_kubernetes_prints_them() {
        let cases = [
            (
                FieldError::required("spec.containers[0].image", ""),
                "spec.containers[0].image: Required value",
            ),
            (
                FieldError::invalid("metadata.name", "Foo", "must be lowercase"),
                "metadata.name: Invalid value: \"Foo\": must be lowercase",
            ),
            (
                FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::not_supported(
                    "spec.restartPolicy",
                    "Sometimes",
                    &["Always", "Never", "OnFailure"],
                ),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
            ),
            (
                FieldError::duplicate("spec.containers[1].name", "web"),
                "spec.containers[1].name: Duplicate value: \"web\"",
            ),
            (
                FieldError::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`",
                ),
                "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`",
            ),
            (
                FieldError::not_found("spec.containers[0].volumeMounts[0].name", "data"),
                "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            ),
            (
                FieldError::invalid(
                    "spec.template.metadata.labels",
                    serde_json::json!({"b": "2", "a": "1"}),
                    "`selector` does not match template `labels`",
                ),
                "spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"1\", \"b\":\"2\"}: `selector` does not match template `labels`",
            ),
            (
                FieldError::too_long("metadata.labels", 63),
                "metadata.labels: Too long: may not be more than 63 bytes",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }

    #[test]
    fn several_errors_aggregate_in_brackets() {
        let errors = vec![
            FieldError::required("spec.selector", ""),
            FieldError::required("spec.template.spec.containers", ""),
        ];
        assert_eq!(
            aggregate_message(&errors),
            "[spec.selector: Required value, spec.template.spec.containers: Required value]"
        );
        assert_eq!(
            aggregate_message(&errors[..1]),
            "spec.selector: Required value"
        );
    }

    #[test]
    fn paths_build_like_kubernetes_paths() {
        let p = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("image");
        assert_eq!(p.as_str(), "spec.containers[0].image");
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("app")
                .as_str(),
            "metadata.labels[app]"
        );
    }
}
