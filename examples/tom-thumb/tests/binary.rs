//! The `tom-thumb` binary as a task runs it: environment in, one line out,
//! an exit code. The video comes from the range server, the credentials
//! from an ECS-style container credentials endpoint on loopback
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), and the PutObject goes to
//! `AWS_ENDPOINT_URL` — here a recorder that answers like S3, so the real
//! SDK's request (path style, signature with the session token, body,
//! content type) can be checked. The same run against Hail's S3 store is a
//! test of Hail's.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{decode_png, ffmpeg_available, run, video, FileServer};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tom_thumb::exit;

const ACCESS_KEY: &str = "ASIATOMTHUMBTEST";
const SESSION_TOKEN: &str = "session-token-from-the-credentials-endpoint";

/// A PutObject as the recorder saw it.
#[derive(Debug, Clone)]
struct Put {
    path: String,
    content_type: String,
    authorization: String,
    security_token: String,
    body: Bytes,
}

/// Answers `GET /credentials` like the ECS agent, and `PUT /bucket/key` like
/// S3: 200 for bucket `media`, 403 AccessDenied for any other.
struct FakeAws {
    addr: SocketAddr,
    puts: Arc<Mutex<Vec<Put>>>,
    credential_fetches: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAws {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let puts = Arc::new(Mutex::new(Vec::new()));
        let credential_fetches = Arc::new(Mutex::new(0));
        let (p, c) = (puts.clone(), credential_fetches.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (puts, fetches) = (p.clone(), c.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (puts, fetches) = (puts.clone(), fetches.clone());
                        async move { Ok::<_, Infallible>(answer(req, &puts, &fetches).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            puts,
            credential_fetches,
            task,
        }
    }

    fn puts(&self) -> Vec<Put> {
        self.puts.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    puts: &Mutex<Vec<Put>>,
    fetches: &Mutex<u32>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let path = req.uri().path().to_owned();
    if req.method() == hyper::Method::GET && path == "/credentials" {
        *fetches.lock().unwrap() += 1;
        let body = format!(
            r#"{{"AccessKeyId":"{ACCESS_KEY}","SecretAccessKey":"secret","Token":"{SESSION_TOKEN}","Expiration":"2099-01-01T00:00:00Z","RoleArn":"arn:aws:iam::000000000000:role/tom-thumb"}}"#
        );
        return Response::new(Full::new(Bytes::from(body)));
    }
    if req.method() != hyper::Method::PUT {
        return status(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    let put = Put {
        path: path.clone(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        security_token: header("x-amz-security-token"),
        body: Bytes::new(),
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if !path.starts_with("/media/") {
        return status(
            StatusCode::FORBIDDEN,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
             <Message>Access Denied</Message><RequestId>1</RequestId></Error>",
        );
    }
    puts.lock().unwrap().push(Put { body, ..put });
    let mut response = status(StatusCode::OK, "");
    response
        .headers_mut()
        .insert("etag", "\"0123456789abcdef\"".parse().unwrap());
    response
}

fn status(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = code;
    response
}

/// Runs the binary with only the given environment (plus PATH, and a HOME
/// without AWS profiles), as a container would.
async fn tom_thumb(env: &[(&str, String)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tom-thumb"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn task_env(
    video_url: String,
    aws: &FakeAws,
    s3_path: &str,
    position: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("INPUT_VIDEO_FILE_URL", video_url),
        ("POSITION_TIME_DURATION", position.into()),
        ("OUTPUT_S3_PATH", s3_path.into()),
        (
            "OUTPUT_THUMBS_FILE_NAME",
            "thumbnail_chaplin_20240101-120000_7.png".into(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", format!("http://{}", aws.addr)),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{}/credentials", aws.addr),
        ),
        // Never let the chain fall through to the EC2 instance metadata
        // address: only loopback is ours here.
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_task_writes_one_png_with_container_credentials() {
    if !ffmpeg_available() {
        return;
    }
    let Some(chaplin) = video("Zulko_moviepy_chaplin.mp4") else {
        return;
    };
    let files = HashMap::from([(
        "/media/video/chaplin.mp4".to_owned(),
        Bytes::from(std::fs::read(&chaplin).unwrap()),
    )]);
    let videos = FileServer::start(files).await;
    let aws = FakeAws::start().await;
    let url = videos.url("/media/video/chaplin.mp4?X-Amz-Signature=s3cr3t");

    let out = tom_thumb(&task_env(url, &aws, "media/thumbnail", "00:00:02")).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {stderr}",
        out.status
    );
    assert_eq!(stderr, "");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with(
            "tom-thumb: wrote s3://media/thumbnail/thumbnail_chaplin_20240101-120000_7.png ("
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("640x360, frame at 00:00:02) extract "),
        "{stdout}"
    );

    let puts = aws.puts();
    assert_eq!(puts.len(), 1, "{puts:?}");
    let put = &puts[0];
    assert_eq!(
        put.path,
        "/media/thumbnail/thumbnail_chaplin_20240101-120000_7.png"
    );
    assert_eq!(put.content_type, "image/png");
    assert!(
        put.authorization
            .starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")),
        "{}",
        put.authorization
    );
    assert_eq!(put.security_token, SESSION_TOKEN);
    assert_eq!(*aws.credential_fetches.lock().unwrap(), 1);

    let local = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-ss",
            "2",
            "-i",
            chaplin.to_str().unwrap(),
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "png",
            "pipe:1",
        ],
    );
    assert!(
        decode_png(&put.body) == decode_png(&local),
        "the uploaded frame differs"
    );
}

#[tokio::test]
async fn failures_print_one_line_exit_with_their_class_and_write_nothing() {
    if !ffmpeg_available() {
        return;
    }
    let Some(chaplin) = video("Zulko_moviepy_chaplin.mp4") else {
        return;
    };
    let files = HashMap::from([
        (
            "/media/video/chaplin.mp4".to_owned(),
            Bytes::from(std::fs::read(&chaplin).unwrap()),
        ),
        (
            "/media/video/notes.mp4".to_owned(),
            Bytes::from_static(b"not a video at all\n"),
        ),
    ]);
    let videos = FileServer::start(files).await;
    let aws = FakeAws::start().await;
    let video_url = |name: &str| videos.url(&format!("/media/video/{name}?X-Amz-Signature=s3cr3t"));
    let base = format!("http://{}", videos.addr);

    // (environment, exit code, the one line on stderr)
    type Case = (Vec<(&'static str, String)>, u8, String);
    let cases: Vec<Case> = vec![
        (
            task_env(video_url("chaplin.mp4"), &aws, "media/thumbnail", "00:10:00"),
            exit::PAST_END,
            "tom-thumb: error: position 00:10:00 is past the end of the video (9.64 s)".into(),
        ),
        (
            task_env(video_url("notes.mp4"), &aws, "media/thumbnail", "1"),
            exit::NOT_A_VIDEO,
            format!("tom-thumb: error: input is not a video: {base}/media/video/notes.mp4: Invalid data found when processing input"),
        ),
        (
            task_env(video_url("gone.mp4"), &aws, "media/thumbnail", "1"),
            exit::INPUT_UNAVAILABLE,
            format!("tom-thumb: error: input video {base}/media/video/gone.mp4 is not available: Server returned 404 Not Found"),
        ),
        (
            task_env(video_url("chaplin.mp4"), &aws, "locked/thumbnail", "1"),
            exit::OUTPUT_DENIED,
            "tom-thumb: error: no permission to write s3://locked/thumbnail/thumbnail_chaplin_20240101-120000_7.png: AccessDenied: Access Denied".into(),
        ),
        (
            task_env(video_url("chaplin.mp4"), &aws, "media/thumbnail", "soon"),
            exit::CONFIG,
            "tom-thumb: error: configuration: POSITION_TIME_DURATION: \"soon\" is not a position: a field is not a whole number (want HH:MM:SS[.mmm], MM:SS[.mmm] or seconds)".into(),
        ),
    ];
    for (env, code, line) in cases {
        let out = tom_thumb(&env).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(i32::from(code)), "{stderr}");
        assert_eq!(stderr, format!("{line}\n"));
        assert_eq!(text(&out.stdout), "");
    }
    assert!(aws.puts().is_empty(), "{:?}", aws.puts());

    // A missing variable is named; no credentials at all is a denial.
    let mut env = task_env(video_url("chaplin.mp4"), &aws, "media/thumbnail", "1");
    env.retain(|(k, _)| *k != "OUTPUT_S3_PATH");
    let out = tom_thumb(&env).await;
    assert_eq!(out.status.code(), Some(i32::from(exit::CONFIG)));
    assert_eq!(
        text(&out.stderr),
        "tom-thumb: error: configuration: OUTPUT_S3_PATH is not set\n"
    );
    let mut env = task_env(video_url("chaplin.mp4"), &aws, "media/thumbnail", "1");
    env.retain(|(k, _)| *k != "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    let out = tom_thumb(&env).await;
    assert_eq!(
        out.status.code(),
        Some(i32::from(exit::OUTPUT_DENIED)),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1);
}
