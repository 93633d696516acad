//! A backlog larger than the dispatcher's in-memory window: pausing and resuming its
//! subscription while another subscription's producers go on, and a restart with the
//! backlog waiting. Every event arrives, once (or twice for an attempt abandoned by the
//! restart), read from the store a window at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{Hookd, Options, Receiver, WAIT, metric};
use serde_json::{Value, json};

/// More than one window (1024 entries) of the dispatcher.
const BACKLOG: usize = 3000;
const PER_ENDPOINT: usize = 4;

fn options() -> Options {
    Options {
        // Attempts held by the endpoint stay in flight until it answers.
        delivery: format!("per_endpoint_concurrency = {PER_ENDPOINT}\ntimeout = \"30s\""),
        // A restart abandons the attempts still hanging at once.
        server: "shutdown_grace = \"100ms\"".into(),
        ..Options::default()
    }
}

/// Posts `count` events of `event_type` in batches of 1000; their ids.
async fn post_batches(hookd: &Hookd, event_type: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for start in (0..count).step_by(1000) {
        let events: Vec<Value> = (start..count.min(start + 1000))
            .map(|n| json!({"eventType": event_type, "data": {"n": n}}))
            .collect();
        let (status, body) = hookd
            .call("POST", "/v1/events/batch", Some(json!({"events": events})))
            .await;
        assert_eq!(status, 202, "{body}");
        ids.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
    }
    ids
}

/// Takes deliveries from `receiver` until every id in `ids` has arrived; how many times
/// each arrived.
async fn receive_all(receiver: &mut Receiver, ids: &[String]) -> HashMap<String, usize> {
    let mut missing: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    while !missing.is_empty() {
        let got = receiver.next().await;
        let id = got.header("webhook-id");
        missing.remove(id);
        *seen.entry(id.to_owned()).or_default() += 1;
    }
    seen
}

async fn set(hookd: &Hookd, subscription: &str, patch: Value) {
    let path = format!("/v1/subscriptions/{subscription}");
    let (code, body) = hookd.call("PATCH", &path, Some(patch)).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn a_paused_backlog_waits_while_others_go_on_and_drains_once_resumed() {
    let hookd = Hookd::start(options()).await;
    let mut slow = Receiver::start(&hookd.ca).await;
    let mut other = Receiver::start(&hookd.ca).await;
    // One delivery a second: the backlog builds up behind the rate limit.
    let (status, made) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"eventTypes": ["a.*"], "endpointUrl": slow.url, "rateLimit": 1})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let paused = made["data"]["id"].as_str().unwrap().to_owned();
    hookd.subscribe(&other.url, &["b.*"]).await;
    let backlog = post_batches(&hookd, "a.made", BACKLOG).await;
    let mut arrived: HashMap<String, usize> = HashMap::new();
    // Paused just after a delivery, so the next one (a second later) never starts;
    // meanwhile the other subscription's producers go on.
    let got = slow.next().await;
    *arrived
        .entry(got.header("webhook-id").to_owned())
        .or_default() += 1;
    let producer = async {
        let mut ids = Vec::new();
        for n in 0..50 {
            let accepted = hookd.post_event("b.made", json!({"n": n})).await;
            ids.push(accepted["id"].as_str().unwrap().to_owned());
        }
        ids
    };
    let (posted, ()) = tokio::join!(
        producer,
        set(&hookd, &paused, json!({"status": "DEACTIVATED"}))
    );
    receive_all(&mut other, &posted).await;
    while let Ok(got) = slow.requests.try_recv() {
        *arrived
            .entry(got.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    slow.assert_quiet(Duration::from_millis(1500)).await;
    let scrape = hookd.metrics().await;
    let unfinished = metric(&scrape, "hookd_deliveries_waiting").unwrap()
        + metric(&scrape, "hookd_deliveries_in_flight").unwrap();
    assert_eq!(
        unfinished as usize,
        BACKLOG - arrived.len(),
        "the paused backlog is still waiting: {scrape}"
    );

    set(
        &hookd,
        &paused,
        json!({"status": "ACTIVE", "rateLimit": null}),
    )
    .await;
    let rest: Vec<String> = backlog
        .iter()
        .filter(|id| !arrived.contains_key(*id))
        .cloned()
        .collect();
    for (id, n) in receive_all(&mut slow, &rest).await {
        *arrived.entry(id).or_default() += n;
    }
    assert_eq!(arrived.len(), BACKLOG);
    assert!(
        arrived.values().all(|&n| n == 1),
        "each event of the backlog is sent once"
    );
}

#[tokio::test]
async fn a_restart_with_a_backlog_delivers_all_of_it_a_window_at_a_time() {
    let hookd = Hookd::start(options()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.hang_for(WAIT);
    hookd.subscribe(&receiver.url, &["*"]).await;
    let backlog = post_batches(&hookd, "job.made", BACKLOG).await;
    for _ in 0..PER_ENDPOINT {
        receiver.next().await;
    }
    receiver.hang_for(Duration::ZERO);
    let hookd = hookd.restart(options()).await;
    let (status, _) = hookd.call("GET", "/readyz", None).await;
    assert_eq!(status, 200);
    let arrived = receive_all(&mut receiver, &backlog).await;
    assert_eq!(arrived.len(), BACKLOG);
    // The attempts abandoned at the restart run again; nothing else does.
    let again = arrived.values().filter(|&&n| n > 1).count();
    assert!(again <= PER_ENDPOINT, "{again} sent twice");
    assert!(arrived.values().all(|&n| n <= 2));
    let scrape = hookd.metrics().await;
    assert_eq!(
        metric(&scrape, "hookd_deliveries_waiting"),
        Some(0.0),
        "{scrape}"
    );
}
