//! ingress-bench: the ingress proxy in-process over real TCP on 127.0.0.1.
//!
//! 1. Route-table cost: builds the snapshot of `--hosts` Ingresses (one host and two paths
//!    each) over `--services` Services of `--endpoints` ready endpoints each, as the watcher
//!    does after a change.
//! 2. Throughput and latency: starts `capstan_net::ingress::serve` on 127.0.0.1 with the same
//!    Ingresses pointing at `--backends` tiny hyper servers, then `--connections` keep-alive
//!    clients send GETs for random hosts for `--seconds`; the same clients straight to one
//!    backend give the baseline without the proxy.
//!
//! Prints one JSON object per run and the medians. Proxy, backends and clients share one
//! tokio runtime (all cores), so the figures are a loopback ceiling, not a network one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use capstan_net::ingress::{IngressConfig, SharedSnapshot, Snapshot, serve};
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "Measures the ingress proxy in-process on 127.0.0.1")]
struct Args {
    /// Ingresses, one host each.
    #[arg(long, default_value_t = 1_000)]
    hosts: usize,
    /// Services the Ingresses spread over.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Ready endpoints per Service in the route-table build.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Real backend servers behind every Service while serving.
    #[arg(long, default_value_t = 4)]
    backends: usize,
    /// Concurrent keep-alive client connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds per run (after half a second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn ingresses(hosts: usize, services: usize) -> Vec<Ingress> {
    (0..hosts)
        .map(|i| {
            let backend = |service: usize| {
                json!({"service": {"name": format!("svc-{}", service % services),
                                   "port": {"name": "http"}}})
            };
            serde_json::from_value(json!({
                "metadata": {"name": format!("ing-{i}"), "namespace": "default",
                             "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"ingressClassName": "capstan", "rules": [{
                    "host": format!("host-{i}.bench.test"),
                    "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": backend(i)},
                        {"path": "/api", "pathType": "Prefix", "backend": backend(i + 1)},
                    ]},
                }]},
            }))
            .expect("valid Ingress")
        })
        .collect()
}

fn services(count: usize) -> Vec<Service> {
    (0..count)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }))
            .expect("valid Service")
        })
        .collect()
}

/// One slice per Service and endpoint address set; `endpoints(service)` gives (ip, port).
fn slices(count: usize, endpoints: impl Fn(usize) -> Vec<SocketAddr>) -> Vec<EndpointSlice> {
    let mut slices = Vec::new();
    for service in 0..count {
        for (i, endpoint) in endpoints(service).into_iter().enumerate() {
            slices.push(
                serde_json::from_value(json!({
                    "metadata": {"name": format!("svc-{service}-{i}"), "namespace": "default",
                                 "labels": {"kubernetes.io/service-name": format!("svc-{service}")}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": endpoint.port()}],
                    "endpoints": [{"addresses": [endpoint.ip().to_string()],
                                   "conditions": {"ready": true}}],
                }))
                .expect("valid EndpointSlice"),
            );
        }
    }
    slices
}

async fn backend() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let service = service_fn(|_request| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

/// Requests per second and latency percentiles of `connections` clients against `target`.
async fn measure(
    args: &Args,
    target: SocketAddr,
    hosts: Arc<Vec<String>>,
) -> anyhow::Result<Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..args.connections {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let (stop, measuring, hosts) = (stop.clone(), measuring.clone(), hosts.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                // xorshift: a different host each request, no shared state between clients.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let host = &hosts[(state % hosts.len() as u64) as usize];
                let path = if state & 1 == 0 { "/" } else { "/api/items" };
                let request = Request::get(path)
                    .header("host", host)
                    .body(Empty::<Bytes>::new())?;
                let started = Instant::now();
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                anyhow::ensure!(response.status() == 200, "status {}", response.status());
                response.into_body().collect().await?;
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed());
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await??);
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Ok(json!({
        "requests_per_second": (latencies.len() as f64 / elapsed.as_secs_f64()).round(),
        "latency_p50_us": percentile(0.5).round(),
        "latency_p99_us": percentile(0.99).round(),
    }))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ingresses = ingresses(args.hosts, args.services);
    let services = services(args.services);

    // 1. Route-table cost with many endpoints (addresses that are never dialled).
    let many = slices(args.services, |s| {
        (0..args.endpoints)
            .map(|e| SocketAddr::from(([10, (s / 250) as u8, (s % 250) as u8, e as u8 + 1], 8080)))
            .collect()
    });
    let mut build_ms = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let snapshot = Snapshot::build(&ingresses, [], &services, &many, []);
        build_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(snapshot.routes.host_count() == args.hosts);
    }

    // 2. Serving through real backends.
    let mut backends = Vec::new();
    for _ in 0..args.backends {
        backends.push(backend().await?);
    }
    let real = slices(args.services, |_| backends.clone());
    let shared = SharedSnapshot::new(Snapshot::build(&ingresses, [], &services, &real, []));
    let config = IngressConfig {
        http: "127.0.0.1:0".parse()?,
        https: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    let server = serve(&config, shared).await?;
    let hosts: Arc<Vec<String>> = Arc::new(
        (0..args.hosts)
            .map(|i| format!("host-{i}.bench.test"))
            .collect(),
    );

    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let proxied = measure(&args, server.http_addr(), hosts.clone()).await?;
        let direct = measure(&args, backends[0], hosts.clone()).await?;
        let run = json!({"proxied": proxied, "direct": direct});
        println!("{run}");
        runs.push(run);
    }
    let figure =
        |side: &str, key: &str| median(runs.iter().filter_map(|r| r[side][key].as_f64()).collect());
    println!(
        "{}",
        json!({
            "summary": "median of runs",
            "hosts": args.hosts,
            "services": args.services,
            "endpoints_per_service": args.endpoints,
            "route_table_build_ms": (median(build_ms) * 100.0).round() / 100.0,
            "connections": args.connections,
            "runs": args.runs,
            "proxied_requests_per_second": figure("proxied", "requests_per_second"),
            "proxied_latency_p50_us": figure("proxied", "latency_p50_us"),
            "proxied_latency_p99_us": figure("proxied", "latency_p99_us"),
            "direct_requests_per_second": figure("direct", "requests_per_second"),
            "direct_latency_p50_us": figure("direct", "latency_p50_us"),
            "direct_latency_p99_us": figure("direct", "latency_p99_us"),
        })
    );
    Ok(())
}
