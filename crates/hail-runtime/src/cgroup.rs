//! Task and container cgroups.
//!
//! Every task gets a parent cgroup `<root>/<task_id>` holding the task-level
//! envelope (CFS quota, memory hard limit, pids limit); each of its containers
//! is a child `<root>/<task_id>/<container>` that runc creates from the OCI
//! `linux.cgroupsPath` we hand it. Because cgroup limits are hierarchical, the
//! task's memory limit bounds the sum of its containers.
//!
//! Two layouts are handled: hybrid (cgroup v1 controllers, each on its own
//! mount, plus a v2 hierarchy without controllers at `unified/`, as on these
//! machines) and pure v2. The filesystem root is a parameter so the file-level
//! logic can be tested against a directory of plain files.

pub mod accounting;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The CFS period every quota is expressed against (100 ms, as Docker).
pub const CFS_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts (1 ms).
const MIN_CFS_QUOTA_US: u64 = 1_000;
/// v1 reports "no memory limit" as a huge page-aligned number; anything above
/// this is treated as unlimited.
const V1_UNLIMITED_THRESHOLD: u64 = 1 << 62;
/// Controllers a task cgroup enables for its containers on pure v2.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 controllers plus a v2 unified hierarchy without controllers.
    Hybrid,
    /// Pure cgroup v2.
    Unified,
}

/// The task-level envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLimits {
    /// 1024 = one vCPU; becomes a CFS quota over a 100 ms period.
    pub cpu_units: Option<u32>,
    /// Hard limit on the memory of all the task's containers together.
    pub memory_mib: Option<u64>,
    /// Limit on the number of processes of all the task's containers together.
    pub pids_limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu_usage_ns: u64,
    pub memory_current: u64,
    /// Highest memory use seen; the kernel's own figure where it keeps one.
    pub memory_peak: u64,
    pub memory_limit: Option<u64>,
    pub oom_kills: u64,
    pub pids_current: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("no cgroup hierarchy is mounted under {root}")]
    NotMounted { root: PathBuf },
    #[error("cgroup controller {controller} is not available")]
    MissingController { controller: &'static str },
    #[error("cgroup {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("parsing {path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("creating cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("removing cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cgroup {path} still has processes after they were killed")]
    Busy { path: PathBuf },
}

/// A cgroup v1 hierarchy: one mount carrying one or more controllers (or a
/// named hierarchy such as `name=systemd`).
#[derive(Debug, Clone)]
struct V1Hierarchy {
    mount: PathBuf,
    controllers: Vec<String>,
}

impl V1Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug)]
struct Inner {
    layout: CgroupLayout,
    root_name: String,
    v1: Vec<V1Hierarchy>,
    /// The v2 mount: the unified hierarchy of a hybrid host, or the only one.
    v2: Option<PathBuf>,
    /// Highest memory.current seen per cgroup, for v2 kernels without memory.peak.
    peaks: Mutex<HashMap<PathBuf, u64>>,
}

/// The cgroups of Hail's tasks, all under one root cgroup (`hail`).
#[derive(Debug, Clone)]
pub struct Cgroups {
    inner: Arc<Inner>,
}

impl Cgroups {
    /// Finds the host's cgroup hierarchies in /proc/self/mountinfo. Task
    /// cgroups live under `/<root_name>` in every hierarchy.
    pub fn detect(root_name: &str) -> Result<Self, CgroupError> {
        validate_name(root_name)?;
        let path = PathBuf::from("/proc/self/mountinfo");
        let text = fs::read_to_string(&path).map_err(|source| CgroupError::Read {
            path: path.clone(),
            source,
        })?;
        let (v1, v2) = hierarchies_from_mountinfo(&text);
        let layout = if v1.is_empty() {
            CgroupLayout::Unified
        } else {
            CgroupLayout::Hybrid
        };
        if v1.is_empty() && v2.is_none() {
            return Err(CgroupError::NotMounted {
                root: PathBuf::from("/sys/fs/cgroup"),
            });
        }
        Ok(Self::from_parts(layout, root_name, v1, v2))
    }

