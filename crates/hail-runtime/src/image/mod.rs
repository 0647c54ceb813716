//! Images: what they are (manifest, config, layers) and where they come from.
//!
//! An image is recorded by name in the image index and refers to blobs in the
//! content store; its layers are unpacked once per diff id into snapshots that
//! every container using them shares as overlay lower directories.
//!
//! - [`store`]: the image index, import, garbage collection, snapshots on demand.
//! - [`archive`]: reading `docker save` archives, OCI archives and layouts, and
//!   plain root-filesystem tarballs.
//! - [`unpack`]: turning one layer tar into a directory, safely.
//! - [`snapshot`]: unpacking each layer once per diff id, atomically.

pub mod archive;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub mod registry;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::content::ContentError;
use crate::digest::Digest;

pub use store::{GcReport, ImageStore};
pub use unpack::UnpackPolicy;

/// Everything that can go wrong with images, naming the image, file, layer or
/// entry concerned.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {name} not found")]
    NotFound { name: String },
    #[error("image {name} is in use by a running task")]
    InUse { name: String },
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{path}: unsupported image format: {reason}")]
    UnsupportedFormat { path: PathBuf, reason: String },
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    HostileEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: {source}")]
    LayerRead {
        layer: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid manifest {what}: {reason}")]
    InvalidManifest { what: String, reason: String },
    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path}: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    #[error("image index {path}: {reason}")]
    InvalidIndex { path: PathBuf, reason: String },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }
}

/// One layer of an image: the blob as stored and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the blob in the content store (compressed as shipped).
    pub digest: Digest,
    /// Digest of the uncompressed tar stream (the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    pub media_type: String,
    pub size: u64,
}

/// The runtime-relevant part of an image config (`config` in the OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` strings, in the image's order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `8080/tcp` style keys of `ExposedPorts`.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

/// An image known to the store by name.
///
/// Identity: two records are the same image when their `config_digest` (what
/// Docker shows as the image id) and their layers' `diff_id`s are equal. Those
/// are computed from uncompressed content, so they agree whether the image came
/// from a registry, a `docker save` archive or an OCI archive; the manifest and
/// the layer blob digests depend on how the source compressed and packaged the
/// layers, and differ between sources of the same image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the platform-specific image manifest in the content store. Not
    /// an identity: sources that carry no manifest get a synthesized one, and
    /// registries compress layers differently (see the identity note above).
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Bottom layer first, as in the manifest.
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    /// Total size of the layer blobs.
    pub size: u64,
    /// RFC 3339 time the image entered this store.
    pub stored_at: String,
}
