//! `hail bench scaling`: how fast services follow demand, through a real
//! `hail server`, its load balancer and real containers (busybox `httpd`
//! serving a page that holds a random id drawn when its task starts, so
//! every response names the task that served it).
//!
//! - Scale-out reaction: a service at one task behind a listener, with a
//!   target tracking policy on `ALBRequestCountPerTarget` (600 a minute per
//!   target, no cooldowns). An open-loop load of `--rate` requests a second
//!   starts; measured from its start are the scaling decision (the
//!   activity's start time) and the first response served by a task that
//!   did not exist before the load. Between runs the service is set back
//!   to one task.
//! - Scale from zero: a service behind a scale-from-zero target group, put
//!   at zero tasks (UpdateService, the same state the idle sweep leaves it
//!   in, without waiting the idle period), then one GET on a new
//!   connection: its latency until the 200 of the freshly started task,
//!   split by the task's own timestamps (created, RUNNING). The image is
//!   cached. For comparison, GETs to the warm task right after.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use hail_api::Service;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::api_cmd::now_secs;
use crate::bench_api::start_server;
use crate::bench_cmd::build_probe_image;
use crate::bench_gateway::{free_port, Conn};
use crate::client::Client;

#[derive(Args)]
pub struct ScalingArgs {
    /// Cold starts (scale from zero) measured.
    #[arg(long, default_value_t = 10)]
    cold_starts: usize,
    /// Warm requests after each cold start.
    #[arg(long, default_value_t = 20)]
    warm_requests: usize,
    /// Scale-out runs.
    #[arg(long, default_value_t = 3)]
    scale_out_runs: usize,
    /// Requests a second of the scale-out load; the policy's target is 10
    /// a second per task.
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Scratch directory (data dir, image).
    #[arg(long, default_value = "/var/tmp/hail-bench-scaling")]
    work_dir: PathBuf,
}

const IMAGE: &str = "hail.bench/stamp:latest";
const FAMILY: &str = "bench-web";
const CLUSTER: &str = "default";
/// What the load's requests per target are measured against: 10 a second.
const REQUESTS_PER_TARGET_PER_MINUTE: f64 = 600.0;

pub async fn run(args: ScalingArgs) -> anyhow::Result<()> {
    if args.cold_starts == 0 || args.scale_out_runs == 0 || args.rate == 0 {
        bail!("--cold-starts, --scale-out-runs and --rate must be at least 1");
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let rootfs_tar = build_probe_image(&args.work_dir)?;
    let data_dir = args.work_dir.join("data");
    if data_dir.exists() {
        // Tasks of an interrupted run would still be running here.
        std::fs::remove_dir_all(&data_dir).with_context(|| {
            format!(
                "remove {} (an interrupted run's tasks may still run: start `hail server` \
                 on it and scale its services to 0)",
                data_dir.display()
            )
        })?;
    }
    std::fs::create_dir_all(&data_dir)?;
    hail_runtime::image::store::ImageStore::open(&data_dir)?.import(
        IMAGE,
        &rootfs_tar,
        &hail_runtime::progress::NoProgress,
    )?;
    let (server, endpoint) = start_server(
        &data_dir,
        &["--bridge", "hailbench2", "--subnet", "10.216.8.0/22"],
        &[
            "--netns-prefix",
            "hailbenchs-",
            "--cgroup-root",
            "hail-bench-scaling",
        ],
    )
    .await?;
    let client = Arc::new(Client::for_data_dir(&data_dir, &endpoint)?);
    client
        .call(
            Service::Ecs,
            "CreateCluster",
            json!({"clusterName": CLUSTER}),
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
                    "name": "web",
                    "image": IMAGE,
                    // httpd as PID 1 ignores SIGTERM: stops take stopTimeout.
                    "stopTimeout": 2,
                    "command": ["/bin/busybox", "sh", "-c",
                        "/bin/busybox mkdir -p /srv \
                         && /bin/busybox cat /proc/sys/kernel/random/uuid > /srv/index.html \
                         && exec /bin/busybox httpd -f -p 8080 -h /srv"],
                    "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                }],
            }),
        )
        .await?;

    let cold = scale_from_zero(&client, &args).await;
    let out = match &cold {
        Ok(_) => scale_out(&client, &args).await,
        Err(_) => Err(anyhow::anyhow!("not measured")),
    };
    // Tasks outlive the server (their shims are their parents): stop them
    // all before it goes.
    let cleaned = stop_everything(&client).await;
    drop(server);
    let (cold, out) = (cold?, out?);
    cleaned?;

    println!(
        "Scaling through the load balancer ({} scale-out runs at {} requests/s against a \
         target of 10/s per task; {} cold starts; cached image):\n",
        args.scale_out_runs, args.rate, args.cold_starts
    );
    println!("| measurement | n | p50 ms | max ms |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, v: &[f64]| {
        println!("| {name} | {} | {:.0} | {:.0} |", v.len(), p50(v), max(v));
    };
    row("scale-out: load start → scaling decision", &out.decision);
    row(
        "scale-out: load start → first response from a new task",
        &out.new_task,
    );
    row(
        "scale from zero: first request → 200 from the new task",
        &cold.first,
    );
    row(
        "… request → task created (activator, service controller)",
        &cold.to_created,
    );
    row(
        "… task created → RUNNING (network, shim, runc)",
        &cold.to_running,
    );
    row(
        "… RUNNING → response (target registered, health check, forward)",
        &cold.to_answer,
    );
    println!(
        "| warm task: request → 200 (keep-alive) | {} | {:.2} | {:.2} |",
        cold.warm.len(),
        p50(&cold.warm),
        max(&cold.warm)
    );
    Ok(())
}

