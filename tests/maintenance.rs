//! Retention and backup against the real daemon: old events go (with their idempotency
//! keys) but never one whose delivery is unfinished; `hookd backup` copies the live
//! database through the running server while events flow, `hookd restore` refuses a
//! running server and puts the copy in place for a fresh hookd, which then delivers
//! what was pending; `hookd compact` refuses a running server too; `hookd store copy`
//! moves a stopped appliance into PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::{Hookd, Options, Receiver, TestCa, WAIT, metric, write_state};
use serde_json::json;

/// Polls until `done` holds: what is awaited (a purge pass) sends no signal a test can
/// see except through the API.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn retention_purges_ended_events_and_keys_but_not_an_unfinished_delivery() {
    let hookd = Hookd::start(Options {
        delivery: "max_age = \"1s\"\ntimeout = \"2s\"".into(),
        storage: "retention = \"1s\"".into(),
        ..Options::default()
    })
    .await;
    let mut fast = Receiver::start(&hookd.ca).await;
    let mut slow = Receiver::start(&hookd.ca).await;
    slow.hang_for(Duration::from_secs(3));
    hookd.subscribe(&fast.url, &["fast.*"]).await;
    hookd.subscribe(&slow.url, &["slow.*"]).await;

    let mut ended = Vec::new();
    for i in 0..10 {
        let accepted = hookd.post_event("fast.done", json!({"i": i})).await;
        ended.push(accepted["id"].as_str().unwrap().to_string());
    }
    let body = json!({"eventType": "fast.done", "data": {"keyed": true}});
    let auth = format!("Bearer {}", hookd.token);
    let headers = [("authorization", auth.as_str()), ("idempotency-key", "k-1")];
    let raw = body.to_string().into_bytes();
    let (status, first) = hookd
        .call_raw("POST", "/v1/events", Some(raw.clone()), &headers)
        .await;
    assert_eq!(status, 202, "{first}");
    // Its event is purged too (the 11th counted below): wait for it like the others.
    ended.push(first["data"]["id"].as_str().unwrap().to_string());
    let pending = hookd.post_event("slow.running", json!({})).await;
    let pending = pending["id"].as_str().unwrap().to_string();
    for _ in 0..11 {
        fast.next().await;
    }
    slow.next().await; // in flight for longer than the retention

    for id in &ended {
        let path = format!("/v1/events/{id}");
        eventually("an ended event is purged", || async {
            hookd.call("GET", &path, None).await.0 == 404
        })
        .await;
    }
    let (status, _) = hookd
        .call("GET", &format!("/v1/events/{pending}"), None)
        .await;
    assert_eq!(status, 200, "an event whose delivery is in flight is kept");
    // The key went with its event: the same request is a new event now.
    let (status, again) = hookd
        .call_raw("POST", "/v1/events", Some(raw), &headers)
        .await;
    assert_eq!(status, 202, "{again}");
    assert_ne!(again["data"]["id"], first["data"]["id"]);
    let scrape = hookd.metrics().await;
    assert!(
        metric(&scrape, "hookd_purged_events_total").unwrap() >= 11.0,
        "{scrape}"
    );

    // The attempt times out, the delivery ends FAILED (past max_age), and a retention
    // later the event goes too.
    let path = format!("/v1/events/{pending}");
    eventually("the event goes once its delivery ended", || async {
        hookd.call("GET", &path, None).await.0 == 404
    })
    .await;
}

