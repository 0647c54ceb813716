//! Tasks: turning ECS tasks into running containers and back into ECS's words.
//!
//! `plan` maps a task and its definition to the runtime's spec, `observe`
//! maps the runtime's reports onto the task document, and `controller`
//! drives every task toward its desired status.

pub mod controller;
pub mod observe;
pub mod plan;

pub use controller::{ControllerConfig, Launch, TaskController};
