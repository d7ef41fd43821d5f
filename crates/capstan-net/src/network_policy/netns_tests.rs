//! Real rules, real packets: each test builds a small node in network namespaces of its own,
//! applies the policy table there with nft and sends HTTP between "pods".
//!
//! ```text
//!  node ns (the rules)                                 pod ns p<i>
//!  cbr0 10.42.0.1/24 (bridge) ── v<i> ───────────────── eth0 10.42.0.1<i>  busybox httpd :8080
//! ```
//!
//! As on a real node, `net.bridge.bridge-nf-call-iptables=1` sends the bridged packets between
//! pods through the `forward` hook where the rules live.
//!
//! The command helpers are `crate::netns_testing`'s. The tests need root (and `nft`, `ip`, `/bin/busybox`);
//! without them they print why and pass. Every namespace and process is removed by a guard,
//! also when an assertion fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns_testing::{
    BUSYBOX, exec, ip, run, skip_unless_root, tear_down, unique_name, wget,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::tests::{NODE, namespace, pod, policy};
use super::{PolicyConfig, SyncOutcome, Syncer};
use super::{build_ruleset, render};
use crate::service_proxy::nft;

/// The namespaces of one test, torn down on drop.
struct Node {
    node: String,
    pods: Vec<String>,
    servers: Vec<Child>,
    files: tempfile::TempDir,
}

