//! Target health: the states and reason codes of Elastic Load Balancing, the
//! state machine that active checks and passive observations drive, and the
//! HTTP probe itself.
//!
//! ```text
//!                 first passing check
//!   initial ───────────────────────────────► healthy
//!      │  unhealthy_threshold failures          │  ▲
//!      ▼                                        │  │ healthy_threshold passes
//!   unhealthy ◄─────────────────────────────────┘  │
//!      └──────────────────────────────────────────┘
//!   any of them ── deregistered ──► draining ── idle or delay over ──► unused (forgotten)
//! ```
//!
//! A newly registered target becomes healthy on its **first** passing check,
//! as on ALB ("after you register a target, it must pass one health check"),
//! and that check runs as soon as the target is registered rather than one
//! interval later: a task that is ready serves traffic within one round trip,
//! which keeps scale-out and scale-from-zero fast. A target that was healthy
//! and failed needs `healthy_threshold` consecutive passes to return.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde::{Deserialize, Serialize};

use crate::config::{HealthCheckConfig, Matcher};

/// A target's health state, as DescribeTargetHealth words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// Registered, not yet passed a health check; gets no traffic while any
    /// other target is healthy.
    Initial,
    Healthy,
    Unhealthy,
    /// Deregistered: no new requests; in-flight requests finish.
    Draining,
    /// Not registered, or its target group is not used by any listener.
    Unused,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
            Self::Unused => "unused",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Initial,
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            3 => Self::Draining,
            _ => Self::Unused,
        }
    }
}

/// Why a target is not healthy: Elastic Load Balancing's reason codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReasonCode {
    RegistrationInProgress,
    InitialHealthChecking,
    ResponseCodeMismatch,
    Timeout,
    FailedHealthChecks,
    DeregistrationInProgress,
    NotRegistered,
    NotInUse,
}

impl ReasonCode {
    /// The code as the ELB API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegistrationInProgress => "Elb.RegistrationInProgress",
            Self::InitialHealthChecking => "Elb.InitialHealthChecking",
            Self::ResponseCodeMismatch => "Target.ResponseCodeMismatch",
            Self::Timeout => "Target.Timeout",
            Self::FailedHealthChecks => "Target.FailedHealthChecks",
            Self::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Self::NotRegistered => "Target.NotRegistered",
            Self::NotInUse => "Target.NotInUse",
        }
    }
}

/// A target the engine registers: usually a task's address and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Stable id (the task id, say); with `addr` it names the registration.
    pub id: String,
    pub addr: SocketAddr,
    /// The state a *new* registration starts in instead of `initial` — for
    /// targets known healthy when the engine restarts. Only `Initial`,
    /// `Healthy` and `Unhealthy` are meaningful; others mean `Initial`.
    #[serde(default)]
    pub initial_health: Option<TargetState>,
}

impl Target {
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            id: id.into(),
            addr,
            initial_health: None,
        }
    }
}

/// One target's health, for DescribeTargetHealth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub id: String,
    pub addr: SocketAddr,
    pub state: TargetState,
    pub reason: Option<ReasonCode>,
    pub description: Option<String>,
}

/// A target changed state. Sent on the gateway's broadcast channel; a
/// receiver that lags should re-read [`crate::Gateway::target_health`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthChanged {
    pub target_group: String,
    pub target: String,
    pub addr: SocketAddr,
    pub from: TargetState,
    pub to: TargetState,
}

/// What one observation of a target found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Observation {
    Pass,
    Fail {
        reason: ReasonCode,
        description: String,
    },
}

/// The mutable half of a target's health; the state itself is mirrored in an
/// atomic so the request path never takes this lock.
#[derive(Debug)]
pub(crate) struct HealthRecord {
    pub(crate) state: TargetState,
    pub(crate) reason: Option<ReasonCode>,
    pub(crate) description: Option<String>,
    passes: u32,
    failures: u32,
}

