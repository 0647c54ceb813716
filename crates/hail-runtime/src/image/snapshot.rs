//! Snapshots: each layer unpacked once, keyed by its diff id, shared by every
//! container whose image holds it.
//!
//! Layout: `<root>/<diff id hex>/fs` is the unpacked tree and
//! `<root>/<diff id hex>/complete` marks it whole. A snapshot is unpacked into
//! a temporary directory (`<root>/.tmp-…`), marked complete, fsynced and only
//! then renamed into place, so a snapshot visible under its name is always
//! complete. An flock on `<root>/<hex>.lock` makes concurrent callers, threads
//! or processes, wait for one unpack instead of doing their own.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::unpack::{self, UnpackPolicy};
use super::ImageError;
use crate::digest::{Digest, HashingReader};
use crate::durable;
use crate::progress::{Progress, ProgressReader};

const COMPLETE_MARKER: &str = "complete";
const LOCK_SUFFIX: &str = ".lock";

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(ImageError::io(&root))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The unpacked tree of a layer (whether or not it exists yet).
    pub fn rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.root.join(diff_id.hex()).join("fs")
    }

    pub fn is_complete(&self, diff_id: &Digest) -> bool {
        self.root
            .join(diff_id.hex())
            .join(COMPLETE_MARKER)
            .is_file()
    }

    /// Returns the unpacked tree of `diff_id`, unpacking the blob at `blob`
    /// (compressed or not) first if no complete snapshot exists. The stream is
    /// hashed while unpacking and must hash to `diff_id`. Returns whether this
    /// call did the unpacking.
    pub fn ensure(
        &self,
        diff_id: &Digest,
        blob: &Path,
        policy: &UnpackPolicy,
        progress: &dyn Progress,
    ) -> Result<(PathBuf, bool), ImageError> {
        let fs_dir = self.rootfs(diff_id);
        if self.is_complete(diff_id) {
            return Ok((fs_dir, false));
        }
        let _lock = self.lock(diff_id)?;
        if self.is_complete(diff_id) {
            return Ok((fs_dir, false));
        }
        let dest = self.root.join(diff_id.hex());
        let tmp = durable::temp_path_for(&dest);
        let result = self.unpack_into(&tmp, diff_id, blob, policy, progress);
        let result = result.and_then(|()| {
            // A directory under the final name without its marker can only be
            // debris of a tool that bypassed this code; it is not trusted.
            if dest.exists() {
                fs::remove_dir_all(&dest).map_err(ImageError::io(&dest))?;
            }
            fs::rename(&tmp, &dest).map_err(ImageError::io(&dest))?;
            durable::fsync_dir(&self.root).map_err(ImageError::io(&self.root))
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| (fs_dir, true))
    }

    fn unpack_into(
        &self,
        tmp: &Path,
        diff_id: &Digest,
        blob: &Path,
        policy: &UnpackPolicy,
        progress: &dyn Progress,
    ) -> Result<(), ImageError> {
        let fs_dir = tmp.join("fs");
        fs::create_dir(tmp).map_err(ImageError::io(tmp))?;
        fs::create_dir(&fs_dir).map_err(ImageError::io(&fs_dir))?;
        let file = File::open(blob).map_err(ImageError::io(blob))?;
        let size = file.metadata().map(|m| m.len()).ok();
        progress.begin(&format!("unpacking layer {}", diff_id.short()), size);
        let reader = BufReader::with_capacity(1 << 20, ProgressReader::new(file, progress));
        let decompressed = unpack::decompress(reader).map_err(ImageError::io(blob))?;
        let mut hashing = HashingReader::new(decompressed);
        let label = diff_id.to_string();
        unpack::unpack_layer(&mut hashing, &fs_dir, &label, policy)?;
        let (actual, _) = hashing.finish().map_err(|source| ImageError::LayerRead {
            layer: label.clone(),
            source,
        })?;
        progress.end();
        if actual != *diff_id {
            return Err(ImageError::DigestMismatch {
                what: format!("layer {} (uncompressed)", blob.display()),
                expected: diff_id.clone(),
                actual,
            });
        }
        let marker = tmp.join(COMPLETE_MARKER);
        durable::write_atomic(&marker, diff_id.to_string().as_bytes())
            .map_err(ImageError::io(&marker))?;
        Ok(())
    }

    fn lock(&self, diff_id: &Digest) -> Result<Flock<File>, ImageError> {
        let path = self.root.join(format!("{}{LOCK_SUFFIX}", diff_id.hex()));
        lock_file(&path, FlockArg::LockExclusive)
    }

    /// Diff ids of every complete snapshot.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(ImageError::io(&self.root))? {
            let entry = entry.map_err(ImageError::io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(d) = format!("sha256:{name}").parse::<Digest>() {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a snapshot and its lock file. The caller guarantees no unpack
    /// of it is running (the store's gc lock).
    pub fn remove(&self, diff_id: &Digest) -> Result<(), ImageError> {
        let dir = self.root.join(diff_id.hex());
        // Rename first so a crash mid-removal leaves a temp name gc will finish,
        // never a half-deleted tree under the real name.
        let doomed = durable::temp_path_for(&dir);
        match fs::rename(&dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(ImageError::io(&doomed))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(&dir)(e)),
        }
        let lock = self.root.join(format!("{}{LOCK_SUFFIX}", diff_id.hex()));
        match fs::remove_file(&lock) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io(&lock)(e)),
        }
    }

    /// Removes temporary trees left by unpacks or removals a crash interrupted,
    /// and the locks of snapshots that do not exist.
    /// The caller guarantees no unpack is running.
    pub fn remove_leftovers(&self) -> Result<usize, ImageError> {
        let mut n = 0;
        for entry in fs::read_dir(&self.root).map_err(ImageError::io(&self.root))? {
            let entry = entry.map_err(ImageError::io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A lock whose snapshot does not exist is left by a failed unpack.
            let stale_lock = name
                .strip_suffix(LOCK_SUFFIX)
                .is_some_and(|hex| !self.root.join(hex).exists());
            if durable::is_temp_name(&name) || stale_lock {
                let p = entry.path();
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(ImageError::io(&p))?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Opens (creating) `path` and takes an flock on it. flock locks belong to the
/// open file description, so separate opens conflict even between threads of
/// one process.
pub(crate) fn lock_file(path: &Path, arg: FlockArg) -> Result<Flock<File>, ImageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(ImageError::io(path))?;
    Flock::lock(file, arg).map_err(|(_, errno)| ImageError::io(path)(errno.into()))
}
