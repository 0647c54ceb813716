//! Finer accounting of a task's or container's cgroup than [`CgroupStats`]
//! gives: CPU time split into user and system, CFS throttling, and the memory
//! controller's own breakdown (`memory.stat`). This is what Docker's stats
//! API reports beside the totals, and what the task metadata endpoint serves.
//!
//! [`CgroupStats`]: super::CgroupStats

use std::collections::BTreeMap;
use std::path::Path;

use super::{read_keyed, read_string, read_u64, CgroupError, CgroupLayout, Cgroups};

/// Nanoseconds per tick of the kernel's `USER_HZ` clock, in which v1's
/// `cpuacct.stat` counts. `USER_HZ` is part of the kernel ABI and is 100 on
/// every architecture Hail runs on (x86_64, aarch64).
const NS_PER_USER_HZ_TICK: u64 = 10_000_000;

/// CPU time of a cgroup by mode, and how often its CFS quota held it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuAccounting {
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS periods in which the cgroup had runnable work.
    pub periods: u64,
    /// Of those, periods in which it hit its quota.
    pub throttled_periods: u64,
    /// Total time it spent throttled.
    pub throttled_ns: u64,
}

impl Cgroups {
    /// CPU time by mode and throttling of the task (`container` None) or
    /// of one of its containers. A controller the host does not mount
    /// accounts nothing and reads as zero, as in [`Cgroups::stats`].
    pub fn cpu_accounting(
        &self,
        task_id: &str,
        container: Option<&str>,
    ) -> Result<CpuAccounting, CgroupError> {
        let rel = self.relative(task_id, container)?;
        match self.inner.layout {
            CgroupLayout::Hybrid => {
                let mut out = CpuAccounting::default();
                match self.v1_dir("cpuacct", &rel) {
                    Ok(dir) => (out.user_ns, out.system_ns) = v1_cpu_modes(&dir)?,
                    Err(CgroupError::MissingController { .. }) => {}
                    Err(e) => return Err(e),
                }
                match self.v1_dir("cpu", &rel) {
                    Ok(dir) => {
                        let stat = dir.join("cpu.stat");
                        out.periods = read_keyed(&stat, "nr_periods")?;
                        out.throttled_periods = read_keyed(&stat, "nr_throttled")?;
                        out.throttled_ns = read_keyed(&stat, "throttled_time")?;
                    }
                    Err(CgroupError::MissingController { .. }) => {}
                    Err(e) => return Err(e),
                }
                Ok(out)
            }
            CgroupLayout::Unified => {
                let dir = self.v2_mount()?.join(&rel);
                if !dir.is_dir() {
                    return Err(CgroupError::NotFound { path: dir });
                }
                let stat = dir.join("cpu.stat");
                let usec = |key| read_keyed(&stat, key).map(|v| v.saturating_mul(1000));
                Ok(CpuAccounting {
                    user_ns: usec("user_usec")?,
                    system_ns: usec("system_usec")?,
                    periods: read_keyed(&stat, "nr_periods")?,
                    throttled_periods: read_keyed(&stat, "nr_throttled")?,
                    throttled_ns: usec("throttled_usec")?,
                })
            }
        }
    }

    /// The memory controller's `memory.stat` of the task or container, every
    /// counter by its kernel name (`cache`, `rss`, `anon`, `file`, …; v1 and
    /// v2 name them differently, and Docker passes them through as they are).
    pub fn memory_stat(
        &self,
        task_id: &str,
        container: Option<&str>,
    ) -> Result<BTreeMap<String, u64>, CgroupError> {
        let rel = self.relative(task_id, container)?;
        let dir = match self.inner.layout {
            CgroupLayout::Hybrid => self.v1_dir("memory", &rel)?,
            CgroupLayout::Unified => {
                let dir = self.v2_mount()?.join(&rel);
                if !dir.is_dir() {
                    return Err(CgroupError::NotFound { path: dir });
                }
                dir
            }
        };
        let path = dir.join("memory.stat");
        parse_flat_keyed(&path, &read_string(&path)?)
    }
}

