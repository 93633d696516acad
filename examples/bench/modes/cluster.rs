//! `cluster [nodes] [clients] [seconds] [subscribers]`: the PostgreSQL backend, with the
//! database on this machine (a throwaway server from Debian's binaries, as the tests
//! start it) and 1 or more hookd nodes sharing it. Closed-loop producers spread over the
//! nodes post for `seconds`; `subscribers` subscriptions (made on the first node) are
//! delivered by whichever node leases them, to one loopback receiver. Reports ingest
//! events/s and latency, end-to-end latency (post sent -> received), the backlog when
//! the load stops and its drain, hookd's CPU per event (all nodes) and the database's,
//! and each node's peak resident memory.

use std::time::{Duration, Instant};

use crate::client::{call, connect, subscribe};
use crate::load::{ClosedLoop, event, wait_until};
use crate::measure::{Clock, Summary, ms, summary};
use crate::postgres::{PASSWORD, TempPostgres};
use crate::procfs;
use crate::receiver::{Receiver, Track};
use crate::setup::{Config, Setup};

/// Clock ticks per second of /proc's CPU times.
const TICKS: f64 = 100.0;

pub async fn run(nodes: usize, clients: usize, seconds: u64, subscribers: usize) {
    let nodes = nodes.max(1);
    let mut pg =
        TempPostgres::start().expect("PostgreSQL server binaries (apt install postgresql)");
    // HOOKD_BENCH_STATEMENTS=1: the database's costliest statements, at the end.
    let statements = std::env::var_os("HOOKD_BENCH_STATEMENTS").is_some();
    if statements {
        pg.psql(
            "postgres",
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        );
        pg.stop();
        pg.start_again();
    }
    let database = pg.create_database();
    if statements {
        pg.psql(&database, "CREATE EXTENSION pg_stat_statements");
    }
    let password = pg.dir().join("hookd.password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let config = |n: usize| Config {
        storage: format!(
            "backend = \"postgres\"\n[storage.postgres]\nurl = \"{}\"\npassword_file = \"{}\"\nnode_name = \"node-{n}\"\n",
            pg.hookd_url(&database),
            password.display()
        ),
        ..Config::default()
    };
    let first = Setup::new(&config(0));
    let others: Vec<Setup> = (1..nodes).map(|n| first.sibling(&config(n))).collect();
    let setups: Vec<&Setup> = std::iter::once(&first).chain(&others).collect();
    let mut daemons = Vec::new();
    let mut startups = Vec::new();
    for setup in &setups {
        let since = Instant::now();
        daemons.push(setup.spawn());
        startups.push(setup.wait_for("/readyz", since).await);
    }
    let clock = Clock::new();
    let track = Track {
        latencies: subscribers > 0,
        ..Track::default()
    };
    let receiver = Receiver::start(&first, clock, track).await;
    let mut admin = connect(&first).await;
    subscribe(&mut admin, receiver.port(), subscribers).await;
    // Every node has the subscriptions (told by LISTEN/NOTIFY) before the load starts:
    // a probe posted to it is delivered to each of them.
    if subscribers > 0 {
        for (n, setup) in setups.iter().enumerate().skip(1) {
            let mut sender = connect(setup).await;
            loop {
                let before = receiver.log.count();
                let probe = event("bench.probe", u64::MAX - n as u64, clock.now_ns(), 0);
                let (status, _) = call(&mut sender, "POST", "/v1/events", probe).await;
                assert_eq!(status, 202);
                let target = before + subscribers as u64;
                if wait_until(target, Duration::from_secs(2), || receiver.log.count()).await {
                    break;
                }
            }
        }
    }
    let baseline = receiver.log.count();

    let hookd_cpu = || {
        daemons
            .iter()
            .map(|d| procfs::cpu_ticks(d.pid()))
            .sum::<u64>()
    };
    let database_cpu = || postgres_ticks(&pg);
    let (hookd_before, database_before) = (hookd_cpu(), database_cpu());
    let load = ClosedLoop::start_on(&setups, clock, clients, "bench.created").await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let samples = load.stop().await;
    let elapsed = started.elapsed().as_secs_f64();
    let stopped_ns = clock.now_ns();
    let delivered = receiver.log.count() - baseline;
    let events = samples.len();
    let latency = Summary::of(samples.iter().map(|s| s.latency_ns()).collect()).unwrap();
    let expected = (events * subscribers) as u64;
    let drained = wait_until(baseline + expected, Duration::from_secs(30), || {
        receiver.log.count()
    })
    .await;
    let drain = Duration::from_nanos(clock.now_ns() - stopped_ns);
    let per_event = |ticks: u64| ticks as f64 / TICKS * 1000.0 / events.max(1) as f64;
    let (hookd_ms, database_ms) = (
        per_event(hookd_cpu() - hookd_before),
        per_event(database_cpu().saturating_sub(database_before)),
    );
    println!(
        "cluster: {nodes} node(s) on PostgreSQL, {clients} clients, {subscribers} subscribers: {events} events in {elapsed:.1} s = {:.0} events/s; latency p50 {} p99 {}; ready after {:?}",
        events as f64 / elapsed,
        ms(latency.p50),
        ms(latency.p99),
        startups,
    );
    if subscribers > 0 {
        let end_to_end = receiver
            .log
            .arrivals()
            .iter()
            .map(|a| a.latency_ns())
            .collect();
        println!(
            "cluster: {} deliveries = {:.0}/s during the load; end to end {}; backlog when the load stopped {}, {} {:.1} s later; distinct {}",
            delivered,
            delivered as f64 / elapsed,
            summary(end_to_end),
            expected.saturating_sub(delivered),
            if drained {
                "all delivered"
            } else {
                "STALLED, not all delivered"
            },
            drain.as_secs_f64(),
            receiver.log.distinct(),
        );
    }
    let peaks: Vec<u64> = daemons.iter().map(|d| d.peak_rss_kib() / 1024).collect();
    println!(
        "cluster: CPU per event (load and drain): hookd {hookd_ms:.3} ms (all nodes), database {database_ms:.3} ms; peak RSS per node {peaks:?} MiB"
    );
    for daemon in daemons {
        daemon.kill();
    }
    if statements {
        println!("cluster: the database's costliest statements (calls | ms | rows | query):");
        println!(
            "{}",
            pg.psql(
                &database,
                "SELECT calls, round(total_exec_time), rows, \
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 160) \
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15"
            )
        );
    }
}

/// CPU ticks of the database server so far: the postmaster's own and its reaped
/// children's, and those of its children alive now.
fn postgres_ticks(pg: &TempPostgres) -> u64 {
    let pid_file = pg.dir().join("data/postmaster.pid");
    let Some(postmaster) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
    else {
        return 0;
    };
    let mut ticks = procfs::cpu_ticks_with_children(postmaster);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if procfs::parent(pid) == Some(postmaster) {
            ticks += procfs::cpu_ticks(pid);
        }
    }
    ticks
}