    /// Cgroups laid out under `fs_root` as on a host: for `Hybrid`, each
    /// subdirectory is a v1 hierarchy named by its controllers
    /// (`cpu,cpuacct`, `memory`, …) and `unified` is the v2 hierarchy; for
    /// `Unified`, `fs_root` itself is the v2 hierarchy. Meant for tests and
    /// fakes; real callers use [`Cgroups::detect`].
    pub fn with_fs_root(
        fs_root: &Path,
        layout: CgroupLayout,
        root_name: &str,
    ) -> Result<Self, CgroupError> {
        validate_name(root_name)?;
        let read_err = |source| CgroupError::Read {
            path: fs_root.to_owned(),
            source,
        };
        match layout {
            CgroupLayout::Unified => Ok(Self::from_parts(
                layout,
                root_name,
                Vec::new(),
                Some(fs_root.to_owned()),
            )),
            CgroupLayout::Hybrid => {
                let mut v1 = Vec::new();
                let mut v2 = None;
                let mut entries: Vec<_> = fs::read_dir(fs_root)
                    .map_err(read_err)?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                entries.sort();
                for name in entries {
                    if name == "unified" {
                        v2 = Some(fs_root.join(&name));
                    } else {
                        v1.push(V1Hierarchy {
                            mount: fs_root.join(&name),
                            controllers: name.split(',').map(str::to_owned).collect(),
                        });
                    }
                }
                if v1.is_empty() {
                    return Err(CgroupError::NotMounted {
                        root: fs_root.to_owned(),
                    });
                }
                Ok(Self::from_parts(layout, root_name, v1, v2))
            }
        }
    }

