//! `capstan cluster up|down`: a cluster of several nodes on one machine, for tests and demos,
//! as kind makes one from containers.
//!
//! Every node is a network namespace of its own (`capstan-<name>-node-<i>`) whose `eth0` is a
//! veth into a bridge in a "LAN" namespace (`capstan-<name>-lan`, 172.30.0.1/24), the wire the
//! nodes share. Node 1 runs `capstan server` (control plane and its own agent); the others run
//! `capstan agent` joined with a token. The host reaches the API through a forwarder on
//! 127.0.0.1 (kind's port mapping), so `kubectl` on the host just works; nothing else of the
//! host's network is touched.
//!
//! ```text
//!  host: kubectl ──▶ 127.0.0.1:<port> ──forwarder──┐
//!  ┌─ lan ns: br 172.30.0.1 ──────────────────────┼──────────────┬──────────────┐
//!  │   node-1 ns: eth0 172.30.0.11 (server) ◀─────┘  node-2: .12   node-3: .13 …
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Start a cluster of several nodes, each in its own network namespace, and run until
    /// interrupted; then tear it all down.
    Up(UpArgs),
    /// Remove what a cluster left behind (its containers, mounts, cgroups and namespaces),
    /// should `up` have been killed before it could.
    Down(DownArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// How many nodes (the first one runs the control plane).
    #[arg(long, default_value_t = 3)]
    nodes: u8,
    /// The cluster's name, part of its namespaces' names (unique on this machine).
    #[arg(long, default_value = "capstan")]
    name: String,
    /// Where the nodes keep their data, and where the host's kubeconfig is written.
    #[arg(long, default_value = "/var/lib/capstan-cluster")]
    dir: PathBuf,
    /// The host port the API is forwarded to on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 6443)]
    api_port: u16,
    /// Images (OCI or `docker save` archives) to import into every node.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// A flag for the server (repeatable), e.g. `--server-arg=--disable-scheduler`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// A flag for every node's agent, the server's included (repeatable).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
}

#[derive(clap::Args)]
struct DownArgs {
    #[arg(long, default_value = "capstan")]
    name: String,
    #[arg(long, default_value = "/var/lib/capstan-cluster")]
    dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Up(args) => up(args),
        ClusterCommand::Down(args) => {
            down(&args.name, &args.dir);
            Ok(())
        }
    }
}

/// The shared wire's network; the LAN namespace holds the first address.
const LAN_PREFIX: u8 = 24;
const LAN_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
const API_PORT: u16 = 6443;

fn node_address(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, 10 + index)
}

fn node_name(index: u8) -> String {
    format!("node-{index}")
}

fn lan_namespace(cluster: &str) -> String {
    format!("capstan-{cluster}-lan")
}

fn node_namespace(cluster: &str, index: u8) -> String {
    format!("capstan-{cluster}-{}", node_name(index))
}

