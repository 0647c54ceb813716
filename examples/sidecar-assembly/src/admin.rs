//! The admin endpoint every long-running sidecar serves on its own port:
//! `GET /metrics` (Prometheus text) and `GET /healthz` (for the container's
//! health check), plus the client side of that health check.
//!
//! A separate port keeps the metrics out of reach of the traffic the
//! sidecar handles: the load balancer targets only the ambassador's proxy
//! port.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::prometheus;

/// What the admin endpoint shows.
#[derive(Clone)]
pub struct Admin {
    /// Renders the metrics page on each scrape.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// False once the sidecar is draining: `/healthz` then answers 503.
    pub healthy: Arc<AtomicBool>,
}

/// The admin endpoint's routes.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Health,
    NotFound,
    MethodNotAllowed,
}

fn route(method: &Method, path: &str) -> Route {
    let known = matches!(path, "/metrics" | "/healthz");
    if known && method != Method::GET && method != Method::HEAD {
        return Route::MethodNotAllowed;
    }
    match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        _ => Route::NotFound,
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

fn answer(admin: &Admin, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match route(req.method(), req.uri().path()) {
        Route::Metrics => text(StatusCode::OK, prometheus::CONTENT_TYPE, (admin.metrics)()),
        Route::Health if admin.healthy.load(Ordering::Relaxed) => {
            text(StatusCode::OK, PLAIN, "ok\n".into())
        }
        Route::Health => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "draining\n".into()),
        Route::NotFound => text(StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
        Route::MethodNotAllowed => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                PLAIN,
                "method not allowed\n".into(),
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

/// Serves the admin endpoint on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, admin: Admin, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            // Out of descriptors or a connection reset before accept: the
            // listener itself is fine; back off a little and go on.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = answer(&admin, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr}/healthz answered {status}")]
    Unhealthy {
        addr: SocketAddr,
        status: StatusCode,
    },
}

/// The address to reach a listener bound to `bind` from the same network
/// namespace: an unspecified address (`0.0.0.0`, `::`) means loopback.
pub fn local_address(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// `GET http://addr/healthz`: Ok on 200. What a container's `healthCheck`
/// command runs, since the image has no shell and no curl.
pub async fn healthcheck(addr: SocketAddr, timeout: Duration) -> Result<(), HealthcheckError> {
    let check = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| HealthcheckError::Connect { addr, source })?;
        let http = |source| HealthcheckError::Http { addr, source };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        let request = Request::get("/healthz")
            .header(header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap_or_default();
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        // Read the body so the server sees a complete exchange.
        let _ = response.into_body().collect().await;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(HealthcheckError::Unhealthy { addr, status })
        }
    };
    tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| HealthcheckError::Timeout { addr, timeout })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::HEAD, "/healthz"), Route::Health);
        assert_eq!(route(&Method::POST, "/healthz"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::DELETE, "/x"), Route::NotFound);
    }

    #[test]
    fn unspecified_binds_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:9901".parse().unwrap();
        assert_eq!(local_address(a), "127.0.0.1:9901".parse().unwrap());
        let a: SocketAddr = "[::]:1".parse().unwrap();
        assert_eq!(local_address(a), "[::1]:1".parse().unwrap());
        let a: SocketAddr = "10.0.0.2:5".parse().unwrap();
        assert_eq!(local_address(a), a);
    }

    #[tokio::test]
    async fn healthcheck_follows_the_flag() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let admin = Admin {
            metrics: Arc::new(|| "m 1\n".to_owned()),
            healthy: healthy.clone(),
        };
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve(listener, admin, stop));
        let timeout = Duration::from_secs(5);
        healthcheck(addr, timeout).await.unwrap();
        healthy.store(false, Ordering::Relaxed);
        let err = healthcheck(addr, timeout).await.unwrap_err();
        assert!(
            matches!(err, HealthcheckError::Unhealthy { status, .. } if status == 503),
            "{err}"
        );
        stop_tx.send(true).unwrap();
        server.await.unwrap();
        let err = healthcheck(addr, timeout).await.unwrap_err();
        assert!(matches!(err, HealthcheckError::Connect { .. }), "{err}");
    }
}
