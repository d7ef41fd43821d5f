//! The shim: one small process per container, started by the agent as `capstan shim DIR`.
//!
//! It creates and starts the container with libcontainer, stays its parent (so it alone can
//! collect the exit status), copies the container's stdout and stderr into the CRI log file,
//! and when the container ends writes `exit.json` and releases the container's cgroups. It
//! runs in its own session, so stopping or killing the agent never touches a container: the
//! agent finds the shim's files again when it comes back.
//!
//! Files in DIR: `meta.json` (written by the agent), `config.json` + `rootfs/` (the OCI bundle),
//! `state.json` (written once the container runs), `exit.json` (written once it ended),
//! `shim.log` (the shim's own diagnostics).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::logs::{LogWriter, Stream};

/// What the agent tells the shim, written to `meta.json` before the shim starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimMeta {
    pub id: String,
    pub cgroup_path: String,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    /// Keep the container's stdin open for `kubectl attach` (the container's `stdin: true`).
    #[serde(default)]
    pub stdin: bool,
    /// Close it when the first attached client's input ends (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
}

/// Written to `state.json` once the container's first process runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    pub shim_pid: u32,
    pub pid: i32,
    pub started_at: jiff::Timestamp,
}

/// Written to `exit.json` once the container's first process has ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exited {
    /// The exit code, or 128 + the signal number for a process killed by a signal, as shells
    /// and Kubernetes report it.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished_at: jiff::Timestamp,
}

/// The shim's answer to the agent on its stdout, one JSON line: the container runs, or why not.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Handshake {
    Started(Started),
    Failed(String),
}

pub const META: &str = "meta.json";
pub const STATE: &str = "state.json";
pub const EXIT: &str = "exit.json";
pub const SHIM_LOG: &str = "shim.log";
/// libcontainer's own state directory inside DIR.
pub const LIBCONTAINER_ROOT: &str = "libcontainer";

/// The shim's main: returns the process exit code. Everything that goes wrong before the
/// container runs is answered on stdout as [`Handshake::Failed`], so the agent can report it.
pub fn run(dir: &Path) -> i32 {
    // Our own session: a signal or hang-up sent to the agent's process group never reaches us.
    let _ = nix::unistd::setsid();
    let meta: ShimMeta = match std::fs::read(dir.join(META))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(meta) => meta,
        Err(e) => {
            return answer(&Handshake::Failed(format!(
                "reading {}: {e}",
                dir.join(META).display()
            )));
        }
    };
    let log = match LogWriter::open(&meta.log_path, meta.log_max_bytes) {
        Ok(log) => Arc::new(Mutex::new(log)),
        Err(e) => {
            return answer(&Handshake::Failed(format!(
                "opening the log {}: {e}",
                meta.log_path.display()
            )));
        }
    };
    let (pipes, stdin, mut container) = match create(dir, &meta) {
        Ok(created) => created,
        Err(e) => return answer(&Handshake::Failed(e)),
    };
    let Some(pid) = container.pid() else {
        return answer(&Handshake::Failed("the container has no process".into()));
    };
    let started = Started {
        shim_pid: std::process::id(),
        pid: pid.as_raw(),
        started_at: jiff::Timestamp::now(),
    };
    if let Err(e) = write_atomically(&dir.join(STATE), &started) {
        let _ = container.delete(true);
        return answer(&Handshake::Failed(format!(
            "recording the container's state: {e}"
        )));
    }
    let attachments = Arc::new(crate::attach::Attachments::new(
        stdin.map(std::fs::File::from),
    ));
    if let Err(e) = crate::attach::serve(dir, Arc::clone(&attachments), meta.stdin_once) {
        eprintln!("serving attach: {e}");
    }
    // Copy output before answering, so the first line a fast container prints is never lost.
    let copiers = [(pipes.0, Stream::Stdout), (pipes.1, Stream::Stderr)].map(|(pipe, stream)| {
        let log = Arc::clone(&log);
        let attachments = Arc::clone(&attachments);
        std::thread::spawn(move || copy_output(pipe, stream, &log, &attachments))
    });
    answer(&Handshake::Started(started));

    let status = wait_for(pid);
    for copier in copiers {
        let _ = copier.join();
    }
    attachments.close_all();
    // Processes the first one left behind (in a pod's shared PID namespace they do not die
    // with it) end with the container, as containerd's kill-all does.
    crate::cgroups::kill_all(&meta.cgroup_path);
    let oom_killed = crate::cgroups::usage(&meta.cgroup_path).oom_kills > 0;
    let (exit_code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, signal, _) => (128 + signal as i32, Some(signal as i32)),
        _ => (255, None),
    };
    // libcontainer removes the container's cgroups and its state; the rootfs stays for the
    // agent to unmount when it removes the container.
    if let Err(e) = container.delete(true) {
        eprintln!("deleting the container: {e}");
    }
    let exited = Exited {
        exit_code,
        signal,
        oom_killed,
        finished_at: jiff::Timestamp::now(),
    };
    if let Err(e) = write_atomically(&dir.join(EXIT), &exited) {
        eprintln!("recording the exit: {e}");
        return 1;
    }
    0
}

