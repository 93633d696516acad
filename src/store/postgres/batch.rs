//! One batch of write commands, applied in one transaction. The rules are the redb
//! writer's (`redb/ops`), calling the same `lifecycle` functions; what differs is how
//! the rows are reached, so that a batch costs a few round trips whatever its size:
//!
//! 1. `BEGIN`, pipelined with everything the commands need read first: the deliveries
//!    that outcomes and retries change (locked, with their event's type and entity),
//!    their subscriptions' health, and the claim of every new Idempotency-Key;
//! 2. the commands decided in order in memory against the published snapshot, as redb
//!    does; the rare ones that the database itself may refuse (a subscription, entity
//!    or key written by another node meanwhile) run there at once, each in a savepoint
//!    so that a refusal undoes that command alone;
//! 3. every row the batch made or changed written with one multi-row statement per
//!    kind (`flush.rs`), pipelined;
//! 4. `COMMIT`.
//!
//! Attempt outcomes are fenced: a batch that records any locks (shared) those of its
//! deliveries' partitions the database says this node owns, and drops the outcome of a delivery whose partition
//! another node owns now, or that this node holds at another epoch than the one it
//! dispatched under (`fence`). The new owner dispatches that delivery again; the
//! dropped outcome was an attempt made while the lease was being lost.
//!
//! Idempotency-Keys are claimed in step 1, before anything is decided (`ingest.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use deadpool_postgres::{Client, Pool};

use super::PostgresError;
use super::cluster::Owned;
use super::flush;
use super::ingest::{IdemRow, Idempotency, Incoming, KeyRow, count};
use super::schema::partition_of;
use super::writer::Command;
use crate::store::error::StoreError;
use crate::store::index::SubscriptionIndex;
use crate::store::records::{DeliveryRecord, SubscriptionRecord, SubscriptionStatus};
use crate::store::requests::WriterSettings;
use crate::store::stats::PendingStats;
use crate::store::{CommitReport, DueEntry, Fresh};

/// Side effects released only after a successful commit.
#[derive(Default)]
pub(super) struct Effects {
    pub due: Vec<DueEntry>,
    pub fresh: Vec<Fresh>,
    /// Subscriptions whose in-memory queue must be dropped (deleted, paused, resumed).
    pub forget: Vec<u128>,
    pub report: CommitReport,
}

/// What a committed batch hands the writer to publish.
pub(super) struct Done {
    pub index: Option<SubscriptionIndex>,
    /// Subscriptions' revisions as written (None: deleted).
    pub revisions: Vec<(u128, Option<i64>)>,
    pub effects: Effects,
}

/// An event the batch stores.
pub(super) struct EventRow {
    pub id: u128,
    pub entity: String,
    pub event_type: String,
    pub created_ms: u64,
    pub body: Bytes,
}

/// A delivery the batch read or made, as it is now.
pub(super) struct DeliveryRow {
    pub record: DeliveryRecord,
    /// Made by this batch: inserted, not updated.
    pub new: bool,
    /// Changed by this batch: written at the end.
    pub dirty: bool,
    /// Its event's (entity, type), read with it (None for a new one: its event is in
    /// the batch).
    pub event: Option<(String, String)>,
}

/// An attempt to insert.
pub(super) struct AttemptRow {
    pub delivery: u128,
    pub n: u32,
    pub record: Vec<u8>,
    pub request: Option<Vec<u8>>,
}

/// A subscription's `subscription_health` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Health {
    pub last_success_ms: Option<u64>,
    pub failing_since_ms: Option<u64>,
}

pub(super) struct Batch<'i> {
    current: &'i SubscriptionIndex,
    /// The subscriptions as changed by this batch so far; published after the commit.
    changed: Option<SubscriptionIndex>,
    known: &'i HashMap<u128, i64>,
    pub revisions: BTreeMap<u128, Option<i64>>,
    pub settings: WriterSettings,
    pub now: u64,
    pub effects: Effects,
    pub stats: PendingStats,
    pub deliveries: BTreeMap<u128, DeliveryRow>,
    /// The health of the subscriptions of the deliveries read, and whether changed.
    pub health: BTreeMap<u128, (Health, bool)>,
    pub events: Vec<EventRow>,
    pub attempts: Vec<AttemptRow>,
    pub idempotency: Idempotency,
    /// The partitions this node dispatches, as its heartbeat last published them.
    owned: Owned,
    /// Deliveries whose attempt outcome the fence dropped.
    fenced: HashSet<u128>,
}

impl<'i> Batch<'i> {
    pub fn new(
        current: &'i SubscriptionIndex,
        known: &'i HashMap<u128, i64>,
        owned: Owned,
        settings: WriterSettings,
        now: u64,
    ) -> Self {
        Self {
            current,
            changed: None,
            known,
            revisions: BTreeMap::new(),
            settings,
            now,
            effects: Effects::default(),
            stats: PendingStats::default(),
            deliveries: BTreeMap::new(),
            health: BTreeMap::new(),
            events: Vec::new(),
            attempts: Vec::new(),
            idempotency: Idempotency::default(),
            owned,
            fenced: HashSet::new(),
        }
    }

