//! The one place where failures become wire responses.
//!
//! Every error a request can meet (authentication, framing, or one returned by
//! the engine through [`crate::JsonApi`]) is an [`ApiError`]: an AWS error code
//! plus a message. The code decides the HTTP status and the `__type` (JSON
//! 1.1) or `<Code>` (S3 XML) a client sees, so SDKs raise the same exception
//! classes they raise against AWS.

use axum::body::Body;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::sigv4::{format_amz_date, parse_amz_date, AuthError, MAX_CLOCK_SKEW};

/// Content type of every AWS JSON 1.1 response, errors included.
pub const AMZ_JSON_1_1: &str = "application/x-amz-json-1.1";

/// The AWS error codes Hail emits, named exactly as AWS names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // Shared by the JSON 1.1 APIs (ECS, Application Auto Scaling, Logs).
    AccessDeniedException,
    ClientException,
    ClusterContainsServicesException,
    ClusterContainsTasksException,
    ClusterNotFoundException,
    ConcurrentUpdateException,
    ExpiredTokenException,
    FailedResourceAccessException,
    IncompleteSignatureException,
    InternalServiceException,
    InvalidNextTokenException,
    InvalidParameterException,
    InvalidSignatureException,
    LimitExceededException,
    MissingAuthenticationTokenException,
    ObjectNotFoundException,
    RequestEntityTooLargeException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    SerializationException,
    ServerException,
    ServiceNotActiveException,
    ServiceNotFoundException,
    TargetNotConnectedException,
    ThrottlingException,
    TooManyTagsException,
    UnknownOperationException,
    UnrecognizedClientException,
    ValidationException,
    // S3 REST codes.
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidRequest,
    NotImplemented,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
    XAmzContentSha256Mismatch,
}

impl ErrorCode {
    /// The code as it appears on the wire (`__type` or `<Code>`).
    pub fn aws_code(self) -> &'static str {
        use ErrorCode::*;
        match self {
            AccessDeniedException => "AccessDeniedException",
            ClientException => "ClientException",
            ClusterContainsServicesException => "ClusterContainsServicesException",
            ClusterContainsTasksException => "ClusterContainsTasksException",
            ClusterNotFoundException => "ClusterNotFoundException",
            ConcurrentUpdateException => "ConcurrentUpdateException",
            ExpiredTokenException => "ExpiredTokenException",
            FailedResourceAccessException => "FailedResourceAccessException",
            InternalServiceException => "InternalServiceException",
            InvalidNextTokenException => "InvalidNextTokenException",
            LimitExceededException => "LimitExceededException",
            TooManyTagsException => "TooManyTagsException",
            IncompleteSignatureException => "IncompleteSignatureException",
            InvalidParameterException => "InvalidParameterException",
            InvalidSignatureException => "InvalidSignatureException",
            MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            ObjectNotFoundException => "ObjectNotFoundException",
            RequestEntityTooLargeException => "RequestEntityTooLargeException",
            ResourceAlreadyExistsException => "ResourceAlreadyExistsException",
            ResourceNotFoundException => "ResourceNotFoundException",
            SerializationException => "SerializationException",
            ServerException => "ServerException",
            ServiceNotActiveException => "ServiceNotActiveException",
            ServiceNotFoundException => "ServiceNotFoundException",
            TargetNotConnectedException => "TargetNotConnectedException",
            ThrottlingException => "ThrottlingException",
            UnknownOperationException => "UnknownOperationException",
            UnrecognizedClientException => "UnrecognizedClientException",
            ValidationException => "ValidationException",
            AccessDenied => "AccessDenied",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidRequest => "InvalidRequest",
            NotImplemented => "NotImplemented",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            XAmzContentSha256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status AWS answers with for this code.
    ///
    /// The JSON 1.1 service models declare their modeled exceptions as client
    /// errors without an explicit status, which the AWS JSON protocol sends
    /// as 400; the authentication failures follow the AWS common-errors
    /// table (403), except `IncompleteSignature`-style framing problems.
    pub fn http_status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            ServerException => StatusCode::INTERNAL_SERVER_ERROR,
            InvalidSignatureException
            | MissingAuthenticationTokenException
            | UnrecognizedClientException => StatusCode::FORBIDDEN,
            RequestEntityTooLargeException => StatusCode::PAYLOAD_TOO_LARGE,
            AccessDenied | InvalidAccessKeyId | RequestTimeTooSkewed | SignatureDoesNotMatch => {
                StatusCode::FORBIDDEN
            }
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            AccessDeniedException
            | ClientException
            | ClusterContainsServicesException
            | ClusterContainsTasksException
            | ClusterNotFoundException
            | ConcurrentUpdateException
            | ExpiredTokenException
            | FailedResourceAccessException
            | IncompleteSignatureException
            // Application Auto Scaling models it as a client error, so
            // AWS answers it with 400 like the others.
            | InternalServiceException
            | InvalidNextTokenException
            | LimitExceededException
            | TooManyTagsException
            | InvalidParameterException
            | ObjectNotFoundException
            | ResourceAlreadyExistsException
            | ResourceNotFoundException
            | SerializationException
            | ServiceNotActiveException
            | ServiceNotFoundException
            | TargetNotConnectedException
            | ThrottlingException
            | UnknownOperationException
            | ValidationException
            | AuthorizationHeaderMalformed
            | AuthorizationQueryParametersError
            | InvalidRequest
            | XAmzContentSha256Mismatch => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.aws_code())
    }
}

