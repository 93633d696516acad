//! Store-level tests of the whole-file work: purge removes every row of an ended event
//! and nothing of an unfinished one, freed pages are reused so the file stops growing,
//! compact shrinks the file and refuses an open one, and a backup holds every table.

use std::path::Path;
use std::sync::Arc;

use ::redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::tables::*;
use super::*;
use crate::dispatch::queues::Queues;
use crate::ids::uuid_v7;
use crate::store::records::{AttemptRecord, EventRecord, SubscriptionRecord};
use crate::store::*;

struct Quiet;

impl StoreObserver for Quiet {
    fn committed(&self, _: &CommitReport) {}
    fn storage_state(&self, _: StorageState) {}
}

pub(super) fn open(path: &Path) -> (Store, WriterHandle) {
    open_with(path, 3_600_000)
}

pub(super) fn open_with(path: &Path, max_age_ms: u64) -> (Store, WriterHandle) {
    let settings = WriterSettings {
        max_age_ms,
        disable_after_ms: 3_600_000,
        min_free: crate::config::MinFree::Bytes(0),
    };
    Store::open(
        path,
        4 << 20,
        settings,
        std::collections::HashMap::new(),
        Arc::new(Queues::new(16)),
        Arc::new(Quiet),
    )
    .unwrap()
}

pub(super) fn subscription() -> SubscriptionRecord {
    crate::store::testing::subscription_to("root", &["*"])
}

pub(super) fn event(n: u32, key: Option<u8>) -> NewEvent {
    NewEvent {
        id: uuid_v7(),
        record: EventRecord {
            entity: "root".into(),
            event_type: "job.created".into(),
            created_ms: now_ms(),
            body: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(300)).into_bytes(),
        },
        idempotency: key.map(|k| IdempotencyKey {
            key_hash: [k; 32],
            body_sha256: [0; 32],
        }),
        targets: None,
    }
}

pub(super) async fn succeed(store: &Store, delivery: u128) {
    let attempt = AttemptRecord {
        attempted_ms: now_ms(),
        url: "https://example.com/".into(),
        status: Some(200),
        error: None,
        duration_ms: 1,
        response_body: vec![b'y'; 200],
        response_headers: vec![],
    };
    store
        .record_attempt(AttemptReport {
            delivery,
            attempt,
            request_headers: vec![("webhook-id".into(), "evt_1".into())],
            next: NextStep::Succeeded,
            gone: false,
        })
        .await
        .unwrap();
}

/// Ingests `count` events for the one subscription and ends each delivery SUCCEEDED.
async fn round(store: &Store, count: u32) -> Vec<u128> {
    let events: Vec<NewEvent> = (0..count).map(|n| event(n, None)).collect();
    let mut deliveries = Vec::new();
    for outcome in store.ingest(events).await.unwrap() {
        let IngestOutcome::Accepted { deliveries: d } = outcome else {
            panic!("{outcome:?}");
        };
        deliveries.extend(d);
    }
    // Concurrently, so the writer groups them into a few commits as it does in service.
    let mut reports = tokio::task::JoinSet::new();
    for &delivery in &deliveries {
        let store = store.clone();
        reports.spawn(async move { succeed(&store, delivery).await });
    }
    while let Some(done) = reports.join_next().await {
        done.unwrap();
    }
    deliveries
}

async fn purge_all(store: &Store, before_ms: u64, idempotency_before_ms: u64) -> PurgeOutcome {
    let token = tokio_util::sync::CancellationToken::new();
    crate::retention::pass(store, before_ms, idempotency_before_ms, &token)
        .await
        .unwrap()
}

/// The database behind a store opened by these tests.
pub(super) fn database(store: &Store) -> Arc<::redb::Database> {
    let crate::store::Backend::Redb(redb) = &store.backend else {
        panic!("these tests open redb stores");
    };
    redb.db.get().unwrap()
}

pub(super) fn rows<K: ::redb::Key + 'static, V: ::redb::Value + 'static>(
    store: &Store,
    table: TableDefinition<K, V>,
) -> u64 {
    let txn = database(store).begin_read().unwrap();
    txn.open_table(table).unwrap().len().unwrap()
}

