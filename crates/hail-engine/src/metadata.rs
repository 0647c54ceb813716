//! The answers of the ECS task metadata endpoint (v4), as Fargate gives them.
//!
//! [`TaskMetadataService`] implements [`hail_api::TaskMetadataSource`]: for
//! each request it reads the task document and its task definition from the
//! store, authorises the caller by address, reads what the runtime observes
//! (container start and finish times, pids, the network lease, image ids,
//! cgroup usage) and maps all of it to ECS's JSON shapes. Answering never
//! changes anything: it writes nothing to the store and only asks the
//! runtime, which it never tells to stop or settle a task. The mapping is in
//! plain functions over a [`TaskView`] ([`container_metadata`],
//! [`task_metadata`], [`docker_stats`]) so it is tested without a runtime.
//!
//! Authorisation: a task's address is the private IPv4 address of its ENI
//! attachment, and only while the runtime still holds the network lease of
//! that task with that address. After a task stops its address returns to
//! the pool; the lease check keeps the next task given that address from
//! reading the stopped task's metadata through a stale document.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hail_api::metadata::{MetadataError, MetadataId, PeerPolicy, TaskMetadataSource};
use hail_model::arn::{EcsArn, EcsResource};
use hail_model::ecs::task::{Container, ContainerStatus, HealthStatus};
use hail_model::ecs::task_definition::ContainerDefinition;
use hail_model::ecs::{Tag, Task, TaskDefinition, TaskStatus, Timestamp};
use hail_runtime::cgroup::accounting::CpuAccounting;
use hail_runtime::cgroup::{CgroupStats, Cgroups};
use hail_runtime::network::TaskNetwork;
use hail_runtime::runtime::Runtime;
use hail_runtime::task::{ContainerPhase, TaskStatus as ObservedTask};
use hail_runtime::usage::{self, HostCpu, InterfaceCounters};
use hail_store::{Store, StoreError};

use crate::identity::{CredentialsError, Identity};
use serde_json::{json, Map, Value};

/// Fargate's ephemeral storage when the task asks for no size: 20 GiB.
const DEFAULT_EPHEMERAL_STORAGE_GIB: u32 = 20;
/// Earlier stats readings older than this are forgotten: a container whose
/// stats nobody asked for in that long gets a fresh start, and the readings
/// of stopped containers do not pile up.
const PREVIOUS_READING_TTL: Duration = Duration::from_secs(600);
const MIB: u64 = 1024 * 1024;

/// Everything known about one task when a request is answered.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// The task id (the last segment of its ARN).
    pub task_id: String,
    /// The task document, as DescribeTasks returns it.
    pub task: Task,
    /// The revision the task runs, when it is still registered.
    pub definition: Option<TaskDefinition>,
    /// What the runtime observes of the task, when it knows the task.
    pub observed: Option<ObservedTask>,
    /// The task's network lease, while it holds one.
    pub network: Option<TaskNetwork>,
    /// Image ids (config digests, `sha256:…`) by container name, for the
    /// images the runtime's image store has.
    pub image_ids: HashMap<String, String>,
}

impl TaskView {
    fn definition_of(&self, container: &str) -> Option<&ContainerDefinition> {
        self.definition
            .as_ref()?
            .container_definitions
            .iter()
            .find(|c| c.name() == container)
    }

    fn observed_of(&self, container: &str) -> Option<&hail_runtime::task::ContainerStatus> {
        self.observed.as_ref()?.container(container)
    }

    /// The task definition's family and revision, from the definition or,
    /// once it is gone, from the task's reference to it.
    fn family_revision(&self) -> Option<(String, u32)> {
        if let Some(def) = &self.definition {
            return Some((def.family.clone(), def.revision));
        }
        match EcsArn::parse(&self.task.task_definition_arn).ok()?.resource {
            EcsResource::TaskDefinition {
                family,
                revision: Some(revision),
            } => Some((family, revision)),
            _ => None,
        }
    }
}

/// The address the task's containers call from: its ENI's private IPv4
/// address (`privateIPv4Address`), or, lacking an ENI attachment, the first
/// address a container reports.
pub fn task_address(task: &Task) -> Option<IpAddr> {
    let eni = task
        .attachments
        .iter()
        .filter(|a| a.attachment_type == "ElasticNetworkInterface")
        .find_map(|a| a.detail("privateIPv4Address"));
    let from_container = || {
        task.containers
            .iter()
            .flat_map(|c| &c.network_interfaces)
            .find_map(|n| n.private_ipv4_address.as_deref())
    };
    eni.or_else(from_container)?.parse().ok()
}

/// The address whose caller may read the task's metadata: the address of
/// the task's network lease while the runtime holds one. Once the task's
/// address is recorded it must agree with the lease; before that (the
/// containers already run while the controller records their start) the
/// lease alone speaks, unless the task is recorded as stopped. None once the
/// lease is gone.
pub fn authorized_address(task: &Task, lease: Option<&TaskNetwork>) -> Option<IpAddr> {
    let held = IpAddr::V4(lease.and_then(|n| n.ip)?);
    match task_address(task) {
        Some(recorded) => (recorded == held).then_some(held),
        None if task.last_status != TaskStatus::Stopped => Some(held),
        None => None,
    }
}

/// The container's Docker id: the runtime's id of it, as DescribeTasks
/// reports it in `runtimeId`.
pub fn docker_id(task_id: &str, container: &Container) -> String {
    container
        .runtime_id
        .clone()
        .unwrap_or_else(|| hail_runtime::shim::runtime_container_id(task_id, &container.name))
}

