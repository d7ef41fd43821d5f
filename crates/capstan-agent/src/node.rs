//! The agent's Node: registration with what the machine really has, a Lease renewed every
//! 10 s in `kube-node-lease` (what the node lifecycle controller watches), and the node
//! conditions (Ready, MemoryPressure, DiskPressure, PIDPressure) kept current. As kubelet does
//! since node leases, the status is computed every 10 s but written only when it changed or
//! 5 min after the last write: the Lease is the heartbeat, and 5,000 nodes writing their
//! status every 10 s would be 500 writes a second for nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// How often the Lease is renewed, as kubelet does (`nodeLeaseRenewInterval`).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the node status is written when nothing in it changed (kubelet's
/// `nodeStatusReportFrequency`).
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);
/// How long a Lease stays valid without renewal (kubelet's `nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// kubelet's default `maxPods`.
pub const MAX_PODS: u32 = 110;
/// kubelet's default `--eviction-hard` (pid.available is ours: kubelet sets none).
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,pid.available<5%";

/// One eviction signal's threshold: an amount, or a share of the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Amount(u64),
    Percent(f64),
}

impl Threshold {
    /// Whether `available` out of `total` is under the threshold.
    fn crossed(self, available: u64, total: u64) -> bool {
        match self {
            Threshold::Amount(amount) => available < amount,
            Threshold::Percent(percent) => {
                total > 0 && (available as f64) * 100.0 < percent * total as f64
            }
        }
    }
}

/// When the node reports MemoryPressure, DiskPressure and PIDPressure, in kubelet's
/// `--eviction-hard` syntax: `memory.available<100Mi,nodefs.available<10%,pid.available<5%`.
/// A signal left out is never crossed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PressureThresholds {
    pub memory_available: Option<Threshold>,
    pub nodefs_available: Option<Threshold>,
    pub pid_available: Option<Threshold>,
}

impl std::str::FromStr for PressureThresholds {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut thresholds = PressureThresholds::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item.split_once('<').ok_or_else(|| {
                format!("invalid eviction threshold {item:?}: expected signal<value")
            })?;
            let value = value.trim();
            let threshold = if let Some(percent) = value.strip_suffix('%') {
                match percent.parse::<f64>() {
                    Ok(p) if (0.0..=100.0).contains(&p) => Threshold::Percent(p),
                    _ => return Err(format!("invalid eviction threshold percentage {value:?}")),
                }
            } else {
                let quantity = capstan_api::quantity::Quantity::parse(value)
                    .filter(|q| q.nanos() >= 0)
                    .ok_or_else(|| format!("invalid eviction threshold quantity {value:?}"))?;
                Threshold::Amount(quantity.ceil())
            };
            let slot = match signal.trim() {
                "memory.available" => &mut thresholds.memory_available,
                "nodefs.available" => &mut thresholds.nodefs_available,
                "pid.available" => &mut thresholds.pid_available,
                other => return Err(format!("unsupported eviction signal {other:?}")),
            };
            *slot = Some(threshold);
        }
        Ok(thresholds)
    }
}

/// The agent's version as Kubernetes reports it in `nodeInfo.kubeletVersion`.
pub const KUBELET_VERSION: &str = "v1.33.0-capstan";

/// Why a Node or Lease write failed; the heartbeat retries on its next tick.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("registering node {name}: {source}")]
    Register { name: String, source: kube::Error },
    #[error("updating the status of node {name}: {source}")]
    UpdateStatus { name: String, source: kube::Error },
    #[error("renewing the lease of node {name}: {source}")]
    RenewLease { name: String, source: kube::Error },
}

/// Facts about this machine, read once at start.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub hostname: String,
}

