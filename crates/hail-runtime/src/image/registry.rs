//! Pulling images from OCI/Docker registries (the distribution API) into the
//! content store.
//!
//! A pull fetches the manifest (resolving a manifest list or OCI index to
//! linux/amd64), then the config blob and every layer blob, one at a time.
//! Every blob streams through a [`BlobWriter`], which verifies its digest and
//! size before it becomes visible, so a blob present in the store is always
//! the one the manifest names; blobs already present are not downloaded again.
//! The manifest is stored byte for byte, so its digest is the registry's.
//!
//! Authentication is negotiated by `oci-client` from the registry's
//! `WWW-Authenticate` challenge: HTTP basic, or a bearer token fetched from
//! the challenge's realm (with the basic credentials, or anonymously).

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::content::{BlobWriter, ContentError, ContentStore};
use crate::digest::Digest;
use crate::progress::Progress;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifest media types a pull asks for and accepts. Docker schema 1 is absent
/// on purpose: it is deprecated and has no config blob, and a registry holding
/// schema 2 serves that when schema 1 is not in the `Accept` header.
const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

const ACCEPTED_CONFIGS: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

const ACCEPTED_LAYERS: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

/// The platform Hail runs containers for.
const PLATFORM_OS: &str = "linux";
const PLATFORM_ARCH: &str = "amd64";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("image reference {reference:?} is invalid: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {reference}: manifest not found")]
    ManifestNotFound { reference: String },
    #[error("image {reference}: blob {digest} not found in the registry")]
    BlobNotFound { reference: String, digest: String },
    #[error("registry {registry}: not authorized")]
    Unauthorized { registry: String },
    #[error("image {reference}: no manifest for {PLATFORM_OS}/{PLATFORM_ARCH}, available: {}", available.join(", "))]
    NoMatchingPlatform {
        reference: String,
        available: Vec<String>,
    },
    #[error("image {reference}: unsupported {what} media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        what: &'static str,
        media_type: String,
    },
    #[error("image {reference}: invalid manifest: {reason}")]
    InvalidManifest { reference: String, reason: String },
    #[error("registry {registry}: {message}")]
    Transport { registry: String, message: String },
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// Credentials offered to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
}

impl fmt::Debug for RegistryAuth {
    // The password must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Which registries are spoken to over plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Insecure {
    /// Plain HTTP for loopback registries (`localhost`, `127.*`, `[::1]`),
    /// HTTPS for every other: traffic that never leaves the host has nothing
    /// for TLS to protect, and local registries rarely have certificates.
    #[default]
    Loopback,
    /// Plain HTTP for exactly these registries (`host` or `host:port`, as
    /// written in image references), HTTPS for every other.
    Registries(Vec<String>),
}

