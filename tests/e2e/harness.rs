//! Starts `capstan server` on a free loopback port in a temporary directory and drives the
//! installed `kubectl` against it. Every process is stopped by PID when the cluster is dropped,
//! even when a test fails.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Child>,
    /// Extra `capstan server` flags, kept for restarts.
    server_args: Vec<String>,
    /// Whether the server runs its node agent (whose containers outlive it, so the cluster
    /// cleans them up when dropped).
    with_node: bool,
    /// The name of a cluster of several nodes in network namespaces (`capstan cluster up`),
    /// removed with `capstan cluster down` when dropped.
    namespaced: Option<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pressure thresholds for test nodes. The test machine's disk is shared and can sit under
/// kubelet's default 10% free, which would report DiskPressure (and taint the node) for
/// reasons that have nothing to do with the test; an absolute floor keeps tests meaningful.
pub const E2E_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<1Gi,pid.available<5%";

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// Starts a cluster whose server also gets `server_args`, without a node agent.
    pub fn start_with(server_args: &[&str]) -> Cluster {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(server_args);
        Self::start_inner(&args, false)
    }

    /// Starts a one-node cluster: the server with its built-in agent (node `e2e-node`), the
    /// test images imported, the node Ready. It runs in the host's network namespace, so its
    /// pods get no network (`--pod-network none`): tests of networking use
    /// [`Cluster::start_nodes`].
    pub fn start_with_node() -> Cluster {
        Self::start_with_node_and(&[])
    }

    /// `start_with_node` with further server flags.
    pub fn start_with_node_and(server_args: &[&str]) -> Cluster {
        let mut args = vec![
            "--agent-port",
            "0",
            "--node-name",
            "e2e-node",
            "--eviction-hard",
            E2E_EVICTION_HARD,
            "--pod-network",
            "none",
        ];
        args.extend_from_slice(server_args);
        let cluster = Self::start_inner(&args, true);
        cluster.import_test_images();
        assert!(
            eventually(Duration::from_secs(20), || cluster.kubectl(&[
                "get",
                "node",
                "e2e-node",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"
            ]) == "True"),
            "the node never became Ready"
        );
        cluster
    }

    fn start_inner(server_args: &[&str], with_node: bool) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("capstan-e2e-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let mut cluster = Cluster {
            dir,
            port: free_port(),
            server: None,
            server_args: server_args.iter().map(|s| s.to_string()).collect(),
            with_node,
            namespaced: None,
        };
        cluster.start_server();
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        match self.namespaced {
            Some(_) => self.dir.path().join("cluster/kubeconfig"),
            None => self.data_dir().join("kubeconfig"),
        }
    }

    fn start_server(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["server", "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.server_args)
            .env("CAPSTAN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting capstan server");
        // The server prints one line once it listens.
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(
            line.contains("kubeconfig written to"),
            "unexpected first line: {line:?}"
        );
        self.server = Some(child);
    }

    /// Stops the server with SIGKILL: nothing gets a chance to flush.
    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill_server();
        self.start_server();
    }

    /// Restarts the server with `extra` flags added to the ones it started with.
    pub fn restart_with(&mut self, extra: &[&str]) {
        let kept = self.server_args.clone();
        self.server_args.extend(extra.iter().map(|s| s.to_string()));
        self.restart();
        self.server_args = kept;
    }

    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl and returns its output, whatever the exit code.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl with `stdin` as standard input; asserts success.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin_output(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn kubectl_stdin_output(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// curl against the server with the CA, and the admin certificate when `as_admin`.
    pub fn curl(&self, as_admin: bool, extra: &[&str], path: &str) -> (u16, String) {
        let tls = self.data_dir().join("tls");
        let mut command = Command::new("curl");
        command
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(tls.join("ca.crt"));
        if as_admin {
            command
                .arg("--cert")
                .arg(tls.join("admin.crt"))
                .arg("--key")
                .arg(tls.join("admin.key"));
        }
        command
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{path}", self.port));
        let out = command.output().expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// POSTs the JSON in `file` to `path` as the admin.
    pub fn post_file(&self, file: &Path, path: &str) -> (u16, String) {
        let data = format!("@{}", path_str(file));
        let extra = [
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &data,
        ];
        self.curl(true, &extra, path)
    }

    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_server();
        if self.with_node {
            cleanup_node(&self.data_dir().join("agent"));
        }
        if let Some(name) = &self.namespaced {
            let _ = Command::new(env!("CARGO_BIN_EXE_capstan"))
                .args(["cluster", "down", "--name", name, "--dir"])
                .arg(self.dir.path().join("cluster"))
                .status();
        }
    }
}

impl Cluster {
    /// Starts a cluster of `nodes` nodes (`node-1` … `node-N`), each in its own network
    /// namespace on a shared LAN namespace, with `capstan cluster up`: node-1 runs the server,
    /// the others joined agents; the test images are imported everywhere and every node is
    /// Ready. kubectl reaches the API through the forwarder on 127.0.0.1.
    pub fn start_nodes(nodes: u8) -> Cluster {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "e2e{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("capstan-e2e-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let archive = test_images().join("capstan-test-busybox.tar");
        let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args([
                "cluster",
                "up",
                "--nodes",
                &nodes.to_string(),
                "--name",
                &name,
            ])
            .arg("--dir")
            .arg(dir.path().join("cluster"))
            .args(["--api-port", "0", "--image"])
            .arg(&archive)
            .arg(format!("--node-arg=--eviction-hard={E2E_EVICTION_HARD}"))
            .env("CAPSTAN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting capstan cluster up");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|p| p.parse().ok());
        let cluster = Cluster {
            dir,
            port: port.unwrap_or(0),
            server: Some(child),
            server_args: Vec::new(),
            with_node: false,
            namespaced: Some(name),
        };
        assert!(port.is_some(), "unexpected first line: {line:?}");
        for index in 1..=nodes {
            let node = format!("node-{index}");
            assert!(
                eventually(Duration::from_secs(30), || cluster
                    .kubectl(&[
                        "get",
                        "node",
                        &node,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.spec.podCIDR}"
                    ])
                    .starts_with("True 10.")),
                "{node} never became Ready with a pod range"
            );
        }
        cluster
    }

    /// A command run in the LAN namespace of a [`Cluster::start_nodes`] cluster: a machine on
    /// the nodes' network, outside the cluster (for NodePorts, load balancers, ingress).
    pub fn lan_command(&self, program: &str) -> Command {
        let name = self
            .namespaced
            .as_ref()
            .expect("a cluster of several nodes");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &format!("capstan-{name}-lan"), program])
            .stdin(Stdio::null());
        command
    }
}

