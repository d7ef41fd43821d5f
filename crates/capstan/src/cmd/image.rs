//! `capstan image import|ls|rm`: the node's image store, as `ctr images` is for containerd.

use std::path::PathBuf;

use anyhow::Context;
use capstan_runtime::image::ImageStore;

#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory (the built-in agent keeps images in `DIR/agent/images`).
    #[arg(long, default_value = "/var/lib/capstan")]
    data_dir: PathBuf,
    /// The agent's directory, when it is not under the data directory (`capstan agent`).
    #[arg(long)]
    agent_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Import images from an OCI archive or a `docker save` tarball.
    Import { file: PathBuf },
    /// List the images on this node.
    Ls,
    /// Remove images by name or ID.
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = args
        .agent_dir
        .unwrap_or_else(|| args.data_dir.join("agent"))
        .join("images");
    let store = ImageStore::open(&dir)
        .with_context(|| format!("opening the image store in {}", dir.display()))?;
    match args.command {
        Command::Import { file } => {
            let images = store
                .import(&file)
                .with_context(|| format!("importing {}", file.display()))?;
            for image in images {
                let name = image
                    .references
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.config_digest.clone());
                println!("imported {name} ({})", short_id(&image.config_digest));
            }
        }
        Command::Ls => {
            println!("{:<60} {:<14} {:>10}", "IMAGE", "IMAGE ID", "SIZE");
            for image in store.list()? {
                let names = if image.references.is_empty() {
                    vec!["<none>".to_string()]
                } else {
                    image.references.clone()
                };
                for name in names {
                    println!(
                        "{name:<60} {:<14} {:>10}",
                        short_id(&image.config_digest),
                        human_size(image.size)
                    );
                }
            }
        }
        Command::Rm { images } => {
            for image in images {
                store
                    .remove(&image)
                    .with_context(|| format!("removing {image}"))?;
                println!("deleted {image}");
            }
        }
    }
    Ok(())
}

/// The first 13 hex digits of an image ID, as `crictl images` shows it.
fn short_id(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(13)
        .collect()
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1}MB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1}kB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}
