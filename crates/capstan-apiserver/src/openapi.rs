//! OpenAPI v3 documents, one per group/version, with the operations kubectl inspects: every
//! path of every resource, its `x-kubernetes-group-version-kind`, and the `fieldValidation`,
//! `dryRun` and `fieldManager` parameters of writes (kubectl sends `fieldValidation=Strict`
//! only when it finds them). Schemas are placeholders; full field schemas come later.

use capstan_api::resource::{self, ResourceInfo};
use serde_json::{Map, Value, json};

/// `/openapi/v3`: where each group/version's document lives, with a content hash in the URL
/// so that clients can cache documents forever.
pub fn root() -> Value {
    let mut paths = Map::new();
    for g in resource::groups() {
        for v in &g.versions {
            let path = group_version_path(g.group, v);
            let hash = document_hash(&document(g.group, v).unwrap_or_default());
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
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
pub fn document_hash(doc: &Value) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in doc.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016X}")
}

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
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(r))});
    let mut op = json!({
        "operationId": operation_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
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

/// The document of one group/version, if served.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceInfo> = resource::resources_in(group, version).collect();
    if resources.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
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
        // No `x-kubernetes-group-version-kind` on these placeholder schemas: kubectl would take
        // them for the kind's full schema and fail to compute strategic merge patches from
        // them; without it, kubectl uses its compiled-in types. Full schemas come with
        // `kubectl explain` support.
        schemas.insert(schema_name(r), json!({
            "type": "object",
            "description": format!("{} is a {} object; its full schema is not published yet.", r.kind, r.api_version()),
        }));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_list_field_validation() {
        let doc = document("apps", "v1").unwrap();
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
        let root = root();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
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
}
