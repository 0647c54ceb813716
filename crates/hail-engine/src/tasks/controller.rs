//! The task controller: drives every task the store holds toward its desired
//! status through the data plane, and writes back what it observes.
//!
//! Each unfinished task has at most one *worker* (a tokio task) at a time.
//! A worker starts the task if the runtime does not know it yet, asks it to
//! stop when its desired status is STOPPED, waits on its shim until it
//! stops, and records every step in the store. Two paths create workers:
//! RunTask hands over the tasks it just committed (the fast path, no extra
//! store reads), and the reconcile loop finds every unfinished task without
//! a worker — after a restart, after a worker failed — every `resync`.
//! Nothing depends on a notification arriving: the loop always catches up.
//!
//! ```text
//! PROVISIONING ──start──► (PENDING while pulling) ──► RUNNING ──► STOPPING ──► STOPPED
//!       │                        │                                              ▲
//!       └──────── cannot plan / pull / start: TaskFailedToStart ────────────────┘
//! ```

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hail_api::Clock;
use hail_model::arn::{EcsArn, EcsResource};
use hail_model::ecs::task::max_runtime_from_tags;
use hail_model::ecs::{Task, TaskDefinition, TaskStatus, Timestamp};
use hail_runtime::image::registry::PullOptions;
use hail_runtime::runtime::{Runtime, RuntimeError};
use hail_store::{client_tokens, tags, task_definitions, tasks, Store, StoreError};
use tokio::sync::Notify;

use super::observe;
use super::plan::{self, LaunchPlan, TaskEnvironment};
use crate::identity::Identity;
use crate::logs::firelens::{FirelensRoute, FORWARD_PORT};
use crate::logs::{LogShipper, ShipSink, ShipSource};

/// How the controller behaves; the server fills it from its flags.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long STOPPED tasks stay describable before they and their files go.
    pub retention: Duration,
    /// How often every unfinished task is checked even without a notification.
    pub resync: Duration,
    pub environment: TaskEnvironment,
    pub pull: PullOptions,
    /// Memory (MiB) the host can promise to tasks; RunTask reports a
    /// `RESOURCE:MEMORY` failure for a task that would go beyond it.
    pub memory_capacity_mib: Option<u64>,
    /// Hands tasks with a `taskRoleArn` their credentials; without it such
    /// tasks get no credentials endpoint.
    pub identity: Option<Identity>,
}

impl ControllerConfig {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            // ECS keeps stopped tasks visible for at least an hour.
            retention: Duration::from_secs(3600),
            resync: Duration::from_secs(5),
            environment: TaskEnvironment {
                region: region.into(),
                metadata_endpoint: None,
                credentials_id: None,
            },
            pull: PullOptions::default(),
            memory_capacity_mib: None,
            identity: None,
        }
    }
}

/// How often a running task's container health is read from its shim.
const HEALTH_POLL: Duration = Duration::from_secs(1);

/// A task RunTask just committed, with what the worker needs to start it
/// without reading the store again.
#[derive(Debug, Clone)]
pub struct Launch {
    pub task: Task,
    pub definition: Arc<TaskDefinition>,
    pub max_runtime: Option<Duration>,
}

#[derive(Clone)]
pub struct TaskController {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    shipper: LogShipper,
    runtime: Arc<Runtime>,
    clock: Arc<dyn Clock>,
    config: ControllerConfig,
    /// Ids of the tasks that have a worker now.
    workers: Mutex<HashSet<String>>,
    wake: Notify,
    /// Notified whenever a task's last status changes (see
    /// [`TaskController::status_changes`]).
    status_changed: Arc<Notify>,
    /// Pulls run one at a time: two tasks of a new image must not fetch it twice.
    pulls: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TaskController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskController")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why a worker gave up for now; the reconcile loop retries.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("task {0} is gone from the store")]
    Gone(String),
}

impl TaskController {
    pub fn new(
        store: Store,
        runtime: Arc<Runtime>,
        clock: Arc<dyn Clock>,
        config: ControllerConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shipper: LogShipper::new(store.clone()),
                store,
                runtime,
                clock,
                config,
                workers: Mutex::new(HashSet::new()),
                wake: Notify::new(),
                status_changed: Arc::new(Notify::new()),
                pulls: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.inner.config
    }

