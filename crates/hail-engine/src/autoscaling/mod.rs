//! Application Auto Scaling (`AnyScaleFrontendService.*`): scalable targets,
//! scaling policies, scheduled actions, scaling activities and tags, and
//! the controller that scales ECS services by them.
//!
//! - `targets`, `policies`, `scheduled`, `activities`, `tagging`: the
//!   operations, each decoding its body into a `hail_model::autoscaling`
//!   input, checking it with the model's rules and reading or writing the
//!   store in one transaction;
//! - [`policy`]: the scaling decisions, pure functions of a target, its
//!   policies, its current capacity, the metric samples and the time;
//! - [`controller`]: the reconcile loop that runs them every second and
//!   records what it does as scaling activities.
//!
//! The services themselves are reached through two traits, so this module
//! knows nothing of how a service runs its tasks or measures them:
//! [`ScalableResources`] (a service's desired count) and [`ScalingMetrics`]
//! (its recent metric samples).
//!
//! # Wiring
//!
//! `hail server` gives the engine the services and starts the controller
//! next to the others:
//!
//! ```text
//! let services: Arc<dyn ScalableResources> = /* ECS services */;
//! let metrics: Arc<dyn ScalingMetrics> = /* their samples */;
//! let engine = engine.with_scalable_resources(services.clone());
//! let scaling = ScalingController::new(engine.clone(), services, metrics, ScalingConfig::default());
//! tokio::spawn(scaling.run());
//! ```
//!
//! Without `with_scalable_resources`, RegisterScalableTarget checks resource
//! ids by their shape only; without a running controller, targets and
//! policies are kept but nothing scales.

pub mod activities;
pub mod controller;
pub mod policies;
pub mod policy;
pub mod scheduled;
pub mod tagging;
pub mod targets;
pub mod zone;

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use hail_model::autoscaling::{PredefinedMetric, ValidationError};
use hail_store::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{Engine, EngineError};

pub use controller::{ScalingConfig, ScalingController};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The resources scalable targets scale: ECS services, by resource id
/// (`service/<cluster>/<service>`).
pub trait ScalableResources: Send + Sync + 'static {
    /// The service's desired count; `None` when no such (active) service
    /// exists.
    fn desired_count<'a>(
        &'a self,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<u32>, EngineError>>;

    /// Sets the service's desired count, as UpdateService does.
    fn set_desired_count<'a>(
        &'a self,
        resource_id: &'a str,
        count: u32,
    ) -> BoxFuture<'a, Result<(), EngineError>>;
}

/// What a metric sample measures. Each kind is one value per second for a
/// whole service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// CPU used, in percent of the CPU units the running tasks reserve,
    /// averaged over the service's running tasks.
    CpuUtilization,
    /// Memory used, in percent of the tasks' memory, averaged likewise.
    MemoryUtilization,
    /// Requests per second per healthy target of the load balancer target
    /// group `resource_label` names
    /// (`app/<lb>/<lb-id>/targetgroup/<tg>/<tg-id>`).
    RequestCountPerTarget { resource_label: String },
    /// Requests in flight per running task.
    ConcurrencyPerTask,
}

impl MetricKind {
    /// The kind a predefined metric reads, and the factor that turns a
    /// sample into the metric's unit: `ALBRequestCountPerTarget` counts per
    /// minute, samples are per second.
    pub fn of(metric: &PredefinedMetric) -> (MetricKind, f64) {
        match metric {
            PredefinedMetric::EcsCpu => (MetricKind::CpuUtilization, 1.0),
            PredefinedMetric::EcsMemory => (MetricKind::MemoryUtilization, 1.0),
            PredefinedMetric::AlbRequestCountPerTarget { resource_label } => (
                MetricKind::RequestCountPerTarget {
                    resource_label: resource_label.clone(),
                },
                60.0,
            ),
            PredefinedMetric::HailConcurrency => (MetricKind::ConcurrencyPerTask, 1.0),
        }
    }
}

/// The recent metrics of scalable resources.
pub trait ScalingMetrics: Send + Sync + 'static {
    /// The samples of `metric` for the resource taken at or after `since`,
    /// oldest first, at most one a second (the controller asks for the last
    /// ~120 s). Seconds with no running task have no sample. Called on the
    /// controller's task: it must answer from memory, without blocking.
    fn samples(
        &self,
        resource_id: &str,
        metric: &MetricKind,
        since: SystemTime,
    ) -> Vec<(SystemTime, f64)>;
}

