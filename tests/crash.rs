//! Crash safety with the real binary as a child process: every event that got a 202
//! is delivered after a `kill -9` at an arbitrary moment under load, and SIGTERM lets
//! in-flight attempts finish and be recorded before hookd exits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use common::daemon::{configure, spawn};
use common::{Options, Receiver, TestCa};
use serde_json::json;
use tokio::sync::Mutex;

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_event_is_lost_to_kill_9_under_load() {
    let ca = Arc::new(TestCa::new());
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), &ca, &Options::default());

    let mut receiver = Receiver::start(&ca).await;
    let mut daemon = spawn(dir.path(), &ca);
    daemon.api.subscribe(&receiver.url, &["*"]).await;

    // 16 producers post until the process dies under them; only 202s count.
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let api = Arc::new(daemon.api);
    let mut producers = Vec::new();
    for p in 0..16 {
        let api = api.clone();
        let accepted = accepted.clone();
        producers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!({"eventType": "load.event", "data": {"p": p, "i": i}}).to_string();
                let request = http::Request::post(format!("{}/v1/events", api.url))
                    .header("authorization", format!("Bearer {}", api.token))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                match api
                    .client
                    .send(request, Duration::from_secs(5), 1 << 16)
                    .await
                {
                    Ok(response) if response.status == 202 => {
                        let value: serde_json::Value =
                            serde_json::from_slice(&response.body).unwrap();
                        accepted
                            .lock()
                            .await
                            .insert(value["data"]["id"].as_str().unwrap().to_string());
                    }
                    // The process was killed: this request was not acknowledged.
                    _ => return,
                }
            }
        }));
    }
    // Kill once a few hundred events are in, while requests and deliveries are in flight.
    while accepted.lock().await.len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.child.kill().unwrap(); // SIGKILL
    daemon.child.wait().unwrap();
    for producer in producers {
        producer.await.unwrap();
    }
    let accepted = accepted.lock().await.clone();

    let mut restarted = spawn(dir.path(), &ca);
    let mut received = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !accepted.is_subset(&received) {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, receiver.requests.recv()).await {
            Ok(Some(got)) => {
                received.insert(got.header("webhook-id").to_string());
            }
            _ => break,
        }
    }
    let lost: Vec<_> = accepted.difference(&received).collect();
    assert!(
        lost.is_empty(),
        "{} of {} accepted events were never delivered: {lost:?}",
        lost.len(),
        accepted.len()
    );
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_attempts_finish_and_records_them() {
    let ca = Arc::new(TestCa::new());
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        server: "shutdown_grace = \"5s\"".into(),
        ..Options::default()
    };
    configure(dir.path(), &ca, &options);

    let mut receiver = Receiver::start(&ca).await;
    receiver.hang_for(Duration::from_millis(800));
    let mut daemon = spawn(dir.path(), &ca);
    daemon.api.subscribe(&receiver.url, &["*"]).await;
    let mut deliveries = Vec::new();
    for i in 0..3 {
        let accepted = daemon.api.post_event("job.created", json!({"i": i})).await;
        deliveries.push(daemon.api.first_delivery(&accepted).await);
    }
    for _ in 0..3 {
        receiver.next().await; // all three attempts are in flight
    }
    signal(&daemon.child, "TERM");
    let status = tokio::task::spawn_blocking(move || daemon.child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "hookd exits cleanly on SIGTERM: {status:?}"
    );

    // The attempts finished during the grace period and were recorded: after a
    // restart they are SUCCEEDED and nothing is sent again.
    receiver.hang_for(Duration::ZERO);
    let mut restarted = spawn(dir.path(), &ca);
    for delivery in &deliveries {
        let shown = restarted
            .api
            .wait_for_delivery_state(delivery, "SUCCEEDED")
            .await;
        assert_eq!(shown["attempts"], 1);
    }
    receiver.assert_quiet(Duration::from_millis(500)).await;
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
}

#[test]
fn serve_exits_78_when_a_file_the_config_names_is_unusable() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), &ca, &Options::default());
    // A truncated master key: the config parses, but hookd cannot start with it.
    std::fs::write(dir.path().join("master.key"), [1u8; 16]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["serve", "--config"])
        .arg(dir.path().join("hookd.toml"))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("master"));
}
