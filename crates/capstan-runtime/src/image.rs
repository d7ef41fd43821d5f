//! The node's image store: content-addressed blobs, an index of named images, and unpacked
//! layers ready to be stacked with overlayfs.
//!
//! ```text
//! <root>/index.json            the images: references, manifest, config and layer digests
//! <root>/blobs/sha256/<hex>    manifests, configurations and layer blobs as fetched
//! <root>/layers/<diff id hex>  one unpacked layer, shared by every image that has it
//! <root>/tmp/                  work space; everything lands here first, then is renamed
//! ```
//!
//! Images come from archives ([`ImageStore::import`]: OCI layouts and `docker save`) or from a
//! registry puller ([`ImageStore::write_blob`] then [`ImageStore::add_image`]). Every file is
//! written under `tmp/` and renamed into place, so a crash leaves either nothing or a complete
//! blob, layer or index; [`ImageStore::open`] sweeps what a crash left behind.
//!
//! One process owns a root: `open` clears `tmp/`. Within that process an `ImageStore` may be
//! shared between threads.

mod archive;
mod error;
mod oci;
mod pull;
mod reference;
mod unpack;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

pub use error::ImageError;
pub use pull::{PullError, RegistryAuth, pull, registry_url};
pub use reference::{Reference, normalize_reference};

use oci::{ConfigFile, ManifestKind};
use unpack::HashingReader;

const INDEX_FILE: &str = "index.json";
const BLOBS_DIR: &str = "blobs/sha256";
const LAYERS_DIR: &str = "layers";
const TMP_DIR: &str = "tmp";
/// Largest manifest, index or configuration the store reads into memory. Registries cap
/// manifests at 4 MiB; configurations with long histories stay well below this.
const MAX_JSON_SIZE: u64 = 16 << 20;
/// Buffer for copying blobs: large enough that hashing, not system calls, dominates.
const COPY_BUFFER_SIZE: usize = 256 << 10;

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized names that point at this image, e.g. `docker.io/library/busybox:latest` or
    /// `localhost:5000/test/httpd:1`. Empty for an image whose last tag moved to another image:
    /// it stays (a container may still use it) until removed by ID.
    pub references: Vec<String>,
    /// Digest of the manifest, `sha256:…`: the image's identity.
    pub digest: String,
    /// Digest of the configuration: the image ID that `crictl images` and pod status
    /// (`imageID`) show.
    pub config_digest: String,
    /// Digests of the layer blobs as stored (compressed or not), bottom first.
    pub layers: Vec<String>,
    /// Digests of the uncompressed layers (the configuration's `rootfs.diff_ids`), bottom first,
    /// one per entry of `layers`. Unpacked layers are named after these, so two images whose
    /// layers are compressed differently still share the unpacked directory.
    pub diff_ids: Vec<String>,
    /// Total size of the layer blobs in bytes.
    pub size: u64,
}

/// The container defaults an image carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// The content of `index.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoreIndex {
    images: Vec<ImageRecord>,
}

/// A blob just written (or found) in the store.
#[derive(Debug, Clone)]
struct StoredBlob {
    digest: String,
    size: u64,
    /// False when the store already had it: only blobs an operation created may be swept when
    /// that operation fails.
    created: bool,
}

/// How a reference matched an image, which decides what `remove` untags.
enum Matched {
    /// By image ID or manifest digest: the whole image.
    Id,
    /// By one normalized tagged name.
    Name(String),
    /// By `repository@digest`: that reference and every name of the repository.
    Digest {
        reference: String,
        repository: String,
    },
}

