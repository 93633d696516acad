//! `rate [events_per_s] [seconds] [endpoints]`: open-loop load. Event i is due at
//! start + i / rate and is sent then whether or not earlier ones were answered, on an
//! idle connection or a new one (up to `MAX_CONNECTIONS`, so a stall cannot turn into
//! a storm of handshakes; past it a send waits, and the lag behind schedule shows it).
//! Every event goes to `endpoints` subscriptions on one receiver. Reports the
//! end-to-end latency of each delivery from the moment its event was sent (the instant
//! travels in the event's data) and from the moment it was due, the achieved send and
//! delivery rates, and hookd's CPU time per event (utime + stime from /proc/<pid>/stat,
//! from the first send until the last delivery arrived, divided by the events sent).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{Sender, connect, subscribe, try_call, try_connect};
use crate::load::{event, wait_until};
use crate::measure::{Clock, mib, ms, summary};
use crate::procfs;
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

/// Most connections the load opens: far more than a schedule needs while hookd answers
/// (2,000 events/s at 250 ms each is 500), far below hookd's own limit of 4096.
const MAX_CONNECTIONS: u64 = 1024;

/// Connections to hookd: idle ones wait in a channel; a send takes one, or opens one
/// while fewer than `MAX_CONNECTIONS` are open, or waits for one to come back.
struct Pool {
    setup: Arc<Setup>,
    idle_tx: mpsc::UnboundedSender<Sender>,
    idle_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Sender>>,
    open: AtomicU64,
    opened: AtomicU64,
    connect_errors: AtomicU64,
}

impl Pool {
    fn new(setup: Arc<Setup>) -> Self {
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        Self {
            setup,
            idle_tx,
            idle_rx: tokio::sync::Mutex::new(idle_rx),
            open: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
        }
    }

    /// A connection to send on; None when three attempts to open one failed.
    async fn take(&self) -> Option<Sender> {
        if let Ok(sender) = self.idle_rx.lock().await.try_recv() {
            return Some(sender);
        }
        if self.open.fetch_add(1, Ordering::Relaxed) < MAX_CONNECTIONS {
            // Three tries: a burst of handshakes during a stall has seen resets.
            for _ in 0..3 {
                match try_connect(&self.setup).await {
                    Ok(sender) => {
                        self.opened.fetch_add(1, Ordering::Relaxed);
                        return Some(sender);
                    }
                    Err(_) => {
                        self.connect_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.idle_rx.lock().await.recv().await
    }

    fn give_back(&self, sender: Sender) {
        // The receiver lives in `self`, so the channel is open.
        let _ = self.idle_tx.send(sender);
    }

    /// A connection that broke: its slot may be opened again.
    fn broken(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the senders measured.
#[derive(Default)]
struct Tally {
    max_lag_ns: AtomicU64,
    last_sent_ns: AtomicU64,
    acks: Mutex<Vec<u64>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

impl Tally {
    fn status(&self, status: u16) {
        *self.statuses.lock().unwrap().entry(status).or_insert(0) += 1;
    }
}

pub async fn run(rate: usize, seconds: u64, endpoints: usize) {
    let clock = Clock::new();
    let setup = Arc::new(Setup::new(&Config::from_env()));
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let track = Track {
        latencies: true,
        ..Track::default()
    };
    let receiver = Receiver::start(&setup, clock, track).await;
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, receiver.port(), endpoints).await;

    let pool = Arc::new(Pool::new(setup.clone()));
    // Enough warm connections for a few milliseconds of answers; more open on demand.
    for _ in 0..(rate / 500).clamp(4, 64) {
        let sender = pool.take().await.unwrap();
        pool.give_back(sender);
    }
    let tally = Arc::new(Tally::default());
    let total = rate * seconds as usize;
    let period_ns = 1e9 / rate as f64;
    let cpu_before = procfs::cpu_ticks(hookd.pid());
    let start_ns = clock.now_ns() + 10_000_000;
    let due = move |seq: u64| start_ns + (seq as f64 * period_ns) as u64;
    let mut tasks = JoinSet::new();
    for i in 0..total as u64 {
        tokio::time::sleep_until(clock.at(due(i)).into()).await;
        while let Some(done) = tasks.try_join_next() {
            done.unwrap();
        }
        let pool = pool.clone();
        let tally = tally.clone();
        tasks.spawn(async move {
            let Some(mut sender) = pool.take().await else {
                tally.status(0);
                return;
            };
            let sent_ns = clock.now_ns();
            tally
                .max_lag_ns
                .fetch_max(sent_ns.saturating_sub(due(i)), Ordering::Relaxed);
            tally.last_sent_ns.fetch_max(sent_ns, Ordering::Relaxed);
            let body = event("bench.created", i, sent_ns, 0);
            match try_call(&mut sender, "POST", "/v1/events", body).await {
                Ok((status, _)) => {
                    tally.status(status);
                    tally.acks.lock().unwrap().push(clock.now_ns() - sent_ns);
                    pool.give_back(sender);
                }
                Err(_) => {
                    tally.status(0);
                    pool.broken();
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    // From the first due instant to one period after the last send: the schedule's
    // length when it held.
    let last_sent_ns = tally.last_sent_ns.load(Ordering::Relaxed);
    let sending_s = (last_sent_ns - start_ns) as f64 / 1e9 + 1.0 / rate as f64;
    let statuses = tally.statuses.lock().unwrap().clone();
    let accepted = statuses.get(&202).copied().unwrap_or(0);
    let expected = accepted * endpoints as u64;
    let complete = wait_until(expected, Duration::from_secs(30), || receiver.log.count()).await;
    let cpu_s = (procfs::cpu_ticks(hookd.pid()) - cpu_before) as f64 / procfs::TICKS_PER_SECOND;
    let arrivals = receiver.log.arrivals();
    let last_arrival_ns = arrivals.iter().map(|a| a.at_ns).max().unwrap_or(start_ns);
    let delivering_s = (last_arrival_ns.max(start_ns) - start_ns) as f64 / 1e9;

    let acks = std::mem::take(&mut *tally.acks.lock().unwrap());
    println!(
        "rate: {total} events at {rate}/s for {seconds} s to {endpoints} endpoint(s): sent in {sending_s:.2} s = {:.0}/s, at most {} behind schedule, {} connections ({} failed connects); answers {statuses:?} (0: no connection or it broke), latency {}",
        total as f64 / sending_s,
        ms(tally.max_lag_ns.load(Ordering::Relaxed)),
        pool.opened.load(Ordering::Relaxed),
        pool.connect_errors.load(Ordering::Relaxed),
        summary(acks),
    );
    let from_due = arrivals
        .iter()
        .filter_map(|a| a.seq.map(|seq| a.at_ns.saturating_sub(due(seq))))
        .collect();
    println!(
        "rate: {} of {expected} deliveries {} in {delivering_s:.2} s = {:.0}/s; end to end from the send {}, from the due instant {}",
        receiver.log.count(),
        if complete {
            "arrived"
        } else {
            "arrived, then STALLED"
        },
        receiver.log.count() as f64 / delivering_s.max(1e-9),
        summary(arrivals.iter().map(|a| a.latency_ns()).collect()),
        summary(from_due),
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
