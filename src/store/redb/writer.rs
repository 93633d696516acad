//! The single writer. It is the only code that opens write transactions. Commands
//! arrive on a bounded channel; the writer takes everything queued (up to
//! `MAX_BATCH`), applies it in one transaction (`ops/`), commits once with fsync, and
//! only then answers each command and tells the dispatcher what became due. One fsync
//! for a whole batch is what makes durable ingest fast (group commit). It runs on its
//! own OS thread, so redb never blocks an async worker.
//!
//! Storage faults: below `storage.min_free` new events are refused (the rest of the batch
//! commits). A write that fails with an I/O error (ENOSPC, EIO) rolls its batch back and
//! faults the store: redb refuses every later write until the database is reopened, so
//! the writer takes it out of the shared slot, reopens it on a timer until a probe write
//! commits, and answers `Unavailable` meanwhile. Nothing committed is lost: a failed
//! commit leaves the previous one in place (quick repair makes the reopen fast).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::DbSlot;
use super::ops::{Batch, Effects};
use super::tables::META;
use super::tables::Tables;
use crate::store::error::StoreError;
use crate::store::index::SubscriptionIndex;
use crate::store::purge::{PurgeCursor, PurgeOutcome};
use crate::store::records::SubscriptionRecord;
use crate::store::requests::{
    AttemptReport, EntityOutcome, IngestOutcome, NewEvent, PutOutcome, ReplayOutcome, RetryOutcome,
    Sweep, SweepOutcome, WriterSettings,
};
use crate::store::space::{DiskSpace, StorageHealth, StorageState};
use crate::store::{CommitStats, DueSink, Snapshots, StoreObserver, now_ms};

/// Most commands applied in one transaction: bounds the latency one commit adds to the
/// first command of a batch and the memory a batch holds.
const MAX_BATCH: usize = 1024;
/// While faulted, how often the writer tries to reopen the database (and how long a
/// request waits at most for its 503).
const RECOVER_EVERY: Duration = Duration::from_millis(500);
/// A reopened database must also have this much free disk before it counts as writable
/// again: a probe write alone can succeed in pages the file already has.
const RECOVER_ROOM: u64 = 4 << 20;
/// How long a reopen waits for reads in progress to give back the old handle.
const READERS_GRACE: Duration = Duration::from_secs(5);

/// Longest an attempt's outcome waits for other commands to share its commit.
const OUTCOME_LINGER: Duration = Duration::from_millis(25);

/// Where a command's answer goes; sent only once its batch has committed.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write command, one variant per `Store` method, each with a reply of the type that
/// method returns (so no answer can be of the wrong kind).
pub(super) enum Command {
    Ingest(Vec<NewEvent>, Reply<Vec<IngestOutcome>>),
    PutSubscription {
        id: u128,
        record: Box<SubscriptionRecord>,
        expected_updated_ms: Option<u64>,
        reply: Reply<PutOutcome>,
    },
    DeleteSubscription(u128, Reply<bool>),
    RecordAttempt(Box<AttemptReport>, Reply<()>),
    Sweep(Sweep, Reply<SweepOutcome>),
    Retry(u128, Reply<RetryOutcome>),
    Replay {
        subscription: u128,
        since_ms: u64,
        until_ms: u64,
        only_failed: bool,
        reply: Reply<ReplayOutcome>,
    },
    CreateEntity {
        id: String,
        record: crate::store::records::EntityRecord,
        reply: Reply<EntityOutcome>,
    },
    DeleteEntity(String, Reply<EntityOutcome>),
    CreateKey {
        id: u128,
        record: crate::store::tenancy::ApiKeyRecord,
        reply: Reply<()>,
    },
    RevokeKey(u128, Reply<bool>),
    Purge {
        before_ms: u64,
        idempotency_before_ms: u64,
        cursor: PurgeCursor,
        limit: usize,
        reply: Reply<PurgeOutcome>,
    },
}

