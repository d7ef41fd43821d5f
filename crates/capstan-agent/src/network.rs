//! The node's share of the cluster network. Once the control plane has given this node its
//! pod range (`spec.podCIDR`, from the node IPAM controller), the pod network is set up and
//! pods can start; until then their sandboxes wait, as kubelet's do while the network plugin
//! is not ready. Routes to every other node's pod range follow the Nodes as they come and go.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use capstan_api::cidr::Ipv4Cidr;
use capstan_net::pod_network::{PodNetwork, PodNetworkConfig};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::watcher::{self, Event};

use crate::worker::Shared;

/// How pods of this node are networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Every pod gets an address from the node's range on a bridge (the default), Services
    /// and cluster DNS work.
    Bridge(ClusterNetwork),
    /// Pods get only their loopback interface (`--pod-network none`), as with k3s'
    /// `--flannel-backend none` before a network plugin is installed.
    None,
}

/// The cluster-wide settings of the network every node shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    /// The pods' range (`--cluster-cidr`).
    pub cluster_cidr: Ipv4Cidr,
    /// The cluster DNS service's address (`--cluster-dns`), served on every node.
    pub dns_address: Ipv4Addr,
    /// The cluster domain (`--cluster-domain`).
    pub domain: String,
}

/// Watches the Nodes: sets up the pod network once this node has its range, starts the
/// node's cluster DNS server, and keeps the routes to the other nodes' ranges current.
pub async fn run(shared: Arc<Shared>, cluster: ClusterNetwork) {
    let cluster_cidr = cluster.cluster_cidr;
    let Some(slot) = shared.pod_network.as_ref() else {
        return;
    };
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut stream = watcher::watcher(nodes, watcher::Config::default()).boxed();
    let mut known: BTreeMap<String, Node> = BTreeMap::new();
    let mut listing: BTreeMap<String, Node> = BTreeMap::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(node)) => {
                listing.insert(node.metadata.name.clone().unwrap_or_default(), node);
                continue;
            }
            Ok(Event::InitDone) => known = std::mem::take(&mut listing),
            Ok(Event::Apply(node)) => {
                known.insert(node.metadata.name.clone().unwrap_or_default(), node);
            }
            Ok(Event::Delete(node)) => {
                known.remove(node.metadata.name.as_deref().unwrap_or_default());
            }
            Err(e) => {
                tracing::warn!("watching the nodes for the pod network: {e}");
                continue;
            }
        }
        if slot.get().is_none()
            && let Some(pod_cidr) = known.get(&shared.node_name).and_then(pod_cidr)
        {
            let config = PodNetworkConfig {
                pod_cidr,
                cluster_cidr,
                state_dir: shared.pods_dir.with_file_name("network"),
            };
            match PodNetwork::start(config).await {
                Ok(network) => {
                    // Addresses of pods removed while the agent was down go back to the pool.
                    network.release_unless(|uid| shared.pods_dir.join(uid).exists());
                    tracing::info!(
                        "pod network {pod_cidr} ready on bridge {}",
                        capstan_net::pod_network::BRIDGE
                    );
                    start_node_services(&shared, &network, &cluster).await;
                    let _ = slot.set(network);
                }
                Err(e) => tracing::warn!("setting up the pod network {pod_cidr}: {e}"),
            }
        }
        if let Some(network) = slot.get() {
            let routes = routes_to_others(&known, &shared.node_name);
            if let Err(e) = network.sync_routes(&routes).await {
                tracing::warn!("routing to the other nodes' pods: {e}");
            }
        }
    }
}

/// What every node serves its pods besides their network: the service proxy (Services as
/// nftables rules), the ingress proxy, network policy enforcement, and cluster DNS on the cluster DNS address, which each node holds itself
/// (as NodeLocal DNSCache does), so that lookups never leave the node.
async fn start_node_services(shared: &Arc<Shared>, network: &PodNetwork, cluster: &ClusterNetwork) {
    let mut proxy = capstan_net::service_proxy::ProxyConfig::new(shared.node_name.clone());
    proxy.node_ips = shared.host_ip.parse().into_iter().collect();
    proxy.cluster_cidr = cluster.cluster_cidr;
    proxy.node_local_ips = vec![cluster.dns_address];
    let client = shared.client.clone();
    tokio::spawn(async move {
        if let Err(e) = capstan_net::service_proxy::run(client, proxy).await {
            tracing::warn!("the service proxy stopped: {e}");
        }
    });
    // The ingress proxy answers on the node's address, ports 80 and 443.
    if let Ok(node_ip) = shared.host_ip.parse::<std::net::IpAddr>() {
        let ingress = capstan_net::ingress::IngressConfig {
            http: (node_ip, 80).into(),
            https: (node_ip, 443).into(),
            ..Default::default()
        };
        let client = shared.client.clone();
        tokio::spawn(async move {
            if let Err(e) = capstan_net::ingress::run(client, ingress).await {
                tracing::warn!("the ingress proxy stopped: {e}");
            }
        });
    }
    let policies = capstan_net::network_policy::PolicyConfig::new(shared.node_name.clone());
    let client = shared.client.clone();
    tokio::spawn(async move {
        if let Err(e) = capstan_net::network_policy::run(client, policies).await {
            tracing::warn!("network policy enforcement stopped: {e}");
        }
    });
    if let Err(e) = network.add_local_address(cluster.dns_address).await {
        tracing::warn!(
            "holding the cluster DNS address {}: {e}",
            cluster.dns_address
        );
        return;
    }
    let mut config = capstan_net::dns::Config::new((cluster.dns_address, 53).into());
    config.cluster_domain = cluster.domain.clone();
    // Names outside the cluster go to the node's own resolvers (none without --resolv-conf).
    if let Some(path) = &shared.resolv_conf {
        config.upstreams = capstan_net::dns::read_resolv_conf(&path.to_string_lossy())
            .await
            .unwrap_or_default();
    }
    let client = shared.client.clone();
    tokio::spawn(async move {
        if let Err(e) = capstan_net::dns::run(client, config).await {
            tracing::warn!("cluster DNS stopped: {e}");
        }
    });
}

fn pod_cidr(node: &Node) -> Option<Ipv4Cidr> {
    let cidr = node.spec.as_ref()?.pod_cidr.as_deref()?;
    Ipv4Cidr::parse(cidr).ok()
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// Every other node's pod range, through that node's address.
fn routes_to_others(nodes: &BTreeMap<String, Node>, own: &str) -> BTreeMap<Ipv4Cidr, Ipv4Addr> {
    nodes
        .iter()
        .filter(|(name, _)| name.as_str() != own)
        .filter_map(|(_, node)| Some((pod_cidr(node)?, internal_ip(node)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> (String, Node) {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}
        }))
        .unwrap();
        (name.to_string(), node)
    }

    #[test]
    fn routes_go_to_every_other_node_with_a_range_and_an_address() {
        let nodes: BTreeMap<String, Node> = [
            node("a", Some("10.42.0.0/24"), "172.30.0.11"),
            node("b", Some("10.42.1.0/24"), "172.30.0.12"),
            node("c", None, "172.30.0.13"),
            node("d", Some("10.42.3.0/24"), "not-an-ip"),
        ]
        .into_iter()
        .collect();
        let routes = routes_to_others(&nodes, "a");
        let want: BTreeMap<Ipv4Cidr, Ipv4Addr> = [(
            Ipv4Cidr::parse("10.42.1.0/24").unwrap(),
            Ipv4Addr::new(172, 30, 0, 12),
        )]
        .into_iter()
        .collect();
        assert_eq!(routes, want);
    }
}
