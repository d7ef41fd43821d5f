//! Turning an HTTP request line into a typed operation: which endpoint, which resource, which
//! verb, which options. Nothing here decides policy.

use std::collections::HashMap;

use capstan_api::resource::{self, ResourceInfo, Subresource};
use hyper::Method;

use crate::error::ApiError;

/// The endpoint a path names.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Version,
    /// `/healthz`, `/livez`, `/readyz` and their sub-checks.
    Health,
    /// `/metrics`: the server's own metrics in the Prometheus text format.
    Metrics,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    /// `/openapi/v3`
    OpenApiV3Root,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`
    OpenApiV3 {
        group: String,
        version: String,
    },
    /// `/openapi/v2`
    OpenApiV2,
    Resource(ResourceRequest),
}

/// A request for objects of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRequest {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    pub verb: Verb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

/// Parses `path` for `method`. `watch` is true when the query asks for a watch.
pub fn route(method: &Method, path: &str, watch: bool) -> Result<Endpoint, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => Ok(Endpoint::Version),
        [probe, ..] if matches!(*probe, "healthz" | "livez" | "readyz") => Ok(Endpoint::Health),
        ["metrics"] => Ok(Endpoint::Metrics),
        ["api"] => Ok(Endpoint::CoreVersions),
        ["apis"] => Ok(Endpoint::Groups),
        ["apis", group] => Ok(Endpoint::Group(group.to_string())),
        ["openapi", "v3"] => Ok(Endpoint::OpenApiV3Root),
        ["openapi", "v3", "api", version] => Ok(Endpoint::OpenApiV3 {
            group: String::new(),
            version: version.to_string(),
        }),
        ["openapi", "v3", "apis", group, version] => Ok(Endpoint::OpenApiV3 {
            group: group.to_string(),
            version: version.to_string(),
        }),
        ["openapi", "v2"] => Ok(Endpoint::OpenApiV2),
        ["api", version, rest @ ..] => route_group_version(method, "", version, rest, watch),
        ["apis", group, version, rest @ ..] => {
            route_group_version(method, group, version, rest, watch)
        }
        _ => Err(ApiError::UnknownPath),
    }
}

fn route_group_version(
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    watch: bool,
) -> Result<Endpoint, ApiError> {
    if resource::resources_in(group, version).next().is_none() {
        return Err(ApiError::UnknownPath);
    }
    // The legacy `/watch/` path prefix means the same as `?watch=true`.
    let (rest, watch) = match rest {
        ["watch", rest @ ..] => (rest, true),
        _ => (rest, watch),
    };
    let (namespace, rest): (Option<&str>, Vec<&str>) = match rest {
        [] => {
            return Ok(Endpoint::ResourceList {
                group: group.to_string(),
                version: version.to_string(),
            });
        }
        // `/namespaces/<ns>/<resource>…`, but `/namespaces/<name>[/status|finalize]` is a
        // namespace.
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            (Some(*ns), [&[*plural][..], tail].concat())
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::UnknownPath),
    };
    let resource = resource::find(group, version, plural).ok_or(ApiError::UnknownPath)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::UnknownPath);
    }
    let subresource = match subresource {
        None => None,
        Some(s) => Some(
            Subresource::from_path(s)
                .filter(|s| resource.has_subresource(*s))
                .ok_or(ApiError::UnknownPath)?,
        ),
    };
    let verb = match (method, name.is_some(), watch) {
        (&Method::GET, false, true) | (&Method::GET, true, true) => Verb::Watch,
        (&Method::GET, false, false) => Verb::List,
        (&Method::GET, true, false) => Verb::Get,
        (&Method::POST, false, _) => Verb::Create,
        // POST to `pods/<name>/binding` creates a Binding for that pod, to
        // `pods/<name>/eviction` an Eviction.
        (&Method::POST, true, _)
            if matches!(
                subresource,
                Some(Subresource::Binding | Subresource::Eviction)
            ) =>
        {
            Verb::Create
        }
        (&Method::PUT, true, _) => Verb::Update,
        (&Method::PATCH, true, _) => Verb::Patch,
        (&Method::DELETE, true, _) => Verb::Delete,
        (&Method::DELETE, false, _) => Verb::DeleteCollection,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let verb_name = match verb {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
        Verb::DeleteCollection => "deletecollection",
    };
    let allowed = match subresource {
        Some(sub) => sub.verbs().contains(&verb_name),
        None => resource.verbs.contains(&verb_name),
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(Endpoint::Resource(ResourceRequest {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource,
        verb,
    }))
}

/// Query parameters, last value wins (as Go's `url.Values.Get` returns the first; repeated
/// options are not meaningful for the parameters capstan reads).
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut map = HashMap::new();
        if let Some(q) = query {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean option, read as Go's `strconv.ParseBool` reads it (clients send `true`,
    /// `True`, `1`…).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource_request(method: Method, path: &str) -> ResourceRequest {
        match route(&method, path, false).unwrap() {
            Endpoint::Resource(r) => r,
            other => panic!("{path} routed to {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths_name_resource_namespace_and_object() {
        let r = resource_request(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        );
        assert_eq!(r.resource.plural, "deployments");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource, Some(Subresource::Scale));
        assert_eq!(r.verb, Verb::Get);
    }

    #[test]
    fn namespace_objects_and_their_status_are_not_taken_for_namespaced_paths() {
        let r = resource_request(Method::PUT, "/api/v1/namespaces/team-a/status");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("team-a"));
        assert_eq!(r.subresource, Some(Subresource::Status));
        let r = resource_request(Method::GET, "/api/v1/namespaces/team-a");
        assert_eq!((r.resource.plural, r.verb), ("namespaces", Verb::Get));
        let r = resource_request(Method::GET, "/api/v1/namespaces/team-a/pods");
        assert_eq!((r.resource.plural, r.verb), ("pods", Verb::List));
    }

    #[test]
    fn verbs_follow_method_and_shape() {
        let cases = [
            (Method::GET, "/api/v1/pods", Verb::List),
            (Method::POST, "/api/v1/namespaces/d/pods", Verb::Create),
            (Method::PATCH, "/api/v1/namespaces/d/pods/p", Verb::Patch),
            (
                Method::DELETE,
                "/api/v1/namespaces/d/pods",
                Verb::DeleteCollection,
            ),
            (
                Method::POST,
                "/api/v1/namespaces/d/pods/p/binding",
                Verb::Create,
            ),
            (
                Method::POST,
                "/api/v1/namespaces/d/pods/p/eviction",
                Verb::Create,
            ),
        ];
        for (method, path, verb) in cases {
            assert_eq!(resource_request(method, path).verb, verb, "{path}");
        }
        let watch = route(&Method::GET, "/api/v1/watch/namespaces/d/pods", false).unwrap();
        assert!(matches!(
            watch,
            Endpoint::Resource(ResourceRequest {
                verb: Verb::Watch,
                ..
            })
        ));
    }

    #[test]
    fn boolean_options_read_as_go_reads_them() {
        let query = Query::parse(Some("watch=True&a=1&b=false&c=yes"));
        assert!(query.flag("watch") && query.flag("a"));
        assert!(!query.flag("b") && !query.flag("c") && !query.flag("missing"));
    }

    #[test]
    fn unknown_paths_and_verbs_are_refused() {
        assert_eq!(
            route(&Method::GET, "/api/v1/widgets", false),
            Err(ApiError::UnknownPath)
        );
        assert_eq!(
            route(&Method::GET, "/api/v1/namespaces/d/nodes", false),
            Err(ApiError::UnknownPath)
        );
        assert_eq!(
            route(&Method::PUT, "/api/v1/namespaces/d/pods", false),
            Err(ApiError::MethodNotAllowed)
        );
        assert_eq!(
            route(&Method::GET, "/api/v1/namespaces/d/bindings", false),
            Err(ApiError::MethodNotAllowed)
        );
    }
}
