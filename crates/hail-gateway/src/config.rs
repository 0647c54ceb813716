//! The desired configuration the engine hands to [`crate::Gateway::apply`]:
//! listeners with their rules, and target groups with their health checks.
//! Field names follow Elastic Load Balancing v2 where it has one; defaults are
//! ALB's, so a configuration built from an ELB-shaped document behaves the same.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::pattern::Pattern;

/// Everything the gateway should serve. [`crate::Gateway::apply`] makes the
/// running gateway equal to it: what is absent is removed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayConfig {
    pub listeners: Vec<ListenerConfig>,
    pub target_groups: Vec<TargetGroupConfig>,
}

/// One port the gateway accepts HTTP on (HTTP/1.1 and HTTP/2 cleartext).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListenerConfig {
    /// The listener's id or ARN; stable across applies.
    pub id: String,
    /// The address to bind; loopback unless asked otherwise.
    #[serde(default = "default_bind")]
    pub bind: IpAddr,
    /// The port to bind; 0 asks the system for a free one, reported back in
    /// the [`ApplyReport`](crate::ApplyReport).
    pub port: u16,
    /// Rules, evaluated in ascending priority; the first match decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What a request that matches no rule gets.
    pub default_action: Action,
    /// How long the gateway waits for a target's response headers before it
    /// answers 504 (ALB's idle timeout, 60 s by default).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
}

impl ListenerConfig {
    /// A listener on loopback with ALB's defaults and no rules.
    pub fn new(id: impl Into<String>, port: u16, default_action: Action) -> Self {
        Self {
            id: id.into(),
            bind: default_bind(),
            port,
            rules: Vec::new(),
            default_action,
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_bind() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A listener rule: when every condition matches, the action applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleConfig {
    /// Unique within the listener; lower is evaluated first.
    pub priority: u32,
    pub conditions: Vec<Condition>,
    pub action: Action,
}

/// A rule condition. Within one condition the values are alternatives (any
/// may match); the conditions of a rule must all match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// ALB path patterns: case-sensitive, matched against the path without
    /// the query string; `*` matches any run of characters, `?` exactly one.
    PathPattern(Vec<String>),
    /// ALB host-header patterns: case-insensitive, matched against the host
    /// without its port, with the same wildcards.
    HostHeader(Vec<String>),
}

/// What a listener does with a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Forward to a target group, by its id.
    Forward { target_group: String },
    /// Answer directly.
    FixedResponse {
        status: u16,
        content_type: Option<String>,
        body: String,
    },
}

/// A set of targets requests are balanced over, with its health check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupConfig {
    /// The target group's id or ARN.
    pub id: String,
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// How long a deregistered target keeps its in-flight requests before it
    /// is forgotten (ALB's `deregistration_delay.timeout_seconds`, 300 s).
    #[serde(default = "default_deregistration_delay")]
    pub deregistration_delay: Duration,
    /// Scale from zero: hold requests while no target is healthy and ask the
    /// [`Activator`](crate::Activator) for one.
    #[serde(default)]
    pub activator: Option<ActivatorConfig>,
}

impl TargetGroupConfig {
    /// A target group with ALB's defaults.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            health_check: HealthCheckConfig::default(),
            deregistration_delay: default_deregistration_delay(),
            activator: None,
        }
    }
}

fn default_deregistration_delay() -> Duration {
    Duration::from_secs(300)
}

/// An active HTTP health check, run against every registered target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckConfig {
    /// When false no check runs and every registered target is healthy at once.
    pub enabled: bool,
    /// The request path (HTTP GET).
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a target unhealthy.
    pub unhealthy_threshold: u32,
    /// Status codes that count as success: `200`, `200-399`, `200,302`.
    pub matcher: String,
}

impl Default for HealthCheckConfig {
    /// ALB's defaults for an HTTP target group.
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/".to_owned(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: "200".to_owned(),
        }
    }
}

/// How many requests may wait for a cold target group, and for how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivatorConfig {
    /// Requests held at once; the next one gets 503 at once.
    pub queue_limit: usize,
    /// How long a held request waits for a healthy target before 504.
    pub timeout: Duration,
}

/// A parsed health-check matcher: a set of status codes and ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Matcher {
    ranges: Vec<(u16, u16)>,
}

impl Matcher {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (parse_code(lo)?, parse_code(hi)?),
                None => {
                    let code = parse_code(part)?;
                    (code, code)
                }
            };
            if lo > hi {
                return Err(format!("range {part} is empty"));
            }
            ranges.push((lo, hi));
        }
        Ok(Self { ranges })
    }

    pub(crate) fn matches(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= status && status <= hi)
    }
}

