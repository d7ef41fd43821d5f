//! Unpacking one layer tarball into a directory that overlayfs can use as a lower layer.
//!
//! OCI layers mark deletions with whiteout files (`.wh.<name>`, and `.wh..wh..opq` for "hide
//! everything below this directory"); overlayfs expects a character device 0/0 and the
//! `trusted.overlay.opaque=y` attribute instead, so they are translated here. Regular entries
//! go through the `tar` crate, which keeps modes, ownership, links and xattrs and refuses to
//! write through symbolic links that leave the directory; device nodes, fifos and whiteouts are
//! made here, never following a symbolic link.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use sha2::{Digest, Sha256};

use super::ImageError;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// `.wh..wh..opq` without the whiteout prefix.
const OPAQUE_MARKER: &[u8] = b".wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Mode of directories that a layer does not list but needs (parents of whiteouts); the same
/// default `docker` and containerd use.
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// How a blob is compressed, told by its first bytes rather than by the media type, which
/// `docker save` archives do not have and some registries get wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// Reads up to `buf.len()` bytes, fewer only at end of stream.
pub fn read_head(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Wraps `reader` in a decompressor chosen by its magic bytes.
pub fn decompress<'a>(mut reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let len = read_head(&mut reader, &mut magic)?;
    let stream = io::Cursor::new(magic).take(len as u64).chain(reader);
    match Compression::detect(&magic[..len]) {
        Compression::Gzip => Ok(Box::new(MultiGzDecoder::new(stream))),
        Compression::Zstd => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "zstd compression is not supported",
        )),
        Compression::None => Ok(Box::new(stream)),
    }
}

/// Passes bytes through while hashing them.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// `sha256:<hex>` of everything read so far, and its length.
    pub fn finish(self) -> (String, u64) {
        (format!("sha256:{:x}", self.hasher.finalize()), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Unpacks the layer blob `blob` (gzip or plain tar) into `dest`, an existing empty directory,
/// and returns the digest of the uncompressed tar: the layer's diff ID, which the caller
/// compares with the image configuration. `layer` names the layer in errors.
pub fn unpack_layer(blob: impl Read, dest: &Path, layer: &str) -> Result<String, ImageError> {
    let unpack_error = |source: io::Error| ImageError::Unpack {
        layer: layer.to_owned(),
        source,
    };
    let tar_stream = HashingReader::new(decompress(blob).map_err(unpack_error)?);
    let mut archive = tar::Archive::new(tar_stream);
    // We run as root and the layer must look exactly as its author made it: setuid bits,
    // owners and file capabilities (xattrs) included.
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);

    for entry in archive.entries().map_err(unpack_error)? {
        let mut entry = entry.map_err(unpack_error)?;
        let path = entry.path().map_err(unpack_error)?.into_owned();
        let relative = layer_relative(&path).ok_or_else(|| unsafe_path(layer, &path))?;
        let Some(name) = relative.file_name() else {
            // The layer root (`./`): its attributes belong to the directory we own.
            continue;
        };
        let parent = relative.parent().unwrap_or(Path::new(""));

        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
            // `.wh.`, `.wh..` and `.wh...` would white out the directory itself or its parent.
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(unsafe_path(layer, &path));
            }
            let dir = ensure_dir(dest, parent, layer)?;
            if hidden == OPAQUE_MARKER {
                xattr::set(&dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(unpack_error)?;
            } else {
                make_whiteout(&dir.join(std::ffi::OsStr::from_bytes(hidden)))
                    .map_err(unpack_error)?;
            }
            continue;
        }

        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let dir = ensure_dir(dest, parent, layer)?;
                make_node(&dir.join(name), entry.header(), kind).map_err(unpack_error)?;
                continue;
            }
            tar::EntryType::Link => {
                // The tar crate checks hard link targets too, but the error should say why.
                let target = entry.link_name().map_err(unpack_error)?.unwrap_or_default();
                if layer_relative(&target).is_none() {
                    return Err(unsafe_path(layer, &target));
                }
            }
            tar::EntryType::Directory => {
                let opaque = replace_non_directory(&dest.join(&relative)).map_err(unpack_error)?;
                if opaque {
                    // A whiteout then a directory of the same name: the lower directory was
                    // deleted and a new one made, so nothing below may show through.
                    let dir = ensure_dir(dest, &relative, layer)?;
                    xattr::set(&dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(unpack_error)?;
                }
            }
            _ => {}
        }
        if !entry.unpack_in(dest).map_err(unpack_error)? {
            return Err(unsafe_path(layer, &path));
        }
    }

    // The diff ID covers the whole uncompressed stream, including the padding after the
    // end-of-archive marker that the tar reader stops at.
    let mut tar_stream = archive.into_inner();
    io::copy(&mut tar_stream, &mut io::sink()).map_err(unpack_error)?;
    Ok(tar_stream.finish().0)
}

fn unsafe_path(layer: &str, path: &Path) -> ImageError {
    ImageError::UnsafeLayerPath {
        layer: layer.to_owned(),
        path: path.to_owned(),
    }
}

/// The entry path relative to the layer root, or `None` when it is absolute or has a `..`
/// component. Such paths never occur in layers that Docker, BuildKit or Buildah produce.
pub fn layer_relative(path: &Path) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(relative)
}

/// Makes sure `dest/relative` is a directory, creating missing ones, and returns its path.
/// Never follows a symbolic link: a link where a directory is needed is an escape attempt.
fn ensure_dir(dest: &Path, relative: &Path, layer: &str) -> Result<PathBuf, ImageError> {
    let unpack_error = |source: io::Error| ImageError::Unpack {
        layer: layer.to_owned(),
        source,
    };
    let mut dir = dest.to_path_buf();
    for part in relative.components() {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(metadata) if metadata.file_type().is_symlink() => {
                return Err(unsafe_path(layer, relative));
            }
            Ok(_) => {
                return Err(unpack_error(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(unpack_error)?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(IMPLICIT_DIR_MODE))
                    .map_err(unpack_error)?;
            }
            Err(e) => return Err(unpack_error(e)),
        }
    }
    Ok(dir)
}

/// Removes whatever is at `path` so that a later entry of the same layer replaces it.
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Before a directory entry: removes a non-directory at its path. Returns whether that was a
/// whiteout, in which case the new directory must be opaque.
fn replace_non_directory(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => Ok(false),
        Ok(metadata) => {
            let whiteout = metadata.file_type().is_char_device() && metadata.rdev() == 0;
            fs::remove_file(path)?;
            Ok(whiteout)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// An overlayfs whiteout: a character device with device number 0/0.
fn make_whiteout(path: &Path) -> io::Result<()> {
    remove_existing(path)?;
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))?;
    Ok(())
}

/// A device node or fifo with the entry's mode and owner.
fn make_node(path: &Path, header: &tar::Header, kind: tar::EntryType) -> io::Result<()> {
    let file_type = match kind {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let device = match kind {
        tar::EntryType::Fifo => makedev(0, 0),
        _ => makedev(
            u64::from(header.device_major()?.unwrap_or(0)),
            u64::from(header.device_minor()?.unwrap_or(0)),
        ),
    };
    let mode = header.mode()? & 0o7777;
    remove_existing(path)?;
    mknod(path, file_type, Mode::from_bits_truncate(mode), device)?;
    let uid = u32::try_from(header.uid()?).map_err(io::Error::other)?;
    let gid = u32::try_from(header.gid()?).map_err(io::Error::other)?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    // mknod applied the umask; the layer's mode wins.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
