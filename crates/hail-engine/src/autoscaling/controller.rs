//! The scaling controller: a reconcile loop over registered targets.
//!
//! Every pass (each second by default), for each scalable target:
//! 1. scheduled actions whose time came since the last pass change the
//!    target's min and max (unless ScheduledScalingSuspended), recorded as
//!    an activity in the same transaction;
//! 2. the service's desired count is read through [`ScalableResources`]; a
//!    target whose service is gone is left alone;
//! 3. the policies' metrics are read through [`ScalingMetrics`] and
//!    [`policy::decide`] says what to do;
//! 4. a change is recorded as an InProgress activity before the desired
//!    count is set, and as Successful or Failed after, together with the
//!    target's history (which the cooldowns read), so a crash in between
//!    leaves a trace and never a silent change.
//!
//! The controller acts only on what the store holds and what it reads
//! back from the services: each pass is idempotent, and a pass that fails
//! for one target goes on with the next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hail_model::autoscaling::{
    PolicyRule, ScalableTarget, ScalingHistory, ScalingPolicy, StepAlarm, TargetKey,
    ACTIVITY_RETENTION_MILLIS, STEP_ALARM_TAG_PREFIX,
};
use hail_store::autoscaling as store;
use hail_store::StoreError;
use tracing::Instrument as _;

use super::policy::{self, Decision, Direction, PolicyView, Sample, Tuning};
use super::{activities, tagging, MetricKind, ScalableResources, ScalingMetrics};
use crate::{Engine, EngineError};

/// How the controller runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingConfig {
    /// Time between passes.
    pub interval: Duration,
    /// How far back metric samples are read.
    pub history: Duration,
    /// How long a target whose desired count could not be set is left
    /// alone before the next attempt.
    pub retry_after: Duration,
    pub tuning: Tuning,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            interval: Duration::from_secs(1),
            history: Duration::from_secs(120),
            retry_after: Duration::from_secs(30),
            tuning: Tuning::default(),
        }
    }
}

/// How often old activities are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct ScalingController {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    resources: Arc<dyn ScalableResources>,
    metrics: Arc<dyn ScalingMetrics>,
    config: ScalingConfig,
    state: Mutex<LoopState>,
}

#[derive(Default)]
struct LoopState {
    /// When the previous pass looked at the schedules.
    last_pass: Option<SystemTime>,
    last_purge: Option<SystemTime>,
    /// Targets whose last change failed, and until when to leave them.
    failed_until: HashMap<TargetKey, SystemTime>,
    /// Step alarm tags already reported as invalid, so a bad tag is logged
    /// once rather than every second.
    reported: HashMap<String, String>,
}