fn parse_code(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(code) if (200..=499).contains(&code) => Ok(code),
        _ => Err(format!("{text:?} is not a status code from 200 to 499")),
    }
}

/// A listener's rules in evaluation order, ready for the request path.
#[derive(Debug)]
pub(crate) struct CompiledRules {
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) default_action: Action,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) paths: Vec<Pattern>,
    pub(crate) hosts: Vec<Pattern>,
    pub(crate) action: Action,
}

impl CompiledRules {
    /// The action for a request with this path and host (port already removed).
    pub(crate) fn route(&self, path: &str, host: Option<&str>) -> &Action {
        for rule in &self.rules {
            let path_ok = rule.paths.is_empty() || rule.paths.iter().any(|p| p.matches(path));
            let host_ok = rule.hosts.is_empty()
                || host.is_some_and(|h| rule.hosts.iter().any(|p| p.matches_ignore_case(h)));
            if path_ok && host_ok {
                return &rule.action;
            }
        }
        &self.default_action
    }
}

/// A configuration that passed validation: each listener's rules and each
/// target group's matcher, by id.
pub(crate) type Compiled = (HashMap<String, CompiledRules>, HashMap<String, Matcher>);

/// Checks a whole configuration before anything is changed, and compiles each
/// listener's rules and each target group's matcher.
pub(crate) fn validate(config: &GatewayConfig) -> Result<Compiled, GatewayError> {
    let invalid = |what: String, reason: String| GatewayError::InvalidConfig { what, reason };
    let mut matchers = HashMap::new();
    for tg in &config.target_groups {
        if tg.id.is_empty() {
            return Err(invalid("target group".into(), "id is empty".into()));
        }
        let hc = &tg.health_check;
        let what = || format!("target group {}", tg.id);
        let matcher = Matcher::parse(&hc.matcher)
            .map_err(|e| invalid(what(), format!("health check matcher: {e}")))?;
        if matchers.insert(tg.id.clone(), matcher).is_some() {
            return Err(invalid(what(), "declared twice".into()));
        }
        if hc.enabled {
            if !hc.path.starts_with('/') {
                return Err(invalid(
                    what(),
                    "health check path must start with /".into(),
                ));
            }
            if hc.interval.is_zero() || hc.timeout.is_zero() {
                return Err(invalid(
                    what(),
                    "health check interval and timeout must be positive".into(),
                ));
            }
            if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
                return Err(invalid(
                    what(),
                    "health check thresholds must be at least 1".into(),
                ));
            }
        }
        if let Some(activator) = &tg.activator {
            if activator.timeout.is_zero() {
                return Err(invalid(what(), "activator timeout must be positive".into()));
            }
        }
    }

    let mut rules_by_listener = HashMap::new();
    let mut ports = HashSet::new();
    let check_action = |listener: &str, action: &Action| match action {
        Action::Forward { target_group } if !matchers.contains_key(target_group) => {
            Err(GatewayError::UnknownTargetGroup {
                target_group: target_group.clone(),
                listener: Some(listener.to_owned()),
            })
        }
        Action::FixedResponse { status, .. } if !(200..=599).contains(status) => Err(invalid(
            format!("listener {listener}"),
            format!("fixed response status {status} is not from 200 to 599"),
        )),
        _ => Ok(()),
    };
    for listener in &config.listeners {
        let what = || format!("listener {}", listener.id);
        if listener.id.is_empty() {
            return Err(invalid("listener".into(), "id is empty".into()));
        }
        if listener.port != 0 && !ports.insert((listener.bind, listener.port)) {
            return Err(invalid(
                what(),
                format!("port {} is used by another listener", listener.port),
            ));
        }
        if listener.idle_timeout.is_zero() {
            return Err(invalid(what(), "idle timeout must be positive".into()));
        }
        check_action(&listener.id, &listener.default_action)?;
        let mut priorities = BTreeSet::new();
        let mut rules = Vec::new();
        for rule in &listener.rules {
            if !priorities.insert(rule.priority) {
                return Err(invalid(
                    what(),
                    format!("priority {} is used twice", rule.priority),
                ));
            }
            check_action(&listener.id, &rule.action)?;
            let mut compiled = CompiledRule {
                paths: Vec::new(),
                hosts: Vec::new(),
                action: rule.action.clone(),
            };
            for condition in &rule.conditions {
                match condition {
                    Condition::PathPattern(values) => compiled
                        .paths
                        .extend(values.iter().map(|v| Pattern::new(v))),
                    Condition::HostHeader(values) => compiled
                        .hosts
                        .extend(values.iter().map(|v| Pattern::new(&v.to_ascii_lowercase()))),
                }
            }
            rules.push((rule.priority, compiled));
        }
        rules.sort_by_key(|(priority, _)| *priority);
        let compiled = CompiledRules {
            rules: rules.into_iter().map(|(_, rule)| rule).collect(),
            default_action: listener.default_action.clone(),
        };
        if rules_by_listener
            .insert(listener.id.clone(), compiled)
            .is_some()
        {
            return Err(invalid(what(), "declared twice".into()));
        }
    }
    Ok((rules_by_listener, matchers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_accepts_alb_forms() {
        let m = Matcher::parse("200").unwrap();
        assert!(m.matches(200) && !m.matches(201));
        let m = Matcher::parse("200-399").unwrap();
        assert!(m.matches(200) && m.matches(302) && m.matches(399) && !m.matches(400));
        let m = Matcher::parse("200,302").unwrap();
        assert!(m.matches(200) && m.matches(302) && !m.matches(301));
        for bad in ["", "abc", "600", "399-200", "200-", "99"] {
            assert!(Matcher::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    fn forward(tg: &str) -> Action {
        Action::Forward {
            target_group: tg.into(),
        }
    }

    fn config_with_rules(rules: Vec<RuleConfig>) -> GatewayConfig {
        let mut listener = ListenerConfig::new("l1", 0, forward("default"));
        listener.rules = rules;
        GatewayConfig {
            listeners: vec![listener],
            target_groups: ["default", "api", "static", "admin"]
                .into_iter()
                .map(TargetGroupConfig::new)
                .collect(),
        }
    }

    #[test]
    fn rules_route_by_priority_path_and_host() {
        let config = config_with_rules(vec![
            RuleConfig {
                priority: 20,
                conditions: vec![Condition::PathPattern(vec!["/static/*".into()])],
                action: forward("static"),
            },
            RuleConfig {
                priority: 10,
                conditions: vec![
                    Condition::PathPattern(vec!["/api/*".into(), "/v?/*".into()]),
                    Condition::HostHeader(vec!["*.Example.com".into()]),
                ],
                action: forward("api"),
            },
            RuleConfig {
                priority: 5,
                conditions: vec![Condition::HostHeader(vec!["admin.example.com".into()])],
                action: forward("admin"),
            },
        ]);
        let (rules, _) = validate(&config).unwrap();
        let rules = &rules["l1"];
        let tg = |path, host| match rules.route(path, host) {
            Action::Forward { target_group } => target_group.clone(),
            Action::FixedResponse { .. } => unreachable!(),
        };
        assert_eq!(tg("/api/users", Some("www.example.com")), "api");
        assert_eq!(tg("/v1/users", Some("WWW.EXAMPLE.COM")), "api");
        assert_eq!(tg("/api/users", Some("example.org")), "default");
        assert_eq!(tg("/api/users", None), "default");
        assert_eq!(tg("/static/a.css", None), "static");
        assert_eq!(tg("/api/users", Some("admin.example.com")), "admin");
        assert_eq!(tg("/API/users", Some("www.example.com")), "default");
    }

    #[test]
    fn invalid_configurations_are_refused_whole() {
        let mut config = config_with_rules(vec![]);
        config.listeners[0].default_action = forward("missing");
        assert!(matches!(
            validate(&config),
            Err(GatewayError::UnknownTargetGroup { .. })
        ));

        let mut config = config_with_rules(vec![]);
        config.target_groups[0].health_check.matcher = "ok".into();
        assert!(matches!(
            validate(&config),
            Err(GatewayError::InvalidConfig { .. })
        ));

        let rule = RuleConfig {
            priority: 1,
            conditions: vec![],
            action: forward("api"),
        };
        let config = config_with_rules(vec![rule.clone(), rule]);
        assert!(matches!(
            validate(&config),
            Err(GatewayError::InvalidConfig { .. })
        ));

        let mut config = config_with_rules(vec![]);
        config.listeners[0].port = 8080;
        let mut second = config.listeners[0].clone();
        second.id = "l2".into();
        config.listeners.push(second);
        assert!(matches!(
            validate(&config),
            Err(GatewayError::InvalidConfig { .. })
        ));
    }
}
