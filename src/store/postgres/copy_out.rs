//! `hookd store copy` back to one VM: everything a PostgreSQL database holds, read a
//! chunk at a time in one read-only snapshot (so the counts read are the rows copied),
//! written into a new redb file (`redb::RedbTarget`), which takes the target's place only
//! when the copy is complete. Records move as their stored bytes where both backends
//! store bytes (subscriptions with their sealed secrets, keys, attempts); the rest is
//! rebuilt from columns. Every node must be stopped: a node that has beaten within
//! its lease is named, and the copy refused.

use std::path::Path;

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::copy::{Copied, counts};
use super::rows::{self, from_ms};
use super::{PostgresError, Uuid, migrate, pool};
use crate::config::Postgres;
use crate::store::StoreError;
use crate::store::records::{EntityRecord, EventRecord, IdempotencyRecord};
use crate::store::redb::{CHUNK, RedbTarget};

/// Copies everything the database `source` names into a new redb file, which then
/// takes the place of `path` (absent, or holding no data).
pub async fn to_redb(source: &Postgres, path: &Path) -> Result<Copied, StoreError> {
    let pool = pool(source)?;
    let mut client = pool.get().await.map_err(PostgresError::from)?;
    // Before anything else, the schema included: a running node may be of another build.
    let started: std::time::SystemTime = client
        .query_one("SELECT now()", &[])
        .await
        .map_err(PostgresError::from)?
        .get(0);
    let lease_ms = source.lease.as_millis() as i64;
    refuse_running(
        &client,
        "heartbeat > now() - $1::bigint * interval '1 millisecond'",
        &lease_ms,
    )
    .await?;
    migrate(&mut client).await?;
    let owned = path.to_owned();
    let target = tokio::task::spawn_blocking(move || RedbTarget::create(&owned)).await??;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(PostgresError::from)?;
    let read = counts(&tx).await?;
    entities(&tx, &target).await?;
    subscriptions(&tx, &target).await?;
    keys(&tx, &target).await?;
    events(&tx, &target).await?;
    deliveries(&tx, &target).await?;
    attempts(&tx, &target).await?;
    stats(&tx, &target).await?;
    idempotency(&tx, &target).await?;
    tx.commit().await.map_err(PostgresError::from)?;
    // A node started during the copy may have accepted events the snapshot missed.
    refuse_running(&client, "heartbeat >= $1", &started).await?;
    let written = tokio::task::spawn_blocking(move || target.finish(read)).await??;
    Ok(Copied { read, written })
}

/// Refuses the copy if any node's heartbeat meets `condition` (on `$1`, `since`).
async fn refuse_running(
    client: &deadpool_postgres::Client,
    condition: &str,
    since: &(dyn ToSql + Sync),
) -> Result<(), StoreError> {
    let schema: bool = client
        .query_one("SELECT to_regclass('nodes') IS NOT NULL", &[])
        .await
        .map_err(PostgresError::from)?
        .get(0);
    if !schema {
        return Ok(());
    }
    let running: Vec<String> = client
        .query(
            &format!("SELECT name FROM nodes WHERE {condition} ORDER BY name"),
            &[since],
        )
        .await
        .map_err(PostgresError::from)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if running.is_empty() {
        Ok(())
    } else {
        Err(StoreError::NodesRunning(running.join(", ")))
    }
}

/// One chunk of `sql` (which takes the last key read as its parameters and orders by
/// that key) as rows.
async fn chunk(
    tx: &Transaction<'_>,
    sql: &str,
    after: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, PostgresError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query(&statement, after).await?)
}

const LIMIT: i64 = CHUNK as i64;

async fn entities(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    let mut after = String::new();
    loop {
        let rows = chunk(
            tx,
            "SELECT id, name, parent, created_ms FROM entities WHERE id > $1
             ORDER BY id LIMIT $2",
            &[&after, &LIMIT],
        )
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.get(0);
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let entity = EntityRecord {
                name: rows::col(row, 1)?,
                parent: rows::col(row, 2)?,
                created_ms: from_ms(rows::col(row, 3)?),
            };
            out.push((rows::col::<String>(row, 0)?, entity));
        }
        target.entities(&out)?;
    }
}

