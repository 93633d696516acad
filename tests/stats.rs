//! `GET /v1/stats`: attempts, success rate, latency and failing subscriptions over a
//! window, counted as attempts are recorded, each caller seeing only its subtree's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use common::{Hookd, Options, Receiver};
use serde_json::{Value, json};

const SCOPES: &[&str] = &["events:write", "subscriptions:read", "subscriptions:write"];

/// A tenant's subscription to `url`, and one event it posts; the delivery's id.
async fn tenant_delivery(hookd: &Hookd, key: &str, url: &str) -> (String, String) {
    let subscription = json!({"eventTypes": ["job.created"], "endpointUrl": url});
    let (status, body) = hookd
        .call_as(key, "POST", "/v1/subscriptions", Some(subscription))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let event = json!({"eventType": "job.created", "data": {"n": 1}});
    let (status, body) = hookd.call_as(key, "POST", "/v1/events", Some(event)).await;
    assert_eq!(status, 202, "{body}");
    (id, hookd.first_delivery(&body["data"]).await)
}

async fn stats(hookd: &Hookd, key: Option<&str>, query: &str) -> Value {
    let path = format!("/v1/stats{query}");
    let (status, body) = match key {
        Some(key) => hookd.call_as(key, "GET", &path, None).await,
        None => hookd.call("GET", &path, None).await,
    };
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn stats_count_attempts_for_the_callers_subtree_only() {
    // The failed delivery's retry comes long after the test: exactly two attempts.
    let hookd = Hookd::start(Options {
        delivery: "schedule = [\"1h\"]\nmax_age = \"2h\"\n".into(),
        ..Options::default()
    })
    .await;
    let ok = Receiver::start(&hookd.ca).await;
    let failing = Receiver::start(&hookd.ca).await;
    failing.reply_with(&[500]);
    hookd.create_entity("acme", None).await;
    hookd.create_entity("globex", None).await;
    let acme = hookd.create_key("acme", SCOPES).await;
    let globex = hookd.create_key("globex", SCOPES).await;

    let (_, delivered) = tenant_delivery(&hookd, &acme, &ok.url).await;
    let (failing_id, refused) = tenant_delivery(&hookd, &globex, &failing.url).await;
    hookd.wait_for_delivery_state(&delivered, "SUCCEEDED").await;
    hookd.wait_for_delivery_state(&refused, "RETRYING").await;

    let all = stats(&hookd, None, "").await;
    assert_eq!(all["window"], "hour");
    assert_eq!(all["resolution"], "minute");
    assert_eq!(all["truncated"], false);
    let totals = &all["totals"];
    assert_eq!(
        (&totals["attempts"], &totals["succeeded"], &totals["failed"]),
        (&json!(2), &json!(1), &json!(1)),
        "{all}"
    );
    assert_eq!(totals["successRate"], 0.5);
    assert!(totals["latencyP50Ms"].as_u64().is_some(), "{all}");
    let points: u64 = all["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(points, 2, "every attempt is in one minute of the series");
    assert_eq!(all["failing"].as_array().unwrap().len(), 1);
    assert_eq!(all["failing"][0]["subscriptionId"], failing_id.as_str());

    // Each tenant sees its own subscription's attempts, nothing of the other's.
    let of_acme = stats(&hookd, Some(&acme), "?window=week").await;
    assert_eq!(of_acme["resolution"], "hour");
    assert_eq!(of_acme["totals"]["attempts"], 1);
    assert_eq!(of_acme["totals"]["succeeded"], 1);
    assert_eq!(of_acme["failing"], json!([]));
    let of_globex = stats(&hookd, Some(&globex), "?window=day").await;
    assert_eq!(of_globex["totals"]["attempts"], 1);
    assert_eq!(of_globex["totals"]["successRate"], 0.0);
    assert_eq!(
        of_globex["failing"][0]["subscriptionId"],
        failing_id.as_str()
    );

    let (status, body) = hookd.call("GET", "/v1/stats?window=year", None).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("window"), "{body}");
    let writer_only = hookd.create_key("acme", &["events:write"]).await;
    let (status, _) = hookd.call_as(&writer_only, "GET", "/v1/stats", None).await;
    assert_eq!(status, 403);
}
