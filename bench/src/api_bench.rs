//! api-bench: starts `capstan server` on loopback in a temporary directory and measures the API
//! the way clients use it: create, get, update (as fast as possible and paced at 1,000/s),
//! list of 1k and 10k pods, watch fan-out (N watchers, one paced writer), and the server's
//! memory idle and holding 10k pods. Prints a short table and, with `--json`, writes JSON.
//!
//! Every request goes over HTTPS with the admin client certificate, as kubectl's would.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{Value, json};

use capstan_bench::{Api, Phase, Server, round};

#[derive(Parser)]
#[command(about = "Measures capstan's API server on loopback")]
struct Args {
    /// The capstan binary to start.
    #[arg(long, default_value = "target/release/capstan")]
    capstan: PathBuf,
    /// Requests in flight at once in the throughput phases.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pods created (and then read and updated); the big list holds this many.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Watchers in the fan-out phase.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Writes per second in the paced phases.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds each paced phase lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `count` operations with `concurrency` in flight, timing each.
async fn concurrent<F, Fut>(count: usize, concurrency: usize, op: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t = Instant::now();
                op(i).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(Phase {
        latencies,
        elapsed: start.elapsed(),
    })
}

/// Runs `op` at `rate` per second for `seconds`, timing each (late ticks are not skipped, so
/// a slow server shows up as latency, not as a lower rate).
async fn paced<F, Fut>(rate: u64, seconds: u64, op: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let total = (rate * seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            op(i).await.map(|_| t.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.push(task.await??);
    }
    Ok(Phase {
        latencies,
        elapsed: start.elapsed(),
    })
}

fn pod(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
    }))
    .expect("static JSON")
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

const SENT_MARK: &str = "\"bench/sent\":\"";

/// The send time a watch event line carries, if any. (`str::find` is a fast substring
/// search: the client shares the two cores with the server, so its own cost shows as lag.)
fn sent_at(line: &[u8]) -> Option<u128> {
    let line = std::str::from_utf8(line).ok()?;
    let start = line.find(SENT_MARK)? + SENT_MARK.len();
    let end = start + line[start..].find('"')?;
    line[start..end].parse().ok()
}

