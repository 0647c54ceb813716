//! Tasks through `hail server` end to end, with the real `aws` CLI and boto3
//! and real containers: the workshop's tom-thumb definition run with
//! overrides and an awsvpc configuration, waited for, described; a task
//! stopped by the user, one that outlives its timeout, one the kernel kills
//! for its memory, one whose image cannot be pulled; and bad input answered
//! with ECS's errors.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::{aws, common, hail_env, import_busybox, Server, HAIL};

const TOM_THUMB: &str = include_str!("../../hail-model/testdata/tom-thumb-task.json");

/// A server with a busybox image under `image`, a default cluster, and
/// the `aws` environment pointing at it.
struct Stack {
    tmp: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    env: HashMap<String, String>,
    server: Server,
}

impl Stack {
    /// Runs the `hail` CLI against this stack's server.
    fn hail(&self, args: &[&str]) -> String {
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

    fn new(image: &str, server_flags: &[&str]) -> Stack {
        common::python();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let server = Server::start_with(
            &data_dir,
            server_support::host::HostNames::unique(1),
            server_flags,
        );
        let env = hail_env(&data_dir, &server.endpoint);
        import_busybox(&data_dir, image);
        aws(
            &env,
            &["ecs", "create-cluster", "--cluster-name", "default"],
        )
        .json();
        Stack {
            tmp,
            data_dir,
            env,
            server,
        }
    }
}

fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    format!("file://{}", path.display())
}

fn describe(env: &HashMap<String, String>, task_arn: &str) -> Value {
    let out = aws(env, &["ecs", "describe-tasks", "--tasks", task_arn]).json();
    assert_eq!(out["failures"], json!([]), "{out}");
    out["tasks"][0].clone()
}