/// How an Application Auto Scaling failure is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoScalingErrorKind {
    Validation,
    ObjectNotFound,
    ConcurrentUpdate,
    LimitExceeded,
    FailedResourceAccess,
    InternalService,
    InvalidNextToken,
    ResourceNotFound,
    TooManyTags,
}

/// An Application Auto Scaling failure, in that API's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AutoScalingError {
    pub kind: AutoScalingErrorKind,
    pub message: String,
}

impl AutoScalingError {
    pub fn new(kind: AutoScalingErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(AutoScalingErrorKind::Validation, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(AutoScalingErrorKind::ObjectNotFound, message)
    }

    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(AutoScalingErrorKind::LimitExceeded, message)
    }
}

impl From<ValidationError> for AutoScalingError {
    fn from(e: ValidationError) -> Self {
        Self::validation(e.message)
    }
}

impl From<ValidationError> for EngineError {
    fn from(e: ValidationError) -> Self {
        EngineError::AutoScaling(e.into())
    }
}

/// Runs the Application Auto Scaling operation `op`.
pub async fn dispatch(engine: &Engine, op: &str, body: Value) -> Result<Value, EngineError> {
    run(engine, op, body).await.map_err(in_api_words)
}

async fn run(engine: &Engine, op: &str, body: Value) -> Result<Value, EngineError> {
    match op {
        "RegisterScalableTarget" => output(targets::register(engine, decode(body)?).await?),
        "DeregisterScalableTarget" => output(targets::deregister(engine, decode(body)?).await?),
        "DescribeScalableTargets" => output(targets::describe(engine, decode(body)?).await?),
        "PutScalingPolicy" => output(policies::put(engine, decode(body)?).await?),
        "DescribeScalingPolicies" => output(policies::describe(engine, decode(body)?).await?),
        "DeleteScalingPolicy" => output(policies::delete(engine, decode(body)?).await?),
        "PutScheduledAction" => output(scheduled::put(engine, decode(body)?).await?),
        "DescribeScheduledActions" => output(scheduled::describe(engine, decode(body)?).await?),
        "DeleteScheduledAction" => output(scheduled::delete(engine, decode(body)?).await?),
        "DescribeScalingActivities" => output(activities::describe(engine, decode(body)?).await?),
        "TagResource" => output(tagging::tag_resource(engine, decode(body)?).await?),
        "UntagResource" => output(tagging::untag_resource(engine, decode(body)?).await?),
        "ListTagsForResource" => output(tagging::list_tags(engine, decode(body)?).await?),
        _ => Err(EngineError::Unsupported {
            service: "application-autoscaling",
            operation: op.to_owned(),
        }),
    }
}

/// Failures that are not yet in this API's words get its codes: a bad body
/// is a ValidationException, a store failure an InternalServiceException.
fn in_api_words(err: EngineError) -> EngineError {
    let converted = match err {
        EngineError::Decode { source, .. } => AutoScalingError::validation(source.to_string()),
        EngineError::Store(StoreError::InvalidToken { .. }) => {
            AutoScalingError::new(AutoScalingErrorKind::InvalidNextToken, "Invalid token")
        }
        EngineError::Store(StoreError::InvalidArgument { what, reason }) => {
            AutoScalingError::validation(format!("{what}: {reason}"))
        }
        EngineError::Store(e) => {
            AutoScalingError::new(AutoScalingErrorKind::InternalService, e.to_string())
        }
        EngineError::Encode { source } => AutoScalingError::new(
            AutoScalingErrorKind::InternalService,
            format!("response could not be encoded: {source}"),
        ),
        other => return other,
    };
    EngineError::AutoScaling(converted)
}

fn decode<T: DeserializeOwned>(body: Value) -> Result<T, EngineError> {
    hail_model::ecs::decode::decode_value(body).map_err(|source| EngineError::Decode {
        operation: String::new(),
        source,
    })
}

fn output<T: Serialize>(value: T) -> Result<Value, EngineError> {
    serde_json::to_value(value).map_err(|source| EngineError::Encode { source })
}

