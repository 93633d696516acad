//! The single writer. It is the only code that opens write transactions. Commands
//! arrive on a bounded channel; the writer takes everything queued (up to
//! `MAX_BATCH`), applies it in one transaction (`ops.rs`), commits once with fsync, and
//! only then answers each command and tells the dispatcher what became due. One fsync
//! for a whole batch is what makes durable ingest fast (group commit). It runs on its
//! own OS thread, so redb never blocks an async worker.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::error::StoreError;
use super::index::SubscriptionIndex;
use super::ops::{Batch, Effects, Tables};
use super::purge::{PurgeCursor, PurgeOutcome};
use super::records::{AttemptRecord, DeliveryRecord, EventRecord, SubscriptionRecord};
use super::{CommitStats, DueSink, StoreObserver, now_ms};

/// Most commands applied in one transaction: bounds the latency one commit adds to the
/// first command of a batch and the memory a batch holds.
const MAX_BATCH: usize = 1024;
/// How long an Idempotency-Key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// Policy values the writer applies itself (from `[delivery]`).
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub max_age_ms: u64,
    pub disable_after_ms: u64,
}

/// An event to store. Its fan-out is decided by the writer at commit time, against the
/// subscriptions as they are in that transaction.
#[derive(Debug)]
pub struct NewEvent {
    pub id: u128,
    pub record: EventRecord,
    pub idempotency: Option<IdempotencyKey>,
    /// Deliver to exactly these subscriptions instead of matching (a test ping).
    pub targets: Option<Vec<u128>>,
}

#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// SHA-256 of (entity, 0, key): keys are scoped per entity.
    pub key_hash: [u8; 32],
    pub body_sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted {
        deliveries: Vec<u128>,
    },
    /// The key was seen with the same body: the original event and its fan-out count.
    Duplicate {
        event: u128,
        deliveries: u32,
    },
    /// The key was seen with another body.
    Conflict,
}

/// What the dispatcher decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(u64),
    Failed,
}

#[derive(Debug)]
pub struct AttemptReport {
    pub delivery: u128,
    pub attempt: AttemptRecord,
    pub next: NextStep,
    /// The endpoint answered 410 Gone: its subscription is disabled.
    pub gone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    Queued(DeliveryRecord),
    NotFound,
    Cancelled,
    SubscriptionInactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// New deliveries queued, and whether the per-request cap stopped the scan (then
    /// `resume_ms` is where a follow-up replay should start).
    Queued {
        queued: u32,
        resume_ms: Option<u64>,
    },
    NotFound,
    SubscriptionInactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// The subscription changed since the caller read it (`expected_updated_ms`).
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityOutcome {
    Done,
    Exists,
    /// The entity (or the parent named) does not exist.
    NotFound,
    /// Refused, with the reason.
    InUse(&'static str),
}

pub(super) enum Op {
    Ingest(Vec<NewEvent>),
    PutSubscription {
        id: u128,
        record: Box<SubscriptionRecord>,
        expected_updated_ms: Option<u64>,
    },
    DeleteSubscription(u128),
    RecordAttempt(AttemptReport),
    Expire(u128),
    Retry(u128),
    Replay {
        subscription: u128,
        since_ms: u64,
        until_ms: u64,
        only_failed: bool,
    },
    CreateEntity {
        id: String,
        record: super::records::EntityRecord,
    },
    DeleteEntity(String),
    CreateKey {
        id: u128,
        record: super::tenancy::ApiKeyRecord,
    },
    RevokeKey(u128),
    Purge {
        before_ms: u64,
        idempotency_before_ms: u64,
        cursor: PurgeCursor,
        limit: usize,
    },
}

/// Each op's answer; `Store` unpacks the variant its op produces.
#[derive(Debug)]
pub(super) enum Outcome {
    Ingested(Vec<IngestOutcome>),
    Put(PutOutcome),
    Deleted(bool),
    Done,
    Retried(RetryOutcome),
    Replayed(ReplayOutcome),
    Entity(EntityOutcome),
    Purged(PurgeOutcome),
}

pub(super) struct Command {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

pub(super) struct Writer {
    pub db: Arc<Database>,
    pub rx: mpsc::Receiver<Command>,
    pub index: Arc<RwLock<Arc<SubscriptionIndex>>>,
    pub sink: Arc<dyn DueSink>,
    pub observer: Arc<dyn StoreObserver>,
    pub commits: Arc<CommitStats>,
    pub settings: WriterSettings,
}

impl Writer {
    pub fn run(mut self) {
        let mut batch = VecDeque::with_capacity(MAX_BATCH);
        while let Some(first) = self.rx.blocking_recv() {
            batch.push_back(first);
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(command) => batch.push_back(command),
                    Err(_) => break,
                }
            }
            self.apply(&mut batch);
        }
    }

    fn apply(&mut self, batch: &mut VecDeque<Command>) {
        let started = std::time::Instant::now();
        let size = batch.len();
        let current = self.current_index();
        let mut answers = Vec::with_capacity(size);

        let result = (|| -> Result<(Option<SubscriptionIndex>, Effects), StoreError> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            // Quick repair costs a second flush per commit, shared by the whole batch,
            // and makes reopening after a crash take milliseconds instead of a walk of
            // the whole file (see README "Storage").
            txn.set_quick_repair(true);
            let outcome = {
                let tables = Tables::open(&txn)?;
                let mut ops = Batch::new(tables, &current, self.settings, now_ms());
                while let Some(Command { op, reply }) = batch.pop_front() {
                    match ops.apply(op) {
                        Ok(outcome) => answers.push((reply, outcome)),
                        Err(error) => {
                            let _ = reply.send(Err(StoreError::Aborted));
                            return Err(error);
                        }
                    }
                }
                ops.finish()
            };
            txn.commit()?;
            Ok(outcome)
        })();

        match result {
            Ok((index, mut effects)) => {
                if let Some(index) = index {
                    self.publish(index);
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
                for (reply, outcome) in answers {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, batch = size, "store commit failed; the batch was rolled back");
                let error = Arc::new(error);
                for (reply, _) in answers {
                    let _ = reply.send(Err(StoreError::Shared(error.clone())));
                }
                for command in batch.drain(..) {
                    let _ = command.reply.send(Err(StoreError::Shared(error.clone())));
                }
            }
        }
    }

    fn current_index(&self) -> Arc<SubscriptionIndex> {
        match self.index.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, index: SubscriptionIndex) {
        let mut guard = match self.index.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(index);
    }
}