/// An error on its way to the client: an AWS code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// The S3 resource (`/bucket/key`) the error is about, shown in the XML
    /// `<Resource>` element; JSON errors have no such field.
    resource: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            resource: None,
        }
    }

    /// Attaches the S3 resource path shown in `<Resource>`.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The `__type` / `<Code>` value.
    pub fn aws_code(&self) -> &'static str {
        self.code.aws_code()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    pub fn http_status(&self) -> StatusCode {
        self.code.http_status()
    }

    pub fn client(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ClientException, message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterException, message)
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerException, message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::SerializationException, message)
    }

    /// The JSON 1.1 error body: `{"__type":"…","message":"…"}`.
    pub fn json_body(&self) -> String {
        serde_json::json!({ "__type": self.aws_code(), "message": self.message }).to_string()
    }

    /// The AWS JSON 1.1 error response, with `x-amzn-ErrorType` and
    /// `x-amzn-RequestId` set.
    pub fn to_json_response(&self, request_id: &str) -> Response<Body> {
        let mut response = Response::new(Body::from(self.json_body()));
        *response.status_mut() = self.http_status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON_1_1));
        // The code is a static ASCII identifier, always a valid header value.
        headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.aws_code()),
        );
        insert_request_id(headers, "x-amzn-requestid", request_id);
        response
    }

    /// The S3 REST error body.
    pub fn xml_body(&self, request_id: &str) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        xml.push_str(self.aws_code());
        xml.push_str("</Code><Message>");
        push_xml_escaped(&mut xml, &self.message);
        xml.push_str("</Message>");
        if let Some(resource) = &self.resource {
            xml.push_str("<Resource>");
            push_xml_escaped(&mut xml, resource);
            xml.push_str("</Resource>");
        }
        xml.push_str("<RequestId>");
        push_xml_escaped(&mut xml, request_id);
        xml.push_str("</RequestId></Error>");
        xml
    }

    /// The S3 REST error response, with `x-amz-request-id` set.
    pub fn to_xml_response(&self, request_id: &str) -> Response<Body> {
        let mut response = Response::new(Body::from(self.xml_body(request_id)));
        *response.status_mut() = self.http_status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        insert_request_id(headers, "x-amz-request-id", request_id);
        response
    }
}

/// Which wire protocol an error is rendered for; authentication failures
/// carry different codes in the JSON APIs and in S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Json,
    S3,
}

