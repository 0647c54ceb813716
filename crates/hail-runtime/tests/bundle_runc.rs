//! Bundles and cgroups under the real runc: what a container sees of its
//! identity, privileges and limits, and what the host sees of its cgroups.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hail_runtime::bundle::{self, BindMount, BundleSpec, ContainerResources};
use hail_runtime::cgroup::{CgroupLayout, Cgroups, TaskLimits};
use hail_runtime::spec::Ulimit;
use hail_runtime::user::resolve_user;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's world: a busybox rootfs, a runc state root, its own cgroup
/// root name. Dropping it kills and removes everything it started.
struct Fixture {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    cgroups: Cgroups,
    root_name: String,
    started: std::cell::RefCell<Vec<String>>,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tar_path = dir.path().join("rootfs.tar");
        common::write_busybox_rootfs_tar(&tar_path);
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        tar::Archive::new(std::fs::File::open(&tar_path).unwrap())
            .unpack(&rootfs)
            .unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let root_name = format!(
            "hail-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let cgroups = Cgroups::detect(&root_name).unwrap();
        Fixture {
            dir,
            rootfs,
            cgroups,
            root_name,
            started: Default::default(),
        }
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{}", self.root_name, name)
    }

    /// A bundle spec for `container` of `task` running `script` under sh.
    fn spec(&self, task: &str, container: &str, script: &str) -> BundleSpec {
        BundleSpec {
            rootfs: self.rootfs.clone(),
            readonly_rootfs: false,
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: "/".into(),
            user: resolve_user(&self.rootfs, None).unwrap(),
            hostname: "hail-box".into(),
            netns_path: None,
            cgroups_path: self.cgroups.container_path(task, container),
            resources: ContainerResources::default(),
            ulimits: vec![],
            mounts: vec![],
            annotations: BTreeMap::new(),
        }
    }

    fn runc(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(self.dir.path().join("state"));
        c
    }

    fn bundle_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("bundles").join(name)
    }

    /// `runc run` in the foreground; runc deletes the container on exit.
    fn run(&self, name: &str, spec: &BundleSpec) -> Output {
        let b = self.bundle_dir(name);
        bundle::write_bundle(&b, spec).unwrap();
        self.run_bundle(name, &b)
    }

    fn run_bundle(&self, name: &str, bundle: &Path) -> Output {
        let out = self
            .runc()
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(self.id(name))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `runc run -d`: the container keeps running, its output goes to a file.
    fn start(&self, name: &str, spec: &BundleSpec) -> PathBuf {
        let b = self.bundle_dir(name);
        bundle::write_bundle(&b, spec).unwrap();
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let status = self
            .runc()
            .args(["run", "-d", "--bundle"])
            .arg(&b)
            .arg(self.id(name))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .unwrap();
        assert!(status.success(), "runc run -d {name}: {}", read(&log));
        self.started.borrow_mut().push(self.id(name));
        log
    }

    fn delete(&self, name: &str) {
        let _ = self
            .runc()
            .args(["delete", "--force"])
            .arg(self.id(name))
            .output();
    }

    /// Every directory this test's root owns in any cgroup hierarchy.
    fn cgroup_dirs(&self, rel: &str) -> Vec<PathBuf> {
        hierarchy_mounts()
            .into_iter()
            .map(|m| m.join(&self.root_name).join(rel))
            .filter(|d| d.exists())
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.started.borrow().iter() {
            let _ = self.runc().args(["delete", "--force", id]).output();
        }
        if let Err(e) = self.cgroups.remove_root() {
            eprintln!("removing cgroup root {}: {e}", self.root_name);
        }
    }
}