/// Polls DescribeTasks until the task's lastStatus is `status`.
fn wait_for(env: &HashMap<String, String>, task_arn: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let task = describe(env, task_arn);
        if task["lastStatus"] == status {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task never reached {status}: {task:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Registers a one-container busybox definition running `script`.
fn register_sh(
    env: &HashMap<String, String>,
    dir: &Path,
    family: &str,
    container: Value,
) -> String {
    let mut c = json!({
        "name": "app",
        "image": "hail.test/busybox:latest",
        "essential": true,
        "stopTimeout": 2,
    });
    for (k, v) in container.as_object().unwrap() {
        c[k] = v.clone();
    }
    let def = json!({
        "family": family,
        "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [c],
    });
    let file = write_json(dir, &format!("{family}.json"), &def);
    let out = aws(
        env,
        &["ecs", "register-task-definition", "--cli-input-json", &file],
    )
    .json();
    out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

const NETWORK: &str = "awsvpcConfiguration={subnets=[subnet-12345678],assignPublicIp=DISABLED}";

fn run(env: &HashMap<String, String>, family: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "ecs",
        "run-task",
        "--cluster",
        "default",
        "--launch-type",
        "FARGATE",
        "--task-definition",
        family,
        "--network-configuration",
        NETWORK,
    ];
    args.extend_from_slice(extra);
    let out = aws(env, &args).json();
    assert_eq!(out["failures"], json!([]), "{out}");
    out["tasks"][0].clone()
}

#[test]
fn aws_cli_runs_the_tom_thumb_task_and_reports_how_it_ended() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new("tom-thumb:latest", &[]);
    let (tmp, data_dir, env) = (&stack.tmp, &stack.data_dir, &stack.env);
    // The definition's awslogs group, created beforehand as on AWS.
    let created = aws(
        env,
        &[
            "logs",
            "create-log-group",
            "--log-group-name",
            "/ecs/tom-thumb-task",
        ],
    );
    assert!(created.success, "{}", created.stderr);

    let def_file = write_json(
        tmp.path(),
        "tom-thumb-task.json",
        &serde_json::from_str(TOM_THUMB).unwrap(),
    );
    aws(
        env,
        &[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &def_file,
        ],
    )
    .json();

    // The invoker's call, as the workshop's Lambda makes it.
    let run_input = json!({
        "cluster": "default",
        "launchType": "FARGATE",
        "taskDefinition": "tom-thumb-task",
        "count": 1,
        "platformVersion": "LATEST",
        "startedBy": "tom-thumb-invoker",
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": ["subnet-0a1b2c3d"],
            "securityGroups": ["sg-0a1b2c3d"],
            "assignPublicIp": "ENABLED"
        }},
        "overrides": {"containerOverrides": [{
            "name": "tom-thumb-container",
            "command": ["sh", "-c",
                "echo video=$INPUT_VIDEO_FILE_URL at=$POSITION_TIME_DURATION out=$OUTPUT_THUMBS_FILE_NAME; \
                 echo region=$AWS_REGION exec=$AWS_EXECUTION_ENV; hostname -i; \
                 wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task; echo; exit 3"],
            "environment": [
                {"name": "INPUT_VIDEO_FILE_URL", "value": "http://127.0.0.1/videos/clip.mp4"},
                {"name": "POSITION_TIME_DURATION", "value": "00:07"}
            ]
        }]}
    });
    let run_file = write_json(tmp.path(), "run-task.json", &run_input);

    // The definition names a task role; until it exists the task cannot
    // assume it and fails to start, as on ECS.
    let out = aws(env, &["ecs", "run-task", "--cli-input-json", &run_file]).json();
    let roleless = out["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
    let task = wait_for(env, &roleless, "STOPPED");
    assert_eq!(task["stopCode"], "TaskFailedToStart", "{task:#}");
    assert_eq!(
        task["stoppedReason"],
        "ResourceInitializationError: unable to assume the task role \
         arn:aws:iam::000000000000:role/tom-thumb-task-role: no such role"
    );
    stack.hail(&[
        "role",
        "create",
        "tom-thumb-task-role",
        "--allow",
        "s3:GetObject=arn:aws:s3:::videos/*",
    ]);

    let out = aws(env, &["ecs", "run-task", "--cli-input-json", &run_file]).json();
    assert_eq!(out["failures"], json!([]));
    let task = &out["tasks"][0];
    let task_arn = task["taskArn"].as_str().unwrap().to_owned();
    assert!(task_arn.starts_with("arn:aws:ecs:us-east-1:000000000000:task/default/"));
    assert_eq!(task["lastStatus"], "PROVISIONING");
    assert_eq!(task["desiredStatus"], "RUNNING");
    assert_eq!(task["launchType"], "FARGATE");
    assert_eq!(task["startedBy"], "tom-thumb-invoker");
    assert_eq!(task["group"], "family:tom-thumb-task");
    assert_eq!(task["cpu"], "256");
    assert_eq!(task["memory"], "1024");
    assert_eq!(task["containers"][0]["name"], "tom-thumb-container");
    assert_eq!(task["containers"][0]["lastStatus"], "PENDING");
    assert_eq!(task["attachments"][0]["type"], "ElasticNetworkInterface");

    let waited = aws(env, &["ecs", "wait", "tasks-stopped", "--tasks", &task_arn]);
    assert!(waited.success, "wait tasks-stopped: {}", waited.stderr);
    let task = describe(env, &task_arn);
    assert_eq!(task["lastStatus"], "STOPPED", "{task:#}");
    assert_eq!(task["desiredStatus"], "STOPPED");
    assert_eq!(task["stopCode"], "EssentialContainerExited");
    assert_eq!(task["stoppedReason"], "Essential container in task exited");
    let container = &task["containers"][0];
    assert_eq!(container["exitCode"], 3);
    assert_eq!(container["lastStatus"], "STOPPED");
    let ip = container["networkInterfaces"][0]["privateIpv4Address"]
        .as_str()
        .unwrap()
        .to_owned();
    let subnet: ipnet::Ipv4Net = stack.server.host.subnet.parse().unwrap();
    assert!(
        subnet.contains(&ip.parse::<std::net::Ipv4Addr>().unwrap()),
        "{ip}"
    );
    for field in [
        "createdAt",
        "startedAt",
        "stoppingAt",
        "stoppedAt",
        "executionStoppedAt",
    ] {
        assert!(task[field].is_number(), "{field} missing: {task:#}");
    }
    assert!(task["startedAt"].as_f64() <= task["stoppedAt"].as_f64());

    // What the container printed: the overrides and the definition merged,
    // the agent's variables, the task's own address.
    let log = task_log(data_dir, &task_arn, "tom-thumb-container");
    assert!(
        log.contains("video=http://127.0.0.1/videos/clip.mp4 at=00:07 out=thumbnail.png"),
        "{log}"
    );
    assert!(
        log.contains("region=us-east-1 exec=AWS_ECS_FARGATE"),
        "{log}"
    );
    assert!(log.contains(&ip), "{log}");
    // The task metadata endpoint answered from inside the task.
    let metadata_line = log
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no metadata in the output: {log}"));
    let metadata: Value = serde_json::from_str(metadata_line).unwrap();
    assert_eq!(metadata["TaskARN"], task_arn.as_str());
    assert_eq!(metadata["Family"], "tom-thumb-task");
    assert_eq!(metadata["Containers"][0]["Name"], "tom-thumb-container");

    // The same output through CloudWatch Logs, in the stream ECS names.
    let stream = format!(
        "ecs/tom-thumb-container/{}",
        task_arn.rsplit('/').next().unwrap()
    );
    let events = aws(
        env,
        &[
            "logs",
            "get-log-events",
            "--log-group-name",
            "/ecs/tom-thumb-task",
            "--log-stream-name",
            &stream,
            "--start-from-head",
        ],
    )
    .json();
    let messages: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages[0], "video=http://127.0.0.1/videos/clip.mp4 at=00:07 out=thumbnail.png",
        "{events:#}"
    );
    assert_eq!(messages[1], "region=us-east-1 exec=AWS_ECS_FARGATE");
    assert_eq!(
        messages.len(),
        log.lines().filter(|l| !l.is_empty()).count(),
        "{log}"
    );

    // Stopped tasks are still listed and described.
    let stopped = aws(
        env,
        &[
            "ecs",
            "list-tasks",
            "--desired-status",
            "STOPPED",
            "--family",
            "tom-thumb-task",
        ],
    )
    .json();
    let mut listed: Vec<&str> = stopped["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    listed.sort_unstable();
    let mut expected = vec![task_arn.as_str(), roleless.as_str()];
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let running = aws(env, &["ecs", "list-tasks"]).json();
    assert_eq!(running["taskArns"], json!([]));
}

/// The json-file log the shim wrote for a container (stdout and stderr).
fn task_log(data_dir: &Path, task_arn: &str, container: &str) -> String {
    let id = task_arn.rsplit('/').next().unwrap();
    let path = data_dir
        .join("tasks")
        .join(id)
        .join("logs")
        .join(format!("{container}.log"));
    hail_runtime::logs::read_all(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|r| r.log)
        .collect()
}

#[test]
fn tasks_stop_on_request_on_timeout_on_oom_and_fail_to_pull_as_ecs_says() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new("hail.test/busybox:latest", &[]);
    let (tmp, env) = (&stack.tmp, &stack.env);

    register_sh(
        env,
        tmp.path(),
        "sleeper",
        json!({"command": ["sleep", "300"]}),
    );
    register_sh(
        env,
        tmp.path(),
        "hog",
        json!({"command": ["tail", "/dev/zero"], "memory": 16}),
    );
    register_sh(
        env,
        tmp.path(),
        "unpullable",
        json!({"image": "127.0.0.1:1/nothing/here:latest", "command": ["true"]}),
    );

    // Stopped by the user: running first, with its address, then stopped
    // with the reason given.
    let sleeper = run(env, "sleeper", &["--tags", "key=team,value=video"]);
    let sleeper_arn = sleeper["taskArn"].as_str().unwrap().to_owned();
    let running = wait_for(env, &sleeper_arn, "RUNNING");
    assert_eq!(running["containers"][0]["lastStatus"], "RUNNING");
    assert_eq!(running["connectivity"], "CONNECTED");
    assert_eq!(running["attachments"][0]["status"], "ATTACHED");
    let listed = aws(env, &["ecs", "list-tasks", "--family", "sleeper"]).json();
    assert_eq!(listed["taskArns"], json!([sleeper_arn]));
    let clusters = aws(env, &["ecs", "describe-clusters", "--clusters", "default"]).json();
    assert_eq!(clusters["clusters"][0]["runningTasksCount"], 1);
    let tags = aws(
        env,
        &[
            "ecs",
            "list-tags-for-resource",
            "--resource-arn",
            &sleeper_arn,
        ],
    )
    .json();
    assert_eq!(tags["tags"], json!([{"key": "team", "value": "video"}]));

    let stopped = aws(
        env,
        &[
            "ecs",
            "stop-task",
            "--task",
            &sleeper_arn,
            "--reason",
            "no longer needed",
        ],
    )
    .json();
    assert_eq!(stopped["task"]["desiredStatus"], "STOPPED");
    let task = wait_for(env, &sleeper_arn, "STOPPED");
    assert_eq!(task["stopCode"], "UserInitiated");
    assert_eq!(task["stoppedReason"], "no longer needed");
    // busybox sleep as PID 1 ignores SIGTERM: SIGKILL after stopTimeout.
    assert_eq!(task["containers"][0]["exitCode"], 137);

    // Beyond ECS: the task's maximum runtime, as a tag.
    let timed = run(
        env,
        "sleeper",
        &["--tags", "key=hail:maxRuntimeSeconds,value=1"],
    );
    let task = wait_for(env, timed["taskArn"].as_str().unwrap(), "STOPPED");
    assert_eq!(task["stopCode"], "HailMaxRuntimeExceeded", "{task:#}");
    assert_eq!(
        task["stoppedReason"],
        "Task exceeded its maximum runtime of 1s"
    );

    // The kernel's OOM killer, in ECS's words.
    let hog = run(env, "hog", &[]);
    let task = wait_for(env, hog["taskArn"].as_str().unwrap(), "STOPPED");
    assert_eq!(task["stopCode"], "EssentialContainerExited", "{task:#}");
    assert_eq!(
        task["stoppedReason"],
        "OutOfMemoryError: Container killed due to memory usage"
    );
    assert_eq!(task["containers"][0]["exitCode"], 137);

    // An image that is nowhere to be had.
    let unpullable = run(env, "unpullable", &[]);
    let task = wait_for(env, unpullable["taskArn"].as_str().unwrap(), "STOPPED");
    assert_eq!(task["stopCode"], "TaskFailedToStart", "{task:#}");
    let reason = task["stoppedReason"].as_str().unwrap();
    assert!(reason.starts_with("CannotPullContainerError:"), "{reason}");
    assert!(task["pullStartedAt"].is_number(), "{task:#}");

    // An awslogs group that does not exist stops the task before it
    // starts, as ECS does.
    register_sh(
        env,
        tmp.path(),
        "nolog",
        json!({"command": ["true"], "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/ecs/missing", "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "ecs"}}}),
    );
    let nolog = run(env, "nolog", &[]);
    let task = wait_for(env, nolog["taskArn"].as_str().unwrap(), "STOPPED");
    assert_eq!(task["stopCode"], "TaskFailedToStart");
    assert!(
        task["stoppedReason"]
            .as_str()
            .unwrap()
            .starts_with("ResourceInitializationError: failed to validate logger args"),
        "{task:#}"
    );

    // A retried RunTask (same clientToken, same request) gets the tasks the
    // first call started; the token with another request is refused.
    let first = run(env, "unpullable", &["--client-token", "retry-1"]);
    let again = run(env, "unpullable", &["--client-token", "retry-1"]);
    assert_eq!(first["taskArn"], again["taskArn"]);
    let other = aws(
        env,
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "unpullable",
            "--network-configuration",
            NETWORK,
            "--client-token",
            "retry-1",
            "--started-by",
            "someone-else",
        ],
    );
    assert!(!other.success);
    assert!(
        other.stderr.contains("(InvalidParameterException)"),
        "{}",
        other.stderr
    );
    let runs = aws(
        env,
        &[
            "ecs",
            "list-tasks",
            "--family",
            "unpullable",
            "--desired-status",
            "STOPPED",
        ],
    )
    .json();
    wait_for(env, first["taskArn"].as_str().unwrap(), "STOPPED");
    let all = aws(
        env,
        &[
            "ecs",
            "list-tasks",
            "--family",
            "unpullable",
            "--desired-status",
            "STOPPED",
        ],
    )
    .json();
    assert_eq!(all["taskArns"].as_array().unwrap().len(), 2, "{runs} {all}");

    // Nothing is left running, and the cluster counts agree.
    let clusters = aws(env, &["ecs", "describe-clusters", "--clusters", "default"]).json();
    assert_eq!(clusters["clusters"][0]["runningTasksCount"], 0);
    assert_eq!(clusters["clusters"][0]["pendingTasksCount"], 0);
}

#[test]
fn tasks_beyond_the_hosts_memory_are_failures_as_ecs_reports_them() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new("hail.test/busybox:latest", &["--task-memory", "1024"]);
    let (tmp, env) = (&stack.tmp, &stack.env);
    register_sh(
        env,
        tmp.path(),
        "sleeper",
        json!({"command": ["sleep", "300"]}),
    );
    // 512 MiB each: two fit in 1024 MiB, the third does not.
    let out = aws(
        env,
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper",
            "--count",
            "3",
            "--network-configuration",
            NETWORK,
        ],
    )
    .json();
    assert_eq!(out["tasks"].as_array().unwrap().len(), 2, "{out:#}");
    assert_eq!(out["failures"].as_array().unwrap().len(), 1, "{out:#}");
    assert_eq!(out["failures"][0]["reason"], "RESOURCE:MEMORY");
    // Once one stops, its memory is free again.
    let first = out["tasks"][0]["taskArn"].as_str().unwrap();
    aws(env, &["ecs", "stop-task", "--task", first]).json();
    wait_for(env, first, "STOPPED");
    let again = aws(
        env,
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper",
            "--network-configuration",
            NETWORK,
        ],
    )
    .json();
    assert_eq!(again["failures"], json!([]), "{again:#}");
    assert_eq!(again["tasks"].as_array().unwrap().len(), 1);
}

