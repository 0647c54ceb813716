//! Services: the `CreateService` / `UpdateService` / `DeleteService` /
//! `DescribeServices` / `ListServices` inputs and the `Service` and
//! `Deployment` shapes, with ECS's defaults, limits and words.
//!
//! A service keeps `desiredCount` copies of a task definition running. Each
//! change of what runs (task definition, network configuration, a forced new
//! deployment) starts a new *deployment*, the `PRIMARY` one; the earlier ones
//! become `ACTIVE` until their tasks are replaced, then go away. Tasks carry
//! their deployment's id as `startedBy` and `service:<name>` as `group`, as on
//! ECS.
//!
//! # Hail extension: pause
//!
//! `desiredCount` 0 is ECS's way to pause a service, but it forgets the count
//! to come back to. Hail's native `PauseService` keeps it in
//! [`Service::paused_desired_count`] (reported as `hailPausedDesiredCount`,
//! a field SDKs ignore) and `ResumeService` restores it.

use serde::{Deserialize, Serialize};

use super::cluster::CapacityProviderStrategyItem;
use super::tags::{validate_tags, Tag};
use super::task::{
    LaunchType, NetworkConfiguration, PlacementConstraint, PlacementStrategy, PropagateTags,
};
use super::timestamp::Timestamp;
use super::validate::{is_valid_name, ValidationError};
use crate::arn::{cluster_name, Scope, TaskDefinitionRef};

