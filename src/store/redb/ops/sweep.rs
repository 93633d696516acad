//! The sweeper's steps inside the writer's transaction: what pausing, resuming and
//! deleting a subscription leave for later (each writes the subscription alone),
//! done a bounded number of deliveries at a time so that no step holds the writer, and
//! every producer behind it, for long.

use std::ops::Bound;

use super::outcomes::log_failed;
use super::*;
use crate::store::lifecycle;
use crate::store::requests::{Sweep, SweepOutcome};

const DONE: SweepOutcome = SweepOutcome {
    ended: 0,
    last: None,
    more: false,
};

impl Batch<'_, '_> {
    pub(super) fn sweep(&mut self, sweep: Sweep) -> Result<SweepOutcome, StoreError> {
        match sweep {
            Sweep::Cancel {
                subscription,
                limit,
            } => self.cancel_orphans(subscription, limit),
            Sweep::Expire {
                subscription,
                after,
                limit,
            } => self.expire_waiting(subscription, after, limit),
            Sweep::Resume {
                subscription,
                since_ms,
                after,
                limit,
            } => self.resume_retries(subscription, since_ms, after, limit),
        }
    }

    fn resume_retries(
        &mut self,
        subscription: u128,
        since_ms: u64,
        after: u128,
        limit: usize,
    ) -> Result<SweepOutcome, StoreError> {
        let current = self.subs().get(subscription).map(|s| s.active_since_ms);
        if current != Some(since_ms) || !self.is_active(subscription) {
            return Ok(DONE);
        }
        let retrying = DeliveryState::Retrying.code();
        let visited: Vec<u128> = self
            .t
            .subscription_states
            .range::<(u128, u8, u128)>((
                Bound::Excluded((subscription, retrying, after)),
                Bound::Included((subscription, retrying, u128::MAX)),
            ))?
            .take(limit)
            .map(|entry| entry.map(|(key, _)| key.value().2))
            .collect::<Result<_, _>>()?;
        let mut ended = 0;
        let now = self.now;
        for &delivery in &visited {
            let Some(mut record) = self.load(delivery)? else {
                continue;
            };
            if lifecycle::resumes(record.next_attempt_ms, record.updated_ms, since_ms, now) {
                self.schedule(delivery, &mut record, now)?;
                record.updated_ms = now;
                self.save(delivery, &record)?;
                ended += 1;
            }
        }
        Ok(SweepOutcome::walked(ended, &visited, limit))
    }

    fn cancel_orphans(
        &mut self,
        subscription: u128,
        limit: usize,
    ) -> Result<SweepOutcome, StoreError> {
        if self.subs().get(subscription).is_some() {
            return Ok(DONE);
        }
        let keys: Vec<(u128, u64, u128)> = self
            .t
            .due
            .range((subscription, 0, 0)..=(subscription, u64::MAX, u128::MAX))?
            .take(limit)
            .map(|entry| entry.map(|(key, _)| key.value()))
            .collect::<Result<_, _>>()?;
        let mut ended = 0;
        for &key in &keys {
            self.t.due.remove(key)?;
            let delivery = key.2;
            let Some(mut record) = self.load(delivery)? else {
                continue;
            };
            record.next_attempt_ms = None;
            record.retry_once = false;
            if lifecycle::cancels(record.state) {
                record.state = DeliveryState::Cancelled;
                self.effects.report.cancelled += 1;
                ended += 1;
            }
            record.updated_ms = self.now;
            self.save(delivery, &record)?;
        }
        Ok(SweepOutcome {
            ended,
            last: None,
            more: keys.len() == limit,
        })
    }

    fn expire_waiting(
        &mut self,
        subscription: u128,
        after: u128,
        limit: usize,
    ) -> Result<SweepOutcome, StoreError> {
        if self.subs().get(subscription).is_none() || self.is_active(subscription) {
            return Ok(DONE);
        }
        let cutoff = self.now.saturating_sub(self.settings.max_age_ms);
        // A UUIDv7 starts with its creation time in milliseconds.
        let before = u128::from(cutoff) << 80;
        let visited: Vec<u128> = self
            .t
            .subscription_deliveries
            .range::<(u128, u128)>((
                Bound::Excluded((subscription, after)),
                Bound::Excluded((subscription, before)),
            ))?
            .take(limit)
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        let mut ended = 0;
        for &delivery in &visited {
            let Some(mut record) = self.load(delivery)? else {
                continue;
            };
            let max_age = self.settings.max_age_ms;
            if !lifecycle::expires(record.state, record.created_ms, self.now, max_age) {
                continue;
            }
            self.unschedule(delivery, &mut record)?;
            record.state = DeliveryState::Failed;
            self.effects.report.failed += 1;
            record.last_error = Some(lifecycle::EXPIRED.into());
            record.updated_ms = self.now;
            log_failed(delivery, &record);
            self.delivery_failed(delivery, &record)?;
            self.save(delivery, &record)?;
            ended += 1;
        }
        Ok(SweepOutcome::walked(ended, &visited, limit))
    }
}
