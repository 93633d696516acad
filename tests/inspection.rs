//! Inspection and bulk routes: batches are validated whole and committed together,
//! events and deliveries can be listed and filtered, and hookd's operational events
//! never feed themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::time::Duration;

use common::{Hookd, Options, Receiver};
use serde_json::{Value, json};

async fn event_count(hookd: &Hookd, query: &str) -> usize {
    let (status, page) = hookd
        .call("GET", &format!("/v1/events?limit=500{query}"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_batch_is_validated_whole_and_committed_together() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    hookd.subscribe(&receiver.url, &["order.*"]).await;

    let bad = json!({"events": [
        {"eventType": "order.paid", "data": {"n": 1}},
        {"eventType": "order paid", "data": {"n": 2}},
    ]});
    let (status, problem) = hookd.call("POST", "/v1/events/batch", Some(bad)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "events[1].eventType");
    assert_eq!(
        event_count(&hookd, "").await,
        0,
        "nothing of a refused batch is stored"
    );

    let good = json!({"events": [
        {"eventType": "order.paid", "data": {"n": 1}, "idempotencyKey": "k1"},
        {"eventType": "order.refunded", "data": {"n": 2}},
        {"eventType": "invoice.sent", "data": {"n": 3}},
    ]});
    let (status, results) = hookd.call("POST", "/v1/events/batch", Some(good)).await;
    assert_eq!(status, 202, "{results}");
    let results = results["data"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    let fanned: Vec<_> = results
        .iter()
        .map(|r| r["deliveryCount"].as_u64().unwrap())
        .collect();
    assert_eq!(fanned, vec![1, 1, 0]);
    let mut ids: Vec<String> = vec![
        receiver.next().await.header("webhook-id").to_string(),
        receiver.next().await.header("webhook-id").to_string(),
    ];
    ids.sort();
    let mut expected: Vec<String> = results[..2]
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(ids, expected);

    // A key reused with another body refuses the whole batch.
    let reused = json!({"events": [
        {"eventType": "order.paid", "data": {"n": 4}},
        {"eventType": "order.paid", "data": {"n": 99}, "idempotencyKey": "k1"},
    ]});
    let (status, problem) = hookd.call("POST", "/v1/events/batch", Some(reused)).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("events[1].idempotencyKey")
    );
    assert_eq!(event_count(&hookd, "").await, 3);

    let twice = json!({"events": [
        {"eventType": "a", "data": {}, "idempotencyKey": "x"},
        {"eventType": "a", "data": {}, "idempotencyKey": "x"},
    ]});
    // The same key and body twice in one batch is one event, the second a duplicate.
    let (status, body) = hookd.call("POST", "/v1/events/batch", Some(twice)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"][1]["duplicate"], true, "{body}");
    assert_eq!(body["data"][1]["id"], body["data"][0]["id"], "{body}");
    assert_eq!(event_count(&hookd, "").await, 4);
    let (status, _) = hookd
        .call("POST", "/v1/events/batch", Some(json!({"events": []})))
        .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn events_and_deliveries_can_be_listed_and_filtered() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (sub, _) = hookd.subscribe(&receiver.url, &["*"]).await;
    let mut posted = Vec::new();
    for i in 0..5 {
        let event_type = if i % 2 == 0 {
            "even.thing"
        } else {
            "odd.thing"
        };
        posted.push(hookd.post_event(event_type, json!({"i": i})).await);
        receiver.next().await;
    }
    for accepted in &posted {
        let delivery = hookd.first_delivery(accepted).await;
        hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
    }

    // Newest first, paginated.
    let (_, page) = hookd.call("GET", "/v1/events?limit=2", None).await;
    let first: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        vec![
            posted[4]["id"].as_str().unwrap(),
            posted[3]["id"].as_str().unwrap()
        ]
    );
    assert_eq!(page["data"][0]["data"], json!({"i": 4}));
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = hookd
        .call("GET", &format!("/v1/events?limit=10&cursor={cursor}"), None)
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);
    assert!(rest["nextCursor"].is_null());

    assert_eq!(event_count(&hookd, "&eventType=even.thing").await, 3);
    let since = posted[2]["createdAt"].as_str().unwrap().replace(':', "%3A");
    let until = posted[4]["createdAt"].as_str().unwrap();
    assert_eq!(
        event_count(&hookd, &format!("&since={since}&until={until}")).await,
        2
    );
    let (status, problem) = hookd.call("GET", "/v1/events?since=yesterday", None).await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("since")));

    let event_id = posted[0]["id"].as_str().unwrap();
    let (_, deliveries) = hookd
        .call("GET", &format!("/v1/events/{event_id}/deliveries"), None)
        .await;
    assert_eq!(deliveries["data"][0]["subscriptionId"], sub.as_str());
    assert_eq!(deliveries["data"][0]["eventId"], event_id);

    // By subscription and state.
    receiver.reply_with(&[500; 20]);
    let failing = hookd.post_event("odd.thing", json!({"i": 5})).await;
    receiver.next().await;
    let failing_delivery = hookd.first_delivery(&failing).await;
    hookd
        .wait_for_delivery_state(&failing_delivery, "RETRYING")
        .await;
    let list = |state: &str| format!("/v1/subscriptions/{sub}/deliveries?state={state}");
    let (_, retrying) = hookd.call("GET", &list("RETRYING"), None).await;
    let retrying: Vec<&Value> = retrying["data"].as_array().unwrap().iter().collect();
    assert_eq!(retrying.len(), 1);
    assert_eq!(retrying[0]["id"], failing_delivery.as_str());
    let (_, succeeded) = hookd.call("GET", &list("SUCCEEDED"), None).await;
    assert_eq!(succeeded["data"].as_array().unwrap().len(), 5);
    let (status, problem) = hookd.call("GET", &list("LOST"), None).await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("state")));
}

#[tokio::test]
async fn operational_events_never_feed_themselves() {
    let hookd = Hookd::start(Options {
        delivery: "max_age = \"300ms\"\n".into(),
        ..Options::default()
    })
    .await;
    // One endpoint that always fails receives both the business events and hookd's.
    let receiver = Receiver::start(&hookd.ca).await;
    receiver.reply_with(&[500; 100]);
    hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd.post_event("job.created", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "FAILED").await;

    // The failure is announced once; the announcement's own failed delivery is not.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (_, page) = hookd
            .call("GET", "/v1/events?eventType=hookd.delivery.failed", None)
            .await;
        let announced = page["data"].as_array().unwrap().clone();
        if let Some(first) = announced.first() {
            let (_, deliveries) = hookd
                .call(
                    "GET",
                    &format!("/v1/events/{}/deliveries", first["id"].as_str().unwrap()),
                    None,
                )
                .await;
            if deliveries["data"][0]["state"] == "FAILED" {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the announcement never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        event_count(&hookd, "&eventType=hookd.delivery.failed").await,
        1
    );
}
