//! Task operations: RunTask, DescribeTasks, ListTasks and StopTask, with
//! ECS's semantics. RunTask commits the new tasks (PROVISIONING, desired
//! RUNNING) before it answers and hands them to the task controller, which
//! starts them; StopTask commits the desired status STOPPED, then tells the
//! controller.

use std::sync::Arc;
use std::time::Duration;

use hail_model::arn::{cluster_name, TaskDefinitionRef, TaskRef};
use hail_model::ecs::tags::tag_value;
use hail_model::ecs::task::{
    effective_containers, effective_task_size, max_runtime_from_tags, ContainerStatus, LaunchType,
    PropagateTags, RunTaskOutput,
};
use hail_model::ecs::task_definition::{Compatibility, EphemeralStorage, NetworkMode};
use hail_model::ecs::{
    ClusterStatus, Container, Failure, RunTaskInput, Tag, Task, TaskDefinition, TaskStatus,
    DEFAULT_CLUSTER_NAME,
};
use hail_store::{client_tokens, clusters, tags, task_definitions, tasks, Connection};
use serde::{Deserialize, Serialize};

use crate::tasks::{observe, Launch};
use crate::{Engine, EngineError};

/// The `failures[].reason` ECS gives for a task that does not exist.
const MISSING: &str = "MISSING";
/// Fargate's default ephemeral storage.
const DEFAULT_EPHEMERAL_GIB: u32 = 20;
/// The subnet reported for tasks whose request named none.
const DEFAULT_SUBNET: &str = "subnet-hail";

