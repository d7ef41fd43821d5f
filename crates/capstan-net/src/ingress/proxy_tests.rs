//! The proxy for real on 127.0.0.1: backends are tiny hyper servers, clients are hyper
//! connections (plain or rustls) whose reuse the tests control.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::routes::tests::{ingress, service, slice};
use super::tls::{FALLBACK_COMMON_NAME, TLS_SECRET_TYPE, provider};
use super::{IngressConfig, IngressServer, SharedSnapshot, Snapshot, serve};

pub(super) type ClientBody = BoxBody<Bytes, Infallible>;

fn full(text: &'static str) -> ClientBody {
    Full::new(Bytes::from_static(text.as_bytes())).boxed()
}

/// A backend answering `name` with the request's path and forwarding headers echoed as
/// `seen-*` response headers; POST bodies are echoed as they stream in; `Upgrade: echo`
/// switches to a byte echo.
pub(super) async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(move |request| answer(name, request));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    addr
}

async fn answer(
    name: &'static str,
    mut request: Request<Incoming>,
) -> Result<Response<Either<Incoming, Full<Bytes>>>, Infallible> {
    if request.headers().get("upgrade").is_some() {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = TokioIo::new(upgrade.await.unwrap());
            let (mut reader, mut writer) = tokio::io::split(upgraded);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Either::Right(Full::default()))
            .unwrap();
        return Ok(response);
    }
    let mut response = Response::builder()
        .header("x-backend", name)
        .header("seen-path", request.uri().to_string());
    for header in [
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    ] {
        if let Some(value) = request.headers().get(header) {
            response = response.header(format!("seen-{header}"), value);
        }
    }
    let body = if request.method() == hyper::Method::POST {
        Either::Left(request.into_body())
    } else {
        Either::Right(Full::new(Bytes::from(name)))
    };
    Ok(response.body(body).unwrap())
}

/// An address nothing listens on.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Services named after `backends` (port `http` 80 → each address), the Ingress `rules` and
/// `tls` of class capstan, and `secrets`.
fn snapshot(
    rules: Value,
    tls: Value,
    backends: &[(&str, Vec<SocketAddr>)],
    secrets: &[Secret],
) -> Snapshot {
    let ingresses = [ingress(
        "web",
        "2024-01-01T00:00:00Z",
        json!({"ingressClassName": "capstan", "rules": rules, "tls": tls}),
    )];
    let services: Vec<_> = backends
        .iter()
        .map(|(name, _)| service(name, json!([{"name": "http", "port": 80}])))
        .collect();
    let slices: Vec<_> = backends
        .iter()
        .flat_map(|(name, addrs)| {
            addrs
                .iter()
                .map(|addr| slice(name, addr.port(), &[(&addr.ip().to_string(), true)]))
        })
        .collect();
    Snapshot::build(&ingresses, [], &services, &slices, secrets)
}

fn rule(host: &str, path: &str, service: &str) -> Value {
    json!({"host": host, "http": {"paths": [{"path": path, "pathType": "Prefix",
        "backend": {"service": {"name": service, "port": {"name": "http"}}}}]}})
}

async fn start(snapshot: Snapshot) -> (IngressServer, SharedSnapshot) {
    let shared = SharedSnapshot::new(snapshot);
    let config = IngressConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        https: "127.0.0.1:0".parse().unwrap(),
        upstream_connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    (serve(&config, shared.clone()).await.unwrap(), shared)
}

/// One keep-alive client connection.
pub(super) async fn connect(addr: SocketAddr) -> SendRequest<ClientBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    handshake(stream).await
}

async fn handshake<I>(io: I) -> SendRequest<ClientBody>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection.with_upgrades());
    sender
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

