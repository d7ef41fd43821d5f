//! scale-bench: the control plane at Kubernetes' scale limits, with hollow nodes (kubemark's
//! density test).
//!
//! It starts a real `capstan server` (redb store, scheduler and controllers, no agent of its
//! own) and `capstan sim` with N hollow nodes, both release builds on this machine; waits for
//! the nodes to be Ready; creates Deployments totalling P pods, and waits until a watch has
//! seen every pod Running and Ready. Then, with the cluster full, it deletes every tenth pod
//! and waits until the ReplicaSets have replaced them all, and checks that nothing was lost
//! or doubled and that its watch agrees with the store.
//!
//! Figures: scheduling throughput (pods bound per second from the first create), pod startup
//! latency (created → Running and Ready, both as the watch saw them), the API server's own
//! request latency per verb (its `apiserver_request_duration_seconds`, as Kubernetes' SLO
//! reads it), the server's RSS and CPU, and the store's size on disk.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use capstan_bench::{Api, Server, round, rss_mib};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde::Deserialize;
use serde_json::{Value, json};

const NAMESPACE: &str = "scale";

#[derive(Parser)]
#[command(about = "Hollow nodes and pods at scale against a real capstan server")]
struct Args {
    /// Hollow nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pods in all (default: 30 per node, Kubernetes' density).
    #[arg(long)]
    pods: Option<usize>,
    /// Replicas of each Deployment.
    #[arg(long, default_value_t = 100)]
    replicas: usize,
    /// The share of pods deleted and recreated once the cluster is full.
    #[arg(long, default_value_t = 0.1)]
    churn: f64,
    /// Deployments created at once, and pod deletes in flight during churn.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds the whole fill may take before the benchmark gives up.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// The capstan binary.
    #[arg(long, default_value = "target/release/capstan")]
    capstan: PathBuf,
    /// Write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// `capstan sim`, stopped when dropped.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let pods = args.pods.unwrap_or(30 * args.nodes);
    let replicas = args.replicas.min(pods).max(1);
    let deployments = pods.div_ceil(replicas);
    let started = Instant::now();
    eprintln!(
        "scale-bench: {} nodes, {pods} pods ({deployments} Deployments)",
        args.nodes
    );