/// Every row `sql` selects, a chunk at a time, each chunk handed to `each`: `sql` is
/// keyed by the uuid in its first column, takes the last one read as `$1` and the chunk
/// size as `$2`, and orders by it.
async fn by_id(
    tx: &Transaction<'_>,
    sql: &str,
    mut each: impl FnMut(&[tokio_postgres::Row]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = Uuid(0);
    loop {
        let rows = chunk(tx, sql, &[&after, &LIMIT]).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = rows::col(last, 0)?;
        each(&rows)?;
    }
}

/// Rows of an id and the record's stored bytes.
fn stored(page: &[tokio_postgres::Row]) -> Result<Vec<(u128, Vec<u8>)>, PostgresError> {
    page.iter()
        .map(|row| Ok((rows::col::<Uuid>(row, 0)?.0, rows::col(row, 1)?)))
        .collect()
}

/// Subscriptions, then their health.
async fn subscriptions(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    by_id(
        tx,
        "SELECT id, record FROM subscriptions WHERE id > $1 ORDER BY id LIMIT $2",
        |page| target.subscriptions(&stored(page)?),
    )
    .await?;
    by_id(
        tx,
        "SELECT subscription, last_success_ms, failing_since_ms FROM subscription_health
         WHERE subscription > $1 ORDER BY subscription LIMIT $2",
        |page| {
            let health = page
                .iter()
                .map(|row| {
                    Ok((
                        rows::col::<Uuid>(row, 0)?.0,
                        rows::col::<Option<i64>>(row, 1)?.map(from_ms),
                        rows::col::<Option<i64>>(row, 2)?.map(from_ms),
                    ))
                })
                .collect::<Result<Vec<_>, PostgresError>>()?;
            target.health(&health)
        },
    )
    .await
}

async fn keys(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    by_id(
        tx,
        "SELECT id, record FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2",
        |page| target.api_keys(&stored(page)?),
    )
    .await
}

async fn events(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    by_id(
        tx,
        "SELECT id, entity, event_type, created_ms, body FROM events WHERE id > $1
         ORDER BY id LIMIT $2",
        |page| {
            let mut events = Vec::with_capacity(page.len());
            for row in page {
                let event = EventRecord {
                    entity: rows::col(row, 1)?,
                    event_type: rows::col(row, 2)?,
                    created_ms: from_ms(rows::col(row, 3)?),
                    body: rows::col(row, 4)?,
                };
                events.push((rows::col::<Uuid>(row, 0)?.0, event));
            }
            target.events(&events)
        },
    )
    .await
}

async fn deliveries(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT id, {} FROM deliveries WHERE id > $1 ORDER BY id LIMIT $2",
        rows::DELIVERY_COLUMNS
    );
    by_id(tx, &sql, |page| {
        let deliveries = page
            .iter()
            .map(|row| Ok((rows::col::<Uuid>(row, 0)?.0, rows::delivery(row, 1)?)))
            .collect::<Result<Vec<_>, PostgresError>>()?;
        target.deliveries(&deliveries)
    })
    .await
}

async fn attempts(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    let (mut delivery, mut n) = (Uuid(0), 0i32);
    loop {
        let rows = chunk(
            tx,
            "SELECT delivery, n, record, request FROM attempts WHERE (delivery, n) > ($1, $2)
             ORDER BY delivery, n LIMIT $3",
            &[&delivery, &n, &LIMIT],
        )
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        (delivery, n) = (rows::col(last, 0)?, rows::col(last, 1)?);
        let out = rows
            .iter()
            .map(|row| {
                let key = (rows::col::<Uuid>(row, 0)?.0, unsigned(row, 1)?);
                Ok((key, rows::col(row, 2)?, rows::col(row, 3)?))
            })
            .collect::<Result<Vec<_>, PostgresError>>()?;
        target.attempts(&out)?;
    }
}

async fn stats(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    let (mut scale, mut period, mut subscription) = (-1i16, 0i32, Uuid(0));
    loop {
        let rows = chunk(
            tx,
            "SELECT scale, period, subscription, attempts, succeeded, latency
             FROM attempt_stats WHERE (scale, period, subscription) > ($1, $2, $3)
             ORDER BY scale, period, subscription LIMIT $4",
            &[&scale, &period, &subscription, &LIMIT],
        )
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        (scale, period, subscription) = (
            rows::col(last, 0)?,
            rows::col(last, 1)?,
            rows::col(last, 2)?,
        );
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let scale = rows::col::<i16>(row, 0)?;
            let scale = u8::try_from(scale)
                .map_err(|_| PostgresError::Column(format!("attempt_stats scale {scale}")))?;
            let key = (scale, unsigned(row, 1)?, rows::col::<Uuid>(row, 2)?.0);
            let latency: Vec<i32> = rows::col(row, 5)?;
            let counters = rows::counters(rows::col(row, 3)?, rows::col(row, 4)?, &latency)?;
            out.push((key, counters));
        }
        target.attempt_stats(&out)?;
    }
}

async fn idempotency(tx: &Transaction<'_>, target: &RedbTarget) -> Result<(), StoreError> {
    let mut after: Vec<u8> = Vec::new();
    loop {
        let rows = chunk(
            tx,
            "SELECT key_sha256, created_ms, event, deliveries, body_sha256 FROM idempotency
             WHERE key_sha256 > $1 ORDER BY key_sha256 LIMIT $2",
            &[&after, &LIMIT],
        )
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = rows::col(last, 0)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = IdempotencyRecord {
                body_sha256: sha256(rows::col(row, 4)?)?,
                created_ms: from_ms(rows::col(row, 1)?),
                event: rows::col::<Uuid>(row, 2)?.0,
                deliveries: unsigned(row, 3)?,
            };
            out.push((sha256(rows::col(row, 0)?)?, record));
        }
        target.idempotency(&out)?;
    }
}

/// An `integer` column that holds a count or a number from 0.
fn unsigned(row: &tokio_postgres::Row, at: usize) -> Result<u32, PostgresError> {
    let value: i32 = rows::col(row, at)?;
    u32::try_from(value).map_err(|_| PostgresError::Column(format!("a negative number {value}")))
}

fn sha256(bytes: &[u8]) -> Result<[u8; 32], PostgresError> {
    bytes
        .try_into()
        .map_err(|_| PostgresError::Column(format!("a {}-byte SHA-256", bytes.len())))
}
