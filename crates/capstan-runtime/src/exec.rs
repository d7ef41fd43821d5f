//! Running a command inside a running container (`kubectl exec`, exec probes, hooks).
//!
//! Like a container start, it happens in a separate process, `capstan exec-shim DIR [--tty]
//! -- ARGS`, because libcontainer clones processes and the agent is multi-threaded. The
//! exec-shim joins the container's namespaces and cgroup through libcontainer's tenant
//! builder, with the container's own user, capabilities and environment, and relays:
//!
//! - its stdin to the command's stdin (a pipe, or the terminal);
//! - the command's stdout and stderr to its own (with a terminal, both come on stdout);
//! - the first line on its stdout is a JSON [`ExecHandshake`]: the command started or why not;
//! - its exit code is the command's (128 + signal when killed by one);
//! - with a terminal, SIGWINCH makes it read the window size from `--size-file` (`cols rows`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::shim::{LIBCONTAINER_ROOT, META, ShimMeta};

/// The exec-shim's first line on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecHandshake {
    Started,
    Failed(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub tty: bool,
    /// With a terminal: where the agent writes `cols rows` before sending SIGWINCH.
    pub size_file: Option<PathBuf>,
}

/// Starts the exec-shim for the container in `dir` and returns it once the command runs (or
/// with why it could not start). The child's stdin, stdout (after the handshake) and stderr
/// are the command's.
pub async fn spawn(
    shim: &Path,
    dir: &Path,
    request: &ExecRequest,
) -> Result<tokio::process::Child, String> {
    use tokio::io::AsyncReadExt;
    let mut command = tokio::process::Command::new(shim);
    command.arg("exec-shim").arg(dir);
    if request.tty {
        command.arg("--tty");
    }
    if let Some(size_file) = &request.size_file {
        command.arg("--size-file").arg(size_file);
    }
    command.arg("--").args(&request.args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting the exec shim: {e}"))?;
    // The handshake line is read a byte at a time: a buffered reader would swallow the
    // command's first output, which follows it at once.
    let mut stdout = child.stdout.take().ok_or("the exec shim has no stdout")?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 * 1024 {
        match stdout.read(&mut byte).await {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    child.stdout = Some(stdout);
    match serde_json::from_slice::<ExecHandshake>(&line) {
        Ok(ExecHandshake::Started) => Ok(child),
        Ok(ExecHandshake::Failed(why)) => Err(why),
        Err(_) => {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr).await;
            }
            Err(format!("the exec shim failed: {}", stderr.trim()))
        }
    }
}

/// The exec-shim's main; returns its exit code.
pub fn run(dir: &Path, request: &ExecRequest) -> i32 {
    // SIGWINCH is taken synchronously by a thread of ours, never by a handler.
    let mut winch = SigSet::empty();
    winch.add(Signal::SIGWINCH);
    let _ = winch.thread_block();
    match start(dir, request) {
        Ok((pid, io)) => {
            handshake(&ExecHandshake::Started);
            relay_and_wait(pid, io, request, winch)
        }
        Err(why) => {
            handshake(&ExecHandshake::Failed(why));
            1
        }
    }
}

fn handshake(message: &ExecHandshake) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(message).unwrap_or_default()
    );
    let _ = out.flush();
}

/// The command's side of the streams.
enum CommandIo {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Terminal {
        master: OwnedFd,
    },
}

