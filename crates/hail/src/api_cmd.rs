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

/// Calls an operation of Hail's native API (roles, triggers).
pub async fn hail(client: &Client, op: &str, body: Value) -> Result<Value, ClientError> {
    client.call(Service::Hail, op, body).await
}

/// Calls a CloudWatch Logs operation.
pub async fn logs(client: &Client, op: &str, body: Value) -> Result<Value, ClientError> {
    client.call(Service::Logs, op, body).await
}

/// How often a wait asks for the task again: DescribeTasks answers from the
/// store, so a fifth of a second costs the server little and ends the wait
/// soon after the task does.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

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

/// How many characters of a task id the tables show: enough to be unique
/// among one machine's tasks, short enough to type; [`resolve_task`] takes
/// them back.
pub const SHORT_ID_LEN: usize = 12;

/// A task id as the tables show it.
pub fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID_LEN).unwrap_or(id)
}

/// Whether `task` is the start of a task id rather than an id or an ARN:
/// ECS ids are 32 hex digits, so anything shorter made of hex digits is one.
fn is_id_prefix(task: &str) -> bool {
    (1..32).contains(&task.len()) && task.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The task a command line names: an ARN or a whole id as it is, a prefix of
/// an id (as the tables print them) as the one task of the cluster, running
/// or stopped, whose id starts with it.
pub async fn resolve_task(
    client: &Client,
    task: &str,
    cluster: Option<&str>,
) -> anyhow::Result<String> {
    if !is_id_prefix(task) {
        return Ok(task.to_owned());
    }
    let prefix = task.to_ascii_lowercase();
    let mut matches = Vec::new();
    for status in ["RUNNING", "STOPPED"] {
        let mut body = json!({ "desiredStatus": status });
        if let Some(c) = cluster {
            body["cluster"] = c.into();
        }
        loop {
            let page = ecs(client, "ListTasks", body.clone()).await?;
            matches.extend(
                items(&page["taskArns"])
                    .filter_map(Value::as_str)
                    .filter(|arn| arn_tail(arn).starts_with(&prefix))
                    .map(str::to_owned),
            );
            match page["nextToken"].as_str() {
                Some(t) => body["nextToken"] = t.into(),
                None => break,
            }
        }
    }
    // A task that stopped between the two listings appears in both.
    matches.sort();
    matches.dedup();
    let cluster = cluster.unwrap_or("default");
    match matches.len() {
        0 => anyhow::bail!("no task of cluster {cluster} has an id starting with {task}"),
        1 => Ok(matches.remove(0)),
        n => anyhow::bail!(
            "{n} tasks of cluster {cluster} have an id starting with {task}: {}",
            matches
                .iter()
                .map(|a| arn_tail(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
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
        assert_eq!(short_id("0123456789abcdef0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn only_hex_shorter_than_an_id_is_a_prefix() {
        assert!(is_id_prefix("0123456789ab"));
        assert!(is_id_prefix("ABC"));
        assert!(!is_id_prefix("0123456789abcdef0123456789abcdef"));
        assert!(!is_id_prefix(
            "arn:aws:ecs:us-east-1:000000000000:task/default/abc"
        ));
        assert!(!is_id_prefix("my-task"));
        assert!(!is_id_prefix(""));
    }
}
