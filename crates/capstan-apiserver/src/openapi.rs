//! The OpenAPI documents: v3 per group/version (`/openapi/v3/apis/apps/v1`, linked from
//! `/openapi/v3` with a content hash) and v2 in one piece (`/openapi/v2`, as JSON or as the
//! protobuf kubectl asks for, see [`protobuf`]).
//!
//! Paths list every operation kubectl inspects: each path of each resource, its
//! `x-kubernetes-group-version-kind`, and the `fieldValidation`, `dryRun` and `fieldManager`
//! parameters of writes (kubectl sends `fieldValidation=Strict` only when it finds them). The
//! schemas are the full ones of [`capstan_api::openapi_schema`], with descriptions for
//! `kubectl explain` and the patch extensions from which `kubectl apply` computes strategic
//! merge patches. Each v3 document carries the schemas its kinds reach.
//!
//! kubectl fetches documents on every `apply`, so they are built once, on first use, and
//! served as bytes.

mod protobuf;

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use bytes::Bytes;
use capstan_api::openapi_schema::{self, REF_PREFIX, list_schema_name};
use capstan_api::resource::{self, ResourceInfo};
use serde_json::{Map, Value, json};

pub use capstan_api::openapi_schema::schema_name;

/// A document ready to serve: its JSON bytes and their hash (the ETag, and the `hash` of its
/// URL in `/openapi/v3`).
#[derive(Debug)]
pub struct Published {
    pub body: Bytes,
    pub hash: String,
}

impl Published {
    fn new(doc: &Value) -> Published {
        let body = serde_json::to_vec(doc).expect("JSON values serialize");
        Published {
            hash: document_hash(&body),
            body: body.into(),
        }
    }
}

struct Documents {
    /// By path below `/openapi/v3/`: `api/v1`, `apis/apps/v1`.
    v3: HashMap<String, Published>,
    root: Published,
    v2: Published,
    v2_protobuf: Bytes,
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(|| {
    let components = openapi_schema::components();
    let mut v3 = HashMap::new();
    let mut root_paths = Map::new();
    let mut v2_paths = Map::new();
    for g in resource::groups() {
        for v in &g.versions {
            let Some(doc) = build_document(g.group, v, &components) else {
                continue;
            };
            if let Some(paths) = doc["paths"].as_object() {
                v2_paths.extend(paths.iter().map(|(p, ops)| (p.clone(), v2_path(ops))));
            }
            let path = group_version_path(g.group, v);
            let published = Published::new(&doc);
            root_paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", published.hash)}),
            );
            v3.insert(path, published);
        }
    }
    let definitions: Map<String, Value> = components
        .iter()
        .map(|(name, schema)| (name.clone(), v2_schema(name, schema)))
        .collect();
    let v2 = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": v2_paths,
        "definitions": definitions,
    });
    Documents {
        v3,
        root: Published::new(&json!({"paths": root_paths})),
        v2_protobuf: protobuf::encode(&v2).into(),
        v2: Published::new(&v2),
    }
});

/// `/openapi/v3`: where each group/version's document lives, with a content hash in the URL
/// so that clients can cache documents forever.
pub fn root() -> &'static Published {
    &DOCUMENTS.root
}

/// The v3 document of one group/version, if served.
pub fn document(group: &str, version: &str) -> Option<&'static Published> {
    DOCUMENTS.v3.get(&group_version_path(group, version))
}

/// `/openapi/v2` as JSON: every path and every schema in one swagger 2.0 document.
pub fn v2() -> &'static Published {
    &DOCUMENTS.v2
}

/// `/openapi/v2` as gnostic protobuf: the same document.
pub fn v2_protobuf() -> Bytes {
    DOCUMENTS.v2_protobuf.clone()
}

/// The media type clients ask for the protobuf v2 document.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The Content-Type of the protobuf v2 document: [`V2_PROTOBUF`] is no valid media type (`@`),
/// and client-go refuses a Content-Type it cannot parse.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// How `/openapi/v2` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Encoding {
    Json,
    Protobuf,
}

