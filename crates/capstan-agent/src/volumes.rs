//! Pod volumes, prepared on the node before the containers start, as kubelet's volume manager
//! does, and the bind mounts that put them into each container.
//!
//! Every volume that has content of its own lives in `<pod dir>/volumes/<plugin>/<name>`, with
//! kubelet's plugin directory names (`kubernetes.io~configmap`…), so the layout is the one
//! operators know:
//!
//! - `emptyDir`: a directory (mode 0777, so any user of the pod can write); with
//!   `medium: Memory` a tmpfs mounted over it, sized as kubelet sizes it (the smallest of
//!   `sizeLimit`, the pod's memory limit and the node's allocatable memory).
//! - `configMap`, `secret`, `downwardAPI`, `projected`: files written with kubelet's atomic
//!   writer (see [`atomic_writer`]), refreshed by calling [`PodVolumes::prepare`] again. Like
//!   kubelet, secret, downwardAPI and projected volumes sit on a tmpfs so their content never
//!   touches the disk, and all four are mounted read-only.
//! - `hostPath`: no directory of its own; the node's path, checked against its `type`.
//!
//! Not supported: other volume kinds (persistentVolumeClaim, ephemeral, image…), which fail
//! with [`VolumeError::Unsupported`]; `subPathExpr`; `serviceAccountToken` and
//! `clusterTrustBundle` projections (the first is skipped with a warning, since capstan issues
//! no tokens, the second is refused); `fsGroup` ownership of volume files; mount propagation.
//!
//! The file system work is synchronous: it is a handful of small local files per volume.

mod atomic_writer;
mod host_path;
mod tmpfs;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use capstan_runtime::container::Mount;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::env::{
    self, EnvError, NodeFacts, ObjectSource, SourceError, metadata_field_value, pod_namespace,
    resource_field_value,
};
use atomic_writer::{FileProjection, Payload};

/// The volumes of one pod, prepared on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    volumes: BTreeMap<String, PreparedVolume>,
}

/// One prepared volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    pub kind: VolumeKind,
    /// Where the content is on the host: the volume's directory under the pod's, or the
    /// node path of a hostPath volume.
    pub host_path: PathBuf,
    /// Backed by a tmpfs the agent mounted ([`cleanup`] unmounts it).
    pub tmpfs: bool,
    /// Mounted read-only whatever the volumeMount says (kubelet's rule for configMap, secret,
    /// downwardAPI and projected volumes).
    pub read_only: bool,
}

/// The volume kinds capstan implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    EmptyDir,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    HostPath,
}

impl VolumeKind {
    /// Kubelet's directory for the kind's volumes under `<pod dir>/volumes`.
    fn plugin_dir(self) -> &'static str {
        match self {
            VolumeKind::EmptyDir => "kubernetes.io~empty-dir",
            VolumeKind::ConfigMap => "kubernetes.io~configmap",
            VolumeKind::Secret => "kubernetes.io~secret",
            VolumeKind::DownwardApi => "kubernetes.io~downward-api",
            VolumeKind::Projected => "kubernetes.io~projected",
            VolumeKind::HostPath => "kubernetes.io~host-path",
        }
    }

    /// Kubelet backs these with a memory emptyDir so their content stays off the disk.
    fn memory_backed(self) -> bool {
        matches!(
            self,
            VolumeKind::Secret | VolumeKind::DownwardApi | VolumeKind::Projected
        )
    }
}

/// The kinds of object a pod's volumes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

/// Why a volume could not be prepared or mounted. Kubelet reports these as `FailedMount`
/// events (`MountVolume.SetUp failed for volume "x" : <message>`); the Display text is
/// kubelet's message where kubelet has one.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The pod uses a volume kind capstan does not implement; retrying does not help.
    #[error("volume \"{volume}\": {kind} volumes are not supported")]
    Unsupported { volume: String, kind: String },
    /// A referenced ConfigMap does not exist and is not optional; retrying helps once it exists.
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { name: String },
    /// A referenced Secret does not exist and is not optional; retrying helps once it exists.
    #[error("secret \"{name}\" not found")]
    SecretNotFound { name: String },
    /// An item names a key the ConfigMap lacks; retrying helps once it is added.
    #[error("configmap references non-existent config key: {key}")]
    ConfigMapKeyNotFound { key: String },
    /// An item names a key the Secret lacks; retrying helps once it is added.
    #[error("references non-existent secret key: {key}")]
    SecretKeyNotFound { key: String },
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
    /// A downwardAPI item that cannot be resolved; the spec must change.
    #[error(transparent)]
    DownwardApi(#[from] EnvError),
    /// An item path that would leave the volume or clash with the writer's own entries.
    #[error("invalid path: {reason}")]
    InvalidPath { reason: String },
    /// A hostPath with `..` in it.
    #[error("invalid HostPath `{path}`: must not contain '..'")]
    HostPathBacksteps { path: String },
    /// The hostPath is not what its `type` requires; retrying helps once the node has it.
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType {
        path: String,
        expected: &'static str,
    },
    /// A hostPath `type` Kubernetes does not define.
    #[error("{0} is an invalid volume type")]
    InvalidHostPathType(String),
    /// An emptyDir medium other than "" and "Memory" (hugepages).
    #[error("volume \"{volume}\": emptyDir medium {medium:?} is not supported")]
    UnsupportedMedium { volume: String, medium: String },
    /// An emptyDir `sizeLimit` that does not parse.
    #[error("volume \"{volume}\": invalid sizeLimit {value:?}")]
    InvalidSizeLimit { volume: String, value: String },
    /// A volumeMount naming no volume of the pod.
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    VolumeNotFound { volume: String, container: String },
    #[error("error SubPath `{sub_path}` must not be an absolute path")]
    SubPathAbsolute { sub_path: String },
    #[error("unable to provision SubPath `{sub_path}`: must not contain '..'")]
    SubPathBacksteps { sub_path: String },
    /// The subPath resolves (through symlinks) outside its volume, or cannot be resolved.
    /// Like kubelet, the message does not say where it leads; the log does.
    #[error(
        "failed to prepare subPath for volumeMount \"{volume_mount}\" of container \"{container}\""
    )]
    SubPathEscapes {
        volume_mount: String,
        container: String,
    },
    #[error(
        "subPathExpr of volumeMount \"{volume_mount}\" of container \"{container}\" is not supported"
    )]
    SubPathExprUnsupported {
        volume_mount: String,
        container: String,
    },
    /// A file system operation failed; whether a retry helps depends on the cause.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Mounting a tmpfs failed (the agent must run as root).
    #[error("mount tmpfs at {}: {source}", path.display())]
    Mount { path: PathBuf, source: nix::Error },
    /// Unmounting failed; a retry may help.
    #[error("unmount {}: {source}", path.display())]
    Unmount { path: PathBuf, source: nix::Error },
}

