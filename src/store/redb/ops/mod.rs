//! What each write command does inside the writer's transaction. Everything here runs
//! on the writer thread against tables opened once per batch; side effects for the
//! dispatcher are collected in `Effects` and released only after the commit.
//!
//! Invariants kept here:
//! - a delivery has an entry in `due` exactly while it is not final (or a manual retry
//!   of an ended one is pending), keyed by its subscription and `next_attempt_ms`;
//! - pausing, resuming and deleting a subscription write only the subscription: its
//!   deliveries stay in `due`, the dispatcher reads only ACTIVE subscriptions' entries,
//!   and the sweeper (`sweep.rs`) expires or cancels the rest in bounded steps;
//! - `hookd.delivery.failed` is never emitted for a delivery of a `hookd.*` event, so
//!   operational events cannot feed themselves.

use bytes::Bytes;
use redb::ReadableTable;

use super::tables::Tables;
use super::writer::{Answer, Command, Reply};
use crate::ids::{DeliveryId, EventId, SubscriptionId, uuid_v7};
use crate::payload;
use crate::store::codec::{decode, encode};
use crate::store::error::StoreError;
use crate::store::index::SubscriptionIndex;
use crate::store::records::{
    AttemptRequest, DeliveryHead, DeliveryRecord, DeliveryState, EntityRecord, EventRecord,
    IdempotencyRecord, SubscriptionRecord, SubscriptionStatus,
};
use crate::store::requests::{
    AttemptReport, EntityOutcome, IDEMPOTENCY_WINDOW_MS, IngestOutcome, NewEvent, PutOutcome,
    ReplayOutcome, RetryOutcome, WriterSettings,
};
use crate::store::stats::PendingStats;
use crate::store::tenancy::MAX_DEPTH;
use crate::store::{CommitReport, DueEntry, Fresh};

/// Most deliveries one replay request queues: keeps one command from holding the
/// writer (and every producer behind it) for long.
mod outcomes;
mod subscriptions;
mod sweep;
mod tenancy;

