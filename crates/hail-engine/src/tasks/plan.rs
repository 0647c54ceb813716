//! From an ECS task and its definition to what the data plane runs: a
//! [`TaskSpec`] of containers with their images, commands, environment and
//! limits, and where each container's output goes.
//!
//! Pure: no store, no host. Everything a task needs that Hail cannot provide
//! yet is refused here with a reason in ECS's words, before anything starts,
//! rather than silently ignored.

use std::time::Duration;

use hail_model::ecs::task::effective_containers;
use hail_model::ecs::task_definition::{LogConfiguration, NetworkMode as DefNetworkMode};
use hail_model::ecs::{Task, TaskDefinition};
use hail_runtime::spec::{
    ContainerSpec, Dependency, DependencyCondition, HealthCheckSpec, MountSpec, NetworkMode,
    TaskSpec, Ulimit, VolumeSource, VolumeSpec,
};

/// ECS's default time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a container's output is shipped beyond the task's own log files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDestination {
    pub container: String,
    pub sink: LogSink,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSink {
    /// `awslogs`: a CloudWatch Logs stream.
    CloudWatch {
        group: String,
        stream: String,
        /// `awslogs-create-group: "true"`: create the group when it is missing.
        create_group: bool,
    },
    /// `awsfirelens`: the task's log router container, with the fields
    /// FireLens adds to each record.
    Firelens {
        router: String,
        fields: Vec<(String, String)>,
    },
}

/// A task ready to hand to the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub spec: TaskSpec,
    pub logs: Vec<LogDestination>,
}

/// What every container of a task is told about where it runs, as ECS's
/// agent tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnvironment {
    pub region: String,
    /// `host[:port]` of the task endpoint (metadata, credentials, and the
    /// APIs with S3 beside them), when one is served.
    pub metadata_endpoint: Option<String>,
    /// The id of this task's credentials path (`/v2/credentials/<id>`),
    /// when the task has a role; set per task by the controller.
    pub credentials_id: Option<String>,
}

/// Why a task cannot be launched; the text becomes the task's `stoppedReason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

fn init_error(message: impl std::fmt::Display) -> PlanError {
    PlanError(format!("ResourceInitializationError: {message}"))
}

/// The task id: the last segment of the task ARN.
pub fn task_id(task: &Task) -> &str {
    task.task_arn.rsplit('/').next().unwrap_or(&task.task_arn)
}

