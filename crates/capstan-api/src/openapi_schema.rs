//! The schemas of the served kinds as Kubernetes 1.33 publishes them in OpenAPI v3
//! (`components.schemas`): generated from the k8s-openapi types' JSON schemas (which carry
//! Kubernetes' names and descriptions), then given what kubectl reads beyond plain JSON schema:
//! - `x-kubernetes-group-version-kind` on each kind and its list, by which `kubectl explain` and
//!   `kubectl apply` find a kind's schema;
//! - `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` on the fields that
//!   strategic merge patch treats specially, taken from [`crate::strategic_merge`]'s tables so
//!   that the client computes its patches with the rules the server applies them with;
//! - IntOrString and Quantity as Kubernetes' `oneOf` of their JSON types.
//!
//! The result is pure data; the API server assembles its documents from it and caches them.

use std::collections::HashSet;

use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::resource::{RESOURCES, ResourceInfo};
use crate::strategic_merge::schema::{self as patch_schema, Strategy};
use crate::typed;

/// Where OpenAPI v3 documents keep their schemas; every `$ref` starts with it.
pub const REF_PREFIX: &str = "#/components/schemas/";

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// The schema name Kubernetes gives a kind: `io.k8s.api.apps.v1.Deployment`.
pub fn schema_name(r: &ResourceInfo) -> String {
    let group = match r.group {
        "" => "core",
        g => g
            .strip_suffix(".k8s.io")
            .unwrap_or(g)
            .split('.')
            .next()
            .unwrap_or(g),
    };
    format!("io.k8s.api.{group}.{}.{}", r.version, r.kind)
}

/// The schema name of a kind's list: `io.k8s.api.apps.v1.DeploymentList`.
pub fn list_schema_name(r: &ResourceInfo) -> String {
    format!("{}List", schema_name(r))
}

/// Every schema of every served kind and its list, keyed by schema name, with `$ref`s
/// pointing at [`REF_PREFIX`]. Generating it takes a few milliseconds: callers cache it.
pub fn components() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
    let kinds: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| typed::add_json_schema(r, &mut generator).is_some())
        .collect();
    let mut schemas: Map<String, Value> = generator.take_definitions(true);

    if let Some(Value::Object(int_or_string)) = schemas.get_mut(INT_OR_STRING) {
        int_or_string.insert("format".into(), json!("int-or-string"));
        int_or_string.insert(
            "oneOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if let Some(Value::Object(quantity)) = schemas.get_mut(QUANTITY) {
        // Kubernetes' v3 shape; the k8s-openapi marker only makes sense on CRD schemas.
        quantity.remove("x-kubernetes-int-or-string");
        quantity.insert(
            "oneOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
    }

    for schema in schemas.values_mut() {
        unrequire_defaulted_fields(schema);
    }

    let mut annotated = HashSet::new();
    for r in &kinds {
        let name = schema_name(r);
        let Some(Value::Object(kind_schema)) = schemas.get_mut(&name) else {
            continue;
        };
        // k8s-openapi requires `metadata` because its struct field is not an Option;
        // Kubernetes does not.
        remove_required(kind_schema, |field, _| field == "metadata");
        kind_schema.insert("x-kubernetes-group-version-kind".into(), gvk(r, r.kind));
        let list = list_schema(r, kind_schema);
        schemas.insert(list_schema_name(r), list);
        annotate_patch_fields(
            &mut schemas,
            &name,
            patch_schema::for_kind(r.kind),
            &mut annotated,
        );
    }
    schemas
}

/// k8s-openapi lists as required the fields that Kubernetes gives a default instead (its
/// structs hold them without an `Option`). Those that matter are the `name` of the
/// LocalObjectReference family, which Kubernetes' own description calls "allowed to be
/// empty"; kubectl would otherwise refuse manifests without them when validating on the client.
fn unrequire_defaulted_fields(schema: &mut Value) {
    if let Value::Object(schema) = schema {
        remove_required(schema, |_, property| {
            property["description"]
                .as_str()
                .is_some_and(|d| d.contains("is allowed to be empty"))
        });
    }
}

fn remove_required(schema: &mut Map<String, Value>, drop: impl Fn(&str, &Value) -> bool) {
    let Some(Value::Array(required)) = schema.get("required") else {
        return;
    };
    let properties = &schema["properties"];
    let kept: Vec<Value> = required
        .iter()
        .filter(|field| {
            let field = field.as_str().unwrap_or_default();
            !drop(field, &properties[field])
        })
        .cloned()
        .collect();
    if kept.is_empty() {
        schema.remove("required");
    } else {
        schema.insert("required".into(), Value::Array(kept));
    }
}

fn gvk(r: &ResourceInfo, kind: &str) -> Value {
    json!([{"group": r.group, "kind": kind, "version": r.version}])
}

/// `<Kind>List` as Kubernetes publishes it (k8s-openapi's generic `List` has no schema).
fn list_schema(r: &ResourceInfo, kind_schema: &Map<String, Value>) -> Value {
    let property = |name: &str| kind_schema["properties"].get(name).cloned();
    json!({
        "description": format!("{}List is a list of {}.", r.kind, r.kind),
        "properties": {
            "apiVersion": property("apiVersion"),
            "items": {
                "description": format!("Items is the list of {}.", r.kind),
                "items": {"$ref": format!("{REF_PREFIX}{}", schema_name(r))},
                "type": "array",
            },
            "kind": property("kind"),
            "metadata": {
                "allOf": [{"$ref": format!("{REF_PREFIX}{LIST_META}")}],
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": gvk(r, &format!("{}List", r.kind)),
    })
}

/// Marks the fields of component `name` that `fields` (the strategic merge rules of the type)
/// tags, and follows the tagged types inside it. Components are shared between kinds (a
/// PodSpec sits in a Pod, a Deployment, a CronJob), so each (component, rules) pair is visited
/// once.
fn annotate_patch_fields(
    schemas: &mut Map<String, Value>,
    name: &str,
    fields: &'static patch_schema::Schema,
    visited: &mut HashSet<(String, *const patch_schema::Schema)>,
) {
    if !visited.insert((name.to_string(), std::ptr::from_ref(fields))) {
        return;
    }
    for field in fields.fields {
        let Some(Value::Object(property)) = schemas
            .get_mut(name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(field.name))
        else {
            continue;
        };
        let strategy = match (field.strategy, field.retain_keys) {
            (Strategy::Merge { .. }, true) => Some("merge,retainKeys"),
            (Strategy::Merge { .. }, false) => Some("merge"),
            (Strategy::Replace, _) => Some("replace"),
            (Strategy::Default, true) => Some("retainKeys"),
            (Strategy::Default, false) => None,
        };
        if let Strategy::Merge { merge_key } = field.strategy
            && !merge_key.is_empty()
        {
            property.insert("x-kubernetes-patch-merge-key".into(), json!(merge_key));
        }
        if let Some(strategy) = strategy {
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        if let Some(inner) = field.schema
            && let Some(target) = referenced(property)
        {
            annotate_patch_fields(schemas, &target, inner, visited);
        }
    }
}

/// The component a property holds, or holds a list of: `$ref`, `allOf: [{$ref}]`, or either as
/// `items`.
fn referenced(property: &Map<String, Value>) -> Option<String> {
    let direct = |schema: &Map<String, Value>| {
        schema
            .get("$ref")
            .or_else(|| schema.get("allOf")?.get(0)?.get("$ref"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
            .map(str::to_string)
    };
    direct(property).or_else(|| direct(property.get("items")?.as_object()?))
}
