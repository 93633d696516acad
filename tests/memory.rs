//! Resident memory of a fan-out, measured on the real binary as a child process: an
//! event's body is held once in memory whatever the number of its deliveries, so one
//! 1 MiB event sent to 100 subscriptions (and a batch of ten sent to ten) costs a few
//! MiB of resident memory, not one copy per delivery.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::daemon::{configure, spawn};
use common::{Api, Options, Receiver, TestCa};

const SUBSCRIPTIONS: usize = 100;
/// How many of them also receive the batch: ten events to ten subscriptions keep the
/// test short in a debug build and still run a hundred deliveries at once.
const BATCH_SUBSCRIPTIONS: usize = 10;
const BATCH: usize = 10;
/// The size of each event's `data`.
const EVENT_BYTES: usize = 1 << 20;
/// Growth of the peak resident set allowed for one event, and for the batch after it.
/// With a copy of the body per delivery (a store read each, and hyper's write buffer
/// each) it was 52-66 MiB for one event and 102-115 MiB with the batch in a debug
/// build, 210-225 and 263-274 MiB in a release build, where more attempts overlap.
/// With one copy per event it is 8-9 and 55-57 MiB in both, almost all of the latter
/// the ingest of the 10 MiB batch request (the same without any subscriber).
const ONE_EVENT_LIMIT_KIB: u64 = 32 << 10;
const BATCH_LIMIT_KIB: u64 = 80 << 10;
const POST_WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_event_fanned_out_is_held_once_in_memory() {
    let ca = Arc::new(TestCa::new());
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        server: "max_body_bytes = \"2MiB\"\nmax_batch_bytes = \"16MiB\"".into(),
        // A hundred 1 MiB requests at once to a receiver in a debug build can take longer
        // than the tests' usual 2 s; a timeout would only add retries.
        delivery: "timeout = \"30s\"".into(),
        ..Options::default()
    };
    configure(dir.path(), &ca, &options);

    let mut receiver = Receiver::start(&ca).await;
    let daemon = spawn(dir.path(), &ca);
    for i in 0..SUBSCRIPTIONS {
        let types: &[&str] = if i < BATCH_SUBSCRIPTIONS {
            &["one.*", "batch.*"]
        } else {
            &["one.*"]
        };
        daemon.api.subscribe(&receiver.url, types).await;
    }
    let at_rest = daemon.memory_kib("VmHWM");

    post(&daemon.api, "/v1/events", event("one.created", 0)).await;
    receive(&mut receiver, SUBSCRIPTIONS).await;
    let one = daemon.memory_kib("VmHWM") - at_rest;

    let events: Vec<String> = (1..=BATCH).map(|i| event("batch.created", i)).collect();
    let request = format!(r#"{{"events":[{}]}}"#, events.join(","));
    post(&daemon.api, "/v1/events/batch", request).await;
    receive(&mut receiver, BATCH_SUBSCRIPTIONS * BATCH).await;
    let batch = daemon.memory_kib("VmHWM") - at_rest;
    let after = daemon.memory_kib("VmRSS");
    drop(daemon);

    eprintln!(
        "peak resident memory at rest {at_rest} KiB, grown by {one} KiB for one event, \
         {batch} KiB with the batch; resident after {after} KiB"
    );
    assert!(
        one < ONE_EVENT_LIMIT_KIB,
        "one {EVENT_BYTES}-byte event to {SUBSCRIPTIONS} subscriptions grew the peak \
         resident memory by {one} KiB"
    );
    assert!(
        batch < BATCH_LIMIT_KIB,
        "a batch of {BATCH} such events grew the peak resident memory by {batch} KiB"
    );
}

/// An event of `EVENT_BYTES` of data, as JSON text (a debug build takes seconds to
/// serialise megabytes of `serde_json::Value`).
fn event(event_type: &str, i: usize) -> String {
    let blob = "x".repeat(EVENT_BYTES);
    format!(r#"{{"eventType":"{event_type}","data":{{"i":{i},"blob":"{blob}"}}}}"#)
}

/// Posts events, allowing `POST_WAIT` for the answer: a debug build parses and checks
/// ten megabytes of JSON slowly, the more so on a busy machine.
async fn post(api: &Api, path: &str, body: String) {
    let request = http::Request::post(format!("{}{path}", api.url))
        .header("authorization", format!("Bearer {}", api.token))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let answer = api.client.send(request, POST_WAIT, 1 << 16).await.unwrap();
    assert_eq!(answer.status, 202, "{:?}", answer.body);
}

/// Waits for `count` deliveries, each whole.
async fn receive(receiver: &mut Receiver, count: usize) {
    for _ in 0..count {
        let got = receiver.next().await;
        assert!(got.body.len() > EVENT_BYTES, "a whole body arrives");
    }
}
