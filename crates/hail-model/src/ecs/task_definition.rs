//! Task definitions: the `RegisterTaskDefinition` input and the registered
//! `TaskDefinition`, field for field as the Amazon ECS API Reference has them.
//!
//! Input shapes deny unknown fields so a misspelt key is an error rather than
//! a silently ignored setting. Optional fields are left out of the output when
//! unset, so what Hail echoes matches what ECS returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tags::Tag;
use super::task::TransitionError;
use super::timestamp::Timestamp;
use super::validate::{self, ValidationError};
use crate::arn::Scope;

/// A name and a value, as ECS writes environment variables, statistics and
/// attachment details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyValuePair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl KeyValuePair {
    /// A pair with both halves set.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }
}

/// The body of `RegisterTaskDefinition`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterTaskDefinitionInput {
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    pub container_definitions: Vec<ContainerDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_constraints: Option<Vec<TaskDefinitionPlacementConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<Compatibility>>,
    /// CPU units ("256") or vCPUs ("1 vCPU"); see [`parse_task_cpu`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// MiB ("1024") or GB ("1 GB"); see [`parse_task_memory`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<PidMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<IpcMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_configuration: Option<ProxyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_fault_injection: Option<bool>,
}

impl RegisterTaskDefinitionInput {
    /// Whether the definition asks for Fargate compatibility, which brings
    /// Fargate's stricter rules (awsvpc, task-level cpu/memory combinations).
    pub fn requires_fargate(&self) -> bool {
        self.requires_compatibilities
            .as_ref()
            .is_some_and(|c| c.contains(&Compatibility::Fargate))
    }
}

/// The response body of `RegisterTaskDefinition` and `DescribeTaskDefinition`:
/// ECS returns tags beside the definition, not inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTaskDefinitionOutput {
    pub task_definition: TaskDefinition,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A registered task definition revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub task_definition_arn: String,
    pub container_definitions: Vec<ContainerDefinition>,
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    pub revision: u32,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub status: TaskDefinitionStatus,
    #[serde(default)]
    pub requires_attributes: Vec<Attribute>,
    #[serde(default)]
    pub placement_constraints: Vec<TaskDefinitionPlacementConstraint>,
    #[serde(default)]
    pub compatibilities: Vec<Compatibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<Compatibility>>,
    /// Normalised to CPU units ("1 vCPU" registers as "1024"), as ECS does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Normalised to MiB ("1 GB" registers as "1024"), as ECS does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<PidMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<IpcMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_configuration: Option<ProxyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_fault_injection: Option<bool>,
}

impl TaskDefinition {
    /// Validates `input` and turns it into revision `revision` of its family:
    /// cpu and memory normalised to units and MiB, status ACTIVE, the
    /// compatibilities it meets and the attributes it needs filled in.
    pub fn register(
        input: RegisterTaskDefinitionInput,
        scope: &Scope,
        revision: u32,
        registered_at: Timestamp,
        registered_by: Option<String>,
    ) -> Result<(TaskDefinition, Vec<Tag>), ValidationError> {
        let size = validate::validate_task_definition(&input)?;
        let compatibilities = compatibilities_of(&input, size);
        let requires_attributes = required_attributes(&input);
        let mut containers = input.container_definitions;
        for c in &mut containers {
            // ECS echoes the default rather than leaving it out.
            c.essential = Some(c.is_essential());
        }
        let definition = TaskDefinition {
            task_definition_arn: scope.task_definition_arn(&input.family, revision),
            family: input.family,
            task_role_arn: input.task_role_arn,
            execution_role_arn: input.execution_role_arn,
            network_mode: input.network_mode,
            revision,
            volumes: input.volumes.unwrap_or_default(),
            status: TaskDefinitionStatus::Active,
            requires_attributes,
            placement_constraints: input.placement_constraints.unwrap_or_default(),
            compatibilities,
            runtime_platform: input.runtime_platform,
            requires_compatibilities: input.requires_compatibilities,
            cpu: size.cpu.map(|c| c.to_string()),
            memory: size.memory.map(|m| m.to_string()),
            inference_accelerators: input.inference_accelerators,
            pid_mode: input.pid_mode,
            ipc_mode: input.ipc_mode,
            proxy_configuration: input.proxy_configuration,
            registered_at: Some(registered_at),
            deregistered_at: None,
            registered_by,
            ephemeral_storage: input.ephemeral_storage,
            enable_fault_injection: input.enable_fault_injection,
            container_definitions: containers,
        };
        Ok((definition, input.tags.unwrap_or_default()))
    }

