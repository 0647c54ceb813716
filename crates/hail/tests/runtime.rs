//! End-to-end tests of the data plane: real images, overlay roots, runc,
//! task networks, cgroups and the shim (the real `hail` binary).

mod support;

use std::time::Duration;

use hail_runtime::spec::ContainerSpec;
use hail_runtime::task::{ContainerPhase, StopCause, TaskPhase};
use support::{containers_available, sh, Harness, BUSYBOX};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_args_env_workdir_and_user() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("basics").await;
    let mut c = sh(
        "main",
        "echo args:$0:$1; echo env:$GREETING; echo cwd:$(pwd); echo id:$(id -u):$(id -g); exit 7",
    );
    c.command
        .as_mut()
        .unwrap()
        .extend(["zero".into(), "first".into()]);
    c.environment
        .push(("GREETING".into(), "hello world".into()));
    c.working_directory = Some("/tmp".into());
    c.user = Some("app".into());
    let spec = h.task(vec![c]);
    let started = h.runtime.start_task(&spec).await.unwrap();
    assert_ne!(started.phase, TaskPhase::Starting);
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert_eq!(status.phase, TaskPhase::Stopped);
    let main = status.container("main").unwrap();
    assert_eq!(main.phase, ContainerPhase::Stopped);
    assert_eq!(main.exit.unwrap().code, 7);
    assert!(!main.exit.unwrap().oom_killed);
    assert_eq!(
        status.stop,
        Some(StopCause::EssentialContainerExited {
            container: "main".into()
        })
    );
    assert_eq!(
        h.stdout(&spec.id, "main"),
        "args:zero:first\nenv:hello world\ncwd:/tmp\nid:1000:1000\n"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_are_logged_with_streams_and_times() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("logs").await;
    let spec = h.task(vec![sh(
        "main",
        "echo out; echo err >&2; printf 'no newline'",
    )]);
    h.runtime.start_task(&spec).await.unwrap();
    h.runtime.wait(&spec.id).await.unwrap();
    let records = hail_runtime::logs::read_all(&h.runtime.log_path(&spec.id, "main")).unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(records.iter().all(|r| r.timestamp().is_some()));
    assert_eq!(h.stdout(&spec.id, "main"), "out\nno newline");
    assert_eq!(h.stderr(&spec.id, "main"), "err\n");
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_then_sigkill_after_stop_timeout() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("stop").await;
    // Traps TERM: exits 3 on its own.
    let polite = sh(
        "polite",
        "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
    );
    let spec = h.task(vec![polite]);
    h.runtime.start_task(&spec).await.unwrap();
    wait_for_output(&h, &spec.id, "polite", "ready").await;
    h.runtime
        .stop(&spec.id, "Task stopped by test")
        .await
        .unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert_eq!(status.container("polite").unwrap().exit.unwrap().code, 3);
    assert_eq!(
        status.stop,
        Some(StopCause::Requested {
            reason: "Task stopped by test".into()
        })
    );
    assert!(h.stdout(&spec.id, "polite").contains("got-term"));

    // Ignores TERM (pid 1 without a handler): killed after its stop timeout.
    let mut stubborn = sh("stubborn", "echo ready; exec sleep 1000");
    stubborn.stop_timeout = Duration::from_millis(500);
    let spec = h.task(vec![stubborn]);
    h.runtime.start_task(&spec).await.unwrap();
    wait_for_output(&h, &spec.id, "stubborn", "ready").await;
    let asked = std::time::Instant::now();
    h.runtime.stop(&spec.id, "stop").await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    let exit = status.container("stubborn").unwrap().exit.unwrap();
    assert_eq!((exit.code, exit.signal), (137, Some(9)));
    assert!(asked.elapsed() >= Duration::from_millis(450));
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_timeout_stops_the_task_with_its_own_cause() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("timeout").await;
    let mut spec = h.task(vec![sh(
        "main",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    )]);
    spec.max_runtime = Some(Duration::from_millis(800));
    h.runtime.start_task(&spec).await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert_eq!(
        status.stop,
        Some(StopCause::Timeout {
            max_runtime_ms: 800
        })
    );
    assert_eq!(
        status.stop.unwrap().describe(),
        "Task exceeded its maximum runtime of 800ms"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_and_bad_command_fail_cleanly() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("failstart").await;
    let spec = h.task(vec![ContainerSpec::new("main", "no/such:image")]);
    let err = h.runtime.start_task(&spec).await.unwrap_err();
    assert!(err.to_string().contains("no/such:image"), "{err}");
    assert!(!h.runtime.task_dir(&spec.id).exists());

    // The rootfs import has no Cmd: running it without a command is refused up front.
    let spec = h.task(vec![ContainerSpec::new("main", BUSYBOX)]);
    let err = h.runtime.start_task(&spec).await.unwrap_err();
    assert!(err.to_string().contains("no command"), "{err}");

    // A binary that does not exist in the image: the runtime reports the start failure.
    let mut c = ContainerSpec::new("main", BUSYBOX);
    c.command = Some(vec!["/no/such/binary".into()]);
    let spec = h.task(vec![c]);
    let started = h.runtime.start_task(&spec).await.unwrap();
    let status = if started.phase.is_final() {
        started
    } else {
        h.runtime.wait(&spec.id).await.unwrap()
    };
    match &status.stop {
        Some(StopCause::StartFailed { container, message }) => {
            assert_eq!(container, "main");
            assert!(
                message.contains("no/such/binary") || message.contains("no such file"),
                "{message}"
            );
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let task_dir = h.runtime.task_dir(&spec.id);
    assert!(
        !mounts.contains(task_dir.to_str().unwrap()),
        "a failed start left its root mounted"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_task_share_localhost_and_the_host_reaches_the_task_ip() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("net").await;
    let server = sh("server", "while :; do echo pong | nc -l -p 8080; done");
    let mut client = sh("client", "sleep 0.3; for i in 1 2 3 4 5; do r=$(echo ping | nc 127.0.0.1 8080) && break; sleep 0.2; done; echo got:$r");
    client.essential = false;
    let spec = h.task(vec![server, client]);
    let started = h.runtime.start_task(&spec).await.unwrap();
    assert_eq!(started.phase, TaskPhase::Running);
    let ip = started.network.as_ref().unwrap().ip.unwrap();
    wait_for_output(&h, &spec.id, "client", "got:pong").await;

    // The host reaches task IP:port.
    let mut reply = String::new();
    for _ in 0..20 {
        if let Ok(mut s) = tokio::net::TcpStream::connect((ip, 8080)).await {
            use tokio::io::AsyncReadExt;
            s.read_to_string(&mut reply).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reply, "pong\n");

    // Another task cannot reach the first one's localhost, but can reach its IP.
    let probe = sh(
        "probe",
        &format!("if echo x | nc -w 1 127.0.0.1 8080; then echo local:open; else echo local:closed; fi; echo x | nc -w 2 {ip} 8080"),
    );
    let other = h.task(vec![probe]);
    h.runtime.start_task(&other).await.unwrap();
    h.runtime.wait(&other.id).await.unwrap();
    assert_eq!(h.stdout(&other.id, "probe"), "local:closed\npong\n");

    let status = h.runtime.status(&spec.id).await.unwrap();
    assert_eq!(
        status.phase,
        TaskPhase::Running,
        "non-essential exit keeps the task running"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_oom_kill_is_reported() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("oom").await;
    let mut c = sh(
        "hog",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    );
    c.memory_mib = Some(32);
    let spec = h.task(vec![c]);
    h.runtime.start_task(&spec).await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    let hog = status.container("hog").unwrap();
    let exit = hog.exit.unwrap();
    assert!(exit.oom_killed, "{status:?}");
    assert_eq!(
        hog.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );
    assert!(!h.stdout(&spec.id, "hog").contains("survived"));
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_quota_limits_a_busy_loop_to_its_share() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("cpu").await;
    let mut c = sh("spin", "while :; do :; done");
    c.cpu_units = Some(256);
    let mut spec = h.task(vec![c]);
    spec.cpu_units = Some(256);
    h.runtime.start_task(&spec).await.unwrap();
    let before = h
        .runtime
        .stats(&spec.id, Some("spin"))
        .unwrap()
        .cpu_usage_ns;
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = h
        .runtime
        .stats(&spec.id, Some("spin"))
        .unwrap()
        .cpu_usage_ns;
    let share = (after - before) as f64 / t0.elapsed().as_nanos() as f64;
    assert!(
        (0.15..=0.32).contains(&share),
        "cpu share {share:.3} at 256 units"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_stops_at_the_pids_limit() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("pids").await;
    // The inner shell forks until the limit stops it; its sleepers stay in the
    // container, held by the outer shell, which needs no fork to wait.
    let mut c = sh(
        "bomb",
        "sh -c 'n=0; while [ $n -lt 300 ]; do sleep 30 & n=$((n+1)); done'; echo bomb-ended; exec sleep 30",
    );
    c.pids_limit = Some(64);
    let spec = h.task(vec![c]);
    h.runtime.start_task(&spec).await.unwrap();
    wait_for_output(&h, &spec.id, "bomb", "bomb-ended").await;
    let stats = h.runtime.stats(&spec.id, Some("bomb")).unwrap();
    assert!(
        h.stderr(&spec.id, "bomb").contains("can't fork"),
        "{}",
        h.stderr(&spec.id, "bomb")
    );
    assert!(stats.pids_current <= 64, "{stats:?}");
    assert!(stats.pids_current >= 32, "the bomb did run: {stats:?}");
    // The host still forks.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    h.runtime.stop(&spec.id, "done").await.unwrap();
    h.runtime.wait(&spec.id).await.unwrap();
    h.teardown().await;
}

/// A container's writable layer is an overlay mounted `volatile` — thrown
/// away with its task, never made durable — and writing, syncing and reading
/// it back inside the container works; the mount goes with the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writable_layer_is_a_volatile_overlay() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("volatile").await;
    let spec = h.task(vec![sh(
        "main",
        "echo kept > /etc/written; sync /etc/written; cat /etc/written; echo ready; exec sleep 1000",
    )]);
    h.runtime.start_task(&spec).await.unwrap();
    wait_for_output(&h, &spec.id, "main", "ready").await;
    let task_dir = h.runtime.task_dir(&spec.id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = mounts
        .lines()
        .find(|l| l.contains(task_dir.to_str().unwrap()) && l.contains(" - overlay "))
        .unwrap_or_else(|| panic!("no overlay under {}:\n{mounts}", task_dir.display()));
    let options = root.rsplit(' ').next().unwrap();
    // Newer kernels show the option as `fsync=volatile`.
    assert!(
        options
            .split(',')
            .any(|o| o == "volatile" || o == "fsync=volatile"),
        "not volatile: {root}"
    );
    assert_eq!(h.stdout(&spec.id, "main"), "kept\nready\n");
    h.runtime.stop(&spec.id, "done").await.unwrap();
    h.runtime.wait(&spec.id).await.unwrap();
    h.runtime.remove(&spec.id).await.unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(task_dir.to_str().unwrap()),
        "the root outlived its task"
    );
    h.teardown().await;
}

async fn wait_for_output(h: &Harness, task: &str, container: &str, needle: &str) {
    for _ in 0..100 {
        if h.stdout(task, container).contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{container} never printed {needle:?}; stdout: {:?} stderr: {:?}",
        h.stdout(task, container),
        h.stderr(task, container)
    );
}

/// Builds an OCI layout with umoci whose config sets Entrypoint, Cmd, Env,
/// WorkingDir and User, and imports it.
fn import_configured_image(h: &Harness) -> String {
    let work = h.dir.path().join("configured");
    std::fs::create_dir_all(&work).unwrap();
    let rootfs = work.join("rootfs.tar");
    support::images::write_busybox_rootfs_tar(&rootfs);
    let layout = work.join("layout");
    let image = format!("{}:v1", layout.display());
    let umoci = |args: &[&str]| support::run("umoci", args);
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&[
        "raw",
        "add-layer",
        "--image",
        &image,
        rootfs.to_str().unwrap(),
    ]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.entrypoint",
        "/bin/sh",
        "--config.entrypoint",
        "-c",
        "--config.cmd",
        "echo img-cmd env=$A,$B cwd=$(pwd) uid=$(id -u)",
        "--config.env",
        "A=image",
        "--config.env",
        "B=image",
        "--config.workingdir",
        "/tmp",
        "--config.user",
        "app",
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]);
    h.runtime
        .images()
        .import(
            "hail.test/configured:v1",
            &layout,
            &hail_runtime::progress::NoProgress,
        )
        .unwrap();
    "hail.test/configured:v1".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_config_gives_defaults_and_the_task_overrides_them() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("imgcfg").await;
    let image = import_configured_image(&h);
    let hr = &h;
    let run = |c: ContainerSpec| {
        let h = hr;
        let spec = h.task(vec![c]);
        async move {
            h.runtime.start_task(&spec).await.unwrap();
            let status = h.runtime.wait(&spec.id).await.unwrap();
            assert_eq!(status.exit_code(), Some(0), "{status:?}");
            h.stdout(&spec.id, "main")
        }
    };
    // Everything from the image.
    let out = run(ContainerSpec::new("main", &image)).await;
    assert_eq!(out, "img-cmd env=image,image cwd=/tmp uid=1000\n");

    // The task's command replaces Cmd (Entrypoint stays); env, workdir and user override.
    let mut c = ContainerSpec::new("main", &image);
    c.command = Some(vec![
        "echo task-cmd env=$A,$B cwd=$(pwd) uid=$(id -u)".into()
    ]);
    c.environment.push(("B".into(), "task".into()));
    c.working_directory = Some("/".into());
    c.user = Some("0".into());
    let out = run(c).await;
    assert_eq!(out, "task-cmd env=image,task cwd=/ uid=0\n");

    // A new Entrypoint drops the image's Cmd, as Docker and ECS do.
    let mut c = ContainerSpec::new("main", &image);
    c.entrypoint = Some(vec!["/bin/echo".into(), "entrypoint-only".into()]);
    let out = run(c).await;
    assert_eq!(out, "entrypoint-only\n");
    h.teardown().await;
}

/// Whether process `pid` has exited (gone, or a zombie not reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_shims_take_the_next_tasks_and_leave_with_the_runtime() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("spares").await;
    assert!(
        h.runtime.spare_shim_pids().is_empty(),
        "a runtime that has started nothing keeps no spare"
    );
    let first = h.task(vec![sh("main", "echo one")]);
    h.runtime.start_task(&first).await.unwrap();
    h.runtime.wait(&first.id).await.unwrap();

    // Spares are made once the first start is over.
    let wanted = h.config.spare_shims;
    assert!(wanted > 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.runtime.spare_shim_pids().len() < wanted {
        assert!(
            std::time::Instant::now() < deadline,
            "spares never made: {:?}",
            h.runtime.spare_shim_pids()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spares = h.runtime.spare_shim_pids();

    let second = h.task(vec![sh("main", "echo two")]);
    let started = h.runtime.start_task(&second).await.unwrap();
    let shim = started.shim_pid.expect("the shim reports its pid") as u32;
    assert!(
        spares.contains(&shim),
        "task supervised by shim {shim}, not one of the spares {spares:?}"
    );
    let status = h.runtime.wait(&second.id).await.unwrap();
    assert_eq!(status.exit_code(), Some(0));
    assert_eq!(h.stdout(&second.id, "main"), "two\n");
    let shim_log = h.runtime.task_dir(&second.id).join("shim.log");
    assert!(shim_log.exists(), "a spare writes to its task's shim log");

    // The spares still waiting leave when the runtime goes.
    let waiting: Vec<u32> = spares.into_iter().filter(|p| *p != shim).collect();
    assert!(!waiting.is_empty());
    h.teardown().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !waiting.iter().all(|p| exited(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "spares {waiting:?} outlived their runtime"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
