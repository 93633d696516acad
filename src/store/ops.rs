//! What each write command does inside the writer's transaction. Everything here runs
//! on the writer thread against tables opened once per batch; side effects for the
//! dispatcher are collected in `Effects` and released only after the commit.
//!
//! Invariants kept here:
//! - a delivery has an entry in `due` exactly while it is not final, keyed by its
//!   `next_attempt_ms` (for a parked delivery that is its expiry time);
//! - a subscription that is not ACTIVE has all its unfinished deliveries parked;
//! - `hookd.delivery.failed` is never emitted for a delivery of a `hookd.*` event, so
//!   operational events cannot feed themselves.

use bytes::Bytes;
use redb::{ReadableTable, Table, WriteTransaction};

use super::codec::{decode, encode};
use super::error::StoreError;
use super::index::SubscriptionIndex;
use super::records::{
    DeliveryRecord, DeliveryState, EntityRecord, EventRecord, IdempotencyRecord,
    SubscriptionRecord, SubscriptionStatus,
};
use super::tables::{
    API_KEYS, ATTEMPTS, DELIVERIES, DUE, ENTITIES, EVENT_DELIVERIES, EVENTS, HEALTH, IDEMPOTENCY,
    SUBSCRIPTION_DELIVERIES, SUBSCRIPTIONS,
};
use super::tenancy::MAX_DEPTH;
use super::writer::{
    AttemptReport, EntityOutcome, IDEMPOTENCY_WINDOW_MS, IngestOutcome, NewEvent, NextStep, Op,
    Outcome, PutOutcome, ReplayOutcome, RetryOutcome, WriterSettings,
};
use super::{CommitReport, DueEntry, Fresh};
use crate::ids::{DeliveryId, EventId, SubscriptionId, uuid_v7};
use crate::payload;

/// Most deliveries one replay request queues: keeps one command from holding the
/// writer (and every producer behind it) for long.
pub const MAX_REPLAY: u32 = 10_000;

pub(super) struct Tables<'t> {
    pub events: Table<'t, u128, &'static [u8]>,
    pub subscriptions: Table<'t, u128, &'static [u8]>,
    pub deliveries: Table<'t, u128, &'static [u8]>,
    pub event_deliveries: Table<'t, (u128, u128), ()>,
    pub subscription_deliveries: Table<'t, (u128, u128), ()>,
    pub attempts: Table<'t, (u128, u32), &'static [u8]>,
    pub due: Table<'t, (u64, u128), u128>,
    pub idempotency: Table<'t, &'static [u8; 32], &'static [u8]>,
    pub health: Table<'t, u128, u64>,
    pub entities: Table<'t, &'static str, &'static [u8]>,
    pub api_keys: Table<'t, u128, &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            events: txn.open_table(EVENTS)?,
            subscriptions: txn.open_table(SUBSCRIPTIONS)?,
            deliveries: txn.open_table(DELIVERIES)?,
            event_deliveries: txn.open_table(EVENT_DELIVERIES)?,
            subscription_deliveries: txn.open_table(SUBSCRIPTION_DELIVERIES)?,
            attempts: txn.open_table(ATTEMPTS)?,
            due: txn.open_table(DUE)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            health: txn.open_table(HEALTH)?,
            entities: txn.open_table(ENTITIES)?,
            api_keys: txn.open_table(API_KEYS)?,
        })
    }
}

/// Side effects released only after a successful commit.
#[derive(Default)]
pub(super) struct Effects {
    pub due: Vec<DueEntry>,
    pub fresh: Vec<Fresh>,
    /// Subscriptions whose in-memory queue must be dropped (deleted, paused, resumed).
    pub forget: Vec<u128>,
    /// Counts for the observer (metrics); the writer adds the batch size and time.
    pub report: CommitReport,
}

pub(super) struct Batch<'t, 'i> {
    pub(super) t: Tables<'t>,
    current: &'i SubscriptionIndex,
    /// The subscriptions as changed by this batch so far; published after the commit.
    changed: Option<SubscriptionIndex>,
    pub(super) effects: Effects,
    settings: WriterSettings,
    now: u64,
}

impl<'t, 'i> Batch<'t, 'i> {
    pub fn new(
        t: Tables<'t>,
        current: &'i SubscriptionIndex,
        settings: WriterSettings,
        now: u64,
    ) -> Self {
        Self {
            t,
            current,
            changed: None,
            effects: Effects::default(),
            settings,
            now,
        }
    }

