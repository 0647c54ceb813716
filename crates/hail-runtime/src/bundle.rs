//! OCI runtime bundles: the `config.json` runc runs a container from.
//!
//! The generated spec mirrors what Docker gives an unprivileged container:
//! its own pid, mount, ipc, uts and cgroup namespaces (and the task's network
//! namespace), Docker's default capabilities, seccomp profile, masked and
//! read-only /proc paths, default mounts and device allow-list, and
//! no-new-privileges. Resource limits map ECS terms onto cgroup settings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::cgroup::{cfs_quota_us, cpu_shares, mib_to_bytes, CFS_PERIOD_US};
use crate::durable;
use crate::seccomp::{self, SeccompError};
use crate::spec::Ulimit;
use crate::user::ResolvedUser;

/// Docker's RLIMIT_NOFILE for containers (soft and hard), lowered to the
/// host's hard limit where that is smaller.
pub const DEFAULT_NOFILE: u64 = 1_048_576;

/// Processes a container may have when its definition sets no pids limit.
/// Docker sets none; a ceiling well above what services use keeps a fork
/// bomb in one container from exhausting the host's pid space.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

/// Size of /dev/shm, as Docker's default `--shm-size`.
pub const SHM_SIZE_BYTES: u64 = 64 * 1024 * 1024;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything that varies between containers; the rest is Docker's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleSpec {
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub args: Vec<String>,
    /// `KEY=value`; PATH, HOSTNAME and HOME are added when absent, as Docker.
    pub env: Vec<String>,
    /// Absolute path inside the container.
    pub cwd: String,
    pub user: ResolvedUser,
    pub hostname: String,
    /// The task's network namespace; None: runc creates a fresh one (lo only).
    pub netns_path: Option<PathBuf>,
    /// From [`crate::cgroup::Cgroups::container_path`].
    pub cgroups_path: String,
    pub resources: ContainerResources,
    pub ulimits: Vec<Ulimit>,
    /// Extra bind mounts (/etc/hosts, /etc/resolv.conf, volumes), after the defaults.
    pub mounts: Vec<BindMount>,
    pub annotations: BTreeMap<String, String>,
}

