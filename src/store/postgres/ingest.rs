//! Ingest inside a batch: storing events and their deliveries, and Idempotency-Keys.
//!
//! Idempotency-Keys are claimed before the batch decides anything: the first use of
//! each key in the batch is inserted with `ON CONFLICT` (taking over an expired row),
//! and the primary key makes the claim cluster-wide: a key another node holds, or is
//! inserting in a transaction still open, is not claimed (the insert waits for that
//! transaction), and its committed row is read back, so the command answers
//! `Duplicate` or `Conflict` as it would against a key this node stored. The rows are
//! put right at the end when the batch decided otherwise (a request refused whole).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::batch::{Batch, DeliveryRow, EventRow};
use crate::ids::uuid_v7;
use crate::store::Fresh;
use crate::store::records::{DeliveryRecord, DeliveryState};
use crate::store::requests::{IdempotencyKey, IngestOutcome, NewEvent};

/// An event to store, as the writer holds it: the body shared (every delivery's
/// `Fresh` and a batch applied again use the same bytes).
pub(super) struct Incoming {
    pub id: u128,
    pub entity: String,
    pub event_type: String,
    pub created_ms: u64,
    pub body: Bytes,
    pub idempotency: Option<IdempotencyKey>,
    pub targets: Option<Vec<u128>>,
}

impl From<NewEvent> for Incoming {
    fn from(event: NewEvent) -> Self {
        Self {
            id: event.id,
            entity: event.record.entity,
            event_type: event.record.event_type,
            created_ms: event.record.created_ms,
            body: Bytes::from(event.record.body),
            idempotency: event.idempotency,
            targets: event.targets,
        }
    }
}

/// An `idempotency` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdemRow {
    pub created_ms: u64,
    pub event: u128,
    pub deliveries: u32,
    pub body_sha256: [u8; 32],
}

/// A key's SHA-256 (of entity and key) and its row.
pub(super) type KeyRow = ([u8; 32], IdemRow);

#[derive(Default)]
pub(super) struct Idempotency {
    /// The rows as the batch sees them: those found in force in the database, then
    /// those the batch wrote.
    pub seen: HashMap<[u8; 32], IdemRow>,
    /// The rows this batch claimed up front (inserted before deciding anything).
    pub claimed: HashMap<[u8; 32], IdemRow>,
    /// Keys the batch decided to store.
    pub written: HashSet<[u8; 32]>,
}

impl Idempotency {
    /// What the claims left wrong: rows to write as decided, and claimed keys that no
    /// stored event uses (its request was refused whole).
    pub fn corrections(&self) -> (Vec<KeyRow>, Vec<[u8; 32]>) {
        let mut upsert: Vec<_> = self
            .written
            .iter()
            .filter_map(|key| {
                let row = self.seen.get(key)?;
                (self.claimed.get(key) != Some(row)).then_some((*key, *row))
            })
            .collect();
        upsert.sort_unstable_by_key(|(key, _)| *key);
        let mut release: Vec<_> = self
            .claimed
            .keys()
            .filter(|key| !self.written.contains(*key))
            .copied()
            .collect();
        release.sort_unstable();
        (upsert, release)
    }
}

impl Batch<'_> {
    // ---- events and deliveries -------------------------------------------------

    /// Stores a request's events atomically: every Idempotency-Key is checked first, and
    /// if any was used with another body nothing is stored (the outcomes say which).
    pub(super) fn ingest(&mut self, events: &[Incoming]) -> Vec<IngestOutcome> {
        let seen: Vec<Option<IngestOutcome>> = events
            .iter()
            .map(|event| {
                let key = event.idempotency.as_ref()?;
                let row = self.idempotency.seen.get(&key.key_hash)?;
                Some(if row.body_sha256 == key.body_sha256 {
                    IngestOutcome::Duplicate {
                        event: row.event,
                        deliveries: row.deliveries,
                    }
                } else {
                    IngestOutcome::Conflict
                })
            })
            .collect();
        if seen.contains(&Some(IngestOutcome::Conflict)) {
            return seen
                .into_iter()
                .map(|s| {
                    s.unwrap_or(IngestOutcome::Accepted {
                        deliveries: Vec::new(),
                    })
                })
                .collect();
        }
        let mut outcomes = Vec::with_capacity(events.len());
        for (event, seen) in events.iter().zip(seen) {
            if let Some(duplicate) = seen {
                outcomes.push(duplicate);
                continue;
            }
            let targets = self.targets(event);
            let deliveries = self.store_event(
                EventRow {
                    id: event.id,
                    entity: event.entity.clone(),
                    event_type: event.event_type.clone(),
                    created_ms: event.created_ms,
                    body: event.body.clone(),
                },
                &targets,
            );
            if event.targets.is_none() {
                // A test ping is not a producer's event.
                self.effects.report.events_ingested += 1;
            }
            if let Some(key) = &event.idempotency {
                let row = IdemRow {
                    created_ms: self.now,
                    event: event.id,
                    deliveries: count(deliveries.len()),
                    body_sha256: key.body_sha256,
                };
                self.idempotency.seen.insert(key.key_hash, row);
                self.idempotency.written.insert(key.key_hash);
            }
            outcomes.push(IngestOutcome::Accepted { deliveries });
        }
        outcomes
    }

    /// Stores an event and one delivery per target, each due now.
    pub(super) fn store_event(&mut self, event: EventRow, targets: &[u128]) -> Vec<u128> {
        let deliveries = targets
            .iter()
            .map(|&subscription| self.new_delivery(event.id, subscription, &event.body))
            .collect();
        self.events.push(event);
        deliveries
    }

    pub(super) fn new_delivery(&mut self, event: u128, subscription: u128, body: &Bytes) -> u128 {
        let delivery = uuid_v7();
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
        self.schedule(delivery, &mut record, self.now);
        if self.is_active(subscription) {
            self.effects.fresh.push(Fresh {
                delivery,
                event,
                created_ms: self.now,
                body: body.clone(),
            });
        }
        self.deliveries.insert(
            delivery,
            DeliveryRow {
                record,
                new: true,
                dirty: true,
                event: None,
            },
        );
        delivery
    }
}

/// A fan-out or count as the `u32` the records keep.
pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
