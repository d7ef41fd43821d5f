//! Real rules, real packets: each test builds a small "node" in network namespaces of its own,
//! applies the proxy's table there with nft and sends HTTP through it.
//!
//! ```text
//!  client ns              node ns (the rules)                       backend ns b<i>
//!  eth0 192.168.200.2 ── vc 192.168.200.1                            eth0 10.42.0.1<i>
//!                         cbr0 10.42.0.1/24 (bridge) ── vb<i> ─────── busybox httpd :8080
//!                         up0 (veth to nowhere): default route, so unknown destinations are forwarded
//! ```
//!
//! Two settings of the node namespace are the pod network's business, and the proxy needs both
//! (kubenet's `br_netfilter` + `--hairpin-mode=hairpin-veth`):
//! - `net.bridge.bridge-nf-call-iptables=1`: a pod reaching another pod of the same bridge
//!   through a Service gets its reply bridged, not routed; only with bridged packets passing the
//!   `ip` hooks does conntrack undo the DNAT (else the client sees the endpoint's address and
//!   resets);
//! - hairpin mode on every pod's bridge port: with the above, a pod reaching itself through its
//!   Service is DNATed at the bridge and sent back out the port it came in on.
//!
//! The tests need root (and `nft`, `ip`, `/bin/busybox`); without them they print why and pass.
//! Every namespace, process and file is removed by a guard, also when an assertion fails.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns_testing::{
    BUSYBOX, exec, ip, run, skip_unless_root, tear_down, unique_name, wget,
};
use k8s_openapi::api::core::v1::{Service, SessionAffinityConfig};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::rules::tests::{Ep, service, slice};
use super::{ProxyConfig, SyncOutcome, Syncer, nft};

const NODE_ADDRESS: &str = "192.168.200.1";

/// The namespaces of one test, torn down on drop.
struct Node {
    node: String,
    client: String,
    backends: Vec<String>,
    servers: Vec<Child>,
    _files: tempfile::TempDir,
}

