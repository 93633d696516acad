//! Every redb table hookd uses, in one place: the `tables!` list below makes each table's
//! definition, the `Tables` the writer opens per batch, and `visit_all`, which schema
//! creation and backup walk, so a table added here is created, written and backed up
//! with no other list to update. A name carries its version: a change to a key or value
//! layout is a new name plus a migration in `migrate.rs`, never an edit here. Ids are the
//! `u128` of their UUIDv7, so ordering by key is ordering by creation time.

use redb::{Key, TableDefinition, Value, WriteTransaction};

use crate::store::error::StoreError;

/// Something done to every table of the schema (`visit_all`).
pub(super) trait Visit {
    fn visit<K: Key + 'static, V: Value + 'static>(
        &mut self,
        table: TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError>;
}

macro_rules! tables {
    ($($(#[$doc:meta])* $name:ident, $field:ident: $key:ty => $value:ty = $table:literal;)*) => {
        $($(#[$doc])* pub const $name: TableDefinition<$key, $value> = TableDefinition::new($table);)*

        /// Every table, opened once per write transaction. (`meta` is written only by
        /// migrations and the writer's reopen probe, so it goes unread here.)
        #[allow(dead_code)]
        pub(super) struct Tables<'t> {
            $(pub $field: redb::Table<'t, $key, $value>,)*
        }

        impl<'t> Tables<'t> {
            pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
                Ok(Self { $($field: txn.open_table($name)?,)* })
            }
        }

        /// Calls `visitor` with every table of the current schema.
        pub(super) fn visit_all(visitor: &mut impl Visit) -> Result<(), StoreError> {
            $(visitor.visit($name)?;)*
            Ok(())
        }
    };
}

tables! {
    /// Event log: event id -> `EventRecord` (with the rendered body every delivery sends).
    EVENTS, events: u128 => &'static [u8] = "events_v1";
    /// subscription id -> `SubscriptionRecord` (secrets sealed).
    SUBSCRIPTIONS, subscriptions: u128 => &'static [u8] = "subscriptions_v1";
    /// delivery id -> `DeliveryRecord`: one event bound for one subscription.
    DELIVERIES, deliveries: u128 => &'static [u8] = "deliveries_v1";
    /// (event id, delivery id): the deliveries of an event.
    EVENT_DELIVERIES, event_deliveries: (u128, u128) => () = "event_deliveries_v1";
    /// (subscription id, delivery id): the deliveries of a subscription.
    SUBSCRIPTION_DELIVERIES, subscription_deliveries: (u128, u128) => () = "subscription_deliveries_v1";
    /// (event type, event id): the events of each type, newest last, so a list filtered by
    /// type reads only that type's events.
    EVENT_TYPES, event_types: (&'static str, u128) => () = "event_types_v1";
    /// (subscription id, delivery state code, delivery id): a subscription's deliveries by
    /// state (`DeliveryState::code`), so a list filtered by state reads only those.
    SUBSCRIPTION_STATES, subscription_states: (u128, u8, u128) => () = "subscription_states_v1";
    /// (delivery id, attempt number from 1) -> `AttemptRecord`.
    ATTEMPTS, attempts: (u128, u32) => &'static [u8] = "attempts_v1";
    /// The due queue: (subscription id, due time in Unix ms, delivery id). A delivery is in
    /// here exactly while it is not final, whatever its subscription's status. Keyed by
    /// subscription first, so one subscription's work is one range: the dispatcher reads a
    /// window of it at a time, and pausing, resuming or deleting costs that subscription's
    /// own entries, never a walk of the whole queue.
    DUE, due: (u128, u64, u128) => () = "due_v2";
    /// subscription id -> Unix ms of its latest successful attempt (for
    /// `delivery.disable_after`); kept apart so a success does not rewrite the subscription.
    HEALTH, health: u128 => u64 = "subscription_health_v1";
    /// subscription id -> Unix ms of its first failed attempt since its latest success,
    /// creation or re-activation (for `delivery.disable_after`: continuous failure). Absent
    /// while the endpoint is not failing.
    FAILING, failing: u128 => u64 = "subscription_failing_v1";
    /// SHA-256(entity id, 0, Idempotency-Key) -> `IdempotencyRecord`.
    IDEMPOTENCY, idempotency: &'static [u8; 32] => &'static [u8] = "idempotency_v1";
    /// entity id -> `EntityRecord`.
    ENTITIES, entities: &'static str => &'static [u8] = "entities_v1";
    /// key id -> `ApiKeyRecord` (only the SHA-256 of the key).
    API_KEYS, api_keys: u128 => &'static [u8] = "api_keys_v1";
    /// The request headers of an attempt, secrets masked: (delivery, attempt number) ->
    /// `AttemptRequest`.
    ATTEMPT_REQUESTS, attempt_requests: (u128, u32) => &'static [u8] = "attempt_requests_v1";
    /// Idempotency records by time: (created ms, key hash) -> (), so retention finds the
    /// expired ones without walking every record.
    IDEMPOTENCY_TIMES, idempotency_times: (u64, [u8; 32]) => () = "idempotency_times_v1";
    /// Attempt counters: (scale, period, subscription) -> `stats::AttemptCounters` row.
    ATTEMPT_STATS, attempt_stats: (u8, u32, u128) => &'static [u8] = "attempt_stats_v1";
    /// Store-wide facts, such as `schema_version`.
    META, meta: &'static str => &'static [u8] = "meta";
}

/// Schema 1's due queue, (due time, delivery) -> subscription: read once by the
/// migration to schema 2, then deleted.
pub const DUE_V1: TableDefinition<(u64, u128), u128> = TableDefinition::new("due_v1");
