//! One request through the ambassador, in phases:
//!
//! 1. **identify** the client: the peer address, or with
//!    `--trust-forwarded-for` the address the load balancer in front saw;
//! 2. **admit**: take a token from the client's bucket, or answer 429 with
//!    `Retry-After`;
//! 3. **rewrite** for the upstream: origin-form target, hop-by-hop headers
//!    dropped, the peer appended to `X-Forwarded-For`, `Host` kept;
//! 4. **forward** on a pooled keep-alive connection: a failure to connect
//!    or a broken exchange answers 502, no response headers within the
//!    upstream timeout 504;
//! 5. **stream** the response back, hop-by-hop headers dropped, counting
//!    the body's bytes;
//! 6. **log and count** once the last byte is sent, or when the client goes
//!    away (status 499, as nginx says), whichever comes first.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::access_log::{AccessLog, AccessRecord};
use super::metrics::{method_label, Metrics};
use super::rate_limit::{Decision, RateLimiter};

/// The pooled HTTP/1.1 client to the upstream; request bodies stream
/// straight from the downstream connection.
pub type UpstreamClient = Client<HttpConnector, Incoming>;

/// Status logged for a request whose client went away before its response
/// was chosen (nginx's convention; it is never sent).
const CLIENT_CLOSED: u16 = 499;

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub upstream: Authority,
    pub client: UpstreamClient,
    pub limiter: Option<RateLimiter>,
    pub trust_forwarded_for: bool,
    pub upstream_timeout: Duration,
    pub metrics: Metrics,
    pub log: AccessLog,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the non-standard `Proxy-Connection`.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client a request is accounted to.
///
/// Without trust, the peer. With it, the last (rightmost) address of
/// `X-Forwarded-For`: the one the load balancer in front appended for the
/// peer it saw. Earlier entries come from the client itself and could be
/// forged to dodge the rate limit. A missing or unparsable entry falls back
/// to the peer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trust_forwarded_for: bool) -> IpAddr {
    if !trust_forwarded_for {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|hop| !hop.is_empty())
        .and_then(parse_hop)
        .map(|ip| ip.to_canonical())
        .unwrap_or(peer)
}

/// An `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// `X-Forwarded-For` for the upstream: what came in, then the peer.
fn forwarded_for(headers: &HeaderMap, peer: IpAddr) -> Option<HeaderValue> {
    let prior: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let value = if prior.is_empty() {
        peer.to_string()
    } else {
        format!("{}, {peer}", prior.join(", "))
    };
    HeaderValue::from_str(&value).ok()
}

/// The request as the upstream receives it.
pub fn upstream_request<B>(
    req: Request<B>,
    upstream: &Authority,
    peer: IpAddr,
) -> Result<Request<B>, http::Error> {
    let (mut parts, body) = req.into_parts();
    // An absolute-form target (`GET http://host/path`) keeps only its path:
    // the ambassador forwards to its one upstream, never elsewhere.
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(upstream.clone())
        .path_and_query(path)
        .build()?;
    // Host stays what the client asked for, so the application builds
    // its links for the address users see; an HTTP/1.0 request without one
    // gets the upstream's from the client.
    strip_hop_by_hop(&mut parts.headers);
    if let Some(xff) = forwarded_for(&parts.headers, peer) {
        parts.headers.insert("x-forwarded-for", xff);
    }
    parts.version = Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Logs and counts a request when dropped: at the end of its response
/// body, or when the client goes away, whichever comes first.
pub struct Completion {
    proxy: Arc<Proxy>,
    client: IpAddr,
    wall: SystemTime,
    start: Instant,
    method: Method,
    target: String,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    status: u16,
    sent: u64,
}

impl Completion {
    fn start<B>(proxy: Arc<Proxy>, client: IpAddr, req: &Request<B>) -> Self {
        proxy.metrics.request_started();
        let target = match req.uri().path_and_query() {
            Some(p) => p.as_str().to_owned(),
            None => req.uri().to_string(),
        };
        Completion {
            client,
            wall: SystemTime::now(),
            start: Instant::now(),
            method: req.method().clone(),
            target,
            version: req.version(),
            referer: req.headers().get(header::REFERER).cloned(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            status: CLIENT_CLOSED,
            sent: 0,
            proxy,
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let duration = self.start.elapsed();
        let method = method_label(&self.method);
        self.proxy
            .metrics
            .request_finished(self.status, method, duration);
        let record = AccessRecord {
            client: self.client,
            time: self.wall,
            method: self.method.as_str(),
            target: &self.target,
            version: version_str(self.version),
            status: self.status,
            bytes: self.sent,
            referer: self.referer.as_ref().map(HeaderValue::as_bytes),
            user_agent: self.user_agent.as_ref().map(HeaderValue::as_bytes),
            duration,
        };
        self.proxy.log.log(record.line());
    }
}

enum Inner {
    Upstream(Incoming),
    Local(Full<Bytes>),
}

/// A response body (the upstream's, streamed, or one the ambassador
/// writes) that completes its request's [`Completion`] when it ends.
pub struct ProxyBody {
    inner: Inner,
    done: Option<Completion>,
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Local(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never: Infallible| match never {}),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(done)) = (frame.data_ref(), this.done.as_mut()) {
                    done.sent += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // The upstream broke off mid-body; the client's connection
                // is cut by the server, and the request counts as failed.
                if let Some(done) = this.done.take() {
                    done.proxy.metrics.upstream_error();
                }
            }
            Poll::Ready(None) => this.done = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Local(body) => body.size_hint(),
        }
    }
}

