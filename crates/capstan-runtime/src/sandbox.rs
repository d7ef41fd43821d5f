//! Pod sandboxes: the namespaces a pod's containers share.
//!
//! Kubernetes keeps them alive with a pause container; here they are kept by bind-mounting the
//! namespace files (`/proc/thread-self/ns/{net,ipc,uts}`) onto files in the pod's directory,
//! as `ip netns add` does. No process has to stay alive for them, and containers join them by
//! path in their OCI spec.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Why a sandbox could not be made or removed. Retrying helps only when the cause was
/// transient (a busy mount); a refused `unshare` (no privilege) will fail again.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("creating the pod's namespace files in {dir}: {source}")]
    CreateFiles {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("creating the pod's namespaces: {0}")]
    Unshare(nix::Error),
    #[error("setting the pod's hostname: {0}")]
    SetHostname(nix::Error),
    #[error("bringing up the pod's loopback interface: {0}")]
    Loopback(std::io::Error),
    #[error("keeping the {kind} namespace at {path}: {source}")]
    BindNamespace {
        kind: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("removing the namespace at {path}: {source}")]
    Unmount { path: PathBuf, source: nix::Error },
}

/// Paths of the namespaces a pod's containers join. `None` means the host's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNamespaces {
    pub network: Option<PathBuf>,
    pub ipc: PathBuf,
    pub uts: Option<PathBuf>,
}

const KINDS: [&str; 3] = ["net", "ipc", "uts"];

/// Creates the pod's namespaces under `dir/ns` (idempotent: namespaces already made are kept,
/// so an agent that restarts finds the same network). A `host_network` pod shares the node's
/// network and UTS namespaces, as Kubernetes does; it still gets its own IPC namespace.
pub fn create(
    dir: &Path,
    hostname: &str,
    host_network: bool,
) -> Result<SandboxNamespaces, SandboxError> {
    let ns_dir = dir.join("ns");
    let namespaces = SandboxNamespaces {
        network: (!host_network).then(|| ns_dir.join("net")),
        ipc: ns_dir.join("ipc"),
        uts: (!host_network).then(|| ns_dir.join("uts")),
    };
    let ready = ns_dir.join("ready");
    if ready.exists() {
        return Ok(namespaces);
    }
    std::fs::create_dir_all(&ns_dir).map_err(|source| SandboxError::CreateFiles {
        dir: ns_dir.clone(),
        source,
    })?;
    let mut flags = CloneFlags::CLONE_NEWIPC;
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    let hostname = hostname.to_owned();
    let wanted = namespaces.clone();
    // unshare() of these three kinds is allowed in a multi-threaded process and changes only the
    // calling thread: a short-lived thread enters the new namespaces, pins them, and exits.
    std::thread::spawn(move || -> Result<(), SandboxError> {
        nix::sched::unshare(flags).map_err(SandboxError::Unshare)?;
        if !host_network {
            nix::unistd::sethostname(&hostname).map_err(SandboxError::SetHostname)?;
            loopback_up().map_err(SandboxError::Loopback)?;
        }
        let targets = [
            ("net", wanted.network.as_deref()),
            ("ipc", Some(wanted.ipc.as_path())),
            ("uts", wanted.uts.as_deref()),
        ];
        for (kind, target) in targets {
            let Some(target) = target else { continue };
            std::fs::File::create(target).map_err(|source| SandboxError::CreateFiles {
                dir: target.to_owned(),
                source,
            })?;
            let source = format!("/proc/thread-self/ns/{kind}");
            nix::mount::mount(
                Some(source.as_str()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|source| SandboxError::BindNamespace {
                kind,
                path: target.to_owned(),
                source,
            })?;
        }
        Ok(())
    })
    .join()
    .expect("the namespace thread does not panic")?;
    std::fs::write(&ready, b"").map_err(|source| SandboxError::CreateFiles {
        dir: ns_dir,
        source,
    })?;
    Ok(namespaces)
}

/// Brings up the loopback interface of the calling thread's network namespace, as the CNI
/// `loopback` plugin does for every pod: a new namespace has it down, and `localhost` inside
/// the pod (between its containers, and for the agent's probes) needs it.
#[allow(unsafe_code)]
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // Any socket of the namespace will do for interface ioctls; binding needs no interface.
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
    // SAFETY: `ifreq` is plain old data (a name and a union of integers and addresses), for
    // which all zeroes is a valid value.
    let mut request: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(b"lo") {
        *to = *from as nix::libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the flags into the
    // `ifreq` we own, which lives across the call.
    if unsafe {
        nix::libc::ioctl(
            socket.as_raw_fd(),
            nix::libc::SIOCGIFFLAGS as _,
            &mut request,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled in `ifru_flags`, the union member read and written here.
    unsafe { request.ifr_ifru.ifru_flags |= nix::libc::IFF_UP as nix::libc::c_short };
    // SAFETY: SIOCSIFFLAGS only reads the `ifreq`, which lives across the call.
    if unsafe { nix::libc::ioctl(socket.as_raw_fd(), nix::libc::SIOCSIFFLAGS as _, &request) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Releases the pod's namespaces (idempotent). The kernel frees a namespace when its last
/// mount and process are gone, so this must come after the pod's containers have stopped.
pub fn remove(dir: &Path) -> Result<(), SandboxError> {
    let ns_dir = dir.join("ns");
    for kind in KINDS {
        let path = ns_dir.join(kind);
        match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (never bound); ENOENT: already gone.
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(source) => return Err(SandboxError::Unmount { path, source }),
        }
    }
    let _ = std::fs::remove_dir_all(&ns_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_sandbox_has_its_own_network_and_hostname_and_is_removed_cleanly() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ns = create(dir.path(), "pod-a", false).unwrap();
        let net = ns.network.clone().unwrap();
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        // Reading the inode of a bound namespace file tells it apart from the host's.
        use std::os::unix::fs::MetadataExt;
        let pinned = std::fs::metadata(&net).unwrap().ino();
        assert!(!own.to_string_lossy().contains(&pinned.to_string()));
        // Creating again is a no-op that returns the same paths.
        assert_eq!(create(dir.path(), "pod-a", false).unwrap(), ns);
        remove(dir.path()).unwrap();
        assert!(!net.exists());
        remove(dir.path()).unwrap();
    }

    #[test]
    fn a_host_network_sandbox_only_has_its_own_ipc() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ns = create(dir.path(), "ignored", true).unwrap();
        assert_eq!(ns.network, None);
        assert_eq!(ns.uts, None);
        assert!(ns.ipc.exists());
        remove(dir.path()).unwrap();
    }
}
