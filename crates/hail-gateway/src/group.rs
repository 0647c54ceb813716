//! A target group at run time: its registered targets and their health,
//! target selection for the request path, draining, and the cold state of a
//! group that scales from zero.
//!
//! The request path reads an immutable snapshot of the members (an `Arc`
//! swapped under a lock held for a pointer copy) and each member's state from
//! an atomic; only control calls and health transitions take the registry
//! lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{Matcher, TargetGroupConfig};
use crate::health::{
    self, CheckClient, HealthChanged, HealthRecord, ReasonCode, Target, TargetHealth, TargetState,
};
use crate::metrics::{GroupMetrics, TargetGroupMetrics, TargetMetrics};

/// A target group's settings with its matcher compiled.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: TargetGroupConfig,
    pub(crate) matcher: Matcher,
}

/// One registration (target id + address) in a group.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    /// Mirror of `health.state` for the request path.
    state: AtomicU8,
    health: Mutex<HealthRecord>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Signalled when the last in-flight request of a draining member ends.
    idle: Notify,
}

impl Member {
    fn new(id: String, addr: SocketAddr, state: TargetState) -> Self {
        Self {
            id,
            addr,
            state: AtomicU8::new(state.to_u8()),
            health: Mutex::new(HealthRecord::new(state)),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle: Notify::new(),
        }
    }

    pub(crate) fn state(&self) -> TargetState {
        TargetState::from_u8(self.state.load(Ordering::SeqCst))
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HealthRecord> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request was sent to this member.
    pub(crate) fn acquire(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// Its response ended. SeqCst pairs with the drain task, which sets the
    /// state before it reads the count: one of the two sees the other.
    pub(crate) fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.state() == TargetState::Draining
        {
            self.idle.notify_one();
        }
    }
}

/// How soon a new target's failed health check is tried again (see
/// `TargetGroup::spawn_checks`).
const INITIAL_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Aborts a background task when the registration that owns it goes.
#[derive(Debug)]
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
struct Entry {
    member: Arc<Member>,
    /// The health-check loop of an active member, or the drain timer of a
    /// draining one.
    _task: Option<TaskGuard>,
}

/// Scale-from-zero bookkeeping.
#[derive(Debug, Default)]
struct Cold {
    /// Requests waiting now.
    waiting: usize,
    /// The activator was called in this cold period.
    activated: bool,
}

/// How a request may wait for a target.
pub(crate) enum Hold {
    /// The queue is full: answer 503 now.
    Full,
    /// Wait on the receiver; call the activator first if asked.
    Wait {
        healthy: watch::Receiver<usize>,
        call_activator: bool,
        ticket: HoldTicket,
    },
}

/// A held request's place in the queue; leaving frees it.
pub(crate) struct HoldTicket {
    group: Arc<TargetGroup>,
}

impl Drop for HoldTicket {
    fn drop(&mut self) {
        self.group.metrics.held.fetch_sub(1, Ordering::Relaxed);
        let mut cold = self.group.cold();
        cold.waiting -= 1;
        // Nobody waits: the next request starts a new cold period and calls
        // the activator again, so one activation that came to nothing (the
        // task failed to start) does not leave the group dark for good.
        if cold.waiting == 0 {
            cold.activated = false;
        }
    }
}

#[derive(Debug)]
pub(crate) struct TargetGroup {
    pub(crate) id: String,
    settings: RwLock<Arc<Settings>>,
    /// Every member, active and draining, in registration order.
    snapshot: RwLock<Arc<Vec<Arc<Member>>>>,
    registry: Mutex<HashMap<(String, SocketAddr), Entry>>,
    /// Round-robin cursor that breaks ties among equally loaded members.
    cursor: AtomicUsize,
    /// Healthy members now; held requests wait for it to leave zero.
    healthy: watch::Sender<usize>,
    cold: Mutex<Cold>,
    /// Whether any listener forwards here (otherwise targets report `unused`).
    pub(crate) in_use: AtomicBool,
    pub(crate) metrics: GroupMetrics,
    events: broadcast::Sender<HealthChanged>,
    check_client: CheckClient,
    this: Weak<TargetGroup>,
}

impl TargetGroup {
    pub(crate) fn new(
        settings: Settings,
        events: broadcast::Sender<HealthChanged>,
        check_client: CheckClient,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            id: settings.config.id.clone(),
            settings: RwLock::new(Arc::new(settings)),
            snapshot: RwLock::new(Arc::new(Vec::new())),
            registry: Mutex::new(HashMap::new()),
            cursor: AtomicUsize::new(0),
            healthy: watch::channel(0).0,
            cold: Mutex::new(Cold::default()),
            in_use: AtomicBool::new(false),
            metrics: GroupMetrics::new(),
            events,
            check_client,
            this: this.clone(),
        })
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<(String, SocketAddr), Entry>> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cold(&self) -> std::sync::MutexGuard<'_, Cold> {
        self.cold.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the settings. Health-check changes restart every active
    /// member's checks (switching checks off makes them healthy).
    pub(crate) fn update_settings(&self, settings: Settings) {
        let health_changed = self.settings().config.health_check != settings.config.health_check;
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
        if !health_changed {
            return;
        }
        let mut registry = self.registry();
        let enabled = self.settings().config.health_check.enabled;
        for entry in registry.values_mut() {
            if entry.member.state() == TargetState::Draining {
                continue;
            }
            if !enabled {
                self.transition(&entry.member, |h| Some(h.force(TargetState::Healthy)));
            }
            entry._task = self.spawn_checks(&entry.member);
        }
        drop(registry);
        self.recount();
    }

