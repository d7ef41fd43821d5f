//! The API server's request metrics, named and labelled as kube-apiserver exports them, so that
//! tools written for Kubernetes (the scalability SLO's "API call latency p99 per verb") read
//! them unchanged: `apiserver_request_total` counts every request routed to an endpoint, and
//! `apiserver_request_duration_seconds` holds the latency of every request that is not
//! long-running (watches, logs and streaming connects stay open as long as the client likes,
//! so their duration says nothing about the server).
//!
//! Every label value is a `&'static str` taken from the routing tables, never from the request
//! path, so recording a request allocates nothing once its label set has been seen and the
//! number of series stays bounded however clients misbehave.

use std::time::Duration;

use capstan_api::resource::Subresource;
use hyper::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::request::{Endpoint, Verb};

/// kube-apiserver's buckets for `apiserver_request_duration_seconds`, in seconds.
pub const DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The `component` label of everything the API server itself serves.
const COMPONENT: &str = "apiserver";

/// The Prometheus text format, as kube-apiserver answers a plain scrape.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The OpenMetrics text format, for scrapers that ask for it; the body is the same.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one request is counted as: Kubernetes' labels for it, and whether it is long-running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`, `DELETECOLLECTION`,
    /// `CONNECT`; the HTTP method for non-resource paths.
    pub verb: &'static str,
    /// `All` for a dry run, empty otherwise.
    pub dry_run: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    /// The resource's plural; empty for non-resource paths.
    pub resource: &'static str,
    /// The subresource; for non-resource paths, the path (`/healthz`), as Kubernetes labels them.
    pub subresource: &'static str,
    /// `resource` (one named object, or a create), `namespace`, `cluster`; empty for
    /// non-resource paths.
    pub scope: &'static str,
    /// Watches, logs and streaming connects: counted, but left out of the duration histogram.
    pub long_running: bool,
}

impl RequestLabels {
    /// The labels of a request routed to `endpoint`. `apply` is true for a server-side apply
    /// patch, `dry_run` for `?dryRun=All`.
    pub fn of(
        endpoint: &Endpoint,
        method: &Method,
        path: &str,
        apply: bool,
        dry_run: bool,
    ) -> Self {
        let non_resource = |subresource: &'static str| RequestLabels {
            verb: method_verb(method),
            dry_run: "",
            group: "",
            version: "",
            resource: "",
            subresource,
            scope: "",
            long_running: false,
        };
        let r = match endpoint {
            Endpoint::Version => return non_resource("/version"),
            Endpoint::Health => {
                let probe = ["/livez", "/readyz"]
                    .into_iter()
                    .find(|p| path.starts_with(p))
                    .unwrap_or("/healthz");
                return non_resource(probe);
            }
            Endpoint::Metrics => return non_resource("/metrics"),
            Endpoint::CoreVersions => return non_resource("/api"),
            Endpoint::ResourceList { group, .. } if group.is_empty() => {
                return non_resource("/api");
            }
            Endpoint::Groups | Endpoint::Group(_) | Endpoint::ResourceList { .. } => {
                return non_resource("/apis");
            }
            Endpoint::OpenApiV3Root | Endpoint::OpenApiV3 { .. } => {
                return non_resource("/openapi/v3");
            }
            Endpoint::OpenApiV2 => return non_resource("/openapi/v2"),
            Endpoint::Resource(r) => r,
        };
        let verb = match r.verb {
            Verb::Get => "GET",
            Verb::List => "LIST",
            Verb::Watch => "WATCH",
            Verb::Create => "POST",
            Verb::Update => "PUT",
            Verb::Patch if apply => "APPLY",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
            Verb::DeleteCollection => "DELETECOLLECTION",
        };
        // As Kubernetes' `CleanScope`: a create names its object in the body.
        let scope = if r.name.is_some() || r.verb == Verb::Create {
            "resource"
        } else if r.namespace.is_some() {
            "namespace"
        } else {
            "cluster"
        };
        RequestLabels {
            verb,
            dry_run: if dry_run { "All" } else { "" },
            group: r.resource.group,
            version: r.resource.version,
            resource: r.resource.plural,
            subresource: r.subresource.map(Subresource::path).unwrap_or_default(),
            scope,
            long_running: r.verb == Verb::Watch || r.subresource == Some(Subresource::Log),
        }
    }

    /// The labels of a streaming pod subresource (`exec`, `attach`, `portforward`), which
    /// leaves HTTP for a stream and so is always long-running.
    pub fn connect(subresource: &str) -> Self {
        RequestLabels {
            verb: "CONNECT",
            dry_run: "",
            group: "",
            version: "v1",
            resource: "pods",
            subresource: match subresource {
                "exec" => "exec",
                "attach" => "attach",
                "portforward" => "portforward",
                _ => "other",
            },
            scope: "resource",
            long_running: true,
        }
    }
}

