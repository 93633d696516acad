//! `/v1/events`: accept an event (idempotently), and read one back with its deliveries.
//! The body every subscriber receives is rendered here, once, and stored; deliveries
//! send those exact bytes.

use http::StatusCode;
use ring::digest::{SHA256, digest};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::validate;
use super::{ApiError, ApiResponse, AppState, Caller, Request, data, read_body};
use crate::ids::{DeliveryId, EntityId, EventId, SubscriptionId};
use crate::store::records::EventRecord;
use crate::store::{IdempotencyKey, IngestOutcome, NewEvent};

/// The posted body. Fields are loosely typed so each can be checked with a message that
/// names it; `data` stays raw so the producer's JSON is passed on as sent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventInput {
    event_type: Option<Value>,
    entity_id: Option<Value>,
    data: Option<Box<RawValue>>,
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

pub async fn create(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let key = idempotency_key(&request)?;
    let body = read_body(
        request,
        state.config.server.max_body_bytes,
        "server.max_body_bytes",
    )
    .await?;
    let input: EventInput = super::parse_json(&body)?;

    let event_type = match &input.event_type {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ApiError::invalid("eventType", "must be a string")),
        None => return Err(ApiError::invalid("eventType", "is required")),
    };
    validate::event_type_name("eventType", event_type)?;
    if event_type.starts_with("hookd.") {
        return Err(ApiError::invalid(
            "eventType",
            "`hookd.` types are reserved for events hookd emits itself",
        ));
    }
    let entity = match &input.entity_id {
        None | Some(Value::Null) => caller.entity.clone(),
        Some(Value::String(raw)) => {
            super::subscriptions::visible_entity(state, caller, raw).await?
        }
        Some(_) => return Err(ApiError::invalid("entityId", "must be a string")),
    };
    let raw_data = input
        .data
        .as_deref()
        .ok_or_else(|| ApiError::invalid("data", "is required (a JSON object)"))?;
    if !raw_data.get().trim_start().starts_with('{') {
        return Err(ApiError::invalid("data", "must be a JSON object"));
    }

    let id = EventId::generate();
    let created_ms = id.millis();
    let rendered = render(id, event_type, &entity, created_ms, raw_data.get());
    let idempotency = key.map(|key| IdempotencyKey {
        key_hash: scoped_key(&entity, &key),
        body_sha256: sha256(&body),
    });
    let event = NewEvent {
        id: id.0,
        record: EventRecord {
            entity: entity.to_string(),
            event_type: event_type.to_owned(),
            created_ms,
            body: rendered,
        },
        idempotency,
    };
    let outcome = state
        .store
        .ingest(vec![event])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal(crate::store::StoreError::Aborted))?;
    match outcome {
        IngestOutcome::Accepted { deliveries } => Ok(data(
            StatusCode::ACCEPTED,
            accepted(id, event_type, &entity, created_ms, deliveries),
        )),
        IngestOutcome::Duplicate { event, deliveries } => {
            let original = EventId(event);
            Ok(data(
                StatusCode::OK,
                accepted(original, event_type, &entity, original.millis(), deliveries),
            ))
        }
        IngestOutcome::Conflict => Err(ApiError::Conflict(
            "this Idempotency-Key was used in the last 24 h with a different body".into(),
        )),
    }
}

pub async fn get(state: &AppState, caller: &Caller, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let id = EventId::parse(raw_id).ok_or(ApiError::NotFound("event"))?;
    let view = state
        .store
        .event(id.0)
        .await?
        .filter(|v| caller.sees(&v.record.entity))
        .ok_or(ApiError::NotFound("event"))?;
    let body: Value = serde_json::from_slice(&view.record.body).map_err(ApiError::internal)?;
    let deliveries: Vec<Value> = view
        .deliveries
        .iter()
        .map(|(dlv, record)| {
            json!({
                "id": DeliveryId(*dlv).to_string(),
                "subscriptionId": SubscriptionId(record.subscription).to_string(),
                "state": record.state.as_str(),
                "attempts": record.attempts,
            })
        })
        .collect();
    Ok(data(
        StatusCode::OK,
        json!({
            "eventId": id.to_string(),
            "eventType": view.record.event_type,
            "entityId": view.record.entity,
            "createdAt": super::timestamp(view.record.created_ms),
            "data": body.get("data").cloned().unwrap_or(Value::Null),
            "deliveries": deliveries,
        }),
    ))
}

fn accepted(
    id: EventId,
    event_type: &str,
    entity: &EntityId,
    created_ms: u64,
    deliveries: u32,
) -> Value {
    json!({
        "eventId": id.to_string(),
        "eventType": event_type,
        "entityId": entity.to_string(),
        "createdAt": super::timestamp(created_ms),
        "deliveries": deliveries,
    })
}

/// The delivered body: fixed field order, `data` exactly as the producer sent it.
fn render(
    id: EventId,
    event_type: &str,
    entity: &EntityId,
    created_ms: u64,
    raw_data: &str,
) -> Vec<u8> {
    // Serialising a &str cannot fail.
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"{{"eventId":"{id}","eventType":{},"entityId":{},"createdAt":"{}","data":{raw_data}}}"#,
        quote(event_type),
        quote(entity.as_str()),
        super::timestamp(created_ms),
    )
    .into_bytes()
}

fn idempotency_key(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty()
            && k.len() <= MAX_IDEMPOTENCY_KEY
            && k.bytes().all(|b| (0x20..0x7f).contains(&b))
    });
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::invalid(
            "Idempotency-Key",
            "must be 1-255 printable ASCII characters",
        )
    })
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
    fn rendered_body_is_valid_json_with_data_verbatim() {
        let id = EventId(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let body = render(
            id,
            "a.b",
            &EntityId::root(),
            1_700_000_000_123,
            r#"{"x": 1.10}"#,
        );
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with(r#""data":{"x": 1.10}}"#), "{text}");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["eventType"], "a.b");
        assert_eq!(parsed["createdAt"], "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn idempotency_keys_are_scoped_per_entity() {
        let a = EntityId::parse("a").unwrap();
        let b = EntityId::parse("b").unwrap();
        assert_ne!(scoped_key(&a, "k"), scoped_key(&b, "k"));
        assert_eq!(scoped_key(&a, "k"), scoped_key(&a, "k"));
    }
}
