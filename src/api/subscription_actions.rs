//! Actions on one subscription beyond create/read/update/delete: its signing secret
//! (read, rotate), its deliveries, replay of past events, and a test ping.

use http::StatusCode;
use serde_json::{Value, json};

use super::subscriptions::{find, read_object};
use super::validate::Fields;
use super::{ApiError, ApiResponse, AppState, Caller, Page, Request, data};
use crate::delivery::sign::generate_secret;
use crate::ids::{DeliveryId, EventId};
use crate::store::records::{DeliveryState, EventRecord, SigningSecretRecord, SubscriptionStatus};
use crate::store::{IngestOutcome, NewEvent, PutOutcome, ReplayOutcome, now_ms};

pub fn secret(state: &AppState, caller: &Caller, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let (id, record) = find(state, caller, raw_id)?;
    let newest = record
        .signing_secrets
        .first()
        .ok_or_else(|| ApiError::internal(crate::secret::SealError::Open))?;
    let secret = state
        .sealer
        .open(id.to_string().as_bytes(), &newest.sealed)?;
    Ok(data(
        StatusCode::OK,
        json!({"signingSecret": secret.expose()}),
    ))
}

/// `GET /v1/subscriptions/{id}/deliveries?state=`: newest first.
pub async fn deliveries(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    query: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let (id, _) = find(state, caller, raw_id)?;
    let page = Page::parse(query)?;
    let mut wanted = None;
    for (key, value) in super::query_pairs(query) {
        if key == "state" {
            wanted = Some(
                DELIVERY_STATES
                    .into_iter()
                    .find(|s| s.as_str() == value)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "state",
                            "must be PENDING, RETRYING, SUCCEEDED, FAILED or CANCELLED",
                        )
                    })?,
            );
        }
    }
    let found = state
        .store
        .subscription_deliveries(id.0, wanted, page.after_id()?, page.limit)
        .await?;
    let items = found
        .items
        .iter()
        .map(|(dlv, record)| super::deliveries::view(DeliveryId(*dlv), record))
        .collect();
    Ok(super::list(items, found.next))
}

const DELIVERY_STATES: [DeliveryState; 5] = [
    DeliveryState::Pending,
    DeliveryState::Retrying,
    DeliveryState::Succeeded,
    DeliveryState::Failed,
    DeliveryState::Cancelled,
];

/// `POST /v1/subscriptions/{id}/replay`: new deliveries for past events it matches.
pub async fn replay(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    // The body first: answering 404 with it unread would reset the connection.
    let value = read_object(state, request).await?;
    let (id, _) = find(state, caller, raw_id)?;
    let fields = Fields::new(&value, "")?;
    fields.only(&["since", "until", "onlyFailed"])?;
    let since = super::parse_time("since", fields.required_str("since")?)?;
    let until = match fields.str("until")? {
        Some(until) => super::parse_time("until", until)?,
        None => now_ms() + 1,
    };
    if until <= since {
        return Err(ApiError::invalid("until", "must be later than since"));
    }
    let only_failed = match fields.get("onlyFailed") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("onlyFailed", "must be true or false")),
    };
    match state.store.replay(id.0, since, until, only_failed).await? {
        ReplayOutcome::Queued { queued, resume_ms } => {
            let mut body = json!({"queued": queued});
            if let Some(resume) = resume_ms {
                // More matched than one request queues: replay again from here.
                body["nextSince"] = Value::String(super::timestamp(resume));
            }
            tracing::info!(subscription = %id, queued, "replay queued");
            Ok(data(StatusCode::ACCEPTED, body))
        }
        ReplayOutcome::NotFound => Err(ApiError::NotFound("subscription")),
        ReplayOutcome::SubscriptionInactive => Err(ApiError::inactive_subscription()),
    }
}

/// `POST /v1/subscriptions/{id}/test`: a `hookd.ping` event to this subscription only.
pub async fn test(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let (id, record) = find(state, caller, raw_id)?;
    if record.status != SubscriptionStatus::Active {
        return Err(ApiError::inactive_subscription());
    }
    let event = EventId::generate();
    let created_ms = event.millis();
    let data_json = json!({"subscriptionId": id.to_string(), "message": "a test event from hookd"});
    let new = NewEvent {
        id: event.0,
        record: EventRecord {
            entity: record.entity.clone(),
            event_type: PING.to_owned(),
            created_ms,
            body: crate::payload::render(
                event,
                PING,
                &record.entity,
                created_ms,
                &data_json.to_string(),
            ),
        },
        idempotency: None,
        targets: Some(vec![id.0]),
    };
    let delivery = match state.store.ingest(vec![new]).await?.pop() {
        Some(IngestOutcome::Accepted { deliveries }) => deliveries.first().copied(),
        _ => None,
    }
    .ok_or(ApiError::NotFound("subscription"))?;
    let stored = state
        .store
        .delivery(delivery)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    Ok(data(
        StatusCode::ACCEPTED,
        super::deliveries::view(DeliveryId(delivery), &stored),
    ))
}

const PING: &str = "hookd.ping";

/// `POST /v1/subscriptions/{id}/secret/rotate`: a new signing secret; the old one keeps
/// signing beside it for `delivery.rotation_overlap`.
pub async fn rotate(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let (id, current) = find(state, caller, raw_id)?;
    let owner = id.to_string();
    let now = now_ms();
    let overlap = state.config.delivery.rotation_overlap.as_millis() as u64;
    let secret = generate_secret(&state.rng)
        .map_err(|_| ApiError::internal(crate::secret::SealError::Random))?;
    let mut record = (*current).clone();
    record
        .signing_secrets
        .retain(|s| s.expires_ms.is_none_or(|at| at > now));
    for old in &mut record.signing_secrets {
        old.expires_ms.get_or_insert(now + overlap);
    }
    record.signing_secrets.insert(
        0,
        SigningSecretRecord {
            sealed: state.sealer.seal(owner.as_bytes(), &secret)?,
            expires_ms: None,
        },
    );
    record.updated_ms = now.max(current.updated_ms + 1);
    let stored = state
        .store
        .put_subscription(id.0, record, Some(current.updated_ms))
        .await?;
    if stored == PutOutcome::Conflict {
        return Err(ApiError::Conflict(
            "the subscription changed meanwhile; rotate again".into(),
        ));
    }
    tracing::info!(subscription = %id, "signing secret rotated");
    Ok(data(
        StatusCode::OK,
        json!({"signingSecret": secret.expose()}),
    ))
}
