//! What `hail status` shows, as rows: clusters, services, running tasks with
//! what they use, and recent trigger deliveries, made from the APIs'
//! answers by pure functions, and the plain-text rendering of one snapshot.
//! The live view (`status_tui`) draws the same rows; keeping them here
//! means both read the answers the same way and are tested without a
//! terminal or a server.

use std::collections::HashMap;

use hail_model::stats::{cpu_percent, percent_of_units, CpuReading};
use serde::Serialize;
use serde_json::Value;

use crate::api_cmd::{age, arn_tail, human, items, short_id, text};
use crate::table;

/// Trigger deliveries shown: the most recently changed.
pub const DELIVERIES_SHOWN: usize = 10;

/// The APIs' answers one refresh gathered, as they came.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// DescribeClusters' `clusters`.
    pub clusters: Vec<Value>,
    /// DescribeServices' `services`, of every cluster.
    pub services: Vec<Value>,
    /// DescribeTasks' `tasks` (those desired RUNNING), of every cluster.
    pub tasks: Vec<Value>,
    /// DescribeTaskStats' `taskStats`, of every cluster.
    pub stats: Vec<Value>,
    /// DescribeScalingActivities' `ScalingActivities` for ECS, newest first.
    pub activities: Vec<Value>,
    /// DescribeTargetHealth's `targetHealthDescriptions` by target group ARN.
    pub target_health: HashMap<String, Vec<Value>>,
    /// DescribeTrigger's `recentInvocations`, of every trigger.
    pub invocations: Vec<Value>,
    /// What could not be read, said once per refresh; the rest is still shown.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// When the answers were gathered, in seconds since the epoch.
    pub taken_at: f64,
    pub clusters: Vec<ClusterRow>,
    pub services: Vec<ServiceRow>,
    pub tasks: Vec<TaskRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRow {
    pub name: String,
    pub status: String,
    pub active_services: Option<u64>,
    pub running_tasks: Option<u64>,
    pub pending_tasks: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    pub cluster: String,
    pub name: String,
    pub status: String,
    pub desired: Option<u64>,
    pub running: Option<u64>,
    pub pending: Option<u64>,
    /// `family:revision` of the primary deployment.
    pub task_definition: String,
    /// The primary deployment's rollout state.
    pub rollout: String,
    /// Deployments still being rolled (one when nothing is rolling).
    pub deployments: usize,
    /// Healthy targets over all targets, across the service's target groups.
    pub targets: Option<(usize, usize)>,
    pub last_scaling: Option<ScalingRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRow {
    pub start_time: Option<f64>,
    pub status: String,
    pub description: String,
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRow {
    pub cluster: String,
    pub task_arn: String,
    pub task_id: String,
    /// `family:revision`.
    pub task_definition: String,
    /// `service:<name>` or `family:<family>`.
    pub group: String,
    pub status: String,
    pub desired_status: String,
    pub health: String,
    pub started_at: Option<f64>,
    /// CPU in percent of one vCPU, over the last refresh interval.
    pub cpu_percent: Option<f64>,
    /// The same in percent of the task's CPU units.
    pub cpu_percent_of_limit: Option<f64>,
    pub cpu_limit_units: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRow {
    pub trigger: String,
    pub key: String,
    pub task_id: Option<String>,
    pub status: String,
    pub attempts: Option<u64>,
    pub updated_at: Option<f64>,
    pub last_error: Option<String>,
}

/// The last CPU reading of each task, so the next one gives a rate. The
/// server answers cumulative CPU time with the moment it read it; the rate
/// is computed here, over the interval this viewer refreshes at.
#[derive(Debug, Default)]
pub struct CpuRates {
    last: HashMap<String, CpuReading>,
}

impl CpuRates {
    /// Records `stats` (DescribeTaskStats' `taskStats`) and returns each
    /// task's CPU in percent of one vCPU since its previous reading; a task
    /// seen for the first time has none yet. Tasks no longer reported are
    /// forgotten.
    pub fn observe(&mut self, stats: &[Value]) -> HashMap<String, f64> {
        let mut rates = HashMap::new();
        let mut seen = HashMap::new();
        for s in stats {
            let (Some(arn), Some(usage_nanos), Some(at_secs)) = (
                s["taskArn"].as_str(),
                s["cpuUsageNanos"].as_u64(),
                s["readAt"].as_f64(),
            ) else {
                continue;
            };
            let now = CpuReading {
                usage_nanos,
                at_secs,
            };
            if let Some(rate) = self
                .last
                .get(arn)
                .and_then(|before| cpu_percent(*before, now))
            {
                rates.insert(arn.to_owned(), rate);
            }
            seen.insert(arn.to_owned(), now);
        }
        self.last = seen;
        rates
    }
}

fn u64_of(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn str_or_dash(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".to_owned(), str::to_owned)
}

/// The cluster name in a cluster, service or task ARN
/// (`…:cluster/NAME`, `…:service/NAME/svc`, `…:task/NAME/id`).
fn cluster_of(arn: &str) -> String {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
    let mut parts = resource.split('/');
    match (parts.next(), parts.next()) {
        (Some(_), Some(name)) => name.to_owned(),
        _ => "-".to_owned(),
    }
}

/// Makes the rows of one refresh. `rates` are [`CpuRates::observe`]'s.
pub fn snapshot(answers: &Answers, rates: &HashMap<String, f64>, taken_at: f64) -> Snapshot {
    let clusters = answers
        .clusters
        .iter()
        .map(|c| ClusterRow {
            name: text(&c["clusterName"]),
            status: text(&c["status"]),
            active_services: u64_of(&c["activeServicesCount"]),
            running_tasks: u64_of(&c["runningTasksCount"]),
            pending_tasks: u64_of(&c["pendingTasksCount"]),
        })
        .collect();

    // The newest activity of each scalable target (the API answers newest first).
    let mut last_activity: HashMap<&str, &Value> = HashMap::new();
    for a in &answers.activities {
        if let Some(id) = a["ResourceId"].as_str() {
            last_activity.entry(id).or_insert(a);
        }
    }
    let services = answers
        .services
        .iter()
        .map(|s| {
            let cluster = cluster_of(s["serviceArn"].as_str().unwrap_or_default());
            let name = text(&s["serviceName"]);
            let deployments: Vec<&Value> = items(&s["deployments"]).collect();
            let primary = deployments
                .iter()
                .find(|d| d["status"] == "PRIMARY")
                .copied();
            let definition = primary
                .map(|d| &d["taskDefinition"])
                .unwrap_or(&s["taskDefinition"]);
            let mut targets: Option<(usize, usize)> = None;
            for lb in items(&s["loadBalancers"]) {
                let Some(health) = lb["targetGroupArn"]
                    .as_str()
                    .and_then(|tg| answers.target_health.get(tg))
                else {
                    continue;
                };
                let (healthy, all) = targets.get_or_insert((0, 0));
                *all += health.len();
                *healthy += health
                    .iter()
                    .filter(|t| t["targetHealth"]["state"] == "healthy")
                    .count();
            }
            let resource = format!("service/{cluster}/{name}");
            let last_scaling = last_activity.get(resource.as_str()).map(|a| ScalingRow {
                start_time: a["StartTime"].as_f64(),
                status: text(&a["StatusCode"]),
                description: text(&a["Description"]),
                cause: text(&a["Cause"]),
            });
            ServiceRow {
                cluster,
                name,
                status: text(&s["status"]),
                desired: u64_of(&s["desiredCount"]),
                running: u64_of(&s["runningCount"]),
                pending: u64_of(&s["pendingCount"]),
                task_definition: arn_tail(definition.as_str().unwrap_or("-")).to_owned(),
                rollout: primary.map_or_else(|| "-".to_owned(), |d| text(&d["rolloutState"])),
                deployments: deployments.len(),
                targets,
                last_scaling,
            }
        })
        .collect();

    let stats: HashMap<&str, &Value> = answers
        .stats
        .iter()
        .filter_map(|s| Some((s["taskArn"].as_str()?, s)))
        .collect();
    let mut tasks: Vec<TaskRow> = answers
        .tasks
        .iter()
        .map(|t| {
            let arn = t["taskArn"].as_str().unwrap_or_default();
            let usage = stats.get(arn);
            let cpu_limit_units = usage
                .and_then(|u| u["cpuLimitUnits"].as_u64())
                .or_else(|| t["cpu"].as_str().and_then(|c| c.parse().ok()))
                .and_then(|u| u32::try_from(u).ok());
            let cpu = rates.get(arn).copied();
            TaskRow {
                cluster: cluster_of(arn),
                task_arn: arn.to_owned(),
                task_id: arn_tail(arn).to_owned(),
                task_definition: arn_tail(t["taskDefinitionArn"].as_str().unwrap_or("-"))
                    .to_owned(),
                group: str_or_dash(&t["group"]),
                status: text(&t["lastStatus"]),
                desired_status: text(&t["desiredStatus"]),
                health: str_or_dash(&t["healthStatus"]),
                started_at: t["startedAt"].as_f64().or(t["createdAt"].as_f64()),
                cpu_percent: cpu,
                cpu_percent_of_limit: cpu
                    .zip(cpu_limit_units)
                    .and_then(|(p, u)| percent_of_units(p, u)),
                cpu_limit_units,
                memory_bytes: usage.and_then(|u| u["memoryUsageBytes"].as_u64()),
                memory_limit_bytes: usage.and_then(|u| u["memoryLimitBytes"].as_u64()),
            }
        })
        .collect();
    tasks.sort_by(|a, b| {
        (&a.cluster, &a.group, &a.task_definition, &a.task_id).cmp(&(
            &b.cluster,
            &b.group,
            &b.task_definition,
            &b.task_id,
        ))
    });

    let mut deliveries: Vec<DeliveryRow> = answers
        .invocations
        .iter()
        .map(|i| DeliveryRow {
            trigger: text(&i["triggerName"]),
            key: text(&i["key"]),
            task_id: i["taskArn"].as_str().map(|a| arn_tail(a).to_owned()),
            status: text(&i["status"]),
            attempts: u64_of(&i["attempts"]),
            updated_at: i["updatedAt"].as_f64(),
            last_error: i["lastError"].as_str().map(str::to_owned),
        })
        .collect();
    deliveries.sort_by(|a, b| {
        b.updated_at
            .unwrap_or(0.0)
            .total_cmp(&a.updated_at.unwrap_or(0.0))
    });
    deliveries.truncate(DELIVERIES_SHOWN);

    Snapshot {
        taken_at,
        clusters,
        services,
        tasks,
        deliveries,
        problems: answers.problems.clone(),
    }
}

/// A count, `-` when the API did not say.
fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// A percentage with one decimal: `24.9%`.
pub fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"))
}

/// Bytes in binary units as `docker stats` shows them: `812KiB`, `1.5MiB`, `512MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 || value.fract() < 0.05 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

impl ServiceRow {
    pub fn targets_cell(&self) -> String {
        self.targets
            .map_or_else(|| "-".to_owned(), |(h, all)| format!("{h}/{all} healthy"))
    }

    /// The rollout, and how many deployments take part while one rolls.
    pub fn rollout_cell(&self) -> String {
        if self.deployments > 1 {
            format!("{} ({} deployments)", self.rollout, self.deployments)
        } else {
            self.rollout.clone()
        }
    }

    /// When the last scaling activity started and what it did.
    pub fn scaling_cell(&self, now: f64) -> String {
        self.last_scaling.as_ref().map_or_else(
            || "-".to_owned(),
            |a| {
                let when = a
                    .start_time
                    .map_or_else(|| "-".to_owned(), |t| format!("{} ago", human(now - t)));
                format!("{when} {}: {}", a.status, a.description)
            },
        )
    }

    pub fn cause_cell(&self) -> String {
        self.last_scaling
            .as_ref()
            .map_or_else(|| "-".to_owned(), |a| a.cause.clone())
    }
}

impl TaskRow {
    pub fn age_cell(&self, now: f64) -> String {
        self.started_at
            .map_or_else(|| "-".to_owned(), |t| human(now - t))
    }

    pub fn memory_cell(&self) -> String {
        match (self.memory_bytes, self.memory_limit_bytes) {
            (Some(used), Some(limit)) => format!("{} / {}", bytes(used), bytes(limit)),
            (Some(used), None) => bytes(used),
            _ => "-".to_owned(),
        }
    }

    pub fn memory_percent(&self) -> Option<f64> {
        match (self.memory_bytes, self.memory_limit_bytes) {
            (Some(used), Some(limit)) if limit > 0 => Some(used as f64 / limit as f64 * 100.0),
            _ => None,
        }
    }
}

pub const CLUSTER_HEADER: [&str; 5] = ["CLUSTER", "STATUS", "SERVICES", "RUNNING", "PENDING"];
pub const SERVICE_HEADER: [&str; 11] = [
    "CLUSTER",
    "SERVICE",
    "STATUS",
    "DESIRED",
    "RUNNING",
    "PENDING",
    "TASK DEFINITION",
    "ROLLOUT",
    "TARGETS",
    "LAST SCALING",
    "CAUSE",
];
pub const TASK_HEADER: [&str; 11] = [
    "CLUSTER",
    "TASK",
    "TASK DEFINITION",
    "GROUP",
    "STATUS",
    "HEALTH",
    "AGE",
    "CPU",
    "CPU/LIM",
    "MEM / LIMIT",
    "MEM%",
];
pub const DELIVERY_HEADER: [&str; 7] = [
    "TRIGGER", "KEY", "TASK", "STATUS", "ATTEMPTS", "WHEN", "ERROR",
];

pub fn cluster_cells(c: &ClusterRow) -> Vec<String> {
    vec![
        c.name.clone(),
        c.status.clone(),
        count(c.active_services),
        count(c.running_tasks),
        count(c.pending_tasks),
    ]
}

pub fn service_cells(s: &ServiceRow, now: f64) -> Vec<String> {
    vec![
        s.cluster.clone(),
        s.name.clone(),
        s.status.clone(),
        count(s.desired),
        count(s.running),
        count(s.pending),
        s.task_definition.clone(),
        s.rollout_cell(),
        s.targets_cell(),
        s.scaling_cell(now),
        s.cause_cell(),
    ]
}

pub fn task_cells(t: &TaskRow, now: f64) -> Vec<String> {
    vec![
        t.cluster.clone(),
        short_id(&t.task_id).to_owned(),
        t.task_definition.clone(),
        t.group.clone(),
        t.status.clone(),
        t.health.clone(),
        t.age_cell(now),
        percent(t.cpu_percent),
        percent(t.cpu_percent_of_limit),
        t.memory_cell(),
        percent(t.memory_percent()),
    ]
}

pub fn delivery_cells(d: &DeliveryRow, now: f64) -> Vec<String> {
    vec![
        d.trigger.clone(),
        d.key.clone(),
        d.task_id
            .as_deref()
            .map_or_else(|| "-".to_owned(), |t| short_id(t).to_owned()),
        d.status.clone(),
        count(d.attempts),
        age(&d.updated_at.map_or(Value::Null, Value::from), now),
        d.last_error.clone().unwrap_or_else(|| "-".to_owned()),
    ]
}

/// One snapshot as plain text: a titled, aligned table per section.
pub fn render_text(s: &Snapshot, now: f64) -> String {
    let mut out = String::new();
    let mut section = |title: &str, header: &[&str], rows: Vec<Vec<String>>| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{title} ({})\n", rows.len()));
        out.push_str(&table::table(header, &rows));
    };
    section(
        "CLUSTERS",
        &CLUSTER_HEADER,
        s.clusters.iter().map(cluster_cells).collect(),
    );
    section(
        "SERVICES",
        &SERVICE_HEADER,
        s.services.iter().map(|r| service_cells(r, now)).collect(),
    );
    section(
        "TASKS",
        &TASK_HEADER,
        s.tasks.iter().map(|r| task_cells(r, now)).collect(),
    );
    section(
        "TRIGGER DELIVERIES",
        &DELIVERY_HEADER,
        s.deliveries
            .iter()
            .map(|r| delivery_cells(r, now))
            .collect(),
    );
    for p in &s.problems {
        out.push_str(&format!("\nwarning: {p}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TASK_A: &str =
        "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef";
    const TASK_B: &str =
        "arn:aws:ecs:us-east-1:000000000000:task/default/fedcba9876543210fedcba9876543210";

    fn answers() -> Answers {
        let mut target_health = HashMap::new();
        target_health.insert(
            "arn:tg/web".to_owned(),
            vec![
                json!({"targetHealth": {"state": "healthy"}}),
                json!({"targetHealth": {"state": "initial"}}),
            ],
        );
        Answers {
            clusters: vec![json!({
                "clusterName": "default", "status": "ACTIVE", "activeServicesCount": 1,
                "runningTasksCount": 2, "pendingTasksCount": 0
            })],
            services: vec![json!({
                "serviceArn": "arn:aws:ecs:us-east-1:000000000000:service/default/web",
                "serviceName": "web", "status": "ACTIVE",
                "desiredCount": 2, "runningCount": 1, "pendingCount": 1,
                "taskDefinition": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2",
                "loadBalancers": [{"targetGroupArn": "arn:tg/web"}],
                "deployments": [
                    {"status": "PRIMARY", "rolloutState": "IN_PROGRESS",
                     "taskDefinition": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2"},
                    {"status": "ACTIVE", "rolloutState": "COMPLETED",
                     "taskDefinition": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"}
                ]
            })],
            tasks: vec![
                json!({
                    "taskArn": TASK_B,
                    "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2",
                    "group": "service:web", "lastStatus": "RUNNING", "desiredStatus": "RUNNING",
                    "healthStatus": "HEALTHY", "cpu": "256", "startedAt": 940.0, "createdAt": 900.0
                }),
                json!({
                    "taskArn": TASK_A,
                    "taskDefinitionArn": "arn:aws:ecs:us-east-1:000000000000:task-definition/busy:1",
                    "group": "family:busy", "lastStatus": "PENDING", "desiredStatus": "RUNNING",
                    "cpu": "1024", "createdAt": 990.0
                }),
            ],
            stats: vec![json!({
                "taskArn": TASK_B, "readAt": 999.0, "cpuLimitUnits": 256,
                "cpuUsageNanos": 5_000_000_000u64, "memoryUsageBytes": 3 * 1024 * 1024 / 2,
                "memoryLimitBytes": 512 * 1024 * 1024
            })],
            activities: vec![
                json!({"ResourceId": "service/default/web", "StartTime": 880.0,
                       "StatusCode": "Successful", "Description": "Setting desired count to 2.",
                       "Cause": "monitor alarm TargetTracking-service/default/web-AlarmHigh in state ALARM triggered policy cpu"}),
                json!({"ResourceId": "service/default/web", "StartTime": 500.0,
                       "StatusCode": "Successful", "Description": "Setting desired count to 1.",
                       "Cause": "older"}),
            ],
            target_health,
            invocations: vec![
                json!({"triggerName": "thumbs", "key": "in/a.mp4", "status": "SUCCEEDED",
                       "attempts": 1, "updatedAt": 950.0, "taskArn": TASK_A}),
                json!({"triggerName": "thumbs", "key": "in/b.mp4", "status": "QUEUED",
                       "attempts": 2, "updatedAt": 990.0, "lastError": "exit code 1"}),
            ],
            problems: Vec::new(),
        }
    }

    #[test]
    fn cpu_rates_come_from_consecutive_readings() {
        let mut rates = CpuRates::default();
        let first = rates.observe(&[json!({"taskArn": "a", "readAt": 10.0, "cpuUsageNanos": 0})]);
        assert!(first.is_empty(), "no rate from one reading");
        let second = rates.observe(&[
            json!({"taskArn": "a", "readAt": 12.0, "cpuUsageNanos": 500_000_000u64}),
            json!({"taskArn": "b", "readAt": 12.0, "cpuUsageNanos": 7}),
        ]);
        assert_eq!(second.get("a"), Some(&25.0));
        assert_eq!(second.get("b"), None);
        // A task gone from the answer is forgotten; back again, it starts over.
        rates.observe(&[json!({"taskArn": "b", "readAt": 13.0, "cpuUsageNanos": 7})]);
        let again = rates.observe(&[json!({"taskArn": "a", "readAt": 14.0, "cpuUsageNanos": 9})]);
        assert!(again.is_empty());
        // Readings without the fields are skipped, not fatal.
        assert!(rates.observe(&[json!({"taskArn": "a"})]).is_empty());
    }

    #[test]
    fn rows_read_the_answers() {
        let mut rates = HashMap::new();
        rates.insert(TASK_B.to_owned(), 24.5);
        let s = snapshot(&answers(), &rates, 1000.0);
        assert_eq!(s.clusters[0].running_tasks, Some(2));
        let web = &s.services[0];
        assert_eq!(web.cluster, "default");
        assert_eq!(web.task_definition, "web:2");
        assert_eq!(web.rollout_cell(), "IN_PROGRESS (2 deployments)");
        assert_eq!(web.targets, Some((1, 2)));
        assert_eq!(
            web.last_scaling.as_ref().unwrap().description,
            "Setting desired count to 2."
        );
        // Sorted by cluster, group, definition: family:busy before service:web.
        assert_eq!(s.tasks[0].task_arn, TASK_A);
        assert_eq!(s.tasks[0].cpu_percent, None);
        assert_eq!(s.tasks[0].cpu_limit_units, Some(1024));
        let b = &s.tasks[1];
        assert_eq!(b.cpu_percent, Some(24.5));
        assert!((b.cpu_percent_of_limit.unwrap() - 98.0).abs() < 1e-9);
        assert_eq!(b.memory_cell(), "1.5MiB / 512MiB");
        // Newest delivery first.
        assert_eq!(s.deliveries[0].key, "in/b.mp4");
        assert_eq!(
            s.deliveries[1].task_id.as_deref(),
            Some(&TASK_A[TASK_A.len() - 32..])
        );
    }

    #[test]
    fn one_snapshot_renders_as_aligned_tables() {
        let mut rates = HashMap::new();
        rates.insert(TASK_B.to_owned(), 24.5);
        let text = render_text(&snapshot(&answers(), &rates, 1000.0), 1000.0);
        let expected = "\
CLUSTERS (1)
CLUSTER  STATUS  SERVICES  RUNNING  PENDING
default  ACTIVE  1         2        0

SERVICES (1)
CLUSTER  SERVICE  STATUS  DESIRED  RUNNING  PENDING  TASK DEFINITION  ROLLOUT                      TARGETS      LAST SCALING                                    CAUSE
default  web      ACTIVE  2        1        1        web:2            IN_PROGRESS (2 deployments)  1/2 healthy  2m ago Successful: Setting desired count to 2.  monitor alarm TargetTracking-service/default/web-AlarmHigh in state ALARM triggered policy cpu

TASKS (2)
CLUSTER  TASK          TASK DEFINITION  GROUP        STATUS   HEALTH   AGE  CPU    CPU/LIM  MEM / LIMIT      MEM%
default  0123456789ab  busy:1           family:busy  PENDING  -        10s  -      -        -                -
default  fedcba987654  web:2            service:web  RUNNING  HEALTHY  60s  24.5%  98.0%    1.5MiB / 512MiB  0.3%

TRIGGER DELIVERIES (2)
TRIGGER  KEY       TASK          STATUS     ATTEMPTS  WHEN     ERROR
thumbs   in/b.mp4  -             QUEUED     2         10s ago  exit code 1
thumbs   in/a.mp4  0123456789ab  SUCCEEDED  1         50s ago  -
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn nothing_running_still_shows_every_section_and_problems() {
        let answers = Answers {
            problems: vec!["triggers: AccessDeniedException: no".into()],
            ..Answers::default()
        };
        let text = render_text(&snapshot(&answers, &HashMap::new(), 5.0), 5.0);
        assert!(text.starts_with("CLUSTERS (0)\nCLUSTER  STATUS"), "{text}");
        assert!(
            text.contains("\nTRIGGER DELIVERIES (0)\nTRIGGER  KEY"),
            "{text}"
        );
        assert!(
            text.ends_with("\nwarning: triggers: AccessDeniedException: no\n"),
            "{text}"
        );
    }

    #[test]
    fn sizes_and_shares_read_as_people_say_them() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(812 * 1024), "812KiB");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5MiB");
        assert_eq!(bytes(512 * 1024 * 1024), "512MiB");
        assert_eq!(bytes(2 * 1024 * 1024 * 1024), "2GiB");
        assert_eq!(percent(Some(24.94)), "24.9%");
        assert_eq!(percent(None), "-");
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:0:task/batch/abc"),
            "batch"
        );
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:0:service/web-c/web"),
            "web-c"
        );
        assert_eq!(cluster_of("abc"), "-");
    }
}
