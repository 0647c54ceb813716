use serde_json::{json, Value};

use super::*;
use crate::ecs::decode::decode;

const TOM_THUMB: &str = include_str!("../../../testdata/tom-thumb-task.json");

fn tom_thumb() -> Value {
    serde_json::from_str(TOM_THUMB).unwrap()
}

/// Validates tom-thumb after `change`.
fn check(change: impl FnOnce(&mut Value)) -> Result<TaskSize, ValidationError> {
    let mut doc = tom_thumb();
    change(&mut doc);
    let input: RegisterTaskDefinitionInput = decode(&doc.to_string()).unwrap();
    validate_task_definition(&input)
}

/// Validates after `change`, expecting failure at `field` with a message
/// containing `needle`.
#[track_caller]
fn fails(field: &str, needle: &str, change: impl FnOnce(&mut Value)) {
    let err = check(change).expect_err("validation should fail");
    assert_eq!(err.field, field, "{err}");
    assert!(err.message.contains(needle), "{err:?} lacks {needle:?}");
}

fn container(doc: &mut Value) -> &mut Value {
    &mut doc["containerDefinitions"][0]
}

fn side(name: &str) -> Value {
    json!({"name": name, "image": "busybox", "essential": false})
}

#[test]
fn tom_thumb_is_valid() {
    let size = check(|_| {}).unwrap();
    assert_eq!(
        size,
        TaskSize {
            cpu: Some(256),
            memory: Some(1024)
        }
    );
}

#[test]
fn fargate_combinations() {
    let valid = [
        (256, 512),
        (256, 1024),
        (256, 2048),
        (512, 1024),
        (512, 2048),
        (512, 4096),
        (1024, 2048),
        (1024, 5120),
        (1024, 8192),
        (2048, 4096),
        (2048, 16_384),
        (4096, 8192),
        (4096, 30_720),
        (8192, 16_384),
        (8192, 20_480),
        (8192, 61_440),
        (16_384, 32_768),
        (16_384, 40_960),
        (16_384, 122_880),
    ];
    for (cpu, memory) in valid {
        let size = check(|d| {
            d["cpu"] = json!(cpu.to_string());
            d["memory"] = json!(memory.to_string());
        })
        .unwrap_or_else(|e| panic!("{cpu}/{memory}: {e}"));
        assert_eq!(
            size,
            TaskSize {
                cpu: Some(cpu),
                memory: Some(memory)
            }
        );
    }
    let invalid = [
        (256, 256),
        (256, 3072),
        (256, 4096),
        (512, 512),
        (512, 5120),
        (1024, 1024),
        (1024, 9216),
        (2048, 17_408),
        (4096, 31_744),
        (8192, 17_408),
        (8192, 65_536),
        (16_384, 36_864),
        (16_384, 131_072),
        (128, 512),
        (3072, 8192),
    ];
    for (cpu, memory) in invalid {
        let err = check(|d| {
            d["cpu"] = json!(cpu.to_string());
            d["memory"] = json!(memory.to_string());
        })
        .expect_err(&format!("{cpu}/{memory} should be refused"));
        assert_eq!(err.code, ErrorCode::ClientException);
        assert_eq!(
            err.message,
            format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. \
                 See the Amazon ECS documentation for the valid values."
            )
        );
    }
    // The unit forms resolve before the check.
    let size = check(|d| {
        d["cpu"] = json!("1 vCPU");
        d["memory"] = json!("2 GB");
    })
    .unwrap();
    assert_eq!(
        size,
        TaskSize {
            cpu: Some(1024),
            memory: Some(2048)
        }
    );
    fails("memory", "given values: 256 CPU, 4096 memory.", |d| {
        d["cpu"] = json!("0.25 vCPU");
        d["memory"] = json!("4 GB");
    });
    assert_eq!(fargate_memory_choices(256), Some(vec![512, 1024, 2048]));
    assert_eq!(fargate_memory_choices(8192).map(|m| m.len()), Some(12));
    assert_eq!(fargate_memory_choices(16_384).map(|m| m.len()), Some(12));
    assert_eq!(fargate_memory_choices(300), None);
}

