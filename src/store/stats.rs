//! Attempt counters per subscription and period, kept by the writer as attempts are
//! recorded, so an overview of the last hour, day or week (attempts, success rate,
//! latency percentiles, failing endpoints) reads a few rows per subscription and period
//! instead of scanning attempts.
//!
//! Rows live in `attempt_stats_v1`, keyed (scale, period, subscription): one per minute
//! and one per hour in which the subscription had an attempt. A batch adds up its
//! attempts in memory and writes each row it touched once, at the end of the batch.
//! Minute rows are kept for a day (the hour and day views), hour rows as long as the
//! events (`storage.retention`); retention removes older rows a bounded number at a time.

use std::collections::BTreeMap;

use super::error::StoreError;

/// Upper bounds (ms) of the latency buckets; a last bucket holds everything slower.
/// Percentiles are read as the bound of the bucket they fall in, so the steps are finer
/// where endpoints usually answer.
pub const LATENCY_BOUNDS_MS: [u32; 20] = [
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 3000, 5000, 10000, 15000,
];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// The stored row: a format byte, then attempts, successes and each bucket as u32 LE.
const ROW_FORMAT: u8 = 1;
const ROW_LEN: usize = 1 + 4 * (2 + BUCKETS);

/// How long minute rows are kept, whatever the retention: the day view is the longest
/// that reads them.
pub const MINUTE_ROWS_KEPT_MS: u64 = 24 * 60 * 60 * 1000;
/// Most periods one read covers (a day of minutes).
pub const MAX_PERIODS: u64 = 1440;
/// Most rows one read examines; past it the answer says `truncated`.
pub(crate) const MAX_ROWS: usize = 200_000;

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scale {
    Minute,
    Hour,
}

impl Scale {
    pub(crate) const ALL: [Scale; 2] = [Scale::Minute, Scale::Hour];

    pub(crate) fn code(self) -> u8 {
        match self {
            Scale::Minute => 0,
            Scale::Hour => 1,
        }
    }

    pub fn millis(self) -> u64 {
        match self {
            Scale::Minute => 60_000,
            Scale::Hour => 3_600_000,
        }
    }

    /// The period holding `unix_ms` (u32 minutes last until the year 10136).
    pub fn period(self, unix_ms: u64) -> u32 {
        u32::try_from(unix_ms / self.millis()).unwrap_or(u32::MAX)
    }
}

/// Attempts of one subscription in one period, or a sum of such.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptCounters {
    pub attempts: u32,
    /// Attempts that ended their delivery SUCCEEDED (a 2xx).
    pub succeeded: u32,
    latency: [u32; BUCKETS],
}

impl AttemptCounters {
    /// The latency histogram: one count per `LATENCY_BOUNDS_MS` bucket, then the rest.
    pub fn latency(&self) -> &[u32] {
        &self.latency
    }

    pub fn record(&mut self, succeeded: bool, duration_ms: u32) {
        self.attempts = self.attempts.saturating_add(1);
        if succeeded {
            self.succeeded = self.succeeded.saturating_add(1);
        }
        let bucket = LATENCY_BOUNDS_MS.partition_point(|&bound| bound < duration_ms);
        self.latency[bucket] = self.latency[bucket].saturating_add(1);
    }

    pub fn add(&mut self, other: &AttemptCounters) {
        self.attempts = self.attempts.saturating_add(other.attempts);
        self.succeeded = self.succeeded.saturating_add(other.succeeded);
        for (mine, theirs) in self.latency.iter_mut().zip(other.latency) {
            *mine = mine.saturating_add(theirs);
        }
    }

    pub fn failed(&self) -> u32 {
        self.attempts.saturating_sub(self.succeeded)
    }

