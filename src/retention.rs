//! The retention task: it purges, through the store, the events (with their
//! deliveries, attempts and index rows) older than `storage.retention`, and idempotency
//! records past their window. An event with an unfinished delivery is never purged (see
//! `store/redb/purge.rs`, and `store/postgres/purge.rs` for several nodes).
//!
//! It keeps pace with sustained ingest. While there is expired data it sends purge
//! steps back to back, each bounded by time (8 ms of writer work, `STEP_TIME` in
//! `store/redb/purge.rs`); ingest queued meanwhile commits in the same writer batches, so it
//! is never starved. It sleeps only once a pass has reached its cutoff, and then until
//! `TICK` after that pass began, so each pass removes about a tick of newly expired
//! events, starting where the previous one ended. A pass with more than a tick of events
//! to examine is cut into slices of a tick purged side by side, up to `MAX_PARALLEL`
//! steps per writer batch: the longer a pass takes, the more slices the next one has,
//! until purging matches ingest (one step per batch cannot keep pace with producers that
//! post 1,000-event batches). Every `interval(retention)` a full pass starts from the
//! oldest event instead, for events kept earlier because a delivery was unfinished, and
//! walks the idempotency records (keyed by hash, not time).
//!
//! redb reuses the freed pages, so under steady load the file stops growing; it does not
//! zero them, and only an offline `hookd compact` gives the space back to the disk.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::store::{
    IDEMPOTENCY_WINDOW_MS, PurgeCursor, PurgeOutcome, Scan, Store, StoreError, now_ms,
};

/// Most events one purge step examines. The store normally ends a step sooner, when its
/// time is used (a few hundred events of one delivery each).
pub const STEP: usize = 2_000;
/// Once caught up, the next pass starts this long after the previous one started: what
/// ages past the cutoff meanwhile (a second of ingest) is removed in a few steps.
const TICK: Duration = Duration::from_secs(1);
/// Most slices purged at once. A writer batch then carries up to this many steps (about
/// 64 ms of purging), which producers wait for while retention catches up; in exchange
/// purging keeps pace with 8 producers posting 1,000-event batches (4 did not).
const MAX_PARALLEL: usize = 8;
/// Longest time between two full passes.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest, for the very short retentions of tests.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Purge totals are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// How long between two full passes for a given retention: a tenth of it, within bounds.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Runs passes until `shutdown`.
pub async fn run(store: Store, retention: Duration, shutdown: CancellationToken) {
    let retention_ms = retention.as_millis() as u64;
    let tick = TICK.min(interval(retention));
    // Every event older than this cutoff was examined by a pass that completed.
    let mut examined_before: Option<u64> = None;
    let mut next_full = Instant::now();
    let mut unlogged = PurgeOutcome::default();
    let mut logged = Instant::now();
    loop {
        let started = Instant::now();
        let now = now_ms();
        let before_ms = now.saturating_sub(retention_ms);
        // Past its window a key no longer deduplicates; past retention its event is gone.
        let idempotency_before_ms = now.saturating_sub(retention_ms.min(IDEMPOTENCY_WINDOW_MS));
        let cursor = match examined_before {
            Some(from) if started < next_full => PurgeCursor::events_between(from, None),
            _ => {
                next_full = started + interval(retention);
                PurgeCursor::default()
            }
        };
        let cutoffs = (before_ms, idempotency_before_ms);
        match pass_from(&store, cursor, cutoffs, tick, &shutdown).await {
            Ok(total) if total.next.is_done() => {
                examined_before = Some(before_ms);
                add(&mut unlogged, &total);
            }
            // Stopped by shutdown.
            Ok(_) => return,
            Err(error) => tracing::error!(%error, "purge failed; the next pass tries again"),
        }
        let purged = unlogged.events + unlogged.idempotency + unlogged.sessions;
        if logged.elapsed() >= LOG_EVERY && purged > 0 {
            tracing::info!(
                events = unlogged.events,
                deliveries = unlogged.deliveries,
                attempts = unlogged.attempts,
                idempotency_keys = unlogged.idempotency,
                expired_sessions_and_links = unlogged.sessions,
                "purged records older than storage.retention"
            );
            unlogged = PurgeOutcome::default();
            logged = Instant::now();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(started + tick) => {}
        }
    }
}

/// One full pass from the oldest record to the cutoff, step by step; returns the totals.
pub async fn pass(
    store: &Store,
    before_ms: u64,
    idempotency_before_ms: u64,
    shutdown: &CancellationToken,
) -> Result<PurgeOutcome, StoreError> {
    let cutoffs = (before_ms, idempotency_before_ms);
    pass_from(store, PurgeCursor::default(), cutoffs, TICK, shutdown).await
}