    /// Makes the registered set equal to `targets`: new ones start checks,
    /// missing ones drain, draining ones listed again come back.
    pub(crate) fn set_targets(&self, targets: Vec<Target>) {
        let settings = self.settings();
        let checks_enabled = settings.config.health_check.enabled;
        let mut registry = self.registry();
        let wanted: HashMap<(String, SocketAddr), Target> = targets
            .into_iter()
            .map(|t| ((t.id.clone(), t.addr), t))
            .collect();
        for (key, target) in &wanted {
            match registry.get_mut(key) {
                Some(entry) if entry.member.state() != TargetState::Draining => {}
                Some(entry) => {
                    // Registered again while draining: it is a target again
                    // and must pass a check again, as a new registration.
                    let start = start_state(target, checks_enabled);
                    self.transition(&entry.member, |h| Some(h.force(start)));
                    entry._task = self.spawn_checks(&entry.member);
                }
                None => {
                    let start = start_state(target, checks_enabled);
                    let member = Arc::new(Member::new(target.id.clone(), target.addr, start));
                    let task = self.spawn_checks(&member);
                    registry.insert(
                        key.clone(),
                        Entry {
                            member,
                            _task: task,
                        },
                    );
                }
            }
        }
        for (key, entry) in registry.iter_mut() {
            if wanted.contains_key(key) || entry.member.state() == TargetState::Draining {
                continue;
            }
            self.transition(&entry.member, |h| Some(h.force(TargetState::Draining)));
            entry._task =
                Some(self.spawn_drain(&entry.member, settings.config.deregistration_delay));
        }
        self.publish(&registry);
        drop(registry);
        self.recount();
    }

    /// Rebuilds the request path's snapshot, in a stable order.
    fn publish(&self, registry: &HashMap<(String, SocketAddr), Entry>) {
        let mut members: Vec<Arc<Member>> = registry.values().map(|e| e.member.clone()).collect();
        members.sort_by(|a, b| (&a.id, a.addr).cmp(&(&b.id, b.addr)));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(members);
    }

    /// Applies a change to a member's health record under its lock; if the
    /// state moved, mirrors it, announces it and recounts.
    fn transition(
        &self,
        member: &Member,
        change: impl FnOnce(&mut HealthRecord) -> Option<TargetState>,
    ) {
        let (from, to) = {
            let mut health = member.health();
            let Some(from) = change(&mut health) else {
                return;
            };
            member.state.store(health.state.to_u8(), Ordering::SeqCst);
            (from, health.state)
        };
        if from == to {
            return;
        }
        tracing::debug!(target_group = %self.id, target = %member.id, addr = %member.addr,
            from = from.as_str(), to = to.as_str(), "target health changed");
        // No receiver is fine: the engine may not watch.
        let _ = self.events.send(HealthChanged {
            target_group: self.id.clone(),
            target: member.id.clone(),
            addr: member.addr,
            from,
            to,
        });
        self.recount();
    }

