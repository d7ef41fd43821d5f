//! What the root tests of the node's rules share: running commands, telling whether this
//! machine can run them (root, `nft`, `ip`, busybox), and `ip -n` in a test namespace.

use std::path::Path;
use std::process::{Command, Stdio};

/// busybox-static gives the tests' servers and clients (`httpd`, `nc`).
pub const BUSYBOX: &str = "/bin/busybox";

/// Runs a command, panicking with its stderr if it fails.
pub fn run(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Why these tests cannot run here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("needs root".into());
    }
    for tool in ["nft", "ip"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("needs {tool}"));
        }
    }
    if !Path::new(BUSYBOX).exists() {
        return Some(format!("needs {BUSYBOX}"));
    }
    None
}

/// Returns from the test (which passes) when this machine cannot run it, saying why.
macro_rules! skip_unless_root {
    () => {
        if let Some(reason) = $crate::netns_testing::missing_prerequisite() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}
pub(crate) use skip_unless_root;

/// `ip -n <netns> <command>`, panicking if it fails.
pub fn ip(netns: &str, command: &str) {
    let mut args = vec!["ip", "-n", netns];
    args.extend(command.split(' '));
    run(&args);
}

/// A name unique on this machine for one test's namespaces: `<prefix>-<pid, counter, time>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{:x}{:x}{:x}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    )
}

/// Runs `args` inside the network namespace `netns`, panicking if it fails.
pub fn exec(netns: &str, args: &[&str]) -> String {
    let mut command = vec!["ip", "netns", "exec", netns];
    command.extend_from_slice(args);
    run(&command)
}

/// GETs `url` from `netns` within `seconds`: the body, or wget's complaint. (busybox 1.35's
/// `wget -T` crashes, hence coreutils' `timeout`.)
pub fn wget(netns: &str, url: &str, seconds: u32) -> Result<String, String> {
    let output = Command::new("ip")
        .args(["netns", "exec", netns, "timeout", &seconds.to_string()])
        .args([BUSYBOX, "wget", "-q", "-O", "-", url])
        .stdin(Stdio::null())
        .output()
        .expect("busybox wget");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// What a test's Drop guard does: stops its servers, then deletes its namespaces.
pub fn tear_down<'a>(
    servers: &mut [std::process::Child],
    namespaces: impl IntoIterator<Item = &'a String>,
) {
    for server in servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    for netns in namespaces {
        let _ = Command::new("ip")
            .args(["netns", "del", netns])
            .stderr(Stdio::null())
            .status();
    }
}