    /// The latency (ms) below which `quantile` (0 to 1) of the attempts fell, as the
    /// upper bound of its bucket; None without attempts, or when it is in the last,
    /// unbounded bucket (slower than 15 s).
    pub fn latency_ms(&self, quantile: f64) -> Option<u32> {
        let total: u64 = self.latency.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        // The rank of the attempt the quantile names, counting from 1.
        let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.latency.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                return LATENCY_BOUNDS_MS.get(bucket).copied();
            }
        }
        None
    }

    pub(crate) fn encode(&self) -> [u8; ROW_LEN] {
        let mut row = [0; ROW_LEN];
        row[0] = ROW_FORMAT;
        let values = [self.attempts, self.succeeded]
            .into_iter()
            .chain(self.latency);
        for (slot, value) in row[1..].chunks_exact_mut(4).zip(values) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        row
    }

    pub(crate) fn decode(row: &[u8]) -> Result<Self, StoreError> {
        if row.len() != ROW_LEN || row[0] != ROW_FORMAT {
            return Err(StoreError::RecordVersion {
                kind: "attempt stats",
                found: row.first().copied().unwrap_or(0),
                expected: ROW_FORMAT,
            });
        }
        let mut values = row[1..]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let mut next = || values.next().unwrap_or(0);
        let mut counters = AttemptCounters {
            attempts: next(),
            succeeded: next(),
            latency: [0; BUCKETS],
        };
        for slot in &mut counters.latency {
            *slot = next();
        }
        Ok(counters)
    }
}

/// The periods `[from_ms, until_ms)` at one scale, rounded out to whole periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    pub scale: Scale,
    pub from_ms: u64,
    pub until_ms: u64,
}

/// The answer: totals per period (oldest first, only periods with attempts) and per
/// subscription (over the whole range), for the subscriptions the caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptStats {
    /// (start of the period in Unix ms, its counters).
    pub periods: Vec<(u64, AttemptCounters)>,
    pub subscriptions: Vec<(u128, AttemptCounters)>,
    /// The range held more than `MAX_ROWS` rows; the totals cover its oldest part.
    pub truncated: bool,
}

/// Counters a batch has added up, written once per row when the batch ends.
#[derive(Debug, Default)]
pub(crate) struct PendingStats(pub(crate) BTreeMap<(u8, u32, u128), AttemptCounters>);

impl PendingStats {
    pub fn record(&mut self, subscription: u128, at_ms: u64, succeeded: bool, duration_ms: u32) {
        for scale in Scale::ALL {
            let key = (scale.code(), scale.period(at_ms), subscription);
            self.0
                .entry(key)
                .or_default()
                .record(succeeded, duration_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets() {
        let mut counters = AttemptCounters::default();
        for ms in [0, 1, 2, 3, 40, 40, 40, 40, 40, 99_999] {
            counters.record(ms != 99_999, ms);
        }
        assert_eq!(counters.attempts, 10);
        assert_eq!(counters.succeeded, 9);
        assert_eq!(counters.failed(), 1);
        assert_eq!(counters.latency_ms(0.0), Some(1), "the first attempt");
        assert_eq!(counters.latency_ms(0.2), Some(1));
        assert_eq!(counters.latency_ms(0.3), Some(2));
        assert_eq!(counters.latency_ms(0.4), Some(5));
        assert_eq!(counters.latency_ms(0.5), Some(50));
        assert_eq!(counters.latency_ms(0.9), Some(50));
        assert_eq!(counters.latency_ms(0.95), None, "slower than every bound");
        assert_eq!(AttemptCounters::default().latency_ms(0.5), None);
    }

    #[test]
    fn rows_round_trip_and_add_up() {
        let mut a = AttemptCounters::default();
        a.record(true, 7);
        a.record(false, 15_001);
        let b = AttemptCounters::decode(&a.encode()).unwrap();
        assert_eq!(a, b);
        let mut sum = a;
        sum.add(&b);
        assert_eq!((sum.attempts, sum.succeeded), (4, 2));
        assert_eq!(sum.latency_ms(0.5), Some(10));
        assert!(AttemptCounters::decode(&a.encode()[1..]).is_err());
        let mut other_format = a.encode();
        other_format[0] = 2;
        assert!(AttemptCounters::decode(&other_format).is_err());
    }

    #[test]
    fn periods_are_whole_minutes_and_hours() {
        assert_eq!(Scale::Minute.period(59_999), 0);
        assert_eq!(Scale::Minute.period(60_000), 1);
        assert_eq!(Scale::Hour.period(7_199_999), 1);
        assert_eq!(Scale::Hour.period(u64::MAX), u32::MAX);
    }
}
