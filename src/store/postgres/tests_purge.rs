//! Retention in PostgreSQL against a real server: only events whose deliveries have all
//! ended (and not changed since the cutoff) go, with their deliveries and attempts; old
//! idempotency records go; and while another node holds the purge lock, a node's pass
//! ends without touching anything.

use super::tests_support::*;
use crate::store::records::AttemptRecord;
use crate::store::*;

async fn succeed(node: &Node, delivery: u128) {
    let attempt = AttemptRecord {
        attempted_ms: now_ms(),
        url: "https://example.com/".into(),
        status: Some(200),
        error: None,
        duration_ms: 3,
        response_body: Vec::new(),
        response_headers: Vec::new(),
    };
    node.store
        .record_attempt(AttemptReport {
            delivery,
            attempt,
            request_headers: Vec::new(),
            next: NextStep::Succeeded,
            gone: false,
        })
        .await
        .unwrap();
}

/// Purges everything older than now, step after step, until the pass is done.
async fn pass(node: &Node) -> PurgeOutcome {
    let cutoff = now_ms() + 1;
    let mut cursor = PurgeCursor::default();
    let mut total = PurgeOutcome::default();
    while !cursor.is_done() {
        let step = node.store.purge(cutoff, cutoff, cursor, 2).await.unwrap();
        total.events += step.events;
        total.deliveries += step.deliveries;
        total.attempts += step.attempts;
        total.idempotency += step.idempotency;
        total.kept += step.kept;
        cursor = step.next;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_events_go_unfinished_ones_stay_and_one_node_purges_at_a_time() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    put(&node, subscription(&["*"])).await;
    let mut deliveries = Vec::new();
    for n in 0..5 {
        let key = (n == 0).then_some((9, 9));
        let outcome = node
            .store
            .ingest(vec![event_of("job.created", n, key)])
            .await
            .unwrap();
        deliveries.extend(accepted(&outcome[0]));
    }
    // Three end, two stay due.
    for &delivery in &deliveries[..3] {
        succeed(&node, delivery).await;
    }

    // While another node's step holds the lock, this node's pass ends at once.
    let mut other = tokio_postgres_client(&pg, &database).await;
    let held = other.transaction().await.unwrap();
    held.execute("SELECT pg_advisory_xact_lock(x'686f6f6b6402'::bigint)", &[])
        .await
        .unwrap();
    let waiting = pass(&node).await;
    assert_eq!(
        waiting,
        PurgeOutcome {
            next: waiting.next,
            ..PurgeOutcome::default()
        }
    );
    held.rollback().await.unwrap();

    let done = pass(&node).await;
    assert_eq!(done.events, 3, "{done:?}");
    assert_eq!(done.deliveries, 3);
    assert_eq!(done.attempts, 3);
    assert_eq!(done.kept, 2);
    assert_eq!(done.idempotency, 1);
    let left = pg.psql(&database, "SELECT count(*) FROM events");
    assert_eq!(left, "2");
    assert!(node.store.delivery(deliveries[3]).await.unwrap().is_some());
    assert!(node.store.delivery(deliveries[0]).await.unwrap().is_none());
}

async fn tokio_postgres_client(
    pg: &crate::store::testdb::TempPostgres,
    database: &str,
) -> deadpool_postgres::Client {
    super::pool(&settings(pg, database))
        .unwrap()
        .get()
        .await
        .unwrap()
}
