//! Hail's native API (`Hail_20261101.*`): roles and triggers, the resources
//! AWS keeps in services Hail does not speak (IAM, Lambda's event sources),
//! load balancing, stacks, and what tasks use (DescribeTaskStats).
//! Same framing, auth and error shape as the AWS JSON APIs; names are
//! camelCase like ECS's.

pub mod load_balancing;
pub mod roles;
pub mod stacks;
pub mod task_stats;
pub mod triggers;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{Engine, EngineError};

pub async fn dispatch(engine: &Engine, op: &str, body: Value) -> Result<Value, EngineError> {
    match op {
        "ApplyStack" => output(stacks::apply_stack(engine, decode(op, body)?).await?),
        "DeleteStack" => output(stacks::delete_stack(engine, decode(op, body)?).await?),
        "ListStacks" => output(stacks::list_stacks(engine).await?),
        "DescribeStack" => output(stacks::describe_stack(engine, decode(op, body)?).await?),
        _ => dispatch_resources(engine, op, body).await,
    }
}

/// The native operations on single resources: everything but stacks, which
/// are made of these.
pub async fn dispatch_resources(
    engine: &Engine,
    op: &str,
    body: Value,
) -> Result<Value, EngineError> {
    match op {
        "CreateRole" => output(roles::create_role(engine, decode(op, body)?).await?),
        "GetRole" => output(roles::get_role(engine, decode(op, body)?).await?),
        "ListRoles" => output(roles::list_roles(engine).await?),
        "PutRolePolicy" => output(roles::put_role_policy(engine, decode(op, body)?).await?),
        "DeleteRole" => output(roles::delete_role(engine, decode(op, body)?).await?),
        "CreateTargetGroup" => {
            output(load_balancing::create_target_group(engine, decode(op, body)?).await?)
        }
        "DescribeTargetGroups" => output(load_balancing::describe_target_groups(engine).await?),
        "DeleteTargetGroup" => {
            output(load_balancing::delete_target_group(engine, decode(op, body)?).await?)
        }
        "CreateListener" => {
            output(load_balancing::create_listener(engine, decode(op, body)?).await?)
        }
        "DescribeListeners" => output(load_balancing::describe_listeners(engine).await?),
        "DeleteListener" => {
            output(load_balancing::delete_listener(engine, decode(op, body)?).await?)
        }
        "DescribeTargetHealth" => {
            output(load_balancing::describe_target_health(engine, decode(op, body)?).await?)
        }
        "GetTargetGroupMetrics" => {
            output(load_balancing::get_target_group_metrics(engine, decode(op, body)?).await?)
        }
        "PauseService" => {
            output(crate::ecs::services::pause_service(engine, decode(op, body)?).await?)
        }
        "ResumeService" => {
            output(crate::ecs::services::resume_service(engine, decode(op, body)?).await?)
        }
        "DescribeTaskStats" => {
            output(task_stats::describe_task_stats(engine, decode(op, body)?).await?)
        }
        "CreateTrigger" => output(triggers::create_trigger(engine, decode(op, body)?).await?),
        "DescribeTrigger" => output(triggers::describe_trigger(engine, decode(op, body)?).await?),
        "ListTriggers" => output(triggers::list_triggers(engine).await?),
        "DeleteTrigger" => output(triggers::delete_trigger(engine, decode(op, body)?).await?),
        "ListTriggerInvocations" => {
            output(triggers::list_invocations(engine, decode(op, body)?).await?)
        }
        "RedriveTriggerInvocations" => output(triggers::redrive(engine, decode(op, body)?).await?),
        _ => Err(EngineError::Unsupported {
            service: "hail",
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
