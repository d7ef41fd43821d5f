//! From NetworkPolicies, Pods and Namespaces to what each pod of this node may send and
//! receive, without I/O: the semantics of `networking.k8s.io/v1` as the Kubernetes docs and
//! its conformance tests state them.
//!
//! - A pod is isolated for ingress when a policy of its namespace selects it and lists
//!   `Ingress` in its `policyTypes` (the default: `Ingress`, plus `Egress` when the policy has
//!   egress rules); an isolated pod receives only what the union of those policies' rules
//!   allows. Egress likewise.
//! - Peers are pods (`podSelector` in the policy's namespace, `namespaceSelector`, both
//!   together as an AND) or address blocks (`ipBlock` minus `except`); an empty or missing
//!   peer list allows everybody, an empty or missing port list every port.
//! - Named ports resolve against the pod that receives the traffic: the isolated pod itself
//!   for ingress, each destination pod for egress (an egress named port therefore matches only
//!   destinations that are pods, and becomes one allowance per resolved port number).
//!
//! Pods without an address, with `hostNetwork`, or in a terminal phase are never peers (their
//! address may belong to the node or to a newer pod).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use capstan_api::cidr::Ipv4Cidr;
use capstan_api::selector::LabelSelector;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

/// Every namespace carries its own name under this label (set by the API server since 1.21);
/// it is matched even on a Namespace object that lacks it, or that is not (yet) cached.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A transport protocol a NetworkPolicy port can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API's spelling (`TCP` when unset); `None` for anything else.
    fn parse(protocol: Option<&str>) -> Option<Protocol> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's name of the protocol (`meta l4proto tcp`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Which ports of one protocol an allowance opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub protocol: Protocol,
    /// `None`: every port of the protocol (a policy port without `port`).
    pub ports: Option<(u16, u16)>,
}

/// IPv4 addresses as sorted, disjoint, non-adjacent inclusive ranges: what an nft interval set
/// holds, without the overlaps nft would refuse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressSet {
    ranges: Vec<(u32, u32)>,
}

impl AddressSet {
    /// Adds the inclusive range `first..=last`.
    fn insert(&mut self, first: u32, last: u32) {
        self.ranges.push((first, last));
    }

    fn insert_cidr(&mut self, cidr: Ipv4Cidr) {
        let first = u32::from(cidr.network());
        let last = first + (cidr.size() - 1) as u32;
        self.insert(first, last);
    }

    /// Sorts and merges overlapping and adjacent ranges.
    fn normalize(&mut self) {
        self.ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for &(first, last) in &self.ranges {
            match merged.last_mut() {
                Some(previous) if u64::from(first) <= u64::from(previous.1) + 1 => {
                    previous.1 = previous.1.max(last);
                }
                _ => merged.push((first, last)),
            }
        }
        self.ranges = merged;
    }

    /// `cidr` without the `except` ranges inside it.
    pub(crate) fn block(cidr: Ipv4Cidr, except: &[Ipv4Cidr]) -> AddressSet {
        let mut remaining = AddressSet::default();
        remaining.insert_cidr(cidr);
        for hole in except {
            let hole_first = u32::from(hole.network());
            let hole_last = hole_first + (hole.size() - 1) as u32;
            let mut next = Vec::with_capacity(remaining.ranges.len() + 1);
            for &(first, last) in &remaining.ranges {
                if hole_last < first || hole_first > last {
                    next.push((first, last));
                    continue;
                }
                if hole_first > first {
                    next.push((first, hole_first - 1));
                }
                if hole_last < last {
                    next.push((hole_last + 1, last));
                }
            }
            remaining.ranges = next;
        }
        remaining
    }

    fn extend(&mut self, other: &AddressSet) {
        self.ranges.extend_from_slice(&other.ranges);
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let address = u32::from(address);
        self.ranges
            .iter()
            .any(|&(first, last)| first <= address && address <= last)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges as `(first, last)` addresses, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.ranges
            .iter()
            .map(|&(first, last)| (Ipv4Addr::from(first), Ipv4Addr::from(last)))
    }

