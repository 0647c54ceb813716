//! Application Auto Scaling through `hail server`, driven by the real `aws`
//! CLI: scalable targets, target tracking policies, scheduled actions,
//! activities and tags, their output shapes and AWS's errors, and their
//! durability across a restart.
//!
//! Where the server serves ECS services (CreateService), the test also
//! checks what only services make possible: RegisterScalableTarget refuses
//! a service that does not exist, and the controller brings the service's
//! desired count into the registered range. Where it does not, CreateService
//! must be refused as an unknown operation, and no activity may appear.

mod server_support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Aws, Server};

const CLUSTER: &str = "bean-counter-cluster";
const SERVICE: &str = "bean-counter-service";
const RESOURCE: &str = "service/bean-counter-cluster/bean-counter-service";
const DIMENSION: &str = "ecs:service:DesiredCount";
const POLICY: &str = "cpu75-target-tracking-scaling-policy";

fn aas(env: &HashMap<String, String>, args: &[&str]) -> Aws {
    let mut all = vec!["application-autoscaling"];
    all.extend_from_slice(args);
    aws(env, &all)
}

/// Asserts the CLI failed with `code` and, when given, exactly `message`.
fn assert_error(out: &Aws, op: &str, code: &str, message: Option<&str>) {
    assert!(!out.success, "{op} succeeded: {}", out.stdout);
    let expected = format!("An error occurred ({code}) when calling the {op} operation");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    if let Some(m) = message {
        // The CLI may put "(reached max retries: 0)" between the two.
        let (_, rest) = out.stderr.split_once(&expected).unwrap_or_default();
        let rest = match rest.strip_prefix(" (") {
            Some(r) => r.split_once(')').map_or("", |(_, r)| r),
            None => rest,
        };
        let said = rest.strip_prefix(": ").unwrap_or_default();
        assert!(said.starts_with(m), "{}", out.stderr);
    }
}

fn register(env: &HashMap<String, String>, resource: &str, min: &str, max: &str) -> Aws {
    aas(
        env,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            DIMENSION,
            "--resource-id",
            resource,
            "--min-capacity",
            min,
            "--max-capacity",
            max,
        ],
    )
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

/// Creates the bean counter cluster and, where the server serves ECS
/// services, its service with one task desired. Returns whether services
/// are served.
fn create_service(env: &HashMap<String, String>, dir: &Path) -> bool {
    aws(env, &["ecs", "create-cluster", "--cluster-name", CLUSTER]).json();
    let def = json!({
        "family": "bean-counter",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "app", "image": "hail.test/busybox:latest", "essential": true,
            "command": ["sleep", "3600"]
        }]
    });
    let path = dir.join("bean-counter.json");
    std::fs::write(&path, def.to_string()).unwrap();
    aws(
        env,
        &[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &format!("file://{}", path.display()),
        ],
    )
    .json();
    let out = aws(
        env,
        &[
            "ecs",
            "create-service",
            "--cluster",
            CLUSTER,
            "--service-name",
            SERVICE,
            "--task-definition",
            "bean-counter",
            "--desired-count",
            "1",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            "awsvpcConfiguration={subnets=[subnet-hail]}",
        ],
    );
    if out.success {
        return true;
    }
    // Only an engine without services may get here, and only this way.
    assert_error(&out, "CreateService", "UnknownOperationException", None);
    false
}

fn desired_count(env: &HashMap<String, String>) -> i64 {
    let out = aws(
        env,
        &[
            "ecs",
            "describe-services",
            "--cluster",
            CLUSTER,
            "--services",
            SERVICE,
        ],
    )
    .json();
    out["services"][0]["desiredCount"].as_i64().unwrap()
}

