//! Durability: SIGKILL `hail server` in the middle of a burst of RunTask
//! calls; after a restart on the same data dir every acknowledged task
//! exists and reaches a true final state, and nothing is left running.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Server};

/// Acknowledged RunTask calls before the server is killed.
const ACKS_BEFORE_KILL: usize = 12;

/// Calls RunTask in a loop from 4 threads, printing each acknowledged task
/// ARN as soon as the answer arrives; stops at the first failure (the
/// server is gone). No retries: a retried call could be acknowledged twice.
const BURST: &str = r#"
import os, sys, threading, boto3
from botocore.config import Config
ecs = boto3.client("ecs", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                   config=Config(retries={"max_attempts": 1, "mode": "standard"}))
lock = threading.Lock()
def burst():
    for _ in range(200):
        try:
            r = ecs.run_task(cluster="default", taskDefinition="napper", launchType="FARGATE",
                networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"]}})
        except Exception as e:
            return
        with lock:
            for t in r["tasks"]:
                print(t["taskArn"], flush=True)
threads = [threading.Thread(target=burst) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
"#;

fn describe_all(env: &HashMap<String, String>, arns: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let mut args = vec!["ecs", "describe-tasks", "--tasks"];
        args.extend(chunk.iter().map(String::as_str));
        let page = aws(env, &args).json();
        assert_eq!(
            page["failures"],
            json!([]),
            "acknowledged tasks missing: {page}"
        );
        out.extend(page["tasks"].as_array().unwrap().iter().cloned());
    }
    out
}

#[test]
fn a_killed_server_loses_no_acknowledged_task() {
    if !images::containers_available() {
        return;
    }
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    server_support::import_busybox(&data_dir, "hail.test/busybox:latest");
    aws(
        &env,
        &["ecs", "create-cluster", "--cluster-name", "default"],
    )
    .json();
    let def = json!({
        "family": "napper",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "app",
            "image": "hail.test/busybox:latest",
            "command": ["sleep", "2"],
            "stopTimeout": 2
        }]
    });
    let def_path = tmp.path().join("napper.json");
    std::fs::write(&def_path, def.to_string()).unwrap();
    aws(
        &env,
        &[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &format!("file://{}", def_path.display()),
        ],
    )
    .json();

    let mut burst = common::python_command(&env["AWS_DEFAULT_REGION"])
        .args(["-c", BURST])
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acknowledged = Vec::new();
    let mut lines = BufReader::new(burst.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        acknowledged.push(line.unwrap());
        if acknowledged.len() == ACKS_BEFORE_KILL {
            break;
        }
    }
    assert_eq!(
        acknowledged.len(),
        ACKS_BEFORE_KILL,
        "the burst ended early"
    );
    let (status, _, host) = server.stop_keeping_host(Signal::SIGKILL);
    assert!(!status.success());
    // Answers that were already on their way count as acknowledged too.
    acknowledged.extend(lines.map_while(Result::ok));
    burst.wait().unwrap();

    let server = Server::start_on(&data_dir, host);
    let env = hail_env(&data_dir, &server.endpoint);
    let deadline = Instant::now() + Duration::from_secs(120);
    let tasks = loop {
        let tasks = describe_all(&env, &acknowledged);
        assert_eq!(tasks.len(), acknowledged.len());
        if tasks.iter().all(|t| t["lastStatus"] == "STOPPED") {
            break tasks;
        }
        assert!(
            Instant::now() < deadline,
            "tasks never reached a final state: {:#}",
            Value::from(tasks)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for t in &tasks {
        assert!(t["stopCode"].is_string(), "no stop code: {t:#}");
        assert!(
            t["stoppedReason"].as_str().is_some_and(|r| !r.is_empty()),
            "no stop reason: {t:#}"
        );
        assert!(t["stoppedAt"].is_number(), "{t:#}");
    }
    // Shims outlive the server: tasks started before the kill, and those
    // the restarted server started, ran to their natural end.
    let completed = tasks
        .iter()
        .filter(|t| t["containers"][0]["exitCode"] == 0)
        .count();
    assert!(
        completed * 2 >= tasks.len(),
        "most tasks should complete normally: {:#}",
        Value::from(tasks.clone())
    );
    // Tasks committed but never acknowledged (killed mid-answer) end too.
    loop {
        let running = aws(&env, &["ecs", "list-tasks"]).json();
        if running["taskArns"] == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "tasks left running: {running}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
