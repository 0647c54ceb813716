//! The image store: named images over the content store and the snapshots.
//!
//! Layout of the data directory:
//! - `content/`: blobs by digest ([`ContentStore`]).
//! - `snapshots/`: unpacked layers by diff id ([`Snapshots`]).
//! - `images.json`: the image index, `{"version":1,"images":[…]}`, replaced
//!   atomically under `images.lock` (a mutex within the process, an flock
//!   between processes).
//! - `gc.lock`: held shared by everything that adds blobs or unpacks layers
//!   and exclusively by [`ImageStore::gc`], so gc never deletes a blob an
//!   import is about to reference or a snapshot being unpacked.
//! - `tmp/`: scratch space for decompressing archives; emptied by gc.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};
use oci_client::Reference;
use serde::{Deserialize, Serialize};

use super::registry;
use super::snapshot::{lock_file, Snapshots};
use super::unpack::UnpackPolicy;
use super::{archive, Image, ImageConfig, ImageError, Layer};
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::durable;
use crate::progress::Progress;

const INDEX_VERSION: u32 = 1;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What one [`ImageStore::gc`] run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: Vec<Digest>,
    pub snapshots_removed: Vec<Digest>,
    /// Temporary files and directories left by interrupted writes or unpacks.
    pub leftovers_removed: usize,
    /// Bytes of blobs removed (snapshots are not measured).
    pub bytes_freed: u64,
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: Vec<Image>,
}

/// A content descriptor as manifests and indexes write them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// An image manifest or an index (manifest list); which one is told by the
/// media type or, when absent, by the fields present.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestDoc {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<Descriptor>>,
}

impl ManifestDoc {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, ImageError> {
        let doc: Self = serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidManifest {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        if doc.schema_version != 2 {
            return Err(ImageError::InvalidManifest {
                what: what.to_owned(),
                reason: format!("schema version {} is not supported", doc.schema_version),
            });
        }
        Ok(doc)
    }

    pub fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
            Some(_) => false,
            None => self.manifests.is_some() && self.config.is_none(),
        }
    }

    /// Synthesizes an OCI manifest for sources that carry none.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_owned()),
            config: Some(config),
            layers: Some(layers),
            manifests: None,
        }
    }
}

/// Picks the linux/amd64 manifest of an index, the platform Hail runs.
pub(crate) fn select_platform<'a>(
    manifests: &'a [Descriptor],
    what: &str,
) -> Result<&'a Descriptor, ImageError> {
    manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .ok_or_else(|| ImageError::InvalidManifest {
            what: what.to_owned(),
            reason: "no linux/amd64 manifest in the index".to_owned(),
        })
}

/// The image config file, as much of it as Hail uses.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
}

impl ConfigFile {
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidManifest {
            what: format!("config {digest}"),
            reason: e.to_string(),
        })
    }

    fn image_config(self) -> ImageConfig {
        let c = self.config.unwrap_or_default();
        ImageConfig {
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            labels: c.labels.unwrap_or_default(),
            stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
        }
    }
}

/// Normalises an image name: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize_name(name: &str) -> Result<String, ImageError> {
    let r: Reference = name.parse().map_err(|e| ImageError::InvalidName {
        name: name.to_owned(),
        reason: format!("{e}"),
    })?;
    Ok(r.whole())
}

/// The tag of a normalised name, if it has one.
pub(crate) fn tag_of(name: &str) -> Option<String> {
    name.parse::<Reference>()
        .ok()
        .and_then(|r| r.tag().map(str::to_owned))
}

/// Held while blobs are being added for an image that is not yet in the index;
/// keeps [`ImageStore::gc`] from deleting them as unreferenced. `gc` waits for
/// every guard to drop, so a thread holding one must not call `gc`.
pub struct IngestGuard {
    _lock: Flock<File>,
}

pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    snapshots: Snapshots,
    policy: UnpackPolicy,
    index_mutex: Mutex<()>,
}

