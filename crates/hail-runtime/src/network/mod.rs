//! Task networks: ECS "awsvpc" on one host.
//!
//! Each task gets its own network namespace (shared by its containers) with
//! `lo`, and an `eth0` that is the peer of a host veth enslaved to Hail's
//! bridge; an address from the engine's subnet, a default route via the
//! bridge (the gateway), outbound NAT through the host. The bridge also holds
//! the ECS agent address 169.254.170.2, so tasks reach the engine there as on
//! ECS.
//!
//! Measured (2-core VM, Debian 12, kernel 6.1, ext4 state dir, other test
//! suites running at the same time; printed by `tests/network.rs`,
//! `attach_latency_from_pool_and_without`):
//! - `attach` from the pool: median 0.15-0.27 ms (min 0.12 ms). It is a
//!   hand-over of the lease record, nothing else (see [`ipam`] for why it
//!   is not fsynced: with two fsyncs it measured 3.7-8 ms);
//! - `attach` creating the namespace (netns + veth on the bridge + address +
//!   default route, no pool): median 10-28 ms (min 5 ms);
//! - one ADD of the CNI `bridge` plugin (`/usr/lib/cni/bridge`, host-local
//!   IPAM) into a namespace that already exists: median 30-74 ms (min
//!   18 ms), before the `loopback` plugin call and the namespace creation
//!   that a CNI runtime adds on top.
//!
//! Why netlink directly rather than the CNI plugins: it is several times
//! faster (no process per plugin, no JSON round trip, one rtnetlink request
//! creates the veth pair already on the bridge, up and with its peer inside
//! the namespace), failures are typed (an errno per request) instead of a
//! plugin's JSON error to parse, it needs no plugin binaries on the host,
//! and it makes the pool possible: a namespace configured ahead of time is
//! handed to a task in a fraction of a millisecond.
//!
//! Durability: every namespace has a lease file (see [`ipam`]) written before
//! the namespace exists, so after a crash [`Networks::gc`] finds everything
//! to remove; [`Networks::lookup`] answers from those files after a restart.

pub mod bridge;
pub mod ipam;
pub mod nat;
pub mod netns;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, RwLock};

use ipam::{Lease, Leases, LEASE_VERSION};

/// Where and how Hail builds task networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Name of the host bridge (at most 15 bytes, a Linux limit).
    pub bridge: String,
    /// Task subnet; the gateway is its first host address, on the bridge.
    pub subnet: Ipv4Net,
    /// Directory of durable state (leases), e.g. `<data dir>/network`.
    pub state_dir: PathBuf,
    /// Task namespaces are `/run/netns/<netns_prefix><id>`.
    pub netns_prefix: String,
    /// How many fully configured namespaces to keep ready for `attach`.
    pub pool_size: usize,
}

impl NetworkConfig {
    /// The defaults with state kept under `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            bridge: "hail0".to_owned(),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 217, 0, 0), 16).unwrap_or_default(),
            state_dir,
            netns_prefix: "hail-".to_owned(),
            pool_size: 8,
        }
    }

    fn validate(&self) -> Result<Ipv4Addr, NetworkError> {
        let invalid = |reason: String| Err(NetworkError::InvalidConfig { reason });
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains('/') {
            return invalid(format!(
                "bridge name {:?} must be 1 to 15 bytes without '/'",
                self.bridge
            ));
        }
        if self.subnet.prefix_len() > 30 {
            return invalid(format!(
                "subnet {} leaves no room for a gateway and a task",
                self.subnet
            ));
        }
        if self.netns_prefix.is_empty()
            || self.netns_prefix.contains('/')
            || self.netns_prefix.len() > 200
        {
            return invalid(format!(
                "netns prefix {:?} must be 1 to 200 bytes without '/'",
                self.netns_prefix
            ));
        }
        Ok(Ipv4Addr::from(u32::from(self.subnet.network()) + 1))
    }
}

/// A task's network as the container runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    pub task_id: String,
    /// Bind mount of the namespace, for the OCI spec's network namespace path.
    pub netns_path: PathBuf,
    /// `None` for an isolated namespace (network mode "none").
    pub ip: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: Option<String>,
    /// Host end of the task's veth pair.
    pub host_veth: Option<String>,
}

