//! Request classification and dispatch.
//!
//! The phases every request goes through, in order; each failure edge ends in
//! an [`ApiError`] rendered by [`crate::error`]:
//!
//! 1. classify: `X-Amz-Target` (or an AWS JSON content type) means a JSON 1.1
//!    API, anything else is S3 REST (path-style, or `bucket.localhost`
//!    virtual-host style);
//! 2. for JSON APIs, read the body up to the configured limit (413 beyond);
//! 3. verify SigV4, requiring the credential scope to name the service the
//!    target belongs to;
//! 4. parse the body as a JSON object (`SerializationException`);
//! 5. call the [`JsonApi`] handler and render its output or error.
//!
//! Every response carries the request id (`x-amzn-RequestId` for JSON,
//! `x-amz-request-id` for S3).

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use s3s::service::S3Service;

use crate::access::{self, AccessError, AccessPolicy, AllowAll};
use crate::error::{ApiError, ErrorCode, Protocol};
use crate::json11;
use crate::operations;
use crate::sigv4::{self, CredentialStore, SignedRequest};

/// The APIs Hail serves on its one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Ecs,
    ApplicationAutoScaling,
    Logs,
    /// Hail's own resources (roles, triggers), in the same JSON 1.1 framing.
    Hail,
    S3,
}

impl Service {
    /// The name clients put in the SigV4 credential scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Ecs => "ecs",
            Service::ApplicationAutoScaling => "application-autoscaling",
            Service::Logs => "logs",
            Service::Hail => "hail",
            Service::S3 => sigv4::S3_SERVICE,
        }
    }

    /// The `X-Amz-Target` prefix of a JSON 1.1 API; S3 has none.
    pub fn target_prefix(self) -> Option<&'static str> {
        match self {
            Service::Ecs => Some("AmazonEC2ContainerServiceV20141113"),
            Service::ApplicationAutoScaling => Some("AnyScaleFrontendService"),
            Service::Logs => Some("Logs_20140328"),
            Service::Hail => Some(HAIL_TARGET_PREFIX),
            Service::S3 => None,
        }
    }

    pub fn from_target_prefix(prefix: &str) -> Option<Service> {
        [
            Service::Ecs,
            Service::ApplicationAutoScaling,
            Service::Logs,
            Service::Hail,
        ]
        .into_iter()
        .find(|s| s.target_prefix() == Some(prefix))
    }

    /// The operations this API defines (empty for S3, which routes by method
    /// and path instead).
    pub fn operations(self) -> &'static [&'static str] {
        match self {
            Service::Ecs => operations::ECS,
            Service::ApplicationAutoScaling => operations::APPLICATION_AUTO_SCALING,
            Service::Logs => operations::LOGS,
            Service::Hail => operations::HAIL,
            Service::S3 => &[],
        }
    }
}

/// The `X-Amz-Target` prefix of Hail's native API (`Hail_20261101.CreateTrigger`).
pub const HAIL_TARGET_PREFIX: &str = "Hail_20261101";

/// Host suffix that marks S3 virtual-host style requests
/// (`my-bucket.localhost:4566`).
pub const S3_VIRTUAL_HOST_SUFFIX: &str = ".localhost";

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Json { service: Service, operation: String },
    S3(S3Route),
}

/// An S3 REST request's addressing, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Route {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub virtual_host: bool,
}

/// Classifies a request without reading its body.
pub fn classify(parts: &Parts) -> Result<Route, ApiError> {
    if let Some(target) = parts.headers.get(json11::TARGET_HEADER) {
        let target = target.to_str().map_err(|_| {
            ApiError::new(
                ErrorCode::UnknownOperationException,
                "x-amz-target is not ascii",
            )
        })?;
        let (service, operation) = json11::parse_target(target)?;
        return Ok(Route::Json {
            service,
            operation: operation.to_string(),
        });
    }
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if content_type.starts_with(b"application/x-amz-json") {
        return Err(ApiError::new(
            ErrorCode::UnknownOperationException,
            "aws json request carries no x-amz-target header",
        ));
    }
    Ok(Route::S3(s3_route(parts)))
}

fn s3_route(parts: &Parts) -> S3Route {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let hostname = strip_port(host);
    let path = parts
        .uri
        .path()
        .strip_prefix('/')
        .unwrap_or(parts.uri.path());
    let decode = |s: &str| String::from_utf8_lossy(&sigv4::percent_decode(s)).into_owned();
    let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
    match hostname.strip_suffix(S3_VIRTUAL_HOST_SUFFIX) {
        Some(bucket) if !bucket.is_empty() => S3Route {
            bucket: Some(bucket.to_string()),
            key: non_empty(decode(path)),
            virtual_host: true,
        },
        _ => {
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            S3Route {
                bucket: non_empty(decode(bucket)),
                key: non_empty(decode(key)),
                virtual_host: false,
            }
        }
    }
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: never a virtual-host bucket.
        return host;
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Who is calling, for the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub access_key_id: String,
    pub region: String,
}

