//! Writing a whole redb file, offline, from rows another backend read: the target side
//! of `hookd store copy` from PostgreSQL. The copy goes into a new file beside the
//! target (`<path>.copying`), a chunk per write transaction, with every index the
//! writer keeps built from the rows (an event's deliveries, a subscription's, events by
//! type, deliveries by state, the due queue, idempotency records by time). Only once
//! every chunk is in is it renamed over `path`, so a copy that fails leaves the target as
//! it was and can simply be run again.

use std::path::{Path, PathBuf};

use redb::{Database, Durability};

use super::export::{AttemptRow, Counts, HealthRow, StatsRow, counts};
use super::maintenance::{COPY_CACHE, adopt, io, open_offline};
use super::migrate;
use super::tables::Tables;
use crate::store::codec::encode;
use crate::store::error::StoreError;
use crate::store::records::{DeliveryRecord, EntityRecord, EventRecord, IdempotencyRecord};

pub struct RedbTarget {
    /// The copy (None once `finish` has closed it).
    db: Option<Database>,
    /// Where the copy is written, until `finish` renames it to `path`; removed if the
    /// copy ends any other way.
    partial: PathBuf,
    path: PathBuf,
    /// The file the copy replaces, held open until then: no hookd can start on it
    /// meanwhile.
    lock: Option<Database>,
}

impl RedbTarget {
    /// Starts a copy into `path`, which must hold no hookd data: absent, or a file
    /// with nothing but the root entity (as `hookd init` or a first start leaves it).
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let lock = if path.exists() {
            let existing = open_offline(path)?;
            migrate::run(&existing, crate::store::now_ms())?;
            let found = counts(&existing)?;
            if found != Counts::root_only() {
                return Err(StoreError::TargetNotEmpty(format!("{found:?}")));
            }
            Some(existing)
        } else {
            None
        };
        let folder = crate::store::folder_of(path);
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let mut name = path.as_os_str().to_os_string();
        name.push(".copying");
        let partial = PathBuf::from(name);
        // What a copy that failed before left behind.
        match std::fs::remove_file(&partial) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(&partial)(error));
            }
            _ => {}
        }
        let db = Database::builder()
            .set_cache_size(COPY_CACHE)
            .create(&partial)?;
        let target = Self {
            db: Some(db),
            partial,
            path: path.to_owned(),
            lock,
        };
        migrate::run(target.db()?, crate::store::now_ms())?;
        Ok(target)
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or(StoreError::WriterGone)
    }

    /// Writes one chunk of rows in one transaction, without fsync (`finish` makes them
    /// all durable at once).
    fn write(
        &self,
        rows: impl FnOnce(&mut Tables<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db()?.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut tables = Tables::open(&txn)?;
            rows(&mut tables)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Entities; the root's row replaces the one the new file was made with.
    pub fn entities(&self, rows: &[(String, EntityRecord)]) -> Result<(), StoreError> {
        self.write(|t| {
            for (id, entity) in rows {
                t.entities.insert(id.as_str(), encode(entity)?.as_slice())?;
            }
            Ok(())
        })
    }

    /// Subscriptions as their stored bytes (secrets stay sealed).
    pub fn subscriptions(&self, rows: &[(u128, Vec<u8>)]) -> Result<(), StoreError> {
        self.write(|t| {
            for (id, record) in rows {
                t.subscriptions.insert(*id, record.as_slice())?;
            }
            Ok(())
        })
    }

    pub fn health(&self, rows: &[HealthRow]) -> Result<(), StoreError> {
        self.write(|t| {
            for &(id, ok, failing) in rows {
                if let Some(ok) = ok {
                    t.health.insert(id, ok)?;
                }
                if let Some(since) = failing {
                    t.failing.insert(id, since)?;
                }
            }
            Ok(())
        })
    }

    /// API keys as their stored bytes (only the key's SHA-256 is in them).
    pub fn api_keys(&self, rows: &[(u128, Vec<u8>)]) -> Result<(), StoreError> {
        self.write(|t| {
            for (id, record) in rows {
                t.api_keys.insert(*id, record.as_slice())?;
            }
            Ok(())
        })
    }

    pub fn events(&self, rows: &[(u128, EventRecord)]) -> Result<(), StoreError> {
        self.write(|t| {
            for (id, event) in rows {
                t.events.insert(*id, encode(event)?.as_slice())?;
                t.event_types.insert((event.event_type.as_str(), *id), ())?;
            }
            Ok(())
        })
    }

    /// Deliveries with their indexes; one with a next attempt is in the due queue.
    pub fn deliveries(&self, rows: &[(u128, DeliveryRecord)]) -> Result<(), StoreError> {
        self.write(|t| {
            for (id, d) in rows {
                t.deliveries.insert(*id, encode(d)?.as_slice())?;
                t.event_deliveries.insert((d.event, *id), ())?;
                t.subscription_deliveries
                    .insert((d.subscription, *id), ())?;
                t.subscription_states
                    .insert((d.subscription, d.state.code(), *id), ())?;
                if let Some(at) = d.next_attempt_ms {
                    t.due.insert((d.subscription, at, *id), ())?;
                }
            }
            Ok(())
        })
    }

    pub fn attempts(&self, rows: &[AttemptRow]) -> Result<(), StoreError> {
        self.write(|t| {
            for (key, record, request) in rows {
                t.attempts.insert(*key, record.as_slice())?;
                if let Some(request) = request {
                    t.attempt_requests.insert(*key, request.as_slice())?;
                }
            }
            Ok(())
        })
    }

    pub fn attempt_stats(&self, rows: &[StatsRow]) -> Result<(), StoreError> {
        self.write(|t| {
            for (key, counters) in rows {
                t.attempt_stats.insert(*key, counters.encode().as_slice())?;
            }
            Ok(())
        })
    }

    pub fn idempotency(&self, rows: &[([u8; 32], IdempotencyRecord)]) -> Result<(), StoreError> {
        self.write(|t| {
            for (key, record) in rows {
                t.idempotency.insert(key, encode(record)?.as_slice())?;
                t.idempotency_times.insert((record.created_ms, *key), ())?;
            }
            Ok(())
        })
    }

    /// Makes the copy durable and counts what it holds; if that is `read`, the copy
    /// takes the place of the file at `path` (with its owner and mode, or the folder's
    /// owner), otherwise it is removed and the target left as it was.
    pub fn finish(mut self, read: Counts) -> Result<Counts, StoreError> {
        let db = self.db.take().ok_or(StoreError::WriterGone)?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        let written = counts(&db)?;
        drop(db);
        if written != read {
            return Ok(written);
        }
        let folder = crate::store::folder_of(&self.path);
        match std::fs::metadata(&self.path) {
            Ok(old) => adopt(&self.partial, &old, true)?,
            Err(_) => {
                let owner = std::fs::metadata(&folder).map_err(io(&folder))?;
                adopt(&self.partial, &owner, false)?;
            }
        }
        std::fs::rename(&self.partial, &self.path).map_err(io(&self.path))?;
        // The rename is durable once the folder is.
        std::fs::File::open(&folder)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&folder))?;
        drop(self.lock.take());
        Ok(written)
    }
}

impl Drop for RedbTarget {
    fn drop(&mut self) {
        // Renamed already when the copy is complete; a partial copy is not kept.
        drop(self.db.take());
        let _ = std::fs::remove_file(&self.partial);
    }
}