impl TaskNetwork {
    fn from_lease(task_id: &str, lease: &Lease) -> Self {
        Self {
            task_id: task_id.to_owned(),
            netns_path: netns::path_of(&lease.netns),
            ip: lease.ip,
            prefix_len: lease.prefix_len,
            gateway: lease.gateway,
            mac: lease.mac.clone(),
            host_veth: lease.host_veth.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("netlink: {op}: {message}")]
    Netlink { op: String, message: String },
    #[error("iptables {args}: {stderr}")]
    Iptables { args: String, stderr: String },
    #[error("subnet {subnet} has no free address")]
    SubnetExhausted { subnet: Ipv4Net },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("netns {name}: {op}: {source}")]
    Netns {
        name: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("network config: {reason}")]
    InvalidConfig { reason: String },
    #[error("task {task_id} already has a network of another kind")]
    AlreadyAttached { task_id: String },
    #[error("{op}: worker thread ended without an answer")]
    Worker { op: String },
    #[error("network {bridge} has been torn down")]
    TornDown { bridge: String },
}

/// Hail's task networks on this host. Cheap to clone; clones share state.
///
/// The host-side netlink connection and the pool filler run on the tokio
/// runtime that called [`Networks::open`], so the instance must be used while
/// that runtime lives (the server's runtime, or one test's).
#[derive(Clone)]
pub struct Networks {
    inner: Arc<Inner>,
}

struct Inner {
    config: NetworkConfig,
    gateway: Ipv4Addr,
    host: rtnetlink::Handle,
    bridge_index: u32,
    leases: Leases,
    /// Marks pooled leases as made by this instance (see [`Lease::pool_owner`]).
    instance: String,
    boot_id: String,
    state: Mutex<State>,
    /// Creations and releases hold it shared; `gc` holds it exclusively so
    /// that it never mistakes a namespace being built for an orphan.
    ops: RwLock<()>,
    refill: Arc<Notify>,
    closed: AtomicBool,
    /// No more refills: set by [`Networks::drain_pool`] and by teardown.
    pool_closed: AtomicBool,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, Lease>,
    pool: VecDeque<Lease>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Wakes the pool filler so it sees the instance is gone and stops.
        self.refill.notify_one();
    }
}

fn random_hex(bytes: usize) -> Result<String, NetworkError> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| NetworkError::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(hex::encode(buf))
}

/// Identifies this boot of the machine; leases of another boot describe
/// namespaces that no longer exist.
fn current_boot_id() -> Result<String, NetworkError> {
    let path = "/proc/sys/kernel/random/boot_id";
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| NetworkError::Io {
            path: path.into(),
            source,
        })
}

/// Runs blocking file work (fsyncs) off the async workers.
async fn blocking<T: Send + 'static>(
    op: &str,
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| NetworkError::Worker { op: op.to_owned() })?
}

impl Networks {
    /// Sets up the host side (idempotently) and starts filling the pool.
    pub async fn open(config: NetworkConfig) -> Result<Self, NetworkError> {
        let gateway = config.validate()?;
        let leases = Leases::open(config.state_dir.join("leases"), config.subnet, gateway)?;
        netns::prepare_dir()?;
        let host = bridge::connect("open host netlink")?;
        let bridge_index =
            bridge::ensure_bridge(&host, &config.bridge, gateway, config.subnet.prefix_len())
                .await?;
        nat::enable_forwarding()?;
        nat::install(&config.bridge, config.subnet).await?;

        let mut state = State::default();
        let boot_id = current_boot_id()?;
        let (loaded, unreadable) = leases.load_all()?;
        for path in unreadable {
            tracing::warn!(lease = %path.display(), "unreadable network lease, left for gc");
        }
        for lease in loaded {
            // Pooled leases of an earlier process, and leases of an earlier
            // boot (whose namespaces are gone), are left for `gc`.
            if lease.boot_id.as_deref() != Some(boot_id.as_str()) {
                continue;
            }
            if let Some(task_id) = lease.task_id.clone() {
                state.tasks.insert(task_id, lease);
            }
        }
        let inner = Arc::new(Inner {
            gateway,
            host,
            bridge_index,
            leases,
            instance: random_hex(8)?,
            boot_id,
            state: Mutex::new(state),
            ops: RwLock::new(()),
            refill: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            pool_closed: AtomicBool::new(false),
            config,
        });
        if inner.config.pool_size > 0 {
            tokio::spawn(fill_pool(Arc::downgrade(&inner), inner.refill.clone()));
        }
        Ok(Self { inner })
    }

