//! The real service on loopback: the binary, started as in a task, with a
//! small S3 stand-in that also hands out container credentials.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const SMALL: &[u8] = include_bytes!("../assets/jeffninghan_coins_penny_nickel_dime_quarter.jpg");
const KEY_ID: &str = "ASIATESTCONTAINER";

/// Objects of bucket `photos` at `/photos/<key>` (path style), and
/// container credentials at `/creds`. Records the Authorization headers.
struct FakeS3 {
    addr: SocketAddr,
    authorizations: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeS3 {
    async fn start(objects: HashMap<String, Bytes>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let objects = Arc::new(objects);
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let authorizations = authorizations.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (objects, authorizations) = (objects.clone(), authorizations.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<_>| {
                            let (objects, authorizations) =
                                (objects.clone(), authorizations.clone());
                            async move { Ok::<_, Infallible>(answer(&objects, &authorizations, req)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self {
            addr,
            authorizations,
            task,
        }
    }
}

fn answer(
    objects: &HashMap<String, Bytes>,
    authorizations: &Mutex<Vec<String>>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/creds" {
        let body = format!(
            r#"{{"AccessKeyId":"{KEY_ID}","SecretAccessKey":"secret","Token":"token","Expiration":"2099-01-01T00:00:00Z"}}"#
        );
        return Response::new(Full::new(Bytes::from(body)));
    }
    if let Some(auth) = req.headers().get("authorization") {
        authorizations
            .lock()
            .unwrap()
            .push(auth.to_str().unwrap_or_default().to_owned());
    }
    match path.strip_prefix("/photos/").and_then(|key| objects.get(key)) {
        Some(data) => Response::builder()
            .header("content-length", data.len())
            .body(Full::new(data.clone()))
            .unwrap(),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from(
                "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
            )))
            .unwrap(),
    }
}

/// The bean-counter binary serving on an ephemeral port.
struct Service {
    addr: SocketAddr,
    child: Child,
}

impl Service {
    /// Starts the binary with only the environment a task would give it.
    async fn start(env: &[(&str, String)]) -> Self {
        let mut child = Command::new(common::binary())
            .env_clear()
            .env("PORT", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(addr) = line.strip_prefix("bean-counter: listening on ") {
                    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
                    return SocketAddr::from(([127, 0, 0, 1], port));
                }
            }
            panic!("the service exited before listening");
        })
        .await
        .expect("the service listens within 20 s");
        // Keep draining the log so the service never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { addr, child }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HashMap<String, String>, Bytes) {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = sender
            .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HashMap<String, String>, Bytes) {
        self.request("GET", path, headers, Vec::new()).await
    }
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

async fn service_with_bucket(s3: &FakeS3) -> Service {
    Service::start(&[
        ("BUCKET", "photos".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", format!("http://{}", s3.addr)),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{}/creds", s3.addr),
        ),
    ])
    .await
}

#[tokio::test]
async fn counts_an_object_of_the_bucket_with_container_credentials() {
    let mut objects = HashMap::new();
    objects.insert("in/coins.jpg".to_owned(), Bytes::from_static(SMALL));
    objects.insert("notes.txt".to_owned(), Bytes::from_static(b"not a photo"));
    let s3 = FakeS3::start(objects).await;
    let service = service_with_bucket(&s3).await;

    let (status, headers, body) = service.get("/countme/in/coins.jpg", &[]).await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(text(&body), "$0.41\n");
    assert_eq!(headers["x-total-cents"], "41");
    let auth = s3.authorizations.lock().unwrap().clone();
    assert!(
        auth.iter().any(|a| a.contains(KEY_ID)),
        "requests were not signed with the container credentials: {auth:?}"
    );

    let (status, _, body) = service.get("/countme/missing.jpg", &[]).await;
    assert_eq!(status, 404, "{}", text(&body));
    assert!(text(&body).contains("no such key"), "{}", text(&body));

    let (status, _, body) = service
        .get("/countme/notes.txt", &[("accept", "application/json")])
        .await;
    assert_eq!(status, 400);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "not_an_image");
}

