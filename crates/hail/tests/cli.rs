//! The `hail` CLI against a real `hail server`: clusters, task definitions,
//! how it finds the server and its credentials, and its errors; then tasks
//! run and waited for (the CLI's exit code is the container's), their output
//! followed through CloudWatch Logs, listed, shown and stopped.

mod server_support;

use server_support::images;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use server_support::{hail_env, Server, HAIL};

/// The workshop's task definition, as `--cli-input-json` takes it.
const TOM_THUMB: &str = include_str!("../../hail-model/testdata/tom-thumb-task.json");

/// `hail` with a bare environment: the data dir's credentials and `--endpoint`
/// are all it has to go on, unless `env` adds more.
fn hail_with(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(HAIL)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().copied())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn hail(data_dir: &Path, endpoint: &str, args: &[&str]) -> Output {
    hail_with(data_dir, &[("AWS_ENDPOINT_URL", endpoint)], args)
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

fn ok_json(out: Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Asserts a failed command: exit status 1 and `error: …` on stderr.
fn failed(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn the_cli_manages_clusters_and_task_definitions() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let endpoint = server.endpoint.clone();
    let ep = endpoint.as_str();

    // Clusters, found through --endpoint alone, signed with the data dir's keys.
    let arn = ok(hail_with(
        &data_dir,
        &[],
        &["cluster", "create", "web", "--endpoint", ep],
    ));
    assert_eq!(arn, "arn:aws:ecs:us-east-1:000000000000:cluster/web\n");
    let created = ok_json(hail(
        &data_dir,
        ep,
        &["cluster", "create", "batch", "--json"],
    ));
    assert_eq!(created["cluster"]["clusterName"], "batch");
    assert_eq!(created["cluster"]["status"], "ACTIVE");
    assert_eq!(
        ok(hail(&data_dir, ep, &["cluster", "ls"])),
        "NAME   STATUS  RUNNING  PENDING\n\
         batch  ACTIVE  0        0\n\
         web    ACTIVE  0        0\n"
    );
    let listed = ok_json(hail(&data_dir, ep, &["cluster", "ls", "--json"]));
    let names: Vec<&str> = listed["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clusterName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["batch", "web"]);
    assert_eq!(
        ok(hail(&data_dir, ep, &["cluster", "rm", "batch"])),
        "deleted arn:aws:ecs:us-east-1:000000000000:cluster/batch\n"
    );
    assert_eq!(
        failed(hail(&data_dir, ep, &["cluster", "rm", "ghost"])),
        "error: ClusterNotFoundException: cluster ghost not found\n"
    );
    // A cluster with no tasks lists an empty table.
    assert_eq!(
        ok(hail(&data_dir, ep, &["task", "ls", "--cluster", "web"])),
        "TASK  DEFINITION  STATUS  IP  AGE  RAN  EXIT  REASON\n"
    );
    let stopped = ok_json(hail(
        &data_dir,
        ep,
        &[
            "task",
            "ls",
            "--cluster",
            "web",
            "--status",
            "stopped",
            "--json",
        ],
    ));
    assert_eq!(stopped, json!({"tasks": []}));

    // Task definitions: from a file, from standard input, listed and shown.
    let input: Value = serde_json::from_str(TOM_THUMB).unwrap();
    let def_path = tmp.path().join("tom-thumb.json");
    std::fs::write(&def_path, TOM_THUMB).unwrap();
    let def_arg = def_path.to_str().unwrap();
    let family_arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/tom-thumb-task";
    assert_eq!(
        ok(hail(&data_dir, ep, &["taskdef", "register", def_arg])),
        format!("{family_arn}:1\n")
    );
    let second = ok_json(hail(
        &data_dir,
        ep,
        &["taskdef", "register", def_arg, "--json"],
    ));
    assert_eq!(second["taskDefinition"]["revision"], 2);
    assert_eq!(
        second["taskDefinition"]["containerDefinitions"][0]["environment"],
        input["containerDefinitions"][0]["environment"]
    );
    let mut other = input.clone();
    other["family"] = json!("other");
    let mut child = Command::new(HAIL)
        .env_clear()
        .env("AWS_ENDPOINT_URL", ep)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["taskdef", "register", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(other.to_string().as_bytes())
        .unwrap();
    assert_eq!(
        ok(child.wait_with_output().unwrap()),
        "arn:aws:ecs:us-east-1:000000000000:task-definition/other:1\n"
    );
    assert_eq!(
        ok(hail(&data_dir, ep, &["taskdef", "ls"])),
        "other:1\ntom-thumb-task:1\ntom-thumb-task:2\n"
    );
    let family = ok_json(hail(
        &data_dir,
        ep,
        &["taskdef", "ls", "--family", "tom-thumb-task", "--json"],
    ));
    assert_eq!(
        family,
        json!({"taskDefinitionArns": [format!("{family_arn}:1"), format!("{family_arn}:2")]})
    );
    let shown = ok_json(hail(
        &data_dir,
        ep,
        &["taskdef", "show", "tom-thumb-task:1", "--json"],
    ));
    assert_eq!(shown["taskDefinition"]["revision"], 1);
    assert_eq!(shown["taskDefinition"]["cpu"], input["cpu"]);
    assert_eq!(shown["taskDefinition"]["status"], "ACTIVE");
    let table = ok(hail(&data_dir, ep, &["taskdef", "show", "tom-thumb-task"]));
    assert!(
        table.starts_with("TASK DEFINITION  tom-thumb-task:2\nSTATUS           ACTIVE\n"),
        "{table}"
    );
    assert!(
        table.contains(
            "tom-thumb-container  tom-thumb:latest  yes        -        awslogs /ecs/tom-thumb-task\n"
        ),
        "{table}"
    );
    let missing = failed(hail(&data_dir, ep, &["taskdef", "show", "ghost"]));
    assert!(
        missing.starts_with("error: ClientException: Unable to describe task definition."),
        "{missing}"
    );
    let unknown = failed(hail(&data_dir, ep, &["task", "run", "ghost", "--wait"]));
    assert!(unknown.starts_with("error: ClientException: "), "{unknown}");

    // Credentials in the environment win over the data dir's, as in the AWS
    // tools: the right ones work, wrong ones are refused by the server.
    let env = hail_env(&data_dir, ep);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let elsewhere = tmp.path().join("elsewhere");
    assert!(ok(hail_with(&elsewhere, &vars, &["cluster", "ls"])).contains("web"));
    let wrong = [
        ("AWS_ENDPOINT_URL", ep),
        ("AWS_ACCESS_KEY_ID", env["AWS_ACCESS_KEY_ID"].as_str()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wrong/secret/key/000000000000000000000000",
        ),
    ];
    let denied = failed(hail_with(&data_dir, &wrong, &["cluster", "ls"]));
    assert!(
        denied.starts_with("error: InvalidSignatureException: "),
        "{denied}"
    );
    let half = failed(hail_with(&data_dir, &wrong[..2], &["cluster", "ls"]));
    assert_eq!(
        half,
        "error: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not\n"
    );
    let none = failed(hail(&elsewhere, ep, &["cluster", "ls"]));
    assert!(none.starts_with("error: no credentials: "), "{none}");

    // No server there: said plainly.
    drop(server);
    let down = failed(hail(&data_dir, ep, &["cluster", "ls"]));
    assert!(
        down.starts_with(&format!(
            "error: cannot reach {ep} (is `hail server` running there?)"
        )),
        "{down}"
    );
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
    ok(hail(&data_dir, &ep, &["cluster", "create", "default"]));

    let register = |def: Value| {
        let name = def["family"].as_str().unwrap().to_owned();
        let path = tmp.path().join(format!("{name}.json"));
        std::fs::write(&path, def.to_string()).unwrap();
        ok(hail(
            &data_dir,
            &ep,
            &["taskdef", "register", path.to_str().unwrap()],
        ))
    };
    let awslogs = |group: &str, create: bool| {
        let mut options = json!({
            "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs",
        });
        if create {
            options["awslogs-create-group"] = json!("true");
        }
        json!({"logDriver": "awslogs", "options": options})
    };
    let fargate = |family: &str, containers: Value| {
        json!({
            "family": family,
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": containers,
        })
    };

    // A task whose output goes to CloudWatch Logs.
    let registered = register(fargate(
        "greeter",
        json!([{
            "name": "app",
            "image": "hail.test/busybox:latest",
            "command": ["sh", "-c", "echo hello $WHO; echo bye; exit 4"],
            "environment": [{"name": "WHO", "value": "world"}],
            "stopTimeout": 2,
            "logConfiguration": awslogs("/ecs/greeter", true),
        }]),
    ));
    assert!(
        registered.trim().ends_with("task-definition/greeter:1"),
        "{registered}"
    );

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
    assert_eq!(
        followed.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&followed.stdout),
        "hello hail\nbye\n"
    );

    // With --json, stdout is the stopped task and the followed lines go to
    // stderr.
    let quiet = hail(
        &data_dir,
        &ep,
        &["task", "run", "greeter", "--follow", "--json"],
    );
    assert_eq!(quiet.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "hello world\nbye\n");
    let quiet: Value = serde_json::from_slice(&quiet.stdout).unwrap();
    assert_eq!(quiet["tasks"][0]["containers"][0]["exitCode"], 4);

    // A command after --command (or `--`); with --count every task is
    // waited for.
    let commanded = hail(
        &data_dir,
        &ep,
        &[
            "task",
            "run",
            "greeter",
            "--count",
            "2",
            "--wait",
            "--json",
            "--command",
            "sh",
            "-c",
            "exit 0",
        ],
    );
    assert_eq!(commanded.status.code(), Some(0));
    let both: Value = serde_json::from_slice(&commanded.stdout).unwrap();
    let both = both["tasks"].as_array().unwrap();
    assert_eq!(both.len(), 2);
    assert!(both
        .iter()
        .all(|t| t["lastStatus"] == "STOPPED" && t["containers"][0]["exitCode"] == 0));

    // The exit code is the essential container's, whichever container the
    // overrides go to.
    register(fargate(
        "pair",
        json!([
            {"name": "setup", "image": "hail.test/busybox:latest", "essential": false,
             "command": ["sh", "-c", "exit ${CODE:-9}"]},
            {"name": "main", "image": "hail.test/busybox:latest",
             "command": ["sh", "-c", "sleep 1; exit 5"], "stopTimeout": 2},
        ]),
    ));
    let pair = hail(
        &data_dir,
        &ep,
        &[
            "task",
            "run",
            "pair",
            "--container",
            "setup",
            "--env",
            "CODE=7",
            "--wait",
            "--json",
        ],
    );
    assert_eq!(pair.status.code(), Some(5));
    let pair: Value = serde_json::from_slice(&pair.stdout).unwrap();
    let setup = pair["tasks"][0]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "setup")
        .unwrap();
    assert_eq!(setup["exitCode"], 7, "{pair:#}");

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
            "--subnet-id",
            "subnet-0abc",
            "--",
            "sleep",
            "300",
        ],
    ))
    .trim()
    .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let shown = ok_json(hail(&data_dir, &ep, &["task", "show", &id, "--json"]));
    assert_eq!(
        shown["tags"],
        json!([{"key": "hail:maxRuntimeSeconds", "value": "300"}])
    );
    let table = ok(hail(&data_dir, &ep, &["task", "show", &id]));
    assert!(table.starts_with(&format!("TASK        {id}\n")), "{table}");
    assert!(table.contains("\nDEFINITION  greeter:1\n"), "{table}");
    assert!(
        table.contains("\nTAGS        hail:maxRuntimeSeconds=300\n"),
        "{table}"
    );
    let running = ok(hail(&data_dir, &ep, &["task", "ls", "--family", "greeter"]));
    assert!(running.starts_with("TASK "), "{running}");
    // Tables show ids short, and a short id names the task.
    let short = &id[..12];
    assert!(
        running.contains(&format!("\n{short}  greeter:1 ")),
        "{running}"
    );
    let by_short = ok_json(hail(&data_dir, &ep, &["task", "show", short, "--json"]));
    assert_eq!(by_short["taskArn"], shown["taskArn"]);
    let mut other_short = short.to_owned();
    other_short.replace_range(11.., if short.ends_with('0') { "1" } else { "0" });
    let nothing = failed(hail(&data_dir, &ep, &["task", "show", &other_short]));
    assert_eq!(
        nothing,
        format!("error: no task of cluster default has an id starting with {other_short}\n")
    );
    let by_arn = shown["taskArn"].as_str().unwrap();
    assert_eq!(
        ok(hail(
            &data_dir,
            &ep,
            &["task", "stop", by_arn, "--reason", "enough"],
        )),
        format!("stopping {id}\n")
    );
    let stopped = ok_json(hail(
        &data_dir,
        &ep,
        &["task", "ls", "--status", "STOPPED", "--json"],
    ));
    assert_eq!(stopped["tasks"].as_array().unwrap().len(), 7, "{stopped:#}");
    let stopped = ok_json(hail(&data_dir, &ep, &["task", "show", &id, "--json"]));
    assert_eq!(stopped["stoppedReason"], "enough");
    let subnet = stopped["attachments"][0]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "subnetId")
        .unwrap();
    assert_eq!(subnet["value"], "subnet-0abc");

    // The logs of an earlier task, read back by ARN, and followed once it
    // has stopped: all of it, then the command ends.
    let ls = ok_json(hail(
        &data_dir,
        &ep,
        &["task", "ls", "--status", "STOPPED", "--json"],
    ));
    let first = ls["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["containers"][0]["exitCode"] == 4)
        .unwrap();
    let first_arn = first["taskArn"].as_str().unwrap();
    let logs = ok(hail(&data_dir, &ep, &["logs", first_arn]));
    assert!(
        logs == "hello world\nbye\n" || logs == "hello hail\nbye\n",
        "{logs}"
    );
    let first_id = first_arn.rsplit('/').next().unwrap();
    assert_eq!(ok(hail(&data_dir, &ep, &["logs", first_id, "-f"])), logs);
    // --json: the events as GetLogEvents returns them, one a line.
    let events = ok(hail(
        &data_dir,
        &ep,
        &["logs", &first_id[..12], "--container", "app", "--json"],
    ));
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.join("\n") + "\n", logs);
    assert!(events.iter().all(|e| e["timestamp"].is_i64()), "{events:?}");
    let no_container = failed(hail(
        &data_dir,
        &ep,
        &["logs", first_id, "--container", "ghost"],
    ));
    assert!(
        no_container.contains("no container ghost"),
        "{no_container}"
    );

    // A task of another cluster: its ARN says where it is.
    ok(hail(&data_dir, &ep, &["cluster", "create", "other"]));
    let elsewhere = hail(
        &data_dir,
        &ep,
        &["task", "run", "greeter", "--cluster", "other", "--wait"],
    );
    assert_eq!(elsewhere.status.code(), Some(4));
    let other = ok_json(hail(
        &data_dir,
        &ep,
        &[
            "task",
            "ls",
            "--cluster",
            "other",
            "--status",
            "STOPPED",
            "--json",
        ],
    ));
    let other_arn = other["tasks"][0]["taskArn"].as_str().unwrap();
    assert_eq!(
        ok(hail(&data_dir, &ep, &["logs", other_arn])),
        "hello world\nbye\n"
    );
    let other_id = other_arn.rsplit('/').next().unwrap();
    assert!(failed(hail(&data_dir, &ep, &["task", "show", other_id])).contains("not found"));
    ok(hail(
        &data_dir,
        &ep,
        &["task", "show", other_id, "--cluster", "other"],
    ));

    // Tasks that cannot start: exit 1, the stoppedReason on stderr.
    register(fargate(
        "unpullable",
        json!([{"name": "app", "image": "127.0.0.1:1/nothing/here:latest", "command": ["true"]}]),
    ));
    let unpullable = hail(&data_dir, &ep, &["task", "run", "unpullable", "--wait"]);
    assert_eq!(unpullable.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unpullable.stderr);
    assert!(
        stderr.starts_with("task ") && stderr.contains(" stopped: CannotPullContainerError:"),
        "{stderr}"
    );
    // Its log group does not exist: the stream never appears, and --follow
    // still ends with the reason.
    register(fargate(
        "nolog",
        json!([{"name": "app", "image": "hail.test/busybox:latest", "command": ["true"],
                "logConfiguration": awslogs("/ecs/missing", false)}]),
    ));
    let nolog = hail(&data_dir, &ep, &["task", "run", "nolog", "--follow"]);
    assert_eq!(nolog.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nolog.stderr);
    assert!(
        stderr.contains(" stopped: ResourceInitializationError:"),
        "{stderr}"
    );
    // A definition without awslogs cannot be followed, and no task starts.
    let before = ok_json(hail(
        &data_dir,
        &ep,
        &["task", "ls", "--status", "STOPPED", "--json"],
    ));
    let refused = failed(hail(
        &data_dir,
        &ep,
        &["task", "run", "unpullable", "--follow"],
    ));
    assert!(refused.contains("does not log with awslogs"), "{refused}");
    let after = ok_json(hail(
        &data_dir,
        &ep,
        &["task", "ls", "--status", "STOPPED", "--json"],
    ));
    assert_eq!(
        before["tasks"].as_array().unwrap().len(),
        after["tasks"].as_array().unwrap().len()
    );
    let running = ok(hail(&data_dir, &ep, &["task", "ls"]));
    assert_eq!(running.lines().count(), 1, "{running}");
}
