//! The engine's failures and the one place they become AWS errors.

use hail_api::{ApiError, ErrorCode};
use hail_model::arn::ArnError;
use hail_model::ecs::{DecodeError, ValidationError};
use hail_store::StoreError;

/// Everything an operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request body does not fit the operation's input shape.
    #[error("{operation}: {source}")]
    Decode {
        operation: String,
        #[source]
        source: DecodeError,
    },
    /// The body parsed but a value breaks ECS's rules.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A parameter that must name a resource names none this endpoint owns.
    #[error("{field}: {source}")]
    Arn {
        field: &'static str,
        #[source]
        source: ArnError,
    },
    #[error("cluster {name} not found")]
    ClusterNotFound { name: String },
    #[error("The Cluster cannot be deleted while Services are active.")]
    ClusterContainsServices { name: String },
    #[error("cluster {name} cannot be deleted while {count} of its tasks are not stopped")]
    ClusterContainsTasks { name: String, count: u64 },
    /// DescribeTaskDefinition named no registered revision; ECS's wording,
    /// which clients match on, then the reference.
    #[error("Unable to describe task definition. ({reference})")]
    TaskDefinitionNotDescribed { reference: String },
    /// DeregisterTaskDefinition named no registered revision; ECS's wording,
    /// which clients match on, then the reference.
    #[error("The specified task definition does not exist. ({reference})")]
    TaskDefinitionMissing { reference: String },
    /// A CloudWatch Logs failure, already in CloudWatch's words.
    #[error(transparent)]
    Logs(#[from] crate::logs::LogsError),
    /// An Application Auto Scaling failure, already in that API's words.
    #[error(transparent)]
    AutoScaling(#[from] crate::autoscaling::AutoScalingError),
    /// RunTask named no registered revision; ECS's wording.
    #[error("TaskDefinition not found.")]
    TaskDefinitionNotFound,
    /// A RunTask clientToken that came before with a different request.
    #[error("clientToken {token} was already used with a different request")]
    ClientTokenReused { token: String },
    /// StopTask named no task of the cluster; ECS's wording.
    #[error("The referenced task was not found.")]
    TaskNotFound,
    /// A service operation named no service of the cluster; ECS's wording.
    #[error("Service not found.")]
    ServiceNotFound,
    /// UpdateService on a service being deleted; ECS's wording.
    #[error("Service was not ACTIVE.")]
    ServiceNotActive,
    /// A tagging operation named a resource that does not exist.
    #[error("The specified resource is not found: {arn}")]
    ResourceNotFound { arn: String },
    /// A native (roles, triggers) resource that does not exist.
    #[error("{what} does not exist")]
    NotFound { what: String },
    /// A native resource whose name is taken.
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// A native request with a bad value: the field and why.
    #[error("{field}: {message}")]
    InvalidParameter { field: String, message: String },
    /// Tasks were asked for, but this engine was started without a container runtime.
    #[error("this engine has no container runtime; tasks cannot run")]
    NoDataPlane,
    /// An operation the API defines that this engine does not serve yet.
    #[error("{service} operation {operation} is not supported by hail yet")]
    Unsupported {
        service: &'static str,
        operation: String,
    },
    /// A failure of the server itself, never the caller's (a worker that
    /// panicked, say).
    #[error("{message}")]
    Internal { message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An output shape that does not serialise; a bug, never the caller's fault.
    #[error("response could not be encoded: {source}")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
}

impl EngineError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::InvalidParameter {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> ApiError {
        let code = match &err {
            EngineError::Decode { .. } | EngineError::Arn { .. } => {
                ErrorCode::InvalidParameterException
            }
            EngineError::Validation(v) => match v.code {
                hail_model::ecs::ErrorCode::ClientException => ErrorCode::ClientException,
                hail_model::ecs::ErrorCode::InvalidParameterException => {
                    ErrorCode::InvalidParameterException
                }
            },
            EngineError::ClusterNotFound { .. } => ErrorCode::ClusterNotFoundException,
            EngineError::ServiceNotFound => ErrorCode::ServiceNotFoundException,
            EngineError::ServiceNotActive => ErrorCode::ServiceNotActiveException,
            EngineError::ClusterContainsTasks { .. } => ErrorCode::ClusterContainsTasksException,
            EngineError::ClusterContainsServices { .. } => {
                ErrorCode::ClusterContainsServicesException
            }
            EngineError::TaskDefinitionNotDescribed { .. }
            | EngineError::TaskDefinitionMissing { .. }
            | EngineError::TaskDefinitionNotFound => ErrorCode::ClientException,
            EngineError::TaskNotFound | EngineError::ClientTokenReused { .. } => {
                ErrorCode::InvalidParameterException
            }
            EngineError::ResourceNotFound { .. } | EngineError::NotFound { .. } => {
                ErrorCode::ResourceNotFoundException
            }
            EngineError::AlreadyExists { .. } => ErrorCode::ResourceAlreadyExistsException,
            EngineError::InvalidParameter { .. } => ErrorCode::InvalidParameterException,
            EngineError::NoDataPlane | EngineError::Internal { .. } => ErrorCode::ServerException,
            EngineError::Logs(e) => match e.kind {
                crate::logs::LogsErrorKind::NotFound => ErrorCode::ResourceNotFoundException,
                crate::logs::LogsErrorKind::AlreadyExists => {
                    ErrorCode::ResourceAlreadyExistsException
                }
                crate::logs::LogsErrorKind::InvalidParameter => {
                    ErrorCode::InvalidParameterException
                }
            },
            EngineError::AutoScaling(e) => {
                use crate::autoscaling::AutoScalingErrorKind as Kind;
                match e.kind {
                    Kind::Validation => ErrorCode::ValidationException,
                    Kind::ObjectNotFound => ErrorCode::ObjectNotFoundException,
                    Kind::ConcurrentUpdate => ErrorCode::ConcurrentUpdateException,
                    Kind::LimitExceeded => ErrorCode::LimitExceededException,
                    Kind::FailedResourceAccess => ErrorCode::FailedResourceAccessException,
                    Kind::InternalService => ErrorCode::InternalServiceException,
                    Kind::InvalidNextToken => ErrorCode::InvalidNextTokenException,
                    Kind::ResourceNotFound => ErrorCode::ResourceNotFoundException,
                    Kind::TooManyTags => ErrorCode::TooManyTagsException,
                }
            }
            EngineError::Unsupported { .. } => ErrorCode::UnknownOperationException,
            // A token or page size the caller sent, checked by the store.
            EngineError::Store(StoreError::InvalidToken { .. })
            | EngineError::Store(StoreError::InvalidArgument { .. }) => {
                ErrorCode::InvalidParameterException
            }
            EngineError::Store(_) | EngineError::Encode { .. } => ErrorCode::ServerException,
        };
        ApiError::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind_of_failure() {
        let cases: Vec<(EngineError, ErrorCode)> = vec![
            (
                EngineError::ClusterNotFound { name: "a".into() },
                ErrorCode::ClusterNotFoundException,
            ),
            (
                ValidationError::client("family", "bad").into(),
                ErrorCode::ClientException,
            ),
            (
                ValidationError::invalid_parameter("clusterName", "bad").into(),
                ErrorCode::InvalidParameterException,
            ),
            (
                StoreError::InvalidToken { token: "x".into() }.into(),
                ErrorCode::InvalidParameterException,
            ),
            (StoreError::WriterGone.into(), ErrorCode::ServerException),
            (
                EngineError::TaskDefinitionNotDescribed {
                    reference: "web:3".into(),
                },
                ErrorCode::ClientException,
            ),
            (
                EngineError::TaskDefinitionMissing {
                    reference: "web:3".into(),
                },
                ErrorCode::ClientException,
            ),
            (
                EngineError::Unsupported {
                    service: "ecs",
                    operation: "RunTask".into(),
                },
                ErrorCode::UnknownOperationException,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let api = ApiError::from(err);
            assert_eq!(api.code(), code, "{text}");
            assert_eq!(api.message(), text);
        }
    }
}
