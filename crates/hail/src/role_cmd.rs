//! `hail role create|ls|show|put-policy|rm`: roles tasks act as.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::api_cmd::{hail, items, print_json, text, ApiArgs};
use crate::table;

#[derive(Subcommand)]
pub enum RoleCommand {
    /// List roles.
    Ls,
    /// Create a role. The policy is an IAM identity policy document, from a
    /// file (`--policy-file`) or built from `--allow ACTION=RESOURCE` pairs.
    Create {
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a role and its policy.
    Show { name: String },
    /// Replace a role's policy.
    PutPolicy {
        name: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Delete a role.
    Rm { name: String },
}

#[derive(clap::Args)]
pub struct PolicyArgs {
    /// A policy document (JSON), e.g. `{"Statement":[{"Effect":"Allow",…}]}`.
    #[arg(long, value_name = "FILE", conflicts_with = "allow")]
    policy_file: Option<PathBuf>,
    /// Allow ACTION on RESOURCE (`s3:PutObject=arn:aws:s3:::media/thumbnail/*`);
    /// repeatable, each one statement.
    #[arg(long, value_name = "ACTION=RESOURCE")]
    allow: Vec<String>,
}

impl PolicyArgs {
    fn document(&self) -> anyhow::Result<Value> {
        if let Some(path) = &self.policy_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            return serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()));
        }
        if self.allow.is_empty() {
            anyhow::bail!("give the policy with --policy-file FILE or --allow ACTION=RESOURCE");
        }
        let statements = self
            .allow
            .iter()
            .map(|pair| {
                let (action, resource) = pair
                    .split_once('=')
                    .with_context(|| format!("--allow {pair:?}: expected ACTION=RESOURCE"))?;
                let actions: Vec<&str> = action.split(',').collect();
                Ok(json!({"Effect": "Allow", "Action": actions, "Resource": resource}))
            })
            .collect::<anyhow::Result<Vec<Value>>>()?;
        Ok(json!({"Version": "2012-10-17", "Statement": statements}))
    }
}

pub async fn run(data_dir: &Path, api: ApiArgs, cmd: RoleCommand) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    let out = match cmd {
        RoleCommand::Ls => {
            let out = hail(&client, "ListRoles", json!({})).await?;
            if !api.json {
                let rows: Vec<Vec<String>> = items(&out["roles"])
                    .map(|r| {
                        vec![
                            text(&r["roleName"]),
                            text(&r["roleArn"]),
                            items(&r["policy"]["Statement"]).count().to_string(),
                        ]
                    })
                    .collect();
                print!("{}", table::table(&["NAME", "ARN", "STATEMENTS"], &rows));
                return Ok(());
            }
            out
        }
        RoleCommand::Create {
            name,
            policy,
            description,
        } => {
            let mut body = json!({"roleName": name, "policy": policy.document()?});
            if let Some(d) = description {
                body["description"] = d.into();
            }
            let out = hail(&client, "CreateRole", body).await?;
            if !api.json {
                println!("{}", text(&out["role"]["roleArn"]));
                return Ok(());
            }
            out
        }
        RoleCommand::Show { name } => hail(&client, "GetRole", json!({"roleName": name})).await?,
        RoleCommand::PutPolicy { name, policy } => {
            hail(
                &client,
                "PutRolePolicy",
                json!({"roleName": name, "policy": policy.document()?}),
            )
            .await?
        }
        RoleCommand::Rm { name } => {
            hail(&client, "DeleteRole", json!({"roleName": name})).await?;
            if !api.json {
                println!("deleted role {name}");
                return Ok(());
            }
            json!({})
        }
    };
    print_json(&out)
}
