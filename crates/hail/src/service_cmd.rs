//! `hail service ls|show|scale|pause|resume`: ECS services on a running server.

use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::api_cmd::{age, arn_tail, ecs, hail, items, now_secs, print_json, text, ApiArgs};
use crate::table;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// List a cluster's services with their desired, running and pending counts.
    Ls {
        #[arg(long, default_value = "default")]
        cluster: String,
    },
    /// Show a service: counts, deployments and recent events.
    Show {
        name: String,
        #[arg(long, default_value = "default")]
        cluster: String,
    },
    /// Set a service's desired count.
    Scale {
        name: String,
        count: u32,
        #[arg(long, default_value = "default")]
        cluster: String,
    },
    /// Stop all of a service's tasks, keeping its desired count for `resume`.
    Pause {
        name: String,
        #[arg(long, default_value = "default")]
        cluster: String,
    },
    /// Bring a paused service back to its desired count.
    Resume {
        name: String,
        #[arg(long, default_value = "default")]
        cluster: String,
    },
}

fn counts(s: &Value) -> Vec<String> {
    vec![
        text(&s["serviceName"]),
        text(&s["status"]),
        text(&s["desiredCount"]),
        text(&s["runningCount"]),
        text(&s["pendingCount"]),
        arn_tail(s["taskDefinition"].as_str().unwrap_or_default()).to_owned(),
    ]
}

pub async fn run(data_dir: &Path, api: ApiArgs, cmd: ServiceCommand) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    match cmd {
        ServiceCommand::Ls { cluster } => {
            let mut arns = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({"cluster": cluster, "maxResults": 100});
                if let Some(t) = &token {
                    body["nextToken"] = t.clone().into();
                }
                let page = ecs(&client, "ListServices", body).await?;
                arns.extend(items(&page["serviceArns"]).cloned());
                token = page["nextToken"].as_str().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            let mut services = Vec::new();
            for chunk in arns.chunks(10) {
                let out = ecs(
                    &client,
                    "DescribeServices",
                    json!({"cluster": cluster, "services": chunk}),
                )
                .await?;
                services.extend(items(&out["services"]).cloned());
            }
            if api.json {
                return print_json(&json!({ "services": services }));
            }
            let rows: Vec<Vec<String>> = services.iter().map(counts).collect();
            print!(
                "{}",
                table::table(
                    &[
                        "NAME",
                        "STATUS",
                        "DESIRED",
                        "RUNNING",
                        "PENDING",
                        "TASK DEFINITION"
                    ],
                    &rows
                )
            );
        }
        ServiceCommand::Show { name, cluster } => {
            let out = ecs(
                &client,
                "DescribeServices",
                json!({"cluster": cluster, "services": [name], "include": ["TAGS"]}),
            )
            .await?;
            if let Some(f) = items(&out["failures"]).next() {
                anyhow::bail!("service {name}: {}", text(&f["reason"]));
            }
            let s = &out["services"][0];
            if api.json {
                return print_json(s);
            }
            print!(
                "{}",
                table::table(
                    &[
                        "NAME",
                        "STATUS",
                        "DESIRED",
                        "RUNNING",
                        "PENDING",
                        "TASK DEFINITION"
                    ],
                    &[counts(s)]
                )
            );
            println!();
            let rows: Vec<Vec<String>> = items(&s["deployments"])
                .map(|d| {
                    vec![
                        text(&d["id"]),
                        text(&d["status"]),
                        arn_tail(d["taskDefinition"].as_str().unwrap_or_default()).to_owned(),
                        text(&d["desiredCount"]),
                        text(&d["runningCount"]),
                        text(&d["pendingCount"]),
                        text(&d["failedTasks"]),
                        text(&d["rolloutState"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::table(
                    &[
                        "DEPLOYMENT",
                        "STATUS",
                        "TASK DEFINITION",
                        "DESIRED",
                        "RUNNING",
                        "PENDING",
                        "FAILED",
                        "ROLLOUT"
                    ],
                    &rows
                )
            );
            println!();
            let now = now_secs();
            for e in items(&s["events"]).take(10) {
                println!("{:>6}  {}", age(&e["createdAt"], now), text(&e["message"]));
            }
        }
        ServiceCommand::Scale {
            name,
            count,
            cluster,
        } => {
            let out = ecs(
                &client,
                "UpdateService",
                json!({"cluster": cluster, "service": name, "desiredCount": count}),
            )
            .await?;
            if api.json {
                return print_json(&out);
            }
            println!("service {name}: desired count {count}");
        }
        ServiceCommand::Pause { name, cluster } => {
            let out = hail(
                &client,
                "PauseService",
                json!({"cluster": cluster, "service": name}),
            )
            .await?;
            if api.json {
                return print_json(&out);
            }
            println!(
                "service {name} paused (resumes at {} tasks)",
                text(&out["service"]["hailPausedDesiredCount"])
            );
        }
        ServiceCommand::Resume { name, cluster } => {
            let out = hail(
                &client,
                "ResumeService",
                json!({"cluster": cluster, "service": name}),
            )
            .await?;
            if api.json {
                return print_json(&out);
            }
            println!(
                "service {name} resumed at {} tasks",
                text(&out["service"]["desiredCount"])
            );
        }
    }
    Ok(())
}
