//! Containers: start one from a [`ContainerConfig`] through its shim, read its state, stop it
//! with a grace period, and remove everything it left (rootfs mount, cgroups, files).
//!
//! Every container has a directory `<runtime dir>/<id>` holding its OCI bundle and the shim's
//! files (see [`crate::shim`]); that directory is the whole truth about the container, so an
//! agent that restarts reads the same state it had before.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt;

use crate::sandbox::SandboxNamespaces;
use crate::shim::{self, Exited, Handshake, ShimMeta, Started};

/// The CFS period capstan uses, as kubelet does: 100 ms.
pub const CPU_PERIOD_MICROS: u64 = 100_000;

/// Everything the runtime needs to run one container; the agent resolves the pod spec
/// (image defaults, env sources, volumes, security context) into this.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Unique on the node; names the container's directory and cgroup.
    pub id: String,
    pub pod_uid: String,
    /// Unpacked image layers, bottom first.
    pub layers: Vec<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: User,
    pub mounts: Vec<Mount>,
    pub namespaces: SandboxNamespaces,
    /// The pod's shared PID namespace (`shareProcessNamespace`), or `None` for the
    /// container's own.
    pub pid_namespace: Option<PathBuf>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
    pub resources: Resources,
    pub oom_score_adj: i32,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    /// Keep stdin open for `kubectl attach` (`stdin`), closing it after the first attach
    /// (`stdinOnce`).
    pub stdin: bool,
    pub stdin_once: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Bind {
        source: PathBuf,
        destination: String,
        read_only: bool,
    },
    Tmpfs {
        destination: String,
        size_bytes: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seccomp {
    #[default]
    Unconfined,
    RuntimeDefault,
}

/// cgroup settings, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub cpu_shares: u64,
    pub cpu_quota_micros: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
}

impl Resources {
    /// Kubernetes' conversion of CPU requests and limits (in millicores) and a memory limit:
    /// shares = request × 1024 / 1000 (at least 2), quota = limit × period / 1000 (at least
    /// 1 ms). Without a request a container gets the minimum shares, as BestEffort pods do.
    pub fn from_kubernetes(
        cpu_request_millis: Option<u64>,
        cpu_limit_millis: Option<u64>,
        memory_limit: Option<i64>,
    ) -> Self {
        let request = cpu_request_millis.or(cpu_limit_millis).unwrap_or(0);
        Resources {
            cpu_shares: (request * 1024 / 1000).max(2),
            cpu_quota_micros: cpu_limit_millis
                .map(|limit| ((limit * CPU_PERIOD_MICROS / 1000) as i64).max(1000)),
            memory_limit_bytes: memory_limit,
        }
    }
}

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// The shim is starting it (no `state.json` yet).
    Creating,
    Running(Started),
    Exited {
        started: Option<Started>,
        exit: Exited,
    },
    /// Its shim is gone without recording an exit and its process is gone too: how it ended is
    /// unknown (kubelet reports such a container as exited with code 255... `Unknown`).
    Lost {
        started: Option<Started>,
    },
}

/// Why a runtime operation failed. Starting a container can be retried (the agent does, with
/// back-off); a `NotFound` stays so.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("preparing the container directory {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error("starting the shim: {0}")]
    SpawnShim(std::io::Error),
    #[error("the shim ended without answering (see {0})")]
    ShimSilent(PathBuf),
    #[error("{0}")]
    StartContainer(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("signalling the container: {0}")]
    Signal(nix::Error),
    #[error("reading the container state: {0}")]
    ReadState(std::io::Error),
    #[error("removing the container: {0}")]
    Remove(std::io::Error),
}

/// Runs containers under one directory, each through its own shim.
#[derive(Debug, Clone)]
pub struct Runtime {
    dir: PathBuf,
    /// The executable that runs `<shim> shim DIR`: the capstan binary itself.
    shim: PathBuf,
}

