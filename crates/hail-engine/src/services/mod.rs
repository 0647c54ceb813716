//! The service controller: keeps each service's desired count of tasks
//! running, replaces tasks that stop, rolls deployments, drains deleted
//! services, and writes what it did as ECS words it in the service's events.
//!
//! A reconcile loop, as every controller here: each pass reads every live
//! service and its unstopped tasks from the store, computes what to start
//! and stop from that alone ([`plan_pass`], pure), acts through RunTask and
//! StopTask, and records the counts. Nothing is trusted to have been seen:
//! a missed wake-up only delays the next pass by [`RESYNC`].
//!
//! Rolling deployments follow `deploymentConfiguration`: at most
//! `maximumPercent` of the desired count run at once (rounded down), and at
//! least `minimumHealthyPercent` (rounded up) stay healthy while old tasks
//! are replaced. A task is healthy once RUNNING, its container health checks
//! (if any) pass, and — behind a load balancer — its target passes the
//! target group's checks.

pub mod capacity;
pub mod registry;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hail_model::ecs::service::{DeploymentStatus, RolloutState};
use hail_model::ecs::task::HealthStatus;
use hail_model::ecs::{
    RunTaskInput, Service, ServiceStatus, StopCode, Task, TaskStatus, Timestamp,
};
use hail_store::services::{self, StoredService};
use hail_store::{tags, tasks, StoreError};
use tokio::sync::Notify;

pub use registry::TargetRegistry;

use crate::{Engine, EngineError};

/// How often every service is reconciled without being woken.
pub const RESYNC: Duration = Duration::from_secs(1);
/// First delay before relaunching after a task of a deployment failed;
/// doubled per consecutive failure up to [`MAX_LAUNCH_BACKOFF`].
const LAUNCH_BACKOFF: Duration = Duration::from_secs(2);
const MAX_LAUNCH_BACKOFF: Duration = Duration::from_secs(120);
/// Consecutive failures after which the service says it cannot start tasks.
const UNSTABLE_AFTER: u32 = 3;
/// How long a deleted service stays describable.
const INACTIVE_RETENTION_MILLIS: i64 = 60 * 60 * 1000;
/// Most tasks one RunTask call starts.
const RUN_BATCH: u32 = 10;

/// What a service remembers between passes (in memory: after a restart the
/// store alone decides, and at worst a failure goes uncounted).
#[derive(Debug, Default, Clone)]
struct Memory {
    /// Tasks seen unstopped, by id, with their deployment.
    seen: HashMap<String, String>,
    consecutive_failures: u32,
    next_launch_at: Option<Timestamp>,
    /// The targets last handed to the registry, per target group.
    targets: HashMap<String, Vec<(String, SocketAddr)>>,
    /// Tasks taken out of their target groups to be stopped once their
    /// connections drained, with when that is.
    draining: HashMap<String, Timestamp>,
}

#[derive(Clone)]
pub struct ServiceController {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    registry: Option<Arc<dyn TargetRegistry>>,
    wake: Notify,
    memory: Mutex<HashMap<String, Memory>>,
}

impl std::fmt::Debug for ServiceController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceController").finish_non_exhaustive()
    }
}

/// One task of a service as a pass sees it.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub id: String,
    pub deployment: String,
    /// Desired RUNNING (not being stopped).
    pub active: bool,
    pub running: bool,
    pub healthy: bool,
    /// Container health checks report UNHEALTHY.
    pub unhealthy: bool,
    pub created_at: Timestamp,
}

/// What one pass decides for one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassPlan {
    /// Tasks of the primary deployment to start.
    pub launch: u32,
    /// Tasks to stop, with the reason ECS gives.
    pub stop: Vec<(String, String)>,
}

