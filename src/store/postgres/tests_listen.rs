//! Notifications between nodes against a real PostgreSQL: due entries travel intact,
//! only committed transactions notify, and after the database restarts the listener
//! reconnects by itself and says so (`Resync`).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::listen::{self, DUE_CHANNEL, ENTRIES_PER_NOTICE, Notice, SNAPSHOT_CHANNEL};
use super::tests::testdb::TempPostgres;
use super::tests::{client, hookd};
use crate::store::DueEntry;

const WAIT: Duration = Duration::from_secs(30);

fn entries(n: u128) -> Vec<DueEntry> {
    (0..n)
        .map(|i| DueEntry {
            due_ms: 1_700_000_000_000 + i as u64,
            delivery: u128::MAX - i,
            subscription: i << 64 | 0xab,
        })
        .collect()
}

#[test]
fn due_entries_fit_the_payload_limit_and_round_trip() {
    let all = entries(2 * ENTRIES_PER_NOTICE as u128 + 3);
    let payloads = listen::due_payloads("node-a", &all);
    assert_eq!(payloads.len(), 3);
    assert!(
        payloads.iter().all(|p| p.len() < 8000),
        "{}",
        payloads[0].len()
    );
    let back: Vec<DueEntry> = payloads
        .iter()
        .flat_map(|p| {
            let (origin, entries) = listen::parse_due(p);
            assert_eq!(origin, "node-a");
            entries
        })
        .collect();
    assert_eq!(back, all);
    assert!(listen::parse_due("a not-base64!").1.is_empty());
    assert!(
        listen::parse_due("a AAAA").1.is_empty(),
        "not a whole entry"
    );
}

async fn next(notices: &mut mpsc::Receiver<Notice>) -> Notice {
    tokio::time::timeout(WAIT, notices.recv())
        .await
        .expect("a notice in time")
        .expect("the listener runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_changes_notify_and_the_listener_survives_a_restart() {
    let Some(mut pg) = TempPostgres::start() else {
        return;
    };
    let settings = hookd(&pg, &pg.create_database());
    let (out, mut notices) = mpsc::channel(16);
    let (ready, mut listening) = mpsc::channel(4);
    let stop = CancellationToken::new();
    tokio::spawn(listen::run(
        settings.clone(),
        out,
        Some(ready),
        stop.clone(),
    ));
    tokio::time::timeout(WAIT, listening.recv()).await.unwrap();

    let mut sender = client(&settings).await.unwrap();
    // Rolled back: never delivered. Committed: delivered, entries intact.
    let lost = listen::due_payloads("other", &entries(1)).remove(0);
    let tx = sender.transaction().await.unwrap();
    tx.execute("SELECT pg_notify($1, $2)", &[&DUE_CHANNEL, &lost])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let sent = entries(5);
    let tx = sender.transaction().await.unwrap();
    for payload in listen::due_payloads("other", &sent) {
        tx.execute("SELECT pg_notify($1, $2)", &[&DUE_CHANNEL, &payload])
            .await
            .unwrap();
    }
    tx.execute("SELECT pg_notify($1, '')", &[&SNAPSHOT_CHANNEL])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        next(&mut notices).await,
        Notice::Due {
            origin: "other".into(),
            entries: sent
        }
    );
    assert_eq!(next(&mut notices).await, Notice::Snapshot);

    // The database restarts: the listener reconnects and says notices may be lost.
    drop(sender);
    pg.stop();
    pg.start_again();
    assert_eq!(next(&mut notices).await, Notice::Resync);
    tokio::time::timeout(WAIT, listening.recv()).await.unwrap();
    let sender = client(&settings).await.unwrap();
    sender
        .execute("SELECT pg_notify($1, '')", &[&SNAPSHOT_CHANNEL])
        .await
        .unwrap();
    assert_eq!(next(&mut notices).await, Notice::Snapshot);
    stop.cancel();
}
