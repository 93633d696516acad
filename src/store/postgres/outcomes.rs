//! What follows an attempt inside a batch: recording it, scheduling the retry or ending
//! the delivery, disabling a failing endpoint, a manual retry, a replay, and the
//! operational events (`hookd.delivery.failed`) that endings emit. The same rules as
//! `redb/ops/outcomes.rs`, through the same `lifecycle` functions; `hookd.delivery.failed`
//! is never emitted for a delivery of a `hookd.*` event, so operational events cannot
//! feed themselves.

use bytes::Bytes;
use deadpool_postgres::Client;

use super::batch::{AttemptRow, Batch, EventRow};
use super::flush;
use super::writer::ReplayArgs;
use crate::ids::{DeliveryId, EventId, SubscriptionId, uuid_v7};
use crate::payload;
use crate::store::MAX_REPLAY;
use crate::store::codec::encode;
use crate::store::error::StoreError;
use crate::store::lifecycle::{self, AfterAttempt, RetryRefused};
use crate::store::records::{
    AttemptRequest, DeliveryRecord, SubscriptionRecord, SubscriptionStatus,
};
use crate::store::requests::{AttemptReport, ReplayOutcome, RetryOutcome};

/// Events one step of a replay reads (without bodies) to pick from.
const REPLAY_STEP: i64 = 1000;

