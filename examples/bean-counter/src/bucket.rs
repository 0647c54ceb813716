//! Reading a photo from the bucket with the AWS SDK for Rust.
//!
//! The configuration comes from the SDK's standard chains: the endpoint
//! from `AWS_ENDPOINT_URL` (unset on AWS), the credentials from the ECS
//! container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or
//! `…_RELATIVE_URI`) inside a task, or the environment or a profile outside
//! one. Nothing here names a particular S3 implementation.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;

/// Why an object could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum BucketError {
    #[error("s3://{bucket}/{key}: no such key")]
    NoSuchKey { bucket: String, key: String },
    #[error("s3://{bucket}/{key}: object is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        bucket: String,
        key: String,
        size: u64,
        limit: u64,
    },
    #[error("s3://{bucket}/{key}: bucket unreachable: {reason}")]
    Unreachable {
        bucket: String,
        key: String,
        reason: String,
    },
}

/// The bucket the service reads photos from.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub name: String,
    client: Client,
}

/// The region used to sign requests when neither `AWS_REGION` nor
/// `AWS_DEFAULT_REGION` names one (S3 endpoints other than AWS's accept any
/// region).
const FALLBACK_REGION: &str = "us-east-1";

impl Bucket {
    /// A client for bucket `name`, configured from the environment. The
    /// region is taken from the environment only, so that starting never
    /// waits on an instance metadata service; credentials are resolved on
    /// the first request.
    pub async fn from_env(name: String) -> Self {
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| FALLBACK_REGION.to_owned());
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .load()
            .await;
        Self::from_sdk_config(name, &sdk)
    }

    /// A client for bucket `name` with an explicit SDK configuration.
    pub fn from_sdk_config(name: String, sdk: &aws_config::SdkConfig) -> Self {
        // Path-style addressing: S3 endpoints given by IP address or by a
        // single host name need it, and AWS accepts it.
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        Self {
            name,
            client: Client::from_conf(config),
        }
    }

    /// Reads object `key` whole, refusing objects larger than `limit`.
    pub async fn get(&self, key: &str, limit: u64) -> Result<Vec<u8>, BucketError> {
        let unreachable = |reason: String| BucketError::Unreachable {
            bucket: self.name.clone(),
            key: key.to_owned(),
            reason,
        };
        let too_large = |size: u64| BucketError::TooLarge {
            bucket: self.name.clone(),
            key: key.to_owned(),
            size,
            limit,
        };
        let output = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map_err(|err| {
                let status = err.raw_response().map(|r| r.status().as_u16());
                let missing = match &err {
                    SdkError::ServiceError(service) => service.err().is_no_such_key(),
                    _ => false,
                } || err.code() == Some("NoSuchKey")
                    || status == Some(404);
                if missing {
                    BucketError::NoSuchKey {
                        bucket: self.name.clone(),
                        key: key.to_owned(),
                    }
                } else {
                    let detail = match (err.code(), err.message(), status) {
                        (Some(code), Some(message), _) => format!("{code}: {message}"),
                        (Some(code), None, _) => code.to_owned(),
                        (None, _, Some(status)) => format!("HTTP {status}"),
                        (None, _, None) => DisplayErrorContext(&err).to_string(),
                    };
                    unreachable(detail)
                }
            })?;
        let declared = output
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        if declared > limit {
            return Err(too_large(declared));
        }
        let mut body = output.body;
        let mut bytes = Vec::with_capacity(declared as usize);
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| unreachable(format!("reading the object: {}", DisplayErrorContext(&e))))?
        {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(too_large((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}
