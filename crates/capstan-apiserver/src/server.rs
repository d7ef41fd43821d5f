//! The HTTPS front: TLS with optional client certificates, authentication, request size limits,
//! panic isolation, and HTTP/1.1 + HTTP/2 (kubectl speaks h2) on one port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authn::{TokenFile, UserInfo, user_from_certificate};
use crate::error::ApiError;
use crate::handler::{ApiRequest, Body, Handler, respond_error};
use crate::pki::Pki;
use crate::request::{Endpoint, Query, route};

/// Largest request body accepted (kube-apiserver's limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM files could not be parsed; they may be corrupt.
    #[error("reading PEM: {0}")]
    Pem(String),
    /// rustls refused the configuration (bad key or certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The rustls server configuration: the serving certificate, client certificates verified
/// against the cluster CA but optional (bearer tokens are the other way in), h2 and http/1.1.
pub fn tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = |pem: &str| -> Result<Vec<CertificateDer<'static>>, TlsError> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem(e.to_string()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&pki.ca_cert)? {
        roots.add(ca)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::Pem(e.to_string()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pki.server_key.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?
        .ok_or_else(|| TlsError::Pem("no private key in server.key".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&pki.server_cert)?, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Paths anyone may read, as Kubernetes' `system:public-info-viewer` role allows.
fn is_public(endpoint: &Endpoint) -> bool {
    matches!(endpoint, Endpoint::Version | Endpoint::Health)
}

/// Serves `handler` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<Handler>,
    tokens: Arc<TokenFile>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let certificate_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| user_from_certificate(cert));
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                let tokens = tokens.clone();
                let user = certificate_user.clone();
                async move { Ok::<_, Infallible>(handle(request, user, &tokens, &handler, peer).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Clients multiplex many watches on one connection (informers, the benchmark's 100
            // per connection); flow-control windows grow with what watchers drain.
            builder
                .http2()
                .adaptive_window(true)
                .max_concurrent_streams(1000);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    certificate_user: Option<UserInfo>,
    tokens: &TokenFile,
    handler: &Handler,
    peer: SocketAddr,
) -> Response<Body> {
    let user = certificate_user.or_else(|| {
        request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| tokens.authenticate(v))
    });
    let path = request.uri().path().to_string();
    // Joining nodes authenticate with a join token, not as API users (see `join`).
    match (request.method(), path.as_str()) {
        (&hyper::Method::GET, "/cacerts") => {
            let ca = std::fs::read_to_string(handler.pki_dir.join("ca.crt")).unwrap_or_default();
            return Response::new(http_body_util::Full::new(Bytes::from(ca)).boxed_unsync());
        }
        (&hyper::Method::POST, "/capstan/v1/join") => {
            let bearer = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = match read_body(request.into_body()).await {
                Ok(body) => body,
                Err(error) => return respond_error(&error),
            };
            return match crate::join::join(&handler.pki_dir, bearer.as_deref(), &body) {
                Ok(answer) => {
                    let json = serde_json::to_vec(&answer).unwrap_or_default();
                    let mut response =
                        Response::new(http_body_util::Full::new(Bytes::from(json)).boxed_unsync());
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    response
                }
                Err(error) => {
                    tracing::info!(%peer, "refused a node join: {error}");
                    respond_error(&error)
                }
            };
        }
        _ => {}
    }
    let query = Query::parse(request.uri().query());
    let user = match user {
        Some(user) => user,
        None => {
            let public = route(request.method(), &path, false).is_ok_and(|e| is_public(&e));
            if !public {
                return respond_error(&ApiError::Unauthorized);
            }
            UserInfo {
                name: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
            }
        }
    };
    // exec, attach and port-forward leave HTTP for a stream: proxied to the node's agent.
    if request.headers().contains_key(hyper::header::UPGRADE)
        && let Some((namespace, name, subresource)) = crate::connect::streaming_target(&path)
    {
        let (namespace, name, subresource) = (
            namespace.to_string(),
            name.to_string(),
            subresource.to_string(),
        );
        tracing::debug!(%peer, user = %user.name, %path, "stream");
        let started = std::time::Instant::now();
        let response = match handler
            .connect(request, &namespace, &name, &subresource)
            .await
        {
            Ok(response) => response,
            Err(error) => respond_error(&error),
        };
        // Streams bypass `Handler::handle`; they are counted here, as CONNECTs.
        handler.metrics.observe(
            &crate::metrics::RequestLabels::connect(&subresource),
            response.status().as_u16(),
            started.elapsed(),
        );
        return response;
    }
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let accept = header(ACCEPT).unwrap_or_default();
    let content_type = header(CONTENT_TYPE);
    let user_agent = header(hyper::header::USER_AGENT).unwrap_or_default();
    let method = request.method().clone();
    let body = match read_body(request.into_body()).await {
        Ok(body) => body,
        Err(error) => return respond_error(&error),
    };
    tracing::debug!(%peer, user = %user.name, %method, %path, "request");
    let api_request = ApiRequest {
        method,
        path,
        query,
        accept,
        content_type,
        body,
        user,
        user_agent,
    };
    isolate_panics(handler.handle(api_request)).await
}

/// Past the limit, this much more of an oversized body is read and dropped, so that the client
/// finishes sending and reads the 413 (an HTTP/2 stream reset mid-upload reads as a transport
/// error to clients such as curl); beyond it the connection is cut.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

/// Reads a request body of at most `MAX_BODY_BYTES`.
async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= MAX_BODY_BYTES {
            collected.extend_from_slice(&data);
        } else if seen > MAX_BODY_BYTES + MAX_DRAINED_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the request body is too large: the limit is {MAX_BODY_BYTES} bytes"
        )));
    }
    Ok(Bytes::from(collected))
}

/// Runs a handler so that a panic in it answers 500 and leaves the server serving everyone else.
pub(crate) async fn isolate_panics(
    handling: impl std::future::Future<Output = Response<Body>>,
) -> Response<Body> {
    match std::panic::AssertUnwindSafe(handling).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("handler panicked: {message}");
            respond_error(&ApiError::Internal(format!(
                "an internal error occurred: {message}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_version_and_health_are_public_not_metrics() {
        let public = |path| route(&hyper::Method::GET, path, false).is_ok_and(|e| is_public(&e));
        assert!(public("/version") && public("/healthz") && public("/readyz"));
        assert!(!public("/metrics"));
        assert!(!public("/api/v1/pods"));
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_a_status() {
        let response = isolate_panics(async { panic!("boom") }).await;
        assert_eq!(response.status().as_u16(), 500);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["reason"], "InternalError");
        assert_eq!(status["message"], "an internal error occurred: boom");
    }
}