/// One watcher: reads events until `expected` carried a send time, recording each lag.
async fn watcher(
    api: Arc<Api>,
    path: String,
    expected: usize,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Vec<Duration>> {
    let request = Request::builder()
        .uri(format!("{}{path}", api.base))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))?;
    let response = api.client().request(request).await?;
    if !response.status().is_success() {
        bail!("watch answered {}", response.status());
    }
    ready.send(()).await.ok();
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let mut lags = Vec::with_capacity(expected);
    while lags.len() < expected {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let received = now_nanos();
        buffer.extend_from_slice(&data);
        // One frame may hold hundreds of events: walk its lines, then drop them all at once.
        let mut consumed = 0;
        while let Some(len) = buffer[consumed..].iter().position(|b| *b == b'\n') {
            if let Some(sent) = sent_at(&buffer[consumed..consumed + len]) {
                lags.push(Duration::from_nanos(received.saturating_sub(sent) as u64));
            }
            consumed += len + 1;
        }
        buffer.drain(..consumed);
    }
    Ok(lags)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(&args.capstan, &["--disable-agent"])?;
    let api = Arc::new(Api::new(&server.dir.path().join("tls"), server.port, 8)?);
    let mut results = serde_json::Map::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    results.insert("rss_idle_mib".into(), json!(round(server.rss_mib())));

    for ns in ["bench-10k", "bench-1k", "bench-watch", "bench-paced"] {
        let body = serde_json::to_vec(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        api.expect(
            Method::POST,
            "/api/v1/namespaces",
            "application/json",
            body,
            201,
        )
        .await?;
    }

    let objects = args.objects;
    let a = api.clone();
    let create = concurrent(objects, args.concurrency, move |i| {
        let a = a.clone();
        async move {
            a.expect(
                Method::POST,
                "/api/v1/namespaces/bench-10k/pods",
                "application/json",
                pod(&format!("p{i}")),
                201,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    results.insert("create".into(), create.report());
    results.insert("rss_10k_pods_mib".into(), json!(round(server.rss_mib())));

    let a = api.clone();
    concurrent(1000, args.concurrency, move |i| {
        let a = a.clone();
        async move {
            a.expect(
                Method::POST,
                "/api/v1/namespaces/bench-1k/pods",
                "application/json",
                pod(&format!("p{i}")),
                201,
            )
            .await?;
            Ok(())
        }
    })
    .await?;

    let a = api.clone();
    let gets = objects * 3;
    let get = concurrent(gets, args.concurrency, move |i| {
        let a = a.clone();
        async move {
            let path = format!("/api/v1/namespaces/bench-10k/pods/p{}", i % objects);
            a.expect(Method::GET, &path, "application/json", Vec::new(), 200)
                .await?;
            Ok(())
        }
    })
    .await?;
    results.insert("get".into(), get.report());

    let a = api.clone();
    let update = concurrent(objects, args.concurrency, move |i| {
        let a = a.clone();
        async move {
            let path = format!("/api/v1/namespaces/bench-10k/pods/p{i}");
            let patch = format!(r#"{{"metadata":{{"labels":{{"round":"{i}"}}}}}}"#).into_bytes();
            a.expect(
                Method::PATCH,
                &path,
                "application/merge-patch+json",
                patch,
                200,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    results.insert("update".into(), update.report());

    for (label, ns, times) in [("list_1k", "bench-1k", 20), ("list_10k", "bench-10k", 10)] {
        let a = api.clone();
        let path = format!("/api/v1/namespaces/{ns}/pods");
        let list = concurrent(times, 1, move |_| {
            let (a, path) = (a.clone(), path.clone());
            async move {
                a.expect(Method::GET, &path, "application/json", Vec::new(), 200)
                    .await?;
                Ok(())
            }
        })
        .await?;
        results.insert(label.into(), list.report());
    }

    let a = api.clone();
    let paced_updates = paced(args.rate, args.seconds, move |i| {
        let a = a.clone();
        async move {
            let path = format!("/api/v1/namespaces/bench-1k/pods/p{}", i % 1000);
            let patch = format!(r#"{{"metadata":{{"labels":{{"paced":"{i}"}}}}}}"#).into_bytes();
            a.expect(
                Method::PATCH,
                &path,
                "application/merge-patch+json",
                patch,
                200,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    results.insert(
        format!("update_paced_{}_per_s", args.rate),
        paced_updates.report(),
    );

    // Watch fan-out: every watcher must see every write; the lag is receive time minus the
    // send time the writer put in the object.
    let events = (args.rate * args.seconds) as usize;
    let watch_api = Arc::new(Api::new(
        &server.dir.path().join("tls"),
        server.port,
        args.watchers.div_ceil(100).max(1),
    )?);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.watchers);
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let path =
            "/api/v1/namespaces/bench-watch/configmaps?watch=true&timeoutSeconds=600".to_string();
        watchers.push(tokio::spawn(watcher(
            watch_api.clone(),
            path,
            events,
            ready_tx.clone(),
        )));
    }
    for _ in 0..args.watchers {
        ready_rx.recv().await.context("a watcher failed to start")?;
    }
    let a = api.clone();
    let writes = paced(args.rate, args.seconds, move |i| {
        let a = a.clone();
        async move {
            let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("w{i}"), "annotations": {"bench/sent": now_nanos().to_string()}}}))?;
            a.expect(Method::POST, "/api/v1/namespaces/bench-watch/configmaps", "application/json", body, 201).await?;
            Ok(())
        }
    })
    .await?;
    let mut lags = Vec::new();
    let mut incomplete = 0;
    for w in watchers {
        match tokio::time::timeout(Duration::from_secs(60), w).await {
            Ok(Ok(Ok(l))) => {
                if l.len() < events {
                    incomplete += 1;
                }
                lags.extend(l);
            }
            _ => incomplete += 1,
        }
    }
    let delivery = Phase {
        latencies: lags,
        elapsed: writes.elapsed,
    };
    results.insert(
        "watch".into(),
        json!({
            "watchers": args.watchers,
            "events_written": events,
            "deliveries": delivery.latencies.len(),
            "expected_deliveries": events * args.watchers,
            "watchers_missing_events": incomplete,
            "lag_p50_ms": round(delivery.percentile_ms(0.50)),
            "lag_p99_ms": round(delivery.percentile_ms(0.99)),
            "writes": writes.report(),
        }),
    );

    let results = Value::Object(results);
    print_table(&results);
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&results)?)?;
    }
    Ok(())
}

fn print_table(r: &Value) {
    println!(
        "{:<24} {:>10} {:>10} {:>10}",
        "phase", "per second", "p50 ms", "p99 ms"
    );
    let row = |key: &str, p: &Value| {
        let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
        println!(
            "{key:<24} {:>10.0} {:>10.2} {:>10.2}",
            f("per_second"),
            f("p50_ms"),
            f("p99_ms")
        );
    };
    for key in ["create", "get", "update", "list_1k", "list_10k"] {
        row(key, &r[key]);
    }
    let paced = r
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| k.starts_with("update_paced")));
    if let Some((key, p)) = paced {
        row(key, p);
    }
    let w = &r["watch"];
    println!(
        "watch: {} watchers, {} of {} deliveries, lag p50 {} ms, p99 {} ms, {} watchers missed events",
        w["watchers"],
        w["deliveries"],
        w["expected_deliveries"],
        w["lag_p50_ms"],
        w["lag_p99_ms"],
        w["watchers_missing_events"]
    );
    println!(
        "server RSS: idle {} MiB, holding 10k pods {} MiB",
        r["rss_idle_mib"], r["rss_10k_pods_mib"]
    );
}
