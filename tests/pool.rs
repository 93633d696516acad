//! The outbound connection pool against real HTTPS receivers on loopback: idle
//! connections are closed after the idle timeout (and at most `max_idle_per_host` are
//! kept).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;
#[path = "common/connections.rs"]
mod connections;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use common::{TestCa, WAIT};
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
