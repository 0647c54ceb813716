//! AWS Signature Version 4 verification, for `Authorization` headers and
//! presigned (query-string) URLs.
//!
//! The server recomputes the signature the client must have produced: it
//! rebuilds the canonical request from what arrived on the wire, derives the
//! signing key from the secret the [`CredentialStore`] holds for the access
//! key id, and compares in constant time. The rules for the canonical URI
//! differ between S3 and every other service, exactly as the SDKs apply them:
//!
//! * non-S3 services normalize the path (dot segments removed, empty segments
//!   dropped) and URI-encode the path *as it arrived*, so a `%` sent on the
//!   wire is encoded again (`%25`): the path is double-encoded;
//! * S3 neither normalizes nor double-encodes: the canonical path is the
//!   wire path, re-encoded strictly so equivalent spellings agree.
//!
//! The clock is a parameter so tests (and callers) decide what "now" is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only algorithm SigV4 defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `X-Amz-Content-Sha256` value that exempts the body from the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Signing name of S3, the one service with its own canonicalization rules.
pub const S3_SERVICE: &str = "s3";
/// How far the request time may be from the server clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// Longest validity AWS allows for a presigned URL (7 days).
pub const MAX_PRESIGN_EXPIRES: u64 = 604_800;

const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where the server finds the secret key that belongs to an access key id.
pub trait CredentialStore: Send + Sync {
    /// The secret access key for `access_key_id`, or `None` when the key is
    /// unknown.
    fn secret_for(&self, access_key_id: &str) -> Option<String>;
}

/// A fixed set of credentials, e.g. the root credentials loaded from the data
/// directory at startup.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    keys: std::collections::HashMap<String, String>,
}

impl StaticCredentials {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, access_key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.keys.insert(access_key_id.into(), secret.into());
        self
    }
}

impl CredentialStore for StaticCredentials {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self.keys.get(access_key_id).cloned()
    }
}

/// What arrived on the wire, as far as signing is concerned.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The buffered body, or `None` when the body is streamed past the
    /// verifier (S3 uploads); then the `X-Amz-Content-Sha256` header is what
    /// was signed and the body must be checked against it by the reader.
    pub body: Option<&'a [u8]>,
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
    /// Request time (`X-Amz-Date`) as Unix seconds.
    pub signed_at: u64,
    /// The payload hash that was signed, for the body reader to enforce when
    /// the body was not buffered (`UNSIGNED-PAYLOAD` or hex SHA-256).
    pub payload_hash: String,
}

/// Why a request failed authentication. [`crate::error::ApiError::from_auth`]
/// turns each into the code AWS sends for the request's protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("request carries neither an authorization header nor presigned query parameters")]
    Missing,
    #[error("authorization is malformed: {reason}")]
    Malformed { reason: String },
    #[error("unsupported signing algorithm {algorithm}")]
    UnsupportedAlgorithm { algorithm: String },
    #[error("access key id {access_key_id} is not known")]
    UnknownAccessKey { access_key_id: String },
    #[error("credential scoped to service {scoped} but the request is for {expected}")]
    WrongService { scoped: String, expected: String },
    #[error("credential date {scope_date} does not match request date {request_date}")]
    ScopeDateMismatch {
        scope_date: String,
        request_date: String,
    },
    #[error("signature does not match for access key id {access_key_id}")]
    SignatureMismatch {
        access_key_id: String,
        string_to_sign: String,
        canonical_request: String,
    },
    #[error("request time {request_time} is more than 15 minutes before {server_time}")]
    TooOld {
        request_time: String,
        server_time: String,
    },
    #[error("request time {request_time} is more than 15 minutes after {server_time}")]
    TooNew {
        request_time: String,
        server_time: String,
    },
    #[error("presigned url expired at {expired_at}, it is now {server_time}")]
    Expired {
        expired_at: String,
        server_time: String,
    },
    #[error("presigned url expiry {expires} is outside 1..=604800 seconds")]
    BadExpires { expires: String },
    #[error("missing required header x-amz-content-sha256")]
    MissingContentSha256,
    #[error("x-amz-content-sha256 {declared} does not match the body hash {actual}")]
    PayloadHashMismatch { declared: String, actual: String },
    #[error("streaming payload signing ({mode}) is not supported")]
    StreamingUnsupported { mode: String },
}