    /// Deregisters this revision at `at`: ACTIVE becomes INACTIVE, with
    /// `deregisteredAt` set. Tasks already running keep running; new runs are
    /// refused ([`crate::ecs::task::RunTaskInput::check_against`]).
    pub fn deregister(&mut self, at: Timestamp) -> Result<(), TransitionError> {
        self.move_to(TaskDefinitionStatus::Inactive)?;
        self.deregistered_at = Some(at);
        Ok(())
    }

    /// Marks this INACTIVE revision for deletion (DELETE_IN_PROGRESS).
    pub fn begin_delete(&mut self) -> Result<(), TransitionError> {
        self.move_to(TaskDefinitionStatus::DeleteInProgress)
    }

    fn move_to(&mut self, next: TaskDefinitionStatus) -> Result<(), TransitionError> {
        if !self.status.can_become(next) {
            return Err(TransitionError {
                what: format!("task definition {}", self.family_revision()),
                from: self.status.as_str(),
                to: next.as_str(),
            });
        }
        self.status = next;
        Ok(())
    }

    /// `family:revision`, the short name ECS accepts wherever a definition is named.
    pub fn family_revision(&self) -> String {
        format!("{}:{}", self.family, self.revision)
    }

    /// Task-level CPU units, if set.
    pub fn cpu_units(&self) -> Option<u32> {
        self.cpu.as_deref().and_then(|c| parse_task_cpu(c).ok())
    }

    /// Task-level memory in MiB, if set.
    pub fn memory_mib(&self) -> Option<u32> {
        self.memory
            .as_deref()
            .and_then(|m| parse_task_memory(m).ok())
    }
}

/// The task size a definition resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskSize {
    /// CPU units (1024 per vCPU).
    pub cpu: Option<u32>,
    /// Memory in MiB.
    pub memory: Option<u32>,
}

fn compatibilities_of(input: &RegisterTaskDefinitionInput, size: TaskSize) -> Vec<Compatibility> {
    let mut out = vec![Compatibility::Ec2];
    let fargate_fits = input.network_mode == Some(NetworkMode::Awsvpc)
        && matches!((size.cpu, size.memory), (Some(c), Some(m)) if validate::is_fargate_combination(c, m));
    if fargate_fits || input.requires_fargate() {
        out.push(Compatibility::Fargate);
    }
    out
}

/// The agent capabilities the definition needs, named as ECS names them.
/// Hail runs every one of them; they are reported so `describe` output reads
/// like ECS's and a later deployment to ECS places the tasks the same way.
fn required_attributes(input: &RegisterTaskDefinitionInput) -> Vec<Attribute> {
    let mut names = Vec::new();
    let mut push = |n: &str| {
        if !names.iter().any(|x: &String| x == n) {
            names.push(n.to_owned());
        }
    };
    if input.task_role_arn.is_some() {
        push("com.amazonaws.ecs.capability.task-iam-role");
    }
    if input.network_mode == Some(NetworkMode::Awsvpc) {
        push("ecs.capability.task-eni");
        push("com.amazonaws.ecs.capability.docker-remote-api.1.18");
    }
    for c in &input.container_definitions {
        if let Some(log) = &c.log_configuration {
            if log.log_driver == "awslogs" {
                push("com.amazonaws.ecs.capability.logging-driver.awslogs");
                push("com.amazonaws.ecs.capability.docker-remote-api.1.19");
                if input.execution_role_arn.is_some() {
                    push("ecs.capability.execution-role-awslogs");
                }
            }
        }
        if c.health_check.is_some() {
            push("ecs.capability.container-health-check");
        }
        if c.depends_on.as_ref().is_some_and(|d| !d.is_empty()) {
            push("ecs.capability.container-ordering");
        }
        if c.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
            push("ecs.capability.secrets.asm.environment-variables");
        }
        if c.environment_files.as_ref().is_some_and(|f| !f.is_empty()) {
            push("ecs.capability.env-files.s3");
        }
    }
    names
        .into_iter()
        .map(|name| Attribute {
            name,
            value: None,
            target_type: None,
            target_id: None,
        })
        .collect()
}

