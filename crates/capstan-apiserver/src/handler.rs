//! From an authenticated HTTP request to a response: negotiation of media types, decoding of
//! bodies and options, the call into the registry, and rendering of the result (objects,
//! lists, Tables, watch streams). Errors are rendered in `respond_error` only.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capstan_api::object;
use capstan_api::protobuf;
use capstan_api::resource::{ResourceInfo, Subresource};
use capstan_api::selector::{FieldSelector, LabelSelector};
use capstan_api::table;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::discovery;
use crate::error::{ApiError, success_status};
use crate::eviction;
use crate::metrics::{self, RequestLabels};
use crate::openapi;
use crate::patch::{self, PatchType};
use crate::registry::{
    DeleteOptions, FieldValidation, ListOptions, ListPage, Page, Propagation, Registry,
    WriteOptions, Written,
};
use crate::request::{Endpoint, Query, ResourceRequest, Verb, route};
use crate::watch::{DEFAULT_TIMEOUT, ResourceWatch, WatchEvent, WatchOptions};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Most events sent in one frame when a watcher has a backlog.
const WATCH_BATCH: usize = 256;

const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Everything a handler needs to know about one request, already read from the wire.
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Query,
    pub accept: String,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub user: UserInfo,
    pub user_agent: String,
}

/// The server-wide state handlers use.
pub struct Handler {
    pub registry: Registry,
    /// Reaches node agents for logs and exec.
    pub nodes: crate::node_proxy::NodeClient,
    /// The cluster CA, for signing joining nodes' certificates.
    pub pki_dir: std::path::PathBuf,
    /// `host:port` clients reach the server by, for `/api`'s `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// Request counts and latencies, served at `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(status: StatusCode, content_type: &str, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    response
}

fn ok_json(value: &Value) -> Response<Body> {
    json_response(StatusCode::OK, "application/json", value)
}

/// An object answered in the client's encoding: protobuf for a client that accepts only protobuf,
/// JSON otherwise (and when the object's kind has no protobuf schema).
fn object_response(status: StatusCode, accept: &str, value: &Value) -> Response<Body> {
    if rendering(accept) == Ok(Rendering::Protobuf)
        && let Ok(bytes) = protobuf::encode(value)
    {
        let mut response = Response::new(full(bytes));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(protobuf::MEDIA_TYPE));
        return response;
    }
    json_response(status, "application/json", value)
}

/// A prebuilt JSON document, with its hash as the ETag; clients revalidate unless they asked
/// for it by hash.
fn published(doc: &openapi::Published) -> Response<Body> {
    let mut response = Response::new(full(doc.body.clone()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        ETAG,
        HeaderValue::from_str(&format!("\"{}\"", doc.hash)).expect("hex is a valid header"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

/// The one place an error becomes a response.
pub fn respond_error(error: &ApiError) -> Response<Body> {
    let mut response = json_response(error.status_code(), "application/json", &error.to_status());
    if let Some(seconds) = error.retry_after_seconds() {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// How the client wants objects rendered, from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rendering {
    Object,
    Table,
    PartialObjectMetadata,
    /// Objects as `application/vnd.kubernetes.protobuf`, for clients that accept nothing else.
    Protobuf,
}

fn rendering(accept: &str) -> Result<Rendering, ApiError> {
    for media in accept.split(',').map(str::trim) {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") && has("g=meta.k8s.io") {
            return Ok(Rendering::Table);
        }
        if (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList"))
            && has("g=meta.k8s.io")
        {
            return Ok(Rendering::PartialObjectMetadata);
        }
        match params[0] {
            "application/json" | "application/*" | "*/*" | "" if params.len() == 1 => {
                return Ok(Rendering::Object);
            }
            "application/yaml" | "application/vnd.kubernetes.protobuf" => {}
            _ => {}
        }
    }
    if accept.trim().is_empty() {
        return Ok(Rendering::Object);
    }
    // Only protobuf or other unsupported types were listed.
    if accept
        .split(',')
        .any(|m| m.trim().starts_with("application/json"))
    {
        return Ok(Rendering::Object);
    }
    if accept
        .split(',')
        .any(|m| m.trim().starts_with(protobuf::MEDIA_TYPE))
    {
        return Ok(Rendering::Protobuf);
    }
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io; got {accept:?}"
    )))
}

/// The aggregated discovery version asked for, if any.
fn aggregated_discovery(accept: &str) -> Option<&'static str> {
    for media in accept.split(',') {
        if media.contains("as=APIGroupDiscoveryList") && media.contains("g=apidiscovery.k8s.io") {
            if media.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if media.contains("v=v2") {
                return Some("v2");
            }
        }
        if media.trim().starts_with("application/json") && !media.contains("as=") {
            return None;
        }
    }
    None
}

/// Parses a request body as JSON or YAML. Public for the fuzz targets in `fuzz/`.
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("application/json");
    match media {
        // `kubectl scale --current-replicas` sends no Content-Type at all.
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body of the request could not be decoded as JSON: {e}"
            ))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body).map_err(|e| {
                ApiError::BadRequest(format!("the body of the request is not UTF-8: {e}"))
            })?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::BadRequest(format!(
                    "the body of the request could not be decoded as YAML: {e}"
                ))
            })
        }
        protobuf::MEDIA_TYPE => protobuf::decode(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body of the request could not be decoded as protobuf: {e}"
            ))
        }),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {other:?}"
        ))),
    }
}