    /// The set of exactly these addresses.
    pub fn of(addresses: impl IntoIterator<Item = Ipv4Addr>) -> AddressSet {
        let mut set = AddressSet::default();
        for address in addresses {
            set.insert(u32::from(address), u32::from(address));
        }
        set.normalize();
        set
    }
}

/// Who an allowance lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peers {
    /// Everybody (a rule without `from`/`to`).
    All,
    /// The sources (ingress) or destinations (egress) in this set; never empty.
    Only(AddressSet),
}

/// One way through an isolated pod's direction: traffic from (ingress) or to (egress) `peers`
/// on `ports` passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub peers: Peers,
    /// Empty: every port of every protocol.
    pub ports: Vec<PortRange>,
}

/// What a pod of this node may receive and send. `None` for a direction it is not isolated in;
/// an empty list denies everything in that direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPolicy {
    pub namespace: String,
    pub name: String,
    pub address: Ipv4Addr,
    pub ingress: Option<Vec<Allowance>>,
    pub egress: Option<Vec<Allowance>>,
}

/// The policies of this node's isolated pods, by address: what [`super::render()`] turns into
/// nft's text. Equal inputs give equal rulesets, so an unchanged one is detected by `==`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub pods: BTreeMap<Ipv4Addr, PodPolicy>,
}

/// A pod as policies see it.
struct PodView<'a> {
    pod: &'a Pod,
    namespace: &'a str,
    name: &'a str,
    address: Ipv4Addr,
    labels: Map<String, Value>,
}

impl PodView<'_> {
    /// The number of the container port `name` for `protocol`, as kube-proxy and the network
    /// plugins resolve it (containers first, then sidecars among the init containers).
    fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        let spec = self.pod.spec.as_ref()?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|container| container.ports.iter().flatten())
            .find(|port| {
                port.name.as_deref() == Some(name)
                    && Protocol::parse(port.protocol.as_deref()) == Some(protocol)
            })
            .and_then(|port| u16::try_from(port.container_port).ok())
    }
}

/// The pods that can be peers (an address, not hostNetwork, not finished) with their labels.
fn pod_views(pods: &[impl Borrow<Pod>]) -> Vec<PodView<'_>> {
    pods.iter()
        .filter_map(|pod| {
            let pod = pod.borrow();
            let spec = pod.spec.as_ref()?;
            if spec.host_network == Some(true) {
                return None;
            }
            let status = pod.status.as_ref()?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let address = status.pod_ip.as_deref()?.parse().ok()?;
            Some(PodView {
                pod,
                namespace: pod.metadata.namespace.as_deref()?,
                name: pod.metadata.name.as_deref()?,
                address,
                labels: labels(pod.metadata.labels.as_ref()),
            })
        })
        .collect()
}

fn labels(labels: Option<&BTreeMap<String, String>>) -> Map<String, Value> {
    labels
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect()
}

/// The selector of an API label selector; an invalid one selects nothing (the API server
/// validates policies, so this is a stale or hand-made object).
fn selector(selector: &ApiLabelSelector) -> LabelSelector {
    serde_json::to_value(selector)
        .ok()
        .and_then(|value| LabelSelector::from_label_selector(&value).ok())
        .unwrap_or_else(LabelSelector::nothing)
}

/// What the cluster looks like to one sync.
struct Cluster<'a> {
    pods: Vec<PodView<'a>>,
    /// Namespace labels, with [`NAMESPACE_NAME_LABEL`] added.
    namespaces: HashMap<String, Map<String, Value>>,
}

