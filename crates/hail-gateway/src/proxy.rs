//! The request path, in phases:
//!
//! ```text
//!  request ─► route (listener rules) ─┬─► fixed response
//!                                     └─► target group
//!                                           │ no healthy target and an activator?
//!                                           ├──► hold (queue full → 503, timeout → 504) ─┐
//!                                           ▼                                            │
//!                     ┌──────────────► pick target (least outstanding, fail open) ◄──────┘
//!                     │                     │ none registered → 503
//!                     │                     ▼
//!                     │                forward (HTTP/1.1, pooled keep-alive)
//!                     │                     │ no response headers within idle timeout → 504
//!         retry once, │                     │ connect error / reset before any response byte
//!  body replayable ───┘◄────────────────────┤   (passive health; no retry possible → 502)
//!                                           ▼
//!                               stream the response back; in-flight ends with its body
//! ```
//!
//! Nothing here may panic: every failure becomes an answer with `Server:
//! hail`, counted in the target group's metrics.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tokio::time::Instant;

use crate::config::{Action, CompiledRules};
use crate::group::{Hold, Member, TargetGroup};
use crate::health::error_chain;
use crate::Shared;

/// Request bodies up to this size (by `Content-Length`) are read before the
/// request is forwarded, so the request can be sent again to another target
/// after a connection error. Larger or unsized bodies stream and are never
/// retried.
pub(crate) const MAX_REPLAY_BODY: u64 = 64 * 1024;

/// What a listener serves now; swapped whole by `apply`.
#[derive(Debug)]
pub(crate) struct ListenerState {
    pub(crate) id: String,
    pub(crate) rules: CompiledRules,
    pub(crate) idle_timeout: Duration,
}

/// What the request path of one bound socket needs.
pub(crate) struct ListenerContext {
    pub(crate) port: u16,
    pub(crate) state: std::sync::RwLock<Arc<ListenerState>>,
    pub(crate) shared: Arc<Shared>,
}

impl ListenerContext {
    pub(crate) fn state(&self) -> Arc<ListenerState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) type ProxyClient = Client<HttpConnector, RequestBody>;

pub(crate) fn proxy_client(keepalive_idle: Duration, connect_timeout: Duration) -> ProxyClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(keepalive_idle)
        .build(connector)
}

/// Serves one request; never fails.
pub(crate) async fn handle(
    ctx: Arc<ListenerContext>,
    client: ProxyClient,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let received = Instant::now();
    let listener = ctx.state();
    let host = request_host(&request);
    let action = listener.rules.route(request.uri().path(), host.as_deref());
    let response = match action {
        Action::FixedResponse {
            status,
            content_type,
            body,
        } => fixed_response(*status, content_type.as_deref(), body),
        Action::Forward { target_group } => match ctx.shared.group(target_group) {
            Some(group) => forward(&ctx, &client, &listener, group, peer, request, received).await,
            // Only between an apply that removed the group and the swap of
            // this listener's rules.
            None => elb_response(StatusCode::SERVICE_UNAVAILABLE),
        },
    };
    Ok(response)
}

/// Holds a request's share of the metrics and of its target's in-flight
/// count until the response body ends or is dropped.
struct RequestGuard {
    group: Arc<TargetGroup>,
    member: Option<Arc<Member>>,
    latency: Option<Duration>,
}

impl RequestGuard {
    fn elb(self, status: StatusCode) -> Response<ProxyBody> {
        self.group.metrics.elb_status(status.as_u16());
        elb_response(status)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(member) = self.member.take() {
            member.release();
        }
        self.group.metrics.finished(self.latency);
    }
}

