//! Retention inside the writer: one `Purge` command removes a bounded slice of old
//! events (with their deliveries, attempts and every index row) and of old
//! idempotency records, then says where the next command continues. A slice ends after
//! `STEP_TIME` of work, so any ingest request queued behind a purge waits for one short
//! transaction only, whatever an event's fan-out.
//!
//! Invariant: an event is removed only when every one of its deliveries has ended and
//! none changed since the cutoff, so nothing still due (or recently replayed or retried)
//! ever loses its event, and the `due` table never points at a removed delivery. Purge
//! never reads or writes `due`: an ended delivery has no entry there.

use std::time::{Duration, Instant};

use redb::ReadableTable;

use super::ops::Batch;
use crate::store::codec::decode;
use crate::store::error::StoreError;
use crate::store::purge::{PurgeCursor, PurgeOutcome, Scan};
use crate::store::records::{DeliveryRecord, EventHead, IdempotencyRecord};

/// Work one purge command does before it stops, timed inside the writer's transaction.
/// Its commit adds two flushes and writes the pages it changed. Measured on the 2-core
/// development VM (release build, 100,000 events, other builds sharing the machine): a
/// step removes 290-500 events of one delivery and one attempt (7 rows each with their
/// index rows) and holds the writer 11-15 ms with its commit; at a fan-out of ten (62
/// rows an event) 20-60 events and 14-26 ms, the commit writing more scattered pages.
/// The fixed 100 events a step used before took 5 ms at a fan-out of one, 25-90 ms at ten.
const STEP_TIME: Duration = Duration::from_millis(8);

impl Batch<'_, '_> {
    pub(super) fn purge(
        &mut self,
        before_ms: u64,
        idempotency_before_ms: u64,
        cursor: PurgeCursor,
        limit: usize,
    ) -> Result<PurgeOutcome, StoreError> {
        let limit = limit.max(1);
        let until = Instant::now() + STEP_TIME;
        let mut outcome = PurgeOutcome {
            next: cursor,
            ..PurgeOutcome::default()
        };
        if cursor.events != Scan::Done {
            let end_ms = cursor
                .events_until_ms
                .map_or(before_ms, |end| end.min(before_ms));
            outcome.next.events =
                self.purge_events(before_ms, end_ms, cursor.events, limit, until, &mut outcome)?;
        }
        // The idempotency scan goes on once the events are done, in a step with time left.
        if outcome.next.events == Scan::Done
            && cursor.idempotency != Scan::Done
            && Instant::now() < until
        {
            outcome.next.idempotency = self.purge_idempotency(
                idempotency_before_ms,
                cursor.idempotency,
                limit,
                until,
                &mut outcome,
            )?;
        }
        // A full pass (the one that scans idempotency records) also drops expired
        // attempt counters, a bounded number per step.
        if cursor.idempotency != Scan::Done && Instant::now() < until {
            outcome.stats = self.purge_stats(before_ms, limit)?;
        }
        self.effects.report.events_purged += outcome.events;
        Ok(outcome)
    }

    /// Event ids are UUIDv7, so everything created before `end_ms` sorts below
    /// `end_ms << 80`: the scan never looks at a newer event. Stops after `limit` events
    /// or at `until`, whichever comes first, but never before one event. Ids are read a
    /// few at a time, so reading ahead never uses the step's time.
    fn purge_events(
        &mut self,
        before_ms: u64,
        end_ms: u64,
        from: Scan<u128>,
        limit: usize,
        until: Instant,
        outcome: &mut PurgeOutcome,
    ) -> Result<Scan<u128>, StoreError> {
        const READ_AHEAD: usize = 64;
        let mut low = match from {
            Scan::Start => 0,
            Scan::After(id) => id.saturating_add(1),
            Scan::Done => return Ok(Scan::Done),
        };
        let high = u128::from(end_ms) << 80;
        if low >= high {
            // Nothing in range (or the clock went back past where the last pass ended).
            return Ok(Scan::Done);
        }
        let mut examined = 0;
        loop {
            let ids: Vec<u128> = self
                .t
                .events
                .range(low..high)?
                .take(READ_AHEAD.min(limit - examined))
                .map(|entry| entry.map(|(key, _)| key.value()))
                .collect::<Result<_, _>>()?;
            let Some(&last) = ids.last() else {
                return Ok(Scan::Done);
            };
            for event in ids {
                self.purge_event(event, before_ms, outcome)?;
                examined += 1;
                if examined == limit || Instant::now() >= until {
                    return Ok(Scan::After(event));
                }
            }
            low = last.saturating_add(1);
        }
    }

    /// Removes one event with its deliveries, attempts and index rows, unless a delivery
    /// of it is unfinished or changed since `before_ms` (then it counts as kept).
    fn purge_event(
        &mut self,
        event: u128,
        before_ms: u64,
        outcome: &mut PurgeOutcome,
    ) -> Result<(), StoreError> {
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
            return Ok(());
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
                    self.t.attempt_requests.remove(key)?;
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
        Ok(())
    }

    /// Removes the idempotency records created before `before_ms`, oldest first, through
    /// their time index: a step reads only what it removes. A time row whose record was
    /// since replaced (the key reused after its window) goes without its record. Stops
    /// after `limit` rows or at `until`, but never before one row.
    fn purge_idempotency(
        &mut self,
        before_ms: u64,
        from: Scan<(u64, [u8; 32])>,
        limit: usize,
        until: Instant,
        outcome: &mut PurgeOutcome,
    ) -> Result<Scan<(u64, [u8; 32])>, StoreError> {
        if from == Scan::Done {
            return Ok(Scan::Done);
        }
        let mut old = Vec::new();
        let mut out_of_time = false;
        for entry in self
            .t
            .idempotency_times
            .range((0, [0; 32])..(before_ms, [0; 32]))?
            .take(limit)
        {
            if !old.is_empty() && Instant::now() >= until {
                out_of_time = true;
                break;
            }
            old.push(entry?.0.value());
        }
        let more = old.len() == limit || out_of_time;
        let last = old.last().copied();
        for (created_ms, key) in old {
            self.t.idempotency_times.remove((created_ms, key))?;
            let current = match self.t.idempotency.get(&key)? {
                Some(guard) => decode::<IdempotencyRecord>(guard.value())?.created_ms == created_ms,
                None => false,
            };
            if current {
                self.t.idempotency.remove(&key)?;
                outcome.idempotency += 1;
            }
        }
        Ok(match last {
            Some(position) if more => Scan::After(position),
            _ => Scan::Done,
        })
    }
}
