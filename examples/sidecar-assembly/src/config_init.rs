//! The config init container: copies `s3://$CONFIG_BUCKET/$CONFIG_KEY` to
//! `$CONFIG_PATH` (in a volume the application mounts read-only), then
//! exits, so the application, which waits for this container's `SUCCESS`,
//! starts with its configuration in place.
//!
//! The S3 client comes from the SDK's standard chains, as in a task on AWS:
//! the endpoint from `AWS_ENDPOINT_URL` (Hail sets it; unset on AWS), the
//! credentials of the task role from the ECS container credentials
//! endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `…_FULL_URI`).
//! Buckets are addressed path-style.
//!
//! The file appears whole or not at all: the object is streamed to a
//! temporary file beside the target, flushed to disk, renamed over the
//! target, and the directory flushed too. A failure leaves any previous
//! file as it was.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use tokio::io::AsyncWriteExt;

pub const CONFIG_BUCKET: &str = "CONFIG_BUCKET";
pub const CONFIG_KEY: &str = "CONFIG_KEY";
pub const CONFIG_PATH: &str = "CONFIG_PATH";
pub const CONFIG_MAX_BYTES: &str = "CONFIG_MAX_BYTES";
pub const AWS_REGION: &str = "AWS_REGION";

/// Objects larger than this are refused unless `CONFIG_MAX_BYTES` says
/// otherwise: a configuration file, not a data set, goes in the volume.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Exit codes, one per class of failure.
pub mod exit {
    /// The file is written.
    pub const OK: u8 = 0;
    /// S3 answered with another error (5xx, an unexpected code).
    pub const FAILED: u8 = 1;
    /// The environment is incomplete or malformed.
    pub const CONFIG: u8 = 2;
    /// No such object or no such bucket.
    pub const NOT_FOUND: u8 = 3;
    /// Access denied, or no credentials at all.
    pub const DENIED: u8 = 4;
    /// S3 (or the credentials endpoint) could not be reached, or the
    /// download broke off: worth a retry.
    pub const UNREACHABLE: u8 = 5;
    /// The file could not be written.
    pub const WRITE: u8 = 6;
    /// The object is larger than the limit.
    pub const TOO_LARGE: u8 = 7;
}

/// What to copy where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
    pub key: String,
    pub path: PathBuf,
    pub region: Option<String>,
    pub max_bytes: u64,
}

impl Config {
    pub fn from_env() -> Result<Self, InitError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, InitError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(InitError::Config(format!("{name} is not set")))
        };
        let bucket = required(CONFIG_BUCKET)?;
        let key = required(CONFIG_KEY)?.trim_start_matches('/').to_owned();
        if key.is_empty() {
            return Err(InitError::Config(format!("{CONFIG_KEY} names no object")));
        }
        let path = PathBuf::from(required(CONFIG_PATH)?);
        if !path.is_absolute() || path.file_name().is_none() {
            return Err(InitError::Config(format!(
                "{CONFIG_PATH} {} is not an absolute file path",
                path.display()
            )));
        }
        let max_bytes = match get(CONFIG_MAX_BYTES) {
            None => DEFAULT_MAX_BYTES,
            Some(v) => v.trim().parse().map_err(|_| {
                InitError::Config(format!("{CONFIG_MAX_BYTES} {v:?} is not a number of bytes"))
            })?,
        };
        Ok(Config {
            bucket,
            key,
            path,
            region: get(AWS_REGION).filter(|r| !r.is_empty()),
            max_bytes,
        })
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{uri} does not exist: {detail}")]
    NotFound { uri: String, detail: String },
    #[error("no permission to read {uri}: {detail}")]
    Denied { uri: String, detail: String },
    #[error("cannot reach S3 to read {uri}: {detail}")]
    Unreachable { uri: String, detail: String },
    #[error("cannot read {uri}: {detail}")]
    Failed { uri: String, detail: String },
    #[error("{uri} is larger than the limit of {limit} bytes ({CONFIG_MAX_BYTES})")]
    TooLarge { uri: String, limit: u64 },
    #[error("cannot write {path}: {step}: {source}")]
    Write {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
}

impl InitError {
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::Config(_) => exit::CONFIG,
            InitError::NotFound { .. } => exit::NOT_FOUND,
            InitError::Denied { .. } => exit::DENIED,
            InitError::Unreachable { .. } => exit::UNREACHABLE,
            InitError::Failed { .. } => exit::FAILED,
            InitError::TooLarge { .. } => exit::TOO_LARGE,
            InitError::Write { .. } => exit::WRITE,
        }
    }

    /// The one line printed on stderr.
    pub fn log_line(&self) -> String {
        // Error sources can span lines; the contract is one line.
        let text = self.to_string().replace(['\n', '\r'], " ");
        format!("config-init: error: {text}")
    }
}

