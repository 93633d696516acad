//! Reliable delivery: disabling on 410 and after `disable_after`, operational events,
//! pausing and resuming, expiry, manual retry, replay, test pings, isolation of slow
//! endpoints and rate limits. Time-dependent rules run on short configured schedules.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::time::Duration;

use common::{Hookd, Options, Receiver, verify};
use serde_json::{Value, json};

async fn patch(hookd: &Hookd, sub: &str, body: Value) -> Value {
    let (status, answer) = hookd
        .call("PATCH", &format!("/v1/subscriptions/{sub}"), Some(body))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["data"].clone()
}

async fn subscription(hookd: &Hookd, sub: &str) -> Value {
    let (status, answer) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["data"].clone()
}

#[tokio::test]
async fn a_410_fails_the_delivery_disables_the_subscription_and_tells_hookd_subscribers() {
    let hookd = Hookd::start(Options::default()).await;
    let mut gone = Receiver::start(&hookd.ca).await;
    let mut ops = Receiver::start(&hookd.ca).await;
    gone.reply_with(&[410]);
    let (sub, _) = hookd.subscribe(&gone.url, &["order.*"]).await;
    let (_, ops_secret) = hookd.subscribe(&ops.url, &["hookd.*"]).await;

    let accepted = hookd.post_event("order.paid", json!({})).await;
    gone.next().await;
    let delivery = hookd.first_delivery(&accepted).await;
    let failed = hookd.wait_for_delivery_state(&delivery, "FAILED").await;
    assert_eq!(failed["lastStatus"], 410);

    // Both operational events are delivered; their order is not guaranteed.
    let mut told = [ops.next().await, ops.next().await];
    told.sort_by_key(|r| r.json()["eventType"].as_str().unwrap().to_string());
    assert!(told.iter().all(|r| verify(r, &ops_secret)));
    let failed_event = told[0].json();
    let body = told[1].json();
    assert_eq!(body["eventType"], "hookd.subscription.disabled");
    assert_eq!(body["data"]["subscription"]["id"], sub.as_str());
    assert!(body["data"]["reason"].as_str().unwrap().contains("410"));
    assert_eq!(failed_event["eventType"], "hookd.delivery.failed");
    assert_eq!(failed_event["data"]["deliveryId"], delivery.as_str());
    assert_eq!(failed_event["data"]["eventId"], accepted["id"]);

    let shown = subscription(&hookd, &sub).await;
    assert_eq!(shown["status"], "DISABLED");
    assert!(shown["disabledReason"].as_str().unwrap().contains("410"));
    let again = hookd.post_event("order.paid", json!({})).await;
    assert_eq!(
        again["deliveryCount"], 0,
        "a disabled subscription gets no new events"
    );
}

