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