#[test]
fn fargate_requires_awsvpc_and_task_size() {
    fails("networkMode", "Fargate only supports network mode", |d| {
        d["networkMode"] = json!("bridge");
    });
    fails("networkMode", "awsvpc", |d| {
        d.as_object_mut().unwrap().remove("networkMode");
    });
    fails(
        "cpu",
        "Fargate requires that 'cpu' be defined at the task level.",
        |d| {
            d.as_object_mut().unwrap().remove("cpu");
        },
    );
    fails(
        "memory",
        "Fargate requires that 'memory' be defined at the task level.",
        |d| {
            d.as_object_mut().unwrap().remove("memory");
        },
    );
    fails("executionRoleArn", "execution role ARN", |d| {
        d.as_object_mut().unwrap().remove("executionRoleArn");
    });
}

#[test]
fn family_rules() {
    fails("family", "not valid", |d| d["family"] = json!("tom thumb"));
    fails("family", "not valid", |d| d["family"] = json!(""));
    fails("family", "not valid", |d| {
        d["family"] = json!("a".repeat(256))
    });
    fails("family", "not valid", |d| d["family"] = json!("tom.thumb"));
    check(|d| d["family"] = json!("A_b-9".repeat(51))).unwrap();
}

#[test]
fn container_count_rules() {
    fails("containerDefinitions", "at least one", |d| {
        d["containerDefinitions"] = json!([]);
    });
    fails("containerDefinitions", "at most 10", |d| {
        let list = d["containerDefinitions"].as_array_mut().unwrap();
        for i in 0..10 {
            list.push(side(&format!("side-{i}")));
        }
    });
}

#[test]
fn container_name_rules() {
    fails("containerDefinitions[0].name", "required", |d| {
        container(d).as_object_mut().unwrap().remove("name");
    });
    fails("containerDefinitions[0].name", "not valid", |d| {
        container(d)["name"] = json!("tom/thumb");
    });
    fails("containerDefinitions[1].name", "more than one", |d| {
        d["containerDefinitions"]
            .as_array_mut()
            .unwrap()
            .push(side("tom-thumb-container"));
    });
}

#[test]
fn image_is_required() {
    fails("containerDefinitions[0].image", "image is required", |d| {
        container(d).as_object_mut().unwrap().remove("image");
    });
    fails("containerDefinitions[0].image", "image is required", |d| {
        container(d)["image"] = json!("  ");
    });
}

#[test]
fn one_container_must_be_essential() {
    fails("containerDefinitions", "essential", |d| {
        container(d)["essential"] = json!(false);
    });
    // Essential defaults to true.
    check(|d| {
        container(d).as_object_mut().unwrap().remove("essential");
    })
    .unwrap();
}

#[test]
fn container_memory_rules() {
    fails(
        "containerDefinitions[0].memory",
        "below the minimum 6 MiB",
        |d| {
            container(d)["memory"] = json!(5);
        },
    );
    fails(
        "containerDefinitions[0].memoryReservation",
        "below the minimum 6 MiB",
        |d| {
            container(d)["memoryReservation"] = json!(0);
        },
    );
    fails(
        "containerDefinitions[0].memoryReservation",
        "greater than memory 256",
        |d| {
            container(d)["memory"] = json!(256);
            container(d)["memoryReservation"] = json!(512);
        },
    );
    fails(
        "containerDefinitions[0].memory",
        "The 'memory' setting for container 'tom-thumb-container' is greater than for the task.",
        |d| container(d)["memory"] = json!(2048),
    );
    fails("containerDefinitions", "reserve 1536 MiB", |d| {
        container(d)["memory"] = json!(768);
        let mut s = side("side");
        s["memoryReservation"] = json!(768);
        d["containerDefinitions"].as_array_mut().unwrap().push(s);
    });
    // Reservations are what must fit: two hard limits of 768 with
    // reservations of 256 fit in 1024.
    check(|d| {
        container(d)["memory"] = json!(768);
        container(d)["memoryReservation"] = json!(256);
        let mut s = side("side");
        s["memory"] = json!(768);
        s["memoryReservation"] = json!(256);
        d["containerDefinitions"].as_array_mut().unwrap().push(s);
    })
    .unwrap();
}

