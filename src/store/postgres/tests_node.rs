//! A node between the database and its dispatcher, against a real PostgreSQL: due
//! entries reach the dispatcher only for partitions the node owns, a partition that
//! moves makes the dispatcher drop and reread its subscriptions, and a snapshot notice
//! republishes what the database holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cluster::Heartbeat;
use super::listen::{self, DUE_CHANNEL, SNAPSHOT_CHANNEL};
use super::node;
use super::tests::testdb::TempPostgres;
use super::tests::{client, hookd};
use super::*;
use crate::store::testing::subscription_to;
use crate::store::{DueEntry, DueSink, Fresh, Snapshots, SubscriptionIndex};

/// Long enough that a heartbeat slowed by a loaded machine (every test runs at once)
/// never looks stale (two thirds of it), short enough for a takeover within the test.
const LEASE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(30);

/// What the node told the dispatcher.
#[derive(Debug, PartialEq, Eq)]
enum Told {
    Schedule(Vec<DueEntry>),
    Forget(Vec<u128>),
}

struct Recorder(mpsc::UnboundedSender<Told>);

impl DueSink for Recorder {
    fn schedule(&self, entries: Vec<DueEntry>, _fresh: Vec<Fresh>) {
        let _ = self.0.send(Told::Schedule(entries));
    }

    fn forget(&self, subscriptions: &[u128]) {
        let mut sorted = subscriptions.to_vec();
        sorted.sort_unstable();
        let _ = self.0.send(Told::Forget(sorted));
    }
}

async fn told(told: &mut mpsc::UnboundedReceiver<Told>) -> Told {
    tokio::time::timeout(WAIT, told.recv())
        .await
        .expect("the node tells the dispatcher in time")
        .expect("the node runs")
}

fn due(subscription: u128) -> DueEntry {
    DueEntry {
        due_ms: 1,
        delivery: subscription + 1,
        subscription,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dispatches_what_it_owns_and_follows_changes() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let settings = hookd(&pg, &database);
    let mut sender = client(&settings).await.unwrap();
    migrate(&mut sender).await.unwrap();
    let pool = pool(&settings).unwrap();

    // Partition 0 stays with node a when b joins; 255 goes to b (the highest go).
    let kept = 0x1000_u128;
    let moved = 0x10ff_u128;
    assert_eq!(partition_of(kept), 0);
    assert_eq!(partition_of(moved), 255);
    let snapshot = move || {
        SubscriptionIndex::from_records([
            (kept, subscription_to("root", &["*"])),
            (moved, subscription_to("root", &["*"])),
        ])
    };
    let reloads = Arc::new(AtomicUsize::new(0));
    let snapshots = Snapshots::new();
    snapshots.publish(snapshot());

    let stop = CancellationToken::new();
    let (beat, ownership) = Heartbeat::new(pool.clone(), "node-a".into(), LEASE);
    let (out, notices) = mpsc::channel(16);
    let (ready, mut listening) = mpsc::channel(4);
    tokio::spawn(listen::run(
        settings.clone(),
        out,
        Some(ready),
        stop.clone(),
    ));
    tokio::time::timeout(WAIT, listening.recv()).await.unwrap();
    let (tell, mut heard) = mpsc::unbounded_channel();
    let counted = reloads.clone();
    tokio::spawn(node::follow(
        "node-a".into(),
        notices,
        ownership.clone(),
        snapshots.clone(),
        Arc::new(Recorder(tell)),
        {
            let snapshots = snapshots.clone();
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                snapshots.publish(snapshot());
                std::future::ready(Ok(()))
            }
        },
        stop.clone(),
    ));
    // Beating only once the node follows its partitions: a takes every partition, so
    // both subscriptions are read.
    tokio::spawn(beat.run(stop.clone()));
    assert_eq!(told(&mut heard).await, Told::Forget(vec![kept, moved]));
    assert!(node::dispatches(&ownership, moved));

    let notify = |entries: Vec<DueEntry>| {
        let payload = listen::due_payloads("node-b", &entries).remove(0);
        let sender = &sender;
        async move {
            sender
                .execute("SELECT pg_notify($1, $2)", &[&DUE_CHANNEL, &payload])
                .await
                .unwrap();
        }
    };
    notify(vec![due(kept), due(moved)]).await;
    assert_eq!(
        told(&mut heard).await,
        Told::Schedule(vec![due(kept), due(moved)])
    );

    // b joins: a gives partition 255 back and drops `moved`; its entries now go to b.
    let (b_beat, b_ownership) = Heartbeat::new(pool.clone(), "node-b".into(), LEASE);
    tokio::spawn(b_beat.run(stop.clone()));
    assert_eq!(told(&mut heard).await, Told::Forget(vec![moved]));
    assert!(!node::dispatches(&ownership, moved));
    let mut b_owned = b_ownership.changes();
    tokio::time::timeout(WAIT, b_owned.wait_for(|o| o.contains_key(&255)))
        .await
        .unwrap()
        .unwrap();
    notify(vec![due(kept), due(moved)]).await;
    assert_eq!(told(&mut heard).await, Told::Schedule(vec![due(kept)]));

    // A snapshot notice reloads and republishes.
    let before = reloads.load(Ordering::SeqCst);
    let mut changes = snapshots.changes();
    changes.borrow_and_update();
    sender
        .execute("SELECT pg_notify($1, '')", &[&SNAPSHOT_CHANNEL])
        .await
        .unwrap();
    tokio::time::timeout(WAIT, changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reloads.load(Ordering::SeqCst), before + 1);
    stop.cancel();
}
