//! Every redb table hookd uses, in one place. A name carries its version: a change to a
//! key or value layout is a new name plus a migration in `migrate.rs`, never an edit here.
//! Ids are the `u128` of their UUIDv7, so ordering by key is ordering by creation time.

use redb::TableDefinition;

/// Event log: event id -> `EventRecord` (with the rendered body every delivery sends).
pub const EVENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("events_v1");
/// subscription id -> `SubscriptionRecord` (secrets sealed).
pub const SUBSCRIPTIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("subscriptions_v1");
/// delivery id -> `DeliveryRecord`: one event bound for one subscription.
pub const DELIVERIES: TableDefinition<u128, &[u8]> = TableDefinition::new("deliveries_v1");
/// (event id, delivery id): the deliveries of an event.
pub const EVENT_DELIVERIES: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("event_deliveries_v1");
/// (subscription id, delivery id): the deliveries of a subscription.
pub const SUBSCRIPTION_DELIVERIES: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("subscription_deliveries_v1");
/// (event type, event id): the events of each type, newest last, so a list filtered by
/// type reads only that type's events.
pub const EVENT_TYPES: TableDefinition<(&str, u128), ()> = TableDefinition::new("event_types_v1");
/// (subscription id, delivery state code, delivery id): a subscription's deliveries by
/// state (`DeliveryState::code`), so a list filtered by state reads only those.
pub const SUBSCRIPTION_STATES: TableDefinition<(u128, u8, u128), ()> =
    TableDefinition::new("subscription_states_v1");
/// (delivery id, attempt number from 1) -> `AttemptRecord`.
pub const ATTEMPTS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("attempts_v1");
/// The due queue: (subscription id, due time in Unix ms, delivery id). A delivery is in
/// here exactly while it is not final, whatever its subscription's status. Keyed by
/// subscription first, so one subscription's work is one range: the dispatcher reads a
/// window of it at a time, and pausing, resuming or deleting costs that subscription's
/// own entries, never a walk of the whole queue.
pub const DUE: TableDefinition<(u128, u64, u128), ()> = TableDefinition::new("due_v2");
/// Schema 1's due queue, (due time, delivery) -> subscription: read once by the
/// migration to schema 2, then deleted.
pub const DUE_V1: TableDefinition<(u64, u128), u128> = TableDefinition::new("due_v1");
/// subscription id -> Unix ms of its latest successful attempt (for
/// `delivery.disable_after`); kept apart so a success does not rewrite the subscription.
pub const HEALTH: TableDefinition<u128, u64> = TableDefinition::new("subscription_health_v1");
/// subscription id -> Unix ms of its first failed attempt since its latest success,
/// creation or re-activation (for `delivery.disable_after`: continuous failure). Absent
/// while the endpoint is not failing.
pub const FAILING: TableDefinition<u128, u64> = TableDefinition::new("subscription_failing_v1");
/// SHA-256(entity id, 0, Idempotency-Key) -> `IdempotencyRecord`.
pub const IDEMPOTENCY: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("idempotency_v1");
/// entity id -> `EntityRecord`.
pub const ENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entities_v1");
/// key id -> `ApiKeyRecord` (only the SHA-256 of the key).
pub const API_KEYS: TableDefinition<u128, &[u8]> = TableDefinition::new("api_keys_v1");
/// Store-wide facts, such as `schema_version`.
/// The request headers of an attempt, secrets masked: (delivery, attempt number) ->
/// `AttemptRequest`.
pub const ATTEMPT_REQUESTS: TableDefinition<(u128, u32), &[u8]> =
    TableDefinition::new("attempt_requests_v1");
/// Idempotency records by time: (created ms, key hash) -> (), so retention finds the
/// expired ones without walking every record.
pub const IDEMPOTENCY_TIMES: TableDefinition<(u64, [u8; 32]), ()> =
    TableDefinition::new("idempotency_times_v1");
/// Attempt counters: (scale, period, subscription) -> `stats::AttemptCounters` row.
pub const ATTEMPT_STATS: TableDefinition<(u8, u32, u128), &[u8]> =
    TableDefinition::new("attempt_stats_v1");
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
