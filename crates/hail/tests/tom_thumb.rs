//! The tom-thumb example end to end: its image built offline by its own
//! script, imported, run by a trigger on `video/` with task credentials for
//! `media/thumbnail/*` — uploads of real videos become thumbnails whose
//! pixels equal the frame ffmpeg takes locally; twenty uploads at once
//! become exactly twenty thumbnails; bad input (not a video, a position past
//! the end, no permission to write) ends the task with a non-zero exit code
//! and one clear log line, and leaves no thumbnail.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Server, HAIL};

const VIDEOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/videos");
const CHAPLIN: &str = "Zulko_moviepy_chaplin.mp4";
const COCKATOO: &str = "imageio_imageio-binaries_cockatoo_yuv420.mp4";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn video(name: &str) -> PathBuf {
    let path = Path::new(VIDEOS).join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// The image archive, built once per test run by the example's own script
/// from the tom-thumb binary of this build.
fn image_archive() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("..");
        let binary = target.join("debug/tom-thumb");
        if !binary.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "tom-thumb"])
                .current_dir(repo())
                .status()
                .unwrap();
            assert!(status.success(), "cargo build -p tom-thumb");
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tom-thumb-image.tar");
        let status = Command::new(repo().join("examples/tom-thumb/build-image.sh"))
            .arg("--output")
            .arg(&out)
            .arg("--binary")
            .arg(&binary)
            .status()
            .unwrap();
        assert!(status.success(), "examples/tom-thumb/build-image.sh failed");
        out
    })
}

struct Stack {
    tmp: tempfile::TempDir,
    data_dir: PathBuf,
    env: HashMap<String, String>,
    _server: Server,
}

impl Stack {
    fn new() -> Stack {
        common::python();
        let image = image_archive();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let server = Server::start_on(&data_dir, server_support::host::HostNames::unique(1));
        let env = hail_env(&data_dir, &server.endpoint);
        let stack = Stack {
            tmp,
            data_dir,
            env,
            _server: server,
        };
        stack.hail(&[
            "image",
            "import",
            "tom-thumb:latest",
            image.to_str().unwrap(),
        ]);
        aws(
            &stack.env,
            &["ecs", "create-cluster", "--cluster-name", "default"],
        )
        .json();
        assert!(aws(&stack.env, &["s3", "mb", "s3://media"]).success);
        stack.hail(&[
            "role",
            "create",
            "tom-thumb-task-role",
            "--allow",
            "s3:PutObject=arn:aws:s3:::media/thumbnail/*",
        ]);
        stack.hail(&[
            "role",
            "create",
            "read-only",
            "--allow",
            "s3:GetObject=arn:aws:s3:::media/*",
        ]);
        let def = repo().join("examples/tom-thumb/task-definition.json");
        aws(
            &stack.env,
            &[
                "ecs",
                "register-task-definition",
                "--cli-input-json",
                &format!("file://{}", def.display()),
            ],
        )
        .json();
        stack
    }

