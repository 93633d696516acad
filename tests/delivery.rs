//! End to end: events posted over HTTPS reach HTTPS receivers, signed, filtered by
//! type, fanned out, retried after failures, and kept across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use std::time::Duration;

use common::{Hookd, Options, Receiver, verify};
use serde_json::json;

#[tokio::test]
async fn an_event_is_delivered_signed_with_the_exact_stored_body() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (sub, secret) = hookd
        .subscribe(&receiver.url, &["v2.export-job.created"])
        .await;

    let accepted = hookd
        .post_event(
            "v2.export-job.created",
            json!({"jobId": 42, "note": "héllo"}),
        )
        .await;
    assert_eq!(accepted["deliveryCount"], 1);
    let event_id = accepted["id"].as_str().unwrap();

    let got = receiver.next().await;
    assert!(
        verify(&got, &secret),
        "signature verifies with the subscription's secret"
    );
    assert_eq!(got.header("webhook-id"), event_id);
    assert_eq!(got.header("content-type"), "application/json");
    assert!(got.header("user-agent").starts_with("hookd/"));
    let body = got.json();
    assert_eq!(body["eventId"], event_id);
    assert_eq!(body["eventType"], "v2.export-job.created");
    assert_eq!(body["entityId"], "root");
    assert_eq!(body["createdAt"], accepted["createdAt"]);
    assert_eq!(body["data"], json!({"jobId": 42, "note": "héllo"}));

    let deliveries = hookd.deliveries_of(event_id).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["subscriptionId"], sub.as_str());
    let delivery = deliveries[0]["id"].as_str().unwrap();
    let done = hookd.wait_for_delivery_state(delivery, "SUCCEEDED").await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["lastStatus"], 200);
    assert!(done["nextAttemptAt"].is_null());

    let (status, attempts) = hookd
        .call("GET", &format!("/v1/deliveries/{delivery}/attempts"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(attempts["data"][0]["statusCode"], 200);
    assert_eq!(attempts["data"][0]["responseBody"], "ok");
    assert_eq!(attempts["data"][0]["url"], receiver.url.as_str());
}

#[tokio::test]
async fn events_fan_out_to_every_matching_subscription_and_only_those() {
    let hookd = Hookd::start(Options::default()).await;
    let mut created = Receiver::start(&hookd.ca).await;
    let mut family = Receiver::start(&hookd.ca).await;
    let mut other = Receiver::start(&hookd.ca).await;
    let (_, created_secret) = hookd.subscribe(&created.url, &["job.created"]).await;
    let (_, family_secret) = hookd.subscribe(&family.url, &["job.*"]).await;
    hookd.subscribe(&other.url, &["invoice.paid"]).await;

    let accepted = hookd.post_event("job.created", json!({"n": 1})).await;
    assert_eq!(accepted["deliveryCount"], 2);
    let a = created.next().await;
    let b = family.next().await;
    assert!(verify(&a, &created_secret));
    assert!(verify(&b, &family_secret));
    assert!(
        !verify(&a, &family_secret),
        "each subscription signs with its own secret"
    );
    assert_eq!(
        a.body, b.body,
        "every subscription gets the identical bytes"
    );

    let accepted = hookd.post_event("job.deleted", json!({"n": 2})).await;
    assert_eq!(accepted["deliveryCount"], 1);
    assert_eq!(family.next().await.json()["eventType"], "job.deleted");

    let accepted = hookd.post_event("unrelated.type", json!({})).await;
    assert_eq!(accepted["deliveryCount"], 0);
    created.assert_quiet(Duration::from_millis(300)).await;
    other.assert_quiet(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn failed_attempts_are_retried_on_the_schedule_and_recorded() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.reply_with(&[500, 503]);
    let (_, secret) = hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd.post_event("job.created", json!({})).await;

    let first = receiver.next().await;
    let second = receiver.next().await;
    let third = receiver.next().await;
    for got in [&first, &second, &third] {
        assert!(verify(got, &secret));
        assert_eq!(got.body, first.body, "a retry sends the same body");
        assert_eq!(got.header("webhook-id"), first.header("webhook-id"));
    }
    let delivery = hookd.first_delivery(&accepted).await;
    let done = hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
    assert_eq!(done["attempts"], 3);
    let (_, attempts) = hookd
        .call("GET", &format!("/v1/deliveries/{delivery}/attempts"), None)
        .await;
    let codes: Vec<_> = attempts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].clone())
        .collect();
    assert_eq!(codes, vec![json!(500), json!(503), json!(200)]);
}