fn start(dir: &Path, request: &ExecRequest) -> Result<(nix::unistd::Pid, CommandIo), String> {
    let meta: ShimMeta = crate::shim::read_json(&dir.join(META))
        .map_err(|e| e.to_string())?
        .ok_or("the container has no metadata")?;
    // The command runs as the container's process does: same user, capabilities and
    // environment; only the arguments (and the terminal) differ.
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("config.json"))
            .map_err(|e| format!("reading the container spec: {e}"))?,
    )
    .map_err(|e| format!("reading the container spec: {e}"))?;
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(request.args);
    process["terminal"] = serde_json::json!(request.tty);
    let process_file = tempfile::Builder::new()
        .prefix("exec-")
        .suffix(".json")
        .tempfile_in(dir)
        .map_err(|e| e.to_string())?;
    std::fs::write(
        process_file.path(),
        serde_json::to_vec(&process).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;

    let builder = ContainerBuilder::new(meta.id.clone(), SyscallType::Linux)
        .with_root_path(dir.join(LIBCONTAINER_ROOT))
        .map_err(|e| e.to_string())?;
    if request.tty {
        // libcontainer makes the terminal inside the container and hands us its master end
        // over a socket; the command becomes its session leader, so ^C and job control work.
        let socket_dir = tempfile::Builder::new()
            .prefix("capstan-console-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let socket_path = socket_dir.path().join("console.sock");
        let listener = UnixListener::bind(&socket_path)
            .map_err(|e| format!("making the console socket: {e}"))?;
        let pid = builder
            .with_console_socket(Some(&socket_path))
            .as_tenant()
            .with_process(Some(process_file.path()))
            .with_detach(true)
            .build()
            .map_err(|e| exec_error(&request.args, &e.to_string()))?;
        let (connection, _) = listener
            .accept()
            .map_err(|e| format!("receiving the terminal: {e}"))?;
        let master = receive_fd(&connection).ok_or("the container sent no terminal")?;
        Ok((pid, CommandIo::Terminal { master }))
    } else {
        let pipe = || nix::unistd::pipe().map_err(|e| format!("making a pipe: {e}"));
        let (stdin_read, stdin_write) = pipe()?;
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let pid = builder
            .with_stdin(stdin_read)
            .with_stdout(stdout_write)
            .with_stderr(stderr_write)
            .as_tenant()
            .with_process(Some(process_file.path()))
            .with_detach(false)
            .build()
            .map_err(|e| exec_error(&request.args, &e.to_string()))?;
        Ok((
            pid,
            CommandIo::Pipes {
                stdin: stdin_write,
                stdout: stdout_read,
                stderr: stderr_read,
            },
        ))
    }
}

/// containerd's wording for a command that cannot start, which kubectl shows.
fn exec_error(args: &[String], cause: &str) -> String {
    let command = args.first().map(String::as_str).unwrap_or_default();
    if cause.contains("not found") {
        format!(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{command}\": executable file not found in $PATH: unknown"
        )
    } else {
        format!(
            "OCI runtime exec failed: exec failed: unable to start container process: {cause}: unknown"
        )
    }
}

/// Receives one file descriptor sent with SCM_RIGHTS.
fn receive_fd(connection: &std::os::unix::net::UnixStream) -> Option<OwnedFd> {
    let mut buffer = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = recvmsg::<()>(
        connection.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .ok()?;
    for control in message.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = control
            && let Some(&fd) = fds.first()
        {
            return Some(owned_fd(fd));
        }
    }
    None
}

#[allow(unsafe_code)]
fn owned_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the descriptor was just received with SCM_RIGHTS: it is open and nothing else
    // in this process owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

nix::ioctl_write_ptr_bad!(set_window_size, nix::libc::TIOCSWINSZ, nix::libc::winsize);

/// Sets the terminal's size (the `resize` channel of `kubectl exec -t`).
#[allow(unsafe_code)]
fn resize(master: &impl AsFd, cols: u16, rows: u16) {
    let size = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `master` is an open terminal descriptor and `size` a valid winsize that lives
    // across the call; TIOCSWINSZ only reads it.
    let _ = unsafe { set_window_size(master.as_fd().as_raw_fd(), &size) };
}

fn relay_and_wait(
    pid: nix::unistd::Pid,
    io: CommandIo,
    request: &ExecRequest,
    winch: SigSet,
) -> i32 {
    let mut threads = Vec::new();
    match io {
        CommandIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            // stdin runs detached: it may stay blocked reading after the command ends.
            std::thread::spawn(move || copy(std::io::stdin(), std::fs::File::from(stdin)));
            threads.push(std::thread::spawn(move || {
                copy(std::fs::File::from(stdout), std::io::stdout())
            }));
            threads.push(std::thread::spawn(move || {
                copy(std::fs::File::from(stderr), std::io::stderr())
            }));
        }
        CommandIo::Terminal { master } => {
            let master = std::fs::File::from(master);
            let (Ok(input), Ok(for_size)) = (master.try_clone(), master.try_clone()) else {
                return 1;
            };
            // stdin → terminal runs detached: it may stay blocked reading after the command ends.
            std::thread::spawn(move || copy(std::io::stdin(), input));
            threads.push(std::thread::spawn(move || copy(master, std::io::stdout())));
            if let Some(size_file) = request.size_file.clone() {
                let apply = move || {
                    if let Ok(text) = std::fs::read_to_string(&size_file) {
                        let mut numbers = text
                            .split_whitespace()
                            .filter_map(|n| n.parse::<u16>().ok());
                        if let (Some(cols), Some(rows)) = (numbers.next(), numbers.next()) {
                            resize(&for_size, cols, rows);
                        }
                    }
                };
                apply();
                std::thread::spawn(move || {
                    while winch.wait().is_ok() {
                        apply();
                    }
                });
            }
        }
    }
    let status = loop {
        match nix::sys::wait::waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => break 255,
        }
    };
    for thread in threads {
        let _ = thread.join();
    }
    status
}

/// Copies until end of file (or a terminal's EIO once its last user is gone).
fn copy(mut from: impl Read, mut to: impl Write) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to
                    .write_all(&buffer[..n])
                    .and_then(|()| to.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
