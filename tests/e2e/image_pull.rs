//! Image pulls from a real registry: Debian's `docker-registry` on 127.0.0.1 (plain HTTP, as
//! loopback registries are spoken to), the busybox test image pushed to it with one more layer
//! that no node has, and pods with each `imagePullPolicy` and with `imagePullSecrets`. Needs
//! root (the node runs containers) and the `docker-registry` package.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Cluster, eventually, path_str, test_images};

/// User and password of the authenticated registry, and the bcrypt hash of the password
/// (`htpasswd -B`, cost 4 so that checking it on every request stays cheap).
const USER: &str = "capstan";
const PASSWORD: &str = "s3cret";
const PASSWORD_BCRYPT: &str = "$2b$04$6xWhyMX0YpS0gR6PPnd86e8KTmnwB9pF53pbyEcsmahZ/BojwTa3q";
/// What the pushed image's extra layer holds.
const PULLED_TEXT: &str = "pulled from the registry";

/// Pushes the test image from its OCI layout archive, plus a layer with `/pulled.txt`, with
/// the registry API over plain HTTP. Prints the manifest digest.
const PUSH_SCRIPT: &str = r#"
import base64, gzip, hashlib, http.client, io, json, sys, tarfile
from urllib.parse import urlsplit

address, repository, tag, archive, auth, text = sys.argv[1:7]
headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}