/// Plans `task` (created from `def`) with a maximum runtime when one was asked for.
pub fn plan(
    task: &Task,
    def: &TaskDefinition,
    env: &TaskEnvironment,
    max_runtime: Option<Duration>,
) -> Result<LaunchPlan, PlanError> {
    let id = task_id(task).to_owned();
    let effective =
        effective_containers(def, task.overrides.as_ref()).map_err(|e| init_error(e.message))?;
    let mut containers = Vec::with_capacity(effective.len());
    let mut logs = Vec::new();
    let router = def
        .container_definitions
        .iter()
        .find(|c| c.firelens_configuration.is_some())
        .map(|c| c.name().to_owned());
    for c in effective {
        let d = &c.definition;
        if !c.environment_files.is_empty() {
            return Err(init_error(format!(
                "container {}: environmentFiles are not supported by this engine",
                c.name
            )));
        }
        if d.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(init_error(format!(
                "container {}: secrets are not supported by this engine",
                c.name
            )));
        }
        let mut routed_to = None;
        if let Some(log) = &d.log_configuration {
            if log.log_driver == "awsfirelens" {
                let router = router.clone().ok_or_else(|| {
                    init_error(format!(
                        "container {}: the awsfirelens log driver needs a log router container",
                        c.name
                    ))
                })?;
                routed_to = Some(router.clone());
                logs.push(LogDestination {
                    container: c.name.clone(),
                    sink: LogSink::Firelens {
                        router,
                        fields: firelens_fields(task, &c.name),
                    },
                });
            } else if let Some(dest) = log_destination(&id, &c.name, log)? {
                logs.push(dest);
            }
        }
        let mut spec = ContainerSpec::new(&c.name, &c.image);
        spec.entrypoint = c.entry_point.clone();
        spec.command = c.command.clone();
        spec.environment = c.environment.clone();
        for (k, v) in injected_environment(&id, &c.name, env) {
            if !spec.environment.iter().any(|(name, _)| *name == k) {
                spec.environment.push((k, v));
            }
        }
        spec.working_directory = d.working_directory.clone();
        spec.user = d.user.clone();
        spec.cpu_units = (c.cpu > 0).then_some(c.cpu);
        spec.memory_mib = c.memory.map(u64::from);
        spec.memory_reservation_mib = c.memory_reservation.map(u64::from);
        spec.readonly_root_filesystem = d.readonly_root_filesystem.unwrap_or(false);
        spec.essential = c.essential;
        spec.stop_timeout = d
            .stop_timeout
            .map_or(DEFAULT_STOP_TIMEOUT, |s| Duration::from_secs(u64::from(s)));
        spec.mounts = mounts_of(def, &c.name)?;
        spec.health_check = d
            .health_check
            .as_ref()
            .map(|h| health_check_of(&c.name, h))
            .transpose()?;
        spec.depends_on = d
            .depends_on
            .iter()
            .flatten()
            .map(|dep| {
                let condition = match dep.condition.as_str() {
                    "START" => DependencyCondition::Start,
                    "COMPLETE" => DependencyCondition::Complete,
                    "SUCCESS" => DependencyCondition::Success,
                    "HEALTHY" => DependencyCondition::Healthy,
                    other => {
                        return Err(init_error(format!(
                            "container {}: dependsOn condition {other} on {} is not one of \
                             START, COMPLETE, SUCCESS, HEALTHY",
                            c.name, dep.container_name
                        )))
                    }
                };
                Ok(Dependency {
                    container: dep.container_name.clone(),
                    condition,
                })
            })
            .collect::<Result<_, _>>()?;
        // As on ECS, a container whose output goes to the log router starts
        // after it (and so stops before it).
        if let Some(router) = routed_to {
            if !spec.depends_on.iter().any(|dep| dep.container == router) {
                spec.depends_on.push(Dependency {
                    container: router,
                    condition: DependencyCondition::Start,
                });
            }
        }
        spec.ulimits = d
            .ulimits
            .iter()
            .flatten()
            .map(|u| Ulimit {
                name: u.name.clone(),
                soft: u64::try_from(u.soft_limit).unwrap_or(0),
                hard: u64::try_from(u.hard_limit).unwrap_or(0),
            })
            .collect();
        containers.push(spec);
    }
    let network = match def.network_mode {
        Some(DefNetworkMode::None) => NetworkMode::None,
        // Every task gets a namespace of its own: bridge and host modes
        // would share the host's ports between tasks, which one machine
        // running many copies of a task cannot honour.
        _ => NetworkMode::Awsvpc,
    };
    Ok(LaunchPlan {
        spec: TaskSpec {
            id,
            containers,
            cpu_units: task
                .cpu
                .as_deref()
                .and_then(|c| c.parse().ok())
                .or(def.cpu_units()),
            memory_mib: task
                .memory
                .as_deref()
                .and_then(|m| m.parse().ok())
                .or(def.memory_mib().map(u64::from)),
            network,
            hostname: None,
            max_runtime,
            volumes: volumes_of(def)?,
        },
        logs,
    })
}

/// The task's volumes: host paths where the definition names one (the
/// runtime refuses them unless the server allows host volumes), otherwise
/// an empty directory that lives and dies with the task (Fargate's bind
/// mounts, task-scoped Docker volumes).
fn volumes_of(def: &TaskDefinition) -> Result<Vec<VolumeSpec>, PlanError> {
    def.volumes
        .iter()
        .map(|v| {
            let name = v.name.clone().unwrap_or_default();
            if v.efs_volume_configuration.is_some()
                || v.fsx_windows_file_server_volume_configuration.is_some()
            {
                return Err(init_error(format!(
                    "volume {name}: EFS and FSx volumes are not supported by this engine"
                )));
            }
            if v.docker_volume_configuration
                .as_ref()
                .is_some_and(|d| d.scope.as_deref() == Some("shared"))
            {
                return Err(init_error(format!(
                    "volume {name}: shared Docker volumes are not supported by this engine; \
                     use scope \"task\""
                )));
            }
            let source = match v.host.as_ref().and_then(|h| h.source_path.as_deref()) {
                Some(path) => VolumeSource::Host(path.into()),
                None => VolumeSource::Task,
            };
            Ok(VolumeSpec { name, source })
        })
        .collect()
}

