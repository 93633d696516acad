//! Group commit on PostgreSQL. One task takes the commands queued on a bounded channel
//! (up to `MAX_BATCH`), applies them in one transaction (`batch.rs` decides, `flush.rs`
//! writes each kind of row with one multi-row statement), commits, and only then
//! answers each command, publishes the changed snapshot and tells the `DueSink` what
//! became due. Commands sent while a transaction is in flight wait in the channel and
//! form the next batch, so one commit's round trips and flush are shared by every
//! request that arrived meanwhile.
//!
//! A command's answer is decided while its batch is applied but sent only after the
//! commit: nothing is ever answered as done that the database did not commit. A batch
//! the database aborted as a deadlock or serialization victim is applied again from
//! the start (its answers decided again), a bounded number of times.
//!
//! The database unreachable (refused or lost connections, a restart, a failover): the
//! batch is answered `Unavailable`, the store goes `Faulted` (logged once), and until
//! a probe on a timer gets an answer from the database again, every command is answered
//! `Unavailable` at once instead of waiting for a connection that will not come. The
//! pool reconnects by itself; nothing in the process restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::PostgresError;
use super::batch::Batch;
use super::ingest::Incoming;
use crate::store::error::StoreError;
use crate::store::records::{EntityRecord, SubscriptionRecord};
use crate::store::requests::{
    AttemptReport, EntityOutcome, IngestOutcome, PutOutcome, ReplayOutcome, RetryOutcome, Sweep,
    SweepOutcome, WriterSettings,
};
use crate::store::space::StorageState;
use crate::store::tenancy::ApiKeyRecord;
use crate::store::{DueSink, Shared, StoreObserver, now_ms};

/// Most commands applied in one transaction: bounds the latency one commit adds to the
/// first command of a batch and the memory a batch holds.
const MAX_BATCH: usize = 1024;
/// Longest an attempt's outcome waits for other commands to share its commit (as the
/// redb writer: nobody waits for an outcome, and a lost one costs one more attempt).
const OUTCOME_LINGER: Duration = Duration::from_millis(25);
/// Batches of ingests that may commit at once, beside a batch of outcomes: while one
/// waits for its commit's flush the next is written, so a commit carries what arrived
/// meanwhile instead of producers waiting a whole commit for their turn, and ingest
/// does not wait for the outcomes of deliveries.
const LANES: usize = 2;
/// Times a batch the database aborted as a deadlock or serialization victim is
/// applied again before its commands are answered with the error.
const RETRIES: usize = 3;
/// While faulted, how often the database is probed (and so how long after it is back
/// the store takes writes again).
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long one probe may take: a database that accepts TCP but does not answer counts
/// as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a command's answer goes; sent only once its batch has committed.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One command: what it asks, where its answer goes, and the answer once its batch has
/// decided it (sent only after the commit).
pub(super) struct Call<A, T> {
    pub args: A,
    reply: Reply<T>,
    answer: Option<Result<T, StoreError>>,
}

impl<A, T> Call<A, T> {
    pub fn new(args: A, reply: Reply<T>) -> Self {
        Self {
            args,
            reply,
            answer: None,
        }
    }

    /// Decides the answer (applying the batch again decides it again).
    pub fn settle(&mut self, answer: Result<T, StoreError>) {
        self.answer = Some(answer);
    }

    /// Sends the decided answer, or `failed` when the batch did not commit.
    fn send(self, failed: Option<&dyn Fn() -> StoreError>) {
        let answer = match failed {
            Some(error) => Err(error()),
            None => self.answer.unwrap_or(Err(StoreError::Aborted)),
        };
        let _ = self.reply.send(answer);
    }
}

pub(super) struct PutArgs {
    pub id: u128,
    pub record: SubscriptionRecord,
    pub expected_updated_ms: Option<u64>,
}

pub(super) struct ReplayArgs {
    pub subscription: u128,
    pub since_ms: u64,
    pub until_ms: u64,
    pub only_failed: bool,
}

/// A write command, one variant per `Store` method, each answered with the type that
/// method returns.
pub(super) enum Command {
    Ingest(Call<Vec<Incoming>, Vec<IngestOutcome>>),
    PutSubscription(Call<Box<PutArgs>, PutOutcome>),
    DeleteSubscription(Call<u128, bool>),
    RecordAttempt(Call<Box<AttemptReport>, ()>),
    Sweep(Call<Sweep, SweepOutcome>),
    Retry(Call<u128, RetryOutcome>),
    Replay(Call<ReplayArgs, ReplayOutcome>),
    CreateEntity(Call<(String, EntityRecord), EntityOutcome>),
    DeleteEntity(Call<String, EntityOutcome>),
    CreateKey(Call<(u128, ApiKeyRecord), ()>),
    RevokeKey(Call<u128, bool>),
    /// Reads subscriptions, keys and entities again (another node changed them) and
    /// publishes them. Through the writer, between two batches, so that a batch never
    /// publishes a snapshot older than the reload, and the revisions its edits compare
    /// against are the reloaded ones.
    Reload(Call<(), ()>),
}

