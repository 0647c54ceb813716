//! Container-on-Demand through `hail server`, with real containers: objects
//! landing in a bucket run tasks through a trigger (templates, presigned
//! URL, retries, dead letters, re-drive, exactly once across a crash), and
//! tasks with a role get temporary credentials at the ECS credentials
//! endpoint that the object store and the APIs enforce.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Server, HAIL};

const NETWORK: &str = "awsvpcConfiguration={subnets=[subnet-hail]}";

struct Stack {
    tmp: tempfile::TempDir,
    data_dir: PathBuf,
    env: HashMap<String, String>,
    server: Option<Server>,
}

impl Stack {
    fn new(flags: &[&str]) -> Stack {
        common::python();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let server =
            Server::start_with(&data_dir, server_support::host::HostNames::unique(1), flags);
        let env = hail_env(&data_dir, &server.endpoint);
        server_support::import_busybox(&data_dir, "hail.test/busybox:latest");
        aws(
            &env,
            &["ecs", "create-cluster", "--cluster-name", "default"],
        )
        .json();
        Stack {
            tmp,
            data_dir,
            env,
            server: Some(server),
        }
    }

    fn endpoint(&self) -> String {
        self.env["AWS_ENDPOINT_URL"].clone()
    }

    /// Runs `hail ARGS… --endpoint …` and returns its stdout.
    fn hail(&self, args: &[&str]) -> String {
        let out = Command::new(HAIL)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .args(["--endpoint", &self.endpoint()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hail {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn hail_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.hail(&all)).unwrap()
    }

    /// Registers a one-container busybox definition `family` running `script`.
    fn register(&self, family: &str, script: &str, extra: Value) {
        let mut def = json!({
            "family": family,
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [{
                "name": "app",
                "image": "hail.test/busybox:latest",
                "essential": true,
                "stopTimeout": 2,
                "command": ["sh", "-c", script],
            }],
        });
        for (k, v) in extra.as_object().unwrap() {
            def[k] = v.clone();
        }
        let path = self.tmp.path().join(format!("{family}.json"));
        std::fs::write(&path, def.to_string()).unwrap();
        aws(
            &self.env,
            &[
                "ecs",
                "register-task-definition",
                "--cli-input-json",
                &format!("file://{}", path.display()),
            ],
        )
        .json();
    }

    fn put(&self, bucket: &str, key: &str, body: &str) {
        let path = self.tmp.path().join("body");
        std::fs::write(&path, body).unwrap();
        let out = aws(
            &self.env,
            &[
                "s3api",
                "put-object",
                "--bucket",
                bucket,
                "--key",
                key,
                "--body",
                path.to_str().unwrap(),
            ],
        );
        assert!(out.success, "put {key}: {}", out.stderr);
    }
}

fn task_log(data_dir: &Path, task_arn: &str) -> String {
    let id = task_arn.rsplit('/').next().unwrap();
    let path = data_dir.join("tasks").join(id).join("logs").join("app.log");
    hail_runtime::logs::read_all(&path)
        .map(|records| records.into_iter().map(|r| r.log).collect())
        .unwrap_or_default()
}

/// Polls `f` every 200 ms until it returns Some, for at most `secs`.
fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn invocations(stack: &Stack, trigger: &str) -> Vec<Value> {
    let out = stack.hail_json(&["trigger", "show", trigger]);
    out["recentInvocations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn counts(stack: &Stack, trigger: &str) -> Value {
    stack.hail_json(&["trigger", "show", trigger])["invocationCounts"].clone()
}

#[test]
fn objects_landing_under_a_prefix_run_tasks_with_their_event() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new(&[]);
    aws(&stack.env, &["s3", "mb", "s3://media"]).json_or_empty();
    // The task fetches its object through the presigned URL it is given.
    stack.register(
        "echo-task",
        "echo key=$KEY size=$SIZE name=$NAME; busybox wget -q -O - \"$URL\"; echo",
        json!({}),
    );
    let created = stack.hail_json(&[
        "trigger",
        "create",
        "thumbs",
        "--bucket",
        "media",
        "--prefix",
        "video/",
        "--task-definition",
        "echo-task",
        "--container",
        "app",
        "--env",
        "KEY={{key}}",
        "--env",
        "SIZE={{size}}",
        "--env",
        "NAME=thumbnail_{{key | basename | stem}}_{{timestamp}}_{{random}}.png",
        "--env",
        "URL={{url}}",
    ]);
    assert_eq!(
        created["trigger"]["triggerArn"],
        "arn:aws:hail:us-east-1:000000000000:trigger/thumbs"
    );
    // The trigger's rule is on the bucket.
    let config = aws(
        &stack.env,
        &[
            "s3api",
            "get-bucket-notification-configuration",
            "--bucket",
            "media",
        ],
    )
    .json();
    assert_eq!(
        config["QueueConfigurations"][0]["Id"],
        "hail-trigger-thumbs"
    );

    stack.put("media", "video/one clip.mp4", "first video");
    stack.put("media", "video/two.mp4", "second");
    stack.put("media", "other/ignored.mp4", "not under the prefix");
    stack.put("media", "video/three.mp4", "third!");

    let done = eventually(90, "three succeeded invocations", || {
        let c = counts(&stack, "thumbs");
        (c["SUCCEEDED"] == 3).then_some(c)
    });
    assert_eq!(done.get("DEAD"), None, "{done}");
    let invs = invocations(&stack, "thumbs");
    assert_eq!(invs.len(), 3);
    let mut keys: Vec<&str> = invs.iter().map(|i| i["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["video/one clip.mp4", "video/three.mp4", "video/two.mp4"]
    );
    for inv in &invs {
        assert_eq!(inv["attempts"], 1);
        let log = task_log(&stack.data_dir, inv["taskArn"].as_str().unwrap());
        let key = inv["key"].as_str().unwrap();
        let body = match key {
            "video/one clip.mp4" => "first video",
            "video/two.mp4" => "second",
            _ => "third!",
        };
        assert!(
            log.contains(&format!("key={key} size={}", body.len())),
            "{log}"
        );
        assert!(log.contains(body), "the task read its object: {log}");
        let stem = key.trim_start_matches("video/").trim_end_matches(".mp4");
        assert!(log.contains(&format!("name=thumbnail_{stem}_20")), "{log}");
        let task = aws(
            &stack.env,
            &[
                "ecs",
                "describe-tasks",
                "--tasks",
                inv["taskArn"].as_str().unwrap(),
                "--include",
                "TAGS",
            ],
        )
        .json();
        assert_eq!(task["tasks"][0]["startedBy"], "hail-trigger/thumbs");
    }
    let listed = stack.hail(&["trigger", "ls"]);
    assert!(
        listed.contains("thumbs") && listed.contains("media/video/*"),
        "{listed}"
    );

    // Deleting the trigger removes its rule.
    stack.hail(&["trigger", "rm", "thumbs"]);
    let config = aws(
        &stack.env,
        &[
            "s3api",
            "get-bucket-notification-configuration",
            "--bucket",
            "media",
        ],
    );
    assert!(
        !config.stdout.contains("hail-trigger-thumbs"),
        "{}",
        config.stdout
    );
}

#[test]
fn failing_tasks_are_retried_then_dead_lettered_and_can_be_redriven() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new(&[]);
    aws(&stack.env, &["s3", "mb", "s3://inbox"]).json_or_empty();
    stack.register("fail-task", "echo failing on $KEY; exit 3", json!({}));
    stack.hail(&[
        "trigger",
        "create",
        "fails",
        "--bucket",
        "inbox",
        "--task-definition",
        "fail-task",
        "--container",
        "app",
        "--env",
        "KEY={{key}}",
        "--max-attempts",
        "2",
    ]);
    // A bad template is refused up front.
    let bad = Command::new(HAIL)
        .arg("--data-dir")
        .arg(&stack.data_dir)
        .args([
            "trigger",
            "create",
            "bad",
            "--bucket",
            "inbox",
            "--task-definition",
            "fail-task",
        ])
        .args([
            "--container",
            "app",
            "--env",
            "X={{nope}}",
            "--endpoint",
            &stack.endpoint(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown variable"));

    stack.put("inbox", "job.txt", "x");
    let dead = eventually(90, "a dead invocation", || {
        let out = stack.hail_json(&["trigger", "dlq", "fails"]);
        let list = out["invocations"].as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    });
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["attempts"], 2);
    assert!(
        dead[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{}",
        dead[0]
    );
    let table = stack.hail(&["trigger", "dlq", "fails"]);
    assert!(
        table.contains("DEAD") && table.contains("job.txt"),
        "{table}"
    );

    let redriven = stack.hail_json(&["trigger", "dlq", "fails", "--redrive"]);
    assert_eq!(redriven["redriven"].as_array().unwrap().len(), 1);
    // It runs its attempts again and comes back to the list.
    eventually(90, "the re-driven invocation to run and die again", || {
        let invs = invocations(&stack, "fails");
        let inv = invs.first()?;
        (inv["status"] == "DEAD" && inv["taskArn"] != dead[0]["taskArn"]).then_some(())
    });
}

#[test]
fn an_upload_acknowledged_before_a_crash_runs_its_task_exactly_once() {
    if !images::containers_available() {
        return;
    }
    let mut stack = Stack::new(&[]);
    aws(&stack.env, &["s3", "mb", "s3://media"]).json_or_empty();
    stack.register("once-task", "echo ran for $KEY", json!({}));
    stack.hail(&[
        "trigger",
        "create",
        "once",
        "--bucket",
        "media",
        "--task-definition",
        "once-task",
        "--container",
        "app",
        "--env",
        "KEY={{key}}",
    ]);
    // Stop delivering: the server dies right after the upload's 200.
    stack.put("media", "crash.txt", "payload");
    let server = stack.server.take().unwrap();
    let (_, _, host) = server.stop_keeping_host(Signal::SIGKILL);
    let server = Server::start_on(&stack.data_dir, host);
    stack.env = hail_env(&stack.data_dir, &server.endpoint);
    stack.server = Some(server);
    eventually(90, "the invocation to succeed", || {
        (counts(&stack, "once")["SUCCEEDED"] == 1).then_some(())
    });
    // Give a duplicate every chance to show up, then count tasks.
    std::thread::sleep(Duration::from_secs(3));
    let tasks = aws(
        &stack.env,
        &[
            "ecs",
            "list-tasks",
            "--started-by",
            "hail-trigger/once",
            "--desired-status",
            "STOPPED",
        ],
    )
    .json();
    assert_eq!(tasks["taskArns"].as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!(invocations(&stack, "once").len(), 1);
}

/// Boto3 with explicit credentials (a task's), against the stack.
fn as_task(stack: &Stack, creds: &Value, script: &str) -> Value {
    let prelude = r#"
import json, os, boto3, botocore
from botocore.config import Config
def client(service, token):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        aws_access_key_id=CREDS["AccessKeyId"], aws_secret_access_key=CREDS["SecretAccessKey"],
        aws_session_token=token, config=Config(retries={"max_attempts": 1}))
def code(fn):
    try:
        fn()
        return None
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
s3 = client("s3", CREDS["Token"])
"#;
    let script = format!("CREDS = {creds}\n{prelude}\n{script}");
    let out = common::python_command(&stack.env["AWS_DEFAULT_REGION"])
        .args(["-c", &script])
        .env("AWS_ENDPOINT_URL", stack.endpoint())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The credentials JSON a task printed on a line of its log.
fn printed_credentials(log: &str) -> Option<Value> {
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.get("AccessKeyId").is_some())
}

#[test]
fn task_roles_give_scoped_expiring_credentials_to_their_task_only() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new(&["--task-credentials-ttl", "10"]);
    aws(&stack.env, &["s3", "mb", "s3://media"]).json_or_empty();
    stack.put("media", "video/secret.mp4", "not for thumbnailers");
    stack.hail(&[
        "role",
        "create",
        "thumbnailer",
        "--allow",
        "s3:PutObject,s3:GetObject=arn:aws:s3:::media/thumbnail/*",
    ]);
    let roles = stack.hail(&["role", "ls"]);
    assert!(
        roles.contains("arn:aws:iam::000000000000:role/thumbnailer"),
        "{roles}"
    );
    // The task prints its credentials twice: at start, and after most of
    // their life, when the endpoint hands out new ones.
    stack.register(
        "role-task",
        "echo endpoint=$AWS_ENDPOINT_URL; echo uri=$AWS_CONTAINER_CREDENTIALS_FULL_URI; \
         busybox wget -q -O - \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\"; echo; sleep 9; \
         busybox wget -q -O - \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\"; echo; sleep 60",
        json!({"taskRoleArn": "arn:aws:iam::000000000000:role/thumbnailer"}),
    );
    stack.register(
        "thief-task",
        "busybox wget -q -O - \"$STOLEN\" 2>&1; echo; echo has=${AWS_CONTAINER_CREDENTIALS_FULL_URI:-none}",
        json!({}),
    );
    let run = aws(
        &stack.env,
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "role-task",
            "--network-configuration",
            NETWORK,
        ],
    )
    .json();
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
    let first = eventually(60, "the task's credentials", || {
        printed_credentials(&task_log(&stack.data_dir, &arn))
    });
    let log = task_log(&stack.data_dir, &arn);
    assert!(log.contains("endpoint=http://169.254.170.2:"), "{log}");
    assert!(first["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(
        first["RoleArn"],
        "arn:aws:iam::000000000000:role/thumbnailer"
    );
    assert!(first["Expiration"].as_str().unwrap().ends_with('Z'));
    let uri = log
        .lines()
        .find_map(|l| l.strip_prefix("uri="))
        .unwrap()
        .trim()
        .to_owned();

    let out = as_task(
        &stack,
        &first,
        r#"
print(json.dumps({
  "put_allowed": code(lambda: s3.put_object(Bucket="media", Key="thumbnail/a.png", Body=b"png")),
  "read_other_prefix": code(lambda: s3.get_object(Bucket="media", Key="video/secret.mp4")),
  "write_other_prefix": code(lambda: s3.put_object(Bucket="media", Key="video/x", Body=b"x")),
  "list_bucket": code(lambda: s3.list_objects_v2(Bucket="media")),
  "no_token": code(lambda: client("s3", None).get_object(Bucket="media", Key="thumbnail/a.png")),
  "forged_token": code(lambda: client("s3", "forged").get_object(Bucket="media", Key="thumbnail/a.png")),
  "ecs": code(lambda: client("ecs", CREDS["Token"]).list_tasks()),
}))
"#,
    );
    assert_eq!(out["put_allowed"], Value::Null, "{out}");
    assert_eq!(out["read_other_prefix"], json!(["AccessDenied", 403]));
    assert_eq!(out["write_other_prefix"], json!(["AccessDenied", 403]));
    assert_eq!(out["list_bucket"], json!(["AccessDenied", 403]));
    assert_eq!(out["no_token"], json!(["InvalidToken", 400]));
    assert_eq!(out["forged_token"], json!(["InvalidToken", 400]));
    assert_eq!(out["ecs"], json!(["AccessDeniedException", 400]));

    // Another task cannot read them, and a task without a role has none.
    let thief = aws(
        &stack.env,
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "thief-task",
            "--network-configuration",
            NETWORK,
            "--overrides",
            &json!({"containerOverrides": [{"name": "app", "environment": [{"name": "STOLEN", "value": uri}]}]})
                .to_string(),
        ],
    )
    .json();
    let thief_arn = thief["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
    let thief_log = eventually(60, "the thief's log", || {
        let l = task_log(&stack.data_dir, &thief_arn);
        l.contains("has=").then_some(l)
    });
    assert!(thief_log.contains("has=none"), "{thief_log}");
    assert!(!thief_log.contains("AccessKeyId"), "{thief_log}");

    // Late in their life the endpoint rotates them; the old set expires.
    let second = eventually(30, "rotated credentials", || {
        let all: Vec<Value> = task_log(&stack.data_dir, &arn)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(|v| v.get("AccessKeyId").is_some())
            .collect();
        (all.len() >= 2).then(|| all[1].clone())
    });
    assert_ne!(second["AccessKeyId"], first["AccessKeyId"]);
    std::thread::sleep(Duration::from_secs(3));
    let out = as_task(
        &stack,
        &first,
        r#"print(json.dumps({"expired": code(lambda: s3.put_object(Bucket="media", Key="thumbnail/b.png", Body=b"p"))}))"#,
    );
    assert_eq!(out["expired"], json!(["ExpiredToken", 400]));

    // Stopping the task revokes what it holds.
    aws(&stack.env, &["ecs", "stop-task", "--task", &arn]).json();
    eventually(30, "revocation", || {
        let out = as_task(
            &stack,
            &second,
            r#"print(json.dumps({"after_stop": code(lambda: s3.put_object(Bucket="media", Key="thumbnail/c.png", Body=b"p"))}))"#,
        );
        (out["after_stop"] != Value::Null).then_some(())
    });
}

trait JsonOrEmpty {
    fn json_or_empty(&self) -> Value;
}

impl JsonOrEmpty for server_support::Aws {
    fn json_or_empty(&self) -> Value {
        assert!(self.success, "aws failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }
}
