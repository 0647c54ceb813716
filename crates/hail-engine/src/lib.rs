//! Hail's engine: the business logic behind the AWS-compatible APIs.
//!
//! [`Engine`] implements [`hail_api::JsonApi`]: the wire layer hands it an
//! authenticated operation name and a JSON object, and it answers with a JSON
//! object or an [`hail_api::ApiError`]. Each operation decodes its body into a
//! typed `hail-model` input, reads or writes the [`hail_store::Store`], and
//! returns ECS-shaped output. Every failure crosses [`error::EngineError`],
//! whose one conversion decides the AWS error code.
//!
//! Architecture invariant: this crate parses no HTTP; it sees operations, not
//! requests.

pub mod autoscaling;
pub mod balancing;
pub mod ecs;
pub mod error;
pub mod identity;
pub mod logs;
pub mod metadata;
pub mod native;
pub mod services;
pub mod tasks;
pub mod triggers;

use std::sync::Arc;

use hail_api::{Clock, JsonApi, RequestContext, Service, SystemClock};
use hail_model::arn::Scope;
use hail_model::ecs::Timestamp;
use hail_store::Store;
use serde_json::Value;

pub use autoscaling::{ScalableResources, ScalingController, ScalingMetrics};
pub use error::EngineError;
pub use identity::Identity;
pub use native::triggers::{BucketNotifications, NotificationError, NotificationRule};
pub use services::{ServiceController, TargetRegistry};
pub use tasks::TaskController;
pub use triggers::TriggerController;

/// The control plane: the store holding desired and observed state, the
/// region and account its resources' ARNs name, and the clock that stamps
/// what it records.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    scope: Scope,
    clock: Arc<dyn Clock>,
    /// Drives tasks through the data plane; `None` for an engine that only
    /// keeps records (RunTask then fails with a ServerException).
    tasks: Option<TaskController>,
    /// Roles and task credentials; `None` for an engine of root keys only.
    identity: Option<Identity>,
    /// The object store's bucket notifications, for triggers.
    notifications: Option<Arc<dyn BucketNotifications>>,
    /// Runs triggers' tasks; woken when an invocation is re-driven.
    triggers: Option<TriggerController>,
    /// Keeps services' tasks running; woken when a service changes.
    services: Option<ServiceController>,
    /// The load balancer; `None` for an engine without one.
    balancing: Option<balancing::LoadBalancing>,
    /// The services scalable targets name; RegisterScalableTarget checks
    /// a service exists through it when present.
    scalable_resources: Option<Arc<dyn ScalableResources>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine on the wall clock.
    pub fn new(store: Store, scope: Scope) -> Self {
        Engine {
            store,
            scope,
            clock: Arc::new(SystemClock),
            tasks: None,
            identity: None,
            notifications: None,
            triggers: None,
            services: None,
            balancing: None,
            scalable_resources: None,
        }
    }

    /// This engine managing roles and task credentials with `identity`.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// This engine putting triggers' rules on buckets through `notifications`.
    pub fn with_notifications(mut self, notifications: Arc<dyn BucketNotifications>) -> Self {
        self.notifications = Some(notifications);
        self
    }

    pub fn notifications(&self) -> Option<&Arc<dyn BucketNotifications>> {
        self.notifications.as_ref()
    }

    /// This engine waking `controller` when triggers' work changes.
    pub fn with_triggers(mut self, controller: TriggerController) -> Self {
        self.triggers = Some(controller);
        self
    }

    pub fn triggers(&self) -> Option<&TriggerController> {
        self.triggers.as_ref()
    }

    /// This engine balancing services' traffic with `balancing`.
    pub fn with_balancing(mut self, balancing: balancing::LoadBalancing) -> Self {
        self.balancing = Some(balancing);
        self
    }

    pub fn balancing(&self) -> Option<&balancing::LoadBalancing> {
        self.balancing.as_ref()
    }

    /// This engine keeping services running through `controller`.
    pub fn with_services(mut self, controller: ServiceController) -> Self {
        self.services = Some(controller);
        self
    }

    pub fn services(&self) -> Option<&ServiceController> {
        self.services.as_ref()
    }

    /// Asks the service controller for a pass soon.
    pub fn wake_services(&self) {
        if let Some(s) = &self.services {
            s.wake();
        }
    }

    /// This engine checking scalable targets' services through `resources`.
    pub fn with_scalable_resources(mut self, resources: Arc<dyn ScalableResources>) -> Self {
        self.scalable_resources = Some(resources);
        self
    }

    pub fn scalable_resources(&self) -> Option<&Arc<dyn ScalableResources>> {
        self.scalable_resources.as_ref()
    }

    /// This engine running tasks through `controller`.
    pub fn with_tasks(mut self, controller: TaskController) -> Self {
        self.tasks = Some(controller);
        self
    }

    pub fn tasks(&self) -> Option<&TaskController> {
        self.tasks.as_ref()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// This engine reading the time from `clock` instead, so tests can fix it.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now, as the timestamps the engine records carry it. A clock before the
    /// epoch reads as the epoch rather than failing the request.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_system_time(self.clock.now()).unwrap_or(Timestamp::from_millis(0))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Runs one operation of `service`, mapping every failure to its AWS error.
    pub async fn dispatch(
        &self,
        service: Service,
        op: &str,
        body: Value,
    ) -> Result<Value, EngineError> {
        match service {
            Service::Ecs => ecs::dispatch(self, op, body).await,
            Service::Logs => logs::dispatch(self, op, body).await,
            Service::Hail => native::dispatch(self, op, body).await,
            Service::ApplicationAutoScaling => autoscaling::dispatch(self, op, body).await,
            other => Err(EngineError::Unsupported {
                service: other.signing_name(),
                operation: op.to_owned(),
            }),
        }
    }
}

impl JsonApi for Engine {
    async fn call(
        &self,
        service: Service,
        op: &str,
        body: Value,
        _ctx: RequestContext,
    ) -> Result<Value, hail_api::ApiError> {
        self.dispatch(service, op, body).await.map_err(Into::into)
    }
}
