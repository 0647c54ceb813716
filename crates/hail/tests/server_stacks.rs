//! Stacks through `hail server` with the `hail` CLI: `hail apply -f
//! hail.yaml` creates a bucket, a role, a task definition, a trigger and a
//! service with its listener, target group and autoscaling (real
//! containers); a second apply changes nothing and says so; one edited field
//! plans and applies exactly that change (a new revision the service rolls
//! to; a scaling maximum); `hail delete` removes what the stack created and
//! nothing else. Invalid manifests fail with `file:line: field: message`
//! and change nothing. Each step is read back with the real `aws` CLI.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use server_support::{aws, common, hail_env, Server, HAIL};

struct Env {
    tmp: tempfile::TempDir,
    data_dir: PathBuf,
    env: HashMap<String, String>,
    _server: Server,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Env {
    fn new(with_image: bool) -> Env {
        common::python();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let server = Server::start(&data_dir);
        let env = hail_env(&data_dir, &server.endpoint);
        if with_image {
            server_support::import_busybox(&data_dir, "hail.test/busybox:latest");
        }
        Env {
            tmp,
            data_dir,
            env,
            _server: server,
        }
    }

    fn hail(&self, args: &[&str]) -> Out {
        let out = Command::new(HAIL)
            .env_clear()
            .envs(&self.env)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn hail_ok(&self, args: &[&str]) -> String {
        let out = self.hail(args);
        assert!(out.ok, "hail {args:?}: {}\n{}", out.stderr, out.stdout);
        out.stdout
    }

    fn aws(&self, args: &[&str]) -> Value {
        aws(&self.env, args).json()
    }

    fn manifest(&self, text: &str) -> PathBuf {
        let path = self.tmp.path().join("hail.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn stack_names(&self) -> Vec<String> {
        let out: Value = serde_json::from_str(&self.hail_ok(&["stack", "ls", "--json"])).unwrap();
        out["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stackName"].as_str().unwrap().to_owned())
            .collect()
    }

    fn buckets(&self) -> Vec<String> {
        let out = self.aws(&["s3api", "list-buckets"]);
        out["Buckets"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|b| b["Name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn service(&self) -> Value {
        let out = self.aws(&[
            "ecs",
            "describe-services",
            "--cluster",
            "stack-cluster",
            "--services",
            "web",
        ]);
        out["services"][0].clone()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The test stack; `mode` is the container's environment value, `max` the
/// scaling maximum.
fn manifest(port: u16, mode: &str, max: u32) -> String {
    format!(
        r#"# a test stack
stack: demo
cluster: stack-cluster
buckets:
  stack-media: {{}}
roles:
  stack-web-role:
    policy:
      Statement:
        - Effect: Allow
          Action: s3:GetObject
          Resource: arn:aws:s3:::stack-media/*
taskDefinitions:
  stack-web:
    networkMode: awsvpc
    requiresCompatibilities: [FARGATE]
    cpu: "256"
    memory: "512"
    taskRoleArn: arn:aws:iam::000000000000:role/stack-web-role
    containerDefinitions:
      - name: web
        image: hail.test/busybox:latest
        essential: true
        stopTimeout: 2
        command: [sh, -c, "mkdir -p /srv && echo $MODE > /srv/index.html && exec httpd -f -p 8080 -h /srv"]
        portMappings:
          - containerPort: 8080
        environment:
          - name: MODE
            value: {mode}
triggers:
  stack-thumbs:
    taskDefinition: stack-web
    bucket: stack-media
    prefix: video/
services:
  web:
    taskDefinition: stack-web
    desiredCount: 1
    deploymentConfiguration:
      maximumPercent: 200
      minimumHealthyPercent: 100
    loadBalancer:
      containerName: web
      containerPort: 8080
      listener:
        port: {port}
      targetGroup:
        name: stack-web-tg
        healthCheckPath: /
        healthCheckIntervalSeconds: 2
        healthCheckTimeoutSeconds: 1
        deregistrationDelaySeconds: 1
    autoscaling:
      min: 1
      max: {max}
      targetTracking:
        cpu:
          metric: ECSServiceAverageCPUUtilization
          targetValue: 75
"#
    )
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.1 200").then_some(body)
}

#[test]
fn apply_is_idempotent_rolls_changes_and_delete_removes_only_the_stack() {
    if !images::containers_available() {
        return;
    }
    let env = Env::new(true);
    let port = free_port();
    // Resources made outside the stack, which must survive its deletion.
    env.aws(&["s3api", "create-bucket", "--bucket", "outside-bucket"]);
    env.hail_ok(&[
        "role",
        "create",
        "outside-role",
        "--allow",
        "s3:GetObject=arn:aws:s3:::outside-bucket/*",
    ]);

    let file = env.manifest(&manifest(port, "one", 2));
    let file = file.to_str().unwrap();
    let out = env.hail_ok(&["apply", "-f", file]);
    for line in [
        "+ cluster stack-cluster",
        "+ bucket stack-media",
        "+ role stack-web-role",
        "+ taskDefinition stack-web",
        "+ targetGroup stack-web-tg",
        &format!("+ listener {port}"),
        "+ service stack-cluster/web",
        "+ scalableTarget stack-cluster/web",
        "+ scalingPolicy stack-cluster/web/cpu",
        "+ trigger stack-thumbs",
        "10 to create, 0 to update, 0 to delete",
        "stack demo: applied",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert_eq!(env.stack_names(), ["demo"]);
    let service = env.service();
    assert_eq!(service["status"], "ACTIVE");
    assert!(service["taskDefinition"]
        .as_str()
        .unwrap()
        .ends_with("task-definition/stack-web:1"));
    let tags = env.aws(&[
        "ecs",
        "list-tags-for-resource",
        "--resource-arn",
        service["serviceArn"].as_str().unwrap(),
    ]);
    assert!(
        tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "hail:stack" && t["value"] == "demo"),
        "{tags}"
    );
    wait_for(
        "the service's task to serve",
        Duration::from_secs(90),
        || get(port).is_some_and(|b| b.contains("one")),
    );

    // Applying again changes nothing, and says so.
    let out = env.hail_ok(&["apply", "-f", file]);
    assert!(
        out.contains("stack demo: no changes; the engine already matches"),
        "{out}"
    );
    assert!(!out.contains("applied"), "{out}");

    // One environment value: a new revision, and the service rolls to it.
    let file = env.manifest(&manifest(port, "two", 2));
    let file = file.to_str().unwrap();
    let plan = env.hail_ok(&["apply", "-f", file, "--dry-run"]);
    assert!(
        plan.contains("~ taskDefinition stack-web: containerDefinitions[0].environment[0].value"),
        "{plan}"
    );
    assert!(
        plan.contains("~ service stack-cluster/web: taskDefinition (new revision)"),
        "{plan}"
    );
    assert!(
        plan.contains("0 to create, 2 to update, 0 to delete"),
        "{plan}"
    );
    // A dry run changed nothing.
    assert!(env.service()["taskDefinition"]
        .as_str()
        .unwrap()
        .ends_with("stack-web:1"));
    env.hail_ok(&["apply", "-f", file]);
    let service = env.service();
    assert!(
        service["taskDefinition"]
            .as_str()
            .unwrap()
            .ends_with("task-definition/stack-web:2"),
        "{service:#}"
    );
    assert_eq!(service["deployments"][0]["status"], "PRIMARY");
    wait_for("the new revision to serve", Duration::from_secs(90), || {
        get(port).is_some_and(|b| b.contains("two"))
    });

    // A scaling maximum: only the scalable target changes.
    let file = env.manifest(&manifest(port, "two", 3));
    let file = file.to_str().unwrap();
    let out = env.hail_ok(&["apply", "-f", file]);
    assert!(
        out.contains("~ scalableTarget stack-cluster/web: max"),
        "{out}"
    );
    assert!(
        out.contains("0 to create, 1 to update, 0 to delete"),
        "{out}"
    );
    let targets = env.aws(&[
        "application-autoscaling",
        "describe-scalable-targets",
        "--service-namespace",
        "ecs",
    ]);
    assert_eq!(targets["ScalableTargets"][0]["MaxCapacity"], 3);
    assert_eq!(targets["ScalableTargets"][0]["MinCapacity"], 1);
    assert!(env.service()["taskDefinition"]
        .as_str()
        .unwrap()
        .ends_with("stack-web:2"));

    // Delete: everything the stack made goes, the rest stays.
    let show = env.hail_ok(&["stack", "show", "demo"]);
    assert!(show.contains("stack-media"), "{show}");
    let out = env.hail_ok(&["delete", "-f", file]);
    assert!(out.contains("- trigger stack-thumbs"), "{out}");
    assert!(out.contains("- bucket stack-media"), "{out}");
    assert!(out.contains("stack demo: deleted"), "{out}");
    assert!(env.stack_names().is_empty());
    assert_eq!(env.buckets(), ["outside-bucket"]);
    let roles = env.hail_ok(&["role", "ls"]);
    assert!(roles.contains("outside-role"), "{roles}");
    assert!(!roles.contains("stack-web-role"), "{roles}");
    let clusters = env.aws(&["ecs", "describe-clusters", "--clusters", "stack-cluster"]);
    assert_eq!(clusters["clusters"][0]["status"], "INACTIVE", "{clusters}");
    let defs = env.aws(&[
        "ecs",
        "list-task-definitions",
        "--family-prefix",
        "stack-web",
        "--status",
        "ACTIVE",
    ]);
    assert_eq!(defs["taskDefinitionArns"], serde_json::json!([]));
    let targets = env.aws(&[
        "application-autoscaling",
        "describe-scalable-targets",
        "--service-namespace",
        "ecs",
    ]);
    assert_eq!(targets["ScalableTargets"], serde_json::json!([]));
    assert!(get(port).is_none(), "the listener still answers");
    let triggers = env.hail_ok(&["trigger", "ls"]);
    assert!(!triggers.contains("stack-thumbs"), "{triggers}");
    // Deleting again is not an error.
    let out = env.hail_ok(&["delete", "--stack", "demo"]);
    assert!(out.contains("nothing to delete"), "{out}");
}

/// The line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the manifest"))
        + 1
}

fn expect_error(env: &Env, text: &str, needle: &str, expected: &str) {
    let path = env.manifest(text);
    let out = env.hail(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.ok, "apply succeeded: {}", out.stdout);
    let line = line_of(text, needle);
    let want = format!("{}:{line}: {expected}", path.display());
    assert!(
        out.stderr.contains(&want),
        "{want:?} not in:\n{}",
        out.stderr
    );
    assert!(env.stack_names().is_empty(), "a stack was recorded");
    assert!(env.buckets().is_empty(), "a bucket was created");
}

#[test]
fn invalid_manifests_name_file_line_and_field_and_apply_nothing() {
    let env = Env::new(false);
    let good = manifest(18080, "one", 2);

    let unknown = good.replace(
        "    desiredCount: 1\n",
        "    desiredCount: 1\n    replicas: 3\n",
    );
    expect_error(
        &env,
        &unknown,
        "replicas: 3",
        "services.web: unknown field \"replicas\"",
    );

    let wrong_type = good.replace("desiredCount: 1", "desiredCount: two");
    expect_error(
        &env,
        &wrong_type,
        "desiredCount: two",
        "services.web.desiredCount: invalid type",
    );

    let missing_def = good.replace(
        "    taskDefinition: stack-web\n    desiredCount",
        "    taskDefinition: stack-api\n    desiredCount",
    );
    expect_error(
        &env,
        &missing_def,
        "taskDefinition: stack-api",
        "services.web.taskDefinition: task definition \"stack-api\" is not declared",
    );

    // Checked by the server: the bucket is neither the stack's nor there.
    let missing_bucket = good.replace("    bucket: stack-media", "    bucket: no-such-bucket");
    expect_error(
        &env,
        &missing_bucket,
        "bucket: no-such-bucket",
        "triggers.stack-thumbs.bucket: bucket no-such-bucket does not exist",
    );

    let below_min = good
        .replace("      min: 1", "      min: 2")
        .replace("      max: 2", "      max: 1");
    expect_error(
        &env,
        &below_min,
        "max: 1",
        "services.web.autoscaling.max: 1 is below min 2",
    );

    let not_yaml = format!("{good}  : [\n");
    let path = env.manifest(&not_yaml);
    let out = env.hail(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains(&format!("{}:", path.display())),
        "{}",
        out.stderr
    );
    assert!(env.stack_names().is_empty());
}
