//! Tasks: the `RunTask` input, the `Task` and `Container` shapes, their
//! lifecycles, and how a run's overrides change a definition's containers.
//!
//! # Hail extension: task timeout
//!
//! A task may carry the tag `hail:maxRuntimeSeconds` with a whole number of
//! seconds (1 to 31536000). Hail stops the task once it has run that long,
//! with stop code `HailMaxRuntimeExceeded` ([`StopCode::HailMaxRuntimeExceeded`]).
//! A tag rather than a new request field keeps `RunTask` bodies valid for the
//! real SDKs and CLI (`aws ecs run-task --tags key=hail:maxRuntimeSeconds,value=600`),
//! and ECS itself ignores the tag, so the same request works on AWS.

use serde::{Deserialize, Serialize};

use super::cluster::CapacityProviderStrategyItem;
use super::tags::{tag_value, validate_tags, Tag};
use super::task_definition::{
    parse_task_cpu, parse_task_memory, Compatibility, ContainerDefinition, EnvironmentFile,
    EphemeralStorage, KeyValuePair, NetworkMode, ResourceRequirement, TaskDefinition,
    TaskDefinitionStatus, TaskSize,
};
use super::timestamp::Timestamp;
use super::validate::{self, ValidationError, MIN_CONTAINER_MEMORY_MIB};
use crate::arn::{cluster_name, Scope, TaskDefinitionRef};

/// The tag that bounds a task's runtime, in seconds (a Hail extension).
pub const MAX_RUNTIME_TAG: &str = "hail:maxRuntimeSeconds";
/// Longest runtime the tag may ask for: a year.
pub const MAX_RUNTIME_LIMIT_SECS: u64 = 365 * 24 * 3600;
/// Most tasks one `RunTask` call may start.
pub const MAX_RUN_COUNT: u32 = 10;

/// The body of `RunTask`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunTaskInput {
    /// Cluster name or ARN; "default" when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `family`, `family:revision` or a task definition ARN.
    pub task_definition: String,
    /// How many tasks to start, 1–10; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<TaskOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(
        default,
        rename = "enableECSManagedTags",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ecs_managed_tags: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_execute_command: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<PropagateTags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

impl RunTaskInput {
    /// How many tasks the call starts.
    pub fn count(&self) -> u32 {
        self.count.unwrap_or(1)
    }

    /// The cluster name the call targets, resolving an ARN; "default" when absent.
    pub fn cluster_name(&self, scope: &Scope) -> Result<String, ValidationError> {
        match self.cluster.as_deref() {
            None => Ok(super::cluster::DEFAULT_CLUSTER_NAME.to_owned()),
            Some(c) => cluster_name(c, scope)
                .map_err(|e| ValidationError::invalid_parameter("cluster", e.to_string())),
        }
    }

    /// The task definition the call names.
    pub fn task_definition_ref(&self, scope: &Scope) -> Result<TaskDefinitionRef, ValidationError> {
        TaskDefinitionRef::parse(&self.task_definition, scope)
            .map_err(|e| ValidationError::invalid_parameter("taskDefinition", e.to_string()))
    }

    /// The runtime bound the `hail:maxRuntimeSeconds` tag asks for, if any.
    pub fn max_runtime_seconds(&self) -> Result<Option<u64>, ValidationError> {
        max_runtime_from_tags(self.tags.as_deref().unwrap_or_default(), "tags")
    }