/// The container's own limits (the task's envelope is its parent cgroup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// 1024 = one vCPU: CFS quota and cpu shares. On cgroup v1 the kernel
    /// rejects a container quota above its task's, so callers keep it within
    /// the task's units (ECS validates the same).
    pub cpu_units: Option<u32>,
    /// Hard limit.
    pub memory_mib: Option<u64>,
    /// Soft limit (v1 memory.soft_limit_in_bytes; runc maps it to memory.low on v2).
    pub memory_reservation_mib: Option<u64>,
    /// Defaults to [`DEFAULT_PIDS_LIMIT`].
    pub pids_limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{field} {value:?} must be an absolute path")]
    NotAbsolute { field: &'static str, value: String },
    #[error("container args are empty")]
    NoArgs,
    #[error("ulimit {name}: unknown limit name")]
    UnknownUlimit { name: String },
    #[error("ulimit {name}: soft limit {soft} is above hard limit {hard}")]
    SoftAboveHard { name: String, soft: u64, hard: u64 },
    #[error("ulimit {name}: given more than once")]
    DuplicateUlimit { name: String },
    #[error("building the runtime spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("reading host limits from {path}: {source}")]
    HostLimits { path: PathBuf, source: io::Error },
    #[error("serialising the runtime spec: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("writing bundle {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Docker's default capabilities for unprivileged containers.
pub fn default_capabilities() -> HashSet<Capability> {
    use Capability as C;
    [
        C::Chown,
        C::DacOverride,
        C::Fsetid,
        C::Fowner,
        C::Mknod,
        C::NetRaw,
        C::Setgid,
        C::Setuid,
        C::Setfcap,
        C::Setpcap,
        C::NetBindService,
        C::SysChroot,
        C::Kill,
        C::AuditWrite,
    ]
    .into_iter()
    .collect()
}

/// Paths Docker hides from containers (bind-mounted over with /dev/null or
/// an empty read-only tmpfs).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only inside containers.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The ulimit names ECS and Docker accept, their rlimit and their line in
/// /proc/self/limits.
const RLIMITS: &[(&str, PosixRlimitType, &str)] = &[
    ("as", PosixRlimitType::RlimitAs, "Max address space"),
    ("core", PosixRlimitType::RlimitCore, "Max core file size"),
    ("cpu", PosixRlimitType::RlimitCpu, "Max cpu time"),
    ("data", PosixRlimitType::RlimitData, "Max data size"),
    ("fsize", PosixRlimitType::RlimitFsize, "Max file size"),
    ("locks", PosixRlimitType::RlimitLocks, "Max file locks"),
    (
        "memlock",
        PosixRlimitType::RlimitMemlock,
        "Max locked memory",
    ),
    (
        "msgqueue",
        PosixRlimitType::RlimitMsgqueue,
        "Max msgqueue size",
    ),
    ("nice", PosixRlimitType::RlimitNice, "Max nice priority"),
    ("nofile", PosixRlimitType::RlimitNofile, "Max open files"),
    ("nproc", PosixRlimitType::RlimitNproc, "Max processes"),
    ("rss", PosixRlimitType::RlimitRss, "Max resident set"),
    (
        "rtprio",
        PosixRlimitType::RlimitRtprio,
        "Max realtime priority",
    ),
    (
        "rttime",
        PosixRlimitType::RlimitRttime,
        "Max realtime timeout",
    ),
    (
        "sigpending",
        PosixRlimitType::RlimitSigpending,
        "Max pending signals",
    ),
    ("stack", PosixRlimitType::RlimitStack, "Max stack size"),
];

/// The hard limits of this process, by ulimit name; `u64::MAX` for unlimited.
/// runc can't give a container more than its own hard limit allows, and a
/// config asking for more fails to start, so requests are clamped to these.
pub fn host_hard_limits() -> Result<HashMap<String, u64>, BundleError> {
    let path = PathBuf::from("/proc/self/limits");
    let text = std::fs::read_to_string(&path)
        .map_err(|source| BundleError::HostLimits { path, source })?;
    Ok(parse_proc_limits(&text))
}

fn parse_proc_limits(text: &str) -> HashMap<String, u64> {
    let mut limits = HashMap::new();
    for line in text.lines() {
        for (name, _, label) in RLIMITS {
            if let Some(rest) = line.strip_prefix(label) {
                let hard = rest.split_whitespace().nth(1).and_then(|h| match h {
                    "unlimited" => Some(u64::MAX),
                    n => n.parse().ok(),
                });
                if let Some(hard) = hard {
                    limits.insert((*name).to_owned(), hard);
                }
            }
        }
    }
    limits
}

/// The container's rlimits: Docker's RLIMIT_NOFILE default overridden by
/// `ulimits`, each clamped to the host's hard limit.
pub fn rlimits(
    ulimits: &[Ulimit],
    host_hard: &HashMap<String, u64>,
) -> Result<Vec<PosixRlimit>, BundleError> {
    let clamp = |name: &str, v: u64| v.min(host_hard.get(name).copied().unwrap_or(u64::MAX));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for u in ulimits {
        let Some((name, typ, _)) = RLIMITS.iter().find(|(n, _, _)| *n == u.name) else {
            return Err(BundleError::UnknownUlimit {
                name: u.name.clone(),
            });
        };
        if !seen.insert(*name) {
            return Err(BundleError::DuplicateUlimit {
                name: u.name.clone(),
            });
        }
        if u.soft > u.hard {
            return Err(BundleError::SoftAboveHard {
                name: u.name.clone(),
                soft: u.soft,
                hard: u.hard,
            });
        }
        out.push(
            PosixRlimitBuilder::default()
                .typ(*typ)
                .soft(clamp(name, u.soft))
                .hard(clamp(name, u.hard))
                .build()?,
        );
    }
    if !seen.contains("nofile") {
        let n = clamp("nofile", DEFAULT_NOFILE);
        out.push(
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(n)
                .hard(n)
                .build()?,
        );
    }
    Ok(out)
}

/// Docker's default mounts, before the container's own.
fn default_mounts() -> Result<Vec<Mount>, BundleError> {
    let m = |dest: &str, typ: &str, source: &str, options: &[&str]| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
            .build()
    };
    let shm_size = format!("size={SHM_SIZE_BYTES}");
    Ok(vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        )?,
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )?,
    ])
}