impl Command {
    /// Sends the answer its batch decided, or `failed`'s error.
    fn send(self, failed: Option<&dyn Fn() -> StoreError>) {
        match self {
            Command::Ingest(call) => call.send(failed),
            Command::PutSubscription(call) => call.send(failed),
            Command::DeleteSubscription(call) => call.send(failed),
            Command::RecordAttempt(call) => call.send(failed),
            Command::Sweep(call) => call.send(failed),
            Command::Retry(call) => call.send(failed),
            Command::Replay(call) => call.send(failed),
            Command::CreateEntity(call) => call.send(failed),
            Command::DeleteEntity(call) => call.send(failed),
            Command::CreateKey(call) => call.send(failed),
            Command::RevokeKey(call) => call.send(failed),
            Command::Reload(call) => call.send(failed),
        }
    }

    /// An attempt's outcome: nobody waits for it, so it may linger for company.
    pub(super) fn is_outcome(&self) -> bool {
        matches!(self, Command::RecordAttempt(..))
    }
}

/// What a batch needs to commit and then to publish what it committed: the writer's,
/// shared with the ingest batches it runs beside the next one.
#[derive(Clone)]
pub(super) struct Lane {
    pub pool: Pool,
    pub shared: Shared,
    pub sink: Arc<dyn DueSink>,
    pub observer: Arc<dyn StoreObserver>,
    pub settings: WriterSettings,
    /// This node's name (the origin of its notifications) and its partitions.
    pub node: String,
    pub ownership: super::cluster::Ownership,
}

pub(super) struct Writer {
    pub lane: Lane,
    pub rx: mpsc::Receiver<Command>,
    /// Each subscription's `revision` as this node last read or wrote it: the
    /// compare-and-set of an edit made with `expected_updated_ms` (another node's
    /// change since raises it).
    pub revisions: HashMap<u128, i64>,
    /// The event-type catalog the snapshot is built with (for `Reload`).
    pub catalog: HashMap<String, String>,
}

impl Writer {
    pub async fn run(mut self) {
        // Ends the prober when the writer ends.
        let stop = CancellationToken::new();
        let _stop = stop.clone().drop_guard();
        let lanes = Arc::new(Semaphore::new(LANES));
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.rx.recv().await {
            batch.push(first);
            self.take_queued(&mut batch);
            if batch.iter().all(Command::is_outcome) {
                self.linger(&mut batch).await;
            }
            if batch.iter().any(|c| matches!(c, Command::Reload(_))) {
                let (reloads, rest): (Vec<_>, Vec<_>) = batch
                    .drain(..)
                    .partition(|c| matches!(c, Command::Reload(_)));
                batch = rest;
                self.reload(reloads).await;
            }
            if batch.is_empty() {
                continue;
            }
            if self.lane.shared.health.state() == StorageState::Faulted {
                for command in batch.drain(..) {
                    command.send(Some(&|| StoreError::Unavailable));
                }
                continue;
            }
            if batch.iter().any(|c| matches!(c, Command::Ingest(_))) {
                // Ingests make new rows only: they commit in a lane beside the rest and
                // beside the next batch. Two lanes meet only on an Idempotency-Key,
                // where the database makes the second wait for the first's commit.
                let (ingests, rest): (Vec<_>, Vec<_>) = batch
                    .drain(..)
                    .partition(|c| matches!(c, Command::Ingest(_)));
                batch = rest;
                let Ok(lane) = lanes.clone().acquire_owned().await else {
                    break;
                };
                let (writer, stop) = (self.lane.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut ingests = ingests;
                    writer.apply(&mut ingests, &HashMap::new(), &stop).await;
                    drop(lane);
                });
                if batch.is_empty() {
                    batch.reserve(MAX_BATCH);
                    continue;
                }
            }
            // Outcomes change deliveries that committed before they were dispatched, and
            // their subscriptions' health, which only this writer changes: they run
            // beside the ingest lanes. Anything else (subscriptions, keys, entities,
            // sweeps, retries, replays) decides against the snapshot and rows that the
            // lanes' fan-out read: alone.
            let alone = if batch.iter().all(Command::is_outcome) {
                None
            } else {
                match lanes.acquire_many(LANES as u32).await {
                    Ok(all) => Some(all),
                    Err(_) => break,
                }
            };
            let revisions = self.lane.apply(&mut batch, &self.revisions, &stop).await;
            for (id, revision) in revisions {
                match revision {
                    Some(revision) => self.revisions.insert(id, revision),
                    None => self.revisions.remove(&id),
                };
            }
            drop(alone);
        }
        // Everything queued is committed before the writer ends.
        let _ = lanes.acquire_many(LANES as u32).await;
    }

    fn take_queued(&mut self, batch: &mut Vec<Command>) {
        while batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
    }

    /// Answers `Reload` commands with one read of the snapshot, published, and its
    /// revisions taken as the ones edits compare against.
    async fn reload(&mut self, calls: Vec<Command>) {
        let loaded = async {
            let mut client = self.lane.pool.get().await.map_err(PostgresError::from)?;
            super::store::load_index(&mut client, self.catalog.clone()).await
        }
        .await;
        let failed = match loaded {
            Ok((index, revisions)) => {
                self.lane.shared.snapshots.publish(index);
                self.revisions = revisions;
                None
            }
            Err(error) => Some(Arc::new(error)),
        };
        for command in calls {
            if let Command::Reload(mut call) = command {
                match &failed {
                    None => call.settle(Ok(())),
                    Some(error) => call.settle(Err(StoreError::Shared(error.clone()))),
                }
                call.send(None);
            }
        }
    }

    /// Holds a batch of outcomes alone for up to `OUTCOME_LINGER`, until anything else
    /// arrives, so that an outcome shares the next ingest's commit.
    async fn linger(&mut self, batch: &mut Vec<Command>) {
        let deadline = tokio::time::Instant::now() + OUTCOME_LINGER;
        while batch.len() < MAX_BATCH {
            let Ok(Some(command)) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                return; // the deadline passed, or every sender is gone
            };
            let urgent = !command.is_outcome();
            batch.push(command);
            self.take_queued(batch);
            if urgent {
                return;
            }
        }
    }
}

