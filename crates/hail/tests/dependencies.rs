//! `dependsOn` with real containers: an init container whose success gates
//! the app, a dependency that can never be met stopping the task promptly
//! with a reason that names it, and shutdown in reverse dependency order.

mod support;

use std::time::{Duration, Instant};

use hail_runtime::spec::{Dependency, DependencyCondition, MountSpec, VolumeSource, VolumeSpec};
use hail_runtime::task::{StopCause, TaskPhase};
use support::{containers_available, sh, Harness};

fn dep(container: &str, condition: DependencyCondition) -> Dependency {
    Dependency {
        container: container.into(),
        condition,
    }
}

fn shared(path: &str) -> MountSpec {
    MountSpec {
        volume: "shared".into(),
        container_path: path.into(),
        read_only: false,
    }
}

fn shared_volume() -> Vec<VolumeSpec> {
    vec![VolumeSpec {
        name: "shared".into(),
        source: VolumeSource::Task,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_gate_the_app_and_failures_stop_the_task() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("depends").await;

    // SUCCESS met: the app starts after init finished its work.
    let mut init = sh("init", "sleep 1; echo prepared > /s/state");
    init.essential = false;
    init.mounts = vec![shared("/s")];
    let mut app = sh("app", "cat /s/state");
    app.mounts = vec![shared("/s")];
    app.depends_on = vec![dep("init", DependencyCondition::Success)];
    let mut spec = h.task(vec![init, app]);
    spec.volumes = shared_volume();
    let started = h.runtime.start_task(&spec).await.unwrap();
    // start_task returns with init running and the app still waiting.
    assert_eq!(started.phase, TaskPhase::Starting, "{started:?}");
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert_eq!(
        status.container("app").unwrap().exit.unwrap().code,
        0,
        "{status:?}"
    );
    assert_eq!(h.stdout(&spec.id, "app"), "prepared\n");

    // SUCCESS never met: init fails, the app never starts, the task stops
    // at once with a reason naming both and the condition.
    let mut init = sh("init", "exit 3");
    init.essential = false;
    let mut app = sh("app", "echo should-not-run");
    app.depends_on = vec![dep("init", DependencyCondition::Success)];
    let spec = h.task(vec![init, app]);
    let began = Instant::now();
    h.runtime.start_task(&spec).await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(10));
    match &status.stop {
        Some(StopCause::StartFailed { container, message }) => {
            assert_eq!(container, "app");
            assert!(message.contains("init (SUCCESS)"), "{message}");
            assert!(message.contains("code 3"), "{message}");
        }
        other => panic!("unexpected stop cause {other:?}"),
    }
    assert!(status.container("app").unwrap().started_at.is_none());
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_runs_in_reverse_dependency_order() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("stoporder").await;
    // db must still be up when web stops: web depends on db.
    let mut db = sh(
        "db",
        "trap 'test -e /s/web-stopped && echo order-ok || echo order-bad; exit 0' TERM; \
         sleep 60 & wait",
    );
    db.mounts = vec![shared("/s")];
    let mut web = sh(
        "web",
        "trap 'sleep 1; touch /s/web-stopped; exit 0' TERM; sleep 60 & wait",
    );
    web.mounts = vec![shared("/s")];
    web.depends_on = vec![dep("db", DependencyCondition::Start)];
    let mut spec = h.task(vec![db, web]);
    spec.volumes = shared_volume();
    let started = h.runtime.start_task(&spec).await.unwrap();
    assert_eq!(started.phase, TaskPhase::Running, "{started:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.runtime.stop(&spec.id, "test").await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert_eq!(h.stdout(&spec.id, "db"), "order-ok\n", "{status:?}");
    assert_eq!(status.container("web").unwrap().exit.unwrap().code, 0);
    h.teardown().await;
}

fn check(script: &str) -> hail_runtime::spec::HealthCheckSpec {
    hail_runtime::spec::HealthCheckSpec {
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        retries: 2,
        start_period: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_dependencies_wait_for_the_check_and_unhealthy_ones_stop_the_task() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("health").await;

    // The app starts once the server's check passes.
    let mut server = sh("server", "sleep 1; touch /tmp/ready; sleep 60 & wait");
    server.essential = false;
    server.health_check = Some(check("test -e /tmp/ready"));
    let mut app = sh("app", "echo go");
    app.depends_on = vec![dep("server", DependencyCondition::Healthy)];
    let spec = h.task(vec![server, app]);
    h.runtime.start_task(&spec).await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert_eq!(h.stdout(&spec.id, "app"), "go\n", "{status:?}");
    assert_eq!(
        status.container("server").unwrap().health,
        Some(hail_runtime::task::Health::Healthy)
    );

    // A server that never gets healthy: unhealthy after its retries, and
    // the task stops naming the dependency, without starting the app.
    let mut server = sh("server", "sleep 60 & wait");
    server.essential = false;
    server.health_check = Some(check("false"));
    let mut app = sh("app", "echo should-not-run");
    app.depends_on = vec![dep("server", DependencyCondition::Healthy)];
    let spec = h.task(vec![server, app]);
    let began = Instant::now();
    h.runtime.start_task(&spec).await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    match &status.stop {
        Some(StopCause::StartFailed { container, message }) => {
            assert_eq!(container, "app");
            assert!(
                message.contains("server (HEALTHY), which is UNHEALTHY"),
                "{message}"
            );
        }
        other => panic!("unexpected stop cause {other:?}"),
    }
    assert!(status.container("app").unwrap().started_at.is_none());
    h.teardown().await;
}

/// The OCI runtime's view of one container: its `status` ("created",
/// "running", …), or None when the runtime has no such container.
fn runtime_state(h: &Harness, id: &str) -> Option<String> {
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(hail_runtime::runtime::runtime_state_root(h.dir.path()))
        .args(["state", id])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    state["status"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_containers_are_created_ahead_and_go_when_the_task_stops_first() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("ahead").await;
    let mut init = sh("init", "sleep 30");
    init.essential = false;
    let mut app = sh("app", "echo should-not-run");
    app.depends_on = vec![dep("init", DependencyCondition::Success)];
    let mut sidecar = sh("sidecar", "echo should-not-run-either");
    sidecar.depends_on = vec![dep("app", DependencyCondition::Start)];
    let spec = h.task(vec![sidecar, app, init]);
    let started = h.runtime.start_task(&spec).await.unwrap();
    assert_eq!(started.phase, TaskPhase::Starting, "{started:?}");

    // While init runs, the runtime has already set up the two waiting
    // containers; their processes wait for `runc start`.
    let init_id = format!("{}.init", spec.id);
    let app_id = format!("{}.app", spec.id);
    let sidecar_id = format!("{}.sidecar", spec.id);
    assert_eq!(runtime_state(&h, &init_id).as_deref(), Some("running"));
    assert_eq!(runtime_state(&h, &app_id).as_deref(), Some("created"));
    assert_eq!(runtime_state(&h, &sidecar_id).as_deref(), Some("created"));

    // Stopped before its dependencies are met: the created containers go
    // at once (no stop timeout), and nothing of them is left behind.
    let began = Instant::now();
    h.runtime.stop(&spec.id, "test").await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(10), "{status:?}");
    assert!(
        matches!(status.stop, Some(StopCause::Requested { .. })),
        "{status:?}"
    );
    for name in ["app", "sidecar"] {
        let c = status.container(name).unwrap();
        assert!(c.started_at.is_none(), "{c:?}");
        assert_eq!(
            c.reason.as_deref(),
            Some("Task stopped before the container started"),
            "{c:?}"
        );
        assert_eq!(h.stdout(&spec.id, name), "", "{name} ran");
    }
    for id in [&init_id, &app_id, &sidecar_id] {
        assert_eq!(runtime_state(&h, id), None, "{id} left in the runtime");
    }
    let task_dir = h.runtime.task_dir(&spec.id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(task_dir.to_str().unwrap()),
        "container roots left mounted"
    );
    h.teardown().await;
}
