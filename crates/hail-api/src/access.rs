//! Authorisation: what an authenticated caller may do.
//!
//! SigV4 proves who signed a request ([`crate::sigv4`]); an
//! [`AccessPolicy`] then decides whether that caller may perform the action
//! (`ecs:RunTask`, `s3:GetObject`) on the resources the request touches. The
//! engine implements it: root credentials may do everything, a task's
//! temporary credentials what its role allows, and only with the session
//! token they were issued with.

/// Why a request is refused after its signature checked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The caller's policy does not allow the action on these resources.
    #[error("{0}")]
    Denied(String),
    /// Temporary credentials used without their session token, or with another.
    #[error("The security token included in the request is invalid.")]
    InvalidToken,
    /// Temporary credentials past their expiry.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
}

/// Decides whether a caller may do what its request asks.
pub trait AccessPolicy: Send + Sync + 'static {
    /// Whether the holder of `access_key_id` (who presented `session_token`,
    /// the `X-Amz-Security-Token` of the request) may perform `action` on
    /// every one of `resources` (IAM resource ARNs, or `*`).
    fn authorize(
        &self,
        access_key_id: &str,
        session_token: Option<&str>,
        action: &str,
        resources: &[String],
    ) -> Result<(), AccessError>;
}

/// Allows every authenticated caller everything: for servers with only root
/// credentials and for tests of the wire alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AccessPolicy for AllowAll {
    fn authorize(
        &self,
        _: &str,
        _: Option<&str>,
        _: &str,
        _: &[String],
    ) -> Result<(), AccessError> {
        Ok(())
    }
}

/// The header carrying a session token, and its presigned-URL query twin.
pub const SECURITY_TOKEN_HEADER: &str = "x-amz-security-token";
pub const SECURITY_TOKEN_QUERY: &str = "X-Amz-Security-Token";

/// The session token of a request: the header, or the presigned query
/// parameter (percent-decoded).
pub fn session_token(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    if let Some(v) = headers.get(SECURITY_TOKEN_HEADER) {
        return v.to_str().ok().map(str::to_owned);
    }
    let query = uri.query()?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == SECURITY_TOKEN_QUERY).then(|| percent_decode(value))?
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_token_from_header_or_query() {
        let mut headers = http::HeaderMap::new();
        let uri: http::Uri = "/b/k?X-Amz-Security-Token=ab%2Bc%3D&x=1".parse().unwrap();
        assert_eq!(session_token(&headers, &uri).as_deref(), Some("ab+c="));
        headers.insert(SECURITY_TOKEN_HEADER, "hdr".parse().unwrap());
        assert_eq!(session_token(&headers, &uri).as_deref(), Some("hdr"));
        let plain: http::Uri = "/b/k?x=1".parse().unwrap();
        assert_eq!(session_token(&http::HeaderMap::new(), &plain), None);
    }
}
