//! The request path against real backends: routing, balancing, retries, the
//! gateway's own error answers, protocols and streaming.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hail_gateway::{
    Action, Condition, Gateway, GatewayConfig, ListenerConfig, RuleConfig, Target, TargetState,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::test]
async fn routes_by_path_and_host_and_forwards_headers() {
    let (api, admin, web) = (
        Backend::start("api").await,
        Backend::start("admin").await,
        Backend::start("web").await,
    );
    let gateway = Gateway::new(Default::default()).unwrap();
    let mut listener = ListenerConfig::new("l", 0, forward("web"));
    listener.rules = vec![
        RuleConfig {
            priority: 10,
            conditions: vec![Condition::PathPattern(vec!["/api/*".into()])],
            action: forward("api"),
        },
        RuleConfig {
            priority: 5,
            conditions: vec![Condition::HostHeader(vec!["admin.*".into()])],
            action: forward("admin"),
        },
        RuleConfig {
            priority: 1,
            conditions: vec![Condition::PathPattern(vec!["/teapot".into()])],
            action: Action::FixedResponse {
                status: 418,
                content_type: None,
                body: "short and stout".into(),
            },
        },
    ];
    let report = gateway
        .apply(GatewayConfig {
            listeners: vec![listener],
            target_groups: vec![
                target_group("api"),
                target_group("admin"),
                target_group("web"),
            ],
        })
        .await
        .unwrap();
    let port = report.listeners[0].local_addr.port();
    let url = format!("http://127.0.0.1:{port}");
    for (tg, backend) in [("api", &api), ("admin", &admin), ("web", &web)] {
        gateway
            .set_targets(tg, vec![Target::new(tg, backend.addr)])
            .unwrap();
        wait_for_state(&gateway, tg, TargetState::Healthy, 1).await;
    }

    let client = client();
    let (status, headers, body) = get(&client, &format!("{url}/api/users?x=1")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "api"));
    assert_eq!(headers["x-backend"], "api");
    let (_, _, body) = get(&client, &format!("{url}/apix")).await;
    assert_eq!(body, "web");
    let (_, _, body) = get(&client, &format!("{url}/")).await;
    assert_eq!(body, "web");

    let admin_request = |path: &str| {
        Request::get(format!("{url}{path}"))
            .header("host", "Admin.Example.com:8080")
            .header("x-forwarded-for", "203.0.113.7")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "hop")
            .body(Full::default())
            .unwrap()
    };
    let (_, _, body) = request(&client, admin_request("/api/users")).await;
    assert_eq!(body, "admin", "priority 5 host rule wins over priority 10");
    let seen = admin.state.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], "Admin.Example.com:8080", "host is preserved");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-port"], port.to_string().as_str());
    assert!(seen["x-amzn-trace-id"]
        .to_str()
        .unwrap()
        .starts_with("Root=1-"));
    assert!(
        !seen.contains_key("x-secret"),
        "hop-by-hop header forwarded"
    );

    let (status, headers, body) = get(&client, &format!("{url}/teapot")).await;
    assert_eq!(status.as_u16(), 418);
    assert_eq!(body, "short and stout");
    assert_eq!(headers["server"], "hail");
    assert_eq!(web.hits(), 2);
    assert_eq!(api.hits(), 1);
}

#[tokio::test]
async fn least_outstanding_requests_avoids_the_busy_target() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (gateway, url) = simple_gateway(target_group("tg")).await;
    gateway
        .set_targets(
            "tg",
            vec![Target::new("a", a.addr), Target::new("b", b.addr)],
        )
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 2).await;

    // One slow request occupies one target…
    let client = client();
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { get(&client, &format!("{url}/block")).await }
    });
    eventually("the slow request reaches a backend", || async {
        a.state.blocked.load(Ordering::SeqCst) + b.state.blocked.load(Ordering::SeqCst) == 1
    })
    .await;
    let (busy, idle) = if a.state.blocked.load(Ordering::SeqCst) == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // …so every fast request goes to the other.
    for _ in 0..20 {
        let (status, _, body) = get(&client, &format!("{url}/fast")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, idle.state.name);
    }
    assert_eq!(busy.hits(), 1);
    busy.release(1);
    let (_, _, body) = slow.await.unwrap();
    assert_eq!(body, busy.state.name);

    // With both idle, ties alternate.
    for _ in 0..10 {
        get(&client, &format!("{url}/fast")).await;
    }
    assert_eq!(a.hits() + b.hits(), 31);
    assert!(
        busy.hits() >= 5,
        "ties are broken round robin: {}",
        busy.hits()
    );
}

