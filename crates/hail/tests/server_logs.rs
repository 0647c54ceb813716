//! CloudWatch Logs through `hail server` with the real `aws` CLI: groups,
//! streams, events with paging, filtering, `aws logs tail`, tags, and the
//! errors CloudWatch gives.

mod server_support;

use std::collections::HashMap;

use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Server};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn fails(env: &HashMap<String, String>, args: &[&str], code: &str) {
    let out = aws(env, args);
    assert!(!out.success, "{args:?} succeeded: {}", out.stdout);
    assert!(
        out.stderr.contains(&format!("({code})")),
        "{args:?}: expected {code}: {}",
        out.stderr
    );
}

#[test]
fn aws_cli_writes_reads_filters_and_tails_log_events() {
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    let group = "/hail/test";

    let ok = |args: &[&str]| {
        let out = aws(&env, args);
        assert!(out.success, "{args:?}: {}", out.stderr);
        out.stdout
    };
    ok(&[
        "logs",
        "create-log-group",
        "--log-group-name",
        group,
        "--tags",
        "team=video",
    ]);
    fails(
        &env,
        &["logs", "create-log-group", "--log-group-name", group],
        "ResourceAlreadyExistsException",
    );
    fails(
        &env,
        &["logs", "create-log-group", "--log-group-name", "bad name!"],
        "InvalidParameterException",
    );
    ok(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        group,
        "--log-stream-name",
        "web/1",
    ]);
    ok(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        group,
        "--log-stream-name",
        "web/2",
    ]);

    // 25 events in two streams, a second apart.
    let start = now_ms() - 60_000;
    for (stream, parity) in [("web/1", 0), ("web/2", 1)] {
        let events: Vec<Value> = (0..25)
            .filter(|i| i % 2 == parity)
            .map(|i| {
                let level = if i % 5 == 0 { "ERROR" } else { "INFO" };
                json!({"timestamp": start + i * 1000, "message": format!("{level} request {i}")})
            })
            .collect();
        let file = tmp.path().join(format!("events-{parity}.json"));
        std::fs::write(&file, Value::from(events).to_string()).unwrap();
        let out: Value = serde_json::from_str(&ok(&[
            "logs",
            "put-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            stream,
            "--log-events",
            &format!("file://{}", file.display()),
        ]))
        .unwrap();
        assert!(out["nextSequenceToken"].is_string(), "{out}");
    }

    // Paged reads, 4 at a time, following the forward token until it comes
    // back unchanged (how clients know they reached the end).
    let mut messages: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut args = vec![
            "logs",
            "get-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            "web/1",
            "--start-from-head",
            "--limit",
            "4",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let page: Value = serde_json::from_str(&ok(&args)).unwrap();
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 4);
        messages.extend(
            events
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_owned()),
        );
        let next = page["nextForwardToken"].as_str().unwrap().to_owned();
        if token.as_deref() == Some(next.as_str()) {
            assert!(events.is_empty());
            break;
        }
        token = Some(next);
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("{} request {i}", if i % 5 == 0 { "ERROR" } else { "INFO" }))
        .collect();
    assert_eq!(messages, expected);

    let streams: Value = serde_json::from_str(&ok(&[
        "logs",
        "describe-log-streams",
        "--log-group-name",
        group,
        "--order-by",
        "LastEventTime",
        "--descending",
    ]))
    .unwrap();
    let names: Vec<&str> = streams["logStreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logStreamName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web/1", "web/2"], "web/1 holds the last event (24)");
    assert_eq!(
        streams["logStreams"][0]["lastEventTimestamp"],
        start + 24_000
    );

    // Filtering across streams, interleaved by time.
    let filtered: Value = serde_json::from_str(&ok(&[
        "logs",
        "filter-log-events",
        "--log-group-name",
        group,
        "--filter-pattern",
        "ERROR -\"request 10\"",
    ]))
    .unwrap();
    let hits: Vec<&str> = filtered["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        hits,
        [
            "ERROR request 0",
            "ERROR request 5",
            "ERROR request 15",
            "ERROR request 20"
        ]
    );
    assert_eq!(filtered["events"][1]["logStreamName"], "web/2");

    // What `aws logs tail --since 1h` (AWS CLI v2) does: FilterLogEvents from
    // a start time, interleaved, following nextToken page by page — here
    // through boto3's paginator, 7 events a page.
    let script = format!(
        r#"
import json, os, time, boto3
logs = boto3.client("logs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
pages = logs.get_paginator("filter_log_events").paginate(
    logGroupName="{group}", startTime=int(time.time() * 1000) - 3600 * 1000,
    interleaved=True, PaginationConfig={{"PageSize": 7}})
print(json.dumps([e["message"] for page in pages for e in page["events"]]))
"#
    );
    let out = common::python_command(&env["AWS_DEFAULT_REGION"])
        .args(["-c", &script])
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tailed: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let in_time_order: Vec<String> = (0..25)
        .map(|i| format!("{} request {i}", if i % 5 == 0 { "ERROR" } else { "INFO" }))
        .collect();
    assert_eq!(tailed, in_time_order);

    let groups: Value = serde_json::from_str(&ok(&[
        "logs",
        "describe-log-groups",
        "--log-group-name-prefix",
        "/hail",
    ]))
    .unwrap();
    assert_eq!(groups["logGroups"][0]["logGroupName"], group);
    assert!(groups["logGroups"][0]["storedBytes"].as_i64().unwrap() > 0);
    let arn = groups["logGroups"][0]["logGroupArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let tags: Value = serde_json::from_str(&ok(&[
        "logs",
        "list-tags-for-resource",
        "--resource-arn",
        &arn,
    ]))
    .unwrap();
    assert_eq!(tags["tags"], json!({"team": "video"}));

    ok(&[
        "logs",
        "put-retention-policy",
        "--log-group-name",
        group,
        "--retention-in-days",
        "7",
    ]);
    fails(
        &env,
        &[
            "logs",
            "put-retention-policy",
            "--log-group-name",
            group,
            "--retention-in-days",
            "8",
        ],
        "InvalidParameterException",
    );
    fails(
        &env,
        &[
            "logs",
            "get-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            "nope",
        ],
        "ResourceNotFoundException",
    );
    ok(&["logs", "delete-log-group", "--log-group-name", group]);
    fails(
        &env,
        &["logs", "describe-log-streams", "--log-group-name", group],
        "ResourceNotFoundException",
    );
}
