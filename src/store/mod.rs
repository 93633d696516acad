//! The store: one redb file behind `Store`. Writes go to the single writer thread
//! (`writer.rs`, group commit); reads are short read transactions run on the blocking
//! pool. Nothing outside this module touches redb types, so another backend can be added
//! behind the same handle.

mod body;
mod codec;
mod error;
mod index;
mod listing;
mod maintenance;
mod migrate;
mod ops;
#[allow(dead_code)] // The backend's foundations: nothing outside tests calls them yet.
mod postgres;
mod purge;
pub mod records;
mod space;
pub mod stats;
mod tables;
pub mod tenancy;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_due;
#[cfg(test)]
mod tests_stats;
mod writer;

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

pub use error::StoreError;
pub use index::SubscriptionIndex;
pub use index::{ALL_SCOPES, pattern_matches};
pub use listing::Page;
pub use maintenance::{BackupInfo, CompactReport, compact, place_backup, read_info};
pub use ops::{MAX_REPLAY, Sweep, SweepOutcome};
pub use purge::{PurgeCursor, PurgeOutcome, Scan};
pub use space::{StorageHealth, StorageState};
pub use writer::{
    AttemptReport, EntityOutcome, IDEMPOTENCY_WINDOW_MS, IdempotencyKey, IngestOutcome, NewEvent,
    NextStep, PutOutcome, ReplayOutcome, RetryOutcome, WriterSettings,
};

use codec::decode;
use records::{DeliveryRecord, EventRecord, SubscriptionRecord};
use tables::{API_KEYS, DELIVERIES, DUE, ENTITIES, EVENTS, SUBSCRIPTIONS};
use tenancy::{ApiKeyRecord, EntityTree, KeyIndex};
use writer::{Command, Op, Outcome, Writer};

/// Commands that may wait for the writer: enough to fill several batches, small enough
/// that a stalled disk pushes back on producers instead of growing memory.
const WRITER_QUEUE: usize = 4096;

/// A delivery waiting in the due queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueEntry {
    pub due_ms: u64,
    pub delivery: u128,
    pub subscription: u128,
}

/// A place in one subscription's due queue: (due time in Unix ms, delivery id).
pub type DueKey = (u64, u128);

/// A window of one subscription's due queue to read: its first `limit` entries after
/// `after` (from its start when None).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRead {
    pub subscription: u128,
    pub after: Option<DueKey>,
    pub limit: usize,
}

/// The payload of a delivery that has just been created, handed to the dispatcher with
/// its due entry so the first attempt needs no read from the store. `body` is shared by
/// every delivery of one event.
#[derive(Debug, Clone)]
pub struct Fresh {
    pub delivery: u128,
    pub event: u128,
    /// The delivery's creation: where `delivery.max_age` counts from.
    pub created_ms: u64,
    pub body: bytes::Bytes,
}

/// Told by the writer, after each commit, what became due for ACTIVE subscriptions and
/// which subscriptions changed status or went away. Implemented by the dispatcher;
/// called on the writer thread, so it must not block.
pub trait DueSink: Send + Sync {
    fn schedule(&self, entries: Vec<DueEntry>, fresh: Vec<Fresh>);
    /// Drop what is held in memory for these subscriptions (deleted, paused or
    /// resumed); a resumed one's work is read from the due queue again.
    fn forget(&self, subscriptions: &[u128]);
}

/// What one group commit did, told to the `StoreObserver` after it succeeded.
#[derive(Debug, Default, Clone)]
pub struct CommitReport {
    /// Commands applied in the batch.
    pub commands: usize,
    /// From opening the transaction to the end of the commit (fsync included).
    pub took: Duration,
    /// Producer events stored (not idempotent repeats, not hookd's own events).
    pub events_ingested: u64,
    /// Deliveries that reached each final state in this commit.
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub events_purged: u64,
}

/// Told about every successful commit, on the writer thread (so it must not block).
/// Implemented by `metrics::Metrics`; keeps the store free of any metrics library.
pub trait StoreObserver: Send + Sync {
    fn committed(&self, report: &CommitReport);
    /// The storage state changed (low disk, a failed write, recovered).
    fn storage_state(&self, state: StorageState);
}

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

/// Running totals of group commits, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: AtomicU64,
    pub commands: AtomicU64,
    pub micros: AtomicU64,
}

