//! Defaulting: the fields Kubernetes fills in when a client leaves them out.
//!
//! This gathers what Kubernetes spreads over three places, so that objects read back exactly as
//! from a Kubernetes 1.33 API server: the versioned `SetDefaults_*` functions
//! (`pkg/apis/*/v1/defaults.go`), the registry strategies' `PrepareForCreate` (Pod and Namespace
//! status, Namespace finalizers, Service cluster IP fields). The admission plugins that need
//! other objects or server flags (`Priority`, `DefaultTolerationSeconds`) are in
//! [`crate::admission`].
//!
//! Every rule only fills a field that is missing (or null), so defaulting is idempotent and
//! never overrides what a client sent. Values the API server allocates itself (uid, cluster
//! IPs, node ports, a Job's generated selector) are not set here.

use crate::resource::ResourceInfo;
use crate::validation::quantity::Quantity;
use serde_json::{Map, Value, json};

/// Fills in the defaults of `object` in place. Idempotent: defaulting twice changes nothing.
pub fn apply_defaults(resource: &ResourceInfo, object: &mut Value) {
    if !object.is_object() {
        return;
    }
    match resource.kind {
        "Pod" => default_pod(object),
        "PodTemplate" => default_pod_template(field(object, "template")),
        "Deployment" => default_deployment(object),
        "ReplicaSet" => default_replica_set(object),
        "StatefulSet" => default_stateful_set(object),
        "DaemonSet" => default_daemon_set(object),
        "Job" => default_job(object),
        "CronJob" => default_cron_job(object),
        "Service" => default_service(object),
        "Endpoints" => default_endpoints(object),
        "EndpointSlice" => default_endpoint_slice(object),
        "Namespace" => default_namespace(object),
        "Node" => default_node(object),
        "Secret" => default_secret(object),
        "PersistentVolumeClaim" => default_persistent_volume_claim(object),
        "PersistentVolume" => default_persistent_volume(object),
        "StorageClass" => {
            set_default(object, "reclaimPolicy", json!("Delete"));
            set_default(object, "volumeBindingMode", json!("Immediate"));
        }
        "NetworkPolicy" => default_network_policy(object),
        "RoleBinding" | "ClusterRoleBinding" => default_subjects(object),
        "HorizontalPodAutoscaler" => default_horizontal_pod_autoscaler(resource, object),
        "PriorityClass" => set_default(object, "preemptionPolicy", json!("PreemptLowerPriority")),
        // PrepareForCreate resets the status, which then reads as its Go zero value.
        "PodDisruptionBudget" => set_default(
            object,
            "status",
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
        ),
        _ => {}
    }
}

// Helpers over JSON. `field` makes the path exist (as an object), so they are only used on
// objects whose parent is known to be present or whose defaults Kubernetes always writes.

/// The object under `key`, created empty when missing or null.
fn field<'a>(object: &'a mut Value, key: &str) -> &'a mut Value {
    let map = as_map(object);
    let entry = map.entry(key.to_string()).or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    entry
}

fn as_map(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    object.as_object_mut().expect("made an object above")
}

/// Sets `key` to `value` unless it already has a non-null value.
fn set_default(object: &mut Value, key: &str, value: Value) {
    let map = as_map(object);
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

fn is_set(object: &Value, key: &str) -> bool {
    object.get(key).is_some_and(|v| !v.is_null())
}

/// Runs `f` on each element of the array under `key`, if there is one.
fn each(object: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = object.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

fn str_of<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

// ---- Pods and pod templates ----

fn default_pod(pod: &mut Value) {
    let spec = field(pod, "spec");
    default_pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));
    // A container that states only limits requests exactly its limits.
    for list in ["containers", "initContainers"] {
        each(spec, list, |container| {
            let Some(limits) = container
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            else {
                return;
            };
            let requests = field(field(container, "resources"), "requests");
            for (name, quantity) in limits {
                set_default(requests, &name, quantity);
            }
        });
    }
    let qos = qos_class(spec);
    let status = field(pod, "status");
    set_default(status, "phase", json!("Pending"));
    set_default(status, "qosClass", json!(qos));
}