/// A pass from `cursor` to the cutoffs (events, idempotency records): steps back to
/// back, one in the writer at a time per slice of event time. Once the pass knows where
/// it stands (after the oldest event), what is left is cut into slices of `slice` (the
/// tick) purged by up to `MAX_PARALLEL` workers. A caught-up pass has about one slice;
/// one that took longer leaves the next more slices and so more workers, until purging
/// matches ingest with the next pass a few ticks behind. The totals' `next` is where it
/// stopped (`is_done()` unless shut down).
async fn pass_from(
    store: &Store,
    mut cursor: PurgeCursor,
    (before_ms, idempotency_before_ms): (u64, u64),
    slice: Duration,
    shutdown: &CancellationToken,
) -> Result<PurgeOutcome, StoreError> {
    let slice_ms = (slice.as_millis() as u64).max(1);
    let mut total = PurgeOutcome::default();
    while !cursor.is_done() && !shutdown.is_cancelled() {
        let end_ms = cursor.events_until_ms.unwrap_or(before_ms).min(before_ms);
        if let Scan::After(id) = cursor.events {
            // The event time of the last id examined (UUIDv7: the top 48 bits).
            let from_ms = (id >> 80) as u64;
            if end_ms.saturating_sub(from_ms) > slice_ms {
                let events = PurgeCursor {
                    idempotency: Scan::Done,
                    ..cursor
                };
                let span = (from_ms, end_ms, slice_ms);
                let part = slices(store, events, span, before_ms, shutdown).await?;
                add(&mut total, &part);
                cursor.events = Scan::Done;
                continue;
            }
        }
        let step = store
            .purge(before_ms, idempotency_before_ms, cursor, STEP)
            .await?;
        add(&mut total, &step);
        cursor = step.next;
        // Let the runtime run what the step's answer woke before sending the next one.
        tokio::task::yield_now().await;
    }
    total.next = cursor;
    Ok(total)
}

/// Purges the events from `first` (which stands at `from_ms`) to `end_ms`, cut into
/// slices of `slice_ms`, with up to `MAX_PARALLEL` slices in progress at once.
async fn slices(
    store: &Store,
    first: PurgeCursor,
    (from_ms, end_ms, slice_ms): (u64, u64, u64),
    before_ms: u64,
    shutdown: &CancellationToken,
) -> Result<PurgeOutcome, StoreError> {
    let frontier = Arc::new(Mutex::new(Frontier {
        first: Some(first),
        next_ms: from_ms,
        end_ms,
        slice_ms,
    }));
    let slices = end_ms.saturating_sub(from_ms).div_ceil(slice_ms);
    let workers = usize::try_from(slices).map_or(MAX_PARALLEL, |n| n.min(MAX_PARALLEL));
    let mut running = JoinSet::new();
    for _ in 0..workers {
        let (store, frontier, shutdown) = (store.clone(), frontier.clone(), shutdown.clone());
        running.spawn(async move {
            let mut total = PurgeOutcome::default();
            let claim = || {
                frontier
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .claim()
            };
            while let Some(mut cursor) = claim() {
                while !cursor.is_done() && !shutdown.is_cancelled() {
                    // The pass's cutoff: a delivery that changed since is kept, whatever
                    // slice its event is in.
                    let step = store.purge(before_ms, 0, cursor, STEP).await?;
                    add(&mut total, &step);
                    if let Some(next_ms) = step.next_event_ms {
                        let mut frontier = frontier.lock().unwrap_or_else(PoisonError::into_inner);
                        frontier.skip_to(next_ms);
                    }
                    cursor = step.next;
                    tokio::task::yield_now().await;
                }
            }
            Ok(total)
        });
    }
    let mut total = PurgeOutcome::default();
    let mut failed = None;
    while let Some(done) = running.join_next().await {
        match done {
            Ok(Ok(part)) => add(&mut total, &part),
            Ok(Err(error)) => failed = Some(error),
            Err(panicked) => failed = Some(StoreError::from(panicked)),
        }
    }
    match failed {
        Some(error) => Err(error),
        None => Ok(total),
    }
}

/// The slices of a pass not handed out yet, made one at a time: a pass far behind may
/// span days, most of it without events.
struct Frontier {
    /// Where the pass stands, for its first slice.
    first: Option<PurgeCursor>,
    next_ms: u64,
    end_ms: u64,
    slice_ms: u64,
}

impl Frontier {
    fn claim(&mut self) -> Option<PurgeCursor> {
        if self.next_ms >= self.end_ms {
            return None;
        }
        let start = self.next_ms;
        self.next_ms = start.saturating_add(self.slice_ms).min(self.end_ms);
        let slice = match self.first.take() {
            Some(first) => first,
            None => PurgeCursor::events_between(start, None),
        };
        Some(PurgeCursor {
            events_until_ms: Some(self.next_ms),
            ..slice
        })
    }

    /// No event was created before `next_ms` in what is not handed out yet.
    fn skip_to(&mut self, next_ms: u64) {
        self.next_ms = self.next_ms.max(next_ms).min(self.end_ms);
    }
}

fn add(total: &mut PurgeOutcome, step: &PurgeOutcome) {
    total.events += step.events;
    total.deliveries += step.deliveries;
    total.attempts += step.attempts;
    total.idempotency += step.idempotency;
    total.kept += step.kept;
    total.sessions += step.sessions;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_passes_run_at_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(interval(Duration::from_secs(30 * 86_400)), MAX_INTERVAL);
        assert_eq!(interval(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(interval(Duration::from_millis(100)), MIN_INTERVAL);
    }
}