/// An ECS health check as the runtime runs it: `CMD-SHELL` through
/// `/bin/sh -c`, `CMD` as the arguments given; intervals in seconds.
fn health_check_of(
    container: &str,
    h: &hail_model::ecs::task_definition::HealthCheck,
) -> Result<HealthCheckSpec, PlanError> {
    let args = match h.command.split_first() {
        Some((form, rest)) if form == "CMD-SHELL" && !rest.is_empty() => {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), rest.join(" ")]
        }
        Some((form, rest)) if form == "CMD" && !rest.is_empty() => rest.to_vec(),
        _ => {
            return Err(init_error(format!(
                "container {container}: healthCheck.command must start with CMD or CMD-SHELL \
                 followed by the command"
            )))
        }
    };
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    Ok(HealthCheckSpec {
        args,
        interval: secs(h.interval_or_default()),
        timeout: secs(h.timeout_or_default()),
        retries: h.retries_or_default(),
        start_period: secs(h.start_period_or_default()),
    })
}

/// A container's mounts: its `mountPoints`, then those of the containers
/// it takes `volumesFrom` (read-only when either says so).
fn mounts_of(def: &TaskDefinition, container: &str) -> Result<Vec<MountSpec>, PlanError> {
    let find = |name: &str| {
        def.container_definitions
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| init_error(format!("volumesFrom names unknown container {name}")))
    };
    let own = |c: &hail_model::ecs::task_definition::ContainerDefinition, read_only: bool| {
        c.mount_points
            .iter()
            .map(|m| MountSpec {
                volume: m.source_volume.clone().unwrap_or_default(),
                container_path: m.container_path.clone().unwrap_or_default(),
                read_only: read_only || m.read_only.unwrap_or(false),
            })
            .collect::<Vec<_>>()
    };
    let c = find(container)?;
    let mut mounts = own(c, false);
    for from in &c.volumes_from {
        let source = from.source_container.as_deref().unwrap_or_default();
        for m in own(find(source)?, from.read_only.unwrap_or(false)) {
            if !mounts
                .iter()
                .any(|existing| existing.container_path == m.container_path)
            {
                mounts.push(m);
            }
        }
    }
    Ok(mounts)
}

/// The variables ECS's agent sets in every container.
fn injected_environment(
    task_id: &str,
    container: &str,
    env: &TaskEnvironment,
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("AWS_EXECUTION_ENV".to_owned(), "AWS_ECS_FARGATE".to_owned()),
        ("AWS_REGION".to_owned(), env.region.clone()),
        ("AWS_DEFAULT_REGION".to_owned(), env.region.clone()),
    ];
    if let Some(endpoint) = &env.metadata_endpoint {
        vars.push((
            "ECS_CONTAINER_METADATA_URI_V4".to_owned(),
            hail_api::metadata_uri(endpoint, task_id, container),
        ));
        // The same socket serves the AWS APIs, S3 included, so SDKs inside
        // the task reach Hail rather than AWS.
        let authority = endpoint.strip_suffix(":80").unwrap_or(endpoint);
        vars.push(("AWS_ENDPOINT_URL".to_owned(), format!("http://{authority}")));
        if let Some(id) = &env.credentials_id {
            let path = format!("{}{id}", hail_api::metadata::CREDENTIALS_PATH);
            // SDKs add 169.254.170.2 (port 80) to a relative URI; on any
            // other port the full URI is the only way to name it, and SDKs
            // accept that address in a full URI too.
            if endpoint.ends_with(":80") || !endpoint.contains(':') {
                vars.push((
                    hail_api::metadata::CREDENTIALS_RELATIVE_URI_ENV.to_owned(),
                    path,
                ));
            } else {
                vars.push((
                    hail_api::metadata::CREDENTIALS_FULL_URI_ENV.to_owned(),
                    format!("http://{endpoint}{path}"),
                ));
            }
        }
    }
    vars
}

/// Where an `awslogs` container's output goes: group `awslogs-group`,
/// stream `prefix/container/task-id` as ECS names it (`container/task-id`
/// without a prefix). Other drivers keep the output in the task's own log
/// files only.
pub fn log_destination(
    task_id: &str,
    container: &str,
    log: &LogConfiguration,
) -> Result<Option<LogDestination>, PlanError> {
    if log.log_driver != "awslogs" {
        return Ok(None);
    }
    let group = log.option("awslogs-group").ok_or_else(|| {
        init_error(format!(
            "failed to validate logger args: container {container}: awslogs-group is required"
        ))
    })?;
    let stream = match log.option("awslogs-stream-prefix") {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{container}/{task_id}"),
        _ => format!("{container}/{task_id}"),
    };
    Ok(Some(LogDestination {
        container: container.to_owned(),
        sink: LogSink::CloudWatch {
            group: group.to_owned(),
            stream,
            create_group: log
                .option("awslogs-create-group")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        },
    }))
}

