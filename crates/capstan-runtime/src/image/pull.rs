//! Image pulls from OCI registries (the distribution API v2), the way containerd pulls for the
//! kubelet: resolve the reference to a manifest (picking this host's platform from an index),
//! download the configuration and the layers the store lacks, verify every digest, record the
//! image, and unpack its layers so that the first container start does not wait for them.
//!
//! The HTTP side is `oci-client` (bearer token and basic authentication, redirects to blob
//! storage). Registries on loopback (`localhost`, `127.0.0.0/8`, `::1`) are spoken to over plain
//! HTTP, as Docker and containerd do; every other registry over HTTPS.
//!
//! Blobs are downloaded into an unnamed file under the store's `tmp/` and only then copied in
//! with [`ImageStore::write_blob`], so the store's lock is held for a local copy, never for a
//! download from a slow registry. Two pulls of the same reference run one after the other, and
//! a blob two pulls need is downloaded by the first while the second waits: each blob crosses
//! the network once per node.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Seek};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::TryStreamExt;
use futures_util::stream::FuturesUnordered;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use tokio::io::AsyncWrite;

use super::oci::{self, Descriptor, ManifestKind};
use super::{ImageError, ImageRecord, ImageStore, Reference, TMP_DIR};

#[cfg(test)]
mod tests;

/// The manifest formats a pull accepts, images and indexes, OCI and Docker.
const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];
/// Blobs downloaded at the same time by one pull: containerd's default
/// `max_concurrent_downloads`.
const CONCURRENT_DOWNLOADS: usize = 3;
/// A registry that accepts no connection within this time is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A download that receives nothing for this long is stalled (kubelet's old
/// `image-pull-progress-deadline`).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("capstan/", env!("CARGO_PKG_VERSION"));

/// The credentials a pull presents to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials. Registries that hand out anonymous bearer tokens (Docker Hub) still
    /// serve public images this way.
    #[default]
    Anonymous,
    /// A user name and password (or token) sent with HTTP basic authentication, or exchanged
    /// for a bearer token when the registry asks for one.
    Basic { username: String, password: String },
}

/// The password stays out of logs.
impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl From<&RegistryAuth> for oci_client::secrets::RegistryAuth {
    fn from(auth: &RegistryAuth) -> Self {
        match auth {
            RegistryAuth::Anonymous => Self::Anonymous,
            RegistryAuth::Basic { username, password } => {
                Self::Basic(username.clone(), password.clone())
            }
        }
    }
}

/// Why a pull failed. Messages read like containerd's, which the kubelet shows as the
/// `ErrImagePull` message. `reference` is the normalized name
/// (`docker.io/library/busybox:latest`).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The name is not a valid image reference; the message is the kubelet's
    /// `InvalidImageName` one. Retrying does not help.
    #[error(transparent)]
    InvalidReference(ImageError),

    /// The registry knows no such repository or tag. Retrying helps only once the image has
    /// been pushed.
    #[error(
        "failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": {reference}: not found"
    )]
    NotFound { reference: String },

    /// The registry wants credentials and got none, or refused the ones it got. Retrying helps
    /// with other credentials.
    #[error(
        "failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": pull access denied, repository does not exist or may require authorization: {reason}"
    )]
    Unauthorized { reference: String, reason: String },

    /// The manifest could not be fetched: the registry is unreachable, TLS failed, the server
    /// failed, or the manifest does not match its digest. Retrying may help.
    #[error(
        "failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": {reason}"
    )]
    Resolve { reference: String, reason: String },

    /// The reference names an index without an image for this host's platform. Retrying does
    /// not help.
    #[error(
        "failed to pull and unpack image \"{reference}\": no match for platform in manifest: not found"
    )]
    NoMatchingPlatform { reference: String },

    /// The manifest is not a usable image manifest (bad JSON, an index inside an index, an
    /// unsupported schema). Retrying does not help.
    #[error("failed to pull and unpack image \"{reference}\": invalid manifest {digest}: {reason}")]
    InvalidManifest {
        reference: String,
        digest: String,
        reason: String,
    },

    /// Downloading a configuration or layer failed, or its content is not what the manifest
    /// announced (digest or size). Retrying may help: the next pull downloads it again.
    #[error("failed to pull and unpack image \"{reference}\": failed to copy {digest}: {reason}")]
    FetchBlob {
        reference: String,
        digest: String,
        reason: String,
    },

    /// The image store refused what was downloaded (a blob that does not hash to its digest,
    /// a layer that does not match its diff ID or escapes its directory) or could not write it
    /// (disk full). Retrying helps only when the cause was the disk.
    #[error("failed to pull and unpack image \"{reference}\": {source}")]
    Store {
        reference: String,
        #[source]
        source: ImageError,
    },
}

