//! The per-task shim: a small process (a re-exec of `hail shim`) in its own
//! session that owns a task's containers.
//!
//! It mounts their roots, writes their bundles, starts them with the OCI
//! runtime, holds their stdio and writes their logs, reaps them (it is their
//! child subreaper) and records how they ended. The server talks to it over a
//! unix socket in the task directory; because the shim, not the server, is the
//! containers' parent, containers outlive a restart of the server and are
//! re-adopted through that socket. Everything the shim knows is also written
//! to `state.json` in the task directory after every change.
//!
//! Task directory layout:
//! ```text
//! task.json                      what to run (written by the runtime, read by the shim)
//! state.json                     TaskStatus, rewritten atomically by the shim
//! shim.sock                      control socket
//! shim.log                       the shim's own diagnostics
//! etc/{hosts,hostname,resolv.conf}  bind-mounted into every container
//! containers/<name>/{rootfs,upper,work,bundle}
//! logs/<name>.log                container output (json-file format)
//! ```

mod protocol;
mod reaper;
pub(crate) mod spare;
mod supervisor;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use protocol::{ShimClient, ShimRequest, ShimResponse};
pub use supervisor::main;

use crate::network::TaskNetwork;
use crate::spec::Ulimit;
use crate::task::{ContainerPhase, ContainerStatus, TaskPhase, TaskStatus, STATUS_VERSION};

pub const TASK_FILE: &str = "task.json";
pub const STATE_FILE: &str = "state.json";
pub const SOCKET_FILE: &str = "shim.sock";
pub const SHIM_LOG_FILE: &str = "shim.log";
pub const TASK_FILE_VERSION: u32 = 1;

/// What the shim runs: a task with every container resolved against its image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimTask {
    pub version: u32,
    pub id: String,
    /// The OCI runtime binary (`runc`).
    pub runtime_binary: PathBuf,
    /// `--root` of the OCI runtime: its state directory for Hail's containers.
    pub runtime_root: PathBuf,
    /// Name of Hail's cgroup under which task cgroups live.
    pub cgroup_root: String,
    pub cpu_units: Option<u32>,
    pub memory_mib: Option<u64>,
    pub pids_limit: Option<u64>,
    /// The task's network namespace (shared by its containers).
    pub network: TaskNetwork,
    pub hostname: String,
    pub max_runtime_ms: Option<u64>,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    pub created_at: String,
    pub containers: Vec<ShimContainer>,
}

/// One container, resolved: arguments, environment and layers are final.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimContainer {
    pub name: String,
    pub essential: bool,
    /// Overlay lower dirs, top layer first.
    pub lower_dirs: Vec<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Option<String>,
    pub readonly_rootfs: bool,
    pub cpu_units: Option<u32>,
    pub memory_mib: Option<u64>,
    pub memory_reservation_mib: Option<u64>,
    pub pids_limit: Option<u64>,
    pub ulimits: Vec<Ulimit>,
    pub stop_timeout_ms: u64,
    /// Signal number sent first when stopping (SIGTERM unless the image says otherwise).
    pub stop_signal: i32,
    /// The image's config digest, so the image store can refuse to remove an image in use.
    pub image_config_digest: Option<crate::digest::Digest>,
    /// Volumes bound into the container, sources resolved on the host.
    #[serde(default)]
    pub volume_mounts: Vec<crate::bundle::BindMount>,
    /// Containers that must reach a condition before this one starts.
    #[serde(default)]
    pub depends_on: Vec<crate::spec::Dependency>,
    #[serde(default)]
    pub health_check: Option<crate::spec::HealthCheckSpec>,
}

impl ShimTask {
    /// The status of this task before anything has started.
    pub fn initial_status(&self) -> TaskStatus {
        TaskStatus {
            version: STATUS_VERSION,
            id: self.id.clone(),
            phase: TaskPhase::Starting,
            containers: self
                .containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    phase: ContainerPhase::Created,
                    pid: None,
                    exit: None,
                    reason: None,
                    started_at: None,
                    finished_at: None,
                    essential: c.essential,
                    health: c
                        .health_check
                        .as_ref()
                        .map(|_| crate::task::Health::Unknown),
                })
                .collect(),
            stop: None,
            network: Some(self.network.clone()),
            created_at: self.created_at.clone(),
            started_at: None,
            stopping_at: None,
            stopped_at: None,
            shim_pid: None,
        }
    }
}

/// The OCI runtime's id of a container: unique per runtime root.
pub fn runtime_container_id(task_id: &str, container: &str) -> String {
    format!("{task_id}.{container}")
}

pub fn container_dir(task_dir: &Path, container: &str) -> PathBuf {
    task_dir.join("containers").join(container)
}

pub fn log_path(task_dir: &Path, container: &str) -> PathBuf {
    task_dir.join("logs").join(format!("{container}.log"))
}
