//! `hookd store copy`, the PostgreSQL side: an appliance's data, read from its redb
//! file a chunk at a time (`redb::RedbSource`), written into an empty database in ONE
//! transaction, so a copy that fails leaves the database as empty as it found it and can
//! simply be run again. Records the API reads whole (subscriptions, keys, attempts) move
//! as their stored bytes, sealed secrets included; everything else becomes columns.
//! Rows go in as arrays (`INSERT ... SELECT FROM unnest(...)`), a chunk per statement.

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::{PostgresError, Uuid, migrate, pool};
use crate::config::Postgres;
use crate::store::StoreError;
use crate::store::codec::decode;
use crate::store::records::SubscriptionRecord;
use crate::store::redb::{Counts, RedbSource};

/// What the copy read from the file and what the database holds afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub read: Counts,
    pub written: Counts,
}

/// Copies everything `source` holds into the database `target` names, which must hold
/// no hookd data yet (its schema is created or migrated first).
pub async fn from_redb(source: &RedbSource, target: &Postgres) -> Result<Copied, StoreError> {
    let read = source.counts()?;
    let pool = pool(target)?;
    let mut client = pool.get().await.map_err(PostgresError::from)?;
    migrate(&mut client).await?;
    let found = counts(&client).await?;
    if found != Counts::root_only() {
        return Err(StoreError::TargetNotEmpty(format!("{found:?}")));
    }
    let tx = client.transaction().await.map_err(PostgresError::from)?;
    entities(&tx, source).await?;
    subscriptions(&tx, source).await?;
    keys(&tx, source).await?;
    events(&tx, source).await?;
    deliveries(&tx, source).await?;
    attempts(&tx, source).await?;
    stats(&tx, source).await?;
    idempotency(&tx, source).await?;
    tx.commit().await.map_err(PostgresError::from)?;
    let written = counts(&client).await?;
    Ok(Copied { read, written })
}

/// How many rows each kind of record has in the database.
pub(super) async fn counts(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<Counts, PostgresError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM entities), (SELECT count(*) FROM subscriptions),
                    (SELECT count(*) FROM api_keys), (SELECT count(*) FROM events),
                    (SELECT count(*) FROM deliveries), (SELECT count(*) FROM attempts),
                    (SELECT count(*) FROM idempotency), (SELECT count(*) FROM attempt_stats)",
            &[],
        )
        .await?;
    let n = |i: usize| row.get::<_, i64>(i) as u64;
    Ok(Counts {
        entities: n(0),
        subscriptions: n(1),
        api_keys: n(2),
        events: n(3),
        deliveries: n(4),
        attempts: n(5),
        idempotency: n(6),
        attempt_stats: n(7),
    })
}

async fn run(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), PostgresError> {
    tx.execute(sql, params).await?;
    Ok(())
}

/// The root exists already (the schema makes it): it takes the file's name and time.
async fn entities(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    for (id, entity) in source.entities()? {
        let created = entity.created_ms as i64;
        run(
            tx,
            "INSERT INTO entities (id, name, parent, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                 parent = excluded.parent, created_ms = excluded.created_ms",
            &[&id, &entity.name, &entity.parent, &created],
        )
        .await?;
    }
    Ok(())
}

async fn subscriptions(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    let all = source.subscriptions()?;
    for chunk in all.chunks(crate::store::redb::CHUNK) {
        let mut ids = Vec::new();
        let mut entities = Vec::new();
        let mut records = Vec::new();
        for (id, bytes) in chunk {
            let record: SubscriptionRecord = decode(bytes)?;
            ids.push(Uuid(*id));
            entities.push(record.entity);
            records.push(bytes.clone());
        }
        run(
            tx,
            "INSERT INTO subscriptions (id, entity, record)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])",
            &[&ids, &entities, &records],
        )
        .await?;
    }
    let health = source.health()?;
    for chunk in health.chunks(crate::store::redb::CHUNK) {
        let ids: Vec<Uuid> = chunk.iter().map(|h| Uuid(h.0)).collect();
        let ok: Vec<Option<i64>> = chunk.iter().map(|h| h.1.map(|t| t as i64)).collect();
        let failing: Vec<Option<i64>> = chunk.iter().map(|h| h.2.map(|t| t as i64)).collect();
        run(
            tx,
            "INSERT INTO subscription_health (subscription, last_success_ms, failing_since_ms)
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])",
            &[&ids, &ok, &failing],
        )
        .await?;
    }
    Ok(())
}

async fn keys(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    let all = source.api_keys()?;
    for chunk in all.chunks(crate::store::redb::CHUNK) {
        let ids: Vec<Uuid> = chunk.iter().map(|k| Uuid(k.0)).collect();
        let hashes: Vec<Vec<u8>> = chunk.iter().map(|k| k.2.sha256.to_vec()).collect();
        let entities: Vec<&str> = chunk.iter().map(|k| k.2.entity.as_str()).collect();
        let records: Vec<&[u8]> = chunk.iter().map(|k| k.1.as_slice()).collect();
        run(
            tx,
            "INSERT INTO api_keys (id, sha256, entity, record)
             SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::bytea[])",
            &[&ids, &hashes, &entities, &records],
        )
        .await?;
    }
    Ok(())
}

