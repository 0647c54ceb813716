//! The trigger controller: object events in, tasks out.
//!
//! A reconcile loop over three durable tables, each pass idempotent:
//! 1. **ingest** — every pending `s3-notifications` outbox event addressed
//!    to a trigger becomes an invocation (keyed by the event's id, so a
//!    redelivered event is recognised and dropped) in the same transaction
//!    that acknowledges the event: an event is never lost between the two,
//!    and never turned into two invocations;
//! 2. **observe** — a RUNNING invocation whose task stopped is SUCCEEDED
//!    when its containers exited 0, otherwise it failed: queued again with
//!    backoff, or DEAD once it used `maxAttempts` (the dead-letter list,
//!    re-drivable);
//! 3. **launch** — while a trigger runs fewer than `maxConcurrency` tasks,
//!    its oldest due invocations are launched with RunTask. The client token
//!    is the invocation id and attempt number, so a launch repeated after a
//!    crash (task committed, invocation not yet updated) returns the task
//!    the first one started instead of starting another.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hail_api::sign::Signer;
use hail_model::ecs::task::{RunTaskInput, StopCode};
use hail_model::ecs::{Task, TaskStatus, Timestamp};
use hail_model::triggers::{
    compact_timestamp, decode_event_key, render_template, retry_backoff_millis, stable_random,
    trigger_name_of, Invocation, InvocationStatus, Trigger,
};
use hail_store::{outbox, tasks, triggers, StoreError};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::{Engine, EngineError};

/// The outbox topic object stores write bucket notifications to.
pub const NOTIFICATION_TOPIC: &str = "s3-notifications";
/// Succeeded invocations are listed this long, then forgotten.
const SUCCEEDED_RETENTION_MILLIS: i64 = 24 * 3600 * 1000;
/// How often the outbox is looked at for new events.
const INGEST_POLL: Duration = Duration::from_millis(50);
/// Events taken from the outbox per pass.
const INGEST_BATCH: u32 = 256;

/// How triggers reach the tasks they start.
#[derive(Clone)]
pub struct TriggerConfig {
    /// The S3 endpoint tasks use (`http://169.254.170.2[:port]`), for `{{url}}`.
    pub task_endpoint: Option<String>,
    /// Signs `{{url}}` (the root keys; the URL reveals only a signature).
    pub signer: Option<Signer>,
    /// How often the loop runs without being woken.
    pub resync: Duration,
}

impl std::fmt::Debug for TriggerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerConfig")
            .field("task_endpoint", &self.task_endpoint)
            .field("resync", &self.resync)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct TriggerController {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: TriggerConfig,
    wake: Notify,
}

