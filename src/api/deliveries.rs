//! `/v1/deliveries/{id}` and its attempts. A delivery is visible to a caller who sees
//! the event it carries.

use http::StatusCode;
use serde_json::{Value, json};

use super::auth::{SUBSCRIPTIONS_READ, SUBSCRIPTIONS_WRITE};
use super::{ApiError, ApiResponse, AppState, Caller, data};
use crate::ids::{DeliveryId, EventId, SubscriptionId};
use crate::store::RetryOutcome;
use crate::store::records::DeliveryRecord;

pub async fn get(state: &AppState, caller: &Caller, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let (id, record) = find(state, caller, raw_id).await?;
    Ok(data(StatusCode::OK, view(id, &record)))
}

pub async fn attempts(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let (id, _) = find(state, caller, raw_id).await?;
    let attempts: Vec<Value> = state
        .store
        .attempts(id.0)
        .await?
        .into_iter()
        .map(|a| {
            let headers: serde_json::Map<String, Value> = a
                .response_headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            json!({
                "attemptedAt": super::timestamp(a.attempted_ms),
                "url": a.url,
                "statusCode": a.status,
                "error": a.error,
                "durationMs": a.duration_ms,
                "responseBody": String::from_utf8_lossy(&a.response_body),
                "responseHeaders": headers,
            })
        })
        .collect();
    Ok(super::json(
        StatusCode::OK,
        &json!({"data": attempts, "nextCursor": null}),
    ))
}

/// `POST /v1/deliveries/{id}/retry`: one attempt now.
pub async fn retry(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    caller.require(SUBSCRIPTIONS_WRITE)?;
    let (id, _) = find(state, caller, raw_id).await?;
    match state.store.retry(id.0).await? {
        RetryOutcome::Queued(record) => Ok(data(StatusCode::ACCEPTED, view(id, &record))),
        RetryOutcome::NotFound => Err(ApiError::NotFound("delivery")),
        RetryOutcome::Cancelled => Err(ApiError::Conflict(
            "the delivery was cancelled with its subscription and cannot be retried".into(),
        )),
        RetryOutcome::SubscriptionInactive => Err(ApiError::inactive_subscription()),
    }
}

async fn find(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<(DeliveryId, DeliveryRecord), ApiError> {
    caller.require(SUBSCRIPTIONS_READ)?;
    let id = DeliveryId::parse(raw_id).ok_or(ApiError::NotFound("delivery"))?;
    let record = state
        .store
        .delivery(id.0)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    if !caller.is_admin() {
        let event = state.store.event(record.event).await?;
        let Some(event) = event.filter(|e| caller.sees(&e.record.entity)) else {
            return Err(ApiError::NotFound("delivery"));
        };
        if !caller.reads_type(&event.record.event_type) {
            return Err(ApiError::Forbidden(
                "this delivery's event type needs a scope this credential lacks".into(),
            ));
        }
    }
    Ok((id, record))
}

pub fn view(id: DeliveryId, record: &DeliveryRecord) -> Value {
    json!({
        "id": id.to_string(),
        "eventId": EventId(record.event).to_string(),
        "subscriptionId": SubscriptionId(record.subscription).to_string(),
        "state": record.state.as_str(),
        "attempts": record.attempts,
        "nextAttemptAt": record.next_attempt_ms.map(super::timestamp),
        "lastStatus": record.last_status,
        "lastError": record.last_error,
        "createdAt": super::timestamp(record.created_ms),
        "updatedAt": super::timestamp(record.updated_ms),
    })
}