    fn hail(&self, args: &[&str]) -> String {
        let out = Command::new(HAIL)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.env["AWS_ENDPOINT_URL"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hail {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A trigger on `prefix` running tom-thumb, with extra `--env`s.
    fn trigger(&self, name: &str, prefix: &str, extra: &[&str]) {
        let mut args = vec![
            "trigger",
            "create",
            name,
            "--bucket",
            "media",
            "--prefix",
            prefix,
            "--task-definition",
            "tom-thumb-task",
            "--container",
            "tom-thumb-container",
            "--env",
            "INPUT_VIDEO_FILE_URL={{url}}",
            "--env",
            "OUTPUT_THUMBS_FILE_NAME=thumbnail_{{key | basename | stem}}_{{timestamp}}_{{random}}.png",
            "--max-attempts",
            "1",
        ];
        args.extend_from_slice(extra);
        self.hail(&args);
    }

    fn upload(&self, file: &Path, key: &str) {
        let out = aws(
            &self.env,
            &[
                "s3",
                "cp",
                file.to_str().unwrap(),
                &format!("s3://media/{key}"),
                "--only-show-errors",
            ],
        );
        assert!(out.success, "upload {key}: {}", out.stderr);
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let out = aws(
            &self.env,
            &[
                "s3api",
                "list-objects-v2",
                "--bucket",
                "media",
                "--prefix",
                prefix,
            ],
        );
        assert!(out.success, "{}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        v["Contents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["Key"].as_str().unwrap().to_owned())
            .collect()
    }

    fn invocations(&self, trigger: &str) -> Value {
        let out = self.hail(&["trigger", "show", trigger, "--json"]);
        serde_json::from_str(&out).unwrap()
    }
}

fn eventually<T>(secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_or(secs, what, f, String::new)
}

/// Like `eventually`, with `state()` — what the engine says at the deadline —
/// in the failure message.
fn eventually_or<T>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    state: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what} after {secs} s\n{}", state());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The RGB pixels of an image or of the frame at `seek` of a video.
fn rgb(input: &Path, seek: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin"]);
    if let Some(s) = seek {
        cmd.args(["-ss", s]);
    }
    cmd.arg("-i")
        .arg(input)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
    let out = cmd
        .output()
        .expect("ffmpeg (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
    out.stdout
}

fn task_log(stack: &Stack, task_arn: &str) -> String {
    let id = task_arn.rsplit('/').next().unwrap();
    let path = stack
        .data_dir
        .join("tasks")
        .join(id)
        .join("logs")
        .join("tom-thumb-container.log");
    hail_runtime::logs::read_all(&path)
        .map(|r| r.into_iter().map(|r| r.log).collect())
        .unwrap_or_default()
}

#[test]
fn uploaded_videos_become_thumbnails_with_the_frame_ffmpeg_takes() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.trigger("thumbs", "video/", &[]);
    stack.upload(&video(CHAPLIN), "video/Zulko_moviepy_chaplin.mp4");
    let key = eventually(120, "the thumbnail", || {
        stack.keys("thumbnail/").into_iter().next()
    });
    let name = key
        .strip_prefix("thumbnail/thumbnail_Zulko_moviepy_chaplin_")
        .unwrap();
    // <yyyymmdd-hhmmss>_<n>.png
    let (stamp, rest) = name.split_at(15);
    assert!(
        stamp.as_bytes()[8] == b'-' && stamp.bytes().filter(u8::is_ascii_digit).count() == 14,
        "{key}"
    );
    assert!(rest.starts_with('_') && rest.ends_with(".png"), "{key}");

    let png = stack.tmp.path().join("thumb.png");
    assert!(
        aws(
            &stack.env,
            &[
                "s3",
                "cp",
                &format!("s3://media/{key}"),
                png.to_str().unwrap(),
                "--only-show-errors"
            ]
        )
        .success
    );
    // The task definition takes the frame at 00:00:02.
    assert!(
        rgb(&png, None) == rgb(&video(CHAPLIN), Some("00:00:02")),
        "the thumbnail's pixels differ from ffmpeg's frame"
    );
    // The thumbnail is stored before the task exits; its invocation ends
    // when the task has stopped.
    let inv = &eventually(60, "the invocation to end", || {
        let v = stack.invocations("thumbs");
        let inv = v["recentInvocations"][0].clone();
        (inv["status"] == "SUCCEEDED" || inv["status"] == "DEAD").then_some(inv)
    });
    assert_eq!(inv["status"], "SUCCEEDED", "{inv}");
    let log = task_log(&stack, inv["taskArn"].as_str().unwrap());
    assert!(
        log.contains("tom-thumb: wrote s3://media/thumbnail/thumbnail_Zulko_moviepy_chaplin_"),
        "{log}"
    );
}

#[test]
fn twenty_uploads_at_once_make_exactly_twenty_thumbnails() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.trigger("thumbs", "video/", &[]);
    let script = format!(
        r#"
import os, threading, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
body = open({path:?}, "rb").read()
def up(i):
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).put_object(
        Bucket="media", Key="video/clip-%02d.mp4" % i, Body=body)
threads = [threading.Thread(target=up, args=(i,)) for i in range(20)]
for t in threads: t.start()
for t in threads: t.join()
"#,
        path = video(COCKATOO).display().to_string()
    );
    let out = common::python_command(&stack.env["AWS_DEFAULT_REGION"])
        .args(["-c", &script])
        .envs(&stack.env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Three tests of this file share two cores with twenty ffmpeg tasks: the
    // bound is generous, and a timeout shows where the invocations stand.
    let keys = eventually_or(
        600,
        "twenty thumbnails",
        || {
            let k = stack.keys("thumbnail/");
            (k.len() >= 20).then_some(k)
        },
        || {
            format!(
                "thumbnails: {:?}\ntrigger: {:#}",
                stack.keys("thumbnail/"),
                stack.invocations("thumbs")
            )
        },
    );
    // Give a duplicate every chance to appear.
    std::thread::sleep(Duration::from_secs(2));
    let keys_after = stack.keys("thumbnail/");
    assert_eq!(keys_after.len(), 20, "{keys_after:?}");
    assert_eq!(keys.len(), 20);
    for i in 0..20 {
        let stem = format!("thumbnail/thumbnail_clip-{i:02}_");
        assert_eq!(
            keys_after.iter().filter(|k| k.starts_with(&stem)).count(),
            1,
            "{stem}"
        );
    }
    let counts = &stack.invocations("thumbs")["invocationCounts"];
    assert_eq!(counts, &json!({"SUCCEEDED": 20}));
}

#[test]
fn bad_input_stops_the_task_with_one_clear_line_and_no_thumbnail() {
    if !images::containers_available() {
        return;
    }
    let stack = Stack::new();
    stack.trigger("thumbs", "video/", &[]);
    stack.trigger(
        "late",
        "late/",
        &["--env", "POSITION_TIME_DURATION=00:10:00"],
    );
    stack.trigger(
        "denied",
        "denied/",
        &[
            "--task-role-arn",
            "arn:aws:iam::000000000000:role/read-only",
        ],
    );
    let text = stack.tmp.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video, whatever its name says\n").unwrap();
    stack.upload(&text, "video/notes.mp4");
    stack.upload(&video(CHAPLIN), "late/chaplin.mp4");
    stack.upload(&video(CHAPLIN), "denied/chaplin.mp4");

    let mut exit_codes = Vec::new();
    for (trigger, words) in [
        ("thumbs", "not a video"),
        ("late", "past the end"),
        ("denied", "no permission to write"),
    ] {
        let inv = eventually(120, &format!("{trigger} to fail"), || {
            let v = stack.invocations(trigger);
            let inv = v["recentInvocations"][0].clone();
            (inv["status"] == "DEAD").then_some(inv)
        });
        let arn = inv["taskArn"].as_str().unwrap();
        let task = aws(&stack.env, &["ecs", "describe-tasks", "--tasks", arn]).json();
        let task = &task["tasks"][0];
        assert_eq!(task["lastStatus"], "STOPPED");
        let code = task["containers"][0]["exitCode"].as_i64().unwrap();
        assert_ne!(code, 0, "{trigger}: {task}");
        exit_codes.push(code);
        let log = task_log(&stack, arn);
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{trigger}: one line expected: {log}");
        assert!(
            lines[0].starts_with("tom-thumb: error:"),
            "{trigger}: {log}"
        );
        assert!(
            lines[0].to_lowercase().contains(&words.to_lowercase()),
            "{trigger}: {log}"
        );
    }
    exit_codes.dedup();
    assert_eq!(exit_codes.len(), 3, "each failure has its own exit code");
    assert!(
        stack.keys("thumbnail/").is_empty(),
        "a partial thumbnail was written"
    );
}
