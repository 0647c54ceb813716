//! Fixtures shared by the store's integration tests.
#![allow(dead_code)]

use hail_model::arn::Scope;
use hail_model::ecs::{
    decode, Cluster, CreateClusterInput, RegisterTaskDefinitionInput, Task, TaskDefinition,
    TaskStatus, Timestamp,
};
use hail_store::Store;

/// A fresh store in its own temporary directory (kept alive by the guard).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).unwrap();
    (dir, store)
}

pub fn scope() -> Scope {
    Scope::default()
}

pub fn cluster(name: &str) -> Cluster {
    CreateClusterInput {
        cluster_name: Some(name.to_owned()),
        ..Default::default()
    }
    .into_cluster(&scope())
}

/// Revision `revision` of a one-container Fargate definition of `family`.
pub fn task_definition(family: &str, revision: u32) -> TaskDefinition {
    let input: RegisterTaskDefinitionInput = decode(&format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512",
            "containerDefinitions":[{{"name":"app","image":"busybox"}}]}}"#
    ))
    .unwrap();
    TaskDefinition::register(
        input,
        &scope(),
        revision,
        Timestamp::from_secs(1_700_000_000),
        None,
    )
    .unwrap()
    .0
}

/// A task of `family`:1 in `cluster`, created at `created_ms`.
pub fn task(cluster: &str, id: &str, family: &str, created_ms: i64) -> Task {
    serde_json::from_value(serde_json::json!({
        "taskArn": scope().task_arn(cluster, id),
        "clusterArn": scope().cluster_arn(cluster),
        "taskDefinitionArn": scope().task_definition_arn(family, 1),
        "lastStatus": "PROVISIONING",
        "desiredStatus": "RUNNING",
        "launchType": "FARGATE",
        "createdAt": Timestamp::from_millis(created_ms),
        "version": 1
    }))
    .unwrap()
}

/// `task` moved to STOPPED at `stopped_ms`.
pub fn stopped(mut task: Task, stopped_ms: i64) -> Task {
    task.last_status = TaskStatus::Stopped;
    task.desired_status = TaskStatus::Stopped;
    task.stopped_at = Some(Timestamp::from_millis(stopped_ms));
    task
}

/// Follows `next_token` through every page that `fetch` returns.
pub fn all_pages<T>(mut fetch: impl FnMut(Option<&str>) -> hail_store::Page<T>) -> (Vec<T>, usize) {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = fetch(token.as_deref());
        pages += 1;
        items.extend(page.items);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return (items, pages),
        }
        assert!(pages < 10_000, "pagination does not end");
    }
}
