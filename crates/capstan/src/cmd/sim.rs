//! `capstan sim`: hollow nodes for scale tests — many simulated agents in one process that
//! register, renew their Leases and run their pods on a fake runtime, through the real API
//! (see [`capstan_agent::hollow`]).

use std::path::PathBuf;

use anyhow::Context;
use capstan_agent::hollow::{self, HollowConfig};

#[derive(clap::Args)]
pub struct Args {
    /// How many hollow nodes to run.
    #[arg(long)]
    nodes: usize,
    /// The kubeconfig to reach the API server with (the admin one a server writes to its
    /// data directory).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Node names are this prefix and a number from 1.
    #[arg(long, default_value = "hollow-node-")]
    name_prefix: String,
    /// Labels every hollow node gets, as `key=value[,key=value]`.
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// The most pod status writes and deletes in flight at once.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut labels = std::collections::BTreeMap::new();
    for label in &args.node_labels {
        let (key, value) = label
            .split_once('=')
            .with_context(|| format!("--node-labels: {label:?} is not key=value"))?;
        labels.insert(key.to_owned(), value.to_owned());
    }
    runtime.block_on(async {
        let text = std::fs::read_to_string(&args.kubeconfig)
            .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
            .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .context("configuring the API client")?;
        let client = capstan_agent::pooled_api_client(config, args.max_in_flight)
            .context("making the API client")?;
        println!("capstan sim: running {} hollow nodes", args.nodes);
        hollow::run(HollowConfig {
            client,
            nodes: args.nodes,
            name_prefix: args.name_prefix,
            machine: hollow::hollow_machine(),
            labels,
            max_in_flight: args.max_in_flight,
        })
        .await
        .context("running the hollow nodes")
    })
}
