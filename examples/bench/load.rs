//! The load side: event bodies that carry their send instant and a sequence number,
//! closed-loop producers, and a backlog posted in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::client::{call, connect};
use crate::measure::Clock;
use crate::setup::Setup;

/// Events in one `POST /v1/events/batch`: the most the API takes.
pub const BATCH: usize = 1000;

/// One event's JSON. `data.t` is the send instant on the bench clock and `data.seq` a
/// number unique in the run, which the receiver reads back; `pad` bytes of filler make
/// large events. The other fields keep the small order notification the closed-loop
/// modes always posted.
pub fn event(event_type: &str, seq: u64, t: u64, pad: usize) -> String {
    let pad = if pad == 0 {
        String::new()
    } else {
        format!(r#","pad":"{}""#, "x".repeat(pad))
    };
    format!(
        r#"{{"eventType":"{event_type}","data":{{"t":{t},"seq":{seq},"orderId":123456,"customer":"acme","amount":1999,"currency":"EUR","items":[1,2,3]{pad}}}}}"#
    )
}

/// A `POST /v1/events/batch` body of the events numbered `first..first + n`.
pub fn batch(event_type: &str, first: u64, n: usize, t: u64, pad: usize) -> String {
    let events: Vec<String> = (first..first + n as u64)
        .map(|seq| event(event_type, seq, t, pad))
        .collect();
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

/// Posts `n` events (sequence numbers 0..n) in batches of `per_batch` from `clients`
/// connections; every batch must be accepted. Returns how long it took.
pub async fn post_batches(
    setup: &Setup,
    clock: Clock,
    event_type: &str,
    n: usize,
    per_batch: usize,
    pad: usize,
    clients: usize,
) -> Duration {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut sender = connect(setup).await;
        let next = next.clone();
        let event_type = event_type.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(per_batch as u64, Ordering::Relaxed);
                if first >= n as u64 {
                    return;
                }
                let size = per_batch.min(n - first as usize);
                let body = batch(&event_type, first, size, clock.now_ns(), pad);
                let (status, text) = call(&mut sender, "POST", "/v1/events/batch", body).await;
                assert_eq!(status, 202, "{}", String::from_utf8_lossy(&text));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// One request of a closed-loop producer, in clock nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Sample {
    pub fn latency_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// Producers that each post one event, wait for its 202, and post the next, until
/// stopped. Every answer must be 202.
pub struct ClosedLoop {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
}

impl ClosedLoop {
    pub async fn start(setup: &Setup, clock: Clock, clients: usize, event_type: &str) -> Self {
        Self::start_on(&[setup], clock, clients, event_type).await
    }

    /// As `start`, the clients spread in turn over several nodes.
    pub async fn start_on(
        setups: &[&Setup],
        clock: Clock,
        clients: usize,
        event_type: &str,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // The next sequence number, shared so that each is used once.
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for client in 0..clients {
            let mut sender = connect(setups[client % setups.len()]).await;
            let stop = stop.clone();
            let next = next.clone();
            let event_type = event_type.to_string();
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    let start_ns = clock.now_ns();
                    let body = event(&event_type, seq, start_ns, 0);
                    let (status, text) = call(&mut sender, "POST", "/v1/events", body).await;
                    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&text));
                    samples.push(Sample {
                        start_ns,
                        end_ns: clock.now_ns(),
                    });
                }
                samples
            }));
        }
        Self { stop, tasks }
    }

    /// Stops the producers after their current request; every request they made.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for task in self.tasks {
            samples.extend(task.await.unwrap());
        }
        samples
    }
}

/// Waits until `progress()` reaches `target`; gives up when it has not moved for
/// `stall`. Returns whether it got there. Polls: the receiver has no signal per count.
pub async fn wait_until(target: u64, stall: Duration, progress: impl Fn() -> u64) -> bool {
    let mut last = progress();
    let mut moved = Instant::now();
    loop {
        let now = progress();
        if now >= target {
            return true;
        }
        if now != last {
            last = now;
            moved = Instant::now();
        } else if moved.elapsed() > stall {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
