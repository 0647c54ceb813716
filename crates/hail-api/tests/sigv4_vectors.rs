//! Verifies requests signed by the AWS SigV4 test suite (fixtures in
//! `tests/fixtures/aws-sig-v4`), and that any change to them is rejected.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hail_api::sigv4::{self, AuthError, SignedRequest, StaticCredentials};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SIGNED_AT: u64 = 1_440_938_160; // 20150830T123600Z

struct Fixture {
    name: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Fixture {
    fn load(file: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/aws-sig-v4")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, body) = text.split_once("\n\n").unwrap();
        let mut lines = head.lines();
        let request_line = lines.next().unwrap();
        let request_line = request_line.strip_suffix(" HTTP/1.1").unwrap();
        let (method, target) = request_line.split_once(' ').unwrap();
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            // An HTTP parser strips leading whitespace from values; trailing
            // and inner whitespace reach the verifier as sent.
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value.trim_start()).unwrap(),
            );
        }
        Fixture {
            name: file.to_string(),
            method: method.parse().unwrap(),
            uri: target.parse().unwrap(),
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    fn verify_at(&self, now: u64, secret: &str) -> Result<sigv4::Authenticated, AuthError> {
        let request = SignedRequest {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: Some(&self.body),
        };
        let store = StaticCredentials::new().with("AKIDEXAMPLE", secret);
        sigv4::verify(
            &request,
            "service",
            &store,
            UNIX_EPOCH + Duration::from_secs(now),
        )
    }
}

fn all_fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws-sig-v4");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    names.iter().map(|n| Fixture::load(n)).collect()
}

#[test]
fn every_suite_request_verifies() {
    for fixture in all_fixtures() {
        let auth = fixture
            .verify_at(SIGNED_AT, SECRET)
            .unwrap_or_else(|e| panic!("{}: {e:?}", fixture.name));
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        assert_eq!(auth.region, "us-east-1");
        assert_eq!(auth.service, "service");
        assert_eq!(auth.signed_at, SIGNED_AT);
    }
}

#[test]
fn wrong_secret_is_a_signature_mismatch() {
    for fixture in all_fixtures() {
        let err = fixture
            .verify_at(SIGNED_AT, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ")
            .unwrap_err();
        assert!(
            matches!(err, AuthError::SignatureMismatch { .. }),
            "{}: {err:?}",
            fixture.name
        );
    }
}

#[test]
fn unknown_access_key_is_reported() {
    let fixture = Fixture::load("get-vanilla-query-order-key-case.header.txt");
    let request = SignedRequest {
        method: &fixture.method,
        uri: &fixture.uri,
        headers: &fixture.headers,
        body: Some(&fixture.body),
    };
    let store = StaticCredentials::new().with("OTHERKEY", SECRET);
    let err = sigv4::verify(
        &request,
        "service",
        &store,
        UNIX_EPOCH + Duration::from_secs(SIGNED_AT),
    )
    .unwrap_err();
    assert_eq!(
        err,
        AuthError::UnknownAccessKey {
            access_key_id: "AKIDEXAMPLE".into()
        }
    );
}

#[test]
fn tampering_with_signed_parts_is_rejected() {
    // Header value changed.
    let mut f = Fixture::load("get-header-value-trim.header.txt");
    f.headers
        .insert("my-header1", HeaderValue::from_static("value2"));
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::SignatureMismatch { .. })
    ));

    // Inner whitespace is collapsed, so re-spacing a value is not tampering.
    let mut f = Fixture::load("get-header-value-trim.header.txt");
    f.headers
        .insert("my-header2", HeaderValue::from_static("\"a b      c\"  "));
    f.verify_at(SIGNED_AT, SECRET).unwrap();

    // Body changed: it no longer matches the declared x-amz-content-sha256,
    // and declaring the new body's hash breaks the signature instead.
    let mut f = Fixture::load("post-x-www-form-urlencoded.header.txt");
    f.body = b"Param1=value2".to_vec();
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::PayloadHashMismatch { .. })
    ));
    let new_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&f.body));
    f.headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&new_hash).unwrap(),
    );
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::SignatureMismatch { .. })
    ));
    // Dropping a signed header is refused before any hashing.
    let mut f = Fixture::load("post-x-www-form-urlencoded.header.txt");
    f.headers.remove("x-amz-content-sha256");
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::Malformed { .. })
    ));

    // Query value changed.
    let mut f = Fixture::load("get-vanilla-query-order-key-case.header.txt");
    f.uri = "/?Param2=value2&Param1=value9".parse().unwrap();
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::SignatureMismatch { .. })
    ));

    // Query order is irrelevant: the canonical query is sorted.
    f.uri = "/?Param1=value1&Param2=value2".parse().unwrap();
    f.verify_at(SIGNED_AT, SECRET).unwrap();

    // Method changed.
    let mut f = Fixture::load("get-unreserved.header.txt");
    f.method = Method::HEAD;
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::SignatureMismatch { .. })
    ));

    // A duplicated header value dropped.
    let mut f = Fixture::load("get-header-key-duplicate.header.txt");
    f.headers
        .insert("my-header1", HeaderValue::from_static("value2"));
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::SignatureMismatch { .. })
    ));

    // Presigned signature changed.
    let mut f = Fixture::load("get-vanilla-query-order-key-case.query.txt");
    let tampered = f.uri.to_string().replace("Param1=value1", "Param1=value2");
    f.uri = tampered.parse().unwrap();
    assert!(matches!(
        f.verify_at(SIGNED_AT, SECRET),
        Err(AuthError::SignatureMismatch { .. })
    ));
}

