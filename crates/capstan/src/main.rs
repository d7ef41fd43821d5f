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

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: API server on an embedded store.
    Server(cmd::server::Args),
    /// Print the admin kubeconfig of a server's data directory.
    Kubeconfig(cmd::kubeconfig::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => cmd::server::run(args),
        Command::Kubeconfig(args) => cmd::kubeconfig::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
