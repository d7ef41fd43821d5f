//! The capstan node agent: kubelet's role.
//!
//! It registers its Node and keeps a Lease renewed, watches the pods bound to its node, and
//! for each runs a pod worker that turns the spec into containers through
//! [`capstan_runtime`] and writes back what really happens (phases, conditions, container
//! states, restarts, events). It talks to the API server over HTTPS as any client does, so it
//! can run on any machine; inside `capstan server` it is the same code on a local connection.

pub mod api_source;
pub mod cleanup;
pub mod container_spec;
pub mod env;
pub mod events;
pub mod exec;
pub mod hollow;
pub mod join;
pub mod network;
pub mod node;
pub mod pods;
pub mod portforward;
pub mod probe;
pub mod pull;
pub mod resolv;
pub mod server;
pub mod stats;
pub mod status;
pub mod tls;
pub mod volumes;
pub mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How an agent runs.
pub struct AgentConfig {
    pub node_name: String,
    /// The address other machines and the API server reach this node on.
    pub node_ip: String,
    /// Where pods, containers and images live (`/var/lib/capstan/agent`).
    pub root_dir: PathBuf,
    /// How to reach the API server (with this node's credentials).
    pub client: kube::Client,
    /// The endpoint the API server calls for logs and exec.
    pub listen: SocketAddr,
    /// PEM: the cluster CA, and this agent's serving certificate and key.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The executable that runs shims (the capstan binary).
    pub shim: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// When the node reports memory, disk and PID pressure (`--eviction-hard`).
    pub pressure: node::PressureThresholds,
    /// How pods are networked (`--pod-network`, `--cluster-cidr`).
    pub network: network::NetworkMode,
    /// The resolver configuration pods' DNS starts from (`--resolv-conf`); `None`: none.
    pub resolv_conf: Option<PathBuf>,
}

/// Why the agent could not start. Runtime failures after start are retried, not returned.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("preparing {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the image store: {0}")]
    Images(#[from] capstan_runtime::image::ImageError),
    #[error("opening the runtime: {0}")]
    Runtime(#[from] capstan_runtime::RuntimeError),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

/// A started agent: the endpoint's address, and its tasks (stopped when dropped).
pub struct RunningAgent {
    pub address: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningAgent {
    /// Waits until one of the agent's tasks ends (they only end on failure).
    pub async fn wait(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        let (_, _, rest) = futures_util::future::select_all(tasks).await;
        // The others stop with the agent.
        for task in rest {
            task.abort();
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the agent: endpoint, node heartbeat and pod manager.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, AgentError> {
    let prepare = |path: &PathBuf| {
        let path = path.clone();
        move |source| AgentError::Prepare { path, source }
    };
    let pods_dir = config.root_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(prepare(&pods_dir))?;
    let images = capstan_runtime::image::ImageStore::open(&config.root_dir.join("images"))?;
    let runtime = capstan_runtime::Runtime::new(&config.root_dir.join("containers"), &config.shim)?;
    let machine = node::Machine::read(&config.root_dir);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Listen {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| AgentError::Listen {
        address: config.listen,
        source,
    })?;
    let tls = server::tls_config(&config.ca_pem, &config.cert_pem, &config.key_pem)?;

    let shared = Arc::new(worker::Shared {
        client: config.client.clone(),
        node_name: config.node_name.clone(),
        host_ip: config.node_ip.clone(),
        runtime,
        shim: config.shim.clone(),
        images,
        pods_dir,
        events: events::Recorder::new(config.client.clone(), &config.node_name),
        node: env::NodeFacts {
            node_name: config.node_name.clone(),
            host_ip: config.node_ip.clone(),
            pod_ips: Vec::new(),
            allocatable_cpu_millis: machine.cpus * 1000,
            allocatable_memory_bytes: machine.memory_bytes,
            allocatable_ephemeral_bytes: machine.ephemeral_storage_bytes,
        },
        pod_names: Default::default(),
        cpu_history: Default::default(),
        pod_network: match config.network {
            network::NetworkMode::Bridge(_) => Some(std::sync::OnceLock::new()),
            network::NetworkMode::None => None,
        },
        resolv_conf: config.resolv_conf.clone(),
        cluster_dns: match &config.network {
            network::NetworkMode::Bridge(cluster) => Some(resolv::ClusterDns {
                nameserver: cluster.dns_address.to_string(),
                domain: cluster.domain.clone(),
            }),
            network::NetworkMode::None => None,
        },
    });
    let spec = node::NodeSpec {
        name: config.node_name.clone(),
        internal_ip: config.node_ip.clone(),
        port: address.port(),
        labels: config.labels.clone(),
    };
    let heartbeat = node::Heartbeat::new(
        config.client.clone(),
        spec,
        machine,
        node::Pressure::Machine {
            storage_dir: config.root_dir.clone(),
            thresholds: config.pressure.clone(),
        },
    );
    let mut tasks = vec![
        tokio::spawn(server::serve(listener, tls, Arc::clone(&shared))),
        tokio::spawn(heartbeat.run()),
        tokio::spawn(pods::run(Arc::clone(&shared))),
    ];
    if let network::NetworkMode::Bridge(cluster) = config.network {
        tasks.push(tokio::spawn(network::run(shared, cluster)));
    }
    Ok(RunningAgent { address, tasks })
}

/// How many idle connections to the API server the agent keeps, and for how long.
const API_POOL_IDLE: usize = 8;
const API_POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The agent's API client: kube-rs's own service stack (base URI, authentication, headers)
/// over an HTTP/1.1 pool that keeps a few idle connections and closes them after a minute.
/// kube-rs's default pool keeps one idle connection for every request that was ever in flight
/// at once, for ever: 100 pods starting together left over 100 sockets open.
pub fn api_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    pooled_api_client(config, API_POOL_IDLE)
}

/// [`api_client`] keeping up to `max_idle` idle connections: hollow nodes share one client
/// for thousands of nodes' requests.
pub fn pooled_api_client(
    config: kube::Config,
    max_idle: usize,
) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt;
    let https = config.rustls_https_connector()?;
    let pool = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(API_POOL_IDLE_TIMEOUT)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build::<_, kube::client::Body>(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(pool);
    Ok(kube::Client::new(service, config.default_namespace))
}
