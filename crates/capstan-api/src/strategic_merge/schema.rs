//! Patch metadata of the built-in kinds, transcribed from the `patchStrategy` and
//! `patchMergeKey` struct tags of Kubernetes 1.33 (`k8s.io/api/*/v1/types.go` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/types.go`).
//!
//! Only what changes the result of a patch is listed: the fields with a strategy, and the
//! object fields that lead to them. A field that is not listed behaves like an untagged Go
//! field: objects merge key by key and lists are replaced whole. That is also why the tables
//! are per type and not per kind: `ports` merges by `containerPort` inside a Container and by
//! `port` inside a ServiceSpec, and a PodSpec sits at a different path in a Pod, a Deployment
//! and a CronJob.
//!
//! The `retainKeys` strategy (Deployment `spec.strategy`, PodSpec `volumes` and
//! `resourceClaims`) does not change how a patch applies: it only tells clients to send a
//! `$retainKeys` directive, and applying that directive needs no schema. It is recorded for the
//! OpenAPI documents, from which kubectl learns to send the directive.

/// How a field of an API type merges, from its `patchStrategy` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: objects merge key by key, lists are replaced whole.
    Default,
    /// `patchStrategy:"replace"`: the patch value replaces the field, objects included.
    Replace,
    /// `patchStrategy:"merge"`: list elements merge by `merge_key`; an empty key means a list
    /// of primitives merged as a set (e.g. `finalizers`).
    Merge { merge_key: &'static str },
}

/// One JSON field of an API type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    pub strategy: Strategy,
    /// The type of the field's value, or of its elements for a list; `None` when nothing
    /// inside it has a strategy.
    pub schema: Option<&'static Schema>,
    /// `retainKeys` is part of the field's `patchStrategy` (see the module comment). Only the
    /// published OpenAPI schemas read it (the `schemars` feature); applying patches needs none.
    #[cfg_attr(not(feature = "schemars"), allow(dead_code))]
    pub retain_keys: bool,
}

/// The fields of one API type (a Go struct) that matter to strategic merge patch.
#[derive(Debug)]
pub(crate) struct Schema {
    pub fields: &'static [Field],
}

/// What a patch needs to know about one field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldMeta {
    pub strategy: Strategy,
    pub schema: Option<&'static Schema>,
}

impl FieldMeta {
    /// An untagged field of a type with no tagged fields inside.
    pub const DEFAULT: FieldMeta = FieldMeta {
        strategy: Strategy::Default,
        schema: None,
    };

    /// The merge key of a merging list (empty for a list of primitives), `None` otherwise.
    pub fn merge_key(&self) -> Option<&'static str> {
        match self.strategy {
            Strategy::Merge { merge_key } => Some(merge_key),
            _ => None,
        }
    }
}

/// The metadata of `name` inside a value of type `schema` (`None`: untyped).
pub(crate) fn field(schema: Option<&'static Schema>, name: &str) -> FieldMeta {
    schema
        .and_then(|s| s.fields.iter().find(|f| f.name == name))
        .map_or(FieldMeta::DEFAULT, |f| FieldMeta {
            strategy: f.strategy,
            schema: f.schema,
        })
}

/// The type of a whole object of `kind`. Kinds without tagged fields beyond ObjectMeta
/// (ConfigMap, Role, Ingress, EndpointSlice, NetworkPolicy, …) share [`OBJECT`].
pub(crate) fn for_kind(kind: &str) -> &'static Schema {
    match kind {
        "Pod" => &POD,
        "PodTemplate" => &POD_TEMPLATE,
        "Deployment"
        | "DaemonSet"
        | "StatefulSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &WORKLOAD,
        "CronJob" => &CRON_JOB,
        "Service" => &SERVICE,
        "Node" => &NODE,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "ComponentStatus" => &COMPONENT_STATUS,
        "PodDisruptionBudget" => &POD_DISRUPTION_BUDGET,
        "CSINode" => &CSI_NODE,
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => &WEBHOOK_CONFIGURATION,
        "ValidatingAdmissionPolicy" => &VALIDATING_ADMISSION_POLICY,
        "Namespace"
        | "PersistentVolumeClaim"
        | "HorizontalPodAutoscaler"
        | "FlowSchema"
        | "PriorityLevelConfiguration"
        | "ServiceCIDR" => &WITH_STATUS_CONDITIONS,
        _ => &OBJECT,
    }
}

const fn object(name: &'static str, schema: &'static Schema) -> Field {
    Field {
        name,
        strategy: Strategy::Default,
        schema: Some(schema),
        retain_keys: false,
    }
}

const fn merged_by(name: &'static str, merge_key: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Merge { merge_key },
        schema: None,
        retain_keys: false,
    }
}

const fn merged_by_with(
    name: &'static str,
    merge_key: &'static str,
    elements: &'static Schema,
) -> Field {
    Field {
        name,
        strategy: Strategy::Merge { merge_key },
        schema: Some(elements),
        retain_keys: false,
    }
}

const fn merged_set(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Merge { merge_key: "" },
        schema: None,
        retain_keys: false,
    }
}

const fn replaced(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Replace,
        schema: None,
        retain_keys: false,
    }
}

/// `patchStrategy:"retainKeys"` on an object field.
const fn retained(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::Default,
        schema: None,
        retain_keys: true,
    }
}