impl Insecure {
    fn is_insecure(&self, registry: &str) -> bool {
        match self {
            Self::Loopback => is_loopback_registry(registry),
            Self::Registries(list) => list.iter().any(|r| r == registry),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub auth: RegistryAuth,
    pub insecure: Insecure,
}

/// What a pull stored: the image's normalised name and the digest of its
/// (platform) manifest, now in the content store with its config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    pub manifest_digest: Digest,
}

/// Pulls `reference` into `content`; see the module documentation.
pub async fn pull(
    content: &ContentStore,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PulledImage, RegistryError> {
    let image: Reference =
        reference.parse().map_err(
            |e: oci_client::ParseError| RegistryError::InvalidReference {
                reference: reference.to_owned(),
                reason: e.to_string(),
            },
        )?;
    let name = image.whole();
    // As written in the reference (`docker.io`, not the `index.docker.io` it
    // resolves to), which is what users list in `Insecure::Registries`.
    let registry = image.registry().to_owned();
    let client = client_for(&registry, &opts.insecure)?;
    let auth = match &opts.auth {
        RegistryAuth::Anonymous => OciAuth::Anonymous,
        RegistryAuth::Basic { username, password } => {
            OciAuth::Basic(username.clone(), password.clone())
        }
    };
    let ctx = Pull {
        client,
        auth,
        registry,
        name: name.clone(),
        content,
        progress,
    };

    let (bytes, digest) = ctx.fetch_manifest(&image).await?;
    let doc = ctx.parse_manifest(&bytes)?;
    let (image, bytes, digest, doc) = match doc.manifests {
        Some(entries) => {
            let platform_digest = ctx.select_platform(&entries)?;
            let platform_image = image.clone_with_digest(platform_digest.clone());
            let (bytes, digest) = ctx.fetch_manifest(&platform_image).await?;
            if digest != platform_digest {
                return Err(ctx.digest_mismatch(&platform_digest, &digest));
            }
            let doc = ctx.parse_manifest(&bytes)?;
            if doc.manifests.is_some() {
                return Err(ctx.invalid_manifest(format!(
                    "index entry {platform_digest} is itself an index"
                )));
            }
            (platform_image, bytes, digest, doc)
        }
        None => (image, bytes, digest, doc),
    };

    let config = doc
        .config
        .ok_or_else(|| ctx.invalid_manifest("no config descriptor".to_owned()))?;
    let layers = doc
        .layers
        .ok_or_else(|| ctx.invalid_manifest("no layers".to_owned()))?;
    ctx.check_media_type("config", &config.media_type, ACCEPTED_CONFIGS)?;
    for layer in &layers {
        ctx.check_media_type("layer", &layer.media_type, ACCEPTED_LAYERS)?;
    }

    // The manifest is stored last: its presence then means the image is whole,
    // which is what a later `ImageStore::add_from_manifest` relies on.
    ctx.fetch_blob(&image, "config", &config).await?;
    for layer in &layers {
        ctx.fetch_blob(&image, "layer", layer).await?;
    }
    let manifest_digest = ctx.parse_digest(&digest)?;
    content.put_bytes(&bytes, Some(&manifest_digest))?;
    tracing::info!(image = %name, manifest = %manifest_digest, layers = layers.len(), "pulled");
    Ok(PulledImage {
        name,
        manifest_digest,
    })
}

fn client_for(registry: &str, insecure: &Insecure) -> Result<Client, RegistryError> {
    let protocol = if insecure.is_insecure(registry) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        // A registry that stops answering must fail the pull, not hang it.
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        // Index resolution is done here, where the choices can be reported.
        platform_resolver: None,
        ..ClientConfig::default()
    };
    Client::try_from(config).map_err(|e| RegistryError::Transport {
        registry: registry.to_owned(),
        message: error_chain(&e),
    })
}

/// Whether `registry` (`host` or `host:port`) names the local host.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, _)) => host,
            None => return false,
        }
    } else if registry.matches(':').count() == 1 {
        registry.split_once(':').map_or(registry, |(h, _)| h)
    } else {
        registry
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The fields of an image manifest or index that a pull needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

struct Pull<'a> {
    client: Client,
    auth: OciAuth,
    registry: String,
    name: String,
    content: &'a ContentStore,
    progress: &'a dyn Progress,
}

