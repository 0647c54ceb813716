//! Hail's data plane: images, container root filesystems, OCI bundles, the OCI
//! runtime, task networks, cgroups and the per-task shim.
//!
//! This crate touches the host. It knows nothing of services, scaling or HTTP:
//! callers hand it a [`spec::TaskSpec`] and get back task states.

pub mod bundle;
pub mod cgroup;
pub mod content;
pub mod digest;
pub mod durable;
pub mod image;
pub mod logs;
pub mod network;
pub mod overlay;
pub mod progress;
pub mod runtime;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod task;
pub mod usage;
pub mod user;