#[tokio::test]
async fn a_delivery_ends_failed_when_retries_would_pass_max_age() {
    let hookd = Hookd::start(Options {
        delivery: "max_age = \"250ms\"\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.reply_with(&[500; 10]);
    hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd.post_event("job.created", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    let failed = hookd.wait_for_delivery_state(&delivery, "FAILED").await;
    assert_eq!(failed["lastStatus"], 500);
    assert!(failed["nextAttemptAt"].is_null());
    receiver.next().await;
}

#[tokio::test]
async fn loopback_endpoints_are_refused_without_an_allow_list() {
    let closed = || Options {
        delivery: "allow_networks = []\n".into(),
        ..Options::default()
    };
    let hookd = Hookd::start(closed()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let port = receiver.addr.port();
    // Refused when the subscription is made, in every spelling a resolver accepts.
    let hosts = [
        "localhost",
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[fe80::1%25lo]",
        "localhost..",
    ];
    for host in hosts {
        let url = format!("https://{host}:{port}/hook");
        let body = json!({"eventTypes": ["*"], "endpointUrl": url});
        let (status, problem) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (422, Some("endpointUrl")),
            "{url}: {problem}"
        );
    }
    let (sub, _) = hookd
        .subscribe("https://receiver.invalid/hook", &["*"])
        .await;
    let patch = json!({"endpointUrl": format!("https://127.1:{port}/hook")});
    let (status, problem) = hookd
        .call("PATCH", &format!("/v1/subscriptions/{sub}"), Some(patch))
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("endpointUrl"))
    );
    hookd
        .call("DELETE", &format!("/v1/subscriptions/{sub}"), None)
        .await;

    // And when dialled: DNS can change after the check, so the connector's guard stays.
    // A subscription made while loopback was allowed meets it after a restart without.
    let hookd = hookd.restart(Options::default()).await;
    hookd.subscribe(&receiver.url, &["*"]).await;
    let hookd = hookd.restart(closed()).await;
    let accepted = hookd.post_event("job.created", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    let retrying = hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    let error = retrying["lastError"].as_str().unwrap();
    assert!(
        error.contains("refused to connect") && error.contains("loopback"),
        "{error}"
    );
    receiver.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn subscriptions_and_undelivered_events_survive_a_restart() {
    let hookd = Hookd::start(Options::default()).await;
    let ca = hookd.ca.clone();
    // A receiver address that is closed for now: attempts fail with a connection error.
    let parked = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = parked.local_addr().unwrap().port();
    drop(parked);
    let url = format!("https://localhost:{port}/hook");
    let (sub, secret) = hookd.subscribe(&url, &["*"]).await;
    let accepted = hookd
        .post_event("job.created", json!({"survives": true}))
        .await;
    let event_id = accepted["id"].as_str().unwrap().to_string();
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "RETRYING").await;

    let (dir, _) = hookd.stop().await;
    let mut receiver = Receiver::start_on(&ca, &format!("127.0.0.1:{port}")).await;
    let hookd = Hookd::start_in(dir, ca, Options::default()).await;

    let (status, body) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let got = receiver.next().await;
    assert!(verify(&got, &secret));
    assert_eq!(got.header("webhook-id"), event_id);
    assert_eq!(got.json()["data"]["survives"], true);
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
}

#[tokio::test]
async fn deleting_a_subscription_cancels_its_pending_deliveries() {
    let hookd = Hookd::start(Options {
        delivery: "schedule = [\"1h\"]\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.reply_with(&[500]);
    let (sub, _) = hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd.post_event("job.created", json!({})).await;
    receiver.next().await;
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    let (status, _) = hookd
        .call("DELETE", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, 204);
    let cancelled = hookd.wait_for_delivery_state(&delivery, "CANCELLED").await;
    assert!(cancelled["nextAttemptAt"].is_null());
    let (status, _) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, 404);
}
