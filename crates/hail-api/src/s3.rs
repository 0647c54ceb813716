//! The S3 REST API's edge: addressing, authentication and authorisation
//! around an object store that implements [`s3s::S3`].
//!
//! `s3s` parses S3 requests, verifies SigV4 (header, presigned query and
//! streaming chunk signatures) and renders S3's XML errors. This module
//! plugs Hail's parts into it:
//! - [`HailHost`]: `bucket.localhost[:port]` is virtual-host style, every
//!   other host (`127.0.0.1:4566`, `169.254.170.2`, `localhost`) path style;
//! - [`CredentialAuth`]: secrets from the same [`CredentialStore`] the JSON
//!   APIs verify against (root keys and tasks' temporary keys);
//! - [`PolicyAccess`]: every operation is authorised by the
//!   [`AccessPolicy`] as the IAM action S3 defines for it, on the bucket or
//!   object ARN it touches; CopyObject also needs `s3:GetObject` on its
//!   source, DeleteObjects `s3:DeleteObject` on each key.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, DeleteObjectsInput, UploadPartCopyInput};
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Request, S3Result};

use crate::access::{session_token, AccessError, AccessPolicy};
use crate::router::{strip_port, S3_VIRTUAL_HOST_SUFFIX};
use crate::sigv4::CredentialStore;

/// The S3 service over `store`, authenticated by `credentials` and
/// authorised by `policy`.
pub fn s3_service<S, C>(store: S, credentials: Arc<C>, policy: Arc<dyn AccessPolicy>) -> S3Service
where
    S: s3s::S3,
    C: CredentialStore + 'static,
{
    let mut builder = S3ServiceBuilder::new(store);
    builder.set_host(HailHost);
    builder.set_auth(CredentialAuth { credentials });
    builder.set_access(PolicyAccess { policy });
    builder.build()
}

/// Hail's S3 addressing: virtual-host style under `.localhost`, path style
/// for every other host.
#[derive(Debug, Clone, Copy, Default)]
pub struct HailHost;

impl S3Host for HailHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let hostname = strip_port(host);
        match hostname.strip_suffix(S3_VIRTUAL_HOST_SUFFIX) {
            Some(bucket) if !bucket.is_empty() => {
                Ok(VirtualHost::new(&hostname[bucket.len() + 1..]).with_bucket(bucket))
            }
            _ => Ok(VirtualHost::new(hostname)),
        }
    }
}

struct CredentialAuth<C> {
    credentials: Arc<C>,
}

#[async_trait::async_trait]
impl<C: CredentialStore + 'static> S3Auth for CredentialAuth<C> {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.credentials.secret_for(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

struct PolicyAccess {
    policy: Arc<dyn AccessPolicy>,
}

/// The IAM action an S3 operation needs, as IAM's list of S3 actions names it.
pub fn s3_action(operation: &str) -> String {
    let action = match operation {
        "HeadObject" | "GetObject" | "SelectObjectContent" => "GetObject",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "ListBucket",
        "ListBuckets" => "ListAllMyBuckets",
        "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "UploadPartCopy"
        | "CopyObject" => "PutObject",
        "DeleteObjects" => "DeleteObject",
        "ListParts" => "ListMultipartUploadParts",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "GetBucketNotificationConfiguration" => "GetBucketNotification",
        "PutBucketNotificationConfiguration" => "PutBucketNotification",
        other => other,
    };
    format!("s3:{action}")
}

/// The IAM ARN of a bucket, or of an object when `key` is given.
pub fn s3_resource(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

fn to_s3_error(e: AccessError) -> s3s::S3Error {
    match e {
        AccessError::Denied(m) => s3_error!(AccessDenied, "{m}"),
        AccessError::InvalidToken => s3_error!(
            InvalidToken,
            "The provided token is malformed or otherwise invalid."
        ),
        AccessError::ExpiredToken => s3_error!(ExpiredToken, "The provided token has expired."),
    }
}

impl PolicyAccess {
    fn authorize<T>(&self, req: &S3Request<T>, action: &str, resource: String) -> S3Result<()> {
        let Some(creds) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "Anonymous access is not allowed"));
        };
        let token = session_token(&req.headers, &req.uri);
        self.policy
            .authorize(&creds.access_key, token.as_deref(), action, &[resource])
            .map_err(to_s3_error)
    }

    fn authorize_copy_source<T>(&self, req: &S3Request<T>, source: &CopySource) -> S3Result<()> {
        match source {
            CopySource::Bucket { bucket, key, .. } => {
                self.authorize(req, "s3:GetObject", s3_resource(bucket, Some(key)))
            }
            _ => Err(s3_error!(
                NotImplemented,
                "copy sources other than bucket/key are not supported"
            )),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for PolicyAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Anonymous access is not allowed"));
        };
        let op = cx.s3_op().name();
        let resource = match cx.s3_path() {
            S3Path::Root => "arn:aws:s3:::*".to_owned(),
            S3Path::Bucket { bucket } if op == "DeleteObjects" => {
                // Checked key by key once the body is parsed; the token
                // check below still applies.
                s3_resource(bucket, Some("*"))
            }
            S3Path::Bucket { bucket } => s3_resource(bucket, None),
            S3Path::Object { bucket, key } => s3_resource(bucket, Some(key)),
        };
        let token = session_token(cx.headers(), cx.uri());
        let action = s3_action(op);
        let result = if op == "DeleteObjects" {
            // Only the caller's token is checked here: a role allowed to
            // delete some keys may still send a DeleteObjects.
            match self
                .policy
                .authorize(&creds.access_key, token.as_deref(), &action, &[resource])
            {
                Err(AccessError::Denied(_)) => Ok(()),
                other => other,
            }
        } else {
            self.policy
                .authorize(&creds.access_key, token.as_deref(), &action, &[resource])
        };
        result.map_err(to_s3_error)
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        let source = req.input.copy_source.clone();
        self.authorize_copy_source(req, &source)
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        let source = req.input.copy_source.clone();
        self.authorize_copy_source(req, &source)
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let bucket = req.input.bucket.clone();
        let keys: Vec<String> = req
            .input
            .delete
            .objects
            .iter()
            .map(|o| o.key.clone())
            .collect();
        for key in keys {
            self.authorize(req, "s3:DeleteObject", s3_resource(&bucket, Some(&key)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_route_as_path_or_virtual_host_style() {
        let h = HailHost;
        let bucket = |host: &str| {
            h.parse_host_header(host)
                .unwrap()
                .bucket()
                .map(str::to_owned)
        };
        assert_eq!(bucket("127.0.0.1:4566"), None);
        assert_eq!(bucket("169.254.170.2"), None);
        assert_eq!(bucket("localhost:4566"), None);
        assert_eq!(bucket("[::1]:4566"), None);
        assert_eq!(bucket("media.localhost:4566").as_deref(), Some("media"));
        assert_eq!(bucket("my.bucket.localhost").as_deref(), Some("my.bucket"));
    }

    #[test]
    fn operations_map_to_iam_actions() {
        assert_eq!(s3_action("HeadObject"), "s3:GetObject");
        assert_eq!(s3_action("ListObjectsV2"), "s3:ListBucket");
        assert_eq!(s3_action("UploadPart"), "s3:PutObject");
        assert_eq!(s3_action("DeleteObject"), "s3:DeleteObject");
        assert_eq!(s3_resource("m", Some("a/b")), "arn:aws:s3:::m/a/b");
    }
}
