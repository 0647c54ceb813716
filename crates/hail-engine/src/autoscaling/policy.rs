//! Scaling decisions: pure functions of a target, its policies, its current
//! capacity, the metric samples and the time. No I/O, no clock.
//!
//! Metrics arrive one sample a second. The rules, per target:
//!
//! 1. **Range first.** A capacity outside `[min, max]` is brought to the
//!    nearest bound (cause `minimum capacity was set to N`), whatever is
//!    suspended: the range is the user's word, as on AWS.
//! 2. **Only fresh samples count.** Samples taken before the last change of
//!    capacity describe another capacity and are ignored.
//! 3. **Target tracking, out.** When every sample of the short window
//!    ([`Tuning::scale_out_window`], 3 s) is above the target, the policy
//!    proposes `ceil(capacity × mean / target)`: a load spike is answered
//!    within seconds. During the policy's ScaleOutCooldown after a
//!    scale-out from `from` to `to`, the proposal is computed from `from`,
//!    and acts only when it exceeds `to` — the capacity the previous
//!    scale-out added counts toward the next one, as AWS documents, so
//!    tasks still starting are not paid for twice.
//! 4. **Target tracking, in.** Only when a whole long window
//!    ([`Tuning::scale_in_window`], 60 s) of samples is below
//!    `target × scale_in_margin` (0.9), and not during the ScaleInCooldown
//!    of the last scale-in, does the policy propose
//!    `ceil(capacity × peak / target)`, the peak of the window. The margin
//!    and the rounding up make a steady load near the target stay put:
//!    after a scale-out the per-task load falls, but never far enough to
//!    undo it. `DisableScaleIn` makes the policy abstain from scale-in.
//!    A scale-out is allowed during a scale-in cooldown (and ends it).
//! 5. **Step scaling.** A step policy acts while its alarm is in ALARM (every
//!    sample of the alarm's window breaches its threshold): the aggregated
//!    metric's distance from the threshold picks the step, whose adjustment
//!    (ChangeInCapacity, PercentChangeInCapacity with AWS's rounding and
//!    MinAdjustmentMagnitude, or ExactCapacity) gives the new capacity. Its
//!    Cooldown works like the target tracking ones.
//! 6. **Several policies.** The largest scale-out proposal wins. Scale-in
//!    happens only when every policy that has a say proposes it (the
//!    largest of their proposals), as AWS does.
//! 7. **Suspended states.** DynamicScalingOutSuspended and
//!    DynamicScalingInSuspended stop the policies' scale-outs and scale-ins;
//!    ScheduledScalingSuspended stops scheduled actions.

use std::time::{Duration, SystemTime};

use hail_model::autoscaling::{
    AdjustmentType, MetricAggregation, PolicyRule, ScalableTarget, ScalingHistory, Schedule,
    ScheduledAction, StepAlarm, StepScaling, TargetTracking,
};
use hail_model::ecs::Timestamp;

use super::zone;

/// The windows the decisions look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// How long every sample must be above target before scaling out.
    pub scale_out_window: Duration,
    /// How long every sample must be below `target × scale_in_margin`
    /// before scaling in.
    pub scale_in_window: Duration,
    /// The fraction of the target below which load must stay to scale in.
    pub scale_in_margin: f64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            scale_out_window: Duration::from_secs(3),
            scale_in_window: Duration::from_secs(60),
            scale_in_margin: 0.9,
        }
    }
}

/// One sample: when, and the metric's value in the policy's unit.
pub type Sample = (SystemTime, f64);

/// A policy as the decision sees it.
#[derive(Debug, Clone)]
pub struct PolicyView<'a> {
    pub name: &'a str,
    pub rule: &'a PolicyRule,
    /// Target tracking: the samples of the policy's metric. Step: the
    /// samples of its alarm's metric.
    pub samples: &'a [Sample],
    /// Step scaling: the alarm that drives it; without one it never acts.
    pub alarm: Option<&'a StepAlarm>,
    /// Names of the alarms that appear in causes: high (scale-out) and low
    /// (scale-in).
    pub alarm_high: &'a str,
    pub alarm_low: &'a str,
}

/// Which way a change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    /// Into the target's range, not a policy's doing.
    Range,
}

/// What to do with a target now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Hold,
    Scale {
        to: u32,
        direction: Direction,
        /// The activity's cause, in AWS's words.
        cause: String,
    },
}

/// How one policy votes on scale-in.
#[derive(Debug, Clone, PartialEq)]
enum InVote {
    /// It has no say (DisableScaleIn, or a step alarm not in ALARM).
    Abstain,
    /// It wants the capacity kept.
    Keep,
    In(u32, String),
}

#[derive(Debug, Clone, PartialEq)]
struct Proposal {
    out: Option<(u32, String)>,
    vote: InVote,
}

fn within(last: Option<Timestamp>, secs: u32, now: SystemTime) -> bool {
    let Some(at) = last else { return false };
    let now = Timestamp::from_system_time(now).unwrap_or(Timestamp::from_millis(0));
    now.as_millis() < at.as_millis().saturating_add(i64::from(secs) * 1000)
}

