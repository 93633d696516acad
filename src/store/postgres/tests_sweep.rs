//! The sweeper's steps against a real PostgreSQL, as redb's (`redb/tests_due.rs`):
//! pausing, resuming and deleting write the subscription alone; a deleted one's
//! deliveries are cancelled and a paused one's expired a bounded number at a time; a
//! resumed one's waiting retries become due now.

use super::tests_support::*;
use crate::store::records::SubscriptionStatus;
use crate::store::*;

/// Ingests `count` events, in requests of 100, for every ACTIVE subscription.
async fn backlog(node: &Node, count: u32) -> Vec<u128> {
    let mut deliveries = Vec::new();
    for start in (0..count).step_by(100) {
        let events = (start..count.min(start + 100))
            .map(|n| event_of("job.created", n, None))
            .collect();
        let outcomes = node.store.ingest(events).await.unwrap();
        deliveries.extend(outcomes.iter().flat_map(accepted));
    }
    deliveries
}

async fn set_status(node: &Node, id: u128, status: SubscriptionStatus) {
    let mut record = subscription(&["*"]);
    record.status = status;
    node.store.put_subscription(id, record, None).await.unwrap();
}

#[tokio::test]
async fn a_deleted_subscription_is_cancelled_in_bounded_steps() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let gone = put(&node, subscription(&["*"])).await;
    let kept = put(&node, subscription(&["*"])).await;
    backlog(&node, 250).await;
    let rows = "SELECT md5(string_agg(d::text, ',' ORDER BY id)) FROM deliveries AS d";
    let before = pg.psql(&database, rows);

    assert!(node.store.delete_subscription(gone).await.unwrap());
    assert_eq!(
        pg.psql(&database, rows),
        before,
        "deleting wrote the subscription alone"
    );
    assert_eq!(node.store.due_subscriptions().await.unwrap().len(), 2);

    let cancel = |subscription| Sweep::Cancel {
        subscription,
        limit: 100,
    };
    let untouched = node.store.sweep(cancel(kept)).await.unwrap();
    assert_eq!((untouched.ended, untouched.more), (0, false));
    let mut steps = Vec::new();
    loop {
        let step = node.store.sweep(cancel(gone)).await.unwrap();
        steps.push(step.ended);
        if !step.more {
            break;
        }
    }
    assert_eq!(steps, vec![100, 100, 50]);
    assert_eq!(node.store.due_subscriptions().await.unwrap(), vec![kept]);
    assert_eq!(
        pg.psql(
            &database,
            "SELECT count(*) FROM deliveries WHERE state = 4 AND next_attempt_ms IS NULL"
        ),
        "250"
    );
}

#[tokio::test]
async fn a_paused_subscriptions_deliveries_expire_in_bounded_steps_after_max_age() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let mut settings = writer_settings();
    settings.max_age_ms = 1;
    let node = node_with(&pg, &database, settings).await;
    let id = put(&node, subscription(&["*"])).await;
    backlog(&node, 150).await;
    let expire = |after| Sweep::Expire {
        subscription: id,
        after,
        limit: 100,
    };
    // ACTIVE: its deliveries are the dispatcher's, never expired by a sweep.
    let active = node.store.sweep(expire(0)).await.unwrap();
    assert_eq!((active.ended, active.more), (0, false));

    let rows = "SELECT md5(string_agg(d::text, ',' ORDER BY id)) FROM deliveries AS d";
    let before = pg.psql(&database, rows);
    set_status(&node, id, SubscriptionStatus::Deactivated).await;
    assert_eq!(
        pg.psql(&database, rows),
        before,
        "pausing wrote the subscription alone"
    );
    // max_age is 1 ms: every delivery made before this millisecond has passed it.
    let cutoff = now_ms() + 2;
    while now_ms() < cutoff {
        std::thread::yield_now();
    }
    let first = node.store.sweep(expire(0)).await.unwrap();
    assert_eq!((first.ended, first.more), (100, true));
    let second = node.store.sweep(expire(first.last.unwrap())).await.unwrap();
    assert_eq!((second.ended, second.more), (50, false));
    let again = node
        .store
        .sweep(expire(second.last.unwrap()))
        .await
        .unwrap();
    assert_eq!(again.ended, 0);
    assert_eq!(
        pg.psql(
            &database,
            "SELECT count(*) FROM deliveries
             WHERE state = 3 AND next_attempt_ms IS NULL AND last_error LIKE 'expired%'"
        ),
        "150"
    );
    assert!(node.store.due_subscriptions().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_resumed_subscriptions_waiting_retries_become_due_now() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let id = put(&node, subscription(&["*"])).await;
    let deliveries = backlog(&node, 2).await;
    let later = now_ms() + HOUR;
    let attempt = records::AttemptRecord {
        attempted_ms: now_ms(),
        url: "https://example.com/".into(),
        status: Some(500),
        error: None,
        duration_ms: 1,
        response_body: vec![],
        response_headers: vec![],
    };
    node.store
        .record_attempt(AttemptReport {
            delivery: deliveries[0],
            attempt,
            request_headers: Vec::new(),
            next: NextStep::RetryAt(later),
            gone: false,
        })
        .await
        .unwrap();
    set_status(&node, id, SubscriptionStatus::Deactivated).await;
    set_status(&node, id, SubscriptionStatus::Active).await;
    let since = node
        .shared
        .snapshots
        .current()
        .get(id)
        .unwrap()
        .active_since_ms;
    let resume = |since_ms| Sweep::Resume {
        subscription: id,
        since_ms,
        after: 0,
        limit: 10,
    };
    // A resume that is not the subscription's latest does nothing.
    let stale = node.store.sweep(resume(1)).await.unwrap();
    assert_eq!(stale.ended, 0);
    let step = node.store.sweep(resume(since)).await.unwrap();
    assert_eq!((step.ended, step.more), (1, false));
    let record = node.store.delivery(deliveries[0]).await.unwrap().unwrap();
    assert!(
        record.next_attempt_ms.unwrap() <= now_ms(),
        "due now: {record:?}"
    );
    let told = node.sink.due.lock().unwrap().clone();
    assert!(
        told.iter()
            .any(|e| e.delivery == deliveries[0] && e.due_ms <= now_ms())
    );
}
