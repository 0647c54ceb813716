//! The sidecar-assembly example end to end: both images built by their own
//! scripts and imported, the configuration object and the task role created,
//! `examples/sidecar-assembly/task-definition.json` registered and run with
//! the `aws` CLI — one task, four containers. Through the ambassador on the
//! task's address, requests reach the coin counter and are counted exactly
//! in its Prometheus metrics; a burst past the rate limit is answered 429
//! and counted too; the application logs the configuration the init
//! container copied from S3 into the shared volume; the init container
//! exits 0 while the task keeps running; the log router's records, in
//! CloudWatch Logs, carry the other containers' lines; StopTask stops every
//! container and removes the task's volume.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use server_support::{aws, common, hail_env, Server, HAIL};

const COINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/coins");
/// Four coins, $0.41 (see `examples/bean-counter/tests/common`).
const PHOTO: &str = "jeffninghan_coins_penny_nickel_dime_quarter.jpg";
const APP_IMAGE: &str = "hail.examples/bean-counter:latest";
const SIDECARS_IMAGE: &str = "hail.examples/sidecars:latest";
const CONTAINERS: [&str; 4] = ["log-router", "config", "app", "ambassador"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The two image archives, built once per test run by the examples' own
/// scripts (static release builds into this build's target directory).
fn image_archives() -> &'static (PathBuf, PathBuf) {
    static IMAGES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let build = |script: &str, name: &str, out: PathBuf| {
            let status = Command::new(repo().join(script))
                .args(["--name", name, "--output"])
                .arg(&out)
                .env("CARGO_TARGET_DIR", tmp.join(".."))
                .status()
                .unwrap();
            assert!(status.success(), "{script} failed");
            out
        };
        (
            build(
                "examples/bean-counter/build-image.sh",
                APP_IMAGE,
                tmp.join("bean-counter-image.tar"),
            ),
            build(
                "examples/sidecar-assembly/build-image.sh",
                SIDECARS_IMAGE,
                tmp.join("sidecars-image.tar"),
            ),
        )
    })
}

struct Stack {
    tmp: tempfile::TempDir,
    data_dir: PathBuf,
    env: HashMap<String, String>,
    _server: Server,
}

impl Stack {
    /// A server with both images, the bucket and its configuration object
    /// (labelled `label`), the task role and the registered definition.
    fn new(label: &str) -> Stack {
        common::python();
        let (app, sidecars) = image_archives();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let server = Server::start_on(&data_dir, server_support::host::HostNames::unique(1));
        let env = hail_env(&data_dir, &server.endpoint);
        let stack = Stack {
            tmp,
            data_dir,
            env,
            _server: server,
        };
        stack.hail(&["image", "import", APP_IMAGE, app.to_str().unwrap()]);
        stack.hail(&[
            "image",
            "import",
            SIDECARS_IMAGE,
            sidecars.to_str().unwrap(),
        ]);
        stack.aws(&["ecs", "create-cluster", "--cluster-name", "default"]);
        assert!(aws(&stack.env, &["s3", "mb", "s3://sidecar-assembly"]).success);
        let config = stack.tmp.path().join("app.json");
        let body = serde_json::json!({"label": label, "currency": "USD"});
        std::fs::write(&config, body.to_string()).unwrap();
        let put = aws(
            &stack.env,
            &[
                "s3",
                "cp",
                config.to_str().unwrap(),
                "s3://sidecar-assembly/bean-counter/app.json",
                "--only-show-errors",
            ],
        );
        assert!(put.success, "put the configuration: {}", put.stderr);
        stack.hail(&[
            "role",
            "create",
            "sidecar-assembly-task-role",
            "--allow",
            "s3:GetObject=arn:aws:s3:::sidecar-assembly/*",
        ]);
        let def = repo().join("examples/sidecar-assembly/task-definition.json");
        stack.aws(&[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &format!("file://{}", def.display()),
        ]);
        stack
    }