impl Command {
    /// Answers the command with `error` without applying it.
    pub fn refuse(self, error: StoreError) {
        fn fail<T>(reply: Reply<T>, error: StoreError) {
            let _ = reply.send(Err(error));
        }
        match self {
            Command::Ingest(_, reply) => fail(reply, error),
            Command::PutSubscription { reply, .. } => fail(reply, error),
            Command::DeleteSubscription(_, reply) => fail(reply, error),
            Command::RecordAttempt(_, reply) => fail(reply, error),
            Command::Sweep(_, reply) => fail(reply, error),
            Command::Retry(_, reply) => fail(reply, error),
            Command::Replay { reply, .. } => fail(reply, error),
            Command::CreateEntity { reply, .. } => fail(reply, error),
            Command::DeleteEntity(_, reply) => fail(reply, error),
            Command::CreateKey { reply, .. } => fail(reply, error),
            Command::RevokeKey(_, reply) => fail(reply, error),
            Command::Purge { reply, .. } => fail(reply, error),
        }
    }

    /// An attempt's outcome: nobody waits for it, so it may linger for company.
    fn is_outcome(&self) -> bool {
        matches!(self, Command::RecordAttempt(..))
    }
}

/// An applied command's answer, held until its batch commits (or fails).
pub(super) struct Answer(Box<dyn FnOnce(Option<StoreError>) + Send>);

impl Answer {
    pub fn new<T: Send + 'static>(reply: Reply<T>, value: T) -> Self {
        Answer(Box::new(move |failed| {
            let _ = reply.send(match failed {
                None => Ok(value),
                Some(error) => Err(error),
            });
        }))
    }

    fn send(self, failed: Option<StoreError>) {
        (self.0)(failed)
    }
}

pub(super) struct Writer {
    pub slot: DbSlot,
    pub path: PathBuf,
    pub cache_size: usize,
    pub space: DiskSpace,
    pub health: StorageHealth,
    pub rx: mpsc::Receiver<Command>,
    pub snapshots: Snapshots,
    /// The runtime the store was opened from, for the writer's timed waits (none in
    /// offline commands: outcomes then commit at once).
    pub runtime: Option<tokio::runtime::Handle>,
    pub sink: Arc<dyn DueSink>,
    pub observer: Arc<dyn StoreObserver>,
    pub commits: Arc<CommitStats>,
    pub settings: WriterSettings,
}

impl Writer {
    pub fn run(mut self) {
        let mut batch = VecDeque::with_capacity(MAX_BATCH);
        loop {
            if self.health.state() == StorageState::Faulted {
                // Reopened on a timer, whether or not requests arrive.
                std::thread::sleep(RECOVER_EVERY);
                self.recover();
                if self.rx.is_closed() && self.rx.is_empty() {
                    return;
                }
            } else {
                match self.rx.blocking_recv() {
                    Some(first) => batch.push_back(first),
                    None => return,
                }
            }
            self.take_queued(&mut batch);
            if batch.iter().all(Command::is_outcome) {
                self.linger(&mut batch);
            }
            if !batch.is_empty() {
                self.apply(&mut batch);
            }
        }
    }