/// Kubernetes' QoS class: Guaranteed when every container's cpu and memory requests equal
/// their limits, BestEffort when nothing asks for cpu or memory, Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| spec.get(*list).and_then(Value::as_array))
        .flatten()
        .collect();
    let quantity = |container: &Value, kind: &str, name: &str| {
        container
            .pointer(&format!("/resources/{kind}/{name}"))
            .and_then(Value::as_str)
            .and_then(Quantity::parse)
            .filter(|q| q.compare(Quantity::parse("0").unwrap_or(*q)).is_gt())
    };
    let mut any = false;
    let mut guaranteed = true;
    for container in &containers {
        for name in ["cpu", "memory"] {
            let request = quantity(container, "requests", name);
            let limit = quantity(container, "limits", name);
            any |= request.is_some() || limit.is_some();
            match (request, limit) {
                (Some(r), Some(l)) if r.compare(l).is_eq() => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_pod_template(template: &mut Value) {
    default_pod_spec(field(template, "spec"));
}

/// `SetDefaults_PodSpec` and the defaults of everything a pod spec contains.
fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each(spec, list, |container| {
            default_container(container, host_network)
        });
    }
    each(spec, "volumes", default_volume);
}

fn default_container(container: &mut Value, host_network: bool) {
    set_default(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    set_default(container, "terminationMessagePolicy", json!("File"));
    let policy = image_pull_policy(str_of(container, "image"));
    set_default(container, "imagePullPolicy", json!(policy));
    each(container, "ports", |port| {
        set_default(port, "protocol", json!("TCP"));
        // On the host network a container port is a host port.
        if host_network && port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
            let container_port = port.get("containerPort").cloned().unwrap_or(Value::Null);
            as_map(port).insert("hostPort".to_string(), container_port);
        }
    });
    each(container, "env", |var| {
        if let Some(value_from) = var.get_mut("valueFrom") {
            if let Some(field_ref) = value_from.get_mut("fieldRef").filter(|f| f.is_object()) {
                set_default(field_ref, "apiVersion", json!("v1"));
            }
            if let Some(resource_ref) = value_from
                .get_mut("resourceFieldRef")
                .filter(|f| f.is_object())
            {
                set_default(resource_ref, "divisor", json!("0"));
            }
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = container.get_mut(probe).filter(|p| p.is_object()) {
            set_default(probe, "timeoutSeconds", json!(1));
            set_default(probe, "periodSeconds", json!(10));
            set_default(probe, "successThreshold", json!(1));
            set_default(probe, "failureThreshold", json!(3));
            default_handler(probe);
        }
    }
    if let Some(lifecycle) = container.get_mut("lifecycle").filter(|l| l.is_object()) {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = lifecycle.get_mut(hook).filter(|h| h.is_object()) {
                default_handler(handler);
            }
        }
    }
}

fn default_handler(handler: &mut Value) {
    if let Some(http) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        set_default(http, "path", json!("/"));
        set_default(http, "scheme", json!("HTTP"));
    }
    if let Some(grpc) = handler.get_mut("grpc").filter(|g| g.is_object()) {
        set_default(grpc, "service", json!(""));
    }
}

/// `Always` for `:latest` and untagged images (which mean latest), `IfNotPresent` for a
/// pinned tag or a digest.
fn image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let tag = last_segment.split_once(':').map(|(_, tag)| tag);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

/// Volume sources whose files get mode 0644 unless told otherwise.
const MODE_SOURCES: &[&str] = &["secret", "configMap", "downwardAPI", "projected"];

/// Every key a volume source can sit under; a volume with none of them is an emptyDir.
const VOLUME_SOURCE_KEYS: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

fn default_volume(volume: &mut Value) {
    if !VOLUME_SOURCE_KEYS.iter().any(|key| is_set(volume, key)) {
        as_map(volume).insert("emptyDir".to_string(), json!({}));
    }
    for key in MODE_SOURCES {
        if let Some(source) = volume.get_mut(*key).filter(|s| s.is_object()) {
            set_default(source, "defaultMode", json!(420));
        }
    }
    if let Some(items) = volume
        .pointer_mut("/downwardAPI/items")
        .and_then(Value::as_array_mut)
    {
        for item in items {
            if let Some(field_ref) = item.get_mut("fieldRef").filter(|f| f.is_object()) {
                set_default(field_ref, "apiVersion", json!("v1"));
            }
        }
    }
    if let Some(host_path) = volume.get_mut("hostPath").filter(|h| h.is_object()) {
        set_default(host_path, "type", json!(""));
    }
}

// ---- apps ----

fn default_template_of(object: &mut Value) {
    default_pod_template(field(field(object, "spec"), "template"));
}

fn default_deployment(deployment: &mut Value) {
    let spec = field(deployment, "spec");
    set_default(spec, "replicas", json!(1));
    let strategy = field(spec, "strategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        let rolling = field(strategy, "rollingUpdate");
        set_default(rolling, "maxUnavailable", json!("25%"));
        set_default(rolling, "maxSurge", json!("25%"));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_template_of(deployment);
}

fn default_replica_set(replica_set: &mut Value) {
    set_default(field(replica_set, "spec"), "replicas", json!(1));
    default_template_of(replica_set);
}

fn default_stateful_set(stateful_set: &mut Value) {
    let spec = field(stateful_set, "spec");
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = field(spec, "updateStrategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        set_default(field(strategy, "rollingUpdate"), "partition", json!(0));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    let retention = field(spec, "persistentVolumeClaimRetentionPolicy");
    set_default(retention, "whenDeleted", json!("Retain"));
    set_default(retention, "whenScaled", json!("Retain"));
    each(
        spec,
        "volumeClaimTemplates",
        default_persistent_volume_claim,
    );
    default_template_of(stateful_set);
}

fn default_daemon_set(daemon_set: &mut Value) {
    let spec = field(daemon_set, "spec");
    let strategy = field(spec, "updateStrategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        let rolling = field(strategy, "rollingUpdate");
        set_default(rolling, "maxUnavailable", json!(1));
        set_default(rolling, "maxSurge", json!(0));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template_of(daemon_set);
}

// ---- batch ----

fn default_job(job: &mut Value) {
    let spec = field(job, "spec");
    // A Job that says neither how many pods to run nor how many at once runs one.
    if !is_set(spec, "completions") && !is_set(spec, "parallelism") {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if is_set(spec, "backoffLimitPerIndex") {
        i64::from(i32::MAX)
    } else {
        6
    };
    set_default(spec, "backoffLimit", json!(backoff));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let replacement = if is_set(spec, "podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    if let Some(rules) = spec
        .pointer_mut("/podFailurePolicy/rules")
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            each(rule, "onPodConditions", |pattern| {
                set_default(pattern, "status", json!("True"));
            });
        }
    }
    // batch/v1 gives an unlabelled Job the labels of its pod template.
    let template_labels = spec
        .pointer("/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    default_template_of(job);
    if let Some(labels) = template_labels {
        let meta = field(job, "metadata");
        let empty = meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            as_map(meta).insert("labels".to_string(), labels);
        }
    }
}

fn default_cron_job(cron_job: &mut Value) {
    let spec = field(cron_job, "spec");
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    // Only the pod template inside is defaulted; Job-level defaults apply to each Job made.
    let job_spec = field(field(spec, "jobTemplate"), "spec");
    default_pod_template(field(job_spec, "template"));
}

// ---- Services and endpoints ----

fn default_service(service: &mut Value) {
    let spec = field(service, "spec");
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if str_of(spec, "sessionAffinity") == "ClientIP" {
        let client_ip = field(field(spec, "sessionAffinityConfig"), "clientIP");
        set_default(client_ip, "timeoutSeconds", json!(10800));
    }
    each(spec, "ports", |port| {
        set_default(port, "protocol", json!("TCP"));
        let unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset {
            let number = port.get("port").cloned().unwrap_or(Value::Null);
            as_map(port).insert("targetPort".to_string(), number);
        }
    });
    let service_type = str_of(spec, "type").to_string();
    if service_type == "NodePort" || service_type == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if service_type == "ExternalName" {
        return;
    }
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    // clusterIP and clusterIPs describe one thing; a client may send either.
    let cluster_ip = str_of(spec, "clusterIP").to_string();
    let first = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    match (cluster_ip.is_empty(), first) {
        (false, None) => {
            as_map(spec).insert("clusterIPs".to_string(), json!([cluster_ip]));
        }
        (true, Some(first)) => {
            as_map(spec).insert("clusterIP".to_string(), json!(first));
        }
        _ => {}
    }
    // Headless services without a selector list endpoints of any family.
    let headless = str_of(spec, "clusterIP") == "None";
    let has_selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty());
    let policy = if headless && !has_selector {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    set_default(spec, "ipFamilyPolicy", json!(policy));
}

fn default_endpoints(endpoints: &mut Value) {
    each(endpoints, "subsets", |subset| {
        each(subset, "ports", |port| {
            set_default(port, "protocol", json!("TCP"))
        });
    });
}

fn default_endpoint_slice(slice: &mut Value) {
    each(slice, "ports", |port| {
        set_default(port, "name", json!(""));
        set_default(port, "protocol", json!("TCP"));
    });
}

// ---- Namespaces, Nodes, Secrets, storage ----

fn default_namespace(namespace: &mut Value) {
    // Every namespace can be selected by name through this label.
    let name = namespace
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = name {
        let labels = field(field(namespace, "metadata"), "labels");
        set_default(labels, "kubernetes.io/metadata.name", json!(name));
    }
    // Only a namespace that never had finalizers gets the default: the namespace lifecycle
    // clears the list through `finalize`, and that empty list must stay empty.
    let spec = field(namespace, "spec");
    if spec.get("finalizers").is_none_or(Value::is_null) {
        as_map(spec).insert("finalizers".to_string(), json!(["kubernetes"]));
    }
    set_default(field(namespace, "status"), "phase", json!("Active"));
}

fn default_node(node: &mut Value) {
    let capacity = node.pointer("/status/capacity").cloned();
    if let Some(capacity) = capacity.filter(Value::is_object) {
        set_default(field(node, "status"), "allocatable", capacity);
    }
}

fn default_secret(secret: &mut Value) {
    set_default(secret, "type", json!("Opaque"));
    // `stringData` is write-only: its entries are stored base64-encoded in `data`, winning
    // over a key of the same name there, as Kubernetes does when decoding a Secret.
    let Some(string_data) = as_map(secret).remove("stringData") else {
        return;
    };
    let Value::Object(string_data) = string_data else {
        return;
    };
    let data = as_map(field(secret, "data"));
    for (key, value) in string_data {
        let text = value.as_str().unwrap_or("");
        data.insert(key, json!(encode_base64(text.as_bytes())));
    }
}

fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn default_persistent_volume_claim(claim: &mut Value) {
    set_default(field(claim, "spec"), "volumeMode", json!("Filesystem"));
    set_default(field(claim, "status"), "phase", json!("Pending"));
}

fn default_persistent_volume(volume: &mut Value) {
    let spec = field(volume, "spec");
    set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    set_default(spec, "volumeMode", json!("Filesystem"));
    set_default(field(volume, "status"), "phase", json!("Pending"));
}

// ---- networking, RBAC, autoscaling ----

fn default_network_policy(policy: &mut Value) {
    let spec = field(policy, "spec");
    for direction in ["ingress", "egress"] {
        each(spec, direction, |rule| {
            each(rule, "ports", |port| {
                set_default(port, "protocol", json!("TCP"))
            });
        });
    }
    let no_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        as_map(spec).insert("policyTypes".to_string(), types);
    }
}

fn default_subjects(binding: &mut Value) {
    each(binding, "subjects", |subject| {
        let group = match str_of(subject, "kind") {
            "User" | "Group" => "rbac.authorization.k8s.io",
            "ServiceAccount" => "",
            _ => return,
        };
        let empty = str_of(subject, "apiGroup").is_empty();
        if empty {
            as_map(subject).insert("apiGroup".to_string(), json!(group));
        }
    });
}

fn default_horizontal_pod_autoscaler(resource: &ResourceInfo, hpa: &mut Value) {
    let spec = field(hpa, "spec");
    set_default(spec, "minReplicas", json!(1));
    if resource.version != "v2" {
        return;
    }
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        as_map(spec).insert(
            "metrics".to_string(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) {
        let scale_up = field(behavior, "scaleUp");
        set_default(scale_up, "stabilizationWindowSeconds", json!(0));
        set_default(scale_up, "selectPolicy", json!("Max"));
        set_default(
            scale_up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
        let scale_down = field(behavior, "scaleDown");
        set_default(scale_down, "stabilizationWindowSeconds", json!(300));
        set_default(scale_down, "selectPolicy", json!("Max"));
        set_default(
            scale_down,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{RESOURCES, find};

    fn defaulted(group: &str, plural: &str, object: Value) -> Value {
        let version = if group == "autoscaling" { "v2" } else { "v1" };
        let mut object = object;
        apply_defaults(find(group, version, plural).unwrap(), &mut object);
        object
    }

    #[test]
    fn defaulting_twice_changes_nothing() {
        let samples = [
            json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}}], "volumes": [{"name": "v"}]}}),
            json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}], "type": "LoadBalancer"}, "stringData": {"a": "b"}}),
            json!({"metadata": {"name": "x"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
        ];
        for resource in RESOURCES {
            for sample in &samples {
                let mut once = sample.clone();
                apply_defaults(resource, &mut once);
                let mut twice = once.clone();
                apply_defaults(resource, &mut twice);
                assert_eq!(once, twice, "{} {}", resource.kind, resource.version);
            }
        }
    }

    #[test]
    fn pods_get_kubernetes_defaults() {
        let pod = defaulted(
            "",
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]}]}}),
        );
        assert_eq!(
            pod["spec"],
            json!({
                "containers": [{
                    "name": "a",
                    "image": "nginx",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "Always",
                }],
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "securityContext": {},
                "schedulerName": "default-scheduler",
                "enableServiceLinks": true,
            })
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("nginx@sha256:abc", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(image_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn limits_become_requests_and_make_a_pod_guaranteed() {
        let pod = defaulted(
            "",
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn deployments_get_rolling_update_defaults() {
        let d = defaulted(
            "apps",
            "deployments",
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        // Admission defaults belong to pods, not templates.
        assert!(spec["template"]["spec"].get("tolerations").is_none());
        assert!(spec["template"]["spec"].get("enableServiceLinks").is_none());
    }

    #[test]
    fn services_get_ports_and_policies() {
        let s = defaulted(
            "",
            "services",
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
        );
        assert_eq!(
            s["spec"],
            json!({
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
            })
        );
        let external = defaulted(
            "",
            "services",
            json!({"metadata": {"name": "s"}, "spec": {"type": "ExternalName", "externalName": "a.b"}}),
        );
        assert!(external["spec"].get("ipFamilyPolicy").is_none());
        let headless = defaulted(
            "",
            "services",
            json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "None"}}),
        );
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    }

    #[test]
    fn jobs_and_cron_jobs_get_batch_defaults() {
        let job = defaulted(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j"}, "spec": {"template": {"metadata": {"labels": {"app": "j"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}}}}),
        );
        for (key, want) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ] {
            assert_eq!(job["spec"][key], want, "{key}");
        }
        assert_eq!(job["metadata"]["labels"], json!({"app": "j"}));
        let cron = defaulted(
            "batch",
            "cronjobs",
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}}}),
        );
        for (key, want) in [
            ("concurrencyPolicy", json!("Allow")),
            ("suspend", json!(false)),
            ("successfulJobsHistoryLimit", json!(3)),
            ("failedJobsHistoryLimit", json!(1)),
        ] {
            assert_eq!(cron["spec"][key], want, "{key}");
        }
        assert!(
            cron["spec"]["jobTemplate"]["spec"]
                .get("backoffLimit")
                .is_none()
        );
    }

    #[test]
    fn namespaces_secrets_and_storage_get_their_defaults() {
        let ns = defaulted("", "namespaces", json!({"metadata": {"name": "team"}}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team"
        );
        let secret = defaulted(
            "",
            "secrets",
            json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
        );
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(secret["data"], json!({"password": "aHVudGVyMg=="}));
        assert!(secret.get("stringData").is_none());
        let pvc = defaulted(
            "",
            "persistentvolumeclaims",
            json!({"metadata": {"name": "c"}, "spec": {}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let class = defaulted(
            "storage.k8s.io",
            "storageclasses",
            json!({"metadata": {"name": "c"}, "provisioner": "a.io/b"}),
        );
        assert_eq!(class["reclaimPolicy"], "Delete");
        assert_eq!(class["volumeBindingMode"], "Immediate");
    }
}
