//! `hail`: the one binary. `hail server` runs the engine; every other
//! subcommand is a client or a low-level tool. This file only parses flags and
//! wires the libraries together.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hail",
    version,
    about = "Hail a container: a local-first Fargate"
)]
struct Cli {
    /// Data directory (state, images, tasks).
    #[arg(long, global = true, env = "HAIL_DATA_DIR", default_value = default_data_dir())]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

fn default_data_dir() -> &'static str {
    "/var/lib/hail"
}

#[derive(Subcommand)]
enum Command {
    /// Print the version of this binary.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "hail {} (data dir {})",
                env!("CARGO_PKG_VERSION"),
                cli.data_dir.display()
            );
            Ok(())
        }
    }
}
