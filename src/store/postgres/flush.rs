//! The writer's statements: what a batch reads before deciding (pipelined with its
//! `BEGIN`), and the rows it made or changed, written with one multi-row statement per
//! kind (`INSERT ... SELECT FROM unnest($1::uuid[], ...)`), pipelined in one round trip.
//! Statements are prepared (cached per connection) before any is sent, so that they go
//! out in the order written: events before the deliveries that reference them.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use deadpool_postgres::Client;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::PostgresError;
use super::batch::{Batch, DeliveryRow, Health};
use super::columns::{
    AttemptColumns, DeliveryColumns, EventColumns, HealthColumns, IdemColumns, StatsColumns,
};
use super::ingest::{IdemRow, KeyRow};
use super::rows::{self, DELIVERY_COLUMNS, ms, state_code};
use super::types::Uuid;
use crate::store::records::DeliveryState;
use crate::store::requests::IDEMPOTENCY_WINDOW_MS;

/// Claims the first use of each new key: inserted, or taking over a row whose window
/// has passed; a key in force (or being inserted by another node's open transaction,
/// which this waits for) is not claimed. Answers the keys claimed.
const CLAIM: &str = "
    INSERT INTO idempotency (key_sha256, created_ms, event, deliveries, body_sha256)
    SELECT * FROM unnest($1::bytea[], $2::int8[], $3::uuid[], $4::int4[], $5::bytea[])
    ON CONFLICT (key_sha256) DO UPDATE
        SET created_ms = excluded.created_ms, event = excluded.event,
            deliveries = excluded.deliveries, body_sha256 = excluded.body_sha256
        WHERE idempotency.created_ms <= $6
    RETURNING key_sha256";
const READ_IDEMPOTENCY: &str = "
    SELECT key_sha256, created_ms, event, deliveries, body_sha256 FROM idempotency
    WHERE key_sha256 = ANY($1::bytea[]) AND created_ms > $2";
/// A batch's corrections of its claims (rare: see `Idempotency::corrections`).
const WRITE_IDEMPOTENCY: &str = "
    INSERT INTO idempotency (key_sha256, created_ms, event, deliveries, body_sha256)
    SELECT * FROM unnest($1::bytea[], $2::int8[], $3::uuid[], $4::int4[], $5::bytea[])
    ON CONFLICT (key_sha256) DO UPDATE
        SET created_ms = excluded.created_ms, event = excluded.event,
            deliveries = excluded.deliveries, body_sha256 = excluded.body_sha256";
const RELEASE_IDEMPOTENCY: &str = "DELETE FROM idempotency WHERE key_sha256 = ANY($1::bytea[])";
const INSERT_EVENTS: &str = "
    INSERT INTO events (id, entity, event_type, created_ms, body)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::bytea[])";
const INSERT_DELIVERIES: &str = "
    INSERT INTO deliveries (id, event, subscription, state, attempts, next_attempt_ms,
        last_status, last_error, created_ms, updated_ms, parked, retry_once)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int2[], $5::int4[],
        $6::int8[], $7::int4[], $8::text[], $9::int8[], $10::int8[], $11::bool[], $12::bool[])";
/// Every change of an existing delivery (an outcome, a retry) is this one statement:
/// where the partition's epoch check (fencing) belongs.
const UPDATE_DELIVERIES: &str = "
    UPDATE deliveries AS d
    SET state = v.state, attempts = v.attempts, next_attempt_ms = v.next_attempt_ms,
        last_status = v.last_status, last_error = v.last_error, updated_ms = v.updated_ms,
        parked = v.parked, retry_once = v.retry_once
    FROM unnest($1::uuid[], $2::int2[], $3::int4[], $4::int8[], $5::int4[], $6::text[],
        $7::int8[], $8::bool[], $9::bool[])
        AS v(id, state, attempts, next_attempt_ms, last_status, last_error, updated_ms,
             parked, retry_once)
    WHERE d.id = v.id";
const INSERT_ATTEMPTS: &str = "
    INSERT INTO attempts (delivery, n, record, request)
    SELECT * FROM unnest($1::uuid[], $2::int4[], $3::bytea[], $4::bytea[])";
