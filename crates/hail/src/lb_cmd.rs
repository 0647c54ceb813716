//! `hail lb …`: the load balancer's target groups and listeners.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::api_cmd::{hail, items, print_json, text, ApiArgs};
use crate::table;

#[derive(Subcommand)]
pub enum LbCommand {
    /// Listeners (with the address each is bound to) and target groups.
    Ls,
    /// Create a target group: the tasks of a service, health-checked.
    CreateTargetGroup(TargetGroupArgs),
    /// Delete a target group (refused while a listener or service uses it).
    RmTargetGroup { name: String },
    /// Create a listener on a host port forwarding to a target group, with
    /// optional path rules (`--route '/api/*=other-group'`, first match wins).
    CreateListener {
        #[arg(long)]
        port: u16,
        /// The address to bind (loopback by default).
        #[arg(long)]
        address: Option<String>,
        /// Where requests matching no route go (name or ARN).
        #[arg(long)]
        target_group: String,
        /// PATH_PATTERN=TARGET_GROUP, evaluated in the order given.
        #[arg(long = "route", value_name = "PATTERN=GROUP")]
        routes: Vec<String>,
    },
    /// Delete a listener by ARN.
    RmListener { arn: String },
    /// The targets of a group and their health.
    Targets { target_group: String },
    /// A group's request metrics: counts, latency, recent requests per second.
    Metrics { target_group: String },
}

#[derive(clap::Args)]
pub struct TargetGroupArgs {
    name: String,
    #[arg(long)]
    health_path: Option<String>,
    #[arg(long)]
    interval: Option<u32>,
    #[arg(long)]
    timeout: Option<u32>,
    #[arg(long)]
    healthy_threshold: Option<u32>,
    #[arg(long)]
    unhealthy_threshold: Option<u32>,
    /// Status codes that pass: `200`, `200-399`, `200,302`.
    #[arg(long)]
    matcher: Option<String>,
    /// Seconds a removed target keeps its in-flight requests.
    #[arg(long)]
    deregistration_delay: Option<u32>,
    /// Hold requests while the group has no task and start one (Hail extension).
    #[arg(long)]
    scale_from_zero: bool,
    #[arg(long, requires = "scale_from_zero")]
    queue_limit: Option<u32>,
    /// Seconds a held request waits for a task.
    #[arg(long, requires = "scale_from_zero")]
    activation_timeout: Option<u32>,
    /// Seconds without requests before the service goes back to zero.
    #[arg(long, requires = "scale_from_zero")]
    idle_seconds: Option<u32>,
}

async fn group_arn(client: &crate::client::Client, name: &str) -> anyhow::Result<String> {
    if name.starts_with("arn:") {
        return Ok(name.to_owned());
    }
    let groups = hail(client, "DescribeTargetGroups", json!({})).await?;
    let arn = items(&groups["targetGroups"])
        .find(|g| g["targetGroupName"] == name)
        .and_then(|g| g["targetGroupArn"].as_str())
        .map(str::to_owned);
    arn.with_context(|| format!("no target group named {name}"))
}

