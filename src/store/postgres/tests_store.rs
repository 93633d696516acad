//! `PgStore` against a real PostgreSQL (`testdb`): ingest and its reads, Idempotency-Keys
//! within a node and between two nodes on one database, group commit, a subscription's
//! compare-and-set between nodes, entity refusals (the snapshot's and the database's),
//! and the database going away and coming back. Attempt outcomes and the listings are
//! in `tests_outcomes.rs`, the harness in `tests_support.rs`. The fault test has a server
//! of its own, since it stops it.

use std::time::Duration;

use super::tests::testdb::TempPostgres;
use super::tests_support::*;
use crate::ids::uuid_v7;
use crate::store::records::{EntityRecord, SubscriptionStatus};
use crate::store::space::StorageState;
use crate::store::tenancy::ApiKeyRecord;
use crate::store::*;

#[tokio::test]
async fn an_ingested_event_reads_back_with_one_delivery_per_matching_subscription() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let jobs = put(&node, subscription(&["job.*"])).await;
    let everything = put(&node, subscription(&["*"])).await;
    put(&node, subscription(&["other.kind"])).await;
    let mut paused = subscription(&["*"]);
    paused.status = SubscriptionStatus::Deactivated;
    put(&node, paused).await;

    let new = event_of("job.created", 1, None);
    let (id, record) = (new.id, new.record.clone());
    let outcomes = node.store.ingest(vec![new]).await.unwrap();
    let deliveries = accepted(&outcomes[0]);
    assert_eq!(
        deliveries.len(),
        2,
        "the two ACTIVE subscriptions that match"
    );

    assert_eq!(node.store.event(id).await.unwrap(), Some(record.clone()));
    let body = node.store.event_body(id).await.unwrap().unwrap();
    assert_eq!(&body[..], &record.body[..], "the body, byte for byte");
    let mut reached = Vec::new();
    for &delivery in &deliveries {
        let d = node.store.delivery(delivery).await.unwrap().unwrap();
        assert_eq!(
            (d.event, d.state, d.attempts),
            (id, DeliveryState::Pending, 0)
        );
        assert!(d.next_attempt_ms.is_some(), "due: {d:?}");
        reached.push(d.subscription);
    }
    reached.sort_unstable();
    let mut expected = vec![jobs, everything];
    expected.sort_unstable();
    assert_eq!(reached, expected);

    // The dispatcher was told after the commit, with the body.
    let fresh = node.sink.fresh.lock().unwrap().clone();
    assert_eq!(fresh.len(), 2);
    assert!(
        fresh
            .iter()
            .all(|f| f.event == id && f.body[..] == record.body[..])
    );
    assert_eq!(node.sink.due.lock().unwrap().len(), 2);
    let report = node
        .observed
        .reports
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(report.events_ingested, 1);

    assert_eq!(
        node.store
            .count_event_deliveries(id, |_| true)
            .await
            .unwrap(),
        2
    );
    let only_jobs = move |d: &records::DeliveryRecord| d.subscription == jobs;
    assert_eq!(
        node.store
            .count_event_deliveries(id, only_jobs)
            .await
            .unwrap(),
        1
    );
    let window = WindowRead {
        subscription: jobs,
        after: None,
        limit: 10,
    };
    let windows = node.store.due_windows(vec![window]).await.unwrap();
    assert_eq!(windows[0].len(), 1);
    let mut due = node.store.due_subscriptions().await.unwrap();
    due.sort_unstable();
    assert_eq!(due, expected);
    assert_eq!(node.store.event(uuid_v7()).await.unwrap(), None);

    // Another node on the same database starts with the same subscriptions.
    let other = node_with_same_database(&pg, &database).await;
    assert_eq!(other.shared.snapshots.current().len(), 4);
    assert_eq!(
        other
            .shared
            .snapshots
            .current()
            .matching("root", "job.created"),
        expected
    );
}

async fn node_with_same_database(pg: &TempPostgres, database: &str) -> Node {
    node(pg, database).await
}

