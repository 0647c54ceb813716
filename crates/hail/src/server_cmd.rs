//! `hail server` (the engine behind the AWS-compatible API on one port) and
//! `hail env` (the shell exports that point AWS tools at it).

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use std::time::Duration;

use hail_api::sign::Signer;
use hail_api::{ApiService, Clock, SystemClock};
use hail_engine::autoscaling::{ScalableResources, ScalingConfig, ScalingController};
use hail_engine::balancing::LoadBalancing;
use hail_engine::identity::RootKeys;
use hail_engine::metadata::TaskMetadataService;
use hail_engine::native::triggers::BoxFuture;
use hail_engine::services::capacity::{ServiceCapacity, ServiceMetrics};
use hail_engine::tasks::ControllerConfig;
use hail_engine::triggers::TriggerConfig;
use hail_engine::{
    BucketNotifications, Engine, Identity, NotificationError, NotificationRule, ServiceController,
    TaskController, TriggerController,
};
use hail_model::arn::Scope;
use hail_objects::{ObjectStore, ObjectsError};
use hail_runtime::runtime::Runtime;
use hail_store::Store;
use serde::{Deserialize, Serialize};

use crate::HostArgs;

/// The port AWS-local tooling already uses.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4566";
/// The endpoint `hail env` prints unless told otherwise.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4566";
/// The root credentials file inside the data directory.
pub const CREDENTIALS_FILE: &str = "credentials";
const CREDENTIALS_VERSION: u32 = 1;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address the API listens on; loopback unless asked otherwise.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// How long stopped tasks stay describable (seconds) before they and
    /// their files are removed.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub task_retention: u64,
    /// Port of the task metadata endpoint on 169.254.170.2, where every
    /// task reaches it (0 picks a free one).
    #[arg(long, default_value_t = 80)]
    pub metadata_port: u16,
    /// Memory (MiB) tasks may reserve in total; RunTask reports
    /// RESOURCE:MEMORY beyond it. The host's physical memory by default.
    #[arg(long, value_name = "MIB")]
    pub task_memory: Option<u64>,
    /// Let task definitions mount directories of this host (`volumes[].host.sourcePath`).
    #[arg(long)]
    pub allow_host_volumes: bool,
    /// Life of the temporary credentials tasks get for their role
    /// (seconds); they are rotated when a fifth of it is left.
    #[arg(long, default_value_t = 21600, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(10..=43200))]
    pub task_credentials_ttl: u64,
}

#[derive(clap::Args)]
pub struct EnvArgs {
    /// The endpoint AWS tools should use.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
}

/// The root access key of one data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCredentials {
    pub version: u32,
    pub access_key_id: String,
    pub secret_access_key: String,
}

fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIALS_FILE)
}

/// The data directory's root credentials, `None` before the first start.
pub fn load_credentials(data_dir: &Path) -> anyhow::Result<Option<RootCredentials>> {
    let path = credentials_path(data_dir);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let creds: RootCredentials = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a hail credentials file", path.display()))?;
    if creds.version != CREDENTIALS_VERSION {
        bail!(
            "{}: credentials format version {} is not supported (expected {CREDENTIALS_VERSION})",
            path.display(),
            creds.version
        );
    }
    if creds.access_key_id.is_empty() || creds.secret_access_key.is_empty() {
        bail!("{}: access key id or secret is empty", path.display());
    }
    Ok(Some(creds))
}

/// Loads the root credentials, creating them on first start: random, written
/// atomically (temp file, fsync, rename, directory fsync) with mode 0600.
/// Returns whether they were created now.
pub fn load_or_create_credentials(data_dir: &Path) -> anyhow::Result<(RootCredentials, bool)> {
    if let Some(creds) = load_credentials(data_dir)? {
        return Ok((creds, false));
    }
    let mut random = [0u8; 56];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("read /dev/urandom")?;
    // AWS's shapes: "AKIA" and 16 base32 characters; a 40-character secret.
    const KEY_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET_ALPHABET: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (key, secret) = random.split_at(16);
    let creds = RootCredentials {
        version: CREDENTIALS_VERSION,
        access_key_id: std::iter::once("AKIA".to_owned())
            .chain(
                key.iter()
                    .map(|b| (KEY_ALPHABET[usize::from(b & 31)] as char).to_string()),
            )
            .collect(),
        secret_access_key: secret
            .iter()
            .map(|b| SECRET_ALPHABET[usize::from(b & 63)] as char)
            .collect(),
    };
    let path = credentials_path(data_dir);
    let json = serde_json::to_vec_pretty(&creds).context("encode credentials")?;
    hail_runtime::durable::write_atomic_mode(&path, &json, 0o600)
        .with_context(|| format!("write {}", path.display()))?;
    Ok((creds, true))
}