impl Machine {
    /// Reads the machine; `storage_dir` is where pods' files go (its filesystem is nodefs).
    pub fn read(storage_dir: &Path) -> Machine {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let uname = nix::sys::utsname::uname().ok();
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_bytes: meminfo("MemTotal"),
            ephemeral_storage_bytes: disk(storage_dir).0,
            kernel_version: uname
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            hostname: uname
                .map(|u| u.nodename().to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// Reads a `/proc/meminfo` field, in bytes.
fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// (total, available) bytes of the filesystem holding `dir`.
fn disk(dir: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let block = s.fragment_size();
            (s.blocks() * block, s.blocks_available() * block)
        }
        Err(_) => (0, 0),
    }
}

/// How this node is registered.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// The address the API server reaches the agent on (`InternalIP`).
    pub internal_ip: String,
    /// The agent's HTTPS port (`daemonEndpoints.kubeletEndpoint.Port`).
    pub port: u16,
    pub labels: BTreeMap<String, String>,
}

/// The Node object this agent registers: capacity from the machine, no reservations.
pub fn node_object(spec: &NodeSpec, machine: &Machine) -> Value {
    let mut labels = spec.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), spec.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), go_arch().into());
    let resources = json!({
        "cpu": machine.cpus.to_string(),
        "memory": format!("{}Ki", machine.memory_bytes / 1024),
        "ephemeral-storage": machine.ephemeral_storage_bytes.to_string(),
        "pods": MAX_PODS.to_string(),
    });
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": spec.internal_ip},
                {"type": "Hostname", "address": spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": spec.port}},
            "nodeInfo": {
                "machineID": machine.machine_id,
                "systemUUID": machine.machine_id,
                "bootID": machine.boot_id,
                "kernelVersion": machine.kernel_version,
                "osImage": machine.os_image,
                "containerRuntimeVersion": concat!("capstan://", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
        },
    })
}

/// The architecture as Go (and so Kubernetes) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// One node condition as kubelet words it.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    kind: &'static str,
    status: &'static str,
    reason: &'static str,
    message: &'static str,
}

/// Where a node's pressure conditions come from.
#[derive(Debug, Clone)]
pub enum Pressure {
    /// What this machine has left: memory, the filesystem of `storage_dir`, PIDs.
    Machine {
        storage_dir: PathBuf,
        thresholds: PressureThresholds,
    },
    /// Never under pressure: a hollow node, which has no machine of its own.
    Never,
}