    // Node ranges for 5,000 nodes: a /10 cut into /24s.
    let server = Server::start(
        &args.capstan,
        &["--disable-agent", "--cluster-cidr", "10.64.0.0/10"],
    )?;
    let api = Arc::new(Api::new(&server.dir.path().join("tls"), server.port, 4)?);
    let sampler = Sampler::start(server.child.id());
    let sim_log = std::fs::File::create(server.dir.path().join("sim.log"))?;
    let sim = Sim(Command::new(&args.capstan)
        .args(["sim", "--nodes", &args.nodes.to_string(), "--kubeconfig"])
        .arg(server.dir.path().join("kubeconfig"))
        .env("CAPSTAN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(sim_log)
        .spawn()
        .context("starting capstan sim")?);
    sampler.watch_also(sim.0.id());

    // 1. Nodes.
    let registering = Instant::now();
    wait_nodes_ready(&api, args.nodes, Duration::from_secs(300)).await?;
    let nodes_ready_s = registering.elapsed().as_secs_f64();
    eprintln!("  {} nodes Ready in {nodes_ready_s:.1} s", args.nodes);
    api.expect(
        Method::POST,
        "/api/v1/namespaces",
        "application/json",
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE}}))?,
        201,
    )
    .await?;

    // The pods, as one watch sees them.
    let watch_api = Arc::new(Api::new(&server.dir.path().join("tls"), server.port, 1)?);
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let list = api
        .expect(
            Method::GET,
            &format!("/api/v1/namespaces/{NAMESPACE}/pods?limit=1"),
            "application/json",
            Vec::new(),
            200,
        )
        .await?;
    let from: Value = serde_json::from_slice(&list)?;
    let from = from["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let watch = tokio::spawn(watch_pods(watch_api, tracker.clone(), from));

    // 2. Fill.
    eprintln!("  filling");
    let metrics_before = scrape(&api).await?;
    let fill_sample = sampler.mark();
    let fill_start = Instant::now();
    create_deployments(&api, deployments, replicas, pods, args.concurrency).await?;
    let created_s = fill_start.elapsed().as_secs_f64();
    wait_until(
        &tracker,
        Duration::from_secs(args.timeout),
        |t| t.ready_count() >= pods,
        |t| format!("{} of {pods} pods Running and Ready", t.ready_count()),
    )
    .await?;
    let fill_s = fill_start.elapsed().as_secs_f64();
    let fill_usage = sampler.since(fill_sample);
    let fill_api = latency_report(&metrics_before, &scrape(&api).await?);
    let fill = {
        let t = tracker.lock().expect("not poisoned");
        t.fill_report(fill_start, pods)
    };
    eprintln!(
        "  full in {fill_s:.1} s; scheduling {} pods/s; startup p99 {} s",
        fill["scheduling_pods_per_second"], fill["startup_seconds"]["p99"]
    );

    // 3. Full and steady: only heartbeats.
    let steady_sample = sampler.mark();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let steady_usage = sampler.since(steady_sample);

    // 4. Churn.
    eprintln!("  churn");
    let metrics_before = scrape(&api).await?;
    let churn_sample = sampler.mark();
    let churn_start = Instant::now();
    let victims = {
        let mut t = tracker.lock().expect("not poisoned");
        let mut names: Vec<String> = t.pods.keys().cloned().collect();
        names.sort();
        let every = (1.0 / args.churn.clamp(0.001, 1.0)).round() as usize;
        let victims: Vec<String> = names.into_iter().step_by(every.max(1)).collect();
        t.churn_from = Some(churn_start);
        victims
    };
    delete_pods(&api, &victims, args.concurrency).await?;
    let victim_count = victims.len();
    wait_until(
        &tracker,
        Duration::from_secs(args.timeout),
        |t| t.ready_count() >= pods && t.deleted_after_churn >= victim_count,
        |t| {
            format!(
                "{} of {pods} pods Running and Ready, {} of {victim_count} deleted",
                t.ready_count(),
                t.deleted_after_churn
            )
        },
    )
    .await?;
    let churn_s = churn_start.elapsed().as_secs_f64();
    let churn_usage = sampler.since(churn_sample);
    let churn_api = latency_report(&metrics_before, &scrape(&api).await?);
    let churn_startup = {
        let t = tracker.lock().expect("not poisoned");
        t.startup_seconds(|p| p.created >= churn_start)
    };

    // 5. Nothing lost, nothing doubled, and the watch agrees with the store.
    let check = check_pods(&api, &tracker, pods, deployments, replicas).await?;
    let store_bytes = std::fs::metadata(server.dir.path().join("store.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let report = json!({
        "nodes": args.nodes,
        "pods": pods,
        "deployments": deployments,
        "replicas_per_deployment": replicas,
        "nodes_ready_seconds": round(nodes_ready_s),
        "fill": {
            "seconds": round(fill_s),
            "deployments_created_seconds": round(created_s),
            "pods": fill,
            "api": fill_api,
            "server": fill_usage.server,
            "sim": fill_usage.sim,
        },
        "steady": {"server": steady_usage.server, "sim": steady_usage.sim},
        "churn": {
            "deleted": victim_count,
            "seconds": round(churn_s),
            "startup_seconds": churn_startup,
            "api": churn_api,
            "server": churn_usage.server,
        },
        "check": check,
        "server_rss_mib_peak": round(sampler.peak_server_mib()),
        "store_mib": round(store_bytes as f64 / (1 << 20) as f64),
        "total_seconds": round(started.elapsed().as_secs_f64()),
    });
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        eprintln!("wrote {}", path.display());
    }
    // The watch would retry against a server that is gone.
    watch.abort();
    drop(sim);
    drop(server);
    if report["check"]["ok"] != true {
        bail!("the pods do not add up: {}", report["check"]);
    }
    Ok(())
}

async fn wait_nodes_ready(api: &Api, nodes: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let body = api
            .expect(
                Method::GET,
                "/api/v1/nodes",
                "application/json",
                Vec::new(),
                200,
            )
            .await?;
        let list: Value = serde_json::from_slice(&body)?;
        let ready = list["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        });
        if ready >= nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {nodes} nodes Ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn deployment(index: usize, replicas: usize) -> Value {
    let name = format!("scale-{index}");
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}},
                }]},
            },
        },
    })
}

