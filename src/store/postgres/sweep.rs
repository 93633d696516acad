//! The sweeper's steps inside a batch: what deleting, pausing and resuming a
//! subscription leave for later (each writes the subscription alone), a bounded number
//! of deliveries at a time, with the rules of `redb/ops/sweep.rs` (`lifecycle::cancels`,
//! `expires`, `resumes`). Each step reads its deliveries, locked, with one statement
//! over an index by subscription, and writes them with the batch's other changes.

use deadpool_postgres::Client;

use super::batch::Batch;
use super::flush;
use super::outcomes::log_failed;
use super::rows::state_code;
use super::types::Uuid;
use crate::store::error::StoreError;
use crate::store::lifecycle;
use crate::store::records::DeliveryState;
use crate::store::requests::{Sweep, SweepOutcome};

const DONE: SweepOutcome = SweepOutcome {
    ended: 0,
    last: None,
    more: false,
};

impl Batch<'_> {
    pub(super) async fn sweep(
        &mut self,
        client: &Client,
        sweep: Sweep,
    ) -> Result<SweepOutcome, StoreError> {
        match sweep {
            Sweep::Cancel {
                subscription,
                limit,
            } => self.cancel_orphans(client, subscription, limit).await,
            Sweep::Expire {
                subscription,
                after,
                limit,
            } => {
                self.expire_waiting(client, subscription, after, limit)
                    .await
            }
            Sweep::Resume {
                subscription,
                since_ms,
                after,
                limit,
            } => {
                self.resume_retries(client, subscription, since_ms, after, limit)
                    .await
            }
        }
    }

    /// Reads the deliveries `condition` selects into the batch (one changed earlier in
    /// the batch keeps its changes) and answers their ids, in order.
    async fn visit(
        &mut self,
        client: &Client,
        condition: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<u128>, StoreError> {
        let rows = flush::lock_deliveries(client, condition, params).await?;
        let mut visited = Vec::with_capacity(rows.len());
        for (id, row) in rows {
            self.deliveries.entry(id).or_insert(row);
            visited.push(id);
        }
        Ok(visited)
    }

    async fn cancel_orphans(
        &mut self,
        client: &Client,
        subscription: u128,
        limit: usize,
    ) -> Result<SweepOutcome, StoreError> {
        if self.subs().get(subscription).is_some() {
            return Ok(DONE);
        }
        let visited = self
            .visit(
                client,
                "d.subscription = $1 AND d.next_attempt_ms IS NOT NULL
                 ORDER BY d.next_attempt_ms, d.id LIMIT $2",
                &[&Uuid(subscription), &count(limit)],
            )
            .await?;
        let mut ended = 0;
        for &delivery in &visited {
            let Some(row) = self.deliveries.get(&delivery) else {
                continue;
            };
            let mut record = row.record.clone();
            record.next_attempt_ms = None;
            record.retry_once = false;
            if lifecycle::cancels(record.state) {
                record.state = DeliveryState::Cancelled;
                self.effects.report.cancelled += 1;
                ended += 1;
            }
            record.updated_ms = self.now;
            self.save(delivery, record);
        }
        Ok(SweepOutcome {
            ended,
            last: None,
            more: visited.len() == limit,
        })
    }

    async fn expire_waiting(
        &mut self,
        client: &Client,
        subscription: u128,
        after: u128,
        limit: usize,
    ) -> Result<SweepOutcome, StoreError> {
        if self.subs().get(subscription).is_none() || self.is_active(subscription) {
            return Ok(DONE);
        }
        let max_age = self.settings.max_age_ms;
        // A UUIDv7 starts with its creation time in milliseconds.
        let before = u128::from(self.now.saturating_sub(max_age)) << 80;
        let visited = self
            .visit(
                client,
                "d.subscription = $1 AND d.id > $2 AND d.id < $3 ORDER BY d.id LIMIT $4",
                &[
                    &Uuid(subscription),
                    &Uuid(after),
                    &Uuid(before),
                    &count(limit),
                ],
            )
            .await?;
        let mut ended = 0;
        for &delivery in &visited {
            let Some(row) = self.deliveries.get(&delivery) else {
                continue;
            };
            let mut record = row.record.clone();
            if !lifecycle::expires(record.state, record.created_ms, self.now, max_age) {
                continue;
            }
            Self::unschedule(&mut record);
            record.state = DeliveryState::Failed;
            self.effects.report.failed += 1;
            record.last_error = Some(lifecycle::EXPIRED.into());
            record.updated_ms = self.now;
            log_failed(delivery, &record);
            self.delivery_failed(delivery, &record)?;
            self.save(delivery, record);
            ended += 1;
        }
        Ok(SweepOutcome::walked(ended, &visited, limit))
    }

    async fn resume_retries(
        &mut self,
        client: &Client,
        subscription: u128,
        since_ms: u64,
        after: u128,
        limit: usize,
    ) -> Result<SweepOutcome, StoreError> {
        let current = self.subs().get(subscription).map(|s| s.active_since_ms);
        if current != Some(since_ms) || !self.is_active(subscription) {
            return Ok(DONE);
        }
        let visited = self
            .visit(
                client,
                "d.subscription = $1 AND d.state = $2 AND d.id > $3 ORDER BY d.id LIMIT $4",
                &[
                    &Uuid(subscription),
                    &state_code(DeliveryState::Retrying),
                    &Uuid(after),
                    &count(limit),
                ],
            )
            .await?;
        let mut ended = 0;
        let now = self.now;
        for &delivery in &visited {
            let Some(row) = self.deliveries.get(&delivery) else {
                continue;
            };
            let mut record = row.record.clone();
            if lifecycle::resumes(record.next_attempt_ms, record.updated_ms, since_ms, now) {
                self.schedule(delivery, &mut record, now);
                record.updated_ms = now;
                self.save(delivery, record);
                ended += 1;
            }
        }
        Ok(SweepOutcome::walked(ended, &visited, limit))
    }
}

/// A step's size as a `LIMIT`.
fn count(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
