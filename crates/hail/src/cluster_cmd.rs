//! `hail cluster ls|create|rm`: ECS clusters on a running server.

use std::path::Path;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::api_cmd::{ecs, items, print_json, text, ApiArgs};
use crate::table;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// List clusters with their task counts.
    Ls,
    /// Create a cluster (idempotent, as in ECS).
    Create { name: String },
    /// Delete a cluster (refused while it has tasks).
    Rm { name: String },
}

pub async fn run(data_dir: &Path, api: ApiArgs, cmd: ClusterCommand) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    match cmd {
        ClusterCommand::Ls => {
            let mut arns: Vec<Value> = Vec::new();
            let mut body = json!({});
            loop {
                let page = ecs(&client, "ListClusters", body.clone()).await?;
                arns.extend(items(&page["clusterArns"]).cloned());
                match page["nextToken"].as_str() {
                    Some(t) => body["nextToken"] = t.into(),
                    None => break,
                }
            }
            // DescribeClusters takes at most 100 names a call.
            let mut clusters = Vec::new();
            for chunk in arns.chunks(100) {
                let out = ecs(&client, "DescribeClusters", json!({ "clusters": chunk })).await?;
                clusters.extend(items(&out["clusters"]).cloned());
            }
            let clusters = json!({ "clusters": clusters });
            if api.json {
                return print_json(&clusters);
            }
            print!("{}", render_clusters(&clusters));
        }
        ClusterCommand::Create { name } => {
            let out = ecs(&client, "CreateCluster", json!({"clusterName": name})).await?;
            if api.json {
                return print_json(&out);
            }
            println!("{}", text(&out["cluster"]["clusterArn"]));
        }
        ClusterCommand::Rm { name } => {
            let out = ecs(&client, "DeleteCluster", json!({"cluster": name})).await?;
            if api.json {
                return print_json(&out);
            }
            println!("deleted {}", text(&out["cluster"]["clusterArn"]));
        }
    }
    Ok(())
}

fn render_clusters(out: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&out["clusters"])
        .map(|c| {
            vec![
                text(&c["clusterName"]),
                text(&c["status"]),
                text(&c["runningTasksCount"]),
                text(&c["pendingTasksCount"]),
            ]
        })
        .collect();
    table::table(&["NAME", "STATUS", "RUNNING", "PENDING"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_render_as_a_table() {
        let out = json!({"clusters": [
            {"clusterName": "default", "status": "ACTIVE", "runningTasksCount": 2, "pendingTasksCount": 0},
            {"clusterName": "batch-jobs", "status": "ACTIVE", "runningTasksCount": 0},
        ]});
        assert_eq!(
            render_clusters(&out),
            "NAME        STATUS  RUNNING  PENDING\n\
             default     ACTIVE  2        0\n\
             batch-jobs  ACTIVE  0        -\n"
        );
    }
}
