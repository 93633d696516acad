//! Retention inside the writer: one `Purge` command removes a bounded slice of old
//! events (with their deliveries, attempts and every index row) and of old
//! idempotency records, then says where the next command continues. Small slices keep
//! any ingest request queued behind a purge waiting for one short transaction only.
//!
//! Invariant: an event is removed only when every one of its deliveries has ended and
//! none changed since the cutoff, so nothing still due (or recently replayed or retried)
//! ever loses its event, and the `due` table never points at a removed delivery.

use redb::ReadableTable;

use super::codec::decode;
use super::error::StoreError;
use super::ops::Batch;
use super::records::{DeliveryRecord, EventHead, IdempotencyRecord};

/// Where a scan stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scan<K> {
    #[default]
    Start,
    /// Continue with the first key after this one.
    After(K),
    Done,
}

/// Where a purge pass stands in each of its two scans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCursor {
    pub events: Scan<u128>,
    pub idempotency: Scan<[u8; 32]>,
}

impl PurgeCursor {
    pub fn is_done(&self) -> bool {
        self.events == Scan::Done && self.idempotency == Scan::Done
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub idempotency: u64,
    /// Old events kept because a delivery of theirs is unfinished or recently changed.
    pub kept: u64,
    /// Where the next command continues; `is_done()` when the pass is complete.
    pub next: PurgeCursor,
}

impl Batch<'_, '_> {
    pub(super) fn purge(
        &mut self,
        before_ms: u64,
        idempotency_before_ms: u64,
        cursor: PurgeCursor,
        limit: usize,
    ) -> Result<PurgeOutcome, StoreError> {
        let limit = limit.max(1);
        let mut outcome = PurgeOutcome {
            next: cursor,
            ..PurgeOutcome::default()
        };
        if cursor.events != Scan::Done {
            outcome.next.events =
                self.purge_events(before_ms, cursor.events, limit, &mut outcome)?;
        }
        if cursor.idempotency != Scan::Done {
            outcome.next.idempotency = self.purge_idempotency(
                idempotency_before_ms,
                cursor.idempotency,
                limit,
                &mut outcome,
            )?;
        }
        self.effects.report.events_purged += outcome.events;
        Ok(outcome)
    }

    /// Event ids are UUIDv7, so everything created before `before_ms` sorts below
    /// `before_ms << 80`: the scan never looks at a newer event.
    fn purge_events(
        &mut self,
        before_ms: u64,
        from: Scan<u128>,
        limit: usize,
        outcome: &mut PurgeOutcome,
    ) -> Result<Scan<u128>, StoreError> {
        let low = match from {
            Scan::Start => 0,
            Scan::After(id) => id.saturating_add(1),
            Scan::Done => return Ok(Scan::Done),
        };
        let high = u128::from(before_ms) << 80;
        let ids: Vec<u128> = self
            .t
            .events
            .range(low..high)?
            .take(limit)
            .map(|entry| entry.map(|(key, _)| key.value()))
            .collect::<Result<_, _>>()?;
        for &event in &ids {
            let mut deliveries = Vec::new();
            for entry in self
                .t
                .event_deliveries
                .range((event, 0)..=(event, u128::MAX))?
            {
                let delivery = entry?.0.value().1;
                let record = self
                    .t
                    .deliveries
                    .get(delivery)?
                    .map(|g| decode::<DeliveryRecord>(g.value()))
                    .transpose()?;
                deliveries.push((delivery, record));
            }
            let busy = deliveries.iter().any(|(_, record)| {
                record
                    .as_ref()
                    .is_some_and(|r| !r.state.is_final() || r.updated_ms >= before_ms)
            });
            if busy {
                outcome.kept += 1;
                continue;
            }
            for (delivery, record) in deliveries {
                if let Some(record) = record {
                    let attempts: Vec<(u128, u32)> = self
                        .t
                        .attempts
                        .range((delivery, 0)..=(delivery, u32::MAX))?
                        .map(|entry| entry.map(|(key, _)| key.value()))
                        .collect::<Result<_, _>>()?;
                    for key in attempts {
                        self.t.attempts.remove(key)?;
                        outcome.attempts += 1;
                    }
                    self.t
                        .subscription_deliveries
                        .remove((record.subscription, delivery))?;
                    self.t.subscription_states.remove((
                        record.subscription,
                        record.state.code(),
                        delivery,
                    ))?;
                    self.t.deliveries.remove(delivery)?;
                    outcome.deliveries += 1;
                }
                self.t.event_deliveries.remove((event, delivery))?;
            }
            if let Some(guard) = self.t.events.remove(event)? {
                let head: EventHead = decode(guard.value())?;
                drop(guard);
                self.t
                    .event_types
                    .remove((head.event_type.as_str(), event))?;
            }
            outcome.events += 1;
        }
        Ok(match ids.last() {
            Some(&last) if ids.len() == limit => Scan::After(last),
            _ => Scan::Done,
        })
    }

    /// Idempotency records are keyed by hash, so this scan walks the whole table in
    /// slices and removes what is past its window.
    fn purge_idempotency(
        &mut self,
        before_ms: u64,
        from: Scan<[u8; 32]>,
        limit: usize,
        outcome: &mut PurgeOutcome,
    ) -> Result<Scan<[u8; 32]>, StoreError> {
        use std::ops::Bound;
        let lower = match &from {
            Scan::Start => Bound::Unbounded,
            Scan::After(key) => Bound::Excluded(key),
            Scan::Done => return Ok(Scan::Done),
        };
        let mut seen = 0;
        let mut last = None;
        let mut old = Vec::new();
        for entry in self
            .t
            .idempotency
            .range::<&[u8; 32]>((lower, Bound::Unbounded))?
            .take(limit)
        {
            let (key, value) = entry?;
            let key = *key.value();
            seen += 1;
            last = Some(key);
            if decode::<IdempotencyRecord>(value.value())?.created_ms < before_ms {
                old.push(key);
            }
        }
        for key in &old {
            self.t.idempotency.remove(key)?;
            outcome.idempotency += 1;
        }
        Ok(match last {
            Some(key) if seen == limit => Scan::After(key),
            _ => Scan::Done,
        })
    }
}