    /// Publishes the number of healthy members; leaving zero ends a cold
    /// period.
    fn recount(&self) {
        let healthy = self
            .members()
            .iter()
            .filter(|m| m.state() == TargetState::Healthy)
            .count();
        if healthy > 0 {
            self.cold().activated = false;
        }
        self.healthy.send_if_modified(|n| {
            let changed = *n != healthy;
            *n = healthy;
            changed
        });
    }

    pub(crate) fn healthy_count(&self) -> usize {
        *self.healthy.borrow()
    }

    /// Starts the health-check loop of an active member, unless checks are
    /// off. The loop holds only a weak reference: a removed group stops it.
    fn spawn_checks(&self, member: &Arc<Member>) -> Option<TaskGuard> {
        if !self.settings().config.health_check.enabled {
            return None;
        }
        let group = self.this.clone();
        let member = Arc::downgrade(member);
        Some(TaskGuard(tokio::spawn(async move {
            loop {
                let (Some(group), Some(member)) = (group.upgrade(), member.upgrade()) else {
                    return;
                };
                let settings = group.settings();
                let hc = &settings.config.health_check;
                let began = tokio::time::Instant::now();
                let mut observation =
                    health::probe(&group.check_client, member.addr, hc, &settings.matcher).await;
                // A target still `initial` is most often a task that has just
                // started, whose server may not listen yet: a failed check is
                // tried again every INITIAL_RETRY within the interval, and
                // counts as one observation. A request held for a
                // scale-from-zero group then waits for the port to open, not
                // for the next interval; thresholds still count one
                // observation per interval.
                while member.state() == TargetState::Initial
                    && matches!(observation, health::Observation::Fail { .. })
                    && began.elapsed() + INITIAL_RETRY < hc.interval
                {
                    tokio::time::sleep(INITIAL_RETRY).await;
                    observation =
                        health::probe(&group.check_client, member.addr, hc, &settings.matcher)
                            .await;
                }
                if member.state() == TargetState::Draining {
                    return;
                }
                group.transition(&member, |h| h.on_check(observation, hc));
                let interval = hc.interval;
                drop((group, member, settings));
                tokio::time::sleep(interval).await;
            }
        })))
    }

    /// Forgets a draining member once it is idle or the delay is over,
    /// whichever comes first.
    fn spawn_drain(&self, member: &Arc<Member>, delay: std::time::Duration) -> TaskGuard {
        let group = self.this.clone();
        let weak_member = Arc::downgrade(member);
        let member = member.clone();
        TaskGuard(tokio::spawn(async move {
            let idle = async {
                while member.in_flight.load(Ordering::SeqCst) > 0 {
                    member.idle.notified().await;
                }
            };
            let _ = tokio::time::timeout(delay, idle).await;
            let key = (member.id.clone(), member.addr);
            drop(member);
            let Some(group) = group.upgrade() else { return };
            let mut registry = group.registry();
            let still_draining = registry.get(&key).is_some_and(|e| {
                Arc::as_ptr(&e.member) == weak_member.as_ptr()
                    && e.member.state() == TargetState::Draining
            });
            if !still_draining {
                return;
            }
            // Removing the entry drops this task's own guard: announce first,
            // and let the abort land on a task that has nothing left to do.
            if let Some(entry) = registry.get(&key) {
                let member = entry.member.clone();
                group.transition(&member, |h| Some(h.force(TargetState::Unused)));
            }
            let entry = registry.remove(&key);
            group.publish(&registry);
            drop(registry);
            drop(entry);
        }))
    }

    /// A proxied request failed to connect to, or was reset by, `member`.
    pub(crate) fn connection_error(&self, member: &Member, description: String) {
        self.metrics
            .connection_errors
            .fetch_add(1, Ordering::Relaxed);
        let settings = self.settings();
        self.transition(member, |h| {
            h.on_connection_error(description, &settings.config.health_check)
        });
    }

