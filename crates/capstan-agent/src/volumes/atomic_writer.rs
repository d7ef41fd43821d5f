//! Kubelet's atomic writer: the files of a configMap, secret, downwardAPI or projected volume
//! are replaced as a whole, so a process reading the volume never sees half an update.
//!
//! Layout of a volume directory:
//!
//! ```text
//! ..2026_11_24_18_00_00.123456789/   the current payload (one directory per version)
//! ..data -> ..2026_11_24_18_00_00.123456789
//! key    -> ..data/key                one link per top-level entry of the payload
//! ```
//!
//! An update writes a new timestamped directory, points a temporary link at it and renames that
//! link over `..data` (a rename is atomic), then drops links to entries that are gone and the
//! old directory. The user-visible links never change for an entry that stays, which is why
//! applications see the new content through the same path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use super::VolumeError;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
}

/// The files of a volume by relative path (`key` or `dir/key`).
pub(super) type Payload = BTreeMap<String, FileProjection>;

const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";
/// Kubelet's limits on payload paths.
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// Makes `target` (an existing directory) hold exactly `payload`. Idempotent: when the current
/// version already holds the same files and modes nothing is rewritten, so a refresh that
/// changes nothing does not disturb readers. Also finishes an update a crash interrupted (links
/// created, stale versions removed).
pub(super) fn write(target: &Path, payload: &Payload) -> Result<(), VolumeError> {
    let payload = clean_payload(payload)?;
    let data_link = target.join(DATA_LINK);

    let current = current_version(target);
    let unchanged = match &current {
        Some(name) => read_tree(&target.join(name)).is_ok_and(|files| files == payload),
        None => false,
    };
    let version = match current {
        Some(name) if unchanged => name,
        _ => {
            let name = create_version_dir(target)?;
            write_files(&target.join(&name), &payload)?;
            let tmp_link = target.join(DATA_LINK_TMP);
            remove_if_present(&tmp_link)?;
            symlink(&name, &tmp_link).map_err(io_error("symlink", &tmp_link))?;
            fs::rename(&tmp_link, &data_link).map_err(io_error("rename", &tmp_link))?;
            name
        }
    };

    let visible: BTreeSet<&str> = payload
        .keys()
        .filter_map(|path| path.split('/').next())
        .collect();
    for name in &visible {
        ensure_link(&target.join(name), &format!("{DATA_LINK}/{name}"))?;
    }
    remove_stale_entries(target, &version, &visible)
}

/// The version directory `..data` points at, if it is one of ours.
fn current_version(target: &Path) -> Option<String> {
    let link = fs::read_link(target.join(DATA_LINK)).ok()?;
    let name = link.to_str()?;
    is_version_name(name).then(|| name.to_string())
}

/// `..` followed by a digit: the timestamped directories, and nothing a payload may name.
fn is_version_name(name: &str) -> bool {
    name.strip_prefix("..")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Creates `..<UTC time>.<nanoseconds>` with mode 0755, as kubelet names its versions.
fn create_version_dir(target: &Path) -> Result<String, VolumeError> {
    let mut now = jiff::Timestamp::now();
    loop {
        let name = format!(
            "..{}.{:09}",
            now.strftime("%Y_%m_%d_%H_%M_%S"),
            now.subsec_nanosecond()
        );
        let path = target.join(&name);
        match DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => {
                // The mode given to mkdir is reduced by the umask.
                set_mode(&path, 0o755)?;
                return Ok(name);
            }
            // Two versions within the same nanosecond: take the next one.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                now = now
                    .checked_add(jiff::SignedDuration::from_nanos(1))
                    .unwrap_or(now);
                if now == jiff::Timestamp::MAX {
                    return Err(io_error("mkdir", &path)(error));
                }
            }
            Err(error) => return Err(io_error("mkdir", &path)(error)),
        }
    }
}

fn write_files(dir: &Path, payload: &Payload) -> Result<(), VolumeError> {
    for (relative, file) in payload {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_error("mkdir", parent))?;
        }
        let mut handle = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&path)
            .map_err(io_error("open", &path))?;
        handle
            .write_all(&file.data)
            .map_err(io_error("write", &path))?;
        // The umask may have cleared bits of the requested mode.
        set_mode(&path, file.mode)?;
    }
    Ok(())
}

