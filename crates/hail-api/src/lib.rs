//! The wire layer of Hail's AWS-compatible API.
//!
//! Every request to `hail server` crosses this crate before any business
//! logic: [`router`] classifies it (an AWS JSON 1.1 API by `X-Amz-Target`, or
//! S3 REST), [`sigv4`] authenticates it, [`json11`] frames it, and the engine
//! sees only a [`router::Service`], an operation name and a JSON object
//! through the [`router::JsonApi`] trait. Failures of any stage become wire
//! responses in exactly one place, [`error`].
//!
//! Architecture invariant: this crate holds no business logic and depends on
//! no other Hail crate; the engine plugs in through [`router::JsonApi`].

#![forbid(unsafe_code)]

pub mod error;
pub mod json11;
mod operations;
pub mod router;
pub mod sigv4;

pub use error::{ApiError, ErrorCode, Protocol};
pub use router::{ApiService, Clock, JsonApi, RequestContext, Service, SystemClock};
pub use sigv4::{CredentialStore, StaticCredentials};
