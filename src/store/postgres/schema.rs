//! The PostgreSQL schema as ordered migrations, and applying them at start.
//!
//! Applying: one transaction takes `pg_advisory_xact_lock(MIGRATION_LOCK)`, reads
//! `hookd_meta.schema_version` (0 for an empty database), refuses a version newer than
//! `MIGRATIONS` knows, runs each newer migration and records the version, then commits.
//! Nodes starting together queue on the lock, so each migration runs exactly once, and
//! DDL being transactional in PostgreSQL, a failed migration leaves nothing behind.
//! Migrations use plain `CREATE` (no `IF NOT EXISTS`): running one twice is an error,
//! never a silent no-op. A released entry is never edited; a change is a new entry.
//!
//! The data model is the redb backend's (`store::records` and redb's table list), with
//! two rules for what becomes a column:
//! - A record the API only ever reads whole stays one `bytea`, in the postcard encoding
//!   with its version byte that `store::codec` writes for redb: subscriptions, API keys
//!   and attempts (`record`, and `request` for the headers it sent). One codec, one set
//!   of record versions, and `hookd store copy` moves those bytes as they are.
//! - Anything filtered, ordered, joined or updated in place is a real column: event
//!   type, a delivery's state and due time, counters, idempotency times, ownership.
//!   Deliveries are all columns: every outcome updates them in place, by `id`, fenced by
//!   their partition's epoch.
//!
//! Ids are `uuid` (their u128, big-endian: `uuid` compares as bytes, so order by id is
//! order of creation, as in redb). Times of data are Unix milliseconds (`bigint`, as
//! in the records and the API); times of coordination between nodes (`lease_until`,
//! `heartbeat`, session and link expiry) are `timestamptz` set and compared with the
//! database's `now()` only, so nodes' clocks never have to agree.
//!
//! Tables:
//! - `hookd_meta`: store-wide facts (`schema_version`); made before the migrations.
//! - `events`: the append log. `seq` numbers rows as they are inserted (an order
//!   independent of the nodes' clocks, which the UUIDv7 ids carry), for reading the log
//!   in batches as it grows; it is not commit order. `body` is the exact JSON every
//!   delivery signs. The (event type, id) index serves lists filtered by type.
//!   Retention walks the primary key: UUIDv7 ids are time-ordered.
//! - `subscriptions`: `record` whole, plus `entity` (an entity with subscriptions cannot
//!   be deleted: a foreign key closes the race between two nodes) and `revision`, raised
//!   by every write, for compare-and-set between nodes editing the same subscription.
//! - `subscription_health`: latest success and start of the current failing streak
//!   (`delivery.disable_after`), updated in place by outcomes without touching `record`
//!   (redb's two health tables, as one row).
//! - `deliveries`: one event for one subscription. `next_attempt_ms` is set exactly while
//!   it is due (not final, or final with a manual retry pending; checked): the due queue
//!   is the two partial indexes on it, by subscription (a window of one subscription's
//!   queue after (due ms, id)) and by partition (the due work of the partitions a node
//!   owns, earliest first, with the subscription included for index-only scans).
//!   `partition` is computed from the subscription id by the database itself, the same
//!   function as `partition_of`. Lists: by event, by subscription, by subscription and
//!   state. Every update rewrites these indexes (state and due time are in them, so no
//!   HOT update): the price of answering each of those reads from an index.
//! - `attempts`: (delivery, n) -> `record`, `request` (NULL for attempts from before
//!   request headers were kept). Deleted with their delivery, deliveries with their event.
//! - `attempt_stats`: counters per (scale, period, subscription), added to in place with
//!   `INSERT ... ON CONFLICT DO UPDATE`, so two nodes' additions never overwrite.
//! - `idempotency`: key hash -> event, body hash, time; the primary key makes a key
//!   cluster-wide (a second node's insert conflicts), the time index serves the purge.
//! - `entities`: the tree as columns, its root made by the first migration; `parent` is
//!   a foreign key, as are the entity of a subscription and of an API key, so a delete
//!   in use fails in the database too. Events and deliveries have no such keys: a
//!   deleted subscription's deliveries stay (CANCELLED) as history.
//! - `api_keys`: the key's SHA-256 (unique) and `record`; the key itself is never stored.
//! - `partitions`: `PARTITIONS` rows made here; `owner` (a node or NULL), `epoch` (raised
//!   at every change of owner; outcome writes check it) and `lease_until`.
//! - `nodes`: name and heartbeat, to size fair shares and find dead owners; deleting a
//!   node frees its partitions (`owner` becomes NULL, which fences its writes).
//! - `console_sessions`, `portal_links`: shared so that any node serves a session and a
//!   link opens once cluster-wide (a `DELETE ... RETURNING` takes it). Keyed by the
//!   SHA-256 of the token; the credential is the API key's SHA-256, NULL for the admin
//!   token; the expiry index serves the purge.

