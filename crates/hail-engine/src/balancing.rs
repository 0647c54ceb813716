//! The engine's side of load balancing: target groups and listeners live in
//! the store; [`LoadBalancing`] makes the gateway ([`hail_gateway::Gateway`])
//! serve exactly them, hands it each service's task addresses (it is the
//! service controller's [`TargetRegistry`]), and answers the gateway's
//! activator: a request for a cold scale-from-zero target group starts its
//! service, and a group idle past its `idleSeconds` puts it back to zero.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hail_gateway::{
    Action as GwAction, ActivatorConfig, Condition, Gateway, GatewayConfig, HealthCheckConfig,
    ListenerConfig, RuleConfig, Target, TargetGroupConfig, TargetState,
};
use hail_model::ecs::ServiceStatus;
use hail_model::elb::{Action, Listener, TargetGroup};
use hail_store::{load_balancing, services};
use tokio::sync::mpsc;

use crate::services::TargetRegistry;
use crate::{Engine, EngineError};

/// How often idle scale-from-zero groups are looked for.
const IDLE_SWEEP: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct LoadBalancing {
    gateway: Gateway,
    /// The bound address of each listener, by ARN, after the last apply.
    bound: Arc<Mutex<Vec<(String, SocketAddr)>>>,
    /// When each scale-from-zero group last had requests (or was activated).
    last_busy: Arc<Mutex<HashMap<String, Instant>>>,
    /// Each group's deregistration delay, from the last apply.
    delays: Arc<Mutex<HashMap<String, Duration>>>,
}

impl std::fmt::Debug for LoadBalancing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancing").finish_non_exhaustive()
    }
}

/// The gateway's activator: forwards cold target groups to the engine.
pub struct Activations(mpsc::UnboundedSender<String>);

impl hail_gateway::Activator for Activations {
    fn activate(&self, target_group: &str) {
        let _ = self.0.send(target_group.to_owned());
    }
}

impl LoadBalancing {
    /// A gateway whose activations arrive on the returned receiver (give it
    /// to [`LoadBalancing::run_activations`]).
    pub fn new() -> Result<(Self, mpsc::UnboundedReceiver<String>), hail_gateway::GatewayError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let gateway = Gateway::new(hail_gateway::GatewayOptions {
            activator: Some(Arc::new(Activations(tx))),
            ..hail_gateway::GatewayOptions::default()
        })?;
        Ok((
            LoadBalancing {
                gateway,
                bound: Arc::new(Mutex::new(Vec::new())),
                last_busy: Arc::new(Mutex::new(HashMap::new())),
                delays: Arc::new(Mutex::new(HashMap::new())),
            },
            rx,
        ))
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Where each listener is bound, by ARN.
    pub fn bound(&self) -> Vec<(String, SocketAddr)> {
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes the gateway serve the store's target groups and listeners.
    pub async fn apply(&self, engine: &Engine) -> Result<(), EngineError> {
        let (groups, listeners) = engine
            .store()
            .read(|conn| {
                Ok::<_, hail_store::StoreError>((
                    load_balancing::list_target_groups(conn)?,
                    load_balancing::list_listeners(conn)?,
                ))
            })
            .await?;
        let config = gateway_config(&groups, &listeners);
        *self.delays.lock().unwrap_or_else(|p| p.into_inner()) = config
            .target_groups
            .iter()
            .map(|g| (g.id.clone(), g.deregistration_delay))
            .collect();
        let report = self
            .gateway
            .apply(config)
            .await
            .map_err(|e| EngineError::invalid("listener", e.to_string()))?;
        *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = report
            .listeners
            .into_iter()
            .map(|l| (l.id, l.local_addr))
            .collect();
        Ok(())
    }

    /// Starts services behind cold groups, as the gateway asks, and stops
    /// those whose scale-from-zero group has been idle long enough.
    pub async fn run_activations(self, engine: Engine, mut cold: mpsc::UnboundedReceiver<String>) {
        let mut sweep = tokio::time::interval(IDLE_SWEEP);
        loop {
            tokio::select! {
                group = cold.recv() => {
                    let Some(group) = group else { return };
                    self.last_busy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(group.clone(), Instant::now());
                    if let Err(e) = activate(&engine, &group).await {
                        tracing::warn!(target_group = %group, "activation: {e}");
                    }
                }
                _ = sweep.tick() => {
                    if let Err(e) = self.scale_idle_to_zero(&engine).await {
                        tracing::warn!("scale to zero: {e}");
                    }
                }
            }
        }
    }

    async fn scale_idle_to_zero(&self, engine: &Engine) -> Result<(), EngineError> {
        let groups = engine
            .store()
            .read(load_balancing::list_target_groups)
            .await?;
        let now = Instant::now();
        let recent = SystemTime::now() - IDLE_SWEEP * 2;
        for tg in groups {
            let Some(zero) = &tg.scale_from_zero else {
                continue;
            };
            let Ok(metrics) = self.gateway.metrics(&tg.target_group_arn) else {
                continue;
            };
            let busy = metrics.in_flight > 0
                || metrics
                    .seconds
                    .iter()
                    .any(|s| s.requests > 0 && s.at >= recent);
            let quiet_since = {
                let mut last = self.last_busy.lock().unwrap_or_else(|p| p.into_inner());
                let entry = last.entry(tg.target_group_arn.clone()).or_insert(now);
                if busy {
                    *entry = now;
                }
                *entry
            };
            if now.duration_since(quiet_since) >= Duration::from_secs(u64::from(zero.idle_seconds))
            {
                scale_to_zero(engine, &tg, zero.idle_seconds).await?;
            }
        }
        Ok(())
    }
}

impl TargetRegistry for LoadBalancing {
    fn set_targets(&self, target_group_arn: &str, targets: Vec<(String, SocketAddr)>) {
        let targets = targets
            .into_iter()
            .map(|(id, addr)| Target::new(id, addr))
            .collect();
        if let Err(e) = self.gateway.set_targets(target_group_arn, targets) {
            tracing::warn!(target_group = %target_group_arn, "set targets: {e}");
        }
    }

