//! Hollow nodes: many simulated agents in one process, for scale tests (kubemark's hollow
//! kubelets). Each hollow node registers its Node and renews its Lease with the agent's own
//! [`Heartbeat`], and runs the pods bound to it on the [`FakeRuntime`]: a pod's containers
//! start at once, and the pod's status — written with the agent's own
//! [`status::pod_status`](crate::status::pod_status) — goes Running and Ready; a pod marked
//! for deletion is stopped and deleted for good, as the agent does.
//!
//! What a hollow node leaves out: images, volumes, probes, hooks, the pod network and events.
//! Its containers never end on their own. Pods get addresses from [`HOLLOW_POD_RANGE`], which
//! no machine routes, and nodes loopback addresses (127.1.0.0/16), so that nothing ever sends
//! traffic off this machine to a node that does not exist.
//!
//! All hollow nodes share one client (connections) and one watch of the pods bound to any
//! node, which routes each pod to its node; a real agent watches its own node's pods only.
//! Everything else goes through the real API over HTTPS, as a real agent's requests do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use capstan_api::cidr::Ipv4Cidr;
use capstan_runtime::fake::FakeRuntime;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::node::{Heartbeat, LEASE_RENEW_INTERVAL, Machine, NodeSpec, Pressure};
use crate::status::{ContainerView, PodFacts};
use crate::worker::container_id;

/// Where hollow pods' addresses come from: the shared address space (RFC 6598), one /24 per
/// hollow node, so 16,384 nodes at most.
pub const HOLLOW_POD_RANGE: &str = "100.64.0.0/10";
/// The most hollow nodes one process runs (one /24 of [`HOLLOW_POD_RANGE`] each).
pub const MAX_HOLLOW_NODES: usize = 16_384;
/// The kubelet port hollow nodes report; nothing listens there.
const HOLLOW_KUBELET_PORT: u16 = 10250;

/// How the hollow nodes run.
pub struct HollowConfig {
    pub client: Client,
    /// How many nodes, named `<prefix>1` … `<prefix>N`.
    pub nodes: usize,
    pub name_prefix: String,
    /// What each node reports as its capacity.
    pub machine: Machine,
    pub labels: BTreeMap<String, String>,
    /// The most API requests pods' status writes and deletes have in flight at once.
    pub max_in_flight: usize,
}

/// Why the hollow nodes could not start.
#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    #[error("{nodes} hollow nodes asked for; one process runs 1 to {MAX_HOLLOW_NODES}")]
    TooManyNodes { nodes: usize },
}

/// The machine a hollow node claims: 32 CPUs, 128 GiB of memory, 1 TiB of disk.
pub fn hollow_machine() -> Machine {
    Machine {
        cpus: 32,
        memory_bytes: 128 << 30,
        ephemeral_storage_bytes: 1 << 40,
        kernel_version: "hollow".into(),
        os_image: "capstan hollow node".into(),
        machine_id: String::new(),
        boot_id: String::new(),
        hostname: String::new(),
    }
}

/// The name of hollow node `index` (0-based).
pub fn node_name(prefix: &str, index: usize) -> String {
    format!("{prefix}{}", index + 1)
}

/// Hollow node `index`'s address: loopback, 127.1.0.1 onwards.
fn node_address(index: usize) -> Ipv4Addr {
    let n = index as u32 + 1;
    Ipv4Addr::new(127, 1, (n >> 8) as u8, n as u8)
}

/// Runs the hollow nodes until the task is dropped: their heartbeats, and their pods.
pub async fn run(config: HollowConfig) -> Result<(), HollowError> {
    if config.nodes == 0 || config.nodes > MAX_HOLLOW_NODES {
        return Err(HollowError::TooManyNodes {
            nodes: config.nodes,
        });
    }
    let pod_range = Ipv4Cidr::parse(HOLLOW_POD_RANGE).expect("a valid range");
    let mut nodes = HashMap::new();
    let mut heartbeats = tokio::task::JoinSet::new();
    for index in 0..config.nodes {
        let name = node_name(&config.name_prefix, index);
        let address = node_address(index);
        let spec = NodeSpec {
            name: name.clone(),
            internal_ip: address.to_string(),
            port: HOLLOW_KUBELET_PORT,
            labels: config.labels.clone(),
        };
        let mut machine = config.machine.clone();
        machine.hostname = name.clone();
        machine.machine_id = format!("hollow-{}", index + 1);
        machine.boot_id = machine.machine_id.clone();
        let heartbeat = Heartbeat::new(config.client.clone(), spec, machine, Pressure::Never);
        // Spread the nodes over one renewal interval, as machines booted at different times
        // are: registration takes one interval, and renewals come at an even rate.
        let offset = LEASE_RENEW_INTERVAL.mul_f64(index as f64 / config.nodes as f64);
        heartbeats.spawn(async move {
            tokio::time::sleep(offset).await;
            heartbeat.run().await;
        });
        let pods = pod_range
            .subnet(24, index as u64)
            .expect("the range holds MAX_HOLLOW_NODES /24s");
        nodes.insert(name, HollowNode::new(address, pods));
    }
    let kubelet = Kubelet {
        client: config.client.clone(),
        runtime: FakeRuntime::new(),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
    };
    run_pods(Arc::new(kubelet), nodes).await;
    heartbeats.join_all().await;
    Ok(())
}