#[test]
fn stopped_tasks_are_forgotten_after_the_retention_period() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new("hail.test/busybox:latest", &["--task-retention", "1"]);
    let (tmp, data_dir, env) = (&stack.tmp, &stack.data_dir, &stack.env);
    register_sh(
        env,
        tmp.path(),
        "quick",
        json!({"command": ["sh", "-c", "sleep 2"]}),
    );
    let task = run(env, "quick", &[]);
    let arn = task["taskArn"].as_str().unwrap();
    let id = arn.rsplit('/').next().unwrap();
    wait_for(env, arn, "RUNNING");
    assert!(data_dir.join("tasks").join(id).exists());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = aws(env, &["ecs", "describe-tasks", "--tasks", arn]).json();
        if out["failures"][0]["reason"] == "MISSING" {
            break;
        }
        assert!(Instant::now() < deadline, "still described: {out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Its files went with it.
    assert!(!data_dir.join("tasks").join(id).exists());
}

#[test]
fn a_multi_container_task_shares_a_volume_and_starts_in_dependency_order() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new("hail.test/busybox:latest", &[]);
    let (tmp, data_dir, env) = (&stack.tmp, &stack.data_dir, &stack.env);
    let def = json!({
        "family": "assembly",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "volumes": [{"name": "work"}],
        "containerDefinitions": [
            {"name": "init", "image": "hail.test/busybox:latest", "essential": false,
             "command": ["sh", "-c", "echo configured > /work/config"],
             "mountPoints": [{"sourceVolume": "work", "containerPath": "/work"}]},
            {"name": "app", "image": "hail.test/busybox:latest",
             "command": ["sh", "-c", "cat /cfg/config; grep -c app /etc/hosts"],
             "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
             "mountPoints": [{"sourceVolume": "work", "containerPath": "/cfg", "readOnly": true}]}
        ]
    });
    let file = write_json(tmp.path(), "assembly.json", &def);
    aws(
        env,
        &["ecs", "register-task-definition", "--cli-input-json", &file],
    )
    .json();
    let task = run(env, "assembly", &[]);
    let arn = task["taskArn"].as_str().unwrap().to_owned();
    let task = wait_for(env, &arn, "STOPPED");
    let exit = |name: &str| {
        task["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["exitCode"]
            .clone()
    };
    assert_eq!(exit("init"), 0, "{task:#}");
    assert_eq!(exit("app"), 0, "{task:#}");
    assert_eq!(task["stopCode"], "EssentialContainerExited");
    assert_eq!(task_log(data_dir, &arn, "app"), "configured\n1\n");
}

