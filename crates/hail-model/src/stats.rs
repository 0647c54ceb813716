//! What tasks use: the shapes of the native `DescribeTaskStats` operation
//! and the CPU rate between two readings of a cumulative CPU counter.
//!
//! A reading carries CPU time used since the task started, not a rate: the
//! server keeps no per-caller state, and each caller computes the rate over
//! the interval it chose, as `docker stats` does from its own two readings.

use serde::{Deserialize, Serialize};

/// Most tasks one `DescribeTaskStats` names, as in `DescribeTasks`.
pub const MAX_DESCRIBED_TASKS: usize = 100;

/// The `failures[].reason` for a task that exists but has no containers to
/// measure (not started yet, or stopped).
pub const NOT_RUNNING: &str = "NOT_RUNNING";
/// The `failures[].reason` for a task whose usage could not be read.
pub const UNAVAILABLE: &str = "UNAVAILABLE";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DescribeTaskStatsInput {
    /// Name or ARN; `default` when absent.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Task ids or ARNs, 1 to [`MAX_DESCRIBED_TASKS`].
    pub tasks: Vec<String>,
}

/// One reading of a task's cgroup, and of each of its running containers'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStats {
    pub task_arn: String,
    /// When the reading was taken, in seconds since the epoch (microsecond
    /// precision): the clock two readings' CPU rate is computed against.
    pub read_at: f64,
    /// The task's CPU units (1024 = one vCPU), the CFS quota its cgroup has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_units: Option<u32>,
    /// CPU time all its containers used since the task started.
    pub cpu_usage_nanos: u64,
    pub memory_usage_bytes: u64,
    pub memory_peak_bytes: u64,
    /// The task's hard memory limit; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
    pub containers: Vec<ContainerStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub cpu_usage_nanos: u64,
    pub memory_usage_bytes: u64,
    pub memory_peak_bytes: u64,
    /// The container's own memory limit; absent when only the task's applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
}

/// A cumulative CPU counter and when it was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuReading {
    pub usage_nanos: u64,
    /// Seconds on any clock, the same for both readings of a rate.
    pub at_secs: f64,
}

/// CPU used between two readings, in percent of one vCPU (100 = one CPU
/// busy the whole interval; a task of 256 units tops out near 25). `None`
/// when the interval is empty or runs backwards (a clock step), or the
/// counter went down (not the same cgroup).
pub fn cpu_percent(before: CpuReading, after: CpuReading) -> Option<f64> {
    let elapsed = after.at_secs - before.at_secs;
    if elapsed <= 0.0 || !elapsed.is_finite() || after.usage_nanos < before.usage_nanos {
        return None;
    }
    let used = (after.usage_nanos - before.usage_nanos) as f64 / 1e9;
    Some(used / elapsed * 100.0)
}

/// A share of one vCPU ([`cpu_percent`]) as a share of `units` CPU units
/// (a task's reservation): 25 % of a vCPU is 100 % of 256 units.
pub fn percent_of_units(percent_of_vcpu: f64, units: u32) -> Option<f64> {
    (units > 0).then(|| percent_of_vcpu * 1024.0 / f64::from(units))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(usage_nanos: u64, at_secs: f64) -> CpuReading {
        CpuReading {
            usage_nanos,
            at_secs,
        }
    }

    #[test]
    fn cpu_rate_is_cpu_time_over_wall_time() {
        // A quarter of a second of CPU in one second: a quarter of a vCPU.
        assert_eq!(cpu_percent(at(0, 10.0), at(250_000_000, 11.0)), Some(25.0));
        // Two CPUs busy for half a second.
        assert_eq!(
            cpu_percent(at(1_000_000_000, 10.0), at(2_000_000_000, 10.5)),
            Some(200.0)
        );
        assert_eq!(cpu_percent(at(5, 10.0), at(5, 12.0)), Some(0.0));
    }

    #[test]
    fn no_rate_without_a_forward_interval_and_counter() {
        assert_eq!(cpu_percent(at(0, 10.0), at(100, 10.0)), None);
        assert_eq!(cpu_percent(at(0, 11.0), at(100, 10.0)), None);
        assert_eq!(cpu_percent(at(100, 10.0), at(50, 11.0)), None);
        assert_eq!(cpu_percent(at(0, f64::NAN), at(50, 11.0)), None);
    }

    #[test]
    fn shares_of_a_reservation() {
        assert_eq!(percent_of_units(25.0, 256), Some(100.0));
        assert_eq!(percent_of_units(50.0, 2048), Some(25.0));
        assert_eq!(percent_of_units(50.0, 0), None);
    }

    #[test]
    fn shapes_read_as_the_api_writes_them() {
        let stats = TaskStats {
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/abc".into(),
            read_at: 1_700_000_000.25,
            cpu_limit_units: Some(256),
            cpu_usage_nanos: 7,
            memory_usage_bytes: 1024,
            memory_peak_bytes: 2048,
            memory_limit_bytes: None,
            pids: 2,
            containers: vec![ContainerStats {
                name: "app".into(),
                cpu_usage_nanos: 7,
                memory_usage_bytes: 1024,
                memory_peak_bytes: 2048,
                memory_limit_bytes: None,
            }],
        };
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["cpuLimitUnits"], 256);
        assert_eq!(json["readAt"], 1_700_000_000.25);
        assert!(json.get("memoryLimitBytes").is_none());
        assert_eq!(json["containers"][0]["memoryUsageBytes"], 1024);
        assert_eq!(serde_json::from_value::<TaskStats>(json).unwrap(), stats);
        let err = serde_json::from_value::<DescribeTaskStatsInput>(
            serde_json::json!({"tasks": [], "extra": 1}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
