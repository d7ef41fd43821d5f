//! Table-driven tests of the policy computation and of the rendered rules.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use capstan_api::cidr::Ipv4Cidr;

use super::policy::{AddressSet, Allowance, Peers, Ruleset, build_ruleset};
use super::render::{ingress_chain, render};
use super::{PolicyConfig, SyncOutcome, Syncer};
use crate::service_proxy::nft::ApplyError;

pub(crate) const NODE: &str = "node-a";

/// A running pod with `labels` at `ip` on `node`, with the named container ports
/// `(name, protocol, number)`.
pub(crate) fn pod(
    namespace: &str,
    name: &str,
    labels: Value,
    ip: &str,
    node: &str,
    ports: &[(&str, &str, i32)],
) -> Pod {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, protocol, number)| {
            json!({"name": name, "protocol": protocol, "containerPort": number})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip},
    }))
    .expect("pod")
}

pub(crate) fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("ns")
}

pub(crate) fn policy(namespace: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }))
    .expect("policy")
}

/// The cluster every case runs against:
///
/// | pod              | namespace (labels)   | labels     | ip          | node   | ports          |
/// |------------------|----------------------|------------|-------------|--------|----------------|
/// | server           | default (team=a)     | app=web    | 10.42.0.10  | node-a | http tcp 8080  |
/// | client           | default              | app=client | 10.42.0.11  | node-a |                |
/// | remote           | other (team=b)       | app=client | 10.42.1.5   | node-b | http tcp 9090  |
/// | stranger         | bare (no object)     | app=client | 10.42.1.6   | node-b |                |
/// | host, done, new  | default              | app=client | (excluded: hostNetwork, Succeeded, no IP) |
pub(crate) fn cluster() -> (Vec<Pod>, Vec<Namespace>) {
    let mut host = pod(
        "default",
        "host",
        json!({"app": "client"}),
        "192.168.0.1",
        NODE,
        &[],
    );
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut done = pod(
        "default",
        "done",
        json!({"app": "client"}),
        "10.42.0.99",
        NODE,
        &[],
    );
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut new = pod("default", "new", json!({"app": "client"}), "", NODE, &[]);
    new.status.as_mut().unwrap().pod_ip = None;
    let pods = vec![
        pod(
            "default",
            "server",
            json!({"app": "web"}),
            "10.42.0.10",
            NODE,
            &[("http", "TCP", 8080)],
        ),
        pod(
            "default",
            "client",
            json!({"app": "client"}),
            "10.42.0.11",
            NODE,
            &[],
        ),
        pod(
            "other",
            "remote",
            json!({"app": "client"}),
            "10.42.1.5",
            "node-b",
            &[("http", "TCP", 9090)],
        ),
        pod(
            "bare",
            "stranger",
            json!({"app": "client"}),
            "10.42.1.6",
            "node-b",
            &[],
        ),
        host,
        done,
        new,
    ];
    let namespaces = vec![
        namespace("default", json!({"team": "a"})),
        namespace("other", json!({"team": "b"})),
    ];
    (pods, namespaces)
}

