//! Node IPAM, as kube-controller-manager's `--allocate-node-cidrs` range allocator: every Node
//! without `spec.podCIDR` gets the next free subnet of the cluster CIDR (k3s's `10.42.0.0/16`
//! cut into /24s by default) in `spec.podCIDR` and `spec.podCIDRs`, which the node's agent then
//! hands out to its pods.
//!
//! The allocator ([`CidrSet`]) is pure and keeps which subnets are taken; the reconciler marks
//! the subnets nodes already hold as taken before it allocates (all nodes at start, then every
//! node it sees), frees the subnet of a deleted node, and reports exhaustion with the node
//! event `CIDRNotAvailable`. Only IPv4 is supported.
//!
//! A podCIDR is never changed once set (the API refuses it), so a node that has one is only
//! recorded, never patched.

use capstan_api::cidr::Ipv4Cidr;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::Store;

use crate::actions::{ActionError, Actions, EventRecord};
use crate::informers::SharedInformers;
use crate::runtime::{Action, Change, ObjectKey, Reconciler, WorkQueue};

/// The events' `source.component`, as Kubernetes' range allocator names its recorder.
pub const COMPONENT: &str = "cidrAllocator";
/// The node event when no subnet is left (`nodeutil.RecordNodeStatusChange`).
pub const CIDR_NOT_AVAILABLE: &str = "CIDRNotAvailable";
/// The node event when the node could not be patched with its subnet.
pub const CIDR_ASSIGNMENT_FAILED: &str = "CIDRAssignmentFailed";
/// k3s's `--cluster-cidr` default.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// kube-controller-manager's `--node-cidr-mask-size` default for IPv4.
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;

/// Why the configured cluster CIDR cannot be cut into node subnets. Fatal: fix the flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrConfigError {
    #[error("invalid cluster CIDR {0:?}: want an IPv4 network such as 10.42.0.0/16")]
    InvalidClusterCidr(String),
    #[error("node CIDR mask size {mask} must be between the cluster CIDR's prefix {prefix} and 32")]
    InvalidMaskSize { mask: u8, prefix: u8 },
    #[error(
        "node CIDR mask size {mask} cuts the /{prefix} cluster CIDR into more than 2^16 subnets"
    )]
    TooManySubnets { mask: u8, prefix: u8 },
}

/// Why a reconcile of a node failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum NodeIpamError {
    /// Every subnet is taken. Retrying helps once a node is deleted.
    #[error("no CIDR is left for node {0}")]
    CidrNotAvailable(String),
    /// The patch of the node failed. A conflict retries from fresher state.
    #[error("setting the podCIDR of node {node}: {source}")]
    Patch { node: String, source: ActionError },
}

/// The subnets of a cluster CIDR and which are taken (Kubernetes' `cidrset.CidrSet`). Subnets
/// are handed out round-robin from after the last one given, as Kubernetes does, so a subnet
/// just freed is not reused at once (a deleted node's pods may still hold its addresses).
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Ipv4Cidr,
    node_prefix: u8,
    subnets: u32,
    used: BTreeSet<u32>,
    next_candidate: u32,
}

impl CidrSet {
    pub fn new(cluster_cidr: &str, node_mask_size: u8) -> Result<Self, CidrConfigError> {
        let cluster = Ipv4Cidr::parse(cluster_cidr.trim())
            .map_err(|_| CidrConfigError::InvalidClusterCidr(cluster_cidr.to_string()))?;
        let cluster_prefix = cluster.prefix();
        if node_mask_size < cluster_prefix || node_mask_size > 32 {
            return Err(CidrConfigError::InvalidMaskSize {
                mask: node_mask_size,
                prefix: cluster_prefix,
            });
        }
        // Kubernetes refuses a difference above 16 bits as well (`ErrCIDRSetSubNetTooBig`).
        if node_mask_size - cluster_prefix > 16 {
            return Err(CidrConfigError::TooManySubnets {
                mask: node_mask_size,
                prefix: cluster_prefix,
            });
        }
        Ok(CidrSet {
            cluster,
            node_prefix: node_mask_size,
            subnets: 1 << (node_mask_size - cluster_prefix),
            used: BTreeSet::new(),
            next_candidate: 0,
        })
    }

