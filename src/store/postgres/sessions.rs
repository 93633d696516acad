//! Console sessions and portal links in PostgreSQL (`console_sessions`, `portal_links`;
//! the contract is `store::sessions`), so that a session opened on one node is served
//! by every other, closing it ends it everywhere, and a link opens once cluster-wide.
//!
//! Each operation is one statement on a pooled connection, never the writer's batch: a
//! session is read on every console request, by its primary key. Expiry is set and
//! compared with the database's `now()` only, so nodes' clocks never have to agree.
//! - Redeeming is `DELETE ... RETURNING`: of two nodes deleting the same row, the
//!   second waits for the first to commit and then finds nothing.
//! - Taking a notice locks the row in a subquery (`FOR UPDATE`) and returns the value it
//!   locked while setting it to NULL: of concurrent takers, one gets it.
//! - Opening or creating makes room first in the same statement: when `limit` rows are
//!   held, those ending soonest (expired ones first) are deleted. Finding them walks the
//!   expiry index over at most `limit` rows; sign-ins and links are rare next to reads.
//!   Two nodes opening at the same moment may each see room for one: a table can pass
//!   its limit by the number of sign-ins in flight, never grow without end.
//! - Expired rows are never served and go in the retention pass (`purge_expired`,
//!   called from `purge.rs`): one node at a time, at most a step's `limit` per pass.
//!   Between passes the limit above bounds them.

use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PostgresError;
use super::rows::col;
use super::store::PgStore;
use crate::store::StoreError;
use crate::store::sessions::{LinkRecord, MAX_LIFE, PortalScope, SessionRecord, TokenHash};

/// The milliseconds a row has left, as of the statement's `now()`.
const LEFT_MS: &str = "(extract(epoch FROM expires - now()) * 1000)::bigint";