    /// The configuration this instance was opened with.
    pub fn config(&self) -> &NetworkConfig {
        &self.inner.config
    }

    /// The gateway address (first host address of the subnet, on the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        self.inner.gateway
    }

    /// Tops the pool up: for when a task's start is over (see [`Networks::attach`]).
    pub fn replenish_pool(&self) {
        self.inner.refill.notify_one();
    }

    /// How many ready namespaces wait in the pool now.
    pub fn pooled(&self) -> usize {
        self.inner.lock_state().pool.len()
    }

    /// Gives the task an awsvpc network. Idempotent: a task that already has
    /// one gets it back.
    pub async fn attach(&self, task_id: &str) -> Result<TaskNetwork, NetworkError> {
        let inner = &self.inner;
        let _op = inner.ops.read().await;
        inner.check_open()?;
        let pooled = {
            let mut state = inner.lock_state();
            if let Some(existing) = state.tasks.get(task_id) {
                return existing_of_kind(task_id, existing, true);
            }
            state.pool.pop_front().map(|mut lease| {
                lease.task_id = Some(task_id.to_owned());
                lease.pool_owner = None;
                state.tasks.insert(task_id.to_owned(), lease.clone());
                (lease, state.pool.len())
            })
        };
        if let Some((lease, left)) = pooled {
            // Refilled now only when running low; otherwise when the task's
            // start is over (`replenish_pool`): making a namespace costs about
            // what a container start does, and on a small host the two would
            // share the CPU.
            if left <= inner.config.pool_size / 2 {
                inner.refill.notify_one();
            }
            // Not fsynced and small, so done inline: see `ipam` for why a
            // write visible in the page cache is durable enough here.
            if let Err(e) = inner.leases.hand_over(&lease) {
                inner.lock_state().tasks.remove(task_id);
                let _ = inner.destroy(&lease).await;
                return Err(e);
            }
            return Ok(TaskNetwork::from_lease(task_id, &lease));
        }
        let lease = inner.create(Some(task_id), true).await?;
        inner.adopt(task_id, lease, true).await
    }

    /// Gives the task a namespace with only `lo` (network mode "none", still
    /// shared by the task's containers). Idempotent like [`Networks::attach`].
    pub async fn attach_isolated(&self, task_id: &str) -> Result<TaskNetwork, NetworkError> {
        let inner = &self.inner;
        let _op = inner.ops.read().await;
        inner.check_open()?;
        if let Some(existing) = inner.lock_state().tasks.get(task_id) {
            return existing_of_kind(task_id, existing, false);
        }
        let lease = inner.create(Some(task_id), false).await?;
        inner.adopt(task_id, lease, false).await
    }

    /// The task's network, from the lease files (loaded at open, so this
    /// survives a restart of the process).
    pub fn lookup(&self, task_id: &str) -> Option<TaskNetwork> {
        self.inner
            .lock_state()
            .tasks
            .get(task_id)
            .map(|lease| TaskNetwork::from_lease(task_id, lease))
    }

    /// Removes the task's veth, namespace and lease. Idempotent.
    pub async fn release(&self, task_id: &str) -> Result<(), NetworkError> {
        let inner = &self.inner;
        let _op = inner.ops.read().await;
        let Some(lease) = inner.lock_state().tasks.remove(task_id) else {
            return Ok(());
        };
        if let Err(e) = inner.destroy(&lease).await {
            // Keep the record so a retry (or gc) finishes the job.
            inner.lock_state().tasks.insert(task_id.to_owned(), lease);
            return Err(e);
        }
        Ok(())
    }

    /// After a crash: releases every lease, namespace with this instance's
    /// prefix and port of the bridge that belongs neither to a task in
    /// `live_task_ids` nor to this instance's pool. Returns how many things
    /// it removed.
    pub async fn gc(&self, live_task_ids: &HashSet<String>) -> Result<usize, NetworkError> {
        let inner = &self.inner;
        let _op = inner.ops.write().await;
        let mut removed = 0;
        let mut kept_netns = HashSet::new();
        let mut kept_veths = HashSet::new();
        let (leases, unreadable) = {
            let store = inner.clone();
            blocking("load leases", move || store.leases.load_all()).await?
        };
        for path in unreadable {
            inner.leases.remove_unreadable(&path)?;
            removed += 1;
        }
        for lease in leases {
            let this_boot = lease.boot_id.as_deref() == Some(inner.boot_id.as_str());
            let keep = this_boot
                && match &lease.task_id {
                    Some(task) => live_task_ids.contains(task),
                    None => lease.pool_owner.as_deref() == Some(inner.instance.as_str()),
                };
            if keep {
                kept_netns.insert(lease.netns.clone());
                kept_veths.extend(lease.host_veth.clone());
                continue;
            }
            {
                let mut state = inner.lock_state();
                if let Some(task) = &lease.task_id {
                    state.tasks.remove(task);
                }
            }
            inner.destroy(&lease).await?;
            removed += 1;
        }
        for name in netns::list(&inner.config.netns_prefix)? {
            if !kept_netns.contains(&name) {
                netns::remove(&name)?;
                removed += 1;
            }
        }
        for port in bridge::ports_of(&inner.host, inner.bridge_index).await? {
            if !kept_veths.contains(&port) {
                bridge::delete_link(&inner.host, &port).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Destroys the namespaces waiting in the pool and stops refilling it;
    /// the bridge, NAT and attached tasks are left alone and later attaches
    /// create their namespace on the spot. For a graceful shutdown: no
    /// namespace is left waiting for a task while no Hail runs.
    pub async fn drain_pool(&self) -> Result<(), NetworkError> {
        let inner = &self.inner;
        inner.pool_closed.store(true, Ordering::SeqCst);
        inner.refill.notify_one();
        // Waits for a creation in flight, which then lands in the pool.
        let _op = inner.ops.write().await;
        let pooled: Vec<Lease> = inner.lock_state().pool.drain(..).collect();
        for lease in pooled {
            inner.destroy(&lease).await?;
        }
        Ok(())
    }

    /// Removes the bridge and Hail's iptables chains, after emptying the pool
    /// (pooled namespaces are useless without the bridge). Tasks still
    /// attached keep their namespaces until released. The instance accepts
    /// no more attaches afterwards.
    pub async fn teardown_host(&self) -> Result<(), NetworkError> {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        self.drain_pool().await?;
        bridge::delete_link(&inner.host, &inner.config.bridge).await?;
        nat::uninstall(&inner.config.bridge).await
    }
}

fn existing_of_kind(
    task_id: &str,
    existing: &Lease,
    want_ip: bool,
) -> Result<TaskNetwork, NetworkError> {
    if existing.ip.is_some() == want_ip {
        Ok(TaskNetwork::from_lease(task_id, existing))
    } else {
        Err(NetworkError::AlreadyAttached {
            task_id: task_id.to_owned(),
        })
    }
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_open(&self) -> Result<(), NetworkError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(NetworkError::TornDown {
                bridge: self.config.bridge.clone(),
            })
        } else {
            Ok(())
        }
    }

    /// Records a freshly created namespace as the task's, unless a
    /// concurrent call for the same task won the race.
    async fn adopt(
        self: &Arc<Self>,
        task_id: &str,
        lease: Lease,
        want_ip: bool,
    ) -> Result<TaskNetwork, NetworkError> {
        let winner = {
            let mut state = self.lock_state();
            match state.tasks.get(task_id) {
                Some(existing) => Some(existing.clone()),
                None => {
                    state.tasks.insert(task_id.to_owned(), lease.clone());
                    None
                }
            }
        };
        match winner {
            None => Ok(TaskNetwork::from_lease(task_id, &lease)),
            Some(existing) => {
                self.destroy(&lease).await?;
                existing_of_kind(task_id, &existing, want_ip)
            }
        }
    }

    /// Builds a namespace: the lease first (durably), then the namespace.
    /// `task_id` `None` makes a pool entry.
    async fn create(
        self: &Arc<Self>,
        task_id: Option<&str>,
        with_ip: bool,
    ) -> Result<Lease, NetworkError> {
        let id = random_hex(6)?;
        let netns_name = format!("{}{id}", self.config.netns_prefix);
        let template = Lease {
            version: LEASE_VERSION,
            task_id: task_id.map(str::to_owned),
            pool_owner: task_id.is_none().then(|| self.instance.clone()),
            netns: netns_name.clone(),
            ip: None,
            prefix_len: 0,
            gateway: None,
            mac: None,
            host_veth: None,
            boot_id: Some(self.boot_id.clone()),
        };
        let this = self.clone();
        let lease = if with_ip {
            let host_veth = format!("hv{id}");
            let (prefix_len, gateway) = (self.config.subnet.prefix_len(), self.gateway);
            blocking("reserve address", move || {
                this.leases.reserve(|ip| Lease {
                    ip: Some(ip),
                    prefix_len,
                    gateway: Some(gateway),
                    mac: Some(bridge::mac_string(bridge::mac_for(ip))),
                    host_veth: Some(host_veth.clone()),
                    ..template.clone()
                })
            })
            .await?
        } else {
            let record = template.clone();
            blocking("write lease", move || {
                this.leases.create_exclusive(&record).map(|_| record)
            })
            .await?
        };

        let eth0 = lease
            .ip
            .zip(lease.host_veth.clone())
            .map(|(ip, host_veth)| bridge::Eth0 {
                host_veth,
                bridge_index: self.bridge_index,
                ip,
                prefix_len: lease.prefix_len,
                gateway: self.gateway,
            });
        let needs_host = eth0.is_some();
        let built = netns::create(
            &netns_name,
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(|source| NetworkError::Io {
                        path: "tokio runtime".into(),
                        source,
                    })?;
                // Opened before the thread leaves the host namespace, so it
                // stays bound to the host namespace.
                let host = if needs_host {
                    Some(rt.block_on(async { bridge::connect("host netlink") })?)
                } else {
                    None
                };
                Ok((rt, host))
            },
            move |(rt, host)| {
                rt.block_on(async move {
                    let ns = bridge::connect("task netlink")?;
                    bridge::loopback_up(&ns).await?;
                    if let (Some(host), Some(eth0)) = (host, eth0) {
                        bridge::plug(&host, &ns, &eth0).await?;
                    }
                    Ok(())
                })
            },
        )
        .await;
        if let Err(e) = built {
            let _ = self.destroy(&lease).await;
            return Err(e);
        }
        Ok(lease)
    }

    /// Removes what a lease names: veth, namespace, then the lease itself
    /// (last, so an interrupted removal is finished by `gc`). Idempotent.
    async fn destroy(self: &Arc<Self>, lease: &Lease) -> Result<(), NetworkError> {
        if let Some(veth) = &lease.host_veth {
            bridge::delete_link(&self.host, veth).await?;
        }
        netns::remove(&lease.netns)?;
        let this = self.clone();
        let record = lease.clone();
        blocking("remove lease", move || this.leases.remove(&record)).await
    }
}

