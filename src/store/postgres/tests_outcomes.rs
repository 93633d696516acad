//! `PgStore` against a real PostgreSQL, after ingest: attempt outcomes (success, retry,
//! failure, cancellation, a manual retry, and the two ways an endpoint is disabled, as
//! the redb backend's `lifecycle` rules say), the attempt counters, replay, and the
//! listings with their cursors and scan bound.

use super::tests_support::*;
use crate::ids::uuid_v7;
use crate::store::records::{AttemptRecord, DeliveryState, SubscriptionStatus};
use crate::store::stats::{Scale, StatsQuery};
use crate::store::*;

/// Records an attempt of `delivery` made at `at_ms` that answered `status`.
async fn attempt(node: &Node, delivery: u128, at_ms: u64, status: u16, next: NextStep, gone: bool) {
    let attempt = AttemptRecord {
        attempted_ms: at_ms,
        url: "https://example.com/".into(),
        status: Some(status),
        error: (status >= 400).then(|| format!("HTTP {status}")),
        duration_ms: 12,
        response_body: b"ok".to_vec(),
        response_headers: vec![("x-seen".into(), "1".into())],
    };
    node.store
        .record_attempt(AttemptReport {
            delivery,
            attempt,
            request_headers: vec![("webhook-id".into(), "evt_1".into())],
            next,
            gone,
        })
        .await
        .unwrap();
}

/// One new delivery to the one subscription there is.
async fn one_delivery(node: &Node, n: u32) -> u128 {
    let outcome = node
        .store
        .ingest(vec![event_of("job.created", n, None)])
        .await
        .unwrap();
    accepted(&outcome[0])[0]
}

async fn events_of_type(node: &Node, event_type: &str) -> usize {
    let page = node
        .store
        .events_page(
            0,
            u64::MAX >> 16,
            Some(event_type.into()),
            None,
            100,
            |_| true,
        )
        .await
        .unwrap();
    page.items.len()
}

#[tokio::test]
async fn outcomes_succeed_retry_fail_and_are_counted() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let sub = put(&node, subscription(&["*"])).await;
    let now = now_ms();

    let ok = one_delivery(&node, 1).await;
    attempt(&node, ok, now, 200, NextStep::Succeeded, false).await;
    let d = node.store.delivery(ok).await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.attempts, d.next_attempt_ms),
        (DeliveryState::Succeeded, 1, None)
    );
    assert_eq!(d.last_status, Some(200));
    let attempts = node.store.attempts(ok, 0, 10).await.unwrap();
    assert_eq!(attempts.items.len(), 1);
    let (n, record, request) = &attempts.items[0];
    assert_eq!(
        (*n, record.status, record.response_body.as_slice()),
        (1, Some(200), &b"ok"[..])
    );
    assert_eq!(request.as_ref().unwrap().headers[0].0, "webhook-id");

    let retried = one_delivery(&node, 2).await;
    let later = now + HOUR;
    attempt(&node, retried, now, 500, NextStep::RetryAt(later), false).await;
    let d = node.store.delivery(retried).await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.next_attempt_ms),
        (DeliveryState::Retrying, Some(later))
    );
    assert!(
        node.sink
            .due
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.delivery == retried && e.due_ms == later)
    );
    assert_eq!(
        pg.psql(
            &database,
            "SELECT failing_since_ms IS NOT NULL FROM subscription_health"
        ),
        "t",
        "the failure clock started"
    );

    let failed = one_delivery(&node, 3).await;
    attempt(&node, failed, now, 500, NextStep::Failed, false).await;
    let d = node.store.delivery(failed).await.unwrap().unwrap();
    assert_eq!((d.state, d.next_attempt_ms), (DeliveryState::Failed, None));
    assert_eq!(events_of_type(&node, "hookd.delivery.failed").await, 1);
    let report = node.observed.reports.lock().unwrap().clone();
    assert_eq!(
        report
            .iter()
            .map(|r| (r.succeeded, r.failed))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        (1, 1)
    );

    // A manual retry of the ended delivery: queued with its state kept; its one attempt
    // fails quietly (no second announcement, not counted towards disabling).
    let RetryOutcome::Queued(queued) = node.store.retry(failed).await.unwrap() else {
        panic!("not queued");
    };
    assert!(queued.retry_once && queued.state == DeliveryState::Failed);
    assert!(queued.next_attempt_ms.is_some());
    attempt(&node, failed, now, 500, NextStep::RetryAt(later), false).await;
    let d = node.store.delivery(failed).await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.attempts, d.retry_once, d.next_attempt_ms),
        (DeliveryState::Failed, 2, false, None)
    );
    assert_eq!(events_of_type(&node, "hookd.delivery.failed").await, 1);
    assert_eq!(
        node.store.retry(uuid_v7()).await.unwrap(),
        RetryOutcome::NotFound
    );

    // The counters: four attempts in this minute, one of them a success.
    let minutes = StatsQuery {
        scale: Scale::Minute,
        from_ms: now - 60_000,
        until_ms: now + 60_000,
    };
    let stats = node.store.attempt_stats(minutes, |_| true).await.unwrap();
    assert_eq!(stats.subscriptions.len(), 1);
    let (counted, counters) = stats.subscriptions[0];
    assert_eq!(
        (counted, counters.attempts, counters.succeeded),
        (sub, 4, 1)
    );
    assert_eq!(
        counters.latency_ms(1.0),
        Some(20),
        "12 ms falls in the 20 ms bucket"
    );
    let hidden = node.store.attempt_stats(minutes, |_| false).await.unwrap();
    assert!(hidden.subscriptions.is_empty() && hidden.periods.is_empty());

    // A deleted subscription's delivery is cancelled by its next outcome, and refused
    // a manual retry.
    let orphan = one_delivery(&node, 4).await;
    assert!(node.store.delete_subscription(sub).await.unwrap());
    attempt(&node, orphan, now, 500, NextStep::RetryAt(later), false).await;
    let d = node.store.delivery(orphan).await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.next_attempt_ms),
        (DeliveryState::Cancelled, None)
    );
    assert_eq!(
        node.store.retry(orphan).await.unwrap(),
        RetryOutcome::Cancelled
    );
}

