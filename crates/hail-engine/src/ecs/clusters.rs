//! Cluster operations: CreateCluster, DescribeClusters, ListClusters and
//! DeleteCluster, with ECS's semantics.

use hail_model::arn::cluster_name;
use hail_model::ecs::{
    Cluster, ClusterStatus, CreateClusterInput, Failure, TaskStatus, DEFAULT_CLUSTER_NAME,
};
use hail_store::{clusters, services, tags, tasks, Connection};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

/// The `failures[].reason` ECS gives for a cluster that does not exist.
pub const MISSING: &str = "MISSING";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterOutput {
    pub cluster: Cluster,
}

/// Creates the cluster, or returns the ACTIVE cluster of that name unchanged:
/// CreateCluster is idempotent in ECS. A name whose cluster was deleted gets a
/// new cluster, with only the new request's tags.
pub async fn create_cluster(
    engine: &Engine,
    input: CreateClusterInput,
) -> Result<ClusterOutput, EngineError> {
    input.validate()?;
    let cluster = input.into_cluster(engine.scope());
    let cluster = engine
        .store()
        .write(move |tx| {
            let (cluster, created) = clusters::insert_or_get(tx, &cluster)?;
            if created {
                tags::remove_all(tx, &cluster.cluster_arn)?;
                tags::set(tx, &cluster.cluster_arn, &cluster.tags)?;
            }
            let mut cluster = with_counts(tx, cluster)?;
            cluster.tags = tags::list(tx, &cluster.cluster_arn)?;
            Ok::<_, EngineError>(cluster)
        })
        .await?;
    Ok(ClusterOutput { cluster })
}