/// Docker's device cgroup rules: deny everything, then allow mknod of any
/// device and use of the standard character devices and ptys.
fn device_rules() -> Result<Vec<LinuxDeviceCgroup>, BundleError> {
    let rule = |allow: bool, typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build()
    };
    use LinuxDeviceType::{A, B, C};
    Ok(vec![
        rule(false, A, None, None, "rwm")?,
        rule(true, C, None, None, "m")?,
        rule(true, B, None, None, "m")?,
        rule(true, C, Some(1), Some(3), "rwm")?, // /dev/null
        rule(true, C, Some(1), Some(5), "rwm")?, // /dev/zero
        rule(true, C, Some(1), Some(7), "rwm")?, // /dev/full
        rule(true, C, Some(1), Some(8), "rwm")?, // /dev/random
        rule(true, C, Some(1), Some(9), "rwm")?, // /dev/urandom
        rule(true, C, Some(5), Some(0), "rwm")?, // /dev/tty
        rule(true, C, Some(5), Some(1), "rwm")?, // /dev/console
        rule(true, C, Some(5), Some(2), "rwm")?, // /dev/ptmx
        rule(true, C, Some(136), None, "rwm")?,  // /dev/pts/*
    ])
}

/// Adds PATH, HOSTNAME and HOME when the container's environment lacks them,
/// as Docker does.
fn environment(spec: &BundleSpec) -> Vec<String> {
    let has = |key: &str| {
        spec.env
            .iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    };
    let mut env = spec.env.clone();
    if !has("PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOSTNAME") {
        env.push(format!("HOSTNAME={}", spec.hostname));
    }
    if !has("HOME") {
        env.push(format!(
            "HOME={}",
            spec.user
                .home
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or("/")
        ));
    }
    env
}

/// The OCI runtime spec for one container.
pub fn runtime_spec(spec: &BundleSpec) -> Result<Spec, BundleError> {
    runtime_spec_with_host_limits(spec, &host_hard_limits()?)
}