/// Kubernetes' default `defaultMode` of configMap, secret, downwardAPI and projected volumes.
const DEFAULT_MODE: u32 = 0o644;

impl PodVolumes {
    /// Creates or refreshes every volume of `pod` under `pod_dir/volumes/<kind>/<name>`
    /// (idempotent; called again when a referenced ConfigMap/Secret changes, files updated
    /// atomically). Stops at the first volume that fails; the volumes before it stay prepared,
    /// and a later call picks up where this one stopped.
    pub async fn prepare(
        pod: &Pod,
        pod_dir: &Path,
        node: &NodeFacts,
        source: &impl ObjectSource,
    ) -> Result<PodVolumes, VolumeError> {
        let mut volumes = BTreeMap::new();
        for volume in pod_volumes(pod) {
            let prepared = prepare_volume(pod, volume, pod_dir, node, source).await?;
            volumes.insert(volume.name.clone(), prepared);
        }
        Ok(PodVolumes { volumes })
    }

    /// The prepared volume `name`.
    pub fn get(&self, name: &str) -> Option<&PreparedVolume> {
        self.volumes.get(name)
    }

    /// The mounts of one container from its volumeMounts, in order: `readOnly` honoured (and
    /// forced for the kinds kubelet forces), a `subPath` resolved inside its volume (created as
    /// a directory when missing, as kubelet does) and refused when it escapes.
    pub fn container_mounts(&self, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let mut mounts = Vec::new();
        for volume_mount in container.volume_mounts.iter().flatten() {
            let volume = self.volumes.get(&volume_mount.name).ok_or_else(|| {
                VolumeError::VolumeNotFound {
                    volume: volume_mount.name.clone(),
                    container: container.name.clone(),
                }
            })?;
            if volume_mount
                .sub_path_expr
                .as_deref()
                .is_some_and(|expr| !expr.is_empty())
            {
                return Err(VolumeError::SubPathExprUnsupported {
                    volume_mount: volume_mount.name.clone(),
                    container: container.name.clone(),
                });
            }
            let source = match volume_mount
                .sub_path
                .as_deref()
                .filter(|sub_path| !sub_path.is_empty())
            {
                Some(sub_path) => resolve_sub_path(&volume.host_path, sub_path)
                    .map_err(|error| sub_path_error(error, &volume_mount.name, &container.name))?,
                None => volume.host_path.clone(),
            };
            // Kubelet makes a relative mountPath absolute.
            let destination = if volume_mount.mount_path.starts_with('/') {
                volume_mount.mount_path.clone()
            } else {
                format!("/{}", volume_mount.mount_path)
            };
            mounts.push(Mount::Bind {
                source,
                destination,
                read_only: volume_mount.read_only.unwrap_or(false) || volume.read_only,
            });
        }
        Ok(mounts)
    }

    /// Names of the ConfigMaps and Secrets the pod's volumes read (so the agent knows which
    /// changes to refresh on), each once, in the order the pod names them.
    pub fn sources(pod: &Pod) -> Vec<(ObjectKind, String)> {
        let mut seen = BTreeSet::new();
        let mut sources = Vec::new();
        let mut add = |kind: ObjectKind, name: &str| {
            if seen.insert((kind, name.to_string())) {
                sources.push((kind, name.to_string()));
            }
        };
        for volume in pod_volumes(pod) {
            if let Some(config_map) = &volume.config_map {
                add(ObjectKind::ConfigMap, &config_map.name);
            }
            if let Some(secret) = &volume.secret {
                add(
                    ObjectKind::Secret,
                    secret.secret_name.as_deref().unwrap_or_default(),
                );
            }
            let projections = volume
                .projected
                .iter()
                .flat_map(|projected| projected.sources.iter().flatten());
            for projection in projections {
                if let Some(config_map) = &projection.config_map {
                    add(ObjectKind::ConfigMap, &config_map.name);
                }
                if let Some(secret) = &projection.secret {
                    add(ObjectKind::Secret, &secret.name);
                }
            }
        }
        sources
    }
}

/// Unmounts tmpfs volumes and removes the pod's volume directories (idempotent). Everything
/// mounted below the volumes directory is unmounted first, so the removal can never reach into
/// a mounted file system.
pub fn cleanup(pod_dir: &Path) -> Result<(), VolumeError> {
    let volumes_dir = pod_dir.join("volumes");
    match fs::symlink_metadata(&volumes_dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(VolumeError::Io {
                operation: "stat",
                path: volumes_dir,
                source,
            });
        }
        Ok(_) => {}
    }
    for mount_point in tmpfs::mounts_under(&volumes_dir)? {
        tmpfs::unmount(&mount_point)?;
    }
    match fs::remove_dir_all(&volumes_dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(VolumeError::Io {
            operation: "remove",
            path: volumes_dir,
            source: error,
        }),
        _ => Ok(()),
    }
}

fn pod_volumes(pod: &Pod) -> impl Iterator<Item = &Volume> {
    pod.spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
}