fn hierarchy_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Polls `f` until it holds; on timeout fails with `what` and `log`'s content.
fn wait_for(what: &str, log: &Path, timeout: Duration, mut f: impl FnMut(&str) -> bool) {
    let deadline = Instant::now() + timeout;
    while !f(&read(log)) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log: {}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn host_nofile_hard() -> u64 {
    bundle::host_hard_limits().unwrap()["nofile"]
}

#[test]
fn exit_codes_args_env_cwd_and_network() {
    if !common::containers_available() {
        return;
    }
    let f = Fixture::new();
    f.cgroups.create_task("t", &TaskLimits::default()).unwrap();

    let out = f.run("exit", &f.spec("t", "exit", "exit 7"));
    assert_eq!(out.code, 7, "{}", out.stderr);

    let mut spec = f.spec(
        "t",
        "env",
        "echo \"foo=$FOO\"; pwd; echo \"home=$HOME\"; hostname; ip -o link | wc -l; echo \"$0 $1\"",
    );
    spec.args.push("zero".into());
    spec.args.push("one".into());
    spec.env = vec!["FOO=bar baz".into()];
    spec.cwd = "/tmp".into();
    let out = f.run("env", &spec);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "foo=bar baz",
            "/tmp",
            "home=/root",
            "hail-box",
            "1",
            "zero one"
        ],
        "{}",
        out.stderr
    );

    // A bind mount shows the host file, read-only.
    let hosts = f.dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 hail-box\n").unwrap();
    let mut spec = f.spec(
        "t",
        "bind",
        "cat /etc/hosts; echo x >> /etc/hosts && echo writable",
    );
    spec.mounts.push(BindMount {
        source: hosts.clone(),
        destination: "/etc/hosts".into(),
        readonly: true,
    });
    let out = f.run("bind", &spec);
    assert_eq!(out.stdout, "127.0.0.1 hail-box\n", "{}", out.stderr);
    assert_eq!(read(&hosts), "127.0.0.1 hail-box\n");

    f.cgroups.remove_task("t").unwrap();
}

#[test]
fn users_by_name_and_numbers() {
    if !common::containers_available() {
        return;
    }
    let f = Fixture::new();
    f.cgroups.create_task("t", &TaskLimits::default()).unwrap();
    for (user, expected) in [
        (None, "uid=0(root) gid=0(root)"),
        (Some("app"), "uid=1000(app) gid=1000(app)"),
        (Some("nobody:app"), "uid=65534(nobody) gid=1000(app)"),
        (Some("4242:7"), "uid=4242 gid=7"),
    ] {
        let mut spec = f.spec("t", "id", "id");
        spec.user = resolve_user(&f.rootfs, user).unwrap();
        let out = f.run("id", &spec);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stdout.trim().starts_with(expected),
            "{user:?}: {}",
            out.stdout
        );
    }
    assert!(resolve_user(&f.rootfs, Some("ghost")).is_err());
    f.cgroups.remove_task("t").unwrap();
}

#[test]
fn privileges_are_dockers() {
    if !common::containers_available() {
        return;
    }
    let f = Fixture::new();
    f.cgroups.create_task("t", &TaskLimits::default()).unwrap();
    let script = "grep -E '^(CapEff|CapBnd|CapAmb|Seccomp|NoNewPrivs):' /proc/self/status; \
                  echo kcore=$(cat /proc/kcore | wc -c); \
                  (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo procsys=rw || echo procsys=ro; \
                  touch /x 2>/dev/null && echo rootfs=rw || echo rootfs=ro; \
                  echo nofile=$(ulimit -n); \
                  /bin/busybox unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=denied; \
                  /bin/busybox mount -t tmpfs none /tmp 2>/dev/null && echo mount=ok || echo mount=denied";
    let mut spec = f.spec("t", "priv", script);
    spec.readonly_rootfs = true;
    let out = f.run("priv", &spec);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let field = |k: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{k} missing in {}", out.stdout))
    };
    assert_eq!(field("CapEff:"), "00000000a80425fb");
    assert_eq!(field("CapBnd:"), "00000000a80425fb");
    assert_eq!(field("CapAmb:"), "0000000000000000");
    assert_eq!(field("Seccomp:"), "2");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("kcore="), "0");
    assert_eq!(field("procsys="), "ro");
    assert_eq!(field("rootfs="), "ro");
    assert_eq!(
        field("nofile=").parse::<u64>().unwrap(),
        bundle::DEFAULT_NOFILE.min(host_nofile_hard())
    );
    assert_eq!(field("unshare="), "denied");
    assert_eq!(field("mount="), "denied");

    // The same container without the seccomp profile may create a user
    // namespace, so it was the profile that denied it above.
    let mut config = bundle::runtime_spec(&f.spec(
        "t",
        "noseccomp",
        "/bin/busybox unshare -U true && echo unshare=ok",
    ))
    .unwrap();
    config.linux_mut().as_mut().unwrap().set_seccomp(None);
    let b = f.bundle_dir("noseccomp");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let out = f.run_bundle("noseccomp", &b);
    assert_eq!(out.stdout.trim(), "unshare=ok", "{}", out.stderr);

    // A non-root user keeps no capabilities after exec, as in Docker.
    let mut spec = f.spec("t", "app", "grep CapEff /proc/self/status");
    spec.user = resolve_user(&f.rootfs, Some("app")).unwrap();
    let out = f.run("app", &spec);
    assert!(out.stdout.contains("0000000000000000"), "{}", out.stdout);

    // User ulimits are clamped to the host's hard limit too.
    let mut spec = f.spec("t", "ulimit", "echo $(ulimit -Sn) $(ulimit -Hn)");
    spec.ulimits = vec![Ulimit {
        name: "nofile".into(),
        soft: 512,
        hard: u64::MAX / 2,
    }];
    let out = f.run("ulimit", &spec);
    assert_eq!(
        out.stdout.trim(),
        format!("512 {}", host_nofile_hard()),
        "{}",
        out.stderr
    );
    f.cgroups.remove_task("t").unwrap();
}