async fn send(sender: &mut SendRequest<ClientBody>, request: Request<ClientBody>) -> Answer {
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

pub(super) async fn get(sender: &mut SendRequest<ClientBody>, host: &str, path: &str) -> Answer {
    let request = Request::get(path)
        .header("host", host)
        .body(full(""))
        .unwrap();
    send(sender, request).await
}

#[tokio::test]
async fn requests_are_routed_by_host_and_path_to_two_backends() {
    let (a, b) = (backend("a").await, backend("b").await);
    let (server, _) = start(snapshot(
        json!([rule("a.test", "/", "a"), rule("b.test", "/api", "b")]),
        json!([]),
        &[("a", vec![a]), ("b", vec![b])],
        &[],
    ))
    .await;
    let mut client = connect(server.http_addr()).await;
    for (host, path, status, body) in [
        ("a.test", "/", StatusCode::OK, "a"),
        ("a.test:80", "/anything?q=1", StatusCode::OK, "a"),
        ("b.test", "/api/v1", StatusCode::OK, "b"),
        (
            "b.test",
            "/apis",
            StatusCode::NOT_FOUND,
            "404 page not found\n",
        ),
        ("c.test", "/", StatusCode::NOT_FOUND, "404 page not found\n"),
    ] {
        let answer = get(&mut client, host, path).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (status, body),
            "{host}{path}"
        );
        if status == StatusCode::OK {
            assert_eq!(answer.header("seen-path"), path, "query kept");
            assert_eq!(answer.header("seen-host"), host, "Host kept");
        }
    }
}

#[tokio::test]
async fn forwarding_headers_name_the_client() {
    let a = backend("a").await;
    let (server, _) = start(snapshot(
        json!([rule("a.test", "/", "a")]),
        json!([]),
        &[("a", vec![a])],
        &[],
    ))
    .await;
    let mut client = connect(server.http_addr()).await;
    let answer = get(&mut client, "a.test", "/").await;
    assert_eq!(answer.header("seen-x-forwarded-for"), "127.0.0.1");
    assert_eq!(answer.header("seen-x-real-ip"), "127.0.0.1");
    assert_eq!(answer.header("seen-x-forwarded-host"), "a.test");
    assert_eq!(answer.header("seen-x-forwarded-proto"), "http");

    let request = Request::get("/")
        .header("host", "a.test")
        .header("x-forwarded-for", "192.0.2.7")
        .body(full(""))
        .unwrap();
    let answer = send(&mut client, request).await;
    assert_eq!(
        answer.header("seen-x-forwarded-for"),
        "192.0.2.7, 127.0.0.1"
    );
}

#[tokio::test]
async fn a_backend_without_endpoints_is_unavailable_and_a_dead_one_a_bad_gateway() {
    let (alive, dead) = (backend("alive").await, dead_address().await);
    let (server, _) = start(snapshot(
        json!([
            rule("empty.test", "/", "empty"),
            rule("dead.test", "/", "dead"),
            rule("half.test", "/", "half"),
        ]),
        json!([]),
        &[
            ("empty", vec![]),
            ("dead", vec![dead]),
            ("half", vec![dead, alive]),
        ],
        &[],
    ))
    .await;
    let mut client = connect(server.http_addr()).await;
    assert_eq!(
        get(&mut client, "empty.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&mut client, "dead.test", "/").await.status,
        StatusCode::BAD_GATEWAY
    );
    // Round-robin lands on the dead endpoint every other time; the retry hides it.
    for _ in 0..4 {
        let answer = get(&mut client, "half.test", "/").await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "alive")
        );
    }
}

