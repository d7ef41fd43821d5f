//! capstan's Kubernetes API server. `start` brings up the whole thing on a data directory:
//! certificates, the store, built-in namespaces, background loops, and the HTTPS listener.
//!
//! Layers, outside in: `server` (TLS, authentication, limits) → `handler` (media types,
//! rendering, one place for errors) → `registry` (object semantics over the store), with
//! `request` (routing), `discovery`, `metrics`, `openapi`, `patch` and `watch` beside them.

pub mod authn;
pub mod connect;
mod conversion;
mod discovery;
pub mod error;
mod eviction;
pub mod handler;
pub mod join;
pub mod kubeconfig;
pub mod local;
pub mod metrics;
mod namespace_lifecycle;
pub mod node_proxy;
mod openapi;
pub mod patch;
pub mod pki;
pub mod registry;
pub mod request;
pub mod server;
pub mod service_ips;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use capstan_api::resource;
use capstan_store::{KvStore, Store};
use serde_json::json;
use tokio::net::TcpListener;

use crate::authn::TokenFile;
use crate::handler::Handler;
use crate::registry::Registry;

/// The namespaces every cluster has from the start.
pub const BUILTIN_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How `capstan server` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// How often history older than one interval is compacted (Kubernetes: 5 minutes).
    pub compaction_interval: Duration,
    /// Where Services' cluster IPs come from (`--service-cluster-ip-range`).
    pub service_range: service_ips::ServiceRange,
    /// Seconds pods tolerate a not-ready node by default
    /// (`--default-not-ready-toleration-seconds`, Kubernetes: 300).
    pub default_not_ready_toleration_seconds: i64,
    /// Seconds pods tolerate an unreachable node by default
    /// (`--default-unreachable-toleration-seconds`, Kubernetes: 300).
    pub default_unreachable_toleration_seconds: i64,
    /// The cluster DNS address the `kube-system/kube-dns` Service holds (k3s's
    /// `--cluster-dns`); every node serves DNS on it. `None`: no such Service.
    pub cluster_dns: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or a file in it could not be used.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
    #[error("{0}")]
    Tls(#[from] server::TlsError),
    /// The store file could not be opened (corrupt, or locked by another server).
    #[error("store: {0}")]
    Store(#[from] capstan_store::StoreError),
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] error::ApiError),
}

/// A started server.
pub struct RunningServer {
    pub address: SocketAddr,
    /// `https://host:port`, as clients (and the built-in agent) reach the server.
    pub url: String,
    /// Where the CA lives, for issuing node credentials.
    pub pki_dir: PathBuf,
    pub kubeconfig_path: PathBuf,
    pub registry: Registry,
    handler: Arc<Handler>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// An in-process client acting as `user` (e.g. `system:kube-scheduler`), for the
    /// components that run inside the server.
    pub fn local_client(&self, user: &str) -> kube::Client {
        let user = authn::UserInfo {
            name: user.to_string(),
            groups: vec!["system:authenticated".into()],
        };
        local::client(self.handler.clone(), user)
    }

    /// Waits until the server stops (it only stops when its tasks fail).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The names and addresses the serving certificate covers.
fn serving_hosts(listen: &SocketAddr, service_ip: std::net::Ipv4Addr) -> Vec<String> {
    let mut hosts = vec![
        // Pods reach the API through the `kubernetes` Service's address.
        service_ip.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
        let name = name.trim().to_string();
        if !name.is_empty() && !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    let ip = listen.ip();
    if !ip.is_unspecified() && !hosts.contains(&ip.to_string()) {
        hosts.push(ip.to_string());
    }
    hosts
}

/// The address clients should use: the listen address, or loopback for a wildcard listen.
fn client_address(bound: &SocketAddr) -> String {
    let host = if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bound.ip().to_string()
    };
    if host.contains(':') {
        format!("[{host}]:{}", bound.port())
    } else {
        format!("{host}:{}", bound.port())
    }
}

/// Makes a random token for the token file made on first start.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn ensure_token_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{},admin,admin,\"system:masters\"", random_token())?;
    file.sync_all()
}

