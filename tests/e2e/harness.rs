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
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// Starts a cluster whose server also gets `server_args`.
    pub fn start_with(server_args: &[&str]) -> Cluster {
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
        };
        cluster.start_server();
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig")
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
    }
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