#[tokio::test]
async fn an_idempotency_key_answers_duplicate_or_conflict_and_a_conflict_stores_nothing() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    put(&node, subscription(&["*"])).await;
    let first = event_of("job.created", 1, Some((1, 10)));
    let original = first.id;
    let outcome = node.store.ingest(vec![first]).await.unwrap();
    assert_eq!(accepted(&outcome[0]).len(), 1);

    let again = node
        .store
        .ingest(vec![event_of("job.created", 1, Some((1, 10)))])
        .await
        .unwrap();
    assert_eq!(
        again[0],
        IngestOutcome::Duplicate {
            event: original,
            deliveries: 1
        }
    );
    let other_body = node
        .store
        .ingest(vec![event_of("job.created", 2, Some((1, 11)))])
        .await
        .unwrap();
    assert_eq!(other_body[0], IngestOutcome::Conflict);

    // One conflicting key refuses its whole request: the new key beside it stays free.
    let fresh = event_of("job.created", 3, Some((2, 20)));
    let fresh_id = fresh.id;
    let mixed = node
        .store
        .ingest(vec![fresh, event_of("job.created", 4, Some((1, 12)))])
        .await
        .unwrap();
    assert_eq!(
        mixed,
        vec![
            IngestOutcome::Accepted {
                deliveries: Vec::new()
            },
            IngestOutcome::Conflict
        ]
    );
    assert_eq!(node.store.event(fresh_id).await.unwrap(), None);
    let later = node
        .store
        .ingest(vec![event_of("job.created", 3, Some((2, 20)))])
        .await
        .unwrap();
    assert_eq!(accepted(&later[0]).len(), 1, "the key was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_one_key_accept_it_exactly_once() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let a = node(&pg, &database).await;
    let b = node(&pg, &database).await;
    for key in 1..=20u8 {
        let mut racers = tokio::task::JoinSet::new();
        for n in 0..6 {
            let store = if n % 2 == 0 { &a.store } else { &b.store }.clone();
            racers.spawn(async move {
                store
                    .ingest(vec![event_of("job.created", 0, Some((key, 7)))])
                    .await
                    .unwrap()
                    .remove(0)
            });
        }
        let mut winners = Vec::new();
        let mut repeats = Vec::new();
        while let Some(outcome) = racers.join_next().await {
            match outcome.unwrap() {
                IngestOutcome::Accepted { .. } => winners.push(()),
                IngestOutcome::Duplicate { event, .. } => repeats.push(event),
                IngestOutcome::Conflict => panic!("same body: never a conflict"),
            }
        }
        assert_eq!(winners.len(), 1, "key {key}: exactly one accepted");
        repeats.dedup();
        assert_eq!(
            repeats.len(),
            1,
            "key {key}: every repeat names the one event"
        );
        assert!(a.store.event(repeats[0]).await.unwrap().is_some());
    }
    assert_eq!(
        pg.psql(&database, "SELECT count(*) FROM events"),
        "20",
        "one event per key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_share_commits() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    put(&node, subscription(&["*"])).await;
    let before = node
        .shared
        .commits
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let requests = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..requests {
        let store = node.store.clone();
        tasks.spawn(async move {
            let outcome = store
                .ingest(vec![event_of("job.created", n, None)])
                .await
                .unwrap();
            accepted(&outcome[0]).len()
        });
    }
    while let Some(fanned) = tasks.join_next().await {
        assert_eq!(fanned.unwrap(), 1);
    }
    let commits = node
        .shared
        .commits
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(
        commits < requests as u64,
        "{requests} requests took {commits} transactions"
    );
    let reports = node.observed.reports.lock().unwrap();
    assert!(
        reports.iter().any(|r| r.commands > 1),
        "some batch held several"
    );
    assert_eq!(
        pg.psql(&database, "SELECT count(*) FROM deliveries"),
        requests.to_string()
    );
}

#[tokio::test]
async fn an_edit_against_a_stale_read_is_refused_across_nodes() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let a = node(&pg, &database).await;
    let id = put(&a, subscription(&["*"])).await;
    let b = node(&pg, &database).await;

    // Within a node: the snapshot's updated_ms is what the caller must have read.
    let mut edit = subscription(&["job.*"]);
    edit.updated_ms = 2;
    let stale = a.store.put_subscription(id, edit.clone(), Some(99)).await;
    assert_eq!(stale.unwrap(), PutOutcome::Conflict);
    let fresh = a.store.put_subscription(id, edit, Some(1)).await;
    assert_eq!(fresh.unwrap(), PutOutcome::Stored);

    // B still shows what it read at start (updated 1); the database has moved on.
    assert_eq!(b.shared.snapshots.current().get(id).unwrap().updated_ms, 1);
    let mut late = subscription(&["other.*"]);
    late.updated_ms = 3;
    let refused = b.store.put_subscription(id, late.clone(), Some(1)).await;
    assert_eq!(refused.unwrap(), PutOutcome::Conflict);
    // The refusal brought B's snapshot up to date: an edit against it goes through.
    let current = b.shared.snapshots.current().get(id).unwrap().clone();
    assert_eq!(
        (current.updated_ms, current.event_types.clone()),
        (2, vec!["job.*".to_owned()])
    );
    let stored = b.store.put_subscription(id, late, Some(2)).await;
    assert_eq!(stored.unwrap(), PutOutcome::Stored);
    assert_eq!(
        pg.psql(&database, "SELECT revision FROM subscriptions"),
        "3",
        "each write raised the revision"
    );
    // A plain put (no expected time) replaces, whatever the revision.
    let replaced = a
        .store
        .put_subscription(id, subscription(&["*"]), None)
        .await;
    assert_eq!(replaced.unwrap(), PutOutcome::Stored);

    assert!(a.store.delete_subscription(id).await.unwrap());
    assert!(!a.store.delete_subscription(id).await.unwrap());
    assert!(a.shared.snapshots.current().get(id).is_none());
    assert!(a.sink.forgotten.lock().unwrap().contains(&id));
}