/// Runs the engine and serves the API on `args.listen` until SIGTERM or
/// SIGINT, then lets requests in flight finish.
pub async fn serve(data_dir: &Path, host: &HostArgs, args: ServerArgs) -> anyhow::Result<()> {
    fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let (creds, created) = load_or_create_credentials(data_dir)?;
    let store_path = data_dir.join("state.db");
    let store =
        Store::open(&store_path).with_context(|| format!("open {}", store_path.display()))?;
    let scope = Scope::default();
    let mut runtime_config = host.runtime_config(data_dir);
    runtime_config.allow_host_volumes = args.allow_host_volumes;
    let runtime = Runtime::open(runtime_config)
        .await
        .context("open the container runtime")?;
    // Tasks whose shims lived through the restart are adopted; the rest
    // are settled, and what belonged to nothing is collected.
    let recovery = runtime.recover().await.context("recover tasks")?;
    tracing::info!(
        adopted = recovery.adopted.len(),
        lost = recovery.lost.len(),
        collected = recovery.collected,
        "recovered"
    );
    let runtime = Arc::new(runtime);
    // Tasks reach the engine at the ECS agent's link-local address, which
    // the runtime puts on the host side of the task bridge.
    let metadata_listener = tokio::net::TcpListener::bind((
        std::net::Ipv4Addr::from([169, 254, 170, 2]),
        args.metadata_port,
    ))
    .await
    .with_context(|| {
        format!(
            "listen on {}:{} for the task metadata endpoint",
            hail_api::metadata::ECS_AGENT_ADDRESS,
            args.metadata_port
        )
    })?;
    let metadata_addr = metadata_listener
        .local_addr()
        .context("read the metadata endpoint's address")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let identity = Identity::load(
        store.clone(),
        RootKeys {
            access_key_id: creds.access_key_id.clone(),
            secret_access_key: creds.secret_access_key.clone(),
        },
        Duration::from_secs(args.task_credentials_ttl),
        clock.clone(),
    )
    .await
    .context("load roles and task credentials")?;
    // What tasks use to reach Hail: metadata, credentials and the APIs.
    let task_endpoint = match metadata_addr.port() {
        80 => format!("http://{}", metadata_addr.ip()),
        _ => format!("http://{metadata_addr}"),
    };

    let mut config = ControllerConfig::new(scope.region.clone());
    config.retention = Duration::from_secs(args.task_retention);
    config.environment.metadata_endpoint = Some(metadata_addr.to_string());
    config.identity = Some(identity.clone());
    config.memory_capacity_mib = match args.task_memory {
        Some(mib) => Some(mib),
        None => host_memory_mib(),
    };
    let controller = TaskController::new(store.clone(), runtime.clone(), clock.clone(), config);
    tokio::spawn(controller.clone().run());
    let task_changes = controller.status_changes();
    let objects = ObjectStore::open(
        data_dir.join("objects"),
        store.clone(),
        scope.region.clone(),
    )
    .context("open the object store")?;
    {
        let objects = objects.clone();
        tokio::spawn(async move {
            match objects.collect_garbage().await {
                Ok(report) => tracing::info!(?report, "object store garbage collected"),
                Err(e) => tracing::warn!("object store garbage collection: {e}"),
            }
        });
    }
    let engine = Engine::new(store.clone(), scope.clone())
        .with_clock(clock.clone())
        .with_tasks(controller)
        .with_identity(identity.clone())
        .with_notifications(Arc::new(TriggerRules(objects.clone())));
    let triggers = TriggerController::new(
        engine.clone(),
        TriggerConfig {
            task_endpoint: Some(task_endpoint),
            signer: Some(Signer {
                access_key_id: creds.access_key_id.clone(),
                secret_access_key: creds.secret_access_key.clone(),
                region: scope.region.clone(),
                service: "s3".to_owned(),
            }),
            resync: Duration::from_secs(1),
        },
    );
    tokio::spawn(triggers.clone().run());
    let (balancing, cold_groups) = LoadBalancing::new().context("start the load balancer")?;
    let engine = engine.with_balancing(balancing.clone());
    if let Err(e) = balancing.apply(&engine).await {
        tracing::warn!("load balancer listeners: {e}");
    }
    let services = ServiceController::new(engine.clone(), Some(Arc::new(balancing.clone())));
    tokio::spawn(services.clone().run());
    {
        // A task of a service that starts or stops is acted on at once
        // (its target registered, its replacement launched).
        let services = services.clone();
        tokio::spawn(async move {
            loop {
                task_changes.notified().await;
                services.wake();
            }
        });
    }
    let engine = engine.with_triggers(triggers).with_services(services);
    tokio::spawn(
        balancing
            .clone()
            .run_activations(engine.clone(), cold_groups),
    );
    // Application Auto Scaling acts on services' desired counts, reading
    // their CPU and memory from cgroups and their traffic from the gateway.
    let capacity: Arc<dyn ScalableResources> = Arc::new(ServiceCapacity::new(engine.clone()));
    let metrics = ServiceMetrics::new();
    tokio::spawn(metrics.clone().run(engine.clone()));
    let engine = engine.with_scalable_resources(capacity.clone());
    let scaling = ScalingController::new(
        engine.clone(),
        capacity,
        Arc::new(metrics),
        ScalingConfig::default(),
    );
    tokio::spawn(scaling.run());
    let identity = Arc::new(identity);
    let s3 = hail_api::s3::s3_service(objects, identity.clone(), identity.clone());
    let api = ApiService::new(Arc::new(engine), identity.clone(), clock.clone())
        .with_policy(identity.clone())
        .with_s3(s3);

    // The task endpoint serves the metadata and credentials paths, and the
    // same APIs as the edge port for everything else.
    let metadata = Arc::new(
        TaskMetadataService::new(store, runtime.clone()).with_identity(identity.as_ref().clone()),
    );
    let task_api = api.clone();
    let task_router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let metadata = metadata.clone();
        let api = task_api.clone();
        async move {
            if hail_api::metadata::is_task_endpoint(request.uri().path()) {
                hail_api::metadata::handle(metadata.as_ref(), request).await
            } else {
                api.handle(request).await
            }
        }
    });
    tokio::spawn(async move {
        let service = task_router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(metadata_listener.tap_io(no_delay), service).await {
            tracing::error!("task endpoint stopped: {e}");
        }
    });
    let router = api.into_router();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("read the listening address")?;

    let creds_path = credentials_path(data_dir);
    if created {
        println!("created root credentials in {}", creds_path.display());
    }
    println!(
        "hail server listening on http://{local} (data dir {})",
        data_dir.display()
    );
    println!(
        "to use the aws CLI: eval \"$(hail env --data-dir {} --endpoint http://{local})\"",
        data_dir.display()
    );
    tracing::info!(%local, data_dir = %data_dir.display(), "serving");

    axum::serve(listener.tap_io(no_delay), router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serve the API")?;
    // Running tasks stay with their shims; namespaces waiting for a task
    // would only wait for the next start, which makes its own pool.
    if let Err(e) = runtime.networks().drain_pool().await {
        tracing::warn!("emptying the network pool: {e}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Turns Nagle's algorithm off on an accepted connection: a response written
/// in two pieces (head, then body) would otherwise wait for the client's
/// delayed ACK, some 40 ms, before its second piece leaves.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
    }
}

/// Triggers' rules, put on buckets of the object store.
struct TriggerRules(ObjectStore);

impl BucketNotifications for TriggerRules {
    fn install<'a>(
        &'a self,
        bucket: &'a str,
        rule: NotificationRule,
    ) -> BoxFuture<'a, Result<(), NotificationError>> {
        Box::pin(async move {
            let rule = hail_model::s3::NotificationRule {
                id: rule.id,
                kind: hail_model::s3::RuleKind::Queue,
                destination_arn: rule.destination_arn,
                events: rule.events,
                prefix: rule.prefix,
                suffix: rule.suffix,
            };
            self.0
                .put_notification_rule(bucket, rule)
                .await
                .map_err(notification_error(bucket))
        })
    }

    fn remove<'a>(
        &'a self,
        bucket: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), NotificationError>> {
        Box::pin(async move {
            self.0
                .remove_notification_rule(bucket, id)
                .await
                .map_err(notification_error(bucket))
        })
    }
}

