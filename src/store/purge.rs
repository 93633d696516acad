//! Where a retention pass stands and what each of its steps did; the steps themselves
//! run inside the backend (`redb/purge.rs`).

/// Where a scan stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scan<K> {
    #[default]
    Start,
    /// Continue with the first key after this one.
    After(K),
    Done,
}

/// Where a purge pass stands in each of its two scans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCursor {
    pub events: Scan<u128>,
    /// Where the idempotency scan stands in `idempotency_times_v1`.
    pub idempotency: Scan<(u64, [u8; 32])>,
    /// When set, the events scan ends before the events created at this time (Unix ms)
    /// even if the cutoff is later: one slice of a pass that others purge side by side.
    pub events_until_ms: Option<u64>,
}

impl PurgeCursor {
    pub fn is_done(&self) -> bool {
        self.events == Scan::Done && self.idempotency == Scan::Done
    }

    /// A pass over the events created from `from_ms` (an earlier pass examined those
    /// before) until `until_ms` (`None`: the cutoff), without the idempotency records.
    pub fn events_between(from_ms: u64, until_ms: Option<u64>) -> Self {
        let first = u128::from(from_ms) << 80;
        Self {
            events: first.checked_sub(1).map_or(Scan::Start, Scan::After),
            idempotency: Scan::Done,
            events_until_ms: until_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub idempotency: u64,
    /// Expired attempt-counter rows (`stats.rs`).
    pub stats: u64,
    /// Expired console sessions and portal links (PostgreSQL's tables; redb keeps them
    /// in memory, `redb/sessions.rs`).
    pub sessions: u64,
    /// Old events kept because a delivery of theirs is unfinished or recently changed.
    pub kept: u64,
    /// Where the next command continues; `is_done()` when the pass is complete.
    pub next: PurgeCursor,
    /// When a scan ended early (`events_until_ms`) reached its end: the creation time
    /// of the next event before the cutoff, if any. Nothing lies between, so the caller
    /// can skip that time instead of examining it slice by slice.
    pub next_event_ms: Option<u64>,
}
