//! A task's observed state as the shim reports it, and the transitions it allows.
//!
//! Phases follow the runtime's own view (the engine maps them onto ECS's
//! PROVISIONING … STOPPED words):
//!
//! ```text
//! Starting ──► Running ──► Stopping ──► Stopped
//!     │                                   ▲
//!     └───────────────────────────────────┘  (a container failed to start)
//! ```

use serde::{Deserialize, Serialize};

use crate::network::TaskNetwork;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskPhase {
    /// The shim is mounting roots and starting containers.
    Starting,
    /// Every container has started.
    Running,
    /// A stop was requested or an essential container exited; containers are being signalled.
    Stopping,
    /// Every container has exited and its resources are released.
    Stopped,
}

impl TaskPhase {
    pub fn can_become(self, next: TaskPhase) -> bool {
        use TaskPhase::*;
        matches!(
            (self, next),
            (Starting, Running)
                | (Starting, Stopping)
                | (Starting, Stopped)
                | (Running, Stopping)
                | (Running, Stopped)
                | (Stopping, Stopped)
        )
    }

    pub fn is_final(self) -> bool {
        self == TaskPhase::Stopped
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerPhase {
    /// Not started yet.
    Created,
    Running,
    Stopped,
}

/// Why a task stopped (or is stopping). The engine maps it onto ECS's
/// `stopCode` and `stoppedReason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum StopCause {
    /// An essential container exited.
    EssentialContainerExited { container: String },
    /// Every container exited on its own.
    AllContainersExited,
    /// A caller asked for it.
    Requested { reason: String },
    /// The task ran past its maximum runtime.
    Timeout { max_runtime_ms: u64 },
    /// A container could not be started.
    StartFailed { container: String, message: String },
    /// The shim died; the task's containers were killed when this was noticed.
    ShimLost,
}

impl StopCause {
    /// A sentence for people, in the style of ECS's `stoppedReason`.
    pub fn describe(&self) -> String {
        match self {
            StopCause::EssentialContainerExited { .. } => {
                "Essential container in task exited".to_owned()
            }
            StopCause::AllContainersExited => "All containers in task exited".to_owned(),
            StopCause::Requested { reason } => reason.clone(),
            StopCause::Timeout { max_runtime_ms } => format!(
                "Task exceeded its maximum runtime of {}",
                humanize_ms(*max_runtime_ms)
            ),
            StopCause::StartFailed { container, message } => {
                format!("CannotStartContainerError: container {container}: {message}")
            }
            StopCause::ShimLost => {
                "Task supervisor exited unexpectedly; containers were stopped".to_owned()
            }
        }
    }
}

fn humanize_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerExit {
    /// Exit code; for a signal death, 128 + the signal number as shells report it.
    pub code: i32,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// Killed by the kernel's OOM killer (its cgroup recorded an OOM kill).
    pub oom_killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub phase: ContainerPhase,
    /// Host pid of the container's init process while it runs.
    pub pid: Option<i32>,
    pub exit: Option<ContainerExit>,
    /// Why it did not start, or how it ended, for people.
    pub reason: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub essential: bool,
    /// Health, for a container with a health check.
    #[serde(default)]
    pub health: Option<Health>,
}

/// What a container's health check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// No check has decided yet.
    Unknown,
    Healthy,
    Unhealthy,
}

/// Everything known about a task; the shim writes it to `state.json` on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub version: u32,
    pub id: String,
    pub phase: TaskPhase,
    pub containers: Vec<ContainerStatus>,
    pub stop: Option<StopCause>,
    pub network: Option<TaskNetwork>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub stopping_at: Option<String>,
    pub stopped_at: Option<String>,
    /// Pid of the shim supervising the task.
    pub shim_pid: Option<i32>,
}

pub const STATUS_VERSION: u32 = 1;

impl TaskStatus {
    pub fn container(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The exit code of the task, as `hail task run --wait` returns it: the
    /// first essential container's, else the first container's.
    pub fn exit_code(&self) -> Option<i32> {
        self.containers
            .iter()
            .find(|c| c.essential)
            .or(self.containers.first())
            .and_then(|c| c.exit.map(|e| e.code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        use TaskPhase::*;
        let all = [Starting, Running, Stopping, Stopped];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                let allowed = a.can_become(*b);
                if j <= i {
                    assert!(!allowed, "{a:?} -> {b:?}");
                }
            }
        }
        assert!(Starting.can_become(Stopped));
        assert!(!Stopped.can_become(Running));
        assert!(Stopped.is_final());
    }

    #[test]
    fn stop_causes_read_like_ecs() {
        assert_eq!(
            StopCause::EssentialContainerExited {
                container: "app".into()
            }
            .describe(),
            "Essential container in task exited"
        );
        assert_eq!(
            StopCause::Timeout {
                max_runtime_ms: 5000
            }
            .describe(),
            "Task exceeded its maximum runtime of 5s"
        );
    }
}