/// `${ECS_CONTAINER_METADATA_URI_V4}`: one container.
pub fn container_metadata(view: &TaskView, container: &Container) -> Value {
    let task = &view.task;
    let def = view.definition_of(&container.name);
    let observed = view.observed_of(&container.name);
    let mut out = Map::new();
    out.insert(
        "DockerId".into(),
        docker_id(&view.task_id, container).into(),
    );
    out.insert("Name".into(), container.name.clone().into());
    // Fargate names the Docker container after the task's container.
    out.insert("DockerName".into(), container.name.clone().into());
    let image = container
        .image
        .clone()
        .or_else(|| def.and_then(|d| d.image.clone()));
    if let Some(image) = image {
        out.insert("Image".into(), image.into());
    }
    if let Some(id) = view.image_ids.get(&container.name) {
        out.insert("ImageID".into(), id.clone().into());
    }
    out.insert("Labels".into(), labels(view, container, def).into());
    let desired = if task.desired_status == TaskStatus::Stopped {
        "STOPPED"
    } else {
        "RUNNING"
    };
    out.insert("DesiredStatus".into(), desired.into());
    let known = match observed.map(|o| o.phase) {
        Some(ContainerPhase::Created) => "CREATED",
        Some(ContainerPhase::Running) => "RUNNING",
        Some(ContainerPhase::Stopped) => "STOPPED",
        None => match container.last_status {
            ContainerStatus::Pending => "PENDING",
            ContainerStatus::Running => "RUNNING",
            ContainerStatus::Stopped => "STOPPED",
        },
    };
    out.insert("KnownStatus".into(), known.into());
    let exit_code = observed
        .and_then(|o| o.exit.map(|e| e.code))
        .or(container.exit_code);
    if let Some(code) = exit_code {
        out.insert("ExitCode".into(), code.into());
    }
    out.insert("Limits".into(), container_limits(container, def));
    // `runc run` creates and starts a container in one step, so it was
    // created when it started (Fargate's answers show the two equal too).
    if let Some(started) = observed.and_then(|o| o.started_at.as_deref().and_then(rfc3339_of)) {
        out.insert("CreatedAt".into(), started.clone().into());
        out.insert("StartedAt".into(), started.into());
    }
    if let Some(finished) = observed.and_then(|o| o.finished_at.as_deref().and_then(rfc3339_of)) {
        out.insert("FinishedAt".into(), finished.into());
    }
    out.insert("Type".into(), "NORMAL".into());
    out.insert(
        "ContainerARN".into(),
        container.container_arn.clone().into(),
    );
    if let Some(log) = def.and_then(|d| d.log_configuration.as_ref()) {
        out.insert("LogDriver".into(), log.log_driver.clone().into());
        if let Some(options) = log_options(view, container, log) {
            out.insert("LogOptions".into(), options);
        }
    }
    if let Some(ports) = def.map(ports).filter(|p| !p.is_empty()) {
        out.insert("Ports".into(), ports.into());
    }
    if let Some(network) = networks(view) {
        out.insert("Networks".into(), json!([network]));
    }
    if def.is_some_and(|d| d.health_check.is_some()) {
        let status = match container.health_status {
            Some(HealthStatus::Healthy) => "HEALTHY",
            Some(HealthStatus::Unhealthy) => "UNHEALTHY",
            Some(HealthStatus::Unknown) | None => "UNKNOWN",
        };
        out.insert("Health".into(), json!({ "status": status }));
    }
    // Container roots are overlay mounts of the image's layers.
    out.insert("Snapshotter".into(), "overlayfs".into());
    Value::Object(out)
}

/// What the task's ephemeral storage holds and may hold, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EphemeralStorageUse {
    pub utilized_mib: u64,
    pub reserved_mib: u64,
}

/// `${ECS_CONTAINER_METADATA_URI_V4}/task`: the task and all its containers;
/// `TaskTags` when `tags` is given (`/taskWithTags`).
pub fn task_metadata(
    view: &TaskView,
    tags: Option<&[Tag]>,
    storage: Option<EphemeralStorageUse>,
) -> Value {
    let task = &view.task;
    let mut out = Map::new();
    out.insert("Cluster".into(), task.cluster_arn.clone().into());
    out.insert("TaskARN".into(), task.task_arn.clone().into());
    if let Some((family, revision)) = view.family_revision() {
        out.insert("Family".into(), family.into());
        out.insert("Revision".into(), revision.to_string().into());
    }
    out.insert("DesiredStatus".into(), task.desired_status.as_str().into());
    out.insert("KnownStatus".into(), task.last_status.as_str().into());
    let mut limits = Map::new();
    if let Some(units) = task.cpu.as_deref().and_then(|c| c.parse::<u32>().ok()) {
        limits.insert("CPU".into(), vcpus(units));
    }
    if let Some(mib) = task.memory.as_deref().and_then(|m| m.parse::<u32>().ok()) {
        limits.insert("Memory".into(), mib.into());
    }
    if !limits.is_empty() {
        out.insert("Limits".into(), Value::Object(limits));
    }
    for (key, at) in [
        ("PullStartedAt", task.pull_started_at),
        ("PullStoppedAt", task.pull_stopped_at),
        ("ExecutionStoppedAt", task.execution_stopped_at),
    ] {
        if let Some(at) = at.and_then(timestamp_rfc3339) {
            out.insert(key.into(), at.into());
        }
    }
    if let Some(az) = &task.availability_zone {
        out.insert("AvailabilityZone".into(), az.clone().into());
    }
    let launch_type = task.launch_type.map_or("FARGATE", |l| l.as_str());
    out.insert("LaunchType".into(), launch_type.into());
    if let Some(service) = task
        .group
        .as_deref()
        .and_then(|g| g.strip_prefix("service:"))
    {
        out.insert("ServiceName".into(), service.into());
    }
    let containers: Vec<Value> = task
        .containers
        .iter()
        .map(|c| container_metadata(view, c))
        .collect();
    out.insert("Containers".into(), containers.into());
    if let Some(tags) = tags {
        let map: Map<String, Value> = tags
            .iter()
            .filter_map(|t| Some((t.key.clone()?, t.value.clone().unwrap_or_default().into())))
            .collect();
        out.insert("TaskTags".into(), Value::Object(map));
    }
    if let Some(storage) = storage {
        out.insert(
            "EphemeralStorageMetrics".into(),
            json!({"Utilized": storage.utilized_mib, "Reserved": storage.reserved_mib}),
        );
    }
    Value::Object(out)
}

/// The ephemeral storage a task may use, in MiB: its own size, else its
/// definition's, else Fargate's default.
pub fn reserved_ephemeral_mib(view: &TaskView) -> u64 {
    let gib = view
        .task
        .ephemeral_storage
        .as_ref()
        .or_else(|| view.definition.as_ref()?.ephemeral_storage.as_ref())
        .map_or(DEFAULT_EPHEMERAL_STORAGE_GIB, |e| e.size_in_gib);
    u64::from(gib) * 1024
}

/// CPU units as ECS writes task limits: vCPUs, a whole number when whole.
fn vcpus(units: u32) -> Value {
    if units % 1024 == 0 {
        Value::from(units / 1024)
    } else {
        Value::from(f64::from(units) / 1024.0)
    }
}