    fn deregistration_delay(&self, target_group_arn: &str) -> Duration {
        self.delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target_group_arn)
            .copied()
            .unwrap_or_default()
    }

    fn is_healthy(&self, target_group_arn: &str, task_id: &str) -> Option<bool> {
        let health = self.gateway.target_health(target_group_arn).ok()?;
        Some(
            health
                .iter()
                .any(|t| t.id == task_id && t.state == TargetState::Healthy),
        )
    }
}

/// A request reached a scale-from-zero group with no healthy target: every
/// ACTIVE service behind it at desired count 0 goes to 1.
async fn activate(engine: &Engine, target_group_arn: &str) -> Result<(), EngineError> {
    let tg = target_group_arn.to_owned();
    let now = engine.now();
    let woke = engine
        .store()
        .write(move |tx| {
            let mut woke = false;
            for stored in services::list_live(tx)? {
                let mut service = stored.service.clone();
                let behind = service
                    .load_balancers
                    .iter()
                    .any(|lb| lb.target_group_arn.as_deref() == Some(tg.as_str()));
                if !behind
                    || service.status != ServiceStatus::Active
                    || service.desired_count > 0
                    || service.paused_desired_count.is_some()
                {
                    continue;
                }
                service.desired_count = 1;
                if let Some(p) = service.primary_mut() {
                    p.desired_count = 1;
                    p.updated_at = now;
                }
                service.push_event(
                    hail_model::ids::new_event_id(),
                    now,
                    format!(
                        "(service {}) was scaled from zero to 1 by a request to (target-group {tg})",
                        service.service_name
                    ),
                );
                services::update(tx, stored.seq, stored.version, &service, now)?;
                woke = true;
            }
            Ok::<_, hail_store::StoreError>(woke)
        })
        .await?;
    if woke {
        engine.wake_services();
    }
    Ok(())
}