impl Cluster<'_> {
    /// The pods `peer` names, for a policy in `namespace`.
    fn peer_pods(&self, peer: &NetworkPolicyPeer, namespace: &str) -> Vec<&PodView<'_>> {
        let pods = peer.pod_selector.as_ref().map(selector);
        let namespaces = peer.namespace_selector.as_ref().map(selector);
        if pods.is_none() && namespaces.is_none() {
            return Vec::new();
        }
        let namespace_matches: HashMap<&str, bool> = match &namespaces {
            None => HashMap::new(),
            Some(selector) => self
                .namespaces
                .iter()
                .map(|(name, labels)| (name.as_str(), selector.matches(Some(labels))))
                .collect(),
        };
        self.pods
            .iter()
            .filter(|pod| match &namespaces {
                None => pod.namespace == namespace,
                Some(_) => namespace_matches.get(pod.namespace) == Some(&true),
            })
            .filter(|pod| pods.as_ref().is_none_or(|s| s.matches(Some(&pod.labels))))
            .collect()
    }

    /// The addresses of `peers`; `Peers::All` for an empty or missing list.
    fn peers(&self, peers: Option<&[NetworkPolicyPeer]>, namespace: &str) -> Peers {
        let peers = peers.unwrap_or_default();
        if peers.is_empty() {
            return Peers::All;
        }
        let mut set = AddressSet::default();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                // IPv6 blocks cannot match the IPv4-only pod network.
                if let Ok(cidr) = Ipv4Cidr::parse(&block.cidr) {
                    let except: Vec<Ipv4Cidr> = block
                        .except
                        .iter()
                        .flatten()
                        .filter_map(|text| Ipv4Cidr::parse(text).ok())
                        .collect();
                    set.extend(&AddressSet::block(cidr, &except));
                }
                continue;
            }
            for pod in self.peer_pods(peer, namespace) {
                set.insert(u32::from(pod.address), u32::from(pod.address));
            }
        }
        set.normalize();
        Peers::Only(set)
    }

    /// The allowances of one rule (`peers` on `ports`). Named ports resolve against
    /// `target` for ingress; for egress (`target` None) against every destination pod among
    /// `peers`, one allowance per resolved number.
    fn allowances(
        &self,
        peers: Peers,
        ports: Option<&[NetworkPolicyPort]>,
        target: Option<&PodView<'_>>,
    ) -> Vec<Allowance> {
        if matches!(&peers, Peers::Only(set) if set.is_empty()) {
            return Vec::new();
        }
        let ports = ports.unwrap_or_default();
        if ports.is_empty() {
            return vec![Allowance {
                peers,
                ports: Vec::new(),
            }];
        }
        let mut numbered = Vec::new();
        // (protocol, number) → the destination pods that call a named port so.
        let mut by_name: BTreeMap<(Protocol, u16), Vec<Ipv4Addr>> = BTreeMap::new();
        for port in ports {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
                continue;
            };
            match &port.port {
                None => numbered.push(PortRange {
                    protocol,
                    ports: None,
                }),
                Some(IntOrString::Int(number)) => {
                    let Ok(first) = u16::try_from(*number) else {
                        continue;
                    };
                    let last = port
                        .end_port
                        .and_then(|end| u16::try_from(end).ok())
                        .filter(|&end| end >= first)
                        .unwrap_or(first);
                    numbered.push(PortRange {
                        protocol,
                        ports: Some((first, last)),
                    });
                }
                Some(IntOrString::String(name)) => match target {
                    Some(target) => {
                        if let Some(number) = target.named_port(name, protocol) {
                            numbered.push(PortRange {
                                protocol,
                                ports: Some((number, number)),
                            });
                        }
                    }
                    None => {
                        for pod in &self.pods {
                            let inside = match &peers {
                                Peers::All => true,
                                Peers::Only(set) => set.contains(pod.address),
                            };
                            if let Some(number) =
                                inside.then(|| pod.named_port(name, protocol)).flatten()
                            {
                                by_name
                                    .entry((protocol, number))
                                    .or_default()
                                    .push(pod.address);
                            }
                        }
                    }
                },
            }
        }
        let mut allowances = Vec::new();
        if !numbered.is_empty() {
            numbered.sort_unstable();
            numbered.dedup();
            allowances.push(Allowance {
                peers,
                ports: numbered,
            });
        }
        for ((protocol, number), destinations) in by_name {
            allowances.push(Allowance {
                peers: Peers::Only(AddressSet::of(destinations)),
                ports: vec![PortRange {
                    protocol,
                    ports: Some((number, number)),
                }],
            });
        }
        allowances
    }
}

/// Which directions a policy governs: `policyTypes`, or its defaults.
fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &policy.spec else {
        return (true, false);
    };
    match &spec.policy_types {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        // Kubernetes' defaulting: Egress only for a non-empty egress list (`egress: []` alone
        // does not isolate).
        _ => (
            true,
            spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()),
        ),
    }
}

