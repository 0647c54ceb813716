//! The services tests' stack: a real `hail server` with a busybox image
//! imported and a cluster, the workshop's service file, a target group
//! behind a listener, and a steady HTTP load through it. Shared by
//! `server_services.rs` and `server_scaling.rs`, which declare it beside
//! `server_support` and the runtime tests' `images` module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server_support::{self, aws, common, hail_env, Server, HAIL};

pub const CLUSTER: &str = "bean-counter-cluster";
pub const SERVICE: &str = "bean-counter-service";
pub const FAMILY: &str = "bean-counter-service-task";

pub struct Stack {
    pub tmp: tempfile::TempDir,
    pub data_dir: std::path::PathBuf,
    pub env: HashMap<String, String>,
    _server: Server,
}

impl Stack {
    pub fn new() -> Stack {
        common::python();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let server = Server::start_with(&data_dir, server_support::host::HostNames::unique(1), &[]);
        let env = hail_env(&data_dir, &server.endpoint);
        server_support::import_busybox(&data_dir, "hail.test/busybox:latest");
        let stack = Stack {
            tmp,
            data_dir,
            env,
            _server: server,
        };
        stack.aws(&["ecs", "create-cluster", "--cluster-name", CLUSTER]);
        stack
    }

    pub fn aws(&self, args: &[&str]) -> Value {
        aws(&self.env, args).json()
    }

    pub fn aws_err(&self, args: &[&str]) -> String {
        let out = aws(&self.env, args);
        assert!(!out.success, "{args:?} succeeded: {}", out.stdout);
        out.stderr
    }

    pub fn file(&self, name: &str, value: &Value) -> String {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        format!("file://{}", path.display())
    }

