//! Application Auto Scaling resources: scalable targets, scaling policies,
//! scheduled actions and scaling activities, with the field names, defaults
//! and validation messages of the Application Auto Scaling API Reference.
//!
//! The API speaks PascalCase (`ServiceNamespace`, `ScalableTargetARN`), so
//! these shapes do too. Hail scales one kind of resource, the desired count
//! of an ECS service: service namespace `ecs`, scalable dimension
//! `ecs:service:DesiredCount`, resource id `service/<cluster>/<service>`.
//! Other namespaces and dimensions AWS defines are recognised (so a
//! misspelling gets AWS's enum message) and refused as unsupported.
//!
//! Hail extensions, all spelled so that unmodified AWS clients can send them:
//! - the predefined metric type `HailServiceAverageConcurrency`: requests in
//!   flight per running task of the service;
//! - the scalable-target tag `hail:stepAlarm:<policy name>`, which plays the
//!   part of the CloudWatch alarm a step scaling policy is attached to on AWS
//!   (see [`StepAlarm`]).

pub mod schedule;

use std::collections::BTreeMap;

use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use crate::ecs::Timestamp;

pub use schedule::{Civil, CronExpr, Schedule};

/// The service namespace of ECS services.
pub const ECS_NAMESPACE: &str = "ecs";
/// The scalable dimension of an ECS service's desired count.
pub const ECS_DESIRED_COUNT: &str = "ecs:service:DesiredCount";

/// Every service namespace the API defines, in the model's order.
pub const SERVICE_NAMESPACES: &[&str] = &[
    "ecs",
    "elasticmapreduce",
    "ec2",
    "appstream",
    "dynamodb",
    "rds",
    "sagemaker",
    "custom-resource",
    "comprehend",
    "lambda",
    "cassandra",
    "kafka",
    "elasticache",
    "neptune",
    "workspaces",
];

/// Every scalable dimension the API defines, in the model's order.
pub const SCALABLE_DIMENSIONS: &[&str] = &[
    "ecs:service:DesiredCount",
    "ec2:spot-fleet-request:TargetCapacity",
    "elasticmapreduce:instancegroup:InstanceCount",
    "appstream:fleet:DesiredCapacity",
    "dynamodb:table:ReadCapacityUnits",
    "dynamodb:table:WriteCapacityUnits",
    "dynamodb:index:ReadCapacityUnits",
    "dynamodb:index:WriteCapacityUnits",
    "rds:cluster:ReadReplicaCount",
    "sagemaker:variant:DesiredInstanceCount",
    "custom-resource:ResourceType:Property",
    "comprehend:document-classifier-endpoint:DesiredInferenceUnits",
    "comprehend:entity-recognizer-endpoint:DesiredInferenceUnits",
    "lambda:function:ProvisionedConcurrency",
    "cassandra:table:ReadCapacityUnits",
    "cassandra:table:WriteCapacityUnits",
    "kafka:broker-storage:VolumeSize",
    "elasticache:cache-cluster:Nodes",
    "elasticache:replication-group:NodeGroups",
    "elasticache:replication-group:Replicas",
    "neptune:cluster:ReadReplicaCount",
    "sagemaker:variant:DesiredProvisionedConcurrency",
    "sagemaker:inference-component:DesiredCopyCount",
    "workspaces:workspacespool:DesiredUserSessions",
];

/// The policy types the API defines.
pub const POLICY_TYPES: &[&str] = &["PredictiveScaling", "StepScaling", "TargetTrackingScaling"];
/// The adjustment types of step scaling.
pub const ADJUSTMENT_TYPES: &[&str] = &[
    "ChangeInCapacity",
    "PercentChangeInCapacity",
    "ExactCapacity",
];
/// The aggregations of a step scaling policy's metric.
pub const METRIC_AGGREGATION_TYPES: &[&str] = &["Average", "Minimum", "Maximum"];

/// Hail's predefined metric: requests in flight per running task.
pub const HAIL_CONCURRENCY_METRIC: &str = "HailServiceAverageConcurrency";
/// The tag key prefix that gives a step scaling policy its alarm.
pub const STEP_ALARM_TAG_PREFIX: &str = "hail:stepAlarm:";

/// Cooldown ECS targets get when a policy sets none, in seconds.
pub const DEFAULT_COOLDOWN_SECONDS: u32 = 300;
/// Longest cooldown a policy may set (one day), in seconds.
pub const MAX_COOLDOWN_SECONDS: i64 = 86_400;
/// Highest capacity Hail lets a target have: ECS's tasks-per-service quota.
pub const MAX_CAPACITY_LIMIT: i64 = 5000;
/// Scaling policies one scalable target may have (the AWS quota).
pub const MAX_POLICIES_PER_TARGET: usize = 50;
/// Scheduled actions one scalable target may have (the AWS quota).
pub const MAX_SCHEDULED_ACTIONS_PER_TARGET: usize = 200;
/// Scalable targets of one resource type per account (the AWS quota for ECS).
pub const MAX_TARGETS: usize = 3000;
/// Most tags a scalable target may carry.
pub const MAX_TAGS: usize = 50;
/// How long scaling activities stay describable, as on AWS: six weeks.
pub const ACTIVITY_RETENTION_MILLIS: i64 = 42 * 24 * 3600 * 1000;

/// A request Application Auto Scaling refuses with `ValidationException`,
/// in AWS's words where clients are known to read them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub message: String,
}

impl ValidationError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// AWS's message for a value outside an enum: `1 validation error
    /// detected: Value 'x' at 'scalableDimension' failed to satisfy
    /// constraint: Member must satisfy enum value set: [a, b]`.
    pub fn not_in_enum(value: &str, member: &str, allowed: &[&str]) -> Self {
        Self::new(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
             constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ))
    }

    /// AWS's message for a string outside its length bounds.
    pub fn length(value: &str, member: &str, min: usize, max: usize) -> Self {
        let rule = if value.chars().count() < min {
            format!("Member must have length greater than or equal to {min}")
        } else {
            format!("Member must have length less than or equal to {max}")
        };
        Self::new(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
             constraint: {rule}"
        ))
    }
}

fn check_enum(value: &str, member: &str, allowed: &[&str]) -> Result<(), ValidationError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ValidationError::not_in_enum(value, member, allowed))
    }
}