/// The engine's side of the JSON 1.1 APIs: one call per request, with an
/// operation name that exists in `service`'s API.
pub trait JsonApi: Send + Sync + 'static {
    fn call(
        &self,
        service: Service,
        op: &str,
        body: Value,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send;
}

/// The source of "now" for signature freshness checks.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The API front door: authentication, framing and dispatch to a
/// [`JsonApi`].
pub struct ApiService<H, C> {
    handler: Arc<H>,
    credentials: Arc<C>,
    policy: Arc<dyn AccessPolicy>,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    /// The S3 REST API, when this server has an object store.
    s3: Option<S3Service>,
}

impl<H, C> Clone for ApiService<H, C> {
    fn clone(&self) -> Self {
        ApiService {
            handler: Arc::clone(&self.handler),
            credentials: Arc::clone(&self.credentials),
            policy: Arc::clone(&self.policy),
            clock: Arc::clone(&self.clock),
            body_limit: self.body_limit,
            s3: self.s3.clone(),
        }
    }
}

impl<H: JsonApi, C: CredentialStore + 'static> ApiService<H, C> {
    pub fn new(handler: Arc<H>, credentials: Arc<C>, clock: Arc<dyn Clock>) -> Self {
        ApiService {
            handler,
            credentials,
            policy: Arc::new(AllowAll),
            clock,
            body_limit: json11::DEFAULT_BODY_LIMIT,
            s3: None,
        }
    }

    /// Authorises every authenticated request with `policy` (by default
    /// every authenticated caller may do everything).
    pub fn with_policy(mut self, policy: Arc<dyn AccessPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Serves the S3 REST API with `s3` (see [`crate::s3::s3_service`]).
    pub fn with_s3(mut self, s3: S3Service) -> Self {
        self.s3 = Some(s3);
        self
    }

    /// Sets the largest JSON request body accepted, in bytes.
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// An axum router that sends every request through [`Self::handle`].
    pub fn into_router(self) -> axum::Router {
        axum::Router::new().fallback(move |request: Request<Body>| {
            let service = self.clone();
            async move { service.handle(request).await }
        })
    }

    /// Handles one request; never fails, errors become AWS error responses.
    pub async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let request_id = new_request_id();
        let (parts, body) = request.into_parts();
        match classify(&parts) {
            Ok(Route::Json { service, operation }) => {
                match self
                    .json(&parts, body, service, &operation, &request_id)
                    .await
                {
                    Ok(output) => json11::success_response(&output, &request_id),
                    Err(err) => err.to_json_response(&request_id),
                }
            }
            Ok(Route::S3(route)) => match &self.s3 {
                Some(s3) => serve_s3(s3, Request::from_parts(parts, body)).await,
                None => self.s3(&parts, &route).to_xml_response(&request_id),
            },
            Err(err) => err.to_json_response(&request_id),
        }
    }

    async fn json(
        &self,
        parts: &Parts,
        body: Body,
        service: Service,
        operation: &str,
        request_id: &str,
    ) -> Result<Value, ApiError> {
        let body = read_limited(parts, body, self.body_limit).await?;
        let signed = SignedRequest {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: Some(&body),
        };
        let auth = sigv4::verify(
            &signed,
            service.signing_name(),
            self.credentials.as_ref(),
            self.clock.now(),
        )
        .map_err(|e| ApiError::from_auth(&e, Protocol::Json))?;
        let token = access::session_token(&parts.headers, &parts.uri);
        let action = format!("{}:{operation}", service.signing_name());
        self.policy
            .authorize(
                &auth.access_key_id,
                token.as_deref(),
                &action,
                &["*".to_owned()],
            )
            .map_err(|e| match e {
                AccessError::Denied(_) => ApiError::new(
                    ErrorCode::AccessDeniedException,
                    format!(
                        "User: {} is not authorized to perform: {action}",
                        auth.access_key_id
                    ),
                ),
                AccessError::InvalidToken => {
                    ApiError::new(ErrorCode::UnrecognizedClientException, e.to_string())
                }
                AccessError::ExpiredToken => {
                    ApiError::new(ErrorCode::ExpiredTokenException, e.to_string())
                }
            })?;
        let input = json11::parse_body(&body)?;
        let ctx = RequestContext {
            request_id: request_id.to_string(),
            access_key_id: auth.access_key_id,
            region: auth.region,
        };
        self.handler.call(service, operation, input, ctx).await
    }

    /// Without an object store, S3 requests are authenticated (the body
    /// stays unread) and an authenticated one is answered `NotImplemented`.
    fn s3(&self, parts: &Parts, route: &S3Route) -> ApiError {
        let signed = SignedRequest {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: None,
        };
        let resource = match (&route.bucket, &route.key) {
            (Some(b), Some(k)) => format!("/{b}/{k}"),
            (Some(b), None) => format!("/{b}"),
            _ => "/".to_string(),
        };
        let err = match sigv4::verify(
            &signed,
            Service::S3.signing_name(),
            self.credentials.as_ref(),
            self.clock.now(),
        ) {
            Err(e) => ApiError::from_auth(&e, Protocol::S3),
            Ok(_) => ApiError::new(
                ErrorCode::NotImplemented,
                "the S3 API is not served by this endpoint",
            ),
        };
        err.with_resource(resource)
    }
}

