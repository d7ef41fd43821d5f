//! The scheduler's view of the cluster: one `NodeInfo` per node with its allocatable and
//! requested resources as integers, its pods and its images, plus counters of matching pods per
//! topology domain that PodTopologySpread and InterPodAffinity read instead of scanning pods.
//!
//! The snapshot is built once and then updated incrementally: assuming a pod onto a node (so the
//! next pod sees it), forgetting it when binding fails, and applying watch events. Counters are
//! registered lazily by [`Snapshot::prepare_for`] the first time a pod needs a selector, built by
//! one scan, and from then on kept up to date by every pod addition and removal, so a cycle
//! costs O(domains), not O(pods).
//!
//! Two things only preemption and its aftermath need ride along: the PodDisruptionBudgets, and
//! the nominated pods — preemptors waiting for their victims to leave, whose requests Filter
//! counts on their node so that another pod does not take the space freed for them.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::disruption_budget::DisruptionBudget;
use crate::pod_info::{AffinityTerm, PodInfo};
use crate::resources::Resources;
use crate::selectors::{Labels, NodeRequirement};

/// Errors of snapshot updates; none is worth retrying as is: the caller's view is stale.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Adding a pod to a node the snapshot does not know (deleted meanwhile).
    #[error("node {0} is not in the snapshot")]
    UnknownNode(String),
    /// Adding a pod that is already on a node.
    #[error("pod {0} is already in the snapshot")]
    PodAlreadyPresent(String),
}

/// One node and what is on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Position in [`Snapshot::nodes`]; counters are indexed by it.
    pub index: usize,
    pub node: Arc<Node>,
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    /// Sum of the effective requests of the pods on the node.
    pub requested: Resources,
    /// The same with kube-scheduler's defaults for missing CPU and memory requests (scoring).
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    /// Normalized image name → size in bytes, from `status.images`.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    fn new(index: usize, node: Arc<Node>) -> NodeInfo {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let mut images = HashMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                images.insert(name.clone(), image.size_bytes.unwrap_or(0));
            }
        }
        NodeInfo {
            index,
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: Resources::from_list(status.and_then(|s| s.allocatable.as_ref())),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            images,
            node,
        }
    }

    pub(crate) fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests, 1);
        self.non_zero_requested.add(&pod.non_zero_requests, 1);
        self.pods.push(pod);
    }

    pub(crate) fn remove_pod(
        &mut self,
        key_namespace: &str,
        key_name: &str,
    ) -> Option<Arc<PodInfo>> {
        let position = self
            .pods
            .iter()
            .position(|p| p.namespace == key_namespace && p.name == key_name)?;
        let pod = self.pods.swap_remove(position);
        self.requested.add(&pod.requests, -1);
        self.non_zero_requested.add(&pod.non_zero_requests, -1);
        Some(pod)
    }
}

/// Which nodes count toward a counter's domains (PodTopologySpread's node inclusion policies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodeFilter {
    /// `nodeAffinityPolicy: Honor`: the incoming pod's node selector and required affinity.
    pub requirement: Option<NodeRequirement>,
    /// `nodeTaintsPolicy: Honor`: (key, operator, value, effect) of the pod's tolerations.
    pub tolerations: Option<Vec<[Option<String>; 4]>>,
}

impl NodeFilter {
    pub fn tolerations_signature(tolerations: &[Toleration]) -> Vec<[Option<String>; 4]> {
        tolerations
            .iter()
            .map(|t| {
                [
                    t.key.clone(),
                    t.operator.clone(),
                    t.value.clone(),
                    t.effect.clone(),
                ]
            })
            .collect()
    }

    fn admits(&self, node: &NodeInfo) -> bool {
        if let Some(requirement) = &self.requirement
            && !requirement.matches(&node.name, &node.labels)
        {
            return false;
        }
        if let Some(signature) = &self.tolerations {
            let tolerations: Vec<Toleration> = signature
                .iter()
                .map(|[key, operator, value, effect]| Toleration {
                    key: key.clone(),
                    operator: operator.clone(),
                    value: value.clone(),
                    effect: effect.clone(),
                    toleration_seconds: None,
                })
                .collect();
            return node
                .taints
                .iter()
                .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)));
        }
        true
    }
}

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref()
        && !key.is_empty()
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// What a counter counts: pods matching `term` (namespaces, selector), per value of
/// `term.topology_key`, on nodes admitted by `node_filter`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub term: AffinityTerm,
    pub node_filter: NodeFilter,
}

