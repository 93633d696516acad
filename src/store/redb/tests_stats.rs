//! Store-level tests of the attempt counters: recording an attempt counts it in its
//! subscription's minute and hour, a read sums them per period and per subscription for
//! the subscriptions the caller may see, and retention drops expired rows.

use super::tables::{ATTEMPT_STATS, IDEMPOTENCY_TIMES};
use super::tests::{database, event, open, rows, subscription};
use super::*;
use crate::ids::uuid_v7;
use crate::store::records::AttemptRecord;
use crate::store::stats::{Scale, StatsQuery};
use crate::store::*;

const MINUTE: u64 = 60_000;
const HOUR: u64 = 3_600_000;

/// A new delivery of one event to `subscription` alone.
async fn delivery(store: &Store, subscription: u128) -> u128 {
    let mut new = event(0, None);
    new.targets = Some(vec![subscription]);
    let outcome = store.ingest(vec![new]).await.unwrap().remove(0);
    let IngestOutcome::Accepted { deliveries } = outcome else {
        panic!("{outcome:?}");
    };
    deliveries[0]
}

/// Records one attempt of a new delivery to `subscription`, made at `at_ms`.
async fn attempt(store: &Store, subscription: u128, at_ms: u64, duration_ms: u32, next: NextStep) {
    let delivery = delivery(store, subscription).await;
    let attempt = AttemptRecord {
        attempted_ms: at_ms,
        url: "https://example.com/".into(),
        status: Some(if next == NextStep::Succeeded {
            200
        } else {
            500
        }),
        error: None,
        duration_ms,
        response_body: vec![],
        response_headers: vec![],
    };
    let report = AttemptReport {
        delivery,
        attempt,
        request_headers: Vec::new(),
        next,
        gone: false,
    };
    store.record_attempt(report).await.unwrap();
}

#[tokio::test]
async fn attempts_are_counted_per_subscription_and_period() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _writer) = open(&dir.path().join("hookd.redb"));
    let (a, b) = (uuid_v7(), uuid_v7());
    for id in [a, b] {
        store
            .put_subscription(id, subscription(), None)
            .await
            .unwrap();
    }
    // Ten minutes into the hour that began two to three hours ago: the minutes used
    // below all fall in that one hour, whatever the time the test runs.
    let m0 = (now_ms() - 2 * HOUR) / HOUR * HOUR + 10 * MINUTE;
    attempt(&store, a, m0 + 1_000, 3, NextStep::Succeeded).await;
    attempt(&store, a, m0 + 59_999, 40, NextStep::Succeeded).await;
    attempt(&store, a, m0 + MINUTE, 200, NextStep::RetryAt(now_ms())).await;
    attempt(&store, b, m0 + 2_000, 9_000, NextStep::Failed).await;

    let minutes = StatsQuery {
        scale: Scale::Minute,
        from_ms: m0,
        until_ms: m0 + 2 * MINUTE,
    };
    let all = store.attempt_stats(minutes, |_| true).await.unwrap();
    assert!(!all.truncated);
    let periods: Vec<(u64, u32, u32)> = all
        .periods
        .iter()
        .map(|(at, c)| (*at, c.attempts, c.succeeded))
        .collect();
    assert_eq!(periods, [(m0, 3, 2), (m0 + MINUTE, 1, 0)]);
    let by_subscription: Vec<(u128, u32, u32)> = all
        .subscriptions
        .iter()
        .map(|(id, c)| (*id, c.attempts, c.failed()))
        .collect();
    let mut expected = vec![(a, 3, 1), (b, 1, 1)];
    expected.sort();
    assert_eq!(by_subscription, expected);
    let of_a = all.subscriptions.iter().find(|(id, _)| *id == a).unwrap().1;
    assert_eq!(of_a.latency_ms(0.5), Some(50), "3, 40 and 200 ms");
    assert_eq!(of_a.latency_ms(1.0), Some(200));

    // The caller sees only A: B's attempt is in no total.
    let only_a = store
        .attempt_stats(minutes, move |id| id == a)
        .await
        .unwrap();
    assert_eq!(only_a.subscriptions.len(), 1);
    assert_eq!(only_a.periods[0].1.attempts, 2);

    // The hour holds all four; a range without attempts answers nothing.
    let hours = StatsQuery {
        scale: Scale::Hour,
        from_ms: m0,
        until_ms: m0 + 1,
    };
    let hour = store.attempt_stats(hours, |_| true).await.unwrap();
    assert_eq!(hour.periods.len(), 1);
    assert_eq!(hour.periods[0].0, m0 / HOUR * HOUR);
    assert_eq!(hour.periods[0].1.attempts, 4);
    let later = StatsQuery {
        scale: Scale::Minute,
        from_ms: m0 + 5 * MINUTE,
        until_ms: m0 + 10 * MINUTE,
    };
    assert_eq!(
        store.attempt_stats(later, |_| true).await.unwrap(),
        Default::default()
    );
}