/// The Docker labels of the container: its definition's, then the five
/// that ECS puts on every container.
fn labels(
    view: &TaskView,
    container: &Container,
    def: Option<&ContainerDefinition>,
) -> Map<String, Value> {
    let mut out: Map<String, Value> = def
        .and_then(|d| d.docker_labels.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    out.insert(
        "com.amazonaws.ecs.cluster".into(),
        view.task.cluster_arn.clone().into(),
    );
    out.insert(
        "com.amazonaws.ecs.container-name".into(),
        container.name.clone().into(),
    );
    out.insert(
        "com.amazonaws.ecs.task-arn".into(),
        view.task.task_arn.clone().into(),
    );
    if let Some((family, revision)) = view.family_revision() {
        out.insert(
            "com.amazonaws.ecs.task-definition-family".into(),
            family.into(),
        );
        out.insert(
            "com.amazonaws.ecs.task-definition-version".into(),
            revision.to_string().into(),
        );
    }
    out
}

/// The container's own CPU units (0 when it reserves none, as ECS reports
/// it) and hard memory limit in MiB when it has one.
fn container_limits(container: &Container, def: Option<&ContainerDefinition>) -> Value {
    let cpu = container
        .cpu
        .as_deref()
        .and_then(|c| c.parse::<u32>().ok())
        .or(def.map(|d| d.cpu))
        .unwrap_or(0);
    let memory = container
        .memory
        .as_deref()
        .and_then(|m| m.parse::<u32>().ok())
        .or(def.and_then(|d| d.memory));
    let mut out = Map::new();
    out.insert("CPU".into(), cpu.into());
    if let Some(mib) = memory {
        out.insert("Memory".into(), mib.into());
    }
    Value::Object(out)
}

/// The log options the container's driver runs with. For `awslogs`, a
/// stream prefix becomes the stream itself, named as ECS names it:
/// `prefix/container-name/task-id`.
fn log_options(
    view: &TaskView,
    container: &Container,
    log: &hail_model::ecs::task_definition::LogConfiguration,
) -> Option<Value> {
    let mut options: Map<String, Value> = log
        .options
        .as_ref()?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    if log.log_driver == "awslogs" {
        if let Some(prefix) = options.remove("awslogs-stream-prefix") {
            let prefix = prefix.as_str().unwrap_or_default().to_owned();
            options.insert(
                "awslogs-stream".into(),
                format!("{prefix}/{}/{}", container.name, view.task_id).into(),
            );
        }
    }
    Some(Value::Object(options))
}

/// Port mappings as Docker reports them; in awsvpc mode the host port is the
/// container port.
fn ports(def: &ContainerDefinition) -> Vec<Value> {
    def.port_mappings
        .iter()
        .filter_map(|p| {
            let port = p.container_port?;
            Some(json!({
                "ContainerPort": port,
                "Protocol": p.protocol.as_deref().unwrap_or("tcp"),
                "HostPort": p.host_port.unwrap_or(port),
            }))
        })
        .collect()
}

/// The task's awsvpc interface: addresses from its ENI attachment, subnet
/// and gateway from the network lease it holds.
fn networks(view: &TaskView) -> Option<Value> {
    let IpAddr::V4(ip) = task_address(&view.task)? else {
        return None;
    };
    let eni = view
        .task
        .attachments
        .iter()
        .find(|a| a.attachment_type == "ElasticNetworkInterface");
    let mut out = Map::new();
    out.insert("NetworkMode".into(), "awsvpc".into());
    out.insert("IPv4Addresses".into(), json!([ip.to_string()]));
    out.insert("AttachmentIndex".into(), 0.into());
    let mac = eni
        .and_then(|a| a.detail("macAddress").map(str::to_owned))
        .or_else(|| view.network.as_ref()?.mac.clone());
    if let Some(mac) = mac {
        out.insert("MACAddress".into(), mac.into());
    }
    // The lease describes this address only if it still holds it.
    if let Some(lease) = view.network.as_ref().filter(|n| n.ip == Some(ip)) {
        let prefix = u32::from(lease.prefix_len.min(32));
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let subnet = std::net::Ipv4Addr::from(u32::from(ip) & mask);
        out.insert(
            "IPv4SubnetCIDRBlock".into(),
            format!("{subnet}/{prefix}").into(),
        );
        if let Some(gateway) = lease.gateway {
            out.insert(
                "SubnetGatewayIpv4Address".into(),
                format!("{gateway}/{prefix}").into(),
            );
        }
    }
    if let Some(dns) = eni.and_then(|a| a.detail("privateDnsName")) {
        out.insert("PrivateDNSName".into(), dns.into());
    }
    Some(Value::Object(out))
}

/// One reading of a container's resource use.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsReading {
    pub read: DateTime<Utc>,
    pub cgroup: CgroupStats,
    pub cpu: CpuAccounting,
    pub memory_stat: BTreeMap<String, u64>,
    /// The memory limit that binds the container: its own, else its task's.
    pub memory_limit: Option<u64>,
    pub host: HostCpu,
    /// The task's interfaces, which all its containers share.
    pub networks: Vec<InterfaceCounters>,
}

/// Docker's stats JSON (API v1.30 `ContainerStats`, with Fargate's
/// `network_rate_stats`) for container `name` with Docker id `id`, from
/// `now` and the reading before it. Without an earlier reading,
/// `precpu_stats` is zero and `preread` the zero time, exactly as Docker's
/// one-shot stats report "no previous sample"; clients that compute a CPU
/// percentage from the difference know to skip it.
pub fn docker_stats(
    id: &str,
    name: &str,
    now: &StatsReading,
    previous: Option<&StatsReading>,
) -> Value {
    let cgroup = &now.cgroup;
    let mut memory = Map::new();
    memory.insert("usage".into(), cgroup.memory_current.into());
    memory.insert("max_usage".into(), cgroup.memory_peak.into());
    memory.insert("stats".into(), json!(now.memory_stat));
    if let Some(limit) = now.memory_limit {
        memory.insert("limit".into(), limit.into());
    }
    let networks: Map<String, Value> = now
        .networks
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                json!({
                    "rx_bytes": n.rx_bytes,
                    "rx_packets": n.rx_packets,
                    "rx_errors": n.rx_errors,
                    "rx_dropped": n.rx_dropped,
                    "tx_bytes": n.tx_bytes,
                    "tx_packets": n.tx_packets,
                    "tx_errors": n.tx_errors,
                    "tx_dropped": n.tx_dropped,
                }),
            )
        })
        .collect();
    let mut out = json!({
        "read": rfc3339(now.read),
        "preread": previous.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |p| rfc3339(p.read)),
        "pids_stats": {"current": cgroup.pids_current},
        "cpu_stats": cpu_stats(Some(now)),
        "precpu_stats": cpu_stats(previous),
        "memory_stats": memory,
        "name": name,
        "id": id,
        "networks": networks,
    });
    if let Some(rates) = previous.and_then(|p| network_rates(p, now)) {
        out["network_rate_stats"] = rates;
    }
    out
}

