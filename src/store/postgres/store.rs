//! The PostgreSQL backend's handle: the pool, the writer's queue, and what every backend
//! shares. Opening builds the pool, migrates the schema (once however many nodes start
//! together), loads subscriptions, entities and API keys into the snapshot, and starts
//! the writer task (`writer.rs`). Writes go to the writer and are answered after their
//! batch commits; reads (`reads.rs`) take a pooled connection each.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::IsolationLevel;

use super::cluster::{Heartbeat, Ownership};
use super::ingest::Incoming;
use super::rows::{col, from_ms};
use super::types::Uuid;
use super::writer::{Call, Command, Lane, PutArgs, ReplayArgs, Reply, Writer};
use super::{PostgresError, listen, migrate, node, pool};
use crate::store::codec::decode;
use crate::store::error::StoreError;
use crate::store::index::SubscriptionIndex;
use crate::store::records::{EntityRecord, SubscriptionRecord};
use crate::store::requests::{
    AttemptReport, EntityOutcome, IngestOutcome, NewEvent, PutOutcome, ReplayOutcome, RetryOutcome,
    Sweep, SweepOutcome, WriterSettings,
};
use crate::store::tenancy::{ApiKeyRecord, EntityTree, KeyIndex};
use crate::store::{DueSink, Shared, StoreObserver};

/// Commands that may wait for the writer: enough to fill several batches, small enough
/// that a stalled database pushes back on producers instead of growing memory.
const WRITER_QUEUE: usize = 4096;
/// Notifications waiting for the node's follower.
const NOTICES: usize = 256;

#[derive(Clone)]
pub(crate) struct PgStore {
    pub(super) pool: Pool,
    pub(super) shared: Shared,
    /// Told of what runs beside the writer (purge steps).
    pub(super) observer: Arc<dyn StoreObserver>,
    tx: mpsc::Sender<Command>,
    /// The partitions this node owns (`cluster.rs`).
    ownership: Ownership,
    /// Stops the heartbeat (which then gives the partitions back), the listener and
    /// the node's follower once the last handle is gone.
    _cluster: Arc<tokio_util::sync::DropGuard>,
}

/// The `Store` methods as PostgreSQL runs them (their contracts are documented there).
impl PgStore {
    /// Builds the pool, migrates the schema, publishes the snapshot and starts the
    /// writer, which ends once every `PgStore` is gone (its handle is returned).
    pub async fn open(
        config: &crate::config::Postgres,
        settings: WriterSettings,
        shared: Shared,
        catalog: HashMap<String, String>,
        sink: Arc<dyn DueSink>,
        observer: Arc<dyn StoreObserver>,
    ) -> Result<(PgStore, JoinHandle<()>), StoreError> {
        let pool = pool(config)?;
        let mut client = pool.get().await.map_err(PostgresError::from)?;
        migrate(&mut client).await?;
        let (index, revisions) = load_index(&mut client, catalog.clone()).await?;
        drop(client);
        shared.snapshots.publish(index);
        // This node's part in the cluster: its partitions (the first heartbeat before
        // anything is dispatched), the notifications, and what it does with both.
        let node = config.node_name().map_err(PostgresError::NodeName)?;
        let (mut beat, ownership) = Heartbeat::new(pool.clone(), node.clone(), config.lease);
        beat.beat().await?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = Writer {
            lane: Lane {
                pool: pool.clone(),
                shared: shared.clone(),
                sink: sink.clone(),
                observer: observer.clone(),
                settings,
                node: node.clone(),
                ownership: ownership.clone(),
            },
            rx,
            revisions,
            catalog,
        };
        // The node gives its partitions back only once the writer has committed the
        // last outcomes (a partition given back fences them).
        let leave = tokio_util::sync::CancellationToken::new();
        let beating = tokio::spawn(beat.run(leave.clone()));
        let handle = tokio::spawn(async move {
            writer.run().await;
            leave.cancel();
            let _ = beating.await;
        });
        let stop = tokio_util::sync::CancellationToken::new();
        let (out, notices) = mpsc::channel(NOTICES);
        tokio::spawn(listen::run(config.clone(), out, None, stop.clone()));
        let reload = {
            let tx = tx.clone();
            move || {
                let tx = tx.clone();
                async move {
                    let (reply, answer) = oneshot::channel();
                    tx.send(Command::Reload(Call::new((), reply)))
                        .await
                        .map_err(|_| StoreError::WriterGone)?;
                    answer.await.map_err(|_| StoreError::WriterGone)?
                }
            }
        };
        tokio::spawn(node::follow(
            node,
            notices,
            ownership.clone(),
            shared.snapshots.clone(),
            sink,
            reload,
            stop.clone(),
        ));
        let store = PgStore {
            pool,
            shared,
            observer,
            tx,
            ownership,
            _cluster: Arc::new(stop.drop_guard()),
        };
        Ok((store, handle))
    }