#[test]
fn aws_cli_manages_scalable_targets_policies_and_schedules() {
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    let services = create_service(&env, tmp.path());

    // Errors first: nothing is registered yet.
    let out = aas(
        &env,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredTasks",
            "--resource-id",
            RESOURCE,
            "--min-capacity",
            "2",
            "--max-capacity",
            "4",
        ],
    );
    assert_error(
        &out,
        "RegisterScalableTarget",
        "ValidationException",
        Some(
            "1 validation error detected: Value 'ecs:service:DesiredTasks' at \
             'scalableDimension' failed to satisfy constraint: Member must satisfy enum value \
             set: [ecs:service:DesiredCount, ec2:spot-fleet-request:TargetCapacity,",
        ),
    );
    let out = register(&env, RESOURCE, "5", "4");
    assert_error(
        &out,
        "RegisterScalableTarget",
        "ValidationException",
        Some("Minimum capacity cannot be greater than maximum capacity"),
    );
    let out = register(&env, "cluster/bean-counter-cluster", "1", "2");
    assert_error(
        &out,
        "RegisterScalableTarget",
        "ValidationException",
        Some("Unsupported service namespace, resource type or scalable dimension"),
    );
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"TargetValue": 75.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, "ScaleOutCooldown": 60, "ScaleInCooldown": 60}"#,
    )
    .unwrap();
    let config_arg = format!("file://{}", config.display());
    let put_policy = |env: &HashMap<String, String>| {
        aas(
            env,
            &[
                "put-scaling-policy",
                "--service-namespace",
                "ecs",
                "--scalable-dimension",
                DIMENSION,
                "--resource-id",
                RESOURCE,
                "--policy-name",
                POLICY,
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                &config_arg,
            ],
        )
    };
    assert_error(
        &put_policy(&env),
        "PutScalingPolicy",
        "ObjectNotFoundException",
        Some(&format!(
            "No scalable target registered for service namespace: ecs, resource ID: {RESOURCE}, \
             scalable dimension: {DIMENSION}"
        )),
    );
    let deregister = |env: &HashMap<String, String>| {
        aas(
            env,
            &[
                "deregister-scalable-target",
                "--service-namespace",
                "ecs",
                "--scalable-dimension",
                DIMENSION,
                "--resource-id",
                RESOURCE,
            ],
        )
    };
    assert_error(
        &deregister(&env),
        "DeregisterScalableTarget",
        "ObjectNotFoundException",
        Some(&format!(
            "No scalable target found for service namespace: ecs, resource ID: {RESOURCE}, \
             scalable dimension: {DIMENSION}"
        )),
    );
    if services {
        let out = register(&env, "service/bean-counter-cluster/ghost", "1", "2");
        assert_error(
            &out,
            "RegisterScalableTarget",
            "ValidationException",
            Some("ECS service doesn't exist: service/bean-counter-cluster/ghost"),
        );
    }

    // The workshop's commands.
    let registered = register(&env, RESOURCE, "2", "4").json();
    let arn = registered["ScalableTargetARN"].as_str().unwrap().to_owned();
    let id = arn
        .strip_prefix("arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/")
        .unwrap_or_else(|| panic!("{arn}"));
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{arn}"
    );

    let described = aas(
        &env,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .json();
    let targets = described["ScalableTargets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{described}");
    let t = &targets[0];
    assert_eq!(t["ServiceNamespace"], "ecs");
    assert_eq!(t["ResourceId"], RESOURCE);
    assert_eq!(t["ScalableDimension"], DIMENSION);
    assert_eq!(t["MinCapacity"], 2);
    assert_eq!(t["MaxCapacity"], 4);
    assert_eq!(t["ScalableTargetARN"], arn.as_str());
    assert_eq!(
        t["RoleARN"],
        "arn:aws:iam::000000000000:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"
    );
    assert!(t.get("CreationTime").is_some(), "{t}");
    assert_eq!(
        t["SuspendedState"],
        json!({"DynamicScalingInSuspended": false, "DynamicScalingOutSuspended": false,
               "ScheduledScalingSuspended": false})
    );

    let policy = put_policy(&env).json();
    let policy_arn = policy["PolicyARN"].as_str().unwrap().to_owned();
    assert!(
        policy_arn.starts_with("arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:")
            && policy_arn.ends_with(&format!(":resource/ecs/{RESOURCE}:policyName/{POLICY}")),
        "{policy_arn}"
    );
    let alarms = policy["Alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 2, "{policy}");
    for (alarm, kind) in alarms.iter().zip(["AlarmHigh", "AlarmLow"]) {
        let name = alarm["AlarmName"].as_str().unwrap();
        assert!(
            name.starts_with(&format!("TargetTracking-{RESOURCE}-{kind}-")),
            "{name}"
        );
        assert_eq!(
            alarm["AlarmARN"],
            format!("arn:aws:cloudwatch:us-east-1:000000000000:alarm:{name}")
        );
    }
    let policies = aas(
        &env,
        &[
            "describe-scaling-policies",
            "--service-namespace",
            "ecs",
            "--resource-id",
            RESOURCE,
        ],
    )
    .json();
    let p = &policies["ScalingPolicies"][0];
    assert_eq!(p["PolicyARN"], policy_arn.as_str());
    assert_eq!(p["PolicyName"], POLICY);
    assert_eq!(p["PolicyType"], "TargetTrackingScaling");
    assert_eq!(p["ResourceId"], RESOURCE);
    assert_eq!(
        p["TargetTrackingScalingPolicyConfiguration"],
        json!({"TargetValue": 75.0,
               "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
               "ScaleOutCooldown": 60, "ScaleInCooldown": 60})
    );
    assert_eq!(p["Alarms"], policy["Alarms"]);
    assert!(p.get("CreationTime").is_some(), "{p}");

    // Scheduled actions and tags.
    aas(
        &env,
        &[
            "put-scheduled-action",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            DIMENSION,
            "--resource-id",
            RESOURCE,
            "--scheduled-action-name",
            "weekday-mornings",
            "--schedule",
            "cron(0 8 ? * MON-FRI *)",
            "--timezone",
            "Europe/Paris",
            "--scalable-target-action",
            "MinCapacity=3,MaxCapacity=4",
        ],
    )
    .json_or_empty();
    let scheduled = aas(
        &env,
        &["describe-scheduled-actions", "--service-namespace", "ecs"],
    )
    .json();
    let a = &scheduled["ScheduledActions"][0];
    assert_eq!(a["ScheduledActionName"], "weekday-mornings");
    assert_eq!(a["Schedule"], "cron(0 8 ? * MON-FRI *)");
    assert_eq!(a["Timezone"], "Europe/Paris");
    assert_eq!(
        a["ScalableTargetAction"],
        json!({"MinCapacity": 3, "MaxCapacity": 4})
    );
    let bad_schedule = aas(
        &env,
        &[
            "put-scheduled-action",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            DIMENSION,
            "--resource-id",
            RESOURCE,
            "--scheduled-action-name",
            "broken",
            "--schedule",
            "cron(0 8 * * MON *)",
            "--scalable-target-action",
            "MinCapacity=1",
        ],
    );
    assert_error(
        &bad_schedule,
        "PutScheduledAction",
        "ValidationException",
        None,
    );
    aas(
        &env,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "team=beans",
        ],
    )
    .json_or_empty();
    let tags = aas(&env, &["list-tags-for-resource", "--resource-arn", &arn]).json();
    assert_eq!(tags["Tags"], json!({"team": "beans"}));

    // Activities: with services, the controller brings the count of 1 up
    // to the minimum of 2 within seconds; without, nothing happens.
    let activities = |env: &HashMap<String, String>| {
        aas(
            env,
            &[
                "describe-scaling-activities",
                "--service-namespace",
                "ecs",
                "--resource-id",
                RESOURCE,
            ],
        )
        .json()["ScalingActivities"]
            .as_array()
            .unwrap()
            .clone()
    };
    if services {
        let first = eventually(20, "the first scaling activity", || {
            activities(&env)
                .into_iter()
                .find(|a| a["StatusCode"] == "Successful")
        });
        assert_eq!(first["Description"], "Setting desired count to 2.");
        assert_eq!(first["Cause"], "minimum capacity was set to 2");
        assert_eq!(
            first["StatusMessage"],
            "Successfully set desired count to 2. Change successfully fulfilled by ecs."
        );
        assert_eq!(first["ServiceNamespace"], "ecs");
        assert_eq!(first["ScalableDimension"], DIMENSION);
        assert!(first.get("ActivityId").is_some() && first.get("StartTime").is_some());
        assert!(first.get("EndTime").is_some(), "{first}");
        assert_eq!(desired_count(&env), 2);
    } else {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(activities(&env), Vec::<Value>::new());
    }

    // Everything survives a restart.
    let (status, _, host) = server.stop_keeping_host(Signal::SIGTERM);
    assert!(status.success(), "{status}");
    let server = Server::start_on(&data_dir, host);
    let env = hail_env(&data_dir, &server.endpoint);
    let described = aas(
        &env,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .json();
    assert_eq!(
        described["ScalableTargets"][0]["ScalableTargetARN"],
        arn.as_str()
    );
    let policies = aas(
        &env,
        &["describe-scaling-policies", "--service-namespace", "ecs"],
    )
    .json();
    assert_eq!(
        policies["ScalingPolicies"][0]["PolicyARN"],
        policy_arn.as_str()
    );

    // Re-registering updates the target in place.
    let again = register(&env, RESOURCE, "1", "6").json();
    assert_eq!(again["ScalableTargetARN"], arn.as_str());
    let described = aas(
        &env,
        &[
            "describe-scalable-targets",
            "--service-namespace",
            "ecs",
            "--resource-ids",
            RESOURCE,
        ],
    )
    .json();
    assert_eq!(described["ScalableTargets"][0]["MinCapacity"], 1);
    assert_eq!(described["ScalableTargets"][0]["MaxCapacity"], 6);

    // Deregistering takes the policy and the scheduled action along.
    deregister(&env).json_or_empty();
    let described = aas(
        &env,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    )
    .json();
    assert_eq!(described["ScalableTargets"], json!([]));
    let policies = aas(
        &env,
        &["describe-scaling-policies", "--service-namespace", "ecs"],
    )
    .json();
    assert_eq!(policies["ScalingPolicies"], json!([]));
    let scheduled = aas(
        &env,
        &["describe-scheduled-actions", "--service-namespace", "ecs"],
    )
    .json();
    assert_eq!(scheduled["ScheduledActions"], json!([]));
    let gone = aas(&env, &["list-tags-for-resource", "--resource-arn", &arn]);
    assert_error(
        &gone,
        "ListTagsForResource",
        "ResourceNotFoundException",
        None,
    );
}

#[test]
fn describe_calls_page_with_the_cli_paginator() {
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    if create_service(&env, tmp.path()) {
        // Services are checked: the targets below need services of their own.
        for i in 0..3 {
            let out = aws(
                &env,
                &[
                    "ecs",
                    "create-service",
                    "--cluster",
                    CLUSTER,
                    "--service-name",
                    &format!("s{i}"),
                    "--task-definition",
                    "bean-counter",
                    "--desired-count",
                    "0",
                    "--launch-type",
                    "FARGATE",
                    "--network-configuration",
                    "awsvpcConfiguration={subnets=[subnet-hail]}",
                ],
            );
            assert!(out.success, "{}", out.stderr);
        }
    }
    for i in 0..3 {
        register(&env, &format!("service/{CLUSTER}/s{i}"), "0", "3").json();
    }
    // The CLI follows NextToken itself; a page size of 1 makes it do so.
    let all = aas(
        &env,
        &[
            "describe-scalable-targets",
            "--service-namespace",
            "ecs",
            "--page-size",
            "1",
        ],
    )
    .json();
    let ids: Vec<&str> = all["ScalableTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ResourceId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "service/bean-counter-cluster/s0",
            "service/bean-counter-cluster/s1",
            "service/bean-counter-cluster/s2"
        ]
    );
    let first = aas(
        &env,
        &[
            "describe-scalable-targets",
            "--service-namespace",
            "ecs",
            "--max-items",
            "2",
        ],
    )
    .json();
    assert_eq!(first["ScalableTargets"].as_array().unwrap().len(), 2);
    assert!(first.get("NextToken").is_some(), "{first}");
    let out = aas(
        &env,
        &[
            "describe-scalable-targets",
            "--service-namespace",
            "ecs",
            "--starting-token",
            "not-a-token",
        ],
    );
    assert!(!out.success);
    drop(server);
}

/// Operations that answer `{}` make the CLI print nothing.
trait Succeeded {
    fn json_or_empty(&self) -> Value;
}

impl Succeeded for Aws {
    fn json_or_empty(&self) -> Value {
        assert!(self.success, "aws failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }
}
