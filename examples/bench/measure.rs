//! Time and figures: the one monotonic clock the load side and the receivers share,
//! and percentile summaries of what they measured.

use std::fmt;
use std::time::{Duration, Instant};

/// Nanoseconds since the run began. The load side writes `now_ns()` into an event's data
/// as it sends it, and the receiver (same process, same clock) subtracts it on arrival.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Self(Instant::now())
    }

    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    /// The instant `ns` after the start.
    pub fn at(&self, ns: u64) -> Instant {
        self.0 + Duration::from_nanos(ns)
    }
}

/// A half-open span of the run, in clock nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    /// Whether `[start, end]` overlaps this window: a request in flight at any moment of it.
    pub fn overlaps(&self, start_ns: u64, end_ns: u64) -> bool {
        start_ns < self.end_ns && end_ns > self.start_ns
    }

    /// Whether `[start, end]` lies wholly inside this window.
    pub fn contains(&self, start_ns: u64, end_ns: u64) -> bool {
        start_ns >= self.start_ns && end_ns <= self.end_ns
    }

    pub fn millis(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e6
    }
}

/// Percentiles of a set of durations in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub n: usize,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(mut values: Vec<u64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let pct = |p: f64| values[((values.len() as f64 * p) as usize).min(values.len() - 1)];
        Some(Self {
            n: values.len(),
            p50: pct(0.5),
            p99: pct(0.99),
            max: values[values.len() - 1],
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {} p99 {} max {} (n={})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.n
        )
    }
}

/// "none" for an empty set, else the summary.
pub fn summary(values: Vec<u64>) -> String {
    Summary::of(values).map_or_else(|| "none".to_string(), |s| s.to_string())
}

/// Nanoseconds as milliseconds, for reading.
pub fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// KiB as MiB, for reading.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