#[tokio::test]
async fn an_unreachable_bucket_is_a_bad_gateway() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let service = Service::start(&[
        ("BUCKET", "photos".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", format!("http://{closed}")),
        ("AWS_ACCESS_KEY_ID", "AKIATEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "secret".into()),
    ])
    .await;
    let (status, _, body) = service.get("/countme/coins.jpg", &[]).await;
    assert_eq!(status, 502, "{}", text(&body));
    assert!(text(&body).contains("unreachable"), "{}", text(&body));
}

#[tokio::test]
async fn routes_answer_as_documented() {
    let service = Service::start(&[]).await;

    let (status, headers, body) = service.get("/", &[]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/html"));
    assert!(text(&body).contains("multipart/form-data"));

    let (status, _, body) = service.get("/healthz", &[]).await;
    assert_eq!((status, text(&body).as_str()), (StatusCode::OK, "ok\n"));

    let (status, _, body) = service.get("/countme-test/", &[]).await;
    assert_eq!((status, text(&body).as_str()), (StatusCode::OK, "$1.17\n"));

    let (status, _, body) = service
        .get("/countme-test/", &[("accept", "application/json")])
        .await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["total_cents"], 117);
    assert_eq!(json["total"], "$1.17");
    assert_eq!(json["counts"]["quarter"], 4);
    let coins = json["coins"].as_array().unwrap();
    assert_eq!(coins.len(), 8);
    for coin in coins {
        assert!(coin["center"]["x"].as_f64().unwrap() < 2448.0);
        assert!(coin["center"]["y"].as_f64().unwrap() < 3264.0);
        assert!(coin["diameter_mm"].as_f64().unwrap() > 15.0);
    }

    let (status, headers, body) = service.get("/countme-test/?annotate=1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert!(body.starts_with(b"\x89PNG"));

    // No bucket configured.
    let (status, _, _) = service.get("/countme/x.jpg", &[]).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn uploads_are_counted_raw_or_as_a_form() {
    let service = Service::start(&[]).await;

    let (status, _, body) = service.request("POST", "/count", &[], SMALL.to_vec()).await;
    assert_eq!((status, text(&body).as_str()), (StatusCode::OK, "$0.41\n"));

    let boundary = "XbeanX";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"c.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(SMALL);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (status, _, body) = service
        .request("POST", "/count", &[("content-type", &content_type)], form)
        .await;
    assert_eq!((status, text(&body).as_str()), (StatusCode::OK, "$0.41\n"));

    let (status, _, body) = service
        .request("POST", "/count", &[], b"plain words".to_vec())
        .await;
    assert_eq!(status, 400, "{}", text(&body));

    let (status, _, _) = service.request("POST", "/count", &[], Vec::new()).await;
    assert_eq!(status, 400);

    // A blank white picture: no coins.
    let mut blank = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut blank, 400, 300);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&vec![255u8; 400 * 300 * 3])
            .unwrap();
    }
    let (status, _, body) = service
        .request("POST", "/count", &[("accept", "application/json")], blank)
        .await;
    assert_eq!(status, 422);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "no_coins");

    // More than 64 MiB.
    let (status, _, _) = service
        .request("POST", "/count", &[], vec![0u8; (64 << 20) + 1])
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn the_healthcheck_command_checks_the_service() {
    let service = Service::start(&[]).await;
    let ok = Command::new(common::binary())
        .arg("healthcheck")
        .env("PORT", service.addr.port().to_string())
        .status()
        .await
        .unwrap();
    assert!(ok.success());
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = Command::new(common::binary())
        .arg("healthcheck")
        .env("PORT", closed.to_string())
        .status()
        .await
        .unwrap();
    assert!(!down.success());
    drop(service.child);
}