/// Creates the Deployments, `concurrency` at once; the last one takes what is left.
async fn create_deployments(
    api: &Arc<Api>,
    deployments: usize,
    replicas: usize,
    pods: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let path = format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments");
    let bodies: Vec<Vec<u8>> = (0..deployments)
        .map(|i| {
            let count = replicas.min(pods - i * replicas);
            serde_json::to_vec(&deployment(i, count)).expect("JSON")
        })
        .collect();
    for_each_concurrently(bodies, concurrency, |body| {
        let api = api.clone();
        let path = path.clone();
        async move {
            api.expect(Method::POST, &path, "application/json", body, 201)
                .await
                .map(|_| ())
        }
    })
    .await
}

async fn delete_pods(api: &Arc<Api>, names: &[String], concurrency: usize) -> anyhow::Result<()> {
    for_each_concurrently(names.to_vec(), concurrency, |name| {
        let api = api.clone();
        async move {
            let (status, body) = api
                .send(
                    Method::DELETE,
                    &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}"),
                    "application/json",
                    Vec::new(),
                )
                .await?;
            if status != 200 && status != 404 {
                bail!(
                    "deleting pod {name}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        }
    })
    .await
}

async fn for_each_concurrently<T, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    work: F,
) -> anyhow::Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    for item in items {
        if running.len() >= concurrency.max(1) {
            running.join_next().await.expect("not empty")??;
        }
        running.spawn(work(item));
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

/// The fields of a watch event the benchmark reads; the rest is skipped.
#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: WatchedPod,
}

#[derive(Deserialize)]
struct WatchedPod {
    metadata: Metadata,
    #[serde(default)]
    spec: Option<PodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    resource_version: String,
    #[serde(default)]
    deletion_timestamp: Option<String>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
struct OwnerReference {
    uid: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct PodStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    conditions: Vec<PodCondition>,
}

#[derive(Deserialize)]
struct PodCondition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

impl WatchedPod {
    fn running_and_ready(&self) -> bool {
        self.metadata.deletion_timestamp.is_none()
            && self.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Running")
                    && s.conditions
                        .iter()
                        .any(|c| c.kind == "Ready" && c.status == "True")
            })
    }

    fn scheduled(&self) -> bool {
        self.spec.as_ref().is_some_and(|s| s.node_name.is_some())
    }
}

/// One pod's life as the watch saw it.
struct Tracked {
    uid: String,
    resource_version: String,
    created: Instant,
    scheduled: Option<Instant>,
    running: Option<Instant>,
    ready: bool,
}

#[derive(Default)]
struct Tracker {
    /// Pods that exist, by name.
    pods: HashMap<String, Tracked>,
    events: u64,
    /// Watches that ended and were resumed from the last resourceVersion seen.
    resumed: u64,
    /// A resume the server refused (410 Gone): events were missed.
    missed: bool,
    churn_from: Option<Instant>,
    deleted_after_churn: usize,
}

impl Tracker {
    fn ready_count(&self) -> usize {
        self.pods.values().filter(|p| p.ready).count()
    }

    fn apply(&mut self, kind: &str, pod: WatchedPod, now: Instant) {
        self.events += 1;
        let name = pod.metadata.name.clone();
        if kind == "DELETED" {
            self.pods.remove(&name);
            if self.churn_from.is_some() {
                self.deleted_after_churn += 1;
            }
            return;
        }
        let ready = pod.running_and_ready();
        let scheduled = pod.scheduled();
        let entry = self.pods.entry(name).or_insert_with(|| Tracked {
            uid: pod.metadata.uid.clone(),
            resource_version: String::new(),
            created: now,
            scheduled: None,
            running: None,
            ready: false,
        });
        entry.resource_version = pod.metadata.resource_version;
        entry.ready = ready;
        if scheduled && entry.scheduled.is_none() {
            entry.scheduled = Some(now);
        }
        if ready && entry.running.is_none() {
            entry.running = Some(now);
        }
    }

    fn startup_seconds(&self, include: impl Fn(&Tracked) -> bool) -> Value {
        let latencies: Vec<f64> = self
            .pods
            .values()
            .filter(|p| include(p))
            .filter_map(|p| p.running.map(|r| (r - p.created).as_secs_f64()))
            .collect();
        percentiles(latencies)
    }