    fn from_parts(
        layout: CgroupLayout,
        root_name: &str,
        v1: Vec<V1Hierarchy>,
        v2: Option<PathBuf>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                layout,
                root_name: root_name.to_owned(),
                v1,
                v2,
                peaks: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn layout(&self) -> CgroupLayout {
        self.inner.layout
    }

    /// The value for a container's OCI `linux.cgroupsPath`: absolute from the
    /// hierarchy roots, nested inside the task cgroup.
    pub fn container_path(&self, task_id: &str, container: &str) -> String {
        format!("/{}/{}/{}", self.inner.root_name, task_id, container)
    }

    /// Creates (or updates) the task's parent cgroup with its envelope.
    pub fn create_task(&self, task_id: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        validate_name(task_id)?;
        match self.inner.layout {
            CgroupLayout::Hybrid => self.create_task_v1(task_id, limits),
            CgroupLayout::Unified => self.create_task_v2(task_id, limits),
        }
    }

    fn create_task_v1(&self, task_id: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        let root = &self.inner.root_name;
        for h in &self.inner.v1 {
            let root_dir = h.mount.join(root);
            let task_dir = root_dir.join(task_id);
            for dir in [&root_dir, &task_dir] {
                make_dir(dir)?;
                if h.has("cpuset") {
                    inherit_cpuset(dir)?;
                }
            }
            if h.has("cpu") {
                if let Some(units) = limits.cpu_units.filter(|u| *u > 0) {
                    write_file(&task_dir.join("cpu.cfs_period_us"), CFS_PERIOD_US)?;
                    write_file(&task_dir.join("cpu.cfs_quota_us"), cfs_quota_us(units))?;
                    write_file(&task_dir.join("cpu.shares"), cpu_shares(units))?;
                }
            }
            if h.has("memory") {
                if let Some(mib) = limits.memory_mib {
                    write_file(&task_dir.join("memory.limit_in_bytes"), mib_to_bytes(mib))?;
                }
            }
            if h.has("pids") {
                if let Some(max) = limits.pids_limit {
                    write_file(&task_dir.join("pids.max"), max)?;
                }
            }
        }
        for (controller, wanted) in [
            ("cpu", limits.cpu_units.is_some()),
            ("memory", limits.memory_mib.is_some()),
            ("pids", limits.pids_limit.is_some()),
        ] {
            if wanted && !self.inner.v1.iter().any(|h| h.has(controller)) {
                return Err(CgroupError::MissingController { controller });
            }
        }
        // runc also places containers in the unified hierarchy of a hybrid
        // host; creating the task there keeps removal symmetric.
        if let Some(v2) = &self.inner.v2 {
            make_dir(&v2.join(root))?;
            make_dir(&v2.join(root).join(task_id))?;
        }
        Ok(())
    }

    fn create_task_v2(&self, task_id: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        let mount = self.v2_mount()?;
        let available = read_string(&mount.join("cgroup.controllers"))
            .map(|s| {
                s.split_whitespace()
                    .map(str::to_owned)
                    .collect::<BTreeSet<_>>()
            })
            .unwrap_or_default();
        let enable: Vec<&str> = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| available.contains(*c))
            .collect();
        for (controller, wanted) in [
            ("cpu", limits.cpu_units.is_some()),
            ("memory", limits.memory_mib.is_some()),
            ("pids", limits.pids_limit.is_some()),
        ] {
            if wanted && !enable.contains(&controller) {
                return Err(CgroupError::MissingController { controller });
            }
        }
        let root_dir = mount.join(&self.inner.root_name);
        let task_dir = root_dir.join(task_id);
        // Controllers must be enabled in every ancestor's subtree_control for
        // the task and its containers to get their interface files.
        enable_controllers(mount, &enable)?;
        make_dir(&root_dir)?;
        enable_controllers(&root_dir, &enable)?;
        make_dir(&task_dir)?;
        enable_controllers(&task_dir, &enable)?;
        if let Some(units) = limits.cpu_units.filter(|u| *u > 0) {
            write_file(
                &task_dir.join("cpu.max"),
                format!("{} {}", cfs_quota_us(units), CFS_PERIOD_US),
            )?;
            write_file(
                &task_dir.join("cpu.weight"),
                shares_to_weight(cpu_shares(units)),
            )?;
        }
        if let Some(mib) = limits.memory_mib {
            write_file(&task_dir.join("memory.max"), mib_to_bytes(mib))?;
        }
        if let Some(max) = limits.pids_limit {
            write_file(&task_dir.join("pids.max"), max)?;
        }
        Ok(())
    }

    fn v2_mount(&self) -> Result<&Path, CgroupError> {
        self.inner
            .v2
            .as_deref()
            .ok_or(CgroupError::MissingController {
                controller: "unified",
            })
    }

    fn relative(&self, task_id: &str, container: Option<&str>) -> Result<PathBuf, CgroupError> {
        validate_name(task_id)?;
        let mut rel = PathBuf::from(&self.inner.root_name).join(task_id);
        if let Some(c) = container {
            validate_name(c)?;
            rel.push(c);
        }
        Ok(rel)
    }

    fn v1_dir(&self, controller: &'static str, rel: &Path) -> Result<PathBuf, CgroupError> {
        let h = self
            .inner
            .v1
            .iter()
            .find(|h| h.has(controller))
            .ok_or(CgroupError::MissingController { controller })?;
        let dir = h.mount.join(rel);
        if !dir.is_dir() {
            return Err(CgroupError::NotFound { path: dir });
        }
        Ok(dir)
    }

    /// Usage of the task (`container` None) or of one of its containers.
    pub fn stats(
        &self,
        task_id: &str,
        container: Option<&str>,
    ) -> Result<CgroupStats, CgroupError> {
        let rel = self.relative(task_id, container)?;
        match self.inner.layout {
            CgroupLayout::Hybrid => self.stats_v1(&rel, container.is_none()),
            CgroupLayout::Unified => self.stats_v2(&rel),
        }
    }

