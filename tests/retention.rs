//! Retention keeps pace with sustained ingest, against the real daemon: while producers
//! post batches back to back, everything older than the retention (and a margin for the
//! passes' tick) is purged, not only a fixed share per writer batch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, Hookd, Options, WAIT, metric};
use serde_json::{Value, json};

/// Events per batch request.
const BATCH: usize = 100;
/// `storage.retention` of the test daemon.
const RETENTION: Duration = Duration::from_secs(1);
/// Events older than the retention plus this are expected to be gone: the passes run
/// every 100 ms at this retention and a pass takes what it takes.
const MARGIN: Duration = Duration::from_secs(1);
/// Purged events that show the purge caught up with load, not with a quiet writer:
/// fifty steps of the old pacing (100 events a step).
const ENOUGH: u64 = 5_000;
/// How long the producers run before catching up counts. One step of 100 events per
/// writer batch purges half of what the two producers post, so by then the old pacing
/// is seconds of events behind, more than `MARGIN`, and further behind every second.
const WARM: Duration = Duration::from_secs(8);

fn batch() -> Value {
    let events: Vec<Value> = (0..BATCH)
        .map(|i| json!({"eventType": "load.created", "data": {"i": i}}))
        .collect();
    json!({ "events": events })
}

/// Events posted in all, by when their 202 arrived.
#[derive(Default)]
struct Posted(Mutex<Vec<(Instant, u64)>>);

impl Posted {
    fn add(&self, events: u64) {
        let mut log = self.0.lock().unwrap();
        let total = log.last().map_or(0, |&(_, n)| n) + events;
        log.push((Instant::now(), total));
    }

    /// Events whose 202 arrived before `at`.
    fn before(&self, at: Instant) -> u64 {
        let log = self.0.lock().unwrap();
        log.iter()
            .take_while(|&&(when, _)| when < at)
            .last()
            .map_or(0, |&(_, n)| n)
    }

    fn total(&self) -> u64 {
        self.0.lock().unwrap().last().map_or(0, |&(_, n)| n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_keeps_pace_with_batches_posted_back_to_back() {
    let hookd = Hookd::start(Options {
        storage: format!("retention = \"{}s\"", RETENTION.as_secs()),
        delivery: format!("max_age = \"{}s\"", RETENTION.as_secs()),
        ..Options::default()
    })
    .await;

    // Two producers, each posting its next batch as soon as the last one was accepted:
    // every writer batch carries their events beside a purge step.
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(Posted::default());
    let started = Instant::now();
    let mut producers = Vec::new();
    for _ in 0..2 {
        let api = Api {
            url: hookd.url.clone(),
            token: hookd.token.clone(),
            client: hookd.client.clone(),
        };
        let (stop, posted, body) = (stop.clone(), posted.clone(), batch());
        producers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, answer) = api
                    .call("POST", "/v1/events/batch", Some(body.clone()))
                    .await;
                assert_eq!(status, 202, "{answer}");
                posted.add(BATCH as u64);
            }
        }));
    }

    // The counter is the only sign of a purge, so it is read until it shows that
    // everything old enough is gone. The old pacing (one step of 100 events per writer
    // batch) falls further behind the longer the producers run and never gets there, so
    // a generous wait costs nothing.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let (caught_up, purged, due) = loop {
        let scrape = hookd.metrics().await;
        let purged = metric(&scrape, "hookd_purged_events_total").unwrap_or(0.0) as u64;
        let due = posted.before(Instant::now() - RETENTION - MARGIN);
        if started.elapsed() >= WARM && due >= ENOUGH && purged >= due {
            break (true, purged, due);
        }
        if tokio::time::Instant::now() >= deadline {
            break (false, purged, due);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.await.unwrap();
    }
    assert!(
        caught_up,
        "purged {purged} of the {due} events posted more than {:?} ago ({} posted in all)",
        RETENTION + MARGIN,
        posted.total()
    );
}
