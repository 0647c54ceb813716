//! The stop signal of a sidecar.

use std::io;

/// Resolves on the first SIGTERM (what a container runtime sends to stop a
/// container) or SIGINT (Ctrl-C when run by hand).
pub async fn signal() -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
