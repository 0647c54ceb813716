//! Stacks: a whole application declared in one manifest (`hail.yaml`) —
//! buckets, roles, task definitions, triggers (Container-on-Demand), services
//! behind a listener and target group with autoscaling (Scaling-Container),
//! and multi-container tasks (Sidecar-Assembly) — and the plan that brings
//! the engine to it.
//!
//! This module is pure: [`Manifest::from_value`] decodes and checks a
//! manifest (every error names its field path, which the CLI maps back to a
//! line of the file), [`Manifest::resources`] lists what it asks for as
//! [`Desired`] resources, each with a canonical JSON spec, and [`diff`]
//! compares them with what the stack recorded as applied. The engine reads
//! the store, calls [`diff`], and acts.
//!
//! Task definitions are written in the ECS RegisterTaskDefinition shape, so
//! they carry over to AWS unchanged; the map key is the family.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arn::Scope;
use crate::ecs::service::DeploymentConfiguration;
use crate::ecs::task::NetworkConfiguration;
use crate::ecs::task_definition::{NetworkMode, RegisterTaskDefinitionInput, TaskDefinition};
use crate::ecs::Timestamp;
use crate::elb::{CreateTargetGroupInput, Matcher, ScaleFromZero};
use crate::iam::Policy;
use crate::triggers::TriggerOverrides;

/// The tag that labels what a stack created, where the resource has tags.
pub const STACK_TAG: &str = "hail:stack";
/// The cluster a stack's services and triggers use when it names none.
pub const DEFAULT_CLUSTER: &str = "default";
/// Longest stack name.
pub const MAX_STACK_NAME_LEN: usize = 64;
/// The metrics a target tracking policy of a stack may follow.
pub const PREDEFINED_METRICS: &[&str] = &[
    "ECSServiceAverageCPUUtilization",
    "ECSServiceAverageMemoryUtilization",
    "ALBRequestCountPerTarget",
];

/// A manifest that cannot be applied: where (a field path such as
/// `services.bean-counter.autoscaling.max`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.path, .message))]
pub struct StackError {
    pub path: String,
    pub message: String,
}

fn render(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

impl StackError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        StackError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A bucket the stack owns. No settings yet; `{}` (or nothing) in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketSpec {}

/// A role tasks act as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub policy: Policy,
}

/// A trigger: objects landing in a bucket run a task (Container-on-Demand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    /// A family of this stack's task definitions.
    pub task_definition: String,
    /// A bucket of this stack, or one that exists on the server.
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<TriggerOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_seconds: Option<u32>,
}

/// A long-running service (Scaling-Container).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// A family of this stack's task definitions; the service runs its
    /// newest revision and rolls to each new one.
    pub task_definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

/// The listener and target group in front of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSpec {
    /// The container that serves, and its port.
    pub container_name: String,
    pub container_port: u16,
    pub listener: ListenerSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<TargetGroupSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerSpec {
    pub port: u16,
    /// The address to bind; loopback unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u32>,
}

/// CreateTargetGroup's settings; the name defaults to the service's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetGroupSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Matcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_from_zero: Option<ScaleFromZero>,
}

/// The service's scalable target and its target tracking policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalingSpec {
    pub min: u32,
    pub max: u32,
    /// Policies by name.
    #[serde(default)]
    pub target_tracking: BTreeMap<String, TargetTrackingSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetTrackingSpec {
    /// One of [`PREDEFINED_METRICS`].
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_label: Option<String>,
    pub target_value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out_cooldown: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_cooldown: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_scale_in: Option<bool>,
}

/// The manifest as written; task definitions are decoded in a second step,
/// so the family can default to the key.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawManifest {
    stack: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    buckets: BTreeMap<String, Option<BucketSpec>>,
    #[serde(default)]
    roles: BTreeMap<String, RoleSpec>,
    #[serde(default)]
    task_definitions: BTreeMap<String, Value>,
    #[serde(default)]
    triggers: BTreeMap<String, TriggerSpec>,
    #[serde(default)]
    services: BTreeMap<String, ServiceSpec>,
}