async fn forward(
    ctx: &ListenerContext,
    client: &ProxyClient,
    listener: &ListenerState,
    group: Arc<TargetGroup>,
    peer: SocketAddr,
    request: Request<Incoming>,
    received: Instant,
) -> Response<ProxyBody> {
    group.metrics.started();
    let mut guard = RequestGuard {
        group: group.clone(),
        member: None,
        latency: None,
    };

    // Scale from zero: wait for a healthy target instead of failing.
    let settings = group.settings();
    if let Some(activation) = &settings.config.activator {
        if group.healthy_count() == 0 {
            match group.hold(activation.queue_limit) {
                Hold::Full => return guard.elb(StatusCode::SERVICE_UNAVAILABLE),
                Hold::Wait {
                    mut healthy,
                    call_activator,
                    ticket,
                } => {
                    if call_activator {
                        if let Some(activator) = &ctx.shared.activator {
                            activator.activate(&group.id);
                        }
                    }
                    let ready =
                        tokio::time::timeout(activation.timeout, healthy.wait_for(|n| *n > 0))
                            .await;
                    drop(ticket);
                    if !matches!(ready, Ok(Ok(_))) {
                        return guard.elb(StatusCode::GATEWAY_TIMEOUT);
                    }
                }
            }
        }
    }

    let (mut parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let headers = forwarded_headers(&mut parts, peer.ip(), ctx.port);

    // A small body is read first so that it can be sent twice.
    let mut body = if body.is_end_stream() {
        Some(RequestBody::full(Bytes::new()))
    } else if content_length(&headers).is_some_and(|n| n <= MAX_REPLAY_BODY) {
        match tokio::time::timeout(listener.idle_timeout, body.collect()).await {
            Ok(Ok(collected)) => Some(RequestBody::full(collected.to_bytes())),
            // The client went away or stalled mid-body: nothing to forward.
            _ => return guard.elb(StatusCode::BAD_REQUEST),
        }
    } else {
        Some(RequestBody::Stream(body))
    };
    let replayable = matches!(body, Some(RequestBody::Full(_)));

    let mut failed: Option<Arc<Member>> = None;
    let mut refused = false;
    for attempt in 0..2 {
        let member = match group.pick(failed.as_deref()) {
            Some(member) => member,
            // A request that was reset on a pooled connection to the only
            // target may go to that target again on a new connection; one
            // that was refused would only be refused again.
            None if failed.is_some() && !refused => match group.pick(None) {
                Some(member) => member,
                None => return guard.elb(StatusCode::BAD_GATEWAY),
            },
            None if failed.is_some() || group.has_active_members() => {
                return guard.elb(StatusCode::BAD_GATEWAY)
            }
            None => return guard.elb(StatusCode::SERVICE_UNAVAILABLE),
        };
        member.acquire();
        guard.member = Some(member.clone());

        let attempt_body = match &body {
            Some(RequestBody::Full(bytes)) => RequestBody::Full(bytes.clone()),
            _ => match body.take() {
                Some(streaming) => streaming,
                None => return guard.elb(StatusCode::BAD_GATEWAY),
            },
        };
        let upstream = match upstream_request(
            &method,
            member.addr,
            &path_and_query,
            headers.clone(),
            attempt_body,
        ) {
            Some(request) => request,
            None => return guard.elb(StatusCode::BAD_REQUEST),
        };

        match tokio::time::timeout(listener.idle_timeout, client.request(upstream)).await {
            Err(_) => return guard.elb(StatusCode::GATEWAY_TIMEOUT),
            Ok(Ok(response)) => {
                group.metrics.target_status(response.status().as_u16());
                guard.latency = Some(received.elapsed());
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return Response::from_parts(
                    parts,
                    ProxyBody(Inner::Upstream {
                        body,
                        guard: Some(guard),
                    }),
                );
            }
            Ok(Err(error)) => {
                let description = error_chain(&error);
                tracing::debug!(target_group = %group.id, target = %member.id,
                    addr = %member.addr, error = %description, "target connection failed");
                if error.is_connect() {
                    // Refused or timed out connecting: the target is not
                    // listening. A reset on a reused connection is not
                    // evidence against the target (it may simply have closed
                    // an idle keep-alive connection), so only this counts
                    // towards its health.
                    group.connection_error(&member, description);
                } else {
                    group
                        .metrics
                        .connection_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                if let Some(member) = guard.member.take() {
                    member.release();
                }
                // Nothing reached the client yet. A connect error means the
                // target never saw the request; otherwise only methods that
                // are safe to repeat are sent again.
                let retry =
                    attempt == 0 && replayable && (error.is_connect() || idempotent(&method));
                if !retry {
                    return guard.elb(StatusCode::BAD_GATEWAY);
                }
                group.metrics.retries.fetch_add(1, Ordering::Relaxed);
                refused = error.is_connect();
                failed = Some(member);
            }
        }
    }
    guard.elb(StatusCode::BAD_GATEWAY)
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn upstream_request(
    method: &Method,
    addr: SocketAddr,
    path_and_query: &str,
    headers: HeaderMap,
    body: RequestBody,
) -> Option<Request<RequestBody>> {
    let uri: Uri = format!("http://{addr}{path_and_query}").parse().ok()?;
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The host a request names, without its port, for host-header rules.
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = match request.headers().get(header::HOST) {
        Some(value) => value.to_str().ok()?.to_owned(),
        // HTTP/2 carries it in `:authority`.
        None => request.uri().authority()?.as_str().to_owned(),
    };
    let authority: http::uri::Authority = raw.parse().ok()?;
    Some(
        authority
            .host()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase(),
    )
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// The headers a target receives: hop-by-hop ones removed, Host kept (or
/// made from HTTP/2's authority), and the `X-Forwarded-*` and trace headers
/// an ALB adds.
fn forwarded_headers(parts: &mut http::request::Parts, client: IpAddr, port: u16) -> HeaderMap {
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    // The gateway has already answered any `100-continue` by reading on.
    headers.remove(header::EXPECT);
    if !headers.contains_key(header::HOST) {
        if let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, value);
        }
    }
    let mut forwarded_for = String::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(text) = value.to_str() {
            forwarded_for.push_str(text);
            forwarded_for.push_str(", ");
        }
    }
    forwarded_for.push_str(&client.to_string());
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(port));
    if !headers.contains_key(&X_AMZN_TRACE_ID) {
        if let Ok(value) = HeaderValue::from_str(&trace_id()) {
            headers.insert(X_AMZN_TRACE_ID.clone(), value);
        }
    }
    headers
}