/// What the hollow nodes' pod handling shares.
struct Kubelet {
    client: Client,
    runtime: FakeRuntime,
    in_flight: Arc<Semaphore>,
}

/// One hollow node's pods.
struct HollowNode {
    address: String,
    pod_range: Ipv4Cidr,
    /// Pods by UID.
    pods: HashMap<String, HollowPod>,
    /// Host numbers of the pod range handed out, so that an address is reused only once
    /// its pod is gone.
    leased: HashSet<u64>,
    next: u64,
}

struct HollowPod {
    host: Option<u64>,
    terminating: bool,
}

impl HollowNode {
    fn new(address: Ipv4Addr, pod_range: Ipv4Cidr) -> Self {
        HollowNode {
            address: address.to_string(),
            pod_range,
            pods: HashMap::new(),
            leased: HashSet::new(),
            next: 1,
        }
    }

    /// The next free host number of the range (.1 to .254), round the range as the real
    /// pod network hands addresses out; `None` when all are taken.
    fn lease(&mut self) -> Option<u64> {
        let hosts = self.pod_range.size() - 2;
        for _ in 0..hosts {
            let host = self.next;
            self.next = if self.next >= hosts { 1 } else { self.next + 1 };
            if self.leased.insert(host) {
                return Some(host);
            }
        }
        None
    }

    fn release(&mut self, pod: HollowPod) {
        if let Some(host) = pod.host {
            self.leased.remove(&host);
        }
    }
}

/// Watches every bound pod and hands each to its hollow node; pods of other nodes are left
/// alone. Returns only if the watch stream ends.
async fn run_pods(kubelet: Arc<Kubelet>, mut nodes: HashMap<String, HollowNode>) {
    let pods: Api<Pod> = Api::all(kubelet.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut stream = watcher::watcher(pods, config).boxed();
    // UIDs seen in a (re-)list, so that pods gone while the watch was down are forgotten.
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(pod)) => sync_pod(&kubelet, &mut nodes, pod),
            Ok(Event::InitApply(pod)) => {
                if let Some(uid) = &pod.metadata.uid {
                    listing.insert(uid.clone());
                }
                sync_pod(&kubelet, &mut nodes, pod);
            }
            Ok(Event::Delete(pod)) => forget_pod(&kubelet, &mut nodes, &pod),
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitDone) => {
                for node in nodes.values_mut() {
                    let gone: Vec<String> = node
                        .pods
                        .keys()
                        .filter(|uid| !listing.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        kubelet.runtime.remove_prefixed(&format!("{uid}-"));
                        if let Some(pod) = node.pods.remove(&uid) {
                            node.release(pod);
                        }
                    }
                }
                listing.clear();
            }
            Err(e) => tracing::warn!("watching the pods of the hollow nodes: {e}"),
        }
    }
}

/// What a hollow node does with the latest version of one of its pods: start it, or stop and
/// delete it once it is marked for deletion.
fn sync_pod(kubelet: &Arc<Kubelet>, nodes: &mut HashMap<String, HollowNode>, pod: Pod) {
    let Some(node) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .and_then(|name| nodes.get_mut(name))
    else {
        return;
    };
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        let known = node.pods.entry(uid.clone()).or_insert(HollowPod {
            host: None,
            terminating: false,
        });
        if known.terminating {
            return;
        }
        known.terminating = true;
        // The containers stop at once: nothing runs in them to be given a grace period.
        for container in containers(&pod) {
            kubelet
                .runtime
                .stop(&container_id(&uid, &container.name, 0));
        }
        kubelet.runtime.remove_prefixed(&format!("{uid}-"));
        let kubelet = Arc::clone(kubelet);
        tokio::spawn(async move { kubelet.delete_for_good(&pod, &uid).await });
        return;
    }
    if node.pods.contains_key(&uid) {
        return;
    }
    // A pod this node already reported (the process restarted) is adopted as it is.
    let reported = pod
        .status
        .as_ref()
        .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some());
    if reported {
        node.pods.insert(
            uid,
            HollowPod {
                host: None,
                terminating: false,
            },
        );
        return;
    }
    let host = node.lease();
    node.pods.insert(
        uid.clone(),
        HollowPod {
            host,
            terminating: false,
        },
    );
    let pod_ip = host
        .and_then(|h| node.pod_range.nth(h))
        .map(|ip| ip.to_string());
    let status = start(
        &kubelet.runtime,
        &pod,
        &uid,
        &node.address,
        pod_ip.as_deref(),
    );
    let kubelet = Arc::clone(kubelet);
    tokio::spawn(async move { kubelet.write_status(&pod, status).await });
}

/// A pod deleted from the API: its containers and address go.
fn forget_pod(kubelet: &Kubelet, nodes: &mut HashMap<String, HollowNode>, pod: &Pod) {
    let (Some(uid), Some(node)) = (
        pod.metadata.uid.as_ref(),
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|name| nodes.get_mut(name)),
    ) else {
        return;
    };
    kubelet.runtime.remove_prefixed(&format!("{uid}-"));
    if let Some(known) = node.pods.remove(uid) {
        node.release(known);
    }
}