/// `patchStrategy:"merge,retainKeys"` on a list merged by `merge_key`.
const fn merged_by_retaining(name: &'static str, merge_key: &'static str) -> Field {
    Field {
        retain_keys: true,
        ..merged_by(name, merge_key)
    }
}

// meta/v1

static OBJECT_META: Schema = Schema {
    fields: &[
        merged_by("ownerReferences", "uid"),
        merged_set("finalizers"),
    ],
};

/// Any object: only its metadata has tagged fields.
static OBJECT: Schema = Schema {
    fields: &[object("metadata", &OBJECT_META)],
};

/// `status.conditions` merged by `type`: the status of most kinds that have conditions.
static STATUS_CONDITIONS: Schema = Schema {
    fields: &[merged_by("conditions", "type")],
};

static WITH_STATUS_CONDITIONS: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("status", &STATUS_CONDITIONS),
    ],
};

// core/v1 pods

/// Container and EphemeralContainer (whose EphemeralContainerCommon has the same tags).
static CONTAINER: Schema = Schema {
    fields: &[
        merged_by("ports", "containerPort"),
        merged_by("env", "name"),
        merged_by("volumeMounts", "mountPath"),
        merged_by("volumeDevices", "devicePath"),
    ],
};

static POD_SPEC: Schema = Schema {
    fields: &[
        merged_by_retaining("volumes", "name"),
        merged_by_with("initContainers", "name", &CONTAINER),
        merged_by_with("containers", "name", &CONTAINER),
        merged_by_with("ephemeralContainers", "name", &CONTAINER),
        merged_by("imagePullSecrets", "name"),
        merged_by("hostAliases", "ip"),
        merged_by("topologySpreadConstraints", "topologyKey"),
        merged_by("schedulingGates", "name"),
        merged_by_retaining("resourceClaims", "name"),
    ],
};

/// `containerStatuses` has no tag, so the tagged fields of ContainerStatus are never reached.
static POD_STATUS: Schema = Schema {
    fields: &[
        merged_by("conditions", "type"),
        merged_by("hostIPs", "ip"),
        merged_by("podIPs", "ip"),
        merged_by("resourceClaimStatuses", "name"),
    ],
};

static POD: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &POD_SPEC),
        object("status", &POD_STATUS),
    ],
};

static POD_TEMPLATE_SPEC: Schema = Schema {
    fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC)],
};

static POD_TEMPLATE: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("template", &POD_TEMPLATE_SPEC),
    ],
};

// Workloads: apps/v1, batch/v1, core/v1 ReplicationController

/// The spec of every workload that owns a pod template at `spec.template`; `strategy` is
/// DeploymentSpec's (the other specs have no field of that name).
static SPEC_WITH_POD_TEMPLATE: Schema = Schema {
    fields: &[object("template", &POD_TEMPLATE_SPEC), retained("strategy")],
};

/// Deployment, DaemonSet, StatefulSet, ReplicaSet, ReplicationController and Job: a pod
/// template in the spec, conditions merged by `type` in the status.
static WORKLOAD: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &SPEC_WITH_POD_TEMPLATE),
        object("status", &STATUS_CONDITIONS),
    ],
};

static JOB_TEMPLATE_SPEC: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &SPEC_WITH_POD_TEMPLATE),
    ],
};

static CRON_JOB_SPEC: Schema = Schema {
    fields: &[object("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

static CRON_JOB: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &CRON_JOB_SPEC),
    ],
};

// Other core/v1 kinds

static SERVICE_SPEC: Schema = Schema {
    fields: &[merged_by("ports", "port")],
};

static SERVICE: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &SERVICE_SPEC),
        object("status", &STATUS_CONDITIONS),
    ],
};

static NODE_SPEC: Schema = Schema {
    fields: &[merged_set("podCIDRs")],
};

static NODE_STATUS: Schema = Schema {
    fields: &[
        merged_by("conditions", "type"),
        merged_by("addresses", "type"),
    ],
};

static NODE: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &NODE_SPEC),
        object("status", &NODE_STATUS),
    ],
};

static SERVICE_ACCOUNT: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        merged_by("secrets", "name"),
    ],
};

static COMPONENT_STATUS: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        merged_by("conditions", "type"),
    ],
};

// policy/v1, storage/v1, admissionregistration/v1

static POD_DISRUPTION_BUDGET_SPEC: Schema = Schema {
    fields: &[replaced("selector")],
};

static POD_DISRUPTION_BUDGET: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &POD_DISRUPTION_BUDGET_SPEC),
        object("status", &STATUS_CONDITIONS),
    ],
};

static CSI_NODE_SPEC: Schema = Schema {
    fields: &[merged_by("drivers", "name")],
};

static CSI_NODE: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &CSI_NODE_SPEC),
    ],
};

static WEBHOOK: Schema = Schema {
    fields: &[merged_by("matchConditions", "name")],
};

static WEBHOOK_CONFIGURATION: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        merged_by_with("webhooks", "name", &WEBHOOK),
    ],
};

static VALIDATING_ADMISSION_POLICY_SPEC: Schema = Schema {
    fields: &[
        merged_by("matchConditions", "name"),
        merged_by("variables", "name"),
    ],
};

static VALIDATING_ADMISSION_POLICY: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &VALIDATING_ADMISSION_POLICY_SPEC),
    ],
};
