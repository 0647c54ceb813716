//! What the API subcommands (`hail cluster|taskdef|task|logs …`) share: the
//! connection flags, calls, and the small readers of API answers. The
//! commands read answers as JSON values, never as typed structs: a field
//! Hail does not know (an answer from AWS itself, or a newer server) must
//! not make the CLI fail, and a missing one shows as `-`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use hail_api::Service;
use serde_json::{json, Value};

use crate::client::{Client, ClientError};

/// Where the server is and how to print.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// The server (default: AWS_ENDPOINT_URL, else http://127.0.0.1:4566).
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ApiArgs {
    pub fn connect(&self, data_dir: &Path) -> anyhow::Result<Client> {
        Client::from_env(data_dir, self.endpoint.as_deref())
    }
}

/// Calls an ECS operation.
pub async fn ecs(client: &Client, op: &str, body: Value) -> Result<Value, ClientError> {
    client.call(Service::Ecs, op, body).await
}

/// Calls a CloudWatch Logs operation.
pub async fn logs(client: &Client, op: &str, body: Value) -> Result<Value, ClientError> {
    client.call(Service::Logs, op, body).await
}

/// How long a wait keeps retrying when the server cannot be reached: long
/// enough for `hail server` to restart under a waiting `hail task run`.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(30);

/// One task as `DescribeTasks` reports it, with its tags.
pub async fn describe_task(
    client: &Client,
    task: &str,
    cluster: Option<&str>,
) -> anyhow::Result<Value> {
    let mut body = json!({"tasks": [task], "include": ["TAGS"]});
    if let Some(c) = cluster.or_else(|| cluster_in_task_arn(task)) {
        body["cluster"] = c.into();
    }
    let out = ecs(client, "DescribeTasks", body).await?;
    if let Some(t) = out["tasks"].as_array().and_then(|t| t.first()) {
        return Ok(t.clone());
    }
    let reason = out["failures"][0]["reason"].as_str().unwrap_or("MISSING");
    anyhow::bail!("task {task} not found ({reason})")
}

/// [`describe_task`] for polling loops: an unreachable server is retried for
/// [`UNREACHABLE_GRACE`], so a restart of the server does not end a wait.
pub async fn poll_task(
    client: &Client,
    task: &str,
    cluster: Option<&str>,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        match describe_task(client, task, cluster).await {
            Err(e)
                if started.elapsed() < UNREACHABLE_GRACE
                    && matches!(
                        e.downcast_ref::<ClientError>(),
                        Some(ClientError::Transport(_))
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            result => return result,
        }
    }
}

/// The cluster a task ARN names (`arn:…:task/CLUSTER/ID`), so a task given
/// by its ARN needs no `--cluster`; a bare task id names none.
pub fn cluster_in_task_arn(task: &str) -> Option<&str> {
    let resource = task.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    let mut parts = resource.strip_prefix("task/")?.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(cluster), Some(_id), None) if !cluster.is_empty() => Some(cluster),
        _ => None,
    }
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A field for people: strings as they are, absent values as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The last `/`-separated part of an ARN: a task's id, `family:revision` of
/// a task definition, a cluster's name.
pub fn arn_tail(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The items of a JSON array field, none when it is absent or not an array.
pub fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A span of seconds for people: `42s`, `7m`, `3h`, `2d`.
pub fn human(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// An API time (seconds since the epoch) as an age, `-` when absent.
pub fn age(v: &Value, now: f64) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |t| format!("{} ago", human(now - t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(human(-3.0), "0s");
        assert_eq!(human(42.9), "42s");
        assert_eq!(human(420.0), "7m");
        assert_eq!(human(3.0 * 3600.0), "3h");
        assert_eq!(human(3.0 * 86_400.0), "3d");
        assert_eq!(age(&json!(100.0), 142.0), "42s ago");
        assert_eq!(age(&Value::Null, 142.0), "-");
    }

    #[test]
    fn fields_read_without_failing() {
        assert_eq!(text(&json!("x")), "x");
        assert_eq!(text(&json!(3)), "3");
        assert_eq!(text(&Value::Null), "-");
        assert_eq!(
            arn_tail("arn:aws:ecs:us-east-1:000000000000:task/default/abc"),
            "abc"
        );
        assert_eq!(arn_tail("abc"), "abc");
        assert_eq!(
            cluster_in_task_arn("arn:aws:ecs:us-east-1:000000000000:task/batch/abc"),
            Some("batch")
        );
        assert_eq!(
            cluster_in_task_arn("arn:aws:ecs:us-east-1:000000000000:task/abc"),
            None
        );
        assert_eq!(cluster_in_task_arn("abc"), None);
        assert_eq!(items(&json!({"a": 1})["nope"]).count(), 0);
    }
}