    fn subnet(&self, index: u32) -> String {
        self.cluster
            .subnet(self.node_prefix, u64::from(index))
            .map(|subnet| subnet.to_string())
            .unwrap_or_default()
    }

    /// The index of `cidr` among the subnets, if it is exactly one of them.
    fn index_of(&self, cidr: &str) -> Option<u32> {
        let subnet = Ipv4Cidr::parse(cidr.trim()).ok()?;
        // Host bits set (`10.42.1.7/24`) is not one of our subnets.
        if subnet.prefix() != self.node_prefix
            || cidr.trim() != subnet.to_string()
            || !self.cluster.covers(&subnet)
        {
            return None;
        }
        let offset = u32::from(subnet.network()) - u32::from(self.cluster.network());
        Some(
            offset
                .checked_shr(32 - u32::from(self.node_prefix))
                .unwrap_or(0),
        )
    }

    /// Marks `cidr` taken. A subnet outside the cluster CIDR (set by hand) is ignored: it cannot
    /// collide with ours.
    pub fn occupy(&mut self, cidr: &str) -> bool {
        match self.index_of(cidr) {
            Some(index) => {
                self.used.insert(index);
                true
            }
            None => false,
        }
    }

    /// Frees `cidr`; freeing a subnet that is not taken does nothing.
    pub fn release(&mut self, cidr: &str) {
        if let Some(index) = self.index_of(cidr) {
            self.used.remove(&index);
        }
    }

    /// Takes the next free subnet after the last one given, or `None` when all are taken.
    pub fn allocate_next(&mut self) -> Option<String> {
        for offset in 0..self.subnets {
            let index = (self.next_candidate + offset) % self.subnets;
            if self.used.insert(index) {
                self.next_candidate = (index + 1) % self.subnets;
                return Some(self.subnet(index));
            }
        }
        None
    }
}

/// The subnets given to nodes, by node name, over the [`CidrSet`] they come from.
#[derive(Debug)]
pub struct NodeCidrs {
    set: CidrSet,
    by_node: HashMap<String, String>,
}

impl NodeCidrs {
    pub fn new(set: CidrSet) -> Self {
        NodeCidrs {
            set,
            by_node: HashMap::new(),
        }
    }

    /// Records that `node` holds `cidr` (read from the node), freeing what it held before.
    pub fn observe(&mut self, node: &str, cidr: &str) {
        if self.by_node.get(node).map(String::as_str) == Some(cidr) {
            return;
        }
        self.forget(node);
        if self.set.occupy(cidr) {
            self.by_node.insert(node.to_string(), cidr.to_string());
        }
    }

    /// Frees the subnet of a node that is gone.
    pub fn forget(&mut self, node: &str) {
        if let Some(cidr) = self.by_node.remove(node) {
            // Two nodes never share a subnet we track, so the subnet is free now.
            self.set.release(&cidr);
        }
    }

    /// The subnet for `node`: the one already given to it (an earlier patch whose result the
    /// cache has not shown yet is repeated, never replaced), else the next free one.
    pub fn assign(&mut self, node: &str) -> Option<String> {
        if let Some(cidr) = self.by_node.get(node) {
            return Some(cidr.clone());
        }
        let cidr = self.set.allocate_next()?;
        self.by_node.insert(node.to_string(), cidr.clone());
        Some(cidr)
    }
}

/// The podCIDR a node holds, if any (`spec.podCIDR`, else the first of `spec.podCIDRs`).
pub fn pod_cidr(node: &Node) -> Option<&str> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .as_deref()
        .filter(|c| !c.is_empty())
        .or_else(|| spec.pod_cidrs.as_ref()?.first().map(String::as_str))
        .filter(|c| !c.is_empty())
}

