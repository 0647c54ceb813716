//! The HTTP service: routes, content negotiation and the mapping of every
//! error to a status, in one place.
//!
//! | route                   | answer                                       |
//! |-------------------------|----------------------------------------------|
//! | `GET /`                 | usage page with an upload form               |
//! | `GET /healthz`          | `ok`                                         |
//! | `GET /countme/<key>`    | counts object `<key>` of the bucket `BUCKET` |
//! | `GET /countme-test/`    | counts the bundled photo                     |
//! | `POST /count`           | counts the body (raw or multipart form)      |
//!
//! A count is `$1.17` as text, a JSON report with `Accept:
//! application/json`, or the photo with the coins drawn on it with
//! `?annotate=1` (PNG).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::bucket::{Bucket, BucketError};
use crate::error::CountError;
use crate::{annotate, decode, report, Count};

/// The largest photo accepted, uploaded or read from the bucket.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// The photo `GET /countme-test/` counts (MIT licence, see the README).
pub const TEST_PHOTO: &[u8] = include_bytes!("../assets/jeffninghan_coins_coin.JPG");

/// Everything a request may fail on, with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Count(#[from] CountError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("request body too large: the limit is {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("bad upload: {reason}")]
    BadUpload { reason: String },
    #[error("no bucket configured: set BUCKET")]
    NoBucket,
    #[error("internal error: {reason}")]
    Internal { reason: String },
}