impl Node {
    /// A node with `backends` backend namespaces, each serving "b<i>" on 10.42.0.1<i>:8080.
    fn new(backends: usize) -> Node {
        let prefix = unique_name("capstan-t");
        let files = tempfile::tempdir().expect("temporary directory");
        let mut this = Node {
            node: format!("{prefix}-node"),
            client: format!("{prefix}-c"),
            backends: Vec::new(),
            servers: Vec::new(),
            _files: files,
        };
        // Registered before creation: a failure half-way still deletes what exists.
        run(&["ip", "netns", "add", &this.node]);
        run(&["ip", "netns", "add", &this.client]);
        let node = this.node.clone();
        let n = node.as_str();
        exec(n, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // What the pod network must provide (see the module comment).
        exec(
            n,
            &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
        );
        for command in [
            "link set lo up",
            "link add cbr0 type bridge",
            "addr add 10.42.0.1/24 dev cbr0",
            "link set cbr0 up",
            // No dummy driver on every kernel: a veth pair leading nowhere does as well.
            "link add up0 type veth peer name up1",
            "link set up1 up",
            "link set up0 up",
            "route add default dev up0",
        ] {
            ip(n, command);
        }
        let client = this.client.clone();
        ip(
            n,
            &format!("link add vc type veth peer name eth0 netns {client}"),
        );
        ip(n, &format!("addr add {NODE_ADDRESS}/24 dev vc"));
        ip(n, "link set vc up");
        for command in [
            "link set lo up",
            "addr add 192.168.200.2/24 dev eth0",
            "link set eth0 up",
            &format!("route add default via {NODE_ADDRESS}"),
        ] {
            ip(&client, command);
        }
        for i in 0..backends {
            let backend = format!("{prefix}-b{i}");
            run(&["ip", "netns", "add", &backend]);
            this.backends.push(backend.clone());
            ip(
                n,
                &format!("link add vb{i} type veth peer name eth0 netns {backend}"),
            );
            ip(n, &format!("link set vb{i} master cbr0"));
            ip(n, &format!("link set vb{i} type bridge_slave hairpin on"));
            ip(n, &format!("link set vb{i} up"));
            for command in [
                "link set lo up",
                &format!("addr add {} dev eth0", backend_address(i) + "/24"),
                "link set eth0 up",
                "route add default via 10.42.0.1",
            ] {
                ip(&backend, command);
            }
            let root = this._files.path().join(format!("b{i}"));
            std::fs::create_dir(&root).expect("web root");
            std::fs::write(root.join("index.html"), format!("b{i}")).expect("index.html");
            let server = Command::new("ip")
                .args([
                    "netns", "exec", &backend, BUSYBOX, "httpd", "-f", "-p", "8080", "-h",
                ])
                .arg(&root)
                .stdin(Stdio::null())
                .spawn()
                .expect("busybox httpd");
            this.servers.push(server);
        }
        for i in 0..backends {
            let url = format!("http://{}:8080/", backend_address(i));
            let deadline = Instant::now() + Duration::from_secs(5);
            while this.fetch(&node, &url).is_err() {
                assert!(Instant::now() < deadline, "backend b{i} never answered");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        this
    }

    /// GETs `url` from `netns` with a 2 s timeout: the body, or wget's complaint.
    fn fetch(&self, netns: &str, url: &str) -> Result<String, String> {
        wget(netns, url, 2)
    }

    /// The backends that answered `attempts` GETs of `url` from the client.
    fn answers(&self, url: &str, attempts: usize) -> BTreeSet<String> {
        (0..attempts)
            .map(|_| {
                self.fetch(&self.client, url)
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            })
            .collect()
    }

    /// A proxy configured for this node (NodePorts on the client-facing address).
    fn config(&self) -> ProxyConfig {
        let mut config = ProxyConfig::new("node-a");
        config.node_ips = vec![NODE_ADDRESS.parse().expect("address")];
        config.netns = Some(self.node.clone());
        config
    }

    fn sync(&self, syncer: &mut Syncer, services: &[Service], slices: &[EndpointSlice]) {
        let netns = self.node.clone();
        syncer
            .sync(services, slices, |text| nft::apply(text, Some(&netns)))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        tear_down(
            &mut self.servers,
            self.backends.iter().chain([&self.client, &self.node]),
        );
    }
}

fn backend_address(i: usize) -> String {
    format!("10.42.0.{}", 10 + i)
}

fn ready(i: usize) -> (String, bool) {
    (backend_address(i), true)
}

fn not_ready(i: usize) -> (String, bool) {
    (backend_address(i), false)
}

fn web_slice(endpoints: &[(String, bool)]) -> EndpointSlice {
    let endpoints: Vec<Ep<'_>> = endpoints
        .iter()
        .map(|(ip, ready)| (ip.as_str(), "node-a", *ready, *ready, false))
        .collect();
    slice("web", &endpoints)
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn cluster_ip_traffic_reaches_every_ready_endpoint_and_none_that_is_not_ready() {
    skip_unless_root!();
    let node = Node::new(3);
    let mut syncer = Syncer::new(node.config());
    let services = [service("web", "10.43.0.10", "ClusterIP")];
    node.sync(
        &mut syncer,
        &services,
        &[web_slice(&[ready(0), ready(1), not_ready(2)])],
    );
    assert_eq!(node.answers("http://10.43.0.10/", 30), names(&["b0", "b1"]));

    // The incremental path against the real kernel: b2 becomes ready, b0 stops being ready.
    let slices = [web_slice(&[not_ready(0), ready(1), ready(2)])];
    let outcome = syncer
        .sync(&services, &slices, |text| {
            nft::apply(text, Some(&node.node))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, SyncOutcome::Updated);
    assert_eq!(node.answers("http://10.43.0.10/", 30), names(&["b1", "b2"]));
}

#[test]
fn client_ip_affinity_sends_one_client_to_one_backend() {
    skip_unless_root!();
    let node = Node::new(3);
    let mut syncer = Syncer::new(node.config());
    let mut web = service("web", "10.43.0.10", "ClusterIP");
    let spec = web.spec.as_mut().expect("spec");
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config = Some(SessionAffinityConfig::default());
    node.sync(
        &mut syncer,
        &[web],
        &[web_slice(&[ready(0), ready(1), ready(2)])],
    );
    assert_eq!(node.answers("http://10.43.0.10/", 15).len(), 1);
}

#[test]
fn a_node_port_on_the_node_address_reaches_the_endpoints() {
    skip_unless_root!();
    let node = Node::new(2);
    let mut syncer = Syncer::new(node.config());
    let services = [service("web", "10.43.0.10", "NodePort")];
    node.sync(&mut syncer, &services, &[web_slice(&[ready(0), ready(1)])]);
    let url = format!("http://{NODE_ADDRESS}:30080/");
    assert_eq!(node.answers(&url, 30), names(&["b0", "b1"]));
}

#[test]
fn a_service_without_endpoints_refuses_connections_at_once() {
    skip_unless_root!();
    let node = Node::new(1);
    let mut syncer = Syncer::new(node.config());
    let services = [
        service("web", "10.43.0.10", "NodePort"),
        service("other", "10.43.0.11", "ClusterIP"),
    ];
    let other = slice(
        "other",
        &[(&backend_address(0), "node-a", true, true, false)],
    );
    node.sync(&mut syncer, &services, &[other]);
    let urls = [
        // No endpoints: the cluster IP and the node port (which is not DNATed, so it is the
        // input hook's check that answers).
        "http://10.43.0.10/".to_string(),
        format!("http://{NODE_ADDRESS}:30080/"),
        // A cluster IP on a port the Service does not have.
        "http://10.43.0.11:81/".to_string(),
    ];
    for url in urls {
        let started = Instant::now();
        let error = node
            .fetch(&node.client, &url)
            .expect_err("no endpoint may answer");
        assert!(error.contains("refused"), "{url}: {error}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{url}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(node.answers("http://10.43.0.11:80/", 1), names(&["b0"]));
}

#[test]
fn a_pod_reaches_itself_and_a_neighbour_on_its_bridge_through_their_services() {
    skip_unless_root!();
    let node = Node::new(2);
    let mut syncer = Syncer::new(node.config());
    let services = [
        service("web", "10.43.0.10", "ClusterIP"),
        service("other", "10.43.0.11", "ClusterIP"),
    ];
    let other = slice(
        "other",
        &[(&backend_address(1), "node-a", true, true, false)],
    );
    node.sync(&mut syncer, &services, &[web_slice(&[ready(0)]), other]);
    for _ in 0..5 {
        // Hairpin: without the masquerade the reply would go from b0 to b0 inside the pod.
        let body = node.fetch(&node.backends[0], "http://10.43.0.10/");
        assert_eq!(body.as_deref(), Ok("b0"));
        let body = node.fetch(&node.backends[0], "http://10.43.0.11/");
        assert_eq!(body.as_deref(), Ok("b1"));
    }
}

/// A Service of every kind the rules know, in two versions, and the slices for it.
fn everything(version: u32) -> (Vec<Service>, Vec<EndpointSlice>) {
    use k8s_openapi::api::core::v1::{
        ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceStatus,
    };
    use k8s_openapi::api::discovery::v1::EndpointPort;

    let mut web = service("web", "10.43.0.10", "LoadBalancer");
    let spec = web.spec.as_mut().expect("spec");
    spec.external_traffic_policy = Some("Local".into());
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(60 * version as i32),
        }),
    });
    let ports = spec.ports.as_mut().expect("ports");
    for (name, protocol, port, node_port) in
        [("dns", "UDP", 53, 30053), ("sig", "SCTP", 3868, 30868)]
    {
        ports.push(ServicePort {
            name: Some(name.into()),
            protocol: Some(protocol.into()),
            port,
            node_port: Some(node_port),
            ..Default::default()
        });
    }
    web.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("192.168.200.50".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let mut internal = service("internal", "10.43.0.12", "ClusterIP");
    internal
        .spec
        .as_mut()
        .expect("spec")
        .internal_traffic_policy = Some("Local".into());
    let web_endpoints: &[Ep<'_>] = if version == 1 {
        &[
            ("10.42.0.10", "node-a", true, true, false),
            ("10.42.1.10", "node-b", true, true, false),
        ]
    } else {
        &[
            ("10.42.0.11", "node-a", true, true, false),
            ("10.42.1.10", "node-b", true, true, false),
            ("10.42.1.11", "node-b", false, true, true),
        ]
    };
    let mut web_slice = slice("web", web_endpoints);
    web_slice.ports.as_mut().expect("ports").extend([
        EndpointPort {
            name: Some("dns".into()),
            protocol: Some("UDP".into()),
            port: Some(5353),
            ..Default::default()
        },
        EndpointPort {
            name: Some("sig".into()),
            protocol: Some("SCTP".into()),
            port: Some(3868),
            ..Default::default()
        },
    ]);
    let mut services = vec![web, internal, service("empty", "10.43.0.13", "NodePort")];
    let mut slices = vec![
        web_slice,
        slice("internal", &[("10.42.1.12", "node-b", true, true, false)]),
    ];
    // A single unnamed port: names end in "/".
    let mut unnamed = service("unnamed", "10.43.0.15", "ClusterIP");
    unnamed
        .spec
        .as_mut()
        .expect("spec")
        .ports
        .as_mut()
        .expect("ports")[0]
        .name = None;
    let mut unnamed_slice = slice("unnamed", &[("10.42.0.15", "node-a", true, true, false)]);
    unnamed_slice.ports.as_mut().expect("ports")[0].name = None;
    services.push(unnamed);
    slices.push(unnamed_slice);
    if version == 1 {
        services.push(service("gone-later", "10.43.0.14", "ClusterIP"));
        slices.push(slice(
            "gone-later",
            &[("10.42.0.14", "node-a", true, true, false)],
        ));
    }
    (services, slices)
}

#[test]
fn every_kind_of_service_applies_and_updates_cleanly_in_the_kernel() {
    skip_unless_root!();
    let node = Node::new(0);
    let mut syncer = Syncer::new(node.config());
    let (one, one_slices) = everything(1);
    let (two, two_slices) = everything(2);
    let steps: [(&[Service], &[EndpointSlice], SyncOutcome); 5] = [
        (&one, &one_slices, SyncOutcome::Replaced),
        // New endpoints, a removed Service, every affinity timeout changed.
        (&two, &two_slices, SyncOutcome::Updated),
        (&one, &one_slices, SyncOutcome::Updated),
        (&[], &[], SyncOutcome::Updated),
        (&one, &one_slices, SyncOutcome::Updated),
    ];
    for (i, (services, slices, expected)) in steps.into_iter().enumerate() {
        let outcome = syncer
            .sync(services, slices, |text| nft::apply(text, Some(&node.node)))
            .unwrap_or_else(|e| panic!("step {i}: {e}"));
        assert_eq!(outcome, expected, "step {i}");
    }
    let listed = exec(&node.node, &["nft", "list", "table", "ip", "capstan-proxy"]);
    assert!(listed.contains("timeout 1m"), "{listed}");
    assert!(listed.contains("sctp"), "{listed}");
    assert!(
        listed.contains("default/unnamed/tcp/__10.42.0.15/8080 {"),
        "{listed}"
    );

    syncer
        .sync(&[] as &[Service], &[] as &[EndpointSlice], |text| {
            nft::apply(text, Some(&node.node))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = exec(&node.node, &["nft", "list", "table", "ip", "capstan-proxy"]);
    // Only the fixed chains, sets and maps are left.
    let objects: BTreeSet<&str> = listed
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            ["chain ", "set ", "map "]
                .iter()
                .find_map(|kind| line.strip_prefix(kind))
                .and_then(|rest| rest.strip_suffix(" {"))
        })
        .collect();
    let fixed = [
        "cluster-ips",
        "nodeport-ips",
        "service-ips",
        "service-nodeports",
        "no-endpoint-services",
        "no-endpoint-nodeports",
        "reject-chain",
        "mark-for-masquerade",
        "masquerading",
        "services",
        "service-endpoints-check",
        "nodeport-endpoints-check",
        "cluster-ips-check",
        "filter-input",
        "filter-forward",
        "filter-output",
        "filter-output-post-dnat",
        "nat-prerouting",
        "nat-output",
        "nat-postrouting",
    ];
    assert_eq!(objects, fixed.into_iter().collect(), "{listed}");
    nft::delete_table(Some(&node.node)).unwrap_or_else(|e| panic!("{e}"));
    let tables = exec(&node.node, &["nft", "list", "tables"]);
    assert_eq!(tables.trim(), "");
}

/// Just enough of the Kubernetes API for two watchers: lists answer the current objects, and
/// watches stream whatever the test publishes. One request per connection.
mod fake_api {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::broadcast;

    /// (path prefix, list kind, items).
    type Resource = (&'static str, &'static str, Vec<serde_json::Value>);

    #[derive(Clone)]
    pub struct FakeApi {
        lists: Arc<Mutex<Vec<Resource>>>,
        /// (path prefix, watch event line).
        events: broadcast::Sender<(&'static str, String)>,
        next_version: Arc<AtomicU64>,
    }

    pub const SERVICES: &str = "/api/v1/services";
    pub const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

    impl FakeApi {
        pub async fn start(
            mut services: Vec<serde_json::Value>,
            mut slices: Vec<serde_json::Value>,
        ) -> (FakeApi, String) {
            for object in services.iter_mut().chain(&mut slices) {
                object["metadata"]["resourceVersion"] = "1".into();
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("address"));
            let api = FakeApi {
                lists: Arc::new(Mutex::new(vec![
                    (SERVICES, "ServiceList", services),
                    (SLICES, "EndpointSliceList", slices),
                ])),
                events: broadcast::channel(64).0,
                next_version: Arc::new(AtomicU64::new(2)),
            };
            let server = api.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(server.clone().serve(stream));
                }
            });
            (api, url)
        }

        /// Publishes a MODIFIED event to the watches of `path`.
        /// (and to later lists: a watcher that relists must see it too).
        pub fn modify(&self, path: &'static str, mut object: serde_json::Value) {
            let version = self
                .next_version
                .fetch_add(1, Ordering::Relaxed)
                .to_string();
            object["metadata"]["resourceVersion"] = version.into();
            {
                let mut lists = self.lists.lock().expect("lists");
                if let Some((_, _, items)) = lists.iter_mut().find(|(p, _, _)| *p == path) {
                    items.retain(|item| item["metadata"]["name"] != object["metadata"]["name"]);
                    items.push(object.clone());
                }
            }
            let line = serde_json::json!({ "type": "MODIFIED", "object": object }).to_string();
            let _ = self.events.send((path, line));
        }

        async fn serve(self, mut stream: TcpStream) {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request).into_owned();
            let target = request.split(' ').nth(1).unwrap_or_default().to_string();
            let Some((path, kind, items)) = self
                .lists
                .lock()
                .expect("lists")
                .iter()
                .find(|(path, _, _)| target.starts_with(path))
                .cloned()
            else {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                return;
            };
            if target.contains("watch=true") {
                let mut events = self.events.subscribe();
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while let Ok((event_path, line)) = events.recv().await {
                    if event_path == path
                        && stream
                            .write_all(format!("{line}\n").as_bytes())
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                return;
            }
            let body = serde_json::json!({
                "apiVersion": if path == SERVICES { "v1" } else { "discovery.k8s.io/v1" },
                "kind": kind,
                "metadata": { "resourceVersion": "1" },
                "items": items,
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_stops_sending_to_an_endpoint_within_milliseconds_of_it_turning_unready() {
    use fake_api::{FakeApi, SLICES};
    skip_unless_root!();
    let node = Node::new(2);
    let services = vec![json(&service("web", "10.43.0.10", "ClusterIP"))];
    let slices = vec![json(&web_slice(&[ready(0), ready(1)]))];
    let (api, url) = FakeApi::start(services, slices).await;
    let client =
        kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client");
    let proxy = tokio::spawn(super::run(client, node.config()));

    // The first sync: both backends answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.fetch(&node.client, "http://10.43.0.10/").is_err() {
        assert!(Instant::now() < deadline, "the proxy never synced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.answers("http://10.43.0.10/", 30), names(&["b0", "b1"]));

    // b1 fails its readiness probe.
    let changed = Instant::now();
    api.modify(SLICES, json(&web_slice(&[ready(0), not_ready(1)])));
    let pick = super::rules::pick_map_name("service", "default/web/tcp/http");
    loop {
        let listed = exec(
            &node.node,
            &["nft", "list", "map", "ip", "capstan-proxy", &pick],
        );
        if !listed.contains("10.42.0.11") {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(2), "{listed}");
    }
    let latency = changed.elapsed();
    eprintln!("endpoint removed from the kernel {latency:?} after the watch event");
    assert!(latency < Duration::from_millis(500), "{latency:?}");
    assert_eq!(node.answers("http://10.43.0.10/", 20), names(&["b0"]));
    proxy.abort();
}

/// An API object as the API server sends it (with apiVersion and kind).
fn json(object: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(object).expect("serialisable")
}
