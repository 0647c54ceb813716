//! The task metadata router on a real loopback socket, with a fake source
//! that authorises callers with the real [`PeerPolicy`]. Callers connect
//! from distinct loopback addresses (127.0.0.2, 127.0.0.3, …), so the peer
//! address the router hands the source is the one the kernel saw.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hail_api::metadata::{metadata_router, MetadataError, MetadataId, PeerPolicy};
use hail_api::TaskMetadataSource;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const TASK_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TASK_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const A_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Two tasks with their addresses and containers; answers say which method
/// ran for which id, and record the peer the router passed.
struct Fake {
    policy: PeerPolicy,
    tasks: HashMap<&'static str, (IpAddr, Vec<&'static str>)>,
    peers: Mutex<Vec<IpAddr>>,
}

impl Fake {
    fn new(policy: PeerPolicy) -> Self {
        let tasks = HashMap::from([
            (TASK_A, (IpAddr::V4(A_ADDR), vec!["app", "side-car"])),
            (TASK_B, (IpAddr::V4(B_ADDR), vec!["app"])),
        ]);
        Fake {
            policy,
            tasks,
            peers: Mutex::new(Vec::new()),
        }
    }

    /// The authorisation every real source performs, then a canned answer.
    fn answer(&self, id: &MetadataId, peer: IpAddr, what: &str) -> Result<Value, MetadataError> {
        self.peers.lock().unwrap().push(peer);
        let Some((address, containers)) = self.tasks.get(id.task_id.as_str()) else {
            return Err(MetadataError::NotFound);
        };
        if !self.policy.permits(peer, Some(*address)) {
            return Err(MetadataError::NotFound);
        }
        if !containers.contains(&id.container.as_str()) {
            return Err(MetadataError::NotFound);
        }
        if id.container == "side-car" && what.contains("stats") {
            return Err(MetadataError::unavailable(
                "container side-car is not running",
            ));
        }
        Ok(json!({"what": what, "task": id.task_id, "container": id.container}))
    }
}

impl TaskMetadataSource for Fake {
    async fn container(&self, id: &MetadataId, peer: IpAddr) -> Result<Value, MetadataError> {
        self.answer(id, peer, "container")
    }

    async fn task(
        &self,
        id: &MetadataId,
        peer: IpAddr,
        with_tags: bool,
    ) -> Result<Value, MetadataError> {
        self.answer(id, peer, if with_tags { "taskWithTags" } else { "task" })
    }

    async fn container_stats(&self, id: &MetadataId, peer: IpAddr) -> Result<Value, MetadataError> {
        self.answer(id, peer, "container stats")
    }

    async fn task_stats(&self, id: &MetadataId, peer: IpAddr) -> Result<Value, MetadataError> {
        self.answer(id, peer, "task stats")
    }

    async fn credentials(&self, id: &str, peer: IpAddr) -> Result<Value, MetadataError> {
        // Credentials ids here are `<task id>-secret`.
        let task = id.strip_suffix("-secret").ok_or(MetadataError::NotFound)?;
        let metadata_id = MetadataId {
            task_id: task.to_owned(),
            container: "app".to_owned(),
        };
        self.answer(&metadata_id, peer, "credentials")?;
        Ok(json!({"AccessKeyId": "ASIAEXAMPLE", "Token": "t"}))
    }
}

/// Serves the router as a server must: with the peer address of every
/// connection.
async fn serve(source: Arc<Fake>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = metadata_router(source).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Reply {
    status: u16,
    headers: String,
    body: Value,
}

/// One HTTP/1.1 request from `from` to `to`.
async fn request(from: Ipv4Addr, to: SocketAddr, method: &str, path: &str) -> Reply {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap();
    let status = headers.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: body {body:?}: {e}"))
    };
    Reply {
        status,
        headers: headers.to_ascii_lowercase(),
        body,
    }
}

#[tokio::test]
async fn each_path_reaches_its_method_with_the_callers_address() {
    let fake = Arc::new(Fake::new(PeerPolicy::default()));
    let addr = serve(fake.clone()).await;
    let cases = [
        ("", "container"),
        ("/task", "task"),
        ("/taskWithTags", "taskWithTags"),
        ("/stats", "container stats"),
        ("/task/stats", "task stats"),
    ];
    for (suffix, what) in cases {
        let path = format!("/v4/{TASK_A}-app{suffix}");
        let reply = request(A_ADDR, addr, "GET", &path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert!(reply.headers.contains("content-type: application/json"));
        assert_eq!(
            reply.body,
            json!({"what": what, "task": TASK_A, "container": "app"}),
            "{path}"
        );
    }
    // Container names with dashes reach the source whole.
    let reply = request(A_ADDR, addr, "GET", &format!("/v4/{TASK_A}-side-car/task")).await;
    assert_eq!(reply.body["container"], "side-car");
    let peers = fake.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 6);
    assert!(peers.iter().all(|p| *p == IpAddr::V4(A_ADDR)), "{peers:?}");
}

