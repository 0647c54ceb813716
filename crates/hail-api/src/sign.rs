//! SigV4 signing for clients of these APIs (Hail's own CLI and benchmarks),
//! built on the same canonicalisation, string to sign and key derivation the
//! verifier uses, so what one signs the other accepts by construction — and
//! both the round trip and AWS's own test vectors are tested.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::{HeaderMap, Method, Uri};
use sha2::{Digest as _, Sha256};

use crate::sigv4::{
    canonical_query, canonical_request, format_amz_date, hmac, parse_query, signing_key,
    string_to_sign, uri_encode, SignedRequest, ALGORITHM, S3_SERVICE,
};

/// Who signs, for which region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    /// The service's signing name (`ecs`, `logs`, `s3`, …).
    pub service: String,
}

/// A signing failure: the request cannot be expressed as SigV4 wants it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot sign the request: {0}")]
pub struct SignError(String);

impl Signer {
    /// Adds `host` (from the URI, unless present), `x-amz-date` and the
    /// `authorization` header for `body` at time `now`; every header present
    /// is signed, so the caller must send exactly these headers.
    ///
    /// Only S3 requests also get `x-amz-content-sha256`, which S3 requires;
    /// like the AWS SDKs, the other services' requests leave it out and the
    /// server hashes the body it received.
    pub fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), SignError> {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SignError("the clock is before 1970".to_owned()))?
            .as_secs();
        let amz_date = format_amz_date(secs);
        let date = &amz_date[..8];
        if !headers.contains_key(HOST) {
            let authority = uri
                .authority()
                .ok_or_else(|| SignError(format!("{uri} has no host")))?;
            headers.insert(HOST, value(authority.as_str())?);
        }
        let s3 = self.service == S3_SERVICE;
        let payload_hash = hex::encode(Sha256::digest(body));
        headers.insert(HeaderName::from_static("x-amz-date"), value(&amz_date)?);
        if s3 {
            headers.insert(
                HeaderName::from_static("x-amz-content-sha256"),
                value(&payload_hash)?,
            );
        }
        headers.remove(AUTHORIZATION);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let signed_headers = names.join(";");
        let query = canonical_query(&parse_query(uri.query().unwrap_or("")), None);
        let request = SignedRequest {
            method,
            uri,
            headers,
            body: Some(body),
        };
        let canonical = canonical_request(&request, s3, &query, &signed_headers, &payload_hash)
            .map_err(|e| SignError(e.to_string()))?;
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = string_to_sign(&amz_date, &scope, &canonical);
        let key = signing_key(&self.secret_access_key, date, &self.region, &self.service);
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        );
        headers.insert(AUTHORIZATION, value(&authorization)?);
        Ok(())
    }
}

