//! `hail trigger create|ls|show|rm|dlq`: object events that run tasks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::api_cmd::{arn_tail, hail, items, print_json, text, ApiArgs};
use crate::table;

#[derive(Subcommand)]
pub enum TriggerCommand {
    /// List triggers with their invocation counts.
    Ls,
    /// Create a trigger: objects landing in a bucket (under a prefix, with a
    /// suffix) run a task definition, with overrides rendered per event
    /// (`{{key}}`, `{{key | basename | stem}}`, `{{url}}`, `{{timestamp}}`, …).
    Create(Box<CreateArgs>),
    /// Show a trigger, its counts and its recent invocations.
    Show { name: String },
    /// Delete a trigger (and its bucket rule and invocations).
    Rm { name: String },
    /// The dead-letter list: invocations that ran out of attempts.
    Dlq {
        name: String,
        /// Queue them again (all, or the ids given with --id).
        #[arg(long)]
        redrive: bool,
        /// An invocation to re-drive (repeatable).
        #[arg(long = "id", requires = "redrive")]
        ids: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    name: String,
    /// A CreateTrigger request (JSON) to take everything else from.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bucket", "task_definition"])]
    from_file: Option<PathBuf>,
    #[arg(long, required_unless_present = "from_file")]
    bucket: Option<String>,
    /// Task definition: family, family:revision or ARN.
    #[arg(long, required_unless_present = "from_file")]
    task_definition: Option<String>,
    #[arg(long, default_value = "default")]
    cluster: String,
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long)]
    suffix: Option<String>,
    /// S3 event names (repeatable); `s3:ObjectCreated:*` by default.
    #[arg(long = "event")]
    events: Vec<String>,
    /// The container the overrides apply to; the first of the definition
    /// must be named when --env or --command is given.
    #[arg(long)]
    container: Option<String>,
    /// NAME=TEMPLATE environment override (repeatable).
    #[arg(long = "env", value_name = "NAME=TEMPLATE")]
    env: Vec<String>,
    /// Command override, one argument per flag (templates allowed).
    #[arg(long = "command", value_name = "ARG")]
    command: Vec<String>,
    /// Role the tasks act as, overriding the definition's taskRoleArn.
    #[arg(long)]
    task_role_arn: Option<String>,
    #[arg(long)]
    max_concurrency: Option<u32>,
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Life of `{{url}}`, the presigned GET URL of the object (seconds).
    #[arg(long)]
    url_expires_seconds: Option<u32>,
}

impl CreateArgs {
    fn request(&self) -> anyhow::Result<Value> {
        if let Some(path) = &self.from_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            let mut body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            body["triggerName"] = self.name.clone().into();
            return Ok(body);
        }
        let mut body = json!({
            "triggerName": self.name,
            "bucket": self.bucket,
            "taskDefinition": self.task_definition,
            "cluster": self.cluster,
        });
        for (field, value) in [("prefix", &self.prefix), ("suffix", &self.suffix)] {
            if let Some(v) = value {
                body[field] = v.clone().into();
            }
        }
        if !self.events.is_empty() {
            body["events"] = json!(self.events);
        }
        for (field, value) in [
            ("maxConcurrency", self.max_concurrency),
            ("maxAttempts", self.max_attempts),
            ("urlExpiresSeconds", self.url_expires_seconds),
        ] {
            if let Some(v) = value {
                body[field] = v.into();
            }
        }
        let mut overrides = json!({});
        if !self.env.is_empty() || !self.command.is_empty() {
            let container = self
                .container
                .clone()
                .context("--env and --command need --container NAME")?;
            let mut o = json!({"name": container});
            if !self.env.is_empty() {
                let env = self
                    .env
                    .iter()
                    .map(|pair| {
                        let (name, value) = pair
                            .split_once('=')
                            .with_context(|| format!("--env {pair:?}: expected NAME=TEMPLATE"))?;
                        Ok(json!({"name": name, "value": value}))
                    })
                    .collect::<anyhow::Result<Vec<Value>>>()?;
                o["environment"] = Value::Array(env);
            }
            if !self.command.is_empty() {
                o["command"] = json!(self.command);
            }
            overrides["containerOverrides"] = json!([o]);
        }
        if let Some(role) = &self.task_role_arn {
            overrides["taskRoleArn"] = role.clone().into();
        }
        body["overrides"] = overrides;
        Ok(body)
    }
}

