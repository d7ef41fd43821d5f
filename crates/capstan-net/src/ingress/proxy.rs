//! The proxy: hyper HTTP/1.1 servers (keep-alive) on the HTTP and HTTPS addresses, routing
//! each request through the snapshot current when it arrives and forwarding it with hyper's
//! pooled client to one endpoint of its backend, round-robin.
//!
//! Bodies stream both ways, frame by frame; nothing is buffered whole. A connection refused
//! or timing out upstream is retried once on the next endpoint (the request body is still
//! unread then); any other upstream failure answers 502. Upgrades (WebSocket) are relayed as
//! a byte tunnel once the endpoint answers 101.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::routes::Route;
use super::tls::{fallback_certificate, server_config};
use super::{IngressConfig, IngressError, SharedSnapshot};

/// Bodies of responses: the endpoint's, streamed, or one of ours.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

pub const NOT_FOUND_BODY: &str = "404 page not found\n";
pub const BAD_GATEWAY_BODY: &str = "502 Bad Gateway\n";
pub const UNAVAILABLE_BODY: &str = "503 Service Temporarily Unavailable\n";

/// Idle upstream connections are closed after this.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Headers of one hop only (RFC 9110 7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The running listeners; dropping it stops accepting and closes open connections.
pub struct IngressServer {
    http_addr: SocketAddr,
    https_addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl IngressServer {
    /// The plain HTTP address (the real port when bound to port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The HTTPS address (the real port when bound to port 0).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// Waits until a listener stops (it doesn't, short of a panic).
    pub async fn wait(&mut self) {
        if let Some(Err(e)) = self.tasks.join_next().await {
            tracing::error!("ingress listener stopped: {e}");
        }
    }
}

/// Starts answering on `config.http` and `config.https` from `snapshot`. Returns once both
/// listeners are bound; later changes to `snapshot` apply to the next request of every
/// connection and to the next TLS handshake.
pub async fn serve(
    config: &IngressConfig,
    snapshot: SharedSnapshot,
) -> Result<IngressServer, IngressError> {
    let http = bind(config.http, "HTTP").await?;
    let https = bind(config.https, "HTTPS").await?;
    let http_addr = local_addr(&http, config.http, "HTTP")?;
    let https_addr = local_addr(&https, config.https, "HTTPS")?;
    let acceptor = TlsAcceptor::from(server_config(snapshot.clone(), fallback_certificate()?)?);

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.upstream_connect_timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector);
    let proxy = Arc::new(Proxy { snapshot, client });

    let mut tasks = JoinSet::new();
    let listener = Listener {
        proxy: proxy.clone(),
        tls: None,
        header_timeout: config.client_header_timeout,
    };
    tasks.spawn(listener.accept_loop(http));
    let listener = Listener {
        proxy,
        tls: Some(acceptor),
        header_timeout: config.client_header_timeout,
    };
    tasks.spawn(listener.accept_loop(https));
    Ok(IngressServer {
        http_addr,
        https_addr,
        tasks,
    })
}

async fn bind(addr: SocketAddr, protocol: &'static str) -> Result<TcpListener, IngressError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| IngressError::Bind {
            protocol,
            addr,
            source,
        })
}

fn local_addr(
    listener: &TcpListener,
    addr: SocketAddr,
    protocol: &'static str,
) -> Result<SocketAddr, IngressError> {
    listener.local_addr().map_err(|source| IngressError::Bind {
        protocol,
        addr,
        source,
    })
}

/// One listener: plain, or TLS with certificates by SNI.
struct Listener {
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
}