    /// Sends a command to the writer and waits for its answer (after the commit).
    async fn command<A, T>(
        &self,
        args: A,
        command: impl FnOnce(Call<A, T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer): (Reply<T>, _) = oneshot::channel();
        self.tx
            .send(command(Call::new(args, reply)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    pub async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<IngestOutcome>, StoreError> {
        let events: Vec<Incoming> = events.into_iter().map(Incoming::from).collect();
        self.command(events, Command::Ingest).await
    }

    pub async fn put_subscription(
        &self,
        id: u128,
        record: SubscriptionRecord,
        expected_updated_ms: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        let args = Box::new(PutArgs {
            id,
            record,
            expected_updated_ms,
        });
        self.command(args, Command::PutSubscription).await
    }

    pub async fn delete_subscription(&self, id: u128) -> Result<bool, StoreError> {
        self.command(id, Command::DeleteSubscription).await
    }

    pub async fn record_attempt(&self, report: AttemptReport) -> Result<(), StoreError> {
        self.command(Box::new(report), Command::RecordAttempt).await
    }

    /// One bounded step of cancelling a deleted subscription's deliveries, expiring a
    /// paused one's or bringing a resumed one's retries forward (`sweep.rs`).
    pub async fn sweep(&self, sweep: Sweep) -> Result<SweepOutcome, StoreError> {
        self.command(sweep, Command::Sweep).await
    }

    pub async fn retry(&self, delivery: u128) -> Result<RetryOutcome, StoreError> {
        self.command(delivery, Command::Retry).await
    }

    pub async fn replay(
        &self,
        subscription: u128,
        since_ms: u64,
        until_ms: u64,
        only_failed: bool,
    ) -> Result<ReplayOutcome, StoreError> {
        let args = ReplayArgs {
            subscription,
            since_ms,
            until_ms,
            only_failed,
        };
        self.command(args, Command::Replay).await
    }

    pub async fn create_entity(
        &self,
        id: String,
        record: EntityRecord,
    ) -> Result<EntityOutcome, StoreError> {
        self.command((id, record), Command::CreateEntity).await
    }

    pub async fn delete_entity(&self, id: String) -> Result<EntityOutcome, StoreError> {
        self.command(id, Command::DeleteEntity).await
    }

    pub async fn create_key(&self, id: u128, record: ApiKeyRecord) -> Result<(), StoreError> {
        self.command((id, record), Command::CreateKey).await
    }

    pub async fn revoke_key(&self, id: u128) -> Result<bool, StoreError> {
        self.command(id, Command::RevokeKey).await
    }

    /// A PostgreSQL database is backed up with its own tools.
    pub async fn backup(
        &self,
        _dest: std::path::PathBuf,
    ) -> Result<crate::store::BackupInfo, StoreError> {
        Err(StoreError::BackupElsewhere)
    }

    /// Whether this node dispatches `subscription` now: it owns its partition.
    pub fn dispatches(&self, subscription: u128) -> bool {
        node::dispatches(&self.ownership, subscription)
    }
}

/// Subscriptions, entities and API keys as of one moment (one repeatable-read
/// transaction), and each subscription's revision.
pub(super) async fn load_index(
    client: &mut deadpool_postgres::Client,
    catalog: HashMap<String, String>,
) -> Result<(SubscriptionIndex, HashMap<u128, i64>), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(PostgresError::from)?;
    let (subscriptions, entities, keys) = tokio::try_join!(
        tx.query("SELECT id, revision, record FROM subscriptions", &[]),
        tx.query("SELECT id, name, parent, created_ms FROM entities", &[]),
        tx.query("SELECT id, record FROM api_keys", &[]),
    )
    .map_err(PostgresError::from)?;
    tx.commit().await.map_err(PostgresError::from)?;

    let mut records = Vec::with_capacity(subscriptions.len());
    let mut revisions = HashMap::with_capacity(subscriptions.len());
    for row in &subscriptions {
        let id = col::<Uuid>(row, 0)?.0;
        revisions.insert(id, col(row, 1)?);
        records.push((id, decode::<SubscriptionRecord>(col(row, 2)?)?));
    }
    let mut tree = EntityTree::default();
    for row in &entities {
        let record = EntityRecord {
            name: col(row, 1)?,
            parent: col(row, 2)?,
            created_ms: from_ms(col(row, 3)?),
        };
        tree.insert(col(row, 0)?, record);
    }
    let mut index = KeyIndex::default();
    for row in &keys {
        index.insert(
            col::<Uuid>(row, 0)?.0,
            decode::<ApiKeyRecord>(col(row, 1)?)?,
        );
    }
    let snapshot = SubscriptionIndex::from_records(records).with_tenancy(tree, index, catalog);
    Ok((snapshot, revisions))
}
