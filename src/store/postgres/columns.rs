//! A batch's rows as columns: one array per column, the parameters of the writer's
//! multi-row statements (`unnest($1::uuid[], ...)` turns them back into rows).

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;

use super::batch::{AttemptRow, DeliveryRow, EventRow, Health};
use super::ingest::IdemRow;
use super::rows::{self, count, ms, state_code};
use super::types::Uuid;
use crate::store::records::DeliveryRecord;
use crate::store::stats::PendingStats;

/// A statement's parameters.
pub type Params<'p> = Vec<&'p (dyn ToSql + Sync)>;

#[derive(Default)]
pub struct IdemColumns<'a> {
    keys: Vec<&'a [u8]>,
    created: Vec<i64>,
    events: Vec<Uuid>,
    deliveries: Vec<i32>,
    bodies: Vec<&'a [u8]>,
}

impl<'a> IdemColumns<'a> {
    pub fn of(rows: impl Iterator<Item = (&'a [u8; 32], &'a IdemRow)>) -> Self {
        let mut columns = Self::default();
        for (key, row) in rows {
            columns.keys.push(key.as_slice());
            columns.created.push(ms(row.created_ms));
            columns.events.push(Uuid(row.event));
            columns.deliveries.push(count(row.deliveries));
            columns.bodies.push(row.body_sha256.as_slice());
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn params(&self) -> Params<'_> {
        vec![
            &self.keys,
            &self.created,
            &self.events,
            &self.deliveries,
            &self.bodies,
        ]
    }
}

#[derive(Default)]
pub struct EventColumns<'a> {
    ids: Vec<Uuid>,
    entities: Vec<&'a str>,
    types: Vec<&'a str>,
    created: Vec<i64>,
    bodies: Vec<&'a [u8]>,
}

impl<'a> EventColumns<'a> {
    pub fn of(events: &'a [EventRow]) -> Self {
        let mut columns = Self::default();
        for event in events {
            columns.ids.push(Uuid(event.id));
            columns.entities.push(&event.entity);
            columns.types.push(&event.event_type);
            columns.created.push(ms(event.created_ms));
            columns.bodies.push(&event.body);
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn params(&self) -> Params<'_> {
        vec![
            &self.ids,
            &self.entities,
            &self.types,
            &self.created,
            &self.bodies,
        ]
    }
}

#[derive(Default)]
pub struct DeliveryColumns<'a> {
    ids: Vec<Uuid>,
    events: Vec<Uuid>,
    subscriptions: Vec<Uuid>,
    states: Vec<i16>,
    attempts: Vec<i32>,
    next: Vec<Option<i64>>,
    statuses: Vec<Option<i32>>,
    errors: Vec<Option<&'a str>>,
    created: Vec<i64>,
    updated: Vec<i64>,
    parked: Vec<bool>,
    retry_once: Vec<bool>,
}

impl<'a> DeliveryColumns<'a> {
    /// The deliveries to insert (made by the batch) and to update (changed by it).
    pub fn of(deliveries: &'a BTreeMap<u128, DeliveryRow>) -> (Self, Self) {
        let (mut inserts, mut updates) = (Self::default(), Self::default());
        for (&id, row) in deliveries {
            if row.new {
                inserts.push(id, &row.record);
            } else if row.dirty {
                updates.push(id, &row.record);
            }
        }
        (inserts, updates)
    }

    fn push(&mut self, id: u128, record: &'a DeliveryRecord) {
        self.ids.push(Uuid(id));
        self.events.push(Uuid(record.event));
        self.subscriptions.push(Uuid(record.subscription));
        self.states.push(state_code(record.state));
        self.attempts.push(count(record.attempts));
        self.next.push(record.next_attempt_ms.map(ms));
        self.statuses.push(record.last_status.map(i32::from));
        self.errors.push(record.last_error.as_deref());
        self.created.push(ms(record.created_ms));
        self.updated.push(ms(record.updated_ms));
        self.parked.push(record.parked);
        self.retry_once.push(record.retry_once);
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Every column, in `deliveries`' order.
    pub fn insert_params(&self) -> Params<'_> {
        vec![
            &self.ids,
            &self.events,
            &self.subscriptions,
            &self.states,
            &self.attempts,
            &self.next,
            &self.statuses,
            &self.errors,
            &self.created,
            &self.updated,
            &self.parked,
            &self.retry_once,
        ]
    }

    /// The id and the columns an outcome or a retry changes.
    pub fn update_params(&self) -> Params<'_> {
        vec![
            &self.ids,
            &self.states,
            &self.attempts,
            &self.next,
            &self.statuses,
            &self.errors,
            &self.updated,
            &self.parked,
            &self.retry_once,
        ]
    }
}

#[derive(Default)]
pub struct AttemptColumns<'a> {
    deliveries: Vec<Uuid>,
    numbers: Vec<i32>,
    records: Vec<&'a [u8]>,
    requests: Vec<Option<&'a [u8]>>,
}

impl<'a> AttemptColumns<'a> {
    pub fn of(attempts: &'a [AttemptRow]) -> Self {
        let mut columns = Self::default();
        for attempt in attempts {
            columns.deliveries.push(Uuid(attempt.delivery));
            columns.numbers.push(count(attempt.n));
            columns.records.push(&attempt.record);
            columns.requests.push(attempt.request.as_deref());
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.deliveries.len()
    }

    pub fn params(&self) -> Params<'_> {
        vec![
            &self.deliveries,
            &self.numbers,
            &self.records,
            &self.requests,
        ]
    }
}

#[derive(Default)]
pub struct HealthColumns {
    subscriptions: Vec<Uuid>,
    last_success: Vec<Option<i64>>,
    failing_since: Vec<Option<i64>>,
}

impl HealthColumns {
    /// The rows the batch changed.
    pub fn of(health: &BTreeMap<u128, (Health, bool)>) -> Self {
        let mut columns = Self::default();
        for (&subscription, (health, changed)) in health {
            if *changed {
                columns.subscriptions.push(Uuid(subscription));
                columns.last_success.push(health.last_success_ms.map(ms));
                columns.failing_since.push(health.failing_since_ms.map(ms));
            }
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    pub fn params(&self) -> Params<'_> {
        vec![&self.subscriptions, &self.last_success, &self.failing_since]
    }
}

#[derive(Default)]
pub struct StatsColumns {
    scales: Vec<i16>,
    periods: Vec<i32>,
    subscriptions: Vec<Uuid>,
    attempts: Vec<i32>,
    succeeded: Vec<i32>,
    /// Each row's latency buckets, one row's after another.
    latency: Vec<i32>,
    width: i32,
}

impl StatsColumns {
    pub fn of(stats: &PendingStats) -> Self {
        let mut columns = Self {
            width: rows::BUCKETS as i32,
            ..Self::default()
        };
        for (&(scale, period, subscription), counters) in &stats.0 {
            columns.scales.push(i16::from(scale));
            columns
                .periods
                .push(i32::try_from(period).unwrap_or(i32::MAX));
            columns.subscriptions.push(Uuid(subscription));
            columns.attempts.push(count(counters.attempts));
            columns.succeeded.push(count(counters.succeeded));
            columns
                .latency
                .extend(rows::buckets(counters).into_iter().map(count));
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn params(&self) -> Params<'_> {
        vec![
            &self.scales,
            &self.periods,
            &self.subscriptions,
            &self.attempts,
            &self.succeeded,
            &self.latency,
            &self.width,
        ]
    }
}