/// Hands a request to the S3 service; its errors are already S3 XML
/// responses, anything else is a bug reported as a 500.
async fn serve_s3(s3: &S3Service, request: Request<Body>) -> Response<Body> {
    let request = request.map(s3s::Body::http_body_unsync);
    match s3.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            tracing::error!(error = ?e, "s3 request failed");
            let mut response = Response::new(Body::from("internal error"));
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

/// Reads at most `limit` bytes of body, rejecting early on a declared
/// `Content-Length` over the limit.
async fn read_limited(parts: &Parts, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(json11::body_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(json11::body_too_large(limit))
        }
        Err(err) => Err(ApiError::serialization(format!(
            "request body could not be read: {err}"
        ))),
    }
}

/// A random (version 4) UUID, the format AWS uses for request ids.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(builder: http::request::Builder) -> Parts {
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn classification_table() {
        let s3 = |bucket: Option<&str>, key: Option<&str>, virtual_host| {
            Ok(Route::S3(S3Route {
                bucket: bucket.map(str::to_string),
                key: key.map(str::to_string),
                virtual_host,
            }))
        };
        let json = |service, op: &str| {
            Ok(Route::Json {
                service,
                operation: op.to_string(),
            })
        };
        let cases: Vec<(http::request::Builder, Result<Route, ErrorCode>)> = vec![
            (
                Request::post("/").header(
                    "x-amz-target",
                    "AmazonEC2ContainerServiceV20141113.ListClusters",
                ),
                json(Service::Ecs, "ListClusters"),
            ),
            (
                Request::post("/").header("x-amz-target", "Logs_20140328.CreateLogGroup"),
                json(Service::Logs, "CreateLogGroup"),
            ),
            (
                Request::post("/")
                    .header("x-amz-target", "AnyScaleFrontendService.PutScalingPolicy"),
                json(Service::ApplicationAutoScaling, "PutScalingPolicy"),
            ),
            (
                Request::post("/").header("x-amz-target", "Nope.ListClusters"),
                Err(ErrorCode::UnknownOperationException),
            ),
            (
                Request::post("/").header("content-type", "application/x-amz-json-1.1"),
                Err(ErrorCode::UnknownOperationException),
            ),
            (
                Request::get("/").header("host", "127.0.0.1:4566"),
                s3(None, None, false),
            ),
            (
                Request::get("/bucket").header("host", "localhost:4566"),
                s3(Some("bucket"), None, false),
            ),
            (
                Request::put("/bucket/dir/a%20b.txt").header("host", "localhost"),
                s3(Some("bucket"), Some("dir/a b.txt"), false),
            ),
            (
                Request::get("/dir/key").header("host", "my.bucket.localhost:4566"),
                s3(Some("my.bucket"), Some("dir/key"), true),
            ),
            (
                Request::get("/").header("host", "bucket.localhost"),
                s3(Some("bucket"), None, true),
            ),
            (
                Request::get("/b/k").header("host", "[::1]:4566"),
                s3(Some("b"), Some("k"), false),
            ),
        ];
        for (builder, expected) in cases {
            let parts = parts(builder);
            let got = classify(&parts).map_err(|e| e.code());
            assert_eq!(got, expected, "{} {:?}", parts.uri, parts.headers);
        }
    }

    #[test]
    fn services_know_their_names() {
        for service in [Service::Ecs, Service::ApplicationAutoScaling, Service::Logs] {
            let prefix = service.target_prefix().unwrap();
            assert_eq!(Service::from_target_prefix(prefix), Some(service));
        }
        assert_eq!(Service::S3.target_prefix(), None);
        assert_eq!(
            Service::ApplicationAutoScaling.signing_name(),
            "application-autoscaling"
        );
    }

    #[test]
    fn request_ids_are_uuids() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
