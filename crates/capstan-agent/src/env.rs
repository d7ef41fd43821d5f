//! A container's environment, resolved the way kubelet's `makeEnvironmentVariables` does it:
//! `envFrom` sources first, then `env` in order, with `$(VAR)` references expanded against what
//! is defined so far and `valueFrom` read from ConfigMaps, Secrets, the pod itself (downward API)
//! and the container's resources.
//!
//! The field and resource lookups here are shared with the `downwardAPI` volumes of
//! [`crate::volumes`], so both read the pod the same way kubelet does.
//!
//! Service link variables (`FOO_SERVICE_HOST`…) are not produced here.

use std::collections::HashMap;
use std::future::Future;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVarSource, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};

/// Where the agent reads the objects a pod refers to. Implementations answer `Ok(None)` for an
/// object that does not exist.
pub trait ObjectSource: Send + Sync {
    /// The ConfigMap `namespace/name`; `Ok(None)` when it does not exist, `Err` when it could
    /// not be read (a retry may help).
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ConfigMap>, SourceError>> + Send;

    /// The Secret `namespace/name`; `Ok(None)` when it does not exist, `Err` when it could not
    /// be read (a retry may help).
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Secret>, SourceError>> + Send;
}

/// An [`ObjectSource`] could not answer (API unreachable, forbidden…).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// What the agent knows about its node and the pod's sandbox that the pod spec does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub node_name: String,
    pub host_ip: String,
    /// The sandbox's IPs, preferred family first (`status.podIP` is the first).
    pub pod_ips: Vec<String>,
    /// Reported for `limits.*` of containers that set no limit, as kubelet does.
    pub allocatable_cpu_millis: u64,
    pub allocatable_memory_bytes: u64,
    pub allocatable_ephemeral_bytes: u64,
}

/// Why a container's environment could not be built. Kubelet reports these as
/// `CreateContainerConfigError`; the Display text is kubelet's wording.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap does not exist and is not optional; retrying helps once it exists.
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { name: String },
    /// A referenced Secret does not exist and is not optional; retrying helps once it exists.
    #[error("secret \"{name}\" not found")]
    SecretNotFound { name: String },
    /// A `configMapKeyRef` names a key the ConfigMap lacks; retrying helps once it is added.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    /// A `secretKeyRef` names a key the Secret lacks; retrying helps once it is added.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    /// Reading a ConfigMap failed; a retry may help.
    #[error("couldn't get configMap {namespace}/{name}: {source}")]
    ReadConfigMap {
        namespace: String,
        name: String,
        source: SourceError,
    },
    /// Reading a Secret failed; a retry may help.
    #[error("couldn't get secret {namespace}/{name}: {source}")]
    ReadSecret {
        namespace: String,
        name: String,
        source: SourceError,
    },
    /// A `fieldRef` with an `apiVersion` other than v1; the spec must change.
    #[error("unsupported pod version: {0}")]
    UnsupportedPodVersion(String),
    /// A `fieldRef` path the downward API does not offer; the spec must change.
    #[error("field label not supported: {0}")]
    UnsupportedFieldLabel(String),
    /// A `['key']` subscript on a field other than labels or annotations.
    #[error("field label does not support subscript: {0}")]
    FieldLabelSubscript(String),
    /// A field path that is accepted by the API but has no value in this context.
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    /// A `resourceFieldRef` resource other than cpu, memory, ephemeral-storage or hugepages.
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    /// A `resourceFieldRef.containerName` that names no container of the pod.
    #[error("container {0} not found")]
    ContainerNotFound(String),
    /// A resource quantity (limit, request or divisor) that does not parse.
    #[error("invalid quantity {value:?} in {field}")]
    InvalidQuantity { field: String, value: String },
}

