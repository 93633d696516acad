//! `backlog [N] [drain concurrency]`: N pending deliveries on one subscription whose
//! receiver holds its requests unanswered (`per_endpoint_concurrency = 1` while the
//! backlog is built, so one request is stuck and the rest wait), posted in batches of
//! 1000. Then kill -9 and start again: time from spawn to /readyz 200 and resident memory
//! once ready. Then the receiver answers 200 and the one subscription drains (with
//! `per_endpoint_concurrency` = the second argument, 16 by default as in production):
//! its rate counted at the receiver until every one of the N events arrived, the peak
//! resident memory during the drain, and resident memory 2 s after it.

use std::time::{Duration, Instant};

use crate::client::{connect, subscribe_to};
use crate::load::{BATCH, post_batches, wait_until};
use crate::measure::{Clock, mib};
use crate::procfs;
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

/// Long enough that the held request never times out, so no retry joins the backlog.
const HOLD: &str = "timeout = \"5m\"";

pub async fn run(n: usize, drain_concurrency: usize, storage: &str) {
    let clock = Clock::new();
    let setup = Setup::new(&Config {
        delivery: format!("per_endpoint_concurrency = 1\n{HOLD}"),
        ..Config::default()
    });
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let track = Track {
        distinct: n,
        ..Track::default()
    };
    let receiver = Receiver::held(&setup, clock, track).await;
    let mut admin = connect(&setup).await;
    subscribe_to(&mut admin, receiver.port(), "bench.*", "/hook/backlog").await;
    let built = post_batches(&setup, clock, "bench.created", n, BATCH, 0, 4).await;
    println!(
        "backlog: {n} pending deliveries built in {:.1} s ({:.0} events/s in batches of {BATCH}); file {} MiB; peak RSS {}, RSS {}",
        built.as_secs_f64(),
        n as f64 / built.as_secs_f64(),
        setup.store_bytes() >> 20,
        mib(hookd.peak_rss_kib()),
        mib(hookd.rss_kib()),
    );
    hookd.kill();

    setup.write_config(&Config {
        delivery: format!("per_endpoint_concurrency = {drain_concurrency}\n{HOLD}"),
        storage: storage.to_string(),
    });
    let spawned = Instant::now();
    let hookd = setup.spawn();
    let ready = setup.wait_for("/readyz", spawned).await;
    println!(
        "backlog: after kill -9 with {n} pending: ready (/readyz 200) {:.0} ms after spawn; RSS {} once ready",
        ready.as_secs_f64() * 1e3,
        mib(hookd.rss_kib()),
    );

    let peak_reset = procfs::reset_peak(hookd.pid());
    let released_ns = clock.now_ns();
    receiver.release();
    let drained = wait_until(n as u64, Duration::from_secs(60), || {
        receiver.log.distinct()
    })
    .await;
    let peak = hookd.peak_rss_kib();
    let got = receiver.log.distinct();
    let seconds = (receiver.log.last_new_ns().max(released_ns) - released_ns) as f64 / 1e9;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "backlog: drain of one subscription (per_endpoint_concurrency {drain_concurrency}): {got} of {n} events {} in {seconds:.1} s = {:.0} deliveries/s ({} requests in all); peak RSS during the drain {}{}; RSS 2 s after {}",
        if drained {
            "arrived"
        } else {
            "arrived, then STALLED"
        },
        got as f64 / seconds.max(1e-9),
        receiver.log.count(),
        mib(peak),
        if peak_reset {
            ""
        } else {
            " (since start: VmHWM could not be reset)"
        },
        mib(hookd.rss_kib()),
    );
    hookd.kill();
}