#[tokio::test]
async fn a_gone_endpoint_and_a_long_failing_one_are_disabled_and_announced() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let mut settings = writer_settings();
    settings.disable_after_ms = 1_000;
    let node = node_with(&pg, &database, settings).await;
    let watcher = put(&node, subscription(&["hookd.*"])).await;
    let gone = put(&node, subscription(&["job.*"])).await;
    let now = now_ms();

    let delivery = one_delivery(&node, 1).await;
    attempt(&node, delivery, now, 410, NextStep::Failed, true).await;
    let record = node.shared.snapshots.current().get(gone).unwrap().clone();
    assert_eq!(record.status, SubscriptionStatus::Disabled);
    assert!(record.disabled_reason.as_deref().unwrap().contains("410"));
    assert!(node.sink.forgotten.lock().unwrap().contains(&gone));
    assert_eq!(
        events_of_type(&node, "hookd.subscription.disabled").await,
        1
    );
    assert_eq!(events_of_type(&node, "hookd.delivery.failed").await, 1);
    // Both announcements went to the subscription that follows hookd.*.
    let page = node
        .store
        .subscription_deliveries(watcher, None, None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);

    // Failing continuously for longer than disable_after (1 s): the first failure
    // starts the clock, a later one past it disables.
    let mut resumed = subscription(&["job.*"]);
    resumed.updated_ms = 2;
    node.store
        .put_subscription(gone, resumed, None)
        .await
        .unwrap();
    let since = node
        .shared
        .snapshots
        .current()
        .get(gone)
        .unwrap()
        .active_since_ms;
    assert!(since >= now, "made ACTIVE again now");
    let delivery = one_delivery(&node, 2).await;
    attempt(
        &node,
        delivery,
        since,
        500,
        NextStep::RetryAt(since + HOUR),
        false,
    )
    .await;
    assert_eq!(
        node.shared.snapshots.current().get(gone).unwrap().status,
        SubscriptionStatus::Active
    );
    attempt(
        &node,
        delivery,
        since + 5_000,
        500,
        NextStep::RetryAt(since + HOUR),
        false,
    )
    .await;
    let record = node.shared.snapshots.current().get(gone).unwrap().clone();
    assert_eq!(record.status, SubscriptionStatus::Disabled);
    assert!(
        record
            .disabled_reason
            .as_deref()
            .unwrap()
            .contains("failing continuously")
    );
    let d = node.store.delivery(delivery).await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.attempts),
        (DeliveryState::Retrying, 2),
        "its retry waits"
    );
    assert_eq!(
        events_of_type(&node, "hookd.subscription.disabled").await,
        2
    );

    // The database holds what the snapshot says: a node started now reads it.
    let other = node_with(&pg, &database, settings).await;
    let read = other.shared.snapshots.current().get(gone).unwrap().clone();
    assert_eq!(read.status, SubscriptionStatus::Disabled);
}

