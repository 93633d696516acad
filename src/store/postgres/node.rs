//! One node's part in the cluster, between the database and its dispatcher: it follows
//! the notifications (`listen.rs`) and its partitions (`cluster.rs`), and keeps the
//! dispatcher and the snapshot in step with them.
//!
//! - Due entries another node's commit made reach the dispatcher here when this node
//!   owns their partition (the others drop them: their owner got the same notice).
//! - A snapshot notice reloads subscriptions, keys and entities and publishes them.
//! - When partitions are gained or lost, the dispatcher drops what it holds of their
//!   subscriptions and reads them again, where `dispatches` now decides: a lost one's
//!   work stops, a gained one's is read from the database.
//! - After a reconnect (`Resync`), notices may have been lost: the snapshot is reloaded
//!   and every owned subscription's queue is read again; `RESYNC_EVERY` does the same
//!   periodically, for anything no notice said.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cluster::{Owned, Ownership};
use super::listen::Notice;
use super::schema::partition_of;
use crate::store::{DueSink, Snapshots, StoreError, SubscriptionIndex};

/// How often the node reloads its snapshot and rereads its queues without being told:
/// the fallback for a notification lost in a way the connection did not show.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Whether this node dispatches `subscription` now: it owns its partition.
pub fn dispatches(ownership: &Ownership, subscription: u128) -> bool {
    ownership.owns(partition_of(subscription) as u16)
}

/// Follows `notices` and the owned set of node `me` until `shutdown`. `reload` reads
/// the snapshot from the database and publishes it (through the writer).
#[allow(clippy::too_many_arguments)]
pub async fn follow<R, F>(
    me: String,
    mut notices: mpsc::Receiver<Notice>,
    ownership: Ownership,
    snapshots: Snapshots,
    sink: Arc<dyn DueSink>,
    reload: R,
    shutdown: CancellationToken,
) where
    R: Fn() -> F,
    F: Future<Output = Result<(), StoreError>>,
{
    let mut owned = ownership.changes();
    let mut seen: Owned = owned.borrow_and_update().clone();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.tick().await;
    loop {
        let full = tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = owned.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = owned.borrow_and_update().clone();
                let moved = moved_partitions(&seen, &now);
                seen = now;
                let index = snapshots.current();
                let subscriptions = subscriptions_in(&index, &moved);
                if !subscriptions.is_empty() {
                    sink.forget(&subscriptions);
                }
                false
            }
            notice = notices.recv() => match notice {
                None => return,
                // Its own writer handed them to the dispatcher already.
                Some(Notice::Due { origin, .. }) if origin == me => false,
                Some(Notice::Due { entries, .. }) => {
                    let mine: Vec<_> = entries
                        .into_iter()
                        .filter(|e| dispatches(&ownership, e.subscription))
                        .collect();
                    if !mine.is_empty() {
                        sink.schedule(mine, Vec::new());
                    }
                    false
                }
                Some(Notice::Snapshot) => {
                    republish(&reload).await;
                    false
                }
                Some(Notice::Resync) => true,
            },
            _ = resync.tick() => true,
        };
        if full {
            republish(&reload).await;
            let index = snapshots.current();
            let all: BTreeSet<u16> = seen.keys().copied().collect();
            let subscriptions = subscriptions_in(&index, &all);
            if !subscriptions.is_empty() {
                sink.forget(&subscriptions);
            }
        }
    }
}

async fn republish<R, F>(reload: &R)
where
    R: Fn() -> F,
    F: Future<Output = Result<(), StoreError>>,
{
    // The next notice or resync tries again; meanwhile the last snapshot stands.
    if let Err(error) = reload().await {
        tracing::warn!(%error, "cannot reload subscriptions, keys and entities");
    }
}

/// Partitions in one set and not the other.
fn moved_partitions(before: &Owned, after: &Owned) -> BTreeSet<u16> {
    let a: BTreeSet<u16> = before.keys().copied().collect();
    let b: BTreeSet<u16> = after.keys().copied().collect();
    a.symmetric_difference(&b).copied().collect()
}

/// The subscriptions of the snapshot whose partition is in `partitions`.
fn subscriptions_in(index: &SubscriptionIndex, partitions: &BTreeSet<u16>) -> Vec<u128> {
    index
        .iter()
        .map(|(&id, _)| id)
        .filter(|&id| partitions.contains(&(partition_of(id) as u16)))
        .collect()
}
