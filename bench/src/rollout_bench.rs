//! rollout-bench: the controllers and scheduler on real containers, on one node.
//!
//! Starts `capstan server --disable-agent` (scheduler and controllers included) and a joined
//! `capstan agent`, then:
//! - **rolling update**: a 100-replica Deployment (maxSurge 10, maxUnavailable 0) is rolled to
//!   a new template; timed from the PATCH until the Deployment reports every replica updated,
//!   ready and no old one left, while a watch counts ready pods the whole time and reports the
//!   fewest it saw;
//! - **replacement**: a Running pod of the Deployment is deleted (grace 0), timed until a new
//!   pod is Running and Ready, as the watch sees it; repeated, median reported.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{Value, json};

use capstan_bench::{Agent, Api, Server, round};

#[derive(Parser)]
#[command(about = "Measures a 100-replica rolling update and pod replacement on real containers")]
struct Args {
    /// The capstan binary to start.
    #[arg(long, default_value = "target/release/capstan")]
    capstan: PathBuf,
    /// The busybox test image archive (scripts/build-test-images.sh).
    #[arg(long, default_value = "target/test-images/capstan-test-busybox.tar")]
    image: PathBuf,
    #[arg(long, default_value_t = 100)]
    replicas: usize,
    #[arg(long, default_value_t = 10)]
    max_surge: usize,
    /// Pods deleted one after another for the replacement time.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(replicas: usize, max_surge: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "rollout-bench"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "rollout-bench"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": "capstan.test/busybox:1",
                        "command": ["sleep", "3600"]}],
                },
            },
        },
    }))
    .expect("static JSON")
}

/// Every pod of the Deployment as the watch last saw it: ready (Running, Ready, not being
/// deleted) or not, and when it first became ready.
#[derive(Default)]
struct Pods {
    ready: HashMap<String, bool>,
    first_ready: HashMap<String, Instant>,
    /// The fewest ready pods seen since `track_from` was set.
    fewest_ready: Option<usize>,
    tracking: bool,
    /// Pods seen ready and then not ready while not being deleted, with the status that said
    /// so: a dip in ready pods that the rollout did not cause.
    lost_readiness: Vec<String>,
    /// Every event while tracking, with the ready count after it.
    trace: Vec<String>,
}

impl Pods {
    fn ready_count(&self) -> usize {
        self.ready.values().filter(|r| **r).count()
    }
}

async fn watch_pods(api: Arc<Api>, pods: Arc<Mutex<Pods>>) -> anyhow::Result<()> {
    let request = Request::builder()
        .uri(format!(
            "{}/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Drollout-bench",
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
                let ready = event["type"] != "DELETED"
                    && pod["metadata"]["deletionTimestamp"].is_null()
                    && pod["status"]["phase"] == "Running"
                    && pod["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                let name_for_trace = format!(
                    "{name} rs={}",
                    pod["metadata"]["labels"]["pod-template-hash"]
                );
                let mut pods = pods.lock().expect("not poisoned");
                if ready {
                    pods.first_ready.entry(name.clone()).or_insert(now);
                }
                if event["type"] == "DELETED" {
                    pods.ready.remove(&name);
                } else {
                    let was_ready = pods.ready.insert(name.clone(), ready) == Some(true);
                    if was_ready && !ready && pod["metadata"]["deletionTimestamp"].is_null() {
                        pods.lost_readiness
                            .push(format!("{name}: {}", pod["status"]));
                    }
                }
                if pods.tracking {
                    let count = pods.ready_count();
                    let line = format!(
                        "{} {} rv={} ready={} deleting={} phase={} -> {}",
                        event["type"],
                        name_for_trace,
                        pod["metadata"]["resourceVersion"],
                        ready,
                        !pod["metadata"]["deletionTimestamp"].is_null(),
                        pod["status"]["phase"],
                        count
                    );
                    pods.trace.push(line);
                    pods.fewest_ready = Some(pods.fewest_ready.map_or(count, |f| f.min(count)));
                }
            }
            consumed += len + 1;
        }
        buffer.drain(..consumed);
    }
    Ok(())
}

