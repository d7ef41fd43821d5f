//! nft's text for a [`Ruleset`]: one transaction for `nft -f -`.
//!
//! Commands, not a nested `table { … }` block, so that the order inside the transaction is
//! explicit: chains exist before a rule or a map element jumps to them, references are gone
//! before a chain is deleted (knftables writes the same way).
//!
//! - [`render_full`] replaces the table: `add table` + `delete table` (so that a stale table
//!   of an earlier run, or none, both work) + the whole definition.
//! - [`render_update`] changes a table that holds `previous`: it flushes and refills only the
//!   chains whose rules changed and the maps that changed, creates and deletes the rest. The
//!   affinity sets survive (a full replacement would forget every client), and a one-endpoint
//!   change costs a few commands instead of the whole table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::rules::{REJECT_CHAIN, Ruleset};
use super::{ProxyConfig, TABLE};

/// The hooked chains, `(name, declaration, rules)`, in kube-proxy's priorities: the filter
/// checks run before DNAT (-110) so that they see the service address; the post-DNAT output
/// check (-90) sees what DNAT left alone.
fn base_chains() -> [(&'static str, &'static str, &'static [&'static str]); 7] {
    [
        (
            "filter-input",
            "type filter hook input priority -110; policy accept;",
            &[
                "ct state new jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
            ],
        ),
        (
            "filter-forward",
            "type filter hook forward priority -110; policy accept;",
            &[
                "ct state new jump service-endpoints-check",
                "ct state new jump cluster-ips-check",
            ],
        ),
        (
            "filter-output",
            "type filter hook output priority -110; policy accept;",
            &["ct state new jump service-endpoints-check"],
        ),
        (
            "filter-output-post-dnat",
            "type filter hook output priority -90; policy accept;",
            &["ct state new jump cluster-ips-check"],
        ),
        (
            "nat-prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
            &["jump services"],
        ),
        (
            "nat-output",
            "type nat hook output priority -100; policy accept;",
            &["jump services"],
        ),
        (
            "nat-postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
            &["jump masquerading"],
        ),
    ]
}

const SERVICE_KEY: &str = "ipv4_addr . inet_proto . inet_service : verdict";
const NODE_PORT_KEY: &str = "inet_proto . inet_service : verdict";

/// The maps of a ruleset with their key types, in the order they are written.
fn maps(ruleset: &Ruleset) -> [(&'static str, &'static str, &BTreeMap<String, String>); 4] {
    [
        ("service-ips", SERVICE_KEY, &ruleset.service_ips),
        (
            "service-nodeports",
            NODE_PORT_KEY,
            &ruleset.service_nodeports,
        ),
        (
            "no-endpoint-services",
            SERVICE_KEY,
            &ruleset.no_endpoint_services,
        ),
        (
            "no-endpoint-nodeports",
            NODE_PORT_KEY,
            &ruleset.no_endpoint_nodeports,
        ),
    ]
}

/// The fixed chains, which depend on the configuration only.
fn fixed_chains(config: &ProxyConfig) -> Vec<(&'static str, Vec<String>)> {
    let mark = format!("{:#x}", config.masquerade_mark);
    // Without configured node addresses, node ports answer on every local address but
    // loopback (kube-proxy's default; 127.0.0.1 would need route_localnet).
    let node_addresses = if config.node_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8"
    } else {
        "ip daddr @nodeport-ips"
    };
    vec![
        (
            // TCP gets a reset: an ICMP error that reaches a socket while its connect() still
            // holds the lock is only a soft error, and the client would wait for the SYN
            // retransmit (1 s) to learn that nobody listens.
            REJECT_CHAIN,
            vec![
                "meta l4proto tcp reject with tcp reset".into(),
                "reject with icmp type port-unreachable".into(),
            ],
        ),
        (
            "mark-for-masquerade",
            vec![format!("meta mark set meta mark | {mark}")],
        ),
        (
            "masquerading",
            vec![
                format!("meta mark & {mark} == 0 return"),
                // Clear the bit so that it does not leak into other hooks or a tunnel.
                format!("meta mark set meta mark ^ {mark}"),
                "masquerade fully-random".into(),
            ],
        ),
        (
            "services",
            vec![
                "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
                format!("{node_addresses} meta l4proto . th dport vmap @service-nodeports"),
            ],
        ),
        (
            "service-endpoints-check",
            vec!["ip daddr . meta l4proto . th dport vmap @no-endpoint-services".into()],
        ),
        (
            "nodeport-endpoints-check",
            vec![format!(
                "{node_addresses} meta l4proto . th dport vmap @no-endpoint-nodeports"
            )],
        ),
        (
            // Reached after DNAT: a packet still addressed to a cluster IP matched no port.
            "cluster-ips-check",
            vec![format!("ip daddr @cluster-ips goto {REJECT_CHAIN}")],
        ),
    ]
}