pub async fn run(data_dir: &Path, api: ApiArgs, cmd: LbCommand) -> anyhow::Result<()> {
    let client = api.connect(data_dir)?;
    match cmd {
        LbCommand::Ls => {
            let listeners = hail(&client, "DescribeListeners", json!({})).await?;
            let groups = hail(&client, "DescribeTargetGroups", json!({})).await?;
            if api.json {
                return print_json(
                    &json!({"listeners": listeners["listeners"], "targetGroups": groups["targetGroups"]}),
                );
            }
            let name_of = |arn: &Value| {
                items(&groups["targetGroups"])
                    .find(|g| g["targetGroupArn"] == *arn)
                    .map_or_else(|| text(arn), |g| text(&g["targetGroupName"]))
            };
            let rows: Vec<Vec<String>> = items(&listeners["listeners"])
                .map(|l| {
                    let routes: Vec<String> = items(&l["rules"])
                        .map(|r| {
                            format!(
                                "{}={}",
                                items(&r["conditions"][0]["values"])
                                    .map(text)
                                    .collect::<Vec<_>>()
                                    .join(","),
                                name_of(&r["actions"][0]["targetGroupArn"])
                            )
                        })
                        .collect();
                    vec![
                        text(&l["boundAddress"]),
                        name_of(&l["defaultActions"][0]["targetGroupArn"]),
                        routes.join(" "),
                        text(&l["listenerArn"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::table(&["LISTENER", "DEFAULT GROUP", "ROUTES", "ARN"], &rows)
            );
            println!();
            let rows: Vec<Vec<String>> = items(&groups["targetGroups"])
                .map(|g| {
                    vec![
                        text(&g["targetGroupName"]),
                        format!(
                            "{} every {}s",
                            text(&g["healthCheckPath"]),
                            text(&g["healthCheckIntervalSeconds"])
                        ),
                        if g["scaleFromZero"].is_object() {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        text(&g["targetGroupArn"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::table(&["TARGET GROUP", "HEALTH CHECK", "FROM ZERO", "ARN"], &rows)
            );
        }
        LbCommand::CreateTargetGroup(a) => {
            let mut body = json!({"name": a.name});
            let set = |body: &mut Value, k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body[k] = v;
                }
            };
            set(&mut body, "healthCheckPath", a.health_path.map(Into::into));
            set(
                &mut body,
                "healthCheckIntervalSeconds",
                a.interval.map(Into::into),
            );
            set(
                &mut body,
                "healthCheckTimeoutSeconds",
                a.timeout.map(Into::into),
            );
            set(
                &mut body,
                "healthyThresholdCount",
                a.healthy_threshold.map(Into::into),
            );
            set(
                &mut body,
                "unhealthyThresholdCount",
                a.unhealthy_threshold.map(Into::into),
            );
            set(
                &mut body,
                "matcher",
                a.matcher.map(|m| json!({"HttpCode": m})),
            );
            set(
                &mut body,
                "deregistrationDelaySeconds",
                a.deregistration_delay.map(Into::into),
            );
            if a.scale_from_zero {
                let mut z = json!({});
                set(&mut z, "queueLimit", a.queue_limit.map(Into::into));
                set(
                    &mut z,
                    "timeoutSeconds",
                    a.activation_timeout.map(Into::into),
                );
                set(&mut z, "idleSeconds", a.idle_seconds.map(Into::into));
                body["scaleFromZero"] = z;
            }
            let out = hail(&client, "CreateTargetGroup", body).await?;
            if api.json {
                return print_json(&out);
            }
            println!("{}", text(&out["targetGroup"]["targetGroupArn"]));
        }
        LbCommand::RmTargetGroup { name } => {
            hail(&client, "DeleteTargetGroup", json!({"targetGroup": name})).await?;
            println!("deleted target group {name}");
        }
        LbCommand::CreateListener {
            port,
            address,
            target_group,
            routes,
        } => {
            let forward = |arn: String| json!([{"type": "forward", "targetGroupArn": arn}]);
            let mut rules = Vec::new();
            for (i, route) in routes.iter().enumerate() {
                let (pattern, group) = route
                    .rsplit_once('=')
                    .with_context(|| format!("--route {route:?} is not PATTERN=GROUP"))?;
                rules.push(json!({
                    "priority": i + 1,
                    "conditions": [{"field": "path-pattern", "values": [pattern]}],
                    "actions": forward(group_arn(&client, group).await?),
                }));
            }
            let mut body = json!({
                "port": port,
                "defaultActions": forward(group_arn(&client, &target_group).await?),
                "rules": rules,
            });
            if let Some(a) = address {
                body["address"] = a.into();
            }
            let out = hail(&client, "CreateListener", body).await?;
            if api.json {
                return print_json(&out);
            }
            println!(
                "listening on http://{} ({})",
                text(&out["boundAddress"]),
                text(&out["listener"]["listenerArn"])
            );
        }
        LbCommand::RmListener { arn } => {
            hail(&client, "DeleteListener", json!({"listenerArn": arn})).await?;
            println!("deleted listener {arn}");
        }
        LbCommand::Targets { target_group } => {
            let out = hail(
                &client,
                "DescribeTargetHealth",
                json!({"targetGroup": target_group}),
            )
            .await?;
            if api.json {
                return print_json(&out);
            }
            let rows: Vec<Vec<String>> = items(&out["targetHealthDescriptions"])
                .map(|t| {
                    vec![
                        format!(
                            "{}:{}",
                            text(&t["target"]["Id"]),
                            text(&t["target"]["Port"])
                        ),
                        text(&t["target"]["TaskId"]),
                        text(&t["targetHealth"]["State"]),
                        text(&t["targetHealth"]["Reason"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::table(&["TARGET", "TASK", "STATE", "REASON"], &rows)
            );
        }
        LbCommand::Metrics { target_group } => {
            let out = hail(
                &client,
                "GetTargetGroupMetrics",
                json!({"targetGroup": target_group}),
            )
            .await?;
            if api.json {
                return print_json(&out);
            }
            let seconds: Vec<&Value> = items(&out["seconds"]).collect();
            let recent: Vec<String> = seconds
                .iter()
                .rev()
                .take(10)
                .map(|s| text(&s["requests"]))
                .collect();
            println!(
                "requests {}  in flight {}  healthy targets {}  502/503/504 {}/{}/{}",
                text(&out["requests_total"]),
                text(&out["in_flight"]),
                text(&out["healthy_targets"]),
                text(&out["elb_502"]),
                text(&out["elb_503"]),
                text(&out["elb_504"]),
            );
            println!("latency {}", out["recent_latency"]);
            println!("requests per second, newest first: {}", recent.join(" "));
        }
    }
    Ok(())
}