fn entity(parent: Option<&str>) -> EntityRecord {
    EntityRecord {
        name: "n".into(),
        parent: parent.map(str::to_owned),
        created_ms: 5,
    }
}

fn key(entity: &str, byte: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        entity: entity.into(),
        name: "k".into(),
        scopes: vec![ALL_SCOPES.into()],
        sha256: [byte; 32],
        created_ms: 5,
    }
}

#[tokio::test]
async fn an_entity_in_use_is_not_deleted_whichever_node_knows_it() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let a = node(&pg, &database).await;
    let entities = |id: &str, parent| (id.to_owned(), entity(parent));
    let (acme, record) = entities("acme", None);
    assert_eq!(
        a.store.create_entity(acme, record).await.unwrap(),
        EntityOutcome::Done
    );
    let (eu, record) = entities("acme-eu", Some("acme"));
    assert_eq!(
        a.store.create_entity(eu, record).await.unwrap(),
        EntityOutcome::Done
    );
    let (again, record) = entities("acme", None);
    assert_eq!(
        a.store.create_entity(again, record).await.unwrap(),
        EntityOutcome::Exists
    );
    let (orphan, record) = entities("orphan", Some("nobody"));
    assert_eq!(
        a.store.create_entity(orphan, record).await.unwrap(),
        EntityOutcome::NotFound
    );
    let delete = async |id: &str| a.store.delete_entity(id.to_owned()).await.unwrap();
    assert_eq!(
        delete("acme").await,
        EntityOutcome::InUse("it has child entities")
    );
    assert_eq!(delete("root").await, EntityOutcome::NotFound);

    let key_id = uuid_v7();
    a.store.create_key(key_id, key("acme-eu", 1)).await.unwrap();
    assert_eq!(
        delete("acme-eu").await,
        EntityOutcome::InUse("it has API keys")
    );
    assert!(a.shared.snapshots.current().keys.find(&[1; 32]).is_some());
    assert!(a.store.revoke_key(key_id).await.unwrap());
    assert!(!a.store.revoke_key(key_id).await.unwrap());
    assert!(a.shared.snapshots.current().keys.find(&[1; 32]).is_none());

    // B starts now and knows acme-eu; then A gives it a subscription B does not see.
    let b = node(&pg, &database).await;
    let mut owned = subscription(&["*"]);
    owned.entity = "acme-eu".into();
    put(&a, owned).await;
    assert_eq!(
        delete("acme-eu").await,
        EntityOutcome::InUse("it has subscriptions")
    );
    // B's snapshot lets the delete through to the database, whose foreign key refuses
    // it; the ingest in flight beside it commits all the same.
    let (refused, ingested) = tokio::join!(
        b.store.delete_entity("acme-eu".to_owned()),
        b.store.ingest(vec![event_of("job.created", 1, None)]),
    );
    assert_eq!(
        refused.unwrap(),
        EntityOutcome::InUse("it has subscriptions")
    );
    ingested.unwrap();
    assert!(b.shared.snapshots.current().entities.exists("acme-eu"));
    // A key for an entity B does not know is refused by the database alone.
    let (gone, _) = entities("gone", None);
    assert_eq!(
        a.store
            .create_entity(gone.clone(), entity(None))
            .await
            .unwrap(),
        EntityOutcome::Done
    );
    assert_eq!(delete("gone").await, EntityOutcome::Done);
    let refused = b.store.create_key(uuid_v7(), key("gone", 2)).await;
    assert!(
        matches!(refused, Err(StoreError::Postgres(_))),
        "{refused:?}"
    );
    assert!(b.shared.snapshots.current().keys.find(&[2; 32]).is_none());
    assert_eq!(
        pg.psql(&database, "SELECT count(*) FROM entities"),
        "3",
        "root, acme, acme-eu"
    );
}

