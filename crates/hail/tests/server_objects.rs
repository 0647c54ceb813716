//! The object store through `hail server` end to end, with the real `aws`
//! CLI and boto3: buckets, small and multipart uploads, listings, sync,
//! presigned URLs, ranges and conditions, virtual-host addressing; hostile
//! keys and bodies answered with S3's errors and nothing written; writers
//! racing on one key; bucket notification configurations.

mod server_support;

use server_support::images;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};
use server_support::{aws, common, hail_env, Server};

struct S3Stack {
    tmp: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    env: HashMap<String, String>,
    _server: Server,
}

fn stack() -> S3Stack {
    common::python();
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let server = Server::start_on(&data_dir, server_support::host::HostNames::unique(1));
    let env = hail_env(&data_dir, &server.endpoint);
    S3Stack {
        tmp,
        data_dir,
        env,
        _server: server,
    }
}

/// Runs a boto3 script; it prints one JSON document, which is returned.
fn py(env: &HashMap<String, String>, script: &str) -> Value {
    let prelude = r#"
import json, os, sys, hashlib, base64, threading, urllib.request
import boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
def code(fn):
    try:
        fn()
        return None
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
"#;
    let out = common::python_command(&env["AWS_DEFAULT_REGION"])
        .args(["-c", &format!("{prelude}\n{script}")])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 script failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "boto3 script printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn aws_ok(env: &HashMap<String, String>, args: &[&str]) -> String {
    let out = aws(env, args);
    assert!(out.success, "aws {args:?}: {}", out.stderr);
    out.stdout
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn aws_cli_and_boto3_speak_s3() {
    if !images::containers_available() {
        return;
    }
    let s = stack();
    let env = &s.env;
    let dir = s.tmp.path();
    aws_ok(env, &["s3", "mb", "s3://media"]);
    let dup = aws(env, &["s3", "mb", "s3://media"]);
    assert!(
        !dup.success && dup.stderr.contains("BucketAlreadyOwnedByYou"),
        "{}",
        dup.stderr
    );

    // Small and multipart uploads (the CLI switches at 8 MiB).
    let small = dir.join("small.txt");
    std::fs::write(&small, "hello, objects\n").unwrap();
    let big = dir.join("big.bin");
    let big_bytes: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    std::fs::write(&big, &big_bytes).unwrap();
    aws_ok(
        env,
        &[
            "s3",
            "cp",
            small.to_str().unwrap(),
            "s3://media/docs/small.txt",
            "--only-show-errors",
        ],
    );
    aws_ok(
        env,
        &[
            "s3",
            "cp",
            big.to_str().unwrap(),
            "s3://media/video/big.bin",
            "--only-show-errors",
        ],
    );
    let head = aws(
        env,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "media",
            "--key",
            "video/big.bin",
        ],
    )
    .json();
    assert_eq!(head["ContentLength"], 20_000_000);
    let etag = head["ETag"].as_str().unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with("-3\""),
        "multipart ETag: {etag}"
    );
    let head = aws(
        env,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "media",
            "--key",
            "docs/small.txt",
        ],
    )
    .json();
    assert_eq!(
        head["ETag"],
        format!("\"{:x}\"", md5_of(b"hello, objects\n"))
    );

    let back = dir.join("back.bin");
    aws_ok(
        env,
        &[
            "s3",
            "cp",
            "s3://media/video/big.bin",
            back.to_str().unwrap(),
            "--only-show-errors",
        ],
    );
    assert!(
        std::fs::read(&back).unwrap() == big_bytes,
        "multipart object read back differs"
    );

    // Listings, sync, rm.
    let tree = dir.join("tree");
    for name in ["a.txt", "sub/b.txt", "sub/deeper/c.txt"] {
        let p = tree.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, name).unwrap();
    }
    aws_ok(
        env,
        &[
            "s3",
            "sync",
            tree.to_str().unwrap(),
            "s3://media/tree",
            "--only-show-errors",
        ],
    );
    let listing = aws_ok(env, &["s3", "ls", "s3://media/tree/"]);
    assert!(
        listing.contains("PRE sub/") && listing.contains("a.txt"),
        "{listing}"
    );
    let all = aws_ok(env, &["s3", "ls", "s3://media", "--recursive"]);
    for key in [
        "docs/small.txt",
        "video/big.bin",
        "tree/a.txt",
        "tree/sub/b.txt",
        "tree/sub/deeper/c.txt",
    ] {
        assert!(all.contains(key), "{key} missing from {all}");
    }
    // A second sync has nothing to copy.
    let again = aws_ok(
        env,
        &["s3", "sync", tree.to_str().unwrap(), "s3://media/tree"],
    );
    assert!(again.trim().is_empty(), "second sync copied: {again}");
    let paged = aws(
        env,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            "media",
            "--prefix",
            "tree/",
            "--page-size",
            "1",
        ],
    )
    .json();
    // The CLI pages through one key at a time and joins the pages.
    assert_eq!(
        paged["Contents"].as_array().map(Vec::len),
        Some(3),
        "{paged}"
    );

    // A presigned URL works with no credentials at all.
    let url = aws_ok(
        env,
        &[
            "s3",
            "presign",
            "s3://media/docs/small.txt",
            "--expires-in",
            "60",
        ],
    );
    let fetched = std::process::Command::new("curl")
        .args(["-sf", url.trim()])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "presigned GET failed");
    assert_eq!(fetched.stdout, b"hello, objects\n");
    let tampered = url.trim().replace("docs/small.txt", "video/big.bin");
    let denied = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &tampered])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&denied.stdout), "403");

    // boto3: ranges, conditions, metadata, copy, virtual-host addressing.
    let out = py(
        env,
        r#"
r = s3.get_object(Bucket="media", Key="docs/small.txt", Range="bytes=7-13")
part = r["Body"].read().decode()
suffix = s3.get_object(Bucket="media", Key="docs/small.txt", Range="bytes=-3")["Body"].read().decode()
etag = r["ETag"]
s3.put_object(Bucket="media", Key="meta.txt", Body=b"m", ContentType="text/plain",
              Metadata={"origin": "camera-7"}, CacheControl="max-age=60")
h = s3.head_object(Bucket="media", Key="meta.txt")
s3.copy_object(Bucket="media", Key="copy.txt", CopySource={"Bucket": "media", "Key": "docs/small.txt"})
copied = s3.get_object(Bucket="media", Key="copy.txt")["Body"].read().decode()
# Virtual-host style: bucket.localhost names the bucket. The name need
# not resolve; the request goes to loopback with that Host header.
endpoint = os.environ["AWS_ENDPOINT_URL"]
port = endpoint.rsplit(":", 1)[1]
vh = boto3.client("s3", endpoint_url="http://localhost:" + port,
                  config=Config(s3={"addressing_style": "virtual"}))
url = vh.generate_presigned_url("get_object", Params={"Bucket": "media", "Key": "docs/small.txt"})
assert url.startswith("http://media.localhost:" + port + "/docs/small.txt?"), url
req = urllib.request.Request(url.replace("media.localhost", "127.0.0.1"),
                             headers={"Host": "media.localhost:" + port})
virtual = urllib.request.urlopen(req).read().decode()
print(json.dumps({
  "part": part, "suffix": suffix, "status": r["ResponseMetadata"]["HTTPStatusCode"],
  "range": r["ContentRange"],
  "not_modified": code(lambda: s3.get_object(Bucket="media", Key="docs/small.txt", IfNoneMatch=etag)),
  "failed": code(lambda: s3.get_object(Bucket="media", Key="docs/small.txt", IfMatch='"0"')),
  "bad_range": code(lambda: s3.get_object(Bucket="media", Key="docs/small.txt", Range="bytes=100-200")),
  "meta": h["Metadata"], "type": h["ContentType"], "cache": h["CacheControl"],
  "copied": copied, "virtual": virtual,
  "missing": code(lambda: s3.get_object(Bucket="media", Key="nope")),
  "no_bucket": code(lambda: s3.get_object(Bucket="nope-bucket", Key="k")),
  "not_empty": code(lambda: s3.delete_bucket(Bucket="media")),
}))
"#,
    );
    assert_eq!(out["part"], "objects");
    assert_eq!(out["suffix"], "ts\n");
    assert_eq!(out["status"], 206);
    assert_eq!(out["range"], "bytes 7-13/15");
    assert_eq!(out["not_modified"], json!(["304", 304]));
    assert_eq!(out["failed"], json!(["PreconditionFailed", 412]));
    assert_eq!(out["bad_range"], json!(["InvalidRange", 416]));
    assert_eq!(out["meta"], json!({"origin": "camera-7"}));
    assert_eq!(out["type"], "text/plain");
    assert_eq!(out["cache"], "max-age=60");
    assert_eq!(out["copied"], "hello, objects\n");
    assert_eq!(out["virtual"], "hello, objects\n");
    assert_eq!(out["missing"], json!(["NoSuchKey", 404]));
    assert_eq!(out["no_bucket"], json!(["NoSuchBucket", 404]));
    assert_eq!(out["not_empty"], json!(["BucketNotEmpty", 409]));

    aws_ok(
        env,
        &[
            "s3",
            "rm",
            "s3://media",
            "--recursive",
            "--only-show-errors",
        ],
    );
    let empty = aws(env, &["s3api", "list-objects-v2", "--bucket", "media"]).json();
    assert!(empty.get("Contents").is_none(), "{empty}");
    aws_ok(env, &["s3", "rb", "s3://media"]);
    // Removing every object removed every data file.
    let data = files_under(&s.data_dir.join("objects/data"));
    assert!(data.is_empty(), "data files left: {data:?}");
}