/// S3 error codes that mean the caller may not read the object.
const DENIED_CODES: [&str; 6] = [
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
];

/// An error and its sources, one after the other, without repeats: the
/// innermost cause (`Connection refused`) is what a reader needs.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Sorts a failed GetObject into its class.
pub fn classify(
    uri: &str,
    code: Option<&str>,
    status: Option<u16>,
    dispatch_failed: bool,
    detail: String,
) -> InitError {
    let uri = uri.to_owned();
    if dispatch_failed {
        return InitError::Unreachable { uri, detail };
    }
    if status == Some(404) || matches!(code, Some("NoSuchKey" | "NoSuchBucket")) {
        return InitError::NotFound { uri, detail };
    }
    if status == Some(403) || code.is_some_and(|c| DENIED_CODES.contains(&c)) {
        return InitError::Denied { uri, detail };
    }
    InitError::Failed { uri, detail }
}

/// The SDK configuration: standard chains, the region from the
/// environment, bounded connect and attempt times.
pub async fn load_sdk_config(config: &Config) -> Result<SdkConfig, InitError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build(),
    );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(InitError::Config(format!("{AWS_REGION} is not set")));
    }
    Ok(sdk)
}

/// Fetches the task's credentials once, so their absence is reported as
/// such rather than as a failed request, and the request does not fetch
/// them again.
pub async fn resolve_credentials(
    sdk: &SdkConfig,
    config: &Config,
) -> Result<Credentials, InitError> {
    use aws_credential_types::provider::error::CredentialsError;
    let uri = config.uri();
    let Some(provider) = sdk.credentials_provider() else {
        return Err(InitError::Denied {
            uri,
            detail: "no credentials provider is configured".into(),
        });
    };
    provider.provide_credentials().await.map_err(|e| {
        let detail = format!("no credentials: {}", causes(&e));
        match e {
            CredentialsError::CredentialsNotLoaded(_) => InitError::Denied { uri, detail },
            CredentialsError::InvalidConfiguration(_) => {
                InitError::Config(format!("the task's credentials: {}", causes(&e)))
            }
            // Anything else is the credentials endpoint failing to answer
            // (refused, timed out, an error page): worth a retry.
            _ => InitError::Unreachable { uri, detail },
        }
    })
}

/// A path-style S3 client (Hail's S3 and any endpoint given by IP need it;
/// AWS accepts it) using `credentials`.
pub fn s3_client(sdk: &SdkConfig, credentials: Credentials) -> Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    Client::from_conf(conf)
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub bytes: u64,
    pub etag: Option<String>,
}

/// Copies the object to the file, atomically.
pub async fn copy(client: &Client, config: &Config) -> Result<Copied, InitError> {
    let uri = config.uri();
    let response = client
        .get_object()
        .bucket(&config.bucket)
        .key(&config.key)
        .send()
        .await
        .map_err(|err| {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let dispatch = matches!(
                err,
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
            );
            let detail = match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => match status {
                    Some(status) if !dispatch => format!("HTTP {status}"),
                    _ => causes(&err),
                },
            };
            classify(&uri, err.code(), status, dispatch, detail)
        })?;
    let length = response
        .content_length()
        .and_then(|n| u64::try_from(n).ok());
    if length.is_some_and(|n| n > config.max_bytes) {
        return Err(InitError::TooLarge {
            uri,
            limit: config.max_bytes,
        });
    }
    let etag = response.e_tag().map(str::to_owned);
    let mut body = response.body;
    let bytes = write_atomically(&config.path, async |file: &mut tokio::fs::File| {
        let mut written = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            Progress::Source(InitError::Unreachable {
                uri: config.uri(),
                detail: format!("the download broke off: {}", causes(&e)),
            })
        })? {
            written += chunk.len() as u64;
            if written > config.max_bytes {
                return Err(Progress::Source(InitError::TooLarge {
                    uri: config.uri(),
                    limit: config.max_bytes,
                }));
            }
            file.write_all(&chunk).await.map_err(Progress::Write)?;
        }
        Ok(written)
    })
    .await?;
    Ok(Copied { bytes, etag })
}

/// Why filling the temporary file stopped.
pub enum Progress {
    /// The content's source failed.
    Source(InitError),
    /// Writing the file failed.
    Write(io::Error),
}