#[tokio::test]
async fn purge_removes_every_row_of_an_ended_event_and_keeps_an_unfinished_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.redb");
    let (store, writer) = open(&path);
    store
        .put_subscription(uuid_v7(), subscription(), None)
        .await
        .unwrap();
    let outcomes = store
        .ingest(vec![event(1, Some(1)), event(2, Some(2))])
        .await
        .unwrap();
    let IngestOutcome::Accepted { deliveries: ended } = &outcomes[0] else {
        panic!()
    };
    succeed(&store, ended[0]).await;
    // The second event's delivery is still pending.

    let later = now_ms() + 1000;
    let purged = purge_all(&store, later, later).await;
    assert_eq!(
        (
            purged.events,
            purged.deliveries,
            purged.attempts,
            purged.idempotency,
            purged.kept
        ),
        (1, 1, 1, 2, 1)
    );
    assert!(purged.next.is_done());
    assert_eq!(rows(&store, EVENTS), 1);
    assert_eq!(rows(&store, DELIVERIES), 1);
    assert_eq!(rows(&store, EVENT_DELIVERIES), 1);
    assert_eq!(rows(&store, SUBSCRIPTION_DELIVERIES), 1);
    assert_eq!(
        rows(&store, SUBSCRIPTION_STATES),
        1,
        "index rows go with their rows"
    );
    assert_eq!(rows(&store, EVENT_TYPES), 1);
    assert_eq!(rows(&store, ATTEMPTS), 0);
    assert_eq!(
        rows(&store, ATTEMPT_REQUESTS),
        0,
        "with their request headers"
    );
    assert_eq!(rows(&store, DUE), 1, "the pending delivery is still due");
    assert_eq!(rows(&store, IDEMPOTENCY), 0);
    assert_eq!(rows(&store, IDEMPOTENCY_TIMES), 0, "with their time rows");
    assert!(store.delivery(ended[0]).await.unwrap().is_none());

    // A cutoff before everything removes nothing.
    let none = purge_all(&store, 1, 1).await;
    assert_eq!(none.events + none.idempotency + none.kept, 0);
    drop(store);
    writer.join();
}

#[tokio::test]
async fn with_purging_the_file_stops_growing_and_compact_shrinks_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.redb");
    let (store, writer) = open(&path);
    store
        .put_subscription(uuid_v7(), subscription(), None)
        .await
        .unwrap();
    // Each round keeps the previous round and purges the one before: about two rounds
    // of records are live at any time, however many rounds run.
    let mut starts = Vec::new();
    let mut sizes = Vec::new();
    for _ in 0..24 {
        starts.push(now_ms());
        round(&store, 300).await;
        if starts.len() >= 2 {
            let cutoff = starts[starts.len() - 2];
            purge_all(&store, cutoff, cutoff).await;
        }
        sizes.push(std::fs::metadata(&path).unwrap().len());
        // Rounds must not share a millisecond: the cutoff is a UUIDv7 time.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let warm = sizes[5];
    let last = *sizes.last().unwrap();
    assert!(
        last <= warm + warm / 5,
        "the file kept growing under steady load: {sizes:?}"
    );
    assert!(rows(&store, EVENTS) <= 600);

    // Offline only: refused while the store has it open.
    assert!(matches!(compact(&path), Err(StoreError::Locked(_))));
    purge_all(&store, now_ms() + 1000, now_ms() + 1000).await;
    drop(store);
    writer.join();
    let report = compact(&path).unwrap();
    assert!(
        report.after_bytes < report.before_bytes,
        "compact gives freed space back: {report:?}"
    );
}

