//! `capstan`: one binary for a whole cluster. Subcommands wire the library crates together;
//! each lives in `cmd/<name>.rs`.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "A container orchestrator that speaks the Kubernetes API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// mimalloc instead of glibc's malloc: the API server allocates and frees JSON trees for every
/// request, and under load glibc's arenas spent a third of its CPU in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Subcommand)]
enum Command {
    /// Run a cluster on this machine: the control plane on an embedded store, and this
    /// machine's node agent.
    Server(cmd::server::Args),
    /// Print the admin kubeconfig of a server's data directory.
    Kubeconfig(cmd::kubeconfig::Args),
    /// Join a cluster as a node: run the node agent against a server elsewhere.
    Agent(cmd::agent::Args),
    /// A cluster of several nodes on this machine, each in its own network namespace (for
    /// tests and demos, as kind does).
    Cluster(cmd::cluster::Args),
    /// Make join tokens for new nodes.
    Token(cmd::token::Args),
    /// Manage the images of this node.
    Image(cmd::image::Args),
    /// Run hollow nodes against a server: simulated agents for scale tests.
    Sim(cmd::sim::Args),
    /// Run one container for the agent (internal).
    #[command(hide = true)]
    Shim(cmd::shim::Args),
    /// Run a command in a container for the agent (internal).
    #[command(hide = true)]
    ExecShim(cmd::exec_shim::Args),
    /// Hold a pod's shared PID namespace (internal).
    #[command(hide = true)]
    Pause(cmd::pause::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The shim logs to its own file through stderr and must not start any thread early.
    let command = match cli.command {
        Command::Shim(args) => return cmd::shim::run(args),
        Command::ExecShim(args) => return cmd::exec_shim::run(args),
        Command::Pause(args) => return cmd::pause::run(args),
        command => command,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match command {
        Command::Server(args) => cmd::server::run(args),
        Command::Kubeconfig(args) => cmd::kubeconfig::run(args),
        Command::Agent(args) => cmd::agent::run(args),
        Command::Cluster(args) => cmd::cluster::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Shim(_) | Command::ExecShim(_) | Command::Pause(_) => Ok(()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