fn cpu_stats(reading: Option<&StatsReading>) -> Value {
    let Some(r) = reading else {
        return json!({
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        });
    };
    json!({
        "cpu_usage": {
            "total_usage": r.cgroup.cpu_usage_ns,
            "usage_in_kernelmode": r.cpu.system_ns,
            "usage_in_usermode": r.cpu.user_ns,
        },
        "system_cpu_usage": r.host.total_ns,
        "online_cpus": r.host.online_cpus,
        "throttling_data": {
            "periods": r.cpu.periods,
            "throttled_periods": r.cpu.throttled_periods,
            "throttled_time": r.cpu.throttled_ns,
        },
    })
}

/// Bytes per second received and sent over all interfaces between two
/// readings; none when no time passed between them.
fn network_rates(before: &StatsReading, now: &StatsReading) -> Option<Value> {
    let secs = (now.read - before.read).to_std().ok()?.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let total = |r: &StatsReading, f: fn(&InterfaceCounters) -> u64| -> u64 {
        r.networks.iter().map(f).sum()
    };
    let rate = |f: fn(&InterfaceCounters) -> u64| {
        total(now, f).saturating_sub(total(before, f)) as f64 / secs
    };
    Some(json!({
        "rx_bytes_per_sec": rate(|n| n.rx_bytes),
        "tx_bytes_per_sec": rate(|n| n.tx_bytes),
    }))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn timestamp_rfc3339(at: Timestamp) -> Option<String> {
    DateTime::from_timestamp_millis(at.as_millis()).map(rfc3339)
}

/// A time the runtime recorded (RFC 3339), in UTC as ECS writes times.
fn rfc3339_of(recorded: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(recorded)
        .ok()
        .map(|t| rfc3339(t.with_timezone(&Utc)))
}

/// The task metadata endpoint's answers, from the store and the runtime.
pub struct TaskMetadataService {
    store: Store,
    runtime: Arc<Runtime>,
    policy: PeerPolicy,
    /// Hands out task role credentials; without it none are served.
    identity: Option<Identity>,
    /// The last stats reading of each container, by Docker id: the
    /// `precpu_stats` of the next.
    previous: Mutex<HashMap<String, StatsReading>>,
}

impl std::fmt::Debug for TaskMetadataService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMetadataService")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TaskMetadataService {
    /// A service that answers each task's own containers only
    /// ([`PeerPolicy::TaskAddressOnly`]).
    pub fn new(store: Store, runtime: Arc<Runtime>) -> Self {
        TaskMetadataService {
            store,
            runtime,
            policy: PeerPolicy::default(),
            identity: None,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// This service also answering the task credentials endpoint.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// This service deciding who may read with `policy` instead.
    pub fn with_peer_policy(mut self, policy: PeerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Loads the task `id` names, if `peer` may read it; with its tags when
    /// `with_tags`. Every refusal is [`MetadataError::NotFound`].
    async fn view(
        &self,
        id: &MetadataId,
        peer: IpAddr,
        with_tags: bool,
    ) -> Result<(TaskView, Vec<Tag>), MetadataError> {
        let task_id = id.task_id.clone();
        let loaded = self
            .store
            .read(move |conn| {
                let Some(stored) = hail_store::tasks::get(conn, &task_id)? else {
                    return Ok::<_, StoreError>(None);
                };
                let task = stored.task;
                let definition = match EcsArn::parse(&task.task_definition_arn) {
                    Ok(EcsArn {
                        resource:
                            EcsResource::TaskDefinition {
                                family,
                                revision: Some(revision),
                            },
                        ..
                    }) => hail_store::task_definitions::get(conn, &family, revision)?,
                    _ => None,
                };
                let tags = if with_tags {
                    hail_store::tags::list(conn, &task.task_arn)?
                } else {
                    Vec::new()
                };
                Ok(Some((task, definition, tags)))
            })
            .await
            .map_err(|e| MetadataError::unavailable(format!("task store: {e}")))?;
        let Some((task, definition, tags)) = loaded else {
            return Err(MetadataError::NotFound);
        };
        let network = self.runtime.network(&id.task_id);
        if !self
            .policy
            .permits(peer, authorized_address(&task, network.as_ref()))
        {
            return Err(MetadataError::NotFound);
        }
        // `peek_status`, not `status`: answering a metadata request must
        // never act on a task, and `status` stops a task whose shim is gone.
        // A task the runtime no longer knows is still described from the
        // store; only what the runtime observes is missing then.
        let observed = self.runtime.peek_status(&id.task_id).await.ok().flatten();
        let image_ids = task
            .containers
            .iter()
            .filter_map(|c| {
                let image = self.runtime.images().get(c.image.as_deref()?).ok()??;
                Some((c.name.clone(), image.config_digest.to_string()))
            })
            .collect();
        let view = TaskView {
            task_id: id.task_id.clone(),
            task,
            definition,
            observed,
            network,
            image_ids,
        };
        Ok((view, tags))
    }

    /// Reads the usage of `container`, which must be running.
    async fn read_stats(
        &self,
        view: &TaskView,
        container: &str,
    ) -> Result<StatsReading, MetadataError> {
        let pid = match view.observed_of(container) {
            Some(c) if c.phase == ContainerPhase::Running => c.pid,
            _ => {
                return Err(MetadataError::unavailable(format!(
                    "container {container} is not running"
                )))
            }
        };
        let cgroup_root = self.runtime.config().cgroup_root.clone();
        let task_id = view.task_id.clone();
        let container = container.to_owned();
        tokio::task::spawn_blocking(move || read_usage(&cgroup_root, &task_id, &container, pid))
            .await
            .map_err(|e| MetadataError::unavailable(format!("reading stats: {e}")))?
    }

    /// Stores `reading` as the container's latest and returns the one before.
    fn remember(&self, id: &str, reading: &StatsReading) -> Option<StatsReading> {
        let mut previous = self
            .previous
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ttl = chrono::Duration::from_std(PREVIOUS_READING_TTL).unwrap_or(chrono::Duration::MAX);
        previous.retain(|_, r| reading.read - r.read < ttl);
        previous
            .insert(id.to_owned(), reading.clone())
            .filter(|p| p.read <= reading.read)
    }

    async fn stats_of(
        &self,
        view: &TaskView,
        container: &Container,
    ) -> Result<Value, MetadataError> {
        let reading = self.read_stats(view, &container.name).await?;
        let id = docker_id(&view.task_id, container);
        let previous = self.remember(&id, &reading);
        Ok(docker_stats(
            &id,
            &container.name,
            &reading,
            previous.as_ref(),
        ))
    }
}

/// Reads a running container's cgroup, its task's memory limit when it has
/// none of its own, the host's CPU time and the network counters of the
/// namespace its process `pid` lives in.
fn read_usage(
    cgroup_root: &str,
    task_id: &str,
    container: &str,
    pid: Option<i32>,
) -> Result<StatsReading, MetadataError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        MetadataError::unavailable(format!("container {container}: {what}: {e}"))
    };
    let cgroups = Cgroups::detect(cgroup_root).map_err(|e| failed("cgroups", &e))?;
    let read = Utc::now();
    let cgroup = cgroups
        .stats(task_id, Some(container))
        .map_err(|e| failed("cgroup", &e))?;
    let cpu = cgroups
        .cpu_accounting(task_id, Some(container))
        .map_err(|e| failed("cgroup", &e))?;
    let memory_stat = cgroups
        .memory_stat(task_id, Some(container))
        .map_err(|e| failed("cgroup", &e))?;
    let memory_limit = match cgroup.memory_limit {
        Some(limit) => Some(limit),
        None => {
            cgroups
                .stats(task_id, None)
                .map_err(|e| failed("task cgroup", &e))?
                .memory_limit
        }
    };
    let host = usage::host_cpu().map_err(|e| failed("/proc/stat", &e))?;
    let networks = match pid {
        Some(pid) => usage::interface_counters(pid).map_err(|e| failed("network counters", &e))?,
        None => Vec::new(),
    };
    Ok(StatsReading {
        read,
        cgroup,
        cpu,
        memory_stat,
        memory_limit,
        host,
        networks,
    })
}

fn find_container<'a>(view: &'a TaskView, name: &str) -> Result<&'a Container, MetadataError> {
    view.task
        .containers
        .iter()
        .find(|c| c.name == name)
        .ok_or(MetadataError::NotFound)
}

