//! `hail server` end to end: the real binary on a loopback port, driven by the
//! real `aws` CLI with the credentials `hail env` prints.

#[path = "../../hail-api/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const HAIL: &str = env!("CARGO_BIN_EXE_hail");

/// A running `hail server`, killed if the test ends without stopping it.
struct Server {
    child: Option<Child>,
    endpoint: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        // The port is free now; nothing else on this machine races for
        // ephemeral loopback ports in the moment before the server binds it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(HAIL)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &listen])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hail server");
        let mut server = Server {
            child: Some(child),
            endpoint: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&listen).is_err() {
            let child = server.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                let out = server.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "hail server exited with {status}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "hail server did not listen on {listen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Sends `signal` and returns the exit status and stdout.
    fn stop(mut self, signal: Signal) -> (std::process::ExitStatus, String) {
        kill(self.pid(), signal).unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The variables `hail env` exports.
fn hail_env(data_dir: &Path, endpoint: &str) -> HashMap<String, String> {
    let out = Command::new(HAIL)
        .env_clear()
        .arg("env")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--endpoint", endpoint])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hail env: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let assignment = line
                .strip_prefix("export ")
                .unwrap_or_else(|| panic!("not an export line: {line:?}"));
            let (name, value) = assignment.split_once('=').unwrap();
            (name.to_owned(), value.trim_matches('\'').to_owned())
        })
        .collect()
}

struct Aws {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Aws {
    fn json(&self) -> Value {
        assert!(self.success, "aws failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap()
    }
}

/// Runs `aws` with exactly the environment `hail env` printed; the endpoint
/// is also passed as a flag so that no request can ever leave loopback.
fn aws(env: &HashMap<String, String>, args: &[&str]) -> Aws {
    let region = &env["AWS_DEFAULT_REGION"];
    let mut cmd = common::python_command(region);
    cmd.args(["-m", "awscli"])
        .args(args)
        .args([
            "--endpoint-url",
            &env["AWS_ENDPOINT_URL"],
            "--output",
            "json",
        ])
        .envs(env);
    let out = cmd.output().unwrap();
    Aws {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn aws_cli_manages_clusters_across_restarts() {
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start(&data_dir);
    let env = hail_env(&data_dir, &server.endpoint);
    assert_eq!(env["AWS_ENDPOINT_URL"], server.endpoint);
    assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-1");
    assert!(env["AWS_ACCESS_KEY_ID"].starts_with("AKIA"), "{env:?}");
    assert_eq!(env["AWS_ACCESS_KEY_ID"].len(), 20);
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"].len(), 40);

    let created = aws(&env, &["ecs", "create-cluster", "--cluster-name", "c1"]).json();
    let arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(arn, "arn:aws:ecs:us-east-1:000000000000:cluster/c1");
    assert_eq!(created["cluster"]["status"], "ACTIVE");
    let again = aws(&env, &["ecs", "create-cluster", "--cluster-name", "c1"]).json();
    assert_eq!(again["cluster"]["clusterArn"], arn.as_str());

    let described = aws(
        &env,
        &["ecs", "describe-clusters", "--clusters", "c1", "nope"],
    )
    .json();
    assert_eq!(described["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(described["clusters"][0]["clusterName"], "c1");
    assert_eq!(described["clusters"][0]["status"], "ACTIVE");
    assert_eq!(described["clusters"][0]["runningTasksCount"], 0);
    assert_eq!(described["failures"][0]["reason"], "MISSING");
    assert_eq!(
        described["failures"][0]["arn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/nope"
    );

    aws(&env, &["ecs", "create-cluster", "--cluster-name", "c2"]).json();
    let listed = aws(&env, &["ecs", "list-clusters"]).json();
    assert_eq!(
        listed["clusterArns"],
        serde_json::json!([arn, "arn:aws:ecs:us-east-1:000000000000:cluster/c2"])
    );

    let deleted = aws(&env, &["ecs", "delete-cluster", "--cluster", "c2"]).json();
    assert_eq!(deleted["cluster"]["status"], "INACTIVE");
    let described = aws(&env, &["ecs", "describe-clusters", "--clusters", "c2"]).json();
    assert_eq!(described["clusters"][0]["status"], "INACTIVE");
    let listed = aws(&env, &["ecs", "list-clusters"]).json();
    assert_eq!(listed["clusterArns"], serde_json::json!([arn]));

    let ghost = aws(&env, &["ecs", "delete-cluster", "--cluster", "ghost"]);
    assert!(!ghost.success);
    assert!(
        ghost.stderr.contains("ClusterNotFoundException"),
        "{}",
        ghost.stderr
    );

    let mut wrong = env.clone();
    wrong.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        "wrong/secret/key/000000000000000000000000".into(),
    );
    let denied = aws(&wrong, &["ecs", "list-clusters"]);
    assert!(!denied.success);
    assert!(
        denied.stderr.contains("UnrecognizedClientException")
            || denied.stderr.contains("InvalidSignatureException"),
        "{}",
        denied.stderr
    );

    // A crash loses nothing acknowledged, and the keys stay the same.
    let creds_path = data_dir.join("credentials");
    let creds_before = std::fs::read(&creds_path).unwrap();
    let (status, stdout) = server.stop(Signal::SIGKILL);
    assert!(!status.success());
    assert!(stdout.contains("created root credentials"), "{stdout}");
    assert!(stdout.contains("eval \"$(hail env"), "{stdout}");
    let server = Server::start(&data_dir);
    assert_eq!(std::fs::read(&creds_path).unwrap(), creds_before);
    let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let env2 = hail_env(&data_dir, &server.endpoint);
    assert_eq!(env2["AWS_ACCESS_KEY_ID"], env["AWS_ACCESS_KEY_ID"]);
    assert_eq!(env2["AWS_SECRET_ACCESS_KEY"], env["AWS_SECRET_ACCESS_KEY"]);
    let described = aws(&env2, &["ecs", "describe-clusters", "--clusters", "c1"]).json();
    assert_eq!(described["clusters"][0]["clusterArn"], arn.as_str());
    assert_eq!(described["clusters"][0]["status"], "ACTIVE");

    // SIGTERM is a clean stop.
    let (status, stdout) = server.stop(Signal::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(!stdout.contains("created root credentials"), "{stdout}");
}