use tokio_postgres::Client;

use super::PostgresError;

/// `pg_advisory_xact_lock` key of the migration: "hookd" in ASCII, then 1. Any other
/// advisory lock hookd takes uses another last byte.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6401;
/// A migration rewriting a large table may run for minutes, and the nodes that queue
/// behind it wait as long; longer than this, something is stuck.
const MIGRATION_TIMEOUT_MS: u32 = 15 * 60 * 1000;
/// `server_version_num` of PostgreSQL 12, the oldest with generated columns.
const MIN_SERVER_VERSION: i32 = 120_000;

/// Subscriptions hash into this many partitions, the unit of work nodes own. Fixed in the
/// schema (the `partitions` rows and the `deliveries.partition` expression).
pub const PARTITIONS: i16 = 256;

/// The partition of a subscription: the last byte of its id (random in a UUIDv7), as the
/// database computes `deliveries.partition`.
pub fn partition_of(subscription: u128) -> i16 {
    (subscription & 0xff) as i16
}

const META: &str = "CREATE TABLE IF NOT EXISTS hookd_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
)";

/// Every migration, in order: (the schema version it brings, its SQL).
pub const MIGRATIONS: &[(i64, &str)] = &[(1, V1)];

const V1: &str = "
CREATE TABLE events (
    id         uuid PRIMARY KEY,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    entity     text NOT NULL,
    event_type text NOT NULL,
    created_ms bigint NOT NULL,
    body       bytea NOT NULL
);
CREATE UNIQUE INDEX events_by_seq ON events (seq);
CREATE INDEX events_by_type ON events (event_type, id);

CREATE TABLE entities (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    parent     text REFERENCES entities (id),
    created_ms bigint NOT NULL
);
CREATE INDEX entities_by_parent ON entities (parent);
-- The root of the tree, as the redb backend makes it with a new store.
INSERT INTO entities (id, name, parent, created_ms)
    VALUES ('root', 'root', NULL, (extract(epoch FROM now()) * 1000)::bigint);

CREATE TABLE subscriptions (
    id       uuid PRIMARY KEY,
    entity   text NOT NULL REFERENCES entities (id),
    revision bigint NOT NULL DEFAULT 1,
    record   bytea NOT NULL
);
CREATE INDEX subscriptions_by_entity ON subscriptions (entity);

CREATE TABLE subscription_health (
    subscription     uuid PRIMARY KEY,
    last_success_ms  bigint,
    failing_since_ms bigint
);

-- state: DeliveryState::code (0 pending, 1 retrying, 2 succeeded, 3 failed, 4 cancelled).
CREATE TABLE deliveries (
    id              uuid PRIMARY KEY,
    event           uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription    uuid NOT NULL,
    partition       smallint NOT NULL
                    GENERATED ALWAYS AS (get_byte(uuid_send(subscription), 15)::smallint) STORED,
    state           smallint NOT NULL CHECK (state BETWEEN 0 AND 4),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_ms bigint,
    last_status     integer,
    last_error      text,
    created_ms      bigint NOT NULL,
    updated_ms      bigint NOT NULL,
    parked          boolean NOT NULL DEFAULT false,
    retry_once      boolean NOT NULL DEFAULT false,
    CONSTRAINT deliveries_unfinished_are_due
        CHECK (state >= 2 OR next_attempt_ms IS NOT NULL),
    CONSTRAINT deliveries_finished_are_due_only_for_a_retry
        CHECK (state < 2 OR next_attempt_ms IS NULL OR retry_once)
);
CREATE INDEX deliveries_due_by_subscription ON deliveries (subscription, next_attempt_ms, id)
    WHERE next_attempt_ms IS NOT NULL;
