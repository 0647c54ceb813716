//! `ambassador`: the HTTP reverse proxy sidecar. Flags (or environment
//! variables) in, [`sidecar_assembly::ambassador`] does the rest.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sidecar_assembly::admin;
use sidecar_assembly::ambassador::{AccessLog, Ambassador, Config};
use sidecar_assembly::cli::parse_duration;

/// The reverse proxy in front of the application: access log, per-client
/// rate limit, Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "ambassador", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where clients connect.
    #[arg(long, env = "AMBASSADOR_LISTEN", default_value = "0.0.0.0:9000")]
    listen: SocketAddr,
    /// The application to forward to (an IP address and port).
    #[arg(long, env = "AMBASSADOR_UPSTREAM", default_value = "127.0.0.1:8080")]
    upstream: SocketAddr,
    /// Where /metrics and /healthz are served.
    #[arg(long, env = "AMBASSADOR_METRICS", default_value = "0.0.0.0:9901")]
    metrics: SocketAddr,
    /// Requests per second allowed per client; 0 turns the limit off.
    #[arg(long, env = "AMBASSADOR_RATE", default_value_t = 50.0)]
    rate: f64,
    /// Requests a client may make at once above the rate.
    #[arg(long, env = "AMBASSADOR_BURST", default_value_t = 100.0)]
    burst: f64,
    /// Clients whose rate is tracked at most; idle ones are forgotten first.
    #[arg(long, env = "AMBASSADOR_MAX_CLIENTS", default_value_t = 65_536)]
    max_clients: usize,
    /// Take the client from the last X-Forwarded-For entry (the address
    /// the load balancer in front saw) instead of the peer.
    #[arg(long, env = "AMBASSADOR_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// How long connecting to the upstream may take (502 after).
    #[arg(long, env = "AMBASSADOR_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// How long the upstream may take to answer (504 after).
    #[arg(long, env = "AMBASSADOR_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    upstream_timeout: Duration,
    /// How long requests in flight may take to finish after SIGTERM.
    #[arg(long, env = "AMBASSADOR_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Write no access log.
    #[arg(long, env = "AMBASSADOR_NO_ACCESS_LOG")]
    no_access_log: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GET /healthz on the metrics port; exit 0 if it answers 200. For the
    /// container's health check: the image has no shell and no curl.
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
                eprintln!("ambassador: unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let config = Config {
        listen: cli.listen,
        upstream: cli.upstream,
        metrics: cli.metrics,
        rate_limit: (cli.rate != 0.0).then_some((cli.rate, cli.burst)),
        max_clients: cli.max_clients,
        trust_forwarded_for: cli.trust_forwarded_for,
        connect_timeout: cli.connect_timeout,
        upstream_timeout: cli.upstream_timeout,
        drain_timeout: cli.drain_timeout,
    };
    let log = if cli.no_access_log {
        AccessLog::disabled()
    } else {
        AccessLog::to_writer(Box::new(std::io::stdout()), 16_384)
    };
    let ambassador = match Ambassador::bind(&config, log).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ambassador: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shown =
        |a: std::io::Result<SocketAddr>| a.map_or_else(|e| e.to_string(), |a| a.to_string());
    let limit = match config.rate_limit {
        Some((rate, burst)) => format!("rate limit {rate}/s burst {burst} per client"),
        None => "no rate limit".to_owned(),
    };
    eprintln!(
        "ambassador: proxying {} to {}, metrics on {}, {limit}",
        shown(ambassador.local_addr()),
        config.upstream,
        shown(ambassador.metrics_addr()),
    );
    let stop = async {
        if let Err(e) = sidecar_assembly::shutdown::signal().await {
            eprintln!("ambassador: cannot watch for signals: {e}");
            std::future::pending::<()>().await;
        }
    };
    ambassador.run(stop).await;
    eprintln!("ambassador: stopped");
    ExitCode::SUCCESS
}