/// The regular files under `dir` by relative path, to compare with a new payload.
fn read_tree(dir: &Path) -> io::Result<Payload> {
    let mut files = Payload::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let Some(key) = path.to_str() else { continue };
                let mode = entry.metadata()?.permissions().mode() & 0o7777;
                let data = fs::read(dir.join(&path))?;
                files.insert(key.to_string(), FileProjection { data, mode });
            }
        }
    }
    Ok(files)
}

/// Makes `link` a symlink to `destination` unless it already is one.
fn ensure_link(link: &Path, destination: &str) -> Result<(), VolumeError> {
    match fs::read_link(link) {
        Ok(existing) if existing == Path::new(destination) => Ok(()),
        Ok(_) => {
            remove_if_present(link)?;
            symlink(destination, link).map_err(io_error("symlink", link))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            symlink(destination, link).map_err(io_error("symlink", link))
        }
        // Something that is not a link sits where the entry's link belongs; refuse rather
        // than delete what someone else put there.
        Err(error) => Err(io_error("readlink", link)(error)),
    }
}

/// Removes links to entries the payload no longer has, and every version but `current`
/// (normally just the previous one; more after a crash).
fn remove_stale_entries(
    target: &Path,
    current: &str,
    visible: &BTreeSet<&str>,
) -> Result<(), VolumeError> {
    for entry in fs::read_dir(target).map_err(io_error("readdir", target))? {
        let entry = entry.map_err(io_error("readdir", target))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if is_version_name(name) && name != current {
            fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
        } else if name == DATA_LINK_TMP {
            remove_if_present(&path)?;
        } else if !name.starts_with("..") && !visible.contains(name) {
            // Only our own links: a directory made for a subPath mount stays.
            let ours =
                fs::read_link(&path).is_ok_and(|destination| destination.starts_with(DATA_LINK));
            if ours {
                remove_if_present(&path)?;
            }
        }
    }
    Ok(())
}

/// Kubelet's `validatePayload`: every path relative, without `..`, not starting with `..`
/// (which would collide with the writer's own entries), and within the length limits; paths
/// are cleaned (`a//./b` → `a/b`).
fn clean_payload(payload: &Payload) -> Result<Payload, VolumeError> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        if path.is_empty() {
            return Err(invalid_path(format!("must not be empty: {path:?}")));
        }
        if path.starts_with('/') {
            return Err(invalid_path(format!("must be relative path: {path}")));
        }
        if path.len() > MAX_PATH_LENGTH {
            return Err(invalid_path(format!(
                "must be less than or equal to {MAX_PATH_LENGTH} characters"
            )));
        }
        let mut parts = Vec::new();
        for component in Path::new(path).components() {
            match component {
                Component::Normal(part) => {
                    let part = part.to_str().unwrap_or_default();
                    if part.len() > MAX_FILE_NAME_LENGTH {
                        return Err(invalid_path(format!(
                            "filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
                        )));
                    }
                    parts.push(part);
                }
                Component::ParentDir => {
                    return Err(invalid_path(format!("must not contain '..': {path}")));
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        match parts.first() {
            None => return Err(invalid_path(format!("must not be empty: {path:?}"))),
            Some(first) if first.starts_with("..") => {
                return Err(invalid_path(format!("must not start with '..': {path}")));
            }
            Some(_) => {}
        }
        clean.insert(parts.join("/"), file.clone());
    }
    Ok(clean)
}

fn invalid_path(reason: String) -> VolumeError {
    VolumeError::InvalidPath { reason }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), VolumeError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error("chmod", path))
}

