//! `PodInfo`: everything the plugins need from a Pod, parsed once when the pod is first seen
//! (requests as integers, selectors compiled, tolerations and images extracted), so that a
//! scheduling cycle never re-reads the Pod object or re-parses a quantity.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration};

use crate::resources::{Resources, pod_requests};
use crate::selectors::{Labels, NodeRequirement, NodeTerm, PodSelector};
use crate::snapshot::{CounterKey, NodeFilter};

/// Which namespaces an inter-pod affinity term looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamespaceScope {
    /// An empty `namespaceSelector` (`{}`) selects every namespace.
    All,
    /// The listed namespaces (sorted), or the pod's own when none are listed.
    Listed(Vec<String>),
}

impl NamespaceScope {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            NamespaceScope::All => true,
            NamespaceScope::Listed(names) => names.iter().any(|n| n == namespace),
        }
    }
}

/// One inter-pod (anti-)affinity term: pods matching `selector` in `namespaces`, looked for in
/// the same `topology_key` domain as the candidate node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    pub namespaces: NamespaceScope,
    pub selector: PodSelector,
    pub topology_key: String,
}

impl AffinityTerm {
    /// Compiles a term. A non-empty `namespaceSelector` would need namespace labels, which the
    /// scheduler does not watch: best effort, such a term looks at the listed namespaces only
    /// (or at the pod's own namespace when none are listed).
    fn compile(term: &PodAffinityTerm, own_namespace: &str, own_labels: &Labels) -> AffinityTerm {
        let mut selector = PodSelector::compile(term.label_selector.as_ref());
        for key in term.match_label_keys.iter().flatten() {
            if let Some(value) = own_labels.get(key) {
                selector.require_equal(key, value);
            }
        }
        for key in term.mismatch_label_keys.iter().flatten() {
            if let Some(value) = own_labels.get(key) {
                selector.require_different(key, value);
            }
        }
        let listed: Vec<String> = term.namespaces.clone().unwrap_or_default();
        let selects_all = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        let namespaces = if selects_all {
            NamespaceScope::All
        } else if listed.is_empty() {
            NamespaceScope::Listed(vec![own_namespace.to_owned()])
        } else {
            let mut listed = listed;
            listed.sort();
            listed.dedup();
            NamespaceScope::Listed(listed)
        };
        AffinityTerm {
            namespaces,
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Does `pod` count for this term?
    pub fn matches(&self, pod: &PodInfo) -> bool {
        self.namespaces.contains(&pod.namespace) && self.selector.matches(&pod.labels)
    }
}

/// One compiled `topologySpreadConstraint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    pub selector: PodSelector,
    pub min_domains: Option<i64>,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes matching the pod's node affinity
    /// and selector count toward domains.
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default Ignore): only nodes whose taints the pod tolerates.
    pub honor_node_taints: bool,
    /// The snapshot counter of this constraint (its selector within the pod's namespace, by
    /// `topology_key`, over the nodes the inclusion policies admit), built once here.
    pub counter: CounterKey,
}

/// What the scheduler knows about a pod, parsed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    /// `spec.priority`, resolved from the PriorityClass at admission; 0 when unset.
    pub priority: i32,
    /// `preemptionPolicy: Never` pods never preempt others.
    pub preempts: bool,
    pub node_name: Option<String>,
    pub requests: Resources,
    /// Requests with kube-scheduler's defaults for missing CPU and memory, for scoring.
    pub non_zero_requests: Resources,
    pub tolerations: Vec<Toleration>,
    pub node_requirement: NodeRequirement,
    pub preferred_node_terms: Vec<(i64, NodeTerm)>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
    pub spread_constraints: Vec<SpreadConstraint>,
    /// Container and init container images, normalized (`nginx` → `nginx:latest`).
    pub images: Vec<String>,
    pub termination_grace_period_seconds: Option<i64>,
}

impl PodInfo {
    pub fn new(pod: Pod) -> PodInfo {
        PodInfo::from_arc(Arc::new(pod))
    }

    pub fn from_arc(pod: Arc<Pod>) -> PodInfo {
        let metadata = &pod.metadata;
        let namespace = metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let labels = metadata.labels.clone().unwrap_or_default();
        let default_spec = Default::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let affinity = spec.affinity.as_ref();
        let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());

        let node_requirement = NodeRequirement::of(spec);
        let preferred_node_terms = node_affinity
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), NodeTerm::compile(&t.preference)))
            .collect();

        let compile_terms = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::compile(t, &namespace, &labels))
                .collect()
        };
        let required_affinity = compile_terms(pod_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = compile_terms(pod_anti_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let compile_weighted =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        (
                            i64::from(t.weight),
                            AffinityTerm::compile(&t.pod_affinity_term, &namespace, &labels),
                        )
                    })
                    .collect::<Vec<_>>()
            };
        let preferred_affinity = compile_weighted(pod_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = compile_weighted(pod_anti_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));

        let tolerations = spec.tolerations.clone().unwrap_or_default();
        let spread_constraints = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = PodSelector::compile(c.label_selector.as_ref());
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(value) = labels.get(key) {
                        selector.require_equal(key, value);
                    }
                }
                let honor_node_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
                let honor_node_taints = c.node_taints_policy.as_deref() == Some("Honor");
                let counter = CounterKey {
                    term: AffinityTerm {
                        namespaces: NamespaceScope::Listed(vec![namespace.clone()]),
                        selector: selector.clone(),
                        topology_key: c.topology_key.clone(),
                    },
                    node_filter: NodeFilter {
                        requirement: honor_node_affinity.then(|| node_requirement.clone()),
                        tolerations: honor_node_taints
                            .then(|| NodeFilter::tolerations_signature(&tolerations)),
                    },
                };
                SpreadConstraint {
                    max_skew: i64::from(c.max_skew.max(1)),
                    topology_key: c.topology_key.clone(),
                    hard: c.when_unsatisfiable != "ScheduleAnyway",
                    selector,
                    min_domains: c.min_domains.map(i64::from).filter(|m| *m > 0),
                    honor_node_affinity,
                    honor_node_taints,
                    counter,
                }
            })
            .collect();

        let images = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.image.as_deref())
            .map(normalize_image_name)
            .collect();

        PodInfo {
            name: metadata.name.clone().unwrap_or_default(),
            uid: metadata.uid.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            preempts: spec.preemption_policy.as_deref() != Some("Never"),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            requests: pod_requests(spec, false),
            non_zero_requests: pod_requests(spec, true),
            tolerations,
            node_requirement,
            preferred_node_terms,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            spread_constraints,
            images,
            termination_grace_period_seconds: spec.termination_grace_period_seconds,
            namespace,
            labels,
            pod: Arc::clone(&pod),
        }
    }

    /// `namespace/name`, the key the snapshot and the queue know a pod by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn has_affinity_terms(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }
}

/// Image names as the kubelet reports them in `node.status.images`: without a tag or digest an
/// image means `:latest` (kube-scheduler's `normalizedImageName`).
pub fn normalize_image_name(name: &str) -> String {
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last_segment.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}
