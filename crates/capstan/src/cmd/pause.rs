//! `capstan pause [--init]`: the PID 1 of a pod's shared PID namespace (see
//! `capstan_runtime::pause`). Not for people: hidden from `--help`.

#[derive(clap::Args)]
pub struct Args {
    /// Be the namespace's first process (without it: make the namespace and start one).
    #[arg(long)]
    init: bool,
}

pub fn run(args: Args) -> std::process::ExitCode {
    let code = if args.init {
        capstan_runtime::pause::run_init()
    } else {
        match std::env::current_exe() {
            Ok(exe) => capstan_runtime::pause::run_outer(&exe),
            Err(_) => 1,
        }
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