fn check_len(value: &str, member: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = value.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(ValidationError::length(value, member, min, max))
    }
}

/// The three names that identify a scalable target, checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
}

/// The ECS service a resource id `service/<cluster>/<service>` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsServiceRef<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
}

/// Splits `service/<cluster>/<service>`; `None` for any other shape.
pub fn parse_ecs_resource_id(resource_id: &str) -> Option<EcsServiceRef<'_>> {
    let rest = resource_id.strip_prefix("service/")?;
    let (cluster, service) = rest.split_once('/')?;
    let ok = |s: &str| crate::ecs::validate::is_valid_name(s);
    (ok(cluster) && ok(service)).then_some(EcsServiceRef { cluster, service })
}

/// Checks that the namespace and dimension are ones the API defines, that
/// they belong together and to the resource id, and that Hail scales them.
pub fn target_key(
    service_namespace: &str,
    resource_id: &str,
    scalable_dimension: &str,
) -> Result<TargetKey, ValidationError> {
    check_enum(service_namespace, "serviceNamespace", SERVICE_NAMESPACES)?;
    check_len(resource_id, "resourceId", 1, 1600)?;
    check_enum(scalable_dimension, "scalableDimension", SCALABLE_DIMENSIONS)?;
    let dimension_namespace = scalable_dimension.split(':').next().unwrap_or_default();
    if dimension_namespace != service_namespace
        || (service_namespace == ECS_NAMESPACE && parse_ecs_resource_id(resource_id).is_none())
    {
        return Err(ValidationError::new(
            "Unsupported service namespace, resource type or scalable dimension",
        ));
    }
    if service_namespace != ECS_NAMESPACE {
        return Err(ValidationError::new(format!(
            "Unsupported service namespace, resource type or scalable dimension: hail scales \
             ECS services only (service namespace {ECS_NAMESPACE}, scalable dimension \
             {ECS_DESIRED_COUNT}, resource id service/<cluster>/<service>), not {service_namespace}"
        )));
    }
    Ok(TargetKey {
        service_namespace: service_namespace.to_owned(),
        resource_id: resource_id.to_owned(),
        scalable_dimension: scalable_dimension.to_owned(),
    })
}

/// Checks a namespace used as a filter.
pub fn check_namespace(service_namespace: &str) -> Result<(), ValidationError> {
    check_enum(service_namespace, "serviceNamespace", SERVICE_NAMESPACES)
}

/// Checks a dimension used as a filter.
pub fn check_dimension(scalable_dimension: &str) -> Result<(), ValidationError> {
    check_enum(scalable_dimension, "scalableDimension", SCALABLE_DIMENSIONS)
}

/// The default role of ECS targets: the service-linked role AWS creates.
pub fn default_role_arn(account: &str) -> String {
    format!(
        "arn:aws:iam::{account}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/\
         AWSServiceRoleForApplicationAutoScaling_ECSService"
    )
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A random UUID (version 4), as AWS writes ids of policies, alarms and activities.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A new scalable target id: 36 lowercase hex digits, as AWS's are.
pub fn new_scalable_target_id() -> String {
    random_hex(18)
}

/// `arn:aws:application-autoscaling:<region>:<account>:scalable-target/<id>`.
pub fn scalable_target_arn(region: &str, account: &str, id: &str) -> String {
    format!("arn:aws:application-autoscaling:{region}:{account}:scalable-target/{id}")
}

/// Whether `arn` has the shape of a scalable target ARN (the API's
/// `AmazonResourceName` pattern).
pub fn is_scalable_target_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:") else {
        return false;
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [_partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let id = resource
        .strip_prefix("scalable-target/")
        .unwrap_or_default();
    service == "application-autoscaling"
        && !region.is_empty()
        && !account.is_empty()
        && account.bytes().all(|b| b.is_ascii_digit())
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `arn:aws:autoscaling:<region>:<account>:scalingPolicy:<uuid>:resource/<ns>/<id>:policyName/<name>`.
pub fn policy_arn(region: &str, account: &str, key: &TargetKey, name: &str) -> String {
    format!(
        "arn:aws:autoscaling:{region}:{account}:scalingPolicy:{}:resource/{}/{}:policyName/{name}",
        new_uuid(),
        key.service_namespace,
        key.resource_id
    )
}

/// `arn:aws:autoscaling:<region>:<account>:scheduledAction:<uuid>:resource/<ns>/<id>:scheduledActionName/<name>`.
pub fn scheduled_action_arn(region: &str, account: &str, key: &TargetKey, name: &str) -> String {
    format!(
        "arn:aws:autoscaling:{region}:{account}:scheduledAction:{}:resource/{}/{}:scheduledActionName/{name}",
        new_uuid(),
        key.service_namespace,
        key.resource_id
    )
}

/// The alarms a target tracking policy gets, named as AWS names them:
/// `TargetTracking-<resource id>-AlarmHigh-<uuid>`, and `-AlarmLow-<uuid>`
/// unless scale-in is disabled.
pub fn target_tracking_alarms(
    region: &str,
    account: &str,
    resource_id: &str,
    with_low: bool,
) -> Vec<Alarm> {
    let alarm = |kind: &str| {
        let name = format!("TargetTracking-{resource_id}-{kind}-{}", new_uuid());
        Alarm {
            alarm_arn: format!("arn:aws:cloudwatch:{region}:{account}:alarm:{name}"),
            alarm_name: name,
        }
    };
    let mut alarms = vec![alarm("AlarmHigh")];
    if with_low {
        alarms.push(alarm("AlarmLow"));
    }
    alarms
}

// ---------------------------------------------------------------------------
// Scalable targets

/// Which kinds of scaling are paused for a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SuspendedState {
    #[serde(default)]
    pub dynamic_scaling_in_suspended: bool,
    #[serde(default)]
    pub dynamic_scaling_out_suspended: bool,
    #[serde(default)]
    pub scheduled_scaling_suspended: bool,
}

/// SuspendedState as a request gives it: what it leaves out stays as it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SuspendedStateInput {
    #[serde(default)]
    pub dynamic_scaling_in_suspended: Option<bool>,
    #[serde(default)]
    pub dynamic_scaling_out_suspended: Option<bool>,
    #[serde(default)]
    pub scheduled_scaling_suspended: Option<bool>,
}

