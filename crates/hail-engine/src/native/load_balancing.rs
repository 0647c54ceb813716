//! Load balancing: CreateTargetGroup, DescribeTargetGroups,
//! DeleteTargetGroup, CreateListener, DescribeListeners, DeleteListener,
//! DescribeTargetHealth and GetTargetGroupMetrics. Each change is committed,
//! then the gateway is made to serve the store's configuration; a listener
//! whose port cannot be bound is removed again and the request fails.

use hail_model::elb::{CreateListenerInput, CreateTargetGroupInput, Listener, TargetGroup};
use hail_store::{load_balancing, services, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Engine, EngineError};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupOutput {
    pub target_group: TargetGroup,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupsOutput {
    pub target_groups: Vec<TargetGroup>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerOutput {
    pub listener: Listener,
    /// Where the listener accepts connections.
    pub bound_address: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenersOutput {
    pub listeners: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetGroupRef {
    /// Name or ARN.
    pub target_group: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerRef {
    pub listener_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthDescription {
    pub target: TargetDescription,
    pub target_health: TargetHealthState,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetDescription {
    pub id: String,
    pub port: u16,
    /// The task the target is.
    pub task_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetHealthState {
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthOutput {
    pub target_health_descriptions: Vec<TargetHealthDescription>,
}

fn balancing(engine: &Engine) -> Result<&crate::balancing::LoadBalancing, EngineError> {
    engine.balancing().ok_or_else(|| {
        EngineError::invalid("loadBalancing", "this server runs without a load balancer")
    })
}

async fn find_group(engine: &Engine, given: &str) -> Result<TargetGroup, EngineError> {
    let key = given.to_owned();
    engine
        .store()
        .read(move |conn| load_balancing::get_target_group(conn, &key))
        .await?
        .ok_or_else(|| EngineError::NotFound {
            what: format!("target group {given}"),
        })
}

pub async fn create_target_group(
    engine: &Engine,
    input: CreateTargetGroupInput,
) -> Result<TargetGroupOutput, EngineError> {
    let lb = balancing(engine)?.clone();
    let arn = hail_model::elb::target_group_arn(engine.scope(), &input.name);
    let tg = input.into_target_group(arn, engine.now())?;
    let stored = tg.clone();
    engine
        .store()
        .write(
            move |tx| match load_balancing::insert_target_group(tx, &stored) {
                Err(StoreError::Conflict { .. }) => Err(EngineError::AlreadyExists {
                    what: format!("target group {}", stored.target_group_name),
                }),
                other => other.map_err(EngineError::from),
            },
        )
        .await?;
    lb.apply(engine).await?;
    Ok(TargetGroupOutput { target_group: tg })
}

pub async fn describe_target_groups(engine: &Engine) -> Result<TargetGroupsOutput, EngineError> {
    let target_groups = engine
        .store()
        .read(load_balancing::list_target_groups)
        .await?;
    Ok(TargetGroupsOutput { target_groups })
}

/// Refused while a listener forwards to the group or a service registers
/// tasks in it, as ELB refuses a group in use.
pub async fn delete_target_group(
    engine: &Engine,
    input: TargetGroupRef,
) -> Result<Value, EngineError> {
    let lb = balancing(engine)?.clone();
    let tg = find_group(engine, &input.target_group).await?;
    let arn = tg.target_group_arn.clone();
    engine
        .store()
        .write(move |tx| {
            let listeners = load_balancing::list_listeners(tx)?;
            if let Some(l) = listeners
                .iter()
                .find(|l| l.target_groups().any(|t| t == arn))
            {
                return Err(EngineError::invalid(
                    "targetGroup",
                    format!(
                        "ResourceInUse: target group is used by listener {}",
                        l.listener_arn
                    ),
                ));
            }
            if let Some(s) = services::list_live(tx)?.iter().find(|s| {
                s.service
                    .load_balancers
                    .iter()
                    .any(|lb| lb.target_group_arn.as_deref() == Some(arn.as_str()))
            }) {
                return Err(EngineError::invalid(
                    "targetGroup",
                    format!(
                        "ResourceInUse: target group is used by service {}",
                        s.service.service_arn
                    ),
                ));
            }
            load_balancing::delete_target_group(tx, &arn)?;
            Ok::<_, EngineError>(())
        })
        .await?;
    lb.apply(engine).await?;
    Ok(serde_json::json!({}))
}

pub async fn create_listener(
    engine: &Engine,
    input: CreateListenerInput,
) -> Result<ListenerOutput, EngineError> {
    let lb = balancing(engine)?.clone();
    let listener =
        input.into_listener(hail_model::elb::listener_arn(engine.scope()), engine.now())?;
    let stored = listener.clone();
    engine
        .store()
        .write(move |tx| {
            for tg in stored.target_groups() {
                if load_balancing::get_target_group(tx, tg)?.is_none() {
                    return Err(EngineError::NotFound {
                        what: format!("target group {tg}"),
                    });
                }
            }
            match load_balancing::insert_listener(tx, &stored) {
                Err(StoreError::Conflict { what }) => Err(EngineError::AlreadyExists { what }),
                other => other.map_err(EngineError::from),
            }
        })
        .await?;
    if let Err(e) = lb.apply(engine).await {
        // The port could not be bound: the listener does not exist.
        let arn = listener.listener_arn.clone();
        engine
            .store()
            .write(move |tx| load_balancing::delete_listener(tx, &arn))
            .await?;
        lb.apply(engine).await?;
        return Err(e);
    }
    let bound_address = lb
        .bound()
        .into_iter()
        .find(|(id, _)| *id == listener.listener_arn)
        .map(|(_, a)| a.to_string());
    Ok(ListenerOutput {
        listener,
        bound_address,
    })
}

pub async fn describe_listeners(engine: &Engine) -> Result<ListenersOutput, EngineError> {
    let lb = balancing(engine)?;
    let listeners = engine.store().read(load_balancing::list_listeners).await?;
    let bound = lb.bound();
    let listeners = listeners
        .into_iter()
        .map(|l| {
            let mut v = serde_json::to_value(&l).unwrap_or_default();
            if let Some((_, addr)) = bound.iter().find(|(id, _)| *id == l.listener_arn) {
                v["boundAddress"] = addr.to_string().into();
            }
            v
        })
        .collect();
    Ok(ListenersOutput { listeners })
}

pub async fn delete_listener(engine: &Engine, input: ListenerRef) -> Result<Value, EngineError> {
    let lb = balancing(engine)?.clone();
    let arn = input.listener_arn.clone();
    let deleted = engine
        .store()
        .write(move |tx| load_balancing::delete_listener(tx, &arn))
        .await?;
    if !deleted {
        return Err(EngineError::NotFound {
            what: format!("listener {}", input.listener_arn),
        });
    }
    lb.apply(engine).await?;
    Ok(serde_json::json!({}))
}

pub async fn describe_target_health(
    engine: &Engine,
    input: TargetGroupRef,
) -> Result<TargetHealthOutput, EngineError> {
    let lb = balancing(engine)?;
    let tg = find_group(engine, &input.target_group).await?;
    let health = lb
        .gateway()
        .target_health(&tg.target_group_arn)
        .unwrap_or_default();
    Ok(TargetHealthOutput {
        target_health_descriptions: health
            .into_iter()
            .map(|t| TargetHealthDescription {
                target: TargetDescription {
                    id: t.addr.ip().to_string(),
                    port: t.addr.port(),
                    task_id: t.id,
                },
                target_health: TargetHealthState {
                    state: t.state.as_str().to_owned(),
                    reason: t.reason.map(|r| r.as_str().to_owned()),
                    description: t.description,
                },
            })
            .collect(),
    })
}

/// The gateway's request metrics of a group: counts, latency, per-second
/// samples and per target.
pub async fn get_target_group_metrics(
    engine: &Engine,
    input: TargetGroupRef,
) -> Result<Value, EngineError> {
    let lb = balancing(engine)?;
    let tg = find_group(engine, &input.target_group).await?;
    let metrics = lb
        .gateway()
        .metrics(&tg.target_group_arn)
        .map_err(|e| EngineError::invalid("targetGroup", e.to_string()))?;
    serde_json::to_value(metrics).map_err(|source| EngineError::Encode { source })
}
