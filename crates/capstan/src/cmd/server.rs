//! `capstan server`: the control plane on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The IPv4 range Services' cluster IPs come from; its first address is the API
    /// server's own `kubernetes` Service.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
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
        };
        let server = capstan_apiserver::start(config)
            .await
            .with_context(|| format!("starting the server in {}", args.data_dir.display()))?;
        println!(
            "capstan server listening on https://{}; admin kubeconfig written to {}",
            server.address,
            server.kubeconfig_path.display()
        );
        tokio::select! {
            _ = server.wait() => anyhow::bail!("the server stopped"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
