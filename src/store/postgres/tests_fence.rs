//! Outcome writes fenced by the partition lease, against a real PostgreSQL: an attempt's
//! outcome is dropped once another node owns its delivery's partition (the new owner
//! delivers it), and written again once this node owns it at the epoch it dispatched
//! under.

use super::schema::partition_of;
use super::tests_support::*;
use crate::store::records::{AttemptRecord, DeliveryState};
use crate::store::*;

fn succeeded(delivery: u128) -> AttemptReport {
    AttemptReport {
        delivery,
        attempt: AttemptRecord {
            attempted_ms: now_ms(),
            url: "https://example.com/".into(),
            status: Some(200),
            error: None,
            duration_ms: 3,
            response_body: vec![],
            response_headers: vec![],
        },
        request_headers: vec![],
        next: NextStep::Succeeded,
        gone: false,
    }
}

#[tokio::test]
async fn an_outcome_is_dropped_once_another_node_owns_its_partition() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let sub = put(&node, subscription(&["*"])).await;
    let outcome = node
        .store
        .ingest(vec![event_of("job.created", 1, None)])
        .await
        .unwrap();
    let delivery = accepted(&outcome[0])[0];
    let partition = partition_of(sub);
    let admin = super::tests::client(&settings(&pg, &database))
        .await
        .unwrap();
    let row = admin
        .query_one(
            "SELECT owner, epoch FROM partitions WHERE partition = $1",
            &[&partition],
        )
        .await
        .unwrap();
    let (me, epoch): (String, i64) = (row.get(0), row.get(1));
    assert!(node.store.dispatches(sub), "one node owns every partition");

    // Another node claims the partition (alive, its lease far away, so this node's
    // heartbeat leaves it alone).
    admin
        .batch_execute(&format!(
            "INSERT INTO nodes (name) VALUES ('thief');
             UPDATE partitions SET owner = 'thief', epoch = epoch + 1,
                 lease_until = now() + interval '1 hour'
             WHERE partition = {partition}"
        ))
        .await
        .unwrap();
    node.store
        .record_attempt(succeeded(delivery))
        .await
        .unwrap();
    let kept = node.store.delivery(delivery).await.unwrap().unwrap();
    assert_eq!((kept.state, kept.attempts), (DeliveryState::Pending, 0));
    let attempts = node.store.attempts(delivery, 0, 10).await.unwrap();
    assert!(
        attempts.items.is_empty(),
        "a fenced attempt is not recorded"
    );

    // Back with this node at the epoch it holds: the outcome is written.
    admin
        .batch_execute(&format!(
            "BEGIN;
             DELETE FROM nodes WHERE name = 'thief';
             UPDATE partitions SET owner = '{me}', epoch = {epoch} WHERE partition = {partition};
             COMMIT"
        ))
        .await
        .unwrap();
    node.store
        .record_attempt(succeeded(delivery))
        .await
        .unwrap();
    let done = node.store.delivery(delivery).await.unwrap().unwrap();
    assert_eq!((done.state, done.attempts), (DeliveryState::Succeeded, 1));
}

#[tokio::test]
async fn a_node_that_closes_its_store_gives_its_partitions_back_after_its_last_commit() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let admin = super::tests::client(&settings(&pg, &database))
        .await
        .unwrap();
    let owned: i64 = admin
        .query_one(
            "SELECT count(*) FROM partitions WHERE owner IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owned, 256);
    let Node { store, writer, .. } = node;
    drop(store);
    tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
    let owned: i64 = admin
        .query_one(
            "SELECT count(*) FROM partitions WHERE owner IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        owned, 0,
        "every partition is free for the other nodes at once"
    );
}
