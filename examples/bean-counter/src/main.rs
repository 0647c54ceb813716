//! `bean-counter`: the coin counter service, its container health check,
//! and a command-line counter.
//!
//! ```text
//! bean-counter [serve]                 serve on $PORT (8080), bucket $BUCKET, configuration $CONFIG_PATH
//! bean-counter healthcheck             exit 0 if the local service is healthy
//! bean-counter count [--json] [--repeat N] [--annotate OUT.png] [--peak-memory] FILE...
//! ```

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bean_counter::bucket::Bucket;
use bean_counter::config::Config;
use bean_counter::service::{router, AppState};
use bean_counter::{decode, report};

const DEFAULT_PORT: u16 = 8080;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some("healthcheck") => healthcheck(),
        Some("count") => count(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!(
                "usage: bean-counter [serve] | healthcheck | count [OPTIONS] FILE...\n\
                 serve: the coin counter on $PORT (default 8080), photos from bucket $BUCKET\n\
                 healthcheck: GET /healthz on the local service; exit 0 if it answers 200\n\
                 count: count photos; --json prints the report, --repeat N times each count,\n\
                 \x20 --annotate OUT.png draws the coins, --peak-memory prints the peak resident memory"
            );
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other} (see --help)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bean-counter: {message}");
            ExitCode::FAILURE
        }
    }
}

fn port() -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(p) if !p.is_empty() => p
            .parse()
            .map_err(|_| format!("PORT={p} is not a port number")),
        _ => Ok(DEFAULT_PORT),
    }
}

fn serve() -> Result<(), String> {
    let port = port()?;
    // A configuration that was asked for and cannot be read stops the
    // service: running without it would hide the failure.
    if let Ok(path) = std::env::var("CONFIG_PATH") {
        if !path.is_empty() {
            let config = Config::load(&path)?;
            eprintln!("bean-counter: configuration {path}: {}", config.summary());
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let bucket = match std::env::var("BUCKET") {
            Ok(name) if !name.is_empty() => Some(Bucket::from_env(name).await),
            _ => None,
        };
        match &bucket {
            Some(b) => eprintln!("bean-counter: counting photos of bucket {}", b.name),
            None => eprintln!("bean-counter: BUCKET is not set: /countme/ answers 503"),
        }
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("listening on {addr}: {e}"))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("listening on {addr}: {e}"))?;
        eprintln!("bean-counter: listening on {bound}");
        let app = router(Arc::new(AppState::new(bucket)));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| format!("serving: {e}"))
    })
}

/// Resolves on SIGTERM (how a task is stopped) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = ctrl_c => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    eprintln!("bean-counter: shutting down");
}

/// `GET /healthz` on the local service, with plain sockets: the image has
/// no shell and no curl.
fn healthcheck() -> Result<(), String> {
    let port = port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("healthcheck: connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("healthcheck: {e}"))?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("healthcheck: sending to {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(4096)
        .read_to_end(&mut answer)
        .map_err(|e| format!("healthcheck: reading from {addr}: {e}"))?;
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("healthcheck: {addr} answered {status_line:?}"))
    }
}

/// Counts photos from files; with `--repeat N`, counts each N times and
/// prints the time of each run (decode and count, file already read).
fn count(args: &[String]) -> Result<(), String> {
    let mut json = false;
    let mut repeat = 0usize;
    let mut files = Vec::new();
    let mut annotate_to: Option<String> = None;
    let mut peak_memory = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--peak-memory" => peak_memory = true,
            "--annotate" => {
                annotate_to = Some(args.next().ok_or("--annotate needs a file")?.clone());
            }
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--repeat needs a positive number")?;
            }
            file => files.push(file.to_owned()),
        }
    }
    if files.is_empty() {
        return Err("count: name at least one photo".into());
    }
    let mut failed = false;
    for file in files {
        let bytes = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
        let mut times_ms = Vec::new();
        let mut result = None;
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            let counted = decode::decode(&bytes)
                .and_then(|image| bean_counter::count_image(&image.rgb, image.original));
            times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            if let (Some(out), Ok(counted)) = (&annotate_to, &counted) {
                let image = decode::decode(&bytes).map_err(|e| e.to_string())?;
                bean_counter::annotate::annotate(&image.rgb, counted)
                    .save(out)
                    .map_err(|e| format!("{out}: {e}"))?;
            }
            result = Some(counted);
        }
        match result {
            Some(Ok(counted)) if json => {
                let document = serde_json::json!({
                    "file": file,
                    "report": report::report(&counted),
                    "times_ms": if repeat > 0 { Some(&times_ms) } else { None },
                });
                println!("{document}");
            }
            Some(Ok(counted)) => {
                let r = report::report(&counted);
                println!(
                    "{file}: {} ({} pennies, {} nickels, {} dimes, {} quarters)",
                    r.total, r.counts.penny, r.counts.nickel, r.counts.dime, r.counts.quarter
                );
                if repeat > 0 {
                    let mut sorted = times_ms.clone();
                    sorted.sort_by(f64::total_cmp);
                    println!("  {repeat} runs, median {:.1} ms", sorted[sorted.len() / 2]);
                }
            }
            Some(Err(e)) => {
                println!("{file}: error: {e}");
                failed = true;
            }
            None => {}
        }
    }
    if peak_memory {
        // The high-water mark of resident memory, as the kernel counts it.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            println!("peak memory: {}", line.trim_start_matches("VmHWM:").trim());
        }
    }
    if failed {
        Err("some photos could not be counted".into())
    } else {
        Ok(())
    }
}
