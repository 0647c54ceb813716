//! Ships containers' output into CloudWatch Logs streams, as ECS's
//! `awslogs` driver does.
//!
//! The shim writes each container's output to a json-file log
//! (`hail_runtime::logs`). A follower per container polls that file, reads
//! the complete records past its cursor (the file's inode and a byte
//! offset), and commits them as events together with the new cursor in one
//! store transaction: a crash can neither lose a shipped line nor ship one
//! twice, and after a restart the follower resumes where the store says. A
//! size rotation (`NAME` → `NAME.1`) is followed: the rest of the rotated
//! file is shipped before the new one.
//!
//! The same follower routes an `awsfirelens` container's output to the
//! task's log router ([`super::firelens`]): there the batch goes over the
//! wire first and the cursor moves once the router acknowledged it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hail_runtime::logs::{rotated_path, LogRecord};
use hail_store::logs::{self as store_logs, InputEvent, ShipCursor};
use hail_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use super::firelens::{FirelensRoute, Forwarder};
use super::{LogsError, LogsErrorKind, MAX_EVENT_BYTES};
use crate::EngineError;

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(200);
/// Most bytes of a file read into one batch (one transaction).
const BATCH_BYTES: usize = 512 * 1024;

/// One container's output and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipSource {
    pub task_id: String,
    pub container: String,
    /// The container's json-file log.
    pub path: PathBuf,
    pub sink: ShipSink,
}

/// Where a container's output is shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipSink {
    /// `awslogs`: a CloudWatch Logs stream of this server.
    CloudWatch { group: String, stream: String },
    /// `awsfirelens`: the task's log router.
    Firelens(FirelensRoute),
}

/// How long draining a stopped task's output waits for a log router that
/// no longer answers; what it could not take stays in the task's log files.
const ROUTER_DRAIN_WAIT: Duration = Duration::from_secs(3);

enum Command {
    /// Ship everything written so far, answer, and stop.
    Drain(oneshot::Sender<()>),
}

struct Follow {
    container: String,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Clone)]
pub struct LogShipper {
    store: Store,
    follows: Arc<Mutex<HashMap<String, Vec<Follow>>>>,
}

impl std::fmt::Debug for LogShipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogShipper").finish_non_exhaustive()
    }
}

