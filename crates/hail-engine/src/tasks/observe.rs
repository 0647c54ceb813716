//! What the data plane reports, written onto the ECS task document in ECS's
//! words: statuses, exit codes, stop codes and reasons, the network
//! interface, the timestamps.
//!
//! Pure: the controller reads the runtime, calls these, and stores the
//! result. Observed fields never touch what the user asked for (the desired
//! status, overrides, tags), so re-applying an observation onto a document
//! that changed meanwhile is always right.

use chrono::DateTime;
use hail_model::ecs::task::{Attachment, EniDetails, NetworkInterface};
use hail_model::ecs::task::{Connectivity, ContainerStatus};
use hail_model::ecs::{StopCode, Task, TaskStatus, Timestamp};
use hail_runtime::task::{ContainerPhase, StopCause, TaskPhase, TaskStatus as RuntimeStatus};

/// `reason` of a container the kernel killed for its memory, as ECS words it.
pub const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";
/// `stoppedReason` of a task stopped by StopTask without a reason.
pub const USER_STOP_REASON: &str = "Task stopped by user";

/// Reads an RFC 3339 time from the runtime; `None` when absent or unreadable.
fn time(s: Option<&str>) -> Option<Timestamp> {
    let t = DateTime::parse_from_rfc3339(s?).ok()?;
    Some(Timestamp::from_millis(t.timestamp_millis()))
}

/// The ENI attachment an awsvpc task carries from the moment it is created.
pub fn new_attachment(task_id: &str, subnet: &str) -> Attachment {
    Attachment::eni(
        attachment_id(task_id),
        "PRECREATED",
        &EniDetails {
            subnet_id: subnet.to_owned(),
            network_interface_id: format!("eni-{}", &task_id[..task_id.len().min(17)]),
            mac_address: String::new(),
            private_ipv4_address: String::new(),
        },
    )
}

/// A stable attachment id derived from the task id, in ECS's UUID shape.
fn attachment_id(task_id: &str) -> String {
    uuid_shape(task_id)
}