/// Services behind an idle scale-from-zero group go to desired count 0.
async fn scale_to_zero(engine: &Engine, tg: &TargetGroup, idle: u32) -> Result<(), EngineError> {
    let arn = tg.target_group_arn.clone();
    let now = engine.now();
    let changed = engine
        .store()
        .write(move |tx| {
            let mut changed = false;
            for stored in services::list_live(tx)? {
                let mut service = stored.service.clone();
                let behind = service
                    .load_balancers
                    .iter()
                    .any(|lb| lb.target_group_arn.as_deref() == Some(arn.as_str()));
                if !behind || service.status != ServiceStatus::Active || service.desired_count == 0
                {
                    continue;
                }
                service.desired_count = 0;
                if let Some(p) = service.primary_mut() {
                    p.desired_count = 0;
                    p.updated_at = now;
                }
                service.push_event(
                    hail_model::ids::new_event_id(),
                    now,
                    format!(
                        "(service {}) was scaled to zero after {idle} seconds without requests to \
                         (target-group {arn})",
                        service.service_name
                    ),
                );
                services::update(tx, stored.seq, stored.version, &service, now)?;
                changed = true;
            }
            Ok::<_, hail_store::StoreError>(changed)
        })
        .await?;
    if changed {
        engine.wake_services();
    }
    Ok(())
}

fn action(a: &Action) -> GwAction {
    match (&a.target_group_arn, &a.fixed_response_config) {
        (Some(tg), _) => GwAction::Forward {
            target_group: tg.clone(),
        },
        (None, Some(f)) => GwAction::FixedResponse {
            status: f.status_code.parse().unwrap_or(503),
            content_type: f.content_type.clone(),
            body: f.message_body.clone().unwrap_or_default(),
        },
        (None, None) => GwAction::FixedResponse {
            status: 503,
            content_type: None,
            body: String::new(),
        },
    }
}

/// The gateway configuration of the store's resources.
pub fn gateway_config(groups: &[TargetGroup], listeners: &[Listener]) -> GatewayConfig {
    GatewayConfig {
        target_groups: groups
            .iter()
            .map(|tg| TargetGroupConfig {
                id: tg.target_group_arn.clone(),
                health_check: HealthCheckConfig {
                    enabled: tg.health_check_enabled,
                    path: tg.health_check_path.clone(),
                    interval: Duration::from_secs(u64::from(tg.health_check_interval_seconds)),
                    timeout: Duration::from_secs(u64::from(tg.health_check_timeout_seconds)),
                    healthy_threshold: tg.healthy_threshold_count,
                    unhealthy_threshold: tg.unhealthy_threshold_count,
                    matcher: tg.matcher.http_code.clone(),
                },
                deregistration_delay: Duration::from_secs(u64::from(
                    tg.deregistration_delay_seconds,
                )),
                activator: tg.scale_from_zero.as_ref().map(|z| ActivatorConfig {
                    queue_limit: z.queue_limit as usize,
                    timeout: Duration::from_secs(u64::from(z.timeout_seconds)),
                }),
            })
            .collect(),
        listeners: listeners
            .iter()
            .map(|l| {
                let default_action =
                    l.default_actions
                        .first()
                        .map(action)
                        .unwrap_or(GwAction::FixedResponse {
                            status: 503,
                            content_type: None,
                            body: String::new(),
                        });
                let mut config =
                    ListenerConfig::new(l.listener_arn.clone(), l.port, default_action);
                if let Ok(ip) = l.address.parse() {
                    config.bind = ip;
                }
                config.idle_timeout = Duration::from_secs(u64::from(l.idle_timeout_seconds));
                config.rules =
                    l.rules
                        .iter()
                        .map(|r| RuleConfig {
                            priority: r.priority,
                            conditions: r
                                .conditions
                                .iter()
                                .map(|c| match c.field.as_str() {
                                    "host-header" => Condition::HostHeader(c.values.clone()),
                                    _ => Condition::PathPattern(c.values.clone()),
                                })
                                .collect(),
                            action: r.actions.first().map(action).unwrap_or(
                                GwAction::FixedResponse {
                                    status: 503,
                                    content_type: None,
                                    body: String::new(),
                                },
                            ),
                        })
                        .collect();
                config
            })
            .collect(),
    }
}
