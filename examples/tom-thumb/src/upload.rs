//! Writing the thumbnail to S3 with the AWS SDK for Rust.
//!
//! The configuration comes from the SDK's standard chains: the endpoint from
//! `AWS_ENDPOINT_URL` (Hail sets it to its S3 endpoint; unset on AWS), the
//! credentials from the ECS container credentials endpoint named by
//! `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (or `…_FULL_URI`, or the
//! environment or a profile outside a task). Nothing here names Hail.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{Credentials, ProvideCredentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use crate::config::{ConfigError, OutputObject, AWS_REGION};
use crate::error::ThumbError;

/// Loads the SDK's configuration, with `region` (from `AWS_REGION`) if given.
pub async fn load_sdk_config(region: Option<String>) -> Result<SdkConfig, ThumbError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(ConfigError::Missing(AWS_REGION).into());
    }
    Ok(sdk)
}

/// Fetches the credentials now, so the round trip to the credentials
/// endpoint can overlap the frame extraction instead of delaying the upload.
pub async fn resolve_credentials(
    sdk: &SdkConfig,
    output: &OutputObject,
) -> Result<Credentials, ThumbError> {
    let no_credentials = |reason: String| ThumbError::OutputDenied {
        uri: output.uri(),
        reason,
    };
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| no_credentials("no credentials provider is configured".into()))?;
    provider.provide_credentials().await.map_err(|e| {
        use aws_credential_types::provider::error::CredentialsError;
        let reason = format!("no credentials: {}", DisplayErrorContext(&e));
        match e {
            // No source of credentials at all: the task has no role.
            CredentialsError::CredentialsNotLoaded(_) => no_credentials(reason),
            _ => ThumbError::UploadFailed {
                uri: output.uri(),
                reason,
            },
        }
    })
}

/// An S3 client for the thumbnail: path-style addressing (Hail's S3 and any
/// endpoint given by IP need it; AWS accepts it), and checksums only where
/// S3 requires them (the SigV4 payload hash already covers the body).
pub fn s3_client(sdk: &SdkConfig, credentials: Option<Credentials>) -> Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    if let Some(credentials) = credentials {
        builder = builder.credentials_provider(credentials);
    }
    Client::from_conf(builder.build())
}

/// Writes `png` at `output` in one PutObject: the object appears whole or
/// not at all.
pub async fn put_png(
    client: &Client,
    output: &OutputObject,
    png: Vec<u8>,
) -> Result<(), ThumbError> {
    let length = png.len() as i64;
    client
        .put_object()
        .bucket(&output.bucket)
        .key(&output.key)
        .content_type("image/png")
        .content_length(length)
        .body(ByteStream::from(png))
        .send()
        .await
        .map_err(|err| {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let detail = match (err.code(), &err) {
                (Some(code), _) => match err.message() {
                    Some(message) => format!("{code}: {message}"),
                    None => code.to_owned(),
                },
                (None, SdkError::ServiceError(_)) => match status {
                    Some(status) => format!("HTTP {status}"),
                    None => DisplayErrorContext(&err).to_string(),
                },
                (None, _) => DisplayErrorContext(&err).to_string(),
            };
            classify_put_error(output, err.code(), status, detail)
        })?;
    Ok(())
}

/// S3 error codes that mean the caller may not write there.
const DENIED_CODES: [&str; 6] = [
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
];

/// Sorts a failed PutObject: refusals (403, or a code of [`DENIED_CODES`])
/// are [`ThumbError::OutputDenied`], everything else
/// [`ThumbError::UploadFailed`].
pub fn classify_put_error(
    output: &OutputObject,
    code: Option<&str>,
    status: Option<u16>,
    detail: String,
) -> ThumbError {
    let denied = status == Some(403) || code.is_some_and(|c| DENIED_CODES.contains(&c));
    if denied {
        ThumbError::OutputDenied {
            uri: output.uri(),
            reason: detail,
        }
    } else {
        ThumbError::UploadFailed {
            uri: output.uri(),
            reason: detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;

    fn output() -> OutputObject {
        OutputObject::new("media/thumbnail", "t.png").unwrap()
    }

    #[test]
    fn refusals_are_denied_and_the_rest_failed() {
        let class =
            |code, status| classify_put_error(&output(), code, status, "d".into()).exit_code();
        assert_eq!(class(Some("AccessDenied"), Some(403)), exit::OUTPUT_DENIED);
        assert_eq!(
            class(Some("SignatureDoesNotMatch"), Some(403)),
            exit::OUTPUT_DENIED
        );
        assert_eq!(class(None, Some(403)), exit::OUTPUT_DENIED);
        assert_eq!(class(Some("InvalidAccessKeyId"), None), exit::OUTPUT_DENIED);
        assert_eq!(class(Some("NoSuchBucket"), Some(404)), exit::UPLOAD_FAILED);
        assert_eq!(class(Some("InternalError"), Some(500)), exit::UPLOAD_FAILED);
        assert_eq!(class(None, None), exit::UPLOAD_FAILED);
    }

    #[test]
    fn denial_names_the_object() {
        let err = classify_put_error(
            &output(),
            Some("AccessDenied"),
            Some(403),
            "AccessDenied: Access Denied".into(),
        );
        assert_eq!(
            err.log_line(),
            "tom-thumb: error: no permission to write s3://media/thumbnail/t.png: AccessDenied: Access Denied"
        );
    }

    fn sdk_config(endpoint: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build()
    }

    #[tokio::test]
    async fn the_client_reaches_the_configured_endpoint() {
        let sdk = sdk_config("http://127.0.0.1:9");
        let client = s3_client(
            &sdk,
            Some(Credentials::new("AKIDTEST", "secret", None, None, "test")),
        );
        let conf = client.config();
        assert_eq!(
            conf.request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
        // Port 9 (discard) is closed here: the request is built, signed and
        // sent, and the failure to connect is an upload failure, not a denial.
        let err = put_png(&client, &output(), b"png".to_vec())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), exit::UPLOAD_FAILED, "{err}");
        assert!(
            err.to_string()
                .starts_with("could not write s3://media/thumbnail/t.png: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_credentials_at_all_is_a_denial() {
        let sdk = sdk_config("http://127.0.0.1:9");
        let err = resolve_credentials(&sdk, &output()).await.unwrap_err();
        assert_eq!(err.exit_code(), exit::OUTPUT_DENIED, "{err}");
    }
}