/// Pulls `reference` from its registry into `store` with `auth`, and returns the image as
/// recorded. Blobs the store already has are not downloaded again; with a tag the manifest
/// always is (that is what `imagePullPolicy: Always` asks for). The layers are unpacked before
/// this returns.
///
/// Cancel-safe: dropping the future leaves no partial blob behind (downloads go to unnamed
/// files). Must run on tokio's multi-threaded runtime: the store's file work blocks, and runs
/// in place.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    auth: &RegistryAuth,
) -> Result<ImageRecord, PullError> {
    let parsed = Reference::parse(reference)
        .map_err(PullError::InvalidReference)?
        .with_default_tag();
    let name = parsed.to_string();
    // Pulls of one name queue: the second finds the blobs the first downloaded.
    let _same_name = IN_FLIGHT
        .lock(format!("{}\0{name}", store.root().display()))
        .await;
    let puller = Puller {
        store,
        client: client_for(&parsed.domain),
        remote: remote_reference(&parsed),
        auth: auth.into(),
        name: name.clone(),
    };

    let (manifest_bytes, manifest_digest) = puller.resolve().await?;
    let manifest = match oci::parse_manifest(&manifest_bytes) {
        Ok(ManifestKind::Manifest(manifest)) => manifest,
        Ok(ManifestKind::Index(_)) => {
            return Err(puller.invalid(&manifest_digest, "an index where an image was expected"));
        }
        Err(reason) => return Err(puller.invalid(&manifest_digest, reason)),
    };
    // No stream combinators with closures here: they make the future's `Send` bound
    // higher-ranked, which rustc then fails to prove where the agent spawns it.
    let mut downloads = FuturesUnordered::new();
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if downloads.len() == CONCURRENT_DOWNLOADS {
            downloads.try_next().await?;
        }
        downloads.push(puller.fetch_blob(blob));
    }
    while downloads.try_next().await?.is_some() {}

    // A digest reference that named an index cannot name the platform's manifest: the store
    // records manifests, so the image gets the manifest's own digest.
    let record_as = match &parsed.digest {
        Some(digest) if *digest != manifest_digest => Reference {
            digest: Some(manifest_digest.clone()),
            tag: None,
            ..parsed.clone()
        }
        .to_string(),
        _ => name.clone(),
    };
    let record = tokio::task::block_in_place(|| store.add_image(&record_as, &manifest_bytes))
        .map_err(|source| puller.store_error(source))?;
    tokio::task::block_in_place(|| store.layer_dirs(&record))
        .map_err(|source| puller.store_error(source))?;
    Ok(record)
}

/// Where a reference's registry is reached: `https://index.docker.io` for Docker Hub names,
/// `http://127.0.0.1:5000` for a registry on loopback.
pub fn registry_url(reference: &Reference) -> String {
    let remote = remote_reference(reference);
    let scheme = if is_loopback(&reference.domain) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{}", remote.resolve_registry())
}

