//! `/v1/subscriptions`: create, list, read, change, delete, and read the signing secret.
//! Secrets (signing secret, password, custom header values) are sealed under the master
//! key, bound to the subscription id, before they reach the store.

use http::StatusCode;
use serde_json::{Value, json};

use super::endpoint_auth::{self, AuthInput};
use super::validate::{self, Fields};
use super::{ApiError, ApiResponse, AppState, Caller, Page, Request, data, read_body};
use crate::delivery::sign::generate_secret;
use crate::ids::{EntityId, SubscriptionId};
use crate::secret::Secret;
use crate::store::pattern_matches;
use crate::store::records::{
    EndpointAuthRecord, HeaderRecord, SigningSecretRecord, SubscriptionRecord, SubscriptionStatus,
};
use crate::store::{PutOutcome, now_ms};

const FIELDS: &[&str] = &[
    "status",
    "eventTypes",
    "endpointUrl",
    "endpointAuth",
    "customHeaders",
    "rateLimit",
    "description",
    "entityId",
];

pub async fn create(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let value = read_object(state, request).await?;
    let fields = Fields::new(&value, "")?;
    fields.only(FIELDS)?;
    refuse_null(&fields)?;

    let status = status(&fields)?.unwrap_or(SubscriptionStatus::Active);
    let event_types = event_types(state, caller, &fields)?
        .ok_or_else(|| ApiError::invalid("eventTypes", "is required (for example [\"*\"])"))?;
    let endpoint_url = fields.required_str("endpointUrl")?;
    validate::endpoint_url(
        "endpointUrl",
        endpoint_url,
        state.config.delivery.allow_http,
    )?;
    let auth =
        endpoint_auth::parse(&fields, state.config.delivery.allow_http)?.unwrap_or(AuthInput::None);
    deliverable(state, Some(endpoint_url), Some(&auth)).await?;
    let headers =
        validate::custom_headers(&fields, "customHeaders", !matches!(auth, AuthInput::None))?;
    let rate_limit = rate_limit(&fields)?;
    let description = description(&fields)?;
    let entity = match fields.str("entityId")? {
        None => caller.entity.clone(),
        Some(raw) => visible_entity(caller, raw)?,
    };

    let id = SubscriptionId::generate();
    let owner = id.to_string();
    let secret = generate_secret(&state.rng)
        .map_err(|_| ApiError::internal(crate::secret::SealError::Random))?;
    let now = now_ms();
    let record = SubscriptionRecord {
        entity: entity.to_string(),
        status,
        disabled_reason: None,
        event_types,
        endpoint_url: endpoint_url.to_owned(),
        endpoint_auth: endpoint_auth::seal(state, &owner, auth)?,
        custom_headers: seal_headers(state, &owner, headers)?,
        rate_limit,
        description,
        signing_secrets: vec![SigningSecretRecord {
            sealed: state.sealer.seal(owner.as_bytes(), &secret)?,
            expires_ms: None,
        }],
        created_ms: now,
        updated_ms: now,
        active_since_ms: now,
        scopes: caller.stored_scopes(),
    };
    state
        .store
        .put_subscription(id.0, record.clone(), None)
        .await?;
    tracing::info!(subscription = %id, entity = %entity, "subscription created");
    let mut view = view(state, id, &record)?;
    view["signingSecret"] = Value::String(secret.expose().to_owned());
    Ok(data(StatusCode::CREATED, view))
}

pub fn list(
    state: &AppState,
    caller: &Caller,
    query: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let page = Page::parse(query)?;
    let index = state.store.subscriptions();
    let visible = index
        .after(page.after_id()?)
        .filter(|(_, record)| caller.sees(&record.entity));
    let (found, next) = super::take_page(visible, page.limit);
    let items = found
        .into_iter()
        .map(|(id, record)| view(state, SubscriptionId(id), record))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::list(items, next))
}

pub fn get(state: &AppState, caller: &Caller, raw_id: &str) -> Result<ApiResponse, ApiError> {
    let (id, record) = find(state, caller, raw_id)?;
    Ok(data(StatusCode::OK, view(state, id, &record)?))
}