    fn stats_v1(&self, rel: &Path, include_children: bool) -> Result<CgroupStats, CgroupError> {
        let mem = self.v1_dir("memory", rel)?;
        // cpuacct is its own hierarchy here, co-mounted with cpu elsewhere.
        let cpu_usage_ns = match self.v1_dir("cpuacct", rel) {
            Ok(dir) => read_u64(&dir.join("cpuacct.usage"))?,
            Err(CgroupError::MissingController { .. }) => 0,
            Err(e) => return Err(e),
        };
        let limit = read_u64(&mem.join("memory.limit_in_bytes"))?;
        // v1 counts an OOM kill only in the victim's own cgroup, so the
        // task's figure adds up its containers'.
        let mut oom_kills = read_keyed(&mem.join("memory.oom_control"), "oom_kill")?;
        if include_children {
            for child in child_dirs(&mem)? {
                oom_kills += read_keyed(&child.join("memory.oom_control"), "oom_kill")?;
            }
        }
        let pids_current = match self.v1_dir("pids", rel) {
            Ok(dir) => read_u64(&dir.join("pids.current"))?,
            Err(CgroupError::MissingController { .. }) => 0,
            Err(e) => return Err(e),
        };
        Ok(CgroupStats {
            cpu_usage_ns,
            memory_current: read_u64(&mem.join("memory.usage_in_bytes"))?,
            memory_peak: read_u64(&mem.join("memory.max_usage_in_bytes"))?,
            memory_limit: (limit < V1_UNLIMITED_THRESHOLD).then_some(limit),
            oom_kills,
            pids_current,
        })
    }

    fn stats_v2(&self, rel: &Path) -> Result<CgroupStats, CgroupError> {
        let dir = self.v2_mount()?.join(rel);
        if !dir.is_dir() {
            return Err(CgroupError::NotFound { path: dir });
        }
        let cpu_usage_ns = read_keyed(&dir.join("cpu.stat"), "usage_usec")?.saturating_mul(1000);
        let memory_current = read_u64(&dir.join("memory.current"))?;
        let kernel_peak = match read_u64(&dir.join("memory.peak")) {
            Ok(v) => Some(v),
            Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e),
        };
        let memory_peak = match kernel_peak {
            Some(p) => p,
            None => {
                let mut peaks = self
                    .inner
                    .peaks
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let peak = peaks.entry(dir.clone()).or_insert(0);
                *peak = (*peak).max(memory_current);
                *peak
            }
        };
        let max = read_string(&dir.join("memory.max"))?;
        let memory_limit = match max.trim() {
            "max" => None,
            v => Some(v.parse().map_err(|_| CgroupError::Parse {
                path: dir.join("memory.max"),
                content: v.to_owned(),
            })?),
        };
        let pids_current = match read_u64(&dir.join("pids.current")) {
            Ok(v) => v,
            Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(CgroupStats {
            cpu_usage_ns,
            memory_current,
            memory_peak,
            memory_limit,
            oom_kills: read_keyed(&dir.join("memory.events"), "oom_kill")?,
            pids_current,
        })
    }

    /// How many processes of the container the kernel's OOM killer has
    /// killed. Read it before `runc delete` removes the cgroup.
    pub fn oom_kills(&self, task_id: &str, container: &str) -> Result<u64, CgroupError> {
        let rel = self.relative(task_id, Some(container))?;
        match self.inner.layout {
            CgroupLayout::Hybrid => {
                let dir = self.v1_dir("memory", &rel)?;
                read_keyed(&dir.join("memory.oom_control"), "oom_kill")
            }
            CgroupLayout::Unified => {
                let dir = self.v2_mount()?.join(&rel);
                if !dir.is_dir() {
                    return Err(CgroupError::NotFound { path: dir });
                }
                read_keyed(&dir.join("memory.events"), "oom_kill")
            }
        }
    }

