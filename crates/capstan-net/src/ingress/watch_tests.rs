//! The watcher against a fake API server on 127.0.0.1: lists answer from a table, watches
//! stream the events a test pushes. The proxy must follow both on an open connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use super::proxy_tests::{ClientBody, backend, connect, get};
use super::routes::SERVICE_NAME_LABEL;
use super::{IngressConfig, SharedSnapshot, serve, watch};

const INGRESSES: &str = "/apis/networking.k8s.io/v1/ingresses";
const CLASSES: &str = "/apis/networking.k8s.io/v1/ingressclasses";
const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const SECRETS: &str = "/api/v1/secrets";

/// Collections by path, the watch events pushed so far, and the query strings asked.
#[derive(Clone)]
struct FakeApi {
    lists: Arc<Mutex<HashMap<&'static str, Vec<Value>>>>,
    events: broadcast::Sender<(&'static str, Value)>,
    queries: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    async fn start(lists: HashMap<&'static str, Vec<Value>>) -> (Self, SocketAddr) {
        let api = Self {
            lists: Arc::new(Mutex::new(lists)),
            events: broadcast::channel(64).0,
            queries: Arc::default(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let api = server.clone();
                let service = service_fn(move |request| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(api.answer(request)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (api, addr)
    }

    fn answer(&self, request: Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        self.queries.lock().unwrap().push(format!("{path}?{query}"));
        let Some(collection) = [INGRESSES, CLASSES, SERVICES, SLICES, SECRETS]
            .into_iter()
            .find(|c| *c == path)
        else {
            return Response::builder()
                .status(404)
                .body(Full::new(Bytes::from_static(b"{}")).boxed())
                .unwrap();
        };
        if query.contains("watch=true") {
            let events = self.events.subscribe();
            let frames = stream::unfold(events, move |mut events| async move {
                loop {
                    match events.recv().await {
                        Ok((c, event)) if c == collection => {
                            let mut line = serde_json::to_vec(&event).unwrap();
                            line.push(b'\n');
                            return Some((Ok(Frame::data(Bytes::from(line))), events));
                        }
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
            });
            return Response::new(BodyExt::boxed(StreamBody::new(frames)));
        }
        let items = self.lists.lock().unwrap()[collection].clone();
        let list = json!({"metadata": {"resourceVersion": "1"}, "items": items});
        Response::new(Full::new(Bytes::from(list.to_string())).boxed())
    }

    fn push(&self, collection: &'static str, kind: &str, object: Value) {
        self.events
            .send((collection, json!({"type": kind, "object": object})))
            .unwrap();
    }
}

fn ingress(service: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "2",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "capstan", "rules": [{"host": "app.test", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]},
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "2"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    })
}

fn slice(service: &str, endpoint: SocketAddr) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "resourceVersion": "2", "labels": {SERVICE_NAME_LABEL: service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": endpoint.port()}],
        "endpoints": [{"addresses": [endpoint.ip().to_string()], "conditions": {"ready": true}}],
    })
}

/// Asks `app.test` on `connection` until it answers `want` (the watcher debounces).
async fn wait_for(connection: &mut SendRequest<ClientBody>, want: &str) {
    for _ in 0..250 {
        if get(connection, "app.test", "/").await.body == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("app.test never answered {want:?}");
}

#[tokio::test]
async fn the_watcher_serves_listed_ingresses_and_follows_watch_events() {
    let (a, b) = (backend("a").await, backend("b").await);
    let lists = HashMap::from([
        (INGRESSES, vec![ingress("a")]),
        (CLASSES, vec![]),
        (SERVICES, vec![service("a")]),
        (SLICES, vec![slice("a", a)]),
        (SECRETS, vec![]),
    ]);
    let (api, api_addr) = FakeApi::start(lists).await;
    let config = kube::Config::new(format!("http://{api_addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();

    let shared = SharedSnapshot::default();
    let proxy_config = IngressConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        https: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let server = serve(&proxy_config, shared.clone()).await.unwrap();
    let watcher = tokio::spawn(watch::watch(client, shared));
    let mut connection = connect(server.http_addr()).await;

    wait_for(&mut connection, "a").await;

    api.push(SERVICES, "ADDED", service("b"));
    api.push(SLICES, "ADDED", slice("b", b));
    api.push(INGRESSES, "MODIFIED", ingress("b"));
    wait_for(&mut connection, "b").await;

    api.push(INGRESSES, "DELETED", ingress("b"));
    wait_for(&mut connection, "404 page not found\n").await;

    let queries = api.queries.lock().unwrap().clone();
    assert!(
        queries
            .iter()
            .any(|q| q.starts_with(SECRETS)
                && q.contains("fieldSelector=type%3Dkubernetes.io%2Ftls")),
        "TLS secrets only: {queries:?}"
    );
    watcher.abort();
}
