//! Schema set-up and migrations, run once at open before the writer starts. Each step
//! rewrites records inside the one write transaction that also records the new version,
//! so a half-migrated file is never committed.
//!
//! - 1 -> 2: the due queue is keyed by subscription first (`due_v2`), and a paused
//!   subscription's deliveries keep their place in it instead of being parked under
//!   their expiry time: a parked delivery becomes due at the migration. Two indexes
//!   are built for filtered lists: events by type, a subscription's deliveries by state.
//! - 2 -> 3: attempt counters per subscription and period (`attempt_stats_v1`), empty:
//!   they count from the upgrade on; idempotency records indexed by time
//!   (`idempotency_times_v1`), so retention reads only the expired ones; attempts'
//!   request headers (`attempt_requests_v1`), empty: recorded from the upgrade on.

use redb::{Database, Key, ReadableTable, TableDefinition, Value, WriteTransaction};

use super::tables::{
    self, ATTEMPT_REQUESTS, ATTEMPT_STATS, DELIVERIES, DUE, DUE_V1, ENTITIES, EVENT_TYPES, EVENTS,
    FAILING, IDEMPOTENCY, IDEMPOTENCY_TIMES, META, SUBSCRIPTION_STATES,
};
use crate::ids::EntityId;
use crate::store::codec::{decode, encode};
use crate::store::error::StoreError;
use crate::store::records::{DeliveryRecord, EntityRecord, EventHead, IdempotencyRecord};

pub const SCHEMA_VERSION: u32 = 3;
pub(super) const VERSION_KEY: &str = "schema_version";

pub fn run(db: &Database, now_ms: u64) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    let found = {
        let meta = txn.open_table(META)?;
        meta.get(VERSION_KEY)?.map(|g| decode_version(g.value()))
    };
    match found {
        Some(version) if version > SCHEMA_VERSION => {
            return Err(StoreError::SchemaTooNew {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        Some(SCHEMA_VERSION) => {}
        Some(version) => {
            if version < 2 {
                to_v2(&txn, now_ms)?;
            }
            to_v3(&txn)?;
            txn.open_table(META)?
                .insert(VERSION_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())?;
        }
        None => create(&txn, now_ms)?,
    }
    txn.commit()?;
    Ok(())
}

/// The stored schema version: a little-endian u32.
pub(super) fn decode_version(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    let n = bytes.len().min(4);
    word[..n].copy_from_slice(&bytes[..n]);
    u32::from_le_bytes(word)
}

/// Schema 1 -> 2: the due queue re-keyed by subscription; parked deliveries unparked.
fn to_v2(txn: &WriteTransaction, now_ms: u64) -> Result<(), StoreError> {
    let mut due = txn.open_table(DUE)?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    {
        let old = txn.open_table(DUE_V1)?;
        for entry in old.iter()? {
            let (key, value) = entry?;
            let (mut at, delivery) = key.value();
            let subscription = value.value();
            let stored = deliveries.get(delivery)?.map(|g| g.value().to_vec());
            if let Some(bytes) = stored {
                let mut record: DeliveryRecord = decode(&bytes)?;
                if record.parked {
                    record.parked = false;
                    at = now_ms;
                    record.next_attempt_ms = Some(at);
                    deliveries.insert(delivery, encode(&record)?.as_slice())?;
                }
            }
            due.insert((subscription, at, delivery), ())?;
        }
    }
    txn.delete_table(DUE_V1)?;
    let mut states = txn.open_table(SUBSCRIPTION_STATES)?;
    for entry in deliveries.iter()? {
        let (key, value) = entry?;
        let record: DeliveryRecord = decode(value.value())?;
        states.insert((record.subscription, record.state.code(), key.value()), ())?;
    }
    let mut types = txn.open_table(EVENT_TYPES)?;
    for entry in txn.open_table(EVENTS)?.iter()? {
        let (key, value) = entry?;
        let head: EventHead = decode(value.value())?;
        types.insert((head.event_type.as_str(), key.value()), ())?;
    }
    // Made after schema 1 was first written: files from then lack it.
    txn.open_table(FAILING)?;
    txn.open_table(META)?
        .insert(VERSION_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())?;
    Ok(())
}

/// Schema 2 -> 3: the attempt counters, and the idempotency records' time index.
fn to_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ATTEMPT_STATS)?;
    txn.open_table(ATTEMPT_REQUESTS)?;
    let mut times = txn.open_table(IDEMPOTENCY_TIMES)?;
    for entry in txn.open_table(IDEMPOTENCY)?.iter()? {
        let (key, value) = entry?;
        let record: IdempotencyRecord = decode(value.value())?;
        times.insert((record.created_ms, *key.value()), ())?;
    }
    Ok(())
}

/// A new file: every table exists from the start (so readers never meet a missing
/// table), and the root entity that owns everything the admin token creates.
fn create(txn: &WriteTransaction, now_ms: u64) -> Result<(), StoreError> {
    tables::visit_all(&mut Create(txn))?;
    let root = EntityRecord {
        name: "root".into(),
        parent: None,
        created_ms: now_ms,
    };
    txn.open_table(ENTITIES)?
        .insert(EntityId::ROOT, encode(&root)?.as_slice())?;
    txn.open_table(META)?
        .insert(VERSION_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())?;
    Ok(())
}

/// Creates each table it visits (opening a table in a write transaction creates it).
struct Create<'a>(&'a WriteTransaction);

impl tables::Visit for Create<'_> {
    fn visit<K: Key + 'static, V: Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError> {
        self.0.open_table(table)?;
        Ok(())
    }
}
