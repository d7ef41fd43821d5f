//! The registry of every resource capstan serves: where it lives in the URL space, what it is
//! called, which verbs and subresources it has, and how the store keys it.
//!
//! Everything that differs between kinds in a table-driven way lives here, so that the API server
//! has one place to look and discovery, OpenAPI and routing can never disagree.

/// The verbs of a fully served resource, in the order Kubernetes lists them in discovery.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A subresource reached as `…/<name>/<subresource>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: writes change only `.status`; the main resource ignores `.status`.
    Status,
    /// `scale`: an autoscaling/v1 `Scale` view of `.spec.replicas`.
    Scale,
    /// `binding` (pods only): sets `.spec.nodeName` once.
    Binding,
    /// `finalize` (namespaces only): writes only `.spec.finalizers`.
    Finalize,
    /// `log` (pods only): a container's log, served by the pod's node.
    Log,
    /// `eviction` (pods only): a policy/v1 `Eviction` posted to delete the pod unless a
    /// PodDisruptionBudget forbids it.
    Eviction,
}

impl Subresource {
    pub fn path(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Log => "log",
            Subresource::Eviction => "eviction",
        }
    }

    pub fn from_path(segment: &str) -> Option<Self> {
        match segment {
            "status" => Some(Subresource::Status),
            "scale" => Some(Subresource::Scale),
            "binding" => Some(Subresource::Binding),
            "finalize" => Some(Subresource::Finalize),
            "log" => Some(Subresource::Log),
            "eviction" => Some(Subresource::Eviction),
            _ => None,
        }
    }

    /// Verbs of the subresource as discovery lists them.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction => &["create"],
            Subresource::Finalize => &["update"],
            Subresource::Log => &["get"],
        }
    }
}

/// One served resource in one group/version.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core ("legacy") group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment: `pods`, `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// `metadata.generation` is set and bumped on every change outside metadata and status.
    pub tracks_generation: bool,
    /// A create throws away any `.status` the client sent (Kubernetes' PrepareForCreate).
    pub resets_status_on_create: bool,
    /// Where `.spec.replicas` style scaling reads its selector for the `Scale` status.
    pub scale_selector_path: Option<&'static [&'static str]>,
    /// Is this the version a client gets when it names no version (first in discovery)?
    pub preferred: bool,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn has_status(&self) -> bool {
        self.has_subresource(Subresource::Status)
    }

    /// The key prefix under which the store keeps every object of this resource, whatever the
    /// version: versions of one resource share storage, as in Kubernetes.
    pub fn storage_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The prefix of one namespace (or of all objects when `namespace` is `None`).
    pub fn storage_list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.storage_prefix()),
            _ => self.storage_prefix(),
        }
    }

    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.storage_prefix()),
            _ => format!("{}{name}", self.storage_prefix()),
        }
    }

    /// The resource path as RBAC and error details name it: `deployments.apps`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const NO_SUB: &[Subresource] = &[];

const fn resource(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names: NONE,
        categories: NONE,
        verbs: STANDARD_VERBS,
        subresources: NO_SUB,
        tracks_generation: false,
        resets_status_on_create: false,
        scale_selector_path: None,
        preferred: true,
    }
}

const SELECTOR: &[&str] = &["spec", "selector"];

