//! Test harness for end-to-end runtime tests: a private data dir, bridge,
//! subnet and cgroup root per test, the real `hail` binary as the shim.
#![allow(dead_code)]

pub mod host;
#[path = "../../../hail-runtime/tests/common/mod.rs"]
pub mod images;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use hail_runtime::runtime::{Runtime, RuntimeConfig};
use hail_runtime::spec::{ContainerSpec, NetworkMode, TaskSpec};

pub use images::containers_available;

static NEXT: AtomicU32 = AtomicU32::new(1);

pub const BUSYBOX: &str = "hail.test/busybox:latest";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub runtime: Runtime,
    pub config: RuntimeConfig,
}

impl Harness {
    pub async fn new(name: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() % 50) * 5;
        let dir = tempfile::Builder::new()
            .prefix(&format!("hail-{name}-"))
            .tempdir()
            .unwrap();
        let mut config = RuntimeConfig::new(dir.path());
        config.shim_binary = PathBuf::from(env!("CARGO_BIN_EXE_hail"));
        config.network.bridge = format!("hailt{}", n % 10000);
        config.network.subnet = format!("10.219.{}.0/24", n % 250).parse().unwrap();
        config.network.netns_prefix = format!("hailt{n}-");
        config.network.pool_size = 0;
        config.cgroup_root = format!("hail-test-{}-{n}", std::process::id());
        let runtime = Runtime::open(config.clone()).await.expect("runtime opens");
        let tar = dir.path().join("busybox.tar");
        images::write_busybox_rootfs_tar(&tar);
        runtime
            .images()
            .import(BUSYBOX, &tar, &hail_runtime::progress::NoProgress)
            .expect("busybox imports");
        Self {
            dir,
            runtime,
            config,
        }
    }

    pub fn task(&self, containers: Vec<ContainerSpec>) -> TaskSpec {
        TaskSpec {
            id: hail_model::ids::new_task_id(),
            containers,
            cpu_units: None,
            memory_mib: None,
            network: NetworkMode::Awsvpc,
            hostname: None,
            max_runtime: None,
            volumes: Vec::new(),
        }
    }

    /// All stdout lines of a container.
    pub fn stdout(&self, task: &str, container: &str) -> String {
        hail_runtime::logs::read_all(&self.runtime.log_path(task, container))
            .unwrap()
            .into_iter()
            .filter(|r| r.stream == hail_runtime::logs::Stream::Stdout)
            .map(|r| r.log)
            .collect()
    }

    pub fn stderr(&self, task: &str, container: &str) -> String {
        hail_runtime::logs::read_all(&self.runtime.log_path(task, container))
            .unwrap()
            .into_iter()
            .filter(|r| r.stream == hail_runtime::logs::Stream::Stderr)
            .map(|r| r.log)
            .collect()
    }

    pub async fn teardown(self) {
        for id in self.runtime.task_ids().unwrap() {
            let _ = self.runtime.stop(&id, "test over").await;
            let _ = self.runtime.wait(&id).await;
            let _ = self.runtime.remove(&id).await;
        }
        let _ = self.runtime.networks().teardown_host().await;
        if let Ok(cgroups) = hail_runtime::cgroup::Cgroups::detect(&self.config.cgroup_root) {
            let _ = cgroups.remove_root();
        }
    }
}

impl Drop for Harness {
    /// A test that panicked never reached `teardown`: release what the
    /// harness holds on the host anyway, with the host's own tools.
    fn drop(&mut self) {
        let net = &self.config.network;
        host::HostNames {
            bridge: net.bridge.clone(),
            subnet: net.subnet.to_string(),
            netns_prefix: net.netns_prefix.clone(),
            cgroup_root: self.config.cgroup_root.clone(),
        }
        .release(self.dir.path());
    }
}

/// A container running `sh -c script` in busybox.
pub fn sh(name: &str, script: &str) -> ContainerSpec {
    let mut c = ContainerSpec::new(name, BUSYBOX);
    c.command = Some(vec!["/bin/sh".into(), "-c".into(), script.into()]);
    c.stop_timeout = std::time::Duration::from_secs(2);
    c
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