    /// Notified (one stored permit) after a task's last status changes
    /// in the store. The service controller waits on it too, so that a
    /// task that just turned RUNNING joins its target groups at once
    /// rather than at the next resync a second later — the difference a
    /// request held for a scale-from-zero group waits.
    pub fn status_changes(&self) -> Arc<Notify> {
        self.inner.status_changed.clone()
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    /// Starts workers for tasks RunTask has just committed.
    pub fn launch(&self, launches: Vec<Launch>) {
        for launch in launches {
            let id = plan::task_id(&launch.task).to_owned();
            self.spawn_worker(id, Some(launch));
        }
    }

    /// StopTask committed a desired status of STOPPED. A task the controller
    /// has recorded as started is told to stop now; one still starting is
    /// stopped by its worker, which re-reads the desired status once the
    /// start is recorded.
    pub fn stop_requested(&self, task: &Task) {
        if task.last_status < TaskStatus::Running || task.last_status == TaskStatus::Stopped {
            self.inner.wake.notify_one();
            return;
        }
        let inner = self.inner.clone();
        let id = plan::task_id(task).to_owned();
        let reason = task.stopped_reason.clone().unwrap_or_default();
        tokio::spawn(async move {
            if let Err(e) = inner.runtime.stop(&id, &reason).await {
                tracing::warn!(task = %id, "stop: {e}");
            }
        });
    }

    /// Runs the reconcile loop until the process ends.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!("reconcile: {e}");
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.config.resync) => {}
            }
        }
    }

    /// One pass: a worker for every unfinished task without one, and the
    /// retention sweep of long-stopped tasks.
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let unfinished = self.inner.store.read(tasks::list_unfinished).await?;
        for stored in unfinished {
            let id = tasks::task_id(&stored.task)?;
            self.spawn_worker(id, None);
        }
        let cutoff = Timestamp::from_millis(
            self.now().as_millis() - self.inner.config.retention.as_millis() as i64,
        );
        let expired = self
            .inner
            .store
            .write(move |tx| {
                // A retry of a RunTask comes within seconds; an hour-old
                // token only keeps a table growing.
                client_tokens::delete_before(tx, cutoff.as_millis())?;
                tasks::delete_stopped_before(tx, cutoff)
            })
            .await?;
        self.revoke_stopped_credentials().await?;
        for id in expired {
            match self.inner.runtime.remove(&id).await {
                Ok(()) | Err(RuntimeError::TaskNotFound { .. }) => {}
                Err(e) => tracing::warn!(task = %id, "remove expired task: {e}"),
            }
            if let Err(e) = self.inner.shipper.forget(&id).await {
                tracing::warn!(task = %id, "forget log cursors: {e}");
            }
        }
        Ok(())
    }

    fn now(&self) -> Timestamp {
        now(&*self.inner.clock)
    }

    /// Revokes the credentials of tasks that stopped (or are gone).
    async fn revoke_stopped_credentials(&self) -> Result<(), StoreError> {
        let Some(identity) = &self.inner.config.identity else {
            return Ok(());
        };
        for arn in identity.holders() {
            let id = arn.rsplit('/').next().unwrap_or(&arn).to_owned();
            let stored = self
                .inner
                .store
                .read(move |conn| tasks::get(conn, &id))
                .await?;
            if stored.is_none_or(|s| s.task.last_status == TaskStatus::Stopped) {
                identity.revoke_task(&arn).await?;
            }
        }
        Ok(())
    }

    fn spawn_worker(&self, id: String, launch: Option<Launch>) {
        {
            let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
            if !workers.insert(id.clone()) {
                return;
            }
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _registration = Registration {
                inner: inner.clone(),
                id: id.clone(),
            };
            if let Err(e) = drive(&inner, &id, launch).await {
                tracing::warn!(task = %id, "task worker: {e}; retrying on the next pass");
            }
        });
    }
}

