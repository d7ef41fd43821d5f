//! The service proxy: Services as nftables rules, in the shape of kube-proxy's nftables mode.
//!
//! Every sync turns the Services and EndpointSlices of the cluster into one table,
//! `ip capstan-proxy`, and hands it to `nft -f -` as a single transaction, so packets never see
//! half a ruleset:
//!
//! - [`rules`] decides, without I/O: a [`Ruleset`] of verdict maps keyed by
//!   `address . protocol . port` (`service-ips`, `service-nodeports`, and their
//!   `no-endpoint-*` twins that reject), one chain per service port that picks an endpoint with
//!   `numgen random` through a named map, one chain per endpoint that DNATs to it;
//! - [`render`] writes nft's text: the whole table the first time, afterwards only the chains
//!   and maps that changed (kube-proxy's flush-and-refill), which keeps ClientIP affinity sets
//!   alive and a one-endpoint change cheap;
//! - [`nft`] runs `nft -f -`, optionally inside a network namespace;
//! - [`sync`] watches the API and re-syncs a few milliseconds after a change.
//!
//! The agent starts it with [`run`] inside the node's network namespace.

use std::net::Ipv4Addr;
use std::time::Duration;

pub use capstan_api::cidr::Ipv4Cidr;

pub mod nft;
pub mod render;
pub mod rules;
pub mod sync;

#[cfg(test)]
mod netns_tests;

pub use nft::{ApplyError, apply, delete_table};
pub use render::{render_full, render_update};
pub use rules::{Ruleset, build_ruleset};
pub use sync::{SyncOutcome, Syncer, run};

/// The table every rule of the proxy lives in; nothing else in it is ours to keep.
pub const TABLE: &str = "capstan-proxy";

/// The default packet mark that asks the postrouting chain to masquerade (kube-proxy's).
pub const DEFAULT_MASQUERADE_MARK: u32 = 0x4000;

/// What the proxy needs to know about its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// This node's name: endpoints whose `nodeName` equals it are local (traffic policy Local).
    pub node_name: String,
    /// The addresses NodePorts answer on. Empty: every local address except 127.0.0.0/8
    /// (`fib daddr type local`), as kube-proxy does without `--nodeport-addresses`.
    pub node_ips: Vec<Ipv4Addr>,
    /// The pods' addresses: traffic to a cluster IP from outside it is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
    /// The mark bit (a single bit) that requests masquerading.
    pub masquerade_mark: u32,
    /// How long a sync waits after a change for more changes. Keep it well under a readiness
    /// probe period: an endpoint that stops being ready must stop receiving new connections.
    pub sync_debounce: Duration,
    /// The network namespace (`ip netns` name) the rules go into; `None`: the current one, which
    /// is how the agent runs it.
    pub netns: Option<String>,
    /// Cluster IPs that this node serves itself (the cluster DNS address, held by every
    /// node): the proxy leaves them alone.
    pub node_local_ips: Vec<Ipv4Addr>,
}

impl ProxyConfig {
    /// A configuration with capstan's defaults: pods in 10.42.0.0/16, mark 0x4000, 5 ms
    /// debounce, NodePorts on every local address.
    pub fn new(node_name: impl Into<String>) -> Self {
        ProxyConfig {
            node_name: node_name.into(),
            node_ips: Vec::new(),
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16)
                .expect("16 is a valid prefix length"),
            masquerade_mark: DEFAULT_MASQUERADE_MARK,
            sync_debounce: Duration::from_millis(5),
            netns: None,
            node_local_ips: Vec::new(),
        }
    }
}
