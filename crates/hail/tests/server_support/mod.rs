//! Shared by the `hail server` end-to-end tests: the real binary on a
//! loopback port, the credentials `hail env` prints, and the real `aws` CLI
//! pointed at it.
#![allow(dead_code)]

#[path = "../../../hail-api/tests/common/mod.rs"]
pub mod common;
#[path = "../support/host.rs"]
pub mod host;
#[path = "../../../hail-runtime/tests/common/mod.rs"]
pub mod images;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub const HAIL: &str = env!("CARGO_BIN_EXE_hail");

/// A running `hail server`, killed if the test ends without stopping it.
pub struct Server {
    child: Option<Child>,
    pub endpoint: String,
    pub host: host::HostNames,
    data_dir: std::path::PathBuf,
    /// Whether dropping the server releases its host resources (tasks
    /// included); false while a test restarts it on the same data dir.
    release_on_drop: bool,
}

impl Server {
    /// A server with host resources of its own, released when it drops.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_on(data_dir, host::HostNames::unique(1))
    }

    /// A server on given host resources (a restart passes the same ones).
    pub fn start_on(data_dir: &Path, host: host::HostNames) -> Server {
        Self::start_with(data_dir, host, &[])
    }

    /// A server with extra `hail server` flags.
    pub fn start_with(data_dir: &Path, host: host::HostNames, extra: &[&str]) -> Server {
        // A port free a moment ago can be taken before the server binds it
        // (tests run side by side and bind ephemeral ports of their own):
        // then the server exits saying so, and another port is tried.
        for _ in 0..5 {
            if let Some(server) = Self::try_start(data_dir, host.clone(), extra) {
                return server;
            }
        }
        panic!("hail server found no free port in five tries");
    }

    /// Starts a server on a port free now; None when the port was taken
    /// before the server could bind it.
    fn try_start(data_dir: &Path, host: host::HostNames, extra: &[&str]) -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(HAIL)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &listen, "--metadata-port", "0"])
            .args(extra)
            .args(host.flags())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hail server");
        let mut server = Server {
            child: Some(child),
            endpoint: format!("http://{listen}"),
            host,
            data_dir: data_dir.to_owned(),
            release_on_drop: true,
        };
        // Accepting connections is not enough: another process may hold the
        // port. The server writes its credentials before it listens, and is
        // still running once it does.
        let credentials = data_dir.join("credentials");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(credentials.exists() && TcpStream::connect(&listen).is_ok()) {
            let child = server.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                let out = server.child.take().unwrap().wait_with_output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                if stderr.contains("Address already in use") {
                    server.release_on_drop = false;
                    return None;
                }
                panic!("hail server exited with {status}: {stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "hail server did not listen on {listen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Sends `signal`, keeps the host resources and tasks for the next
    /// server on this data dir (see [`Server::start_on`]), and returns the
    /// exit status, stdout and those resources.
    pub fn stop_keeping_host(
        mut self,
        signal: Signal,
    ) -> (std::process::ExitStatus, String, host::HostNames) {
        self.release_on_drop = false;
        let host = self.host.clone();
        let (status, stdout) = self.stop(signal);
        (status, stdout, host)
    }

    /// Sends `signal` and returns the exit status and stdout.
    pub fn stop(mut self, signal: Signal) -> (std::process::ExitStatus, String) {
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
        if self.release_on_drop {
            self.host.release(&self.data_dir);
        }
    }
}

/// The variables `hail env` exports.
pub fn hail_env(data_dir: &Path, endpoint: &str) -> HashMap<String, String> {
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

pub struct Aws {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Aws {
    pub fn json(&self) -> Value {
        assert!(self.success, "aws failed: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap()
    }
}

/// Runs `aws` with exactly the environment `hail env` printed; the endpoint
/// is also passed as a flag so that no request can ever leave loopback.
pub fn aws(env: &HashMap<String, String>, args: &[&str]) -> Aws {
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

/// Imports a busybox root filesystem as `name` into `data_dir` with the CLI
/// (the server may be running); the tarball is written beside the data dir
/// once.
pub fn import_busybox(data_dir: &Path, name: &str) {
    let tar = data_dir
        .parent()
        .expect("a data dir inside the test's scratch dir")
        .join("busybox.tar");
    if !tar.exists() {
        images::write_busybox_rootfs_tar(&tar);
    }
    let out = Command::new(HAIL)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["image", "import", name])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hail image import {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
