//! The router on a real loopback socket, driven by the `aws` CLI, boto3 and
//! raw (malformed) HTTP.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ACCESS_KEY, SECRET_KEY};
use hail_api::{
    ApiError, ApiService, ErrorCode, JsonApi, RequestContext, Service, StaticCredentials,
    SystemClock,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Calls = Arc<Mutex<Vec<(Service, String, Value, RequestContext)>>>;

/// Records every call; fails DescribeClusters the way ECS does for a missing
/// cluster, echoes everything else.
struct Echo {
    calls: Calls,
}

impl JsonApi for Echo {
    async fn call(
        &self,
        service: Service,
        op: &str,
        body: Value,
        ctx: RequestContext,
    ) -> Result<Value, ApiError> {
        self.calls
            .lock()
            .unwrap()
            .push((service, op.to_string(), body.clone(), ctx));
        match op {
            "ListClusters" => {
                Ok(json!({"clusterArns": ["arn:aws:ecs:us-east-1:000000000000:cluster/echo"]}))
            }
            "DescribeClusters" => Err(ApiError::new(
                ErrorCode::ClusterNotFoundException,
                "Cluster not found.",
            )),
            _ => Ok(json!({})),
        }
    }
}

async fn start(body_limit: usize) -> (String, Calls) {
    let calls: Calls = Arc::default();
    let service = ApiService::new(
        Arc::new(Echo {
            calls: calls.clone(),
        }),
        Arc::new(StaticCredentials::new().with(ACCESS_KEY, SECRET_KEY)),
        Arc::new(SystemClock),
    )
    .with_body_limit(body_limit);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, service.into_router()).await });
    (format!("http://{addr}"), calls)
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

async fn aws(endpoint: &str, access_key: &str, secret: &str, args: &[&str]) -> Output {
    let mut cmd = common::python_command("us-east-1");
    cmd.args(["-m", "awscli"])
        .args(args)
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_and_boto3_reach_the_handler() {
    // Build the venv before the server starts, outside the async runtime's
    // hot path.
    tokio::task::spawn_blocking(common::python).await.unwrap();
    let (endpoint, calls) = start(hail_api::json11::DEFAULT_BODY_LIMIT).await;

    let out = aws(&endpoint, ACCESS_KEY, SECRET_KEY, &["ecs", "list-clusters"]).await;
    assert!(out.success, "aws ecs list-clusters: {}", out.stderr);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        listed["clusterArns"][0],
        "arn:aws:ecs:us-east-1:000000000000:cluster/echo"
    );

    let out = aws(
        &endpoint,
        ACCESS_KEY,
        SECRET_KEY,
        &["logs", "create-log-group", "--log-group-name", "/ecs/web ሴ"],
    )
    .await;
    assert!(out.success, "aws logs create-log-group: {}", out.stderr);

    let out = aws(
        &endpoint,
        ACCESS_KEY,
        SECRET_KEY,
        &[
            "application-autoscaling",
            "describe-scalable-targets",
            "--service-namespace",
            "ecs",
        ],
    )
    .await;
    assert!(out.success, "aws application-autoscaling: {}", out.stderr);

    {
        let calls = calls.lock().unwrap();
        let seen: Vec<(Service, &str)> = calls
            .iter()
            .map(|(s, op, _, _)| (*s, op.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (Service::Ecs, "ListClusters"),
                (Service::Logs, "CreateLogGroup"),
                (Service::ApplicationAutoScaling, "DescribeScalableTargets"),
            ]
        );
        assert_eq!(calls[1].2, json!({"logGroupName": "/ecs/web ሴ"}));
        assert_eq!(calls[2].2["ServiceNamespace"], "ecs");
        for (_, _, _, ctx) in calls.iter() {
            assert_eq!(ctx.access_key_id, ACCESS_KEY);
            assert_eq!(ctx.region, "us-east-1");
            assert_eq!(ctx.request_id.len(), 36);
        }
    }

    // Wrong secret and unknown key: the CLI reports the AWS error codes, and
    // the handler is never reached.
    let out = aws(
        &endpoint,
        ACCESS_KEY,
        "wrong-secret",
        &["ecs", "list-clusters"],
    )
    .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("(InvalidSignatureException)"),
        "{}",
        out.stderr
    );
    let out = aws(
        &endpoint,
        "AKIAUNKNOWN000000000",
        SECRET_KEY,
        &["ecs", "list-clusters"],
    )
    .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("(UnrecognizedClientException)"),
        "{}",
        out.stderr
    );
    assert_eq!(calls.lock().unwrap().len(), 3);

    // boto3 sees the handler's error as a ClientError with the same code.
    let mut cmd = common::python_command("us-east-1");
    cmd.arg(common::script("boto3_error.py"))
        .args([&endpoint, ACCESS_KEY, SECRET_KEY]);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["error"]["Code"], "ClusterNotFoundException");
    assert_eq!(result["error"]["Message"], "Cluster not found.");
    assert_eq!(result["status"], 400);
    let calls = calls.lock().unwrap();
    let (service, op, body, ctx) = calls.last().unwrap();
    assert_eq!((*service, op.as_str()), (Service::Ecs, "DescribeClusters"));
    assert_eq!(body, &json!({"clusters": ["missing"]}));
    assert_eq!(result["request_id"], ctx.request_id.as_str());
}