    pub fn finish(self) -> (Option<SubscriptionIndex>, Effects) {
        (self.changed, self.effects)
    }

    pub fn apply(&mut self, op: Op) -> Result<Outcome, StoreError> {
        Ok(match op {
            Op::Ingest(events) => Outcome::Ingested(self.ingest(events)?),
            Op::PutSubscription {
                id,
                record,
                expected_updated_ms,
            } => Outcome::Put(self.put_subscription(id, *record, expected_updated_ms)?),
            Op::DeleteSubscription(id) => Outcome::Deleted(self.delete_subscription(id)?),
            Op::RecordAttempt(report) => {
                self.record_attempt(report)?;
                Outcome::Done
            }
            Op::Expire(delivery) => {
                self.expire(delivery)?;
                Outcome::Done
            }
            Op::Retry(delivery) => Outcome::Retried(self.retry(delivery)?),
            Op::Replay {
                subscription,
                since_ms,
                until_ms,
                only_failed,
            } => Outcome::Replayed(self.replay(subscription, since_ms, until_ms, only_failed)?),
            Op::CreateEntity { id, record } => Outcome::Entity(self.create_entity(id, record)?),
            Op::DeleteEntity(id) => Outcome::Entity(self.delete_entity(&id)?),
            Op::CreateKey { id, record } => {
                self.t.api_keys.insert(id, encode(&record)?.as_slice())?;
                self.changed_mut().keys_mut().insert(id, record);
                Outcome::Done
            }
            Op::RevokeKey(id) => {
                let existed = self.t.api_keys.remove(id)?.is_some();
                self.changed_mut().keys_mut().remove(id);
                Outcome::Deleted(existed)
            }
            Op::Purge {
                before_ms,
                idempotency_before_ms,
                cursor,
                limit,
            } => Outcome::Purged(self.purge(before_ms, idempotency_before_ms, cursor, limit)?),
        })
    }

    fn changed_mut(&mut self) -> &mut SubscriptionIndex {
        let current = self.current;
        self.changed.get_or_insert_with(|| current.clone())
    }

    fn create_entity(
        &mut self,
        id: String,
        record: EntityRecord,
    ) -> Result<EntityOutcome, StoreError> {
        if self.subs().entities.exists(&id) || id == crate::ids::EntityId::ROOT {
            return Ok(EntityOutcome::Exists);
        }
        if let Some(parent) = &record.parent {
            if !self.subs().entities.exists(parent) {
                return Ok(EntityOutcome::NotFound);
            }
            if self.subs().entities.depth(parent) >= MAX_DEPTH {
                return Ok(EntityOutcome::InUse(
                    "the tree may be at most 16 levels deep",
                ));
            }
        }
        self.t
            .entities
            .insert(id.as_str(), encode(&record)?.as_slice())?;
        self.changed_mut().entities_mut().insert(id, record);
        Ok(EntityOutcome::Done)
    }

    fn delete_entity(&mut self, id: &str) -> Result<EntityOutcome, StoreError> {
        let subs = self.subs();
        if id == crate::ids::EntityId::ROOT || !subs.entities.exists(id) {
            return Ok(EntityOutcome::NotFound);
        }
        if subs.entities.has_children(id) {
            return Ok(EntityOutcome::InUse("it has child entities"));
        }
        if subs.keys.owned_by(id) {
            return Ok(EntityOutcome::InUse("it has API keys"));
        }
        if subs.iter().any(|(_, s)| s.entity == id) {
            return Ok(EntityOutcome::InUse("it has subscriptions"));
        }
        self.t.entities.remove(id)?;
        self.changed_mut().entities_mut().remove(id);
        Ok(EntityOutcome::Done)
    }

    fn subs(&self) -> &SubscriptionIndex {
        self.changed.as_ref().unwrap_or(self.current)
    }

    fn subscription(&self, id: u128) -> Option<SubscriptionRecord> {
        self.subs().get(id).map(|s| (**s).clone())
    }

    // ---- events and deliveries -------------------------------------------------

