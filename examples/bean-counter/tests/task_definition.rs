//! `task-definition.json` is what `aws ecs register-task-definition
//! --cli-input-json` sends: it must pass the ECS rules Hail applies and
//! give the service what it reads.

use hail_model::ecs::decode::decode;
use hail_model::ecs::task_definition::RegisterTaskDefinitionInput;
use hail_model::ecs::validate::validate_task_definition;

const TASK_DEFINITION: &str = include_str!("../task-definition.json");

#[test]
fn the_task_definition_registers_and_runs_the_service() {
    let input: RegisterTaskDefinitionInput =
        decode(TASK_DEFINITION).unwrap_or_else(|e| panic!("task-definition.json: {e}"));
    validate_task_definition(&input).unwrap_or_else(|e| panic!("task-definition.json: {e:?}"));

    let json: serde_json::Value = serde_json::from_str(TASK_DEFINITION).unwrap();
    assert_eq!(json["family"], "bean-counter-service-task");
    assert_eq!(json["networkMode"], "awsvpc");
    assert_eq!(json["requiresCompatibilities"][0], "FARGATE");
    assert_eq!(
        json["taskRoleArn"],
        "arn:aws:iam::000000000000:role/bean-counter-task-role"
    );
    let container = &json["containerDefinitions"][0];
    assert_eq!(container["name"], "bean-counter-container");
    assert_eq!(container["portMappings"][0]["containerPort"], 8080);
    assert_eq!(container["logConfiguration"]["logDriver"], "awslogs");
    // The image holds the binary and nothing else: the health check is
    // the binary itself, at the path build-image.sh puts it.
    assert_eq!(
        container["healthCheck"]["command"],
        serde_json::json!(["CMD", "/bean-counter", "healthcheck"])
    );
    let env = container["environment"].as_array().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
    };
    assert!(value("BUCKET").is_some_and(|b| !b.is_empty()));
    assert_eq!(value("PORT"), Some("8080"));
}
