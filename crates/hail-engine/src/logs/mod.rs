//! The CloudWatch Logs API (`Logs_20140328.*`): log groups, streams and
//! events, with CloudWatch's names, limits, tokens and errors. Container
//! output reaches these groups through [`shipper::LogShipper`].

pub mod firelens;
pub mod pattern;
pub mod shipper;

use std::collections::BTreeMap;

use hail_store::logs::{self as store_logs, DescribeStreams, StreamOrder};
use hail_store::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Engine, EngineError};

pub use shipper::{LogShipper, ShipSink, ShipSource};

/// The three ways a Logs request fails, as CloudWatch Logs names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogsErrorKind {
    NotFound,
    AlreadyExists,
    InvalidParameter,
}

/// A Logs failure: its kind and CloudWatch's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LogsError {
    pub kind: LogsErrorKind,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::Logs(LogsError {
        kind: LogsErrorKind::InvalidParameter,
        message: message.into(),
    })
}

pub(crate) fn group_missing() -> EngineError {
    EngineError::Logs(LogsError {
        kind: LogsErrorKind::NotFound,
        message: "The specified log group does not exist.".to_owned(),
    })
}

fn stream_missing() -> EngineError {
    EngineError::Logs(LogsError {
        kind: LogsErrorKind::NotFound,
        message: "The specified log stream does not exist.".to_owned(),
    })
}

/// Store failures in CloudWatch's words: a missing group or stream, an
/// existing one, a bad token; anything else stays a server failure.
fn store_error(e: StoreError) -> EngineError {
    match &e {
        StoreError::NotFound { what } if what.starts_with("log group") => group_missing(),
        StoreError::NotFound { what } if what.starts_with("log stream") => stream_missing(),
        StoreError::Conflict { what } if what.starts_with("log group") => {
            EngineError::Logs(LogsError {
                kind: LogsErrorKind::AlreadyExists,
                message: "The specified log group already exists".to_owned(),
            })
        }
        StoreError::Conflict { what } if what.starts_with("log stream") => {
            EngineError::Logs(LogsError {
                kind: LogsErrorKind::AlreadyExists,
                message: "The specified log stream already exists".to_owned(),
            })
        }
        StoreError::InvalidToken { .. } => invalid("The specified nextToken is invalid."),
        StoreError::InvalidArgument { reason, .. } => invalid(reason.clone()),
        _ => EngineError::Store(e),
    }
}

/// Runs the Logs operation `op`.
pub async fn dispatch(engine: &Engine, op: &str, body: Value) -> Result<Value, EngineError> {
    match op {
        "CreateLogGroup" => create_log_group(engine, decode(op, body)?).await,
        "DeleteLogGroup" => delete_log_group(engine, decode(op, body)?).await,
        "DescribeLogGroups" => describe_log_groups(engine, decode(op, body)?).await,
        "PutRetentionPolicy" => put_retention_policy(engine, decode(op, body)?).await,
        "DeleteRetentionPolicy" => delete_retention_policy(engine, decode(op, body)?).await,
        "CreateLogStream" => create_log_stream(engine, decode(op, body)?).await,
        "DeleteLogStream" => delete_log_stream(engine, decode(op, body)?).await,
        "DescribeLogStreams" => describe_log_streams(engine, decode(op, body)?).await,
        "PutLogEvents" => put_log_events(engine, decode(op, body)?).await,
        "GetLogEvents" => get_log_events(engine, decode(op, body)?).await,
        "FilterLogEvents" => filter_log_events(engine, decode(op, body)?).await,
        "TagLogGroup" => {
            let input: TagLogGroupInput = decode(op, body)?;
            retag(engine, input.log_group_name, input.tags, Vec::new()).await?;
            Ok(json!({}))
        }
        "UntagLogGroup" => {
            let input: UntagLogGroupInput = decode(op, body)?;
            retag(engine, input.log_group_name, BTreeMap::new(), input.tags).await?;
            Ok(json!({}))
        }
        "ListTagsLogGroup" => {
            let input: GroupOnly = decode(op, body)?;
            let tags = retag(engine, input.log_group_name, BTreeMap::new(), Vec::new()).await?;
            Ok(json!({ "tags": tags }))
        }
        "TagResource" => {
            let input: TagResourceInput = decode(op, body)?;
            retag(
                engine,
                group_of_arn(engine, &input.resource_arn)?,
                input.tags,
                Vec::new(),
            )
            .await?;
            Ok(json!({}))
        }
        "UntagResource" => {
            let input: UntagResourceInput = decode(op, body)?;
            let group = group_of_arn(engine, &input.resource_arn)?;
            retag(engine, group, BTreeMap::new(), input.tag_keys).await?;
            Ok(json!({}))
        }
        "ListTagsForResource" => {
            let input: ResourceOnly = decode(op, body)?;
            let group = group_of_arn(engine, &input.resource_arn)?;
            let tags = retag(engine, group, BTreeMap::new(), Vec::new()).await?;
            Ok(json!({ "tags": tags }))
        }
        _ => Err(EngineError::Unsupported {
            service: "logs",
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

/// Log group names: 1–512 of `[.-_/#A-Za-z0-9]`.
pub fn check_group_name(name: &str) -> Result<(), EngineError> {
    let ok = (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+ \
             and have length 1 to 512"
        )))
    }
}

/// Log stream names: 1–512 characters, no `:` or `*`.
fn check_stream_name(name: &str) -> Result<(), EngineError> {
    if (1..=512).contains(&name.chars().count()) && !name.contains([':', '*']) {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [^:*]* and have \
             length 1 to 512"
        )))
    }
}