/// Most services `DescribeServices` describes at once.
pub const MAX_DESCRIBE_SERVICES: usize = 10;
/// Most events a service keeps, newest first.
pub const MAX_SERVICE_EVENTS: usize = 100;
/// ECS's default deployment limits for a REPLICA service.
pub const DEFAULT_MAXIMUM_PERCENT: u32 = 200;
pub const DEFAULT_MINIMUM_HEALTHY_PERCENT: u32 = 100;
/// A desired count ECS accepts at most (its service quota).
pub const MAX_DESIRED_COUNT: u32 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStatus {
    Active,
    Draining,
    Inactive,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Active => "ACTIVE",
            ServiceStatus::Draining => "DRAINING",
            ServiceStatus::Inactive => "INACTIVE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    Primary,
    Active,
    Inactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    Completed,
    Failed,
    InProgress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SchedulingStrategy {
    #[default]
    Replica,
    Daemon,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentCircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentAlarms {
    #[serde(default)]
    pub alarm_names: Vec<String>,
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub rollback: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_circuit_breaker: Option<DeploymentCircuitBreaker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_healthy_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<DeploymentAlarms>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time_in_minutes: Option<u32>,
}

impl DeploymentConfiguration {
    pub fn maximum_percent(&self) -> u32 {
        self.maximum_percent.unwrap_or(DEFAULT_MAXIMUM_PERCENT)
    }

    pub fn minimum_healthy_percent(&self) -> u32 {
        self.minimum_healthy_percent
            .unwrap_or(DEFAULT_MINIMUM_HEALTHY_PERCENT)
    }

    /// Whether failed deployments stop (and roll back) automatically.
    pub fn circuit_breaker(&self) -> Option<&DeploymentCircuitBreaker> {
        self.deployment_circuit_breaker
            .as_ref()
            .filter(|c| c.enable)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let max = self.maximum_percent();
        let min = self.minimum_healthy_percent();
        if !(100..=2000).contains(&max) && max != 0 {
            return Err(ValidationError::invalid_parameter(
                "deploymentConfiguration.maximumPercent",
                format!("maximumPercent {max} must be between 100 and 2000"),
            ));
        }
        if min > 100 {
            return Err(ValidationError::invalid_parameter(
                "deploymentConfiguration.minimumHealthyPercent",
                format!("minimumHealthyPercent {min} must be between 0 and 100"),
            ));
        }
        if max <= min && max != 0 {
            return Err(ValidationError::invalid_parameter(
                "deploymentConfiguration",
                format!(
                    "maximumPercent {max} must be greater than minimumHealthyPercent {min}, or \
                     no task could ever be replaced"
                ),
            ));
        }
        if let Some(s) = &self.strategy {
            if s != "ROLLING" {
                return Err(ValidationError::invalid_parameter(
                    "deploymentConfiguration.strategy",
                    format!("deployment strategy {s} is not supported; use ROLLING"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentController {
    #[serde(rename = "type")]
    pub controller_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRegistry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
}

/// The body of `CreateService`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateServiceInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancers: Option<Vec<LoadBalancer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_registries: Option<Vec<ServiceRegistry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_strategy: Option<SchedulingStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_controller: Option<DeploymentController>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(
        default,
        rename = "enableECSManagedTags",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ecs_managed_tags: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<PropagateTags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_execute_command: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone_rebalancing: Option<String>,
}

impl CreateServiceInput {
    pub fn cluster_name(&self, scope: &Scope) -> Result<String, ValidationError> {
        optional_cluster(self.cluster.as_deref(), scope)
    }

    pub fn task_definition_ref(&self, scope: &Scope) -> Result<TaskDefinitionRef, ValidationError> {
        let Some(def) = &self.task_definition else {
            return Err(ValidationError::invalid_parameter(
                "taskDefinition",
                "A task definition must be specified for a service using the ECS deployment \
                 controller.",
            ));
        };
        TaskDefinitionRef::parse(def, scope)
            .map_err(|e| ValidationError::invalid_parameter("taskDefinition", e.to_string()))
    }

    pub fn validate(&self, scope: &Scope) -> Result<(), ValidationError> {
        self.cluster_name(scope)?;
        if !is_valid_name(&self.service_name) {
            return Err(ValidationError::invalid_parameter(
                "serviceName",
                "Service name must be 1 to 255 letters (uppercase and lowercase), numbers, \
                 hyphens and underscores.",
            ));
        }
        if self.scheduling_strategy == Some(SchedulingStrategy::Daemon) {
            return Err(ValidationError::invalid_parameter(
                "schedulingStrategy",
                "The DAEMON scheduling strategy places one task per container instance; this \
                 engine has no container instances. Use REPLICA.",
            ));
        }
        if let Some(c) = &self.deployment_controller {
            if c.controller_type != "ECS" {
                return Err(ValidationError::invalid_parameter(
                    "deploymentController.type",
                    format!(
                        "deployment controller {} is not supported; use ECS",
                        c.controller_type
                    ),
                ));
            }
        }
        self.task_definition_ref(scope)?;
        validate_desired_count(self.desired_count)?;
        if self.launch_type.is_some() && self.capacity_provider_strategy.is_some() {
            return Err(ValidationError::invalid_parameter(
                "launchType",
                "Specifying both a launch type and capacity provider strategy is not supported. \
                 Remove one and try again.",
            ));
        }
        if let Some(d) = &self.deployment_configuration {
            d.validate()?;
        }
        validate_load_balancers(self.load_balancers.as_deref().unwrap_or_default())?;
        if let Some(tags) = &self.tags {
            validate_tags(tags, "tags")?;
        }
        if let Some(t) = &self.client_token {
            if t.is_empty() || t.len() > 36 || !t.is_ascii() {
                return Err(ValidationError::invalid_parameter(
                    "clientToken",
                    "clientToken must be 1 to 36 ASCII characters",
                ));
            }
        }
        Ok(())
    }
}

/// The body of `UpdateService`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateServiceInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_new_deployment: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_execute_command: Option<bool>,
    #[serde(
        default,
        rename = "enableECSManagedTags",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ecs_managed_tags: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancers: Option<Vec<LoadBalancer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<PropagateTags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_registries: Option<Vec<ServiceRegistry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone_rebalancing: Option<String>,
}

impl UpdateServiceInput {
    pub fn cluster_name(&self, scope: &Scope) -> Result<String, ValidationError> {
        optional_cluster(self.cluster.as_deref(), scope)
    }

    pub fn service_name(&self) -> Result<String, ValidationError> {
        service_name_of(&self.service, "service")
    }

    pub fn task_definition_ref(
        &self,
        scope: &Scope,
    ) -> Result<Option<TaskDefinitionRef>, ValidationError> {
        self.task_definition
            .as_deref()
            .map(|d| {
                TaskDefinitionRef::parse(d, scope).map_err(|e| {
                    ValidationError::invalid_parameter("taskDefinition", e.to_string())
                })
            })
            .transpose()
    }

    pub fn validate(&self, scope: &Scope) -> Result<(), ValidationError> {
        self.cluster_name(scope)?;
        self.service_name()?;
        self.task_definition_ref(scope)?;
        validate_desired_count(self.desired_count)?;
        if let Some(d) = &self.deployment_configuration {
            d.validate()?;
        }
        if let Some(lbs) = &self.load_balancers {
            validate_load_balancers(lbs)?;
        }
        Ok(())
    }

    /// Whether the update changes what runs, and so starts a deployment.
    pub fn starts_deployment(&self) -> bool {
        self.task_definition.is_some()
            || self.network_configuration.is_some()
            || self.platform_version.is_some()
            || self.load_balancers.is_some()
            || self.force_new_deployment == Some(true)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteServiceInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

impl DeleteServiceInput {
    pub fn cluster_name(&self, scope: &Scope) -> Result<String, ValidationError> {
        optional_cluster(self.cluster.as_deref(), scope)
    }

    pub fn service_name(&self) -> Result<String, ValidationError> {
        service_name_of(&self.service, "service")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DescribeServicesInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
}

impl DescribeServicesInput {
    pub fn cluster_name(&self, scope: &Scope) -> Result<String, ValidationError> {
        optional_cluster(self.cluster.as_deref(), scope)
    }

    pub fn validate(&self, scope: &Scope) -> Result<(), ValidationError> {
        self.cluster_name(scope)?;
        if self.services.is_empty() || self.services.len() > MAX_DESCRIBE_SERVICES {
            return Err(ValidationError::invalid_parameter(
                "services",
                format!("services must name 1 to {MAX_DESCRIBE_SERVICES} services"),
            ));
        }
        if let Some(include) = &self.include {
            if include.iter().any(|i| i != "TAGS") {
                return Err(ValidationError::invalid_parameter(
                    "include",
                    "include may only contain TAGS",
                ));
            }
        }
        Ok(())
    }

    pub fn include_tags(&self) -> bool {
        self.include
            .as_ref()
            .is_some_and(|i| i.iter().any(|x| x == "TAGS"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListServicesInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_strategy: Option<SchedulingStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_management_type: Option<String>,
}

impl ListServicesInput {
    pub fn cluster_name(&self, scope: &Scope) -> Result<String, ValidationError> {
        optional_cluster(self.cluster.as_deref(), scope)
    }
}

/// One deployment of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/` and 19 digits; the `startedBy` of its tasks.
    pub id: String,
    pub status: DeploymentStatus,
    pub task_definition: String,
    pub desired_count: u32,
    pub pending_count: u32,
    pub running_count: u32,
    pub failed_tasks: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: Timestamp,
    pub message: String,
}

/// A service as `DescribeServices` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_arn: String,
    pub service_name: String,
    pub cluster_arn: String,
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancer>,
    #[serde(default)]
    pub service_registries: Vec<ServiceRegistry>,
    pub status: ServiceStatus,
    pub desired_count: u32,
    pub running_count: u32,
    pub pending_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    pub task_definition: String,
    pub deployment_configuration: DeploymentConfiguration,
    pub deployments: Vec<Deployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub events: Vec<ServiceEvent>,
    pub created_at: Timestamp,
    #[serde(default)]
    pub placement_constraints: Vec<PlacementConstraint>,
    #[serde(default)]
    pub placement_strategy: Vec<PlacementStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<u32>,
    pub scheduling_strategy: SchedulingStrategy,
    pub deployment_controller: DeploymentController,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    pub created_by: String,
    #[serde(rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: bool,
    pub propagate_tags: PropagateTags,
    pub enable_execute_command: bool,
    /// The desired count before a pause (Hail's native PauseService).
    #[serde(
        default,
        rename = "hailPausedDesiredCount",
        skip_serializing_if = "Option::is_none"
    )]
    pub paused_desired_count: Option<u32>,
}

impl Service {
    /// The deployment whose tasks the service is converging on.
    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
    }

    pub fn primary_mut(&mut self) -> Option<&mut Deployment> {
        self.deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
    }

    /// Adds an event, newest first, keeping the most recent
    /// [`MAX_SERVICE_EVENTS`].
    pub fn push_event(&mut self, id: String, at: Timestamp, message: String) {
        self.events.insert(
            0,
            ServiceEvent {
                id,
                created_at: at,
                message,
            },
        );
        self.events.truncate(MAX_SERVICE_EVENTS);
    }

    /// The `group` of the service's tasks.
    pub fn task_group(&self) -> String {
        format!("service:{}", self.service_name)
    }
}

fn optional_cluster(cluster: Option<&str>, scope: &Scope) -> Result<String, ValidationError> {
    match cluster {
        None => Ok(super::cluster::DEFAULT_CLUSTER_NAME.to_owned()),
        Some(c) => cluster_name(c, scope)
            .map_err(|e| ValidationError::invalid_parameter("cluster", e.to_string())),
    }
}

/// A service named by name or by ARN (`…:service/<cluster>/<name>` or the
/// old `…:service/<name>`).
pub fn service_name_of(s: &str, field: &str) -> Result<String, ValidationError> {
    let name = match s.strip_prefix("arn:") {
        Some(_) => {
            let resource = s.splitn(6, ':').nth(5).unwrap_or_default();
            let path = resource.strip_prefix("service/").ok_or_else(|| {
                ValidationError::invalid_parameter(field, format!("{s:?} is not a service ARN"))
            })?;
            path.rsplit('/').next().unwrap_or_default().to_owned()
        }
        None => s.to_owned(),
    };
    if !is_valid_name(&name) {
        return Err(ValidationError::invalid_parameter(
            field,
            format!("{s:?} is not a valid service name or ARN"),
        ));
    }
    Ok(name)
}

fn validate_desired_count(count: Option<u32>) -> Result<(), ValidationError> {
    match count {
        Some(c) if c > MAX_DESIRED_COUNT => Err(ValidationError::invalid_parameter(
            "desiredCount",
            format!("desiredCount {c} is above the limit of {MAX_DESIRED_COUNT}"),
        )),
        _ => Ok(()),
    }
}

fn validate_load_balancers(lbs: &[LoadBalancer]) -> Result<(), ValidationError> {
    if lbs.len() > 5 {
        return Err(ValidationError::invalid_parameter(
            "loadBalancers",
            "a service can have at most 5 load balancers",
        ));
    }
    for (i, lb) in lbs.iter().enumerate() {
        let at = |f: &str| format!("loadBalancers[{i}].{f}");
        if lb.target_group_arn.is_none() {
            return Err(ValidationError::invalid_parameter(
                at("targetGroupArn"),
                "targetGroupArn is required: this engine's load balancers route to target groups",
            ));
        }
        if lb.container_name.is_none() || lb.container_port.is_none() {
            return Err(ValidationError::invalid_parameter(
                at("containerName"),
                "containerName and containerPort are required for a target group",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ecs::decode::decode;

    fn workshop() -> serde_json::Value {
        json!({
            "cluster": "bean-counter-cluster",
            "serviceName": "bean-counter-service",
            "taskDefinition": "bean-counter-service-task",
            "loadBalancers": [{
                "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bean-counter-tg/0123456789abcdef",
                "containerName": "bean-counter-container",
                "containerPort": 8080
            }],
            "desiredCount": 2,
            "launchType": "FARGATE",
            "platformVersion": "LATEST",
            "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 50},
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-0a1b2c3d"],
                "assignPublicIp": "ENABLED"}},
            "tags": [{"key": "app", "value": "bean-counter"}],
            "enableECSManagedTags": true,
            "propagateTags": "SERVICE"
        })
    }

    #[test]
    fn the_workshop_service_is_valid() {
        let input: CreateServiceInput = decode(&workshop().to_string()).unwrap();
        input.validate(&Scope::default()).unwrap();
        assert_eq!(
            input.cluster_name(&Scope::default()).unwrap(),
            "bean-counter-cluster"
        );
    }

    #[test]
    fn bad_services_are_refused_with_the_field() {
        let fails = |change: &dyn Fn(&mut serde_json::Value), field: &str| {
            let mut doc = workshop();
            change(&mut doc);
            let input: CreateServiceInput = decode(&doc.to_string()).unwrap();
            let err = input.validate(&Scope::default()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        };
        fails(&|d| d["serviceName"] = json!("no spaces"), "serviceName");
        fails(
            &|d| d["deploymentConfiguration"]["maximumPercent"] = json!(50),
            "deploymentConfiguration.maximumPercent",
        );
        fails(
            &|d| {
                d["deploymentConfiguration"] =
                    json!({"maximumPercent": 100, "minimumHealthyPercent": 100})
            },
            "deploymentConfiguration",
        );
        fails(
            &|d| {
                d["loadBalancers"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("containerPort")
                    .map(drop)
                    .unwrap_or(())
            },
            "loadBalancers[0].containerName",
        );
        fails(&|d| d["desiredCount"] = json!(6000), "desiredCount");
        fails(
            &|d| d["schedulingStrategy"] = json!("DAEMON"),
            "schedulingStrategy",
        );
        fails(
            &|d| {
                d.as_object_mut().unwrap().remove("taskDefinition");
            },
            "taskDefinition",
        );
    }

    #[test]
    fn services_are_named_by_name_or_arn() {
        assert_eq!(service_name_of("web", "service").unwrap(), "web");
        assert_eq!(
            service_name_of(
                "arn:aws:ecs:us-east-1:000000000000:service/c/web",
                "service"
            )
            .unwrap(),
            "web"
        );
        assert_eq!(
            service_name_of("arn:aws:ecs:us-east-1:000000000000:service/web", "service").unwrap(),
            "web"
        );
        assert!(service_name_of("arn:aws:ecs:us-east-1:000000000000:task/c/x", "service").is_err());
        assert!(service_name_of("a b", "service").is_err());
    }
}
