//! Running `nft -f -`: the only effect of the service proxy.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::TABLE;

/// Why a transaction was not applied. nft applies all of it or nothing, so the table is as it
/// was before in every case.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// `nft` (or `ip` for a namespace) could not be started or fed: installation problem,
    /// a retry does not help.
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// nft refused the transaction. A retry of the same text does not help; a full
    /// replacement does if the table was changed behind the proxy's back.
    #[error("nft rejected the transaction: {stderr}")]
    Rejected { stderr: String },
}

/// Applies `ruleset` (nft's text syntax) as one transaction, in the network namespace `netns`
/// (an `ip netns` name) or the current one. Blocks until nft exits.
pub fn apply(ruleset: &str, netns: Option<&str>) -> Result<(), ApplyError> {
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, "nft", "-f", "-"]);
            command
        }
        None => {
            let mut command = Command::new("nft");
            command.args(["-f", "-"]);
            command
        }
    };
    let shown = format!("{command:?}");
    let spawn_error = |source| ApplyError::Spawn {
        command: shown.clone(),
        source,
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Written from a second thread: nft may report errors before it has read everything, and
    // a full stderr pipe must not stall it while this thread is still writing.
    let stdin = child.stdin.take();
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || match stdin {
            Some(mut stdin) => stdin.write_all(ruleset.as_bytes()),
            None => Ok(()),
        });
        let output = child.wait_with_output();
        let written = writer.join().unwrap_or(Ok(()));
        output.map(|output| (output, written))
    });
    let (output, written) = output.map_err(spawn_error)?;
    if !output.status.success() {
        return Err(ApplyError::Rejected {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    // nft exited 0 but did not read everything: it did not apply what we meant.
    written.map_err(spawn_error)
}

/// Removes the proxy's table if there is one (a stale table of an earlier run, or at shutdown).
pub fn delete_table(netns: Option<&str>) -> Result<(), ApplyError> {
    apply(
        &format!("add table ip {TABLE}\ndelete table ip {TABLE}\n"),
        netns,
    )
}