fn hookd_cli(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A loopback port nobody listens on (yet).
async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_events_flow_restores_into_a_fresh_hookd_that_delivers_the_backlog() {
    if !common::redb_only("backup and restore copy the redb file; PostgreSQL has its own backups") {
        return;
    }
    let ca = Arc::new(TestCa::new());
    let hookd = Hookd::start_in(tempfile::tempdir().unwrap(), ca.clone(), Options::default()).await;
    let config = hookd.dir.path().join("hookd.toml");
    let text_config = write_state(hookd.dir.path(), &ca, &Options::default(), "127.0.0.1:0");
    std::fs::write(&config, text_config).unwrap();
    // The endpoint is down for now: every delivery stays pending.
    let port = free_port().await;
    let endpoint = format!("https://localhost:{port}/hook");
    hookd.subscribe(&endpoint, &["*"]).await;
    let mut before_backup = HashSet::new();
    for i in 0..20 {
        let accepted = hookd.post_event("job.created", json!({"i": i})).await;
        before_backup.insert(accepted["id"].as_str().unwrap().to_string());
    }

    // Producers keep posting while the backup is made.
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = {
        let api = common::Api::new(hookd.url.rsplit(':').next().unwrap().parse().unwrap(), &ca);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut posted = 0;
            while !stop.is_cancelled() {
                api.post_event("job.created", json!({"during": posted}))
                    .await;
                posted += 1;
            }
            posted
        })
    };
    let out = hookd.dir.path().join("copy.redb");
    let (out_arg, url, config_arg) = (out.clone(), hookd.url.clone(), config.clone());
    let backup = tokio::task::spawn_blocking(move || {
        let args = ["backup", "--out", out_arg.to_str().unwrap(), "--url", &url];
        hookd_cli(&args, &config_arg)
    })
    .await
    .unwrap();
    assert!(backup.status.success(), "{}", text(&backup));
    assert!(text(&backup).contains("subscriptions"), "{}", text(&backup));
    stop.cancel();
    let during = producer.await.unwrap();
    assert!(during > 0, "events flowed during the backup");

    // Offline commands refuse the running server's database.
    for args in [
        vec!["restore", "--from", out.to_str().unwrap()],
        vec!["compact"],
    ] {
        let refused = hookd_cli(&args, &config);
        assert_eq!(refused.status.code(), Some(75), "{}", text(&refused));
        assert!(
            text(&refused).contains("stop hookd first"),
            "{}",
            text(&refused)
        );
    }
    // The copy lives in this folder: keep it until the end.
    let (_first, _) = hookd.stop().await;

    // A fresh machine: same master key (write_state writes the same one), no data.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_config = fresh.path().join("hookd.toml");
    std::fs::write(
        &fresh_config,
        write_state(fresh.path(), &ca, &Options::default(), "127.0.0.1:0"),
    )
    .unwrap();
    let restored = hookd_cli(&["restore", "--from", out.to_str().unwrap()], &fresh_config);
    assert!(restored.status.success(), "{}", text(&restored));

    let mut receiver = Receiver::start_on(&ca, &format!("127.0.0.1:{port}")).await;
    let hookd = Hookd::start_in(fresh, ca.clone(), Options::default()).await;
    let mut in_backup = HashSet::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/events?limit=500{cursor}");
        let (status, listed) = hookd.call("GET", &path, None).await;
        assert_eq!(status, 200, "{listed}");
        for event in listed["data"].as_array().unwrap() {
            in_backup.insert(event["id"].as_str().unwrap().to_string());
        }
        match listed["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert!(
        before_backup.is_subset(&in_backup),
        "everything accepted before the backup is in it"
    );
    let mut received = HashSet::new();
    while !in_backup.is_subset(&received) {
        let got = tokio::time::timeout(WAIT, receiver.requests.recv())
            .await
            .expect("the restored hookd delivers its backlog")
            .unwrap();
        received.insert(got.header("webhook-id").to_string());
    }
}

