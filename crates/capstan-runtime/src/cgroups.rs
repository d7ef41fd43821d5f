//! Reading and cleaning the cgroups libcontainer made for containers, on cgroup v1, v2 and the
//! hybrid layout (v1 controllers with cgroup2 beside them) alike.
//!
//! libcontainer writes the limits; this module reads what the kernel counted (CPU time, memory
//! working set, OOM kills) for container status and the metrics API, and removes the pod's
//! cgroup directories once its containers are gone.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Controllers each mounted under `/sys/fs/cgroup/<controller>` (and possibly cgroup2 at
    /// `/sys/fs/cgroup/unified` beside them, without controllers).
    V1,
    /// One unified hierarchy at `/sys/fs/cgroup`.
    V2,
}

pub fn layout() -> Layout {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Layout::V2
    } else {
        Layout::V1
    }
}

/// What the kernel counted for one container's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use minus inactive file cache: what kubelet calls the working set.
    pub memory_working_set: u64,
    /// Times the kernel's OOM killer killed a process of the cgroup.
    pub oom_kills: u64,
}

/// Reads the usage of the cgroup at `path` (as written in the OCI spec, e.g.
/// `/capstan/<pod>/<container>`). Counters a kernel does not offer read as zero.
pub fn usage(path: &str) -> Usage {
    let path = path.trim_start_matches('/');
    match layout() {
        Layout::V1 => {
            let memory = Path::new(ROOT).join("memory").join(path);
            let used = read_u64(&memory.join("memory.usage_in_bytes"));
            let inactive = stat_field(&memory.join("memory.stat"), "total_inactive_file");
            Usage {
                cpu_nanos: read_u64(
                    &Path::new(ROOT)
                        .join("cpuacct")
                        .join(path)
                        .join("cpuacct.usage"),
                ),
                memory_working_set: used.saturating_sub(inactive),
                oom_kills: stat_field(&memory.join("memory.oom_control"), "oom_kill"),
            }
        }
        Layout::V2 => {
            let dir = Path::new(ROOT).join(path);
            let used = read_u64(&dir.join("memory.current"));
            let inactive = stat_field(&dir.join("memory.stat"), "inactive_file");
            Usage {
                cpu_nanos: stat_field(&dir.join("cpu.stat"), "usage_usec") * 1000,
                memory_working_set: used.saturating_sub(inactive),
                oom_kills: stat_field(&dir.join("memory.events"), "oom_kill"),
            }
        }
    }
}

/// Sends SIGKILL to every process still in the cgroup at `path` (and below), until none is
/// left or a second has passed.
pub fn kill_all(path: &str) {
    let path = path.trim_start_matches('/');
    // Any hierarchy lists the processes; v1 `pids` and v2's unified tree always have them.
    let procs = [
        Path::new(ROOT).join("pids").join(path),
        Path::new(ROOT).join(path),
    ]
    .into_iter()
    .find(|dir| dir.join("cgroup.procs").exists());
    let Some(dir) = procs else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let pids = pids_under(&dir);
        if pids.is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn pids_under(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(pids_under(&entry.path()));
        }
    }
    pids
}

/// Removes the cgroup at `path` and everything under it from every hierarchy (idempotent).
/// A cgroup still holding processes cannot be removed: that directory is left and reported.
pub fn remove(path: &str) -> Result<(), std::io::Error> {
    let path = path.trim_start_matches('/');
    let mut roots: Vec<PathBuf> = vec![PathBuf::from(ROOT)];
    if layout() == Layout::V1 {
        roots = std::fs::read_dir(ROOT)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
    }
    let mut failure = None;
    for root in roots {
        let dir = root.join(path);
        if dir.exists()
            && let Err(e) = remove_tree(&dir)
        {
            failure = Some(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// cgroup directories are removed with rmdir, children first; their files cannot be deleted.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
fn stat_field(path: &Path, key: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.stat");
        std::fs::write(&file, "cache 10\ntotal_inactive_file 300\noom_kill 2\n").unwrap();
        assert_eq!(stat_field(&file, "total_inactive_file"), 300);
        assert_eq!(stat_field(&file, "oom_kill"), 2);
        assert_eq!(stat_field(&file, "missing"), 0);
        assert_eq!(stat_field(&dir.path().join("absent"), "cache"), 0);
    }

    #[test]
    fn a_missing_cgroup_reads_as_zero_and_removes_cleanly() {
        assert_eq!(usage("/capstan-test-never-made/x"), Usage::default());
        remove("/capstan-test-never-made").unwrap();
    }
}