/// The first encoding of `accept` that is served (JSON when it names none); `None` when it
/// names only others.
pub fn v2_encoding(accept: &str) -> Option<V2Encoding> {
    if accept.trim().is_empty() {
        return Some(V2Encoding::Json);
    }
    accept.split(',').find_map(|media| {
        let media = media.split(';').next().unwrap_or_default().trim();
        match media {
            V2_PROTOBUF | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" => {
                Some(V2Encoding::Protobuf)
            }
            "application/json" | "*/*" | "application/*" => Some(V2Encoding::Json),
            _ => None,
        }
    })
}

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable hash of a document (FNV-1a, 64 bits, as hex): any change to the document changes
/// its URL.
pub fn document_hash(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016X}")
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query_param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (default), Strict.",
        ),
    ]
}

fn operation(
    r: &ResourceInfo,
    action: &str,
    operation_id: &str,
    params: Vec<Value>,
    body: bool,
) -> Value {
    let reference = schema_ref(&schema_name(r));
    let response = if action == "list" {
        schema_ref(&list_schema_name(r))
    } else {
        reference.clone()
    };
    let mut op = json!({
        "operationId": operation_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": response}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    });
    if body {
        let media = if action == "patch" {
            [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ]
            .as_slice()
        } else {
            ["application/json"].as_slice()
        };
        let content: Map<String, Value> = media
            .iter()
            .map(|m| (m.to_string(), json!({"schema": if action == "patch" { json!({"type": "object"}) } else { reference.clone() }})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

/// The v3 document of one group/version: its paths, and every schema that its kinds reach.
fn build_document(group: &str, version: &str, components: &Map<String, Value>) -> Option<Value> {
    let resources: Vec<&ResourceInfo> = resource::resources_in(group, version).collect();
    if resources.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut roots = Vec::new();
    let prefix = format!("/{}", group_version_path(group, version));
    for r in resources {
        let scope = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let collection = format!("{prefix}{scope}/{}", r.plural);
        let item = format!("{collection}/{{name}}");
        let id = format!("{}{}", r.plural, r.kind);
        let mut collection_ops = json!({
            "get": operation(r, "list", &format!("list{id}"), vec![], false),
        });
        if r.verbs.contains(&"create") {
            collection_ops["post"] =
                operation(r, "post", &format!("create{id}"), write_params(), true);
        }
        paths.insert(collection, collection_ops);
        if r.verbs.contains(&"get") {
            paths.insert(item.clone(), json!({
                "get": operation(r, "get", &format!("read{id}"), vec![], false),
                "put": operation(r, "put", &format!("replace{id}"), write_params(), true),
                "patch": operation(r, "patch", &format!("patch{id}"), [write_params(), vec![query_param("force", "Force is going to \"force\" Apply requests.")]].concat(), true),
                "delete": operation(r, "delete", &format!("delete{id}"), vec![query_param("dryRun", "When present, indicates that modifications should not be persisted.")], false),
            }));
        }
        for sub in r.subresources {
            if sub.verbs().contains(&"patch") {
                paths.insert(format!("{item}/{}", sub.path()), json!({
                    "get": operation(r, "get", &format!("read{id}{}", sub.path()), vec![], false),
                    "put": operation(r, "put", &format!("replace{id}{}", sub.path()), write_params(), true),
                    "patch": operation(r, "patch", &format!("patch{id}{}", sub.path()), write_params(), true),
                }));
            }
        }
        roots.push(schema_name(r));
        roots.push(list_schema_name(r));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": reachable(components, roots)},
    }))
}

/// The schemas named by `roots` and every schema they reference, in name order.
fn reachable(components: &Map<String, Value>, roots: Vec<String>) -> Map<String, Value> {
    let mut found = BTreeSet::new();
    let mut pending = roots;
    while let Some(name) = pending.pop() {
        if let Some(schema) = components.get(&name)
            && found.insert(name)
        {
            collect_refs(schema, &mut pending);
        }
    }
    found
        .into_iter()
        .map(|name| {
            let schema = components[&name].clone();
            (name, schema)
        })
        .collect()
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(REF_PREFIX) {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

const V2_REF_PREFIX: &str = "#/definitions/";

/// A v3 component schema in Kubernetes' v2 shape: `$ref`s into `definitions`, a `$ref` with
/// siblings instead of `allOf: [{$ref}]`, and IntOrString and Quantity as strings.
fn v2_schema(name: &str, schema: &Value) -> Value {
    let mut schema = v2_refs(schema);
    if let Value::Object(map) = &mut schema {
        match name {
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
                map.remove("oneOf");
                map.remove("x-kubernetes-int-or-string");
                map.insert("type".into(), json!("string"));
                map.insert("format".into(), json!("int-or-string"));
            }
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
                map.remove("oneOf");
                map.insert("type".into(), json!("string"));
            }
            _ => {}
        }
    }
    schema
}

fn v2_refs(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(r)) => {
                        let name = r.strip_prefix(REF_PREFIX).unwrap_or(r);
                        out.insert(key.clone(), json!(format!("{V2_REF_PREFIX}{name}")));
                    }
                    ("allOf", Value::Array(items))
                        if items.len() == 1 && items[0].get("$ref").is_some() =>
                    {
                        out.extend(v2_refs(&items[0]).as_object().cloned().unwrap_or_default());
                    }
                    _ => {
                        out.insert(key.clone(), v2_refs(child));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(v2_refs).collect()),
        other => other.clone(),
    }
}

/// The operations of one path in swagger 2.0's shape: query parameters typed inline, the body
/// as a `body` parameter, response schemas directly under the status code.
fn v2_path(ops: &Value) -> Value {
    let mut out = Map::new();
    for (method, op) in ops.as_object().into_iter().flatten() {
        let mut parameters: Vec<Value> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                json!({"name": p["name"], "in": p["in"], "description": p["description"], "type": "string", "uniqueItems": true})
            })
            .collect();
        let mut consumes = Vec::new();
        if let Some(content) = op["requestBody"]["content"].as_object() {
            consumes = content.keys().cloned().collect();
            let schema = content.values().next().map(|c| v2_refs(&c["schema"]));
            parameters
                .push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
        }
        let mut v2_op = json!({
            "operationId": op["operationId"],
            "parameters": parameters,
            "produces": ["application/json"],
            "responses": {"200": {"description": "OK", "schema": v2_refs(&op["responses"]["200"]["content"]["application/json"]["schema"])}},
            "x-kubernetes-action": op["x-kubernetes-action"],
            "x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"],
        });
        if !consumes.is_empty() {
            v2_op["consumes"] = json!(consumes);
        }
        out.insert(method.clone(), v2_op);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(group: &str, version: &str) -> Value {
        serde_json::from_slice(&document(group, version).unwrap().body).unwrap()
    }

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        let schema = &doc["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema {name}");
        schema
    }

    fn unresolved_refs(value: &Value, prefix: &str, names: &Map<String, Value>) -> Vec<String> {
        let mut refs = Vec::new();
        collect_all_refs(value, &mut refs);
        refs.into_iter()
            .filter(|r| {
                !r.strip_prefix(prefix)
                    .is_some_and(|name| names.contains_key(name))
            })
            .collect()
    }

    fn collect_all_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match child {
                        Value::String(r) if key == "$ref" => out.push(r.clone()),
                        _ => collect_all_refs(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect_all_refs(item, out)),
            _ => {}
        }
    }

    #[test]
    fn patch_operations_list_field_validation() {
        let doc = v3("apps", "v1");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }

    #[test]
    fn the_root_points_at_every_group_version_with_a_hash() {
        let root: Value = serde_json::from_slice(&root().body).unwrap();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert_eq!(
            url,
            format!(
                "/openapi/v3/apis/apps/v1?hash={}",
                document("apps", "v1").unwrap().hash
            )
        );
        assert!(root["paths"]["api/v1"].is_object());
    }

    #[test]
    fn schema_names_follow_kubernetes() {
        assert_eq!(
            schema_name(resource::find("apps", "v1", "deployments").unwrap()),
            "io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            schema_name(resource::find("", "v1", "pods").unwrap()),
            "io.k8s.api.core.v1.Pod"
        );
        assert_eq!(
            schema_name(resource::find("networking.k8s.io", "v1", "ingresses").unwrap()),
            "io.k8s.api.networking.v1.Ingress"
        );
        assert_eq!(
            schema_name(resource::find("rbac.authorization.k8s.io", "v1", "roles").unwrap()),
            "io.k8s.api.rbac.v1.Role"
        );
    }

    #[test]
    fn every_served_kind_and_its_list_has_a_schema_with_its_group_version_kind() {
        for r in resource::RESOURCES {
            let doc = v3(r.group, r.version);
            for (name, kind) in [
                (schema_name(r), r.kind.to_string()),
                (list_schema_name(r), format!("{}List", r.kind)),
            ] {
                assert_eq!(
                    schema(&doc, &name)["x-kubernetes-group-version-kind"],
                    json!([{"group": r.group, "kind": kind, "version": r.version}]),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn every_ref_of_every_document_resolves_inside_that_document() {
        for g in resource::groups() {
            for v in &g.versions {
                let doc = v3(g.group, v);
                let schemas = doc["components"]["schemas"].as_object().unwrap();
                assert_eq!(
                    unresolved_refs(&doc, REF_PREFIX, schemas),
                    Vec::<String>::new(),
                    "{}/{v}",
                    g.group
                );
            }
        }
        let v2: Value = serde_json::from_slice(&v2().body).unwrap();
        let definitions = v2["definitions"].as_object().unwrap();
        assert_eq!(
            unresolved_refs(&v2, V2_REF_PREFIX, definitions),
            Vec::<String>::new()
        );
    }

    #[test]
    fn fields_carry_descriptions_for_kubectl_explain() {
        let doc = v3("apps", "v1");
        let rolling = schema(&doc, "io.k8s.api.apps.v1.RollingUpdateDeployment");
        let max_surge = &rolling["properties"]["maxSurge"];
        assert!(
            max_surge["description"]
                .as_str()
                .unwrap()
                .starts_with("The maximum number of pods that can be scheduled above")
        );
        assert_eq!(
            max_surge["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"
        );
    }

    #[test]
    fn pod_spec_containers_merge_by_name_and_their_lists_by_their_keys() {
        let doc = v3("", "v1");
        let pod_spec = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"];
        assert_eq!(
            pod_spec["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            pod_spec["containers"]["x-kubernetes-patch-strategy"],
            "merge"
        );
        assert_eq!(
            pod_spec["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let container = &schema(&doc, "io.k8s.api.core.v1.Container")["properties"];
        for (field, key) in [
            ("ports", "containerPort"),
            ("env", "name"),
            ("volumeMounts", "mountPath"),
        ] {
            assert_eq!(
                container[field]["x-kubernetes-patch-merge-key"], key,
                "{field}"
            );
            assert_eq!(container[field]["x-kubernetes-patch-strategy"], "merge");
        }
        assert!(
            container["args"]
                .get("x-kubernetes-patch-strategy")
                .is_none()
        );
    }

    #[test]
    fn service_ports_merge_by_port_and_metadata_lists_as_kubernetes_tags_them() {
        let doc = v3("", "v1");
        let service_spec = &schema(&doc, "io.k8s.api.core.v1.ServiceSpec")["properties"];
        assert_eq!(
            service_spec["ports"]["x-kubernetes-patch-merge-key"],
            "port"
        );
        assert_eq!(
            service_spec["ports"]["x-kubernetes-patch-strategy"],
            "merge"
        );
        let meta = &schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")["properties"];
        assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        assert!(
            meta["finalizers"]
                .get("x-kubernetes-patch-merge-key")
                .is_none()
        );
        assert_eq!(
            meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
            "uid"
        );
    }

    #[test]
    fn deployment_strategy_retains_keys_and_status_conditions_merge_by_type() {
        let doc = v3("apps", "v1");
        let spec = &schema(&doc, "io.k8s.api.apps.v1.DeploymentSpec")["properties"];
        assert_eq!(
            spec["strategy"]["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
        let status = &schema(&doc, "io.k8s.api.apps.v1.DeploymentStatus")["properties"];
        assert_eq!(status["conditions"]["x-kubernetes-patch-merge-key"], "type");
        // The pod template inside a Deployment reaches the same PodSpec rules.
        let pod_spec = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"];
        assert_eq!(
            pod_spec["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
    }

    #[test]
    fn fields_kubernetes_defaults_are_not_required() {
        let doc = v3("apps", "v1");
        assert!(
            schema(&doc, "io.k8s.api.apps.v1.Deployment")
                .get("required")
                .is_none()
        );
        let selector = schema(&doc, "io.k8s.api.core.v1.ConfigMapKeySelector");
        assert_eq!(selector["required"], json!(["key"]));
        let reference = schema(&doc, "io.k8s.api.core.v1.LocalObjectReference");
        assert!(reference.get("required").is_none());
        let container = schema(&doc, "io.k8s.api.core.v1.Container");
        assert_eq!(container["required"], json!(["name"]));
    }

    #[test]
    fn int_or_string_and_quantity_take_kubernetes_shapes_in_v3_and_v2() {
        let doc = v3("apps", "v1");
        let int_or_string = schema(&doc, "io.k8s.apimachinery.pkg.util.intstr.IntOrString");
        assert_eq!(int_or_string["format"], "int-or-string");
        assert_eq!(
            int_or_string["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        let quantity = schema(&doc, "io.k8s.apimachinery.pkg.api.resource.Quantity");
        assert_eq!(
            quantity["oneOf"],
            json!([{"type": "string"}, {"type": "number"}])
        );

        let v2: Value = serde_json::from_slice(&v2().body).unwrap();
        let definitions = &v2["definitions"];
        assert_eq!(
            definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
            "string"
        );
        assert_eq!(
            definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
    }

    #[test]
    fn v2_is_swagger_with_refs_beside_their_descriptions() {
        let v2: Value = serde_json::from_slice(&v2().body).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        let deployment = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        let spec = &deployment["properties"]["spec"];
        assert_eq!(
            spec["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(spec["description"].is_string());
        let patch =
            &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
    }

    #[test]
    fn v2_is_served_in_the_first_encoding_the_client_accepts() {
        assert_eq!(v2_encoding("application/json"), Some(V2Encoding::Json));
        assert_eq!(v2_encoding(""), Some(V2Encoding::Json));
        assert_eq!(v2_encoding("text/html, */*;q=0.8"), Some(V2Encoding::Json));
        assert_eq!(v2_encoding(V2_PROTOBUF), Some(V2Encoding::Protobuf));
        assert_eq!(
            v2_encoding(&format!("{V2_PROTOBUF}, application/json")),
            Some(V2Encoding::Protobuf)
        );
        assert_eq!(v2_encoding("application/yaml"), None);
    }

    /// The length-delimited fields numbered `field` of a protobuf message.
    fn fields(message: &[u8], field: u64) -> Vec<&[u8]> {
        fn varint(bytes: &[u8], at: &mut usize) -> u64 {
            let mut value = 0;
            for shift in (0..64).step_by(7) {
                let byte = bytes[*at];
                *at += 1;
                value |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    break;
                }
            }
            value
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at < message.len() {
            let key = varint(message, &mut at);
            match key & 7 {
                0 => {
                    varint(message, &mut at);
                }
                1 => at += 8,
                2 => {
                    let len = varint(message, &mut at) as usize;
                    if key >> 3 == field {
                        out.push(&message[at..at + len]);
                    }
                    at += len;
                }
                other => panic!("wire type {other}"),
            }
        }
        out
    }

    fn named<'a>(entries: Vec<&'a [u8]>, name: &str) -> &'a [u8] {
        entries
            .into_iter()
            .find(|entry| fields(entry, 1) == [name.as_bytes()])
            .map(|entry| fields(entry, 2)[0])
            .unwrap_or_else(|| panic!("no entry {name}"))
    }

    #[test]
    fn the_protobuf_v2_document_holds_each_kind_with_its_group_version_kind() {
        let doc = v2_protobuf();
        assert_eq!(fields(&doc, 1), [b"2.0".as_slice()]);
        let definitions = fields(&doc, 9)[0];
        let deployment = named(fields(definitions, 1), "io.k8s.api.apps.v1.Deployment");
        let extension = named(fields(deployment, 31), "x-kubernetes-group-version-kind");
        let yaml: Value = serde_json::from_slice(fields(extension, 2)[0]).unwrap();
        assert_eq!(
            yaml,
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        // Properties keep their `$ref`: Schema.properties (25) → NamedSchema → Schema._ref (1).
        let properties = fields(deployment, 25)[0];
        let spec = named(fields(properties, 1), "spec");
        assert_eq!(
            fields(spec, 1),
            [b"#/definitions/io.k8s.api.apps.v1.DeploymentSpec".as_slice()]
        );
        let paths = fields(&doc, 8)[0];
        let item = named(
            fields(paths, 2),
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        );
        assert_eq!(fields(item, 8).len(), 1, "a patch operation");
    }
}
