//! `hail task run|ls|show|stop`: ECS tasks on a running server. `run --wait`
//! ends with the essential container's exit code, so a task can stand in for
//! a command in scripts.

use std::path::Path;

use anyhow::{bail, Context as _};
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::api_cmd::{
    age, arn_tail, cluster_in_task_arn, describe_task, ecs, human, items, now_secs, poll_task,
    print_json, resolve_task, short_id, text, ApiArgs, POLL_INTERVAL,
};
use crate::client::Client;
use crate::logs_cmd::{self, LogTarget};
use crate::table;

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Run tasks of a task definition.
    Run(RunArgs),
    /// List a cluster's tasks (running ones unless --status STOPPED).
    Ls {
        /// Cluster name or ARN (default: `default`).
        #[arg(long)]
        cluster: Option<String>,
        /// Only tasks of this task definition family.
        #[arg(long)]
        family: Option<String>,
        #[arg(
            long,
            default_value = "RUNNING",
            value_parser = PossibleValuesParser::new(["RUNNING", "STOPPED"])
                .map(|s| s.to_ascii_uppercase()),
            ignore_case = true
        )]
        status: String,
    },
    /// Show one task (id or ARN).
    Show {
        task: String,
        /// Cluster name or ARN (default: `default`).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Stop a task (id or ARN).
    Stop {
        task: String,
        /// Cluster name or ARN (default: `default`).
        #[arg(long)]
        cluster: Option<String>,
        /// Recorded as the task's stoppedReason.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// `family`, `family:revision` or a task definition ARN.
    task_definition: String,
    /// Cluster name or ARN (default: `default`).
    #[arg(long)]
    cluster: Option<String>,
    /// Environment variable for the container, `NAME=VALUE` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// The container --env and the command apply to, and whose log --follow
    /// prints (default: the first essential one).
    #[arg(long)]
    container: Option<String>,
    /// Task cpu units (1024 = one vCPU).
    #[arg(long)]
    cpu: Option<u32>,
    /// Task memory in MiB.
    #[arg(long)]
    memory: Option<u32>,
    /// Stop the task after this long (`90s`, `5m`, `1h`): the `hail:maxRuntimeSeconds` tag.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<u64>,
    /// How many tasks to start (1 to 10).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Subnet id recorded in an awsvpc task's network configuration.
    // Not `--subnet`: that global flag is the host's task network range
    // (`HostArgs`), accepted after every subcommand.
    #[arg(long, default_value = "subnet-hail")]
    subnet_id: String,
    /// Wait for the tasks to stop; exit with the essential container's exit
    /// code (the first non-zero one of several tasks).
    #[arg(long)]
    wait: bool,
    /// Print the container's log lines while waiting (implies --wait).
    #[arg(long)]
    follow: bool,
    /// The command to run instead of the definition's: every argument after
    /// --command (or after `--`) belongs to it.
    #[arg(
        long,
        num_args = 1..,
        allow_hyphen_values = true,
        value_name = "ARG",
        conflicts_with = "trailing_command"
    )]
    command: Vec<String>,
    /// The command after `--`, the other way to write --command.
    #[arg(last = true, hide = true)]
    trailing_command: Vec<String>,
}

impl RunArgs {
    fn command(&self) -> &[String] {
        if self.command.is_empty() {
            &self.trailing_command
        } else {
            &self.command
        }
    }
}

/// `90`, `90s`, `5m`, `1h` as seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration like 90s, 5m or 1h");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{text:?} is not a positive duration"))
}

