//! What Application Auto Scaling acts on and reads for ECS services: the
//! desired count ([`ServiceCapacity`]), and per-second samples of CPU,
//! memory, requests and concurrency ([`ServiceMetrics`]) — CPU and memory
//! from the tasks' cgroups, requests and concurrency from the load balancer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hail_model::ecs::service::UpdateServiceInput;
use hail_model::ecs::{ServiceStatus, TaskStatus};
use hail_model::stats::{cpu_percent, percent_of_units, CpuReading};
use hail_store::{services, tasks};

use crate::autoscaling::{BoxFuture, MetricKind, ScalableResources, ScalingMetrics};
use crate::{Engine, EngineError};

/// Samples kept per service and metric: two minutes at one per second.
const KEEP: usize = 120;

/// `service/<cluster>/<service>` → (cluster, service).
fn parse_resource(resource_id: &str) -> Option<(&str, &str)> {
    let rest = resource_id.strip_prefix("service/")?;
    rest.split_once('/')
}

/// The desired count of ECS services, read and set through UpdateService.
pub struct ServiceCapacity {
    engine: Engine,
}

impl ServiceCapacity {
    pub fn new(engine: Engine) -> Self {
        ServiceCapacity { engine }
    }
}

impl ScalableResources for ServiceCapacity {
    fn desired_count<'a>(
        &'a self,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<u32>, EngineError>> {
        Box::pin(async move {
            let Some((cluster, name)) = parse_resource(resource_id) else {
                return Ok(None);
            };
            let (cluster, name) = (cluster.to_owned(), name.to_owned());
            let found = self
                .engine
                .store()
                .read(move |conn| crate::ecs::services::live_service(conn, &cluster, &name))
                .await?;
            Ok(found
                .filter(|s| s.service.status == ServiceStatus::Active)
                .map(|s| s.service.desired_count))
        })
    }

    fn set_desired_count<'a>(
        &'a self,
        resource_id: &'a str,
        count: u32,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let Some((cluster, name)) = parse_resource(resource_id) else {
                return Err(EngineError::ServiceNotFound);
            };
            crate::ecs::services::update_service(
                &self.engine,
                UpdateServiceInput {
                    cluster: Some(cluster.to_owned()),
                    service: name.to_owned(),
                    desired_count: Some(count),
                    ..UpdateServiceInput::default()
                },
            )
            .await?;
            Ok(())
        })
    }
}

type Series = VecDeque<(SystemTime, f64)>;

#[derive(Default)]
struct Samples {
    cpu: Series,
    memory: Series,
    requests_per_target: Series,
    concurrency_per_task: Series,
}

/// Per-second samples of every live service, taken by [`ServiceMetrics::run`].
#[derive(Clone, Default)]
pub struct ServiceMetrics {
    series: Arc<Mutex<HashMap<String, Samples>>>,
}

impl ServiceMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Samples every second until the process ends.
    pub async fn run(self, engine: Engine) {
        let mut last_cpu: HashMap<String, (u64, Instant)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = self.sample(&engine, &mut last_cpu).await {
                tracing::debug!("service metrics: {e}");
            }
        }
    }

    async fn sample(
        &self,
        engine: &Engine,
        last_cpu: &mut HashMap<String, (u64, Instant)>,
    ) -> Result<(), EngineError> {
        let live = engine.store().read(services::list_live).await?;
        let now = SystemTime::now();
        let mut seen_tasks = Vec::new();
        for stored in live {
            let service = stored.service;
            let cluster_name = service
                .cluster_arn
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let resource = format!("service/{cluster_name}/{}", service.service_name);
            let (cluster_arn, name) = (service.cluster_arn.clone(), service.service_name.clone());
            let running: Vec<_> = engine
                .store()
                .read(move |conn| tasks::list_unfinished_of_service(conn, &cluster_arn, &name))
                .await?
                .into_iter()
                .filter(|t| t.task.last_status == TaskStatus::Running)
                .collect();
            let (mut cpu, mut memory, mut counted) = (0.0, 0.0, 0usize);
            if let Some(controller) = engine.tasks() {
                for t in &running {
                    let Ok(id) = tasks::task_id(&t.task) else {
                        continue;
                    };
                    seen_tasks.push(id.clone());
                    let Ok(stats) = controller.runtime().stats(&id, None) else {
                        continue;
                    };
                    let units: u32 = t
                        .task
                        .cpu
                        .as_deref()
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1024);
                    let mib: f64 = t
                        .task
                        .memory
                        .as_deref()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(512.0);
                    let at = Instant::now();
                    if let Some((before, then)) =
                        last_cpu.insert(id.clone(), (stats.cpu_usage_ns, at))
                    {
                        let before = CpuReading {
                            usage_nanos: before,
                            at_secs: 0.0,
                        };
                        let after = CpuReading {
                            usage_nanos: stats.cpu_usage_ns,
                            at_secs: at.duration_since(then).as_secs_f64(),
                        };
                        if let Some(used) = cpu_percent(before, after)
                            .and_then(|vcpu| percent_of_units(vcpu, units))
                        {
                            cpu += used;
                            memory += stats.memory_current as f64 / (mib * 1024.0 * 1024.0) * 100.0;
                            counted += 1;
                        }
                    }
                }
            }
            let mut requests = None;
            let mut concurrency = None;
            if let Some(lb) = engine.balancing() {
                for l in &service.load_balancers {
                    let Some(tg) = &l.target_group_arn else {
                        continue;
                    };
                    let Ok(m) = lb.gateway().metrics(tg) else {
                        continue;
                    };
                    if let Some(last) = m.seconds.last() {
                        let targets = m.healthy_targets.max(1) as f64;
                        *requests.get_or_insert(0.0) += last.requests as f64 / targets;
                        *concurrency.get_or_insert(0.0) +=
                            last.mean_concurrency / running.len().max(1) as f64;
                    }
                }
            }
            let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            let s = series.entry(resource).or_default();
            let push = |q: &mut Series, v: f64| {
                q.push_back((now, v));
                while q.len() > KEEP {
                    q.pop_front();
                }
            };
            if counted > 0 {
                push(&mut s.cpu, cpu / counted as f64);
                push(&mut s.memory, memory / counted as f64);
            }
            if let Some(r) = requests {
                push(&mut s.requests_per_target, r);
            }
            if let Some(c) = concurrency {
                push(&mut s.concurrency_per_task, c);
            }
        }
        last_cpu.retain(|id, _| seen_tasks.contains(id));
        Ok(())
    }
}

impl ScalingMetrics for ServiceMetrics {
    fn samples(
        &self,
        resource_id: &str,
        metric: &MetricKind,
        since: SystemTime,
    ) -> Vec<(SystemTime, f64)> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = series.get(resource_id) else {
            return Vec::new();
        };
        let q = match metric {
            MetricKind::CpuUtilization => &s.cpu,
            MetricKind::MemoryUtilization => &s.memory,
            MetricKind::RequestCountPerTarget { .. } => &s.requests_per_target,
            MetricKind::ConcurrencyPerTask => &s.concurrency_per_task,
        };
        q.iter().filter(|(t, _)| *t >= since).copied().collect()
    }
}