fn to_system(t: Timestamp) -> SystemTime {
    let ms = t.as_millis();
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

/// The samples of the last `window` taken after the last change, and
/// whether they cover the window: from its first second on, one a second,
/// of which a tenth may be missing.
fn window(
    samples: &[Sample],
    now: SystemTime,
    window: Duration,
    history: &ScalingHistory,
) -> (Vec<f64>, bool) {
    let start = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
    let fresh_after = history.last_change.map(|c| to_system(c.at));
    let fresh: Vec<&Sample> = samples
        .iter()
        .filter(|(at, v)| *at > start && *at <= now && v.is_finite())
        .filter(|(at, _)| fresh_after.is_none_or(|c| *at > c))
        .collect();
    let secs = window.as_secs().max(1) as usize;
    let needed = secs - secs / 10;
    let starts_in_time = fresh
        .iter()
        .map(|(at, _)| *at)
        .min()
        .is_some_and(|first| first <= start + Duration::from_secs(1));
    let covered = fresh.len() >= needed && starts_in_time;
    (fresh.iter().map(|(_, v)| *v).collect(), covered)
}

fn ceil_capacity(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // Guard against 3.0000000000000004 becoming 4.
        let r = x.round();
        if (x - r).abs() < 1e-9 {
            r as u32
        } else {
            x.ceil() as u32
        }
    }
}

fn target_tracking(
    tt: &TargetTracking,
    p: &PolicyView<'_>,
    current: u32,
    history: &ScalingHistory,
    now: SystemTime,
    tuning: &Tuning,
) -> Proposal {
    let mut out = None;
    let (short, full) = window(p.samples, now, tuning.scale_out_window, history);
    if full && short.iter().all(|v| *v > tt.target_value) {
        let mean = short.iter().sum::<f64>() / short.len() as f64;
        let cooling = history
            .last_scale_out
            .filter(|c| within(Some(c.at), tt.scale_out_cooldown_secs, now));
        let base = cooling.map_or(current, |c| c.from);
        let proposal = ceil_capacity(f64::from(base) * mean / tt.target_value);
        if proposal > current {
            let cause = format!(
                "monitor alarm {} in state ALARM triggered policy {}",
                p.alarm_high, p.name
            );
            out = Some((proposal, cause));
        }
    }
    let vote = if tt.disable_scale_in {
        InVote::Abstain
    } else if within(
        history.last_scale_in.map(|c| c.at),
        tt.scale_in_cooldown_secs,
        now,
    ) {
        InVote::Keep
    } else {
        let (long, full) = window(p.samples, now, tuning.scale_in_window, history);
        let low = tt.target_value * tuning.scale_in_margin;
        if full && long.iter().all(|v| *v < low) {
            let peak = long.iter().copied().fold(0.0_f64, f64::max);
            let proposal = ceil_capacity(f64::from(current) * peak / tt.target_value);
            if proposal < current {
                let cause = format!(
                    "monitor alarm {} in state ALARM triggered policy {}",
                    p.alarm_low, p.name
                );
                InVote::In(proposal, cause)
            } else {
                InVote::Keep
            }
        } else {
            InVote::Keep
        }
    };
    Proposal { out, vote }
}

/// The capacity a step adjustment gives from `base`.
pub fn adjusted(step: &StepScaling, base: u32, adjustment: i64) -> u32 {
    let base_i = i64::from(base);
    let new = match step.adjustment_type {
        AdjustmentType::ExactCapacity => adjustment,
        AdjustmentType::ChangeInCapacity => base_i.saturating_add(adjustment),
        AdjustmentType::PercentChangeInCapacity => {
            let d = base_i as f64 * adjustment as f64 / 100.0;
            // AWS's rounding: a fraction of one becomes one, larger changes
            // round toward zero.
            let mut change = if d > 0.0 && d < 1.0 {
                1
            } else if d < 0.0 && d > -1.0 {
                -1
            } else {
                d.trunc() as i64
            };
            if let Some(min) = step.min_adjustment_magnitude {
                let min = i64::from(min);
                if change != 0 && change.abs() < min {
                    change = change.signum() * min;
                }
            }
            base_i.saturating_add(change)
        }
    };
    new.clamp(0, i64::from(u32::MAX)) as u32
}