    fn fill_report(&self, start: Instant, pods: usize) -> Value {
        let last = |at: fn(&Tracked) -> Option<Instant>| {
            self.pods
                .values()
                .filter_map(at)
                .max()
                .map_or(0.0, |t| (t - start).as_secs_f64())
        };
        let last_scheduled = last(|p| p.scheduled);
        let last_running = last(|p| p.running);
        let scheduling: Vec<f64> = self
            .pods
            .values()
            .filter_map(|p| p.scheduled.map(|s| (s - p.created).as_secs_f64()))
            .collect();
        json!({
            "scheduling_pods_per_second": round(pods as f64 / last_scheduled),
            "running_pods_per_second": round(pods as f64 / last_running),
            "last_scheduled_seconds": round(last_scheduled),
            "last_running_seconds": round(last_running),
            "startup_seconds": self.startup_seconds(|_| true),
            "scheduling_seconds": percentiles(scheduling),
        })
    }
}

fn percentiles(mut values: Vec<f64>) -> Value {
    if values.is_empty() {
        return json!({"count": 0});
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let index = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
        (values[index] * 1000.0).round() / 1000.0
    };
    json!({"count": values.len(), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99),
        "max": at(1.0)})
}

/// Watches the namespace's pods from `from`, resuming from the last resourceVersion seen when
/// the stream ends, as a Kubernetes client does.
async fn watch_pods(api: Arc<Api>, tracker: Arc<Mutex<Tracker>>, mut from: String) {
    loop {
        match watch_once(&api, &tracker, &mut from).await {
            Ok(()) => {}
            Err(e) => {
                eprintln!("  watch: {e:#}");
                if e.to_string().contains("410") {
                    tracker.lock().expect("not poisoned").missed = true;
                    return;
                }
            }
        }
        tracker.lock().expect("not poisoned").resumed += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn watch_once(api: &Api, tracker: &Mutex<Tracker>, from: &mut String) -> anyhow::Result<()> {
    let request = Request::builder()
        .uri(format!(
            "{}/api/v1/namespaces/{NAMESPACE}/pods?watch=true&resourceVersion={from}&allowWatchBookmarks=true",
            api.base
        ))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))?;
    let response = api.client().request(request).await?;
    if response.status() != 200 {
        bail!("watch answered {}", response.status());
    }
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        buffer.extend_from_slice(&data);
        let mut consumed = 0;
        let mut t = tracker.lock().expect("not poisoned");
        while let Some(len) = buffer[consumed..].iter().position(|b| *b == b'\n') {
            let line = &buffer[consumed..consumed + len];
            consumed += len + 1;
            let event: WatchEvent = match serde_json::from_slice(line) {
                Ok(event) => event,
                Err(_) => {
                    // An ERROR event (a Status): 410 when the history is gone.
                    let status: Value = serde_json::from_slice(line).unwrap_or_default();
                    bail!("watch error {}", status["object"]);
                }
            };
            *from = event.object.metadata.resource_version.clone();
            match event.kind.as_str() {
                "BOOKMARK" => {}
                "ERROR" => bail!("watch error"),
                kind => t.apply(kind, event.object, now),
            }
        }
        drop(t);
        buffer.drain(..consumed);
    }
    Ok(())
}

