//! `capstan shim DIR`: the per-container shim the agent starts (see `capstan_runtime::shim`).
//! Not for people: it is hidden from `--help`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The container's directory, holding its bundle and the agent's `meta.json`.
    dir: PathBuf,
}

pub fn run(args: Args) -> std::process::ExitCode {
    // libcontainer reports through tracing: its warnings and errors go to the shim log (stderr).
    // libcgroups warns about every v1 controller the host lacks; only its errors matter.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_SHIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libcgroups=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // The shim stays single-threaded until the container runs: libcontainer clones processes.
    std::process::ExitCode::from(capstan_runtime::shim::run(&args.dir).clamp(0, 255) as u8)
}
