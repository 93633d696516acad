//! `fanout [subscriptions] [events]`: deliveries per second from events posted by 16
//! clients to S subscriptions, counted at the receiver.

use std::time::{Duration, Instant};

use crate::client::{EVENT, call, connect, subscribe};
use crate::measure::Clock;
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

pub async fn run(subscriptions: usize, events: usize) {
    let setup = Setup::new(&Config::from_env());
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let receiver = Receiver::start(&setup, Clock::new(), Track::default()).await;
    let port = receiver.port();
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, port, subscriptions).await;
    let expected = (subscriptions * events) as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per_client = events / 16;
    for _ in 0..16 {
        let mut sender = connect(&setup).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let (status, _) = call(&mut sender, "POST", "/v1/events", EVENT.to_string()).await;
                assert_eq!(status, 202);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let posted = started.elapsed();
    let expected = expected.min((per_client * 16 * subscriptions) as u64);
    while receiver.log.count() < expected {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "deliveries stalled at {}",
            receiver.log.count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fanout: {} events x {subscriptions} subscriptions = {expected} deliveries in {elapsed:.1} s = {:.0} deliveries/s (posting took {posted:?}); peak RSS {} MiB",
        per_client * 16,
        expected as f64 / elapsed,
        hookd.peak_rss_kib() / 1024,
    );
    hookd.kill();
}