/// `hookd store copy` moves a stopped appliance's file into an empty PostgreSQL
/// database (a throwaway server on loopback) and reports matching counts; it refuses a
/// database that already holds data. Copied back into a new file, the appliance
/// delivers what was pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_stopped_appliance_into_postgres_and_back() {
    if !common::redb_only("store copy reads a redb file; the test is the same under both switches")
    {
        return;
    }
    let Some(pg) = common::postgres::TempPostgres::start() else {
        return;
    };
    let ca = Arc::new(TestCa::new());
    let hookd = Hookd::start_in(tempfile::tempdir().unwrap(), ca.clone(), Options::default()).await;
    // The endpoint is down: the deliveries stay due, and are copied as due.
    let port = free_port().await;
    let endpoint = format!("https://localhost:{port}/hook");
    hookd.subscribe(&endpoint, &["*"]).await;
    for i in 0..5 {
        hookd.post_event("job.created", json!({"i": i})).await;
    }
    let (dir, _) = hookd.stop().await;
    let from = dir.path().join("hookd.toml");
    let text_config = write_state(dir.path(), &ca, &Options::default(), "127.0.0.1:0");
    std::fs::write(&from, &text_config).unwrap();

    let database = pg.create_database();
    std::fs::write(dir.path().join("db.password"), common::postgres::PASSWORD).unwrap();
    let postgres = format!(
        "[storage.postgres]\nurl = \"{}\"\npassword_file = \"db.password\"\n\n[secrets]",
        pg.hookd_url(&database)
    );
    let to_text = text_config
        .replacen("[storage]\n", "[storage]\nbackend = \"postgres\"\n", 1)
        .replacen("[secrets]", &postgres, 1);
    let to = dir.path().join("to.toml");
    std::fs::write(&to, to_text).unwrap();

    let copy = || {
        Command::new(env!("CARGO_BIN_EXE_hookd"))
            .args(["store", "copy", "--from"])
            .arg(&from)
            .arg("--to")
            .arg(&to)
            .output()
            .unwrap()
    };
    let copied = copy();
    assert!(copied.status.success(), "{}", text(&copied));
    let report = text(&copied);
    let events = report.lines().find(|l| l.starts_with("events")).unwrap();
    assert_eq!(
        events.split_whitespace().collect::<Vec<_>>(),
        ["events", "5", "5"],
        "{report}"
    );
    assert_eq!(
        pg.psql(
            &database,
            "SELECT count(*) FROM deliveries WHERE next_attempt_ms IS NOT NULL"
        ),
        "5"
    );
    let again = copy();
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already holds hookd data"),
        "{}",
        text(&again)
    );
    // The redb file's own maintenance refuses a config on PostgreSQL, by name.
    let compact = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["compact", "--config"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(compact.status.code(), Some(78), "{}", text(&compact));
    assert!(text(&compact).contains("pg_dump"), "{}", text(&compact));

    // And back to one VM, on a fresh machine with the same master key: the copy
    // delivers what was pending when the appliance stopped, now that the endpoint is up.
    let fresh = tempfile::tempdir().unwrap();
    let back = fresh.path().join("hookd.toml");
    std::fs::write(
        &back,
        write_state(fresh.path(), &ca, &Options::default(), "127.0.0.1:0"),
    )
    .unwrap();
    let copied_back = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["store", "copy", "--from"])
        .arg(&to)
        .arg("--to")
        .arg(&back)
        .output()
        .unwrap();
    assert!(copied_back.status.success(), "{}", text(&copied_back));
    let report = text(&copied_back);
    let deliveries = report
        .lines()
        .find(|l| l.starts_with("deliveries"))
        .unwrap();
    assert_eq!(
        deliveries.split_whitespace().collect::<Vec<_>>(),
        ["deliveries", "5", "5"],
        "{report}"
    );
    let mut receiver = Receiver::start_on(&ca, &format!("127.0.0.1:{port}")).await;
    let _hookd = Hookd::start_in(fresh, ca.clone(), Options::default()).await;
    let mut received = HashSet::new();
    while received.len() < 5 {
        let got = tokio::time::timeout(WAIT, receiver.requests.recv())
            .await
            .expect("the copied-back hookd delivers what was pending")
            .unwrap();
        received.insert(got.header("webhook-id").to_string());
    }
}