fn is_apply(content_type: Option<&str>) -> bool {
    content_type
        .is_some_and(|c| c.split(';').next().map(str::trim) == Some("application/apply-patch+yaml"))
}

/// The field manager of a write: `fieldManager`, or as Kubernetes derives it, the client's
/// `User-Agent` up to its first `/`.
fn field_manager(request: &ApiRequest) -> Result<String, ApiError> {
    let manager = match request.query.get("fieldManager") {
        Some(m) => m.to_string(),
        None => request
            .user_agent
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    if manager.len() > 128 {
        return Err(ApiError::BadRequest(
            "fieldManager: Too long: may not be more than 128 bytes".into(),
        ));
    }
    Ok(if manager.is_empty() {
        "unknown".into()
    } else {
        manager
    })
}

fn write_options(query: &Query) -> Result<WriteOptions, ApiError> {
    if let Some(d) = query.get("dryRun")
        && d != "All"
    {
        return Err(ApiError::BadRequest(format!(
            "dryRun: Unsupported value: {d:?}: supported values: \"All\""
        )));
    }
    Ok(WriteOptions {
        dry_run: query.dry_run(),
        field_validation: FieldValidation::parse(query.get("fieldValidation"))?,
        field_manager: None,
    })
}

/// The options of a client's write, with its field manager.
fn client_write_options(request: &ApiRequest) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        field_manager: Some(field_manager(request)?),
        ..write_options(&request.query)?
    })
}

fn selectors(
    query: &Query,
    resource: &ResourceInfo,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = match query.get("labelSelector") {
        Some(s) => LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => LabelSelector::default(),
    };
    let fields = match query.get("fieldSelector") {
        Some(s) => {
            let f = FieldSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            f.check_supported(resource)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            f
        }
        None => FieldSelector::default(),
    };
    Ok((labels, fields))
}

fn list_options(query: &Query, resource: &ResourceInfo) -> Result<ListOptions, ApiError> {
    let (labels, fields) = selectors(query, resource)?;
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("limit: invalid value {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: query.get("continue").map(str::to_string),
    })
}

impl Handler {
    /// `pods/<name>/log`: a pod not yet on a node has an empty log (as kube-apiserver answers);
    /// otherwise the node's agent serves it, streamed through as it comes (`follow`).
    async fn pod_log(
        &self,
        pod: &Value,
        container: &str,
        query: &Query,
    ) -> Result<Response<Body>, ApiError> {
        let text_plain = |body: Body| {
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        };
        let Some(node_name) = object::str_at(pod, "/spec/nodeName").filter(|n| !n.is_empty())
        else {
            return Ok(text_plain(full(Bytes::new())));
        };
        let nodes = capstan_api::resource::find("", "v1", "nodes").expect("nodes are registered");
        let node = self.registry.get(nodes, None, node_name).map_err(|_| {
            ApiError::ServiceUnavailable(format!("node {node_name} of pod is not registered"))
        })?;
        let namespace = object::namespace(pod).unwrap_or("default");
        let name = object::name(pod).unwrap_or_default();
        // Only the options kubelet understands are passed on.
        let forwarded: String = {
            let mut forwarded = form_urlencoded::Serializer::new(String::new());
            for key in [
                "follow",
                "previous",
                "timestamps",
                "tailLines",
                "sinceSeconds",
                "sinceTime",
                "limitBytes",
            ] {
                if let Some(value) = query.get(key) {
                    forwarded.append_pair(key, value);
                }
            }
            forwarded.finish()
        };
        let path = format!("/containerLogs/{namespace}/{name}/{container}?{forwarded}");
        let response = self.nodes.get(&node, &path).await?;
        // Relay frames until the agent's stream ends or fails.
        let stream = futures_util::stream::unfold(response.into_body(), |mut body| async move {
            match body.frame().await {
                Some(Ok(frame)) => Some((Ok::<_, Infallible>(frame), body)),
                _ => None,
            }
        });
        Ok(text_plain(
            http_body_util::StreamBody::new(stream).boxed_unsync(),
        ))
    }

    /// Answers one request, and counts and times it in `metrics` as kube-apiserver does. A
    /// request that routes nowhere (404, 405) is not counted, as Kubernetes does not count it.
    /// The time is to the response's head: a streamed body (a list is not streamed, a watch
    /// or a followed log is) goes on after.
    pub async fn handle(&self, request: ApiRequest) -> Response<Body> {
        let started = Instant::now();
        let endpoint = match route(&request.method, &request.path, request.query.flag("watch")) {
            Ok(endpoint) => endpoint,
            Err(error) => return respond_error(&error),
        };
        let labels = RequestLabels::of(
            &endpoint,
            &request.method,
            &request.path,
            is_apply(request.content_type.as_deref()),
            request.query.dry_run(),
        );
        let response = match self.dispatch(&request, endpoint).await {
            Ok(response) => response,
            Err(error) => respond_error(&error),
        };
        self.metrics
            .observe(&labels, response.status().as_u16(), started.elapsed());
        response
    }

