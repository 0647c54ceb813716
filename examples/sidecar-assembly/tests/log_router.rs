//! The `log-router` binary on loopback, driven by the Forward client.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{client, get, parse_exposition, value, Sidecar};
use rmpv::Value;
use sidecar_assembly::forward::client::ForwardClient;
use sidecar_assembly::forward::{record, Entry, EventTime, Frame, Mode, Record};

const LOG_ROUTER: &str = env!("CARGO_BIN_EXE_log-router");
const TASK: &str = "8c1d8c3b9f5e4a1f9b4c2d7e6a5b4c3d";

struct Running {
    sidecar: Sidecar,
    forward: SocketAddr,
    metrics: SocketAddr,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(extra: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("records.jsonl");
    let out = output.to_str().unwrap().to_owned();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--output",
        &out,
    ];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::start(LOG_ROUTER, &args, &[]);
    let forward = sidecar.addr_after("Forward on");
    let metrics = sidecar.addr_after("metrics on");
    Running {
        sidecar,
        forward,
        metrics,
        output,
        _dir: dir,
    }
}

/// A record as FireLens makes it.
fn firelens(container: &str, source: &str, log: &str) -> Record {
    record([
        ("log", log),
        ("source", source),
        ("container_name", container),
        ("ecs_cluster", "default"),
        (
            "ecs_task_arn",
            "arn:aws:ecs:us-east-1:000000000000:task/default/8c1d8c3b9f5e4a1f9b4c2d7e6a5b4c3d",
        ),
        ("ecs_task_definition", "sidecar-assembly:1"),
    ])
}

fn tag(container: &str) -> String {
    format!("{container}-firelens-{TASK}")
}

