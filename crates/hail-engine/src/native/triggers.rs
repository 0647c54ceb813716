//! Triggers: CreateTrigger, DescribeTrigger, ListTriggers, DeleteTrigger,
//! ListTriggerInvocations, RedriveTriggerInvocations.
//!
//! Creating a trigger installs a notification rule on its bucket (rule id
//! `hail-trigger-<name>`, destination the trigger's ARN), so objects that
//! match start arriving as events; deleting it removes the rule. A bucket's
//! notification configuration written through S3 may also name a trigger's
//! ARN, with filters of its own.

use std::future::Future;
use std::pin::Pin;

use hail_model::triggers::{
    self, check_template, CreateTriggerInput, Invocation, InvocationStatus, Trigger,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_CONCURRENCY, DEFAULT_URL_EXPIRES_SECONDS,
};
use hail_store::{triggers as store, StoreError};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

/// Most invocations one listing returns.
const MAX_LISTED: u32 = 1000;
/// The S3 event names a trigger may filter on.
pub const EVENT_NAMES: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
];

/// A notification rule to put on a bucket, in the object store's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRule {
    pub id: String,
    pub destination_arn: String,
    pub events: Vec<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

/// Why a rule could not be put on a bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("{0}")]
    Failed(String),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object store's notification configuration, as the engine needs it.
pub trait BucketNotifications: Send + Sync + 'static {
    /// Adds `rule` to the bucket's configuration, replacing a rule of the same id.
    fn install<'a>(
        &'a self,
        bucket: &'a str,
        rule: NotificationRule,
    ) -> BoxFuture<'a, Result<(), NotificationError>>;
    /// Removes rule `id` from the bucket's configuration, if it is there.
    fn remove<'a>(
        &'a self,
        bucket: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), NotificationError>>;
}

