//! From Services and EndpointSlices to the dynamic part of the table: what kube-proxy's
//! nftables proxier decides in `syncProxyRules`, without I/O.
//!
//! Per service port (`<namespace>/<name>/<protocol>/<port name>`, the *base name*):
//!
//! - `service-<hash>-<base>`: all usable endpoints (traffic policy Cluster); masquerades
//!   cluster-IP traffic from outside the pod network; ClientIP affinity lookups; then
//!   `numgen random mod N vmap @pick-service-<hash>-<base>`, a named map `i : goto endpoint-…`
//!   (kube-proxy writes the map inline; an anonymous map costs the kernel a walk of the whole
//!   transaction when it is bound, which made a 1,000-Service sync 30% slower);
//! - `local-<hash>-<base>`: the same over this node's endpoints (traffic policy Local);
//! - `external-<hash>-<base>`: where NodePort, load-balancer and external IPs enter: masquerade
//!   and go to `service-…` (policy Cluster), or keep the client's address and go to `local-…`
//!   (policy Local; dropped when no endpoint is local);
//! - `endpoint-<hash>-<base>__<ip>/<port>`: masquerade hairpin traffic (a pod reaching itself),
//!   record the client in `affinity-<hash>-<base>__<ip>/<port>`, DNAT.
//!
//! Usable endpoints are the ready ones; when none is ready, the serving and terminating ones
//! (Kubernetes' fallback, so that a rolling update never black-holes a Service). A service
//! port without usable endpoints rejects new connections instead (`no-endpoint-*` maps).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::ProxyConfig;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The default ClientIP affinity timeout (3 hours), as Kubernetes defaults it.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

/// The chain that refuses connections to service ports without endpoints.
pub const REJECT_CHAIN: &str = "reject-chain";

/// Chain and set names longer than this are truncated (the hash keeps them unique); nft and the
/// kernel take 256 bytes, kube-proxy stays well below too.
const MAX_NAME_LEN: usize = 200;

/// The dynamic part of the proxy's table: everything that depends on Services and
/// EndpointSlices. The fixed chains (hooks, masquerading, the checks) come from the
/// configuration alone (see [`super::render`]). Ordered maps, so that equal inputs render
/// byte-for-byte equal text and an unchanged ruleset is detected by `==`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Regular chains by name, each with its rules in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// The maps `numgen random mod N` looks up, by name: element `i` is the verdict for `i`.
    pub pick_maps: BTreeMap<String, Vec<String>>,
    /// ClientIP affinity sets by name, with their timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
    /// Every cluster IP: packets to one that matched no service port are rejected.
    pub cluster_ips: BTreeSet<Ipv4Addr>,
    /// `address . protocol . port` → verdict, for cluster, load-balancer and external IPs.
    pub service_ips: BTreeMap<String, String>,
    /// `protocol . node port` → verdict, for packets to the node's own addresses.
    pub service_nodeports: BTreeMap<String, String>,
    /// `address . protocol . port` → reject or drop, for service ports without endpoints.
    pub no_endpoint_services: BTreeMap<String, String>,
    /// `protocol . node port` → reject or drop, for node ports without endpoints.
    pub no_endpoint_nodeports: BTreeMap<String, String>,
}

impl Ruleset {
    /// The rules of the chain `<prefix>-<hash>-<base>`, e.g. `("service", "default/web/tcp/http")`.
    pub fn chain(&self, prefix: &str, base: &str) -> Option<&Vec<String>> {
        self.chains.get(&chain_name(prefix, base))
    }
}

/// `<prefix>-<HASH>-<base>`, the naming of kube-proxy's nftables mode: the hash makes the name
/// unique even when a long base has to be cut.
pub fn chain_name(prefix: &str, base: &str) -> String {
    let mut name = format!("{prefix}-{}-{base}", short_hash(base));
    if name.len() > MAX_NAME_LEN {
        // Bases are ASCII (DNS labels, protocol names, addresses), so any index is a boundary.
        name.truncate(MAX_NAME_LEN);
    }
    name
}