impl Signer {
    /// A presigned URL for `GET` of `bucket`/`key` at the S3 endpoint
    /// `endpoint` (`http://host[:port]`, path style), valid `expires_secs`
    /// from `now` (S3 allows up to seven days). Only `host` is signed, so
    /// any HTTP client can use it.
    pub fn presign_get(
        &self,
        endpoint: &str,
        bucket: &str,
        key: &str,
        expires_secs: u32,
        now: SystemTime,
    ) -> Result<String, SignError> {
        const MAX_EXPIRES: u32 = 7 * 24 * 3600;
        if expires_secs == 0 || expires_secs > MAX_EXPIRES {
            return Err(SignError(format!(
                "expiry {expires_secs} s is outside 1..={MAX_EXPIRES}"
            )));
        }
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| SignError(format!("{endpoint}: {e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| SignError(format!("{endpoint} has no host")))?
            .as_str()
            .to_owned();
        let scheme = uri.scheme_str().unwrap_or("http");
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SignError("the clock is before 1970".to_owned()))?
            .as_secs();
        let amz_date = format_amz_date(secs);
        let date = &amz_date[..8];
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let path = format!(
            "/{}/{}",
            uri_encode(bucket.as_bytes(), true),
            uri_encode(key.as_bytes(), false)
        );
        let params = [
            ("X-Amz-Algorithm", ALGORITHM.to_owned()),
            (
                "X-Amz-Credential",
                format!("{}/{scope}", self.access_key_id),
            ),
            ("X-Amz-Date", amz_date.clone()),
            ("X-Amz-Expires", expires_secs.to_string()),
            ("X-Amz-SignedHeaders", "host".to_owned()),
        ];
        // Already in the byte order of their names, as SigV4 wants them.
        let query = params
            .iter()
            .map(|(k, v)| format!("{k}={}", uri_encode(v.as_bytes(), true)))
            .collect::<Vec<_>>()
            .join("&");
        let canonical = format!("GET\n{path}\n{query}\nhost:{authority}\n\nhost\nUNSIGNED-PAYLOAD");
        let string_to_sign = string_to_sign(&amz_date, &scope, &canonical);
        let key = signing_key(&self.secret_access_key, date, &self.region, &self.service);
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        Ok(format!(
            "{scheme}://{authority}{path}?{query}&X-Amz-Signature={signature}"
        ))
    }
}

fn value(text: &str) -> Result<HeaderValue, SignError> {
    HeaderValue::from_str(text).map_err(|e| SignError(format!("{text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sigv4::{verify, AuthError, StaticCredentials};

    fn signer() -> Signer {
        Signer {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "ecs".into(),
        }
    }

    #[test]
    fn what_the_signer_signs_the_verifier_accepts() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let method = Method::POST;
        let uri: Uri = "http://127.0.0.1:4566/?a=b c&z=1"
            .replace(' ', "%20")
            .parse()
            .unwrap();
        let body = br#"{"clusterName":"demo"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.CreateCluster"),
        );
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        signer()
            .sign(&method, &uri, &mut headers, body, now)
            .unwrap();
        let store = StaticCredentials::new().with(
            "AKIAEXAMPLE".to_owned(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        );
        let request = SignedRequest {
            method: &method,
            uri: &uri,
            headers: &headers,
            body: Some(body),
        };
        let ok = verify(&request, "ecs", &store, now).unwrap();
        assert_eq!(ok.access_key_id, "AKIAEXAMPLE");
        assert_eq!(ok.region, "us-east-1");

        // A changed body, or another service's name, no longer verifies.
        let tampered = SignedRequest {
            body: Some(br#"{"clusterName":"other"}"#),
            ..request
        };
        assert!(matches!(
            verify(&tampered, "ecs", &store, now),
            Err(AuthError::SignatureMismatch { .. }) | Err(AuthError::PayloadHashMismatch { .. })
        ));
        assert!(verify(&request, "logs", &store, now).is_err());
    }

    /// The AWS SigV4 test suite's header-signed requests (the fixtures the
    /// verifier's tests check, `tests/fixtures/aws-sig-v4`): stripped of
    /// their `Authorization`, re-signed, they must get the published one back
    /// byte for byte.
    #[test]
    fn the_signer_reproduces_the_aws_test_suite() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws-sig-v4");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".header.txt"))
            .collect();
        names.sort();
        assert!(names.len() >= 8, "fixtures missing: {names:?}");
        let suite = Signer {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "service".into(),
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z
        for name in names {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let (head, body) = text.split_once("\n\n").unwrap();
            let mut lines = head.lines();
            let request_line = lines.next().unwrap().strip_suffix(" HTTP/1.1").unwrap();
            let (method, target) = request_line.split_once(' ').unwrap();
            let mut headers = HeaderMap::new();
            let mut published = None;
            for line in lines {
                let (name, value) = line.split_once(':').unwrap();
                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                if name == AUTHORIZATION {
                    published = Some(value.to_owned());
                } else {
                    headers.append(name, HeaderValue::from_str(value.trim_start()).unwrap());
                }
            }
            let method: Method = method.parse().unwrap();
            let uri: Uri = target.parse().unwrap();
            suite
                .sign(&method, &uri, &mut headers, body.as_bytes(), at)
                .unwrap();
            assert_eq!(
                headers[AUTHORIZATION].to_str().unwrap(),
                published.unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn s3_requests_carry_the_payload_hash_and_verify() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let method = Method::PUT;
        let uri: Uri = "http://127.0.0.1:4566/bucket/dir/a%20b.txt"
            .parse()
            .unwrap();
        let body = b"hello";
        let mut headers = HeaderMap::new();
        let s3 = Signer {
            service: "s3".into(),
            ..signer()
        };
        s3.sign(&method, &uri, &mut headers, body, now).unwrap();
        assert_eq!(
            headers["x-amz-content-sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(headers[HOST], "127.0.0.1:4566");
        let store = StaticCredentials::new().with("AKIAEXAMPLE", signer().secret_access_key);
        let request = SignedRequest {
            method: &method,
            uri: &uri,
            headers: &headers,
            body: Some(body),
        };
        verify(&request, "s3", &store, now).unwrap();

        // Other services leave the header out, as the SDKs do.
        let mut headers = HeaderMap::new();
        signer()
            .sign(&method, &uri, &mut headers, body, now)
            .unwrap();
        assert!(!headers.contains_key("x-amz-content-sha256"));
    }

    #[test]
    fn a_uri_without_a_host_cannot_be_signed() {
        let mut headers = HeaderMap::new();
        let err = signer()
            .sign(
                &Method::POST,
                &"/".parse().unwrap(),
                &mut headers,
                b"",
                UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            )
            .unwrap_err();
        assert!(err.to_string().contains("has no host"), "{err}");
    }

    #[test]
    fn presigned_urls_verify_until_they_expire() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut s = signer();
        s.service = "s3".into();
        let url = s
            .presign_get(
                "http://169.254.170.2:8080",
                "media",
                "video/a b+é.mp4",
                60,
                now,
            )
            .unwrap();
        assert!(url.starts_with(
            "http://169.254.170.2:8080/media/video/a%20b%2B%C3%A9.mp4?X-Amz-Algorithm="
        ));
        let uri: Uri = url.parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("169.254.170.2:8080"));
        let request = SignedRequest {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            body: None,
        };
        let creds = StaticCredentials::new().with(&s.access_key_id, &s.secret_access_key);
        verify(&request, "s3", &creds, now + Duration::from_secs(30)).unwrap();
        assert!(verify(&request, "s3", &creds, now + Duration::from_secs(120)).is_err());
        assert!(s.presign_get("http://h", "b", "k", 0, now).is_err());
    }
}
