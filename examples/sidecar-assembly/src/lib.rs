//! The sidecars of the Sidecar-Assembly example: capabilities that run in
//! their own containers beside a main application, inside one task.
//!
//! - [`ambassador`]: the HTTP reverse proxy in front of the application —
//!   access log, per-client rate limiting, Prometheus metrics;
//! - [`log_router`]: a FireLens-style log router that receives the other
//!   containers' output over the Fluent Forward protocol ([`forward`]) and
//!   writes it as JSON lines;
//! - [`config_init`]: the init container that copies a configuration object
//!   from S3 into a volume shared with the application.
//!
//! The binaries in `src/bin` only parse flags and wire these together; the
//! shared pieces ([`admin`], [`prometheus`], [`clock`]) serve the health and
//! metrics endpoints every long-running sidecar has.

#![forbid(unsafe_code)]

pub mod admin;
pub mod ambassador;
pub mod cli;
pub mod clock;
pub mod config_init;
pub mod forward;
pub mod log_router;
pub mod prometheus;
pub mod shutdown;
