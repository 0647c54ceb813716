//! Verifies requests signed by the real botocore (`SigV4Auth`,
//! `S3SigV4Auth`, and both query-string signers) for every service Hail
//! speaks, and that altered copies of them are rejected.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::{ACCESS_KEY, SECRET_KEY};
use hail_api::sigv4::{self, AuthError, SignedRequest, StaticCredentials};
use hail_api::{ApiError, Protocol};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::{json, Value};

struct Signed {
    service: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Signed {
    fn verify_with(
        &self,
        service: &str,
        secret: &str,
        now: SystemTime,
        buffered: bool,
    ) -> Result<sigv4::Authenticated, AuthError> {
        let request = SignedRequest {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: buffered.then_some(self.body.as_slice()),
        };
        let store = StaticCredentials::new().with(ACCESS_KEY, secret);
        sigv4::verify(&request, service, &store, now)
    }

    fn verify(&self) -> Result<sigv4::Authenticated, AuthError> {
        self.verify_with(&self.service, SECRET_KEY, SystemTime::now(), true)
    }
}

/// Signs every spec with botocore in one Python process.
fn sign_all(specs: &[Value]) -> Vec<Signed> {
    let mut child = common::python_command("us-east-1")
        .arg(common::script("sign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(specs).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "sign.py failed");
    let signed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(signed.len(), specs.len());
    specs
        .iter()
        .zip(signed)
        .map(|(spec, s)| {
            let url: Uri = s["url"].as_str().unwrap().parse().unwrap();
            let mut headers = HeaderMap::new();
            for pair in s["headers"].as_array().unwrap() {
                headers.append(
                    HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap(),
                    HeaderValue::from_str(pair[1].as_str().unwrap()).unwrap(),
                );
            }
            // The HTTP client adds Host from the URL, as botocore signed it.
            if !headers.contains_key("host") {
                let host = url.authority().unwrap().as_str();
                headers.insert("host", HeaderValue::from_str(host).unwrap());
            }
            let path_and_query = url.path_and_query().unwrap().as_str().parse().unwrap();
            Signed {
                service: spec["service"].as_str().unwrap().to_string(),
                method: s["method"].as_str().unwrap().parse().unwrap(),
                uri: path_and_query,
                headers,
                body: s["body"].as_str().unwrap().as_bytes().to_vec(),
            }
        })
        .collect()
}

fn spec(kind: &str, service: &str, method: &str, url: &str, headers: Value, body: &str) -> Value {
    json!({
        "kind": kind, "service": service, "region": "us-east-1", "method": method, "url": url,
        "headers": headers, "body": body, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
        "expires": 900,
    })
}

fn json_api(service: &str, target: &str, body: &str) -> Value {
    spec(
        "header",
        service,
        "POST",
        "http://127.0.0.1:4566/",
        json!({"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}),
        body,
    )
}

#[test]
fn botocore_signatures_verify_and_alterations_fail() {
    let mut specs = vec![
        json_api(
            "ecs",
            "AmazonEC2ContainerServiceV20141113.ListClusters",
            "{}",
        ),
        json_api(
            "ecs",
            "AmazonEC2ContainerServiceV20141113.RunTask",
            r#"{"cluster":"default","taskDefinition":"web:1","overrides":{"containerOverrides":[{"name":"a b","command":["sh","-c","echo ሴ"]}]}}"#,
        ),
        json_api(
            "logs",
            "Logs_20140328.PutLogEvents",
            r#"{"logGroupName":"/ecs/web","logStreamName":"s","logEvents":[]}"#,
        ),
        json_api(
            "application-autoscaling",
            "AnyScaleFrontendService.DescribeScalableTargets",
            r#"{"ServiceNamespace":"ecs"}"#,
        ),
        // Non-S3 path and query with characters that need encoding: the
        // verifier must double-encode the path the way botocore does.
        spec(
            "header",
            "logs",
            "GET",
            "http://127.0.0.1:4566/some%20path/%E1%88%B4/a~b/./c//d?b=2&a=x%20y&a=1&z=%2B&empty=",
            json!({"X-Custom": "  spaced    value  "}),
            "",
        ),
        spec(
            "s3",
            "s3",
            "PUT",
            "http://127.0.0.1:4566/bucket/dir/a%20b%2Bc%3Dd/%E1%88%B4.txt",
            json!({"Content-Type": "text/plain"}),
            "hello s3",
        ),
        spec(
            "s3",
            "s3",
            "GET",
            "http://bucket.localhost:4566/key?list-type=2&prefix=a%2Fb",
            json!({}),
            "",
        ),
        spec(
            "s3-presign",
            "s3",
            "GET",
            "http://127.0.0.1:4566/bucket/dir/a%20b.txt?versionId=3",
            json!({}),
            "",
        ),
        spec(
            "presign",
            "logs",
            "GET",
            "http://127.0.0.1:4566/?Action=x",
            json!({}),
            "",
        ),
    ];
    let mut unsigned = spec(
        "s3",
        "s3",
        "PUT",
        "https://127.0.0.1:4566/bucket/unsigned",
        json!({}),
        "body",
    );
    unsigned["unsigned_payload"] = json!(true);
    specs.push(unsigned);

    let signed = sign_all(&specs);
    for (i, s) in signed.iter().enumerate() {
        let auth = s
            .verify()
            .unwrap_or_else(|e| panic!("request {i} ({} {}): {e:?}", s.method, s.uri));
        assert_eq!(auth.access_key_id, ACCESS_KEY);
        assert_eq!(auth.service, s.service);
        assert_eq!(auth.region, "us-east-1");

        // The wrong secret never verifies.
        let err = s
            .verify_with(&s.service, "not-the-secret", SystemTime::now(), true)
            .unwrap_err();
        assert!(
            matches!(err, AuthError::SignatureMismatch { .. }),
            "request {i}: {err:?}"
        );

        // Another service's endpoint refuses the credential scope.
        let other = if s.service == "ecs" { "logs" } else { "ecs" };
        let err = s
            .verify_with(other, SECRET_KEY, SystemTime::now(), true)
            .unwrap_err();
        assert!(
            matches!(err, AuthError::WrongService { .. }),
            "request {i}: {err:?}"
        );
    }

    // Header-signed requests are valid for 15 minutes around the clock.
    let skewed = SystemTime::now() + Duration::from_secs(20 * 60);
    let err = signed[0]
        .verify_with("ecs", SECRET_KEY, skewed, true)
        .unwrap_err();
    let api = ApiError::from_auth(&err, Protocol::Json);
    assert_eq!(api.aws_code(), "InvalidSignatureException");
    assert!(
        api.message().starts_with("Signature expired: "),
        "{}",
        api.message()
    );
    let early = SystemTime::now() - Duration::from_secs(20 * 60);
    let err = signed[0]
        .verify_with("ecs", SECRET_KEY, early, true)
        .unwrap_err();
    assert!(matches!(err, AuthError::TooNew { .. }), "{err:?}");

    // Tampered JSON body.
    let mut s = sign_all(&specs[1..2]).remove(0);
    s.body = s
        .body
        .iter()
        .map(|&b| if b == b'1' { b'2' } else { b })
        .collect();
    assert!(matches!(
        s.verify(),
        Err(AuthError::SignatureMismatch { .. })
    ));

    // Tampered signed header (the operation).
    let mut s = sign_all(&specs[0..1]).remove(0);
    s.headers.insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.DeleteCluster"),
    );
    assert!(matches!(
        s.verify(),
        Err(AuthError::SignatureMismatch { .. })
    ));

    // Tampered S3 body: caught by the payload hash when buffered; when
    // streamed the declared hash is returned for the reader to enforce.
    let mut s = sign_all(&specs[5..6]).remove(0);
    s.body = b"HELLO S3".to_vec();
    let err = s.verify().unwrap_err();
    assert!(
        matches!(err, AuthError::PayloadHashMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(
        ApiError::from_auth(&err, Protocol::S3).aws_code(),
        "XAmzContentSHA256Mismatch"
    );
    let auth = s
        .verify_with("s3", SECRET_KEY, SystemTime::now(), false)
        .unwrap();
    assert_eq!(
        auth.payload_hash,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"hello s3"))
    );

    // UNSIGNED-PAYLOAD accepts any body.
    let mut s = sign_all(&specs[9..10]).remove(0);
    assert_eq!(s.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
    s.body = b"anything at all".to_vec();
    assert_eq!(s.verify().unwrap().payload_hash, "UNSIGNED-PAYLOAD");

    // Streaming signatures are reported as unsupported.
    let mut s = sign_all(&specs[5..6]).remove(0);
    s.headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    );
    let err = s.verify().unwrap_err();
    assert!(
        matches!(err, AuthError::StreamingUnsupported { .. }),
        "{err:?}"
    );
    assert_eq!(
        ApiError::from_auth(&err, Protocol::S3).aws_code(),
        "NotImplemented"
    );

    // A presigned URL stops working once expired (botocore signed 900 s).
    let s = &signed[7];
    let later = SystemTime::now() + Duration::from_secs(901);
    let err = s.verify_with("s3", SECRET_KEY, later, true).unwrap_err();
    assert!(matches!(err, AuthError::Expired { .. }), "{err:?}");

    // Unknown key.
    let store = StaticCredentials::new();
    let s = &signed[0];
    let request = SignedRequest {
        method: &s.method,
        uri: &s.uri,
        headers: &s.headers,
        body: Some(&s.body),
    };
    let err = sigv4::verify(&request, "ecs", &store, SystemTime::now()).unwrap_err();
    assert_eq!(
        ApiError::from_auth(&err, Protocol::Json).aws_code(),
        "UnrecognizedClientException"
    );
    assert_eq!(
        ApiError::from_auth(&err, Protocol::S3).aws_code(),
        "InvalidAccessKeyId"
    );
}