    async fn dispatch(
        &self,
        request: &ApiRequest,
        endpoint: Endpoint,
    ) -> Result<Response<Body>, ApiError> {
        let read_only = |response: Response<Body>| {
            if request.method == Method::GET || request.method == Method::HEAD {
                Ok(response)
            } else {
                Err(ApiError::MethodNotAllowed)
            }
        };
        match endpoint {
            Endpoint::Version => read_only(ok_json(&version())),
            Endpoint::Health => read_only(Response::new(full("ok"))),
            Endpoint::Metrics => {
                let mut response = Response::new(full(self.metrics.render()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(metrics::content_type(&request.accept)),
                );
                read_only(response)
            }
            Endpoint::CoreVersions => read_only(match aggregated_discovery(&request.accept) {
                Some(v) => aggregated_response(discovery::aggregated(true, v), v),
                None => ok_json(&discovery::core_versions(&self.server_address)),
            }),
            Endpoint::Groups => read_only(match aggregated_discovery(&request.accept) {
                Some(v) => aggregated_response(discovery::aggregated(false, v), v),
                None => ok_json(&discovery::group_list()),
            }),
            Endpoint::Group(g) => {
                read_only(ok_json(&discovery::group(&g).ok_or(ApiError::UnknownPath)?))
            }
            Endpoint::ResourceList { group, version } => read_only(ok_json(
                &discovery::resource_list(&group, &version).ok_or(ApiError::UnknownPath)?,
            )),
            Endpoint::OpenApiV3Root => read_only(published(openapi::root())),
            Endpoint::OpenApiV3 { group, version } => {
                let doc = openapi::document(&group, &version).ok_or(ApiError::UnknownPath)?;
                let mut response = published(doc);
                if request.query.get("hash") == Some(doc.hash.as_str()) {
                    response
                        .headers_mut()
                        .insert(CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                }
                read_only(response)
            }
            Endpoint::OpenApiV2 => match openapi::v2_encoding(&request.accept) {
                Some(openapi::V2Encoding::Json) => read_only(published(openapi::v2())),
                Some(openapi::V2Encoding::Protobuf) => {
                    let mut response = Response::new(full(openapi::v2_protobuf()));
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(openapi::V2_PROTOBUF_CONTENT_TYPE),
                    );
                    read_only(response)
                }
                None => Err(ApiError::NotAcceptable(request.accept.clone())),
            },
            Endpoint::Resource(r) => self.resource(request, r).await,
        }
    }

    async fn resource(
        &self,
        request: &ApiRequest,
        r: ResourceRequest,
    ) -> Result<Response<Body>, ApiError> {
        let resource = r.resource;
        let namespace = r.namespace.as_deref();
        let name = r.name.as_deref().unwrap_or_default();
        let query = &request.query;
        match (r.verb, r.subresource) {
            (Verb::Get, Some(Subresource::Log)) => {
                let pod = self.registry.get(resource, namespace, name)?;
                let container = log_container(&pod, name, query)?;
                self.pod_log(&pod, &container, query).await
            }
            (Verb::Get, Some(Subresource::Scale)) => {
                let object = self.registry.get(resource, namespace, name)?;
                let scale = scale_of(resource, &object)?;
                Ok(object_response(StatusCode::OK, &request.accept, &scale))
            }
            (Verb::Get, _) => {
                let object = self.registry.get(resource, namespace, name)?;
                render_object(resource, &request.accept, &object)
            }
            (Verb::List, _) => {
                let options = list_options(query, resource)?;
                if rendering(&request.accept)? == Rendering::Object
                    && let Some(page) = self.registry.list_encoded(resource, namespace, &options)?
                {
                    return Ok(encoded_list_response(resource, page));
                }
                let page = self.registry.list(resource, namespace, &options)?;
                render_list(resource, &request.accept, query, page)
            }
            (Verb::Watch, _) => self.watch(request, &r),
            (Verb::Create, Some(Subresource::Binding)) => self.bind(request, &r).await,
            (Verb::Create, Some(Subresource::Eviction)) => self.evict(request, &r).await,
            (Verb::Create, _) if resource.kind == "Binding" => {
                let body = decode_body(request.content_type.as_deref(), &request.body)?;
                let pod = object::name(&body).unwrap_or_default().to_string();
                let bound = ResourceRequest {
                    name: Some(pod),
                    ..r.clone()
                };
                self.bind_with(request, &bound, body).await
            }
            (Verb::Create, _) => {
                let body = decode_body(request.content_type.as_deref(), &request.body)?;
                let written = self
                    .registry
                    .create(resource, namespace, body, client_write_options(request)?)
                    .await?;
                Ok(written_response(
                    StatusCode::CREATED,
                    &request.accept,
                    written,
                ))
            }
            (Verb::Update, Some(Subresource::Scale)) | (Verb::Patch, Some(Subresource::Scale)) => {
                self.scale(request, &r).await
            }
            (Verb::Update, sub) => {
                let body = decode_body(request.content_type.as_deref(), &request.body)?;
                let written = self
                    .registry
                    .update(
                        resource,
                        namespace,
                        name,
                        sub,
                        body,
                        client_write_options(request)?,
                    )
                    .await?;
                Ok(written_response(StatusCode::OK, &request.accept, written))
            }
            (Verb::Patch, None) if is_apply(request.content_type.as_deref()) => {
                // The body of an apply is YAML (or JSON, which is YAML).
                let body = decode_body(Some("application/yaml"), &request.body)?;
                let force = query.flag("force");
                let options = client_write_options(request)?;
                let written = self
                    .registry
                    .apply(resource, namespace, name, body, force, options)
                    .await?;
                Ok(written_response(
                    StatusCode::CREATED,
                    &request.accept,
                    written,
                ))
            }
            (Verb::Patch, sub) => {
                let patch_type =
                    PatchType::from_content_type(request.content_type.as_deref().unwrap_or(""))?;
                let options = client_write_options(request)?;
                let validation = options.field_validation;
                let registry = &self.registry;
                let written = registry
                    .update_with(resource, namespace, name, sub, options, |current| {
                        let patched =
                            patch::apply(resource.kind, patch_type, current, &request.body)?;
                        registry.decode_body(resource, patched, validation)
                    })
                    .await?;
                Ok(written_response(StatusCode::OK, &request.accept, written))
            }
            (Verb::Delete, _) => {
                let options = delete_options(request)?;
                let (object, removed) = self
                    .registry
                    .delete(resource, namespace, name, &options)
                    .await?;
                if removed && resource.kind != "Pod" {
                    let details = json!({"name": name, "group": resource.group, "kind": resource.plural, "uid": object::uid(&object)});
                    let status = success_status(details);
                    Ok(object_response(StatusCode::OK, &request.accept, &status))
                } else {
                    Ok(object_response(StatusCode::OK, &request.accept, &object))
                }
            }
            (Verb::DeleteCollection, _) => {
                let options = delete_options(request)?;
                let list = list_options(query, resource)?;
                let page = self
                    .registry
                    .delete_collection(resource, namespace, &list, &options)
                    .await?;
                render_list(resource, "application/json", query, page)
            }
        }
    }

    fn watch(&self, request: &ApiRequest, r: &ResourceRequest) -> Result<Response<Body>, ApiError> {
        let query = &request.query;
        let resource = r.resource;
        let (labels, mut fields) = selectors(query, resource)?;
        // A watch of one object (`…/pods/web?watch=true`) is a watch filtered by name.
        if let Some(name) = &r.name {
            fields = FieldSelector::parse(&format!("metadata.name={name}"))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        let resource_version = match query.get("resourceVersion") {
            Some(rv) => Some(rv.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "resourceVersion: Invalid value: {rv:?}: must be an integer"
                ))
            })?),
            None => None,
        };
        let timeout = match query.get("timeoutSeconds") {
            Some(t) => Duration::from_secs(t.parse().map_err(|_| {
                ApiError::BadRequest(format!("timeoutSeconds: invalid value {t:?}"))
            })?),
            None => DEFAULT_TIMEOUT,
        };
        let rendering = rendering(&request.accept)?;
        let options = WatchOptions {
            labels,
            fields,
            resource_version,
            timeout,
            allow_bookmarks: query.flag("allowWatchBookmarks"),
            send_initial_events: query.flag("sendInitialEvents"),
        };
        let watch =
            ResourceWatch::start(&self.registry, resource, r.namespace.as_deref(), options)?;
        let render = move |event: &WatchEvent| -> Bytes {
            if rendering == Rendering::Protobuf {
                // An object without a schema cannot occur: watches serve registered kinds.
                return Bytes::from(
                    protobuf::encode_watch_event(event.event_type, event.object())
                        .unwrap_or_default(),
                );
            }
            let rendered = match (rendering, event.event_type) {
                (_, "BOOKMARK") | (Rendering::Object | Rendering::Protobuf, _) => None,
                (Rendering::Table, _) => Some(table_of(
                    resource,
                    std::slice::from_ref(event.object()),
                    None,
                    &Query::default(),
                )),
                (Rendering::PartialObjectMetadata, _) => {
                    Some(object::partial_metadata(event.object()))
                }
            };
            match rendered {
                // Plain JSON is encoded once per event for all watchers.
                None => event.json_line(),
                Some(object) => {
                    let mut line =
                        serde_json::to_vec(&json!({"type": event.event_type, "object": object}))
                            .unwrap_or_default();
                    line.push(b'\n');
                    Bytes::from(line)
                }
            }
        };
        let stream = futures_util::stream::unfold(watch, move |mut watch| async move {
            let first = render(&watch.next().await?);
            // A backlog goes out as one frame: far fewer HTTP/2 frames and TLS records when a
            // watcher falls behind a burst of writes. A lone event keeps its shared bytes.
            let Some(second) = watch.try_next() else {
                return Some((Ok::<_, Infallible>(Frame::data(first)), watch));
            };
            let mut chunk = first.to_vec();
            chunk.extend_from_slice(&render(&second));
            for _ in 0..WATCH_BATCH {
                match watch.try_next() {
                    Some(event) => chunk.extend_from_slice(&render(&event)),
                    None => break,
                }
            }
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), watch))
        });
        let mut response = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
        let content_type = match rendering {
            Rendering::Table => TABLE_CONTENT_TYPE,
            Rendering::Protobuf => protobuf::WATCH_MEDIA_TYPE,
            Rendering::Object | Rendering::PartialObjectMetadata => "application/json",
        };
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(response)
    }

    async fn bind(
        &self,
        request: &ApiRequest,
        r: &ResourceRequest,
    ) -> Result<Response<Body>, ApiError> {
        let body = decode_body(request.content_type.as_deref(), &request.body)?;
        self.bind_with(request, r, body).await
    }

    /// `pods/<name>/binding`: sets `spec.nodeName` once, as the scheduler does.
    async fn bind_with(
        &self,
        request: &ApiRequest,
        r: &ResourceRequest,
        body: Value,
    ) -> Result<Response<Body>, ApiError> {
        let pods = capstan_api::resource::find("", "v1", "pods").expect("pods are registered");
        let name = r.name.as_deref().unwrap_or_default();
        let node = object::str_at(&body, "/target/name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::Invalid {
                group: String::new(),
                kind: "Binding".into(),
                name: name.to_string(),
                errors: vec![capstan_api::FieldError::required("target.name", "")],
            })?;
        let options = write_options(&request.query)?;
        self.registry
            .update_with(pods, r.namespace.as_deref(), name, Some(Subresource::Binding), options, |current| {
                if let Some(existing) = object::str_at(current, "/spec/nodeName").filter(|n| !n.is_empty()) {
                    return Err(ApiError::Conflict {
                        group: String::new(),
                        resource: "pods".into(),
                        name: name.to_string(),
                        detail: format!("pod {name} is already assigned to node {existing:?}"),
                    });
                }
                if object::is_terminating(current) {
                    return Err(ApiError::Conflict {
                        group: String::new(),
                        resource: "pods".into(),
                        name: name.to_string(),
                        detail: format!("pod {name} is being deleted, cannot be assigned to a host"),
                    });
                }
                let mut pod = current.clone();
                pod["spec"]["nodeName"] = json!(node);
                let status = object::object_field_mut(&mut pod, "status");
                let mut conditions: Vec<Value> = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                conditions.retain(|c| c["type"] != "PodScheduled");
                conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::format_time(jiff::Timestamp::now())}));
                status.insert("conditions".into(), json!(conditions));
                Ok((pod, Vec::new()))
            })
            .await?;
        let mut status = success_status(json!({}));
        status["code"] = json!(201);
        Ok(json_response(
            StatusCode::CREATED,
            "application/json",
            &status,
        ))
    }

    /// `pods/<name>/eviction`: the Eviction body becomes delete options here; whether and how
    /// the pod goes is decided in [`eviction`].
    async fn evict(
        &self,
        request: &ApiRequest,
        r: &ResourceRequest,
    ) -> Result<Response<Body>, ApiError> {
        let body = decode_body(request.content_type.as_deref(), &request.body)?;
        let name = r.name.as_deref().unwrap_or_default();
        let namespace = r.namespace.as_deref().unwrap_or_default();
        let mut options = eviction_delete_options(&body, name, namespace)?;
        options.dry_run |= write_options(&request.query)?.dry_run;
        let outcome = eviction::evict(&self.registry, namespace, name, options).await?;
        let (code, status) = outcome.status();
        Ok(json_response(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "application/json",
            &status,
        ))
    }

    /// `…/scale`: reads and writes `spec.replicas` through an autoscaling/v1 `Scale`.
    async fn scale(
        &self,
        request: &ApiRequest,
        r: &ResourceRequest,
    ) -> Result<Response<Body>, ApiError> {
        let resource = r.resource;
        let name = r.name.as_deref().unwrap_or_default();
        let options = client_write_options(request)?;
        let patch_type = match r.verb {
            Verb::Patch => Some(PatchType::from_content_type(
                request.content_type.as_deref().unwrap_or(""),
            )?),
            _ => None,
        };
        let body = match patch_type {
            None => Some(decode_body(request.content_type.as_deref(), &request.body)?),
            Some(_) => None,
        };
        let written = self
            .registry
            .update_with(
                resource,
                r.namespace.as_deref(),
                name,
                None,
                options,
                |current| {
                    let scale = scale_of(resource, current)?;
                    let new_scale = match (&body, patch_type) {
                        (Some(b), _) => b.clone(),
                        (None, Some(t)) => patch::apply("Scale", t, &scale, &request.body)?,
                        (None, None) => unreachable!("a scale write is a PUT or a PATCH"),
                    };
                    let replicas = new_scale
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if replicas < 0 {
                        return Err(ApiError::Invalid {
                            group: "autoscaling".into(),
                            kind: "Scale".into(),
                            name: name.to_string(),
                            errors: vec![capstan_api::FieldError::invalid(
                                "spec.replicas",
                                replicas,
                                "must be greater than or equal to 0",
                            )],
                        });
                    }
                    let mut object = current.clone();
                    object["spec"]["replicas"] = json!(replicas);
                    // A resourceVersion in the Scale is a precondition on the object.
                    match object::resource_version(&new_scale) {
                        Some(rv) => object::set_meta(&mut object, "resourceVersion", json!(rv)),
                        None => object::set_meta(&mut object, "resourceVersion", Value::Null),
                    }
                    Ok((object, Vec::new()))
                },
            )
            .await?;
        let scale = scale_of(resource, &written.object)?;
        let mut response = object_response(StatusCode::OK, &request.accept, &scale);
        add_warnings(&mut response, &written.warnings);
        Ok(response)
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0+capstan-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn aggregated_response(doc: Value, version: &str) -> Response<Body> {
    let content_type =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    json_response(StatusCode::OK, &content_type, &doc)
}

fn add_warnings(response: &mut Response<Body>, warnings: &[String]) {
    for warning in warnings {
        let value = format!(
            "299 - {}",
            serde_json::to_string(warning).unwrap_or_default()
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append("warning", v);
        }
    }
}

fn written_response(created: StatusCode, accept: &str, written: Written) -> Response<Body> {
    let status = if written.created {
        created
    } else {
        StatusCode::OK
    };
    let mut response = object_response(status, accept, &written.object);
    add_warnings(&mut response, &written.warnings);
    response
}

fn delete_options(request: &ApiRequest) -> Result<DeleteOptions, ApiError> {
    let mut options = DeleteOptions {
        dry_run: request.query.dry_run(),
        grace_period_seconds: request
            .query
            .get("gracePeriodSeconds")
            .map(|g| {
                g.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds {g:?}")))
            })
            .transpose()?,
        ..Default::default()
    };
    if !request.body.is_empty() {
        let body: Value = serde_json::from_slice(&request.body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body of the request could not be decoded as DeleteOptions: {e}"
            ))
        })?;
        read_delete_options(&body, &mut options)?;
    }
    if let Some(policy) = request.query.get("propagationPolicy") {
        options.propagation = propagation(&json!(policy))?;
    }
    Ok(options)
}

