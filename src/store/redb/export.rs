//! Reading a whole redb file, offline, a bounded chunk at a time: the source side of
//! `hookd store copy`. Each chunk is its own read transaction resuming after the last
//! key of the one before; the file is opened exclusively (a running hookd holds it, and
//! is named as the reason), so nothing changes between chunks.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::maintenance::open_offline;
use super::migrate;
use super::tables::{
    API_KEYS, ATTEMPT_REQUESTS, ATTEMPT_STATS, ATTEMPTS, DELIVERIES, ENTITIES, EVENTS, FAILING,
    HEALTH, IDEMPOTENCY, SUBSCRIPTIONS,
};
use crate::store::codec::decode;
use crate::store::error::StoreError;
use crate::store::records::{DeliveryRecord, EntityRecord, EventRecord, IdempotencyRecord};
use crate::store::stats::AttemptCounters;
use crate::store::tenancy::ApiKeyRecord;

/// Rows per chunk: bounds what one step holds in memory (events carry their bodies).
pub const CHUNK: usize = 1_000;

/// An attempt as stored: its key, its record's bytes and its request headers' bytes.
pub type AttemptRow = ((u128, u32), Vec<u8>, Option<Vec<u8>>);

/// A subscription's latest success and the start of its failing streak.
pub type HealthRow = (u128, Option<u64>, Option<u64>);
/// An attempt counter row: (scale, period, subscription) and its counters.
pub type StatsRow = ((u8, u32, u128), AttemptCounters);

/// How many rows each kind of record has in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub entities: u64,
    pub subscriptions: u64,
    pub api_keys: u64,
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub idempotency: u64,
    pub attempt_stats: u64,
}

impl Counts {
    /// A store with nothing but the root entity a new one is made with.
    pub fn root_only() -> Counts {
        Counts {
            entities: 1,
            ..Counts::default()
        }
    }
}

/// How many rows each kind of record has in `db`.
pub(super) fn counts(db: &Database) -> Result<Counts, StoreError> {
    let txn = db.begin_read()?;
    Ok(Counts {
        entities: txn.open_table(ENTITIES)?.len()?,
        subscriptions: txn.open_table(SUBSCRIPTIONS)?.len()?,
        api_keys: txn.open_table(API_KEYS)?.len()?,
        events: txn.open_table(EVENTS)?.len()?,
        deliveries: txn.open_table(DELIVERIES)?.len()?,
        attempts: txn.open_table(ATTEMPTS)?.len()?,
        idempotency: txn.open_table(IDEMPOTENCY)?.len()?,
        attempt_stats: txn.open_table(ATTEMPT_STATS)?.len()?,
    })
}

pub struct RedbSource {
    db: Database,
}