/// Runs `inner` in a child shell and reports how it ended, then idles, so
/// the container (and its cgroup) outlive the OOM kill.
fn survivor(inner: &str) -> String {
    // The child volunteers as the OOM killer's victim: otherwise the kernel
    // may pick the container's init, and nothing is left to report.
    format!("sh -c 'echo 1000 > /proc/self/oom_score_adj; {inner}'; echo child=$?; sleep 1000")
}

/// Allocates about `mib` MiB in a shell variable.
fn allocate(mib: u64) -> String {
    format!("x=$(yes | head -c {}); sleep 3", mib * 1024 * 1024)
}

#[test]
fn container_memory_limit_oom_kills() {
    if !common::containers_available() {
        return;
    }
    let f = Fixture::new();
    f.cgroups.create_task("t", &TaskLimits::default()).unwrap();
    let mut spec = f.spec("t", "oom", &survivor(&allocate(100)));
    spec.resources.memory_mib = Some(32);
    spec.resources.memory_reservation_mib = Some(16);
    let log = f.start("oom", &spec);
    wait_for("the child to end", &log, Duration::from_secs(60), |l| {
        l.contains("child=")
    });
    assert!(read(&log).contains("child=137"), "{}", read(&log));
    assert!(f.cgroups.oom_kills("t", "oom").unwrap() > 0);
    let stats = f.cgroups.stats("t", Some("oom")).unwrap();
    assert_eq!(stats.memory_limit, Some(32 << 20));
    assert!(stats.memory_peak > 16 << 20, "{stats:?}");
    assert!(stats.memory_peak <= 32 << 20, "{stats:?}");
    assert!(stats.oom_kills > 0);
    if f.cgroups.layout() == CgroupLayout::Hybrid {
        let dir = f.cgroup_dirs("t/oom");
        let soft = dir
            .iter()
            .map(|d| d.join("memory.soft_limit_in_bytes"))
            .find(|p| p.exists())
            .unwrap();
        assert_eq!(read(&soft).trim(), (16u64 << 20).to_string());
    }

    // When the container's init itself is the victim, runc reports SIGKILL.
    let mut spec = f.spec("t", "oom-init", &allocate(100));
    spec.resources.memory_mib = Some(32);
    let out = f.run("oom-init", &spec);
    assert_eq!(out.code, 137, "{}", out.stderr);

    f.delete("oom");
    f.cgroups.remove_task("t").unwrap();
    assert!(f.cgroup_dirs("t").is_empty());
}

