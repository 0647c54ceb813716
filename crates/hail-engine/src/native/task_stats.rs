//! DescribeTaskStats: what a cluster's running tasks use, read from their
//! cgroups at the moment of the request — CPU time so far, memory now, at
//! its peak and its limit, processes — for the task and each running
//! container. Read-only: it changes nothing, in the store or on the host.
//!
//! Tasks are named as DescribeTasks names them; one that is not in the
//! cluster is a `MISSING` failure, one that is not running (or whose
//! cgroups cannot be read) a `NOT_RUNNING` (`UNAVAILABLE`) failure, so a
//! caller polling a list of tasks keeps the answers for the others.

use std::time::{SystemTime, UNIX_EPOCH};

use hail_model::arn::TaskRef;
use hail_model::ecs::task::ContainerStatus;
use hail_model::ecs::{Failure, Task, TaskStatus, ValidationError};
use hail_model::stats::{
    ContainerStats, DescribeTaskStatsInput, TaskStats, MAX_DESCRIBED_TASKS, NOT_RUNNING,
    UNAVAILABLE,
};
use hail_runtime::runtime::Runtime;
use hail_store::tasks;
use serde::Serialize;

use crate::ecs::tasks::{active_cluster_arn, cluster_param};
use crate::{Engine, EngineError};

/// The `failures[].reason` for a task the cluster does not have, as in DescribeTasks.
const MISSING: &str = "MISSING";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTaskStatsOutput {
    pub task_stats: Vec<TaskStats>,
    pub failures: Vec<Failure>,
}

/// Whether a task in `status` has containers whose cgroups can be read.
fn has_cgroups(status: TaskStatus) -> bool {
    (TaskStatus::Activating..=TaskStatus::Stopping).contains(&status)
}

