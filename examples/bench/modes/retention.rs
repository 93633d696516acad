//! `retention [seconds] [retention seconds]`: steady ingest (8 clients, 1 subscriber)
//! with a short `storage.retention`, printing the file size as it goes: it levels off
//! once purging keeps pace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{EVENT, call, connect, subscribe};
use crate::measure::Clock;
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

pub async fn run(seconds: u64, retention_s: u64) {
    let setup = Setup::new(&Config {
        storage: format!("retention = \"{retention_s}s\""),
        delivery: format!("max_age = \"{retention_s}s\""),
    });
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let receiver = Receiver::start(&setup, Clock::new(), Track::default()).await;
    let port = receiver.port();
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, port, 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut sender = connect(&setup).await;
        let stop = stop.clone();
        let posted = posted.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = call(&mut sender, "POST", "/v1/events", EVENT.to_string()).await;
                assert_eq!(status, 202);
                posted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = posted.load(Ordering::Relaxed);
        println!(
            "retention: t={:>4.0} s posted {now:>8} ({:>5.0}/s) delivered {:>8} file {:>6.1} MiB",
            started.elapsed().as_secs_f64(),
            (now - last) as f64 / 5.0,
            receiver.log.count(),
            setup.store_bytes() as f64 / (1 << 20) as f64,
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    println!("retention: peak RSS {} MiB", hookd.peak_rss_kib() / 1024);
    hookd.kill();
}