    fn hail(&self, args: &[&str]) -> String {
        let out = Command::new(HAIL)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.env["AWS_ENDPOINT_URL"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hail {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn aws(&self, args: &[&str]) -> Value {
        aws(&self.env, args).json()
    }

    fn describe(&self, task_arn: &str) -> Value {
        self.aws(&["ecs", "describe-tasks", "--tasks", task_arn])["tasks"][0].clone()
    }

    fn task_dir(&self, task_arn: &str) -> PathBuf {
        let id = task_arn.rsplit('/').next().unwrap();
        self.data_dir.join("tasks").join(id)
    }

    /// What a failure message shows: the task as DescribeTasks answers it
    /// and the last lines each container wrote.
    fn diagnosis(&self, task_arn: &str) -> String {
        let task = aws(&self.env, &["ecs", "describe-tasks", "--tasks", task_arn]);
        let mut out = format!("describe-tasks:\n{}{}\n", task.stdout, task.stderr);
        for name in CONTAINERS {
            let path = self
                .task_dir(task_arn)
                .join("logs")
                .join(format!("{name}.log"));
            let lines: Vec<String> = hail_runtime::logs::read_all(&path)
                .map(|r| r.into_iter().map(|r| r.log).collect())
                .unwrap_or_default();
            let tail = &lines[lines.len().saturating_sub(20)..];
            out += &format!("--- {name} (last {} lines):\n{}", tail.len(), tail.concat());
        }
        out
    }

    /// Waits up to `secs` for `f`; on timeout fails showing the task.
    fn eventually<T>(
        &self,
        secs: u64,
        what: &str,
        task_arn: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {secs} s waiting for {what}\n{}",
                    self.diagnosis(task_arn)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The log router's records in CloudWatch Logs, each a JSON object.
    fn routed_records(&self) -> Vec<Value> {
        let out = aws(
            &self.env,
            &[
                "logs",
                "filter-log-events",
                "--log-group-name",
                "/ecs/sidecar-assembly",
            ],
        );
        if !out.success {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        v["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| serde_json::from_str(e["message"].as_str()?).ok())
            .collect()
    }
}

/// One HTTP/1.1 request on its own connection: the status and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out += &rest[..n];
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample of `name` whose labels include `labels` (0 when
/// there is none: a counter not incremented yet).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let ok = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn container<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {task:#}"))
}

#[test]
fn four_containers_in_one_task_proxy_limit_configure_and_route_logs() {
    if !images::containers_available() {
        return;
    }
    let photo = std::fs::read(Path::new(COINS).join(PHOTO))
        .unwrap_or_else(|e| panic!("{COINS}/{PHOTO}: {e}"));
    // A label no other run has, so finding it proves this run's copy.
    let label = format!("sidecar-assembly test {}", std::process::id());
    let stack = Stack::new(&label);

    let run = stack.aws(&[
        "ecs",
        "run-task",
        "--cluster",
        "default",
        "--launch-type",
        "FARGATE",
        "--task-definition",
        "sidecar-assembly",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-12345678],assignPublicIp=DISABLED}",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]), "{run:#}");
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_owned();

    // RUNNING, with the init container done (exit 0) and the other three up.
    let task = stack.eventually(180, "the task to be RUNNING", &arn, || {
        let t = stack.describe(&arn);
        assert_ne!(
            t["lastStatus"],
            "STOPPED",
            "the task stopped\n{}",
            stack.diagnosis(&arn)
        );
        (t["lastStatus"] == "RUNNING").then_some(t)
    });
    let config = container(&task, "config");
    assert_eq!(config["lastStatus"], "STOPPED", "{task:#}");
    assert_eq!(config["exitCode"], 0, "{task:#}");
    for name in ["log-router", "app", "ambassador"] {
        assert_eq!(container(&task, name)["lastStatus"], "RUNNING", "{task:#}");
    }
    let ip = container(&task, "ambassador")["networkInterfaces"][0]["privateIpv4Address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {task:#}"))
        .to_owned();
    let proxy = format!("{ip}:9000");
    let admin = format!("{ip}:9901");

    // The configuration went S3 → init container → volume → application.
    let on_volume = stack.task_dir(&arn).join("volumes/config/app.json");
    let written: Value = serde_json::from_slice(&std::fs::read(&on_volume).unwrap()).unwrap();
    assert_eq!(written["label"], label.as_str());

    // Through the ambassador to the application.
    stack.eventually(
        120,
        "the app to answer through the ambassador",
        &arn,
        || match http(&proxy, "GET", "/healthz", &[], b"") {
            Ok((200, body)) if body.trim() == "ok" => Some(()),
            _ => None,
        },
    );
    let scrape = || http(&admin, "GET", "/metrics", &[], b"").unwrap().1;
    let requests = |text: &str, code: &str, method: &str| {
        metric(
            text,
            "ambassador_requests_total",
            &[("code", code), ("method", method)],
        )
    };
    // The readiness requests are counted once their last byte is sent.
    std::thread::sleep(Duration::from_secs(1));
    let before = scrape();
    let client = [("X-Forwarded-For", "198.51.100.7")];
    const GETS: usize = 10;
    for _ in 0..GETS {
        let (status, body) = http(&proxy, "GET", "/healthz", &client, b"").unwrap();
        assert_eq!((status, body.trim()), (200, "ok"));
    }
    let (status, total) = http(
        &proxy,
        "POST",
        "/count",
        &[client[0], ("Content-Type", "image/jpeg")],
        &photo,
    )
    .unwrap();
    assert_eq!((status, total.as_str()), (200, "$0.41\n"), "{PHOTO}");
    // Counted once the last byte is sent: wait for the counts, then check
    // they are exact.
    let counted = |text: &str| {
        (
            requests(text, "200", "GET") - requests(&before, "200", "GET"),
            requests(text, "200", "POST") - requests(&before, "200", "POST"),
        )
    };
    let after = stack.eventually(30, "the ambassador to count the requests", &arn, || {
        let text = scrape();
        let (gets, posts) = counted(&text);
        (gets >= GETS as f64 && posts >= 1.0).then_some(text)
    });
    std::thread::sleep(Duration::from_secs(1));
    let settled = scrape();
    assert_eq!(counted(&after), (GETS as f64, 1.0), "{after}");
    assert_eq!(counted(&settled), (GETS as f64, 1.0), "{settled}");

    // A burst from one client past its bucket (100, refilled at 50/s).
    let before = scrape();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..100)
                        .map(|_| {
                            http(
                                &proxy,
                                "GET",
                                "/healthz",
                                &[("X-Forwarded-For", "203.0.113.9")],
                                b"",
                            )
                            .unwrap()
                            .0
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok + limited, statuses.len(), "{statuses:?}");
    assert!(ok >= 100, "the burst allowance is 100: {ok} passed");
    assert!(
        limited > 0,
        "none of {} requests was limited",
        statuses.len()
    );
    let limited_counts = |text: &str| {
        (
            requests(text, "429", "GET") - requests(&before, "429", "GET"),
            metric(text, "ambassador_rate_limited_total", &[])
                - metric(&before, "ambassador_rate_limited_total", &[]),
            requests(text, "200", "GET") - requests(&before, "200", "GET"),
        )
    };
    let want = (limited as f64, limited as f64, ok as f64);
    let after = stack.eventually(30, "the ambassador to count the burst", &arn, || {
        let text = scrape();
        let (answered, limited, passed) = limited_counts(&text);
        (answered >= want.0 && limited >= want.1 && passed >= want.2).then_some(text)
    });
    assert_eq!(limited_counts(&after), want, "{after}");

    // The log router received the others' lines; its own output is in
    // CloudWatch Logs, one record per line, tagged with the container.
    let app_line =
        format!("bean-counter: configuration /config/app.json: label {label:?}, currency USD");
    let records = stack.eventually(120, "the routed lines in CloudWatch Logs", &arn, || {
        let records = stack.routed_records();
        let has = |name: &str, needle: &str| {
            records.iter().any(|r| {
                r["container_name"] == name
                    && r["log"].as_str().is_some_and(|l| l.contains(needle))
            })
        };
        (has("app", &app_line)
            && has(
                "config",
                "config-init: wrote s3://sidecar-assembly/bean-counter/app.json to /config/app.json",
            )
            && has("ambassador", "\"POST /count HTTP/1.1\" 200"))
        .then_some(records)
    });
    let id = arn.rsplit('/').next().unwrap();
    for r in records.iter().filter(|r| r["container_name"] == "app") {
        assert_eq!(r["ecs_task_arn"], arn.as_str(), "{r}");
        assert_eq!(r["ecs_cluster"], "default", "{r}");
        assert_eq!(r["tag"], format!("app-firelens-{id}").as_str(), "{r}");
    }

    // The task keeps running without its init container, and the
    // ambassador's own health check passes.
    stack.eventually(60, "the ambassador to be HEALTHY", &arn, || {
        let t = stack.describe(&arn);
        assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
        (container(&t, "ambassador")["healthStatus"] == "HEALTHY").then_some(())
    });

    // StopTask stops every container; the task's volume goes with it.
    stack.aws(&["ecs", "stop-task", "--task", &arn, "--reason", "test done"]);
    let stopped = stack.eventually(120, "the task to stop", &arn, || {
        let t = stack.describe(&arn);
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    for name in CONTAINERS {
        assert_eq!(
            container(&stopped, name)["lastStatus"],
            "STOPPED",
            "{stopped:#}"
        );
    }
    assert_eq!(stopped["stopCode"], "UserInitiated", "{stopped:#}");
    assert!(
        !on_volume.exists() && !stack.task_dir(&arn).join("volumes").exists(),
        "the task's volume outlived the task: {}",
        on_volume.display()
    );
}
