//! `task-definition.json` is what `aws ecs register-task-definition
//! --cli-input-json` sends: it must pass the ECS rules Hail applies, and
//! wire the containers as the README describes.

use hail_model::ecs::decode::decode;
use hail_model::ecs::task_definition::RegisterTaskDefinitionInput;
use hail_model::ecs::validate::validate_task_definition;
use serde_json::Value;
use sidecar_assembly::config_init::Config;

const TASK_DEFINITION: &str = include_str!("../task-definition.json");

fn container<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["containerDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env(c: &Value) -> Vec<(String, String)> {
    c["environment"]
        .as_array()
        .map(|vars| {
            vars.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_owned(),
                        e["value"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn depends(c: &Value) -> Vec<(String, String)> {
    c["dependsOn"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|d| {
                    (
                        d["containerName"].as_str().unwrap().to_owned(),
                        d["condition"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ports(c: &Value) -> Vec<u64> {
    c["portMappings"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|m| m["containerPort"].as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_task_definition_registers_and_wires_the_assembly() {
    let input: RegisterTaskDefinitionInput =
        decode(TASK_DEFINITION).unwrap_or_else(|e| panic!("task-definition.json: {e}"));
    validate_task_definition(&input).unwrap_or_else(|e| panic!("task-definition.json: {e:?}"));

    let json: Value = serde_json::from_str(TASK_DEFINITION).unwrap();
    assert_eq!(json["family"], "sidecar-assembly");
    assert_eq!(json["networkMode"], "awsvpc");
    assert_eq!(json["requiresCompatibilities"][0], "FARGATE");
    assert_eq!(
        (json["cpu"].as_str(), json["memory"].as_str()),
        (Some("1024"), Some("2048"))
    );
    assert_eq!(
        json["taskRoleArn"],
        "arn:aws:iam::000000000000:role/sidecar-assembly-task-role"
    );
    assert_eq!(json["volumes"][0]["name"], "config");

    // The router: FireLens, essential, its own output through awslogs.
    let router = container(&json, "log-router");
    assert_eq!(router["firelensConfiguration"]["type"], "fluentbit");
    assert_eq!(router["essential"], true);
    assert_eq!(router["logConfiguration"]["logDriver"], "awslogs");
    assert_eq!(router["command"][0], "/log-router");
    assert!(ports(router).contains(&24224));

    // Everyone else logs through the router, which starts first.
    for name in ["config", "app", "ambassador"] {
        let c = container(&json, name);
        assert_eq!(c["logConfiguration"]["logDriver"], "awsfirelens", "{name}");
    }

    // The init container: not essential, writes the shared volume, its
    // environment is a valid configuration.
    let config = container(&json, "config");
    assert_eq!(config["essential"], false);
    assert_eq!(config["command"][0], "/config-init");
    assert_eq!(config["mountPoints"][0]["sourceVolume"], "config");
    assert_eq!(config["mountPoints"][0]["readOnly"], false);
    let vars = env(config);
    let parsed = Config::from_lookup(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        .expect("the config container's environment is complete");
    assert_eq!(parsed.path.to_str(), Some("/config/app.json"));

    // The application starts only after a successful copy, reads it
    // read-only from where it was written.
    let app = container(&json, "app");
    assert_eq!(app["image"], "hail.examples/bean-counter:latest");
    assert!(depends(app).contains(&("config".into(), "SUCCESS".into())));
    assert_eq!(app["mountPoints"][0]["readOnly"], true);
    assert!(env(app).contains(&("CONFIG_PATH".into(), "/config/app.json".into())));
    assert_eq!(ports(app), [8080]);

    // The ambassador: in front of the app, health-checked by its own binary.
    let amb = container(&json, "ambassador");
    assert_eq!(ports(amb), [9000, 9901]);
    assert!(depends(amb).contains(&("app".into(), "START".into())));
    assert_eq!(
        amb["healthCheck"]["command"],
        serde_json::json!(["CMD", "/ambassador", "healthcheck"])
    );
    let vars = env(amb);
    assert!(vars.contains(&("AMBASSADOR_UPSTREAM".into(), "127.0.0.1:8080".into())));
}