/// Removes the headers that describe one connection, not the message
/// (RFC 9110 §7.6.1), including those the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// An `X-Amzn-Trace-Id` root: version 1, the epoch second, 96 random bits.
fn trace_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = splitmix64(seed ^ n);
    let b = splitmix64(a ^ n.rotate_left(32));
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("Root=1-{epoch:08x}-{a:016x}{:08x}", b as u32)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// An answer the gateway makes itself, shaped like ALB's.
pub(crate) fn elb_response(status: StatusCode) -> Response<ProxyBody> {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static("hail"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

fn fixed_response(status: u16, content_type: Option<&str>, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static("hail"));
    let content_type = content_type
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CONTENT_TYPE, content_type);
    response
}

/// A request body on its way to a target: read whole (replayable) or
/// streaming from the client.
pub(crate) enum RequestBody {
    Full(Option<Bytes>),
    Stream(Incoming),
}

impl RequestBody {
    fn full(bytes: Bytes) -> Self {
        Self::Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(body) => body.size_hint(),
        }
    }
}

/// A response body on its way to a client: a target's, streamed, or one the
/// gateway made.
pub struct ProxyBody(Inner);

enum Inner {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Released when the body ends, errs, or is dropped unfinished.
        guard: Option<RequestGuard>,
    },
}

impl ProxyBody {
    fn full(bytes: Bytes) -> Self {
        Self(Inner::Full((!bytes.is_empty()).then_some(bytes)))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream { body, guard } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                    guard.take();
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Upstream { body, .. } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn forwarded_headers_extend_the_chain() {
        let request = Request::get("http://example.com:8080/a?b=c")
            .header("x-forwarded-for", "203.0.113.9")
            .header(
                "x-amzn-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let headers = forwarded_headers(&mut parts, "127.0.0.1".parse().unwrap(), 8080);
        assert_eq!(headers["host"], "example.com:8080");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-port"], "8080");
        assert_eq!(
            headers["x-amzn-trace-id"],
            "Root=1-00000000-000000000000000000000000"
        );
    }

    #[test]
    fn trace_ids_are_well_formed_and_distinct() {
        let a = trace_id();
        let b = trace_id();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.trim_start_matches("Root=").split('-').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "1");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(parts[2].len(), 24);
    }

    #[test]
    fn hosts_lose_their_port() {
        let r = Request::get("/")
            .header("host", "Api.Example.com:8080")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r).as_deref(), Some("api.example.com"));
        let r = Request::get("http://[::1]:80/").body(()).unwrap();
        assert_eq!(request_host(&r).as_deref(), Some("::1"));
    }
}
