//! Task volumes with real containers: a task-scoped volume shared by two
//! containers (one writes, one reads, read-only where asked), removed with
//! the task; host volumes refused unless the runtime allows them.

mod support;

use hail_runtime::spec::{MountSpec, VolumeSource, VolumeSpec};
use support::{containers_available, sh, Harness};

fn mount(volume: &str, path: &str, read_only: bool) -> MountSpec {
    MountSpec {
        volume: volume.into(),
        container_path: path.into(),
        read_only,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_share_a_task_volume_and_it_goes_with_the_task() {
    if !containers_available() {
        return;
    }
    let h = Harness::new("volumes").await;
    let mut writer = sh("writer", "echo from-writer > /data/note; sleep 2");
    writer.mounts = vec![mount("scratch", "/data", false)];
    writer.essential = false;
    let mut reader = sh(
        "reader",
        "sleep 1; cat /shared/note; echo x > /shared/other 2>/dev/null && echo wrote || echo read-only",
    );
    reader.mounts = vec![mount("scratch", "/shared", true)];
    let mut spec = h.task(vec![writer, reader]);
    spec.volumes = vec![VolumeSpec {
        name: "scratch".into(),
        source: VolumeSource::Task,
    }];
    h.runtime.start_task(&spec).await.unwrap();
    let status = h.runtime.wait(&spec.id).await.unwrap();
    assert_eq!(
        status.container("reader").unwrap().exit.unwrap().code,
        0,
        "{status:?}"
    );
    assert_eq!(h.stdout(&spec.id, "reader"), "from-writer\nread-only\n");
    // The volume lives as long as the task: gone once it has stopped.
    assert!(!h.runtime.task_dir(&spec.id).join("volumes").exists());
    h.runtime.remove(&spec.id).await.unwrap();

    // A host directory is refused by default, and a mount must name a volume.
    let mut host = sh("main", "true");
    host.mounts = vec![mount("h", "/h", false)];
    let mut spec = h.task(vec![host.clone()]);
    spec.volumes = vec![VolumeSpec {
        name: "h".into(),
        source: VolumeSource::Host(h.dir.path().to_owned()),
    }];
    let err = h.runtime.start_task(&spec).await.unwrap_err();
    assert!(
        err.to_string().contains("host volumes are not allowed"),
        "{err}"
    );
    let mut spec = h.task(vec![host]);
    spec.volumes.clear();
    let err = h.runtime.start_task(&spec).await.unwrap_err();
    assert!(err.to_string().contains("unknown volume"), "{err}");
    h.teardown().await;
}
