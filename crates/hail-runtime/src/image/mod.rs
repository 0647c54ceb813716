//! Images: what they are (manifest, config, layers) and where they come from.
//!
//! An image is recorded by name in the image index and refers to blobs in the
//! content store; its layers are unpacked once per diff id into snapshots that
//! every container using them shares as overlay lower directories.

pub mod registry;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the image manifest (the image's identity; equal across sources).
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