/// The environment of `container` as `NAME=value` strings: `envFrom` entries first, then `env`
/// in order; a later entry with the same name replaces the value but keeps the position of
/// the first. (Kubelet collects the variables in a map, so its order is unspecified; this is
/// the deterministic order closest to the spec.)
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    node: &NodeFacts,
    source: &impl ObjectSource,
) -> Result<Vec<String>, EnvError> {
    let namespace = pod_namespace(pod);
    let mut objects = Objects::new(namespace, source);
    let mut env = OrderedEnv::default();

    for env_from in container.env_from.iter().flatten() {
        let prefix = env_from.prefix.as_deref().unwrap_or("");
        // Kubelet honours only one of the two references, configMapRef first.
        if let Some(reference) = &env_from.config_map_ref {
            let optional = reference.optional.unwrap_or(false);
            let Some(config_map) = objects.config_map(&reference.name, optional).await? else {
                continue;
            };
            let data = config_map.data.iter().flatten();
            env.insert_all(
                prefix,
                data.map(|(k, v)| (k, v.clone())),
                "configMap",
                &reference.name,
                namespace,
            );
        } else if let Some(reference) = &env_from.secret_ref {
            let optional = reference.optional.unwrap_or(false);
            let Some(secret) = objects.secret(&reference.name, optional).await? else {
                continue;
            };
            let data = secret.data.iter().flatten();
            env.insert_all(
                prefix,
                data.map(|(k, v)| (k, utf8(&v.0))),
                "secret",
                &reference.name,
                namespace,
            );
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (var.value.as_deref(), &var.value_from) {
            // Kubelet expands only a non-empty `value`, and a `value` wins over `valueFrom`.
            (Some(value), _) if !value.is_empty() => expand_with(value, |name| env.get(name)),
            (_, Some(value_from)) => {
                match value_from_source(value_from, pod, container, node, &mut objects).await? {
                    Some(value) => value,
                    // An optional reference to something missing leaves the variable unset
                    // (and an earlier value of it untouched), as kubelet does.
                    None => continue,
                }
            }
            _ => String::new(),
        };
        env.set(&var.name, value);
    }

    Ok(env.into_strings())
}

/// Expands `$(VAR)` references in `input` (a `command` or `args` entry) against the container's
/// final environment, as kubelet does before starting the container: `$$` is a literal `$`, and
/// a reference to an undefined variable is left as written.
pub fn expand(input: &str, env: &[String]) -> String {
    // Later entries win, as in the map kubelet builds from the environment.
    let vars: HashMap<&str, &str> = env
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .collect();
    expand_with(input, |name| vars.get(name).copied())
}

/// Kubelet's `expansion.Expand` (forked from Go's `os.Expand`, with `$(VAR)` syntax).
fn expand_with<'v>(input: &str, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    // Start of the input not yet copied to `out`. Every index below sits next to an ASCII
    // `$`, `(` or `)`, so slicing never splits a UTF-8 character.
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        // A `$` as the very last character is copied as is.
        if bytes[cursor] != b'$' || cursor + 1 == bytes.len() {
            cursor += 1;
            continue;
        }
        out.push_str(&input[checkpoint..cursor]);
        match bytes[cursor + 1] {
            b'$' => {
                out.push('$');
                cursor += 2;
            }
            b'(' => match input[cursor + 2..].find(')') {
                Some(length) => {
                    let name = &input[cursor + 2..cursor + 2 + length];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    cursor += length + 3;
                }
                // An unclosed `$(` is kept; scanning goes on after it.
                None => {
                    out.push_str("$(");
                    cursor += 2;
                }
            },
            // A `$` that starts no reference is kept; the next character is copied as is.
            _ => {
                out.push('$');
                cursor += 1;
            }
        }
        checkpoint = cursor;
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// The value of one `valueFrom`; `Ok(None)` when it refers, optionally, to something missing.
async fn value_from_source<S: ObjectSource>(
    value_from: &EnvVarSource,
    pod: &Pod,
    container: &Container,
    node: &NodeFacts,
    objects: &mut Objects<'_, S>,
) -> Result<Option<String>, EnvError> {
    if let Some(selector) = &value_from.field_ref {
        return pod_field_env_value(pod, selector, node).map(Some);
    }
    if let Some(selector) = &value_from.resource_field_ref {
        return resource_field_value(pod, Some(container), selector, node).map(Some);
    }
    if let Some(selector) = &value_from.config_map_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let Some(config_map) = objects.config_map(&selector.name, optional).await? else {
            return Ok(None);
        };
        return match config_map
            .data
            .as_ref()
            .and_then(|data| data.get(&selector.key))
        {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => Err(EnvError::ConfigMapKeyNotFound {
                key: selector.key.clone(),
                namespace: objects.namespace.to_string(),
                name: selector.name.clone(),
            }),
        };
    }
    if let Some(selector) = &value_from.secret_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let Some(secret) = objects.secret(&selector.name, optional).await? else {
            return Ok(None);
        };
        return match secret
            .data
            .as_ref()
            .and_then(|data| data.get(&selector.key))
        {
            Some(value) => Ok(Some(utf8(&value.0))),
            None if optional => Ok(None),
            None => Err(EnvError::SecretKeyNotFound {
                key: selector.key.clone(),
                namespace: objects.namespace.to_string(),
                name: selector.name.clone(),
            }),
        };
    }
    // An empty `valueFrom` defines the variable as empty, as kubelet does.
    Ok(Some(String::new()))
}

/// The variables defined so far, in order of first definition.
#[derive(Debug, Default)]
struct OrderedEnv {
    entries: Vec<(String, String)>,
    positions: HashMap<String, usize>,
}

