//! Table output (`application/json;as=Table;v=v1;g=meta.k8s.io`): the columns `kubectl get`
//! prints for each kind, the same as Kubernetes' printers.
//!
//! The columns, their order, priorities and cell values follow Kubernetes 1.33's server-side
//! printers (`pkg/printers/internalversion/printers.go`). Like the Kubernetes API server, which
//! always prints with `Wide: true`, a row carries every column; kubectl hides the `priority: 1`
//! ones unless asked for `-o wide`. Kinds Kubernetes has no printer for (Role, ClusterRole,
//! LimitRange, Binding) get the API server's default table: `Name` and `Created At`.
//!
//! Objects are read as the API serializes them; a field that the API server always defaults
//! (a Deployment's `replicas`, a Service's `type`) is read with that default when it is missing,
//! so that an object that skipped defaulting prints the way Kubernetes would print it.

use crate::resource::ResourceInfo;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;

/// One column of a Table, as `meta.k8s.io/v1` `TableColumnDefinition` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub column_type: &'static str,
    /// `name`, `date` or empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always printed; 1: printed with `-o wide`.
    pub priority: i32,
}

/// The columns printed for `resource`.
pub fn columns(resource: &ResourceInfo) -> Vec<Column> {
    printer(resource).columns.to_vec()
}

/// The cells of one row for `object`, one per column of `columns(resource)`; `now` is used
/// for ages and durations.
pub fn cells(resource: &ResourceInfo, object: &Value, now: Timestamp) -> Vec<Value> {
    (printer(resource).row)(object, now)
}

/// Fills one row: a cell per column, in column order.
type RowFn = fn(&Value, Timestamp) -> Vec<Value>;

/// How one kind is printed: its columns and the function that fills a row.
struct Printer {
    columns: &'static [Column],
    row: RowFn,
}

fn printer(resource: &ResourceInfo) -> Printer {
    let (columns, row): (&'static [Column], RowFn) = match (resource.group, resource.kind) {
        ("", "ConfigMap") => (CONFIG_MAP, config_map_row),
        ("", "Endpoints") => (ENDPOINTS, endpoints_row),
        ("", "Event") => (EVENT, event_row),
        ("", "Namespace") => (NAMESPACE, namespace_row),
        ("", "Node") => (NODE, node_row),
        ("", "PersistentVolumeClaim") => (PERSISTENT_VOLUME_CLAIM, persistent_volume_claim_row),
        ("", "PersistentVolume") => (PERSISTENT_VOLUME, persistent_volume_row),
        ("", "Pod") => (POD, pod_row),
        ("", "PodTemplate") => (POD_TEMPLATE, pod_template_row),
        ("", "ResourceQuota") => (RESOURCE_QUOTA, resource_quota_row),
        ("", "Secret") => (SECRET, secret_row),
        ("", "ServiceAccount") => (SERVICE_ACCOUNT, service_account_row),
        ("", "Service") => (SERVICE, service_row),
        ("apps", "ControllerRevision") => (CONTROLLER_REVISION, controller_revision_row),
        ("apps", "DaemonSet") => (DAEMON_SET, daemon_set_row),
        ("apps", "Deployment") => (DEPLOYMENT, deployment_row),
        ("apps", "ReplicaSet") => (REPLICA_SET, replica_set_row),
        ("apps", "StatefulSet") => (STATEFUL_SET, stateful_set_row),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            (HORIZONTAL_POD_AUTOSCALER, horizontal_pod_autoscaler_row)
        }
        ("batch", "CronJob") => (CRON_JOB, cron_job_row),
        ("batch", "Job") => (JOB, job_row),
        ("coordination.k8s.io", "Lease") => (LEASE, lease_row),
        ("discovery.k8s.io", "EndpointSlice") => (ENDPOINT_SLICE, endpoint_slice_row),
        ("networking.k8s.io", "IngressClass") => (INGRESS_CLASS, ingress_class_row),
        ("networking.k8s.io", "Ingress") => (INGRESS, ingress_row),
        ("networking.k8s.io", "NetworkPolicy") => (NETWORK_POLICY, network_policy_row),
        ("policy", "PodDisruptionBudget") => (POD_DISRUPTION_BUDGET, pod_disruption_budget_row),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            (CLUSTER_ROLE_BINDING, role_binding_row)
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => (ROLE_BINDING, role_binding_row),
        ("scheduling.k8s.io", "PriorityClass") => (PRIORITY_CLASS, priority_class_row),
        ("storage.k8s.io", "StorageClass") => (STORAGE_CLASS, storage_class_row),
        // Kubernetes registers no printer for these; its API server falls back to
        // `rest.NewDefaultTableConvertor`.
        _ => (DEFAULT, default_row),
    };
    Printer { columns, row }
}

// ---------------------------------------------------------------------------------------------
// Columns
// ---------------------------------------------------------------------------------------------

impl Column {
    const fn string(name: &'static str, description: &'static str) -> Column {
        Column {
            name,
            column_type: "string",
            format: "",
            description,
            priority: 0,
        }
    }

    const fn integer(name: &'static str, description: &'static str) -> Column {
        Column {
            column_type: "integer",
            ..Column::string(name, description)
        }
    }

    const fn boolean(name: &'static str, description: &'static str) -> Column {
        Column {
            column_type: "boolean",
            ..Column::string(name, description)
        }
    }

    /// Printed only with `-o wide`.
    const fn wide(self) -> Column {
        Column {
            priority: 1,
            ..self
        }
    }
}