/// Verifies the SigV4 signature of `request` for `service` (its signing
/// name, e.g. `ecs`, `logs`, `application-autoscaling`, `s3`) at time `now`.
pub fn verify(
    request: &SignedRequest<'_>,
    service: &str,
    store: &dyn CredentialStore,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let query = request.uri.query().unwrap_or("");
    let params = parse_query(query);
    if let Some(header) = request.headers.get(http::header::AUTHORIZATION) {
        let header = header
            .to_str()
            .map_err(|_| malformed("authorization header is not ascii"))?;
        verify_header(request, header, &params, service, store, now)
    } else if params.iter().any(|(k, _)| k == "X-Amz-Algorithm") {
        verify_presigned(request, &params, service, store, now)
    } else {
        Err(AuthError::Missing)
    }
}

fn malformed(reason: impl Into<String>) -> AuthError {
    AuthError::Malformed {
        reason: reason.into(),
    }
}

/// The parts of `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
#[derive(Debug)]
struct Scope {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

impl Scope {
    fn parse(credential: &str) -> Result<Scope, AuthError> {
        // The access key id never contains '/', so split from the right to
        // keep the four scope fields exact.
        let mut parts = credential.rsplitn(5, '/');
        let terminator = parts.next();
        let service = parts.next();
        let region = parts.next();
        let date = parts.next();
        let access_key_id = parts.next();
        match (access_key_id, date, region, service, terminator) {
            (Some(akid), Some(date), Some(region), Some(service), Some("aws4_request"))
                if !akid.is_empty() && date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(Scope {
                    access_key_id: akid.to_string(),
                    date: date.to_string(),
                    region: region.to_string(),
                    service: service.to_string(),
                })
            }
            _ => Err(malformed(format!(
                "credential {credential:?} is not of the form access-key-id/yyyymmdd/region/service/aws4_request"
            ))),
        }
    }

    fn string(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

fn verify_header(
    request: &SignedRequest<'_>,
    header: &str,
    params: &[(String, String)],
    service: &str,
    store: &dyn CredentialStore,
    now: u64,
) -> Result<Authenticated, AuthError> {
    let header = header.trim();
    let (algorithm, rest) = header.split_once(' ').unwrap_or((header, ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm {
            algorithm: algorithm.to_string(),
        });
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in rest.split(',') {
        let field = field.trim();
        match field.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(malformed(
            "authorization header requires Credential, SignedHeaders and Signature",
        ));
    };
    let scope = Scope::parse(credential)?;
    let amz_date = request_date(request.headers)?;
    let signed_at = check_scope(&scope, &amz_date, service)?;
    check_skew(signed_at, now)?;
    let secret =
        store
            .secret_for(&scope.access_key_id)
            .ok_or_else(|| AuthError::UnknownAccessKey {
                access_key_id: scope.access_key_id.clone(),
            })?;
    let payload_hash = payload_hash(request, service, false)?;
    let canonical_query = canonical_query(params, None);
    finish(
        request,
        &scope,
        &amz_date,
        signed_at,
        signed_headers,
        &canonical_query,
        payload_hash,
        signature,
        &secret,
        service,
    )
}

fn verify_presigned(
    request: &SignedRequest<'_>,
    params: &[(String, String)],
    service: &str,
    store: &dyn CredentialStore,
    now: u64,
) -> Result<Authenticated, AuthError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| malformed(format!("presigned url lacks {name}")))
    };
    let algorithm = get("X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm {
            algorithm: algorithm.to_string(),
        });
    }
    let scope = Scope::parse(get("X-Amz-Credential")?)?;
    let amz_date = get("X-Amz-Date")?.to_string();
    let expires_text = get("X-Amz-Expires")?;
    let signed_headers = get("X-Amz-SignedHeaders")?;
    let signature = get("X-Amz-Signature")?;
    let expires = expires_text
        .parse::<u64>()
        .ok()
        .filter(|e| (1..=MAX_PRESIGN_EXPIRES).contains(e))
        .ok_or_else(|| AuthError::BadExpires {
            expires: expires_text.to_string(),
        })?;
    let signed_at = check_scope(&scope, &amz_date, service)?;
    if signed_at > now + MAX_CLOCK_SKEW.as_secs() {
        return Err(AuthError::TooNew {
            request_time: amz_date,
            server_time: format_amz_date(now),
        });
    }
    if now > signed_at + expires {
        return Err(AuthError::Expired {
            expired_at: format_amz_date(signed_at + expires),
            server_time: format_amz_date(now),
        });
    }
    let secret =
        store
            .secret_for(&scope.access_key_id)
            .ok_or_else(|| AuthError::UnknownAccessKey {
                access_key_id: scope.access_key_id.clone(),
            })?;
    let payload_hash = payload_hash(request, service, true)?;
    let canonical_query = canonical_query(params, Some("X-Amz-Signature"));
    finish(
        request,
        &scope,
        &amz_date,
        signed_at,
        signed_headers,
        &canonical_query,
        payload_hash,
        signature,
        &secret,
        service,
    )
}

