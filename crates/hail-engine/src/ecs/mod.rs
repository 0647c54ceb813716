//! The ECS API (`AmazonEC2ContainerServiceV20141113.*`): operation dispatch.

pub mod clusters;
pub mod services;
pub mod tagging;
pub mod task_definitions;
pub mod tasks;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{Engine, EngineError};

/// Runs the ECS operation `op`; operations the engine does not serve yet are
/// refused by name.
pub async fn dispatch(engine: &Engine, op: &str, body: Value) -> Result<Value, EngineError> {
    match op {
        "CreateCluster" => output(clusters::create_cluster(engine, decode(op, body)?).await?),
        "DescribeClusters" => output(clusters::describe_clusters(engine, decode(op, body)?).await?),
        "ListClusters" => output(clusters::list_clusters(engine, decode(op, body)?).await?),
        "DeleteCluster" => output(clusters::delete_cluster(engine, decode(op, body)?).await?),
        "RegisterTaskDefinition" => {
            output(task_definitions::register_task_definition(engine, decode(op, body)?).await?)
        }
        "DescribeTaskDefinition" => {
            output(task_definitions::describe_task_definition(engine, decode(op, body)?).await?)
        }
        "ListTaskDefinitions" => {
            output(task_definitions::list_task_definitions(engine, decode(op, body)?).await?)
        }
        "ListTaskDefinitionFamilies" => output(
            task_definitions::list_task_definition_families(engine, decode(op, body)?).await?,
        ),
        "DeregisterTaskDefinition" => {
            output(task_definitions::deregister_task_definition(engine, decode(op, body)?).await?)
        }
        "RunTask" => output(tasks::run_task(engine, decode(op, body)?).await?),
        "DescribeTasks" => output(tasks::describe_tasks(engine, decode(op, body)?).await?),
        "ListTasks" => output(tasks::list_tasks(engine, decode(op, body)?).await?),
        "StopTask" => output(tasks::stop_task(engine, decode(op, body)?).await?),
        "CreateService" => output(services::create_service(engine, decode(op, body)?).await?),
        "UpdateService" => output(services::update_service(engine, decode(op, body)?).await?),
        "DeleteService" => output(services::delete_service(engine, decode(op, body)?).await?),
        "DescribeServices" => output(services::describe_services(engine, decode(op, body)?).await?),
        "ListServices" => output(services::list_services(engine, decode(op, body)?).await?),
        "TagResource" => output(tagging::tag_resource(engine, decode(op, body)?).await?),
        "UntagResource" => output(tagging::untag_resource(engine, decode(op, body)?).await?),
        "ListTagsForResource" => {
            output(tagging::list_tags_for_resource(engine, decode(op, body)?).await?)
        }
        _ => Err(EngineError::Unsupported {
            service: "ecs",
            operation: op.to_owned(),
        }),
    }
}

fn decode<T: DeserializeOwned>(op: &str, body: Value) -> Result<T, EngineError> {
    hail_model::ecs::decode::decode_value(body).map_err(|source| EngineError::Decode {
        operation: op.to_owned(),
        source,
    })
}

fn output<T: Serialize>(value: T) -> Result<Value, EngineError> {
    serde_json::to_value(value).map_err(|source| EngineError::Encode { source })
}