pub const MAX_REPLAY: u32 = 10_000;

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
    /// Attempt counters added up over the batch, written by `finish`.
    stats: PendingStats,
    settings: WriterSettings,
    pub(super) now: u64,
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
            stats: PendingStats::default(),
            settings,
            now,
        }
    }

    /// Writes what the batch added up and hands over what to publish after the commit.
    pub fn finish(mut self) -> Result<(Option<SubscriptionIndex>, Effects), StoreError> {
        let stats = std::mem::take(&mut self.stats);
        self.write_stats(stats)?;
        Ok((self.changed, self.effects))
    }

    /// Applies one command; its answer is sent once the batch commits. A command that
    /// fails is answered `Aborted` here, and its error rolls back the whole batch.
    pub fn apply(&mut self, command: Command) -> Result<Answer, StoreError> {
        match command {
            Command::Ingest(events, reply) => self.run(reply, |b| b.ingest(events)),
            Command::PutSubscription {
                id,
                record,
                expected_updated_ms,
                reply,
            } => self.run(reply, |b| {
                b.put_subscription(id, *record, expected_updated_ms)
            }),
            Command::DeleteSubscription(id, reply) => {
                self.run(reply, |b| b.delete_subscription(id))
            }
            Command::RecordAttempt(report, reply) => self.run(reply, |b| b.record_attempt(*report)),
            Command::Sweep(sweep, reply) => self.run(reply, |b| b.sweep(sweep)),
            Command::Retry(delivery, reply) => self.run(reply, |b| b.retry(delivery)),
            Command::Replay {
                subscription,
                since_ms,
                until_ms,
                only_failed,
                reply,
            } => self.run(reply, |b| {
                b.replay(subscription, since_ms, until_ms, only_failed)
            }),
            Command::CreateEntity { id, record, reply } => {
                self.run(reply, |b| b.create_entity(id, record))
            }
            Command::DeleteEntity(id, reply) => self.run(reply, |b| b.delete_entity(&id)),
            Command::CreateKey { id, record, reply } => self.run(reply, |b| {
                b.t.api_keys.insert(id, encode(&record)?.as_slice())?;
                b.changed_mut().keys_mut().insert(id, record);
                Ok(())
            }),
            Command::RevokeKey(id, reply) => self.run(reply, |b| {
                let existed = b.t.api_keys.remove(id)?.is_some();
                b.changed_mut().keys_mut().remove(id);
                Ok(existed)
            }),
            Command::Purge {
                before_ms,
                idempotency_before_ms,
                cursor,
                limit,
                reply,
            } => self.run(reply, |b| {
                b.purge(before_ms, idempotency_before_ms, cursor, limit)
            }),
        }
    }

    fn run<T: Send + 'static>(
        &mut self,
        reply: Reply<T>,
        apply: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Answer, StoreError> {
        match apply(self) {
            Ok(value) => Ok(Answer::new(reply, value)),
            Err(error) => {
                let _ = reply.send(Err(StoreError::Aborted));
                Err(error)
            }
        }
    }

    fn changed_mut(&mut self) -> &mut SubscriptionIndex {
        let current = self.current;
        self.changed.get_or_insert_with(|| current.clone())
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
            let deliveries = self.store_event(event.id, event.record, &targets)?;
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
                // A key reused after its window leaves its old row here; purge skips it.
                self.t
                    .idempotency_times
                    .insert((self.now, key.key_hash), ())?;
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
        // Only hookd's own (small) events come here; producers' go to `store_event`.
        self.store_event(id, record.clone(), targets)
    }

    /// `insert_event` for a record the batch owns: its body becomes the deliveries'
    /// shared payload without a copy (a producer's event may be megabytes).
    fn store_event(
        &mut self,
        id: u128,
        record: EventRecord,
        targets: &[u128],
    ) -> Result<Vec<u128>, StoreError> {
        self.t.events.insert(id, encode(&record)?.as_slice())?;
        self.t
            .event_types
            .insert((record.event_type.as_str(), id), ())?;
        let body = Bytes::from(record.body);
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
        let active = self.is_active(subscription);
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
        self.schedule(delivery, &mut record, self.now)?;
        if active {
            self.effects.fresh.push(Fresh {
                delivery,
                event,
                created_ms: self.now,
                body: body.clone(),
            });
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

    /// Writes a delivery and keeps its row in the by-state index in step.
    fn save(&mut self, delivery: u128, record: &DeliveryRecord) -> Result<(), StoreError> {
        let before = self
            .t
            .deliveries
            .insert(delivery, encode(record)?.as_slice())?
            .map(|old| decode::<DeliveryHead>(old.value()))
            .transpose()?
            .map(|old| old.state);
        if before != Some(record.state) {
            let sub = record.subscription;
            if let Some(state) = before {
                self.t
                    .subscription_states
                    .remove((sub, state.code(), delivery))?;
            }
            self.t
                .subscription_states
                .insert((sub, record.state.code(), delivery), ())?;
        }
        Ok(())
    }

    /// Removes a delivery's `due` entry, if it has one.
    fn unschedule(
        &mut self,
        delivery: u128,
        record: &mut DeliveryRecord,
    ) -> Result<(), StoreError> {
        if let Some(at) = record.next_attempt_ms.take() {
            self.t.due.remove((record.subscription, at, delivery))?;
        }
        record.parked = false;
        Ok(())
    }

    /// Puts a delivery in `due` at `at`; the dispatcher is told only while its
    /// subscription is ACTIVE (it reads the rest when the subscription is resumed).
    fn schedule(
        &mut self,
        delivery: u128,
        record: &mut DeliveryRecord,
        at: u64,
    ) -> Result<(), StoreError> {
        self.unschedule(delivery, record)?;
        record.next_attempt_ms = Some(at);
        self.t.due.insert((record.subscription, at, delivery), ())?;
        if self.is_active(record.subscription) {
            self.effects.due.push(DueEntry {
                due_ms: at,
                delivery,
                subscription: record.subscription,
            });
        }
        Ok(())
    }

    fn is_active(&self, subscription: u128) -> bool {
        self.subs()
            .get(subscription)
            .is_some_and(|s| s.status == SubscriptionStatus::Active)
    }
}
