//! `hail bench run-task`: the ECS API path end to end. A real `hail server`
//! on a scratch data dir, a signed RunTask over HTTP, and the time until the
//! task's container executes its first instruction (a static probe that
//! prints the clock) — side by side with `podman run` of the same image in
//! the same run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use hail_api::Service;
use serde_json::{json, Value};

use crate::bench_cmd::{build_probe_image, now_ns, podman_import, podman_launch, series, Series};
use crate::client::Client;

#[derive(Args)]
pub struct RunTaskArgs {
    /// Launches per series.
    #[arg(long, default_value_t = 200)]
    launches: usize,
    /// RunTask clients in flight at once in the concurrent series.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Skip the podman series.
    #[arg(long)]
    no_podman: bool,
    /// Scratch directory (data dir, image, static probe binary).
    #[arg(long, default_value = "/var/tmp/hail-bench-api")]
    work_dir: PathBuf,
}

const IMAGE: &str = "hail.bench/stamp:latest";
const FAMILY: &str = "bench-probe";

/// The server under test, stopped when the benchmark ends.
pub(crate) struct BenchServer {
    child: Child,
}

impl Drop for BenchServer {
    /// A graceful stop (SIGTERM), so that the server empties its namespace
    /// pool as it would on any shutdown; SIGKILL if it has not exited in 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hail server` on `data_dir` with host flags `host` (own bridge,
/// subnet, namespace prefix, cgroup root) on a free loopback port, and
/// waits until it listens.
pub(crate) async fn start_server(
    data_dir: &Path,
    host: &[&str],
    more_host: &[&str],
) -> anyhow::Result<(BenchServer, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let exe = std::env::current_exe()?;
    let server = BenchServer {
        child: Command::new(&exe)
            .arg("--data-dir")
            .arg(data_dir)
            .args(host)
            .args(more_host)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metadata-port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start hail server")?,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("hail server did not listen on {endpoint}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((server, endpoint))
}

pub async fn run(args: RunTaskArgs) -> anyhow::Result<()> {
    if args.launches == 0 || args.concurrency == 0 {
        bail!("--launches and --concurrency must be at least 1");
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let rootfs_tar = build_probe_image(&args.work_dir)?;
    let data_dir = args.work_dir.join("data");
    // A fresh data dir: tasks of an earlier run would only slow the lists.
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    hail_runtime::image::store::ImageStore::open(&data_dir)?.import(
        IMAGE,
        &rootfs_tar,
        &hail_runtime::progress::NoProgress,
    )?;

    let (server, endpoint) = start_server(
        &data_dir,
        &["--bridge", "hailbench1", "--subnet", "10.216.4.0/22"],
        &[
            "--netns-prefix",
            "hailbencha-",
            "--cgroup-root",
            "hail-bench-api",
        ],
    )
    .await?;
    let client = Arc::new(Client::for_data_dir(&data_dir, &endpoint)?);
    client
        .call(
            Service::Ecs,
            "CreateCluster",
            json!({"clusterName": "default"}),
        )
        .await?;
    client
        .call(
            Service::Ecs,
            "RegisterTaskDefinition",
            json!({
                "family": FAMILY,
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [{
                    "name": "probe",
                    "image": IMAGE,
                    "command": ["/bin/stamp"],
                }],
            }),
        )
        .await?;

    eprintln!("warming up (layer unpack, namespace pool)…");
    for _ in 0..5 {
        launch(&client, &data_dir).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut results: Vec<Series> = Vec::new();
    for concurrency in [1, args.concurrency] {
        let name = if concurrency == 1 {
            "hail RunTask → first instruction, sequential".to_owned()
        } else {
            format!("hail RunTask → first instruction, {concurrency} clients")
        };
        let client = client.clone();
        let data_dir = data_dir.clone();
        results.push(
            series(&name, args.launches, concurrency, move || {
                let client = client.clone();
                let data_dir = data_dir.clone();
                async move { launch(&client, &data_dir).await }
            })
            .await?,
        );
    }
    drop(server);
    if !args.no_podman {
        podman_import(&rootfs_tar)?;
        let _ = podman_launch("bridge").await?;
        for concurrency in [1, args.concurrency] {
            let name = if concurrency == 1 {
                "podman run --rm (bridge network), sequential".to_owned()
            } else {
                format!("podman run --rm (bridge network), {concurrency} at a time")
            };
            results.push(
                series(&name, args.launches, concurrency, || async {
                    podman_launch("bridge").await
                })
                .await?,
            );
        }
    }
    println!("| series | launches | p50 ms | p99 ms | launches/s |");
    println!("|---|---:|---:|---:|---:|");
    for s in &results {
        println!("{}", s.row());
    }
    if results.len() == 4 {
        for (hail, podman, label) in [(0, 2, "sequential"), (1, 3, "concurrent")] {
            println!(
                "hail p50 / podman p50 = {:.3} ({label})",
                results[hail].percentile(50.0) / results[podman].percentile(50.0)
            );
        }
    }
    Ok(())
}

/// One RunTask: the call, then the probe's timestamp from the task's log
/// (read from the data dir, so measuring costs the server nothing), then the
/// wait for the task to read STOPPED — not in the latency, but in the wall
/// time launches/s counts: a rate sustained is one whose teardowns keep up,
/// not one that piles stopping tasks up until the host's capacity runs out.
async fn launch(client: &Client, data_dir: &Path) -> anyhow::Result<f64> {
    let (ms, arn) = launch_until_first_instruction(client, data_dir).await?;
    wait_until_stopped(client, &arn, Duration::from_secs(60)).await?;
    Ok(ms)
}

/// Polls DescribeTasks until the task reads STOPPED.
pub(crate) async fn wait_until_stopped(
    client: &Client,
    arn: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = client
            .call(Service::Ecs, "DescribeTasks", json!({"tasks": [arn]}))
            .await?;
        if out["tasks"][0]["lastStatus"] == "STOPPED" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("task {arn} not STOPPED within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn launch_until_first_instruction(
    client: &Client,
    data_dir: &Path,
) -> anyhow::Result<(f64, String)> {
    let requested = now_ns();
    let out: Value = client
        .call(
            Service::Ecs,
            "RunTask",
            json!({
                "taskDefinition": FAMILY,
                "launchType": "FARGATE",
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-bench"]}},
            }),
        )
        .await?;
    let arn = out["tasks"][0]["taskArn"]
        .as_str()
        .with_context(|| format!("RunTask answered without a task: {out}"))?;
    let id = arn.rsplit('/').next().unwrap_or(arn);
    let log = data_dir
        .join("tasks")
        .join(id)
        .join("logs")
        .join("probe.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(records) = hail_runtime::logs::read_all(&log) {
            if let Some(stamp) = records
                .first()
                .and_then(|r| r.log.trim().parse::<i128>().ok())
            {
                return Ok(((stamp - requested) as f64 / 1e6, arn.to_owned()));
            }
        }
        if Instant::now() > deadline {
            bail!("task {id} printed no timestamp within 30 s");
        }
        // The latency is the probe's own timestamp, so how soon it is read
        // does not change it; reading less often leaves the CPU to the
        // launches under test.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