/// The `X-Amz-Date` header; SDKs always send it, and supporting the legacy
/// `Date` header would only widen what can be replayed.
fn request_date(headers: &HeaderMap) -> Result<String, AuthError> {
    headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| malformed("authorization header requires existence of an X-Amz-Date header"))
}

/// Checks the credential scope against the request and returns the request
/// time in Unix seconds.
fn check_scope(scope: &Scope, amz_date: &str, service: &str) -> Result<u64, AuthError> {
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        malformed(format!(
            "x-amz-date {amz_date:?} is not of the form yyyymmddThhmmssZ"
        ))
    })?;
    if scope.service != service {
        return Err(AuthError::WrongService {
            scoped: scope.service.clone(),
            expected: service.to_string(),
        });
    }
    if !amz_date.starts_with(&scope.date) {
        return Err(AuthError::ScopeDateMismatch {
            scope_date: scope.date.clone(),
            request_date: amz_date.to_string(),
        });
    }
    Ok(signed_at)
}

fn check_skew(signed_at: u64, now: u64) -> Result<(), AuthError> {
    let skew = MAX_CLOCK_SKEW.as_secs();
    if signed_at + skew < now {
        Err(AuthError::TooOld {
            request_time: format_amz_date(signed_at),
            server_time: format_amz_date(now),
        })
    } else if signed_at > now + skew {
        Err(AuthError::TooNew {
            request_time: format_amz_date(signed_at),
            server_time: format_amz_date(now),
        })
    } else {
        Ok(())
    }
}

