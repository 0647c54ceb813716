//! ECS services through `hail server` with the real `aws` CLI and real
//! containers: the workshop's service file creates a service that keeps its
//! desired count running, replaces a task killed from outside, rolls a new
//! revision in within its deployment limits, scales, pauses and resumes,
//! rolls back a failing deployment with the circuit breaker, and drains on
//! delete — each step read back as ECS reports it.

mod server_support;

use server_support::images;
#[path = "server_support/services.rs"]
mod services;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::HAIL;
use services::{free_port, messages, steady, workshop_service, Load, Stack, CLUSTER, SERVICE};

/// Kills the container process serving `marker` from outside Hail.
fn kill_one(marker: &str) -> u32 {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("httpd -f -p 8080 -h /srv/{marker}")])
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("a container process to kill")
        .trim()
        .parse()
        .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    pid
}

#[test]
fn the_workshop_service_keeps_its_tasks_running_rolls_scales_pauses_and_drains() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    let rev1 = stack.register("rev1", None);
    let tg = stack.target_group();
    let file = stack.file("service.json", &workshop_service(2, &tg));
    let created =
        stack.aws(&["ecs", "create-service", "--cli-input-json", &file])["service"].clone();
    assert_eq!(created["serviceName"], SERVICE);
    assert_eq!(
        created["serviceArn"],
        format!("arn:aws:ecs:us-east-1:000000000000:service/{CLUSTER}/{SERVICE}")
    );
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["desiredCount"], 2);
    assert_eq!(created["taskDefinition"], rev1);
    assert_eq!(created["launchType"], "FARGATE");
    assert_eq!(created["deploymentConfiguration"]["maximumPercent"], 100);
    assert_eq!(created["deployments"][0]["status"], "PRIMARY");
    assert_eq!(created["deployments"][0]["rolloutState"], "IN_PROGRESS");
    let deployment1 = created["deployments"][0]["id"].as_str().unwrap().to_owned();
    assert!(deployment1.starts_with("ecs-svc/"), "{deployment1}");

    let service = stack.until("steady at 2", 60, steady(2));
    let words = messages(&service);
    assert!(
        words
            .iter()
            .any(|m| m.starts_with(&format!("(service {SERVICE}) has started 2 tasks: (task "))),
        "{words:?}"
    );
    assert_eq!(
        words[0],
        format!("(service {SERVICE}) has reached a steady state.")
    );
    assert_eq!(
        service["tags"],
        json!([{"key": "app", "value": "bean-counter"}])
    );
    let tasks = stack.running_tasks();
    assert_eq!(tasks.len(), 2);
    for t in &tasks {
        assert_eq!(t["startedBy"], deployment1.as_str());
        assert_eq!(t["group"], format!("service:{SERVICE}"));
        assert_eq!(t["lastStatus"], "RUNNING");
        assert_eq!(
            t["tags"],
            json!([{"key": "app", "value": "bean-counter"}]),
            "propagated from the service"
        );
    }
    let listed = stack.aws(&["ecs", "list-services", "--cluster", CLUSTER]);
    assert_eq!(listed["serviceArns"], json!([created["serviceArn"]]));
    let cluster = stack.aws(&["ecs", "describe-clusters", "--clusters", CLUSTER]);
    assert_eq!(cluster["clusters"][0]["activeServicesCount"], 1);
    assert!(stack
        .aws_err(&["ecs", "delete-cluster", "--cluster", CLUSTER])
        .contains("ClusterContainsServicesException"));

    // A task killed from outside is replaced.
    kill_one("rev1");
    let service = stack.until("replaced the killed task", 60, |s| {
        s["deployments"][0]["failedTasks"] == 1 && steady(2)(s)
    });
    assert!(
        messages(&service)
            .iter()
            .filter(|m| m.contains("has started 1 tasks"))
            .count()
            >= 1
    );

    // A new revision rolls in: never fewer than one running (50 % of 2),
    // never more than two (100 %).
    let rev2 = stack.register("rev2", None);
    let updated = stack.aws(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
        "--task-definition",
        &rev2,
    ])["service"]
        .clone();
    assert_eq!(updated["deployments"].as_array().unwrap().len(), 2);
    assert_eq!(updated["deployments"][0]["status"], "PRIMARY");
    assert_eq!(updated["deployments"][1]["status"], "ACTIVE");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = stack.describe();
        let running = s["runningCount"].as_u64().unwrap();
        let pending = s["pendingCount"].as_u64().unwrap();
        assert!(running >= 1, "fewer than the minimum healthy: {s:#}");
        assert!(running + pending <= 2, "more than the maximum: {s:#}");
        if steady(2)(&s) && s["taskDefinition"] == rev2.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "rollout never finished: {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let tasks = stack.running_tasks();
    assert!(
        tasks
            .iter()
            .all(|t| t["taskDefinitionArn"] == rev2.as_str()),
        "{tasks:#?}"
    );

    // Scale out, then pause and resume.
    stack.aws(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
        "--desired-count",
        "3",
    ]);
    stack.until("steady at 3", 60, steady(3));
    let paused = stack.hail(&["service", "pause", SERVICE, "--cluster", CLUSTER]);
    assert!(paused.contains("paused"), "{paused}");
    stack.until("paused", 60, |s| {
        s["desiredCount"] == 0 && s["runningCount"] == 0
    });
    // The count to come back to is Hail's own field, which the aws CLI
    // leaves out; Hail's CLI shows it.
    let shown: Value = serde_json::from_str(&stack.hail(&[
        "service",
        "show",
        SERVICE,
        "--cluster",
        CLUSTER,
        "--json",
    ]))
    .unwrap();
    assert_eq!(shown["hailPausedDesiredCount"], 3);
    stack.until_no_running_tasks(30);
    stack.hail(&["service", "resume", SERVICE, "--cluster", CLUSTER]);
    stack.until("resumed at 3", 60, steady(3));

    // Delete: refused while scaled above 0, then forced: drains to INACTIVE.
    let err = stack.aws_err(&[
        "ecs",
        "delete-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
    ]);
    assert!(
        err.contains("InvalidParameterException") && err.contains("scaled above 0"),
        "{err}"
    );
    let deleted = stack.aws(&[
        "ecs",
        "delete-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
        "--force",
    ]);
    assert_eq!(deleted["service"]["status"], "DRAINING");
    let gone = stack.until("inactive", 60, |s| s["status"] == "INACTIVE");
    assert_eq!(gone["runningCount"], 0);
    let stopped = stack.aws(&[
        "ecs",
        "list-tasks",
        "--cluster",
        CLUSTER,
        "--desired-status",
        "STOPPED",
    ]);
    let arns: Vec<&str> = stopped["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut args = vec!["ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks"];
    args.extend(arns.iter().take(100));
    let described = stack.aws(&args);
    let by_scheduler = described["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["stopCode"] == "ServiceSchedulerInitiated")
        .count();
    assert!(by_scheduler >= 3, "{described:#}");
    assert_eq!(
        stack.aws(&["ecs", "list-services", "--cluster", CLUSTER])["serviceArns"],
        json!([])
    );
    // The name is free again, and the cluster can go once no service is active.
    let err = stack.aws_err(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
        "--desired-count",
        "1",
    ]);
    assert!(err.contains("ServiceNotFoundException"), "{err}");
}

