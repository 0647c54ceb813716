//! AWS JSON 1.1 framing: the `X-Amz-Target` header names the operation, the
//! body is one JSON object, and every response is
//! `application/x-amz-json-1.1`.

use axum::body::Body;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde_json::Value;

use crate::error::{insert_request_id, ApiError, ErrorCode, AMZ_JSON_1_1};
use crate::router::Service;

/// Largest request body the control-plane APIs accept by default. AWS's own
/// limits for these APIs are of this order and no legitimate ECS, Logs or
/// Application Auto Scaling request comes near it.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The header that names the operation.
pub const TARGET_HEADER: &str = "x-amz-target";

/// Parses `X-Amz-Target` (`<TargetPrefix>.<Operation>`) into the service and
/// an operation name that exists in that service's API.
pub fn parse_target(target: &str) -> Result<(Service, &str), ApiError> {
    let unknown = || {
        ApiError::new(
            ErrorCode::UnknownOperationException,
            format!("operation target {target:?} is not recognized"),
        )
    };
    let (prefix, operation) = target.split_once('.').ok_or_else(unknown)?;
    let service = Service::from_target_prefix(prefix).ok_or_else(unknown)?;
    if service.operations().binary_search(&operation).is_err() {
        return Err(unknown());
    }
    Ok((service, operation))
}

/// Parses the request body. An empty body means an operation without input;
/// anything else must be one JSON object.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ApiError::serialization(
            "request body must be a JSON object",
        )),
        Err(err) => Err(ApiError::serialization(format!(
            "request body is not valid JSON: {err}"
        ))),
    }
}

/// The error for a body over `limit` bytes.
pub fn body_too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::RequestEntityTooLargeException,
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

/// A successful JSON 1.1 response: status 200 and the operation's output.
pub fn success_response(output: &Value, request_id: &str) -> Response<Body> {
    let body = serde_json::to_vec(output).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON_1_1));
    insert_request_id(headers, "x-amzn-requestid", request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn targets_route_to_services_and_known_operations() {
        let table: &[(&str, Option<(Service, &str)>)] = &[
            (
                "AmazonEC2ContainerServiceV20141113.ListClusters",
                Some((Service::Ecs, "ListClusters")),
            ),
            (
                "AmazonEC2ContainerServiceV20141113.RunTask",
                Some((Service::Ecs, "RunTask")),
            ),
            (
                "AnyScaleFrontendService.RegisterScalableTarget",
                Some((Service::ApplicationAutoScaling, "RegisterScalableTarget")),
            ),
            (
                "Logs_20140328.PutLogEvents",
                Some((Service::Logs, "PutLogEvents")),
            ),
            (
                "Logs_20140328.GetLogEvents",
                Some((Service::Logs, "GetLogEvents")),
            ),
            ("AmazonEC2ContainerServiceV20141113.listClusters", None),
            ("AmazonEC2ContainerServiceV20141113.PutLogEvents", None),
            ("AmazonEC2ContainerServiceV20141113.", None),
            ("AmazonEC2ContainerServiceV20141113", None),
            ("DynamoDB_20120810.ListTables", None),
            ("", None),
            (".", None),
            ("Logs_20140328.PutLogEvents.Extra", None),
        ];
        for (target, expected) in table {
            match (parse_target(target), expected) {
                (Ok(got), Some(want)) => assert_eq!(got, *want, "{target}"),
                (Err(err), None) => {
                    assert_eq!(err.code(), ErrorCode::UnknownOperationException, "{target}");
                    assert_eq!(err.http_status(), 400);
                }
                (got, want) => panic!("{target}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn operation_tables_are_sorted_and_unique() {
        for service in [Service::Ecs, Service::ApplicationAutoScaling, Service::Logs] {
            let ops = service.operations();
            assert!(ops.len() > 10, "{service:?}");
            assert!(ops.windows(2).all(|w| w[0] < w[1]), "{service:?}");
        }
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert_eq!(parse_body(b"").unwrap(), serde_json::json!({}));
        assert_eq!(parse_body(b" \n").unwrap(), serde_json::json!({}));
        assert_eq!(parse_body(br#"{"cluster":"a"}"#).unwrap()["cluster"], "a");
        for bad in [
            &b"{"[..],
            b"[]",
            b"\"x\"",
            b"null",
            b"{\"a\":1}{}",
            b"\xff\xfe",
            b"{\"a\":\"\xff\"}",
        ] {
            let err = parse_body(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::SerializationException);
            assert_eq!(err.http_status(), 400);
        }
    }

    #[tokio::test]
    async fn success_is_200_amz_json() {
        let response = success_response(&serde_json::json!({"clusterArns": []}), "rid");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], AMZ_JSON_1_1);
        assert_eq!(response.headers()["x-amzn-requestid"], "rid");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"clusterArns":[]}"#);
    }

    #[test]
    fn too_large_is_413() {
        let err = body_too_large(10);
        assert_eq!(err.http_status(), 413);
        assert!(err.message().contains("10 bytes"));
    }
}
