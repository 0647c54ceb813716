//! Crash and cleanup: containers outlive the process that started them, dead
//! shims are noticed, and nothing leaks over many start/stop cycles.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use hail_runtime::runtime::Runtime;
use hail_runtime::task::{StopCause, TaskPhase};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{containers_available, sh, Harness, BUSYBOX};

/// `hail runtime …` with the harness's data dir and host resources.
fn hail_cli(h: &Harness) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hail"));
    let net = &h.config.network;
    // The data dir relative to the working directory, as a user may give
    // it: it must name the same tasks and runtime state as the absolute one.
    let dir = h.dir.path();
    cmd.current_dir(dir.parent().unwrap())
        .env("HAIL_DATA_DIR", dir.file_name().unwrap())
        .env("HAIL_BRIDGE", &net.bridge)
        .env("HAIL_SUBNET", net.subnet.to_string())
        .env("HAIL_NETNS_PREFIX", &net.netns_prefix)
        .env("HAIL_CGROUP_ROOT", &h.config.cgroup_root);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_outlives_a_killed_runtime_process_and_is_readopted() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("adopt").await;
    let id = hail_model::ids::new_task_id();
    let mut holder = hail_cli(&h)
        .args(["runtime", "run", "--id", &id, BUSYBOX, "/bin/sh", "-c"])
        .arg("echo before; sleep 2; echo after; exit 5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = h.runtime.log_path(&id, "main");
    for _ in 0..100 {
        if h.stdout(&id, "main").contains("before") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.exists() && h.stdout(&id, "main").contains("before"));
    // SIGKILL the process that holds the runtime while the container runs.
    holder.kill().unwrap();
    holder.wait().unwrap();

    // A new runtime over the same data dir finds the task alive and adopts it.
    let runtime = Runtime::open(h.config.clone()).await.unwrap();
    let recovery = runtime.recover().await.unwrap();
    assert_eq!(recovery.adopted, vec![id.clone()]);
    assert!(recovery.lost.is_empty());
    assert_eq!(runtime.status(&id).await.unwrap().phase, TaskPhase::Running);
    let status = runtime.wait(&id).await.unwrap();
    assert_eq!(status.phase, TaskPhase::Stopped);
    assert_eq!(status.exit_code(), Some(5));
    assert_eq!(
        h.stdout(&id, "main"),
        "before\nafter\n",
        "output after the kill is in the log"
    );

    // The CLI reports the same exit code through a third process.
    let code = hail_cli(&h)
        .args(["runtime", "wait", &id])
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(5));
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shim_is_noticed_and_its_containers_are_stopped() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("lostshim").await;
    let (spec, container) = start_and_kill_its_shim(&h).await;

    let recovery = h.runtime.recover().await.unwrap();
    assert_eq!(recovery.lost, vec![spec.id.clone()]);
    let status = h.runtime.status(&spec.id).await.unwrap();
    assert_eq!(status.phase, TaskPhase::Stopped);
    assert_eq!(status.stop, Some(StopCause::ShimLost));
    // The orphaned container was killed, not left running.
    let mut gone = false;
    for _ in 0..50 {
        if kill(Pid::from_raw(container), None).is_err() || is_zombie(container) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "container process {container} still runs");
    h.teardown().await;
}

/// Older binaries kept runc's state in the data dir (`DIR/runc`): a task
/// whose shim died there is settled, its container record collected from
/// that root, and the emptied directory removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_state_left_in_the_data_dir_by_an_older_binary_is_collected() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("legacy").await;
    let (spec, _) = start_and_kill_its_shim(&h).await;
    // Move the container's runc record where an older binary kept it.
    let cid = hail_runtime::shim::runtime_container_id(&spec.id, "main");
    let current = hail_runtime::runtime::runtime_state_root(h.dir.path()).join(&cid);
    let legacy = h.dir.path().join("runc");
    std::fs::create_dir_all(legacy.join(&cid)).unwrap();
    for entry in std::fs::read_dir(&current).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), legacy.join(&cid).join(entry.file_name())).unwrap();
    }
    std::fs::remove_dir_all(&current).unwrap();

    let recovery = h.runtime.recover().await.unwrap();
    assert_eq!(recovery.lost, vec![spec.id.clone()]);
    assert!(recovery.collected >= 1, "{recovery:?}");
    assert!(!legacy.exists(), "{} was left behind", legacy.display());
    h.teardown().await;
}

/// Starts a one-container task that runs until stopped, then SIGKILLs its
/// shim; returns the task and its container's pid.
async fn start_and_kill_its_shim(h: &Harness) -> (hail_runtime::spec::TaskSpec, i32) {
    let spec = h.task(vec![sh("main", "echo up; exec sleep 1000")]);
    let started = h.runtime.start_task(&spec).await.unwrap();
    let container = started.container("main").unwrap().pid.unwrap();
    kill(Pid::from_raw(started.shim_pid.unwrap()), Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    (spec, container)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_start_stop_cycles_leak_nothing() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("leaks").await;
    for i in 0..200 {
        let spec = if i % 2 == 0 {
            h.task(vec![sh("main", "exit 0")])
        } else {
            h.task(vec![sh(
                "main",
                "trap 'exit 0' TERM; echo up; while :; do sleep 0.02; done",
            )])
        };
        h.runtime.start_task(&spec).await.unwrap();
        if i % 2 == 1 {
            h.runtime.stop(&spec.id, "cycle").await.unwrap();
        }
        let status = h.runtime.wait(&spec.id).await.unwrap();
        assert_eq!(status.phase, TaskPhase::Stopped, "cycle {i}: {status:?}");
        h.runtime.remove(&spec.id).await.unwrap();
    }
    let prefix = &h.config.network.netns_prefix;
    let netns: Vec<_> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix.as_str()))
                .collect()
        })
        .unwrap_or_default();
    assert!(netns.is_empty(), "leaked namespaces {netns:?}");
    let bridge = &h.config.network.bridge;
    let veths = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link", "show", "master", bridge])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(veths.trim().is_empty(), "leaked veths: {veths}");
    let leases = count_files(&h.config.network.state_dir.join("leases"));
    assert_eq!(
        leases,
        0,
        "leaked lease files under {}",
        h.config.network.state_dir.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(h.dir.path().to_str().unwrap()),
        "leaked mounts"
    );
    for controller in ["memory", "cpu", "pids", "unified"] {
        let dir = std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&h.config.cgroup_root);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let children: Vec<_> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect();
            assert!(
                children.is_empty(),
                "leaked cgroups in {}: {children:?}",
                dir.display()
            );
        }
    }
    let runc = String::from_utf8(
        Command::new("runc")
            .arg("--root")
            .arg(hail_runtime::runtime::runtime_state_root(h.dir.path()))
            .args(["list", "-q"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(runc.trim().is_empty(), "leaked runc containers: {runc}");
    // The runtime's state directories are removed by the shims themselves.
    let state_root = hail_runtime::runtime::runtime_state_root(h.dir.path());
    let left: Vec<_> = std::fs::read_dir(&state_root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "leaked runtime state in {}: {left:?}",
        state_root.display()
    );
    assert!(h.runtime.task_ids().unwrap().is_empty());
    h.teardown().await;
}

/// Regular files under `dir`, recursively (directories themselves don't count).
fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_files(&p)
            } else {
                usize::from(p.is_file())
            }
        })
        .sum()
}