/// A response the ambassador writes itself.
fn local(status: StatusCode, text: &'static str, mut done: Completion) -> Response<ProxyBody> {
    done.status = status.as_u16();
    let mut response = Response::new(ProxyBody {
        inner: Inner::Local(Full::new(Bytes::from_static(text.as_bytes()))),
        done: Some(done),
    });
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Handles one request (see the module's phases).
pub async fn handle(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let peer = peer.ip().to_canonical();
    let client = client_ip(peer, req.headers(), proxy.trust_forwarded_for);
    let done = Completion::start(proxy.clone(), client, &req);

    if let Some(limiter) = &proxy.limiter {
        let decision = limiter.check(client, Instant::now());
        if let Decision::Deny { .. } = decision {
            proxy.metrics.rate_limited();
            let mut response = local(StatusCode::TOO_MANY_REQUESTS, "too many requests\n", done);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, decision.retry_after_secs().into());
            return Ok(response);
        }
    }

    let Ok(upstream_req) = upstream_request(req, &proxy.upstream, peer) else {
        return Ok(local(StatusCode::BAD_REQUEST, "bad request target\n", done));
    };
    let forwarded =
        tokio::time::timeout(proxy.upstream_timeout, proxy.client.request(upstream_req)).await;
    match forwarded {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let mut done = done;
            done.status = parts.status.as_u16();
            let body = ProxyBody {
                inner: Inner::Upstream(body),
                done: Some(done),
            };
            Ok(Response::from_parts(parts, body))
        }
        Ok(Err(_)) => {
            proxy.metrics.upstream_error();
            Ok(local(
                StatusCode::BAD_GATEWAY,
                "upstream unavailable\n",
                done,
            ))
        }
        Err(_) => {
            proxy.metrics.upstream_error();
            Ok(local(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream timed out\n",
                done,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_go_with_those_connection_names() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "close"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("content-length", "3"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "x-kept"]);
    }

    #[test]
    fn the_client_is_the_peer_unless_the_balancer_is_trusted() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(client_ip(peer, &h, false), peer);
        assert_eq!(
            client_ip(peer, &h, true),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(
            client_ip(peer, &h, true),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("x-forwarded-for", "::ffff:192.0.2.4")]);
        assert_eq!(
            client_ip(peer, &h, true),
            "192.0.2.4".parse::<IpAddr>().unwrap()
        );
        for bad in ["unknown", "", " , "] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(client_ip(peer, &h, true), peer, "{bad:?}");
        }
        assert_eq!(client_ip(peer, &HeaderMap::new(), true), peer);
    }

    #[test]
    fn the_upstream_request_is_origin_form_with_the_peer_appended() {
        let upstream: Authority = "127.0.0.1:8080".parse().unwrap();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let req = Request::get("http://example.com/a/b?c=d")
            .version(Version::HTTP_10)
            .header("host", "example.com")
            .header("x-forwarded-for", "192.0.2.1")
            .header("connection", "keep-alive")
            .body(())
            .unwrap();
        let out = upstream_request(req, &upstream, peer).unwrap();
        assert_eq!(out.uri(), "http://127.0.0.1:8080/a/b?c=d");
        assert_eq!(out.version(), Version::HTTP_11);
        assert_eq!(out.headers()["host"], "example.com");
        assert_eq!(out.headers()["x-forwarded-for"], "192.0.2.1, 10.0.0.1");
        assert!(out.headers().get("connection").is_none());

        let req = Request::get("/").body(()).unwrap();
        let out = upstream_request(req, &upstream, peer).unwrap();
        assert_eq!(out.headers()["x-forwarded-for"], "10.0.0.1");
    }
}
