//! `capstan server`: the control plane on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::io::Write;

use anyhow::Context;
use capstan_apiserver::ServerConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Where the store, certificates and kubeconfig live.
    #[arg(long, default_value = "/var/lib/capstan")]
    data_dir: PathBuf,
    /// Address and port of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Seconds between compactions of the watch history (watches can resume from revisions
    /// up to this old).
    #[arg(long, default_value_t = 300)]
    compaction_interval: u64,
    /// The IPv4 range Services' cluster IPs come from (k3s's `--service-cidr`); its first
    /// address is the API server's own `kubernetes` Service.
    #[arg(long, alias = "service-cidr", default_value = "10.43.0.0/16")]
    service_cluster_ip_range: String,
    /// Seconds that pods tolerate a node's `node.kubernetes.io/not-ready:NoExecute` taint by
    /// default (the toleration admission adds to pods that have none).
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Seconds that pods tolerate a node's `node.kubernetes.io/unreachable:NoExecute` taint by
    /// default.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Run the control plane only, without this machine's own node agent.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler (pods then need `spec.nodeName`).
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controllers (Deployments, garbage collection, node lifecycle, …).
    #[arg(long)]
    disable_controller_manager: bool,
    /// How long a node may go without a heartbeat before it is marked Unknown and tainted
    /// unreachable, e.g. `40s`.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    #[command(flatten)]
    node: super::agent::NodeArgs,
}

/// A duration as Kubernetes flags take it: `40s`, `5m`, `1m30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    Duration::try_from(parsed).map_err(|_| format!("invalid duration {text:?}: negative"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let service_range =
        capstan_apiserver::service_ips::ServiceRange::parse(&args.service_cluster_ip_range)
            .map_err(|e| anyhow::anyhow!("--service-cluster-ip-range: {e}"))?;
    runtime.block_on(async {
        let config = ServerConfig {
            data_dir: args.data_dir.clone(),
            listen: args.listen,
            compaction_interval: Duration::from_secs(args.compaction_interval.max(1)),
            service_range,
            default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
            cluster_dns: Some(args.node.cluster_dns),
        };
        let server = capstan_apiserver::start(config)
            .await
            .with_context(|| format!("starting the server in {}", args.data_dir.display()))?;
        println!(
            "capstan server listening on https://{}; admin kubeconfig written to {}",
            server.address,
            server.kubeconfig_path.display()
        );
        // Control-plane components run until the server stops; none ends on its own.
        let mut components = tokio::task::JoinSet::new();
        if !args.disable_scheduler {
            let client = server.local_client("system:kube-scheduler");
            let config = capstan_scheduler::run::SchedulerConfig::default();
            components.spawn(async move {
                capstan_scheduler::run::run(client, config)
                    .await
                    .map_err(|e| format!("the scheduler stopped: {e}"))
            });
        }
        if !args.disable_controller_manager {
            let client = server.local_client("system:kube-controller-manager");
            let mut config = capstan_controllers::ControllersConfig::default();
            config.node_lifecycle.grace_period = args.node_monitor_grace_period;
            config.cluster_cidr = Some(args.node.cluster_cidr.to_string());
            components.spawn(async move {
                capstan_controllers::run(client, config)
                    .await
                    .map_err(|e| format!("the controllers stopped: {e}"))
            });
        }
        let agent = if args.disable_agent {
            None
        } else {
            // The built-in agent reaches the API on the server's own address, and is reached
            // there too unless told otherwise.
            let node_ip = args.node.node_ip.unwrap_or(match server.address.ip() {
                ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
                ip => ip,
            });
            let name = args
                .node
                .node_name
                .clone()
                .unwrap_or_else(super::agent::hostname);
            let credentials = capstan_apiserver::pki::node_credentials(
                &server.pki_dir,
                &name,
                &[node_ip.to_string(), name.clone()],
            )?;
            let agent = super::agent::start(
                &args.node,
                node_ip,
                args.data_dir.join("agent"),
                &server.url,
                &credentials,
            )
            .await?;
            // stdout may be closed by whoever only waited for the first line: never fail on it.
            let _ = writeln!(
                std::io::stdout(),
                "node {name} agent listening on https://{}",
                agent.address
            );
            Some(agent)
        };
        let agent_stopped = async {
            match agent {
                Some(agent) => agent.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = server.wait() => anyhow::bail!("the server stopped"),
            _ = agent_stopped => anyhow::bail!("the node agent stopped"),
            Some(ended) = components.join_next() => match ended {
                Ok(Err(message)) => anyhow::bail!("{message}"),
                other => anyhow::bail!("a control-plane component stopped: {other:?}"),
            },
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