const WRITE_HEALTH: &str = "
    INSERT INTO subscription_health (subscription, last_success_ms, failing_since_ms)
    SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[])
    ON CONFLICT (subscription) DO UPDATE
        SET last_success_ms = excluded.last_success_ms,
            failing_since_ms = excluded.failing_since_ms";
/// Adds a batch's counters to their rows in place, so that two nodes' additions to
/// one row never overwrite each other. `$6` holds every row's latency buckets, one
/// row's after another.
const ADD_STATS: &str = "
    INSERT INTO attempt_stats (scale, period, subscription, attempts, succeeded, latency)
    SELECT t.scale, t.period, t.subscription, t.attempts, t.succeeded,
           ($6::int4[])[((t.n - 1) * $7::int4 + 1)::int4 : (t.n * $7::int4)::int4]
    FROM unnest($1::int2[], $2::int4[], $3::uuid[], $4::int4[], $5::int4[])
        WITH ORDINALITY AS t(scale, period, subscription, attempts, succeeded, n)
    ON CONFLICT (scale, period, subscription) DO UPDATE
        SET attempts = attempt_stats.attempts + excluded.attempts,
            succeeded = attempt_stats.succeeded + excluded.succeeded,
            latency = ARRAY(
                SELECT x.a + x.b
                FROM unnest(attempt_stats.latency, excluded.latency)
                    WITH ORDINALITY AS x(a, b, i)
                ORDER BY x.i)";

/// Opens the transaction (`now`: or leaves it to be sent with the next statements).
pub async fn begin(client: &Client, now: bool) -> Result<(), PostgresError> {
    if now {
        client.batch_execute("BEGIN").await?;
    }
    Ok(())
}

pub async fn commit(client: &Client) -> Result<(), PostgresError> {
    Ok(client.batch_execute("COMMIT").await?)
}

pub async fn claim(
    client: &Client,
    claims: &[KeyRow],
    now: u64,
) -> Result<Vec<[u8; 32]>, PostgresError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let statement = client.prepare_cached(CLAIM).await?;
    let columns = IdemColumns::of(claims.iter().map(|(k, r)| (k, r)));
    // A row this old is past its window: absent, as far as a new use is concerned.
    let expired = ms(now.saturating_sub(IDEMPOTENCY_WINDOW_MS));
    let mut params = columns.params();
    params.push(&expired);
    let rows = client.query(&statement, &params).await?;
    rows.iter().map(|row| key(row.try_get(0)?)).collect()
}

/// The rows in force (younger than the window) of `keys`.
pub async fn read_idempotency(
    client: &Client,
    keys: &[[u8; 32]],
    now: u64,
) -> Result<HashMap<[u8; 32], IdemRow>, PostgresError> {
    let statement = client.prepare_cached(READ_IDEMPOTENCY).await?;
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let after = ms(now.saturating_sub(IDEMPOTENCY_WINDOW_MS));
    let rows = client.query(&statement, &[&keys, &after]).await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let deliveries: i32 = row.try_get(3)?;
        found.insert(
            key(row.try_get(0)?)?,
            IdemRow {
                created_ms: rows::from_ms(row.try_get(1)?),
                event: row.try_get::<_, Uuid>(2)?.0,
                deliveries: u32::try_from(deliveries).unwrap_or(0),
                body_sha256: key(row.try_get(4)?)?,
            },
        );
    }
    Ok(found)
}

fn key(bytes: &[u8]) -> Result<[u8; 32], PostgresError> {
    bytes
        .try_into()
        .map_err(|_| PostgresError::Column(format!("a {}-byte SHA-256", bytes.len())))
}

/// The deliveries `ids` (those that still exist), locked until the commit, each with
/// its event's entity and type.
pub async fn load_deliveries(
    client: &Client,
    ids: &[u128],
) -> Result<BTreeMap<u128, DeliveryRow>, PostgresError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids: Vec<Uuid> = ids.iter().copied().map(Uuid).collect();
    let rows = lock_deliveries(client, "d.id = ANY($1::uuid[]) ORDER BY d.id", &[&ids]).await?;
    Ok(rows.into_iter().collect())
}

