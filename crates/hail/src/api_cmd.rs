//! `hail cluster|taskdef|task|logs …`: the ECS and CloudWatch Logs APIs from
//! the command line, signed like any AWS client. Tables for people, `--json`
//! (the API's own answer) for scripts.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use hail_api::Service;
use serde_json::{json, Value};

use crate::client::Client;

/// Where the server is and how to print.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// The server (default: AWS_ENDPOINT_URL, else http://127.0.0.1:4566).
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// List clusters with their task counts.
    Ls,
    /// Create a cluster (idempotent, as in ECS).
    Create { name: String },
    /// Delete a cluster (refused while it has tasks).
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum TaskdefCommand {
    /// Register a task definition from a JSON file (the RegisterTaskDefinition shape).
    Register { file: PathBuf },
    /// List task definition revisions.
    Ls {
        #[arg(long)]
        family: Option<String>,
    },
    /// Show a task definition (`family`, `family:revision` or an ARN).
    Show { task_definition: String },
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Run tasks of a task definition.
    Run(RunArgs),
    /// List tasks (running by default).
    Ls {
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        family: Option<String>,
        /// RUNNING or STOPPED.
        #[arg(long, default_value = "RUNNING")]
        status: String,
    },
    /// Show one task.
    Show {
        task: String,
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Stop a task.
    Stop {
        task: String,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// `family`, `family:revision` or a task definition ARN.
    task_definition: String,
    #[arg(long)]
    cluster: Option<String>,
    /// Environment variable for the container, `NAME=VALUE` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// The container `--env` and `--command` apply to (default: the first essential one).
    #[arg(long)]
    container: Option<String>,
    /// Task cpu units (1024 = one vCPU).
    #[arg(long)]
    cpu: Option<u32>,
    /// Task memory in MiB.
    #[arg(long)]
    memory: Option<u32>,
    /// Stop the task after this long (`90s`, `5m`, `1h`): the `hail:maxRuntimeSeconds` tag.
    #[arg(long)]
    timeout: Option<String>,
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Subnet id recorded in an awsvpc task's network configuration.
    #[arg(long, default_value = "subnet-hail")]
    subnet_id: String,
    /// Wait for the task to stop; exit with its essential container's exit code.
    #[arg(long)]
    wait: bool,
    /// Print the container's log lines while waiting (implies --wait).
    #[arg(long)]
    follow: bool,
    /// The command to run instead of the definition's (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Task id or ARN.
    task: String,
    #[arg(long)]
    cluster: Option<String>,
    /// The container (default: the first with awslogs).
    #[arg(long)]
    container: Option<String>,
    /// Keep printing new lines until the task stops.
    #[arg(short, long)]
    follow: bool,
}

fn client(data_dir: &Path, api: &ApiArgs) -> anyhow::Result<Client> {
    Client::from_env(data_dir, api.endpoint.as_deref())
}

async fn ecs(client: &Client, op: &str, body: Value) -> anyhow::Result<Value> {
    Ok(client.call(Service::Ecs, op, body).await?)
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How long ago (or how long, between two API times in seconds) for people.
fn human(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

/// `90`, `90s`, `5m`, `1h` as seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{text:?} is not a duration like 90s, 5m or 1h"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!("{text:?} is not a duration like 90s, 5m or 1h"),
    };
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .with_context(|| format!("{text:?} is not a positive duration"))
}

pub async fn cluster(data_dir: &Path, api: ApiArgs, cmd: ClusterCommand) -> anyhow::Result<()> {
    let client = client(data_dir, &api)?;
    match cmd {
        ClusterCommand::Ls => {
            let arns = ecs(&client, "ListClusters", json!({})).await?;
            let clusters = if arns["clusterArns"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                ecs(
                    &client,
                    "DescribeClusters",
                    json!({"clusters": arns["clusterArns"]}),
                )
                .await?
            } else {
                json!({"clusters": [], "failures": []})
            };
            if api.json {
                return print_json(&clusters);
            }
            let rows: Vec<Vec<String>> = clusters["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    vec![
                        s(&c["clusterName"]),
                        s(&c["status"]),
                        s(&c["runningTasksCount"]),
                        s(&c["pendingTasksCount"]),
                    ]
                })
                .collect();
            table(&["NAME", "STATUS", "RUNNING", "PENDING"], &rows);
        }
        ClusterCommand::Create { name } => {
            let out = ecs(&client, "CreateCluster", json!({"clusterName": name})).await?;
            if api.json {
                return print_json(&out);
            }
            println!("{}", s(&out["cluster"]["clusterArn"]));
        }
        ClusterCommand::Rm { name } => {
            let out = ecs(&client, "DeleteCluster", json!({"cluster": name})).await?;
            if api.json {
                return print_json(&out);
            }
            println!("deleted {}", s(&out["cluster"]["clusterArn"]));
        }
    }
    Ok(())
}

