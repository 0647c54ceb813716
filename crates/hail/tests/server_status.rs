//! `hail status` against a real server with real containers: a busy task
//! (a shell busy loop held to 256 CPU units), an idle one, a service raised
//! to its scalable target's minimum by Application Auto Scaling, and a
//! trigger that ran a task for an upload — each shown by `hail status
//! --once` and `--json` with the figures the server measured. Also the
//! DescribeTaskStats operation's answers to requests it cannot serve.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Server, HAIL};

const NETWORK: &str = "awsvpcConfiguration={subnets=[subnet-hail]}";

struct Stack {
    tmp: tempfile::TempDir,
    data_dir: PathBuf,
    env: HashMap<String, String>,
    _server: Server,
}

impl Stack {
    fn new() -> Stack {
        common::python();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let server = Server::start(&data_dir);
        let env = hail_env(&data_dir, &server.endpoint);
        server_support::import_busybox(&data_dir, "hail.test/busybox:latest");
        Stack {
            tmp,
            data_dir,
            env,
            _server: server,
        }
    }

    fn aws(&self, args: &[&str]) -> Value {
        let out = aws(&self.env, args);
        assert!(out.success, "aws {args:?}: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or(Value::Null)
    }

    fn hail(&self, args: &[&str]) -> String {
        let out = Command::new(HAIL)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .args(["--endpoint", &self.env["AWS_ENDPOINT_URL"]])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hail {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Registers a one-container busybox definition of 256 CPU units and 512 MiB.
    fn register(&self, family: &str, script: &str) {
        let def = json!({
            "family": family,
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [{
                "name": "app",
                "image": "hail.test/busybox:latest",
                "essential": true,
                "stopTimeout": 1,
                "command": ["sh", "-c", script],
            }],
        });
        let path = self.tmp.path().join(format!("{family}.json"));
        std::fs::write(&path, def.to_string()).unwrap();
        self.aws(&[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &format!("file://{}", path.display()),
        ]);
    }

    fn run_task(&self, family: &str) -> String {
        let out = self.aws(&[
            "ecs",
            "run-task",
            "--cluster",
            "default",
            "--task-definition",
            family,
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            NETWORK,
        ]);
        out["tasks"][0]["taskArn"].as_str().unwrap().to_owned()
    }

    fn put(&self, bucket: &str, key: &str, body: &str) {
        let path = self.tmp.path().join("body");
        std::fs::write(&path, body).unwrap();
        self.aws(&[
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--body",
            path.to_str().unwrap(),
        ]);
    }

    fn task(&self, arn: &str) -> Value {
        self.aws(&[
            "ecs",
            "describe-tasks",
            "--cluster",
            "default",
            "--tasks",
            arn,
        ])["tasks"][0]
            .clone()
    }
}

/// Polls `f` every 300 ms until it returns Some, for at most `secs`.
fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The lines of a section of `hail status --once`, header first.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{title} (")));
    let heading = lines
        .next()
        .unwrap_or_else(|| panic!("no {title}:\n{text}"));
    assert!(heading.starts_with(title), "{heading}");
    lines.take_while(|l| !l.is_empty()).collect()
}

/// The whitespace-separated cells of the row that contains `needle`.
fn row<'a>(lines: &[&'a str], needle: &str) -> Vec<&'a str> {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle} in {lines:#?}"))
        .split_whitespace()
        .collect()
}

fn percent(cell: &str) -> f64 {
    cell.strip_suffix('%')
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a percentage: {cell}"))
}

fn short(arn: &str) -> &str {
    &arn.rsplit('/').next().unwrap()[..12]
}

