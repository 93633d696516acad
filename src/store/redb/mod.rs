//! The redb backend: one file. Writes go to the single writer thread (`writer.rs`,
//! group commit); reads are short read transactions run on the blocking pool. Nothing
//! outside this folder touches redb types.

mod body;
mod export;
mod import;
mod listing;
mod maintenance;
mod migrate;
mod ops;
mod purge;
mod sessions;
mod stats;
mod tables;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_copy;
#[cfg(test)]
mod tests_due;
#[cfg(test)]
mod tests_stats;
mod writer;

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::{mpsc, oneshot};

pub use export::{CHUNK, Counts, RedbSource};
pub use import::RedbTarget;
pub use maintenance::{BackupInfo, CompactReport, compact, place_backup, read_info};
pub use ops::MAX_REPLAY;

use super::codec::decode;
use super::error::StoreError;
use super::index::SubscriptionIndex;
use super::purge::{PurgeCursor, PurgeOutcome};
use super::records::{DeliveryRecord, EntityRecord, EventRecord, SubscriptionRecord};
use super::requests::{
    AttemptReport, EntityOutcome, IngestOutcome, NewEvent, PutOutcome, ReplayOutcome, RetryOutcome,
    Sweep, SweepOutcome, WriterSettings,
};
use super::space::DiskSpace;
use super::stats::{AttemptStats, StatsQuery};
use super::tenancy::{ApiKeyRecord, EntityTree, KeyIndex};
use super::{DueEntry, DueSink, Shared, StoreObserver, WindowRead, now_ms};
use tables::{API_KEYS, DELIVERIES, DUE, ENTITIES, EVENTS, SUBSCRIPTIONS};
use writer::{Command, Writer};

/// Commands that may wait for the writer: enough to fill several batches, small enough
/// that a stalled disk pushes back on producers instead of growing memory.
const WRITER_QUEUE: usize = 4096;

/// The open database, shared by the writer and the readers. The writer empties it while
/// it reopens a faulted database (a handle still held elsewhere would keep the file
/// locked); readers then get `Unavailable`.
#[derive(Clone, Default)]
pub(crate) struct DbSlot(Arc<RwLock<Option<Arc<Database>>>>);

impl DbSlot {
    fn new(db: Database) -> Self {
        Self(Arc::new(RwLock::new(Some(Arc::new(db)))))
    }

