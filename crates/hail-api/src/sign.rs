//! SigV4 signing for clients of these APIs (Hail's own CLI and benchmarks),
//! built on the same canonicalisation the verifier uses, so what one signs
//! the other accepts by construction — and the round trip is tested.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::{HeaderMap, Method, Uri};
use sha2::{Digest as _, Sha256};

use crate::sigv4::{
    canonical_query, canonical_request, format_amz_date, parse_query, signing_key, SignedRequest,
    ALGORITHM,
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
    /// Adds `host`, `x-amz-date`, `x-amz-content-sha256` and the
    /// `authorization` header for `body` at time `now`. Every header already
    /// present is signed.
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
        let payload_hash = hex::encode(Sha256::digest(body));
        headers.insert(HeaderName::from_static("x-amz-date"), value(&amz_date)?);
        headers.insert(
            HeaderName::from_static("x-amz-content-sha256"),
            value(&payload_hash)?,
        );
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
        let canonical = canonical_request(
            &request,
            self.service == crate::sigv4::S3_SERVICE,
            &query,
            &signed_headers,
            &payload_hash,
        )
        .map_err(|e| SignError(e.to_string()))?;
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(&self.secret_access_key, date, &self.region, &self.service);
        let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        );
        headers.insert(AUTHORIZATION, value(&authorization)?);
        Ok(())
    }
}

fn value(text: &str) -> Result<HeaderValue, SignError> {
    HeaderValue::from_str(text).map_err(|e| SignError(format!("{text:?}: {e}")))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
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
}
