//! The shim's main loop: start the task's containers, then react to exits,
//! control requests and deadlines until every container has stopped.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::protocol::{ShimRequest, ShimResponse};
use super::reaper::{Exit, Reaper};
use super::{
    container_dir, log_path, runtime_container_id, ShimContainer, ShimTask, SHIM_LOG_FILE,
    SOCKET_FILE, STATE_FILE, TASK_FILE,
};
use crate::bundle::{self, BindMount, BundleSpec, ContainerResources};
use crate::cgroup::{Cgroups, TaskLimits};
use crate::durable;
use crate::logs::{LineSplitter, LogWriter, Rotation, Stream};
use crate::overlay::{self, RootDirs};
use crate::spec::DependencyCondition;
use crate::task::{ContainerExit, ContainerPhase, Health, StopCause, TaskPhase, TaskStatus};
use crate::user;

/// ECS's words for a container the kernel killed for memory.
pub const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("shim {dir}: {what}: {source}")]
    Io {
        dir: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("shim {dir}: task file missing")]
    NoTask { dir: PathBuf },
    #[error("shim: {what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// Entry point of `hail shim`: a shim is started before it has a task (see
/// [`super::spare`]) and waits for one line on stdin, the directory of the task
/// it is to supervise. End of input without a line means the runtime that
/// started it no longer needs it: it exits at once. Returns when the task has
/// stopped.
pub fn main() -> Result<(), ShimError> {
    // Named apart from the server in `top`, `ps -o comm` and profiles.
    let _ = nix::sys::prctl::set_name(c"hail-shim");
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    let task_dir = match read {
        Ok(n) if n > 0 && line.ends_with('\n') => PathBuf::from(line.trim_end_matches('\n')),
        // No task, or a half line from a runtime that died while writing it.
        _ => return Ok(()),
    };
    // Diagnostics go to the task's shim log from here on, and the runtime's
    // pipe is let go: the task outlives the runtime that handed it over.
    let io = |what| {
        let dir = task_dir.clone();
        move |source| ShimError::Io { dir, what, source }
    };
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(task_dir.join(SHIM_LOG_FILE))
        .map_err(io("opening the shim log"))?;
    let null = fs::File::open("/dev/null").map_err(io("opening /dev/null"))?;
    nix::unistd::dup2_stderr(&log).map_err(|source| ShimError::Sys {
        what: "sending diagnostics to the shim log",
        source,
    })?;
    nix::unistd::dup2_stdin(&null).map_err(|source| ShimError::Sys {
        what: "letting the hand-over pipe go",
        source,
    })?;
    run(&task_dir)
}

/// Supervises the task in `task_dir`. Returns when the task has stopped.
fn run(task_dir: &Path) -> Result<(), ShimError> {
    // A session of its own: signals aimed at the server's process group
    // (a Ctrl-C, a service manager stopping it) must not reach the task.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true).map_err(|source| ShimError::Sys {
        what: "becoming child subreaper",
        source,
    })?;
    let task: ShimTask = durable::read_json(&task_dir.join(TASK_FILE))
        .map_err(|source| ShimError::Io {
            dir: task_dir.to_owned(),
            what: "reading task file",
            source,
        })?
        .ok_or_else(|| ShimError::NoTask {
            dir: task_dir.to_owned(),
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ShimError::Io {
            dir: task_dir.to_owned(),
            what: "starting the event loop",
            source,
        })?;
    rt.block_on(async move {
        let supervisor = Supervisor::new(task_dir.to_owned(), task)?;
        supervisor.run().await
    })
}

type Control = (ShimRequest, oneshot::Sender<ShimResponse>);

struct Running {
    pid: i32,
    kill_at: Option<Instant>,
    /// Sent its stop signal (the task is stopping).
    signalled: bool,
    /// When the container started, for the health check's start period.
    started: Instant,
    /// When its next health check is due (containers with a check).
    next_check: Option<Instant>,
    /// Failed checks in a row that count.
    failing: u32,
}

