//! What follows an attempt inside the writer's transaction: recording it, scheduling
//! the retry or ending the delivery, expiry, manual retry, replay, and the operational
//! events (`hookd.delivery.failed`) that endings emit.

use super::*;
use crate::store::lifecycle::{self, AfterAttempt, RetryRefused};

impl Batch<'_, '_> {
    // ---- attempts and their outcomes ---------------------------------------------

    pub(super) fn record_attempt(&mut self, report: AttemptReport) -> Result<(), StoreError> {
        let id = report.delivery;
        let Some(mut record) = self.load(id)? else {
            return Ok(()); // purged while in flight: nothing to record against
        };
        self.unschedule(id, &mut record)?;
        record.attempts += 1;
        let attempted_ms = report.attempt.attempted_ms;
        self.t
            .attempts
            .insert((id, record.attempts), encode(&report.attempt)?.as_slice())?;
        if !report.request_headers.is_empty() {
            let request = AttemptRequest {
                headers: report.request_headers,
            };
            self.t
                .attempt_requests
                .insert((id, record.attempts), encode(&request)?.as_slice())?;
        }
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
            return self.save(id, &record);
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
                self.t.health.insert(subscription, attempted_ms)?;
                self.t.failing.remove(subscription)?;
            }
            AfterAttempt::Cancelled => self.effects.report.cancelled += 1,
            AfterAttempt::Retry { at } => {
                if let Some(sub) = &sub {
                    self.failed_attempt(subscription, sub, attempted_ms)?;
                }
                // A paused (or just disabled) subscription's retry waits in `due` too.
                self.schedule(id, &mut record, at)?;
            }
            AfterAttempt::Failed {
                gone,
                counts,
                announce,
            } => {
                self.effects.report.failed += 1;
                if gone {
                    self.disable(subscription, "the endpoint answered 410 Gone".into())?;
                } else if let Some(sub) = sub.as_ref().filter(|_| counts) {
                    self.failed_attempt(subscription, sub, attempted_ms)?;
                }
                log_failed(id, &record);
                if announce {
                    self.delivery_failed(id, &record)?;
                }
            }
        }
        self.save(id, &record)
    }

    /// Notes a failed attempt to an ACTIVE subscription and disables it once it has
    /// failed continuously for `delivery.disable_after`: its latest attempt failed and its
    /// first failure since the latest success, creation or re-activation is older than
    /// that. An endpoint that was merely quiet is never disabled by one failure.
    fn failed_attempt(
        &mut self,
        subscription: u128,
        sub: &SubscriptionRecord,
        attempted_ms: u64,
    ) -> Result<(), StoreError> {
        if sub.status != SubscriptionStatus::Active {
            return Ok(());
        }
        let last_ok = self.t.health.get(subscription)?.map_or(0, |g| g.value());
        let recorded = self.t.failing.get(subscription)?.map(|g| g.value());
        let clock = lifecycle::failure_clock(
            recorded,
            last_ok,
            sub.active_since_ms,
            attempted_ms,
            self.settings.disable_after_ms,
        );
        if clock.started {
            self.t.failing.insert(subscription, attempted_ms)?;
        }
        if clock.disable {
            let since = payload::timestamp(clock.first);
            self.disable(
                subscription,
                format!("failing continuously since {since}; delivery.disable_after passed"),
            )?;
        }
        Ok(())
    }

    pub(super) fn retry(&mut self, id: u128) -> Result<RetryOutcome, StoreError> {
        let Some(mut record) = self.load(id)? else {
            return Ok(RetryOutcome::NotFound);
        };
        let active = self.is_active(record.subscription);
        match lifecycle::manual_retry(record.state, active) {
            Err(RetryRefused::Cancelled) => return Ok(RetryOutcome::Cancelled),
            Err(RetryRefused::SubscriptionInactive) => {
                return Ok(RetryOutcome::SubscriptionInactive);
            }
            // An ended delivery keeps its state (a SUCCEEDED beside its 2xx, a FAILED
            // beside its error) until the one attempt's outcome is recorded.
            Ok(retry_once) => record.retry_once = retry_once,
        }
        let now = self.now;
        self.schedule(id, &mut record, now)?;
        record.updated_ms = now;
        self.save(id, &record)?;
        Ok(RetryOutcome::Queued(record))
    }

    /// New deliveries to one subscription for the events of a time range that it
    /// matches now; with `only_failed`, only events whose delivery to it ended FAILED.
    pub(super) fn replay(
        &mut self,
        subscription: u128,
        since_ms: u64,
        until_ms: u64,
        only_failed: bool,
    ) -> Result<ReplayOutcome, StoreError> {
        let Some(sub) = self.subscription(subscription) else {
            return Ok(ReplayOutcome::NotFound);
        };
        if sub.status != SubscriptionStatus::Active {
            return Ok(ReplayOutcome::SubscriptionInactive);
        }
        let from = u128::from(since_ms) << 80;
        let to = u128::from(until_ms) << 80;
        let mut picked: Vec<(u128, Bytes)> = Vec::new();
        let mut resume_ms = None;
        for entry in self.t.events.range(from..to)? {
            let (key, value) = entry?;
            let event = key.value();
            let record: EventRecord = decode(value.value())?;
            if !self
                .subs()
                .receives(&sub, &record.entity, &record.event_type)
            {
                continue;
            }
            if only_failed && !self.failed_for(event, subscription)? {
                continue;
            }
            if picked.len() as u32 == MAX_REPLAY {
                resume_ms = Some(crate::ids::uuid_v7_millis(event));
                break;
            }
            picked.push((event, Bytes::from(record.body)));
        }
        let queued = picked.len() as u32;
        for (event, body) in picked {
            self.new_delivery(event, subscription, &body)?;
        }
        Ok(ReplayOutcome::Queued { queued, resume_ms })
    }

    /// Whether the latest delivery of `event` to `subscription` ended FAILED.
    pub(super) fn failed_for(&self, event: u128, subscription: u128) -> Result<bool, StoreError> {
        let mut latest = None;
        for entry in self
            .t
            .event_deliveries
            .range((event, 0)..=(event, u128::MAX))?
        {
            let delivery = entry?.0.value().1;
            if let Some(record) = self.load(delivery)? {
                if record.subscription == subscription {
                    latest = Some(record.state);
                }
            }
        }
        Ok(latest == Some(DeliveryState::Failed))
    }

    // ---- operational events ----------------------------------------------------

    pub(super) fn delivery_failed(
        &mut self,
        id: u128,
        record: &DeliveryRecord,
    ) -> Result<(), StoreError> {
        let Some(event) = self
            .t
            .events
            .get(record.event)?
            .map(|g| decode::<EventRecord>(g.value()))
        else {
            return Ok(());
        };
        let event = event?;
        if event.event_type.starts_with("hookd.") {
            return Ok(());
        }
        let entity = self
            .subscription(record.subscription)
            .map_or(event.entity.clone(), |s| s.entity);
        let data = serde_json::json!({
            "deliveryId": DeliveryId(id).to_string(),
            "eventId": EventId(record.event).to_string(),
            "eventType": event.event_type,
            "subscriptionId": SubscriptionId(record.subscription).to_string(),
            "attempts": record.attempts,
            "lastStatus": record.last_status,
            "lastError": record.last_error,
        });
        self.emit(&entity, "hookd.delivery.failed", &data)
    }

    /// An event hookd emits itself, fanned out like any other.
    pub(super) fn emit(
        &mut self,
        entity: &str,
        event_type: &str,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let id = uuid_v7();
        let created_ms = crate::ids::uuid_v7_millis(id);
        let record = EventRecord {
            entity: entity.to_owned(),
            event_type: event_type.to_owned(),
            created_ms,
            body: payload::render(
                EventId(id),
                event_type,
                entity,
                created_ms,
                &data.to_string(),
            ),
        };
        let targets = self.subs().matching(entity, event_type);
        self.insert_event(id, &record, &targets)?;
        Ok(())
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
