//! NetworkPolicy enforcement (`networking.k8s.io/v1`) for the pods of this node, in nftables.
//!
//! Every sync turns the cluster's NetworkPolicies, Pods and Namespaces into one table,
//! `inet capstan-policy`, replaced as a single `nft -f -` transaction, so packets never see
//! half a ruleset:
//!
//! - [`policy`] decides, without I/O, what each isolated pod of the node may receive and send
//!   ([`Ruleset`]);
//! - [`mod@render`] writes nft's text: a chain on the `forward` hook that lets replies through and
//!   sends packets to and from isolated pods through per-pod chains, sets of allowed peers,
//!   `drop` at the end;
//! - [`sync`] watches the API and re-syncs a few milliseconds after a change.
//!
//! Policies act on the `forward` hook only: with `bridge-nf-call-iptables=1` (set by
//! [`crate::pod_network`]) packets between pods of one bridge pass it too, and Service traffic
//! arrives there already DNATed to a pod's address and target port by the service proxy. The
//! node's own traffic to its pods (probes) takes the output hook and is never filtered, as
//! Kubernetes asks of network plugins.
//!
//! The agent starts it with [`run`] inside the node's network namespace.

use std::time::Duration;

pub mod policy;
pub mod render;
pub mod sync;

#[cfg(test)]
mod netns_tests;
#[cfg(test)]
mod tests;

pub use policy::{
    AddressSet, Allowance, NAMESPACE_NAME_LABEL, Peers, PodPolicy, PortRange, Protocol, Ruleset,
    build_ruleset,
};
pub use render::render;
pub use sync::{SyncOutcome, Syncer, delete_table, run};

/// The table every rule of the network policies lives in; nothing else in it is ours to keep.
pub const TABLE: &str = "capstan-policy";

/// What the policy enforcer needs to know about its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// This node's name: only pods whose `spec.nodeName` equals it are enforced here (each
    /// node enforces the policies of its own pods, in both directions).
    pub node_name: String,
    /// The network namespace (`ip netns` name) the rules go into; `None`: the current one, which
    /// is how the agent runs it.
    pub netns: Option<String>,
    /// How long a sync waits after a change for more changes.
    pub sync_debounce: Duration,
}

impl PolicyConfig {
    /// A configuration with capstan's defaults: the current namespace, 5 ms debounce.
    pub fn new(node_name: impl Into<String>) -> Self {
        PolicyConfig {
            node_name: node_name.into(),
            netns: None,
            sync_debounce: Duration::from_millis(5),
        }
    }
}
