//! Request metrics per target group: counters, concurrency, one sample per
//! second over the last two minutes, and latency percentiles from a
//! log-bucketed histogram. Autoscaling reads these at 1-second resolution
//! (ALBRequestCountPerTarget, concurrency per task).
//!
//! Counters are atomics; the per-second window and the histograms sit behind
//! one short mutex taken once when a request starts and once when it ends.
//! Mean concurrency is exact: the window integrates the in-flight count over
//! time at every change, rather than sampling it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Seconds of per-second samples kept.
pub const WINDOW_SECONDS: usize = 120;
/// The "recent" latency histogram covers between one and two of these.
const RECENT_PERIOD_SECONDS: u64 = 60;

/// A snapshot of one target group's metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupMetrics {
    pub target_group: String,
    /// Requests routed to this target group, whatever answered them.
    pub requests_total: u64,
    /// Responses that came from a target, by status class.
    pub target_responses: StatusClasses,
    /// Answers the gateway made itself: 502 (no target could be reached),
    /// 503 (no registered target, or the activation queue full), 504 (a
    /// target or an activation took too long).
    pub elb_502: u64,
    pub elb_503: u64,
    pub elb_504: u64,
    /// Connections to targets that failed or were reset before a response.
    pub target_connection_errors: u64,
    /// Requests sent a second time to another target after a connection error.
    pub retries: u64,
    /// Requests in flight now, including those held for activation.
    pub in_flight: u64,
    /// Requests held now waiting for a healthy target (scale from zero).
    pub held: u64,
    /// Targets healthy now.
    pub healthy_targets: usize,
    /// One sample per completed second, oldest first, at most the last 120.
    pub seconds: Vec<SecondSample>,
    /// Target response latency (request in → response headers out) since the
    /// target group was created.
    pub latency: LatencySummary,
    /// The same over the last one to two minutes.
    pub recent_latency: LatencySummary,
    pub targets: Vec<TargetMetrics>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClasses {
    pub xx2: u64,
    pub xx3: u64,
    pub xx4: u64,
    pub xx5: u64,
}

/// One second of a target group's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// When the second began (wall clock).
    pub at: SystemTime,
    /// Requests that arrived during the second.
    pub requests: u64,
    /// Time-weighted mean of requests in flight during the second.
    pub mean_concurrency: f64,
    /// Most requests in flight at once during the second.
    pub peak_concurrency: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// One registered target's share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMetrics {
    pub id: String,
    pub addr: SocketAddr,
    /// Requests sent to this target since it was registered.
    pub requests: u64,
    pub in_flight: u64,
}

/// The live counters of one target group.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    pub(crate) requests_total: AtomicU64,
    pub(crate) status: [AtomicU64; 4],
    pub(crate) elb_502: AtomicU64,
    pub(crate) elb_503: AtomicU64,
    pub(crate) elb_504: AtomicU64,
    pub(crate) connection_errors: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) held: AtomicU64,
    window: Mutex<Window>,
}

impl GroupMetrics {
    pub(crate) fn new() -> Self {
        Self {
            requests_total: AtomicU64::new(0),
            status: Default::default(),
            elb_502: AtomicU64::new(0),
            elb_503: AtomicU64::new(0),
            elb_504: AtomicU64::new(0),
            connection_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            held: AtomicU64::new(0),
            window: Mutex::new(Window::new(Instant::now(), SystemTime::now())),
        }
    }

