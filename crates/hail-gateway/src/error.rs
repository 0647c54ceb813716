//! What the engine can get back from the gateway's control calls. The request
//! path has no error type: every failure there becomes an HTTP answer
//! (502/503/504), built in `proxy.rs`.

use std::net::SocketAddr;

/// A control call the gateway refused.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is inconsistent; nothing was changed.
    #[error("{what}: {reason}")]
    InvalidConfig { what: String, reason: String },
    /// A rule, a default action or a call names a target group the
    /// configuration does not declare.
    #[error("{}target group {target_group} is not configured", listener.as_ref().map(|l| format!("listener {l}: ")).unwrap_or_default())]
    UnknownTargetGroup {
        target_group: String,
        listener: Option<String>,
    },
    /// A listener's port could not be bound (in use, or not permitted);
    /// nothing was changed by the apply that asked for it.
    #[error("listener {listener}: cannot bind port {} on {}: {source}", addr.port(), addr.ip())]
    Bind {
        listener: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A target list is inconsistent (two targets with one id).
    #[error("target group {target_group}: {reason}")]
    InvalidTargets {
        target_group: String,
        reason: String,
    },
    /// The worker threads could not be started.
    #[error("cannot start the gateway's worker threads: {0}")]
    Start(#[source] std::io::Error),
    /// The gateway was shut down.
    #[error("the gateway is shut down")]
    ShutDown,
}