#[tokio::test]
async fn a_stopped_database_answers_unavailable_and_the_store_recovers_by_itself() {
    // Its own server: it is stopped.
    let Some(mut pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    put(&node, subscription(&["*"])).await;
    let first = node
        .store
        .ingest(vec![event_of("job.created", 1, None)])
        .await
        .unwrap();
    accepted(&first[0]);

    pg.stop();
    let refused = node
        .store
        .ingest(vec![event_of("job.created", 2, Some((9, 9)))])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable)),
        "{refused:?}"
    );
    assert_eq!(node.shared.health.state(), StorageState::Faulted);
    // Refused at once while faulted, not after waiting for a connection.
    let started = std::time::Instant::now();
    let again = node
        .store
        .ingest(vec![event_of("job.created", 3, None)])
        .await;
    assert!(matches!(again, Err(StoreError::Unavailable)), "{again:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let read = node.store.event(uuid_v7()).await.unwrap_err();
    assert!(read.is_io(), "a read fails as unavailable too: {read}");

    pg.start_again();
    let mut health = node.shared.health.watch();
    tokio::time::timeout(WAIT, health.wait_for(|s| *s == StorageState::Ok))
        .await
        .expect("the store recovers by itself")
        .unwrap();
    let outcome = node
        .store
        .ingest(vec![event_of("job.created", 2, Some((9, 9)))])
        .await
        .unwrap();
    assert_eq!(
        accepted(&outcome[0]).len(),
        1,
        "the refused request was not stored"
    );
    assert_eq!(
        *node.observed.states.lock().unwrap(),
        vec![StorageState::Faulted, StorageState::Ok],
        "one change each way"
    );
    assert_eq!(pg.psql(&database, "SELECT count(*) FROM events"), "2");
}

/// Ingest rate of 32 tasks each sending single-event requests in a loop, against the
/// temp database on this machine (not a benchmark of record: the machine is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --lib ingest_rate -- --ignored --nocapture"]
async fn ingest_rate_of_32_concurrent_single_event_clients() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    put(&node, subscription(&["*"])).await;
    let run = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..32u32 {
        let store = node.store.clone();
        clients.spawn(async move {
            let mut sent = 0u64;
            while started.elapsed() < run {
                store
                    .ingest(vec![event_of("job.created", n, None)])
                    .await
                    .unwrap();
                sent += 1;
            }
            sent
        });
    }
    let mut total = 0;
    while let Some(sent) = clients.join_next().await {
        total += sent.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let commits = node
        .shared
        .commits
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let micros = node
        .shared
        .commits
        .micros
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "ingest: {total} events in {took:.1} s = {:.0} ev/s; {commits} commits, {:.1} requests and {:.2} ms each",
        total as f64 / took,
        total as f64 / commits as f64,
        micros as f64 / commits as f64 / 1000.0
    );
}