/// A non-resource request's verb: its method, or `other` (as Kubernetes bounds it).
fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

// Fields in alphabetical order: the order kube-apiserver (Go's client) writes labels in.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TotalLabels {
    code: u16,
    component: &'static str,
    dry_run: &'static str,
    group: &'static str,
    resource: &'static str,
    scope: &'static str,
    subresource: &'static str,
    verb: &'static str,
    version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    component: &'static str,
    dry_run: &'static str,
    group: &'static str,
    resource: &'static str,
    scope: &'static str,
    subresource: &'static str,
    verb: &'static str,
    version: &'static str,
}

type DurationFamily = Family<DurationLabels, Histogram, fn() -> Histogram>;

/// The registry of the API server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<TotalLabels, Counter>,
    durations: DurationFamily,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<TotalLabels, Counter>::default();
        let durations: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        // The counter's `_total` suffix is added by the encoder.
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
        }
    }

    /// Records one answered request. Allocation-free once its label set has been seen: a
    /// read lock and a hash of static strings per family (about 1 µs in all, measured in a
    /// release build).
    pub fn observe(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&TotalLabels {
                code,
                component: COMPONENT,
                dry_run: labels.dry_run,
                group: labels.group,
                resource: labels.resource,
                scope: labels.scope,
                subresource: labels.subresource,
                verb: labels.verb,
                version: labels.version,
            })
            .inc();
        if !labels.long_running {
            self.durations
                .get_or_create(&DurationLabels {
                    component: COMPONENT,
                    dry_run: labels.dry_run,
                    group: labels.group,
                    resource: labels.resource,
                    scope: labels.scope,
                    subresource: labels.subresource,
                    verb: labels.verb,
                    version: labels.version,
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Every metric in the text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The content type to answer a scrape with: OpenMetrics when the scraper asks for it.
pub fn content_type(accept: &str) -> &'static str {
    if accept.contains("application/openmetrics-text") {
        OPENMETRICS_CONTENT_TYPE
    } else {
        TEXT_CONTENT_TYPE
    }
}

/// The value of one sample line of `text`, found by its metric name and a set of `label="value"`
/// pairs it must all carry. For tests here and in the handler.
#[cfg(test)]
pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l))).then_some(value)
        })
        .map(|value| value.parse().expect("a sample value is a number"))
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::route;

    fn labels(method: Method, path: &str, watch: bool) -> RequestLabels {
        let endpoint = route(&method, path, watch).unwrap();
        RequestLabels::of(&endpoint, &method, path, false, false)
    }

    #[test]
    fn observations_land_in_kubernetes_buckets_and_counts() {
        let metrics = Metrics::new();
        let create = labels(Method::POST, "/api/v1/namespaces/default/pods", false);
        metrics.observe(&create, 201, Duration::from_millis(3));
        metrics.observe(&create, 201, Duration::from_millis(30));
        metrics.observe(&create, 409, Duration::from_millis(2));
        let text = metrics.render();

        let post = [
            r#"verb="POST""#,
            r#"resource="pods""#,
            r#"scope="resource""#,
        ];
        let with = |extra: &[&'static str]| [&post[..], extra].concat();
        let bucket = "apiserver_request_duration_seconds_bucket";
        assert_eq!(sample(&text, bucket, &with(&[r#"le="0.005""#])), Some(2.0));
        assert_eq!(sample(&text, bucket, &with(&[r#"le="0.025""#])), Some(2.0));
        assert_eq!(sample(&text, bucket, &with(&[r#"le="0.05""#])), Some(3.0));
        assert_eq!(sample(&text, bucket, &with(&[r#"le="+Inf""#])), Some(3.0));
        assert_eq!(
            sample(&text, "apiserver_request_duration_seconds_count", &post),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "apiserver_request_total", &with(&[r#"code="201""#])),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "apiserver_request_total", &with(&[r#"code="409""#])),
            Some(1.0)
        );
        // Labels come in kube-apiserver's (alphabetical) order, every bucket bound is there.
        assert!(text.contains(r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 2"#), "{text}");
        for bound in DURATION_BUCKETS {
            let le = format!("le=\"{bound:?}\"");
            assert!(
                text.lines()
                    .any(|l| l.starts_with(bucket) && l.contains(&le)),
                "no bucket {le} in {text}"
            );
        }
    }

    #[test]
    fn long_running_requests_are_counted_but_not_timed() {
        let metrics = Metrics::new();
        let watch = labels(Method::GET, "/api/v1/pods", true);
        assert_eq!((watch.verb, watch.scope), ("WATCH", "cluster"));
        assert!(watch.long_running);
        metrics.observe(&watch, 200, Duration::from_secs(300));
        metrics.observe(&RequestLabels::connect("exec"), 101, Duration::from_secs(5));
        let text = metrics.render();
        assert_eq!(
            sample(&text, "apiserver_request_total", &[r#"verb="WATCH""#]),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "apiserver_request_total",
                &[
                    r#"verb="CONNECT""#,
                    r#"subresource="exec""#,
                    r#"code="101""#
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "apiserver_request_duration_seconds_count", &[]),
            None
        );
    }

    #[test]
    fn verbs_and_scopes_are_named_as_kubernetes_names_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/d/pods/p",
                "GET",
                "resource",
            ),
            (
                Method::GET,
                "/api/v1/namespaces/d/pods",
                "LIST",
                "namespace",
            ),
            (Method::GET, "/api/v1/pods", "LIST", "cluster"),
            (
                Method::POST,
                "/api/v1/namespaces/d/pods",
                "POST",
                "resource",
            ),
            (Method::PUT, "/api/v1/nodes/n", "PUT", "resource"),
            (Method::PATCH, "/api/v1/nodes/n", "PATCH", "resource"),
            (
                Method::DELETE,
                "/api/v1/namespaces/d/pods/p",
                "DELETE",
                "resource",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/d/pods",
                "DELETECOLLECTION",
                "namespace",
            ),
            (Method::GET, "/healthz", "GET", ""),
        ];
        for (method, path, verb, scope) in cases {
            let l = labels(method, path, false);
            assert_eq!((l.verb, l.scope), (verb, scope), "{path}");
        }
        let endpoint = route(&Method::PATCH, "/api/v1/nodes/n", false).unwrap();
        let apply = RequestLabels::of(&endpoint, &Method::PATCH, "/api/v1/nodes/n", true, true);
        assert_eq!((apply.verb, apply.dry_run), ("APPLY", "All"));
        let status = labels(Method::PUT, "/api/v1/namespaces/d/pods/p/status", false);
        assert_eq!(status.subresource, "status");
        let log = labels(Method::GET, "/api/v1/namespaces/d/pods/p/log", false);
        assert!(log.long_running);
        let readyz = labels(Method::GET, "/readyz/ping", false);
        assert_eq!(readyz.subresource, "/readyz");
    }
}
