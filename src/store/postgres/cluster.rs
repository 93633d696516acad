//! This node's share of the delivery work: the partitions it leases (`lease.rs` plans,
//! this applies the plans against the `partitions` and `nodes` tables).
//!
//! A heartbeat every third of `storage.postgres.lease` records the node as alive,
//! renews its leases, then claims free or expired partitions up to its fair share and
//! gives back what is over it, over two beats: it stops dispatching them at one and
//! gives them back at the next, so that its attempts in flight can record their
//! outcomes meanwhile. Every claim raises the partition's epoch: the owned set this
//! publishes carries the epoch each partition was claimed at, and outcome writes check
//! it, so a node that lost a partition cannot overwrite its new owner's work.
//! Times of leases are the database's `now()` only, so the nodes' clocks need not agree.
//!
//! A node that cannot renew stops dispatching before its leases run out: once its last
//! successful renewal is older than two thirds of the lease (measured from before that
//! renewal was sent), it publishes an empty set, and takes its partitions up again at
//! the next successful beat if nobody claimed them meanwhile. Back from a gap longer
//! than the lease, it takes up only its own and free partitions for one more lease
//! (`Takeover::Deferred`): after an outage of the database every lease has run out,
//! and the first node back must not take the others' partitions while they still hold
//! outcomes to write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::PostgresError;
use crate::store::lease::{self, Lease, Takeover};

/// A node that has not beaten for this many leases is removed from `nodes` (its
/// partitions' `owner` becomes NULL through the foreign key).
const FORGET_AFTER_LEASES: i64 = 10;

/// The partitions a node owns, each with the epoch it was claimed at.
pub type Owned = Arc<BTreeMap<u16, i64>>;

/// What the rest of the backend reads: which partitions this node dispatches now.
#[derive(Clone)]
pub(crate) struct Ownership(watch::Receiver<Owned>);

impl Ownership {
    /// The epoch this node holds `partition` at, if it owns it now.
    pub fn epoch(&self, partition: u16) -> Option<i64> {
        self.0.borrow().get(&partition).copied()
    }

    pub fn owns(&self, partition: u16) -> bool {
        self.epoch(partition).is_some()
    }

    /// Woken at each change of the owned set.
    pub fn changes(&self) -> watch::Receiver<Owned> {
        self.0.clone()
    }
}

pub(crate) struct Heartbeat {
    pool: Pool,
    node: String,
    lease: Duration,
    owned: watch::Sender<Owned>,
    /// When the last successful renewal was sent.
    renewed: Option<Instant>,
    /// When this node last renewed after a gap longer than the lease (its own leases
    /// ran out): for one lease after that it takes over no other node's partitions.
    rejoined: Option<Instant>,
    /// Partitions to give back, no longer dispatched since the last beat.
    releasing: BTreeSet<u16>,
}

impl Heartbeat {
    pub fn new(pool: Pool, node: String, lease: Duration) -> (Heartbeat, Ownership) {
        let (owned, seen) = watch::channel(Owned::default());
        let beat = Heartbeat {
            pool,
            node,
            lease,
            owned,
            renewed: None,
            rejoined: None,
            releasing: BTreeSet::new(),
        };
        (beat, Ownership(seen))
    }