#[tokio::test]
async fn a_replay_queues_the_matching_events_of_a_range_again() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let first = put(&node, subscription(&["job.*"])).await;
    let since = now_ms();
    let mut deliveries = Vec::new();
    for n in 0..5 {
        deliveries.push(one_delivery(&node, n).await);
    }
    node.store
        .ingest(vec![event_of("other.kind", 9, None)])
        .await
        .unwrap();
    let until = now_ms() + 1;
    attempt(&node, deliveries[1], since, 500, NextStep::Failed, false).await;
    attempt(&node, deliveries[3], since, 500, NextStep::Failed, false).await;

    let late = put(&node, subscription(&["job.*"])).await;
    let all = node.store.replay(late, since, until, false).await.unwrap();
    assert_eq!(
        all,
        ReplayOutcome::Queued {
            queued: 5,
            resume_ms: None
        }
    );
    let failed = node.store.replay(first, since, until, true).await.unwrap();
    assert_eq!(
        failed,
        ReplayOutcome::Queued {
            queued: 2,
            resume_ms: None
        }
    );
    let page = node
        .store
        .subscription_deliveries(late, None, None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    let fresh = node.sink.fresh.lock().unwrap().clone();
    let replayed: Vec<_> = fresh
        .iter()
        .filter(|f| page.items.iter().any(|(d, _)| *d == f.delivery))
        .collect();
    assert_eq!(replayed.len(), 5);
    assert!(
        replayed.iter().all(|f| !f.body.is_empty()),
        "with their bodies"
    );
    assert_eq!(
        node.store
            .replay(uuid_v7(), since, until, false)
            .await
            .unwrap(),
        ReplayOutcome::NotFound
    );
}

