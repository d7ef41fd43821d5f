//! The pod worker: one task per pod on the node, kubelet's `syncPod` loop.
//!
//! Each pass it compares the pod spec with what runs (the runtime's container directories are
//! the truth, so a restarted agent picks up where it was), starts what should run — the sandbox,
//! then init containers one by one, then the regular containers — restarts what ended as the
//! restart policy says with kubelet's back-off, and writes the pod status when it changed.
//! A pod marked for deletion has its containers stopped within the grace period, its files
//! removed, and is then deleted for good.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capstan_runtime::container::ContainerConfig;
use capstan_runtime::{ContainerState, Runtime};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::events::{EventType, Recorder, container_field_path};
use crate::status::{ContainerView, PodFacts};

/// kubelet's crash-loop back-off: 10 s doubling to 5 min, forgotten after 10 min of running.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a worker looks at its containers when nothing else wakes it.
const POLL: Duration = Duration::from_millis(200);
/// How often mounted objects are rewritten from the API.
const VOLUME_REFRESH: Duration = Duration::from_secs(5);
/// kubelet's default `containerLogMaxSize`.
const LOG_MAX_BYTES: u64 = 10 << 20;

/// What every worker shares.
pub struct Shared {
    pub client: Client,
    pub node_name: String,
    pub host_ip: String,
    pub runtime: Runtime,
    /// The capstan binary, which runs shims and exec-shims.
    pub shim: PathBuf,
    pub images: capstan_runtime::image::ImageStore,
    /// `<root>/pods`: one directory per pod UID.
    pub pods_dir: PathBuf,
    pub events: Recorder,
    pub node: crate::env::NodeFacts,
    /// Previous CPU readings, for the rates of `/stats/summary`.
    pub cpu_history: crate::stats::CpuHistory,
    /// `namespace/name` → UID of the pods on this node, for the endpoint's lookups.
    pub pod_names: std::sync::RwLock<HashMap<String, String>>,
    /// The pod network, once the node has its pod range; `None` when pods get no network
    /// (`--pod-network none`).
    pub pod_network: Option<std::sync::OnceLock<capstan_net::pod_network::PodNetwork>>,
    /// The cluster DNS pods resolve with (none without a pod network).
    pub cluster_dns: Option<crate::resolv::ClusterDns>,
    /// The node's resolver configuration pods' DNS is based on (`--resolv-conf`); `None`:
    /// none, and cluster DNS forwards nothing.
    pub resolv_conf: Option<PathBuf>,
}

/// The runtime id of attempt `attempt` of container `name` in pod `uid`.
pub fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    format!("{uid}-{name}-{attempt}")
}

/// Splits a runtime id back into (pod uid, container name, attempt). Pod UIDs are 36
/// characters (a UUID).
pub fn parse_container_id(id: &str) -> Option<(&str, &str, u32)> {
    let uid = id.get(..36)?;
    let rest = id.get(37..)?;
    let (name, attempt) = rest.rsplit_once('-')?;
    Some((uid, name, attempt.parse().ok()?))
}

/// Per-container bookkeeping between passes.
#[derive(Debug, Default)]
struct Tracked {
    /// Attempt number of the current container (= restartCount).
    attempt: Option<u32>,
    backoff: Duration,
    /// When the current back-off ends.
    retry_at: Option<tokio::time::Instant>,
    waiting: Option<(String, String)>,
    image_id: String,
}

pub struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    dir: PathBuf,
    tracked: HashMap<String, Tracked>,
    start_time: jiff::Timestamp,
    last_status: Option<Value>,
    sandbox_ready: bool,
    /// The pod's address, once its sandbox is on the network (the node's for hostNetwork).
    pod_ip: Option<String>,
    /// When configMap, secret and downward API volumes were last rewritten.
    volumes_refreshed: Option<tokio::time::Instant>,
    /// The pod's volumes as last prepared, which container starts mount.
    volumes: Option<crate::volumes::PodVolumes>,
    /// Hooks and probes of the running containers, by container name.
    lifecycles: HashMap<String, crate::probe::ContainerLifecycle>,
    /// Woken when a probe result changes, so that the status follows at once.
    probes_changed: Arc<tokio::sync::Notify>,
}

