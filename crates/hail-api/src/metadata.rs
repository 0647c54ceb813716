//! The ECS task metadata endpoint, version 4: the HTTP side.
//!
//! Every container of a task gets `ECS_CONTAINER_METADATA_URI_V4` =
//! `http://169.254.170.2/v4/<task id>-<container name>` ([`metadata_uri`]) and
//! reads, with plain unsigned GETs:
//!
//! | path                     | answer                                         |
//! |--------------------------|------------------------------------------------|
//! | `/v4/{id}`               | the container's metadata                       |
//! | `/v4/{id}/task`          | the task's metadata, with all its containers   |
//! | `/v4/{id}/taskWithTags`  | the same plus `TaskTags`                       |
//! | `/v4/{id}/stats`         | Docker stats of the container                  |
//! | `/v4/{id}/task/stats`    | Docker stats of every container, by Docker id  |
//!
//! This module parses the request into a [`MetadataRequest`] ([`route`], one
//! table), hands it with the caller's address to a [`TaskMetadataSource`],
//! and writes the JSON it gets back. What the answers contain is the source's
//! business (the engine's `metadata` module).
//!
//! Requests carry no credentials: as on ECS, the caller is identified by its
//! source address. A source answers only a caller whose address is the
//! address of the task the id names ([`PeerPolicy`]); anyone else gets the
//! same 404 as for an id that does not exist, so one task can neither read
//! another's metadata nor learn that it exists. The router therefore needs
//! the peer address of every connection: serve it with
//! `router.into_make_service_with_connect_info::<SocketAddr>()`. A request
//! that arrives without one is refused with a 500 rather than guessed at.
//!
//! Error bodies are JSON strings (`"V4 task metadata handler: …"`), as the ECS
//! agent writes them.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use serde_json::Value;

/// The environment variable that carries a container's endpoint.
pub const METADATA_URI_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// The address tasks reach the endpoint at, as on ECS.
pub const ECS_AGENT_ADDRESS: &str = "169.254.170.2";
/// Length of a task id: 32 lowercase hex digits.
pub const TASK_ID_LEN: usize = 32;
/// Longest container name ECS accepts.
const MAX_CONTAINER_NAME_LEN: usize = 255;

/// The endpoint URI of container `container` of task `task_id`, served at
/// `host_port` (`169.254.170.2:80`, `169.254.170.2:51679`, or a bare host).
/// Port 80 is left out, as ECS writes it; every other port stays, since the
/// container must reach exactly that socket.
pub fn metadata_uri(host_port: &str, task_id: &str, container: &str) -> String {
    let authority = host_port.strip_suffix(":80").unwrap_or(host_port);
    format!("http://{authority}/v4/{task_id}-{container}")
}

/// The `<id>` of a metadata path: which container of which task.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetadataId {
    /// 32 lowercase hex digits.
    pub task_id: String,
    /// The container's name within the task.
    pub container: String,
}

impl MetadataId {
    /// Parses `<task id>-<container name>`. Task ids have a fixed length, so
    /// the split is after 32 characters however many dashes the container
    /// name holds. `None` for anything else: no such id can exist.
    pub fn parse(id: &str) -> Option<MetadataId> {
        let task_id = id.get(..TASK_ID_LEN)?;
        let container = id.get(TASK_ID_LEN..)?.strip_prefix('-')?;
        let task_ok = task_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let container_ok = (1..=MAX_CONTAINER_NAME_LEN).contains(&container.len())
            && container
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (task_ok && container_ok).then(|| MetadataId {
            task_id: task_id.to_owned(),
            container: container.to_owned(),
        })
    }
}