/// Starts the API server on `config`; returns once it is listening.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let listener = TcpListener::bind(config.listen).await?;
    let bound = listener.local_addr()?;
    let pki = pki::load_or_create(
        &config.data_dir.join("tls"),
        &serving_hosts(&bound, config.service_range.api_server_ip()),
    )?;
    let tls = server::tls_config(&pki)?;
    let token_path = config.data_dir.join("tokens.csv");
    ensure_token_file(&token_path)?;
    let tokens = Arc::new(TokenFile::load(&token_path)?);

    let store_path = config.data_dir.join("store.redb");
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || KvStore::open(&store_path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??,
    );
    let registry = Registry::with_service_range(store.clone(), config.service_range)
        .with_pod_admission(capstan_api::admission::PodAdmission {
            not_ready_toleration_seconds: config.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: config.default_unreachable_toleration_seconds,
        });
    let namespaces = resource::find("", "v1", "namespaces").expect("namespaces are registered");
    for name in BUILTIN_NAMESPACES {
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        registry.ensure(namespaces, namespace).await?;
    }
    // The system PriorityClasses, as kube-apiserver ensures them at start.
    let priority_classes = resource::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses are registered");
    for class in capstan_api::validation::scheduling::SYSTEM_PRIORITY_CLASSES {
        let object = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": class.name}, "value": class.value,
            "description": class.description, "preemptionPolicy": "PreemptLowerPriority",
        });
        registry.ensure(priority_classes, object).await?;
    }
    // The API server's own Service, at the first address of the range, as in Kubernetes.
    let services = resource::find("", "v1", "services").expect("services are registered");
    let kubernetes = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": config.service_range.api_server_ip().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": bound.port()}]},
    });
    registry.ensure(services, kubernetes).await?;
    // Its endpoint, which kube-apiserver's endpoint reconciler keeps: the address pods reach
    // the API on (none when it listens on loopback or on every address).
    if !bound.ip().is_loopback() && !bound.ip().is_unspecified() && bound.is_ipv4() {
        let slices = resource::find("discovery.k8s.io", "v1", "endpointslices")
            .expect("endpointslices are registered");
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [bound.ip().to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": bound.port(), "protocol": "TCP"}],
        });
        registry.ensure(slices, slice).await?;
    }
    // The cluster DNS Service, as k3s's CoreDNS manifest makes it; it has no selector because
    // every node answers on its address itself.
    if let Some(address) = config.cluster_dns {
        let kube_dns = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS"}},
            "spec": {"clusterIP": address.to_string(),
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
        });
        registry.ensure(services, kube_dns).await?;
    }
    // The built-in ingress proxy's class, the default one as k3s makes traefik's.
    let ingress_classes = resource::find("networking.k8s.io", "v1", "ingressclasses")
        .expect("ingressclasses are registered");
    let capstan_class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "capstan",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "capstan.dev/ingress"},
    });
    registry.ensure(ingress_classes, capstan_class).await?;

    let server_url = format!("https://{}", client_address(&bound));
    let kubeconfig_path = config.data_dir.join("kubeconfig");
    kubeconfig::write(&kubeconfig_path, &kubeconfig::admin(&pki, &server_url))?;

    let handler = Arc::new(Handler {
        registry: registry.clone(),
        nodes: node_proxy::NodeClient::new(&pki)?,
        pki_dir: config.data_dir.join("tls"),
        server_address: client_address(&bound),
        metrics: metrics::Metrics::new(),
    });
    let mut tasks = vec![tokio::spawn(server::serve(
        listener,
        tls,
        handler.clone(),
        tokens,
    ))];
    tasks.push(tokio::spawn(namespace_lifecycle::run(registry.clone())));
    tasks.push(tokio::spawn(compactor(store, config.compaction_interval)));
    Ok(RunningServer {
        address: bound,
        url: server_url,
        pki_dir: config.data_dir.join("tls"),
        kubeconfig_path,
        registry,
        handler,
        tasks,
    })
}

/// Compacts, every `interval`, the history older than the previous tick: a watch can resume
/// from any revision at most one interval old, as with kube-apiserver's etcd compaction.
async fn compactor(store: Arc<dyn Store>, interval: Duration) {
    let mut previous = store.revision();
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = store.compact(previous) {
            tracing::warn!("compaction to {previous} failed: {e}");
        }
        previous = store.revision();
    }
}
