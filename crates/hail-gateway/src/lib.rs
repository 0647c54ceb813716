//! `hail-gateway`: the load balancer data path of Hail — listeners, rules,
//! target groups, health checks, retries, draining, the scale-from-zero
//! activator and request metrics. It behaves as an Application Load
//! Balancer does, on one machine.
//!
//! The engine drives it and it changes no desired state: the engine says
//! what to serve ([`Gateway::apply`]) and where ([`Gateway::set_targets`]),
//! and reads back health ([`Gateway::target_health`],
//! [`Gateway::subscribe`]) and load ([`Gateway::metrics`]). It depends on no
//! other Hail crate.
//!
//! ```no_run
//! # async fn example() -> Result<(), hail_gateway::GatewayError> {
//! use hail_gateway::*;
//! let gateway = Gateway::new(GatewayOptions::default())?;
//! let report = gateway
//!     .apply(GatewayConfig {
//!         listeners: vec![ListenerConfig::new(
//!             "web",
//!             8080,
//!             Action::Forward { target_group: "web-tg".into() },
//!         )],
//!         target_groups: vec![TargetGroupConfig::new("web-tg")],
//!     })
//!     .await?;
//! println!("listening on {}", report.listeners[0].local_addr);
//! gateway.set_targets("web-tg", vec![Target::new("task-1", "10.217.0.5:80".parse().unwrap())])?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour, where ALB leaves a choice
//!
//! - **Apply is all or nothing for sockets.** Every new port is bound before
//!   anything changes; if one cannot be bound, the ones just bound are
//!   closed and [`GatewayError::Bind`] names the listener and the port, with
//!   the running configuration untouched. The engine can leave that listener
//!   out and apply again. A listener keeps its socket across applies when
//!   its address and port stay the same (even under a new id), so changing
//!   rules never refuses a connection. A removed listener stops accepting
//!   before `apply` returns (its port is free again) and lets its in-flight
//!   requests finish.
//! - **Health.** A new target is checked at once and is healthy after its
//!   first passing check (ALB's rule for new registrations); after that,
//!   thresholds apply. Failing to connect to a healthy target while proxying
//!   counts as a failed check. See [`health`](crate::TargetState).
//! - **Fail open.** With no healthy target, requests go to every registered
//!   target that is not draining, least loaded first, as ALB does.
//! - **Retries.** A request whose target refused the connection, or reset it
//!   before any response byte, is sent once more to another target — if its
//!   body was empty or small enough to have been read first (64 KiB), and,
//!   unless the connection was refused, only for idempotent methods.
//! - **Draining.** A deregistered target gets no new requests; it is
//!   forgotten when its last in-flight request ends or after the target
//!   group's deregistration delay, whichever comes first. Requests still in
//!   flight then are not cut by the gateway.
//! - **Scale from zero.** A target group with an activator holds requests
//!   while it has no healthy target, calls [`Activator::activate`] once per
//!   cold period, and forwards the held requests as soon as one is healthy.
//!   It does not fail open: a cold group waits for health.
//!
//! The request path's phases are drawn in `proxy.rs`.

#![forbid(unsafe_code)]

mod config;
mod error;
mod group;
mod health;
mod listener;
mod metrics;
mod pattern;
mod proxy;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

pub use config::{
    Action, ActivatorConfig, Condition, GatewayConfig, HealthCheckConfig, ListenerConfig,
    RuleConfig, TargetGroupConfig,
};
pub use error::GatewayError;
pub use health::{HealthChanged, ReasonCode, Target, TargetHealth, TargetState};
pub use metrics::{
    LatencySummary, SecondSample, StatusClasses, TargetGroupMetrics, TargetMetrics, WINDOW_SECONDS,
};
pub use proxy::ProxyBody;

use group::{Settings, TargetGroup};
use listener::RunningListener;
use proxy::{ListenerContext, ListenerState};

