//! The default plugins and the one place they are wired into a [`Profile`]: which extension
//! points run, in which order, and with which score weights (kube-scheduler's default profile).

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::{Filter, PostFilter, PreFilter, Reserve, Score};

use balanced_allocation::BalancedAllocation;
use default_preemption::DefaultPreemption;
use image_locality::ImageLocality;
use inter_pod_affinity::InterPodAffinity;
use node_affinity::NodeAffinity;
use node_name::NodeName;
use node_resources_fit::{NodeResourcesFit, ScoringStrategy};
use node_unschedulable::NodeUnschedulable;
use pod_topology_spread::PodTopologySpread;
use taint_toleration::TaintToleration;

/// The plugins of each extension point, in the order they run. Binding is not here: binders
/// need an API client, so the runner holds them.
pub struct Profile {
    pub pre_filters: Vec<Arc<dyn PreFilter>>,
    pub filters: Vec<Arc<dyn Filter>>,
    pub post_filters: Vec<Arc<dyn PostFilter>>,
    /// Score plugins with their weights; a normalized score (0..=100) is multiplied by it.
    pub scores: Vec<(Arc<dyn Score>, i64)>,
    pub reserves: Vec<Arc<dyn Reserve>>,
}

impl Profile {
    /// kube-scheduler's default profile, with NodeResourcesFit scoring by `strategy`.
    pub fn default_with(strategy: ScoringStrategy) -> Profile {
        let node_affinity = Arc::new(NodeAffinity);
        let resources_fit = Arc::new(NodeResourcesFit { strategy });
        let taints = Arc::new(TaintToleration);
        let spread = Arc::new(PodTopologySpread);
        let inter_pod = Arc::new(InterPodAffinity);
        Profile {
            // PreFilters compute per-pod state once; the two that read the snapshot's counters
            // come last because they are the only ones that cost more than a field check.
            pre_filters: vec![node_affinity.clone(), spread.clone(), inter_pod.clone()],
            filters: vec![
                // A named node rules out every other node with one string comparison.
                Arc::new(NodeName),
                // Cordoned nodes: one bool, and a toleration scan only when cordoned.
                Arc::new(NodeUnschedulable),
                // Taints: usually none, and they refuse whole groups of nodes (control plane).
                taints.clone(),
                // Label matching: a few map lookups; refuses nodes before resource arithmetic
                // runs on them, and is skipped for pods without selector or required affinity.
                node_affinity.clone(),
                // Integer comparisons on parsed requests: cheap, and the most common failure
                // on a busy cluster, so it stays before the topology checks.
                resources_fit.clone(),
                // Domain lookups in the snapshot's counters: cheap per node, but they come
                // after the node-local checks because their answers depend on other pods
                // (preemption treats them as unresolvable-by-eviction anyway).
                spread.clone(),
                inter_pod.clone(),
            ],
            // Preemption is the only way out once nothing fits.
            post_filters: vec![Arc::new(DefaultPreemption)],
            // kube-scheduler's default weights: taints 3, affinity and spreading 2, the rest 1.
            scores: vec![
                (taints, 3),
                (node_affinity, 2),
                (spread, 2),
                (inter_pod, 2),
                (resources_fit, 1),
                (Arc::new(BalancedAllocation), 1),
                (Arc::new(ImageLocality), 1),
            ],
            reserves: Vec::new(),
        }
    }
}

impl Default for Profile {
    fn default() -> Profile {
        Profile::default_with(ScoringStrategy::LeastAllocated)
    }
}