/// Marks a node without the topology key.
pub const NO_DOMAIN: u32 = u32::MAX;

/// Matching pods per topology domain, kept current as pods come and go.
#[derive(Debug, Clone)]
pub struct DomainCounter {
    pub key: CounterKey,
    /// Domain of each node by node index, or [`NO_DOMAIN`].
    pub node_domain: Vec<u32>,
    /// Whether each node passes the counter's node filter; pods on other nodes are not counted.
    pub node_admitted: Vec<bool>,
    pub domain_values: Vec<String>,
    pub domain_counts: Vec<i64>,
    /// Admitted nodes per domain; a domain with none does not take part in skew.
    pub domain_admitted_nodes: Vec<u32>,
}

impl DomainCounter {
    fn build(key: CounterKey, nodes: &[NodeInfo]) -> DomainCounter {
        let mut counter = DomainCounter {
            node_domain: Vec::with_capacity(nodes.len()),
            node_admitted: Vec::with_capacity(nodes.len()),
            domain_values: Vec::new(),
            domain_counts: Vec::new(),
            domain_admitted_nodes: Vec::new(),
            key,
        };
        let mut domain_ids: HashMap<&str, u32> = HashMap::new();
        for node in nodes {
            let domain = match node.labels.get(&counter.key.term.topology_key) {
                Some(value) => *domain_ids.entry(value.as_str()).or_insert_with(|| {
                    counter.domain_values.push(value.clone());
                    counter.domain_counts.push(0);
                    counter.domain_admitted_nodes.push(0);
                    (counter.domain_values.len() - 1) as u32
                }),
                None => NO_DOMAIN,
            };
            let admitted = counter.key.node_filter.admits(node);
            counter.node_domain.push(domain);
            counter.node_admitted.push(admitted);
            if admitted && domain != NO_DOMAIN {
                counter.domain_admitted_nodes[domain as usize] += 1;
                let matching = node
                    .pods
                    .iter()
                    .filter(|p| counter.key.term.matches(p))
                    .count();
                counter.domain_counts[domain as usize] += matching as i64;
            }
        }
        counter
    }

    fn observe(&mut self, node_index: usize, pod: &PodInfo, delta: i64) {
        let domain = self.node_domain[node_index];
        if domain != NO_DOMAIN && self.node_admitted[node_index] && self.key.term.matches(pod) {
            self.domain_counts[domain as usize] += delta;
        }
    }

    /// Matching pods in the node's domain; `None` when the node lacks the topology key.
    pub fn count_for_node(&self, node_index: usize) -> Option<i64> {
        let domain = *self.node_domain.get(node_index)?;
        (domain != NO_DOMAIN).then(|| self.domain_counts[domain as usize])
    }

    /// Domains with at least one admitted node, with their counts.
    pub fn eligible_domains(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.domain_counts
            .iter()
            .enumerate()
            .filter(|(d, _)| self.domain_admitted_nodes[*d] > 0)
            .map(|(d, c)| (d, *c))
    }
}

/// The nodes, their pods, and the counters.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    node_index: HashMap<String, usize>,
    /// Pod key (`namespace/name`) → node index.
    pod_locations: HashMap<String, usize>,
    /// Normalized image name → number of nodes that have it (ImageLocality's spread factor).
    image_node_counts: HashMap<String, u32>,
    /// Placed pods with inter-pod (anti-)affinity terms, with their node index: existing pods'
    /// anti-affinity must be honoured, and few pods have terms, so a list beats a scan.
    pods_with_affinity: Vec<(usize, Arc<PodInfo>)>,
    counter_index: HashMap<CounterKey, usize>,
    counters: Vec<DomainCounter>,
    /// PodDisruptionBudgets by `namespace/name`; only preemption reads them.
    disruption_budgets: HashMap<String, DisruptionBudget>,
    /// Pods waiting for a node that preemption freed for them, by node name, and the node of
    /// each such pod by pod key. Empty on a quiet cluster, which keeps Filter on its fast path.
    nominated_pods: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_nodes: HashMap<String, String>,
}