impl PodWorker {
    /// A worker for pod `uid`; containers already on disk (an agent restart) are adopted.
    pub fn new(shared: Arc<Shared>, uid: &str) -> Self {
        let dir = shared.pods_dir.join(uid);
        let mut tracked: HashMap<String, Tracked> = HashMap::new();
        for id in shared.runtime.list().unwrap_or_default() {
            if let Some((pod, name, attempt)) = parse_container_id(&id)
                && pod == uid
            {
                let entry = tracked.entry(name.to_owned()).or_default();
                entry.attempt = Some(entry.attempt.map_or(attempt, |a| a.max(attempt)));
            }
        }
        PodWorker {
            shared,
            uid: uid.to_owned(),
            dir,
            tracked,
            start_time: jiff::Timestamp::now(),
            last_status: None,
            sandbox_ready: false,
            pod_ip: None,
            volumes_refreshed: None,
            volumes: None,
            lifecycles: HashMap::new(),
            probes_changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Runs until the pod is gone. `pod` carries the latest spec; `None` means the pod no longer
    /// exists in the API (deleted while we were away, or force-deleted).
    pub async fn run(mut self, mut pod: watch::Receiver<Option<Pod>>) {
        if let Some(Some(p)) = Some(pod.borrow().clone())
            && let Some(start) = p.status.as_ref().and_then(|s| s.start_time.as_ref())
        {
            self.start_time = start.0;
        }
        let probes_changed = Arc::clone(&self.probes_changed);
        loop {
            let current = pod.borrow_and_update().clone();
            match current {
                None => {
                    self.terminate(None, Duration::from_secs(2)).await;
                    self.cleanup().await;
                    return;
                }
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    let grace = p
                        .metadata
                        .deletion_grace_period_seconds
                        .unwrap_or(30)
                        .max(0) as u64;
                    self.terminate(Some(&p), Duration::from_secs(grace)).await;
                    self.report(&p).await;
                    self.cleanup().await;
                    self.delete_for_good(&p).await;
                    return;
                }
                Some(p) => {
                    self.sync(&p).await;
                    self.report(&p).await;
                }
            }
            tokio::select! {
                changed = pod.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(POLL) => {}
                () = probes_changed.notified() => {}
            }
        }
    }

    fn spec_containers(pod: &Pod) -> (Vec<Container>, Vec<Container>) {
        let spec = pod.spec.clone().unwrap_or_default();
        (spec.init_containers.unwrap_or_default(), spec.containers)
    }

    fn state_of(&self, name: &str) -> Option<(String, ContainerState)> {
        let attempt = self.tracked.get(name)?.attempt?;
        let id = container_id(&self.uid, name, attempt);
        self.shared.runtime.state(&id).ok().map(|s| (id, s))
    }

    /// One pass of kubelet's syncPod.
    async fn sync(&mut self, pod: &Pod) {
        self.sync_lifecycles(pod);
        let phase = self
            .last_status
            .as_ref()
            .and_then(|s| s["phase"].as_str())
            .unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            return; // a finished pod keeps its containers (for logs) and never starts again
        }
        if !self.sandbox_ready {
            match self.prepare_sandbox(pod).await {
                Ok(()) => self.sandbox_ready = true,
                Err((reason, message)) => {
                    self.shared
                        .events
                        .record(pod, None, EventType::Warning, reason, message)
                        .await;
                    return;
                }
            }
        }
        self.refresh_volumes(pod).await;
        let (init, containers) = Self::spec_containers(pod);
        let policy = crate::status::restart_policy(pod).to_owned();
        for container in &init {
            match self.state_of(&container.name) {
                Some((_, ContainerState::Exited { exit, .. })) if exit.exit_code == 0 => continue,
                Some((_, ContainerState::Running(_) | ContainerState::Creating)) => return,
                Some(_) if policy == "Never" => return, // the pod has failed
                _ => {
                    self.start_or_back_off(pod, container, true).await;
                    return;
                }
            }
        }
        for container in &containers {
            let restart = match self.state_of(&container.name) {
                None => true,
                Some((_, ContainerState::Running(_) | ContainerState::Creating)) => false,
                Some((_, ContainerState::Exited { exit, .. })) => match policy.as_str() {
                    "Always" => true,
                    "OnFailure" => exit.exit_code != 0,
                    _ => false,
                },
                Some((_, ContainerState::Lost { .. })) => policy != "Never",
            };
            if restart {
                if self.post_start_pending() {
                    return; // kubelet starts the next container once the last one's postStart ran
                }
                self.start_or_back_off(pod, container, false).await;
            }
        }
    }