#[tokio::test]
async fn retention_drops_expired_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _writer) = open(&dir.path().join("hookd.redb"));
    let a = uuid_v7();
    store
        .put_subscription(a, subscription(), None)
        .await
        .unwrap();
    let now = now_ms();
    // Older than the retention; older than a day but within it; two hours old.
    for at in [now - 72 * HOUR, now - 30 * HOUR, now - 2 * HOUR] {
        attempt(&store, a, at, 5, NextStep::Succeeded).await;
    }
    assert_eq!(
        rows(&store, ATTEMPT_STATS),
        6,
        "a minute and an hour row each"
    );

    let token = tokio_util::sync::CancellationToken::new();
    let retention = 48 * HOUR;
    crate::retention::pass(&store, now - retention, now - retention, &token)
        .await
        .unwrap();

    // Kept: the hour rows within the retention, and the minute row of the last day.
    let count = |scale, from_ms| {
        let query = StatsQuery {
            scale,
            from_ms,
            until_ms: now,
        };
        let store = store.clone();
        async move {
            let stats = store.attempt_stats(query, |_| true).await.unwrap();
            stats.periods.iter().map(|(_, c)| c.attempts).sum::<u32>()
        }
    };
    assert_eq!(rows(&store, ATTEMPT_STATS), 3);
    assert_eq!(count(Scale::Hour, now - 72 * HOUR).await, 2);
    assert_eq!(count(Scale::Minute, now - 24 * HOUR).await, 1);
}

#[tokio::test]
async fn a_schema_2_file_gains_the_counters_and_the_idempotency_time_index() {
    use super::tables::{EVENTS, META};
    use ::redb::{ReadableDatabase, ReadableTableMetadata};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.redb");
    let (store, writer) = open(&path);
    let a = uuid_v7();
    store
        .put_subscription(a, subscription(), None)
        .await
        .unwrap();
    delivery(&store, a).await;
    store.ingest(vec![event(1, Some(9))]).await.unwrap();
    drop(store);
    writer.join();
    // As schema 2 left it: no counters, no time index of the idempotency records.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(ATTEMPT_STATS).unwrap());
        assert!(txn.delete_table(IDEMPOTENCY_TIMES).unwrap());
        txn.open_table(META)
            .unwrap()
            .insert(migrate::VERSION_KEY, 2u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    let (store, _writer) = open(&path);
    let txn = database(&store).begin_read().unwrap();
    let version = txn.open_table(META).unwrap();
    let version = version.get(migrate::VERSION_KEY).unwrap().unwrap();
    assert_eq!(
        migrate::decode_version(version.value()),
        migrate::SCHEMA_VERSION
    );
    assert_eq!(txn.open_table(EVENTS).unwrap().len().unwrap(), 2);
    drop(txn);
    assert_eq!(
        rows(&store, IDEMPOTENCY_TIMES),
        1,
        "the time index is built"
    );
    // Readable before any write, and counting from the upgrade on.
    let day = StatsQuery {
        scale: Scale::Hour,
        from_ms: now_ms() - 24 * HOUR,
        until_ms: now_ms(),
    };
    assert!(
        store
            .attempt_stats(day, |_| true)
            .await
            .unwrap()
            .periods
            .is_empty()
    );
    attempt(&store, a, now_ms(), 5, NextStep::Succeeded).await;
    assert_eq!(rows(&store, ATTEMPT_STATS), 2);
}
