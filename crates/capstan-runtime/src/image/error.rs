//! The one error type of the image store.

use std::io;
use std::path::PathBuf;

/// Why an image store operation failed. Each variant names the operation or check that failed
/// and says whether retrying can help, so callers (the agent's pod workers, the CRI-like API)
/// can decide between backing off and reporting a permanent failure.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Opening or reading an image archive failed, or it is not a (possibly gzipped) tar file.
    /// Retrying with the same file does not help.
    #[error("reading image archive {archive}: {source}")]
    ReadArchive {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The archive is a tar file but neither an OCI image layout nor a `docker save` archive.
    /// Retrying does not help.
    #[error("{archive} is neither an OCI image layout nor a docker save archive")]
    UnknownFormat { archive: PathBuf },

    /// A manifest, index or image configuration is malformed or inconsistent (bad JSON, a
    /// manifest list where a manifest was expected, a layer count that does not match the
    /// configuration). The image itself is broken: retrying does not help.
    #[error("invalid image: {reason}")]
    InvalidImage { reason: String },

    /// Content does not hash to the digest it was announced with: a corrupt download, archive
    /// or layer. Downloading again may help; re-reading the same archive does not.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: String, actual: String },

    /// A digest is not `sha256:` followed by 64 lowercase hex digits, the only form the store
    /// keeps. Retrying does not help.
    #[error("unsupported or malformed digest {digest:?}")]
    InvalidDigest { digest: String },

    /// A blob that a manifest needs is not in the store. Retrying helps once the blob has been
    /// written with `write_blob`.
    #[error("blob {digest} is not in the image store")]
    MissingBlob { digest: String },

    /// No image in the store matches the reference. Pulling or importing the image helps.
    #[error("image {reference:?} not found")]
    NotFound { reference: String },

    /// An image ID prefix matches more than one image. A longer prefix helps; retrying does not.
    #[error("image ID prefix {reference:?} matches more than one image")]
    AmbiguousReference { reference: String },

    /// The reference is not a valid image name. The message is the one the kubelet reports with
    /// reason `InvalidImageName`, so it can be shown to users unchanged. Retrying does not help.
    #[error(
        "Failed to apply default image tag {reference:?}: couldn't parse image name {reference:?}: {reason}"
    )]
    InvalidReference { reference: String, reason: String },

    /// A layer entry's path (or hard link target) is absolute, contains `..`, or goes through a
    /// symbolic link: unpacking it would write outside the layer directory. The layer is broken
    /// or hostile; retrying does not help.
    #[error("layer {layer}: entry {path:?} escapes the layer directory")]
    UnsafeLayerPath { layer: String, path: PathBuf },

    /// Unpacking a layer failed: a corrupt or unsupported (e.g. zstd) layer, or a write error.
    /// Retrying helps only when the cause was the disk (full, read-only).
    #[error("unpacking layer {layer}: {source}")]
    Unpack {
        layer: String,
        #[source]
        source: io::Error,
    },

    /// Reading or writing the store's own files failed (disk full, permissions, missing
    /// directory). Retrying helps once the cause is fixed.
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The store's index file is not valid JSON. Retrying does not help: an operator has to
    /// repair or delete it (deleting forgets the images, their blobs stay until re-imported).
    #[error("reading image index {path}: {source}")]
    ReadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ImageError {
    /// Wraps an I/O error on one of the store's files.
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid_image(reason: impl Into<String>) -> Self {
        Self::InvalidImage {
            reason: reason.into(),
        }
    }
}