/// The delete options of a policy/v1 (or v1beta1) `Eviction` posted for pod `name` in
/// `namespace`, refused as Kubernetes refuses a body of another kind or for another pod.
fn eviction_delete_options(
    body: &Value,
    name: &str,
    namespace: &str,
) -> Result<DeleteOptions, ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(format!(
            "Object 'Kind' is missing in '{body}'"
        )));
    }
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !matches!(api_version, "" | "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
        )));
    }
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if !matches!(kind, "" | "Eviction") {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind (Eviction)"
        )));
    }
    if object::name(body).unwrap_or_default() != name {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    if object::namespace(body).is_some_and(|ns| !ns.is_empty() && ns != namespace) {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let mut options = DeleteOptions::default();
    match body.get("deleteOptions") {
        None | Some(Value::Null) => {}
        Some(delete_options @ Value::Object(_)) => {
            if delete_options
                .get("gracePeriodSeconds")
                .is_some_and(|g| !g.is_null() && !g.is_i64())
            {
                return Err(ApiError::BadRequest(
                    "Eviction in version \"v1\" cannot be handled as a Eviction: deleteOptions.gracePeriodSeconds: invalid type, expected an integer".into(),
                ));
            }
            read_delete_options(delete_options, &mut options)?;
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "Eviction in version \"v1\" cannot be handled as a Eviction: deleteOptions: invalid type, expected an object".into(),
            ));
        }
    }
    Ok(options)
}

