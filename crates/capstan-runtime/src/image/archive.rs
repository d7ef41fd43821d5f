//! Importing image archives: OCI image layouts in a tar (`oci-archive`, `ctr export`,
//! `podman save --format oci-archive`, `docker save` since Docker 25) and the older
//! `docker save` format (`manifest.json` with `Config`, `RepoTags`, `Layers`).
//!
//! The archive is read once, from start to end, because it may be gzipped and because tar
//! gives no index: every regular file goes straight into the blob store (OCI blobs checked
//! against their names), and the JSON files that describe the images are then read back from
//! there. What no image ends up using is deleted at the end.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Component, Path};

use super::oci::{self, Descriptor, DockerSaveEntry, Manifest, ManifestKind};
use super::unpack::{self, Compression};
use super::{ImageError, ImageRecord, ImageStore, Reference, StoredBlob, digest_hex};

const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_INDEX_FILE: &str = "index.json";
const DOCKER_MANIFEST_FILE: &str = "manifest.json";
const OCI_BLOBS_PREFIX: &str = "blobs/sha256/";
/// Nested indexes deeper than this are refused rather than followed.
const MAX_INDEX_DEPTH: usize = 4;
/// Symbolic links followed when looking a file up; `docker save` links identical layers.
const MAX_LINK_HOPS: usize = 16;

/// The files of an archive, by normalized path, as blobs in the store.
#[derive(Default)]
struct ArchiveFiles {
    files: HashMap<String, StoredBlob>,
    /// Symbolic and hard links: path to the archive path they point at.
    links: HashMap<String, String>,
}

impl ArchiveFiles {
    fn get(&self, path: &str) -> Option<&StoredBlob> {
        let mut path = normalize(Path::new(path))?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(blob) = self.files.get(&path) {
                return Some(blob);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }
}

impl ImageStore {
    /// Imports every image of an archive (OCI image layout or `docker save`, plain or gzipped)
    /// and returns them as stored, with the references the archive gives them (normalized).
    /// Only manifests for this host's platform are imported. Importing the same archive again
    /// changes nothing.
    pub fn import(&self, archive: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        let _exclusive = super::process_lock(&self.root)?;
        let mut created = Vec::new();
        let result = self.import_archive(archive, &mut created);
        // Other platforms' blobs, `docker save` metadata and, after a failure, everything this
        // import wrote must not linger.
        let cleanup = self.delete_unreferenced(&self.lock_index().images, &created, &[]);
        let records = result?;
        cleanup?;
        Ok(records)
    }

    fn import_archive(
        &self,
        archive: &Path,
        created: &mut Vec<String>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let files = self.read_archive(archive, created)?;
        let (digests, references) =
            if files.get(OCI_INDEX_FILE).is_some() && files.get(OCI_LAYOUT_FILE).is_some() {
                self.import_oci_layout(&files)?
            } else if files.get(DOCKER_MANIFEST_FILE).is_some() {
                self.import_docker_save(&files, created)?
            } else {
                return Err(ImageError::UnknownFormat {
                    archive: archive.to_path_buf(),
                });
            };
        if digests.is_empty() {
            return Err(ImageError::invalid_image(format!(
                "{} has no image for linux/{}",
                archive.display(),
                oci::host_architecture()
            )));
        }

        // Register all images of the archive, then report each once with all its names.
        let mut records: Vec<ImageRecord> = Vec::new();
        for (digest, names) in digests.iter().zip(references) {
            let record = self.register(digest, &names)?;
            match records.iter_mut().find(|r| r.digest == record.digest) {
                Some(existing) => *existing = record,
                None => records.push(record),
            }
        }
        // A later image of the archive may have taken a name from an earlier one.
        let index = self.lock_index();
        for record in &mut records {
            if let Some(stored) = index.images.iter().find(|i| i.digest == record.digest) {
                record.clone_from(stored);
            }
        }
        Ok(records)
    }