impl Cluster {
    /// `kubectl get pod POD -o jsonpath=PATH`.
    pub fn pod_field(&self, pod: &str, path: &str) -> String {
        self.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
    }

    /// Polls a pod's field until it reads `want`; otherwise fails showing the pod and its
    /// events.
    pub fn wait_for_pod(&self, pod: &str, path: &str, want: &str, timeout: Duration) {
        let mut last = String::new();
        let ok = eventually(timeout, || {
            last = self.pod_field(pod, path);
            last == want
        });
        assert!(
            ok,
            "pod {pod}: {path} is {last:?}, not {want:?}\n{}\n{:?}",
            self.kubectl(&["get", "pod", pod, "-o", "yaml"]),
            self.pod_events(pod)
        );
    }

    /// The (reason, message) of every event about `pod`.
    pub fn pod_events(&self, pod: &str) -> Vec<(String, String)> {
        let list: serde_json::Value = serde_json::from_str(&self.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            "json",
        ]))
        .unwrap_or_default();
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                    e["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// Builds the test images once per test run (`scripts/build-test-images.sh`).
pub fn test_images() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-images");
    BUILT.call_once(|| {
        let status = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-images.sh"))
            .arg(&dir)
            .status()
            .expect("running build-test-images.sh");
        assert!(status.success(), "build-test-images.sh failed");
    });
    dir
}

impl Cluster {
    /// Imports the busybox test image into the node's image store.
    pub fn import_test_images(&self) {
        let archive = test_images().join("capstan-test-busybox.tar");
        let output = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["image", "--data-dir"])
            .arg(self.data_dir())
            .arg("import")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "image import: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Removes what the node agent in `agent_dir` left: containers, mounts, cgroups (the same
/// cleanup `capstan cluster down` does).
pub fn cleanup_node(agent_dir: &Path) {
    capstan_agent::cleanup::remove_node_leftovers(agent_dir);
}

/// Polls `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A `capstan agent` joined to a cluster, stopped (and its containers cleaned up) on drop.
pub struct JoinedAgent {
    pub dir: PathBuf,
    child: Child,
}

impl Cluster {
    /// Starts `capstan agent` for node `name` with a fresh join token, on loopback, with the
    /// test images imported into its store.
    pub fn join_agent(&self, name: &str) -> JoinedAgent {
        let token = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["token", "create", "--data-dir"])
            .arg(self.data_dir())
            .output()
            .unwrap();
        assert!(
            token.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&token.stderr)
        );
        let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
        let dir = self.dir.path().join(format!("agent-{name}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args([
                "agent",
                "--server",
                &format!("https://127.0.0.1:{}", self.port),
            ])
            .args([
                "--token",
                &token,
                "--node-name",
                name,
                "--node-ip",
                "127.0.0.1",
                "--agent-port",
                "0",
                "--eviction-hard",
                E2E_EVICTION_HARD,
                "--pod-network",
                "none",
                "--data-dir",
            ])
            .arg(&dir)
            .env("CAPSTAN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting capstan agent");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("joined"), "unexpected first line: {line:?}");
        let archive = test_images().join("capstan-test-busybox.tar");
        let import = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["image", "--agent-dir"])
            .arg(&dir)
            .arg("import")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            import.status.success(),
            "image import: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        JoinedAgent { dir, child }
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup_node(&self.dir);
    }
}
