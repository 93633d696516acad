//! The benchmark: runs the real `hookd` binary (build it first with
//! `cargo build --release`, or point HOOKD_BIN at one) as a child process on loopback
//! and drives it over HTTPS. Every receiver is in this process on 127.0.0.1.
//!
//!   cargo run --release --example bench -- ingest [clients=32] [seconds=10] [subscribers=0]
//!   cargo run --release --example bench -- fanout [subscriptions=10] [events=20000]
//!   cargo run --release --example bench -- restart [events=100000]
//!   cargo run --release --example bench -- retention [seconds=60] [retention seconds=10]
//!   cargo run --release --example bench -- backlog [N=1000000] [drain concurrency=16]
//!   cargo run --release --example bench -- pause [N=200000]
//!   cargo run --release --example bench -- rate [events_per_s=2000] [seconds=20] [endpoints=1]
//!   cargo run --release --example bench -- diskfull
//!   cargo run --release --example bench -- compact [MB=1024]
//!   cargo run --release --example bench -- cluster [nodes=1] [clients=32] [seconds=10] [subscribers=1]
//!
//! `ingest`: durable event ingest from N keep-alive clients (each waits for its 202
//! before sending the next), with 0 or more matching subscribers on a loopback receiver;
//! with subscribers, also end-to-end latency (post sent -> received) and the backlog
//! left when the load stops.
//! `fanout`: deliveries per second from events to S subscriptions, counted at the receiver.
//! `restart`: start-up time on an empty file, then on a file of N events after kill -9.
//! `retention`: steady ingest (8 clients, 1 subscriber) with a short `storage.retention`,
//! printing the file size as it goes: it levels off once purging keeps pace.
//! `backlog`: N pending deliveries on one subscription (receiver stuck), kill -9, time to
//! /readyz and memory once ready, then the drain rate of that subscription and memory
//! during and after it.
//! `pause`: PATCH DEACTIVATED / ACTIVE of a subscription with N pending while 8 producers
//! post for another: the PATCH times and the others' ingest and delivery latency meanwhile.
//! `rate`: open-loop load on a fixed schedule: end-to-end latency, achieved rates and
//! hookd's CPU time per event (run it at 200 ev/s for the low-rate cost).
//! `diskfull` (root only): the store on a 64 MiB tmpfs, filled at once (writes fail),
//! freed, grown below `storage.min_free`, freed again: answers by status, recovery
//! without restart, no event lost or delivered more than twice.
//! `compact`: time and peak memory of `hookd compact` on a file of about MB MiB.
//! `cluster`: the PostgreSQL backend with the database on this machine (a throwaway
//! server, as the tests start one) and 1 or more nodes sharing it: ingest, deliveries,
//! end-to-end latency, CPU per event of hookd and of the database.
//! Each prints its figures and hookd's peak resident memory (VmHWM), and VmRSS where
//! it matters. HOOKD_BENCH_STORAGE adds lines to `[storage]` for `ingest`, `restart`,
//! `fanout`, `rate` and the restarted hookd of `backlog`.
//!
//! Layout: `setup.rs` (config, certificates, the child process), `client.rs` (the load
//! side's HTTPS client), `load.rs` (event bodies, producers), `receiver.rs`,
//! `measure.rs` (clock, percentiles), `procfs.rs`, one file per mode in `modes/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod client;
mod load;
mod measure;
mod modes;
#[path = "../../tests/common/postgres.rs"]
mod postgres;
mod procfs;
mod receiver;
mod setup;

const USAGE: &str = "usage: bench ingest [clients] [seconds] [subscribers] | fanout [subscriptions] [events] | restart [events] | retention [seconds] [retention seconds] | backlog [N] [drain concurrency] | pause [N] | rate [events_per_s] [seconds] [endpoints] | diskfull | compact [MB] | cluster [nodes] [clients] [seconds] [subscribers]";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let storage = std::env::var("HOOKD_BENCH_STORAGE").unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("ingest") => {
            modes::ingest::run(arg(1, 32), arg(2, 10) as u64, arg(3, 0), &storage).await
        }
        Some("fanout") => modes::fanout::run(arg(1, 10), arg(2, 20_000)).await,
        Some("restart") => modes::restart::run(arg(1, 100_000), &storage).await,
        Some("retention") => modes::retention::run(arg(1, 60) as u64, arg(2, 10) as u64).await,
        Some("backlog") => modes::backlog::run(arg(1, 1_000_000), arg(2, 16), &storage).await,
        Some("pause") => modes::pause::run(arg(1, 200_000)).await,
        Some("rate") => modes::rate::run(arg(1, 2000), arg(2, 20) as u64, arg(3, 1)).await,
        Some("diskfull") => modes::diskfull::run().await,
        Some("compact") => modes::compact::run(arg(1, 1024) as u64).await,
        Some("cluster") => {
            modes::cluster::run(arg(1, 1), arg(2, 32), arg(3, 10) as u64, arg(4, 1)).await
        }
        _ => eprintln!("{USAGE}"),
    }
}