/// The base name of one endpoint of a service port: `<base>__<ip>/<port>`.
pub fn endpoint_base(base: &str, ip: Ipv4Addr, port: u16) -> String {
    format!("{base}__{ip}/{port}")
}

/// Eight base32 characters of a 64-bit FNV-1a hash: names need uniqueness, not secrecy.
fn short_hash(text: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..8)
        .map(|i| char::from(ALPHABET[((hash >> (59 - 5 * i)) & 31) as usize]))
        .collect()
}

/// One endpoint of a service port, as the slices describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Endpoint {
    ip: Ipv4Addr,
    port: u16,
    local: bool,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// The endpoints that receive traffic: the ready ones, or if none is ready the serving and
/// terminating ones (Kubernetes' `ProxyTerminatingEndpoints` fallback).
fn usable<'a>(endpoints: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<&Endpoint> = endpoints.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints.filter(|e| e.serving && e.terminating).collect()
}

/// `tcp`, `udp` or `sctp`, nft's names of the Service protocols; `None` for anything else.
fn protocol_name(protocol: Option<&str>) -> Option<&'static str> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// Builds the dynamic part of the table from the cluster's Services and EndpointSlices.
/// Headless and ExternalName Services, non-IPv4 addresses and unknown protocols get no rules.
pub fn build_ruleset(
    config: &ProxyConfig,
    services: &[impl Borrow<Service>],
    slices: &[impl Borrow<EndpointSlice>],
) -> Ruleset {
    let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let slice = slice.borrow();
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        slices_by_service
            .entry((namespace, service.as_str()))
            .or_default()
            .push(slice);
    }
    let mut ruleset = Ruleset::default();
    for service in services {
        let service = service.borrow();
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let slices = slices_by_service
            .get(&(namespace, name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        add_service(config, &mut ruleset, namespace, name, service, slices);
    }
    ruleset
}

fn add_service(
    config: &ProxyConfig,
    ruleset: &mut Ruleset,
    namespace: &str,
    name: &str,
    service: &Service,
    slices: &[&EndpointSlice],
) {
    let Some(spec) = &service.spec else { return };
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if service_type == "ExternalName" {
        return;
    }
    // Headless ("None"), unset and IPv6 cluster IPs: nothing to proxy.
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return;
    };
    // Served on this node itself (cluster DNS): no DNAT, and no reject for lack of endpoints.
    if config.node_local_ips.contains(&cluster_ip) {
        return;
    }
    ruleset.cluster_ips.insert(cluster_ip);
    let externally_reachable = matches!(service_type, "NodePort" | "LoadBalancer");
    let external_local =
        externally_reachable && spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    // Load-balancer ingress addresses (k3s answers them with node addresses) and external IPs
    // enter like node ports: through the external chain.
    let mut external_ips: BTreeSet<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if service_type == "LoadBalancer" {
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
    }

    for port in spec.ports.iter().flatten() {
        let Some(protocol) = protocol_name(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let port_name = port.name.as_deref().unwrap_or_default();
        let node_port = port
            .node_port
            .filter(|_| externally_reachable)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let base = format!("{namespace}/{name}/{protocol}/{port_name}");
        let endpoints = endpoints_of(config, slices, port_name, port.protocol.as_deref());
        let cluster = usable(endpoints.iter());
        let local = usable(endpoints.iter().filter(|e| e.local));

        let cluster_key = format!("{cluster_ip} . {protocol} . {service_port}");
        let external_keys: Vec<String> = external_ips
            .iter()
            .map(|ip| format!("{ip} . {protocol} . {service_port}"))
            .collect();
        let node_port_key = node_port.map(|p| format!("{protocol} . {p}"));
        let reject = format!("goto {REJECT_CHAIN}");

        if cluster.is_empty() {
            ruleset
                .no_endpoint_services
                .insert(cluster_key, reject.clone());
            for key in external_keys {
                ruleset.no_endpoint_services.insert(key, reject.clone());
            }
            if let Some(key) = node_port_key {
                ruleset.no_endpoint_nodeports.insert(key, reject);
            }
            continue;
        }

        // Endpoint chains for every endpoint either policy uses.
        let mut used: Vec<&Endpoint> = cluster.clone();
        for endpoint in &local {
            if !used.contains(endpoint) {
                used.push(endpoint);
            }
        }
        for endpoint in &used {
            let endpoint_base = endpoint_base(&base, endpoint.ip, endpoint.port);
            let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", endpoint.ip)];
            if let Some(timeout) = affinity_timeout {
                let set = chain_name("affinity", &endpoint_base);
                rules.push(format!("update @{set} {{ ip saddr }}"));
                ruleset.affinity_sets.insert(set, timeout);
            }
            rules.push(format!(
                "meta l4proto {protocol} dnat to {}:{}",
                endpoint.ip, endpoint.port
            ));
            ruleset
                .chains
                .insert(chain_name("endpoint", &endpoint_base), rules);
        }

        let service_chain = chain_name("service", &base);
        let local_chain = chain_name("local", &base);
        let needs_cluster_chain =
            !internal_local || (node_port_key.is_some() || !external_keys.is_empty());
        if needs_cluster_chain {
            // Cluster-IP traffic from outside the pod network (the node itself, other hosts)
            // is masqueraded so that replies come back through this node.
            let mut rules = vec![format!(
                "ip daddr {cluster_ip} {protocol} dport {service_port} ip saddr != {} jump mark-for-masquerade",
                config.cluster_cidr
            )];
            rules.extend(pick_endpoint(
                ruleset,
                "service",
                &base,
                &cluster,
                affinity_timeout.is_some(),
            ));
            ruleset.chains.insert(service_chain.clone(), rules);
        }
        if !local.is_empty() && (internal_local || external_local) {
            let rules = pick_endpoint(ruleset, "local", &base, &local, affinity_timeout.is_some());
            ruleset.chains.insert(local_chain.clone(), rules);
        }

        if !internal_local {
            ruleset
                .service_ips
                .insert(cluster_key, format!("goto {service_chain}"));
        } else if local.is_empty() {
            // Kubernetes drops (not rejects) traffic that has endpoints, just none here.
            ruleset
                .no_endpoint_services
                .insert(cluster_key, "drop".into());
        } else {
            ruleset
                .service_ips
                .insert(cluster_key, format!("goto {local_chain}"));
        }

        if node_port_key.is_none() && external_keys.is_empty() {
            continue;
        }
        let external_chain = chain_name("external", &base);
        let rules = if external_local {
            vec![
                // Pods reaching an external address of the service take the cluster path,
                // like kube-proxy's short-circuit: their source needs no preserving.
                format!("ip saddr {} goto {service_chain}", config.cluster_cidr),
                // So does the node itself, masqueraded: its address may not route back.
                "fib saddr type local jump mark-for-masquerade".to_string(),
                format!("fib saddr type local goto {service_chain}"),
                if local.is_empty() {
                    "drop".to_string()
                } else {
                    format!("goto {local_chain}")
                },
            ]
        } else {
            vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {service_chain}"),
            ]
        };
        ruleset.chains.insert(external_chain.clone(), rules);
        for key in external_keys {
            ruleset
                .service_ips
                .insert(key, format!("goto {external_chain}"));
        }
        if let Some(key) = node_port_key {
            ruleset
                .service_nodeports
                .insert(key, format!("goto {external_chain}"));
        }
    }
}