    fn take_queued(&mut self, batch: &mut VecDeque<Command>) {
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(command) => batch.push_back(command),
                Err(_) => break,
            }
        }
    }

    /// Holds a batch of outcomes alone for up to `OUTCOME_LINGER`, until anything else
    /// arrives: an outcome then shares the commit (and its flushes) of the next ingest
    /// instead of paying for one of its own. An outcome lost in a crash costs at most one
    /// more attempt of its delivery, which at-least-once allows, and nobody waits for it:
    /// the endpoint's slot was freed when the exchange ended.
    fn linger(&mut self, batch: &mut VecDeque<Command>) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + OUTCOME_LINGER;
        while batch.len() < MAX_BATCH {
            // The timer is made inside `block_on`, where the runtime's context is.
            let rx = &mut self.rx;
            let next =
                runtime.block_on(async { tokio::time::timeout_at(deadline, rx.recv()).await });
            let Ok(Some(command)) = next else {
                return; // the deadline passed, or every sender is gone
            };
            let urgent = !command.is_outcome();
            batch.push_back(command);
            self.take_queued(batch);
            if urgent {
                return;
            }
        }
    }

    fn apply(&mut self, batch: &mut VecDeque<Command>) {
        let started = std::time::Instant::now();
        let size = batch.len();
        let current = self.snapshots.current();
        let mut answers = Vec::with_capacity(size);
        let db = match self.slot.get() {
            Ok(db) if self.health.state() != StorageState::Faulted => db,
            _ => {
                for command in batch.drain(..) {
                    command.refuse(StoreError::Unavailable);
                }
                return;
            }
        };
        let low = self.space.low();
        self.set_state(if low {
            StorageState::LowDisk
        } else {
            StorageState::Ok
        });

        let result = (|| -> Result<(Option<SubscriptionIndex>, Effects), StoreError> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            // Quick repair costs a second flush per commit, shared by the whole batch,
            // and makes reopening after a crash take milliseconds instead of a walk of
            // the whole file (see README "Storage").
            txn.set_quick_repair(true);
            let outcome = {
                let tables = Tables::open(&txn)?;
                let mut ops = Batch::new(tables, &current, self.settings, now_ms());
                while let Some(command) = batch.pop_front() {
                    if low && matches!(command, Command::Ingest(..)) {
                        // The rest of the batch (outcomes, purges, changes) commits.
                        command.refuse(StoreError::LowDisk);
                        continue;
                    }
                    answers.push(ops.apply(command)?);
                }
                ops.finish()?
            };
            txn.commit()?;
            Ok(outcome)
        })();

        match result {
            Ok((index, mut effects)) => {
                if let Some(index) = index {
                    self.snapshots.publish(index);
                }
                let took = started.elapsed();
                self.commits.record(size, took);
                effects.report.commands = size;
                effects.report.took = took;
                self.observer.committed(&effects.report);
                // Forget before scheduling: a batch may reset a subscription's queue and
                // then queue new entries for it.
                if !effects.forget.is_empty() {
                    self.sink.forget(&effects.forget);
                }
                if !effects.due.is_empty() {
                    self.sink.schedule(effects.due, effects.fresh);
                }
                for answer in answers {
                    answer.send(None);
                }
            }
            Err(error) if error.is_io() => {
                if self.set_state(StorageState::Faulted) {
                    tracing::error!(%error, batch = size, "a store write failed (disk full or failing); the batch was rolled back, new work is refused until the database can be reopened");
                }
                for answer in answers {
                    answer.send(Some(StoreError::Unavailable));
                }
                for command in batch.drain(..) {
                    command.refuse(StoreError::Unavailable);
                }
            }
            Err(error) => {
                tracing::error!(%error, batch = size, "store commit failed; the batch was rolled back");
                let error = Arc::new(error);
                for answer in answers {
                    answer.send(Some(StoreError::Shared(error.clone())));
                }
                for command in batch.drain(..) {
                    command.refuse(StoreError::Shared(error.clone()));
                }
            }
        }
    }

    /// Sets the storage state, logging and reporting each change once; true if changed.
    fn set_state(&self, next: StorageState) -> bool {
        let changed = self.health.set(next);
        if changed {
            self.observer.storage_state(next);
            match next {
                StorageState::LowDisk => tracing::warn!(
                    "free disk space is below storage.min_free: new events are refused (507); deliveries and their outcomes go on"
                ),
                StorageState::Ok => tracing::info!("storage accepts new events again"),
                // Logged with its cause where it happens.
                StorageState::Faulted => {}
            }
        }
        changed
    }

    /// Takes the faulted database out of the slot (reads answer `Unavailable`
    /// meanwhile), waits for reads in progress to give back their handles (the file lock
    /// is held until the last one is gone), and reopens it; writable again once a probe
    /// write commits with room to spare.
    fn recover(&mut self) {
        if let Some(mut old) = self.slot.take() {
            let deadline = Instant::now() + READERS_GRACE;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => break drop(db),
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        // Nothing signals the last reader's drop; reads are short.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still) => {
                        tracing::warn!("reads still hold the faulted database; reopening later");
                        self.slot.put(still);
                        return;
                    }
                }
            }
        }
        match self.reopen() {
            Ok(db) => {
                self.slot.put(Arc::new(db));
                tracing::info!("the database was reopened and takes writes again");
                let low = self.space.low();
                self.set_state(if low {
                    StorageState::LowDisk
                } else {
                    StorageState::Ok
                });
            }
            Err(error) => tracing::debug!(%error, "the database cannot be reopened yet"),
        }
    }

    fn reopen(&mut self) -> Result<Database, StoreError> {
        if !self.space.has_room(RECOVER_ROOM) {
            return Err(StoreError::Unavailable);
        }
        let db = Database::builder()
            .set_cache_size(self.cache_size)
            .create(&self.path)?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_quick_repair(true);
        txn.open_table(META)?
            .insert("last_reopened_ms", now_ms().to_be_bytes().as_slice())?;
        txn.commit()?;
        Ok(db)
    }
}