/// The rule id a trigger installs on its bucket.
pub fn rule_id(trigger: &str) -> String {
    format!("hail-trigger-{trigger}")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerNameInput {
    pub trigger_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListInvocationsInput {
    pub trigger_name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub max_results: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedriveInput {
    pub trigger_name: String,
    /// The dead invocations to queue again; all of them when absent.
    #[serde(default)]
    pub invocation_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct TriggerOutput {
    pub trigger: Trigger,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTriggerOutput {
    pub trigger: Trigger,
    /// Invocations by status (`QUEUED`, `RUNNING`, `SUCCEEDED`, `DEAD`).
    pub invocation_counts: std::collections::BTreeMap<String, u64>,
    /// The most recently changed invocations, newest first.
    pub recent_invocations: Vec<Invocation>,
}

#[derive(Debug, Serialize)]
pub struct ListTriggersOutput {
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Serialize)]
pub struct ListInvocationsOutput {
    pub invocations: Vec<Invocation>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveOutput {
    pub redriven: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Empty {}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound {
        what: format!("trigger {name}"),
    }
}

fn to_engine(e: NotificationError) -> EngineError {
    match e {
        NotificationError::NoSuchBucket(b) => {
            EngineError::invalid("bucket", format!("bucket {b} does not exist"))
        }
        NotificationError::Failed(m) => EngineError::invalid("bucket", m),
    }
}

/// Checks a CreateTrigger request and builds the trigger.
pub fn trigger_of(engine: &Engine, input: CreateTriggerInput) -> Result<Trigger, EngineError> {
    triggers::validate_trigger_name(&input.trigger_name)
        .map_err(|m| EngineError::invalid("triggerName", m))?;
    if input.bucket.is_empty() {
        return Err(EngineError::invalid("bucket", "a bucket is required"));
    }
    let events = input
        .events
        .unwrap_or_else(|| vec!["s3:ObjectCreated:*".to_owned()]);
    if events.is_empty() {
        return Err(EngineError::invalid("events", "at least one event name"));
    }
    if let Some(bad) = events.iter().find(|e| !EVENT_NAMES.contains(&e.as_str())) {
        return Err(EngineError::invalid(
            "events",
            format!(
                "{bad:?} is not an S3 event name; known: {}",
                EVENT_NAMES.join(", ")
            ),
        ));
    }
    for (i, c) in input.overrides.container_overrides.iter().enumerate() {
        for (j, arg) in c.command.iter().flatten().enumerate() {
            check_template(arg).map_err(|e| {
                EngineError::invalid(
                    format!("overrides.containerOverrides[{i}].command[{j}]"),
                    e.to_string(),
                )
            })?;
        }
        for (j, kv) in c.environment.iter().enumerate() {
            check_template(&kv.value).map_err(|e| {
                EngineError::invalid(
                    format!("overrides.containerOverrides[{i}].environment[{j}].value"),
                    e.to_string(),
                )
            })?;
        }
    }
    let positive = |field: &str, v: Option<u32>, default: u32, max: u32| match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(EngineError::invalid(
            field,
            format!("{n} is outside 1..={max}"),
        )),
    };
    let scope = engine.scope();
    Ok(Trigger {
        trigger_arn: triggers::trigger_arn(&scope.region, &scope.account, &input.trigger_name),
        trigger_name: input.trigger_name,
        cluster: input.cluster.unwrap_or_else(|| "default".to_owned()),
        task_definition: input.task_definition,
        bucket: input.bucket,
        events,
        prefix: input.prefix.filter(|p| !p.is_empty()),
        suffix: input.suffix.filter(|s| !s.is_empty()),
        overrides: input.overrides,
        // Tasks of awsvpc definitions need one; Hail's own subnet by default.
        network_configuration: Some(input.network_configuration.unwrap_or_else(
            || serde_json::json!({"awsvpcConfiguration": {"subnets": ["subnet-hail"]}}),
        )),
        max_concurrency: positive(
            "maxConcurrency",
            input.max_concurrency,
            DEFAULT_MAX_CONCURRENCY,
            1000,
        )?,
        max_attempts: positive("maxAttempts", input.max_attempts, DEFAULT_MAX_ATTEMPTS, 100)?,
        url_expires_seconds: positive(
            "urlExpiresSeconds",
            input.url_expires_seconds,
            DEFAULT_URL_EXPIRES_SECONDS,
            7 * 24 * 3600,
        )?,
        created_at: engine.now(),
    })
}

pub async fn create_trigger(
    engine: &Engine,
    input: CreateTriggerInput,
) -> Result<TriggerOutput, EngineError> {
    let trigger = trigger_of(engine, input)?;
    let cluster = trigger.cluster.clone();
    let exists = engine
        .store()
        .read(move |conn| hail_store::clusters::get(conn, &cluster))
        .await?;
    if exists.is_none() {
        return Err(EngineError::ClusterNotFound {
            name: trigger.cluster.clone(),
        });
    }
    let notifications = engine.notifications().ok_or(EngineError::Unsupported {
        service: "hail",
        operation: "CreateTrigger (this server has no object store)".to_owned(),
    })?;
    let stored = trigger.clone();
    engine
        .store()
        .write(move |tx| store::insert(tx, &stored))
        .await
        .map_err(|e| match e {
            StoreError::Conflict { what } => EngineError::AlreadyExists { what },
            other => other.into(),
        })?;
    let rule = NotificationRule {
        id: rule_id(&trigger.trigger_name),
        destination_arn: trigger.trigger_arn.clone(),
        events: trigger.events.clone(),
        prefix: trigger.prefix.clone(),
        suffix: trigger.suffix.clone(),
    };
    if let Err(e) = notifications.install(&trigger.bucket, rule).await {
        // Undo the record: a trigger whose bucket never notifies it would
        // only mislead.
        let name = trigger.trigger_name.clone();
        engine
            .store()
            .write(move |tx| store::delete(tx, &name))
            .await?;
        return Err(to_engine(e));
    }
    Ok(TriggerOutput { trigger })
}

async fn load(engine: &Engine, name: &str) -> Result<Trigger, EngineError> {
    let lookup = name.to_owned();
    engine
        .store()
        .read(move |conn| store::get(conn, &lookup))
        .await?
        .ok_or_else(|| not_found(name))
}

pub async fn describe_trigger(
    engine: &Engine,
    input: TriggerNameInput,
) -> Result<DescribeTriggerOutput, EngineError> {
    let trigger = load(engine, &input.trigger_name).await?;
    let name = input.trigger_name;
    let (counts, recent) = engine
        .store()
        .read(move |conn| {
            Ok::<_, StoreError>((
                store::count_by_status(conn, &name)?,
                store::recent_invocations(conn, &name, 20)?,
            ))
        })
        .await?;
    Ok(DescribeTriggerOutput {
        trigger,
        invocation_counts: counts.into_iter().collect(),
        recent_invocations: recent,
    })
}

pub async fn list_triggers(engine: &Engine) -> Result<ListTriggersOutput, EngineError> {
    let triggers = engine.store().read(store::list).await?;
    Ok(ListTriggersOutput { triggers })
}

pub async fn delete_trigger(
    engine: &Engine,
    input: TriggerNameInput,
) -> Result<Empty, EngineError> {
    let trigger = load(engine, &input.trigger_name).await?;
    if let Some(notifications) = engine.notifications() {
        match notifications
            .remove(&trigger.bucket, &rule_id(&trigger.trigger_name))
            .await
        {
            // A bucket deleted since has no rule left to remove.
            Ok(()) | Err(NotificationError::NoSuchBucket(_)) => {}
            Err(e) => return Err(to_engine(e)),
        }
    }
    let name = input.trigger_name;
    engine
        .store()
        .write(move |tx| store::delete(tx, &name))
        .await?;
    Ok(Empty {})
}

pub async fn list_invocations(
    engine: &Engine,
    input: ListInvocationsInput,
) -> Result<ListInvocationsOutput, EngineError> {
    load(engine, &input.trigger_name).await?;
    let limit = input.max_results.unwrap_or(100).clamp(1, MAX_LISTED);
    let status = input
        .status
        .as_deref()
        .map(|s| {
            InvocationStatus::parse(s).ok_or_else(|| {
                EngineError::invalid(
                    "status",
                    format!("{s:?} is not one of QUEUED, RUNNING, SUCCEEDED, DEAD"),
                )
            })
        })
        .transpose()?;
    let name = input.trigger_name;
    let invocations = engine
        .store()
        .read(move |conn| match status {
            Some(status) => store::list_invocations(conn, &name, status, limit),
            None => store::recent_invocations(conn, &name, limit),
        })
        .await?;
    Ok(ListInvocationsOutput { invocations })
}

pub async fn redrive(engine: &Engine, input: RedriveInput) -> Result<RedriveOutput, EngineError> {
    load(engine, &input.trigger_name).await?;
    let now = engine.now();
    let name = input.trigger_name;
    let wanted = input.invocation_ids;
    let redriven = engine
        .store()
        .write(move |tx| {
            let dead = store::list_invocations(tx, &name, InvocationStatus::Dead, u32::MAX)?;
            let mut redriven = Vec::new();
            for mut inv in dead {
                if wanted
                    .as_ref()
                    .is_some_and(|ids| !ids.contains(&inv.invocation_id))
                {
                    continue;
                }
                inv.status = InvocationStatus::Queued;
                inv.attempts = 0;
                inv.redrives += 1;
                inv.next_attempt_at = now;
                inv.updated_at = now;
                store::update_invocation(tx, &inv)?;
                redriven.push(inv.invocation_id);
            }
            Ok::<_, StoreError>(redriven)
        })
        .await?;
    if let Some(triggers) = engine.triggers() {
        triggers.wake();
    }
    Ok(RedriveOutput { redriven })
}
