//! The `ambassador` binary on loopback, in front of a small backend.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{backend, client, closed_port, get, parse_exposition, value, Sidecar};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

const AMBASSADOR: &str = env!("CARGO_BIN_EXE_ambassador");

struct Running {
    sidecar: Sidecar,
    proxy: SocketAddr,
    metrics: SocketAddr,
}

fn start(upstream: SocketAddr, extra: &[&str]) -> Running {
    let upstream = upstream.to_string();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
    ];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::start(AMBASSADOR, &args, &[]);
    let proxy = sidecar.addr_after("proxying");
    let metrics = sidecar.addr_after("metrics on");
    Running {
        sidecar,
        proxy,
        metrics,
    }
}

async fn metrics(addr: SocketAddr) -> Vec<common::Sample> {
    let (status, headers, text) = get(&client(), &format!("http://{addr}/metrics"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    parse_exposition(&text)
}

/// Splits a combined log line into its fields, checking the shape.
fn combined_fields(line: &str) -> Vec<String> {
    // client - - [date] "request" status bytes "referer" "agent" rt=secs
    let (client, rest) = line.split_once(" - - [").expect(line);
    let (date, rest) = rest.split_once("] \"").expect(line);
    let (request, rest) = rest.split_once("\" ").expect(line);
    let mut parts = rest.splitn(3, ' ');
    let status = parts.next().unwrap();
    let bytes = parts.next().unwrap();
    let rest = parts.next().unwrap();
    let (referer, rest) = rest[1..].split_once("\" \"").expect(line);
    let (agent, rt) = rest.split_once("\" rt=").expect(line);
    // 10/Oct/2000:13:55:36 +0000
    assert_eq!(date.len(), 26, "{date}");
    assert!(date.ends_with(" +0000"), "{date}");
    assert!(rt.parse::<f64>().is_ok(), "{rt}");
    [client, date, request, status, bytes, referer, agent]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn proxies_and_logs_in_combined_format() {
    let backend = backend().await;
    let amb = start(backend.addr, &[]);
    let client = client();
    let base = format!("http://{}", amb.proxy);

    let (status, headers, body) = get(
        &client,
        &format!("{base}/echo?x=1"),
        &[
            ("user-agent", "test-agent/1.0 \"quoted\""),
            ("referer", "http://ref.example/"),
            ("connection", "keep-alive, x-drop"),
            ("x-drop", "secret"),
            ("x-keep", "kept"),
            ("host", "app.example"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("GET /echo?x=1\n"), "{body}");
    assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
    assert!(body.contains("host: app.example\n"), "{body}");
    assert!(body.contains("x-keep: kept\n"), "{body}");
    assert!(!body.contains("x-drop"), "{body}");
    assert_eq!(headers["x-backend"], "yes");
    assert!(
        headers.get("keep-alive").is_none(),
        "hop-by-hop response header"
    );

    // A streamed (chunked) megabyte comes back whole.
    let (status, _, big) = get(&client, &format!("{base}/bytes/1048576"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(big.len(), 1_048_576);

    // A request body is streamed to the upstream.
    let upload = Request::post(format!("{base}/echo"))
        .body(Full::new(Bytes::from(vec![7u8; 300_000])))
        .unwrap();
    let response = client.request(upload).await.unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("body 300000 bytes"));

    // Keep-alive on both sides: many sequential requests, few upstream
    // connections.
    let before = backend
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..40 {
        let (status, _, _) = get(&client, &format!("{base}/echo"), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let after = backend
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "{before} -> {after} upstream connections"
    );

    let lines = amb.sidecar.stdout_lines(43, Duration::from_secs(5));
    assert_eq!(lines.len(), 43, "{lines:#?}");
    let first = combined_fields(&lines[0]);
    assert_eq!(first[0], "127.0.0.1");
    assert_eq!(first[2], "GET /echo?x=1 HTTP/1.1");
    assert_eq!(first[3], "200");
    assert_eq!(first[4], body.len().to_string());
    assert_eq!(first[5], "http://ref.example/");
    assert_eq!(first[6], "test-agent/1.0 \\\"quoted\\\"");
    let second = combined_fields(&lines[1]);
    assert_eq!(second[2], "GET /bytes/1048576 HTTP/1.1");
    assert_eq!(second[4], "1048576");
    assert_eq!(second[5], "-");
    let third = combined_fields(&lines[2]);
    assert_eq!(third[2], "POST /echo HTTP/1.1");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_and_counts_it() {
    let backend = backend().await;
    let amb = start(
        backend.addr,
        &["--rate", "0.5", "--burst", "3", "--trust-forwarded-for"],
    );
    let client = client();
    let url = format!("http://{}/echo", amb.proxy);
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (status, headers, _) = get(&client, &url, &[("x-forwarded-for", "203.0.113.1")]).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(headers["retry-after"], "2");
        }
        codes.push(status.as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    // Another client behind the same balancer has its own bucket; a
    // forged first entry changes nothing, the last one counts.
    let (status, _, _) = get(&client, &url, &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(
        &client,
        &url,
        &[("x-forwarded-for", "198.51.100.7, 203.0.113.1")],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let samples = metrics(amb.metrics).await;
    let requests = |code| {
        value(
            &samples,
            "ambassador_requests_total",
            &[("code", code), ("method", "GET")],
        )
    };
    assert_eq!(requests("200"), Some(4.0));
    assert_eq!(requests("429"), Some(3.0));
    assert_eq!(
        value(&samples, "ambassador_rate_limited_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "ambassador_rate_limit_clients", &[]),
        Some(2.0)
    );

    let lines = amb.sidecar.stdout_lines(7, Duration::from_secs(5));
    let statuses: Vec<String> = lines
        .iter()
        .map(|l| combined_fields(l)[3].clone())
        .collect();
    assert_eq!(statuses, ["200", "200", "200", "429", "429", "200", "429"]);
    assert!(lines[0].starts_with("203.0.113.1 - - ["), "{}", lines[0]);
    assert!(lines[5].starts_with("203.0.113.2 - - ["), "{}", lines[5]);
}

#[tokio::test]
async fn the_metrics_page_parses_and_counts_every_request() {
    let backend = backend().await;
    let amb = start(backend.addr, &["--rate", "0"]);
    let client = client();
    for i in 0..12 {
        let path = if i % 3 == 0 { "/bytes/10" } else { "/echo" };
        let (status, _, _) = get(&client, &format!("http://{}{path}", amb.proxy), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let head = Request::head(format!("http://{}/echo", amb.proxy))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(head).await.unwrap().status(), StatusCode::OK);
    let weird = Request::builder()
        .method("BREW")
        .uri(format!("http://{}/echo", amb.proxy))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        client.request(weird).await.unwrap().status(),
        StatusCode::OK
    );
    // Let the last response's completion be recorded.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let samples = metrics(amb.metrics).await;
    let get_ok = [("code", "200"), ("method", "GET")];
    assert_eq!(
        value(&samples, "ambassador_requests_total", &get_ok),
        Some(12.0)
    );
    let head_ok = [("code", "200"), ("method", "HEAD")];
    assert_eq!(
        value(&samples, "ambassador_requests_total", &head_ok),
        Some(1.0)
    );
    let other = [("code", "200"), ("method", "OTHER")];
    assert_eq!(
        value(&samples, "ambassador_requests_total", &other),
        Some(1.0)
    );
    let count = value(&samples, "ambassador_request_duration_seconds_count", &[]);
    assert_eq!(count, Some(14.0));
    let inf = [("le", "+Inf")];
    assert_eq!(
        value(&samples, "ambassador_request_duration_seconds_bucket", &inf),
        Some(14.0)
    );
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "ambassador_request_duration_seconds_bucket")
        .map(|s| s.value)
        .collect();
    assert!(buckets.len() > 5);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(value(&samples, "ambassador_request_duration_seconds_sum", &[]).unwrap() > 0.0);
    assert_eq!(
        value(&samples, "ambassador_in_flight_requests", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "ambassador_rate_limited_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "ambassador_upstream_errors_total", &[]),
        Some(0.0)
    );

    let (status, _, body) = get(&client, &format!("http://{}/healthz", amb.metrics), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    // The metrics port serves nothing else, and the proxy port no metrics.
    let (status, _, _) = get(&client, &format!("http://{}/echo", amb.metrics), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_upstream_down_is_502_and_a_slow_one_504() {
    let amb = start(closed_port(), &[]);
    let client = client();
    let (status, _, body) = get(&client, &format!("http://{}/x", amb.proxy), &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, "upstream unavailable\n");
    let samples = metrics(amb.metrics).await;
    assert_eq!(
        value(&samples, "ambassador_upstream_errors_total", &[]),
        Some(1.0)
    );
    let bad = [("code", "502"), ("method", "GET")];
    assert_eq!(
        value(&samples, "ambassador_requests_total", &bad),
        Some(1.0)
    );
    // The ambassador itself stays healthy: its health is its own.
    let (status, _, _) = get(&client, &format!("http://{}/healthz", amb.metrics), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let line = &amb.sidecar.stdout_lines(1, Duration::from_secs(5))[0];
    assert_eq!(combined_fields(line)[3], "502");

    let backend = backend().await;
    let amb = start(backend.addr, &["--upstream-timeout", "200ms"]);
    let (status, _, _) = get(&client, &format!("http://{}/slow/2000", amb.proxy), &[]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let (status, _, _) = get(&client, &format!("http://{}/slow/10", amb.proxy), &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_then_exits() {
    let backend = backend().await;
    let mut amb = start(backend.addr, &[]);
    let client = client();
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("http://{}/slow/1500", amb.proxy);
        async move { get(&client, &url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    amb.sidecar.signal("TERM");
    // Health turns to 503 while draining (once the signal is handled).
    let health = format!("http://{}/healthz", amb.metrics);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (status, _, _) = get(&client, &health, &[]).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // New connections are refused.
    assert!(tokio::net::TcpStream::connect(amb.proxy).await.is_err());

    let (status, _, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow done"));
    let exit = tokio::task::spawn_blocking(move || {
        let status = amb.sidecar.wait_exit(Duration::from_secs(10));
        (status, amb)
    })
    .await
    .unwrap();
    assert!(exit.0.is_some_and(|s| s.success()), "{:?}", exit.0);
    let lines = exit.1.sidecar.stdout_lines(1, Duration::from_secs(2));
    assert!(
        lines[0].contains("\"GET /slow/1500 HTTP/1.1\" 200 9 "),
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_healthcheck_subcommand_reports_the_metrics_port() {
    let backend = backend().await;
    let amb = start(backend.addr, &[]);
    let metrics = amb.metrics.to_string();
    let ok = tokio::process::Command::new(AMBASSADOR)
        .args(["--metrics", &metrics, "healthcheck"])
        .status()
        .await
        .unwrap();
    assert!(ok.success());
    let down = closed_port().to_string();
    let out = tokio::process::Command::new(AMBASSADOR)
        .env("AMBASSADOR_METRICS", &down)
        .args(["healthcheck", "--timeout", "1s"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("ambassador: unhealthy: cannot connect to"),
        "{stderr}"
    );
}
