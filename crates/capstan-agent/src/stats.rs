//! Resource usage from cgroups, served as kubelet's Summary API (`/stats/summary`), which
//! metrics-server reads: per node, pod and container, cumulative CPU time, the CPU rate since
//! the previous reading, and the memory working set.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use capstan_runtime::ContainerState;
use capstan_runtime::cgroups::{self, Usage};
use serde_json::{Value, json};

use crate::worker::{Shared, parse_container_id};

/// The previous CPU reading of each cgroup, for rates.
#[derive(Default)]
pub struct CpuHistory {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl CpuHistory {
    /// Nanocores used since the previous reading of `key` (0 on the first).
    fn rate(&self, key: &str, now: Instant, cpu_nanos: u64) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rate = match last.get(key) {
            Some((at, previous)) if now > *at && cpu_nanos >= *previous => {
                let elapsed = now.duration_since(*at).as_nanos().max(1);
                ((cpu_nanos - previous) as u128 * 1_000_000_000 / elapsed) as u64
            }
            _ => 0,
        };
        last.insert(key.to_owned(), (now, cpu_nanos));
        rate
    }
}

fn cpu_and_memory(
    history: &CpuHistory,
    key: &str,
    usage: Usage,
    now: Instant,
    time: &str,
) -> (Value, Value) {
    (
        json!({"time": time, "usageNanoCores": history.rate(key, now, usage.cpu_nanos), "usageCoreNanoSeconds": usage.cpu_nanos}),
        json!({"time": time, "workingSetBytes": usage.memory_working_set}),
    )
}

/// The summary of this node and its running pods.
pub fn summary(shared: &Shared) -> Value {
    let now = Instant::now();
    let time = crate::status::format_time(jiff::Timestamp::now());
    let history = &shared.cpu_history;
    // The node: everything under the cgroup root.
    let node_usage = cgroups::usage("/");
    let (node_cpu, node_memory) = cpu_and_memory(history, "/", node_usage, now, &time);

    let names: HashMap<String, String> = shared
        .pod_names
        .read()
        .map(|names| {
            names
                .iter()
                .map(|(key, uid)| (uid.clone(), key.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut pods: HashMap<String, Vec<Value>> = HashMap::new();
    for id in shared.runtime.list().unwrap_or_default() {
        let Some((uid, name, _)) = parse_container_id(&id) else {
            continue;
        };
        let Ok(ContainerState::Running(started)) = shared.runtime.state(&id) else {
            continue;
        };
        let usage = cgroups::usage(&capstan_runtime::bundle::cgroup_path(uid, &id));
        let (cpu, memory) = cpu_and_memory(history, &id, usage, now, &time);
        pods.entry(uid.to_owned()).or_default().push(json!({
            "name": name,
            "startTime": crate::status::format_time(started.started_at),
            "cpu": cpu,
            "memory": memory,
        }));
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|(uid, containers)| {
            let key = names.get(&uid).cloned().unwrap_or_default();
            let (namespace, name) = key.split_once('/').unwrap_or(("", ""));
            let sum = |section: &str, field: &str| -> u64 { containers.iter().filter_map(|c| c[section][field].as_u64()).sum() };
            json!({
                "podRef": {"name": name, "namespace": namespace, "uid": uid},
                "containers": containers,
                "cpu": {"time": time, "usageNanoCores": sum("cpu", "usageNanoCores"), "usageCoreNanoSeconds": sum("cpu", "usageCoreNanoSeconds")},
                "memory": {"time": time, "workingSetBytes": sum("memory", "workingSetBytes")},
            })
        })
        .collect();
    json!({
        "node": {"nodeName": shared.node_name, "cpu": node_cpu, "memory": node_memory},
        "pods": pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_rates_come_from_consecutive_readings() {
        let history = CpuHistory::default();
        let start = Instant::now();
        assert_eq!(
            history.rate("c", start, 1_000_000_000),
            0,
            "the first reading has no rate"
        );
        // Half a core for two seconds.
        assert_eq!(
            history.rate("c", start + Duration::from_secs(2), 2_000_000_000),
            500_000_000
        );
        // A counter that went backwards (a new cgroup) starts over.
        assert_eq!(history.rate("c", start + Duration::from_secs(3), 10), 0);
    }
}
