//! `capstan exec-shim DIR [--tty] -- ARGS`: runs a command inside a running container for the
//! agent (see `capstan_runtime::exec`). Not for people: hidden from `--help`.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The container's directory.
    dir: PathBuf,
    /// Give the command a terminal.
    #[arg(long)]
    tty: bool,
    /// With --tty: the file holding `cols rows`, read again on each SIGWINCH.
    #[arg(long)]
    size_file: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    args: Vec<String>,
}

pub fn run(args: Args) -> std::process::ExitCode {
    let request = capstan_runtime::exec::ExecRequest {
        args: args.args,
        tty: args.tty,
        size_file: args.size_file,
    };
    let code = capstan_runtime::exec::run(&args.dir, &request);
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
