//! Host resources a test owns — a bridge, a subnet, a namespace prefix, a
//! cgroup root — unique per test, and their release even when a test panics.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(1);

/// Names no other test process uses at the same time.
#[derive(Debug, Clone)]
pub struct HostNames {
    pub bridge: String,
    pub subnet: String,
    pub netns_prefix: String,
    pub cgroup_root: String,
}

impl HostNames {
    /// `kind` keeps the ranges of different harnesses apart (0–3).
    pub fn unique(kind: u32) -> Self {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed) + (pid % 50) * 5;
        Self {
            bridge: format!(
                "hail{}t{}",
                ["t", "s", "m", "c"][kind as usize % 4],
                n % 10000
            ),
            subnet: format!("10.{}.{}.0/24", 219 - kind, n % 250),
            netns_prefix: format!("hail{kind}t{n}-"),
            cgroup_root: format!("hail-test-{kind}-{pid}-{n}"),
        }
    }

    /// The global `hail` flags that select these resources.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--bridge".into(),
            self.bridge.clone(),
            "--subnet".into(),
            self.subnet.clone(),
            "--netns-prefix".into(),
            self.netns_prefix.clone(),
            "--cgroup-root".into(),
            self.cgroup_root.clone(),
        ]
    }

    /// Releases everything under `data_dir` and these names with the host's
    /// own tools: containers, mounts, namespaces, the bridge, NAT chains,
    /// cgroups. Safe to call when some or all of it is already gone.
    pub fn release(&self, data_dir: &Path) {
        let quiet = |cmd: &str, args: &[&str]| {
            let _ = Command::new(cmd)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        let runc_root = hail_runtime::runtime::runtime_state_root(data_dir);
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                quiet(
                    "runc",
                    &[
                        "--root",
                        runc_root.to_str().unwrap(),
                        "delete",
                        "--force",
                        id,
                    ],
                );
            }
        }
        let _ = std::fs::remove_dir_all(&runc_root);
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let prefix = data_dir.to_string_lossy().into_owned();
            for target in mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|t| t.starts_with(&prefix))
            {
                quiet("umount", &["-l", target]);
            }
        }
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.netns_prefix) {
                    quiet("ip", &["netns", "delete", &name]);
                }
            }
        }
        quiet("ip", &["link", "delete", &self.bridge]);
        for (table, chain, parent) in [
            ("nat", format!("HAIL-POST-{}", self.bridge), "POSTROUTING"),
            ("filter", format!("HAIL-FWD-{}", self.bridge), "FORWARD"),
        ] {
            quiet("iptables", &["-t", table, "-D", parent, "-j", &chain]);
            quiet("iptables", &["-t", table, "-F", &chain]);
            quiet("iptables", &["-t", table, "-X", &chain]);
        }
        if let Ok(cgroups) = hail_runtime::cgroup::Cgroups::detect(&self.cgroup_root) {
            let _ = cgroups.remove_root();
        }
    }
}
