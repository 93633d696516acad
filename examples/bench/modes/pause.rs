//! `pause [N]`: subscription A has N pending deliveries (its receiver holds requests
//! unanswered); subscription B, on a second receiver, gets the events of 8 closed-loop
//! producers. While they post, A is set DEACTIVATED and then ACTIVE again with PATCH.
//! For each PATCH: its response time, and the ingest latency (p99, worst) of B's
//! producers and the worst end-to-end latency of B's deliveries over the requests and
//! deliveries in flight at any moment of it; the same for the second before the first
//! PATCH, as the baseline, and for a PATCH of B, which has nothing pending.

use std::time::{Duration, Instant};

use crate::client::{Sender, call, connect, subscribe_to};
use crate::load::{BATCH, ClosedLoop, Sample, post_batches, wait_until};
use crate::measure::{Clock, Window, mib, ms, summary};
use crate::receiver::{Arrival, Receiver, Track};
use crate::setup::{Config, Setup};

const PRODUCERS: usize = 8;

pub async fn run(n: usize) {
    let clock = Clock::new();
    // The held requests must not time out and come back as retries while we measure.
    let setup = Setup::new(&Config {
        delivery: "timeout = \"5m\"".to_string(),
        ..Config::default()
    });
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let held = Receiver::held(&setup, clock, Track::default()).await;
    let track = Track {
        latencies: true,
        ..Track::default()
    };
    let live = Receiver::start(&setup, clock, track).await;
    let mut admin = connect(&setup).await;
    let a = subscribe_to(&mut admin, held.port(), "held.*", "/a").await;
    let b = subscribe_to(&mut admin, live.port(), "live.*", "/b").await;
    let built = post_batches(&setup, clock, "held.created", n, BATCH, 0, 4).await;
    println!(
        "pause: A has {n} pending deliveries (built in {:.1} s); B gets the events of {PRODUCERS} closed-loop producers",
        built.as_secs_f64()
    );

    // hookd closes a keep-alive connection left idle while the backlog was built.
    let mut admin = connect(&setup).await;
    let load = ClosedLoop::start(&setup, clock, PRODUCERS, "live.created").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = clock.now_ns();
    let baseline = Window {
        start_ns: before - 1_000_000_000,
        end_ns: before,
    };
    let off = patch(&mut admin, clock, &a, "DEACTIVATED").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on = patch(&mut admin, clock, &a, "ACTIVE").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // B has nothing pending: what a PATCH costs while another subscription has a backlog.
    let idle = patch(&mut admin, clock, &b, "ACTIVE").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = load.stop().await;
    let posted = samples.len() as u64;
    let complete = wait_until(posted, Duration::from_secs(30), || live.log.count()).await;
    let arrivals = live.log.arrivals();

    let first = samples.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let last = samples.iter().map(|s| s.end_ns).max().unwrap_or(0);
    println!(
        "pause: B ingest {:.0} events/s over {:.1} s; {}",
        posted as f64 / ((last - first) as f64 / 1e9),
        (last - first) as f64 / 1e9,
        if complete {
            "all of B's events delivered"
        } else {
            "B's deliveries STALLED"
        }
    );
    report(
        "baseline, the second before",
        false,
        baseline,
        &samples,
        &arrivals,
    );
    report("PATCH DEACTIVATED", true, off, &samples, &arrivals);
    report("PATCH ACTIVE", true, on, &samples, &arrivals);
    report(
        "PATCH B (nothing pending) ACTIVE",
        true,
        idle,
        &samples,
        &arrivals,
    );
    println!(
        "pause: hookd peak RSS {}, RSS {}",
        mib(hookd.peak_rss_kib()),
        mib(hookd.rss_kib())
    );
    hookd.kill();
}

/// PATCHes the status of subscription `id`, which must answer 200; the time it took.
async fn patch(admin: &mut Sender, clock: Clock, id: &str, status: &str) -> Window {
    let start_ns = clock.now_ns();
    let body = format!(r#"{{"status":"{status}"}}"#);
    let (code, text) = call(admin, "PATCH", &format!("/v1/subscriptions/{id}"), body).await;
    let window = Window {
        start_ns,
        end_ns: clock.now_ns(),
    };
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&text));
    window
}

/// One line of figures over `window`. For a PATCH (`patched`), every request and
/// delivery in flight at any moment of it counts; for the baseline only those wholly
/// inside it, so that the requests the first PATCH held up do not count as baseline.
fn report(what: &str, patched: bool, window: Window, samples: &[Sample], arrivals: &[Arrival]) {
    let counts = |start_ns: u64, end_ns: u64| {
        if patched {
            window.overlaps(start_ns, end_ns)
        } else {
            window.contains(start_ns, end_ns)
        }
    };
    let ingest: Vec<u64> = samples
        .iter()
        .filter(|s| counts(s.start_ns, s.end_ns))
        .map(Sample::latency_ns)
        .collect();
    let delivery = arrivals
        .iter()
        .filter(|a| counts(a.sent_ns, a.at_ns))
        .map(Arrival::latency_ns)
        .max();
    let answered = if patched {
        format!("answered 200 in {:.1} ms; ", window.millis())
    } else {
        String::new()
    };
    println!(
        "pause: {what}: {answered}B's ingest in flight meanwhile {}; B's worst delivery (sent -> received) {}",
        summary(ingest),
        delivery.map_or_else(|| "none".to_string(), ms),
    );
}
