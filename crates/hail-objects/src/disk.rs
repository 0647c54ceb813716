//! Object bytes on disk: immutable data files named by a random id.
//!
//! Layout under the objects directory:
//! - `tmp/<id>`: a file being written; never named by any row.
//! - `data/<id[..2]>/<id>`: a complete, fsynced data file.
//!
//! A data file is written once (to `tmp/`, fsynced, renamed into `data/`,
//! its directory fsynced) and never changed; it is removed only when no row
//! names it any more. Keys never become paths: only ids (32 hex digits)
//! do, so nothing a client sends can address a file.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hail_store::objects::Segment;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::ObjectsError;

/// What a finished write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub id: String,
    pub size: u64,
    pub md5: [u8; 16],
}

#[derive(Debug, Clone)]
pub struct Disk {
    tmp: PathBuf,
    data: PathBuf,
}

/// A new data id: 32 lowercase hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn is_data_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes a temp file unless the write it belongs to finished.
struct TempGuard {
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Disk {
    pub fn open(root: &Path) -> io::Result<Disk> {
        let disk = Disk {
            tmp: root.join("tmp"),
            data: root.join("data"),
        };
        std::fs::create_dir_all(&disk.tmp)?;
        std::fs::create_dir_all(&disk.data)?;
        sync_dir(root)?;
        Ok(disk)
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.data.join(&id[..2]).join(id)
    }

    /// Writes `body` into a new data file, checking that it holds exactly
    /// `expected` bytes when given and at most `max` bytes.
    pub async fn write<S, E>(
        &self,
        mut body: S,
        expected: Option<u64>,
        max: u64,
    ) -> Result<Written, ObjectsError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = new_id();
        let tmp = self.tmp.join(&id);
        let mut guard = TempGuard {
            path: Some(tmp.clone()),
        };
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(ObjectsError::io)?;
        let mut md5 = Md5::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ObjectsError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(ObjectsError::EntityTooLarge { max });
            }
            if expected.is_some_and(|e| size > e) {
                return Err(ObjectsError::Body(format!(
                    "the body is longer than its declared {} bytes",
                    expected.unwrap_or_default()
                )));
            }
            md5.update(&chunk);
            file.write_all(&chunk).await.map_err(ObjectsError::io)?;
        }
        if let Some(e) = expected {
            if size != e {
                return Err(ObjectsError::IncompleteBody {
                    declared: e,
                    received: size,
                });
            }
        }
        file.flush().await.map_err(ObjectsError::io)?;
        file.sync_all().await.map_err(ObjectsError::io)?;
        drop(file);
        let dest = self.path(&id);
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        let from = tmp.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            std::fs::rename(&from, &dest)?;
            sync_dir(&dir)
        })
        .await
        .map_err(|e| ObjectsError::Internal(format!("write task: {e}")))?
        .map_err(ObjectsError::io)?;
        guard.path = None;
        Ok(Written {
            id,
            size,
            md5: md5.finalize().into(),
        })
    }

    /// Opens the bytes `start..end` of an object made of `segments`. Files
    /// are opened before this returns, so the stream reads what they held
    /// now even if the object is replaced and its files removed meanwhile.
    pub async fn read(
        &self,
        segments: &[Segment],
        start: u64,
        end: u64,
    ) -> io::Result<impl Stream<Item = io::Result<Bytes>> + Send + Sync + 'static> {
        let mut readers = Vec::new();
        let mut offset = 0u64;
        for seg in segments {
            let (seg_start, seg_end) = (offset, offset + seg.size);
            offset = seg_end;
            if seg_end <= start || seg_start >= end {
                continue;
            }
            let from = start.max(seg_start) - seg_start;
            let to = end.min(seg_end) - seg_start;
            let mut file = tokio::fs::File::open(self.path(&seg.id)).await?;
            if from > 0 {
                file.seek(io::SeekFrom::Start(from)).await?;
            }
            readers.push(tokio_util::io::ReaderStream::with_capacity(
                file.take(to - from),
                256 * 1024,
            ));
        }
        Ok(futures_util::stream::iter(readers).flatten())
    }

    /// Removes data files (after the rows naming them are gone).
    pub async fn remove(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let paths: Vec<PathBuf> = ids.iter().map(|id| self.path(id)).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for path in paths {
                if let Err(e) = std::fs::remove_file(&path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(path = %path.display(), "remove data file: {e}");
                    }
                }
            }
        })
        .await;
    }

    /// Data files and temp files older than `grace`: (data ids, temp paths).
    /// Files younger than that may belong to a write still in flight.
    pub fn old_files(&self, grace: std::time::Duration) -> io::Result<(Vec<String>, Vec<PathBuf>)> {
        let now = std::time::SystemTime::now();
        let old = |meta: &std::fs::Metadata| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= grace)
        };
        let mut temps = Vec::new();
        for entry in std::fs::read_dir(&self.tmp)? {
            let entry = entry?;
            if old(&entry.metadata()?) {
                temps.push(entry.path());
            }
        }
        let mut ids = Vec::new();
        for dir in std::fs::read_dir(&self.data)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(dir.path())? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_data_id(&name) && old(&entry.metadata()?) {
                    ids.push(name);
                }
            }
        }
        Ok((ids, temps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    async fn collect(s: impl Stream<Item = io::Result<Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = Box::pin(s);
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn writes_are_complete_or_absent_and_reads_span_segments() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let a = disk
            .write(chunks(&[b"hello ", b"world"]), Some(11), 100)
            .await
            .unwrap();
        assert_eq!(a.size, 11);
        assert_eq!(hex::encode(a.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let b = disk.write(chunks(&[b"!!"]), None, 100).await.unwrap();
        let segs = vec![
            Segment {
                id: a.id.clone(),
                size: 11,
            },
            Segment {
                id: b.id.clone(),
                size: 2,
            },
        ];
        assert_eq!(
            collect(disk.read(&segs, 0, 13).await.unwrap()).await,
            b"hello world!!"
        );
        assert_eq!(
            collect(disk.read(&segs, 6, 12).await.unwrap()).await,
            b"world!"
        );
        assert_eq!(
            collect(disk.read(&segs, 11, 13).await.unwrap()).await,
            b"!!"
        );

        // A short body, a long body and an oversized one leave nothing behind.
        assert!(matches!(
            disk.write(chunks(&[b"abc"]), Some(5), 100).await,
            Err(ObjectsError::IncompleteBody { .. })
        ));
        assert!(disk
            .write(chunks(&[b"abcdef"]), Some(5), 100)
            .await
            .is_err());
        assert!(matches!(
            disk.write(chunks(&[b"abcdef"]), None, 3).await,
            Err(ObjectsError::EntityTooLarge { .. })
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        let (ids, temps) = disk.old_files(std::time::Duration::ZERO).unwrap();
        assert_eq!(ids.len(), 2);
        assert!(temps.is_empty());
        // An open reader survives the removal of its file.
        let reader = disk.read(&segs, 0, 13).await.unwrap();
        disk.remove(vec![a.id, b.id]).await;
        assert_eq!(collect(reader).await, b"hello world!!");
    }
}
