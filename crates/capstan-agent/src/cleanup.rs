//! What `k3s-killall.sh` does for one node: everything an agent left on the machine, removed
//! after the agent itself was stopped — for `capstan cluster down` and for tests, which must
//! leave nothing behind even when they fail.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills the containers (and their shims and pause processes) the agent whose data is in
/// `agent_dir` left running, unmounts everything under that directory (deepest first), and
/// removes the pods' cgroups. Idempotent; errors are ignored, as there is nobody to tell.
pub fn remove_node_leftovers(agent_dir: &Path) {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(agent_dir.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(state) = std::fs::read_to_string(entry.path().join("state.json")) else {
            continue;
        };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&state) else {
            continue;
        };
        pids.extend(
            ["pid", "shim_pid"]
                .iter()
                .filter_map(|key| state[key].as_i64()),
        );
    }
    // Pods sharing a PID namespace have a pause process.
    for pod in std::fs::read_dir(agent_dir.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(pid) = std::fs::read_to_string(pod.path().join("ns/pause.pid"))
            && let Ok(pid) = pid.trim().parse()
        {
            pids.push(pid);
        }
    }
    for pid in &pids {
        let _ = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    if !pids.is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = agent_dir.to_string_lossy().to_string();
    let mut mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        let _ = Command::new("umount")
            .args(["-l", mount])
            .stderr(Stdio::null())
            .status();
    }
    for pod in std::fs::read_dir(agent_dir.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let uid = pod.file_name().to_string_lossy().to_string();
        remove_cgroups(&format!("capstan/pod{uid}"));
    }
}

/// Removes a cgroup (children first) from every hierarchy.
pub fn remove_cgroups(relative: &str) {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for root in roots.flatten() {
        let dir = root.path().join(relative);
        if dir.is_dir() {
            let _ = Command::new("find")
                .arg(&dir)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .stderr(Stdio::null())
                .status();
        }
    }
}
