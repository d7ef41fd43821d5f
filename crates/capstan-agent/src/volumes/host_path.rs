//! `hostPath` volumes: a path of the node, checked (or created) according to the volume's
//! `type` the way kubelet's hostPath plugin does, with kubelet's error messages.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::VolumeError;

/// What kind of file a `type` asks for, as the error messages name it.
const DIRECTORY: &str = "directory";
const FILE: &str = "file";
const SOCKET: &str = "socket file";
const CHAR_DEVICE: &str = "character device";
const BLOCK_DEVICE: &str = "block device";

/// Checks `path` against `path_type` ("" or unset: no check), creating it for the
/// `…OrCreate` types when it does not exist. Symlinks are followed, as kubelet's `stat` does.
pub(super) fn check(path: &str, path_type: &str) -> Result<(), VolumeError> {
    if path.split('/').any(|part| part == "..") {
        return Err(VolumeError::HostPathBacksteps {
            path: path.to_string(),
        });
    }
    let host_path = Path::new(path);
    let expected = match path_type {
        "" => return Ok(()),
        "DirectoryOrCreate" => {
            if !exists(host_path) {
                // Like kubelet: 0755 (less the umask), parents included; no type check after.
                return DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(host_path)
                    .map_err(|source| io_error("mkdir", host_path, source));
            }
            DIRECTORY
        }
        "Directory" => DIRECTORY,
        "FileOrCreate" => {
            if !exists(host_path) {
                // Like kubelet: an empty 0644 file; the parent must exist.
                return match OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(host_path)
                {
                    Ok(_) => Ok(()),
                    Err(source) if source.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                    Err(source) => Err(io_error("open", host_path, source)),
                };
            }
            FILE
        }
        "File" => FILE,
        "Socket" => SOCKET,
        "CharDevice" => CHAR_DEVICE,
        "BlockDevice" => BLOCK_DEVICE,
        other => return Err(VolumeError::InvalidHostPathType(other.to_string())),
    };
    let matches = fs::metadata(host_path).is_ok_and(|metadata| {
        let kind = metadata.file_type();
        match expected {
            DIRECTORY => kind.is_dir(),
            FILE => kind.is_file(),
            SOCKET => kind.is_socket(),
            CHAR_DEVICE => kind.is_char_device(),
            _ => kind.is_block_device(),
        }
    });
    if matches {
        Ok(())
    } else {
        Err(VolumeError::HostPathType {
            path: path.to_string(),
            expected,
        })
    }
}

fn exists(path: &Path) -> bool {
    fs::metadata(path).is_ok()
}

fn io_error(operation: &'static str, path: &Path, source: io::Error) -> VolumeError {
    VolumeError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_accepts_its_kind_and_refuses_others_in_kubelets_words() {
        let dir = tempfile::tempdir().unwrap();
        let directory = dir.path().join("dir");
        let file = dir.path().join("file");
        let socket = dir.path().join("sock");
        fs::create_dir(&directory).unwrap();
        fs::write(&file, "x").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_string();
        let (directory, file, socket) = (path(&directory), path(&file), path(&socket));
        let missing = path(&dir.path().join("missing"));

        let cases: Vec<(&str, &str, Option<String>)> = vec![
            (&directory, "", None),
            (&missing, "", None),
            (&directory, "Directory", None),
            (
                &file,
                "Directory",
                Some(format!(
                    "hostPath type check failed: {file} is not a directory"
                )),
            ),
            (
                &missing,
                "Directory",
                Some(format!(
                    "hostPath type check failed: {missing} is not a directory"
                )),
            ),
            (&file, "File", None),
            (
                &directory,
                "File",
                Some(format!(
                    "hostPath type check failed: {directory} is not a file"
                )),
            ),
            (&file, "FileOrCreate", None),
            (
                &directory,
                "FileOrCreate",
                Some(format!(
                    "hostPath type check failed: {directory} is not a file"
                )),
            ),
            (
                &file,
                "DirectoryOrCreate",
                Some(format!(
                    "hostPath type check failed: {file} is not a directory"
                )),
            ),
            (&socket, "Socket", None),
            (
                &file,
                "Socket",
                Some(format!(
                    "hostPath type check failed: {file} is not a socket file"
                )),
            ),
            ("/dev/null", "CharDevice", None),
            (
                &file,
                "CharDevice",
                Some(format!(
                    "hostPath type check failed: {file} is not a character device"
                )),
            ),
            (
                "/dev/null",
                "BlockDevice",
                Some("hostPath type check failed: /dev/null is not a block device".into()),
            ),
            (&file, "Pipe", Some("Pipe is an invalid volume type".into())),
            (
                "/var/../etc",
                "",
                Some("invalid HostPath `/var/../etc`: must not contain '..'".into()),
            ),
        ];
        for (path, path_type, want) in cases {
            let got = check(path, path_type).err().map(|error| error.to_string());
            assert_eq!(got, want, "{path} as {path_type:?}");
        }
    }

    #[test]
    fn or_create_types_create_what_is_missing() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let new_dir = dir.path().join("a/b/c");
        check(new_dir.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        assert!(new_dir.is_dir());
        check(new_dir.to_str().unwrap(), "DirectoryOrCreate").unwrap();

        let new_file = dir.path().join("a/file");
        check(new_file.to_str().unwrap(), "FileOrCreate").unwrap();
        assert!(new_file.is_file());
        // Never more than 0644, whatever the umask.
        assert_eq!(
            fs::metadata(&new_file).unwrap().permissions().mode() & 0o133,
            0
        );

        // FileOrCreate makes no parent directories, as kubelet's does not.
        let orphan = dir.path().join("no/such/file");
        let error = check(orphan.to_str().unwrap(), "FileOrCreate").unwrap_err();
        assert!(error.to_string().starts_with("open "), "{error}");
    }
}