impl Listener {
    /// Accepts forever; connections live in a set owned by this task, so stopping the task
    /// closes them.
    async fn accept_loop(self, listener: TcpListener) {
        let this = Arc::new(self);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(this.clone().connection(stream, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: give closing ones a moment.
                        tracing::warn!("ingress accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let local_port = stream.local_addr().map(|a| a.port()).unwrap_or_default();
        let Some(acceptor) = &self.tls else {
            self.serve_http(stream, peer, local_port, Scheme::Http)
                .await;
            return;
        };
        match tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                self.serve_http(stream, peer, local_port, Scheme::Https)
                    .await
            }
            Ok(Err(e)) => tracing::debug!("ingress TLS handshake with {peer}: {e}"),
            Err(_) => tracing::debug!("ingress TLS handshake with {peer} timed out"),
        }
    }

    async fn serve_http<I>(&self, io: I, peer: SocketAddr, local_port: u16, scheme: Scheme)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.proxy.clone();
        let client = ClientInfo {
            peer: peer.ip(),
            local_port,
            scheme,
        };
        let service = service_fn(move |request| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            tracing::debug!("ingress connection from {peer}: {e}");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// What the `X-Forwarded-*` headers say about the client.
#[derive(Debug, Clone, Copy)]
struct ClientInfo {
    peer: IpAddr,
    local_port: u16,
    scheme: Scheme,
}

struct Proxy {
    snapshot: SharedSnapshot,
    client: Client<HttpConnector, ReplayableBody>,
}

impl Proxy {
    async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: ClientInfo,
    ) -> Response<ProxyBody> {
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                let host = request.headers().get(header::HOST)?;
                host.to_str().ok().map(str::to_owned)
            })
            .unwrap_or_default();
        let backend = match self
            .snapshot
            .load()
            .routes
            .route(&host, request.uri().path())
        {
            Route::Backend(backend) => backend.clone(),
            Route::NotFound => return local(StatusCode::NOT_FOUND, NOT_FOUND_BODY),
        };
        let Some(first) = backend.pick() else {
            return local(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY);
        };

        let upgrade = upgrade_protocol(request.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        forward_headers(&mut headers, &host, client, upgrade);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let body = ReplayableBody::new(body);

        let endpoints = &backend.endpoints;
        // A refused or timed-out connection is retried once, on the next endpoint.
        let retry = (endpoints.len() > 1).then(|| (first + 1) % endpoints.len());
        for index in [Some(first), retry].into_iter().flatten() {
            let last = retry.is_none() || retry == Some(index);
            let endpoint = endpoints[index];
            let Ok(uri) = Uri::try_from(format!("http://{endpoint}{path}")) else {
                return local(StatusCode::BAD_REQUEST, "400 Bad Request\n");
            };
            let mut upstream = Request::new(body.replay());
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = uri;
            *upstream.version_mut() = Version::HTTP_11;
            *upstream.headers_mut() = if last {
                std::mem::take(&mut headers)
            } else {
                headers.clone()
            };
            match self.client.request(upstream).await {
                Ok(response) => return respond(response, client_upgrade),
                Err(e) if e.is_connect() && !last => {
                    tracing::debug!(
                        "ingress upstream {endpoint} of {}/{}: {e}; trying another",
                        backend.namespace,
                        backend.service
                    );
                }
                Err(e) => {
                    tracing::debug!(
                        "ingress upstream {endpoint} of {}/{}: {e}",
                        backend.namespace,
                        backend.service
                    );
                    return local(StatusCode::BAD_GATEWAY, BAD_GATEWAY_BODY);
                }
            }
        }
        local(StatusCode::BAD_GATEWAY, BAD_GATEWAY_BODY)
    }
}

/// The endpoint's response to the client; a 101 joins both upgraded connections.
fn respond(
    mut response: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        return response.map(Either::Left);
    }
    remove_hop_by_hop(response.headers_mut());
    response.headers_mut().remove(header::UPGRADE);
    response.map(Either::Left)
}

fn local(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The protocol a request asks to upgrade to, if its `Connection` header says `upgrade`.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The request headers as the endpoint sees them: hop-by-hop ones gone (but for an upgrade),
/// the client's address appended to `X-Forwarded-For`, the other `X-Forwarded-*` set.
fn forward_headers(
    headers: &mut HeaderMap,
    host: &str,
    client: ClientInfo,
    upgrade: Option<HeaderValue>,
) {
    remove_hop_by_hop(headers);
    headers.remove(header::UPGRADE);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    let peer = client.peer.to_string();
    let forwarded_for = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .chain([peer.as_str()])
        .collect::<Vec<_>>()
        .join(", ");
    let set = |headers: &mut HeaderMap, name: &HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), value);
        }
    };
    set(headers, &X_FORWARDED_FOR, &forwarded_for);
    set(headers, &X_REAL_IP, &peer);
    set(headers, &X_FORWARDED_HOST, host);
    set(headers, &X_FORWARDED_PROTO, client.scheme.as_str());
    set(headers, &X_FORWARDED_PORT, &client.local_port.to_string());
}

/// The client's request body, handed to whichever upstream attempt polls it first.
///
/// An attempt that fails to connect never polls its body, so the next attempt still finds
/// the body in the shared slot: no buffering is needed to retry on another endpoint.
struct ReplayableBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    body: Option<Incoming>,
    end_stream: bool,
    size_hint: SizeHint,
}

impl ReplayableBody {
    fn new(body: Incoming) -> Self {
        Self {
            end_stream: body.is_end_stream(),
            size_hint: body.size_hint(),
            slot: Arc::new(Mutex::new(Some(body))),
            body: None,
        }
    }

    /// A handle for one more attempt.
    fn replay(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            body: None,
            end_stream: self.end_stream,
            size_hint: self.size_hint,
        }
    }
}

impl Body for ReplayableBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.body.is_none() {
            this.body = this
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        match &mut this.body {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .map_or(self.end_stream, Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map_or(self.size_hint, Body::size_hint)
    }
}