/// The pod's init and regular containers.
fn containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let regular = spec.map_or(&[][..], |s| s.containers.as_slice());
    init.iter().chain(regular)
}

/// Runs the pod's containers on the fake runtime — init containers to completion, the others
/// until stopped — and returns the status the agent would write for it.
fn start(
    runtime: &FakeRuntime,
    pod: &Pod,
    uid: &str,
    host_ip: &str,
    pod_ip: Option<&str>,
) -> serde_json::Value {
    let spec = pod.spec.as_ref();
    let view = |container: &Container, finished: bool| {
        let id = container_id(uid, &container.name, 0);
        runtime.start(&id);
        if finished {
            runtime.stop(&id);
        }
        let state = runtime.state(&id);
        let state = match state {
            // An init container that ran to completion exits 0.
            Some(capstan_runtime::ContainerState::Exited { started, mut exit }) => {
                exit.exit_code = 0;
                exit.signal = None;
                capstan_runtime::ContainerState::Exited { started, exit }
            }
            Some(state) => state,
            None => capstan_runtime::ContainerState::Creating,
        };
        ContainerView {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_id: container.image.clone().unwrap_or_default(),
            restart_count: 0,
            current: Some((id, state)),
            previous: None,
            waiting: None,
            ready: !finished,
            started: !finished,
            termination_message: None,
        }
    };
    let init: Vec<ContainerView> = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
        .iter()
        .map(|c| view(c, true))
        .collect();
    let regular: Vec<ContainerView> = spec
        .map_or(&[][..], |s| s.containers.as_slice())
        .iter()
        .map(|c| view(c, false))
        .collect();
    let facts = PodFacts {
        host_ip,
        pod_ip,
        start_time: jiff::Timestamp::now(),
        sandbox_ready: true,
    };
    crate::status::pod_status(pod, &facts, &init, &regular, None)
}

impl Kubelet {
    /// Writes the pod's status, as the agent does (a merge patch of `status`).
    async fn write_status(&self, pod: &Pod, status: serde_json::Value) {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return;
        };
        let (namespace, name) = namespace_and_name(pod);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = Patch::Merge(json!({"status": status}));
        for attempt in 0..3 {
            match pods
                .patch_status(name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => return,
                // Gone already: deleted before it ever ran.
                Err(kube::Error::Api(status)) if status.code == 404 => return,
                Err(e) => {
                    tracing::debug!("hollow: writing the status of pod {namespace}/{name}: {e}");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }

    /// kubelet's final delete: grace 0, guarded by the UID.
    async fn delete_for_good(&self, pod: &Pod, uid: &str) {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return;
        };
        let (namespace, name) = namespace_and_name(pod);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..Default::default()
        };
        for attempt in 0..3 {
            match pods.delete(name, &params).await {
                Ok(_) => return,
                // Gone already, or a new pod of the same name (the UID does not match).
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                    return;
                }
                Err(e) => {
                    tracing::debug!("hollow: deleting pod {namespace}/{name}: {e}");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
}

fn namespace_and_name(pod: &Pod) -> (&str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hollow_nodes_have_loopback_addresses_and_a_pod_range_each() {
        assert_eq!(node_address(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(node_address(255), Ipv4Addr::new(127, 1, 1, 0));
        assert_eq!(
            node_address(MAX_HOLLOW_NODES - 1),
            Ipv4Addr::new(127, 1, 64, 0)
        );
        let range = Ipv4Cidr::parse(HOLLOW_POD_RANGE).unwrap();
        assert_eq!(range.subnet_count(24), MAX_HOLLOW_NODES as u64);
        assert_eq!(node_name("hollow-node-", 0), "hollow-node-1");
    }

    #[test]
    fn pod_addresses_are_reused_only_once_released() {
        let range = Ipv4Cidr::parse("100.64.0.0/24").unwrap();
        let mut node = HollowNode::new(Ipv4Addr::LOCALHOST, range);
        let leased: Vec<u64> = (0..254).map(|_| node.lease().unwrap()).collect();
        assert_eq!(leased.first(), Some(&1));
        assert_eq!(leased.last(), Some(&254));
        assert_eq!(node.lease(), None, "254 hosts in a /24");
        node.release(HollowPod {
            host: Some(7),
            terminating: false,
        });
        assert_eq!(node.lease(), Some(7));
    }

    #[test]
    fn a_started_pod_reports_running_and_ready_with_its_init_containers_completed() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {
                "nodeName": "hollow-node-1",
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [{"name": "app", "image": "pause"}],
            },
        }))
        .unwrap();
        let runtime = FakeRuntime::new();
        let status = start(&runtime, &pod, "u", "127.1.0.1", Some("100.64.0.1"));
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["podIP"], "100.64.0.1");
        assert_eq!(status["hostIP"], "127.1.0.1");
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert!(status["containerStatuses"][0]["state"]["running"].is_object());
        assert_eq!(
            status["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(runtime.len(), 2);
    }
}
