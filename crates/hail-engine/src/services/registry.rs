//! How the service controller talks to a load balancer: it hands over the
//! addresses of a target group's tasks and asks whether each passes the
//! group's health checks. The gateway implements it; the controller never
//! routes traffic itself.

use std::net::SocketAddr;

pub trait TargetRegistry: Send + Sync {
    /// The target group's registered targets from now on (task id and
    /// address); those left out are drained and deregistered.
    fn set_targets(&self, target_group_arn: &str, targets: Vec<(String, SocketAddr)>);

    /// Whether the target of task `task_id` passes the group's health
    /// checks: `Some(false)` for a target the group does not have (yet);
    /// `None` when the group itself is unknown.
    fn is_healthy(&self, target_group_arn: &str, task_id: &str) -> Option<bool>;

    /// How long a deregistered target keeps its in-flight requests: a task
    /// leaving the group is stopped only after it.
    fn deregistration_delay(&self, target_group_arn: &str) -> std::time::Duration;
}
