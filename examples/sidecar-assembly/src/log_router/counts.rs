//! What the router has seen, per container, as Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::forward::{field, Frame, Mode};
use crate::prometheus::{Exposition, Kind};

/// Distinct (container, source) series kept at most; records of further
/// containers are counted under `container="_other"`, so a sender cannot
/// grow the metrics page without bound.
pub const MAX_SERIES: usize = 1000;

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    records: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
pub struct Counts {
    by_container: Mutex<BTreeMap<(String, &'static str), Tally>>,
    frames: [AtomicU64; 3],
    acks: AtomicU64,
    unmatched: AtomicU64,
    rejected: AtomicU64,
    connections: AtomicI64,
}

/// The container a record came from: its `container_name` field (FireLens
/// sets it), else the tag's part before `-firelens-`, else the tag.
pub fn container_of<'a>(tag: &'a str, record: &'a crate::forward::Record) -> &'a str {
    if let Some(name) = field(record, "container_name") {
        return name;
    }
    match tag.split_once("-firelens-") {
        Some((name, _)) => name,
        None => tag,
    }
}

/// The `source` label: FireLens's `stdout` and `stderr`, anything else
/// `other`.
fn source_of(record: &crate::forward::Record) -> &'static str {
    match field(record, "source") {
        Some("stdout") => "stdout",
        Some("stderr") => "stderr",
        _ => "other",
    }
}

impl Counts {
    pub fn frame(&self, mode: Mode) {
        let i = match mode {
            Mode::Message => 0,
            Mode::Forward => 1,
            Mode::PackedForward => 2,
        };
        self.frames[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the records of a frame that were written.
    pub fn written(&self, frame: &Frame) {
        let mut map = self.by_container.lock().unwrap_or_else(|p| p.into_inner());
        for entry in &frame.entries {
            let container = container_of(&frame.tag, &entry.record);
            let source = source_of(&entry.record);
            let bytes = field(&entry.record, "log").map_or(0, str::len) as u64;
            let key = if map.len() < MAX_SERIES || map.contains_key(&(container.to_owned(), source))
            {
                (container.to_owned(), source)
            } else {
                ("_other".to_owned(), source)
            };
            let tally = map.entry(key).or_default();
            tally.records += 1;
            tally.bytes += bytes;
        }
    }

    pub fn unmatched(&self, records: usize) {
        self.unmatched.fetch_add(records as u64, Ordering::Relaxed);
    }

    pub fn ack(&self) {
        self.acks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records written for `container`, all sources together.
    pub fn records_of(&self, container: &str) -> u64 {
        let map = self.by_container.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|((c, _), _)| c == container)
            .map(|(_, t)| t.records)
            .sum()
    }

    pub fn render(&self) -> String {
        let mut e = Exposition::new();
        let map = self
            .by_container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        e.family(
            "log_router_records_total",
            "Records written, by container and stream.",
            Kind::Counter,
        );
        for ((container, source), t) in &map {
            let labels = [("container", container.as_str()), ("source", *source)];
            e.sample("log_router_records_total", &labels, t.records);
        }
        e.family(
            "log_router_log_bytes_total",
            "Bytes of the records' log fields written, by container and stream.",
            Kind::Counter,
        );
        for ((container, source), t) in &map {
            let labels = [("container", container.as_str()), ("source", *source)];
            e.sample("log_router_log_bytes_total", &labels, t.bytes);
        }
        e.family(
            "log_router_frames_total",
            "Forward protocol frames received, by mode.",
            Kind::Counter,
        );
        for (i, mode) in [Mode::Message, Mode::Forward, Mode::PackedForward]
            .into_iter()
            .enumerate()
        {
            let n = self.frames[i].load(Ordering::Relaxed);
            e.sample("log_router_frames_total", &[("mode", mode.as_str())], n);
        }
        e.single(
            "log_router_acks_total",
            "Chunks acknowledged after their records were written.",
            Kind::Counter,
            self.acks.load(Ordering::Relaxed),
        );
        e.single(
            "log_router_unmatched_records_total",
            "Records whose tag matched no --match pattern, dropped.",
            Kind::Counter,
            self.unmatched.load(Ordering::Relaxed),
        );
        e.single(
            "log_router_rejected_frames_total",
            "Malformed or oversized frames; each closed its connection.",
            Kind::Counter,
            self.rejected.load(Ordering::Relaxed),
        );
        e.single(
            "log_router_connections",
            "Forward connections open.",
            Kind::Gauge,
            self.connections.load(Ordering::Relaxed),
        );
        e.finish()
    }
}
