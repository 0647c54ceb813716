//! Hail's resource model: ECS-shaped resources, their validation, ids and ARNs.
//!
//! Hail speaks the real Amazon ECS JSON API, so the shapes here carry the
//! field names, defaults and status words of the Amazon ECS API Reference:
//! a task definition file written for `aws ecs register-task-definition
//! --cli-input-json` parses into [`ecs::RegisterTaskDefinitionInput`]
//! unchanged, and what Hail echoes back reads like what ECS returns.
//!
//! Architecture invariant: this crate does no I/O — no files, no sockets, no
//! clock. Callers pass timestamps ([`ecs::Timestamp`]) and ARN scopes in.

// The tests' task definition literals nest deeper than `json!`'s default allows.
#![cfg_attr(test, recursion_limit = "256")]

pub mod arn;
pub mod autoscaling;
pub mod ecs;
pub mod elb;
pub mod iam;
pub mod ids;
pub mod s3;
pub mod stack;
pub mod stats;
pub mod triggers;
