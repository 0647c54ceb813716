//! Reaping every child of the shim in one place.
//!
//! The shim is a child subreaper: containers' init processes become its
//! children when the OCI runtime that started them exits. `waitpid(-1)` is the
//! only way to collect them, and it also collects the runtime invocations the
//! shim itself spawns — so all exits flow through here and are matched by pid.

use std::collections::HashMap;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The code a shell would report (128 + signal for a signal death).
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            Exit::Code(_) => None,
            Exit::Signal(s) => Some(s),
        }
    }
}

/// Collects exits; hands them out by pid, keeping those nobody asked for yet.
pub struct Reaper {
    rx: mpsc::UnboundedReceiver<(i32, Exit)>,
    unclaimed: HashMap<i32, Exit>,
}

impl Reaper {
    /// Must be created before the first child is spawned, so no SIGCHLD is missed.
    pub fn start() -> std::io::Result<Self> {
        let mut sigchld = signal(SignalKind::child())?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                reap_all(&tx);
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(Self {
            rx,
            unclaimed: HashMap::new(),
        })
    }

    /// Waits for the exit of `pid`, keeping other exits seen meanwhile.
    pub async fn wait_for(&mut self, pid: i32) -> Exit {
        if let Some(exit) = self.unclaimed.remove(&pid) {
            return exit;
        }
        while let Some((p, exit)) = self.rx.recv().await {
            if p == pid {
                return exit;
            }
            self.unclaimed.insert(p, exit);
        }
        // The reaper task only ends with the runtime; treat as killed.
        Exit::Signal(9)
    }

    /// Takes an already-collected exit of `pid`, if any.
    pub fn take(&mut self, pid: i32) -> Option<Exit> {
        self.unclaimed.remove(&pid)
    }

    /// The next exit of any child.
    pub async fn next(&mut self) -> Option<(i32, Exit)> {
        if let Some(&pid) = self.unclaimed.keys().next() {
            return self.unclaimed.remove_entry(&pid);
        }
        self.rx.recv().await
    }
}

fn reap_all(tx: &mpsc::UnboundedSender<(i32, Exit)>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                let _ = tx.send((pid.as_raw(), Exit::Code(code)));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                let _ = tx.send((pid.as_raw(), Exit::Signal(sig as i32)));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}