impl Pull<'_> {
    async fn fetch_manifest(&self, image: &Reference) -> Result<(Bytes, String), RegistryError> {
        self.client
            .pull_manifest_raw(image, &self.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| self.map_error(e, None))
    }

    fn parse_manifest(&self, bytes: &[u8]) -> Result<ManifestDoc, RegistryError> {
        let doc: ManifestDoc =
            serde_json::from_slice(bytes).map_err(|e| self.invalid_manifest(e.to_string()))?;
        if doc.schema_version != Some(2) {
            return Err(RegistryError::UnsupportedMediaType {
                reference: self.name.clone(),
                what: "manifest",
                media_type: format!("schema version {:?}", doc.schema_version),
            });
        }
        if let Some(media_type) = &doc.media_type {
            self.check_media_type("manifest", media_type, ACCEPTED_MANIFESTS)?;
        }
        Ok(doc)
    }

    fn select_platform(&self, entries: &[IndexEntry]) -> Result<String, RegistryError> {
        let platform = |e: &IndexEntry| {
            e.platform
                .as_ref()
                .map(|p| format!("{}/{}", p.os, p.architecture))
        };
        entries
            .iter()
            .find(|e| platform(e).as_deref() == Some(&format!("{PLATFORM_OS}/{PLATFORM_ARCH}")))
            .map(|e| e.digest.clone())
            .ok_or_else(|| RegistryError::NoMatchingPlatform {
                reference: self.name.clone(),
                available: entries.iter().filter_map(platform).collect(),
            })
    }

    fn check_media_type(
        &self,
        what: &'static str,
        media_type: &str,
        accepted: &[&str],
    ) -> Result<(), RegistryError> {
        if accepted.contains(&media_type) {
            Ok(())
        } else {
            Err(RegistryError::UnsupportedMediaType {
                reference: self.name.clone(),
                what,
                media_type: media_type.to_owned(),
            })
        }
    }

    fn parse_digest(&self, digest: &str) -> Result<Digest, RegistryError> {
        digest
            .parse()
            .map_err(|e: crate::digest::InvalidDigest| self.invalid_manifest(e.to_string()))
    }

    fn invalid_manifest(&self, reason: String) -> RegistryError {
        RegistryError::InvalidManifest {
            reference: self.name.clone(),
            reason,
        }
    }

    fn digest_mismatch(&self, expected: &str, actual: &str) -> RegistryError {
        match (expected.parse(), actual.parse()) {
            (Ok(expected), Ok(actual)) => {
                RegistryError::Content(ContentError::DigestMismatch { expected, actual })
            }
            _ => self.invalid_manifest(format!("expected digest {expected}, got {actual}")),
        }
    }

    /// Downloads one blob into the content store unless it is already there.
    async fn fetch_blob(
        &self,
        image: &Reference,
        kind: &str,
        desc: &Descriptor,
    ) -> Result<(), RegistryError> {
        let digest = self.parse_digest(&desc.digest)?;
        let size = u64::try_from(desc.size).map_err(|_| {
            self.invalid_manifest(format!("{kind} {digest} has size {}", desc.size))
        })?;
        if self.content.contains(&digest) {
            tracing::debug!(%digest, "{kind} already present");
            return Ok(());
        }
        self.progress
            .begin(&format!("{kind} {}", digest.short()), Some(size));
        let result = self.download(image, &digest, size).await;
        self.progress.end();
        result
    }

    async fn download(
        &self,
        image: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        // Only the digest is passed, never the descriptor's `urls`: a
        // manifest must not be able to send the pull to arbitrary hosts.
        let digest_str = digest.to_string();
        let mut stream = self
            .client
            .pull_blob_stream(image, digest_str.as_str())
            .await
            .map_err(|e| self.map_error(e, Some(digest)))?
            .stream;

        // The file is written on a blocking thread, fed through a small
        // channel, so the download never holds more than a few chunks.
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<bool>();
        let writer = self.content.writer()?;
        let expected = digest.clone();
        let root = self.content.root().to_owned();
        let sink = tokio::task::spawn_blocking(move || {
            write_blob(writer, rx, done_rx, expected, size, root)
        });

        let mut received: u64 = 0;
        let mut outcome: Result<(), RegistryError> = Ok(());
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > size {
                        outcome = Err(ContentError::SizeMismatch {
                            expected: digest.clone(),
                            expected_size: size,
                            actual_size: received,
                        }
                        .into());
                        break;
                    }
                    self.progress.advance(chunk.len() as u64);
                    if tx.send(chunk).await.is_err() {
                        // The writer failed; its error is collected below.
                        break;
                    }
                }
                // oci-client verifies the stream against the digest too and
                // reports a mismatch as the stream's last item. The content
                // store is the authority: let it verify and name the mismatch.
                Err(e) if is_verification_error(&e) => break,
                Err(e) => {
                    outcome = Err(RegistryError::Transport {
                        registry: self.registry.clone(),
                        message: format!("blob {digest}: {}", error_chain(&e)),
                    });
                    break;
                }
            }
        }
        drop(tx);
        let _ = done_tx.send(outcome.is_ok());
        let written = sink.await.map_err(|e| RegistryError::Transport {
            registry: self.registry.clone(),
            message: format!("blob {digest}: writer task failed: {e}"),
        })?;
        outcome?;
        written?;
        Ok(())
    }

    fn map_error(&self, e: OciDistributionError, blob: Option<&Digest>) -> RegistryError {
        let not_found = || match blob {
            Some(digest) => RegistryError::BlobNotFound {
                reference: self.name.clone(),
                digest: digest.to_string(),
            },
            None => RegistryError::ManifestNotFound {
                reference: self.name.clone(),
            },
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => RegistryError::Unauthorized {
                registry: self.registry.clone(),
            },
            OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
            OciDistributionError::RegistryError { ref envelope, .. } => {
                let code = |c: &OciErrorCode| envelope.errors.iter().any(|e| e.code == *c);
                if code(&OciErrorCode::Unauthorized) || code(&OciErrorCode::Denied) {
                    RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                    }
                } else if code(&OciErrorCode::ManifestUnknown)
                    || code(&OciErrorCode::NameUnknown)
                    || code(&OciErrorCode::BlobUnknown)
                    || code(&OciErrorCode::NotFound)
                {
                    not_found()
                } else {
                    self.transport(&e)
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => not_found(),
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => RegistryError::Unauthorized {
                registry: self.registry.clone(),
            },
            OciDistributionError::DigestError(DigestError::VerificationError {
                ref expected,
                ref actual,
            }) => self.digest_mismatch(expected, actual),
            OciDistributionError::UnsupportedMediaTypeError(media_type) => {
                RegistryError::UnsupportedMediaType {
                    reference: self.name.clone(),
                    what: "manifest",
                    media_type,
                }
            }
            e => self.transport(&e),
        }
    }

    fn transport(&self, e: &OciDistributionError) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.clone(),
            message: error_chain(e),
        }
    }
}

