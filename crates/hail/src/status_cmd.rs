//! `hail status` (or `hail top`): what runs on a server, refreshed about
//! once a second — clusters, services with their counts, rollouts, targets
//! and last scaling activity, running tasks with the CPU and memory they
//! use, and recent trigger deliveries.
//!
//! Everything comes from the server's APIs, as any client would read it:
//! ECS (clusters, services, tasks), Application Auto Scaling (scaling
//! activities), and Hail's native API (target health, triggers, and
//! DescribeTaskStats for the tasks' cgroup usage). On a terminal the view is
//! live (`status_tui`); with `--once`, `--json`, or stdout not a terminal it
//! prints one snapshot and exits.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hail_api::Service;
use serde_json::{json, Value};

use crate::api_cmd::{arn_tail, ecs, hail, items, now_secs, print_json, text, ApiArgs};
use crate::client::Client;
use crate::status_view::{render_text, snapshot, Answers, CpuRates};

#[derive(clap::Args, Clone)]
pub struct StatusArgs {
    /// Print one snapshot as tables and exit (what happens anyway when
    /// stdout is not a terminal).
    #[arg(long)]
    pub once: bool,
    /// Seconds between refreshes; also the interval CPU use is measured over.
    #[arg(long, default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// Show only this cluster (repeatable); all clusters by default.
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
}

/// Refresh intervals from a tenth of a second to an hour.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("{s} is out of range: from 0.1 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(data_dir: &Path, api: ApiArgs, args: StatusArgs) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    if !args.once && !api.json && std::io::stdout().is_terminal() {
        return crate::status_tui::run(&client, &args).await;
    }
    let mut rates = CpuRates::default();
    let mut answers = gather(&client, &args.clusters).await?;
    // CPU use is a rate: a second reading, an interval after the first,
    // gives it (as `docker stats --no-stream` does). Without tasks there is
    // nothing to wait for.
    if !answers.stats.is_empty() {
        rates.observe(&answers.stats);
        tokio::time::sleep(args.interval).await;
        answers = gather(&client, &args.clusters).await?;
    }
    let now = now_secs();
    let view = snapshot(&answers, &rates.observe(&answers.stats), now);
    if api.json {
        return print_json(&serde_json::to_value(&view)?);
    }
    print!("{}", render_text(&view, now));
    Ok(())
}

/// Every page of a list operation: the items of `field`, following `nextToken`.
async fn list_all(
    client: &Client,
    op: &str,
    mut body: Value,
    field: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let page = ecs(client, op, body.clone()).await?;
        out.extend(items(&page[field]).cloned());
        match page["nextToken"].as_str() {
            Some(t) => body["nextToken"] = t.into(),
            None => return Ok(out),
        }
    }
}

/// One refresh's answers. ECS failures end the refresh (the server is not
/// there, or the cluster went away); the other APIs only add a problem, so
/// a server without a load balancer or triggers still shows everything else.
pub async fn gather(client: &Client, only: &[String]) -> anyhow::Result<Answers> {
    let mut a = Answers::default();
    let names: Vec<Value> = if only.is_empty() {
        list_all(client, "ListClusters", json!({}), "clusterArns").await?
    } else {
        only.iter().map(|c| Value::from(c.as_str())).collect()
    };
    // DescribeClusters takes at most 100 names a call.
    for chunk in names.chunks(100) {
        let out = ecs(client, "DescribeClusters", json!({ "clusters": chunk })).await?;
        if let Some(f) = items(&out["failures"]).next() {
            let arn = text(&f["arn"]);
            anyhow::bail!("cluster {}: {}", arn_tail(&arn), text(&f["reason"]));
        }
        a.clusters.extend(items(&out["clusters"]).cloned());
    }
    let active: Vec<String> = a
        .clusters
        .iter()
        .filter(|c| c["status"] == "ACTIVE")
        .filter_map(|c| c["clusterName"].as_str().map(str::to_owned))
        .collect();
    for cluster in &active {
        let arns = list_all(
            client,
            "ListServices",
            json!({"cluster": cluster, "maxResults": 100}),
            "serviceArns",
        )
        .await?;
        // DescribeServices takes at most 10 a call.
        for chunk in arns.chunks(10) {
            let out = ecs(
                client,
                "DescribeServices",
                json!({"cluster": cluster, "services": chunk}),
            )
            .await?;
            a.services.extend(items(&out["services"]).cloned());
        }
        let arns = list_all(
            client,
            "ListTasks",
            json!({"cluster": cluster, "desiredStatus": "RUNNING", "maxResults": 100}),
            "taskArns",
        )
        .await?;
        for chunk in arns.chunks(100) {
            let out = ecs(
                client,
                "DescribeTasks",
                json!({"cluster": cluster, "tasks": chunk}),
            )
            .await?;
            let described: Vec<Value> = items(&out["tasks"]).cloned().collect();
            let running: Vec<&Value> = described
                .iter()
                .filter(|t| t["lastStatus"] == "RUNNING")
                .map(|t| &t["taskArn"])
                .collect();
            if !running.is_empty() {
                // Tasks that stopped meanwhile come back as failures and
                // simply show no usage.
                match hail(
                    client,
                    "DescribeTaskStats",
                    json!({"cluster": cluster, "tasks": running}),
                )
                .await
                {
                    Ok(out) => a.stats.extend(items(&out["taskStats"]).cloned()),
                    Err(e) => a.problems.push(format!("task stats of {cluster}: {e}")),
                }
            }
            a.tasks.extend(described);
        }
    }

    match client
        .call(
            Service::ApplicationAutoScaling,
            "DescribeScalingActivities",
            json!({"ServiceNamespace": "ecs", "MaxResults": 50}),
        )
        .await
    {
        Ok(out) => a.activities = items(&out["ScalingActivities"]).cloned().collect(),
        Err(e) => a.problems.push(format!("scaling activities: {e}")),
    }

    let groups: BTreeSet<String> = a
        .services
        .iter()
        .flat_map(|s| items(&s["loadBalancers"]))
        .filter_map(|lb| lb["targetGroupArn"].as_str().map(str::to_owned))
        .collect();
    for tg in groups {
        match hail(client, "DescribeTargetHealth", json!({"targetGroup": tg})).await {
            Ok(out) => {
                let health = items(&out["targetHealthDescriptions"]).cloned().collect();
                a.target_health.insert(tg, health);
            }
            Err(e) => a.problems.push(format!("target group {tg}: {e}")),
        }
    }

    match deliveries(client).await {
        Ok(invocations) => a.invocations = invocations,
        Err(e) => a.problems.push(format!("triggers: {e:#}")),
    }
    Ok(a)
}

/// The recent invocations of every trigger.
async fn deliveries(client: &Client) -> anyhow::Result<Vec<Value>> {
    let list = hail(client, "ListTriggers", json!({})).await?;
    let mut out = Vec::new();
    for t in items(&list["triggers"]) {
        let name = t["triggerName"]
            .as_str()
            .context("a trigger without a name")?;
        match hail(client, "DescribeTrigger", json!({"triggerName": name})).await {
            Ok(d) => out.extend(items(&d["recentInvocations"]).cloned()),
            // Deleted between the two calls.
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(e).with_context(|| format!("trigger {name}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_seconds_within_reason() {
        assert_eq!(parse_interval("1").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_interval("0").unwrap_err().contains("out of range"));
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("soon").unwrap_err().contains("not a number"));
        assert!(parse_interval("NaN").is_err());
    }
}