#[test]
fn task_memory_envelope_bounds_the_sum_of_containers() {
    if !common::containers_available() {
        return;
    }
    let f = Fixture::new();
    let limits = TaskLimits {
        memory_mib: Some(48),
        ..TaskLimits::default()
    };
    f.cgroups.create_task("t", &limits).unwrap();
    let logs: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|c| f.start(c, &f.spec("t", c, &survivor(&allocate(30)))))
        .collect();
    for log in &logs {
        wait_for("both children to end", log, Duration::from_secs(60), |l| {
            l.contains("child=")
        });
    }
    let killed = logs
        .iter()
        .filter(|l| read(l).contains("child=137"))
        .count();
    assert!(
        killed >= 1,
        "{:?}",
        logs.iter().map(|l| read(l)).collect::<Vec<_>>()
    );
    let kills: u64 = ["a", "b"]
        .iter()
        .map(|c| f.cgroups.oom_kills("t", c).unwrap())
        .sum();
    assert!(kills >= 1);
    let task = f.cgroups.stats("t", None).unwrap();
    assert_eq!(task.memory_limit, Some(48 << 20));
    assert!(task.oom_kills >= 1, "{task:?}");
    assert!(task.memory_peak <= 48 << 20, "{task:?}");
    // Each container alone had no limit of its own.
    assert_eq!(f.cgroups.stats("t", Some("a")).unwrap().memory_limit, None);

    // Removing the task kills what still runs and leaves no directory behind.
    f.cgroups.remove_task("t").unwrap();
    assert!(f.cgroup_dirs("t").is_empty(), "{:?}", f.cgroup_dirs("t"));
    f.cgroups.remove_task("t").unwrap();
    assert_eq!(f.cgroups.list_tasks().unwrap(), Vec::<String>::new());
    f.cgroups.remove_root().unwrap();
    assert!(f.cgroup_dirs("").is_empty(), "{:?}", f.cgroup_dirs(""));
    f.cgroups.remove_root().unwrap();
}

/// CPU time a busy loop gets in `wall` under the given limits.
fn busy_cpu(f: &Fixture, task: &str, task_units: Option<u32>, units: Option<u32>) -> f64 {
    f.cgroups
        .create_task(
            task,
            &TaskLimits {
                cpu_units: task_units,
                ..TaskLimits::default()
            },
        )
        .unwrap();
    let mut spec = f.spec(task, "busy", "while :; do :; done");
    spec.resources.cpu_units = units;
    let name = format!("{task}-busy");
    f.start(&name, &spec);
    let start = Instant::now();
    let before = f.cgroups.stats(task, Some("busy")).unwrap().cpu_usage_ns;
    std::thread::sleep(Duration::from_secs(2));
    let after = f.cgroups.stats(task, Some("busy")).unwrap().cpu_usage_ns;
    let ratio = (after - before) as f64 / start.elapsed().as_nanos() as f64;
    f.delete(&name);
    f.cgroups.remove_task(task).unwrap();
    ratio
}

#[test]
fn cpu_units_become_a_cfs_quota() {
    if !common::containers_available() {
        return;
    }
    let f = Fixture::new();
    // 256 units = a quarter of a CPU, set on the container or on the task.
    for (task, task_units, units) in [("c", None, Some(256)), ("t", Some(256), None)] {
        let share = busy_cpu(&f, task, task_units, units);
        assert!(
            (0.125..=0.375).contains(&share),
            "{task}: busy loop got {share:.3} of a CPU"
        );
    }
}

#[test]
fn pids_limit_caps_a_fork_bomb() {
    if !common::containers_available() {
        return;
    }
    let f = Fixture::new();
    let limits = TaskLimits {
        pids_limit: Some(200),
        ..TaskLimits::default()
    };
    f.cgroups.create_task("t", &limits).unwrap();
    let mut spec = f.spec(
        "t",
        "bomb",
        // The inner shell dies when fork fails; its sleeps stay behind, and
        // the outer one execs rather than forks, as no pid is left.
        "sh -c 'for i in $(seq 1 1000); do sleep 30 & done; wait'; echo child=$?; exec sleep 1000",
    );
    spec.resources.pids_limit = Some(50);
    let log = f.start("bomb", &spec);
    wait_for(
        "the bomb to run out of pids",
        &log,
        Duration::from_secs(60),
        |l| l.contains("child="),
    );
    assert!(read(&log).contains("can't fork"), "{}", read(&log));
    let stats = f.cgroups.stats("t", Some("bomb")).unwrap();
    assert!(stats.pids_current <= 50, "{stats:?}");
    assert!(
        stats.pids_current >= 40,
        "the bomb reached the limit: {stats:?}"
    );
    assert!(f.cgroups.stats("t", None).unwrap().pids_current <= 200);
    // The host can still fork.
    assert!(Command::new("true").status().unwrap().success());

    // remove_task kills the 50 processes still inside before removing.
    f.cgroups.remove_task("t").unwrap();
    assert!(f.cgroup_dirs("t").is_empty(), "{:?}", f.cgroup_dirs("t"));
    f.delete("bomb");
}
