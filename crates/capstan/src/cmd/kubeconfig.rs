//! `capstan kubeconfig`: prints the admin kubeconfig a server wrote.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory.
    #[arg(long, default_value = "/var/lib/capstan")]
    data_dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = args.data_dir.join("kubeconfig");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (has `capstan server` run there?)",
            path.display()
        )
    })?;
    print!("{text}");
    Ok(())
}
