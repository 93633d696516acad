//! How long console pages take on a large store (ignored by default: it builds the
//! store first). Run with
//! `cargo test --release --test console_render -- --ignored --nocapture`;
//! HOOKD_RENDER_EVENTS sets the store's size (default a million events). Times are the
//! server's own (`server-timing`: from the request's arrival to the page's last byte
//! rendered, API calls and store reads included), median and worst of 21 requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use std::time::Instant;

use common::{Hookd, Options, Receiver};
use serde_json::json;

const BATCH: usize = 1000;
/// Deliveries the measured subscription has: more than a page of 50.
const WATCHED: usize = 200;

fn server_ms(response: &hookd::delivery::client::BoundedResponse) -> f64 {
    let timing = response.headers["server-timing"].to_str().unwrap();
    timing.split("dur=").nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds a store of a million events; run by hand with --release"]
async fn pages_render_quickly_on_a_large_store() {
    let events: usize = std::env::var("HOOKD_RENDER_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (sub, _) = hookd.subscribe(&receiver.url, &["render.watched"]).await;

    let started = Instant::now();
    let batch = json!({"events": (0..BATCH)
        .map(|i| json!({"eventType": "render.bulk", "data": {"i": i, "note": "bulk"}}))
        .collect::<Vec<_>>()});
    let mut sent = 0;
    while sent < events {
        // Four batches at a time: the writer commits them together.
        let call = || hookd.call("POST", "/v1/events/batch", Some(batch.clone()));
        let (a, b, c, d) = tokio::join!(call(), call(), call(), call());
        for (status, body) in [a, b, c, d] {
            assert_eq!(status, 202, "{body}");
        }
        sent += 4 * BATCH;
    }
    let ingest = started.elapsed();
    let mut last = json!(null);
    for i in 0..WATCHED {
        last = hookd.post_event("render.watched", json!({"i": i})).await;
    }
    for _ in 0..WATCHED {
        receiver.next().await;
    }
    let delivery = hookd.first_delivery(&last).await;
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
    println!(
        "store: {sent} bulk events in {:.1} s, {WATCHED} delivered",
        ingest.as_secs_f64()
    );

    let session = hookd.sign_in(&hookd.token).await;
    let event = last["id"].as_str().unwrap();
    let pages = [
        (
            "subscriptions (list, last outcome)",
            "/console/subscriptions".to_owned(),
        ),
        (
            "subscription detail",
            format!("/console/subscriptions/{sub}"),
        ),
        (
            "50 deliveries of a subscription",
            format!("/console/deliveries?subscription={sub}"),
        ),
        (
            "50 SUCCEEDED deliveries",
            format!("/console/deliveries?subscription={sub}&state=SUCCEEDED"),
        ),
        (
            "delivery with its attempt",
            format!("/console/deliveries/{delivery}"),
        ),
        ("50 newest events", "/console/events".to_owned()),
        (
            "50 events of one type",
            "/console/events?eventType=render.watched".to_owned(),
        ),
        ("event detail", format!("/console/events/{event}")),
    ];
    let mut worst_deliveries = 0.0;
    for (name, path) in pages {
        let mut times = Vec::new();
        for _ in 0..21 {
            let page = hookd.page("GET", &path, Some(&session.cookie), None).await;
            assert_eq!(page.status, 200, "{path}");
            times.push(server_ms(&page));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<36} median {:>7.2} ms  worst {:>7.2} ms  ({path})",
            times[10], times[20]
        );
        if name.contains("deliveries of") {
            worst_deliveries = times[10];
        }
    }
    // The bound, for an optimised build only.
    if !cfg!(debug_assertions) {
        assert!(worst_deliveries < 20.0, "{worst_deliveries} ms");
    }
}
