//! `hail apply -f hail.yaml`, `hail delete -f hail.yaml`, `hail stack ls|show`.
//!
//! The manifest is read and checked here first (YAML with its lines, then
//! `hail_model::stack`), so a mistake is reported as `hail.yaml:23: path:
//! message` before the server is asked anything. The server plans
//! (`ApplyStack` with `dryRun`), the plan is shown, then applied; an error
//! the server finds is mapped back to its line the same way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use hail_model::stack::Manifest;
use serde_json::{json, Value};

use crate::api_cmd::{hail, items, print_json, text, ApiArgs};
use crate::client::{Client, ClientError};
use crate::stack_yaml::{self, Document};
use crate::table;

#[derive(Args)]
pub struct ApplyArgs {
    /// The stack manifest.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for deletions that wait on draining services.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub wait: u64,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// The stack manifest (its `stack:` names the stack).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        required_unless_present = "stack"
    )]
    pub file: Option<PathBuf>,
    /// The stack, by name, instead of a manifest.
    #[arg(long, conflicts_with = "file")]
    pub stack: Option<String>,
    /// Show what would be deleted and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for services to drain.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub wait: u64,
}

#[derive(Subcommand)]
pub enum StackCommand {
    /// List stacks.
    Ls,
    /// Show a stack and the resources it created.
    Show { name: String },
}

/// A manifest read from disk.
struct Loaded {
    path: PathBuf,
    doc: Document,
}

impl Loaded {
    fn read(path: &Path) -> anyhow::Result<Loaded> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let doc = stack_yaml::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), e.line, e.message))?;
        Ok(Loaded {
            path: path.to_owned(),
            doc,
        })
    }

    /// `file:line: path: message`.
    fn at(&self, path: &str, message: &str) -> anyhow::Error {
        let field = message
            .strip_prefix("unknown field \"")
            .and_then(|m| m.split('"').next());
        let line = self.doc.line_of(path, field);
        let shown = if path.is_empty() {
            message.to_owned()
        } else {
            format!("{path}: {message}")
        };
        anyhow::anyhow!("{}:{line}: {shown}", self.path.display())
    }

    /// A server error, at its line when it names a field of the file.
    fn server_error(&self, e: ClientError) -> anyhow::Error {
        if let ClientError::Api { message, .. } = &e {
            if let Some(path) = self.doc.path_in_message(message) {
                let rest = message[path.len()..].trim_start_matches(": ");
                return self.at(path, rest);
            }
        }
        e.into()
    }
}

fn print_plan(out: &Value, file: &str) {
    let name = text(&out["stackName"]);
    let changes: Vec<&Value> = items(&out["changes"]).collect();
    if changes.is_empty() {
        println!("stack {name}: no changes; the engine already matches {file}");
        return;
    }
    println!("stack {name}: plan");
    let mut counts = [0usize; 3];
    for c in &changes {
        let (sign, i) = match c["action"].as_str() {
            Some("CREATE") => ('+', 0),
            Some("UPDATE") => ('~', 1),
            _ => ('-', 2),
        };
        counts[i] += 1;
        let mut line = format!("  {sign} {} {}", text(&c["kind"]), text(&c["name"]));
        let fields: Vec<String> = items(&c["fields"]).map(text).collect();
        if !fields.is_empty() {
            line.push_str(&format!(": {}", fields.join(", ")));
        }
        if let Some(reason) = c["reason"].as_str() {
            line.push_str(&format!(" ({reason})"));
        }
        println!("{line}");
    }
    println!(
        "{} to create, {} to update, {} to delete",
        counts[0], counts[1], counts[2]
    );
}

