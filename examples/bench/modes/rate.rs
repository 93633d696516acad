//! `rate [events_per_s] [seconds] [endpoints]`: open-loop load. Event i is sent at
//! start + i / rate whether or not earlier ones were answered (a new connection is
//! opened whenever none is free, so the schedule holds), and every event goes to
//! `endpoints` subscriptions on one receiver. Reports the end-to-end latency of each
//! delivery (the send instant travels in the event's data), the achieved send and
//! delivery rates, how far sending fell behind the schedule, and hookd's CPU time per
//! event (utime + stime from /proc/<pid>/stat, from the first send until the last
//! delivery arrived, divided by the events sent).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{Sender, connect, subscribe, try_call, try_connect};
use crate::load::{event, wait_until};
use crate::measure::{Clock, mib, ms, summary};
use crate::procfs;
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

/// What the senders share: idle connections, and what they measured.
#[derive(Default)]
struct Shared {
    idle: Mutex<Vec<Sender>>,
    opened: AtomicU64,
    connect_errors: AtomicU64,
    max_lag_ns: AtomicU64,
    last_sent_ns: AtomicU64,
    acks: Mutex<Vec<u64>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

pub async fn run(rate: usize, seconds: u64, endpoints: usize) {
    let clock = Clock::new();
    let setup = Arc::new(Setup::new(&Config::default()));
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let track = Track {
        latencies: true,
        ..Track::default()
    };
    let receiver = Receiver::start(&setup, clock, track).await;
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, receiver.port(), endpoints).await;

    let shared = Arc::new(Shared::default());
    // Enough warm connections for a few milliseconds of answers; more open on demand.
    for _ in 0..(rate / 500).clamp(4, 64) {
        let sender = connect(&setup).await;
        shared.opened.fetch_add(1, Ordering::Relaxed);
        shared.idle.lock().unwrap().push(sender);
    }
    let total = rate * seconds as usize;
    let period_ns = 1e9 / rate as f64;
    let cpu_before = procfs::cpu_ticks(hookd.pid());
    let start_ns = clock.now_ns() + 10_000_000;
    let mut tasks = JoinSet::new();
    for i in 0..total {
        let due_ns = start_ns + (i as f64 * period_ns) as u64;
        tokio::time::sleep_until(clock.at(due_ns).into()).await;
        while let Some(done) = tasks.try_join_next() {
            done.unwrap();
        }
        let idle = shared.idle.lock().unwrap().pop();
        let shared = shared.clone();
        let setup = setup.clone();
        tasks.spawn(async move {
            let mut sender = match idle {
                Some(sender) => sender,
                None => match open(&setup, &shared).await {
                    Some(sender) => sender,
                    None => {
                        *shared.statuses.lock().unwrap().entry(0).or_insert(0) += 1;
                        return;
                    }
                },
            };
            let sent_ns = clock.now_ns();
            shared
                .max_lag_ns
                .fetch_max(sent_ns.saturating_sub(due_ns), Ordering::Relaxed);
            shared.last_sent_ns.fetch_max(sent_ns, Ordering::Relaxed);
            let body = event("bench.created", i as u64, sent_ns, 0);
            let answer = try_call(&mut sender, "POST", "/v1/events", body).await;
            let status = answer.as_ref().map_or(0, |(status, _)| *status);
            *shared.statuses.lock().unwrap().entry(status).or_insert(0) += 1;
            if answer.is_ok() {
                shared.acks.lock().unwrap().push(clock.now_ns() - sent_ns);
                shared.idle.lock().unwrap().push(sender);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    // From the first due instant to one period after the last send: the schedule's
    // length when it held.
    let last_sent_ns = shared.last_sent_ns.load(Ordering::Relaxed);
    let sending_s = (last_sent_ns - start_ns) as f64 / 1e9 + 1.0 / rate as f64;
    let statuses = shared.statuses.lock().unwrap().clone();
    let accepted = statuses.get(&202).copied().unwrap_or(0);
    let expected = accepted * endpoints as u64;
    let complete = wait_until(expected, Duration::from_secs(30), || receiver.log.count()).await;
    let cpu_s = (procfs::cpu_ticks(hookd.pid()) - cpu_before) as f64 / procfs::TICKS_PER_SECOND;
    let arrivals = receiver.log.arrivals();
    let last_arrival_ns = arrivals.iter().map(|a| a.at_ns).max().unwrap_or(start_ns);
    let delivering_s = (last_arrival_ns.max(start_ns) - start_ns) as f64 / 1e9;

    let acks = std::mem::take(&mut *shared.acks.lock().unwrap());
    println!(
        "rate: {total} events at {rate}/s for {seconds} s to {endpoints} endpoint(s): sent in {sending_s:.2} s = {:.0}/s, at most {} behind schedule, {} connections ({} failed connects); answers {statuses:?} (0: no connection or it broke), latency {}",
        total as f64 / sending_s,
        ms(shared.max_lag_ns.load(Ordering::Relaxed)),
        shared.opened.load(Ordering::Relaxed),
        shared.connect_errors.load(Ordering::Relaxed),
        summary(acks),
    );
    println!(
        "rate: {} of {expected} deliveries {} in {delivering_s:.2} s = {:.0}/s; end to end (sent -> received) {}",
        receiver.log.count(),
        if complete {
            "arrived"
        } else {
            "arrived, then STALLED"
        },
        receiver.log.count() as f64 / delivering_s.max(1e-9),
        summary(arrivals.iter().map(|a| a.latency_ns()).collect()),
    );
    println!(
        "rate: hookd CPU {cpu_s:.2} s over the run = {:.3} ms per event ({:.0} % of one core); peak RSS {}, RSS {}",
        cpu_s * 1e3 / total as f64,
        cpu_s * 100.0 / delivering_s.max(sending_s),
        mib(hookd.peak_rss_kib()),
        mib(hookd.rss_kib()),
    );
    hookd.kill();
}

/// A new connection for a send that found none idle; tries three times, since a burst of
/// handshakes during a stall has seen resets.
async fn open(setup: &Setup, shared: &Shared) -> Option<Sender> {
    for _ in 0..3 {
        match try_connect(setup).await {
            Ok(sender) => {
                shared.opened.fetch_add(1, Ordering::Relaxed);
                return Some(sender);
            }
            Err(_) => {
                shared.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    None
}
