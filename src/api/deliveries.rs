//! `/v1/deliveries/{id}` and its attempts. A delivery is visible only to a caller who
//! sees its subscription's entity (API.md), not to whoever posted the event: a company
//! never sees its parent's or the operator's endpoints and their answers.

use http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, ApiResponse, AppState, Caller, Page, data};
use crate::ids::{DeliveryId, EventId, SubscriptionId};
use crate::store::RetryOutcome;
use crate::store::records::DeliveryRecord;

pub async fn get(state: &AppState, caller: &Caller, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let (id, record) = find(state, caller, raw_id).await?;
    Ok(data(StatusCode::OK, view(id, &record)))
}

/// `GET /v1/deliveries/{id}/attempts`: oldest first, paginated.
pub async fn attempts(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    query: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let page = Page::parse(query)?;
    let after = match page.after_id()? {
        None => 0,
        Some(n) => u32::try_from(n).map_err(|_| super::bad_cursor())?,
    };
    let (id, _) = find(state, caller, raw_id).await?;
    let found = state.store.attempts(id.0, after, page.limit).await?;
    let attempts: Vec<Value> = found
        .items
        .into_iter()
        .map(|(_, a, request)| {
            let headers: serde_json::Map<String, Value> = a
                .response_headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            // Attempts recorded before hookd kept request headers have none: null.
            let request_headers = request.map(|r| {
                r.headers
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<serde_json::Map<String, Value>>()
            });
            json!({
                "attemptedAt": super::timestamp(a.attempted_ms),
                "url": a.url,
                "statusCode": a.status,
                "error": a.error,
                "durationMs": a.duration_ms,
                "responseBody": String::from_utf8_lossy(&a.response_body),
                "responseHeaders": headers,
                "requestHeaders": request_headers,
            })
        })
        .collect();
    Ok(super::list(attempts, found.next))
}

/// `POST /v1/deliveries/{id}/retry`: one attempt now.
pub async fn retry(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
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
    let id = DeliveryId::parse(raw_id).ok_or(ApiError::NotFound("delivery"))?;
    let record = state
        .store
        .delivery(id.0)
        .await?
        .filter(|r| caller.sees_subscription(r.subscription))
        .ok_or(ApiError::NotFound("delivery"))?;
    if !caller.is_admin() {
        let event = state.store.event(record.event).await?;
        let Some(event) = event else {
            return Err(ApiError::NotFound("delivery"));
        };
        if !caller.reads_type(&event.event_type) {
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
