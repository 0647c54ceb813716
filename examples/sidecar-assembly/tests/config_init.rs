//! The `config-init` binary with only a task's environment, against a fake
//! S3 and ECS credentials endpoint on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const CONFIG_INIT: &str = env!("CARGO_BIN_EXE_config-init");
const APP_JSON: &str = "{\"currency\": \"USD\", \"coins\": [1, 5, 10, 25]}\n";

/// What the fake saw: (path, authorization, security token).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

struct FakeAws {
    addr: SocketAddr,
    seen: Seen,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A body that announces a kilobyte, sends ten bytes, and breaks off a
/// moment later (so the bytes are out before the connection is cut).
struct Cut {
    sent: bool,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Cut {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"half\": 1")))));
        }
        match self.pause.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::other("cut")))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(1000)
    }
}

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>r1</RequestId></Error>"
    );
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/xml".parse().unwrap());
    r
}

async fn answer(seen: Seen, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    seen.lock().unwrap().push((
        path.clone(),
        header("authorization"),
        header("x-amz-security-token"),
    ));
    let response = match path.as_str() {
        "/credentials" => Response::new(full(Bytes::from_static(
            br#"{"AccessKeyId":"AKIDTASKROLE","SecretAccessKey":"secret","Token":"task-token","Expiration":"2099-01-01T00:00:00Z","RoleArn":"arn:aws:iam::000000000000:role/sidecar-assembly-task-role"}"#,
        ))),
        "/configs/bean-counter/app.json" => {
            let mut r = Response::new(full(Bytes::from_static(APP_JSON.as_bytes())));
            r.headers_mut()
                .insert("etag", "\"0123abcd\"".parse().unwrap());
            r
        }
        "/configs/big.json" => Response::new(full(vec![b' '; 5000])),
        "/configs/cut.json" => Response::new(
            Cut {
                sent: false,
                pause: Box::pin(tokio::time::sleep(std::time::Duration::from_millis(100))),
            }
            .boxed(),
        ),
        "/configs/secret.json" => xml_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied"),
        "/configs/broken.json" => {
            xml_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "try later")
        }
        p if p.starts_with("/nobucket/") => xml_error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        ),
        _ => xml_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ),
    };
    Ok(response)
}

async fn fake_aws() -> FakeAws {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(seen.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeAws { addr, seen }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs config-init with a task's environment and `extra` on top.
async fn run(aws: &FakeAws, bucket: &str, key: &str, path: &Path, extra: &[(&str, &str)]) -> Run {
    let mut env: HashMap<&str, String> = HashMap::from([
        ("CONFIG_BUCKET", bucket.to_owned()),
        ("CONFIG_KEY", key.to_owned()),
        ("CONFIG_PATH", path.display().to_string()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT_URL", format!("http://{}", aws.addr)),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{}/credentials", aws.addr),
        ),
        // Nothing may look for an instance metadata service off loopback.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_MAX_ATTEMPTS", "2".to_owned()),
    ]);
    // An empty value removes the variable.
    for (k, v) in extra {
        if v.is_empty() {
            env.remove(k);
        } else {
            env.insert(k, (*v).to_owned());
        }
    }
    let out = tokio::process::Command::new(CONFIG_INIT)
        .env_clear()
        .envs(env)
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn copies_the_object_with_the_task_role_and_replaces_the_file_atomically() {
    let aws = fake_aws().await;
    let dir = tempfile::tempdir().unwrap();
    // The directory is created if the volume is mounted higher up.
    let path = dir.path().join("config").join("app.json");
    let r = run(&aws, "configs", "bean-counter/app.json", &path, &[]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "config-init: wrote s3://configs/bean-counter/app.json to {} ({} bytes, etag \"0123abcd\")\n",
            path.display(),
            APP_JSON.len()
        )
    );
    assert_eq!(r.stderr, "");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), APP_JSON);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(names_in(path.parent().unwrap()), ["app.json"]);

    // One credentials fetch, then one path-style GetObject signed with the
    // task role's key and token.
    let seen = aws.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].0, "/credentials");
    assert_eq!(seen[1].0, "/configs/bean-counter/app.json");
    assert!(
        seen[1]
            .1
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDTASKROLE/"),
        "{}",
        seen[1].1
    );
    assert_eq!(seen[1].2, "task-token");

    // Run again over an existing file: replaced whole.
    std::fs::write(&path, "old content").unwrap();
    let r = run(&aws, "configs", "bean-counter/app.json", &path, &[]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), APP_JSON);
}