    /// Every hierarchy's directory for the task, those that exist.
    fn task_dirs(&self, task_id: &str) -> Vec<PathBuf> {
        self.hierarchy_roots()
            .map(|m| m.join(&self.inner.root_name).join(task_id))
            .filter(|d| d.is_dir())
            .collect()
    }

    fn hierarchy_roots(&self) -> impl Iterator<Item = &Path> {
        self.inner
            .v1
            .iter()
            .map(|h| h.mount.as_path())
            .chain(self.inner.v2.as_deref())
    }

    /// Removes the task's cgroups in every hierarchy, killing whatever still
    /// runs inside them first. Removing an absent task succeeds.
    pub fn remove_task(&self, task_id: &str) -> Result<(), CgroupError> {
        validate_name(task_id)?;
        let dirs = self.task_dirs(task_id);
        if dirs.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut pids = BTreeSet::new();
            for dir in &dirs {
                collect_pids(dir, &mut pids)?;
            }
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Busy {
                    path: dirs[0].clone(),
                });
            }
            for dir in &dirs {
                // cgroup.kill (v2, Linux 5.14) kills the whole subtree at once,
                // including processes forked while we read cgroup.procs.
                let kill_file = dir.join("cgroup.kill");
                if kill_file.exists() {
                    let _ = fs::write(&kill_file, "1");
                }
            }
            for pid in pids {
                // ESRCH: already gone; nothing else can fail for root.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for dir in &dirs {
            remove_tree(dir, deadline)?;
        }
        Ok(())
    }

    /// Removes every task (as [`Cgroups::remove_task`]) and then the root
    /// cgroup itself in every hierarchy; for tests and uninstalling, since
    /// the engine keeps its root between runs. Idempotent.
    pub fn remove_root(&self) -> Result<(), CgroupError> {
        for task in self.list_tasks()? {
            self.remove_task(&task)?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for root in self.hierarchy_roots() {
            remove_tree(&root.join(&self.inner.root_name), deadline)?;
        }
        Ok(())
    }

    /// Task ids that have a cgroup in any hierarchy (for garbage collection).
    pub fn list_tasks(&self) -> Result<Vec<String>, CgroupError> {
        let mut tasks = BTreeSet::new();
        for root in self.hierarchy_roots() {
            let dir = root.join(&self.inner.root_name);
            if !dir.is_dir() {
                continue;
            }
            for child in child_dirs(&dir)? {
                if let Some(name) = child.file_name() {
                    tasks.insert(name.to_string_lossy().into_owned());
                }
            }
        }
        Ok(tasks.into_iter().collect())
    }
}

/// Docker's mapping: a quota of `units/1024` CPUs per 100 ms period.
pub fn cfs_quota_us(units: u32) -> u64 {
    (u64::from(units) * CFS_PERIOD_US / 1024).max(MIN_CFS_QUOTA_US)
}

/// cpu.shares from cpu units; the kernel's minimum is 2.
pub fn cpu_shares(units: u32) -> u64 {
    u64::from(units).max(2)
}

/// runc's conversion of v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

pub fn mib_to_bytes(mib: u64) -> u64 {
    mib.saturating_mul(1024 * 1024)
}

/// The v1 hierarchies and the first v2 mount listed in a mountinfo file.
fn hierarchies_from_mountinfo(text: &str) -> (Vec<V1Hierarchy>, Option<PathBuf>) {
    let mut v1: Vec<V1Hierarchy> = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        // Fields before " - " are fixed and optional tags; after it come the
        // filesystem type, the source and the superblock options.
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = match left.split(' ').nth(4) {
            Some(m) => PathBuf::from(unescape_mountinfo(m)),
            None => continue,
        };
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or("");
        let super_opts = right.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" if v2.is_none() => v2 = Some(mount_point),
            "cgroup" => {
                let controllers: Vec<String> = super_opts
                    .split(',')
                    .filter(|o| is_v1_controller(o))
                    .map(str::to_owned)
                    .collect();
                // The same hierarchy can be mounted twice; keep the first.
                if !controllers.is_empty() && !v1.iter().any(|h| h.controllers == controllers) {
                    v1.push(V1Hierarchy {
                        mount: mount_point,
                        controllers,
                    });
                }
            }
            _ => {}
        }
    }
    (v1, v2)
}