/// The hex digits of `id` (padded with zeros to 32) in the 8-4-4-4-12 shape
/// of the UUIDs ECS uses for attachments and containers.
pub fn uuid_shape(id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Moves the task to `next` if that is forward; a stale observation never
/// moves a task back.
fn advance(task: &mut Task, next: TaskStatus) {
    if task.last_status.can_become(next) {
        task.last_status = next;
    }
}

/// Writes the runtime's view of the task onto `task`.
pub fn apply(task: &mut Task, status: &RuntimeStatus, now: Timestamp) {
    let task_arn = task.task_arn.clone();
    if let Some(net) = &status.network {
        let ip = net.ip.map(|ip| ip.to_string()).unwrap_or_default();
        for a in &mut task.attachments {
            if a.attachment_type != "ElasticNetworkInterface" {
                continue;
            }
            for kv in &mut a.details {
                match kv.name.as_deref() {
                    Some("privateIPv4Address") => kv.value = Some(ip.clone()),
                    Some("macAddress") => kv.value = net.mac.clone(),
                    _ => {}
                }
            }
            if a.status == "PRECREATED" || a.status == "ATTACHING" {
                a.status = "ATTACHED".to_owned();
            }
        }
        let attachment_id = task.attachments.first().map(|a| a.id.clone());
        for c in &mut task.containers {
            if net.ip.is_some() {
                c.network_interfaces = vec![NetworkInterface {
                    attachment_id: attachment_id.clone(),
                    private_ipv4_address: Some(ip.clone()),
                    ipv6_address: None,
                }];
            }
        }
    }
    for c in &mut task.containers {
        let Some(observed) = status.container(&c.name) else {
            continue;
        };
        c.runtime_id = Some(hail_runtime::shim::runtime_container_id(
            task_id(&task_arn),
            &c.name,
        ));
        let next = match observed.phase {
            ContainerPhase::Created => ContainerStatus::Pending,
            ContainerPhase::Running => ContainerStatus::Running,
            ContainerPhase::Stopped => ContainerStatus::Stopped,
        };
        if c.last_status.can_become(next) {
            c.last_status = next;
        }
        if let Some(exit) = observed.exit {
            c.exit_code = Some(exit.code);
            if exit.oom_killed {
                c.reason = Some(OOM_REASON.to_owned());
            }
        }
        if c.reason.is_none() && next == ContainerStatus::Stopped {
            c.reason = observed.reason.clone().filter(|r| !r.is_empty());
        }
    }
    match status.phase {
        TaskPhase::Starting => advance(task, TaskStatus::Pending),
        TaskPhase::Running => {
            advance(task, TaskStatus::Running);
            if task.connectivity.is_none() {
                task.connectivity = Some(Connectivity::Connected);
                task.connectivity_at = Some(now);
            }
        }
        TaskPhase::Stopping => {
            advance(task, TaskStatus::Stopping);
            task.desired_status = TaskStatus::Stopped;
        }
        TaskPhase::Stopped => {
            advance(task, TaskStatus::Stopped);
            task.desired_status = TaskStatus::Stopped;
            for a in &mut task.attachments {
                a.status = "DELETED".to_owned();
            }
        }
    }
    if task.started_at.is_none() && task.last_status >= TaskStatus::Running {
        task.started_at = time(status.started_at.as_deref()).or(Some(now));
    }
    if matches!(status.phase, TaskPhase::Stopping | TaskPhase::Stopped) || status.stop.is_some() {
        task.stopping_at
            .get_or_insert(time(status.stopping_at.as_deref()).unwrap_or(now));
        if let Some(cause) = &status.stop {
            let (code, reason) = stop_reason(cause, status);
            // StopTask already recorded the user's code and reason.
            if task.stop_code.is_none() {
                task.stop_code = Some(code);
            }
            if task.stopped_reason.is_none() {
                task.stopped_reason = Some(reason);
            }
        }
    }
    if status.phase == TaskPhase::Stopped {
        let stopped = time(status.stopped_at.as_deref()).unwrap_or(now);
        task.stopped_at.get_or_insert(stopped);
        task.execution_stopped_at.get_or_insert(stopped);
    }
}

/// ECS's stop code and reason for how the runtime says the task ended.
fn stop_reason(cause: &StopCause, status: &RuntimeStatus) -> (StopCode, String) {
    match cause {
        StopCause::EssentialContainerExited { container } => {
            let oom = status
                .container(container)
                .and_then(|c| c.exit)
                .is_some_and(|e| e.oom_killed);
            let reason = if oom {
                OOM_REASON.to_owned()
            } else {
                cause.describe()
            };
            (StopCode::EssentialContainerExited, reason)
        }
        StopCause::AllContainersExited => (StopCode::EssentialContainerExited, cause.describe()),
        StopCause::Requested { reason } => (
            StopCode::UserInitiated,
            if reason.is_empty() {
                USER_STOP_REASON.to_owned()
            } else {
                reason.clone()
            },
        ),
        StopCause::Timeout { .. } => (StopCode::HailMaxRuntimeExceeded, cause.describe()),
        StopCause::StartFailed { .. } => (StopCode::TaskFailedToStart, cause.describe()),
        // The essential containers were killed when the loss was noticed.
        StopCause::ShimLost => (StopCode::EssentialContainerExited, cause.describe()),
    }
}

/// Records that the task never started: `reason` in ECS's words
/// (`CannotPullContainerError: …`, `ResourceInitializationError: …`).
pub fn failed_to_start(task: &mut Task, reason: String, now: Timestamp) {
    end_unstarted(task, StopCode::TaskFailedToStart, reason, now);
}

/// Records that a task stopped before it was started (StopTask on a task
/// still being provisioned).
pub fn stopped_before_start(task: &mut Task, now: Timestamp) {
    end_unstarted(
        task,
        StopCode::UserInitiated,
        USER_STOP_REASON.to_owned(),
        now,
    );
}

/// A task that ends without having run: STOPPED at once, its containers
/// with it, its network interface gone. A code and reason already recorded
/// (by StopTask) are kept.
fn end_unstarted(task: &mut Task, code: StopCode, reason: String, now: Timestamp) {
    advance(task, TaskStatus::Stopped);
    task.desired_status = TaskStatus::Stopped;
    task.stop_code.get_or_insert(code);
    task.stopped_reason.get_or_insert(reason);
    task.stopping_at.get_or_insert(now);
    task.stopped_at.get_or_insert(now);
    task.execution_stopped_at.get_or_insert(now);
    for c in &mut task.containers {
        c.last_status = ContainerStatus::Stopped;
    }
    for a in &mut task.attachments {
        a.status = "DELETED".to_owned();
    }
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use hail_model::arn::Scope;
    use hail_runtime::network::TaskNetwork;
    use hail_runtime::task::{ContainerExit, ContainerStatus as RtContainer};
    use serde_json::json;

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn task() -> Task {
        let scope = Scope::default();
        let mut t: Task = serde_json::from_value(json!({
            "taskArn": scope.task_arn("default", ID),
            "clusterArn": scope.cluster_arn("default"),
            "taskDefinitionArn": scope.task_definition_arn("f", 1),
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "version": 1,
            "containers": [{
                "containerArn": scope.container_arn("default", ID, "c1"),
                "taskArn": scope.task_arn("default", ID),
                "name": "app",
                "lastStatus": "PENDING"
            }]
        }))
        .unwrap();
        t.attachments.push(new_attachment(ID, "subnet-1"));
        t
    }

    fn runtime_status(phase: TaskPhase, exit: Option<ContainerExit>) -> RuntimeStatus {
        RuntimeStatus {
            version: 1,
            id: ID.into(),
            phase,
            containers: vec![RtContainer {
                name: "app".into(),
                phase: if exit.is_some() {
                    ContainerPhase::Stopped
                } else {
                    ContainerPhase::Running
                },
                pid: None,
                exit,
                reason: None,
                started_at: Some("2026-01-01T00:00:01.000Z".into()),
                finished_at: None,
                essential: true,
            }],
            stop: exit.map(|_| StopCause::EssentialContainerExited {
                container: "app".into(),
            }),
            network: Some(TaskNetwork {
                task_id: ID.into(),
                netns_path: PathBuf::from("/run/netns/x"),
                ip: Some(Ipv4Addr::new(10, 1, 0, 5)),
                prefix_len: 16,
                gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
                mac: Some("02:00:00:00:00:05".into()),
                host_veth: None,
            }),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            started_at: Some("2026-01-01T00:00:01.000Z".into()),
            stopping_at: exit.map(|_| "2026-01-01T00:00:02.000Z".into()),
            stopped_at: (phase == TaskPhase::Stopped).then(|| "2026-01-01T00:00:03.000Z".into()),
            shim_pid: None,
        }
    }

    #[test]
    fn a_started_task_is_running_with_its_address() {
        let mut t = task();
        apply(
            &mut t,
            &runtime_status(TaskPhase::Running, None),
            Timestamp::from_secs(9),
        );
        assert_eq!(t.last_status, TaskStatus::Running);
        assert_eq!(t.desired_status, TaskStatus::Running);
        assert_eq!(t.connectivity, Some(Connectivity::Connected));
        assert_eq!(
            t.started_at,
            Some(Timestamp::from_millis(1_767_225_601_000))
        );
        let c = &t.containers[0];
        assert_eq!(c.last_status, ContainerStatus::Running);
        assert_eq!(c.runtime_id.as_deref(), Some(&*format!("{ID}.app")));
        assert_eq!(
            c.network_interfaces[0].private_ipv4_address.as_deref(),
            Some("10.1.0.5")
        );
        assert_eq!(t.attachments[0].status, "ATTACHED");
        assert_eq!(
            t.attachments[0].detail("privateIPv4Address"),
            Some("10.1.0.5")
        );
        assert_eq!(
            t.attachments[0].detail("macAddress"),
            Some("02:00:00:00:00:05")
        );
    }

    #[test]
    fn an_oom_kill_reads_as_ecs_says_it() {
        let mut t = task();
        let exit = ContainerExit {
            code: 137,
            signal: Some(9),
            oom_killed: true,
        };
        apply(
            &mut t,
            &runtime_status(TaskPhase::Stopped, Some(exit)),
            Timestamp::from_secs(9),
        );
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(t.desired_status, TaskStatus::Stopped);
        assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
        assert_eq!(t.stopped_reason.as_deref(), Some(OOM_REASON));
        assert_eq!(t.containers[0].exit_code, Some(137));
        assert_eq!(t.containers[0].reason.as_deref(), Some(OOM_REASON));
        assert_eq!(
            t.stopped_at,
            Some(Timestamp::from_millis(1_767_225_603_000))
        );
        assert_eq!(t.execution_stopped_at, t.stopped_at);
        assert_eq!(t.attachments[0].status, "DELETED");
    }

    #[test]
    fn a_user_stop_keeps_the_users_reason_and_nothing_goes_backwards() {
        let mut t = task();
        t.stop_code = Some(StopCode::UserInitiated);
        t.stopped_reason = Some("enough".into());
        let exit = ContainerExit {
            code: 143,
            signal: Some(15),
            oom_killed: false,
        };
        apply(
            &mut t,
            &runtime_status(TaskPhase::Stopped, Some(exit)),
            Timestamp::from_secs(9),
        );
        assert_eq!(t.stop_code, Some(StopCode::UserInitiated));
        assert_eq!(t.stopped_reason.as_deref(), Some("enough"));
        // A late report of the running phase changes nothing.
        apply(
            &mut t,
            &runtime_status(TaskPhase::Running, None),
            Timestamp::from_secs(10),
        );
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(t.containers[0].last_status, ContainerStatus::Stopped);
    }

    #[test]
    fn a_task_that_cannot_start_says_why() {
        let mut t = task();
        failed_to_start(
            &mut t,
            "CannotPullContainerError: nope".into(),
            Timestamp::from_secs(5),
        );
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
        assert_eq!(
            t.stopped_reason.as_deref(),
            Some("CannotPullContainerError: nope")
        );
        assert_eq!(t.stopped_at, Some(Timestamp::from_secs(5)));
        assert_eq!(t.containers[0].last_status, ContainerStatus::Stopped);
    }

    #[test]
    fn attachment_ids_have_the_uuid_shape() {
        let id = attachment_id(ID);
        assert_eq!(id, "01234567-89ab-cdef-0123-456789abcdef");
    }
}