/// A container of a task definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_credentials: Option<RepositoryCredentials>,
    /// CPU units reserved for the container; ECS echoes 0 when unset.
    #[serde(default)]
    pub cpu: u32,
    /// Hard memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// Soft memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<String>>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Defaults to true, as in ECS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<ContainerRestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: Vec<KeyValuePair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_files: Option<Vec<EnvironmentFile>>,
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    #[serde(default)]
    pub volumes_from: Vec<VolumeFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_parameters: Option<LinuxParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<Secret>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<ContainerDependency>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_consistency: Option<VersionConsistency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_networking: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_search_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_hosts: Option<Vec<HostEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_security_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo_terminal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Vec<Ulimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub system_controls: Vec<SystemControl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<Vec<ResourceRequirement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firelens_configuration: Option<FirelensConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_specs: Option<Vec<String>>,
}

impl ContainerDefinition {
    /// The container's name, or "" when missing (validation rejects that).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// Whether the task stops when this container stops; true unless set false.
    pub fn is_essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }
}

/// Network mode of a task's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Bridge,
    Host,
    Awsvpc,
    None,
}

/// A launch type a definition can be checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compatibility {
    #[serde(rename = "EC2")]
    Ec2,
    #[serde(rename = "FARGATE")]
    Fargate,
    #[serde(rename = "EXTERNAL")]
    External,
    #[serde(rename = "MANAGED_INSTANCES")]
    ManagedInstances,
}

/// Lifecycle of a task definition revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskDefinitionStatus {
    Active,
    Inactive,
    DeleteInProgress,
}