/// The task's fields FireLens adds to each record of `container`.
fn firelens_fields(task: &Task, container: &str) -> Vec<(String, String)> {
    let cluster = task
        .cluster_arn
        .rsplit('/')
        .next()
        .unwrap_or(&task.cluster_arn);
    let definition = task
        .task_definition_arn
        .rsplit('/')
        .next()
        .unwrap_or(&task.task_definition_arn);
    vec![
        ("container_name".to_owned(), container.to_owned()),
        ("ecs_cluster".to_owned(), cluster.to_owned()),
        ("ecs_task_arn".to_owned(), task.task_arn.clone()),
        ("ecs_task_definition".to_owned(), definition.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use hail_model::arn::Scope;
    use hail_model::ecs::decode::decode;
    use hail_model::ecs::task_definition::RegisterTaskDefinitionInput;
    use hail_model::ecs::task_definition::TaskDefinitionStatus;
    use hail_model::ecs::{TaskStatus, Timestamp};
    use serde_json::json;

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn definition(body: serde_json::Value) -> TaskDefinition {
        let input: RegisterTaskDefinitionInput = decode(&body.to_string()).unwrap();
        let (def, _) =
            TaskDefinition::register(input, &Scope::default(), 3, Timestamp::from_secs(1), None)
                .unwrap();
        assert_eq!(def.status, TaskDefinitionStatus::Active);
        def
    }

    fn task(def: &TaskDefinition, overrides: serde_json::Value) -> Task {
        serde_json::from_value(json!({
            "taskArn": Scope::default().task_arn("default", ID),
            "clusterArn": Scope::default().cluster_arn("default"),
            "taskDefinitionArn": def.task_definition_arn,
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "cpu": "256",
            "memory": "1024",
            "version": 1,
            "overrides": overrides,
        }))
        .unwrap()
    }

    fn env() -> TaskEnvironment {
        TaskEnvironment {
            region: "us-east-1".into(),
            metadata_endpoint: Some("169.254.170.2".into()),
            credentials_id: None,
        }
    }

    fn tom_thumb() -> TaskDefinition {
        definition(json!({
            "family": "tom-thumb-task",
            "networkMode": "awsvpc",
            "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "1024",
            "containerDefinitions": [{
                "name": "tom-thumb-container",
                "image": "tom-thumb:latest",
                "essential": true,
                "environment": [
                    {"name": "POSITION_TIME_DURATION", "value": "00:01"},
                    {"name": "AWS_REGION", "value": "eu-west-1"}
                ],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": "/ecs/tom-thumb",
                    "awslogs-region": "us-east-1",
                    "awslogs-stream-prefix": "ecs",
                    "awslogs-create-group": "true"
                }},
                "stopTimeout": 5,
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}]
            }]
        }))
    }

    #[test]
    fn plans_a_task_as_ecs_would_run_it() {
        let def = tom_thumb();
        let t = task(
            &def,
            json!({"containerOverrides": [{
                "name": "tom-thumb-container",
                "command": ["thumb", "in.mp4"],
                "environment": [{"name": "POSITION_TIME_DURATION", "value": "00:07"}]
            }]}),
        );
        let plan = plan(&t, &def, &env(), Some(Duration::from_secs(9))).unwrap();
        assert_eq!(plan.spec.id, ID);
        assert_eq!(plan.spec.cpu_units, Some(256));
        assert_eq!(plan.spec.memory_mib, Some(1024));
        assert_eq!(plan.spec.network, NetworkMode::Awsvpc);
        assert_eq!(plan.spec.max_runtime, Some(Duration::from_secs(9)));
        let c = &plan.spec.containers[0];
        assert_eq!(c.image, "tom-thumb:latest");
        assert_eq!(
            c.command.as_deref(),
            Some(&["thumb".to_owned(), "in.mp4".to_owned()][..])
        );
        let var = |k: &str| {
            c.environment
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(var("POSITION_TIME_DURATION"), Some("00:07"));
        // The definition's own value wins over what the agent would inject.
        assert_eq!(var("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(var("AWS_DEFAULT_REGION"), Some("us-east-1"));
        assert_eq!(
            var("ECS_CONTAINER_METADATA_URI_V4"),
            Some(format!("http://169.254.170.2/v4/{ID}-tom-thumb-container").as_str())
        );
        assert_eq!(c.stop_timeout, Duration::from_secs(5));
        assert_eq!(c.ulimits[0].hard, 4096);
        assert_eq!(
            plan.logs,
            vec![LogDestination {
                container: "tom-thumb-container".into(),
                sink: LogSink::CloudWatch {
                    group: "/ecs/tom-thumb".into(),
                    stream: format!("ecs/tom-thumb-container/{ID}"),
                    create_group: true,
                },
            }]
        );
        assert_eq!(t.last_status, TaskStatus::Provisioning);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let def = definition(json!({
            "family": "f",
            "containerDefinitions": [{
                "name": "app", "image": "busybox", "memory": 64,
                "secrets": [{"name": "DB", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/db"}]
            }]
        }));
        let err = plan(&task(&def, json!(null)), &def, &env(), None).unwrap_err();
        assert!(err.0.starts_with("ResourceInitializationError:"), "{err}");
        assert!(err.0.contains("secrets"), "{err}");

        let log = LogConfiguration {
            log_driver: "awslogs".into(),
            options: None,
            secret_options: None,
        };
        let err = log_destination(ID, "app", &log).unwrap_err();
        assert!(err.0.contains("awslogs-group is required"), "{err}");
    }

    #[test]
    fn volumes_mount_points_and_volumes_from_become_mounts() {
        let def = definition(json!({
            "family": "f",
            "volumes": [{"name": "scratch"}, {"name": "host", "host": {"sourcePath": "/srv/data"}}],
            "containerDefinitions": [
                {"name": "writer", "image": "busybox", "memory": 64,
                 "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/data"}]},
                {"name": "reader", "image": "busybox", "memory": 64, "essential": false,
                 "mountPoints": [{"sourceVolume": "host", "containerPath": "/srv", "readOnly": true}],
                 "volumesFrom": [{"sourceContainer": "writer", "readOnly": true}]}
            ]
        }));
        let planned = plan(&task(&def, json!(null)), &def, &env(), None).unwrap();
        assert_eq!(
            planned.spec.volumes,
            vec![
                VolumeSpec {
                    name: "scratch".into(),
                    source: VolumeSource::Task
                },
                VolumeSpec {
                    name: "host".into(),
                    source: VolumeSource::Host("/srv/data".into())
                },
            ]
        );
        assert_eq!(
            planned.spec.containers[1].mounts,
            vec![
                MountSpec {
                    volume: "host".into(),
                    container_path: "/srv".into(),
                    read_only: true
                },
                MountSpec {
                    volume: "scratch".into(),
                    container_path: "/data".into(),
                    read_only: true
                },
            ]
        );
        assert!(!planned.spec.containers[0].mounts[0].read_only);

        let efs = definition(json!({
            "family": "f",
            "volumes": [{"name": "e", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}],
            "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]
        }));
        let err = plan(&task(&efs, json!(null)), &efs, &env(), None).unwrap_err();
        assert!(err.0.contains("EFS"), "{err}");
    }

    #[test]
    fn streams_without_prefix_are_container_and_task() {
        let log = LogConfiguration {
            log_driver: "awslogs".into(),
            options: Some([("awslogs-group".to_owned(), "g".to_owned())].into()),
            secret_options: None,
        };
        let dest = log_destination(ID, "app", &log).unwrap().unwrap();
        assert_eq!(
            dest.sink,
            LogSink::CloudWatch {
                group: "g".into(),
                stream: format!("app/{ID}"),
                create_group: false
            }
        );
    }

    #[test]
    fn firelens_containers_route_to_the_router_and_start_after_it() {
        let def = definition(json!({
            "family": "routed",
            "containerDefinitions": [
                {"name": "app", "image": "busybox", "memory": 64,
                 "logConfiguration": {"logDriver": "awsfirelens", "options": {"Name": "stdout"}}},
                {"name": "router", "image": "busybox", "memory": 64, "essential": false,
                 "firelensConfiguration": {"type": "fluentbit"}}
            ]
        }));
        let t = task(&def, json!(null));
        let planned = plan(&t, &def, &env(), None).unwrap();
        assert_eq!(
            planned.spec.containers[0].depends_on,
            vec![Dependency {
                container: "router".into(),
                condition: DependencyCondition::Start
            }]
        );
        let LogSink::Firelens { router, fields } = &planned.logs[0].sink else {
            panic!("{:?}", planned.logs)
        };
        assert_eq!(router, "router");
        let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(field("container_name"), Some("app"));
        assert_eq!(field("ecs_task_arn"), Some(t.task_arn.as_str()));
        assert!(field("ecs_task_definition").is_some_and(|d| d.starts_with("routed:")));
        assert_eq!(field("ecs_cluster"), Some("default"));
    }
}
