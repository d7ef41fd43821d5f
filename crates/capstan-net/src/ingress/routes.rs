//! The route table: which backend answers a request for a host and path, built from the API
//! objects in one pass and never changed afterwards.
//!
//! Matching follows the Ingress specification and ingress-nginx where it is silent:
//! - hosts: an exact host beats a wildcard `*.example.com` (one label only), which beats the
//!   rules without a host; the most specific host that has rules is the only one consulted,
//!   like an nginx `server` block;
//! - paths: the longest matching path wins, `Exact` before `Prefix` on ties; `Prefix` matches
//!   whole `/`-separated elements, `ImplementationSpecific` is treated as `Prefix`;
//! - rules of several Ingresses for one host merge; on an identical path and type the oldest
//!   Ingress wins, as does the oldest `spec.defaultBackend`;
//! - nothing matched and no default backend: 404.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::ResourceExt;

use super::{CONTROLLER_NAME, INGRESS_CLASS};

/// Marks the IngressClass used by Ingresses that name none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation of Ingresses from before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Label of an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Where an Ingress sends a request: a Service port and the endpoints behind it.
#[derive(Debug)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    pub port: BackendPort,
    /// Ready endpoints (serving ones when none is ready), sorted; empty answers 503.
    pub endpoints: Vec<SocketAddr>,
    /// Round-robin position, shared by every rule that names this Service port.
    next: AtomicUsize,
}

/// The Service port an Ingress backend names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendPort {
    Number(i32),
    Name(String),
    /// A `resource` backend or one without a port: never has endpoints.
    Unsupported,
}

impl Backend {
    /// The endpoint for the next request, round-robin; `None` without endpoints.
    pub fn pick(&self) -> Option<usize> {
        match self.endpoints.len() {
            0 => None,
            n => Some(self.next.fetch_add(1, Ordering::Relaxed) % n),
        }
    }
}

/// What the table answers for a request.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    Backend(&'a Arc<Backend>),
    /// No rule matched and there is no default backend.
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    // Declared first so that it sorts before Prefix on equal lengths.
    Exact,
    Prefix,
}

#[derive(Debug)]
struct PathRule {
    /// For `Prefix`, without trailing `/` (so `/` is empty and matches everything).
    path: String,
    kind: PathKind,
    backend: Arc<Backend>,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => path == self.path,
            PathKind::Prefix => path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// The path rules of one host, longest first.
#[derive(Debug, Default)]
struct HostRules {
    paths: Vec<PathRule>,
}

impl HostRules {
    fn add(&mut self, rule: PathRule) {
        // The first (oldest) Ingress keeps a path both declare.
        if !self
            .paths
            .iter()
            .any(|p| p.path == rule.path && p.kind == rule.kind)
        {
            self.paths.push(rule);
        }
    }

    fn finish(&mut self) {
        // Stable: equal paths keep the order of their Ingresses.
        self.paths
            .sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.kind.cmp(&b.kind)));
    }

    fn route(&self, path: &str) -> Option<&Arc<Backend>> {
        self.paths
            .iter()
            .find(|rule| rule.matches(path))
            .map(|rule| &rule.backend)
    }
}

/// Routes of all Ingresses of class `capstan`, immutable once built.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, HostRules>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, HostRules>,
    /// Rules without a host.
    any_host: Option<HostRules>,
    default_backend: Option<Arc<Backend>>,
}