/// `peers|ports`: peers `*` or ranges `a,b-c`; ports `*` or `tcp/80,udp/53-60,sctp/*`.
fn describe(allowances: Option<&Vec<Allowance>>) -> Option<Vec<String>> {
    let allowances = allowances?;
    Some(
        allowances
            .iter()
            .map(|allowance| {
                let peers = match &allowance.peers {
                    Peers::All => "*".to_string(),
                    Peers::Only(set) => set
                        .ranges()
                        .map(|(first, last)| {
                            if first == last {
                                first.to_string()
                            } else {
                                format!("{first}-{last}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                };
                let ports = if allowance.ports.is_empty() {
                    "*".to_string()
                } else {
                    allowance
                        .ports
                        .iter()
                        .map(|range| {
                            let protocol = range.protocol.nft_name();
                            match range.ports {
                                None => format!("{protocol}/*"),
                                Some((a, b)) if a == b => format!("{protocol}/{a}"),
                                Some((a, b)) => format!("{protocol}/{a}-{b}"),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!("{peers}|{ports}")
            })
            .collect(),
    )
}

fn ruleset(policies: &[NetworkPolicy]) -> Ruleset {
    let (pods, namespaces) = cluster();
    build_ruleset(NODE, policies, &pods, &namespaces)
}

/// (ingress, egress) of the local pod at `ip`; `None` when it is not isolated at all.
type Directions = Option<(Option<Vec<String>>, Option<Vec<String>>)>;

fn directions(ruleset: &Ruleset, ip: &str) -> Directions {
    let pod = ruleset.pods.get(&ip.parse().unwrap())?;
    Some((
        describe(pod.ingress.as_ref()),
        describe(pod.egress.as_ref()),
    ))
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

const SERVER: &str = "10.42.0.10";
const CLIENT: &str = "10.42.0.11";

#[test]
fn policies_isolate_the_selected_local_pods_and_allow_what_their_rules_say() {
    let web = json!({"matchLabels": {"app": "web"}});
    let deny = strings(&[]);
    // (case, policies, server's (ingress, egress), client's)
    let cases: Vec<(&str, Vec<NetworkPolicy>, Directions, Directions)> = vec![
        ("no policy: nobody is isolated", vec![], None, None),
        (
            "default deny ingress for the namespace",
            vec![policy(
                "default",
                "deny",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            )],
            Some((deny.clone(), None)),
            Some((deny.clone(), None)),
        ),
        (
            "a policy without rules or types isolates for ingress only",
            vec![policy("default", "deny", json!({"podSelector": web}))],
            Some((deny.clone(), None)),
            None,
        ),
        (
            "policies of another namespace select nothing here",
            vec![policy("other", "deny", json!({"podSelector": {}}))],
            None,
            None,
        ),
        (
            "allow by pod selector: same namespace only",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
            )],
            Some((strings(&["10.42.0.11|*"]), None)),
            None,
        ),
        (
            "allow by namespace selector",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
            )],
            Some((strings(&["10.42.1.5|*"]), None)),
            None,
        ),
        (
            "the name label matches a namespace without an object",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels":
                    {"kubernetes.io/metadata.name": "bare"}}}]}]}),
            )],
            Some((strings(&["10.42.1.6|*"]), None)),
            None,
        ),
        (
            "namespace and pod selector together: both must hold",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [
                {"from": [{"namespaceSelector": {"matchExpressions":
                    [{"key": "team", "operator": "In", "values": ["a"]}]},
                   "podSelector": {"matchLabels": {"app": "client"}}}]}]}),
            )],
            Some((strings(&["10.42.0.11|*"]), None)),
            None,
        ),
        (
            "every namespace and a pod selector",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [
                {"from": [{"namespaceSelector": {},
                   "podSelector": {"matchLabels": {"app": "client"}}}]}]}),
            )],
            Some((strings(&["10.42.0.11,10.42.1.5-10.42.1.6|*"]), None)),
            None,
        ),
        (
            "ipBlock with except",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [
                {"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                    "except": ["10.42.0.0/16", "10.0.0.0/24"]}}]}]}),
            )],
            Some((
                strings(&["10.0.1.0-10.41.255.255,10.43.0.0-10.255.255.255|*"]),
                None,
            )),
            None,
        ),
        (
            "an empty rule allows everybody on every port",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [{}]}),
            )],
            Some((strings(&["*|*"]), None)),
            None,
        ),
        (
            "named ports resolve against the target pod; unknown ones allow nothing",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": {}, "ingress": [
                {"ports": [{"port": "http"}]},
                {"ports": [{"port": "http", "protocol": "UDP"}]}]}),
            )],
            Some((strings(&["*|tcp/8080"]), None)),
            Some((deny.clone(), None)),
        ),
        (
            "numbers, endPort ranges, protocols without a port",
            vec![policy(
                "default",
                "p",
                json!({"podSelector": web, "ingress": [
                {"ports": [{"port": 8000, "endPort": 8100, "protocol": "UDP"},
                           {"port": 80}, {"protocol": "SCTP"}]}]}),
            )],
            Some((strings(&["*|tcp/80,udp/8000-8100,sctp/*"]), None)),
            None,
        ),
        (
            "several policies: the union of their rules",
            vec![
                policy(
                    "default",
                    "a",
                    json!({"podSelector": web, "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
                ),
                policy(
                    "default",
                    "b",
                    json!({"podSelector": {}, "ingress": [
                    {"from": [{"ipBlock": {"cidr": "192.168.7.0/24"}}],
                     "ports": [{"port": 53, "protocol": "UDP"}]}]}),
                ),
            ],
            Some((
                strings(&["10.42.0.11|*", "192.168.7.0-192.168.7.255|udp/53"]),
                None,
            )),
            Some((strings(&["192.168.7.0-192.168.7.255|udp/53"]), None)),
        ),
        (
            "egress rules make egress isolation the default, ingress stays isolated",
            vec![policy(
                "default",
                "p",
                json!({
                "podSelector": {"matchLabels": {"app": "client"}},
                "egress": [{"to": [{"podSelector": web}], "ports": [{"port": 8080}]}]}),
            )],
            None,
            Some((deny.clone(), strings(&["10.42.0.10|tcp/8080"]))),
        ),
        (
            "an empty egress list without policyTypes does not isolate egress",
            vec![policy(
                "default",
                "p",
                json!({
                "podSelector": {"matchLabels": {"app": "client"}}, "egress": []}),
            )],
            None,
            Some((deny.clone(), None)),
        ),
        (
            "egress only, by policyTypes; an empty egress list denies all",
            vec![policy(
                "default",
                "p",
                json!({
                "podSelector": {"matchLabels": {"app": "client"}},
                "policyTypes": ["Egress"]}),
            )],
            None,
            Some((None, deny.clone())),
        ),
        (
            "egress named ports resolve against every destination pod",
            vec![policy(
                "default",
                "p",
                json!({
                "podSelector": {"matchLabels": {"app": "client"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {}}],
                            "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}]}]}),
            )],
            None,
            Some((
                None,
                strings(&[
                    "10.42.0.10-10.42.0.11,10.42.1.5-10.42.1.6|udp/53",
                    "10.42.0.10|tcp/8080",
                    "10.42.1.5|tcp/9090",
                ]),
            )),
        ),
    ];
    for (case, policies, server, client) in cases {
        let ruleset = ruleset(&policies);
        assert_eq!(directions(&ruleset, SERVER), server, "{case}: server");
        assert_eq!(directions(&ruleset, CLIENT), client, "{case}: client");
        // Only this node's pods with an address of their own are ever enforced here.
        for ip in ruleset.pods.keys() {
            assert!(
                [SERVER, CLIENT].contains(&ip.to_string().as_str()),
                "{case}: {ip}"
            );
        }
    }
}

#[test]
fn the_rendered_table_jumps_to_per_pod_chains_and_drops_at_their_end() {
    let policies = [
        policy(
            "default",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        policy(
            "default",
            "web",
            json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                         "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010}]}]}),
        ),
    ];
    let ruleset = ruleset(&policies);
    let server = &ruleset.pods[&SERVER.parse().unwrap()];
    let chain = ingress_chain(server);
    assert!(chain.len() < 32 && chain.starts_with("ingress-"), "{chain}");
    let text = render(&ruleset);
    assert!(text.starts_with(
        "add table inet capstan-policy\ndelete table inet capstan-policy\ntable inet capstan-policy {\n"
    ));
    let expected = format!(
        "\tset {chain}-0 {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {{ 10.42.0.11 }}\n\t}}\n\
         \tchain {chain} {{\n\
         \t\tip saddr 10.42.0.10 return\n\
         \t\tip saddr @{chain}-0 meta l4proto tcp th dport 8080 return\n\
         \t\tip saddr @{chain}-0 meta l4proto tcp th dport 9000-9010 return\n\
         \t\tdrop\n\t}}\n"
    );
    assert!(text.contains(&expected), "{text}");
    let forward = text
        .split("\tchain forward {\n")
        .nth(1)
        .expect("forward chain");
    let lines: Vec<&str> = forward.lines().map(str::trim).collect();
    assert_eq!(
        lines[0],
        "type filter hook forward priority filter; policy accept;"
    );
    assert_eq!(lines[1], "ct state established,related accept");
    // Egress jumps first: a packet between two isolated pods passes both chains.
    assert!(
        lines[2].starts_with("ip saddr 10.42.0.10 jump egress-"),
        "{forward}"
    );
    assert!(
        lines[3].starts_with("ip saddr 10.42.0.11 jump egress-"),
        "{forward}"
    );
    assert!(lines[4].starts_with(&format!(
        "ip daddr 10.42.0.10 jump {chain} comment \"default/server\""
    )));
    assert!(
        lines[5].starts_with("ip daddr 10.42.0.11 jump ingress-"),
        "{forward}"
    );
    assert_eq!(&lines[6..], ["}", "}"]);
}

#[test]
fn a_sync_applies_only_rulesets_that_changed_and_again_after_a_failure() {
    let (pods, namespaces) = cluster();
    let mut syncer = Syncer::new(PolicyConfig::new(NODE));
    let mut applied = Vec::new();
    let deny = [policy("default", "deny", json!({"podSelector": {}}))];
    let none: [NetworkPolicy; 0] = [];
    let mut step = |policies: &[NetworkPolicy], fail: bool| {
        syncer.sync(policies, &pods, &namespaces, |text| {
            applied.push(text.to_string());
            if fail {
                Err(ApplyError::Rejected {
                    stderr: "no".into(),
                })
            } else {
                Ok(())
            }
        })
    };
    assert_eq!(step(&none, false).unwrap(), SyncOutcome::Replaced);
    assert_eq!(step(&none, false).unwrap(), SyncOutcome::Unchanged);
    assert_eq!(step(&deny, false).unwrap(), SyncOutcome::Replaced);
    assert_eq!(step(&deny, false).unwrap(), SyncOutcome::Unchanged);
    assert!(step(&none, true).is_err());
    assert_eq!(step(&none, false).unwrap(), SyncOutcome::Replaced);
    assert_eq!(applied.len(), 4);
    assert!(!applied[0].contains("jump"));
    assert!(applied[1].contains("jump ingress-"));
}

#[test]
fn address_sets_merge_neighbours_and_cut_out_excepted_blocks() {
    let cidr = |text: &str| Ipv4Cidr::parse(text).unwrap();
    let show = |set: &AddressSet| {
        set.ranges()
            .map(|(first, last)| format!("{first}-{last}"))
            .collect::<Vec<_>>()
    };
    let cases: Vec<(&str, &str, Vec<&str>, Vec<&str>)> = vec![
        (
            "nothing excepted",
            "10.0.0.0/24",
            vec![],
            vec!["10.0.0.0-10.0.0.255"],
        ),
        (
            "the whole space but one block",
            "0.0.0.0/0",
            vec!["10.42.0.0/16"],
            vec!["0.0.0.0-10.41.255.255", "10.43.0.0-255.255.255.255"],
        ),
        (
            "everything excepted",
            "10.0.0.0/24",
            vec!["10.0.0.0/16"],
            vec![],
        ),
        (
            "blocks at both ends",
            "10.0.0.0/24",
            vec!["10.0.0.0/25", "10.0.0.255/32"],
            vec!["10.0.0.128-10.0.0.254"],
        ),
    ];
    for (case, block, except, expected) in cases {
        let except: Vec<Ipv4Cidr> = except.into_iter().map(cidr).collect();
        let set = AddressSet::block(cidr(block), &except);
        assert_eq!(show(&set), expected, "{case}");
    }
    let addresses = ["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.1"];
    let set = AddressSet::of(addresses.iter().map(|a| a.parse().unwrap()));
    assert_eq!(show(&set), ["10.0.0.1-10.0.0.3", "10.0.0.9-10.0.0.9"]);
    assert!(set.contains("10.0.0.2".parse().unwrap()));
    assert!(!set.contains("10.0.0.4".parse().unwrap()));
}
