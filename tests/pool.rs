//! The outbound connection pool against real HTTPS receivers on loopback: idle
//! connections are closed after the idle timeout (and at most `max_idle_per_host` are
//! kept), and connections to an endpoint never outnumber the requests in flight to it,
//! neither through the client alone nor through the daemon's per-endpoint limit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;
#[path = "common/connections.rs"]
mod connections;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;

use common::{Hookd, Options, TestCa, WAIT};
use connections::CountingReceiver;
use hookd::delivery::guard::AddressGuard;
use hookd::delivery::{Client, ClientSettings};

/// Long enough that a busy test machine does not stall past it between two checks.
const IDLE: Duration = Duration::from_secs(1);

fn client(ca: &TestCa, max_idle_per_host: usize, idle: Duration) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let settings = ClientSettings {
        tls: hookd::tls::client_config(Some(&ca.write(dir.path()))).unwrap(),
        guard: AddressGuard::new(vec!["127.0.0.0/8".parse().unwrap()]),
        source_address: None,
        proxy: None,
        allow_http: false,
        max_idle_per_host,
    };
    Client::with_idle_timeout(settings, idle)
}

async fn post(client: &Client, url: &str) -> u16 {
    let request = http::Request::post(url)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    client.send(request, WAIT, 1024).await.unwrap().status
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_and_at_most_the_cap_kept() {
    let ca = TestCa::new();
    let receiver = CountingReceiver::start(&ca).await;
    let client = client(&ca, 2, IDLE);

    // Eight requests answered only once all eight are in: eight connections at once.
    receiver.hold_answers_until(8);
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), receiver.url.clone());
        burst.spawn(async move { post(&client, &url).await });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let after = receiver
        .wait_for("the pool keeps two idle connections", |s| s.open <= 2)
        .await;
    assert_eq!((after.accepted, after.max_open), (8, 8));
    let kept = after.open_ids();
    assert_eq!(
        kept.len(),
        2,
        "six closed at once, two kept idle: {after:?}"
    );

    // A kept connection is reused: no new connection.
    receiver.hold_answers_until(0);
    assert_eq!(post(&client, &receiver.url).await, 200);
    assert_eq!(receiver.now().accepted, 8);

    let done = receiver
        .wait_for("the idle connections are closed", |s| s.open == 0)
        .await;
    for id in kept {
        let seen = done.each[id];
        let idle_for = seen.closed.unwrap() - seen.last_answered.unwrap();
        assert!(
            idle_for >= IDLE,
            "closed after {idle_for:?} idle, before {IDLE:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_never_outnumber_the_requests_in_flight() {
    let ca = TestCa::new();
    let receiver = CountingReceiver::start(&ca).await;
    // The default idle timeout: nothing is reaped while the test runs.
    let client = client(&ca, 4, hookd::delivery::client::IDLE_TIMEOUT);

    // Four at a time, each slot reused the moment its answer is read (as the
    // dispatcher does per endpoint): the connection just used is often not back in the
    // pool yet when the next request looks for one.
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (client, url) = (client.clone(), receiver.url.clone());
        sends.spawn(async move {
            let status = post(&client, &url).await;
            drop(permit);
            status
        });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let seen = receiver.now();
    assert_eq!(seen.requests, 1000);
    assert!(
        seen.max_open <= 4 && seen.accepted <= 4,
        "more connections than requests in flight: {} open at most, {} in all",
        seen.max_open,
        seen.accepted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_holds_at_most_per_endpoint_concurrency_connections_to_an_endpoint() {
    let hookd = Hookd::start(Options {
        delivery: "per_endpoint_concurrency = 4".into(),
        ..Options::default()
    })
    .await;
    let receiver = CountingReceiver::start(&hookd.ca).await;
    hookd.subscribe(&receiver.url, &["pool.*"]).await;

    for _ in 0..3 {
        let events: Vec<_> = (0..100)
            .map(|i| json!({"eventType": "pool.burst", "data": {"i": i}}))
            .collect();
        let (status, body) = hookd
            .call(
                "POST",
                "/v1/events/batch",
                Some(json!({ "events": events })),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let seen = receiver
        .wait_for("every delivery arrives", |s| s.requests >= 300)
        .await;
    assert!(
        seen.max_open <= 4,
        "{} connections open at once to one endpoint (per_endpoint_concurrency = 4)",
        seen.max_open
    );
}