/// Keeps `pool_size` namespaces ready. Holds only a weak reference between
/// rounds so dropping the last [`Networks`] ends it.
async fn fill_pool(weak: Weak<Inner>, refill: Arc<Notify>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.pool_closed.load(Ordering::SeqCst) {
            return;
        }
        let made = {
            let _op = inner.ops.read().await;
            if inner.pool_closed.load(Ordering::SeqCst) {
                return;
            }
            if inner.lock_state().pool.len() >= inner.config.pool_size {
                None
            } else {
                // Pushed while still holding `ops`, so `teardown_host` (which
                // drains the pool under the exclusive lock) never misses it.
                Some(
                    inner
                        .create(None, true)
                        .await
                        .map(|lease| inner.lock_state().pool.push_back(lease)),
                )
            }
        };
        match made {
            None => {
                drop(inner);
                refill.notified().await;
            }
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::warn!(bridge = %inner.config.bridge, error = %e, "cannot fill the network pool");
                drop(inner);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Networks>();
    }

    #[test]
    fn config_is_checked_before_touching_the_host() {
        let ok = NetworkConfig::new("/nonexistent".into());
        assert_eq!(ok.validate().unwrap(), Ipv4Addr::new(10, 217, 0, 1));
        let long = NetworkConfig {
            bridge: "a-bridge-name-too-long".into(),
            ..ok.clone()
        };
        let err = long.validate().unwrap_err().to_string();
        assert!(err.contains("a-bridge-name-too-long"), "{err}");
        let tiny = NetworkConfig {
            subnet: "10.0.0.0/31".parse().unwrap(),
            ..ok.clone()
        };
        assert!(tiny.validate().is_err());
        let slash = NetworkConfig {
            netns_prefix: "a/b".into(),
            ..ok
        };
        assert!(slash.validate().is_err());
    }
}
