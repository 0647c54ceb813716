//! The ambassador: the HTTP reverse proxy in front of the application, and
//! the only port of the task a load balancer targets.
//!
//! It accepts HTTP/1.1 with keep-alive, admits each request through a
//! per-client token bucket ([`rate_limit`]), forwards it on a pool of
//! keep-alive connections to the application on localhost ([`proxy`]),
//! streams the response back, and logs it in the combined log format
//! ([`access_log`]). Its metrics and health check are on a port of their
//! own ([`crate::admin`]). On the stop signal it stops accepting, lets the
//! requests in flight finish (up to the drain timeout), then exits.

pub mod access_log;
pub mod metrics;
pub mod proxy;
pub mod rate_limit;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, Admin};
pub use access_log::AccessLog;
use metrics::Metrics;
use proxy::Proxy;
use rate_limit::{RateLimitError, RateLimiter};

/// How the ambassador runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients (the load balancer) connect.
    pub listen: SocketAddr,
    /// The application, in the same network namespace.
    pub upstream: SocketAddr,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics: SocketAddr,
    /// Requests per second per client, and the burst allowed above it;
    /// `None` admits everything.
    pub rate_limit: Option<(f64, f64)>,
    /// How many clients' buckets are kept at most.
    pub max_clients: usize,
    /// Whether the client is taken from `X-Forwarded-For` (see
    /// [`proxy::client_ip`]).
    pub trust_forwarded_for: bool,
    pub connect_timeout: Duration,
    /// How long the upstream may take to send its response headers.
    pub upstream_timeout: Duration,
    /// How long requests in flight may take to finish after the stop signal.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 9000)),
            upstream: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 9901)),
            rate_limit: Some((50.0, 100.0)),
            max_clients: 65_536,
            trust_forwarded_for: false,
            connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AmbassadorError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("rate limit: {0}")]
    RateLimit(#[from] RateLimitError),
}

/// A bound ambassador, ready to run.
pub struct Ambassador {
    listener: TcpListener,
    admin_listener: TcpListener,
    proxy: Arc<Proxy>,
    healthy: Arc<AtomicBool>,
    drain_timeout: Duration,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AmbassadorError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AmbassadorError::Bind { what, addr, source })
}

impl Ambassador {
    /// Binds both ports; `log` receives the access log lines.
    pub async fn bind(config: &Config, log: AccessLog) -> Result<Self, AmbassadorError> {
        let limiter = match config.rate_limit {
            Some((rate, burst)) => Some(RateLimiter::new(rate, burst, config.max_clients)?),
            None => None,
        };
        let listener = bind("requests", config.listen).await?;
        let admin_listener = bind("metrics", config.metrics).await?;

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            // Idle upstream connections are kept a minute and up to a
            // thousand: enough for every concurrent client of a busy task,
            // and closed before a typical server's own idle timeout races
            // with a request on them.
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        // A socket address always makes a valid authority.
        let upstream = Authority::try_from(config.upstream.to_string())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1:8080"));
        let proxy = Proxy {
            upstream,
            client,
            limiter,
            trust_forwarded_for: config.trust_forwarded_for,
            upstream_timeout: config.upstream_timeout,
            metrics: Metrics::default(),
            log,
        };
        Ok(Ambassador {
            listener,
            admin_listener,
            proxy: Arc::new(proxy),
            healthy: Arc::new(AtomicBool::new(true)),
            drain_timeout: config.drain_timeout,
        })
    }

    /// The address requests are accepted on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of `/metrics` and `/healthz`.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Ambassador {
            listener,
            admin_listener,
            proxy,
            healthy,
            drain_timeout,
        } = self;

        let metrics_proxy = proxy.clone();
        let admin = Admin {
            metrics: Arc::new(move || {
                let p = &metrics_proxy;
                let clients = p.limiter.as_ref().map_or(0, RateLimiter::clients);
                p.metrics.render(clients, p.log.dropped())
            }),
            healthy: healthy.clone(),
        };
        let (stop_admin, admin_stop) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(admin_listener, admin, admin_stop));

        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: the listener is fine, the
                        // process is at a limit; wait for connections to end.
                        eprintln!("ambassador: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let proxy = proxy.clone();
            let service = service_fn(move |req| proxy::handle(proxy.clone(), peer, req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                // A client that opens a connection and sends nothing, or
                // dribbles its headers, is cut after this long.
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }

        // Stop accepting at once: new connections are refused while the
        // ones in flight finish their current request and close.
        drop(listener);
        healthy.store(false, Ordering::Relaxed);
        eprintln!("ambassador: stopping: finishing requests in flight");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(drain_timeout) => {
                eprintln!("ambassador: requests still in flight after {drain_timeout:?}; closing them");
            }
        }
        let _ = stop_admin.send(true);
        let _ = admin_task.await;
        proxy.log.flush(Duration::from_secs(5));
    }
}