/// The node IPAM controller: the node cache, the subnets given, and its effects.
pub struct NodeIpamController<A> {
    pub nodes: Store<Node>,
    pub cidrs: Mutex<NodeCidrs>,
    pub actions: A,
}

impl<A> NodeIpamController<A> {
    fn cidrs(&self) -> std::sync::MutexGuard<'_, NodeCidrs> {
        self.cidrs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks every subnet the cached nodes hold as taken: before the first allocation (so a
    /// restart never hands out a subnet twice) and before each one after (a podCIDR set by
    /// someone else is respected).
    pub fn observe_all(&self) {
        let nodes = self.nodes.state();
        let mut cidrs = self.cidrs();
        for node in &nodes {
            if let (Some(name), Some(cidr)) = (node.metadata.name.as_deref(), pod_cidr(node)) {
                cidrs.observe(name, cidr);
            }
        }
    }
}

impl<A: Actions> Reconciler for NodeIpamController<A> {
    type Error = NodeIpamError;

    fn name(&self) -> &'static str {
        "node-ipam-controller"
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, NodeIpamError> {
        let Some(node) = self.nodes.get(&key.object_ref()) else {
            self.cidrs().forget(&key.name);
            return Ok(Action::AwaitChange);
        };
        if let Some(cidr) = pod_cidr(&node) {
            self.cidrs().observe(&key.name, cidr);
            return Ok(Action::AwaitChange);
        }
        self.observe_all();
        let Some(cidr) = self.cidrs().assign(&key.name) else {
            self.actions.record_event(EventRecord::normal(
                COMPONENT,
                &*node,
                CIDR_NOT_AVAILABLE,
                format!("Node {} status is now: {CIDR_NOT_AVAILABLE}", key.name),
            ));
            return Err(NodeIpamError::CidrNotAvailable(key.name.clone()));
        };
        match self.actions.patch_node_pod_cidr(&node, &cidr).await {
            Ok(()) => {
                tracing::info!(node = %key.name, %cidr, "set node podCIDR");
                Ok(Action::AwaitChange)
            }
            // Stale cache or a node recreated: keep the subnet for this name and retry.
            Err(source @ ActionError::Conflict(_)) => Err(NodeIpamError::Patch {
                node: key.name.clone(),
                source,
            }),
            Err(ActionError::NotFound(_)) => {
                self.cidrs().forget(&key.name);
                Ok(Action::AwaitChange)
            }
            Err(source) => {
                self.cidrs().forget(&key.name);
                self.actions.record_event(EventRecord::normal(
                    COMPONENT,
                    &*node,
                    CIDR_ASSIGNMENT_FAILED,
                    format!("Node {} status is now: {CIDR_ASSIGNMENT_FAILED}", key.name),
                ));
                Err(NodeIpamError::Patch {
                    node: key.name.clone(),
                    source,
                })
            }
        }
    }
}

/// Event handler for nodes: a node is reconciled when it changes; a node deleted frees its
/// subnet, so the nodes still waiting for one are reconciled too.
pub fn node_changed(change: Change<'_, Node>, nodes: &Store<Node>, queue: &WorkQueue<ObjectKey>) {
    queue.add(ObjectKey::of(change.object()));
    if let Change::Deleted(node) = change
        && pod_cidr(node).is_some()
    {
        for waiting in nodes.state().iter().filter(|n| pod_cidr(n).is_none()) {
            queue.add(ObjectKey::of(&**waiting));
        }
    }
}

/// Registers the controller on the shared Node informer and returns it, to be polled once the
/// caches are filled; runs until dropped. The subnets of every node are marked taken after the
/// first list and before the first allocation.
pub fn run(
    informers: &mut SharedInformers,
    client: kube::Client,
    set: CidrSet,
) -> impl Future<Output = ()> + use<> {
    let queue = WorkQueue::new();
    // The handler reads the store it feeds (to find the nodes waiting for a subnet).
    let nodes = informers.store::<Node>();
    {
        let queue = queue.clone();
        let nodes = nodes.clone();
        informers
            .informer::<Node>()
            .add_handler(move |change| node_changed(change, &nodes, &queue));
    }
    async move {
        let controller = Arc::new(NodeIpamController {
            nodes,
            cidrs: Mutex::new(NodeCidrs::new(set)),
            actions: crate::actions::KubeActions::new(client),
        });
        controller.observe_all();
        // One worker: allocations are serialised anyway, and Node counts are small.
        crate::runtime::run_workers(controller, queue, 1).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::RecordingActions;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn node(name: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(String::from),
                pod_cidrs: cidr.map(|c| vec![c.to_string()]),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn controller(
        nodes: &[Node],
        cluster_cidr: &str,
        mask: u8,
    ) -> (NodeIpamController<RecordingActions>, Writer<Node>) {
        let mut writer = Writer::<Node>::default();
        for node in nodes {
            writer.apply_watcher_event(&Event::Apply(node.clone()));
        }
        let controller = NodeIpamController {
            nodes: writer.as_reader(),
            cidrs: Mutex::new(NodeCidrs::new(CidrSet::new(cluster_cidr, mask).unwrap())),
            actions: RecordingActions::new(),
        };
        controller.observe_all();
        (controller, writer)
    }

    #[test]
    fn cluster_cidrs_and_mask_sizes_are_validated() {
        let cases = [
            ("10.42.0.0/16", 24, Ok(256)),
            ("10.42.7.9/16", 24, Ok(256)),
            ("10.42.0.0/24", 24, Ok(1)),
            ("10.0.0.0/8", 24, Ok(65536)),
            (
                "10.0.0.0/8",
                25,
                Err(CidrConfigError::TooManySubnets {
                    mask: 25,
                    prefix: 8,
                }),
            ),
            (
                "10.42.0.0/16",
                8,
                Err(CidrConfigError::InvalidMaskSize {
                    mask: 8,
                    prefix: 16,
                }),
            ),
            (
                "10.42.0.0/16",
                33,
                Err(CidrConfigError::InvalidMaskSize {
                    mask: 33,
                    prefix: 16,
                }),
            ),
            (
                "fd00::/64",
                80,
                Err(CidrConfigError::InvalidClusterCidr("fd00::/64".into())),
            ),
            (
                "10.42.0.0",
                24,
                Err(CidrConfigError::InvalidClusterCidr("10.42.0.0".into())),
            ),
        ];
        for (cidr, mask, expected) in cases {
            let got = CidrSet::new(cidr, mask).map(|set| set.subnets);
            assert_eq!(got, expected, "{cidr} cut into /{mask}");
        }
    }

    #[test]
    fn subnets_are_given_round_robin_and_never_twice() {
        let mut set = CidrSet::new("10.42.0.0/22", 24).unwrap();
        assert!(set.occupy("10.42.1.0/24"));
        assert!(!set.occupy("10.43.0.0/24"), "outside the cluster CIDR");
        assert!(!set.occupy("10.42.2.0/25"), "not a node subnet");
        assert!(!set.occupy("10.42.2.1/24"), "not a network address");
        assert_eq!(set.allocate_next().as_deref(), Some("10.42.0.0/24"));
        assert_eq!(set.allocate_next().as_deref(), Some("10.42.2.0/24"));
        set.release("10.42.0.0/24");
        assert_eq!(
            set.allocate_next().as_deref(),
            Some("10.42.3.0/24"),
            "a freed subnet waits for the others"
        );
        assert_eq!(set.allocate_next().as_deref(), Some("10.42.0.0/24"));
        assert_eq!(set.allocate_next(), None, "exhausted");
    }

    #[tokio::test]
    async fn nodes_without_a_pod_cidr_get_the_next_free_subnet() {
        // (case, nodes in the cache, node reconciled, expected actions)
        let cases = [
            (
                "the first node gets the first subnet",
                vec![node("a", None)],
                "a",
                vec!["set podCIDR of node a to 10.42.0.0/24"],
            ),
            (
                "subnets held by nodes at start are skipped",
                vec![
                    node("a", Some("10.42.0.0/24")),
                    node("b", Some("10.42.1.0/24")),
                    node("c", None),
                ],
                "c",
                vec!["set podCIDR of node c to 10.42.2.0/24"],
            ),
            (
                "a node that has a podCIDR is never patched",
                vec![node("a", Some("10.42.5.0/24"))],
                "a",
                vec![],
            ),
            (
                "a podCIDR outside the cluster CIDR is kept",
                vec![node("a", Some("192.168.0.0/24"))],
                "a",
                vec![],
            ),
            ("a node that is gone is not patched", vec![], "a", vec![]),
        ];
        for (case, nodes, name, expected) in cases {
            let (controller, _) = controller(&nodes, DEFAULT_CLUSTER_CIDR, 24);
            let result = controller.reconcile(&ObjectKey::new("", name)).await;
            assert!(result.is_ok(), "{case}: {result:?}");
            assert_eq!(controller.actions.summaries(), expected, "{case}");
            assert!(controller.actions.events().is_empty(), "{case}");
        }
    }

    #[tokio::test]
    async fn a_deleted_node_frees_its_subnet_and_exhaustion_is_an_event() {
        let (controller, mut writer) = controller(
            &[node("a", Some("10.42.0.0/24")), node("b", None)],
            "10.42.0.0/24",
            24,
        );
        let result = controller.reconcile(&ObjectKey::new("", "b")).await;
        assert!(matches!(result, Err(NodeIpamError::CidrNotAvailable(_))));
        assert!(controller.actions.summaries().is_empty());
        assert_eq!(
            controller.actions.events(),
            ["Normal CIDRNotAvailable Node b status is now: CIDRNotAvailable"]
        );

        // Deleting a enqueues b, which now gets a's subnet.
        let queue = WorkQueue::new();
        let a = node("a", Some("10.42.0.0/24"));
        writer.apply_watcher_event(&Event::Delete(a.clone()));
        node_changed(Change::Deleted(&a), &controller.nodes, &queue);
        assert_eq!(queue.next().await, ObjectKey::new("", "a"));
        assert_eq!(queue.next().await, ObjectKey::new("", "b"));
        controller
            .reconcile(&ObjectKey::new("", "a"))
            .await
            .unwrap();
        controller
            .reconcile(&ObjectKey::new("", "b"))
            .await
            .unwrap();
        assert_eq!(
            controller.actions.summaries(),
            ["set podCIDR of node b to 10.42.0.0/24"]
        );
    }

    #[tokio::test]
    async fn a_conflicting_patch_is_retried_with_the_same_subnet() {
        let (controller, _) = controller(
            &[node("a", None), node("b", None)],
            DEFAULT_CLUSTER_CIDR,
            24,
        );
        controller.actions.fail(
            "set podCIDR of node a",
            ActionError::Conflict("stale".into()),
        );
        let key = ObjectKey::new("", "a");
        assert!(controller.reconcile(&key).await.is_err());
        controller.reconcile(&key).await.unwrap();
        controller
            .reconcile(&ObjectKey::new("", "b"))
            .await
            .unwrap();
        assert_eq!(
            controller.actions.summaries(),
            [
                "set podCIDR of node a to 10.42.0.0/24",
                "set podCIDR of node a to 10.42.0.0/24",
                "set podCIDR of node b to 10.42.1.0/24",
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_patch_frees_the_subnet_and_says_so_on_the_node() {
        let (controller, _) = controller(&[node("a", None)], DEFAULT_CLUSTER_CIDR, 24);
        controller
            .actions
            .fail("set podCIDR", ActionError::Failed("forbidden".into()));
        assert!(
            controller
                .reconcile(&ObjectKey::new("", "a"))
                .await
                .is_err()
        );
        assert_eq!(
            controller.actions.events(),
            ["Normal CIDRAssignmentFailed Node a status is now: CIDRAssignmentFailed"]
        );
        assert!(controller.cidrs().by_node.is_empty());
    }
}