impl Snapshot {
    /// Builds the snapshot from nodes and the pods already bound or assumed (pods without a
    /// node, or on an unknown node, are skipped).
    pub fn new(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = Arc<PodInfo>>,
    ) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for node in nodes {
            snapshot.push_node(node);
        }
        for pod in pods {
            if let Some(node_name) = pod.node_name.clone() {
                // A pod on a node we do not know (yet) is skipped; it comes back with the node.
                let _ = snapshot.add_pod(pod, &node_name);
            }
        }
        snapshot
    }

    fn push_node(&mut self, node: Arc<Node>) {
        let index = self.nodes.len();
        let info = NodeInfo::new(index, node);
        for image in info.images.keys() {
            *self.image_node_counts.entry(image.clone()).or_default() += 1;
        }
        self.node_index.insert(info.name.clone(), index);
        self.nodes.push(info);
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.node_index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn image_node_count(&self, image: &str) -> u32 {
        self.image_node_counts.get(image).copied().unwrap_or(0)
    }

    pub fn pods_with_affinity(&self) -> &[(usize, Arc<PodInfo>)] {
        &self.pods_with_affinity
    }

    /// The node a pod is on (bound or assumed), by `namespace/name`.
    pub fn pod_node(&self, pod_key: &str) -> Option<&NodeInfo> {
        self.pod_locations.get(pod_key).map(|i| &self.nodes[*i])
    }

    /// Puts a pod on a node: an assumed pod (the scheduler's own decision, before the bind
    /// lands) or a bound pod seen by the watch. Counters are updated, and a nomination of the
    /// pod ends: its resources now count on its node for real.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>, node_name: &str) -> Result<(), SnapshotError> {
        let key = pod.key();
        if !self.nominated_nodes.is_empty() {
            self.remove_nomination(&key);
        }
        if self.pod_locations.contains_key(&key) {
            return Err(SnapshotError::PodAlreadyPresent(key));
        }
        let index = *self
            .node_index
            .get(node_name)
            .ok_or_else(|| SnapshotError::UnknownNode(node_name.to_owned()))?;
        for counter in &mut self.counters {
            counter.observe(index, &pod, 1);
        }
        if pod.has_affinity_terms() {
            self.pods_with_affinity.push((index, Arc::clone(&pod)));
        }
        self.nodes[index].add_pod(pod);
        self.pod_locations.insert(key, index);
        Ok(())
    }

    /// Takes a pod off its node (deleted, or an assumption forgotten after a failed bind).
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let index = self.pod_locations.remove(&format!("{namespace}/{name}"))?;
        let pod = self.nodes[index].remove_pod(namespace, name)?;
        for counter in &mut self.counters {
            counter.observe(index, &pod, -1);
        }
        if pod.has_affinity_terms() {
            self.pods_with_affinity
                .retain(|(_, p)| !(p.namespace == namespace && p.name == name));
        }
        Some(pod)
    }

    /// Adds or replaces a node. A status-only change (heartbeats, allocatable) keeps the
    /// counters; a change of labels or taints drops them, to be rebuilt when next needed.
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(&index) = self.node_index.get(&name) else {
            self.push_node(node);
            // Counters index nodes by position; a new node needs its domain.
            self.drop_counters();
            return;
        };
        let mut info = NodeInfo::new(index, node);
        let old = &mut self.nodes[index];
        for image in old.images.keys() {
            if let Some(count) = self.image_node_counts.get_mut(image) {
                *count = count.saturating_sub(1);
            }
        }
        for image in info.images.keys() {
            *self.image_node_counts.entry(image.clone()).or_default() += 1;
        }
        let placement_changed = old.labels != info.labels || old.taints != info.taints;
        info.pods = std::mem::take(&mut old.pods);
        info.requested = old.requested.clone();
        info.non_zero_requested = old.non_zero_requested.clone();
        *old = info;
        if placement_changed {
            self.drop_counters();
        }
    }

    /// Removes a node and forgets its pods (they are being deleted or will be seen again).
    /// Rare, so it rebuilds the indexes.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&index) = self.node_index.get(name) else {
            return;
        };
        let mut nodes = std::mem::take(&mut self.nodes);
        nodes.remove(index);
        let pods: Vec<(String, Arc<PodInfo>)> = nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(|p| (n.name.clone(), Arc::clone(p))))
            .collect();
        let disruption_budgets = std::mem::take(&mut self.disruption_budgets);
        let nominated_pods = std::mem::take(&mut self.nominated_pods);
        let nominated_nodes = std::mem::take(&mut self.nominated_nodes);
        *self = Snapshot {
            disruption_budgets,
            nominated_pods,
            nominated_nodes,
            ..Snapshot::default()
        };
        for node in nodes {
            self.push_node(node.node);
        }
        for (node_name, pod) in pods {
            let _ = self.add_pod(pod, &node_name);
        }
    }

    /// Adds or replaces a PodDisruptionBudget from the watch.
    pub fn upsert_disruption_budget(&mut self, pdb: &PodDisruptionBudget) {
        let key = format!(
            "{}/{}",
            pdb.metadata.namespace.as_deref().unwrap_or("default"),
            pdb.metadata.name.as_deref().unwrap_or_default()
        );
        match DisruptionBudget::new(pdb) {
            Some(budget) => {
                self.disruption_budgets.insert(key, budget);
            }
            // A budget whose selector became empty covers nothing any more.
            None => {
                self.disruption_budgets.remove(&key);
            }
        }
    }

    pub fn remove_disruption_budget(&mut self, namespace: &str, name: &str) {
        self.disruption_budgets
            .remove(&format!("{namespace}/{name}"));
    }

    pub fn disruption_budgets(&self) -> impl ExactSizeIterator<Item = &DisruptionBudget> {
        self.disruption_budgets.values()
    }

    /// Records that `pod` waits for `node` (preemption chose it, or the pod's
    /// `status.nominatedNodeName` says so), replacing an earlier nomination of the pod. Until
    /// the pod is placed, Filter counts it on `node` for pods of no higher priority.
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: &str) {
        let key = pod.key();
        self.remove_nomination(&key);
        self.nominated_pods
            .entry(node.to_owned())
            .or_default()
            .push(pod);
        self.nominated_nodes.insert(key, node.to_owned());
    }

    /// Forgets the nomination of the pod with `key` (placed, deleted, or nominated nowhere).
    pub fn remove_nomination(&mut self, key: &str) -> Option<String> {
        let node = self.nominated_nodes.remove(key)?;
        if let Some(pods) = self.nominated_pods.get_mut(&node) {
            pods.retain(|p| p.key() != key);
            if pods.is_empty() {
                self.nominated_pods.remove(&node);
            }
        }
        Some(node)
    }

    /// Whether any pod is nominated anywhere; when not, Filter skips the nominated-pods pass.
    pub fn has_nominated_pods(&self) -> bool {
        !self.nominated_nodes.is_empty()
    }

    /// The pods nominated to `node`.
    pub fn nominated_pods(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated_pods.get(node).map_or(&[], Vec::as_slice)
    }

    /// The node the pod with `key` is nominated to.
    pub fn nominated_node(&self, key: &str) -> Option<&str> {
        self.nominated_nodes.get(key).map(String::as_str)
    }

    fn drop_counters(&mut self) {
        self.counters.clear();
        self.counter_index.clear();
    }

    /// Registers the counters the pod's spread constraints and affinity terms need, building
    /// each new one with a single scan. Must run before a cycle for `pod`.
    pub fn prepare_for(&mut self, pod: &PodInfo) {
        for constraint in &pod.spread_constraints {
            self.ensure_counter(&constraint.counter);
        }
        let terms = pod
            .required_affinity
            .iter()
            .chain(&pod.required_anti_affinity)
            .chain(pod.preferred_affinity.iter().map(|(_, t)| t))
            .chain(pod.preferred_anti_affinity.iter().map(|(_, t)| t));
        for term in terms {
            self.ensure_counter(&affinity_counter_key(term));
        }
    }

    fn ensure_counter(&mut self, key: &CounterKey) {
        if !self.counter_index.contains_key(key) {
            let counter = DomainCounter::build(key.clone(), &self.nodes);
            self.counter_index.insert(key.clone(), self.counters.len());
            self.counters.push(counter);
        }
    }

    /// A counter registered by [`Snapshot::prepare_for`].
    pub fn counter(&self, key: &CounterKey) -> Option<&DomainCounter> {
        self.counter_index.get(key).map(|i| &self.counters[*i])
    }

    /// The position of a registered counter, stable until nodes change: a PreFilter looks it up
    /// once so that per-node Filters index instead of hashing the key.
    pub fn counter_position(&self, key: &CounterKey) -> Option<usize> {
        self.counter_index.get(key).copied()
    }

    pub fn counter_at(&self, position: usize) -> &DomainCounter {
        &self.counters[position]
    }
}

/// The counter key of an inter-pod affinity term (every node counts).
pub fn affinity_counter_key(term: &AffinityTerm) -> CounterKey {
    CounterKey {
        term: term.clone(),
        node_filter: NodeFilter::default(),
    }
}
