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
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::proxy::{self, ListenerContext};

/// Request heads larger than this are refused (431) by HTTP/1.1, and header
/// lists larger than this by HTTP/2: a client cannot make the gateway buffer
/// without bound.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A client that opened a connection has this long to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A listener that is accepting.
pub(crate) struct RunningListener {
    /// The port asked for (0: any), to recognise the same listener later.
    pub(crate) requested_port: u16,
    pub(crate) local_addr: SocketAddr,
    pub(crate) ctx: Arc<ListenerContext>,
    stop: Option<oneshot::Sender<()>>,
    closed: Option<oneshot::Receiver<()>>,
    /// Ends when the last connection has finished after a stop.
    pub(crate) drained: JoinHandle<()>,
}

impl RunningListener {
    pub(crate) fn spawn(
        listener: TcpListener,
        local_addr: SocketAddr,
        requested_port: u16,
        ctx: Arc<ListenerContext>,
    ) -> Self {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (closed_tx, closed_rx) = oneshot::channel();
        let drained = tokio::spawn(accept_loop(listener, ctx.clone(), stop_rx, closed_tx));
        Self {
            requested_port,
            local_addr,
            ctx,
            stop: Some(stop_tx),
            closed: Some(closed_rx),
            drained,
        }
    }

    /// Stops accepting and returns once the socket is closed (so its port
    /// can be bound again). Connections already accepted finish their
    /// in-flight requests; `drained` ends when they have.
    pub(crate) async fn stop(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(closed) = self.closed.take() {
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
    mut stop: oneshot::Receiver<()>,
    closed: oneshot::Sender<()>,
) {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
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
        let ctx = ctx.clone();
        let service = service_fn(move |request| proxy::handle(ctx.clone(), peer, request));
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