/// The transaction that replaces whatever table is there with `ruleset`.
pub fn render_full(config: &ProxyConfig, ruleset: &Ruleset) -> String {
    let mut out = String::with_capacity(256 + 160 * ruleset.chains.len());
    let t = TABLE;
    let _ = writeln!(out, "add table ip {t}");
    let _ = writeln!(out, "delete table ip {t}");
    let _ = writeln!(
        out,
        "add table ip {t} {{ comment \"capstan service proxy\"; }}"
    );
    let _ = writeln!(out, "add set ip {t} cluster-ips {{ type ipv4_addr; }}");
    let _ = writeln!(out, "add set ip {t} nodeport-ips {{ type ipv4_addr; }}");
    for (map, key, _) in maps(ruleset) {
        let _ = writeln!(out, "add map ip {t} {map} {{ type {key}; }}");
    }
    for map in ruleset.pick_maps.keys() {
        add_pick_map(&mut out, map);
    }
    for (set, timeout) in &ruleset.affinity_sets {
        add_affinity_set(&mut out, set, *timeout);
    }
    let fixed = fixed_chains(config);
    for (chain, _) in &fixed {
        let _ = writeln!(out, "add chain ip {t} {chain}");
    }
    for chain in ruleset.chains.keys() {
        let _ = writeln!(out, "add chain ip {t} {chain}");
    }
    for (chain, rules) in &fixed {
        add_rules(&mut out, chain, rules);
    }
    for (chain, rules) in &ruleset.chains {
        add_rules(&mut out, chain, rules);
    }
    add_elements(&mut out, "cluster-ips", ruleset.cluster_ips.iter());
    add_elements(&mut out, "nodeport-ips", config.node_ips.iter());
    for (map, _, elements) in maps(ruleset) {
        add_map_elements(&mut out, map, elements);
    }
    for (map, verdicts) in &ruleset.pick_maps {
        add_pick_elements(&mut out, map, verdicts);
    }
    // Hooks last: not needed inside one transaction, but the table reads top-down.
    for (chain, declaration, rules) in base_chains() {
        let _ = writeln!(out, "add chain ip {t} {chain} {{ {declaration} }}");
        for rule in rules {
            let _ = writeln!(out, "add rule ip {t} {chain} {rule}");
        }
    }
    out
}

/// The transaction that turns a table holding `previous` (as applied by this process) into
/// `next`; `None` renders a full replacement. Empty when nothing changed.
pub fn render_update(config: &ProxyConfig, previous: Option<&Ruleset>, next: &Ruleset) -> String {
    let Some(previous) = previous else {
        return render_full(config, next);
    };
    if previous == next {
        return String::new();
    }
    let t = TABLE;
    // A set whose timeout changed is deleted and re-created; every chain naming it is
    // rewritten first so that nothing refers to it in between.
    let retimed: BTreeSet<&String> = next
        .affinity_sets
        .iter()
        .filter(|(set, timeout)| {
            previous
                .affinity_sets
                .get(*set)
                .is_some_and(|t| t != *timeout)
        })
        .map(|(set, _)| set)
        .collect();
    let rewritten: Vec<(&String, &Vec<String>)> = next
        .chains
        .iter()
        .filter(|(chain, rules)| {
            previous.chains.get(*chain) != Some(rules)
                || rules
                    .iter()
                    .any(|rule| retimed.iter().any(|set| rule.contains(set.as_str())))
        })
        .collect();
    let removed_chains: Vec<&String> = previous
        .chains
        .keys()
        .filter(|chain| !next.chains.contains_key(*chain))
        .collect();
    let removed_sets: Vec<&String> = previous
        .affinity_sets
        .keys()
        .filter(|set| !next.affinity_sets.contains_key(*set) || retimed.contains(set))
        .collect();
    let changed_maps: Vec<(&str, &BTreeMap<String, String>)> = maps(previous)
        .into_iter()
        .zip(maps(next))
        .filter(|((_, _, before), (_, _, after))| before != after)
        .map(|(_, (map, _, after))| (map, after))
        .collect();
    let changed_picks: Vec<(&String, &Vec<String>)> = next
        .pick_maps
        .iter()
        .filter(|(map, verdicts)| previous.pick_maps.get(*map) != Some(verdicts))
        .collect();
    let removed_picks: Vec<&String> = previous
        .pick_maps
        .keys()
        .filter(|map| !next.pick_maps.contains_key(*map))
        .collect();

    let mut out = String::new();
    // 1. Drop every reference that may point at something about to go.
    for (map, _) in &changed_maps {
        let _ = writeln!(out, "flush map ip {t} {map}");
    }
    for map in changed_picks
        .iter()
        .map(|(map, _)| *map)
        .filter(|map| previous.pick_maps.contains_key(*map))
        .chain(removed_picks.iter().copied())
    {
        let _ = writeln!(out, "flush map ip {t} {map}");
    }
    for (chain, _) in &rewritten {
        if previous.chains.contains_key(*chain) {
            let _ = writeln!(out, "flush chain ip {t} {chain}");
        }
    }
    for chain in &removed_chains {
        let _ = writeln!(out, "flush chain ip {t} {chain}");
    }
    // 2. Delete what is gone.
    for chain in &removed_chains {
        let _ = writeln!(out, "delete chain ip {t} {chain}");
    }
    for map in &removed_picks {
        let _ = writeln!(out, "delete map ip {t} {map}");
    }
    for set in &removed_sets {
        let _ = writeln!(out, "delete set ip {t} {set}");
    }
    // 3. Create what is new, then fill it.
    for (map, _) in &changed_picks {
        if !previous.pick_maps.contains_key(*map) {
            add_pick_map(&mut out, map);
        }
    }
    for (set, timeout) in &next.affinity_sets {
        if !previous.affinity_sets.contains_key(set) || retimed.contains(set) {
            add_affinity_set(&mut out, set, *timeout);
        }
    }
    for (chain, _) in &rewritten {
        if !previous.chains.contains_key(*chain) {
            let _ = writeln!(out, "add chain ip {t} {chain}");
        }
    }
    for (chain, rules) in &rewritten {
        add_rules(&mut out, chain, rules);
    }
    if previous.cluster_ips != next.cluster_ips {
        let _ = writeln!(out, "flush set ip {t} cluster-ips");
        add_elements(&mut out, "cluster-ips", next.cluster_ips.iter());
    }
    for (map, elements) in changed_maps {
        add_map_elements(&mut out, map, elements);
    }
    for (map, verdicts) in changed_picks {
        add_pick_elements(&mut out, map, verdicts);
    }
    out
}