/// The optional cluster details DescribeClusters adds on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterField {
    Attachments,
    Configurations,
    Settings,
    Statistics,
    Tags,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DescribeClustersInput {
    /// Names or ARNs; the default cluster when absent or empty.
    #[serde(default)]
    pub clusters: Option<Vec<String>>,
    #[serde(default)]
    pub include: Option<Vec<ClusterField>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeClustersOutput {
    pub clusters: Vec<Cluster>,
    pub failures: Vec<Failure>,
}

/// Describes the named clusters, INACTIVE ones included; a name with no
/// cluster at all is a failure with reason MISSING, as in ECS. Tags are
/// reported only when `include` asks for TAGS.
pub async fn describe_clusters(
    engine: &Engine,
    input: DescribeClustersInput,
) -> Result<DescribeClustersOutput, EngineError> {
    let requested = input.clusters.unwrap_or_default();
    let names = if requested.is_empty() {
        vec![DEFAULT_CLUSTER_NAME.to_owned()]
    } else {
        requested
            .iter()
            .map(|c| resolve(engine, "clusters", c))
            .collect::<Result<Vec<_>, _>>()?
    };
    let with_tags = input
        .include
        .unwrap_or_default()
        .contains(&ClusterField::Tags);
    let scope = engine.scope().clone();
    engine
        .store()
        .read(move |conn| {
            let mut out = DescribeClustersOutput {
                clusters: Vec::new(),
                failures: Vec::new(),
            };
            for name in names {
                match clusters::get(conn, &name)? {
                    Some(cluster) => {
                        let mut cluster = with_counts(conn, cluster)?;
                        cluster.tags = if with_tags {
                            tags::list(conn, &cluster.cluster_arn)?
                        } else {
                            Vec::new()
                        };
                        out.clusters.push(cluster);
                    }
                    None => out.failures.push(Failure {
                        arn: Some(scope.cluster_arn(&name)),
                        reason: Some(MISSING.to_owned()),
                        detail: None,
                    }),
                }
            }
            Ok::<_, EngineError>(out)
        })
        .await
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListClustersInput {
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(default)]
    pub max_results: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClustersOutput {
    pub cluster_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The ARNs of the ACTIVE clusters, by name, a page at a time.
pub async fn list_clusters(
    engine: &Engine,
    input: ListClustersInput,
) -> Result<ListClustersOutput, EngineError> {
    let page = engine
        .store()
        .read(move |conn| {
            clusters::list_names(conn, input.max_results, input.next_token.as_deref())
        })
        .await?;
    Ok(ListClustersOutput {
        cluster_arns: page
            .items
            .iter()
            .map(|name| engine.scope().cluster_arn(name))
            .collect(),
        next_token: page.next_token,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteClusterInput {
    pub cluster: String,
}

/// Marks the cluster INACTIVE and returns it. Refused while any of its tasks
/// is not yet STOPPED; a cluster that does not exist or is already INACTIVE
/// is not found.
pub async fn delete_cluster(
    engine: &Engine,
    input: DeleteClusterInput,
) -> Result<ClusterOutput, EngineError> {
    let name = resolve(engine, "cluster", &input.cluster)?;
    let cluster = engine
        .store()
        .write(move |tx| {
            let cluster = clusters::get(tx, &name)?
                .filter(|c| c.status != ClusterStatus::Inactive)
                .ok_or_else(|| EngineError::ClusterNotFound { name: name.clone() })?;
            if services::count_live(tx, &cluster.cluster_arn)? > 0 {
                return Err(EngineError::ClusterContainsServices { name });
            }
            let unstopped: u64 = tasks::count_by_last_status(tx, &cluster.cluster_arn)?
                .into_iter()
                .filter(|(status, _)| *status != TaskStatus::Stopped)
                .map(|(_, n)| n)
                .sum();
            if unstopped > 0 {
                return Err(EngineError::ClusterContainsTasks {
                    name,
                    count: unstopped,
                });
            }
            let mut cluster = clusters::mark_inactive(tx, &name)?;
            cluster.tags = tags::list(tx, &cluster.cluster_arn)?;
            with_counts(tx, cluster)
        })
        .await?;
    Ok(ClusterOutput { cluster })
}

/// The cluster a request parameter names, by name or ARN.
fn resolve(engine: &Engine, field: &'static str, value: &str) -> Result<String, EngineError> {
    cluster_name(value, engine.scope()).map_err(|source| EngineError::Arn { field, source })
}

/// `cluster` with its task counts read from the store: RUNNING tasks are
/// running; those still on their way there (PROVISIONING, PENDING,
/// ACTIVATING) are pending; services not yet INACTIVE are active.
fn with_counts(conn: &Connection, mut cluster: Cluster) -> Result<Cluster, EngineError> {
    let counts = tasks::count_by_last_status(conn, &cluster.cluster_arn)?;
    let count = |statuses: &[TaskStatus]| -> u32 {
        let n: u64 = statuses.iter().filter_map(|s| counts.get(s)).copied().sum();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    cluster.running_tasks_count = count(&[TaskStatus::Running]);
    cluster.pending_tasks_count = count(&[
        TaskStatus::Provisioning,
        TaskStatus::Pending,
        TaskStatus::Activating,
    ]);
    cluster.active_services_count =
        u32::try_from(services::count_live(conn, &cluster.cluster_arn)?).unwrap_or(u32::MAX);
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use hail_api::{ApiError, ErrorCode, JsonApi, RequestContext, Service};
    use hail_model::arn::Scope;
    use hail_model::ecs::{Task, Timestamp};
    use hail_store::Store;
    use serde_json::{json, Value};

    use crate::Engine;

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
        engine.call(Service::Ecs, op, body, ctx).await
    }

    async fn add_task(engine: &Engine, cluster: &str, id: &str, status: &str) {
        let scope = engine.scope().clone();
        let task: Task = serde_json::from_value(json!({
            "taskArn": scope.task_arn(cluster, id),
            "clusterArn": scope.cluster_arn(cluster),
            "taskDefinitionArn": scope.task_definition_arn("web", 1),
            "lastStatus": status,
            "desiredStatus": "RUNNING",
            "launchType": "FARGATE",
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

    #[tokio::test(flavor = "multi_thread")]
    async fn create_is_idempotent_and_stores_tags() {
        let (_dir, engine) = engine();
        let first = call(
            &engine,
            "CreateCluster",
            json!({"clusterName": "c1", "tags": [{"key": "team", "value": "video"}]}),
        )
        .await
        .unwrap();
        let arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/c1";
        assert_eq!(first["cluster"]["clusterArn"], arn);
        assert_eq!(first["cluster"]["status"], "ACTIVE");
        assert_eq!(
            first["cluster"]["tags"],
            json!([{"key": "team", "value": "video"}])
        );
        let again = call(&engine, "CreateCluster", json!({"clusterName": "c1"}))
            .await
            .unwrap();
        assert_eq!(again["cluster"]["clusterArn"], arn);
        assert_eq!(again["cluster"]["tags"], first["cluster"]["tags"]);

        let tagged = call(
            &engine,
            "DescribeClusters",
            json!({"clusters": [arn], "include": ["TAGS"]}),
        )
        .await
        .unwrap();
        assert_eq!(tagged["clusters"][0]["tags"], first["cluster"]["tags"]);
        let untagged = call(&engine, "DescribeClusters", json!({"clusters": ["c1"]}))
            .await
            .unwrap();
        assert_eq!(untagged["clusters"][0]["tags"], json!([]));

        let default = call(&engine, "CreateCluster", json!({})).await.unwrap();
        assert_eq!(default["cluster"]["clusterName"], "default");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn create_rejects_bad_input_naming_the_field() {
        let (_dir, engine) = engine();
        let err = call(&engine, "CreateCluster", json!({"clusterName": "bad name"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        assert!(err.message().contains("clusterName"), "{}", err.message());
        let err = call(&engine, "CreateCluster", json!({"clusterNam": "x"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        assert!(err.message().contains("clusterName"), "{}", err.message());
        let err = call(&engine, "CreateCluster", json!({"clusterName": 7}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        assert!(err.message().contains("clusterName"), "{}", err.message());
        let tags: Vec<Value> = (0..51)
            .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
            .collect();
        let err = call(
            &engine,
            "CreateCluster",
            json!({"clusterName": "x", "tags": tags}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        assert!(err.message().contains("tags"), "{}", err.message());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn describe_reports_missing_clusters_and_counts_tasks() {
        let (_dir, engine) = engine();
        let out = call(&engine, "DescribeClusters", json!({})).await.unwrap();
        assert_eq!(out["clusters"], json!([]));
        assert_eq!(
            out["failures"],
            json!([{"arn": "arn:aws:ecs:eu-west-1:123456789012:cluster/default", "reason": "MISSING"}])
        );

        call(&engine, "CreateCluster", json!({"clusterName": "c1"}))
            .await
            .unwrap();
        add_task(&engine, "c1", "t1", "RUNNING").await;
        add_task(&engine, "c1", "t2", "RUNNING").await;
        add_task(&engine, "c1", "t3", "PROVISIONING").await;
        add_task(&engine, "c1", "t4", "PENDING").await;
        add_task(&engine, "c1", "t5", "STOPPED").await;
        add_task(&engine, "other", "t6", "RUNNING").await;
        let out = call(
            &engine,
            "DescribeClusters",
            json!({"clusters": ["c1", "nope"]}),
        )
        .await
        .unwrap();
        let c1 = &out["clusters"][0];
        assert_eq!(c1["clusterName"], "c1");
        assert_eq!(c1["runningTasksCount"], 2);
        assert_eq!(c1["pendingTasksCount"], 2);
        assert_eq!(c1["activeServicesCount"], 0);
        assert_eq!(out["failures"][0]["reason"], "MISSING");
        assert_eq!(
            out["failures"][0]["arn"],
            "arn:aws:ecs:eu-west-1:123456789012:cluster/nope"
        );

        // An ARN of another account is not a cluster of this endpoint.
        let err = call(
            &engine,
            "DescribeClusters",
            json!({"clusters": ["arn:aws:ecs:eu-west-1:999999999999:cluster/c1"]}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn list_paginates_active_clusters() {
        let (_dir, engine) = engine();
        for name in ["b", "a", "c"] {
            call(&engine, "CreateCluster", json!({"clusterName": name}))
                .await
                .unwrap();
        }
        call(&engine, "DeleteCluster", json!({"cluster": "b"}))
            .await
            .unwrap();
        let first = call(&engine, "ListClusters", json!({"maxResults": 1}))
            .await
            .unwrap();
        assert_eq!(
            first["clusterArns"],
            json!(["arn:aws:ecs:eu-west-1:123456789012:cluster/a"])
        );
        let token = first["nextToken"].as_str().unwrap().to_owned();
        let second = call(
            &engine,
            "ListClusters",
            json!({"maxResults": 1, "nextToken": token}),
        )
        .await
        .unwrap();
        assert_eq!(
            second["clusterArns"],
            json!(["arn:aws:ecs:eu-west-1:123456789012:cluster/c"])
        );
        assert!(second.get("nextToken").is_none(), "{second}");

        for body in [json!({"maxResults": 0}), json!({"nextToken": "garbage"})] {
            let err = call(&engine, "ListClusters", body).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn delete_refuses_unknown_clusters_and_clusters_with_tasks() {
        let (_dir, engine) = engine();
        let err = call(&engine, "DeleteCluster", json!({"cluster": "ghost"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ClusterNotFoundException);
        let err = call(&engine, "DeleteCluster", json!({})).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        assert!(err.message().contains("cluster"), "{}", err.message());

        call(&engine, "CreateCluster", json!({"clusterName": "busy"}))
            .await
            .unwrap();
        add_task(&engine, "busy", "t1", "STOPPED").await;
        add_task(&engine, "busy", "t2", "DEACTIVATING").await;
        let err = call(&engine, "DeleteCluster", json!({"cluster": "busy"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ClusterContainsTasksException);

        call(&engine, "CreateCluster", json!({"clusterName": "idle"}))
            .await
            .unwrap();
        add_task(&engine, "idle", "t3", "STOPPED").await;
        let out = call(
            &engine,
            "DeleteCluster",
            json!({"cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/idle"}),
        )
        .await
        .unwrap();
        assert_eq!(out["cluster"]["status"], "INACTIVE");
        let described = call(&engine, "DescribeClusters", json!({"clusters": ["idle"]}))
            .await
            .unwrap();
        assert_eq!(described["clusters"][0]["status"], "INACTIVE");
        assert_eq!(described["failures"], json!([]));
        let err = call(&engine, "DeleteCluster", json!({"cluster": "idle"}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ClusterNotFoundException);

        // The name can be used again; the new cluster is ACTIVE.
        let again = call(&engine, "CreateCluster", json!({"clusterName": "idle"}))
            .await
            .unwrap();
        assert_eq!(again["cluster"]["status"], "ACTIVE");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn other_operations_are_refused_by_name() {
        let (_dir, engine) = engine();
        let err = call(&engine, "CreateTaskSet", json!({})).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnknownOperationException);
        assert!(err.message().contains("CreateTaskSet"), "{}", err.message());
        let ctx = RequestContext {
            request_id: "r".into(),
            access_key_id: "AKIA".into(),
            region: "eu-west-1".into(),
        };
        let err = engine
            .call(
                Service::ApplicationAutoScaling,
                "GetPredictiveScalingForecast",
                json!({}),
                ctx,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnknownOperationException);
        assert!(
            err.message().contains("GetPredictiveScalingForecast"),
            "{}",
            err.message()
        );
    }
}
