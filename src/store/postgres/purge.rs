//! Retention in PostgreSQL: the same bounded steps and rules as redb's
//! (`redb/purge.rs`): an event goes, with its deliveries and attempts, only when every
//! delivery of it has ended and none changed since the cutoff; old idempotency records,
//! expired attempt counters and expired console sessions and portal links
//! (`sessions.rs`) go too, in the steps of a full pass. A step is one transaction of its
//! own beside the writer's (PostgreSQL runs them side by side), and runs on one node at
//! a time: it first takes a transaction-level advisory lock, and a node that cannot
//! have it ends its pass, leaving retention to the node that holds it.

use super::PostgresError;
use super::rows::ms;
use super::store::PgStore;
use super::types::Uuid;
use crate::store::purge::{PurgeCursor, PurgeOutcome, Scan};
use crate::store::stats::{MINUTE_ROWS_KEPT_MS, Scale};
use crate::store::{CommitReport, StoreError, now_ms};

/// `pg_try_advisory_xact_lock` key of a purge step: "hookd" in ASCII, then 2 (1 is
/// the migration's).
const PURGE_LOCK: i64 = 0x686f_6f6b_6402;

impl PgStore {
    pub async fn purge(
        &self,
        before_ms: u64,
        idempotency_before_ms: u64,
        cursor: PurgeCursor,
        limit: usize,
    ) -> Result<PurgeOutcome, StoreError> {
        let limit = limit.max(1) as i64;
        let mut client = self.pool.get().await.map_err(PostgresError::from)?;
        let tx = client.transaction().await.map_err(PostgresError::from)?;
        let mine: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
            .await
            .map_err(PostgresError::from)?
            .get(0);
        let mut outcome = PurgeOutcome {
            next: cursor,
            ..PurgeOutcome::default()
        };
        if !mine {
            // Another node is purging: this pass ends here.
            outcome.next.events = Scan::Done;
            outcome.next.idempotency = Scan::Done;
            return Ok(outcome);
        }
        if cursor.events != Scan::Done {
            let end_ms = cursor
                .events_until_ms
                .map_or(before_ms, |end| end.min(before_ms));
            outcome.next.events =
                purge_events(&tx, before_ms, end_ms, cursor.events, limit, &mut outcome).await?;
            if outcome.next.events == Scan::Done && end_ms < before_ms {
                let next = tx
                    .query_opt(
                        "SELECT id FROM events WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 1",
                        &[
                            &Uuid(u128::from(end_ms) << 80),
                            &Uuid(u128::from(before_ms) << 80),
                        ],
                    )
                    .await
                    .map_err(PostgresError::from)?;
                outcome.next_event_ms =
                    next.map(|row| crate::ids::uuid_v7_millis(row.get::<_, Uuid>(0).0));
            }
        }
        if outcome.next.events == Scan::Done && cursor.idempotency != Scan::Done {
            let removed = tx
                .execute(
                    "DELETE FROM idempotency WHERE key_sha256 IN (
                         SELECT key_sha256 FROM idempotency WHERE created_ms < $1
                         ORDER BY created_ms LIMIT $2)",
                    &[&ms(idempotency_before_ms), &limit],
                )
                .await
                .map_err(PostgresError::from)?;
            outcome.idempotency = removed;
            // Removed rows never come back: the next step starts from the oldest again.
            outcome.next.idempotency = if removed == limit as u64 {
                Scan::After((idempotency_before_ms, [0; 32]))
            } else {
                Scan::Done
            };
        }
        if cursor.idempotency != Scan::Done {
            for scale in Scale::ALL {
                let cutoff = match scale {
                    Scale::Minute => before_ms.max(now_ms().saturating_sub(MINUTE_ROWS_KEPT_MS)),
                    Scale::Hour => before_ms,
                };
                outcome.stats += tx
                    .execute(
                        "DELETE FROM attempt_stats WHERE (scale, period, subscription) IN (
                             SELECT scale, period, subscription FROM attempt_stats
                             WHERE scale = $1 AND period < $2 ORDER BY period LIMIT $3)",
                        &[
                            &i16::from(scale.code()),
                            &(scale.period(cutoff) as i32),
                            &limit,
                        ],
                    )
                    .await
                    .map_err(PostgresError::from)?;
            }
            outcome.sessions += super::sessions::purge_expired(&tx, limit).await?;
        }
        tx.commit().await.map_err(PostgresError::from)?;
        if outcome.events > 0 {
            self.observer.committed(&CommitReport {
                events_purged: outcome.events,
                ..CommitReport::default()
            });
        }
        Ok(outcome)
    }
}

/// Examines up to `limit` events created before `end_ms`, after `from`; removes those
/// whose deliveries have all ended and not changed since `before_ms`.
async fn purge_events(
    tx: &deadpool_postgres::Transaction<'_>,
    before_ms: u64,
    end_ms: u64,
    from: Scan<u128>,
    limit: i64,
    outcome: &mut PurgeOutcome,
) -> Result<Scan<u128>, StoreError> {
    let low = match from {
        Scan::Start => None,
        Scan::After(id) => Some(Uuid(id)),
        Scan::Done => return Ok(Scan::Done),
    };
    let high = Uuid(u128::from(end_ms) << 80);
    let old: Vec<Uuid> = tx
        .query(
            "SELECT id FROM events WHERE ($1::uuid IS NULL OR id > $1) AND id < $2
             ORDER BY id LIMIT $3",
            &[&low, &high, &limit],
        )
        .await
        .map_err(PostgresError::from)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let Some(&last) = old.last() else {
        return Ok(Scan::Done);
    };
    let busy: Vec<Uuid> = tx
        .query(
            "SELECT DISTINCT event FROM deliveries WHERE event = ANY($1)
             AND (state < 2 OR next_attempt_ms IS NOT NULL OR updated_ms >= $2)",
            &[&old, &ms(before_ms)],
        )
        .await
        .map_err(PostgresError::from)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let doomed: Vec<Uuid> = old
        .iter()
        .filter(|id| !busy.contains(id))
        .copied()
        .collect();
    outcome.kept += busy.len() as u64;
    if !doomed.is_empty() {
        outcome.attempts += tx
            .execute(
                "DELETE FROM attempts WHERE delivery IN
                     (SELECT id FROM deliveries WHERE event = ANY($1))",
                &[&doomed],
            )
            .await
            .map_err(PostgresError::from)?;
        outcome.deliveries += tx
            .execute("DELETE FROM deliveries WHERE event = ANY($1)", &[&doomed])
            .await
            .map_err(PostgresError::from)?;
        outcome.events += tx
            .execute("DELETE FROM events WHERE id = ANY($1)", &[&doomed])
            .await
            .map_err(PostgresError::from)?;
    }
    Ok(if (old.len() as i64) < limit {
        Scan::Done
    } else {
        Scan::After(last.0)
    })
}