/// Removes a worker's id from the set when the worker ends, however it ends.
struct Registration {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

fn now(clock: &dyn Clock) -> Timestamp {
    Timestamp::from_system_time(clock.now()).unwrap_or(Timestamp::from_millis(0))
}

/// One task's worker: start it if needed, stop it if asked, wait for its
/// end, record everything.
async fn drive(inner: &Arc<Inner>, id: &str, launch: Option<Launch>) -> Result<(), WorkerError> {
    let began = std::time::Instant::now();
    let (task, definition, max_runtime) = match launch {
        Some(l) => (l.task, l.definition, l.max_runtime),
        None => load(inner, id).await?,
    };
    if task.last_status == TaskStatus::Stopped {
        return Ok(());
    }
    let known = match inner.runtime.status(id).await {
        Ok(status) => Some(status),
        Err(RuntimeError::TaskNotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    match known {
        Some(status) => {
            // Started before (by an earlier worker or an earlier process):
            // ship its output from where shipping stopped, record what the
            // runtime knows, then supervise.
            if let Ok(plan) = plan::plan(&task, &definition, &inner.config.environment, max_runtime)
            {
                // Only the log destinations are used here, which the
                // credentials endpoint does not change.
                follow_logs(inner, id, &plan.logs, task_address(&status));
            }
            if status.phase.is_final() {
                inner.shipper.drain(id).await;
            }
            record(inner, id, move |t, now| observe::apply(t, &status, now)).await?;
        }
        None if task.last_status >= TaskStatus::Running => {
            // Recorded as started, yet the runtime has no trace of it: its
            // files were lost. It cannot be running any more.
            record(inner, id, |t, now| {
                observe::failed_to_start(
                    t,
                    "Task files were lost; the task is no longer running".to_owned(),
                    now,
                )
            })
            .await?;
            return Ok(());
        }
        None => {
            tracing::debug!(task = %id, ms = began.elapsed().as_secs_f64() * 1e3, "starting");
            if !start(inner, id, &task, &definition, max_runtime).await? {
                return Ok(());
            }
        }
    }
    supervise(inner, id).await
}

/// Reads a task, its definition and its runtime bound from the store.
async fn load(
    inner: &Arc<Inner>,
    id: &str,
) -> Result<(Task, Arc<TaskDefinition>, Option<Duration>), WorkerError> {
    let id_owned = id.to_owned();
    let (task, def, task_tags) = inner
        .store
        .read(move |conn| {
            let stored = tasks::get(conn, &id_owned)?.ok_or_else(|| StoreError::NotFound {
                what: format!("task {id_owned}"),
            })?;
            let (family, revision) = match EcsArn::parse(&stored.task.task_definition_arn) {
                Ok(EcsArn {
                    resource:
                        EcsResource::TaskDefinition {
                            family,
                            revision: Some(revision),
                        },
                    ..
                }) => (family, revision),
                _ => {
                    return Err(StoreError::Corrupt {
                        what: format!("task {id_owned}"),
                        reason: format!(
                            "{} is not a task definition revision ARN",
                            stored.task.task_definition_arn
                        ),
                    })
                }
            };
            let def = task_definitions::get(conn, &family, revision)?.ok_or_else(|| {
                StoreError::NotFound {
                    what: format!("task definition {family}:{revision}"),
                }
            })?;
            let task_tags = tags::list(conn, &stored.task.task_arn)?;
            Ok::<_, StoreError>((stored.task, def, task_tags))
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => WorkerError::Gone(id.to_owned()),
            e => e.into(),
        })?;
    // RunTask validated the tag; a value that no longer parses means no bound.
    let max_runtime = max_runtime_from_tags(&task_tags, "tags")
        .ok()
        .flatten()
        .map(Duration::from_secs);
    Ok((task, Arc::new(def), max_runtime))
}

/// What the task's containers are told about where they run: the server's
/// environment plus, for a task with a role, its credentials endpoint. A
/// role that does not exist fails the task, as ECS fails a task whose role
/// it cannot assume.
fn task_environment(
    inner: &Arc<Inner>,
    task: &Task,
    definition: &TaskDefinition,
) -> Result<TaskEnvironment, String> {
    let mut env = inner.config.environment.clone();
    let (Some(identity), Some(role)) = (
        &inner.config.identity,
        crate::metadata::task_role_arn(task, Some(definition)),
    ) else {
        return Ok(env);
    };
    if identity.role(&role).is_none() {
        return Err(format!(
            "ResourceInitializationError: unable to assume the task role {role}: no such role"
        ));
    }
    env.credentials_id = Some(identity.credentials_id(plan::task_id(task)));
    Ok(env)
}

/// Starts the task. Returns false when it did not start (its failure is recorded).
async fn start(
    inner: &Arc<Inner>,
    id: &str,
    task: &Task,
    definition: &TaskDefinition,
    max_runtime: Option<Duration>,
) -> Result<bool, WorkerError> {
    if task.desired_status == TaskStatus::Stopped {
        record(inner, id, observe::stopped_before_start).await?;
        return Ok(false);
    }
    let environment = match task_environment(inner, task, definition) {
        Ok(env) => env,
        Err(reason) => {
            fail(inner, id, reason).await?;
            return Ok(false);
        }
    };
    let LaunchPlan { spec, logs } = match plan::plan(task, definition, &environment, max_runtime) {
        Ok(plan) => plan,
        Err(e) => {
            fail(inner, id, e.0).await?;
            return Ok(false);
        }
    };
    if let Err(reason) = ensure_images(inner, id, &spec).await? {
        fail(inner, id, reason).await?;
        return Ok(false);
    }
    for dest in &logs {
        let plan::LogSink::CloudWatch { create_group, .. } = &dest.sink else {
            continue;
        };
        if let Some(source) = ship_source(inner, id, dest, None) {
            if let Err(e) = inner.shipper.prepare(&source, *create_group).await {
                fail(inner, id, e.to_string()).await?;
                return Ok(false);
            }
        }
    }
    // CloudWatch streams follow at once; routed output once the task (and
    // so its router's address) exists.
    follow_logs(inner, id, &logs, None);
    let started = std::time::Instant::now();
    match inner.runtime.start_task(&spec).await {
        Ok(status) => {
            follow_logs(inner, id, &logs, task_address(&status));
            let start_ms = started.elapsed().as_secs_f64() * 1e3;
            record(inner, id, move |t, now| observe::apply(t, &status, now)).await?;
            tracing::debug!(
                task = %id,
                start_ms,
                recorded_ms = started.elapsed().as_secs_f64() * 1e3,
                "started"
            );
            Ok(true)
        }
        Err(e) => {
            let reason = match &e {
                RuntimeError::ImageNotFound { .. } => format!("CannotPullContainerError: {e}"),
                RuntimeError::Network(_) => format!("ResourceInitializationError: {e}"),
                _ => format!("CannotStartContainerError: {e}"),
            };
            fail(inner, id, reason).await?;
            Ok(false)
        }
    }
}

/// Pulls every image the task names that the image store lacks. The inner
/// `Err` is the task's stoppedReason when a pull fails.
async fn ensure_images(
    inner: &Arc<Inner>,
    id: &str,
    spec: &hail_runtime::spec::TaskSpec,
) -> Result<Result<(), String>, WorkerError> {
    let images = inner.runtime.images();
    let mut missing = Vec::new();
    for c in &spec.containers {
        match images.get(&c.image) {
            Ok(Some(_)) => {}
            Ok(None) => {
                if !missing.contains(&c.image) {
                    missing.push(c.image.clone());
                }
            }
            Err(e) => return Ok(Err(format!("CannotPullContainerError: {}: {e}", c.image))),
        }
    }
    if missing.is_empty() {
        return Ok(Ok(()));
    }
    record(inner, id, |t, now| {
        if t.last_status.can_become(TaskStatus::Pending) {
            t.last_status = TaskStatus::Pending;
        }
        t.pull_started_at.get_or_insert(now);
    })
    .await?;
    let _one_pull_at_a_time = inner.pulls.lock().await;
    for image in missing {
        // Another task may have pulled it while this one waited.
        if matches!(images.get(&image), Ok(Some(_))) {
            continue;
        }
        if let Err(e) = images
            .pull(
                &image,
                &inner.config.pull,
                &hail_runtime::progress::NoProgress,
            )
            .await
        {
            return Ok(Err(format!(
                "CannotPullContainerError: pull image manifest has been retried 1 time(s): \
                 failed to resolve ref {image}: {e}"
            )));
        }
    }
    record(inner, id, |t, now| {
        t.pull_stopped_at.get_or_insert(now);
    })
    .await?;
    Ok(Ok(()))
}

async fn fail(inner: &Arc<Inner>, id: &str, reason: String) -> Result<(), WorkerError> {
    tracing::info!(task = %id, "failed to start: {reason}");
    record(inner, id, move |t, now| {
        observe::failed_to_start(t, reason, now)
    })
    .await?;
    Ok(())
}

/// Stops the task if that is what is desired, waits for its end and
/// records it.
async fn supervise(inner: &Arc<Inner>, id: &str) -> Result<(), WorkerError> {
    let id_owned = id.to_owned();
    let current = inner
        .store
        .read(move |conn| tasks::get(conn, &id_owned))
        .await?
        .ok_or_else(|| WorkerError::Gone(id.to_owned()))?
        .task;
    if current.last_status == TaskStatus::Stopped {
        return Ok(());
    }
    if current.desired_status == TaskStatus::Stopped {
        let reason = current.stopped_reason.clone().unwrap_or_default();
        inner.runtime.stop(id, &reason).await?;
    }
    // Containers waiting on their dependencies keep the task PENDING; watch
    // for the moment every container has started, and record it.
    if current.last_status < TaskStatus::Running {
        loop {
            let status = inner.runtime.status(id).await?;
            if status.phase != hail_runtime::task::TaskPhase::Starting {
                record(inner, id, move |t, now| observe::apply(t, &status, now)).await?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Health changes while the task runs are recorded as they happen, so
    // DescribeTasks shows a container's healthStatus (and services can act
    // on it); the wait on the shim ends the watch.
    let wait = inner.runtime.wait(id);
    tokio::pin!(wait);
    let mut last_health = None;
    let status = loop {
        tokio::select! {
            status = &mut wait => break status?,
            _ = tokio::time::sleep(HEALTH_POLL) => {
                let Ok(now) = inner.runtime.status(id).await else { continue };
                let health: Vec<_> = now.containers.iter().map(|c| c.health).collect();
                if health.iter().all(Option::is_none) || last_health.as_ref() == Some(&health) {
                    continue;
                }
                last_health = Some(health);
                record(inner, id, move |t, at| observe::apply(t, &now, at)).await?;
            }
        }
    };
    // Everything the containers wrote is in CloudWatch Logs before the task
    // reads as STOPPED.
    inner.shipper.drain(id).await;
    record(inner, id, move |t, now| observe::apply(t, &status, now)).await?;
    Ok(())
}

/// Where `dest`'s output goes; `None` for routed output while the task's
/// address is unknown.
fn ship_source(
    inner: &Inner,
    id: &str,
    dest: &plan::LogDestination,
    task_address: Option<IpAddr>,
) -> Option<ShipSource> {
    let sink = match &dest.sink {
        plan::LogSink::CloudWatch { group, stream, .. } => ShipSink::CloudWatch {
            group: group.clone(),
            stream: stream.clone(),
        },
        plan::LogSink::Firelens { fields, .. } => ShipSink::Firelens(FirelensRoute {
            router: SocketAddr::new(task_address?, FORWARD_PORT),
            tag: FirelensRoute::tag_for(&dest.container, id),
            fields: fields.clone(),
        }),
    };
    Some(ShipSource {
        task_id: id.to_owned(),
        container: dest.container.clone(),
        path: inner.runtime.log_path(id, &dest.container),
        sink,
    })
}

/// Follows every destination it can (following one twice is a no-op).
fn follow_logs(
    inner: &Inner,
    id: &str,
    logs: &[plan::LogDestination],
    task_address: Option<IpAddr>,
) {
    for dest in logs {
        if let Some(source) = ship_source(inner, id, dest, task_address) {
            inner.shipper.follow(source);
        }
    }
}

/// The task's address on the host's task network, where its log router listens.
fn task_address(status: &hail_runtime::task::TaskStatus) -> Option<IpAddr> {
    status.network.as_ref().and_then(|n| n.ip).map(IpAddr::V4)
}

/// Applies `change` to the stored task in one write transaction (read and
/// update together, so a concurrent StopTask is never overwritten), bumping
/// its version only when something changed.
async fn record<F>(inner: &Arc<Inner>, id: &str, change: F) -> Result<Task, WorkerError>
where
    F: FnOnce(&mut Task, Timestamp) + Send + 'static,
{
    let id_owned = id.to_owned();
    let at = now(&*inner.clock);
    let (task, moved) = inner
        .store
        .write(move |tx| -> Result<(Task, bool), WorkerError> {
            let stored =
                tasks::get(tx, &id_owned)?.ok_or_else(|| WorkerError::Gone(id_owned.clone()))?;
            let mut task = stored.task.clone();
            change(&mut task, at);
            if task == stored.task {
                return Ok((task, false));
            }
            let moved = task.last_status != stored.task.last_status;
            Ok((
                tasks::update(tx, &id_owned, stored.version, &task)?.task,
                moved,
            ))
        })
        .await?;
    if moved {
        inner.status_changed.notify_one();
    }
    Ok(task)
}
