//! Real backends and clients on 127.0.0.1 for the gateway's tests.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hail_gateway::{
    Action, Gateway, GatewayConfig, HealthCheckConfig, ListenerConfig, TargetGroupConfig,
    TargetState,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Generous: the machine running the tests may be loaded.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// What a test backend does and has seen.
pub struct BackendState {
    pub name: String,
    /// Status `/health` answers.
    pub health_status: AtomicU16,
    /// Delay before `/health` answers, in ms.
    pub health_delay_ms: AtomicU64,
    /// Requests other than `/health`.
    pub hits: AtomicUsize,
    /// `/block` requests that arrived and wait for a permit.
    pub blocked: AtomicUsize,
    pub gate: Semaphore,
    pub connections: AtomicUsize,
    pub last_headers: Mutex<Option<HeaderMap>>,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            name: name.to_owned(),
            health_status: AtomicU16::new(200),
            health_delay_ms: AtomicU64::new(0),
            hits: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            connections: AtomicUsize::new(0),
            last_headers: Mutex::new(None),
        });
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (s, t) = (state.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                t.lock().unwrap().spawn(async move {
                    let service = service_fn(move |r| handle(s.clone(), r));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend { addr, state, tasks }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// Closes the listening socket and every connection, as a process that
    /// died would.
    pub fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    pub fn release(&self, n: usize) {
        self.state.gate.add_permits(n);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn query_number(request: &Request<Incoming>, key: &str) -> Option<u64> {
    request.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok())?
    })
}

async fn handle(
    state: Arc<BackendState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let reply = |status: u16, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("x-backend", state.name.parse().unwrap());
        Ok(r)
    };
    if path == "/health" {
        let delay = state.health_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        return reply(state.health_status.load(Ordering::SeqCst), "health".into());
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    *state.last_headers.lock().unwrap() = Some(request.headers().clone());
    if path == "/block" {
        state.blocked.fetch_add(1, Ordering::SeqCst);
        state.gate.acquire().await.unwrap().forget();
        return reply(200, state.name.clone());
    }
    if path == "/slow" {
        let ms = query_number(&request, "ms").unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return reply(200, state.name.clone());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return reply(code.parse().unwrap_or(500), state.name.clone());
    }
    if path == "/upload" {
        let mut body = request.into_body();
        let mut n = 0usize;
        let mut sum = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                n += data.len();
                sum = data.iter().fold(sum, |s, b| s.wrapping_add(*b as u64));
            }
        }
        return reply(200, format!("{n} {sum}"));
    }
    if path == "/download" {
        let n = query_number(&request, "bytes").unwrap_or(0) as usize;
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut()
            .insert("x-backend", state.name.parse().unwrap());
        return Ok(r);
    }
    reply(200, state.name.clone())
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A GET through the gateway: status, headers, body text.
pub async fn get(client: &TestClient, url: &str) -> (StatusCode, HeaderMap, String) {
    request(client, Request::get(url).body(Full::default()).unwrap()).await
}

pub async fn request(
    client: &TestClient,
    request: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, String) {
    let response = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls `check` until it holds, or fails the test after PATIENCE.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` targets of the group are in `state`.
pub async fn wait_for_state(gateway: &Gateway, tg: &str, state: TargetState, n: usize) {
    eventually(&format!("{n} target(s) of {tg} {state:?}"), || async {
        gateway
            .target_health(tg)
            .unwrap()
            .iter()
            .filter(|t| t.state == state)
            .count()
            == n
    })
    .await
}

/// Health checks every 100 ms on `/health`, thresholds 2/2: fast, and the
/// thresholds still count checks rather than time.
pub fn target_group(id: &str) -> TargetGroupConfig {
    let mut tg = TargetGroupConfig::new(id);
    tg.health_check = HealthCheckConfig {
        enabled: true,
        path: "/health".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        matcher: "200".into(),
    };
    tg.deregistration_delay = Duration::from_secs(60);
    tg
}

pub fn forward(tg: &str) -> Action {
    Action::Forward {
        target_group: tg.into(),
    }
}

/// One listener on a free port forwarding everything to one target group.
pub async fn simple_gateway(tg: TargetGroupConfig) -> (Gateway, String) {
    let gateway = Gateway::new(Default::default()).unwrap();
    let listener = ListenerConfig::new("listener", 0, forward(&tg.id));
    let report = gateway
        .apply(GatewayConfig {
            listeners: vec![listener],
            target_groups: vec![tg],
        })
        .await
        .unwrap();
    let url = format!("http://{}", report.listeners[0].local_addr);
    (gateway, url)
}