/// The node's image store. See the module documentation for the layout on disk.
pub struct ImageStore {
    root: PathBuf,
    /// The in-memory copy of `index.json`. Held while the file is rewritten and while blobs
    /// and layers are deleted, so that no image is added referencing a blob being deleted.
    index: Mutex<StoreIndex>,
    /// The `index.json` (inode, mtime) the copy in memory was read from.
    loaded: Mutex<Option<(u64, i64, i64)>>,
    /// One lock per layer being unpacked, so that concurrent callers unpack a layer once.
    unpacking: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Holds `<root>/lock` exclusively (flock) while a store changes, so that processes sharing
/// a store (the agent and `capstan image`) never see each other's half-written files. Public
/// operations take it once; none calls another while holding it.
fn process_lock(root: &Path) -> Result<nix::fcntl::Flock<File>, ImageError> {
    let path = root.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ImageError::io("opening", &path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| ImageError::io("locking", &path, io::Error::from(errno)))
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, removes what an interrupted operation
    /// left in `tmp/`, and deletes blobs and layers no image references (left by a crash
    /// between updating the index and deleting files).
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for dir in [BLOBS_DIR, LAYERS_DIR, TMP_DIR] {
            let path = root.join(dir);
            fs::create_dir_all(&path)
                .map_err(|e| ImageError::io("creating directory", &path, e))?;
        }
        // Another process (the agent, or `capstan image import` beside it) may be writing:
        // clearing tmp/ and sweeping wait for it.
        let _exclusive = process_lock(root)?;
        let tmp = root.join(TMP_DIR);
        for entry in fs::read_dir(&tmp).map_err(|e| ImageError::io("listing", &tmp, e))? {
            let path = entry
                .map_err(|e| ImageError::io("listing", &tmp, e))?
                .path();
            remove_path(&path).map_err(|e| ImageError::io("removing", &path, e))?;
        }

        let index_path = root.join(INDEX_FILE);
        let index = match fs::read(&index_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| ImageError::ReadIndex {
                    path: index_path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => StoreIndex::default(),
            Err(e) => return Err(ImageError::io("reading", &index_path, e)),
        };
        let store = Self {
            root: root.to_path_buf(),
            index: Mutex::new(index),
            loaded: Mutex::default(),
            unpacking: Mutex::default(),
        };
        store.sweep_unreferenced()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All images, in the order they were first added.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.lock_index().images.clone())
    }