#[test]
fn a_failing_deployment_trips_the_circuit_breaker_and_rolls_back() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    let good = stack.register("good", None);
    let mut input = workshop_service(1, "");
    input["deploymentConfiguration"] = json!({
        "maximumPercent": 200, "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true}
    });
    input.as_object_mut().unwrap().remove("loadBalancers");
    let file = stack.file("service.json", &input);
    stack.aws(&["ecs", "create-service", "--cli-input-json", &file]);
    stack.until("steady at 1", 60, steady(1));

    let bad = stack.register("bad", Some("echo cannot start; exit 1"));
    stack.aws(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
        "--task-definition",
        &bad,
    ]);
    let service = stack.until("rolled back", 120, |s| {
        s["taskDefinition"] == good.as_str() && steady(1)(s)
    });
    let words = messages(&service);
    assert!(
        words
            .iter()
            .any(|m| m.contains("deployment failed: tasks failed to start")),
        "{words:?}"
    );
    assert!(
        words
            .iter()
            .any(|m| m.contains("rolling back to deployment")),
        "{words:?}"
    );
    // The good task served throughout: minimum healthy 100 %.
    let tasks = stack.running_tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["taskDefinitionArn"], good.as_str());
}

#[test]
fn bad_service_requests_get_ecs_errors_and_change_nothing() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.register("r", None);
    let tg = stack.target_group();
    let mut input = workshop_service(1, &tg);
    input
        .as_object_mut()
        .unwrap()
        .remove("networkConfiguration");
    let file = stack.file("no-network.json", &input);
    let err = stack.aws_err(&["ecs", "create-service", "--cli-input-json", &file]);
    assert!(
        err.contains("InvalidParameterException")
            && err.contains("Network Configuration must be provided"),
        "{err}"
    );
    let mut input = workshop_service(1, &tg);
    input["loadBalancers"][0]["containerPort"] = json!(9090);
    let file = stack.file("bad-port.json", &input);
    let err = stack.aws_err(&["ecs", "create-service", "--cli-input-json", &file]);
    assert!(err.contains("did not have a container port 9090"), "{err}");
    let mut input = workshop_service(1, &tg);
    input["cluster"] = json!("nowhere");
    let file = stack.file("no-cluster.json", &input);
    assert!(stack
        .aws_err(&["ecs", "create-service", "--cli-input-json", &file])
        .contains("ClusterNotFoundException"));
    let mut input = workshop_service(1, &tg);
    input["taskDefinition"] = json!("no-such-family");
    let file = stack.file("no-def.json", &input);
    assert!(stack
        .aws_err(&["ecs", "create-service", "--cli-input-json", &file])
        .contains("ClientException"));
    let unlistened = stack.hail(&["lb", "create-target-group", "spare-tg"]);
    let input = workshop_service(1, unlistened.trim());
    let file = stack.file("no-listener.json", &input);
    let err = stack.aws_err(&["ecs", "create-service", "--cli-input-json", &file]);
    assert!(
        err.contains("does not have an associated load balancer"),
        "{err}"
    );
    let input = workshop_service(1, &format!("{tg}0"));
    let file = stack.file("no-group.json", &input);
    let err = stack.aws_err(&["ecs", "create-service", "--cli-input-json", &file]);
    assert!(
        err.contains("InvalidParameterException") && err.contains("does not exist"),
        "{err}"
    );
    let err = stack.aws_err(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        "ghost",
        "--desired-count",
        "1",
    ]);
    assert!(err.contains("ServiceNotFoundException"), "{err}");
    let missing = stack.aws(&[
        "ecs",
        "describe-services",
        "--cluster",
        CLUSTER,
        "--services",
        "ghost",
    ]);
    assert_eq!(missing["failures"][0]["reason"], "MISSING");
    assert_eq!(
        stack.aws(&["ecs", "list-services", "--cluster", CLUSTER])["serviceArns"],
        json!([])
    );
}

