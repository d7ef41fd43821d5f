//! Node networking, run by the agent on every node.
//!
//! - [`pod_network`]: a bridge per node, a veth and an address from the node's pod CIDR per pod,
//!   routes to the other nodes' pod CIDRs (no overlay, no NAT between pods), masquerade for
//!   traffic leaving the cluster.
//! - [`service_proxy`]: Services as nftables rules (kube-proxy's nftables mode): cluster IPs,
//!   node ports and load-balancer addresses balanced over ready endpoints in the kernel.
//! - [`network_policy`]: NetworkPolicies as nftables rules on the forward hook, for the pods
//!   of the node.
//! - [`dns`]: cluster DNS (hickory) answering `svc.ns.svc.cluster.local` from the API.
//! - [`ingress`]: the built-in ingress proxy (IngressClass `capstan`) on every node.
//! - [`watch`]: the cache-and-wake shape the rule syncers share.

pub mod dns;
pub mod ingress;
#[cfg(test)]
mod netns_testing;
pub mod network_policy;
pub mod pod_network;
pub mod service_proxy;
pub mod watch;
