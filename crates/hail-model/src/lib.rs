//! Hail's resource model: ECS-shaped resources, their validation, ids and ARNs.
//!
//! Architecture invariant: this crate does no I/O.

pub mod ids;