/// Whether a registry domain (`host` or `host:port`) is on loopback, where Docker and
/// containerd speak plain HTTP without being told to.
fn is_loopback(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => domain.split_once(':').map_or(domain, |(host, _)| host),
    };
    host == "localhost"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The reference in `oci-client`'s terms, built from the parts so that both sides agree on
/// Docker's normalization.
fn remote_reference(reference: &Reference) -> oci_client::Reference {
    let (registry, repository) = (reference.domain.clone(), reference.path.clone());
    match (&reference.tag, &reference.digest) {
        (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
            registry,
            repository,
            tag.clone(),
            digest.clone(),
        ),
        (None, Some(digest)) => {
            oci_client::Reference::with_digest(registry, repository, digest.clone())
        }
        (tag, None) => oci_client::Reference::with_tag(
            registry,
            repository,
            tag.clone().unwrap_or_else(|| "latest".to_owned()),
        ),
    }
}

/// A client for one pull. Each pull gets its own, so that credentials and the tokens bought
/// with them never serve another pod's pull.
fn client_for(domain: &str) -> oci_client::Client {
    // reqwest is built without a crypto provider (aws-lc would be the default): it uses the
    // process's, which must be ring. Installing fails harmlessly when one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_loopback(domain) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    oci_client::Client::new(ClientConfig {
        protocol,
        // Indexes are resolved here, with the store's notion of this host's platform.
        platform_resolver: None,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: USER_AGENT,
        ..ClientConfig::default()
    })
}

/// One pull in progress.
struct Puller<'a> {
    store: &'a ImageStore,
    client: oci_client::Client,
    remote: oci_client::Reference,
    auth: oci_client::secrets::RegistryAuth,
    /// The normalized reference, for messages.
    name: String,
}