/// User and system time from v1's cpuacct: in nanoseconds where the kernel
/// keeps them (`cpuacct.usage_user`, `cpuacct.usage_sys`, Linux 4.7 and
/// later), otherwise from `cpuacct.stat`'s ticks.
fn v1_cpu_modes(dir: &Path) -> Result<(u64, u64), CgroupError> {
    let user = dir.join("cpuacct.usage_user");
    if user.exists() {
        return Ok((read_u64(&user)?, read_u64(&dir.join("cpuacct.usage_sys"))?));
    }
    let stat = dir.join("cpuacct.stat");
    Ok((
        read_keyed(&stat, "user")?.saturating_mul(NS_PER_USER_HZ_TICK),
        read_keyed(&stat, "system")?.saturating_mul(NS_PER_USER_HZ_TICK),
    ))
}

/// `key value` lines, every value a whole number.
fn parse_flat_keyed(path: &Path, text: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let parsed = match (parts.next(), parts.next(), parts.next()) {
            (Some(key), Some(value), None) => value.parse().ok().map(|v| (key.to_owned(), v)),
            _ => None,
        };
        let (key, value) = parsed.ok_or_else(|| CgroupError::Parse {
            path: path.to_owned(),
            content: line.to_owned(),
        })?;
        out.insert(key, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn hybrid_cpu_modes_throttling_and_memory_stat() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        for h in ["cpu", "cpuacct", "memory"] {
            fs::create_dir_all(p.join(h).join("hail/t1/web")).unwrap();
        }
        let cg = Cgroups::with_fs_root(p, CgroupLayout::Hybrid, "hail").unwrap();
        let acct = p.join("cpuacct/hail/t1/web");
        fs::write(acct.join("cpuacct.usage_user"), "700\n").unwrap();
        fs::write(acct.join("cpuacct.usage_sys"), "300\n").unwrap();
        fs::write(
            p.join("cpu/hail/t1/web/cpu.stat"),
            "nr_periods 40\nnr_throttled 4\nthrottled_time 123456\nnr_bursts 0\n",
        )
        .unwrap();
        assert_eq!(
            cg.cpu_accounting("t1", Some("web")).unwrap(),
            CpuAccounting {
                user_ns: 700,
                system_ns: 300,
                periods: 40,
                throttled_periods: 4,
                throttled_ns: 123456,
            }
        );
        // Older kernels: ticks of cpuacct.stat.
        fs::remove_file(acct.join("cpuacct.usage_user")).unwrap();
        fs::write(acct.join("cpuacct.stat"), "user 12\nsystem 3\n").unwrap();
        let a = cg.cpu_accounting("t1", Some("web")).unwrap();
        assert_eq!((a.user_ns, a.system_ns), (120_000_000, 30_000_000));

        fs::write(
            p.join("memory/hail/t1/web/memory.stat"),
            "cache 4096\nrss 8192\n\nhierarchical_memory_limit 67108864\n",
        )
        .unwrap();
        let m = cg.memory_stat("t1", Some("web")).unwrap();
        assert_eq!(m.get("rss"), Some(&8192));
        assert_eq!(m.get("hierarchical_memory_limit"), Some(&67_108_864));
        assert_eq!(m.len(), 3);
        fs::write(p.join("memory/hail/t1/web/memory.stat"), "rss lots\n").unwrap();
        assert!(matches!(
            cg.memory_stat("t1", Some("web")),
            Err(CgroupError::Parse { .. })
        ));
        assert!(matches!(
            cg.cpu_accounting("t1", Some("gone")),
            Err(CgroupError::NotFound { .. })
        ));
    }

    #[test]
    fn unified_cpu_modes_throttling_and_memory_stat() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        let c = p.join("hail/t1/web");
        fs::create_dir_all(&c).unwrap();
        let cg = Cgroups::with_fs_root(p, CgroupLayout::Unified, "hail").unwrap();
        fs::write(
            c.join("cpu.stat"),
            "usage_usec 250\nuser_usec 200\nsystem_usec 50\nnr_periods 9\nnr_throttled 2\nthrottled_usec 7\n",
        )
        .unwrap();
        fs::write(c.join("memory.stat"), "anon 1024\nfile 2048\n").unwrap();
        assert_eq!(
            cg.cpu_accounting("t1", Some("web")).unwrap(),
            CpuAccounting {
                user_ns: 200_000,
                system_ns: 50_000,
                periods: 9,
                throttled_periods: 2,
                throttled_ns: 7_000,
            }
        );
        let m = cg.memory_stat("t1", Some("web")).unwrap();
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![("anon".to_owned(), 1024), ("file".to_owned(), 2048)]
        );
        assert!(matches!(
            cg.memory_stat("t1", Some("gone")),
            Err(CgroupError::NotFound { .. })
        ));
    }
}
