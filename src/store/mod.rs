//! The store: the one boundary between hookd and its storage backend. `Store` is the
//! only handle the rest of hookd holds; behind it runs one backend, today redb (one file,
//! `redb/`). Nothing outside this module knows which backend it is or touches its types.
//!
//! What every backend shares lives here: the records (`records.rs`), their codec, the
//! delivery state machine (`lifecycle.rs`, pure functions, so the rules cannot drift
//! between backends), the requests and answers of the write side (`requests.rs`), and
//! three seams a backend fills:
//! - snapshot publishing: after a change to subscriptions, keys or entities the backend
//!   publishes a new `SubscriptionIndex` through `Snapshots`, which auth and fan-out read
//!   without a disk read and the sweeper watches;
//! - due-work notification: after each commit the backend tells the `DueSink` (the
//!   dispatcher) what became due and which subscriptions' queues to drop;
//! - maintenance: `purge` (retention), `sweep` (what pausing and deleting leave), `backup`.
//!
//! Console sessions and portal links are the store's too (`sessions.rs`), so that any
//! node serves a session and a link opens once.

mod codec;
mod error;
mod index;
#[allow(dead_code)] // Called by the several-nodes backend, which is being built.
mod lease;
mod lifecycle;
#[allow(dead_code)] // The backend's foundations: nothing outside tests calls them yet.
mod postgres;
mod purge;
pub mod records;
mod redb;
mod requests;
mod space;
pub mod stats;
pub mod tenancy;
/// The integration tests' throwaway PostgreSQL, for the store's unit tests.
#[cfg(test)]
#[path = "../../tests/common/postgres.rs"]
pub(crate) mod testdb;
#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use self::redb::{
    BackupInfo, CompactReport, Counts, MAX_REPLAY, compact, place_backup, read_info,
};
pub use error::StoreError;
pub use index::SubscriptionIndex;
pub use index::{ALL_SCOPES, pattern_matches};
pub use purge::{PurgeCursor, PurgeOutcome, Scan};
pub use requests::{
    AttemptReport, EntityOutcome, IDEMPOTENCY_WINDOW_MS, IdempotencyKey, IngestOutcome, NewEvent,
    NextStep, PutOutcome, ReplayOutcome, RetryOutcome, Sweep, SweepOutcome, WriterSettings,
};
pub use space::{StorageHealth, StorageState};

use records::{
    AttemptRecord, AttemptRequest, DeliveryRecord, DeliveryState, EntityRecord, EventRecord,
    SubscriptionRecord,
};
use tenancy::ApiKeyRecord;

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

/// One page of a newest-first listing: the items and where the next page starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<u128>,
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

/// The subscriptions, keys and entities as of the latest change: published by the
/// backend after each change it commits (or learns of), read by auth and fan-out with no
/// disk read, and watched by those that act on changes (the sweeper).
#[derive(Clone)]
pub(crate) struct Snapshots {
    current: Arc<RwLock<Arc<SubscriptionIndex>>>,
    /// Counts the snapshots published: a receiver is woken by each.
    published: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Snapshots {
    fn new() -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(SubscriptionIndex::default()))),
            published: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    pub(crate) fn current(&self) -> Arc<SubscriptionIndex> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn publish(&self, index: SubscriptionIndex) {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(index);
        drop(guard);
        self.published.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }
}

/// What the store keeps whatever its backend, handed to the backend at open.
#[derive(Clone)]
pub(crate) struct Shared {
    pub snapshots: Snapshots,
    pub health: StorageHealth,
    pub commits: Arc<CommitStats>,
}

impl Shared {
    fn new() -> Self {
        Self {
            snapshots: Snapshots::new(),
            health: StorageHealth::default(),
            commits: Arc::new(CommitStats::default()),
        }
    }
}

#[derive(Clone)]
enum Backend {
    Redb(self::redb::RedbStore),
    Postgres(postgres::PgStore),
}

/// The backend's writer: redb's thread, or PostgreSQL's task. It ends once every
/// `Store` handle is gone and what was queued is committed.
pub struct WriterHandle(Writer);

enum Writer {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>, tokio::runtime::Handle),
}

impl WriterHandle {
    /// Blocks until the writer has applied everything queued and exited (call it off
    /// the async threads).
    pub fn join(self) {
        let panicked = match self.0 {
            Writer::Thread(thread) => thread.join().is_err(),
            Writer::Task(task, runtime) => runtime.block_on(task).is_err(),
        };
        if panicked {
            tracing::error!("the store writer panicked");
        }
    }
}

