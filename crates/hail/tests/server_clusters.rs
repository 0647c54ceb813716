//! `hail server` end to end: the real binary on a loopback port, driven by the
//! real `aws` CLI with the credentials `hail env` prints.

mod server_support;

use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::Signal;
use server_support::{aws, common, hail_env, Server};

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
