//! Shims started before their task. Starting a shim is an exec of the `hail`
//! binary (a large, dynamically linked program: relocations, the CLI parser,
//! a logger) — milliseconds on the start path of every task, where the
//! container's own start costs tens. So the runtime keeps a few shims
//! started and waiting: each reads one line on stdin, the directory of its
//! task, then supervises that task exactly as one started for it would.
//!
//! A spare is made after a start completes, never during one: on a small
//! host the exec would compete for the CPU with the container it is meant to
//! speed up. When the runtime goes away its spares read end of input and
//! exit; a spare that died meanwhile is noticed on hand-over (a broken pipe)
//! and replaced by a shim started on the spot.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A shim waiting for its task.
pub(crate) struct Spare {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl Spare {
    fn start(binary: &Path) -> io::Result<Self> {
        let mut child = Command::new(binary)
            .arg("shim")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Until it has a task, a shim has nothing to say; from then on
            // it writes to the task's shim log.
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Gives the shim its task; returns the pipe on which it reports how the
    /// start went. The shim lives on in its own session, reaped by tokio
    /// when it exits.
    pub(crate) async fn hand_over(mut self, task_dir: &Path) -> io::Result<ChildStdout> {
        let dir = task_dir
            .to_str()
            .filter(|d| !d.contains('\n'))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "task directory {} is not one line of UTF-8",
                        task_dir.display()
                    ),
                )
            })?;
        self.stdin.write_all(format!("{dir}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(self.stdout)
    }
}

/// The runtime's spares.
pub(crate) struct SpareShims {
    binary: PathBuf,
    /// How many spares to keep.
    target: usize,
    spares: Mutex<Vec<Spare>>,
}

impl SpareShims {
    pub(crate) fn new(binary: PathBuf, target: usize) -> Arc<Self> {
        Arc::new(Self {
            binary,
            target,
            spares: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        // A panic while holding the lock leaves at worst a spare too few.
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A spare if one waits, else a shim started now.
    fn take(&self) -> io::Result<Spare> {
        match self.lock().pop() {
            Some(spare) => Ok(spare),
            None => Spare::start(&self.binary),
        }
    }

    /// Hands `task_dir` to a shim: a spare, or — when none waits or the one
    /// taken has died — one started now.
    pub(crate) async fn hand_over(&self, task_dir: &Path) -> io::Result<ChildStdout> {
        let spare = self.take()?;
        match spare.hand_over(task_dir).await {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                Spare::start(&self.binary)?.hand_over(task_dir).await
            }
            result => result,
        }
    }

    /// Starts spares until `target` wait. Call after a start, not before one.
    pub(crate) fn replenish(&self) {
        loop {
            if self.lock().len() >= self.target {
                return;
            }
            match Spare::start(&self.binary) {
                Ok(spare) => {
                    let mut spares = self.lock();
                    // Another replenish may have filled up meanwhile: a spare
                    // dropped here reads end of input and exits.
                    if spares.len() < self.target {
                        spares.push(spare);
                    }
                }
                Err(e) => {
                    tracing::warn!(binary = %self.binary.display(), error = %e, "cannot start a spare shim");
                    return;
                }
            }
        }
    }

    /// Process ids of the spares waiting now.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock().iter().filter_map(Spare::pid).collect()
    }
}
