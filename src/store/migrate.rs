//! Schema set-up and migrations, run once at open before the writer starts. Version 1
//! is the first layout; a later layout adds a step here that rewrites records inside
//! one write transaction, so a half-migrated file is never committed.

use redb::{Database, ReadableTable, WriteTransaction};

use super::codec::encode;
use super::error::StoreError;
use super::records::EntityRecord;
use super::tables::{
    API_KEYS, ATTEMPTS, DELIVERIES, DUE, ENTITIES, EVENT_DELIVERIES, EVENTS, FAILING, HEALTH,
    IDEMPOTENCY, META, SUBSCRIPTION_DELIVERIES, SUBSCRIPTIONS,
};
use crate::ids::EntityId;

pub const SCHEMA_VERSION: u32 = 1;
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
        Some(_) => {}
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

/// A new file: every table exists from the start (so readers never meet a missing
/// table), and the root entity that owns everything the admin token creates.
fn create(txn: &WriteTransaction, now_ms: u64) -> Result<(), StoreError> {
    txn.open_table(EVENTS)?;
    txn.open_table(SUBSCRIPTIONS)?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(EVENT_DELIVERIES)?;
    txn.open_table(SUBSCRIPTION_DELIVERIES)?;
    txn.open_table(ATTEMPTS)?;
    txn.open_table(DUE)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(HEALTH)?;
    txn.open_table(FAILING)?;
    txn.open_table(API_KEYS)?;
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
