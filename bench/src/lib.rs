//! What the benchmarks share: a `capstan server` started in a temporary directory, HTTPS
//! clients with the admin certificate, latency percentiles, and process memory readings.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A `capstan server` started for the benchmark, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Server {
    /// Starts `capstan server` with `extra` flags (e.g. `--disable-agent`).
    pub fn start(binary: &Path, extra: &[&str]) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("capstan-bench-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(binary)
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("CAPSTAN_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
            &mut line,
        )?;
        if !line.contains("listening") {
            bail!("capstan server did not start: {line}");
        }
        Ok(Server { child, dir, port })
    }

    /// Resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node the benchmarks' agent registers.
pub const NODE: &str = "bench-node";

/// A `capstan agent` joined to the server, stopped and cleaned up when dropped.
pub struct Agent {
    pub child: Child,
    pub dir: PathBuf,
}

impl Agent {
    /// Joins node `NODE` to `server` with a fresh token.
    pub fn start(binary: &Path, server: &Server) -> anyhow::Result<Agent> {
        let token = Command::new(binary)
            .args(["token", "create", "--data-dir"])
            .arg(server.dir.path())
            .output()?;
        if !token.status.success() {
            bail!("token create: {}", String::from_utf8_lossy(&token.stderr));
        }
        let token = String::from_utf8(token.stdout)?.trim().to_string();
        let dir = server.dir.path().join("agent");
        let mut child = Command::new(binary)
            .args([
                "agent",
                "--server",
                &format!("https://127.0.0.1:{}", server.port),
            ])
            .args([
                "--token",
                &token,
                "--node-name",
                NODE,
                "--node-ip",
                "127.0.0.1",
            ])
            .args(["--agent-port", "0", "--data-dir"])
            .arg(&dir)
            .env("CAPSTAN_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting capstan agent")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        if !line.contains("joined") {
            bail!("capstan agent did not start: {line}");
        }
        Ok(Agent { child, dir })
    }

    /// PIDs of the shims of this agent's containers.
    pub fn shims(&self) -> Vec<u32> {
        let containers = self.dir.join("containers");
        std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let state: Value =
                    serde_json::from_slice(&std::fs::read(entry.path().join("state.json")).ok()?)
                        .ok()?;
                state["shim_pid"].as_u64().map(|p| p as u32)
            })
            .collect()
    }

    pub fn container_count(&self) -> usize {
        std::fs::read_dir(self.dir.join("containers")).map_or(0, |d| d.count())
    }
}

impl Agent {
    /// Imports an image archive into the agent's store.
    pub fn import(&self, binary: &Path, archive: &Path) -> anyhow::Result<()> {
        let import = Command::new(binary)
            .args(["image", "--agent-dir"])
            .arg(&self.dir)
            .arg("import")
            .arg(archive)
            .output()?;
        if !import.status.success() {
            bail!("image import: {}", String::from_utf8_lossy(&import.stderr));
        }
        Ok(())
    }

    /// Waits until the agent's Node is registered.
    pub async fn wait_registered(&self, api: &Api) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while api
            .send(
                Method::GET,
                &format!("/api/v1/nodes/{NODE}"),
                "application/json",
                Vec::new(),
            )
            .await?
            .0
            != 200
        {
            if std::time::Instant::now() > deadline {
                bail!("node {NODE} never registered");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Containers outlive their agent by design: stop them and their shims, unmount, and
        // remove the cgroups of pods still there when the benchmark stops (or fails).
        capstan_agent::cleanup::remove_node_leftovers(&self.dir);
    }
}

/// HTTPS clients to the server, each with its own HTTP/2 connection.
pub struct Api {
    clients: Vec<HttpsClient>,
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    next: AtomicUsize,
}

pub fn tls_config(tls_dir: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let pem = |name: &str| std::fs::read(tls_dir.join(name));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem("ca.crt")?.as_slice()) {
        roots.add(cert?)?;
    }
    let chain =
        rustls_pemfile::certs(&mut pem("admin.crt")?.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key =
        rustls_pemfile::private_key(&mut pem("admin.key")?.as_slice())?.context("admin.key")?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?)
}

impl Api {
    pub fn new(tls_dir: &Path, port: u16, connections: usize) -> anyhow::Result<Api> {
        let tls = tls_config(tls_dir)?;
        let clients = (0..connections)
            .map(|_| {
                // Without TCP_NODELAY a lone request waits on delayed ACKs (tens of ms).
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                http.enforce_http(false);
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls.clone())
                    .https_only()
                    .enable_http2()
                    .wrap_connector(http);
                Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build(connector)
            })
            .collect();
        Ok(Api {
            clients,
            base: format!("https://127.0.0.1:{port}"),
            next: AtomicUsize::new(0),
        })
    }

    pub fn client(&self) -> &HttpsClient {
        &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()]
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = self.client().request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        want: u16,
    ) -> anyhow::Result<Bytes> {
        let (status, body) = self.send(method, path, content_type, body).await?;
        if status != want {
            bail!("{path}: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

/// Latency samples of one phase, and how long it took.
pub struct Phase {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Phase {
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index].as_secs_f64() * 1000.0
    }

    pub fn report(&self) -> Value {
        json!({
            "operations": self.latencies.len(),
            "seconds": round(self.elapsed.as_secs_f64()),
            "per_second": round(self.latencies.len() as f64 / self.elapsed.as_secs_f64()),
            "p50_ms": round(self.percentile_ms(0.50)),
            "p99_ms": round(self.percentile_ms(0.99)),
        })
    }
}

pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A process's resident memory (VmRSS) in MiB; 0 when it is gone.
pub fn rss_mib(pid: u32) -> f64 {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:") / 1024.0
}

/// A process's proportional share of memory (Pss: shared pages divided among the processes
/// mapping them) in MiB; 0 when it is gone.
pub fn pss_mib(pid: u32) -> f64 {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:") / 1024.0
}

fn proc_kib(path: &str, field: &str) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}