impl ApiError {
    /// The error AWS answers for an authentication failure.
    pub fn from_auth(err: &AuthError, protocol: Protocol) -> ApiError {
        use ErrorCode::*;
        use Protocol::*;
        let (code, message) = match (err, protocol) {
            (AuthError::Missing, Json) => (MissingAuthenticationTokenException, "Missing Authentication Token".to_string()),
            (AuthError::Missing, S3) => (AccessDenied, "Access Denied".to_string()),
            (AuthError::Malformed { reason }, Json) => (IncompleteSignatureException, reason.clone()),
            (AuthError::Malformed { reason }, S3) => (AuthorizationHeaderMalformed, reason.clone()),
            (AuthError::UnsupportedAlgorithm { algorithm }, Json) => (
                IncompleteSignatureException,
                format!("Unsupported AWS 'algorithm': '{algorithm}'"),
            ),
            (AuthError::UnsupportedAlgorithm { algorithm }, S3) => (
                AuthorizationHeaderMalformed,
                format!("Unsupported AWS 'algorithm': '{algorithm}'"),
            ),
            (AuthError::UnknownAccessKey { .. }, Json) => (
                UnrecognizedClientException,
                "The security token included in the request is invalid.".to_string(),
            ),
            (AuthError::UnknownAccessKey { .. }, S3) => (
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.".to_string(),
            ),
            (AuthError::WrongService { expected, .. }, Json) => (
                InvalidSignatureException,
                format!("Credential should be scoped to correct service: '{expected}'. "),
            ),
            (AuthError::WrongService { scoped, expected }, S3) => (
                AuthorizationHeaderMalformed,
                format!("The authorization header is malformed; incorrect service '{scoped}'. This endpoint belongs to '{expected}'."),
            ),
            (AuthError::ScopeDateMismatch { scope_date, request_date }, Json) => (
                InvalidSignatureException,
                format!("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{}', from '{request_date}'.", request_date.get(..8).unwrap_or(request_date)),
            ),
            (AuthError::ScopeDateMismatch { scope_date, .. }, S3) => (
                AuthorizationHeaderMalformed,
                format!("The authorization header is malformed; Invalid credential date \"{scope_date}\". This date is not the same as X-Amz-Date."),
            ),
            (AuthError::SignatureMismatch { .. }, Json) => (
                InvalidSignatureException,
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".to_string(),
            ),
            (AuthError::SignatureMismatch { .. }, S3) => (
                SignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.".to_string(),
            ),
            (AuthError::TooOld { request_time, server_time }, Json) => (
                InvalidSignatureException,
                format!(
                    "Signature expired: {request_time} is now earlier than {} ({server_time} - 15 min.)",
                    shift(server_time, false)
                ),
            ),
            (AuthError::TooNew { request_time, server_time }, Json) => (
                InvalidSignatureException,
                format!(
                    "Signature not yet current: {request_time} is still later than {} ({server_time} + 15 min.)",
                    shift(server_time, true)
                ),
            ),
            (AuthError::TooOld { .. } | AuthError::TooNew { .. }, S3) => (
                RequestTimeTooSkewed,
                "The difference between the request time and the current time is too large.".to_string(),
            ),
            (AuthError::Expired { .. }, Json) => (AccessDeniedException, "Request has expired".to_string()),
            (AuthError::Expired { .. }, S3) => (AccessDenied, "Request has expired".to_string()),
            (AuthError::BadExpires { .. }, Json) => (
                IncompleteSignatureException,
                "X-Amz-Expires must be between 1 and 604800 seconds".to_string(),
            ),
            (AuthError::BadExpires { .. }, S3) => (
                AuthorizationQueryParametersError,
                "X-Amz-Expires must be less than a week (in seconds) that is 604800".to_string(),
            ),
            (AuthError::MissingContentSha256, _) => (
                InvalidRequest,
                "Missing required header for this request: x-amz-content-sha256".to_string(),
            ),
            (AuthError::PayloadHashMismatch { .. }, Json) => (
                InvalidSignatureException,
                "The provided 'x-amz-content-sha256' header does not match what was computed.".to_string(),
            ),
            (AuthError::PayloadHashMismatch { .. }, S3) => (
                XAmzContentSha256Mismatch,
                "The provided 'x-amz-content-sha256' header does not match what was computed.".to_string(),
            ),
            (AuthError::StreamingUnsupported { .. }, Json) => (
                IncompleteSignatureException,
                "Streaming payload signing is not supported".to_string(),
            ),
            (AuthError::StreamingUnsupported { .. }, S3) => (
                NotImplemented,
                "A header you provided implies functionality that is not implemented: streaming payload signing".to_string(),
            ),
        };
        ApiError::new(code, message)
    }
}

/// `server_time` shifted by the allowed skew, for AWS's expiry messages.
fn shift(server_time: &str, forward: bool) -> String {
    let skew = MAX_CLOCK_SKEW.as_secs();
    match parse_amz_date(server_time) {
        Some(t) if forward => format_amz_date(t + skew),
        Some(t) => format_amz_date(t.saturating_sub(skew)),
        None => server_time.to_string(),
    }
}

/// Request ids are generated by [`crate::router`] and are always ASCII; a
/// foreign id that is not a valid header value is left out rather than
/// failing the response.
pub(crate) fn insert_request_id(headers: &mut http::HeaderMap, name: &'static str, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(name, value);
    }
}