impl ServiceError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServiceError::Count(CountError::NotAnImage { .. }) => StatusCode::BAD_REQUEST,
            ServiceError::Count(CountError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Count(CountError::NoCoins | CountError::NoQuarter { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ServiceError::Bucket(BucketError::NoSuchKey { .. }) => StatusCode::NOT_FOUND,
            ServiceError::Bucket(BucketError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Bucket(BucketError::Unreachable { .. }) => StatusCode::BAD_GATEWAY,
            ServiceError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::BadUpload { .. } => StatusCode::BAD_REQUEST,
            ServiceError::NoBucket => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable name for the JSON `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Count(CountError::NotAnImage { .. }) => "not_an_image",
            ServiceError::Count(CountError::TooLarge { .. }) => "image_too_large",
            ServiceError::Count(CountError::NoCoins) => "no_coins",
            ServiceError::Count(CountError::NoQuarter { .. }) => "no_quarter",
            ServiceError::Bucket(BucketError::NoSuchKey { .. }) => "no_such_key",
            ServiceError::Bucket(BucketError::TooLarge { .. }) => "object_too_large",
            ServiceError::Bucket(BucketError::Unreachable { .. }) => "bucket_unreachable",
            ServiceError::BodyTooLarge { .. } => "body_too_large",
            ServiceError::BadUpload { .. } => "bad_upload",
            ServiceError::NoBucket => "no_bucket",
            ServiceError::Internal { .. } => "internal",
        }
    }
}

/// What the client asked the answer to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Text,
    Json,
    Annotated,
}

#[derive(Debug, Deserialize, Default)]
pub struct CountQuery {
    annotate: Option<String>,
}

impl Answer {
    pub fn negotiate(headers: &HeaderMap, query: &CountQuery) -> Self {
        let annotate = query
            .annotate
            .as_deref()
            .is_some_and(|v| matches!(v, "1" | "true" | "yes" | "on"));
        if annotate {
            return Answer::Annotated;
        }
        if wants_json(headers) {
            Answer::Json
        } else {
            Answer::Text
        }
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            media.eq_ignore_ascii_case("application/json") && !refused
        })
}

/// A failed request, answered in the format the client asked for.
struct Failure {
    error: ServiceError,
    json: bool,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = self.error.status();
        if self.json {
            let body = serde_json::json!({
                "error": self.error.code(),
                "message": self.error.to_string(),
            });
            (status, axum::Json(body)).into_response()
        } else {
            (status, format!("error: {}\n", self.error)).into_response()
        }
    }
}

/// What the handlers share.
pub struct AppState {
    pub bucket: Option<Bucket>,
    /// Bounds how many photos are decoded and counted at once, and so the
    /// memory they take.
    pub counting: Semaphore,
}

impl AppState {
    pub fn new(bucket: Option<Bucket>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            bucket,
            counting: Semaphore::new(cores),
        }
    }
}

/// The service's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(usage))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/countme/{*key}", get(count_object))
        .route("/countme-test/", get(count_test_photo))
        .route("/countme-test", get(count_test_photo))
        .route("/count", post(count_upload))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn usage() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("usage.html"),
    )
}

async fn count_object(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(query): Query<CountQuery>,
    headers: HeaderMap,
) -> Response {
    let answer = Answer::negotiate(&headers, &query);
    let started = Instant::now();
    let result = async {
        let bucket = state.bucket.as_ref().ok_or(ServiceError::NoBucket)?;
        let bytes = bucket.get(&key, MAX_BODY_BYTES as u64).await?;
        count_and_answer(&state, bytes, answer).await
    }
    .await;
    respond("GET /countme/", &key, started, answer, result)
}

async fn count_test_photo(
    State(state): State<Arc<AppState>>,
    Query(query): Query<CountQuery>,
    headers: HeaderMap,
) -> Response {
    let answer = Answer::negotiate(&headers, &query);
    let started = Instant::now();
    let result = count_and_answer(&state, TEST_PHOTO.to_vec(), answer).await;
    respond("GET /countme-test/", "", started, answer, result)
}

async fn count_upload(
    State(state): State<Arc<AppState>>,
    Query(query): Query<CountQuery>,
    request: Request,
) -> Response {
    let answer = Answer::negotiate(request.headers(), &query);
    let started = Instant::now();
    let result = async {
        let bytes = read_upload(request, &state).await?;
        count_and_answer(&state, bytes, answer).await
    }
    .await;
    respond("POST /count", "", started, answer, result)
}

/// The photo of an upload: the first file of a multipart form, or else the
/// whole body.
async fn read_upload(request: Request, state: &Arc<AppState>) -> Result<Vec<u8>, ServiceError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let too_large = || ServiceError::BodyTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let bytes = if multipart {
        let mut form =
            Multipart::from_request(request, state)
                .await
                .map_err(|e| ServiceError::BadUpload {
                    reason: e.body_text(),
                })?;
        let mut photo = None;
        loop {
            let field = form.next_field().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ServiceError::BadUpload {
                        reason: e.body_text(),
                    }
                }
            })?;
            let Some(field) = field else { break };
            if field.file_name().is_none() && field.name() != Some("image") {
                continue;
            }
            let data = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ServiceError::BadUpload {
                        reason: e.body_text(),
                    }
                }
            })?;
            photo = Some(data.to_vec());
            break;
        }
        photo.ok_or_else(|| ServiceError::BadUpload {
            reason: "the form has no file field".into(),
        })?
    } else {
        axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| too_large())?
            .to_vec()
    };
    if bytes.is_empty() {
        return Err(ServiceError::BadUpload {
            reason: "the body is empty: send a photo".into(),
        });
    }
    Ok(bytes)
}

/// Decodes and counts `bytes` off the async threads, at most one photo per
/// core at a time, and renders the answer.
async fn count_and_answer(
    state: &Arc<AppState>,
    bytes: Vec<u8>,
    answer: Answer,
) -> Result<(Count, Response), ServiceError> {
    let _permit = state
        .counting
        .acquire()
        .await
        .map_err(|e| ServiceError::Internal {
            reason: e.to_string(),
        })?;
    let work = tokio::task::spawn_blocking(move || -> Result<(Count, Response), ServiceError> {
        let image = decode::decode(&bytes)?;
        drop(bytes);
        let count = crate::count_image(&image.rgb, image.original)?;
        let response = match answer {
            Answer::Text => (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                report::text(&count),
            )
                .into_response(),
            Answer::Json => axum::Json(report::report(&count)).into_response(),
            Answer::Annotated => {
                let drawn = annotate::annotate(&image.rgb, &count);
                let mut png = Vec::new();
                drawn
                    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                    .map_err(|e| ServiceError::Internal {
                        reason: format!("encoding the annotated photo: {e}"),
                    })?;
                let mut response = Response::new(Body::from(png));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
                response
            }
        };
        Ok((count, response))
    });
    work.await.map_err(|e| ServiceError::Internal {
        reason: format!("counting task: {e}"),
    })?
}

/// Logs one line for the request and answers it.
fn respond(
    route: &str,
    key: &str,
    started: Instant,
    answer: Answer,
    result: Result<(Count, Response), ServiceError>,
) -> Response {
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok((count, mut response)) => {
            eprintln!(
                "{route}{key} 200 {} ({} coins) {elapsed:.0} ms",
                report::dollars(count.total_cents),
                count.coins.len()
            );
            response
                .headers_mut()
                .insert("x-total-cents", HeaderValue::from(count.total_cents));
            response
        }
        Err(error) => {
            eprintln!(
                "{route}{key} {} {error} {elapsed:.0} ms",
                error.status().as_u16()
            );
            Failure {
                error,
                json: answer == Answer::Json,
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        h
    }

    #[test]
    fn answers_are_negotiated() {
        let none = CountQuery::default();
        let annotate = CountQuery {
            annotate: Some("1".into()),
        };
        assert_eq!(Answer::negotiate(&HeaderMap::new(), &none), Answer::Text);
        assert_eq!(Answer::negotiate(&headers("*/*"), &none), Answer::Text);
        assert_eq!(
            Answer::negotiate(&headers("text/html, application/json;q=0.9"), &none),
            Answer::Json
        );
        assert_eq!(
            Answer::negotiate(&headers("application/json; q=0"), &none),
            Answer::Text
        );
        assert_eq!(
            Answer::negotiate(&headers("application/json"), &annotate),
            Answer::Annotated
        );
    }

    #[test]
    fn every_error_has_its_status() {
        let table: Vec<(ServiceError, u16)> = vec![
            (CountError::NotAnImage { reason: "x".into() }.into(), 400),
            (
                CountError::TooLarge {
                    width: 1,
                    height: 1,
                    max_pixels: 1,
                }
                .into(),
                413,
            ),
            (CountError::NoCoins.into(), 422),
            (CountError::NoQuarter { reason: "x".into() }.into(), 422),
            (
                BucketError::NoSuchKey {
                    bucket: "b".into(),
                    key: "k".into(),
                }
                .into(),
                404,
            ),
            (
                BucketError::Unreachable {
                    bucket: "b".into(),
                    key: "k".into(),
                    reason: "x".into(),
                }
                .into(),
                502,
            ),
            (ServiceError::BodyTooLarge { limit: 1 }, 413),
            (ServiceError::NoBucket, 503),
        ];
        for (error, status) in table {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }
}