/// Starts a target for a target group that has none healthy. Called on the
/// request path, so it must return at once (send on a channel, spawn a
/// task); it is called once per cold period, not once per request.
pub trait Activator: Send + Sync + 'static {
    fn activate(&self, target_group: &str);
}

/// How the gateway itself behaves; fixed for its lifetime.
#[derive(Clone)]
pub struct GatewayOptions {
    /// Asked for a target when a scale-from-zero group is cold.
    pub activator: Option<Arc<dyn Activator>>,
    /// How long an idle keep-alive connection to a target is kept. Below
    /// the 5 s many application servers use (Node.js, uvicorn), so the
    /// gateway closes first and rarely sends on a connection the target is
    /// closing.
    pub target_keepalive_idle: Duration,
    /// How long connecting to a target may take.
    pub connect_timeout: Duration,
    /// Capacity of the health-change broadcast; a slower receiver lags.
    pub event_capacity: usize,
    /// Threads of the data path; 0 means one per available core.
    pub workers: usize,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            activator: None,
            target_keepalive_idle: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(10),
            event_capacity: 1024,
            workers: 0,
        }
    }
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("activator", &self.activator.is_some())
            .field("target_keepalive_idle", &self.target_keepalive_idle)
            .field("connect_timeout", &self.connect_timeout)
            .field("event_capacity", &self.event_capacity)
            .field("workers", &self.workers)
            .finish()
    }
}

/// What an apply left running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyReport {
    /// Every configured listener with the address it is bound to (the real
    /// port when port 0 was asked for), in configuration order.
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerStatus {
    pub id: String,
    pub local_addr: SocketAddr,
}

/// State shared by the handle, the listeners and the request path.
pub(crate) struct Shared {
    pub(crate) groups: RwLock<HashMap<String, Arc<TargetGroup>>>,
    workers: Arc<[worker::Worker]>,
    pub(crate) activator: Option<Arc<dyn Activator>>,
    check_client: health::CheckClient,
    events: broadcast::Sender<HealthChanged>,
}

impl Shared {
    pub(crate) fn group(&self, id: &str) -> Option<Arc<TargetGroup>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// The load balancer. Cheap to clone; every clone drives the same gateway,
/// and dropping the last one stops it. Must be created and used inside a
/// Tokio runtime, which runs health checks and draining; requests are served
/// on the gateway's own worker threads.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    _threads: Arc<worker::WorkerThreads>,
    /// Serialises applies and owns the running listeners.
    listeners: Arc<tokio::sync::Mutex<Option<Vec<RunningListener>>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts the worker threads; no listener yet.
    pub fn new(options: GatewayOptions) -> Result<Self, GatewayError> {
        let count = match options.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (threads, workers) = worker::WorkerThreads::start(
            count,
            options.target_keepalive_idle,
            options.connect_timeout,
        )
        .map_err(GatewayError::Start)?;
        let shared = Shared {
            groups: RwLock::new(HashMap::new()),
            workers,
            activator: options.activator,
            check_client: health::check_client(),
            events: broadcast::channel(options.event_capacity.max(1)).0,
        };
        Ok(Self {
            shared: Arc::new(shared),
            _threads: Arc::new(threads),
            listeners: Arc::new(tokio::sync::Mutex::new(Some(Vec::new()))),
        })
    }

