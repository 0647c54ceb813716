//! `hail bench …`: performance measured against the named peers, side by side
//! in one run, so a noisy shared machine affects both alike.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use hail_runtime::runtime::{Runtime, RuntimeConfig};
use hail_runtime::spec::{ContainerSpec, NetworkMode, TaskSpec};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Start latency: start request → the container's first instruction, vs `podman run`.
    Start(StartArgs),
    /// The ECS API path: RunTask over HTTP → the container's first instruction, vs `podman run`.
    RunTask(crate::bench_api::RunTaskArgs),
    /// The object store: PUT/GET of 4 KiB and 1 MiB objects, 1 and N clients, vs the disk's fsync rate.
    S3(crate::bench_s3::S3Args),
    /// Container-on-Demand: upload acknowledged → thumbnail stored, vs the workshop's ffmpeg command.
    Thumbnail(crate::bench_thumbs::ThumbnailArgs),
    /// The load balancer: requests/s and added latency for small responses, vs nginx as a proxy.
    Gateway(crate::bench_gateway::GatewayArgs),
    /// Sidecar-Assembly: RunTask → RUNNING of the four-container task vs the app alone.
    Assembly(crate::bench_assembly::AssemblyArgs),
    /// Services following demand: load start → a new task serving, and the first request to a service at zero tasks.
    Scaling(crate::bench_scaling::ScalingArgs),
}

#[derive(Args)]
pub struct StartArgs {
    /// Launches per series.
    #[arg(long, default_value_t = 200)]
    launches: usize,
    /// Launches in flight at once in the concurrent series.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Skip the podman series.
    #[arg(long)]
    no_podman: bool,
    /// Scratch directory (data dir, image, static probe binary).
    #[arg(long, default_value = "/var/tmp/hail-bench")]
    work_dir: PathBuf,
}

const STAMP_SOURCE: &str = include_str!("../../../benches/fixtures/stamp.c");
const IMAGE: &str = "hail.bench/stamp:latest";
const PODMAN_IMAGE: &str = "localhost/hail-bench-stamp:latest";

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Start(args) => start_latency(args).await,
        BenchCommand::RunTask(args) => crate::bench_api::run(args).await,
        BenchCommand::S3(args) => crate::bench_s3::run(args).await,
        BenchCommand::Thumbnail(args) => crate::bench_thumbs::run(args).await,
        BenchCommand::Gateway(args) => crate::bench_gateway::run(args).await,
        BenchCommand::Assembly(args) => crate::bench_assembly::run(args).await,
        BenchCommand::Scaling(args) => crate::bench_scaling::run(args).await,
    }
}

/// One series' latencies in milliseconds and its wall time.
pub(crate) struct Series {
    name: String,
    latencies_ms: Vec<f64>,
    wall: Duration,
}

impl Series {
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn len(&self) -> usize {
        self.latencies_ms.len()
    }

    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall.as_secs_f64()
    }

    pub(crate) fn row(&self) -> String {
        format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            self.name,
            self.latencies_ms.len(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.latencies_ms.len() as f64 / self.wall.as_secs_f64()
        )
    }
}

pub(crate) fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128
}