    /// Stores a request's events atomically: every Idempotency-Key is checked first, and
    /// if any was used with another body nothing is stored (the outcomes say which).
    fn ingest(&mut self, events: Vec<NewEvent>) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut seen = Vec::with_capacity(events.len());
        for event in &events {
            let Some(key) = &event.idempotency else {
                seen.push(None);
                continue;
            };
            let record = self
                .t
                .idempotency
                .get(&key.key_hash)?
                .map(|guard| decode::<IdempotencyRecord>(guard.value()))
                .transpose()?
                .filter(|s| self.now < s.created_ms + IDEMPOTENCY_WINDOW_MS);
            seen.push(record.map(|s| {
                if s.body_sha256 == key.body_sha256 {
                    IngestOutcome::Duplicate {
                        event: s.event,
                        deliveries: s.deliveries,
                    }
                } else {
                    IngestOutcome::Conflict
                }
            }));
        }
        if seen.contains(&Some(IngestOutcome::Conflict)) {
            return Ok(seen
                .into_iter()
                .map(|s| {
                    s.unwrap_or(IngestOutcome::Accepted {
                        deliveries: Vec::new(),
                    })
                })
                .collect());
        }
        let mut outcomes = Vec::with_capacity(events.len());
        for (event, seen) in events.into_iter().zip(seen) {
            if let Some(duplicate) = seen {
                outcomes.push(duplicate);
                continue;
            }
            let targets = match &event.targets {
                Some(targets) => targets.clone(),
                None => self
                    .subs()
                    .matching(&event.record.entity, &event.record.event_type),
            };
            let deliveries = self.insert_event(event.id, &event.record, &targets)?;
            if event.targets.is_none() {
                // A test ping is not a producer's event.
                self.effects.report.events_ingested += 1;
            }
            if let Some(key) = &event.idempotency {
                let record = IdempotencyRecord {
                    body_sha256: key.body_sha256,
                    created_ms: self.now,
                    event: event.id,
                    deliveries: u32::try_from(deliveries.len()).unwrap_or(u32::MAX),
                };
                self.t
                    .idempotency
                    .insert(&key.key_hash, encode(&record)?.as_slice())?;
            }
            outcomes.push(IngestOutcome::Accepted { deliveries });
        }
        Ok(outcomes)
    }

    /// Stores an event and one delivery per target, each due now.
    fn insert_event(
        &mut self,
        id: u128,
        record: &EventRecord,
        targets: &[u128],
    ) -> Result<Vec<u128>, StoreError> {
        self.t.events.insert(id, encode(record)?.as_slice())?;
        let body = if targets.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(record.body.clone())
        };
        targets
            .iter()
            .map(|&subscription| self.new_delivery(id, subscription, &body))
            .collect()
    }

    fn new_delivery(
        &mut self,
        event: u128,
        subscription: u128,
        body: &Bytes,
    ) -> Result<u128, StoreError> {
        let delivery = uuid_v7();
        let active = self
            .subs()
            .get(subscription)
            .is_some_and(|s| s.status == SubscriptionStatus::Active);
        let mut record = DeliveryRecord {
            event,
            subscription,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_ms: None,
            last_status: None,
            last_error: None,
            created_ms: self.now,
            updated_ms: self.now,
            parked: false,
            retry_once: false,
        };
        self.t.event_deliveries.insert((event, delivery), ())?;
        self.t
            .subscription_deliveries
            .insert((subscription, delivery), ())?;
        if active {
            self.schedule(delivery, &mut record, self.now)?;
            self.effects.fresh.push(Fresh {
                delivery,
                event,
                created_ms: self.now,
                body: body.clone(),
            });
        } else {
            self.park(delivery, &mut record)?;
        }
        self.save(delivery, &record)?;
        Ok(delivery)
    }

    fn load(&self, delivery: u128) -> Result<Option<DeliveryRecord>, StoreError> {
        self.t
            .deliveries
            .get(delivery)?
            .map(|g| decode(g.value()))
            .transpose()
    }

    fn save(&mut self, delivery: u128, record: &DeliveryRecord) -> Result<(), StoreError> {
        self.t
            .deliveries
            .insert(delivery, encode(record)?.as_slice())?;
        Ok(())
    }

    /// Removes a delivery's `due` entry, if it has one.
    fn unschedule(
        &mut self,
        delivery: u128,
        record: &mut DeliveryRecord,
    ) -> Result<(), StoreError> {
        if let Some(at) = record.next_attempt_ms.take() {
            self.t.due.remove((at, delivery))?;
        }
        record.parked = false;
        Ok(())
    }

    fn schedule(
        &mut self,
        delivery: u128,
        record: &mut DeliveryRecord,
        at: u64,
    ) -> Result<(), StoreError> {
        self.unschedule(delivery, record)?;
        record.next_attempt_ms = Some(at);
        self.t.due.insert((at, delivery), record.subscription)?;
        self.effects.due.push(DueEntry {
            due_ms: at,
            delivery,
            subscription: record.subscription,
        });
        Ok(())
    }

    /// Waits for the subscription to be ACTIVE again; its `due` entry becomes the
    /// expiry time, when the dispatcher ends it FAILED.
    fn park(&mut self, delivery: u128, record: &mut DeliveryRecord) -> Result<(), StoreError> {
        let expires = record
            .created_ms
            .saturating_add(self.settings.max_age_ms)
            .max(self.now);
        self.schedule(delivery, record, expires)?;
        record.parked = true;
        Ok(())
    }

    // ---- subscriptions ---------------------------------------------------------

    fn put_subscription(
        &mut self,
        id: u128,
        mut record: SubscriptionRecord,
        expected_updated_ms: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        let before = self.subscription(id);
        if let Some(expected) = expected_updated_ms {
            if before.as_ref().map(|b| b.updated_ms) != Some(expected) {
                return Ok(PutOutcome::Conflict);
            }
        }
        let was_active = before
            .as_ref()
            .map(|b| b.status == SubscriptionStatus::Active);
        let active = record.status == SubscriptionStatus::Active;
        if active && was_active == Some(false) {
            record.active_since_ms = self.now;
        }
        self.store_subscription(id, record)?;
        match (was_active, active) {
            (Some(true), false) => self.repark(id, true)?,
            (Some(false), true) => self.repark(id, false)?,
            _ => {}
        }
        Ok(PutOutcome::Stored)
    }

    fn store_subscription(
        &mut self,
        id: u128,
        record: SubscriptionRecord,
    ) -> Result<(), StoreError> {
        self.t
            .subscriptions
            .insert(id, encode(&record)?.as_slice())?;
        let current = self.current;
        self.changed
            .get_or_insert_with(|| current.clone())
            .upsert(id, record);
        Ok(())
    }

    /// Parks (`park == true`) or resumes every unfinished delivery of a subscription.
    /// Scans the due queue, which holds exactly the unfinished deliveries.
    fn repark(&mut self, subscription: u128, park: bool) -> Result<(), StoreError> {
        let mut found = Vec::new();
        for entry in self.t.due.iter()? {
            let (key, value) = entry?;
            if value.value() == subscription {
                found.push(key.value().1);
            }
        }
        for delivery in found {
            let Some(mut record) = self.load(delivery)? else {
                continue;
            };
            if park && !record.parked {
                self.park(delivery, &mut record)?;
            } else if !park && record.parked {
                let now = self.now;
                self.schedule(delivery, &mut record, now)?;
            } else {
                continue;
            }
            record.updated_ms = self.now;
            self.save(delivery, &record)?;
        }
        self.effects.forget.push(subscription);
        Ok(())
    }

    fn delete_subscription(&mut self, id: u128) -> Result<bool, StoreError> {
        if self.t.subscriptions.remove(id)?.is_none() {
            return Ok(false);
        }
        let current = self.current;
        self.changed
            .get_or_insert_with(|| current.clone())
            .remove(id);
        self.t.health.remove(id)?;
        let owned: Vec<u128> = self
            .t
            .subscription_deliveries
            .range((id, 0)..=(id, u128::MAX))?
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        for delivery in owned {
            let Some(mut record) = self.load(delivery)? else {
                continue;
            };
            if record.state.is_final() {
                continue;
            }
            self.unschedule(delivery, &mut record)?;
            record.state = DeliveryState::Cancelled;
            self.effects.report.cancelled += 1;
            record.updated_ms = self.now;
            self.save(delivery, &record)?;
        }
        self.effects.forget.push(id);
        Ok(true)
    }

    /// DISABLED by hookd: parks its deliveries and tells whoever follows `hookd.*`.
    fn disable(&mut self, id: u128, reason: String) -> Result<(), StoreError> {
        let Some(mut record) = self.subscription(id) else {
            return Ok(());
        };
        if record.status == SubscriptionStatus::Disabled {
            return Ok(());
        }
        let was_active = record.status == SubscriptionStatus::Active;
        record.status = SubscriptionStatus::Disabled;
        record.disabled_reason = Some(reason.clone());
        record.updated_ms = self.now;
        tracing::warn!(subscription = %SubscriptionId(id), %reason, "subscription disabled");
        let data = serde_json::json!({
            "subscription": {
                "id": SubscriptionId(id).to_string(),
                "entityId": record.entity,
                "endpointUrl": record.endpoint_url,
                "eventTypes": record.event_types,
                "status": "DISABLED",
                "disabledReason": reason,
            },
            "reason": reason,
        });
        let entity = record.entity.clone();
        self.store_subscription(id, record)?;
        if was_active {
            self.repark(id, true)?;
        }
        self.emit(&entity, "hookd.subscription.disabled", &data)
    }

    // ---- attempts and their outcomes ---------------------------------------------

    fn record_attempt(&mut self, report: AttemptReport) -> Result<(), StoreError> {
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
        record.last_status = report.attempt.status;
        record.last_error = report.attempt.error.clone();
        record.updated_ms = self.now;
        if record.state == DeliveryState::Cancelled {
            return self.save(id, &record);
        }
        let subscription = record.subscription;
        let sub = self.subscription(subscription);
        let ended_before = std::mem::take(&mut record.retry_once);

        match report.next {
            NextStep::Succeeded => {
                record.state = DeliveryState::Succeeded;
                self.effects.report.succeeded += 1;
                self.t.health.insert(subscription, attempted_ms)?;
            }
            NextStep::RetryAt(at) if !ended_before => {
                record.state = DeliveryState::Retrying;
                let last_ok = self
                    .t
                    .health
                    .get(subscription)?
                    .map(|g| g.value())
                    .unwrap_or(0);
                let overdue = sub.as_ref().is_some_and(|s| {
                    s.status == SubscriptionStatus::Active
                        && attempted_ms
                            > last_ok.max(s.active_since_ms) + self.settings.disable_after_ms
                });
                if overdue {
                    let since = payload::timestamp(
                        last_ok.max(sub.as_ref().map_or(0, |s| s.active_since_ms)),
                    );
                    self.disable(
                        subscription,
                        format!(
                            "no successful delivery since {since}; delivery.disable_after passed"
                        ),
                    )?;
                }
                let active = self
                    .subs()
                    .get(subscription)
                    .is_some_and(|s| s.status == SubscriptionStatus::Active);
                if active {
                    self.schedule(id, &mut record, at)?;
                } else {
                    self.park(id, &mut record)?;
                }
            }
            NextStep::RetryAt(_) | NextStep::Failed => {
                record.state = DeliveryState::Failed;
                self.effects.report.failed += 1;
                if report.gone {
                    self.disable(subscription, "the endpoint answered 410 Gone".into())?;
                }
                if !ended_before {
                    self.delivery_failed(id, &record)?;
                }
            }
        }
        self.save(id, &record)
    }

    /// A parked delivery reached `delivery.max_age`.
    fn expire(&mut self, id: u128) -> Result<(), StoreError> {
        let Some(mut record) = self.load(id)? else {
            return Ok(());
        };
        if record.state.is_final() || !record.parked {
            return Ok(());
        }
        self.unschedule(id, &mut record)?;
        record.state = DeliveryState::Failed;
        self.effects.report.failed += 1;
        record.last_error = Some(
            "expired: not delivered within delivery.max_age while the subscription was not ACTIVE"
                .into(),
        );
        record.updated_ms = self.now;
        self.delivery_failed(id, &record)?;
        self.save(id, &record)
    }

    fn retry(&mut self, id: u128) -> Result<RetryOutcome, StoreError> {
        let Some(mut record) = self.load(id)? else {
            return Ok(RetryOutcome::NotFound);
        };
        if record.state == DeliveryState::Cancelled {
            return Ok(RetryOutcome::Cancelled);
        }
        let active = self
            .subs()
            .get(record.subscription)
            .is_some_and(|s| s.status == SubscriptionStatus::Active);
        if !active {
            return Ok(RetryOutcome::SubscriptionInactive);
        }
        if record.state.is_final() {
            record.retry_once = true;
            record.state = DeliveryState::Retrying;
        }
        let now = self.now;
        self.schedule(id, &mut record, now)?;
        record.updated_ms = now;
        self.save(id, &record)?;
        Ok(RetryOutcome::Queued(record))
    }

    /// New deliveries to one subscription for the events of a time range that it
    /// matches now; with `only_failed`, only events whose delivery to it ended FAILED.
    fn replay(
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
    fn failed_for(&self, event: u128, subscription: u128) -> Result<bool, StoreError> {
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

    fn delivery_failed(&mut self, id: u128, record: &DeliveryRecord) -> Result<(), StoreError> {
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
    fn emit(
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