pub async fn taskdef(data_dir: &Path, api: ApiArgs, cmd: TaskdefCommand) -> anyhow::Result<()> {
    let client = client(data_dir, &api)?;
    match cmd {
        TaskdefCommand::Register { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let out = ecs(&client, "RegisterTaskDefinition", body).await?;
            if api.json {
                return print_json(&out);
            }
            println!("{}", s(&out["taskDefinition"]["taskDefinitionArn"]));
        }
        TaskdefCommand::Ls { family } => {
            let mut arns = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({});
                if let Some(f) = &family {
                    body["familyPrefix"] = f.clone().into();
                }
                if let Some(t) = &token {
                    body["nextToken"] = t.clone().into();
                }
                let page = ecs(&client, "ListTaskDefinitions", body).await?;
                arns.extend(
                    page["taskDefinitionArns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                match page["nextToken"].as_str() {
                    Some(t) => token = Some(t.to_owned()),
                    None => break,
                }
            }
            if api.json {
                return print_json(&json!({ "taskDefinitionArns": arns }));
            }
            for arn in arns {
                let arn = s(&arn);
                println!("{}", arn.rsplit('/').next().unwrap_or(&arn));
            }
        }
        TaskdefCommand::Show { task_definition } => {
            let out = ecs(
                &client,
                "DescribeTaskDefinition",
                json!({"taskDefinition": task_definition, "include": ["TAGS"]}),
            )
            .await?;
            print_json(&out)?;
        }
    }
    Ok(())
}