fn is_v1_controller(opt: &str) -> bool {
    const KNOWN: &[&str] = &[
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "hugetlb",
        "net_cls",
        "net_prio",
        "perf_event",
        "rdma",
        "misc",
    ];
    KNOWN.contains(&opt) || opt.starts_with("name=")
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Task ids, container names and the root name become directory names.
fn validate_name(name: &str) -> Result<(), CgroupError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("a relative path component")
    } else if name.contains('/') || name.contains('\0') {
        Some("contains a slash or NUL")
    } else if name.len() > 255 {
        Some("longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CgroupError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_owned(),
            source,
        }),
    }
}

fn write_file(path: &Path, value: impl ToString) -> Result<(), CgroupError> {
    let value = value.to_string();
    fs::write(path, &value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value,
        source,
    })
}

fn read_string(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let s = read_string(path)?;
    s.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        content: s.trim().to_owned(),
    })
}

/// Reads `key N` from a flat-keyed file (memory.events, cpu.stat, …); a key
/// the kernel does not report counts as 0.
fn read_keyed(path: &Path, key: &str) -> Result<u64, CgroupError> {
    let s = read_string(path)?;
    for line in s.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            let v = parts.next().unwrap_or("");
            return v.parse().map_err(|_| CgroupError::Parse {
                path: path.to_owned(),
                content: line.to_owned(),
            });
        }
    }
    Ok(0)
}

fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = fs::read_dir(dir).map_err(|source| CgroupError::Read {
        path: dir.to_owned(),
        source,
    })?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