/// The name of the map the `<chain_prefix>` chain of a service port picks endpoints from.
pub fn pick_map_name(chain_prefix: &str, base: &str) -> String {
    chain_name(&format!("pick-{chain_prefix}"), base)
}

/// The rules of the `<chain_prefix>` chain that choose one of `endpoints`: affinity lookups
/// first (a client seen within the timeout goes back to its endpoint), then a random pick
/// through the chain's pick map, which this adds to `ruleset`.
fn pick_endpoint(
    ruleset: &mut Ruleset,
    chain_prefix: &str,
    base: &str,
    endpoints: &[&Endpoint],
    affinity: bool,
) -> Vec<String> {
    let mut rules = Vec::with_capacity(endpoints.len() + 1);
    let chains: Vec<(String, String)> = endpoints
        .iter()
        .map(|e| {
            let endpoint_base = endpoint_base(base, e.ip, e.port);
            (
                chain_name("endpoint", &endpoint_base),
                chain_name("affinity", &endpoint_base),
            )
        })
        .collect();
    if affinity {
        for (chain, set) in &chains {
            rules.push(format!("ip saddr @{set} goto {chain}"));
        }
    }
    let map = pick_map_name(chain_prefix, base);
    rules.push(format!("numgen random mod {} vmap @{map}", chains.len()));
    let verdicts = chains.into_iter().map(|(chain, _)| format!("goto {chain}"));
    ruleset.pick_maps.insert(map, verdicts.collect());
    rules
}

