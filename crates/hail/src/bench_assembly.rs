//! `hail bench assembly`: Sidecar-Assembly's start. A real `hail server`,
//! the sidecar-assembly task definition exactly as the example ships it
//! (log router, config init container, app, ambassador, chained by
//! `dependsOn`), and RunTask → RUNNING as DescribeTasks reports it — side by
//! side with a one-container task of the same app image in the same run.
//! Where the assembly's time goes is read from each task's runtime state:
//! when each container started and when the init container ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use hail_api::Service;
use http::Method;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::bench_api::{start_server, wait_until_stopped};
use crate::bench_cmd::{now_ns, series};
use crate::client::Client;

#[derive(Args)]
pub struct AssemblyArgs {
    /// The app image (bean-counter): an OCI archive or layout
    /// (`examples/bean-counter/build-image.sh --output FILE` makes one).
    #[arg(long)]
    app_image: PathBuf,
    /// The sidecars image (`examples/sidecar-assembly/build-image.sh --output FILE`).
    #[arg(long)]
    sidecars_image: PathBuf,
    /// Launches per series.
    #[arg(long, default_value_t = 20)]
    launches: usize,
    /// Scratch directory (data dir).
    #[arg(long, default_value = "/var/tmp/hail-bench-assembly")]
    work_dir: PathBuf,
}

const ASSEMBLY: &str = include_str!("../../../examples/sidecar-assembly/task-definition.json");
const APP_IMAGE: &str = "hail.examples/bean-counter:latest";
const SIDECARS_IMAGE: &str = "hail.examples/sidecars:latest";
const SINGLE: &str = "bench-app-alone";
const TOGETHER: &str = "bench-four-together";

/// The phases of one launch, in milliseconds from the RunTask request.
#[derive(Default, Clone)]
struct Phases {
    /// (phase name, milliseconds) in order.
    steps: Vec<(String, f64)>,
}