/// The fields of a `DeleteOptions` body (a DELETE's body, or an Eviction's `deleteOptions`)
/// over `options`.
fn read_delete_options(body: &Value, options: &mut DeleteOptions) -> Result<(), ApiError> {
    if body["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"))
    {
        options.dry_run = true;
    }
    options.grace_period_seconds = body["gracePeriodSeconds"].as_i64();
    options.precondition_uid = body
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    options.precondition_resource_version = body
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    match body["orphanDependents"].as_bool() {
        Some(true) => options.propagation = Propagation::Orphan,
        Some(false) => options.propagation = Propagation::Background,
        None => {}
    }
    if let Some(policy) = body.get("propagationPolicy").filter(|p| !p.is_null()) {
        options.propagation = propagation(policy)?;
    }
    Ok(())
}

/// A `propagationPolicy` value, refused in Kubernetes' words when unknown.
fn propagation(policy: &Value) -> Result<Propagation, ApiError> {
    policy
        .as_str()
        .and_then(Propagation::parse)
        .ok_or_else(|| ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "DeleteOptions".into(),
            name: String::new(),
            errors: vec![capstan_api::FieldError::not_supported(
                "propagationPolicy",
                policy.clone(),
                Propagation::SUPPORTED,
            )],
        })
}

/// The container a `pods/<name>/log` request is about, checked as Kubernetes checks it.
fn log_container(pod: &Value, name: &str, query: &Query) -> Result<String, ApiError> {
    let names = |list: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init_containers = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    let container = match query.get("container") {
        Some(c)
            if containers
                .iter()
                .chain(&init_containers)
                .chain(&ephemeral)
                .any(|n| n == c) =>
        {
            c.to_string()
        }
        Some(c) => {
            return Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init_containers.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init_containers.join(" ")
                ));
            }
            return Err(ApiError::BadRequest(message));
        }
    };
    Ok(container)
}