/// The endpoints of one service port across the Service's slices, deduplicated by address
/// and port (a pod may briefly appear in two slices), in the slices' order.
fn endpoints_of(
    config: &ProxyConfig,
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Option<&str>,
) -> Vec<Endpoint> {
    let protocol = protocol.unwrap_or("TCP");
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for slice in slices {
        // targetPort is already resolved in the slice: the port of the same name.
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().unwrap_or_default() == port_name
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            if endpoints.iter().any(|e| e.ip == ip && e.port == port) {
                continue;
            }
            let conditions = endpoint.conditions.as_ref();
            // The API's reading of unset conditions: ready unless said otherwise, serving as
            // ready, not terminating.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            endpoints.push(Endpoint {
                ip,
                port,
                local: endpoint.node_name.as_deref() == Some(config.node_name.as_str()),
                ready,
                serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
            });
        }
    }
    endpoints
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec,
        ServiceStatus, SessionAffinityConfig,
    };
    use k8s_openapi::api::discovery::v1::{
        Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A Service `default/<name>` of one TCP port `http` 80 (node port 30080 unless ClusterIP).
    pub(crate) fn service(name: &str, cluster_ip: &str, type_: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    node_port: (type_ != "ClusterIP").then_some(30080),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// `(ip, node, ready, serving, terminating)`
    pub(crate) type Ep<'a> = (&'a str, &'a str, bool, bool, bool);

    /// A slice of `default/<service>` whose port `http` resolves to 8080.
    pub(crate) fn slice(service: &str, endpoints: &[Ep<'_>]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(format!("{service}-abcde")),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, node, ready, serving, terminating)| SliceEndpoint {
                    addresses: vec![ip.to_string()],
                    node_name: Some(node.to_string()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*serving),
                        terminating: Some(*terminating),
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }
    }

    const READY: bool = true;

    fn config() -> ProxyConfig {
        ProxyConfig::new("node-a")
    }

    /// The rules of a chain with its pick map written inline, as kube-proxy writes it: what
    /// the kernel does, in one place.
    fn inlined(ruleset: &Ruleset, prefix: &str, base: &str) -> Option<Vec<String>> {
        let rules = ruleset.chain(prefix, base)?;
        let map = pick_map_name(prefix, base);
        let reference = format!(" vmap @{map}");
        Some(
            rules
                .iter()
                .map(|rule| match rule.strip_suffix(&reference) {
                    Some(numgen) => {
                        let choices: Vec<String> = ruleset.pick_maps[&map]
                            .iter()
                            .enumerate()
                            .map(|(i, verdict)| format!("{i} : {verdict}"))
                            .collect();
                        format!("{numgen} vmap {{ {} }}", choices.join(", "))
                    }
                    None => rule.clone(),
                })
                .collect(),
        )
    }

    fn build(services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
        build_ruleset(&config(), services, slices)
    }

    fn endpoint_chain(ip: &str) -> String {
        chain_name(
            "endpoint",
            &endpoint_base("default/web/tcp/http", ip.parse().unwrap(), 8080),
        )
    }

    fn numgen(ips: &[&str]) -> String {
        let choices: Vec<String> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("{i} : goto {}", endpoint_chain(ip)))
            .collect();
        format!(
            "numgen random mod {} vmap {{ {} }}",
            ips.len(),
            choices.join(", ")
        )
    }

    const WEB: &str = "default/web/tcp/http";
    const MASQUERADE_OUTSIDERS: &str =
        "ip daddr 10.43.0.10 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade";

    #[test]
    fn chain_names_carry_a_hash_and_the_readable_base() {
        let name = chain_name("service", WEB);
        assert!(name.starts_with("service-"), "{name}");
        assert!(name.ends_with("-default/web/tcp/http"), "{name}");
        assert_eq!(name.len(), "service-".len() + 8 + 1 + WEB.len());
        assert_ne!(
            chain_name("service", "a/b/tcp/x"),
            chain_name("service", "a/b/tcp/y")
        );
        let long = format!(
            "{}/{}/tcp/{}",
            "n".repeat(63),
            "s".repeat(63),
            "p".repeat(15)
        );
        let long_endpoint = endpoint_base(&long, Ipv4Addr::new(10, 42, 100, 200), 65535);
        assert!(chain_name("endpoint", &long_endpoint).len() <= MAX_NAME_LEN);
        assert!(
            chain_name("endpoint", &long_endpoint)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        );
    }

    #[test]
    fn a_cluster_ip_service_balances_over_its_ready_endpoints() {
        let ruleset = build(
            &[service("web", "10.43.0.10", "ClusterIP")],
            &[slice(
                "web",
                &[
                    ("10.42.0.2", "node-a", READY, true, false),
                    ("10.42.0.3", "node-b", READY, true, false),
                ],
            )],
        );
        let service_chain = chain_name("service", WEB);
        assert_eq!(
            ruleset.service_ips,
            [(
                "10.43.0.10 . tcp . 80".to_string(),
                format!("goto {service_chain}")
            )]
            .into()
        );
        assert_eq!(
            inlined(&ruleset, "service", WEB).unwrap(),
            vec![
                MASQUERADE_OUTSIDERS.to_string(),
                numgen(&["10.42.0.2", "10.42.0.3"])
            ]
        );
        assert_eq!(
            ruleset.chain("service", WEB).unwrap()[1],
            format!(
                "numgen random mod 2 vmap @{}",
                pick_map_name("service", WEB)
            )
        );
        assert_eq!(
            ruleset.chains[&endpoint_chain("10.42.0.2")],
            vec![
                "ip saddr 10.42.0.2 jump mark-for-masquerade",
                "meta l4proto tcp dnat to 10.42.0.2:8080",
            ]
        );
        assert_eq!(ruleset.cluster_ips, [Ipv4Addr::new(10, 43, 0, 10)].into());
        assert!(ruleset.no_endpoint_services.is_empty());
        assert!(ruleset.service_nodeports.is_empty());
        assert_eq!(ruleset.chains.len(), 3, "{:#?}", ruleset.chains.keys());
    }

    /// Which endpoints the service chain picks from, for each mix of conditions.
    #[test]
    fn only_ready_endpoints_serve_unless_none_is_ready_then_serving_terminating_ones_do() {
        let cases: [(&str, Vec<Ep<'_>>, Vec<&str>); 4] = [
            (
                "a not-ready endpoint gets nothing",
                vec![
                    ("10.42.0.2", "node-a", true, true, false),
                    ("10.42.0.3", "node-a", false, false, false),
                ],
                vec!["10.42.0.2"],
            ),
            (
                "ready terminating endpoints are never needed while a ready one exists",
                vec![
                    ("10.42.0.2", "node-a", true, true, false),
                    ("10.42.0.3", "node-a", false, true, true),
                ],
                vec!["10.42.0.2"],
            ),
            (
                "none ready: the serving terminating ones",
                vec![
                    ("10.42.0.2", "node-a", false, true, true),
                    ("10.42.0.3", "node-a", false, false, true),
                    ("10.42.0.4", "node-a", false, true, true),
                ],
                vec!["10.42.0.2", "10.42.0.4"],
            ),
            (
                "none ready nor serving: no endpoints",
                vec![("10.42.0.3", "node-a", false, false, true)],
                vec![],
            ),
        ];
        for (case, endpoints, expected) in cases {
            let ruleset = build(
                &[service("web", "10.43.0.10", "ClusterIP")],
                &[slice("web", &endpoints)],
            );
            match inlined(&ruleset, "service", WEB) {
                Some(rules) => assert_eq!(rules.last().unwrap(), &numgen(&expected), "{case}"),
                None => {
                    assert!(expected.is_empty(), "{case}");
                    assert_eq!(
                        ruleset.no_endpoint_services["10.43.0.10 . tcp . 80"], "goto reject-chain",
                        "{case}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_service_without_endpoints_rejects_on_every_address_it_answers() {
        let mut lb = service("web", "10.43.0.10", "LoadBalancer");
        lb.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("192.168.1.50".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        let ruleset = build(&[lb], &[]);
        assert_eq!(
            ruleset.no_endpoint_services,
            [
                (
                    "10.43.0.10 . tcp . 80".to_string(),
                    "goto reject-chain".to_string()
                ),
                (
                    "192.168.1.50 . tcp . 80".to_string(),
                    "goto reject-chain".to_string()
                ),
            ]
            .into()
        );
        assert_eq!(
            ruleset.no_endpoint_nodeports,
            [("tcp . 30080".to_string(), "goto reject-chain".to_string())].into()
        );
        assert!(ruleset.chains.is_empty());
        assert!(ruleset.service_ips.is_empty());
    }

    #[test]
    fn node_local_cluster_ips_get_no_rules() {
        let mut config = config();
        config.node_local_ips = vec![Ipv4Addr::new(10, 43, 0, 10)];
        let dns = service("kube-dns", "10.43.0.10", "ClusterIP");
        let ruleset = build_ruleset(&config, &[dns], &[] as &[EndpointSlice]);
        assert!(ruleset.cluster_ips.is_empty());
        assert!(ruleset.no_endpoint_services.is_empty());
    }

    #[test]
    fn headless_external_name_and_ipv6_services_get_no_rules() {
        let mut external_name = service("web", "", "ExternalName");
        external_name.spec.as_mut().unwrap().external_name = Some("example.com".into());
        let endpoints = [("10.42.0.2", "node-a", READY, true, false)];
        for service in [
            service("web", "None", "ClusterIP"),
            external_name,
            service("web", "fd00::10", "ClusterIP"),
        ] {
            let ruleset = build(&[service], &[slice("web", &endpoints)]);
            assert_eq!(ruleset, Ruleset::default());
        }
    }

    #[test]
    fn slice_ports_are_matched_by_the_service_ports_name_and_protocol() {
        let mut svc = service("web", "10.43.0.10", "ClusterIP");
        let ports = svc.spec.as_mut().unwrap().ports.as_mut().unwrap();
        ports.push(ServicePort {
            name: Some("dns".into()),
            port: 53,
            protocol: Some("UDP".into()),
            ..Default::default()
        });
        ports.push(ServicePort {
            name: Some("sig".into()),
            port: 3868,
            protocol: Some("SCTP".into()),
            ..Default::default()
        });
        let mut slice = slice("web", &[("10.42.0.2", "node-a", READY, true, false)]);
        slice.ports.as_mut().unwrap().extend([
            EndpointPort {
                name: Some("dns".into()),
                port: Some(5353),
                protocol: Some("UDP".into()),
                ..Default::default()
            },
            EndpointPort {
                name: Some("sig".into()),
                port: Some(3869),
                protocol: Some("SCTP".into()),
                ..Default::default()
            },
        ]);
        let ruleset = build(&[svc], &[slice]);
        let cases = [
            ("default/web/tcp/http", 8080, "tcp"),
            ("default/web/udp/dns", 5353, "udp"),
            ("default/web/sctp/sig", 3869, "sctp"),
        ];
        for (base, target, protocol) in cases {
            let chain = chain_name(
                "endpoint",
                &endpoint_base(base, Ipv4Addr::new(10, 42, 0, 2), target),
            );
            assert_eq!(
                ruleset.chains[&chain].last().unwrap(),
                &format!("meta l4proto {protocol} dnat to 10.42.0.2:{target}"),
                "{base}"
            );
        }
        assert!(ruleset.service_ips.contains_key("10.43.0.10 . udp . 53"));
        assert!(ruleset.service_ips.contains_key("10.43.0.10 . sctp . 3868"));
    }

    #[test]
    fn client_ip_affinity_looks_up_each_endpoints_set_before_the_random_pick() {
        let mut svc = service("web", "10.43.0.10", "ClusterIP");
        let spec = svc.spec.as_mut().unwrap();
        spec.session_affinity = Some("ClientIP".into());
        let endpoints = [
            ("10.42.0.2", "node-a", READY, true, false),
            ("10.42.0.3", "node-a", READY, true, false),
        ];
        let ruleset = build(std::slice::from_ref(&svc), &[slice("web", &endpoints)]);
        let set = |ip: &str| chain_name("affinity", &endpoint_base(WEB, ip.parse().unwrap(), 8080));
        assert_eq!(
            inlined(&ruleset, "service", WEB).unwrap(),
            vec![
                MASQUERADE_OUTSIDERS.to_string(),
                format!(
                    "ip saddr @{} goto {}",
                    set("10.42.0.2"),
                    endpoint_chain("10.42.0.2")
                ),
                format!(
                    "ip saddr @{} goto {}",
                    set("10.42.0.3"),
                    endpoint_chain("10.42.0.3")
                ),
                numgen(&["10.42.0.2", "10.42.0.3"]),
            ]
        );
        assert_eq!(
            ruleset.chains[&endpoint_chain("10.42.0.3")],
            vec![
                "ip saddr 10.42.0.3 jump mark-for-masquerade".to_string(),
                format!("update @{} {{ ip saddr }}", set("10.42.0.3")),
                "meta l4proto tcp dnat to 10.42.0.3:8080".to_string(),
            ]
        );
        assert_eq!(
            ruleset.affinity_sets,
            [(set("10.42.0.2"), 10_800), (set("10.42.0.3"), 10_800)].into()
        );

        svc.spec.as_mut().unwrap().session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(60),
            }),
        });
        let ruleset = build(&[svc], &[slice("web", &endpoints)]);
        assert!(ruleset.affinity_sets.values().all(|t| *t == 60));
    }

    #[test]
    fn node_ports_and_load_balancer_addresses_enter_through_the_external_chain() {
        let mut lb = service("web", "10.43.0.10", "LoadBalancer");
        lb.spec.as_mut().unwrap().external_ips = Some(vec!["192.168.1.60".into()]);
        lb.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("192.168.1.50".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        let ruleset = build(
            &[lb],
            &[slice("web", &[("10.42.0.2", "node-b", READY, true, false)])],
        );
        let external = chain_name("external", WEB);
        let service_chain = chain_name("service", WEB);
        assert_eq!(
            ruleset.chain("external", WEB).unwrap(),
            &vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {service_chain}")
            ]
        );
        assert_eq!(
            ruleset.service_nodeports,
            [("tcp . 30080".to_string(), format!("goto {external}"))].into()
        );
        assert_eq!(
            ruleset.service_ips,
            [
                (
                    "10.43.0.10 . tcp . 80".to_string(),
                    format!("goto {service_chain}")
                ),
                (
                    "192.168.1.50 . tcp . 80".to_string(),
                    format!("goto {external}")
                ),
                (
                    "192.168.1.60 . tcp . 80".to_string(),
                    format!("goto {external}")
                ),
            ]
            .into()
        );
    }

    #[test]
    fn external_traffic_policy_local_keeps_the_source_and_uses_only_local_endpoints() {
        let mut np = service("web", "10.43.0.10", "NodePort");
        np.spec.as_mut().unwrap().external_traffic_policy = Some("Local".into());
        let service_chain = chain_name("service", WEB);
        let local_chain = chain_name("local", WEB);
        let short_circuit = vec![
            format!("ip saddr 10.42.0.0/16 goto {service_chain}"),
            "fib saddr type local jump mark-for-masquerade".to_string(),
            format!("fib saddr type local goto {service_chain}"),
        ];
        let cases: [(&str, Vec<Ep<'_>>, &str); 2] = [
            (
                "one local endpoint",
                vec![
                    ("10.42.0.2", "node-a", READY, true, false),
                    ("10.42.1.2", "node-b", READY, true, false),
                ],
                "goto local",
            ),
            (
                "no local endpoint",
                vec![("10.42.1.2", "node-b", READY, true, false)],
                "drop",
            ),
        ];
        for (case, endpoints, last) in cases {
            let ruleset = build(std::slice::from_ref(&np), &[slice("web", &endpoints)]);
            let mut expected = short_circuit.clone();
            expected.push(if last == "drop" {
                "drop".to_string()
            } else {
                format!("goto {local_chain}")
            });
            assert_eq!(ruleset.chain("external", WEB).unwrap(), &expected, "{case}");
            // Cluster IP traffic still goes to every endpoint.
            assert_eq!(
                ruleset.service_ips["10.43.0.10 . tcp . 80"],
                format!("goto {service_chain}"),
                "{case}"
            );
            if last == "drop" {
                assert!(ruleset.chain("local", WEB).is_none(), "{case}");
            } else {
                assert_eq!(
                    inlined(&ruleset, "local", WEB).unwrap(),
                    vec![numgen(&["10.42.0.2"])],
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn internal_traffic_policy_local_sends_cluster_ip_traffic_to_local_endpoints_or_drops_it() {
        let mut svc = service("web", "10.43.0.10", "ClusterIP");
        svc.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
        let ruleset = build(
            std::slice::from_ref(&svc),
            &[slice(
                "web",
                &[
                    ("10.42.0.2", "node-a", READY, true, false),
                    ("10.42.1.2", "node-b", READY, true, false),
                ],
            )],
        );
        assert_eq!(
            ruleset.service_ips["10.43.0.10 . tcp . 80"],
            format!("goto {}", chain_name("local", WEB))
        );
        assert_eq!(
            inlined(&ruleset, "local", WEB).unwrap(),
            vec![numgen(&["10.42.0.2"])]
        );
        assert!(
            ruleset.chain("service", WEB).is_none(),
            "no external traffic"
        );

        let ruleset = build(
            &[svc],
            &[slice("web", &[("10.42.1.2", "node-b", READY, true, false)])],
        );
        assert_eq!(
            ruleset.no_endpoint_services["10.43.0.10 . tcp . 80"],
            "drop"
        );
        assert!(ruleset.service_ips.is_empty());
    }

    #[test]
    fn endpoints_spread_over_several_slices_are_merged_once_each() {
        let ruleset = build(
            &[service("web", "10.43.0.10", "ClusterIP")],
            &[
                slice("web", &[("10.42.0.2", "node-a", READY, true, false)]),
                slice(
                    "web",
                    &[
                        ("10.42.0.3", "node-a", READY, true, false),
                        ("10.42.0.2", "node-a", READY, true, false),
                    ],
                ),
                slice("other", &[("10.42.0.9", "node-a", READY, true, false)]),
            ],
        );
        assert_eq!(
            inlined(&ruleset, "service", WEB).unwrap().last().unwrap(),
            &numgen(&["10.42.0.2", "10.42.0.3"])
        );
    }
}
