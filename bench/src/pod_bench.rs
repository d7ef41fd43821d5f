//! pod-bench: pod startup on one node with a local image, and the agent's memory.
//!
//! Starts `capstan server --disable-agent` and a separate `capstan agent` joined with a token
//! (so the agent's memory is its own), imports the busybox test image, then:
//! - **sequential**: creates pods one at a time and times each from the create request to
//!   the pod Ready, as a watch sees it (kubectl apply's POST to `Ready`);
//! - **burst**: creates 100 pods at once and times until all are Running and Ready;
//! - **memory**: the agent's RSS idle and with the burst's pods running, plus every shim's
//!   RSS and PSS (shims share the capstan binary's pages, which PSS divides among them).
//!
//! Pods name the node (there is no scheduler yet) and run `sleep 3600`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{Value, json};

use capstan_bench::{Agent, Api, NODE, Phase, Server, pss_mib, round, rss_mib};

#[derive(Parser)]
#[command(about = "Measures pod startup and the node agent's memory on one node")]
struct Args {
    /// The capstan binary to start.
    #[arg(long, default_value = "target/release/capstan")]
    capstan: PathBuf,
    /// The busybox test image archive (scripts/build-test-images.sh).
    #[arg(long, default_value = "target/test-images/capstan-test-busybox.tar")]
    image: PathBuf,
    /// Pods created one at a time for the latency distribution.
    #[arg(long, default_value_t = 100)]
    sequential: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 100)]
    burst: usize,
    /// Pods created and deleted (in batches of `--batch`) for the leak check.
    #[arg(long, default_value_t = 1000)]
    cycles: usize,
    /// Pods per batch in the leak check.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What a node holds that a pod could leak: mounts, cgroups, processes, the agent's open
/// files, and disk (outside the image store).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
struct Footprint {
    mounts: usize,
    cgroups: usize,
    shim_processes: usize,
    agent_fds: usize,
    disk_kib: u64,
}

fn footprint(agent: &Agent) -> Footprint {
    let prefix = agent.dir.to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)))
        .count();
    let cgroups = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|hierarchy| count_dirs(&hierarchy.path().join("capstan")))
        .sum();
    let dir = agent.dir.to_string_lossy().to_string();
    let shim_processes = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0)
                    .any(|arg| arg.starts_with(dir.as_bytes()))
                    && c.starts_with(b"/")
            })
        })
        .count();
    let agent_fds =
        std::fs::read_dir(format!("/proc/{}/fd", agent.child.id())).map_or(0, |d| d.count());
    let disk_kib = ["pods", "containers"]
        .iter()
        .map(|d| du_kib(&agent.dir.join(d)))
        .sum();
    Footprint {
        mounts,
        cgroups,
        shim_processes,
        agent_fds,
        disk_kib,
    }
}

/// Directories under `dir`, itself excluded (cgroups are directories).
fn count_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| 1 + count_dirs(&e.path()))
        .sum()
}

fn du_kib(dir: &Path) -> u64 {
    let Ok(output) = Command::new("du").args(["-sk"]).arg(dir).output() else {
        return 0;
    };
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn pod(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "pod-bench"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "capstan.test/busybox:1", "command": ["sleep", "3600"]}],
        },
    }))
    .expect("static JSON")
}

/// When each pod was first seen Running and Ready, by name, fed by one watch.
#[derive(Default)]
struct Seen {
    running: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

/// Watches the namespace's pods and records when each became Running and Ready.
async fn watch_pods(
    api: Arc<Api>,
    seen: Arc<Mutex<Seen>>,
    notify: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let request = Request::builder()
        .uri(format!(
            "{}/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dpod-bench",
            api.base
        ))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))?;
    let response = api.client().request(request).await?;
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        buffer.extend_from_slice(&data);
        let mut consumed = 0;
        while let Some(len) = buffer[consumed..].iter().position(|b| *b == b'\n') {
            if let Ok(event) = serde_json::from_slice::<Value>(&buffer[consumed..consumed + len]) {
                let pod = &event["object"];
                let name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                let mut seen = seen.lock().expect("not poisoned");
                if pod["status"]["phase"] == "Running" {
                    seen.running.entry(name.clone()).or_insert(now);
                }
                if ready {
                    seen.ready.entry(name).or_insert(now);
                }
                notify.notify_waiters();
            }
            consumed += len + 1;
        }
        buffer.drain(..consumed);
    }
    Ok(())
}

async fn wait_until(
    seen: &Mutex<Seen>,
    notify: &tokio::sync::Notify,
    limit: Duration,
    done: impl Fn(&Seen) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let notified = notify.notified();
        if done(&seen.lock().expect("not poisoned")) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("timed out");
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
    }
}