async fn prepare_volume(
    pod: &Pod,
    volume: &Volume,
    pod_dir: &Path,
    node: &NodeFacts,
    source: &impl ObjectSource,
) -> Result<PreparedVolume, VolumeError> {
    let namespace = pod_namespace(pod);
    let name = volume.name.as_str();

    if let Some(host_path) = &volume.host_path {
        host_path::check(&host_path.path, host_path.type_.as_deref().unwrap_or(""))?;
        return Ok(PreparedVolume {
            kind: VolumeKind::HostPath,
            host_path: PathBuf::from(&host_path.path),
            tmpfs: false,
            read_only: false,
        });
    }
    if let Some(config_map) = &volume.config_map {
        let payload = config_map_payload(
            source,
            namespace,
            &config_map.name,
            config_map.items.as_deref(),
            file_mode(config_map.default_mode, DEFAULT_MODE),
            config_map.optional.unwrap_or(false),
        )
        .await?;
        return write_volume(pod, pod_dir, node, VolumeKind::ConfigMap, name, &payload);
    }
    if let Some(secret) = &volume.secret {
        let payload = secret_payload(
            source,
            namespace,
            secret.secret_name.as_deref().unwrap_or_default(),
            secret.items.as_deref(),
            file_mode(secret.default_mode, DEFAULT_MODE),
            secret.optional.unwrap_or(false),
        )
        .await?;
        return write_volume(pod, pod_dir, node, VolumeKind::Secret, name, &payload);
    }
    if let Some(downward_api) = &volume.downward_api {
        let default_mode = file_mode(downward_api.default_mode, DEFAULT_MODE);
        let payload =
            downward_api_payload(pod, node, downward_api.items.iter().flatten(), default_mode)?;
        return write_volume(pod, pod_dir, node, VolumeKind::DownwardApi, name, &payload);
    }
    if let Some(projected) = &volume.projected {
        let default_mode = file_mode(projected.default_mode, DEFAULT_MODE);
        let mut payload = Payload::new();
        for projection in projected.sources.iter().flatten() {
            payload.extend(
                projection_payload(pod, node, name, projection, default_mode, source).await?,
            );
        }
        return write_volume(pod, pod_dir, node, VolumeKind::Projected, name, &payload);
    }
    if volume.empty_dir.is_none()
        && let Some(kind) = other_kind(volume)
    {
        let volume = name.to_string();
        return Err(VolumeError::Unsupported { volume, kind });
    }
    // What is left is an emptyDir, the API's default for a volume without a source.
    prepare_empty_dir(pod, volume, pod_dir, node)
}

fn prepare_empty_dir(
    pod: &Pod,
    volume: &Volume,
    pod_dir: &Path,
    node: &NodeFacts,
) -> Result<PreparedVolume, VolumeError> {
    let name = volume.name.as_str();
    let empty_dir = volume.empty_dir.as_ref();
    let medium = empty_dir.and_then(|empty_dir| empty_dir.medium.as_deref());
    // `Some` for a memory volume, holding its tmpfs `size=` option.
    let tmpfs_size = match medium.unwrap_or("") {
        "" => None,
        "Memory" => {
            let size_limit = empty_dir.and_then(|empty_dir| empty_dir.size_limit.as_ref());
            Some(memory_volume_size(pod, node, size_limit, name)?)
        }
        other => {
            let (volume, medium) = (name.to_string(), other.to_string());
            return Err(VolumeError::UnsupportedMedium { volume, medium });
        }
    };
    let dir = volume_dir(pod_dir, VolumeKind::EmptyDir, name);
    ensure_dir(&dir)?;
    if let Some(size) = tmpfs_size {
        tmpfs::mount(&dir, size)?;
    }
    Ok(PreparedVolume {
        kind: VolumeKind::EmptyDir,
        host_path: dir,
        tmpfs: tmpfs_size.is_some(),
        read_only: false,
    })
}

/// Writes a configMap, secret, downwardAPI or projected volume's payload into its directory
/// (on a tmpfs for the memory-backed kinds).
fn write_volume(
    pod: &Pod,
    pod_dir: &Path,
    node: &NodeFacts,
    kind: VolumeKind,
    name: &str,
    payload: &Payload,
) -> Result<PreparedVolume, VolumeError> {
    let dir = volume_dir(pod_dir, kind, name);
    ensure_dir(&dir)?;
    let tmpfs = kind.memory_backed();
    if tmpfs {
        tmpfs::mount(&dir, memory_volume_size(pod, node, None, name)?)?;
    }
    atomic_writer::write(&dir, payload)?;
    Ok(PreparedVolume {
        kind,
        host_path: dir,
        tmpfs,
        read_only: true,
    })
}

fn volume_dir(pod_dir: &Path, kind: VolumeKind, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(kind.plugin_dir()).join(name)
}

/// Creates a volume directory with mode 0777 (kubelet's emptyDir mode, so containers running
/// as any user can use it); an existing one is left as it is.
fn ensure_dir(dir: &Path) -> Result<(), VolumeError> {
    if dir.is_dir() {
        return Ok(());
    }
    let io_error = |operation| {
        move |source| VolumeError::Io {
            operation,
            path: dir.to_path_buf(),
            source,
        }
    };
    if let Some(parent) = dir.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)
            .map_err(io_error("mkdir"))?;
    }
    match DirBuilder::new().mode(0o777).create(dir) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
            return Err(io_error("mkdir")(error));
        }
        _ => {}
    }
    // The umask has cut the mode given to mkdir.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(io_error("chmod"))
}

/// The API name of a volume's source when it is one capstan does not implement (read from the
/// serialized volume, so every kind the API knows is named without listing them here).
fn other_kind(volume: &Volume) -> Option<String> {
    let serialized = serde_json::to_value(volume).ok()?;
    serialized
        .as_object()?
        .keys()
        .find(|key| *key != "name")
        .cloned()
}

/// A `mode`/`defaultMode` as permission bits; the API limits it to 0..=0777.
fn file_mode(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|mode| u32::try_from(mode).ok())
        .map_or(default, |mode| mode & 0o7777)
}

async fn config_map_payload(
    source: &impl ObjectSource,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let config_map =
        source
            .config_map(namespace, name)
            .await
            .map_err(|source| VolumeError::ReadConfigMap {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
    // A missing optional ConfigMap makes an empty volume, as in kubelet.
    let config_map = match config_map {
        Some(config_map) => config_map,
        None if optional => Default::default(),
        None => {
            return Err(VolumeError::ConfigMapNotFound {
                name: name.to_string(),
            });
        }
    };
    let text = config_map
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.as_bytes()));
    let binary = config_map
        .binary_data
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.0.as_slice()));
    // `data` wins over `binaryData` for a key in both (the API forbids that anyway).
    let data: BTreeMap<&str, &[u8]> = binary.chain(text).collect();
    project_keys(&data, items, default_mode, optional, |key| {
        VolumeError::ConfigMapKeyNotFound { key }
    })
}

async fn secret_payload(
    source: &impl ObjectSource,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let secret =
        source
            .secret(namespace, name)
            .await
            .map_err(|source| VolumeError::ReadSecret {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
    let secret = match secret {
        Some(secret) => secret,
        None if optional => Default::default(),
        None => {
            return Err(VolumeError::SecretNotFound {
                name: name.to_string(),
            });
        }
    };
    let data: BTreeMap<&str, &[u8]> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.0.as_slice()))
        .collect();
    project_keys(&data, items, default_mode, optional, |key| {
        VolumeError::SecretKeyNotFound { key }
    })
}

