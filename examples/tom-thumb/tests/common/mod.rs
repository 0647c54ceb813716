//! What the tests share: real videos, FFmpeg's presence, and a small HTTP
//! server on loopback that serves files with Range support and counts the
//! bytes it sends.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// True when FFmpeg can be run. Under `CI=true` a missing FFmpeg fails the
/// test instead: CI must run these tests, not skip them.
pub fn ffmpeg_available() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("ffmpeg") && ok("ffprobe") {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "ffmpeg and ffprobe must be on PATH under CI=true (scripts/install-deps.sh installs them)"
    );
    eprintln!("skipping: ffmpeg or ffprobe is not on PATH");
    false
}

/// The project's real test videos (`shared/data/videos` beside the
/// repository, or `$TOM_THUMB_VIDEOS`); `None` when they are not there,
/// which fails the test under `CI=true`.
pub fn video(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TOM_THUMB_VIDEOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/videos")
        });
    let path = dir.join(name);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "test video {} is missing (set TOM_THUMB_VIDEOS to the directory holding it)",
        path.display()
    );
    eprintln!("skipping: {} is missing", path.display());
    None
}

/// Runs a command and returns its stdout, failing the test with its stderr.
pub fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A decoded PNG: its geometry, colour type, bit depth and pixels.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub color: png::ColorType,
    pub depth: png::BitDepth,
    pub pixels: Vec<u8>,
}

pub fn decode_png(bytes: &[u8]) -> Decoded {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("PNG pixels");
    pixels.truncate(info.buffer_size());
    Decoded {
        width: info.width,
        height: info.height,
        color: info.color_type,
        depth: info.bit_depth,
        pixels,
    }
}

/// What the file server has done.
#[derive(Default)]
pub struct Stats {
    /// Body bytes handed to the connection.
    pub bytes_sent: AtomicU64,
    /// `METHOD PATH?QUERY RANGE` of every request.
    pub requests: Mutex<Vec<String>>,
}

/// A file server on 127.0.0.1 that honours `Range: bytes=…` (one range).
/// `/forbidden/…` answers 403, unknown paths 404.
pub struct FileServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    pub async fn start(files: HashMap<String, Bytes>) -> Self {
        // A small send buffer, inherited by every accepted socket, so that
        // bytes counted as sent are close to bytes the client asked for: a
        // client that stops reading leaves little in flight.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(32 << 10).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let files = Arc::new(files);
        let task = {
            let stats = stats.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (files, stats) = (files.clone(), stats.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let (files, stats) = (files.clone(), stats.clone());
                            async move { Ok::<_, Infallible>(serve_file(&files, &stats, req)) }
                        });
                        // A client closing mid-body is normal for FFmpeg.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self { addr, stats, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn bytes_sent(&self) -> u64 {
        self.stats.bytes_sent.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<String> {
        self.stats.requests.lock().unwrap().clone()
    }
}

fn serve_file(
    files: &HashMap<String, Bytes>,
    stats: &Arc<Stats>,
    req: Request<Incoming>,
) -> Response<CountingBody> {
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    stats.requests.lock().unwrap().push(format!(
        "{} {} {}",
        req.method(),
        req.uri(),
        range.as_deref().unwrap_or("-")
    ));
    let empty = |status| {
        Response::builder()
            .status(status)
            .body(CountingBody::new(Bytes::new(), stats.clone()))
            .unwrap()
    };
    if req.uri().path().starts_with("/forbidden/") {
        return empty(StatusCode::FORBIDDEN);
    }
    let Some(data) = files.get(req.uri().path()) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let len = data.len() as u64;
    let builder = Response::builder()
        .header(hyper::header::ACCEPT_RANGES, "bytes")
        .header(hyper::header::CONTENT_TYPE, "application/octet-stream");
    match range.map(|r| parse_range(&r, len)) {
        None => builder
            .status(StatusCode::OK)
            .body(CountingBody::new(data.clone(), stats.clone()))
            .unwrap(),
        Some(Some((start, end))) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                hyper::header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{len}"),
            )
            .body(CountingBody::new(
                data.slice(start as usize..=end as usize),
                stats.clone(),
            ))
            .unwrap(),
        Some(None) => Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(hyper::header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(CountingBody::new(Bytes::new(), stats.clone()))
            .unwrap(),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes, as
/// an inclusive range; `None` when it cannot be satisfied.
fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && start < len).then_some((start, end))
}

/// A response body sent in 16 KiB frames, each counted as it is handed over.
pub struct CountingBody {
    data: Bytes,
    stats: Arc<Stats>,
}

impl CountingBody {
    fn new(data: Bytes, stats: Arc<Stats>) -> Self {
        Self { data, stats }
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_empty() {
            return Poll::Ready(None);
        }
        let chunk = this.data.split_to(this.data.len().min(16 << 10));
        this.stats
            .bytes_sent
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

#[test]
fn ranges_parse_as_http_says() {
    assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
    assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
    assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
    assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 999)));
    assert_eq!(parse_range("bytes=1000-", 1000), None);
    assert_eq!(parse_range("bytes=5-1", 1000), None);
}
