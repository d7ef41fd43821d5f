//! Pulls against an in-process registry that serves what each test puts in it and records
//! every request, so that tests can assert what crossed the network.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::oci::host_architecture;
use super::*;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A single-platform image: each layer is a list of `(path, content)` files.
struct TestImage {
    config: Vec<u8>,
    /// Gzipped layer blobs, bottom first.
    layers: Vec<Vec<u8>>,
    manifest: Vec<u8>,
}

impl TestImage {
    fn new(layers: &[&[(&str, &str)]]) -> Self {
        let plain: Vec<Vec<u8>> = layers.iter().map(|files| tar_of(files)).collect();
        let gzipped: Vec<Vec<u8>> = plain.iter().map(|tar| gzip(tar)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": host_architecture(),
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": plain.iter().map(|l| sha256(l)).collect::<Vec<_>>()},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(&config),
                "size": config.len(),
            },
            "layers": gzipped.iter().map(|l| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256(l),
                "size": l.len(),
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        TestImage {
            config,
            layers: gzipped,
            manifest,
        }
    }

    fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    fn blobs(&self) -> Vec<&[u8]> {
        std::iter::once(self.config.as_slice())
            .chain(self.layers.iter().map(Vec::as_slice))
            .collect()
    }
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// How the fake registry wants clients to authenticate.
#[derive(Clone)]
enum Auth {
    Open,
    /// HTTP basic authentication with this user and password on every request.
    Basic(&'static str, &'static str),
    /// Docker's token flow: a bearer token from `/token`, which wants this user and password.
    Bearer(&'static str, &'static str),
}

const TOKEN: &str = "fake-registry-token";

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        let body = json!({"errors": [{"code": code, "message": message}]});
        Response::new(status, "application/json", body.to_string().into_bytes())
    }
}

struct State {
    auth: Auth,
    address: String,
    /// Request path → (content type, body).
    content: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// `METHOD /path` of every request, in order.
    requests: Mutex<Vec<String>>,
}

struct FakeRegistry {
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeRegistry {
    async fn start(auth: Auth) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Arc::new(State {
            auth,
            address: listener.local_addr().unwrap().to_string(),
            content: Mutex::default(),
            requests: Mutex::default(),
        });
        let serving = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(serving.clone(), stream));
            }
        });
        FakeRegistry { state, server }
    }

    fn address(&self) -> &str {
        &self.state.address
    }

    fn put(&self, path: String, content_type: &str, body: &[u8]) {
        self.state
            .content
            .lock()
            .unwrap()
            .insert(path, (content_type.to_owned(), body.to_vec()));
    }

    fn put_blob(&self, repository: &str, blob: &[u8]) {
        let path = format!("/v2/{repository}/blobs/{}", sha256(blob));
        self.put(path, "application/octet-stream", blob);
    }

    fn put_manifest(&self, repository: &str, tag: &str, media_type: &str, manifest: &[u8]) {
        for reference in [tag.to_owned(), sha256(manifest)] {
            let path = format!("/v2/{repository}/manifests/{reference}");
            self.put(path, media_type, manifest);
        }
    }

    fn push(&self, repository: &str, tag: &str, image: &TestImage) {
        for blob in image.blobs() {
            self.put_blob(repository, blob);
        }
        self.put_manifest(repository, tag, OCI_IMAGE_MEDIA_TYPE, &image.manifest);
    }

    /// Requests for blobs, as `GET /v2/<repository>/blobs/<digest>`.
    fn blob_requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("/blobs/"))
            .cloned()
            .collect()
    }
}