type OutputPipes = (OwnedFd, OwnedFd);

fn create(
    dir: &Path,
    meta: &ShimMeta,
) -> Result<
    (
        OutputPipes,
        Option<OwnedFd>,
        libcontainer::container::Container,
    ),
    String,
> {
    let (stdout_read, stdout_write) =
        nix::unistd::pipe().map_err(|e| format!("making a pipe: {e}"))?;
    let (stderr_read, stderr_write) =
        nix::unistd::pipe().map_err(|e| format!("making a pipe: {e}"))?;
    // stdin is a pipe: kept open for `kubectl attach` when the container asks for stdin,
    // otherwise closed at once so that the container reads end-of-file, as from /dev/null
    // (which libcontainer must not be handed).
    let (stdin_read, stdin_write) =
        nix::unistd::pipe().map_err(|e| format!("making a pipe: {e}"))?;
    let stdin_write = meta.stdin.then_some(stdin_write);
    let mut container = ContainerBuilder::new(meta.id.clone(), SyscallType::Linux)
        .with_root_path(dir.join(LIBCONTAINER_ROOT))
        .map_err(|e| format!("preparing the container state: {e}"))?
        .with_stdin(stdin_read)
        .with_stdout(stdout_write)
        .with_stderr(stderr_write)
        .as_init(dir)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("creating the container: {e}"))?;
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(format!("starting the container: {e}"));
    }
    Ok(((stdout_read, stderr_read), stdin_write, container))
}

/// Writes the handshake line and then points stdout at the shim log, so that the agent's end of
/// the pipe closes and it stops waiting.
fn answer(handshake: &Handshake) -> i32 {
    let mut out = std::io::stdout().lock();
    let line = serde_json::to_string(handshake).unwrap_or_default();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    // stderr is already the shim log (the agent opened it); stdout follows it.
    let _ = nix::unistd::dup2(2, 1);
    match handshake {
        Handshake::Started(_) => 0,
        Handshake::Failed(why) => {
            eprintln!("{why}");
            1
        }
    }
}

fn copy_output(
    pipe: OwnedFd,
    stream: Stream,
    log: &Mutex<LogWriter>,
    attachments: &crate::attach::Attachments,
) {
    let mut pipe = std::fs::File::from(pipe);
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                attachments.broadcast(stream, &buffer[..n]);
                let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Err(e) = log.write(stream, &buffer[..n]) {
                    eprintln!("writing the container log: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("reading container output: {e}");
                return;
            }
        }
    }
}

/// Waits for the container's first process. It was cloned as our child without an exit
/// signal (libcontainer's CLONE_PARENT), so only `__WALL` finds it.
fn wait_for(pid: nix::unistd::Pid) -> WaitStatus {
    loop {
        match nix::sys::wait::waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return status,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            // ECHILD: someone else reaped it; we cannot know how it ended.
            Err(_) => return WaitStatus::StillAlive,
        }
    }
}

/// Writes JSON to a temporary file and renames it into place, so a reader never sees half.
pub fn write_atomically(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Reads one of the shim's JSON files; `None` when it does not exist yet.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