fn runtime_spec_with_host_limits(
    spec: &BundleSpec,
    host_hard: &HashMap<String, u64>,
) -> Result<Spec, BundleError> {
    if !spec.cwd.starts_with('/') {
        return Err(BundleError::NotAbsolute {
            field: "cwd",
            value: spec.cwd.clone(),
        });
    }
    if !spec.rootfs.is_absolute() {
        return Err(BundleError::NotAbsolute {
            field: "rootfs",
            value: spec.rootfs.display().to_string(),
        });
    }
    if spec.args.is_empty() {
        return Err(BundleError::NoArgs);
    }
    let caps = default_capabilities();

    let mut user = UserBuilder::default().uid(spec.user.uid).gid(spec.user.gid);
    if !spec.user.additional_gids.is_empty() {
        user = user.additional_gids(spec.user.additional_gids.clone());
    }
    // Docker ≥ 20.10 leaves the inheritable and ambient sets empty, so a
    // non-root process has no capabilities after exec.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user.build()?)
        .args(spec.args.clone())
        .env(environment(spec))
        .cwd(&spec.cwd)
        .capabilities(capabilities)
        .rlimits(rlimits(&spec.ulimits, host_hard)?)
        .no_new_privileges(true)
        .build()?;

    let mut mounts = default_mounts()?;
    // A bind over a default mount (say /dev/shm) replaces it, as in Docker.
    mounts.retain(|m| {
        !spec
            .mounts
            .iter()
            .any(|b| Path::new(&b.destination) == m.destination())
    });
    for b in &spec.mounts {
        if !b.destination.starts_with('/') {
            return Err(BundleError::NotAbsolute {
                field: "mount destination",
                value: b.destination.clone(),
            });
        }
        let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
        if b.readonly {
            options.push("ro".to_owned());
        }
        mounts.push(
            MountBuilder::default()
                .destination(&b.destination)
                .typ("bind")
                .source(&b.source)
                .options(options)
                .build()?,
        );
    }

    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Cgroup,
    ] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    let mut net = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
    if let Some(path) = &spec.netns_path {
        net = net.path(path.clone());
    }
    namespaces.push(net.build()?);

    let r = &spec.resources;
    let mut resources = LinuxResourcesBuilder::default()
        .devices(device_rules()?)
        .pids(
            LinuxPidsBuilder::default()
                .limit(
                    r.pids_limit
                        .unwrap_or(DEFAULT_PIDS_LIMIT)
                        .min(i64::MAX as u64) as i64,
                )
                .build()?,
        );
    if let Some(units) = r.cpu_units.filter(|u| *u > 0) {
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .shares(cpu_shares(units))
                .quota(cfs_quota_us(units) as i64)
                .period(CFS_PERIOD_US)
                .build()?,
        );
    }
    if r.memory_mib.is_some() || r.memory_reservation_mib.is_some() {
        let to_i64 = |mib: u64| mib_to_bytes(mib).min(i64::MAX as u64) as i64;
        let mut memory = LinuxMemoryBuilder::default();
        if let Some(mib) = r.memory_mib {
            memory = memory.limit(to_i64(mib));
        }
        if let Some(mib) = r.memory_reservation_mib {
            memory = memory.reservation(to_i64(mib));
        }
        resources = resources.memory(memory.build()?);
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(&spec.cgroups_path))
        .seccomp(seccomp::default_profile(&caps)?)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect::<Vec<_>>(),
        )
        .build()?;

    let mut builder = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(spec.rootfs.clone())
                .readonly(spec.readonly_rootfs)
                .build()?,
        )
        .mounts(mounts)
        .process(process)
        .hostname(spec.hostname.clone())
        .linux(linux);
    if !spec.annotations.is_empty() {
        builder = builder.annotations(
            spec.annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    Ok(builder.build()?)
}

/// Writes `config.json` into `bundle_dir` (created if needed), atomically.
pub fn write_bundle(bundle_dir: &Path, spec: &BundleSpec) -> Result<(), BundleError> {
    let config = runtime_spec(spec)?;
    let bytes = serde_json::to_vec(&config)?;
    std::fs::create_dir_all(bundle_dir).map_err(|source| BundleError::Write {
        path: bundle_dir.to_owned(),
        source,
    })?;
    let path = bundle_dir.join("config.json");
    // The bundle lives as long as the container; it need not outlive a power loss.
    durable::replace(&path, &bytes).map_err(|source| BundleError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BundleSpec {
        BundleSpec {
            rootfs: PathBuf::from("/var/lib/hail/c1/rootfs"),
            readonly_rootfs: true,
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["FOO=bar".into()],
            cwd: "/srv".into(),
            user: ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![50],
                home: Some("/home/app".into()),
            },
            hostname: "task-1".into(),
            netns_path: Some(PathBuf::from("/run/netns/hail-t1")),
            cgroups_path: "/hail/t1/web".into(),
            resources: ContainerResources {
                cpu_units: Some(256),
                memory_mib: Some(32),
                memory_reservation_mib: Some(16),
                pids_limit: None,
            },
            ulimits: vec![Ulimit {
                name: "nproc".into(),
                soft: 100,
                hard: 200,
            }],
            mounts: vec![BindMount {
                source: PathBuf::from("/var/lib/hail/t1/hosts"),
                destination: "/etc/hosts".into(),
                readonly: true,
            }],
            annotations: [("com.example.task".to_owned(), "t1".to_owned())].into(),
        }
    }

    fn host() -> HashMap<String, u64> {
        [("nofile".to_owned(), 20_000), ("nproc".to_owned(), 150)].into()
    }

    #[test]
    fn spec_json_has_docker_defaults() {
        let spec = runtime_spec_with_host_limits(&sample(), &host()).unwrap();
        let j = serde_json::to_value(&spec).unwrap();
        let p = &j["process"];
        assert_eq!(p["terminal"], false);
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["user"]["additionalGids"], serde_json::json!([50]));
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["noNewPrivileges"], true);
        let env: Vec<&str> = p["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"FOO=bar"));
        assert!(env.contains(&"HOME=/home/app"));
        assert!(env.contains(&"HOSTNAME=task-1"));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        let mut bounding: Vec<&str> = p["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        bounding.sort();
        assert_eq!(bounding.len(), 14);
        assert!(bounding.contains(&"CAP_NET_BIND_SERVICE"));
        assert!(!bounding.contains(&"CAP_SYS_ADMIN"));
        assert_eq!(p["capabilities"]["ambient"], serde_json::json!([]));
        let rl = p["rlimits"].as_array().unwrap();
        assert!(rl.contains(&serde_json::json!({"type": "RLIMIT_NPROC", "soft": 100, "hard": 150})));
        assert!(rl
            .contains(&serde_json::json!({"type": "RLIMIT_NOFILE", "soft": 20000, "hard": 20000})));

        assert_eq!(j["root"]["readonly"], true);
        assert_eq!(j["hostname"], "task-1");
        assert_eq!(j["annotations"]["com.example.task"], "t1");
        let l = &j["linux"];
        assert_eq!(l["cgroupsPath"], "/hail/t1/web");
        let ns: Vec<&str> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount", "ipc", "uts", "cgroup", "network"]);
        assert_eq!(l["namespaces"][5]["path"], "/run/netns/hail-t1");
        let res = &l["resources"];
        assert_eq!(
            res["cpu"],
            serde_json::json!({"shares": 256, "quota": 25000, "period": 100000})
        );
        assert_eq!(res["memory"]["limit"], 32 << 20);
        assert_eq!(res["memory"]["reservation"], 16 << 20);
        assert_eq!(res["pids"]["limit"], DEFAULT_PIDS_LIMIT);
        assert_eq!(
            res["devices"][0],
            serde_json::json!({"allow": false, "access": "rwm", "type": "a"})
        );
        assert_eq!(
            l["maskedPaths"].as_array().unwrap().len(),
            MASKED_PATHS.len()
        );
        assert!(l["readonlyPaths"]
            .as_array()
            .unwrap()
            .contains(&"/proc/sys".into()));
        assert_eq!(l["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");

        let dests: Vec<&str> = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/hosts"
            ]
        );
        let hosts = &j["mounts"][7];
        assert_eq!(hosts["type"], "bind");
        assert_eq!(
            hosts["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
        assert!(j["mounts"][6]["options"]
            .as_array()
            .unwrap()
            .contains(&"size=67108864".into()));
    }

    #[test]
    fn fresh_netns_and_no_limits() {
        let mut s = sample();
        s.netns_path = None;
        s.resources = ContainerResources {
            pids_limit: Some(10),
            ..ContainerResources::default()
        };
        s.mounts.push(BindMount {
            source: "/x".into(),
            destination: "/dev/shm".into(),
            readonly: false,
        });
        let j = serde_json::to_value(runtime_spec_with_host_limits(&s, &HashMap::new()).unwrap())
            .unwrap();
        assert!(j["linux"]["namespaces"][5].get("path").is_none());
        assert!(j["linux"]["resources"].get("cpu").is_none());
        assert!(j["linux"]["resources"].get("memory").is_none());
        assert_eq!(j["linux"]["resources"]["pids"]["limit"], 10);
        let shm: Vec<_> = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0]["type"], "bind");
        // Unlimited host: Docker's default nofile.
        assert!(j["process"]["rlimits"].as_array().unwrap().contains(
            &serde_json::json!({"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576})
        ));
    }

    #[test]
    fn bad_input_is_rejected() {
        let mut s = sample();
        s.cwd = "srv".into();
        assert!(matches!(
            runtime_spec_with_host_limits(&s, &host()),
            Err(BundleError::NotAbsolute { .. })
        ));
        let mut s = sample();
        s.args.clear();
        assert!(matches!(
            runtime_spec_with_host_limits(&s, &host()),
            Err(BundleError::NoArgs)
        ));
        for (ulimits, expect) in [
            (
                vec![Ulimit {
                    name: "bogus".into(),
                    soft: 1,
                    hard: 1,
                }],
                "bogus",
            ),
            (
                vec![Ulimit {
                    name: "nofile".into(),
                    soft: 9,
                    hard: 1,
                }],
                "soft limit 9",
            ),
            (
                vec![
                    Ulimit {
                        name: "core".into(),
                        soft: 0,
                        hard: 0,
                    },
                    Ulimit {
                        name: "core".into(),
                        soft: 0,
                        hard: 0,
                    },
                ],
                "more than once",
            ),
        ] {
            let err = rlimits(&ulimits, &host()).unwrap_err();
            assert!(err.to_string().contains(expect), "{err}");
        }
    }

    #[test]
    fn parses_proc_self_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max processes             95617                95617                processes \n\
                    Max open files            1024                 20000                files     \n\
                    Max realtime timeout      unlimited            unlimited            us        \n";
        let l = parse_proc_limits(text);
        assert_eq!(l["nofile"], 20_000);
        assert_eq!(l["nproc"], 95_617);
        assert_eq!(l["cpu"], u64::MAX);
        assert_eq!(l["rttime"], u64::MAX);
        assert!(host_hard_limits().unwrap().contains_key("nofile"));
    }

    #[test]
    fn write_bundle_writes_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("bundle");
        write_bundle(&b, &sample()).unwrap();
        let back: Spec =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        assert_eq!(back.hostname().as_deref(), Some("task-1"));
    }
}