impl LogShipper {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            follows: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Before the containers start: the stream exists (and the group, when
    /// the definition asks for `awslogs-create-group`). A missing group is
    /// an error in ECS's words.
    pub async fn prepare(
        &self,
        source: &ShipSource,
        create_group: bool,
    ) -> Result<(), EngineError> {
        let ShipSink::CloudWatch { group, stream } = &source.sink else {
            return Ok(());
        };
        let (group, stream) = (group.clone(), stream.clone());
        let now = now_millis();
        self.store
            .write(move |tx| {
                if store_logs::get_group(tx, &group)?.is_none() {
                    if !create_group {
                        return Ok(false);
                    }
                    store_logs::create_group(tx, &group, now, None, &Default::default())?;
                }
                if store_logs::get_stream(tx, &group, &stream)?.is_none() {
                    store_logs::create_stream(tx, &group, &stream, now)?;
                }
                Ok::<_, StoreError>(true)
            })
            .await?
            .then_some(())
            .ok_or_else(|| {
                EngineError::Logs(LogsError {
                    kind: LogsErrorKind::NotFound,
                    message: "ResourceInitializationError: failed to validate logger args: The \
                              specified log group does not exist. : ResourceNotFoundException: \
                              The specified log group does not exist."
                        .to_owned(),
                })
            })
    }

    /// Starts following a container's log (once per task and container).
    pub fn follow(&self, source: ShipSource) {
        let mut follows = self.follows.lock().unwrap_or_else(|p| p.into_inner());
        let task = follows.entry(source.task_id.clone()).or_default();
        if task.iter().any(|f| f.container == source.container) {
            return;
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        task.push(Follow {
            container: source.container.clone(),
            commands,
        });
        tokio::spawn(run_follower(self.store.clone(), source, receiver));
    }

    /// Ships everything the task's containers wrote so far and stops
    /// following them; returns once it is committed.
    pub async fn drain(&self, task_id: &str) {
        let follows = self
            .follows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id)
            .unwrap_or_default();
        // All containers drain at once: one whose router is gone must not
        // hold the others up.
        let mut waits = Vec::new();
        for follow in follows {
            let (done, wait) = oneshot::channel();
            if follow.commands.send(Command::Drain(done)).is_ok() {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
    }

    /// Drops the task's cursors: its files are about to be deleted.
    pub async fn forget(&self, task_id: &str) -> Result<(), EngineError> {
        self.follows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
        let id = task_id.to_owned();
        self.store
            .write(move |tx| store_logs::delete_cursors(tx, &id))
            .await?;
        Ok(())
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn run_follower(
    store: Store,
    source: ShipSource,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let (task, container) = (source.task_id.clone(), source.container.clone());
    let mut cursor = match store
        .read(move |conn| store_logs::get_cursor(conn, &task, &container))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(task = %source.task_id, container = %source.container, "log cursor: {e}");
            return;
        }
    };
    let mut forwarder = match &source.sink {
        ShipSink::CloudWatch { .. } => None,
        ShipSink::Firelens(route) => Some(Forwarder::new(route.clone())),
    };
    // Only the first of a run of router failures is worth a warning.
    let mut router_failing = false;
    loop {
        let drain = tokio::select! {
            _ = tokio::time::sleep(POLL) => None,
            command = commands.recv() => match command {
                Some(Command::Drain(done)) => Some(done),
                // The shipper forgot the task.
                None => return,
            },
        };
        let give_up_at = tokio::time::Instant::now() + ROUTER_DRAIN_WAIT;
        // Ship until the file has nothing more; a drain must leave nothing behind.
        loop {
            let shipped = ship_once(&store, &source, cursor, forwarder.as_mut());
            // While draining, a router that no longer answers gets the
            // drain's wait in all, not a full timeout per attempt.
            let shipped = match (&drain, &source.sink) {
                (Some(_), ShipSink::Firelens(_)) => {
                    match tokio::time::timeout_at(give_up_at, shipped).await {
                        Ok(result) => result,
                        Err(_) => Err(ShipError::Router(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the log router did not take the task's last output in time",
                        ))),
                    }
                }
                _ => shipped.await,
            };
            match shipped {
                Ok((next, more)) => {
                    cursor = next;
                    router_failing = false;
                    if !more {
                        break;
                    }
                }
                Err(ShipError::Store(StoreError::Conflict { .. })) => {
                    let (task, container) = (source.task_id.clone(), source.container.clone());
                    match store
                        .read(move |conn| store_logs::get_cursor(conn, &task, &container))
                        .await
                    {
                        Ok(c) => cursor = c,
                        Err(e) => {
                            tracing::warn!(task = %source.task_id, "log cursor: {e}");
                            break;
                        }
                    }
                }
                Err(ShipError::Router(e)) => {
                    if !router_failing {
                        tracing::info!(
                            task = %source.task_id,
                            container = %source.container,
                            "log router not reachable yet: {e}"
                        );
                    }
                    router_failing = true;
                    // Retried on the next poll; while draining, for a while.
                    if drain.is_none() || tokio::time::Instant::now() >= give_up_at {
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(ShipError::Store(e)) => {
                    tracing::warn!(task = %source.task_id, container = %source.container, "ship logs: {e}");
                    break;
                }
            }
        }
        if let Some(done) = drain {
            let _ = done.send(());
            return;
        }
        let task_dir_gone = source
            .path
            .parent()
            .and_then(Path::parent)
            .is_some_and(|dir| !dir.exists());
        if task_dir_gone {
            return;
        }
    }
}

enum ShipError {
    Store(StoreError),
    /// The log router did not take the batch; nothing moved.
    Router(std::io::Error),
}

impl From<StoreError> for ShipError {
    fn from(e: StoreError) -> Self {
        ShipError::Store(e)
    }
}

/// Reads one batch past `cursor` and delivers it — committed as events
/// with the cursor that follows it, or acknowledged by the log router and
/// then the cursor committed. Returns the new cursor and whether more may
/// be waiting.
async fn ship_once(
    store: &Store,
    source: &ShipSource,
    cursor: ShipCursor,
    forwarder: Option<&mut Forwarder>,
) -> Result<(ShipCursor, bool), ShipError> {
    let path = source.path.clone();
    let read = tokio::task::spawn_blocking(move || read_batch(&path, cursor))
        .await
        .map_err(|e| StoreError::InvalidArgument {
            what: "log reader".to_owned(),
            reason: e.to_string(),
        })?;
    let batch = match read {
        Ok(b) => b,
        Err(e) => {
            return Err(ShipError::Store(StoreError::InvalidArgument {
                what: source.path.display().to_string(),
                reason: e.to_string(),
            }))
        }
    };
    if batch.cursor == cursor {
        return Ok((cursor, false));
    }
    let events = match (&source.sink, forwarder) {
        (ShipSink::CloudWatch { group, stream }, _) => {
            Some((group.clone(), stream.clone(), to_events(&batch.records)))
        }
        (ShipSink::Firelens(_), Some(forwarder)) => {
            forwarder
                .send(&batch.records)
                .await
                .map_err(ShipError::Router)?;
            None
        }
        (ShipSink::Firelens(_), None) => {
            return Err(ShipError::Router(std::io::ErrorKind::NotConnected.into()))
        }
    };
    let (task, container) = (source.task_id.clone(), source.container.clone());
    let next = batch.cursor;
    store
        .write(move |tx| {
            // Only the follower holding the stored position may move it: a
            // second follower of the same file (one left over from a
            // shipper being replaced) loses here and re-reads the position
            // instead of shipping the same lines twice.
            if store_logs::get_cursor(tx, &task, &container)? != cursor {
                return Err(StoreError::Conflict {
                    what: format!("log cursor of {task}/{container} moved"),
                });
            }
            if let Some((group, stream, events)) = events.filter(|(_, _, e)| !e.is_empty()) {
                match store_logs::put_events(tx, &group, &stream, &events, now_millis()) {
                    Ok(()) => {}
                    // The user deleted the group or stream: its output has
                    // nowhere to go, and holding the cursor back would only
                    // stall the follower. The lines stay in the task's file.
                    Err(StoreError::NotFound { what }) => {
                        tracing::warn!("dropping {} log events: {what} is gone", events.len());
                    }
                    Err(e) => return Err(e),
                }
            }
            store_logs::set_cursor(tx, &task, &container, next)
        })
        .await?;
    Ok((next, batch.more))
}

struct Batch {
    records: Vec<LogRecord>,
    cursor: ShipCursor,
    more: bool,
}

/// Complete records past `cursor`, at most [`BATCH_BYTES`] of file. The
/// files are read oldest first — rotated ones (`NAME.n` … `NAME.1`) before
/// the current one — so output written while nobody followed (before the
/// first poll, while the server was down) is shipped in order.
fn read_batch(path: &Path, cursor: ShipCursor) -> std::io::Result<Batch> {
    let chain = file_chain(path)?;
    let Some(last) = chain.len().checked_sub(1) else {
        return Ok(Batch {
            records: Vec::new(),
            cursor,
            more: false,
        });
    };
    let (index, offset) = match cursor.inode {
        None => (0, 0),
        Some(inode) => match chain.iter().position(|(_, ino)| *ino == inode) {
            Some(i) => (i, cursor.offset),
            // The file rotated out of reach: go on with the oldest left.
            None => (0, 0),
        },
    };
    let (file, inode) = &chain[index];
    let Some((records, offset, at_end)) = read_records(file, *inode, offset)? else {
        // Rotated between listing and opening: look again.
        return Ok(Batch {
            records: Vec::new(),
            cursor,
            more: true,
        });
    };
    if at_end && records.is_empty() && index < last {
        // This file is finished; the next newer one starts at its beginning.
        return Ok(Batch {
            records,
            cursor: ShipCursor {
                inode: Some(chain[index + 1].1),
                offset: 0,
            },
            more: true,
        });
    }
    Ok(Batch {
        records,
        cursor: ShipCursor {
            inode: Some(*inode),
            offset,
        },
        more: !at_end || index < last,
    })
}

/// The log's files with their inodes, oldest first, the current one last;
/// empty before the log exists.
fn file_chain(path: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut chain = Vec::new();
    let mut n = 1;
    while let Ok(m) = std::fs::metadata(rotated_path(path, n)) {
        chain.push((rotated_path(path, n), m.ino()));
        n += 1;
    }
    chain.reverse();
    match std::fs::metadata(path) {
        Ok(m) => chain.push((path.to_owned(), m.ino())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(chain)
}

/// The complete records of `path` from `offset`, the offset after the last
/// of them, and whether the read reached the end of what was written; `None`
/// when `path` is no longer the file `inode`.
fn read_records(
    path: &Path,
    inode: u64,
    offset: u64,
) -> std::io::Result<Option<(Vec<LogRecord>, u64, bool)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.metadata()?.ino() != inode {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.take(BATCH_BYTES as u64).read_to_end(&mut buf)?;
    let at_end = buf.len() < BATCH_BYTES;
    let mut records = Vec::new();
    let mut consumed = 0;
    while let Some(i) = buf[consumed..].iter().position(|&b| b == b'\n') {
        // A line that is not a record (a torn write after a crash) is skipped.
        if let Ok(record) = serde_json::from_slice::<LogRecord>(&buf[consumed..consumed + i]) {
            records.push(record);
        }
        consumed += i + 1;
    }
    // A single record larger than a batch cannot be split at a newline; the
    // shim bounds lines well below this, so it is skipped rather than stuck on.
    if consumed == 0 && buf.len() == BATCH_BYTES {
        consumed = buf.len();
    }
    Ok(Some((
        records,
        offset + consumed as u64,
        at_end || consumed == 0,
    )))
}

/// Records as CloudWatch events: the line without its newline, at the
/// record's time; lines over CloudWatch's event size split into several.
fn to_events(records: &[LogRecord]) -> Vec<InputEvent> {
    let mut events = Vec::new();
    for record in records {
        let timestamp = record
            .timestamp()
            .map_or_else(now_millis, |t| t.timestamp_millis());
        let line = record.log.strip_suffix('\n').unwrap_or(&record.log);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut rest = line;
        while !rest.is_empty() {
            let mut end = rest.len().min(MAX_EVENT_BYTES);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            events.push(InputEvent {
                timestamp,
                message: rest[..end].to_owned(),
            });
            rest = &rest[end..];
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use hail_runtime::logs::{LogWriter, Rotation, Stream};
    use hail_store::logs::GetEvents;

    use super::*;

    const TASK: &str = "0123456789abcdef0123456789abcdef";

    fn source(dir: &Path) -> ShipSource {
        ShipSource {
            task_id: TASK.into(),
            container: "app".into(),
            path: dir.join("tasks").join(TASK).join("logs").join("app.log"),
            sink: ShipSink::CloudWatch {
                group: "/ecs/app".into(),
                stream: format!("ecs/app/{TASK}"),
            },
        }
    }

    async fn messages(store: &Store, s: &ShipSource) -> Vec<String> {
        let ShipSink::CloudWatch { group, stream } = &s.sink else {
            unreachable!("a CloudWatch source")
        };
        let (g, st) = (group.clone(), stream.clone());
        store
            .read(move |conn| {
                store_logs::get_events(
                    conn,
                    &g,
                    &st,
                    &GetEvents {
                        start_from_head: true,
                        ..GetEvents::default()
                    },
                )
            })
            .await
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn ships_every_line_once_across_rotation_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        let s = source(dir.path());
        std::fs::create_dir_all(s.path.parent().unwrap()).unwrap();
        // Small files: the writer rotates every few lines.
        let mut writer = LogWriter::open(
            &s.path,
            Rotation {
                max_bytes: 400,
                max_files: 3,
            },
        )
        .unwrap();
        let shipper = LogShipper::new(store.clone());
        let err = shipper.prepare(&s, false).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ResourceInitializationError: failed to validate logger args"),
            "{err}"
        );
        shipper.prepare(&s, true).await.unwrap();
        shipper.follow(s.clone());
        for i in 0..10 {
            writer
                .append(Stream::Stdout, format!("line {i}\n").as_bytes(), Utc::now())
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        // A new shipper on the same store (the server restarted) resumes.
        drop(shipper);
        let shipper = LogShipper::new(store.clone());
        shipper.follow(s.clone());
        for i in 10..20 {
            writer
                .append(Stream::Stderr, format!("line {i}\n").as_bytes(), Utc::now())
                .unwrap();
        }
        shipper.drain(TASK).await;
        let expected: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        assert_eq!(messages(&store, &s).await, expected);
        assert!(
            std::fs::metadata(rotated_path(&s.path, 1)).is_ok(),
            "the log rotated"
        );
        // Nothing more to ship: draining again adds nothing.
        shipper.follow(s.clone());
        shipper.drain(TASK).await;
        assert_eq!(messages(&store, &s).await.len(), 20);
        shipper.forget(TASK).await.unwrap();
        let cursor = store
            .read(|conn| store_logs::get_cursor(conn, TASK, "app"))
            .await
            .unwrap();
        assert_eq!(cursor, ShipCursor::default());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_router_that_never_answers_holds_a_drain_for_one_wait_in_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        // A router that takes connections and bytes but never acknowledges.
        let router = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = router.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = router.accept().await {
                held.push(stream);
            }
        });
        let shipper = LogShipper::new(store.clone());
        for container in ["app", "sidecar"] {
            let path = dir
                .path()
                .join("tasks")
                .join(TASK)
                .join("logs")
                .join(format!("{container}.log"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut writer = LogWriter::open(&path, Rotation::default()).unwrap();
            writer
                .append(Stream::Stdout, b"last words\n", Utc::now())
                .unwrap();
            shipper.follow(ShipSource {
                task_id: TASK.into(),
                container: container.into(),
                path,
                sink: ShipSink::Firelens(FirelensRoute {
                    router: address,
                    tag: FirelensRoute::tag_for(container, TASK),
                    fields: Vec::new(),
                }),
            });
        }
        let started = std::time::Instant::now();
        shipper.drain(TASK).await;
        let took = started.elapsed();
        // Each container alone would wait a full router timeout per attempt;
        // the drain gives up after its own wait, for both at once.
        assert!(
            took < ROUTER_DRAIN_WAIT + Duration::from_millis(1500),
            "draining took {took:?}"
        );
        let cursor = store
            .read(|conn| store_logs::get_cursor(conn, TASK, "app"))
            .await
            .unwrap();
        assert_eq!(
            cursor,
            ShipCursor::default(),
            "nothing the router did not take is marked shipped"
        );
    }

    #[test]
    fn long_lines_split_at_the_event_limit_and_newlines_go() {
        let record = LogRecord {
            log: format!("{}\n", "é".repeat(MAX_EVENT_BYTES)),
            stream: Stream::Stdout,
            time: "2026-01-01T00:00:00.000000001Z".into(),
        };
        let events = to_events(&[record]);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.message.len() <= MAX_EVENT_BYTES));
        assert_eq!(
            events.iter().map(|e| e.message.len()).sum::<usize>(),
            2 * MAX_EVENT_BYTES
        );
        assert_eq!(events[0].timestamp, 1_767_225_600_000);
    }
}