fn aggregate(values: &[f64], how: MetricAggregation) -> f64 {
    match how {
        MetricAggregation::Average => values.iter().sum::<f64>() / values.len() as f64,
        MetricAggregation::Minimum => values.iter().copied().fold(f64::INFINITY, f64::min),
        MetricAggregation::Maximum => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

fn step_scaling(
    step: &StepScaling,
    p: &PolicyView<'_>,
    current: u32,
    history: &ScalingHistory,
    now: SystemTime,
) -> Proposal {
    let abstain = Proposal {
        out: None,
        vote: InVote::Abstain,
    };
    let Some(alarm) = p.alarm else {
        return abstain;
    };
    let (values, full) = window(
        p.samples,
        now,
        Duration::from_secs(alarm.evaluation_secs.into()),
        history,
    );
    if !full
        || !values
            .iter()
            .all(|v| alarm.comparison.breached(*v, alarm.threshold))
    {
        return abstain;
    }
    let delta = aggregate(&values, step.aggregation) - alarm.threshold;
    // Above the threshold a step's lower bound is inclusive and its upper
    // bound exclusive; below it, the other way round.
    let chosen = step.steps.iter().find(|s| {
        let lower = s.metric_interval_lower_bound.unwrap_or(f64::NEG_INFINITY);
        let upper = s.metric_interval_upper_bound.unwrap_or(f64::INFINITY);
        if delta >= 0.0 {
            lower <= delta && delta < upper
        } else {
            lower < delta && delta <= upper
        }
    });
    let Some(chosen) = chosen else {
        return abstain;
    };
    let cause = format!(
        "monitor alarm {} in state ALARM triggered policy {}",
        p.alarm_high, p.name
    );
    let new = adjusted(step, current, chosen.scaling_adjustment);
    if new > current {
        let cooling = history
            .last_scale_out
            .filter(|c| within(Some(c.at), step.cooldown_secs, now));
        let proposal = match cooling {
            Some(c) => adjusted(step, c.from, chosen.scaling_adjustment),
            None => new,
        };
        Proposal {
            out: (proposal > current).then_some((proposal, cause)),
            vote: InVote::Keep,
        }
    } else if new < current {
        let vote = if within(history.last_scale_in.map(|c| c.at), step.cooldown_secs, now) {
            InVote::Keep
        } else {
            InVote::In(new, cause)
        };
        Proposal { out: None, vote }
    } else {
        Proposal {
            out: None,
            vote: InVote::Keep,
        }
    }
}

/// What to do with `target`, whose capacity is `current`, now.
pub fn decide(
    target: &ScalableTarget,
    current: u32,
    history: &ScalingHistory,
    policies: &[PolicyView<'_>],
    now: SystemTime,
    tuning: &Tuning,
) -> Decision {
    let (min, max) = (target.min_capacity, target.max_capacity);
    if current < min {
        return Decision::Scale {
            to: min,
            direction: Direction::Range,
            cause: format!("minimum capacity was set to {min}"),
        };
    }
    if current > max {
        return Decision::Scale {
            to: max,
            direction: Direction::Range,
            cause: format!("maximum capacity was set to {max}"),
        };
    }
    let proposals: Vec<Proposal> = policies
        .iter()
        .map(|p| match p.rule {
            PolicyRule::TargetTracking(tt) => target_tracking(tt, p, current, history, now, tuning),
            PolicyRule::Step(step) => step_scaling(step, p, current, history, now),
        })
        .collect();
    let suspended = target.suspended_state;
    if !suspended.dynamic_scaling_out_suspended {
        let best = proposals
            .iter()
            .filter_map(|p| p.out.as_ref())
            .max_by_key(|(n, _)| *n);
        if let Some((n, cause)) = best {
            let to = (*n).clamp(min, max);
            if to > current {
                return Decision::Scale {
                    to,
                    direction: Direction::Out,
                    cause: cause.clone(),
                };
            }
        }
    }
    if !suspended.dynamic_scaling_in_suspended {
        let votes: Vec<&InVote> = proposals
            .iter()
            .map(|p| &p.vote)
            .filter(|v| **v != InVote::Abstain)
            .collect();
        let all_in = !votes.is_empty() && votes.iter().all(|v| matches!(v, InVote::In(..)));
        if all_in {
            let binding = votes
                .iter()
                .filter_map(|v| match v {
                    InVote::In(n, cause) => Some((*n, cause)),
                    _ => None,
                })
                .max_by_key(|(n, _)| *n);
            if let Some((n, cause)) = binding {
                let to = n.clamp(min, max);
                if to < current {
                    return Decision::Scale {
                        to,
                        direction: Direction::In,
                        cause: cause.clone(),
                    };
                }
            }
        }
    }
    Decision::Hold
}

/// The history after a change of capacity from `from` to `to` at `now`.
pub fn record_change(
    history: &ScalingHistory,
    direction: Direction,
    from: u32,
    to: u32,
    now: Timestamp,
) -> ScalingHistory {
    let change = hail_model::autoscaling::CapacityChange { at: now, from, to };
    let mut h = *history;
    h.last_change = Some(change);
    match direction {
        Direction::Out => h.last_scale_out = Some(change),
        // A scale-in ends a scale-out cooldown's accounting, and a
        // scale-out ends a scale-in cooldown, as on AWS.
        Direction::In => {
            h.last_scale_in = Some(change);
            h.last_scale_out = None;
        }
        Direction::Range => {}
    }
    if direction == Direction::Out {
        h.last_scale_in = None;
    }
    h
}

/// Whether scheduled action `action` has an occurrence in `(after, upto]`.
/// Cron minutes are looked for at most two minutes back, so a pass after a
/// long pause runs an action once, not once per missed minute.
pub fn fires_between(action: &ScheduledAction, after: SystemTime, upto: SystemTime) -> bool {
    let Ok(schedule) = Schedule::parse(&action.schedule) else {
        return false;
    };
    let start = action.start_time.map(to_system);
    let end = action.end_time.map(to_system);
    let in_range = |t: SystemTime| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e);
    let tz = action.timezone.as_deref();
    match schedule {
        Schedule::At(civil) => {
            zone::instant_of(&civil, tz).is_some_and(|t| t > after && t <= upto && in_range(t))
        }
        Schedule::Rate { seconds } => {
            let period = seconds.max(1);
            let (anchor, first) = match start {
                Some(s) => (s, 0),
                None => (to_system(action.creation_time), 1),
            };
            let Ok(elapsed) = upto.duration_since(anchor) else {
                return false;
            };
            let k = elapsed.as_secs() / period;
            if k < first {
                return false;
            }
            let t = anchor + Duration::from_secs(k * period);
            t > after && in_range(t)
        }
        Schedule::Cron(cron) => {
            let Ok(upto_secs) = upto.duration_since(SystemTime::UNIX_EPOCH) else {
                return false;
            };
            let last_minute = upto_secs.as_secs() / 60 * 60;
            (0..2).any(|back| {
                let Some(m) = last_minute.checked_sub(back * 60) else {
                    return false;
                };
                let t = SystemTime::UNIX_EPOCH + Duration::from_secs(m);
                t > after && in_range(t) && zone::civil_at(t, tz).is_some_and(|c| cron.matches(&c))
            })
        }
    }
}

/// The range a scheduled action gives a target: its bounds replace the
/// target's; a bound it leaves out is moved only as far as needed to keep
/// `min <= max`.
pub fn scheduled_range(target: &ScalableTarget, action: &ScheduledAction) -> (u32, u32) {
    let a = action.scalable_target_action.unwrap_or_default();
    let to_u32 = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    let min = a.min_capacity.map(to_u32);
    let max = a.max_capacity.map(to_u32);
    match (min, max) {
        (Some(min), Some(max)) => (min, max.max(min)),
        (Some(min), None) => (min, target.max_capacity.max(min)),
        (None, Some(max)) => (target.min_capacity.min(max), max),
        (None, None) => (target.min_capacity, target.max_capacity),
    }
}

#[cfg(test)]
mod tests {
    use hail_model::autoscaling::{
        CapacityChange, Comparison, PredefinedMetric, ScalableTargetAction, StepAdjustment,
        SuspendedState, ECS_DESIRED_COUNT,
    };

    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn ts(secs: u64) -> Timestamp {
        Timestamp::from_system_time(at(secs)).unwrap()
    }

    fn target(min: u32, max: u32) -> ScalableTarget {
        ScalableTarget {
            service_namespace: "ecs".into(),
            resource_id: "service/c/s".into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            min_capacity: min,
            max_capacity: max,
            role_arn: "r".into(),
            creation_time: ts(0),
            suspended_state: SuspendedState::default(),
            scalable_target_arn: "a".into(),
        }
    }

    fn cpu(target_value: f64, out_cd: u32, in_cd: u32) -> PolicyRule {
        PolicyRule::TargetTracking(TargetTracking {
            metric: PredefinedMetric::EcsCpu,
            target_value,
            scale_out_cooldown_secs: out_cd,
            scale_in_cooldown_secs: in_cd,
            disable_scale_in: false,
        })
    }

    /// A series: `value(t)` for every second t in `[from, to)`.
    fn series(from: u64, to: u64, value: impl Fn(u64) -> f64) -> Vec<Sample> {
        (from..to).map(|t| (at(t), value(t))).collect()
    }

    fn view<'a>(name: &'a str, rule: &'a PolicyRule, samples: &'a [Sample]) -> PolicyView<'a> {
        PolicyView {
            name,
            rule,
            samples,
            alarm: None,
            alarm_high: "TargetTracking-service/c/s-AlarmHigh-1",
            alarm_low: "TargetTracking-service/c/s-AlarmLow-2",
        }
    }

    /// Runs the decision every second from `from` to `to` on a simulated
    /// service whose per-task metric is `load(t) / capacity`, applying
    /// each decision at once; returns the capacity after each second and
    /// the decisions taken.
    fn simulate(
        target: &ScalableTarget,
        rule: &PolicyRule,
        start: u32,
        until: u64,
        load: impl Fn(u64) -> f64,
    ) -> (Vec<u32>, Vec<(u64, u32, Direction)>) {
        let mut capacity = start;
        let mut history = ScalingHistory::default();
        let mut samples: Vec<Sample> = Vec::new();
        let mut capacities = Vec::new();
        let mut actions = Vec::new();
        for t in 0..until {
            samples.push((at(t), load(t) / f64::from(capacity.max(1))));
            let d = decide(
                target,
                capacity,
                &history,
                &[view("cpu", rule, &samples)],
                at(t),
                &Tuning::default(),
            );
            if let Decision::Scale { to, direction, .. } = d {
                history = record_change(&history, direction, capacity, to, ts(t));
                actions.push((t, to, direction));
                capacity = to;
            }
            capacities.push(capacity);
        }
        (capacities, actions)
    }

    #[test]
    fn scales_out_within_seconds_of_a_spike() {
        let rule = cpu(75.0, 60, 60);
        // 2 tasks at 60 %, then the load doubles at t = 100: 120 % each.
        let (caps, actions) = simulate(&target(2, 10), &rule, 2, 110, |t| {
            if t < 100 {
                120.0
            } else {
                240.0
            }
        });
        assert_eq!(caps[99], 2);
        // Three seconds above target (100, 101, 102): out at 102 to ceil(2 × 120 / 75) = 4.
        assert_eq!(actions, vec![(102, 4, Direction::Out)]);
        assert_eq!(caps[109], 4);
    }

    #[test]
    fn steady_load_at_target_never_flaps() {
        let rule = cpu(75.0, 60, 60);
        // Exactly at target, and then noise of ±2 % around it for ten minutes.
        let (_, actions) = simulate(&target(1, 10), &rule, 4, 600, |_| 300.0);
        assert!(actions.is_empty(), "{actions:?}");
        let (caps, actions) = simulate(&target(1, 10), &rule, 4, 1200, |t| {
            300.0 + if t % 2 == 0 { 8.0 } else { -8.0 } * ((t % 7) as f64 / 7.0)
        });
        // At most one step up on noise, and never back down.
        assert!(actions.len() <= 1, "{actions:?}");
        assert!(actions.iter().all(|a| a.2 == Direction::Out));
        assert!(caps.iter().all(|c| *c == 4 || *c == 5));
    }

    #[test]
    fn scales_in_after_the_window_and_respects_the_cooldown() {
        let rule = cpu(75.0, 60, 120);
        // 6 tasks at 70 % = 420 units of load, which falls to 90 at t = 10:
        // 15 % each, far below 67.5 %.
        let (caps, actions) = simulate(&target(1, 10), &rule, 6, 400, |t| {
            if t < 10 {
                420.0
            } else {
                90.0
            }
        });
        // Samples from t = 10 on are all low; the 60 s window is full at t = 69.
        assert_eq!(caps[68], 6);
        assert_eq!(actions[0], (69, 2, Direction::In));
        // 2 tasks at 45 %: below 67.5 %, but ceil(2 × 45 / 75) = 2, so
        // once the cooldown is over the policy keeps 2.
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(caps[399], 2);
    }

    #[test]
    fn scale_in_waits_for_cooldown_then_acts() {
        let rule = cpu(75.0, 0, 120);
        let t = target(1, 10);
        let history = ScalingHistory {
            last_scale_in: Some(CapacityChange {
                at: ts(0),
                from: 8,
                to: 6,
            }),
            last_change: Some(CapacityChange {
                at: ts(0),
                from: 8,
                to: 6,
            }),
            ..ScalingHistory::default()
        };
        let samples = series(1, 200, |_| 20.0);
        let d = |now| {
            decide(
                &t,
                6,
                &history,
                &[view("cpu", &rule, &samples)],
                at(now),
                &Tuning::default(),
            )
        };
        assert_eq!(d(100), Decision::Hold);
        match d(121) {
            Decision::Scale {
                to,
                direction,
                cause,
            } => {
                assert_eq!((to, direction), (2, Direction::In));
                assert_eq!(
                    cause,
                    "monitor alarm TargetTracking-service/c/s-AlarmLow-2 in state ALARM triggered policy cpu"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scale_out_is_allowed_during_scale_in_cooldown() {
        let rule = cpu(75.0, 60, 600);
        let t = target(1, 10);
        let history = ScalingHistory {
            last_scale_in: Some(CapacityChange {
                at: ts(0),
                from: 4,
                to: 2,
            }),
            last_change: Some(CapacityChange {
                at: ts(0),
                from: 4,
                to: 2,
            }),
            ..ScalingHistory::default()
        };
        let samples = series(1, 10, |_| 150.0);
        let d = decide(
            &t,
            2,
            &history,
            &[view("cpu", &rule, &samples)],
            at(5),
            &Tuning::default(),
        );
        assert_eq!(
            d,
            Decision::Scale {
                to: 4,
                direction: Direction::Out,
                cause: "monitor alarm TargetTracking-service/c/s-AlarmHigh-1 in state ALARM triggered policy cpu".into()
            }
        );
        let after = record_change(&history, Direction::Out, 2, 4, ts(5));
        assert!(
            after.last_scale_in.is_none(),
            "a scale-out ends the scale-in cooldown"
        );
    }

    #[test]
    fn scale_out_cooldown_counts_the_capacity_already_added() {
        let rule = cpu(50.0, 60, 60);
        let t = target(1, 20);
        // Scaled out 2 → 4 at t = 0; tasks still starting, the metric is
        // still 100 % over the two running ones.
        let history = record_change(&ScalingHistory::default(), Direction::Out, 2, 4, ts(0));
        let samples = series(1, 30, |_| 100.0);
        let d = |now, samples: &[Sample]| {
            decide(
                &t,
                4,
                &history,
                &[view("cpu", &rule, samples)],
                at(now),
                &Tuning::default(),
            )
        };
        // From 2 at 100 % the need is 4: already there, no second scale-out.
        assert_eq!(d(10, &samples), Decision::Hold);
        // The load keeps growing (150 % over the original two): need 6.
        let growing = series(1, 30, |_| 150.0);
        assert!(matches!(d(10, &growing), Decision::Scale { to: 6, .. }));
        // After the cooldown the current capacity is the base: 4 × 100 / 50 = 8.
        let later = series(1, 100, |_| 100.0);
        assert!(matches!(d(90, &later), Decision::Scale { to: 8, .. }));
    }

    #[test]
    fn disable_scale_in_and_suspended_states() {
        let mut tt = TargetTracking {
            metric: PredefinedMetric::EcsCpu,
            target_value: 75.0,
            scale_out_cooldown_secs: 0,
            scale_in_cooldown_secs: 0,
            disable_scale_in: true,
        };
        let rule = PolicyRule::TargetTracking(tt.clone());
        let low = series(0, 100, |_| 10.0);
        let high = series(0, 100, |_| 150.0);
        let mut t = target(1, 10);
        let h = ScalingHistory::default();
        let tuning = Tuning::default();
        assert_eq!(
            decide(&t, 4, &h, &[view("p", &rule, &low)], at(99), &tuning),
            Decision::Hold
        );
        tt.disable_scale_in = false;
        let rule = PolicyRule::TargetTracking(tt);
        assert!(matches!(
            decide(&t, 4, &h, &[view("p", &rule, &low)], at(99), &tuning),
            Decision::Scale {
                to: 1,
                direction: Direction::In,
                ..
            }
        ));
        t.suspended_state.dynamic_scaling_in_suspended = true;
        assert_eq!(
            decide(&t, 4, &h, &[view("p", &rule, &low)], at(99), &tuning),
            Decision::Hold
        );
        assert!(matches!(
            decide(&t, 4, &h, &[view("p", &rule, &high)], at(99), &tuning),
            Decision::Scale {
                to: 8,
                direction: Direction::Out,
                ..
            }
        ));
        t.suspended_state.dynamic_scaling_out_suspended = true;
        assert_eq!(
            decide(&t, 4, &h, &[view("p", &rule, &high)], at(99), &tuning),
            Decision::Hold
        );
        // The range is enforced even with everything suspended.
        t.suspended_state.scheduled_scaling_suspended = true;
        assert_eq!(
            decide(&t, 0, &h, &[], at(99), &tuning),
            Decision::Scale {
                to: 1,
                direction: Direction::Range,
                cause: "minimum capacity was set to 1".into()
            }
        );
    }

    #[test]
    fn proposals_are_clamped_to_the_range() {
        let rule = cpu(10.0, 0, 0);
        let t = target(2, 5);
        let h = ScalingHistory::default();
        let high = series(0, 100, |_| 100.0);
        assert!(matches!(
            decide(
                &t,
                3,
                &h,
                &[view("p", &rule, &high)],
                at(99),
                &Tuning::default()
            ),
            Decision::Scale { to: 5, .. }
        ));
        assert_eq!(
            decide(
                &t,
                5,
                &h,
                &[view("p", &rule, &high)],
                at(99),
                &Tuning::default()
            ),
            Decision::Hold
        );
        let idle = series(0, 100, |_| 0.0);
        assert!(matches!(
            decide(
                &t,
                4,
                &h,
                &[view("p", &rule, &idle)],
                at(99),
                &Tuning::default()
            ),
            Decision::Scale {
                to: 2,
                direction: Direction::In,
                ..
            }
        ));
        assert_eq!(
            decide(&t, 7, &h, &[], at(99), &Tuning::default()),
            Decision::Scale {
                to: 5,
                direction: Direction::Range,
                cause: "maximum capacity was set to 5".into()
            }
        );
        // No samples, no decision.
        assert_eq!(
            decide(
                &t,
                3,
                &h,
                &[view("p", &rule, &[])],
                at(99),
                &Tuning::default()
            ),
            Decision::Hold
        );
    }

    fn steps(kind: AdjustmentType, steps: Vec<StepAdjustment>, cooldown: u32) -> PolicyRule {
        PolicyRule::Step(StepScaling {
            adjustment_type: kind,
            steps,
            min_adjustment_magnitude: None,
            cooldown_secs: cooldown,
            aggregation: MetricAggregation::Average,
        })
    }

    fn step(lower: Option<f64>, upper: Option<f64>, adj: i64) -> StepAdjustment {
        StepAdjustment {
            metric_interval_lower_bound: lower,
            metric_interval_upper_bound: upper,
            scaling_adjustment: adj,
        }
    }

    #[test]
    fn step_scaling_follows_its_steps() {
        let rule = steps(
            AdjustmentType::ChangeInCapacity,
            vec![step(Some(0.0), Some(20.0), 1), step(Some(20.0), None, 3)],
            60,
        );
        let alarm = StepAlarm {
            metric: PredefinedMetric::EcsCpu,
            comparison: Comparison::GreaterThanOrEqualToThreshold,
            threshold: 70.0,
            evaluation_secs: 3,
        };
        let t = target(1, 10);
        let h = ScalingHistory::default();
        let run = |value: f64, history: &ScalingHistory, current: u32| {
            let samples = series(0, 10, |_| value);
            let mut v = view("steps", &rule, &samples);
            v.alarm = Some(&alarm);
            v.alarm_high = "hail:stepAlarm:steps";
            decide(&t, current, history, &[v], at(9), &Tuning::default())
        };
        assert_eq!(run(60.0, &h, 2), Decision::Hold);
        assert!(matches!(
            run(75.0, &h, 2),
            Decision::Scale {
                to: 3,
                direction: Direction::Out,
                ..
            }
        ));
        match run(95.0, &h, 2) {
            Decision::Scale { to, cause, .. } => {
                assert_eq!(to, 5);
                assert_eq!(
                    cause,
                    "monitor alarm hail:stepAlarm:steps in state ALARM triggered policy steps"
                );
            }
            other => panic!("{other:?}"),
        }
        // In cooldown after 2 → 3, a bigger step counts from 2: 2 + 3 = 5.
        let cooling = record_change(&h, Direction::Out, 2, 3, ts(5));
        let samples = series(6, 10, |_| 95.0);
        let mut v = view("steps", &rule, &samples);
        v.alarm = Some(&alarm);
        assert!(matches!(
            decide(&t, 3, &cooling, &[v.clone()], at(9), &Tuning::default()),
            Decision::Scale { to: 5, .. }
        ));
        let small = series(6, 10, |_| 75.0);
        v.samples = &small;
        assert_eq!(
            decide(&t, 3, &cooling, &[v], at(9), &Tuning::default()),
            Decision::Hold
        );
        // Without an alarm a step policy never acts.
        let samples = series(0, 10, |_| 95.0);
        assert_eq!(
            decide(
                &t,
                2,
                &h,
                &[view("steps", &rule, &samples)],
                at(9),
                &Tuning::default()
            ),
            Decision::Hold
        );
    }

    #[test]
    fn step_adjustment_types_round_as_aws_does() {
        let mk = |kind, min_mag| StepScaling {
            adjustment_type: kind,
            steps: vec![],
            min_adjustment_magnitude: min_mag,
            cooldown_secs: 0,
            aggregation: MetricAggregation::Average,
        };
        let pct = mk(AdjustmentType::PercentChangeInCapacity, None);
        assert_eq!(adjusted(&pct, 10, 25), 12); // 2.5 rounds down to 2.
        assert_eq!(adjusted(&pct, 2, 10), 3); // 0.2 becomes 1.
        assert_eq!(adjusted(&pct, 10, -15), 9); // -1.5 rounds toward zero.
        assert_eq!(adjusted(&pct, 2, -10), 1); // -0.2 becomes -1.
        let pct_min = mk(AdjustmentType::PercentChangeInCapacity, Some(3));
        assert_eq!(adjusted(&pct_min, 10, 10), 13);
        assert_eq!(adjusted(&mk(AdjustmentType::ExactCapacity, None), 10, 4), 4);
        assert_eq!(
            adjusted(&mk(AdjustmentType::ChangeInCapacity, None), 1, -3),
            0
        );
    }

    #[test]
    fn step_scale_in_below_threshold() {
        let rule = steps(
            AdjustmentType::ChangeInCapacity,
            vec![step(None, Some(0.0), -1)],
            30,
        );
        let alarm = StepAlarm {
            metric: PredefinedMetric::EcsCpu,
            comparison: Comparison::LessThanThreshold,
            threshold: 20.0,
            evaluation_secs: 5,
        };
        let samples = series(0, 10, |_| 5.0);
        let mut v = view("idle", &rule, &samples);
        v.alarm = Some(&alarm);
        let t = target(1, 10);
        assert!(matches!(
            decide(
                &t,
                3,
                &ScalingHistory::default(),
                &[v.clone()],
                at(9),
                &Tuning::default()
            ),
            Decision::Scale {
                to: 2,
                direction: Direction::In,
                ..
            }
        ));
        let cooling = record_change(&ScalingHistory::default(), Direction::In, 3, 2, ts(0));
        let fresh = series(1, 10, |_| 5.0);
        v.samples = &fresh;
        assert_eq!(
            decide(&t, 2, &cooling, &[v], at(9), &Tuning::default()),
            Decision::Hold
        );
    }

    #[test]
    fn several_policies_largest_out_wins_and_in_needs_agreement() {
        let cpu_rule = cpu(75.0, 0, 0);
        let mem_rule = PolicyRule::TargetTracking(TargetTracking {
            metric: PredefinedMetric::EcsMemory,
            target_value: 50.0,
            scale_out_cooldown_secs: 0,
            scale_in_cooldown_secs: 0,
            disable_scale_in: false,
        });
        let t = target(1, 20);
        let h = ScalingHistory::default();
        let tuning = Tuning::default();
        let cpu_high = series(0, 100, |_| 150.0); // needs 8 from 4
        let mem_high = series(0, 100, |_| 150.0); // needs 12 from 4
        match decide(
            &t,
            4,
            &h,
            &[
                view("cpu", &cpu_rule, &cpu_high),
                view("mem", &mem_rule, &mem_high),
            ],
            at(99),
            &tuning,
        ) {
            Decision::Scale { to, cause, .. } => {
                assert_eq!(to, 12);
                assert!(cause.ends_with("triggered policy mem"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
        // CPU is idle but memory sits at its target: no scale-in.
        let cpu_low = series(0, 100, |_| 10.0);
        let mem_steady = series(0, 100, |_| 50.0);
        assert_eq!(
            decide(
                &t,
                4,
                &h,
                &[
                    view("cpu", &cpu_rule, &cpu_low),
                    view("mem", &mem_rule, &mem_steady)
                ],
                at(99),
                &tuning
            ),
            Decision::Hold
        );
        // Both low: in to the larger of the two proposals.
        let mem_low = series(0, 100, |_| 25.0); // ceil(4 × 25 / 50) = 2
        match decide(
            &t,
            4,
            &h,
            &[
                view("cpu", &cpu_rule, &cpu_low),
                view("mem", &mem_rule, &mem_low),
            ],
            at(99),
            &tuning,
        ) {
            Decision::Scale {
                to,
                direction,
                cause,
            } => {
                assert_eq!((to, direction), (2, Direction::In));
                assert!(cause.ends_with("triggered policy mem"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn action(schedule: &str, tz: Option<&str>) -> ScheduledAction {
        ScheduledAction {
            scheduled_action_name: "a".into(),
            scheduled_action_arn: "arn".into(),
            service_namespace: "ecs".into(),
            schedule: schedule.into(),
            timezone: tz.map(str::to_owned),
            resource_id: "service/c/s".into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            start_time: None,
            end_time: None,
            scalable_target_action: Some(ScalableTargetAction {
                min_capacity: Some(5),
                max_capacity: None,
            }),
            creation_time: ts(0),
        }
    }

    fn utc(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn scheduled_actions_fire_at_their_time() {
        // 2024-01-01T09:00:00Z is 1_704_099_600.
        let nine = 1_704_099_600;
        let a = action("cron(0 9 ? * MON-FRI *)", None);
        assert!(fires_between(&a, utc(nine - 1), utc(nine)));
        assert!(fires_between(&a, utc(nine - 1), utc(nine + 30)));
        assert!(!fires_between(&a, utc(nine), utc(nine + 1)));
        assert!(!fires_between(&a, utc(nine - 120), utc(nine - 60)));
        // The same wall-clock time in Tokyo is nine hours earlier.
        let tokyo = action("cron(0 9 ? * MON-FRI *)", Some("Asia/Tokyo"));
        assert!(fires_between(
            &tokyo,
            utc(nine - 9 * 3600 - 1),
            utc(nine - 9 * 3600)
        ));
        assert!(!fires_between(&tokyo, utc(nine - 1), utc(nine)));
        let once = action("at(2024-01-01T09:00:00)", None);
        assert!(fires_between(&once, utc(nine - 1), utc(nine + 1)));
        assert!(!fires_between(&once, utc(nine + 1), utc(nine + 2)));
        let mut rate = action("rate(5 minutes)", None);
        let created = T0;
        assert!(!fires_between(&rate, utc(created), utc(created + 299)));
        assert!(fires_between(&rate, utc(created + 299), utc(created + 300)));
        assert!(!fires_between(
            &rate,
            utc(created + 300),
            utc(created + 301)
        ));
        assert!(fires_between(&rate, utc(created + 599), utc(created + 600)));
        rate.end_time = Some(ts(400));
        assert!(!fires_between(
            &rate,
            utc(created + 599),
            utc(created + 600)
        ));
        let mut late = action("cron(0 9 ? * MON-FRI *)", None);
        late.start_time = Some(Timestamp::from_secs(nine as i64 + 1));
        assert!(!fires_between(&late, utc(nine - 1), utc(nine)));
    }

    #[test]
    fn scheduled_ranges_keep_min_below_max() {
        let t = target(1, 4);
        assert_eq!(scheduled_range(&t, &action("rate(1 hour)", None)), (5, 5));
        let mut a = action("rate(1 hour)", None);
        a.scalable_target_action = Some(ScalableTargetAction {
            min_capacity: None,
            max_capacity: Some(0),
        });
        assert_eq!(scheduled_range(&t, &a), (0, 0));
        a.scalable_target_action = Some(ScalableTargetAction {
            min_capacity: Some(2),
            max_capacity: Some(8),
        });
        assert_eq!(scheduled_range(&t, &a), (2, 8));
    }
}