    /// Registers a revision whose container serves HTTP on 8080 (or runs `script`).
    pub fn register(&self, marker: &str, script: Option<&str>) -> String {
        let command = script.map_or_else(
            || format!("mkdir -p /srv/{marker} && echo {marker} > /srv/{marker}/index.html && exec httpd -f -p 8080 -h /srv/{marker}"),
            str::to_owned,
        );
        let def = json!({
            "family": FAMILY,
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [{
                "name": "bean-counter-container",
                "image": "hail.test/busybox:latest",
                "essential": true,
                "stopTimeout": 2,
                "command": ["sh", "-c", command],
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}]
            }]
        });
        let file = self.file(&format!("{marker}.json"), &def);
        self.aws(&["ecs", "register-task-definition", "--cli-input-json", &file])["taskDefinition"]
            ["taskDefinitionArn"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn describe(&self) -> Value {
        let out = self.aws(&[
            "ecs",
            "describe-services",
            "--cluster",
            CLUSTER,
            "--services",
            SERVICE,
            "--include",
            "TAGS",
        ]);
        assert_eq!(out["failures"], json!([]), "{out:#}");
        out["services"][0].clone()
    }

    /// Polls DescribeServices until `done` holds.
    pub fn until(&self, what: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.describe();
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never {what}: {s:#}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits until the service has no task with desiredStatus RUNNING: the
    /// counts of DescribeServices drop a task the controller stops in the
    /// same pass, its StopTask lands just after (as on ECS, the two views
    /// agree eventually, not at once).
    pub fn until_no_running_tasks(&self, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let left = self.running_tasks();
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tasks still desired RUNNING after {secs} s: {left:#?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    pub fn running_tasks(&self) -> Vec<Value> {
        let arns = self.aws(&[
            "ecs",
            "list-tasks",
            "--cluster",
            CLUSTER,
            "--service-name",
            SERVICE,
            "--desired-status",
            "RUNNING",
        ])["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        if arns.is_empty() {
            return Vec::new();
        }
        let mut args = vec![
            "ecs",
            "describe-tasks",
            "--cluster",
            CLUSTER,
            "--include",
            "TAGS",
            "--tasks",
        ];
        args.extend(arns.iter().map(String::as_str));
        self.aws(&args)["tasks"].as_array().unwrap().clone()
    }

    /// The workshop's target group behind a listener on a free port,
    /// created with Hail's CLI; the group's ARN.
    pub fn target_group(&self) -> String {
        let arn = self.target_group_alone();
        let port = free_port().to_string();
        self.hail(&[
            "lb",
            "create-listener",
            "--port",
            &port,
            "--target-group",
            "bean-counter-tg",
        ]);
        arn
    }

    pub fn target_group_alone(&self) -> String {
        self.target_group_with(&[])
    }

    /// The workshop's target group with extra `hail lb create-target-group`
    /// flags (`--scale-from-zero`…), without a listener; the group's ARN.
    pub fn target_group_with(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "lb",
            "create-target-group",
            "bean-counter-tg",
            "--interval",
            "2",
            "--timeout",
            "1",
            "--healthy-threshold",
            "2",
            "--deregistration-delay",
            "2",
        ];
        args.extend_from_slice(extra);
        self.hail(&args).trim().to_owned()
    }

    /// A listener on a free loopback port forwarding to `group`; its URL.
    pub fn listener(&self, group: &str) -> String {
        let port = free_port().to_string();
        self.hail(&[
            "lb",
            "create-listener",
            "--port",
            &port,
            "--target-group",
            group,
        ]);
        format!("http://127.0.0.1:{port}/")
    }

    pub fn hail(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(HAIL)
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
}

pub fn steady(desired: u64) -> impl Fn(&Value) -> bool {
    move |s: &Value| {
        s["runningCount"] == desired
            && s["pendingCount"] == 0
            && s["deployments"].as_array().is_some_and(|d| d.len() == 1)
            && s["deployments"][0]["rolloutState"] == "COMPLETED"
    }
}

pub fn messages(service: &Value) -> Vec<String> {
    service["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

/// The workshop's service file, as `aws ecs create-service --cli-input-json` takes it.
pub fn workshop_service(desired: u32, target_group_arn: &str) -> Value {
    json!({
        "cluster": CLUSTER,
        "serviceName": SERVICE,
        "taskDefinition": FAMILY,
        "loadBalancers": [{
            "targetGroupArn": target_group_arn,
            "containerName": "bean-counter-container",
            "containerPort": 8080
        }],
        "desiredCount": desired,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 50},
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": ["subnet-0a1b2c3d"],
            "securityGroups": ["sg-0a1b2c3d"],
            "assignPublicIp": "ENABLED"
        }},
        "tags": [{"key": "app", "value": "bean-counter"}],
        "enableECSManagedTags": true,
        "propagateTags": "SERVICE"
    })
}

/// A keep-alive HTTP client at a steady rate (urllib3, from the test venv),
/// counting answered and failed requests until `stop` appears.
pub const LOAD_CLIENT: &str = r#"
import json, os, sys, time, urllib3
url, stop, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
pool = urllib3.PoolManager(maxsize=1, retries=False, timeout=urllib3.Timeout(connect=2, read=5))
ok = failed = 0
bodies, errors = {}, {}
next_at = time.monotonic()
while not os.path.exists(stop):
    try:
        r = pool.request("GET", url)
        if r.status == 200:
            ok += 1
            b = r.data.decode().strip()
            bodies[b] = bodies.get(b, 0) + 1
        else:
            failed += 1
            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
    except Exception as e:
        failed += 1
        errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
    next_at += 1.0 / rate
    time.sleep(max(0.0, next_at - time.monotonic()))
print(json.dumps({"ok": ok, "failed": failed, "bodies": bodies, "errors": errors}))
"#;

pub struct Load {
    stop: std::path::PathBuf,
    child: std::process::Child,
}

impl Load {
    pub fn start(stack: &Stack, url: &str, phase: &str) -> Load {
        Self::start_at(stack, url, phase, 200)
    }

    /// A load of `rate` requests a second, one at a time.
    pub fn start_at(stack: &Stack, url: &str, phase: &str, rate: u32) -> Load {
        let stop = stack.tmp.path().join(format!("stop-{phase}"));
        let rate = rate.to_string();
        let child = common::python_command(&stack.env["AWS_DEFAULT_REGION"])
            .args(["-c", LOAD_CLIENT, url, stop.to_str().unwrap(), &rate])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Load { stop, child }
    }

    pub fn finish(self) -> Value {
        std::fs::write(&self.stop, b"").unwrap();
        let out = self.child.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
