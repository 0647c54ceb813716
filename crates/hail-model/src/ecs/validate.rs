//! Validation of ECS inputs with ECS's rules. Messages quote ECS's own wording
//! where clients are known to match on it (the Fargate ones) and otherwise
//! follow Hail's style: lowercase, naming the container and the value.

use std::collections::{BTreeMap, BTreeSet};

use super::tags;
use super::task_definition::{
    parse_task_cpu, parse_task_memory, ContainerDefinition, NetworkMode,
    RegisterTaskDefinitionInput, TaskSize,
};

/// The ECS error code a validation failure is reported under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// What ECS answers for a task definition it will not register.
    ClientException,
    /// What ECS answers for a bad parameter of an operation such as RunTask.
    InvalidParameterException,
}

impl ErrorCode {
    /// The code as the wire carries it in `__type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientException => "ClientException",
            Self::InvalidParameterException => "InvalidParameterException",
        }
    }
}

/// An input ECS would refuse: the offending field's path
/// (`containerDefinitions[0].memory`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub code: ErrorCode,
    pub field: String,
    pub message: String,
}

impl ValidationError {
    /// A failure reported as `ClientException`.
    pub fn client(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::ClientException,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A failure reported as `InvalidParameterException`.
    pub fn invalid_parameter(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidParameterException,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Most containers a task definition may have.
pub const MAX_CONTAINERS: usize = 10;
/// Smallest hard or soft memory limit a container may have, in MiB.
pub const MIN_CONTAINER_MEMORY_MIB: u32 = 6;
/// Task-level CPU range for non-Fargate launch types, in units.
pub const TASK_CPU_RANGE: std::ops::RangeInclusive<u32> = 128..=196_608;
/// Ephemeral storage range, in GiB.
pub const EPHEMERAL_STORAGE_RANGE_GIB: std::ops::RangeInclusive<u32> = 21..=200;
/// The log drivers ECS accepts.
pub const LOG_DRIVERS: [&str; 9] = [
    "awslogs",
    "fluentd",
    "gelf",
    "json-file",
    "journald",
    "logentries",
    "splunk",
    "syslog",
    "awsfirelens",
];
/// The conditions a container dependency may wait for.
pub const DEPENDENCY_CONDITIONS: [&str; 4] = ["START", "COMPLETE", "SUCCESS", "HEALTHY"];

/// Whether `name` is 1–255 letters, digits, underscores and hyphens: the rule
/// for families, container names and cluster names.
pub fn is_valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The memory sizes (MiB) Fargate offers for `cpu` units, or `None` when
/// Fargate has no such CPU size.
pub fn fargate_memory_choices(cpu: u32) -> Option<Vec<u32>> {
    let (start, end, step) = match cpu {
        256 => return Some(vec![512, 1024, 2048]),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16_384, 1024),
        4096 => (8192, 30_720, 1024),
        8192 => (16_384, 61_440, 4096),
        16_384 => (32_768, 122_880, 8192),
        _ => return None,
    };
    Some((start..=end).step_by(step).collect())
}

/// Whether Fargate offers a task of `cpu` units with `memory` MiB.
pub fn is_fargate_combination(cpu: u32, memory: u32) -> bool {
    fargate_memory_choices(cpu).is_some_and(|m| m.contains(&memory))
}

/// The Fargate check on a task size, with ECS's message when it fails.
pub fn check_fargate_combination(cpu: u32, memory: u32) -> Result<(), ValidationError> {
    if is_fargate_combination(cpu, memory) {
        Ok(())
    } else {
        Err(ValidationError::client(
            "memory",
            format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. \
                 See the Amazon ECS documentation for the valid values."
            ),
        ))
    }
}

/// Validates a `RegisterTaskDefinition` input as ECS does, returning the task
/// size it resolves to.
pub fn validate_task_definition(
    input: &RegisterTaskDefinitionInput,
) -> Result<TaskSize, ValidationError> {
    if !is_valid_name(&input.family) {
        return Err(ValidationError::client(
            "family",
            format!(
                "family {:?} is not valid: up to 255 letters (uppercase and lowercase), \
                 numbers, underscores, and hyphens are allowed",
                input.family
            ),
        ));
    }
    let containers = &input.container_definitions;
    if containers.is_empty() {
        return Err(ValidationError::client(
            "containerDefinitions",
            "at least one container definition is required",
        ));
    }
    if containers.len() > MAX_CONTAINERS {
        return Err(ValidationError::client(
            "containerDefinitions",
            format!(
                "a task definition can have at most {MAX_CONTAINERS} containers, got {}",
                containers.len()
            ),
        ));
    }

    let volume_names: BTreeSet<&str> = input
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.name.as_deref())
        .collect();
    for (i, v) in input.volumes.iter().flatten().enumerate() {
        match v.name.as_deref() {
            Some(n) if is_valid_name(n) => {}
            _ => {
                return Err(ValidationError::client(
                    format!("volumes[{i}].name"),
                    "volume name is required: up to 255 letters, numbers, hyphens, and underscores",
                ))
            }
        }
    }