#[tokio::test]
async fn listings_page_newest_first_with_cursors() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    let sub = put(&node, subscription(&["*"])).await;
    let events: Vec<NewEvent> = (0..25).map(|n| event_of("job.created", n, None)).collect();
    let mut ids: Vec<u128> = events.iter().map(|e| e.id).collect();
    // Ids made in one millisecond are not in the order made: n by id, to compare.
    let numbers: std::collections::HashMap<u128, u64> =
        ids.iter().zip(0..).map(|(id, n)| (*id, n)).collect();
    let outcomes = node.store.ingest(events).await.unwrap();
    let deliveries: Vec<u128> = outcomes.iter().flat_map(accepted).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = node
            .store
            .events_page(0, u64::MAX >> 16, None, cursor, 10, |_| true)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|(id, _)| *id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every event once, newest first");
    // A filter that keeps every third event fills its pages from further back.
    let n_of = |e: &records::EventRecord| {
        serde_json::from_slice::<serde_json::Value>(&e.body).unwrap()["n"]
            .as_u64()
            .unwrap()
    };
    let mut kept = Vec::new();
    let mut cursor = None;
    loop {
        let page = node
            .store
            .events_page(0, u64::MAX >> 16, None, cursor, 4, move |e| {
                n_of(e) % 3 == 0
            })
            .await
            .unwrap();
        assert!(
            page.items.len() == 4 || page.next.is_none(),
            "only the last page is short"
        );
        kept.extend(page.items.iter().map(|(_, e)| n_of(e)));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let thirds: Vec<u64> = ids
        .iter()
        .map(|id| numbers[id])
        .filter(|n| n % 3 == 0)
        .collect();
    assert_eq!(kept, thirds);
    let none = node
        .store
        .events_page(
            0,
            u64::MAX >> 16,
            Some("job.created".into()),
            None,
            4,
            |_| false,
        )
        .await
        .unwrap();
    assert!(
        none.items.is_empty() && none.next.is_none(),
        "read to the end: no cursor"
    );

    // A subscription's deliveries, all and by state, and an event's.
    let first = node
        .store
        .subscription_deliveries(sub, None, None, 20)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 20);
    let rest = node
        .store
        .subscription_deliveries(sub, None, first.next, 20)
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.next), (5, None));
    for &delivery in &deliveries[..3] {
        attempt(
            &node,
            delivery,
            now_ms(),
            500,
            NextStep::RetryAt(now_ms() + HOUR),
            false,
        )
        .await;
    }
    let retrying = node
        .store
        .subscription_deliveries(sub, Some(DeliveryState::Retrying), None, 2)
        .await
        .unwrap();
    assert_eq!(retrying.items.len(), 2);
    let tail = node
        .store
        .subscription_deliveries(sub, Some(DeliveryState::Retrying), retrying.next, 2)
        .await
        .unwrap();
    assert_eq!((tail.items.len(), tail.next), (1, None));
    let mut found: Vec<u128> = retrying
        .items
        .iter()
        .chain(&tail.items)
        .map(|(d, _)| *d)
        .collect();
    found.sort_unstable();
    let mut expected = deliveries[..3].to_vec();
    expected.sort_unstable();
    assert_eq!(found, expected);
    let of_event = node
        .store
        .event_deliveries(ids[0], None, 10, |_| true)
        .await
        .unwrap();
    assert_eq!((of_event.items.len(), of_event.next), (1, None));

    // Attempts in order, a page at a time.
    let delivery = deliveries[0];
    attempt(
        &node,
        delivery,
        now_ms(),
        500,
        NextStep::RetryAt(now_ms() + HOUR),
        false,
    )
    .await;
    attempt(&node, delivery, now_ms(), 200, NextStep::Succeeded, false).await;
    let page = node.store.attempts(delivery, 0, 2).await.unwrap();
    let attempt_numbers: Vec<u32> = page.items.iter().map(|(n, _, _)| *n).collect();
    assert_eq!((attempt_numbers, page.next), (vec![1, 2], Some(2)));
    let page = node.store.attempts(delivery, 2, 2).await.unwrap();
    assert_eq!((page.items.len(), page.items[0].0, page.next), (1, 3, None));
}

/// A filter that keeps nothing examines at most `MAX_SCAN` rows and answers where to
/// go on, as redb does.
#[tokio::test]
async fn a_listing_examines_at_most_its_scan_bound() {
    let Some(pg) = server() else {
        return;
    };
    let database = pg.create_database();
    let node = node(&pg, &database).await;
    for start in (0..20_100u32).step_by(2_000) {
        let events = (start..(start + 2_000).min(20_100))
            .map(|n| event_of("job.created", n, None))
            .collect();
        node.store.ingest(events).await.unwrap();
    }
    let page = node
        .store
        .events_page(0, u64::MAX >> 16, None, None, 50, |_| false)
        .await
        .unwrap();
    assert!(page.items.is_empty());
    let next = page.next.expect("a cursor to go on from");
    // The next page, from the cursor, finds the hundred rows the first did not read.
    let rest = node
        .store
        .events_page(0, u64::MAX >> 16, None, Some(next), 50, |_| true)
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.items[0].0), (50, next - 1));
    let mut last = rest;
    let mut counted = last.items.len();
    while let Some(cursor) = last.next {
        last = node
            .store
            .events_page(0, u64::MAX >> 16, None, Some(cursor), 50, |_| true)
            .await
            .unwrap();
        counted += last.items.len();
    }
    assert_eq!(counted, 100, "20,000 examined by the first page, 100 left");
}