    /// Least outstanding requests among healthy members, ties broken round
    /// robin. With no healthy member the group fails open, as ALB does: every
    /// registered member that is not draining is a candidate, because
    /// sending traffic to targets that might work beats refusing all of it
    /// when the health checks themselves may be what is wrong.
    pub(crate) fn pick(&self, exclude: Option<&Member>) -> Option<Arc<Member>> {
        let members = self.members();
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let excluded = |m: &Member| exclude.is_some_and(|x| std::ptr::eq(x, m));
        let best = |accept: &dyn Fn(TargetState) -> bool| {
            let mut best: Option<(&Arc<Member>, usize)> = None;
            for i in 0..n {
                let m = &members[(start + i) % n];
                if !accept(m.state()) || excluded(m) {
                    continue;
                }
                let load = m.in_flight();
                if best.is_none_or(|(_, l)| load < l) {
                    best = Some((m, load));
                }
            }
            best.map(|(m, _)| m.clone())
        };
        best(&|s| s == TargetState::Healthy)
            .or_else(|| best(&|s| matches!(s, TargetState::Initial | TargetState::Unhealthy)))
    }

    /// Whether any registration could take a request (draining ones cannot).
    pub(crate) fn has_active_members(&self) -> bool {
        self.members().iter().any(|m| {
            matches!(
                m.state(),
                TargetState::Initial | TargetState::Healthy | TargetState::Unhealthy
            )
        })
    }

    /// Takes a place in the activation queue, if there is one left.
    pub(crate) fn hold(self: &Arc<Self>, queue_limit: usize) -> Hold {
        let mut cold = self.cold();
        if cold.waiting >= queue_limit {
            return Hold::Full;
        }
        cold.waiting += 1;
        let call_activator = !cold.activated;
        cold.activated = true;
        drop(cold);
        self.metrics.held.fetch_add(1, Ordering::Relaxed);
        Hold::Wait {
            healthy: self.healthy.subscribe(),
            call_activator,
            ticket: HoldTicket {
                group: self.clone(),
            },
        }
    }

    pub(crate) fn target_health(&self) -> Vec<TargetHealth> {
        let in_use = self.in_use.load(Ordering::Relaxed);
        self.members()
            .iter()
            .map(|m| {
                let h = m.health();
                // A group no listener forwards to reports its targets unused,
                // as ELB does; checks keep running so that attaching it to a
                // listener finds them already healthy.
                if !in_use && h.state != TargetState::Draining {
                    return TargetHealth {
                        id: m.id.clone(),
                        addr: m.addr,
                        state: TargetState::Unused,
                        reason: Some(ReasonCode::NotInUse),
                        description: Some(
                            "Target group is not configured to receive traffic from the load balancer"
                                .to_owned(),
                        ),
                    };
                }
                TargetHealth {
                    id: m.id.clone(),
                    addr: m.addr,
                    state: h.state,
                    reason: h.reason,
                    description: h.description.clone(),
                }
            })
            .collect()
    }

    pub(crate) fn metrics(&self) -> TargetGroupMetrics {
        let targets = self
            .members()
            .iter()
            .map(|m| TargetMetrics {
                id: m.id.clone(),
                addr: m.addr,
                requests: m.requests.load(Ordering::Relaxed),
                in_flight: m.in_flight() as u64,
            })
            .collect();
        self.metrics
            .snapshot(&self.id, self.healthy_count(), targets)
    }

    /// Stops every background task of the group (it was removed).
    pub(crate) fn close(&self) {
        self.registry().clear();
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Vec::new());
        self.recount();
    }
}

fn start_state(target: &Target, checks_enabled: bool) -> TargetState {
    if !checks_enabled {
        return TargetState::Healthy;
    }
    match target.initial_health {
        Some(state @ (TargetState::Healthy | TargetState::Unhealthy)) => state,
        _ => TargetState::Initial,
    }
}

/// Checks a target list before it replaces a group's registrations.
pub(crate) fn check_targets(targets: &[Target]) -> Result<(), String> {
    let mut ids = std::collections::HashSet::new();
    for t in targets {
        if t.id.is_empty() {
            return Err(format!("target at {} has an empty id", t.addr));
        }
        if !ids.insert(&t.id) {
            return Err(format!("target {} is listed twice", t.id));
        }
    }
    Ok(())
}