fn push_xml_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn codes_and_statuses_match_aws() {
        use ErrorCode::*;
        let table: &[(ErrorCode, &str, u16)] = &[
            (ClientException, "ClientException", 400),
            (InvalidParameterException, "InvalidParameterException", 400),
            (ClusterNotFoundException, "ClusterNotFoundException", 400),
            (ServerException, "ServerException", 500),
            (AccessDeniedException, "AccessDeniedException", 400),
            (
                UnrecognizedClientException,
                "UnrecognizedClientException",
                403,
            ),
            (InvalidSignatureException, "InvalidSignatureException", 403),
            (
                IncompleteSignatureException,
                "IncompleteSignatureException",
                400,
            ),
            (
                MissingAuthenticationTokenException,
                "MissingAuthenticationTokenException",
                403,
            ),
            (SerializationException, "SerializationException", 400),
            (UnknownOperationException, "UnknownOperationException", 400),
            (ValidationException, "ValidationException", 400),
            (ResourceNotFoundException, "ResourceNotFoundException", 400),
            (
                ResourceAlreadyExistsException,
                "ResourceAlreadyExistsException",
                400,
            ),
            (ThrottlingException, "ThrottlingException", 400),
            (ServiceNotActiveException, "ServiceNotActiveException", 400),
            (ServiceNotFoundException, "ServiceNotFoundException", 400),
            (
                TargetNotConnectedException,
                "TargetNotConnectedException",
                400,
            ),
            (ObjectNotFoundException, "ObjectNotFoundException", 400),
            (ConcurrentUpdateException, "ConcurrentUpdateException", 400),
            (
                RequestEntityTooLargeException,
                "RequestEntityTooLargeException",
                413,
            ),
            (AccessDenied, "AccessDenied", 403),
            (InvalidAccessKeyId, "InvalidAccessKeyId", 403),
            (SignatureDoesNotMatch, "SignatureDoesNotMatch", 403),
            (RequestTimeTooSkewed, "RequestTimeTooSkewed", 403),
            (
                AuthorizationQueryParametersError,
                "AuthorizationQueryParametersError",
                400,
            ),
            (
                AuthorizationHeaderMalformed,
                "AuthorizationHeaderMalformed",
                400,
            ),
            (XAmzContentSha256Mismatch, "XAmzContentSHA256Mismatch", 400),
            (InvalidRequest, "InvalidRequest", 400),
            (NotImplemented, "NotImplemented", 501),
        ];
        for &(code, wire, status) in table {
            assert_eq!(code.aws_code(), wire);
            assert_eq!(code.http_status().as_u16(), status, "{wire}");
        }
    }

    #[tokio::test]
    async fn json_error_response_has_aws_shape() {
        let err = ApiError::new(ErrorCode::ClusterNotFoundException, "Cluster not found.");
        let response = err.to_json_response("req-1");
        assert_eq!(response.status(), 400);
        let headers = response.headers();
        assert_eq!(headers["content-type"], AMZ_JSON_1_1);
        assert_eq!(headers["x-amzn-errortype"], "ClusterNotFoundException");
        assert_eq!(headers["x-amzn-requestid"], "req-1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"__type": "ClusterNotFoundException", "message": "Cluster not found."})
        );
    }

    #[tokio::test]
    async fn xml_error_response_has_s3_shape_and_escapes() {
        let err = ApiError::new(ErrorCode::SignatureDoesNotMatch, "a<b & \"c\"")
            .with_resource("/bucket/k&ey");
        assert_eq!(
            err.xml_body("R1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
             <Message>a&lt;b &amp; &quot;c&quot;</Message><Resource>/bucket/k&amp;ey</Resource>\
             <RequestId>R1</RequestId></Error>"
        );
        let response = err.to_xml_response("R1");
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()["x-amz-request-id"], "R1");
        assert_eq!(response.headers()["content-type"], "application/xml");
    }

    #[test]
    fn json_body_escapes_message() {
        let err = ApiError::client("quote \" and \u{1} control");
        let value: serde_json::Value = serde_json::from_str(&err.json_body()).unwrap();
        assert_eq!(value["message"], "quote \" and \u{1} control");
        assert_eq!(
            err.to_string(),
            "ClientException: quote \" and \u{1} control"
        );
    }
}