#[test]
fn without_task_memory_each_container_needs_a_limit() {
    let ec2 = |d: &mut Value| {
        let o = d.as_object_mut().unwrap();
        o.remove("requiresCompatibilities");
        o.remove("memory");
        o.remove("cpu");
    };
    fails(
        "containerDefinitions[0].memory",
        "At least one of 'memory' or 'memoryReservation' must be specified.",
        ec2,
    );
    check(|d| {
        ec2(d);
        container(d)["memoryReservation"] = json!(128);
    })
    .unwrap();
}

#[test]
fn task_cpu_rules() {
    fails("containerDefinitions", "cpu adds up to 384 units", |d| {
        container(d)["cpu"] = json!(128);
        let mut s = side("side");
        s["cpu"] = json!(256);
        d["containerDefinitions"].as_array_mut().unwrap().push(s);
    });
    fails("cpu", "outside the supported range", |d| {
        d.as_object_mut().unwrap().remove("requiresCompatibilities");
        d["cpu"] = json!("64");
    });
    fails("cpu", "not valid", |d| d["cpu"] = json!("a lot"));
    fails("memory", "not valid", |d| d["memory"] = json!("1 TB"));
}

#[test]
fn dependency_rules() {
    let with_side = |d: &mut Value, condition: &str, side_essential: bool| {
        let mut s = side("side");
        s["essential"] = json!(side_essential);
        d["containerDefinitions"].as_array_mut().unwrap().push(s);
        container(d)["dependsOn"] = json!([{"containerName": "side", "condition": condition}]);
    };
    check(|d| with_side(d, "START", false)).unwrap();
    check(|d| with_side(d, "SUCCESS", false)).unwrap();
    fails(
        "containerDefinitions[0].dependsOn[0].containerName",
        "\"ghost\"",
        |d| {
            container(d)["dependsOn"] = json!([{"containerName": "ghost", "condition": "START"}]);
        },
    );
    fails(
        "containerDefinitions[0].dependsOn[0].condition",
        "\"STARTED\"",
        |d| with_side(d, "STARTED", false),
    );
    fails(
        "containerDefinitions[0].dependsOn[0].condition",
        "essential container \"side\"",
        |d| with_side(d, "COMPLETE", true),
    );
    fails(
        "containerDefinitions[0].dependsOn[0].condition",
        "has no healthCheck",
        |d| with_side(d, "HEALTHY", false),
    );
    let mut healthy = tom_thumb();
    with_side(&mut healthy, "HEALTHY", false);
    healthy["containerDefinitions"][1]["healthCheck"] = json!({"command": ["CMD", "true"]});
    let input: RegisterTaskDefinitionInput = decode(&healthy.to_string()).unwrap();
    validate_task_definition(&input).unwrap();
}

#[test]
fn dependency_cycles_are_reported() {
    fails(
        "containerDefinitions",
        "cycle: tom-thumb-container -> b -> c -> tom-thumb-container",
        |d| {
            let list = d["containerDefinitions"].as_array_mut().unwrap();
            let mut b = side("b");
            b["dependsOn"] = json!([{"containerName": "c", "condition": "START"}]);
            let mut c = side("c");
            c["dependsOn"] =
                json!([{"containerName": "tom-thumb-container", "condition": "START"}]);
            list.push(b);
            list.push(c);
            container(d)["dependsOn"] = json!([{"containerName": "b", "condition": "START"}]);
        },
    );
    fails(
        "containerDefinitions",
        "cycle: tom-thumb-container -> tom-thumb-container",
        |d| {
            container(d)["dependsOn"] =
                json!([{"containerName": "tom-thumb-container", "condition": "START"}]);
        },
    );
}