fn frame(container: &str, mode: Mode, logs: &[(&str, &str)], chunk: Option<&str>) -> Frame {
    let entries = logs
        .iter()
        .enumerate()
        .map(|(i, (source, log))| Entry {
            time: EventTime {
                secs: 1_700_000_000 + i as i64,
                nanos: 123_456_789,
            },
            record: firelens(container, source, log),
        })
        .collect();
    Frame {
        tag: tag(container),
        mode,
        entries,
        chunk: chunk.map(str::to_owned),
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

async fn samples(addr: SocketAddr) -> Vec<common::Sample> {
    let (_, _, text) = get(&client(), &format!("http://{addr}/metrics"), &[]).await;
    parse_exposition(&text)
}

#[tokio::test]
async fn all_three_modes_are_written_as_json_lines_and_chunks_acked() {
    let router = start(&[]);
    let mut sender = ForwardClient::connect(router.forward).await.unwrap();

    // Message mode with an EventTime, no chunk: no ack expected.
    sender
        .send(&frame(
            "app",
            Mode::Message,
            &[("stdout", "listening on 8080")],
            None,
        ))
        .await
        .unwrap();
    // Forward mode with integer times, acked.
    let mut forward = frame(
        "ambassador",
        Mode::Forward,
        &[("stdout", "GET / 200"), ("stderr", "warning: slow")],
        Some("Y2h1bmstMQ=="),
    );
    forward.entries[1].time = EventTime {
        secs: 1_700_000_005,
        nanos: 0,
    };
    sender.send(&forward).await.unwrap();
    // PackedForward, acked.
    sender
        .send(&frame(
            "config",
            Mode::PackedForward,
            &[("stdout", "wrote /config/app.json"), ("stdout", "done")],
            Some("chunk-2"),
        ))
        .await
        .unwrap();
    // The records of an acknowledged chunk are already in the file.
    let file = std::fs::read_to_string(&router.output).unwrap();
    let lines = json_lines(&file);
    assert_eq!(lines.len(), 5, "{file}");
    assert_eq!(lines[0]["log"], "listening on 8080");
    assert_eq!(lines[0]["tag"], tag("app"));
    assert_eq!(lines[0]["time"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(lines[0]["container_name"], "app");
    assert_eq!(lines[0]["source"], "stdout");
    assert_eq!(lines[0]["ecs_cluster"], "default");
    assert_eq!(lines[0]["ecs_task_definition"], "sidecar-assembly:1");
    assert!(lines[0]["ecs_task_arn"].as_str().unwrap().ends_with(TASK));
    assert_eq!(lines[2]["source"], "stderr");
    assert_eq!(lines[2]["time"], "2023-11-14T22:13:25.000000000Z");
    assert_eq!(lines[4]["log"], "done");
    // The record's own order follows time and tag.
    let first = file.lines().next().unwrap();
    assert!(
        first.starts_with("{\"time\":\"2023-11-14T22:13:20.123456789Z\",\"tag\":\"app-firelens-")
    );
    assert!(first.contains(
        "\"log\":\"listening on 8080\",\"source\":\"stdout\",\"container_name\":\"app\""
    ));

    // Standard output has the same lines.
    let stdout = router.sidecar.stdout_lines(5, Duration::from_secs(5));
    assert_eq!(stdout.join("\n") + "\n", file);

    // A str-typed PackedForward stream and a float time are accepted too.
    let mut stream = Vec::new();
    rmpv::encode::write_value(
        &mut stream,
        &Value::Array(vec![
            Value::F64(1_700_000_000.5),
            Value::Map(firelens("app", "stdout", "float")),
        ]),
    )
    .unwrap();
    // [tag, str(stream), {"chunk": "c3"}], the str header written by hand
    // since the stream is not UTF-8.
    let mut bytes = vec![0x93];
    rmpv::encode::write_value(&mut bytes, &Value::from(tag("app").as_str())).unwrap();
    bytes.push(0xd9);
    bytes.push(u8::try_from(stream.len()).unwrap());
    bytes.extend_from_slice(&stream);
    let option = Value::Map(vec![(Value::from("chunk"), Value::from("c3"))]);
    rmpv::encode::write_value(&mut bytes, &option).unwrap();
    // Split across writes: the router waits for the whole frame.
    for piece in bytes.chunks(3) {
        sender.send_raw(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sender.wait_ack("c3").await.unwrap();
    let lines = json_lines(&std::fs::read_to_string(&router.output).unwrap());
    assert_eq!(lines[5]["log"], "float");
    assert_eq!(lines[5]["time"], "2023-11-14T22:13:20.500000000Z");

    let s = samples(router.metrics).await;
    let records = |c: &str, src: &str| {
        value(
            &s,
            "log_router_records_total",
            &[("container", c), ("source", src)],
        )
    };
    assert_eq!(records("app", "stdout"), Some(2.0));
    assert_eq!(records("ambassador", "stdout"), Some(1.0));
    assert_eq!(records("ambassador", "stderr"), Some(1.0));
    assert_eq!(records("config", "stdout"), Some(2.0));
    let bytes = value(
        &s,
        "log_router_log_bytes_total",
        &[("container", "config"), ("source", "stdout")],
    );
    assert_eq!(bytes, Some(("wrote /config/app.json".len() + 4) as f64));
    let frames = |m: &str| value(&s, "log_router_frames_total", &[("mode", m)]);
    assert_eq!(frames("message"), Some(1.0));
    assert_eq!(frames("forward"), Some(1.0));
    assert_eq!(frames("packed_forward"), Some(2.0));
    assert_eq!(value(&s, "log_router_acks_total", &[]), Some(3.0));
    assert_eq!(value(&s, "log_router_connections", &[]), Some(1.0));
    assert_eq!(
        value(&s, "log_router_rejected_frames_total", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn garbage_closes_its_connection_and_the_router_goes_on() {
    let router = start(&["--max-frame-bytes", "4096"]);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("a byte that is not MessagePack", vec![0xc1]),
        ("a map instead of a frame", vec![0x81, 0xa1, b'a', 0x01]),
        ("a tag that is not a string", vec![0x93, 0x01, 0x02, 0x80]),
        (
            "a record that is not a map",
            vec![0x93, 0xa1, b't', 0x01, 0x02],
        ),
        (
            "HTTP instead of Forward",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("a frame over the limit", {
            let mut v = vec![0x92, 0xa1, b't', 0xc6];
            v.extend_from_slice(&8192u32.to_be_bytes());
            v
        }),
        ("a gzip-compressed frame", {
            let f = Value::Array(vec![
                Value::from("t"),
                Value::Binary(vec![0x1f, 0x8b]),
                Value::Map(vec![(Value::from("compressed"), Value::from("gzip"))]),
            ]);
            let mut v = Vec::new();
            rmpv::encode::write_value(&mut v, &f).unwrap();
            v
        }),
        (
            "an EventTime of 7 bytes",
            vec![0x93, 0xa1, b't', 0xc7, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0x80],
        ),
    ];
    for (what, bytes) in &garbage {
        let mut sender = ForwardClient::connect(router.forward).await.unwrap();
        sender.send_raw(bytes).await.unwrap();
        assert!(
            sender.closed_by_peer(Duration::from_secs(5)).await,
            "{what}: the connection stays open"
        );
    }
    // A frame cut short by the sender is reported too.
    let mut sender = ForwardClient::connect(router.forward).await.unwrap();
    sender.send_raw(&[0x93, 0xa1]).await.unwrap();
    drop(sender);

    // The router still serves, on a new connection.
    let mut sender = ForwardClient::connect(router.forward).await.unwrap();
    sender
        .send(&frame(
            "app",
            Mode::Forward,
            &[("stdout", "still here")],
            Some("ok"),
        ))
        .await
        .unwrap();
    let lines = json_lines(&std::fs::read_to_string(&router.output).unwrap());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["log"], "still here");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = samples(router.metrics).await;
    assert_eq!(
        value(&s, "log_router_rejected_frames_total", &[]),
        Some(garbage.len() as f64 + 1.0)
    );
    let stderr = router.sidecar.stderr.lock().unwrap().clone();
    let closed: Vec<&String> = stderr.iter().filter(|l| l.contains(" closed: ")).collect();
    assert_eq!(closed.len(), garbage.len() + 1, "{stderr:#?}");
    assert!(
        closed
            .iter()
            .any(|l| l.ends_with("frame exceeds 4096 bytes")),
        "{closed:#?}"
    );
    assert!(
        closed
            .iter()
            .any(|l| l.ends_with("byte 0xc1 is not MessagePack")),
        "{closed:#?}"
    );
    assert!(
        closed
            .iter()
            .any(|l| l.ends_with("compressed frames (gzip) are not supported")),
        "{closed:#?}"
    );
}

#[tokio::test]
async fn big_frames_many_senders_and_tag_matching() {
    let router = start(&["--match", "app-*,ambassador-*", "--no-stdout"]);
    let logs: Vec<(&str, String)> = (0..5000)
        .map(|i| ("stdout", format!("line {i} {}", "x".repeat(100))))
        .collect();
    let logs: Vec<(&str, &str)> = logs.iter().map(|(s, l)| (*s, l.as_str())).collect();
    let mut tasks = Vec::new();
    for (i, container) in ["app", "ambassador", "config"].into_iter().enumerate() {
        let addr = router.forward;
        let f = frame(
            container,
            if i == 1 {
                Mode::PackedForward
            } else {
                Mode::Forward
            },
            &logs,
            Some(container),
        );
        tasks.push(tokio::spawn(async move {
            let mut sender = ForwardClient::connect(addr).await.unwrap();
            sender.send(&f).await.unwrap();
            sender.send(&f).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let file = std::fs::read_to_string(&router.output).unwrap();
    assert_eq!(file.lines().count(), 2 * 2 * 5000);
    // Frames are written whole: no line of one frame between two of another.
    let containers: Vec<String> = json_lines(&file)
        .iter()
        .map(|l| l["container_name"].as_str().unwrap().to_owned())
        .collect();
    for run in containers.chunks(5000) {
        assert!(run.iter().all(|c| c == &run[0]));
    }
    let s = samples(router.metrics).await;
    assert_eq!(
        value(&s, "log_router_unmatched_records_total", &[]),
        Some(10_000.0)
    );
    assert_eq!(
        value(
            &s,
            "log_router_records_total",
            &[("container", "app"), ("source", "stdout")]
        ),
        Some(10_000.0)
    );
    assert_eq!(value(&s, "log_router_acks_total", &[]), Some(6.0));
}

#[tokio::test]
async fn health_and_a_clean_stop() {
    let mut router = start(&[]);
    let metrics = router.metrics.to_string();
    let ok = tokio::process::Command::new(LOG_ROUTER)
        .args(["--metrics", &metrics, "healthcheck"])
        .status()
        .await
        .unwrap();
    assert!(ok.success());
    // A sender still connected delays the stop until it leaves.
    let mut sender = ForwardClient::connect(router.forward).await.unwrap();
    router.sidecar.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(router.sidecar.child.try_wait().unwrap().is_none());
    sender
        .send(&frame(
            "app",
            Mode::Message,
            &[("stdout", "last words")],
            Some("last"),
        ))
        .await
        .unwrap();
    drop(sender);
    let status = tokio::task::spawn_blocking(move || {
        let status = router.sidecar.wait_exit(Duration::from_secs(10));
        let lines = std::fs::read_to_string(&router.output).unwrap();
        (status, lines)
    })
    .await
    .unwrap();
    assert!(status.0.is_some_and(|s| s.success()), "{:?}", status.0);
    assert!(status.1.contains("last words"));
}