/// The node's conditions now.
fn conditions(pressure: &Pressure) -> Vec<Condition> {
    let (memory_short, disk_short, pids_short) = match pressure {
        Pressure::Machine {
            storage_dir,
            thresholds,
        } => machine_pressure(storage_dir, thresholds),
        Pressure::Never => (false, false, false),
    };
    let pressure =
        |kind, short: bool, yes: (&'static str, &'static str), no: (&'static str, &'static str)| {
            let (reason, message) = if short { yes } else { no };
            Condition {
                kind,
                status: if short { "True" } else { "False" },
                reason,
                message,
            }
        };
    vec![
        pressure(
            "MemoryPressure",
            memory_short,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        pressure(
            "DiskPressure",
            disk_short,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        pressure(
            "PIDPressure",
            pids_short,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
        Condition {
            kind: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status",
        },
    ]
}

/// Whether the machine is short of memory, disk and PIDs: (memory, disk, pids).
fn machine_pressure(storage_dir: &Path, thresholds: &PressureThresholds) -> (bool, bool, bool) {
    let crossed = |threshold: Option<Threshold>, available, total| {
        threshold.is_some_and(|t| t.crossed(available, total))
    };
    let memory_short = crossed(
        thresholds.memory_available,
        meminfo("MemAvailable"),
        meminfo("MemTotal"),
    );
    let (total, available) = disk(storage_dir);
    let disk_short = crossed(thresholds.nodefs_available, available, total);
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let processes = std::fs::read_dir("/proc").map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .count() as u64
    });
    let pids_short = crossed(
        thresholds.pid_available,
        pid_max - processes.min(pid_max),
        pid_max,
    );
    (memory_short, disk_short, pids_short)
}

/// Keeps the Node registered and its status, conditions and Lease current, until the task is
/// dropped. Failures are logged and retried on the next tick: a control plane that is away for
/// a while must not stop the node.
pub struct Heartbeat {
    client: Client,
    spec: NodeSpec,
    machine: Machine,
    pressure: Pressure,
    /// Conditions last written, with the time each last changed.
    written: Vec<(Condition, Time)>,
    /// When the status was last written.
    reported_at: Option<tokio::time::Instant>,
    node_uid: Option<String>,
}

impl Heartbeat {
    pub fn new(client: Client, spec: NodeSpec, machine: Machine, pressure: Pressure) -> Self {
        Heartbeat {
            client,
            spec,
            machine,
            pressure,
            written: Vec::new(),
            reported_at: None,
            node_uid: None,
        }
    }

    /// Creates the Node, or brings an existing one (an agent restart) up to date.
    pub async fn register(&mut self) -> Result<(), NodeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let name = self.spec.name.clone();
        let wanted = node_object(&self.spec, &self.machine);
        let node: Node =
            serde_json::from_value(wanted.clone()).expect("the node object is a valid Node");
        let created = match nodes.create(&PostParams::default(), &node).await {
            Ok(created) => created,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let patch = json!({"metadata": {"labels": wanted["metadata"]["labels"]}});
                nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|source| NodeError::Register {
                        name: name.clone(),
                        source,
                    })?
            }
            Err(source) => return Err(NodeError::Register { name, source }),
        };
        self.node_uid = created.metadata.uid.clone();
        self.written.clear();
        self.update_status().await
    }

    /// Writes the node status if a condition changed, if the API shows other conditions (the
    /// node lifecycle controller set Ready to Unknown, say), or if the last write is
    /// [`STATUS_REPORT_INTERVAL`] old (kubelet's `nodeStatusReportFrequency`). Like kubelet,
    /// it compares with the Node as the API has it, not with what it last wrote.
    pub async fn report_status(&mut self) -> Result<(), NodeError> {
        let current = conditions(&self.pressure);
        let unchanged = current.len() == self.written.len()
            && current
                .iter()
                .zip(&self.written)
                .all(|(now, (then, _))| now == then);
        let recent = self
            .reported_at
            .is_some_and(|at| at.elapsed() < STATUS_REPORT_INTERVAL);
        if unchanged && recent && self.api_shows(&current).await {
            return Ok(());
        }
        self.update_status().await
    }

    /// Whether the Node in the API carries these conditions (type and status).
    async fn api_shows(&self, conditions: &[Condition]) -> bool {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let Ok(node) = nodes.get(&self.spec.name).await else {
            return false;
        };
        let shown = node.status.and_then(|s| s.conditions).unwrap_or_default();
        conditions.iter().all(|c| {
            shown
                .iter()
                .any(|s| s.type_ == c.kind && s.status == c.status)
        })
    }

    /// Writes the node status (capacity, addresses, conditions with kubelet's heartbeat times).
    pub async fn update_status(&mut self) -> Result<(), NodeError> {
        let now = Time(jiff::Timestamp::now());
        let current = conditions(&self.pressure);
        let mut list = Vec::new();
        let mut next = Vec::new();
        for condition in current {
            let since = self
                .written
                .iter()
                .find(|(old, _)| old.kind == condition.kind && old.status == condition.status)
                .map_or_else(|| now.clone(), |(_, t)| t.clone());
            list.push(json!({
                "type": condition.kind,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": since,
            }));
            next.push((condition, since));
        }
        let mut status = node_object(&self.spec, &self.machine)["status"].clone();
        status["conditions"] = json!(list);
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch_status(
                &self.spec.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .map_err(|source| NodeError::UpdateStatus {
                name: self.spec.name.clone(),
                source,
            })?;
        self.written = next;
        self.reported_at = Some(tokio::time::Instant::now());
        Ok(())
    }

    /// Renews (or creates) the node's Lease in `kube-node-lease`.
    pub async fn renew_lease(&self) -> Result<(), NodeError> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let name = &self.spec.name;
        let now = MicroTime(jiff::Timestamp::now());
        let error = |source| NodeError::RenewLease {
            name: name.clone(),
            source,
        };
        let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now}});
        match leases
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let mut lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": patch["spec"],
                });
                if let Some(uid) = &self.node_uid {
                    lease["metadata"]["ownerReferences"] =
                        json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
                }
                let lease: Lease =
                    serde_json::from_value(lease).expect("the lease object is a valid Lease");
                leases
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
                    .map_err(error)
            }
            Err(source) => Err(error(source)),
        }
    }

    /// Runs forever: lease every 10 s, status looked at every 10 s (kubelet's
    /// `nodeStatusUpdateFrequency`) and written when it changed or every 5 min,
    /// re-registering when the Node was deleted.
    pub async fn run(mut self) {
        let mut registered = false;
        let mut tick = tokio::time::interval(LEASE_RENEW_INTERVAL);
        loop {
            tick.tick().await;
            if !registered {
                match self.register().await {
                    Ok(()) => registered = true,
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                }
            } else if let Err(e) = self.report_status().await {
                tracing::warn!("{e}");
                if let NodeError::UpdateStatus {
                    source: kube::Error::Api(status),
                    ..
                } = &e
                    && status.code == 404
                {
                    registered = false;
                    continue;
                }
            }
            if let Err(e) = self.renew_lease().await {
                tracing::warn!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_object_carries_kubernetes_well_known_labels_and_capacity() {
        let machine = Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 100 << 30,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            hostname: "h".into(),
        };
        let spec = NodeSpec {
            name: "node-1".into(),
            internal_ip: "10.0.0.1".into(),
            port: 10250,
            labels: BTreeMap::new(),
        };
        let node = node_object(&spec, &machine);
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/hostname"],
            "node-1"
        );
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/arch"], go_arch());
        assert_eq!(node["status"]["capacity"]["memory"], "4194304Ki");
        assert_eq!(node["status"]["capacity"]["pods"], "110");
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        // It deserializes into the typed Node, which is what gets sent.
        let typed: Node = serde_json::from_value(node).unwrap();
        assert_eq!(
            typed.status.unwrap().node_info.unwrap().operating_system,
            "linux"
        );
    }

    #[test]
    fn this_machine_reports_sane_conditions() {
        let defaults = DEFAULT_EVICTION_HARD.parse().unwrap();
        let conditions = conditions(&Pressure::Machine {
            storage_dir: "/".into(),
            thresholds: defaults,
        });
        let kinds: Vec<_> = conditions.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert!(Machine::read(Path::new("/")).memory_bytes > 0);
    }

    #[test]
    fn eviction_thresholds_parse_as_kubelet_writes_them() {
        let parsed: PressureThresholds = DEFAULT_EVICTION_HARD.parse().unwrap();
        assert_eq!(
            parsed,
            PressureThresholds {
                memory_available: Some(Threshold::Amount(100 << 20)),
                nodefs_available: Some(Threshold::Percent(10.0)),
                pid_available: Some(Threshold::Percent(5.0)),
            }
        );
        let only_disk: PressureThresholds = "nodefs.available<1Gi".parse().unwrap();
        assert_eq!(only_disk.nodefs_available, Some(Threshold::Amount(1 << 30)));
        assert_eq!(only_disk.memory_available, None);
        assert_eq!(
            "".parse::<PressureThresholds>(),
            Ok(PressureThresholds::default())
        );
        for bad in [
            "memory.available",
            "memory.available<lots",
            "nodefs.available<120%",
            "imagefs.available<10%",
            "memory.available<-1Mi",
        ] {
            assert!(bad.parse::<PressureThresholds>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_threshold_is_crossed_below_its_amount_or_share() {
        assert!(Threshold::Amount(100).crossed(99, 1000));
        assert!(!Threshold::Amount(100).crossed(100, 1000));
        assert!(Threshold::Percent(10.0).crossed(99, 1000));
        assert!(!Threshold::Percent(10.0).crossed(100, 1000));
        // An unknown total (statvfs failed) never reports pressure by share.
        assert!(!Threshold::Percent(10.0).crossed(0, 0));
    }
}