    /// Stores every regular file of the archive as a blob.
    fn read_archive(
        &self,
        archive: &Path,
        created: &mut Vec<String>,
    ) -> Result<ArchiveFiles, ImageError> {
        let read_error = |source: io::Error| ImageError::ReadArchive {
            archive: archive.to_path_buf(),
            source,
        };
        let file = File::open(archive).map_err(read_error)?;
        let mut tar =
            tar::Archive::new(unpack::decompress(BufReader::new(file)).map_err(read_error)?);
        let mut files = ArchiveFiles::default();
        for entry in tar.entries().map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let raw_path = entry.path().map_err(read_error)?.into_owned();
            // Nothing is written under archive paths, so an odd one is just never looked up.
            let Some(path) = normalize(&raw_path) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name().map_err(read_error)? else {
                    continue;
                };
                // Symbolic links are relative to their directory, hard links to the root.
                let target = if kind.is_symlink() {
                    raw_path.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.into_owned()
                };
                if let Some(target) = normalize(&target) {
                    files.links.insert(path, target);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let named_digest = path
                .strip_prefix(OCI_BLOBS_PREFIX)
                .map(|hex| format!("sha256:{hex}"))
                .filter(|digest| digest_hex(digest).is_ok());
            let blob = match named_digest {
                // Re-importing, or layers shared with images already here: skip the copy.
                Some(digest) if self.has_blob(&digest) => {
                    let size = entry.header().size().map_err(read_error)?;
                    StoredBlob {
                        digest,
                        size,
                        created: false,
                    }
                }
                named_digest => self.store_blob(entry, named_digest.as_deref(), read_error)?,
            };
            if blob.created {
                created.push(blob.digest.clone());
            }
            files.files.insert(path, blob);
        }
        Ok(files)
    }

    /// Returns the platform manifests the layout's `index.json` names, with their references.
    fn import_oci_layout(
        &self,
        files: &ArchiveFiles,
    ) -> Result<(Vec<String>, Vec<Vec<String>>), ImageError> {
        let index = self.archive_json::<oci::Index>(files, OCI_INDEX_FILE)?;
        let mut digests = Vec::new();
        let mut references = Vec::new();
        for descriptor in &index.manifests {
            let names = descriptor_references(descriptor)?;
            if let Some(digest) = self.select_manifest(descriptor, 0)? {
                digests.push(digest);
                references.push(names);
            }
        }
        Ok((digests, references))
    }

    /// The manifest for this host that `descriptor` leads to: itself, or a manifest of the
    /// index it points at. `None` when it is for another platform.
    fn select_manifest(
        &self,
        descriptor: &Descriptor,
        depth: usize,
    ) -> Result<Option<String>, ImageError> {
        if descriptor
            .platform
            .as_ref()
            .is_some_and(|p| !p.matches_host())
        {
            return Ok(None);
        }
        let bytes = self.read_blob(&descriptor.digest)?;
        match oci::parse_manifest(&bytes) {
            Ok(ManifestKind::Manifest(_)) => Ok(Some(descriptor.digest.clone())),
            Ok(ManifestKind::Index(index)) => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(ImageError::invalid_image(format!(
                        "indexes nested more than {MAX_INDEX_DEPTH} deep"
                    )));
                }
                // Archives of multi-platform images often carry the blobs of one platform
                // only: skip the manifests they left out.
                for child in index.manifests.iter().filter(|c| self.has_blob(&c.digest)) {
                    if let Some(digest) = self.select_manifest(child, depth + 1)? {
                        return Ok(Some(digest));
                    }
                }
                Ok(None)
            }
            Err(reason) => Err(ImageError::invalid_image(format!(
                "manifest {}: {reason}",
                descriptor.digest
            ))),
        }
    }

    /// Stores an OCI manifest for each image of a `docker save` `manifest.json`, which has
    /// none, and returns their digests with the images' references.
    fn import_docker_save(
        &self,
        files: &ArchiveFiles,
        created: &mut Vec<String>,
    ) -> Result<(Vec<String>, Vec<Vec<String>>), ImageError> {
        let entries = self.archive_json::<Vec<DockerSaveEntry>>(files, DOCKER_MANIFEST_FILE)?;
        let mut digests = Vec::new();
        let mut references = Vec::new();
        for entry in entries {
            let config = archive_file(files, &entry.config)?;
            let mut layers = Vec::new();
            for path in &entry.layers {
                let blob = archive_file(files, path)?;
                layers.push(Descriptor {
                    media_type: self.layer_media_type(&blob.digest)?.to_owned(),
                    digest: blob.digest.clone(),
                    size: blob.size,
                    annotations: Default::default(),
                    platform: None,
                });
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(oci::MEDIA_TYPE_OCI_MANIFEST.to_owned()),
                config: Descriptor {
                    media_type: oci::MEDIA_TYPE_OCI_CONFIG.to_owned(),
                    digest: config.digest.clone(),
                    size: config.size,
                    annotations: Default::default(),
                    platform: None,
                },
                layers,
            };
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|e| ImageError::invalid_image(format!("encoding a manifest: {e}")))?;
            let stored = self.store_blob(bytes.as_slice(), None, |source| {
                ImageError::io("storing a manifest in", self.root(), source)
            })?;
            if stored.created {
                created.push(stored.digest.clone());
            }
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|tag| Ok(Reference::parse(tag)?.with_default_tag().to_string()))
                .collect::<Result<Vec<_>, ImageError>>()?;
            digests.push(stored.digest);
            references.push(names);
        }
        Ok((digests, references))
    }

    /// The OCI media type matching how a layer blob is compressed.
    fn layer_media_type(&self, digest: &str) -> Result<&'static str, ImageError> {
        let mut magic = [0u8; 4];
        let len = unpack::read_head(&mut self.open_blob(digest)?, &mut magic)
            .map_err(|e| ImageError::io("reading blob", digest, e))?;
        Ok(match Compression::detect(&magic[..len]) {
            Compression::Gzip => oci::MEDIA_TYPE_OCI_LAYER_GZIP,
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => oci::MEDIA_TYPE_OCI_LAYER,
        })
    }

    fn archive_json<T: serde::de::DeserializeOwned>(
        &self,
        files: &ArchiveFiles,
        path: &str,
    ) -> Result<T, ImageError> {
        let blob = archive_file(files, path)?;
        serde_json::from_slice(&self.read_blob(&blob.digest)?)
            .map_err(|e| ImageError::invalid_image(format!("{path} in the archive: {e}")))
    }
}