CREATE INDEX deliveries_due_by_partition ON deliveries (partition, next_attempt_ms)
    INCLUDE (subscription) WHERE next_attempt_ms IS NOT NULL;
CREATE INDEX deliveries_by_event ON deliveries (event, id);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription, id);
CREATE INDEX deliveries_by_subscription_state ON deliveries (subscription, state, id);

CREATE TABLE attempts (
    delivery uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    n        integer NOT NULL CHECK (n >= 1),
    record   bytea NOT NULL,
    request  bytea,
    PRIMARY KEY (delivery, n)
);

-- scale: 0 minute, 1 hour; period: Unix ms / the scale's length; latency: one count per
-- stats::LATENCY_BOUNDS_MS bucket, then the slower rest.
CREATE TABLE attempt_stats (
    scale        smallint NOT NULL,
    period       integer NOT NULL,
    subscription uuid NOT NULL,
    attempts     integer NOT NULL,
    succeeded    integer NOT NULL,
    latency      integer[] NOT NULL,
    PRIMARY KEY (scale, period, subscription)
);

-- key_sha256: SHA-256(entity id, 0, Idempotency-Key).
CREATE TABLE idempotency (
    key_sha256  bytea PRIMARY KEY,
    created_ms  bigint NOT NULL,
    event       uuid NOT NULL,
    deliveries  integer NOT NULL,
    body_sha256 bytea NOT NULL
);
CREATE INDEX idempotency_by_time ON idempotency (created_ms);

CREATE TABLE api_keys (
    id     uuid PRIMARY KEY,
    sha256 bytea NOT NULL UNIQUE,
    entity text NOT NULL REFERENCES entities (id),
    record bytea NOT NULL
);
CREATE INDEX api_keys_by_entity ON api_keys (entity);

CREATE TABLE nodes (
    name      text PRIMARY KEY,
    started   timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE partitions (
    partition   smallint PRIMARY KEY CHECK (partition >= 0 AND partition < 256),
    owner       text REFERENCES nodes (name) ON DELETE SET NULL,
    epoch       bigint NOT NULL DEFAULT 0,
    lease_until timestamptz
);
INSERT INTO partitions (partition) SELECT generate_series(0, 255);

-- A console session and a portal link are named by the SHA-256 of their token; the
-- token itself is never stored. key_sha256: the API key that opened it, NULL for the
-- admin token.
CREATE TABLE console_sessions (
    token_sha256       bytea PRIMARY KEY,
    key_sha256         bytea,
    portal_entity      text,
    portal_permissions text[],
    csrf               text NOT NULL,
    notice             text,
    expires            timestamptz NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires);

CREATE TABLE portal_links (
    token_sha256 bytea PRIMARY KEY,
    key_sha256   bytea,
    entity       text NOT NULL,
    permissions  text[] NOT NULL,
    expires      timestamptz NOT NULL
);
CREATE INDEX portal_links_by_expiry ON portal_links (expires);
";

/// The schema version before and after `migrate` (equal when it had nothing to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// The newest schema version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Brings the database to the latest schema (see the module comment). A database at a
/// newer version than this build knows is refused and left untouched.
pub async fn migrate(client: &mut Client) -> Result<Migrated, PostgresError> {
    let row = client.query_one("SHOW server_version_num", &[]).await?;
    let found: String = row.get(0);
    if !found.parse::<i32>().is_ok_and(|n| n >= MIN_SERVER_VERSION) {
        let row = client.query_one("SHOW server_version", &[]).await?;
        return Err(PostgresError::ServerTooOld { found: row.get(0) });
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {MIGRATION_TIMEOUT_MS}"
    ))
    .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(META).await?;
    let from = match tx
        .query_opt(
            "SELECT value FROM hookd_meta WHERE key = 'schema_version'",
            &[],
        )
        .await?
    {
        None => 0,
        Some(row) => {
            let text: String = row.get(0);
            text.parse()
                .map_err(|_| PostgresError::SchemaVersion(text))?
        }
    };
    let known = latest();
    if from > known {
        return Err(PostgresError::SchemaTooNew { found: from, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > from) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO hookd_meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&version.to_string()],
        )
        .await?;
        tracing::info!(version, "database schema migrated");
    }
    tx.commit().await?;
    Ok(Migrated { from, to: known })
}