#[test]
fn bad_task_requests_get_ecs_errors_and_change_nothing() {
    if !images::containers_available() {
        return;
    }
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    import_busybox(&data_dir, "hail.test/busybox:latest");

    let fails = |args: &[&str], code: &str| {
        let out = aws(&env, args);
        assert!(!out.success, "{args:?} succeeded: {}", out.stdout);
        assert!(
            out.stderr.contains(&format!("({code})")),
            "{args:?}: expected {code}: {}",
            out.stderr
        );
        out.stderr
    };
    // No cluster yet.
    fails(
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper",
            "--network-configuration",
            NETWORK,
        ],
        "ClusterNotFoundException",
    );
    aws(
        &env,
        &["ecs", "create-cluster", "--cluster-name", "default"],
    )
    .json();
    fails(
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper",
            "--network-configuration",
            NETWORK,
        ],
        "ClientException",
    );
    register_sh(
        &env,
        tmp.path(),
        "sleeper",
        json!({"command": ["sleep", "300"]}),
    );
    fails(
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper:9",
            "--network-configuration",
            NETWORK,
        ],
        "ClientException",
    );
    let msg = fails(
        &["ecs", "run-task", "--task-definition", "sleeper"],
        "InvalidParameterException",
    );
    assert!(
        msg.contains("Network Configuration must be provided"),
        "{msg}"
    );
    let msg = fails(
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper",
            "--network-configuration",
            NETWORK,
            "--overrides",
            r#"{"containerOverrides":[{"name":"nope","command":["true"]}]}"#,
        ],
        "InvalidParameterException",
    );
    assert!(msg.contains("nope"), "{msg}");
    fails(
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper",
            "--network-configuration",
            NETWORK,
            "--overrides",
            r#"{"cpu":"256","memory":"4096"}"#,
        ],
        "ClientException",
    );
    fails(
        &[
            "ecs",
            "run-task",
            "--task-definition",
            "sleeper",
            "--network-configuration",
            NETWORK,
            "--count",
            "11",
        ],
        "InvalidParameterException",
    );
    fails(
        &[
            "ecs",
            "run-task",
            "--cluster",
            "elsewhere",
            "--task-definition",
            "sleeper",
            "--network-configuration",
            NETWORK,
        ],
        "ClusterNotFoundException",
    );
    fails(
        &[
            "ecs",
            "stop-task",
            "--task",
            "0123456789abcdef0123456789abcdef",
        ],
        "InvalidParameterException",
    );
    fails(
        &[
            "ecs",
            "list-tags-for-resource",
            "--resource-arn",
            "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef",
        ],
        "ResourceNotFoundException",
    );
    let missing = aws(
        &env,
        &[
            "ecs",
            "describe-tasks",
            "--tasks",
            "0123456789abcdef0123456789abcdef",
        ],
    )
    .json();
    assert_eq!(missing["tasks"], json!([]));
    assert_eq!(missing["failures"][0]["reason"], "MISSING");

    // None of it started or recorded a task.
    for status in ["RUNNING", "STOPPED"] {
        let listed = aws(&env, &["ecs", "list-tasks", "--desired-status", status]).json();
        assert_eq!(listed["taskArns"], json!([]), "{status}");
    }
}