async fn delete_all(api: &Api, agent: &Agent) -> anyhow::Result<()> {
    api.send(
        Method::DELETE,
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dpod-bench&gracePeriodSeconds=0",
        "application/json",
        Vec::new(),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.container_count() > 0 {
        if Instant::now() > deadline {
            bail!("the agent did not remove its containers within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(&args.capstan, &["--disable-agent"])?;
    let api = Arc::new(Api::new(&server.dir.path().join("tls"), server.port, 4)?);
    let agent = Agent::start(&args.capstan, &server)?;
    agent.import(&args.capstan, &args.image)?;
    agent.wait_registered(&api).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let agent_idle_rss = rss_mib(agent.child.id());
    let agent_idle_pss = pss_mib(agent.child.id());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let notify = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(watch_pods(api.clone(), seen.clone(), notify.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Sequential: one pod at a time, create → Ready.
    let mut latencies = Vec::with_capacity(args.sequential);
    let start = Instant::now();
    for i in 0..args.sequential {
        let name = format!("seq-{i}");
        let t = Instant::now();
        api.expect(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            "application/json",
            pod(&name),
            201,
        )
        .await?;
        wait_until(&seen, &notify, Duration::from_secs(30), |s| {
            s.ready.contains_key(&name)
        })
        .await
        .with_context(|| format!("pod {name} never became Ready"))?;
        let ready_at = seen.lock().expect("not poisoned").ready[&name];
        latencies.push(ready_at.duration_since(t));
    }
    let sequential = Phase {
        latencies,
        elapsed: start.elapsed(),
    };
    delete_all(&api, &agent).await?;

    // Burst: all at once, until every pod is Running and Ready.
    let names: Vec<String> = (0..args.burst).map(|i| format!("burst-{i}")).collect();
    let start = Instant::now();
    let mut creates = Vec::new();
    for name in &names {
        let (api, body) = (api.clone(), pod(name));
        creates.push(tokio::spawn(async move {
            api.expect(
                Method::POST,
                "/api/v1/namespaces/default/pods",
                "application/json",
                body,
                201,
            )
            .await
        }));
    }
    for create in creates {
        create.await??;
    }
    let created = start.elapsed();
    wait_until(&seen, &notify, Duration::from_secs(120), |s| {
        names.iter().all(|n| s.running.contains_key(n))
    })
    .await?;
    let all_running = start.elapsed();
    wait_until(&seen, &notify, Duration::from_secs(120), |s| {
        names.iter().all(|n| s.ready.contains_key(n))
    })
    .await?;
    let all_ready = start.elapsed();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let shims = agent.shims();
    let shim_rss: f64 = shims.iter().map(|p| rss_mib(*p)).sum();
    let shim_pss: f64 = shims.iter().map(|p| pss_mib(*p)).sum();
    let agent_busy_rss = rss_mib(agent.child.id());
    let agent_busy_pss = pss_mib(agent.child.id());
    let pods = args.burst.max(1) as f64;
    delete_all(&api, &agent).await?;

    // Leak check: many pods created and deleted; the node must hold what it held before.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = footprint(&agent);
    let start = Instant::now();
    let mut created_total = 0;
    while created_total < args.cycles {
        let count = args.batch.min(args.cycles - created_total);
        let names: Vec<String> = (created_total..created_total + count)
            .map(|i| format!("cycle-{i}"))
            .collect();
        let mut creates = Vec::new();
        for name in &names {
            let (api, body) = (api.clone(), pod(name));
            creates.push(tokio::spawn(async move {
                api.expect(
                    Method::POST,
                    "/api/v1/namespaces/default/pods",
                    "application/json",
                    body,
                    201,
                )
                .await
            }));
        }
        for create in creates {
            create.await??;
        }
        wait_until(&seen, &notify, Duration::from_secs(120), |s| {
            names.iter().all(|n| s.running.contains_key(n))
        })
        .await?;
        delete_all(&api, &agent).await?;
        created_total += count;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cycles_seconds = start.elapsed().as_secs_f64();
    let after = footprint(&agent);

    let results = json!({
        "sequential_create_to_ready": sequential.report(),
        "burst": {
            "pods": args.burst,
            "created_seconds": round(created.as_secs_f64()),
            "all_running_seconds": round(all_running.as_secs_f64()),
            "all_ready_seconds": round(all_ready.as_secs_f64()),
        },
        "memory_mib": {
            "agent_idle_rss": round(agent_idle_rss),
            "agent_idle_pss": round(agent_idle_pss),
            "agent_with_pods_rss": round(agent_busy_rss),
            "agent_with_pods_pss": round(agent_busy_pss),
            "shims": shims.len(),
            "shims_rss_total": round(shim_rss),
            "shims_pss_total": round(shim_pss),
            "per_pod_rss_including_shim": round((agent_busy_rss + shim_rss - agent_idle_rss) / pods),
            "per_pod_pss_including_shim": round((agent_busy_pss + shim_pss - agent_idle_pss) / pods),
        },
        "leak_check": {
            "pods_created_and_deleted": args.cycles,
            "seconds": round(cycles_seconds),
            "before": before,
            "after": after,
            "agent_rss_after_mib": round(rss_mib(agent.child.id())),
        },
    });
    println!("{}", serde_json::to_string_pretty(&results)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    drop(agent);
    drop(server);
    Ok(())
}
