//! `/v1/events`: accept one event or a batch (idempotently, atomically), list events,
//! and read one back with its deliveries. The body every subscriber receives is
//! rendered here, once, and stored; deliveries send those exact bytes.

use std::collections::HashMap;

use http::StatusCode;
use ring::digest::{SHA256, digest};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::validate;
use super::{ApiError, ApiResponse, AppState, Caller, Page, Request, data, read_body};
use crate::ids::{DeliveryId, EntityId, EventId};
use crate::store::records::EventRecord;
use crate::store::{IdempotencyKey, IngestOutcome, NewEvent};

/// One posted event. Fields are loosely typed so each can be checked with a message
/// that names it; `data` stays raw so the producer's JSON is passed on as sent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventInput {
    event_type: Option<Value>,
    entity_id: Option<Value>,
    data: Option<Box<RawValue>>,
    /// Only in a batch; a single event takes the `Idempotency-Key` header.
    idempotency_key: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchInput {
    events: Vec<Box<RawValue>>,
}

const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_BATCH_EVENTS: usize = 1000;

/// A key's first use in a batch.
struct FirstUse {
    /// Its event's place in what is stored.
    slot: usize,
    /// Its place in the batch.
    index: usize,
    body: [u8; 32],
}

/// Where a batch item's result comes from: its own event, or (`repeat`) an earlier
/// item's with the same key and body.
struct Slot {
    slot: usize,
    repeat: bool,
}

/// A validated event, ready to store.
struct Prepared {
    new: NewEvent,
    event_type: String,
    entity: EntityId,
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let key = request
        .headers()
        .get("idempotency-key")
        .map(|value| value.to_str().ok().map(str::to_owned));
    // The body before any answer: one sent with the body unread resets the connection.
    let body = read_body(
        request,
        state.config.server.max_body_bytes,
        "server.max_body_bytes",
    )
    .await?;
    let key = match key {
        None => None,
        Some(value) => Some(idempotency_key("Idempotency-Key", value.as_deref())?),
    };
    let input: EventInput = super::parse_json(&body)?;
    if input.idempotency_key.is_some() {
        return Err(ApiError::invalid(
            "idempotencyKey",
            "is for batch items; send the Idempotency-Key header instead",
        ));
    }
    let prepared = prepare(state, caller, "", input, key.as_deref(), &body).await?;
    let mut results = store(state, vec![prepared], None).await?;
    let (status, result) = results.pop().ok_or(ApiError::NotFound("event"))?;
    Ok(data(status, result))
}