/// The deliveries `condition` (a `WHERE` on `deliveries AS d`, with its `ORDER BY` and
/// `LIMIT`) selects, in its order, locked until the commit, each with its event's entity
/// and type.
pub async fn lock_deliveries(
    client: &Client,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<(u128, DeliveryRow)>, PostgresError> {
    let sql = format!(
        "SELECT d.id, e.entity, e.event_type, {} FROM deliveries AS d
         JOIN events AS e ON e.id = d.event
         WHERE {condition} FOR UPDATE OF d",
        qualified("d", DELIVERY_COLUMNS)
    );
    let statement = client.prepare_cached(&sql).await?;
    let mut locked = Vec::new();
    for row in client.query(&statement, params).await? {
        let delivery = DeliveryRow {
            record: rows::delivery(&row, 3)?,
            new: false,
            dirty: false,
            event: Some((row.try_get(1)?, row.try_get(2)?)),
        };
        locked.push((row.try_get::<_, Uuid>(0)?.0, delivery));
    }
    Ok(locked)
}

/// `a, b` as `d.a, d.b`.
fn qualified(table: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Of the partitions of the deliveries `ids`, those the database says `node` owns, each
/// with its epoch, locked (shared) until the commit so that no other node can claim one
/// while the batch decides: the fence of attempt outcomes (`Batch::fence`).
pub async fn held_partitions(
    client: &Client,
    node: &str,
    ids: &[u128],
) -> Result<BTreeMap<u16, i64>, PostgresError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let statement = client
        .prepare_cached(
            "SELECT partition, epoch FROM partitions WHERE owner = $1 AND partition IN
             (SELECT partition FROM deliveries WHERE id = ANY($2::uuid[]))
             ORDER BY partition FOR SHARE",
        )
        .await?;
    let ids: Vec<Uuid> = ids.iter().copied().map(Uuid).collect();
    let rows = client.query(&statement, &[&node, &ids]).await?;
    rows.iter()
        .map(|row| Ok((row.try_get::<_, i16>(0)? as u16, row.try_get(1)?)))
        .collect()
}

/// The health of the subscriptions of the deliveries `ids`.
pub async fn load_health(
    client: &Client,
    ids: &[u128],
) -> Result<Vec<(u128, Health)>, PostgresError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = client
        .prepare_cached(
            "SELECT subscription, last_success_ms, failing_since_ms FROM subscription_health
             WHERE subscription IN (SELECT subscription FROM deliveries WHERE id = ANY($1::uuid[]))",
        )
        .await?;
    let ids: Vec<Uuid> = ids.iter().copied().map(Uuid).collect();
    let rows = client.query(&statement, &[&ids]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<_, Uuid>(0)?.0,
                Health {
                    last_success_ms: row.try_get::<_, Option<i64>>(1)?.map(rows::from_ms),
                    failing_since_ms: row.try_get::<_, Option<i64>>(2)?.map(rows::from_ms),
                },
            ))
        })
        .collect()
}

/// Up to `limit` events with ids in `[from, to)`, oldest first: (id, entity, type).
pub async fn event_heads(
    client: &Client,
    from: u128,
    to: u128,
    limit: i64,
) -> Result<Vec<(u128, String, String)>, PostgresError> {
    let statement = client
        .prepare_cached(
            "SELECT id, entity, event_type FROM events WHERE id >= $1 AND id < $2
             ORDER BY id LIMIT $3",
        )
        .await?;
    let rows = client
        .query(&statement, &[&Uuid(from), &Uuid(to), &limit])
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<_, Uuid>(0)?.0,
                row.try_get(1)?,
                row.try_get(2)?,
            ))
        })
        .collect()
}

/// Of `events`, those whose latest delivery to `subscription` ended FAILED.
pub async fn failed_for(
    client: &Client,
    events: &[u128],
    subscription: u128,
) -> Result<HashSet<u128>, PostgresError> {
    let statement = client
        .prepare_cached(
            "SELECT DISTINCT ON (event) event, state FROM deliveries
             WHERE event = ANY($1::uuid[]) AND subscription = $2
             ORDER BY event, id DESC",
        )
        .await?;
    let ids: Vec<Uuid> = events.iter().copied().map(Uuid).collect();
    let rows = client
        .query(&statement, &[&ids, &Uuid(subscription)])
        .await?;
    let failed = state_code(DeliveryState::Failed);
    let mut found = HashSet::new();
    for row in rows {
        if row.try_get::<_, i16>(1)? == failed {
            found.insert(row.try_get::<_, Uuid>(0)?.0);
        }
    }
    Ok(found)
}