fn remove_if_present(path: &Path) -> Result<(), VolumeError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("remove", path)(error))
        }
        _ => Ok(()),
    }
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        operation,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(path, data, mode)| {
                (
                    path.to_string(),
                    FileProjection {
                        data: data.as_bytes().to_vec(),
                        mode: *mode,
                    },
                )
            })
            .collect()
    }

    fn versions(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| is_version_name(name))
            .collect();
        names.sort();
        names
    }

    fn link(path: &Path) -> String {
        fs::read_link(path).unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn a_payload_is_written_behind_data_and_per_entry_links() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &payload(&[("app.conf", "a=1", 0o644), ("keys/id", "secret", 0o400)]),
        )
        .unwrap();

        let versions = versions(dir.path());
        assert_eq!(versions.len(), 1);
        // `..2026_11_24_18_00_00.123456789`
        let version = &versions[0];
        assert_eq!(version.len(), 31, "{version}");
        assert_eq!(link(&dir.path().join("..data")), *version);
        assert_eq!(link(&dir.path().join("app.conf")), "..data/app.conf");
        assert_eq!(link(&dir.path().join("keys")), "..data/keys");

        assert_eq!(
            fs::read_to_string(dir.path().join("app.conf")).unwrap(),
            "a=1"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("keys/id")).unwrap(),
            "secret"
        );
        let mode = |path: &str| {
            fs::metadata(dir.path().join(path))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("app.conf"), 0o644);
        assert_eq!(mode("keys/id"), 0o400);
        assert_eq!(mode(version), 0o755);
    }

    #[test]
    fn an_update_swaps_data_and_leaves_no_old_version_or_stale_link() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &payload(&[("a", "one", 0o644), ("b", "bee", 0o644)]),
        )
        .unwrap();
        let before = versions(dir.path());

        // A reader that opened the file before the update keeps reading the old version.
        let mut reader = fs::File::open(dir.path().join("a")).unwrap();

        write(
            dir.path(),
            &payload(&[("a", "two", 0o600), ("c", "sea", 0o644)]),
        )
        .unwrap();
        let after = versions(dir.path());
        assert_eq!(after.len(), 1);
        assert_ne!(before, after);
        assert_eq!(link(&dir.path().join("..data")), after[0]);
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "two");
        assert_eq!(fs::read_to_string(dir.path().join("c")).unwrap(), "sea");
        assert!(
            fs::symlink_metadata(dir.path().join("b")).is_err(),
            "link to a removed key stays"
        );
        assert!(!dir.path().join(&before[0]).exists());
        assert!(!dir.path().join(DATA_LINK_TMP).exists());

        let mut old = String::new();
        io::Read::read_to_string(&mut reader, &mut old).unwrap();
        assert_eq!(old, "one");
    }

    #[test]
    fn writing_the_same_payload_again_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let files = payload(&[("a", "one", 0o644)]);
        write(dir.path(), &files).unwrap();
        let before = versions(dir.path());
        write(dir.path(), &files).unwrap();
        assert_eq!(versions(dir.path()), before);

        // A mode change alone is an update.
        write(dir.path(), &payload(&[("a", "one", 0o640)])).unwrap();
        assert_ne!(versions(dir.path()), before);
    }

    #[test]
    fn leftovers_of_an_interrupted_update_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let files = payload(&[("a", "one", 0o644)]);
        write(dir.path(), &files).unwrap();
        let current = versions(dir.path());
        fs::create_dir(dir.path().join("..2000_01_01_00_00_00.000000001")).unwrap();
        symlink(
            "..2000_01_01_00_00_00.000000001",
            dir.path().join(DATA_LINK_TMP),
        )
        .unwrap();
        fs::remove_file(dir.path().join("a")).unwrap();

        write(dir.path(), &files).unwrap();
        assert_eq!(versions(dir.path()), current);
        assert!(fs::symlink_metadata(dir.path().join(DATA_LINK_TMP)).is_err());
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "one");
    }

    #[test]
    fn an_empty_payload_makes_an_empty_volume() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &payload(&[("a", "one", 0o644)])).unwrap();
        write(dir.path(), &Payload::new()).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "only ..data and its version remain: {names:?}"
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let cases = [
            (
                "../escape",
                "invalid path: must not contain '..': ../escape",
            ),
            (
                "a/../../b",
                "invalid path: must not contain '..': a/../../b",
            ),
            (
                "/etc/passwd",
                "invalid path: must be relative path: /etc/passwd",
            ),
            ("..data", "invalid path: must not start with '..': ..data"),
            (
                "..2020_01_01",
                "invalid path: must not start with '..': ..2020_01_01",
            ),
            ("", "invalid path: must not be empty: \"\""),
            (".", "invalid path: must not be empty: \".\""),
        ];
        for (path, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let error = write(dir.path(), &payload(&[(path, "x", 0o644)])).unwrap_err();
            assert_eq!(error.to_string(), want, "{path:?}");
        }

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &payload(&[("./a//b", "x", 0o644)])).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a/b")).unwrap(), "x");
    }
}
