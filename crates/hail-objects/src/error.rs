//! The object store's failures and the one place they become S3 errors.

use s3s::{s3_error, S3Error};

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    #[error("The specified key does not exist.")]
    NoSuchKey,
    #[error("The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")]
    NoSuchUpload,
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,
    #[error("{0}")]
    InvalidBucketName(String),
    #[error("Your key is too long")]
    KeyTooLong,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    MetadataTooLarge(String),
    #[error("The Content-MD5 you specified did not match what we received.")]
    BadDigest,
    #[error("The Content-MD5 you specified is not valid.")]
    InvalidDigest,
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header: declared {declared}, received {received}")]
    IncompleteBody { declared: u64, received: u64 },
    #[error("Your proposed upload exceeds the maximum allowed size of {max} bytes")]
    EntityTooLarge { max: u64 },
    #[error("Your proposed upload is smaller than the minimum allowed object size: part {part} is {size} bytes, parts but the last must be at least 5 MiB")]
    EntityTooSmall { part: u32, size: u64 },
    #[error("One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {0})")]
    InvalidPart(u32),
    #[error("The list of parts was not in ascending order. Parts must be ordered by part number.")]
    InvalidPartOrder,
    #[error("The requested range is not satisfiable")]
    InvalidRange,
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    #[error("Not Modified")]
    NotModified,
    #[error("The XML you provided was not well-formed or did not validate: {0}")]
    MalformedXml(String),
    /// The request body could not be read to its end.
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error(transparent)]
    Store(#[from] hail_store::StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ObjectsError {
    pub fn io(e: std::io::Error) -> Self {
        ObjectsError::Internal(format!("disk: {e}"))
    }
}

impl From<ObjectsError> for S3Error {
    fn from(e: ObjectsError) -> S3Error {
        use ObjectsError::*;
        let msg = e.to_string();
        match e {
            NoSuchBucket => s3_error!(NoSuchBucket, "{msg}"),
            NoSuchKey => s3_error!(NoSuchKey, "{msg}"),
            NoSuchUpload => s3_error!(NoSuchUpload, "{msg}"),
            BucketNotEmpty => s3_error!(BucketNotEmpty, "{msg}"),
            BucketAlreadyOwnedByYou => s3_error!(BucketAlreadyOwnedByYou, "{msg}"),
            InvalidBucketName(_) => s3_error!(InvalidBucketName, "{msg}"),
            KeyTooLong => s3_error!(KeyTooLongError, "{msg}"),
            InvalidArgument(_) => s3_error!(InvalidArgument, "{msg}"),
            MetadataTooLarge(_) => s3_error!(MetadataTooLarge, "{msg}"),
            BadDigest => s3_error!(BadDigest, "{msg}"),
            InvalidDigest => s3_error!(InvalidDigest, "{msg}"),
            IncompleteBody { .. } | Body(_) => s3_error!(IncompleteBody, "{msg}"),
            EntityTooLarge { .. } => s3_error!(EntityTooLarge, "{msg}"),
            EntityTooSmall { .. } => s3_error!(EntityTooSmall, "{msg}"),
            InvalidPart(_) => s3_error!(InvalidPart, "{msg}"),
            InvalidPartOrder => s3_error!(InvalidPartOrder, "{msg}"),
            InvalidRange => s3_error!(InvalidRange, "{msg}"),
            PreconditionFailed => s3_error!(PreconditionFailed, "{msg}"),
            NotModified => s3_error!(NotModified, "{msg}"),
            MalformedXml(_) => s3_error!(MalformedXML, "{msg}"),
            NotImplemented(_) => s3_error!(NotImplemented, "{msg}"),
            Store(e) => {
                tracing::error!("object store: {e}");
                s3_error!(
                    InternalError,
                    "We encountered an internal error. Please try again."
                )
            }
            Internal(detail) => {
                tracing::error!("object store: {detail}");
                s3_error!(
                    InternalError,
                    "We encountered an internal error. Please try again."
                )
            }
        }
    }
}