fn add_affinity_set(out: &mut String, set: &str, timeout: u32) {
    let _ = writeln!(
        out,
        "add set ip {TABLE} {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
    );
}

/// A map from `numgen random mod N` to the endpoint chains (the modulus in `typeof` only
/// gives the key's type).
fn add_pick_map(out: &mut String, map: &str) {
    let _ = writeln!(
        out,
        "add map ip {TABLE} {map} {{ typeof numgen random mod 1 : verdict; }}"
    );
}

fn add_pick_elements(out: &mut String, map: &str, verdicts: &[String]) {
    if verdicts.is_empty() {
        return;
    }
    let _ = write!(out, "add element ip {TABLE} {map} {{ ");
    for (i, verdict) in verdicts.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{i} : {verdict}");
    }
    out.push_str(" }\n");
}

fn add_rules(out: &mut String, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule ip {TABLE} {chain} {rule}");
    }
}

fn add_elements<T: std::fmt::Display>(
    out: &mut String,
    set: &str,
    elements: impl Iterator<Item = T>,
) {
    let elements: Vec<String> = elements.map(|e| e.to_string()).collect();
    if !elements.is_empty() {
        let _ = writeln!(
            out,
            "add element ip {TABLE} {set} {{ {} }}",
            elements.join(", ")
        );
    }
}