/// Kubelet's `MakePayload` of configMap and secret volumes: every key as a file of its name,
/// or with `items` just those keys at their paths (a missing key is an error unless optional).
fn project_keys(
    data: &BTreeMap<&str, &[u8]>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    missing_key: impl Fn(String) -> VolumeError,
) -> Result<Payload, VolumeError> {
    let file = |bytes: &[u8], mode| FileProjection {
        data: bytes.to_vec(),
        mode,
    };
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        return Ok(data
            .iter()
            .map(|(key, bytes)| (key.to_string(), file(bytes, default_mode)))
            .collect());
    };
    let mut payload = Payload::new();
    for item in items {
        match data.get(item.key.as_str()) {
            Some(bytes) => {
                payload.insert(
                    item.path.clone(),
                    file(bytes, file_mode(item.mode, default_mode)),
                );
            }
            None if optional => {}
            None => return Err(missing_key(item.key.clone())),
        }
    }
    Ok(payload)
}

/// Kubelet's downwardAPI volume data: metadata fields (labels and annotations as sorted
/// `key="value"` lines) and container resources.
fn downward_api_payload<'i>(
    pod: &Pod,
    node: &NodeFacts,
    items: impl Iterator<Item = &'i DownwardAPIVolumeFile>,
    default_mode: u32,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            metadata_field_value(pod, &field.field_path)?
        } else if let Some(resource) = &item.resource_field_ref {
            resource_field_value(pod, None, resource, node)?
        } else {
            String::new()
        };
        payload.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: file_mode(item.mode, default_mode),
            },
        );
    }
    Ok(payload)
}

/// One source of a projected volume; a later source's file replaces an earlier one's at the
/// same path.
async fn projection_payload(
    pod: &Pod,
    node: &NodeFacts,
    volume: &str,
    projection: &VolumeProjection,
    default_mode: u32,
    source: &impl ObjectSource,
) -> Result<Payload, VolumeError> {
    let namespace = pod_namespace(pod);
    if let Some(config_map) = &projection.config_map {
        let optional = config_map.optional.unwrap_or(false);
        let items = config_map.items.as_deref();
        return config_map_payload(
            source,
            namespace,
            &config_map.name,
            items,
            default_mode,
            optional,
        )
        .await;
    }
    if let Some(secret) = &projection.secret {
        let optional = secret.optional.unwrap_or(false);
        return secret_payload(
            source,
            namespace,
            &secret.name,
            secret.items.as_deref(),
            default_mode,
            optional,
        )
        .await;
    }
    if let Some(downward_api) = &projection.downward_api {
        return downward_api_payload(pod, node, downward_api.items.iter().flatten(), default_mode);
    }
    if let Some(token) = &projection.service_account_token {
        // Capstan issues no service account tokens; the rest of the volume is still useful.
        tracing::warn!(
            volume,
            path = token.path,
            "skipping serviceAccountToken projection: not supported"
        );
        return Ok(Payload::new());
    }
    if projection.cluster_trust_bundle.is_some() {
        let kind = "projected clusterTrustBundle".to_string();
        return Err(VolumeError::Unsupported {
            volume: volume.to_string(),
            kind,
        });
    }
    Ok(Payload::new())
}

/// The `size=` of a memory-backed volume, as kubelet's `calculateEmptyDirMemorySize`: the
/// node's allocatable memory, lowered to the pod's memory limit when it has one, lowered to
/// the volume's `sizeLimit` when set. `None` (no size option) when nothing bounds it, e.g. a
/// node whose allocatable memory is not known.
fn memory_volume_size(
    pod: &Pod,
    node: &NodeFacts,
    size_limit: Option<&Quantity>,
    volume: &str,
) -> Result<Option<u64>, VolumeError> {
    let mut size =
        (node.allocatable_memory_bytes > 0).then(|| i128::from(node.allocatable_memory_bytes));
    let mut lower_to = |bound: i128| {
        if bound > 0 && size.is_none_or(|size| bound <= size) {
            size = Some(bound);
        }
    };
    if let Some(limit) = pod_memory_limit(pod) {
        lower_to(limit);
    }
    if let Some(size_limit) = size_limit {
        let nanos =
            env::parse_quantity(&size_limit.0).ok_or_else(|| VolumeError::InvalidSizeLimit {
                volume: volume.to_string(),
                value: size_limit.0.clone(),
            })?;
        lower_to(env::quantity_whole_units(nanos));
    }
    Ok(size.map(|size| u64::try_from(size).unwrap_or(u64::MAX)))
}

/// The pod's memory limit in bytes as kubelet's pod cgroup has it: only when every container
/// (init containers included) sets one; regular containers and sidecars add up, and a plain
/// init container (which runs alone, beside the sidecars started before it) may raise it.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |container: &Container| -> Option<i128> {
        let quantity = container
            .resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("memory")?;
        let bytes = env::quantity_whole_units(env::parse_quantity(&quantity.0)?);
        (bytes > 0).then_some(bytes)
    };
    let mut total = 0i128;
    for container in &spec.containers {
        total = total.saturating_add(limit(container)?);
    }
    let mut sidecars = 0i128;
    let mut init_peak = 0i128;
    for container in spec.init_containers.iter().flatten() {
        let own = limit(container)?;
        if container.restart_policy.as_deref() == Some("Always") {
            total = total.saturating_add(own);
            sidecars = sidecars.saturating_add(own);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(own.saturating_add(sidecars));
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|overhead| overhead.get("memory"))
        .and_then(|quantity| env::parse_quantity(&quantity.0))
        .map_or(0, env::quantity_whole_units);
    Some(total.max(init_peak).saturating_add(overhead))
}

/// Why a subPath could not be used; turned into the kubelet message by [`sub_path_error`].
enum SubPathProblem {
    Absolute,
    Backsteps,
    Escapes(String),
}

fn sub_path_error(
    problem: (SubPathProblem, String),
    volume_mount: &str,
    container: &str,
) -> VolumeError {
    let (problem, sub_path) = problem;
    match problem {
        SubPathProblem::Absolute => VolumeError::SubPathAbsolute { sub_path },
        SubPathProblem::Backsteps => VolumeError::SubPathBacksteps { sub_path },
        SubPathProblem::Escapes(detail) => {
            // The detail may describe the host's file system, so it goes to the log only.
            tracing::warn!(
                volume_mount,
                container,
                sub_path,
                detail,
                "refusing subPath"
            );
            VolumeError::SubPathEscapes {
                volume_mount: volume_mount.to_string(),
                container: container.to_string(),
            }
        }
    }
}

