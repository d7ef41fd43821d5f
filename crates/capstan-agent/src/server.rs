//! The agent's HTTPS endpoint (kubelet's port 10250), which the API server calls to serve
//! `kubectl logs` (and later exec, attach and port-forward). Only clients with a certificate
//! from the cluster CA get in: in practice, the API server.

use std::convert::Infallible;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use capstan_runtime::ContainerState;
use capstan_runtime::logs::{self, LogOptions};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

use crate::worker::{Shared, container_id, parse_container_id};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

/// Why the endpoint could not start; fatal for the agent.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading the agent's certificates: {0}")]
    Pem(String),
    #[error("configuring TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// TLS for the endpoint: our serving certificate, and client certificates required from the
/// cluster CA.
pub fn tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = |pem: &str| {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServeError::Pem(e.to_string()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(ca_pem)? {
        roots.add(ca)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| ServeError::Pem(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| ServeError::Pem(e.to_string()))?
        .ok_or_else(|| ServeError::Pem("no private key".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert_pem)?, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, shared: Arc<Shared>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(route(&shared, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn full(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(text.into()).boxed());
    *response.status_mut() = status;
    response
}

async fn route(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz"] => full(StatusCode::OK, "ok"),
        ["stats", "summary"] => {
            let mut response = full(StatusCode::OK, crate::stats::summary(shared).to_string());
            response.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
        ["containerLogs", namespace, pod, container] => {
            container_logs(shared, namespace, pod, container, &query).await
        }
        ["exec", namespace, pod, container] => {
            let (namespace, pod, container) = (
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            );
            exec(shared, request, &namespace, &pod, &container, &query, false)
        }
        ["portForward", namespace, pod] => {
            let Some(uid) = pod_uid(shared, namespace, pod) else {
                return full(
                    StatusCode::NOT_FOUND,
                    format!("pod {namespace}/{pod} not found on this node"),
                );
            };
            let netns = shared.pods_dir.join(&uid).join("ns").join("net");
            match crate::portforward::upgrade(request, netns, pod.to_string()) {
                Ok(response) => response,
                Err((status, message)) => full(status, message),
            }
        }
        ["attach", namespace, pod, container] => {
            let (namespace, pod, container) = (
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            );
            exec(shared, request, &namespace, &pod, &container, &query, true)
        }
        _ => full(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// `kubectl exec` and `kubectl attach`: upgrades to the stream protocol and runs the command
/// in (or attaches to) the container's current, running attempt.
fn exec(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &[(String, String)],
    attach: bool,
) -> Response<Body> {
    let flag = |key: &str| {
        query
            .iter()
            .any(|(k, v)| k == key && (v == "true" || v == "1"))
    };
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() && !attach {
        return full(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container",
        );
    }
    let Some(uid) = pod_uid(shared, namespace, pod) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} not found on this node"),
        );
    };
    let running = log_file(shared, &uid, container, false)
        .map(|(_, id)| id)
        .filter(|id| matches!(shared.runtime.state(id), Ok(ContainerState::Running(_))));
    let Some(id) = running else {
        return full(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {pod}"),
        );
    };
    let options = crate::exec::ExecOptions {
        attach,
        command,
        stdin: flag("stdin"),
        tty: flag("tty"),
    };
    match crate::exec::upgrade(shared, request, shared.runtime.dir(&id), options) {
        Ok(response) => response,
        Err((status, message)) => full(status, message),
    }
}

/// The UID of a pod on this node, by namespace and name.
pub fn pod_uid(shared: &Shared, namespace: &str, name: &str) -> Option<String> {
    shared
        .pod_names
        .read()
        .ok()?
        .get(&format!("{namespace}/{name}"))
        .cloned()
}

/// The log file of container `name` of pod `uid`: the current attempt, or the one before.
fn log_file(shared: &Shared, uid: &str, name: &str, previous: bool) -> Option<(PathBuf, String)> {
    let latest = shared
        .runtime
        .list()
        .ok()?
        .iter()
        .filter_map(|id| {
            parse_container_id(id)
                .filter(|(u, n, _)| *u == uid && *n == name)
                .map(|(_, _, a)| a)
        })
        .max()?;
    let attempt = if previous {
        latest.checked_sub(1)?
    } else {
        latest
    };
    let id = container_id(uid, name, attempt);
    Some((shared.runtime.log_path(&id)?, id))
}

async fn container_logs(
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &[(String, String)],
) -> Response<Body> {
    let get = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let flag = |key: &str| get(key).is_some_and(|v| v == "true" || v == "1");
    let Some(uid) = pod_uid(shared, namespace, pod) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} not found on this node"),
        );
    };
    let previous = flag("previous");
    let Some((path, id)) = log_file(shared, &uid, container, previous) else {
        let message = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return full(StatusCode::BAD_REQUEST, message);
    };
    let since = match (
        get("sinceSeconds").and_then(|s| s.parse::<i64>().ok()),
        get("sinceTime"),
    ) {
        (Some(seconds), _) => {
            Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds))
        }
        (None, Some(time)) => time.parse().ok(),
        _ => None,
    };
    let options = LogOptions {
        tail_lines: get("tailLines").and_then(|t| t.parse().ok()),
        since,
        timestamps: flag("timestamps"),
        limit_bytes: get("limitBytes").and_then(|l| l.parse().ok()),
    };
    let existing = match tokio::task::spawn_blocking({
        let path = path.clone();
        let options = options.clone();
        move || logs::read_log(&path, &options)
    })
    .await
    {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the log: {e}"),
            );
        }
        Err(_) => return full(StatusCode::INTERNAL_SERVER_ERROR, "reading the log failed"),
    };
    if !flag("follow") || previous {
        return full(StatusCode::OK, existing);
    }
    // Follow: what is there now, then new lines as they come, until the container ends.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        if !existing.is_empty()
            && sender
                .send(Ok(Frame::data(Bytes::from(existing))))
                .await
                .is_err()
        {
            return;
        }
        follow(&shared, &path, &id, options.timestamps, sender).await;
    });
    let stream = futures_util::stream::unfold(receiver, |mut r| async move {
        r.recv().await.map(|item| (item, r))
    });
    Response::new(BodyExt::boxed(StreamBody::new(stream)))
}

