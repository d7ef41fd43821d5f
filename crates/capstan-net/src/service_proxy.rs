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

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

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
}

impl ProxyConfig {
    /// A configuration with capstan's defaults: pods in 10.42.0.0/16, mark 0x4000, 5 ms
    /// debounce, NodePorts on every local address.
    pub fn new(node_name: impl Into<String>) -> Self {
        ProxyConfig {
            node_name: node_name.into(),
            node_ips: Vec::new(),
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16),
            masquerade_mark: DEFAULT_MASQUERADE_MARK,
            sync_debounce: Duration::from_millis(5),
            netns: None,
        }
    }
}

/// An IPv4 network, `10.42.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// The network of `addr` with `prefix_len` bits (host bits cleared); lengths over 32 are 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Self {
        let prefix_len = prefix_len.min(32);
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix_len,
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid IPv4 CIDR {0:?}: expected a.b.c.d/len")]
pub struct InvalidCidr(pub String);

impl FromStr for Ipv4Cidr {
    type Err = InvalidCidr;

    fn from_str(text: &str) -> Result<Self, InvalidCidr> {
        let invalid = || InvalidCidr(text.to_string());
        let (addr, len) = text.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        let len: u8 = len.parse().map_err(|_| invalid())?;
        if len > 32 {
            return Err(invalid());
        }
        Ok(Ipv4Cidr::new(addr, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_clear_host_bits() {
        let cases = [
            ("10.42.0.0/16", Some("10.42.0.0/16")),
            ("10.42.7.9/16", Some("10.42.0.0/16")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("10.0.0.1/32", Some("10.0.0.1/32")),
            ("10.0.0.1/33", None),
            ("10.0.0.1", None),
            ("fd00::/8", None),
        ];
        for (text, expected) in cases {
            let parsed = text.parse::<Ipv4Cidr>().ok().map(|cidr| cidr.to_string());
            assert_eq!(parsed.as_deref(), expected, "{text}");
        }
    }
}