/// The autoscaling/v1 `Scale` of an object with `spec.replicas`.
fn scale_of(resource: &ResourceInfo, object: &Value) -> Result<Value, ApiError> {
    let selector = match resource.scale_selector_path {
        Some(path) => {
            let pointer = format!("/{}", path.join("/"));
            match object.pointer(&pointer) {
                Some(s) => LabelSelector::from_label_selector(s)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                None => String::new(),
            }
        }
        None => String::new(),
    };
    let meta = &object["metadata"];
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}

fn render_object(
    resource: &ResourceInfo,
    accept: &str,
    object: &Value,
) -> Result<Response<Body>, ApiError> {
    match rendering(accept)? {
        Rendering::Object => Ok(ok_json(object)),
        Rendering::Protobuf => Ok(object_response(StatusCode::OK, accept, object)),
        Rendering::PartialObjectMetadata => Ok(ok_json(&object::partial_metadata(object))),
        Rendering::Table => Ok(json_response(
            StatusCode::OK,
            TABLE_CONTENT_TYPE,
            &table_of(
                resource,
                std::slice::from_ref(object),
                None,
                &Query::default(),
            ),
        )),
    }
}

fn render_list(
    resource: &ResourceInfo,
    accept: &str,
    query: &Query,
    page: ListPage,
) -> Result<Response<Body>, ApiError> {
    let metadata = list_metadata(&page);
    match rendering(accept)? {
        Rendering::Table => Ok(json_response(
            StatusCode::OK,
            TABLE_CONTENT_TYPE,
            &table_of(resource, &page.items, Some(metadata), query),
        )),
        Rendering::PartialObjectMetadata => {
            let items: Vec<Value> = page.items.iter().map(object::partial_metadata).collect();
            Ok(ok_json(
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items}),
            ))
        }
        Rendering::Protobuf => {
            let list = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata, "items": page.items});
            Ok(object_response(StatusCode::OK, accept, &list))
        }
        Rendering::Object => {
            let mut response = Response::new(full(encode_list(
                resource,
                &metadata,
                &page.items,
                |out, item| serde_json::to_writer(out, item).unwrap_or_default(),
            )));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(response)
        }
    }
}

