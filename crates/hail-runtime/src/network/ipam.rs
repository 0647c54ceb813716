//! Durable leases: one file per task namespace under `<state_dir>/leases`.
//!
//! A lease holding an address is named after it (`10.217.0.5.json`), and is
//! created with link(2), which fails if the name exists: the file appears
//! atomically with its full content, and two processes can never hold the
//! same address. An isolated namespace (no address) has a lease named after
//! the namespace. Every namespace Hail creates has its lease written *before*
//! the namespace, so after a crash the leases name everything to clean up.
//!
//! Leases must survive a crash of the *process*, which the page cache already
//! guarantees once a write is visible (rename and link are atomic), but they
//! need not survive a crash of the *machine*: everything a lease describes
//! (namespaces bind-mounted on tmpfs, veths) is kernel state that a reboot
//! wipes too. So a lease records the boot it belongs to, leases of another
//! boot are stale by definition, and the hand-over of a pooled namespace to a
//! task is not fsynced: that keeps `attach` from the pool well under a
//! millisecond instead of paying two fsyncs (several ms on a virtual disk).
//! Only the reservation of an address, done ahead of time by the pool
//! filler, is fsynced. The hand-over is written as a second file beside the
//! lease (`10.217.0.5.task`, the full record, which wins over the `.json`)
//! rather than by renaming over the lease: ext4 flushes data on a rename
//! that replaces a file (`auto_da_alloc`), which measured 1.3-1.7 ms here
//! against about 0.1 ms for a rename to a new name.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::NetworkError;
use crate::durable;

/// Version of the lease file format.
pub const LEASE_VERSION: u32 = 1;

/// What a lease file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub version: u32,
    /// The task using the namespace; `None` while it waits in the pool.
    pub task_id: Option<String>,
    /// For pooled namespaces: the id of the `Networks` instance that made
    /// them, so a later process knows they are stale.
    pub pool_owner: Option<String>,
    /// Name of the namespace in `/run/netns`.
    pub netns: String,
    pub ip: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub host_veth: Option<String>,
    /// `/proc/sys/kernel/random/boot_id` of the boot that made the lease.
    #[serde(default)]
    pub boot_id: Option<String>,
}

impl Lease {
    fn file_stem(&self) -> String {
        match self.ip {
            Some(ip) => ip.to_string(),
            None => format!("isolated-{}", self.netns),
        }
    }

    /// Name of the lease file, which reserves the address.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.file_stem())
    }

    /// Name of the hand-over file of a pooled lease given to a task.
    pub fn handover_name(&self) -> String {
        format!("{}.task", self.file_stem())
    }
}

/// The lease directory plus this process's view of which addresses it holds
/// (a hint to skip taken addresses quickly; the files are the truth).
pub struct Leases {
    dir: PathBuf,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    alloc: Mutex<Alloc>,
}