impl CommitStats {
    fn record(&self, batch: usize, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(batch as u64, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct Store {
    db: DbSlot,
    health: StorageHealth,
    tx: mpsc::Sender<Command>,
    index: Arc<RwLock<Arc<SubscriptionIndex>>>,
    /// Counts the snapshots published: a receiver is woken by each.
    changes: tokio::sync::watch::Receiver<u64>,
    commits: Arc<CommitStats>,
}

/// Reads the subscriptions snapshot the writer publishes.
#[derive(Clone)]
pub struct SubscriptionsView(Arc<RwLock<Arc<SubscriptionIndex>>>, DbSlot);

impl SubscriptionsView {
    pub fn current(&self) -> Arc<SubscriptionIndex> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Unfinished deliveries in the due queue (a count redb keeps: no walk), or None
    /// while the database is unavailable.
    pub fn due_count(&self) -> Option<u64> {
        let db = self.1.get().ok()?;
        let txn = db.begin_read().ok()?;
        redb::ReadableTableMetadata::len(&txn.open_table(DUE).ok()?).ok()
    }
}

/// Joins the writer thread once every `Store` handle is gone.
pub struct WriterHandle(JoinHandle<()>);

impl WriterHandle {
    /// Blocks until the writer has applied everything queued and exited.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("the store writer thread panicked");
        }
    }
}

impl Store {
    /// Opens (creating if absent) the database, runs migrations and starts the writer.
    /// Blocking: call it from `spawn_blocking` or before the runtime is busy.
    /// `catalog` maps each known event type to the scope needed to receive it.
    pub fn open(
        path: &Path,
        cache_size: usize,
        settings: WriterSettings,
        catalog: std::collections::HashMap<String, String>,
        sink: Arc<dyn DueSink>,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<(Store, WriterHandle), StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Open(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            })?;
        }
        let db = Database::builder()
            .set_cache_size(cache_size)
            .create(path)?;
        migrate::run(&db, now_ms())?;
        let index = Arc::new(RwLock::new(Arc::new(load_index(&db, catalog)?)));
        let db = DbSlot::new(db);
        let health = StorageHealth::default();
        let commits = Arc::new(CommitStats::default());
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let (published, changes) = tokio::sync::watch::channel(0);
        let writer = Writer {
            slot: db.clone(),
            path: path.to_owned(),
            cache_size,
            space: space::DiskSpace::new(path, settings.min_free),
            health: health.clone(),
            rx,
            index: index.clone(),
            published,
            runtime: tokio::runtime::Handle::try_current().ok(),
            sink,
            observer,
            commits: commits.clone(),
            settings,
        };
        let handle = std::thread::Builder::new()
            .name("hookd-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| {
                StoreError::Open(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            })?;
        Ok((
            Store {
                db,
                health,
                tx,
                index,
                changes,
                commits,
            },
            WriterHandle(handle),
        ))
    }

    pub fn commit_stats(&self) -> &CommitStats {
        &self.commits
    }

    /// Whether the store takes new events, only outcomes, or nothing now.
    pub fn health(&self) -> &StorageHealth {
        &self.health
    }

    async fn command(&self, op: Op) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command { op, reply })
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

    /// Stores events and their deliveries durably, all in one commit; answers after it.
    pub async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<IngestOutcome>, StoreError> {
        match self.command(Op::Ingest(events)).await? {
            Outcome::Ingested(outcomes) => Ok(outcomes),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    /// Creates or replaces a subscription. With `expected_updated_ms`, only if it has
    /// not changed since the caller read it. Pausing or resuming writes the subscription
    /// alone: its deliveries keep their place in the due queue.
    pub async fn put_subscription(
        &self,
        id: u128,
        record: SubscriptionRecord,
        expected_updated_ms: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        let op = Op::PutSubscription {
            id,
            record: Box::new(record),
            expected_updated_ms,
        };
        match self.command(op).await? {
            Outcome::Put(outcome) => Ok(outcome),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    /// Removes a subscription; the sweeper then cancels its unfinished deliveries in
    /// bounded steps. False if absent.
    pub async fn delete_subscription(&self, id: u128) -> Result<bool, StoreError> {
        match self.command(Op::DeleteSubscription(id)).await? {
            Outcome::Deleted(existed) => Ok(existed),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    pub async fn record_attempt(&self, report: AttemptReport) -> Result<(), StoreError> {
        self.command(Op::RecordAttempt(report)).await.map(drop)
    }

    /// One bounded step of cancelling a deleted subscription's deliveries or expiring a
    /// paused one's (`ops/sweep.rs`).
    pub async fn sweep(&self, sweep: Sweep) -> Result<SweepOutcome, StoreError> {
        match self.command(Op::Sweep(sweep)).await? {
            Outcome::Swept(outcome) => Ok(outcome),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    pub async fn retry(&self, delivery: u128) -> Result<RetryOutcome, StoreError> {
        match self.command(Op::Retry(delivery)).await? {
            Outcome::Retried(outcome) => Ok(outcome),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    pub async fn replay(
        &self,
        subscription: u128,
        since_ms: u64,
        until_ms: u64,
        only_failed: bool,
    ) -> Result<ReplayOutcome, StoreError> {
        let op = Op::Replay {
            subscription,
            since_ms,
            until_ms,
            only_failed,
        };
        match self.command(op).await? {
            Outcome::Replayed(outcome) => Ok(outcome),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    /// Removes up to `limit` events older than `before_ms` (with their deliveries,
    /// attempts and index rows, when every delivery has ended and none changed since
    /// `before_ms`) and up to `limit` idempotency records older than
    /// `idempotency_before_ms`, continuing from `cursor`. One small transaction, so
    /// ingest waits at most for one such step.
    pub async fn purge(
        &self,
        before_ms: u64,
        idempotency_before_ms: u64,
        cursor: PurgeCursor,
        limit: usize,
    ) -> Result<PurgeOutcome, StoreError> {
        let op = Op::Purge {
            before_ms,
            idempotency_before_ms,
            cursor,
            limit,
        };
        match self.command(op).await? {
            Outcome::Purged(outcome) => Ok(outcome),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    /// Attempt counters over a range of minutes or hours (at most `stats::MAX_PERIODS`),
    /// summed per period and per subscription, for the subscriptions `visible` accepts
    /// (the caller's subtree). Reads a row per subscription and period with attempts.
    pub async fn attempt_stats(
        &self,
        query: stats::StatsQuery,
        visible: impl Fn(u128) -> bool + Send + 'static,
    ) -> Result<stats::AttemptStats, StoreError> {
        self.read(move |txn| stats::read(txn, query, &visible))
            .await
    }

    /// Copies every table, as of one read transaction, into a new database file at
    /// `dest` (which must not exist). Blocking work runs off the async threads.
    pub async fn backup(&self, dest: std::path::PathBuf) -> Result<BackupInfo, StoreError> {
        let db = self.db.get()?;
        tokio::task::spawn_blocking(move || maintenance::backup(&db, &dest)).await?
    }

    /// A handle on the subscriptions snapshot that, unlike a `Store`, does not keep the
    /// writer running (for `/metrics`, which outlives the store at shutdown).
    pub fn subscriptions_view(&self) -> SubscriptionsView {
        SubscriptionsView(self.index.clone(), self.db.clone())
    }

    /// Changes each time subscriptions, keys or entities change (a new snapshot).
    pub fn snapshot_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.clone()
    }

    /// The current subscriptions snapshot (no disk read).
    pub fn subscriptions(&self) -> Arc<SubscriptionIndex> {
        match self.index.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
        record: records::EntityRecord,
    ) -> Result<EntityOutcome, StoreError> {
        match self.command(Op::CreateEntity { id, record }).await? {
            Outcome::Entity(outcome) => Ok(outcome),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    /// Refused while the entity has children, keys or subscriptions.
    pub async fn delete_entity(&self, id: String) -> Result<EntityOutcome, StoreError> {
        match self.command(Op::DeleteEntity(id)).await? {
            Outcome::Entity(outcome) => Ok(outcome),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
    }

    pub async fn create_key(&self, id: u128, record: ApiKeyRecord) -> Result<(), StoreError> {
        self.command(Op::CreateKey { id, record }).await.map(drop)
    }

    /// Revokes (deletes) a key; effective for the next request. False if absent.
    pub async fn revoke_key(&self, id: u128) -> Result<bool, StoreError> {
        match self.command(Op::RevokeKey(id)).await? {
            Outcome::Deleted(existed) => Ok(existed),
            other => Err(StoreError::UnexpectedOutcome(format!("{other:?}"))),
        }
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

/// The folder a database file is in (`.` for a bare file name).
fn folder_of(path: &Path) -> std::path::PathBuf {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => std::path::PathBuf::from("."),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
