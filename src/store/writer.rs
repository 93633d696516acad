//! The single writer. It is the only code that opens write transactions. Commands
//! arrive on a bounded channel; the writer takes everything queued (up to
//! `MAX_BATCH`), applies it in one transaction, commits once with fsync, and only then
//! answers each command and hands new due entries to the dispatcher. One fsync for a
//! whole batch is what makes durable ingest fast (group commit). It runs on its own OS
//! thread, so redb never blocks an async worker.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::codec::{decode, encode};
use super::error::StoreError;
use super::index::SubscriptionIndex;
use super::records::{
    AttemptRecord, DeliveryRecord, DeliveryState, EventRecord, IdempotencyRecord,
    SubscriptionRecord,
};
use super::tables::{
    ATTEMPTS, DELIVERIES, DUE, EVENT_DELIVERIES, EVENTS, IDEMPOTENCY, SUBSCRIPTION_DELIVERIES,
    SUBSCRIPTIONS,
};
use super::{DueEntry, DueSink, Fresh};

/// Most commands applied in one transaction: bounds the latency one commit adds to the
/// first command of a batch and the memory a batch holds.
const MAX_BATCH: usize = 1024;
/// How long an Idempotency-Key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An event to store, with its fan-out decided by the writer at commit time.
#[derive(Debug)]
pub struct NewEvent {
    pub id: u128,
    pub record: EventRecord,
    pub idempotency: Option<IdempotencyKey>,
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
        deliveries: u32,
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
}

pub(super) enum Command {
    Ingest {
        events: Vec<NewEvent>,
        now_ms: u64,
        reply: Reply<Vec<IngestOutcome>>,
    },
    PutSubscription {
        id: u128,
        record: SubscriptionRecord,
        reply: Reply<()>,
    },
    DeleteSubscription {
        id: u128,
        now_ms: u64,
        reply: Reply<bool>,
    },
    RecordAttempt {
        report: AttemptReport,
        reply: Reply<()>,
    },
}