/// Decides launches and stops for `service` given its tasks. Pure.
pub fn plan_pass(service: &Service, tasks: &[TaskView], may_launch: bool) -> PassPlan {
    let mut plan = PassPlan::default();
    let Some(primary) = service.primary() else {
        return plan;
    };
    let desired = if service.status == ServiceStatus::Active {
        service.desired_count
    } else {
        0
    };
    let config = &service.deployment_configuration;
    let max_total = (u64::from(desired) * u64::from(config.maximum_percent()) / 100) as u32;
    let min_healthy =
        (u64::from(desired) * u64::from(config.minimum_healthy_percent())).div_ceil(100) as u32;
    let scheduler_reason = format!("Scaling activity initiated by (deployment {})", primary.id);

    let active: Vec<&TaskView> = tasks.iter().filter(|t| t.active).collect();
    // Unhealthy tasks are replaced whatever the deployment.
    let mut stopping: HashSet<&str> = HashSet::new();
    for t in active.iter().filter(|t| t.unhealthy) {
        plan.stop.push((
            t.id.clone(),
            "Task failed container health checks".to_owned(),
        ));
        stopping.insert(&t.id);
    }
    let live = |t: &&&TaskView| !stopping.contains(t.id.as_str());
    let mut primary_tasks: Vec<&TaskView> = active
        .iter()
        .filter(live)
        .filter(|t| t.deployment == primary.id)
        .copied()
        .collect();
    let old_tasks: Vec<&TaskView> = active
        .iter()
        .filter(live)
        .filter(|t| t.deployment != primary.id)
        .copied()
        .collect();

    // Scale in the primary: tasks not yet serving first, then the newest.
    if primary_tasks.len() as u32 > desired {
        primary_tasks.sort_by_key(|t| (t.healthy, std::cmp::Reverse(t.created_at.as_millis())));
        let excess = primary_tasks.len() - desired as usize;
        for t in primary_tasks.drain(..excess) {
            plan.stop.push((t.id.clone(), scheduler_reason.clone()));
        }
    }

    // Replace old deployments' tasks: those not serving go at once; healthy
    // ones only while enough healthy tasks remain.
    let mut healthy_total = primary_tasks.iter().filter(|t| t.healthy).count() as u32
        + old_tasks.iter().filter(|t| t.healthy).count() as u32;
    let mut old_remaining = 0u32;
    let mut old_sorted = old_tasks.clone();
    old_sorted.sort_by_key(|t| (t.healthy, t.created_at.as_millis()));
    for t in old_sorted {
        if !t.healthy {
            plan.stop.push((t.id.clone(), scheduler_reason.clone()));
        } else if healthy_total > min_healthy {
            plan.stop.push((t.id.clone(), scheduler_reason.clone()));
            healthy_total -= 1;
        } else {
            old_remaining += 1;
        }
    }

    // Start the primary's missing tasks within the maximum.
    let primary_count = primary_tasks.len() as u32;
    let room = max_total.saturating_sub(primary_count + old_remaining);
    let missing = desired.saturating_sub(primary_count);
    if may_launch && primary.rollout_state != RolloutState::Failed {
        plan.launch = missing.min(room);
    }
    plan
}

