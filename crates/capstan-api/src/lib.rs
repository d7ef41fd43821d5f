//! The Kubernetes resource model as capstan serves it: which resources exist and how they are
//! named (`resource`), how objects are checked (`typed`, `validation`), completed (`defaults`,
//! and `admission` for what needs other objects or server flags),
//! printed (`table`), selected (`selector`) and patched (`strategic_merge`), and how protobuf
//! bodies map to JSON (`protobuf`).
//!
//! Pure: no I/O, no clocks except where a caller passes the time in. Objects are handled as
//! `serde_json::Value` once decoded, so that every kind goes through the same code paths; the
//! typed k8s-openapi structs are used to check a body's shape and drop unknown fields.

pub mod admission;
pub mod cidr;
pub mod defaults;
pub mod managed_fields;
pub mod object;
#[cfg(feature = "schemars")]
pub mod openapi_schema;
pub mod protobuf;
pub mod quantity;
pub mod resource;
pub mod selector;
pub mod strategic_merge;
pub mod table;
pub mod typed;
pub mod validation;

pub use resource::{RESOURCES, ResourceInfo, Subresource};
pub use validation::field_error::{FieldError, FieldPath};