/// Sends raw bytes and returns the status code and the whole response.
async fn raw(endpoint: &str, request: &[u8]) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response));
    read.await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in response {text:?}"));
    (status, text)
}

fn post(target: &[u8], extra_headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut req = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(extra_headers);
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_aws_errors_and_the_server_survives() {
    let (endpoint, calls) = start(4096).await;
    let list = b"AmazonEC2ContainerServiceV20141113.ListClusters";
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (post(list, b"", b"{}"), 403, "MissingAuthenticationTokenException"),
        (post(b"AmazonEC2ContainerServiceV20141113.NoSuchOp", b"", b"{}"), 400, "UnknownOperationException"),
        (post(b"\xff\xfe\x80", b"", b"{}"), 400, "UnknownOperationException"),
        (post(b"", b"", b"{}"), 400, "UnknownOperationException"),
        (post(list, b"", &vec![b'x'; 5000]), 413, "RequestEntityTooLargeException"),
        (post(list, b"", b"\xff\xfe{\"a\":\"\xc3\x28\"}"), 403, "MissingAuthenticationTokenException"),
        (
            post(list, b"Authorization: AWS4-HMAC-SHA256 Credential=\xff/x, Signature=\x80\r\n", b"{}"),
            400,
            "IncompleteSignatureException",
        ),
        (
            post(list, b"Authorization: AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN000000000/20250101/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nX-Amz-Date: 20250101T000000Z\r\n", b"{}"),
            403,
            "InvalidSignatureException",
        ),
        (
            post(list, &[b"X-Junk: ".as_slice(), &vec![b'a'; 8000], b"\r\nX-Amz-Date: \xe9\xff\r\n"].concat(), b"{}"),
            403,
            "MissingAuthenticationTokenException",
        ),
        (
            b"GET /bucket/key HTTP/1.1\r\nHost: bucket.localhost\r\nConnection: close\r\n\r\n".to_vec(),
            403,
            "<Code>AccessDenied</Code>",
        ),
        (
            b"GET /key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=99999999999999999999 HTTP/1.1\r\nHost: b.localhost\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "<Code>AuthorizationHeaderMalformed</Code>",
        ),
    ];
    for (request, status, needle) in cases {
        let (got, text) = raw(&endpoint, &request).await;
        assert_eq!(
            got,
            status,
            "{}",
            String::from_utf8_lossy(&request[..request.len().min(200)])
        );
        assert!(text.contains(needle), "{needle} not in {text}");
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("x-amzn-requestid") || lower.contains("x-amz-request-id"),
            "{text}"
        );
    }

    // Chunked body without Content-Length still meets the limit.
    let mut chunked = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw(&endpoint, &chunked).await;
    assert_eq!(status, 413, "{text}");

    // Control characters in a header value are refused by hyper itself.
    let bad_header = post(list, b"X-Amz-Date: \x01\x02\r\n", b"{}");
    assert_eq!(raw(&endpoint, &bad_header).await.0, 400);

    // Not even a request: hyper answers or closes; the server keeps serving.
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"\x00\x01\x02 garbage \xff\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    let (status, _) = raw(&endpoint, &post(list, b"", b"{}")).await;
    assert_eq!(status, 403);
    assert!(
        calls.lock().unwrap().is_empty(),
        "no unauthenticated request may reach the handler"
    );
}