impl Puller<'_> {
    /// Fetches the manifest the reference names, going through an index to this platform's
    /// image. Returns its bytes and digest, both verified.
    async fn resolve(&self) -> Result<(Vec<u8>, String), PullError> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&self.remote, &self.auth, MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| self.resolve_error(e))?;
        let index = match oci::parse_manifest(&bytes) {
            Ok(ManifestKind::Index(index)) => index,
            Ok(ManifestKind::Manifest(_)) => return Ok((bytes.to_vec(), digest)),
            Err(reason) => return Err(self.invalid(&digest, reason)),
        };
        let platform_manifest = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(oci::Platform::matches_host))
            .ok_or_else(|| PullError::NoMatchingPlatform {
                reference: self.name.clone(),
            })?;
        // oci-client checks the body against the digest in the reference.
        let by_digest = self
            .remote
            .clone_with_digest(platform_manifest.digest.clone());
        self.client
            .pull_manifest_raw(&by_digest, &self.auth, MANIFEST_MEDIA_TYPES)
            .await
            .map(|(bytes, digest)| (bytes.to_vec(), digest))
            .map_err(|e| self.resolve_error(e))
    }

    /// Downloads one blob unless the store has it, and writes it to the store, which checks
    /// its digest again.
    async fn fetch_blob(&self, blob: &Descriptor) -> Result<(), PullError> {
        if self.store.has_blob(&blob.digest) {
            return Ok(());
        }
        // Another pull (another name for an image with this layer) may be downloading it.
        let _same_blob = IN_FLIGHT
            .lock(format!("{}\0{}", self.store.root().display(), blob.digest))
            .await;
        if self.store.has_blob(&blob.digest) {
            return Ok(());
        }
        let fetch_error = |reason: String| PullError::FetchBlob {
            reference: self.name.clone(),
            digest: blob.digest.clone(),
            reason,
        };
        let tmp = self.store.root().join(TMP_DIR);
        let file = tempfile::tempfile_in(&tmp)
            .map_err(|e| self.store_error(ImageError::io("creating a file in", &tmp, e)))?;
        let mut writer = LimitedWriter {
            inner: tokio::fs::File::from_std(file),
            remaining: blob.size,
        };
        let descriptor = oci_client::manifest::OciDescriptor {
            media_type: blob.media_type.clone(),
            digest: blob.digest.clone(),
            size: i64::try_from(blob.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        self.client
            .pull_blob(&self.remote, &descriptor, &mut writer)
            .await
            .map_err(|e| {
                fetch_error(match e {
                    OciDistributionError::IoError(io) => io.to_string(),
                    other => describe(&other),
                })
            })?;
        if writer.remaining != 0 {
            return Err(fetch_error(format!(
                "expected {} bytes, the registry sent {}",
                blob.size,
                blob.size - writer.remaining
            )));
        }
        let mut file = writer.inner.into_std().await;
        file.rewind()
            .map_err(|e| self.store_error(ImageError::io("rewinding", &tmp, e)))?;
        tokio::task::block_in_place(|| self.store.write_blob(file, Some(&blob.digest)))
            .map_err(|source| self.store_error(source))?;
        Ok(())
    }

    fn resolve_error(&self, error: OciDistributionError) -> PullError {
        let reference = self.name.clone();
        let codes = |wanted: &[OciErrorCode]| match &error {
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|e| wanted.contains(&e.code))
            }
            _ => false,
        };
        let not_found = codes(&[
            OciErrorCode::ManifestUnknown,
            OciErrorCode::NameUnknown,
            OciErrorCode::NotFound,
        ]) || matches!(error, OciDistributionError::ServerError { code: 404, .. });
        if not_found {
            return PullError::NotFound { reference };
        }
        let reason = describe(&error);
        let unauthorized = codes(&[OciErrorCode::Unauthorized, OciErrorCode::Denied])
            || matches!(
                error,
                OciDistributionError::UnauthorizedError { .. }
                    | OciDistributionError::AuthenticationFailure(_)
                    | OciDistributionError::ServerError {
                        code: 401 | 403,
                        ..
                    }
            );
        if unauthorized {
            PullError::Unauthorized { reference, reason }
        } else {
            PullError::Resolve { reference, reason }
        }
    }

    fn invalid(&self, digest: &str, reason: impl Into<String>) -> PullError {
        PullError::InvalidManifest {
            reference: self.name.clone(),
            digest: digest.to_owned(),
            reason: reason.into(),
        }
    }

    fn store_error(&self, source: ImageError) -> PullError {
        PullError::Store {
            reference: self.name.clone(),
            source,
        }
    }
}

/// An `oci-client` error in the words containerd would use where it has them, with the causes
/// (connection refused, certificate unknown) that its `Display` leaves out.
fn describe(error: &OciDistributionError) -> String {
    match error {
        OciDistributionError::UnauthorizedError { url } => {
            format!("unexpected status from GET request to {url}: 401 Unauthorized")
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let messages: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect();
            format!(
                "unexpected status from GET request to {url}: server message: {}",
                messages.join("; ")
            )
        }
        OciDistributionError::ServerError { url, code, message } => {
            let message = message.trim();
            if message.is_empty() {
                format!("unexpected status from GET request to {url}: {code}")
            } else {
                format!("unexpected status from GET request to {url}: {code}: {message}")
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.ends_with(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

/// Refuses to write more than the manifest announced, so that a broken or hostile registry
/// cannot fill the disk with one endless blob.
struct LimitedWriter<W> {
    inner: W,
    remaining: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for LimitedWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.len() as u64 > self.remaining {
            return Poll::Ready(Err(io::Error::other(
                "the registry sent more bytes than the manifest announced",
            )));
        }
        let written = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.remaining -= written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Async locks by name, made on first use and forgotten once nobody holds or waits for them.
struct KeyedLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    async fn lock(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            locks.retain(|_, lock| lock.strong_count() > 0);
            match locks.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// The names being pulled and the blobs being downloaded in this process, keyed by store root
/// so that two stores never wait for each other.
static IN_FLIGHT: LazyLock<KeyedLocks> = LazyLock::new(|| KeyedLocks(Mutex::default()));
