//! The parts of the OCI image format (and Docker's equivalents) that the store reads.
//!
//! Deliberately small and lenient instead of `oci_spec::image`: real archives and registries
//! carry Docker media types, `null` lists (`"Cmd": null`) and missing optional fields, and the
//! store needs only a handful of fields. Digests are validated where they become file names
//! ([`super::digest_hex`]), not here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Full image name, as containerd and Docker write it in an archive's `index.json`.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI reference annotation: a full name, or only a tag with some tools.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A pointer to a blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Whether an image built for this platform runs here. The variant is not compared: hosts
    /// where it matters (32-bit ARM) are not targets of capstan.
    pub fn matches_host(&self) -> bool {
        self.os == "linux" && self.architecture == host_architecture()
    }
}

/// The host's architecture in the OCI (Go `GOARCH`) spelling.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI, or Docker schema 2, which has the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// What a JSON document that claims to be a manifest turned out to be.
pub enum ManifestKind {
    Manifest(Manifest),
    Index(Index),
}

/// Parses a manifest or index. The media type field is optional in both formats, so the shape
/// decides when it is missing: only indexes have `manifests`.
pub fn parse_manifest(bytes: &[u8]) -> Result<ManifestKind, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        schema_version: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let is_index = match probe.media_type.as_deref() {
        Some(MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_MANIFEST_LIST) => true,
        Some(_) => false,
        None => probe.manifests.is_some(),
    };
    if is_index {
        return serde_json::from_slice(bytes)
            .map(ManifestKind::Index)
            .map_err(|e| e.to_string());
    }
    if probe.schema_version != Some(2) {
        return Err(format!(
            "unsupported manifest schema version {:?} (only schema 2 is supported)",
            probe.schema_version
        ));
    }
    serde_json::from_slice(bytes)
        .map(ManifestKind::Manifest)
        .map_err(|e| e.to_string())
}

/// The image configuration blob: the container defaults and the layer diff IDs.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

/// Docker's capitalized field names, which the OCI format kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One entry of a `docker save` archive's `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerSaveEntry {
    /// Path of the configuration inside the archive.
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tarballs inside the archive, bottom first.
    pub layers: Vec<String>,
}
