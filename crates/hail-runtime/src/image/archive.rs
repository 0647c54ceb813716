//! Importing images from files: `docker save` archives, OCI archives and
//! layout directories, and plain root-filesystem tarballs (`docker import`).
//!
//! The format is told by content, never by file name: a directory holding
//! `oci-layout` is an OCI layout; a file is decompressed if its magic bytes say
//! gzip or zstd and must then be a tar; a tar with a Docker `manifest.json` is a
//! `docker save` archive, one with `oci-layout` and `index.json` an OCI
//! archive, any other tar a root filesystem.
//!
//! Every blob lands in the content store verified against the digest (and
//! size) its source declares; sources without a manifest get a synthesized
//! OCI manifest, so every image in the store is described the same way.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::store::{
    normalize_name, select_platform, tag_of, ConfigFile, Descriptor, ImageStore, ManifestDoc,
    OCI_CONFIG,
};
use super::unpack::{self, Compression};
use super::ImageError;
use crate::digest::{Digest, HashingReader};
use crate::durable;
use crate::progress::{Progress, ProgressReader};

const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Manifests, configs and indexes are small; a larger one is not an image.
const MAX_JSON: u64 = 16 << 20;
/// The PATH Docker gives images that set none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Imports `file` into the content store and returns the digest of the image
/// manifest describing it. `name` is normalised; its tag picks the image in
/// multi-image sources.
pub(crate) fn import(
    store: &ImageStore,
    name: &str,
    file: &Path,
    progress: &dyn Progress,
) -> Result<Digest, ImageError> {
    let meta = fs::metadata(file).map_err(ImageError::io(file))?;
    if meta.is_dir() {
        if !file.join("oci-layout").is_file() || !file.join("index.json").is_file() {
            return Err(ImageError::UnsupportedFormat {
                path: file.to_owned(),
                reason: "directory is not an OCI image layout (no oci-layout and index.json)"
                    .to_owned(),
            });
        }
        let source = Source::Dir(file.to_owned());
        return import_oci(store, &source, name, progress);
    }

    let mut head = [0u8; 512];
    let n = read_head(file, &mut head)?;
    let compression = Compression::detect(&head[..n]);
    // Archives are read out of order (manifest first, then blobs), so a
    // compressed one is decompressed to scratch space once.
    let scratch = match compression {
        Compression::None => None,
        _ => Some(decompress_to_scratch(store, file, progress)?),
    };
    let (tar_path, diff_id) = match &scratch {
        Some((s, d)) => (s.path.clone(), Some(d.clone())),
        None => (file.to_owned(), None),
    };
    let n = read_head(&tar_path, &mut head)?;
    if n < 512 || &head[257..262] != b"ustar" {
        let what = match compression {
            Compression::None => "",
            Compression::Gzip => "gzip-compressed ",
            Compression::Zstd => "zstd-compressed ",
        };
        return Err(ImageError::UnsupportedFormat {
            path: file.to_owned(),
            reason: format!(
                "{what}content is not a tar archive, OCI layout or docker save archive"
            ),
        });
    }
    let index = TarIndex::read(&tar_path, file)?;
    let source = Source::Tar(index);
    if let Some(entries) = source.docker_manifest()? {
        return import_docker(store, &source, entries, name, file, progress);
    }
    if source.has("oci-layout") && source.has("index.json") {
        return import_oci(store, &source, name, progress);
    }
    import_rootfs(store, file, compression, diff_id, progress)
}

fn read_head(path: &Path, head: &mut [u8; 512]) -> Result<usize, ImageError> {
    let mut f = File::open(path).map_err(ImageError::io(path))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(ImageError::io(path))? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}

/// A file in scratch space, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Decompresses `file` into scratch space, returning it and the digest of the
/// decompressed stream.
fn decompress_to_scratch(
    store: &ImageStore,
    file: &Path,
    progress: &dyn Progress,
) -> Result<(Scratch, Digest), ImageError> {
    let scratch = Scratch {
        path: durable::temp_path_for(&store.tmp_dir().join("archive")),
    };
    let f = File::open(file).map_err(ImageError::io(file))?;
    progress.begin(
        &format!("decompressing {}", file.display()),
        f.metadata().map(|m| m.len()).ok(),
    );
    let reader = BufReader::new(ProgressReader::new(f, progress));
    let mut hashing = HashingReader::new(unpack::decompress(reader).map_err(ImageError::io(file))?);
    let mut out = File::create(&scratch.path).map_err(ImageError::io(&scratch.path))?;
    io::copy(&mut hashing, &mut out).map_err(ImageError::io(file))?;
    let (digest, _) = hashing.finish().map_err(ImageError::io(file))?;
    progress.end();
    Ok((scratch, digest))
}