impl Lane {
    /// Applies `batch` (edits compared against `known` revisions), answers its commands
    /// and publishes what it committed; returns the revisions it wrote.
    async fn apply(
        &self,
        batch: &mut Vec<Command>,
        known: &HashMap<u128, i64>,
        stop: &CancellationToken,
    ) -> Vec<(u128, Option<i64>)> {
        let started = Instant::now();
        let size = batch.len();
        let mut tries = 0;
        let result = loop {
            let current = self.shared.snapshots.current();
            let owned = self.ownership.changes().borrow().clone();
            let mut applied = Batch::new(&current, known, owned, self.settings, now_ms());
            match applied.transact(&self.pool, &self.node, batch).await {
                Ok(()) => break Ok(applied.finish()),
                Err(StoreError::Postgres(error)) if error.is_victim() && tries < RETRIES => {
                    tries += 1;
                }
                Err(error) => break Err(error),
            }
        };
        match result {
            Ok(mut done) => {
                if let Some(index) = done.index {
                    self.shared.snapshots.publish(index);
                }
                let took = started.elapsed();
                self.shared.commits.record(size, took);
                done.effects.report.commands = size;
                done.effects.report.took = took;
                self.observer.committed(&done.effects.report);
                // Forget before scheduling: a batch may reset a subscription's queue and
                // then queue new entries for it.
                if !done.effects.forget.is_empty() {
                    self.sink.forget(&done.effects.forget);
                }
                // This node's dispatcher takes what it owns; the owners of the rest
                // were notified in the transaction.
                let ownership = &self.ownership;
                done.effects
                    .due
                    .retain(|e| super::node::dispatches(ownership, e.subscription));
                if !done.effects.due.is_empty() {
                    self.sink.schedule(done.effects.due, done.effects.fresh);
                }
                for command in batch.drain(..) {
                    command.send(None);
                }
                done.revisions
            }
            Err(error) if error.is_io() => {
                self.fault(&error, size, stop);
                for command in batch.drain(..) {
                    command.send(Some(&|| StoreError::Unavailable));
                }
                Vec::new()
            }
            Err(error) => {
                tracing::error!(%error, batch = size, "store commit failed; the batch was rolled back");
                let error = Arc::new(error);
                for command in batch.drain(..) {
                    command.send(Some(&|| StoreError::Shared(error.clone())));
                }
                Vec::new()
            }
        }
    }

    /// The database cannot be reached: refuse work until a probe gets an answer again.
    /// Logged once per outage, not per request.
    fn fault(&self, error: &StoreError, batch: usize, stop: &CancellationToken) {
        if !self.shared.health.set(StorageState::Faulted) {
            return;
        }
        self.observer.storage_state(StorageState::Faulted);
        tracing::error!(%error, batch, "the database cannot be reached; the batch was not committed, and new work is refused until it answers again");
        let pool = self.pool.clone();
        let shared = self.shared.clone();
        let observer = self.observer.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                }
                if probe(&pool).await {
                    if shared.health.set(StorageState::Ok) {
                        observer.storage_state(StorageState::Ok);
                        tracing::info!("the database answers again; the store takes writes");
                    }
                    return;
                }
            }
        });
    }
}

/// Whether a pooled connection answers a statement now.
async fn probe(pool: &Pool) -> bool {
    let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
        let client = pool.get().await.map_err(PostgresError::from)?;
        client.batch_execute("SELECT 1").await?;
        Ok::<_, PostgresError>(())
    })
    .await;
    match answered {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, "the database does not answer yet");
            false
        }
        Err(_) => false,
    }
}