impl SuspendedState {
    /// This state with the fields `input` sets changed.
    pub fn merged(self, input: SuspendedStateInput) -> Self {
        Self {
            dynamic_scaling_in_suspended: input
                .dynamic_scaling_in_suspended
                .unwrap_or(self.dynamic_scaling_in_suspended),
            dynamic_scaling_out_suspended: input
                .dynamic_scaling_out_suspended
                .unwrap_or(self.dynamic_scaling_out_suspended),
            scheduled_scaling_suspended: input
                .scheduled_scaling_suspended
                .unwrap_or(self.scheduled_scaling_suspended),
        }
    }
}

/// A registered scalable target, as DescribeScalableTargets returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalableTarget {
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub min_capacity: u32,
    pub max_capacity: u32,
    #[serde(rename = "RoleARN")]
    pub role_arn: String,
    pub creation_time: Timestamp,
    pub suspended_state: SuspendedState,
    #[serde(rename = "ScalableTargetARN")]
    pub scalable_target_arn: String,
}

impl ScalableTarget {
    pub fn key(&self) -> TargetKey {
        TargetKey {
            service_namespace: self.service_namespace.clone(),
            resource_id: self.resource_id.clone(),
            scalable_dimension: self.scalable_dimension.clone(),
        }
    }
}

/// Tags as Application Auto Scaling carries them: a map.
pub type TagMap = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RegisterScalableTargetInput {
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    #[serde(default)]
    pub min_capacity: Option<i64>,
    #[serde(default)]
    pub max_capacity: Option<i64>,
    #[serde(default, rename = "RoleARN")]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub suspended_state: Option<SuspendedStateInput>,
    #[serde(default)]
    pub tags: Option<TagMap>,
}

/// The capacities a registration leaves a target with: the ones given,
/// the existing target's for the ones left out.
pub fn registered_capacity(
    input_min: Option<i64>,
    input_max: Option<i64>,
    existing: Option<(u32, u32)>,
) -> Result<(u32, u32), ValidationError> {
    let (min, max) = match (input_min, input_max, existing) {
        (Some(min), Some(max), _) => (min, max),
        (min, max, Some((old_min, old_max))) => {
            (min.unwrap_or(old_min.into()), max.unwrap_or(old_max.into()))
        }
        (_, _, None) => {
            return Err(ValidationError::new(
                "MinCapacity and MaxCapacity are required to register a new scalable target",
            ))
        }
    };
    check_capacity_range(min, max)
}

