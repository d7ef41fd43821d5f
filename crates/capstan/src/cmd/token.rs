//! `capstan token create`: a join token for `capstan agent --token`, as `k3s token create`.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Make a join token and print it.
    Create {
        /// The server's data directory.
        #[arg(long, default_value = "/var/lib/capstan")]
        data_dir: PathBuf,
        /// How long the token can be used to join, in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Create {
            data_dir,
            ttl_hours,
        } => {
            let ttl = std::time::Duration::from_secs(ttl_hours * 3600);
            let token = capstan_apiserver::join::create_token(&data_dir.join("tls"), ttl)
                .with_context(|| {
                    format!(
                        "making a token in {} (has `capstan server` run there?)",
                        data_dir.display()
                    )
                })?;
            println!("{token}");
        }
    }
    Ok(())
}
