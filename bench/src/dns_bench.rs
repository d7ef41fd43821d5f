//! dns-bench: cluster DNS answering from memory, over real UDP on 127.0.0.1.
//!
//! Builds the records of 1,000 ClusterIP services (two named ports each) in 10 namespaces and
//! 100 headless services with 3 ready endpoints each, starts `capstan_net::dns::serve` on
//! 127.0.0.1 in-process, and runs a few UDP clients, each keeping a window of queries in
//! flight: 70% A questions for random services, 30% SRV questions for their `http` port.
//! Prints one JSON object per run (queries/s, latency p50/p99 in µs, lost queries) and the
//! medians over the runs. Nothing leaves the loopback interface: names outside the cluster
//! domain are never asked, and the server has no upstreams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use capstan_net::dns::{Records, SharedRecords, parse_domain, serve};
use clap::Parser;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::net::UdpSocket;

#[derive(Parser)]
#[command(about = "Queries the cluster DNS server in-process over UDP and reports throughput")]
struct Args {
    /// ClusterIP services (plus a tenth as many headless ones).
    #[arg(long, default_value_t = 1_000)]
    services: usize,
    /// Concurrent UDP clients, each on its own socket.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Queries each client keeps in flight.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Measured seconds per run (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const NAMESPACES: usize = 10;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..Default::default()
    }
}

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

fn cluster(services: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut all = Vec::new();
    let mut slices = Vec::new();
    for i in 0..services {
        let ip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
        all.push(Service {
            metadata: meta(&format!("ns-{}", i % NAMESPACES), &format!("svc-{i}")),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.clone()),
                cluster_ips: Some(vec![ip]),
                ports: Some(vec![port("http", 80), port("metrics", 9090)]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for i in 0..services / 10 {
        let namespace = format!("ns-{}", i % NAMESPACES);
        let name = format!("headless-{i}");
        all.push(Service {
            metadata: meta(&namespace, &name),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut slice_meta = meta(&namespace, &format!("{name}-abcde"));
        slice_meta.labels = Some(
            [("kubernetes.io/service-name".to_owned(), name.clone())]
                .into_iter()
                .collect(),
        );
        slices.push(EndpointSlice {
            metadata: slice_meta,
            address_type: "IPv4".to_owned(),
            endpoints: (0..3)
                .map(|e| Endpoint {
                    addresses: vec![format!("10.244.{}.{}", i / 80, (i % 80) * 3 + e + 1)],
                    hostname: Some(format!("{name}-{e}")),
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("http".to_owned()),
                port: Some(8080),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
        });
    }
    (all, slices)
}

/// Encoded questions; the id (first two bytes) is overwritten per send.
fn questions(services: usize) -> Vec<Vec<u8>> {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    (0..4096)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let i = usize::try_from(rng % services as u64).unwrap_or(0);
            let service = format!("svc-{i}.ns-{}.svc.cluster.local.", i % NAMESPACES);
            let (name, query_type) = if rng % 10 < 7 {
                (service, RecordType::A)
            } else {
                (format!("_http._tcp.{service}"), RecordType::SRV)
            };
            let mut message = Message::query();
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(
                Name::from_ascii(&name).expect("valid name"),
                query_type,
            ));
            message.to_vec().expect("encodable")
        })
        .collect()
}

struct ClientResult {
    latencies_ns: Vec<u64>,
    lost: u64,
}

/// One client: keeps `window` queries in flight until `stop`, recording the latency of each
/// answer while `measuring`.
async fn client(
    server: SocketAddr,
    questions: Arc<Vec<Vec<u8>>>,
    offset: usize,
    window: usize,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> ClientResult {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket.connect(server).await.expect("connect client");
    let mut sent_at = vec![None::<Instant>; usize::from(u16::MAX) + 1];
    let mut next_id: u16 = 0;
    let mut next_question = offset;
    let mut result = ClientResult {
        latencies_ns: Vec::with_capacity(1 << 20),
        lost: 0,
    };
    let mut outstanding = 0usize;
    let mut buffer = vec![0u8; 4096];
    let mut packet = Vec::with_capacity(512);
    loop {
        while outstanding < window && !stop.load(Ordering::Relaxed) {
            packet.clear();
            packet.extend_from_slice(&questions[next_question % questions.len()]);
            next_question += 1;
            packet[..2].copy_from_slice(&next_id.to_be_bytes());
            sent_at[usize::from(next_id)] = Some(Instant::now());
            next_id = next_id.wrapping_add(1);
            socket.send(&packet).await.expect("send");
            outstanding += 1;
        }
        if outstanding == 0 {
            return result;
        }
        match tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buffer)).await {
            Ok(Ok(len)) if len >= 12 => {
                let id = u16::from_be_bytes([buffer[0], buffer[1]]);
                if let Some(at) = sent_at[usize::from(id)].take() {
                    outstanding -= 1;
                    if measuring.load(Ordering::Relaxed) {
                        let elapsed = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        result.latencies_ns.push(elapsed);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Dropped on the loopback (full socket buffer): give up on what is in flight.
                result.lost += u64::try_from(outstanding).unwrap_or(0);
                outstanding = 0;
                sent_at.iter_mut().for_each(|at| *at = None);
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank] as f64 / 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn run_once(
    args: &Args,
    server: SocketAddr,
    questions: Arc<Vec<Vec<u8>>>,
) -> serde_json::Value {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..args.clients)
        .map(|c| {
            tokio::spawn(client(
                server,
                questions.clone(),
                c * 997,
                args.window,
                measuring.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut lost = 0;
    for task in tasks {
        let result = task.await.expect("client task");
        latencies.extend(result.latencies_ns);
        lost += result.lost;
    }
    latencies.sort_unstable();
    serde_json::json!({
        "queries": latencies.len(),
        "seconds": elapsed,
        "queries_per_second": (latencies.len() as f64 / elapsed).round(),
        "latency_p50_us": percentile(&latencies, 0.50),
        "latency_p99_us": percentile(&latencies, 0.99),
        "lost": lost,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let domain = parse_domain("cluster.local")?;
    let (services, slices) = cluster(args.services);
    let built = Instant::now();
    let records = Records::build(&domain, &services, &slices);
    let build_ms = built.elapsed().as_secs_f64() * 1000.0;
    let names = records.len();
    let server = serve(
        "127.0.0.1:0".parse()?,
        SharedRecords::new(records),
        Vec::new(),
        Duration::from_secs(2),
    )
    .await?;
    let questions = Arc::new(questions(args.services));

    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let run = run_once(&args, server.local_addr(), questions.clone()).await;
        println!("{run}");
        runs.push(run);
    }
    let figure = |key: &str| median(runs.iter().filter_map(|r| r[key].as_f64()).collect());
    println!(
        "{}",
        serde_json::json!({
            "summary": "median of runs",
            "services": args.services + args.services / 10,
            "names": names,
            "records_build_ms": build_ms,
            "clients": args.clients,
            "window": args.window,
            "runs": args.runs,
            "queries_per_second": figure("queries_per_second"),
            "latency_p50_us": figure("latency_p50_us"),
            "latency_p99_us": figure("latency_p99_us"),
        })
    );
    Ok(())
}