    /// Finds the image a reference names, the way `crictl` and the kubelet look images up:
    /// a name (`busybox`, `busybox:1`, `docker.io/library/busybox:latest`, `localhost:5000/x:1`),
    /// a digest reference (`x@sha256:…`), a full image ID or manifest digest (`sha256:…`, with
    /// or without the prefix) or an unambiguous prefix of an image ID. `Ok(None)` when nothing
    /// matches; an error for an invalid name or an ambiguous prefix.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let index = self.lock_index();
        Ok(find_image(&index.images, reference)?
            .map(|(position, _)| index.images[position].clone()))
    }

    /// Removes a reference. A name (tag) only untags; an image ID or digest removes every
    /// reference of the image. When no reference is left the image is deleted, with the blobs
    /// and unpacked layers no other image uses. The caller must make sure no container uses
    /// the image's layers. [`ImageError::NotFound`] when nothing matches (a CRI `RemoveImage`
    /// treats that as success).
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let _exclusive = process_lock(&self.root)?;
        let mut index = self.lock_index();
        let Some((position, matched)) = find_image(&index.images, reference)? else {
            return Err(ImageError::NotFound {
                reference: reference.to_owned(),
            });
        };
        let mut updated = index.clone();
        let references = &mut updated.images[position].references;
        match matched {
            Matched::Id => references.clear(),
            Matched::Name(name) => references.retain(|r| *r != name),
            Matched::Digest {
                reference,
                repository,
            } => references
                .retain(|r| *r != reference && repository_of(r).as_deref() != Some(&repository)),
        }
        if !updated.images[position].references.is_empty() {
            self.save_index(&updated)?;
            *index = updated;
            return Ok(());
        }

        let removed = updated.images.remove(position);
        // The index goes first: a crash before the files are gone leaves only garbage, which
        // `open` sweeps, never an image without its blobs.
        self.save_index(&updated)?;
        *index = updated;
        let blobs: Vec<String> = [removed.digest, removed.config_digest]
            .into_iter()
            .chain(removed.layers)
            .collect();
        self.delete_unreferenced(&index.images, &blobs, &removed.diff_ids)
    }

    /// The container defaults from the image's configuration.
    pub fn config(&self, image: &ImageRecord) -> Result<ImageConfig, ImageError> {
        let config = self
            .read_config(&image.config_digest)?
            .config
            .unwrap_or_default();
        Ok(ImageConfig {
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            working_dir: config.working_dir.filter(|dir| !dir.is_empty()),
            user: config.user.filter(|user| !user.is_empty()),
        })
    }

    /// The unpacked layer directories of `image`, bottom first (overlayfs wants `lowerdir`
    /// top first: reverse them). A layer is unpacked on first use, once, into `tmp/` and then
    /// renamed into place; every image and container with that layer shares the directory,
    /// which must therefore never be written to. Concurrent calls wait for each other.
    pub fn layer_dirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        if image.layers.len() != image.diff_ids.len() {
            return Err(ImageError::invalid_image(format!(
                "image {} has {} layers but {} diff IDs",
                image.digest,
                image.layers.len(),
                image.diff_ids.len()
            )));
        }
        image
            .layers
            .iter()
            .zip(&image.diff_ids)
            .map(|(blob, diff_id)| self.unpacked_layer(blob, diff_id))
            .collect()
    }

    /// Stores a blob and returns its digest. With `expected_digest`, content that hashes to
    /// something else is refused ([`ImageError::DigestMismatch`]) and nothing is stored.
    pub fn write_blob(
        &self,
        data: impl Read,
        expected_digest: Option<&str>,
    ) -> Result<String, ImageError> {
        let _exclusive = process_lock(&self.root)?;
        let stored = self.store_blob(data, expected_digest, |source| {
            ImageError::io("reading blob data for", self.root.join(BLOBS_DIR), source)
        })?;
        Ok(stored.digest)
    }

    /// Whether the store has the blob `digest`.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|path| path.is_file())
    }

    /// Records an image fetched from a registry under `reference`: stores `manifest` (which
    /// must be an image manifest, not a list) and checks that its configuration and layers
    /// were written with [`write_blob`](Self::write_blob) before. A digest reference must
    /// match the manifest's digest. The reference moves to this image if another had it.
    pub fn add_image(&self, reference: &str, manifest: &[u8]) -> Result<ImageRecord, ImageError> {
        let _exclusive = process_lock(&self.root)?;
        let reference = Reference::parse(reference)?.with_default_tag();
        let stored = self.store_blob(manifest, None, |source| {
            ImageError::io("reading manifest for", self.root.join(BLOBS_DIR), source)
        })?;
        let result = match &reference.digest {
            Some(expected) if *expected != stored.digest => Err(ImageError::DigestMismatch {
                expected: expected.clone(),
                actual: stored.digest.clone(),
            }),
            _ => self.register(&stored.digest, &[reference.to_string()]),
        };
        if result.is_err() && stored.created {
            // The refusal is what the caller needs to see; a manifest that could not be
            // deleted now is swept by the next `open`.
            let _ = self.delete_unreferenced(&self.lock_index().images, &[stored.digest], &[]);
        }
        result
    }

    /// Adds (or updates) the image whose manifest `manifest_digest` is in the store, under
    /// `references` (normalized). Moves references other images had.
    fn register(
        &self,
        manifest_digest: &str,
        references: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let manifest = match oci::parse_manifest(&self.read_blob(manifest_digest)?) {
            Ok(ManifestKind::Manifest(manifest)) => manifest,
            Ok(ManifestKind::Index(_)) => {
                return Err(ImageError::invalid_image(format!(
                    "{manifest_digest} is a manifest list: pick the platform's manifest first"
                )));
            }
            Err(reason) => {
                return Err(ImageError::invalid_image(format!(
                    "manifest {manifest_digest}: {reason}"
                )));
            }
        };
        let config = self.read_config(&manifest.config.digest)?;
        let layers: Vec<String> = manifest.layers.into_iter().map(|l| l.digest).collect();
        let diff_ids = config.rootfs.diff_ids;
        if layers.len() != diff_ids.len() {
            return Err(ImageError::invalid_image(format!(
                "manifest {manifest_digest} lists {} layers but its configuration {} diff IDs",
                layers.len(),
                diff_ids.len()
            )));
        }
        for digest in &diff_ids {
            digest_hex(digest)?;
        }

        let mut index = self.lock_index();
        // Checked under the lock: `remove` deletes blobs under it too, so none can vanish
        // between this check and the index update.
        let mut size = 0;
        for digest in &layers {
            let path = self.blob_path(digest)?;
            let metadata = fs::metadata(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => ImageError::MissingBlob {
                    digest: digest.clone(),
                },
                _ => ImageError::io("reading", &path, e),
            })?;
            size += metadata.len();
        }
        let record = ImageRecord {
            references: references.to_vec(),
            digest: manifest_digest.to_owned(),
            config_digest: manifest.config.digest,
            layers,
            diff_ids,
            size,
        };
        let mut updated = index.clone();
        let record = insert_image(&mut updated, record);
        self.save_index(&updated)?;
        *index = updated;
        Ok(record)
    }

    fn lock_index(&self) -> MutexGuard<'_, StoreIndex> {
        // Every update replaces the whole index only after the file is written, so the copy a
        // panicking thread left behind is still consistent.
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        // `capstan image import` beside a running agent rewrites the index from another
        // process: every rewrite renames a new file into place, so a new inode or time means
        // the copy in memory is stale.
        let path = self.root.join(INDEX_FILE);
        if let Ok(meta) = fs::metadata(&path) {
            use std::os::unix::fs::MetadataExt;
            let stamp = (meta.ino(), meta.mtime(), meta.mtime_nsec());
            let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            if *loaded != Some(stamp)
                && let Ok(fresh) = fs::read(&path)
                    .map_err(|_| ())
                    .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|_| ()))
            {
                *index = fresh;
                *loaded = Some(stamp);
            }
        }
        index
    }

    /// Rewrites `index.json` atomically: a complete new file is renamed over the old one.
    fn save_index(&self, index: &StoreIndex) -> Result<(), ImageError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|e| ImageError::io("encoding", &path, io::Error::other(e)))?;
        let mut file = self.temp_file("index-")?;
        file.write_all(&bytes)
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| ImageError::io("writing", file.path(), e))?;
        file.persist(&path)
            .map_err(|e| ImageError::io("replacing", &path, e.error))?;
        // The rename is durable only once the directory is.
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| ImageError::io("syncing", &self.root, e))
    }

    fn temp_file(&self, prefix: &str) -> Result<tempfile::NamedTempFile, ImageError> {
        let tmp = self.root.join(TMP_DIR);
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(&tmp)
            .map_err(|e| ImageError::io("creating a file in", &tmp, e))
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join(BLOBS_DIR).join(digest_hex(digest)?))
    }

    fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::MissingBlob {
                digest: digest.to_owned(),
            },
            _ => ImageError::io("opening", &path, e),
        })
    }

    /// Reads a manifest- or configuration-sized blob into memory.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .take(MAX_JSON_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::io("reading blob", digest, e))?;
        if bytes.len() as u64 > MAX_JSON_SIZE {
            return Err(ImageError::invalid_image(format!(
                "{digest} is larger than {MAX_JSON_SIZE} bytes, too large for a manifest or configuration"
            )));
        }
        Ok(bytes)
    }

    fn read_config(&self, digest: &str) -> Result<ConfigFile, ImageError> {
        serde_json::from_slice(&self.read_blob(digest)?)
            .map_err(|e| ImageError::invalid_image(format!("configuration {digest}: {e}")))
    }

    /// Copies `data` into the store under its sha256. `read_error` wraps failures to read
    /// `data`, which are not the store's fault.
    fn store_blob(
        &self,
        data: impl Read,
        expected_digest: Option<&str>,
        read_error: impl Fn(io::Error) -> ImageError,
    ) -> Result<StoredBlob, ImageError> {
        if let Some(expected) = expected_digest {
            digest_hex(expected)?;
        }
        let mut file = self.temp_file("blob-")?;
        let mut reader = HashingReader::new(data);
        let mut buffer = vec![0; COPY_BUFFER_SIZE];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            file.write_all(&buffer[..n])
                .map_err(|e| ImageError::io("writing", file.path(), e))?;
        }
        let (digest, size) = reader.finish();
        if let Some(expected) = expected_digest
            && expected != digest
        {
            return Err(ImageError::DigestMismatch {
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        let path = self.blob_path(&digest)?;
        if path.is_file() {
            return Ok(StoredBlob {
                digest,
                size,
                created: false,
            });
        }
        file.as_file()
            .sync_all()
            .map_err(|e| ImageError::io("syncing", file.path(), e))?;
        file.persist(&path)
            .map_err(|e| ImageError::io("storing", &path, e.error))?;
        Ok(StoredBlob {
            digest,
            size,
            created: true,
        })
    }

    /// The directory of one unpacked layer, unpacking it if this is its first use.
    fn unpacked_layer(&self, blob: &str, diff_id: &str) -> Result<PathBuf, ImageError> {
        let dir = self.root.join(LAYERS_DIR).join(digest_hex(diff_id)?);
        if dir.is_dir() {
            return Ok(dir);
        }
        let lock = self
            .unpacking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(diff_id.to_owned())
            .or_default()
            .clone();
        let result = {
            let _unpacking = lock.lock().unwrap_or_else(PoisonError::into_inner);
            // Whoever held the lock before us may have unpacked it.
            if dir.is_dir() {
                Ok(dir)
            } else {
                self.unpack_layer(blob, diff_id, &dir).map(|()| dir)
            }
        };
        // Threads still waiting hold their own handle and will find the directory; dropping
        // the entry keeps the map from growing with every layer ever unpacked.
        self.unpacking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(diff_id);
        result
    }

    fn unpack_layer(&self, blob: &str, diff_id: &str, dir: &Path) -> Result<(), ImageError> {
        let _exclusive = process_lock(&self.root)?;
        if dir.is_dir() {
            return Ok(()); // another process unpacked it meanwhile
        }
        let file = self.open_blob(blob)?;
        let tmp = self.root.join(TMP_DIR);
        let work = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::io("creating a directory in", &tmp, e))?;
        // On any error `work` is dropped and the partial layer removed.
        let actual = unpack::unpack_layer(BufReader::new(file), work.path(), blob)?;
        if actual != diff_id {
            return Err(ImageError::DigestMismatch {
                expected: diff_id.to_owned(),
                actual,
            });
        }
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io("setting permissions of", work.path(), e))?;
        // Without this a crash shortly after the rename could leave a directory that looks
        // complete but whose files never reached the disk.
        File::open(work.path())
            .and_then(|d| nix::unistd::syncfs(d.as_raw_fd()).map_err(io::Error::from))
            .map_err(|e| ImageError::io("syncing", work.path(), e))?;
        let work = work.keep();
        match fs::rename(&work, dir) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = fs::remove_dir_all(&work);
                // Another process sharing the disk got there first: its copy is as good.
                if dir.is_dir() {
                    Ok(())
                } else {
                    Err(ImageError::io("renaming into place", dir, e))
                }
            }
        }
    }

    /// Deletes those of `blobs` and of the layers `diff_ids` that no image in `images` uses.
    /// Called with the index lock held (`images` is the locked index).
    fn delete_unreferenced(
        &self,
        images: &[ImageRecord],
        blobs: &[String],
        diff_ids: &[String],
    ) -> Result<(), ImageError> {
        let (used_blobs, used_layers) = referenced(images);
        let mut first_error = None;
        for digest in blobs.iter().filter(|d| !used_blobs.contains(d.as_str())) {
            let Ok(path) = self.blob_path(digest) else {
                continue;
            };
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                first_error.get_or_insert(ImageError::io("removing", path, e));
            }
        }
        for diff_id in diff_ids
            .iter()
            .filter(|d| !used_layers.contains(d.as_str()))
        {
            let Ok(hex) = digest_hex(diff_id) else {
                continue;
            };
            if let Err(e) = self.remove_layer_dir(hex) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Moves a layer directory out of `layers/` before deleting it, so that a crash halfway
    /// through never leaves a partial layer that looks complete.
    fn remove_layer_dir(&self, hex: &str) -> Result<(), ImageError> {
        let dir = self.root.join(LAYERS_DIR).join(hex);
        if !dir.exists() {
            return Ok(());
        }
        let tmp = self.root.join(TMP_DIR);
        let trash = tempfile::Builder::new()
            .prefix("removing-")
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::io("creating a directory in", &tmp, e))?;
        let target = trash.path().join(hex);
        fs::rename(&dir, &target).map_err(|e| ImageError::io("moving aside", &dir, e))?;
        fs::remove_dir_all(trash.path()).map_err(|e| ImageError::io("removing", &target, e))
    }

    /// Deletes the blobs and layers that no image references.
    fn sweep_unreferenced(&self) -> Result<(), ImageError> {
        let index = self.lock_index();
        let list = |dir: &str| -> Result<Vec<String>, ImageError> {
            let path = self.root.join(dir);
            let mut names = Vec::new();
            for entry in fs::read_dir(&path).map_err(|e| ImageError::io("listing", &path, e))? {
                let entry = entry.map_err(|e| ImageError::io("listing", &path, e))?;
                // Only names the store itself would have made: leave anything else alone.
                if let Some(name) = entry.file_name().to_str()
                    && is_sha256_hex(name)
                {
                    names.push(format!("sha256:{name}"));
                }
            }
            Ok(names)
        };
        let blobs = list(BLOBS_DIR)?;
        let layers = list(LAYERS_DIR)?;
        self.delete_unreferenced(&index.images, &blobs, &layers)
    }
}

