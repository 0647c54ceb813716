//! Hail's durable control-plane state: SQLite in `DIR/state.db`.
//!
//! One dedicated writer thread owns the only read-write connection: every
//! write is a closure run in one transaction on that thread, and
//! [`Store::write`] returns only after COMMIT (with `synchronous=FULL`, after
//! the WAL is fsynced), so an acknowledged write survives a crash or power
//! loss. Reads run on blocking threads over a small pool of query-only
//! connections; in WAL mode they see the last committed state and never wait
//! for the writer.
//!
//! The typed repositories ([`clusters`], [`task_definitions`], [`tasks`],
//! [`tags`], [`outbox`], [`logs`]) are plain functions over a `&Transaction`
//! or `&Connection`, so a caller composes several of them — a task update and
//! the outbox event announcing it — into one atomic write.
//!
//! Architecture invariant: this crate knows neither HTTP nor containers; it
//! stores `hail-model` shapes and hands them back.

pub mod autoscaling;
pub mod client_tokens;
pub mod clusters;
mod error;
pub mod identity;
pub mod load_balancing;
pub mod logs;
pub mod migrate;
pub mod objects;
pub mod outbox;
pub mod page;
pub mod services;
pub mod stacks;
pub mod tags;
pub mod task_definitions;
pub mod tasks;
pub mod triggers;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub use error::{Result, StoreError};
pub use page::Page;
pub use rusqlite::{Connection, Transaction};

use error::SqlContext;
use rusqlite::{OpenFlags, TransactionBehavior};

/// How long a connection waits on a lock before reporting SQLITE_BUSY. With a
/// single writer this only matters while a checkpoint holds the WAL briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle read connections kept open; more are opened on demand under load.
const READ_POOL_SIZE: usize = 4;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;
type Panic = Box<dyn Any + Send>;

/// A handle on the state database. Cheap to clone; all clones share one
/// writer thread and one read pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies pending
    /// migrations and starts the writer thread. Refuses a database whose
    /// schema is newer than this binary knows.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path).ctx(&format!("open {}", path.display()))?;
        configure(&conn, false)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .ctx("enable WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::InvalidArgument {
                what: path.display().to_string(),
                reason: format!("journal mode is {mode}, WAL could not be enabled"),
            });
        }
        migrate::migrate(&mut conn, now_millis())?;
        // SQLite fsyncs file contents but a just-created database file also
        // needs its directory entry on disk to survive power loss.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir)?;
        }

        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hail-store-writer".into())
            .spawn(move || {
                // Runs until every Store clone (and so every Sender) is gone.
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                jobs,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer thread and returns
    /// its value after COMMIT. If `f` fails, the transaction rolls back and
    /// nothing it did is kept. A panic in `f` rolls back and resumes in the
    /// caller. Once submitted, the write runs to completion even if the
    /// returned future is dropped; only its answer is lost.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Transaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (done, outcome) = tokio::sync::oneshot::channel::<Result<Result<T, E>, Panic>>();
        let job: Job = Box::new(move |conn: &mut Connection| {
            let result = catch_unwind(AssertUnwindSafe(|| run_in_transaction(conn, f)));
            // The caller may have stopped waiting; the write stands regardless.
            let _ = done.send(result);
        });
        self.inner
            .jobs
            .send(job)
            .map_err(|_| StoreError::WriterGone)?;
        match outcome.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(StoreError::WriterGone.into()),
        }
    }

    /// Runs `f` on a blocking thread with a read-only connection, inside a
    /// read transaction so that all its queries see one snapshot.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = {
                let tx = conn.unchecked_transaction().ctx("begin read")?;
                f(&tx)
            };
            inner.return_reader(conn);
            result
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down, and with it the store.
            Err(_) => Err(StoreError::WriterGone.into()),
        }
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection> {
        if let Some(conn) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx(&format!("open reader {}", self.path.display()))?;
        configure(&conn, true)?;
        Ok(conn)
    }

    fn return_reader(&self, conn: Connection) {
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READ_POOL_SIZE {
            pool.push(conn);
        }
    }
}

fn run_in_transaction<T, E, F>(conn: &mut Connection, f: F) -> Result<T, E>
where
    F: FnOnce(&Transaction) -> Result<T, E>,
    E: From<StoreError>,
{
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("begin write")?;
    let value = f(&tx)?;
    tx.commit().ctx("commit")?;
    Ok(value)
}

/// Per-connection settings. Readers are made query-only so that a repository
/// function handed a read connection can never write behind the writer's back.
fn configure(conn: &Connection, query_only: bool) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).ctx("set busy timeout")?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )
    .ctx("set pragmas")?;
    if query_only {
        conn.execute_batch("PRAGMA query_only = ON;")
            .ctx("set query_only")?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Milliseconds since the epoch by the wall clock, for bookkeeping columns
/// (migration times, outbox event times) that callers do not supply.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
