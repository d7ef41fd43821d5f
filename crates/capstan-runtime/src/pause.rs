//! A pod's shared PID namespace (`shareProcessNamespace: true`).
//!
//! A PID namespace lives only as long as its first process, so unlike the network, IPC and
//! UTS namespaces it cannot be kept by a bind mount alone: like Kubernetes' pause container,
//! a small process (`capstan pause --init`) is PID 1 of the pod's namespace. It reaps the
//! orphans that land on it and otherwise sleeps. The pod's containers join its namespace, so
//! they see (and can signal) each other's processes.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitPidFlag;

/// Why the shared PID namespace could not be made; a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("starting the pod's pause process: {0}")]
    Spawn(std::io::Error),
    #[error("the pod's pause process did not start: {0}")]
    NoPid(String),
    #[error("keeping the pod's PID namespace at {path}: {source}")]
    Bind { path: PathBuf, source: nix::Error },
    #[error("preparing {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("ns").join("pause.pid")
}

/// The pod's PID namespace file, starting its pause process first if it is not running
/// (idempotent). `exe` is the capstan binary.
pub fn ensure(dir: &Path, exe: &Path) -> Result<PathBuf, PauseError> {
    let ns_dir = dir.join("ns");
    let target = ns_dir.join("pid");
    if let Some(pid) = running_pid(dir)
        && std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok()
        && target.exists()
    {
        return Ok(target);
    }
    std::fs::create_dir_all(&ns_dir).map_err(|source| PauseError::Prepare {
        path: ns_dir.clone(),
        source,
    })?;
    let mut outer = Command::new(exe)
        .arg("pause")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(PauseError::Spawn)?;
    let mut line = String::new();
    if let Some(stdout) = outer.stdout.take() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    let _ = outer.wait();
    let pid: i32 = line
        .trim()
        .parse()
        .map_err(|_| PauseError::NoPid(line.trim().to_owned()))?;
    let _ = nix::mount::umount2(&target, MntFlags::MNT_DETACH);
    std::fs::File::create(&target).map_err(|source| PauseError::Prepare {
        path: target.clone(),
        source,
    })?;
    let source = format!("/proc/{pid}/ns/pid");
    nix::mount::mount(
        Some(source.as_str()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| PauseError::Bind {
        path: target.clone(),
        source,
    })?;
    std::fs::write(pid_file(dir), pid.to_string()).map_err(|source| PauseError::Prepare {
        path: pid_file(dir),
        source,
    })?;
    Ok(target)
}

fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The pid must still be our pause process, not a reused number.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline.windows(5).any(|w| w == b"pause").then_some(pid)
}

/// Stops the pause process and releases the namespace (idempotent). Containers must have
/// stopped first.
pub fn remove(dir: &Path) {
    if let Some(pid) = running_pid(dir) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = nix::mount::umount2(&dir.join("ns").join("pid"), MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(dir.join("ns").join("pid"));
    let _ = std::fs::remove_file(pid_file(dir));
}

/// `capstan pause`: makes a new PID namespace whose first process is `capstan pause --init`,
/// prints that process's PID (as this namespace sees it) and exits.
pub fn run_outer(exe: &Path) -> i32 {
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).is_err() {
        return 1;
    }
    // The next child is PID 1 of the new namespace; it starts its own session so that it
    // outlives us and the agent.
    match Command::new(exe)
        .args(["pause", "--init"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => {
            println!("{}", child.id());
            0
        }
        Err(_) => 1,
    }
}

/// `capstan pause --init`: PID 1 of a pod's namespace. Reaps whatever is orphaned onto it and
/// waits; only SIGKILL ends it (PID 1 ignores signals it has no handler for).
pub fn run_init() -> i32 {
    let _ = nix::unistd::setsid();
    let mut children = SigSet::empty();
    children.add(Signal::SIGCHLD);
    let _ = children.thread_block();
    loop {
        // Blocked, SIGCHLD stays pending until taken here.
        let _ = children.wait();
        while let Ok(status) =
            nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL))
        {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}
