//! Task definitions through `hail server` end to end: the workshop's
//! tom-thumb definition registered, described, listed and deregistered with
//! the real `aws` CLI.

mod server_support;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Server};

/// The workshop's task definition, as `--cli-input-json` takes it.
const TOM_THUMB: &str = include_str!("../../hail-model/testdata/tom-thumb-task.json");

const ARN: &str = "arn:aws:ecs:us-east-1:000000000000:task-definition/tom-thumb-task";

#[test]
fn aws_cli_registers_describes_lists_and_deregisters_task_definitions() {
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let input_path = tmp.path().join("tom-thumb-task.json");
    std::fs::write(&input_path, TOM_THUMB).unwrap();
    let input_arg = format!("file://{}", input_path.display());
    let input: Value = serde_json::from_str(TOM_THUMB).unwrap();

    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    let register = ["ecs", "register-task-definition", "--cli-input-json"];

    let first = aws(&env, &[&register[..], &[input_arg.as_str()]].concat()).json();
    assert_eq!(
        first["taskDefinition"]["taskDefinitionArn"],
        format!("{ARN}:1")
    );
    assert_eq!(first["taskDefinition"]["revision"], 1);
    let second = aws(&env, &[&register[..], &[input_arg.as_str()]].concat()).json();
    assert_eq!(
        second["taskDefinition"]["taskDefinitionArn"],
        format!("{ARN}:2")
    );

    let described = aws(
        &env,
        &[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "tom-thumb-task",
        ],
    )
    .json();
    let def = &described["taskDefinition"];
    assert_eq!(def["revision"], 2);
    assert_eq!(def["status"], "ACTIVE");
    assert_eq!(def["family"], "tom-thumb-task");
    for field in [
        "cpu",
        "memory",
        "networkMode",
        "requiresCompatibilities",
        "executionRoleArn",
        "taskRoleArn",
    ] {
        assert_eq!(def[field], input[field], "{field}");
    }
    let container = &def["containerDefinitions"][0];
    let sent = &input["containerDefinitions"][0];
    assert_eq!(container["name"], "tom-thumb-container");
    assert_eq!(container["image"], sent["image"]);
    assert_eq!(container["environment"], sent["environment"]);
    assert_eq!(container["logConfiguration"], sent["logConfiguration"]);
    assert!(
        def["compatibilities"]
            .as_array()
            .unwrap()
            .contains(&json!("FARGATE")),
        "{def}"
    );
    // awscli v1 prints timestamps as the wire carries them.
    assert!(def["registeredAt"].is_number(), "{def}");

    let listed = aws(&env, &["ecs", "list-task-definitions"]).json();
    assert_eq!(
        listed["taskDefinitionArns"],
        json!([format!("{ARN}:1"), format!("{ARN}:2")])
    );
    let families = aws(&env, &["ecs", "list-task-definition-families"]).json();
    assert_eq!(families["families"], json!(["tom-thumb-task"]));

    let deregistered = aws(
        &env,
        &[
            "ecs",
            "deregister-task-definition",
            "--task-definition",
            "tom-thumb-task:1",
        ],
    )
    .json();
    assert_eq!(deregistered["taskDefinition"]["status"], "INACTIVE");
    assert_eq!(deregistered["taskDefinition"]["revision"], 1);
    assert!(
        deregistered["taskDefinition"]["deregisteredAt"].is_number(),
        "{deregistered}"
    );
    let listed = aws(&env, &["ecs", "list-task-definitions"]).json();
    assert_eq!(listed["taskDefinitionArns"], json!([format!("{ARN}:2")]));
    let inactive = aws(
        &env,
        &["ecs", "list-task-definitions", "--status", "INACTIVE"],
    )
    .json();
    assert_eq!(inactive["taskDefinitionArns"], json!([format!("{ARN}:1")]));

    // 256 CPU units come with 512 to 2048 MiB on Fargate, never 4096.
    let mut bad = input.clone();
    bad["memory"] = json!("4096");
    let bad_path = tmp.path().join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let bad_arg = format!("file://{}", bad_path.display());
    let refused = aws(&env, &[&register[..], &[bad_arg.as_str()]].concat());
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("ClientException"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("No Fargate configuration exists for given values"),
        "{}",
        refused.stderr
    );

    let missing = aws(
        &env,
        &[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "ghost",
        ],
    );
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("ClientException"),
        "{}",
        missing.stderr
    );

    // Revisions survive a restart and are never handed out twice.
    let (status, _) = server.stop(Signal::SIGTERM);
    assert!(status.success(), "{status}");
    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    let third = aws(&env, &[&register[..], &[input_arg.as_str()]].concat()).json();
    assert_eq!(third["taskDefinition"]["revision"], 3);
    let described = aws(
        &env,
        &[
            "ecs",
            "describe-task-definition",
            "--task-definition",
            "tom-thumb-task:1",
        ],
    )
    .json();
    assert_eq!(described["taskDefinition"]["status"], "INACTIVE");
    let (status, _) = server.stop(Signal::SIGTERM);
    assert!(status.success(), "{status}");
}