struct Alloc {
    /// Offset (from the network address) where the next search starts, so
    /// a released address is not handed out again at once.
    cursor: u32,
    held: HashSet<Ipv4Addr>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Leases {
    pub fn open(dir: PathBuf, subnet: Ipv4Net, gateway: Ipv4Addr) -> Result<Self, NetworkError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self {
            dir,
            subnet,
            gateway,
            alloc: Mutex::new(Alloc {
                cursor: 0,
                held: HashSet::new(),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, lease: &Lease) -> PathBuf {
        self.dir.join(lease.file_name())
    }

    /// Picks a free address and durably records `make(address)` for it.
    pub fn reserve(&self, make: impl Fn(Ipv4Addr) -> Lease) -> Result<Lease, NetworkError> {
        let base = u32::from(self.subnet.network());
        // Host offsets 1..=hosts; offset 0 is the network address and the
        // broadcast address is excluded by the bound.
        let hosts = (1u32 << (32 - self.subnet.prefix_len())).saturating_sub(2);
        let start = self.lock_alloc().cursor;
        for step in 0..hosts {
            let offset = (start + step) % hosts + 1;
            let ip = Ipv4Addr::from(base + offset);
            if ip == self.gateway || self.lock_alloc().held.contains(&ip) {
                continue;
            }
            let lease = make(ip);
            if self.create_exclusive(&lease)? {
                let mut alloc = self.lock_alloc();
                alloc.held.insert(ip);
                alloc.cursor = offset % hosts;
                return Ok(lease);
            }
            // Held by a lease this process did not make; not remembered in
            // `held`, since its owner may free it at any time.
        }
        Err(NetworkError::SubnetExhausted {
            subnet: self.subnet,
        })
    }

    fn lock_alloc(&self) -> std::sync::MutexGuard<'_, Alloc> {
        self.alloc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `lease` under its name unless that name exists; `Ok(false)`
    /// when it does.
    pub fn create_exclusive(&self, lease: &Lease) -> Result<bool, NetworkError> {
        let path = self.path_of(lease);
        let tmp = durable::temp_path_for(&path);
        let bytes = serde_json::to_vec_pretty(lease).map_err(|e| NetworkError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::hard_link(&tmp, &path)
        })();
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                durable::fsync_dir(&self.dir).map_err(io_err(&self.dir))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(NetworkError::Io { path, source }),
        }
    }

    /// Records `lease` (a pooled lease now given to a task) atomically in its
    /// hand-over file, without fsync (see the module comment for why).
    pub fn hand_over(&self, lease: &Lease) -> Result<(), NetworkError> {
        let path = self.dir.join(lease.handover_name());
        let tmp = durable::temp_path_for(&path);
        let written = serde_json::to_vec_pretty(lease)
            .map_err(io::Error::other)
            .and_then(|bytes| fs::write(&tmp, bytes))
            .and_then(|()| fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(io_err(&path))
    }

    /// Removes a lease (hand-over file first, so an interrupted removal
    /// leaves a plain lease, never a dangling hand-over); absent is fine.
    pub fn remove(&self, lease: &Lease) -> Result<(), NetworkError> {
        for path in [self.dir.join(lease.handover_name()), self.path_of(lease)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(NetworkError::Io { path, source }),
            }
        }
        if let Some(ip) = lease.ip {
            self.lock_alloc().held.remove(&ip);
        }
        durable::fsync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// All leases on disk, and the files that cannot be parsed (only a
    /// machine crash tears a lease; its address stays reserved until `gc`
    /// removes the file). Leftover temporary files are deleted.
    pub fn load_all(&self) -> Result<(Vec<Lease>, Vec<PathBuf>), NetworkError> {
        let mut leases = Vec::new();
        let mut unreadable = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if durable::is_temp_name(&name) {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            if let Some(stem) = name.strip_suffix(".task") {
                // Read together with its lease below; alone it is debris.
                if !self.dir.join(format!("{stem}.json")).exists() {
                    unreadable.push(path);
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let handover = self.dir.join(format!("{stem}.task"));
            let record = if handover.exists() { handover } else { path };
            match durable::read_json::<Lease>(&record) {
                Ok(Some(lease)) => {
                    if let Some(ip) = lease.ip {
                        self.lock_alloc().held.insert(ip);
                    }
                    leases.push(lease);
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => unreadable.push(record),
                Err(source) => {
                    return Err(NetworkError::Io {
                        path: record,
                        source,
                    })
                }
            }
        }
        Ok((leases, unreadable))
    }

    /// Removes a lease file that could not be parsed.
    pub fn remove_unreadable(&self, path: &Path) -> Result<(), NetworkError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetworkError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: Ipv4Addr) -> Lease {
        Lease {
            version: LEASE_VERSION,
            task_id: None,
            pool_owner: Some("me".into()),
            netns: format!("ns-{ip}"),
            ip: Some(ip),
            prefix_len: 29,
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            mac: None,
            host_veth: None,
            boot_id: None,
        }
    }

    #[test]
    fn hands_out_each_host_address_once_then_reports_exhaustion() {
        let dir = tempfile::tempdir().unwrap();
        let subnet: Ipv4Net = "10.9.0.0/29".parse().unwrap();
        let gw = Ipv4Addr::new(10, 9, 0, 1);
        let leases = Leases::open(dir.path().join("leases"), subnet, gw).unwrap();
        let mut got: Vec<Ipv4Addr> = (0..5)
            .map(|_| leases.reserve(lease).unwrap().ip.unwrap())
            .collect();
        got.sort();
        let want: Vec<Ipv4Addr> = (2..=6).map(|d| Ipv4Addr::new(10, 9, 0, d)).collect();
        assert_eq!(got, want);
        assert!(matches!(
            leases.reserve(lease),
            Err(NetworkError::SubnetExhausted { .. })
        ));

        // A second instance over the same directory (another process) sees
        // every address taken through the files alone.
        let other = Leases::open(dir.path().join("leases"), subnet, gw).unwrap();
        assert!(other.reserve(lease).is_err());

        let freed = lease(Ipv4Addr::new(10, 9, 0, 4));
        leases.remove(&freed).unwrap();
        assert_eq!(
            other.reserve(lease).unwrap().ip,
            Some(Ipv4Addr::new(10, 9, 0, 4))
        );
        assert_eq!(other.load_all().unwrap().0.len(), 5);
    }

    #[test]
    fn hand_over_changes_the_owner_and_remove_clears_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let subnet: Ipv4Net = "10.9.0.0/24".parse().unwrap();
        let leases =
            Leases::open(dir.path().to_owned(), subnet, Ipv4Addr::new(10, 9, 0, 1)).unwrap();
        let mut l = leases.reserve(lease).unwrap();
        l.task_id = Some("t1".into());
        l.pool_owner = None;
        leases.hand_over(&l).unwrap();
        assert_eq!(leases.load_all().unwrap(), (vec![l.clone()], vec![]));
        leases.remove(&l).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // A torn file (machine crash) is reported, not fatal.
        std::fs::write(dir.path().join("10.9.0.9.json"), b"{\"vers").unwrap();
        let (_, unreadable) = leases.load_all().unwrap();
        assert_eq!(unreadable, vec![dir.path().join("10.9.0.9.json")]);
    }
}