async fn start_latency(args: StartArgs) -> anyhow::Result<()> {
    if args.launches == 0 || args.concurrency == 0 {
        bail!("--launches and --concurrency must be at least 1");
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let rootfs_tar = build_probe_image(&args.work_dir)?;
    let data_dir = args.work_dir.join("data");
    let mut config = RuntimeConfig::new(&data_dir);
    config.network.bridge = "hailbench0".to_owned();
    config.network.subnet = "10.216.0.0/22".parse()?;
    config.network.netns_prefix = "hailbench-".to_owned();
    config.network.pool_size = args.concurrency * 2;
    config.cgroup_root = "hail-bench".to_owned();
    let runtime = Arc::new(Runtime::open(config).await?);
    runtime.recover().await?;
    runtime
        .images()
        .import(IMAGE, &rootfs_tar, &hail_runtime::progress::NoProgress)?;

    eprintln!("warming up (layer unpack, namespace pool)…");
    for _ in 0..5 {
        hail_launch(&runtime).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut results = Vec::new();
    results.push(
        series("hail (awsvpc netns), sequential", args.launches, 1, {
            let runtime = runtime.clone();
            move || {
                let runtime = runtime.clone();
                async move { hail_launch(&runtime).await }
            }
        })
        .await?,
    );
    results.push(
        series(
            &format!("hail (awsvpc netns), {} at a time", args.concurrency),
            args.launches,
            args.concurrency,
            {
                let runtime = runtime.clone();
                move || {
                    let runtime = runtime.clone();
                    async move { hail_launch(&runtime).await }
                }
            },
        )
        .await?,
    );
    // The namespaces left in the pool would otherwise outlive the bench.
    runtime.networks().drain_pool().await?;
    // The floor: runc alone on a prepared bundle (its own empty network
    // namespace, no image resolution, no supervision, no logs).
    let bundle = prepare_runc_bundle(&args.work_dir, &rootfs_tar)?;
    for concurrency in [1, args.concurrency] {
        let bundle = bundle.clone();
        let name = if concurrency == 1 {
            "runc run (bare bundle), sequential".to_owned()
        } else {
            format!("runc run (bare bundle), {concurrency} at a time")
        };
        results.push(
            series(&name, args.launches, concurrency, move || {
                let bundle = bundle.clone();
                async move { runc_launch(&bundle).await }
            })
            .await?,
        );
    }
    if !args.no_podman {
        podman_import(&rootfs_tar)?;
        for (network, label) in [("bridge", "bridge network"), ("none", "no network")] {
            let _ = podman_launch(network).await?;
            results.push(
                series(
                    &format!("podman run --rm ({label}), sequential"),
                    args.launches,
                    1,
                    move || async move { podman_launch(network).await },
                )
                .await?,
            );
            results.push(
                series(
                    &format!("podman run --rm ({label}), {} at a time", args.concurrency),
                    args.launches,
                    args.concurrency,
                    move || async move { podman_launch(network).await },
                )
                .await?,
            );
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "| series | launches | p50 ms | p99 ms | launches/s |")?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    for s in &results {
        writeln!(out, "{}", s.row())?;
    }
    if results.len() >= 5 {
        let hail = results[0].percentile(50.0);
        let podman = results[4].percentile(50.0);
        writeln!(
            out,
            "\nhail p50 / podman (bridge) p50 = {:.3} (sequential)",
            hail / podman
        )?;
    }
    Ok(())
}

/// Runs `launch` `total` times, `concurrency` at once.
pub(crate) async fn series<F, Fut>(
    name: &str,
    total: usize,
    concurrency: usize,
    launch: F,
) -> anyhow::Result<Series>
where
    F: Fn() -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = anyhow::Result<f64>> + Send,
{
    eprintln!("{name}: {total} launches…");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let launch = launch.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                mine.push(launch().await?);
            }
            anyhow::Ok(mine)
        }));
    }
    let mut latencies_ms = Vec::with_capacity(total);
    for w in workers {
        latencies_ms.extend(w.await??);
    }
    Ok(Series {
        name: name.to_owned(),
        latencies_ms,
        wall: started.elapsed(),
    })
}

/// One Hail task: start request → the probe's timestamp, then cleanup.
async fn hail_launch(runtime: &Runtime) -> anyhow::Result<f64> {
    let mut container = ContainerSpec::new("probe", IMAGE);
    container.command = Some(vec!["/bin/stamp".to_owned()]);
    let spec = TaskSpec {
        id: hail_model::ids::new_task_id(),
        containers: vec![container],
        cpu_units: None,
        memory_mib: None,
        network: NetworkMode::Awsvpc,
        hostname: None,
        max_runtime: None,
        volumes: Vec::new(),
    };
    let requested = now_ns();
    runtime.start_task(&spec).await?;
    let status = runtime.wait(&spec.id).await?;
    let records = hail_runtime::logs::read_all(&runtime.log_path(&spec.id, "probe"))?;
    let stamp: i128 = records
        .first()
        .and_then(|r| r.log.trim().parse().ok())
        .with_context(|| format!("probe printed no timestamp; task ended {:?}", status.stop))?;
    runtime.remove(&spec.id).await?;
    Ok((stamp - requested) as f64 / 1e6)
}

