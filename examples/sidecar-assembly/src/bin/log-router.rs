//! `log-router`: the FireLens-style log router sidecar. Flags (or
//! environment variables) in, [`sidecar_assembly::log_router`] does the
//! rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sidecar_assembly::admin;
use sidecar_assembly::cli::parse_duration;
use sidecar_assembly::forward::MAX_FRAME_BYTES;
use sidecar_assembly::log_router::{Config, LogRouter};

/// Receives the task's logs over the Fluent Forward protocol and writes
/// each record as a JSON line.
#[derive(Debug, Parser)]
#[command(name = "log-router", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The Forward protocol port.
    #[arg(long, env = "LOG_ROUTER_LISTEN", default_value = "0.0.0.0:24224")]
    listen: SocketAddr,
    /// Where /metrics and /healthz are served.
    #[arg(long, env = "LOG_ROUTER_METRICS", default_value = "0.0.0.0:2020")]
    metrics: SocketAddr,
    /// Also append the records to this file.
    #[arg(long, env = "LOG_ROUTER_OUTPUT")]
    output: Option<PathBuf>,
    /// Write nothing to standard output (only to --output).
    #[arg(long, env = "LOG_ROUTER_NO_STDOUT")]
    no_stdout: bool,
    /// Route only records whose tag matches (`*` wildcards); repeatable or
    /// comma-separated. Default: all.
    #[arg(long = "match", env = "LOG_ROUTER_MATCH", value_delimiter = ',')]
    matches: Vec<String>,
    /// Largest frame accepted, in bytes.
    #[arg(long, env = "LOG_ROUTER_MAX_FRAME_BYTES", default_value_t = MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// Forward connections served at once.
    #[arg(long, env = "LOG_ROUTER_MAX_CONNECTIONS", default_value_t = 256)]
    max_connections: usize,
    /// How long senders may stay connected after SIGTERM.
    #[arg(long, env = "LOG_ROUTER_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GET /healthz on the metrics port; exit 0 if it answers 200.
    Healthcheck {
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { timeout }) = cli.command {
        return match admin::healthcheck(admin::local_address(cli.metrics), timeout).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("log-router: unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = Config {
        listen: cli.listen,
        metrics: cli.metrics,
        stdout: !cli.no_stdout,
        output: cli.output,
        matches: cli.matches,
        max_frame_bytes: cli.max_frame_bytes,
        max_connections: cli.max_connections,
        drain_timeout: cli.drain_timeout,
    };
    let router = match LogRouter::bind(&config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("log-router: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shown =
        |a: std::io::Result<SocketAddr>| a.map_or_else(|e| e.to_string(), |a| a.to_string());
    let mut sinks = Vec::new();
    if config.stdout {
        sinks.push("stdout".to_owned());
    }
    if let Some(path) = &config.output {
        sinks.push(path.display().to_string());
    }
    eprintln!(
        "log-router: receiving Forward on {}, metrics on {}, writing to {}",
        shown(router.local_addr()),
        shown(router.metrics_addr()),
        if sinks.is_empty() {
            "nothing".to_owned()
        } else {
            sinks.join(" and ")
        },
    );
    let stop = async {
        if let Err(e) = sidecar_assembly::shutdown::signal().await {
            eprintln!("log-router: cannot watch for signals: {e}");
            std::future::pending::<()>().await;
        }
    };
    router.run(stop).await;
    eprintln!("log-router: stopped");
    ExitCode::SUCCESS
}