/// The retention periods CloudWatch Logs accepts.
const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

fn group_arn(engine: &Engine, name: &str) -> String {
    let scope = engine.scope();
    format!(
        "arn:aws:logs:{}:{}:log-group:{name}",
        scope.region, scope.account
    )
}

/// The group a `arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]` names.
fn group_of_arn(engine: &Engine, arn: &str) -> Result<String, EngineError> {
    let scope = engine.scope();
    let prefix = format!("arn:aws:logs:{}:{}:log-group:", scope.region, scope.account);
    let name = arn
        .strip_prefix(&prefix)
        .map(|rest| rest.strip_suffix(":*").unwrap_or(rest))
        .ok_or_else(|| invalid(format!("{arn} is not a log group ARN of this account")))?;
    check_group_name(name)?;
    Ok(name.to_owned())
}

/// `logGroupName`, or `logGroupIdentifier` (a name or an ARN).
fn group_param(
    engine: &Engine,
    name: Option<String>,
    identifier: Option<String>,
) -> Result<String, EngineError> {
    let name = match (name, identifier) {
        (Some(n), None) => n,
        (None, Some(id)) if id.starts_with("arn:") => group_of_arn(engine, &id)?,
        (None, Some(id)) => id,
        (Some(_), Some(_)) => {
            return Err(invalid(
                "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "Either logGroupName or logGroupIdentifier must be specified.",
            ))
        }
    };
    check_group_name(&name)?;
    Ok(name)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateLogGroupInput {
    log_group_name: String,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    log_group_class: Option<String>,
    #[serde(default)]
    deletion_protection_enabled: Option<bool>,
}

async fn create_log_group(
    engine: &Engine,
    input: CreateLogGroupInput,
) -> Result<Value, EngineError> {
    check_group_name(&input.log_group_name)?;
    if let Some(class) = input.log_group_class.as_deref() {
        if !matches!(class, "STANDARD" | "INFREQUENT_ACCESS" | "DELIVERY") {
            return Err(invalid(format!("logGroupClass {class} is not valid")));
        }
    }
    let _ = (input.kms_key_id, input.deletion_protection_enabled);
    let tags = input.tags.unwrap_or_default();
    check_tags(&tags)?;
    let now = engine.now().as_millis();
    let name = input.log_group_name;
    engine
        .store()
        .write(move |tx| store_logs::create_group(tx, &name, now, None, &tags))
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), EngineError> {
    if tags.len() > 50 {
        return Err(invalid("a log group may carry at most 50 tags"));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(invalid(format!(
                "tag {k:?}: keys are 1 to 128 characters, values up to 256"
            )));
        }
        if k.starts_with("aws:") {
            return Err(invalid("tag keys may not start with aws:"));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupOnly {
    log_group_name: String,
}

async fn delete_log_group(engine: &Engine, input: GroupOnly) -> Result<Value, EngineError> {
    check_group_name(&input.log_group_name)?;
    let name = input.log_group_name;
    engine
        .store()
        .write(move |tx| store_logs::delete_group(tx, &name))
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeLogGroupsInput {
    #[serde(default)]
    log_group_name_prefix: Option<String>,
    #[serde(default)]
    log_group_name_pattern: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    account_identifiers: Option<Vec<String>>,
    #[serde(default)]
    include_linked_accounts: Option<bool>,
    #[serde(default)]
    log_group_class: Option<String>,
    #[serde(default)]
    log_group_identifiers: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogGroupOut {
    log_group_name: String,
    creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_in_days: Option<u32>,
    metric_filter_count: u32,
    arn: String,
    stored_bytes: i64,
    log_group_class: &'static str,
    log_group_arn: String,
}

async fn describe_log_groups(
    engine: &Engine,
    input: DescribeLogGroupsInput,
) -> Result<Value, EngineError> {
    if input.log_group_name_prefix.is_some() && input.log_group_name_pattern.is_some() {
        return Err(invalid(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
        ));
    }
    let _ = (
        input.account_identifiers,
        input.include_linked_accounts,
        input.log_group_class,
    );
    let wanted: Option<Vec<String>> = input.log_group_identifiers.map(|ids| {
        ids.into_iter()
            .map(|id| group_of_arn(engine, &id).unwrap_or(id))
            .collect()
    });
    let pattern = input.log_group_name_pattern.map(|p| p.to_lowercase());
    let prefix = input.log_group_name_prefix;
    let (limit, token) = (input.limit, input.next_token);
    let page = engine
        .store()
        .read(move |conn| {
            store_logs::describe_groups(conn, prefix.as_deref(), limit, token.as_deref())
        })
        .await
        .map_err(store_error)?;
    let groups: Vec<LogGroupOut> = page
        .items
        .into_iter()
        .filter(|g| {
            pattern
                .as_ref()
                .is_none_or(|p| g.name.to_lowercase().contains(p.as_str()))
        })
        .filter(|g| wanted.as_ref().is_none_or(|w| w.contains(&g.name)))
        .map(|g| {
            let arn = group_arn(engine, &g.name);
            LogGroupOut {
                arn: format!("{arn}:*"),
                log_group_arn: arn,
                log_group_name: g.name,
                creation_time: g.created_at,
                retention_in_days: g.retention_in_days,
                metric_filter_count: 0,
                stored_bytes: g.stored_bytes,
                log_group_class: "STANDARD",
            }
        })
        .collect();
    let mut out = json!({ "logGroups": groups });
    if let Some(t) = page.next_token {
        out["nextToken"] = t.into();
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutRetentionPolicyInput {
    log_group_name: String,
    retention_in_days: u32,
}

async fn put_retention_policy(
    engine: &Engine,
    input: PutRetentionPolicyInput,
) -> Result<Value, EngineError> {
    check_group_name(&input.log_group_name)?;
    if !RETENTION_DAYS.contains(&input.retention_in_days) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{}' at 'retentionInDays' failed to satisfy \
             constraint: Member must satisfy enum value set: {RETENTION_DAYS:?}",
            input.retention_in_days
        )));
    }
    let (name, days) = (input.log_group_name, input.retention_in_days);
    engine
        .store()
        .write(move |tx| store_logs::set_retention(tx, &name, Some(days)))
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

async fn delete_retention_policy(engine: &Engine, input: GroupOnly) -> Result<Value, EngineError> {
    check_group_name(&input.log_group_name)?;
    let name = input.log_group_name;
    engine
        .store()
        .write(move |tx| store_logs::set_retention(tx, &name, None))
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StreamInput {
    log_group_name: String,
    log_stream_name: String,
}

async fn create_log_stream(engine: &Engine, input: StreamInput) -> Result<Value, EngineError> {
    check_group_name(&input.log_group_name)?;
    check_stream_name(&input.log_stream_name)?;
    let now = engine.now().as_millis();
    engine
        .store()
        .write(move |tx| {
            store_logs::create_stream(tx, &input.log_group_name, &input.log_stream_name, now)
        })
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

async fn delete_log_stream(engine: &Engine, input: StreamInput) -> Result<Value, EngineError> {
    check_group_name(&input.log_group_name)?;
    check_stream_name(&input.log_stream_name)?;
    engine
        .store()
        .write(move |tx| {
            store_logs::delete_stream(tx, &input.log_group_name, &input.log_stream_name)
        })
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DescribeLogStreamsInput {
    #[serde(default)]
    log_group_name: Option<String>,
    #[serde(default)]
    log_group_identifier: Option<String>,
    #[serde(default)]
    log_stream_name_prefix: Option<String>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    descending: Option<bool>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogStreamOut {
    log_stream_name: String,
    creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_ingestion_time: Option<i64>,
    upload_sequence_token: String,
    arn: String,
    stored_bytes: i64,
}

async fn describe_log_streams(
    engine: &Engine,
    input: DescribeLogStreamsInput,
) -> Result<Value, EngineError> {
    let group = group_param(engine, input.log_group_name, input.log_group_identifier)?;
    let order_by = match input.order_by.as_deref() {
        None | Some("LogStreamName") => StreamOrder::LogStreamName,
        Some("LastEventTime") => StreamOrder::LastEventTime,
        Some(other) => return Err(invalid(format!("orderBy {other} is not valid"))),
    };
    if order_by == StreamOrder::LastEventTime && input.log_stream_name_prefix.is_some() {
        return Err(invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let query = DescribeStreams {
        prefix: input.log_stream_name_prefix,
        order_by,
        descending: input.descending.unwrap_or(false),
        limit: input.limit,
        next_token: input.next_token,
    };
    let arn_prefix = group_arn(engine, &group);
    let page = engine
        .store()
        .read(move |conn| store_logs::describe_streams(conn, &group, &query))
        .await
        .map_err(store_error)?;
    let streams: Vec<LogStreamOut> = page
        .items
        .into_iter()
        .map(|s| LogStreamOut {
            arn: format!("{arn_prefix}:log-stream:{}", s.name),
            upload_sequence_token: sequence_token(s.stored_bytes),
            log_stream_name: s.name,
            creation_time: s.created_at,
            first_event_timestamp: s.first_event_timestamp,
            last_event_timestamp: s.last_event_timestamp,
            last_ingestion_time: s.last_ingestion_time,
            stored_bytes: s.stored_bytes,
        })
        .collect();
    let mut out = json!({ "logStreams": streams });
    if let Some(t) = page.next_token {
        out["nextToken"] = t.into();
    }
    Ok(out)
}

/// CloudWatch no longer requires sequence tokens but still returns them; a
/// value that changes with every accepted batch keeps old clients content.
fn sequence_token(stored_bytes: i64) -> String {
    format!("{stored_bytes:056}")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InputLogEvent {
    timestamp: i64,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutLogEventsInput {
    log_group_name: String,
    log_stream_name: String,
    log_events: Vec<InputLogEvent>,
    #[serde(default)]
    sequence_token: Option<String>,
    #[serde(default)]
    entity: Option<Value>,
}

/// CloudWatch's limits on one PutLogEvents call.
const MAX_BATCH_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes CloudWatch adds to every event when counting a batch.
pub const EVENT_OVERHEAD: usize = 26;
/// Largest event message, in bytes.
pub const MAX_EVENT_BYTES: usize = 262_144 - EVENT_OVERHEAD;
const TOO_OLD_MS: i64 = 14 * 24 * 3600 * 1000;
const TOO_NEW_MS: i64 = 2 * 3600 * 1000;

async fn put_log_events(engine: &Engine, input: PutLogEventsInput) -> Result<Value, EngineError> {
    check_group_name(&input.log_group_name)?;
    check_stream_name(&input.log_stream_name)?;
    let _ = (input.sequence_token, input.entity);
    let events = input.log_events;
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(invalid(format!(
            "a batch holds 1 to {MAX_BATCH_EVENTS} log events"
        )));
    }
    let mut bytes = 0;
    for e in &events {
        if e.message.is_empty() {
            return Err(invalid("Log event message must not be empty."));
        }
        if e.message.len() > MAX_EVENT_BYTES {
            return Err(invalid(format!(
                "Log event too large: {} bytes exceeds the limit of {MAX_EVENT_BYTES}",
                e.message.len()
            )));
        }
        bytes += e.message.len() + EVENT_OVERHEAD;
    }
    if bytes > MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "Upload too large: {bytes} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        return Err(invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    let now = engine.now().as_millis();
    // Events out of the accepted window are skipped and reported by index,
    // as CloudWatch does; the rest are stored.
    let too_old_end = events.iter().position(|e| e.timestamp >= now - TOO_OLD_MS);
    let too_new_start = events.iter().position(|e| e.timestamp > now + TOO_NEW_MS);
    let accepted: Vec<store_logs::InputEvent> = events
        .iter()
        .filter(|e| e.timestamp >= now - TOO_OLD_MS && e.timestamp <= now + TOO_NEW_MS)
        .map(|e| store_logs::InputEvent {
            timestamp: e.timestamp,
            message: e.message.clone(),
        })
        .collect();
    let (group, stream) = (input.log_group_name, input.log_stream_name);
    let stored = engine
        .store()
        .write(move |tx| {
            if store_logs::get_group(tx, &group)?.is_none() {
                return Err(StoreError::NotFound {
                    what: format!("log group {group}"),
                });
            }
            store_logs::put_events(tx, &group, &stream, &accepted, now)?;
            Ok(store_logs::get_stream(tx, &group, &stream)?
                .map(|s| s.stored_bytes)
                .unwrap_or(0))
        })
        .await
        .map_err(store_error)?;
    let mut out = json!({ "nextSequenceToken": sequence_token(stored) });
    let mut rejected = serde_json::Map::new();
    match too_old_end {
        Some(0) => {}
        Some(end) => {
            rejected.insert("tooOldLogEventEndIndex".into(), end.into());
        }
        None => {
            rejected.insert("tooOldLogEventEndIndex".into(), events.len().into());
        }
    }
    if let Some(start) = too_new_start {
        rejected.insert("tooNewLogEventStartIndex".into(), start.into());
    }
    if !rejected.is_empty() {
        out["rejectedLogEventsInfo"] = Value::Object(rejected);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetLogEventsInput {
    #[serde(default)]
    log_group_name: Option<String>,
    #[serde(default)]
    log_group_identifier: Option<String>,
    log_stream_name: String,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    end_time: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    start_from_head: Option<bool>,
    #[serde(default)]
    unmask: Option<bool>,
}

async fn get_log_events(engine: &Engine, input: GetLogEventsInput) -> Result<Value, EngineError> {
    let group = group_param(engine, input.log_group_name, input.log_group_identifier)?;
    check_stream_name(&input.log_stream_name)?;
    let _ = input.unmask;
    let query = store_logs::GetEvents {
        start_time: input.start_time,
        end_time: input.end_time,
        limit: input.limit,
        start_from_head: input.start_from_head.unwrap_or(false),
        next_token: input.next_token,
    };
    let stream = input.log_stream_name;
    let page = engine
        .store()
        .read(move |conn| {
            if store_logs::get_group(conn, &group)?.is_none() {
                return Err(StoreError::NotFound {
                    what: format!("log group {group}"),
                });
            }
            store_logs::get_events(conn, &group, &stream, &query)
        })
        .await
        .map_err(store_error)?;
    let events: Vec<Value> = page
        .events
        .into_iter()
        .map(|e| {
            json!({
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
            })
        })
        .collect();
    Ok(json!({
        "events": events,
        "nextForwardToken": page.next_forward_token,
        "nextBackwardToken": page.next_backward_token,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilterLogEventsInput {
    #[serde(default)]
    log_group_name: Option<String>,
    #[serde(default)]
    log_group_identifier: Option<String>,
    #[serde(default)]
    log_stream_names: Option<Vec<String>>,
    #[serde(default)]
    log_stream_name_prefix: Option<String>,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    end_time: Option<i64>,
    #[serde(default)]
    filter_pattern: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    interleaved: Option<bool>,
    #[serde(default)]
    unmask: Option<bool>,
}

async fn filter_log_events(
    engine: &Engine,
    input: FilterLogEventsInput,
) -> Result<Value, EngineError> {
    let group = group_param(engine, input.log_group_name, input.log_group_identifier)?;
    if input.log_stream_names.is_some() && input.log_stream_name_prefix.is_some() {
        return Err(invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    if input
        .log_stream_names
        .as_ref()
        .is_some_and(|n| n.is_empty() || n.len() > 100)
    {
        return Err(invalid("logStreamNames holds 1 to 100 names"));
    }
    let _ = (input.interleaved, input.unmask);
    let pattern =
        pattern::Pattern::parse(input.filter_pattern.as_deref().unwrap_or("")).map_err(invalid)?;
    let query = store_logs::FilterEvents {
        stream_names: input.log_stream_names,
        stream_prefix: input.log_stream_name_prefix,
        start_time: input.start_time,
        end_time: input.end_time,
        // The store narrows by the longest required term; the rest of the
        // pattern is applied here.
        pattern: pattern.narrowing_term().map(str::to_owned),
        limit: input.limit,
        next_token: input.next_token,
    };
    let (page, searched) = engine
        .store()
        .read(move |conn| {
            let page = store_logs::filter_events(conn, &group, &query)?;
            let mut names: Vec<String> = match &query.stream_names {
                Some(names) => names.clone(),
                None => {
                    let mut all = Vec::new();
                    let mut token = None;
                    loop {
                        let streams = store_logs::describe_streams(
                            conn,
                            &group,
                            &DescribeStreams {
                                prefix: query.stream_prefix.clone(),
                                next_token: token,
                                ..DescribeStreams::default()
                            },
                        )?;
                        all.extend(streams.items.into_iter().map(|s| s.name));
                        match streams.next_token {
                            Some(t) => token = Some(t),
                            None => break,
                        }
                    }
                    all
                }
            };
            names.sort();
            Ok::<_, StoreError>((page, names))
        })
        .await
        .map_err(store_error)?;
    let events: Vec<Value> = page
        .items
        .into_iter()
        .filter(|e| pattern.matches(&e.message))
        .map(|e| {
            json!({
                "logStreamName": e.stream_name,
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": e.event_id,
            })
        })
        .collect();
    let searched: Vec<Value> = searched
        .into_iter()
        .map(|name| json!({"logStreamName": name, "searchedCompletely": page.next_token.is_none()}))
        .collect();
    let mut out = json!({ "events": events, "searchedLogStreams": searched });
    if let Some(t) = page.next_token {
        out["nextToken"] = t.into();
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TagLogGroupInput {
    log_group_name: String,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UntagLogGroupInput {
    log_group_name: String,
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TagResourceInput {
    resource_arn: String,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UntagResourceInput {
    resource_arn: String,
    tag_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceOnly {
    resource_arn: String,
}

/// Adds and removes tags of a group in one transaction; returns its tags.
async fn retag(
    engine: &Engine,
    group: String,
    add: BTreeMap<String, String>,
    remove: Vec<String>,
) -> Result<BTreeMap<String, String>, EngineError> {
    check_group_name(&group)?;
    check_tags(&add)?;
    engine
        .store()
        .write(move |tx| {
            let tags = store_logs::retag_group(tx, &group, &add, &remove)?;
            if tags.len() > 50 {
                return Err(StoreError::InvalidArgument {
                    what: format!("log group {group}"),
                    reason: "a log group may carry at most 50 tags".to_owned(),
                });
            }
            Ok(tags)
        })
        .await
        .map_err(store_error)
}