/// The process exit code `hail task …` ends with.
pub async fn run(data_dir: &Path, api: ApiArgs, cmd: TaskCommand) -> anyhow::Result<i32> {
    let client = api.connect(data_dir)?;
    match cmd {
        TaskCommand::Run(args) => run_tasks(&client, &api, args).await,
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
                arns.extend(items(&page["taskArns"]).cloned());
                match page["nextToken"].as_str() {
                    Some(t) => body["nextToken"] = t.into(),
                    None => break,
                }
            }
            // DescribeTasks takes at most 100 tasks a call.
            let mut tasks = Vec::new();
            for chunk in arns.chunks(100) {
                let mut req = json!({ "tasks": chunk });
                if let Some(c) = &cluster {
                    req["cluster"] = c.clone().into();
                }
                let out = ecs(&client, "DescribeTasks", req).await?;
                tasks.extend(items(&out["tasks"]).cloned());
            }
            if api.json {
                print_json(&json!({ "tasks": tasks }))?;
            } else {
                print!("{}", render_tasks(&tasks, now_secs()));
            }
            Ok(0)
        }
        TaskCommand::Show { task, cluster } => {
            let task = resolve_task(&client, &task, cluster.as_deref()).await?;
            let t = describe_task(&client, &task, cluster.as_deref()).await?;
            if api.json {
                print_json(&t)?;
            } else {
                print!("{}", render_task(&t, now_secs()));
            }
            Ok(0)
        }
        TaskCommand::Stop {
            task,
            cluster,
            reason,
        } => {
            let task = resolve_task(&client, &task, cluster.as_deref()).await?;
            let mut body = json!({ "task": task });
            if let Some(c) = cluster.as_deref().or_else(|| cluster_in_task_arn(&task)) {
                body["cluster"] = c.into();
            }
            if let Some(r) = reason {
                body["reason"] = r.into();
            }
            let out = ecs(&client, "StopTask", body).await?;
            if api.json {
                print_json(&out)?;
            } else {
                println!("stopping {}", arn_tail(&text(&out["task"]["taskArn"])));
            }
            Ok(0)
        }
    }
}

/// A RunTask call worked out from the command line and the task definition.
#[derive(Debug, PartialEq)]
struct RunPlan {
    body: Value,
    /// The container the overrides apply to, whose log `--follow` prints.
    target: String,
    /// The container whose exit code the command ends with.
    essential: String,
}

