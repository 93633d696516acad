//! The retention task: every so often it purges, through the store writer, the events
//! (with their deliveries, attempts and index rows) older than `storage.retention`, and
//! idempotency records past their window, in small steps so ingest is never held up
//! for long. An event with an unfinished delivery is never purged (see `store/purge.rs`).
//! redb reuses the freed pages, so under steady load the file stops growing; it does not
//! zero them, and only an offline `hookd compact` gives the space back to the disk.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{IDEMPOTENCY_WINDOW_MS, PurgeCursor, PurgeOutcome, Store, now_ms};

/// Events examined per purge step: a step costs the writer about a millisecond, so an
/// ingest request queued behind it waits about that long.
pub const STEP: usize = 100;
/// Longest pause between two passes: what ages past the cutoff meanwhile is purged in
/// the next pass.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest pause, for the very short retentions of tests.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How long to wait between passes for a given retention: a tenth of it, within bounds.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Runs passes until `shutdown`.
pub async fn run(store: Store, retention: Duration, shutdown: CancellationToken) {
    let retention_ms = retention.as_millis() as u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval(retention)) => {}
        }
        let now = now_ms();
        let before_ms = now.saturating_sub(retention_ms);
        // Past its window a key no longer deduplicates; past retention its event is gone.
        let idempotency_before_ms = now.saturating_sub(retention_ms.min(IDEMPOTENCY_WINDOW_MS));
        match pass(&store, before_ms, idempotency_before_ms, &shutdown).await {
            Ok(total) if total.events + total.idempotency > 0 => tracing::info!(
                events = total.events,
                deliveries = total.deliveries,
                attempts = total.attempts,
                idempotency_keys = total.idempotency,
                kept_unfinished = total.kept,
                "purged records older than storage.retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "purge failed; the next pass tries again"),
        }
    }
}

/// One pass from the oldest record to the cutoff, step by step; returns the totals.
pub async fn pass(
    store: &Store,
    before_ms: u64,
    idempotency_before_ms: u64,
    shutdown: &CancellationToken,
) -> Result<PurgeOutcome, crate::store::StoreError> {
    let mut cursor = PurgeCursor::default();
    let mut total = PurgeOutcome::default();
    while !cursor.is_done() && !shutdown.is_cancelled() {
        let step = store
            .purge(before_ms, idempotency_before_ms, cursor, STEP)
            .await?;
        total.events += step.events;
        total.deliveries += step.deliveries;
        total.attempts += step.attempts;
        total.idempotency += step.idempotency;
        total.kept += step.kept;
        cursor = step.next;
    }
    total.next = cursor;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_run_at_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(interval(Duration::from_secs(30 * 86_400)), MAX_INTERVAL);
        assert_eq!(interval(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(interval(Duration::from_millis(100)), MIN_INTERVAL);
    }
}
