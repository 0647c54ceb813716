//! Hail's data plane: images, container root filesystems, OCI bundles, the OCI
//! runtime, task networks, cgroups and the per-task shim.
//!
//! This crate touches the host. It knows nothing of services, scaling or HTTP:
//! callers hand it a [`spec::TaskSpec`] and get back task states.

pub mod content;
pub mod digest;
pub mod durable;
pub mod image;
pub mod network;
pub mod progress;
pub mod spec;