    let mut seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let at = |f: &str| format!("containerDefinitions[{i}].{f}");
        let name = c.name();
        if name.is_empty() {
            return Err(ValidationError::client(
                at("name"),
                "container name is required",
            ));
        }
        if !is_valid_name(name) {
            return Err(ValidationError::client(
                at("name"),
                format!(
                    "container name {name:?} is not valid: up to 255 letters (uppercase and \
                     lowercase), numbers, underscores, and hyphens are allowed"
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(ValidationError::client(
                at("name"),
                format!("container name {name:?} is used by more than one container"),
            ));
        }
        validate_container(i, c, input, &volume_names)?;
    }
    if !containers.iter().any(ContainerDefinition::is_essential) {
        return Err(ValidationError::client(
            "containerDefinitions",
            "at least one container must be essential",
        ));
    }
    for (i, c) in containers.iter().enumerate() {
        for (j, from) in c.volumes_from.iter().enumerate() {
            let field = format!("containerDefinitions[{i}].volumesFrom[{j}].sourceContainer");
            match from.source_container.as_deref() {
                Some(s) if s != c.name() && seen.contains(s) => {}
                Some(s) => {
                    return Err(ValidationError::client(
                        field,
                        format!(
                            "container {:?} takes volumes from {s:?}, which is not another \
                             container of this task definition",
                            c.name()
                        ),
                    ))
                }
                None => {
                    return Err(ValidationError::client(
                        field,
                        "sourceContainer is required",
                    ))
                }
            }
        }
    }
    validate_dependencies(containers)?;
    validate_log_routing(containers)?;

    let size = validate_task_size(input)?;

    if let Some(storage) = &input.ephemeral_storage {
        if !EPHEMERAL_STORAGE_RANGE_GIB.contains(&storage.size_in_gib) {
            return Err(ValidationError::client(
                "ephemeralStorage.sizeInGiB",
                format!(
                    "ephemeral storage of {} GiB is outside the supported range of 21 to 200 GiB",
                    storage.size_in_gib
                ),
            ));
        }
    }
    if let Some(t) = &input.tags {
        tags::validate_tags(t, "tags")?;
    }
    Ok(size)
}

fn validate_container(
    i: usize,
    c: &ContainerDefinition,
    input: &RegisterTaskDefinitionInput,
    volume_names: &BTreeSet<&str>,
) -> Result<(), ValidationError> {
    let at = |f: &str| format!("containerDefinitions[{i}].{f}");
    let name = c.name();
    if c.image.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err(ValidationError::client(
            at("image"),
            format!("container {name:?} has no image: image is required"),
        ));
    }
    for (field, value) in [
        ("memory", c.memory),
        ("memoryReservation", c.memory_reservation),
    ] {
        if let Some(v) = value {
            if v < MIN_CONTAINER_MEMORY_MIB {
                return Err(ValidationError::client(
                    at(field),
                    format!(
                        "container {name:?}: {field} {v} is below the minimum \
                         {MIN_CONTAINER_MEMORY_MIB} MiB"
                    ),
                ));
            }
        }
    }
    if let (Some(hard), Some(soft)) = (c.memory, c.memory_reservation) {
        if soft > hard {
            return Err(ValidationError::client(
                at("memoryReservation"),
                format!(
                    "container {name:?}: memoryReservation {soft} is greater than memory {hard}; \
                     the soft limit must not exceed the hard limit"
                ),
            ));
        }
    }
    for (j, kv) in c.environment.iter().enumerate() {
        if kv.name.as_deref().is_none_or(str::is_empty) {
            return Err(ValidationError::client(
                at(&format!("environment[{j}].name")),
                format!("container {name:?}: environment variable {j} has no name"),
            ));
        }
    }
    for (j, p) in c.port_mappings.iter().enumerate() {
        let pat = |f: &str| at(&format!("portMappings[{j}].{f}"));
        let Some(port) = p.container_port else {
            if p.container_port_range.is_some() {
                continue;
            }
            return Err(ValidationError::client(
                pat("containerPort"),
                format!("container {name:?}: a port mapping needs containerPort"),
            ));
        };
        if !(1..=65_535).contains(&port) {
            return Err(ValidationError::client(
                pat("containerPort"),
                format!("container {name:?}: containerPort {port} is outside 1 to 65535"),
            ));
        }
        if let Some(host) = p.host_port {
            if host > 65_535 {
                return Err(ValidationError::client(
                    pat("hostPort"),
                    format!("container {name:?}: hostPort {host} is outside 0 to 65535"),
                ));
            }
            if input.network_mode == Some(NetworkMode::Awsvpc) && host != port {
                return Err(ValidationError::client(
                    pat("hostPort"),
                    format!(
                        "container {name:?}: hostPort {host} differs from containerPort {port}; \
                         in awsvpc network mode the host port must be left out or equal the \
                         container port"
                    ),
                ));
            }
        }
        if let Some(proto) = p.protocol.as_deref() {
            if proto != "tcp" && proto != "udp" {
                return Err(ValidationError::client(
                    pat("protocol"),
                    format!("container {name:?}: protocol {proto:?} is not tcp or udp"),
                ));
            }
        }
    }
    for (j, m) in c.mount_points.iter().enumerate() {
        match m.source_volume.as_deref() {
            Some(v) if volume_names.contains(v) => {}
            Some(v) => {
                return Err(ValidationError::client(
                    at(&format!("mountPoints[{j}].sourceVolume")),
                    format!(
                        "container {name:?} mounts volume {v:?}, which the task definition \
                         does not declare"
                    ),
                ))
            }
            None => {
                return Err(ValidationError::client(
                    at(&format!("mountPoints[{j}].sourceVolume")),
                    format!("container {name:?}: a mount point needs sourceVolume"),
                ))
            }
        }
        if m.container_path
            .as_deref()
            .is_none_or(|p| !p.starts_with('/'))
        {
            return Err(ValidationError::client(
                at(&format!("mountPoints[{j}].containerPath")),
                format!("container {name:?}: a mount point needs an absolute containerPath"),
            ));
        }
    }
    for (j, u) in c.ulimits.iter().flatten().enumerate() {
        if u.soft_limit > u.hard_limit {
            return Err(ValidationError::client(
                at(&format!("ulimits[{j}].softLimit")),
                format!(
                    "container {name:?}: ulimit {} soft limit {} is above its hard limit {}",
                    u.name, u.soft_limit, u.hard_limit
                ),
            ));
        }
    }
    if let Some(log) = &c.log_configuration {
        let driver = log.log_driver.as_str();
        if !LOG_DRIVERS.contains(&driver) {
            return Err(ValidationError::client(
                at("logConfiguration.logDriver"),
                format!(
                    "container {name:?}: log driver {driver:?} is not supported; use one of {}",
                    LOG_DRIVERS.join(", ")
                ),
            ));
        }
        if driver == "awslogs" {
            for key in ["awslogs-group", "awslogs-region"] {
                if log.option(key).is_none_or(str::is_empty) {
                    return Err(ValidationError::client(
                        at("logConfiguration.options"),
                        format!(
                            "container {name:?}: the awslogs log driver requires option {key:?}"
                        ),
                    ));
                }
            }
            if input.requires_fargate() && input.execution_role_arn.is_none() {
                return Err(ValidationError::client(
                    "executionRoleArn",
                    "Fargate requires task definition to have execution role ARN to support \
                     log driver awslogs.",
                ));
            }
        }
    }
    if let Some(h) = &c.health_check {
        let hat = |f: &str| at(&format!("healthCheck.{f}"));
        match h.command.first().map(String::as_str) {
            Some("CMD") | Some("CMD-SHELL") if h.command.len() > 1 => {}
            _ => {
                return Err(ValidationError::client(
                    hat("command"),
                    format!(
                        "container {name:?}: a health check command must start with \"CMD\" or \
                         \"CMD-SHELL\" followed by the command"
                    ),
                ))
            }
        }
        let ranges = [
            ("interval", h.interval, 5, 300),
            ("timeout", h.timeout, 2, 120),
            ("retries", h.retries, 1, 10),
            ("startPeriod", h.start_period, 0, 300),
        ];
        for (field, value, lo, hi) in ranges {
            if let Some(v) = value {
                if !(lo..=hi).contains(&v) {
                    return Err(ValidationError::client(
                        hat(field),
                        format!(
                            "container {name:?}: health check {field} {v} is outside {lo} to {hi}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// FireLens: a container logging with `awsfirelens` needs the task's log
/// router — exactly one container with `firelensConfiguration` — which
/// cannot route its own output to itself.
fn validate_log_routing(containers: &[ContainerDefinition]) -> Result<(), ValidationError> {
    let routers: Vec<usize> = containers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.firelens_configuration.is_some())
        .map(|(i, _)| i)
        .collect();
    if let [_, second, ..] = routers[..] {
        return Err(ValidationError::client(
            format!("containerDefinitions[{second}].firelensConfiguration"),
            "only one container of a task definition can have a firelensConfiguration \
             (the task's log router)",
        ));
    }
    if let Some(&r) = routers.first() {
        let router = &containers[r];
        let kind = router
            .firelens_configuration
            .as_ref()
            .map_or("", |f| f.firelens_type.as_str());
        if !matches!(kind, "fluentbit" | "fluentd") {
            return Err(ValidationError::client(
                format!("containerDefinitions[{r}].firelensConfiguration.type"),
                format!(
                    "container {:?}: firelensConfiguration type {kind:?} is not one of fluentbit, \
                     fluentd",
                    router.name()
                ),
            ));
        }
    }
    for (i, c) in containers.iter().enumerate() {
        let firelens = c
            .log_configuration
            .as_ref()
            .is_some_and(|l| l.log_driver == "awsfirelens");
        if !firelens {
            continue;
        }
        let at = format!("containerDefinitions[{i}].logConfiguration.logDriver");
        match routers.first() {
            None => {
                return Err(ValidationError::client(
                    at,
                    format!(
                        "container {:?} uses the awsfirelens log driver, which needs a log \
                         router container (one with a firelensConfiguration) in the task definition",
                        c.name()
                    ),
                ))
            }
            Some(&r) if r == i => {
                return Err(ValidationError::client(
                    at,
                    format!(
                        "container {:?} is the log router and cannot send its own output to \
                         itself with awsfirelens",
                        c.name()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Dependencies name known containers with a known condition, never wait for
/// an essential container to exit, and form no cycle.
fn validate_dependencies(containers: &[ContainerDefinition]) -> Result<(), ValidationError> {
    let index: BTreeMap<&str, usize> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name(), i))
        .collect();
    for (i, c) in containers.iter().enumerate() {
        for (j, d) in c.depends_on.iter().flatten().enumerate() {
            let at = |f: &str| format!("containerDefinitions[{i}].dependsOn[{j}].{f}");
            let Some(&target) = index.get(d.container_name.as_str()) else {
                return Err(ValidationError::client(
                    at("containerName"),
                    format!(
                        "container {:?} depends on {:?}, which is not a container of this task \
                         definition",
                        c.name(),
                        d.container_name
                    ),
                ));
            };
            let cond = d.condition.as_str();
            if !DEPENDENCY_CONDITIONS.contains(&cond) {
                return Err(ValidationError::client(
                    at("condition"),
                    format!(
                        "container {:?}: dependency condition {cond:?} is not one of START, \
                         COMPLETE, SUCCESS, HEALTHY",
                        c.name()
                    ),
                ));
            }
            let dep = &containers[target];
            if (cond == "COMPLETE" || cond == "SUCCESS") && dep.is_essential() {
                return Err(ValidationError::client(
                    at("condition"),
                    format!(
                        "container {:?} waits for essential container {:?} to exit ({cond}), \
                         but the task stops when an essential container exits",
                        c.name(),
                        dep.name()
                    ),
                ));
            }
            if cond == "HEALTHY" && dep.health_check.is_none() {
                return Err(ValidationError::client(
                    at("condition"),
                    format!(
                        "container {:?} waits for {:?} to be HEALTHY, but {:?} has no healthCheck",
                        c.name(),
                        dep.name(),
                        dep.name()
                    ),
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(containers, &index) {
        return Err(ValidationError::client(
            "containerDefinitions",
            format!(
                "container dependencies form a cycle: {}",
                cycle.join(" -> ")
            ),
        ));
    }
    Ok(())
}

/// The first dependency cycle found, as container names with the first
/// repeated at the end.
fn find_cycle<'a>(
    containers: &'a [ContainerDefinition],
    index: &BTreeMap<&str, usize>,
) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: usize,
        containers: &'a [ContainerDefinition],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<&'a str>> {
        marks[node] = Mark::OnPath;
        path.push(node);
        for d in containers[node].depends_on.iter().flatten() {
            let Some(&next) = index.get(d.container_name.as_str()) else {
                continue;
            };
            match marks[next] {
                Mark::OnPath => {
                    let start = path.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..]
                        .iter()
                        .map(|&n| containers[n].name())
                        .collect();
                    cycle.push(containers[next].name());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, containers, index, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; containers.len()];
    for start in 0..containers.len() {
        if marks[start] == Mark::New {
            let mut path = Vec::new();
            if let Some(c) = visit(start, containers, index, &mut marks, &mut path) {
                return Some(c);
            }
        }
    }
    None
}

fn validate_task_size(input: &RegisterTaskDefinitionInput) -> Result<TaskSize, ValidationError> {
    let cpu = input
        .cpu
        .as_deref()
        .map(parse_task_cpu)
        .transpose()
        .map_err(|e| ValidationError::client("cpu", e.to_string()))?;
    let memory = input
        .memory
        .as_deref()
        .map(parse_task_memory)
        .transpose()
        .map_err(|e| ValidationError::client("memory", e.to_string()))?;
    let containers = &input.container_definitions;

    if input.requires_fargate() {
        if input.network_mode != Some(NetworkMode::Awsvpc) {
            return Err(ValidationError::client(
                "networkMode",
                "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
            ));
        }
        let Some(cpu) = cpu else {
            return Err(ValidationError::client(
                "cpu",
                "Fargate requires that 'cpu' be defined at the task level.",
            ));
        };
        let Some(memory) = memory else {
            return Err(ValidationError::client(
                "memory",
                "Fargate requires that 'memory' be defined at the task level.",
            ));
        };
        check_fargate_combination(cpu, memory)?;
    } else if let Some(c) = cpu {
        if !TASK_CPU_RANGE.contains(&c) {
            return Err(ValidationError::client(
                "cpu",
                format!("task cpu {c} is outside the supported range of 128 to 196608 units"),
            ));
        }
    }

    match memory {
        None => {
            // Without a task-level limit each container needs its own.
            for (i, c) in containers.iter().enumerate() {
                if c.memory.is_none() && c.memory_reservation.is_none() {
                    return Err(ValidationError::client(
                        format!("containerDefinitions[{i}].memory"),
                        format!(
                            "Invalid setting for container '{}'. At least one of 'memory' or \
                             'memoryReservation' must be specified.",
                            c.name()
                        ),
                    ));
                }
            }
        }
        Some(task_memory) => {
            for (i, c) in containers.iter().enumerate() {
                if c.memory.is_some_and(|m| m > task_memory) {
                    return Err(ValidationError::client(
                        format!("containerDefinitions[{i}].memory"),
                        format!(
                            "The 'memory' setting for container '{}' is greater than for the task.",
                            c.name()
                        ),
                    ));
                }
            }
            // What a container reserves is its soft limit when it has one, its
            // hard limit otherwise; the reservations must fit in the task.
            let reserved: u64 = containers
                .iter()
                .map(|c| u64::from(c.memory_reservation.or(c.memory).unwrap_or(0)))
                .sum();
            if reserved > u64::from(task_memory) {
                return Err(ValidationError::client(
                    "containerDefinitions",
                    format!(
                        "the containers reserve {reserved} MiB of memory in total, more than the \
                         task memory of {task_memory} MiB"
                    ),
                ));
            }
        }
    }
    if let Some(task_cpu) = cpu {
        let total: u64 = containers.iter().map(|c| u64::from(c.cpu)).sum();
        if total > u64::from(task_cpu) {
            return Err(ValidationError::client(
                "containerDefinitions",
                format!(
                    "the containers' cpu adds up to {total} units, more than the task cpu of \
                     {task_cpu} units"
                ),
            ));
        }
    }
    Ok(TaskSize { cpu, memory })
}

#[cfg(test)]
mod tests;
