//! Failed attempts logged per subscription, not per attempt: one INFO line when an
//! endpoint starts failing, a count at most every `REPORT_EVERY` while it goes on, and
//! one line when it answers again. An endpoint that is down for a day would otherwise
//! write a line per retry of every pending delivery (117 MB for 400k refused attempts).
//! Each attempt stays at DEBUG, and its outcome is in the store and the metrics.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ids::SubscriptionId;

/// How often a subscription that keeps failing is counted in the log.
const REPORT_EVERY: Duration = Duration::from_secs(60);

struct Failing {
    since: Instant,
    attempts: u64,
    last_report: Instant,
    reported: u64,
}

#[derive(Default)]
pub struct FailureLog {
    subscriptions: Mutex<HashMap<u128, Failing>>,
}

impl FailureLog {
    fn lock(&self) -> MutexGuard<'_, HashMap<u128, Failing>> {
        // Only log bookkeeping: a poisoned map is still good enough to count with.
        match self.subscriptions.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// An attempt to `subscription` failed with this status or error. `exists` tells
    /// which subscriptions still exist: a newly failing one first sweeps out deleted
    /// ones, so the map stays within the subscriptions there are.
    pub fn failed(
        &self,
        subscription: u128,
        status: Option<u16>,
        error: Option<&str>,
        exists: impl Fn(u128) -> bool,
    ) {
        let now = Instant::now();
        let mut failing = self.lock();
        let Some(entry) = failing.get_mut(&subscription) else {
            failing.retain(|id, _| exists(*id));
            failing.insert(
                subscription,
                Failing {
                    since: now,
                    attempts: 1,
                    last_report: now,
                    reported: 1,
                },
            );
            tracing::info!(
                subscription = %SubscriptionId(subscription),
                status,
                error,
                "endpoint started failing; retries follow delivery.schedule"
            );
            return;
        };
        entry.attempts += 1;
        if now.duration_since(entry.last_report) >= REPORT_EVERY {
            tracing::info!(
                subscription = %SubscriptionId(subscription),
                failed = entry.attempts - entry.reported,
                for_seconds = entry.since.elapsed().as_secs(),
                status,
                error,
                "endpoint still failing"
            );
            entry.last_report = now;
            entry.reported = entry.attempts;
        }
    }

    /// An attempt to `subscription` succeeded.
    pub fn succeeded(&self, subscription: u128) {
        if let Some(ended) = self.lock().remove(&subscription) {
            tracing::info!(
                subscription = %SubscriptionId(subscription),
                failed = ended.attempts,
                for_seconds = ended.since.elapsed().as_secs(),
                "endpoint answers again"
            );
        }
    }

    #[cfg(test)]
    fn attempts(&self, subscription: u128) -> Option<u64> {
        self.lock().get(&subscription).map(|f| f.attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_endpoint_is_counted_until_it_answers() {
        let log = FailureLog::default();
        for _ in 0..5 {
            log.failed(1, Some(500), None, |_| true);
        }
        log.failed(2, None, Some("refused"), |_| true);
        assert_eq!(log.attempts(1), Some(5));
        log.succeeded(1);
        assert_eq!(log.attempts(1), None);
        // Subscription 2 was deleted: the next newly failing one sweeps it out.
        log.failed(3, Some(503), None, |id| id != 2);
        assert_eq!((log.attempts(2), log.attempts(3)), (None, Some(1)));
    }
}