    /// Checks the request on its own, before the task definition is looked up.
    pub fn validate(&self, scope: &Scope) -> Result<(), ValidationError> {
        self.task_definition_ref(scope)?;
        self.cluster_name(scope)?;
        let count = self.count();
        if !(1..=MAX_RUN_COUNT).contains(&count) {
            return Err(ValidationError::invalid_parameter(
                "count",
                format!("count {count} is outside 1 to {MAX_RUN_COUNT}"),
            ));
        }
        if self.launch_type.is_some() && self.capacity_provider_strategy.is_some() {
            return Err(ValidationError::invalid_parameter(
                "launchType",
                "Specifying both a launch type and capacity provider strategy is not supported. \
                 Remove one and try again.",
            ));
        }
        for (i, item) in self.capacity_provider_strategy.iter().flatten().enumerate() {
            item.validate(&format!("capacityProviderStrategy[{i}]"))?;
        }
        if let Some(s) = &self.started_by {
            let ok = s.chars().count() <= 36
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
            if !ok {
                return Err(ValidationError::invalid_parameter(
                    "startedBy",
                    format!(
                        "startedBy {s:?} must be up to 36 letters, numbers, hyphens, forward \
                         slashes and underscores"
                    ),
                ));
            }
        }
        if let Some(g) = &self.group {
            if g.is_empty() || g.chars().count() > 255 {
                return Err(ValidationError::invalid_parameter(
                    "group",
                    "group must be 1 to 255 characters",
                ));
            }
        }
        if let Some(t) = &self.client_token {
            if t.is_empty() || t.len() > 64 || !t.is_ascii() {
                return Err(ValidationError::invalid_parameter(
                    "clientToken",
                    "clientToken must be 1 to 64 ASCII characters",
                ));
            }
        }
        if let Some(tags) = &self.tags {
            validate_tags(tags, "tags")?;
        }
        self.max_runtime_seconds()?;
        if let Some(net) = &self.network_configuration {
            net.validate()?;
        }
        if let Some(o) = &self.overrides {
            o.validate()?;
        }
        if self
            .placement_constraints
            .as_ref()
            .is_some_and(|c| c.len() > 10)
        {
            return Err(ValidationError::invalid_parameter(
                "placementConstraints",
                "at most 10 placement constraints are allowed",
            ));
        }
        for (i, c) in self.placement_constraints.iter().flatten().enumerate() {
            if !matches!(
                c.constraint_type.as_deref(),
                Some("distinctInstance" | "memberOf")
            ) {
                return Err(ValidationError::invalid_parameter(
                    format!("placementConstraints[{i}].type"),
                    "placement constraint type must be distinctInstance or memberOf",
                ));
            }
        }
        if self
            .placement_strategy
            .as_ref()
            .is_some_and(|s| s.len() > 5)
        {
            return Err(ValidationError::invalid_parameter(
                "placementStrategy",
                "at most 5 placement strategies are allowed",
            ));
        }
        for (i, s) in self.placement_strategy.iter().flatten().enumerate() {
            if !matches!(
                s.strategy_type.as_deref(),
                Some("random" | "spread" | "binpack")
            ) {
                return Err(ValidationError::invalid_parameter(
                    format!("placementStrategy[{i}].type"),
                    "placement strategy type must be random, spread or binpack",
                ));
            }
        }
        Ok(())
    }

    /// Checks the request against the definition it resolved to: the
    /// revision is ACTIVE, an awsvpc definition gets a network configuration,
    /// the launch type is one the definition supports, and the overrides fit.
    pub fn check_against(&self, def: &TaskDefinition) -> Result<(), ValidationError> {
        if def.status != TaskDefinitionStatus::Active {
            return Err(ValidationError::client(
                "taskDefinition",
                "TaskDefinition is inactive",
            ));
        }
        if def.network_mode == Some(NetworkMode::Awsvpc) && self.network_configuration.is_none() {
            return Err(ValidationError::invalid_parameter(
                "networkConfiguration",
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ));
        }
        if let Some(launch) = self.launch_type {
            let needed = match launch {
                LaunchType::Ec2 => Compatibility::Ec2,
                LaunchType::Fargate => Compatibility::Fargate,
                LaunchType::External => Compatibility::External,
                LaunchType::ManagedInstances => Compatibility::ManagedInstances,
            };
            let supported = def.compatibilities.contains(&needed)
                || def
                    .requires_compatibilities
                    .as_ref()
                    .is_some_and(|c| c.contains(&needed));
            if !supported {
                return Err(ValidationError::invalid_parameter(
                    "launchType",
                    format!(
                        "Task definition does not support launch_type {}.",
                        launch.as_str()
                    ),
                ));
            }
        }
        effective_task_size(def, self.overrides.as_ref())?;
        effective_containers(def, self.overrides.as_ref())?;
        Ok(())
    }
}

