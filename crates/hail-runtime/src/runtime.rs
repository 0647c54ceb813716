//! The runtime's front door: start, watch, stop and clean up tasks.
//!
//! A [`Runtime`] resolves a [`TaskSpec`] against the image store, gives the
//! task a network namespace, writes the task file and spawns the task's shim,
//! which does the rest. It finds running tasks again after a restart through
//! their shims' sockets, and collects what belongs to no live task.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::cgroup::{CgroupStats, Cgroups};
use crate::durable;
use crate::image::store::ImageStore;
use crate::image::{Image, ImageError};
use crate::logs::Rotation;
use crate::network::{NetworkConfig, NetworkError, Networks, TaskNetwork};
use crate::overlay;
use crate::shim::spare::SpareShims;
use crate::shim::{
    self, runtime_container_id, ShimClient, ShimContainer, ShimRequest, ShimResponse, ShimTask,
    SHIM_LOG_FILE, SOCKET_FILE, STATE_FILE, TASK_FILE, TASK_FILE_VERSION,
};
use crate::spec::{ContainerSpec, NetworkMode, TaskSpec, VolumeSource};
use crate::task::{ContainerExit, ContainerPhase, StopCause, TaskPhase, TaskStatus};

/// At most this many containers in a task, as ECS allows.
pub const MAX_CONTAINERS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("task {task}: {message}")]
    InvalidSpec { task: String, message: String },
    #[error("task {task}: container {container}: image {image} is not in the image store")]
    ImageNotFound {
        task: String,
        container: String,
        image: String,
    },
    #[error("task {task} already exists")]
    TaskExists { task: String },
    #[error("task {task} not found")]
    TaskNotFound { task: String },
    #[error("task {task}: shim failed: {message}")]
    ShimFailed { task: String, message: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub data_dir: PathBuf,
    /// The OCI runtime (`runc` by default; any runc-compatible CLI works).
    pub runtime_binary: PathBuf,
    /// The `hail` binary whose `shim` subcommand supervises a task.
    pub shim_binary: PathBuf,
    pub network: NetworkConfig,
    /// Name of Hail's cgroup (tasks live in `<cgroup_root>/<task id>`).
    pub cgroup_root: String,
    pub log_rotation: Rotation,
    /// pids limit of a task when its spec sets none.
    pub default_pids_limit: u64,
    /// Whether tasks may mount directories of the host (off by default: a
    /// host volume reaches outside the task's sandbox).
    pub allow_host_volumes: bool,
    /// Shims kept started ahead of tasks (see [`crate::shim::spare`]).
    pub spare_shims: usize,
}

impl RuntimeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        // Absolute: the paths under it reach runc (which refuses a relative
        // root) and shims that may run in another directory.
        let data_dir = data_dir.into();
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        Self {
            runtime_binary: PathBuf::from("runc"),
            shim_binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hail")),
            network: NetworkConfig::new(data_dir.join("network")),
            cgroup_root: "hail".to_owned(),
            log_rotation: Rotation::default(),
            default_pids_limit: 4096,
            allow_host_volumes: false,
            spare_shims: 2,
            data_dir,
        }
    }
}

/// Where the OCI runtime keeps its per-container state (`--root`): in
/// tmpfs, as runc's documentation asks, so a start's state files cost no
/// disk inode; one directory per data dir, so engines beside each other
/// never collect each other's containers. Nothing in it outlives the
/// containers it describes, which do not survive a reboot either.
pub fn runtime_state_root(data_dir: &Path) -> PathBuf {
    let digest = crate::digest::Digest::of(data_dir.as_os_str().as_encoded_bytes());
    Path::new(RUNTIME_STATE_DIR).join(&digest.hex()[..16])
}

/// tmpfs directory under which [`runtime_state_root`]s live.
pub const RUNTIME_STATE_DIR: &str = "/run/hail/runc";

