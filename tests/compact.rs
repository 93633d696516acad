//! `hookd compact` of a large file runs in bounded memory: redb's default page cache
//! (1 GiB) used to fill with the file being compacted (789 MB resident for a 1.1 GB
//! file); the offline commands now open the database with a small cache.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hookd::config::MinFree;
use hookd::store::records::EventRecord;
use hookd::store::{
    CommitReport, DueEntry, DueSink, Fresh, NewEvent, StorageState, Store, StoreObserver,
    WriterSettings,
};

struct Nobody;

impl DueSink for Nobody {
    fn schedule(&self, _: Vec<DueEntry>, _: Vec<Fresh>) {}
    fn forget(&self, _: &[u128]) {}
}

impl StoreObserver for Nobody {
    fn committed(&self, _: &CommitReport) {}
    fn storage_state(&self, _: StorageState) {}
}

/// Writes `events` events of `size` bytes each (no subscriptions: no deliveries).
fn fill(path: &std::path::Path, events: usize, size: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let settings = WriterSettings {
        max_age_ms: 3_600_000,
        disable_after_ms: 3_600_000,
        min_free: MinFree::Bytes(0),
    };
    let (store, writer) = Store::open(
        path,
        1 << 20,
        settings,
        HashMap::new(),
        Arc::new(Nobody),
        Arc::new(Nobody),
    )
    .unwrap();
    runtime.block_on(async {
        for chunk in 0..events / 10 {
            let batch = (0..10)
                .map(|i| NewEvent {
                    id: hookd::ids::uuid_v7(),
                    record: EventRecord {
                        entity: "root".into(),
                        event_type: "bulk.made".into(),
                        created_ms: (chunk * 10 + i) as u64,
                        body: vec![b'x'; size],
                    },
                    idempotency: None,
                    targets: Some(Vec::new()),
                })
                .collect();
            store.ingest(batch).await.unwrap();
        }
    });
    drop(store);
    writer.join();
}

/// Resident memory of a running process, in KiB (None once it has exited).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn compact_runs_in_bounded_memory() {
    if !common::redb_only("compact rewrites a redb file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("hookd.redb");
    // About 120 MiB of events.
    fill(&db, 250, 200 * 1024);
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(size > 40 << 20, "{size} bytes");
    let config = dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nplaintext = true\n[storage]\npath = \"data/hookd.redb\"\n",
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_hookd"))
        .args(["compact", "--config"])
        .arg(&config)
        .spawn()
        .unwrap();
    // No signal exists for another process's memory: sample it until it exits.
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        peak = peak.max(resident_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        peak < 24 * 1024,
        "compacting a {} MiB file held {} MiB resident",
        size >> 20,
        peak >> 10
    );
}