impl TaskDefinitionStatus {
    /// The word ECS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::DeleteInProgress => "DELETE_IN_PROGRESS",
        }
    }

    /// Whether a revision in this status may move to `next`: ACTIVE →
    /// INACTIVE (deregister) → DELETE_IN_PROGRESS (delete), never back.
    pub fn can_become(self, next: TaskDefinitionStatus) -> bool {
        matches!(
            (self, next),
            (Self::Active, Self::Inactive) | (Self::Inactive, Self::DeleteInProgress)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PidMode {
    Host,
    Task,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpcMode {
    Host,
    Task,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionConsistency {
    Enabled,
    Disabled,
}

/// An attribute a container instance must have to run the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attribute {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskDefinitionPlacementConstraint {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub constraint_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfiguration {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub proxy_type: Option<String>,
    pub container_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<KeyValuePair>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceAccelerator {
    pub device_name: String,
    pub device_type: String,
}

/// Ephemeral storage for a task, 21–200 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EphemeralStorage {
    #[serde(rename = "sizeInGiB")]
    pub size_in_gib: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimePlatform {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_architecture: Option<CpuArchitecture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system_family: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CpuArchitecture {
    #[serde(rename = "X86_64")]
    X86_64,
    #[serde(rename = "ARM64")]
    Arm64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostVolumeProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_at_launch: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_volume_configuration: Option<DockerVolumeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efs_volume_configuration: Option<EfsVolumeConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsx_windows_file_server_volume_configuration:
        Option<FsxWindowsFileServerVolumeConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostVolumeProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerVolumeConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoprovision: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EfsVolumeConfiguration {
    pub file_system_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_config: Option<EfsAuthorizationConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EfsAuthorizationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_point_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FsxWindowsFileServerVolumeConfiguration {
    pub file_system_id: String,
    pub root_directory: String,
    pub authorization_config: FsxWindowsFileServerAuthorizationConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FsxWindowsFileServerAuthorizationConfig {
    pub credentials_parameter: String,
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryCredentials {
    pub credentials_parameter: String,
}

/// A container port published by the task; `protocol` is "tcp" (default) or "udp".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port_range: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerRestartPolicy {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_exit_codes: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_attempt_period: Option<u32>,
}

/// An environment file to load; ECS only knows type "s3".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentFile {
    pub value: String,
    #[serde(rename = "type")]
    pub file_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountPoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeFrom {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinuxParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<KernelCapabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_process_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_memory_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<Tmpfs>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_swap: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KernelCapabilities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    pub host_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tmpfs {
    pub container_path: String,
    pub size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_options: Option<Vec<String>>,
}

/// A secret exposed as an environment variable or log option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

/// Start ordering between containers: `condition` is START, COMPLETE, SUCCESS
/// or HEALTHY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDependency {
    pub container_name: String,
    pub condition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEntry {
    pub hostname: String,
    pub ip_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ulimit {
    pub name: String,
    pub soft_limit: i64,
    pub hard_limit: i64,
}

/// Where a container's output goes; `logDriver` is one of ECS's drivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfiguration {
    pub log_driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_options: Option<Vec<Secret>>,
}

impl LogConfiguration {
    /// The value of option `key`, if set.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.as_ref()?.get(key).map(String::as_str)
    }
}

/// A container health check. Unset durations take ECS's defaults (see the
/// `*_or_default` methods).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u32>,
}

impl HealthCheck {
    /// Seconds between checks; ECS's default is 30.
    pub fn interval_or_default(&self) -> u32 {
        self.interval.unwrap_or(30)
    }
    /// Seconds a check may take; ECS's default is 5.
    pub fn timeout_or_default(&self) -> u32 {
        self.timeout.unwrap_or(5)
    }
    /// Failures before unhealthy; ECS's default is 3.
    pub fn retries_or_default(&self) -> u32 {
        self.retries.unwrap_or(3)
    }
    /// Grace period in seconds; ECS's default is none.
    pub fn start_period_or_default(&self) -> u32 {
        self.start_period.unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemControl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A GPU or inference accelerator requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirement {
    pub value: String,
    #[serde(rename = "type")]
    pub resource_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirelensConfiguration {
    #[serde(rename = "type")]
    pub firelens_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// A task-level size that is neither a number of units nor a recognised
/// unit-suffixed form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: use {forms}")]
pub struct SizeError {
    pub what: &'static str,
    pub value: String,
    pub forms: &'static str,
}

/// Parses a task-level cpu value into CPU units: "256" (units) or "1 vCPU",
/// "0.5 vcpu", "2vCPU" (vCPUs, 1024 units each), the forms ECS accepts.
pub fn parse_task_cpu(value: &str) -> Result<u32, SizeError> {
    let err = || SizeError {
        what: "cpu",
        value: value.to_owned(),
        forms: "cpu units such as \"256\" or vCPUs such as \"1 vCPU\"",
    };
    parse_size(value, "vcpu", 1024).ok_or_else(err)
}

/// Parses a task-level memory value into MiB: "1024" (MiB) or "1 GB", "2GB",
/// "0.5 GB" (1024 MiB each), the forms ECS accepts.
pub fn parse_task_memory(value: &str) -> Result<u32, SizeError> {
    let err = || SizeError {
        what: "memory",
        value: value.to_owned(),
        forms: "MiB such as \"1024\" or GB such as \"1 GB\"",
    };
    parse_size(value, "gb", 1024).ok_or_else(err)
}

/// A plain integer, or a decimal number followed by `unit` (any case, spaces
/// allowed) scaled by `scale`; the result must be a whole positive number.
fn parse_size(value: &str, unit: &str, scale: u32) -> Option<u32> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u32>().ok().filter(|n| *n > 0);
    }
    let lower = v.to_ascii_lowercase();
    let number = lower.strip_suffix(unit)?.trim_end();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    // Decimal arithmetic in thousandths avoids float rounding: "0.25 vCPU" is
    // exactly 256 units.
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if frac.len() > 3 || (whole.is_empty() && frac.is_empty()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_thousandths: u64 = format!("{frac:0<3}").parse().ok()?;
    let thousandths = whole.checked_mul(1000)?.checked_add(frac_thousandths)?;
    let scaled = thousandths.checked_mul(u64::from(scale))?;
    if scaled % 1000 != 0 {
        return None;
    }
    u32::try_from(scaled / 1000).ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::decode::decode;
    use serde_json::{json, Value};

    const TOM_THUMB: &str = include_str!("../../testdata/tom-thumb-task.json");

    fn registered() -> TaskDefinition {
        let input: RegisterTaskDefinitionInput = decode(TOM_THUMB).unwrap();
        let (def, tags) = TaskDefinition::register(
            input,
            &Scope::default(),
            1,
            Timestamp::from_millis(1_732_797_623_512),
            Some("arn:aws:iam::000000000000:root".into()),
        )
        .unwrap();
        assert!(tags.is_empty());
        def
    }

    #[test]
    fn tom_thumb_round_trips_through_register() {
        let def = registered();
        let out = serde_json::to_value(&def).unwrap();
        let original: Value = serde_json::from_str(TOM_THUMB).unwrap();

        // Every field of the file comes back as written.
        for key in [
            "family",
            "networkMode",
            "executionRoleArn",
            "taskRoleArn",
            "requiresCompatibilities",
            "cpu",
            "memory",
        ] {
            assert_eq!(out[key], original[key], "{key}");
        }
        let c = &out["containerDefinitions"][0];
        let oc = &original["containerDefinitions"][0];
        for key in [
            "name",
            "image",
            "essential",
            "logConfiguration",
            "environment",
        ] {
            assert_eq!(c[key], oc[key], "containerDefinitions[0].{key}");
        }
        // What ECS adds on registration.
        assert_eq!(
            out["taskDefinitionArn"],
            "arn:aws:ecs:us-east-1:000000000000:task-definition/tom-thumb-task:1"
        );
        assert_eq!(out["revision"], 1);
        assert_eq!(out["status"], "ACTIVE");
        assert_eq!(out["compatibilities"], json!(["EC2", "FARGATE"]));
        assert_eq!(out["registeredAt"], json!(1_732_797_623.512));
        assert_eq!(out["registeredBy"], "arn:aws:iam::000000000000:root");
        assert_eq!(out["volumes"], json!([]));
        assert_eq!(c["cpu"], 0);
        assert_eq!(c["portMappings"], json!([]));
        assert_eq!(c["mountPoints"], json!([]));
        let attrs: Vec<&str> = out["requiresAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert!(
            attrs.contains(&"ecs.capability.execution-role-awslogs"),
            "{attrs:?}"
        );
        assert!(attrs.contains(&"ecs.capability.task-eni"), "{attrs:?}");
        // Unset options stay out, as in ECS's output.
        for key in [
            "pidMode",
            "ipcMode",
            "deregisteredAt",
            "ephemeralStorage",
            "proxyConfiguration",
        ] {
            assert!(out.get(key).is_none(), "{key} should be omitted");
        }
        assert!(c.get("healthCheck").is_none());
        assert!(c.get("memory").is_none());

        // The output parses back to the same definition.
        let back: TaskDefinition = serde_json::from_value(out).unwrap();
        assert_eq!(back, def);
        assert_eq!(back.family_revision(), "tom-thumb-task:1");
        assert_eq!(
            (back.cpu_units(), back.memory_mib()),
            (Some(256), Some(1024))
        );
    }

    #[test]
    fn tom_thumb_input_reserializes_to_the_same_document() {
        let input: RegisterTaskDefinitionInput = decode(TOM_THUMB).unwrap();
        let mut out = serde_json::to_value(&input).unwrap();
        // Defaulted list and number fields are the only additions.
        let c = out["containerDefinitions"][0].as_object_mut().unwrap();
        for key in [
            "cpu",
            "portMappings",
            "mountPoints",
            "volumesFrom",
            "systemControls",
        ] {
            assert!(c.remove(key).is_some(), "{key}");
        }
        let original: Value = serde_json::from_str(TOM_THUMB).unwrap();
        assert_eq!(out, original);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let mut doc: Value = serde_json::from_str(TOM_THUMB).unwrap();
        doc["containerDefinitions"][0]["memorySize"] = json!(512);
        let err = decode::<RegisterTaskDefinitionInput>(&doc.to_string()).unwrap_err();
        assert_eq!(err.path, "containerDefinitions[0]");
        assert_eq!(err.unknown_field.as_deref(), Some("memorySize"));

        let mut doc: Value = serde_json::from_str(TOM_THUMB).unwrap();
        doc["familyName"] = json!("x");
        let err = decode::<RegisterTaskDefinitionInput>(&doc.to_string()).unwrap_err();
        assert_eq!(err.to_string(), "unknown field \"familyName\"");

        let mut doc: Value = serde_json::from_str(TOM_THUMB).unwrap();
        doc["containerDefinitions"][0]["logConfiguration"]["logdriver"] = json!("awslogs");
        let err = decode::<RegisterTaskDefinitionInput>(&doc.to_string()).unwrap_err();
        assert_eq!(err.path, "containerDefinitions[0].logConfiguration");
        assert!(err.message.contains("did you mean \"logDriver\""), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut doc: Value = serde_json::from_str(TOM_THUMB).unwrap();
        doc["networkMode"] = json!("awsvpcc");
        let err = decode::<RegisterTaskDefinitionInput>(&doc.to_string()).unwrap_err();
        assert_eq!(err.path, "networkMode");
        assert!(
            err.message.starts_with("unknown variant `awsvpcc`"),
            "{err}"
        );

        let mut doc: Value = serde_json::from_str(TOM_THUMB).unwrap();
        doc["containerDefinitions"][0]["memory"] = json!(-1);
        let err = decode::<RegisterTaskDefinitionInput>(&doc.to_string()).unwrap_err();
        assert_eq!(err.path, "containerDefinitions[0].memory");

        let mut doc: Value = serde_json::from_str(TOM_THUMB).unwrap();
        doc.as_object_mut().unwrap().remove("family");
        let err = decode::<RegisterTaskDefinitionInput>(&doc.to_string()).unwrap_err();
        assert!(err.message.starts_with("missing field `family`"), "{err}");
    }

    #[test]
    fn every_container_field_parses() {
        let doc = json!({
            "family": "full",
            "networkMode": "bridge",
            "pidMode": "task",
            "ipcMode": "none",
            "volumes": [
                {"name": "data", "host": {"sourcePath": "/srv/data"}},
                {"name": "scratch", "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}},
                {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "transitEncryption": "ENABLED"}}
            ],
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}],
            "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
            "ephemeralStorage": {"sizeInGiB": 30},
            "proxyConfiguration": {"type": "APPMESH", "containerName": "app", "properties": [{"name": "AppPorts", "value": "8080"}]},
            "inferenceAccelerators": [{"deviceName": "d1", "deviceType": "eia2.medium"}],
            "enableFaultInjection": false,
            "tags": [{"key": "team", "value": "video"}],
            "cpu": "1 vCPU",
            "memory": "2 GB",
            "containerDefinitions": [{
                "name": "app", "image": "busybox", "cpu": 512, "memory": 1024, "memoryReservation": 512,
                "links": ["side"], "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp", "name": "web", "appProtocol": "http"}],
                "essential": true, "entryPoint": ["/bin/sh", "-c"], "command": ["echo hi"],
                "environment": [{"name": "A", "value": "1"}],
                "environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}],
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}],
                "volumesFrom": [{"sourceContainer": "side", "readOnly": false}],
                "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]}, "initProcessEnabled": true,
                    "sharedMemorySize": 64, "tmpfs": [{"containerPath": "/tmp", "size": 64, "mountOptions": ["rw"]}],
                    "devices": [{"hostPath": "/dev/fuse"}], "maxSwap": 0, "swappiness": 60},
                "secrets": [{"name": "TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/token"}],
                "dependsOn": [{"containerName": "side", "condition": "START"}],
                "startTimeout": 30, "stopTimeout": 30, "versionConsistency": "disabled",
                "hostname": "app", "user": "1000:1000", "workingDirectory": "/srv",
                "disableNetworking": false, "privileged": false, "readonlyRootFilesystem": true,
                "dnsServers": ["10.0.0.2"], "dnsSearchDomains": ["example.internal"],
                "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}],
                "dockerSecurityOptions": ["no-new-privileges"], "interactive": false, "pseudoTerminal": false,
                "dockerLabels": {"app": "demo"}, "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
                "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
                "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 3, "retries": 2, "startPeriod": 5},
                "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
                "resourceRequirements": [{"value": "1", "type": "GPU"}],
                "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}},
                "credentialSpecs": ["credentialspecdomainless:arn:aws:s3:::bucket/spec.json"],
                "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:000000000000:secret:reg"},
                "restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60}
            }, {"name": "side", "image": "busybox", "memory": 64, "essential": false}]
        });
        let input: RegisterTaskDefinitionInput = decode(&doc.to_string()).unwrap();
        let (def, tags) =
            TaskDefinition::register(input, &Scope::default(), 4, Timestamp::from_secs(1), None)
                .unwrap();
        assert_eq!(tags, vec![Tag::new("team", "video")]);
        // Unit forms are normalised on registration, as ECS does.
        assert_eq!(def.cpu.as_deref(), Some("1024"));
        assert_eq!(def.memory.as_deref(), Some("2048"));
        assert_eq!(def.compatibilities, vec![Compatibility::Ec2]);
        assert_eq!(def.container_definitions[1].essential, Some(false));
        let out = serde_json::to_value(&def).unwrap();
        let app_in = &doc["containerDefinitions"][0];
        let app_out = &out["containerDefinitions"][0];
        for (key, value) in app_in.as_object().unwrap() {
            assert_eq!(&app_out[key], value, "containerDefinitions[0].{key}");
        }
        for key in [
            "volumes",
            "placementConstraints",
            "runtimePlatform",
            "ephemeralStorage",
            "proxyConfiguration",
            "inferenceAccelerators",
            "pidMode",
            "ipcMode",
        ] {
            assert_eq!(out[key], doc[key], "{key}");
        }
        assert!(
            out.get("tags").is_none(),
            "ECS returns tags beside the definition"
        );
    }

    #[test]
    fn task_cpu_forms() {
        for (text, units) in [
            ("256", 256),
            ("1024", 1024),
            ("1 vCPU", 1024),
            ("1vcpu", 1024),
            ("2 VCPU", 2048),
            ("0.25 vCPU", 256),
            (".5 vCPU", 512),
            (" 4 vCPU ", 4096),
        ] {
            assert_eq!(parse_task_cpu(text), Ok(units), "{text}");
        }
        for bad in [
            "",
            "0",
            "-1",
            "1.5",
            "one vCPU",
            "1 CPU",
            "0.0001 vCPU",
            "1.2.3 vCPU",
            "99999999999",
        ] {
            let e = parse_task_cpu(bad).unwrap_err();
            assert!(e.to_string().starts_with("cpu "), "{e}");
        }
    }

    #[test]
    fn task_memory_forms() {
        for (text, mib) in [
            ("512", 512),
            ("1 GB", 1024),
            ("2GB", 2048),
            ("0.5 gb", 512),
            ("30 GB", 30_720),
        ] {
            assert_eq!(parse_task_memory(text), Ok(mib), "{text}");
        }
        for bad in ["", "1 GiB", "1 MB", "lots", "0 GB", "0.0001 GB"] {
            assert!(parse_task_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn definition_status_moves_forward_only() {
        use TaskDefinitionStatus::*;
        assert!(Active.can_become(Inactive));
        assert!(Inactive.can_become(DeleteInProgress));
        assert!(!Inactive.can_become(Active));
        assert!(!Active.can_become(DeleteInProgress));
        assert!(!DeleteInProgress.can_become(Inactive));
        assert_eq!(
            serde_json::to_value(DeleteInProgress).unwrap(),
            "DELETE_IN_PROGRESS"
        );

        let mut def = registered();
        let err = def.begin_delete().unwrap_err();
        assert_eq!(
            err.to_string(),
            "task definition tom-thumb-task:1 cannot go from ACTIVE to DELETE_IN_PROGRESS"
        );
        def.deregister(Timestamp::from_secs(1_732_800_000)).unwrap();
        assert_eq!(def.status, Inactive);
        let out = serde_json::to_value(&def).unwrap();
        assert_eq!(out["status"], "INACTIVE");
        assert_eq!(out["deregisteredAt"], 1_732_800_000);
        assert!(def.deregister(Timestamp::from_secs(1_732_800_001)).is_err());
        def.begin_delete().unwrap();
        assert_eq!(def.status, DeleteInProgress);
    }
}