async fn wait_until(
    tracker: &Mutex<Tracker>,
    limit: Duration,
    done: impl Fn(&Tracker) -> bool,
    progress: impl Fn(&Tracker) -> String,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        {
            let t = tracker.lock().expect("not poisoned");
            if t.missed {
                bail!("the watch missed events (410 Gone)");
            }
            if done(&t) {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("timed out after {limit:?}: {}", progress(&t));
            }
            if said.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "    {:.0} s: {}",
                    start.elapsed().as_secs_f64(),
                    progress(&t)
                );
                said = Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lists every pod (in pages, as kubectl does) and compares with the ReplicaSets and with
/// what the watch holds.
async fn check_pods(
    api: &Api,
    tracker: &Mutex<Tracker>,
    pods: usize,
    deployments: usize,
    replicas: usize,
) -> anyhow::Result<Value> {
    let mut listed: BTreeMap<String, (String, String, String, bool)> = BTreeMap::new();
    let mut duplicates = 0;
    let mut next = String::new();
    loop {
        let body = api
            .expect(
                Method::GET,
                &format!("/api/v1/namespaces/{NAMESPACE}/pods?limit=5000&continue={next}"),
                "application/json",
                Vec::new(),
                200,
            )
            .await?;
        #[derive(Deserialize)]
        struct Page {
            items: Vec<WatchedPod>,
            metadata: ListMeta,
        }
        #[derive(Deserialize)]
        struct ListMeta {
            #[serde(default, rename = "continue")]
            next: Option<String>,
        }
        let page: Page = serde_json::from_slice(&body)?;
        for pod in page.items {
            let ready = pod.running_and_ready();
            let owner = pod
                .metadata
                .owner_references
                .first()
                .map(|o| o.uid.clone())
                .unwrap_or_default();
            let entry = (
                pod.metadata.uid,
                pod.metadata.resource_version,
                owner,
                ready,
            );
            if listed.insert(pod.metadata.name, entry).is_some() {
                duplicates += 1;
            }
        }
        match page.metadata.next.filter(|n| !n.is_empty()) {
            Some(n) => next = n,
            None => break,
        }
    }
    let mut per_owner: HashMap<&str, usize> = HashMap::new();
    for (_, _, owner, _) in listed.values() {
        *per_owner.entry(owner.as_str()).or_default() += 1;
    }
    let owners_with_wrong_count = per_owner.values().filter(|n| **n != replicas).count()
        + deployments.saturating_sub(per_owner.len());
    let not_ready = listed.values().filter(|p| !p.3).count();
    let t = tracker.lock().expect("not poisoned");
    let watch_disagrees = listed
        .iter()
        .filter(|(name, (uid, rv, _, _))| {
            t.pods
                .get(*name)
                .is_none_or(|w| &w.uid != uid || &w.resource_version != rv)
        })
        .count()
        + t.pods.keys().filter(|n| !listed.contains_key(*n)).count();
    let ok = listed.len() == pods
        && duplicates == 0
        && not_ready == 0
        && watch_disagrees == 0
        && !t.missed;
    // The last ReplicaSet may hold fewer replicas when pods do not divide evenly.
    let ok = ok && (owners_with_wrong_count == 0 || !pods.is_multiple_of(replicas));
    Ok(json!({
        "ok": ok,
        "listed": listed.len(),
        "expected": pods,
        "duplicate_names": duplicates,
        "not_running_and_ready": not_ready,
        "replicasets_with_wrong_count": owners_with_wrong_count,
        "watch_pods": t.pods.len(),
        "watch_events": t.events,
        "watch_resumed": t.resumed,
        "watch_missed_events": t.missed,
        "watch_disagrees_with_list": watch_disagrees,
    }))
}

/// The server's request-duration histograms, summed over resources: verb → (le → count).
type Histograms = BTreeMap<String, BTreeMap<String, f64>>;

async fn scrape(api: &Api) -> anyhow::Result<Histograms> {
    let body = api
        .expect(Method::GET, "/metrics", "application/json", Vec::new(), 200)
        .await?;
    Ok(parse_histograms(&String::from_utf8_lossy(&body)))
}

fn parse_histograms(text: &str) -> Histograms {
    let mut out = Histograms::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_bucket{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.strip_prefix("=\""))
                    .map(|v| v.trim_end_matches('"').to_owned())
            })
        };
        let (Some(verb), Some(le)) = (label("verb"), label("le")) else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *out.entry(verb).or_default().entry(le).or_default() += value;
    }
    out
}

/// p50 and p99 per verb of the requests between two scrapes, interpolated inside the bucket
/// as Prometheus' `histogram_quantile` does; and the mutating verbs' worst p99.
fn latency_report(before: &Histograms, after: &Histograms) -> Value {
    let mut verbs = serde_json::Map::new();
    let mut mutating_p99: f64 = 0.0;
    for (verb, buckets) in after {
        let mut cumulative: Vec<(f64, f64)> = buckets
            .iter()
            .map(|(le, count)| {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                let earlier = before
                    .get(verb)
                    .and_then(|b| b.get(le))
                    .copied()
                    .unwrap_or(0.0);
                (bound, count - earlier)
            })
            .collect();
        cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = cumulative.last().map_or(0.0, |c| c.1);
        if total <= 0.0 {
            continue;
        }
        let quantile = |q: f64| {
            let rank = q * total;
            let mut lower = (0.0, 0.0);
            for &(bound, count) in &cumulative {
                if count >= rank {
                    if bound.is_infinite() {
                        return lower.0;
                    }
                    let inside = count - lower.1;
                    let share = if inside > 0.0 {
                        (rank - lower.1) / inside
                    } else {
                        1.0
                    };
                    return lower.0 + (bound - lower.0) * share;
                }
                lower = (bound, count);
            }
            lower.0
        };
        let p99 = quantile(0.99);
        if matches!(verb.as_str(), "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE") {
            mutating_p99 = mutating_p99.max(p99);
        }
        verbs.insert(
            verb.clone(),
            json!({"requests": total, "p50_ms": round(quantile(0.5) * 1000.0),
                "p99_ms": round(p99 * 1000.0)}),
        );
    }
    json!({"verbs": verbs, "mutating_p99_ms": round(mutating_p99 * 1000.0)})
}

