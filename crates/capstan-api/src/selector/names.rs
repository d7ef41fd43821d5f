//! Label key ("qualified name") and label value validity, worded as Kubernetes 1.33's
//! `k8s.io/apimachinery/pkg/util/validation` words it.
//!
//! Each check comes in two forms: `*_errors` returns every message separately (Kubernetes'
//! `ValidateLabels` turns each into its own field error), and `is_*` joins them with `"; "` as
//! the label selector parser does.

const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Is `key` a valid label key (an optional DNS subdomain prefix and `/`, then a name of at most
/// 63 characters)? The error is Kubernetes' messages joined with `"; "`.
pub fn is_qualified_name(key: &str) -> Result<(), String> {
    joined(qualified_name_errors(key))
}

/// Is `value` a valid label value (empty, or at most 63 characters shaped like a name)? The error
/// is Kubernetes' messages joined with `"; "`.
pub fn is_valid_label_value(value: &str) -> Result<(), String> {
    joined(label_value_errors(value))
}

/// Every reason `key` is not a qualified name (Kubernetes' `IsQualifiedName`); empty when valid.
pub fn qualified_name_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push(format!("prefix part {}", empty_error()));
            } else {
                errors.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|message| format!("prefix part {message}")),
                );
            }
            *name
        }
        _ => {
            // More than one '/': Kubernetes gives up on the parts and says what the whole
            // should look like.
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !is_name_shaped(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// Every reason `value` is not a label value (Kubernetes' `IsValidLabelValue`); empty when valid.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !is_name_shaped(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// Every reason `value` is not a lowercase RFC 1123 subdomain (Kubernetes'
/// `IsDNS1123Subdomain`, used for label key prefixes and most object names); empty when valid.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(is_dns1123_label_shaped) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

fn joined(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`: alphanumeric at both ends, `-_.` allowed inside.
fn is_name_shaped(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`: one dot-free part of a subdomain.
fn is_dns1123_label_shaped(s: &str) -> bool {
    let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            lower_alnum(first)
                && lower_alnum(last)
                && bytes.iter().all(|b| lower_alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

fn empty_error() -> &'static str {
    "must be non-empty"
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Kubernetes' `RegexError`, including its odd `'a',  or 'b', ` spacing, which users see.
fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{regex}')");
    }
    let mut out = format!("{message} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(regex);
    out.push_str("')");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME_PART_REGEX: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const PREFIX_REGEX: &str = "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const VALUE_REGEX: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn qualified_names_accept_what_kubernetes_accepts() {
        let long_prefix = format!("{}.com/a", "a".repeat(249));
        let valid = [
            "a",
            "A",
            "1",
            "app",
            "app.kubernetes.io/name",
            "my_key-1.x",
            "example.com/MyName",
            "0.1.2.domain/99",
            long_prefix.as_str(),
        ];
        for key in valid {
            assert_eq!(is_qualified_name(key), Ok(()), "{key}");
        }
        let name_63 = "a".repeat(63);
        assert_eq!(is_qualified_name(&name_63), Ok(()));
    }

    #[test]
    fn qualified_name_errors_are_worded_as_kubernetes() {
        let too_long = "a".repeat(64);
        let prefix_too_long = format!("{}/a", "a".repeat(254));
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("-a", vec![NAME_PART_REGEX.into()]),
            ("a_", vec![NAME_PART_REGEX.into()]),
            ("a b", vec![NAME_PART_REGEX.into()]),
            (
                "",
                vec!["name part must be non-empty".into(), NAME_PART_REGEX.into()],
            ),
            (
                too_long.as_str(),
                vec!["name part must be no more than 63 characters".into()],
            ),
            (
                "/a",
                vec!["prefix part must be non-empty".into()],
            ),
            ("Example.com/a", vec![PREFIX_REGEX.into()]),
            (
                "example.com/",
                vec!["name part must be non-empty".into(), NAME_PART_REGEX.into()],
            ),
            (
                prefix_too_long.as_str(),
                vec!["prefix part must be no more than 253 characters".into()],
            ),
            (
                "a/b/c",
                vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into()],
            ),
        ];
        for (key, want) in cases {
            assert_eq!(qualified_name_errors(key), want, "{key:?}");
        }
        assert_eq!(
            is_qualified_name(""),
            Err(format!("name part must be non-empty; {NAME_PART_REGEX}"))
        );
    }

    #[test]
    fn label_values_may_be_empty_but_not_oddly_shaped() {
        for value in ["", "a", "web", "my_value", "1.2.3", "A-b_C.d"] {
            assert_eq!(is_valid_label_value(value), Ok(()), "{value:?}");
        }
        let cases: Vec<(String, Vec<String>)> = vec![
            ("-a".into(), vec![VALUE_REGEX.into()]),
            ("a.".into(), vec![VALUE_REGEX.into()]),
            ("a b".into(), vec![VALUE_REGEX.into()]),
            ("a/b".into(), vec![VALUE_REGEX.into()]),
            (
                "a".repeat(64),
                vec!["must be no more than 63 characters".into()],
            ),
            (
                format!("{}-", "a".repeat(64)),
                vec![
                    "must be no more than 63 characters".into(),
                    VALUE_REGEX.into(),
                ],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(label_value_errors(&value), want, "{value:?}");
        }
    }

    #[test]
    fn subdomains_are_lowercase_dot_separated_labels() {
        for value in ["a", "example.com", "a-b.c-d", "0.1.2"] {
            assert!(dns1123_subdomain_errors(value).is_empty(), "{value}");
        }
        for value in ["", ".a", "a.", "a..b", "A.com", "-a.com", "a-.com", "a_b"] {
            assert_eq!(dns1123_subdomain_errors(value).len(), 1, "{value:?}");
        }
    }
}