impl Node {
    /// A node with `pods` pod namespaces; pod i is 10.42.0.1<i> and serves "p<i>" on :8080.
    fn new(pods: usize) -> Node {
        let prefix = unique_name("capstan-np");
        let mut this = Node {
            node: format!("{prefix}-node"),
            pods: Vec::new(),
            servers: Vec::new(),
            files: tempfile::tempdir().expect("temporary directory"),
        };
        run(&["ip", "netns", "add", &this.node]);
        let node = this.node.clone();
        exec(&node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        exec(
            &node,
            &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
        );
        for command in [
            "link set lo up",
            "link add cbr0 type bridge",
            "addr add 10.42.0.1/24 dev cbr0",
            "link set cbr0 up",
        ] {
            ip(&node, command);
        }
        for i in 0..pods {
            let netns = format!("{prefix}-p{i}");
            run(&["ip", "netns", "add", &netns]);
            // Registered at once: a failure half-way still deletes what exists.
            this.pods.push(netns.clone());
            ip(
                &node,
                &format!("link add v{i} type veth peer name eth0 netns {netns}"),
            );
            ip(&node, &format!("link set v{i} master cbr0"));
            ip(&node, &format!("link set v{i} up"));
            for command in [
                "link set lo up",
                &format!("addr add {}/24 dev eth0", address(i)),
                "link set eth0 up",
                "route add default via 10.42.0.1",
            ] {
                ip(&netns, command);
            }
            let root = this.files.path().join(format!("p{i}"));
            std::fs::create_dir(&root).expect("web root");
            std::fs::write(root.join("index.html"), format!("p{i}")).expect("index.html");
            let server = Command::new("ip")
                .args([
                    "netns", "exec", &netns, BUSYBOX, "httpd", "-f", "-p", "8080", "-h",
                ])
                .arg(&root)
                .stdin(Stdio::null())
                .spawn()
                .expect("busybox httpd");
            this.servers.push(server);
        }
        for i in 0..pods {
            let deadline = Instant::now() + Duration::from_secs(5);
            while this.fetch(&node, i, 1).is_err() {
                assert!(Instant::now() < deadline, "pod p{i} never answered");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        this
    }

    /// GETs pod `to`'s page from `netns` within `seconds`: the body, or wget's complaint.
    fn fetch(&self, netns: &str, to: usize, seconds: u32) -> Result<String, String> {
        wget(netns, &format!("http://{}:8080/", address(to)), seconds)
    }

    /// Whether pod `from` gets pod `to`'s page (a blocked attempt costs a second).
    fn reaches(&self, from: usize, to: usize) -> bool {
        match self.fetch(&self.pods[from], to, 1) {
            Ok(body) => {
                assert_eq!(body, format!("p{to}"));
                true
            }
            Err(_) => false,
        }
    }

    fn sync(&self, syncer: &mut Syncer, policies: &[NetworkPolicy]) -> SyncOutcome {
        let (pods, namespaces) = cluster(self.pods.len());
        let netns = self.node.clone();
        syncer
            .sync(policies, &pods, &namespaces, |text| {
                nft::apply(text, Some(&netns))
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn syncer(&self) -> Syncer {
        let mut config = PolicyConfig::new(NODE);
        config.netns = Some(self.node.clone());
        Syncer::new(config)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        tear_down(&mut self.servers, self.pods.iter().chain([&self.node]));
    }
}

fn address(i: usize) -> String {
    format!("10.42.0.{}", 10 + i)
}

/// Pod i as the API shows it: `default/p<i>` on this node, labelled `app=p<i>`, with its
/// server's port named `http`.
fn cluster(pods: usize) -> (Vec<Pod>, Vec<Namespace>) {
    let pods = (0..pods)
        .map(|i| {
            let name = format!("p{i}");
            pod(
                "default",
                &name,
                json!({"app": name}),
                &address(i),
                NODE,
                &[("http", "TCP", 8080)],
            )
        })
        .collect();
    (pods, vec![namespace("default", json!({}))])
}

fn app(i: usize) -> Value {
    json!({"matchLabels": {"app": format!("p{i}")}})
}

#[test]
fn a_default_deny_blocks_pods_and_a_rule_for_the_clients_labels_lets_only_it_through() {
    skip_unless_root!();
    let node = Node::new(3);
    let mut syncer = node.syncer();
    assert_eq!(node.sync(&mut syncer, &[]), SyncOutcome::Replaced);
    assert!(node.reaches(1, 0), "before any policy");
    assert!(node.reaches(2, 0), "before any policy");

    let deny = policy("default", "deny", json!({"podSelector": app(0)}));
    node.sync(&mut syncer, std::slice::from_ref(&deny));
    assert!(!node.reaches(1, 0), "default deny");
    // The node itself (probes) always reaches its pods.
    assert_eq!(node.fetch(&node.node, 0, 2).as_deref(), Ok("p0"));

    let allow = policy(
        "default",
        "allow-p1",
        json!({"podSelector": app(0), "ingress": [
            {"from": [{"podSelector": app(1)}], "ports": [{"port": "http"}]}]}),
    );
    node.sync(&mut syncer, &[deny, allow]);
    assert!(node.reaches(1, 0), "allowed by the client's labels");
    assert!(!node.reaches(2, 0), "another client stays out");
    // p0 is isolated for ingress only: it still reaches the others.
    assert!(node.reaches(0, 2));
}

#[test]
fn replies_of_an_allowed_connection_pass_although_both_pods_deny_everything_else() {
    skip_unless_root!();
    let node = Node::new(2);
    let mut syncer = node.syncer();
    let policies = [
        policy(
            "default",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        policy(
            "default",
            "p1-to-p0",
            json!({"podSelector": app(1), "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": app(0)}], "ports": [{"port": "http"}]}]}),
        ),
        policy(
            "default",
            "p0-from-p1",
            json!({"podSelector": app(0), "ingress": [
                {"from": [{"podSelector": app(1)}], "ports": [{"port": 8080}]}]}),
        ),
    ];
    node.sync(&mut syncer, &policies);
    // The reply p0 → p1 is egress of p0 and ingress of p1, both denied but for conntrack.
    assert!(
        node.reaches(1, 0),
        "the allowed connection with its replies"
    );
    assert!(!node.reaches(0, 1), "the other way round");

    // Egress alone: without p1's egress allowance the same connection stops at p1.
    node.sync(&mut syncer, &[policies[0].clone(), policies[2].clone()]);
    assert!(!node.reaches(1, 0), "egress isolation of the client");
}

#[test]
fn nft_accepts_every_kind_of_rule_the_renderer_writes() {
    skip_unless_root!();
    let node = Node::new(0);
    let (pods, namespaces) = super::tests::cluster();
    let policies = [
        policy(
            "default",
            "everything",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {},
                    {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.42.0.0/16"]}},
                              {"namespaceSelector": {}}],
                     "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"},
                               {"port": 9000, "endPort": 9100, "protocol": "SCTP"},
                               {"protocol": "UDP"}]}],
                "egress": [
                    {"to": [{"podSelector": {}}], "ports": [{"port": "http"}]},
                    {"to": [{"ipBlock": {"cidr": "192.168.0.0/16"}}]}]}),
        ),
        policy("default", "deny", json!({"podSelector": {}})),
    ];
    let ruleset = build_ruleset(NODE, &policies, &pods, &namespaces);
    assert_eq!(ruleset.pods.len(), 2);
    let text = render(&ruleset);
    nft::apply(&text, Some(&node.node)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Applied twice: the replacement of an existing table works as well.
    nft::apply(&text, Some(&node.node)).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let listed = exec(
        &node.node,
        &["nft", "list", "table", "inet", "capstan-policy"],
    );
    assert!(listed.contains("sctp dport 9000-9100"), "{listed}");
    super::delete_table(Some(&node.node)).unwrap_or_else(|e| panic!("{e}"));
}