pub async fn run(args: AssemblyArgs) -> anyhow::Result<()> {
    if args.launches == 0 {
        bail!("--launches must be at least 1");
    }
    let assembly: Value = serde_json::from_str(ASSEMBLY)?;
    let data_dir = args.work_dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    let images = hail_runtime::image::store::ImageStore::open(&data_dir)?;
    for (name, file) in [
        (APP_IMAGE, &args.app_image),
        (SIDECARS_IMAGE, &args.sidecars_image),
    ] {
        eprintln!("importing {}…", file.display());
        images
            .import(name, file, &hail_runtime::progress::NoProgress)
            .with_context(|| format!("import {}", file.display()))?;
    }
    let (server, endpoint) = start_server(
        &data_dir,
        &["--bridge", "hailbench5", "--subnet", "10.216.20.0/22"],
        &[
            "--netns-prefix",
            "hailbenchy-",
            "--cgroup-root",
            "hail-bench-assembly",
        ],
    )
    .await?;
    let client = Arc::new(Client::for_data_dir(&data_dir, &endpoint)?);
    setup(&client, &assembly).await?;

    eprintln!("warming up (layer unpack, namespace pool)…");
    for family in [
        SINGLE,
        "sidecar-assembly",
        TOGETHER,
        SINGLE,
        "sidecar-assembly",
    ] {
        launch(&client, &data_dir, family).await?;
    }

    let mut results = Vec::new();
    let mut breakdowns = Vec::new();
    for (name, family) in [
        ("1 container (app alone): RunTask → RUNNING", SINGLE),
        (
            "4 containers (sidecar-assembly): RunTask → RUNNING",
            "sidecar-assembly",
        ),
        ("4 containers, no dependsOn: RunTask → RUNNING", TOGETHER),
    ] {
        let phases = Arc::new(Mutex::new(Vec::new()));
        let s = {
            let client = client.clone();
            let data_dir = data_dir.clone();
            let phases = phases.clone();
            series(name, args.launches, 1, move || {
                let client = client.clone();
                let data_dir = data_dir.clone();
                let phases = phases.clone();
                async move {
                    let (ms, p) = launch(&client, &data_dir, family).await?;
                    phases.lock().await.push(p);
                    Ok(ms)
                }
            })
            .await?
        };
        results.push(s);
        breakdowns.push((name, std::mem::take(&mut *phases.lock().await)));
    }
    drop(server);

    println!("| series | launches | p50 ms | p99 ms | launches/s |");
    println!("|---|---:|---:|---:|---:|");
    for s in &results {
        println!("{}", s.row());
    }
    for p in [50.0, 99.0] {
        println!(
            "4 containers (sidecar-assembly) / 1 container, p{p}: {:.2}",
            results[1].percentile(p) / results[0].percentile(p)
        );
        println!(
            "4 containers (no dependsOn) / 1 container, p{p}: {:.2}",
            results[2].percentile(p) / results[0].percentile(p)
        );
    }
    for (name, launches) in &breakdowns {
        println!("\n{name}, median of each phase (ms):\n");
        println!("| phase | p50 ms |");
        println!("|---|---:|");
        for (i, (phase, _)) in launches[0].steps.iter().enumerate() {
            let values: Vec<f64> = launches
                .iter()
                .filter_map(|l| l.steps.get(i).map(|s| s.1))
                .collect();
            println!("| {phase} | {:.1} |", median(&values));
        }
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The cluster, the configuration object, the task role and both task
/// definitions.
async fn setup(client: &Client, assembly: &Value) -> anyhow::Result<()> {
    client
        .call(
            Service::Ecs,
            "CreateCluster",
            json!({"clusterName": "default"}),
        )
        .await?;
    for (path, body) in [
        ("/sidecar-assembly", Bytes::new()),
        (
            "/sidecar-assembly/bean-counter/app.json",
            Bytes::from_static(br#"{"label": "hail bench assembly", "currency": "USD"}"#),
        ),
    ] {
        let (status, answer) = client.s3(Method::PUT, path, body).await?;
        if !status.is_success() {
            bail!("PUT {path}: {status} {}", String::from_utf8_lossy(&answer));
        }
    }
    client
        .call(
            Service::Hail,
            "CreateRole",
            json!({"roleName": "sidecar-assembly-task-role", "policy": {"Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject",
                 "Resource": "arn:aws:s3:::sidecar-assembly/*"}
            ]}}),
        )
        .await
        .context("CreateRole")?;
    client
        .call(Service::Ecs, "RegisterTaskDefinition", assembly.clone())
        .await
        .context("RegisterTaskDefinition sidecar-assembly")?;
    // The same app container, alone: no dependencies, no volume, no log
    // routing; the same task size and role.
    let mut single = assembly.clone();
    single["family"] = SINGLE.into();
    let object = single.as_object_mut().context("a task definition object")?;
    object.remove("volumes");
    single["containerDefinitions"] = json!([{
        "name": "app",
        "image": APP_IMAGE,
        "essential": true,
        "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
    }]);
    client
        .call(Service::Ecs, "RegisterTaskDefinition", single)
        .await
        .context("RegisterTaskDefinition the single container")?;
    client
        .call(Service::Ecs, "RegisterTaskDefinition", together(assembly)?)
        .await
        .context("RegisterTaskDefinition the four containers without dependsOn")?;
    Ok(())
}

/// The example's four containers with nothing ordering their start: no
/// `dependsOn`, the app not reading the configuration the init container
/// may not have written yet, and no output routed to the log router, which
/// may not be listening yet. The init container still fetches the
/// configuration and exits.
fn together(assembly: &Value) -> anyhow::Result<Value> {
    let mut together = assembly.clone();
    together["family"] = TOGETHER.into();
    let containers = together["containerDefinitions"]
        .as_array_mut()
        .context("containerDefinitions")?;
    for c in containers.iter_mut() {
        let c = c.as_object_mut().context("a container definition object")?;
        c.remove("dependsOn");
        if c.get("name").and_then(Value::as_str) != Some("log-router") {
            c.remove("logConfiguration");
        }
        if c.get("name").and_then(Value::as_str) == Some("app") {
            c.remove("environment");
            c.remove("mountPoints");
        }
    }
    Ok(together)
}

async fn describe(client: &Client, arn: &str) -> anyhow::Result<Value> {
    let out = client
        .call(Service::Ecs, "DescribeTasks", json!({"tasks": [arn]}))
        .await?;
    Ok(out["tasks"][0].clone())
}

/// One launch: RunTask, then DescribeTasks until RUNNING (the latency), then
/// the phases from the runtime's state, then StopTask and the wait for
/// STOPPED (not measured), so launches do not pile up.
async fn launch(client: &Client, data_dir: &Path, family: &str) -> anyhow::Result<(f64, Phases)> {
    let requested = now_ns();
    let started = Instant::now();
    let out = client
        .call(
            Service::Ecs,
            "RunTask",
            json!({
                "taskDefinition": family,
                "launchType": "FARGATE",
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-bench"]}},
            }),
        )
        .await?;
    let arn = out["tasks"][0]["taskArn"]
        .as_str()
        .with_context(|| format!("RunTask answered without a task: {out}"))?
        .to_owned();
    let deadline = started + Duration::from_secs(120);
    let ms = loop {
        let task = describe(client, &arn).await?;
        match task["lastStatus"].as_str() {
            Some("RUNNING") => break started.elapsed().as_secs_f64() * 1e3,
            Some("STOPPED") => bail!(
                "task {arn} stopped before RUNNING: {}",
                task["stoppedReason"]
            ),
            _ if Instant::now() > deadline => bail!("task {arn} not RUNNING after 120 s"),
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    let id = arn.rsplit('/').next().unwrap_or(&arn);
    let phases = phases(data_dir, id, requested, ms).unwrap_or_default();
    client
        .call(Service::Ecs, "StopTask", json!({"task": arn}))
        .await?;
    wait_until_stopped(client, &arn, Duration::from_secs(120)).await?;
    Ok((ms, phases))
}

/// Milliseconds from the request to each moment the task's runtime state
/// records: the task created, each container started (and ended, for one
/// that ended before the task ran), the task running; then RUNNING as seen
/// through DescribeTasks.
fn phases(data_dir: &Path, id: &str, requested_ns: i128, running_ms: f64) -> Option<Phases> {
    let path = data_dir.join("tasks").join(id).join("state.json");
    let state: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let at = |v: &Value| -> Option<f64> {
        Some((rfc3339_ms(v.as_str()?)? as i128 * 1_000_000 - requested_ns) as f64 / 1e6)
    };
    let mut moments = vec![(
        "task created (shim state)".to_owned(),
        at(&state["created_at"])?,
    )];
    for c in state["containers"].as_array()? {
        let name = c["name"].as_str()?;
        moments.push((format!("{name} started"), at(&c["started_at"])?));
        if let Some(end) = at(&c["finished_at"]) {
            moments.push((format!("{name} exited"), end));
        }
    }
    moments.push((
        "task running (shim state)".to_owned(),
        at(&state["started_at"])?,
    ));
    moments.sort_by(|a, b| a.1.total_cmp(&b.1));
    moments.push(("RUNNING in DescribeTasks".to_owned(), running_ms));
    let mut steps = Vec::new();
    let mut previous = ("RunTask sent".to_owned(), 0.0);
    for (name, t) in moments {
        steps.push((format!("{} → {name}", previous.0), t - previous.1));
        previous = (name, t);
    }
    Some(Phases { steps })
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z`, the shim's
/// timestamps.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_timestamps_become_epoch_milliseconds() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(rfc3339_ms("2024-02-29T00:00:01Z"), Some(1_709_164_801_000));
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn the_embedded_definition_is_the_examples_four_containers() {
        let def: Value = serde_json::from_str(ASSEMBLY).unwrap();
        let names: Vec<&str> = def["containerDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["log-router", "config", "app", "ambassador"]);
    }

    #[test]
    fn the_four_together_keep_their_containers_and_lose_their_order() {
        let def: Value = serde_json::from_str(ASSEMBLY).unwrap();
        let together = together(&def).unwrap();
        let containers = together["containerDefinitions"].as_array().unwrap();
        assert_eq!(containers.len(), 4);
        assert!(containers.iter().all(|c| c.get("dependsOn").is_none()));
        let routed = containers
            .iter()
            .filter(|c| c["logConfiguration"]["logDriver"] == "awsfirelens")
            .count();
        assert_eq!(routed, 0);
        let app = containers.iter().find(|c| c["name"] == "app").unwrap();
        assert!(app.get("environment").is_none(), "{app}");
        assert_eq!(app["image"], APP_IMAGE);
        assert_eq!(together["volumes"], def["volumes"]);
    }
}