/// The process exit code `hail task …` ends with.
pub async fn task(data_dir: &Path, api: ApiArgs, cmd: TaskCommand) -> anyhow::Result<i32> {
    let client = client(data_dir, &api)?;
    match cmd {
        TaskCommand::Run(args) => run(&client, &api, args).await,
        TaskCommand::Ls {
            cluster,
            family,
            status,
        } => {
            let mut body = json!({"desiredStatus": status});
            if let Some(c) = &cluster {
                body["cluster"] = c.clone().into();
            }
            if let Some(f) = &family {
                body["family"] = f.clone().into();
            }
            let mut arns: Vec<Value> = Vec::new();
            loop {
                let page = ecs(&client, "ListTasks", body.clone()).await?;
                arns.extend(page["taskArns"].as_array().into_iter().flatten().cloned());
                match page["nextToken"].as_str() {
                    Some(t) => body["nextToken"] = t.into(),
                    None => break,
                }
            }
            let mut tasks = Vec::new();
            for chunk in arns.chunks(100) {
                let mut req = json!({"tasks": chunk});
                if let Some(c) = &cluster {
                    req["cluster"] = c.clone().into();
                }
                let out = ecs(&client, "DescribeTasks", req).await?;
                tasks.extend(out["tasks"].as_array().into_iter().flatten().cloned());
            }
            if api.json {
                print_json(&json!({ "tasks": tasks }))?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = tasks.iter().map(task_row).collect();
            table(
                &[
                    "TASK",
                    "DEFINITION",
                    "STATUS",
                    "IP",
                    "AGE",
                    "EXIT",
                    "REASON",
                ],
                &rows,
            );
            Ok(0)
        }
        TaskCommand::Show { task, cluster } => {
            let t = describe(&client, &task, cluster.as_deref()).await?;
            print_json(&t)?;
            Ok(0)
        }
        TaskCommand::Stop {
            task,
            cluster,
            reason,
        } => {
            let mut body = json!({"task": task});
            if let Some(c) = cluster {
                body["cluster"] = c.into();
            }
            if let Some(r) = reason {
                body["reason"] = r.into();
            }
            let out = ecs(&client, "StopTask", body).await?;
            if api.json {
                print_json(&out)?;
            } else {
                println!("stopping {}", task_id(&s(&out["task"]["taskArn"])));
            }
            Ok(0)
        }
    }
}

fn task_row(t: &Value) -> Vec<String> {
    let def = s(&t["taskDefinitionArn"]);
    let created = t["createdAt"].as_f64().unwrap_or_else(now_secs);
    let exit = t["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["exitCode"].as_i64())
        .map_or("-".to_owned(), |c| c.to_string());
    let ip = t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]
        .as_str()
        .unwrap_or("-")
        .to_owned();
    vec![
        task_id(&s(&t["taskArn"])).to_owned(),
        def.rsplit('/').next().unwrap_or(&def).to_owned(),
        s(&t["lastStatus"]),
        ip,
        human(now_secs() - created),
        exit,
        t["stoppedReason"].as_str().unwrap_or("").to_owned(),
    ]
}

async fn describe(client: &Client, task: &str, cluster: Option<&str>) -> anyhow::Result<Value> {
    let mut body = json!({"tasks": [task], "include": ["TAGS"]});
    if let Some(c) = cluster {
        body["cluster"] = c.into();
    }
    let out = ecs(client, "DescribeTasks", body).await?;
    match out["tasks"].as_array().and_then(|t| t.first()) {
        Some(t) => Ok(t.clone()),
        None => bail!("task {task} not found"),
    }
}

async fn run(client: &Client, api: &ApiArgs, args: RunArgs) -> anyhow::Result<i32> {
    let def = ecs(
        client,
        "DescribeTaskDefinition",
        json!({"taskDefinition": args.task_definition}),
    )
    .await?["taskDefinition"]
        .clone();
    let containers = def["containerDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let target = match &args.container {
        Some(name) => name.clone(),
        None => containers
            .iter()
            .find(|c| c["essential"].as_bool() != Some(false))
            .or(containers.first())
            .map(|c| s(&c["name"]))
            .context("the task definition has no containers")?,
    };
    let mut overrides = json!({});
    let mut container_override = json!({"name": target});
    if !args.env.is_empty() {
        let env: Vec<Value> = args
            .env
            .iter()
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--env {kv:?} is not NAME=VALUE"))?;
                Ok(json!({"name": k, "value": v}))
            })
            .collect::<anyhow::Result<_>>()?;
        container_override["environment"] = env.into();
    }
    if !args.command.is_empty() {
        container_override["command"] = json!(args.command);
    }
    if container_override.as_object().is_some_and(|o| o.len() > 1) {
        overrides["containerOverrides"] = json!([container_override]);
    }
    if let Some(cpu) = args.cpu {
        overrides["cpu"] = cpu.to_string().into();
    }
    if let Some(memory) = args.memory {
        overrides["memory"] = memory.to_string().into();
    }
    let mut body = json!({
        "taskDefinition": def["taskDefinitionArn"],
        "count": args.count,
        "overrides": overrides,
    });
    if let Some(c) = &args.cluster {
        body["cluster"] = c.clone().into();
    }
    if def["networkMode"] == "awsvpc" {
        body["networkConfiguration"] =
            json!({"awsvpcConfiguration": {"subnets": [args.subnet_id]}});
    }
    if let Some(timeout) = &args.timeout {
        let secs = parse_duration(timeout)?;
        body["tags"] =
            json!([{"key": hail_model::ecs::task::MAX_RUNTIME_TAG, "value": secs.to_string()}]);
    }
    let out = ecs(client, "RunTask", body).await?;
    if let Some(f) = out["failures"].as_array().and_then(|f| f.first()) {
        bail!(
            "{}: {}",
            s(&f["reason"]),
            f["detail"]
                .as_str()
                .unwrap_or("the task could not be placed")
        );
    }
    let tasks = out["tasks"].as_array().cloned().unwrap_or_default();
    if !(args.wait || args.follow) {
        if api.json {
            print_json(&out)?;
        } else {
            for t in &tasks {
                println!("{}", task_id(&s(&t["taskArn"])));
            }
        }
        return Ok(0);
    }
    let first = tasks.first().context("RunTask started no task")?;
    let arn = s(&first["taskArn"]);
    let cluster = args.cluster.clone();
    let stopped = if args.follow {
        let dest = log_destination(&def, &target, task_id(&arn))?;
        follow(client, &arn, cluster.as_deref(), &dest).await?
    } else {
        wait_stopped(client, &arn, cluster.as_deref()).await?
    };
    if api.json {
        print_json(&stopped)?;
    }
    Ok(exit_code(&stopped, &target))
}