/// Repeats a pass until nothing waits, printing what waits once.
async fn until_complete(
    client: &Client,
    op: &str,
    body: Value,
    mut out: Value,
    wait: u64,
) -> Result<Value, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut shown = std::collections::BTreeSet::new();
    while out["complete"] != json!(true) {
        for w in items(&out["waiting"]).map(text) {
            if shown.insert(w.clone()) {
                println!("  waiting: {w}");
            }
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Transport(format!(
                "gave up after {wait} s; run the command again to finish: {}",
                items(&out["waiting"])
                    .map(text)
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        out = hail(client, op, body.clone()).await?;
    }
    Ok(out)
}

pub async fn apply(data_dir: &Path, api: ApiArgs, args: ApplyArgs) -> anyhow::Result<()> {
    let loaded = Loaded::read(&args.file)?;
    Manifest::from_value(loaded.doc.value.clone()).map_err(|e| loaded.at(&e.path, &e.message))?;
    let client = api.connect(data_dir)?;
    let file = args.file.display().to_string();
    let manifest = loaded.doc.value.clone();
    let plan = hail(
        &client,
        "ApplyStack",
        json!({"manifest": manifest, "dryRun": true}),
    )
    .await
    .map_err(|e| loaded.server_error(e))?;
    if args.dry_run {
        if api.json {
            return print_json(&plan);
        }
        print_plan(&plan, &file);
        return Ok(());
    }
    if !api.json {
        print_plan(&plan, &file);
    }
    if items(&plan["changes"]).next().is_none() {
        if api.json {
            return print_json(&plan);
        }
        return Ok(());
    }
    let body = json!({"manifest": manifest});
    let out = hail(&client, "ApplyStack", body.clone())
        .await
        .map_err(|e| loaded.server_error(e))?;
    let out = until_complete(&client, "ApplyStack", body, out, args.wait)
        .await
        .map_err(|e| loaded.server_error(e))?;
    if api.json {
        return print_json(&out);
    }
    println!("stack {}: applied", text(&out["stackName"]));
    Ok(())
}

pub async fn delete(data_dir: &Path, api: ApiArgs, args: DeleteArgs) -> anyhow::Result<()> {
    let name = match (&args.stack, &args.file) {
        (Some(name), _) => name.clone(),
        (None, Some(file)) => {
            let loaded = Loaded::read(file)?;
            match loaded.doc.value.get("stack").and_then(Value::as_str) {
                Some(name) => name.to_owned(),
                None => return Err(loaded.at("stack", "the manifest names no stack")),
            }
        }
        (None, None) => bail!("give -f FILE or --stack NAME"),
    };
    let client = api.connect(data_dir)?;
    let plan = match hail(
        &client,
        "DeleteStack",
        json!({"stackName": name, "dryRun": true}),
    )
    .await
    {
        Ok(plan) => plan,
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            println!("stack {name}: nothing to delete (no such stack)");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if !api.json {
        print_plan(&plan, "the manifest");
    }
    if args.dry_run {
        return if api.json { print_json(&plan) } else { Ok(()) };
    }
    let body = json!({"stackName": name});
    let out = hail(&client, "DeleteStack", body.clone()).await?;
    let out = until_complete(&client, "DeleteStack", body, out, args.wait).await?;
    if api.json {
        return print_json(&out);
    }
    println!("stack {name}: deleted");
    Ok(())
}

pub async fn run(data_dir: &Path, api: ApiArgs, cmd: StackCommand) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    match cmd {
        StackCommand::Ls => {
            let out = hail(&client, "ListStacks", json!({})).await?;
            if api.json {
                return print_json(&out);
            }
            let rows: Vec<Vec<String>> = items(&out["stacks"])
                .map(|s| {
                    vec![
                        text(&s["stackName"]),
                        text(&s["status"]),
                        text(&s["resourceCount"]),
                    ]
                })
                .collect();
            print!("{}", table::table(&["NAME", "STATUS", "RESOURCES"], &rows));
            Ok(())
        }
        StackCommand::Show { name } => {
            let out = hail(&client, "DescribeStack", json!({"stackName": name})).await?;
            if api.json {
                return print_json(&out);
            }
            println!(
                "stack {} ({})",
                text(&out["stack"]["stackName"]),
                text(&out["stack"]["status"])
            );
            let rows: Vec<Vec<String>> = items(&out["resources"])
                .map(|r| {
                    vec![
                        text(&r["kind"]),
                        text(&r["name"]),
                        text(&r["state"]),
                        text(&r["arn"]),
                    ]
                })
                .collect();
            print!("{}", table::table(&["KIND", "NAME", "STATE", "ARN"], &rows));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path)
    }

    /// The example stack decodes, passes the model's checks, and validates
    /// against the published schema.
    #[test]
    fn the_example_manifest_is_valid_and_matches_the_schema() {
        let loaded = Loaded::read(&repo("examples/fargate-patterns/hail.yaml")).unwrap();
        let manifest = Manifest::from_value(loaded.doc.value.clone()).unwrap();
        assert_eq!(manifest.stack, "fargate-patterns");
        assert_eq!(
            manifest.services["bean-counter-service"]
                .autoscaling
                .as_ref()
                .map(|a| (a.min, a.max)),
            Some((2, 4))
        );
        assert_eq!(manifest.triggers["tom-thumb"].bucket, "media");
        assert_eq!(
            manifest.task_definitions["sidecar-assembly"]
                .container_definitions
                .len(),
            4
        );
        // The task definitions are the examples' own files, in YAML.
        for (family, file) in [
            ("tom-thumb-task", "examples/tom-thumb/task-definition.json"),
            (
                "bean-counter-service-task",
                "examples/bean-counter/task-definition.json",
            ),
            (
                "sidecar-assembly",
                "examples/sidecar-assembly/task-definition.json",
            ),
        ] {
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(repo(file)).unwrap()).unwrap();
            let mut from_yaml = loaded.doc.value["taskDefinitions"][family].clone();
            from_yaml["family"] = family.into();
            assert_eq!(from_yaml, json, "{family} differs from {file}");
        }

        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(repo("schemas/hail-stack.schema.json")).unwrap(),
        )
        .unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&loaded.doc.value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // The schema does check: an unknown field and a wrong type fail.
        let mut bad = loaded.doc.value.clone();
        bad["services"]["bean-counter-service"]["replicas"] = 3.into();
        bad["services"]["sidecar-assembly"]["desiredCount"] = "one".into();
        assert_eq!(validator.iter_errors(&bad).count(), 2);
    }

    #[test]
    fn errors_point_at_the_line_of_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hail.yaml");
        std::fs::write(
            &path,
            "stack: demo\n\
             taskDefinitions:\n\
             \x20 web:\n\
             \x20   containerDefinitions:\n\
             \x20     - name: app\n\
             \x20       image: busybox\n\
             \x20       memory: 128\n\
             \x20       portMappings: [{containerPort: 80}]\n\
             services:\n\
             \x20 web:\n\
             \x20   taskDefinition: web\n\
             \x20   autoscaling:\n\
             \x20     min: 2\n\
             \x20     max: 0\n",
        )
        .unwrap();
        let loaded = Loaded::read(&path).unwrap();
        let e = Manifest::from_value(loaded.doc.value.clone()).unwrap_err();
        let shown = loaded.at(&e.path, &e.message).to_string();
        assert_eq!(
            shown,
            format!(
                "{}:14: services.web.autoscaling.max: 0 is below min 2",
                path.display()
            )
        );
        let server = ClientError::Api {
            code: "InvalidParameterException".into(),
            message: "services.web.taskDefinition: no".into(),
        };
        assert_eq!(
            loaded.server_error(server).to_string(),
            format!("{}:11: services.web.taskDefinition: no", path.display())
        );
    }
}
