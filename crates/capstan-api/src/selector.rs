//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`exists, `>`, `<`) and field
//! selectors (`=`, `==`, `!=`), parsed from query strings and matched against objects exactly as
//! Kubernetes 1.33 parses and matches them (apimachinery `pkg/labels` and `pkg/fields`, and the
//! per-kind field label sets of the registry).
//!
//! Fidelity matters more than elegance here: `kubectl` and client libraries send these strings
//! verbatim, controllers rely on the exact matching rules (`notin` matches objects without the
//! label), and users read the error texts as they know them from Kubernetes. So the label parser
//! follows Kubernetes' lexer and recursive-descent parser step by step, including its quirks, and
//! every error renders the way Go's `field.Error` and `errors.Aggregate` render it.
//!
//! - [`label`]: [`LabelSelector`], from a query string or a `metav1.LabelSelector` object.
//! - [`field`]: [`FieldSelector`] and [`field_value`], the field labels each kind supports.
//! - [`names`]: label key and value validity ([`is_qualified_name`], [`is_valid_label_value`]),
//!   shared with `metadata.labels` validation.

pub mod field;
mod go_text;
pub mod label;
pub mod names;

pub use field::{FieldOperator, FieldSelector, FieldTerm, field_value};
pub use label::{LabelSelector, Operator, Requirement};
pub use names::{
    dns1123_subdomain_errors, is_qualified_name, is_valid_label_value, label_value_errors,
    qualified_name_errors,
};

/// Why a selector was refused. Every variant carries the message Kubernetes gives for the same
/// input, which the API server returns as a 400 BadRequest; the same input always fails, so a
/// retry never helps.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SelectorError {
    /// A `labelSelector` string does not follow the grammar, or one of its requirements is
    /// invalid (bad key, bad value, `>`/`<` without an integer).
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// A `metav1.LabelSelector` object (`matchLabels` / `matchExpressions`) is invalid: bad key
    /// or value, unknown operator, values missing for `In`/`NotIn` or present for
    /// `Exists`/`DoesNotExist`.
    #[error("{0}")]
    InvalidLabelSelectorObject(String),
    /// A `fieldSelector` string has a term without an operator, or a value with a bad escape.
    #[error("{0}")]
    InvalidFieldSelector(String),
    /// A field selector term names a field label the kind does not support; `message` is the
    /// wording of that kind's Kubernetes conversion function.
    #[error("{message}")]
    UnsupportedFieldLabel { label: String, message: String },
}