/// The payload hash that goes into the canonical request.
///
/// Like the SDKs, the verifier signs the `X-Amz-Content-Sha256` value when
/// the request declares one, after checking it against the buffered body.
/// S3 requires the header on header-signed requests and accepts
/// `UNSIGNED-PAYLOAD`; other services without the header sign the SHA-256
/// of the body the server actually received, and never go unsigned.
fn payload_hash(
    request: &SignedRequest<'_>,
    service: &str,
    presigned: bool,
) -> Result<String, AuthError> {
    let s3 = service == S3_SERVICE;
    let declared = match request.headers.get("x-amz-content-sha256") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| malformed("x-amz-content-sha256 is not ascii"))?
                .to_string(),
        ),
        None => None,
    };
    let actual = request.body.map(|b| hex::encode(Sha256::digest(b)));
    let Some(declared) = declared else {
        return match (s3, presigned, actual) {
            (true, false, _) => Err(AuthError::MissingContentSha256),
            (true, true, _) => Ok(UNSIGNED_PAYLOAD.to_string()),
            (false, _, Some(actual)) => Ok(actual),
            // Nothing buffered and nothing declared: only an empty body can
            // match, and the body reader must hold the request to that.
            (false, _, None) => Ok(SHA256_EMPTY.to_string()),
        };
    };
    if declared.starts_with("STREAMING-") {
        return Err(AuthError::StreamingUnsupported { mode: declared });
    }
    if declared == UNSIGNED_PAYLOAD {
        return if s3 {
            Ok(declared)
        } else {
            Err(malformed(format!(
                "{service} does not accept unsigned payloads"
            )))
        };
    }
    let is_hex = declared.len() == 64 && declared.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex {
        return Err(malformed(format!(
            "x-amz-content-sha256 {declared:?} is not a sha-256 hex digest"
        )));
    }
    if let Some(actual) = actual {
        if !declared.eq_ignore_ascii_case(&actual) {
            return Err(AuthError::PayloadHashMismatch { declared, actual });
        }
    }
    Ok(declared)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    request: &SignedRequest<'_>,
    scope: &Scope,
    amz_date: &str,
    signed_at: u64,
    signed_headers: &str,
    canonical_query: &str,
    payload_hash: String,
    signature: &str,
    secret: &str,
    service: &str,
) -> Result<Authenticated, AuthError> {
    let canonical_request = canonical_request(
        request,
        service == S3_SERVICE,
        canonical_query,
        signed_headers,
        &payload_hash,
    )?;
    let string_to_sign = string_to_sign(amz_date, &scope.string(), &canonical_request);
    let key = signing_key(secret, &scope.date, &scope.region, &scope.service);
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    // Lowercase before comparing so only the signature's value, not its
    // spelling, matters; the comparison itself is constant-time.
    let given = signature.to_ascii_lowercase();
    if expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(Authenticated {
            access_key_id: scope.access_key_id.clone(),
            region: scope.region.clone(),
            service: scope.service.clone(),
            signed_at,
            payload_hash,
        })
    } else {
        Err(AuthError::SignatureMismatch {
            access_key_id: scope.access_key_id.clone(),
            string_to_sign,
            canonical_request,
        })
    }
}

