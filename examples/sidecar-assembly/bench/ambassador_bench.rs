//! The ambassador's added latency at half of its maximum throughput.
//!
//! 1. A small hyper backend runs in this process; the release `ambassador`
//!    binary (beside this one in the target directory) runs in front of it
//!    with its access log on (to /dev/null) and a rate limit too high to
//!    refuse anything, so both are paid for.
//! 2. Closed loop: `--connections` keep-alive connections each send the
//!    next request as soon as the last one is answered, for `--duration`,
//!    directly to the backend and then through the ambassador: the maximum
//!    throughput of each path.
//! 3. Open loop: requests scheduled at a constant rate, half of the
//!    ambassador's maximum, spread over `--open-connections` connections;
//!    each latency is measured from the request's *scheduled* time, so a
//!    stall counts against every request it delays (no coordinated
//!    omission). Same rate directly and through the ambassador; the
//!    difference of the percentiles is what the ambassador adds.
//!
//! Run with `examples/sidecar-assembly/bench/run.sh`, which builds the
//! static release binaries first.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

const BODY: &[u8] = b"{\"total_cents\": 41, \"coins\": {\"penny\": 1, \"nickel\": 1, \"dime\": 1, \"quarter\": 1}}\n";

struct Options {
    connections: usize,
    open_connections: usize,
    duration: Duration,
    rate: Option<f64>,
    ambassador: PathBuf,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        connections: 32,
        open_connections: 64,
        duration: Duration::from_secs(10),
        rate: None,
        ambassador: std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .map(|release| release.join("ambassador"))
            .ok_or("cannot locate the target directory")?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<f64>().map_err(|_| format!("{flag}: {v:?}"));
        match flag.as_str() {
            "--connections" => o.connections = number(value()?)? as usize,
            "--open-connections" => o.open_connections = number(value()?)? as usize,
            "--duration" => o.duration = Duration::from_secs_f64(number(value()?)?),
            "--rate" => o.rate = Some(number(value()?)?),
            "--ambassador" => o.ambassador = PathBuf::from(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(o)
}

async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Ambassador {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Ambassador {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ambassador(binary: &PathBuf, upstream: SocketAddr) -> Ambassador {
    use std::io::BufRead;
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--upstream", &upstream.to_string()])
        .args(["--rate", "1000000000", "--burst", "1000000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let stderr = child.stderr.take().unwrap();
    let mut banner = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut banner)
        .unwrap();
    let addr = banner
        .split("proxying ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"));
    Ambassador { child, addr }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// One GET / on `sender`; false on any failure or non-200.
async fn request(sender: &mut Sender, addr: SocketAddr) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    let req = Request::get("/countme-test/")
        .header("host", addr.to_string())
        .body(Empty::new())
        .unwrap();
    match sender.send_request(req).await {
        Ok(response) => {
            let ok = response.status() == 200;
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Requests per second with `connections` closed loops.
async fn closed_loop(addr: SocketAddr, connections: usize, duration: Duration) -> (f64, u64) {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                if request(&mut sender, addr).await {
                    ok += 1;
                } else {
                    failed += 1;
                    sender = connect(addr).await;
                }
            }
            (ok, failed)
        }));
    }
    let started = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    (ok as f64 / started.elapsed().as_secs_f64(), failed)
}

struct Latencies {
    sorted: Vec<Duration>,
    failed: u64,
    achieved: f64,
}

impl Latencies {
    fn at(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.sorted.len() as f64 * q).ceil() as usize).clamp(1, self.sorted.len());
        self.sorted[i - 1]
    }
}

/// Latencies of requests sent at `rate` per second for `duration`.
async fn open_loop(
    addr: SocketAddr,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> Latencies {
    let (schedule, receiver) = mpsc::unbounded_channel::<Instant>();
    let receiver = Arc::new(Mutex::new(receiver));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let receiver = receiver.clone();
        let mut sender = connect(addr).await;
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            loop {
                let Some(scheduled) = receiver.lock().await.recv().await else {
                    break;
                };
                if request(&mut sender, addr).await {
                    latencies.push(scheduled.elapsed());
                } else {
                    failed += 1;
                    sender = connect(addr).await;
                }
            }
            (latencies, failed)
        }));
    }
    // The schedule runs on a thread of its own, sleeping between requests
    // with the OS's resolution rather than the async timer's millisecond.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let dispatcher = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(10);
        let mut n: u32 = 0;
        loop {
            let at = start + interval * n;
            if at - start >= duration {
                break;
            }
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if schedule.send(at).is_err() {
                break;
            }
            n += 1;
        }
        n
    });
    let started = Instant::now();
    let sent = tokio::task::spawn_blocking(move || dispatcher.join().unwrap())
        .await
        .unwrap();
    let mut sorted = Vec::with_capacity(sent as usize);
    let mut failed = 0;
    for w in workers {
        let (l, f) = w.await.unwrap();
        sorted.extend(l);
        failed += f;
    }
    let achieved = sorted.len() as f64 / started.elapsed().as_secs_f64();
    sorted.sort_unstable();
    Latencies {
        sorted,
        failed,
        achieved,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ambassador-bench: {e}");
            std::process::exit(2);
        }
    };
    let backend = backend().await;
    let ambassador = start_ambassador(&o.ambassador, backend);
    let via = ambassador.addr;
    // Warm both paths: connections, pools, caches.
    closed_loop(backend, o.connections, Duration::from_secs(1)).await;
    closed_loop(via, o.connections, Duration::from_secs(1)).await;

    let (direct_max, direct_failed) = closed_loop(backend, o.connections, o.duration).await;
    let (via_max, via_failed) = closed_loop(via, o.connections, o.duration).await;
    println!(
        "closed loop, {} connections, {:?} each:",
        o.connections, o.duration
    );
    println!("  direct to the backend:  {direct_max:>9.0} req/s ({direct_failed} failed)");
    println!("  through the ambassador: {via_max:>9.0} req/s ({via_failed} failed)");

    let rate = o.rate.unwrap_or((via_max / 2.0).floor());
    println!(
        "open loop at {rate:.0} req/s, {} connections, {:?} each (latency from the scheduled time, ms):",
        o.open_connections, o.duration
    );
    println!(
        "  {:<24}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>8}",
        "path", "achieved", "p50", "p90", "p99", "p99.9", "max", "failed"
    );
    let direct = open_loop(backend, rate, o.open_connections, o.duration).await;
    let through = open_loop(via, rate, o.open_connections, o.duration).await;
    for (name, l) in [
        ("direct to the backend", &direct),
        ("through the ambassador", &through),
    ] {
        println!(
            "  {name:<24}{:>9.0}{:>9}{:>9}{:>9}{:>9}{:>9}{:>8}",
            l.achieved,
            ms(l.at(0.50)),
            ms(l.at(0.90)),
            ms(l.at(0.99)),
            ms(l.at(0.999)),
            ms(l.at(1.0)),
            l.failed
        );
    }
    let added = |q| through.at(q).saturating_sub(direct.at(q));
    println!(
        "added by the ambassador: p50 {} ms, p99 {} ms",
        ms(added(0.50)),
        ms(added(0.99))
    );
    drop(ambassador);
}
