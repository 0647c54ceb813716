//! Shared helpers for tests that drive hail-api with the real AWS Python
//! clients (botocore, boto3, the `aws` CLI).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub const ACCESS_KEY: &str = "AKIAHAILTEST00000001";
pub const SECRET_KEY: &str = "hail/test/secret+key0000000000000000000000";

/// The hail-api crate's directory, also when another crate's tests include
/// this module by path (its crates are siblings under `crates/`).
fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hail-api")
}

/// The test virtualenv with the pinned clients of `tests/requirements.txt`,
/// built once under `target/` and reused while the requirements file is
/// unchanged (its hash names the directory). Panics when it cannot be built:
/// these tests must never pass by not running.
pub fn python() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(build_venv).as_path()
}

fn build_venv() -> PathBuf {
    let requirements = manifest_dir().join("tests/requirements.txt");
    let contents = std::fs::read(&requirements).expect("read tests/requirements.txt");
    let hash = hex::encode(Sha256::digest(&contents));
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join(format!("hail-api-py-{}", &hash[..16]));
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    // Build beside the final place and rename, so concurrent test binaries
    // never see a half-installed venv. `python -m` is used for every tool, so
    // the console-script shebangs that a rename breaks are never run.
    let staging = root.join(format!(
        "hail-api-py-{}.{}",
        &hash[..16],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&staging)
        .status()
        .expect("run python3 -m venv (python3 is required for these tests)");
    assert!(status.success(), "python3 -m venv failed");
    let status = Command::new(staging.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .expect("run pip install");
    assert!(
        status.success(),
        "pip install -r {} failed",
        requirements.display()
    );
    if std::fs::rename(&staging, &venv).is_err() {
        // Another process finished first; use its venv.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(python.exists(), "venv at {} has no python", venv.display());
    python
}

/// A command running `python` from the test venv with an environment that
/// can only reach the endpoint it is given: no instance metadata, no config
/// or credentials files, no proxies, no retries.
pub fn python_command(region: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", env!("CARGO_TARGET_TMPDIR"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/hail-test-aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/hail-test-aws-credentials",
        )
        .env("AWS_DEFAULT_REGION", region)
        .env("AWS_REGION", region)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_RETRY_MODE", "standard")
        .env("NO_PROXY", "*")
        .env("AWS_PAGER", "");
    cmd
}

pub fn script(name: &str) -> PathBuf {
    manifest_dir().join("tests/python").join(name)
}