    /// Rewrites configMap, secret, downward API and projected volumes now and then, so that
    /// running containers see changed objects (kubelet does it on its periodic sync; the files
    /// are swapped atomically).
    async fn refresh_volumes(&mut self, pod: &Pod) {
        let due = self
            .volumes_refreshed
            .is_none_or(|at| at.elapsed() >= VOLUME_REFRESH);
        if !due
            || pod
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_none_or(|v| v.is_empty())
        {
            return;
        }
        self.volumes_refreshed = Some(tokio::time::Instant::now());
        let source = crate::api_source::ApiSource::new(self.shared.client.clone());
        match crate::volumes::PodVolumes::prepare(pod, &self.dir, &self.facts(), &source).await {
            Ok(volumes) => self.volumes = Some(volumes),
            Err(e) => {
                self.volumes = None;
                self.shared
                    .events
                    .record(pod, None, EventType::Warning, "FailedMount", e.to_string())
                    .await;
            }
        }
    }

    /// Starts the next attempt of a container unless its back-off has not passed yet.
    async fn start_or_back_off(&mut self, pod: &Pod, container: &Container, init: bool) {
        let name = container.name.clone();
        let previous = self.state_of(&name);
        let now = tokio::time::Instant::now();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let tracked = self.tracked.entry(name.clone()).or_default();
        if let Some((_, ContainerState::Exited { started, exit })) = &previous
            && tracked.retry_at.is_none()
        {
            // A container that ran long enough forgets its back-off, as kubelet's does.
            let ran = started
                .as_ref()
                .map(|s| exit.finished_at.duration_since(s.started_at).unsigned_abs());
            if ran.is_some_and(|r| r >= BACKOFF_RESET) {
                tracked.backoff = Duration::ZERO;
            }
            if tracked.backoff.is_zero() {
                // The first restart is immediate; the next waits 10 s, then 20 s, ...
                tracked.backoff = BACKOFF_INITIAL;
                tracked.retry_at = Some(now);
            } else {
                let wait = tracked.backoff;
                tracked.retry_at = Some(now + wait);
                tracked.backoff = (wait * 2).min(BACKOFF_MAX);
                tracked.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {}s restarting failed container={name} pod={pod_name}_{namespace}({})",
                        wait.as_secs(),
                        self.uid
                    ),
                ));
                self.shared
                    .events
                    .record(
                        pod,
                        container_field_path(init, &name),
                        EventType::Warning,
                        "BackOff",
                        format!("Back-off restarting failed container {name} in pod {pod_name}_{namespace}({})", self.uid),
                    )
                    .await;
                return;
            }
        }
        let tracked = self.tracked.entry(name.clone()).or_default();
        if tracked.retry_at.is_some_and(|at| at > now) {
            // A failed pull waits as ImagePullBackOff, as kubelet shows it.
            if let Some((reason, _)) = &mut tracked.waiting
                && reason == "ErrImagePull"
            {
                *reason = "ImagePullBackOff".into();
                tracked.waiting = Some((
                    "ImagePullBackOff".into(),
                    format!(
                        "Back-off pulling image \"{}\"",
                        container.image.clone().unwrap_or_default()
                    ),
                ));
            }
            return;
        }
        let attempt = match previous {
            Some(_) => self
                .tracked
                .get(&name)
                .and_then(|t| t.attempt)
                .map_or(0, |a| a + 1),
            None => self.tracked.get(&name).and_then(|t| t.attempt).unwrap_or(0),
        };
        // Keep the attempt before (for `kubectl logs --previous`), remove older ones.
        if attempt >= 2 {
            let old = container_id(&self.uid, &name, attempt - 2);
            let _ = self.shared.runtime.remove(&old, &self.uid).await;
        }
        let result = self.start(pod, container, init, attempt).await;
        let tracked = self.tracked.entry(name.clone()).or_default();
        tracked.retry_at = None;
        match result {
            Ok(image_id) => {
                tracked.attempt = Some(attempt);
                tracked.waiting = None;
                tracked.image_id = image_id;
                self.lifecycle_started(pod, container, init, attempt);
            }
            Err((reason, message)) => {
                // kubelet's event names the reason; the message is in the waiting state.
                let event = format!("Error: {reason}");
                tracked.waiting = Some((reason, message));
                tracked.retry_at = Some(tokio::time::Instant::now() + BACKOFF_INITIAL);
                self.shared
                    .events
                    .record(
                        pod,
                        container_field_path(init, &name),
                        EventType::Warning,
                        "Failed",
                        event,
                    )
                    .await;
            }
        }
    }

    /// Starts one container attempt: image, environment, mounts, then the runtime. Errors are
    /// (waiting reason, message) in kubelet's words.
    async fn start(
        &self,
        pod: &Pod,
        container: &Container,
        init: bool,
        attempt: u32,
    ) -> Result<String, (String, String)> {
        let field_path = container_field_path(init, &container.name);
        let image = self.ensure_image(pod, container, &field_path).await?;
        let image_config = self
            .shared
            .images
            .config(&image)
            .map_err(|e| ("CreateContainerError".into(), e.to_string()))?;
        let layers = {
            let images = &self.shared.images;
            let image = image.clone();
            tokio::task::block_in_place(|| images.layer_dirs(&image))
                .map_err(|e| ("CreateContainerError".into(), e.to_string()))?
        };
        let source = crate::api_source::ApiSource::new(self.shared.client.clone());
        let env = crate::env::container_env(pod, container, &self.facts(), &source)
            .await
            .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?;
        let env = crate::container_spec::merge_env(&image_config.env, env);
        let args = crate::container_spec::argv(container, &image_config, &env);
        if args.is_empty() {
            return Err(("CreateContainerError".into(), "no command specified".into()));
        }
        let security = crate::container_spec::security(pod, container, &image_config, &layers)
            .map_err(|e| ("CreateContainerConfigError".to_string(), e))?;
        // Volumes were prepared by this pass's refresh; a pod without any (or whose refresh
        // failed) prepares them here, and a failure holds the container.
        let volumes = match &self.volumes {
            Some(volumes) => volumes.clone(),
            None => crate::volumes::PodVolumes::prepare(pod, &self.dir, &self.facts(), &source)
                .await
                .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?,
        };
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let id = container_id(&self.uid, &container.name, attempt);
        let termination_log = self.dir.join("termination").join(&id);
        std::fs::create_dir_all(self.dir.join("termination"))
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        std::fs::write(&termination_log, b"")
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        let mut mounts = crate::container_spec::managed_files(
            &self.dir,
            container,
            &termination_log,
            host_network,
        );
        mounts.extend(
            volumes
                .container_mounts(container)
                .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?,
        );
        let namespaces =
            capstan_runtime::sandbox::create(&self.dir, &pod_hostname(pod), host_network)
                .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        // shareProcessNamespace: the containers join the namespace of the pod's pause process.
        let share_pid = pod
            .spec
            .as_ref()
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false);
        let pid_namespace = if share_pid {
            let pause = capstan_runtime::pause::ensure(&self.dir, &self.shared.shim);
            Some(pause.map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?)
        } else {
            None
        };
        let config = ContainerConfig {
            id: id.clone(),
            pod_uid: self.uid.clone(),
            layers,
            args,
            env,
            working_dir: container
                .working_dir
                .clone()
                .or(image_config.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: security.user,
            mounts,
            namespaces,
            pid_namespace,
            readonly_rootfs: security.readonly_rootfs,
            privileged: security.privileged,
            capabilities_add: security.add,
            capabilities_drop: security.drop,
            no_new_privileges: security.no_new_privileges,
            seccomp: security.seccomp,
            resources: crate::container_spec::resources(container),
            oom_score_adj: oom_score_adj(pod),
            log_path: self
                .dir
                .join("logs")
                .join(&container.name)
                .join(format!("{attempt}.log")),
            log_max_bytes: LOG_MAX_BYTES,
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
        };
        self.shared
            .events
            .record(
                pod,
                field_path.clone(),
                EventType::Normal,
                "Created",
                format!("Created container: {}", container.name),
            )
            .await;
        match self.shared.runtime.start(&config).await {
            Ok(_) => {
                self.shared
                    .events
                    .record(
                        pod,
                        field_path,
                        EventType::Normal,
                        "Started",
                        format!("Started container {}", container.name),
                    )
                    .await;
                Ok(image.config_digest.clone())
            }
            Err(e) => {
                // A failed start leaves its directory for diagnosis until the next attempt.
                let _ = self.shared.runtime.remove(&id, &self.uid).await;
                Err(("RunContainerError".into(), e.to_string()))
            }
        }
    }

    /// Finds the image in the store, as `imagePullPolicy` allows. Pulls come from the
    /// registry client; an image the store lacks is ErrImagePull until then.
    async fn ensure_image(
        &self,
        pod: &Pod,
        container: &Container,
        field_path: &Option<String>,
    ) -> Result<capstan_runtime::image::ImageRecord, (String, String)> {
        let name = container.image.clone().unwrap_or_default();
        let found = self
            .shared
            .images
            .resolve(&name)
            .map_err(|e| ("InvalidImageName".to_string(), e.to_string()))?;
        let policy = container
            .image_pull_policy
            .as_deref()
            .unwrap_or("IfNotPresent");
        match (found, policy) {
            (Some(image), "IfNotPresent" | "Never") => {
                self.shared
                    .events
                    .record(
                        pod,
                        field_path.clone(),
                        EventType::Normal,
                        "Pulled",
                        format!("Container image \"{name}\" already present on machine"),
                    )
                    .await;
                Ok(image)
            }
            (None, "Never") => Err((
                "ErrImageNeverPull".into(),
                format!("Container image \"{name}\" is not present with pull policy of Never"),
            )),
            (_, _) => {
                self.shared
                    .events
                    .record(
                        pod,
                        field_path.clone(),
                        EventType::Normal,
                        "Pulling",
                        format!("Pulling image \"{name}\""),
                    )
                    .await;
                crate::pull::pull(&self.shared, pod, field_path, &name)
                    .await
                    .map_err(|message| ("ErrImagePull".to_string(), message))
            }
        }
    }

    /// Makes the pod's namespaces, puts them on the pod network, and writes the files the
    /// containers get (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`). A failure is the
    /// (reason, message) of the pod's warning event.
    async fn prepare_sandbox(&mut self, pod: &Pod) -> Result<(), (&'static str, String)> {
        let mount = |e: std::io::Error| ("FailedMount", e.to_string());
        std::fs::create_dir_all(&self.dir).map_err(mount)?;
        let hostname = pod_hostname(pod);
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let sandbox_failed = |e: String| {
            (
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {e}"),
            )
        };
        let started = std::time::Instant::now();
        let namespaces = capstan_runtime::sandbox::create(&self.dir, &hostname, host_network)
            .map_err(|e| sandbox_failed(e.to_string()))?;
        let namespaces_made = started.elapsed();
        let ip = match (&namespaces.network, &self.shared.pod_network) {
            (None, _) => Some(self.shared.host_ip.clone()),
            (Some(_), None) => None,
            (Some(netns), Some(network)) => {
                let network = network.get().ok_or_else(|| {
                    sandbox_failed("network is not ready: the node has no pod CIDR yet".to_string())
                })?;
                let ip = network
                    .attach(&self.uid, netns)
                    .await
                    .map_err(|e| sandbox_failed(format!("setting up the pod network: {e}")))?;
                Some(ip.to_string())
            }
        };
        tracing::debug!(
            "sandbox of pod {}: namespaces in {namespaces_made:?}, network in {:?}",
            self.uid,
            started.elapsed() - namespaces_made
        );
        let mut hosts = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        if let Some(ip) = &ip {
            hosts.push_str(&format!("{ip}\t{hostname}\n"));
        }
        std::fs::write(self.dir.join("etc-hosts"), hosts).map_err(mount)?;
        std::fs::write(self.dir.join("hostname"), format!("{hostname}\n")).map_err(mount)?;
        let host_resolv = self
            .shared
            .resolv_conf
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        let resolv =
            crate::resolv::pod_resolv_conf(pod, &host_resolv, self.shared.cluster_dns.as_ref());
        std::fs::write(self.dir.join("resolv.conf"), resolv).map_err(mount)?;
        self.pod_ip = ip;
        Ok(())
    }

    /// What the downward API tells of the node, with this pod's own address.
    fn facts(&self) -> crate::env::NodeFacts {
        crate::env::NodeFacts {
            pod_ips: self.pod_ip.iter().cloned().collect(),
            ..self.shared.node.clone()
        }
    }

    /// Builds the views the status is computed from.
    fn views(&self, containers: &[Container]) -> Vec<ContainerView> {
        containers
            .iter()
            .map(|c| {
                let tracked = self.tracked.get(&c.name);
                let attempt = tracked.and_then(|t| t.attempt);
                let current = self.state_of(&c.name);
                let previous = attempt.filter(|a| *a > 0).and_then(|a| {
                    let id = container_id(&self.uid, &c.name, a - 1);
                    self.shared.runtime.state(&id).ok().map(|s| (id, s))
                });
                let running = matches!(current, Some((_, ContainerState::Running(_))));
                let current_id = current.as_ref().map(|(id, _)| id.as_str());
                let probed = self.probe_view(c, current_id, running);
                // During its postStart hook a container still counts as being created.
                let (current, waiting) = if probed.creating {
                    (None, Some(("ContainerCreating".to_string(), String::new())))
                } else {
                    let waiting = tracked.and_then(|t| t.waiting.clone()).filter(|_| !running);
                    (current, waiting)
                };
                let termination_message = current.as_ref().and_then(|(id, _)| {
                    std::fs::read_to_string(self.dir.join("termination").join(id))
                        .ok()
                        .map(|m| m.chars().take(4096).collect())
                });
                ContainerView {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    image_id: tracked.map(|t| t.image_id.clone()).unwrap_or_default(),
                    restart_count: attempt.unwrap_or(0),
                    waiting,
                    ready: probed.ready,
                    started: probed.started,
                    current,
                    previous,
                    termination_message,
                }
            })
            .collect()
    }

    /// Writes the pod status when it changed.
    async fn report(&mut self, pod: &Pod) {
        let (init, containers) = Self::spec_containers(pod);
        let mut init_views = self.views(&init);
        let mut views = self.views(&containers);
        let initialized = init_views.iter().all(ContainerView::succeeded);
        for view in views
            .iter_mut()
            .filter(|v| v.current.is_none() && v.waiting.is_none())
        {
            if !initialized {
                view.waiting = Some(("PodInitializing".into(), String::new()));
            }
        }
        for view in init_views
            .iter_mut()
            .filter(|v| v.current.is_none() && v.waiting.is_none())
        {
            view.waiting = Some(("PodInitializing".into(), String::new()));
        }
        let facts = PodFacts {
            host_ip: &self.shared.host_ip,
            pod_ip: self.pod_ip.as_deref(),
            start_time: self.start_time,
            sandbox_ready: self.sandbox_ready,
        };
        let status =
            crate::status::pod_status(pod, &facts, &init_views, &views, self.last_status.as_ref());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        match pods
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => tracing::debug!("updating the status of pod {name}: {e}"),
        }
    }

    /// Stops every running container of the pod, in parallel, within `grace`.
    async fn terminate(&mut self, pod: Option<&Pod>, grace: Duration) {
        // Probes end first: a container being stopped is not probed (or killed) any more.
        self.lifecycles.clear();
        let running: Vec<(String, String)> = self
            .tracked
            .iter()
            .filter_map(|(name, t)| {
                t.attempt
                    .map(|a| (name.clone(), container_id(&self.uid, name, a)))
            })
            .filter(|(_, id)| {
                matches!(
                    self.shared.runtime.state(id),
                    Ok(ContainerState::Running(_) | ContainerState::Creating)
                )
            })
            .collect();
        let mut stops = Vec::new();
        for (name, id) in running {
            if let Some(pod) = pod {
                self.shared
                    .events
                    .record(
                        pod,
                        container_field_path(false, &name),
                        EventType::Normal,
                        "Killing",
                        format!("Stopping container {name}"),
                    )
                    .await;
            }
            stops.push(tokio::spawn(self.stop_with_pre_stop(pod, id, grace)));
        }
        for stop in stops {
            let _ = stop.await;
        }
    }

    /// Removes everything the pod left on the node: containers (rootfs mounts, cgroups),
    /// volumes, namespaces, files.
    async fn cleanup(&self) {
        for id in self.shared.runtime.list().unwrap_or_default() {
            if parse_container_id(&id).is_some_and(|(uid, _, _)| uid == self.uid)
                && let Err(e) = self.shared.runtime.remove(&id, &self.uid).await
            {
                tracing::warn!("removing container {id}: {e}");
            }
        }
        if let Err(e) = crate::volumes::cleanup(&self.dir) {
            tracing::warn!("removing the volumes of pod {}: {e}", self.uid);
        }
        capstan_runtime::pause::remove(&self.dir);
        if let Some(network) = self.shared.pod_network.as_ref().and_then(|n| n.get()) {
            network.detach(&self.uid).await;
        }
        if let Err(e) = capstan_runtime::sandbox::remove(&self.dir) {
            tracing::warn!("removing the namespaces of pod {}: {e}", self.uid);
        }
        let _ = capstan_runtime::cgroups::remove(&format!("/capstan/pod{}", self.uid));
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Deletes the pod object now that nothing of it runs (kubelet's final delete, grace 0,
    /// guarded by the UID so that a new pod of the same name is never touched).
    async fn delete_for_good(&self, pod: &Pod) {
        let pods: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = pods.delete(&name, &params).await {
            tracing::debug!("deleting pod {name}: {e}");
        }
    }
}

/// What the hooks and probes of a container say about it, for its status.
struct ProbedView {
    ready: bool,
    started: bool,
    /// Its postStart hook still runs.
    creating: bool,
}

// Hooks and probes (see [`crate::probe`]): each running container with a postStart hook or a
// probe has a lifecycle task; the worker starts it, drops it when the container is replaced,
// reads its results into the status, and runs preStop hooks when it stops containers.
impl PodWorker {
    /// A container attempt just started: its lifecycle begins with its postStart hook.
    fn lifecycle_started(&mut self, pod: &Pod, container: &Container, init: bool, attempt: u32) {
        let id = container_id(&self.uid, &container.name, attempt);
        let started_at = match self.shared.runtime.state(&id) {
            Ok(ContainerState::Running(started)) => started.started_at,
            _ => jiff::Timestamp::now(),
        };
        self.start_lifecycle(pod, container, init, &id, started_at, true);
    }

    fn start_lifecycle(
        &mut self,
        pod: &Pod,
        container: &Container,
        init: bool,
        id: &str,
        started_at: jiff::Timestamp,
        post_start: bool,
    ) {
        match crate::probe::ContainerLifecycle::start(
            &self.shared,
            pod,
            container,
            init,
            id,
            started_at,
            post_start,
            Arc::clone(&self.probes_changed),
        ) {
            Some(lifecycle) => self.lifecycles.insert(container.name.clone(), lifecycle),
            None => self.lifecycles.remove(&container.name),
        };
    }

    /// Drops the lifecycles of containers that are no longer the running attempt, and starts
    /// one for running containers that lack it (adopted after an agent restart: their
    /// postStart hook ran then).
    fn sync_lifecycles(&mut self, pod: &Pod) {
        let stale: Vec<String> = self
            .lifecycles
            .iter()
            .filter(|(name, lifecycle)| {
                !matches!(
                    self.state_of(name),
                    Some((id, ContainerState::Running(_) | ContainerState::Creating))
                        if id == lifecycle.id()
                )
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.lifecycles.remove(&name);
        }
        let (init, containers) = Self::spec_containers(pod);
        let all = init
            .iter()
            .map(|c| (c, true))
            .chain(containers.iter().map(|c| (c, false)));
        for (container, init) in all {
            if self.lifecycles.contains_key(&container.name) {
                continue;
            }
            if let Some((id, ContainerState::Running(started))) = self.state_of(&container.name) {
                self.start_lifecycle(pod, container, init, &id, started.started_at, false);
            }
        }
    }

    /// Whether a container's postStart hook still runs.
    fn post_start_pending(&self) -> bool {
        self.lifecycles
            .values()
            .any(|lifecycle| !lifecycle.results().post_started)
    }

    /// Readiness and `started` of container `c`, whose current attempt is `current`.
    fn probe_view(&self, c: &Container, current: Option<&str>, running: bool) -> ProbedView {
        let lifecycle = self
            .lifecycles
            .get(&c.name)
            .filter(|lifecycle| Some(lifecycle.id()) == current);
        match lifecycle {
            Some(lifecycle) => {
                let results = lifecycle.results();
                let started = running && results.post_started && results.started;
                ProbedView {
                    ready: started && results.ready,
                    started,
                    creating: running && !results.post_started,
                }
            }
            // No lifecycle: nothing to probe (or not adopted yet, which waits for probes).
            None => {
                let started = running && c.startup_probe.is_none();
                ProbedView {
                    ready: started && c.readiness_probe.is_none(),
                    started,
                    creating: false,
                }
            }
        }
    }

    /// Stops container `id`: its preStop hook first (when the pod, and so its spec, is
    /// known), then SIGTERM with what remains of `grace`, then SIGKILL.
    fn stop_with_pre_stop(
        &self,
        pod: Option<&Pod>,
        id: String,
        grace: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let runtime = self.shared.runtime.clone();
        let hooked = pod.and_then(|pod| {
            let (_, name, _) = parse_container_id(&id)?;
            let (init, containers) = Self::spec_containers(pod);
            let in_init = init.iter().any(|c| c.name == name);
            let container = init
                .into_iter()
                .chain(containers)
                .find(|c| c.name == name)?;
            let plan =
                crate::probe::LifecyclePlan::new(pod, &container, in_init, &self.shared.host_ip);
            plan.pre_stop.as_ref()?;
            let access = crate::probe::RuntimeAccess::new(&self.shared, pod, &id);
            let notices = crate::probe::record_notices(
                &self.shared,
                pod,
                container_field_path(in_init, name),
            );
            Some((plan, access, notices))
        });
        async move {
            match hooked {
                Some((plan, access, notices)) => {
                    crate::probe::stop_container(
                        &access,
                        plan.pre_stop.as_ref(),
                        &plan.subject,
                        grace,
                        &notices,
                    )
                    .await;
                }
                None => {
                    if let Err(e) = runtime.stop(&id, grace).await {
                        tracing::warn!("stopping container {id}: {e}");
                    }
                }
            }
        }
    }
}

/// The pod's hostname: `spec.hostname` or its name, as kubelet sets it.
fn pod_hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect()
}

/// kubelet's OOM score adjustment by QoS class: Guaranteed pods are killed last.
fn oom_score_adj(pod: &Pod) -> i32 {
    match crate::status::qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_round_trip() {
        let uid = "0b2c8f7e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
        let id = container_id(uid, "web-server", 12);
        assert_eq!(parse_container_id(&id), Some((uid, "web-server", 12)));
        assert_eq!(parse_container_id("short"), None);
    }
}