    fn guard(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Database>>> {
        match self.0.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        let slot = match self.0.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        slot.clone().ok_or(StoreError::Unavailable)
    }

    fn take(&self) -> Option<Arc<Database>> {
        self.guard().take()
    }

    fn put(&self, db: Arc<Database>) {
        *self.guard() = Some(db);
    }
}

/// A handle on the open file: the writer's queue and the database the readers use.
#[derive(Clone)]
pub(super) struct RedbStore {
    db: DbSlot,
    tx: mpsc::Sender<Command>,
    /// Console sessions and portal links (`sessions.rs`).
    memory: Arc<sessions::Memory>,
}

/// Counts the due queue without keeping the writer running (for `/metrics`).
#[derive(Clone)]
pub(super) struct DueCounter(DbSlot);

impl DueCounter {
    /// Unfinished deliveries in the due queue (a count redb keeps: no walk), or None
    /// while the database is unavailable.
    pub fn count(&self) -> Option<u64> {
        let db = self.0.get().ok()?;
        let txn = db.begin_read().ok()?;
        txn.open_table(DUE).ok()?.len().ok()
    }
}

impl RedbStore {
    pub fn due_counter(&self) -> DueCounter {
        DueCounter(self.db.clone())
    }
}

/// The `Store` methods as redb runs them (their contracts are documented there).
impl RedbStore {
    /// Opens (creating if absent) the database, runs migrations and starts the writer,
    /// which publishes into `snapshots`. Blocking.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        path: &Path,
        cache_size: usize,
        settings: WriterSettings,
        catalog: HashMap<String, String>,
        shared: Shared,
        sink: Arc<dyn DueSink>,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<(RedbStore, JoinHandle<()>), StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Open(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            })?;
        }
        let db = Database::builder()
            .set_cache_size(cache_size)
            .create(path)?;
        migrate::run(&db, now_ms())?;
        shared.snapshots.publish(load_index(&db, catalog)?);
        let db = DbSlot::new(db);
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = Writer {
            slot: db.clone(),
            path: path.to_owned(),
            cache_size,
            space: DiskSpace::new(path, settings.min_free),
            health: shared.health.clone(),
            rx,
            snapshots: shared.snapshots.clone(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            sink,
            observer,
            commits: shared.commits.clone(),
            settings,
        };
        let handle = std::thread::Builder::new()
            .name("hookd-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| {
                StoreError::Open(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            })?;
        let memory = Arc::default();
        Ok((RedbStore { db, tx, memory }, handle))
    }

    /// Sends a command to the writer and waits for its answer (after the commit).
    async fn command<T>(
        &self,
        command: impl FnOnce(writer::Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(command(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.get()?;
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await?
    }

    pub async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<IngestOutcome>, StoreError> {
        self.command(|reply| Command::Ingest(events, reply)).await
    }

    pub async fn put_subscription(
        &self,
        id: u128,
        record: SubscriptionRecord,
        expected_updated_ms: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        self.command(|reply| Command::PutSubscription {
            id,
            record: Box::new(record),
            expected_updated_ms,
            reply,
        })
        .await
    }

    pub async fn delete_subscription(&self, id: u128) -> Result<bool, StoreError> {
        self.command(|reply| Command::DeleteSubscription(id, reply))
            .await
    }

    pub async fn record_attempt(&self, report: AttemptReport) -> Result<(), StoreError> {
        self.command(|reply| Command::RecordAttempt(Box::new(report), reply))
            .await
    }

    /// One bounded step of cancelling a deleted subscription's deliveries or expiring a
    /// paused one's (`ops/sweep.rs`).
    pub async fn sweep(&self, sweep: Sweep) -> Result<SweepOutcome, StoreError> {
        self.command(|reply| Command::Sweep(sweep, reply)).await
    }

    pub async fn retry(&self, delivery: u128) -> Result<RetryOutcome, StoreError> {
        self.command(|reply| Command::Retry(delivery, reply)).await
    }

    pub async fn replay(
        &self,
        subscription: u128,
        since_ms: u64,
        until_ms: u64,
        only_failed: bool,
    ) -> Result<ReplayOutcome, StoreError> {
        self.command(|reply| Command::Replay {
            subscription,
            since_ms,
            until_ms,
            only_failed,
            reply,
        })
        .await
    }

    pub async fn purge(
        &self,
        before_ms: u64,
        idempotency_before_ms: u64,
        cursor: PurgeCursor,
        limit: usize,
    ) -> Result<PurgeOutcome, StoreError> {
        self.command(|reply| Command::Purge {
            before_ms,
            idempotency_before_ms,
            cursor,
            limit,
            reply,
        })
        .await
    }

    /// Attempt counters over a range of minutes or hours (at most `stats::MAX_PERIODS`),
    /// summed per period and per subscription, for the subscriptions `visible` accepts
    /// (the caller's subtree). Reads a row per subscription and period with attempts.
    pub async fn attempt_stats(
        &self,
        query: StatsQuery,
        visible: impl Fn(u128) -> bool + Send + 'static,
    ) -> Result<AttemptStats, StoreError> {
        self.read(move |txn| stats::read(txn, query, &visible))
            .await
    }

    /// Copies every table, as of one read transaction, into a new database file at
    /// `dest` (which must not exist). Blocking work runs off the async threads.
    pub async fn backup(&self, dest: std::path::PathBuf) -> Result<BackupInfo, StoreError> {
        let db = self.db.get()?;
        tokio::task::spawn_blocking(move || maintenance::backup(&db, &dest)).await?
    }

    pub async fn event(&self, id: u128) -> Result<Option<EventRecord>, StoreError> {
        self.read(move |txn| {
            txn.open_table(EVENTS)?
                .get(id)?
                .map(|g| decode(g.value()))
                .transpose()
        })
        .await
    }

    pub async fn delivery(&self, id: u128) -> Result<Option<DeliveryRecord>, StoreError> {
        self.read(move |txn| {
            txn.open_table(DELIVERIES)?
                .get(id)?
                .map(|g| decode(g.value()))
                .transpose()
        })
        .await
    }

    /// For each window asked, the subscription's first `limit` due entries after the
    /// key given (or from its start), in one read transaction: how the dispatcher fills its
    /// bounded in-memory window of a subscription's work.
    pub async fn due_windows(
        &self,
        asked: Vec<WindowRead>,
    ) -> Result<Vec<Vec<DueEntry>>, StoreError> {
        self.read(move |txn| {
            let due = txn.open_table(DUE)?;
            let mut out = Vec::with_capacity(asked.len());
            for WindowRead {
                subscription,
                after,
                limit,
            } in asked
            {
                let low = match after {
                    Some((at, delivery)) => Bound::Excluded((subscription, at, delivery)),
                    None => Bound::Included((subscription, 0, 0)),
                };
                let high = Bound::Included((subscription, u64::MAX, u128::MAX));
                let mut window = Vec::new();
                for entry in due.range::<(u128, u64, u128)>((low, high))?.take(limit) {
                    let (_, due_ms, delivery) = entry?.0.value();
                    window.push(DueEntry {
                        due_ms,
                        delivery,
                        subscription,
                    });
                }
                out.push(window);
            }
            Ok(out)
        })
        .await
    }

    /// Every subscription with entries in the due queue, one seek each (not a walk of
    /// the entries): how the sweeper finds a deleted subscription's leftovers at start.
    pub async fn due_subscriptions(&self) -> Result<Vec<u128>, StoreError> {
        self.read(|txn| {
            let due = txn.open_table(DUE)?;
            let mut found = Vec::new();
            let mut from = 0u128;
            loop {
                let next = due.range((from, 0, 0)..)?.next().transpose()?;
                let Some((key, _)) = next else {
                    return Ok(found);
                };
                let subscription = key.value().0;
                found.push(subscription);
                match subscription.checked_add(1) {
                    Some(after) => from = after,
                    None => return Ok(found),
                }
            }
        })
        .await
    }

    pub async fn create_entity(
        &self,
        id: String,
        record: EntityRecord,
    ) -> Result<EntityOutcome, StoreError> {
        self.command(|reply| Command::CreateEntity { id, record, reply })
            .await
    }

    pub async fn delete_entity(&self, id: String) -> Result<EntityOutcome, StoreError> {
        self.command(|reply| Command::DeleteEntity(id, reply)).await
    }

    pub async fn create_key(&self, id: u128, record: ApiKeyRecord) -> Result<(), StoreError> {
        self.command(|reply| Command::CreateKey { id, record, reply })
            .await
    }

    pub async fn revoke_key(&self, id: u128) -> Result<bool, StoreError> {
        self.command(|reply| Command::RevokeKey(id, reply)).await
    }
}

fn load_index(
    db: &Database,
    catalog: std::collections::HashMap<String, String>,
) -> Result<SubscriptionIndex, StoreError> {
    let txn = db.begin_read()?;
    let mut records = Vec::new();
    for entry in txn.open_table(SUBSCRIPTIONS)?.iter()? {
        let (key, value) = entry?;
        records.push((key.value(), decode::<SubscriptionRecord>(value.value())?));
    }
    let mut entities = EntityTree::default();
    for entry in txn.open_table(ENTITIES)?.iter()? {
        let (key, value) = entry?;
        entities.insert(key.value().to_owned(), decode(value.value())?);
    }
    let mut keys = KeyIndex::default();
    for entry in txn.open_table(API_KEYS)?.iter()? {
        let (key, value) = entry?;
        keys.insert(key.value(), decode::<ApiKeyRecord>(value.value())?);
    }
    Ok(SubscriptionIndex::from_records(records).with_tenancy(entities, keys, catalog))
}