    /// Makes the gateway serve exactly `config`. Idempotent; see the crate
    /// documentation for what happens when a port cannot be bound.
    pub async fn apply(&self, config: GatewayConfig) -> Result<ApplyReport, GatewayError> {
        let (mut rules, matchers) = config::validate(&config)?;
        let mut guard = self.listeners.lock().await;
        let running = guard.as_mut().ok_or(GatewayError::ShutDown)?;

        // 1. Decide which running socket each listener keeps, and bind the
        //    new ones, before changing anything.
        let mut reuse: Vec<Option<usize>> = Vec::with_capacity(config.listeners.len());
        let mut taken = vec![false; running.len()];
        for wanted in &config.listeners {
            let found = running.iter().enumerate().position(|(i, r)| {
                !taken[i]
                    && r.local_addr.ip() == wanted.bind
                    && if wanted.port == 0 {
                        r.requested_port == 0 && r.ctx.state().id == wanted.id
                    } else {
                        r.local_addr.port() == wanted.port
                    }
            });
            if let Some(i) = found {
                taken[i] = true;
            }
            reuse.push(found);
        }
        let mut bound: Vec<Option<(Vec<std::net::TcpListener>, SocketAddr)>> =
            Vec::with_capacity(config.listeners.len());
        for (wanted, reused) in config.listeners.iter().zip(&reuse) {
            if reused.is_some() {
                bound.push(None);
                continue;
            }
            let addr = SocketAddr::new(wanted.bind, wanted.port);
            let bind_error = |source| GatewayError::Bind {
                listener: wanted.id.clone(),
                addr,
                source,
            };
            // Dropping `bound` on an error closes what was bound so far.
            let (sockets, local_addr) =
                bind_per_worker(addr, self.shared.workers.len()).map_err(bind_error)?;
            bound.push(Some((sockets, local_addr)));
        }

        // Everything fallible is done: what follows cannot fail halfway.
        let mut states = Vec::with_capacity(config.listeners.len());
        for wanted in &config.listeners {
            let Some(rules) = rules.remove(&wanted.id) else {
                return Err(GatewayError::InvalidConfig {
                    what: format!("listener {}", wanted.id),
                    reason: "declared twice".into(),
                });
            };
            states.push(Arc::new(ListenerState {
                id: wanted.id.clone(),
                rules,
                idle_timeout: wanted.idle_timeout,
            }));
        }
        let mut settings = Vec::with_capacity(config.target_groups.len());
        let mut matchers = matchers;
        for tg in &config.target_groups {
            let Some(matcher) = matchers.remove(&tg.id) else {
                return Err(GatewayError::InvalidConfig {
                    what: format!("target group {}", tg.id),
                    reason: "declared twice".into(),
                });
            };
            settings.push(Settings {
                config: tg.clone(),
                matcher,
            });
        }

        // 2. Target groups: create and update before any listener can route
        //    to them.
        let mut removed_groups = Vec::new();
        {
            let mut groups = self
                .shared
                .groups
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let mut next = HashMap::new();
            for settings in settings {
                let id = settings.config.id.clone();
                let group = match groups.remove(&id) {
                    Some(group) => {
                        group.update_settings(settings);
                        group
                    }
                    None => TargetGroup::new(
                        settings,
                        self.shared.events.clone(),
                        self.shared.check_client.clone(),
                    ),
                };
                next.insert(id, group);
            }
            removed_groups.extend(groups.drain().map(|(_, g)| g));
            *groups = next;
            let used: std::collections::HashSet<&str> = config
                .listeners
                .iter()
                .flat_map(|l| {
                    std::iter::once(&l.default_action).chain(l.rules.iter().map(|r| &r.action))
                })
                .filter_map(|a| match a {
                    Action::Forward { target_group } => Some(target_group.as_str()),
                    Action::FixedResponse { .. } => None,
                })
                .collect();
            for (id, group) in groups.iter() {
                group
                    .in_use
                    .store(used.contains(id.as_str()), Ordering::Relaxed);
            }
        }

        // 3. Listeners: swap the rules of kept sockets, start the new ones.
        let mut previous: Vec<Option<RunningListener>> =
            std::mem::take(running).into_iter().map(Some).collect();
        let mut next = Vec::with_capacity(config.listeners.len());
        let mut report = Vec::with_capacity(config.listeners.len());
        for (((wanted, reused), socket), state) in
            config.listeners.iter().zip(reuse).zip(bound).zip(states)
        {
            let listener = match (reused.and_then(|i| previous[i].take()), socket) {
                (Some(kept), _) => {
                    *kept.ctx.state.write().unwrap_or_else(|e| e.into_inner()) = state;
                    kept
                }
                (None, Some((sockets, local_addr))) => {
                    let ctx = Arc::new(ListenerContext {
                        port: local_addr.port(),
                        state: RwLock::new(state),
                        shared: self.shared.clone(),
                    });
                    RunningListener::spawn(
                        sockets,
                        &self.shared.workers,
                        local_addr,
                        wanted.port,
                        ctx,
                    )
                }
                // Step 1 bound a socket for every listener it kept none for.
                (None, None) => continue,
            };
            report.push(ListenerStatus {
                id: wanted.id.clone(),
                local_addr: listener.local_addr,
            });
            next.push(listener);
        }
        *running = next;

        // 4. Stop what is no longer wanted; in-flight requests finish on
        //    their own.
        for old in previous.into_iter().flatten() {
            tracing::info!(listener = %old.ctx.state().id, addr = %old.local_addr, "listener removed");
            drop(old.stop().await);
        }
        for group in removed_groups {
            group.close();
        }
        Ok(ApplyReport { listeners: report })
    }