pub async fn describe_task_stats(
    engine: &Engine,
    input: DescribeTaskStatsInput,
) -> Result<DescribeTaskStatsOutput, EngineError> {
    let scope = engine.scope().clone();
    let cluster = cluster_param(engine, input.cluster.as_deref())?;
    if input.tasks.is_empty() || input.tasks.len() > MAX_DESCRIBED_TASKS {
        return Err(ValidationError::invalid_parameter(
            "tasks",
            format!("1 to {MAX_DESCRIBED_TASKS} tasks must be named"),
        )
        .into());
    }
    let refs = input
        .tasks
        .iter()
        .map(|t| {
            TaskRef::parse(t, &scope)
                .map(|r| (t.clone(), r))
                .map_err(|source| EngineError::Arn {
                    field: "tasks",
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let lookup_cluster = cluster.clone();
    let found: Vec<(String, Option<Task>)> = engine
        .store()
        .read(move |conn| {
            let cluster_arn = active_cluster_arn(conn, &lookup_cluster)?;
            refs.into_iter()
                .map(|(given, r)| {
                    let task = tasks::get(conn, &r.id)?
                        .map(|s| s.task)
                        .filter(|t| t.cluster_arn == cluster_arn)
                        .filter(|_| r.cluster.as_deref().is_none_or(|c| c == lookup_cluster));
                    let named = if given.starts_with("arn:") {
                        given
                    } else {
                        scope.task_arn(&lookup_cluster, &r.id)
                    };
                    Ok::<_, EngineError>((named, task))
                })
                .collect::<Result<Vec<_>, EngineError>>()
        })
        .await?;

    let mut failures = Vec::new();
    let mut to_read = Vec::new();
    for (named, task) in found {
        match task {
            None => failures.push(failure(named, MISSING, None)),
            Some(t) if !has_cgroups(t.last_status) => failures.push(failure(
                t.task_arn.clone(),
                NOT_RUNNING,
                Some(format!("task is {}", t.last_status.as_str())),
            )),
            Some(t) => to_read.push(t),
        }
    }
    let mut task_stats = Vec::new();
    if !to_read.is_empty() {
        let runtime = engine
            .tasks()
            .ok_or(EngineError::NoDataPlane)?
            .runtime()
            .clone();
        let readings = tokio::task::spawn_blocking(move || {
            to_read
                .into_iter()
                .map(|t| {
                    let read = read_task(&runtime, &t);
                    (t.task_arn, read)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| EngineError::Internal {
            message: format!("reading task stats: {e}"),
        })?;
        for (arn, read) in readings {
            match read {
                Ok(stats) => task_stats.push(stats),
                Err(message) => failures.push(failure(arn, UNAVAILABLE, Some(message))),
            }
        }
    }
    Ok(DescribeTaskStatsOutput {
        task_stats,
        failures,
    })
}

fn failure(arn: String, reason: &str, detail: Option<String>) -> Failure {
    Failure {
        arn: Some(arn),
        reason: Some(reason.to_owned()),
        detail,
    }
}

/// Reads the cgroups of a task and of its running containers, through the
/// same runtime call the service metrics sampler makes.
fn read_task(runtime: &Runtime, task: &Task) -> Result<TaskStats, String> {
    let id = tasks::task_id(task).map_err(|e| e.to_string())?;
    let read_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the clock is before the epoch: {e}"))?;
    let whole = runtime.stats(&id, None).map_err(|e| e.to_string())?;
    let mut containers = Vec::new();
    for c in task
        .containers
        .iter()
        .filter(|c| c.last_status == ContainerStatus::Running)
    {
        let s = runtime
            .stats(&id, Some(&c.name))
            .map_err(|e| format!("container {}: {e}", c.name))?;
        containers.push(ContainerStats {
            name: c.name.clone(),
            cpu_usage_nanos: s.cpu_usage_ns,
            memory_usage_bytes: s.memory_current,
            memory_peak_bytes: s.memory_peak,
            memory_limit_bytes: s.memory_limit,
        });
    }
    Ok(TaskStats {
        task_arn: task.task_arn.clone(),
        // Microseconds are as fine as the cgroup counters' own clock.
        read_at: read_at.as_micros() as f64 / 1e6,
        cpu_limit_units: task.cpu.as_deref().and_then(|c| c.trim().parse().ok()),
        cpu_usage_nanos: whole.cpu_usage_ns,
        memory_usage_bytes: whole.memory_current,
        memory_peak_bytes: whole.memory_peak,
        memory_limit_bytes: whole.memory_limit,
        pids: whole.pids_current,
        containers,
    })
}

#[cfg(test)]
mod tests {
    use hail_api::{ApiError, ErrorCode, JsonApi, RequestContext, Service};
    use hail_model::arn::Scope;
    use hail_model::ecs::Timestamp;
    use hail_store::Store;
    use serde_json::{json, Value};

    use super::*;

    fn engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        (
            dir,
            Engine::new(store, Scope::new("eu-west-1", "123456789012")),
        )
    }

    async fn call(engine: &Engine, op: &str, body: Value) -> Result<Value, ApiError> {
        let ctx = RequestContext {
            request_id: "r".into(),
            access_key_id: "AKIA".into(),
            region: "eu-west-1".into(),
        };
        let service = if op == "DescribeTaskStats" {
            Service::Hail
        } else {
            Service::Ecs
        };
        engine.call(service, op, body, ctx).await
    }

    const RUNNING_ID: &str = "0123456789abcdef0123456789abcdef";
    const PENDING_ID: &str = "fedcba9876543210fedcba9876543210";

    async fn add_task(engine: &Engine, cluster: &str, id: &str, status: &str) {
        let scope = engine.scope().clone();
        let task: Task = serde_json::from_value(json!({
            "taskArn": scope.task_arn(cluster, id),
            "clusterArn": scope.cluster_arn(cluster),
            "taskDefinitionArn": scope.task_definition_arn("web", 1),
            "lastStatus": status,
            "desiredStatus": "RUNNING",
            "launchType": "FARGATE",
            "cpu": "256",
            "createdAt": Timestamp::from_millis(1_000),
            "version": 1
        }))
        .unwrap();
        engine
            .store()
            .write(move |tx| hail_store::tasks::insert(tx, &task))
            .await
            .unwrap();
    }

    async fn setup() -> (tempfile::TempDir, Engine) {
        let (dir, engine) = engine();
        call(&engine, "CreateCluster", json!({"clusterName": "default"}))
            .await
            .unwrap();
        add_task(&engine, "default", RUNNING_ID, "RUNNING").await;
        add_task(&engine, "default", PENDING_ID, "PENDING").await;
        (dir, engine)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bad_requests_are_refused_with_aws_errors() {
        let (_dir, engine) = setup().await;
        let cases = [
            (
                json!({"cluster": "nope", "tasks": [RUNNING_ID]}),
                ErrorCode::ClusterNotFoundException,
                "cluster nope not found",
            ),
            (
                json!({"tasks": []}),
                ErrorCode::InvalidParameterException,
                "1 to 100 tasks",
            ),
            (
                json!({"tasks": vec![RUNNING_ID; 101]}),
                ErrorCode::InvalidParameterException,
                "1 to 100 tasks",
            ),
            (
                json!({"tasks": ["arn:aws:ecs:us-east-1:000000000000:task/default/abc"]}),
                ErrorCode::InvalidParameterException,
                "tasks",
            ),
            (
                json!({"tasks": [RUNNING_ID], "includeHistory": true}),
                ErrorCode::InvalidParameterException,
                "includeHistory",
            ),
            (json!({}), ErrorCode::InvalidParameterException, "tasks"),
        ];
        for (body, code, words) in cases {
            let err = call(&engine, "DescribeTaskStats", body.clone())
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{body}: {err:?}");
            assert!(err.message().contains(words), "{body}: {}", err.message());
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tasks_that_cannot_be_measured_are_failures_not_errors() {
        let (_dir, engine) = setup().await;
        let scope = engine.scope().clone();
        let unknown = "00000000000000000000000000000000";
        let other_cluster =
            "arn:aws:ecs:eu-west-1:123456789012:task/other/0123456789abcdef0123456789abcdef";
        let out = call(
            &engine,
            "DescribeTaskStats",
            json!({"tasks": [unknown, PENDING_ID, other_cluster]}),
        )
        .await
        .unwrap();
        assert_eq!(out["taskStats"], json!([]));
        assert_eq!(
            out["failures"],
            json!([
                {"arn": scope.task_arn("default", unknown), "reason": "MISSING"},
                {"arn": scope.task_arn("default", PENDING_ID), "reason": "NOT_RUNNING",
                 "detail": "task is PENDING"},
                {"arn": other_cluster, "reason": "MISSING"},
            ])
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn running_tasks_need_a_data_plane_to_be_measured() {
        let (_dir, engine) = setup().await;
        let err = call(
            &engine,
            "DescribeTaskStats",
            json!({"cluster": "default", "tasks": [RUNNING_ID]}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ServerException, "{err:?}");
    }
}