impl HealthRecord {
    pub(crate) fn new(state: TargetState) -> Self {
        let (reason, description) = match state {
            TargetState::Initial => (
                Some(ReasonCode::RegistrationInProgress),
                Some("Target registration is in progress".to_owned()),
            ),
            TargetState::Unhealthy => (
                Some(ReasonCode::FailedHealthChecks),
                Some("Health checks failed".to_owned()),
            ),
            _ => (None, None),
        };
        Self {
            state,
            reason,
            description,
            passes: 0,
            failures: 0,
        }
    }

    /// Moves to `to` unconditionally (registration, draining, health checks
    /// switched off); counters restart.
    pub(crate) fn force(&mut self, to: TargetState) -> TargetState {
        let from = self.state;
        *self = Self::new(to);
        if to == TargetState::Draining {
            self.reason = Some(ReasonCode::DeregistrationInProgress);
            self.description = Some("Target deregistration is in progress".to_owned());
        }
        from
    }

    /// Applies one active check's result; returns the previous state if it
    /// changed. Draining and unused targets are not checked.
    pub(crate) fn on_check(
        &mut self,
        observation: Observation,
        settings: &HealthCheckConfig,
    ) -> Option<TargetState> {
        let from = self.state;
        match observation {
            Observation::Pass => {
                self.failures = 0;
                self.passes = self.passes.saturating_add(1);
                let healthy = match from {
                    TargetState::Initial => true,
                    TargetState::Unhealthy => self.passes >= settings.healthy_threshold,
                    _ => false,
                };
                if healthy {
                    self.state = TargetState::Healthy;
                    self.reason = None;
                    self.description = None;
                }
            }
            Observation::Fail {
                reason,
                description,
            } => {
                self.passes = 0;
                self.failures = self.failures.saturating_add(1);
                match from {
                    TargetState::Initial | TargetState::Healthy
                        if self.failures >= settings.unhealthy_threshold =>
                    {
                        self.state = TargetState::Unhealthy;
                        self.reason = Some(reason);
                        self.description = Some(description);
                    }
                    TargetState::Initial => {
                        self.reason = Some(ReasonCode::InitialHealthChecking);
                        self.description = Some("Initial health checks in progress".to_owned());
                    }
                    TargetState::Unhealthy => {
                        self.reason = Some(reason);
                        self.description = Some(description);
                    }
                    _ => {}
                }
            }
        }
        (self.state != from).then_some(from)
    }

    /// A proxied request could not connect to (or was reset by) the target.
    /// It counts as a failed check for a healthy target, so a target that
    /// died is taken out after `unhealthy_threshold` errors instead of after
    /// as many check intervals. It never makes a target healthy: only active
    /// checks do.
    pub(crate) fn on_connection_error(
        &mut self,
        description: String,
        settings: &HealthCheckConfig,
    ) -> Option<TargetState> {
        if self.state != TargetState::Healthy || !settings.enabled {
            return None;
        }
        self.on_check(
            Observation::Fail {
                reason: ReasonCode::FailedHealthChecks,
                description,
            },
            settings,
        )
    }
}

/// The client health checks use: no pooled connections, so each check opens
/// one as ALB does, and a target that stopped accepting fails at once.
pub(crate) type CheckClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn check_client() -> CheckClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// One HTTP GET of the health check path.
pub(crate) async fn probe(
    client: &CheckClient,
    addr: SocketAddr,
    settings: &HealthCheckConfig,
    matcher: &Matcher,
) -> Observation {
    let uri = format!("http://{addr}{}", settings.path);
    let request = match http::Request::get(uri)
        .header(http::header::USER_AGENT, "HailHealthChecker/1.0")
        .body(Empty::new())
    {
        Ok(request) => request,
        Err(e) => {
            return Observation::Fail {
                reason: ReasonCode::FailedHealthChecks,
                description: format!("health check request: {e}"),
            }
        }
    };
    match tokio::time::timeout(settings.timeout, client.request(request)).await {
        Err(_) => Observation::Fail {
            reason: ReasonCode::Timeout,
            description: "Request timed out".to_owned(),
        },
        Ok(Err(e)) => Observation::Fail {
            reason: ReasonCode::FailedHealthChecks,
            description: format!("Health checks failed: {}", error_chain(&e)),
        },
        Ok(Ok(response)) => {
            // The body is not read: the status decides, and dropping the
            // response closes the (unpooled) connection.
            let status = response.status().as_u16();
            if matcher.matches(status) {
                Observation::Pass
            } else {
                Observation::Fail {
                    reason: ReasonCode::ResponseCodeMismatch,
                    description: format!("Health checks failed with these codes: [{status}]"),
                }
            }
        }
    }
}