fn check_capacity_range(min: i64, max: i64) -> Result<(u32, u32), ValidationError> {
    if min < 0 {
        return Err(ValidationError::new(
            "Minimum capacity cannot be less than 0",
        ));
    }
    if max < 0 {
        return Err(ValidationError::new(
            "Maximum capacity cannot be less than 0",
        ));
    }
    if min > max {
        return Err(ValidationError::new(
            "Minimum capacity cannot be greater than maximum capacity",
        ));
    }
    if max > MAX_CAPACITY_LIMIT {
        return Err(ValidationError::new(format!(
            "Maximum capacity cannot be greater than {MAX_CAPACITY_LIMIT}, the most tasks an \
             ECS service may run"
        )));
    }
    // Both are within 0..=5000 here.
    Ok((min as u32, max as u32))
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TargetKeyInput {
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeScalableTargetsInput {
    pub service_namespace: String,
    #[serde(default)]
    pub resource_ids: Option<Vec<String>>,
    #[serde(default)]
    pub scalable_dimension: Option<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// `MaxResults` checked against `1..=max`, `max` when absent.
pub fn max_results(value: Option<i64>, max: u32) -> Result<u32, ValidationError> {
    match value {
        None => Ok(max),
        Some(n) if (1..=i64::from(max)).contains(&n) => Ok(n as u32),
        Some(n) => Err(ValidationError::new(format!(
            "MaxResults {n} is not between 1 and {max}"
        ))),
    }
}

/// Checks tag keys and values against the API's limits.
pub fn validate_tags(tags: &TagMap) -> Result<(), ValidationError> {
    for (key, value) in tags {
        check_len(key, "tags.key", 1, 128)?;
        check_len(value, "tags.value", 0, 256)?;
        if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(ValidationError::new(format!(
                "Tag key {key} uses the prefix aws:, which is reserved for AWS use"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scaling policies

/// A CloudWatch alarm of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alarm {
    pub alarm_name: String,
    #[serde(rename = "AlarmARN")]
    pub alarm_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PredefinedMetricSpecification {
    pub predefined_metric_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TargetTrackingScalingPolicyConfiguration {
    pub target_value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predefined_metric_specification: Option<PredefinedMetricSpecification>,
    /// Accepted so the request parses; Hail has no CloudWatch metrics to
    /// track, so a policy that sets it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_metric_specification: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out_cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_scale_in: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StepAdjustment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_interval_lower_bound: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_interval_upper_bound: Option<f64>,
    pub scaling_adjustment: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StepScalingPolicyConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustment_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_adjustments: Option<Vec<StepAdjustment>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_adjustment_magnitude: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_aggregation_type: Option<String>,
}

/// A scaling policy, as DescribeScalingPolicies returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingPolicy {
    #[serde(rename = "PolicyARN")]
    pub policy_arn: String,
    pub policy_name: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub policy_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_scaling_policy_configuration: Option<StepScalingPolicyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tracking_scaling_policy_configuration:
        Option<TargetTrackingScalingPolicyConfiguration>,
    #[serde(default)]
    pub alarms: Vec<Alarm>,
    pub creation_time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutScalingPolicyInput {
    pub policy_name: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    #[serde(default)]
    pub policy_type: Option<String>,
    #[serde(default)]
    pub step_scaling_policy_configuration: Option<StepScalingPolicyConfiguration>,
    #[serde(default)]
    pub target_tracking_scaling_policy_configuration:
        Option<TargetTrackingScalingPolicyConfiguration>,
    /// Accepted so the request parses; refused, as Hail does not forecast.
    #[serde(default)]
    pub predictive_scaling_policy_configuration: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeleteScalingPolicyInput {
    pub policy_name: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeScalingPoliciesInput {
    #[serde(default)]
    pub policy_names: Option<Vec<String>>,
    pub service_namespace: String,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub scalable_dimension: Option<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// What a policy's metric measures, in the units the policy's target is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PredefinedMetric {
    /// `ECSServiceAverageCPUUtilization`: percent of the tasks' reserved CPU.
    EcsCpu,
    /// `ECSServiceAverageMemoryUtilization`: percent of the tasks' memory.
    EcsMemory,
    /// `ALBRequestCountPerTarget`: requests per target per minute, of the
    /// target group the resource label names.
    AlbRequestCountPerTarget { resource_label: String },
    /// `HailServiceAverageConcurrency`: requests in flight per task.
    HailConcurrency,
}

/// The predefined metric types Hail tracks for ECS services.
pub const ECS_METRIC_TYPES: &[&str] = &[
    "ECSServiceAverageCPUUtilization",
    "ECSServiceAverageMemoryUtilization",
    "ALBRequestCountPerTarget",
    "ECSServiceAverageCPUUtilizationHighResolution",
    "ECSServiceAverageMemoryUtilizationHighResolution",
    HAIL_CONCURRENCY_METRIC,
];

/// Every predefined metric type the API defines, plus Hail's.
pub const METRIC_TYPES: &[&str] = &[
    "DynamoDBReadCapacityUtilization",
    "DynamoDBWriteCapacityUtilization",
    "ALBRequestCountPerTarget",
    "RDSReaderAverageCPUUtilization",
    "RDSReaderAverageDatabaseConnections",
    "EC2SpotFleetRequestAverageCPUUtilization",
    "EC2SpotFleetRequestAverageNetworkIn",
    "EC2SpotFleetRequestAverageNetworkOut",
    "SageMakerVariantInvocationsPerInstance",
    "ECSServiceAverageCPUUtilization",
    "ECSServiceAverageMemoryUtilization",
    "AppStreamAverageCapacityUtilization",
    "ComprehendInferenceUtilization",
    "LambdaProvisionedConcurrencyUtilization",
    "CassandraReadCapacityUtilization",
    "CassandraWriteCapacityUtilization",
    "KafkaBrokerStorageUtilization",
    "ElastiCacheEngineCPUUtilization",
    "ElastiCacheDatabaseMemoryUsagePercentage",
    "ElastiCachePrimaryEngineCPUUtilization",
    "ElastiCacheReplicaEngineCPUUtilization",
    "ElastiCacheDatabaseMemoryUsageCountedForEvictPercentage",
    "NeptuneReaderAverageCPUUtilization",
    "SageMakerVariantProvisionedConcurrencyUtilization",
    "ElastiCacheDatabaseCapacityUsageCountedForEvictPercentage",
    "SageMakerInferenceComponentInvocationsPerCopy",
    "WorkSpacesAverageUserSessionsCapacityUtilization",
    "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution",
    "SageMakerVariantConcurrentRequestsPerModelHighResolution",
    "ECSServiceAverageCPUUtilizationHighResolution",
    "ECSServiceAverageMemoryUtilizationHighResolution",
    HAIL_CONCURRENCY_METRIC,
];

impl PredefinedMetricSpecification {
    /// The metric this specification names, checked for an ECS service.
    pub fn metric(&self) -> Result<PredefinedMetric, ValidationError> {
        let kind = self.predefined_metric_type.as_str();
        check_enum(kind, "predefinedMetricType", METRIC_TYPES)?;
        let metric = match kind {
            "ECSServiceAverageCPUUtilization" | "ECSServiceAverageCPUUtilizationHighResolution" => {
                PredefinedMetric::EcsCpu
            }
            "ECSServiceAverageMemoryUtilization"
            | "ECSServiceAverageMemoryUtilizationHighResolution" => PredefinedMetric::EcsMemory,
            "ALBRequestCountPerTarget" => {
                let label = self.resource_label.as_deref().unwrap_or_default();
                if !is_target_group_label(label) {
                    return Err(ValidationError::new(format!(
                        "ResourceLabel {label:?} is not valid for ALBRequestCountPerTarget: it \
                         must be app/<load-balancer-name>/<load-balancer-id>/targetgroup/\
                         <target-group-name>/<target-group-id>"
                    )));
                }
                return Ok(PredefinedMetric::AlbRequestCountPerTarget {
                    resource_label: label.to_owned(),
                });
            }
            HAIL_CONCURRENCY_METRIC => PredefinedMetric::HailConcurrency,
            other => {
                return Err(ValidationError::new(format!(
                    "Predefined metric type {other} is not supported for service namespace ecs; \
                     use one of {}",
                    ECS_METRIC_TYPES.join(", ")
                )))
            }
        };
        if self.resource_label.is_some() {
            return Err(ValidationError::new(format!(
                "ResourceLabel is only valid with ALBRequestCountPerTarget, not {kind}"
            )));
        }
        Ok(metric)
    }
}

/// Whether `label` has the shape
/// `app/<lb-name>/<lb-id>/targetgroup/<tg-name>/<tg-id>`.
pub fn is_target_group_label(label: &str) -> bool {
    let parts: Vec<&str> = label.split('/').collect();
    label.len() <= 1023
        && parts.len() == 6
        && parts[0] == "app"
        && parts[3] == "targetgroup"
        && parts.iter().all(|p| !p.is_empty())
}

/// How a step adjustment changes capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustmentType {
    ChangeInCapacity,
    PercentChangeInCapacity,
    ExactCapacity,
}

/// How a step policy's metric samples are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricAggregation {
    Average,
    Minimum,
    Maximum,
}

/// A target tracking policy, checked and with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetTracking {
    pub metric: PredefinedMetric,
    pub target_value: f64,
    pub scale_out_cooldown_secs: u32,
    pub scale_in_cooldown_secs: u32,
    pub disable_scale_in: bool,
}

/// A step scaling policy, checked and with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StepScaling {
    pub adjustment_type: AdjustmentType,
    pub steps: Vec<StepAdjustment>,
    pub min_adjustment_magnitude: Option<u32>,
    pub cooldown_secs: u32,
    pub aggregation: MetricAggregation,
}

fn cooldown(value: Option<i64>, name: &str) -> Result<u32, ValidationError> {
    match value {
        None => Ok(DEFAULT_COOLDOWN_SECONDS),
        Some(n) if (0..=MAX_COOLDOWN_SECONDS).contains(&n) => Ok(n as u32),
        Some(n) => Err(ValidationError::new(format!(
            "{name} {n} is not between 0 and {MAX_COOLDOWN_SECONDS} seconds"
        ))),
    }
}

impl TargetTrackingScalingPolicyConfiguration {
    /// Checks the configuration and applies ECS's defaults.
    pub fn checked(&self) -> Result<TargetTracking, ValidationError> {
        if self.customized_metric_specification.is_some() {
            return Err(ValidationError::new(
                "CustomizedMetricSpecification is not supported by hail, which has no CloudWatch \
                 metrics; use a PredefinedMetricSpecification",
            ));
        }
        let spec = self
            .predefined_metric_specification
            .as_ref()
            .ok_or_else(|| {
                ValidationError::new(
                "Either PredefinedMetricSpecification or CustomizedMetricSpecification must be \
                 provided",
            )
            })?;
        let metric = spec.metric()?;
        let t = self.target_value;
        if !(t.is_finite() && (8.515_920e-109..=1.174_271e108).contains(&t)) {
            return Err(ValidationError::new(format!(
                "TargetValue {t} must be between 8.515920e-109 and 1.174271e+108"
            )));
        }
        Ok(TargetTracking {
            metric,
            target_value: t,
            scale_out_cooldown_secs: cooldown(self.scale_out_cooldown, "ScaleOutCooldown")?,
            scale_in_cooldown_secs: cooldown(self.scale_in_cooldown, "ScaleInCooldown")?,
            disable_scale_in: self.disable_scale_in.unwrap_or(false),
        })
    }
}

impl StepScalingPolicyConfiguration {
    /// Checks the configuration as AWS does (step ranges neither overlap nor
    /// leave gaps; at most one open lower and one open upper bound) and
    /// applies the defaults.
    pub fn checked(&self) -> Result<StepScaling, ValidationError> {
        let adjustment_type = match self.adjustment_type.as_deref() {
            None => {
                return Err(ValidationError::new(
                    "AdjustmentType is required for a step scaling policy",
                ))
            }
            Some(t) => {
                check_enum(
                    t,
                    "stepScalingPolicyConfiguration.adjustmentType",
                    ADJUSTMENT_TYPES,
                )?;
                match t {
                    "ChangeInCapacity" => AdjustmentType::ChangeInCapacity,
                    "PercentChangeInCapacity" => AdjustmentType::PercentChangeInCapacity,
                    _ => AdjustmentType::ExactCapacity,
                }
            }
        };
        let aggregation = match self.metric_aggregation_type.as_deref() {
            None | Some("Average") => MetricAggregation::Average,
            Some("Minimum") => MetricAggregation::Minimum,
            Some("Maximum") => MetricAggregation::Maximum,
            Some(other) => {
                return Err(ValidationError::not_in_enum(
                    other,
                    "stepScalingPolicyConfiguration.metricAggregationType",
                    METRIC_AGGREGATION_TYPES,
                ))
            }
        };
        let min_adjustment_magnitude = match self.min_adjustment_magnitude {
            None => None,
            Some(_) if adjustment_type != AdjustmentType::PercentChangeInCapacity => {
                return Err(ValidationError::new(
                    "MinAdjustmentMagnitude is only supported with PercentChangeInCapacity",
                ))
            }
            Some(n) if (1..=MAX_CAPACITY_LIMIT).contains(&n) => Some(n as u32),
            Some(n) => {
                return Err(ValidationError::new(format!(
                    "MinAdjustmentMagnitude {n} must be at least 1"
                )))
            }
        };
        let steps = self.step_adjustments.clone().unwrap_or_default();
        if steps.is_empty() {
            return Err(ValidationError::new(
                "At least one step adjustment is required for a step scaling policy",
            ));
        }
        check_steps(&steps)?;
        if adjustment_type == AdjustmentType::ExactCapacity
            && steps.iter().any(|s| s.scaling_adjustment < 0)
        {
            return Err(ValidationError::new(
                "ScalingAdjustment cannot be negative with ExactCapacity",
            ));
        }
        Ok(StepScaling {
            adjustment_type,
            steps,
            min_adjustment_magnitude,
            cooldown_secs: cooldown(self.cooldown, "Cooldown")?,
            aggregation,
        })
    }
}

fn check_steps(steps: &[StepAdjustment]) -> Result<(), ValidationError> {
    let mut ranges: Vec<(f64, f64)> = Vec::with_capacity(steps.len());
    for s in steps {
        let lower = s.metric_interval_lower_bound.unwrap_or(f64::NEG_INFINITY);
        let upper = s.metric_interval_upper_bound.unwrap_or(f64::INFINITY);
        if lower.is_nan() || upper.is_nan() || lower >= upper {
            return Err(ValidationError::new(
                "Step adjustment's MetricIntervalUpperBound must be greater than its \
                 MetricIntervalLowerBound",
            ));
        }
        if s.metric_interval_lower_bound.is_none() && s.metric_interval_upper_bound.is_none() {
            return Err(ValidationError::new(
                "A step adjustment must have a MetricIntervalLowerBound or a \
                 MetricIntervalUpperBound",
            ));
        }
        ranges.push((lower, upper));
    }
    ranges.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in ranges.windows(2) {
        if pair[0].1 > pair[1].0 {
            return Err(ValidationError::new(
                "Step adjustments' ranges cannot overlap",
            ));
        }
        if pair[0].1 < pair[1].0 {
            return Err(ValidationError::new(
                "Step adjustments' ranges cannot have a gap between them",
            ));
        }
    }
    Ok(())
}

/// The checked form of a stored policy.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyRule {
    TargetTracking(TargetTracking),
    Step(StepScaling),
}

impl ScalingPolicy {
    /// The rule this policy scales by; `None` for a policy type Hail does
    /// not act on.
    pub fn rule(&self) -> Option<Result<PolicyRule, ValidationError>> {
        match self.policy_type.as_str() {
            "TargetTrackingScaling" => self
                .target_tracking_scaling_policy_configuration
                .as_ref()
                .map(|c| c.checked().map(PolicyRule::TargetTracking)),
            "StepScaling" => self
                .step_scaling_policy_configuration
                .as_ref()
                .map(|c| c.checked().map(PolicyRule::Step)),
            _ => None,
        }
    }
}

/// Checks a policy name: 1–256 printable characters.
pub fn check_policy_name(name: &str) -> Result<(), ValidationError> {
    check_len(name, "policyName", 1, 256)?;
    if name.chars().any(char::is_control) {
        return Err(ValidationError::new(format!(
            "1 validation error detected: Value '{name}' at 'policyName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: \\p{{Print}}+"
        )));
    }
    Ok(())
}

/// How a step alarm compares its metric with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    pub fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::GreaterThanOrEqualToThreshold => value >= threshold,
            Self::GreaterThanThreshold => value > threshold,
            Self::LessThanThreshold => value < threshold,
            Self::LessThanOrEqualToThreshold => value <= threshold,
        }
    }
}

/// The alarm that drives a step scaling policy.
///
/// On AWS a step policy acts when a CloudWatch alarm whose action is the
/// policy's ARN goes to ALARM. Hail has no CloudWatch alarms; the alarm is
/// given instead as a tag of the scalable target, which every AWS client
/// can send: key `hail:stepAlarm:<policy name>`, value
/// `metric=<predefined metric type> comparison=<operator> threshold=<number>
/// [seconds=<evaluation seconds>] [label=<ALB resource label>]`, e.g.
/// `metric=ECSServiceAverageCPUUtilization comparison=GreaterThanOrEqualToThreshold threshold=80`.
/// The alarm is in ALARM when every sample of the last `seconds` (default
/// 3) breaches the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct StepAlarm {
    pub metric: PredefinedMetric,
    pub comparison: Comparison,
    pub threshold: f64,
    pub evaluation_secs: u32,
}

/// Evaluation window of a step alarm that names none, in seconds.
pub const DEFAULT_STEP_ALARM_SECONDS: u32 = 3;

impl StepAlarm {
    /// Parses a `hail:stepAlarm:` tag value.
    pub fn parse(value: &str) -> Result<StepAlarm, ValidationError> {
        let bad =
            |why: String| ValidationError::new(format!("step alarm {value:?} is not valid: {why}"));
        let mut fields = BTreeMap::new();
        for part in value.split_whitespace() {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
            if fields.insert(k, v).is_some() {
                return Err(bad(format!("{k} appears twice")));
            }
        }
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| bad(format!("{k} is missing")))
        };
        let spec = PredefinedMetricSpecification {
            predefined_metric_type: get("metric")?.to_owned(),
            resource_label: fields.get("label").map(|s| (*s).to_owned()),
        };
        let metric = spec.metric().map_err(|e| bad(e.message))?;
        let comparison = match get("comparison")? {
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqualToThreshold,
            "GreaterThanThreshold" => Comparison::GreaterThanThreshold,
            "LessThanThreshold" => Comparison::LessThanThreshold,
            "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqualToThreshold,
            other => {
                return Err(bad(format!(
                    "comparison {other} is not a CloudWatch operator"
                )))
            }
        };
        let threshold: f64 = get("threshold")?
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .ok_or_else(|| bad("threshold is not a number".into()))?;
        let evaluation_secs = match fields.get("seconds") {
            None => DEFAULT_STEP_ALARM_SECONDS,
            Some(s) => s
                .parse()
                .ok()
                .filter(|n| (1..=3600).contains(n))
                .ok_or_else(|| bad("seconds must be 1 to 3600".into()))?,
        };
        for k in fields.keys() {
            if !["metric", "comparison", "threshold", "seconds", "label"].contains(k) {
                return Err(bad(format!("unknown field {k}")));
            }
        }
        Ok(StepAlarm {
            metric,
            comparison,
            threshold,
            evaluation_secs,
        })
    }
}