    /// Beats every third of the lease until `shutdown`, then gives every partition back
    /// so that the others take them over at once instead of after the lease.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let every = self.lease / 3;
        let mut failing = false;
        loop {
            let started = Instant::now();
            match tokio::time::timeout(every, self.beat()).await {
                Ok(Ok(())) => {
                    if failing {
                        tracing::info!("the partition heartbeat works again");
                    }
                    failing = false;
                }
                Ok(Err(error)) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot renew partition leases; retrying");
                }
                Err(_) if !failing => {
                    failing = true;
                    tracing::warn!("renewing partition leases timed out; retrying");
                }
                _ => {}
            }
            self.expire_locally();
            let next = started + every;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
        if let Err(error) = self.leave().await {
            tracing::warn!(%error, "could not give partitions back; others take them after the lease");
        }
    }

    /// One heartbeat: alive, renew, then claim and give back to reach the fair share.
    pub async fn beat(&mut self) -> Result<(), PostgresError> {
        let sent = Instant::now();
        let client = self.pool.get().await?;
        let lease_ms = self.lease.as_millis() as i64;
        client
            .execute(
                "INSERT INTO nodes (name) VALUES ($1)
                 ON CONFLICT (name) DO UPDATE SET heartbeat = now()",
                &[&self.node],
            )
            .await?;
        let renewed = client
            .query(
                "UPDATE partitions SET lease_until = now() + $2::bigint * interval '1 millisecond'
                 WHERE owner = $1 RETURNING partition, epoch",
                &[&self.node, &lease_ms],
            )
            .await?;
        if self
            .renewed
            .is_some_and(|last| sent.duration_since(last) > self.lease)
        {
            // Its own leases ran out meanwhile: the database was likely away for all.
            tracing::info!("leases renewed again; other nodes get a lease to do the same");
            self.rejoined = Some(sent);
        }
        self.renewed = Some(sent);
        let takeover = match self.rejoined {
            Some(at) if at.elapsed() < self.lease => Takeover::Deferred,
            _ => Takeover::Allowed,
        };
        let mut owned: BTreeMap<u16, i64> = renewed
            .iter()
            .map(|row| (row.get::<_, i16>(0) as u16, row.get(1)))
            .collect();

        let leases: Vec<Lease> = client
            .query(
                "SELECT partition, owner, lease_until IS NULL OR lease_until < now()
                 FROM partitions ORDER BY partition",
                &[],
            )
            .await?
            .iter()
            .map(|row| Lease {
                partition: row.get::<_, i16>(0) as u16,
                owner: row.get(1),
                expired: row.get::<_, Option<String>>(1).is_some() && row.get(2),
            })
            .collect();
        let live: Vec<String> = client
            .query(
                "SELECT name FROM nodes WHERE heartbeat > now() - $1::bigint * interval '1 millisecond'",
                &[&lease_ms],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = lease::plan(&self.node, &leases, &live, takeover);

        // Giving back takes two beats. At the first, the node stops dispatching them
        // but keeps them in the database, so that the attempts it has in flight can
        // still record their outcomes; at the next, it gives back what it stopped
        // dispatching then. Given back at once, those attempts' outcomes would be
        // fenced, and the deliveries sent again by the new owner.
        let ready: Vec<i16> = plan
            .release
            .iter()
            .filter(|p| self.releasing.contains(p))
            .map(|&p| p as i16)
            .collect();
        self.releasing = plan.release.iter().copied().collect();
        for partition in &self.releasing {
            owned.remove(partition);
        }
        self.publish(owned.clone());
        if !ready.is_empty() {
            client
                .execute(
                    "UPDATE partitions SET owner = NULL, lease_until = NULL, epoch = epoch + 1
                     WHERE owner = $1 AND partition = ANY($2)",
                    &[&self.node, &ready],
                )
                .await?;
            for partition in &ready {
                self.releasing.remove(&(*partition as u16));
            }
        }
        if !plan.claim.is_empty() {
            let claim: Vec<i16> = plan.claim.iter().map(|&p| p as i16).collect();
            let claimed = client
                .query(
                    "UPDATE partitions
                     SET owner = $1, epoch = epoch + 1,
                         lease_until = now() + $3::bigint * interval '1 millisecond'
                     WHERE partition = ANY($2)
                       AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())
                     RETURNING partition, epoch",
                    &[&self.node, &claim, &lease_ms],
                )
                .await?;
            for row in &claimed {
                owned.insert(row.get::<_, i16>(0) as u16, row.get(1));
            }
        }
        client
            .execute(
                "DELETE FROM nodes WHERE heartbeat < now() - $1::bigint * interval '1 millisecond'",
                &[&(lease_ms * FORGET_AFTER_LEASES)],
            )
            .await?;
        self.publish(owned);
        Ok(())
    }

    /// Stops dispatching everything once the last renewal is too old to trust.
    fn expire_locally(&mut self) {
        let stale = self
            .renewed
            .is_none_or(|sent| sent.elapsed() > self.lease * 2 / 3);
        if stale && !self.owned.borrow().is_empty() {
            tracing::warn!(
                "partition leases not renewed in time; dispatching stops until they are"
            );
            self.publish(BTreeMap::new());
        }
    }

    /// Gives back every partition and leaves the node list.
    pub async fn leave(&mut self) -> Result<(), PostgresError> {
        self.publish(BTreeMap::new());
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE partitions SET owner = NULL, lease_until = NULL, epoch = epoch + 1
                 WHERE owner = $1",
                &[&self.node],
            )
            .await?;
        client
            .execute("DELETE FROM nodes WHERE name = $1", &[&self.node])
            .await?;
        Ok(())
    }

    fn publish(&self, owned: BTreeMap<u16, i64>) {
        self.owned.send_if_modified(|current| {
            if **current == owned {
                return false;
            }
            *current = Arc::new(owned);
            true
        });
    }
}
