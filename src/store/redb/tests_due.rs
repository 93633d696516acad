//! Store-level tests of the due queue's costs: pausing, resuming, disabling and deleting a
//! subscription write the subscription alone, whatever it has pending; the sweeper's
//! steps cancel a deleted one's deliveries and expire a paused one's, a bounded number
//! at a time; and the dispatcher's window reads take one subscription's range.

use ::redb::{ReadableDatabase, ReadableTable};

use super::tables::{DELIVERIES, DUE};
use super::tests::{database, event, open, open_with, rows, subscription};
use super::*;
use crate::ids::uuid_v7;
use crate::store::records::{DeliveryState, SubscriptionStatus};
use crate::store::*;

/// A store in `dir` with one ACTIVE subscription to every event type.
async fn with_subscription(dir: &tempfile::TempDir) -> (Store, WriterHandle, u128) {
    let (store, writer) = open(&dir.path().join("hookd.redb"));
    let id = uuid_v7();
    store
        .put_subscription(id, subscription(), None)
        .await
        .unwrap();
    (store, writer, id)
}

/// Ingests `count` events, in requests of 1000, for every ACTIVE subscription.
async fn backlog(store: &Store, count: u32) {
    for start in (0..count).step_by(1000) {
        let events = (start..count.min(start + 1000))
            .map(|n| event(n, None))
            .collect();
        store.ingest(events).await.unwrap();
    }
}

/// Every delivery (id, bytes) and every due entry.
type Rows = (Vec<(u128, Vec<u8>)>, Vec<(u128, u64, u128)>);

/// Every row of the deliveries and due tables, to compare before and after.
fn snapshot(store: &Store) -> Rows {
    let txn = database(store).begin_read().unwrap();
    let deliveries = txn
        .open_table(DELIVERIES)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value(), v.value().to_vec())
        })
        .collect();
    let due = txn
        .open_table(DUE)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap().0.value())
        .collect();
    (deliveries, due)
}

fn window(subscription: u128, after: Option<DueKey>, limit: usize) -> WindowRead {
    WindowRead {
        subscription,
        after,
        limit,
    }
}

async fn set_status(store: &Store, id: u128, status: SubscriptionStatus) {
    let mut record = subscription();
    record.status = status;
    store.put_subscription(id, record, None).await.unwrap();
}

#[tokio::test]
async fn pausing_and_resuming_write_the_subscription_alone_whatever_it_has_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer, id) = with_subscription(&dir).await;
    backlog(&store, 3000).await;
    let before = snapshot(&store);
    assert_eq!(before.1.len(), 3000);

    set_status(&store, id, SubscriptionStatus::Deactivated).await;
    assert!(snapshot(&store) == before, "pausing rewrote deliveries");
    set_status(&store, id, SubscriptionStatus::Active).await;
    assert!(snapshot(&store) == before, "resuming rewrote deliveries");

    // The dispatcher reads one subscription's range, a window at a time.
    let first = store
        .due_windows(vec![window(id, None, 1000)])
        .await
        .unwrap();
    assert_eq!(first[0].len(), 1000);
    let last = first[0][999];
    let next = store
        .due_windows(vec![window(id, Some((last.due_ms, last.delivery)), 5000)])
        .await
        .unwrap();
    assert_eq!(next[0].len(), 2000);
    assert!(next[0][0] > last);
    let other = store
        .due_windows(vec![window(uuid_v7(), None, 10)])
        .await
        .unwrap();
    assert!(other[0].is_empty());
    drop(store);
    writer.join();
}

#[tokio::test]
async fn a_deleted_subscription_is_cancelled_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = open(&dir.path().join("hookd.redb"));
    let (gone, kept) = (uuid_v7(), uuid_v7());
    store
        .put_subscription(gone, subscription(), None)
        .await
        .unwrap();
    store
        .put_subscription(kept, subscription(), None)
        .await
        .unwrap();
    backlog(&store, 2500).await;
    assert_eq!(rows(&store, DUE), 5000);

    assert!(store.delete_subscription(gone).await.unwrap());
    assert_eq!(
        rows(&store, DUE),
        5000,
        "deleting wrote the subscription alone"
    );
    assert_eq!(store.due_subscriptions().await.unwrap().len(), 2);

    // Nothing to sweep for a subscription that still exists.
    let untouched = store
        .sweep(Sweep::Cancel {
            subscription: kept,
            limit: 1000,
        })
        .await
        .unwrap();
    assert_eq!((untouched.ended, untouched.more), (0, false));
    let mut steps = Vec::new();
    loop {
        let step = store
            .sweep(Sweep::Cancel {
                subscription: gone,
                limit: 1000,
            })
            .await
            .unwrap();
        steps.push(step.ended);
        if !step.more {
            break;
        }
    }
    assert_eq!(steps, vec![1000, 1000, 500]);
    assert_eq!(rows(&store, DUE), 2500);
    assert_eq!(store.due_subscriptions().await.unwrap(), vec![kept]);
    let (deliveries, _) = snapshot(&store);
    let cancelled = deliveries
        .iter()
        .filter(|(_, bytes)| {
            codec::decode::<records::DeliveryRecord>(bytes)
                .unwrap()
                .state
                == DeliveryState::Cancelled
        })
        .count();
    assert_eq!(cancelled, 2500);
    drop(store);
    writer.join();
}