    /// Makes the registered targets of `target_group` exactly `targets`.
    /// New ones start `initial` (or `initial_health`) and are checked at
    /// once; absent ones start draining.
    pub fn set_targets(
        &self,
        target_group: &str,
        targets: Vec<Target>,
    ) -> Result<(), GatewayError> {
        let group = self.group(target_group)?;
        group::check_targets(&targets).map_err(|reason| GatewayError::InvalidTargets {
            target_group: target_group.to_owned(),
            reason,
        })?;
        group.set_targets(targets);
        Ok(())
    }

    /// The health of every registered (and draining) target of a group.
    pub fn target_health(&self, target_group: &str) -> Result<Vec<TargetHealth>, GatewayError> {
        Ok(self.group(target_group)?.target_health())
    }

    /// Health changes of every target group, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthChanged> {
        self.shared.events.subscribe()
    }

    /// A snapshot of a target group's request metrics.
    pub fn metrics(&self, target_group: &str) -> Result<TargetGroupMetrics, GatewayError> {
        Ok(self.group(target_group)?.metrics())
    }

    fn group(&self, target_group: &str) -> Result<Arc<TargetGroup>, GatewayError> {
        self.shared
            .group(target_group)
            .ok_or_else(|| GatewayError::UnknownTargetGroup {
                target_group: target_group.to_owned(),
                listener: None,
            })
    }

    /// Stops every listener, waits up to `grace` for in-flight requests to
    /// finish, and stops health checks. Later calls fail with
    /// [`GatewayError::ShutDown`].
    pub async fn shutdown(&self, grace: Duration) {
        let Some(running) = self.listeners.lock().await.take() else {
            return;
        };
        let mut drained = Vec::new();
        for listener in running {
            drained.extend(listener.stop().await);
        }
        let all = async {
            for handle in drained {
                let _ = handle.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("gateway shut down with requests still in flight");
        }
        let groups: Vec<_> = self
            .shared
            .groups
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, g)| g)
            .collect();
        for group in groups {
            group.close();
        }
    }
}

/// Pending connections a listener socket holds before the kernel refuses
/// more (as nginx's default on Linux).
const LISTEN_BACKLOG: u32 = 511;

/// One listening socket per worker, all bound to `addr` with `SO_REUSEPORT`
/// (the first one picks the port when `addr` asks for any): the kernel
/// spreads new connections over the workers by their addresses' hash. With
/// one socket shared by every worker, whichever worker woke first accepted
/// a whole burst of connections, and one core then carried most of the
/// load while the other idled.
fn bind_per_worker(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    // A port another socket holds is refused as a plain bind refuses it —
    // even one that set SO_REUSEPORT itself, whose group the workers'
    // sockets could otherwise join and share connections with: a probe
    // without the option takes the port (or picks one, for port 0) and is
    // closed just before the workers' sockets bind it.
    let mut local_addr = std::net::TcpListener::bind(addr)?.local_addr()?;
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let socket = match local_addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(local_addr)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        local_addr = listener.local_addr()?;
        sockets.push(listener.into_std()?);
    }
    Ok((sockets, local_addr))
}