pub async fn create_batch(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let body = read_body(
        request,
        state.config.server.max_batch_bytes,
        "server.max_batch_bytes",
    )
    .await?;
    let batch: BatchInput = super::parse_json(&body)?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::invalid("events", "must hold 1 to 1000 events"));
    }
    let limit = state.config.server.max_body_bytes;
    let mut keys: HashMap<String, FirstUse> = HashMap::new();
    let mut slots = Vec::with_capacity(batch.events.len());
    let mut prepared = Vec::with_capacity(batch.events.len());
    // The batch index of each item in `prepared`.
    let mut indexes = Vec::with_capacity(batch.events.len());
    // A key repeated with another body: answered once every item is validated.
    let mut conflict = None;
    for (i, raw) in batch.events.iter().enumerate() {
        let at = format!("events[{i}]");
        if raw.get().len() > limit {
            return Err(ApiError::invalid(
                at,
                format!("is larger than server.max_body_bytes ({limit})"),
            ));
        }
        let input: EventInput = serde_json::from_str(raw.get())
            .map_err(|e| ApiError::invalid(at.clone(), e.to_string()))?;
        let key = match &input.idempotency_key {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => {
                Some(idempotency_key(&format!("{at}.idempotencyKey"), Some(k))?)
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{at}.idempotencyKey"),
                    "must be a string",
                ));
            }
        };
        let event = prepare(
            state,
            caller,
            &at,
            input,
            key.as_deref(),
            raw.get().as_bytes(),
        )
        .await?;
        if let (Some(key), Some(idempotency)) = (key, &event.new.idempotency) {
            // The body's hash `prepare` took for the key's record.
            let body = idempotency.body_sha256;
            match keys.get(&key) {
                // The same key and body again: the same event, answered as a repeat.
                Some(first) if first.body == body => {
                    slots.push(Slot {
                        slot: first.slot,
                        repeat: true,
                    });
                    continue;
                }
                Some(first) => {
                    conflict.get_or_insert_with(|| {
                        ApiError::Conflict(format!(
                            "{at}.idempotencyKey repeats the key of events[{}] with a \
                             different body; nothing was stored",
                            first.index
                        ))
                    });
                    continue;
                }
                None => {
                    let slot = prepared.len();
                    keys.insert(
                        key,
                        FirstUse {
                            slot,
                            index: i,
                            body,
                        },
                    );
                }
            }
        }
        slots.push(Slot {
            slot: prepared.len(),
            repeat: false,
        });
        indexes.push(i);
        prepared.push(event);
    }
    if let Some(conflict) = conflict {
        return Err(conflict);
    }
    let results = store(state, prepared, Some(&indexes)).await?;
    let shown: Vec<Value> = slots
        .into_iter()
        .map(|Slot { slot, repeat }| {
            let (status, result) = &results[slot];
            let mut result = result.clone();
            // A repeated key answers the original event (200 alone would say so).
            if repeat || *status == StatusCode::OK {
                result["duplicate"] = Value::Bool(true);
            }
            result
        })
        .collect();
    Ok(data(StatusCode::ACCEPTED, shown))
}

/// Validates one event (fields named under `at`) and renders its body.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    at: &str,
    input: EventInput,
    key: Option<&str>,
    raw: &[u8],
) -> Result<Prepared, ApiError> {
    let field = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    let event_type = match &input.event_type {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ApiError::invalid(field("eventType"), "must be a string")),
        None => return Err(ApiError::invalid(field("eventType"), "is required")),
    };
    validate::event_type_name(&field("eventType"), event_type)?;
    if event_type.starts_with("hookd.") {
        return Err(ApiError::invalid(
            field("eventType"),
            "`hookd.` types are reserved for events hookd emits itself",
        ));
    }
    if !state.config.event_types.is_empty()
        && !state
            .config
            .event_types
            .iter()
            .any(|t| t.name == event_type)
    {
        return Err(ApiError::invalid(
            field("eventType"),
            "is not in the event-type catalog (GET /v1/event-types)",
        ));
    }
    let entity = match &input.entity_id {
        None | Some(Value::Null) => caller.entity.clone(),
        Some(Value::String(raw)) => super::subscriptions::visible_entity(caller, raw)?,
        Some(_) => return Err(ApiError::invalid(field("entityId"), "must be a string")),
    };
    let raw_data = input
        .data
        .as_deref()
        .ok_or_else(|| ApiError::invalid(field("data"), "is required (a JSON object)"))?;
    if !raw_data.get().trim_start().starts_with('{') {
        return Err(ApiError::invalid(field("data"), "must be a JSON object"));
    }
    check_json(raw_data.get()).map_err(|detail| ApiError::invalid(field("data"), detail))?;
    let id = EventId::generate();
    let created_ms = id.millis();
    Ok(Prepared {
        new: NewEvent {
            id: id.0,
            record: EventRecord {
                entity: entity.to_string(),
                event_type: event_type.to_owned(),
                created_ms,
                body: crate::payload::render(
                    id,
                    event_type,
                    entity.as_str(),
                    created_ms,
                    raw_data.get(),
                ),
            },
            idempotency: key.map(|key| IdempotencyKey {
                // Scoped to the caller, whatever entity the event is for (API.md).
                key_hash: scoped_key(&caller.entity, key),
                body_sha256: sha256(raw),
            }),
            targets: None,
        },
        event_type: event_type.to_owned(),
        entity,
    })
}