/// Answers one request per connection.
async fn serve(state: Arc<State>, mut stream: TcpStream) {
    let mut request = Vec::new();
    let mut buffer = [0; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).to_string();
    let mut lines = request.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {path}"));

    let response = respond(&state, &path, authorization.as_deref());
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(&response.body).await;
    }
    let _ = stream.shutdown().await;
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn respond(state: &State, path: &str, authorization: Option<&str>) -> Response {
    let challenge = match &state.auth {
        Auth::Open => None,
        Auth::Basic(user, password) => (authorization != Some(&basic(user, password)))
            .then(|| r#"Basic realm="fake""#.to_owned()),
        Auth::Bearer(user, password) if path == "/token" => {
            return if authorization == Some(&basic(user, password)) {
                let body = json!({"token": TOKEN}).to_string().into_bytes();
                Response::new(200, "application/json", body)
            } else {
                Response::error(401, "UNAUTHORIZED", "authentication required")
            };
        }
        Auth::Bearer(..) => (authorization != Some(&format!("Bearer {TOKEN}"))).then(|| {
            format!(
                r#"Bearer realm="http://{}/token",service="fake""#,
                state.address
            )
        }),
    };
    if let Some(challenge) = challenge {
        let mut response = Response::error(401, "UNAUTHORIZED", "authentication required");
        response
            .headers
            .push(("WWW-Authenticate".into(), challenge));
        return response;
    }
    if path == "/v2/" {
        return Response::new(200, "application/json", b"{}".to_vec());
    }
    match state.content.lock().unwrap().get(path) {
        Some((content_type, body)) => {
            let mut response = Response::new(200, content_type, body.clone());
            if path.contains("/manifests/") {
                response
                    .headers
                    .push(("Docker-Content-Digest".into(), sha256(body)));
            }
            response
        }
        None if path.contains("/manifests/") => {
            Response::error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        }
        None => Response::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
    }
}

fn store() -> (TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

fn base_layer() -> &'static [(&'static str, &'static str)] {
    &[("etc/os-release", "ID=capstan-test\n")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_downloads_verifies_records_and_unpacks_an_image() {
    let registry = FakeRegistry::start(Auth::Open).await;
    let image = TestImage::new(&[base_layer(), &[("app/hello.txt", "hello\n")]]);
    registry.push("test/app", "1", &image);
    let (_dir, store) = store();
    let name = format!("{}/test/app:1", registry.address());

    let record = pull(&store, &name, &RegistryAuth::Anonymous).await.unwrap();

    assert_eq!(record.references, vec![name.clone()]);
    assert_eq!(record.digest, image.digest());
    assert_eq!(record.config_digest, sha256(&image.config));
    assert_eq!(
        record.size,
        image.layers.iter().map(|l| l.len() as u64).sum::<u64>()
    );
    assert_eq!(store.resolve(&name).unwrap(), Some(record.clone()));
    assert_eq!(store.config(&record).unwrap().cmd, vec!["sh"]);
    // Unpacked during the pull, as containerd's "pull and unpack" does.
    let layers = store.root().join("layers");
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 2);
    let dirs = store.layer_dirs(&record).unwrap();
    assert_eq!(
        std::fs::read_to_string(dirs[1].join("app/hello.txt")).unwrap(),
        "hello\n"
    );
    let mut fetched = registry.blob_requests();
    fetched.sort();
    let mut expected: Vec<String> = image
        .blobs()
        .iter()
        .map(|b| format!("GET /v2/test/app/blobs/{}", sha256(b)))
        .collect();
    expected.sort();
    assert_eq!(fetched, expected, "each blob exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_downloads_only_the_blobs_the_store_lacks() {
    let registry = FakeRegistry::start(Auth::Open).await;
    let first = TestImage::new(&[base_layer(), &[("app/v", "1\n")]]);
    let second = TestImage::new(&[base_layer(), &[("app/v", "2\n")]]);
    registry.push("test/app", "1", &first);
    registry.push("test/app", "2", &second);
    let (_dir, store) = store();
    let address = registry.address().to_owned();

    pull(
        &store,
        &format!("{address}/test/app:1"),
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let before = registry.blob_requests().len();
    // Pulling the same tag again (imagePullPolicy: Always) fetches the manifest only.
    pull(
        &store,
        &format!("{address}/test/app:1"),
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    assert_eq!(registry.blob_requests().len(), before);

    // The second image shares the base layer: its configuration and top layer are fetched.
    pull(
        &store,
        &format!("{address}/test/app:2"),
        &RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    let new: Vec<String> = registry.blob_requests().split_off(before);
    let mut expected = vec![
        format!("GET /v2/test/app/blobs/{}", sha256(&second.config)),
        format!("GET /v2/test/app/blobs/{}", sha256(&second.layers[1])),
    ];
    let mut new_sorted = new.clone();
    new_sorted.sort();
    expected.sort();
    assert_eq!(new_sorted, expected);
    // The shared layer is unpacked once, for both images.
    assert_eq!(
        std::fs::read_dir(store.root().join("layers"))
            .unwrap()
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_download_each_blob_once() {
    let registry = FakeRegistry::start(Auth::Open).await;
    let image = TestImage::new(&[base_layer(), &[("app/hello.txt", "hello\n")]]);
    registry.push("test/app", "1", &image);
    registry.push("test/app", "also", &image);
    let (_dir, store) = store();
    let name = format!("{}/test/app:1", registry.address());
    let other_name = format!("{}/test/app:also", registry.address());

    // Spawned, as the agent's pod workers run: this also proves the future is `Send`.
    let store = Arc::new(store);
    let spawn = |name: String| {
        let store = store.clone();
        tokio::spawn(async move { pull(&store, &name, &RegistryAuth::Anonymous).await })
    };
    let (a, b, c) = tokio::join!(
        spawn(name.clone()),
        spawn(name.clone()),
        spawn(other_name.clone())
    );
    let (a, b, c) = (
        a.unwrap().unwrap(),
        b.unwrap().unwrap(),
        c.unwrap().unwrap(),
    );
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.digest, c.digest);
    let fetched = registry.blob_requests();
    assert_eq!(fetched.len(), image.blobs().len(), "{fetched:#?}");
    assert_eq!(
        store
            .resolve(&other_name)
            .unwrap()
            .unwrap()
            .references
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_resolves_to_this_hosts_platform() {
    let registry = FakeRegistry::start(Auth::Open).await;
    let image = TestImage::new(&[base_layer()]);
    registry.push("test/multi", "untagged", &image);
    let foreign = if host_architecture() == "s390x" {
        "arm64"
    } else {
        "s390x"
    };
    // The foreign entry comes first and names a manifest the registry does not have: picking
    // it would fail the pull.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": [
            {"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": sha256(b"elsewhere"), "size": 9,
             "platform": {"os": "linux", "architecture": foreign}},
            {"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": image.digest(), "size": image.manifest.len(),
             "platform": {"os": "linux", "architecture": host_architecture()}},
        ],
    }))
    .unwrap();
    registry.put_manifest("test/multi", "1", OCI_IMAGE_INDEX_MEDIA_TYPE, &index);
    let (_dir, store) = store();
    let name = format!("{}/test/multi:1", registry.address());

    let record = pull(&store, &name, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(record.digest, image.digest());
    assert_eq!(record.references, vec![name.clone()]);

    // Named by the index's digest, the image is recorded under its manifest's digest.
    let by_index_digest = format!("{}/test/multi@{}", registry.address(), sha256(&index));
    let record = pull(&store, &by_index_digest, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert!(
        record.references.contains(&format!(
            "{}/test/multi@{}",
            registry.address(),
            image.digest()
        )),
        "{record:?}"
    );

    let only_foreign = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": [{"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": image.digest(),
                       "size": image.manifest.len(),
                       "platform": {"os": "linux", "architecture": foreign}}],
    }))
    .unwrap();
    registry.put_manifest("test/multi", "2", OCI_IMAGE_INDEX_MEDIA_TYPE, &only_foreign);
    let name = format!("{}/test/multi:2", registry.address());
    let error = pull(&store, &name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(
        matches!(error, PullError::NoMatchingPlatform { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "failed to pull and unpack image \"{name}\": no match for platform in manifest: not found"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_not_found_in_containerds_words() {
    let registry = FakeRegistry::start(Auth::Open).await;
    let (_dir, store) = store();
    let name = format!("{}/test/missing:1", registry.address());

    let error = pull(&store, &name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "failed to pull and unpack image \"{name}\": failed to resolve reference \"{name}\": {name}: not found"
        )
    );
    // Names are normalized first, as the kubelet and containerd do.
    let short = format!("{}/test/missing", registry.address());
    let error = pull(&store, &short, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("{short}:latest: not found")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_is_refused_and_not_stored() {
    let registry = FakeRegistry::start(Auth::Open).await;
    let image = TestImage::new(&[base_layer(), &[("app/v", "1\n")]]);
    registry.push("test/app", "1", &image);
    // Same length, other bytes.
    let layer_digest = sha256(&image.layers[1]);
    let mut tampered = image.layers[1].clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    registry.put(
        format!("/v2/test/app/blobs/{layer_digest}"),
        "application/octet-stream",
        &tampered,
    );
    let (_dir, store) = store();
    let name = format!("{}/test/app:1", registry.address());

    let error = pull(&store, &name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    match &error {
        PullError::FetchBlob { digest, .. } => assert_eq!(*digest, layer_digest),
        other => panic!("expected FetchBlob, got {other:?}"),
    }
    assert!(
        error.to_string().starts_with(&format!(
            "failed to pull and unpack image \"{name}\": failed to copy {layer_digest}: "
        )),
        "{error}"
    );
    assert!(!store.has_blob(&layer_digest));
    assert_eq!(store.resolve(&name).unwrap(), None);

    // A blob longer than its descriptor says is cut off, not stored.
    let mut longer = image.layers[1].clone();
    longer.extend_from_slice(&[0; 1024]);
    registry.put(
        format!("/v2/test/app/blobs/{layer_digest}"),
        "application/octet-stream",
        &longer,
    );
    let error = pull(&store, &name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("more bytes than the manifest announced"),
        "{error}"
    );
    assert!(!store.has_blob(&layer_digest));

    // A manifest that does not match the digest an index gives for it is refused too.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": [{"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": sha256(b"other"),
                       "size": image.manifest.len(),
                       "platform": {"os": "linux", "architecture": host_architecture()}}],
    }))
    .unwrap();
    registry.put_manifest("test/app", "index", OCI_IMAGE_INDEX_MEDIA_TYPE, &index);
    registry.put(
        format!("/v2/test/app/manifests/{}", sha256(b"other")),
        OCI_IMAGE_MEDIA_TYPE,
        &image.manifest,
    );
    let name = format!("{}/test/app:index", registry.address());
    let error = pull(&store, &name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(
        matches!(error, PullError::Resolve { .. }),
        "{error:?}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_authentication_is_sent_and_its_refusal_reported() {
    let registry = FakeRegistry::start(Auth::Basic("capstan", "s3cret")).await;
    let image = TestImage::new(&[base_layer()]);
    registry.push("private/app", "1", &image);
    let (_dir, store) = store();
    let name = format!("{}/private/app:1", registry.address());

    for auth in [
        RegistryAuth::Anonymous,
        RegistryAuth::Basic {
            username: "capstan".into(),
            password: "wrong".into(),
        },
    ] {
        let error = pull(&store, &name, &auth).await.unwrap_err();
        assert!(
            matches!(error, PullError::Unauthorized { .. }),
            "{auth:?}: {error:?}"
        );
        assert!(
            error.to_string().starts_with(&format!(
                "failed to pull and unpack image \"{name}\": failed to resolve reference \"{name}\": pull access denied, repository does not exist or may require authorization: "
            )),
            "{error}"
        );
    }
    let auth = RegistryAuth::Basic {
        username: "capstan".into(),
        password: "s3cret".into(),
    };
    let record = pull(&store, &name, &auth).await.unwrap();
    assert_eq!(record.digest, image.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_exchanged_for_a_bearer_token_when_the_registry_asks() {
    let registry = FakeRegistry::start(Auth::Bearer("robot", "t0ken")).await;
    let image = TestImage::new(&[base_layer()]);
    registry.push("private/app", "1", &image);
    let (_dir, store) = store();
    let name = format!("{}/private/app:1", registry.address());

    let error = pull(&store, &name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(error, PullError::Unauthorized { .. }), "{error:?}");
    let auth = RegistryAuth::Basic {
        username: "robot".into(),
        password: "t0ken".into(),
    };
    let record = pull(&store, &name, &auth).await.unwrap();
    assert_eq!(record.digest, image.digest());
    let requests = registry.state.requests.lock().unwrap().clone();
    assert!(requests.contains(&"GET /token".to_owned()), "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_fails_to_resolve_with_the_cause() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, store) = store();
    let name = format!("127.0.0.1:{port}/test/app:1");

    let error = pull(&store, &name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(error, PullError::Resolve { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "failed to pull and unpack image \"{name}\": failed to resolve reference \"{name}\": "
        )),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_name_fails_with_the_kubelets_message() {
    let (_dir, store) = store();
    let error = pull(&store, "Not A Name", &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(error, PullError::InvalidReference(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("Failed to apply default image tag"),
        "{error}"
    );
}

#[test]
fn references_map_to_registry_urls_with_plain_http_on_loopback_only() {
    let cases = [
        ("busybox", "https://index.docker.io"),
        ("docker.io/library/busybox:1", "https://index.docker.io"),
        ("index.docker.io/foo/bar", "https://index.docker.io"),
        ("registry.k8s.io/pause:3.10", "https://registry.k8s.io"),
        (
            "quay.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "https://quay.io",
        ),
        ("myregistry:5000/app", "https://myregistry:5000"),
        ("localhost/app", "http://localhost"),
        ("localhost:5000/test/app:1", "http://localhost:5000"),
        ("127.0.0.1:5000/test/app", "http://127.0.0.1:5000"),
        ("127.1.2.3/app", "http://127.1.2.3"),
        ("[::1]:5000/app", "http://[::1]:5000"),
        ("[::2]:5000/app", "https://[::2]:5000"),
        ("128.0.0.1:5000/app", "https://128.0.0.1:5000"),
        ("localhost.example.com/app", "https://localhost.example.com"),
        ("10.0.0.1:5000/app", "https://10.0.0.1:5000"),
    ];
    for (reference, expected) in cases {
        let parsed = Reference::parse(reference).unwrap();
        assert_eq!(registry_url(&parsed), expected, "{reference}");
    }
}

#[test]
fn registry_auth_debug_hides_the_password() {
    let auth = RegistryAuth::Basic {
        username: "capstan".into(),
        password: "s3cret".into(),
    };
    let shown = format!("{auth:?}");
    assert!(
        shown.contains("capstan") && !shown.contains("s3cret"),
        "{shown}"
    );
}