impl OrderedEnv {
    fn get(&self, name: &str) -> Option<&str> {
        let position = *self.positions.get(name)?;
        self.entries.get(position).map(|(_, value)| value.as_str())
    }

    fn set(&mut self, name: &str, value: String) {
        match self.positions.get(name) {
            Some(&position) => self.entries[position].1 = value,
            None => {
                self.positions.insert(name.to_string(), self.entries.len());
                self.entries.push((name.to_string(), value));
            }
        }
    }

    /// Adds the keys of one `envFrom` source. Keys that are no valid variable name (after the
    /// prefix) are skipped; kubelet reports them in an `InvalidEnvironmentVariableNames` event,
    /// which the log line below stands in for.
    fn insert_all<'k>(
        &mut self,
        prefix: &str,
        data: impl Iterator<Item = (&'k String, String)>,
        kind: &str,
        object: &str,
        namespace: &str,
    ) {
        let mut invalid = Vec::new();
        for (key, value) in data {
            let var = format!("{prefix}{key}");
            // The API's own rule for names (Kubernetes 1.33 relaxes it to printable ASCII
            // without `=`), so exactly the names a pod's `env` could hold are accepted.
            if capstan_api::validation::names::is_env_var_name(&var).is_empty() {
                self.set(&var, value);
            } else {
                invalid.push(var);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            tracing::warn!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{object} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            );
        }
    }

    fn into_strings(self) -> Vec<String> {
        self.entries
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    }
}

/// The ConfigMaps and Secrets read while building one environment, each read once so that all
/// variables see the same version of an object.
struct Objects<'a, S> {
    namespace: &'a str,
    source: &'a S,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl<'a, S: ObjectSource> Objects<'a, S> {
    fn new(namespace: &'a str, source: &'a S) -> Self {
        Objects {
            namespace,
            source,
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// The ConfigMap `name`; `Ok(None)` when it is missing and `optional`.
    async fn config_map(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.config_maps.contains_key(name) {
            let found = self
                .source
                .config_map(self.namespace, name)
                .await
                .map_err(|source| EnvError::ReadConfigMap {
                    namespace: self.namespace.to_string(),
                    name: name.to_string(),
                    source,
                })?;
            self.config_maps.insert(name.to_string(), found);
        }
        match self.config_maps.get(name) {
            Some(Some(config_map)) => Ok(Some(config_map)),
            _ if optional => Ok(None),
            _ => Err(EnvError::ConfigMapNotFound {
                name: name.to_string(),
            }),
        }
    }

    /// The Secret `name`; `Ok(None)` when it is missing and `optional`.
    async fn secret(&mut self, name: &str, optional: bool) -> Result<Option<&Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            let found = self
                .source
                .secret(self.namespace, name)
                .await
                .map_err(|source| EnvError::ReadSecret {
                    namespace: self.namespace.to_string(),
                    name: name.to_string(),
                    source,
                })?;
            self.secrets.insert(name.to_string(), found);
        }
        match self.secrets.get(name) {
            Some(Some(secret)) => Ok(Some(secret)),
            _ if optional => Ok(None),
            _ => Err(EnvError::SecretNotFound {
                name: name.to_string(),
            }),
        }
    }
}

/// The pod's namespace; an object without one lives in `default`.
pub(crate) fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// Secret values are bytes; the environment holds text.
fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Downward API fields

