//! The data path's own threads. Each worker is a thread with a
//! single-threaded Tokio runtime that accepts on its own socket of every
//! listener (`SO_REUSEPORT`: the kernel spreads connections over them) and
//! owns its own pool of connections to targets, as an nginx worker does: a
//! request, its client connection and its target connection live on one
//! thread, so forwarding costs no cross-thread wake-up, and the control
//! plane's runtime (the engine, health checks) never delays a request.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::proxy::{self, ProxyClient};

/// What the listeners need to run on one worker.
#[derive(Clone)]
pub(crate) struct Worker {
    pub(crate) handle: Handle,
    /// This worker's pool of keep-alive connections to targets; used only
    /// from this worker's thread, so its connection tasks run there too.
    pub(crate) client: ProxyClient,
}

/// Owns the worker threads: dropping the last [`crate::Gateway`] handle
/// drops this, which stops every worker's runtime and with it every task the
/// data path runs (listeners, connections).
pub(crate) struct WorkerThreads {
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerThreads {
    pub(crate) fn start(
        count: usize,
        keepalive_idle: std::time::Duration,
        connect_timeout: std::time::Duration,
    ) -> std::io::Result<(Self, Arc<[Worker]>)> {
        let mut stops = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.push(Worker {
                handle: runtime.handle().clone(),
                client: proxy::proxy_client(keepalive_idle, connect_timeout),
            });
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("hail-gateway-{i}"))
                    .spawn(move || {
                        // Either a stop or the sender's drop ends the worker.
                        let _ = runtime.block_on(stopped);
                        runtime.shutdown_background();
                    })?,
            );
        }
        Ok((Self { stops, threads }, workers.into()))
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        // Not joined: the last handle may be dropped on a worker thread
        // itself, and the runtimes stop on their own.
        self.threads.clear();
    }
}