fn md5_of(bytes: &[u8]) -> impl std::fmt::LowerHex {
    struct Hex([u8; 16]);
    impl std::fmt::LowerHex for Hex {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
    let out = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut digest = [0u8; 16];
    for (i, b) in digest.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    Hex(digest)
}

#[test]
fn hostile_keys_and_bodies_get_s3_errors_and_change_nothing() {
    if !images::containers_available() {
        return;
    }
    let s = stack();
    let env = &s.env;
    aws_ok(env, &["s3", "mb", "s3://media"]);
    let out = py(
        env,
        r#"
wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
results = {
  "bad_digest": code(lambda: s3.put_object(Bucket="media", Key="x", Body=b"data", ContentMD5=wrong_md5)),
  "invalid_digest": code(lambda: s3.put_object(Bucket="media", Key="x", Body=b"data", ContentMD5="nope")),
  "too_long": code(lambda: s3.put_object(Bucket="media", Key="k" * 1025, Body=b"data")),
  "metadata": code(lambda: s3.put_object(Bucket="media", Key="x", Body=b"d", Metadata={"big": "v" * 3000})),
  "bad_bucket": code(lambda: s3.create_bucket(Bucket="Bad_Bucket")),
  "bad_notification": code(lambda: s3.put_bucket_notification_configuration(Bucket="media",
      NotificationConfiguration={"QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:000000000000:q",
                                                          "Events": ["s3:ObjectCreated:*"]}]})),
}
# Keys are keys, never paths.
for key in ["../../../../etc/hail-escape", "/abs/olute", "a/./b/../c", "é ü/😀"]:
    s3.put_object(Bucket="media", Key=key, Body=key.encode())
    assert s3.get_object(Bucket="media", Key=key)["Body"].read() == key.encode(), key
results["keys"] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="media")["Contents"])
# Multipart: parts too small, a part that was never uploaded, a wrong ETag.
up = s3.create_multipart_upload(Bucket="media", Key="mp")
uid = up["UploadId"]
p1 = s3.upload_part(Bucket="media", Key="mp", UploadId=uid, PartNumber=1, Body=b"a" * 1024)
p2 = s3.upload_part(Bucket="media", Key="mp", UploadId=uid, PartNumber=2, Body=b"b" * 1024)
parts = lambda ps: {"Parts": [{"PartNumber": n, "ETag": e} for n, e in ps]}
results["too_small"] = code(lambda: s3.complete_multipart_upload(Bucket="media", Key="mp", UploadId=uid,
    MultipartUpload=parts([(1, p1["ETag"]), (2, p2["ETag"])])))