impl ServiceController {
    pub fn new(engine: Engine, registry: Option<Arc<dyn TargetRegistry>>) -> Self {
        ServiceController {
            inner: Arc::new(Inner {
                engine,
                registry,
                wake: Notify::new(),
                memory: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Asks for a pass soon (a service changed).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs passes until the process ends.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!("service pass: {e}");
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    /// One pass over every live service.
    pub async fn pass(&self) -> Result<(), EngineError> {
        let engine = &self.inner.engine;
        let live = engine.store().read(services::list_live).await?;
        for stored in live {
            let arn = stored.service.service_arn.clone();
            match self.reconcile(stored).await {
                Ok(()) => {}
                // Changed by a request meanwhile: the next pass sees it.
                Err(EngineError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => tracing::warn!(service = %arn, "reconcile: {e}"),
            }
        }
        let cutoff = Timestamp::from_millis(engine.now().as_millis() - INACTIVE_RETENTION_MILLIS);
        engine
            .store()
            .write(move |tx| services::purge_inactive_before(tx, cutoff))
            .await?;
        Ok(())
    }

    async fn reconcile(&self, stored: StoredService) -> Result<(), EngineError> {
        let engine = &self.inner.engine;
        let now = engine.now();
        let mut service = stored.service.clone();
        let (cluster_arn, name) = (service.cluster_arn.clone(), service.service_name.clone());
        let task_list = engine
            .store()
            .read(move |conn| tasks::list_unfinished_of_service(conn, &cluster_arn, &name))
            .await?;
        let mut memory = self.memory_of(&service.service_arn);

        // Tasks that stopped since the last pass without the scheduler
        // asking count as failures of their deployment.
        let current: HashSet<String> = task_list
            .iter()
            .map(|t| tasks::task_id(&t.task).unwrap_or_default())
            .collect();
        let gone: Vec<(String, String)> = memory
            .seen
            .iter()
            .filter(|(id, _)| !current.contains(*id))
            .map(|(id, d)| (id.clone(), d.clone()))
            .collect();
        for (id, deployment) in gone {
            memory.seen.remove(&id);
            let stopped = engine.store().read({
                let id = id.clone();
                move |conn| tasks::get(conn, &id)
            });
            let failed = match stopped.await? {
                Some(s) => s.task.stop_code != Some(StopCode::ServiceSchedulerInitiated),
                None => false,
            };
            if failed {
                if let Some(d) = service.deployments.iter_mut().find(|d| d.id == deployment) {
                    d.failed_tasks += 1;
                    d.updated_at = now;
                }
                memory.consecutive_failures += 1;
                let backoff = LAUNCH_BACKOFF
                    .saturating_mul(1 << memory.consecutive_failures.saturating_sub(1).min(16))
                    .min(MAX_LAUNCH_BACKOFF);
                memory.next_launch_at = Some(Timestamp::from_millis(
                    now.as_millis() + backoff.as_millis() as i64,
                ));
                if memory.consecutive_failures == UNSTABLE_AFTER {
                    service.push_event(
                        hail_model::ids::new_event_id(),
                        now,
                        format!(
                            "(service {}) is unable to consistently start tasks successfully. \
                             For more information, see the Troubleshooting section of the \
                             Amazon ECS Developer Guide.",
                            service.service_name
                        ),
                    );
                }
            }
        }

        // A task counts as healthy only once it has stayed up for a resync
        // interval: passes also run on every task status change, and would
        // otherwise see a task that exits right after starting as healthy —
        // completing its deployment and resetting the failure count that
        // the launch backoff and the circuit breaker read.
        let views: Vec<TaskView> = task_list
            .iter()
            .map(|s| {
                let mut v = self.view(&service, &s.task);
                v.healthy &= s
                    .task
                    .started_at
                    .is_some_and(|t| now.as_millis() - t.as_millis() >= RESYNC.as_millis() as i64);
                v
            })
            .collect();
        for v in &views {
            memory.seen.insert(v.id.clone(), v.deployment.clone());
            if v.healthy {
                memory.consecutive_failures = 0;
            }
        }

        self.circuit_breaker(&mut service, now);

        let may_launch = memory.next_launch_at.is_none_or(|at| at <= now);
        let plan = plan_pass(&service, &views, may_launch);

        // Behind a load balancer a task leaves its target groups first and
        // is stopped once their deregistration delay has let its in-flight
        // requests finish, as ECS does.
        let mut to_stop = Vec::new();
        let mut began_draining = Vec::new();
        // A task the plan no longer stops goes back into its groups.
        memory
            .draining
            .retain(|id, _| plan.stop.iter().any(|(s, _)| s == id));
        for (id, reason) in &plan.stop {
            let registered = memory
                .targets
                .values()
                .any(|targets| targets.iter().any(|(t, _)| t == id));
            match (memory.draining.get(id), &self.inner.registry) {
                (Some(until), _) if *until > now => {}
                (None, Some(registry)) if registered => {
                    let delay = memory
                        .targets
                        .iter()
                        .filter(|(_, targets)| targets.iter().any(|(t, _)| t == id))
                        .map(|(tg, _)| registry.deregistration_delay(tg))
                        .max()
                        .unwrap_or_default();
                    memory.draining.insert(
                        id.clone(),
                        Timestamp::from_millis(now.as_millis() + delay.as_millis() as i64),
                    );
                    began_draining.push(id.clone());
                }
                _ => to_stop.push((id.clone(), reason.clone())),
            }
        }
        if !began_draining.is_empty() {
            service.push_event(
                hail_model::ids::new_event_id(),
                now,
                format!(
                    "(service {}) has begun draining connections on {} tasks.",
                    service.service_name,
                    began_draining.len()
                ),
            );
        }
        if !to_stop.is_empty() {
            let ids: Vec<String> = to_stop.iter().map(|(id, _)| id.clone()).collect();
            for (id, reason) in &to_stop {
                memory.draining.remove(id);
                stop_task(engine, id, reason).await?;
            }
            service.push_event(
                hail_model::ids::new_event_id(),
                now,
                format!(
                    "(service {}) has stopped {} running tasks: {}.",
                    service.service_name,
                    ids.len(),
                    task_list_words(&ids)
                ),
            );
        }
        if plan.launch > 0 {
            let started = self.launch(&mut service, plan.launch, now).await?;
            for id in &started {
                if let Some(primary) = service.primary() {
                    memory.seen.insert(id.clone(), primary.id.clone());
                }
            }
        }

        // Targets: the healthy-by-container tasks' addresses. The task list
        // was read before this pass stopped tasks: those must not go back
        // into their groups (a stopping task would be healthy again there).
        if let Some(registry) = &self.inner.registry {
            let stopped: HashSet<&str> = to_stop.iter().map(|(id, _)| id.as_str()).collect();
            self.sync_targets(
                registry.as_ref(),
                &mut service,
                &task_list,
                &stopped,
                &mut memory,
                now,
            );
        }

        self.record_counts(&mut service, &views, &plan, now);
        self.put_memory(&service.service_arn, memory);
        if service != stored.service {
            let (seq, version) = (stored.seq, stored.version);
            engine
                .store()
                .write(move |tx| services::update(tx, seq, version, &service, now))
                .await?;
        }
        Ok(())
    }

    fn memory_of(&self, arn: &str) -> Memory {
        self.inner
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(arn)
            .cloned()
            .unwrap_or_default()
    }

    fn put_memory(&self, arn: &str, memory: Memory) {
        self.inner
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(arn.to_owned(), memory);
    }

    fn view(&self, service: &Service, task: &Task) -> TaskView {
        let id = tasks::task_id(task).unwrap_or_default();
        let running = task.last_status == TaskStatus::Running;
        // None: no essential container has a health check, so running is
        // enough; UNKNOWN: checks have not passed yet.
        let container_healthy = matches!(task.health_status, None | Some(HealthStatus::Healthy));
        let target_healthy = match &self.inner.registry {
            Some(registry) => service.load_balancers.iter().all(|lb| {
                lb.target_group_arn
                    .as_deref()
                    .and_then(|tg| registry.is_healthy(tg, &id))
                    .unwrap_or(true)
            }),
            None => true,
        };
        let grace_over = service.health_check_grace_period_seconds.is_none_or(|g| {
            task.started_at.is_some_and(|s| {
                self.inner.engine.now().as_millis() - s.as_millis() >= i64::from(g) * 1000
            })
        });
        TaskView {
            deployment: task.started_by.clone().unwrap_or_default(),
            active: task.desired_status == TaskStatus::Running,
            running,
            healthy: running && container_healthy && target_healthy,
            unhealthy: running && task.health_status == Some(HealthStatus::Unhealthy) && grace_over,
            created_at: task.created_at.unwrap_or(Timestamp::from_millis(0)),
            id,
        }
    }

    /// ECS's deployment circuit breaker: a deployment whose tasks keep
    /// failing stops (and rolls back to the last completed one when asked).
    fn circuit_breaker(&self, service: &mut Service, now: Timestamp) {
        let Some(breaker) = service.deployment_configuration.circuit_breaker().cloned() else {
            return;
        };
        let threshold = (service.desired_count.div_ceil(2)).clamp(3, 200);
        let name = service.service_name.clone();
        let Some(primary) = service.primary_mut() else {
            return;
        };
        if primary.rollout_state != RolloutState::InProgress || primary.failed_tasks < threshold {
            return;
        }
        primary.rollout_state = RolloutState::Failed;
        primary.rollout_state_reason =
            "ECS deployment circuit breaker: tasks failed to start.".to_owned();
        primary.updated_at = now;
        let failed_id = primary.id.clone();
        service.push_event(
            hail_model::ids::new_event_id(),
            now,
            format!("(service {name}) (deployment {failed_id}) deployment failed: tasks failed to start."),
        );
        if !breaker.rollback {
            return;
        }
        let Some(target) = service
            .deployments
            .iter()
            .find(|d| {
                d.status == DeploymentStatus::Active && d.rollout_state == RolloutState::Completed
            })
            .cloned()
        else {
            return;
        };
        for d in &mut service.deployments {
            if d.id == failed_id {
                d.status = DeploymentStatus::Active;
            }
        }
        let id = hail_model::ids::new_deployment_id();
        let mut rollback = target.clone();
        rollback.id = id.clone();
        rollback.status = DeploymentStatus::Primary;
        rollback.desired_count = service.desired_count;
        rollback.failed_tasks = 0;
        rollback.pending_count = 0;
        rollback.running_count = 0;
        rollback.created_at = now;
        rollback.updated_at = now;
        rollback.rollout_state = RolloutState::InProgress;
        rollback.rollout_state_reason = format!(
            "ECS deployment detected failure. Rolling back to deployment {}.",
            target.id
        );
        service.task_definition = target.task_definition.clone();
        service.deployments.insert(0, rollback);
        service.push_event(
            hail_model::ids::new_event_id(),
            now,
            format!(
                "(service {name}) rolling back to deployment {} ({}).",
                target.id, target.task_definition
            ),
        );
    }

    /// Starts `count` tasks of the primary deployment; returns their ids.
    async fn launch(
        &self,
        service: &mut Service,
        count: u32,
        now: Timestamp,
    ) -> Result<Vec<String>, EngineError> {
        let engine = &self.inner.engine;
        let Some(primary) = service.primary().cloned() else {
            return Ok(Vec::new());
        };
        let service_tags =
            if service.propagate_tags == hail_model::ecs::task::PropagateTags::Service {
                let arn = service.service_arn.clone();
                engine
                    .store()
                    .read(move |conn| tags::list(conn, &arn))
                    .await?
            } else {
                Vec::new()
            };
        let mut started = Vec::new();
        let mut left = count;
        while left > 0 {
            let batch = left.min(RUN_BATCH);
            left -= batch;
            let input = RunTaskInput {
                cluster: Some(service.cluster_arn.clone()),
                task_definition: primary.task_definition.clone(),
                count: Some(batch),
                launch_type: primary.launch_type,
                capacity_provider_strategy: None,
                network_configuration: primary.network_configuration.clone(),
                overrides: None,
                started_by: Some(primary.id.clone()),
                group: Some(service.task_group()),
                tags: (!service_tags.is_empty()).then(|| service_tags.clone()),
                enable_ecs_managed_tags: None,
                enable_execute_command: Some(service.enable_execute_command),
                propagate_tags: (service.propagate_tags
                    == hail_model::ecs::task::PropagateTags::TaskDefinition)
                    .then_some(hail_model::ecs::task::PropagateTags::TaskDefinition),
                reference_id: None,
                platform_version: primary.platform_version.clone(),
                placement_constraints: None,
                placement_strategy: None,
                client_token: None,
            };
            match crate::ecs::tasks::run_task(engine, input).await {
                Ok(output) => {
                    let ids: Vec<String> = output
                        .tasks
                        .iter()
                        .filter_map(|t| tasks::task_id(t).ok())
                        .collect();
                    if !ids.is_empty() {
                        service.push_event(
                            hail_model::ids::new_event_id(),
                            now,
                            format!(
                                "(service {}) has started {} tasks: {}.",
                                service.service_name,
                                ids.len(),
                                task_list_words(&ids)
                            ),
                        );
                    }
                    for f in &output.failures {
                        service.push_event(
                            hail_model::ids::new_event_id(),
                            now,
                            format!(
                                "(service {}) was unable to place a task. Reason: {}.",
                                service.service_name,
                                f.reason.as_deref().unwrap_or("unknown")
                            ),
                        );
                    }
                    started.extend(ids);
                    if !output.failures.is_empty() {
                        break;
                    }
                }
                Err(e) => {
                    service.push_event(
                        hail_model::ids::new_event_id(),
                        now,
                        format!(
                            "(service {}) failed to launch a task with (error {e}).",
                            service.service_name
                        ),
                    );
                    break;
                }
            }
        }
        Ok(started)
    }

    /// Hands the load balancer the addresses of the service's tasks that are
    /// running and pass their container checks; says so in the events.
    fn sync_targets(
        &self,
        registry: &dyn TargetRegistry,
        service: &mut Service,
        task_list: &[hail_store::tasks::StoredTask],
        stopped: &HashSet<&str>,
        memory: &mut Memory,
        now: Timestamp,
    ) {
        for lb in service.load_balancers.clone() {
            let (Some(tg), Some(container), Some(port)) =
                (lb.target_group_arn, lb.container_name, lb.container_port)
            else {
                continue;
            };
            let mut targets: Vec<(String, SocketAddr)> = task_list
                .iter()
                .map(|s| &s.task)
                .filter(|t| {
                    t.desired_status == TaskStatus::Running
                        && t.last_status == TaskStatus::Running
                        && t.health_status != Some(HealthStatus::Unhealthy)
                        && t.containers.iter().any(|c| {
                            c.name == container
                                && matches!(c.health_status, None | Some(HealthStatus::Healthy))
                        })
                })
                .filter_map(|t| {
                    let ip = crate::metadata::task_address(t)?;
                    let id = tasks::task_id(t).ok()?;
                    (!memory.draining.contains_key(&id) && !stopped.contains(id.as_str()))
                        .then_some((id, SocketAddr::new(ip, port)))
                })
                .collect();
            targets.sort();
            let before = memory.targets.get(&tg).cloned().unwrap_or_default();
            if before == targets {
                continue;
            }
            let added = targets.iter().filter(|t| !before.contains(t)).count();
            let removed = before.iter().filter(|t| !targets.contains(t)).count();
            registry.set_targets(&tg, targets.clone());
            if added > 0 {
                service.push_event(
                    hail_model::ids::new_event_id(),
                    now,
                    format!(
                        "(service {}) registered {added} targets in (target-group {tg})",
                        service.service_name
                    ),
                );
            }
            if removed > 0 {
                service.push_event(
                    hail_model::ids::new_event_id(),
                    now,
                    format!(
                        "(service {}) deregistered {removed} targets in (target-group {tg})",
                        service.service_name
                    ),
                );
            }
            memory.targets.insert(tg, targets);
        }
    }

    /// Running and pending counts per deployment and for the service;
    /// finished deployments dropped; the steady state noted once reached;
    /// a drained deleted service made INACTIVE.
    fn record_counts(
        &self,
        service: &mut Service,
        views: &[TaskView],
        plan: &PassPlan,
        now: Timestamp,
    ) {
        let stopped: HashSet<&str> = plan.stop.iter().map(|(id, _)| id.as_str()).collect();
        let counted: Vec<&TaskView> = views
            .iter()
            .filter(|v| v.active && !stopped.contains(v.id.as_str()))
            .collect();
        let mut total_running = 0;
        let mut total_pending = 0;
        for d in &mut service.deployments {
            let mine = counted.iter().filter(|v| v.deployment == d.id);
            let running = mine.clone().filter(|v| v.running).count() as u32;
            let pending = mine.filter(|v| !v.running).count() as u32;
            if (d.running_count, d.pending_count) != (running, pending) {
                d.running_count = running;
                d.pending_count = pending;
                d.updated_at = now;
            }
            total_running += running;
            total_pending += pending;
        }
        service.running_count = total_running;
        service.pending_count = total_pending;
        if service.status == ServiceStatus::Draining {
            if views.iter().all(|v| !v.active) && views.is_empty() {
                service.status = ServiceStatus::Inactive;
                for d in &mut service.deployments {
                    d.status = DeploymentStatus::Inactive;
                }
            }
            return;
        }
        let primary_id = service.primary().map(|d| d.id.clone()).unwrap_or_default();
        let others_running = counted.iter().any(|v| v.deployment != primary_id);
        let healthy = counted
            .iter()
            .filter(|v| v.healthy && v.deployment == primary_id)
            .count() as u32;
        let steady = !others_running
            && plan.launch == 0
            && plan.stop.is_empty()
            && healthy == service.desired_count
            && total_running == service.desired_count
            && total_pending == 0;
        // Earlier deployments go once their tasks have; the last completed
        // one stays (as ACTIVE, with no tasks) until the primary completes,
        // as the circuit breaker's rollback target.
        let primary_done = steady
            || service
                .primary()
                .is_some_and(|p| p.rollout_state == RolloutState::Completed);
        service.deployments.retain(|d| {
            d.status == DeploymentStatus::Primary
                || counted.iter().any(|v| v.deployment == d.id)
                || (!primary_done && d.rollout_state == RolloutState::Completed)
        });
        let name = service.service_name.clone();
        if let Some(primary) = service.primary_mut() {
            if steady && primary.rollout_state == RolloutState::InProgress {
                primary.rollout_state = RolloutState::Completed;
                primary.rollout_state_reason = format!("ECS deployment {} completed.", primary.id);
                primary.updated_at = now;
            }
        }
        let steady_words = format!("(service {name}) has reached a steady state.");
        let already = service
            .events
            .first()
            .is_some_and(|e| e.message == steady_words);
        if steady && !already {
            service.push_event(hail_model::ids::new_event_id(), now, steady_words);
        }
    }
}

/// `(task a) (task b)`, as ECS lists tasks in events.
fn task_list_words(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("(task {id})"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stops a task on the scheduler's behalf (stop code ServiceSchedulerInitiated).
async fn stop_task(engine: &Engine, id: &str, reason: &str) -> Result<(), EngineError> {
    let now = engine.now();
    let (id_owned, reason) = (id.to_owned(), reason.to_owned());
    let task = engine
        .store()
        .write(move |tx| {
            let Some(stored) = tasks::get(tx, &id_owned)? else {
                return Ok(None);
            };
            let mut task = stored.task.clone();
            if task.desired_status == TaskStatus::Stopped {
                return Ok(None);
            }
            task.desired_status = TaskStatus::Stopped;
            task.stop_code = Some(StopCode::ServiceSchedulerInitiated);
            task.stopped_reason = Some(reason);
            if task.last_status >= TaskStatus::Running {
                task.stopping_at.get_or_insert(now);
            }
            Ok::<_, StoreError>(Some(
                tasks::update(tx, &id_owned, stored.version, &task)?.task,
            ))
        })
        .await?;
    if let (Some(task), Some(controller)) = (task, engine.tasks()) {
        controller.stop_requested(&task);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
