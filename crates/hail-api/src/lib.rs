//! The wire layer of Hail's AWS-compatible API.
//!
//! Every request to `hail server` crosses this crate before any business
//! logic: [`router`] classifies it (an AWS JSON 1.1 API by `X-Amz-Target`, or
//! S3 REST), [`sigv4`] authenticates it, [`json11`] frames it, and the engine
//! sees only a [`router::Service`], an operation name and a JSON object
//! through the [`router::JsonApi`] trait. Failures of any stage become wire
//! responses in exactly one place, [`error`]. Beside them, [`metadata`] serves
//! the ECS task metadata endpoint (v4) that containers read, unsigned, from
//! 169.254.170.2, answering through the [`metadata::TaskMetadataSource`] trait.
//!
//! Architecture invariant: this crate holds no business logic and depends on
//! no other Hail crate; the engine plugs in through [`router::JsonApi`] and
//! [`metadata::TaskMetadataSource`].

#![forbid(unsafe_code)]

pub mod access;
pub mod error;
pub mod json11;
pub mod metadata;
mod operations;
pub mod router;
pub mod s3;
pub mod sign;
pub mod sigv4;

pub use access::{AccessError, AccessPolicy, AllowAll};
pub use error::{ApiError, ErrorCode, Protocol};
pub use metadata::{
    metadata_router, metadata_uri, MetadataError, MetadataId, PeerPolicy, TaskMetadataSource,
};
pub use router::{ApiService, Clock, JsonApi, RequestContext, Service, SystemClock};
pub use sigv4::{CredentialStore, StaticCredentials};