/// A bundle of the probe image for bare `runc run`, from `runc spec`.
fn prepare_runc_bundle(work: &Path, rootfs_tar: &Path) -> anyhow::Result<PathBuf> {
    let bundle = work.join("runc-bundle");
    let rootfs = bundle.join("rootfs");
    if !rootfs.join("bin/stamp").exists() {
        std::fs::create_dir_all(&rootfs)?;
        tar::Archive::new(std::fs::File::open(rootfs_tar)?).unpack(&rootfs)?;
    }
    let _ = std::fs::remove_file(bundle.join("config.json"));
    let status = Command::new("runc")
        .arg("spec")
        .arg("--bundle")
        .arg(&bundle)
        .status()?;
    if !status.success() {
        bail!("runc spec failed");
    }
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/stamp"]);
    std::fs::write(&path, serde_json::to_vec(&config)?)?;
    Ok(bundle)
}

async fn runc_launch(bundle: &Path) -> anyhow::Result<f64> {
    // runc's default place for its state is tmpfs (/run/runc); Hail keeps
    // its own there too.
    let state = Path::new("/run/hail-bench/runc");
    let id = format!("bench-{}", hail_model::ids::new_task_id());
    let requested = now_ns();
    let out = tokio::process::Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["run", "--detach", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let output = out.wait_with_output().await?;
    let _ = tokio::process::Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["delete", "--force", &id])
        .output()
        .await;
    let stamp: i128 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| {
            format!(
                "runc probe printed no timestamp: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    Ok((stamp - requested) as f64 / 1e6)
}

pub(crate) async fn podman_launch(network: &'static str) -> anyhow::Result<f64> {
    let requested = now_ns();
    let out = tokio::process::Command::new("podman")
        .args(["run", "--rm", "--network", network])
        .args([
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args([PODMAN_IMAGE, "/bin/stamp"])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running podman")?;
    if !out.status.success() {
        bail!(
            "podman run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stamp: i128 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("podman probe printed no timestamp")?;
    Ok((stamp - requested) as f64 / 1e6)
}

pub(crate) fn podman_import(rootfs_tar: &Path) -> anyhow::Result<()> {
    let out = Command::new("podman")
        .args(["import", "--quiet"])
        .arg(rootfs_tar)
        .arg(PODMAN_IMAGE)
        .output()
        .context("running podman import (is podman installed?)")?;
    if !out.status.success() {
        bail!("podman import: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A root filesystem with a static busybox and the static timestamp probe.
pub(crate) fn build_probe_image(work: &Path) -> anyhow::Result<PathBuf> {
    let source = work.join("stamp.c");
    let probe = work.join("stamp");
    std::fs::write(&source, STAMP_SOURCE)?;
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&probe)
        .arg(&source)
        .status()
        .context("compiling the probe needs a C compiler (cc) and static libc (libc6-dev)")?;
    if !status.success() {
        bail!("compiling {} failed", source.display());
    }
    let busybox = which("busybox").context("busybox-static is not installed")?;
    let tar_path = work.join("rootfs.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&tar_path)?);
    for dir in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, file) in [("bin/busybox", &busybox), ("bin/stamp", &probe)] {
        let bytes = std::fs::read(file)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, path, &bytes[..])?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    tar.append_link(&mut h, "bin/sh", "busybox")?;
    tar.into_inner()?.sync_all()?;
    Ok(tar_path)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}
