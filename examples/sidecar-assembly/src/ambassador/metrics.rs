//! The ambassador's metrics, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http::Method;

use crate::prometheus::{Exposition, Histogram, Kind, LATENCY_BUCKETS};

/// Counters of the proxy.
#[derive(Debug)]
pub struct Metrics {
    /// Requests answered, by status code and method.
    requests: Mutex<BTreeMap<(u16, &'static str), u64>>,
    duration: Histogram,
    in_flight: AtomicI64,
    rate_limited: AtomicU64,
    upstream_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            duration: Histogram::new(&LATENCY_BUCKETS),
            in_flight: AtomicI64::new(0),
            rate_limited: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
        }
    }
}

/// The `method` label: the standard methods by name and every other one as
/// `OTHER`, so a client inventing methods cannot grow the series without
/// bound.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

impl Metrics {
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_finished(&self, status: u16, method: &'static str, duration: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.duration.observe(duration);
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((status, method)).or_insert(0) += 1;
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics page; `clients` and `log_dropped` come from the rate
    /// limiter and the access log.
    pub fn render(&self, clients: usize, log_dropped: u64) -> String {
        let mut e = Exposition::new();
        e.family(
            "ambassador_requests_total",
            "Requests answered, by status code and method.",
            Kind::Counter,
        );
        {
            let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for ((code, method), n) in requests.iter() {
                e.sample(
                    "ambassador_requests_total",
                    &[("code", &code.to_string()), ("method", method)],
                    n,
                );
            }
        }
        self.duration.write(
            &mut e,
            "ambassador_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response.",
        );
        e.single(
            "ambassador_in_flight_requests",
            "Requests received whose response is not yet complete.",
            Kind::Gauge,
            self.in_flight.load(Ordering::Relaxed),
        );
        e.single(
            "ambassador_rate_limited_total",
            "Requests refused with 429 by the per-client rate limit.",
            Kind::Counter,
            self.rate_limited.load(Ordering::Relaxed),
        );
        e.single(
            "ambassador_upstream_errors_total",
            "Requests the upstream could not answer (connection failed, timed out or broke off).",
            Kind::Counter,
            self.upstream_errors.load(Ordering::Relaxed),
        );
        e.single(
            "ambassador_rate_limit_clients",
            "Clients the rate limiter currently keeps a bucket for.",
            Kind::Gauge,
            clients,
        );
        e.single(
            "ambassador_access_log_dropped_total",
            "Access log lines dropped because standard output was not keeping up.",
            Kind::Counter,
            log_dropped,
        );
        e.finish()
    }
}