impl TaskMetadataSource for TaskMetadataService {
    async fn container(&self, id: &MetadataId, peer: IpAddr) -> Result<Value, MetadataError> {
        let (view, _) = self.view(id, peer, false).await?;
        let container = find_container(&view, &id.container)?;
        Ok(container_metadata(&view, container))
    }

    async fn task(
        &self,
        id: &MetadataId,
        peer: IpAddr,
        with_tags: bool,
    ) -> Result<Value, MetadataError> {
        let (view, tags) = self.view(id, peer, with_tags).await?;
        find_container(&view, &id.container)?;
        let task_dir = self.runtime.task_dir(&view.task_id);
        // Walking the writable layers is disk work: off the async workers.
        let written = tokio::task::spawn_blocking(move || usage::writable_layer_bytes(&task_dir))
            .await
            .ok()
            .and_then(Result::ok);
        let storage = written.map(|bytes| EphemeralStorageUse {
            utilized_mib: bytes.div_ceil(MIB),
            reserved_mib: reserved_ephemeral_mib(&view),
        });
        let tags = with_tags.then_some(tags.as_slice());
        Ok(task_metadata(&view, tags, storage))
    }

    async fn container_stats(&self, id: &MetadataId, peer: IpAddr) -> Result<Value, MetadataError> {
        let (view, _) = self.view(id, peer, false).await?;
        let container = find_container(&view, &id.container)?;
        self.stats_of(&view, container).await
    }

    async fn task_stats(&self, id: &MetadataId, peer: IpAddr) -> Result<Value, MetadataError> {
        let (view, _) = self.view(id, peer, false).await?;
        find_container(&view, &id.container)?;
        let mut out = Map::new();
        for container in &view.task.containers {
            // As the ECS agent does, a container without stats (not
            // running, or gone while it was read) is listed as null.
            let stats = self.stats_of(&view, container).await.unwrap_or(Value::Null);
            out.insert(docker_id(&view.task_id, container), stats);
        }
        Ok(Value::Object(out))
    }

    async fn credentials(&self, id: &str, peer: IpAddr) -> Result<Value, MetadataError> {
        let identity = self.identity.as_ref().ok_or(MetadataError::NotFound)?;
        let task_id = identity
            .task_of_credentials_id(id)
            .ok_or(MetadataError::NotFound)?;
        // Any container name passes the same authorisation as metadata:
        // the caller must be the task itself.
        let metadata_id = MetadataId {
            task_id,
            container: "credentials".to_owned(),
        };
        let (view, _) = self.view(&metadata_id, peer, false).await?;
        if view.task.last_status == TaskStatus::Stopped {
            return Err(MetadataError::NotFound);
        }
        let role_arn =
            task_role_arn(&view.task, view.definition.as_ref()).ok_or(MetadataError::NotFound)?;
        let creds = identity
            .credentials_for(&view.task.task_arn, &role_arn)
            .await
            .map_err(|e| match e {
                CredentialsError::NoSuchRole(_) => MetadataError::NotFound,
                CredentialsError::Store(e) => MetadataError::unavailable(format!("store: {e}")),
            })?;
        let expiration = DateTime::<Utc>::from_timestamp_millis(creds.expires_at)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        Ok(json!({
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token,
            "Expiration": expiration,
            "RoleArn": creds.role_arn,
        }))
    }
}

