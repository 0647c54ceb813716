//! `task-definition.json` is what `aws ecs register-task-definition
//! --cli-input-json` sends: it must pass the ECS rules Hail applies, and
//! carry the environment contract the program reads.

use hail_model::ecs::decode::decode;
use hail_model::ecs::task_definition::RegisterTaskDefinitionInput;
use hail_model::ecs::validate::validate_task_definition;
use tom_thumb::config::{
    Config, AWS_REGION, INPUT_VIDEO_FILE_URL, OUTPUT_S3_PATH, OUTPUT_THUMBS_FILE_NAME,
    POSITION_TIME_DURATION,
};

const TASK_DEFINITION: &str = include_str!("../task-definition.json");

#[test]
fn the_task_definition_registers_and_feeds_the_program() {
    let input: RegisterTaskDefinitionInput =
        decode(TASK_DEFINITION).unwrap_or_else(|e| panic!("task-definition.json: {e}"));
    validate_task_definition(&input).unwrap_or_else(|e| panic!("task-definition.json: {e:?}"));

    let json: serde_json::Value = serde_json::from_str(TASK_DEFINITION).unwrap();
    assert_eq!(json["family"], "tom-thumb-task");
    assert_eq!(json["networkMode"], "awsvpc");
    assert_eq!(
        (json["cpu"].as_str(), json["memory"].as_str()),
        (Some("256"), Some("1024"))
    );
    assert!(json["taskRoleArn"]
        .as_str()
        .is_some_and(|a| a.starts_with("arn:aws:iam::")));
    let container = &json["containerDefinitions"][0];
    assert_eq!(container["name"], "tom-thumb-container");
    assert_eq!(container["image"], "tom-thumb:latest");
    assert_eq!(container["logConfiguration"]["logDriver"], "awslogs");

    let env: Vec<(String, String)> = container["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    for var in [
        AWS_REGION,
        INPUT_VIDEO_FILE_URL,
        OUTPUT_S3_PATH,
        OUTPUT_THUMBS_FILE_NAME,
        POSITION_TIME_DURATION,
    ] {
        assert!(
            names.contains(&var),
            "{var} is missing from the environment"
        );
    }
    let config =
        Config::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("the task definition's environment is a valid configuration");
    assert_eq!(
        config.output.uri(),
        "s3://media/thumbnail/thumbnail_sample_00000000-000000_0.png"
    );
}
