//! Records to and from columns: a delivery is all columns (read and written by the
//! writer and the reads alike through `DELIVERY_COLUMNS`), times are Unix ms in
//! `bigint`, counts `integer`, a delivery's state its `DeliveryState::code`.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use super::PostgresError;
use super::types::Uuid;
use crate::store::error::StoreError;
use crate::store::records::{DeliveryRecord, DeliveryState};
use crate::store::stats::{AttemptCounters, LATENCY_BOUNDS_MS};

/// Latency buckets of an `attempt_stats` row: one per bound, then the slower rest.
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// A delivery's columns in the order `delivery` reads them, from its `event` on.
pub const DELIVERY_COLUMNS: &str = "event, subscription, state, attempts, next_attempt_ms, \
     last_status, last_error, created_ms, updated_ms, parked, retry_once";

/// Column `at` of `row`.
pub fn col<'a, T: FromSql<'a>>(row: &'a Row, at: usize) -> Result<T, PostgresError> {
    Ok(row.try_get(at)?)
}

/// Unix ms as `bigint`. Times are far below `i64::MAX`; a larger one (a "never" some
/// test may use) saturates rather than wrapping into the past.
pub fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `bigint` time back to Unix ms (the database never holds a negative one).
pub fn from_ms(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A count as `integer` (saturating: a count past 2^31 does not happen in practice).
pub fn count(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub fn state_code(state: DeliveryState) -> i16 {
    i16::from(state.code())
}

pub fn state_of(code: i16) -> Result<DeliveryState, PostgresError> {
    const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Retrying,
        DeliveryState::Succeeded,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
    ];
    ALL.into_iter()
        .find(|state| i16::from(state.code()) == code)
        .ok_or_else(|| PostgresError::Column(format!("delivery state code {code}")))
}

/// The delivery in `row`, whose columns from `at` on are `DELIVERY_COLUMNS`.
pub fn delivery(row: &Row, at: usize) -> Result<DeliveryRecord, PostgresError> {
    let status: Option<i32> = row.try_get(at + 5)?;
    let last_status = status
        .map(|s| u16::try_from(s).map_err(|_| PostgresError::Column(format!("HTTP status {s}"))))
        .transpose()?;
    let attempts: i32 = row.try_get(at + 3)?;
    Ok(DeliveryRecord {
        event: row.try_get::<_, Uuid>(at)?.0,
        subscription: row.try_get::<_, Uuid>(at + 1)?.0,
        state: state_of(row.try_get(at + 2)?)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_ms: row.try_get::<_, Option<i64>>(at + 4)?.map(from_ms),
        last_status,
        last_error: row.try_get(at + 6)?,
        created_ms: from_ms(row.try_get(at + 7)?),
        updated_ms: from_ms(row.try_get(at + 8)?),
        parked: row.try_get(at + 9)?,
        retry_once: row.try_get(at + 10)?,
    })
}

/// The latency buckets of `counters`, read from the row encoding `stats` defines (a
/// format byte, attempts, successes, then each bucket, as u32 LE): the one place the
/// buckets leave their type.
pub fn buckets(counters: &AttemptCounters) -> [u32; BUCKETS] {
    let row = counters.encode();
    let mut buckets = [0; BUCKETS];
    for (bucket, bytes) in buckets.iter_mut().zip(row[9..].chunks_exact(4)) {
        *bucket = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    buckets
}

/// Counters from an `attempt_stats` row's columns, through the same encoding.
pub fn counters(
    attempts: i32,
    succeeded: i32,
    latency: &[i32],
) -> Result<AttemptCounters, StoreError> {
    let mut row = vec![AttemptCounters::default().encode()[0]];
    let values = [attempts, succeeded]
        .into_iter()
        .chain(latency.iter().copied());
    for value in values {
        row.extend_from_slice(&u32::try_from(value).unwrap_or(0).to_le_bytes());
    }
    AttemptCounters::decode(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_round_trip_and_unknown_ones_are_refused() {
        for state in [
            DeliveryState::Pending,
            DeliveryState::Retrying,
            DeliveryState::Succeeded,
            DeliveryState::Failed,
            DeliveryState::Cancelled,
        ] {
            assert_eq!(state_of(state_code(state)).unwrap(), state);
        }
        assert!(state_of(5).is_err());
        assert_eq!(ms(u64::MAX), i64::MAX);
        assert_eq!(from_ms(-1), 0);
    }

    #[test]
    fn counters_round_trip_through_their_columns() {
        let mut original = AttemptCounters::default();
        original.record(true, 3);
        original.record(false, 40_000);
        let buckets = buckets(&original);
        assert_eq!(buckets.iter().sum::<u32>(), 2);
        assert_eq!(buckets[BUCKETS - 1], 1);
        let latency: Vec<i32> = buckets.iter().map(|&b| b as i32).collect();
        assert_eq!(counters(2, 1, &latency).unwrap(), original);
        assert!(
            counters(2, 1, &latency[1..]).is_err(),
            "a short row is refused"
        );
    }
}