impl PgStore {
    /// Runs one statement (prepared once per connection) on a pooled connection.
    async fn session_rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.get().await.map_err(PostgresError::from)?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(PostgresError::from)?;
        Ok(client
            .query(&statement, params)
            .await
            .map_err(PostgresError::from)?)
    }

    pub async fn open_session(
        &self,
        token: TokenHash,
        record: SessionRecord,
        limit: usize,
    ) -> Result<(), StoreError> {
        let (entity, permissions) = match record.portal {
            Some(scope) => (Some(scope.entity), Some(scope.permissions)),
            None => (None, None),
        };
        self.session_rows(
            "WITH room AS (
                 DELETE FROM console_sessions WHERE token_sha256 IN (
                     SELECT token_sha256 FROM console_sessions
                     ORDER BY expires DESC OFFSET $7))
             INSERT INTO console_sessions
                 (token_sha256, key_sha256, portal_entity, portal_permissions, csrf, expires)
             VALUES ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 millisecond')",
            &[
                &token.0.as_slice(),
                &record.key_sha256.as_ref().map(<[u8; 32]>::as_slice),
                &entity,
                &permissions,
                &record.csrf,
                &life_ms(record.expires_in),
                &room_for(limit),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn session(&self, token: TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let sql = format!(
            "SELECT key_sha256, portal_entity, portal_permissions, csrf, notice, {LEFT_MS}
             FROM console_sessions WHERE token_sha256 = $1 AND expires > now()"
        );
        let rows = self.session_rows(&sql, &[&token.0.as_slice()]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let portal = col::<Option<String>>(row, 1)?.map(|entity| {
            Ok::<_, PostgresError>(PortalScope {
                entity,
                permissions: col::<Option<Vec<String>>>(row, 2)?.unwrap_or_default(),
            })
        });
        Ok(Some(SessionRecord {
            key_sha256: key_hash(col(row, 0)?)?,
            portal: portal.transpose()?,
            csrf: col(row, 3)?,
            notice: col(row, 4)?,
            expires_in: left(col(row, 5)?),
        }))
    }

    pub async fn close_session(&self, token: TokenHash) -> Result<(), StoreError> {
        self.session_rows(
            "DELETE FROM console_sessions WHERE token_sha256 = $1",
            &[&token.0.as_slice()],
        )
        .await?;
        Ok(())
    }

    pub async fn set_notice(&self, token: TokenHash, notice: String) -> Result<(), StoreError> {
        self.session_rows(
            "UPDATE console_sessions SET notice = $2 WHERE token_sha256 = $1 AND expires > now()",
            &[&token.0.as_slice(), &notice],
        )
        .await?;
        Ok(())
    }

    pub async fn take_notice(&self, token: TokenHash) -> Result<Option<String>, StoreError> {
        let rows = self
            .session_rows(
                "UPDATE console_sessions AS s SET notice = NULL
                 FROM (SELECT token_sha256, notice FROM console_sessions
                       WHERE token_sha256 = $1 AND notice IS NOT NULL AND expires > now()
                       FOR UPDATE) AS taken
                 WHERE s.token_sha256 = taken.token_sha256
                 RETURNING taken.notice",
                &[&token.0.as_slice()],
            )
            .await?;
        Ok(rows.first().map(|row| col(row, 0)).transpose()?)
    }

    pub async fn create_link(
        &self,
        token: TokenHash,
        record: LinkRecord,
        limit: usize,
    ) -> Result<(), StoreError> {
        self.session_rows(
            "WITH room AS (
                 DELETE FROM portal_links WHERE token_sha256 IN (
                     SELECT token_sha256 FROM portal_links
                     ORDER BY expires DESC OFFSET $6))
             INSERT INTO portal_links (token_sha256, key_sha256, entity, permissions, expires)
             VALUES ($1, $2, $3, $4, now() + $5::bigint * interval '1 millisecond')",
            &[
                &token.0.as_slice(),
                &record.key_sha256.as_ref().map(<[u8; 32]>::as_slice),
                &record.scope.entity,
                &record.scope.permissions,
                &life_ms(record.expires_in),
                &room_for(limit),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn redeem_link(&self, token: TokenHash) -> Result<Option<LinkRecord>, StoreError> {
        // An expired link is deleted too, and refused below.
        let sql = format!(
            "DELETE FROM portal_links WHERE token_sha256 = $1
             RETURNING key_sha256, entity, permissions, {LEFT_MS}"
        );
        let rows = self.session_rows(&sql, &[&token.0.as_slice()]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let left_ms: i64 = col(row, 3)?;
        if left_ms <= 0 {
            return Ok(None);
        }
        Ok(Some(LinkRecord {
            key_sha256: key_hash(col(row, 0)?)?,
            scope: PortalScope {
                entity: col(row, 1)?,
                permissions: col(row, 2)?,
            },
            expires_in: left(left_ms),
        }))
    }

    pub async fn link_waiting(&self, token: TokenHash) -> Result<bool, StoreError> {
        let rows = self
            .session_rows(
                "SELECT 1 FROM portal_links WHERE token_sha256 = $1 AND expires > now()",
                &[&token.0.as_slice()],
            )
            .await?;
        Ok(!rows.is_empty())
    }
}

/// Deletes up to `limit` expired sessions and as many expired links, oldest first, in
/// the retention step's transaction; returns how many rows went.
pub(super) async fn purge_expired(tx: &Transaction<'_>, limit: i64) -> Result<u64, StoreError> {
    let mut removed = 0;
    for table in ["console_sessions", "portal_links"] {
        removed += tx
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE token_sha256 IN (
                         SELECT token_sha256 FROM {table} WHERE expires <= now()
                         ORDER BY expires LIMIT $1)"
                ),
                &[&limit],
            )
            .await
            .map_err(PostgresError::from)?;
    }
    Ok(removed)
}

/// A life in milliseconds, at most `MAX_LIFE` (so `now() + it` stays a timestamp).
fn life_ms(life: Duration) -> i64 {
    i64::try_from(life.min(MAX_LIFE).as_millis()).unwrap_or(i64::MAX)
}

/// The `OFFSET` past which rows go to make room for one more within `limit`.
fn room_for(limit: usize) -> i64 {
    i64::try_from(limit.saturating_sub(1)).unwrap_or(i64::MAX)
}

fn left(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A `key_sha256` column: NULL for the admin token, else 32 bytes.
fn key_hash(column: Option<Vec<u8>>) -> Result<Option<[u8; 32]>, PostgresError> {
    column
        .map(|bytes| {
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| PostgresError::Column(format!("a key hash of {} bytes", bytes.len())))
        })
        .transpose()
}