#[tokio::test]
async fn a_dead_target_costs_no_failed_request() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut tg = target_group("tg");
    // Only the first check runs within the test: passive errors must do the work.
    tg.health_check.interval = Duration::from_secs(3600);
    let (gateway, url) = simple_gateway(tg).await;
    gateway
        .set_targets(
            "tg",
            vec![Target::new("a", a.addr), Target::new("b", b.addr)],
        )
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 2).await;
    let client = client();
    for _ in 0..4 {
        assert_eq!(get(&client, &format!("{url}/")).await.0, StatusCode::OK);
    }
    a.kill();
    for i in 0..20 {
        let (status, _, body) = get(&client, &format!("{url}/n{i}")).await;
        assert_eq!(status, StatusCode::OK, "request {i}");
        assert_eq!(body, "b");
    }
    // Posts with a small body are retried too: the body was read first.
    for _ in 0..4 {
        let post = Request::post(format!("{url}/upload"))
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let (status, _, body) = request(&client, post).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "5 532"));
    }
    let health = gateway.target_health("tg").unwrap();
    let dead = health.iter().find(|t| t.id == "a").unwrap();
    assert_eq!(dead.state, TargetState::Unhealthy);
    assert_eq!(dead.reason.unwrap().as_str(), "Target.FailedHealthChecks");
    let metrics = gateway.metrics("tg").unwrap();
    assert!(metrics.target_connection_errors >= 1);
    assert_eq!(metrics.retries, metrics.target_connection_errors);
    assert_eq!(metrics.elb_502, 0);
}

#[tokio::test]
async fn the_gateway_answers_502_503_504_itself() {
    // 503: no registered target.
    let (gateway, url) = simple_gateway(target_group("tg")).await;
    let client = client();
    let (status, headers, body) = get(&client, &format!("{url}/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["server"], "hail");
    assert!(body.contains("503 Service Unavailable"));

    // 502: the only target refuses connections.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    gateway
        .set_targets("tg", vec![Target::new("gone", closed)])
        .unwrap();
    // Its checks fail, but fail-open still sends requests its way.
    wait_for_state(&gateway, "tg", TargetState::Unhealthy, 1).await;
    let (status, headers, _) = get(&client, &format!("{url}/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["server"], "hail");

    // 504: the target takes longer than the listener's idle timeout.
    let slow = Backend::start("slow").await;
    let gw504 = Gateway::new(Default::default()).unwrap();
    let mut listener = ListenerConfig::new("l", 0, forward("tg"));
    listener.idle_timeout = Duration::from_millis(500);
    let report = gw504
        .apply(GatewayConfig {
            listeners: vec![listener],
            target_groups: vec![target_group("tg")],
        })
        .await
        .unwrap();
    gw504
        .set_targets("tg", vec![Target::new("slow", slow.addr)])
        .unwrap();
    wait_for_state(&gw504, "tg", TargetState::Healthy, 1).await;
    let url504 = format!("http://{}", report.listeners[0].local_addr);
    let (status, _, _) = get(&client, &format!("{url504}/slow?ms=5000")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);

    let m = gateway.metrics("tg").unwrap();
    assert_eq!((m.elb_502, m.elb_503, m.elb_504), (1, 1, 0));
    assert_eq!(m.requests_total, 2);
    let m = gw504.metrics("tg").unwrap();
    assert_eq!((m.elb_502, m.elb_503, m.elb_504), (0, 0, 1));
}

#[tokio::test]
async fn keep_alive_and_http2_clients() {
    let backend = Backend::start("b").await;
    let (gateway, url) = simple_gateway(target_group("tg")).await;
    gateway
        .set_targets("tg", vec![Target::new("b", backend.addr)])
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 1).await;
    let authority = url.trim_start_matches("http://").to_owned();

    // HTTP/1.1: many requests on one client connection.
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let h1 = tokio::spawn(connection);
    for i in 0..20 {
        sender.ready().await.unwrap();
        let response = sender
            .send_request(
                Request::get(format!("/k{i}"))
                    .header("host", &authority)
                    .body(Full::<Bytes>::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_11);
        response.into_body().collect().await.unwrap();
    }
    drop(sender);
    h1.await.unwrap().unwrap();

    // HTTP/2 with prior knowledge: concurrent streams on one connection.
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut requests = Vec::new();
    for i in 0..20 {
        let mut sender = sender.clone();
        let uri = format!("{url}/h2-{i}");
        requests.push(tokio::spawn(async move {
            let response = sender
                .send_request(Request::get(uri).body(Full::<Bytes>::default()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }));
    }
    for r in requests {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"b");
    }
    let seen = backend.state.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(
        seen["host"],
        authority.as_str(),
        "HTTP/2 authority becomes Host"
    );
    // The gateway pools its connections to the target.
    assert!(backend.state.connections.load(Ordering::SeqCst) < 25);
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let backend = Backend::start("b").await;
    let (gateway, url) = simple_gateway(target_group("tg")).await;
    gateway
        .set_targets("tg", vec![Target::new("b", backend.addr)])
        .unwrap();
    wait_for_state(&gateway, "tg", TargetState::Healthy, 1).await;
    let client = client();

    // 8 MiB down.
    let response = client
        .request(
            Request::get(format!("{url}/download?bytes=8388608"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 8 << 20);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));

    // 4 MiB up, chunked (no length).
    let upload_client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Chunks>();
    let response = upload_client
        .request(
            Request::post(format!("{url}/upload"))
                .body(Chunks(64))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], format!("{} {}", 4 << 20, 4 << 20).as_bytes());
}

/// A body of N 64 KiB chunks of ones, of unknown length (sent chunked).
struct Chunks(usize);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![
            1u8;
            65536
        ])))))
    }
}
