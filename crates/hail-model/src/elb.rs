//! Load balancing resources of Hail's native API: target groups and
//! listeners, named and shaped after Elastic Load Balancing v2 (ALB) so a
//! service's `loadBalancers: [{targetGroupArn, containerName, containerPort}]`
//! reads as on AWS.
//!
//! Defaults differ from ALB's where ALB's are made for a fleet rather than
//! one machine: health checks every 5 s (ALB: 30 s), healthy after 2 passes
//! (ALB: 5), draining for 30 s (ALB: 300 s), so a new task serves within
//! seconds. Each is settable to ALB's value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ecs::validate::{is_valid_name, ValidationError};
use crate::ecs::Timestamp;

pub const DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS: u32 = 5;
pub const DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS: u32 = 2;
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_DEREGISTRATION_DELAY_SECONDS: u32 = 30;
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: u32 = 60;
pub const DEFAULT_ACTIVATOR_QUEUE: u32 = 100;
pub const DEFAULT_ACTIVATOR_TIMEOUT_SECONDS: u32 = 30;
pub const DEFAULT_IDLE_SECONDS: u32 = 300;

/// A new target group's ARN, as ELB names them.
pub fn target_group_arn(scope: &crate::arn::Scope, name: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{}:{}:targetgroup/{name}/{}",
        scope.region,
        scope.account,
        &crate::ids::new_task_id()[..16]
    )
}

/// A new listener's ARN; Hail's one load balancer is called `hail`.
pub fn listener_arn(scope: &crate::arn::Scope) -> String {
    let id = crate::ids::new_task_id();
    format!(
        "arn:aws:elasticloadbalancing:{}:{}:listener/app/hail/{}/{}",
        scope.region,
        scope.account,
        &id[..16],
        &id[16..]
    )
}

/// Scale from zero (a Hail extension): requests arriving while the group
/// has no healthy target wait for one, up to `queueLimit` of them and
/// `timeoutSeconds` each, and the service behind the group is started; after
/// `idleSeconds` without requests the service goes back to zero tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleFromZero {
    #[serde(default = "default_queue")]
    pub queue_limit: u32,
    #[serde(default = "default_activator_timeout")]
    pub timeout_seconds: u32,
    #[serde(default = "default_idle")]
    pub idle_seconds: u32,
}

fn default_idle() -> u32 {
    DEFAULT_IDLE_SECONDS
}

fn default_queue() -> u32 {
    DEFAULT_ACTIVATOR_QUEUE
}

fn default_activator_timeout() -> u32 {
    DEFAULT_ACTIVATOR_TIMEOUT_SECONDS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Matcher {
    pub http_code: String,
}

/// The body of CreateTargetGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTargetGroupInput {
    pub name: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub target_type: Option<String>,
    #[serde(default)]
    pub health_check_enabled: Option<bool>,
    #[serde(default)]
    pub health_check_path: Option<String>,
    #[serde(default)]
    pub health_check_interval_seconds: Option<u32>,
    #[serde(default)]
    pub health_check_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub healthy_threshold_count: Option<u32>,
    #[serde(default)]
    pub unhealthy_threshold_count: Option<u32>,
    #[serde(default)]
    pub matcher: Option<Matcher>,
    #[serde(default)]
    pub deregistration_delay_seconds: Option<u32>,
    #[serde(default)]
    pub scale_from_zero: Option<ScaleFromZero>,
}

/// A target group as DescribeTargetGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    pub target_group_arn: String,
    pub target_group_name: String,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub target_type: String,
    pub health_check_enabled: bool,
    pub health_check_protocol: String,
    pub health_check_path: String,
    pub health_check_interval_seconds: u32,
    pub health_check_timeout_seconds: u32,
    pub healthy_threshold_count: u32,
    pub unhealthy_threshold_count: u32,
    pub matcher: Matcher,
    pub deregistration_delay_seconds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_from_zero: Option<ScaleFromZero>,
    pub created_at: Timestamp,
}