#[tokio::test]
async fn bodies_stream_both_ways_without_waiting_for_the_end() {
    let a = backend("a").await;
    let (server, _) = start(snapshot(
        json!([rule("a.test", "/", "a")]),
        json!([]),
        &[("a", vec![a])],
        &[],
    ))
    .await;
    let mut client = connect(server.http_addr()).await;
    let (chunks, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let frames = stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), receiver))
    });
    let request = Request::post("/echo")
        .header("host", "a.test")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap();
    client.ready().await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), client.send_request(request))
        .await
        .expect("response head before the request body ended")
        .unwrap();
    let mut body = response.into_body();
    for chunk in ["first", "second"] {
        chunks.send(Bytes::from(chunk)).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("echo of a chunk before the request body ended")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), chunk);
    }
    drop(chunks);
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_new_route_table_applies_to_the_next_request_of_an_open_connection() {
    let (a, b) = (backend("a").await, backend("b").await);
    let backends = [("a", vec![a]), ("b", vec![b])];
    let (server, shared) = start(snapshot(
        json!([rule("app.test", "/", "a")]),
        json!([]),
        &backends,
        &[],
    ))
    .await;
    let mut client = connect(server.http_addr()).await;
    assert_eq!(get(&mut client, "app.test", "/").await.body, "a");

    shared.store(snapshot(
        json!([rule("app.test", "/", "b")]),
        json!([]),
        &backends,
        &[],
    ));
    // The same connection: hyper's SendRequest never reconnects.
    assert_eq!(get(&mut client, "app.test", "/").await.body, "b");
    shared.store(Snapshot::default());
    assert_eq!(
        get(&mut client, "app.test", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn upgraded_connections_are_relayed_as_a_tunnel() {
    let a = backend("a").await;
    let (server, _) = start(snapshot(
        json!([rule("a.test", "/", "a")]),
        json!([]),
        &[("a", vec![a])],
        &[],
    ))
    .await;
    let mut client = connect(server.http_addr()).await;
    let request = Request::get("/socket")
        .header("host", "a.test")
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(full(""))
        .unwrap();
    client.ready().await.unwrap();
    let response = client.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut tunnel = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    tunnel.write_all(b"ping").await.unwrap();
    let mut echoed = [0; 4];
    tunnel.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
}

fn tls_secret(name: &str, hosts: &[&str]) -> (Secret, CertificateDer<'static>) {
    let issued = rcgen::generate_simple_self_signed(
        hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        type_: Some(TLS_SECRET_TYPE.into()),
        data: Some(
            [
                (
                    "tls.crt".to_owned(),
                    ByteString(issued.cert.pem().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(issued.signing_key.serialize_pem().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    (secret, issued.cert.der().clone())
}

/// Accepts any certificate and remembers it.
#[derive(Debug, Default)]
struct RecordingVerifier {
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    config: rustls::ClientConfig,
) -> Result<SendRequest<ClientBody>, std::io::Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let stream = connector.connect(name, stream).await?;
    Ok(handshake(stream).await)
}

fn client_config() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
}

#[tokio::test]
async fn tls_certificates_are_chosen_by_sni_with_a_self_signed_fallback() {
    let a = backend("a").await;
    let (secure, secure_der) = tls_secret("secure", &["secure.test"]);
    let (server, _) = start(snapshot(
        json!([rule("secure.test", "/", "a"), rule("other.test", "/", "a")]),
        json!([{"hosts": ["secure.test"], "secretName": "secure"}]),
        &[("a", vec![a])],
        &[secure],
    ))
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(secure_der.clone()).unwrap();
    let trusting = || {
        client_config()
            .with_root_certificates(roots.clone())
            .with_no_client_auth()
    };
    let mut client = tls_connect(server.https_addr(), "secure.test", trusting())
        .await
        .expect("the secret's certificate for secure.test");
    let answer = get(&mut client, "secure.test", "/").await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, "a"));
    assert_eq!(answer.header("seen-x-forwarded-proto"), "https");

    // Another name gets the fallback, which the client doesn't trust...
    assert!(
        tls_connect(server.https_addr(), "other.test", trusting())
            .await
            .is_err()
    );
    // ...and which is the self-signed one with the well-known name.
    let verifier = Arc::new(RecordingVerifier::default());
    let config = client_config()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let mut client = tls_connect(server.https_addr(), "other.test", config)
        .await
        .unwrap();
    assert_eq!(get(&mut client, "other.test", "/").await.body, "a");
    let seen = verifier.seen.lock().unwrap().clone().unwrap();
    assert_ne!(seen, secure_der);
    assert!(
        seen.windows(FALLBACK_COMMON_NAME.len())
            .any(|w| w == FALLBACK_COMMON_NAME.as_bytes())
    );
}

#[tokio::test]
async fn a_new_certificate_applies_to_the_next_handshake() {
    let a = backend("a").await;
    let (server, shared) = start(snapshot(
        json!([rule("late.test", "/", "a")]),
        json!([]),
        &[("a", vec![a])],
        &[],
    ))
    .await;
    let (late, late_der) = tls_secret("late", &["late.test"]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(late_der).unwrap();
    let trusting = || {
        client_config()
            .with_root_certificates(roots.clone())
            .with_no_client_auth()
    };
    assert!(
        tls_connect(server.https_addr(), "late.test", trusting())
            .await
            .is_err()
    );
    shared.store(snapshot(
        json!([rule("late.test", "/", "a")]),
        json!([{"hosts": ["late.test"], "secretName": "late"}]),
        &[("a", vec![a])],
        &[late],
    ));
    let mut client = tls_connect(server.https_addr(), "late.test", trusting())
        .await
        .unwrap();
    assert_eq!(get(&mut client, "late.test", "/").await.body, "a");
}
