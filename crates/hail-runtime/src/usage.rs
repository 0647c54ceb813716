//! Readings of what a task uses beyond its cgroups: the host's CPU time (the
//! yardstick Docker's stats measure a container's CPU time against), the
//! counters of the task's network interfaces, and the disk its containers'
//! writable layers take. Each reader has a pure parser beside it.

use std::fs;
use std::io;
use std::path::Path;

/// Nanoseconds per tick of `USER_HZ`, the unit of `/proc/stat`; 100 ticks a
/// second on every architecture Hail runs on (x86_64, aarch64).
const NS_PER_USER_HZ_TICK: u64 = 10_000_000;

/// The host's CPU time, as Docker's stats report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCpu {
    /// CPU time of all CPUs since boot, busy and idle (Docker's
    /// `system_cpu_usage`: user, nice, system, idle, iowait, irq, softirq).
    pub total_ns: u64,
    /// CPUs online now.
    pub online_cpus: u32,
}

/// Reads `/proc/stat`.
pub fn host_cpu() -> io::Result<HostCpu> {
    let text = fs::read_to_string("/proc/stat")?;
    parse_proc_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/stat has no aggregate cpu line",
        )
    })
}

/// The aggregate `cpu` line and the count of `cpuN` lines (one per online
/// CPU) of a `/proc/stat` text.
pub fn parse_proc_stat(text: &str) -> Option<HostCpu> {
    let mut total = None;
    let mut online = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: Option<Vec<u64>> = fields.take(7).map(|f| f.parse().ok()).collect();
                let ticks = ticks.filter(|t| t.len() == 7)?;
                total = Some(
                    ticks
                        .iter()
                        .sum::<u64>()
                        .saturating_mul(NS_PER_USER_HZ_TICK),
                );
            }
            Some(name) if name.starts_with("cpu") => online += 1,
            _ => {}
        }
    }
    Some(HostCpu {
        total_ns: total?,
        online_cpus: online,
    })
}

/// The counters of one network interface, as Docker's stats name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The interfaces of the network namespace process `pid` lives in (for a
/// container: its task's), without loopback, read from `/proc/<pid>/net/dev`.
pub fn interface_counters(pid: i32) -> io::Result<Vec<InterfaceCounters>> {
    let path = format!("/proc/{pid}/net/dev");
    let text = fs::read_to_string(&path)?;
    parse_net_dev(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected content"),
        )
    })
}

/// Parses a `/proc/net/dev` text: two header lines, then one line per
/// interface, `name: ` and sixteen counters (eight received, eight sent).
/// Loopback is left out, as Docker leaves it out.
pub fn parse_net_dev(text: &str) -> Option<Vec<InterfaceCounters>> {
    let mut out = Vec::new();
    for line in text.lines().skip(2).filter(|l| !l.trim().is_empty()) {
        let (name, counters) = line.split_once(':')?;
        let name = name.trim();
        let v: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if v.len() < 16 {
            return None;
        }
        if name == "lo" {
            continue;
        }
        out.push(InterfaceCounters {
            name: name.to_owned(),
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_errors: v[2],
            rx_dropped: v[3],
            tx_bytes: v[8],
            tx_packets: v[9],
            tx_errors: v[10],
            tx_dropped: v[11],
        });
    }
    Some(out)
}

/// Bytes on disk in the writable layers (overlay upper dirs) of the
/// containers of the task whose directory is `task_dir` ([`crate::runtime::Runtime::task_dir`]):
/// what the task itself has written, the part of its ephemeral storage that
/// is not shared image layers. Counted like `du`, by allocated blocks, each
/// hard link once; symlinks are not followed. A task without containers
/// yet uses nothing.
pub fn writable_layer_bytes(task_dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;

    let containers = task_dir.join("containers");
    let entries = match fs::read_dir(&containers) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack: Vec<std::path::PathBuf> = Vec::new();
    for entry in entries {
        stack.push(entry?.path().join("upper"));
    }
    while let Some(path) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Files come and go while the task runs.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir() {
            match fs::read_dir(&path) {
                Ok(children) => {
                    for child in children {
                        stack.push(child?.path());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_total_time_and_online_cpus() {
        let text = "cpu  709010 0 200956 3550411 35070 0 4035 26582 0 0\n\
                    cpu0 340279 0 93089 1804205 11905 0 582 12472 0 0\n\
                    cpu1 368731 0 107866 1746206 23165 0 3453 14109 0 0\n\
                    intr 1 2 3\nctxt 99\n";
        let ticks: u64 = 709010 + 200956 + 3550411 + 35070 + 4035;
        assert_eq!(
            parse_proc_stat(text),
            Some(HostCpu {
                total_ns: ticks * 10_000_000,
                online_cpus: 2
            })
        );
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 2 3\n"), None);
        let host = host_cpu().unwrap();
        assert!(host.total_ns > 0 && host.online_cpus >= 1, "{host:?}");
    }

    #[test]
    fn net_dev_lines_become_counters_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0\n  \
            eth0:    5346      41    1    2    0     0          0         0     1712      18    3    4    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(text),
            Some(vec![InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 5346,
                rx_packets: 41,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 1712,
                tx_packets: 18,
                tx_errors: 3,
                tx_dropped: 4,
            }])
        );
        assert_eq!(parse_net_dev("h\nh\neth0: 1 2 3\n"), None);
        assert_eq!(parse_net_dev("h\nh\n"), Some(vec![]));
        // This process's own namespace reads and parses.
        interface_counters(std::process::id() as i32).unwrap();
    }

    #[test]
    fn writable_layers_count_upper_dirs_only_and_links_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(writable_layer_bytes(dir.path()).unwrap(), 0);
        let upper = dir.path().join("containers/web/upper");
        fs::create_dir_all(upper.join("var/data")).unwrap();
        fs::create_dir_all(dir.path().join("containers/web/rootfs")).unwrap();
        let empty = writable_layer_bytes(dir.path()).unwrap();
        fs::write(upper.join("var/data/blob"), vec![7u8; 64 * 1024]).unwrap();
        fs::hard_link(upper.join("var/data/blob"), upper.join("again")).unwrap();
        std::os::unix::fs::symlink("/usr", upper.join("usr")).unwrap();
        // Outside the upper dir: not the task's writes.
        fs::write(
            dir.path().join("containers/web/rootfs/big"),
            vec![1u8; 256 * 1024],
        )
        .unwrap();
        let used = writable_layer_bytes(dir.path()).unwrap();
        assert!(
            (64 * 1024..128 * 1024).contains(&(used - empty)),
            "{used} - {empty}"
        );
    }
}