/// What a pod receives and sends: `None` while no policy isolates it in that direction.
type Directions = (Option<Vec<Allowance>>, Option<Vec<Allowance>>);

/// Computes what every isolated pod of `node_name` may receive and send.
pub fn build_ruleset(
    node_name: &str,
    policies: &[impl Borrow<NetworkPolicy>],
    pods: &[impl Borrow<Pod>],
    namespaces: &[impl Borrow<Namespace>],
) -> Ruleset {
    let cluster = Cluster {
        pods: pod_views(pods),
        namespaces: namespaces
            .iter()
            .filter_map(|namespace| {
                let namespace = namespace.borrow();
                let name = namespace.metadata.name.clone()?;
                let mut labels = labels(namespace.metadata.labels.as_ref());
                labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone().into());
                Some((name, labels))
            })
            .collect(),
    };
    // Pods of namespaces not (yet) cached still match on the name label.
    let mut cluster = cluster;
    for pod in &cluster.pods {
        cluster
            .namespaces
            .entry(pod.namespace.to_string())
            .or_insert_with(|| {
                let mut labels = Map::new();
                labels.insert(NAMESPACE_NAME_LABEL.into(), pod.namespace.into());
                labels
            });
    }
    // Sorted, so that the allowances of several policies come in a stable order.
    let mut policies: Vec<&NetworkPolicy> = policies.iter().map(Borrow::borrow).collect();
    policies.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let selectors: Vec<LabelSelector> = policies
        .iter()
        .map(|policy| {
            policy
                .spec
                .as_ref()
                .and_then(|spec| spec.pod_selector.as_ref())
                .map(selector)
                // A missing podSelector is `{}` in the API (required field, empty = all).
                .unwrap_or_default()
        })
        .collect();

    let local: Vec<&PodView<'_>> = cluster
        .pods
        .iter()
        .filter(|pod| pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name))
        .collect();
    // (ingress, egress) of each local pod, in `local`'s order.
    let mut directions: Vec<Directions> = vec![(None, None); local.len()];
    for (policy, selector) in policies.iter().zip(&selectors) {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        let selected: Vec<usize> = (0..local.len())
            .filter(|&i| {
                local[i].namespace == namespace && selector.matches(Some(&local[i].labels))
            })
            .collect();
        if selected.is_empty() {
            continue;
        }
        // Peers do not depend on the selected pod: computed once per rule, not once per pod.
        let (governs_ingress, governs_egress) = policy_types(policy);
        let spec = policy.spec.as_ref();
        if governs_ingress {
            let rules: Vec<(Peers, Option<&[NetworkPolicyPort]>)> = spec
                .and_then(|s| s.ingress.as_ref())
                .into_iter()
                .flatten()
                .map(|rule| {
                    let peers = cluster.peers(rule.from.as_deref(), namespace);
                    (peers, rule.ports.as_deref())
                })
                .collect();
            for &i in &selected {
                let allowed = directions[i].0.get_or_insert_with(Vec::new);
                for (peers, ports) in &rules {
                    // Named ports resolve against each selected pod.
                    allowed.extend(cluster.allowances(peers.clone(), *ports, Some(local[i])));
                }
            }
        }
        if governs_egress {
            let allowances: Vec<Allowance> = spec
                .and_then(|s| s.egress.as_ref())
                .into_iter()
                .flatten()
                .flat_map(|rule| {
                    let peers = cluster.peers(rule.to.as_deref(), namespace);
                    cluster.allowances(peers, rule.ports.as_deref(), None)
                })
                .collect();
            for &i in &selected {
                let allowed = directions[i].1.get_or_insert_with(Vec::new);
                allowed.extend(allowances.iter().cloned());
            }
        }
    }
    let mut ruleset = Ruleset::default();
    for (pod, (ingress, egress)) in local.into_iter().zip(directions) {
        if ingress.is_some() || egress.is_some() {
            ruleset.pods.insert(
                pod.address,
                PodPolicy {
                    namespace: pod.namespace.to_string(),
                    name: pod.name.to_string(),
                    address: pod.address,
                    ingress,
                    egress,
                },
            );
        }
    }
    ruleset
}