#[tokio::test]
async fn each_failure_has_its_exit_code_one_line_and_leaves_the_old_file() {
    let aws = fake_aws().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    std::fs::write(&path, "previous").unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let unreachable = format!("http://{closed}");
    // (bucket, key, environment changes, exit code, stderr line prefix)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, i32, String);
    let cases: Vec<Case> = vec![
        (
            "configs",
            "missing.json",
            vec![],
            3,
            "config-init: error: s3://configs/missing.json does not exist: NoSuchKey: The specified key does not exist.".into(),
        ),
        (
            "nobucket",
            "app.json",
            vec![],
            3,
            "config-init: error: s3://nobucket/app.json does not exist: NoSuchBucket: The specified bucket does not exist".into(),
        ),
        (
            "configs",
            "secret.json",
            vec![],
            4,
            "config-init: error: no permission to read s3://configs/secret.json: AccessDenied: Access Denied".into(),
        ),
        (
            "configs",
            "broken.json",
            vec![],
            1,
            "config-init: error: cannot read s3://configs/broken.json: InternalError: try later".into(),
        ),
        (
            "configs",
            "big.json",
            vec![("CONFIG_MAX_BYTES", "1000")],
            7,
            "config-init: error: s3://configs/big.json is larger than the limit of 1000 bytes (CONFIG_MAX_BYTES)".into(),
        ),
        (
            "configs",
            "cut.json",
            vec![],
            5,
            "config-init: error: cannot reach S3 to read s3://configs/cut.json: the download broke off".into(),
        ),
        (
            "configs",
            "app.json",
            vec![("AWS_ENDPOINT_URL", unreachable.as_str())],
            5,
            "config-init: error: cannot reach S3 to read s3://configs/app.json: ".into(),
        ),
        (
            "configs",
            "app.json",
            vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")],
            4,
            "config-init: error: no permission to read s3://configs/app.json: no credentials".into(),
        ),
        (
            "configs",
            "app.json",
            vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", "not a url")],
            2,
            "config-init: error: configuration: the task's credentials: ".into(),
        ),
        (
            "configs",
            "app.json",
            vec![("AWS_REGION", "")],
            2,
            "config-init: error: configuration: AWS_REGION is not set".into(),
        ),
        (
            "",
            "app.json",
            vec![],
            2,
            "config-init: error: configuration: CONFIG_BUCKET is not set".into(),
        ),
    ];
    for (bucket, key, extra, code, line) in &cases {
        let r = run(&aws, bucket, key, &path, extra).await;
        let what = format!("s3://{bucket}/{key} {extra:?}: {}", r.stderr);
        assert_eq!(r.code, Some(*code), "{what}");
        assert_eq!(r.stdout, "", "{what}");
        assert_eq!(r.stderr.lines().count(), 1, "{what}");
        assert!(r.stderr.starts_with(line.as_str()), "{what}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "previous",
            "{what}"
        );
        assert_eq!(names_in(dir.path()), ["app.json"], "{what}");
    }
}

#[tokio::test]
async fn an_unwritable_target_is_a_write_failure() {
    let aws = fake_aws().await;
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: the rename cannot replace it.
    let path = dir.path().join("app.json");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), "x").unwrap();
    let r = run(&aws, "configs", "bean-counter/app.json", &path, &[]).await;
    assert_eq!(r.code, Some(6), "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "config-init: error: cannot write {}: rename the temporary file over it: ",
            path.display()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(names_in(dir.path()), ["app.json"]);
}
