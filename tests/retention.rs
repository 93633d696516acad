//! Retention against the real daemon: events posted in a burst by producers posting
//! batches back to back are all purged once they are older than the retention, with
//! no purge step left behind. Whether purging keeps pace with sustained ingest is a
//! rate, which depends on the machine: the bench's `retention` mode measures it (the
//! file size levels off), not this test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Api, Hookd, Options, WAIT, metric};
use serde_json::{Value, json};

/// Events per batch request.
const BATCH: usize = 100;
/// Batches each of the two producers posts: every writer batch then carries their
/// events beside a purge step for a while.
const BATCHES: usize = 60;
/// `storage.retention` of the test daemon.
const RETENTION: Duration = Duration::from_secs(1);

fn batch() -> Value {
    let events: Vec<Value> = (0..BATCH)
        .map(|i| json!({"eventType": "load.created", "data": {"i": i}}))
        .collect();
    json!({ "events": events })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_batches_is_purged_once_older_than_the_retention() {
    let hookd = Hookd::start(Options {
        storage: format!("retention = \"{}s\"", RETENTION.as_secs()),
        delivery: format!("max_age = \"{}s\"", RETENTION.as_secs()),
        ..Options::default()
    })
    .await;

    // Two producers, each posting its next batch as soon as the last one was accepted.
    let posted = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for _ in 0..2 {
        let api = Api {
            url: hookd.url.clone(),
            token: hookd.token.clone(),
            client: hookd.client.clone(),
        };
        let (posted, body) = (posted.clone(), batch());
        producers.push(tokio::spawn(async move {
            for _ in 0..BATCHES {
                let (status, answer) = api
                    .call("POST", "/v1/events/batch", Some(body.clone()))
                    .await;
                assert_eq!(status, 202, "{answer}");
                posted.fetch_add(BATCH as u64, Ordering::Relaxed);
            }
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    let posted = posted.load(Ordering::Relaxed);
    assert_eq!(posted, (2 * BATCHES * BATCH) as u64);

    // The purge counter is the only sign of a purge, so it is read until every event
    // posted is gone (they all pass the retention a second after the last 202).
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let purged = loop {
        let scrape = hookd.metrics().await;
        let purged = metric(&scrape, "hookd_purged_events_total").unwrap_or(0.0) as u64;
        if purged >= posted || tokio::time::Instant::now() >= deadline {
            break purged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        purged, posted,
        "purged {purged} of the {posted} events posted"
    );
    let (status, page) = hookd.call("GET", "/v1/events?limit=10", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 0, "{page}");
}