/// The runtime bound in `tags`' `hail:maxRuntimeSeconds`, if present.
pub fn max_runtime_from_tags(tags: &[Tag], field: &str) -> Result<Option<u64>, ValidationError> {
    let Some(raw) = tag_value(tags, MAX_RUNTIME_TAG) else {
        return Ok(None);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=MAX_RUNTIME_LIMIT_SECS).contains(s))
        .map(Some)
        .ok_or_else(|| {
            ValidationError::invalid_parameter(
                field,
                format!(
                    "tag {MAX_RUNTIME_TAG} is {raw:?}: it must be a whole number of seconds \
                     from 1 to {MAX_RUNTIME_LIMIT_SECS}"
                ),
            )
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LaunchType {
    #[serde(rename = "EC2")]
    Ec2,
    #[serde(rename = "FARGATE")]
    Fargate,
    #[serde(rename = "EXTERNAL")]
    External,
    #[serde(rename = "MANAGED_INSTANCES")]
    ManagedInstances,
}

impl LaunchType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ec2 => "EC2",
            Self::Fargate => "FARGATE",
            Self::External => "EXTERNAL",
            Self::ManagedInstances => "MANAGED_INSTANCES",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PropagateTags {
    TaskDefinition,
    Service,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementConstraint {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub constraint_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementStrategy {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub strategy_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awsvpc_configuration: Option<AwsVpcConfiguration>,
}

impl NetworkConfiguration {
    fn validate(&self) -> Result<(), ValidationError> {
        let Some(vpc) = &self.awsvpc_configuration else {
            return Ok(());
        };
        if vpc.subnets.is_empty() || vpc.subnets.len() > 16 {
            return Err(ValidationError::invalid_parameter(
                "networkConfiguration.awsvpcConfiguration.subnets",
                "1 to 16 subnets are required",
            ));
        }
        if vpc.security_groups.as_ref().is_some_and(|g| g.len() > 5) {
            return Err(ValidationError::invalid_parameter(
                "networkConfiguration.awsvpcConfiguration.securityGroups",
                "at most 5 security groups are allowed",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsVpcConfiguration {
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_public_ip: Option<AssignPublicIp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignPublicIp {
    Enabled,
    Disabled,
}

/// Per-run changes to a task definition; echoed back in `Task.overrides`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskOverride {
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default)]
    pub inference_accelerator_overrides: Vec<InferenceAcceleratorOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
}

impl TaskOverride {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(c) = &self.cpu {
            parse_task_cpu(c)
                .map_err(|e| ValidationError::invalid_parameter("overrides.cpu", e.to_string()))?;
        }
        if let Some(m) = &self.memory {
            parse_task_memory(m).map_err(|e| {
                ValidationError::invalid_parameter("overrides.memory", e.to_string())
            })?;
        }
        if let Some(s) = &self.ephemeral_storage {
            if !validate::EPHEMERAL_STORAGE_RANGE_GIB.contains(&s.size_in_gib) {
                return Err(ValidationError::invalid_parameter(
                    "overrides.ephemeralStorage.sizeInGiB",
                    format!(
                        "ephemeral storage of {} GiB is outside the supported range of 21 to \
                         200 GiB",
                        s.size_in_gib
                    ),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, o) in self.container_overrides.iter().enumerate() {
            let field = format!("overrides.containerOverrides[{i}].name");
            let Some(name) = o.name.as_deref().filter(|n| !n.is_empty()) else {
                return Err(ValidationError::invalid_parameter(
                    field,
                    "a container override needs the name of the container it changes",
                ));
            };
            for (j, kv) in o.environment.iter().flatten().enumerate() {
                if kv.name.as_deref().is_none_or(str::is_empty) {
                    return Err(ValidationError::invalid_parameter(
                        format!("overrides.containerOverrides[{i}].environment[{j}].name"),
                        format!("container {name:?}: environment override {j} has no name"),
                    ));
                }
            }
            if !names.insert(name) {
                return Err(ValidationError::invalid_parameter(
                    field,
                    format!("container {name:?} is overridden more than once"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<KeyValuePair>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_files: Option<Vec<EnvironmentFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<Vec<ResourceRequirement>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceAcceleratorOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
}

/// A container as it will run: the definition with the run's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveContainer {
    pub name: String,
    pub image: String,
    pub essential: bool,
    pub entry_point: Option<Vec<String>>,
    /// The override's command when given, else the definition's.
    pub command: Option<Vec<String>>,
    /// The definition's variables, then the override's: a variable the
    /// override names replaces the definition's value in place.
    pub environment: Vec<(String, String)>,
    /// The definition's files followed by the override's.
    pub environment_files: Vec<EnvironmentFile>,
    pub cpu: u32,
    pub memory: Option<u32>,
    pub memory_reservation: Option<u32>,
    pub resource_requirements: Vec<ResourceRequirement>,
    /// The definition this container came from, for everything overrides
    /// cannot change (mounts, health check, logging, …).
    pub definition: ContainerDefinition,
}

/// Applies `overrides` to `def`'s containers, in definition order.
pub fn effective_containers(
    def: &TaskDefinition,
    overrides: Option<&TaskOverride>,
) -> Result<Vec<EffectiveContainer>, ValidationError> {
    let container_overrides = overrides
        .map(|o| o.container_overrides.as_slice())
        .unwrap_or_default();
    for (i, o) in container_overrides.iter().enumerate() {
        let name = o.name.as_deref().unwrap_or("");
        if !def.container_definitions.iter().any(|c| c.name() == name) {
            return Err(ValidationError::invalid_parameter(
                format!("overrides.containerOverrides[{i}].name"),
                format!(
                    "container override names {name:?}, which task definition {} does not have",
                    def.family_revision()
                ),
            ));
        }
    }
    def.container_definitions
        .iter()
        .map(|c| {
            let o = container_overrides
                .iter()
                .find(|o| o.name.as_deref() == Some(c.name()));
            let mut environment: Vec<(String, String)> = Vec::new();
            let pairs = c
                .environment
                .iter()
                .chain(o.and_then(|o| o.environment.as_deref()).unwrap_or_default());
            for kv in pairs {
                let name = kv.name.clone().unwrap_or_default();
                let value = kv.value.clone().unwrap_or_default();
                match environment.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = value,
                    None => environment.push((name, value)),
                }
            }
            let mut environment_files = c.environment_files.clone().unwrap_or_default();
            environment_files.extend(
                o.and_then(|o| o.environment_files.clone())
                    .unwrap_or_default(),
            );
            let memory = o.and_then(|o| o.memory).or(c.memory);
            let memory_reservation = o.and_then(|o| o.memory_reservation).or(c.memory_reservation);
            let at = |f: &str| format!("overrides.containerOverrides[{}].{f}", c.name());
            for (field, v) in [("memory", memory), ("memoryReservation", memory_reservation)] {
                if v.is_some_and(|v| v < MIN_CONTAINER_MEMORY_MIB) {
                    return Err(ValidationError::invalid_parameter(
                        at(field),
                        format!(
                            "container {:?}: {field} {} is below the minimum \
                             {MIN_CONTAINER_MEMORY_MIB} MiB",
                            c.name(),
                            v.unwrap_or_default()
                        ),
                    ));
                }
            }
            if let (Some(hard), Some(soft)) = (memory, memory_reservation) {
                if soft > hard {
                    return Err(ValidationError::invalid_parameter(
                        at("memoryReservation"),
                        format!(
                            "container {:?}: memoryReservation {soft} is greater than memory {hard}",
                            c.name()
                        ),
                    ));
                }
            }
            Ok(EffectiveContainer {
                name: c.name().to_owned(),
                image: c.image.clone().unwrap_or_default(),
                essential: c.is_essential(),
                entry_point: c.entry_point.clone(),
                command: o.and_then(|o| o.command.clone()).or_else(|| c.command.clone()),
                environment,
                environment_files,
                cpu: o.and_then(|o| o.cpu).unwrap_or(c.cpu),
                memory,
                memory_reservation,
                resource_requirements: o
                    .and_then(|o| o.resource_requirements.clone())
                    .or_else(|| c.resource_requirements.clone())
                    .unwrap_or_default(),
                definition: c.clone(),
            })
        })
        .collect()
}

/// The task size a run gets: the override's cpu/memory where given, else the
/// definition's; a Fargate definition's size must stay a Fargate combination.
pub fn effective_task_size(
    def: &TaskDefinition,
    overrides: Option<&TaskOverride>,
) -> Result<TaskSize, ValidationError> {
    let cpu = match overrides.and_then(|o| o.cpu.as_deref()) {
        Some(c) => Some(
            parse_task_cpu(c)
                .map_err(|e| ValidationError::invalid_parameter("overrides.cpu", e.to_string()))?,
        ),
        None => def.cpu_units(),
    };
    let memory =
        match overrides.and_then(|o| o.memory.as_deref()) {
            Some(m) => Some(parse_task_memory(m).map_err(|e| {
                ValidationError::invalid_parameter("overrides.memory", e.to_string())
            })?),
            None => def.memory_mib(),
        };
    let fargate = def
        .requires_compatibilities
        .as_ref()
        .is_some_and(|c| c.contains(&Compatibility::Fargate));
    if fargate {
        if let (Some(c), Some(m)) = (cpu, memory) {
            validate::check_fargate_combination(c, m).map_err(|e| ValidationError {
                field: "overrides".to_owned(),
                ..e
            })?;
        }
    }
    Ok(TaskSize { cpu, memory })
}

/// Where a task is in its life, in ECS's order. A task only moves forward,
/// though it may skip states (a task that fails to start goes from PENDING
/// straight to STOPPED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    /// Whether a task in this status may move to `next`: only to a later one.
    pub fn can_become(self, next: TaskStatus) -> bool {
        next > self
    }

    /// The word ECS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
        }
    }
}

/// A status change that would move a task or container backwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot go from {from} to {to}")]
pub struct TransitionError {
    pub what: String,
    pub from: &'static str,
    pub to: &'static str,
}

impl TaskStatus {
    /// Moves `self` to `next`, or says why it cannot; `what` names the task.
    pub fn transition(&mut self, next: TaskStatus, what: &str) -> Result<(), TransitionError> {
        if self.can_become(next) {
            *self = next;
            Ok(())
        } else {
            Err(TransitionError {
                what: what.to_owned(),
                from: self.as_str(),
                to: next.as_str(),
            })
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    Pending,
    Running,
    Stopped,
}

impl ContainerStatus {
    /// Whether a container in this status may move to `next`: only forward.
    pub fn can_become(self, next: ContainerStatus) -> bool {
        next > self
    }
}

/// Why a task stopped, in ECS's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    ServiceSchedulerInitiated,
    SpotInterruption,
    TerminationNotice,
    /// Hail extension: the task outlived its `hail:maxRuntimeSeconds` tag.
    /// The prefix keeps it apart from any code ECS may add.
    HailMaxRuntimeExceeded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Connectivity {
    Connected,
    Disconnected,
}

/// One item of `failures` in a response: what could not be done and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The response body of `RunTask` (and, with other tasks, `DescribeTasks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTaskOutput {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

/// A task as `RunTask` and `DescribeTasks` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_arn: String,
    pub cluster_arn: String,
    pub task_definition_arn: String,
    #[serde(default)]
    pub containers: Vec<Container>,
    pub last_status: TaskStatus,
    pub desired_status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<Connectivity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<StopCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Bumped on every change, so clients can order the events they see.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<TaskOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_execute_command: Option<bool>,
}

/// A container of a running or stopped task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub container_arn: String,
    pub task_arn: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    pub last_status: ContainerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub network_bindings: Vec<NetworkBinding>,
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    /// CPU units, as a string as ECS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Hard limit in MiB, as a string as ECS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Soft limit in MiB, as a string as ECS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    #[serde(default, rename = "bindIP", skip_serializing_if = "Option::is_none")]
    pub bind_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

/// Something attached to a task; for awsvpc tasks, its network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    #[serde(rename = "type")]
    pub attachment_type: String,
    pub status: String,
    #[serde(default)]
    pub details: Vec<KeyValuePair>,
}

/// The network interface of an awsvpc task, as ECS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniDetails {
    pub subnet_id: String,
    pub network_interface_id: String,
    pub mac_address: String,
    pub private_ipv4_address: String,
}

impl Attachment {
    /// An `ElasticNetworkInterface` attachment in `status` (ECS uses
    /// PRECREATED, ATTACHING, ATTACHED, DETACHING, DELETED).
    pub fn eni(id: impl Into<String>, status: impl Into<String>, eni: &EniDetails) -> Self {
        Self {
            id: id.into(),
            attachment_type: "ElasticNetworkInterface".to_owned(),
            status: status.into(),
            details: vec![
                KeyValuePair::new("subnetId", &eni.subnet_id),
                KeyValuePair::new("networkInterfaceId", &eni.network_interface_id),
                KeyValuePair::new("macAddress", &eni.mac_address),
                KeyValuePair::new("privateIPv4Address", &eni.private_ipv4_address),
            ],
        }
    }

    /// The value of detail `name`, if present.
    pub fn detail(&self, name: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|kv| kv.name.as_deref() == Some(name))
            .and_then(|kv| kv.value.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::ecs::decode::decode;
    use crate::ecs::task_definition::RegisterTaskDefinitionInput;
    use crate::ecs::validate::ErrorCode;

    const TOM_THUMB: &str = include_str!("../../testdata/tom-thumb-task.json");

    fn tom_thumb() -> TaskDefinition {
        let input: RegisterTaskDefinitionInput = decode(TOM_THUMB).unwrap();
        TaskDefinition::register(input, &Scope::default(), 3, Timestamp::from_secs(1), None)
            .unwrap()
            .0
    }

    /// What the workshop's invoker sends through boto3's `run_task`.
    fn invoker_request() -> Value {
        json!({
            "cluster": "default",
            "launchType": "FARGATE",
            "taskDefinition": "tom-thumb-task",
            "count": 1,
            "platformVersion": "LATEST",
            "networkConfiguration": {
                "awsvpcConfiguration": {"subnets": ["subnet-0123"], "assignPublicIp": "ENABLED"}
            },
            "overrides": {
                "containerOverrides": [{
                    "name": "tom-thumb-container",
                    "environment": [
                        {"name": "INPUT_VIDEO_FILE_URL", "value": "http://127.0.0.1:9000/bucket/video/cat.mp4"},
                        {"name": "OUTPUT_THUMBS_FILE_NAME", "value": "thumbnail_cat_1732797623_4821.png"}
                    ]
                }]
            }
        })
    }

    fn run_input(v: &Value) -> RunTaskInput {
        decode(&v.to_string()).unwrap()
    }

    #[test]
    fn invoker_request_is_accepted() {
        let input = run_input(&invoker_request());
        let scope = Scope::default();
        input.validate(&scope).unwrap();
        input.check_against(&tom_thumb()).unwrap();
        assert_eq!(input.count(), 1);
        assert_eq!(input.cluster_name(&scope).unwrap(), "default");
        assert_eq!(
            input.task_definition_ref(&scope).unwrap().to_string(),
            "tom-thumb-task"
        );
        assert_eq!(input.max_runtime_seconds().unwrap(), None);
        // The body echoes as sent.
        assert_eq!(serde_json::to_value(&input).unwrap(), {
            let mut v = invoker_request();
            v["overrides"]["inferenceAcceleratorOverrides"] = json!([]);
            v
        });
    }

    #[test]
    fn enable_ecs_managed_tags_keeps_its_wire_name() {
        let input = run_input(&json!({"taskDefinition": "t", "enableECSManagedTags": true}));
        assert_eq!(input.enable_ecs_managed_tags, Some(true));
        let err = decode::<RunTaskInput>(r#"{"taskDefinition":"t","enableEcsManagedTags":true}"#)
            .unwrap_err();
        assert_eq!(err.unknown_field.as_deref(), Some("enableEcsManagedTags"));
    }

    #[test]
    fn environment_overrides_merge_by_name() {
        let input = run_input(&invoker_request());
        let containers = effective_containers(&tom_thumb(), input.overrides.as_ref()).unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(c.name, "tom-thumb-container");
        assert!(c.essential);
        let env: Vec<(&str, &str)> = c
            .environment
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("AWS_REGION", "us-east-1"),
                (
                    "INPUT_VIDEO_FILE_URL",
                    "http://127.0.0.1:9000/bucket/video/cat.mp4"
                ),
                ("OUTPUT_S3_PATH", "tom-thumb-bucket/thumbnail"),
                (
                    "OUTPUT_THUMBS_FILE_NAME",
                    "thumbnail_cat_1732797623_4821.png"
                ),
                ("POSITION_TIME_DURATION", "00:01"),
            ]
        );
    }

    #[test]
    fn command_cpu_and_memory_overrides_replace() {
        let mut def = tom_thumb();
        def.container_definitions[0].command = Some(vec!["thumb".into()]);
        def.container_definitions[0].memory = Some(512);
        def.container_definitions[0].cpu = 128;
        let overrides = TaskOverride {
            container_overrides: vec![ContainerOverride {
                name: Some("tom-thumb-container".into()),
                command: Some(vec!["thumb".into(), "--fast".into()]),
                environment: Some(vec![KeyValuePair::new("EXTRA", "1")]),
                cpu: Some(256),
                memory: Some(768),
                memory_reservation: Some(256),
                ..Default::default()
            }],
            ..Default::default()
        };
        let c = &effective_containers(&def, Some(&overrides)).unwrap()[0];
        assert_eq!(
            c.command.as_deref(),
            Some(&["thumb".to_owned(), "--fast".to_owned()][..])
        );
        assert_eq!(
            (c.cpu, c.memory, c.memory_reservation),
            (256, Some(768), Some(256))
        );
        assert_eq!(
            c.environment.last().unwrap(),
            &("EXTRA".to_owned(), "1".to_owned())
        );
        assert_eq!(c.environment.len(), 6);
        // Without overrides the definition's values stand.
        let c = &effective_containers(&def, None).unwrap()[0];
        assert_eq!(c.command.as_deref(), Some(&["thumb".to_owned()][..]));
        assert_eq!(
            (c.cpu, c.memory, c.memory_reservation),
            (128, Some(512), None)
        );
    }

    #[test]
    fn override_of_unknown_container_is_refused() {
        let mut req = invoker_request();
        req["overrides"]["containerOverrides"][0]["name"] = json!("tom-thumb");
        let input = run_input(&req);
        let err = effective_containers(&tom_thumb(), input.overrides.as_ref()).unwrap_err();
        assert_eq!(err.field, "overrides.containerOverrides[0].name");
        assert_eq!(
            err.message,
            "container override names \"tom-thumb\", which task definition tom-thumb-task:3 does \
             not have"
        );
        assert_eq!(err.code, ErrorCode::InvalidParameterException);
        assert!(input.check_against(&tom_thumb()).is_err());
    }

    #[test]
    fn override_memory_must_stay_consistent() {
        let overrides = TaskOverride {
            container_overrides: vec![ContainerOverride {
                name: Some("tom-thumb-container".into()),
                memory: Some(128),
                memory_reservation: Some(256),
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = effective_containers(&tom_thumb(), Some(&overrides)).unwrap_err();
        assert!(err.message.contains("greater than memory 128"), "{err}");
        let overrides = TaskOverride {
            container_overrides: vec![ContainerOverride {
                name: Some("tom-thumb-container".into()),
                memory: Some(4),
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = effective_containers(&tom_thumb(), Some(&overrides)).unwrap_err();
        assert!(err.message.contains("below the minimum 6 MiB"), "{err}");
    }

    #[test]
    fn task_size_overrides() {
        let def = tom_thumb();
        assert_eq!(
            effective_task_size(&def, None).unwrap(),
            TaskSize {
                cpu: Some(256),
                memory: Some(1024)
            }
        );
        let o = TaskOverride {
            cpu: Some("0.5 vCPU".into()),
            memory: Some("4 GB".into()),
            ..Default::default()
        };
        assert_eq!(
            effective_task_size(&def, Some(&o)).unwrap(),
            TaskSize {
                cpu: Some(512),
                memory: Some(4096)
            }
        );
        let o = TaskOverride {
            memory: Some("4096".into()),
            ..Default::default()
        };
        let err = effective_task_size(&def, Some(&o)).unwrap_err();
        assert!(
            err.message.starts_with("No Fargate configuration exists"),
            "{err}"
        );
    }

    #[test]
    fn run_task_validation_failures() {
        let scope = Scope::default();
        let cases: Vec<(&str, Value)> = vec![
            ("count", json!({"count": 0})),
            ("count", json!({"count": 11})),
            ("taskDefinition", json!({"taskDefinition": "tom thumb"})),
            (
                "taskDefinition",
                json!({"taskDefinition": "tom-thumb-task:0"}),
            ),
            ("cluster", json!({"cluster": "no/such"})),
            ("startedBy", json!({"startedBy": "x".repeat(37)})),
            ("startedBy", json!({"startedBy": "has space"})),
            (
                "launchType",
                json!({"capacityProviderStrategy": [{"capacityProvider": "FARGATE"}]}),
            ),
            (
                "tags[0].key",
                json!({"tags": [{"key": "aws:x", "value": "y"}]}),
            ),
            (
                "tags",
                json!({"tags": [{"key": "hail:maxRuntimeSeconds", "value": "soon"}]}),
            ),
            (
                "tags",
                json!({"tags": [{"key": "hail:maxRuntimeSeconds", "value": "0"}]}),
            ),
            (
                "networkConfiguration.awsvpcConfiguration.subnets",
                json!({"networkConfiguration": {"awsvpcConfiguration": {"subnets": []}}}),
            ),
            ("overrides.cpu", json!({"overrides": {"cpu": "fast"}})),
            (
                "overrides.containerOverrides[0].name",
                json!({"overrides": {"containerOverrides": [{"command": ["x"]}]}}),
            ),
            (
                "overrides.containerOverrides[1].name",
                json!({"overrides": {"containerOverrides": [{"name": "a"}, {"name": "a"}]}}),
            ),
            (
                "overrides.ephemeralStorage.sizeInGiB",
                json!({"overrides": {"ephemeralStorage": {"sizeInGiB": 500}}}),
            ),
            ("clientToken", json!({"clientToken": "t".repeat(65)})),
            (
                "overrides.containerOverrides[0].environment[0].name",
                json!({"overrides": {"containerOverrides": [{"name": "a", "environment": [{"value": "v"}]}]}}),
            ),
            (
                "placementStrategy[0].type",
                json!({"placementStrategy": [{"type": "nearest"}]}),
            ),
        ];
        for (field, change) in cases {
            let mut req = invoker_request();
            for (k, v) in change.as_object().unwrap() {
                req[k] = v.clone();
            }
            let err = run_input(&req)
                .validate(&scope)
                .expect_err(&format!("{change} should fail"));
            assert_eq!(err.field, field, "{change}: {err}");
        }
    }

    #[test]
    fn max_runtime_tag() {
        let mut req = invoker_request();
        req["tags"] = json!([{"key": "hail:maxRuntimeSeconds", "value": "600"}]);
        let input = run_input(&req);
        input.validate(&Scope::default()).unwrap();
        assert_eq!(input.max_runtime_seconds().unwrap(), Some(600));
        let too_long = [Tag::new(
            MAX_RUNTIME_TAG,
            (MAX_RUNTIME_LIMIT_SECS + 1).to_string(),
        )];
        assert!(max_runtime_from_tags(&too_long, "tags").is_err());
    }

    #[test]
    fn check_against_definition() {
        let def = tom_thumb();
        let mut req = invoker_request();
        req.as_object_mut().unwrap().remove("networkConfiguration");
        let err = run_input(&req).check_against(&def).unwrap_err();
        assert_eq!(err.field, "networkConfiguration");

        let mut ec2_only = def.clone();
        ec2_only.compatibilities = vec![Compatibility::Ec2];
        ec2_only.requires_compatibilities = None;
        let err = run_input(&invoker_request())
            .check_against(&ec2_only)
            .unwrap_err();
        assert_eq!(
            err.message,
            "Task definition does not support launch_type FARGATE."
        );

        let mut inactive = def;
        inactive.status = TaskDefinitionStatus::Inactive;
        let err = run_input(&invoker_request())
            .check_against(&inactive)
            .unwrap_err();
        assert_eq!(err.message, "TaskDefinition is inactive");
    }

    #[test]
    fn task_status_only_moves_forward() {
        use TaskStatus::*;
        let order = [
            Provisioning,
            Pending,
            Activating,
            Running,
            Deactivating,
            Stopping,
            Deprovisioning,
            Stopped,
        ];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(a.can_become(*b), j > i, "{a:?} -> {b:?}");
            }
        }
        let mut s = Pending;
        s.transition(Stopped, "task abc").unwrap();
        assert_eq!(s, Stopped);
        let err = s.transition(Running, "task abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "task abc cannot go from STOPPED to RUNNING"
        );
        assert_eq!(
            serde_json::to_value(Deprovisioning).unwrap(),
            "DEPROVISIONING"
        );
        assert!(ContainerStatus::Pending.can_become(ContainerStatus::Stopped));
        assert!(!ContainerStatus::Stopped.can_become(ContainerStatus::Running));
    }

    #[test]
    fn stop_codes_use_ecs_words() {
        assert_eq!(
            serde_json::to_value(StopCode::EssentialContainerExited).unwrap(),
            "EssentialContainerExited"
        );
        assert_eq!(
            serde_json::to_value(StopCode::HailMaxRuntimeExceeded).unwrap(),
            "HailMaxRuntimeExceeded"
        );
        let c: StopCode = serde_json::from_value(json!("TaskFailedToStart")).unwrap();
        assert_eq!(c, StopCode::TaskFailedToStart);
    }

    #[test]
    fn task_output_shape() {
        let scope = Scope::default();
        let id = "0123456789abcdef0123456789abcdef";
        let task_arn = scope.task_arn("default", id);
        let task = Task {
            task_arn: task_arn.clone(),
            cluster_arn: scope.cluster_arn("default"),
            task_definition_arn: scope.task_definition_arn("tom-thumb-task", 3),
            containers: vec![Container {
                container_arn: scope.container_arn(
                    "default",
                    id,
                    "c0ffee00-0000-4000-8000-000000000001",
                ),
                task_arn: task_arn.clone(),
                name: "tom-thumb-container".into(),
                image: Some("tom-thumb:latest".into()),
                image_digest: None,
                runtime_id: None,
                last_status: ContainerStatus::Stopped,
                exit_code: Some(0),
                reason: None,
                network_bindings: vec![],
                network_interfaces: vec![NetworkInterface {
                    attachment_id: Some("eni-att-1".into()),
                    private_ipv4_address: Some("10.88.0.5".into()),
                    ipv6_address: None,
                }],
                health_status: Some(HealthStatus::Unknown),
                cpu: Some("0".into()),
                memory: None,
                memory_reservation: None,
            }],
            last_status: TaskStatus::Stopped,
            desired_status: TaskStatus::Stopped,
            cpu: Some("256".into()),
            memory: Some("1024".into()),
            launch_type: Some(LaunchType::Fargate),
            capacity_provider_name: None,
            platform_version: Some("1.4.0".into()),
            platform_family: Some("Linux".into()),
            connectivity: Some(Connectivity::Connected),
            connectivity_at: Some(Timestamp::from_millis(1_732_797_623_100)),
            pull_started_at: None,
            pull_stopped_at: None,
            created_at: Some(Timestamp::from_millis(1_732_797_623_000)),
            started_at: Some(Timestamp::from_millis(1_732_797_623_250)),
            stopping_at: Some(Timestamp::from_millis(1_732_797_633_000)),
            stopped_at: Some(Timestamp::from_millis(1_732_797_633_500)),
            execution_stopped_at: Some(Timestamp::from_millis(1_732_797_633_400)),
            stop_code: Some(StopCode::EssentialContainerExited),
            stopped_reason: Some("Essential container in task exited".into()),
            group: Some("family:tom-thumb-task".into()),
            started_by: None,
            tags: vec![],
            attachments: vec![Attachment::eni(
                "eni-att-1",
                "DELETED",
                &EniDetails {
                    subnet_id: "subnet-0123".into(),
                    network_interface_id: "eni-0a1b".into(),
                    mac_address: "02:42:0a:58:00:05".into(),
                    private_ipv4_address: "10.88.0.5".into(),
                },
            )],
            availability_zone: Some("us-east-1a".into()),
            version: 5,
            overrides: Some(TaskOverride::default()),
            ephemeral_storage: Some(EphemeralStorage { size_in_gib: 20 }),
            health_status: Some(HealthStatus::Unknown),
            enable_execute_command: Some(false),
        };
        let v = serde_json::to_value(&task).unwrap();
        assert_eq!(v["createdAt"], json!(1_732_797_623));
        assert_eq!(v["startedAt"], json!(1_732_797_623.25));
        assert_eq!(v["lastStatus"], "STOPPED");
        assert_eq!(v["stopCode"], "EssentialContainerExited");
        assert_eq!(v["launchType"], "FARGATE");
        assert_eq!(v["connectivity"], "CONNECTED");
        assert_eq!(v["containers"][0]["exitCode"], 0);
        assert_eq!(v["containers"][0]["lastStatus"], "STOPPED");
        assert_eq!(
            v["containers"][0]["networkInterfaces"][0]["privateIpv4Address"],
            "10.88.0.5"
        );
        assert_eq!(v["attachments"][0]["type"], "ElasticNetworkInterface");
        assert_eq!(
            v["attachments"][0]["details"][3],
            json!({"name": "privateIPv4Address", "value": "10.88.0.5"})
        );
        assert_eq!(
            task.attachments[0].detail("networkInterfaceId"),
            Some("eni-0a1b")
        );
        assert_eq!(
            v["overrides"],
            json!({"containerOverrides": [], "inferenceAcceleratorOverrides": []})
        );
        for absent in ["pullStartedAt", "startedBy", "capacityProviderName"] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
        assert!(v["containers"][0].get("memory").is_none());
        let back: Task = serde_json::from_value(v).unwrap();
        assert_eq!(back, task);
        let out = RunTaskOutput {
            tasks: vec![],
            failures: vec![Failure {
                arn: Some(scope.task_definition_arn("gone", 1)),
                reason: Some("MISSING".into()),
                detail: None,
            }],
        };
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"tasks": [], "failures": [{"arn": "arn:aws:ecs:us-east-1:000000000000:task-definition/gone:1", "reason": "MISSING"}]})
        );
    }
}