fn plan(def: &Value, args: &RunArgs) -> anyhow::Result<RunPlan> {
    let containers: Vec<&Value> = items(&def["containerDefinitions"]).collect();
    let names = || {
        containers
            .iter()
            .map(|c| text(&c["name"]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // ECS treats a container without `essential` as essential.
    let is_essential = |c: &Value| c["essential"] != false;
    let first_essential = containers
        .iter()
        .find(|c| is_essential(c))
        .or(containers.first())
        .map(|c| text(&c["name"]))
        .context("the task definition has no containers")?;
    let (target, essential) = match &args.container {
        None => (first_essential.clone(), first_essential),
        Some(name) => {
            let c = containers
                .iter()
                .find(|c| c["name"] == name.as_str())
                .with_context(|| {
                    format!(
                        "task definition {} has no container {name} (it has {})",
                        arn_tail(&text(&def["taskDefinitionArn"])),
                        names()
                    )
                })?;
            let essential = if is_essential(c) {
                name.clone()
            } else {
                first_essential
            };
            (name.clone(), essential)
        }
    };

    let mut container_override = json!({ "name": target });
    if !args.env.is_empty() {
        let env: Vec<Value> = args
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok(json!({"name": k, "value": v})),
                _ => bail!("--env {kv:?} is not NAME=VALUE"),
            })
            .collect::<anyhow::Result<_>>()?;
        container_override["environment"] = env.into();
    }
    if !args.command().is_empty() {
        container_override["command"] = json!(args.command());
    }
    let mut overrides = json!({});
    if container_override.as_object().is_some_and(|o| o.len() > 1) {
        overrides["containerOverrides"] = json!([container_override]);
    }
    // ECS takes task sizes as strings.
    if let Some(cpu) = args.cpu {
        overrides["cpu"] = cpu.to_string().into();
    }
    if let Some(memory) = args.memory {
        overrides["memory"] = memory.to_string().into();
    }
    let mut body = json!({
        "taskDefinition": def["taskDefinitionArn"],
        "count": args.count,
    });
    if overrides.as_object().is_some_and(|o| !o.is_empty()) {
        body["overrides"] = overrides;
    }
    if let Some(c) = &args.cluster {
        body["cluster"] = c.clone().into();
    }
    // ECS refuses an awsvpc task without a network configuration; Hail gives
    // every task its own network whatever the subnet says.
    if def["networkMode"] == "awsvpc" {
        body["networkConfiguration"] =
            json!({"awsvpcConfiguration": {"subnets": [args.subnet_id]}});
    }
    if let Some(secs) = args.timeout {
        body["tags"] =
            json!([{"key": hail_model::ecs::task::MAX_RUNTIME_TAG, "value": secs.to_string()}]);
    }
    Ok(RunPlan {
        body,
        target,
        essential,
    })
}

async fn run_tasks(client: &Client, api: &ApiArgs, args: RunArgs) -> anyhow::Result<i32> {
    if args.follow && args.count != 1 {
        bail!(
            "--follow prints one task's output; use --wait with --count {}",
            args.count
        );
    }
    let def = ecs(
        client,
        "DescribeTaskDefinition",
        json!({"taskDefinition": args.task_definition}),
    )
    .await?["taskDefinition"]
        .clone();
    let plan = plan(&def, &args)?;
    // Checked before the task starts, so a definition without awslogs does
    // not leave a task running behind an error.
    let log_target = if args.follow {
        Some(LogTarget::of(&def, &plan.target)?)
    } else {
        None
    };
    let out = ecs(client, "RunTask", plan.body.clone()).await?;
    let tasks: Vec<String> = items(&out["tasks"]).map(|t| text(&t["taskArn"])).collect();
    let failures: Vec<String> = items(&out["failures"])
        .map(|f| match f["detail"].as_str() {
            Some(detail) => format!("{}: {detail}", text(&f["reason"])),
            None => text(&f["reason"]),
        })
        .collect();
    if tasks.is_empty() {
        if api.json {
            print_json(&out)?;
        }
        bail!(
            "no task started: {}",
            if failures.is_empty() {
                "the server gave no reason".to_owned()
            } else {
                failures.join("; ")
            }
        );
    }
    for f in &failures {
        eprintln!("warning: a task did not start: {f}");
    }
    let cluster = args.cluster.as_deref();
    if !(args.wait || args.follow) {
        if api.json {
            print_json(&out)?;
        } else {
            for arn in &tasks {
                println!("{}", arn_tail(arn));
            }
        }
        return Ok(if failures.is_empty() { 0 } else { 1 });
    }
    let mut stopped = Vec::new();
    if let Some(target) = log_target {
        let arn = &tasks[0];
        let stream = target.stream(arn_tail(arn));
        // With --json, stdout carries only the final answer.
        let output = if api.json {
            logs_cmd::Output::Stderr
        } else {
            logs_cmd::Output::Stdout
        };
        stopped.push(logs_cmd::follow(client, arn, cluster, &target.group, &stream, output).await?);
    } else {
        for arn in &tasks {
            stopped.push(wait_stopped(client, arn, cluster).await?);
        }
    }
    if api.json {
        print_json(&json!({ "tasks": stopped }))?;
    }
    let codes: Vec<i32> = stopped
        .iter()
        .map(|t| exit_code(t, &plan.essential))
        .collect();
    Ok(codes.into_iter().find(|c| *c != 0).unwrap_or(0))
}

async fn wait_stopped(client: &Client, arn: &str, cluster: Option<&str>) -> anyhow::Result<Value> {
    loop {
        let t = poll_task(client, arn, cluster).await?;
        if t["lastStatus"] == "STOPPED" {
            return Ok(t);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `container`'s exit code; 1 when it never ran (the task failed to start),
/// with the task's stoppedReason on stderr.
fn exit_code(task: &Value, container: &str) -> i32 {
    let code = items(&task["containers"])
        .find(|c| c["name"] == container)
        .and_then(|c| c["exitCode"].as_i64());
    match code {
        Some(c) => i32::try_from(c).unwrap_or(1),
        None => {
            eprintln!(
                "task {} stopped: {}",
                arn_tail(&text(&task["taskArn"])),
                task["stoppedReason"].as_str().unwrap_or("no reason given")
            );
            1
        }
    }
}

/// The task's address: its ENI attachment's, else its first container's.
fn task_ip(t: &Value) -> String {
    let from_attachment = items(&t["attachments"])
        .flat_map(|a| items(&a["details"]))
        .find(|d| d["name"] == "privateIPv4Address")
        .and_then(|d| d["value"].as_str());
    let from_container = items(&t["containers"])
        .flat_map(|c| items(&c["networkInterfaces"]))
        .find_map(|n| n["privateIpv4Address"].as_str());
    from_attachment.or(from_container).unwrap_or("-").to_owned()
}

/// The exit code to show for a task: the first non-zero one of its
/// containers, else the first there is.
fn task_exit(t: &Value) -> String {
    let codes: Vec<i64> = items(&t["containers"])
        .filter_map(|c| c["exitCode"].as_i64())
        .collect();
    codes
        .iter()
        .find(|c| **c != 0)
        .or(codes.first())
        .map_or("-".to_owned(), i64::to_string)
}

/// How long a task has run: from its start to its stop, or to `now` while it
/// runs; `-` when it never started.
fn ran(t: &Value, now: f64) -> String {
    match (t["startedAt"].as_f64(), t["stoppedAt"].as_f64()) {
        (Some(start), Some(stop)) => human(stop - start),
        (Some(start), None) => human(now - start),
        _ => "-".to_owned(),
    }
}

fn render_tasks(tasks: &[Value], now: f64) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                short_id(arn_tail(&text(&t["taskArn"]))).to_owned(),
                arn_tail(&text(&t["taskDefinitionArn"])).to_owned(),
                text(&t["lastStatus"]),
                task_ip(t),
                t["createdAt"]
                    .as_f64()
                    .map_or("-".to_owned(), |c| human(now - c)),
                ran(t, now),
                task_exit(t),
                t["stoppedReason"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table::table(
        &[
            "TASK",
            "DEFINITION",
            "STATUS",
            "IP",
            "AGE",
            "RAN",
            "EXIT",
            "REASON",
        ],
        &rows,
    )
}

fn render_task(t: &Value, now: f64) -> String {
    let status = if t["desiredStatus"] != t["lastStatus"] && !t["desiredStatus"].is_null() {
        format!(
            "{} (desired {})",
            text(&t["lastStatus"]),
            text(&t["desiredStatus"])
        )
    } else {
        text(&t["lastStatus"])
    };
    let ran = match (t["startedAt"].as_f64(), t["stoppedAt"].as_f64()) {
        (Some(_), None) => format!("{} so far", ran(t, now)),
        _ => ran(t, now),
    };
    let mut fields = vec![
        ("TASK", arn_tail(&text(&t["taskArn"])).to_owned()),
        ("CLUSTER", arn_tail(&text(&t["clusterArn"])).to_owned()),
        (
            "DEFINITION",
            arn_tail(&text(&t["taskDefinitionArn"])).to_owned(),
        ),
        ("STATUS", status),
        ("CPU", text(&t["cpu"])),
        ("MEMORY", text(&t["memory"])),
        ("IP", task_ip(t)),
        ("CREATED", age(&t["createdAt"], now)),
        ("RAN", ran),
    ];
    if !t["stopCode"].is_null() {
        fields.push(("STOP CODE", text(&t["stopCode"])));
    }
    if let Some(reason) = t["stoppedReason"].as_str() {
        fields.push(("REASON", reason.to_owned()));
    }
    let tags: Vec<String> = items(&t["tags"])
        .map(|tag| format!("{}={}", text(&tag["key"]), text(&tag["value"])))
        .collect();
    if !tags.is_empty() {
        fields.push(("TAGS", tags.join(", ")));
    }
    let rows: Vec<Vec<String>> = items(&t["containers"])
        .map(|c| {
            vec![
                text(&c["name"]),
                text(&c["image"]),
                text(&c["lastStatus"]),
                c["exitCode"]
                    .as_i64()
                    .map_or("-".to_owned(), |e| e.to_string()),
                c["reason"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        table::pairs(&fields),
        table::table(&["CONTAINER", "IMAGE", "STATUS", "EXIT", "REASON"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(line: &[&str]) -> RunArgs {
        Cli::try_parse_from(std::iter::once("run").chain(line.iter().copied()))
            .unwrap()
            .run
    }

    fn def() -> Value {
        json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
            "networkMode": "awsvpc",
            "containerDefinitions": [
                {"name": "init", "image": "busybox", "essential": false},
                {"name": "app", "image": "web:1"},
                {"name": "proxy", "image": "envoy:1", "essential": true}
            ]
        })
    }

    #[test]
    fn a_plain_run_names_the_revision_and_its_network() {
        let plan = plan(&def(), &args(&["web"])).unwrap();
        assert_eq!(
            plan.body,
            json!({
                "taskDefinition": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
                "count": 1,
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-hail"]}},
            })
        );
        // A container without `essential` is essential, as in ECS.
        assert_eq!(plan.target, "app");
        assert_eq!(plan.essential, "app");
    }

    #[test]
    fn overrides_apply_to_the_chosen_container() {
        let plan = plan(
            &def(),
            &args(&[
                "web",
                "--cluster",
                "batch",
                "--env",
                "A=1",
                "--env",
                "B=x=y",
                "--cpu",
                "512",
                "--memory",
                "1024",
                "--timeout",
                "10m",
                "--count",
                "3",
                "--",
                "sh",
                "-c",
                "exit 3",
            ]),
        )
        .unwrap();
        assert_eq!(
            plan.body,
            json!({
                "taskDefinition": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
                "count": 3,
                "cluster": "batch",
                "overrides": {
                    "containerOverrides": [{
                        "name": "app",
                        "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "x=y"}],
                        "command": ["sh", "-c", "exit 3"],
                    }],
                    "cpu": "512",
                    "memory": "1024",
                },
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-hail"]}},
                "tags": [{"key": "hail:maxRuntimeSeconds", "value": "600"}],
            })
        );
    }

    #[test]
    fn a_chosen_container_takes_the_overrides_but_the_exit_code_stays_essential() {
        let init = plan(
            &def(),
            &args(&["web", "--container", "init", "--env", "K=V"]),
        )
        .unwrap();
        assert_eq!(init.target, "init");
        assert_eq!(init.essential, "app");
        assert_eq!(
            init.body["overrides"]["containerOverrides"][0]["name"],
            "init"
        );
        let proxy = plan(&def(), &args(&["web", "--container", "proxy"])).unwrap();
        assert_eq!(
            (proxy.target.as_str(), proxy.essential.as_str()),
            ("proxy", "proxy")
        );
        let err = plan(&def(), &args(&["web", "--container", "nope"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "task definition web:3 has no container nope (it has init, app, proxy)"
        );
    }

    #[test]
    fn the_command_follows_command_or_a_double_dash() {
        let command = |line: &[&str]| {
            plan(&def(), &args(line)).unwrap().body["overrides"]["containerOverrides"][0]["command"]
                .clone()
        };
        let expected = json!(["sh", "-c", "exit 3"]);
        assert_eq!(
            command(&["web", "--wait", "--command", "sh", "-c", "exit 3"]),
            expected
        );
        assert_eq!(
            command(&["web", "--wait", "--", "sh", "-c", "exit 3"]),
            expected
        );
        // Everything after --command is the command's, flags included.
        let parsed = args(&["web", "--command", "ls", "--wait"]);
        assert_eq!(parsed.command(), ["ls", "--wait"]);
        assert!(!parsed.wait);
        let both = args(&["web", "--command", "a", "--", "b"]);
        assert_eq!(both.command(), ["a", "--", "b"]);
    }

    #[test]
    fn the_subnet_goes_into_the_network_configuration() {
        let plan_ = plan(&def(), &args(&["web", "--subnet-id", "subnet-0abc"])).unwrap();
        assert_eq!(
            plan_.body["networkConfiguration"],
            json!({"awsvpcConfiguration": {"subnets": ["subnet-0abc"]}})
        );
        let bridge = json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/b:1",
            "networkMode": "bridge",
            "containerDefinitions": [{"name": "app", "image": "web:1"}]
        });
        let plan = plan(&bridge, &args(&["b", "--subnet-id", "subnet-0abc"])).unwrap();
        assert!(plan.body.get("networkConfiguration").is_none());
    }

    #[test]
    fn bad_arguments_are_refused_before_any_call() {
        assert!(plan(&def(), &args(&["web", "--env", "NOVALUE"])).is_err());
        assert!(plan(&def(), &args(&["web", "--env", "=v"])).is_err());
        assert!(plan(&json!({}), &args(&["web"])).is_err());
        assert!(Cli::try_parse_from(["run", "web", "--timeout", "5d"]).is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }

    #[test]
    fn the_exit_code_is_the_containers_or_one() {
        let t = json!({"taskArn": "a/b", "containers": [{"name": "app", "exitCode": 3}]});
        assert_eq!(exit_code(&t, "app"), 3);
        let failed = json!({"taskArn": "a/b", "stoppedReason": "CannotPullContainerError: x",
                            "containers": [{"name": "app"}]});
        assert_eq!(exit_code(&failed, "app"), 1);
        assert_eq!(exit_code(&json!({}), "app"), 1);
    }

    fn stopped_task() -> Value {
        json!({
            "taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef",
            "clusterArn": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
            "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
            "cpu": "256", "memory": "512",
            "createdAt": 1000.0, "startedAt": 1001.5, "stoppedAt": 1091.5,
            "stopCode": "EssentialContainerExited",
            "stoppedReason": "Essential container in task exited",
            "attachments": [{"details": [{"name": "privateIPv4Address", "value": "10.217.0.7"}]}],
            "tags": [{"key": "hail:maxRuntimeSeconds", "value": "300"}],
            "containers": [
                {"name": "app", "image": "web:1", "lastStatus": "STOPPED", "exitCode": 0},
                {"name": "proxy", "image": "envoy:1", "lastStatus": "STOPPED", "exitCode": 137,
                 "reason": "OutOfMemoryError: Container killed due to memory usage"}
            ]
        })
    }

    #[test]
    fn tasks_render_as_a_table() {
        let running = json!({
            "taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/fedcba9876543210fedcba9876543210",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
            "lastStatus": "RUNNING", "createdAt": 1100.0, "startedAt": 1105.0,
            "containers": [{"name": "app", "networkInterfaces": [{"privateIpv4Address": "10.217.0.9"}]}]
        });
        assert_eq!(
            render_tasks(&[stopped_task(), running], 1200.0),
            "TASK          DEFINITION  STATUS   IP          AGE   RAN  EXIT  REASON\n\
             0123456789ab  web:3       STOPPED  10.217.0.7  3m    90s  137   Essential container in task exited\n\
             fedcba987654  web:3       RUNNING  10.217.0.9  100s  95s  -\n"
        );
    }

    #[test]
    fn a_task_renders_its_state_and_containers() {
        assert_eq!(
            render_task(&stopped_task(), 1200.0),
            "TASK        0123456789abcdef0123456789abcdef\n\
             CLUSTER     default\n\
             DEFINITION  web:3\n\
             STATUS      STOPPED\n\
             CPU         256\n\
             MEMORY      512\n\
             IP          10.217.0.7\n\
             CREATED     3m ago\n\
             RAN         90s\n\
             STOP CODE   EssentialContainerExited\n\
             REASON      Essential container in task exited\n\
             TAGS        hail:maxRuntimeSeconds=300\n\
             \n\
             CONTAINER  IMAGE    STATUS   EXIT  REASON\n\
             app        web:1    STOPPED  0\n\
             proxy      envoy:1  STOPPED  137   OutOfMemoryError: Container killed due to memory usage\n"
        );
    }
}