impl Command {
    fn fail(self, error: &Arc<StoreError>) {
        let error = || StoreError::Shared(error.clone());
        // A dropped receiver means the caller stopped waiting; nothing to do.
        match self {
            Self::Ingest { reply, .. } => drop(reply.send(Err(error()))),
            Self::PutSubscription { reply, .. } => drop(reply.send(Err(error()))),
            Self::DeleteSubscription { reply, .. } => drop(reply.send(Err(error()))),
            Self::RecordAttempt { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}

/// Sends a command's answer once the batch it belongs to is committed.
type Finisher = Box<dyn FnOnce(Option<&Arc<StoreError>>) + Send>;

fn finisher<T: Send + 'static>(reply: Reply<T>, value: T) -> Finisher {
    Box::new(move |failed| {
        let answer = match failed {
            None => Ok(value),
            Some(error) => Err(StoreError::Shared(error.clone())),
        };
        let _ = reply.send(answer);
    })
}

/// Side effects released only after a successful commit.
#[derive(Default)]
struct Effects {
    due: Vec<DueEntry>,
    fresh: Vec<Fresh>,
    removed_subscriptions: Vec<u128>,
}

pub(super) struct Writer {
    pub db: Arc<Database>,
    pub rx: mpsc::Receiver<Command>,
    pub index: Arc<RwLock<Arc<SubscriptionIndex>>>,
    pub sink: Arc<dyn DueSink>,
    pub commits: Arc<super::CommitStats>,
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
        let mut index: Option<SubscriptionIndex> = None;
        let mut effects = Effects::default();
        let mut finishers: Vec<Finisher> = Vec::with_capacity(batch.len());

        let result = (|| -> Result<(), StoreError> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            // Quick repair costs a second flush per commit, shared by the whole batch,
            // and makes reopening after a crash take milliseconds instead of a walk of
            // the whole file (see README "Storage").
            txn.set_quick_repair(true);
            while let Some(command) = batch.pop_front() {
                match apply_one(&txn, command, &current, &mut index, &mut effects) {
                    Ok(finish) => finishers.push(finish),
                    Err(failed) => {
                        let (error, command) = *failed;
                        command.fail(&Arc::new(StoreError::Aborted));
                        return Err(error);
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })();

        match result {
            Ok(()) => {
                if let Some(index) = index {
                    self.publish(index);
                }
                self.commits.record(size, started.elapsed());
                if !effects.removed_subscriptions.is_empty() {
                    self.sink
                        .subscriptions_removed(&effects.removed_subscriptions);
                }
                if !effects.due.is_empty() {
                    self.sink.schedule(effects.due, effects.fresh);
                }
                for finish in finishers {
                    finish(None);
                }
            }
            Err(error) => {
                tracing::error!(%error, batch = size, "store commit failed; the batch was rolled back");
                let error = Arc::new(error);
                for finish in finishers {
                    finish(Some(&error));
                }
                for command in batch.drain(..) {
                    command.fail(&error);
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

/// On failure the command comes back so it can be answered with the error.
type Applied = Result<Finisher, Box<(StoreError, Command)>>;

fn apply_one(
    txn: &WriteTransaction,
    command: Command,
    current: &SubscriptionIndex,
    index: &mut Option<SubscriptionIndex>,
    effects: &mut Effects,
) -> Applied {
    // Commands earlier in this batch may have changed subscriptions: match against
    // the uncommitted copy when there is one.
    let view = index.as_ref().unwrap_or(current);
    match command {
        Command::Ingest {
            events,
            now_ms,
            reply,
        } => match ingest(txn, &events, now_ms, view, effects) {
            Ok(outcomes) => Ok(finisher(reply, outcomes)),
            Err(e) => Err(Box::new((
                e,
                Command::Ingest {
                    events,
                    now_ms,
                    reply,
                },
            ))),
        },
        Command::PutSubscription { id, record, reply } => {
            let stored = encode(&record).and_then(|bytes| {
                txn.open_table(SUBSCRIPTIONS)?
                    .insert(id, bytes.as_slice())?;
                Ok(())
            });
            match stored {
                Ok(()) => {
                    index
                        .get_or_insert_with(|| current.clone())
                        .upsert(id, record);
                    Ok(finisher(reply, ()))
                }
                Err(e) => Err(Box::new((
                    e,
                    Command::PutSubscription { id, record, reply },
                ))),
            }
        }
        Command::DeleteSubscription { id, now_ms, reply } => {
            match delete_subscription(txn, id, now_ms) {
                Ok(existed) => {
                    if existed {
                        index.get_or_insert_with(|| current.clone()).remove(id);
                        effects.removed_subscriptions.push(id);
                    }
                    Ok(finisher(reply, existed))
                }
                Err(e) => Err(Box::new((
                    e,
                    Command::DeleteSubscription { id, now_ms, reply },
                ))),
            }
        }
        Command::RecordAttempt { report, reply } => match record_attempt(txn, &report, effects) {
            Ok(()) => Ok(finisher(reply, ())),
            Err(e) => Err(Box::new((e, Command::RecordAttempt { report, reply }))),
        },
    }
}

fn ingest(
    txn: &WriteTransaction,
    events: &[NewEvent],
    now_ms: u64,
    subscriptions: &SubscriptionIndex,
    effects: &mut Effects,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut event_table = txn.open_table(EVENTS)?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut event_deliveries = txn.open_table(EVENT_DELIVERIES)?;
    let mut subscription_deliveries = txn.open_table(SUBSCRIPTION_DELIVERIES)?;
    let mut due = txn.open_table(DUE)?;
    let mut idempotency = txn.open_table(IDEMPOTENCY)?;
    let mut outcomes = Vec::with_capacity(events.len());

    for event in events {
        if let Some(key) = &event.idempotency {
            let seen = idempotency
                .get(&key.key_hash)?
                .map(|guard| decode::<IdempotencyRecord>(guard.value()))
                .transpose()?;
            if let Some(seen) = seen.filter(|s| now_ms < s.created_ms + IDEMPOTENCY_WINDOW_MS) {
                outcomes.push(if seen.body_sha256 == key.body_sha256 {
                    IngestOutcome::Duplicate {
                        event: seen.event,
                        deliveries: seen.deliveries,
                    }
                } else {
                    IngestOutcome::Conflict
                });
                continue;
            }
        }

        let targets = subscriptions.matching(&event.record.entity, &event.record.event_type);
        event_table.insert(event.id, encode(&event.record)?.as_slice())?;
        let body = if targets.is_empty() {
            bytes::Bytes::new()
        } else {
            bytes::Bytes::from(event.record.body.clone())
        };
        for &subscription in &targets {
            let delivery = crate::ids::uuid_v7();
            let record = DeliveryRecord {
                event: event.id,
                subscription,
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_ms: Some(now_ms),
                last_status: None,
                last_error: None,
                created_ms: now_ms,
                updated_ms: now_ms,
            };
            deliveries.insert(delivery, encode(&record)?.as_slice())?;
            event_deliveries.insert((event.id, delivery), ())?;
            subscription_deliveries.insert((subscription, delivery), ())?;
            due.insert((now_ms, delivery), subscription)?;
            effects.due.push(DueEntry {
                due_ms: now_ms,
                delivery,
                subscription,
            });
            effects.fresh.push(Fresh {
                delivery,
                event: event.id,
                body: body.clone(),
            });
        }
        let fanned_out = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        if let Some(key) = &event.idempotency {
            let record = IdempotencyRecord {
                body_sha256: key.body_sha256,
                created_ms: now_ms,
                event: event.id,
                deliveries: fanned_out,
            };
            idempotency.insert(&key.key_hash, encode(&record)?.as_slice())?;
        }
        outcomes.push(IngestOutcome::Accepted {
            deliveries: fanned_out,
        });
    }
    Ok(outcomes)
}

fn delete_subscription(txn: &WriteTransaction, id: u128, now_ms: u64) -> Result<bool, StoreError> {
    let existed = txn.open_table(SUBSCRIPTIONS)?.remove(id)?.is_some();
    if !existed {
        return Ok(false);
    }
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut due = txn.open_table(DUE)?;
    let owned = txn.open_table(SUBSCRIPTION_DELIVERIES)?;
    for entry in owned.range((id, 0)..=(id, u128::MAX))? {
        let (key, _) = entry?;
        let delivery = key.value().1;
        let Some(bytes) = deliveries.get(delivery)?.map(|g| g.value().to_vec()) else {
            continue;
        };
        let mut record: DeliveryRecord = decode(&bytes)?;
        if record.state.is_final() {
            continue;
        }
        if let Some(at) = record.next_attempt_ms.take() {
            due.remove((at, delivery))?;
        }
        record.state = DeliveryState::Cancelled;
        record.updated_ms = now_ms;
        deliveries.insert(delivery, encode(&record)?.as_slice())?;
    }
    Ok(true)
}

fn record_attempt(
    txn: &WriteTransaction,
    report: &AttemptReport,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let Some(bytes) = deliveries.get(report.delivery)?.map(|g| g.value().to_vec()) else {
        // Purged while in flight: nothing left to record against.
        return Ok(());
    };
    let mut record: DeliveryRecord = decode(&bytes)?;
    let mut due = txn.open_table(DUE)?;
    if let Some(at) = record.next_attempt_ms.take() {
        due.remove((at, report.delivery))?;
    }
    record.attempts += 1;
    txn.open_table(ATTEMPTS)?.insert(
        (report.delivery, record.attempts),
        encode(&report.attempt)?.as_slice(),
    )?;
    record.last_status = report.attempt.status;
    record.last_error = report.attempt.error.clone();
    record.updated_ms = report.attempt.attempted_ms;
    if record.state != DeliveryState::Cancelled {
        match report.next {
            NextStep::Succeeded => record.state = DeliveryState::Succeeded,
            NextStep::Failed => record.state = DeliveryState::Failed,
            NextStep::RetryAt(at) => {
                record.state = DeliveryState::Retrying;
                record.next_attempt_ms = Some(at);
                due.insert((at, report.delivery), record.subscription)?;
                effects.due.push(DueEntry {
                    due_ms: at,
                    delivery: report.delivery,
                    subscription: record.subscription,
                });
            }
        }
    }
    deliveries.insert(report.delivery, encode(&record)?.as_slice())?;
    Ok(())
}