fn notification_error(bucket: &str) -> impl Fn(ObjectsError) -> NotificationError + '_ {
    move |e| match e {
        ObjectsError::NoSuchBucket => NotificationError::NoSuchBucket(bucket.to_owned()),
        other => NotificationError::Failed(other.to_string()),
    }
}

/// The host's physical memory, from /proc/meminfo's MemTotal.
fn host_memory_mib() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers the server can still be stopped by
        // SIGKILL; it must not stop serving on its own.
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("signal handlers unavailable, graceful shutdown disabled: {e}");
            std::future::pending::<()>().await
        }
    }
}

/// Prints the shell exports that point AWS tools at this data directory's
/// server.
pub fn env(data_dir: &Path, args: EnvArgs) -> anyhow::Result<()> {
    let Some(creds) = load_credentials(data_dir)? else {
        bail!(
            "{} does not exist: start `hail server --data-dir {}` once to create it",
            credentials_path(data_dir).display(),
            data_dir.display()
        );
    };
    let region = Scope::default().region;
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", creds.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key.as_str()),
        ("AWS_ENDPOINT_URL", args.endpoint.as_str()),
        ("AWS_DEFAULT_REGION", region.as_str()),
    ] {
        println!("export {name}={}", shell_quote(value));
    }
    Ok(())
}

/// `value` as one shell word: unchanged when it holds only characters the
/// shell never interprets, otherwise single-quoted.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/-_.:@%=,".contains(&b));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn triggers_read_the_topic_the_object_store_writes() {
        assert_eq!(
            hail_objects::NOTIFICATION_TOPIC,
            hail_engine::triggers::NOTIFICATION_TOPIC
        );
    }
}