/// The role a task's containers act as: the run's override, else the task
/// definition's `taskRoleArn`.
pub fn task_role_arn(task: &Task, definition: Option<&TaskDefinition>) -> Option<String> {
    task.overrides
        .as_ref()
        .and_then(|o| o.task_role_arn.clone())
        .or_else(|| definition.and_then(|d| d.task_role_arn.clone()))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hail_model::arn::Scope;
    use hail_model::ecs::task::{Attachment, EniDetails, LaunchType, NetworkInterface};
    use hail_model::ecs::task_definition::{EphemeralStorage, RegisterTaskDefinitionInput};
    use hail_runtime::task::{ContainerExit, TaskPhase};

    use super::*;

    const TASK_ID: &str = "0123456789abcdef0123456789abcdef";

    fn definition() -> TaskDefinition {
        let input: RegisterTaskDefinitionInput = hail_model::ecs::decode(
            &json!({
                "family": "tom-thumb-task",
                "networkMode": "awsvpc",
                "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "256",
                "memory": "1024",
                "containerDefinitions": [
                    {
                        "name": "tom-thumb-container",
                        "image": "tom-thumb:latest",
                        "cpu": 128,
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": "/ecs/tom-thumb-task",
                                "awslogs-region": "us-east-1",
                                "awslogs-stream-prefix": "ecs"
                            }
                        },
                        "portMappings": [{"containerPort": 8080, "protocol": "tcp"}]
                    },
                    {
                        "name": "side-car",
                        "image": "busybox:latest",
                        "essential": false,
                        "memory": 64,
                        "dockerLabels": {"team": "thumbs", "com.amazonaws.ecs.cluster": "spoofed"},
                        "healthCheck": {"command": ["CMD-SHELL", "true"]}
                    }
                ]
            })
            .to_string(),
        )
        .unwrap();
        TaskDefinition::register(input, &Scope::default(), 3, Timestamp::from_secs(1), None)
            .unwrap()
            .0
    }

    fn task() -> Task {
        let scope = Scope::default();
        let task_arn = scope.task_arn("default", TASK_ID);
        let container = |name: &str, image: &str, cpu: &str, uuid: &str| Container {
            container_arn: scope.container_arn("default", TASK_ID, uuid),
            task_arn: task_arn.clone(),
            name: name.into(),
            image: Some(image.into()),
            image_digest: None,
            runtime_id: Some(hail_runtime::shim::runtime_container_id(TASK_ID, name)),
            last_status: ContainerStatus::Running,
            exit_code: None,
            reason: None,
            network_bindings: vec![],
            network_interfaces: vec![NetworkInterface {
                attachment_id: Some("eni-att-1".into()),
                private_ipv4_address: Some("10.217.0.5".into()),
                ipv6_address: None,
            }],
            health_status: None,
            cpu: Some(cpu.into()),
            memory: None,
            memory_reservation: None,
        };
        Task {
            task_arn: task_arn.clone(),
            cluster_arn: scope.cluster_arn("default"),
            task_definition_arn: scope.task_definition_arn("tom-thumb-task", 3),
            containers: vec![
                container(
                    "tom-thumb-container",
                    "tom-thumb:latest",
                    "128",
                    "c0ffee00-0000-4000-8000-000000000001",
                ),
                container(
                    "side-car",
                    "busybox:latest",
                    "0",
                    "c0ffee00-0000-4000-8000-000000000002",
                ),
            ],
            last_status: TaskStatus::Running,
            desired_status: TaskStatus::Running,
            cpu: Some("256".into()),
            memory: Some("1024".into()),
            launch_type: Some(LaunchType::Fargate),
            capacity_provider_name: None,
            platform_version: Some("1.4.0".into()),
            platform_family: Some("Linux".into()),
            connectivity: None,
            connectivity_at: None,
            pull_started_at: Some(Timestamp::from_millis(1_732_797_623_100)),
            pull_stopped_at: Some(Timestamp::from_secs(1_732_797_624)),
            created_at: Some(Timestamp::from_millis(1_732_797_623_000)),
            started_at: Some(Timestamp::from_millis(1_732_797_625_000)),
            stopping_at: None,
            stopped_at: None,
            execution_stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            group: Some("service:thumbs".into()),
            started_by: None,
            tags: vec![],
            attachments: vec![Attachment::eni(
                "eni-att-1",
                "ATTACHED",
                &EniDetails {
                    subnet_id: "subnet-0123".into(),
                    network_interface_id: "eni-0a1b".into(),
                    mac_address: "02:42:0a:d9:00:05".into(),
                    private_ipv4_address: "10.217.0.5".into(),
                },
            )],
            availability_zone: Some("us-east-1a".into()),
            version: 4,
            overrides: None,
            ephemeral_storage: None,
            health_status: None,
            enable_execute_command: Some(false),
        }
    }

    fn lease(ip: [u8; 4]) -> TaskNetwork {
        TaskNetwork {
            task_id: TASK_ID.into(),
            netns_path: "/run/netns/hail-x".into(),
            ip: Some(Ipv4Addr::from(ip)),
            prefix_len: 16,
            gateway: Some(Ipv4Addr::new(10, 217, 0, 1)),
            mac: Some("02:42:0a:d9:00:05".into()),
            host_veth: Some("vethx".into()),
        }
    }

    fn observed() -> ObservedTask {
        let c = |name: &str, phase, started: Option<&str>, finished: Option<&str>, exit| {
            hail_runtime::task::ContainerStatus {
                name: name.into(),
                phase,
                pid: None,
                exit,
                reason: None,
                started_at: started.map(str::to_owned),
                finished_at: finished.map(str::to_owned),
                essential: name != "side-car",
                health: None,
            }
        };
        ObservedTask {
            version: 1,
            id: TASK_ID.into(),
            phase: TaskPhase::Running,
            containers: vec![
                c(
                    "tom-thumb-container",
                    ContainerPhase::Running,
                    Some("2024-11-28T12:40:25.250Z"),
                    None,
                    None,
                ),
                c(
                    "side-car",
                    ContainerPhase::Stopped,
                    Some("2024-11-28T12:40:25.300Z"),
                    Some("2024-11-28T12:40:26Z"),
                    Some(ContainerExit {
                        code: 3,
                        signal: None,
                        oom_killed: false,
                    }),
                ),
            ],
            stop: None,
            network: None,
            created_at: "2024-11-28T12:40:25.000Z".into(),
            started_at: Some("2024-11-28T12:40:25.300Z".into()),
            stopping_at: None,
            stopped_at: None,
            shim_pid: Some(42),
        }
    }

    fn view() -> TaskView {
        TaskView {
            task_id: TASK_ID.into(),
            task: task(),
            definition: Some(definition()),
            observed: Some(observed()),
            network: Some(lease([10, 217, 0, 5])),
            image_ids: HashMap::from([(
                "tom-thumb-container".to_owned(),
                "sha256:25f3695bedfb454a50f12d127839a68ad3caf91e451c1da073db34c542c4d2cb"
                    .to_owned(),
            )]),
        }
    }

    #[test]
    fn container_metadata_has_fargates_shape() {
        let v = view();
        let got = container_metadata(&v, &v.task.containers[0]);
        let expected = json!({
            "DockerId": format!("{TASK_ID}.tom-thumb-container"),
            "Name": "tom-thumb-container",
            "DockerName": "tom-thumb-container",
            "Image": "tom-thumb:latest",
            "ImageID": "sha256:25f3695bedfb454a50f12d127839a68ad3caf91e451c1da073db34c542c4d2cb",
            "Labels": {
                "com.amazonaws.ecs.cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                "com.amazonaws.ecs.container-name": "tom-thumb-container",
                "com.amazonaws.ecs.task-arn": format!("arn:aws:ecs:us-east-1:000000000000:task/default/{TASK_ID}"),
                "com.amazonaws.ecs.task-definition-family": "tom-thumb-task",
                "com.amazonaws.ecs.task-definition-version": "3"
            },
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Limits": {"CPU": 128},
            "CreatedAt": "2024-11-28T12:40:25.250Z",
            "StartedAt": "2024-11-28T12:40:25.250Z",
            "Type": "NORMAL",
            "ContainerARN": format!("arn:aws:ecs:us-east-1:000000000000:container/default/{TASK_ID}/c0ffee00-0000-4000-8000-000000000001"),
            "LogDriver": "awslogs",
            "LogOptions": {
                "awslogs-group": "/ecs/tom-thumb-task",
                "awslogs-region": "us-east-1",
                "awslogs-stream": format!("ecs/tom-thumb-container/{TASK_ID}")
            },
            "Ports": [{"ContainerPort": 8080, "Protocol": "tcp", "HostPort": 8080}],
            "Networks": [{
                "NetworkMode": "awsvpc",
                "IPv4Addresses": ["10.217.0.5"],
                "AttachmentIndex": 0,
                "MACAddress": "02:42:0a:d9:00:05",
                "IPv4SubnetCIDRBlock": "10.217.0.0/16",
                "SubnetGatewayIpv4Address": "10.217.0.1/16"
            }],
            "Snapshotter": "overlayfs"
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn container_metadata_of_a_stopped_sidecar() {
        let v = view();
        let got = container_metadata(&v, &v.task.containers[1]);
        assert_eq!(got["KnownStatus"], "STOPPED");
        assert_eq!(got["ExitCode"], 3);
        assert_eq!(got["FinishedAt"], "2024-11-28T12:40:26Z");
        assert_eq!(got["Limits"], json!({"CPU": 0, "Memory": 64}));
        assert_eq!(got["Health"], json!({"status": "UNKNOWN"}));
        // The definition's labels are kept; ECS's own win over a spoofed one.
        assert_eq!(got["Labels"]["team"], "thumbs");
        assert_eq!(
            got["Labels"]["com.amazonaws.ecs.cluster"],
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
        for absent in ["ImageID", "LogDriver", "LogOptions", "Ports"] {
            assert!(got.get(absent).is_none(), "{absent}: {got}");
        }
    }

    #[test]
    fn without_runtime_or_definition_the_document_answers() {
        let mut v = view();
        v.observed = None;
        v.network = None;
        v.definition = None;
        v.task.containers[1].last_status = ContainerStatus::Stopped;
        v.task.containers[1].exit_code = Some(1);
        v.task.desired_status = TaskStatus::Stopped;
        let got = container_metadata(&v, &v.task.containers[1]);
        assert_eq!(got["KnownStatus"], "STOPPED");
        assert_eq!(got["DesiredStatus"], "STOPPED");
        assert_eq!(got["ExitCode"], 1);
        assert_eq!(got["Limits"], json!({"CPU": 0}));
        assert_eq!(
            got["Labels"]["com.amazonaws.ecs.task-definition-version"],
            "3"
        );
        // Addresses from the document; subnet and gateway need the lease.
        assert_eq!(
            got["Networks"],
            json!([{
                "NetworkMode": "awsvpc",
                "IPv4Addresses": ["10.217.0.5"],
                "AttachmentIndex": 0,
                "MACAddress": "02:42:0a:d9:00:05"
            }])
        );
        for absent in ["CreatedAt", "StartedAt", "FinishedAt", "Health"] {
            assert!(got.get(absent).is_none(), "{absent}: {got}");
        }
        let task = task_metadata(&v, None, None);
        assert_eq!(task["Family"], "tom-thumb-task");
        assert_eq!(task["Revision"], "3");
    }

    #[test]
    fn task_metadata_has_fargates_shape() {
        let v = view();
        let tags = [Tag::new("team", "thumbs"), Tag::new("empty", "")];
        let storage = EphemeralStorageUse {
            utilized_mib: 3,
            reserved_mib: reserved_ephemeral_mib(&v),
        };
        let got = task_metadata(&v, Some(&tags), Some(storage));
        let mut expected = json!({
            "Cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
            "TaskARN": format!("arn:aws:ecs:us-east-1:000000000000:task/default/{TASK_ID}"),
            "Family": "tom-thumb-task",
            "Revision": "3",
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Limits": {"CPU": 0.25, "Memory": 1024},
            "PullStartedAt": "2024-11-28T12:40:23.100Z",
            "PullStoppedAt": "2024-11-28T12:40:24Z",
            "AvailabilityZone": "us-east-1a",
            "LaunchType": "FARGATE",
            "ServiceName": "thumbs",
            "TaskTags": {"team": "thumbs", "empty": ""},
            "EphemeralStorageMetrics": {"Utilized": 3, "Reserved": 20480},
        });
        expected["Containers"] = json!([
            container_metadata(&v, &v.task.containers[0]),
            container_metadata(&v, &v.task.containers[1]),
        ]);
        assert_eq!(got, expected);
        let plain = task_metadata(&v, None, None);
        assert!(plain.get("TaskTags").is_none());
        assert!(plain.get("EphemeralStorageMetrics").is_none());
    }

    #[test]
    fn task_limits_and_ephemeral_storage() {
        let mut v = view();
        v.task.cpu = Some("2048".into());
        v.task.memory = None;
        v.task.group = Some("family:tom-thumb-task".into());
        let got = task_metadata(&v, None, None);
        assert_eq!(got["Limits"], json!({"CPU": 2}));
        assert!(got.get("ServiceName").is_none());
        v.task.cpu = None;
        assert!(task_metadata(&v, None, None).get("Limits").is_none());
        assert_eq!(reserved_ephemeral_mib(&v), 20 * 1024);
        v.task.ephemeral_storage = Some(EphemeralStorage { size_in_gib: 50 });
        assert_eq!(reserved_ephemeral_mib(&v), 50 * 1024);
    }

    #[test]
    fn only_the_address_the_task_still_holds_is_authorized() {
        let t = task();
        let own: IpAddr = Ipv4Addr::new(10, 217, 0, 5).into();
        assert_eq!(
            authorized_address(&t, Some(&lease([10, 217, 0, 5]))),
            Some(own)
        );
        // The lease is gone (the task stopped) or went to another address.
        assert_eq!(authorized_address(&t, None), None);
        assert_eq!(authorized_address(&t, Some(&lease([10, 217, 0, 6]))), None);
        // Without an ENI attachment the containers' interfaces tell.
        let mut bare = t.clone();
        bare.attachments.clear();
        assert_eq!(task_address(&bare), Some(own));
        bare.containers
            .iter_mut()
            .for_each(|c| c.network_interfaces.clear());
        assert_eq!(task_address(&bare), None);
        // Not recorded yet: the lease is the task's until the task stops.
        assert_eq!(
            authorized_address(&bare, Some(&lease([10, 217, 0, 5]))),
            Some(own)
        );
        bare.last_status = TaskStatus::Stopped;
        assert_eq!(
            authorized_address(&bare, Some(&lease([10, 217, 0, 5]))),
            None
        );
    }

    fn reading(at_ms: i64, cpu_ns: u64, rx: u64, tx: u64) -> StatsReading {
        StatsReading {
            read: DateTime::from_timestamp_millis(at_ms).unwrap(),
            cgroup: CgroupStats {
                cpu_usage_ns: cpu_ns,
                memory_current: 6_504_448,
                memory_peak: 8_458_240,
                memory_limit: Some(64 << 20),
                oom_kills: 0,
                pids_current: 3,
            },
            cpu: CpuAccounting {
                user_ns: cpu_ns / 4 * 3,
                system_ns: cpu_ns / 4,
                periods: 10,
                throttled_periods: 1,
                throttled_ns: 5000,
            },
            memory_stat: BTreeMap::from([("rss".to_owned(), 4_669_440)]),
            memory_limit: Some(64 << 20),
            host: HostCpu {
                total_ns: 9_393_210_000_000 + cpu_ns * 10,
                online_cpus: 2,
            },
            networks: vec![InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: rx,
                rx_packets: 10,
                rx_errors: 0,
                rx_dropped: 1,
                tx_bytes: tx,
                tx_packets: 7,
                tx_errors: 0,
                tx_dropped: 0,
            }],
        }
    }

    #[test]
    fn docker_stats_from_one_reading() {
        let now = reading(1_732_797_684_938, 1_137_691_504, 5000, 1200);
        let got = docker_stats("t.web", "web", &now, None);
        assert_eq!(
            got,
            json!({
                "read": "2024-11-28T12:41:24.938Z",
                "preread": "0001-01-01T00:00:00Z",
                "pids_stats": {"current": 3},
                "cpu_stats": {
                    "cpu_usage": {
                        "total_usage": 1_137_691_504u64,
                        "usage_in_kernelmode": 284_422_876u64,
                        "usage_in_usermode": 853_268_628u64
                    },
                    "system_cpu_usage": 9_404_586_915_040u64,
                    "online_cpus": 2,
                    "throttling_data": {"periods": 10, "throttled_periods": 1, "throttled_time": 5000}
                },
                "precpu_stats": {
                    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
                },
                "memory_stats": {
                    "usage": 6_504_448,
                    "max_usage": 8_458_240,
                    "stats": {"rss": 4_669_440},
                    "limit": 67_108_864
                },
                "name": "web",
                "id": "t.web",
                "networks": {"eth0": {
                    "rx_bytes": 5000, "rx_packets": 10, "rx_errors": 0, "rx_dropped": 1,
                    "tx_bytes": 1200, "tx_packets": 7, "tx_errors": 0, "tx_dropped": 0
                }}
            })
        );
    }

    #[test]
    fn docker_stats_against_an_earlier_reading() {
        let before = reading(1_000_000, 1_000, 1_000, 500);
        let now = reading(1_002_000, 3_000, 5_000, 1_500);
        let got = docker_stats("t.web", "web", &now, Some(&before));
        assert_eq!(got["preread"], "1970-01-01T00:16:40Z");
        assert_eq!(got["precpu_stats"], cpu_stats(Some(&before)));
        assert_eq!(got["precpu_stats"]["cpu_usage"]["total_usage"], 1_000);
        assert_eq!(
            got["network_rate_stats"],
            json!({"rx_bytes_per_sec": 2000.0, "tx_bytes_per_sec": 500.0})
        );
        // No time between the readings: no rates rather than a division by zero.
        let same = docker_stats("t.web", "web", &now, Some(&now));
        assert!(same.get("network_rate_stats").is_none());
        // Without a limit of its own or its task's, none is reported.
        let mut unlimited = now.clone();
        unlimited.memory_limit = None;
        let got = docker_stats("t.web", "web", &unlimited, None);
        assert!(got["memory_stats"].get("limit").is_none());
    }

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(
            rfc3339_of("2024-11-28T13:40:25.250+01:00").as_deref(),
            Some("2024-11-28T12:40:25.250Z")
        );
        assert_eq!(rfc3339_of("yesterday"), None);
        assert_eq!(
            timestamp_rfc3339(Timestamp::from_millis(1_500)).as_deref(),
            Some("1970-01-01T00:00:01.500Z")
        );
        assert_eq!(vcpus(256), json!(0.25));
        assert_eq!(vcpus(1024), json!(1));
    }
}