/// Writes `path` atomically: `fill` writes the content into a temporary
/// file in the same directory, which is then synced, made readable by
/// every user (the application may run as another one), renamed over
/// `path`, and the directory synced so the rename survives a crash. On
/// failure the temporary file is removed and `path` is untouched.
pub async fn write_atomically<F>(path: &Path, fill: F) -> Result<u64, InitError>
where
    F: AsyncFnOnce(&mut tokio::fs::File) -> Result<u64, Progress>,
{
    let err = |step: &'static str| {
        move |source| InitError::Write {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(err("create its directory"))?;
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .await
        .map_err(err("create a temporary file"))?;

    let result: Result<u64, InitError> = async {
        let written = fill(&mut file).await.map_err(|p| match p {
            Progress::Source(e) => e,
            Progress::Write(e) => err("write")(e),
        })?;
        file.flush().await.map_err(err("write"))?;
        file.sync_all().await.map_err(err("sync"))?;
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644))
            .await
            .map_err(err("set its permissions"))?;
        tokio::fs::rename(&temp, path)
            .await
            .map_err(err("rename the temporary file over it"))?;
        Ok(written)
    }
    .await;
    drop(file);
    match result {
        Ok(written) => {
            // The rename is durable once the directory is.
            let dir_file = tokio::fs::File::open(dir)
                .await
                .map_err(err("open its directory"))?;
            dir_file
                .sync_all()
                .await
                .map_err(err("sync its directory"))?;
            Ok(written)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e)
        }
    }
}

/// The whole run: configuration, credentials, copy.
pub async fn run(config: &Config) -> Result<Copied, InitError> {
    let sdk = load_sdk_config(config).await?;
    let credentials = resolve_credentials(&sdk, config).await?;
    copy(&s3_client(&sdk, credentials), config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_environment_contract() {
        let full = [
            (CONFIG_BUCKET, "configs"),
            (CONFIG_KEY, "/bean-counter/app.json"),
            (CONFIG_PATH, "/config/app.json"),
            (AWS_REGION, "us-east-1"),
        ];
        let c = Config::from_lookup(lookup(&full)).unwrap();
        assert_eq!(c.uri(), "s3://configs/bean-counter/app.json");
        assert_eq!(c.path, Path::new("/config/app.json"));
        assert_eq!(c.max_bytes, DEFAULT_MAX_BYTES);
        for missing in [CONFIG_BUCKET, CONFIG_KEY, CONFIG_PATH] {
            let partial: Vec<(&str, &str)> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = Config::from_lookup(lookup(&partial)).unwrap_err();
            assert_eq!(err.exit_code(), exit::CONFIG);
            assert_eq!(
                err.log_line(),
                format!("config-init: error: configuration: {missing} is not set")
            );
        }
        let relative = [
            (CONFIG_BUCKET, "b"),
            (CONFIG_KEY, "k"),
            (CONFIG_PATH, "app.json"),
        ];
        assert!(Config::from_lookup(lookup(&relative)).is_err());
        let bad_max = [
            (CONFIG_BUCKET, "b"),
            (CONFIG_KEY, "k"),
            (CONFIG_PATH, "/c/a"),
            (CONFIG_MAX_BYTES, "lots"),
        ];
        assert!(Config::from_lookup(lookup(&bad_max)).is_err());
    }

    #[test]
    fn failures_fall_in_classes() {
        let class = |code, status, dispatch| {
            classify("s3://b/k", code, status, dispatch, "d".into()).exit_code()
        };
        assert_eq!(class(Some("NoSuchKey"), Some(404), false), exit::NOT_FOUND);
        assert_eq!(
            class(Some("NoSuchBucket"), Some(404), false),
            exit::NOT_FOUND
        );
        assert_eq!(class(None, Some(404), false), exit::NOT_FOUND);
        assert_eq!(class(Some("AccessDenied"), Some(403), false), exit::DENIED);
        assert_eq!(class(Some("InvalidAccessKeyId"), None, false), exit::DENIED);
        assert_eq!(class(None, None, true), exit::UNREACHABLE);
        assert_eq!(class(Some("InternalError"), Some(500), false), exit::FAILED);
    }

    #[tokio::test]
    async fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.json");
        std::fs::write(&path, "old").unwrap();
        let err = write_atomically(&path, async |file: &mut tokio::fs::File| {
            file.write_all(b"half of the n")
                .await
                .map_err(Progress::Write)?;
            Err(Progress::Source(InitError::Unreachable {
                uri: "s3://b/k".into(),
                detail: "the download broke off".into(),
            }))
        })
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), exit::UNREACHABLE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let n = write_atomically(&path, async |file: &mut tokio::fs::File| {
            file.write_all(b"{\"new\":true}")
                .await
                .map_err(Progress::Write)?;
            Ok(12)
        })
        .await
        .unwrap();
        assert_eq!(n, 12);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"new\":true}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