pub async fn patch(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    // The body first: answering 404 with it unread would reset the connection.
    let value = read_object(state, request).await?;
    let (id, current) = find(state, caller, raw_id)?;
    let fields = Fields::new(&value, "")?;
    fields.only(FIELDS)?;
    if fields.has("entityId") {
        return Err(ApiError::invalid(
            "entityId",
            "cannot change; create a new subscription",
        ));
    }
    refuse_null(&fields)?;
    let owner = id.to_string();
    let mut record = (*current).clone();
    if let Some(status) = status(&fields)? {
        record.status = status;
        if status == SubscriptionStatus::Active {
            record.disabled_reason = None;
        }
    }
    if let Some(types) = event_types(state, caller, &fields)? {
        record.event_types = types;
    }
    let url = fields.str("endpointUrl")?;
    if let Some(url) = url {
        validate::endpoint_url("endpointUrl", url, state.config.delivery.allow_http)?;
        record.endpoint_url = url.to_owned();
    }
    let auth = endpoint_auth::parse(&fields, state.config.delivery.allow_http)?;
    deliverable(state, url, auth.as_ref()).await?;
    if let Some(auth) = auth {
        record.endpoint_auth = endpoint_auth::seal(state, &owner, auth)?;
    }
    let has_auth = record.endpoint_auth != EndpointAuthRecord::None;
    if fields.has("customHeaders") {
        let headers = validate::custom_headers(&fields, "customHeaders", has_auth)?;
        record.custom_headers = seal_headers(state, &owner, headers)?;
    } else if has_auth
        && record
            .custom_headers
            .iter()
            .any(|h| h.name == "authorization")
    {
        return Err(ApiError::invalid(
            "endpointAuth",
            "conflicts with the custom authorization header; replace customHeaders too",
        ));
    }
    if fields.has("rateLimit") {
        record.rate_limit = rate_limit(&fields)?;
    }
    if fields.has("description") {
        record.description = description(&fields)?;
    }
    record.updated_ms = now_ms().max(current.updated_ms + 1);
    let stored = state
        .store
        .put_subscription(id.0, record.clone(), Some(current.updated_ms))
        .await?;
    if stored == PutOutcome::Conflict {
        return Err(ApiError::Conflict(
            "the subscription changed while this request was applied (for example hookd \
             disabled it); read it again and retry"
                .into(),
        ));
    }
    Ok(data(StatusCode::OK, view(state, id, &record)?))
}

pub async fn delete(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let (id, _) = find(state, caller, raw_id)?;
    if !state.store.delete_subscription(id.0).await? {
        return Err(ApiError::NotFound("subscription"));
    }
    tracing::info!(subscription = %id, "subscription deleted");
    Ok(super::no_content())
}

/// `null` means "none" only for the optional fields a subscription can be without
/// (`customHeaders`, `rateLimit`, `description`), and for `entityId` on create (the
/// caller's entity, as for an event; a change refuses any `entityId`). For the other
/// fields it is a mistake (API.md), on create as on change, rather than silently the
/// default.
fn refuse_null(fields: &Fields<'_>) -> Result<(), ApiError> {
    for field in ["status", "eventTypes", "endpointUrl", "endpointAuth"] {
        if fields.is_null(field) {
            return Err(ApiError::invalid(
                field,
                "cannot be null; only customHeaders, rateLimit and description can be cleared",
            ));
        }
    }
    Ok(())
}

/// Refuses, now, an endpoint or token URL being set that hookd could never deliver to
/// (`reachable.rs`).
async fn deliverable(
    state: &AppState,
    endpoint_url: Option<&str>,
    auth: Option<&AuthInput>,
) -> Result<(), ApiError> {
    let resolve = state.config.delivery.proxy.is_none();
    if let Some(url) = endpoint_url {
        super::reachable::check(&state.guard, resolve, "endpointUrl", url).await?;
    }
    if let Some(AuthInput::OAuth2 { token_url, .. }) = auth {
        let field = "endpointAuth.credentials.tokenUrl";
        super::reachable::check(&state.guard, resolve, field, token_url).await?;
    }
    Ok(())
}

/// The request body as a JSON object, within `server.max_body_bytes`.
pub(super) async fn read_object(state: &AppState, request: Request) -> Result<Value, ApiError> {
    let limit = state.config.server.max_body_bytes;
    let body = read_body(request, limit, "server.max_body_bytes").await?;
    super::parse_value(&body)
}