pub async fn event_bodies(
    client: &Client,
    events: &[u128],
) -> Result<HashMap<u128, Bytes>, PostgresError> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let statement = client
        .prepare_cached("SELECT id, body FROM events WHERE id = ANY($1::uuid[])")
        .await?;
    let ids: Vec<Uuid> = events.iter().copied().map(Uuid).collect();
    let rows = client.query(&statement, &[&ids]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<_, Uuid>(0)?.0,
                Bytes::from(row.try_get::<_, Vec<u8>>(1)?),
            ))
        })
        .collect()
}

/// Writes every row the batch made or changed, each kind with one statement, all in
/// one round trip (which opens the transaction too when `begin`).
pub async fn write(client: &Client, batch: &Batch<'_>, begin: bool) -> Result<(), PostgresError> {
    let (events_sql, inserts_sql, updates_sql, attempts_sql, health_sql, stats_sql) = tokio::try_join!(
        client.prepare_cached(INSERT_EVENTS),
        client.prepare_cached(INSERT_DELIVERIES),
        client.prepare_cached(UPDATE_DELIVERIES),
        client.prepare_cached(INSERT_ATTEMPTS),
        client.prepare_cached(WRITE_HEALTH),
        client.prepare_cached(ADD_STATS),
    )?;
    let (upsert, release) = batch.idempotency.corrections();
    let corrections = if upsert.is_empty() && release.is_empty() {
        None
    } else {
        Some(tokio::try_join!(
            client.prepare_cached(WRITE_IDEMPOTENCY),
            client.prepare_cached(RELEASE_IDEMPOTENCY),
        )?)
    };

    let events = EventColumns::of(&batch.events);
    let (inserts, updates) = DeliveryColumns::of(&batch.deliveries);
    let attempts = AttemptColumns::of(&batch.attempts);
    let health = HealthColumns::of(&batch.health);
    let stats = StatsColumns::of(&batch.stats);
    let upsert = IdemColumns::of(upsert.iter().map(|(k, r)| (k, r)));
    let release: Vec<&[u8]> = release.iter().map(|k| k.as_slice()).collect();
    let (write_keys, release_keys) = match &corrections {
        Some((write, delete)) => (Some(write), Some(delete)),
        None => (None, None),
    };
    let release_params: [&(dyn ToSql + Sync); 1] = [&release];
    let (
        events_params,
        inserts_params,
        attempts_params,
        health_params,
        stats_params,
        upsert_params,
    ) = (
        events.params(),
        inserts.insert_params(),
        attempts.params(),
        health.params(),
        stats.params(),
        upsert.params(),
    );
    tokio::try_join!(
        biased;
        self::begin(client, begin),
        execute(client, Some(&events_sql), &events_params, events.len()),
        execute(client, Some(&inserts_sql), &inserts_params, inserts.len()),
        update_deliveries(client, &updates_sql, &updates),
        execute(client, Some(&attempts_sql), &attempts_params, attempts.len()),
        execute(client, Some(&health_sql), &health_params, health.len()),
        execute(client, Some(&stats_sql), &stats_params, stats.len()),
        execute(client, write_keys, &upsert_params, upsert.len()),
        execute(client, release_keys, &release_params, release.len()),
    )?;
    Ok(())
}

/// Writes the deliveries the batch changed (outcomes, retries): every change of an
/// existing delivery goes through this one statement, which is where an outcome's
/// write is to be fenced by its partition's epoch.
async fn update_deliveries(
    client: &Client,
    statement: &Statement,
    changed: &DeliveryColumns<'_>,
) -> Result<u64, PostgresError> {
    execute(
        client,
        Some(statement),
        &changed.update_params(),
        changed.len(),
    )
    .await
}

/// Runs `statement` when it has rows to write (sent at the first poll, so a pipeline
/// keeps its order).
async fn execute(
    client: &Client,
    statement: Option<&Statement>,
    params: &[&(dyn ToSql + Sync)],
    rows: usize,
) -> Result<u64, PostgresError> {
    match statement {
        Some(statement) if rows > 0 => Ok(client.execute(statement, params).await?),
        _ => Ok(0),
    }
}
