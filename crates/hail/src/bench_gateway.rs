//! `hail bench gateway`: the load balancer's throughput and added latency
//! for small keep-alive responses, side by side with nginx as a reverse
//! proxy in the same run, and the backend reached directly as the floor.
//!
//! - The backend is nginx serving a 3-byte body from memory (`return 200`),
//!   one worker, in its own process: the same for all three paths, and cheap
//!   enough that the proxies, not the backend, are what differs.
//! - The gateway runs in a child process (`hail bench gateway --serve …`,
//!   the default Tokio runtime: one worker thread per core) with pooled
//!   keep-alive connections to the backend; nginx as a proxy runs two
//!   workers with an upstream `keepalive` pool. Neither logs requests.
//! - Throughput: closed loop, `wrk -t 2 -c 64` (or, without wrk, an
//!   equivalent loop of 64 keep-alive connections in this process).
//! - Latency: open loop at a constant rate — half of the proxy's measured
//!   maximum — over 32 keep-alive connections, each sending on its own
//!   schedule. A request's latency runs from when it was due, so a stalled
//!   connection's backlog counts (no coordinated omission); the backend
//!   direct is measured at the same rate, and "added" is the difference.
//! - Rounds repeat the whole sequence; the table reports medians, because
//!   the machine may be shared.

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Args)]
pub struct GatewayArgs {
    /// Rounds of the whole sequence; the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each throughput and each latency run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections of the closed-loop (throughput) runs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections of the open-loop (latency) runs.
    #[arg(long, default_value_t = 32)]
    latency_connections: usize,
    /// The latency runs' rate, as a fraction of each proxy's measured maximum.
    #[arg(long, default_value_t = 0.5)]
    load: f64,
    /// Scratch directory for the nginx configurations and logs.
    #[arg(long, default_value = "/var/tmp/hail-bench-gateway")]
    work_dir: PathBuf,
    /// Internal: run only a gateway on this port forwarding to `--backend`.
    #[arg(long, hide = true)]
    serve: Option<u16>,
    #[arg(long, hide = true)]
    backend: Option<SocketAddr>,
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    if let (Some(port), Some(backend)) = (args.serve, args.backend) {
        return serve(port, backend).await;
    }
    if args.rounds == 0 || args.seconds == 0 || args.connections == 0 {
        bail!("--rounds, --seconds and --connections must be at least 1");
    }
    if !(args.load > 0.0 && args.load <= 1.0) {
        bail!("--load must be in (0, 1]");
    }
    let _ = std::fs::remove_dir_all(&args.work_dir);
    std::fs::create_dir_all(&args.work_dir)?;
    let backend_port = free_port()?;
    let gateway_port = free_port()?;
    let nginx_port = free_port()?;
    let backend = Nginx::start(
        &args.work_dir.join("backend"),
        &backend_config(backend_port),
        backend_port,
    )?;
    let nginx = Nginx::start(
        &args.work_dir.join("proxy"),
        &proxy_config(nginx_port, backend_port),
        nginx_port,
    )?;
    let gateway = GatewayChild::start(
        gateway_port,
        SocketAddr::from(([127, 0, 0, 1], backend_port)),
    )?;
    let direct = SocketAddr::from(([127, 0, 0, 1], backend_port));
    let via_gateway = SocketAddr::from(([127, 0, 0, 1], gateway_port));
    let via_nginx = SocketAddr::from(([127, 0, 0, 1], nginx_port));
    for addr in [direct, via_gateway, via_nginx] {
        check_ok(addr)
            .await
            .with_context(|| format!("probe {addr}"))?;
    }
    let wrk = which("wrk");
    let duration = Duration::from_secs(args.seconds);
    eprintln!(
        "throughput: {} ({} connections, {} s); latency: open loop, {} connections, {} s",
        if wrk.is_some() {
            "wrk -t 2"
        } else {
            "closed loop in process"
        },
        args.connections,
        args.seconds,
        args.latency_connections,
        args.seconds
    );