impl Runtime {
    pub fn new(dir: &Path, shim: &Path) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Prepare {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Runtime {
            dir: dir.to_owned(),
            shim: shim.to_owned(),
        })
    }

    /// The directory of container `id` (its bundle and shim files).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir(id)
    }

    /// Creates and starts a container, returning once its process runs (or failed to).
    /// Not idempotent: a container id is used once; a restart is a new container.
    pub async fn start(&self, config: &ContainerConfig) -> Result<Started, RuntimeError> {
        let dir = self.container_dir(&config.id);
        let prepare = |source| RuntimeError::Prepare {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(prepare)?;
        crate::rootfs::mount(&config.layers, &dir.join("scratch"), &dir.join("rootfs"))?;
        let spec = serde_json::to_vec_pretty(&crate::bundle::spec(config))
            .map_err(|e| prepare(e.into()))?;
        std::fs::write(dir.join("config.json"), spec).map_err(prepare)?;
        let meta = ShimMeta {
            id: config.id.clone(),
            cgroup_path: crate::bundle::cgroup_path(&config.pod_uid, &config.id),
            log_path: config.log_path.clone(),
            log_max_bytes: config.log_max_bytes,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
        };
        shim::write_atomically(&dir.join(shim::META), &meta).map_err(prepare)?;
        let shim_log = std::fs::File::create(dir.join(shim::SHIM_LOG)).map_err(prepare)?;

        let mut child = tokio::process::Command::new(&self.shim)
            .arg("shim")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .spawn()
            .map_err(RuntimeError::SpawnShim)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let read = tokio::io::BufReader::new(stdout).read_line(&mut line).await;
        // The shim outlives this call; reap it whenever it ends so it leaves no zombie.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match read
            .ok()
            .and_then(|_| serde_json::from_str::<Handshake>(&line).ok())
        {
            Some(Handshake::Started(started)) => Ok(started),
            Some(Handshake::Failed(why)) => Err(RuntimeError::StartContainer(why)),
            None => Err(RuntimeError::ShimSilent(dir.join(shim::SHIM_LOG))),
        }
    }

    /// Reads a container's state from its shim's files.
    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let dir = self.container_dir(id);
        if !dir.exists() {
            return Err(RuntimeError::NotFound(id.to_owned()));
        }
        let started: Option<Started> =
            shim::read_json(&dir.join(shim::STATE)).map_err(RuntimeError::ReadState)?;
        let exit: Option<Exited> =
            shim::read_json(&dir.join(shim::EXIT)).map_err(RuntimeError::ReadState)?;
        Ok(match (started, exit) {
            (started, Some(exit)) => ContainerState::Exited { started, exit },
            (Some(started), None) if alive(started.pid) || alive(started.shim_pid as i32) => {
                ContainerState::Running(started)
            }
            (Some(started), None) => ContainerState::Lost {
                started: Some(started),
            },
            (None, None) => ContainerState::Creating,
        })
    }

    /// Ids of every container this runtime holds, running or not.
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let entries = std::fs::read_dir(&self.dir).map_err(RuntimeError::ReadState)?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }

    /// Sends `signal` to the container's first process (idempotent for a container that has
    /// already ended).
    pub fn signal(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        if let ContainerState::Running(started) = self.state(id)? {
            match nix::sys::signal::kill(Pid::from_raw(started.pid), signal) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(e) => return Err(RuntimeError::Signal(e)),
            }
        }
        Ok(())
    }

    /// Stops a container as kubelet does: SIGTERM, then SIGKILL once `grace` has passed. Returns
    /// when it has ended. Killing the first process of a PID namespace ends all the others.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        if grace > Duration::ZERO {
            self.signal(id, Signal::SIGTERM)?;
            if self.wait_ended(id, grace).await? {
                return Ok(());
            }
        }
        self.signal(id, Signal::SIGKILL)?;
        self.wait_ended(id, Duration::from_secs(10)).await?;
        Ok(())
    }

    async fn wait_ended(&self, id: &str, limit: Duration) -> Result<bool, RuntimeError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !matches!(
                self.state(id)?,
                ContainerState::Running(_) | ContainerState::Creating
            ) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Removes a container that has ended: unmounts its rootfs, deletes its cgroup and its
    /// directory. Idempotent. A running container is killed first.
    pub async fn remove(&self, id: &str, pod_uid: &str) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id);
        if !dir.exists() {
            return Ok(());
        }
        if matches!(self.state(id)?, ContainerState::Running(_)) {
            self.stop(id, Duration::ZERO).await?;
        }
        crate::rootfs::unmount(&dir.join("rootfs"))?;
        let _ = crate::cgroups::remove(&crate::bundle::cgroup_path(pod_uid, id));
        std::fs::remove_dir_all(&dir).map_err(RuntimeError::Remove)
    }

    /// The log file of a container, as given when it started.
    pub fn log_path(&self, id: &str) -> Option<PathBuf> {
        let meta: Option<ShimMeta> = shim::read_json(&self.container_dir(id).join(shim::META))
            .ok()
            .flatten();
        meta.map(|m| m.log_path)
    }
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

#[cfg(test)]
impl ContainerConfig {
    pub(crate) fn for_tests() -> Self {
        ContainerConfig {
            id: "c1".into(),
            pod_uid: "u1".into(),
            layers: vec![],
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/".into(),
            user: User::default(),
            mounts: vec![
                Mount::Bind {
                    source: "/tmp/x".into(),
                    destination: "/data".into(),
                    read_only: true,
                },
                Mount::Tmpfs {
                    destination: "/cache".into(),
                    size_bytes: Some(1 << 20),
                },
            ],
            namespaces: SandboxNamespaces {
                network: Some("/run/ns/net".into()),
                ipc: "/run/ns/ipc".into(),
                uts: Some("/run/ns/uts".into()),
            },
            pid_namespace: None,
            readonly_rootfs: false,
            privileged: false,
            capabilities_add: vec![],
            capabilities_drop: vec![],
            no_new_privileges: false,
            seccomp: Seccomp::RuntimeDefault,
            resources: Resources::from_kubernetes(Some(250), Some(500), Some(64 << 20)),
            oom_score_adj: 0,
            log_path: "/tmp/log".into(),
            log_max_bytes: 10 << 20,
            stdin: false,
            stdin_once: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_convert_as_kubelet_converts_them() {
        let cases = [
            (
                (None, None, None),
                Resources {
                    cpu_shares: 2,
                    cpu_quota_micros: None,
                    memory_limit_bytes: None,
                },
            ),
            (
                (Some(250), None, None),
                Resources {
                    cpu_shares: 256,
                    cpu_quota_micros: None,
                    memory_limit_bytes: None,
                },
            ),
            (
                (None, Some(500), Some(1 << 20)),
                Resources {
                    cpu_shares: 512,
                    cpu_quota_micros: Some(50_000),
                    memory_limit_bytes: Some(1 << 20),
                },
            ),
            (
                (Some(1), Some(1), None),
                Resources {
                    cpu_shares: 2,
                    cpu_quota_micros: Some(1000),
                    memory_limit_bytes: None,
                },
            ),
        ];
        for ((request, limit, memory), want) in cases {
            assert_eq!(
                Resources::from_kubernetes(request, limit, memory),
                want,
                "{request:?} {limit:?}"
            );
        }
    }
}
