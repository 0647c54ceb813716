//! Per-container log files: one JSON line per output line, rotated by size.
//!
//! The format is Docker's `json-file` (`{"log":"…\n","stream":"stdout","time":"…"}`),
//! so each record carries its stream and a nanosecond timestamp taken when the
//! line arrived. Files rotate at `max_bytes` into `NAME.1`, `NAME.2`, … keeping
//! `max_files` in all; the newest output is always in `NAME`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Lines longer than this are split into several records, as Docker does at 16 KiB.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of container output as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The line, with its trailing newline when it had one.
    pub log: String,
    pub stream: Stream,
    /// RFC 3339 with nanoseconds, UTC.
    pub time: String,
}

impl LogRecord {
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_files: 3,
        }
    }
}

/// Appends records to a container's log, rotating by size. Both streams of a
/// container share one writer so their relative order is kept.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

impl LogWriter {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            rotation,
        })
    }

    /// Writes one record per line of `chunk` (a chunk ends at a newline or at
    /// [`MAX_LINE_BYTES`]); invalid UTF-8 is replaced, never dropped.
    pub fn append(&mut self, stream: Stream, line: &[u8], at: DateTime<Utc>) -> io::Result<()> {
        let record = LogRecord {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        };
        let mut bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        bytes.push(b'\n');
        if self.size > 0 && self.size + bytes.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        // One write per record: a reader never sees half a record unless the
        // process dies inside the syscall, and readers skip a torn last line.
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let keep = self.rotation.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..keep - 1).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated_path(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The `n`th rotated file of the log at `path` (`NAME.n`; 1 is the newest).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}"));
    path.with_file_name(name)
}

/// Splits a byte stream into lines for [`LogWriter::append`], buffering a
/// partial line until its newline, [`MAX_LINE_BYTES`] or the end of the stream.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `data`, calling `emit` for each complete line.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE_BYTES - self.pending.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&window[..=i]);
                    emit(&self.pending);
                    self.pending.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    data = &data[window.len()..];
                    if self.pending.len() == MAX_LINE_BYTES {
                        emit(&self.pending);
                        self.pending.clear();
                    }
                }
            }
        }
    }

    /// The stream ended: emits what is left (a last line without newline).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// Reads every record of a container's log, oldest first (rotated files first).
/// A torn last line (a crash mid-write) is skipped.
pub fn read_all(path: &Path) -> io::Result<Vec<LogRecord>> {
    let mut files = Vec::new();
    let mut n = 1;
    while rotated_path(path, n).exists() {
        files.push(rotated_path(path, n));
        n += 1;
    }
    files.reverse();
    files.push(path.to_owned());
    let mut out = Vec::new();
    for f in files {
        let file = match File::open(&f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            if let Ok(record) = serde_json::from_str::<LogRecord>(&line?) {
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// Reads records appended to a log since the last call, across rotations.
pub struct LogFollower {
    path: PathBuf,
    offset: u64,
    inode: Option<u64>,
    partial: Vec<u8>,
}

impl LogFollower {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            offset: 0,
            inode: None,
            partial: Vec::new(),
        }
    }

    /// New complete records, oldest first.
    pub fn poll(&mut self) -> io::Result<Vec<LogRecord>> {
        use std::os::unix::fs::MetadataExt;

        let mut out = Vec::new();
        let current = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        if self.inode.is_some_and(|ino| ino != current.ino()) {
            // Rotated: the file we were reading is now NAME.1; finish it first.
            let old = rotated_path(&self.path, 1);
            if fs::metadata(&old).is_ok_and(|m| Some(m.ino()) == self.inode) {
                self.read_from(&old, &mut out)?;
            }
            self.offset = 0;
            self.partial.clear();
        }
        self.inode = Some(current.ino());
        let path = self.path.clone();
        self.read_from(&path, &mut out)?;
        Ok(out)
    }

    fn read_from(&mut self, path: &Path, out: &mut Vec<LogRecord>) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut start = 0;
        while let Some(i) = self.partial[start..].iter().position(|&b| b == b'\n') {
            if let Ok(record) = serde_json::from_slice::<LogRecord>(&self.partial[start..start + i])
            {
                out.push(record);
            }
            start += i + 1;
        }
        self.partial.drain(..start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_long_chunks() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        s.feed(b"a\nb", |l| lines.push(l.to_vec()));
        s.feed(b"c\n\nd", |l| lines.push(l.to_vec()));
        s.finish(|l| lines.push(l.to_vec()));
        assert_eq!(
            lines,
            vec![
                b"a\n".to_vec(),
                b"bc\n".to_vec(),
                b"\n".to_vec(),
                b"d".to_vec()
            ]
        );

        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 5];
        let mut lines = Vec::new();
        s.feed(&long, |l| lines.push(l.len()));
        s.finish(|l| lines.push(l.len()));
        assert_eq!(lines, vec![MAX_LINE_BYTES, MAX_LINE_BYTES, 5]);
    }

    #[test]
    fn rotates_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let rotation = Rotation {
            max_bytes: 400,
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, rotation).unwrap();
        for i in 0..40 {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            w.append(stream, format!("line {i}\n").as_bytes(), Utc::now())
                .unwrap();
        }
        assert!(rotated_path(&path, 2).exists());
        assert!(!rotated_path(&path, 3).exists(), "keeps max_files in all");
        for f in [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)] {
            assert!(fs::metadata(&f).unwrap().len() <= 400);
        }
        let records = read_all(&path).unwrap();
        let numbers: Vec<u32> = records
            .iter()
            .map(|r| r.log.trim().strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        assert_eq!(*numbers.last().unwrap(), 39);
        assert_eq!(records.last().unwrap().stream, Stream::Stderr);
        assert!(records[0].timestamp().is_some());
    }

    #[test]
    fn follower_sees_each_record_once_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let rotation = Rotation {
            max_bytes: 300,
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, rotation).unwrap();
        let mut follower = LogFollower::new(&path);
        let mut seen = Vec::new();
        for i in 0..30 {
            w.append(Stream::Stdout, format!("line {i}\n").as_bytes(), Utc::now())
                .unwrap();
            if i % 2 == 0 {
                seen.extend(follower.poll().unwrap());
            }
        }
        seen.extend(follower.poll().unwrap());
        let numbers: Vec<u32> = seen
            .iter()
            .map(|r| r.log.trim().strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut w = LogWriter::open(&path, Rotation::default()).unwrap();
        w.append(Stream::Stdout, b"whole\n", Utc::now()).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"log\":\"tor").unwrap();
        let records = read_all(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].log, "whole\n");
    }
}