def request(method, target, body=None, extra=None):
    connection = http.client.HTTPConnection(address, timeout=60)
    connection.request(method, target, body=body, headers={**headers, **(extra or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    if response.status >= 300:
        sys.exit(f"{method} {target}: {response.status} {data[:300]!r}")
    return response

def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()

def push_blob(data):
    location = urlsplit(request("POST", f"/v2/{repository}/blobs/uploads/").getheader("Location"))
    query = location.query + "&" if location.query else ""
    request("PUT", f"{location.path}?{query}digest={digest(data)}", data,
            {"Content-Type": "application/octet-stream"})
    return {"digest": digest(data), "size": len(data)}

with tarfile.open(archive) as layout:
    def blob(name):
        return layout.extractfile("blobs/sha256/" + name.split(":", 1)[1]).read()
    index = json.loads(layout.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    layers = [(layer["mediaType"], blob(layer["digest"])) for layer in manifest["layers"]]

buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode="w") as tar:
    content = (text + "\n").encode()
    info = tarfile.TarInfo("pulled.txt")
    info.size, info.mode = len(content), 0o644
    tar.addfile(info, io.BytesIO(content))
extra = buffer.getvalue()
config["rootfs"]["diff_ids"].append(digest(extra))
layers.append(("application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(extra, mtime=0)))

descriptors = [{"mediaType": media_type, **push_blob(data)} for media_type, data in layers]
pushed = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               **push_blob(json.dumps(config).encode())},
    "layers": descriptors,
}).encode()
request("PUT", f"/v2/{repository}/manifests/{tag}", pushed,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
print(digest(pushed))
"#;

/// A `docker-registry` on a free loopback port with its own configuration and storage,
/// stopped by PID when dropped, even when the test fails.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
    /// `user:password` when the registry wants basic authentication.
    auth: Option<String>,
}

impl Registry {
    fn start(authenticated: bool) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("capstan-e2e-registry-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n  secret: capstan-e2e\n",
            path_str(&storage)
        );
        if authenticated {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: capstan-e2e\n    path: {}\n",
                path_str(&htpasswd)
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry (Debian package docker-registry)");
        let registry = Registry {
            child,
            dir,
            address,
            auth: authenticated.then(|| format!("{USER}:{PASSWORD}")),
        };
        assert!(
            eventually(Duration::from_secs(20), || TcpStream::connect(
                &registry.address
            )
            .is_ok()),
            "docker-registry never listened on {}: {}",
            registry.address,
            registry.log()
        );
        registry
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes the test image with an extra layer as `<address>/<repository>:<tag>` and returns
    /// that reference.
    fn push_test_image(&self, repository: &str, tag: &str) -> String {
        let archive = test_images().join("capstan-test-busybox.tar");
        let output = Command::new("python3")
            .args(["-c", PUSH_SCRIPT, &self.address, repository, tag])
            .arg(&archive)
            .args([self.auth.as_deref().unwrap_or(""), PULLED_TEXT])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pushing to {}: {}\n{}",
            self.address,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        format!("{}/{repository}:{tag}", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jsonpath(cluster: &Cluster, pod: &str, path: &str) -> String {
    cluster.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
}

fn wait_for(cluster: &Cluster, pod: &str, path: &str, want: &[&str], timeout: Duration) {
    let mut last = String::new();
    let ok = eventually(timeout, || {
        last = jsonpath(cluster, pod, path);
        want.contains(&last.as_str())
    });
    assert!(
        ok,
        "pod {pod}: {path} is {last:?}, not one of {want:?}\n{}\n{}",
        cluster.kubectl(&["get", "pod", pod, "-o", "yaml"]),
        events(cluster, pod)
    );
}

/// `reason: message` of the pod's events, one a line.
fn events(cluster: &Cluster, pod: &str) -> String {
    cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

fn pod_manifest(name: &str, image: &str, policy: &str, pull_secret: Option<&str>) -> String {
    let secrets = pull_secret
        .map(|s| format!("  imagePullSecrets:\n  - name: {s}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
{secrets}  containers:
  - name: main
    image: {image}
    imagePullPolicy: {policy}
    command: ["sh", "-c", "cat /pulled.txt; exec sleep 3600"]
"#
    )
}

fn assert_pulled(cluster: &Cluster, pod: &str, image: &str) {
    wait_for(
        cluster,
        pod,
        "{.status.phase}",
        &["Running"],
        Duration::from_secs(60),
    );
    assert!(
        eventually(Duration::from_secs(10), || cluster
            .kubectl(&["logs", pod])
            .contains(PULLED_TEXT)),
        "logs of {pod}: {}",
        cluster.kubectl(&["logs", pod])
    );
    let events = events(cluster, pod);
    assert!(
        events.contains(&format!("Pulling: Pulling image \"{image}\"")),
        "{events}"
    );
    let pulled = events
        .lines()
        .find(|line| line.starts_with("Pulled: "))
        .unwrap_or_else(|| panic!("no Pulled event: {events}"));
    let prefix = format!("Pulled: Successfully pulled image \"{image}\" in ");
    assert!(
        pulled.starts_with(&prefix)
            && pulled.contains(" including waiting). Image size: ")
            && pulled.ends_with(" bytes."),
        "{pulled}"
    );
    assert!(
        jsonpath(cluster, pod, "{.status.containerStatuses[0].imageID}").starts_with("sha256:")
    );
}

#[test]
fn pods_pull_from_a_registry_as_their_image_pull_policy_says() {
    let registry = Registry::start(false);
    let image = registry.push_test_image("test/busybox", "1");
    let missing = format!("{}/test/missing:1", registry.address);
    let never_pulled = format!("{}/test/busybox:never", registry.address);
    let cluster = Cluster::start_with_node();
    let manifests = [
        pod_manifest("always", &image, "Always", None),
        pod_manifest("missing", &missing, "IfNotPresent", None),
        pod_manifest("never", &never_pulled, "Never", None),
    ]
    .join("---\n");
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests);

    // Always: pulled (the extra layer downloaded and unpacked), started, events as kubelet's.
    assert_pulled(&cluster, "always", &image);

    // An image the registry does not have: ErrImagePull with containerd's words, then the
    // back-off.
    wait_for(
        &cluster,
        "missing",
        "{.status.containerStatuses[0].state.waiting.reason}",
        &["ErrImagePull", "ImagePullBackOff"],
        Duration::from_secs(30),
    );
    wait_for(
        &cluster,
        "missing",
        "{.status.containerStatuses[0].state.waiting.reason}",
        &["ImagePullBackOff"],
        Duration::from_secs(30),
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "missing",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        format!("Back-off pulling image \"{missing}\"")
    );
    let events = events(&cluster, "missing");
    assert!(
        events.contains(&format!(
            "Failed: Failed to pull image \"{missing}\": failed to pull and unpack image \"{missing}\": failed to resolve reference \"{missing}\": {missing}: not found"
        )),
        "{events}"
    );
    assert_eq!(jsonpath(&cluster, "missing", "{.status.phase}"), "Pending");

    // Never, and not on the node: never asked of the registry.
    wait_for(
        &cluster,
        "never",
        "{.status.containerStatuses[0].state.waiting.reason}",
        &["ErrImageNeverPull"],
        Duration::from_secs(30),
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "never",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        format!("Container image \"{never_pulled}\" is not present with pull policy of Never")
    );
}

#[test]
fn image_pull_secrets_authenticate_pulls_from_a_private_registry() {
    let registry = Registry::start(true);
    let image = registry.push_test_image("private/busybox", "1");
    let cluster = Cluster::start_with_node();
    cluster.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.address),
        &format!("--docker-username={USER}"),
        &format!("--docker-password={PASSWORD}"),
    ]);
    let manifests = [
        pod_manifest("with-secret", &image, "Always", Some("regcred")),
        pod_manifest("without-secret", &image, "Always", None),
    ]
    .join("---\n");
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests);

    assert_pulled(&cluster, "with-secret", &image);

    wait_for(
        &cluster,
        "without-secret",
        "{.status.containerStatuses[0].state.waiting.reason}",
        &["ErrImagePull", "ImagePullBackOff"],
        Duration::from_secs(30),
    );
    let events = events(&cluster, "without-secret");
    assert!(
        events.contains(&format!(
            "Failed: Failed to pull image \"{image}\": failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": pull access denied, repository does not exist or may require authorization: "
        )),
        "{events}"
    );
}