/// Polls the Deployment until `done` holds for its JSON.
async fn wait_deployment(
    api: &Api,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = api
            .send(
                Method::GET,
                &format!("{DEPLOYMENTS}/bench"),
                "application/json",
                Vec::new(),
            )
            .await?;
        let d: Value = serde_json::from_slice(&body).unwrap_or_default();
        if done(&d) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out; deployment status: {}", d["status"]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything updated, ready and available, no old replica left, and the latest generation seen.
fn rolled_out(d: &Value, replicas: usize) -> bool {
    let s = &d["status"];
    let n = replicas as u64;
    s["observedGeneration"].as_u64() >= d["metadata"]["generation"].as_u64()
        && s["updatedReplicas"].as_u64() == Some(n)
        && s["readyReplicas"].as_u64() == Some(n)
        && s["availableReplicas"].as_u64() == Some(n)
        && s["replicas"].as_u64() == Some(n)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(&args.capstan, &["--disable-agent"])?;
    let api = Arc::new(Api::new(&server.dir.path().join("tls"), server.port, 4)?);
    let agent = Agent::start(&args.capstan, &server)?;
    agent.import(&args.capstan, &args.image)?;
    agent.wait_registered(&api).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pods = Arc::new(Mutex::new(Pods::default()));
    tokio::spawn(watch_pods(api.clone(), pods.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The Deployment, all its pods ready.
    let start = Instant::now();
    api.expect(
        Method::POST,
        DEPLOYMENTS,
        "application/json",
        deployment(args.replicas, args.max_surge),
        201,
    )
    .await?;
    wait_deployment(&api, Duration::from_secs(120), |d| {
        rolled_out(d, args.replicas)
    })
    .await
    .context("the first rollout")?;
    let first_rollout = start.elapsed();
    println!(
        "created: {} replicas ready in {:.2} s",
        args.replicas,
        first_rollout.as_secs_f64()
    );

    // The rolling update.
    pods.lock().expect("not poisoned").tracking = true;
    let start = Instant::now();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"bench/rev": "2"}}}}});
    api.expect(
        Method::PATCH,
        &format!("{DEPLOYMENTS}/bench"),
        "application/merge-patch+json",
        serde_json::to_vec(&patch)?,
        200,
    )
    .await?;
    wait_deployment(&api, Duration::from_secs(120), |d| {
        rolled_out(d, args.replicas)
    })
    .await
    .context("the rolling update")?;
    let rolling_update = start.elapsed();
    let fewest_ready = {
        let mut p = pods.lock().expect("not poisoned");
        p.tracking = false;
        p.fewest_ready.unwrap_or(0)
    };
    println!(
        "rolling update: {:.2} s, fewest ready pods during it: {fewest_ready}",
        rolling_update.as_secs_f64()
    );
    let lost_readiness = std::mem::take(&mut pods.lock().expect("not poisoned").lost_readiness);
    // ROLLOUT_TRACE=<file> writes every pod event of the update with the ready count after it,
    // to find what made the count dip.
    if let Some(path) = std::env::var_os("ROLLOUT_TRACE") {
        let trace = std::mem::take(&mut pods.lock().expect("not poisoned").trace);
        std::fs::write(path, trace.join("\n"))?;
    }
    for lost in &lost_readiness {
        println!("pod lost readiness without being deleted: {lost}");
    }

    // Replacement of a deleted pod.
    let mut replacements = Vec::new();
    for _ in 0..args.kills {
        let (victim, before) = {
            let p = pods.lock().expect("not poisoned");
            let victim = p
                .ready
                .iter()
                .find(|(_, r)| **r)
                .map(|(n, _)| n.clone())
                .context("no ready pod to delete")?;
            (victim, p.first_ready.keys().cloned().collect::<Vec<_>>())
        };
        let t = Instant::now();
        api.expect(
            Method::DELETE,
            &format!("/api/v1/namespaces/default/pods/{victim}?gracePeriodSeconds=0"),
            "application/json",
            Vec::new(),
            200,
        )
        .await?;
        let deadline = t + Duration::from_secs(30);
        let replaced_at = loop {
            let found = {
                let p = pods.lock().expect("not poisoned");
                p.first_ready
                    .iter()
                    .find(|(name, _)| !before.contains(name))
                    .map(|(_, at)| *at)
            };
            if let Some(at) = found {
                break at;
            }
            if Instant::now() > deadline {
                bail!("pod {victim} was not replaced within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let took = replaced_at.duration_since(t);
        println!("replaced {victim} in {:.0} ms", took.as_secs_f64() * 1000.0);
        replacements.push(took.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    replacements.sort_by(f64::total_cmp);
    let median_replacement = replacements
        .get(replacements.len() / 2)
        .copied()
        .unwrap_or(0.0);
    println!("replacement median: {median_replacement:.0} ms");

    // Clean up: delete the Deployment (its pods go with it) and wait for the containers.
    api.expect(
        Method::DELETE,
        &format!("{DEPLOYMENTS}/bench"),
        "application/json",
        Vec::new(),
        200,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.container_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let results = json!({
        "replicas": args.replicas,
        "max_surge": args.max_surge,
        "first_rollout_s": round(first_rollout.as_secs_f64()),
        "rolling_update_s": round(rolling_update.as_secs_f64()),
        "fewest_ready_during_update": fewest_ready,
        "pods_that_lost_readiness": lost_readiness.len(),
        "replacement_ms": replacements.iter().map(|r| round(*r)).collect::<Vec<_>>(),
        "replacement_median_ms": round(median_replacement),
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    println!("{}", serde_json::to_string_pretty(&results)?);
    drop(agent);
    drop(server);
    Ok(())
}
