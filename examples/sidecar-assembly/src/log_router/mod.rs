//! The log router: a FireLens-style sidecar that receives the other
//! containers' output over the Fluent Forward protocol ([`crate::forward`])
//! and writes every record as one JSON line ([`output`]).
//!
//! The contract with the engine (what `awsfirelens` means on Hail):
//!
//! - the engine connects to the router's Forward port (24224) in the task's
//!   network namespace and sends the output of every container whose
//!   `logConfiguration.logDriver` is `awsfirelens`;
//! - tag `<container name>-firelens-<task id>`; record
//!   `{"log": line, "source": "stdout"|"stderr", "container_name",
//!   "ecs_cluster", "ecs_task_arn", "ecs_task_definition": "family:rev"}`
//!   (plus the log configuration's options, if the engine adds them);
//! - a frame whose option carries `"chunk"` is acknowledged with
//!   `{"ack": chunk}` after its records are written; a frame that was not
//!   acknowledged when the connection broke should be sent again;
//! - a malformed or oversized frame closes its connection (logged on
//!   stderr and counted), never the router.

pub mod counts;
pub mod matching;
pub mod output;

use std::fs::OpenOptions;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::admin::{self, Admin};
use crate::forward::{self, ForwardError, Frame, FrameScanner};
use counts::Counts;
use matching::TagMatch;
use output::{json_line, Output, OutputError};

/// How the router runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Forward protocol port.
    pub listen: SocketAddr,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics: SocketAddr,
    /// Whether records go to standard output.
    pub stdout: bool,
    /// A file records are appended to, besides standard output.
    pub output: Option<PathBuf>,
    /// Tag patterns of the records to write; empty means all.
    pub matches: Vec<String>,
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    /// How long senders may keep their connections open after the stop
    /// signal.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 24224)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 2020)),
            stdout: true,
            output: None,
            matches: Vec::new(),
            max_frame_bytes: forward::MAX_FRAME_BYTES,
            max_connections: 256,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot open {path} for appending: {source}")]
    OpenOutput { path: PathBuf, source: io::Error },
    #[error("cannot start the output writer: {0}")]
    Writer(io::Error),
}

/// Why a connection was closed by the router.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("{0}")]
    Protocol(#[from] ForwardError),
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Output(#[from] OutputError),
}

struct State {
    output: Output,
    counts: Counts,
    matches: TagMatch,
    max_frame_bytes: usize,
}

/// A bound router, ready to run.
pub struct LogRouter {
    listener: TcpListener,
    admin_listener: TcpListener,
    state: Arc<State>,
    max_connections: usize,
    drain_timeout: Duration,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RouterError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RouterError::Bind { what, addr, source })
}

impl LogRouter {
    pub async fn bind(config: &Config) -> Result<Self, RouterError> {
        let file = match &config.output {
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| RouterError::OpenOutput {
                        path: path.clone(),
                        source,
                    })?;
                Some((path.display().to_string(), file))
            }
            None => None,
        };
        let listener = bind("Forward", config.listen).await?;
        let admin_listener = bind("metrics", config.metrics).await?;
        let output = Output::start(config.stdout, file).map_err(RouterError::Writer)?;
        Ok(LogRouter {
            listener,
            admin_listener,
            state: Arc::new(State {
                output,
                counts: Counts::default(),
                matches: TagMatch::new(config.matches.clone()),
                max_frame_bytes: config.max_frame_bytes,
            }),
            max_connections: config.max_connections.max(1),
            drain_timeout: config.drain_timeout,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then waits (up to the drain
    /// timeout) for the senders to close their connections.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let LogRouter {
            listener,
            admin_listener,
            state,
            max_connections,
            drain_timeout,
        } = self;
        let healthy = Arc::new(AtomicBool::new(true));
        let metrics_state = state.clone();
        let admin = Admin {
            metrics: Arc::new(move || metrics_state.counts.render()),
            healthy: healthy.clone(),
        };
        let (stop_admin, admin_stop) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(admin_listener, admin, admin_stop));

        // Each connection holds a permit: past the limit, new senders wait
        // in the listen backlog.
        let permits = Arc::new(Semaphore::new(max_connections));
        tokio::pin!(shutdown);
        loop {
            let accept = async {
                let permit = permits.clone().acquire_owned().await;
                (permit, listener.accept().await)
            };
            let (permit, accepted) = tokio::select! {
                a = accept => a,
                () = &mut shutdown => break,
            };
            let Ok(permit) = permit else { break };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("log-router: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                state.counts.connection_opened();
                if let Err(e) = serve_connection(&state, stream).await {
                    if matches!(
                        e,
                        ConnectionError::Protocol(_) | ConnectionError::Truncated(_)
                    ) {
                        state.counts.rejected();
                    }
                    eprintln!("log-router: connection from {peer} closed: {e}");
                }
                state.counts.connection_closed();
                drop(permit);
            });
        }
        drop(listener);
        healthy.store(false, Ordering::Relaxed);
        // The engine stops the router after the containers it serves, so
        // their last lines are already in; wait for the senders to finish.
        let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(drain_timeout, permits.acquire_many(all)).await;
        if drained.is_err() {
            eprintln!("log-router: senders still connected after {drain_timeout:?}; stopping");
        }
        let _ = stop_admin.send(true);
        let _ = admin_task.await;
    }
}

/// Reads frames until the sender closes the connection.
async fn serve_connection(state: &State, mut stream: TcpStream) -> Result<(), ConnectionError> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut scanner = FrameScanner::new();
    loop {
        while let Some(len) = scanner.scan(&buf, state.max_frame_bytes)? {
            let frame = forward::decode_frame(&buf[..len])?;
            buf.drain(..len);
            route(state, frame, &mut stream).await?;
        }
        buf.reserve(64 * 1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return match buf.len() {
                0 => Ok(()),
                n => Err(ConnectionError::Truncated(n)),
            };
        }
    }
}

/// Writes a frame's records, then acknowledges its chunk.
async fn route(state: &State, frame: Frame, stream: &mut TcpStream) -> Result<(), ConnectionError> {
    state.counts.frame(frame.mode);
    if state.matches.matches(&frame.tag) {
        let mut lines = Vec::new();
        for entry in &frame.entries {
            json_line(&mut lines, &frame.tag, entry);
        }
        if !lines.is_empty() {
            state.output.write(lines).await?;
        }
        state.counts.written(&frame);
    } else {
        state.counts.unmatched(frame.entries.len());
    }
    if let Some(chunk) = &frame.chunk {
        stream.write_all(&forward::encode_ack(chunk)).await?;
        state.counts.ack();
    }
    Ok(())
}