    /// A request was routed here; it counts as in flight until `finished`.
    pub(crate) fn started(&self) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.window().change(Instant::now(), 1, None);
    }

    /// The request's response is complete (or abandoned).
    pub(crate) fn finished(&self, latency: Option<Duration>) {
        self.window().change(Instant::now(), -1, latency);
    }

    pub(crate) fn target_status(&self, status: u16) {
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            500..=599 => 3,
            // 1xx finals do not exist; count anything odd as a 2xx-less miss.
            _ => return,
        };
        self.status[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn elb_status(&self, status: u16) {
        match status {
            502 => &self.elb_502,
            503 => &self.elb_503,
            504 => &self.elb_504,
            _ => return,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        // A panic while the lock was held cannot leave the window in a state
        // worse than slightly wrong numbers; keep serving.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn snapshot(
        &self,
        target_group: &str,
        healthy_targets: usize,
        targets: Vec<TargetMetrics>,
    ) -> TargetGroupMetrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut window = self.window();
        window.advance(Instant::now());
        let seconds = window.samples.iter().copied().collect();
        let mut recent = window.recent[0].clone();
        recent.merge(&window.recent[1]);
        TargetGroupMetrics {
            target_group: target_group.to_owned(),
            requests_total: load(&self.requests_total),
            target_responses: StatusClasses {
                xx2: load(&self.status[0]),
                xx3: load(&self.status[1]),
                xx4: load(&self.status[2]),
                xx5: load(&self.status[3]),
            },
            elb_502: load(&self.elb_502),
            elb_503: load(&self.elb_503),
            elb_504: load(&self.elb_504),
            target_connection_errors: load(&self.connection_errors),
            retries: load(&self.retries),
            in_flight: window.in_flight,
            held: load(&self.held),
            healthy_targets,
            seconds,
            latency: window.total.summary(),
            recent_latency: recent.summary(),
            targets,
        }
    }
}

/// The per-second window. Seconds are counted from the target group's
/// creation on the monotonic clock; the wall clock only labels them.
#[derive(Debug)]
struct Window {
    base: Instant,
    base_wall: SystemTime,
    /// Index of the second being accumulated.
    second: u64,
    requests: u64,
    /// ∫ in_flight dt over the current second so far, in seconds.
    integral: f64,
    peak: u64,
    in_flight: u64,
    last_change: Instant,
    samples: VecDeque<SecondSample>,
    total: Histogram,
    /// [current, previous] periods of RECENT_PERIOD_SECONDS.
    recent: [Histogram; 2],
    recent_period: u64,
}

impl Window {
    fn new(now: Instant, wall: SystemTime) -> Self {
        Self {
            base: now,
            base_wall: wall,
            second: 0,
            requests: 0,
            integral: 0.0,
            peak: 0,
            in_flight: 0,
            last_change: now,
            samples: VecDeque::with_capacity(WINDOW_SECONDS),
            total: Histogram::new(),
            recent: [Histogram::new(), Histogram::new()],
            recent_period: 0,
        }
    }

    fn second_start(&self, second: u64) -> Instant {
        self.base + Duration::from_secs(second)
    }

    /// Closes every second that ended before `now`.
    fn advance(&mut self, now: Instant) {
        let now_second = now.saturating_duration_since(self.base).as_secs();
        if now_second <= self.second {
            return;
        }
        // Seconds with no change carry the in-flight count unchanged; after
        // a long idle stretch only the last WINDOW_SECONDS matter.
        let first_needed = now_second.saturating_sub(WINDOW_SECONDS as u64 + 1);
        while self.second < now_second {
            let end = self.second_start(self.second + 1);
            self.integral += self.in_flight as f64
                * end
                    .saturating_duration_since(self.last_change)
                    .as_secs_f64();
            let sample = SecondSample {
                at: self.base_wall + Duration::from_secs(self.second),
                requests: self.requests,
                mean_concurrency: self.integral,
                peak_concurrency: self.peak.max(self.in_flight),
            };
            if self.samples.len() == WINDOW_SECONDS {
                self.samples.pop_front();
            }
            self.samples.push_back(sample);
            self.requests = 0;
            self.integral = 0.0;
            self.peak = self.in_flight;
            self.last_change = end;
            self.second += 1;
            if self.second < first_needed {
                // Jump over the idle stretch, writing nothing for it.
                self.second = first_needed;
                self.last_change = self.second_start(self.second);
            }
        }
        let period = now_second / RECENT_PERIOD_SECONDS;
        if period != self.recent_period {
            let previous = std::mem::replace(&mut self.recent[0], Histogram::new());
            self.recent[1] = if period == self.recent_period + 1 {
                previous
            } else {
                Histogram::new()
            };
            self.recent_period = period;
        }
    }

