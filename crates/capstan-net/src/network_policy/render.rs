//! nft's text for a [`Ruleset`]: the whole table, replaced in one transaction.
//!
//! ```text
//! table inet capstan-policy
//!   chain forward (hook forward, priority filter, policy accept)
//!     ct state established,related accept      replies of allowed connections
//!     ip saddr <pod> jump egress-<hash>          every egress-isolated pod of the node
//!     ip daddr <pod> jump ingress-<hash>         every ingress-isolated pod of the node
//!   chain ingress-<hash>
//!     ip saddr <pod> return                      a pod reaching itself (hairpin)
//!     ip saddr @ingress-<hash>-<i> meta l4proto tcp th dport 80 return
//!     drop
//!   set ingress-<hash>-<i>: the allowed sources of allowance i (interval set)
//! ```
//!
//! Allowed packets `return` rather than `accept`, so that a packet between two isolated pods of
//! the node passes the sender's egress chain and then the receiver's ingress chain. Traffic
//! from and to the node itself (probes, host services) never takes the forward hook: it is
//! always allowed, as Kubernetes specifies. Names stay under 32 bytes (older kernels' limit):
//! a 64-bit FNV-1a hash of `namespace/name` tells pods apart.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::TABLE;
use super::policy::{Allowance, Peers, PodPolicy, Ruleset};

/// The name part that stands for a pod: 16 hex digits of FNV-1a over `namespace/name`
/// (stable across runs and releases, unlike std's hasher).
pub fn pod_hash(namespace: &str, name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The ingress chain of a pod.
pub fn ingress_chain(pod: &PodPolicy) -> String {
    format!("ingress-{}", pod_hash(&pod.namespace, &pod.name))
}

/// The egress chain of a pod.
pub fn egress_chain(pod: &PodPolicy) -> String {
    format!("egress-{}", pod_hash(&pod.namespace, &pod.name))
}

/// The transaction that replaces the whole table with `ruleset` (creating it if missing).
pub fn render(ruleset: &Ruleset) -> String {
    let mut text = String::new();
    // `add` first so that `delete` never fails on a missing table; all in one transaction.
    let _ = writeln!(text, "add table inet {TABLE}");
    let _ = writeln!(text, "delete table inet {TABLE}");
    let _ = writeln!(text, "table inet {TABLE} {{");
    let mut jumps = String::new();
    let mut ingress_jumps = String::new();
    for pod in ruleset.pods.values() {
        let comment = comment(pod);
        if let Some(egress) = &pod.egress {
            let chain = egress_chain(pod);
            render_chain(&mut text, &chain, "daddr", pod.address, egress);
            let _ = writeln!(
                jumps,
                "\t\tip saddr {} jump {chain} comment \"{comment}\"",
                pod.address
            );
        }
        if let Some(ingress) = &pod.ingress {
            let chain = ingress_chain(pod);
            render_chain(&mut text, &chain, "saddr", pod.address, ingress);
            let _ = writeln!(
                ingress_jumps,
                "\t\tip daddr {} jump {chain} comment \"{comment}\"",
                pod.address
            );
        }
    }
    let _ = writeln!(text, "\tchain forward {{");
    let _ = writeln!(
        text,
        "\t\ttype filter hook forward priority filter; policy accept;"
    );
    let _ = writeln!(text, "\t\tct state established,related accept");
    text.push_str(&jumps);
    text.push_str(&ingress_jumps);
    let _ = writeln!(text, "\t}}");
    let _ = writeln!(text, "}}");
    text
}

/// `namespace/name`, within nft's 128-byte comments.
fn comment(pod: &PodPolicy) -> String {
    let mut comment = format!("{}/{}", pod.namespace, pod.name);
    if comment.len() > 120 {
        let mut end = 120;
        while !comment.is_char_boundary(end) {
            end -= 1;
        }
        comment.truncate(end);
    }
    comment
}

/// One direction's chain of a pod and its peer sets. `peer` is the address field of the other
/// side: `saddr` for ingress, `daddr` for egress.
fn render_chain(
    text: &mut String,
    chain: &str,
    peer: &str,
    address: Ipv4Addr,
    allowances: &[Allowance],
) {
    let mut rules = String::new();
    let _ = writeln!(rules, "\t\tip {peer} {address} return");
    for (index, allowance) in allowances.iter().enumerate() {
        let peers = match &allowance.peers {
            Peers::All => String::new(),
            Peers::Only(set) => {
                let name = format!("{chain}-{index}");
                let elements: Vec<String> = set
                    .ranges()
                    .map(|(first, last)| {
                        if first == last {
                            first.to_string()
                        } else {
                            format!("{first}-{last}")
                        }
                    })
                    .collect();
                let _ = writeln!(text, "\tset {name} {{");
                let _ = writeln!(text, "\t\ttype ipv4_addr");
                let _ = writeln!(text, "\t\tflags interval");
                let _ = writeln!(text, "\t\telements = {{ {} }}", elements.join(", "));
                let _ = writeln!(text, "\t}}");
                format!("ip {peer} @{name} ")
            }
        };
        if allowance.ports.is_empty() {
            let _ = writeln!(rules, "\t\t{peers}return");
        }
        for range in &allowance.ports {
            let protocol = range.protocol.nft_name();
            let _ = match range.ports {
                None => writeln!(rules, "\t\t{peers}meta l4proto {protocol} return"),
                Some((first, last)) if first == last => writeln!(
                    rules,
                    "\t\t{peers}meta l4proto {protocol} th dport {first} return"
                ),
                Some((first, last)) => writeln!(
                    rules,
                    "\t\t{peers}meta l4proto {protocol} th dport {first}-{last} return"
                ),
            };
        }
    }
    let _ = writeln!(rules, "\t\tdrop");
    let _ = writeln!(text, "\tchain {chain} {{");
    text.push_str(&rules);
    let _ = writeln!(text, "\t}}");
}
