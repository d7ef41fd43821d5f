//! proxy-bench: the service proxy's sync at scale, against the real kernel.
//!
//! Builds 1,000 ClusterIP Services of one TCP port, each with one EndpointSlice of 10 ready
//! endpoints, then per run, in a fresh network namespace of its own (`capstan-bench-<pid>-<run>`,
//! deleted at the end even on failure):
//!
//! 1. generates the ruleset (`build_ruleset` + `render_full`) and applies it with one
//!    `nft -f -` into an empty namespace (the first sync of an agent);
//! 2. replaces one endpoint of one Service (a pod restarted with a new address) and applies
//!    the incremental transaction (`render_update`: flush and refill of what changed);
//! 3. for comparison, replaces the whole table again (`delete table` + full definition), which
//!    is what every sync would cost without the incremental path.
//!
//! Needs root, `ip` and `nft`. Prints each run and the medians.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use capstan_net::service_proxy::{
    ProxyConfig, apply, build_ruleset, render_full, render_update, rules::SERVICE_NAME_LABEL,
};
use clap::Parser;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Parser)]
#[command(about = "Times the service proxy's nftables syncs for many Services in a test namespace")]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    services: usize,
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The timings of one run.
#[derive(Clone, Copy)]
struct Run {
    generate: Duration,
    full_apply: Duration,
    update_generate: Duration,
    update_apply: Duration,
    replace_apply: Duration,
}

/// A network namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: String) -> anyhow::Result<Netns> {
        let status = Command::new("ip").args(["netns", "add", &name]).status()?;
        if !status.success() {
            bail!("ip netns add {name} failed (root needed)");
        }
        Ok(Netns(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn service(i: usize) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(format!("ns-{}", i % 10)),
            name: Some(format!("svc-{i}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(format!("10.43.{}.{}", i / 250, i % 250 + 1)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Endpoint `j` of service `i` has address 10.42.x.y, unique over the cluster; `generation`
/// moves endpoint 0 of the service to a new address (a restarted pod).
fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let address = |n: usize| format!("10.42.{}.{}", n / 250, n % 250 + 1);
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(format!("ns-{}", i % 10)),
            name: Some(format!("svc-{i}-abcde")),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                format!("svc-{i}"),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: (0..endpoints)
            .map(|j| {
                let n = if j == 0 && generation > 0 {
                    // Beyond every first-generation address.
                    60_000 + i
                } else {
                    i * endpoints + j
                };
                Endpoint {
                    addresses: vec![address(n)],
                    node_name: Some(format!("node-{}", j % 5)),
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    ..Default::default()
                }
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

fn one_run(args: &Args, run: usize) -> anyhow::Result<Run> {
    let netns = Netns::create(format!("capstan-bench-{}-{run}", std::process::id()))?;
    let mut config = ProxyConfig::new("node-0");
    config.netns = Some(netns.0.clone());
    let services: Vec<Service> = (0..args.services).map(service).collect();
    let mut slices: Vec<EndpointSlice> = (0..args.services)
        .map(|i| slice(i, args.endpoints, 0))
        .collect();

    let started = Instant::now();
    let ruleset = build_ruleset(&config, &services, &slices);
    let text = render_full(&config, &ruleset);
    let generate = started.elapsed();
    let started = Instant::now();
    apply(&text, Some(&netns.0)).context("full apply")?;
    let full_apply = started.elapsed();
    if run == 0 {
        if let Some(path) = std::env::var_os("PROXY_BENCH_DUMP") {
            std::fs::write(path, &text).context("writing the ruleset")?;
        }
        eprintln!(
            "ruleset: {} chains, {} map elements, {} lines, {} KiB of nft text",
            ruleset.chains.len(),
            ruleset.service_ips.len(),
            text.lines().count(),
            text.len() / 1024
        );
    }

    let changed = args.services / 2;
    slices[changed] = slice(changed, args.endpoints, 1);
    let started = Instant::now();
    let next = build_ruleset(&config, &services, &slices);
    let update = render_update(&config, Some(&ruleset), &next);
    let update_generate = started.elapsed();
    let started = Instant::now();
    apply(&update, Some(&netns.0)).context("incremental apply")?;
    let update_apply = started.elapsed();
    if run == 0 {
        eprintln!(
            "one-endpoint update: {} nft commands",
            update.lines().count()
        );
    }

    let replace = render_full(&config, &next);
    let started = Instant::now();
    apply(&replace, Some(&netns.0)).context("full replacement")?;
    let replace_apply = started.elapsed();
    Ok(Run {
        generate,
        full_apply,
        update_generate,
        update_apply,
        replace_apply,
    })
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn median(runs: &[Run], field: fn(&Run) -> Duration) -> Duration {
    let mut values: Vec<Duration> = runs.iter().map(field).collect();
    values.sort();
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "{} Services x {} endpoints, {} runs",
        args.services, args.endpoints, args.runs
    );
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let result = one_run(&args, run)?;
        println!(
            "run {}: generate {}, full apply {}, one-endpoint update {} + apply {}, full replacement apply {}",
            run + 1,
            ms(result.generate),
            ms(result.full_apply),
            ms(result.update_generate),
            ms(result.update_apply),
            ms(result.replace_apply),
        );
        runs.push(result);
    }
    if runs.is_empty() {
        return Ok(());
    }
    println!(
        "median generate:                {}",
        ms(median(&runs, |r| r.generate))
    );
    println!(
        "median full apply:              {}",
        ms(median(&runs, |r| r.full_apply))
    );
    println!(
        "median update generate:         {}",
        ms(median(&runs, |r| r.update_generate))
    );
    println!(
        "median update apply:            {}",
        ms(median(&runs, |r| r.update_apply))
    );
    println!(
        "median full replacement apply:  {}",
        ms(median(&runs, |r| r.replace_apply))
    );
    Ok(())
}