// ---------------------------------------------------------------------------
// Scheduled actions

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScalableTargetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<i64>,
}

/// A scheduled action, as DescribeScheduledActions returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledAction {
    pub scheduled_action_name: String,
    #[serde(rename = "ScheduledActionARN")]
    pub scheduled_action_arn: String,
    pub service_namespace: String,
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub resource_id: String,
    pub scalable_dimension: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalable_target_action: Option<ScalableTargetAction>,
    pub creation_time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutScheduledActionInput {
    pub service_namespace: String,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    pub scheduled_action_name: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    #[serde(default)]
    pub end_time: Option<Timestamp>,
    #[serde(default)]
    pub scalable_target_action: Option<ScalableTargetAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeleteScheduledActionInput {
    pub service_namespace: String,
    pub scheduled_action_name: String,
    pub resource_id: String,
    pub scalable_dimension: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeScheduledActionsInput {
    #[serde(default)]
    pub scheduled_action_names: Option<Vec<String>>,
    pub service_namespace: String,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub scalable_dimension: Option<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// Checks a scheduled action name: 1–256 characters, no leading or
/// trailing spaces, no control characters and none of `: / |`.
pub fn check_scheduled_action_name(name: &str) -> Result<(), ValidationError> {
    check_len(name, "scheduledActionName", 1, 256)?;
    let bad = name.starts_with(' ')
        || name.ends_with(' ')
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, ':' | '/' | '|'));
    if bad {
        return Err(ValidationError::new(format!(
            "1 validation error detected: Value '{name}' at 'scheduledActionName' failed to \
             satisfy constraint: Member must not begin or end with a space and must not contain \
             control characters or any of : / |"
        )));
    }
    Ok(())
}

/// Checks a scheduled action's target action: at least one bound, each
/// non-negative, min not above max.
pub fn check_target_action(
    action: Option<ScalableTargetAction>,
) -> Result<ScalableTargetAction, ValidationError> {
    let action = action.unwrap_or_default();
    match (action.min_capacity, action.max_capacity) {
        (None, None) => Err(ValidationError::new(
            "At least one of minimum capacity and maximum capacity should be provided",
        )),
        (min, max) => {
            check_capacity_range(min.unwrap_or(0), max.unwrap_or(MAX_CAPACITY_LIMIT))?;
            Ok(action)
        }
    }
}

// ---------------------------------------------------------------------------
// Scaling activities

/// Where a scaling activity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityStatus {
    Pending,
    InProgress,
    Successful,
    Overridden,
    Unfulfilled,
    Failed,
}