fn list_metadata<T>(page: &Page<T>) -> Value {
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    metadata
}

/// A list response from items already encoded.
fn encoded_list_response(resource: &ResourceInfo, page: Page<Vec<u8>>) -> Response<Body> {
    let metadata = list_metadata(&page);
    let mut response = Response::new(full(encode_list(
        resource,
        &metadata,
        &page.items,
        |out, item| out.extend_from_slice(item),
    )));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A `<Kind>List` written straight into one buffer: items are serialized in place rather than
/// first copied into a `json!` tree (a list of 10,000 pods is 10 MB).
fn encode_list<T>(
    resource: &ResourceInfo,
    metadata: &Value,
    items: &[T],
    write_item: impl Fn(&mut Vec<u8>, &T),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items.len() * 1024);
    let head = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    // The head is an object; reopen it to append the items.
    out.extend_from_slice(&head[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_item(&mut out, item);
    }
    out.extend_from_slice(b"]}");
    out
}

/// A `meta.k8s.io/v1` Table of `objects`.
fn table_of(
    resource: &ResourceInfo,
    objects: &[Value],
    metadata: Option<Value>,
    query: &Query,
) -> Value {
    let now = jiff::Timestamp::now();
    let columns: Vec<Value> = table::columns(resource)
        .iter()
        .map(|c| json!({"name": c.name, "type": c.column_type, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let include = query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": table::cells(resource, o, now)});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = object::partial_metadata(o),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata.unwrap_or_else(|| json!({})),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_create_is_counted_and_timed_and_a_watch_only_counted_at_metrics() {
        use futures_util::TryStreamExt;
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, PostParams, WatchParams};

        use crate::metrics::sample;

        let dir = tempfile::tempdir().unwrap();
        let server = crate::start(crate::ServerConfig {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            compaction_interval: Duration::from_secs(300),
            service_range: crate::service_ips::ServiceRange::parse("10.43.0.0/16").unwrap(),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            cluster_dns: None,
        })
        .await
        .unwrap();
        let client = server.local_client("system:kube-controller-manager");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let mut watch = Box::pin(pods.watch(&WatchParams::default(), "0").await.unwrap());
        assert!(watch.try_next().await.unwrap().is_some());

        let scrape = hyper::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = client.request_text(scrape).await.unwrap();
        let create = [
            r#"verb="POST""#,
            r#"group="""#,
            r#"version="v1""#,
            r#"resource="pods""#,
            r#"scope="resource""#,
            r#"component="apiserver""#,
        ];
        let created = [&create[..], &[r#"code="201""#]].concat();
        assert_eq!(
            sample(&text, "apiserver_request_total", &created),
            Some(1.0),
            "{text}"
        );
        let slowest_bucket = [&create[..], &[r#"le="60.0""#]].concat();
        assert_eq!(
            sample(
                &text,
                "apiserver_request_duration_seconds_bucket",
                &slowest_bucket
            ),
            Some(1.0),
            "{text}"
        );
        let watched = [r#"verb="WATCH""#, r#"resource="pods""#, r#"code="200""#];
        assert_eq!(
            sample(&text, "apiserver_request_total", &watched),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "apiserver_request_duration_seconds_count",
                &[r#"verb="WATCH""#]
            ),
            None,
            "{text}"
        );
    }

    #[test]
    fn eviction_bodies_name_their_pod_and_carry_delete_options() {
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {"gracePeriodSeconds": 5, "dryRun": ["All"]}});
        let options = eviction_delete_options(&body, "web-1", "default").unwrap();
        assert_eq!(options.grace_period_seconds, Some(5));
        assert!(options.dry_run);
        let mut beta = body.clone();
        beta["apiVersion"] = json!("policy/v1beta1");
        assert!(eviction_delete_options(&beta, "web-1", "default").is_ok());

        let refused = [
            (
                json!({"metadata": {"name": "other"}}),
                "name in URL does not match name in Eviction object",
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": "web-1"}}),
                "the kind in the data (Pod) does not match the expected kind (Eviction)",
            ),
            (
                json!({"metadata": {"name": "web-1", "namespace": "kube-system"}}),
                "the namespace of the provided object does not match the namespace sent on the request",
            ),
            (
                json!({"metadata": {"name": "web-1"}, "deleteOptions": {"gracePeriodSeconds": "soon"}}),
                "Eviction in version \"v1\" cannot be handled as a Eviction: deleteOptions.gracePeriodSeconds: invalid type, expected an integer",
            ),
            (json!([1]), "Object 'Kind' is missing in '[1]'"),
        ];
        for (body, want) in refused {
            let err = eviction_delete_options(&body, "web-1", "default").unwrap_err();
            assert_eq!(err.status_code(), StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err.to_string(), want, "{body}");
        }
    }

    #[test]
    fn lists_encode_as_the_json_tree_would() {
        let pods = capstan_api::resource::find("", "v1", "pods").unwrap();
        let metadata = json!({"resourceVersion": "7"});
        let items = vec![
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "b"}}),
        ];
        let write = |out: &mut Vec<u8>, item: &Value| serde_json::to_writer(out, item).unwrap();
        let encoded: Value =
            serde_json::from_slice(&encode_list(pods, &metadata, &items, write)).unwrap();
        let tree =
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items});
        assert_eq!(encoded, tree);
        let empty: Value =
            serde_json::from_slice(&encode_list(pods, &metadata, &[], write)).unwrap();
        assert_eq!(empty["items"], json!([]));
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(rendering(accept).unwrap(), Rendering::Table);
        assert_eq!(rendering("application/json").unwrap(), Rendering::Object);
        assert_eq!(
            rendering("application/vnd.kubernetes.protobuf, application/json").unwrap(),
            Rendering::Object
        );
        assert_eq!(
            rendering("application/vnd.kubernetes.protobuf").unwrap(),
            Rendering::Protobuf
        );
        assert!(rendering("application/xml").is_err());
    }

    #[test]
    fn aggregated_discovery_is_recognised_in_both_versions() {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_discovery(accept), Some("v2"));
        assert_eq!(
            aggregated_discovery(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some("v2beta1")
        );
        assert_eq!(aggregated_discovery("application/json, */*"), None);
    }

    #[test]
    fn hostile_yaml_is_refused_not_expanded() {
        let deep = format!("a: {}{}", "[".repeat(50_000), "]".repeat(50_000));
        let err = decode_body(Some("application/yaml"), deep.as_bytes()).unwrap_err();
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
        // Nine levels of nine-fold aliases would expand to 387 million nodes.
        let mut laughs = String::from("x0: &a0 [l,l,l,l,l,l,l,l,l]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(",");
            laughs.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
        }
        let err = decode_body(Some("application/yaml"), laughs.as_bytes()).unwrap_err();
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn bodies_decode_as_json_or_yaml_and_other_types_are_refused() {
        assert_eq!(decode_body(None, br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(
            decode_body(Some("application/yaml"), b"a: 1\nb: [x]\n").unwrap(),
            json!({"a": 1, "b": ["x"]})
        );
        let err = decode_body(Some("application/json"), b"{\"a\":").unwrap_err();
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
        let err = decode_body(Some("application/cbor"), b"{}").unwrap_err();
        assert_eq!(err.status_code(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn protobuf_bodies_decode_and_malformed_ones_answer_400() {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
        let body = protobuf::encode(&namespace).unwrap();
        assert_eq!(
            decode_body(Some(protobuf::MEDIA_TYPE), &body).unwrap(),
            namespace
        );
        for bad in [&b"k8s\0"[..], b"{}", &body[..body.len() - 3]] {
            let err = decode_body(Some(protobuf::MEDIA_TYPE), bad).unwrap_err();
            assert_eq!(err.status_code(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn a_client_that_accepts_only_protobuf_gets_protobuf() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
        let response = object_response(StatusCode::CREATED, protobuf::MEDIA_TYPE, &secret);
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[CONTENT_TYPE], protobuf::MEDIA_TYPE);
        let response = object_response(
            StatusCode::OK,
            "application/vnd.kubernetes.protobuf, application/json",
            &secret,
        );
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }
}