async fn events(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let chunk = source.events(after)?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        after = Some(last.0);
        let ids: Vec<Uuid> = chunk.iter().map(|e| Uuid(e.0)).collect();
        let entities: Vec<&str> = chunk.iter().map(|e| e.1.entity.as_str()).collect();
        let types: Vec<&str> = chunk.iter().map(|e| e.1.event_type.as_str()).collect();
        let created: Vec<i64> = chunk.iter().map(|e| e.1.created_ms as i64).collect();
        let bodies: Vec<&[u8]> = chunk.iter().map(|e| e.1.body.as_slice()).collect();
        run(
            tx,
            "INSERT INTO events (id, entity, event_type, created_ms, body)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bytea[])",
            &[&ids, &entities, &types, &created, &bodies],
        )
        .await?;
    }
}

async fn deliveries(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let chunk = source.deliveries(after)?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        after = Some(last.0);
        let ids: Vec<Uuid> = chunk.iter().map(|d| Uuid(d.0)).collect();
        let events: Vec<Uuid> = chunk.iter().map(|d| Uuid(d.1.event)).collect();
        let subs: Vec<Uuid> = chunk.iter().map(|d| Uuid(d.1.subscription)).collect();
        let states: Vec<i16> = chunk.iter().map(|d| i16::from(d.1.state.code())).collect();
        let attempts: Vec<i32> = chunk.iter().map(|d| d.1.attempts as i32).collect();
        let next: Vec<Option<i64>> = chunk
            .iter()
            .map(|d| d.1.next_attempt_ms.map(|t| t as i64))
            .collect();
        let status: Vec<Option<i32>> = chunk
            .iter()
            .map(|d| d.1.last_status.map(i32::from))
            .collect();
        let errors: Vec<Option<&str>> = chunk.iter().map(|d| d.1.last_error.as_deref()).collect();
        let created: Vec<i64> = chunk.iter().map(|d| d.1.created_ms as i64).collect();
        let updated: Vec<i64> = chunk.iter().map(|d| d.1.updated_ms as i64).collect();
        let parked: Vec<bool> = chunk.iter().map(|d| d.1.parked).collect();
        let once: Vec<bool> = chunk.iter().map(|d| d.1.retry_once).collect();
        run(
            tx,
            "INSERT INTO deliveries (id, event, subscription, state, attempts, next_attempt_ms,
                 last_status, last_error, created_ms, updated_ms, parked, retry_once)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::smallint[],
                 $5::integer[], $6::bigint[], $7::integer[], $8::text[], $9::bigint[],
                 $10::bigint[], $11::boolean[], $12::boolean[])",
            &[
                &ids, &events, &subs, &states, &attempts, &next, &status, &errors, &created,
                &updated, &parked, &once,
            ],
        )
        .await?;
    }
}

async fn attempts(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let chunk = source.attempts(after)?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        after = Some(last.0);
        let deliveries: Vec<Uuid> = chunk.iter().map(|a| Uuid(a.0.0)).collect();
        let numbers: Vec<i32> = chunk.iter().map(|a| a.0.1 as i32).collect();
        let records: Vec<&[u8]> = chunk.iter().map(|a| a.1.as_slice()).collect();
        let requests: Vec<Option<&[u8]>> = chunk.iter().map(|a| a.2.as_deref()).collect();
        run(
            tx,
            "INSERT INTO attempts (delivery, n, record, request)
             SELECT * FROM unnest($1::uuid[], $2::integer[], $3::bytea[], $4::bytea[])",
            &[&deliveries, &numbers, &records, &requests],
        )
        .await?;
    }
}

async fn stats(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let chunk = source.attempt_stats(after)?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        after = Some(last.0);
        let scales: Vec<i16> = chunk.iter().map(|s| i16::from(s.0.0)).collect();
        let periods: Vec<i32> = chunk.iter().map(|s| s.0.1 as i32).collect();
        let subs: Vec<Uuid> = chunk.iter().map(|s| Uuid(s.0.2)).collect();
        let attempts: Vec<i32> = chunk.iter().map(|s| s.1.attempts as i32).collect();
        let succeeded: Vec<i32> = chunk.iter().map(|s| s.1.succeeded as i32).collect();
        // A row's histogram as an array literal: unnest cannot take an array of arrays.
        let latency: Vec<String> = chunk
            .iter()
            .map(|s| {
                let counts: Vec<String> = s.1.latency().iter().map(u32::to_string).collect();
                format!("{{{}}}", counts.join(","))
            })
            .collect();
        run(
            tx,
            "INSERT INTO attempt_stats (scale, period, subscription, attempts, succeeded, latency)
             SELECT s, p, sub, a, ok, l::integer[] FROM unnest($1::smallint[], $2::integer[],
                 $3::uuid[], $4::integer[], $5::integer[], $6::text[]) AS t(s, p, sub, a, ok, l)",
            &[&scales, &periods, &subs, &attempts, &succeeded, &latency],
        )
        .await?;
    }
}

async fn idempotency(tx: &Transaction<'_>, source: &RedbSource) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let chunk = source.idempotency(after)?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        after = Some(last.0);
        let keys: Vec<&[u8]> = chunk.iter().map(|i| i.0.as_slice()).collect();
        let created: Vec<i64> = chunk.iter().map(|i| i.1.created_ms as i64).collect();
        let events: Vec<Uuid> = chunk.iter().map(|i| Uuid(i.1.event)).collect();
        let counts: Vec<i32> = chunk.iter().map(|i| i.1.deliveries as i32).collect();
        let bodies: Vec<&[u8]> = chunk.iter().map(|i| i.1.body_sha256.as_slice()).collect();
        run(
            tx,
            "INSERT INTO idempotency (key_sha256, created_ms, event, deliveries, body_sha256)
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::uuid[], $4::integer[],
                 $5::bytea[])",
            &[&keys, &created, &events, &counts, &bodies],
        )
        .await?;
    }
}