#[tokio::test]
async fn another_task_and_the_host_get_the_answer_for_an_unknown_id() {
    let addr = serve(Arc::new(Fake::new(PeerPolicy::default()))).await;
    let unknown = request(
        A_ADDR,
        addr,
        "GET",
        "/v4/cccccccccccccccccccccccccccccccc-app/task",
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        json!("V4 task metadata handler: no task metadata for endpoint id cccccccccccccccccccccccccccccccc-app")
    );
    for suffix in ["", "/task", "/taskWithTags", "/stats", "/task/stats"] {
        let path = format!("/v4/{TASK_A}-app{suffix}");
        // Task B, from its own address, asking for task A.
        let reply = request(B_ADDR, addr, "GET", &path).await;
        assert_eq!(reply.status, 404, "{path}");
        let message = reply.body.as_str().unwrap().to_owned();
        assert!(
            message.ends_with(&format!("endpoint id {TASK_A}-app")),
            "{message}"
        );
        // The host, through loopback, which this policy does not trust.
        let reply = request(Ipv4Addr::LOCALHOST, addr, "GET", &path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.body.as_str().unwrap(), message);
    }
    // Task B still reads its own.
    let own = request(B_ADDR, addr, "GET", &format!("/v4/{TASK_B}-app")).await;
    assert_eq!(own.status, 200);
    // A container the task does not have is not found either.
    let reply = request(A_ADDR, addr, "GET", &format!("/v4/{TASK_A}-nope")).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn loopback_callers_are_trusted_only_when_the_source_says_so() {
    let addr = serve(Arc::new(Fake::new(PeerPolicy::AllowLoopback))).await;
    for task in [TASK_A, TASK_B] {
        let reply = request(
            Ipv4Addr::LOCALHOST,
            addr,
            "GET",
            &format!("/v4/{task}-app/task"),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["task"], task);
    }
}

#[tokio::test]
async fn wrong_methods_paths_and_failures_have_json_answers() {
    let addr = serve(Arc::new(Fake::new(PeerPolicy::default()))).await;
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let reply = request(A_ADDR, addr, method, &format!("/v4/{TASK_A}-app/task")).await;
        assert_eq!(reply.status, 405, "{method}");
        assert!(
            reply.headers.contains("\r\nallow: get"),
            "{}",
            reply.headers
        );
        if method != "HEAD" {
            assert_eq!(
                reply.body,
                json!(format!(
                    "{method} is not allowed: the metadata endpoint answers GET only"
                ))
            );
        }
    }
    for path in [
        "/".to_owned(),
        "/v2/metadata".to_owned(),
        format!("/v4/{TASK_A}-app/credentials"),
        format!("/v4/{TASK_A}-app/"),
        format!("/v4/{TASK_A}"),
        format!("/v4/{}-app", TASK_A.to_uppercase()),
    ] {
        let reply = request(A_ADDR, addr, "GET", &path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.body, json!(format!("no metadata endpoint at {path}")));
    }
    // The query string is not part of the path.
    let reply = request(A_ADDR, addr, "GET", &format!("/v4/{TASK_A}-app?x=1")).await;
    assert_eq!(reply.status, 200);
    // A failure after authorisation is a 500 with the source's reason.
    let reply = request(A_ADDR, addr, "GET", &format!("/v4/{TASK_A}-side-car/stats")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body,
        json!("V4 container stats handler: container side-car is not running")
    );
}

#[tokio::test]
async fn a_server_without_peer_addresses_refuses_rather_than_guesses() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(Fake::new(PeerPolicy::AllowLoopback));
    let router = metadata_router(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let reply = request(
        Ipv4Addr::LOCALHOST,
        addr,
        "GET",
        &format!("/v4/{TASK_A}-app"),
    )
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body,
        json!("V4 container metadata handler: the server does not know the caller's address")
    );
    assert!(
        fake.peers.lock().unwrap().is_empty(),
        "the source was asked"
    );
}

#[tokio::test]
async fn credentials_are_served_to_their_task_only() {
    let fake = Arc::new(Fake::new(PeerPolicy::default()));
    let addr = serve(fake.clone()).await;
    let path = format!("/v2/credentials/{TASK_A}-secret");
    let reply = request(A_ADDR, addr, "GET", &path).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["AccessKeyId"], "ASIAEXAMPLE");
    // Another caller, a forged id, or another method: the agent's error shape.
    for (from, path, method, status) in [
        (B_ADDR, path.as_str(), "GET", 400),
        (
            A_ADDR,
            &*format!("/v2/credentials/{TASK_A}-guess"),
            "GET",
            400,
        ),
        (A_ADDR, path.as_str(), "POST", 405),
    ] {
        let reply = request(from, addr, method, path).await;
        assert_eq!(reply.status, status, "{method} {path} from {from}");
        assert!(reply.body["code"].is_string(), "{:?}", reply.body);
    }
    assert!(hail_api::metadata::is_task_endpoint(&path));
    assert!(!hail_api::metadata::is_task_endpoint("/media/video/x.mp4"));
}