fn add_map_elements(out: &mut String, map: &str, elements: &BTreeMap<String, String>) {
    if elements.is_empty() {
        return;
    }
    let _ = write!(out, "add element ip {TABLE} {map} {{ ");
    for (i, (key, verdict)) in elements.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{key} : {verdict}");
    }
    out.push_str(" }\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_proxy::rules::build_ruleset;
    use crate::service_proxy::rules::tests::{service, slice};

    fn config() -> ProxyConfig {
        ProxyConfig::new("node-a")
    }

    fn web(endpoints: &[(&str, bool)]) -> Ruleset {
        let endpoints: Vec<_> = endpoints
            .iter()
            .map(|(ip, ready)| (*ip, "node-a", *ready, *ready, false))
            .collect();
        build_ruleset(
            &config(),
            &[service("web", "10.43.0.10", "ClusterIP")],
            &[slice("web", &endpoints)],
        )
    }

    #[test]
    fn a_full_render_replaces_the_table_and_hooks_it_last() {
        let text = render_full(&config(), &web(&[("10.42.0.2", true)]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "add table ip capstan-proxy",
                "delete table ip capstan-proxy",
                "add table ip capstan-proxy { comment \"capstan service proxy\"; }",
            ]
        );
        let position = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} missing in\n{text}"))
        };
        // Chains exist before anything jumps to them.
        assert!(position("add chain ip capstan-proxy endpoint-") < position("vmap @pick"));
        assert!(
            position("add chain ip capstan-proxy service-")
                < position("add element ip capstan-proxy service-ips")
        );
        assert!(position("hook prerouting") > position("add element"));
        assert!(text.contains(
            "add rule ip capstan-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
        ));
        assert!(text.contains("add element ip capstan-proxy cluster-ips { 10.43.0.10 }"));
        assert!(!text.contains("nodeport-ips {  }"));
    }

    #[test]
    fn configured_node_addresses_limit_node_ports_to_them() {
        let mut config = config();
        config.node_ips = vec!["192.168.200.1".parse().unwrap()];
        let text = render_full(&config, &Ruleset::default());
        assert!(text.contains("add element ip capstan-proxy nodeport-ips { 192.168.200.1 }"));
        assert!(text.contains(
            "add rule ip capstan-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"
        ));
    }

    #[test]
    fn an_unchanged_ruleset_renders_no_update() {
        let ruleset = web(&[("10.42.0.2", true)]);
        assert_eq!(render_update(&config(), Some(&ruleset), &ruleset), "");
    }

    #[test]
    fn an_update_without_a_previous_table_is_a_full_replacement() {
        let ruleset = web(&[("10.42.0.2", true)]);
        assert_eq!(
            render_update(&config(), None, &ruleset),
            render_full(&config(), &ruleset)
        );
    }

    /// An update's commands with each object's readable tail instead of its hashed name.
    fn commands(text: &str) -> Vec<String> {
        text.lines()
            .map(|line| {
                let words: Vec<&str> = line.split(' ').collect();
                let tail = words[4]
                    .rsplit_once('-')
                    .map(|(_, t)| t)
                    .unwrap_or(words[4]);
                let kind = words[4].split('-').next().unwrap_or_default();
                format!("{} {} {kind} {tail}", words[0], words[1])
            })
            .collect()
    }

    #[test]
    fn a_new_endpoint_rewrites_the_service_chain_and_its_pick_map_and_adds_its_own_chain() {
        let before = web(&[("10.42.0.2", true)]);
        let after = web(&[("10.42.0.2", true), ("10.42.0.3", true)]);
        let text = render_update(&config(), Some(&before), &after);
        assert_eq!(
            commands(&text),
            [
                "flush map pick default/web/tcp/http",
                "flush chain service default/web/tcp/http",
                "add chain endpoint default/web/tcp/http__10.42.0.3/8080",
                "add rule endpoint default/web/tcp/http__10.42.0.3/8080",
                "add rule endpoint default/web/tcp/http__10.42.0.3/8080",
                // `numgen random mod 2` now.
                "add rule service default/web/tcp/http",
                "add rule service default/web/tcp/http",
                "add element pick default/web/tcp/http",
            ],
            "{text}"
        );
    }

    #[test]
    fn a_replaced_endpoint_leaves_the_service_chain_alone() {
        let before = web(&[("10.42.0.2", true), ("10.42.0.3", true)]);
        let after = web(&[("10.42.0.2", true), ("10.42.0.4", true)]);
        let text = render_update(&config(), Some(&before), &after);
        assert_eq!(
            commands(&text),
            [
                "flush map pick default/web/tcp/http",
                "flush chain endpoint default/web/tcp/http__10.42.0.3/8080",
                "delete chain endpoint default/web/tcp/http__10.42.0.3/8080",
                "add chain endpoint default/web/tcp/http__10.42.0.4/8080",
                "add rule endpoint default/web/tcp/http__10.42.0.4/8080",
                "add rule endpoint default/web/tcp/http__10.42.0.4/8080",
                "add element pick default/web/tcp/http",
            ],
            "{text}"
        );
    }

    #[test]
    fn the_last_endpoint_going_away_deletes_its_chains_after_unhooking_them() {
        let before = web(&[("10.42.0.2", true)]);
        let after = web(&[("10.42.0.2", false)]);
        let text = render_update(&config(), Some(&before), &after);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "flush map ip capstan-proxy service-ips");
        assert_eq!(lines[1], "flush map ip capstan-proxy no-endpoint-services");
        assert_eq!(
            commands(&text)[2..lines.len() - 1],
            [
                "flush map pick default/web/tcp/http",
                "flush chain endpoint default/web/tcp/http__10.42.0.2/8080",
                "flush chain service default/web/tcp/http",
                "delete chain endpoint default/web/tcp/http__10.42.0.2/8080",
                "delete chain service default/web/tcp/http",
                "delete map pick default/web/tcp/http",
            ],
            "{text}"
        );
        assert_eq!(
            lines.last().unwrap(),
            &"add element ip capstan-proxy no-endpoint-services { 10.43.0.10 . tcp . 80 : goto reject-chain }"
        );
        assert!(!text.contains("add element ip capstan-proxy service-ips"));
    }
}