/// A runtime invocation bringing a container up, in flight.
struct Launch {
    container: usize,
    mode: LaunchMode,
    pid_file: PathBuf,
    runtime_log: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaunchMode {
    /// `runc run --detach`: the container runs when it returns. For a
    /// container whose dependencies are met: one invocation, not two.
    Run,
    /// `runc create`: the container's process is set up and waits for `runc
    /// start`. For a container still waiting on its dependencies, so that the
    /// runtime's cost (tens of ms per container) is paid while they are
    /// pending, not after.
    Create,
}

/// A health check in flight: a `runc exec` process.
struct Check {
    container: usize,
    deadline: Instant,
}

/// Whether a container's dependencies let it start.
enum Readiness {
    Ready,
    Wait,
    /// A dependency can never be met; why, for people.
    Never(String),
}

struct Supervisor {
    dir: PathBuf,
    task: ShimTask,
    cgroups: Option<Cgroups>,
    status: TaskStatus,
    reaper: Reaper,
    control: mpsc::UnboundedReceiver<Control>,
    running: HashMap<usize, Running>,
    waiters: Vec<oneshot::Sender<ShimResponse>>,
    pumps: Vec<JoinHandle<()>>,
    deadline: Option<Instant>,
    /// Health checks running now, by the pid of their `runc exec`.
    checks: HashMap<i32, Check>,
    /// Runtime invocations in flight, by the pid of the runtime process.
    launching: HashMap<i32, Launch>,
    /// Containers created and not started (or not running because the task
    /// stopped first): container index → the pid of its waiting process.
    created: HashMap<usize, i32>,
    /// Containers in the order they are brought up: by depth in the
    /// dependency graph, then definition order.
    launch_order: Vec<usize>,
    /// At most this many runtime invocations at once: more only slow down
    /// the one the next container waits for.
    launch_slots: usize,
    /// Whether the runtime that started the shim has been told how the start went.
    announced: bool,
    /// Exits of processes not known yet: a container's process can end (and
    /// be reaped) before the runtime invocation that started it returns.
    early_exits: HashMap<i32, Exit>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Supervisor {
    fn new(dir: PathBuf, task: ShimTask) -> Result<Self, ShimError> {
        let io = |what| {
            let dir = dir.clone();
            move |source| ShimError::Io { dir, what, source }
        };
        let reaper = Reaper::start().map_err(io("listening for child exits"))?;
        let socket = dir.join(SOCKET_FILE);
        let _ = fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(io("binding the control socket"))?;
        let (tx, control) = mpsc::unbounded_channel();
        tokio::spawn(accept(listener, tx));
        let mut status = task.initial_status();
        status.shim_pid = Some(std::process::id() as i32);
        let deadline = task
            .max_runtime_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        Ok(Self {
            dir,
            cgroups: None,
            status,
            reaper,
            control,
            running: HashMap::new(),
            waiters: Vec::new(),
            pumps: Vec::new(),
            deadline,
            checks: HashMap::new(),
            launching: HashMap::new(),
            created: HashMap::new(),
            launch_order: launch_order(&task.containers),
            launch_slots: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            announced: false,
            early_exits: HashMap::new(),
            task,
        })
    }

    async fn run(mut self) -> Result<(), ShimError> {
        self.start_all().await;
        self.announce_when_settled();
        while !self.all_exited() {
            let next_deadline = self.next_deadline();
            tokio::select! {
                exit = self.reaper.next() => {
                    if let Some((pid, exit)) = exit {
                        self.on_child_exit(pid, exit).await;
                    }
                }
                Some((request, reply)) = self.control.recv() => self.on_request(request, reply),
                _ = sleep_until(next_deadline) => {
                    self.on_deadline();
                    self.run_due_checks().await;
                }
            }
            self.announce_when_settled();
        }
        if !self.announced {
            self.announce();
        }
        self.finish().await;
        Ok(())
    }

    /// Every process the shim started is gone: running containers, created
    /// ones, and runtime invocations bringing containers up.
    fn all_exited(&self) -> bool {
        self.running.is_empty() && self.created.is_empty() && self.launching.is_empty()
    }

    /// Dispatches a child's exit to what the child was.
    async fn on_child_exit(&mut self, pid: i32, exit: Exit) {
        if let Some(check) = self.checks.remove(&pid) {
            self.on_check(check.container, exit == Exit::Code(0)).await;
        } else if let Some(launch) = self.launching.remove(&pid) {
            self.on_launched(launch, exit).await;
            if self.launching.is_empty() {
                // Every launch has claimed its container's early exit.
                self.early_exits.clear();
            }
        } else if let Some(index) = self.created_container(pid) {
            self.on_created_exit(index).await;
        } else if self.running.values().any(|r| r.pid == pid) {
            self.on_exit(pid, exit).await;
        } else if !self.launching.is_empty() {
            self.early_exits.insert(pid, exit);
        }
    }

    /// An exit of `pid` already collected: by the reaper while waiting for
    /// another process, or before anyone knew the pid.
    fn take_exit(&mut self, pid: i32) -> Option<Exit> {
        self.reaper
            .take(pid)
            .or_else(|| self.early_exits.remove(&pid))
    }

    fn created_container(&self, pid: i32) -> Option<usize> {
        self.created
            .iter()
            .find_map(|(&index, &p)| (p == pid).then_some(index))
    }

    /// Whether container `index` has not been handed to the runtime yet.
    fn pending(&self, index: usize) -> bool {
        self.status.containers[index].phase == ContainerPhase::Created
            && !self.created.contains_key(&index)
            && !self.launching.values().any(|l| l.container == index)
    }

    /// Prepares the task and starts every container whose dependencies
    /// allow it; the rest start as their dependencies are met.
    async fn start_all(&mut self) {
        if let Err(message) = self.prepare_task() {
            let first = self.task.containers[0].name.clone();
            self.fail_start(first, message);
            return;
        }
        self.start_ready().await;
    }

    /// Brings containers up as far as their dependencies allow, until
    /// nothing more can happen now: starts those whose dependencies are met
    /// (`runc start` if created ahead, `runc run` if not), and creates the
    /// others ahead while runtime slots are free. A dependency that can never
    /// be met stops the task, naming it. Once every container has started,
    /// the task is running.
    async fn start_ready(&mut self) {
        loop {
            if self.status.phase != TaskPhase::Starting {
                return;
            }
            let mut progressed = false;
            for i in self.launch_order.clone() {
                if self.status.containers[i].phase != ContainerPhase::Created {
                    continue;
                }
                match self.readiness(i) {
                    Readiness::Wait => {}
                    Readiness::Never(message) => {
                        let name = self.task.containers[i].name.clone();
                        self.status.containers[i].reason =
                            Some(format!("DependencyNeverMet: {message}"));
                        self.fail_start(name, message);
                        return;
                    }
                    Readiness::Ready => {
                        if let Some(pid) = self.created.remove(&i) {
                            if let Err(message) = self.start_created(i, pid).await {
                                self.container_failed(i, message).await;
                                return;
                            }
                            progressed = true;
                        } else if self.pending(i) && self.launching.len() < self.launch_slots {
                            // Its completion drives the next pass.
                            if let Err(message) = self.launch(i, LaunchMode::Run) {
                                self.container_failed(i, message).await;
                                return;
                            }
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        // Slots left over go to containers still waiting on dependencies.
        for i in self.launch_order.clone() {
            if self.launching.len() >= self.launch_slots {
                break;
            }
            if self.pending(i) {
                if let Err(message) = self.launch(i, LaunchMode::Create) {
                    self.container_failed(i, message).await;
                    return;
                }
            }
        }
        let all_started = self
            .status
            .containers
            .iter()
            .all(|c| c.phase != ContainerPhase::Created);
        if all_started && self.status.phase == TaskPhase::Starting {
            self.set_phase(TaskPhase::Running);
            self.status.started_at = Some(now());
            self.persist();
            // A container may have ended while the others were starting.
            if self.running.is_empty() {
                self.begin_stop(StopCause::AllContainersExited);
            }
        } else {
            self.persist();
        }
    }

    /// A container could not be brought up: whatever its attempt left — the
    /// runtime's record, the root mount — goes now, not when the task is
    /// removed, and the task stops naming it.
    async fn container_failed(&mut self, index: usize, message: String) {
        let name = self.task.containers[index].name.clone();
        self.delete_container(&name).await;
        if self.status.phase == TaskPhase::Starting {
            self.status.containers[index].reason =
                Some(format!("CannotStartContainerError: {message}"));
            self.fail_start(name, message);
        }
    }

    /// Whether container `index` may start: every dependency met, one that
    /// can never be met, or still waiting.
    fn readiness(&self, index: usize) -> Readiness {
        let mut ready = true;
        for dep in &self.task.containers[index].depends_on {
            let Some(target) = self.status.container(&dep.container) else {
                return Readiness::Never(format!("dependency {} does not exist", dep.container));
            };
            let condition = dep.condition.as_str();
            let started = target.started_at.is_some();
            let stopped = target.phase == ContainerPhase::Stopped;
            if stopped && !started {
                return Readiness::Never(format!(
                    "container {} depends on {} ({condition}), which never started",
                    self.task.containers[index].name, dep.container
                ));
            }
            let met = match dep.condition {
                DependencyCondition::Start => started,
                DependencyCondition::Complete => stopped,
                DependencyCondition::Success => match target.exit {
                    Some(exit) if stopped && exit.code == 0 => true,
                    Some(exit) if stopped => {
                        return Readiness::Never(format!(
                            "container {} depends on {} (SUCCESS), which exited with code {}",
                            self.task.containers[index].name, dep.container, exit.code
                        ))
                    }
                    _ => false,
                },
                DependencyCondition::Healthy => match target.health {
                    Some(Health::Healthy) => true,
                    Some(Health::Unhealthy) => {
                        return Readiness::Never(format!(
                            "container {} depends on {} (HEALTHY), which is UNHEALTHY",
                            self.task.containers[index].name, dep.container
                        ))
                    }
                    _ if stopped => {
                        return Readiness::Never(format!(
                            "container {} depends on {} (HEALTHY), which exited",
                            self.task.containers[index].name, dep.container
                        ))
                    }
                    _ => false,
                },
            };
            ready &= met;
        }
        if ready {
            Readiness::Ready
        } else {
            Readiness::Wait
        }
    }

    fn fail_start(&mut self, container: String, message: String) {
        let _ = writeln!(
            std::io::stderr(),
            "task {}: container {container}: {message}",
            self.task.id
        );
        self.begin_stop(StopCause::StartFailed { container, message });
    }

    /// Task-wide preparation: the cgroup envelope and the files every container shares.
    fn prepare_task(&mut self) -> Result<(), String> {
        let cgroups = Cgroups::detect(&self.task.cgroup_root).map_err(|e| e.to_string())?;
        cgroups
            .create_task(
                &self.task.id,
                &TaskLimits {
                    cpu_units: self.task.cpu_units,
                    memory_mib: self.task.memory_mib,
                    pids_limit: self.task.pids_limit,
                },
            )
            .map_err(|e| e.to_string())?;
        self.cgroups = Some(cgroups);
        fs::create_dir_all(self.dir.join("logs")).map_err(|e| format!("creating log dir: {e}"))?;
        write_etc_files(&self.dir, &self.task).map_err(|e| format!("writing /etc files: {e}"))
    }

    /// An invocation of the OCI runtime on Hail's state directory, logging
    /// to `log` (JSON lines, read back for errors) when given.
    fn runtime_command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.task.runtime_binary);
        cmd.arg("--root").arg(&self.task.runtime_root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        cmd
    }

    /// Mounts container `index`'s root, writes its bundle, wires its output
    /// to its log and hands it to the runtime (`run` or `create`), without
    /// waiting: the runtime's exit comes back through the reaper.
    fn launch(&mut self, index: usize, mode: LaunchMode) -> Result<(), String> {
        let spec = self.task.containers[index].clone();
        let cid = runtime_container_id(&self.task.id, &spec.name);
        let cdir = container_dir(&self.dir, &spec.name);
        let roots = RootDirs::under(&cdir);
        overlay::mount_root(&spec.lower_dirs, &roots).map_err(|e| e.to_string())?;
        let resolved_user =
            user::resolve_user(&roots.merged, spec.user.as_deref()).map_err(|e| e.to_string())?;
        let cgroups = self
            .cgroups
            .as_ref()
            .expect("prepared before containers start");
        let etc = self.dir.join("etc");
        let bundle_spec = BundleSpec {
            rootfs: roots.merged.clone(),
            readonly_rootfs: spec.readonly_rootfs,
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            user: resolved_user,
            hostname: self.task.hostname.clone(),
            netns_path: Some(self.task.network.netns_path.clone()),
            cgroups_path: cgroups.container_path(&self.task.id, &spec.name),
            resources: ContainerResources {
                cpu_units: spec.cpu_units,
                memory_mib: spec.memory_mib,
                memory_reservation_mib: spec.memory_reservation_mib,
                pids_limit: spec.pids_limit,
            },
            ulimits: spec.ulimits.clone(),
            mounts: ["hosts", "hostname", "resolv.conf"]
                .into_iter()
                .map(|f| BindMount {
                    source: etc.join(f),
                    destination: format!("/etc/{f}"),
                    readonly: false,
                })
                .chain(spec.volume_mounts.iter().cloned())
                .collect(),
            annotations: BTreeMap::from([
                ("hail.task".to_owned(), self.task.id.clone()),
                ("hail.container".to_owned(), spec.name.clone()),
            ]),
        };
        let bundle_dir = cdir.join("bundle");
        fs::create_dir_all(&bundle_dir).map_err(|e| format!("creating bundle dir: {e}"))?;
        bundle::write_bundle(&bundle_dir, &bundle_spec).map_err(|e| e.to_string())?;

        let (out_r, out_w) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("creating stdout pipe: {e}"))?;
        let (err_r, err_w) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("creating stderr pipe: {e}"))?;
        let pid_file = bundle_dir.join("pid");
        let runtime_log = bundle_dir.join("runtime.log");
        let runtime_pid = {
            // The command owns the write ends; dropping it at the end of this
            // block leaves the container as their only holder, so EOF on the
            // read ends means the container's output is complete.
            let mut cmd = self.runtime_command(Some(&runtime_log));
            match mode {
                LaunchMode::Run => cmd.args(["run", "--detach"]),
                LaunchMode::Create => cmd.arg("create"),
            };
            cmd.arg("--pid-file")
                .arg(&pid_file)
                .arg("--bundle")
                .arg(&bundle_dir)
                .arg(&cid)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out_w))
                .stderr(Stdio::from(err_w));
            let child = cmd
                .spawn()
                .map_err(|e| format!("running {}: {e}", self.task.runtime_binary.display()))?;
            child.id() as i32
        };
        self.launching.insert(
            runtime_pid,
            Launch {
                container: index,
                mode,
                pid_file,
                runtime_log,
            },
        );
        let writer = LogWriter::open(
            &log_path(&self.dir, &spec.name),
            Rotation {
                max_bytes: self.task.log_max_bytes,
                max_files: self.task.log_max_files,
            },
        )
        .map_err(|e| format!("opening log: {e}"))?;
        let writer = Arc::new(Mutex::new(writer));
        self.pumps
            .push(tokio::spawn(pump(out_r, Stream::Stdout, writer.clone())));
        self.pumps
            .push(tokio::spawn(pump(err_r, Stream::Stderr, writer)));
        Ok(())
    }

    /// The runtime invocation for a container returned: it runs, waits
    /// created for `runc start`, or failed.
    async fn on_launched(&mut self, launch: Launch, exit: Exit) {
        let index = launch.container;
        let pid = if exit == Exit::Code(0) {
            fs::read_to_string(&launch.pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .ok_or_else(|| {
                    format!("runtime wrote no pid file at {}", launch.pid_file.display())
                })
        } else {
            Err(runtime_failure(&launch.runtime_log, exit))
        };
        match pid {
            Err(message) => {
                self.container_failed(index, message).await;
                return;
            }
            Ok(pid) if self.status.phase != TaskPhase::Starting => {
                // The task began stopping while the runtime brought this
                // container up: it goes at once, through the created path.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                self.created.insert(index, pid);
                if let Some(exit) = self.take_exit(pid) {
                    Box::pin(self.on_child_exit(pid, exit)).await;
                }
                return;
            }
            Ok(pid) => match launch.mode {
                LaunchMode::Run => self.mark_running(index, pid).await,
                LaunchMode::Create => {
                    self.created.insert(index, pid);
                    if let Some(exit) = self.take_exit(pid) {
                        Box::pin(self.on_child_exit(pid, exit)).await;
                        return;
                    }
                }
            },
        }
        self.start_ready().await;
    }

    /// Starts a container created ahead: `runc start` releases its process.
    async fn start_created(&mut self, index: usize, pid: i32) -> Result<(), String> {
        let name = &self.task.containers[index].name;
        let cid = runtime_container_id(&self.task.id, name);
        let runtime_log = container_dir(&self.dir, name)
            .join("bundle")
            .join("runtime.log");
        let child = self
            .runtime_command(Some(&runtime_log))
            .args(["start", &cid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.task.runtime_binary.display()))?;
        let exit = self.reaper.wait_for(child.id() as i32).await;
        if exit != Exit::Code(0) {
            return Err(runtime_failure(&runtime_log, exit));
        }
        self.mark_running(index, pid).await;
        Ok(())
    }

    /// Records container `index` as running with process `pid`.
    async fn mark_running(&mut self, index: usize, pid: i32) {
        let health_check = self.task.containers[index].health_check.clone();
        let status = &mut self.status.containers[index];
        status.phase = ContainerPhase::Running;
        status.pid = Some(pid);
        status.started_at = Some(now());
        self.running.insert(
            index,
            Running {
                pid,
                kill_at: None,
                signalled: false,
                started: Instant::now(),
                // The first check runs within a second of the start, so
                // containers waiting on this one being HEALTHY are not held
                // for a whole interval; later ones follow the interval.
                next_check: health_check
                    .as_ref()
                    .map(|h| Instant::now() + h.interval.min(Duration::from_secs(1))),
                failing: 0,
            },
        );
        if let Some(exit) = self.take_exit(pid) {
            self.on_exit(pid, exit).await;
        }
    }

    /// A created container's process ended before it was started: killed
    /// because the task stopped, or died on its own (then the task cannot start).
    async fn on_created_exit(&mut self, index: usize) {
        self.created.remove(&index);
        if self.status.phase == TaskPhase::Starting {
            self.container_failed(index, "its process exited before it started".to_owned())
                .await;
        } else {
            let name = self.task.containers[index].name.clone();
            self.delete_container(&name).await;
            self.persist();
        }
    }

    /// Tells the runtime that started the shim how the start went, once no
    /// runtime invocation of the start is in flight any more (or it failed).
    fn announce_when_settled(&mut self) {
        if !self.announced
            && (self.launching.is_empty() || self.status.phase != TaskPhase::Starting)
        {
            self.announce();
        }
    }

    /// Tells the runtime that started us how the start went: one JSON line on stdout.
    fn announce(&mut self) {
        self.announced = true;
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(&self.status) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    async fn on_exit(&mut self, pid: i32, exit: Exit) {
        let Some((&index, _)) = self.running.iter().find(|(_, r)| r.pid == pid) else {
            return;
        };
        self.running.remove(&index);
        let spec = self.task.containers[index].clone();
        let oom_killed = self
            .cgroups
            .as_ref()
            .and_then(|c| c.oom_kills(&self.task.id, &spec.name).ok())
            .is_some_and(|n| n > 0);
        let status = &mut self.status.containers[index];
        status.phase = ContainerPhase::Stopped;
        status.pid = None;
        status.finished_at = Some(now());
        status.exit = Some(ContainerExit {
            code: exit.code(),
            signal: exit.signal(),
            oom_killed,
        });
        if oom_killed {
            status.reason = Some(OOM_REASON.to_owned());
        }
        match self.status.phase {
            TaskPhase::Running | TaskPhase::Starting if spec.essential => {
                self.begin_stop(StopCause::EssentialContainerExited {
                    container: spec.name.clone(),
                });
            }
            TaskPhase::Running if self.running.is_empty() => {
                self.begin_stop(StopCause::AllContainersExited);
            }
            // Containers waiting on this one's start, completion or success.
            TaskPhase::Starting => Box::pin(self.start_ready()).await,
            // Containers that depended on this one may stop now.
            TaskPhase::Stopping => {
                self.signal_stoppable();
                self.persist();
            }
            _ => self.persist(),
        }
        // After the containers waiting on this exit have been started: its
        // runtime record and root are not on their path.
        self.forget_exited_container(&spec.name);
    }

    /// Forgets a container whose process has exited and been reaped. What
    /// the runtime still holds of it is its state directory: its other
    /// processes died with its pid namespace, and its cgroups go with the
    /// task's. So the directory is removed here rather than by `runc delete`,
    /// a second Go program per container (≈ 4.5 ms of CPU on the path of
    /// every task's end). Its root is unmounted.
    fn forget_exited_container(&mut self, name: &str) {
        let cid = runtime_container_id(&self.task.id, name);
        let state = self.task.runtime_root.join(&cid);
        if let Err(e) = fs::remove_dir_all(&state) {
            if e.kind() != std::io::ErrorKind::NotFound {
                let _ = writeln!(
                    std::io::stderr(),
                    "task {}: removing {}: {e}",
                    self.task.id,
                    state.display()
                );
            }
        }
        let merged = RootDirs::under(&container_dir(&self.dir, name)).merged;
        if let Err(e) = overlay::unmount_root(&merged) {
            let _ = writeln!(std::io::stderr(), "task {}: {e}", self.task.id);
        }
    }

    /// Removes the runtime's record of a container that failed to come up or
    /// was created but never started (`runc delete --force` also ends its
    /// waiting process), and unmounts its root.
    async fn delete_container(&mut self, name: &str) {
        let cid = runtime_container_id(&self.task.id, name);
        let spawned = self
            .runtime_command(None)
            .args(["delete", "--force", &cid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(child) = spawned {
            self.reaper.wait_for(child.id() as i32).await;
        }
        let merged = RootDirs::under(&container_dir(&self.dir, name)).merged;
        if let Err(e) = overlay::unmount_root(&merged) {
            let _ = writeln!(std::io::stderr(), "task {}: {e}", self.task.id);
        }
    }

    /// Asks every running container to stop; the first cause is the one kept.
    fn begin_stop(&mut self, cause: StopCause) {
        if matches!(self.status.phase, TaskPhase::Stopping | TaskPhase::Stopped) {
            return;
        }
        self.set_phase(TaskPhase::Stopping);
        self.status.stopping_at = Some(now());
        self.status.stop = Some(cause);
        self.signal_stoppable();
        // Created containers never ran anything of their own: no stop signal,
        // no timeout. Their exits come back through the reaper.
        for &pid in self.created.values() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for c in &mut self.status.containers {
            if c.phase == ContainerPhase::Created {
                c.phase = ContainerPhase::Stopped;
                c.reason
                    .get_or_insert_with(|| "Task stopped before the container started".to_owned());
            }
        }
        self.persist();
    }

    /// Sends the stop signal to every running container that no other
    /// running container depends on: shutdown runs in reverse dependency
    /// order, each container given its stop timeout before SIGKILL.
    fn signal_stoppable(&mut self) {
        let running: Vec<usize> = self.running.keys().copied().collect();
        for index in running {
            let name = &self.task.containers[index].name;
            let needed = running_dependents(&self.task.containers, &self.running, name);
            let Some(entry) = self.running.get_mut(&index) else {
                continue;
            };
            if entry.signalled || needed {
                continue;
            }
            let spec = &self.task.containers[index];
            let signal = Signal::try_from(spec.stop_signal).unwrap_or(Signal::SIGTERM);
            let _ = kill(Pid::from_raw(entry.pid), signal);
            entry.signalled = true;
            entry.kill_at = Some(Instant::now() + Duration::from_millis(spec.stop_timeout_ms));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let kills = self.running.values().filter_map(|r| r.kill_at);
        let runtime = self
            .deadline
            .filter(|_| self.status.phase == TaskPhase::Running);
        let checks_due = self
            .running
            .values()
            .filter_map(|r| r.next_check)
            .filter(|_| self.status.phase != TaskPhase::Stopping);
        let checks_late = self.checks.values().map(|c| c.deadline);
        kills
            .chain(runtime)
            .chain(checks_due)
            .chain(checks_late)
            .min()
    }

    /// Starts the health checks that are due (one at a time per container)
    /// and fails those that overran their timeout.
    async fn run_due_checks(&mut self) {
        let now = Instant::now();
        let late: Vec<(i32, usize)> = self
            .checks
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(pid, c)| (*pid, c.container))
            .collect();
        for (pid, container) in late {
            self.checks.remove(&pid);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            self.on_check(container, false).await;
        }
        if self.status.phase == TaskPhase::Stopping {
            return;
        }
        let due: Vec<usize> = self
            .running
            .iter()
            .filter(|(i, r)| {
                r.next_check.is_some_and(|t| t <= now)
                    && !self.checks.values().any(|c| c.container == **i)
            })
            .map(|(i, _)| *i)
            .collect();
        for index in due {
            let Some(check) = self.task.containers[index].health_check.clone() else {
                continue;
            };
            if let Some(r) = self.running.get_mut(&index) {
                r.next_check = Some(now + check.interval);
            }
            let cid = runtime_container_id(&self.task.id, &self.task.containers[index].name);
            let spawned = self
                .runtime_command(None)
                .args(["exec", &cid])
                .args(&check.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => {
                    self.checks.insert(
                        child.id() as i32,
                        Check {
                            container: index,
                            deadline: now + check.timeout,
                        },
                    );
                }
                Err(_) => self.on_check(index, false).await,
            }
        }
    }

    /// Records one health check's result: healthy at the first pass,
    /// unhealthy after `retries` failures in a row outside the start period.
    async fn on_check(&mut self, index: usize, passed: bool) {
        let Some(check) = self.task.containers[index].health_check.clone() else {
            return;
        };
        let Some(running) = self.running.get_mut(&index) else {
            return;
        };
        let before = self.status.containers[index].health;
        let next = if passed {
            running.failing = 0;
            Health::Healthy
        } else if running.started.elapsed() < check.start_period {
            before.unwrap_or(Health::Unknown)
        } else {
            running.failing += 1;
            if running.failing >= check.retries {
                Health::Unhealthy
            } else {
                before.unwrap_or(Health::Unknown)
            }
        };
        if before != Some(next) {
            self.status.containers[index].health = Some(next);
            self.persist();
            if self.status.phase == TaskPhase::Starting {
                // A container may have been waiting on this one's health.
                Box::pin(self.start_ready()).await;
            }
        }
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        if self.status.phase == TaskPhase::Running && self.deadline.is_some_and(|d| d <= now) {
            let max_runtime_ms = self.task.max_runtime_ms.unwrap_or_default();
            self.begin_stop(StopCause::Timeout { max_runtime_ms });
        }
        for running in self.running.values_mut() {
            if running.kill_at.is_some_and(|k| k <= now) {
                let _ = kill(Pid::from_raw(running.pid), Signal::SIGKILL);
                running.kill_at = None;
            }
        }
    }

    fn on_request(&mut self, request: ShimRequest, reply: oneshot::Sender<ShimResponse>) {
        match request {
            ShimRequest::Status => {
                let _ = reply.send(self.status_response());
            }
            ShimRequest::Wait => self.waiters.push(reply),
            ShimRequest::Stop { reason } => {
                self.begin_stop(StopCause::Requested { reason });
                let _ = reply.send(self.status_response());
            }
        }
    }

    fn status_response(&self) -> ShimResponse {
        ShimResponse::Status {
            status: Box::new(self.status.clone()),
        }
    }

    fn set_phase(&mut self, next: TaskPhase) {
        debug_assert!(
            self.status.phase.can_become(next),
            "{:?} -> {next:?}",
            self.status.phase
        );
        self.status.phase = next;
    }

    fn persist(&self) {
        if let Err(e) = durable::replace_json(&self.dir.join(STATE_FILE), &self.status) {
            let _ = writeln!(
                std::io::stderr(),
                "task {}: writing state: {e}",
                self.task.id
            );
        }
    }

    /// Every container has exited: drain logs, release the cgroup, record the end.
    async fn finish(mut self) {
        for pump in std::mem::take(&mut self.pumps) {
            // Output ends when the container's processes are gone; a grandchild
            // that escaped the pid namespace cannot hold it open past this.
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
        }
        if let Some(cgroups) = &self.cgroups {
            if let Err(e) = cgroups.remove_task(&self.task.id) {
                let _ = writeln!(std::io::stderr(), "task {}: {e}", self.task.id);
            }
        }
        if self.status.stop.is_none() {
            self.status.stop = Some(StopCause::AllContainersExited);
        }
        if self.status.stopping_at.is_none() {
            self.status.stopping_at = Some(now());
        }
        self.set_phase(TaskPhase::Stopped);
        self.status.stopped_at = Some(now());
        self.persist();
        let _ = fs::remove_file(self.dir.join(SOCKET_FILE));
        for waiter in std::mem::take(&mut self.waiters) {
            let _ = waiter.send(self.status_response());
        }
        // Requests that raced with the end are answered with it: those
        // queued, and those on connections accepted before the socket went
        // that are read during this grace (a runtime waiting on the task
        // would otherwise see the connection drop and settle the task
        // itself, the slow way). The grace also lets the answers leave
        // before the process exits.
        let grace = tokio::time::Instant::now() + Duration::from_millis(20);
        while let Ok(Some((_, reply))) = tokio::time::timeout_at(grace, self.control.recv()).await {
            let _ = reply.send(self.status_response());
        }
    }
}

/// Container indices in the order they are brought up: by depth in the
/// dependency graph (a container after everything it depends on), then
/// definition order. Unknown names count as no dependency; a cycle (refused
/// before a task gets here) cannot make this loop forever.
fn launch_order(containers: &[ShimContainer]) -> Vec<usize> {
    let index: HashMap<&str, usize> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut depth = vec![0usize; containers.len()];
    for _ in 0..containers.len() {
        let mut changed = false;
        for (i, c) in containers.iter().enumerate() {
            let deepest = c
                .depends_on
                .iter()
                .filter_map(|d| index.get(d.container.as_str()))
                .map(|&j| depth[j] + 1)
                .max()
                .unwrap_or(0);
            if deepest > depth[i] {
                depth[i] = deepest;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut order: Vec<usize> = (0..containers.len()).collect();
    order.sort_by_key(|&i| depth[i]);
    order
}

/// Whether a running container other than `name` depends on `name`.
fn running_dependents(
    containers: &[ShimContainer],
    running: &HashMap<usize, Running>,
    name: &str,
) -> bool {
    running.keys().any(|&i| {
        containers[i].name != name && containers[i].depends_on.iter().any(|d| d.container == name)
    })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Serves the control socket: each connection carries requests, one per line.
async fn accept(listener: UnixListener, tx: mpsc::UnboundedSender<Control>) {
    while let Ok((stream, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let response = match serde_json::from_str::<ShimRequest>(&line) {
                    Ok(request) => {
                        let (reply_tx, reply_rx) = oneshot::channel();
                        if tx.send((request, reply_tx)).is_err() {
                            return;
                        }
                        match reply_rx.await {
                            Ok(r) => r,
                            Err(_) => return,
                        }
                    }
                    Err(e) => ShimResponse::Error {
                        message: format!("invalid request: {e}"),
                    },
                };
                let Ok(mut bytes) = serde_json::to_vec(&response) else {
                    return;
                };
                bytes.push(b'\n');
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Copies one stream of a container into its log, line by line.
async fn pump(fd: OwnedFd, stream: Stream, writer: Arc<Mutex<LogWriter>>) {
    let Ok(mut rx) = pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut splitter = LineSplitter::default();
    let mut last_sync = Instant::now();
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = Utc::now();
        let mut w = writer.lock().expect("log writer lock");
        splitter.feed(&buf[..n], |line| {
            let _ = w.append(stream, line, at);
        });
        // Output reaches the page cache at once; it is made durable at most a
        // second later, so a burst of lines costs one fsync, not one each.
        if last_sync.elapsed() > Duration::from_secs(1) {
            let _ = w.sync();
            last_sync = Instant::now();
        }
    }
    let mut w = writer.lock().expect("log writer lock");
    let at = Utc::now();
    splitter.finish(|line| {
        let _ = w.append(stream, line, at);
    });
    let _ = w.sync();
}

/// Why a runtime invocation failed: the error it logged, or how it exited.
fn runtime_failure(log: &Path, exit: Exit) -> String {
    runtime_error(log).unwrap_or_else(|| format!("runtime exited with {exit:?}"))
}

/// The last error the OCI runtime logged (runc's `--log-format json`).
fn runtime_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error").then(|| v.get("msg")?.as_str().map(str::to_owned))?
    })
}

/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, shared by the task's
/// containers: every container name resolves to 127.0.0.1 (they share the
/// network namespace), the hostname to the task's IP.
fn write_etc_files(task_dir: &Path, task: &ShimTask) -> std::io::Result<()> {
    let etc = task_dir.join("etc");
    fs::create_dir_all(&etc)?;
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = task.network.ip {
        hosts.push_str(&format!("{ip}\t{}\n", task.hostname));
    } else {
        hosts.push_str(&format!("127.0.1.1\t{}\n", task.hostname));
    }
    let names: Vec<&str> = task.containers.iter().map(|c| c.name.as_str()).collect();
    hosts.push_str(&format!("127.0.0.1\t{}\n", names.join(" ")));
    fs::write(etc.join("hosts"), hosts)?;
    fs::write(etc.join("hostname"), format!("{}\n", task.hostname))?;
    fs::write(etc.join("resolv.conf"), resolv_conf())?;
    Ok(())
}

/// The host's resolvers, minus loopback ones a task's namespace cannot reach.
fn resolv_conf() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    host.lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => !addr.starts_with("127.") && addr != "::1",
                _ => true,
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}