struct Cold {
    first: Vec<f64>,
    to_created: Vec<f64>,
    to_running: Vec<f64>,
    to_answer: Vec<f64>,
    warm: Vec<f64>,
}

async fn scale_from_zero(client: &Client, args: &ScalingArgs) -> anyhow::Result<Cold> {
    let (tg, addr) = service_behind(
        client,
        "cold",
        Some(json!({"idleSeconds": 3600, "timeoutSeconds": 60})),
    )
    .await?;
    let mut cold = Cold {
        first: Vec::new(),
        to_created: Vec::new(),
        to_running: Vec::new(),
        to_answer: Vec::new(),
        warm: Vec::new(),
    };
    for i in 1..=args.cold_starts {
        set_desired(client, "cold", 0).await?;
        wait_for(60, "the cold service at zero tasks", || async {
            let s = describe_service(client, "cold").await?;
            let targets = client
                .call(
                    Service::Hail,
                    "DescribeTargetHealth",
                    json!({"targetGroup": tg}),
                )
                .await?;
            Ok(s["runningCount"] == 0
                && s["pendingCount"] == 0
                && targets["targetHealthDescriptions"]
                    .as_array()
                    .is_none_or(Vec::is_empty))
        })
        .await?;
        // Let the stopped task's teardown finish: it is not what is measured.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sent = now_secs();
        let started = Instant::now();
        let mut conn = Conn::connect(addr).await?;
        let (status, _) = conn.fetch().await?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        if status != 200 {
            bail!("cold start {i}: the first request was answered {status}");
        }
        let task = running_task(client, "cold").await?;
        let (created, running) = (
            task["createdAt"].as_f64().context("createdAt")?,
            task["startedAt"].as_f64().context("startedAt")?,
        );
        eprintln!(
            "cold start {i}/{}: {took:.0} ms (created +{:.0}, RUNNING +{:.0})",
            args.cold_starts,
            (created - sent) * 1e3,
            (running - sent) * 1e3
        );
        cold.first.push(took);
        cold.to_created.push((created - sent) * 1e3);
        cold.to_running.push((running - created) * 1e3);
        cold.to_answer.push(took - (running - sent) * 1e3);
        for _ in 0..args.warm_requests {
            let started = Instant::now();
            let (status, _) = conn.fetch().await?;
            if status != 200 {
                bail!("a warm request was answered {status}");
            }
            cold.warm.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    set_desired(client, "cold", 0).await?;
    Ok(cold)
}

struct Out {
    decision: Vec<f64>,
    new_task: Vec<f64>,
}

async fn scale_out(client: &Client, args: &ScalingArgs) -> anyhow::Result<Out> {
    let (tg, addr) = service_behind(client, "web", None).await?;
    let resource = format!("service/{CLUSTER}/web");
    aas(
        client,
        "RegisterScalableTarget",
        json!({
            "ServiceNamespace": "ecs",
            "ResourceId": resource,
            "ScalableDimension": "ecs:service:DesiredCount",
            "MinCapacity": 1,
            "MaxCapacity": 4,
        }),
    )
    .await?;
    let (_, group) = tg
        .split_once(":targetgroup/")
        .context("a target group ARN")?;
    aas(
        client,
        "PutScalingPolicy",
        json!({
            "PolicyName": "requests-per-target",
            "ServiceNamespace": "ecs",
            "ResourceId": resource,
            "ScalableDimension": "ecs:service:DesiredCount",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": REQUESTS_PER_TARGET_PER_MINUTE,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "ALBRequestCountPerTarget",
                    "ResourceLabel": format!("app/hail/0123456789abcdef/targetgroup/{group}"),
                },
                "ScaleOutCooldown": 0,
                "ScaleInCooldown": 0,
            },
        }),
    )
    .await?;
    let mut out = Out {
        decision: Vec::new(),
        new_task: Vec::new(),
    };
    for run in 1..=args.scale_out_runs {
        set_desired(client, "web", 1).await?;
        wait_for(120, "the service back at one healthy task", || async {
            let s = describe_service(client, "web").await?;
            let targets = client
                .call(
                    Service::Hail,
                    "DescribeTargetHealth",
                    json!({"targetGroup": tg}),
                )
                .await?;
            let states: Vec<&str> = targets["targetHealthDescriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["targetHealth"]["State"].as_str())
                .collect();
            Ok(s["desiredCount"] == 1
                && s["runningCount"] == 1
                && s["pendingCount"] == 0
                && states == ["healthy"])
        })
        .await?;
        let mut known = HashSet::new();
        let mut conn = Conn::connect(addr).await?;
        for _ in 0..3 {
            known.insert(conn.fetch().await?.1);
        }
        drop(conn);
        // Quiet seconds, so the policy's window starts below target.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let seen: HashSet<String> = activities(client, &resource)
            .await?
            .iter()
            .filter_map(|a| a["ActivityId"].as_str().map(str::to_owned))
            .collect();

        let load_wall = now_secs();
        let load_start = Instant::now();
        let first_new = Arc::new(Mutex::new(None::<f64>));
        let stop = Arc::new(tokio::sync::Notify::new());
        let load = tokio::spawn(open_loop(
            addr,
            args.rate,
            known,
            load_start,
            first_new.clone(),
            stop.clone(),
        ));
        let deadline = load_start + Duration::from_secs(120);
        let mut decision = None;
        loop {
            if decision.is_none() {
                decision = activities(client, &resource)
                    .await?
                    .iter()
                    .find(|a| {
                        a["ActivityId"]
                            .as_str()
                            .is_some_and(|id| !seen.contains(id))
                    })
                    .and_then(|a| a["StartTime"].as_f64())
                    .map(|t| (t - load_wall) * 1e3);
            }
            let new_task = *first_new.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(d), Some(n)) = (decision, new_task) {
                eprintln!("scale-out {run}/{}: decision {d:.0} ms, first response from a new task {n:.0} ms", args.scale_out_runs);
                out.decision.push(d);
                out.new_task.push(n);
                break;
            }
            if Instant::now() > deadline {
                stop.notify_waiters();
                bail!("scale-out {run}: no new task served within 120 s (decision: {decision:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.notify_waiters();
        let failed = load.await??;
        if failed > 0 {
            eprintln!("scale-out {run}: {failed} requests failed");
        }
    }
    set_desired(client, "web", 1).await?;
    Ok(out)
}

/// Sends GETs at `rate` a second, on their schedule (each on one of a few
/// keep-alive connections), until `stop`; records when a body not in
/// `known` first arrives, in milliseconds since `start`. Returns how many
/// requests failed.
async fn open_loop(
    addr: SocketAddr,
    rate: u32,
    known: HashSet<Vec<u8>>,
    start: Instant,
    first_new: Arc<Mutex<Option<f64>>>,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<u64> {
    const CONNECTIONS: u32 = 4;
    let known = Arc::new(known);
    let mut workers = Vec::new();
    for c in 0..CONNECTIONS {
        let (known, first_new, stop) = (known.clone(), first_new.clone(), stop.clone());
        let interval = Duration::from_secs_f64(f64::from(CONNECTIONS) / f64::from(rate));
        workers.push(tokio::spawn(async move {
            let mut failed = 0u64;
            let mut conn = None;
            let mut due = start + interval.mul_f64(f64::from(c) / f64::from(CONNECTIONS));
            let stopped = stop.notified();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => return failed,
                    _ = tokio::time::sleep_until(due) => {}
                }
                due += interval;
                if conn.is_none() {
                    conn = Conn::connect(addr).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    failed += 1;
                    continue;
                };
                match c.fetch().await {
                    Ok((200, body)) => {
                        if !known.contains(&body) {
                            let mut first = first_new.lock().unwrap_or_else(|p| p.into_inner());
                            if first.is_none() {
                                *first = Some(start.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                    }
                    Ok(_) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        conn = None;
                    }
                }
            }
        }));
    }
    let mut failed = 0;
    for w in workers {
        failed += w.await?;
    }
    Ok(failed)
}

/// A target group (health checked every 2 s, no deregistration delay),
/// a listener on a free loopback port, and a one-task service behind
/// them, serving; the group's ARN and the listener's address.
async fn service_behind(
    client: &Client,
    name: &str,
    scale_from_zero: Option<Value>,
) -> anyhow::Result<(String, SocketAddr)> {
    let mut group = json!({
        "name": format!("{name}-tg"),
        "healthCheckIntervalSeconds": 2,
        "healthCheckTimeoutSeconds": 1,
        "healthyThresholdCount": 2,
        "deregistrationDelaySeconds": 0,
    });
    if let Some(z) = scale_from_zero {
        group["scaleFromZero"] = z;
    }
    let tg = client
        .call(Service::Hail, "CreateTargetGroup", group)
        .await?["targetGroup"]["targetGroupArn"]
        .as_str()
        .context("CreateTargetGroup answered without an ARN")?
        .to_owned();
    let listener = client
        .call(
            Service::Hail,
            "CreateListener",
            json!({
                "port": free_port()?,
                "defaultActions": [{"type": "forward", "targetGroupArn": tg}],
            }),
        )
        .await?;
    let addr: SocketAddr = listener["boundAddress"]
        .as_str()
        .context("CreateListener answered without an address")?
        .parse()?;
    client
        .call(
            Service::Ecs,
            "CreateService",
            json!({
                "cluster": CLUSTER,
                "serviceName": name,
                "taskDefinition": FAMILY,
                "desiredCount": 1,
                "launchType": "FARGATE",
                "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100},
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-bench"]}},
                "loadBalancers": [{
                    "targetGroupArn": tg,
                    "containerName": "web",
                    "containerPort": 8080,
                }],
            }),
        )
        .await?;
    wait_for(120, &format!("service {name} serving"), || async {
        let Ok(mut conn) = Conn::connect(addr).await else {
            return Ok(false);
        };
        Ok(matches!(conn.fetch().await, Ok((200, _))))
    })
    .await?;
    Ok((tg, addr))
}

/// No scalable target, every service at zero, no task left running.
async fn stop_everything(client: &Client) -> anyhow::Result<()> {
    let _ = aas(
        client,
        "DeregisterScalableTarget",
        json!({
            "ServiceNamespace": "ecs",
            "ResourceId": format!("service/{CLUSTER}/web"),
            "ScalableDimension": "ecs:service:DesiredCount",
        }),
    )
    .await;
    for service in ["web", "cold"] {
        let _ = set_desired(client, service, 0).await;
    }
    wait_for(120, "every task stopped", || async {
        let tasks = client
            .call(
                Service::Ecs,
                "ListTasks",
                json!({"cluster": CLUSTER, "desiredStatus": "STOPPED"}),
            )
            .await?;
        let arns = tasks["taskArns"].clone();
        if arns.as_array().is_none_or(Vec::is_empty) {
            return Ok(true);
        }
        let described = client
            .call(
                Service::Ecs,
                "DescribeTasks",
                json!({"cluster": CLUSTER, "tasks": arns}),
            )
            .await?;
        let running = client
            .call(
                Service::Ecs,
                "ListTasks",
                json!({"cluster": CLUSTER, "desiredStatus": "RUNNING"}),
            )
            .await?;
        Ok(running["taskArns"].as_array().is_none_or(Vec::is_empty)
            && described["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|t| t["lastStatus"] == "STOPPED"))
    })
    .await
}

async fn set_desired(client: &Client, service: &str, count: u32) -> anyhow::Result<()> {
    client
        .call(
            Service::Ecs,
            "UpdateService",
            json!({"cluster": CLUSTER, "service": service, "desiredCount": count}),
        )
        .await?;
    Ok(())
}

async fn describe_service(client: &Client, service: &str) -> anyhow::Result<Value> {
    let out = client
        .call(
            Service::Ecs,
            "DescribeServices",
            json!({"cluster": CLUSTER, "services": [service]}),
        )
        .await?;
    Ok(out["services"][0].clone())
}

/// The one running task of `service`.
async fn running_task(client: &Client, service: &str) -> anyhow::Result<Value> {
    let arns = client
        .call(
            Service::Ecs,
            "ListTasks",
            json!({"cluster": CLUSTER, "serviceName": service, "desiredStatus": "RUNNING"}),
        )
        .await?["taskArns"]
        .clone();
    let tasks = client
        .call(
            Service::Ecs,
            "DescribeTasks",
            json!({"cluster": CLUSTER, "tasks": arns}),
        )
        .await?;
    tasks["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["lastStatus"] == "RUNNING"))
        .cloned()
        .with_context(|| format!("service {service} has no running task: {tasks}"))
}

async fn aas(client: &Client, op: &str, body: Value) -> anyhow::Result<Value> {
    Ok(client
        .call(Service::ApplicationAutoScaling, op, body)
        .await?)
}

async fn activities(client: &Client, resource: &str) -> anyhow::Result<Vec<Value>> {
    let out = aas(
        client,
        "DescribeScalingActivities",
        json!({"ServiceNamespace": "ecs", "ResourceId": resource}),
    )
    .await?;
    Ok(out["ScalingActivities"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Polls `done` every 100 ms for at most `secs`.
async fn wait_for<F, Fut>(secs: u64, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await? {
        if Instant::now() > deadline {
            bail!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn p50(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}