impl std::fmt::Debug for ScalingController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalingController")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ScalingController {
    pub fn new(
        engine: Engine,
        resources: Arc<dyn ScalableResources>,
        metrics: Arc<dyn ScalingMetrics>,
        config: ScalingConfig,
    ) -> Self {
        ScalingController {
            inner: Arc::new(Inner {
                engine,
                resources,
                metrics,
                config,
                state: Mutex::new(LoopState::default()),
            }),
        }
    }

    /// Runs passes every `interval` until the process ends.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.inner.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.pass().await {
                tracing::warn!("scaling pass: {e}");
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LoopState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One pass over every target, at the engine clock's now.
    pub async fn pass(&self) -> Result<(), EngineError> {
        let now = self.inner.engine.clock().now();
        let after = {
            let state = self.state();
            state
                .last_pass
                .unwrap_or_else(|| now.checked_sub(self.inner.config.interval).unwrap_or(now))
        };
        let targets = self.inner.engine.store().read(store::all_targets).await?;
        for (target, history) in targets {
            let span = tracing::info_span!("scaling", target = %target.scalable_target_arn);
            if let Err(e) = self
                .reconcile(target, history, after, now)
                .instrument(span)
                .await
            {
                tracing::warn!("scaling target: {e}");
            }
        }
        let purge = {
            let mut state = self.state();
            state.last_pass = Some(now);
            let due = state
                .last_purge
                .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= PURGE_EVERY);
            if due {
                state.last_purge = Some(now);
            }
            due
        };
        if purge {
            let before = self.inner.engine.now().as_millis() - ACTIVITY_RETENTION_MILLIS;
            self.inner
                .engine
                .store()
                .write(move |tx| store::purge_activities(tx, before))
                .await?;
        }
        Ok(())
    }

    async fn reconcile(
        &self,
        mut target: ScalableTarget,
        history: ScalingHistory,
        after: SystemTime,
        now: SystemTime,
    ) -> Result<(), EngineError> {
        let key = target.key();
        if !target.suspended_state.scheduled_scaling_suspended {
            target = self.run_schedules(target, after, now).await?;
        }
        if let Some(until) = self.state().failed_until.get(&key) {
            if now < *until {
                return Ok(());
            }
        }
        let Some(current) = self.inner.resources.desired_count(&key.resource_id).await? else {
            tracing::debug!(resource = %key.resource_id, "no such service; nothing to scale");
            return Ok(());
        };
        let read_key = key.clone();
        let (policies, tags) = self
            .inner
            .engine
            .store()
            .read(move |conn| {
                let policies = store::target_policies(conn, &read_key)?;
                let tags = tagging::target_tags(conn, &target_arn(conn, &read_key)?)?;
                Ok::<_, EngineError>((policies, tags))
            })
            .await?;
        let inputs = self.policy_inputs(&key, &policies, &tags, now);
        let views: Vec<PolicyView<'_>> = inputs
            .iter()
            .map(|i| PolicyView {
                name: &i.name,
                rule: &i.rule,
                samples: &i.samples,
                alarm: i.alarm.as_ref(),
                alarm_high: &i.alarm_high,
                alarm_low: &i.alarm_low,
            })
            .collect();
        let decision = policy::decide(
            &target,
            current,
            &history,
            &views,
            now,
            &self.inner.config.tuning,
        );
        let Decision::Scale {
            to,
            direction,
            cause,
        } = decision
        else {
            return Ok(());
        };
        self.scale(key, current, to, direction, cause, history)
            .await
    }

    /// Applies the scheduled actions due in `(after, now]`; returns the
    /// target as it stands after them.
    async fn run_schedules(
        &self,
        target: ScalableTarget,
        after: SystemTime,
        now: SystemTime,
    ) -> Result<ScalableTarget, EngineError> {
        let key = target.key();
        let read_key = key.clone();
        let actions = self
            .inner
            .engine
            .store()
            .read(move |conn| store::target_scheduled_actions(conn, &read_key))
            .await?;
        let due: Vec<_> = actions
            .into_iter()
            .filter(|a| policy::fires_between(a, after, now))
            .collect();
        if due.is_empty() {
            return Ok(target);
        }
        let stamp = self.inner.engine.now();
        self.inner
            .engine
            .store()
            .write(move |tx| {
                // Read again inside the write, so a registration that
                // came in between is not overwritten.
                let Some(mut target) = store::get_target(tx, &key)? else {
                    return Ok(target);
                };
                for action in &due {
                    let (min, max) = policy::scheduled_range(&target, action);
                    let bounds = action.scalable_target_action.unwrap_or_default();
                    target.min_capacity = min;
                    target.max_capacity = max;
                    let activity = activities::scheduled_range(
                        &key,
                        &action.scheduled_action_name,
                        bounds.min_capacity.map(|_| min),
                        bounds.max_capacity.map(|_| max),
                        stamp,
                    );
                    store::insert_activity(tx, &activity)?;
                    tracing::info!(
                        action = %action.scheduled_action_name,
                        min, max, "scheduled action ran"
                    );
                }
                store::put_target(tx, &target)?;
                Ok::<_, StoreError>(target)
            })
            .await
            .map_err(EngineError::from)
    }

    fn policy_inputs(
        &self,
        key: &TargetKey,
        policies: &[ScalingPolicy],
        tags: &hail_model::autoscaling::TagMap,
        now: SystemTime,
    ) -> Vec<PolicyInput> {
        let since = now
            .checked_sub(self.inner.config.history)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut inputs = Vec::new();
        for p in policies {
            let rule = match p.rule() {
                Some(Ok(rule)) => rule,
                // A type Hail does not act on, or a stored configuration
                // that no longer checks out: the policy has no say.
                _ => continue,
            };
            let (metric, alarm, alarm_high, alarm_low) = match &rule {
                PolicyRule::TargetTracking(tt) => {
                    let name_of = |kind: &str| {
                        p.alarms
                            .iter()
                            .find(|a| a.alarm_name.contains(kind))
                            .map(|a| a.alarm_name.clone())
                            .unwrap_or_else(|| format!("TargetTracking-{}{kind}", key.resource_id))
                    };
                    (
                        tt.metric.clone(),
                        None,
                        name_of("-AlarmHigh-"),
                        name_of("-AlarmLow-"),
                    )
                }
                PolicyRule::Step(_) => {
                    let tag = format!("{STEP_ALARM_TAG_PREFIX}{}", p.policy_name);
                    let Some(value) = tags.get(&tag) else {
                        continue;
                    };
                    match StepAlarm::parse(value) {
                        Ok(alarm) => (alarm.metric.clone(), Some(alarm), tag.clone(), tag),
                        Err(e) => {
                            let mut state = self.state();
                            if state.reported.get(&tag) != Some(value) {
                                tracing::warn!(policy = %p.policy_name, "{e}");
                                state.reported.insert(tag, value.clone());
                            }
                            continue;
                        }
                    }
                }
            };
            let (kind, factor) = MetricKind::of(&metric);
            let samples: Vec<Sample> = self
                .inner
                .metrics
                .samples(&key.resource_id, &kind, since)
                .into_iter()
                .map(|(t, v)| (t, v * factor))
                .collect();
            inputs.push(PolicyInput {
                name: p.policy_name.clone(),
                rule,
                samples,
                alarm,
                alarm_high,
                alarm_low,
            });
        }
        inputs
    }

    async fn scale(
        &self,
        key: TargetKey,
        from: u32,
        to: u32,
        direction: Direction,
        cause: String,
        history: ScalingHistory,
    ) -> Result<(), EngineError> {
        let started = self.inner.engine.now();
        let activity = activities::setting_desired_count(&key, to, cause, started);
        let recorded = activity.clone();
        let write_key = key.clone();
        let exists = self
            .inner
            .engine
            .store()
            .write(move |tx| {
                if store::get_target(tx, &write_key)?.is_none() {
                    return Ok(false);
                }
                store::insert_activity(tx, &recorded)?;
                Ok::<_, StoreError>(true)
            })
            .await?;
        if !exists {
            return Ok(());
        }
        let outcome = self
            .inner
            .resources
            .set_desired_count(&key.resource_id, to)
            .await
            .map_err(|e| e.to_string());
        let ended = self.inner.engine.now();
        let ok = outcome.is_ok();
        if let Err(reason) = &outcome {
            tracing::warn!(resource = %key.resource_id, to, "setting desired count failed: {reason}");
            let retry = self.inner.engine.clock().now() + self.inner.config.retry_after;
            self.state().failed_until.insert(key.clone(), retry);
        } else {
            tracing::info!(resource = %key.resource_id, from, to, ?direction, "scaled");
            self.state().failed_until.remove(&key);
        }
        let done = activities::finished(activity, to, outcome, ended);
        let new_history = policy::record_change(&history, direction, from, to, ended);
        self.inner
            .engine
            .store()
            .write(move |tx| {
                store::update_activity(tx, &done)?;
                if ok {
                    store::set_history(tx, &key, &new_history)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok(())
    }
}

/// What a policy contributes to a decision, owned for the pass.
struct PolicyInput {
    name: String,
    rule: PolicyRule,
    samples: Vec<Sample>,
    alarm: Option<StepAlarm>,
    alarm_high: String,
    alarm_low: String,
}

fn target_arn(conn: &hail_store::Connection, key: &TargetKey) -> Result<String, EngineError> {
    Ok(store::get_target(conn, key)?
        .map(|t| t.scalable_target_arn)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::super::testing::{call, engine, FakeClock, FakeMetrics, FakeServices};
    use super::*;

    const ID: &str = "service/bean-counter-cluster/bean-counter-service";

    struct Rig {
        _dir: tempfile::TempDir,
        engine: Engine,
        clock: Arc<FakeClock>,
        services: Arc<FakeServices>,
        metrics: Arc<FakeMetrics>,
        controller: ScalingController,
    }

    fn rig(desired: u32) -> Rig {
        let clock = FakeClock::at(1_700_000_000);
        let (dir, engine) = engine(clock.clone());
        let services = FakeServices::with(&[(ID, desired)]);
        let engine = engine.with_scalable_resources(services.clone());
        let metrics = Arc::new(FakeMetrics::default());
        let controller = ScalingController::new(
            engine.clone(),
            services.clone(),
            metrics.clone(),
            ScalingConfig::default(),
        );
        Rig {
            _dir: dir,
            engine,
            clock,
            services,
            metrics,
            controller,
        }
    }

    impl Rig {
        async fn call(&self, op: &str, body: Value) -> Value {
            call(&self.engine, op, body).await.unwrap()
        }

        async fn register(&self, min: u32, max: u32) {
            self.call(
                "RegisterScalableTarget",
                json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                       "ScalableDimension": "ecs:service:DesiredCount",
                       "MinCapacity": min, "MaxCapacity": max}),
            )
            .await;
        }

        async fn cpu_policy(&self, target: f64) -> Value {
            self.call(
                "PutScalingPolicy",
                json!({"PolicyName": "cpu75-target-tracking-scaling-policy",
                       "ServiceNamespace": "ecs", "ResourceId": ID,
                       "ScalableDimension": "ecs:service:DesiredCount",
                       "PolicyType": "TargetTrackingScaling",
                       "TargetTrackingScalingPolicyConfiguration": {"TargetValue": target,
                           "PredefinedMetricSpecification":
                               {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
                           "ScaleOutCooldown": 60, "ScaleInCooldown": 60}}),
            )
            .await
        }

        /// Runs a pass per second for `secs` seconds, the CPU metric being
        /// `value` for each of them.
        async fn run(&self, secs: u64, cpu: Option<f64>) {
            for _ in 0..secs {
                self.clock.advance(1);
                if let Some(v) = cpu {
                    self.metrics
                        .fill(ID, MetricKind::CpuUtilization, self.clock.now(), 1, v);
                }
                self.controller.pass().await.unwrap();
            }
        }

        async fn activities(&self) -> Vec<Value> {
            self.call(
                "DescribeScalingActivities",
                json!({"ServiceNamespace": "ecs", "ResourceId": ID}),
            )
            .await["ScalingActivities"]
                .as_array()
                .unwrap()
                .clone()
        }
    }

    use hail_api::Clock as _;

    #[tokio::test]
    async fn registration_brings_the_service_into_range() {
        let r = rig(1);
        r.register(2, 4).await;
        r.run(1, None).await;
        assert_eq!(r.services.count(ID), Some(2));
        let acts = r.activities().await;
        assert_eq!(acts.len(), 1);
        let a = &acts[0];
        assert_eq!(a["Description"], "Setting desired count to 2.");
        assert_eq!(a["Cause"], "minimum capacity was set to 2");
        assert_eq!(a["StatusCode"], "Successful");
        assert_eq!(
            a["StatusMessage"],
            "Successfully set desired count to 2. Change successfully fulfilled by ecs."
        );
        assert_eq!(a["ServiceNamespace"], "ecs");
        assert_eq!(a["ScalableDimension"], "ecs:service:DesiredCount");
        assert!(a["StartTime"].is_number() && a["EndTime"].is_number());
        assert_eq!(a["ActivityId"].as_str().unwrap().len(), 36);
        r.run(5, None).await;
        assert_eq!(r.activities().await.len(), 1, "nothing more to do");
    }

    #[tokio::test]
    async fn target_tracking_scales_out_fast_and_in_slowly() {
        let r = rig(2);
        r.register(2, 8).await;
        let put = r.cpu_policy(75.0).await;
        let high_alarm = put["Alarms"][0]["AlarmName"].as_str().unwrap().to_owned();
        r.run(10, Some(50.0)).await;
        assert_eq!(r.services.count(ID), Some(2));
        // CPU jumps to 150 %: out within three seconds to ceil(2 × 150 / 75) = 4.
        r.run(3, Some(150.0)).await;
        assert_eq!(r.services.count(ID), Some(4));
        let acts = r.activities().await;
        assert_eq!(acts[0]["Description"], "Setting desired count to 4.");
        assert_eq!(
            acts[0]["Cause"],
            format!(
                "monitor alarm {high_alarm} in state ALARM triggered policy \
                 cpu75-target-tracking-scaling-policy"
            )
        );
        // Load spread over 4 tasks: 75 %, at target: nothing for minutes.
        r.run(180, Some(75.0)).await;
        assert_eq!(r.services.count(ID), Some(4));
        // Load falls to 20 % a task: scale-in only after a full minute.
        r.run(59, Some(20.0)).await;
        assert_eq!(r.services.count(ID), Some(4));
        r.run(2, Some(20.0)).await;
        assert_eq!(
            r.services.count(ID),
            Some(2),
            "ceil(4 × 20 / 75) = 2, the minimum"
        );
        let acts = r.activities().await;
        assert!(acts[0]["Cause"].as_str().unwrap().contains("-AlarmLow-"));
    }

    #[tokio::test]
    async fn cooldowns_survive_a_new_controller() {
        let r = rig(2);
        r.register(1, 10).await;
        r.cpu_policy(50.0).await;
        r.run(3, Some(100.0)).await;
        assert_eq!(r.services.count(ID), Some(4));
        // A controller started afresh (a server restart) reads the history.
        let again = ScalingController::new(
            r.engine.clone(),
            r.services.clone(),
            r.metrics.clone(),
            ScalingConfig::default(),
        );
        // The tasks are not running yet: still 100 % over the old two. In
        // the cooldown the need is counted from 2 → 4: nothing more.
        for _ in 0..10 {
            r.clock.advance(1);
            r.metrics
                .fill(ID, MetricKind::CpuUtilization, r.clock.now(), 1, 100.0);
            again.pass().await.unwrap();
        }
        assert_eq!(r.services.count(ID), Some(4));
    }

    #[tokio::test]
    async fn failures_are_recorded_and_retried_later() {
        let r = rig(1);
        r.register(3, 5).await;
        *r.services.fail.lock().unwrap() = true;
        r.run(1, None).await;
        let acts = r.activities().await;
        assert_eq!(acts[0]["StatusCode"], "Failed");
        assert!(acts[0]["StatusMessage"]
            .as_str()
            .unwrap()
            .starts_with("Failed to set desired count to 3. Reason: "));
        r.run(10, None).await;
        assert_eq!(r.activities().await.len(), 1, "not retried every second");
        *r.services.fail.lock().unwrap() = false;
        r.run(25, None).await;
        assert_eq!(r.services.count(ID), Some(3));
        assert_eq!(r.activities().await[0]["StatusCode"], "Successful");
    }

    #[tokio::test]
    async fn scheduled_actions_change_the_range_and_clamp() {
        let r = rig(2);
        r.register(1, 10).await;
        r.call(
            "PutScheduledAction",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount",
                   "ScheduledActionName": "morning", "Schedule": "rate(1 minute)",
                   "ScalableTargetAction": {"MinCapacity": 5, "MaxCapacity": 10}}),
        )
        .await;
        r.run(59, None).await;
        assert_eq!(r.services.count(ID), Some(2));
        r.run(1, None).await;
        assert_eq!(r.services.count(ID), Some(5));
        let targets = r
            .call(
                "DescribeScalableTargets",
                json!({"ServiceNamespace": "ecs"}),
            )
            .await;
        assert_eq!(targets["ScalableTargets"][0]["MinCapacity"], 5);
        let acts = r.activities().await;
        assert_eq!(acts[0]["Cause"], "minimum capacity was set to 5");
        assert_eq!(
            acts[1]["Description"],
            "Setting min capacity to 5 and max capacity to 10"
        );
        assert_eq!(
            acts[1]["Cause"],
            "scheduled action name morning was triggered"
        );
        // Suspended scheduled scaling: the next occurrence does nothing.
        r.call(
            "RegisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 1,
                   "SuspendedState": {"ScheduledScalingSuspended": true}}),
        )
        .await;
        r.run(61, None).await;
        let targets = r
            .call(
                "DescribeScalableTargets",
                json!({"ServiceNamespace": "ecs"}),
            )
            .await;
        assert_eq!(targets["ScalableTargets"][0]["MinCapacity"], 1);
    }

    #[tokio::test]
    async fn services_that_are_gone_are_left_alone() {
        let r = rig(1);
        r.register(2, 4).await;
        r.services.counts.lock().unwrap().clear();
        r.run(3, None).await;
        assert!(r.activities().await.is_empty());
        assert!(r.services.updates.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn step_policies_act_through_their_alarm_tag() {
        let r = rig(2);
        r.register(1, 10).await;
        let arn = r
            .call(
                "DescribeScalableTargets",
                json!({"ServiceNamespace": "ecs"}),
            )
            .await["ScalableTargets"][0]["ScalableTargetARN"]
            .clone();
        r.call(
            "PutScalingPolicy",
            json!({"PolicyName": "cpu-steps", "ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount", "PolicyType": "StepScaling",
                   "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity",
                       "StepAdjustments": [
                           {"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 20, "ScalingAdjustment": 1},
                           {"MetricIntervalLowerBound": 20, "ScalingAdjustment": 3}],
                       "Cooldown": 60}}),
        )
        .await;
        r.run(5, Some(99.0)).await;
        assert_eq!(r.services.count(ID), Some(2), "no alarm, no action");
        r.call(
            "TagResource",
            json!({"ResourceARN": arn, "Tags": {"hail:stepAlarm:cpu-steps":
                "metric=ECSServiceAverageCPUUtilization comparison=GreaterThanOrEqualToThreshold threshold=70"}}),
        )
        .await;
        r.run(3, Some(99.0)).await;
        assert_eq!(r.services.count(ID), Some(5));
        let acts = r.activities().await;
        assert_eq!(
            acts[0]["Cause"],
            "monitor alarm hail:stepAlarm:cpu-steps in state ALARM triggered policy cpu-steps"
        );
    }
}