#[test]
fn port_mapping_rules() {
    check(|d| {
        container(d)["portMappings"] =
            json!([{"containerPort": 8080, "hostPort": 8080, "protocol": "udp"}]);
    })
    .unwrap();
    fails(
        "containerDefinitions[0].portMappings[0].containerPort",
        "outside 1 to 65535",
        |d| {
            container(d)["portMappings"] = json!([{"containerPort": 0}]);
        },
    );
    fails(
        "containerDefinitions[0].portMappings[0].containerPort",
        "outside 1 to 65535",
        |d| {
            container(d)["portMappings"] = json!([{"containerPort": 65536}]);
        },
    );
    fails(
        "containerDefinitions[0].portMappings[0].containerPort",
        "needs containerPort",
        |d| {
            container(d)["portMappings"] = json!([{"hostPort": 80}]);
        },
    );
    fails(
        "containerDefinitions[0].portMappings[0].protocol",
        "\"sctp\"",
        |d| {
            container(d)["portMappings"] = json!([{"containerPort": 80, "protocol": "sctp"}]);
        },
    );
    fails(
        "containerDefinitions[0].portMappings[0].hostPort",
        "awsvpc",
        |d| {
            container(d)["portMappings"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        },
    );
}

#[test]
fn log_configuration_rules() {
    fails(
        "containerDefinitions[0].logConfiguration.logDriver",
        "\"loki\"",
        |d| {
            container(d)["logConfiguration"] = json!({"logDriver": "loki"});
        },
    );
    fails(
        "containerDefinitions[0].logConfiguration.options",
        "\"awslogs-group\"",
        |d| {
            container(d)["logConfiguration"]["options"]
                .as_object_mut()
                .unwrap()
                .remove("awslogs-group");
        },
    );
    fails(
        "containerDefinitions[0].logConfiguration.options",
        "\"awslogs-region\"",
        |d| {
            container(d)["logConfiguration"]["options"]
                .as_object_mut()
                .unwrap()
                .remove("awslogs-region");
        },
    );
    for driver in LOG_DRIVERS
        .iter()
        .filter(|d| !["awslogs", "awsfirelens"].contains(d))
    {
        check(|d| container(d)["logConfiguration"] = json!({"logDriver": driver})).unwrap();
    }
}

#[test]
fn log_routing_rules() {
    let firelens = json!({"logDriver": "awsfirelens", "options": {"Name": "stdout"}});
    let with_router = |d: &mut Value, kind: &str| {
        let mut router = side("log-router");
        router["firelensConfiguration"] = json!({"type": kind});
        d["containerDefinitions"]
            .as_array_mut()
            .unwrap()
            .push(router);
    };
    check(|d| {
        with_router(d, "fluentbit");
        container(d)["logConfiguration"] = firelens.clone();
    })
    .unwrap();
    fails(
        "containerDefinitions[0].logConfiguration.logDriver",
        "needs a log router container",
        |d| container(d)["logConfiguration"] = firelens.clone(),
    );
    fails(
        "containerDefinitions[1].firelensConfiguration.type",
        "\"vector\"",
        |d| with_router(d, "vector"),
    );
    fails(
        "containerDefinitions[2].firelensConfiguration",
        "only one container",
        |d| {
            with_router(d, "fluentbit");
            with_router(d, "fluentd");
            d["containerDefinitions"][2]["name"] = json!("second-router");
        },
    );
    fails(
        "containerDefinitions[1].logConfiguration.logDriver",
        "cannot send its own output",
        |d| {
            with_router(d, "fluentbit");
            d["containerDefinitions"][1]["logConfiguration"] = firelens.clone();
        },
    );
}

#[test]
fn health_check_rules() {
    let hc = |d: &mut Value, v: Value| container(d)["healthCheck"] = v;
    check(|d| {
        hc(d, json!({"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 120, "retries": 10, "startPeriod": 300}))
    })
    .unwrap();
    fails("containerDefinitions[0].healthCheck.command", "CMD", |d| {
        hc(d, json!({"command": ["curl", "-f", "localhost"]}))
    });
    fails("containerDefinitions[0].healthCheck.command", "CMD", |d| {
        hc(d, json!({"command": ["CMD"]}))
    });
    for (field, bad) in [
        ("interval", 4),
        ("interval", 301),
        ("timeout", 1),
        ("timeout", 121),
        ("retries", 0),
        ("retries", 11),
        ("startPeriod", 301),
    ] {
        let err = check(|d| {
            let mut h = json!({"command": ["CMD", "true"]});
            h[field] = json!(bad);
            hc(d, h);
        })
        .unwrap_err();
        assert_eq!(
            err.field,
            format!("containerDefinitions[0].healthCheck.{field}")
        );
        assert!(
            err.message.contains(&format!("{field} {bad} is outside")),
            "{err}"
        );
    }
}

#[test]
fn ephemeral_storage_rules() {
    for ok in [21, 200] {
        check(|d| d["ephemeralStorage"] = json!({"sizeInGiB": ok})).unwrap();
    }
    for bad in [20, 201] {
        fails("ephemeralStorage.sizeInGiB", "21 to 200 GiB", |d| {
            d["ephemeralStorage"] = json!({"sizeInGiB": bad});
        });
    }
}

#[test]
fn volume_rules() {
    check(|d| {
        d["volumes"] = json!([{"name": "data"}]);
        container(d)["mountPoints"] = json!([{"sourceVolume": "data", "containerPath": "/data"}]);
    })
    .unwrap();
    fails(
        "containerDefinitions[0].mountPoints[0].sourceVolume",
        "\"nope\"",
        |d| {
            container(d)["mountPoints"] =
                json!([{"sourceVolume": "nope", "containerPath": "/data"}]);
        },
    );
    fails(
        "containerDefinitions[0].mountPoints[0].containerPath",
        "absolute",
        |d| {
            d["volumes"] = json!([{"name": "data"}]);
            container(d)["mountPoints"] =
                json!([{"sourceVolume": "data", "containerPath": "data"}]);
        },
    );
    fails("volumes[0].name", "required", |d| {
        d["volumes"] = json!([{}])
    });
    fails(
        "containerDefinitions[0].volumesFrom[0].sourceContainer",
        "\"ghost\"",
        |d| {
            container(d)["volumesFrom"] = json!([{"sourceContainer": "ghost"}]);
        },
    );
    fails(
        "containerDefinitions[0].volumesFrom[0].sourceContainer",
        "not another",
        |d| {
            container(d)["volumesFrom"] = json!([{"sourceContainer": "tom-thumb-container"}]);
        },
    );
}

#[test]
fn other_container_rules() {
    fails(
        "containerDefinitions[0].ulimits[0].softLimit",
        "above its hard limit",
        |d| {
            container(d)["ulimits"] = json!([{"name": "nofile", "softLimit": 10, "hardLimit": 5}]);
        },
    );
    fails(
        "containerDefinitions[0].environment[5].name",
        "no name",
        |d| {
            container(d)["environment"]
                .as_array_mut()
                .unwrap()
                .push(json!({"value": "x"}));
        },
    );
}

#[test]
fn tag_rules_apply_to_definitions() {
    let err = check(|d| d["tags"] = json!([{"key": "aws:owner", "value": "me"}])).unwrap_err();
    assert_eq!(err.field, "tags[0].key");
    assert!(err.message.contains("reserved"));
}

#[test]
fn error_display_names_field() {
    let err = check(|d| container(d)["memory"] = json!(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "containerDefinitions[0].memory: container \"tom-thumb-container\": memory 0 is below \
         the minimum 6 MiB"
    );
    assert_eq!(err.code.as_str(), "ClientException");
}