impl RouteTable {
    /// The table of `ingresses` (ours only, oldest first: see [`select_ingresses`]) with
    /// backends resolved through `services` and `slices`.
    pub fn build<'a>(
        ingresses: &[&Ingress],
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let resolver = Resolver::new(services, slices);
        let mut table = Self::default();
        let mut backends: HashMap<(String, String, BackendPort), Arc<Backend>> = HashMap::new();
        let mut backend = |namespace: &str, spec: &IngressBackend| -> Arc<Backend> {
            let (service, port) = backend_key(spec);
            backends
                .entry((namespace.to_owned(), service.clone(), port.clone()))
                .or_insert_with(|| Arc::new(resolver.resolve(namespace, service, port)))
                .clone()
        };
        for ingress in ingresses {
            let namespace = ingress.namespace().unwrap_or_default();
            let Some(spec) = &ingress.spec else { continue };
            if table.default_backend.is_none()
                && let Some(default) = &spec.default_backend
            {
                table.default_backend = Some(backend(&namespace, default));
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.as_deref().map(str::to_ascii_lowercase);
                let rules = match host.as_deref() {
                    None | Some("") => table.any_host.get_or_insert_with(HostRules::default),
                    Some(host) => match host.strip_prefix("*.") {
                        Some(suffix) => table.wildcard.entry(suffix.to_owned()).or_default(),
                        None => table.exact.entry(host.to_owned()).or_default(),
                    },
                };
                for path in rule.http.iter().flat_map(|http| &http.paths) {
                    let kind = match path.path_type.as_str() {
                        "Exact" => PathKind::Exact,
                        _ => PathKind::Prefix,
                    };
                    let raw = path.path.as_deref().unwrap_or("/");
                    let path_text = match kind {
                        PathKind::Exact => raw.to_owned(),
                        PathKind::Prefix => raw.trim_end_matches('/').to_owned(),
                    };
                    rules.add(PathRule {
                        path: path_text,
                        kind,
                        backend: backend(&namespace, &path.backend),
                    });
                }
            }
        }
        for rules in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            rules.finish();
        }
        if let Some(rules) = &mut table.any_host {
            rules.finish();
        }
        table
    }

    /// The backend for a request to `host` (a Host header: port and case don't matter) and
    /// `path` (the URI path, without query).
    pub fn route(&self, host: &str, path: &str) -> Route<'_> {
        let host = normalize_host(host);
        let rules = self.exact.get(host.as_ref()).or_else(|| {
            host.split_once('.')
                .and_then(|(_, suffix)| self.wildcard.get(suffix))
        });
        let rules = rules.or(self.any_host.as_ref());
        match rules
            .and_then(|rules| rules.route(path))
            .or(self.default_backend.as_ref())
        {
            Some(backend) => Route::Backend(backend),
            None => Route::NotFound,
        }
    }

    /// Number of distinct hosts with rules (wildcards included), for logs.
    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

/// The host of a Host header, lowercase, without port or trailing dot.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = if host.starts_with('[') {
        // An IPv6 literal, with or without a port.
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

fn backend_key(spec: &IngressBackend) -> (String, BackendPort) {
    let Some(service) = &spec.service else {
        return (String::new(), BackendPort::Unsupported);
    };
    let port = match &service.port {
        Some(port) => match (port.number, &port.name) {
            (Some(number), _) => BackendPort::Number(number),
            (None, Some(name)) => BackendPort::Name(name.clone()),
            (None, None) => BackendPort::Unsupported,
        },
        None => BackendPort::Unsupported,
    };
    (service.name.clone(), port)
}

/// Which Ingresses this controller serves, oldest first (ties by namespace and name): class
/// `capstan` by `spec.ingressClassName` or the legacy annotation, a class whose controller is
/// ours, or no class at all while one of our IngressClasses is marked default.
pub fn select_ingresses<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    classes: impl IntoIterator<Item = &'a IngressClass>,
) -> Vec<&'a Ingress> {
    let mut our_classes = vec![INGRESS_CLASS.to_owned()];
    let mut we_are_default = false;
    for class in classes {
        if class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER_NAME) {
            our_classes.push(class.name_any());
            we_are_default |= class
                .annotations()
                .get(DEFAULT_CLASS_ANNOTATION)
                .is_some_and(|v| v == "true");
        }
    }
    let mut ours: Vec<&Ingress> = ingresses
        .into_iter()
        .filter(|ingress| {
            let named = ingress
                .annotations()
                .get(LEGACY_CLASS_ANNOTATION)
                .map(String::as_str)
                .or_else(|| ingress.spec.as_ref()?.ingress_class_name.as_deref());
            match named {
                Some(class) => our_classes.iter().any(|ours| ours == class),
                None => we_are_default,
            }
        })
        .collect();
    ours.sort_by(|a, b| {
        let created = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.namespace().cmp(&b.namespace()))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    ours
}