/// Builds the canonical request. Header values that are not valid UTF-8 are
/// carried through lossily, which can only make the signature fail.
pub fn canonical_request(
    request: &SignedRequest<'_>,
    s3: bool,
    canonical_query: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> Result<String, AuthError> {
    let mut out = String::new();
    out.push_str(request.method.as_str());
    out.push('\n');
    out.push_str(&canonical_uri(request.uri.path(), s3));
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    let names: Vec<&str> = signed_headers.split(';').collect();
    if names
        .iter()
        .any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(malformed(format!(
            "signed headers {signed_headers:?} must be lowercase names separated by ';'"
        )));
    }
    if !names.contains(&"host") {
        return Err(malformed("signed headers must include host"));
    }
    for name in &names {
        out.push_str(name);
        out.push(':');
        let mut values: Vec<String> = request
            .headers
            .get_all(*name)
            .iter()
            .map(|v| canonical_header_value(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() && *name == "host" {
            // HTTP/2 carries the host as the :authority pseudo-header, which
            // the http crate exposes through the URI.
            if let Some(authority) = request.uri.authority() {
                values.push(authority.as_str().to_string());
            }
        }
        if values.is_empty() {
            return Err(malformed(format!(
                "signed header {name} is not present in the request"
            )));
        }
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// The string to sign: the algorithm, the request time, the credential scope
/// (`date/region/service/aws4_request`) and the canonical request's hash.
/// Shared with [`crate::sign`], so signer and verifier cannot drift apart.
pub(crate) fn string_to_sign(
    amz_date: &str,
    credential_scope: &str,
    canonical_request: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// Trims the value and collapses runs of spaces to one, as the spec requires.
fn canonical_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split([' ', '\t']).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The canonical URI: see the module documentation for the S3 difference.
pub fn canonical_uri(path: &str, s3: bool) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    if s3 {
        let decoded = percent_decode(path);
        uri_encode(&decoded, false)
    } else {
        uri_encode(remove_dot_segments(path).as_bytes(), false)
    }
}

/// RFC 3986 dot-segment removal, also dropping empty segments (AWS services
/// treat `//` as `/`), keeping a leading and trailing slash.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from(if path.starts_with('/') { "/" } else { "" });
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query string: every parameter decoded and re-encoded
/// strictly, sorted by key then value, `skip` left out.
pub fn canonical_query(params: &[(String, String)], skip: Option<&str>) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, v)| {
            (
                uri_encode(k.as_bytes(), true),
                uri_encode(v.as_bytes(), true),
            )
        })
        .collect();
    encoded.sort();
    let pairs: Vec<String> = encoded
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join("&")
}

/// Splits a raw query into decoded (key, value) pairs, in order. `+` is a
/// literal plus: SigV4 clients encode spaces as `%20`.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                String::from_utf8_lossy(&percent_decode(k)).into_owned(),
                String::from_utf8_lossy(&percent_decode(v)).into_owned(),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes; malformed escapes are kept literally.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// AWS URI encoding: unreserved characters (`A-Z a-z 0-9 - _ . ~`) stay,
/// everything else becomes `%XX` (uppercase hex); `/` stays unless
/// `encode_slash`.
pub fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type HmacSha256 = Hmac<Sha256>;

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so the error arm is never taken; an
    // empty result could only make a signature comparison fail.
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Parses `yyyymmddThhmmssZ` into Unix seconds.
pub fn parse_amz_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
        || year < 1970
    {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Formats Unix seconds as `yyyymmddThhmmssZ`.
pub fn format_amz_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (public domain
// algorithms), proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(t, 1_440_938_160);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert_eq!(format_amz_date(0), "19700101T000000Z");
        assert_eq!(
            parse_amz_date("20240229T235959Z")
                .map(format_amz_date)
                .as_deref(),
            Some("20240229T235959Z")
        );
        for bad in [
            "",
            "20150830T123600",
            "20150230T000000Z",
            "2015083OT123600Z",
            "20151330T000000Z",
            "+0150830T123600Z",
            "20150830T246000Z",
            "2015-08-30T12:36Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn uri_encoding_follows_aws_rules() {
        assert_eq!(uri_encode(b"a b/c~d*e+f%", false), "a%20b/c~d%2Ae%2Bf%25");
        assert_eq!(uri_encode(b"a/b", true), "a%2Fb");
        assert_eq!(uri_encode("ሴ".as_bytes(), true), "%E1%88%B4");
    }

    #[test]
    fn non_s3_paths_are_normalized_and_double_encoded() {
        assert_eq!(canonical_uri("/./", false), "/");
        assert_eq!(canonical_uri("/foo/../bar//baz/", false), "/bar/baz/");
        assert_eq!(canonical_uri("/%E1%88%B4", false), "/%25E1%2588%25B4");
        assert_eq!(canonical_uri("", false), "/");
    }

    #[test]
    fn s3_paths_are_kept_and_encoded_once() {
        assert_eq!(
            canonical_uri("/bucket/a%20b//./c", true),
            "/bucket/a%20b//./c"
        );
        assert_eq!(canonical_uri("/bucket/a+b=c", true), "/bucket/a%2Bb%3Dc");
        assert_eq!(
            canonical_uri("/bucket/%e1%88%b4", true),
            "/bucket/%E1%88%B4"
        );
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        let params = parse_query("b=2&a=%7e&A=x%20y&a=1&empty&&z=a+b");
        assert_eq!(
            canonical_query(&params, None),
            "A=x%20y&a=1&a=~&b=2&empty=&z=a%2Bb"
        );
        assert_eq!(
            canonical_query(&params, Some("b")),
            "A=x%20y&a=1&a=~&empty=&z=a%2Bb"
        );
    }

    #[test]
    fn percent_decode_keeps_malformed_escapes() {
        assert_eq!(percent_decode("%41%zz%4"), b"A%zz%4");
        assert_eq!(percent_decode("%"), b"%");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("a%41"), b"aA");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(canonical_header_value("  \"a   b   c\"  "), "\"a b c\"");
        assert_eq!(canonical_header_value("value1"), "value1");
    }

    #[test]
    fn signing_key_matches_aws_documentation_example() {
        // The example from the AWS SigV4 documentation ("Examples of how to
        // derive a signing key").
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn scope_parsing_rejects_garbage() {
        assert!(Scope::parse("AKID/20150830/us-east-1/service/aws4_request").is_ok());
        for bad in [
            "",
            "AKID",
            "AKID/2015/us-east-1/service/aws4_request",
            "/20150830/r/s/aws4_request",
            "AKID/20150830/r/s/aws5_request",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }
}