#[tokio::test]
async fn a_backup_holds_every_table_and_restores_in_place_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.redb");
    let (store, writer) = open(&path);
    store
        .put_subscription(uuid_v7(), subscription(), None)
        .await
        .unwrap();
    round(&store, 10).await;
    store.ingest(vec![event(99, Some(7))]).await.unwrap();
    let copy = dir.path().join("copy.redb");
    let info = store.backup(copy.clone()).await.unwrap();
    assert_eq!(
        (info.events, info.deliveries, info.subscriptions),
        (11, 11, 1)
    );
    assert!(
        store.backup(copy.clone()).await.is_err(),
        "never overwrites"
    );
    // The database is open: a restore is refused and changes nothing.
    assert!(matches!(
        place_backup(&copy, &path),
        Err(StoreError::Locked(_))
    ));
    drop(store);
    writer.join();

    let previous = place_backup(&copy, &path).unwrap().unwrap();
    assert!(previous.ends_with("hookd.redb.bak"));
    let (store, writer) = open(&path);
    assert_eq!(rows(&store, EVENTS), 11);
    assert_eq!(rows(&store, DUE), 1);
    assert_eq!(rows(&store, IDEMPOTENCY), 1);
    assert_eq!(store.due_subscriptions().await.unwrap().len(), 1);
    drop(store);
    writer.join();

    std::fs::write(dir.path().join("junk"), b"not a database").unwrap();
    assert!(place_backup(&dir.path().join("junk"), &path).is_err());
}

/// A key used again after its window: purging its first use's time row leaves the new
/// record, which still answers a repeat.
#[tokio::test]
async fn purging_a_reused_keys_old_time_row_keeps_its_new_record() {
    use crate::store::codec::encode;
    use crate::store::records::IdempotencyRecord;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.redb");
    let (store, writer) = open(&path);
    drop(store);
    writer.join();
    let day_ago = now_ms() - IDEMPOTENCY_WINDOW_MS - 60_000;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let old = IdempotencyRecord {
            body_sha256: [0; 32],
            created_ms: day_ago,
            event: uuid_v7(),
            deliveries: 0,
        };
        txn.open_table(IDEMPOTENCY)
            .unwrap()
            .insert(&[7; 32], encode(&old).unwrap().as_slice())
            .unwrap();
        txn.open_table(IDEMPOTENCY_TIMES)
            .unwrap()
            .insert((day_ago, [7; 32]), ())
            .unwrap();
        txn.commit().unwrap();
    }
    let (store, _writer) = open(&path);
    let first = store.ingest(vec![event(1, Some(7))]).await.unwrap();
    assert!(
        matches!(first[0], IngestOutcome::Accepted { .. }),
        "past its window"
    );
    assert_eq!(rows(&store, IDEMPOTENCY_TIMES), 2);

    let cutoff = now_ms() - IDEMPOTENCY_WINDOW_MS;
    let purged = purge_all(&store, 1, cutoff).await;
    assert_eq!(purged.idempotency, 0, "the record is the new one");
    assert_eq!(rows(&store, IDEMPOTENCY_TIMES), 1);
    assert_eq!(rows(&store, IDEMPOTENCY), 1);
    let repeat = store.ingest(vec![event(1, Some(7))]).await.unwrap();
    assert!(matches!(repeat[0], IngestOutcome::Duplicate { .. }));
}

/// `[storage]` picks the backend: redb opens its file; PostgreSQL is reached through
/// `[storage.postgres]` and never replaced by a redb file the operator did not ask for.
#[tokio::test]
async fn the_configured_backend_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let settings = WriterSettings {
        max_age_ms: 3_600_000,
        disable_after_ms: 3_600_000,
        min_free: crate::config::MinFree::Bytes(0),
    };
    let open = |storage: crate::config::Storage| async move {
        Store::from_config(
            &storage,
            settings,
            std::collections::HashMap::new(),
            Arc::new(Queues::new(16)),
            Arc::new(Quiet),
        )
        .await
    };
    let mut storage = crate::config::Storage {
        path: dir.path().join("hookd.redb"),
        ..Default::default()
    };
    let (store, writer) = open(storage.clone()).await.unwrap();
    drop(store);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap();
    assert!(storage.path.exists());

    storage.backend = crate::config::Backend::Postgres;
    storage.path = dir.path().join("not-made.redb");
    let refused = open(storage.clone()).await.err().unwrap();
    assert!(
        refused.to_string().contains("storage.postgres.url"),
        "{refused}"
    );
    assert!(!storage.path.exists());
}