/// Services and EndpointSlices indexed for backend resolution.
struct Resolver<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Resolver<'a> {
    fn new(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let services = services
            .into_iter()
            .map(|s| {
                let m = &s.metadata;
                (
                    (
                        m.namespace.as_deref().unwrap_or_default(),
                        m.name.as_deref().unwrap_or_default(),
                    ),
                    s,
                )
            })
            .collect();
        let mut by_service: HashMap<_, Vec<_>> = HashMap::new();
        for slice in slices {
            let m = &slice.metadata;
            let Some(service) = m.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
                continue;
            };
            by_service
                .entry((m.namespace.as_deref().unwrap_or_default(), service.as_str()))
                .or_default()
                .push(slice);
        }
        Self {
            services,
            slices: by_service,
        }
    }

    /// Service port → EndpointSlice port of the same name → endpoint addresses.
    fn resolve(&self, namespace: &str, service: String, port: BackendPort) -> Backend {
        let endpoints = self.endpoints(namespace, &service, &port);
        Backend {
            namespace: namespace.to_owned(),
            service,
            port,
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    fn endpoints(&self, namespace: &str, service: &str, port: &BackendPort) -> Vec<SocketAddr> {
        let Some(svc) = self.services.get(&(namespace, service)) else {
            return Vec::new();
        };
        let ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
        let service_port = ports.into_iter().find(|p| match port {
            BackendPort::Number(n) => p.port == *n,
            BackendPort::Name(name) => p.name.as_deref() == Some(name.as_str()),
            BackendPort::Unsupported => false,
        });
        let Some(service_port) = service_port else {
            return Vec::new();
        };
        let port_name = service_port.name.as_deref().unwrap_or_default();
        let (mut ready, mut serving) = (Vec::new(), Vec::new());
        for slice in self.slices.get(&(namespace, service)).into_iter().flatten() {
            if slice.address_type == "FQDN" {
                continue;
            }
            let Some(number) = slice.ports.iter().flatten().find_map(|p| {
                (p.name.as_deref().unwrap_or_default() == port_name)
                    .then_some(p.port)
                    .flatten()
            }) else {
                continue;
            };
            let Ok(number) = u16::try_from(number) else {
                continue;
            };
            for endpoint in &slice.endpoints {
                let conditions = endpoint.conditions.as_ref();
                // The API says an unknown readiness means ready.
                let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let is_serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
                let list = if is_ready {
                    &mut ready
                } else if is_serving {
                    &mut serving
                } else {
                    continue;
                };
                list.extend(
                    endpoint
                        .addresses
                        .iter()
                        .filter_map(|a| a.parse::<IpAddr>().ok())
                        .map(|ip| SocketAddr::new(ip, number)),
                );
            }
        }
        let mut endpoints = if ready.is_empty() { serving } else { ready };
        endpoints.sort_unstable();
        endpoints.dedup();
        endpoints
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    pub(crate) fn ingress(name: &str, created: &str, spec: Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": spec,
        }))
        .unwrap()
    }

    pub(crate) fn service(name: &str, ports: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": ports},
        }))
        .unwrap()
    }

    /// A slice of `service` with port `http` (and unnamed port 9000 → 9000) and `endpoints`
    /// as (address, ready).
    pub(crate) fn slice(service: &str, port: u16, endpoints: &[(&str, bool)]) -> EndpointSlice {
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|(ip, ready)| {
                json!({"addresses": [ip], "conditions": {"ready": ready, "serving": true}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("{service}-abc"),
                "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port}, {"port": 9000}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn backend(service: &str, port: Value) -> Value {
        json!({"service": {"name": service, "port": port}})
    }

    fn path(path: &str, kind: &str, service: &str) -> Value {
        json!({"path": path, "pathType": kind, "backend": backend(service, json!({"name": "http"}))})
    }

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "annotations": {DEFAULT_CLASS_ANNOTATION: default.to_string()},
            },
            "spec": {"controller": controller},
        }))
        .unwrap()
    }

    /// Services `a`..`f`, each with one ready endpoint 10.0.0.<n>:8080 behind port `http`.
    fn fixtures() -> (Vec<Service>, Vec<EndpointSlice>) {
        let names = ["a", "b", "c", "d", "e", "f"];
        let services = names
            .iter()
            .map(|n| service(n, json!([{"name": "http", "port": 80, "targetPort": 8080}])))
            .collect();
        let slices = names
            .iter()
            .enumerate()
            .map(|(i, n)| slice(n, 8080, &[(&format!("10.0.0.{}", i + 1), true)]))
            .collect();
        (services, slices)
    }

    fn table(ingresses: &[Ingress]) -> RouteTable {
        let (services, slices) = fixtures();
        let ours = select_ingresses(ingresses, &[]);
        RouteTable::build(&ours, &services, &slices)
    }

    /// The service a request reaches, or "404".
    fn target(table: &RouteTable, host: &str, path: &str) -> String {
        match table.route(host, path) {
            Route::Backend(b) => b.service.clone(),
            Route::NotFound => "404".into(),
        }
    }

    fn capstan(rules: Value) -> Value {
        json!({"ingressClassName": "capstan", "rules": rules})
    }

    #[test]
    fn exact_hosts_beat_wildcards_which_match_one_label_only() {
        let t = table(&[ingress(
            "i",
            "2024-01-01T00:00:00Z",
            capstan(json!([
                {"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "a")]}},
                {"host": "www.example.com", "http": {"paths": [path("/", "Prefix", "b")]}},
                {"http": {"paths": [path("/", "Prefix", "c")]}},
            ])),
        )]);
        let cases = [
            ("www.example.com", "b"),
            ("WWW.Example.com:8080", "b"),
            ("api.example.com", "a"),
            ("a.b.example.com", "c"),
            ("example.com", "c"),
            ("other.org", "c"),
        ];
        for (host, want) in cases {
            assert_eq!(target(&t, host, "/x"), want, "{host}");
        }
    }

    #[test]
    fn prefix_matches_whole_path_elements_and_the_longest_path_wins() {
        let t = table(&[ingress(
            "i",
            "2024-01-01T00:00:00Z",
            capstan(json!([{"host": "h", "http": {"paths": [
                path("/foo", "Prefix", "a"),
                path("/foo/bar/", "ImplementationSpecific", "b"),
                path("/foo/bar", "Exact", "c"),
                path("/exact", "Exact", "d"),
            ]}}])),
        )]);
        let cases = [
            ("/foo", "a"),
            ("/foo/", "a"),
            ("/foo/baz", "a"),
            ("/foobar", "404"),
            ("/foo/bar", "c"),
            ("/foo/bar/", "b"),
            ("/foo/bar/x", "b"),
            ("/foo/barx", "a"),
            ("/exact", "d"),
            ("/exact/", "404"),
            ("/", "404"),
        ];
        for (p, want) in cases {
            assert_eq!(target(&t, "h", p), want, "{p}");
        }
    }

    #[test]
    fn rules_of_several_ingresses_merge_and_the_oldest_wins_a_shared_path() {
        let newer = ingress(
            "newer",
            "2024-02-01T00:00:00Z",
            json!({"ingressClassName": "capstan",
                   "defaultBackend": backend("e", json!({"number": 80})),
                   "rules": [{"host": "h", "http": {"paths": [
                       path("/api", "Prefix", "b"), path("/shared", "Prefix", "c")]}}]}),
        );
        let older = ingress(
            "older",
            "2024-01-01T00:00:00Z",
            json!({"ingressClassName": "capstan",
                   "defaultBackend": backend("f", json!({"number": 80})),
                   "rules": [{"host": "h", "http": {"paths": [
                       path("/", "Prefix", "a"), path("/shared", "Prefix", "d")]}}]}),
        );
        let t = table(&[newer, older]);
        assert_eq!(target(&t, "h", "/api/v1"), "b");
        assert_eq!(target(&t, "h", "/shared"), "d");
        assert_eq!(target(&t, "h", "/else"), "a");
        assert_eq!(target(&t, "unknown", "/"), "f");
    }

    #[test]
    fn unmatched_requests_without_a_default_backend_are_not_found() {
        let t = table(&[ingress(
            "i",
            "2024-01-01T00:00:00Z",
            capstan(json!([{"host": "h", "http": {"paths": [path("/a", "Exact", "a")]}}])),
        )]);
        assert_eq!(target(&t, "h", "/b"), "404");
        assert_eq!(target(&t, "other", "/a"), "404");
    }

    #[test]
    fn only_ingresses_of_our_class_are_served() {
        let rules = json!([{"host": "h", "http": {"paths": [path("/", "Prefix", "a")]}}]);
        let named = |class: &str| {
            ingress(
                "i",
                "2024-01-01T00:00:00Z",
                json!({"ingressClassName": class, "rules": rules}),
            )
        };
        let mut legacy = ingress("l", "2024-01-01T00:00:00Z", json!({"rules": rules}));
        legacy.metadata.annotations =
            Some([(LEGACY_CLASS_ANNOTATION.to_owned(), "capstan".to_owned())].into());
        let unnamed = ingress("u", "2024-01-01T00:00:00Z", json!({"rules": rules}));
        let ours_default = class("cap", CONTROLLER_NAME, true);
        let ours = class("cap", CONTROLLER_NAME, false);
        let nginx_default = class("nginx", "k8s.io/ingress-nginx", true);

        let cases: Vec<(&str, Ingress, Vec<&IngressClass>, bool)> = vec![
            ("class capstan", named("capstan"), vec![], true),
            (
                "class of another controller",
                named("nginx"),
                vec![&nginx_default],
                false,
            ),
            (
                "another class named capstan's",
                named("cap"),
                vec![&ours],
                true,
            ),
            ("legacy annotation", legacy, vec![], true),
            (
                "no class, ours is default",
                unnamed.clone(),
                vec![&ours_default],
                true,
            ),
            (
                "no class, ours not default",
                unnamed.clone(),
                vec![&ours],
                false,
            ),
            (
                "no class, other default",
                unnamed,
                vec![&nginx_default],
                false,
            ),
        ];
        for (name, ingress, classes, want) in cases {
            let selected = select_ingresses([&ingress], classes);
            assert_eq!(selected.len() == 1, want, "{name}");
        }
    }

    #[test]
    fn named_and_numbered_ports_resolve_to_the_slice_port_of_the_same_name() {
        let services = vec![service(
            "s",
            json!([{"name": "http", "port": 80, "targetPort": "web"}, {"port": 9000}]),
        )];
        let slices = vec![slice("s", 8080, &[("10.0.0.1", true), ("10.0.0.2", true)])];
        let ingresses = [ingress(
            "i",
            "2024-01-01T00:00:00Z",
            capstan(json!([
                {"host": "named", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": backend("s", json!({"name": "http"}))}]}},
                {"host": "number", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": backend("s", json!({"number": 80}))}]}},
                {"host": "unnamed", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": backend("s", json!({"number": 9000}))}]}},
                {"host": "missing", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": backend("s", json!({"number": 81}))}]}},
            ])),
        )];
        let ours = select_ingresses(&ingresses, &[]);
        let t = RouteTable::build(&ours, &services, &slices);
        let endpoints = |host| match t.route(host, "/") {
            Route::Backend(b) => b
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            Route::NotFound => panic!("{host} not routed"),
        };
        assert_eq!(endpoints("named"), ["10.0.0.1:8080", "10.0.0.2:8080"]);
        assert_eq!(endpoints("number"), ["10.0.0.1:8080", "10.0.0.2:8080"]);
        assert_eq!(endpoints("unnamed"), ["10.0.0.1:9000", "10.0.0.2:9000"]);
        assert!(endpoints("missing").is_empty());
    }

    #[test]
    fn only_ready_endpoints_are_used_and_serving_ones_when_none_is_ready() {
        let services = vec![
            service("mixed", json!([{"name": "http", "port": 80}])),
            service("unready", json!([{"name": "http", "port": 80}])),
            service("empty", json!([{"name": "http", "port": 80}])),
        ];
        let slices = vec![
            slice("mixed", 8080, &[("10.0.0.1", false), ("10.0.0.2", true)]),
            slice("unready", 8080, &[("10.0.0.3", false)]),
            slice("empty", 8080, &[]),
        ];
        let rule =
            |host: &str| json!({"host": host, "http": {"paths": [path("/", "Prefix", host)]}});
        let ingresses = [ingress(
            "i",
            "2024-01-01T00:00:00Z",
            capstan(json!([
                rule("mixed"),
                rule("unready"),
                rule("empty"),
                rule("nosvc")
            ])),
        )];
        let ours = select_ingresses(&ingresses, &[]);
        let t = RouteTable::build(&ours, &services, &slices);
        let endpoints = |host| match t.route(host, "/") {
            Route::Backend(b) => b
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            Route::NotFound => panic!("{host} not routed"),
        };
        assert_eq!(endpoints("mixed"), ["10.0.0.2:8080"]);
        assert_eq!(endpoints("unready"), ["10.0.0.3:8080"]);
        assert!(endpoints("empty").is_empty(), "answers 503");
        assert!(endpoints("nosvc").is_empty(), "answers 503");
    }

    #[test]
    fn backends_are_picked_round_robin() {
        let services = vec![service("s", json!([{"name": "http", "port": 80}]))];
        let slices = vec![slice("s", 8080, &[("10.0.0.1", true), ("10.0.0.2", true)])];
        let ingresses = [ingress(
            "i",
            "2024-01-01T00:00:00Z",
            capstan(json!([{"http": {"paths": [path("/", "Prefix", "s")]}}])),
        )];
        let ours = select_ingresses(&ingresses, &[]);
        let t = RouteTable::build(&ours, &services, &slices);
        let Route::Backend(b) = t.route("x", "/") else {
            panic!()
        };
        let picks: Vec<_> = (0..4).map(|_| b.pick().unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn hosts_are_normalized() {
        for (raw, want) in [
            ("Example.COM", "example.com"),
            ("example.com:8443", "example.com"),
            ("example.com.", "example.com"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("10.0.0.1:80", "10.0.0.1"),
        ] {
            assert_eq!(normalize_host(raw), want);
        }
    }
}
