//! Bound sockets: the accept loop, HTTP/1.1 and HTTP/2 (prior knowledge)
//! connections through hyper's auto builder, and graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::proxy::{self, ListenerContext, ProxyClient};
use crate::worker::Worker;

/// Request heads larger than this are refused (431) by HTTP/1.1, and header
/// lists larger than this by HTTP/2: a client cannot make the gateway buffer
/// without bound.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A client that opened a connection has this long to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A listener that is accepting, on every worker.
pub(crate) struct RunningListener {
    /// The port asked for (0: any), to recognise the same listener later.
    pub(crate) requested_port: u16,
    pub(crate) local_addr: SocketAddr,
    pub(crate) ctx: Arc<ListenerContext>,
    stop: watch::Sender<bool>,
    closed: Vec<oneshot::Receiver<()>>,
    /// End when the last connection has finished after a stop.
    drained: Vec<JoinHandle<()>>,
}

impl RunningListener {
    /// Starts accepting on every worker; `sockets` holds one listening
    /// socket per worker, all bound to the same port with `SO_REUSEPORT`.
    pub(crate) fn spawn(
        sockets: Vec<std::net::TcpListener>,
        workers: &[Worker],
        local_addr: SocketAddr,
        requested_port: u16,
        ctx: Arc<ListenerContext>,
    ) -> Self {
        let (stop, _) = watch::channel(false);
        let mut closed = Vec::with_capacity(workers.len());
        let mut drained = Vec::with_capacity(workers.len());
        for (socket, worker) in sockets.into_iter().zip(workers) {
            let (closed_tx, closed_rx) = oneshot::channel();
            let (ctx, stop, client) = (ctx.clone(), stop.subscribe(), worker.client.clone());
            drained.push(worker.handle.spawn(async move {
                match TcpListener::from_std(socket) {
                    Ok(listener) => accept_loop(listener, ctx, client, stop, closed_tx).await,
                    Err(e) => {
                        tracing::error!(%local_addr, error = %e, "listener cannot join a worker");
                        let _ = closed_tx.send(());
                    }
                }
            }));
            closed.push(closed_rx);
        }
        Self {
            requested_port,
            local_addr,
            ctx,
            stop,
            closed,
            drained,
        }
    }

    /// Stops accepting and returns once the socket is closed on every
    /// worker (so its port can be bound again). Connections already accepted
    /// finish their in-flight requests; the returned handles end when they
    /// have.
    pub(crate) async fn stop(self) -> Vec<JoinHandle<()>> {
        let _ = self.stop.send(true);
        for closed in self.closed {
            let _ = closed.await;
        }
        self.drained
    }
}

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(256);
    builder
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    client: ProxyClient,
    mut stop: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: back off briefly rather than spin.
                    tracing::warn!(addr = ?listener.local_addr().ok(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (ctx, client) = (ctx.clone(), client.clone());
        let service =
            service_fn(move |request| proxy::handle(ctx.clone(), client.clone(), peer, request));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closed.send(());
    graceful.shutdown().await;
}