/// Every resource capstan serves, groups in the order discovery lists them.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    ResourceInfo {
        verbs: &["create"],
        ..resource("", "v1", "Binding", "bindings", "binding", true)
    },
    ResourceInfo {
        short_names: &["cm"],
        ..resource("", "v1", "ConfigMap", "configmaps", "configmap", true)
    },
    ResourceInfo {
        short_names: &["ep"],
        ..resource("", "v1", "Endpoints", "endpoints", "endpoints", true)
    },
    ResourceInfo {
        short_names: &["ev"],
        ..resource("", "v1", "Event", "events", "event", true)
    },
    ResourceInfo {
        short_names: &["limits"],
        ..resource("", "v1", "LimitRange", "limitranges", "limitrange", true)
    },
    ResourceInfo {
        short_names: &["ns"],
        subresources: &[Subresource::Status, Subresource::Finalize],
        resets_status_on_create: true,
        ..resource("", "v1", "Namespace", "namespaces", "namespace", false)
    },
    ResourceInfo {
        short_names: &["no"],
        subresources: STATUS,
        ..resource("", "v1", "Node", "nodes", "node", false)
    },
    ResourceInfo {
        short_names: &["pvc"],
        subresources: STATUS,
        resets_status_on_create: true,
        ..resource(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            true,
        )
    },
    ResourceInfo {
        short_names: &["pv"],
        subresources: STATUS,
        resets_status_on_create: true,
        ..resource(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            false,
        )
    },
    ResourceInfo {
        short_names: &["po"],
        categories: ALL,
        subresources: &[
            Subresource::Status,
            Subresource::Binding,
            Subresource::Eviction,
            Subresource::Log,
        ],
        resets_status_on_create: true,
        ..resource("", "v1", "Pod", "pods", "pod", true)
    },
    ResourceInfo {
        ..resource("", "v1", "PodTemplate", "podtemplates", "podtemplate", true)
    },
    ResourceInfo {
        short_names: &["quota"],
        subresources: STATUS,
        resets_status_on_create: true,
        ..resource(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            "resourcequota",
            true,
        )
    },
    ResourceInfo {
        ..resource("", "v1", "Secret", "secrets", "secret", true)
    },
    ResourceInfo {
        short_names: &["sa"],
        ..resource(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            true,
        )
    },
    ResourceInfo {
        short_names: &["svc"],
        categories: ALL,
        subresources: STATUS,
        resets_status_on_create: true,
        ..resource("", "v1", "Service", "services", "service", true)
    },
    // apps/v1
    ResourceInfo {
        ..resource(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            "controllerrevision",
            true,
        )
    },
    ResourceInfo {
        short_names: &["ds"],
        categories: ALL,
        subresources: STATUS,
        tracks_generation: true,
        resets_status_on_create: true,
        ..resource("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true)
    },
    ResourceInfo {
        short_names: &["deploy"],
        categories: ALL,
        subresources: STATUS_SCALE,
        tracks_generation: true,
        resets_status_on_create: true,
        scale_selector_path: Some(SELECTOR),
        ..resource(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "deployment",
            true,
        )
    },
    ResourceInfo {
        short_names: &["rs"],
        categories: ALL,
        subresources: STATUS_SCALE,
        tracks_generation: true,
        resets_status_on_create: true,
        scale_selector_path: Some(SELECTOR),
        ..resource(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            true,
        )
    },
    ResourceInfo {
        short_names: &["sts"],
        categories: ALL,
        subresources: STATUS_SCALE,
        tracks_generation: true,
        resets_status_on_create: true,
        scale_selector_path: Some(SELECTOR),
        ..resource(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            "statefulset",
            true,
        )
    },
    // autoscaling: v2 is preferred; v1 is a converted view of the same objects.
    ResourceInfo {
        short_names: &["hpa"],
        categories: ALL,
        subresources: STATUS,
        tracks_generation: true,
        resets_status_on_create: true,
        ..resource(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            true,
        )
    },
    ResourceInfo {
        short_names: &["hpa"],
        categories: ALL,
        subresources: STATUS,
        tracks_generation: true,
        resets_status_on_create: true,
        preferred: false,
        ..resource(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            true,
        )
    },
    // batch/v1
    ResourceInfo {
        short_names: &["cj"],
        categories: ALL,
        subresources: STATUS,
        tracks_generation: true,
        resets_status_on_create: true,
        ..resource("batch", "v1", "CronJob", "cronjobs", "cronjob", true)
    },
    ResourceInfo {
        categories: ALL,
        subresources: STATUS,
        tracks_generation: true,
        resets_status_on_create: true,
        ..resource("batch", "v1", "Job", "jobs", "job", true)
    },
    // coordination.k8s.io/v1
    ResourceInfo {
        ..resource(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            "lease",
            true,
        )
    },
    // discovery.k8s.io/v1
    ResourceInfo {
        ..resource(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            "endpointslice",
            true,
        )
    },
    // networking.k8s.io/v1
    ResourceInfo {
        ..resource(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            "ingressclass",
            false,
        )
    },
    ResourceInfo {
        short_names: &["ing"],
        subresources: STATUS,
        tracks_generation: true,
        resets_status_on_create: true,
        ..resource(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            "ingress",
            true,
        )
    },
    ResourceInfo {
        short_names: &["netpol"],
        tracks_generation: true,
        ..resource(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            "networkpolicy",
            true,
        )
    },
    // policy/v1
    ResourceInfo {
        short_names: &["pdb"],
        subresources: STATUS,
        tracks_generation: true,
        resets_status_on_create: true,
        ..resource(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            true,
        )
    },
    // rbac.authorization.k8s.io/v1
    ResourceInfo {
        ..resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            false,
        )
    },
    ResourceInfo {
        ..resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            "clusterrole",
            false,
        )
    },
    ResourceInfo {
        ..resource(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            "rolebinding",
            true,
        )
    },
    ResourceInfo {
        ..resource(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            "role",
            true,
        )
    },
    // scheduling.k8s.io/v1
    ResourceInfo {
        short_names: &["pc"],
        ..resource(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            false,
        )
    },
    // storage.k8s.io/v1
    ResourceInfo {
        short_names: &["sc"],
        ..resource(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            "storageclass",
            false,
        )
    },
];

/// A served group and its versions, preferred version first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVersions {
    pub group: &'static str,
    pub versions: Vec<&'static str>,
}

/// The served groups in discovery order (core group first), each with its versions.
pub fn groups() -> Vec<GroupVersions> {
    let mut out: Vec<GroupVersions> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|g| g.group == r.group) {
            Some(g) => {
                if !g.versions.contains(&r.version) {
                    // The preferred version of a group is listed first.
                    if r.preferred {
                        g.versions.insert(0, r.version);
                    } else {
                        g.versions.push(r.version);
                    }
                }
            }
            None => out.push(GroupVersions {
                group: r.group,
                versions: vec![r.version],
            }),
        }
    }
    out
}

/// The resources of one group/version, in registry order.
pub fn resources_in(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let group = group.to_string();
    let version = version.to_string();
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// The resource served at `/<group>/<version>/<plural>`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_by_group_version_and_plural() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} listed twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn versions_of_one_resource_share_storage() {
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(
            v1.storage_key(Some("default"), "web"),
            v2.storage_key(Some("default"), "web")
        );
    }

    #[test]
    fn preferred_version_is_listed_first() {
        let autoscaling = groups()
            .into_iter()
            .find(|g| g.group == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling.versions, vec!["v2", "v1"]);
    }

    #[test]
    fn cluster_scoped_keys_ignore_the_namespace() {
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(
            nodes.storage_key(Some("x"), "n1"),
            "/registry/core/nodes/n1"
        );
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.storage_key(Some("default"), "p"),
            "/registry/core/pods/default/p"
        );
    }
}