/// Starts `count` tasks of a definition. Every task is committed before the
/// answer; the controller starts them after.
pub async fn run_task(engine: &Engine, input: RunTaskInput) -> Result<RunTaskOutput, EngineError> {
    let scope = engine.scope().clone();
    input.validate(&scope)?;
    let controller = engine.tasks().ok_or(EngineError::NoDataPlane)?.clone();
    let cluster = input.cluster_name(&scope)?;
    let reference = input.task_definition_ref(&scope)?;
    let (cluster_arn, def, def_tags) = engine
        .store()
        .read({
            let cluster = cluster.clone();
            move |conn| {
                let cluster_arn = active_cluster_arn(conn, &cluster)?;
                let def = find_definition(conn, &reference)?;
                let def_tags = tags::list(conn, &def.task_definition_arn)?;
                Ok::<_, EngineError>((cluster_arn, def, def_tags))
            }
        })
        .await?;
    input.check_against(&def)?;
    let size = effective_task_size(&def, input.overrides.as_ref())?;
    let containers = effective_containers(&def, input.overrides.as_ref())?;

    let mut task_tags: Vec<Tag> = input.tags.clone().unwrap_or_default();
    if input.propagate_tags == Some(PropagateTags::TaskDefinition) {
        for t in &def_tags {
            if tag_value(&task_tags, t.key.as_deref().unwrap_or_default()).is_none() {
                task_tags.push(t.clone());
            }
        }
    }
    // The run's own bound wins; otherwise the definition's tag applies.
    let max_runtime = match input.max_runtime_seconds()? {
        Some(s) => Some(s),
        None => max_runtime_from_tags(&def_tags, "taskDefinition.tags").unwrap_or(None),
    }
    .map(Duration::from_secs);

    let now = engine.now();
    let fargate = input.launch_type != Some(LaunchType::Ec2)
        && (def.compatibilities.contains(&Compatibility::Fargate)
            || input.launch_type == Some(LaunchType::Fargate));
    let subnet = input
        .network_configuration
        .as_ref()
        .and_then(|n| n.awsvpc_configuration.as_ref())
        .and_then(|v| v.subnets.first().cloned())
        .unwrap_or_else(|| DEFAULT_SUBNET.to_owned());
    let mut new_tasks = Vec::new();
    for _ in 0..input.count() {
        let id = hail_model::ids::new_task_id();
        let task_arn = scope.task_arn(&cluster, &id);
        let task = Task {
            task_arn: task_arn.clone(),
            cluster_arn: cluster_arn.clone(),
            task_definition_arn: def.task_definition_arn.clone(),
            containers: containers
                .iter()
                .map(|c| Container {
                    container_arn: scope.container_arn(
                        &cluster,
                        &id,
                        &observe::uuid_shape(&hail_model::ids::new_task_id()),
                    ),
                    task_arn: task_arn.clone(),
                    name: c.name.clone(),
                    image: Some(c.image.clone()),
                    image_digest: None,
                    runtime_id: None,
                    last_status: ContainerStatus::Pending,
                    exit_code: None,
                    reason: None,
                    network_bindings: Vec::new(),
                    network_interfaces: Vec::new(),
                    health_status: None,
                    cpu: Some(c.cpu.to_string()),
                    memory: c.memory.map(|m| m.to_string()),
                    memory_reservation: c.memory_reservation.map(|m| m.to_string()),
                })
                .collect(),
            last_status: TaskStatus::Provisioning,
            desired_status: TaskStatus::Running,
            cpu: size.cpu.map(|c| c.to_string()),
            memory: size.memory.map(|m| m.to_string()),
            launch_type: Some(if fargate {
                LaunchType::Fargate
            } else {
                input.launch_type.unwrap_or(LaunchType::Ec2)
            }),
            capacity_provider_name: None,
            platform_version: fargate.then(|| {
                match input.platform_version.as_deref() {
                    None | Some("LATEST") => "1.4.0",
                    Some(v) => v,
                }
                .to_owned()
            }),
            platform_family: fargate.then(|| "Linux".to_owned()),
            connectivity: None,
            connectivity_at: None,
            pull_started_at: None,
            pull_stopped_at: None,
            created_at: Some(now),
            started_at: None,
            stopping_at: None,
            stopped_at: None,
            execution_stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            group: Some(
                input
                    .group
                    .clone()
                    .unwrap_or_else(|| format!("family:{}", def.family)),
            ),
            started_by: input.started_by.clone(),
            tags: Vec::new(),
            attachments: if def.network_mode == Some(NetworkMode::Awsvpc) {
                vec![observe::new_attachment(&id, &subnet)]
            } else {
                Vec::new()
            },
            availability_zone: Some(format!("{}a", scope.region)),
            version: 1,
            overrides: Some(input.overrides.clone().unwrap_or_default()),
            ephemeral_storage: fargate.then(|| {
                input
                    .overrides
                    .as_ref()
                    .and_then(|o| o.ephemeral_storage)
                    .or(def.ephemeral_storage)
                    .unwrap_or(EphemeralStorage {
                        size_in_gib: DEFAULT_EPHEMERAL_GIB,
                    })
            }),
            health_status: None,
            enable_execute_command: Some(input.enable_execute_command.unwrap_or(false)),
        };
        new_tasks.push(task);
    }

    // The request without its token identifies a retry of it.
    let token = input.client_token.clone();
    let request = token
        .as_ref()
        .map(|_| {
            let mut bare = input.clone();
            bare.client_token = None;
            serde_json::to_string(&bare).map_err(|source| EngineError::Encode { source })
        })
        .transpose()?;
    let capacity = controller.config().memory_capacity_mib;
    let outcome = engine
        .store()
        .write({
            let new_tasks = new_tasks.clone();
            let task_tags = task_tags.clone();
            move |tx| {
                if let (Some(token), Some(request)) = (token.as_deref(), request.as_deref()) {
                    if let Some(first) = client_tokens::get(tx, token)? {
                        if first.request != request {
                            return Err(EngineError::ClientTokenReused {
                                token: token.to_owned(),
                            });
                        }
                        let mut earlier = Vec::new();
                        for arn in &first.task_arns {
                            let id = arn.rsplit('/').next().unwrap_or(arn);
                            if let Some(stored) = tasks::get(tx, id)? {
                                let mut task = stored.task;
                                task.tags = tags::list(tx, &task.task_arn)?;
                                earlier.push(task);
                            }
                        }
                        return Ok(Outcome::Replayed(earlier));
                    }
                }
                // Placement on this one host: a task whose memory the host
                // cannot promise any more is a failure, as ECS reports one.
                let mut reserved = tasks::reserved_memory_mib(tx)?;
                let mut placed = Vec::new();
                let mut failures = Vec::new();
                for task in &new_tasks {
                    let memory: u64 = task.memory.as_deref().and_then(|m| m.parse().ok()).unwrap_or(0);
                    if capacity.is_some_and(|cap| reserved + memory > cap) {
                        failures.push(Failure {
                            arn: Some(task.task_definition_arn.clone()),
                            reason: Some("RESOURCE:MEMORY".to_owned()),
                            detail: Some(format!(
                                "the host has {} MiB of its {} MiB left for tasks; this task needs {memory} MiB",
                                capacity.unwrap_or(0).saturating_sub(reserved),
                                capacity.unwrap_or(0)
                            )),
                        });
                        continue;
                    }
                    reserved += memory;
                    tasks::insert(tx, task)?;
                    tags::set(tx, &task.task_arn, &task_tags)?;
                    placed.push(task.task_arn.clone());
                }
                if let (Some(token), Some(request)) = (token, request) {
                    let first = client_tokens::TokenUse {
                        request,
                        task_arns: placed.clone(),
                    };
                    client_tokens::insert(tx, &token, &first, now.as_millis())?;
                }
                Ok::<_, EngineError>(Outcome::New { placed, failures })
            }
        })
        .await?;
    let (placed, failures) = match outcome {
        // A retry of a request already served: its tasks, nothing new.
        Outcome::Replayed(earlier) => {
            return Ok(RunTaskOutput {
                tasks: earlier,
                failures: Vec::new(),
            })
        }
        Outcome::New { placed, failures } => (placed, failures),
    };
    new_tasks.retain(|t| placed.contains(&t.task_arn));

    let definition = Arc::new(def);
    controller.launch(
        new_tasks
            .iter()
            .map(|task| Launch {
                task: task.clone(),
                definition: definition.clone(),
                max_runtime,
            })
            .collect(),
    );
    Ok(RunTaskOutput {
        tasks: new_tasks
            .into_iter()
            .map(|mut t| {
                t.tags = task_tags.clone();
                t
            })
            .collect(),
        failures,
    })
}

