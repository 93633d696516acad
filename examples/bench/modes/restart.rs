//! `restart [events]`: start-up time on an empty file, then on a file of N events after
//! kill -9 while 32 clients were still posting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;

use crate::client::{EVENT, connect};
use crate::setup::{Config, Setup, TOKEN};

pub async fn run(events: usize, storage: &str) {
    let setup = Setup::new(&Config {
        storage: storage.to_string(),
        ..Config::default()
    });
    let hookd = setup.spawn();
    let empty = setup.wait_ready(Instant::now()).await;
    // Fill the file, then kill -9 while 32 clients are still posting.
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let mut sender = connect(&setup).await;
        let stop = stop.clone();
        let posted = posted.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sender.ready().await.ok();
                let req = hyper::Request::post("/v1/events")
                    .header("host", "localhost")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Full::new(Bytes::from_static(EVENT.as_bytes())))
                    .unwrap();
                if sender.send_request(req).await.is_err() {
                    return;
                }
                posted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while posted.load(Ordering::Relaxed) < events as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hookd.kill();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let size = setup.store_bytes();
    let hookd = setup.spawn();
    let after_crash = setup.wait_ready(Instant::now()).await;
    println!(
        "restart: start-up on an empty file {empty:?}; after kill -9 with {} events in a {} MiB file {after_crash:?}",
        posted.load(Ordering::Relaxed),
        size >> 20
    );
    hookd.kill();
}