/// Samples the server's (and the simulator's) RSS and CPU time every second.
struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    sim: Arc<Mutex<Option<u32>>>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    server_rss_mib: f64,
    server_cpu_s: f64,
    sim_rss_mib: f64,
    sim_cpu_s: f64,
}

struct Usage {
    server: Value,
    sim: Value,
}

impl Sampler {
    fn start(server: u32) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sim: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
        let (into, sim_pid) = (samples.clone(), sim.clone());
        std::thread::spawn(move || {
            loop {
                let sim = *sim_pid.lock().expect("not poisoned");
                let sample = Sample {
                    at: Instant::now(),
                    server_rss_mib: rss_mib(server),
                    server_cpu_s: cpu_seconds(server),
                    sim_rss_mib: sim.map_or(0.0, rss_mib),
                    sim_cpu_s: sim.map_or(0.0, cpu_seconds),
                };
                into.lock().expect("not poisoned").push(sample);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Sampler { samples, sim }
    }

    fn watch_also(&self, sim: u32) {
        *self.sim.lock().expect("not poisoned") = Some(sim);
    }

    /// A point to measure from.
    fn mark(&self) -> usize {
        self.samples.lock().expect("not poisoned").len()
    }

    fn since(&self, mark: usize) -> Usage {
        let samples = self.samples.lock().expect("not poisoned");
        let window = &samples[mark.saturating_sub(1).min(samples.len().saturating_sub(1))..];
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            return Usage {
                server: json!({}),
                sim: json!({}),
            };
        };
        let seconds = (last.at - first.at).as_secs_f64().max(1e-9);
        let describe = |rss: fn(&Sample) -> f64, cpu: fn(&Sample) -> f64| {
            json!({
                "rss_mib_peak": round(window.iter().map(rss).fold(0.0, f64::max)),
                "rss_mib_end": round(rss(last)),
                "cpu_cores": round((cpu(last) - cpu(first)) / seconds),
            })
        };
        Usage {
            server: describe(|s| s.server_rss_mib, |s| s.server_cpu_s),
            sim: describe(|s| s.sim_rss_mib, |s| s.sim_cpu_s),
        }
    }

    fn peak_server_mib(&self) -> f64 {
        let samples = self.samples.lock().expect("not poisoned");
        samples.iter().map(|s| s.server_rss_mib).fold(0.0, f64::max)
    }
}

/// User and system CPU seconds a process has used (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the name: state is index 0, so utime (field 14) is index 11.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // Linux's USER_HZ is 100 on every architecture capstan runs on.
    100.0
}

fn print_table(report: &Value) {
    let fill = &report["fill"];
    let row = |name: &str, value: String| println!("| {name} | {value} |");
    println!("| figure | value |\n|---|---|");
    row(
        "nodes / pods",
        format!("{} / {}", report["nodes"], report["pods"]),
    );
    row(
        "scheduling throughput (pods/s)",
        fill["pods"]["scheduling_pods_per_second"].to_string(),
    );
    row(
        "pods Running per second",
        fill["pods"]["running_pods_per_second"].to_string(),
    );
    let startup = &fill["pods"]["startup_seconds"];
    row(
        "startup p50 / p90 / p99 (s)",
        format!(
            "{} / {} / {}",
            startup["p50"], startup["p90"], startup["p99"]
        ),
    );
    row(
        "mutating API p99, fill / churn (ms)",
        format!(
            "{} / {}",
            fill["api"]["mutating_p99_ms"], report["churn"]["api"]["mutating_p99_ms"]
        ),
    );
    row(
        "server RSS peak (MiB)",
        report["server_rss_mib_peak"].to_string(),
    );
    row(
        "server CPU in fill (cores)",
        fill["server"]["cpu_cores"].to_string(),
    );
    row("store (MiB)", report["store_mib"].to_string());
    row("churn (s)", report["churn"]["seconds"].to_string());
    row("check", report["check"]["ok"].to_string());
}