/// The host path of `sub_path` inside the volume at `root`, symlinks resolved, and refused
/// when it leads outside the volume. A missing subPath is created as a directory with the
/// volume's mode, as kubelet does, but only below a directory that is inside the volume.
///
/// The check and the later bind mount are not atomic: a container that can write to the
/// volume could swap a directory for a symlink in between (kubelet closes that gap by
/// mounting through an open file descriptor; the runtime here mounts by path).
fn resolve_sub_path(root: &Path, sub_path: &str) -> Result<PathBuf, (SubPathProblem, String)> {
    let problem = |problem| (problem, sub_path.to_string());
    if sub_path.starts_with('/') {
        return Err(problem(SubPathProblem::Absolute));
    }
    if sub_path.split('/').any(|part| part == "..") {
        return Err(problem(SubPathProblem::Backsteps));
    }
    let escapes = |detail: String| problem(SubPathProblem::Escapes(detail));
    let root = fs::canonicalize(root)
        .map_err(|error| escapes(format!("resolving the volume: {error}")))?;
    let inside = |path: &Path| -> Result<PathBuf, (SubPathProblem, String)> {
        let resolved = fs::canonicalize(path)
            .map_err(|error| escapes(format!("resolving {}: {error}", path.display())))?;
        if resolved.starts_with(&root) {
            Ok(resolved)
        } else {
            Err(escapes(format!(
                "{} resolves to {}",
                path.display(),
                resolved.display()
            )))
        }
    };

    let wanted = root.join(sub_path);
    if fs::symlink_metadata(&wanted).is_err() {
        // The deepest part that exists must already be inside the volume.
        let mut existing = wanted.as_path();
        let mut missing = Vec::new();
        while fs::symlink_metadata(existing).is_err() {
            missing.push(existing);
            existing = existing.parent().unwrap_or(&root);
        }
        inside(existing)?;
        let mode = fs::metadata(&root)
            .map(|metadata| metadata.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        // Each new directory gets the volume's mode whatever the umask, as in kubelet (a
        // subPath of an emptyDir must stay writable for the pod's users).
        for dir in missing.into_iter().rev() {
            let failed = |error: io::Error| escapes(format!("creating {}: {error}", dir.display()));
            match fs::create_dir(dir) {
                Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(failed(error));
                }
                _ => {}
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(failed)?;
        }
    }
    inside(&wanted)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::env::fake::FakeSource;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-0",
                "namespace": "default",
                "uid": "1234-5678",
                "labels": {"tier": "front", "app": "web"},
                "annotations": {"note": "hi"},
            },
            "spec": spec,
        }))
        .expect("test pod is valid")
    }

    fn with_volumes(volumes: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "containers": [{"name": "app", "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}}}],
            "volumes": volumes,
        }))
    }

    fn node() -> NodeFacts {
        NodeFacts {
            node_name: "node-a".to_string(),
            host_ip: "10.0.0.5".to_string(),
            pod_ips: vec!["10.244.0.7".to_string()],
            allocatable_cpu_millis: 4000,
            allocatable_memory_bytes: 8 << 30,
            allocatable_ephemeral_bytes: 100 << 30,
        }
    }

    /// A pod directory whose volumes are cleaned up even when a test fails, so no tmpfs is
    /// left mounted.
    struct PodDir(tempfile::TempDir);

    impl PodDir {
        fn new() -> PodDir {
            PodDir(tempfile::tempdir().unwrap())
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    impl Drop for PodDir {
        fn drop(&mut self) {
            let _ = cleanup(self.0.path());
        }
    }

    fn is_root() -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            eprintln!("skipped: tmpfs volumes need root");
        }
        root
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// The files a container would see: name → content, following the user-visible links.
    fn visible_files(dir: &Path) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.starts_with("..") && dir.join(&name).is_file() {
                files.insert(name.clone(), read(&dir.join(&name)));
            }
        }
        files
    }

    fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn config_map_volumes_hold_every_key_or_the_listed_items() {
        let source = FakeSource::default().with_config_map(
            "default",
            "cfg",
            &[("a.conf", "A"), ("b.conf", "B")],
        );
        let pod = with_volumes(serde_json::json!([
            {"name": "all", "configMap": {"name": "cfg"}},
            {"name": "some", "configMap": {"name": "cfg", "defaultMode": 0o640, "items": [
                {"key": "a.conf", "path": "conf/app.conf"},
                {"key": "b.conf", "path": "b", "mode": 0o600},
            ]}},
        ]));
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();

        let all = volumes.get("all").unwrap();
        assert_eq!(
            all.host_path,
            pod_dir.path().join("volumes/kubernetes.io~configmap/all")
        );
        assert_eq!(
            (all.kind, all.tmpfs, all.read_only),
            (VolumeKind::ConfigMap, false, true)
        );
        assert_eq!(
            visible_files(&all.host_path),
            strings(&[("a.conf", "A"), ("b.conf", "B")])
        );
        assert_eq!(mode(&all.host_path.join("a.conf")), 0o644);
        assert_eq!(mode(&all.host_path), 0o777);

        let some = &volumes.get("some").unwrap().host_path;
        assert_eq!(read(&some.join("conf/app.conf")), "A");
        assert_eq!(mode(&some.join("conf/app.conf")), 0o640);
        assert_eq!(read(&some.join("b")), "B");
        assert_eq!(mode(&some.join("b")), 0o600);
        assert_eq!(
            fs::read_link(some.join("conf")).unwrap(),
            Path::new("..data/conf")
        );
    }

    #[tokio::test]
    async fn config_map_binary_data_becomes_files_too() {
        let source = FakeSource::default();
        let config_map = k8s_openapi::api::core::v1::ConfigMap {
            binary_data: Some(
                [(
                    "blob".to_string(),
                    k8s_openapi::ByteString(vec![0, 159, 255]),
                )]
                .into(),
            ),
            ..Default::default()
        };
        source
            .config_maps
            .lock()
            .unwrap()
            .insert("default/bin".to_string(), config_map);
        let pod = with_volumes(serde_json::json!([{"name": "bin", "configMap": {"name": "bin"}}]));
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();
        assert_eq!(
            fs::read(volumes.get("bin").unwrap().host_path.join("blob")).unwrap(),
            [0, 159, 255]
        );
    }

    #[tokio::test]
    async fn missing_objects_and_keys_fail_with_kubelets_words_unless_optional() {
        let source = FakeSource::default()
            .with_config_map("default", "cfg", &[("k", "v")])
            .with_secret("default", "creds", &[("k", "v")]);
        let cases = [
            (
                serde_json::json!({"configMap": {"name": "nope"}}),
                "configmap \"nope\" not found",
            ),
            (
                serde_json::json!({"secret": {"secretName": "nope"}}),
                "secret \"nope\" not found",
            ),
            (
                serde_json::json!({"configMap": {"name": "cfg", "items": [{"key": "gone", "path": "x"}]}}),
                "configmap references non-existent config key: gone",
            ),
            (
                serde_json::json!({"secret": {"secretName": "creds", "items": [{"key": "gone", "path": "x"}]}}),
                "references non-existent secret key: gone",
            ),
            (
                serde_json::json!({"projected": {"sources": [{"configMap": {"name": "nope"}}]}}),
                "configmap \"nope\" not found",
            ),
        ];
        for (source_json, want) in cases {
            let mut volume = source_json.clone();
            volume["name"] = "v".into();
            let pod = with_volumes(serde_json::json!([volume]));
            let pod_dir = PodDir::new();
            let needs_tmpfs = volume.get("secret").is_some() || volume.get("projected").is_some();
            if needs_tmpfs && !is_root() {
                continue;
            }
            let error = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
                .await
                .unwrap_err();
            assert_eq!(error.to_string(), want);

            // Marked optional, the volume is prepared without the missing part.
            let mut optional = volume.clone();
            for kind in ["configMap", "secret"] {
                if let Some(reference) = optional.get_mut(kind) {
                    reference["optional"] = true.into();
                }
            }
            if let Some(sources) = optional.pointer_mut("/projected/sources/0/configMap") {
                sources["optional"] = true.into();
            }
            let pod = with_volumes(serde_json::json!([optional]));
            let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
                .await
                .unwrap();
            let files = visible_files(&volumes.get("v").unwrap().host_path);
            assert!(!files.contains_key("x"), "{want}: {files:?}");
        }
    }

    #[tokio::test]
    async fn an_update_replaces_content_atomically_and_leaves_no_old_version() {
        let source =
            FakeSource::default().with_config_map("default", "cfg", &[("a", "one"), ("b", "bee")]);
        let pod = with_volumes(serde_json::json!([{"name": "cfg", "configMap": {"name": "cfg"}}]));
        let pod_dir = PodDir::new();
        let dir = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap()
            .get("cfg")
            .unwrap()
            .host_path
            .clone();
        let version = fs::read_link(dir.join("..data")).unwrap();

        // Preparing again with nothing changed keeps the same version.
        PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();
        assert_eq!(fs::read_link(dir.join("..data")).unwrap(), version);

        source.put_config_map("default", "cfg", &[("a", "two"), ("c", "sea")]);
        PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();
        assert_eq!(visible_files(&dir), strings(&[("a", "two"), ("c", "sea")]));
        let new_version = fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(new_version, version);
        let hidden: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(".."))
            .collect();
        assert_eq!(hidden.len(), 2, "only ..data and one version: {hidden:?}");
        assert!(!dir.join(&version).exists());
    }

    #[tokio::test]
    async fn secret_volumes_sit_on_a_tmpfs_with_their_modes() {
        if !is_root() {
            return;
        }
        let source = FakeSource::default().with_secret(
            "default",
            "creds",
            &[("user", "admin"), ("pass", "s3cret")],
        );
        let pod = with_volumes(serde_json::json!([
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        ]));
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();
        let creds = volumes.get("creds").unwrap();
        assert_eq!(
            (creds.kind, creds.tmpfs, creds.read_only),
            (VolumeKind::Secret, true, true)
        );
        assert!(tmpfs::is_mount_point(&creds.host_path).unwrap());
        assert_eq!(
            visible_files(&creds.host_path),
            strings(&[("pass", "s3cret"), ("user", "admin")])
        );
        assert_eq!(mode(&creds.host_path.join("pass")), 0o400);

        // Refreshing does not stack a second tmpfs.
        PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();
        assert_eq!(tmpfs::mounts_under(pod_dir.path()).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn downward_api_volumes_render_metadata_and_resources() {
        if !is_root() {
            return;
        }
        let pod = with_volumes(
            serde_json::json!([{"name": "info", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
                {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o600},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "requests.cpu", "divisor": "1m"}},
            ]}}]),
        );
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap();
        let info = volumes.get("info").unwrap();
        assert!(info.tmpfs);
        let want = strings(&[
            ("annotations", "note=\"hi\""),
            ("app", "web"),
            ("cpu", "0"),
            ("labels", "app=\"web\"\ntier=\"front\""),
            ("mem", "256"),
            ("name", "web-0"),
            ("namespace", "default"),
            ("uid", "1234-5678"),
        ]);
        assert_eq!(visible_files(&info.host_path), want);
        assert_eq!(mode(&info.host_path.join("uid")), 0o600);
        assert_eq!(mode(&info.host_path.join("name")), 0o644);

        // A volume reads metadata only, as kubelet's downwardAPI plugin does.
        let pod = with_volumes(
            serde_json::json!([{"name": "bad", "downwardAPI": {"items": [
                {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}},
            ]}}]),
        );
        let error = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "unsupported fieldPath: spec.nodeName");
    }

    #[tokio::test]
    async fn projected_volumes_combine_their_sources_in_one_directory() {
        if !is_root() {
            return;
        }
        let source = FakeSource::default()
            .with_config_map("default", "kube-root-ca.crt", &[("ca.crt", "CA")])
            .with_secret("default", "creds", &[("token", "T")]);
        let pod = with_volumes(
            serde_json::json!([{"name": "api", "projected": {"defaultMode": 0o444, "sources": [
                {"serviceAccountToken": {"path": "sa-token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"secret": {"name": "creds"}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]}}]),
        );
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();
        let api = volumes.get("api").unwrap();
        assert_eq!(
            (api.kind, api.tmpfs, api.read_only),
            (VolumeKind::Projected, true, true)
        );
        assert_eq!(
            visible_files(&api.host_path),
            strings(&[("ca.crt", "CA"), ("namespace", "default"), ("token", "T")])
        );
        assert_eq!(mode(&api.host_path.join("ca.crt")), 0o444);
    }

    #[tokio::test]
    async fn empty_dirs_are_world_writable_directories() {
        let pod = with_volumes(
            serde_json::json!([{"name": "scratch", "emptyDir": {}}, {"name": "implicit"}]),
        );
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap();
        for name in ["scratch", "implicit"] {
            let volume = volumes.get(name).unwrap();
            assert_eq!(
                volume.host_path,
                pod_dir
                    .path()
                    .join("volumes/kubernetes.io~empty-dir")
                    .join(name)
            );
            assert_eq!(
                (volume.kind, volume.tmpfs, volume.read_only),
                (VolumeKind::EmptyDir, false, false)
            );
            assert_eq!(mode(&volume.host_path), 0o777);
        }

        // Preparing again keeps what the containers wrote.
        fs::write(
            volumes.get("scratch").unwrap().host_path.join("data"),
            "kept",
        )
        .unwrap();
        PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap();
        assert_eq!(
            read(&volumes.get("scratch").unwrap().host_path.join("data")),
            "kept"
        );
    }

    #[tokio::test]
    async fn memory_empty_dirs_are_a_sized_tmpfs_that_cleanup_unmounts() {
        if !is_root() {
            return;
        }
        let pod = with_volumes(serde_json::json!([
            {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {"name": "big", "emptyDir": {"medium": "Memory", "sizeLimit": "1Ti"}},
        ]));
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap();
        let cache = volumes.get("cache").unwrap();
        assert!(cache.tmpfs);
        assert!(tmpfs::is_mount_point(&cache.host_path).unwrap());
        let size = |path: &Path| {
            let stats = nix::sys::statvfs::statvfs(path).unwrap();
            stats.blocks() * stats.fragment_size()
        };
        assert_eq!(size(&cache.host_path), 1 << 20);
        // A sizeLimit above the pod's memory limit is capped by it.
        assert_eq!(size(&volumes.get("big").unwrap().host_path), 256 << 20);

        fs::write(cache.host_path.join("f"), "x").unwrap();
        cleanup(pod_dir.path()).unwrap();
        assert!(!tmpfs::is_mount_point(pod_dir.path()).unwrap());
        assert!(tmpfs::mounts_under(pod_dir.path()).unwrap().is_empty());
        assert!(!pod_dir.path().join("volumes").exists());
        cleanup(pod_dir.path()).unwrap();
    }

    #[test]
    fn memory_volumes_are_sized_like_kubelet_does() {
        let sized = |containers: serde_json::Value,
                     init: serde_json::Value,
                     size_limit: Option<&str>,
                     allocatable: u64| {
            let pod = pod(serde_json::json!({"containers": containers, "initContainers": init}));
            let node = NodeFacts {
                allocatable_memory_bytes: allocatable,
                ..node()
            };
            let size_limit = size_limit.map(|s| Quantity(s.to_string()));
            memory_volume_size(&pod, &node, size_limit.as_ref(), "v").unwrap()
        };
        let limited = |name: &str, memory: &str| serde_json::json!({"name": name, "resources": {"limits": {"memory": memory}}});
        let gi = 1u64 << 30;
        let cases = [
            // Nothing bounds it on a node of unknown size.
            (
                serde_json::json!([{"name": "a"}]),
                serde_json::json!([]),
                None,
                0,
                None,
            ),
            // The node's allocatable, as no container limit bounds the pod.
            (
                serde_json::json!([{"name": "a"}, limited("b", "1Gi")]),
                serde_json::json!([]),
                None,
                8 * gi,
                Some(8 * gi),
            ),
            // The pod's limit: the sum of its containers.
            (
                serde_json::json!([limited("a", "1Gi"), limited("b", "1Gi")]),
                serde_json::json!([]),
                None,
                8 * gi,
                Some(2 * gi),
            ),
            // A bigger init container raises it; a sidecar adds to it.
            (
                serde_json::json!([limited("a", "1Gi")]),
                serde_json::json!([limited("i", "3Gi")]),
                None,
                8 * gi,
                Some(3 * gi),
            ),
            (
                serde_json::json!([limited("a", "1Gi")]),
                serde_json::json!([{"name": "s", "restartPolicy": "Always", "resources": {"limits": {"memory": "1Gi"}}}]),
                None,
                8 * gi,
                Some(2 * gi),
            ),
            // sizeLimit lowers it, never raises it.
            (
                serde_json::json!([limited("a", "1Gi")]),
                serde_json::json!([]),
                Some("64Mi"),
                8 * gi,
                Some(64 << 20),
            ),
            (
                serde_json::json!([limited("a", "1Gi")]),
                serde_json::json!([]),
                Some("2Gi"),
                8 * gi,
                Some(gi),
            ),
            (
                serde_json::json!([{"name": "a"}]),
                serde_json::json!([]),
                Some("1M"),
                0,
                Some(1_000_000),
            ),
        ];
        for (index, (containers, init, size_limit, allocatable, want)) in
            cases.into_iter().enumerate()
        {
            assert_eq!(
                sized(containers, init, size_limit, allocatable),
                want,
                "case {index}"
            );
        }
    }

    #[tokio::test]
    async fn host_paths_are_checked_by_type() {
        let host = tempfile::tempdir().unwrap();
        let file = host.path().join("file");
        fs::write(&file, "x").unwrap();
        let file = file.to_str().unwrap();
        let pod = with_volumes(
            serde_json::json!([{"name": "h", "hostPath": {"path": file, "type": "File"}}]),
        );
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap();
        let volume = volumes.get("h").unwrap();
        assert_eq!(
            (volume.kind, volume.host_path.to_str().unwrap()),
            (VolumeKind::HostPath, file)
        );

        let pod = with_volumes(
            serde_json::json!([{"name": "h", "hostPath": {"path": file, "type": "Directory"}}]),
        );
        let error = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("hostPath type check failed: {file} is not a directory")
        );
    }

    #[tokio::test]
    async fn unsupported_kinds_and_media_are_named_in_the_error() {
        let cases = [
            (
                serde_json::json!({"persistentVolumeClaim": {"claimName": "data"}}),
                "volume \"v\": persistentVolumeClaim volumes are not supported",
            ),
            (
                serde_json::json!({"nfs": {"server": "nas", "path": "/"}}),
                "volume \"v\": nfs volumes are not supported",
            ),
            (
                serde_json::json!({"emptyDir": {"medium": "HugePages"}}),
                "volume \"v\": emptyDir medium \"HugePages\" is not supported",
            ),
        ];
        for (source, want) in cases {
            let mut volume = source;
            volume["name"] = "v".into();
            let pod = with_volumes(serde_json::json!([volume]));
            let pod_dir = PodDir::new();
            let error = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
                .await
                .unwrap_err();
            assert_eq!(error.to_string(), want);
        }
    }

    fn container(mounts: serde_json::Value) -> Container {
        serde_json::from_value(serde_json::json!({"name": "app", "volumeMounts": mounts})).unwrap()
    }

    #[tokio::test]
    async fn container_mounts_bind_volumes_with_their_read_only_rules() {
        let source = FakeSource::default().with_config_map("default", "cfg", &[("app.conf", "A")]);
        let pod = with_volumes(serde_json::json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
        ]));
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &source)
            .await
            .unwrap();
        let scratch = volumes.get("scratch").unwrap().host_path.clone();
        let cfg = volumes.get("cfg").unwrap().host_path.clone();

        let mounts = volumes
            .container_mounts(&container(serde_json::json!([
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "scratch", "mountPath": "/ro", "readOnly": true},
                {"name": "cfg", "mountPath": "/etc/app"},
                {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
                {"name": "scratch", "mountPath": "relative", "subPath": "logs/app"},
            ])))
            .unwrap();
        let canonical_cfg = fs::canonicalize(&cfg).unwrap();
        let version = fs::read_link(cfg.join("..data")).unwrap();
        let want = vec![
            Mount::Bind {
                source: scratch.clone(),
                destination: "/scratch".into(),
                read_only: false,
            },
            Mount::Bind {
                source: scratch.clone(),
                destination: "/ro".into(),
                read_only: true,
            },
            Mount::Bind {
                source: cfg.clone(),
                destination: "/etc/app".into(),
                read_only: true,
            },
            // A subPath into a configMap pins the current version's file, as in kubelet.
            Mount::Bind {
                source: canonical_cfg.join(version).join("app.conf"),
                destination: "/etc/app.conf".into(),
                read_only: true,
            },
            Mount::Bind {
                source: fs::canonicalize(&scratch).unwrap().join("logs/app"),
                destination: "/relative".into(),
                read_only: false,
            },
        ];
        assert_eq!(mounts, want);
        // The missing subPath was created as a directory with the volume's mode.
        assert_eq!(mode(&scratch.join("logs/app")), 0o777);
    }

    #[tokio::test]
    async fn sub_paths_that_leave_the_volume_are_refused() {
        let pod = with_volumes(serde_json::json!([{"name": "scratch", "emptyDir": {}}]));
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap();
        let scratch = volumes.get("scratch").unwrap().host_path.clone();
        // What a container could do: links leading out of the volume.
        symlink("/etc", scratch.join("out")).unwrap();
        symlink("../../../../..", scratch.join("up")).unwrap();
        symlink("/nonexistent/target", scratch.join("dangling")).unwrap();

        let cases = [
            (
                "out",
                "failed to prepare subPath for volumeMount \"scratch\" of container \"app\"",
            ),
            (
                "out/passwd",
                "failed to prepare subPath for volumeMount \"scratch\" of container \"app\"",
            ),
            (
                "up/new-dir",
                "failed to prepare subPath for volumeMount \"scratch\" of container \"app\"",
            ),
            (
                "dangling",
                "failed to prepare subPath for volumeMount \"scratch\" of container \"app\"",
            ),
            (
                "../sibling",
                "unable to provision SubPath `../sibling`: must not contain '..'",
            ),
            (
                "a/../../b",
                "unable to provision SubPath `a/../../b`: must not contain '..'",
            ),
            ("/etc", "error SubPath `/etc` must not be an absolute path"),
        ];
        for (sub_path, want) in cases {
            let mounts =
                serde_json::json!([{"name": "scratch", "mountPath": "/m", "subPath": sub_path}]);
            let error = volumes.container_mounts(&container(mounts)).unwrap_err();
            assert_eq!(error.to_string(), want, "{sub_path}");
        }
        assert!(!Path::new("/new-dir").exists());
    }

    #[tokio::test]
    async fn unknown_volumes_and_sub_path_exprs_are_errors() {
        let volumes = PodVolumes::default();
        let error = volumes
            .container_mounts(&container(
                serde_json::json!([{"name": "ghost", "mountPath": "/g"}]),
            ))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot find volume \"ghost\" to mount into container \"app\""
        );

        let pod = with_volumes(serde_json::json!([{"name": "scratch", "emptyDir": {}}]));
        let pod_dir = PodDir::new();
        let volumes = PodVolumes::prepare(&pod, pod_dir.path(), &node(), &FakeSource::default())
            .await
            .unwrap();
        let mounts = serde_json::json!([{"name": "scratch", "mountPath": "/m", "subPathExpr": "$(POD_NAME)"}]);
        let error = volumes.container_mounts(&container(mounts)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "subPathExpr of volumeMount \"scratch\" of container \"app\" is not supported"
        );
    }

    #[test]
    fn sources_lists_each_config_map_and_secret_once() {
        let pod = with_volumes(serde_json::json!([
            {"name": "a", "configMap": {"name": "cfg"}},
            {"name": "b", "secret": {"secretName": "creds"}},
            {"name": "c", "projected": {"sources": [
                {"configMap": {"name": "cfg"}},
                {"configMap": {"name": "ca"}},
                {"secret": {"name": "creds"}},
                {"downwardAPI": {"items": []}},
            ]}},
            {"name": "d", "emptyDir": {}},
            {"name": "e", "secret": {"secretName": "cfg"}},
        ]));
        let want = vec![
            (ObjectKind::ConfigMap, "cfg".to_string()),
            (ObjectKind::Secret, "creds".to_string()),
            (ObjectKind::ConfigMap, "ca".to_string()),
            (ObjectKind::Secret, "cfg".to_string()),
        ];
        assert_eq!(PodVolumes::sources(&pod), want);
    }

    #[test]
    fn cleanup_of_a_pod_without_volumes_is_a_no_op() {
        let pod_dir = tempfile::tempdir().unwrap();
        cleanup(pod_dir.path()).unwrap();
        cleanup(&pod_dir.path().join("gone")).unwrap();
    }
}