results["missing_part"] = code(lambda: s3.complete_multipart_upload(Bucket="media", Key="mp", UploadId=uid,
    MultipartUpload=parts([(1, p1["ETag"]), (3, p2["ETag"])])))
results["wrong_etag"] = code(lambda: s3.complete_multipart_upload(Bucket="media", Key="mp", UploadId=uid,
    MultipartUpload=parts([(1, p2["ETag"])])))
results["order"] = code(lambda: s3.complete_multipart_upload(Bucket="media", Key="mp", UploadId=uid,
    MultipartUpload=parts([(2, p2["ETag"]), (1, p1["ETag"])])))
results["listed_parts"] = len(s3.list_parts(Bucket="media", Key="mp", UploadId=uid)["Parts"])
results["uploads"] = len(s3.list_multipart_uploads(Bucket="media")["Uploads"])
s3.abort_multipart_upload(Bucket="media", Key="mp", UploadId=uid)
results["aborted"] = code(lambda: s3.list_parts(Bucket="media", Key="mp", UploadId=uid))
results["mp_object"] = code(lambda: s3.head_object(Bucket="media", Key="mp"))
results["x_object"] = code(lambda: s3.head_object(Bucket="media", Key="x"))
# Unsigned and wrongly signed requests.
anon = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                    config=Config(signature_version=botocore.UNSIGNED))
results["anonymous"] = code(lambda: anon.get_object(Bucket="media", Key="/abs/olute"))
forged = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                      aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key="wrong")
results["forged"] = code(lambda: forged.get_object(Bucket="media", Key="/abs/olute"))
print(json.dumps(results))
"#,
    );
    assert_eq!(out["bad_digest"], json!(["BadDigest", 400]));
    assert_eq!(out["invalid_digest"], json!(["InvalidDigest", 400]));
    assert_eq!(out["too_long"], json!(["KeyTooLongError", 400]));
    assert_eq!(out["metadata"], json!(["MetadataTooLarge", 400]));
    assert_eq!(out["bad_bucket"], json!(["InvalidBucketName", 400]));
    assert_eq!(out["bad_notification"][0], "InvalidArgument");
    assert_eq!(
        out["keys"],
        json!([
            "../../../../etc/hail-escape",
            "/abs/olute",
            "a/./b/../c",
            "é ü/😀"
        ])
    );
    assert_eq!(out["too_small"], json!(["EntityTooSmall", 400]));
    assert_eq!(out["missing_part"], json!(["InvalidPart", 400]));
    assert_eq!(out["wrong_etag"], json!(["InvalidPart", 400]));
    assert_eq!(out["order"], json!(["InvalidPartOrder", 400]));
    assert_eq!(out["listed_parts"], 2);
    assert_eq!(out["uploads"], 1);
    assert_eq!(out["aborted"], json!(["NoSuchUpload", 404]));
    assert_eq!(out["mp_object"], json!(["404", 404]));
    assert_eq!(out["x_object"], json!(["404", 404]));
    assert_eq!(out["anonymous"], json!(["AccessDenied", 403]));
    assert_eq!(out["forged"], json!(["SignatureDoesNotMatch", 403]));
    assert!(!Path::new("/etc/hail-escape").exists());
    // Four objects, four data files; the refused bodies and the aborted
    // upload's parts left nothing.
    let data = files_under(&s.data_dir.join("objects/data"));
    assert_eq!(data.len(), 4, "{data:?}");
    assert!(files_under(&s.data_dir.join("objects/tmp")).is_empty());
}

