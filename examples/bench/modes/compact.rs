//! `compact [MB]`: a store file of about MB MiB made of large events (200 KiB each, no
//! subscribers), hookd stopped with SIGTERM, then `hookd compact --config ...`: how long
//! it took, its peak resident memory (VmHWM, polled every 2 ms while it runs) and the
//! file size before and after.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::load::post_batches;
use crate::measure::{Clock, mib};
use crate::procfs;
use crate::setup::{Config, Setup};

/// Bytes of filler per event: below the default 256 KiB `max_body_bytes`.
const PAD: usize = 200 * 1024;
/// Events per batch: 30 x 200 KiB stays below the default 8 MiB `max_batch_bytes`.
const PER_BATCH: usize = 30;
/// Most events posted between two looks at the file size (about 60 MiB).
const ROUND: usize = 300;

pub async fn run(mb: u64) {
    let clock = Clock::new();
    let setup = Setup::new(&Config::default());
    let hookd = setup.spawn();
    setup.wait_ready(Instant::now()).await;
    let started = Instant::now();
    let target = mb << 20;
    let mut events = 0;
    while setup.store_bytes() < target {
        // The file grows by about twice the bodies posted: aim below what is left.
        let left = target - setup.store_bytes();
        let round = ((left / (2 * PAD as u64)) as usize).clamp(PER_BATCH, ROUND);
        post_batches(&setup, clock, "bench.large", round, PER_BATCH, PAD, 2).await;
        events += round;
    }
    println!(
        "compact: {events} events of {} KiB in {:.1} s; hookd peak RSS {} while posting",
        PAD >> 10,
        started.elapsed().as_secs_f64(),
        mib(hookd.peak_rss_kib()),
    );
    let stopping = Instant::now();
    let exit = hookd.terminate();
    println!(
        "compact: hookd stopped (SIGTERM) in {} ms: {exit}",
        stopping.elapsed().as_millis()
    );

    let before = setup.store_bytes();
    let started = Instant::now();
    let mut child = setup
        .command(&["compact"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        peak = peak.max(procfs::status_kib(pid, "VmHWM:"));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let took = started.elapsed();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut said).unwrap();
    let after = setup.store_bytes();
    println!(
        "compact: {:.1} MiB -> {:.1} MiB in {:.2} s, {status}; peak RSS {}; it said: {}",
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        took.as_secs_f64(),
        mib(peak),
        said.trim(),
    );
}