/// An error and its causes on one line ("client error (Connect): tcp
/// connect error: Connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(healthy: u32, unhealthy: u32) -> HealthCheckConfig {
        HealthCheckConfig {
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            ..HealthCheckConfig::default()
        }
    }

    fn fail() -> Observation {
        Observation::Fail {
            reason: ReasonCode::ResponseCodeMismatch,
            description: "Health checks failed with these codes: [500]".into(),
        }
    }

    #[test]
    fn first_pass_makes_a_new_target_healthy() {
        let s = settings(3, 2);
        let mut h = HealthRecord::new(TargetState::Initial);
        assert_eq!(h.reason, Some(ReasonCode::RegistrationInProgress));
        assert_eq!(
            h.on_check(Observation::Pass, &s),
            Some(TargetState::Initial)
        );
        assert_eq!(h.state, TargetState::Healthy);
        assert_eq!(h.reason, None);
    }

    #[test]
    fn thresholds_count_consecutive_results() {
        let s = settings(3, 2);
        let mut h = HealthRecord::new(TargetState::Initial);
        assert_eq!(h.on_check(fail(), &s), None);
        assert_eq!(h.state, TargetState::Initial);
        assert_eq!(h.reason, Some(ReasonCode::InitialHealthChecking));
        assert_eq!(h.on_check(fail(), &s), Some(TargetState::Initial));
        assert_eq!(h.state, TargetState::Unhealthy);
        assert_eq!(h.reason, Some(ReasonCode::ResponseCodeMismatch));
        // Two passes, a failure, then three passes: only the run counts.
        h.on_check(Observation::Pass, &s);
        h.on_check(Observation::Pass, &s);
        h.on_check(fail(), &s);
        assert_eq!(h.state, TargetState::Unhealthy);
        h.on_check(Observation::Pass, &s);
        h.on_check(Observation::Pass, &s);
        assert_eq!(h.state, TargetState::Unhealthy);
        assert_eq!(
            h.on_check(Observation::Pass, &s),
            Some(TargetState::Unhealthy)
        );
        assert_eq!(h.state, TargetState::Healthy);
        // Healthy → unhealthy takes unhealthy_threshold failures in a row.
        h.on_check(fail(), &s);
        h.on_check(Observation::Pass, &s);
        h.on_check(fail(), &s);
        assert_eq!(h.state, TargetState::Healthy);
        h.on_check(fail(), &s);
        assert_eq!(h.state, TargetState::Unhealthy);
    }

    #[test]
    fn connection_errors_only_take_healthy_targets_out() {
        let s = settings(2, 2);
        let mut h = HealthRecord::new(TargetState::Initial);
        assert_eq!(h.on_connection_error("refused".into(), &s), None);
        assert_eq!(h.state, TargetState::Initial);
        h.on_check(Observation::Pass, &s);
        assert_eq!(h.on_connection_error("refused".into(), &s), None);
        assert_eq!(
            h.on_connection_error("refused".into(), &s),
            Some(TargetState::Healthy)
        );
        assert_eq!(h.state, TargetState::Unhealthy);
        assert_eq!(h.reason, Some(ReasonCode::FailedHealthChecks));
    }

    #[test]
    fn draining_is_not_moved_by_checks() {
        let s = settings(1, 1);
        let mut h = HealthRecord::new(TargetState::Healthy);
        assert_eq!(h.force(TargetState::Draining), TargetState::Healthy);
        assert_eq!(h.reason, Some(ReasonCode::DeregistrationInProgress));
        assert_eq!(h.on_check(Observation::Pass, &s), None);
        assert_eq!(h.on_check(fail(), &s), None);
        assert_eq!(h.state, TargetState::Draining);
    }
}
