//! The sweeper: finishes, in bounded steps, what pausing, resuming and deleting a
//! subscription leave for later (each writes the subscription alone, whatever it has
//! pending). It cancels a deleted subscription's unfinished deliveries, ends FAILED those
//! of a subscription that is not ACTIVE once they pass `delivery.max_age`, and makes a
//! resumed subscription's retries that were waiting due now. Each step is one
//! writer command over at most `STEP` deliveries, so ingest and the other subscriptions'
//! outcomes wait at most for one step.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ids::SubscriptionId;
use crate::store::records::SubscriptionStatus;
use crate::store::{Store, StoreError, Sweep};

/// Deliveries one step visits: about 5-10 ms of the writer's time.
pub const STEP: usize = 1000;
/// Longest pause between two passes over the subscriptions that are not ACTIVE: a
/// delivery is ended FAILED at most this long after `delivery.max_age`.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest pause, for the very short `max_age` of tests.
const MIN_INTERVAL: Duration = Duration::from_millis(20);

/// How long to wait between passes for a given `max_age`: an eighth of it, within bounds.
pub fn interval(max_age: Duration) -> Duration {
    (max_age / 8).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Runs until `shutdown`: a pass at start, on each subscription change, and every
/// `interval(max_age)`.
pub async fn run(store: Store, max_age: Duration, shutdown: CancellationToken) {
    let mut changes = store.snapshot_changes();
    let mut sweeper = Sweeper::default();
    // Deleted while hookd was stopped, or before a sweep finished.
    match store.due_subscriptions().await {
        Ok(found) => {
            let current = store.subscriptions();
            sweeper
                .orphans
                .extend(found.into_iter().filter(|&id| current.get(id).is_none()));
        }
        Err(error) => tracing::warn!(%error, "cannot list the due queue's subscriptions"),
    }
    loop {
        if let Err(error) = sweeper.pass(&store, &shutdown).await {
            tracing::warn!(%error, "sweeping subscriptions' deliveries failed; the next pass tries again");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval(max_age)) => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

#[derive(Default)]
struct Sweeper {
    /// Subscriptions seen at the last pass.
    known: HashSet<u128>,
    /// Deleted subscriptions whose deliveries may still need cancelling.
    orphans: BTreeSet<u128>,
    /// For each subscription that is not ACTIVE, the last delivery the expiry walk
    /// visited (deliveries are walked in creation order, each once).
    walked: HashMap<u128, u128>,
    /// Each subscription's `active_since_ms` at the last pass: a change is a resume.
    active_since: HashMap<u128, u64>,
}

impl Sweeper {
    async fn pass(
        &mut self,
        store: &Store,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let current = store.subscriptions();
        let now: HashSet<u128> = current.iter().map(|(&id, _)| id).collect();
        self.orphans
            .extend(self.known.iter().filter(|id| !now.contains(id)));
        self.known = now;
        while let Some(&id) = self.orphans.first() {
            let mut cancelled = 0;
            loop {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let step = store
                    .sweep(Sweep::Cancel {
                        subscription: id,
                        limit: STEP,
                    })
                    .await?;
                cancelled += step.ended;
                if !step.more {
                    break;
                }
            }
            if cancelled > 0 {
                tracing::info!(subscription = %SubscriptionId(id), cancelled, "cancelled the unfinished deliveries of a deleted subscription");
            }
            self.orphans.remove(&id);
        }
        let mut resumed = Vec::new();
        let mut active_since = HashMap::new();
        for (&id, s) in current.iter() {
            if s.status == SubscriptionStatus::Active {
                let seen = self.active_since.get(&id);
                if seen.is_some_and(|&at| at != s.active_since_ms) {
                    resumed.push((id, s.active_since_ms));
                }
            }
            active_since.insert(id, s.active_since_ms);
        }
        self.active_since = active_since;
        for (id, since_ms) in resumed {
            let mut after = 0;
            loop {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let step = store
                    .sweep(Sweep::Resume {
                        subscription: id,
                        since_ms,
                        after,
                        limit: STEP,
                    })
                    .await?;
                after = step.last.unwrap_or(after);
                if !step.more {
                    break;
                }
            }
        }
        // Expiry is periodic work: with several nodes, only the one that dispatches a
        // subscription walks it. Cancelling and resuming follow a change every node sees
        // and are idempotent, so each node does them (a node that just took over the
        // subscription would not have seen the change).
        let waiting: HashSet<u128> = current
            .iter()
            .filter(|(id, s)| s.status != SubscriptionStatus::Active && store.dispatches(**id))
            .map(|(&id, _)| id)
            .collect();
        self.walked.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let mut expired = 0;
            loop {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let after = self.walked.get(&id).copied().unwrap_or(0);
                let step = store
                    .sweep(Sweep::Expire {
                        subscription: id,
                        after,
                        limit: STEP,
                    })
                    .await?;
                expired += step.ended;
                if let Some(last) = step.last {
                    self.walked.insert(id, last);
                }
                if !step.more {
                    break;
                }
            }
            if expired > 0 {
                tracing::info!(subscription = %SubscriptionId(id), expired, "deliveries of a subscription that is not ACTIVE passed delivery.max_age");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_run_at_an_eighth_of_max_age_within_bounds() {
        assert_eq!(interval(Duration::from_secs(72 * 3600)), MAX_INTERVAL);
        assert_eq!(interval(Duration::from_secs(8)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_millis(100)), MIN_INTERVAL);
    }
}