#[test]
fn traffic_through_the_load_balancer_survives_kills_rollouts_and_scale_in() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.register("lb1", None);
    let tg = stack.target_group_alone();
    assert!(
        tg.starts_with(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bean-counter-tg/"
        ),
        "{tg}"
    );
    let port = free_port().to_string();
    let listening = stack.hail(&[
        "lb",
        "create-listener",
        "--port",
        &port,
        "--target-group",
        "bean-counter-tg",
    ]);
    let url = format!("http://127.0.0.1:{port}/");
    assert!(
        listening.contains(&format!("127.0.0.1:{port}")),
        "{listening}"
    );

    let mut input = workshop_service(2, &tg);
    input["deploymentConfiguration"] = json!({"maximumPercent": 200, "minimumHealthyPercent": 100});
    let file = stack.file("service.json", &input);
    stack.aws(&["ecs", "create-service", "--cli-input-json", &file]);
    let service = stack.until("steady behind the load balancer", 90, steady(2));
    let words = messages(&service);
    assert!(
        words.iter().any(|m| m
            == &format!("(service {SERVICE}) registered 2 targets in (target-group {tg})")
            || m.starts_with(&format!("(service {SERVICE}) registered 1 targets"))),
        "{words:?}"
    );
    let health: Value =
        serde_json::from_str(&stack.hail(&["lb", "targets", "bean-counter-tg", "--json"])).unwrap();
    let states: Vec<&str> = health["targetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["targetHealth"]["State"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["healthy", "healthy"], "{health:#}");

    // (a) A task's process is killed from outside while traffic flows.
    let load = Load::start(&stack, &url, "kill");
    std::thread::sleep(Duration::from_secs(2));
    kill_one("lb1");
    stack.until("replaced the killed task", 60, |s| {
        s["deployments"][0]["failedTasks"] == 1 && steady(2)(s)
    });
    std::thread::sleep(Duration::from_secs(3));
    let killed = load.finish();
    eprintln!("kill: {killed}");
    let (ok, failed) = (
        killed["ok"].as_u64().unwrap(),
        killed["failed"].as_u64().unwrap(),
    );
    assert!(ok > 500, "{killed}");
    // Bound: the requests in flight on the killed task (one client, one at a time).
    assert!(failed <= 2, "{killed}");

    // (b) A rolling deployment replaces every task: no request fails.
    let rev2 = stack.register("lb2", None);
    let load = Load::start(&stack, &url, "rollout");
    std::thread::sleep(Duration::from_secs(1));
    stack.aws(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
        "--task-definition",
        &rev2,
    ]);
    stack.until("rolled to the new revision", 120, |s| {
        s["taskDefinition"] == rev2.as_str() && steady(2)(s)
    });
    std::thread::sleep(Duration::from_secs(3));
    let rolled = load.finish();
    eprintln!("rollout: {rolled}");
    assert_eq!(rolled["failed"], 0, "{rolled}");
    assert!(
        rolled["bodies"]["lb1"].as_u64().unwrap() > 0
            && rolled["bodies"]["lb2"].as_u64().unwrap() > 0,
        "{rolled}"
    );

    // (c) Scaling in: no request fails.
    let load = Load::start(&stack, &url, "scale-in");
    std::thread::sleep(Duration::from_secs(1));
    stack.aws(&[
        "ecs",
        "update-service",
        "--cluster",
        CLUSTER,
        "--service",
        SERVICE,
        "--desired-count",
        "1",
    ]);
    stack.until("scaled in", 60, steady(1));
    std::thread::sleep(Duration::from_secs(4));
    let scaled = load.finish();
    eprintln!("scale-in: {scaled}");
    assert_eq!(scaled["failed"], 0, "{scaled}");
    let words = messages(&stack.describe());
    assert!(
        words
            .iter()
            .any(|m| m.contains("has begun draining connections on 1 tasks")),
        "{words:?}"
    );
    assert!(
        words.iter().any(|m| m.contains("deregistered 1 targets")),
        "{words:?}"
    );

    // The group is in use: it cannot be deleted.
    let out = std::process::Command::new(HAIL)
        .arg("--data-dir")
        .arg(&stack.data_dir)
        .args([
            "lb",
            "rm-target-group",
            "bean-counter-tg",
            "--endpoint",
            &stack.env["AWS_ENDPOINT_URL"],
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use")
            || String::from_utf8_lossy(&out.stderr).contains("ResourceInUse")
    );
}