#[derive(Debug, Clone)]
enum TarItem {
    File { offset: u64, size: u64 },
    Symlink(String),
    Hardlink(String),
    Other,
}

/// Where each member of a tar archive lies, for reading members out of order.
struct TarIndex {
    /// The (uncompressed) tar read.
    path: PathBuf,
    /// The file the user named, for error messages.
    origin: PathBuf,
    items: HashMap<String, TarItem>,
}

impl TarIndex {
    fn read(path: &Path, origin: &Path) -> Result<Self, ImageError> {
        let bad = |e: io::Error| ImageError::InvalidArchive {
            path: origin.to_owned(),
            reason: format!("reading tar: {e}"),
        };
        let file = File::open(path).map_err(ImageError::io(path))?;
        let mut archive = tar::Archive::new(file);
        let mut items = HashMap::new();
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let name = normalize_member(&String::from_utf8_lossy(&entry.path_bytes()));
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default()
            };
            let item = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => TarItem::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => TarItem::Symlink(link()),
                tar::EntryType::Link => TarItem::Hardlink(link()),
                _ => TarItem::Other,
            };
            items.insert(name, item);
        }
        Ok(Self {
            path: path.to_owned(),
            origin: origin.to_owned(),
            items,
        })
    }
}

/// Normalises a member path lexically: no leading `/` or `./`, `..` resolved.
/// Archive members are only read, never written, so resolving `..` within the
/// archive's own namespace is harmless.
fn normalize_member(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// An image source read member by member: a layout directory or a tar.
enum Source {
    Dir(PathBuf),
    Tar(TarIndex),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Source {
    fn origin(&self) -> &Path {
        match self {
            Source::Dir(p) => p,
            Source::Tar(t) => &t.origin,
        }
    }

    fn has(&self, member: &str) -> bool {
        match self {
            Source::Dir(root) => root.join(member).exists(),
            Source::Tar(t) => t.items.contains_key(member),
        }
    }

    /// Opens a member, following symlinks and hardlinks inside the archive.
    fn open(&self, member: &str) -> Result<(Box<dyn Read + '_>, u64), ImageError> {
        let missing = |m: &str| ImageError::InvalidArchive {
            path: self.origin().to_owned(),
            reason: format!("member {m} is missing"),
        };
        match self {
            Source::Dir(root) => {
                let p = root.join(normalize_member(member));
                let f = File::open(&p).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => missing(member),
                    _ => ImageError::io(&p)(e),
                })?;
                let size = f.metadata().map_err(ImageError::io(&p))?.len();
                Ok((Box::new(BufReader::new(f)), size))
            }
            Source::Tar(t) => {
                let mut name = normalize_member(member);
                for _ in 0..40 {
                    match t.items.get(&name) {
                        Some(TarItem::File { offset, size }) => {
                            let mut f = File::open(&t.path).map_err(ImageError::io(&t.path))?;
                            f.seek(SeekFrom::Start(*offset))
                                .map_err(ImageError::io(&t.path))?;
                            return Ok((Box::new(BufReader::new(f).take(*size)), *size));
                        }
                        Some(TarItem::Symlink(target)) => {
                            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                            name = if target.starts_with('/') {
                                normalize_member(target)
                            } else {
                                normalize_member(&format!("{dir}/{target}"))
                            };
                        }
                        Some(TarItem::Hardlink(target)) => name = normalize_member(target),
                        Some(TarItem::Other) | None => return Err(missing(member)),
                    }
                }
                Err(ImageError::InvalidArchive {
                    path: t.origin.clone(),
                    reason: format!("member {member}: too many levels of links"),
                })
            }
        }
    }

    fn read_json_bytes(&self, member: &str) -> Result<Vec<u8>, ImageError> {
        let (r, size) = self.open(member)?;
        if size > MAX_JSON {
            return Err(ImageError::InvalidArchive {
                path: self.origin().to_owned(),
                reason: format!("member {member} is {size} bytes, too large for a manifest"),
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(ImageError::io(self.origin()))?;
        Ok(buf)
    }

    /// The entries of a Docker `manifest.json`, if this is a `docker save` archive.
    fn docker_manifest(&self) -> Result<Option<Vec<DockerManifestEntry>>, ImageError> {
        if !self.has("manifest.json") {
            return Ok(None);
        }
        let bytes = self.read_json_bytes("manifest.json")?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ImageError::InvalidArchive {
                path: self.origin().to_owned(),
                reason: format!("manifest.json is not a docker save manifest: {e}"),
            })
    }

    /// Copies a member into the content store, verifying it against
    /// `expected` (and `expected_size`) when the source declares them.
    fn copy_blob(
        &self,
        store: &ImageStore,
        member: &str,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
        progress: &dyn Progress,
    ) -> Result<(Digest, u64), ImageError> {
        if let Some(d) = expected {
            if store.content().contains(d) {
                return Ok((d.clone(), store.content().size(d)?));
            }
        }
        let (reader, size) = self.open(member)?;
        progress.begin(&format!("copying {member}"), Some(size));
        let mut reader = ProgressReader::new(reader, progress);
        let digest = store
            .content()
            .put_reader(&mut reader, expected, expected_size)
            .map_err(|e| match e {
                crate::content::ContentError::DigestMismatch { expected, actual } => {
                    ImageError::DigestMismatch {
                        what: format!("{} member {member}", self.origin().display()),
                        expected,
                        actual,
                    }
                }
                other => other.into(),
            })?;
        progress.end();
        Ok((digest, size))
    }
}

fn blob_member(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// The digest a member's path declares (`blobs/sha256/<hex>`), if any.
fn declared_digest(member: &str) -> Option<Digest> {
    let hex = normalize_member(member)
        .strip_prefix("blobs/sha256/")?
        .to_owned();
    format!("sha256:{hex}").parse().ok()
}

fn import_docker(
    store: &ImageStore,
    source: &Source,
    entries: Vec<DockerManifestEntry>,
    name: &str,
    file: &Path,
    progress: &dyn Progress,
) -> Result<Digest, ImageError> {
    let invalid = |reason: String| ImageError::InvalidArchive {
        path: file.to_owned(),
        reason,
    };
    let entry = if entries.len() == 1 {
        &entries[0]
    } else {
        entries
            .iter()
            .find(|e| {
                e.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| normalize_name(t).is_ok_and(|t| t == name))
            })
            .ok_or_else(|| {
                let tags: Vec<&str> = entries
                    .iter()
                    .flat_map(|e| e.repo_tags.iter().flatten())
                    .map(String::as_str)
                    .collect();
                invalid(format!(
                    "archive holds {} images ({}); none is tagged {name}",
                    entries.len(),
                    tags.join(", ")
                ))
            })?
    };

    // Legacy archives name the config `<hex>.json`; newer ones put it under
    // `blobs/sha256/`. Both declare its digest.
    let config_member = normalize_member(&entry.config);
    let declared = declared_digest(&config_member).or_else(|| {
        config_member
            .strip_suffix(".json")
            .and_then(|hex| format!("sha256:{hex}").parse().ok())
    });
    let config_bytes = source.read_json_bytes(&config_member)?;
    let config_digest = Digest::of(&config_bytes);
    if let Some(declared) = declared {
        if declared != config_digest {
            return Err(ImageError::DigestMismatch {
                what: format!("{} config {config_member}", file.display()),
                expected: declared,
                actual: config_digest,
            });
        }
    }
    let config = ConfigFile::parse(&config_bytes, &config_digest)?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(invalid(format!(
            "manifest.json lists {} layers but the config lists {} diff ids",
            entry.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    store
        .content()
        .put_bytes(&config_bytes, Some(&config_digest))?;

    let mut layers = Vec::with_capacity(entry.layers.len());
    for (member, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let declared = declared_digest(member);
        let (blob, size) = source.copy_blob(store, member, declared.as_ref(), None, progress)?;
        let compression = blob_compression(store, &blob)?;
        let actual_diff = match compression {
            Compression::None => blob.clone(),
            _ => uncompressed_digest(store, &blob)?,
        };
        if actual_diff != *diff_id {
            return Err(ImageError::DigestMismatch {
                what: format!("{} layer {member} (uncompressed)", file.display()),
                expected: diff_id.clone(),
                actual: actual_diff,
            });
        }
        layers.push(Descriptor {
            media_type: compression.layer_media_type().to_owned(),
            digest: blob,
            size,
            platform: None,
            annotations: None,
        });
    }
    let config_desc = Descriptor {
        media_type: OCI_CONFIG.to_owned(),
        digest: config_digest,
        size: config_bytes.len() as u64,
        platform: None,
        annotations: None,
    };
    put_manifest(store, &ManifestDoc::oci(config_desc, layers))
}

fn put_manifest(store: &ImageStore, doc: &ManifestDoc) -> Result<Digest, ImageError> {
    let bytes = serde_json::to_vec(doc).map_err(|e| ImageError::InvalidManifest {
        what: "synthesized manifest".to_owned(),
        reason: e.to_string(),
    })?;
    Ok(store.content().put_bytes(&bytes, None)?)
}

fn blob_compression(store: &ImageStore, blob: &Digest) -> Result<Compression, ImageError> {
    let path = store.content().path(blob);
    let mut head = [0u8; 512];
    let n = read_head(&path, &mut head)?;
    Ok(Compression::detect(&head[..n]))
}

fn uncompressed_digest(store: &ImageStore, blob: &Digest) -> Result<Digest, ImageError> {
    let path = store.content().path(blob);
    let f = File::open(&path).map_err(ImageError::io(&path))?;
    let reader = unpack::decompress(BufReader::new(f)).map_err(ImageError::io(&path))?;
    let (digest, _) = HashingReader::new(reader)
        .finish()
        .map_err(ImageError::io(&path))?;
    Ok(digest)
}

fn import_oci(
    store: &ImageStore,
    source: &Source,
    name: &str,
    progress: &dyn Progress,
) -> Result<Digest, ImageError> {
    let origin = source.origin().to_owned();
    let index_what = format!("{} index.json", origin.display());
    let index = ManifestDoc::parse(&source.read_json_bytes("index.json")?, &index_what)?;
    let manifests = index.manifests.unwrap_or_default();
    let tag = tag_of(name);
    let by_name = manifests.iter().find(|d| {
        let Some(ref_name) = d
            .annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME_ANNOTATION))
        else {
            return false;
        };
        tag.as_deref() == Some(ref_name.as_str())
            || normalize_name(ref_name).is_ok_and(|r| r == name)
    });
    let chosen = match (by_name, manifests.len()) {
        (Some(d), _) => d,
        (None, 1) => &manifests[0],
        (None, 0) => {
            return Err(ImageError::InvalidManifest {
                what: index_what,
                reason: "the index lists no manifests".to_owned(),
            })
        }
        (None, _) => select_platform(&manifests, &index_what).map_err(|_| {
            let names: Vec<&str> = manifests
                .iter()
                .filter_map(|d| d.annotations.as_ref()?.get(REF_NAME_ANNOTATION))
                .map(String::as_str)
                .collect();
            ImageError::InvalidManifest {
                what: index_what.clone(),
                reason: format!(
                    "no manifest named {name} and no linux/amd64 one among {}",
                    names.join(", ")
                ),
            }
        })?,
    };

    let mut desc = chosen.clone();
    let mut doc = copy_manifest(store, source, &desc, progress)?;
    if doc.is_index() {
        let what = format!("{} index {}", origin.display(), desc.digest);
        desc = select_platform(doc.manifests.as_deref().unwrap_or_default(), &what)?.clone();
        doc = copy_manifest(store, source, &desc, progress)?;
    }
    let what = format!("{} manifest {}", origin.display(), desc.digest);
    let config = doc
        .config
        .as_ref()
        .ok_or_else(|| ImageError::InvalidManifest {
            what: what.clone(),
            reason: "no config".to_owned(),
        })?;
    source.copy_blob(
        store,
        &blob_member(&config.digest),
        Some(&config.digest),
        Some(config.size),
        progress,
    )?;
    for layer in doc.layers.iter().flatten() {
        source.copy_blob(
            store,
            &blob_member(&layer.digest),
            Some(&layer.digest),
            Some(layer.size),
            progress,
        )?;
    }
    Ok(desc.digest)
}

fn copy_manifest(
    store: &ImageStore,
    source: &Source,
    desc: &Descriptor,
    progress: &dyn Progress,
) -> Result<ManifestDoc, ImageError> {
    let member = blob_member(&desc.digest);
    source.copy_blob(
        store,
        &member,
        Some(&desc.digest),
        Some(desc.size),
        progress,
    )?;
    let what = format!("{} manifest {}", source.origin().display(), desc.digest);
    ManifestDoc::parse(&store.content().read(&desc.digest)?, &what)
}

/// A root-filesystem tarball becomes a one-layer image, as `docker import`
/// makes: the file is the layer blob as given, and the config is synthesized
/// without timestamps, so importing the same tarball twice yields the same
/// image id.
fn import_rootfs(
    store: &ImageStore,
    file: &Path,
    compression: Compression,
    diff_id: Option<Digest>,
    progress: &dyn Progress,
) -> Result<Digest, ImageError> {
    let f = File::open(file).map_err(ImageError::io(file))?;
    let size = f.metadata().map_err(ImageError::io(file))?.len();
    progress.begin(&format!("copying {}", file.display()), Some(size));
    let mut reader = ProgressReader::new(f, progress);
    let blob = store.content().put_reader(&mut reader, None, Some(size))?;
    progress.end();
    let diff_id = diff_id.unwrap_or_else(|| blob.clone());
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": [DEFAULT_PATH] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| ImageError::InvalidManifest {
        what: "synthesized config".to_owned(),
        reason: e.to_string(),
    })?;
    let config_digest = store.content().put_bytes(&config_bytes, None)?;
    let manifest = ManifestDoc::oci(
        Descriptor {
            media_type: OCI_CONFIG.to_owned(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: None,
        },
        vec![Descriptor {
            media_type: compression.layer_media_type().to_owned(),
            digest: blob,
            size,
            platform: None,
            annotations: None,
        }],
    );
    put_manifest(store, &manifest)
}
