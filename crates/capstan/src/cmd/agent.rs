//! `capstan agent`: a node agent joining a cluster, and the options the built-in agent of
//! `capstan server` shares with it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use std::io::Write;

use anyhow::Context;
use capstan_agent::{AgentConfig, RunningAgent};

/// How the node presents itself; used by `capstan agent` and by `capstan server`'s own agent.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// The Node's name (default: the machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the API server and other nodes reach this node on (default: the server's
    /// listening address for the built-in agent).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The port of the agent's HTTPS endpoint (logs, exec); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub agent_port: u16,
    /// Labels for the Node, as `key=value` (repeatable).
    #[arg(long = "node-label", value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// When the node reports MemoryPressure, DiskPressure and PIDPressure, in kubelet's
    /// syntax; a signal left out never reports pressure. The last one given wins.
    #[arg(
        long,
        default_value = capstan_agent::node::DEFAULT_EVICTION_HARD,
        overrides_with = "eviction_hard"
    )]
    pub eviction_hard: capstan_agent::node::PressureThresholds,
    /// The cluster's pod range; each node gets a /24 of it (`spec.podCIDR`) and traffic from
    /// pods to anything outside it is masqueraded.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: capstan_api::cidr::Ipv4Cidr,
    /// How pods are networked: `bridge` (an address of the node's range each, routed between
    /// nodes) or `none` (loopback only).
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "none"])]
    pub pod_network: String,
    /// The cluster DNS service's address, which every node serves its pods on (kubelet's
    /// `--cluster-dns`; the server's `kube-dns` Service holds it).
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: std::net::Ipv4Addr,
    /// The cluster's DNS domain (kubelet's `--cluster-domain`).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The resolver configuration pods' DNS is based on, and where cluster DNS forwards names
    /// outside the cluster (kubelet's `--resolv-conf`); empty: none, nothing is forwarded.
    #[arg(
        long,
        default_value = "/etc/resolv.conf",
        overrides_with = "resolv_conf"
    )]
    pub resolv_conf: String,
}

impl NodeArgs {
    fn network_mode(&self) -> capstan_agent::network::NetworkMode {
        match self.pod_network.as_str() {
            "none" => capstan_agent::network::NetworkMode::None,
            _ => capstan_agent::network::NetworkMode::Bridge(
                capstan_agent::network::ClusterNetwork {
                    cluster_cidr: self.cluster_cidr,
                    dns_address: self.cluster_dns,
                    domain: self.cluster_domain.clone(),
                },
            ),
        }
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {text:?}"))
}

/// The machine's hostname, lowercased as Kubernetes node names must be.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// `capstan agent`: a node of a cluster whose server runs elsewhere.
#[derive(clap::Args)]
pub struct Args {
    /// The server to join, `https://host:port`.
    #[arg(long)]
    server: String,
    /// A join token from `capstan token create` (or the CAPSTAN_TOKEN environment variable).
    #[arg(long, env = "CAPSTAN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the agent keeps its credentials, images, pods and containers.
    #[arg(long, default_value = "/var/lib/capstan-agent")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let server = args.server.trim_end_matches('/').to_string();
        let name = args.node.node_name.clone().unwrap_or_else(hostname);
        let node_ip = match args.node.node_ip {
            Some(ip) => ip,
            None => local_address_towards(&server)?,
        };
        let credentials = match capstan_agent::join::Credentials::load(&args.data_dir) {
            Some(credentials) => credentials,
            None => {
                let token = args.token.as_deref().context(
                    "this node has not joined yet: give --token (from `capstan token create`)",
                )?;
                let token = capstan_agent::join::JoinToken::parse(token)?;
                let credentials = capstan_agent::join::join(
                    &server,
                    &token,
                    &name,
                    &[node_ip.to_string(), name.clone()],
                )
                .await
                .with_context(|| format!("joining {server} as node {name}"))?;
                credentials.save(&args.data_dir)?;
                credentials
            }
        };
        let credentials = capstan_apiserver::pki::NodeCredentials {
            ca_cert: credentials.ca_cert,
            client_cert: credentials.client_cert,
            client_key: credentials.client_key,
            serving_cert: credentials.serving_cert,
            serving_key: credentials.serving_key,
        };
        let agent = start(
            &args.node,
            node_ip,
            args.data_dir.clone(),
            &server,
            &credentials,
        )
        .await?;
        let _ = writeln!(
            std::io::stdout(),
            "node {name} joined {server}; agent listening on https://{}",
            agent.address
        );
        tokio::select! {
            _ = agent.wait() => anyhow::bail!("the node agent stopped"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// The local address this machine reaches `server` from (a UDP "connection" sends nothing).
fn local_address_towards(server: &str) -> anyhow::Result<IpAddr> {
    let authority = server
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket
        .connect(authority)
        .with_context(|| format!("finding the address towards {authority} (give --node-ip)"))?;
    Ok(socket.local_addr()?.ip())
}

/// Starts an agent for `node` with the given credentials against the server at `url`.
pub async fn start(
    node: &NodeArgs,
    node_ip: IpAddr,
    root_dir: PathBuf,
    url: &str,
    credentials: &capstan_apiserver::pki::NodeCredentials,
) -> anyhow::Result<RunningAgent> {
    let name = node.node_name.clone().unwrap_or_else(hostname);
    let kubeconfig = capstan_apiserver::kubeconfig::for_user(
        &credentials.ca_cert,
        &credentials.client_cert,
        &credentials.client_key,
        &format!("system:node:{name}"),
        url,
    );
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&kubeconfig).context("reading the node kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("configuring the API client")?;
    let client = capstan_agent::api_client(config).context("making the API client")?;
    let shim = std::env::current_exe().context("finding the capstan binary for the shims")?;
    let agent = capstan_agent::start(AgentConfig {
        node_name: name,
        node_ip: node_ip.to_string(),
        root_dir: root_dir.clone(),
        client,
        listen: SocketAddr::new(node_ip, node.agent_port),
        ca_pem: credentials.ca_cert.clone(),
        cert_pem: credentials.serving_cert.clone(),
        key_pem: credentials.serving_key.clone(),
        shim,
        labels: node.node_labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        pressure: node.eviction_hard.clone(),
        network: node.network_mode(),
        resolv_conf: (!node.resolv_conf.is_empty()).then(|| PathBuf::from(&node.resolv_conf)),
    })
    .await
    .with_context(|| format!("starting the agent in {}", root_dir.display()))?;
    Ok(agent)
}