/// One scaling activity, as DescribeScalingActivities returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingActivity {
    pub activity_id: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub description: String,
    pub cause: String,
    pub start_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    pub status_code: ActivityStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeScalingActivitiesInput {
    pub service_namespace: String,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub scalable_dimension: Option<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub next_token: Option<String>,
    /// Accepted; Hail records only activities that scaled (or failed to).
    #[serde(default)]
    pub include_not_scaled_activities: Option<bool>,
}

// ---------------------------------------------------------------------------
// The controller's memory of a target

/// One change of a target's capacity made by the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityChange {
    pub at: Timestamp,
    pub from: u32,
    pub to: u32,
}

/// What the controller remembers of a target between passes: its last
/// scale-out and scale-in (for cooldowns) and its last change of any kind
/// (metrics measured before it describe another capacity). Kept with the
/// target in the store, so cooldowns hold across a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingHistory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_out: Option<CapacityChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_in: Option<CapacityChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<CapacityChange>,
}

// ---------------------------------------------------------------------------
// Tagging

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
    pub tags: TagMap,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ListTagsForResourceInput {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keys_follow_the_api_enums_and_hail_scope() {
        let key = target_key("ecs", "service/c/s", "ecs:service:DesiredCount").unwrap();
        assert_eq!(key.resource_id, "service/c/s");
        let e = target_key("ecs", "service/c/s", "ecs:service:Desired").unwrap_err();
        assert!(
            e.message.starts_with(
                "1 validation error detected: Value 'ecs:service:Desired' at 'scalableDimension' \
                 failed to satisfy constraint: Member must satisfy enum value set: \
                 [ecs:service:DesiredCount, "
            ),
            "{e}"
        );
        let e = target_key("ecz", "service/c/s", "ecs:service:DesiredCount").unwrap_err();
        assert!(e.message.contains("at 'serviceNamespace'"), "{e}");
        for (ns, id, dim) in [
            ("ecs", "cluster/c/s", ECS_DESIRED_COUNT),
            ("ecs", "service/c", ECS_DESIRED_COUNT),
            ("ecs", "service/c/s/x", ECS_DESIRED_COUNT),
            ("ecs", "service/c/s", "dynamodb:table:ReadCapacityUnits"),
        ] {
            let e = target_key(ns, id, dim).unwrap_err();
            assert_eq!(
                e.message, "Unsupported service namespace, resource type or scalable dimension",
                "{ns} {id} {dim}"
            );
        }
        let e = target_key("dynamodb", "table/t", "dynamodb:table:ReadCapacityUnits").unwrap_err();
        assert!(e.message.contains("hail scales ECS services only"), "{e}");
    }

    #[test]
    fn registration_capacities_merge_and_are_checked() {
        assert_eq!(registered_capacity(Some(2), Some(4), None).unwrap(), (2, 4));
        assert!(registered_capacity(Some(2), None, None)
            .unwrap_err()
            .message
            .contains("required"));
        assert_eq!(
            registered_capacity(None, Some(9), Some((2, 4))).unwrap(),
            (2, 9)
        );
        assert_eq!(
            registered_capacity(Some(5), Some(4), None)
                .unwrap_err()
                .message,
            "Minimum capacity cannot be greater than maximum capacity"
        );
        assert_eq!(
            registered_capacity(Some(5), None, Some((1, 4)))
                .unwrap_err()
                .message,
            "Minimum capacity cannot be greater than maximum capacity"
        );
        assert!(registered_capacity(Some(-1), Some(4), None).is_err());
        assert!(registered_capacity(Some(0), Some(5001), None).is_err());
    }

    #[test]
    fn arns_and_alarm_names_look_like_aws_ones() {
        let id = new_scalable_target_id();
        assert_eq!(id.len(), 36);
        let arn = scalable_target_arn("us-east-1", "000000000000", &id);
        assert!(is_scalable_target_arn(&arn), "{arn}");
        assert!(!is_scalable_target_arn("arn:aws:ecs:us-east-1:0:cluster/x"));
        let uuid = new_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        let key = target_key("ecs", "service/c/s", ECS_DESIRED_COUNT).unwrap();
        let p = policy_arn("us-east-1", "000000000000", &key, "cpu");
        assert!(p.starts_with("arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:"));
        assert!(
            p.ends_with(":resource/ecs/service/c/s:policyName/cpu"),
            "{p}"
        );
        let alarms = target_tracking_alarms("us-east-1", "000000000000", "service/c/s", true);
        assert!(alarms[0]
            .alarm_name
            .starts_with("TargetTracking-service/c/s-AlarmHigh-"));
        assert!(alarms[1]
            .alarm_name
            .starts_with("TargetTracking-service/c/s-AlarmLow-"));
        assert_eq!(
            alarms[1].alarm_arn,
            format!(
                "arn:aws:cloudwatch:us-east-1:000000000000:alarm:{}",
                alarms[1].alarm_name
            )
        );
        assert_eq!(
            target_tracking_alarms("r", "a", "service/c/s", false).len(),
            1
        );
    }

    #[test]
    fn target_tracking_configuration_is_checked_with_defaults() {
        let config: TargetTrackingScalingPolicyConfiguration = serde_json::from_value(
            serde_json::json!({"TargetValue": 75.0, "PredefinedMetricSpecification":
                {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
                "ScaleOutCooldown": 60, "ScaleInCooldown": 60}),
        )
        .unwrap();
        let t = config.checked().unwrap();
        assert_eq!(t.metric, PredefinedMetric::EcsCpu);
        assert_eq!(
            (t.scale_out_cooldown_secs, t.scale_in_cooldown_secs),
            (60, 60)
        );
        assert!(!t.disable_scale_in);

        let mut c = config.clone();
        c.scale_in_cooldown = None;
        assert_eq!(c.checked().unwrap().scale_in_cooldown_secs, 300);
        c.predefined_metric_specification = Some(PredefinedMetricSpecification {
            predefined_metric_type: "ALBRequestCountPerTarget".into(),
            resource_label: None,
        });
        assert!(c.checked().unwrap_err().message.contains("ResourceLabel"));
        c.predefined_metric_specification = Some(PredefinedMetricSpecification {
            predefined_metric_type: "ALBRequestCountPerTarget".into(),
            resource_label: Some("app/lb/1/targetgroup/tg/2".into()),
        });
        assert!(matches!(
            c.checked().unwrap().metric,
            PredefinedMetric::AlbRequestCountPerTarget { .. }
        ));
        c.predefined_metric_specification = Some(PredefinedMetricSpecification {
            predefined_metric_type: HAIL_CONCURRENCY_METRIC.into(),
            resource_label: None,
        });
        assert_eq!(
            c.checked().unwrap().metric,
            PredefinedMetric::HailConcurrency
        );
        c.predefined_metric_specification = Some(PredefinedMetricSpecification {
            predefined_metric_type: "DynamoDBReadCapacityUtilization".into(),
            resource_label: None,
        });
        assert!(c.checked().unwrap_err().message.contains("not supported"));
        c.predefined_metric_specification = Some(PredefinedMetricSpecification {
            predefined_metric_type: "CPU".into(),
            resource_label: None,
        });
        assert!(c.checked().unwrap_err().message.contains("enum value set"));
        c.target_value = 0.0;
        assert!(c.checked().is_err());
    }

    fn step(lower: Option<f64>, upper: Option<f64>, adj: i64) -> StepAdjustment {
        StepAdjustment {
            metric_interval_lower_bound: lower,
            metric_interval_upper_bound: upper,
            scaling_adjustment: adj,
        }
    }

    #[test]
    fn step_configurations_need_contiguous_ranges() {
        let mut c = StepScalingPolicyConfiguration {
            adjustment_type: Some("ChangeInCapacity".into()),
            step_adjustments: Some(vec![
                step(Some(0.0), Some(10.0), 1),
                step(Some(10.0), None, 3),
            ]),
            min_adjustment_magnitude: None,
            cooldown: Some(30),
            metric_aggregation_type: None,
        };
        let s = c.checked().unwrap();
        assert_eq!(s.cooldown_secs, 30);
        assert_eq!(s.aggregation, MetricAggregation::Average);
        c.step_adjustments = Some(vec![
            step(Some(0.0), Some(10.0), 1),
            step(Some(5.0), None, 3),
        ]);
        assert!(c.checked().unwrap_err().message.contains("overlap"));
        c.step_adjustments = Some(vec![
            step(Some(0.0), Some(10.0), 1),
            step(Some(20.0), None, 3),
        ]);
        assert!(c.checked().unwrap_err().message.contains("gap"));
        c.step_adjustments = Some(vec![]);
        assert!(c.checked().is_err());
        c.step_adjustments = Some(vec![step(Some(0.0), None, 1)]);
        c.min_adjustment_magnitude = Some(2);
        assert!(c
            .checked()
            .unwrap_err()
            .message
            .contains("PercentChangeInCapacity"));
        c.adjustment_type = Some("PercentChangeInCapacity".into());
        assert_eq!(c.checked().unwrap().min_adjustment_magnitude, Some(2));
        c.adjustment_type = Some("Percent".into());
        assert!(c.checked().unwrap_err().message.contains("enum value set"));
    }

    #[test]
    fn step_alarms_parse_from_tag_values() {
        let a = StepAlarm::parse(
            "metric=ECSServiceAverageCPUUtilization comparison=GreaterThanOrEqualToThreshold threshold=80",
        )
        .unwrap();
        assert_eq!(a.metric, PredefinedMetric::EcsCpu);
        assert_eq!(a.threshold, 80.0);
        assert_eq!(a.evaluation_secs, DEFAULT_STEP_ALARM_SECONDS);
        assert!(a.comparison.breached(80.0, a.threshold));
        let a = StepAlarm::parse(
            "metric=HailServiceAverageConcurrency comparison=LessThanThreshold threshold=2 seconds=30",
        )
        .unwrap();
        assert_eq!(a.evaluation_secs, 30);
        assert!(!a.comparison.breached(2.0, 2.0));
        for bad in [
            "",
            "metric=ECSServiceAverageCPUUtilization threshold=1 comparison=Above",
            "metric=ECSServiceAverageCPUUtilization threshold=x comparison=LessThanThreshold",
            "metric=ECSServiceAverageCPUUtilization threshold=1 comparison=LessThanThreshold extra=1",
        ] {
            assert!(StepAlarm::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scheduled_action_names_and_target_actions() {
        check_scheduled_action_name("scale-out at nine").unwrap();
        for bad in ["", " x", "x ", "a:b", "a/b", "a|b"] {
            assert!(check_scheduled_action_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_target_action(None).unwrap_err().message,
            "At least one of minimum capacity and maximum capacity should be provided"
        );
        check_target_action(Some(ScalableTargetAction {
            min_capacity: Some(0),
            max_capacity: Some(0),
        }))
        .unwrap();
        assert!(check_target_action(Some(ScalableTargetAction {
            min_capacity: Some(3),
            max_capacity: Some(2),
        }))
        .is_err());
    }

    #[test]
    fn shapes_use_the_api_field_names() {
        let target = ScalableTarget {
            service_namespace: "ecs".into(),
            resource_id: "service/c/s".into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            min_capacity: 2,
            max_capacity: 4,
            role_arn: default_role_arn("000000000000"),
            creation_time: Timestamp::from_millis(1_500),
            suspended_state: SuspendedState::default(),
            scalable_target_arn: "arn".into(),
        };
        let v = serde_json::to_value(&target).unwrap();
        assert_eq!(v["RoleARN"], default_role_arn("000000000000"));
        assert_eq!(v["ScalableTargetARN"], "arn");
        assert_eq!(v["CreationTime"], 1.5);
        assert_eq!(v["SuspendedState"]["DynamicScalingInSuspended"], false);
        let input: RegisterScalableTargetInput = serde_json::from_value(serde_json::json!({
            "ServiceNamespace": "ecs", "ResourceId": "service/c/s",
            "ScalableDimension": ECS_DESIRED_COUNT, "MinCapacity": 1, "MaxCapacity": 3,
            "RoleARN": "arn:aws:iam::1:role/r",
            "SuspendedState": {"DynamicScalingInSuspended": true},
            "Tags": {"team": "beans"}
        }))
        .unwrap();
        let merged = SuspendedState::default().merged(input.suspended_state.unwrap());
        assert!(merged.dynamic_scaling_in_suspended && !merged.scheduled_scaling_suspended);
        assert_eq!(input.tags.unwrap()["team"], "beans");
    }
}