/// Runs `$call` on whichever backend the store has.
macro_rules! on_backend {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Redb($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

// After `on_backend!`, which they use (a macro is visible only below its definition).
mod reads;
pub mod sessions;

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    shared: Shared,
}

/// Reads the subscriptions snapshot the backend publishes.
#[derive(Clone)]
pub struct SubscriptionsView {
    snapshots: Snapshots,
    due: DueCounter,
}

/// redb keeps the count at hand; PostgreSQL's is a query.
#[derive(Clone)]
enum DueCounter {
    Redb(self::redb::DueCounter),
    Postgres(postgres::DueCounter),
}

impl SubscriptionsView {
    pub fn current(&self) -> Arc<SubscriptionIndex> {
        self.snapshots.current()
    }

    /// Unfinished deliveries in the due queue, or None while the store is unavailable.
    pub async fn due_count(&self) -> Option<u64> {
        match &self.due {
            DueCounter::Redb(redb) => redb.count(),
            DueCounter::Postgres(pg) => pg.count().await,
        }
    }
}

impl Store {
    /// Opens the store `[storage]` names, with the backend it chooses (redb's blocking
    /// work runs on the blocking pool). `catalog` maps each known event type to the
    /// scope needed to receive it.
    pub async fn from_config(
        storage: &crate::config::Storage,
        settings: WriterSettings,
        catalog: HashMap<String, String>,
        sink: Arc<dyn DueSink>,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<(Store, WriterHandle), StoreError> {
        match storage.backend {
            crate::config::Backend::Redb => {
                let (path, cache) = (storage.path.clone(), storage.cache_size);
                tokio::task::spawn_blocking(move || {
                    Self::open(&path, cache, settings, catalog, sink, observer)
                })
                .await?
            }
            crate::config::Backend::Postgres => {
                let shared = Shared::new();
                let (pg, task) = postgres::PgStore::open(
                    &storage.postgres,
                    settings,
                    shared.clone(),
                    catalog,
                    sink,
                    observer,
                )
                .await?;
                let writer = WriterHandle(Writer::Task(task, tokio::runtime::Handle::current()));
                let backend = Backend::Postgres(pg);
                Ok((Store { backend, shared }, writer))
            }
        }
    }

    /// Opens (creating if absent) the redb file at `path`, runs migrations and starts
    /// the writer. Blocking, as `from_config`.
    pub fn open(
        path: &Path,
        cache_size: usize,
        settings: WriterSettings,
        catalog: HashMap<String, String>,
        sink: Arc<dyn DueSink>,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<(Store, WriterHandle), StoreError> {
        let shared = Shared::new();
        let (redb, writer) = self::redb::RedbStore::open(
            path,
            cache_size,
            settings,
            catalog,
            shared.clone(),
            sink,
            observer,
        )?;
        let backend = Backend::Redb(redb);
        Ok((
            Store { backend, shared },
            WriterHandle(Writer::Thread(writer)),
        ))
    }

    pub fn commit_stats(&self) -> &CommitStats {
        &self.shared.commits
    }

    /// Whether the store takes new events, only outcomes, or nothing now.
    pub fn health(&self) -> &StorageHealth {
        &self.shared.health
    }

    /// A handle on the subscriptions snapshot that, unlike a `Store`, does not keep the
    /// writer running (for `/metrics`, which outlives the store at shutdown).
    pub fn subscriptions_view(&self) -> SubscriptionsView {
        SubscriptionsView {
            snapshots: self.shared.snapshots.clone(),
            due: match &self.backend {
                Backend::Redb(redb) => DueCounter::Redb(redb.due_counter()),
                Backend::Postgres(pg) => DueCounter::Postgres(pg.due_counter()),
            },
        }
    }

    /// Changes each time subscriptions, keys or entities change (a new snapshot).
    pub fn snapshot_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.snapshots.changes()
    }

    /// The current subscriptions snapshot (no disk read).
    pub fn subscriptions(&self) -> Arc<SubscriptionIndex> {
        self.shared.snapshots.current()
    }

    /// Whether this node dispatches `subscription`'s deliveries now. One node (redb)
    /// dispatches everything; with several, each subscription's work belongs to the
    /// node leasing its partition, so its `rateLimit` and `per_endpoint_concurrency`
    /// hold cluster-wide. When that changes the backend tells the `DueSink` to forget
    /// the subscription, and the dispatcher asks again.
    pub fn dispatches(&self, subscription: u128) -> bool {
        match &self.backend {
            Backend::Redb(_) => true,
            Backend::Postgres(pg) => pg.dispatches(subscription),
        }
    }

    // ---- writes: each answered once committed -------------------------------------

    /// Stores events and their deliveries durably, all in one commit; answers after it.
    pub async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<IngestOutcome>, StoreError> {
        on_backend!(self, b => b.ingest(events).await)
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
        on_backend!(self, b => b.put_subscription(id, record, expected_updated_ms).await)
    }

    /// Removes a subscription; the sweeper then cancels its unfinished deliveries in
    /// bounded steps. False if absent.
    pub async fn delete_subscription(&self, id: u128) -> Result<bool, StoreError> {
        on_backend!(self, b => b.delete_subscription(id).await)
    }

    /// Records an attempt and applies its outcome (`lifecycle::after_attempt`).
    pub async fn record_attempt(&self, report: AttemptReport) -> Result<(), StoreError> {
        on_backend!(self, b => b.record_attempt(report).await)
    }

    /// One bounded step of cancelling a deleted subscription's deliveries, expiring a
    /// paused one's or bringing a resumed one's retries forward.
    pub async fn sweep(&self, sweep: Sweep) -> Result<SweepOutcome, StoreError> {
        on_backend!(self, b => b.sweep(sweep).await)
    }

    pub async fn retry(&self, delivery: u128) -> Result<RetryOutcome, StoreError> {
        on_backend!(self, b => b.retry(delivery).await)
    }

    /// New deliveries to one subscription for the events of `[since_ms, until_ms)` it
    /// matches now (with `only_failed`, those whose delivery to it ended FAILED), at
    /// most `MAX_REPLAY` per call.
    pub async fn replay(
        &self,
        subscription: u128,
        since_ms: u64,
        until_ms: u64,
        only_failed: bool,
    ) -> Result<ReplayOutcome, StoreError> {
        on_backend!(self, b => b.replay(subscription, since_ms, until_ms, only_failed).await)
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
        on_backend!(self, b => b.purge(before_ms, idempotency_before_ms, cursor, limit).await)
    }

    pub async fn create_entity(
        &self,
        id: String,
        record: EntityRecord,
    ) -> Result<EntityOutcome, StoreError> {
        on_backend!(self, b => b.create_entity(id, record).await)
    }

    /// Refused while the entity has children, keys or subscriptions.
    pub async fn delete_entity(&self, id: String) -> Result<EntityOutcome, StoreError> {
        on_backend!(self, b => b.delete_entity(id).await)
    }

    pub async fn create_key(&self, id: u128, record: ApiKeyRecord) -> Result<(), StoreError> {
        on_backend!(self, b => b.create_key(id, record).await)
    }

    /// Revokes (deletes) a key; effective for the next request. False if absent.
    pub async fn revoke_key(&self, id: u128) -> Result<bool, StoreError> {
        on_backend!(self, b => b.revoke_key(id).await)
    }

    /// Copies everything, as of one moment, into a new database file at `dest` (which
    /// must not exist), while writes go on.
    pub async fn backup(&self, dest: std::path::PathBuf) -> Result<BackupInfo, StoreError> {
        on_backend!(self, b => b.backup(dest).await)
    }
}

/// What `copy` read from the source and what the target holds afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    pub read: Counts,
    pub written: Counts,
}

/// `hookd store copy`: moves an appliance's data (entities, keys, subscriptions with
/// their sealed secrets, events, deliveries, attempts, counters, idempotency records)
/// from its redb file, opened exclusively (hookd must be stopped), into the empty
/// PostgreSQL database `to` names, in one transaction; or back, from a database no
/// node is running on into a new redb file that replaces an empty one only once
/// complete.
pub async fn copy(
    from: &crate::config::Storage,
    to: &crate::config::Storage,
) -> Result<CopyReport, StoreError> {
    use crate::config::Backend;
    let copied = match (from.backend, to.backend) {
        (Backend::Redb, Backend::Postgres) => {
            let path = from.path.clone();
            let source =
                tokio::task::spawn_blocking(move || self::redb::RedbSource::open(&path)).await??;
            postgres::copy_from_redb(&source, &to.postgres).await?
        }
        (Backend::Postgres, Backend::Redb) => {
            postgres::copy_to_redb(&from.postgres, &to.path).await?
        }
        _ => return Err(StoreError::CopyDirection),
    };
    Ok(CopyReport {
        read: copied.read,
        written: copied.written,
    })
}

/// The folder a database file is in (`.` for a bare file name).
pub(crate) fn folder_of(path: &Path) -> std::path::PathBuf {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => std::path::PathBuf::from("."),
    }
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