impl ImageStore {
    pub fn open(data_dir: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(data_dir).map_err(ImageError::io(data_dir))?;
        let tmp = data_dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(ImageError::io(&tmp))?;
        Ok(Self {
            root: data_dir.to_owned(),
            content: ContentStore::open(data_dir.join("content"))?,
            snapshots: Snapshots::open(data_dir.join("snapshots"))?,
            policy: UnpackPolicy::default(),
            index_mutex: Mutex::new(()),
        })
    }

    /// The same store unpacking layers under `policy`.
    pub fn with_policy(mut self, policy: UnpackPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// Held by whoever writes blobs for an image before calling
    /// [`Self::add_from_manifest`] (the registry puller), until that call returns.
    pub fn ingest_guard(&self) -> Result<IngestGuard, ImageError> {
        Ok(IngestGuard {
            _lock: lock_file(&self.root.join("gc.lock"), FlockArg::LockShared)?,
        })
    }

    /// Pulls `reference` from its registry (see [`registry::pull`]) and records
    /// it under its normalised name.
    pub async fn pull(
        &self,
        reference: &str,
        opts: &registry::PullOptions,
        progress: &dyn Progress,
    ) -> Result<Image, ImageError> {
        let _ingest = self.ingest_guard()?;
        let pulled = registry::pull(&self.content, reference, opts, progress).await?;
        self.add_from_manifest(&pulled.name, &pulled.manifest_digest)
    }

    fn read_index(&self) -> Result<Vec<Image>, ImageError> {
        let path = self.index_path();
        let file: Option<IndexFile> = durable::read_json(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                ImageError::InvalidIndex {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            } else {
                ImageError::io(&path)(e)
            }
        })?;
        match file {
            None => Ok(Vec::new()),
            Some(f) if f.version == INDEX_VERSION => Ok(f.images),
            Some(f) => Err(ImageError::InvalidIndex {
                path,
                reason: format!("unsupported version {}", f.version),
            }),
        }
    }