impl std::fmt::Debug for TriggerController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerController")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl TriggerController {
    pub fn new(engine: Engine, config: TriggerConfig) -> Self {
        TriggerController {
            inner: Arc::new(Inner {
                engine,
                config,
                wake: Notify::new(),
            }),
        }
    }

    /// Asks for a pass soon (an object was committed, a task stopped).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs passes until the process ends. New events are looked for every
    /// [`INGEST_POLL`] (a read of an index, cheap), and a whole pass made
    /// when some arrived, when woken, or every `resync`.
    pub async fn run(self) {
        let mut last_pass = tokio::time::Instant::now();
        let mut woken = true;
        loop {
            let arrived = match self.has_pending_events().await {
                Ok(arrived) => arrived,
                Err(e) => {
                    tracing::warn!("trigger ingest: {e}");
                    false
                }
            };
            if woken || arrived || last_pass.elapsed() >= self.inner.config.resync {
                if let Err(e) = self.pass().await {
                    tracing::warn!("trigger pass: {e}");
                }
                last_pass = tokio::time::Instant::now();
            }
            woken = tokio::select! {
                _ = self.inner.wake.notified() => true,
                _ = tokio::time::sleep(INGEST_POLL) => false,
            };
        }
    }

    async fn has_pending_events(&self) -> Result<bool, EngineError> {
        let pending = self
            .inner
            .engine
            .store()
            .read(|conn| outbox::pending(conn, NOTIFICATION_TOPIC, 1))
            .await?;
        Ok(!pending.is_empty())
    }

    /// One pass: ingest, observe, launch.
    pub async fn pass(&self) -> Result<(), EngineError> {
        self.ingest().await?;
        let all = self.inner.engine.store().read(triggers::list).await?;
        for trigger in all {
            self.observe(&trigger).await?;
            self.launch_due(&trigger).await?;
        }
        let before = self.now().as_millis() - SUCCEEDED_RETENTION_MILLIS;
        self.inner
            .engine
            .store()
            .write(move |tx| triggers::purge_succeeded(tx, before))
            .await?;
        Ok(())
    }

    fn now(&self) -> Timestamp {
        self.inner.engine.now()
    }

    async fn ingest(&self) -> Result<(), EngineError> {
        let now = self.now();
        loop {
            let events = self
                .inner
                .engine
                .store()
                .read(|conn| outbox::pending(conn, NOTIFICATION_TOPIC, INGEST_BATCH))
                .await?;
            if events.is_empty() {
                return Ok(());
            }
            let full = events.len() == INGEST_BATCH as usize;
            self.inner
                .engine
                .store()
                .write(move |tx| {
                    for event in &events {
                        match invocation_of(&event.payload, now) {
                            Some(inv) if triggers::get(tx, &inv.trigger_name)?.is_some() => {
                                triggers::insert_invocation(tx, &inv)?;
                            }
                            Some(inv) => tracing::warn!(
                                trigger = %inv.trigger_name,
                                "event {} is for a trigger that does not exist; dropped",
                                inv.invocation_id
                            ),
                            None => tracing::warn!(
                                "outbox event {} is not a bucket notification; dropped",
                                event.id
                            ),
                        }
                        outbox::ack(tx, event.id)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await?;
            if !full {
                return Ok(());
            }
        }
    }

    async fn observe(&self, trigger: &Trigger) -> Result<(), EngineError> {
        let name = trigger.trigger_name.clone();
        let running = self
            .inner
            .engine
            .store()
            .read(move |conn| {
                let running =
                    triggers::list_invocations(conn, &name, InvocationStatus::Running, u32::MAX)?;
                let mut with_tasks = Vec::with_capacity(running.len());
                for inv in running {
                    let task = match inv.task_arn.as_deref().map(task_id_of) {
                        Some(id) => tasks::get(conn, id)?.map(|s| s.task),
                        None => None,
                    };
                    with_tasks.push((inv, task));
                }
                Ok::<_, StoreError>(with_tasks)
            })
            .await?;
        let now = self.now();
        for (mut inv, task) in running {
            let outcome = match &task {
                None => Some(Err("the task is gone".to_owned())),
                Some(t) if t.last_status == TaskStatus::Stopped => Some(task_outcome(t)),
                Some(_) => None,
            };
            let Some(outcome) = outcome else { continue };
            match outcome {
                Ok(()) => {
                    inv.status = InvocationStatus::Succeeded;
                    inv.last_error = None;
                }
                Err(reason) => fail(&mut inv, trigger, reason, now),
            }
            inv.updated_at = now;
            let stored = inv.clone();
            self.inner
                .engine
                .store()
                .write(move |tx| triggers::update_invocation(tx, &stored))
                .await?;
        }
        Ok(())
    }

    async fn launch_due(&self, trigger: &Trigger) -> Result<(), EngineError> {
        let name = trigger.trigger_name.clone();
        let now = self.now();
        let max = trigger.max_concurrency;
        let due = self
            .inner
            .engine
            .store()
            .read(move |conn| {
                let running =
                    triggers::list_invocations(conn, &name, InvocationStatus::Running, max)?.len()
                        as u32;
                let free = max.saturating_sub(running);
                if free == 0 {
                    return Ok::<_, StoreError>(Vec::new());
                }
                triggers::due_invocations(conn, &name, now.as_millis(), free)
            })
            .await?;
        for mut inv in due {
            let attempt = inv.attempts + 1;
            let result = self.launch(trigger, &inv, attempt).await;
            let now = self.now();
            inv.attempts = attempt;
            inv.updated_at = now;
            match result {
                Ok(task_arn) => {
                    inv.status = InvocationStatus::Running;
                    inv.task_arn = Some(task_arn);
                }
                Err(reason) => fail(&mut inv, trigger, reason, now),
            }
            let stored = inv.clone();
            self.inner
                .engine
                .store()
                .write(move |tx| triggers::update_invocation(tx, &stored))
                .await?;
        }
        Ok(())
    }

    /// Starts the task of one attempt; the task ARN, or why it did not start.
    async fn launch(
        &self,
        trigger: &Trigger,
        inv: &Invocation,
        attempt: u32,
    ) -> Result<String, String> {
        let values = self.template_values(trigger, inv);
        let request = run_task_request(trigger, inv, attempt, &values)?;
        let input: RunTaskInput = hail_model::ecs::decode::decode_value(request)
            .map_err(|e| format!("the trigger's RunTask request is invalid: {e}"))?;
        let output = crate::ecs::tasks::run_task(&self.inner.engine, input)
            .await
            .map_err(|e| format!("RunTask: {e}"))?;
        if let Some(task) = output.tasks.into_iter().next() {
            return Ok(task.task_arn);
        }
        Err(match output.failures.first() {
            Some(f) => format!(
                "RunTask: {} {}",
                f.reason.as_deref().unwrap_or("failure"),
                f.detail.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_owned(),
            None => "RunTask started no task".to_owned(),
        })
    }

    fn template_values(
        &self,
        trigger: &Trigger,
        inv: &Invocation,
    ) -> BTreeMap<&'static str, String> {
        let record = inv
            .record
            .pointer("/Records/0")
            .cloned()
            .unwrap_or(Value::Null);
        let text = |ptr: &str| {
            record
                .pointer(ptr)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        let time = text("/eventTime");
        let mut values = BTreeMap::from([
            ("bucket", inv.bucket.clone()),
            ("key", inv.key.clone()),
            ("size", text("/s3/object/size")),
            ("etag", text("/s3/object/eTag")),
            ("timestamp", compact_timestamp(&time).unwrap_or_default()),
            ("time", time),
            ("eventName", inv.event_name.clone()),
            ("eventId", inv.invocation_id.clone()),
            ("random", stable_random(&inv.invocation_id)),
            ("event", inv.record.to_string()),
        ]);
        if let (Some(endpoint), Some(signer)) =
            (&self.inner.config.task_endpoint, &self.inner.config.signer)
        {
            match signer.presign_get(
                endpoint,
                &inv.bucket,
                &inv.key,
                trigger.url_expires_seconds,
                self.inner.engine.clock().now(),
            ) {
                Ok(url) => {
                    values.insert("url", url);
                }
                Err(e) => tracing::warn!(trigger = %trigger.trigger_name, "presign: {e}"),
            }
        }
        values
    }
}

/// The id segment of a task ARN.
fn task_id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Whether a stopped task did its work: it stopped because its essential
/// container exited, and every container that exited did so with 0.
fn task_outcome(task: &Task) -> Result<(), String> {
    let reason = || {
        task.stopped_reason
            .clone()
            .unwrap_or_else(|| "the task stopped".to_owned())
    };
    if task.stop_code != Some(StopCode::EssentialContainerExited) {
        return Err(reason());
    }
    match task
        .containers
        .iter()
        .find(|c| c.exit_code.is_some_and(|code| code != 0))
    {
        Some(c) => Err(format!(
            "container {} exited with code {}",
            c.name,
            c.exit_code.unwrap_or_default()
        )),
        None => Ok(()),
    }
}

/// Records a failed attempt: queued again after a backoff, or dead.
fn fail(inv: &mut Invocation, trigger: &Trigger, reason: String, now: Timestamp) {
    inv.last_error = Some(reason);
    if inv.attempts >= trigger.max_attempts {
        inv.status = InvocationStatus::Dead;
    } else {
        inv.status = InvocationStatus::Queued;
        inv.next_attempt_at =
            Timestamp::from_millis(now.as_millis() + retry_backoff_millis(inv.attempts));
    }
}

/// The invocation an outbox payload (`{"destination", "eventId", "record"}`)
/// asks for.
pub fn invocation_of(payload: &Value, now: Timestamp) -> Option<Invocation> {
    let destination = payload.get("destination")?.as_str()?;
    let trigger_name = trigger_name_of(destination)?.to_owned();
    let event_id = payload.get("eventId")?.as_str()?.to_owned();
    let record = payload.get("record")?.clone();
    let first = record.pointer("/Records/0")?;
    let bucket = first.pointer("/s3/bucket/name")?.as_str()?.to_owned();
    let key = decode_event_key(first.pointer("/s3/object/key")?.as_str()?)?;
    let event_name = first.get("eventName")?.as_str()?.to_owned();
    Some(Invocation {
        invocation_id: event_id,
        trigger_name,
        status: InvocationStatus::Queued,
        attempts: 0,
        redrives: 0,
        next_attempt_at: now,
        task_arn: None,
        last_error: None,
        bucket,
        key,
        event_name,
        record,
        created_at: now,
        updated_at: now,
    })
}

/// The RunTask request of one attempt, templates rendered.
pub fn run_task_request(
    trigger: &Trigger,
    inv: &Invocation,
    attempt: u32,
    values: &BTreeMap<&str, String>,
) -> Result<Value, String> {
    let render = |t: &str| render_template(t, values).map_err(|e| e.to_string());
    let mut container_overrides = Vec::new();
    for c in &trigger.overrides.container_overrides {
        let mut o = json!({"name": c.name});
        if let Some(command) = &c.command {
            let rendered: Result<Vec<String>, String> = command.iter().map(|a| render(a)).collect();
            o["command"] = json!(rendered?);
        }
        if !c.environment.is_empty() {
            let env: Result<Vec<Value>, String> = c
                .environment
                .iter()
                .map(|kv| Ok(json!({"name": kv.name, "value": render(&kv.value)?})))
                .collect();
            o["environment"] = Value::Array(env?);
        }
        container_overrides.push(o);
    }
    let mut overrides = json!({"containerOverrides": container_overrides});
    if let Some(role) = &trigger.overrides.task_role_arn {
        overrides["taskRoleArn"] = json!(role);
    }
    let mut request = json!({
        "cluster": trigger.cluster,
        "taskDefinition": trigger.task_definition,
        "count": 1,
        "launchType": "FARGATE",
        "startedBy": format!("hail-trigger/{}", trigger.trigger_name),
        "overrides": overrides,
        "clientToken": format!("{}.{}.{attempt}", inv.invocation_id, inv.redrives),
        "tags": [
            {"key": "hail:trigger", "value": trigger.trigger_name},
            {"key": "hail:invocation", "value": inv.invocation_id},
        ],
    });
    if let Some(network) = &trigger.network_configuration {
        request["networkConfiguration"] = network.clone();
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use hail_model::triggers::{ContainerOverrideTemplate, NameValue, TriggerOverrides};

    use super::*;

    fn payload() -> Value {
        json!({
            "destination": "arn:aws:hail:us-east-1:000000000000:trigger/thumbs",
            "eventId": "3f1c2a8e-0000-4000-8000-000000000001",
            "record": {"Records": [{
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventTime": "2026-11-28T23:15:02.123Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "media"},
                    "object": {"key": "video/my+clip.mp4", "size": 1234, "eTag": "abc"}
                }
            }]}
        })
    }

    fn trigger() -> Trigger {
        Trigger {
            trigger_name: "thumbs".into(),
            trigger_arn: "arn:aws:hail:us-east-1:000000000000:trigger/thumbs".into(),
            cluster: "default".into(),
            task_definition: "tom-thumb-task".into(),
            bucket: "media".into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: Some("video/".into()),
            suffix: None,
            overrides: TriggerOverrides {
                container_overrides: vec![ContainerOverrideTemplate {
                    name: "tom-thumb-container".into(),
                    command: None,
                    environment: vec![
                        NameValue {
                            name: "INPUT_VIDEO_FILE_URL".into(),
                            value: "{{url}}".into(),
                        },
                        NameValue {
                            name: "OUTPUT_THUMBS_FILE_NAME".into(),
                            value: "thumbnail_{{key|basename|stem}}_{{timestamp}}_{{random}}.png"
                                .into(),
                        },
                    ],
                }],
                task_role_arn: None,
            },
            network_configuration: None,
            max_concurrency: 2,
            max_attempts: 2,
            url_expires_seconds: 600,
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn events_become_invocations_and_requests() {
        let now = Timestamp::from_millis(10);
        let inv = invocation_of(&payload(), now).unwrap();
        assert_eq!(inv.trigger_name, "thumbs");
        assert_eq!(inv.key, "video/my clip.mp4");
        assert_eq!(inv.event_name, "ObjectCreated:Put");
        let values = BTreeMap::from([
            ("key", inv.key.clone()),
            ("timestamp", "20261128-231502".to_owned()),
            ("random", "000042".to_owned()),
            ("url", "http://u".to_owned()),
        ]);
        let request = run_task_request(&trigger(), &inv, 2, &values).unwrap();
        assert_eq!(
            request["clientToken"],
            "3f1c2a8e-0000-4000-8000-000000000001.0.2"
        );
        let env = &request["overrides"]["containerOverrides"][0]["environment"];
        assert_eq!(env[0]["value"], "http://u");
        assert_eq!(
            env[1]["value"],
            "thumbnail_my clip_20261128-231502_000042.png"
        );
        let _: RunTaskInput = hail_model::ecs::decode::decode_value(request).unwrap();
        assert!(invocation_of(&json!({"destination": "arn:aws:sqs:x"}), now).is_none());
    }

    #[test]
    fn failures_back_off_then_go_dead() {
        let t = trigger();
        let now = Timestamp::from_millis(1000);
        let mut inv = invocation_of(&payload(), now).unwrap();
        inv.attempts = 1;
        fail(&mut inv, &t, "boom".into(), now);
        assert_eq!(inv.status, InvocationStatus::Queued);
        assert_eq!(inv.next_attempt_at.as_millis(), 3000);
        inv.attempts = 2;
        fail(&mut inv, &t, "boom again".into(), now);
        assert_eq!(inv.status, InvocationStatus::Dead);
        assert_eq!(inv.last_error.as_deref(), Some("boom again"));
    }
}