impl CreateTargetGroupInput {
    /// Checks the request and builds the target group it asks for.
    pub fn into_target_group(
        self,
        arn: String,
        now: Timestamp,
    ) -> Result<TargetGroup, ValidationError> {
        let bad = |field: &str, message: String| ValidationError::invalid_parameter(field, message);
        if self.name.len() > 32 || !is_valid_name(&self.name) || self.name.contains('_') {
            return Err(bad(
                "name",
                "a target group name is 1 to 32 letters, digits and hyphens".into(),
            ));
        }
        let protocol = self.protocol.unwrap_or_else(|| "HTTP".into());
        if protocol != "HTTP" {
            return Err(bad(
                "protocol",
                format!("protocol {protocol} is not supported; use HTTP"),
            ));
        }
        let target_type = self.target_type.unwrap_or_else(|| "ip".into());
        if target_type != "ip" {
            return Err(bad(
                "targetType",
                format!("target type {target_type} is not supported; tasks are ip targets"),
            ));
        }
        let path = self.health_check_path.unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.len() > 1024 {
            return Err(bad(
                "healthCheckPath",
                "the health check path starts with / and is at most 1024 characters".into(),
            ));
        }
        let interval = self
            .health_check_interval_seconds
            .unwrap_or(DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS);
        let timeout = self
            .health_check_timeout_seconds
            .unwrap_or(DEFAULT_HEALTH_CHECK_TIMEOUT_SECONDS);
        if !(2..=300).contains(&interval) {
            return Err(bad(
                "healthCheckIntervalSeconds",
                format!("{interval} is outside 2 to 300"),
            ));
        }
        if !(1..=120).contains(&timeout) || timeout >= interval {
            return Err(bad(
                "healthCheckTimeoutSeconds",
                format!("{timeout} must be 1 to 120 and less than the interval ({interval})"),
            ));
        }
        let healthy = self
            .healthy_threshold_count
            .unwrap_or(DEFAULT_HEALTHY_THRESHOLD);
        let unhealthy = self
            .unhealthy_threshold_count
            .unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD);
        for (field, v) in [
            ("healthyThresholdCount", healthy),
            ("unhealthyThresholdCount", unhealthy),
        ] {
            if !(1..=10).contains(&v) {
                return Err(bad(field, format!("{v} is outside 1 to 10")));
            }
        }
        let matcher = self.matcher.unwrap_or(Matcher {
            http_code: "200".into(),
        });
        check_matcher(&matcher.http_code).map_err(|m| bad("matcher.HttpCode", m))?;
        let delay = self
            .deregistration_delay_seconds
            .unwrap_or(DEFAULT_DEREGISTRATION_DELAY_SECONDS);
        if delay > 3600 {
            return Err(bad(
                "deregistrationDelaySeconds",
                format!("{delay} is outside 0 to 3600"),
            ));
        }
        if let Some(z) = &self.scale_from_zero {
            if !(1..=10_000).contains(&z.queue_limit)
                || !(1..=900).contains(&z.timeout_seconds)
                || !(10..=86_400).contains(&z.idle_seconds)
            {
                return Err(bad(
                    "scaleFromZero",
                    "queueLimit is 1 to 10000, timeoutSeconds 1 to 900, idleSeconds 10 to 86400"
                        .into(),
                ));
            }
        }
        Ok(TargetGroup {
            target_group_arn: arn,
            target_group_name: self.name,
            protocol,
            port: self.port,
            target_type,
            health_check_enabled: self.health_check_enabled.unwrap_or(true),
            health_check_protocol: "HTTP".into(),
            health_check_path: path,
            health_check_interval_seconds: interval,
            health_check_timeout_seconds: timeout,
            healthy_threshold_count: healthy,
            unhealthy_threshold_count: unhealthy,
            matcher,
            deregistration_delay_seconds: delay,
            scale_from_zero: self.scale_from_zero,
            created_at: now,
        })
    }
}

/// `200`, `200-399`, `200,302`: codes 200 to 599.
fn check_matcher(text: &str) -> Result<(), String> {
    for part in text.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) else {
            return Err(format!("{text:?} is not a list of codes and ranges"));
        };
        if !(200..=599).contains(&lo) || !(200..=599).contains(&hi) || lo > hi {
            return Err(format!("{text:?}: codes are 200 to 599, ranges low-high"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedResponseConfig {
    pub status_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_body: Option<String>,
}

/// A listener or rule action: forward to a target group or answer directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    #[serde(rename = "type")]
    pub action_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_response_config: Option<FixedResponseConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleCondition {
    /// `path-pattern` or `host-header`.
    pub field: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub priority: u32,
    pub conditions: Vec<RuleCondition>,
    pub actions: Vec<Action>,
}

/// The body of CreateListener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateListenerInput {
    pub port: u16,
    /// The address to bind: loopback unless asked.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    pub default_actions: Vec<Action>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub idle_timeout_seconds: Option<u32>,
}

/// A listener as DescribeListeners reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub listener_arn: String,
    pub port: u16,
    pub address: String,
    pub protocol: String,
    pub default_actions: Vec<Action>,
    pub rules: Vec<Rule>,
    pub idle_timeout_seconds: u32,
    pub created_at: Timestamp,
}

impl CreateListenerInput {
    /// Checks the request on its own (target groups are checked by the
    /// caller against the store) and builds the listener.
    pub fn into_listener(self, arn: String, now: Timestamp) -> Result<Listener, ValidationError> {
        let bad = |field: &str, message: String| ValidationError::invalid_parameter(field, message);
        if self.port == 0 {
            return Err(bad("port", "port must be 1 to 65535".into()));
        }
        let address = self.address.unwrap_or_else(|| "127.0.0.1".into());
        if address.parse::<std::net::IpAddr>().is_err() {
            return Err(bad("address", format!("{address:?} is not an IP address")));
        }
        let protocol = self.protocol.unwrap_or_else(|| "HTTP".into());
        if protocol != "HTTP" {
            return Err(bad(
                "protocol",
                format!("protocol {protocol} is not supported; use HTTP"),
            ));
        }
        check_actions("defaultActions", &self.default_actions)?;
        let mut priorities = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !(1..=50_000).contains(&rule.priority) || !priorities.insert(rule.priority) {
                return Err(bad(
                    &format!("rules[{i}].priority"),
                    format!("priority {} must be 1 to 50000 and unique", rule.priority),
                ));
            }
            if rule.conditions.is_empty() {
                return Err(bad(
                    &format!("rules[{i}].conditions"),
                    "a rule needs at least one condition".into(),
                ));
            }
            for (j, c) in rule.conditions.iter().enumerate() {
                if !matches!(c.field.as_str(), "path-pattern" | "host-header")
                    || c.values.is_empty()
                    || c.values.iter().any(|v| v.is_empty() || v.len() > 128)
                {
                    return Err(bad(
                        &format!("rules[{i}].conditions[{j}]"),
                        "a condition is path-pattern or host-header with 1 or more values of \
                         1 to 128 characters"
                            .into(),
                    ));
                }
            }
            check_actions(&format!("rules[{i}].actions"), &rule.actions)?;
        }
        let idle = self
            .idle_timeout_seconds
            .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECONDS);
        if !(1..=4000).contains(&idle) {
            return Err(bad(
                "idleTimeoutSeconds",
                format!("{idle} is outside 1 to 4000"),
            ));
        }
        Ok(Listener {
            listener_arn: arn,
            port: self.port,
            address,
            protocol,
            default_actions: self.default_actions,
            rules: self.rules,
            idle_timeout_seconds: idle,
            created_at: now,
        })
    }
}