    pub fn finish(self) -> Done {
        Done {
            index: self.changed,
            revisions: self.revisions.into_iter().collect(),
            effects: self.effects,
        }
    }

    /// Applies `batch` in one transaction on a pooled connection and commits it. On
    /// any failure the transaction is rolled back (or, if that cannot be said, the
    /// connection is closed rather than pooled inside it).
    pub async fn transact(
        &mut self,
        pool: &Pool,
        origin: &str,
        batch: &mut [Command],
    ) -> Result<(), StoreError> {
        let client = pool.get().await.map_err(PostgresError::from)?;
        let result = self.run(&client, origin, batch).await;
        if result.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
            drop(deadpool_postgres::Object::take(client));
        }
        result
    }

    async fn run(
        &mut self,
        client: &Client,
        origin: &str,
        batch: &mut [Command],
    ) -> Result<(), StoreError> {
        let (claims, reads) = self.plan(batch);
        // A batch of plain ingests (no keys) reads nothing and runs nothing while it is
        // decided: its BEGIN goes out with its rows, one round trip before the COMMIT.
        let talks = !claims.is_empty()
            || !reads.is_empty()
            || batch.iter().any(|c| !matches!(c, Command::Ingest(_)));
        let outcomes: Vec<u128> = batch
            .iter()
            .filter_map(|c| match c {
                Command::RecordAttempt(call) => Some(call.args.delivery),
                _ => None,
            })
            .collect();
        let (_, claimed, loaded, health, holds) = tokio::try_join!(
            biased;
            flush::begin(client, talks),
            flush::claim(client, &claims, self.now),
            flush::load_deliveries(client, &reads),
            flush::load_health(client, &reads),
            flush::held_partitions(client, origin, &outcomes),
        )?;
        let claimed: HashSet<[u8; 32]> = claimed.into_iter().collect();
        let mut held = Vec::new();
        for (key, row) in claims {
            if claimed.contains(&key) {
                self.idempotency.claimed.insert(key, row);
            } else {
                held.push(key);
            }
        }
        if !held.is_empty() {
            self.idempotency.seen = flush::read_idempotency(client, &held, self.now).await?;
        }
        self.deliveries = loaded;
        self.health = health.into_iter().map(|(s, h)| (s, (h, false))).collect();
        if !outcomes.is_empty() {
            self.fence(batch, &holds);
        }

        for command in batch.iter_mut() {
            self.apply(client, command).await?;
        }
        flush::write(client, self, !talks).await?;
        // Told to every node only if this commits: the owners of the new due work, and
        // every snapshot when subscriptions, keys or entities changed.
        let payloads = super::listen::due_payloads(origin, &self.effects.due);
        if !payloads.is_empty() {
            client
                .execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                    &[&super::listen::DUE_CHANNEL, &payloads],
                )
                .await
                .map_err(PostgresError::from)?;
        }
        if self.changed.is_some() {
            client
                .execute(
                    "SELECT pg_notify($1, '')",
                    &[&super::listen::SNAPSHOT_CHANNEL],
                )
                .await
                .map_err(PostgresError::from)?;
        }
        flush::commit(client).await?;
        Ok(())
    }

    /// Marks the outcomes this node may no longer write: their delivery's partition is
    /// not among those the database says it owns (`held`, locked until the commit), or
    /// is held there at another epoch than this node's heartbeat published (lost and
    /// claimed again since: another node may have dispatched it in between).
    fn fence(&mut self, batch: &[Command], held: &BTreeMap<u16, i64>) {
        for command in batch {
            let Command::RecordAttempt(call) = command else {
                continue;
            };
            let id = call.args.delivery;
            let Some(row) = self.deliveries.get(&id) else {
                continue;
            };
            let partition = partition_of(row.record.subscription) as u16;
            let mine = match (held.get(&partition), self.owned.get(&partition)) {
                (Some(db), Some(local)) => db == local,
                // Stale: the heartbeat stopped dispatching, but nobody took it over.
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !mine {
                self.fenced.insert(id);
            }
        }
    }

    /// Whether `fence` dropped this delivery's outcome.
    pub(super) fn is_fenced(&self, delivery: u128) -> bool {
        self.fenced.contains(&delivery)
    }

    /// The keys to claim (the first use of each in the batch, its fan-out counted
    /// against the snapshot) and the deliveries to read, each sorted, so that two
    /// nodes' batches take the locks of one kind in the same order (a deadlock across
    /// kinds is broken by the database and the batch applied again).
    fn plan(&self, batch: &[Command]) -> (Vec<KeyRow>, Vec<u128>) {
        let mut claims = BTreeMap::new();
        let mut reads = BTreeSet::new();
        for command in batch {
            match command {
                Command::Ingest(call) => {
                    for event in &call.args {
                        let Some(key) = &event.idempotency else {
                            continue;
                        };
                        claims.entry(key.key_hash).or_insert_with(|| IdemRow {
                            created_ms: self.now,
                            event: event.id,
                            deliveries: count(self.targets(event).len()),
                            body_sha256: key.body_sha256,
                        });
                    }
                }
                Command::RecordAttempt(call) => {
                    reads.insert(call.args.delivery);
                }
                Command::Retry(call) => {
                    reads.insert(call.args);
                }
                _ => {}
            }
        }
        (claims.into_iter().collect(), reads.into_iter().collect())
    }

    /// Decides one command (its answer is sent after the commit). An error here fails
    /// the whole batch.
    async fn apply(&mut self, client: &Client, command: &mut Command) -> Result<(), StoreError> {
        match command {
            Command::Ingest(call) => {
                let outcomes = self.ingest(&call.args);
                call.settle(Ok(outcomes));
            }
            Command::PutSubscription(call) => {
                let outcome = self.put_subscription(client, &call.args).await?;
                call.settle(outcome);
            }
            Command::DeleteSubscription(call) => {
                let existed = self.delete_subscription(client, call.args).await?;
                call.settle(Ok(existed));
            }
            Command::RecordAttempt(call) => {
                self.record_attempt(client, &call.args).await?;
                call.settle(Ok(()));
            }
            Command::Sweep(call) => {
                let outcome = self.sweep(client, call.args).await?;
                call.settle(Ok(outcome));
            }
            Command::Retry(call) => {
                let outcome = self.retry(call.args);
                call.settle(Ok(outcome));
            }
            Command::Replay(call) => {
                let outcome = self.replay(client, &call.args).await?;
                call.settle(Ok(outcome));
            }
            Command::CreateEntity(call) => {
                let (id, record) = &call.args;
                let outcome = self.create_entity(client, id, record).await?;
                call.settle(Ok(outcome));
            }
            Command::DeleteEntity(call) => {
                let outcome = self.delete_entity(client, &call.args).await?;
                call.settle(Ok(outcome));
            }
            Command::CreateKey(call) => {
                let (id, record) = &call.args;
                let outcome = self.create_key(client, *id, record).await?;
                call.settle(outcome);
            }
            Command::RevokeKey(call) => {
                let existed = self.revoke_key(client, call.args).await?;
                call.settle(Ok(existed));
            }
            // The writer answers these between batches (`Writer::reload`).
            Command::Reload(_) => {}
        }
        Ok(())
    }

    pub(super) fn changed_mut(&mut self) -> &mut SubscriptionIndex {
        let current = self.current;
        self.changed.get_or_insert_with(|| current.clone())
    }

    pub(super) fn subs(&self) -> &SubscriptionIndex {
        self.changed.as_ref().unwrap_or(self.current)
    }

    pub(super) fn subscription(&self, id: u128) -> Option<SubscriptionRecord> {
        self.subs().get(id).map(|s| (**s).clone())
    }

    pub(super) fn is_active(&self, subscription: u128) -> bool {
        self.subs()
            .get(subscription)
            .is_some_and(|s| s.status == SubscriptionStatus::Active)
    }

    /// A subscription's revision as the batch knows it.
    pub(super) fn revision(&self, id: u128) -> Option<i64> {
        match self.revisions.get(&id) {
            Some(revision) => *revision,
            None => self.known.get(&id).copied(),
        }
    }

    pub(super) fn targets(&self, event: &Incoming) -> Vec<u128> {
        match &event.targets {
            Some(targets) => targets.clone(),
            None => self.subs().matching(&event.entity, &event.event_type),
        }
    }

    /// Writes a delivery back into the batch (and so, at the end, into its row).
    pub(super) fn save(&mut self, delivery: u128, record: DeliveryRecord) {
        if let Some(row) = self.deliveries.get_mut(&delivery) {
            row.record = record;
            row.dirty = true;
        }
    }

    /// Takes a delivery out of the due queue (in PostgreSQL the queue is its
    /// `next_attempt_ms`).
    pub(super) fn unschedule(record: &mut DeliveryRecord) {
        record.next_attempt_ms = None;
        record.parked = false;
    }

    /// Puts a delivery in the due queue at `at`; the dispatcher is told only while its
    /// subscription is ACTIVE (it reads the rest when the subscription is resumed).
    pub(super) fn schedule(&mut self, delivery: u128, record: &mut DeliveryRecord, at: u64) {
        Self::unschedule(record);
        record.next_attempt_ms = Some(at);
        if self.is_active(record.subscription) {
            self.effects.due.push(DueEntry {
                due_ms: at,
                delivery,
                subscription: record.subscription,
            });
        }
    }

    pub(super) fn health_mut(&mut self, subscription: u128) -> &mut Health {
        let (health, changed) = self.health.entry(subscription).or_default();
        *changed = true;
        health
    }
}
