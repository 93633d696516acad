//! Partition leases against a real PostgreSQL: nodes split the partitions fairly, a node
//! that stops beating has its partitions taken over within the lease with a new epoch, a
//! node that cannot reach the database stops dispatching before its lease runs out, and
//! one that leaves gives its partitions back at once. Each test waits on the published
//! owned set (a watch), never on a fixed sleep.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cluster::{Heartbeat, Owned, Ownership};
use super::tests::testdb::TempPostgres;
use super::tests::{client, hookd};
use super::*;

/// Short enough for a takeover within the test, long enough that a heartbeat slowed by
/// a loaded machine never looks stale (two thirds of it); a beat every third of it.
const LEASE: Duration = Duration::from_secs(3);
/// How long a test waits for the owned set it expects.
const WAIT: Duration = Duration::from_secs(30);

/// A migrated database (its name) and a pool on it.
async fn database(pg: &TempPostgres) -> (deadpool_postgres::Pool, String) {
    let name = pg.create_database();
    let settings = hookd(pg, &name);
    let mut first = client(&settings).await.unwrap();
    migrate(&mut first).await.unwrap();
    (pool(&settings).unwrap(), name)
}

/// Starts a node's heartbeat; its task ends when `stop` is cancelled (giving back) or
/// is aborted (dying).
fn node(
    pool: &deadpool_postgres::Pool,
    name: &str,
) -> (Ownership, CancellationToken, tokio::task::JoinHandle<()>) {
    let (beat, ownership) = Heartbeat::new(pool.clone(), name.to_owned(), LEASE);
    let stop = CancellationToken::new();
    let task = tokio::spawn(beat.run(stop.clone()));
    (ownership, stop, task)
}

async fn until(ownership: &Ownership, what: &str, ok: impl FnMut(&Owned) -> bool) -> Owned {
    let mut changes = ownership.changes();
    match tokio::time::timeout(WAIT, changes.wait_for(ok)).await {
        Ok(Ok(owned)) => owned.clone(),
        _ => panic!("{what}: owns {:?}", ownership.changes().borrow().len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_split_the_partitions_and_take_over_a_dead_ones() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (pool, _) = database(&pg).await;
    let (a, _stop_a, _task_a) = node(&pool, "node-a");
    until(&a, "a alone takes all", |o| o.len() == 256).await;

    let (b, _stop_b, task_b) = node(&pool, "node-b");
    let half_b = until(&b, "b gets half", |o| o.len() == 128).await;
    let half_a = until(&a, "a gives half back", |o| o.len() == 128).await;
    assert!(half_a.keys().all(|p| !half_b.contains_key(p)), "no overlap");

    // b dies without giving anything back: a takes its partitions once the lease runs
    // out, each at a higher epoch than b held it.
    task_b.abort();
    let died = std::time::Instant::now();
    let all = until(&a, "a takes over", |o| o.len() == 256).await;
    let took = died.elapsed();
    assert!(took < LEASE * 4, "takeover took {took:?}");
    for (partition, epoch) in half_b.iter() {
        assert!(
            all[partition] > *epoch,
            "partition {partition} was not fenced"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_gives_its_partitions_back_at_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (pool, name) = database(&pg).await;
    let (a, _stop_a, _task_a) = node(&pool, "node-a");
    let (b, stop_b, task_b) = node(&pool, "node-b");
    until(&a, "a gets half", |o| o.len() == 128).await;
    until(&b, "b gets half", |o| o.len() == 128).await;
    stop_b.cancel();
    task_b.await.unwrap();
    assert!(b.changes().borrow().is_empty());
    assert_eq!(
        pg.psql(
            &name,
            "SELECT count(*) FROM partitions WHERE owner = 'node-b'"
        ),
        "0"
    );
    until(&a, "a takes all", |o| o.len() == 256).await;
    assert_eq!(
        pg.psql(&name, "SELECT count(*) FROM nodes WHERE name = 'node-b'"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_renew_stops_dispatching_before_its_lease_ends() {
    let Some(mut pg) = TempPostgres::start() else {
        return;
    };
    let (pool, _) = database(&pg).await;
    let (a, _stop_a, _task_a) = node(&pool, "node-a");
    until(&a, "a takes all", |o| o.len() == 256).await;
    pg.stop();
    let stopped = std::time::Instant::now();
    until(&a, "a stops dispatching", |o| o.is_empty()).await;
    // Its last renewal was sent before the stop; it gave up within the lease.
    assert!(stopped.elapsed() < LEASE, "{:?}", stopped.elapsed());
    pg.start_again();
    until(&a, "a dispatches again", |o| o.len() == 256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_given_back_stays_held_for_one_beat_after_its_dispatch_stops() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let (pool, name) = database(&pg).await;
    let (mut a, a_owned) = Heartbeat::new(pool.clone(), "node-a".to_owned(), LEASE);
    a.beat().await.unwrap();
    assert_eq!(a_owned.changes().borrow().len(), 256);
    let held = |who: &str| {
        pg.psql(
            &name,
            &format!("SELECT count(*) || ':' || sum(epoch) FROM partitions WHERE owner = '{who}'"),
        )
    };
    let before = held("node-a");

    // Another node is live: a's fair share is half. It stops dispatching the other
    // half at once, but keeps them, at the same epochs, so that outcomes of attempts
    // in flight still count.
    // (Its heartbeat is renewed before each beat: a slow machine must not let it
    // drop out of the live nodes between two beats.)
    let b_beats = || {
        pg.psql(&name, "INSERT INTO nodes (name) VALUES ('node-b') ON CONFLICT (name) DO UPDATE SET heartbeat = now()")
    };
    b_beats();
    a.beat().await.unwrap();
    assert_eq!(a_owned.changes().borrow().len(), 128);
    assert_eq!(held("node-a"), before);

    // At the next beat it gives them back, fencing them.
    b_beats();
    a.beat().await.unwrap();
    assert_eq!(a_owned.changes().borrow().len(), 128);
    assert!(held("node-a").starts_with("128:"), "{}", held("node-a"));
    assert_eq!(
        pg.psql(
            &name,
            "SELECT count(*) FROM partitions WHERE owner IS NULL AND epoch = 2"
        ),
        "128"
    );
}
