//! Storage at its limits, on a real small file system (a tmpfs mounted for the test):
//! below `storage.min_free` new events are refused with 507 while the work already
//! accepted goes on; a write that fails (ENOSPC) answers 503, takes `/readyz` down, and
//! once space is freed hookd writes again by itself, with every accepted event delivered.
//! Mounting needs root; `.ci/run` sets HOOKD_REQUIRE_TMPFS so CI cannot skip these.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Hookd, Options, Receiver, WAIT, metric};
use serde_json::{Value, json};

/// A tmpfs of `size`, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var_os("HOOKD_REQUIRE_TMPFS").is_none(),
                "cannot mount a tmpfs (run as root)"
            );
            eprintln!("skipped: mounting a tmpfs needs root (HOOKD_REQUIRE_TMPFS makes this fail)");
            return None;
        }
        Some(Self { path, _dir: dir })
    }

    fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(&self.path).unwrap();
        stat.f_bavail * stat.f_frsize
    }

    /// Fills the disk until `leave` bytes are free (or as close as it gets).
    fn fill_to(&self, leave: u64) -> PathBuf {
        let filler = self.path.join(format!("filler-{}", self.free()));
        let want = self.free().saturating_sub(leave);
        let chunk = vec![0u8; 64 * 1024];
        let mut file = std::fs::File::create(&filler).unwrap();
        let mut written = 0;
        while written < want {
            let n = chunk.len().min((want - written) as usize);
            if std::io::Write::write_all(&mut file, &chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn on(disk: &Path, extra: &str) -> Options {
    Options {
        storage: format!(
            "path = \"{}\"\ncache_size = \"1MiB\"\n{extra}",
            disk.join("hookd.redb").display()
        ),
        server: "max_body_bytes = 262144\n".into(),
        ..Options::default()
    }
}

async fn post(hookd: &Hookd, n: usize, size: usize) -> (u16, Value, Option<String>) {
    let body = json!({"eventType": "job.done", "data": {"n": n, "pad": "x".repeat(size)}});
    let auth = format!("Bearer {}", hookd.token);
    let response = hookd
        .client
        .send(
            http::Request::post(format!("{}/v1/events", hookd.url))
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )))
                .unwrap(),
            WAIT,
            1 << 20,
        )
        .await
        .unwrap();
    let retry_after = response
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value, retry_after)
}

async fn readyz(hookd: &Hookd) -> (u16, Value) {
    hookd.call_raw("GET", "/readyz", None, &[]).await
}

/// Polls the API for a state no push signal reports (readiness after a disk is freed).
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn below_min_free_new_events_are_refused_and_accepted_work_goes_on() {
    if !common::redb_only("the disk that fills is the redb file's; PostgreSQL's is the server's") {
        return;
    }
    let Some(disk) = SmallDisk::mount("32m") else {
        return;
    };
    let mut options = on(&disk.path, "min_free = \"8MiB\"\n");
    options.delivery = "schedule = [\"1h\"]\n".into();
    let hookd = Hookd::start(options).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (sub, _) = hookd.subscribe(&receiver.url, &["job.*"]).await;
    // A delivery that waits (its retry an hour away) while the disk fills.
    receiver.reply_with(&[500]);
    let (status, waiting, _) = post(&hookd, 0, 10).await;
    assert_eq!(status, 202, "{waiting}");
    receiver.next().await;
    let delivery = hookd.first_delivery(&waiting["data"]).await;
    hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    let path = format!("/v1/subscriptions/{sub}");

    // Free space is read at most every 100 ms: an event may still be taken meanwhile.
    let filler = disk.fill_to(6 << 20);
    eventually("new events refused", async || {
        post(&hookd, 1, 10).await.0 == 507
    })
    .await;
    let (status, problem, retry_after) = post(&hookd, 1, 10).await;
    assert_eq!(status, 507, "{problem}");
    assert_eq!(problem["status"], 507);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("insufficient-storage")
    );
    assert!(retry_after.is_some());
    assert_eq!(
        readyz(&hookd).await.0,
        200,
        "outcomes still write: still ready"
    );
    let scrape = hookd.metrics().await;
    assert_eq!(
        metric(&scrape, "hookd_storage_state{state=\"low_disk\"}"),
        Some(1.0)
    );

    // Changes and outcomes of accepted work still write: pause and resume (which puts
    // the delivery back in the queue, due now), deliver, record.
    for status in ["DEACTIVATED", "ACTIVE"] {
        let patch = json!({ "status": status });
        assert_eq!(hookd.call("PATCH", &path, Some(patch)).await.0, 200);
    }
    receiver.next().await;
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;

    // Free space is read at most every 100 ms: new events are taken again soon after.
    std::fs::remove_file(filler).unwrap();
    eventually("new events accepted again", async || {
        post(&hookd, 2, 10).await.0 == 202
    })
    .await;
    receiver.next().await;
    let scrape = hookd.metrics().await;
    assert_eq!(
        metric(&scrape, "hookd_storage_state{state=\"ok\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_full_disk_answers_503_and_hookd_recovers_by_itself_once_space_is_freed() {
    if !common::redb_only("the disk that fills is the redb file's; PostgreSQL's is the server's") {
        return;
    }
    let Some(disk) = SmallDisk::mount("32m") else {
        return;
    };
    let hookd = Hookd::start(on(&disk.path, "min_free = \"0\"\n")).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    hookd.subscribe(&receiver.url, &["job.*"]).await;

    // Fill the disk, then post events of ~200 KiB until a write fails.
    let filler = disk.fill_to(1 << 20);
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..200 {
        let (status, body, retry_after) = post(&hookd, n, 200_000).await;
        match status {
            202 => accepted.push(body["data"]["id"].as_str().unwrap().to_string()),
            503 => {
                refused = Some((body, retry_after));
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let (problem, retry_after) = refused.expect("a full disk refuses writes");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("storage-unavailable"),
        "{problem}"
    );
    assert!(retry_after.is_some());
    let (status, ready) = readyz(&hookd).await;
    assert_eq!(
        (status, &ready["status"]),
        (503, &json!("storage-unavailable"))
    );
    let scrape = hookd.metrics().await;
    assert_eq!(
        metric(&scrape, "hookd_storage_state{state=\"faulted\"}"),
        Some(1.0)
    );
    // Still refused while full: nothing is accepted without being stored.
    assert_eq!(post(&hookd, 1000, 10).await.0, 503);

    std::fs::remove_file(filler).unwrap();
    eventually("ready again", async || readyz(&hookd).await.0 == 200).await;
    let (status, body, _) = post(&hookd, 2000, 10).await;
    assert_eq!(status, 202, "{body}");
    accepted.push(body["data"]["id"].as_str().unwrap().to_string());

    // Every accepted event arrives, none more than twice (no re-send storm).
    let mut seen: HashMap<String, usize> = HashMap::new();
    while accepted.iter().any(|id| !seen.contains_key(id)) {
        let got = receiver.next().await;
        *seen
            .entry(got.header("webhook-id").to_string())
            .or_default() += 1;
    }
    receiver.assert_quiet(Duration::from_millis(300)).await;
    while let Ok(extra) = receiver.requests.try_recv() {
        *seen
            .entry(extra.header("webhook-id").to_string())
            .or_default() += 1;
    }
    let most = seen.values().max().copied().unwrap_or(0);
    assert!(most <= 2, "an event was received {most} times: {seen:?}");
}