/// Stores prepared events in one commit; each result is 202 (new) or 200 (the
/// original answer to a repeated Idempotency-Key). Any key reused with another body
/// fails the whole request with 409 and stores nothing, naming the batch item
/// (`indexes`: each event's place in the batch) or, for a single event, the header.
async fn store(
    state: &AppState,
    prepared: Vec<Prepared>,
    indexes: Option<&[usize]>,
) -> Result<Vec<(StatusCode, Value)>, ApiError> {
    let mut shown = Vec::with_capacity(prepared.len());
    let mut events = Vec::with_capacity(prepared.len());
    for p in prepared {
        shown.push((EventId(p.new.id), p.event_type, p.entity));
        events.push(p.new);
    }
    let outcomes = state.store.ingest(events).await?;
    if let Some(i) = outcomes.iter().position(|o| *o == IngestOutcome::Conflict) {
        let which = match indexes {
            None => "this Idempotency-Key".to_owned(),
            Some(indexes) => format!("events[{}].idempotencyKey", indexes[i]),
        };
        return Err(ApiError::Conflict(format!(
            "{which} was used in the last 24 h with a different body; nothing was stored"
        )));
    }
    Ok(outcomes
        .into_iter()
        .zip(shown)
        .map(|(outcome, (id, event_type, entity))| match outcome {
            IngestOutcome::Duplicate { event, deliveries } => {
                let original = EventId(event);
                (
                    StatusCode::OK,
                    accepted(
                        original,
                        &event_type,
                        &entity,
                        original.millis(),
                        deliveries,
                    ),
                )
            }
            IngestOutcome::Accepted { deliveries } => (
                StatusCode::ACCEPTED,
                accepted(
                    id,
                    &event_type,
                    &entity,
                    id.millis(),
                    deliveries.len() as u32,
                ),
            ),
            // Answered with 409 above, before anything is shown.
            IngestOutcome::Conflict => (StatusCode::CONFLICT, Value::Null),
        })
        .collect())
}

pub async fn list(
    state: &AppState,
    caller: &Caller,
    query: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let page = Page::parse(query)?;
    let mut event_type = None;
    let (mut since, mut until) = (0, u64::MAX >> 16);
    for (key, value) in super::query_pairs(query) {
        match key {
            "eventType" => {
                // A malformed type can match no event: say so rather than list nothing.
                validate::event_type_name("eventType", &value)?;
                event_type = Some(value);
            }
            "since" => since = super::parse_time("since", &value)?,
            "until" => until = super::parse_time("until", &value)?,
            _ => {}
        }
    }
    let caller = caller.clone();
    let found = state
        .store
        .events_page(
            since,
            until,
            event_type,
            page.after_id()?,
            page.limit,
            move |e| caller.sees(&e.entity) && caller.reads_type(&e.event_type),
        )
        .await?;
    let items: Vec<Value> = found
        .items
        .iter()
        .map(|(id, record)| view(*id, record))
        .collect();
    Ok(super::list(items, found.next))
}

/// `GET /v1/events/{id}`: the event and how many of its deliveries the caller sees
/// (the deliveries themselves are a paginated list of their own).
pub async fn get(state: &AppState, caller: &Caller, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let (id, record) = visible_event(state, caller, raw_id).await?;
    let who = caller.clone();
    let count = state
        .store
        .count_event_deliveries(id.0, move |d| who.sees_subscription(d.subscription))
        .await?;
    let mut shown = view(id.0, &record);
    shown["deliveryCount"] = json!(count);
    Ok(data(StatusCode::OK, shown))
}

/// `GET /v1/events/{id}/deliveries`: only deliveries to subscriptions the caller sees.
pub async fn deliveries(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    query: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let page = Page::parse(query)?;
    let (id, _) = visible_event(state, caller, raw_id).await?;
    let who = caller.clone();
    let found = state
        .store
        .event_deliveries(id.0, page.after_id()?, page.limit, move |d| {
            who.sees_subscription(d.subscription)
        })
        .await?;
    let items = found
        .items
        .iter()
        .map(|(dlv, record)| super::deliveries::view(DeliveryId(*dlv), record))
        .collect();
    Ok(super::list(items, found.next))
}