/// One signed call of Hail's native API: the HTTP status and the JSON answer.
fn native_call(env: &HashMap<String, String>, op: &str, body: &Value) -> (u16, Value) {
    let endpoint = env["AWS_ENDPOINT_URL"].trim_end_matches('/');
    let uri: http::Uri = format!("{endpoint}/").parse().unwrap();
    let payload = serde_json::to_vec(body).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-amz-target",
        format!("Hail_20261101.{op}").parse().unwrap(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    hail_api::sign::Signer {
        access_key_id: env["AWS_ACCESS_KEY_ID"].clone(),
        secret_access_key: env["AWS_SECRET_ACCESS_KEY"].clone(),
        region: env["AWS_DEFAULT_REGION"].clone(),
        service: hail_api::Service::Hail.signing_name().to_owned(),
    }
    .sign(
        &http::Method::POST,
        &uri,
        &mut headers,
        &payload,
        SystemTime::now(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let response = reqwest::Client::new()
            .post(uri.to_string())
            .headers(headers)
            .body(payload)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    })
}

fn task_log(data_dir: &Path, task_arn: &str) -> String {
    let id = task_arn.rsplit('/').next().unwrap();
    let path = data_dir.join("tasks").join(id).join("logs").join("app.log");
    hail_runtime::logs::read_all(&path)
        .map(|records| records.into_iter().map(|r| r.log).collect())
        .unwrap_or_default()
}

#[test]
fn status_shows_clusters_services_tasks_with_their_use_and_trigger_deliveries() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.aws(&["ecs", "create-cluster", "--cluster-name", "default"]);
    stack.aws(&["ecs", "create-cluster", "--cluster-name", "batch"]);
    stack.register("busy", "while :; do :; done");
    stack.register("idle", "exec sleep 3600");
    stack.register("web", "exec sleep 3600");
    stack.register("echo", "echo got $KEY");

    let busy = stack.run_task("busy");
    let idle = stack.run_task("idle");

    // A service of one task, raised to two by its scalable target's minimum:
    // a scaling activity with its cause.
    stack.aws(&[
        "ecs",
        "create-service",
        "--cluster",
        "default",
        "--service-name",
        "web",
        "--task-definition",
        "web",
        "--desired-count",
        "1",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        NETWORK,
    ]);
    stack.aws(&[
        "application-autoscaling",
        "register-scalable-target",
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        "ecs:service:DesiredCount",
        "--resource-id",
        "service/default/web",
        "--min-capacity",
        "2",
        "--max-capacity",
        "3",
    ]);

    // An upload that runs a task through a trigger.
    stack.aws(&["s3", "mb", "s3://media"]);
    stack.hail(&[
        "trigger",
        "create",
        "thumbs",
        "--bucket",
        "media",
        "--prefix",
        "in/",
        "--task-definition",
        "echo",
        "--container",
        "app",
        "--env",
        "KEY={{key}}",
    ]);
    stack.put("media", "in/clip.mp4", "a video");

    let delivered = eventually(120, "the trigger's task to succeed", || {
        let out: Value =
            serde_json::from_str(&stack.hail(&["trigger", "show", "thumbs", "--json"])).unwrap();
        let i = out["recentInvocations"][0].clone();
        (i["status"] == "SUCCEEDED").then_some(i)
    });
    let echo_task = delivered["taskArn"].as_str().unwrap().to_owned();
    let log = task_log(&stack.data_dir, &echo_task);
    assert!(log.contains("got in/clip.mp4"), "{log}");
    for arn in [&busy, &idle] {
        eventually(60, "the tasks to run", || {
            (stack.task(arn)["lastStatus"] == "RUNNING").then_some(())
        });
    }
    eventually(90, "the service at two running tasks", || {
        let s = stack.aws(&[
            "ecs",
            "describe-services",
            "--cluster",
            "default",
            "--services",
            "web",
        ])["services"][0]
            .clone();
        (s["desiredCount"] == 2 && s["runningCount"] == 2).then_some(())
    });
    // The busy loop has had time to use its quota.
    std::thread::sleep(Duration::from_secs(1));

    // Not a terminal: one snapshot, as with --once.
    let text = stack.hail(&["status"]);
    eprintln!("{text}");
    let clusters = section(&text, "CLUSTERS");
    assert_eq!(
        clusters[0].split_whitespace().collect::<Vec<_>>(),
        ["CLUSTER", "STATUS", "SERVICES", "RUNNING", "PENDING"]
    );
    assert_eq!(
        row(&clusters, "default"),
        ["default", "ACTIVE", "1", "4", "0"]
    );
    assert_eq!(row(&clusters, "batch"), ["batch", "ACTIVE", "0", "0", "0"]);

    let services = section(&text, "SERVICES");
    let web = row(&services, "web");
    assert_eq!(
        &web[..7],
        ["default", "web", "ACTIVE", "2", "2", "0", "web:1"],
        "{text}"
    );
    let web_line = services.iter().find(|l| l.contains(" web ")).unwrap();
    assert!(
        web_line.contains("Successful: Setting desired count to 2."),
        "{text}"
    );
    assert!(
        web_line.ends_with("minimum capacity was set to 2"),
        "{text}"
    );

    let tasks = section(&text, "TASKS");
    assert_eq!(tasks.len(), 5, "a header and four running tasks:\n{text}");
    // CLUSTER TASK DEFINITION GROUP STATUS HEALTH AGE CPU CPU/LIM MEM / LIMIT MEM%
    let busy_row = row(&tasks, short(&busy));
    assert_eq!(
        &busy_row[..5],
        ["default", short(&busy), "busy:1", "family:busy", "RUNNING"]
    );
    let busy_cpu = percent(busy_row[7]);
    // 256 units are a quarter of a vCPU: the quota holds the loop near 25 %
    // (a little over when the two readings' moments straddle a period).
    assert!(
        busy_cpu > 2.0 && busy_cpu < 35.0,
        "busy CPU {busy_cpu}:\n{text}"
    );
    assert!(percent(busy_row[8]) <= 140.0, "{text}");
    assert!(busy_row[9].ends_with('B') && busy_row[10] == "/", "{text}");
    assert_eq!(busy_row[11], "512MiB", "{text}");
    let idle_row = row(&tasks, short(&idle));
    assert_eq!(&idle_row[2..5], ["idle:1", "family:idle", "RUNNING"]);
    assert!(percent(idle_row[7]) < 2.0, "idle CPU:\n{text}");
    assert_eq!(idle_row[11], "512MiB", "{text}");
    let web_tasks: Vec<_> = tasks.iter().filter(|l| l.contains("service:web")).collect();
    assert_eq!(web_tasks.len(), 2, "{text}");

    let deliveries = section(&text, "TRIGGER DELIVERIES");
    let delivery = row(&deliveries, "in/clip.mp4");
    assert_eq!(
        &delivery[..5],
        ["thumbs", "in/clip.mp4", short(&echo_task), "SUCCEEDED", "1"],
        "{text}"
    );

    // The same snapshot as JSON, with the figures unrounded.
    let json: Value = serde_json::from_str(&stack.hail(&["status", "--json"])).unwrap();
    let find = |arn: &str| {
        json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["taskArn"] == arn)
            .cloned()
            .unwrap_or_else(|| panic!("{arn} not in {json:#}"))
    };
    let b = find(&busy);
    assert_eq!(b["cpuLimitUnits"], 256);
    let cpu = b["cpuPercent"].as_f64().unwrap();
    assert!(cpu > 2.0 && cpu < 35.0, "{b:#}");
    let mem = b["memoryBytes"].as_u64().unwrap();
    assert!(mem > 0 && mem < 64 << 20, "{b:#}");
    assert_eq!(b["memoryLimitBytes"], 512u64 << 20);
    assert!(find(&idle)["cpuPercent"].as_f64().unwrap() < 2.0);
    assert_eq!(
        json["services"][0]["lastScaling"]["cause"],
        "minimum capacity was set to 2"
    );
    assert_eq!(json["deliveries"][0]["status"], "SUCCEEDED");
    assert_eq!(json["problems"], json!([]));

    // `--cluster` narrows the view; an unknown cluster is an error.
    let batch_only = stack.hail(&["status", "--cluster", "batch"]);
    assert_eq!(section(&batch_only, "TASKS").len(), 1, "{batch_only}");
    let out = Command::new(HAIL)
        .arg("--data-dir")
        .arg(&stack.data_dir)
        .args([
            "status",
            "--cluster",
            "nope",
            "--endpoint",
            &stack.env["AWS_ENDPOINT_URL"],
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cluster nope: MISSING"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // DescribeTaskStats itself: per-task answers and failures, AWS errors
    // for requests it cannot serve.
    let (status, out) = native_call(
        &stack.env,
        "DescribeTaskStats",
        &json!({"tasks": [busy, echo_task, "00000000000000000000000000000000"]}),
    );
    assert_eq!(status, 200, "{out}");
    let stats = &out["taskStats"][0];
    assert_eq!(stats["taskArn"], busy.as_str());
    assert!(stats["cpuUsageNanos"].as_u64().unwrap() > 0, "{out:#}");
    assert_eq!(stats["containers"][0]["name"], "app");
    assert!(stats["containers"][0]["memoryUsageBytes"].as_u64().unwrap() > 0);
    let reasons: Vec<&str> = out["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["NOT_RUNNING", "MISSING"], "{out:#}");
    let (status, out) = native_call(
        &stack.env,
        "DescribeTaskStats",
        &json!({"cluster": "nope", "tasks": [busy]}),
    );
    assert_eq!(status, 400);
    assert!(
        out["__type"]
            .as_str()
            .unwrap()
            .ends_with("ClusterNotFoundException"),
        "{out}"
    );
    let (status, out) = native_call(&stack.env, "DescribeTaskStats", &json!({"tasks": []}));
    assert_eq!(status, 400);
    assert!(
        out["__type"]
            .as_str()
            .unwrap()
            .ends_with("InvalidParameterException"),
        "{out}"
    );
}

/// `hail status` on a terminal (a pseudo-terminal here): what it wrote and
/// how it ended, once `key` was pressed after the view showed `shown` (a
/// word: the terminal is drawn in diffs, so blank cells are cursor moves).
struct LiveRun {
    output: String,
    exit: std::process::ExitStatus,
    /// The terminal's line discipline after the view ended.
    termios: nix::sys::termios::Termios,
}

fn live_view(data_dir: &Path, endpoint: &str, shown: &str, key: &[u8]) -> LiveRun {
    use std::io::{Read as _, Write as _};
    use std::sync::{Arc, Mutex};

    let size = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = pty.slave;
    let mut child = Command::new(HAIL)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["status", "--endpoint", endpoint])
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stdout(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let output = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let output = output.clone();
        let mut master = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once no process holds the terminal open.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    eventually(30, &format!("the live view to show {shown:?}"), || {
        text().contains(shown).then_some(())
    });
    master.write_all(key).unwrap();
    let exit = eventually(10, "the live view to quit", || child.try_wait().unwrap());
    let termios = nix::sys::termios::tcgetattr(&slave).unwrap();
    // With the last slave closed, the reader drains the output and stops.
    drop(slave);
    reader.join().unwrap();
    LiveRun {
        output: text(),
        exit,
        termios,
    }
}

/// Whether the run left the alternate screen after entering it, showed the
/// cursor again, and left the terminal out of raw mode.
fn restored(run: &LiveRun) -> bool {
    use nix::sys::termios::LocalFlags;
    let entered = run.output.rfind("\x1b[?1049h");
    let left = run.output.rfind("\x1b[?1049l");
    let shown = run.output.rfind("\x1b[?25h");
    let cooked = run
        .termios
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO);
    matches!((entered, left, shown), (Some(e), Some(l), Some(s)) if l > e && s > e) && cooked
}

#[test]
fn the_live_view_quits_on_q_esc_and_ctrl_c_and_restores_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let endpoint = server.endpoint.clone();
    for (name, key) in [("q", &b"q"[..]), ("Esc", b"\x1b"), ("Ctrl-C", b"\x03")] {
        let run = live_view(&data_dir, &endpoint, "Clusters", key);
        assert!(run.exit.success(), "{name}: {:?}\n{}", run.exit, run.output);
        assert!(
            restored(&run),
            "{name}: terminal not restored:\n{:?}",
            run.output
        );
        assert!(run.output.contains("quit"), "{name}: {}", run.output);
    }
    // A server that cannot be reached is said on screen, retried, and the
    // view still quits cleanly.
    drop(server);
    let run = live_view(&data_dir, &endpoint, "failed:", b"q");
    assert!(run.exit.success(), "{:?}\n{}", run.exit, run.output);
    assert!(restored(&run), "terminal not restored:\n{:?}", run.output);
}
