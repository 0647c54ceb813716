//! The content store: immutable blobs named by their sha256 digest.
//!
//! Layout: `<root>/sha256/<hex>`. A blob is written to a temporary name,
//! hashed as it streams, fsynced and renamed into place only when its digest
//! matches the one expected, so a blob present under a name is always whole
//! and always has that digest.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::durable;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {expected}: content has digest {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {expected}: expected {expected_size} bytes, got {actual_size}")]
    SizeMismatch {
        expected: Digest,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("content store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ContentError> {
        let root = root.into();
        let blobs = root.join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob lives (whether or not it is present).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let p = self.path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let p = self.path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(digest.clone()),
            _ => io_err(&p)(e),
        })
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let mut buf = Vec::new();
        let mut f = self.open_blob(digest)?;
        f.read_to_end(&mut buf)
            .map_err(io_err(&self.path(digest)))?;
        Ok(buf)
    }

    /// Stores `bytes`, verifying them against `expected` when given.
    pub fn put_bytes(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, ContentError> {
        let mut w = self.writer()?;
        w.write_all(bytes).map_err(io_err(&self.root))?;
        w.commit(expected, None)
    }

    /// Streams `reader` into the store, verifying digest and size when given.
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        let mut w = self.writer()?;
        io::copy(reader, &mut w).map_err(io_err(&self.root))?;
        w.commit(expected, expected_size)
    }

    /// A writer for a new blob; nothing is visible until [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        let tmp = durable::temp_path_for(&self.root.join("sha256").join("ingest"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(BlobWriter {
            store: self.clone(),
            tmp: Some(tmp),
            inner: Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, file))),
        })
    }

    /// Every blob present.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if let Ok(d) = format!("sha256:{}", entry.file_name().to_string_lossy()).parse() {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a blob; absent is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), ContentError> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Removes temporary files left by writers that never committed (a crash mid-ingest).
    pub fn remove_leftovers(&self) -> Result<usize, ContentError> {
        let dir = self.root.join("sha256");
        let mut n = 0;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if durable::is_temp_name(&entry.file_name().to_string_lossy()) {
                let _ = fs::remove_file(entry.path());
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A blob being written. Dropped without commit, it leaves nothing behind.
pub struct BlobWriter {
    store: ContentStore,
    tmp: Option<PathBuf>,
    inner: Option<HashingWriter<BufWriter<File>>>,
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, |w| w.written())
    }

    /// Verifies and publishes the blob under its digest.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        let tmp = self.tmp.take().expect("commit runs once");
        let (buf, digest, size) = self.inner.take().expect("commit runs once").finish();
        let result = (|| {
            let file = buf.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
            if let Some(expected) = expected {
                if *expected != digest {
                    return Err(ContentError::DigestMismatch {
                        expected: expected.clone(),
                        actual: digest.clone(),
                    });
                }
            }
            if let Some(expected_size) = expected_size {
                if expected_size != size {
                    return Err(ContentError::SizeMismatch {
                        expected: digest.clone(),
                        expected_size,
                        actual_size: size,
                    });
                }
            }
            file.sync_all().map_err(io_err(&tmp))?;
            let dest = self.store.path(&digest);
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            durable::fsync_dir(dest.parent().expect("blob has a parent")).map_err(io_err(&dest))?;
            Ok(digest)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().expect("writer open").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("writer open").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_verified_blobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"layer", None).unwrap();
        assert!(store.contains(&d));
        assert_eq!(store.read(&d).unwrap(), b"layer");
        assert_eq!(store.put_bytes(b"layer", Some(&d)).unwrap(), d);

        let wrong = Digest::of(b"other");
        let err = store
            .put_bytes(b"layer-tampered", Some(&wrong))
            .unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&wrong));
        assert_eq!(store.list().unwrap(), vec![d.clone()]);

        let mut reader: &[u8] = b"abc";
        let err = store.put_reader(&mut reader, None, Some(4)).unwrap_err();
        assert!(matches!(err, ContentError::SizeMismatch { .. }), "{err}");
        assert_eq!(store.list().unwrap(), vec![d.clone()]);

        store.remove(&d).unwrap();
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn abandoned_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        {
            let mut w = store.writer().unwrap();
            w.write_all(b"partial").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path().join("sha256")).unwrap().count(), 0);
    }
}