/// A subscription the caller may see; anything else (absent, malformed, another
/// tenant's) is the same 404.
pub(super) fn find(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<(SubscriptionId, std::sync::Arc<SubscriptionRecord>), ApiError> {
    let id = SubscriptionId::parse(raw_id).ok_or(ApiError::NotFound("subscription"))?;
    let index = state.store.subscriptions();
    let record = index
        .get(id.0)
        .filter(|r| caller.sees(&r.entity))
        .cloned()
        .ok_or(ApiError::NotFound("subscription"))?;
    Ok((id, record))
}

/// An `entityId` from a request: it must exist and be inside the caller's subtree.
pub(super) fn visible_entity(caller: &Caller, raw: &str) -> Result<EntityId, ApiError> {
    EntityId::parse(raw)
        .filter(|entity| caller.sees(entity.as_str()))
        .ok_or(ApiError::NotFound("entity"))
}

fn status(fields: &Fields<'_>) -> Result<Option<SubscriptionStatus>, ApiError> {
    match fields.str("status")? {
        None => Ok(None),
        Some("ACTIVE") => Ok(Some(SubscriptionStatus::Active)),
        Some("DEACTIVATED") => Ok(Some(SubscriptionStatus::Deactivated)),
        Some(_) => Err(ApiError::invalid("status", "must be ACTIVE or DEACTIVATED")),
    }
}

/// The patterns of `eventTypes`, checked against the catalog and the caller's scopes:
/// an exact type outside the catalog is 422; a type, or a wildcard matching no type,
/// whose scope the caller lacks is 403. Without a configured catalog any type may be
/// named (only `hookd.*` carry a scope then).
fn event_types(
    state: &AppState,
    caller: &Caller,
    fields: &Fields<'_>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(list) = fields.string_list("eventTypes")? else {
        return Ok(None);
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "eventTypes",
            "must name at least one event type",
        ));
    }
    if list.len() > validate::MAX_EVENT_TYPES {
        return Err(ApiError::invalid("eventTypes", "at most 100 entries"));
    }
    let closed = !state.config.event_types.is_empty();
    let catalog = caller.view().catalog();
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, pattern) in list.iter().enumerate() {
        let field = format!("eventTypes[{i}]");
        validate::event_type_pattern(&field, pattern)?;
        if pattern.ends_with('*') && closed {
            let mut scopes = catalog
                .iter()
                .filter(|(name, _)| pattern_matches(pattern, name))
                .map(|(_, scope)| scope)
                .peekable();
            if scopes.peek().is_none() {
                return Err(ApiError::invalid(
                    field,
                    "matches no event type in the catalog (GET /v1/event-types)",
                ));
            }
            if !scopes.any(|scope| caller.has(scope)) {
                return Err(ApiError::Forbidden(format!(
                    "{field}: {pattern} matches no event type whose scope this credential holds"
                )));
            }
        } else {
            match catalog.get(*pattern) {
                None if closed => {
                    return Err(ApiError::invalid(
                        field,
                        "is not in the event-type catalog (GET /v1/event-types)",
                    ));
                }
                Some(scope) if !caller.has(scope) => {
                    return Err(ApiError::Forbidden(format!(
                        "{field}: {pattern} needs the scope {scope}"
                    )));
                }
                _ => {}
            }
        }
        if !out.iter().any(|p| p == pattern) {
            out.push((*pattern).to_owned());
        }
    }
    Ok(Some(out))
}

fn rate_limit(fields: &Fields<'_>) -> Result<Option<u32>, ApiError> {
    match fields.u64("rateLimit")? {
        None => Ok(None),
        Some(n) if (1..=validate::MAX_RATE_LIMIT).contains(&n) => Ok(Some(n as u32)),
        Some(_) => Err(ApiError::invalid(
            "rateLimit",
            "must be from 1 to 100000 deliveries per second",
        )),
    }
}

fn description(fields: &Fields<'_>) -> Result<Option<String>, ApiError> {
    match fields.str("description")? {
        Some(d) => validate::text("description", d, 0, validate::MAX_DESCRIPTION)
            .map(|()| Some(d.to_owned())),
        None => Ok(None),
    }
}

fn seal_headers(
    state: &AppState,
    owner: &str,
    headers: Vec<(String, String)>,
) -> Result<Vec<HeaderRecord>, ApiError> {
    headers
        .into_iter()
        .map(|(name, value)| {
            Ok(HeaderRecord {
                sealed_value: state.sealer.seal(owner.as_bytes(), &Secret::new(value))?,
                name,
            })
        })
        .collect()
}

fn status_name(status: SubscriptionStatus) -> &'static str {
    match status {
        SubscriptionStatus::Active => "ACTIVE",
        SubscriptionStatus::Deactivated => "DEACTIVATED",
        SubscriptionStatus::Disabled => "DISABLED",
    }
}

/// The API view: secrets never appear; secret-looking header values are masked.
fn view(
    state: &AppState,
    id: SubscriptionId,
    record: &SubscriptionRecord,
) -> Result<Value, ApiError> {
    let owner = id.to_string();
    let mut headers = serde_json::Map::new();
    for header in &record.custom_headers {
        let shown = if validate::looks_secret(&header.name) {
            "****".to_owned()
        } else {
            state
                .sealer
                .open(owner.as_bytes(), &header.sealed_value)?
                .expose()
                .to_owned()
        };
        headers.insert(header.name.clone(), Value::String(shown));
    }
    let auth = endpoint_auth::view(&record.endpoint_auth);
    Ok(json!({
        "id": owner,
        "entityId": record.entity,
        "status": status_name(record.status),
        "disabledReason": record.disabled_reason,
        "eventTypes": record.event_types,
        "endpointUrl": record.endpoint_url,
        "endpointAuth": auth,
        "customHeaders": headers,
        "rateLimit": record.rate_limit,
        "description": record.description,
        "createdAt": super::timestamp(record.created_ms),
        "updatedAt": super::timestamp(record.updated_ms),
    }))
}