/// `ObjectMeta.name`'s documentation, which every Name column carries.
const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`'s documentation, which every Age column carries.
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: Column = Column {
    name: "Name",
    column_type: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};
const AGE: Column = Column::string("Age", CREATED_DOC);
const CONTAINERS: Column =
    Column::string("Containers", "Names of each container in the template.").wide();
const IMAGES: Column = Column::string(
    "Images",
    "Images referenced by each container in the template.",
)
.wide();

const DEFAULT: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        column_type: "date",
        format: "",
        description: CREATED_DOC,
        priority: 0,
    },
];

const CONFIG_MAP: &[Column] = &[
    NAME,
    Column::string(
        "Data",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

const ENDPOINTS: &[Column] = &[
    NAME,
    Column::string(
        "Endpoints",
        "The set of all endpoints is the union of all subsets. Sets of addresses and ports that comprise a service.",
    ),
    AGE,
];

const EVENT: &[Column] = &[
    Column::string(
        "Last Seen",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    Column::string(
        "Type",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    Column::string(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    Column::string("Object", "The object that this event is about."),
    Column::string(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    )
    .wide(),
    Column::string(
        "Source",
        "The component reporting this event. Should be a short machine understandable string.",
    )
    .wide(),
    Column::string(
        "Message",
        "A human-readable description of the status of this operation.",
    ),
    Column::string(
        "First Seen",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    )
    .wide(),
    Column::string("Count", "The number of times this event has occurred.").wide(),
    NAME.wide(),
];

const NAMESPACE: &[Column] = &[
    NAME,
    Column::string("Status", "The status of the namespace"),
    AGE,
];

const NODE: &[Column] = &[
    NAME,
    Column::string("Status", "The status of the node"),
    Column::string("Roles", "The roles of the node"),
    AGE,
    Column::string("Version", "Kubelet Version reported by the node."),
    Column::string(
        "Internal-IP",
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    )
    .wide(),
    Column::string(
        "External-IP",
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    )
    .wide(),
    Column::string(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    )
    .wide(),
    Column::string(
        "Kernel-Version",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    )
    .wide(),
    Column::string(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    )
    .wide(),
];

const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    Column::string(
        "Status",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    Column::string(
        "Volume",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    Column::string(
        "Capacity",
        "capacity represents the actual resources of the underlying volume.",
    ),
    Column::string(
        "Access Modes",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    Column::string("StorageClass", "StorageClass of the pvc"),
    Column::string("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    AGE,
    Column::string(
        "VolumeMode",
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.",
    )
    .wide(),
];

const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    Column::string(
        "Capacity",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    Column::string(
        "Access Modes",
        "accessModes contains all ways the volume can be mounted.",
    ),
    Column::string(
        "Reclaim Policy",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    Column::string(
        "Status",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    Column::string(
        "Claim",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    Column::string("StorageClass", "StorageClass of the pv"),
    Column::string("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
    Column::string(
        "Reason",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    Column::string(
        "VolumeMode",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.",
    )
    .wide(),
];

const POD: &[Column] = &[
    NAME,
    Column::string(
        "Ready",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    Column::string(
        "Status",
        "The aggregate status of the containers in this pod.",
    ),
    Column::string(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    Column::string(
        "IP",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    )
    .wide(),
    Column::string(
        "Node",
        "NodeName indicates in which node this pod is scheduled.",
    )
    .wide(),
    Column::string(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    )
    .wide(),
    Column::string(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    )
    .wide(),
];

const POD_TEMPLATE: &[Column] = &[
    NAME,
    Column::string("Containers", "Names of each container in the template."),
    Column::string(
        "Images",
        "Images referenced by each container in the template.",
    ),
    Column::string("Pod Labels", "The labels for the pod template."),
];

const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    Column::string(
        "Request",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    Column::string(
        "Limit",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
    AGE,
];

const SECRET: &[Column] = &[
    NAME,
    Column::string(
        "Type",
        "Used to facilitate programmatic handling of secret data.",
    ),
    Column::string(
        "Data",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

const SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    Column::string(
        "Secrets",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

const SERVICE: &[Column] = &[
    NAME,
    Column::string(
        "Type",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
    ),
    Column::string(
        "Cluster-IP",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    Column::string(
        "External-IP",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    Column::string(
        "Port(s)",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    Column::string(
        "Selector",
        "Route service traffic to pods with label keys and values matching this selector.",
    )
    .wide(),
];

const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    Column::string("Controller", "Controller of the object"),
    Column::string(
        "Revision",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

const DAEMON_SET: &[Column] = &[
    NAME,
    Column::integer(
        "Desired",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    Column::integer(
        "Current",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    Column::integer(
        "Ready",
        "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
    ),
    Column::integer(
        "Up-to-date",
        "The total number of nodes that are running updated daemon pod",
    ),
    Column::integer(
        "Available",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    Column::string(
        "Node Selector",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string(
        "Selector",
        "A label query over pods that are managed by the daemon set.",
    )
    .wide(),
];

const DEPLOYMENT: &[Column] = &[
    NAME,
    Column::string("Ready", "Number of the pod with ready state"),
    Column::string(
        "Up-to-date",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    Column::string(
        "Available",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string(
        "Selector",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    )
    .wide(),
];

const REPLICA_SET: &[Column] = &[
    NAME,
    Column::integer(
        "Desired",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1.",
    ),
    Column::integer(
        "Current",
        "Replicas is the most recently observed number of replicas.",
    ),
    Column::integer(
        "Ready",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    Column::string(
        "Selector",
        "Selector is a label query over pods that should match the replica count.",
    )
    .wide(),
];

const STATEFUL_SET: &[Column] = &[
    NAME,
    Column::string("Ready", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const HORIZONTAL_POD_AUTOSCALER: &[Column] = &[
    NAME,
    Column::string(
        "Reference",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
    ),
    Column::string(
        "Targets",
        "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
    ),
    Column::string(
        "MinPods",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    Column::string(
        "MaxPods",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    Column::string(
        "Replicas",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
    ),
    AGE,
];

const JOB_SELECTOR: Column = Column::string(
    "Selector",
    "A label query over pods that should match the pod count. Normally, the system sets this field for you.",
)
.wide();

const CRON_JOB: &[Column] = &[
    NAME,
    Column::string(
        "Schedule",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    Column::string(
        "Timezone",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    Column::boolean(
        "Suspend",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.",
    ),
    Column::integer("Active", "A list of pointers to currently running jobs."),
    Column::string(
        "Last Schedule",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    JOB_SELECTOR,
];

const JOB: &[Column] = &[
    NAME,
    Column::string("Status", "Status of the job."),
    Column::string(
        "Completions",
        "The number of pods which reached phase Succeeded.",
    ),
    Column::string("Duration", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    JOB_SELECTOR,
];

const LEASE: &[Column] = &[
    NAME,
    Column::string(
        "Holder",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    Column::string(
        "AddressType",
        "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type.",
    ),
    Column::string(
        "Ports",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    Column::string(
        "Endpoints",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

const INGRESS_CLASS: &[Column] = &[
    NAME,
    Column::string(
        "Controller",
        "Controller that is responsible for handling this class",
    ),
    Column::string(
        "Parameters",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

const INGRESS: &[Column] = &[
    NAME,
    Column::string(
        "Class",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    Column::string(
        "Hosts",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    Column::string(
        "Address",
        "Address is a list containing ingress points for the load-balancer",
    ),
    Column::string("Ports", "Ports of TLS configurations that open"),
    AGE,
];

const NETWORK_POLICY: &[Column] = &[
    NAME,
    Column::string(
        "Pod-Selector",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

const POD_DISRUPTION_BUDGET: &[Column] = &[
    NAME,
    Column::string(
        "Min Available",
        "The minimum number of pods that must be available.",
    ),
    Column::string(
        "Max Unavailable",
        "The maximum number of pods that may be unavailable.",
    ),
    Column::integer(
        "Allowed Disruptions",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

const PRIORITY_CLASS: &[Column] = &[
    NAME,
    Column::integer(
        "Value",
        "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
    ),
    Column::boolean(
        "Global-Default",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
    ),
    AGE,
    Column::string(
        "PreemptionPolicy",
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
    ),
];

const ROLE_BINDING: &[Column] = &[
    NAME,
    Column::string(
        "Role",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    Column::string("Users", "Users in the roleBinding").wide(),
    Column::string("Groups", "Groups in the roleBinding").wide(),
    Column::string("ServiceAccounts", "ServiceAccounts in the roleBinding").wide(),
];

const CLUSTER_ROLE_BINDING: &[Column] = &[
    NAME,
    Column::string(
        "Role",
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    Column::string("Users", "Users in the clusterRoleBinding").wide(),
    Column::string("Groups", "Groups in the clusterRoleBinding").wide(),
    Column::string(
        "ServiceAccounts",
        "ServiceAccounts in the clusterRoleBinding",
    )
    .wide(),
];

const STORAGE_CLASS: &[Column] = &[
    NAME,
    Column::string(
        "Provisioner",
        "provisioner indicates the type of the provisioner.",
    ),
    Column::string(
        "ReclaimPolicy",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
    ),
    Column::string(
        "VolumeBindingMode",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used.",
    ),
    Column::string(
        "AllowVolumeExpansion",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/// The API server's fallback row: the name and the creation time as RFC 3339 in UTC.
fn default_row(object: &Value, _now: Timestamp) -> Vec<Value> {
    let created = match object.pointer("/metadata/creationTimestamp") {
        Some(Value::String(raw)) => match raw.parse::<Timestamp>() {
            Ok(at) => at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            Err(_) => raw.clone(),
        },
        // Go formats the zero time.Time.
        _ => "0001-01-01T00:00:00Z".to_string(),
    };
    vec![name(object), created.into()]
}

fn config_map_row(object: &Value, now: Timestamp) -> Vec<Value> {
    let keys = count(object, "/data") + count(object, "/binaryData");
    vec![name(object), keys.into(), age(object, now)]
}

fn endpoints_row(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        format_endpoints(object).into(),
        age(object, now),
    ]
}

fn event_row(event: &Value, now: Timestamp) -> Vec<Value> {
    // Events of the events.k8s.io API carry `eventTime` and `series` instead of the core
    // timestamps and count.
    let first_seen = match timestamp(event, "/firstTimestamp") {
        Some(at) => since(Some(at), now),
        None => since(timestamp(event, "/eventTime"), now),
    };
    let mut last_seen = match timestamp(event, "/lastTimestamp") {
        Some(at) => since(Some(at), now),
        None => first_seen.clone(),
    };
    let mut occurrences = integer(event, "/count");
    if event.pointer("/series").is_some_and(Value::is_object) {
        last_seen = since(timestamp(event, "/series/lastObservedTime"), now);
        occurrences = integer(event, "/series/count");
    } else if occurrences == 0 {
        // Singleton events have no count in the new API.
        occurrences = 1;
    }

    let kind = text(event, "/involvedObject/kind").to_lowercase();
    let involved = match text(event, "/involvedObject/name") {
        "" => kind,
        object_name => format!("{kind}/{object_name}"),
    };
    let component = first_non_empty(
        text(event, "/source/component"),
        text(event, "/reportingComponent"),
    );
    let instance = first_non_empty(
        text(event, "/source/host"),
        text(event, "/reportingInstance"),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };

    vec![
        last_seen.into(),
        text(event, "/type").into(),
        text(event, "/reason").into(),
        involved.into(),
        text(event, "/involvedObject/fieldPath").into(),
        source.into(),
        text(event, "/message").trim().into(),
        first_seen.into(),
        occurrences.into(),
        name(event),
    ]
}

fn namespace_row(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        text(object, "/status/phase").into(),
        age(object, now),
    ]
}

fn node_row(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition makes the status; a later duplicate wins, as in Kubernetes'
    // condition map.
    let ready = items(node, "/status/conditions")
        .iter()
        .rfind(|condition| text(condition, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(condition) if text(condition, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push("SchedulingDisabled");
    }

    let address = |kind: &str| {
        items(node, "/status/addresses")
            .iter()
            .find(|address| text(address, "/type") == kind)
            .map_or("<none>", |address| text(address, "/address"))
            .to_string()
    };
    let info = |field: &str| or_unknown(text(node, &format!("/status/nodeInfo/{field}")));

    vec![
        name(node),
        status.join(",").into(),
        or_none(&node_roles(node).join(",")).into(),
        age(node, now),
        text(node, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// Roles come from `node-role.kubernetes.io/<role>` label keys and the older
/// `kubernetes.io/role=<role>` label, sorted and without duplicates.
fn node_roles(node: &Value) -> Vec<&str> {
    let mut roles = BTreeSet::new();
    for (key, value) in labels(node, "/metadata/labels") {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if key == "kubernetes.io/role" && !value.is_empty() {
            roles.insert(value);
        }
    }
    roles.into_iter().collect()
}

fn persistent_volume_claim_row(claim: &Value, now: Timestamp) -> Vec<Value> {
    let volume = text(claim, "/spec/volumeName");
    // Capacity and access modes describe the bound volume, so they stay empty until binding.
    let (capacity, access_modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(claim, "/status/capacity/storage").unwrap_or_else(|| "0".into()),
            access_modes(items(claim, "/status/accessModes")),
        )
    };
    let class = match annotation(claim, "volume.beta.kubernetes.io/storage-class") {
        Some(class) => class,
        None => text(claim, "/spec/storageClassName"),
    };
    vec![
        name(claim),
        terminating_or(claim, text(claim, "/status/phase")).into(),
        volume.into(),
        capacity.into(),
        access_modes.into(),
        class.into(),
        or_unset(text(claim, "/spec/volumeAttributesClassName")).into(),
        age(claim, now),
        or_unset(text(claim, "/spec/volumeMode")).into(),
    ]
}

fn persistent_volume_row(volume: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match volume.pointer("/spec/claimRef") {
        Some(claim) if claim.is_object() => {
            format!("{}/{}", text(claim, "/namespace"), text(claim, "/name"))
        }
        _ => String::new(),
    };
    let class = match annotation(volume, "volume.beta.kubernetes.io/storage-class") {
        Some(class) => class,
        None => text(volume, "/spec/storageClassName"),
    };
    vec![
        name(volume),
        quantity(volume, "/spec/capacity/storage")
            .unwrap_or_else(|| "0".into())
            .into(),
        access_modes(items(volume, "/spec/accessModes")).into(),
        text(volume, "/spec/persistentVolumeReclaimPolicy").into(),
        terminating_or(volume, text(volume, "/status/phase")).into(),
        claim.into(),
        class.into(),
        or_unset(text(volume, "/spec/volumeAttributesClassName")).into(),
        text(volume, "/status/reason").into(),
        age(volume, now),
        or_unset(text(volume, "/spec/volumeMode")).into(),
    ]
}

/// `RWO,ROX,RWX,RWOP`, in that fixed order whatever the order in the object.
fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn pod_row(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = PodSummary::of(pod);
    let restarts = match summary.last_restart {
        Some(at) if summary.restarts != 0 => {
            format!("{} ({} ago)", summary.restarts, since(Some(at), now))
        }
        _ => summary.restarts.to_string(),
    };

    // Kubernetes' conversion fills `podIPs` from `podIP` when only the latter is set.
    let ip = match items(pod, "/status/podIPs").first() {
        Some(first) => text(first, "/ip"),
        None => text(pod, "/status/podIP"),
    };

    vec![
        name(pod),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.status.into(),
        restarts.into(),
        age(pod, now),
        or_none(ip).into(),
        or_none(text(pod, "/spec/nodeName")).into(),
        or_none(text(pod, "/status/nominatedNodeName")).into(),
        readiness_gates(pod).into(),
    ]
}

/// The Ready, Status and Restarts columns of a pod, worked out together because Kubernetes
/// derives all three in one pass over the container statuses.
#[derive(Debug)]
struct PodSummary {
    ready: usize,
    /// App containers plus sidecars (init containers with `restartPolicy: Always`).
    total: usize,
    status: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

impl PodSummary {
    fn of(pod: &Value) -> PodSummary {
        let init_containers = items(pod, "/spec/initContainers");
        let is_sidecar = |container_name: &str| {
            init_containers.iter().any(|container| {
                text(container, "/name") == container_name
                    && text(container, "/restartPolicy") == "Always"
            })
        };
        let sidecars = init_containers
            .iter()
            .filter(|container| text(container, "/restartPolicy") == "Always")
            .count();

        let mut summary = PodSummary {
            ready: 0,
            total: items(pod, "/spec/containers").len() + sidecars,
            status: first_non_empty(text(pod, "/status/reason"), text(pod, "/status/phase"))
                .to_string(),
            restarts: 0,
            last_restart: None,
        };
        if items(pod, "/status/conditions").iter().any(|condition| {
            text(condition, "/type") == "PodScheduled"
                && text(condition, "/reason") == "SchedulingGated"
        }) {
            summary.status = "SchedulingGated".into();
        }

        // Init containers run in order: the first one that has not completed says where the
        // pod is. Sidecars only count their restarts once the pod is past initialization.
        let mut sidecar_restarts = 0;
        let mut last_sidecar_restart = None;
        let mut initializing = false;
        for (index, status) in items(pod, "/status/initContainerStatuses")
            .iter()
            .enumerate()
        {
            let restart_count = integer(status, "/restartCount");
            let finished = timestamp(status, "/lastState/terminated/finishedAt");
            summary.restarts += restart_count;
            summary.last_restart = summary.last_restart.max(finished);
            let sidecar = is_sidecar(text(status, "/name"));
            if sidecar {
                sidecar_restarts += restart_count;
                last_sidecar_restart = last_sidecar_restart.max(finished);
            }

            let terminated = status
                .pointer("/state/terminated")
                .filter(|t| t.is_object());
            let waiting_reason = text(status, "/state/waiting/reason");
            if let Some(terminated) = terminated
                && integer(terminated, "/exitCode") == 0
            {
                continue;
            }
            if sidecar && status.pointer("/started") == Some(&Value::Bool(true)) {
                if status.pointer("/ready") == Some(&Value::Bool(true)) {
                    summary.ready += 1;
                }
                continue;
            }
            summary.status = if let Some(terminated) = terminated {
                format!("Init:{}", termination_reason(terminated))
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                format!("Init:{waiting_reason}")
            } else {
                format!("Init:{index}/{}", init_containers.len())
            };
            initializing = true;
            break;
        }

        if !initializing || has_condition(pod, "Initialized") {
            summary.restarts = sidecar_restarts;
            summary.last_restart = last_sidecar_restart;
            let mut has_running = false;
            // Walked backwards so that the first container's reason wins.
            for status in items(pod, "/status/containerStatuses").iter().rev() {
                summary.restarts += integer(status, "/restartCount");
                summary.last_restart = summary
                    .last_restart
                    .max(timestamp(status, "/lastState/terminated/finishedAt"));

                let waiting_reason = text(status, "/state/waiting/reason");
                let terminated = status
                    .pointer("/state/terminated")
                    .filter(|t| t.is_object());
                if !waiting_reason.is_empty() {
                    summary.status = waiting_reason.to_string();
                } else if let Some(terminated) = terminated {
                    summary.status = termination_reason(terminated);
                } else if status.pointer("/ready") == Some(&Value::Bool(true))
                    && status
                        .pointer("/state/running")
                        .is_some_and(Value::is_object)
                {
                    has_running = true;
                    summary.ready += 1;
                }
            }
            // One container completed while another still runs: the pod as a whole runs.
            if summary.status == "Completed" && has_running {
                summary.status = if has_condition(pod, "Ready") {
                    "Running".into()
                } else {
                    "NotReady".into()
                };
            }
        }

        if being_deleted(pod) {
            let phase = text(pod, "/status/phase");
            if text(pod, "/status/reason") == "NodeLost" {
                summary.status = "Unknown".into();
            } else if phase != "Succeeded" && phase != "Failed" {
                summary.status = "Terminating".into();
            }
        }
        summary
    }
}

/// A terminated container's reason, or its signal or exit code when it gives none.
fn termination_reason(terminated: &Value) -> String {
    match text(terminated, "/reason") {
        "" => match integer(terminated, "/signal") {
            0 => format!("ExitCode:{}", integer(terminated, "/exitCode")),
            signal => format!("Signal:{signal}"),
        },
        reason => reason.to_string(),
    }
}

/// `True` conditions out of the pod's readiness gates, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = items(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = items(pod, "/status/conditions");
    let passed = gates
        .iter()
        .filter(|gate| {
            let wanted = text(gate, "/conditionType");
            conditions
                .iter()
                .find(|condition| text(condition, "/type") == wanted)
                .is_some_and(|condition| text(condition, "/status") == "True")
        })
        .count();
    format!("{passed}/{}", gates.len())
}

fn has_condition(object: &Value, condition_type: &str) -> bool {
    items(object, "/status/conditions")
        .iter()
        .find(|condition| text(condition, "/type") == condition_type)
        .is_some_and(|condition| text(condition, "/status") == "True")
}

fn pod_template_row(template: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(template, "/template/spec/containers");
    vec![
        name(template),
        names,
        images,
        format_labels(template, "/template/metadata/labels").into(),
    ]
}

fn resource_quota_row(quota: &Value, now: Timestamp) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    // Sorted by resource name, as Kubernetes prints them.
    let mut hard: Vec<_> = entries(quota, "/status/hard")
        .into_iter()
        .flatten()
        .collect();
    hard.sort_by_key(|(resource, _)| resource.as_str());
    for (resource, hard_quantity) in hard {
        let used = quota
            .pointer("/status/used")
            .and_then(|used| used.get(resource))
            .and_then(quantity_text)
            .unwrap_or_else(|| "0".into());
        let hard_quantity = quantity_text(hard_quantity).unwrap_or_else(|| "0".into());
        let cell = format!("{resource}: {used}/{hard_quantity}");
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(cell),
            _ => requests.push(cell),
        }
    }
    vec![
        name(quota),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(quota, now),
    ]
}

fn secret_row(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret),
        text(secret, "/type").into(),
        count(secret, "/data").into(),
        age(secret, now),
    ]
}

fn service_account_row(account: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(account),
        count(account, "/secrets").into(),
        age(account, now),
    ]
}

fn service_row(service: &Value, now: Timestamp) -> Vec<Value> {
    let service_type = first_non_empty(text(service, "/spec/type"), "ClusterIP");
    let cluster_ip = match items(service, "/spec/clusterIPs").first() {
        Some(first) => first.as_str().unwrap_or(""),
        None => text(service, "/spec/clusterIP"),
    };
    let ports = items(service, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = first_non_empty(text(port, "/protocol"), "TCP");
            match integer(port, "/nodePort") {
                node_port if node_port > 0 => {
                    format!("{}:{node_port}/{protocol}", integer(port, "/port"))
                }
                _ => format!("{}/{protocol}", integer(port, "/port")),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    vec![
        name(service),
        service_type.into(),
        or_none(cluster_ip).into(),
        service_external_ip(service, service_type).into(),
        or_none(&ports).into(),
        age(service, now),
        format_labels(service, "/spec/selector").into(),
    ]
}

fn service_external_ip(service: &Value, service_type: &str) -> String {
    let external_ips: Vec<&str> = items(service, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match service_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(service);
            addresses.extend(external_ips);
            if addresses.is_empty() {
                "<pending>".into()
            } else {
                addresses.join(",")
            }
        }
        "ExternalName" => text(service, "/spec/externalName").into(),
        _ => "<unknown>".into(),
    }
}

/// The load balancer's IPs (or hostnames where it has no IP), sorted and without duplicates.
/// The server prints wide, so the list is never clipped.
fn load_balancer_addresses(object: &Value) -> Vec<&str> {
    items(object, "/status/loadBalancer/ingress")
        .iter()
        .map(|ingress| first_non_empty(text(ingress, "/ip"), text(ingress, "/hostname")))
        .filter(|address| !address.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn controller_revision_row(revision: &Value, now: Timestamp) -> Vec<Value> {
    let controller = items(revision, "/metadata/ownerReferences")
        .iter()
        .find(|owner| owner.pointer("/controller") == Some(&Value::Bool(true)))
        .map_or_else(
            || "<none>".to_string(),
            |owner| {
                let (group, _) = crate::resource::split_api_version(text(owner, "/apiVersion"));
                let kind = text(owner, "/kind");
                let owner_name = text(owner, "/name");
                // Go's GroupKind.String(): `kind.group`, or just `kind` in the core group.
                match (group, kind) {
                    ("", "") => owner_name.to_string(),
                    ("", kind) => format!("{}/{owner_name}", kind.to_lowercase()),
                    (group, kind) => format!(
                        "{}.{}/{owner_name}",
                        kind.to_lowercase(),
                        group.to_lowercase()
                    ),
                }
            },
        );
    vec![
        name(revision),
        controller.into(),
        integer(revision, "/revision").into(),
        age(revision, now),
    ]
}

fn daemon_set_row(daemon_set: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(daemon_set, "/spec/template/spec/containers");
    vec![
        name(daemon_set),
        integer(daemon_set, "/status/desiredNumberScheduled").into(),
        integer(daemon_set, "/status/currentNumberScheduled").into(),
        integer(daemon_set, "/status/numberReady").into(),
        integer(daemon_set, "/status/updatedNumberScheduled").into(),
        integer(daemon_set, "/status/numberAvailable").into(),
        format_labels(daemon_set, "/spec/template/spec/nodeSelector").into(),
        age(daemon_set, now),
        names,
        images,
        format_label_selector(daemon_set.pointer("/spec/selector")).into(),
    ]
}

fn deployment_row(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(deployment, "/spec/template/spec/containers");
    // Deployments print the bare selector: empty rather than `<none>`.
    let selector =
        label_selector(deployment.pointer("/spec/selector")).unwrap_or_else(|_| "<invalid>".into());
    vec![
        name(deployment),
        format!(
            "{}/{}",
            integer(deployment, "/status/readyReplicas"),
            replicas(deployment)
        )
        .into(),
        integer(deployment, "/status/updatedReplicas").into(),
        integer(deployment, "/status/availableReplicas").into(),
        age(deployment, now),
        names,
        images,
        selector.into(),
    ]
}

fn replica_set_row(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(replica_set, "/spec/template/spec/containers");
    vec![
        name(replica_set),
        replicas(replica_set).into(),
        integer(replica_set, "/status/replicas").into(),
        integer(replica_set, "/status/readyReplicas").into(),
        age(replica_set, now),
        names,
        images,
        format_label_selector(replica_set.pointer("/spec/selector")).into(),
    ]
}

fn stateful_set_row(stateful_set: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = container_cells(stateful_set, "/spec/template/spec/containers");
    vec![
        name(stateful_set),
        format!(
            "{}/{}",
            integer(stateful_set, "/status/readyReplicas"),
            replicas(stateful_set)
        )
        .into(),
        age(stateful_set, now),
        names,
        images,
    ]
}

/// `.spec.replicas`, which the API defaults to 1.
fn replicas(object: &Value) -> i64 {
    object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn horizontal_pod_autoscaler_row(autoscaler: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        text(autoscaler, "/spec/scaleTargetRef/kind"),
        text(autoscaler, "/spec/scaleTargetRef/name")
    );
    let (specs, statuses) = autoscaler_metrics(autoscaler);
    let min_pods = match autoscaler
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
    {
        Some(min) => min.to_string(),
        None => "<unset>".into(),
    };
    vec![
        name(autoscaler),
        reference.into(),
        format_metrics(&specs, &statuses).into(),
        min_pods.into(),
        integer(autoscaler, "/spec/maxReplicas").into(),
        integer(autoscaler, "/status/currentReplicas").into(),
        age(autoscaler, now),
    ]
}

/// The metric specs and statuses in the autoscaling/v2 shape. An autoscaling/v1 object only
/// has a CPU utilization target, which Kubernetes converts into one Resource metric before
/// printing; the same is done here.
fn autoscaler_metrics(autoscaler: &Value) -> (Cow<'_, [Value]>, Cow<'_, [Value]>) {
    if let Some(specs) = autoscaler
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
    {
        let statuses = items(autoscaler, "/status/currentMetrics");
        return (Cow::Borrowed(specs), Cow::Borrowed(statuses));
    }
    let cpu = |field: &str, value: &Value| {
        serde_json::json!({
            "type": "Resource",
            "resource": { "name": "cpu", field: { "averageUtilization": value } },
        })
    };
    let specs = autoscaler
        .pointer("/spec/targetCPUUtilizationPercentage")
        .map(|target| cpu("target", target));
    let statuses = autoscaler
        .pointer("/status/currentCPUUtilizationPercentage")
        .map(|current| cpu("current", current));
    (
        Cow::Owned(specs.into_iter().collect()),
        Cow::Owned(statuses.into_iter().collect()),
    )
}

/// `cpu: 40%/80%, 200/1k + 1 more...`: each metric's current value against its target; the
/// status at the same index holds the current value.
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    let metrics = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let metric_type = text(spec, "/type");
            let source = match metric_type {
                "External" => "external",
                "Pods" => "pods",
                "Object" => "object",
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                _ => return "<unknown type>".to_string(),
            };
            let spec = spec.get(source).unwrap_or(&Value::Null);
            let status = statuses
                .get(index)
                .and_then(|status| status.get(source))
                .filter(|status| status.is_object());
            let current = |field: &str| -> Option<String> {
                status.map(|status| {
                    quantity(status, &format!("/current/{field}")).unwrap_or_else(|| "<nil>".into())
                })
            };
            let target = |field: &str| {
                quantity(spec, &format!("/target/{field}")).unwrap_or_else(|| "<nil>".into())
            };
            let averaged = spec
                .pointer("/target/averageValue")
                .is_some_and(|v| !v.is_null());
            match source {
                "pods" => format!(
                    "{}/{}",
                    current("averageValue").unwrap_or_else(|| "<unknown>".into()),
                    target("averageValue")
                ),
                "external" | "object" if averaged => format!(
                    "{}/{} (avg)",
                    status
                        .and_then(|status| quantity(status, "/current/averageValue"))
                        .unwrap_or_else(|| "<unknown>".into()),
                    target("averageValue")
                ),
                "external" | "object" => format!(
                    "{}/{}",
                    current("value").unwrap_or_else(|| "<unknown>".into()),
                    target("value")
                ),
                _ => {
                    let resource = text(spec, "/name");
                    if averaged {
                        let current = current("averageValue").unwrap_or_else(|| "<unknown>".into());
                        format!("{resource}: {current}/{}", target("averageValue"))
                    } else {
                        let percent = |value: Option<&Value>| {
                            value.and_then(Value::as_i64).map(|p| format!("{p}%"))
                        };
                        let current = percent(
                            status.and_then(|status| status.pointer("/current/averageUtilization")),
                        )
                        .unwrap_or_else(|| "<unknown>".into());
                        let target = percent(spec.pointer("/target/averageUtilization"))
                            .unwrap_or_else(|| "<auto>".into());
                        format!("{resource}: {current}/{target}")
                    }
                }
            }
        })
        .collect();
    list_with_more(metrics, 2, ", ")
}

fn cron_job_row(cron_job: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match timestamp(cron_job, "/status/lastScheduleTime") {
        Some(at) => since(Some(at), now),
        None => "<none>".into(),
    };
    let suspend = match cron_job.pointer("/spec/suspend") {
        Some(Value::Bool(true)) => "True",
        Some(Value::Bool(false)) => "False",
        _ => "<unset>",
    };
    let (names, images) =
        container_cells(cron_job, "/spec/jobTemplate/spec/template/spec/containers");
    vec![
        name(cron_job),
        text(cron_job, "/spec/schedule").into(),
        or_none(text(cron_job, "/spec/timeZone")).into(),
        suspend.into(),
        count(cron_job, "/status/active").into(),
        last_schedule.into(),
        age(cron_job, now),
        names,
        images,
        format_label_selector(cron_job.pointer("/spec/jobTemplate/spec/selector")).into(),
    ]
}

fn job_row(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = integer(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match integer(job, "/spec/parallelism") {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(job, "/status/startTime"),
        timestamp(job, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    // The first matching condition decides, in this order of precedence.
    let job_condition = |condition_type: &str| {
        items(job, "/status/conditions")
            .iter()
            .find(|condition| text(condition, "/type") == condition_type)
            .is_some_and(|condition| text(condition, "/status") == "True")
    };
    let status = if job_condition("Complete") {
        "Complete"
    } else if job_condition("Failed") {
        "Failed"
    } else if being_deleted(job) {
        "Terminating"
    } else if job_condition("Suspended") {
        "Suspended"
    } else if job_condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(job, "/spec/template/spec/containers");
    vec![
        name(job),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        names,
        images,
        format_label_selector(job.pointer("/spec/selector")).into(),
    ]
}

fn lease_row(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease),
        text(lease, "/spec/holderIdentity").into(),
        age(lease, now),
    ]
}

fn endpoint_slice_row(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports = items(slice, "/ports")
        .iter()
        .map(|port| match port.pointer("/port").and_then(Value::as_i64) {
            Some(number) => number.to_string(),
            None => match port.pointer("/name").and_then(Value::as_str) {
                Some(port_name) => port_name.to_string(),
                None => "*".into(),
            },
        })
        .collect();
    let addresses = items(slice, "/endpoints")
        .iter()
        .flat_map(|endpoint| items(endpoint, "/addresses"))
        .filter_map(|address| address.as_str().map(str::to_string))
        .collect();
    vec![
        name(slice),
        text(slice, "/addressType").into(),
        or_unset(&list_with_more(ports, 3, ",")).into(),
        or_unset(&list_with_more(addresses, 3, ",")).into(),
        age(slice, now),
    ]
}

fn ingress_class_row(class: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match class.pointer("/spec/parameters") {
        Some(parameters) if parameters.is_object() => {
            let kind = text(parameters, "/kind");
            let parameters_name = text(parameters, "/name");
            match parameters.pointer("/apiGroup").and_then(Value::as_str) {
                Some(group) => format!("{kind}.{group}/{parameters_name}"),
                None => format!("{kind}/{parameters_name}"),
            }
        }
        _ => "<none>".into(),
    };
    vec![
        name(class),
        text(class, "/spec/controller").into(),
        parameters.into(),
        age(class, now),
    ]
}

fn ingress_row(ingress: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if items(ingress, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ingress),
        or_none(text(ingress, "/spec/ingressClassName")).into(),
        ingress_hosts(items(ingress, "/spec/rules")).into(),
        load_balancer_addresses(ingress).join(",").into(),
        ports.into(),
        age(ingress, now),
    ]
}

/// The first three hosts of the rules, `*` when no rule names a host. Kubernetes counts the
/// "more" against all rules, hostless ones included.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
            break;
        }
        let host = text(rule, "/host");
        if !host.is_empty() {
            hosts.push(host);
        }
    }
    match (hosts.is_empty(), more) {
        (true, _) => "*".into(),
        (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - MAX),
        (false, false) => hosts.join(","),
    }
}

fn network_policy_row(policy: &Value, now: Timestamp) -> Vec<Value> {
    // `podSelector` is required; a missing one reads as the empty selector, matching all pods.
    let selector = policy
        .pointer("/spec/podSelector")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    vec![
        name(policy),
        format_label_selector(Some(&selector)).into(),
        age(policy, now),
    ]
}

/// Shared by RoleBinding and ClusterRoleBinding.
/// An int-or-percent as `IntOrString.String()` prints it, `N/A` when unset.
fn int_or_percent_or_na(object: &Value, pointer: &str) -> Value {
    match object.pointer(pointer) {
        Some(Value::Number(n)) => n.to_string().into(),
        Some(Value::String(s)) => s.as_str().into(),
        _ => "N/A".into(),
    }
}

fn pod_disruption_budget_row(budget: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(budget),
        int_or_percent_or_na(budget, "/spec/minAvailable"),
        int_or_percent_or_na(budget, "/spec/maxUnavailable"),
        integer(budget, "/status/disruptionsAllowed").into(),
        age(budget, now),
    ]
}

fn priority_class_row(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(class),
        integer(class, "/value").into(),
        class
            .get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .into(),
        age(class, now),
        text(class, "/preemptionPolicy").into(),
    ]
}

fn role_binding_row(binding: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        text(binding, "/roleRef/kind"),
        text(binding, "/roleRef/name")
    );
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(binding, "/subjects") {
        let subject_name = text(subject, "/name");
        match text(subject, "/kind") {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{subject_name}", text(subject, "/namespace")))
            }
            // Kubernetes collects other kinds too, but prints none of them.
            _ => {}
        }
    }
    vec![
        name(binding),
        role.into(),
        age(binding, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        service_accounts.join(", ").into(),
    ]
}

fn storage_class_row(class: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| annotation(class, key) == Some("true"));
    let class_name = text(class, "/metadata/name");
    let printed_name = if is_default {
        format!("{class_name} (default)")
    } else {
        class_name.to_string()
    };
    vec![
        printed_name.into(),
        text(class, "/provisioner").into(),
        first_non_empty(text(class, "/reclaimPolicy"), "Delete").into(),
        first_non_empty(text(class, "/volumeBindingMode"), "Immediate").into(),
        (class.pointer("/allowVolumeExpansion") == Some(&Value::Bool(true))).into(),
        age(class, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Formatting shared by the kinds
// ---------------------------------------------------------------------------------------------

/// `metadata.name`.
fn name(object: &Value) -> Value {
    text(object, "/metadata/name").into()
}

/// The Age column: how long ago the object was created.
fn age(object: &Value, now: Timestamp) -> Value {
    since(timestamp(object, "/metadata/creationTimestamp"), now).into()
}

/// Kubernetes' `translateTimestampSince`: `<unknown>` for no time.
fn since(at: Option<Timestamp>, now: Timestamp) -> String {
    match at {
        Some(at) => human_duration(now.duration_since(at)),
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `duration.HumanDuration`: about two significant figures, with finer units
/// while the value is small (`90s`, `3m2s`, `10m`, `3h5m`, `2d3h`, `45d`, `3y10d`, `9y`).
/// Up to a second in the future counts as now, to tolerate clock skew; further is `<invalid>`.
fn human_duration(duration: SignedDuration) -> String {
    // Whole seconds, truncated toward zero as Go's int(d.Seconds()) is; every coarser unit
    // below is derived from them by integer division, as Go divides the duration.
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// `3m2s`, or just `3m` when the smaller unit is zero.
fn with_remainder(value: i64, unit: &str, remainder: i64, remainder_unit: &str) -> String {
    if remainder == 0 {
        format!("{value}{unit}")
    } else {
        format!("{value}{unit}{remainder}{remainder_unit}")
    }
}

/// Joins the first `max` items with `separator` and says how many were left out, like
/// Kubernetes' `formatEndpoints` and `listWithMoreString`: `a,b,c + 2 more...`.
fn list_with_more(items: Vec<String>, max: usize, separator: &str) -> String {
    if items.len() <= max {
        return items.join(separator);
    }
    format!(
        "{} + {} more...",
        items[..max].join(separator),
        items.len() - max
    )
}

/// Every `address:port` of an Endpoints object (just the address for subsets without ports),
/// `<none>` without subsets.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = items(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list = Vec::new();
    for subset in subsets {
        let addresses = items(subset, "/addresses").iter().map(|a| text(a, "/ip"));
        let ports = items(subset, "/ports");
        // Headless services may have no ports at all.
        if ports.is_empty() {
            list.extend(addresses.map(str::to_string));
            continue;
        }
        for port in ports {
            let number = integer(port, "/port");
            list.extend(addresses.clone().map(|ip| join_host_port(ip, number)));
        }
    }
    list_with_more(list, 3, ",")
}

/// Go's `net.JoinHostPort`: IPv6 addresses get brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The Containers and Images cells of a pod template: names and images joined with `,`.
fn container_cells(object: &Value, pointer: &str) -> (Value, Value) {
    let containers = items(object, pointer);
    let join = |field: &str| {
        containers
            .iter()
            .map(|container| text(container, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    (join("/name").into(), join("/image").into())
}

/// Kubernetes' `labels.FormatLabels`: `k=v` pairs sorted and joined with `,`, or `<none>`.
fn format_labels(object: &Value, pointer: &str) -> String {
    let mut pairs: Vec<String> = labels(object, pointer)
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    // Kubernetes sorts the joined `k=v` strings, not the keys.
    pairs.sort();
    or_none(&pairs.join(","))
}

/// Kubernetes' `metav1.FormatLabelSelector`: the selector in label-query syntax, `<none>` for
/// a missing or empty one, `<error>` for one that is not valid.
fn format_label_selector(selector: Option<&Value>) -> String {
    match label_selector(selector) {
        Ok(query) => or_none(&query),
        Err(InvalidSelector) => "<error>".into(),
    }
}

#[derive(Debug)]
struct InvalidSelector;

/// A `LabelSelector` in label-query syntax (`app=web,tier in (a,b),!legacy`), requirements
/// sorted by key as Kubernetes' selectors keep them. Empty for a missing or empty selector.
fn label_selector(selector: Option<&Value>) -> Result<String, InvalidSelector> {
    let Some(selector) = selector.filter(|selector| !selector.is_null()) else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(&str, String)> = labels(selector, "/matchLabels")
        .map(|(key, value)| (key, format!("{key}={value}")))
        .collect();
    for expression in items(selector, "/matchExpressions") {
        let key = text(expression, "/key");
        let mut values: Vec<&str> = items(expression, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let requirement = match (text(expression, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(InvalidSelector),
        };
        requirements.push((key, requirement));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, requirement)| requirement)
        .collect::<Vec<_>>()
        .join(","))
}

/// Has the object a `deletionTimestamp`, waiting for finalizers or a grace period?
fn being_deleted(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|at| !at.is_null())
}

/// `Terminating` once the object is being deleted, `phase` before.
fn terminating_or<'a>(object: &Value, phase: &'a str) -> &'a str {
    if being_deleted(object) {
        "Terminating"
    } else {
        phase
    }
}

fn first_non_empty<'a>(first: &'a str, second: &'a str) -> &'a str {
    if first.is_empty() { second } else { first }
}

fn or_none(value: &str) -> String {
    first_non_empty(value, "<none>").to_string()
}

fn or_unset(value: &str) -> String {
    first_non_empty(value, "<unset>").to_string()
}

fn or_unknown(value: &str) -> String {
    first_non_empty(value, "<unknown>").to_string()
}

// ---------------------------------------------------------------------------------------------
// Reading JSON: a missing or mistyped field reads as the zero value, as Go's structs do.
// ---------------------------------------------------------------------------------------------

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn integer(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn items<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn entries<'a>(object: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    object.pointer(pointer).and_then(Value::as_object)
}

/// The number of entries of a list or a map.
fn count(object: &Value, pointer: &str) -> i64 {
    let length = match object.pointer(pointer) {
        Some(Value::Array(list)) => list.len(),
        Some(Value::Object(map)) => map.len(),
        _ => 0,
    };
    i64::try_from(length).unwrap_or(i64::MAX)
}

/// The string entries of a map such as `metadata.labels`.
fn labels<'a>(object: &'a Value, pointer: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
    entries(object, pointer)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.as_str(), value.as_str()?)))
}

/// Keys of annotations contain `/`, which a JSON pointer would have to escape.
fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/annotations")?.get(key)?.as_str()
}

/// A time field; absent, null or unparseable reads as no time.
fn timestamp(object: &Value, pointer: &str) -> Option<Timestamp> {
    object.pointer(pointer)?.as_str()?.parse().ok()
}

/// A resource quantity as written (`500m`, `1Gi`); clients may also send plain numbers.
fn quantity(object: &Value, pointer: &str) -> Option<String> {
    quantity_text(object.pointer(pointer)?)
}

fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(quantity) => Some(quantity.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{RESOURCES, find};
    use serde_json::json;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    /// The time `seconds` before `now()`, as the API writes it.
    fn ago(seconds: i64) -> String {
        (now() - SignedDuration::from_secs(seconds))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn resource(group: &str, plural: &str) -> &'static ResourceInfo {
        let version = if group == "autoscaling" { "v2" } else { "v1" };
        find(group, version, plural).unwrap()
    }

    fn row(group: &str, plural: &str, object: Value) -> Vec<Value> {
        cells(resource(group, plural), &object, now())
    }

    /// The cell under the column called `column`.
    fn cell(group: &str, plural: &str, object: Value, column: &str) -> Value {
        let resource = resource(group, plural);
        let index = columns(resource)
            .iter()
            .position(|c| c.name == column)
            .unwrap_or_else(|| panic!("{plural} has no column {column}"));
        cells(resource, &object, now())[index].clone()
    }

    fn names(resource: &ResourceInfo) -> Vec<(&'static str, i32)> {
        columns(resource)
            .iter()
            .map(|c| (c.name, c.priority))
            .collect()
    }

    #[test]
    fn every_resource_has_one_cell_per_column() {
        let objects = [
            json!({}),
            json!({"metadata": {"name": "x", "creationTimestamp": ago(30)}}),
            json!({"metadata": {"name": "x"}, "spec": null, "status": null}),
        ];
        for resource in RESOURCES {
            let columns = columns(resource);
            assert!(!columns.is_empty(), "{} has no columns", resource.kind);
            for object in &objects {
                assert_eq!(
                    cells(resource, object, now()).len(),
                    columns.len(),
                    "{} {}/{}",
                    resource.kind,
                    resource.group,
                    resource.version
                );
            }
        }
    }

    #[test]
    fn every_resource_prints_its_name_in_a_name_column() {
        let object = json!({"metadata": {"name": "x", "creationTimestamp": ago(30)}});
        for resource in RESOURCES {
            let columns = columns(resource);
            let index = columns.iter().position(|c| c.format == "name").unwrap();
            assert_eq!(columns[index].name, "Name", "{}", resource.kind);
            assert_eq!(columns[index].description, NAME_DOC);
            assert_eq!(cells(resource, &object, now())[index], json!("x"));
        }
    }

    #[test]
    fn column_types_and_priorities_are_valid() {
        for resource in RESOURCES {
            for column in columns(resource) {
                assert!(
                    ["string", "integer", "number", "boolean", "date"]
                        .contains(&column.column_type),
                    "{} {}",
                    resource.kind,
                    column.name
                );
                assert!(matches!(column.priority, 0 | 1));
                assert!(!column.description.is_empty());
            }
        }
    }

    #[test]
    fn human_duration_matches_kubernetes_boundaries() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (599, "9m59s"),
            (600, "10m"),
            (10_799, "179m"),
            (10_800, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86_400 - 1, "7d23h"),
            (8 * 86_400, "8d"),
            (45 * 86_400, "45d"),
            (2 * 365 * 86_400 - 1, "729d"),
            (2 * 365 * 86_400, "2y"),
            (3 * 365 * 86_400 + 10 * 86_400, "3y10d"),
            (8 * 365 * 86_400 - 1, "7y364d"),
            (8 * 365 * 86_400, "8y"),
            (20 * 365 * 86_400, "20y"),
        ];
        for &(seconds, expected) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(seconds)),
                expected,
                "{seconds}s"
            );
        }
    }

    #[test]
    fn human_duration_truncates_fractions_toward_zero() {
        assert_eq!(human_duration(SignedDuration::from_millis(1_999)), "1s");
        assert_eq!(human_duration(SignedDuration::from_millis(-1_999)), "0s");
        assert_eq!(
            human_duration(SignedDuration::from_millis(-2_000)),
            "<invalid>"
        );
    }

    #[test]
    fn age_is_unknown_without_a_creation_timestamp() {
        assert_eq!(age(&json!({"metadata": {}}), now()), json!("<unknown>"));
        assert_eq!(
            age(
                &json!({"metadata": {"creationTimestamp": "garbage"}}),
                now()
            ),
            json!("<unknown>")
        );
        assert_eq!(
            age(&json!({"metadata": {"creationTimestamp": ago(182)}}), now()),
            json!("3m2s")
        );
    }

    #[test]
    fn kinds_without_a_printer_show_name_and_created_at() {
        for (group, plural) in [
            ("", "limitranges"),
            ("", "bindings"),
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
        ] {
            let resource = resource(group, plural);
            assert_eq!(
                columns(resource)
                    .iter()
                    .map(|c| (c.name, c.column_type))
                    .collect::<Vec<_>>(),
                [("Name", "string"), ("Created At", "date")]
            );
            let object =
                json!({"metadata": {"name": "r", "creationTimestamp": "2024-03-04T05:06:07Z"}});
            assert_eq!(
                cells(resource, &object, now()),
                [json!("r"), json!("2024-03-04T05:06:07Z")]
            );
        }
    }

    // --- Pods ---------------------------------------------------------------------------------

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(600)},
            "spec": spec,
            "status": status,
        })
    }

    fn running(name: &str, restarts: i64) -> Value {
        json!({
            "name": name, "ready": true, "restartCount": restarts,
            "state": {"running": {"startedAt": ago(60)}},
        })
    }

    fn two_containers() -> Value {
        json!({"containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}]})
    }

    /// (Ready, Status, Restarts) of a pod.
    fn pod_summary(pod: Value) -> (String, String, String) {
        let row = row("", "pods", pod);
        let text = |v: &Value| v.as_str().unwrap().to_string();
        (text(&row[1]), text(&row[2]), text(&row[3]))
    }

    #[test]
    fn pod_columns_match_kubernetes() {
        assert_eq!(
            names(resource("", "pods")),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1),
            ]
        );
    }

    #[test]
    fn running_pod_prints_every_column() {
        let pod = pod(
            json!({"nodeName": "n1", "containers": [{"name": "app"}]}),
            json!({
                "phase": "Running",
                "podIP": "10.0.0.5",
                "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [running("app", 0)],
            }),
        );
        assert_eq!(
            row("", "pods", pod),
            [
                json!("web"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("10m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn pod_with_crashing_container_shows_crashloopbackoff_and_restart_age() {
        let pod = pod(
            two_containers(),
            json!({
                "phase": "Running",
                "containerStatuses": [
                    running("app", 0),
                    {
                        "name": "log", "ready": false, "restartCount": 2,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}},
                    },
                ],
            }),
        );
        assert_eq!(
            pod_summary(pod),
            ("1/2".into(), "CrashLoopBackOff".into(), "2 (5m ago)".into())
        );
    }

    #[test]
    fn pod_status_follows_kubernetes_rules() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "phase when nothing more is known",
                pod(two_containers(), json!({"phase": "Pending"})),
                "Pending",
            ),
            (
                "status reason over phase",
                pod(
                    two_containers(),
                    json!({"phase": "Failed", "reason": "Evicted"}),
                ),
                "Evicted",
            ),
            (
                "scheduling gates",
                pod(
                    two_containers(),
                    json!({"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
                    ]}),
                ),
                "SchedulingGated",
            ),
            (
                "waiting reason",
                pod(
                    two_containers(),
                    json!({"phase": "Pending", "containerStatuses": [
                        {"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}
                    ]}),
                ),
                "ContainerCreating",
            ),
            (
                "terminated reason",
                pod(
                    two_containers(),
                    json!({"phase": "Failed", "containerStatuses": [
                        {"name": "app", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
                    ]}),
                ),
                "OOMKilled",
            ),
            (
                "signal when terminated without reason",
                pod(
                    two_containers(),
                    json!({"phase": "Failed", "containerStatuses": [
                        {"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}
                    ]}),
                ),
                "Signal:9",
            ),
            (
                "exit code when terminated without reason or signal",
                pod(
                    two_containers(),
                    json!({"phase": "Failed", "containerStatuses": [
                        {"name": "app", "state": {"terminated": {"exitCode": 3}}}
                    ]}),
                ),
                "ExitCode:3",
            ),
            (
                "first container wins",
                pod(
                    two_containers(),
                    json!({"phase": "Pending", "containerStatuses": [
                        {"name": "app", "state": {"waiting": {"reason": "ErrImagePull"}}},
                        {"name": "log", "state": {"waiting": {"reason": "ContainerCreating"}}},
                    ]}),
                ),
                "ErrImagePull",
            ),
            (
                "completed",
                pod(
                    json!({"containers": [{"name": "app"}]}),
                    json!({"phase": "Succeeded", "containerStatuses": [
                        {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                    ]}),
                ),
                "Completed",
            ),
            (
                "completed container next to a running one, pod ready",
                pod(
                    two_containers(),
                    json!({
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [
                            {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                            running("log", 0),
                        ],
                    }),
                ),
                "Running",
            ),
            (
                "completed container next to a running one, pod not ready",
                pod(
                    two_containers(),
                    json!({
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "False"}],
                        "containerStatuses": [
                            {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                            running("log", 0),
                        ],
                    }),
                ),
                "NotReady",
            ),
        ];
        for (case, pod, expected) in cases {
            assert_eq!(pod_summary(pod).1, expected, "{case}");
        }
    }

    #[test]
    fn deleted_pod_is_terminating_unless_finished_or_node_lost() {
        let deleting = |status: Value| {
            let mut pod = pod(two_containers(), status);
            pod["metadata"]["deletionTimestamp"] = json!(ago(5));
            pod
        };
        let cases = [
            (
                json!({"phase": "Running", "containerStatuses": [running("app", 0)]}),
                "Terminating",
            ),
            (json!({"phase": "Running", "reason": "NodeLost"}), "Unknown"),
            (json!({"phase": "Succeeded"}), "Succeeded"),
            (json!({"phase": "Failed"}), "Failed"),
        ];
        for (status, expected) in cases {
            assert_eq!(
                pod_summary(deleting(status.clone())).1,
                expected,
                "{status}"
            );
        }
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let spec = json!({
            "initContainers": [{"name": "migrate"}, {"name": "seed"}],
            "containers": [{"name": "app"}],
        });
        let done = json!({"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "first init container running",
                json!([{"name": "migrate", "state": {"running": {}}}, {"name": "seed", "state": {"waiting": {"reason": "PodInitializing"}}}]),
                "Init:0/2",
            ),
            (
                "second init container running",
                json!([done, {"name": "seed", "state": {"running": {}}}]),
                "Init:1/2",
            ),
            (
                "init container crashing",
                json!([done, {"name": "seed", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
                "Init:CrashLoopBackOff",
            ),
            (
                "init container failed with a reason",
                json!([{"name": "migrate", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
                "Init:Error",
            ),
            (
                "init container failed with an exit code only",
                json!([{"name": "migrate", "state": {"terminated": {"exitCode": 2}}}]),
                "Init:ExitCode:2",
            ),
            (
                "init container killed by a signal",
                json!([{"name": "migrate", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]),
                "Init:Signal:9",
            ),
        ];
        for (case, init_statuses, expected) in cases {
            let pod = pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": init_statuses}),
            );
            assert_eq!(pod_summary(pod).1, expected, "{case}");
        }
    }

    #[test]
    fn initializing_pod_counts_init_container_restarts() {
        let pod = pod(
            json!({"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [{
                "name": "migrate", "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
            }]}),
        );
        assert_eq!(
            pod_summary(pod),
            (
                "0/1".into(),
                "Init:CrashLoopBackOff".into(),
                "3 (30s ago)".into()
            )
        );
    }

    #[test]
    fn started_sidecar_counts_as_a_ready_container() {
        let pod = pod(
            json!({
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}],
            }),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{
                    "name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3600)}},
                }],
                "containerStatuses": [running("app", 0)],
            }),
        );
        assert_eq!(
            pod_summary(pod),
            ("2/2".into(), "Running".into(), "1 (60m ago)".into())
        );
    }

    #[test]
    fn restart_age_comes_from_the_latest_termination() {
        let restarted = |name: &str, count: i64, finished: i64| {
            json!({
                "name": name, "ready": true, "restartCount": count,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(finished)}},
            })
        };
        let pod = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": [
                restarted("app", 4, 7200), restarted("log", 1, 90),
            ]}),
        );
        assert_eq!(pod_summary(pod).2, "5 (90s ago)");
        // Restarts without a recorded termination print as a bare count.
        let pod = pod_with_restarts_only();
        assert_eq!(pod_summary(pod).2, "2");
    }

    fn pod_with_restarts_only() -> Value {
        pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Running", "containerStatuses": [running("app", 2)]}),
        )
    }

    #[test]
    fn readiness_gates_count_true_conditions() {
        let pod = pod(
            json!({
                "containers": [{"name": "app"}],
                "readinessGates": [{"conditionType": "lb/ready"}, {"conditionType": "dns/ready"}],
            }),
            json!({"phase": "Running", "conditions": [
                {"type": "lb/ready", "status": "True"},
                {"type": "dns/ready", "status": "False"},
            ]}),
        );
        assert_eq!(cell("", "pods", pod, "Readiness Gates"), json!("1/2"));
    }

    #[test]
    fn pod_ip_falls_back_to_pod_ip_field() {
        let pod = pod(two_containers(), json!({"podIP": "10.1.2.3"}));
        assert_eq!(cell("", "pods", pod, "IP"), json!("10.1.2.3"));
    }

    // --- Workloads ----------------------------------------------------------------------------

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(3 * 86_400 + 4 * 3600)},
            "spec": {
                "replicas": 3,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}],
                },
                "template": {"spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27"},
                    {"name": "sidecar", "image": "envoy:1.30"},
                ]}},
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        })
    }

    #[test]
    fn deployment_prints_ready_of_desired_and_wide_columns() {
        let deployments = resource("apps", "deployments");
        assert_eq!(
            names(deployments),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1),
            ]
        );
        assert_eq!(
            cells(deployments, &deployment(), now()),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("3d4h"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,envoy:1.30"),
                json!("app=web,tier in (edge,front)"),
            ]
        );
    }

    #[test]
    fn deployment_without_status_reads_zero_of_default_replicas() {
        let object = json!({"metadata": {"name": "web"}, "spec": {"selector": {}}});
        let row = row("apps", "deployments", object);
        assert_eq!(row[1], json!("0/1"));
        assert_eq!(row[2], json!(0));
        assert_eq!(
            row[7],
            json!(""),
            "deployments print an empty selector bare"
        );
    }

    #[test]
    fn replica_set_daemon_set_and_stateful_set_rows() {
        let mut replica_set = deployment();
        replica_set["status"] = json!({"replicas": 3, "readyReplicas": 1});
        assert_eq!(
            row("apps", "replicasets", replica_set)[..4],
            [json!("web"), json!(3), json!(3), json!(1)]
        );

        let daemon_set = json!({
            "metadata": {"name": "agent"},
            "spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 4, "currentNumberScheduled": 4, "numberReady": 3,
                       "updatedNumberScheduled": 4, "numberAvailable": 3},
        });
        assert_eq!(
            row("apps", "daemonsets", daemon_set)[..7],
            [
                json!("agent"),
                json!(4),
                json!(4),
                json!(3),
                json!(4),
                json!(3),
                json!("os=linux")
            ]
        );

        let stateful_set = json!({"metadata": {"name": "db"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 1}});
        assert_eq!(row("apps", "statefulsets", stateful_set)[1], json!("1/2"));
    }

    #[test]
    fn pod_disruption_budgets_print_n_a_for_the_unset_bound() {
        let names: Vec<&str> = columns(resource("policy", "poddisruptionbudgets"))
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        let budget = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2},
                            "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            row("policy", "poddisruptionbudgets", budget)[..4],
            [json!("web"), json!("2"), json!("N/A"), json!(1)]
        );
        let budget = json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            row("policy", "poddisruptionbudgets", budget)[..4],
            [json!("db"), json!("N/A"), json!("25%"), json!(0)]
        );
    }

    #[test]
    fn priority_classes_print_value_default_and_preemption_policy() {
        let names: Vec<&str> = columns(resource("scheduling.k8s.io", "priorityclasses"))
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
        let class = json!({"metadata": {"name": "high"}, "value": 1000, "globalDefault": true,
                           "preemptionPolicy": "Never"});
        let cells = row("scheduling.k8s.io", "priorityclasses", class);
        assert_eq!(cells[..3], [json!("high"), json!(1000), json!(true)]);
        assert_eq!(cells[4], json!("Never"));
    }

    #[test]
    fn controller_revision_names_its_controller_with_group() {
        let revision = json!({
            "metadata": {"name": "web-7d9", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}
            ]},
            "revision": 3,
        });
        assert_eq!(
            row("apps", "controllerrevisions", revision)[1..3],
            [json!("statefulset.apps/web"), json!(3)]
        );
    }

    #[test]
    fn job_status_completions_and_duration() {
        let job = |spec: Value, status: Value| json!({"metadata": {"name": "pi", "creationTimestamp": ago(600)}, "spec": spec, "status": status});
        let cases: Vec<(&str, Value, [&str; 3])> = vec![
            (
                "running with completions",
                job(
                    json!({"completions": 3}),
                    json!({"succeeded": 1, "startTime": ago(90)}),
                ),
                ["Running", "1/3", "90s"],
            ),
            (
                "complete",
                job(
                    json!({"completions": 1}),
                    json!({"succeeded": 1, "startTime": ago(600), "completionTime": ago(420),
                           "conditions": [{"type": "Complete", "status": "True"}]}),
                ),
                ["Complete", "1/1", "3m"],
            ),
            (
                "failed",
                job(
                    json!({}),
                    json!({"conditions": [{"type": "Failed", "status": "True"}]}),
                ),
                ["Failed", "0/1", ""],
            ),
            (
                "parallel work queue",
                job(json!({"parallelism": 4}), json!({"succeeded": 2})),
                ["Running", "2/1 of 4", ""],
            ),
            (
                "suspended",
                job(
                    json!({}),
                    json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                ),
                ["Suspended", "0/1", ""],
            ),
            (
                "failure target",
                job(
                    json!({}),
                    json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}),
                ),
                ["FailureTarget", "0/1", ""],
            ),
        ];
        for (case, job, expected) in cases {
            let row = row("batch", "jobs", job);
            assert_eq!(
                [&row[1], &row[2], &row[3]],
                expected.map(|s| json!(s)).each_ref(),
                "{case}"
            );
        }
    }

    #[test]
    fn cron_job_row() {
        let cron_job = json!({
            "metadata": {"name": "backup", "creationTimestamp": ago(86_400)},
            "spec": {"schedule": "0 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "backup", "image": "restic"}]}}}}},
            "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(120)},
        });
        assert_eq!(
            row("batch", "cronjobs", cron_job),
            [
                json!("backup"),
                json!("0 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("2m"),
                json!("24h"),
                json!("backup"),
                json!("restic"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn autoscaler_targets_for_v2_metrics_and_v1_cpu() {
        let v2 = json!({
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                ],
            },
            "status": {"currentReplicas": 3, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "200m"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "250"}}},
            ]},
        });
        assert_eq!(
            row("autoscaling", "horizontalpodautoscalers", v2)[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 40%/80%, 250/1k + 1 more..."),
                json!("2"),
                json!(10),
                json!(3),
            ]
        );

        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let object = json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                     "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1},
        });
        assert_eq!(
            cells(v1, &object, now())[2..4],
            [json!("cpu: <unknown>/50%"), json!("<unset>")]
        );
        let object = json!({"metadata": {"name": "web"}, "spec": {}});
        assert_eq!(cells(v1, &object, now())[2], json!("<none>"));
    }

    // --- Services and networking --------------------------------------------------------------

    fn service(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": ago(45 * 86_400)}, "spec": spec, "status": status})
    }

    #[test]
    fn service_columns_and_cells_per_type() {
        assert_eq!(
            names(resource("", "services")),
            [
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1),
            ]
        );
        let cases: Vec<(&str, Value, [&str; 4])> = vec![
            (
                "cluster IP",
                service(
                    json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                           "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}),
                    json!({}),
                ),
                ["ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP"],
            ),
            (
                "node port with external IPs",
                service(
                    json!({"type": "NodePort", "clusterIPs": ["10.96.0.11"], "externalIPs": ["1.2.3.4"],
                           "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
                    json!({}),
                ),
                ["NodePort", "10.96.0.11", "1.2.3.4", "80:30080/TCP"],
            ),
            (
                "load balancer still pending",
                service(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 443, "nodePort": 31443}]}),
                    json!({}),
                ),
                ["LoadBalancer", "10.96.0.12", "<pending>", "443:31443/TCP"],
            ),
            (
                "load balancer with addresses",
                service(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "externalIPs": ["9.9.9.9"]}),
                    json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}, {"ip": "5.6.7.8"}]}}),
                ),
                [
                    "LoadBalancer",
                    "10.96.0.12",
                    "5.6.7.8,lb.example.com,9.9.9.9",
                    "<none>",
                ],
            ),
            (
                "external name",
                service(
                    json!({"type": "ExternalName", "externalName": "db.example.com"}),
                    json!({}),
                ),
                ["ExternalName", "<none>", "db.example.com", "<none>"],
            ),
            (
                "headless",
                service(
                    json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
                    json!({}),
                ),
                ["ClusterIP", "None", "<none>", "<none>"],
            ),
        ];
        for (case, service, expected) in cases {
            let row = row("", "services", service);
            assert_eq!(
                [&row[1], &row[2], &row[3], &row[4]],
                expected.map(|s| json!(s)).each_ref(),
                "{case}"
            );
            assert_eq!(row[5], json!("45d"));
        }
    }

    #[test]
    fn service_selector_is_sorted_and_none_when_empty() {
        let selected = service(
            json!({"selector": {"tier": "front", "app": "web"}}),
            json!({}),
        );
        assert_eq!(
            cell("", "services", selected, "Selector"),
            json!("app=web,tier=front")
        );
        let unselected = service(json!({}), json!({}));
        assert_eq!(
            cell("", "services", unselected, "Selector"),
            json!("<none>")
        );
    }

    #[test]
    fn endpoints_list_three_addresses_and_count_the_rest() {
        let endpoints = json!({
            "metadata": {"name": "web"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
                {"addresses": [{"ip": "fd00::1"}]},
            ],
        });
        assert_eq!(
            row("", "endpoints", endpoints)[1],
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...")
        );
        assert_eq!(
            format_endpoints(
                &json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]})
            ),
            "[fd00::1]:53"
        );
        assert_eq!(format_endpoints(&json!({})), "<none>");
    }

    #[test]
    fn endpoint_slice_ports_and_endpoints() {
        let slice = json!({
            "metadata": {"name": "web-abc"},
            "addressType": "IPv4",
            "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}],
        });
        assert_eq!(
            row("discovery.k8s.io", "endpointslices", slice)[1..4],
            [
                json!("IPv4"),
                json!("80,metrics,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv4"});
        assert_eq!(
            row("discovery.k8s.io", "endpointslices", empty)[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn ingress_hosts_address_and_ports() {
        let ingress = json!({
            "metadata": {"name": "web"},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}],
                "tls": [{"hosts": ["a.example"]}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}},
        });
        assert_eq!(
            row("networking.k8s.io", "ingresses", ingress)[1..5],
            [
                json!("nginx"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("5.6.7.8"),
                json!("80, 443")
            ]
        );
        let bare = json!({"metadata": {"name": "web"}, "spec": {"rules": [{}]}});
        assert_eq!(
            row("networking.k8s.io", "ingresses", bare)[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn ingress_class_parameters_name_kind_group_and_name() {
        let class = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            row("networking.k8s.io", "ingressclasses", class)[1..3],
            [
                json!("k8s.io/ingress-nginx"),
                json!("IngressParameters.k8s.example.com/external-lb")
            ]
        );
    }

    #[test]
    fn label_selectors_print_in_query_syntax() {
        let cases = [
            (json!(null), "<none>"),
            (json!({}), "<none>"),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (
                json!({"matchExpressions": [
                    {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "app", "operator": "Exists"},
                ]}),
                "app,!canary,env notin (dev,prod)",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "<error>",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Near", "values": ["x"]}]}),
                "<error>",
            ),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                format_label_selector(Some(&selector)),
                expected,
                "{selector}"
            );
        }
        let policy = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(
            row("networking.k8s.io", "networkpolicies", policy)[1],
            json!("<none>")
        );
    }

    // --- Nodes, events, storage, config, access -----------------------------------------------

    #[test]
    fn node_prints_status_roles_and_system_info() {
        assert_eq!(
            names(resource("", "nodes")),
            [
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1),
            ]
        );
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": ago(10 * 86_400), "labels": {
                "node-role.kubernetes.io/worker": "",
                "node-role.kubernetes.io/control-plane": "",
                "kubernetes.io/role": "worker",
                "node-role.kubernetes.io/": "",
            }},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"},
            },
        });
        assert_eq!(
            row("", "nodes", node),
            [
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,worker"),
                json!("10d"),
                json!("v1.33.1"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0"),
                json!("containerd://1.7.0"),
            ]
        );
    }

    #[test]
    fn node_without_ready_condition_is_unknown() {
        let node = json!({"metadata": {"name": "n2"}, "status": {"conditions": []}});
        let row = row("", "nodes", node);
        assert_eq!(row[1..3], [json!("Unknown"), json!("<none>")]);
        assert_eq!(
            row[7..10],
            [json!("<unknown>"), json!("<unknown>"), json!("<unknown>")]
        );
        let not_ready = json!({"metadata": {"name": "n3"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cell("", "nodes", not_ready, "Status"), json!("NotReady"));
    }

    #[test]
    fn event_columns_and_cells() {
        assert_eq!(
            names(resource("", "events")),
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1),
            ]
        );
        let event = json!({
            "metadata": {"name": "web.17f"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "type": "Warning", "reason": "BackOff", "message": " Back-off restarting failed container \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(3600), "lastTimestamp": ago(30), "count": 12,
        });
        assert_eq!(
            row("", "events", event),
            [
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("Back-off restarting failed container"),
                json!("60m"),
                json!(12),
                json!("web.17f"),
            ]
        );
    }

    #[test]
    fn new_style_event_uses_event_time_series_and_reporting_controller() {
        let singleton = json!({
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Node"},
            "eventTime": "2025-06-01T11:59:00.123456Z",
            "reportingComponent": "scheduler",
        });
        let row = row("", "events", singleton);
        assert_eq!(
            [&row[0], &row[3], &row[5], &row[7], &row[8]],
            [
                &json!("59s"),
                &json!("node"),
                &json!("scheduler"),
                &json!("59s"),
                &json!(1)
            ]
        );
        let series = json!({
            "metadata": {"name": "e2"},
            "eventTime": ago(600),
            "series": {"count": 7, "lastObservedTime": "2025-06-01T11:58:00.000001Z"},
        });
        let row = cells(resource("", "events"), &series, now());
        assert_eq!(
            [&row[0], &row[7], &row[8]],
            [&json!("119s"), &json!("10m"), &json!(7)]
        );
    }

    #[test]
    fn persistent_volume_and_claim_rows() {
        let volume = json!({
            "metadata": {"name": "pv1", "creationTimestamp": ago(60)},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
                     "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"},
        });
        assert_eq!(
            row("", "persistentvolumes", volume),
            [
                json!("pv1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("fast"),
                json!("<unset>"),
                json!(""),
                json!("60s"),
                json!("Filesystem"),
            ]
        );
        let pending = json!({"metadata": {"name": "data", "deletionTimestamp": ago(1)},
            "spec": {"storageClassName": "fast"}, "status": {"phase": "Pending"}});
        assert_eq!(
            row("", "persistentvolumeclaims", pending)[1..6],
            [
                json!("Terminating"),
                json!(""),
                json!(""),
                json!(""),
                json!("fast")
            ]
        );
        let bound = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1"},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            row("", "persistentvolumeclaims", bound)[1..5],
            [json!("Bound"), json!("pv1"), json!("10Gi"), json!("RWO")]
        );
    }

    #[test]
    fn config_map_secret_namespace_and_service_account_counts() {
        let config_map = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(row("", "configmaps", config_map)[1], json!(3));
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}});
        assert_eq!(
            row("", "secrets", secret)[1..3],
            [json!("Opaque"), json!(1)]
        );
        let namespace = json!({"metadata": {"name": "dev"}, "status": {"phase": "Active"}});
        assert_eq!(row("", "namespaces", namespace)[1], json!("Active"));
        let account = json!({"metadata": {"name": "default"}});
        assert_eq!(row("", "serviceaccounts", account)[1], json!(0));
    }

    #[test]
    fn resource_quota_splits_requests_and_limits() {
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"limits.cpu": "4", "pods": "10", "requests.cpu": "2", "limits.memory": "8Gi"},
            "used": {"limits.cpu": "1", "pods": "3"},
        }});
        assert_eq!(
            row("", "resourcequotas", quota)[1..3],
            [
                json!("pods: 3/10, requests.cpu: 0/2"),
                json!("limits.cpu: 1/4, limits.memory: 0/8Gi")
            ]
        );
    }

    #[test]
    fn pod_template_lists_containers_and_labels() {
        let template = json!({"metadata": {"name": "t"}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
        }});
        assert_eq!(
            row("", "podtemplates", template),
            [json!("t"), json!("a,b"), json!("x,y"), json!("app=web")]
        );
    }

    #[test]
    fn role_binding_lists_subjects_by_kind() {
        let binding = json!({
            "metadata": {"name": "admins"},
            "roleRef": {"kind": "ClusterRole", "name": "admin"},
            "subjects": [
                {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                {"kind": "Group", "name": "ops"},
                {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"},
            ],
        });
        let row = row("rbac.authorization.k8s.io", "rolebindings", binding.clone());
        assert_eq!(
            [&row[1], &row[3], &row[4], &row[5]],
            [
                &json!("ClusterRole/admin"),
                &json!("alice, bob"),
                &json!("ops"),
                &json!("ci/deployer")
            ]
        );
        assert_eq!(
            row.len(),
            cells(
                resource("rbac.authorization.k8s.io", "clusterrolebindings"),
                &binding,
                now()
            )
            .len()
        );
    }

    #[test]
    fn storage_class_marks_the_default_and_fills_defaults() {
        let class = json!({
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
        });
        assert_eq!(
            row("storage.k8s.io", "storageclasses", class)[..5],
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
    }

    #[test]
    fn lease_prints_its_holder() {
        let lease =
            json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "n1_abc"}});
        assert_eq!(
            row("coordination.k8s.io", "leases", lease)[1],
            json!("n1_abc")
        );
    }
}