/// The empty answer of operations that return nothing.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// AWS's ObjectNotFoundException for a missing target.
pub(crate) fn no_target(key: &hail_model::autoscaling::TargetKey) -> EngineError {
    EngineError::AutoScaling(AutoScalingError::not_found(format!(
        "No scalable target registered for service namespace: {}, resource ID: {}, scalable \
         dimension: {}",
        key.service_namespace, key.resource_id, key.scalable_dimension
    )))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fakes of the traits, shared by the operation and controller tests.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use hail_api::Clock;
    use hail_model::arn::Scope;
    use hail_store::Store;

    use super::*;

    /// A clock that moves only when told.
    #[derive(Debug)]
    pub struct FakeClock(pub Mutex<SystemTime>);

    impl FakeClock {
        pub fn at(secs: u64) -> Arc<FakeClock> {
            Arc::new(FakeClock(Mutex::new(
                UNIX_EPOCH + Duration::from_secs(secs),
            )))
        }

        pub fn advance(&self, secs: u64) {
            let mut t = self.0.lock().unwrap();
            *t += Duration::from_secs(secs);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// Services by resource id with their desired counts; `fail` makes
    /// every update fail.
    #[derive(Debug, Default)]
    pub struct FakeServices {
        pub counts: Mutex<HashMap<String, u32>>,
        pub updates: Mutex<Vec<(String, u32)>>,
        pub fail: Mutex<bool>,
    }

    impl FakeServices {
        pub fn with(services: &[(&str, u32)]) -> Arc<FakeServices> {
            let fake = FakeServices::default();
            for (id, n) in services {
                fake.counts.lock().unwrap().insert((*id).to_owned(), *n);
            }
            Arc::new(fake)
        }

        pub fn count(&self, id: &str) -> Option<u32> {
            self.counts.lock().unwrap().get(id).copied()
        }
    }

    impl ScalableResources for FakeServices {
        fn desired_count<'a>(
            &'a self,
            resource_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<u32>, EngineError>> {
            Box::pin(async move { Ok(self.count(resource_id)) })
        }

        fn set_desired_count<'a>(
            &'a self,
            resource_id: &'a str,
            count: u32,
        ) -> BoxFuture<'a, Result<(), EngineError>> {
            Box::pin(async move {
                if *self.fail.lock().unwrap() {
                    return Err(EngineError::invalid(
                        "desiredCount",
                        "the service is draining",
                    ));
                }
                self.counts
                    .lock()
                    .unwrap()
                    .insert(resource_id.to_owned(), count);
                self.updates
                    .lock()
                    .unwrap()
                    .push((resource_id.to_owned(), count));
                Ok(())
            })
        }
    }

    /// Metric values by resource and kind, one per second, set by the test
    /// as "from now on the value is v".
    type Series = HashMap<(String, MetricKind), Vec<(SystemTime, f64)>>;

    #[derive(Debug, Default)]
    pub struct FakeMetrics {
        pub series: Mutex<Series>,
    }

    impl FakeMetrics {
        /// Records `value` for every second in `[from, to)`.
        pub fn fill(&self, id: &str, kind: MetricKind, from: SystemTime, secs: u64, value: f64) {
            let mut series = self.series.lock().unwrap();
            let s = series.entry((id.to_owned(), kind)).or_default();
            for i in 0..secs {
                s.push((from + Duration::from_secs(i), value));
            }
        }
    }

    impl ScalingMetrics for FakeMetrics {
        fn samples(
            &self,
            resource_id: &str,
            metric: &MetricKind,
            since: SystemTime,
        ) -> Vec<(SystemTime, f64)> {
            self.series
                .lock()
                .unwrap()
                .get(&(resource_id.to_owned(), metric.clone()))
                .map(|s| s.iter().filter(|(t, _)| *t >= since).copied().collect())
                .unwrap_or_default()
        }
    }

    /// An engine on a fresh store and a fake clock.
    pub fn engine(clock: Arc<FakeClock>) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        let engine = Engine::new(store, Scope::default()).with_clock(clock);
        (dir, engine)
    }

    /// Runs an operation and returns its answer or its AWS code and message.
    pub async fn call(engine: &Engine, op: &str, body: Value) -> Result<Value, (String, String)> {
        engine
            .dispatch(hail_api::Service::ApplicationAutoScaling, op, body)
            .await
            .map_err(|e| {
                let api = hail_api::ApiError::from(e);
                (api.aws_code().to_owned(), api.message().to_owned())
            })
    }
}
