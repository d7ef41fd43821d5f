//! `capstan agent`: a node agent joining a cluster, and the options the built-in agent of
//! `capstan server` shares with it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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
    let client = kube::Client::try_from(config).context("making the API client")?;
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
    })
    .await
    .with_context(|| format!("starting the agent in {}", root_dir.display()))?;
    Ok(agent)
}