#[test]
fn concurrent_writers_of_one_key_never_tear_an_object() {
    if !images::containers_available() {
        return;
    }
    let s = stack();
    let env = &s.env;
    aws_ok(env, &["s3", "mb", "s3://race"]);
    let out = py(
        env,
        r#"
bodies = [bytes([i]) * (1024 * 1024 + i) for i in range(16)]
digests = {hashlib.md5(b).hexdigest() for b in bodies}
seen = []
def writer(b):
    c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    c.put_object(Bucket="race", Key="one-key", Body=b)
def reader():
    c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    for _ in range(20):
        try:
            r = c.get_object(Bucket="race", Key="one-key")
            body = r["Body"].read()
            seen.append((hashlib.md5(body).hexdigest(), r["ETag"].strip('"'), len(body)))
        except botocore.exceptions.ClientError:
            pass
threads = [threading.Thread(target=writer, args=(b,)) for b in bodies] + [threading.Thread(target=reader) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
final = s3.get_object(Bucket="race", Key="one-key")["Body"].read()
print(json.dumps({
  "final_is_one_body": hashlib.md5(final).hexdigest() in digests,
  "reads_whole": all(d in digests and d == e for d, e, _ in seen),
  "reads": len(seen),
}))
"#,
    );
    assert_eq!(out["final_is_one_body"], true, "{out}");
    assert_eq!(out["reads_whole"], true, "{out}");
    // Only the winner's bytes remain on disk.
    let data = files_under(&s.data_dir.join("objects/data"));
    assert_eq!(data.len(), 1, "{data:?}");
}

#[test]
fn notification_configurations_name_triggers() {
    if !images::containers_available() {
        return;
    }
    let s = stack();
    let env = &s.env;
    aws_ok(env, &["s3", "mb", "s3://media"]);
    let config = json!({
        "LambdaFunctionConfigurations": [{
            "Id": "thumbs",
            "LambdaFunctionArn": "arn:aws:hail:us-east-1:000000000000:trigger/thumbs",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [
                {"Name": "prefix", "Value": "video/"},
                {"Name": "suffix", "Value": ".mp4"}
            ]}}
        }],
        "QueueConfigurations": [{
            "Id": "removals",
            "QueueArn": "arn:aws:hail:us-east-1:000000000000:trigger/cleanup",
            "Events": ["s3:ObjectRemoved:*"]
        }]
    });
    let file = s.tmp.path().join("notification.json");
    std::fs::write(&file, config.to_string()).unwrap();
    aws_ok(
        env,
        &[
            "s3api",
            "put-bucket-notification-configuration",
            "--bucket",
            "media",
            "--notification-configuration",
            &format!("file://{}", file.display()),
        ],
    );
    let got = aws(
        env,
        &[
            "s3api",
            "get-bucket-notification-configuration",
            "--bucket",
            "media",
        ],
    )
    .json();
    assert_eq!(got["LambdaFunctionConfigurations"][0]["Id"], "thumbs");
    assert_eq!(
        got["LambdaFunctionConfigurations"][0]["Filter"]["Key"]["FilterRules"],
        json!([{"Name": "prefix", "Value": "video/"}, {"Name": "suffix", "Value": ".mp4"}])
    );
    assert_eq!(
        got["QueueConfigurations"][0]["QueueArn"],
        "arn:aws:hail:us-east-1:000000000000:trigger/cleanup"
    );
    let missing = aws(
        env,
        &[
            "s3api",
            "get-bucket-notification-configuration",
            "--bucket",
            "nope-bucket",
        ],
    );
    assert!(
        missing.stderr.contains("NoSuchBucket"),
        "{}",
        missing.stderr
    );
    // An empty configuration clears it.
    std::fs::write(&file, "{}").unwrap();
    aws_ok(
        env,
        &[
            "s3api",
            "put-bucket-notification-configuration",
            "--bucket",
            "media",
            "--notification-configuration",
            &format!("file://{}", file.display()),
        ],
    );
    let got = aws_ok(
        env,
        &[
            "s3api",
            "get-bucket-notification-configuration",
            "--bucket",
            "media",
        ],
    );
    assert!(!got.contains("Configurations"), "{got}");
}