/// The essential container's exit code; 1 when the task never ran it.
fn exit_code(task: &Value, container: &str) -> i32 {
    let code = task["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .and_then(|c| c["exitCode"].as_i64());
    match code {
        Some(c) => i32::try_from(c).unwrap_or(1),
        None => {
            eprintln!(
                "task {} stopped: {}",
                task_id(&s(&task["taskArn"])),
                task["stoppedReason"].as_str().unwrap_or("no reason given")
            );
            1
        }
    }
}

async fn wait_stopped(client: &Client, arn: &str, cluster: Option<&str>) -> anyhow::Result<Value> {
    loop {
        let t = describe(client, arn, cluster).await?;
        if t["lastStatus"] == "STOPPED" {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The awslogs group and stream of `container` of a task, as ECS names them.
fn log_destination(def: &Value, container: &str, id: &str) -> anyhow::Result<(String, String)> {
    let c = def["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .with_context(|| format!("the task definition has no container {container}"))?;
    let log = &c["logConfiguration"];
    if log["logDriver"] != "awslogs" {
        bail!(
            "container {container} does not log with awslogs; `hail runtime logs {id}` reads \
             its output on the server's machine"
        );
    }
    let group = log["options"]["awslogs-group"]
        .as_str()
        .context("awslogs-group is missing")?;
    let stream = match log["options"]["awslogs-stream-prefix"].as_str() {
        Some(p) if !p.is_empty() => format!("{p}/{container}/{id}"),
        _ => format!("{container}/{id}"),
    };
    Ok((group.to_owned(), stream))
}

/// Prints the stream's events as they arrive until the task has stopped and
/// everything it wrote is printed; returns the stopped task.
async fn follow(
    client: &Client,
    arn: &str,
    cluster: Option<&str>,
    (group, stream): &(String, String),
) -> anyhow::Result<Value> {
    let mut token: Option<String> = None;
    loop {
        // Read the task first: once it reads STOPPED, its output is all in
        // the stream, so the read after that is the last one needed.
        let task = describe(client, arn, cluster).await?;
        let stopped = task["lastStatus"] == "STOPPED";
        loop {
            let mut body = json!({
                "logGroupName": group, "logStreamName": stream, "startFromHead": true,
            });
            if let Some(t) = &token {
                body["nextToken"] = t.clone().into();
            }
            let page = match client.call(Service::Logs, "GetLogEvents", body).await {
                Ok(page) => page,
                // The stream appears when the task starts.
                Err(e) if e.code() == Some("ResourceNotFoundException") && !stopped => break,
                Err(e) => return Err(e.into()),
            };
            for e in page["events"].as_array().into_iter().flatten() {
                println!("{}", e["message"].as_str().unwrap_or(""));
            }
            let next = page["nextForwardToken"].as_str().map(str::to_owned);
            if next == token || next.is_none() {
                break;
            }
            token = next;
        }
        if stopped {
            return Ok(task);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn logs(data_dir: &Path, api: ApiArgs, args: LogsArgs) -> anyhow::Result<()> {
    let client = client(data_dir, &api)?;
    let task = describe(&client, &args.task, args.cluster.as_deref()).await?;
    let def = ecs(
        &client,
        "DescribeTaskDefinition",
        json!({"taskDefinition": task["taskDefinitionArn"]}),
    )
    .await?["taskDefinition"]
        .clone();
    let container = match args.container {
        Some(c) => c,
        None => def["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["logConfiguration"]["logDriver"] == "awslogs")
            .map(|c| s(&c["name"]))
            .context("no container of this task logs with awslogs")?,
    };
    let arn = s(&task["taskArn"]);
    let dest = log_destination(&def, &container, task_id(&arn))?;
    if args.follow {
        follow(&client, &arn, args.cluster.as_deref(), &dest).await?;
        return Ok(());
    }
    let mut token: Option<String> = None;
    loop {
        let mut body =
            json!({"logGroupName": dest.0, "logStreamName": dest.1, "startFromHead": true});
        if let Some(t) = &token {
            body["nextToken"] = t.clone().into();
        }
        let page = client.call(Service::Logs, "GetLogEvents", body).await?;
        for e in page["events"].as_array().into_iter().flatten() {
            println!("{}", e["message"].as_str().unwrap_or(""));
        }
        let next = page["nextForwardToken"].as_str().map(str::to_owned);
        if next == token || next.is_none() {
            return Ok(());
        }
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("5m").unwrap(), 300);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn log_streams_are_named_as_ecs_names_them() {
        let def = json!({"containerDefinitions": [{
            "name": "app",
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/app", "awslogs-stream-prefix": "ecs"}}
        }, {"name": "side"}]});
        assert_eq!(
            log_destination(&def, "app", "abc").unwrap(),
            ("/ecs/app".to_owned(), "ecs/app/abc".to_owned())
        );
        assert!(log_destination(&def, "side", "abc").is_err());
        assert!(log_destination(&def, "nope", "abc").is_err());
    }

    #[test]
    fn the_exit_code_is_the_containers_or_one() {
        let t = json!({"taskArn": "a/b", "containers": [{"name": "app", "exitCode": 3}]});
        assert_eq!(exit_code(&t, "app"), 3);
        let failed = json!({"taskArn": "a/b", "stoppedReason": "CannotPullContainerError: x",
                            "containers": [{"name": "app"}]});
        assert_eq!(exit_code(&failed, "app"), 1);
    }
}
