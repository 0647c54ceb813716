//! `hail taskdef register|ls|show`: ECS task definitions on a running server.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::api_cmd::{arn_tail, ecs, items, print_json, text, ApiArgs};
use crate::table;

#[derive(Subcommand)]
pub enum TaskdefCommand {
    /// Register a task definition from a JSON file (the RegisterTaskDefinition
    /// shape, as `aws ecs register-task-definition --cli-input-json` takes it;
    /// `-` reads standard input).
    Register { file: PathBuf },
    /// List the active task definition revisions.
    Ls {
        /// Only this family's revisions.
        #[arg(long)]
        family: Option<String>,
    },
    /// Show a task definition (`family`, `family:revision` or an ARN).
    Show { task_definition: String },
}

pub async fn run(data_dir: &Path, api: ApiArgs, cmd: TaskdefCommand) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    match cmd {
        TaskdefCommand::Register { file } => {
            let text_in = if file.as_os_str() == "-" {
                let mut buf = String::new();
                std::io::stdin()
                    .read_to_string(&mut buf)
                    .context("read the task definition from standard input")?;
                buf
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("read {}", file.display()))?
            };
            let body: Value = serde_json::from_str(&text_in)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let out = ecs(&client, "RegisterTaskDefinition", body).await?;
            if api.json {
                return print_json(&out);
            }
            println!("{}", text(&out["taskDefinition"]["taskDefinitionArn"]));
        }
        TaskdefCommand::Ls { family } => {
            let mut arns = Vec::new();
            let mut body = json!({});
            if let Some(f) = &family {
                body["familyPrefix"] = f.clone().into();
            }
            loop {
                let page = ecs(&client, "ListTaskDefinitions", body.clone()).await?;
                arns.extend(items(&page["taskDefinitionArns"]).cloned());
                match page["nextToken"].as_str() {
                    Some(t) => body["nextToken"] = t.into(),
                    None => break,
                }
            }
            if api.json {
                return print_json(&json!({ "taskDefinitionArns": arns }));
            }
            for arn in arns {
                println!("{}", arn_tail(&text(&arn)));
            }
        }
        TaskdefCommand::Show { task_definition } => {
            let out = ecs(
                &client,
                "DescribeTaskDefinition",
                json!({"taskDefinition": task_definition, "include": ["TAGS"]}),
            )
            .await?;
            if api.json {
                return print_json(&out);
            }
            print!("{}", render_task_definition(&out));
        }
    }
    Ok(())
}

/// A `DescribeTaskDefinition` answer for people: the task's settings, then
/// one row per container.
fn render_task_definition(out: &Value) -> String {
    let def = &out["taskDefinition"];
    let list = |v: &Value| {
        let all: Vec<String> = items(v).map(text).collect();
        if all.is_empty() {
            "-".to_owned()
        } else {
            all.join(", ")
        }
    };
    let tags: Vec<String> = items(&out["tags"])
        .map(|t| format!("{}={}", text(&t["key"]), text(&t["value"])))
        .collect();
    let mut fields = vec![
        (
            "TASK DEFINITION",
            arn_tail(&text(&def["taskDefinitionArn"])).to_owned(),
        ),
        ("STATUS", text(&def["status"])),
        ("CPU", text(&def["cpu"])),
        ("MEMORY", text(&def["memory"])),
        ("NETWORK MODE", text(&def["networkMode"])),
        ("REQUIRES", list(&def["requiresCompatibilities"])),
        ("TASK ROLE", text(&def["taskRoleArn"])),
        ("EXECUTION ROLE", text(&def["executionRoleArn"])),
    ];
    if !tags.is_empty() {
        fields.push(("TAGS", tags.join(", ")));
    }
    let rows: Vec<Vec<String>> = items(&def["containerDefinitions"])
        .map(|c| {
            let essential = if c["essential"] == false { "no" } else { "yes" };
            let command: Vec<String> = items(&c["entryPoint"])
                .chain(items(&c["command"]))
                .map(text)
                .collect();
            let log = &c["logConfiguration"];
            let logs = match (
                log["logDriver"].as_str(),
                log["options"]["awslogs-group"].as_str(),
            ) {
                (Some("awslogs"), Some(group)) => format!("awslogs {group}"),
                (Some(driver), _) => driver.to_owned(),
                (None, _) => "-".to_owned(),
            };
            vec![
                text(&c["name"]),
                text(&c["image"]),
                essential.to_owned(),
                if command.is_empty() {
                    "-".to_owned()
                } else {
                    command.join(" ")
                },
                logs,
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        table::pairs(&fields),
        table::table(
            &["CONTAINER", "IMAGE", "ESSENTIAL", "COMMAND", "LOGS"],
            &rows
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_definition_renders_its_settings_and_containers() {
        let out = json!({
            "taskDefinition": {
                "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
                "status": "ACTIVE", "cpu": "256", "memory": "512", "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "containerDefinitions": [
                    {"name": "app", "image": "web:1", "command": ["serve", "--port", "80"],
                     "logConfiguration": {"logDriver": "awslogs",
                                          "options": {"awslogs-group": "/ecs/web"}}},
                    {"name": "proxy", "image": "envoy:1", "essential": false}
                ]
            },
            "tags": [{"key": "team", "value": "core"}]
        });
        assert_eq!(
            render_task_definition(&out),
            "TASK DEFINITION  web:3\n\
             STATUS           ACTIVE\n\
             CPU              256\n\
             MEMORY           512\n\
             NETWORK MODE     awsvpc\n\
             REQUIRES         FARGATE\n\
             TASK ROLE        -\n\
             EXECUTION ROLE   -\n\
             TAGS             team=core\n\
             \n\
             CONTAINER  IMAGE    ESSENTIAL  COMMAND          LOGS\n\
             app        web:1    yes        serve --port 80  awslogs /ecs/web\n\
             proxy      envoy:1  no         -                -\n"
        );
    }
}