    /// Runs `f` on the index under the index lock, writing the index back when
    /// `f` says it changed it.
    fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Vec<Image>) -> Result<(T, bool), ImageError>,
    ) -> Result<T, ImageError> {
        let _guard = self
            .index_mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _flock = lock_file(&self.root.join("images.lock"), FlockArg::LockExclusive)?;
        let mut images = self.read_index()?;
        let (out, changed) = f(&mut images)?;
        if changed {
            images.sort_by(|a, b| a.name.cmp(&b.name));
            let path = self.index_path();
            durable::write_json_atomic(
                &path,
                &IndexFile {
                    version: INDEX_VERSION,
                    images,
                },
            )
            .map_err(ImageError::io(&path))?;
        }
        Ok(out)
    }

    /// Imports an image from a `docker save` archive, an OCI archive or layout
    /// directory, or a plain root-filesystem tarball (told apart by content),
    /// and records it as `name`.
    pub fn import(
        &self,
        name: &str,
        file: &Path,
        progress: &dyn Progress,
    ) -> Result<Image, ImageError> {
        let name = normalize_name(name)?;
        let _ingest = self.ingest_guard()?;
        let manifest = archive::import(self, &name, file, progress)?;
        self.record(&name, &manifest)
    }

    /// Records `name` for the manifest (or index, resolved to linux/amd64)
    /// `manifest_digest`, whose config and layers must already be in the
    /// content store.
    pub fn add_from_manifest(
        &self,
        name: &str,
        manifest_digest: &Digest,
    ) -> Result<Image, ImageError> {
        let name = normalize_name(name)?;
        let _ingest = self.ingest_guard()?;
        self.record(&name, manifest_digest)
    }

    fn record(&self, name: &str, manifest_digest: &Digest) -> Result<Image, ImageError> {
        let image = self.image_from_manifest(name, manifest_digest)?;
        let recorded = image.clone();
        self.update_index(move |images| {
            images.retain(|i| i.name != recorded.name);
            images.push(recorded);
            Ok(((), true))
        })?;
        Ok(image)
    }

    fn image_from_manifest(&self, name: &str, digest: &Digest) -> Result<Image, ImageError> {
        let what = format!("manifest {digest}");
        let mut doc = ManifestDoc::parse(&self.content.read(digest)?, &what)?;
        let mut manifest_digest = digest.clone();
        if doc.is_index() {
            let child = select_platform(doc.manifests.as_deref().unwrap_or_default(), &what)?;
            manifest_digest = child.digest.clone();
            let child_what = format!("manifest {manifest_digest}");
            doc = ManifestDoc::parse(&self.content.read(&manifest_digest)?, &child_what)?;
            if doc.is_index() {
                return Err(ImageError::InvalidManifest {
                    what: child_what,
                    reason: "an index nested in an index is not supported".to_owned(),
                });
            }
        }
        let what = format!("manifest {manifest_digest}");
        let invalid = |reason: String| ImageError::InvalidManifest {
            what: what.clone(),
            reason,
        };
        if let Some(mt) = doc.media_type.as_deref() {
            if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
                return Err(invalid(format!("media type {mt} is not an image manifest")));
            }
        }
        let config = doc
            .config
            .as_ref()
            .ok_or_else(|| invalid("no config".to_owned()))?;
        if !config.media_type.is_empty()
            && config.media_type != OCI_CONFIG
            && config.media_type != DOCKER_CONFIG
        {
            return Err(invalid(format!(
                "config media type {} is not an image config",
                config.media_type
            )));
        }
        let config_file = ConfigFile::parse(&self.content.read(&config.digest)?, &config.digest)?;
        let blobs = doc.layers.clone().unwrap_or_default();
        if blobs.len() != config_file.rootfs.diff_ids.len() {
            return Err(invalid(format!(
                "{} layers but the config lists {} diff ids",
                blobs.len(),
                config_file.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::with_capacity(blobs.len());
        for (blob, diff_id) in blobs.iter().zip(&config_file.rootfs.diff_ids) {
            if !blob.media_type.contains("tar") {
                return Err(invalid(format!(
                    "layer {} has media type {}, not a filesystem layer",
                    blob.digest, blob.media_type
                )));
            }
            let size = self.content.size(&blob.digest)?;
            layers.push(Layer {
                digest: blob.digest.clone(),
                diff_id: diff_id.clone(),
                media_type: blob.media_type.clone(),
                size,
            });
        }
        Ok(Image {
            name: name.to_owned(),
            manifest_digest,
            config_digest: config.digest.clone(),
            size: layers.iter().map(|l| l.size).sum(),
            layers,
            config: config_file.image_config(),
            stored_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }

    /// Looks an image up by name (normalised), by config digest, or by a
    /// prefix of at least 12 hex digits of it (the image id).
    pub fn get(&self, name: &str) -> Result<Option<Image>, ImageError> {
        let images = self.read_index()?;
        Ok(find(&images, name)?.into_iter().next().cloned())
    }

    /// Every image, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        self.read_index()
    }

    /// Forgets an image name (by id: every name of that image). Blobs and
    /// snapshots stay until [`Self::gc`]. Refused while the image's config
    /// digest is in `in_use`.
    pub fn remove(&self, name: &str, in_use: &HashSet<Digest>) -> Result<(), ImageError> {
        self.update_index(|images| {
            let doomed: Vec<Image> = find(images, name)?.into_iter().cloned().collect();
            if doomed.is_empty() {
                return Err(ImageError::NotFound {
                    name: name.to_owned(),
                });
            }
            if doomed.iter().any(|i| in_use.contains(&i.config_digest)) {
                return Err(ImageError::InUse {
                    name: name.to_owned(),
                });
            }
            images.retain(|i| !doomed.iter().any(|d| d.name == i.name));
            Ok(((), true))
        })
    }

    /// Removes blobs and snapshots no image refers to, and leftovers of
    /// interrupted writes. Images whose config digest is in `in_use` keep
    /// their config and snapshots even when no name refers to them any more
    /// (a running task's image that was re-tagged).
    pub fn gc(&self, in_use: &HashSet<Digest>) -> Result<GcReport, ImageError> {
        let _gc = lock_file(&self.root.join("gc.lock"), FlockArg::LockExclusive)?;
        self.update_index(|images| {
            let mut keep_blobs: HashSet<Digest> = HashSet::new();
            let mut keep_snapshots: HashSet<Digest> = HashSet::new();
            for image in images.iter() {
                keep_blobs.insert(image.manifest_digest.clone());
                keep_blobs.insert(image.config_digest.clone());
                for l in &image.layers {
                    keep_blobs.insert(l.digest.clone());
                    keep_snapshots.insert(l.diff_id.clone());
                }
            }
            for config in in_use {
                if keep_blobs.contains(config) {
                    continue;
                }
                if let Ok(bytes) = self.content.read(config) {
                    if let Ok(c) = ConfigFile::parse(&bytes, config) {
                        keep_blobs.insert(config.clone());
                        keep_snapshots.extend(c.rootfs.diff_ids);
                    }
                }
            }
            let mut report = GcReport::default();
            for blob in self.content.list()? {
                if !keep_blobs.contains(&blob) {
                    report.bytes_freed += self.content.size(&blob).unwrap_or(0);
                    self.content.remove(&blob)?;
                    report.blobs_removed.push(blob);
                }
            }
            for snap in self.snapshots.list()? {
                if !keep_snapshots.contains(&snap) {
                    self.snapshots.remove(&snap)?;
                    report.snapshots_removed.push(snap);
                }
            }
            report.leftovers_removed += self.content.remove_leftovers()?;
            report.leftovers_removed += self.snapshots.remove_leftovers()?;
            let tmp = self.tmp_dir();
            for entry in fs::read_dir(&tmp).map_err(ImageError::io(&tmp))? {
                let p = entry.map_err(ImageError::io(&tmp))?.path();
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(ImageError::io(&p))?;
                report.leftovers_removed += 1;
            }
            Ok((report, false))
        })
    }

    /// Unpacks the image's layers that are not unpacked yet and returns their
    /// trees in overlayfs `lowerdir` order: top layer first.
    pub fn rootfs_layers(
        &self,
        image: &Image,
        progress: &dyn Progress,
    ) -> Result<Vec<PathBuf>, ImageError> {
        let _ingest = self.ingest_guard()?;
        let mut dirs = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let blob = self.content.path(&layer.digest);
            let (dir, _) = self
                .snapshots
                .ensure(&layer.diff_id, &blob, &self.policy, progress)?;
            dirs.push(dir);
        }
        dirs.reverse();
        Ok(dirs)
    }
}

/// The images `name` designates: by id (config digest or a prefix of at least
/// 12 hex digits) first, as Docker does, then by normalised name.
fn find<'a>(images: &'a [Image], name: &str) -> Result<Vec<&'a Image>, ImageError> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if (12..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hex = hex.to_ascii_lowercase();
        let by_id: Vec<&Image> = images
            .iter()
            .filter(|i| i.config_digest.hex().starts_with(&hex))
            .collect();
        if !by_id.is_empty() || name.starts_with("sha256:") {
            return Ok(by_id);
        }
    }
    // Names are stored normalised; an exact match needs no parsing (the
    // reference grammar's regex costs a noticeable first-use compile).
    let exact: Vec<&Image> = images.iter().filter(|i| i.name == name).collect();
    if !exact.is_empty() {
        return Ok(exact);
    }
    let normal = normalize_name(name)?;
    Ok(images.iter().filter(|i| i.name == normal).collect())
}
