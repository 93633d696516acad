//! `ingest [clients] [seconds] [subscribers]`: durable event ingest from N keep-alive
//! clients, each waiting for its 202 before sending the next, with 0 or more matching
//! subscribers on one loopback receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{EVENT, call, connect, subscribe};
use crate::receiver::receiver;
use crate::setup::{Config, Setup};

pub async fn run(clients: usize, seconds: u64, subscribers: usize, storage: &str) {
    let setup = Setup::new(&Config {
        storage: storage.to_string(),
        ..Config::default()
    });
    let hookd = setup.spawn();
    let startup = setup.wait_ready(Instant::now()).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let port = receiver(&setup, delivered.clone()).await.port();
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, port, subscribers).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut sender = connect(&setup).await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, _) = call(&mut sender, "POST", "/v1/events", EVENT.to_string()).await;
                assert_eq!(status, 202);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "ingest: {clients} clients, {subscribers} subscribers: {} events in {elapsed:.1} s = {:.0} events/s; latency p50 {:?} p99 {:?}; start-up {startup:?}; delivered so far {}; peak RSS {} MiB",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        delivered.load(Ordering::Relaxed),
        hookd.peak_rss_kib() / 1024,
    );
    hookd.kill();
}