impl RedbSource {
    /// Opens the file at `path` exclusively, migrating it to this build's schema first
    /// (as `hookd serve` would).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = open_offline(path)?;
        migrate::run(&db, crate::store::now_ms())?;
        Ok(Self { db })
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        counts(&self.db)
    }

    /// Every entity, parents before their children.
    pub fn entities(&self) -> Result<Vec<(String, EntityRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut all = Vec::new();
        for entry in txn.open_table(ENTITIES)?.iter()? {
            let (key, value) = entry?;
            all.push((
                key.value().to_owned(),
                decode::<EntityRecord>(value.value())?,
            ));
        }
        let mut ordered: Vec<(String, EntityRecord)> = Vec::with_capacity(all.len());
        while !all.is_empty() {
            let before = all.len();
            let (ready, waiting): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, e)| {
                e.parent
                    .as_deref()
                    .is_none_or(|p| ordered.iter().any(|(id, _)| id == p))
            });
            ordered.extend(ready);
            all = waiting;
            if all.len() == before {
                // Orphans (their parent is gone): kept, after everything else.
                ordered.append(&mut all);
            }
        }
        Ok(ordered)
    }

    /// Subscriptions: id and the stored record's bytes (secrets stay sealed).
    pub fn subscriptions(&self) -> Result<Vec<(u128, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for entry in txn.open_table(SUBSCRIPTIONS)?.iter()? {
            let (key, value) = entry?;
            out.push((key.value(), value.value().to_vec()));
        }
        Ok(out)
    }

    /// Per subscription: its latest success and the start of its failing streak.
    pub fn health(&self) -> Result<Vec<HealthRow>, StoreError> {
        let txn = self.db.begin_read()?;
        let health = txn.open_table(HEALTH)?;
        let failing = txn.open_table(FAILING)?;
        let mut ids: Vec<u128> = Vec::new();
        for entry in health.iter()?.chain(failing.iter()?) {
            ids.push(entry?.0.value());
        }
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let ok = health.get(id)?.map(|g| g.value());
                let since = failing.get(id)?.map(|g| g.value());
                Ok((id, ok, since))
            })
            .collect()
    }

    pub fn api_keys(&self) -> Result<Vec<(u128, Vec<u8>, ApiKeyRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for entry in txn.open_table(API_KEYS)?.iter()? {
            let (key, value) = entry?;
            let record = decode::<ApiKeyRecord>(value.value())?;
            out.push((key.value(), value.value().to_vec(), record));
        }
        Ok(out)
    }

    pub fn events(&self, after: Option<u128>) -> Result<Vec<(u128, EventRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let range = match after {
            Some(key) => {
                table.range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?
            }
            None => table.range::<u128>(..)?,
        };
        let mut out = Vec::new();
        for entry in range.take(CHUNK) {
            let (key, value) = entry?;
            out.push((key.value(), decode(value.value())?));
        }
        Ok(out)
    }

    pub fn deliveries(
        &self,
        after: Option<u128>,
    ) -> Result<Vec<(u128, DeliveryRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DELIVERIES)?;
        let range = match after {
            Some(key) => {
                table.range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?
            }
            None => table.range::<u128>(..)?,
        };
        let mut out = Vec::new();
        for entry in range.take(CHUNK) {
            let (key, value) = entry?;
            out.push((key.value(), decode(value.value())?));
        }
        Ok(out)
    }

    pub fn attempts(&self, after: Option<(u128, u32)>) -> Result<Vec<AttemptRow>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ATTEMPTS)?;
        let requests = txn.open_table(ATTEMPT_REQUESTS)?;
        let range = match after {
            Some(key) => {
                table.range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?
            }
            None => table.range::<(u128, u32)>(..)?,
        };
        let mut out = Vec::new();
        for entry in range.take(CHUNK) {
            let (key, value) = entry?;
            let key = key.value();
            let request = requests.get(key)?.map(|g| g.value().to_vec());
            out.push((key, value.value().to_vec(), request));
        }
        Ok(out)
    }

    pub fn idempotency(
        &self,
        after: Option<[u8; 32]>,
    ) -> Result<Vec<([u8; 32], IdempotencyRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IDEMPOTENCY)?;
        let range = match &after {
            Some(key) => table
                .range::<&[u8; 32]>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?,
            None => table.range::<&[u8; 32]>(..)?,
        };
        let mut out = Vec::new();
        for entry in range.take(CHUNK) {
            let (key, value) = entry?;
            out.push((*key.value(), decode(value.value())?));
        }
        Ok(out)
    }

    pub fn attempt_stats(
        &self,
        after: Option<(u8, u32, u128)>,
    ) -> Result<Vec<StatsRow>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ATTEMPT_STATS)?;
        let range = match after {
            Some(key) => {
                table.range((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?
            }
            None => table.range::<(u8, u32, u128)>(..)?,
        };
        let mut out = Vec::new();
        for entry in range.take(CHUNK) {
            let (key, value) = entry?;
            out.push((key.value(), AttemptCounters::decode(value.value())?));
        }
        Ok(out)
    }
}