#[tokio::test]
async fn a_paused_subscriptions_deliveries_expire_in_bounded_steps_after_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = open_with(&dir.path().join("hookd.redb"), 1);
    let id = uuid_v7();
    store
        .put_subscription(id, subscription(), None)
        .await
        .unwrap();
    backlog(&store, 1500).await;
    let expire = |after| Sweep::Expire {
        subscription: id,
        after,
        limit: 1000,
    };
    // ACTIVE: its deliveries are the dispatcher's, never expired by a sweep.
    let active = store.sweep(expire(0)).await.unwrap();
    assert_eq!((active.ended, active.more), (0, false));

    set_status(&store, id, SubscriptionStatus::Deactivated).await;
    // max_age is 1 ms: every delivery made before this millisecond has passed it.
    let cutoff = now_ms() + 2;
    while now_ms() < cutoff {
        std::thread::yield_now();
    }
    let first = store.sweep(expire(0)).await.unwrap();
    assert_eq!((first.ended, first.more), (1000, true));
    let second = store.sweep(expire(first.last.unwrap())).await.unwrap();
    assert_eq!((second.ended, second.more), (500, false));
    assert_eq!(rows(&store, DUE), 0);
    let again = store.sweep(expire(second.last.unwrap())).await.unwrap();
    assert_eq!(again.ended, 0);
    let (deliveries, _) = snapshot(&store);
    for (_, bytes) in deliveries {
        let record: records::DeliveryRecord = codec::decode(&bytes).unwrap();
        assert_eq!(record.state, DeliveryState::Failed);
        assert!(record.last_error.unwrap().contains("expired"));
    }
    drop(store);
    writer.join();
}

#[tokio::test]
async fn a_schema_1_due_queue_is_rekeyed_by_subscription_and_parked_deliveries_unparked() {
    use super::tables::{DUE_V1, META};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.redb");
    let (store, writer) = open(&path);
    let id = uuid_v7();
    store
        .put_subscription(id, subscription(), None)
        .await
        .unwrap();
    backlog(&store, 3).await;
    let (deliveries, due) = snapshot(&store);
    drop(store);
    writer.join();

    // Rewrite the file as schema 1 had it: (due, delivery) -> subscription, the first
    // delivery parked under its expiry time.
    let parked = due[0].2;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut old = txn.open_table(DUE_V1).unwrap();
            let mut records = txn.open_table(DELIVERIES).unwrap();
            for &(subscription, at, delivery) in &due {
                let at = if delivery == parked { u64::MAX / 2 } else { at };
                old.insert((at, delivery), subscription).unwrap();
            }
            let bytes = &deliveries.iter().find(|(d, _)| *d == parked).unwrap().1;
            let mut record: records::DeliveryRecord = codec::decode(bytes).unwrap();
            record.parked = true;
            record.next_attempt_ms = Some(u64::MAX / 2);
            records
                .insert(parked, codec::encode(&record).unwrap().as_slice())
                .unwrap();
        }
        txn.delete_table(DUE).unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(migrate::VERSION_KEY, 1u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    let before = now_ms();
    let (store, writer) = open(&path);
    let (records, migrated) = snapshot(&store);
    assert_eq!(migrated.len(), 3);
    for &(subscription, at, delivery) in &migrated {
        assert_eq!(subscription, id);
        if delivery == parked {
            assert!(
                (before..=now_ms()).contains(&at),
                "unparked: due at the migration"
            );
        } else {
            assert!(due.contains(&(subscription, at, delivery)));
        }
    }
    let bytes = &records.iter().find(|(d, _)| *d == parked).unwrap().1;
    let record: records::DeliveryRecord = codec::decode(bytes).unwrap();
    assert!(!record.parked);
    let txn = database(&store).begin_read().unwrap();
    assert!(txn.open_table(DUE_V1).is_err(), "the old table is gone");
    drop(txn);
    drop(store);
    writer.join();
}