#[test]
fn header_signatures_expire_after_fifteen_minutes_either_way() {
    let f = Fixture::load("get-vanilla-empty-query-key.header.txt");
    f.verify_at(SIGNED_AT + 15 * 60, SECRET).unwrap();
    f.verify_at(SIGNED_AT - 15 * 60, SECRET).unwrap();
    let err = f.verify_at(SIGNED_AT + 15 * 60 + 1, SECRET).unwrap_err();
    assert_eq!(
        err,
        AuthError::TooOld {
            request_time: "20150830T123600Z".into(),
            server_time: "20150830T125101Z".into()
        }
    );
    let api = hail_api::ApiError::from_auth(&err, hail_api::Protocol::Json);
    assert_eq!(api.aws_code(), "InvalidSignatureException");
    assert_eq!(
        api.message(),
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T125101Z - 15 min.)"
    );
    assert_eq!(
        hail_api::ApiError::from_auth(&err, hail_api::Protocol::S3).aws_code(),
        "RequestTimeTooSkewed"
    );
    let err = f.verify_at(SIGNED_AT - 15 * 60 - 1, SECRET).unwrap_err();
    assert!(matches!(err, AuthError::TooNew { .. }), "{err:?}");
}

#[test]
fn presigned_urls_honour_expiry() {
    let f = Fixture::load("get-vanilla-query-unreserved.query.txt");
    f.verify_at(SIGNED_AT + 3600, SECRET).unwrap();
    let err = f.verify_at(SIGNED_AT + 3601, SECRET).unwrap_err();
    assert!(matches!(err, AuthError::Expired { .. }), "{err:?}");
    let api = hail_api::ApiError::from_auth(&err, hail_api::Protocol::S3);
    assert_eq!(
        (api.aws_code(), api.message()),
        ("AccessDenied", "Request has expired")
    );
    assert_eq!(api.http_status(), 403);

    let mut f = Fixture::load("get-vanilla-query-unreserved.query.txt");
    let too_long = f
        .uri
        .to_string()
        .replace("X-Amz-Expires=3600", "X-Amz-Expires=604801");
    f.uri = too_long.parse().unwrap();
    let err = f.verify_at(SIGNED_AT, SECRET).unwrap_err();
    assert_eq!(
        err,
        AuthError::BadExpires {
            expires: "604801".into()
        }
    );
    assert_eq!(
        hail_api::ApiError::from_auth(&err, hail_api::Protocol::S3).aws_code(),
        "AuthorizationQueryParametersError"
    );
}

#[test]
fn credential_scope_must_name_the_service_and_date() {
    let f = Fixture::load("get-vanilla-empty-query-key.header.txt");
    let request = SignedRequest {
        method: &f.method,
        uri: &f.uri,
        headers: &f.headers,
        body: Some(&f.body),
    };
    let store = StaticCredentials::new().with("AKIDEXAMPLE", SECRET);
    let now = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
    let err = sigv4::verify(&request, "ecs", &store, now).unwrap_err();
    assert_eq!(
        err,
        AuthError::WrongService {
            scoped: "service".into(),
            expected: "ecs".into()
        }
    );

    let mut headers = f.headers.clone();
    headers.insert("x-amz-date", HeaderValue::from_static("20150831T000000Z"));
    let request = SignedRequest {
        headers: &headers,
        ..request
    };
    let err = sigv4::verify(
        &request,
        "service",
        &store,
        UNIX_EPOCH + Duration::from_secs(SIGNED_AT + 41_000),
    )
    .unwrap_err();
    assert!(
        matches!(err, AuthError::ScopeDateMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn missing_and_malformed_authorization_never_panics() {
    let store = StaticCredentials::new().with("AKIDEXAMPLE", SECRET);
    let now = SystemTime::now();
    let uri: Uri = "/".parse().unwrap();
    let cases: &[&[u8]] = &[
        b"",
        b"AWS4-HMAC-SHA256",
        b"AWS4-HMAC-SHA256 ",
        b"AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=",
        b"AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=HOST, Signature=00",
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=00",
        b"AWS AKIDEXAMPLE:c2lnbmF0dXJl",
        b"AWS4-HMAC-SHA256 Credential=\xff\xfe/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00",
        b"==,,;;//",
    ];
    for value in cases {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        headers.insert("authorization", HeaderValue::from_bytes(value).unwrap());
        let request = SignedRequest {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            body: Some(b""),
        };
        let err = sigv4::verify(&request, "service", &store, now).unwrap_err();
        assert!(
            !matches!(
                err,
                AuthError::SignatureMismatch { .. } | AuthError::Missing
            ),
            "{value:?}: {err:?}"
        );
    }
    let headers = HeaderMap::new();
    let request = SignedRequest {
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
        body: None,
    };
    assert_eq!(
        sigv4::verify(&request, "service", &store, now).unwrap_err(),
        AuthError::Missing
    );
}
