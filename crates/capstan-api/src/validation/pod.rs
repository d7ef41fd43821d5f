//! Pods, pod templates and the pod spec every workload embeds (Kubernetes'
//! `ValidatePodCreate`, `ValidatePodUpdate`, `ValidatePodTemplateSpec`, `ValidatePodSpec`).
//!
//! Checks run on the defaulted object, so fields Kubernetes always defaults (restartPolicy,
//! dnsPolicy, terminationMessagePolicy, port protocols…) are required here just as there.

use super::field_error::{FieldError, FieldPath};
use super::labels::{validate_annotations, validate_label_name, validate_labels};
use super::names::{
    NameRule, inclusive_range_error, is_config_map_key, is_dns1123_label, is_dns1123_subdomain,
    is_env_var_name, is_valid_port_name, is_valid_port_num,
};
use super::quantity::Quantity;
use super::{
    array_field, bool_field, describe_diff, int_field, invalid_each, map_field, non_negative,
    not_found, present, semantic_eq, str_field, str_or_empty,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// What Kubernetes lists as changeable in its "pod updates may not change" message.
const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// Volume sources in the order Kubernetes checks them, with the name it uses in the
/// "more than 1 volume type" error (two of which carry Kubernetes' own typos).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// A Pod on create (`old` is `None`) or update.
pub(super) fn validate_pod(pod: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec_path = FieldPath::new("spec");
    let null = Value::Null;
    let spec = pod.get("spec").unwrap_or(&null);
    let mut errors = validate_pod_spec(spec, &spec_path, true);
    // Pods, unlike templates, may not carry images with stray whitespace: kubelets would pull
    // a name no registry knows.
    for list in ["containers", "initContainers"] {
        for (i, container) in array_field(spec, list).iter().enumerate() {
            let image = str_or_empty(container, "image");
            if image.trim() != image {
                errors.push(FieldError::invalid(
                    spec_path.child(list).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match old {
        None => {
            if !array_field(spec, "ephemeralContainers").is_empty() {
                errors.push(FieldError::forbidden(
                    spec_path.child("ephemeralContainers"),
                    "cannot be set on create",
                ));
            }
        }
        Some(old) => errors.extend(validate_pod_spec_update(
            spec,
            old.get("spec").unwrap_or(&null),
            &spec_path,
        )),
    }
    errors
}

/// A PodTemplate object: its `template` is a pod template spec.
pub(super) fn validate_pod_template(object: &Value) -> Vec<FieldError> {
    let null = Value::Null;
    validate_pod_template_spec(
        object.get("template").unwrap_or(&null),
        &FieldPath::new("template"),
    )
}

/// A pod template (`metadata` + `spec`) as workloads embed it.
pub(crate) fn validate_pod_template_spec(template: &Value, path: &FieldPath) -> Vec<FieldError> {
    let null = Value::Null;
    let meta = template.get("metadata").unwrap_or(&null);
    let mut errors = validate_labels(map_field(meta, "labels"), &path.child("labels"));
    errors.extend(validate_annotations(
        map_field(meta, "annotations"),
        &path.child("annotations"),
    ));
    let spec = template.get("spec").unwrap_or(&null);
    errors.extend(validate_pod_spec(spec, &path.child("spec"), false));
    if !array_field(spec, "ephemeralContainers").is_empty() {
        errors.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errors
}

/// `ValidatePodSpec`. `is_pod` is Kubernetes' `ResourceIsPod`: a template may leave a host
/// port to be defaulted later, a pod may not.
pub(crate) fn validate_pod_spec(spec: &Value, path: &FieldPath, is_pod: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if present(spec, "terminationGracePeriodSeconds").is_none() {
        errors.push(FieldError::required(
            path.child("terminationGracePeriodSeconds"),
            "",
        ));
    }
    let volumes = validate_volumes(array_field(spec, "volumes"), &path.child("volumes"));
    errors.extend(volumes.errors);
    errors.extend(validate_containers(spec, &volumes.sources, path));
    errors.extend(validate_init_containers(spec, &volumes.sources, path));
    errors.extend(validate_host_network_ports(spec, path, is_pod));

    let restart_policy = str_or_empty(spec, "restartPolicy");
    errors.extend(one_of(
        restart_policy,
        RESTART_POLICIES,
        &path.child("restartPolicy"),
    ));
    let dns_policy = str_or_empty(spec, "dnsPolicy");
    errors.extend(one_of(dns_policy, DNS_POLICIES, &path.child("dnsPolicy")));
    errors.extend(validate_labels(
        map_field(spec, "nodeSelector"),
        &path.child("nodeSelector"),
    ));
    errors.extend(validate_dns_config(
        spec,
        dns_policy,
        &path.child("dnsConfig"),
    ));
    errors.extend(validate_pod_security_context(spec, path));
    errors.extend(validate_tolerations(
        array_field(spec, "tolerations"),
        &path.child("tolerations"),
    ));

    for (key, rule) in [
        ("serviceAccountName", NameRule::Dns1123Subdomain),
        ("nodeName", NameRule::Dns1123Subdomain),
        ("priorityClassName", NameRule::Dns1123Subdomain),
        ("hostname", NameRule::Dns1123Label),
        ("subdomain", NameRule::Dns1123Label),
    ] {
        let value = str_or_empty(spec, key);
        if !value.is_empty() {
            errors.extend(invalid_each(
                &path.child(key),
                value,
                rule.check(value, false),
            ));
        }
    }
    if let Some(deadline) = int_field(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errors.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            deadline,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    if let Some(policy) = str_field(spec, "preemptionPolicy") {
        errors.extend(one_of(
            policy,
            &["PreemptLowerPriority", "Never"],
            &path.child("preemptionPolicy"),
        ));
    }
    errors
}

/// Required when empty, `Unsupported value` when not one of `supported`.
fn one_of(value: &str, supported: &[&str], path: &FieldPath) -> Vec<FieldError> {
    if value.is_empty() {
        vec![FieldError::required(path, "")]
    } else if !supported.contains(&value) {
        vec![FieldError::not_supported(path, value, supported)]
    } else {
        Vec::new()
    }
}

struct Volumes {
    /// Volume name → the JSON key of its source (`persistentVolumeClaim`, `emptyDir`…).
    sources: BTreeMap<String, &'static str>,
    errors: Vec<FieldError>,
}

fn validate_volumes(volumes: &[Value], path: &FieldPath) -> Volumes {
    let mut sources = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, volume) in volumes.iter().enumerate() {
        let volume_path = path.index(i);
        let name_path = volume_path.child("name");
        let name = str_or_empty(volume, "name");
        let (source, mut volume_errors) = validate_volume_source(volume, &volume_path);
        if name.is_empty() {
            volume_errors.push(FieldError::required(&name_path, ""));
        } else {
            volume_errors.extend(invalid_each(&name_path, name, is_dns1123_label(name)));
        }
        if sources.contains_key(name) {
            volume_errors.push(FieldError::duplicate(&name_path, name));
        }
        // Only a volume without problems can be mounted, as in Kubernetes: a bad volume then
        // also shows up as "not found" in the mounts that use it.
        if volume_errors.is_empty() {
            sources.insert(name.to_string(), source.unwrap_or(""));
        }
        errors.extend(volume_errors);
    }
    Volumes { sources, errors }
}

fn validate_volume_source(
    volume: &Value,
    path: &FieldPath,
) -> (Option<&'static str>, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut found = None;
    for &(key, error_name) in VOLUME_SOURCES {
        let Some(source) = present(volume, key) else {
            continue;
        };
        if found.is_some() {
            errors.push(FieldError::forbidden(
                path.child(error_name),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        found = Some(key);
        let source_path = path.child(key);
        match key {
            "hostPath" => errors.extend(require_str(source, "path", &source_path)),
            "secret" => {
                errors.extend(require_str(source, "secretName", &source_path));
                errors.extend(validate_file_modes(source, true, &source_path));
            }
            "configMap" => {
                errors.extend(require_str(source, "name", &source_path));
                errors.extend(validate_file_modes(source, true, &source_path));
            }
            "persistentVolumeClaim" => {
                errors.extend(require_str(source, "claimName", &source_path));
            }
            "nfs" => {
                errors.extend(require_str(source, "server", &source_path));
                errors.extend(require_str(source, "path", &source_path));
                let nfs_path = str_or_empty(source, "path");
                if !nfs_path.is_empty() && !nfs_path.starts_with('/') {
                    errors.push(FieldError::invalid(
                        source_path.child("path"),
                        nfs_path,
                        "must be an absolute path",
                    ));
                }
            }
            "csi" => errors.extend(require_str(source, "driver", &source_path)),
            "downwardAPI" => {
                errors.extend(validate_file_modes(source, false, &source_path));
            }
            "projected" => {
                if let Some(mode) = int_field(source, "defaultMode")
                    && !(0..=0o777).contains(&mode)
                {
                    errors.push(FieldError::invalid(
                        source_path.child("defaultMode"),
                        mode,
                        FILE_MODE_ERROR,
                    ));
                }
            }
            "emptyDir" => {
                if let Some(limit) = str_field(source, "sizeLimit")
                    && Quantity::parse(limit).is_some_and(Quantity::is_negative)
                {
                    errors.push(FieldError::forbidden(
                        source_path.child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            _ => {}
        }
    }
    if found.is_none() {
        errors.push(FieldError::required(path, "must specify a volume type"));
    }
    (found, errors)
}

fn require_str(object: &Value, key: &str, path: &FieldPath) -> Vec<FieldError> {
    if str_or_empty(object, key).is_empty() {
        vec![FieldError::required(path.child(key), "")]
    } else {
        Vec::new()
    }
}

/// `defaultMode` and the `items[*]` of secret, configMap, downwardAPI and projected volumes.
fn validate_file_modes(source: &Value, keyed: bool, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(mode) = int_field(source, "defaultMode")
        && !(0..=0o777).contains(&mode)
    {
        errors.push(FieldError::invalid(
            path.child("defaultMode"),
            mode,
            FILE_MODE_ERROR,
        ));
    }
    for (i, item) in array_field(source, "items").iter().enumerate() {
        let item_path = path.child("items").index(i);
        // Secret and configMap items map a key to a path; downward API items carry a field
        // reference instead.
        if keyed && str_or_empty(item, "key").is_empty() {
            errors.push(FieldError::required(item_path.child("key"), ""));
        }
        let item_file = str_or_empty(item, "path");
        if item_file.is_empty() {
            errors.push(FieldError::required(item_path.child("path"), ""));
        } else {
            errors.extend(validate_local_descending_path(
                item_file,
                &item_path.child("path"),
            ));
        }
        if let Some(mode) = int_field(item, "mode")
            && !(0..=0o777).contains(&mode)
        {
            errors.push(FieldError::invalid(
                item_path.child("mode"),
                mode,
                FILE_MODE_ERROR,
            ));
        }
    }
    errors
}

/// A path that must stay inside its volume: relative and without `..`.
fn validate_local_descending_path(target: &str, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if target.starts_with('/') {
        errors.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    if target.split(['/', '\\']).any(|part| part == "..") {
        errors.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
    errors
}

fn validate_containers(
    spec: &Value,
    volumes: &BTreeMap<String, &'static str>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let containers_path = path.child("containers");
    let containers = array_field(spec, "containers");
    if containers.is_empty() {
        return vec![FieldError::required(containers_path, "")];
    }
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for (i, container) in containers.iter().enumerate() {
        let container_path = containers_path.index(i);
        errors.extend(validate_container_common(
            container,
            volumes,
            &container_path,
        ));
        let name = str_or_empty(container, "name");
        if !names.insert(name) {
            errors.push(FieldError::duplicate(container_path.child("name"), name));
        }
        errors.extend(validate_lifecycle(container, &container_path));
        errors.extend(validate_probes(container, &container_path));
        if present(container, "restartPolicy").is_some() {
            errors.push(FieldError::forbidden(
                container_path.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errors.extend(host_port_conflicts(containers, &containers_path));
    errors
}

fn validate_init_containers(
    spec: &Value,
    volumes: &BTreeMap<String, &'static str>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let list_path = path.child("initContainers");
    let mut names: HashSet<&str> = array_field(spec, "containers")
        .iter()
        .map(|c| str_or_empty(c, "name"))
        .collect();
    let mut errors = Vec::new();
    for (i, container) in array_field(spec, "initContainers").iter().enumerate() {
        let container_path = list_path.index(i);
        errors.extend(validate_container_common(
            container,
            volumes,
            &container_path,
        ));
        // Only `Always` makes an init container a sidecar, which may then have probes.
        let restartable = match str_field(container, "restartPolicy") {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errors.push(FieldError::not_supported(
                    container_path.child("restartPolicy"),
                    other,
                    &["Always"],
                ));
                false
            }
        };
        let name = str_or_empty(container, "name");
        if names.contains(name) {
            errors.push(FieldError::duplicate(container_path.child("name"), name));
        } else if !name.is_empty() {
            names.insert(name);
        }
        // Init containers run one at a time, so only ports within one can collide.
        errors.extend(host_port_conflicts(
            std::slice::from_ref(container),
            &list_path,
        ));
        if restartable {
            errors.extend(validate_lifecycle(container, &container_path));
            errors.extend(validate_probes(container, &container_path));
        } else {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if present(container, key).is_some() {
                    errors.push(FieldError::forbidden(
                        container_path.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    errors
}

/// What regular and init containers share: name, image, ports, env, mounts, resources.
fn validate_container_common(
    container: &Value,
    volumes: &BTreeMap<String, &'static str>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = str_or_empty(container, "name");
    if name.is_empty() {
        errors.push(FieldError::required(path.child("name"), ""));
    } else {
        errors.extend(invalid_each(
            &path.child("name"),
            name,
            is_dns1123_label(name),
        ));
    }
    if str_or_empty(container, "image").is_empty() {
        errors.push(FieldError::required(path.child("image"), ""));
    }
    errors.extend(one_of(
        str_or_empty(container, "terminationMessagePolicy"),
        TERMINATION_MESSAGE_POLICIES,
        &path.child("terminationMessagePolicy"),
    ));
    errors.extend(validate_container_ports(
        array_field(container, "ports"),
        &path.child("ports"),
    ));
    errors.extend(validate_env(
        array_field(container, "env"),
        &path.child("env"),
    ));
    errors.extend(validate_env_from(
        array_field(container, "envFrom"),
        &path.child("envFrom"),
    ));
    errors.extend(validate_volume_mounts(
        container,
        volumes,
        &path.child("volumeMounts"),
    ));
    errors.extend(one_of(
        str_or_empty(container, "imagePullPolicy"),
        PULL_POLICIES,
        &path.child("imagePullPolicy"),
    ));
    if let Some(resources) = present(container, "resources") {
        errors.extend(validate_resource_requirements(
            resources,
            &path.child("resources"),
        ));
    }
    if let Some(context) = present(container, "securityContext") {
        errors.extend(validate_security_context(
            context,
            &path.child("securityContext"),
        ));
    }
    errors
}

fn validate_container_ports(ports: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let port_path = path.index(i);
        let name = str_or_empty(port, "name");
        if !name.is_empty() {
            let messages = is_valid_port_name(name);
            if !messages.is_empty() {
                errors.extend(invalid_each(&port_path.child("name"), name, messages));
            } else if !names.insert(name) {
                errors.push(FieldError::duplicate(port_path.child("name"), name));
            }
        }
        match int_field(port, "containerPort").unwrap_or(0) {
            0 => errors.push(FieldError::required(port_path.child("containerPort"), "")),
            number => errors.extend(port_number_errors(
                number,
                &port_path.child("containerPort"),
            )),
        }
        let host_port = int_field(port, "hostPort").unwrap_or(0);
        if host_port != 0 {
            errors.extend(port_number_errors(host_port, &port_path.child("hostPort")));
        }
        errors.extend(one_of(
            str_or_empty(port, "protocol"),
            PROTOCOLS,
            &port_path.child("protocol"),
        ));
    }
    errors
}

fn port_number_errors(number: i64, path: &FieldPath) -> Vec<FieldError> {
    is_valid_port_num(number)
        .into_iter()
        .map(|msg| FieldError::invalid(path, number, msg))
        .collect()
}

/// `ValidatePortNumOrName`: an IntOrString port.
pub(crate) fn validate_port_num_or_name(port: &Value, path: &FieldPath) -> Vec<FieldError> {
    match port {
        Value::Number(n) => port_number_errors(n.as_i64().unwrap_or(0), path),
        Value::String(name) => invalid_each(path, name, is_valid_port_name(name)),
        _ => Vec::new(),
    }
}

/// Host ports may be used once per host IP and protocol across a pod's containers.
fn host_port_conflicts(containers: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    for (i, container) in containers.iter().enumerate() {
        for (j, port) in array_field(container, "ports").iter().enumerate() {
            let host_port = int_field(port, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host_port}",
                str_or_empty(port, "hostIP"),
                str_or_empty(port, "protocol")
            );
            if !seen.insert(key.clone()) {
                errors.push(FieldError::duplicate(
                    path.index(i).child("ports").index(j).child("hostPort"),
                    key,
                ));
            }
        }
    }
    errors
}

fn validate_host_network_ports(spec: &Value, path: &FieldPath, is_pod: bool) -> Vec<FieldError> {
    if !bool_field(spec, "hostNetwork") {
        return Vec::new();
    }
    let mut errors = Vec::new();
    for (i, container) in array_field(spec, "containers").iter().enumerate() {
        for (j, port) in array_field(container, "ports").iter().enumerate() {
            let host_port = int_field(port, "hostPort").unwrap_or(0);
            let container_port = int_field(port, "containerPort").unwrap_or(0);
            if (is_pod || host_port != 0) && host_port != container_port {
                errors.push(FieldError::invalid(
                    path.child("containers")
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort"),
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
    errors
}

/// Field paths the downward API can put in an environment variable.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Field paths the v1 downward API knows at all; the others fail to convert.
const CONVERTIBLE_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_env(vars: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, var) in vars.iter().enumerate() {
        let var_path = path.index(i);
        let name = str_or_empty(var, "name");
        if name.is_empty() {
            errors.push(FieldError::required(var_path.child("name"), ""));
        } else {
            errors.extend(invalid_each(
                &var_path.child("name"),
                name,
                is_env_var_name(name),
            ));
        }
        if let Some(value_from) = present(var, "valueFrom") {
            errors.extend(validate_env_value_from(
                value_from,
                !str_or_empty(var, "value").is_empty(),
                &var_path.child("valueFrom"),
            ));
        }
    }
    errors
}

fn validate_env_value_from(
    value_from: &Value,
    has_value: bool,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut sources = 0;
    if let Some(field_ref) = present(value_from, "fieldRef") {
        sources += 1;
        errors.extend(validate_object_field_selector(
            field_ref,
            &path.child("fieldRef"),
        ));
    }
    if let Some(resource_ref) = present(value_from, "resourceFieldRef") {
        sources += 1;
        let resource = str_or_empty(resource_ref, "resource");
        let resource_path = path.child("resourceFieldRef").child("resource");
        if resource.is_empty() {
            errors.push(FieldError::required(resource_path, ""));
        } else if !RESOURCE_FIELD_PATHS.contains(&resource)
            && !resource.starts_with("requests.hugepages-")
            && !resource.starts_with("limits.hugepages-")
        {
            errors.push(FieldError::not_supported(
                resource_path,
                resource,
                RESOURCE_FIELD_PATHS,
            ));
        }
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(key_ref) = present(value_from, key) {
            sources += 1;
            let key_path = path.child(key);
            let name = str_or_empty(key_ref, "name");
            errors.extend(invalid_each(
                &key_path.child("name"),
                name,
                is_dns1123_subdomain(name),
            ));
            let data_key = str_or_empty(key_ref, "key");
            if data_key.is_empty() {
                errors.push(FieldError::required(key_path.child("key"), ""));
            } else {
                errors.extend(invalid_each(
                    &key_path.child("key"),
                    data_key,
                    is_config_map_key(data_key),
                ));
            }
        }
    }
    if sources == 0 {
        errors.push(FieldError::invalid(
            path,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if has_value {
        errors.push(FieldError::invalid(
            path,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if sources > 1 {
        errors.push(FieldError::invalid(
            path,
            "",
            "may not have more than one field specified at a time",
        ));
    }
    errors
}

fn validate_object_field_selector(selector: &Value, path: &FieldPath) -> Vec<FieldError> {
    if str_or_empty(selector, "apiVersion").is_empty() {
        return vec![FieldError::required(path.child("apiVersion"), "")];
    }
    let field_path = str_or_empty(selector, "fieldPath");
    if field_path.is_empty() {
        return vec![FieldError::required(path.child("fieldPath"), "")];
    }
    // `metadata.labels['key']` and `metadata.annotations['key']` select one entry.
    if let Some((base, rest)) = field_path.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .and_then(|s| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
        return match (base, subscript) {
            ("metadata.annotations", Some(key)) => invalid_each(
                path,
                &key.to_lowercase(),
                super::labels::qualified_name_errors(&key.to_lowercase()),
            ),
            ("metadata.labels", Some(key)) => validate_label_name(key, path),
            ("metadata.annotations" | "metadata.labels", None) => vec![FieldError::invalid(
                path.child("fieldPath"),
                field_path,
                format!("error converting fieldPath: field label not supported: {field_path}"),
            )],
            _ => vec![FieldError::invalid(
                path,
                base,
                "does not support subscript",
            )],
        };
    }
    if !CONVERTIBLE_FIELD_PATHS.contains(&field_path) {
        return vec![FieldError::invalid(
            path.child("fieldPath"),
            field_path,
            format!("error converting fieldPath: field label not supported: {field_path}"),
        )];
    }
    if !ENV_FIELD_PATHS.contains(&field_path) {
        return vec![FieldError::not_supported(
            path.child("fieldPath"),
            field_path,
            ENV_FIELD_PATHS,
        )];
    }
    Vec::new()
}

fn validate_env_from(sources: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let source_path = path.index(i);
        let prefix = str_or_empty(source, "prefix");
        if !prefix.is_empty() {
            errors.extend(invalid_each(
                &source_path.child("prefix"),
                prefix,
                is_env_var_name(prefix),
            ));
        }
        let mut count = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(reference) = present(source, key) {
                count += 1;
                let name_path = source_path.child(key).child("name");
                let name = str_or_empty(reference, "name");
                if name.is_empty() {
                    errors.push(FieldError::required(name_path, ""));
                } else {
                    errors.extend(invalid_each(
                        &name_path,
                        name,
                        NameRule::Dns1123Subdomain.check(name, true),
                    ));
                }
            }
        }
        if count == 0 {
            errors.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errors.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errors
}

fn validate_volume_mounts(
    container: &Value,
    volumes: &BTreeMap<String, &'static str>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let device_names: HashSet<&str> = array_field(container, "volumeDevices")
        .iter()
        .map(|d| str_or_empty(d, "name"))
        .collect();
    let device_paths: HashSet<&str> = array_field(container, "volumeDevices")
        .iter()
        .map(|d| str_or_empty(d, "devicePath"))
        .collect();
    let mut mount_points = HashSet::new();
    let mut errors = Vec::new();
    for (i, mount) in array_field(container, "volumeMounts").iter().enumerate() {
        let mount_path = path.index(i);
        let name = str_or_empty(mount, "name");
        let target = str_or_empty(mount, "mountPath");
        if name.is_empty() {
            errors.push(FieldError::required(mount_path.child("name"), ""));
        }
        if !volumes.contains_key(name) {
            errors.push(not_found(mount_path.child("name"), name));
        }
        if target.is_empty() {
            errors.push(FieldError::required(mount_path.child("mountPath"), ""));
        }
        if !mount_points.insert(target) {
            errors.push(FieldError::invalid(
                mount_path.child("mountPath"),
                target,
                "must be unique",
            ));
        }
        if device_names.contains(name) {
            errors.push(FieldError::invalid(
                mount_path.child("name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if device_paths.contains(target) {
            errors.push(FieldError::invalid(
                mount_path.child("mountPath"),
                target,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = str_or_empty(mount, "subPath");
        let sub_path_expr = str_or_empty(mount, "subPathExpr");
        if volumes.get(name) == Some(&"image") {
            for (key, value) in [("subPath", sub_path), ("subPathExpr", sub_path_expr)] {
                if !value.is_empty() {
                    errors.push(FieldError::invalid(
                        mount_path.child(key),
                        value,
                        "not allowed in image volume sources",
                    ));
                }
            }
        }
        // Kubernetes reports these two at the list's path, not the mount's.
        if !sub_path.is_empty() {
            errors.extend(validate_local_descending_path(
                sub_path,
                &path.child("subPath"),
            ));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errors.push(FieldError::invalid(
                    mount_path.child("subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errors.extend(validate_local_descending_path(
                sub_path_expr,
                &path.child("subPathExpr"),
            ));
        }
    }
    errors
}

/// Resource names a container may request without a domain.
const CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Resource names Kubernetes knows without a domain, for any use (quota included).
pub(super) const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Kubernetes' own resources (no domain, or a `kubernetes.io/` one).
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `validateContainerResourceName`.
fn container_resource_name_errors(name: &str, path: &FieldPath) -> Vec<FieldError> {
    let errors = validate_label_name(name, path);
    if !errors.is_empty() {
        return errors;
    }
    if !name.contains('/') {
        if !STANDARD_RESOURCES.contains(&name) && !is_hugepages(name) {
            return vec![FieldError::invalid(
                path,
                name,
                "must be a standard resource type or fully qualified",
            )];
        }
        if !CONTAINER_RESOURCES.contains(&name) && !is_hugepages(name) {
            return vec![FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            )];
        }
    } else if !is_native_resource(name) && name.starts_with("requests.") {
        return vec![FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        )];
    }
    Vec::new()
}

/// Requests and limits: known names, non-negative quantities, whole numbers for extended
/// resources, and requests within limits (equal for resources that cannot be overcommitted).
pub(crate) fn validate_resource_requirements(
    resources: &Value,
    path: &FieldPath,
) -> Vec<FieldError> {
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let empty = Map::new();
    let limits = map_field(resources, "limits").unwrap_or(&empty);
    let requests = map_field(resources, "requests").unwrap_or(&empty);
    let mut errors = Vec::new();
    let check = |name: &str, value: &Value, path: &FieldPath, errors: &mut Vec<FieldError>| {
        errors.extend(container_resource_name_errors(name, path));
        let text = value.as_str().unwrap_or("");
        let quantity = Quantity::parse(text);
        if quantity.is_some_and(Quantity::is_negative) {
            errors.push(FieldError::invalid(
                path,
                text,
                "must be greater than or equal to 0",
            ));
        }
        if !is_native_resource(name) && quantity.is_some_and(|q| !q.is_integer()) {
            errors.push(FieldError::invalid(path, text, "must be an integer"));
        }
        quantity
    };
    let mut has_compute = false;
    let mut has_hugepages = false;
    for (name, value) in limits {
        check(name, value, &limits_path.key(name), &mut errors);
        has_compute |= name == "cpu" || name == "memory";
        has_hugepages |= is_hugepages(name);
    }
    for (name, value) in requests {
        let request = check(name, value, &requests_path.key(name), &mut errors);
        has_compute |= name == "cpu" || name == "memory";
        has_hugepages |= is_hugepages(name);
        let text = value.as_str().unwrap_or("");
        let overcommit_allowed = is_native_resource(name) && !is_hugepages(name);
        match limits.get(name) {
            Some(limit_value) => {
                let limit_text = limit_value.as_str().unwrap_or("");
                let (Some(request), Some(limit)) = (request, Quantity::parse(limit_text)) else {
                    continue;
                };
                let order = request.compare(limit);
                if !overcommit_allowed && order.is_ne() {
                    errors.push(FieldError::invalid(
                        &requests_path,
                        text,
                        format!("must be equal to {name} limit of {limit_text}"),
                    ));
                } else if order.is_gt() {
                    errors.push(FieldError::invalid(
                        &requests_path,
                        text,
                        format!("must be less than or equal to {name} limit of {limit_text}"),
                    ));
                }
            }
            None if !overcommit_allowed => errors.push(FieldError::required(
                &limits_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
    if has_hugepages && !has_compute {
        errors.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
    errors
}

fn validate_security_context(context: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in ["runAsUser", "runAsGroup"] {
        if let Some(id) = int_field(context, key)
            && !(0..=0xffff_ffff).contains(&id)
        {
            errors.push(FieldError::invalid(
                path.child(key),
                id,
                inclusive_range_error(0, 0xffff_ffff),
            ));
        }
    }
    if context
        .get("allowPrivilegeEscalation")
        .and_then(Value::as_bool)
        == Some(false)
        && context.get("privileged").and_then(Value::as_bool) == Some(true)
    {
        errors.push(FieldError::invalid(
            path,
            context.clone(),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
    errors
}

fn validate_pod_security_context(spec: &Value, path: &FieldPath) -> Vec<FieldError> {
    let Some(context) = present(spec, "securityContext") else {
        return Vec::new();
    };
    let context_path = path.child("securityContext");
    let mut errors = Vec::new();
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(id) = int_field(context, key)
            && !(0..=0xffff_ffff).contains(&id)
        {
            errors.push(FieldError::invalid(
                context_path.child(key),
                id,
                inclusive_range_error(0, 0xffff_ffff),
            ));
        }
    }
    // User namespaces do not mix with the host's other namespaces.
    if context.get("hostUsers").and_then(Value::as_bool) == Some(false) {
        for (key, name) in [
            ("hostNetwork", "hostNetwork"),
            ("hostPID", "HostPID"),
            ("hostIPC", "HostIPC"),
        ] {
            if bool_field(spec, key) {
                errors.push(FieldError::forbidden(
                    path.child(name),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    errors
}

fn validate_dns_config(spec: &Value, dns_policy: &str, path: &FieldPath) -> Vec<FieldError> {
    let config = present(spec, "dnsConfig");
    if dns_policy == "None" {
        match config {
            None => {
                return vec![FieldError::required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                )];
            }
            Some(config) if array_field(config, "nameservers").is_empty() => {
                return vec![FieldError::required(
                    path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                )];
            }
            Some(_) => {}
        }
    }
    let Some(config) = config else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    let nameservers = array_field(config, "nameservers");
    if nameservers.len() > 3 {
        errors.push(FieldError::invalid(
            path.child("nameservers"),
            Value::from(nameservers.to_vec()),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, server) in nameservers.iter().enumerate() {
        let server = server.as_str().unwrap_or("");
        errors.extend(invalid_each(
            &path.child("nameservers").index(i),
            server,
            super::names::is_valid_ip(server),
        ));
    }
    let searches = array_field(config, "searches");
    if searches.len() > 32 {
        errors.push(FieldError::invalid(
            path.child("searches"),
            Value::from(searches.to_vec()),
            "must not have more than 32 search paths",
        ));
    }
    for (i, option) in array_field(config, "options").iter().enumerate() {
        if str_or_empty(option, "name").is_empty() {
            errors.push(FieldError::required(
                path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
    errors
}

/// `ValidateTolerations`.
pub(crate) fn validate_tolerations(tolerations: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, toleration) in tolerations.iter().enumerate() {
        let item = path.index(i);
        let key = str_or_empty(toleration, "key");
        let operator = str_or_empty(toleration, "operator");
        let effect = str_or_empty(toleration, "effect");
        let value = str_or_empty(toleration, "value");
        if !key.is_empty() {
            errors.extend(validate_label_name(key, &item.child("key")));
        }
        if key.is_empty() && operator != "Exists" {
            errors.push(FieldError::invalid(
                item.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if present(toleration, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errors.push(FieldError::invalid(
                item.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let messages = super::labels::label_value_errors(value);
                if !messages.is_empty() {
                    errors.push(FieldError::invalid(
                        item.child("operator"),
                        value,
                        messages.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errors.push(FieldError::invalid(
                        item.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                item.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errors.push(FieldError::not_supported(
                item.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
    errors
}

fn validate_probes(container: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = present(container, key) else {
            continue;
        };
        let probe_path = path.child(key);
        errors.extend(validate_handler(probe, &probe_path, false));
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            errors.extend(non_negative(probe, field, &probe_path));
        }
        if let Some(grace) = int_field(probe, "terminationGracePeriodSeconds") {
            if key == "readinessProbe" {
                errors.push(FieldError::invalid(
                    probe_path.child("terminationGracePeriodSeconds"),
                    grace,
                    "must not be set for readinessProbes",
                ));
            } else if grace <= 0 {
                errors.push(FieldError::invalid(
                    probe_path.child("terminationGracePeriodSeconds"),
                    grace,
                    "must be greater than 0",
                ));
            }
        }
        // A liveness or startup probe that needed several successes would never heal.
        if key != "readinessProbe"
            && let Some(threshold) = int_field(probe, "successThreshold")
            && threshold != 1
        {
            errors.push(FieldError::invalid(
                probe_path.child("successThreshold"),
                threshold,
                "must be 1",
            ));
        }
    }
    errors
}

fn validate_lifecycle(container: &Value, path: &FieldPath) -> Vec<FieldError> {
    let Some(lifecycle) = present(container, "lifecycle") else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for hook in ["postStart", "preStop"] {
        if let Some(handler) = present(lifecycle, hook) {
            errors.extend(validate_handler(
                handler,
                &path.child("lifecycle").child(hook),
                true,
            ));
        }
    }
    errors
}

/// Exactly one of exec, httpGet, tcpSocket, grpc (probes) or sleep (lifecycle hooks).
fn validate_handler(handler: &Value, path: &FieldPath, lifecycle: bool) -> Vec<FieldError> {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut errors = Vec::new();
    let mut count = 0;
    for &kind in kinds {
        let Some(action) = present(handler, kind) else {
            continue;
        };
        let action_path = path.child(kind);
        if count > 0 {
            errors.push(FieldError::forbidden(
                action_path,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        count += 1;
        match kind {
            "exec" if array_field(action, "command").is_empty() => {
                errors.push(FieldError::required(action_path.child("command"), ""));
            }
            "httpGet" => {
                if str_or_empty(action, "path").is_empty() {
                    errors.push(FieldError::required(action_path.child("path"), ""));
                }
                if let Some(port) = action.get("port") {
                    errors.extend(validate_port_num_or_name(port, &action_path.child("port")));
                }
                let scheme = str_or_empty(action, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errors.push(FieldError::not_supported(
                        action_path.child("scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            "tcpSocket" => {
                if let Some(port) = action.get("port") {
                    errors.extend(validate_port_num_or_name(port, &action_path.child("port")));
                }
            }
            "grpc" => {
                let port = int_field(action, "port").unwrap_or(0);
                errors.extend(port_number_errors(port, &action_path.child("port")));
            }
            _ => {}
        }
    }
    if count == 0 {
        errors.push(FieldError::required(path, "must specify a handler type"));
    }
    errors
}

/// `ValidatePodUpdate`'s spec rules: a running pod may change only its images, a shorter
/// deadline, added tolerations, removed scheduling gates, and a negative grace period to 1.
fn validate_pod_spec_update(new: &Value, old: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for list in ["containers", "initContainers"] {
        let new_containers = array_field(new, list);
        if new_containers.len() != array_field(old, list).len() {
            errors.push(FieldError::forbidden(
                path.child(list),
                "pod updates may not add or remove containers",
            ));
            return errors;
        }
    }

    match (
        int_field(new, "activeDeadlineSeconds"),
        int_field(old, "activeDeadlineSeconds"),
    ) {
        (Some(new_deadline), old_deadline) => {
            if !(0..=i64::from(i32::MAX)).contains(&new_deadline) {
                errors.push(FieldError::invalid(
                    path.child("activeDeadlineSeconds"),
                    new_deadline,
                    inclusive_range_error(0, i64::from(i32::MAX)),
                ));
                return errors;
            }
            if old_deadline.is_some_and(|old| old < new_deadline) {
                errors.push(FieldError::invalid(
                    path.child("activeDeadlineSeconds"),
                    new_deadline,
                    "must be less than or equal to previous value",
                ));
                return errors;
            }
        }
        (None, Some(_)) => errors.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }

    errors.extend(validate_only_added_tolerations(
        new,
        old,
        &path.child("tolerations"),
    ));
    errors.extend(validate_only_deleted_scheduling_gates(
        new,
        old,
        &path.child("schedulingGates"),
    ));

    if semantic_eq(new, old) {
        return errors;
    }
    // Put back every field that may change, then anything left over is a forbidden change.
    let mut munged = new.clone();
    for list in ["containers", "initContainers"] {
        if let Some(containers) = munged.get_mut(list).and_then(Value::as_array_mut) {
            for (container, old_container) in containers.iter_mut().zip(array_field(old, list)) {
                container["image"] = old_container.get("image").cloned().unwrap_or(Value::Null);
            }
        }
    }
    if let Some(munged) = munged.as_object_mut() {
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old.get(key) {
                Some(value) => munged.insert(key.to_string(), value.clone()),
                None => munged.remove(key),
            };
        }
        let old_grace = int_field(old, "terminationGracePeriodSeconds");
        let new_grace = munged
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            munged.insert(
                "terminationGracePeriodSeconds".to_string(),
                Value::from(old_grace.unwrap_or_default()),
            );
        }
    }
    if !semantic_eq(&munged, old) {
        errors.push(FieldError::forbidden(
            path,
            format!(
                "pod updates may not change fields other than {}\n{}",
                UPDATABLE_POD_SPEC_FIELDS.join(","),
                describe_diff(old, &munged, "spec")
            ),
        ));
    }
    errors
}

fn validate_only_added_tolerations(new: &Value, old: &Value, path: &FieldPath) -> Vec<FieldError> {
    let new_tolerations = array_field(new, "tolerations");
    // Only tolerationSeconds may change on an existing toleration.
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(map) = t.as_object_mut() {
            map.remove("tolerationSeconds");
        }
        t
    };
    for old_toleration in array_field(old, "tolerations") {
        let wanted = without_seconds(old_toleration);
        if !new_tolerations
            .iter()
            .any(|t| semantic_eq(&without_seconds(t), &wanted))
        {
            return vec![FieldError::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    validate_tolerations(new_tolerations, path)
}

fn validate_only_deleted_scheduling_gates(
    new: &Value,
    old: &Value,
    path: &FieldPath,
) -> Vec<FieldError> {
    let old_gates: HashSet<&str> = array_field(old, "schedulingGates")
        .iter()
        .map(|g| str_or_empty(g, "name"))
        .collect();
    array_field(new, "schedulingGates")
        .iter()
        .enumerate()
        .filter(|(_, gate)| !old_gates.contains(str_or_empty(gate, "name")))
        .map(|(i, gate)| {
            FieldError::forbidden(
                path.index(i).child("name"),
                format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    str_or_empty(gate, "name")
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resource::find;
    use crate::validation::messages;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec});
        apply_defaults(find("", "v1", "pods").unwrap(), &mut pod);
        // Pods as stored: admission has added its default tolerations.
        crate::admission::admit_default_tolerations(&mut pod, &Default::default());
        pod
    }

    #[test]
    fn pod_spec_errors_use_kubernetes_paths_and_wording() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"containers": []}),
                vec!["spec.containers: Required value"],
            ),
            (
                json!({"containers": [{"name": "a"}]}),
                vec!["spec.containers[0].image: Required value"],
            ),
            (
                json!({"containers": [{"name": "Web", "image": "x"}]}),
                vec![
                    "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                ],
            ),
            (
                json!({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}),
                vec!["spec.containers[1].name: Duplicate value: \"a\""],
            ),
            (
                json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]}),
                vec![
                    "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]}),
                vec![
                    "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ],
            ),
            (
                json!({"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "x"}]}),
                vec![
                    "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                ],
            ),
            (
                json!({"containers": [{"name": "a", "image": "x", "env": [{"name": "A=B", "value": "1"}]}]}),
                vec![
                    "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                ],
            ),
            (
                json!({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}], "containers": [{"name": "a", "image": "x"}]}),
                vec!["spec.volumes[1].name: Duplicate value: \"d\""],
            ),
            (
                json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}),
                vec!["spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
            ),
            (
                json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}}]}),
                vec![
                    "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 500m",
                ],
            ),
        ];
        for (spec, want) in cases {
            let object = pod(spec.clone());
            assert_eq!(messages(validate_pod(&object, None)), want, "{spec}");
        }
    }

    #[test]
    fn pod_spec_is_immutable_except_image() {
        let old = pod(
            json!({"containers": [{"name": "a", "image": "nginx:1.0", "ports": [{"containerPort": 80}]}]}),
        );
        type Change = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Change, bool)> = vec![
            (
                "image",
                Box::new(|p| p["spec"]["containers"][0]["image"] = json!("nginx:2.0")),
                true,
            ),
            (
                "deadline",
                Box::new(|p| p["spec"]["activeDeadlineSeconds"] = json!(30)),
                true,
            ),
            (
                "added toleration",
                Box::new(|p| {
                    p["spec"]["tolerations"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"key": "k", "operator": "Exists"}))
                }),
                true,
            ),
            (
                "port",
                Box::new(|p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(81)),
                false,
            ),
            (
                "restart policy",
                Box::new(|p| p["spec"]["restartPolicy"] = json!("Never")),
                false,
            ),
        ];
        for (name, change, allowed) in cases {
            let mut new = old.clone();
            change(&mut new);
            let errors = messages(validate_pod(&new, Some(&old)));
            if allowed {
                assert!(errors.is_empty(), "{name}: {errors:?}");
            } else {
                assert_eq!(errors.len(), 1, "{name}: {errors:?}");
                assert!(
                    errors[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
                    "{name}: {errors:?}"
                );
            }
        }
    }

    #[test]
    fn pod_updates_may_not_add_containers_or_remove_tolerations() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let mut more = old.clone();
        more["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "b", "image": "y"}));
        apply_defaults(find("", "v1", "pods").unwrap(), &mut more);
        assert_eq!(
            messages(validate_pod(&more, Some(&old))),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        let mut fewer = old.clone();
        fewer["spec"]["tolerations"] = json!([]);
        assert_eq!(
            messages(validate_pod(&fewer, Some(&old))),
            vec![
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );
    }

    #[test]
    fn init_containers_share_names_with_containers() {
        let object = pod(json!({
            "initContainers": [{"name": "a", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}}}],
            "containers": [{"name": "a", "image": "x"}]
        }));
        assert_eq!(
            messages(validate_pod(&object, None)),
            vec![
                "spec.initContainers[0].name: Duplicate value: \"a\"",
                "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ]
        );
    }

    #[test]
    fn probes_need_exactly_one_handler() {
        let object = pod(
            json!({"containers": [{"name": "a", "image": "x", "readinessProbe": {"periodSeconds": 5}}]}),
        );
        assert_eq!(
            messages(validate_pod(&object, None)),
            vec!["spec.containers[0].readinessProbe: Required value: must specify a handler type"]
        );
    }
}