fn archive_file<'a>(files: &'a ArchiveFiles, path: &str) -> Result<&'a StoredBlob, ImageError> {
    files
        .get(path)
        .ok_or_else(|| ImageError::invalid_image(format!("the archive has no file {path:?}")))
}

/// The names an `index.json` entry gives its image. containerd and Docker write the full name
/// in their own annotation and only the tag in the OCI one; other tools write the full name in
/// the OCI one. A bare word there is taken for a tag without a repository, and ignored.
fn descriptor_references(descriptor: &Descriptor) -> Result<Vec<String>, ImageError> {
    let annotations = &descriptor.annotations;
    let name = annotations
        .get(oci::ANNOTATION_CONTAINERD_NAME)
        .or_else(|| {
            annotations
                .get(oci::ANNOTATION_REF_NAME)
                .filter(|name| name.contains(['/', ':', '@']))
        });
    match name {
        Some(name) => Ok(vec![Reference::parse(name)?.with_default_tag().to_string()]),
        None => Ok(Vec::new()),
    }
}

/// An archive path as a `/`-separated relative path without `.` components; `None` when it
/// leaves the archive root.
fn normalize(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_annotations_give_full_names_and_ignore_bare_tags() {
        type Annotations<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Annotations<'_>, &[&str])] = &[
            (&[], &[]),
            (
                &[(oci::ANNOTATION_REF_NAME, "busybox:1")],
                &["docker.io/library/busybox:1"],
            ),
            (
                &[(oci::ANNOTATION_REF_NAME, "capstan.test/busybox")],
                &["capstan.test/busybox:latest"],
            ),
            // containerd and Docker: full name in their annotation, only the tag in the OCI one.
            (
                &[
                    (
                        oci::ANNOTATION_CONTAINERD_NAME,
                        "docker.io/library/busybox:latest",
                    ),
                    (oci::ANNOTATION_REF_NAME, "latest"),
                ],
                &["docker.io/library/busybox:latest"],
            ),
            (&[(oci::ANNOTATION_REF_NAME, "latest")], &[]),
        ];
        for (annotations, expected) in cases {
            let descriptor = Descriptor {
                media_type: oci::MEDIA_TYPE_OCI_MANIFEST.to_owned(),
                digest: format!("sha256:{}", "0".repeat(64)),
                size: 1,
                annotations: annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                platform: None,
            };
            assert_eq!(
                descriptor_references(&descriptor).unwrap(),
                *expected,
                "{annotations:?}"
            );
        }
    }

    #[test]
    fn archive_paths_are_normalized_and_links_followed() {
        let blob = StoredBlob {
            digest: format!("sha256:{}", "1".repeat(64)),
            size: 3,
            created: false,
        };
        let mut files = ArchiveFiles::default();
        files.files.insert("abc/layer.tar".to_owned(), blob);
        files
            .links
            .insert("def/layer.tar".to_owned(), "abc/layer.tar".to_owned());

        assert!(files.get("./abc/layer.tar").is_some());
        assert!(files.get("def/layer.tar").is_some());
        assert!(files.get("abc/../def/layer.tar").is_some());
        assert!(files.get("../abc/layer.tar").is_none());
        assert!(files.get("ghi/layer.tar").is_none());
    }
}