/// Adds `record` to the index or merges its references into the record with the same manifest,
/// taking the references away from any other image. Returns the record as stored.
fn insert_image(index: &mut StoreIndex, record: ImageRecord) -> ImageRecord {
    for other in index
        .images
        .iter_mut()
        .filter(|i| i.digest != record.digest)
    {
        other.references.retain(|r| !record.references.contains(r));
    }
    match index.images.iter_mut().find(|i| i.digest == record.digest) {
        Some(existing) => {
            for reference in record.references {
                if !existing.references.contains(&reference) {
                    existing.references.push(reference);
                }
            }
            existing.clone()
        }
        None => {
            index.images.push(record.clone());
            record
        }
    }
}

/// Blob digests and diff IDs that `images` use.
fn referenced(images: &[ImageRecord]) -> (HashSet<&str>, HashSet<&str>) {
    let blobs = images
        .iter()
        .flat_map(|i| {
            [i.digest.as_str(), i.config_digest.as_str()]
                .into_iter()
                .chain(i.layers.iter().map(String::as_str))
        })
        .collect();
    let layers = images
        .iter()
        .flat_map(|i| i.diff_ids.iter().map(String::as_str))
        .collect();
    (blobs, layers)
}

/// Finds the image `query` names; see [`ImageStore::resolve`] for the accepted forms.
fn find_image(images: &[ImageRecord], query: &str) -> Result<Option<(usize, Matched)>, ImageError> {
    let id = query.strip_prefix("sha256:").unwrap_or(query);
    let id_like = !id.is_empty() && id.len() <= 64 && id.bytes().all(is_lower_hex);
    if id_like && id.len() == 64 {
        let digest = format!("sha256:{id}");
        let position = images
            .iter()
            .position(|i| i.config_digest == digest || i.digest == digest);
        return Ok(position.map(|p| (p, Matched::Id)));
    }

    // A short hex string is also a valid name (`abc123` is `docker.io/library/abc123`); like
    // containerd, try the name first and the ID prefix after.
    match Reference::parse(query) {
        Ok(reference) => {
            let reference = reference.with_default_tag();
            let normalized = reference.to_string();
            let found = match &reference.digest {
                Some(digest) => {
                    let repository = reference.repository();
                    images
                        .iter()
                        .position(|i| {
                            i.digest == *digest
                                && i.references.iter().any(|r| {
                                    *r == normalized
                                        || repository_of(r).as_deref() == Some(&repository)
                                })
                        })
                        .map(|p| {
                            let matched = Matched::Digest {
                                reference: normalized,
                                repository,
                            };
                            (p, matched)
                        })
                }
                None => images
                    .iter()
                    .position(|i| i.references.contains(&normalized))
                    .map(|p| (p, Matched::Name(normalized))),
            };
            if found.is_some() || !id_like {
                return Ok(found);
            }
        }
        Err(error) if !id_like => return Err(error),
        Err(_) => {}
    }

    let mut matches = images
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            i.config_digest
                .strip_prefix("sha256:")
                .is_some_and(|hex| hex.starts_with(id))
        })
        .map(|(position, _)| position);
    match (matches.next(), matches.next()) {
        (None, _) => Ok(None),
        (Some(position), None) => Ok(Some((position, Matched::Id))),
        (Some(_), Some(_)) => Err(ImageError::AmbiguousReference {
            reference: query.to_owned(),
        }),
    }
}

/// The repository of a stored (normalized) reference.
fn repository_of(reference: &str) -> Option<String> {
    Reference::parse(reference).ok().map(|r| r.repository())
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(is_lower_hex)
}

/// The hex part of a `sha256:` digest. Every digest becomes a file name through this check,
/// so a crafted manifest cannot name a path outside the store.
fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| is_sha256_hex(hex))
        .ok_or_else(|| ImageError::InvalidDigest {
            digest: digest.to_owned(),
        })
}

/// Removes a file or directory tree.
fn remove_path(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}