#[tokio::test]
async fn disable_after_disables_an_endpoint_that_keeps_failing() {
    let hookd = Hookd::start(Options {
        delivery: "disable_after = \"400ms\"\nschedule = [\"150ms\"]\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.reply_with(&[500; 50]);
    let (sub, _) = hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd.post_event("job.created", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    // Retries every 150 ms ±20 %: the first failure after 400 ms disables.
    receiver.next().await;
    receiver.next().await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while subscription(&hookd, &sub).await["status"] != "DISABLED" {
        assert!(tokio::time::Instant::now() < deadline, "never disabled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shown = subscription(&hookd, &sub).await;
    assert!(
        shown["disabledReason"]
            .as_str()
            .unwrap()
            .contains("disable_after"),
        "{shown}"
    );
    // Its delivery is parked, not failed, and no more attempts are made.
    let parked = hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    assert!(parked["nextAttemptAt"].is_string());
    while receiver.requests.try_recv().is_ok() {}
    receiver.assert_quiet(Duration::from_millis(400)).await;
}

/// `disable_after` means continuous failure: an endpoint that was quiet for longer than
/// that (no events for it) is not disabled by its first failure, only once its first
/// failure since the last success is older than `disable_after`.
#[tokio::test]
async fn a_quiet_endpoint_is_not_disabled_by_its_first_failure() {
    let hookd = Hookd::start(Options {
        delivery: "disable_after = \"400ms\"\nschedule = [\"150ms\"]\n".into(),
        ..Options::default()
    })
    .await;
    let mut quiet = Receiver::start(&hookd.ca).await;
    let (sub, _) = hookd.subscribe(&quiet.url, &["quiet.*"]).await;
    // Told when hookd disables a subscription (the signal this test waits for).
    let mut disabled = Receiver::start(&hookd.ca).await;
    hookd
        .subscribe(&disabled.url, &["hookd.subscription.disabled"])
        .await;
    // A clock: another endpoint that keeps failing until hookd disables it, which it
    // does only once the clock's first failure is older than disable_after. That
    // failure came after the quiet subscription was made, so by then the quiet one
    // has been quiet for longer than disable_after.
    let clock = Receiver::start(&hookd.ca).await;
    clock.reply_with(&[500; 50]);
    let (clock_sub, _) = hookd.subscribe(&clock.url, &["clock.*"]).await;
    let made = std::time::Instant::now();
    hookd.post_event("clock.tick", json!({})).await;
    let notice = disabled.next().await.json();
    assert_eq!(notice["data"]["subscription"]["id"], clock_sub.as_str());
    assert!(made.elapsed() > Duration::from_millis(400));

    quiet.reply_with(&[500; 50]);
    let accepted = hookd.post_event("quiet.event", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    quiet.next().await;
    let first = hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    assert_eq!(first["attempts"], 1, "{first}");
    assert_eq!(subscription(&hookd, &sub).await["status"], "ACTIVE");
    // It keeps failing: once its first failure is older than 400 ms, it is disabled.
    let notice = disabled.next().await.json();
    assert_eq!(notice["data"]["subscription"]["id"], sub.as_str());
    let attempts = hookd.wait_for_delivery_state(&delivery, "RETRYING").await["attempts"]
        .as_u64()
        .unwrap();
    assert!(
        attempts >= 2,
        "{attempts} attempts: the first failure disabled it"
    );
    let shown = subscription(&hookd, &sub).await;
    assert!(
        shown["disabledReason"]
            .as_str()
            .unwrap()
            .contains("continuously"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_paused_subscription_holds_its_deliveries_until_it_is_active_again() {
    let hookd = Hookd::start(Options {
        delivery: "schedule = [\"300ms\"]\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.reply_with(&[500]);
    receiver.hang_for(Duration::from_millis(300));
    let (sub, secret) = hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd.post_event("job.created", json!({"n": 1})).await;
    receiver.next().await;
    // Paused while the first attempt is in flight: the pause comes before its retry.
    let paused = patch(&hookd, &sub, json!({"status": "DEACTIVATED"})).await;
    assert_eq!(paused["status"], "DEACTIVATED");
    receiver.hang_for(Duration::ZERO);
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    // The retry was due 300 ms after the failure; paused, it does not run.
    receiver.assert_quiet(Duration::from_millis(700)).await;
    let held = hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    assert_eq!(held["attempts"], 1);

    patch(&hookd, &sub, json!({"status": "ACTIVE"})).await;
    let got = receiver.next().await;
    assert!(verify(&got, &secret));
    assert_eq!(got.header("webhook-id"), accepted["id"].as_str().unwrap());
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
}

#[tokio::test]
async fn a_paused_delivery_still_expires_at_max_age_and_can_be_replayed() {
    // Long enough that the failed attempt's retry (100 ms after it) is scheduled within
    // it even on a slow machine, rather than ending the delivery at once.
    let hookd = Hookd::start(Options {
        delivery: "max_age = \"2s\"\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (sub, _) = hookd.subscribe(&receiver.url, &["*"]).await;
    patch(&hookd, &sub, json!({"status": "DEACTIVATED"})).await;
    // Deactivated: new events do not fan out to it.
    let skipped = hookd.post_event("job.created", json!({})).await;
    assert_eq!(skipped["deliveryCount"], 0);

    patch(&hookd, &sub, json!({"status": "ACTIVE"})).await;
    receiver.hang_for(Duration::from_millis(300));
    let accepted = hookd.post_event("job.created", json!({"n": 2})).await;
    receiver.next().await; // in flight while we pause
    patch(&hookd, &sub, json!({"status": "DEACTIVATED"})).await;
    receiver.hang_for(Duration::ZERO);
    let delivery = hookd.first_delivery(&accepted).await;
    // The in-flight attempt succeeded; a second event is parked and expires.
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;

    // Paused while its first attempt is in flight, so the pause always comes before the
    // retry: the attempt fails, the retry waits in the store, and max_age ends it.
    patch(&hookd, &sub, json!({"status": "ACTIVE"})).await;
    receiver.reply_with(&[500]);
    receiver.hang_for(Duration::from_millis(300));
    let second = hookd.post_event("job.created", json!({"n": 3})).await;
    receiver.next().await;
    patch(&hookd, &sub, json!({"status": "DEACTIVATED"})).await;
    receiver.hang_for(Duration::ZERO);
    let second_delivery = hookd.first_delivery(&second).await;
    hookd
        .wait_for_delivery_state(&second_delivery, "RETRYING")
        .await;
    let expired = hookd
        .wait_for_delivery_state(&second_delivery, "FAILED")
        .await;
    assert!(
        expired["lastError"].as_str().unwrap().contains("expired"),
        "{expired}"
    );
    receiver.assert_quiet(Duration::from_millis(100)).await;

    // Replay of failed deliveries once the endpoint is back.
    patch(&hookd, &sub, json!({"status": "ACTIVE"})).await;
    let since = second["createdAt"].as_str().unwrap();
    let (status, replay) = hookd
        .call(
            "POST",
            &format!("/v1/subscriptions/{sub}/replay"),
            Some(json!({"since": since, "onlyFailed": true})),
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["data"]["queued"], 1);
    let replayed = receiver.next().await;
    assert_eq!(
        replayed.header("webhook-id"),
        second["id"].as_str().unwrap()
    );
    assert_eq!(replayed.json()["data"]["n"], 3);
}

#[tokio::test]
async fn manual_retry_sends_once_more_and_ends_the_delivery_again() {
    let hookd = Hookd::start(Options {
        delivery: "max_age = \"200ms\"\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.reply_with(&[500, 500, 500, 500]);
    // Not `*`: the delivery's own hookd.delivery.failed event must not reach this
    // receiver and take a reply queued for the manual retry.
    let (sub, secret) = hookd.subscribe(&receiver.url, &["job.*"]).await;
    let accepted = hookd.post_event("job.created", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    let failed = hookd.wait_for_delivery_state(&delivery, "FAILED").await;
    let attempts_before = failed["attempts"].as_u64().unwrap();
    while receiver.requests.try_recv().is_ok() {}
    receiver.clear_replies();

    // A retry that fails again ends FAILED again, with nothing scheduled.
    receiver.reply_with(&[500]);
    let (status, queued) = hookd
        .call("POST", &format!("/v1/deliveries/{delivery}/retry"), None)
        .await;
    assert_eq!(status, 202, "{queued}");
    receiver.next().await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let refailed = loop {
        let shown = hookd.wait_for_delivery_state(&delivery, "FAILED").await;
        if shown["attempts"].as_u64().unwrap() == attempts_before + 1 {
            break shown;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refailed["nextAttemptAt"].is_null());

    // A retry that succeeds ends SUCCEEDED.
    let (status, queued) = hookd
        .call("POST", &format!("/v1/deliveries/{delivery}/retry"), None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        queued["data"]["state"], "FAILED",
        "an ended delivery keeps its state"
    );
    assert!(verify(&receiver.next().await, &secret));
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;

    // Retrying a SUCCEEDED delivery never shows RETRYING beside its 2xx.
    let (status, queued) = hookd
        .call("POST", &format!("/v1/deliveries/{delivery}/retry"), None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        (&queued["data"]["state"], &queued["data"]["lastStatus"]),
        (&json!("SUCCEEDED"), &json!(200)),
        "{queued}"
    );
    assert!(queued["data"]["nextAttemptAt"].is_string(), "{queued}");
    receiver.next().await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let again = loop {
        let shown = hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
        if shown["attempts"] == queued["data"]["attempts"].as_u64().unwrap() + 1 {
            break shown;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(again["nextAttemptAt"].is_null(), "{again}");

    // Cancelled deliveries cannot be retried. The endpoint hangs, so the delivery is
    // still in flight (not yet FAILED at this test's short max_age) when its
    // subscription is deleted.
    receiver.hang_for(common::WAIT);
    let other = hookd.post_event("job.created", json!({})).await;
    receiver.next().await;
    let other_delivery = hookd.first_delivery(&other).await;
    hookd
        .call("DELETE", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    hookd
        .wait_for_delivery_state(&other_delivery, "CANCELLED")
        .await;
    let (status, problem) = hookd
        .call(
            "POST",
            &format!("/v1/deliveries/{other_delivery}/retry"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{problem}");
}

#[tokio::test]
async fn a_test_ping_goes_to_that_subscription_only() {
    let hookd = Hookd::start(Options::default()).await;
    let mut a = Receiver::start(&hookd.ca).await;
    let mut b = Receiver::start(&hookd.ca).await;
    let (sub_a, secret_a) = hookd.subscribe(&a.url, &["*"]).await;
    hookd.subscribe(&b.url, &["*"]).await;
    let (status, answer) = hookd
        .call("POST", &format!("/v1/subscriptions/{sub_a}/test"), None)
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["data"]["subscriptionId"], sub_a.as_str());
    let got = a.next().await;
    assert!(verify(&got, &secret_a));
    assert_eq!(got.json()["eventType"], "hookd.ping");
    b.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_the_others() {
    let hookd = Hookd::start(Options {
        delivery: "timeout = \"3s\"\nper_endpoint_concurrency = 2\nconcurrency = 8\n".into(),
        ..Options::default()
    })
    .await;
    let mut slow = Receiver::start(&hookd.ca).await;
    let mut fast = Receiver::start(&hookd.ca).await;
    slow.hang_for(Duration::from_secs(3));
    hookd.subscribe(&slow.url, &["slow.*"]).await;
    hookd.subscribe(&fast.url, &["fast.*"]).await;
    // Far more work for the slow endpoint than its concurrency.
    for i in 0..20 {
        hookd.post_event("slow.job", json!({"i": i})).await;
    }
    slow.next().await;
    let started = tokio::time::Instant::now();
    for i in 0..20 {
        hookd.post_event("fast.job", json!({"i": i})).await;
    }
    for _ in 0..20 {
        fast.next().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the fast endpoint waited behind the hanging one: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_rate_limit_spreads_deliveries_at_its_rate() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (status, created) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"eventTypes": ["*"], "endpointUrl": receiver.url, "rateLimit": 5})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let events: Vec<Value> = (0..6)
        .map(|i| json!({"eventType": "job.created", "data": {"i": i}}))
        .collect();
    let (status, batch) = hookd
        .call("POST", "/v1/events/batch", Some(json!({"events": events})))
        .await;
    assert_eq!(status, 202, "{batch}");
    let mut arrivals = Vec::new();
    for _ in 0..6 {
        arrivals.push(receiver.next().await.at);
    }
    let spread = arrivals[5] - arrivals[0];
    // 5 per second: six deliveries take at least 5 intervals of 200 ms.
    assert!(
        spread >= Duration::from_millis(950),
        "delivered too fast: {spread:?}"
    );
    assert!(
        spread < Duration::from_millis(2500),
        "delivered too slowly: {spread:?}"
    );
}