    // Warm every path: connection pools, page cache, CPU frequency.
    for addr in [direct, via_gateway, via_nginx] {
        throughput(
            wrk.as_deref(),
            addr,
            args.connections,
            Duration::from_secs(2),
        )
        .await?;
    }

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        let rps_direct = throughput(wrk.as_deref(), direct, args.connections, duration).await?;
        let rps_gateway =
            throughput(wrk.as_deref(), via_gateway, args.connections, duration).await?;
        let rps_nginx = throughput(wrk.as_deref(), via_nginx, args.connections, duration).await?;
        eprintln!("  rps: direct {rps_direct:.0}, gateway {rps_gateway:.0}, nginx {rps_nginx:.0}");
        let (rate_gateway, rate_nginx) = (rps_gateway * args.load, rps_nginx * args.load);
        let conns = args.latency_connections;
        let r = Round {
            rps_direct,
            rps_gateway,
            rps_nginx,
            rate_gateway,
            rate_nginx,
            direct_at_gateway: open_loop(direct, rate_gateway, conns, duration).await?,
            gateway: open_loop(via_gateway, rate_gateway, conns, duration).await?,
            direct_at_nginx: open_loop(direct, rate_nginx, conns, duration).await?,
            nginx: open_loop(via_nginx, rate_nginx, conns, duration).await?,
        };
        eprintln!(
            "  p99 ms at {:.0}% load: direct {:.3} / gateway {:.3}; direct {:.3} / nginx {:.3}",
            args.load * 100.0,
            r.direct_at_gateway.p99,
            r.gateway.p99,
            r.direct_at_nginx.p99,
            r.nginx.p99
        );
        rounds.push(r);
    }
    drop(gateway);
    drop(nginx);
    drop(backend);

    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Throughput, small responses, keep-alive ({} connections, {} s, median of {} rounds):\n",
        args.connections, args.seconds, args.rounds
    )?;
    writeln!(out, "| path | requests/s |")?;
    writeln!(out, "|---|---:|")?;
    writeln!(out, "| backend direct | {:.0} |", med(&|r| r.rps_direct))?;
    writeln!(out, "| via hail gateway | {:.0} |", med(&|r| r.rps_gateway))?;
    writeln!(out, "| via nginx | {:.0} |", med(&|r| r.rps_nginx))?;
    writeln!(
        out,
        "| gateway ÷ nginx | {:.2} |",
        med(&|r| r.rps_gateway / r.rps_nginx)
    )?;
    writeln!(
        out,
        "\nLatency at {:.0}% of each proxy's maximum, open loop ({} connections, {} s, median of {} rounds):\n",
        args.load * 100.0, args.latency_connections, args.seconds, args.rounds
    )?;
    writeln!(
        out,
        "| path | rate/s | p50 ms | p99 ms | added p50 ms | added p99 ms |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
    let rows = [
        ("backend direct", Run::DirectAtGateway, None),
        ("via hail gateway", Run::Gateway, Some(Run::DirectAtGateway)),
        ("backend direct", Run::DirectAtNginx, None),
        ("via nginx", Run::Nginx, Some(Run::DirectAtNginx)),
    ];
    for (name, run, base) in rows {
        // A proxied run is compared with the backend direct at the same rate.
        let (added50, added99) = match base {
            Some(base) => (
                format!("{:.3}", med(&|r| r.latency(run).p50 - r.latency(base).p50)),
                format!("{:.3}", med(&|r| r.latency(run).p99 - r.latency(base).p99)),
            ),
            None => (String::new(), String::new()),
        };
        writeln!(
            out,
            "| {name} | {:.0} | {:.3} | {:.3} | {added50} | {added99} |",
            med(&|r| r.rate(run)),
            med(&|r| r.latency(run).p50),
            med(&|r| r.latency(run).p99),
        )?;
    }
    let errors: u64 = rounds
        .iter()
        .map(|r| {
            r.direct_at_gateway.errors
                + r.gateway.errors
                + r.direct_at_nginx.errors
                + r.nginx.errors
        })
        .sum();
    writeln!(out, "\nfailed requests in the latency runs: {errors}")?;
    Ok(())
}