/// A `fieldRef` of an environment variable, as kubelet's `podFieldSelectorRuntimeValue`
/// resolves it: spec and status fields from the pod and the node, the rest from metadata.
pub(crate) fn pod_field_env_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    node: &NodeFacts,
) -> Result<String, EnvError> {
    let path = convert_field_label(selector)?;
    let spec = pod.spec.as_ref();
    let value = match path {
        // A pod the agent runs is bound to it, so its own name is the fallback.
        "spec.nodeName" => spec
            .and_then(|spec| spec.node_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| node.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|spec| spec.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => node.host_ip.clone(),
        "status.podIP" => node.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => node.pod_ips.join(","),
        _ => return metadata_field_value(pod, path),
    };
    Ok(value)
}

/// Kubelet's `ConvertDownwardAPIFieldLabel`: checks the version and that the path is one the
/// downward API offers, and maps the old `spec.host` alias.
fn convert_field_label(selector: &ObjectFieldSelector) -> Result<&str, EnvError> {
    // The API defaults an unset apiVersion to v1.
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if version != "v1" {
        return Err(EnvError::UnsupportedPodVersion(version.to_string()));
    }
    let label = selector.field_path.as_str();
    if let Some((path, _)) = split_subscript(label) {
        return match path {
            "metadata.annotations" | "metadata.labels" => Ok(label),
            _ => Err(EnvError::FieldLabelSubscript(label.to_string())),
        };
    }
    match label {
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.serviceAccountName"
        | "spec.schedulerName"
        | "status.phase"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Ok(label),
        "spec.host" => Ok("spec.nodeName"),
        _ => Err(EnvError::UnsupportedFieldLabel(label.to_string())),
    }
}

/// Kubelet's `fieldpath.ExtractFieldPathAsString`: the metadata fields, which is everything a
/// `downwardAPI` volume may read. A whole label or annotation map is rendered as sorted
/// `key="value"` lines; a missing key reads as empty.
pub(crate) fn metadata_field_value(pod: &Pod, field_path: &str) -> Result<String, EnvError> {
    let metadata = &pod.metadata;
    if let Some((path, key)) = split_subscript(field_path) {
        // The key itself was validated by the API server when the pod was created.
        let map = match path {
            "metadata.annotations" => &metadata.annotations,
            "metadata.labels" => &metadata.labels,
            _ => return Err(EnvError::UnsupportedFieldPath(field_path.to_string())),
        };
        return Ok(map
            .as_ref()
            .and_then(|map| map.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let value = match field_path {
        "metadata.annotations" => format_map(metadata.annotations.iter().flatten()),
        "metadata.labels" => format_map(metadata.labels.iter().flatten()),
        "metadata.name" => metadata.name.clone().unwrap_or_default(),
        "metadata.namespace" => metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => metadata.uid.clone().unwrap_or_default(),
        _ => return Err(EnvError::UnsupportedFieldPath(field_path.to_string())),
    };
    Ok(value)
}

/// `metadata.labels['key']` → `("metadata.labels", "key")`, as kubelet's
/// `SplitMaybeSubscriptedPath`.
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, key) = inner.split_once("['")?;
    (!path.is_empty()).then_some((path, key))
}

/// Kubelet's `fieldpath.FormatMap`: `key="value"` lines sorted by key (the BTreeMap's order),
/// values quoted as Go's `strconv.Quote` does, no trailing newline.
fn format_map<'m>(entries: impl Iterator<Item = (&'m String, &'m String)>) -> String {
    let lines: Vec<String> = entries
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect();
    lines.join("\n")
}

/// Go's `strconv.Quote` for the characters labels and annotations hold. Go also escapes
/// non-printable characters beyond the control ones; Rust's standard library cannot tell
/// those apart, so they are kept as they are.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Container resources

/// A `resourceFieldRef`, as kubelet's `ExtractContainerResourceValue` reports it: cpu in whole
/// units of the divisor (default 1 core) rounded up, the byte resources likewise (default
/// divisor 1 byte). `limits.*` of a container without that limit report the node's allocatable,
/// as kubelet's `MergeContainerResourceLimits` does. `container` is the one whose environment
/// is built; a `containerName` in the selector picks another.
pub(crate) fn resource_field_value(
    pod: &Pod,
    container: Option<&Container>,
    selector: &ResourceFieldSelector,
    node: &NodeFacts,
) -> Result<String, EnvError> {
    let container = match selector
        .container_name
        .as_deref()
        .filter(|name| !name.is_empty())
    {
        Some(name) => find_container(pod, name)
            .ok_or_else(|| EnvError::ContainerNotFound(name.to_string()))?,
        None => container.ok_or_else(|| EnvError::ContainerNotFound(String::new()))?,
    };
    let divisor = match &selector.divisor {
        Some(divisor) => parse_quantity_field(&divisor.0, "divisor")?,
        None => 0,
    };
    // A zero divisor means "unset", which is 1.
    let divisor = if divisor == 0 {
        NANOS_PER_UNIT
    } else {
        divisor
    };
    if divisor < 0 {
        return Err(EnvError::InvalidQuantity {
            field: "divisor".to_string(),
            value: selector
                .divisor
                .as_ref()
                .map(|d| d.0.clone())
                .unwrap_or_default(),
        });
    }

    let resource = selector.resource.as_str();
    let (section, name) = resource
        .split_once('.')
        .filter(|(section, _)| matches!(*section, "limits" | "requests"))
        .ok_or_else(|| EnvError::UnsupportedResource(resource.to_string()))?;
    let is_cpu = match name {
        "cpu" => true,
        "memory" | "ephemeral-storage" => false,
        name if name.starts_with("hugepages-") => false,
        _ => return Err(EnvError::UnsupportedResource(resource.to_string())),
    };

    let declared = container
        .resources
        .as_ref()
        .and_then(|resources| {
            if section == "limits" {
                resources.limits.as_ref()
            } else {
                resources.requests.as_ref()
            }
        })
        .and_then(|quantities| quantities.get(name));
    let amount = match declared {
        Some(quantity) => parse_quantity_field(&quantity.0, resource)?,
        None if section == "limits" => node_allocatable(node, name),
        None => 0,
    };

    let value = if is_cpu {
        ceil_div(
            ceil_div(amount, NANOS_PER_MILLI),
            ceil_div(divisor, NANOS_PER_MILLI),
        )
    } else {
        ceil_div(
            ceil_div(amount, NANOS_PER_UNIT),
            ceil_div(divisor, NANOS_PER_UNIT),
        )
    };
    Ok(value.to_string())
}

/// The node's allocatable amount of `resource` in nano-units; 0 for resources kubelet does not
/// default (hugepages).
fn node_allocatable(node: &NodeFacts, resource: &str) -> i128 {
    match resource {
        "cpu" => i128::from(node.allocatable_cpu_millis) * NANOS_PER_MILLI,
        "memory" => i128::from(node.allocatable_memory_bytes) * NANOS_PER_UNIT,
        "ephemeral-storage" => i128::from(node.allocatable_ephemeral_bytes) * NANOS_PER_UNIT,
        _ => 0,
    }
}

/// The container of the pod named `name`, init containers included, as kubelet's
/// `findContainerInPod`.
fn find_container<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|container| container.name == name)
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;
const NANOS_PER_MILLI: i128 = 1_000_000;

