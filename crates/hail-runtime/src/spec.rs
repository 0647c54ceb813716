//! What the runtime is asked to run: a task of containers with resources.
//!
//! These are the runtime's own terms, already resolved from an ECS task
//! definition and its overrides by the caller. Images are named by reference
//! and must be present in the image store when the task starts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A task: containers sharing one network namespace, one lifecycle and one
/// resource envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique id; names the task's directory, cgroup and network namespace.
    pub id: String,
    pub containers: Vec<ContainerSpec>,
    /// Task-level cpu units (1024 = one vCPU); the parent cgroup's quota.
    pub cpu_units: Option<u32>,
    /// Task-level hard memory limit in MiB; the parent cgroup's limit.
    pub memory_mib: Option<u64>,
    pub network: NetworkMode,
    /// Hostname of every container in the task (defaults to a prefix of the id).
    pub hostname: Option<String>,
    /// Stop the task once it has run this long (beyond ECS: a task timeout).
    #[serde(default, with = "opt_duration_ms")]
    pub max_runtime: Option<Duration>,
    /// Volumes the containers can mount.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
}

/// A volume of a task (ECS task definition `volumes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Unique within the task; what mounts name.
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// An empty directory created for the task and removed with it.
    Task,
    /// A directory of the host; refused unless the runtime allows host volumes.
    Host(std::path::PathBuf),
}

/// A volume mounted into a container (ECS `mountPoints`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub volume: String,
    /// Absolute path inside the container.
    pub container_path: String,
    pub read_only: bool,
}

/// How the task is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own network namespace with a veth to the host bridge, an IP, NAT (ECS `awsvpc`).
    Awsvpc,
    /// Its own network namespace with loopback only.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique within the task; `[A-Za-z0-9_-]{1,255}` as ECS allows.
    pub name: String,
    /// Image reference as stored in the image store.
    pub image: String,
    /// Overrides the image's Entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's Cmd when set.
    pub command: Option<Vec<String>>,
    /// Added to (and overriding) the image's Env.
    pub environment: Vec<(String, String)>,
    pub working_directory: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`; resolved in the image's /etc/passwd.
    pub user: Option<String>,
    pub cpu_units: Option<u32>,
    /// Hard limit (MiB).
    pub memory_mib: Option<u64>,
    /// Soft limit (MiB).
    pub memory_reservation_mib: Option<u64>,
    pub readonly_root_filesystem: bool,
    /// When it exits, the whole task stops.
    pub essential: bool,
    /// Time between SIGTERM and SIGKILL when the task stops.
    #[serde(with = "duration_ms")]
    pub stop_timeout: Duration,
    pub ulimits: Vec<Ulimit>,
    /// Maximum number of processes (the cgroup pids limit).
    pub pids_limit: Option<u64>,
    /// The task volumes this container mounts.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Containers that must reach a condition before this one starts.
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
}

/// A start dependency (ECS `dependsOn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub container: String,
    pub condition: DependencyCondition,
}

/// What the container depended on must have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DependencyCondition {
    /// Started.
    Start,
    /// Exited, with any code.
    Complete,
    /// Exited with code 0.
    Success,
}

impl DependencyCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Complete => "COMPLETE",
            Self::Success => "SUCCESS",
        }
    }
}

impl ContainerSpec {
    /// A container with ECS's defaults: essential, 30 s stop timeout, no limits of its own.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            entrypoint: None,
            command: None,
            environment: Vec::new(),
            working_directory: None,
            user: None,
            cpu_units: None,
            memory_mib: None,
            memory_reservation_mib: None,
            readonly_root_filesystem: false,
            essential: true,
            stop_timeout: Duration::from_secs(30),
            ulimits: Vec::new(),
            pids_limit: None,
            mounts: Vec::new(),
            depends_on: Vec::new(),
        }
    }
}

/// A resource limit, as ECS `ulimits` entries (`nofile`, `nproc`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