/// Records a failed attempt whose retry is due at `retry_at`.
pub(super) async fn fail(store: &Store, delivery: u128, retry_at: u64) {
    let attempt = records::AttemptRecord {
        attempted_ms: now_ms(),
        url: "https://example.com/".into(),
        status: Some(500),
        error: None,
        duration_ms: 1,
        response_body: vec![],
        response_headers: vec![],
    };
    let report = AttemptReport {
        delivery,
        attempt,
        request_headers: Vec::new(),
        next: NextStep::RetryAt(retry_at),
        gone: false,
    };
    store.record_attempt(report).await.unwrap();
}

fn accepted(outcomes: Vec<IngestOutcome>) -> Vec<u128> {
    outcomes
        .into_iter()
        .flat_map(|o| match o {
            IngestOutcome::Accepted { deliveries } => deliveries,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_resumed_subscriptions_waiting_retries_become_due_now() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer, id) = with_subscription(&dir).await;
    let deliveries = accepted(
        store
            .ingest(vec![event(1, None), event(2, None)])
            .await
            .unwrap(),
    );
    let later = now_ms() + 3_600_000;
    fail(&store, deliveries[0], later).await;
    set_status(&store, id, SubscriptionStatus::Deactivated).await;
    let mut resumed = subscription();
    resumed.active_since_ms = now_ms() + 1;
    store.put_subscription(id, resumed, None).await.unwrap();
    let resume = |since_ms| Sweep::Resume {
        subscription: id,
        since_ms,
        after: 0,
        limit: 10,
    };
    // A resume that is not the subscription's latest does nothing.
    let stale = store.sweep(resume(1)).await.unwrap();
    assert_eq!(stale.ended, 0);
    let step = store
        .sweep(resume(resumed_since(&store, id)))
        .await
        .unwrap();
    assert_eq!((step.ended, step.more), (1, false));
    let record = store.delivery(deliveries[0]).await.unwrap().unwrap();
    assert!(
        record.next_attempt_ms.unwrap() <= now_ms(),
        "due now: {record:?}"
    );
    drop(store);
    writer.join();
}

fn resumed_since(store: &Store, id: u128) -> u64 {
    store.subscriptions().get(id).unwrap().active_since_ms
}

#[tokio::test]
async fn filtered_lists_read_their_index_and_cost_what_they_return() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer, id) = with_subscription(&dir).await;
    // Three rare events and three RETRYING deliveries, then more than a scan's worth
    // (MAX_SCAN) of others newer than them.
    let mut rare: Vec<NewEvent> = (0..3).map(|n| event(n, None)).collect();
    for e in &mut rare {
        e.record.event_type = "rare.kind".into();
    }
    let failing = accepted(store.ingest(rare).await.unwrap());
    for &delivery in &failing {
        fail(&store, delivery, now_ms() + 3_600_000).await;
    }
    backlog(&store, 21_000).await;

    let events = store
        .events_page(
            0,
            u64::MAX >> 16,
            Some("rare.kind".into()),
            None,
            50,
            |_| true,
        )
        .await
        .unwrap();
    assert_eq!(events.items.len(), 3);
    assert_eq!(events.next, None, "one page says it all");
    let none = store
        .events_page(0, u64::MAX >> 16, Some("no.such".into()), None, 50, |_| {
            true
        })
        .await
        .unwrap();
    assert!(none.items.is_empty() && none.next.is_none());

    let retrying = store
        .subscription_deliveries(id, Some(DeliveryState::Retrying), None, 2)
        .await
        .unwrap();
    assert_eq!(retrying.items.len(), 2);
    let rest = store
        .subscription_deliveries(id, Some(DeliveryState::Retrying), retrying.next, 2)
        .await
        .unwrap();
    assert_eq!((rest.items.len(), rest.next), (1, None));
    let mut seen: Vec<u128> = retrying
        .items
        .iter()
        .chain(&rest.items)
        .map(|(d, _)| *d)
        .collect();
    seen.sort_unstable();
    let mut failing = failing;
    failing.sort_unstable();
    assert_eq!(seen, failing);
    drop(store);
    writer.join();
}
