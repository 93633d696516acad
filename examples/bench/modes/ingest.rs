//! `ingest [clients] [seconds] [subscribers]`: durable event ingest from N keep-alive
//! clients, each waiting for its 202 before sending the next, with 0 or more matching
//! subscribers on one loopback receiver. With subscribers it also reports the
//! end-to-end latency (post sent -> delivery received) of every delivery, the backlog
//! left when the load stops, and how long that backlog takes to drain.

use std::time::{Duration, Instant};

use crate::client::{connect, subscribe};
use crate::load::{ClosedLoop, wait_until};
use crate::measure::{Clock, Summary, ms, summary};
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

pub async fn run(clients: usize, seconds: u64, subscribers: usize, storage: &str) {
    let clock = Clock::new();
    let setup = Setup::new(&Config {
        storage: storage.to_string(),
        ..Config::default()
    });
    let hookd = setup.spawn();
    let startup = setup.wait_ready(Instant::now()).await;
    let track = Track {
        latencies: subscribers > 0,
        ..Track::default()
    };
    let receiver = Receiver::start(&setup, clock, track).await;
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, receiver.port(), subscribers).await;

    let load = ClosedLoop::start(&setup, clock, clients, "bench.created").await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let samples = load.stop().await;
    let elapsed = started.elapsed().as_secs_f64();
    let stopped_ns = clock.now_ns();
    let delivered = receiver.log.count();
    let events = samples.len();
    let latency = Summary::of(samples.iter().map(|s| s.latency_ns()).collect()).unwrap();
    println!(
        "ingest: {clients} clients, {subscribers} subscribers: {events} events in {elapsed:.1} s = {:.0} events/s; latency p50 {} p99 {}; start-up {startup:?}; delivered so far {delivered}; peak RSS {} MiB",
        events as f64 / elapsed,
        ms(latency.p50),
        ms(latency.p99),
        hookd.peak_rss_kib() / 1024,
    );
    if subscribers == 0 {
        hookd.kill();
        return;
    }
    let expected = (events * subscribers) as u64;
    let backlog = expected.saturating_sub(delivered);
    let drained = wait_until(expected, Duration::from_secs(30), || receiver.log.count()).await;
    let drain = Duration::from_nanos(clock.now_ns() - stopped_ns);
    let end_to_end = receiver
        .log
        .arrivals()
        .iter()
        .map(|a| a.latency_ns())
        .collect();
    println!(
        "ingest: end to end (post sent -> received) {}; backlog when the load stopped {backlog} deliveries, {} {:.1} s later",
        summary(end_to_end),
        if drained {
            "all delivered"
        } else {
            "STALLED, not all delivered"
        },
        drain.as_secs_f64(),
    );
    hookd.kill();
}