/// What RunTask's transaction did.
enum Outcome {
    /// The tasks a request with the same clientToken started earlier.
    Replayed(Vec<Task>),
    /// The tasks started now (by ARN), and those the host had no room for.
    New {
        placed: Vec<String>,
        failures: Vec<Failure>,
    },
}

/// The ARN of the ACTIVE cluster `name`; ClusterNotFoundException otherwise.
pub(crate) fn active_cluster_arn(conn: &Connection, name: &str) -> Result<String, EngineError> {
    match clusters::get(conn, name)? {
        Some(c) if c.status == ClusterStatus::Active => Ok(c.cluster_arn),
        _ => Err(EngineError::ClusterNotFound {
            name: name.to_owned(),
        }),
    }
}

/// The revision a RunTask names: the given one, or the family's latest
/// ACTIVE revision.
pub(crate) fn find_definition(
    conn: &Connection,
    reference: &TaskDefinitionRef,
) -> Result<TaskDefinition, EngineError> {
    let found = match reference.revision {
        Some(revision) => task_definitions::get(conn, &reference.family, revision)?,
        None => task_definitions::latest_active(conn, &reference.family)?,
    };
    found.ok_or(EngineError::TaskDefinitionNotFound)
}

/// The optional details DescribeTasks adds on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskField {
    Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DescribeTasksInput {
    #[serde(default)]
    pub cluster: Option<String>,
    pub tasks: Vec<String>,
    #[serde(default)]
    pub include: Option<Vec<TaskField>>,
}

/// Most tasks one DescribeTasks names, as in ECS.
const MAX_DESCRIBE: usize = 100;