fn count(t: &Value, status: &str) -> String {
    t["invocationCounts"][status]
        .as_u64()
        .unwrap_or(0)
        .to_string()
}

fn filter(t: &Value) -> String {
    format!(
        "{}{}*{}",
        text(&t["bucket"]),
        t["prefix"]
            .as_str()
            .map_or("/".to_owned(), |p| format!("/{p}")),
        t["suffix"].as_str().unwrap_or("")
    )
}

pub async fn run(data_dir: &Path, api: ApiArgs, cmd: TriggerCommand) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    match cmd {
        TriggerCommand::Ls => {
            let list = hail(&client, "ListTriggers", json!({})).await?;
            let mut described = Vec::new();
            for t in items(&list["triggers"]) {
                described.push(
                    hail(
                        &client,
                        "DescribeTrigger",
                        json!({"triggerName": t["triggerName"]}),
                    )
                    .await?,
                );
            }
            if api.json {
                return print_json(&json!({ "triggers": described }));
            }
            let rows: Vec<Vec<String>> = described
                .iter()
                .map(|d| {
                    let t = &d["trigger"];
                    vec![
                        text(&t["triggerName"]),
                        filter(t),
                        text(&t["taskDefinition"]),
                        count(d, "QUEUED"),
                        count(d, "RUNNING"),
                        count(d, "SUCCEEDED"),
                        count(d, "DEAD"),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::table(
                    &[
                        "NAME",
                        "OBJECTS",
                        "TASK DEFINITION",
                        "QUEUED",
                        "RUNNING",
                        "DONE",
                        "DEAD"
                    ],
                    &rows
                )
            );
        }
        TriggerCommand::Create(args) => {
            let out = hail(&client, "CreateTrigger", args.request()?).await?;
            if api.json {
                return print_json(&out);
            }
            println!("{}", text(&out["trigger"]["triggerArn"]));
        }
        TriggerCommand::Show { name } => {
            let out = hail(&client, "DescribeTrigger", json!({"triggerName": name})).await?;
            if api.json {
                return print_json(&out);
            }
            let t = &out["trigger"];
            println!("trigger      {}", text(&t["triggerName"]));
            println!(
                "objects      {} ({})",
                filter(t),
                items(&t["events"]).map(text).collect::<Vec<_>>().join(", ")
            );
            println!(
                "runs         {} on cluster {}",
                text(&t["taskDefinition"]),
                text(&t["cluster"])
            );
            println!(
                "limits       {} at once, {} attempts",
                text(&t["maxConcurrency"]),
                text(&t["maxAttempts"])
            );
            println!(
                "invocations  {} queued, {} running, {} succeeded, {} dead",
                count(&out, "QUEUED"),
                count(&out, "RUNNING"),
                count(&out, "SUCCEEDED"),
                count(&out, "DEAD")
            );
            print!("{}", render_invocations(&out["recentInvocations"]));
        }
        TriggerCommand::Rm { name } => {
            hail(&client, "DeleteTrigger", json!({"triggerName": name})).await?;
            if !api.json {
                println!("deleted trigger {name}");
            }
        }
        TriggerCommand::Dlq { name, redrive, ids } => {
            if redrive {
                let mut body = json!({"triggerName": name});
                if !ids.is_empty() {
                    body["invocationIds"] = json!(ids);
                }
                let out = hail(&client, "RedriveTriggerInvocations", body).await?;
                if api.json {
                    return print_json(&out);
                }
                println!("queued again: {}", items(&out["redriven"]).count());
                return Ok(());
            }
            let out = hail(
                &client,
                "ListTriggerInvocations",
                json!({"triggerName": name, "status": "DEAD", "maxResults": 1000}),
            )
            .await?;
            if api.json {
                return print_json(&out);
            }
            print!("{}", render_invocations(&out["invocations"]));
        }
    }
    Ok(())
}

fn render_invocations(list: &Value) -> String {
    let rows: Vec<Vec<String>> = items(list)
        .map(|i| {
            vec![
                text(&i["invocationId"]),
                text(&i["status"]),
                text(&i["attempts"]),
                text(&i["key"]),
                i["taskArn"]
                    .as_str()
                    .map_or("-".to_owned(), |a| arn_tail(a).to_owned()),
                text(&i["lastError"]),
            ]
        })
        .collect();
    table::table(
        &[
            "INVOCATION",
            "STATUS",
            "ATTEMPTS",
            "KEY",
            "TASK",
            "LAST ERROR",
        ],
        &rows,
    )
}
