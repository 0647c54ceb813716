//! The `hail` CLI against a real `hail server`: clusters, task definitions,
//! tasks run and waited for (the CLI's exit code is the container's), their
//! output followed through CloudWatch Logs, and errors.

mod server_support;

#[path = "../../hail-runtime/tests/common/mod.rs"]
mod images;

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use server_support::{Server, HAIL};

/// Runs `hail` with only the data dir's credentials and the endpoint to go on.
fn hail(data_dir: &Path, endpoint: &str, args: &[&str]) -> Output {
    std::process::Command::new(HAIL)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("AWS_ENDPOINT_URL", endpoint)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_cli_runs_waits_follows_and_reports() {
    if !images::containers_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let ep = server.endpoint.clone();
    let tar = tmp.path().join("busybox.tar");
    images::write_busybox_rootfs_tar(&tar);
    ok(hail(
        &data_dir,
        &ep,
        &[
            "image",
            "import",
            "hail.test/busybox:latest",
            tar.to_str().unwrap(),
        ],
    ));

    // Clusters.
    let arn = ok(hail(&data_dir, &ep, &["cluster", "create", "default"]));
    assert_eq!(
        arn.trim(),
        "arn:aws:ecs:us-east-1:000000000000:cluster/default"
    );
    let listed: Value =
        serde_json::from_str(&ok(hail(&data_dir, &ep, &["cluster", "ls", "--json"]))).unwrap();
    assert_eq!(listed["clusters"][0]["clusterName"], "default");
    let table = ok(hail(&data_dir, &ep, &["cluster", "ls"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("default"), "{table}");
    let missing = hail(&data_dir, &ep, &["cluster", "rm", "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("ClusterNotFoundException"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // A task definition whose output goes to CloudWatch Logs.
    let def = json!({
        "family": "greeter",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "app",
            "image": "hail.test/busybox:latest",
            "command": ["sh", "-c", "echo hello $WHO; echo bye; exit 4"],
            "environment": [{"name": "WHO", "value": "world"}],
            "stopTimeout": 2,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/greeter", "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}}
        }]
    });
    let def_path = tmp.path().join("greeter.json");
    std::fs::write(&def_path, def.to_string()).unwrap();
    let registered = ok(hail(
        &data_dir,
        &ep,
        &["taskdef", "register", def_path.to_str().unwrap()],
    ));
    assert!(
        registered.trim().ends_with("task-definition/greeter:1"),
        "{registered}"
    );
    assert_eq!(
        ok(hail(&data_dir, &ep, &["taskdef", "ls"])).trim(),
        "greeter:1"
    );
    let shown: Value =
        serde_json::from_str(&ok(hail(&data_dir, &ep, &["taskdef", "show", "greeter"]))).unwrap();
    assert_eq!(shown["taskDefinition"]["revision"], 1);

    // --wait: the CLI exits with the container's exit code.
    let waited = hail(&data_dir, &ep, &["task", "run", "greeter", "--wait"]);
    assert_eq!(
        waited.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // --follow: the output as it is written, then the exit code; overrides apply.
    let followed = hail(
        &data_dir,
        &ep,
        &["task", "run", "greeter", "--follow", "--env", "WHO=hail"],
    );
    assert_eq!(followed.status.code(), Some(4));
    assert_eq!(
        String::from_utf8_lossy(&followed.stdout),
        "hello hail\nbye\n"
    );

    let commanded = hail(
        &data_dir,
        &ep,
        &[
            "task", "run", "greeter", "--wait", "--", "sh", "-c", "exit 0",
        ],
    );
    assert_eq!(commanded.status.code(), Some(0));

    // A long task: listed, shown, stopped; its timeout as a tag.
    let id = ok(hail(
        &data_dir,
        &ep,
        &[
            "task",
            "run",
            "greeter",
            "--timeout",
            "5m",
            "--",
            "sleep",
            "300",
        ],
    ))
    .trim()
    .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let shown: Value =
        serde_json::from_str(&ok(hail(&data_dir, &ep, &["task", "show", &id]))).unwrap();
    assert_eq!(
        shown["tags"],
        json!([{"key": "hail:maxRuntimeSeconds", "value": "300"}])
    );
    let running = ok(hail(&data_dir, &ep, &["task", "ls"]));
    assert!(running.contains(&id), "{running}");
    ok(hail(
        &data_dir,
        &ep,
        &["task", "stop", &id, "--reason", "enough"],
    ));
    let stopped: Value = serde_json::from_str(&ok(hail(
        &data_dir,
        &ep,
        &["task", "ls", "--status", "STOPPED", "--json"],
    )))
    .unwrap();
    assert_eq!(stopped["tasks"].as_array().unwrap().len(), 4, "{stopped:#}");

    // The logs of an earlier task, read back.
    let first = stopped["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["containers"][0]["exitCode"] == 4)
        .unwrap();
    let logs = ok(hail(
        &data_dir,
        &ep,
        &["logs", first["taskArn"].as_str().unwrap()],
    ));
    assert!(logs.starts_with("hello "), "{logs}");
    assert!(logs.ends_with("bye\n"), "{logs}");

    // A task that cannot start: exit 1, the reason on stderr.
    let unknown = hail(&data_dir, &ep, &["task", "run", "nosuch", "--wait"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("ClientException"));
}