/// Runs on a blocking thread: writes chunks until the channel closes, then
/// commits (verifying digest and size) if the download finished cleanly.
fn write_blob(
    mut writer: BlobWriter,
    mut rx: mpsc::Receiver<Bytes>,
    done: tokio::sync::oneshot::Receiver<bool>,
    expected: Digest,
    size: u64,
    root: std::path::PathBuf,
) -> Result<(), ContentError> {
    while let Some(chunk) = rx.blocking_recv() {
        writer
            .write_all(&chunk)
            .map_err(|source| ContentError::Io {
                path: root.clone(),
                source,
            })?;
    }
    // A failed download drops the writer, which removes the partial file.
    if done.blocking_recv() == Ok(true) {
        writer.commit(Some(&expected), Some(size))?;
    }
    Ok(())
}

fn is_verification_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }))
}

/// An error and its sources, `: `-separated: reqwest's own message ("error
/// sending request") says nothing of the cause without them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback_registry(r), "{r}");
        }
        for r in [
            "docker.io",
            "index.docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_registry(r), "{r}");
        }
    }

    #[test]
    fn insecure_policy() {
        assert!(Insecure::Loopback.is_insecure("127.0.0.1:5000"));
        assert!(!Insecure::Loopback.is_insecure("registry.example:5000"));
        let list = Insecure::Registries(vec!["registry.lan:5000".to_owned()]);
        assert!(list.is_insecure("registry.lan:5000"));
        assert!(!list.is_insecure("127.0.0.1:5000"));
    }

    #[test]
    fn password_is_not_debug_printed() {
        let auth = RegistryAuth::Basic {
            username: "u".to_owned(),
            password: "hunter2".to_owned(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn references_are_normalised() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.whole(), "docker.io/library/busybox:latest");
        let r: Reference = "127.0.0.1:5000/x:tag".parse().unwrap();
        assert_eq!(r.whole(), "127.0.0.1:5000/x:tag");
        assert_eq!(r.resolve_registry(), "127.0.0.1:5000");
    }
}
