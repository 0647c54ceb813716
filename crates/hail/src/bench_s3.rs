//! `hail bench s3`: the object store's PUT and GET of small (4 KiB) and
//! large (1 MiB) objects through a real `hail server` over signed HTTP,
//! with 1 and N clients — beside the rate at which this disk completes
//! fsyncs, the bound every acknowledged PUT pays for (a PUT fsyncs its data
//! file, its directory and the database commit).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use http::Method;

use crate::bench_api::start_server;
use crate::bench_cmd::{series, Series};
use crate::client::Client;

#[derive(Args)]
pub struct S3Args {
    /// Requests per series.
    #[arg(long, default_value_t = 400)]
    requests: usize,
    /// Clients in flight at once in the concurrent series.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Scratch directory (the server's data dir).
    #[arg(long, default_value = "/var/tmp/hail-bench-s3")]
    work_dir: PathBuf,
}

/// fsyncs per second of a 4 KiB write on the filesystem of `dir`.
fn fsync_rate(dir: &Path, n: usize) -> anyhow::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let started = Instant::now();
    for _ in 0..n {
        f.write_all(&block)?;
        f.sync_data()?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

pub async fn run(args: S3Args) -> anyhow::Result<()> {
    if args.requests == 0 || args.concurrency == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let data_dir = args.work_dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let (server, endpoint) = start_server(
        &data_dir,
        &["--bridge", "hailbench2", "--subnet", "10.216.8.0/22"],
        &[
            "--netns-prefix",
            "hailbenchs-",
            "--cgroup-root",
            "hail-bench-s3",
        ],
    )
    .await?;
    let client = Arc::new(Client::for_data_dir(&data_dir, &endpoint)?);
    let (status, body) = client.s3(Method::PUT, "/bench", Bytes::new()).await?;
    if !status.is_success() {
        bail!("create bucket: {status} {}", String::from_utf8_lossy(&body));
    }
    let fsyncs = fsync_rate(&data_dir, 200).context("measure the disk's fsync rate")?;

    let mut rows: Vec<(Series, usize)> = Vec::new();
    for (size, label) in [(4096usize, "4 KiB"), (1 << 20, "1 MiB")] {
        let payload = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        for concurrency in [1, args.concurrency] {
            let client = client.clone();
            let payload = payload.clone();
            let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let name = format!("PUT {label}, {concurrency} client(s)");
            let s = series(&name, args.requests, concurrency, move || {
                let client = client.clone();
                let payload = payload.clone();
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    let started = Instant::now();
                    let path = format!("/bench/{size}/{n}");
                    let (status, _) = client.s3(Method::PUT, &path, payload).await?;
                    if !status.is_success() {
                        bail!("PUT {path}: {status}");
                    }
                    Ok(started.elapsed().as_secs_f64() * 1e3)
                }
            })
            .await?;
            rows.push((s, size));
        }
        for concurrency in [1, args.concurrency] {
            let client = client.clone();
            let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let total = args.requests;
            let name = format!("GET {label}, {concurrency} client(s)");
            let s = series(&name, args.requests, concurrency, move || {
                let client = client.clone();
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % total;
                async move {
                    let started = Instant::now();
                    let path = format!("/bench/{size}/{n}");
                    let (status, body) = client.s3(Method::GET, &path, Bytes::new()).await?;
                    if !status.is_success() || body.len() != size {
                        bail!("GET {path}: {status}, {} bytes", body.len());
                    }
                    Ok(started.elapsed().as_secs_f64() * 1e3)
                }
            })
            .await?;
            rows.push((s, size));
        }
    }
    drop(server);
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("disk: {fsyncs:.0} fsyncs/s (4 KiB write + fdatasync, same filesystem)");
    println!("| series | requests | p50 ms | p99 ms | ops/s | MB/s | ops/s ÷ fsyncs/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (s, size) in &rows {
        let ops = s.ops_per_sec();
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} | {:.1} | {:.2} |",
            s.name(),
            s.len(),
            s.percentile(50.0),
            s.percentile(99.0),
            ops,
            ops * *size as f64 / 1e6,
            ops / fsyncs
        );
    }
    Ok(())
}