    fn change(&mut self, now: Instant, delta: i64, latency: Option<Duration>) {
        self.advance(now);
        self.integral += self.in_flight as f64
            * now
                .saturating_duration_since(self.last_change)
                .as_secs_f64();
        self.last_change = now;
        if delta > 0 {
            self.requests += 1;
            self.in_flight += 1;
            self.peak = self.peak.max(self.in_flight);
        } else {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        if let Some(latency) = latency {
            self.total.record(latency);
            self.recent[0].record(latency);
        }
    }
}

/// A log-bucketed latency histogram in microseconds: 16 linear sub-buckets
/// per power of two, so a percentile is within about 6% of the true value,
/// from 1 µs to about 19 hours, in a fixed 5 KiB.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXPONENT: u32 = 36;
const BUCKETS: usize = ((MAX_EXPONENT - SUB_BITS + 2) as usize) * SUB as usize;

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            max_us: 0,
        }
    }

    fn index(us: u64) -> usize {
        if us < SUB {
            return us as usize;
        }
        let exponent = (63 - us.leading_zeros()).min(MAX_EXPONENT);
        let mantissa = (us >> (exponent - SUB_BITS)) & (SUB - 1);
        ((exponent - SUB_BITS + 1) as u64 * SUB + mantissa) as usize
    }

    /// The upper edge of a bucket: a percentile is never reported lower
    /// than it was.
    fn upper_us(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB {
            return index;
        }
        let exponent = (index / SUB) as u32 + SUB_BITS - 1;
        let mantissa = index % SUB;
        ((SUB + mantissa + 1) << (exponent - SUB_BITS)) - 1
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = Self::index(us).min(BUCKETS - 1);
        self.buckets[index] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(Self::upper_us(index).min(self.max_us));
            }
        }
        Duration::from_micros(self.max_us)
    }

    fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            p50: self.percentile(50.0),
            p90: self.percentile(90.0),
            p99: self.percentile(99.0),
            max: Duration::from_micros(self.max_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for us in 0..200_000u64 {
            let i = Histogram::index(us);
            assert!(i == last || i == last + 1, "{us}: {i} after {last}");
            assert!(Histogram::upper_us(i) >= us, "{us} above its bucket");
            assert!(
                Histogram::upper_us(i) as f64 <= us as f64 * 1.07 + 1.0,
                "{us}: bucket too wide"
            );
            last = i;
        }
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = Histogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let near = |d: Duration, ms: f64| {
            let got = d.as_secs_f64() * 1e3;
            assert!((got - ms).abs() <= ms * 0.07, "{got} vs {ms}");
        };
        near(h.percentile(50.0), 50.0);
        near(h.percentile(90.0), 90.0);
        near(h.percentile(99.0), 99.0);
        assert_eq!(h.percentile(100.0), Duration::from_millis(100));
        h.record(Duration::from_secs(1_000_000));
        assert_eq!(h.count, 101);
    }

    #[test]
    fn window_integrates_concurrency_per_second() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, SystemTime::UNIX_EPOCH);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Second 0: two requests overlap for 500 ms, one of them lasts 1 s.
        w.change(at(0), 1, None);
        w.change(at(250), 1, None);
        w.change(at(750), -1, Some(Duration::from_millis(500)));
        // Second 1: the first request ends at 1.5 s; then nothing.
        w.change(at(1500), -1, Some(Duration::from_millis(1500)));
        w.advance(at(3200));
        let s: Vec<_> = w.samples.iter().collect();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].requests, 2);
        assert!((s[0].mean_concurrency - 1.5).abs() < 1e-9);
        assert_eq!(s[0].peak_concurrency, 2);
        assert_eq!(s[1].requests, 0);
        assert!((s[1].mean_concurrency - 0.5).abs() < 1e-9);
        assert_eq!(s[1].peak_concurrency, 1);
        assert_eq!(s[2].mean_concurrency, 0.0);
        assert_eq!(s[2].at, SystemTime::UNIX_EPOCH + Duration::from_secs(2));
        assert_eq!(w.total.count, 2);
    }

    #[test]
    fn window_keeps_two_minutes_after_a_long_idle() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, SystemTime::UNIX_EPOCH);
        w.change(t0, 1, None);
        w.advance(t0 + Duration::from_secs(100_000));
        assert_eq!(w.samples.len(), WINDOW_SECONDS);
        assert!(w.samples.iter().all(|s| s.mean_concurrency == 1.0));
        let last = w.samples.back().unwrap();
        assert_eq!(
            last.at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(100_000 - 1)
        );
    }
}
