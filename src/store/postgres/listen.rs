//! What nodes tell each other through the database: LISTEN/NOTIFY on one connection per
//! node held outside the pool.
//!
//! - `hookd_due`: due entries a commit made (new deliveries, retries, replays), so the
//!   owner of their partition puts them in its queues at once, as the redb writer does
//!   for its own dispatcher. Sent with `pg_notify` inside the transaction that made
//!   them: PostgreSQL delivers a notification only if, and when, that transaction commits.
//!   Each payload is the sending node's name, a space, then up to `ENTRIES_PER_NOTICE`
//!   entries, base64 of 40 bytes each (the server limits a payload to 8,000 bytes); a
//!   node skips its own, which its writer handed its dispatcher already.
//! - `hookd_snapshot`: subscriptions, keys or entities changed; every node reloads its
//!   snapshot (changes are in force everywhere within a round trip).
//!
//! A notification sent while the connection was down is lost, so after every reconnect
//! the listener says `Resync`: the node then reloads its snapshot and reads its queues
//! from the database again. A periodic check in the node covers the rest.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::connect;
use crate::config::Postgres;
use crate::store::DueEntry;

pub const DUE_CHANNEL: &str = "hookd_due";
pub const SNAPSHOT_CHANNEL: &str = "hookd_snapshot";
/// Entries per `hookd_due` payload: 40 bytes each, base64, under the 8,000-byte limit.
pub const ENTRIES_PER_NOTICE: usize = 140;
const ENTRY_BYTES: usize = 40;
/// How long the listener waits before connecting again after losing its connection.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Due {
        origin: String,
        entries: Vec<DueEntry>,
    },
    Snapshot,
    /// The connection was made again: notifications may have been lost meanwhile.
    Resync,
}

/// The `hookd_due` payloads for `entries` made by node `origin`.
pub fn due_payloads(origin: &str, entries: &[DueEntry]) -> Vec<String> {
    entries
        .chunks(ENTRIES_PER_NOTICE)
        .map(|chunk| {
            let mut bytes = Vec::with_capacity(chunk.len() * ENTRY_BYTES);
            for entry in chunk {
                bytes.extend_from_slice(&entry.subscription.to_be_bytes());
                bytes.extend_from_slice(&entry.due_ms.to_be_bytes());
                bytes.extend_from_slice(&entry.delivery.to_be_bytes());
            }
            format!("{origin} {}", STANDARD.encode(bytes))
        })
        .collect()
}

/// The sending node and the entries of a `hookd_due` payload (none from a malformed
/// one).
pub fn parse_due(payload: &str) -> (String, Vec<DueEntry>) {
    let (origin, encoded) = payload.split_once(' ').unwrap_or(("", payload));
    let entries = match STANDARD.decode(encoded) {
        Ok(bytes) if bytes.len() % ENTRY_BYTES == 0 => entries_of(&bytes),
        _ => Vec::new(),
    };
    (origin.to_owned(), entries)
}

fn entries_of(bytes: &[u8]) -> Vec<DueEntry> {
    bytes
        .chunks_exact(ENTRY_BYTES)
        .map(|raw| {
            let word = |range: std::ops::Range<usize>| {
                let mut buf = [0u8; 16];
                buf[16 - range.len()..].copy_from_slice(&raw[range]);
                u128::from_be_bytes(buf)
            };
            DueEntry {
                subscription: word(0..16),
                due_ms: word(16..24) as u64,
                delivery: word(24..40),
            }
        })
        .collect()
}

/// Listens until `shutdown`, sending what arrives to `out`; reconnects by itself.
/// `ready` is told each time the LISTENs are in place (for tests and start-up).
pub async fn run(
    config: Postgres,
    out: mpsc::Sender<Notice>,
    ready: Option<mpsc::Sender<()>>,
    shutdown: CancellationToken,
) {
    let mut first = true;
    let mut failing = false;
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = listen_once(&config, &out, ready.as_ref(), first) => outcome,
        };
        match outcome {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "lost the database notification connection; reconnecting");
            }
            Err(_) => {}
        }
        if out.is_closed() {
            return;
        }
        first = false;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT_EVERY) => {}
        }
    }
}

/// One connection's life: LISTEN, then forward notifications until it ends.
async fn listen_once(
    config: &Postgres,
    out: &mpsc::Sender<Notice>,
    ready: Option<&mpsc::Sender<()>>,
    first: bool,
) -> Result<(), super::PostgresError> {
    let (client, mut connection) = connect::connect(config).await?;
    let (messages, mut received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if messages
                        .send((n.channel().to_owned(), n.payload().to_owned()))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {DUE_CHANNEL}; LISTEN {SNAPSHOT_CHANNEL}"))
        .await?;
    if !first && out.send(Notice::Resync).await.is_err() {
        return Ok(());
    }
    if let Some(ready) = ready {
        let _ = ready.send(()).await;
    }
    while let Some((channel, payload)) = received.recv().await {
        let notice = match channel.as_str() {
            DUE_CHANNEL => {
                let (origin, entries) = parse_due(&payload);
                Notice::Due { origin, entries }
            }
            SNAPSHOT_CHANNEL => Notice::Snapshot,
            _ => continue,
        };
        if out.send(notice).await.is_err() {
            return Ok(());
        }
    }
    drop(client);
    match driver.await {
        Ok(Err(error)) => Err(error.into()),
        _ => Ok(()),
    }
}
