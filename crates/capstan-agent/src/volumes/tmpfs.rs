//! Memory-backed volume directories: a tmpfs mounted over the volume's directory on the host,
//! then bind-mounted into the containers like any other volume (so all containers of the pod
//! share it). Which paths are mount points is read from `/proc/self/mountinfo`, the kernel's
//! own account, so a restarted agent sees the mounts its predecessor made.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::VolumeError;

/// Mounts a tmpfs at `dir` (an existing directory) unless one is already mounted there.
/// `size_bytes` becomes the `size=` option; without it the kernel's default (half of RAM)
/// applies.
pub(super) fn mount(dir: &Path, size_bytes: Option<u64>) -> Result<(), VolumeError> {
    if is_mount_point(dir)? {
        return Ok(());
    }
    let options = size_bytes.map(|size| format!("size={size}"));
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        options.as_deref(),
    )
    .map_err(|source| VolumeError::Mount {
        path: dir.to_path_buf(),
        source,
    })
}

/// Detaches the mount at `path`. Lazily (`MNT_DETACH`), so a mount still held by an exiting
/// process cannot make cleanup fail; the files vanish from the path at once either way.
/// A path that is no longer a mount point is fine.
pub(super) fn unmount(path: &Path) -> Result<(), VolumeError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(source) => Err(VolumeError::Unmount {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Is something mounted exactly at `dir`?
pub(super) fn is_mount_point(dir: &Path) -> Result<bool, VolumeError> {
    let dir = canonical(dir)?;
    Ok(mount_points()?.contains(&dir))
}

/// The mount points at or below `root`, deepest first (the order to unmount them in).
pub(super) fn mounts_under(root: &Path) -> Result<Vec<PathBuf>, VolumeError> {
    let root = canonical(root)?;
    let mut points: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|point| point.starts_with(&root))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    Ok(points)
}

/// The mount table lists resolved paths, so compare against the resolved form.
fn canonical(path: &Path) -> Result<PathBuf, VolumeError> {
    fs::canonicalize(path).map_err(|source| VolumeError::Io {
        operation: "resolve",
        path: path.to_path_buf(),
        source,
    })
}

/// Every mount point of this mount namespace, one entry per mount (stacked mounts repeat).
fn mount_points() -> Result<Vec<PathBuf>, VolumeError> {
    let path = Path::new("/proc/self/mountinfo");
    let table = fs::read_to_string(path).map_err(|source: io::Error| VolumeError::Io {
        operation: "read",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .collect())
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/var/lib/my\040dir"), "/var/lib/my dir");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/odd\04"), r"/odd\04");
    }

    #[test]
    fn a_tmpfs_is_mounted_once_and_unmounted() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vol with space");
        fs::create_dir(&target).unwrap();
        mount(&target, Some(1024 * 1024)).unwrap();
        mount(&target, Some(1024 * 1024)).unwrap();
        assert!(is_mount_point(&target).unwrap());
        assert_eq!(mounts_under(dir.path()).unwrap().len(), 1, "mounted twice");

        unmount(&target).unwrap();
        unmount(&target).unwrap();
        assert!(!is_mount_point(&target).unwrap());
    }
}