/// A new v1 cpuset cgroup starts with no cpus and mems, and no process can
/// join it until they are set; copy the parent's.
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = fs::read_to_string(dir.join(file)).unwrap_or_default();
        if current.trim().is_empty() {
            let from_parent = read_string(&parent.join(file))?;
            write_file(&dir.join(file), from_parent.trim())?;
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&path).unwrap_or_default();
    let enabled: BTreeSet<&str> = enabled
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.contains(*c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if write_file(&path, missing.join(" ")).is_ok() {
        return Ok(());
    }
    // The kernel rejects the whole line when any one controller can't be
    // enabled; enable the others one by one and report the first failure.
    let mut first_error = None;
    for m in missing {
        let essential = ["+cpu", "+memory", "+pids"].contains(&m.as_str());
        if let Err(e) = write_file(&path, m) {
            if essential {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn collect_pids(dir: &Path, pids: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for child in child_dirs(dir).unwrap_or_default() {
        collect_pids(&child, pids)?;
    }
    Ok(())
}

/// Removes a cgroup and its descendants, deepest first. A cgroup whose last
/// process just exited can report EBUSY briefly, so that is retried.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let children = match child_dirs(dir) {
        Ok(c) => c,
        Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for child in children {
        remove_tree(&child, deadline)?;
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for h in [
            "cpu",
            "cpuacct",
            "cpuset",
            "memory",
            "pids",
            "name=systemd",
            "unified",
        ] {
            fs::create_dir(dir.path().join(h)).unwrap();
        }
        fs::write(dir.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
        fs::write(dir.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        dir
    }

    fn read(p: PathBuf) -> String {
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn resource_mappings() {
        assert_eq!(cfs_quota_us(1024), 100_000);
        assert_eq!(cfs_quota_us(256), 25_000);
        assert_eq!(cfs_quota_us(2048), 200_000);
        assert_eq!(cfs_quota_us(1), 1_000);
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(mib_to_bytes(48), 48 << 20);
    }

    #[test]
    fn hybrid_task_files() {
        let root = hybrid_root();
        let cg = Cgroups::with_fs_root(root.path(), CgroupLayout::Hybrid, "hail").unwrap();
        assert_eq!(cg.layout(), CgroupLayout::Hybrid);
        let limits = TaskLimits {
            cpu_units: Some(512),
            memory_mib: Some(48),
            pids_limit: Some(100),
        };
        cg.create_task("t1", &limits).unwrap();
        let p = root.path();
        assert_eq!(read(p.join("cpu/hail/t1/cpu.cfs_quota_us")), "50000");
        assert_eq!(read(p.join("cpu/hail/t1/cpu.cfs_period_us")), "100000");
        assert_eq!(read(p.join("cpu/hail/t1/cpu.shares")), "512");
        assert_eq!(
            read(p.join("memory/hail/t1/memory.limit_in_bytes")),
            "50331648"
        );
        assert_eq!(read(p.join("pids/hail/t1/pids.max")), "100");
        assert_eq!(read(p.join("cpuset/hail/cpuset.cpus")), "0-3");
        assert_eq!(read(p.join("cpuset/hail/t1/cpuset.mems")), "0");
        for h in ["cpuacct", "name=systemd", "unified"] {
            assert!(p.join(h).join("hail/t1").is_dir(), "{h}");
        }
        // No limit files are written for an unlimited task.
        cg.create_task("t2", &TaskLimits::default()).unwrap();
        assert!(!p.join("memory/hail/t2/memory.limit_in_bytes").exists());
        assert_eq!(cg.list_tasks().unwrap(), vec!["t1", "t2"]);
        assert_eq!(cg.container_path("t1", "web"), "/hail/t1/web");

        // Stats: the kernel's files, faked.
        let mem = p.join("memory/hail/t1");
        fs::create_dir(mem.join("web")).unwrap();
        fs::write(mem.join("memory.usage_in_bytes"), "1000\n").unwrap();
        fs::write(mem.join("memory.max_usage_in_bytes"), "4000\n").unwrap();
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        fs::write(
            mem.join("web/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(p.join("cpuacct/hail/t1/cpuacct.usage"), "123456\n").unwrap();
        fs::write(p.join("pids/hail/t1/pids.current"), "7\n").unwrap();
        let s = cg.stats("t1", None).unwrap();
        assert_eq!(
            s,
            CgroupStats {
                cpu_usage_ns: 123456,
                memory_current: 1000,
                memory_peak: 4000,
                memory_limit: Some(48 << 20),
                oom_kills: 3,
                pids_current: 7,
            }
        );
        assert_eq!(cg.oom_kills("t1", "web").unwrap(), 2);
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(cg.stats("t1", None).unwrap().memory_limit, None);
        assert!(matches!(
            cg.stats("t9", None),
            Err(CgroupError::NotFound { .. })
        ));
        // Removing an absent task is fine.
        cg.remove_task("t9").unwrap();
    }

    #[test]
    fn unified_task_files_and_peak_tracking() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        fs::write(p.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        let cg = Cgroups::with_fs_root(p, CgroupLayout::Unified, "hail").unwrap();
        let limits = TaskLimits {
            cpu_units: Some(256),
            memory_mib: Some(64),
            pids_limit: Some(50),
        };
        cg.create_task("t1", &limits).unwrap();
        for dir in [p.to_path_buf(), p.join("hail"), p.join("hail/t1")] {
            let sc = read(dir.join("cgroup.subtree_control"));
            for c in ["+cpu", "+memory", "+pids", "+cpuset", "+io"] {
                assert!(
                    sc.split_whitespace().any(|w| w == c),
                    "{}: {sc}",
                    dir.display()
                );
            }
            assert!(!sc.contains("hugetlb"));
        }
        let t = p.join("hail/t1");
        assert_eq!(read(t.join("cpu.max")), "25000 100000");
        assert_eq!(read(t.join("cpu.weight")), "10");
        assert_eq!(read(t.join("memory.max")), "67108864");
        assert_eq!(read(t.join("pids.max")), "50");

        let c = t.join("web");
        fs::create_dir(&c).unwrap();
        fs::write(
            c.join("cpu.stat"),
            "usage_usec 250\nuser_usec 200\nsystem_usec 50\n",
        )
        .unwrap();
        fs::write(c.join("memory.current"), "5000\n").unwrap();
        fs::write(c.join("memory.max"), "max\n").unwrap();
        fs::write(
            c.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(c.join("pids.current"), "2\n").unwrap();
        let s = cg.stats("t1", Some("web")).unwrap();
        assert_eq!(s.cpu_usage_ns, 250_000);
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.oom_kills, 1);
        assert_eq!(s.pids_current, 2);
        assert_eq!(s.memory_peak, 5000);
        // Without memory.peak the highest current seen is kept.
        fs::write(c.join("memory.current"), "3000\n").unwrap();
        let s = cg.stats("t1", Some("web")).unwrap();
        assert_eq!((s.memory_current, s.memory_peak), (3000, 5000));
        fs::write(c.join("memory.peak"), "9000\n").unwrap();
        assert_eq!(cg.stats("t1", Some("web")).unwrap().memory_peak, 9000);
        assert_eq!(cg.oom_kills("t1", "web").unwrap(), 1);
        assert_eq!(cg.list_tasks().unwrap(), vec!["t1"]);
    }

    #[test]
    fn unified_without_a_needed_controller_fails() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        let cg = Cgroups::with_fs_root(root.path(), CgroupLayout::Unified, "hail").unwrap();
        let err = cg
            .create_task(
                "t1",
                &TaskLimits {
                    memory_mib: Some(10),
                    ..TaskLimits::default()
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
    }

    #[test]
    fn names_are_validated() {
        let root = hybrid_root();
        let cg = Cgroups::with_fs_root(root.path(), CgroupLayout::Hybrid, "hail").unwrap();
        for bad in ["", "..", "a/b"] {
            assert!(matches!(
                cg.create_task(bad, &TaskLimits::default()),
                Err(CgroupError::InvalidName { .. })
            ));
        }
        assert!(cg.stats("t", Some("../x")).is_err());
        assert!(Cgroups::with_fs_root(root.path(), CgroupLayout::Hybrid, "a/b").is_err());
    }

    #[test]
    fn parses_mountinfo_of_both_layouts() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
36 99 0:32 / /mnt/memory\\040again rw - cgroup cgroup rw,memory
";
        let (v1, v2) = hierarchies_from_mountinfo(hybrid);
        assert_eq!(v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let found: Vec<(String, Vec<String>)> = v1
            .iter()
            .map(|h| (h.mount.display().to_string(), h.controllers.clone()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("/sys/fs/cgroup/systemd".into(), vec!["name=systemd".into()]),
                (
                    "/sys/fs/cgroup/cpu,cpuacct".into(),
                    vec!["cpu".into(), "cpuacct".into()]
                ),
                ("/sys/fs/cgroup/memory".into(), vec!["memory".into()]),
            ]
        );
        let unified = "25 1 0:22 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let (v1, v2) = hierarchies_from_mountinfo(unified);
        assert!(v1.is_empty());
        assert_eq!(v2, Some(PathBuf::from("/sys/fs/cgroup")));
    }

    #[test]
    fn handle_is_shareable() {
        fn assert_shareable<T: Clone + Send + Sync>() {}
        assert_shareable::<Cgroups>();
    }

    #[test]
    fn detects_this_host() {
        // Every Linux host this runs on has some cgroup hierarchy mounted.
        let cg = Cgroups::detect("hail-detect-test").unwrap();
        let v2_only = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .all(|l| !l.contains(" - cgroup "));
        let expected = if v2_only {
            CgroupLayout::Unified
        } else {
            CgroupLayout::Hybrid
        };
        assert_eq!(cg.layout(), expected);
        assert_eq!(cg.list_tasks().unwrap(), Vec::<String>::new());
    }
}