struct Round {
    rps_direct: f64,
    rps_gateway: f64,
    rps_nginx: f64,
    rate_gateway: f64,
    rate_nginx: f64,
    direct_at_gateway: Latency,
    gateway: Latency,
    direct_at_nginx: Latency,
    nginx: Latency,
}

/// Which of a round's four latency runs.
#[derive(Clone, Copy)]
enum Run {
    DirectAtGateway,
    Gateway,
    DirectAtNginx,
    Nginx,
}

impl Round {
    fn latency(&self, run: Run) -> &Latency {
        match run {
            Run::DirectAtGateway => &self.direct_at_gateway,
            Run::Gateway => &self.gateway,
            Run::DirectAtNginx => &self.direct_at_nginx,
            Run::Nginx => &self.nginx,
        }
    }

    fn rate(&self, run: Run) -> f64 {
        match run {
            Run::DirectAtGateway | Run::Gateway => self.rate_gateway,
            Run::DirectAtNginx | Run::Nginx => self.rate_nginx,
        }
    }
}

/// Percentiles of one open-loop run, in milliseconds.
struct Latency {
    p50: f64,
    p99: f64,
    errors: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(bin))
            .find(|path| path.is_file())
    })
}

/// The gateway child: one listener, one target group, one target.
async fn serve(port: u16, backend: SocketAddr) -> anyhow::Result<()> {
    use hail_gateway::{
        Action, Gateway, GatewayConfig, ListenerConfig, Target, TargetGroupConfig, TargetState,
    };
    let gateway = Gateway::new(Default::default())?;
    let mut tg = TargetGroupConfig::new("bench");
    tg.health_check.interval = Duration::from_secs(5);
    gateway
        .apply(GatewayConfig {
            listeners: vec![ListenerConfig::new(
                "bench",
                port,
                Action::Forward {
                    target_group: "bench".into(),
                },
            )],
            target_groups: vec![tg],
        })
        .await?;
    gateway.set_targets("bench", vec![Target::new("backend", backend)])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gateway
        .target_health("bench")?
        .iter()
        .any(|t| t.state == TargetState::Healthy)
    {
        if Instant::now() > deadline {
            bail!("the backend at {backend} never became healthy");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ready");
    std::io::stdout().flush()?;
    // Serve until the parent closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await?;
    gateway.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

struct GatewayChild(Child);

impl GatewayChild {
    fn start(port: u16, backend: SocketAddr) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["bench", "gateway", "--serve", &port.to_string()])
            .args(["--backend", &backend.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start the gateway process")?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the gateway process did not start");
        }
        Ok(Self(child))
    }
}

impl Drop for GatewayChild {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// An nginx in the foreground with its own prefix, configuration and logs.
struct Nginx(Child);

const NGINX_COMMON: &str = "daemon off;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
";

fn nginx_http_common() -> &'static str {
    "access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path tmp/client;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;"
}

fn backend_config(port: u16) -> String {
    format!(
        "worker_processes 1;
{NGINX_COMMON}
http {{
    {}
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
",
        nginx_http_common()
    )
}

fn proxy_config(port: u16, backend: u16) -> String {
    format!(
        "worker_processes 2;
{NGINX_COMMON}
http {{
    {}
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
",
        nginx_http_common()
    )
}

impl Nginx {
    fn start(prefix: &Path, config: &str, port: u16) -> anyhow::Result<Self> {
        let nginx = which("nginx")
            .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
            .context("nginx is not installed (scripts/install-deps.sh installs it)")?;
        for dir in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(dir))?;
        }
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start nginx")?;
        let mut nginx = Self(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.0.try_wait()? {
                bail!(
                    "nginx exited ({status}); see {}",
                    prefix.join("logs/error.log").display()
                );
            }
            if std::time::Instant::now() > deadline {
                bail!("nginx did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown; wait so no worker outlives us.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// Requests per second the target sustains in a closed loop.
async fn throughput(
    wrk: Option<&Path>,
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    match wrk {
        Some(wrk) => {
            let output = tokio::process::Command::new(wrk)
                .args(["-t", "2", "-c", &connections.to_string()])
                .args(["-d", &format!("{}s", duration.as_secs())])
                .arg(format!("http://{addr}/"))
                .output()
                .await
                .context("run wrk")?;
            let text = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                bail!("wrk failed: {text}");
            }
            if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
                bail!("{addr}: {}", line.trim());
            }
            text.lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("no Requests/sec in wrk's output: {text}"))
        }
        None => closed_loop(addr, connections, duration).await,
    }
}

async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut n = 0u64;
            while Instant::now() < end {
                if conn.get().await? != 200 {
                    bail!("{addr}: non-200 answer");
                }
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Sends `rate` requests per second for `duration`, spread over
/// `connections` keep-alive connections, each on its own fixed schedule. The
/// generator runs on one thread of its own with a single-threaded runtime:
/// cheaper than a work-stealing one, it leaves more of the machine to what
/// it measures.
async fn open_loop(
    addr: SocketAddr,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("open-loop".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(open_loop_on_this_thread(addr, rate, connections, duration))
                });
            let _ = tx.send(result);
        })?;
    rx.await?
}

async fn open_loop_on_this_thread(
    addr: SocketAddr,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let connections = connections.max(1);
    let per_connection = rate / connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_connection.max(0.1));
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + duration;
    let mut tasks = Vec::new();
    for i in 0..connections {
        // Stagger the connections evenly over one interval.
        let offset = interval.mul_f64(i as f64 / connections as f64);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut k = 0u32;
            loop {
                let due = start + offset + interval * k;
                if due >= end {
                    break;
                }
                k += 1;
                // Woken by the timer: time starts now (the timer's lateness is
                // not the server's). Behind schedule because the previous
                // response was late: time starts when the request was due.
                let from = if Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                    Instant::now()
                } else {
                    due
                };
                match conn.get().await {
                    Ok(200) => latencies_us
                        .push(u32::try_from(from.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    _ => {
                        errors += 1;
                        conn = Conn::connect(addr).await?;
                    }
                }
            }
            anyhow::Ok((latencies_us, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await??;
        all.extend(latencies);
        errors += e;
    }
    if all.is_empty() {
        bail!("{addr}: no successful request");
    }
    all.sort_unstable();
    let pick = |p: f64| {
        let rank = ((p / 100.0) * all.len() as f64).ceil() as usize;
        all[rank.clamp(1, all.len()) - 1] as f64 / 1e3
    };
    Ok(Latency {
        p50: pick(50.0),
        p99: pick(99.0),
        errors,
    })
}

async fn check_ok(addr: SocketAddr) -> anyhow::Result<()> {
    let status = Conn::connect(addr).await?.get().await?;
    if status != 200 {
        bail!("{addr} answered {status}");
    }
    Ok(())
}

/// A minimal HTTP/1.1 keep-alive client for `GET /` of small, length-framed
/// responses: the load generator must cost less than what it measures.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hail-bench\r\n\r\n";

impl Conn {
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// One request; returns the status once the whole response is read.
    async fn get(&mut self) -> anyhow::Result<u16> {
        self.exchange(false).await.map(|(status, _)| status)
    }

    /// One request; returns the status and the body.
    pub(crate) async fn fetch(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        self.exchange(true).await
    }

    async fn exchange(&mut self, keep_body: bool) -> anyhow::Result<(u16, Vec<u8>)> {
        self.stream.write_all(REQUEST).await?;
        loop {
            if let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..head_end])?;
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .context("malformed status line")?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .context("response without Content-Length")?;
                let total = head_end + 4 + length;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                let body = if keep_body {
                    self.buf[head_end + 4..total].to_vec()
                } else {
                    Vec::new()
                };
                self.buf.drain(..total);
                return Ok((status, body));
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("connection closed mid-response");
        }
        Ok(())
    }
}