/// A decoded and checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub stack: String,
    pub description: Option<String>,
    pub cluster: String,
    pub buckets: BTreeMap<String, BucketSpec>,
    pub roles: BTreeMap<String, RoleSpec>,
    pub task_definitions: BTreeMap<String, RegisterTaskDefinitionInput>,
    pub triggers: BTreeMap<String, TriggerSpec>,
    pub services: BTreeMap<String, ServiceSpec>,
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, prefix: &str) -> Result<T, StackError> {
    crate::ecs::decode::decode_value(value).map_err(|e| {
        let path = match (prefix.is_empty(), e.path.is_empty() || e.path == ".") {
            (_, true) => prefix.to_owned(),
            (true, false) => e.path,
            (false, false) => format!("{prefix}.{}", e.path),
        };
        StackError::new(path, e.message)
    })
}

fn check_name(path: &str, what: &str, name: &str, max: usize) -> Result<(), StackError> {
    let ok = (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StackError::new(
            path,
            format!("{what} {name:?} must be 1 to {max} letters, digits, '-' or '_'"),
        ))
    }
}

impl Manifest {
    /// Decodes a manifest (YAML already turned into JSON) and checks it:
    /// shapes, names, and the references between its parts. Whether the
    /// server can honour it (buckets and roles outside the stack, ports,
    /// resources of the same name) is the engine's to check.
    pub fn from_value(value: Value) -> Result<Manifest, StackError> {
        if !value.is_object() {
            return Err(StackError::new(
                "",
                "a stack manifest is a mapping with at least `stack: NAME`",
            ));
        }
        let raw: RawManifest = decode(value, "")?;
        check_name("stack", "stack name", &raw.stack, MAX_STACK_NAME_LEN)?;
        let cluster = raw.cluster.unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
        if !crate::ecs::validate::is_valid_name(&cluster) {
            return Err(StackError::new(
                "cluster",
                format!("cluster name {cluster:?} must be 1 to 255 letters, digits, '-' or '_'"),
            ));
        }
        for name in raw.buckets.keys() {
            crate::s3::validate_bucket_name(name)
                .map_err(|m| StackError::new(format!("buckets.{name}"), m))?;
        }
        for (name, role) in &raw.roles {
            crate::iam::validate_role_name(name)
                .map_err(|m| StackError::new(format!("roles.{name}"), m))?;
            role.policy
                .validate()
                .map_err(|m| StackError::new(format!("roles.{name}.policy"), m))?;
        }
        let mut task_definitions = BTreeMap::new();
        for (family, mut value) in raw.task_definitions {
            let path = format!("taskDefinitions.{family}");
            let Some(object) = value.as_object_mut() else {
                return Err(StackError::new(
                    path,
                    "a task definition is a mapping in the RegisterTaskDefinition shape",
                ));
            };
            match object.get("family") {
                None => {
                    object.insert("family".into(), Value::String(family.clone()));
                }
                Some(Value::String(f)) if *f == family => {}
                Some(other) => {
                    return Err(StackError::new(
                        format!("{path}.family"),
                        format!(
                        "{other} differs from the key {family:?}; leave it out or make them equal"
                    ),
                    ))
                }
            }
            let input: RegisterTaskDefinitionInput = decode(value, &path)?;
            // The same rules RegisterTaskDefinition applies.
            TaskDefinition::register(
                input.clone(),
                &Scope::default(),
                1,
                Timestamp::from_millis(0),
                None,
            )
            .map_err(|e| StackError::new(format!("{path}.{}", e.field), e.message))?;
            if let Some(role) = &input.task_role_arn {
                if crate::iam::role_name_of(role).is_none() {
                    return Err(StackError::new(
                        format!("{path}.taskRoleArn"),
                        format!("{role:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                    ));
                }
            }
            task_definitions.insert(family, input);
        }
        let manifest = Manifest {
            stack: raw.stack,
            description: raw.description,
            cluster,
            buckets: raw
                .buckets
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
            roles: raw.roles,
            task_definitions,
            triggers: raw.triggers,
            services: raw.services,
        };
        manifest.check_triggers()?;
        manifest.check_services()?;
        Ok(manifest)
    }

    fn task_definition(
        &self,
        path: &str,
        family: &str,
    ) -> Result<&RegisterTaskDefinitionInput, StackError> {
        self.task_definitions.get(family).ok_or_else(|| {
            let known: Vec<&str> = self.task_definitions.keys().map(String::as_str).collect();
            StackError::new(
                path,
                format!(
                    "task definition {family:?} is not declared under taskDefinitions (declared: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            )
        })
    }

    fn check_triggers(&self) -> Result<(), StackError> {
        for (name, t) in &self.triggers {
            let path = format!("triggers.{name}");
            crate::triggers::validate_trigger_name(name).map_err(|m| StackError::new(&path, m))?;
            self.task_definition(&format!("{path}.taskDefinition"), &t.task_definition)?;
            if t.bucket.is_empty() {
                return Err(StackError::new(
                    format!("{path}.bucket"),
                    "a bucket is required",
                ));
            }
            crate::s3::validate_bucket_name(&t.bucket)
                .map_err(|m| StackError::new(format!("{path}.bucket"), m))?;
            for (i, c) in t
                .overrides
                .iter()
                .flat_map(|o| &o.container_overrides)
                .enumerate()
            {
                let def = &self.task_definitions[&t.task_definition];
                if !def
                    .container_definitions
                    .iter()
                    .any(|d| d.name.as_deref() == Some(c.name.as_str()))
                {
                    return Err(StackError::new(
                        format!("{path}.overrides.containerOverrides[{i}].name"),
                        format!(
                            "task definition {} has no container {:?}",
                            t.task_definition, c.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_services(&self) -> Result<(), StackError> {
        let mut ports: BTreeMap<u16, &str> = BTreeMap::new();
        let mut groups: BTreeMap<String, &str> = BTreeMap::new();
        for (name, s) in &self.services {
            let path = format!("services.{name}");
            if name.len() > 255 || !crate::ecs::validate::is_valid_name(name) {
                return Err(StackError::new(
                    path,
                    "a service name is 1 to 255 letters, digits, '-' or '_'",
                ));
            }
            let def =
                self.task_definition(&format!("{path}.taskDefinition"), &s.task_definition)?;
            if let Some(lb) = &s.load_balancer {
                let lb_path = format!("{path}.loadBalancer");
                let Some(container) = def
                    .container_definitions
                    .iter()
                    .find(|c| c.name.as_deref() == Some(lb.container_name.as_str()))
                else {
                    return Err(StackError::new(
                        format!("{lb_path}.containerName"),
                        format!(
                            "task definition {} has no container {:?}",
                            s.task_definition, lb.container_name
                        ),
                    ));
                };
                let mapped = container
                    .port_mappings
                    .iter()
                    .any(|p| p.container_port == Some(u32::from(lb.container_port)));
                if !mapped {
                    return Err(StackError::new(
                        format!("{lb_path}.containerPort"),
                        format!(
                            "container {} maps no port {}",
                            lb.container_name, lb.container_port
                        ),
                    ));
                }
                if lb.listener.port == 0 {
                    return Err(StackError::new(
                        format!("{lb_path}.listener.port"),
                        "port must be 1 to 65535",
                    ));
                }
                if let Some(other) = ports.insert(lb.listener.port, name) {
                    return Err(StackError::new(
                        format!("{lb_path}.listener.port"),
                        format!(
                            "port {} is already the listener of service {other}",
                            lb.listener.port
                        ),
                    ));
                }
                let group = target_group_name(name, lb);
                if let Some(other) = groups.insert(group.clone(), name) {
                    return Err(StackError::new(
                        format!("{lb_path}.targetGroup.name"),
                        format!("target group {group} is already the group of service {other}"),
                    ));
                }
                target_group_input(name, lb)
                    .into_target_group(String::new(), Timestamp::from_millis(0))
                    .map_err(|e| {
                        StackError::new(format!("{lb_path}.targetGroup.{}", e.field), e.message)
                    })?;
            }
            if let Some(a) = &s.autoscaling {
                let a_path = format!("{path}.autoscaling");
                if a.max < a.min {
                    return Err(StackError::new(
                        format!("{a_path}.max"),
                        format!("{} is below min {}", a.max, a.min),
                    ));
                }
                if a.max == 0 {
                    return Err(StackError::new(
                        format!("{a_path}.max"),
                        "0 leaves the service no task; at least 1",
                    ));
                }
                for (policy, t) in &a.target_tracking {
                    let p_path = format!("{a_path}.targetTracking.{policy}");
                    check_name(&p_path, "policy name", policy, 256)?;
                    if !PREDEFINED_METRICS.contains(&t.metric.as_str()) {
                        return Err(StackError::new(
                            format!("{p_path}.metric"),
                            format!(
                                "{:?} is not one of {}",
                                t.metric,
                                PREDEFINED_METRICS.join(", ")
                            ),
                        ));
                    }
                    if !(t.target_value.is_finite() && t.target_value > 0.0) {
                        return Err(StackError::new(
                            format!("{p_path}.targetValue"),
                            format!("{} must be a number above 0", t.target_value),
                        ));
                    }
                    if t.metric == "ALBRequestCountPerTarget" && s.load_balancer.is_none() {
                        return Err(StackError::new(
                            format!("{p_path}.metric"),
                            "ALBRequestCountPerTarget needs the service's loadBalancer",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Everything the manifest asks for, in the order it is created.
    pub fn resources(&self) -> Vec<Desired> {
        let mut out = vec![Desired::new(
            Kind::Cluster,
            &self.cluster,
            "cluster",
            serde_json::json!({}),
        )];
        for name in self.buckets.keys() {
            out.push(Desired::new(
                Kind::Bucket,
                name,
                format!("buckets.{name}"),
                serde_json::json!({}),
            ));
        }
        for (name, role) in &self.roles {
            out.push(Desired::new(
                Kind::Role,
                name,
                format!("roles.{name}"),
                to_value(role),
            ));
        }
        for (family, def) in &self.task_definitions {
            out.push(Desired::new(
                Kind::TaskDefinition,
                family,
                format!("taskDefinitions.{family}"),
                to_value(def),
            ));
        }
        for (name, s) in &self.services {
            let path = format!("services.{name}");
            let qualified = format!("{}/{name}", self.cluster);
            let mut group = None;
            if let Some(lb) = &s.load_balancer {
                let tg = target_group_name(name, lb);
                out.push(Desired::new(
                    Kind::TargetGroup,
                    &tg,
                    format!("{path}.loadBalancer.targetGroup"),
                    to_value(&target_group_input(name, lb)),
                ));
                out.push(Desired::new(
                    Kind::Listener,
                    lb.listener.port.to_string(),
                    format!("{path}.loadBalancer.listener"),
                    serde_json::json!({
                        "port": lb.listener.port,
                        "address": lb.listener.address,
                        "idleTimeoutSeconds": lb.listener.idle_timeout_seconds,
                        "targetGroup": tg,
                    }),
                ));
                group = Some(tg);
            }
            let def = &self.task_definitions[&s.task_definition];
            // A service's spec holds its task definition's: a new revision
            // changes the service, which then rolls to it.
            let network = s
                .network_configuration
                .clone()
                .or_else(|| (def.network_mode == Some(NetworkMode::Awsvpc)).then(default_network));
            out.push(Desired::new(
                Kind::Service,
                &qualified,
                &path,
                serde_json::json!({
                    "cluster": self.cluster,
                    "serviceName": name,
                    "taskDefinition": s.task_definition,
                    "taskDefinitionSpec": to_value(def),
                    "desiredCount": s.desired_count.unwrap_or(1),
                    "deploymentConfiguration": s.deployment_configuration,
                    "networkConfiguration": network,
                    "healthCheckGracePeriodSeconds": s.health_check_grace_period_seconds,
                    "loadBalancer": s.load_balancer.as_ref().map(|lb| serde_json::json!({
                        "targetGroup": group,
                        "containerName": lb.container_name,
                        "containerPort": lb.container_port,
                    })),
                }),
            ));
            if let Some(a) = &s.autoscaling {
                out.push(Desired::new(
                    Kind::ScalableTarget,
                    &qualified,
                    format!("{path}.autoscaling"),
                    serde_json::json!({"min": a.min, "max": a.max}),
                ));
                for (policy, t) in &a.target_tracking {
                    out.push(Desired::new(
                        Kind::ScalingPolicy,
                        format!("{qualified}/{policy}"),
                        format!("{path}.autoscaling.targetTracking.{policy}"),
                        to_value(t),
                    ));
                }
            }
        }
        for (name, t) in &self.triggers {
            let mut spec = to_value(t);
            spec["cluster"] = Value::String(self.cluster.clone());
            out.push(Desired::new(
                Kind::Trigger,
                name,
                format!("triggers.{name}"),
                spec,
            ));
        }
        out
    }
}

/// The network configuration of awsvpc tasks when the manifest gives none:
/// Hail's own subnet.
pub fn default_network() -> NetworkConfiguration {
    serde_json::from_value(serde_json::json!({"awsvpcConfiguration": {"subnets": ["subnet-hail"]}}))
        .unwrap_or_else(|_| unreachable_network())
}

// The literal above always decodes; this keeps the function total without a
// panic path.
fn unreachable_network() -> NetworkConfiguration {
    NetworkConfiguration {
        awsvpc_configuration: None,
    }
}

/// The target group name of a service: given, else the service's name cut
/// to ELB's 32 characters (underscores become hyphens).
pub fn target_group_name(service: &str, lb: &LoadBalancerSpec) -> String {
    lb.target_group
        .as_ref()
        .and_then(|t| t.name.clone())
        .unwrap_or_else(|| {
            let name: String = service
                .chars()
                .map(|c| if c == '_' { '-' } else { c })
                .take(32)
                .collect();
            name.trim_end_matches('-').to_owned()
        })
}

/// The CreateTargetGroup body of a service's load balancer.
pub fn target_group_input(service: &str, lb: &LoadBalancerSpec) -> CreateTargetGroupInput {
    let t = lb.target_group.clone().unwrap_or_default();
    CreateTargetGroupInput {
        name: target_group_name(service, lb),
        protocol: None,
        port: Some(lb.container_port),
        target_type: None,
        health_check_enabled: t.health_check_enabled,
        health_check_path: t.health_check_path,
        health_check_interval_seconds: t.health_check_interval_seconds,
        health_check_timeout_seconds: t.health_check_timeout_seconds,
        healthy_threshold_count: t.healthy_threshold_count,
        unhealthy_threshold_count: t.unhealthy_threshold_count,
        matcher: t.matcher,
        deregistration_delay_seconds: t.deregistration_delay_seconds,
        scale_from_zero: t.scale_from_zero,
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The kinds of resources a stack manages, in the order they are created
/// (and deleted in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    Cluster,
    Bucket,
    Role,
    TaskDefinition,
    TargetGroup,
    Listener,
    Service,
    ScalableTarget,
    ScalingPolicy,
    Trigger,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Cluster,
        Kind::Bucket,
        Kind::Role,
        Kind::TaskDefinition,
        Kind::TargetGroup,
        Kind::Listener,
        Kind::Service,
        Kind::ScalableTarget,
        Kind::ScalingPolicy,
        Kind::Trigger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Bucket => "bucket",
            Kind::Role => "role",
            Kind::TaskDefinition => "taskDefinition",
            Kind::TargetGroup => "targetGroup",
            Kind::Listener => "listener",
            Kind::Service => "service",
            Kind::ScalableTarget => "scalableTarget",
            Kind::ScalingPolicy => "scalingPolicy",
            Kind::Trigger => "trigger",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One resource a manifest asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub kind: Kind,
    pub name: String,
    /// Where in the manifest it is declared.
    pub path: String,
    /// What it should be, as canonical JSON: two applies of one manifest
    /// give equal specs.
    pub spec: Value,
}

impl Desired {
    fn new(kind: Kind, name: impl Into<String>, path: impl Into<String>, spec: Value) -> Self {
        Desired {
            kind,
            name: name.into(),
            path: path.into(),
            spec: canonical(spec),
        }
    }
}

/// Drops nulls from objects, so an absent optional and an explicit null
/// read the same.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, canonical(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Where a recorded resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceState {
    /// Being created or updated; it may or may not match its spec yet
    /// (an apply was interrupted), so the next apply applies it again.
    Pending,
    /// Created or updated to its spec.
    Ready,
    /// Being deleted; gone once its record is.
    Deleting,
}

/// A resource a stack created, as the store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackResource {
    pub stack_name: String,
    pub kind: Kind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub spec: Value,
    pub state: ResourceState,
    pub updated_at: Timestamp,
}

/// A stack as recorded: its name, the manifest last applied, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    pub stack_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: StackStatus,
    /// The manifest last applied (JSON).
    pub manifest: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StackStatus {
    /// An apply is under way or was interrupted, or deletions wait.
    ApplyInProgress,
    /// Everything matches the manifest last applied.
    ApplyComplete,
    /// A delete is under way or waits for resources to drain.
    DeleteInProgress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    /// The sign a plan shows.
    pub fn sign(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    pub name: String,
    /// The fields that differ (updates), as paths in the resource's spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Why, when it is not a plain difference of spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the engine observed of one resource, for [`diff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// It exists.
    Present,
    /// It does not.
    Absent,
}

/// The plan from what a stack recorded to what its manifest asks for:
/// creates and updates in creation order, then deletes in reverse order.
/// `observed` tells whether each resource exists on the engine now, so a
/// resource deleted behind the stack's back is created again. A desired
/// resource that exists without being the stack's is the caller's conflict
/// to report, before calling this.
pub fn diff(
    desired: &[Desired],
    recorded: &[StackResource],
    observed: impl Fn(Kind, &str) -> Observed,
) -> Vec<Change> {
    let by_key: BTreeMap<(Kind, &str), &StackResource> = recorded
        .iter()
        .map(|r| ((r.kind, r.name.as_str()), r))
        .collect();
    let wanted: BTreeSet<(Kind, &str)> =
        desired.iter().map(|d| (d.kind, d.name.as_str())).collect();
    let mut changes = Vec::new();
    let mut ordered: Vec<&Desired> = desired.iter().collect();
    ordered.sort_by_key(|d| d.kind);
    for d in ordered {
        let present = observed(d.kind, &d.name) == Observed::Present;
        match by_key.get(&(d.kind, d.name.as_str())) {
            None if d.kind == Kind::Cluster && present => {
                // A cluster that was there before is used, not owned.
            }
            None => changes.push(Change {
                action: Action::Create,
                kind: d.kind,
                name: d.name.clone(),
                fields: Vec::new(),
                reason: None,
            }),
            Some(r) if !present => changes.push(Change {
                action: Action::Create,
                kind: d.kind,
                name: d.name.clone(),
                fields: Vec::new(),
                reason: Some(match r.state {
                    ResourceState::Pending => "an earlier apply was interrupted".to_owned(),
                    _ => "it no longer exists".to_owned(),
                }),
            }),
            Some(r) => {
                let mut fields = Vec::new();
                json_diff(&r.spec, &d.spec, "", &mut fields);
                let fields = summarise(d.kind, fields);
                if !fields.is_empty() || r.state != ResourceState::Ready {
                    changes.push(Change {
                        action: Action::Update,
                        kind: d.kind,
                        name: d.name.clone(),
                        reason: match r.state {
                            ResourceState::Ready => None,
                            ResourceState::Pending => {
                                Some("an earlier apply was interrupted".to_owned())
                            }
                            ResourceState::Deleting => {
                                Some("an earlier delete was interrupted".to_owned())
                            }
                        },
                        fields,
                    });
                }
            }
        }
    }
    let mut gone: Vec<&StackResource> = recorded
        .iter()
        .filter(|r| !wanted.contains(&(r.kind, r.name.as_str())))
        .collect();
    gone.sort_by(|a, b| b.kind.cmp(&a.kind).then(a.name.cmp(&b.name)));
    changes.extend(gone.into_iter().map(|r| Change {
        action: Action::Delete,
        kind: r.kind,
        name: r.name.clone(),
        fields: Vec::new(),
        reason: None,
    }));
    changes
}

/// The paths at which two JSON documents differ.
pub fn json_diff(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (a.get(k), b.get(k));
                match (x, y) {
                    (Some(x), Some(y)) => json_diff(x, y, &join(k), out),
                    _ => out.push(join(k)),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

/// A service's changed task definition reads as one field: it rolls to a
/// new revision.
fn summarise(kind: Kind, fields: Vec<String>) -> Vec<String> {
    if kind != Kind::Service {
        return fields;
    }
    let mut out: Vec<String> = Vec::new();
    for f in fields {
        let f = if f.starts_with("taskDefinitionSpec") {
            "taskDefinition (new revision)".to_owned()
        } else {
            f
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Value {
        json!({
            "stack": "demo",
            "buckets": {"media": {}},
            "roles": {"web-role": {"policy": {"Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media/*"}
            ]}}},
            "taskDefinitions": {"web": {
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "256", "memory": "512",
                "taskRoleArn": "arn:aws:iam::000000000000:role/web-role",
                "containerDefinitions": [{
                    "name": "app", "image": "busybox", "essential": true,
                    "portMappings": [{"containerPort": 8080}]
                }]
            }},
            "triggers": {"thumbs": {"taskDefinition": "web", "bucket": "media", "prefix": "video/"}},
            "services": {"web": {
                "taskDefinition": "web",
                "desiredCount": 2,
                "loadBalancer": {"containerName": "app", "containerPort": 8080,
                                 "listener": {"port": 18080},
                                 "targetGroup": {"healthCheckPath": "/"}},
                "autoscaling": {"min": 2, "max": 4, "targetTracking": {"cpu": {
                    "metric": "ECSServiceAverageCPUUtilization", "targetValue": 75
                }}}
            }}
        })
    }

    fn error(mut edit: impl FnMut(&mut Value)) -> StackError {
        let mut m = manifest();
        edit(&mut m);
        Manifest::from_value(m).unwrap_err()
    }

    #[test]
    fn a_manifest_decodes_with_the_family_from_its_key() {
        let m = Manifest::from_value(manifest()).unwrap();
        assert_eq!(m.cluster, "default");
        assert_eq!(m.task_definitions["web"].family, "web");
        let kinds: Vec<Kind> = m.resources().iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Cluster,
                Kind::Bucket,
                Kind::Role,
                Kind::TaskDefinition,
                Kind::TargetGroup,
                Kind::Listener,
                Kind::Service,
                Kind::ScalableTarget,
                Kind::ScalingPolicy,
                Kind::Trigger
            ]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = error(|m| m["services"]["web"]["autoscaling"]["max"] = json!(0));
        assert_eq!(
            e.to_string(),
            "services.web.autoscaling.max: 0 is below min 2"
        );
        let e = error(|m| m["services"]["web"]["replicas"] = json!(3));
        assert_eq!(e.path, "services.web");
        assert!(e.message.contains("unknown field \"replicas\""), "{e}");
        let e = error(|m| m["services"]["web"]["desiredCount"] = json!("two"));
        assert_eq!(e.path, "services.web.desiredCount");
        let e = error(|m| m["services"]["web"]["taskDefinition"] = json!("api"));
        assert_eq!(e.path, "services.web.taskDefinition");
        assert!(e.message.contains("not declared"), "{e}");
        let e = error(|m| m["triggers"]["thumbs"]["taskDefinition"] = json!("nope"));
        assert_eq!(e.path, "triggers.thumbs.taskDefinition");
        let e = error(|m| {
            m["taskDefinitions"]["web"]["containerDefinitions"][0]["memory"] = json!("lots")
        });
        assert_eq!(e.path, "taskDefinitions.web.containerDefinitions[0].memory");
        let e = error(|m| m["services"]["web"]["loadBalancer"]["containerPort"] = json!(9));
        assert_eq!(e.path, "services.web.loadBalancer.containerPort");
        let e = error(|m| m["buckets"]["Bad_Bucket"] = json!({}));
        assert_eq!(e.path, "buckets.Bad_Bucket");
        let e = error(|m| m["taskDefinitions"]["web"]["family"] = json!("other"));
        assert_eq!(e.path, "taskDefinitions.web.family");
        let e = error(|m| m["stack"] = json!("no spaces"));
        assert_eq!(e.path, "stack");
        let e = error(|m| m["colour"] = json!("red"));
        assert_eq!(e.path, "");
        assert!(e.message.contains("colour"));
    }

    fn recorded(d: &Desired) -> StackResource {
        StackResource {
            stack_name: "demo".into(),
            kind: d.kind,
            name: d.name.clone(),
            arn: None,
            spec: d.spec.clone(),
            state: ResourceState::Ready,
            updated_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn the_plan_is_empty_when_nothing_changed_and_names_each_change() {
        let desired = Manifest::from_value(manifest()).unwrap().resources();
        let applied: Vec<StackResource> = desired.iter().map(recorded).collect();
        assert_eq!(diff(&desired, &applied, |_, _| Observed::Present), vec![]);

        // A changed environment: a new revision, and the service rolls.
        let mut m = manifest();
        m["taskDefinitions"]["web"]["containerDefinitions"][0]["environment"] =
            json!([{"name": "MODE", "value": "fast"}]);
        let changed = Manifest::from_value(m).unwrap().resources();
        let plan = diff(&changed, &applied, |_, _| Observed::Present);
        assert_eq!(plan.len(), 2, "{plan:#?}");
        assert_eq!(
            (plan[0].action, plan[0].kind),
            (Action::Update, Kind::TaskDefinition)
        );
        assert_eq!(plan[0].fields, ["containerDefinitions[0].environment"]);
        assert_eq!(
            (plan[1].action, plan[1].kind),
            (Action::Update, Kind::Service)
        );
        assert_eq!(plan[1].fields, ["taskDefinition (new revision)"]);

        // A scaling max: only the scalable target.
        let mut m = manifest();
        m["services"]["web"]["autoscaling"]["max"] = json!(6);
        let plan = diff(
            &Manifest::from_value(m).unwrap().resources(),
            &applied,
            |_, _| Observed::Present,
        );
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].kind, Kind::ScalableTarget);
        assert_eq!(plan[0].fields, ["max"]);

        // Removed from the manifest: deleted, dependants first.
        let mut m = manifest();
        m.as_object_mut().unwrap().remove("services");
        let plan = diff(
            &Manifest::from_value(m).unwrap().resources(),
            &applied,
            |_, _| Observed::Present,
        );
        let kinds: Vec<(Action, Kind)> = plan.iter().map(|c| (c.action, c.kind)).collect();
        assert_eq!(
            kinds,
            [
                (Action::Delete, Kind::ScalingPolicy),
                (Action::Delete, Kind::ScalableTarget),
                (Action::Delete, Kind::Service),
                (Action::Delete, Kind::Listener),
                (Action::Delete, Kind::TargetGroup),
            ]
        );

        // Deleted behind the stack's back: created again.
        let plan = diff(&desired, &applied, |k, _| {
            if k == Kind::Bucket {
                Observed::Absent
            } else {
                Observed::Present
            }
        });
        assert_eq!(plan.len(), 1);
        assert_eq!(
            (plan[0].action, plan[0].kind),
            (Action::Create, Kind::Bucket)
        );
    }

    #[test]
    fn an_interrupted_apply_is_applied_again() {
        let desired = Manifest::from_value(manifest()).unwrap().resources();
        let mut applied: Vec<StackResource> = desired.iter().map(recorded).collect();
        applied[1].state = ResourceState::Pending;
        let plan = diff(&desired, &applied, |_, _| Observed::Present);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].action, Action::Update);
        assert_eq!(plan[0].kind, Kind::Bucket);
    }
}