/// What [`Runtime::recover`] found and cleaned.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Tasks whose shim answered: still supervised, re-adopted.
    pub adopted: Vec<String>,
    /// Tasks whose shim was gone: their containers were killed and they are now stopped.
    pub lost: Vec<String>,
    /// Leftovers removed: mounts, cgroups, OCI runtime containers and networks of no live task.
    pub collected: usize,
}

pub struct Runtime {
    config: RuntimeConfig,
    images: Arc<ImageStore>,
    networks: Networks,
    tasks_dir: PathBuf,
    runtime_root: PathBuf,
    spare_shims: Arc<SpareShims>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Runtime {
    /// Opens the data dir and sets up the host network; call [`Runtime::recover`] next.
    pub async fn open(mut config: RuntimeConfig) -> Result<Self, RuntimeError> {
        config.data_dir =
            std::path::absolute(&config.data_dir).map_err(io_err(&config.data_dir))?;
        let tasks_dir = config.data_dir.join("tasks");
        let runtime_root = runtime_state_root(&config.data_dir);
        fs::create_dir_all(&tasks_dir).map_err(io_err(&tasks_dir))?;
        // Containers' states name their processes, roots and cgroups: for
        // root only, as runc makes its own default root.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&runtime_root)
            .map_err(io_err(&runtime_root))?;
        let images = Arc::new(ImageStore::open(&config.data_dir)?);
        let networks = Networks::open(config.network.clone()).await?;
        // Spares are made after the first start, so that a process that
        // never starts a task never has any.
        let spare_shims = SpareShims::new(config.shim_binary.clone(), config.spare_shims);
        Ok(Self {
            spare_shims,
            config,
            images,
            networks,
            tasks_dir,
            runtime_root,
        })
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Process ids of the shims started ahead and waiting for a task.
    pub fn spare_shim_pids(&self) -> Vec<u32> {
        self.spare_shims.pids()
    }

    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.tasks_dir.join(id)
    }

    /// The container's log file (json-file records; see [`crate::logs`]).
    pub fn log_path(&self, id: &str, container: &str) -> PathBuf {
        shim::log_path(&self.task_dir(id), container)
    }

    /// Starts a task and returns once every container has started (phase
    /// `Running`) or the start failed (phase `Stopping`/`Stopped` with
    /// [`StopCause::StartFailed`]).
    pub async fn start_task(&self, spec: &TaskSpec) -> Result<TaskStatus, RuntimeError> {
        validate(spec)?;
        self.validate_volumes(spec)?;
        let dir = self.task_dir(&spec.id);
        if dir.exists() {
            return Err(RuntimeError::TaskExists {
                task: spec.id.clone(),
            });
        }
        // Resolving an image may unpack its layers (seconds to minutes for a
        // large image) and waits on the store's file locks while another
        // start unpacks the same layer: kept off the async workers, so that a
        // cold image never stalls the server's other requests.
        let images = self.images.clone();
        let volume_sources: Vec<Vec<PathBuf>> = spec
            .containers
            .iter()
            .map(|c| {
                c.mounts
                    .iter()
                    .map(|m| self.volume_source(spec, &m.volume))
                    .collect()
            })
            .collect();
        let resolving = spec.clone();
        let containers = tokio::task::spawn_blocking(move || {
            resolve_containers(&images, &resolving, volume_sources)
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only when the server's runtime is shutting down.
            Err(e) => RuntimeError::ShimFailed {
                task: spec.id.clone(),
                message: format!("resolving images: {e}"),
            },
        })??;
        fs::create_dir(&dir).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => RuntimeError::TaskExists {
                task: spec.id.clone(),
            },
            _ => io_err(&dir)(e),
        })?;
        for v in &spec.volumes {
            if v.source == VolumeSource::Task {
                let path = self.volume_source(spec, &v.name);
                fs::create_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        let result = self.launch(spec, containers, &dir).await;
        if result.is_err() {
            let _ = self.networks.release(&spec.id).await;
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    async fn launch(
        &self,
        spec: &TaskSpec,
        containers: Vec<ShimContainer>,
        dir: &Path,
    ) -> Result<TaskStatus, RuntimeError> {
        let network = match spec.network {
            NetworkMode::Awsvpc => self.networks.attach(&spec.id).await?,
            NetworkMode::None => self.networks.attach_isolated(&spec.id).await?,
        };
        let task = ShimTask {
            version: TASK_FILE_VERSION,
            id: spec.id.clone(),
            runtime_binary: self.config.runtime_binary.clone(),
            runtime_root: self.runtime_root.clone(),
            cgroup_root: self.config.cgroup_root.clone(),
            cpu_units: spec.cpu_units,
            memory_mib: spec.memory_mib,
            pids_limit: Some(self.config.default_pids_limit),
            network,
            hostname: spec
                .hostname
                .clone()
                .unwrap_or_else(|| default_hostname(&spec.id)),
            max_runtime_ms: spec.max_runtime.map(|d| d.as_millis() as u64),
            log_max_bytes: self.config.log_rotation.max_bytes,
            log_max_files: self.config.log_rotation.max_files,
            created_at: now(),
            containers,
        };
        let task_file = dir.join(TASK_FILE);
        durable::replace_json(&task_file, &task).map_err(io_err(&task_file))?;
        let shim_log_path = dir.join(SHIM_LOG_FILE);
        fs::File::create(&shim_log_path).map_err(io_err(&shim_log_path))?;
        let stdout =
            self.spare_shims
                .hand_over(dir)
                .await
                .map_err(|e| RuntimeError::ShimFailed {
                    task: spec.id.clone(),
                    message: format!("starting {}: {e}", self.config.shim_binary.display()),
                })?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).await;
        // What the next start takes ahead (a shim, a network namespace) is
        // made now that this start is over, not while it ran.
        let spares = self.spare_shims.clone();
        tokio::task::spawn_blocking(move || spares.replenish());
        self.networks.replenish_pool();
        match read {
            Ok(n) if n > 0 => serde_json::from_str(&line).map_err(|e| RuntimeError::ShimFailed {
                task: spec.id.clone(),
                message: format!("unreadable status from shim: {e}"),
            }),
            _ => Err(RuntimeError::ShimFailed {
                task: spec.id.clone(),
                message: last_lines(&shim_log_path),
            }),
        }
    }

    /// Checks volumes and mounts: unique names, mounts of declared volumes at
    /// absolute paths without `..`, host directories only where allowed.
    fn validate_volumes(&self, spec: &TaskSpec) -> Result<(), RuntimeError> {
        let invalid = |message: String| RuntimeError::InvalidSpec {
            task: spec.id.clone(),
            message,
        };
        let mut names = HashSet::new();
        for v in &spec.volumes {
            let valid_name = (1..=255).contains(&v.name.len())
                && v.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name || !names.insert(v.name.as_str()) {
                return Err(invalid(format!(
                    "volume name {:?} must be unique and 1-255 letters, digits, '-' or '_'",
                    v.name
                )));
            }
            if let VolumeSource::Host(path) = &v.source {
                if !self.config.allow_host_volumes {
                    return Err(invalid(format!(
                        "volume {}: host volumes are not allowed by this server                          (hail server --allow-host-volumes)",
                        v.name
                    )));
                }
                if !path.is_absolute() || !path.is_dir() {
                    return Err(invalid(format!(
                        "volume {}: host path {} is not an existing absolute directory",
                        v.name,
                        path.display()
                    )));
                }
            }
        }
        for c in &spec.containers {
            for m in &c.mounts {
                if !names.contains(m.volume.as_str()) {
                    return Err(invalid(format!(
                        "container {}: mount of unknown volume {:?}",
                        c.name, m.volume
                    )));
                }
                let path = Path::new(&m.container_path);
                if !path.is_absolute()
                    || path
                        .components()
                        .any(|p| p == std::path::Component::ParentDir)
                    || path == Path::new("/")
                {
                    return Err(invalid(format!(
                        "container {}: mount path {:?} must be absolute, not /, without '..'",
                        c.name, m.container_path
                    )));
                }
            }
        }
        Ok(())
    }

    /// Where volume `name` of the task lives on the host.
    fn volume_source(&self, spec: &TaskSpec, name: &str) -> PathBuf {
        match spec
            .volumes
            .iter()
            .find(|v| v.name == name)
            .map(|v| &v.source)
        {
            Some(VolumeSource::Host(path)) => path.clone(),
            _ => self.task_dir(&spec.id).join("volumes").join(name),
        }
    }

    /// The task's current status. A task whose shim died is stopped here
    /// (its containers killed) and reported with [`StopCause::ShimLost`].
    pub async fn status(&self, id: &str) -> Result<TaskStatus, RuntimeError> {
        let dir = self.existing_task_dir(id)?;
        match ShimClient::new(&dir.join(SOCKET_FILE))
            .call(&ShimRequest::Status)
            .await
        {
            Ok(ShimResponse::Status { status }) => Ok(*status),
            _ => self.settle_without_shim(id, &dir).await,
        }
    }

    /// The task's status without acting on it: its shim's answer or, while
    /// the shim does not answer, what it last recorded (`None` before it
    /// recorded anything). Unlike [`Runtime::status`] this never stops a task
    /// whose shim is gone, so readers that must change nothing (the task
    /// metadata endpoint) can call it.
    pub async fn peek_status(&self, id: &str) -> Result<Option<TaskStatus>, RuntimeError> {
        let dir = self.existing_task_dir(id)?;
        if let Ok(ShimResponse::Status { status }) = ShimClient::new(&dir.join(SOCKET_FILE))
            .call(&ShimRequest::Status)
            .await
        {
            return Ok(Some(*status));
        }
        let state_path = dir.join(STATE_FILE);
        durable::read_json(&state_path).map_err(io_err(&state_path))
    }

    /// Waits until the task has stopped; releases its network and removes
    /// its task volumes then. A task volume is scratch space that lives as
    /// long as the task (as on Fargate); the logs stay until [`Self::remove`].
    pub async fn wait(&self, id: &str) -> Result<TaskStatus, RuntimeError> {
        let dir = self.existing_task_dir(id)?;
        let status = match ShimClient::new(&dir.join(SOCKET_FILE))
            .call(&ShimRequest::Wait)
            .await
        {
            Ok(ShimResponse::Status { status }) => *status,
            _ => self.settle_without_shim(id, &dir).await?,
        };
        if status.phase.is_final() {
            self.networks.release(id).await?;
            let volumes = dir.join("volumes");
            match fs::remove_dir_all(&volumes) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&volumes)(e)),
                _ => {}
            }
        }
        Ok(status)
    }

    /// Asks the task to stop: each container gets its stop signal, then SIGKILL
    /// after its stop timeout. Stopping a stopped task changes nothing.
    pub async fn stop(&self, id: &str, reason: &str) -> Result<TaskStatus, RuntimeError> {
        let dir = self.existing_task_dir(id)?;
        let request = ShimRequest::Stop {
            reason: reason.to_owned(),
        };
        match ShimClient::new(&dir.join(SOCKET_FILE)).call(&request).await {
            Ok(ShimResponse::Status { status }) => Ok(*status),
            _ => self.settle_without_shim(id, &dir).await,
        }
    }

    /// Deletes a stopped task: its network, directory and logs.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let status = self.status(id).await?;
        if !status.phase.is_final() {
            return Err(RuntimeError::InvalidSpec {
                task: id.to_owned(),
                message: format!(
                    "cannot remove a task in phase {:?}; stop it first",
                    status.phase
                ),
            });
        }
        self.networks.release(id).await?;
        let dir = self.task_dir(id);
        // A task's writable layers and volumes can hold gigabytes: removed on
        // a blocking thread, not on an async worker.
        let removing = dir.clone();
        let removed = tokio::task::spawn_blocking(move || {
            for mount in overlay::mounts_under(&removing).unwrap_or_default() {
                let _ = overlay::unmount_root(&mount);
            }
            fs::remove_dir_all(&removing)
        })
        .await;
        match removed {
            Ok(result) => result.map_err(io_err(&dir)),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => Err(io_err(&dir)(io::Error::other(e.to_string()))),
            },
        }
    }

    /// Ids of every task with a directory (running or stopped).
    pub fn task_ids(&self) -> Result<Vec<String>, RuntimeError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.tasks_dir).map_err(io_err(&self.tasks_dir))? {
            let entry = entry.map_err(io_err(&self.tasks_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if hail_model::ids::is_task_id(&name) && entry.path().is_dir() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Resource use of a running task (`container` None) or of one of its containers.
    pub fn stats(&self, id: &str, container: Option<&str>) -> Result<CgroupStats, RuntimeError> {
        let cgroups =
            Cgroups::detect(&self.config.cgroup_root).map_err(|e| RuntimeError::ShimFailed {
                task: id.to_owned(),
                message: e.to_string(),
            })?;
        cgroups
            .stats(id, container)
            .map_err(|e| RuntimeError::ShimFailed {
                task: id.to_owned(),
                message: e.to_string(),
            })
    }

    /// The network a task holds (from its durable lease).
    pub fn network(&self, id: &str) -> Option<TaskNetwork> {
        self.networks.lookup(id)
    }

    /// Config digests of images used by tasks that have not stopped.
    pub fn images_in_use(&self) -> Result<HashSet<crate::digest::Digest>, RuntimeError> {
        images_in_use(&self.config.data_dir)
    }

    /// After a restart: re-adopts tasks whose shim lives, stops those whose shim
    /// died, and collects mounts, cgroups, runtime containers and networks that
    /// belong to no live task.
    pub async fn recover(&self) -> Result<Recovery, RuntimeError> {
        let mut report = Recovery::default();
        let mut live = HashSet::new();
        for id in self.task_ids()? {
            let dir = self.task_dir(&id);
            if !dir.join(TASK_FILE).is_file() {
                // A start interrupted before its task file was written: no
                // shim was ever spawned for it, so nothing else refers to it.
                self.networks.release(&id).await?;
                fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
                report.collected += 1;
                continue;
            }
            match ShimClient::new(&dir.join(SOCKET_FILE))
                .call(&ShimRequest::Status)
                .await
            {
                Ok(ShimResponse::Status { .. }) => {
                    report.adopted.push(id.clone());
                    live.insert(id);
                }
                _ => {
                    let before = durable::read_json::<TaskStatus>(&dir.join(STATE_FILE))
                        .ok()
                        .flatten();
                    let was_final = before.as_ref().is_some_and(|s| s.phase.is_final());
                    self.settle_without_shim(&id, &dir).await?;
                    if !was_final {
                        report.lost.push(id);
                    }
                }
            }
        }
        report.collected += self.collect_garbage(&live).await?;
        Ok(report)
    }

    async fn collect_garbage(&self, live: &HashSet<String>) -> Result<usize, RuntimeError> {
        let mut collected = 0;
        // Older binaries kept runc's state in the data dir; what is left
        // there is collected the same way, and the directory once empty.
        let legacy_root = self.config.data_dir.join("runc");
        let roots =
            std::iter::once(&self.runtime_root).chain(Some(&legacy_root).filter(|r| r.is_dir()));
        for root in roots {
            for container_id in list_runtime_containers(&self.config.runtime_binary, root).await {
                let task = container_id.split('.').next().unwrap_or_default();
                if !live.contains(task) {
                    delete_runtime_container(&self.config.runtime_binary, root, &container_id)
                        .await;
                    collected += 1;
                }
            }
        }
        // Fails while a live task's container is still recorded there, or
        // when there is no such directory.
        let _ = fs::remove_dir(&legacy_root);
        for mount in overlay::mounts_under(&self.tasks_dir).unwrap_or_default() {
            let task = mount
                .strip_prefix(&self.tasks_dir)
                .ok()
                .and_then(|p| p.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            if !live.contains(&task) && overlay::unmount_root(&mount).is_ok() {
                collected += 1;
            }
        }
        if let Ok(cgroups) = Cgroups::detect(&self.config.cgroup_root) {
            for task in cgroups.list_tasks().unwrap_or_default() {
                if !live.contains(&task) && cgroups.remove_task(&task).is_ok() {
                    collected += 1;
                }
            }
        }
        collected += self.networks.gc(live).await?;
        Ok(collected)
    }

    fn existing_task_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let dir = self.task_dir(id);
        if hail_model::ids::is_task_id(id) && dir.join(TASK_FILE).is_file() {
            Ok(dir)
        } else {
            Err(RuntimeError::TaskNotFound {
                task: id.to_owned(),
            })
        }
    }

    /// The shim is unreachable. If its last recorded state is final, that is
    /// the answer; otherwise it died: kill what it left, record the loss.
    async fn settle_without_shim(&self, id: &str, dir: &Path) -> Result<TaskStatus, RuntimeError> {
        let state_path = dir.join(STATE_FILE);
        let recorded =
            durable::read_json::<TaskStatus>(&state_path).map_err(io_err(&state_path))?;
        if let Some(status) = &recorded {
            if status.phase.is_final() {
                return Ok(status.clone());
            }
        }
        let task_path = dir.join(TASK_FILE);
        let task: ShimTask = durable::read_json(&task_path)
            .map_err(io_err(&task_path))?
            .ok_or_else(|| RuntimeError::TaskNotFound {
                task: id.to_owned(),
            })?;
        // A shim that is still starting has not bound its socket yet: give it a moment.
        if recorded.is_none() && shim_alive(dir) {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if let Ok(ShimResponse::Status { status }) = ShimClient::new(&dir.join(SOCKET_FILE))
                .call(&ShimRequest::Status)
                .await
            {
                return Ok(*status);
            }
        }
        for c in &task.containers {
            let cid = runtime_container_id(id, &c.name);
            // The root the task's shim used, which an older binary kept elsewhere.
            delete_runtime_container(&self.config.runtime_binary, &task.runtime_root, &cid).await;
            let _ = overlay::unmount_root(&shim::container_dir(dir, &c.name).join("rootfs"));
        }
        if let Ok(cgroups) = Cgroups::detect(&task.cgroup_root) {
            let _ = cgroups.remove_task(id);
        }
        let at = now();
        let mut status = recorded.unwrap_or_else(|| task.initial_status());
        for c in &mut status.containers {
            if c.phase != ContainerPhase::Stopped {
                if c.phase == ContainerPhase::Running {
                    c.exit = Some(ContainerExit {
                        code: 137,
                        signal: Some(9),
                        oom_killed: false,
                    });
                }
                c.phase = ContainerPhase::Stopped;
                c.pid = None;
                c.finished_at = Some(at.clone());
                c.reason
                    .get_or_insert_with(|| "Task supervisor exited unexpectedly".to_owned());
            }
        }
        status.stop.get_or_insert(StopCause::ShimLost);
        status.stopping_at.get_or_insert_with(|| at.clone());
        status.stopped_at = Some(at);
        status.phase = TaskPhase::Stopped;
        durable::replace_json(&state_path, &status).map_err(io_err(&state_path))?;
        self.networks.release(id).await?;
        Ok(status)
    }
}

/// Config digests of the images that tasks under `data_dir` which have not
/// stopped use; the image store refuses to remove them and gc keeps them.
/// Reads task files only, so it works without opening a runtime.
pub fn images_in_use(data_dir: &Path) -> Result<HashSet<crate::digest::Digest>, RuntimeError> {
    let tasks_dir = data_dir.join("tasks");
    let mut digests = HashSet::new();
    let entries = match fs::read_dir(&tasks_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(digests),
        Err(e) => return Err(io_err(&tasks_dir)(e)),
    };
    for entry in entries {
        let dir = entry.map_err(io_err(&tasks_dir))?.path();
        let stopped = durable::read_json::<TaskStatus>(&dir.join(STATE_FILE))
            .ok()
            .flatten()
            .is_some_and(|s| s.phase.is_final());
        if stopped {
            continue;
        }
        if let Ok(Some(task)) = durable::read_json::<ShimTask>(&dir.join(TASK_FILE)) {
            digests.extend(
                task.containers
                    .into_iter()
                    .filter_map(|c| c.image_config_digest),
            );
        }
    }
    Ok(digests)
}

fn validate(spec: &TaskSpec) -> Result<(), RuntimeError> {
    let invalid = |message: String| RuntimeError::InvalidSpec {
        task: spec.id.clone(),
        message,
    };
    if !hail_model::ids::is_task_id(&spec.id) {
        return Err(invalid(
            "task id must be 1-64 letters, digits or '-'".to_owned(),
        ));
    }
    if spec.containers.is_empty() || spec.containers.len() > MAX_CONTAINERS {
        return Err(invalid(format!(
            "a task has 1 to {MAX_CONTAINERS} containers, not {}",
            spec.containers.len()
        )));
    }
    let mut seen = HashSet::new();
    for c in &spec.containers {
        let valid_name = (1..=255).contains(&c.name.len())
            && c.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(invalid(format!(
                "container name {:?} must be 1-255 letters, digits, '-' or '_'",
                c.name
            )));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(invalid(format!("container name {} is used twice", c.name)));
        }
    }
    for c in &spec.containers {
        for d in &c.depends_on {
            if d.container == c.name || !spec.containers.iter().any(|o| o.name == d.container) {
                return Err(invalid(format!(
                    "container {} depends on {:?}, which is not another container of the task",
                    c.name, d.container
                )));
            }
        }
    }
    for c in &spec.containers {
        for d in &c.depends_on {
            let target = spec.containers.iter().find(|o| o.name == d.container);
            if d.condition == crate::spec::DependencyCondition::Healthy
                && target.is_some_and(|t| t.health_check.is_none())
            {
                return Err(invalid(format!(
                    "container {} depends on {} being HEALTHY, but {} has no health check",
                    c.name, d.container, d.container
                )));
            }
        }
        if let Some(h) = &c.health_check {
            if h.args.is_empty() || h.retries == 0 || h.interval.is_zero() || h.timeout.is_zero() {
                return Err(invalid(format!(
                    "container {}: a health check needs a command, retries, an interval and a timeout",
                    c.name
                )));
            }
        }
    }
    if let Some(cycle) = dependency_cycle(spec) {
        return Err(invalid(format!(
            "dependsOn forms a cycle: {}",
            cycle.join(" -> ")
        )));
    }
    if !spec.containers.iter().any(|c| c.essential) {
        return Err(invalid(
            "at least one container must be essential".to_owned(),
        ));
    }
    Ok(())
}

/// A cycle in the containers' dependencies, as the names along it.
fn dependency_cycle(spec: &TaskSpec) -> Option<Vec<String>> {
    fn visit<'a>(
        spec: &'a TaskSpec,
        name: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if !done.insert(name) {
            return None;
        }
        path.push(name);
        let c = spec.containers.iter().find(|c| c.name == name)?;
        for d in &c.depends_on {
            if let Some(cycle) = visit(spec, &d.container, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = HashSet::new();
    for c in &spec.containers {
        let mut path = Vec::new();
        if let Some(cycle) = visit(spec, &c.name, &mut path, &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// Merges a container spec with its image's config the way Docker and ECS do:
/// an overridden entrypoint drops the image's Cmd; environment entries of the
/// spec replace the image's of the same name.
/// The containers of `spec` with their images' unpacked layers and their
/// volume mounts; blocking (it may unpack layers).
fn resolve_containers(
    images: &ImageStore,
    spec: &TaskSpec,
    volume_sources: Vec<Vec<PathBuf>>,
) -> Result<Vec<ShimContainer>, RuntimeError> {
    let mut containers = Vec::with_capacity(spec.containers.len());
    for (c, sources) in spec.containers.iter().zip(volume_sources) {
        let image = images
            .get(&c.image)?
            .ok_or_else(|| RuntimeError::ImageNotFound {
                task: spec.id.clone(),
                container: c.name.clone(),
                image: c.image.clone(),
            })?;
        let lower_dirs = images.rootfs_layers(&image, &crate::progress::NoProgress)?;
        let mut container = resolve_container(&spec.id, c, &image, lower_dirs)?;
        container.volume_mounts = c
            .mounts
            .iter()
            .zip(sources)
            .map(|(m, source)| crate::bundle::BindMount {
                source,
                destination: m.container_path.clone(),
                readonly: m.read_only,
            })
            .collect();
        containers.push(container);
    }
    Ok(containers)
}

fn resolve_container(
    task: &str,
    c: &ContainerSpec,
    image: &Image,
    lower_dirs: Vec<PathBuf>,
) -> Result<ShimContainer, RuntimeError> {
    let entrypoint = c
        .entrypoint
        .clone()
        .or_else(|| image.config.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&c.command, &c.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.config.cmd.clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(RuntimeError::InvalidSpec {
            task: task.to_owned(),
            message: format!(
                "container {}: no command: the image {} has no Entrypoint or Cmd and none was given",
                c.name, image.name
            ),
        });
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(entry) => entry.1 = v.to_owned(),
        None => env.push((k.to_owned(), v.to_owned())),
    };
    for kv in &image.config.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        set(k, v);
    }
    for (k, v) in &c.environment {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(
            0,
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
        );
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(("HOSTNAME".to_owned(), default_hostname(task)));
    }
    let cwd = c
        .working_directory
        .clone()
        .or_else(|| image.config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(RuntimeError::InvalidSpec {
            task: task.to_owned(),
            message: format!(
                "container {}: working directory {cwd:?} is not absolute",
                c.name
            ),
        });
    }
    Ok(ShimContainer {
        name: c.name.clone(),
        essential: c.essential,
        lower_dirs,
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        user: c
            .user
            .clone()
            .or_else(|| image.config.user.clone().filter(|u| !u.is_empty())),
        readonly_rootfs: c.readonly_root_filesystem,
        cpu_units: c.cpu_units,
        memory_mib: c.memory_mib,
        memory_reservation_mib: c.memory_reservation_mib,
        pids_limit: c.pids_limit,
        ulimits: c.ulimits.clone(),
        stop_timeout_ms: c.stop_timeout.as_millis() as u64,
        stop_signal: image
            .config
            .stop_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(libc_sigterm()),
        image_config_digest: Some(image.config_digest.clone()),
        volume_mounts: Vec::new(),
        depends_on: c.depends_on.clone(),
        health_check: c.health_check.clone(),
    })
}

fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

/// `SIGTERM`, `TERM` or `15`.
fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let name = if s.starts_with("SIG") {
        s.to_owned()
    } else {
        format!("SIG{s}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// ECS-style hostname: `ip-…` needs the IP, so use the task id's first 12 characters.
fn default_hostname(task: &str) -> String {
    task.chars().take(12).collect()
}

fn shim_alive(dir: &Path) -> bool {
    durable::read_json::<TaskStatus>(&dir.join(STATE_FILE))
        .ok()
        .flatten()
        .and_then(|s| s.shim_pid)
        .is_some_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
        || dir.join(SOCKET_FILE).exists()
}

fn last_lines(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        "shim exited before reporting".to_owned()
    } else {
        lines.into_iter().rev().collect::<Vec<_>>().join("; ")
    }
}

async fn list_runtime_containers(runtime: &Path, root: &Path) -> Vec<String> {
    let output = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["list", "--format", "json"])
        .output()
        .await;
    let Ok(output) = output else {
        return Vec::new();
    };
    let listed: Option<Vec<HashMap<String, serde_json::Value>>> =
        serde_json::from_slice(&output.stdout).unwrap_or(None);
    listed
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.get("id").and_then(|v| v.as_str()).map(str::to_owned))
        .collect()
}

async fn delete_runtime_container(runtime: &Path, root: &Path, id: &str) {
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}