/// Describes tasks by id or ARN; one not in the cluster is a MISSING failure.
pub async fn describe_tasks(
    engine: &Engine,
    input: DescribeTasksInput,
) -> Result<RunTaskOutput, EngineError> {
    let scope = engine.scope().clone();
    let cluster = cluster_param(engine, input.cluster.as_deref())?;
    if input.tasks.is_empty() || input.tasks.len() > MAX_DESCRIBE {
        return Err(hail_model::ecs::ValidationError::invalid_parameter(
            "tasks",
            format!("1 to {MAX_DESCRIBE} tasks must be named"),
        )
        .into());
    }
    let refs = input
        .tasks
        .iter()
        .map(|t| {
            TaskRef::parse(t, &scope)
                .map(|r| (t.clone(), r))
                .map_err(|source| EngineError::Arn {
                    field: "tasks",
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let with_tags = input.include.unwrap_or_default().contains(&TaskField::Tags);
    engine
        .store()
        .read(move |conn| {
            let cluster_arn = active_cluster_arn(conn, &cluster)?;
            let mut out = RunTaskOutput {
                tasks: Vec::new(),
                failures: Vec::new(),
            };
            for (given, r) in refs {
                let found = tasks::get(conn, &r.id)?
                    .map(|s| s.task)
                    .filter(|t| t.cluster_arn == cluster_arn)
                    .filter(|_| r.cluster.as_deref().is_none_or(|c| c == cluster));
                match found {
                    Some(mut task) => {
                        if with_tags {
                            task.tags = tags::list(conn, &task.task_arn)?;
                        }
                        out.tasks.push(task);
                    }
                    None => out.failures.push(Failure {
                        arn: Some(if given.starts_with("arn:") {
                            given
                        } else {
                            scope.task_arn(&cluster, &r.id)
                        }),
                        reason: Some(MISSING.to_owned()),
                        detail: None,
                    }),
                }
            }
            Ok::<_, EngineError>(out)
        })
        .await
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListTasksInput {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub container_instance: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub service_name: Option<String>,
    /// RUNNING when absent, as in ECS; PENDING is accepted and lists the
    /// tasks desired RUNNING too.
    #[serde(default)]
    pub desired_status: Option<TaskStatus>,
    #[serde(default)]
    pub launch_type: Option<LaunchType>,
    #[serde(default)]
    pub max_results: Option<u32>,
    #[serde(default)]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksOutput {
    pub task_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The ARNs of a cluster's tasks, newest first, a page at a time.
pub async fn list_tasks(
    engine: &Engine,
    input: ListTasksInput,
) -> Result<ListTasksOutput, EngineError> {
    let cluster = cluster_param(engine, input.cluster.as_deref())?;
    if input.container_instance.is_some() {
        // Fargate tasks run on no container instance the caller can name.
        return Err(hail_model::ecs::ValidationError::invalid_parameter(
            "containerInstance",
            "container instances do not exist on this engine; tasks run on Fargate",
        )
        .into());
    }
    let desired = match input.desired_status {
        None | Some(TaskStatus::Running) | Some(TaskStatus::Pending) => TaskStatus::Running,
        Some(TaskStatus::Stopped) => TaskStatus::Stopped,
        Some(other) => {
            return Err(hail_model::ecs::ValidationError::invalid_parameter(
                "desiredStatus",
                format!(
                    "desiredStatus must be RUNNING, PENDING or STOPPED, not {}",
                    other.as_str()
                ),
            )
            .into())
        }
    };
    let family = match input.family {
        Some(f) if f.starts_with("arn:") => Some(
            TaskDefinitionRef::parse(&f, engine.scope())
                .map_err(|source| EngineError::Arn {
                    field: "family",
                    source,
                })?
                .family,
        ),
        other => other,
    };
    let filter_base = tasks::ListFilter {
        cluster_arn: None,
        family,
        desired_status: Some(desired),
        started_by: input.started_by,
        service_name: input.service_name,
        launch_type: input.launch_type,
    };
    engine
        .store()
        .read(move |conn| {
            let cluster_arn = active_cluster_arn(conn, &cluster)?;
            let filter = tasks::ListFilter {
                cluster_arn: Some(cluster_arn),
                ..filter_base
            };
            let page = tasks::list(
                conn,
                &filter,
                input.max_results,
                input.next_token.as_deref(),
            )?;
            Ok::<_, EngineError>(ListTasksOutput {
                task_arns: page.items.into_iter().map(|k| k.arn).collect(),
                next_token: page.next_token,
            })
        })
        .await
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopTaskInput {
    #[serde(default)]
    pub cluster: Option<String>,
    pub task: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopTaskOutput {
    pub task: Task,
}

/// Longest stop reason ECS accepts.
const MAX_REASON: usize = 1024;

/// Sets the task's desired status to STOPPED (stop code UserInitiated, the
/// reason given) and has the controller stop it: SIGTERM to each container,
/// SIGKILL after its stopTimeout. Stopping a stopped task changes nothing.
pub async fn stop_task(
    engine: &Engine,
    input: StopTaskInput,
) -> Result<StopTaskOutput, EngineError> {
    let cluster = cluster_param(engine, input.cluster.as_deref())?;
    let r = TaskRef::parse(&input.task, engine.scope()).map_err(|source| EngineError::Arn {
        field: "task",
        source,
    })?;
    if input.reason.as_ref().is_some_and(|s| s.len() > MAX_REASON) {
        return Err(hail_model::ecs::ValidationError::invalid_parameter(
            "reason",
            format!("reason must be at most {MAX_REASON} characters"),
        )
        .into());
    }
    let controller = engine.tasks().cloned();
    let now = engine.now();
    let reason = input
        .reason
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| observe::USER_STOP_REASON.to_owned());
    let task = engine
        .store()
        .write(move |tx| {
            let cluster_arn = active_cluster_arn(tx, &cluster)?;
            let stored = tasks::get(tx, &r.id)?
                .filter(|s| s.task.cluster_arn == cluster_arn)
                .filter(|_| r.cluster.as_deref().is_none_or(|c| c == cluster))
                .ok_or(EngineError::TaskNotFound)?;
            let mut task = stored.task.clone();
            if task.desired_status == TaskStatus::Stopped {
                return Ok(task);
            }
            task.desired_status = TaskStatus::Stopped;
            task.stop_code = Some(hail_model::ecs::StopCode::UserInitiated);
            task.stopped_reason = Some(reason);
            if task.last_status >= TaskStatus::Running {
                task.stopping_at.get_or_insert(now);
            }
            Ok::<_, EngineError>(tasks::update(tx, &r.id, stored.version, &task)?.task)
        })
        .await?;
    if let Some(controller) = controller {
        controller.stop_requested(&task);
    }
    Ok(StopTaskOutput { task })
}

/// The cluster a `cluster` parameter names; "default" when absent.
pub(crate) fn cluster_param(engine: &Engine, value: Option<&str>) -> Result<String, EngineError> {
    match value {
        None => Ok(DEFAULT_CLUSTER_NAME.to_owned()),
        Some(v) => cluster_name(v, engine.scope()).map_err(|source| EngineError::Arn {
            field: "cluster",
            source,
        }),
    }
}