fn parse_quantity_field(text: &str, field: &str) -> Result<i128, EnvError> {
    parse_quantity(text).ok_or_else(|| EnvError::InvalidQuantity {
        field: field.to_string(),
        value: text.to_string(),
    })
}

/// Kubernetes' `Quantity.Value()`: whole units rounded up, of a quantity in nano-units.
pub(crate) fn quantity_whole_units(nanos: i128) -> i128 {
    ceil_div(nanos, NANOS_PER_UNIT)
}

/// Division rounding toward positive infinity; a zero divisor gives 0 rather than a panic.
fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    if denominator == 0 {
        return 0;
    }
    let quotient = numerator / denominator;
    let exact = numerator % denominator == 0;
    if !exact && (numerator > 0) == (denominator > 0) {
        quotient + 1
    } else {
        quotient
    }
}

/// A quantity (`500m`, `1Gi`, `2e3`) in exact nano-units, rounded up below a nano-unit as
/// Kubernetes does.
pub(crate) fn parse_quantity(text: &str) -> Option<i128> {
    capstan_api::quantity::Quantity::parse(text).map(capstan_api::quantity::Quantity::nanos)
}

/// An in-memory [`ObjectSource`] for the tests of this crate.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::{ObjectSource, SourceError};

    /// Objects keyed by `namespace/name`; `failing` makes every read fail.
    #[derive(Debug, Default)]
    pub(crate) struct FakeSource {
        pub config_maps: Mutex<BTreeMap<String, ConfigMap>>,
        pub secrets: Mutex<BTreeMap<String, Secret>>,
        pub failing: bool,
    }

    impl FakeSource {
        pub fn with_config_map(self, namespace: &str, name: &str, data: &[(&str, &str)]) -> Self {
            self.put_config_map(namespace, name, data);
            self
        }

        pub fn with_secret(self, namespace: &str, name: &str, data: &[(&str, &str)]) -> Self {
            self.put_secret(namespace, name, data);
            self
        }

        pub fn put_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
            let config_map = ConfigMap {
                metadata: meta(namespace, name),
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ConfigMap::default()
            };
            let mut config_maps = self.config_maps.lock().unwrap_or_else(|e| e.into_inner());
            config_maps.insert(format!("{namespace}/{name}"), config_map);
        }

        pub fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
            let secret = Secret {
                metadata: meta(namespace, name),
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                        .collect(),
                ),
                ..Secret::default()
            };
            let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
            secrets.insert(format!("{namespace}/{name}"), secret);
        }
    }

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(namespace.to_string()),
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        }
    }

    impl ObjectSource for FakeSource {
        async fn config_map(
            &self,
            namespace: &str,
            name: &str,
        ) -> Result<Option<ConfigMap>, SourceError> {
            if self.failing {
                return Err(SourceError("connection refused".to_string()));
            }
            let config_maps = self.config_maps.lock().unwrap_or_else(|e| e.into_inner());
            Ok(config_maps.get(&format!("{namespace}/{name}")).cloned())
        }

        async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
            if self.failing {
                return Err(SourceError("connection refused".to_string()));
            }
            let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
            Ok(secrets.get(&format!("{namespace}/{name}")).cloned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSource;
    use super::*;

    /// A pod from JSON, the way tests elsewhere in the project write objects.
    fn pod(spec: serde_json::Value) -> Pod {
        let mut pod = serde_json::json!({
            "metadata": {
                "name": "web-0",
                "namespace": "default",
                "uid": "1234-5678",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "say \"hi\"\n"},
            },
            "spec": spec,
        });
        pod["spec"]["serviceAccountName"] = "builder".into();
        serde_json::from_value(pod).expect("test pod is valid")
    }

    fn node() -> NodeFacts {
        NodeFacts {
            node_name: "node-a".to_string(),
            host_ip: "10.0.0.5".to_string(),
            pod_ips: vec!["10.244.0.7".to_string(), "fd00::7".to_string()],
            allocatable_cpu_millis: 3500,
            allocatable_memory_bytes: 8 * 1024 * 1024 * 1024,
            allocatable_ephemeral_bytes: 100 * 1000 * 1000 * 1000,
        }
    }

    async fn env_of(spec: serde_json::Value, source: &FakeSource) -> Result<Vec<String>, EnvError> {
        let pod = pod(spec);
        let container = pod
            .spec
            .as_ref()
            .map(|s| s.containers[0].clone())
            .unwrap_or_default();
        container_env(&pod, &container, &node(), source).await
    }

    fn one_container(container: serde_json::Value) -> serde_json::Value {
        let mut container = container;
        container["name"] = "app".into();
        serde_json::json!({"nodeName": "node-a", "containers": [container]})
    }

    #[tokio::test]
    async fn env_from_comes_first_and_env_overrides_in_place() {
        let source = FakeSource::default().with_config_map(
            "default",
            "cfg",
            &[("A", "from-cm"), ("B", "b")],
        );
        let spec = one_container(serde_json::json!({
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [
                {"name": "Z", "value": "z"},
                {"name": "A", "value": "from-env"},
                {"name": "Z", "value": "z2"},
            ],
        }));
        let env = env_of(spec, &source).await.unwrap();
        assert_eq!(env, ["A=from-env", "B=b", "Z=z2"]);
    }

    #[tokio::test]
    async fn later_env_from_sources_override_earlier_ones() {
        let source = FakeSource::default()
            .with_config_map("default", "one", &[("X", "1")])
            .with_secret("default", "two", &[("X", "2"), ("Y", "y")]);
        let spec = one_container(serde_json::json!({
            "envFrom": [{"configMapRef": {"name": "one"}}, {"secretRef": {"name": "two"}}],
        }));
        assert_eq!(env_of(spec, &source).await.unwrap(), ["X=2", "Y=y"]);
    }

    #[tokio::test]
    async fn env_from_prefixes_keys_and_skips_invalid_names() {
        let source = FakeSource::default().with_config_map(
            "default",
            "cfg",
            &[
                ("1st", "ok-with-relaxed-names"),
                ("a=b", "bad"),
                ("tab\tkey", "bad"),
                ("key", "v"),
            ],
        );
        let spec = one_container(serde_json::json!({
            "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cfg"}}],
        }));
        assert_eq!(
            env_of(spec, &source).await.unwrap(),
            ["P_1st=ok-with-relaxed-names", "P_key=v"]
        );
    }

    #[tokio::test]
    async fn values_expand_references_to_earlier_variables() {
        let source = FakeSource::default().with_config_map("default", "cfg", &[("HOST", "db")]);
        let cases = [
            ("$(HOST):5432", "db:5432"),
            ("$(FIRST)-$(HOST)", "one-db"),
            ("$$(HOST)", "$(HOST)"),
            ("$$$(HOST)", "$db"),
            ("$(LATER) stays", "$(LATER) stays"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("cost $5 $", "cost $5 $"),
            ("open $(HOST", "open $(HOST"),
            ("$()", "$()"),
            ("naïve $(HOST) ü", "naïve db ü"),
        ];
        for (value, want) in cases {
            let spec = one_container(serde_json::json!({
                "envFrom": [{"configMapRef": {"name": "cfg"}}],
                "env": [
                    {"name": "FIRST", "value": "one"},
                    {"name": "V", "value": value},
                    {"name": "LATER", "value": "late"},
                ],
            }));
            let env = env_of(spec, &source).await.unwrap();
            assert_eq!(env[2], format!("V={want}"), "value {value:?}");
        }
    }

    #[test]
    fn command_expansion_uses_the_final_environment() {
        let env = ["A=1".to_string(), "B=x=y".to_string(), "A=2".to_string()];
        let cases = [
            ("echo $(A)", "echo 2"),
            ("$(B)", "x=y"),
            ("$$(A)", "$(A)"),
            ("$(C)", "$(C)"),
            ("", ""),
            ("$", "$"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &env), want, "input {input:?}");
        }
    }

    #[tokio::test]
    async fn config_map_and_secret_keys_are_read() {
        let source = FakeSource::default()
            .with_config_map("default", "cfg", &[("mode", "fast")])
            .with_secret("default", "creds", &[("password", "hunter2")]);
        let spec = one_container(serde_json::json!({
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            ],
        }));
        assert_eq!(
            env_of(spec, &source).await.unwrap(),
            ["MODE=fast", "PASSWORD=hunter2"]
        );
    }

    #[tokio::test]
    async fn missing_references_fail_with_kubelets_words_unless_optional() {
        let source = FakeSource::default()
            .with_config_map("default", "cfg", &[("k", "v")])
            .with_secret("default", "creds", &[("k", "v")]);
        let cases = [
            (
                serde_json::json!({"configMapKeyRef": {"name": "nope", "key": "k"}}),
                "configmap \"nope\" not found",
            ),
            (
                serde_json::json!({"secretKeyRef": {"name": "nope", "key": "k"}}),
                "secret \"nope\" not found",
            ),
            (
                serde_json::json!({"configMapKeyRef": {"name": "cfg", "key": "missing"}}),
                "couldn't find key missing in ConfigMap default/cfg",
            ),
            (
                serde_json::json!({"secretKeyRef": {"name": "creds", "key": "missing"}}),
                "couldn't find key missing in Secret default/creds",
            ),
        ];
        for (value_from, want) in cases {
            let spec = one_container(
                serde_json::json!({"env": [{"name": "V", "valueFrom": value_from.clone()}]}),
            );
            let error = env_of(spec, &source).await.unwrap_err();
            assert_eq!(error.to_string(), want);

            // The same reference marked optional leaves the variable out, and an earlier value
            // of it in place.
            let mut optional = value_from.clone();
            for reference in ["configMapKeyRef", "secretKeyRef"] {
                if let Some(selector) = optional.get_mut(reference) {
                    selector["optional"] = true.into();
                }
            }
            let spec = one_container(serde_json::json!({"env": [
                {"name": "V", "value": "earlier"},
                {"name": "V", "valueFrom": optional},
                {"name": "W", "value": "w"},
            ]}));
            assert_eq!(
                env_of(spec, &source).await.unwrap(),
                ["V=earlier", "W=w"],
                "{want}"
            );
        }
    }

    #[tokio::test]
    async fn missing_env_from_sources_fail_unless_optional() {
        let source = FakeSource::default();
        let spec = one_container(serde_json::json!({"envFrom": [{"secretRef": {"name": "gone"}}]}));
        assert_eq!(
            env_of(spec, &source).await.unwrap_err().to_string(),
            "secret \"gone\" not found"
        );
        let spec =
            one_container(serde_json::json!({"envFrom": [{"configMapRef": {"name": "gone"}}]}));
        assert_eq!(
            env_of(spec, &source).await.unwrap_err().to_string(),
            "configmap \"gone\" not found"
        );

        let spec = one_container(serde_json::json!({
            "envFrom": [
                {"secretRef": {"name": "gone", "optional": true}},
                {"configMapRef": {"name": "gone", "optional": true}},
            ],
            "env": [{"name": "A", "value": "a"}],
        }));
        assert_eq!(env_of(spec, &source).await.unwrap(), ["A=a"]);
    }

    #[tokio::test]
    async fn a_failing_source_is_reported_as_a_read_error() {
        let source = FakeSource {
            failing: true,
            ..FakeSource::default()
        };
        let spec = one_container(
            serde_json::json!({"envFrom": [{"configMapRef": {"name": "cfg", "optional": true}}]}),
        );
        let error = env_of(spec, &source).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "couldn't get configMap default/cfg: connection refused"
        );
    }

    #[tokio::test]
    async fn field_refs_read_the_pod_and_the_node() {
        let cases = [
            ("metadata.name", "web-0"),
            ("metadata.namespace", "default"),
            ("metadata.uid", "1234-5678"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['absent']", ""),
            ("metadata.annotations['note']", "say \"hi\"\n"),
            ("metadata.labels", "app=\"web\"\ntier=\"front\""),
            ("metadata.annotations", "note=\"say \\\"hi\\\"\\n\""),
            ("spec.nodeName", "node-a"),
            ("spec.host", "node-a"),
            ("spec.serviceAccountName", "builder"),
            ("status.hostIP", "10.0.0.5"),
            ("status.hostIPs", "10.0.0.5"),
            ("status.podIP", "10.244.0.7"),
            ("status.podIPs", "10.244.0.7,fd00::7"),
        ];
        for (path, want) in cases {
            let spec = one_container(serde_json::json!({
                "env": [{"name": "V", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}],
            }));
            let env = env_of(spec, &FakeSource::default()).await.unwrap();
            assert_eq!(env, [format!("V={want}")], "fieldPath {path}");
        }
    }

    #[tokio::test]
    async fn unsupported_field_refs_fail_with_kubelets_words() {
        let cases = [
            (
                "v1",
                "spec.containers",
                "field label not supported: spec.containers",
            ),
            (
                "v1",
                "spec.nodeName['x']",
                "field label does not support subscript: spec.nodeName['x']",
            ),
            ("v1", "status.phase", "unsupported fieldPath: status.phase"),
            ("v2", "metadata.name", "unsupported pod version: v2"),
        ];
        for (version, path, want) in cases {
            let spec = one_container(serde_json::json!({
                "env": [{"name": "V", "valueFrom": {"fieldRef": {"apiVersion": version, "fieldPath": path}}}],
            }));
            let error = env_of(spec, &FakeSource::default()).await.unwrap_err();
            assert_eq!(error.to_string(), want);
        }
    }

    #[tokio::test]
    async fn resource_field_refs_round_up_and_default_limits_to_allocatable() {
        let resources = serde_json::json!({
            "limits": {"cpu": "1500m", "memory": "1Gi"},
            "requests": {"cpu": "250m", "memory": "100M", "ephemeral-storage": "1Gi"},
        });
        let cases = [
            ("limits.cpu", None, "2"),
            ("limits.cpu", Some("1m"), "1500"),
            ("limits.cpu", Some("100m"), "15"),
            ("requests.cpu", None, "1"),
            ("requests.cpu", Some("1m"), "250"),
            ("limits.memory", None, "1073741824"),
            ("limits.memory", Some("1Mi"), "1024"),
            ("requests.memory", Some("1Mi"), "96"),
            ("requests.memory", Some("0"), "100000000"),
            ("requests.ephemeral-storage", Some("1G"), "2"),
            // No limit set: the node's allocatable.
            ("limits.ephemeral-storage", Some("1G"), "100"),
            ("limits.hugepages-2Mi", None, "0"),
        ];
        for (resource, divisor, want) in cases {
            let mut selector = serde_json::json!({"resource": resource});
            if let Some(divisor) = divisor {
                selector["divisor"] = divisor.into();
            }
            let spec = one_container(serde_json::json!({
                "resources": resources,
                "env": [{"name": "V", "valueFrom": {"resourceFieldRef": selector}}],
            }));
            let env = env_of(spec, &FakeSource::default()).await.unwrap();
            assert_eq!(env, [format!("V={want}")], "{resource} / {divisor:?}");
        }

        // Without any limits, cpu and memory report the node's allocatable.
        let spec = one_container(serde_json::json!({"env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}},
            {"name": "REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
        ]}));
        let env = env_of(spec, &FakeSource::default()).await.unwrap();
        assert_eq!(env, ["CPU=4", "CPU_M=3500", "MEM=8", "REQ=0"]);
    }

    #[tokio::test]
    async fn resource_field_refs_may_name_another_container() {
        let spec = serde_json::json!({
            "containers": [
                {"name": "app", "env": [
                    {"name": "SIDE", "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.memory", "divisor": "1Mi"}}},
                ]},
                {"name": "side", "resources": {"limits": {"memory": "64Mi"}}},
            ],
        });
        assert_eq!(
            env_of(spec, &FakeSource::default()).await.unwrap(),
            ["SIDE=64"]
        );

        let spec = one_container(serde_json::json!({"env": [
            {"name": "V", "valueFrom": {"resourceFieldRef": {"containerName": "ghost", "resource": "limits.cpu"}}},
        ]}));
        assert_eq!(
            env_of(spec, &FakeSource::default())
                .await
                .unwrap_err()
                .to_string(),
            "container ghost not found"
        );

        let spec = one_container(serde_json::json!({"env": [
            {"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}}},
        ]}));
        assert_eq!(
            env_of(spec, &FakeSource::default())
                .await
                .unwrap_err()
                .to_string(),
            "unsupported container resource : limits.nvidia.com/gpu"
        );
    }

    #[tokio::test]
    async fn an_empty_value_is_an_empty_variable() {
        let spec =
            one_container(serde_json::json!({"env": [{"name": "E"}, {"name": "F", "value": ""}]}));
        assert_eq!(
            env_of(spec, &FakeSource::default()).await.unwrap(),
            ["E=", "F="]
        );
    }

    #[test]
    fn quantities_parse_to_nano_units() {
        let cases = [
            ("1", Some(1_000_000_000)),
            ("1500m", Some(1_500_000_000)),
            ("1Ki", Some(1024 * 1_000_000_000)),
            ("2e3", Some(2_000 * 1_000_000_000)),
            ("0.1", Some(100_000_000)),
            ("1n", Some(1)),
            ("abc", None),
            ("", None),
            ("1Xi", None),
            ("1e99999999999", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_quantity(text), want, "{text:?}");
        }
    }
}
