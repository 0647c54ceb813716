//! `hail server` (the engine behind the AWS-compatible API on one port) and
//! `hail env` (the shell exports that point AWS tools at it).

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use std::time::Duration;

use hail_api::{ApiService, Clock, StaticCredentials, SystemClock};
use hail_engine::metadata::TaskMetadataService;
use hail_engine::tasks::ControllerConfig;
use hail_engine::{Engine, TaskController};
use hail_model::arn::Scope;
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
    let metadata = hail_api::metadata_router(Arc::new(TaskMetadataService::new(
        store.clone(),
        runtime.clone(),
    )));
    tokio::spawn(async move {
        let service = metadata.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(metadata_listener, service).await {
            tracing::error!("task metadata endpoint stopped: {e}");
        }
    });

    let mut config = ControllerConfig::new(scope.region.clone());
    config.retention = Duration::from_secs(args.task_retention);
    config.environment.metadata_endpoint = Some(metadata_addr.to_string());
    config.memory_capacity_mib = match args.task_memory {
        Some(mib) => Some(mib),
        None => host_memory_mib(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let controller = TaskController::new(store.clone(), runtime, clock.clone(), config);
    tokio::spawn(controller.clone().run());
    let engine = Engine::new(store, scope)
        .with_clock(clock)
        .with_tasks(controller);
    let credentials =
        StaticCredentials::new().with(creds.access_key_id.clone(), creds.secret_access_key);
    let router = ApiService::new(
        Arc::new(engine),
        Arc::new(credentials),
        Arc::new(SystemClock),
    )
    .into_router();
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

    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serve the API")?;
    tracing::info!("stopped");
    Ok(())
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
