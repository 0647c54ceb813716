//! Per-client token buckets.
//!
//! Each client (an IP address) has a bucket of `burst` tokens that refills
//! at `rate` tokens per second; a request takes one token or is refused.
//! The table of buckets is bounded: when it is full, buckets that have
//! refilled completely are forgotten first (a full bucket is what a new
//! client gets anyway, so forgetting it changes no answer), then the least
//! recently seen ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate limit that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate {0} is not a positive number of requests per second")]
    Rate(f64),
    #[error("burst {0} is below 1: no request could ever pass")]
    Burst(f64),
    #[error("the client table must hold at least one client")]
    Capacity,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allow,
    /// Refused; a token will be available after this long.
    Deny {
        retry_after: Duration,
    },
}

impl Decision {
    /// The `Retry-After` header value: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Decision::Allow => 0,
            Decision::Deny { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                secs.max(1)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets for up to `capacity` clients.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    table: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64, capacity: usize) -> Result<Self, RateLimitError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(RateLimitError::Rate(rate));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(RateLimitError::Burst(burst));
        }
        if capacity == 0 {
            return Err(RateLimitError::Capacity);
        }
        Ok(RateLimiter {
            rate,
            burst,
            capacity,
            table: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token from `client`'s bucket at `now`, or says when one will
    /// be there.
    pub fn check(&self, client: IpAddr, now: Instant) -> Decision {
        // A panic while holding the lock cannot leave a bucket half-updated
        // in a way that matters, so a poisoned table is still used.
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= self.capacity && !table.contains_key(&client) {
            self.evict(&mut table, now);
        }
        let bucket = table.entry(client).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now.max(bucket.last);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allow
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Decision::Deny {
                retry_after: Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX),
            }
        }
    }

    /// How many clients the table holds.
    pub fn clients(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Makes room in a full table: forgets every bucket that has refilled,
    /// and if that frees less than an eighth of the table, also the eighth
    /// seen least recently, so that eviction (a full scan) runs at most once
    /// per `capacity / 8` new clients.
    fn evict(&self, table: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        table.retain(|_, b| {
            let refilled = b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate;
            refilled < burst
        });
        let target = self.capacity - (self.capacity / 8).max(1);
        if table.len() > target {
            let excess = table.len() - target;
            let mut by_age: Vec<(Instant, IpAddr)> =
                table.iter().map(|(ip, b)| (b.last, *ip)).collect();
            by_age.select_nth_unstable(excess - 1);
            for (_, ip) in &by_age[..excess] {
                table.remove(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10.0, 3.0, 100).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip(1), t0), Decision::Allow);
        }
        let denied = limiter.check(ip(1), t0);
        assert_eq!(
            denied,
            Decision::Deny {
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(denied.retry_after_secs(), 1);
        // Another client has its own bucket.
        assert_eq!(limiter.check(ip(2), t0), Decision::Allow);
        // A tenth of a second gives one token back, not more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check(ip(1), t1), Decision::Allow);
        assert!(matches!(limiter.check(ip(1), t1), Decision::Deny { .. }));
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.check(ip(1), t2), Decision::Allow);
        }
        assert!(matches!(limiter.check(ip(1), t2), Decision::Deny { .. }));
    }

    #[test]
    fn retry_after_rounds_up() {
        let limiter = RateLimiter::new(0.4, 1.0, 10).unwrap();
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip(1), t0), Decision::Allow);
        let d = limiter.check(ip(1), t0);
        assert_eq!(d.retry_after_secs(), 3, "{d:?}");
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_idle_clients_first() {
        let limiter = RateLimiter::new(1.0, 2.0, 16).unwrap();
        let t0 = Instant::now();
        // Client 0 is busy: its bucket is empty.
        limiter.check(ip(0), t0);
        limiter.check(ip(0), t0);
        for n in 1..16 {
            limiter.check(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(limiter.clients(), 16);
        // Three seconds on, every bucket has refilled (two tokens at one a
        // second), client 0's included.
        let later = t0 + Duration::from_secs(3);
        limiter.check(ip(100), later);
        assert!(limiter.clients() <= 16);
        assert_eq!(limiter.clients(), 1, "all refilled buckets are forgotten");

        // With no refilled bucket, the least recently seen go.
        let limiter = RateLimiter::new(0.001, 1.0, 16).unwrap();
        for n in 0..16 {
            limiter.check(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        limiter.check(ip(100), t0 + Duration::from_millis(100));
        assert_eq!(limiter.clients(), 15);
        // Client 0 was the oldest: it was forgotten and starts afresh.
        assert_eq!(
            limiter.check(ip(0), t0 + Duration::from_millis(101)),
            Decision::Allow
        );
        // Client 15 was kept: its bucket is still empty.
        assert!(matches!(
            limiter.check(ip(15), t0 + Duration::from_millis(102)),
            Decision::Deny { .. }
        ));
        for n in 200..10_000 {
            limiter.check(ip(n), t0 + Duration::from_millis(200));
            assert!(limiter.clients() <= 16);
        }
    }

    #[test]
    fn unusable_limits_are_refused() {
        assert_eq!(
            RateLimiter::new(0.0, 1.0, 1).unwrap_err(),
            RateLimitError::Rate(0.0)
        );
        assert!(RateLimiter::new(f64::NAN, 1.0, 1).is_err());
        assert_eq!(
            RateLimiter::new(1.0, 0.5, 1).unwrap_err(),
            RateLimitError::Burst(0.5)
        );
        assert_eq!(
            RateLimiter::new(1.0, 1.0, 0).unwrap_err(),
            RateLimitError::Capacity
        );
    }
}