impl std::fmt::Display for MetadataId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.task_id, self.container)
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/v4/{id}`
    Container,
    /// `/v4/{id}/task`
    Task,
    /// `/v4/{id}/taskWithTags`
    TaskWithTags,
    /// `/v4/{id}/stats`
    ContainerStats,
    /// `/v4/{id}/task/stats`
    TaskStats,
}

impl Endpoint {
    /// The prefix of error messages, in the ECS agent's words.
    fn handler_name(self) -> &'static str {
        match self {
            Endpoint::Container => "V4 container metadata handler",
            Endpoint::Task | Endpoint::TaskWithTags => "V4 task metadata handler",
            Endpoint::ContainerStats => "V4 container stats handler",
            Endpoint::TaskStats => "V4 task stats handler",
        }
    }
}

/// A parsed metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest {
    pub id: MetadataId,
    pub endpoint: Endpoint,
}

/// Why a request matched no endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this path (or its id cannot exist).
    NotFound,
    /// The path names an endpoint, which answers GET only.
    MethodNotAllowed,
}

/// The routing table: `method` and `path` (without the query) to the request
/// they make.
pub fn route(method: &Method, path: &str) -> Result<MetadataRequest, RouteError> {
    let rest = path.strip_prefix("/v4/").ok_or(RouteError::NotFound)?;
    let (id, endpoint) = match rest.split_once('/') {
        None => (rest, Endpoint::Container),
        Some((id, "task")) => (id, Endpoint::Task),
        Some((id, "taskWithTags")) => (id, Endpoint::TaskWithTags),
        Some((id, "stats")) => (id, Endpoint::ContainerStats),
        Some((id, "task/stats")) => (id, Endpoint::TaskStats),
        Some(_) => return Err(RouteError::NotFound),
    };
    let id = MetadataId::parse(id).ok_or(RouteError::NotFound)?;
    if method != Method::GET {
        return Err(RouteError::MethodNotAllowed);
    }
    Ok(MetadataRequest { id, endpoint })
}

/// Why a source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// No such task or container, or the caller may not read it. One
    /// variant for both, so that an answer never tells them apart.
    #[error("no metadata for this id")]
    NotFound,
    /// The task exists and the caller may read it, but the answer could not
    /// be produced (the store failed, the container is not running, …).
    #[error("{message}")]
    Unavailable { message: String },
}

impl MetadataError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        MetadataError::Unavailable {
            message: message.into(),
        }
    }
}

/// Which callers may read a task's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerPolicy {
    /// Only a caller whose address is the task's own.
    #[default]
    TaskAddressOnly,
    /// Also any loopback caller, for every task: for tests and tools on the
    /// host, never for a server that tasks reach.
    AllowLoopback,
}

impl PeerPolicy {
    /// Whether `peer` may read the metadata of a task at `task_address`
    /// (`None` when the task has no address, or none that is still its own).
    /// IPv4 callers seen through a dual-stack socket (`::ffff:a.b.c.d`)
    /// count as their IPv4 address.
    pub fn permits(self, peer: IpAddr, task_address: Option<IpAddr>) -> bool {
        let peer = peer.to_canonical();
        if self == PeerPolicy::AllowLoopback && peer.is_loopback() {
            return true;
        }
        task_address.is_some_and(|task| task.to_canonical() == peer)
    }
}

/// What answers metadata requests. Each method gets the parsed id and the
/// caller's address, and must answer [`MetadataError::NotFound`] unless the
/// caller may read that task (see [`PeerPolicy::permits`]).
pub trait TaskMetadataSource: Send + Sync + 'static {
    /// The container's metadata (`/v4/{id}`).
    fn container(
        &self,
        id: &MetadataId,
        peer: IpAddr,
    ) -> impl Future<Output = Result<Value, MetadataError>> + Send;

    /// The task's metadata (`/v4/{id}/task`), with `TaskTags` when
    /// `with_tags` (`/v4/{id}/taskWithTags`).
    fn task(
        &self,
        id: &MetadataId,
        peer: IpAddr,
        with_tags: bool,
    ) -> impl Future<Output = Result<Value, MetadataError>> + Send;

    /// Docker stats of the container (`/v4/{id}/stats`).
    fn container_stats(
        &self,
        id: &MetadataId,
        peer: IpAddr,
    ) -> impl Future<Output = Result<Value, MetadataError>> + Send;

    /// Docker stats of every container of the task, by Docker id
    /// (`/v4/{id}/task/stats`).
    fn task_stats(
        &self,
        id: &MetadataId,
        peer: IpAddr,
    ) -> impl Future<Output = Result<Value, MetadataError>> + Send;

    /// The task role's temporary credentials (`/v2/credentials/{id}`, the
    /// path of `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`), in the shape the
    /// AWS SDKs' container credential providers read: `AccessKeyId`,
    /// `SecretAccessKey`, `Token`, `Expiration`, `RoleArn`.
    fn credentials(
        &self,
        id: &str,
        peer: IpAddr,
    ) -> impl Future<Output = Result<Value, MetadataError>> + Send;
}

/// The path prefix of the task credentials endpoint.
pub const CREDENTIALS_PATH: &str = "/v2/credentials/";
/// The variables that tell the AWS SDKs where a task's credentials are.
pub const CREDENTIALS_RELATIVE_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
pub const CREDENTIALS_FULL_URI_ENV: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";

/// Whether `path` belongs to the task endpoints (metadata or credentials)
/// rather than to the APIs served beside them on the same socket. Bucket
/// names are at least three characters, so `/v4/…` and `/v2/…` are never S3.
pub fn is_task_endpoint(path: &str) -> bool {
    path.starts_with("/v4/") || path.starts_with(CREDENTIALS_PATH)
}

/// Answers a credentials request as the ECS agent does.
async fn handle_credentials<S: TaskMetadataSource>(
    source: &S,
    method: Method,
    peer: Option<SocketAddr>,
    id: &str,
) -> Response<Body> {
    let error = |status: StatusCode, code: &str, message: &str| {
        json_response(
            status,
            &serde_json::json!({"code": code, "message": message}),
        )
    };
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "CredentialsV2Request: the credentials endpoint answers GET only",
        );
    }
    let Some(peer) = peer else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "CredentialsV2Request: the server does not know the caller's address",
        );
    };
    match source.credentials(id, peer.ip()).await {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(MetadataError::NotFound) => error(
            StatusCode::BAD_REQUEST,
            "InvalidIdInRequest",
            "CredentialsV2Request: Credentials not found",
        ),
        Err(MetadataError::Unavailable { message }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &format!("CredentialsV2Request: {message}"),
        ),
    }
}

/// The endpoint as an axum router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: answers depend on
/// the caller's address.
pub fn metadata_router<S: TaskMetadataSource>(source: Arc<S>) -> axum::Router {
    axum::Router::new().fallback(move |request: Request| {
        let source = Arc::clone(&source);
        async move { handle(source.as_ref(), request).await }
    })
}

/// Answers one request; never fails, every failure is a JSON error response.
pub async fn handle<S: TaskMetadataSource>(source: &S, request: Request) -> Response<Body> {
    if let Some(id) = request.uri().path().strip_prefix(CREDENTIALS_PATH) {
        let id = id.to_owned();
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let method = request.method().clone();
        return handle_credentials(source, method, peer, &id).await;
    }
    let MetadataRequest { id, endpoint } = match route(request.method(), request.uri().path()) {
        Ok(parsed) => parsed,
        Err(RouteError::NotFound) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &Value::from(format!("no metadata endpoint at {}", request.uri().path())),
            )
        }
        Err(RouteError::MethodNotAllowed) => {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &Value::from(format!(
                    "{} is not allowed: the metadata endpoint answers GET only",
                    request.method()
                )),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
    };
    let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        // Without the caller's address no request can be authorised; this
        // is a wiring mistake of the server, not the caller's.
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &Value::from(format!(
                "{}: the server does not know the caller's address",
                endpoint.handler_name()
            )),
        );
    };
    let peer = peer.ip();
    let answer = match endpoint {
        Endpoint::Container => source.container(&id, peer).await,
        Endpoint::Task => source.task(&id, peer, false).await,
        Endpoint::TaskWithTags => source.task(&id, peer, true).await,
        Endpoint::ContainerStats => source.container_stats(&id, peer).await,
        Endpoint::TaskStats => source.task_stats(&id, peer).await,
    };
    match answer {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(MetadataError::NotFound) => json_response(
            StatusCode::NOT_FOUND,
            &Value::from(format!(
                "{}: no task metadata for endpoint id {id}",
                endpoint.handler_name()
            )),
        ),
        Err(MetadataError::Unavailable { message }) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &Value::from(format!("{}: {message}", endpoint.handler_name())),
        ),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const TASK: &str = "0123456789abcdef0123456789abcdef";

    fn id(container: &str) -> MetadataId {
        MetadataId {
            task_id: TASK.to_owned(),
            container: container.to_owned(),
        }
    }

    #[test]
    fn routing_table() {
        let ok = |container: &str, endpoint| {
            Ok(MetadataRequest {
                id: id(container),
                endpoint,
            })
        };
        let cases: Vec<(Method, String, Result<MetadataRequest, RouteError>)> = vec![
            (
                Method::GET,
                format!("/v4/{TASK}-app"),
                ok("app", Endpoint::Container),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-app/task"),
                ok("app", Endpoint::Task),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-app/taskWithTags"),
                ok("app", Endpoint::TaskWithTags),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-app/stats"),
                ok("app", Endpoint::ContainerStats),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-app/task/stats"),
                ok("app", Endpoint::TaskStats),
            ),
            // Dashes in the container name stay in it.
            (
                Method::GET,
                format!("/v4/{TASK}-tom-thumb-container"),
                ok("tom-thumb-container", Endpoint::Container),
            ),
            (
                Method::POST,
                format!("/v4/{TASK}-app"),
                Err(RouteError::MethodNotAllowed),
            ),
            (
                Method::HEAD,
                format!("/v4/{TASK}-app/task"),
                Err(RouteError::MethodNotAllowed),
            ),
            (
                Method::DELETE,
                format!("/v4/{TASK}-app/task/stats"),
                Err(RouteError::MethodNotAllowed),
            ),
            // Unknown paths are not found whatever the method.
            (
                Method::POST,
                format!("/v4/{TASK}-app/credentials"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-app/"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-app/task/"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v3/{TASK}-app"),
                Err(RouteError::NotFound),
            ),
            (Method::GET, "/v4/".to_owned(), Err(RouteError::NotFound)),
            (Method::GET, "/".to_owned(), Err(RouteError::NotFound)),
            (
                Method::GET,
                format!("/v4/{TASK}"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}_app"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{}-app", TASK.to_uppercase()),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{}-app", &TASK[1..]),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-a%2Fb"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-a.b"),
                Err(RouteError::NotFound),
            ),
            (
                Method::GET,
                format!("/v4/{TASK}-{}", "n".repeat(256)),
                Err(RouteError::NotFound),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(&method, &path), expected, "{method} {path}");
        }
    }

    #[test]
    fn ids_split_after_the_task_id() {
        let parsed = MetadataId::parse(&format!("{TASK}-a-b_c")).unwrap();
        assert_eq!(parsed, id("a-b_c"));
        assert_eq!(parsed.to_string(), format!("{TASK}-a-b_c"));
        // Multi-byte characters never split a slice in the middle.
        assert_eq!(MetadataId::parse(&format!("a{}", "é".repeat(20))), None);
        assert_eq!(MetadataId::parse(""), None);
    }

    #[test]
    fn uris_leave_out_port_80_only() {
        assert_eq!(
            metadata_uri("169.254.170.2:80", TASK, "app"),
            format!("http://169.254.170.2/v4/{TASK}-app")
        );
        assert_eq!(
            metadata_uri("169.254.170.2:51679", TASK, "app"),
            format!("http://169.254.170.2:51679/v4/{TASK}-app")
        );
        assert_eq!(
            metadata_uri(ECS_AGENT_ADDRESS, TASK, "app"),
            format!("http://169.254.170.2/v4/{TASK}-app")
        );
        assert_eq!(
            metadata_uri("169.254.170.2:8080", TASK, "app"),
            format!("http://169.254.170.2:8080/v4/{TASK}-app")
        );
        // What the URI names is what the router parses.
        let uri = metadata_uri("169.254.170.2:80", TASK, "my-app");
        let path = uri.strip_prefix("http://169.254.170.2").unwrap();
        assert_eq!(
            route(&Method::GET, path),
            Ok(MetadataRequest {
                id: id("my-app"),
                endpoint: Endpoint::Container
            })
        );
    }

    #[test]
    fn peers_are_matched_against_the_task_address() {
        let task: IpAddr = Ipv4Addr::new(10, 217, 0, 5).into();
        let other: IpAddr = Ipv4Addr::new(10, 217, 0, 6).into();
        let loopback: IpAddr = Ipv4Addr::LOCALHOST.into();
        let mapped: IpAddr = Ipv4Addr::new(10, 217, 0, 5).to_ipv6_mapped().into();
        let strict = PeerPolicy::default();
        assert_eq!(strict, PeerPolicy::TaskAddressOnly);
        assert!(strict.permits(task, Some(task)));
        assert!(strict.permits(mapped, Some(task)));
        assert!(!strict.permits(other, Some(task)));
        assert!(!strict.permits(loopback, Some(task)));
        assert!(!strict.permits(task, None));
        assert!(!strict.permits(Ipv6Addr::LOCALHOST.into(), None));
        let lenient = PeerPolicy::AllowLoopback;
        assert!(lenient.permits(loopback, Some(task)));
        assert!(lenient.permits(loopback, None));
        assert!(lenient.permits(Ipv6Addr::LOCALHOST.into(), None));
        assert!(lenient.permits(task, Some(task)));
        assert!(!lenient.permits(other, Some(task)));
    }
}