/// The namespaces of cluster `name`, found by their names (for `down`).
fn namespaces_of(cluster: &str) -> Vec<String> {
    let prefix = format!("capstan-{cluster}-");
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The LAN namespace with its bridge, and node `index`'s namespace plugged into it.
fn make_lan(cluster: &str) -> anyhow::Result<()> {
    let lan = lan_namespace(cluster);
    ip(&["netns", "add", &lan])?;
    ip(&["-n", &lan, "link", "set", "lo", "up"])?;
    ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"])?;
    ip(&[
        "-n",
        &lan,
        "addr",
        "add",
        &format!("{LAN_ADDRESS}/{LAN_PREFIX}"),
        "dev",
        "br0",
    ])?;
    ip(&["-n", &lan, "link", "set", "br0", "up"])
}

fn make_node_namespace(cluster: &str, index: u8) -> anyhow::Result<()> {
    let lan = lan_namespace(cluster);
    let node = node_namespace(cluster, index);
    let port = node_name(index);
    ip(&["netns", "add", &node])?;
    ip(&["-n", &node, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", &node, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &lan,
    ])?;
    ip(&["-n", &lan, "link", "set", &port, "master", "br0", "up"])?;
    ip(&[
        "-n",
        &node,
        "addr",
        "add",
        &format!("{}/{LAN_PREFIX}", node_address(index)),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", &node, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        &node,
        "route",
        "add",
        "default",
        "via",
        &LAN_ADDRESS.to_string(),
    ])
}

/// A process of the cluster, killed when dropped.
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the capstan binary in `namespace` with `args` and waits for its first line on stdout
/// (servers and agents print one once they serve).
fn start_in(namespace: &str, args: &[String], log: &Path) -> anyhow::Result<Member> {
    let exe = std::env::current_exe().context("finding the capstan binary")?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    // nsenter, not `ip netns exec`: that one also mounts a fresh /sys, hiding the cgroup
    // hierarchies the node's containers need.
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{namespace}"))
        .arg("--")
        .arg(&exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .context("starting a node")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if line.is_empty() {
        let _ = child.wait();
        bail!(
            "{} {} stopped at start; its log ({}):\n{}",
            exe.display(),
            args.join(" "),
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    Ok(Member(child))
}

/// The flags every node gets: the nodes have no way out of their LAN, so cluster DNS
/// forwards nothing (the user's `--node-arg=--resolv-conf=…` comes later and wins).
fn node_args(args: &UpArgs) -> Vec<String> {
    let mut flags = vec!["--resolv-conf=".to_string()];
    flags.extend(args.node_args.iter().cloned());
    flags
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 200 {
        bail!("--nodes must be between 1 and 200");
    }
    if !namespaces_of(&args.name).is_empty() {
        bail!(
            "cluster {:?} exists already (its namespaces are there): `capstan cluster down --name {}` removes it",
            args.name,
            args.name
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let result = run_cluster(&args);
    down(&args.name, &args.dir);
    result
}

fn run_cluster(args: &UpArgs) -> anyhow::Result<()> {
    make_lan(&args.name)?;
    for index in 1..=args.nodes {
        make_node_namespace(&args.name, index)?;
    }
    let exe = std::env::current_exe()?;
    let mut members = Vec::new();
    let server_dir = args.dir.join(node_name(1));
    let api = SocketAddr::new(node_address(1).into(), API_PORT);
    let mut server_args: Vec<String> = vec![
        "server".into(),
        "--data-dir".into(),
        server_dir.display().to_string(),
        "--listen".into(),
        api.to_string(),
        "--node-name".into(),
        node_name(1),
    ];
    server_args.extend(args.server_args.iter().cloned());
    server_args.extend(node_args(args));
    members.push(start_in(
        &node_namespace(&args.name, 1),
        &server_args,
        &args.dir.join("node-1.log"),
    )?);
    for index in 2..=args.nodes {
        let token = Command::new(&exe)
            .args(["token", "create", "--data-dir"])
            .arg(&server_dir)
            .output()?;
        if !token.status.success() {
            bail!("token create: {}", String::from_utf8_lossy(&token.stderr));
        }
        let token = String::from_utf8(token.stdout)?.trim().to_string();
        let mut agent_args: Vec<String> = vec![
            "agent".into(),
            "--server".into(),
            format!("https://{api}"),
            "--token".into(),
            token,
            "--node-name".into(),
            node_name(index),
            "--node-ip".into(),
            node_address(index).to_string(),
            "--data-dir".into(),
            args.dir.join(node_name(index)).display().to_string(),
        ];
        agent_args.extend(node_args(args));
        members.push(start_in(
            &node_namespace(&args.name, index),
            &agent_args,
            &args.dir.join(format!("{}.log", node_name(index))),
        )?);
    }
    for image in &args.images {
        for index in 1..=args.nodes {
            let mut import = Command::new(&exe);
            import.arg("image");
            if index == 1 {
                import.arg("--data-dir").arg(&server_dir);
            } else {
                import
                    .arg("--agent-dir")
                    .arg(args.dir.join(node_name(index)));
            }
            let output = import.arg("import").arg(image).output()?;
            if !output.status.success() {
                bail!(
                    "importing {} into {}: {}",
                    image.display(),
                    node_name(index),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.api_port))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{}", args.api_port))?;
        let port = listener.local_addr()?.port();
        let kubeconfig = std::fs::read_to_string(server_dir.join("kubeconfig"))?
            .replace(&format!("https://{api}"), &format!("https://127.0.0.1:{port}"));
        let kubeconfig_path = args.dir.join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig)?;
        let netns = PathBuf::from("/run/netns").join(node_namespace(&args.name, 1));
        let forward = tokio::spawn(forward_api(listener, netns, api));
        println!(
            "cluster {} of {} nodes up; API on https://127.0.0.1:{port}; kubeconfig written to {}",
            args.name,
            args.nodes,
            kubeconfig_path.display()
        );
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let watch_members = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for member in members.iter_mut() {
                    if let Ok(Some(status)) = member.0.try_wait() {
                        return status;
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate.recv() => Ok(()),
            status = watch_members => bail!("a node stopped ({status}); see the logs in {}", args.dir.display()),
            _ = forward => bail!("the API forwarder stopped"),
        }
    })
}

/// kind's port mapping: connections to the host's 127.0.0.1 go to the API server inside the
/// first node's namespace.
async fn forward_api(listener: tokio::net::TcpListener, netns: PathBuf, api: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let netns = netns.clone();
        tokio::spawn(async move {
            let connected = tokio::task::spawn_blocking(move || connect_in(&netns, api)).await;
            match connected {
                Ok(Ok(server)) => {
                    let Ok(mut server) = tokio::net::TcpStream::from_std(server) else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Ok(Err(e)) => tracing::warn!("forwarding to the API: {e:#}"),
                Err(e) => tracing::warn!("forwarding to the API: {e}"),
            }
        });
    }
}

/// A TCP connection opened from inside the network namespace at `netns`: a thread enters it
/// and connects; the socket stays in that namespace after the thread is gone.
fn connect_in(netns: &Path, address: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
    let namespace = std::fs::File::open(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let stream =
                    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            })
            .join()
            .expect("the connecting thread does not panic")
    })
}

/// Removes everything cluster `name` made: kills what still runs in its namespaces (servers,
/// agents, shims, containers), unmounts the nodes' files, removes their cgroups, deletes the
/// namespaces. Idempotent.
fn down(name: &str, dir: &Path) {
    for namespace in namespaces_of(name) {
        // `ip netns pids` lists every process whose network namespace is this one.
        if let Ok(output) = Command::new("ip")
            .args(["netns", "pids", &namespace])
            .output()
        {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        // The server's node keeps its agent's files under `agent/`.
        let agent_dir = if path.join("agent").is_dir() {
            path.join("agent")
        } else {
            path
        };
        capstan_agent::cleanup::remove_node_leftovers(&agent_dir);
    }
    for namespace in namespaces_of(name) {
        let _ = ip(&["netns", "del", &namespace]);
    }
}