impl Batch<'_> {
    pub(super) async fn record_attempt(
        &mut self,
        client: &Client,
        report: &AttemptReport,
    ) -> Result<(), StoreError> {
        let id = report.delivery;
        if self.is_fenced(id) {
            tracing::info!(delivery = %DeliveryId(id), "an attempt's outcome was dropped: its partition moved to another node while it ran, and that node delivers it");
            return Ok(());
        }
        let Some(row) = self.deliveries.get(&id) else {
            return Ok(()); // purged while in flight: nothing to record against
        };
        let mut record = row.record.clone();
        Self::unschedule(&mut record);
        record.attempts += 1;
        let attempted_ms = report.attempt.attempted_ms;
        let request = if report.request_headers.is_empty() {
            None
        } else {
            Some(encode(&AttemptRequest {
                headers: report.request_headers.clone(),
            })?)
        };
        self.attempts.push(AttemptRow {
            delivery: id,
            n: record.attempts,
            record: encode(&report.attempt)?,
            request,
        });
        record.last_status = report.attempt.status;
        record.last_error = report.attempt.error.clone();
        record.updated_ms = self.now;
        let subscription = record.subscription;
        let sub = self.subscription(subscription);
        let after = lifecycle::after_attempt(
            record.state,
            record.retry_once,
            sub.is_some(),
            report.next,
            report.gone,
        );
        if after == AfterAttempt::Keep {
            self.save(id, record);
            return Ok(());
        }
        self.stats.record(
            subscription,
            attempted_ms,
            after == AfterAttempt::Succeeded,
            report.attempt.duration_ms,
        );
        record.retry_once = false;
        record.state = after.state(record.state);
        match after {
            AfterAttempt::Keep => {}
            AfterAttempt::Succeeded => {
                self.effects.report.succeeded += 1;
                let health = self.health_mut(subscription);
                health.last_success_ms = Some(attempted_ms);
                health.failing_since_ms = None;
            }
            AfterAttempt::Cancelled => self.effects.report.cancelled += 1,
            AfterAttempt::Retry { at } => {
                if let Some(sub) = &sub {
                    self.failed_attempt(client, subscription, sub, attempted_ms)
                        .await?;
                }
                // A paused (or just disabled) subscription's retry waits in the queue too.
                self.schedule(id, &mut record, at);
            }
            AfterAttempt::Failed {
                gone,
                counts,
                announce,
            } => {
                self.effects.report.failed += 1;
                if gone {
                    self.disable(
                        client,
                        subscription,
                        "the endpoint answered 410 Gone".into(),
                    )
                    .await?;
                } else if let Some(sub) = sub.as_ref().filter(|_| counts) {
                    self.failed_attempt(client, subscription, sub, attempted_ms)
                        .await?;
                }
                log_failed(id, &record);
                if announce {
                    self.delivery_failed(id, &record)?;
                }
            }
        }
        self.save(id, record);
        Ok(())
    }

    /// Notes a failed attempt to an ACTIVE subscription and disables it once it has
    /// failed continuously for `delivery.disable_after` (`lifecycle::failure_clock`).
    async fn failed_attempt(
        &mut self,
        client: &Client,
        subscription: u128,
        sub: &SubscriptionRecord,
        attempted_ms: u64,
    ) -> Result<(), StoreError> {
        if sub.status != SubscriptionStatus::Active {
            return Ok(());
        }
        let health = self
            .health
            .get(&subscription)
            .map(|(h, _)| *h)
            .unwrap_or_default();
        let clock = lifecycle::failure_clock(
            health.failing_since_ms,
            health.last_success_ms.unwrap_or(0),
            sub.active_since_ms,
            attempted_ms,
            self.settings.disable_after_ms,
        );
        if clock.started {
            self.health_mut(subscription).failing_since_ms = Some(attempted_ms);
        }
        if clock.disable {
            let since = payload::timestamp(clock.first);
            self.disable(
                client,
                subscription,
                format!("failing continuously since {since}; delivery.disable_after passed"),
            )
            .await?;
        }
        Ok(())
    }

    pub(super) fn retry(&mut self, id: u128) -> RetryOutcome {
        let Some(row) = self.deliveries.get(&id) else {
            return RetryOutcome::NotFound;
        };
        let mut record = row.record.clone();
        let active = self.is_active(record.subscription);
        match lifecycle::manual_retry(record.state, active) {
            Err(RetryRefused::Cancelled) => return RetryOutcome::Cancelled,
            Err(RetryRefused::SubscriptionInactive) => return RetryOutcome::SubscriptionInactive,
            // An ended delivery keeps its state (a SUCCEEDED beside its 2xx, a FAILED
            // beside its error) until the one attempt's outcome is recorded.
            Ok(retry_once) => record.retry_once = retry_once,
        }
        let now = self.now;
        self.schedule(id, &mut record, now);
        record.updated_ms = now;
        self.save(id, record.clone());
        RetryOutcome::Queued(record)
    }

    /// New deliveries to one subscription for the events of a time range that it
    /// matches now; with `only_failed`, only events whose latest delivery to it ended
    /// FAILED. Reads the range in steps (types and entities first, bodies only of the
    /// events picked), at most `MAX_REPLAY` picked.
    pub(super) async fn replay(
        &mut self,
        client: &Client,
        args: &ReplayArgs,
    ) -> Result<ReplayOutcome, StoreError> {
        let subscription = args.subscription;
        let Some(sub) = self.subscription(subscription) else {
            return Ok(ReplayOutcome::NotFound);
        };
        if sub.status != SubscriptionStatus::Active {
            return Ok(ReplayOutcome::SubscriptionInactive);
        }
        let mut from = u128::from(args.since_ms) << 80;
        let to = u128::from(args.until_ms) << 80;
        let mut picked: Vec<u128> = Vec::new();
        let mut resume_ms = None;
        'steps: loop {
            let step = flush::event_heads(client, from, to, REPLAY_STEP).await?;
            let Some(&(last, _, _)) = step.last() else {
                break;
            };
            let mut matching: Vec<u128> = step
                .iter()
                .filter(|(_, entity, event_type)| self.subs().receives(&sub, entity, event_type))
                .map(|(id, _, _)| *id)
                .collect();
            if args.only_failed && !matching.is_empty() {
                let failed = flush::failed_for(client, &matching, subscription).await?;
                matching.retain(|event| failed.contains(event));
            }
            for event in matching {
                if picked.len() as u32 == MAX_REPLAY {
                    resume_ms = Some(crate::ids::uuid_v7_millis(event));
                    break 'steps;
                }
                picked.push(event);
            }
            if (step.len() as i64) < REPLAY_STEP {
                break;
            }
            from = last + 1;
        }
        let queued = picked.len() as u32;
        let bodies = flush::event_bodies(client, &picked).await?;
        for event in picked {
            let body = bodies.get(&event).cloned().unwrap_or_default();
            self.new_delivery(event, subscription, &body);
        }
        Ok(ReplayOutcome::Queued { queued, resume_ms })
    }

    // ---- operational events ----------------------------------------------------

    pub(super) fn delivery_failed(
        &mut self,
        id: u128,
        record: &DeliveryRecord,
    ) -> Result<(), StoreError> {
        let head = match self.deliveries.get(&id).and_then(|row| row.event.clone()) {
            Some(head) => Some(head),
            // A delivery made in this batch: its event is in the batch too.
            None => self
                .events
                .iter()
                .find(|e| e.id == record.event)
                .map(|e| (e.entity.clone(), e.event_type.clone())),
        };
        let Some((event_entity, event_type)) = head else {
            return Ok(());
        };
        if event_type.starts_with("hookd.") {
            return Ok(());
        }
        let entity = self
            .subscription(record.subscription)
            .map_or(event_entity, |s| s.entity);
        let data = serde_json::json!({
            "deliveryId": DeliveryId(id).to_string(),
            "eventId": EventId(record.event).to_string(),
            "eventType": event_type,
            "subscriptionId": SubscriptionId(record.subscription).to_string(),
            "attempts": record.attempts,
            "lastStatus": record.last_status,
            "lastError": record.last_error,
        });
        self.emit(&entity, "hookd.delivery.failed", &data);
        Ok(())
    }

    /// An event hookd emits itself, fanned out like any other.
    pub(super) fn emit(&mut self, entity: &str, event_type: &str, data: &serde_json::Value) {
        let id = uuid_v7();
        let created_ms = crate::ids::uuid_v7_millis(id);
        let body = payload::render(
            EventId(id),
            event_type,
            entity,
            created_ms,
            &data.to_string(),
        );
        let targets = self.subs().matching(entity, event_type);
        self.store_event(
            EventRow {
                id,
                entity: entity.to_owned(),
                event_type: event_type.to_owned(),
                created_ms,
                body: Bytes::from(body),
            },
            &targets,
        );
    }
}

/// A delivery that ended FAILED: worth an operator's attention, once per ending.
pub(super) fn log_failed(id: u128, record: &DeliveryRecord) {
    tracing::warn!(
        delivery = %DeliveryId(id),
        subscription = %SubscriptionId(record.subscription),
        attempts = record.attempts,
        status = record.last_status,
        error = record.last_error.as_deref(),
        "delivery FAILED: no further attempts are scheduled"
    );
}