#[test]
fn boto3_invoker_runs_a_task_and_reads_its_result() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new("hail.test/busybox:latest", &[]);
    let (tmp, data_dir, env) = (&stack.tmp, &stack.data_dir, &stack.env);
    register_sh(
        env,
        tmp.path(),
        "thumbnailer",
        json!({"command": ["sh", "-c", "echo made $OUTPUT_THUMBS_FILE_NAME"]}),
    );

    // A Lambda-style invoker: the event's object becomes the task's input.
    let script = r#"
import json, os, sys, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
def handler(event, context):
    record = event["Records"][0]["s3"]
    response = ecs.run_task(
        cluster="default",
        launchType="FARGATE",
        taskDefinition="thumbnailer",
        count=1,
        platformVersion="LATEST",
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": ["subnet-0a1b2c3d"], "assignPublicIp": "ENABLED"}},
        overrides={"containerOverrides": [{
            "name": "app",
            "environment": [
                {"name": "INPUT_VIDEO_FILE_URL", "value": "s3://%s/%s" % (record["bucket"]["name"], record["object"]["key"])},
                {"name": "OUTPUT_THUMBS_FILE_NAME", "value": record["object"]["key"] + ".png"},
            ],
        }]},
    )
    return response
response = handler({"Records": [{"s3": {"bucket": {"name": "in"}, "object": {"key": "clip.mp4"}}}]}, None)
assert response["failures"] == [], response
arn = response["tasks"][0]["taskArn"]
ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
task = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]
print(json.dumps({"arn": arn, "exit": task["containers"][0]["exitCode"],
                  "stopCode": task["stopCode"], "last": task["lastStatus"]}))
"#;
    let out = common::python_command(&env["AWS_DEFAULT_REGION"])
        .args(["-c", script])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "invoker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["last"], "STOPPED");
    assert_eq!(result["exit"], 0);
    assert_eq!(result["stopCode"], "EssentialContainerExited");
    let log = task_log(data_dir, result["arn"].as_str().unwrap(), "app");
    assert!(log.contains("made clip.mp4.png"), "{log}");
}