/// Sends lines appended to `path` after its current end until the container has ended and
/// everything it wrote was sent, or the client went away.
async fn follow(
    shared: &Shared,
    path: &Path,
    id: &str,
    timestamps: bool,
    sender: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return;
    };
    let Ok(mut offset) = file.seek(SeekFrom::End(0)).await else {
        return;
    };
    let mut pending = Vec::new();
    let mut at_line_start = true;
    loop {
        let ended = !matches!(
            shared.runtime.state(id),
            Ok(ContainerState::Running(_) | ContainerState::Creating)
        );
        let mut chunk = Vec::new();
        if file.seek(SeekFrom::Start(offset)).await.is_ok()
            && let Ok(n) = file.read_to_end(&mut chunk).await
        {
            offset += n as u64;
            pending.extend_from_slice(&chunk);
        }
        // Only whole records are parsed; a record cut mid-write waits for its end.
        if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
            let records: Vec<u8> = pending.drain(..=end).collect();
            let mut out = Vec::new();
            for record in records.split(|&b| b == b'\n') {
                let Some((timestamp, _, full, text)) = logs::parse_record(record) else {
                    continue;
                };
                if timestamps && at_line_start {
                    out.extend_from_slice(timestamp.as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(text);
                if full {
                    out.push(b'\n');
                }
                at_line_start = full;
            }
            if !out.is_empty()
                && sender
                    .send(Ok(Frame::data(Bytes::from(out))))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if ended || sender.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
