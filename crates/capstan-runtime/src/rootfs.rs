//! A container's root filesystem: the image's unpacked layers, shared read-only by every
//! container of the image, under a private writable layer, joined with overlayfs.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Why a root filesystem could not be mounted or unmounted. Retrying does not help unless the
/// cause (a full disk, a busy mount) went away.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("preparing {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("an image needs at least one layer")]
    NoLayers,
    #[error("mounting the root filesystem at {target}: {source}")]
    Mount { target: PathBuf, source: nix::Error },
    #[error("unmounting {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
}

/// Mounts `layers` (bottom first) under the writable directories in `scratch` at `target`.
/// The writable layer survives until [`remove`], so a restarted container keeps its files, as
/// with containerd (a new container attempt gets a new `scratch`).
pub fn mount(layers: &[PathBuf], scratch: &Path, target: &Path) -> Result<(), RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    for dir in [&upper, &work, &target.to_path_buf()] {
        std::fs::create_dir_all(dir).map_err(|source| RootfsError::Prepare {
            path: dir.clone(),
            source,
        })?;
    }
    // overlayfs lists the top layer first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        target: target.to_owned(),
        source,
    })
}

/// Whether `target` is a mount point already (an agent restart finds mounts it made).
pub fn is_mounted(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(inner), Some(Ok(outer))) = (
        std::fs::metadata(target),
        target.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    inner.dev() != outer.dev()
}

/// Unmounts `target` (idempotent: a target that is not mounted is fine).
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(RootfsError::Unmount {
            target: target.to_owned(),
            source,
        }),
    }
}