/// An event the caller may read: in its subtree (else 404) and of a type whose scope
/// it holds (else 403).
async fn visible_event(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<(EventId, EventRecord), ApiError> {
    let id = EventId::parse(raw_id).ok_or(ApiError::NotFound("event"))?;
    let record = state
        .store
        .event(id.0)
        .await?
        .filter(|r| caller.sees(&r.entity))
        .ok_or(ApiError::NotFound("event"))?;
    if !caller.reads_type(&record.event_type) {
        return Err(ApiError::Forbidden(format!(
            "events of type {} need a scope this credential lacks",
            record.event_type
        )));
    }
    Ok((id, record))
}

/// An event as the API shows it, with `data` parsed back out of the stored body.
/// (In the API an event's id is `id`, like every object's; the delivered body names it
/// `eventId`.)
fn view(id: u128, record: &EventRecord) -> Value {
    let body: Value = serde_json::from_slice(&record.body).unwrap_or(Value::Null);
    json!({
        "id": EventId(id).to_string(),
        "eventType": record.event_type,
        "entityId": record.entity,
        "createdAt": super::timestamp(record.created_ms),
        "data": body.get("data").cloned().unwrap_or(Value::Null),
    })
}

fn accepted(
    id: EventId,
    event_type: &str,
    entity: &EntityId,
    created_ms: u64,
    deliveries: u32,
) -> Value {
    json!({
        "id": id.to_string(),
        "eventType": event_type,
        "entityId": entity.to_string(),
        "createdAt": super::timestamp(created_ms),
        "deliveryCount": deliveries,
    })
}

/// A raw value is only checked for its outer shape while the body is parsed; this
/// checks the rest (escapes such as a lone surrogate, nesting depth), so that every
/// accepted event reads back and every receiver can parse it. A full parse is needed:
/// skipping the value (`IgnoredAny`) does not validate escapes.
fn check_json(raw: &str) -> Result<(), String> {
    super::strict::parse(raw.as_bytes())
        .map(drop)
        .map_err(|e| format!("is not valid JSON: {e}"))
}

fn idempotency_key(field: &str, key: Option<&str>) -> Result<String, ApiError> {
    key.filter(|k| {
        !k.is_empty()
            && k.len() <= MAX_IDEMPOTENCY_KEY
            && k.bytes().all(|b| (0x20..0x7f).contains(&b))
    })
    .map(str::to_owned)
    .ok_or_else(|| ApiError::invalid(field, "must be 1-255 printable ASCII characters"))
}

/// Keys are scoped per entity: the same key from two tenants never collides.
fn scoped_key(entity: &EntityId, key: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(entity.as_str().len() + 1 + key.len());
    input.extend_from_slice(entity.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(key.as_bytes());
    sha256(&input)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_scoped_per_entity() {
        let a = EntityId::parse("a").unwrap();
        let b = EntityId::parse("b").unwrap();
        assert_ne!(scoped_key(&a, "k"), scoped_key(&b, "k"));
        assert_eq!(scoped_key(&a, "k"), scoped_key(&a, "k"));
    }

    #[test]
    fn data_must_be_fully_valid_json() {
        assert!(check_json(r#"{"a": [1, {"b": "\u00e9"}]}"#).is_ok());
        assert!(check_json(r#"{"a": "\ud800"}"#).is_err(), "lone surrogate");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            check_json(&format!(r#"{{"a": {deep}}}"#)).is_err(),
            "nesting past 128"
        );
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        assert!(idempotency_key("k", Some("order-17")).is_ok());
        assert!(idempotency_key("k", Some("")).is_err());
        assert!(idempotency_key("k", Some(&"a".repeat(256))).is_err());
        assert!(idempotency_key("k", Some("tab\there")).is_err());
        assert!(idempotency_key("k", None).is_err());
    }
}