impl Listener {
    /// Every target group the listener forwards to.
    pub fn target_groups(&self) -> impl Iterator<Item = &str> {
        self.default_actions
            .iter()
            .chain(self.rules.iter().flat_map(|r| &r.actions))
            .filter_map(|a| a.target_group_arn.as_deref())
    }
}

fn check_actions(field: &str, actions: &[Action]) -> Result<(), ValidationError> {
    let [action] = actions else {
        return Err(ValidationError::invalid_parameter(
            field,
            "exactly one action (forward or fixed-response) is supported",
        ));
    };
    let ok = match action.action_type.as_str() {
        "forward" => action.target_group_arn.is_some(),
        "fixed-response" => action.fixed_response_config.as_ref().is_some_and(|f| {
            f.status_code
                .parse::<u16>()
                .is_ok_and(|c| (200..=599).contains(&c))
        }),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ValidationError::invalid_parameter(
            field,
            "an action is {\"type\": \"forward\", \"targetGroupArn\": …} or {\"type\": \
             \"fixed-response\", \"fixedResponseConfig\": {\"statusCode\": \"200\"-\"599\", …}}",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_groups_take_hail_defaults_and_refuse_bad_values() {
        let tg = CreateTargetGroupInput {
            name: "bean-counter-tg".into(),
            ..Default::default()
        }
        .into_target_group("arn".into(), Timestamp::from_millis(0))
        .unwrap();
        assert_eq!(tg.health_check_interval_seconds, 5);
        assert_eq!(tg.healthy_threshold_count, 2);
        assert_eq!(tg.matcher.http_code, "200");
        let bad = |input: CreateTargetGroupInput| {
            input
                .into_target_group("arn".into(), Timestamp::from_millis(0))
                .unwrap_err()
                .field
        };
        let base = || CreateTargetGroupInput {
            name: "tg".into(),
            ..Default::default()
        };
        assert_eq!(
            bad(CreateTargetGroupInput {
                name: "a_b".into(),
                ..base()
            }),
            "name"
        );
        assert_eq!(
            bad(CreateTargetGroupInput {
                matcher: Some(Matcher {
                    http_code: "100".into()
                }),
                ..base()
            }),
            "matcher.HttpCode"
        );
        assert_eq!(
            bad(CreateTargetGroupInput {
                health_check_timeout_seconds: Some(9),
                ..base()
            }),
            "healthCheckTimeoutSeconds"
        );
        assert_eq!(
            bad(CreateTargetGroupInput {
                protocol: Some("TCP".into()),
                ..base()
            }),
            "protocol"
        );
    }

    #[test]
    fn listeners_check_rules_and_actions() {
        let forward = Action {
            action_type: "forward".into(),
            target_group_arn: Some("tg".into()),
            fixed_response_config: None,
        };
        let ok = CreateListenerInput {
            port: 8080,
            default_actions: vec![forward.clone()],
            rules: vec![Rule {
                priority: 1,
                conditions: vec![RuleCondition {
                    field: "path-pattern".into(),
                    values: vec!["/api/*".into()],
                }],
                actions: vec![forward.clone()],
            }],
            ..Default::default()
        }
        .into_listener("arn".into(), Timestamp::from_millis(0))
        .unwrap();
        assert_eq!(ok.address, "127.0.0.1");
        assert_eq!(ok.target_groups().count(), 2);
        let err = CreateListenerInput {
            port: 8080,
            default_actions: vec![Action {
                action_type: "redirect".into(),
                target_group_arn: None,
                fixed_response_config: None,
            }],
            ..Default::default()
        }
        .into_listener("arn".into(), Timestamp::from_millis(0))
        .unwrap_err();
        assert_eq!(err.field, "defaultActions");
    }
}
